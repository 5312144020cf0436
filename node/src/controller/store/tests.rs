use std::sync::atomic::{AtomicU64, Ordering};

use openraft::testing::{StoreBuilder, Suite};
use std::io::Cursor;

use openraft::{CommittedLeaderId, EntryPayload, SnapshotMeta};

use super::*;
use crate::controller::state_machine::ControllerStateMachine;
use crate::controller::types::ControllerRequest;
use crate::controller::{MetadataRecord, records::TopicId};
use crate::sim::SimDisk;

fn data_dir() -> PathBuf {
    PathBuf::from("/data")
}

struct SimStoreBuilder {
    seed: AtomicU64,
}

impl StoreBuilder<ControllerTypes, ControllerLogStore<SimDisk>, ControllerStateMachine<SimDisk>, ()>
    for SimStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            (),
            ControllerLogStore<SimDisk>,
            ControllerStateMachine<SimDisk>,
        ),
        RaftStorageError,
    > {
        let disk = SimDisk::new(self.seed.fetch_add(1, Ordering::Relaxed));
        let store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .map_err(write_error)?;
        let machine = ControllerStateMachine::open(disk, &data_dir())
            .await
            .map_err(write_error)?;
        Ok(((), store, machine))
    }
}

/// openraft's own storage conformance suite, on the simulated disk.
#[test]
fn openraft_storage_suite_passes_on_sim_disk() {
    Suite::test_all(SimStoreBuilder {
        seed: AtomicU64::new(1),
    })
    .unwrap();
}

fn entry(term: u64, index: u64) -> ControllerEntry {
    ControllerEntry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(ControllerRequest {
            records: vec![MetadataRecord::DeleteTopic {
                name: format!("topic-{index}"),
                topic_id: TopicId([u8::try_from(index % 256).unwrap(); 16]),
            }],
        }),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// B.5 #7: a vote that `save_vote` acknowledged survives a power loss at any point after it;
/// a crash at any point during it leaves the old vote or the new one, never nothing.
#[test]
fn a_granted_vote_survives_power_loss_at_every_point() {
    runtime().block_on(async {
        for crash_after in 0..12u64 {
            let disk = SimDisk::new(crash_after);
            let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
                .await
                .unwrap();
            let first = Vote::new(1, 2);
            store.save_vote_durable(first).await.unwrap();
            disk.power_off_after(crash_after);
            let second = Vote::new(2, 3);
            let granted = store.save_vote_durable(second).await.is_ok();
            disk.crash();
            let reopened = ControllerLogStore::open(disk.clone(), &data_dir())
                .await
                .unwrap();
            let vote = reopened.vote();
            if granted {
                assert_eq!(
                    vote,
                    Some(second),
                    "crash after {crash_after}: granted vote lost"
                );
            } else {
                // Not granted: either vote is fine, but never none (that would let the node vote
                // again in term 1).
                assert!(
                    vote == Some(first) || vote == Some(second),
                    "crash after {crash_after}: {vote:?}"
                );
            }
        }
    });
}

/// A crash at any point of a series of appends loses no acknowledged entry and leaves a
/// contiguous log that accepts appends again.
#[test]
fn a_crash_during_append_loses_no_acknowledged_entry() {
    runtime().block_on(async {
        // Each append is about 8 disk operations (write, sync, then the `synced` record).
        for crash_after in 0..100u64 {
            let disk = SimDisk::new(1000 + crash_after);
            let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
                .await
                .unwrap();
            disk.power_off_after(crash_after);
            let mut acknowledged = Vec::new();
            for index in 1..=8u64 {
                let batch = vec![entry(1, index * 2 - 1), entry(1, index * 2)];
                if store.append_durable(batch.clone()).await.is_err() {
                    break;
                }
                acknowledged.extend(batch);
            }
            disk.crash();
            let mut reopened = ControllerLogStore::open(disk.clone(), &data_dir())
                .await
                .unwrap();
            let entries = reopened.entries();
            assert!(
                entries.len() >= acknowledged.len(),
                "crash after {crash_after}: {} entries, {} acknowledged",
                entries.len(),
                acknowledged.len()
            );
            assert_eq!(entries.get(..acknowledged.len()), Some(&acknowledged[..]));
            for (position, kept) in entries.iter().enumerate() {
                assert_eq!(kept.log_id.index, position as u64 + 1);
            }
            let next = entries.len() as u64 + 1;
            reopened.append_durable(vec![entry(2, next)]).await.unwrap();
            let again = ControllerLogStore::open(disk.clone(), &data_dir())
                .await
                .unwrap();
            assert_eq!(again.entries().len() as u64, next);
        }
    });
}

#[test]
fn a_torn_tail_above_the_committed_index_is_cut() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        store
            .append_durable((1..=3).map(|index| entry(1, index)).collect())
            .await
            .unwrap();
        let committed = Some(LogId::new(CommittedLeaderId::new(1, 1), 3));
        RaftLogStorage::save_committed(&mut store, committed)
            .await
            .unwrap();
        let end = store.log_bytes();
        let log = data_dir().join(CONTROLLER_DIR_NAME).join(LOG_FILE);
        // Half a frame: a write torn by a crash.
        let mut frame = Vec::new();
        encode_frame(&mut frame, &serde_json::to_vec(&entry(1, 4)).unwrap());
        assert!(disk.append_durable(&log, &frame[..frame.len() / 2]));
        let mut reopened = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        assert_eq!(reopened.entries().len(), 3);
        assert_eq!(reopened.log_bytes(), end);
        reopened.append_durable(vec![entry(1, 4)]).await.unwrap();
        let again = ControllerLogStore::open(disk, &data_dir()).await.unwrap();
        assert_eq!(again.entries().len(), 4);
    });
}

