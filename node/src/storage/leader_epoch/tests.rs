use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::sim::SimDisk;

fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
    let (cache, refused) = LeaderEpochCache::from_batches(entries.iter().copied());
    assert!(refused.is_empty(), "{refused:?}");
    cache
}

#[test]
fn end_offset_for_epoch_follows_kip_279() {
    // Goal: each case of KIP-279's OffsetForLeaderEpoch answer, on epochs 1@0, 3@10, 4@25
    // with the log end at 40.
    let epochs = cache(&[(1, 0), (1, 5), (3, 10), (4, 25), (4, 30)]);
    let end = |epoch| epochs.end_offset_for_epoch(epoch, 40);
    // The latest epoch ends at the log end.
    assert_eq!(
        end(4),
        EpochEnd::Known {
            epoch: 4,
            end_offset: 40
        }
    );
    // A known epoch ends where the next one starts.
    assert_eq!(
        end(1),
        EpochEnd::Known {
            epoch: 1,
            end_offset: 10
        }
    );
    assert_eq!(
        end(3),
        EpochEnd::Known {
            epoch: 3,
            end_offset: 25
        }
    );
    // An epoch this replica never saw answers with the largest epoch below it.
    assert_eq!(
        end(2),
        EpochEnd::Known {
            epoch: 1,
            end_offset: 10
        }
    );
    // Before the first, or after the latest: undefined.
    assert_eq!(end(0), EpochEnd::Undefined);
    assert_eq!(end(5), EpochEnd::Undefined);
    assert_eq!(
        LeaderEpochCache::new().end_offset_for_epoch(0, 0),
        EpochEnd::Undefined
    );
}

#[test]
fn assign_replaces_an_epoch_that_wrote_nothing_and_refuses_going_back() {
    // Goal: an epoch that starts where the previous one started replaces it (it held no
    // batch), the same epoch again changes nothing, and epochs or offsets that go back are
    // refused with the numbers.
    let mut epochs = cache(&[(1, 0), (2, 10)]);
    assert_eq!(epochs.assign(2, 12), Ok(false));
    assert_eq!(epochs.assign(3, 10), Ok(true));
    assert_eq!(
        epochs.entries(),
        &[
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 3,
                start_offset: 10
            }
        ]
    );
    assert_eq!(
        epochs.assign(2, 20),
        Err(AssignEpochError::EpochWentBackwards {
            epoch: 2,
            latest: 3
        })
    );
    assert!(matches!(
        epochs.assign(5, 5),
        Err(AssignEpochError::OffsetWentBackwards { .. })
    ));
    assert!(matches!(
        epochs.assign(-1, 50),
        Err(AssignEpochError::Negative { .. })
    ));
}

#[test]
fn truncations_cut_the_entries_with_the_log() {
    // Goal: a truncation of the log end drops the epochs that started at or after it; a
    // move of the log start keeps the epoch holding it, moved up to it.
    let mut epochs = cache(&[(1, 0), (3, 10), (4, 25)]);
    assert!(epochs.truncate_from_end(25));
    assert_eq!(epochs.latest_epoch(), Some(3));
    assert!(!epochs.truncate_from_end(30));
    assert!(!epochs.truncate_from_end(11));
    assert!(epochs.truncate_from_end(10));
    assert_eq!(
        epochs.latest(),
        Some(EpochEntry {
            epoch: 1,
            start_offset: 0
        })
    );

    let mut epochs = cache(&[(1, 0), (3, 10), (4, 25)]);
    assert!(epochs.truncate_from_start(12));
    assert_eq!(
        epochs.entries(),
        &[
            EpochEntry {
                epoch: 3,
                start_offset: 12
            },
            EpochEntry {
                epoch: 4,
                start_offset: 25
            }
        ]
    );
    assert!(!epochs.truncate_from_start(5));
    assert!(epochs.truncate_from_start(25));
    assert_eq!(
        epochs.entries(),
        &[EpochEntry {
            epoch: 4,
            start_offset: 25
        }]
    );
    assert_eq!(epochs.epoch_at(30), Some(4));
    assert_eq!(epochs.epoch_at(3), None);
}

#[test]
fn rebuilding_from_batches_skips_an_epoch_that_goes_back() {
    // Goal: a batch whose epoch is below an earlier one (damage) is reported and skipped;
    // the rest is rebuilt.
    let (epochs, refused) = LeaderEpochCache::from_batches([(2, 0), (1, 5), (3, 9)]);
    assert_eq!(epochs.entries().len(), 2);
    assert_eq!(
        epochs.latest(),
        Some(EpochEntry {
            epoch: 3,
            start_offset: 9
        })
    );
    assert_eq!(refused.len(), 1);
}