#[test]
fn corruption_below_the_committed_index_refuses_the_start_with_one_clear_line() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        store
            .append_durable((1..=3).map(|index| entry(1, index)).collect())
            .await
            .unwrap();
        let committed = Some(LogId::new(CommittedLeaderId::new(1, 1), 3));
        RaftLogStorage::save_committed(&mut store, committed)
            .await
            .unwrap();
        let log = data_dir().join(CONTROLLER_DIR_NAME).join(LOG_FILE);
        // A bit flip inside entry 2's payload.
        let second = usize::try_from(store.offsets[&2]).unwrap();
        assert!(disk.corrupt_bit(&log, second + FRAME_HEADER_BYTES + 3, 1));
        let error = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .err()
            .unwrap();
        let line = error.to_string();
        assert!(!line.contains('\n'));
        assert!(line.contains("frame CRC mismatch"), "{line}");
        assert!(
            line.contains("(entry 2), at or below the committed index 3"),
            "{line}"
        );
        assert!(line.contains("refusing to start"), "{line}");
        // Nothing was cut: the file still holds all three frames.
        assert_eq!(disk.contents(&log).unwrap().len() as u64, store.log_bytes());
    });
}

/// Review finding 5: the stored committed index lags the quorum's, so an entry above it may
/// still have been acknowledged (synced and answered). Damage there refuses the start; only
/// the append in flight at a crash (above the last recorded `synced` entry) is cut, even
/// when whole frames of it follow its torn one. Method: SimDisk, bytes damaged in place.
#[test]
fn damage_in_an_acknowledged_entry_above_the_committed_index_refuses_the_start() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        store.append_durable(vec![entry(1, 1)]).await.unwrap();
        store
            .append_durable(vec![entry(1, 2), entry(1, 3)])
            .await
            .unwrap();
        let committed = Some(LogId::new(CommittedLeaderId::new(1, 1), 1));
        RaftLogStorage::save_committed(&mut store, committed)
            .await
            .unwrap();
        let log = data_dir().join(CONTROLLER_DIR_NAME).join(LOG_FILE);
        let end = store.log_bytes();

        // The append in flight at a crash: entries 4-6 written, entry 4's frame torn, 5 and 6
        // whole. Never acknowledged: cut at entry 4, and the log goes on.
        let mut batch = Vec::new();
        for index in 4..=6 {
            encode_frame(&mut batch, &serde_json::to_vec(&entry(1, index)).unwrap());
        }
        assert!(disk.append_durable(&log, &batch));
        assert!(disk.corrupt_bit(&log, usize::try_from(end).unwrap() + FRAME_HEADER_BYTES + 5, 3));
        let mut reopened = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        assert_eq!(reopened.entries().len(), 3);
        assert_eq!(reopened.log_bytes(), end);
        reopened.append_durable(vec![entry(1, 4)]).await.unwrap();
        drop(reopened);

        // Entry 2 was acknowledged (synced, recorded) though not known committed: damage to it
        // refuses the start and cuts nothing.
        let second = usize::try_from(store.offsets[&2]).unwrap();
        assert!(disk.corrupt_bit(&log, second + FRAME_HEADER_BYTES + 3, 1));
        let before = disk.contents(&log).unwrap();
        let error = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .err()
            .unwrap();
        let line = error.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("/data/controller/log"), "{line}");
        assert!(
            line.contains(&format!(
                "frame CRC mismatch at byte {second} (entry 2), at or below entry 4, which this voter synced and may have acknowledged"
            )),
            "{line}"
        );
        assert_eq!(disk.contents(&log).unwrap(), before);
    });
}

#[test]
fn a_damaged_state_file_refuses_the_start() {
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        store.save_vote_durable(Vote::new(3, 1)).await.unwrap();
        let state = data_dir().join(CONTROLLER_DIR_NAME).join(STATE_FILE);
        assert!(disk.corrupt_bit(&state, 10, 0));
        let error = ControllerLogStore::open(disk, &data_dir())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(error, ControllerStoreError::Corrupt { .. }),
            "{error}"
        );
    });
}

#[test]
fn purge_shrinks_the_file_and_survives_a_restart() {
    runtime().block_on(async {
        let disk = SimDisk::new(10);
        let mut store = ControllerLogStore::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        store
            .append_durable((1..=20).map(|index| entry(1, index)).collect())
            .await
            .unwrap();
        let before = store.log_bytes();
        let purged = LogId::new(CommittedLeaderId::new(1, 1), 15);
        RaftLogStorage::purge(&mut store, purged).await.unwrap();
        assert!(store.log_bytes() < before / 3);
        disk.crash();
        let mut reopened = ControllerLogStore::open(disk, &data_dir()).await.unwrap();
        let indexes: Vec<u64> = reopened.entries().iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (16..=20).collect::<Vec<_>>());
        let state = RaftLogStorage::get_log_state(&mut reopened).await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(purged));
        assert_eq!(state.last_log_id.map(|id| id.index), Some(20));
    });
}

#[test]
fn a_damaged_snapshot_refuses_the_start_and_a_sound_one_restores_the_image() {
    use openraft::storage::RaftStateMachine;
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let mut machine = ControllerStateMachine::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        let mut create = entry(1, 1);
        create.payload = EntryPayload::Normal(ControllerRequest {
            records: vec![MetadataRecord::CreateTopic {
                name: "orders".to_owned(),
                topic_id: TopicId([1; 16]),
                configs: BTreeMap::new(),
                partitions: Vec::new(),
            }],
        });
        machine.apply(vec![create]).await.unwrap();
        let mut builder = machine.get_snapshot_builder().await;
        openraft::RaftSnapshotBuilder::build_snapshot(&mut builder)
            .await
            .unwrap();
        disk.crash();
        let restored = ControllerStateMachine::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        assert!(restored.subscribe().borrow().topics.contains_key("orders"));

        let snapshot = data_dir().join(CONTROLLER_DIR_NAME).join("snapshot");
        assert!(disk.corrupt_bit(&snapshot, 20, 2));
        let error = ControllerStateMachine::open(disk, &data_dir())
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("frame CRC mismatch"), "{error}");
    });
}

fn create_topic_entry(index: u64, name: &str) -> ControllerEntry {
    let mut create = entry(1, index);
    create.payload = EntryPayload::Normal(ControllerRequest {
        records: vec![MetadataRecord::CreateTopic {
            name: name.to_owned(),
            topic_id: TopicId([u8::try_from(index).unwrap(); 16]),
            configs: BTreeMap::new(),
            partitions: Vec::new(),
        }],
    });
    create
}