#[test]
fn every_damaged_file_is_refused_without_panicking() {
    // Goal: a flipped bit anywhere, a cut at any length and trailing garbage are each
    // refused; nothing panics.
    let bytes = cache(&[(1, 0), (3, 10), (4, 25)]).encode();
    assert_eq!(
        LeaderEpochCache::decode(&bytes).unwrap(),
        cache(&[(1, 0), (3, 10), (4, 25)])
    );
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(LeaderEpochCache::decode(&flipped).is_err(), "bit {bit}");
    }
    for length in 0..bytes.len() {
        assert!(
            LeaderEpochCache::decode(&bytes[..length]).is_err(),
            "length {length}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(LeaderEpochCache::decode(&longer).is_err());
}

proptest! {
    // Goal: no byte string makes decode panic, and a decoded file re-encodes to itself.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(cache) = LeaderEpochCache::decode(&bytes) {
            prop_assert_eq!(cache.encode(), bytes);
        }
    }

    // Goal: the query matches a model that scans the (epoch, offset) of every offset.
    #[test]
    fn end_offset_for_epoch_matches_a_model(
        steps in proptest::collection::vec((0i32..4, 1i64..6), 1..12),
        asked in 0i32..30,
    ) {
        let mut epoch = 0;
        let mut offset = 0;
        let mut per_offset = Vec::new();
        let mut batches = Vec::new();
        for (epoch_step, length) in steps {
            epoch += epoch_step;
            batches.push((epoch, offset));
            for _ in 0..length {
                per_offset.push(epoch);
            }
            offset += length;
        }
        let (cache, refused) = LeaderEpochCache::from_batches(batches);
        prop_assert!(refused.is_empty());
        let log_end = per_offset.len() as i64;
        let latest = *per_offset.last().unwrap();
        let first = per_offset[0];
        let expected = if asked < first || asked > latest {
            EpochEnd::Undefined
        } else if asked == latest {
            EpochEnd::Known { epoch: latest, end_offset: log_end }
        } else {
            let floor = *per_offset.iter().filter(|e| **e <= asked).max().unwrap();
            let end = per_offset.iter().position(|e| *e > asked).unwrap() as i64;
            EpochEnd::Known { epoch: floor, end_offset: end }
        };
        prop_assert_eq!(cache.end_offset_for_epoch(asked, log_end), expected);
    }
}

#[tokio::test]
async fn a_store_survives_a_crash_whole_and_a_crash_mid_store_leaves_old_or_new() {
    // Goal: after `store` returns, a power loss keeps the new entries; a power loss at any
    // operation inside a later store leaves either the old or the new entries, never a
    // damaged file, and the next store cleans up the temporary.
    let directory = Path::new("/data/topic-0");
    let old = cache(&[(1, 0), (2, 10)]);
    let new = cache(&[(1, 0), (2, 10), (5, 40)]);
    for operations in 0..8 {
        for seed in 0..4 {
            let disk = SimDisk::new(seed * 100 + operations);
            crate::storage::disk::create_dir_durable(&disk, directory)
                .await
                .unwrap();
            assert_eq!(load(&disk, directory).await.unwrap(), LoadedEpochs::Missing);
            store(&disk, directory, &old).await.unwrap();
            disk.crash();
            assert_eq!(
                load(&disk, directory).await.unwrap(),
                LoadedEpochs::Loaded(old.clone())
            );
            disk.power_off_after(operations);
            let stored = store(&disk, directory, &new).await.is_ok();
            disk.crash();
            let loaded = load(&disk, directory).await.unwrap();
            if stored {
                assert_eq!(
                    loaded,
                    LoadedEpochs::Loaded(new.clone()),
                    "ops {operations}"
                );
            } else {
                assert!(
                    loaded == LoadedEpochs::Loaded(old.clone())
                        || loaded == LoadedEpochs::Loaded(new.clone()),
                    "ops {operations} seed {seed}: {loaded:?}"
                );
            }
            store(&disk, directory, &new).await.unwrap();
            disk.crash();
            assert_eq!(
                load(&disk, directory).await.unwrap(),
                LoadedEpochs::Loaded(new.clone())
            );
        }
    }
}

#[tokio::test]
async fn a_damaged_file_loads_as_damaged_not_as_an_error() {
    // Goal: a bit flip in the stored file is reported as damage to rebuild from, not an IO
    // error that would stop the partition from opening.
    let directory = Path::new("/data/topic-1");
    let disk = SimDisk::new(7);
    crate::storage::disk::create_dir_durable(&disk, directory)
        .await
        .unwrap();
    store(&disk, directory, &cache(&[(1, 0), (2, 10)]))
        .await
        .unwrap();
    assert!(disk.corrupt_bit(&directory.join(LEADER_EPOCH_FILE_NAME), 13, 2));
    assert!(matches!(
        load(&disk, directory).await.unwrap(),
        LoadedEpochs::Damaged(_)
    ));
}