/// Review finding 3: a snapshot builder holds a copy of the image from when it was made;
/// if it finishes after a newer snapshot was stored (built later, or installed from the
/// leader), it must not replace it. Builds and installs that run at once never mix their
/// bytes. Method: builders taken at index 1 and 2 finish in the wrong order; then a build
/// and an install of index 9 run concurrently; the stored snapshot is reopened each time.
#[test]
fn an_older_snapshot_never_replaces_a_newer_one() {
    use openraft::storage::RaftStateMachine;
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let mut machine = ControllerStateMachine::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        machine
            .apply(vec![create_topic_entry(1, "first")])
            .await
            .unwrap();
        let mut older = machine.get_snapshot_builder().await;
        machine
            .apply(vec![create_topic_entry(2, "second")])
            .await
            .unwrap();
        let mut newer = machine.get_snapshot_builder().await;
        openraft::RaftSnapshotBuilder::build_snapshot(&mut newer)
            .await
            .unwrap();
        let late = openraft::RaftSnapshotBuilder::build_snapshot(&mut older)
            .await
            .unwrap();
        assert_eq!(late.meta.last_log_id.map(|id| id.index), Some(1));
        disk.crash();
        let mut reopened = ControllerStateMachine::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        let (applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index), Some(2));
        assert!(reopened.subscribe().borrow().topics.contains_key("second"));

        // A build of index 2 and an install of index 9 at once: the file ends at 9.
        let mut image = reopened.subscribe().borrow().as_ref().clone();
        image.topics.clear();
        let installed = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 9)),
            last_membership: Default::default(),
            snapshot_id: "installed".to_owned(),
        };
        let mut builder = reopened.get_snapshot_builder().await;
        let (built, install) = tokio::join!(
            openraft::RaftSnapshotBuilder::build_snapshot(&mut builder),
            reopened.install_snapshot(&installed, Box::new(Cursor::new(image.to_snapshot())))
        );
        built.unwrap();
        install.unwrap();
        let current = reopened.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, "installed");
        disk.crash();
        let mut last = ControllerStateMachine::open(disk.clone(), &data_dir())
            .await
            .unwrap();
        let (applied, _) = last.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index), Some(9));
        // No temporary file is left behind.
        let names = disk
            .list_dir(&data_dir().join(CONTROLLER_DIR_NAME))
            .await
            .unwrap();
        assert!(
            names.iter().all(|name| !name.ends_with(".tmp")),
            "{names:?}"
        );
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever bytes the files hold, opening never panics: it recovers (a log with no
    /// committed index may be cut to its whole frames) or refuses with a clear error.
    #[test]
    fn arbitrary_file_contents_never_panic_on_open(
        log in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        state in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)),
        snapshot in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)),
    ) {
        runtime().block_on(async {
            let disk = SimDisk::new(12);
            drop(ControllerLogStore::open(disk.clone(), &data_dir()).await.unwrap());
            let dir = data_dir().join(CONTROLLER_DIR_NAME);
            assert!(disk.append_durable(&dir.join(LOG_FILE), &log));
            if let Some(state) = &state {
                replace_file(&disk, &dir, STATE_FILE, state.clone()).await.unwrap();
            }
            if let Some(snapshot) = &snapshot {
                replace_file(&disk, &dir, "snapshot", snapshot.clone()).await.unwrap();
            }
            match ControllerLogStore::open(disk.clone(), &data_dir()).await {
                Ok(store) => assert!(store.log_bytes() <= log.len() as u64),
                Err(error) => assert!(matches!(error, ControllerStoreError::Corrupt { .. }), "{error}"),
            }
            if let Err(error) = ControllerStateMachine::open(disk, &data_dir()).await {
                assert!(matches!(error, ControllerStoreError::Corrupt { .. }), "{error}");
            }
        });
    }
}

// Goal: a read of an empty or inverted range of the log answers nothing, never a panic
// (openraft asked for `since..end` with `since > end` once: simulator seed 622). Method:
// a store with entries 1-10, read over ranges of every bound shape.
#[test]
fn reading_an_inverted_or_empty_range_answers_nothing() {
    runtime().block_on(async {
        let mut store = ControllerLogStore::open(SimDisk::new(11), &data_dir())
            .await
            .unwrap();
        store
            .append_durable((1..=10).map(|index| entry(1, index)).collect())
            .await
            .unwrap();
        let indexes = |entries: Vec<ControllerEntry>| -> Vec<u64> {
            entries.iter().map(|entry| entry.log_id.index).collect()
        };
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = 8..3;
        assert!(
            store
                .try_get_log_entries(inverted)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.try_get_log_entries(5..5).await.unwrap().is_empty());
        assert!(
            store
                .try_get_log_entries(u64::MAX..)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            indexes(store.try_get_log_entries(3..=5).await.unwrap()),
            vec![3, 4, 5]
        );
        assert_eq!(
            indexes(store.try_get_log_entries(9..).await.unwrap()),
            vec![9, 10]
        );
        assert_eq!(
            indexes(store.try_get_log_entries(..=u64::MAX).await.unwrap()).len(),
            10
        );
    });
}

#[test]
fn the_controller_directory_is_made_or_narrowed_to_the_node_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join(CONTROLLER_DIR_NAME);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert!(!restrict_controller_dir(data_dir.path()).unwrap());
    assert_eq!(mode(&dir), 0o700);
    // An older directory (0755) is narrowed, once.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(restrict_controller_dir(data_dir.path()).unwrap());
    assert_eq!(mode(&dir), 0o700);
    assert!(!restrict_controller_dir(data_dir.path()).unwrap());
}
