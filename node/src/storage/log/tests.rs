//! Partition log tests: behaviour on the simulated disk, a seeded crash swarm, faults, and a
//! real process killed with SIGKILL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::{
    BatchIter, Compression, EncodeOptions, Header, Record, decode_batch, encode_batch,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ledge_protocol::{
    BATCH_HEADER_BYTES, BatchError, DecodeLimits, encode_batch_with_deltas, set_base_offset,
    set_partition_leader_epoch, validate_batch,
};

use super::open::write_new_file;
use super::*;
use crate::clock::{Clock, ManualClock, SimClock, SystemClock};
use crate::sim::{self, SimDisk};
use crate::storage::checkpoint::Checkpoint;
use crate::storage::disk::OpenMode;
use crate::storage::disk::{BackendChoice, SystemDisk};
use crate::storage::recovery::PARTITION_LEADER_EPOCH;
use crate::storage::segment;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

/// A batch of `count` records tagged `tag`, timestamps from `timestamp`.
fn batch(tag: u64, count: usize, timestamp: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: timestamp + number as i64,
            key: Some(Bytes::from(format!("key-{tag}"))),
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        batch_bytes_max: 2048,
        commit_bytes_max: 4096,
        recovery_read_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Every batch readable from the log start to the high watermark, checked for validity and
/// density: (base offset, last offset, bytes).
async fn read_all<D: Disk>(log: &PartitionLog<D>) -> Vec<(i64, i64, Bytes)> {
    read_all_checked(log, true).await
}

/// As `read_all`; with `dense` false (compacted logs) offsets only have to ascend.
async fn read_all_checked<D: Disk>(log: &PartitionLog<D>, dense: bool) -> Vec<(i64, i64, Bytes)> {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    let mut expected_base: Option<i64> = None;
    while offset < log.high_watermark() {
        let read = log.read(offset, 1000).await.unwrap();
        assert!(
            !read.bytes.is_empty(),
            "no bytes at {offset} below the high watermark"
        );
        for item in BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            validate_batch(bytes).unwrap();
            if let Some(expected) = expected_base {
                if dense {
                    assert_eq!(header.base_offset, expected, "offsets must be dense");
                } else {
                    assert!(header.base_offset >= expected, "offsets must ascend");
                }
            }
            expected_base = Some(header.last_offset() + 1);
            batches.push((
                header.base_offset,
                header.last_offset(),
                read.bytes.slice_ref(bytes),
            ));
            offset = header.last_offset() + 1;
        }
    }
    batches
}

fn values(batch: &[u8]) -> Vec<String> {
    decode_batch(&Bytes::copy_from_slice(batch), &Default::default())
        .unwrap()
        .records
        .iter()
        .map(|record| String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

const DIR: &str = "/data/topic-0";

// Goal: appends get dense offsets stamped by the log, and read back whole and in order.
#[test]
fn appends_are_stamped_and_read_back_in_order() {
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let log = PartitionLog::open(disk, Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        assert_eq!((log.log_start_offset(), log.high_watermark()), (0, 0));
        for tag in 0..10 {
            let outcome = log
                .append(batch(tag, 3, 1000), AppendDurability::Synced)
                .await
                .unwrap();
            assert_eq!(
                outcome,
                AppendOutcome {
                    base_offset: tag as i64 * 3,
                    last_offset: tag as i64 * 3 + 2
                }
            );
        }
        assert_eq!(log.high_watermark(), 30);
        let all = read_all(&log).await;
        assert_eq!(all.len(), 10);
        assert_eq!(values(&all[4].2), ["value-4-0", "value-4-1", "value-4-2"]);
        // From an offset inside a batch, the batch containing it comes first.
        let read = log.read(13, 1).await.unwrap();
        let first = BatchIter::new(&read.bytes).next().unwrap().unwrap().0;
        assert_eq!((first.base_offset, first.last_offset()), (12, 14));
        // A max_bytes smaller than one batch still returns that one whole batch, and only it.
        assert_eq!(BatchIter::new(&read.bytes).count(), 1);
        // At the high watermark: empty. Beyond it: out of range.
        assert!(log.read(30, 1000).await.unwrap().bytes.is_empty());
        assert!(matches!(
            log.read(31, 1000).await,
            Err(ReadError::OffsetOutOfRange { requested: 31, .. })
        ));
        assert!(matches!(
            log.read(-1, 1000).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
    });
}

// Goal: bad batches are refused before they reach the writer, and nothing is stored.
#[test]
fn invalid_and_oversized_batches_are_refused() {
    runtime().block_on(async {
        let disk = SimDisk::new(2);
        let config = LogConfig {
            batch_bytes_max: 200,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(disk, Path::new(DIR), config, clock())
            .await
            .unwrap();
        let mut corrupt = batch(1, 2, 0).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        assert!(matches!(
            log.append(Bytes::from(corrupt), AppendDurability::Synced)
                .await,
            Err(AppendError::InvalidBatch(_))
        ));
        assert!(matches!(
            log.append(Bytes::from_static(b"short"), AppendDurability::Synced)
                .await,
            Err(AppendError::InvalidBatch(_))
        ));
        assert!(matches!(
            log.append(batch(2, 20, 0), AppendDurability::Synced).await,
            Err(AppendError::BatchTooLarge { max: 200, .. })
        ));
        // A batch claiming more offsets than records (legal only in compacted logs) is
        // refused, or one request could consume two billion offsets.
        let mut inflated = batch(4, 1, 0).to_vec();
        inflated[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&inflated[21..]);
        inflated[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            log.append(Bytes::from(inflated), AppendDurability::Synced)
                .await,
            Err(AppendError::InvalidBatch(
                BatchError::BadLastOffsetDelta { .. }
            ))
        ));
        assert_eq!(log.high_watermark(), 0);
        log.append(batch(3, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 1);
    });
}

/// `batch` with its header edited to claim `record_count` records spanning
/// `last_offset_delta + 1` offsets, CRC resealed so only the claim is wrong.
fn claiming(batch: &Bytes, record_count: i32, last_offset_delta: i32) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    bytes[57..61].copy_from_slice(&record_count.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

// Goal (issue 11, "First"): four concurrent appends of a one-record batch whose header
// claims 2^31 - 1 records (with the matching last offset delta) are refused for their
// record count; before the fix they passed, were drained into one group spanning more than
// u32 offsets, and the index's `expect` killed the writer task. The log keeps accepting
// valid batches and reopens cleanly.
#[test]
fn inflated_record_counts_are_refused_and_the_writer_survives() {
    runtime().block_on(async {
        let disk = SimDisk::new(21);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        let inflated = claiming(&batch(1, 1, 0), i32::MAX, i32::MAX - 1);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                let inflated = inflated.clone();
                tokio::spawn(async move { log.append(inflated, AppendDurability::Written).await })
            })
            .collect();
        for task in tasks {
            let result = task.await.unwrap();
            assert!(
                matches!(result, Err(AppendError::InvalidRecords(_))),
                "{result:?}"
            );
        }
        let outcome = log
            .append(batch(2, 3, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!((outcome.base_offset, outcome.last_offset), (0, 2));
        log.close().await.unwrap();
        let reopened = PartitionLog::open(disk, Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        assert_eq!(reopened.high_watermark(), 3);
        assert_eq!(read_all(&reopened).await.len(), 1);
    });
}

// Goal (issue 11 follow-up): the append decode limits come from the config
// (`log.append_decompressed_bytes_max`, `log.append_records_max`, `log.append_headers_max`):
// a batch within the defaults but over a lowered limit is refused, naming the key, and
// leaves the log unchanged; batches within the limits are appended.
#[test]
fn lowered_append_decode_limits_refuse_batches_over_them() {
    runtime().block_on(async {
        let disk = SimDisk::new(24);
        let config = LogConfig {
            append_decode_limits: DecodeLimits {
                decompressed_bytes_max: 4096,
                records_max: 3,
                headers_max: 2,
            },
            ..LogConfig::default()
        };
        let log = PartitionLog::open(disk, Path::new(DIR), config, clock())
            .await
            .unwrap();
        let record = |value: Vec<u8>, headers: usize| Record {
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(value)),
            headers: (0..headers)
                .map(|number| Header {
                    key: format!("h{number}"),
                    value: None,
                })
                .collect(),
        };
        // 8 KiB of zeros compresses to a few dozen bytes, far under max.message.bytes.
        let mut compressed = Vec::new();
        for compression in [Compression::Snappy, Compression::Gzip] {
            let options = EncodeOptions {
                compression,
                ..EncodeOptions::default()
            };
            compressed.push(encode_batch(&[record(vec![0; 8192], 0)], &options).unwrap());
        }
        let refused = [
            (compressed[0].clone(), "log.append_decompressed_bytes_max"),
            (compressed[1].clone(), "log.append_decompressed_bytes_max"),
            (batch(1, 4, 0), "log.append_records_max"),
            (
                encode_batch(
                    &[record(vec![1], 2), record(vec![2], 1)],
                    &EncodeOptions::default(),
                )
                .unwrap(),
                "log.append_headers_max",
            ),
        ];
        for (bytes, key) in refused {
            let error = log
                .append(bytes, AppendDurability::Synced)
                .await
                .unwrap_err();
            assert!(matches!(error, AppendError::InvalidRecords(_)), "{error:?}");
            assert!(error.to_string().contains(key), "{key} not in: {error}");
        }
        assert_eq!(log.high_watermark(), 0);
        let options = EncodeOptions {
            compression: Compression::Snappy,
            ..EncodeOptions::default()
        };
        for bytes in [
            batch(2, 3, 0),
            encode_batch(&[record(vec![0; 2048], 2)], &options).unwrap(),
        ] {
            log.append(bytes, AppendDurability::Synced).await.unwrap();
        }
        assert_eq!(log.high_watermark(), 4);
    });
}

// Goal: the roll rule holds per batch, not per group: four concurrent node-rewritten
// batches (`append_with_gaps`, one record each, each spanning 2^31 - 1 offsets) drained
// into one group take more offsets than one segment's 32-bit index can hold, so the writer
// rolls between them instead of panicking; everything reads back and survives a reopen.
#[test]
fn a_group_spanning_more_than_u32_offsets_rolls_between_batches() {
    runtime().block_on(async {
        let disk = SimDisk::new(22);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        let span = i64::from(i32::MAX);
        take_groups_drained();
        // The four tasks run (and queue their appends) before the writer, woken by the
        // first, runs again: the writer drains them as one group, which the assertion
        // below checks so the test cannot pass with the batches written one group each.
        let tasks: Vec<_> = (0..4)
            .map(|tag| {
                let log = log.clone();
                let wide = claiming(&batch(tag, 1, 0), 1, i32::MAX - 1);
                tokio::spawn(
                    async move { log.append_with_gaps(wide, AppendDurability::Synced).await },
                )
            })
            .collect();
        let mut bases = Vec::new();
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            assert_eq!(outcome.last_offset - outcome.base_offset, span - 1);
            bases.push(outcome.base_offset);
        }
        assert_eq!(
            take_groups_drained(),
            [4],
            "the appends must form one group commit"
        );
        bases.sort_unstable();
        assert_eq!(bases, [0, span, 2 * span, 3 * span]);
        assert!(log.segment_count() >= 2, "{} segments", log.segment_count());
        assert_eq!(log.high_watermark(), 4 * span);
        for base in &bases {
            let read = log.read(*base, 1000).await.unwrap();
            let (header, _) = BatchIter::new(&read.bytes).next().unwrap().unwrap();
            assert_eq!(header.base_offset, *base);
        }
        log.close().await.unwrap();
        let reopened = PartitionLog::open(disk, Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        assert_eq!(reopened.high_watermark(), 4 * span);
        let outcome = reopened
            .append(batch(9, 2, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(outcome.base_offset, 4 * span);
    });
}

// Goal: the size rule holds per batch too: a group commit larger than `segment.bytes`
// (allowed: `commit.bytes.max` may exceed it) is split over segments instead of written
// whole into one, so no segment exceeds `segment.bytes`; everything reads back.
#[test]
fn a_group_larger_than_a_segment_is_split_over_segments() {
    runtime().block_on(async {
        let disk = SimDisk::new(23);
        let config = LogConfig {
            commit_bytes_max: 64 * 1024,
            ..small_config()
        };
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
            .await
            .unwrap();
        let tasks: Vec<_> = (0..60)
            .map(|tag| {
                let log = log.clone();
                tokio::spawn(
                    async move { log.append(batch(tag, 3, 0), AppendDurability::Synced).await },
                )
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let infos = log.segment_infos();
        assert!(infos.len() >= 2, "{infos:?}");
        for info in &infos {
            assert!(info.size_bytes <= config.segment_bytes, "{info:?}");
        }
        assert_eq!(read_all(&log).await.len(), 60);
        assert_eq!(log.high_watermark(), 180);
    });
}

// Goal: many appends in flight at once share writes and fdatasyncs (group commit), and
// every one of them is acknowledged with its own offsets.
#[test]
fn concurrent_appends_share_one_fdatasync() {
    runtime().block_on(async {
        let disk = SimDisk::new(3);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        let before = disk.sync_count();
        let mut tasks = Vec::new();
        for tag in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(batch(tag, 1, 0), AppendDurability::Synced).await
            }));
        }
        let mut offsets = Vec::new();
        for task in tasks {
            offsets.push(task.await.unwrap().unwrap().base_offset);
        }
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>());
        let syncs = disk.sync_count() - before;
        // One sync per group plus recovery-point checkpoints; far fewer than 200.
        assert!(syncs < 20, "{syncs} fdatasyncs for 200 concurrent appends");
    });
}

// Goal: the batches of one `append_batches` call share one write and one fdatasync, and
// get dense offsets in their order.
#[test]
fn append_batches_share_one_fdatasync() {
    runtime().block_on(async {
        let disk = SimDisk::new(30);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        // The first sync also stores the recovery checkpoint (a second fdatasync); the
        // manual clock does not move, so no later sync is due to store one.
        log.append(batch(0, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        let before = disk.sync_count();
        let inputs: Vec<AppendInput> = (1..=20)
            .map(|tag| AppendInput {
                batch: batch(tag, 3, 0),
                gaps_allowed: false,
            })
            .collect();
        let outcomes = log
            .append_batches(inputs, AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(disk.sync_count() - before, 1, "one fdatasync for the call");
        let expected: Vec<AppendOutcome> = (0..20)
            .map(|index| AppendOutcome {
                base_offset: 1 + 3 * index,
                last_offset: 3 + 3 * index,
            })
            .collect();
        assert_eq!(outcomes, expected);
        assert_eq!(log.high_watermark(), 61);
        let read = read_all(&log).await;
        assert_eq!(read.len(), 21);
        assert_eq!(
            values(&read[20].2),
            ["value-20-0", "value-20-1", "value-20-2"]
        );
        assert_eq!(
            log.append_batches(Vec::new(), AppendDurability::Synced)
                .await
                .unwrap(),
            []
        );
    });
}

// Goal: a batch of an `append_batches` call that fails its checks, its producer sequence
// or its write stops the call there: the batches before it are appended and reported,
// none after it is appended (even one that would be accepted on its own).
#[test]
fn append_batches_stop_at_the_first_failure() {
    runtime().block_on(async {
        let disk = SimDisk::new(31);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        let input = |batch| AppendInput {
            batch,
            gaps_allowed: false,
        };
        // A bad CRC in the middle: checked on the caller's task.
        let mut damaged = batch(2, 1, 0).to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let inputs = vec![
            input(batch(0, 1, 0)),
            input(batch(1, 1, 0)),
            input(Bytes::from(damaged)),
            input(batch(3, 1, 0)),
        ];
        let error = log
            .append_batches(inputs, AppendDurability::Synced)
            .await
            .unwrap_err();
        assert_eq!((error.index, error.count), (2, 4));
        assert!(
            matches!(error.error, AppendError::InvalidBatch(_)),
            "{error}"
        );
        assert_eq!(
            error.appended,
            [
                AppendOutcome {
                    base_offset: 0,
                    last_offset: 0
                },
                AppendOutcome {
                    base_offset: 1,
                    last_offset: 1
                }
            ]
        );
        assert_eq!(log.high_watermark(), 2);

        // A sequence gap in the middle: the writer refuses it, and the next batch (which
        // continues the sequence of the ones before it) is not appended either.
        let inputs = vec![
            input(idempotent_batch(10, 2, 7, 0, 0)),
            input(idempotent_batch(11, 1, 7, 0, 5)),
            input(idempotent_batch(12, 1, 7, 0, 2)),
        ];
        let error = log
            .append_batches(inputs, AppendDurability::Written)
            .await
            .unwrap_err();
        assert_eq!(error.index, 1);
        assert!(
            matches!(
                error.error,
                AppendError::OutOfOrderSequence {
                    expected: 2,
                    received: 5
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.appended,
            [AppendOutcome {
                base_offset: 2,
                last_offset: 3
            }]
        );
        // The stopped batch was not written: the next offset is still 4, and the batch is
        // accepted afterwards (not answered as a duplicate of an earlier write).
        let outcome = log
            .append(batch(13, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(outcome.base_offset, 4);
        let outcome = log
            .append(idempotent_batch(12, 1, 7, 0, 2), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(outcome.base_offset, 5);

        // A refused write of the first part of a call that spans a roll: the log stays
        // writable, and the part after the roll is not written.
        disk.fail_next_write(libc::ENOSPC);
        let segments = log.segment_count();
        let inputs: Vec<AppendInput> = (0..80).map(|tag| input(batch(100 + tag, 1, 0))).collect();
        let error = log
            .append_batches(inputs, AppendDurability::Synced)
            .await
            .unwrap_err();
        assert_eq!(error.index, 0);
        assert!(matches!(error.error, AppendError::Disk(_)), "{error}");
        assert!(error.appended.is_empty());
        // The writer has handled the whole call once a later append is answered.
        let outcome = log
            .append(batch(200, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(outcome.base_offset, 6, "nothing of the call was appended");
        assert_eq!(
            log.segment_count(),
            segments,
            "no roll for the stopped part"
        );
        assert_eq!(read_all(&log).await.len(), 6);
        assert!(log.fenced_reason().is_none());
    });
}

// Goal: acks=1 appends are acknowledged before the sync but become visible (and counted
// in the record count) only once synced, at the flush interval (on paused time: exactly
// then, not before).
#[tokio::test(start_paused = true)]
async fn written_appends_become_visible_when_synced() {
    let disk = SimDisk::new(4);
    let flush_interval = Duration::from_millis(20);
    let config = LogConfig {
        flush_interval,
        sync_for_readers: false,
        ..LogConfig::default()
    };
    let clock = SimClock::new(1_700_000_000_000);
    let log = PartitionLog::open(disk, Path::new(DIR), config, Arc::new(clock))
        .await
        .unwrap();
    let written_at = clock.now();
    let outcome = log
        .append(batch(0, 2, 0), AppendDurability::Written)
        .await
        .unwrap();
    assert_eq!(outcome.base_offset, 0);
    assert_eq!(log.high_watermark(), 0, "unsynced data must not be visible");
    assert_eq!(log.record_count(), 0, "nor counted as readable records");
    let mut watermark = log.subscribe_high_watermark();
    crate::clock::timeout(
        &clock,
        Duration::from_secs(5),
        watermark.wait_for(|hw| *hw == 2),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(clock.now() - written_at, flush_interval);
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(log.record_count(), 2);
}

// Goal: while a reader waits at the end of the log, acks=1 data is synced at once
// (`sync_for_readers`) rather than at the flush interval; turned off, it waits for the
// interval (on paused time: visible exactly an hour after the write, not a moment before).
#[tokio::test(start_paused = true)]
async fn a_waiting_reader_gets_acks_1_data_synced_at_once() {
    let flush_interval = Duration::from_secs(3600);
    for sync_for_readers in [true, false] {
        let disk = SimDisk::new(4);
        let config = LogConfig {
            flush_interval,
            sync_for_readers,
            ..LogConfig::default()
        };
        let clock = SimClock::new(1_700_000_000_000);
        let log = PartitionLog::open(disk, Path::new(DIR), config, Arc::new(clock))
            .await
            .unwrap();
        // Written before the reader arrives, then after it waits.
        let written_at = clock.now();
        log.append(batch(0, 2, 0), AppendDurability::Written)
            .await
            .unwrap();
        let mut watermark = log.subscribe_high_watermark();
        crate::clock::timeout(
            &clock,
            2 * flush_interval,
            watermark.wait_for(|hw| *hw == 2),
        )
        .await
        .unwrap()
        .unwrap();
        let waited = clock.now() - written_at;
        let expected = if sync_for_readers {
            Duration::ZERO
        } else {
            flush_interval
        };
        assert_eq!(waited, expected, "sync_for_readers {sync_for_readers}");
        let written_at = clock.now();
        log.append(batch(1, 3, 0), AppendDurability::Written)
            .await
            .unwrap();
        crate::clock::timeout(
            &clock,
            2 * flush_interval,
            watermark.wait_for(|hw| *hw == 5),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(clock.now() - written_at, expected);
        assert_eq!(log.high_watermark(), 5);
    }
}

// Goal: segments roll by size and by age, and a reopened log has the same batches, with
// sealed segments' indexes loaded from their files.
#[test]
fn segments_roll_by_size_and_age_and_survive_reopen() {
    runtime().block_on(async {
        let disk = SimDisk::new(5);
        let manual = ManualClock::new(1_000_000);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let log = PartitionLog::open(
            disk.clone(),
            Path::new(DIR),
            small_config(),
            Arc::clone(&clock),
        )
        .await
        .unwrap();
        for tag in 0..100 {
            log.append(
                batch(tag, 2, 1000 + tag as i64 * 10),
                AppendDurability::Synced,
            )
            .await
            .unwrap();
        }
        let by_size = log.segment_count();
        assert!(by_size >= 3, "expected size rolls, got {by_size} segments");
        manual.advance_ms(8 * 24 * 3600 * 1000);
        log.append(batch(100, 2, 5000), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(log.segment_count(), by_size + 1, "age roll");
        let before = read_all(&log).await;
        log.close().await.unwrap();
        drop(log);
        let names = disk_names(&disk, DIR).await;
        assert!(names.iter().any(|name| name.ends_with(".index")));
        assert!(names.iter().any(|name| name.ends_with(".timeindex")));
        let log = PartitionLog::open(disk, Path::new(DIR), small_config(), clock)
            .await
            .unwrap();
        assert_eq!(log.segment_count(), by_size + 1);
        assert_eq!(read_all(&log).await, before);
        assert_eq!(log.high_watermark(), 202);
    });
}

async fn disk_names<D: Disk>(disk: &D, directory: &str) -> Vec<String> {
    disk.list_dir(Path::new(directory)).await.unwrap()
}

// Goal: lookup by timestamp finds the first record at or after the time, across segments
// and after reopen (Kafka's offsets_for_times).
#[test]
fn offsets_for_times_finds_the_first_record_at_or_after() {
    runtime().block_on(async {
        let disk = SimDisk::new(6);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        // Batch k holds offsets 3k..3k+2 with timestamps 100k..100k+2.
        for tag in 0..30u64 {
            log.append(batch(tag, 3, tag as i64 * 100), AppendDurability::Synced)
                .await
                .unwrap();
        }
        for reopen in [false, true] {
            let log = if reopen {
                log.close().await.unwrap();
                PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
                    .await
                    .unwrap()
            } else {
                log.clone()
            };
            assert_eq!(log.offset_for_timestamp(0).await.unwrap(), Some((0, 0)));
            assert_eq!(log.offset_for_timestamp(1).await.unwrap(), Some((1, 1)));
            assert_eq!(log.offset_for_timestamp(3).await.unwrap(), Some((3, 100)));
            assert_eq!(
                log.offset_for_timestamp(1502).await.unwrap(),
                Some((47, 1502))
            );
            assert_eq!(
                log.offset_for_timestamp(2902).await.unwrap(),
                Some((89, 2902))
            );
            assert_eq!(log.offset_for_timestamp(2903).await.unwrap(), None);
        }
    });
}

// Goal: delete_before moves the log start durably, removes whole segments below it, keeps
// the rest readable, and refuses offsets past the high watermark.
#[test]
fn delete_before_moves_log_start_and_removes_segments() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        for tag in 0..120 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let segments = log.segment_count();
        assert!(segments >= 3);
        assert!(matches!(
            log.delete_before(241).await,
            Err(DeleteError::BeyondHighWatermark {
                requested: 241,
                high_watermark: 240
            })
        ));
        assert_eq!(log.delete_before(201).await.unwrap(), 201);
        assert_eq!(log.log_start_offset(), 201);
        assert!(log.segment_count() < segments);
        assert!(matches!(
            log.read(200, 100).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        let read = log.read(201, 100).await.unwrap();
        let first = BatchIter::new(&read.bytes).next().unwrap().unwrap().0;
        assert_eq!(
            first.base_offset, 200,
            "the batch containing the log start is served"
        );
        // Lower requests are no-ops.
        assert_eq!(log.delete_before(10).await.unwrap(), 201);
        log.close().await.unwrap();
        let log = PartitionLog::open(disk, Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 201);
        assert_eq!(log.high_watermark(), 240);
    });
}

// Goal: moving the log start (DeleteRecords, retention) moves the leader-epoch checkpoint
// with it, durably: the epochs wholly below the start go, the one holding it starts at it
// (as Kafka's cache does, and as a reopen would make it), so OffsetForLeaderEpoch never
// answers an offset below the log.
#[test]
fn delete_before_moves_the_leader_epochs_with_the_log_start() {
    use crate::storage::leader_epoch::EpochEntry;
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        for tag in 0..5 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        log.set_leader_epoch(3).await.unwrap();
        for tag in 5..10 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let entry = |epoch, start_offset| EpochEntry {
            epoch,
            start_offset,
        };
        assert_eq!(log.leader_epochs().entries(), &[entry(0, 0), entry(3, 10)]);
        assert_eq!(log.delete_before(4).await.unwrap(), 4);
        assert_eq!(log.leader_epochs().entries(), &[entry(0, 4), entry(3, 10)]);
        assert_eq!(log.delete_before(12).await.unwrap(), 12);
        assert_eq!(log.leader_epochs().entries(), &[entry(3, 12)]);
        log.close().await.unwrap();
        let log = PartitionLog::open(disk, Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs().entries(), &[entry(3, 12)]);
        assert_eq!(log.log_start_offset(), 12);
    });
}

// Goal: a full disk fails the append with a clear error, rolls back, keeps the log
// readable and writable once space returns, and loses nothing acknowledged.
#[test]
fn out_of_space_fails_the_append_and_keeps_the_log() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        for tag in 0..5 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        disk.set_space_bytes_max(Some(disk.used_bytes() + 50));
        let error = log
            .append(batch(5, 10, 0), AppendDurability::Synced)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AppendError::Disk(disk_error) if disk_error.is_out_of_space()),
            "{error}"
        );
        assert!(
            error.to_string().contains("00000000000000000000.log"),
            "error names the file: {error}"
        );
        assert!(log.fenced_reason().is_none());
        assert_eq!(read_all(&log).await.len(), 5);
        disk.set_space_bytes_max(None);
        let outcome = log
            .append(batch(6, 2, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(
            outcome.base_offset, 10,
            "the failed append consumed no offsets"
        );
        let all = read_all(&log).await;
        assert_eq!(all.len(), 6);
        assert_eq!(values(&all[5].2), ["value-6-0", "value-6-1"]);
    });
}

// Goal: a failed fdatasync fences the log (never retried), reads keep working, and a
// reopen verifies the files and keeps every acknowledged batch but not the failed one.
#[test]
fn failed_fdatasync_fences_and_reopen_verifies() {
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        for tag in 0..5 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        disk.fail_next_sync(libc::EIO);
        let error = log
            .append(batch(5, 2, 0), AppendDurability::Synced)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, AppendError::Fenced { reason } if reason.contains("fdatasync")),
            "{error}"
        );
        assert!(matches!(
            log.append(batch(6, 2, 0), AppendDurability::Synced).await,
            Err(AppendError::Fenced { .. })
        ));
        assert_eq!(log.high_watermark(), 10);
        assert_eq!(read_all(&log).await.len(), 5);
        let log = log.reopen(disk.clone(), clock()).await.unwrap();
        assert!(log.fenced_reason().is_none());
        assert_eq!(
            log.high_watermark(),
            10,
            "the batch whose sync failed was cut"
        );
        log.append(batch(7, 2, 0), AppendDurability::Synced)
            .await
            .unwrap();
        let all = read_all(&log).await;
        assert_eq!(all.len(), 6);
        assert_eq!(values(&all[5].2), ["value-7-0", "value-7-1"]);
    });
}

// Goal: a write that fails with EIO fences the log the same way.
#[test]
fn failed_write_fences_the_log() {
    runtime().block_on(async {
        let disk = SimDisk::new(10);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        log.append(batch(0, 2, 0), AppendDurability::Synced)
            .await
            .unwrap();
        disk.fail_next_write(libc::EIO);
        assert!(matches!(
            log.append(batch(1, 2, 0), AppendDurability::Synced).await,
            Err(AppendError::Fenced { .. })
        ));
        assert_eq!(read_all(&log).await.len(), 1);
    });
}

// Goal: a torn tail above the recovery point is truncated at the last whole batch.
#[test]
fn torn_tail_is_truncated_on_open() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        for tag in 0..3 {
            log.append(batch(tag, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        log.close().await.unwrap();
        drop(log);
        // Half a batch after the last synced one, as a crash mid-write leaves it.
        let segment = PathBuf::from(DIR).join("00000000000000000000.log");
        let half = batch(9, 4, 0);
        assert!(disk.append_durable(&segment, &half[..half.len() / 2]));
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 6);
        assert_eq!(read_all(&log).await.len(), 3);
        assert_eq!(
            log.append(batch(3, 1, 0), AppendDurability::Synced)
                .await
                .unwrap()
                .base_offset,
            6
        );
    });
}

// Goal: damage below the recovery point is not truncated: opening the partition fails with
// the file and byte position, and a neighbouring partition on the same disk opens and
// works (the broker test `a_damaged_partition_is_offline_and_others_serve` shows the node
// serving around it).
#[test]
fn corruption_below_recovery_point_is_reported_not_truncated() {
    runtime().block_on(async {
        let disk = SimDisk::new(12);
        let root = Path::new("/data");
        for partition in 0..2 {
            let directory = root.join(format!("orders-{partition}"));
            let log = PartitionLog::open(disk.clone(), &directory, LogConfig::default(), clock())
                .await
                .unwrap();
            for tag in 0..4 {
                log.append(batch(tag, 2, 0), AppendDurability::Synced)
                    .await
                    .unwrap();
            }
            log.close().await.unwrap();
        }
        // Flip a bit inside the second batch of partition 1 (synced and checkpointed).
        let segment = root.join("orders-1/00000000000000000000.log");
        let second_batch = 16 + batch(0, 2, 0).len() + 30;
        assert!(disk.corrupt_bit(&segment, second_batch, 3));
        let error = PartitionLog::open(
            disk.clone(),
            &root.join("orders-1"),
            LogConfig::default(),
            clock(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(
            message.contains("orders-1/00000000000000000000.log"),
            "{message}"
        );
        assert!(
            message.contains(&format!("byte {}", 16 + batch(0, 2, 0).len())),
            "{message}"
        );
        let healthy = PartitionLog::open(
            disk.clone(),
            &root.join("orders-0"),
            LogConfig::default(),
            clock(),
        )
        .await
        .unwrap();
        assert_eq!(read_all(&healthy).await.len(), 4);
        healthy
            .append(batch(9, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        // Nothing was truncated: the damaged file still has all its bytes.
        assert_eq!(
            disk.contents(&segment).unwrap().len(),
            16 + 4 * batch(0, 2, 0).len()
        );
    });
}

/// A batch of `count` records tagged `tag`, stamped as the log would stamp it at `base`.
fn stamped_batch(tag: u64, count: usize, base: i64) -> Vec<u8> {
    let mut bytes = batch(tag, count, 0).to_vec();
    set_base_offset(&mut bytes, base).unwrap();
    set_partition_leader_epoch(&mut bytes, PARTITION_LEADER_EPOCH).unwrap();
    bytes
}

/// Opens `DIR` on `disk` with `config`, appends `batches` batches of 3 records synced, and
/// loses power before the log is closed (so the checkpoint is only what syncs wrote).
async fn synced_batches_then_crash(disk: &SimDisk, config: &LogConfig, batches: u64) {
    let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
        .await
        .unwrap();
    for tag in 0..batches {
        log.append(batch(tag, 3, 0), AppendDurability::Synced)
            .await
            .unwrap();
    }
    disk.crash();
    drop(log);
}

// Goal: a bit flip in the middle of the active segment, followed by valid batches, takes the
// partition offline with the file and byte position, and truncates nothing, whether the
// checkpoint was deleted or only lags (the damage is above its recovery point). Before, both
// were taken as a torn tail and every acknowledged batch after the flip was cut.
#[test]
fn damage_followed_by_valid_batches_is_reported_not_truncated() {
    runtime().block_on(async {
        for case in ["checkpoint deleted", "checkpoint lags"] {
            let disk = SimDisk::new(15);
            // An hour between checkpoints: only the first sync advances the recovery point.
            let config = LogConfig {
                recovery_checkpoint_interval: Duration::from_secs(3600),
                ..LogConfig::default()
            };
            synced_batches_then_crash(&disk, &config, 20).await;
            let directory = PathBuf::from(DIR);
            if case == "checkpoint deleted" {
                disk.remove_file(&directory.join("checkpoint"))
                    .await
                    .unwrap();
            }
            let segment = directory.join("00000000000000000000.log");
            let batch_bytes = batch(0, 3, 0).len();
            let length_before = disk.contents(&segment).unwrap().len();
            let tenth_batch = 16 + 9 * batch_bytes;
            assert!(disk.corrupt_bit(&segment, tenth_batch + 40, 5));
            let error = PartitionLog::open(disk.clone(), &directory, config.clone(), clock())
                .await
                .err()
                .unwrap_or_else(|| panic!("{case}: the damaged partition opened"));
            let message = error.to_string();
            assert!(
                matches!(error, OpenError::Corrupt { .. }),
                "{case}: {message}"
            );
            assert!(
                message.contains("00000000000000000000.log")
                    && message.contains(&format!("byte {tenth_batch}"))
                    && message.contains("valid batches follow"),
                "{case}: {message}"
            );
            assert_eq!(
                disk.contents(&segment).unwrap().len(),
                length_before,
                "{case}: nothing may be truncated"
            );
        }
    });
}

// Goal: a bit flip in the LAST batch of the active segment, with the checkpoint deleted or
// lagging (the damage is above its recovery point), takes the partition offline with the
// file, byte and first affected offset, and truncates nothing: no valid batch follows, but
// the batch is whole and shows no lost sector, so it is not an unfinished write. Restoring
// the byte brings every record back. Before, it was cut as a torn tail.
#[test]
fn damage_in_the_final_batch_is_reported_not_truncated() {
    runtime().block_on(async {
        for case in ["checkpoint deleted", "checkpoint lags"] {
            let disk = SimDisk::new(18);
            let config = LogConfig {
                recovery_checkpoint_interval: Duration::from_secs(3600),
                ..LogConfig::default()
            };
            synced_batches_then_crash(&disk, &config, 20).await;
            let directory = PathBuf::from(DIR);
            if case == "checkpoint deleted" {
                disk.remove_file(&directory.join("checkpoint"))
                    .await
                    .unwrap();
            }
            let segment = directory.join("00000000000000000000.log");
            let length_before = disk.contents(&segment).unwrap().len();
            let last_batch = length_before - batch(19, 3, 0).len();
            assert!(disk.corrupt_bit(&segment, last_batch + 40, 5));
            let error = PartitionLog::open(disk.clone(), &directory, config.clone(), clock())
                .await
                .err()
                .unwrap_or_else(|| panic!("{case}: the damaged partition opened"));
            let message = error.to_string();
            assert!(
                matches!(error, OpenError::Corrupt { .. }),
                "{case}: {message}"
            );
            assert!(
                message.contains("00000000000000000000.log")
                    && message.contains(&format!("byte {last_batch}"))
                    && message.contains("offset 57"),
                "{case}: {message}"
            );
            assert_eq!(
                disk.contents(&segment).unwrap().len(),
                length_before,
                "{case}: nothing may be truncated"
            );
            // Restoring the byte brings every acknowledged record back.
            assert!(disk.corrupt_bit(&segment, last_batch + 40, 5));
            let log = PartitionLog::open(disk.clone(), &directory, config.clone(), clock())
                .await
                .unwrap();
            assert_eq!(log.high_watermark(), 60, "{case}");
            assert_eq!(read_all(&log).await.len(), 20, "{case}");
            log.close().await.unwrap();
        }
    });
}

// Goal: a crash that loses a sector of an unsynced append while a later sector (holding a
// whole later batch) survives is still a torn tail: it is truncated, not reported.
#[test]
fn a_lost_sector_before_a_surviving_batch_is_a_torn_tail() {
    runtime().block_on(async {
        let disk = SimDisk::new(16);
        let config = LogConfig::default();
        synced_batches_then_crash(&disk, &config, 2).await;
        let segment = PathBuf::from(DIR).join("00000000000000000000.log");
        let end = disk.contents(&segment).unwrap().len();
        // An unsynced batch over several sectors, one of them lost (zeros), then a whole
        // later batch that survived.
        let mut torn = stamped_batch(7, 120, 6);
        assert!(torn.len() > 3 * sim::disk::SECTOR_BYTES);
        let lost = (end / sim::disk::SECTOR_BYTES + 1) * sim::disk::SECTOR_BYTES - end;
        torn[lost..lost + sim::disk::SECTOR_BYTES].fill(0);
        torn.extend_from_slice(&stamped_batch(8, 2, 126));
        assert!(disk.append_durable(&segment, &torn));
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config, clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 6);
        assert_eq!(disk.contents(&segment).unwrap().len(), end);
    });
}

// Goal: without a checkpoint, zeroed sectors followed by valid batches are not taken for a
// torn write: with no recovery point, those batches may have been synced and acknowledged
// long ago, and the zeros be media damage. The partition goes offline and nothing is cut
// (before, the valid batches after the zeros were truncated with them).
#[test]
fn zeroed_sectors_before_valid_batches_without_a_checkpoint_are_damage() {
    runtime().block_on(async {
        let disk = SimDisk::new(19);
        let config = LogConfig::default();
        synced_batches_then_crash(&disk, &config, 2).await;
        let segment = PathBuf::from(DIR).join("00000000000000000000.log");
        let end = disk.contents(&segment).unwrap().len();
        let mut zeroed = stamped_batch(7, 120, 6);
        let lost = (end / sim::disk::SECTOR_BYTES + 1) * sim::disk::SECTOR_BYTES - end;
        zeroed[lost..lost + sim::disk::SECTOR_BYTES].fill(0);
        zeroed.extend_from_slice(&stamped_batch(8, 2, 126));
        assert!(disk.append_durable(&segment, &zeroed));
        let length_before = disk.contents(&segment).unwrap().len();
        disk.remove_file(&PathBuf::from(DIR).join("checkpoint"))
            .await
            .unwrap();
        let opened = PartitionLog::open(disk.clone(), Path::new(DIR), config, clock()).await;
        match opened {
            Err(OpenError::Corrupt { reason, .. }) => {
                assert!(reason.contains("valid batches follow"), "{reason}")
            }
            Err(other) => panic!("unexpected open error: {other}"),
            Ok(_) => panic!("the damaged partition opened"),
        }
        assert_eq!(disk.contents(&segment).unwrap().len(), length_before);
    });
}

// Goal: recovery does not apply today's max.message.bytes to stored batches: a batch
// accepted under a larger limit stays readable after the limit is lowered and the node
// restarts. Before, recovery called it corruption ("batch length ... exceeds the limit").
#[test]
fn lowering_max_message_bytes_keeps_stored_batches_readable() {
    runtime().block_on(async {
        let disk = SimDisk::new(17);
        let large = LogConfig {
            batch_bytes_max: 64 * 1024,
            ..LogConfig::default()
        };
        let big = batch(1, 2000, 0);
        assert!(big.len() > 8 * 1024);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), large, clock())
            .await
            .unwrap();
        log.append(batch(0, 2, 0), AppendDurability::Synced)
            .await
            .unwrap();
        log.append(big.clone(), AppendDurability::Synced)
            .await
            .unwrap();
        log.close().await.unwrap();
        let small = LogConfig {
            batch_bytes_max: 4 * 1024,
            ..LogConfig::default()
        };
        for checkpoint_deleted in [false, true] {
            if checkpoint_deleted {
                // Without the checkpoint, the whole active segment is rescanned.
                disk.remove_file(&PathBuf::from(DIR).join("checkpoint"))
                    .await
                    .unwrap();
            }
            let log = PartitionLog::open(disk.clone(), Path::new(DIR), small.clone(), clock())
                .await
                .unwrap();
            assert_eq!(log.high_watermark(), 2002);
            let all = read_all(&log).await;
            assert_eq!(all.len(), 2);
            assert_eq!(values(&all[1].2).len(), 2000);
            assert!(matches!(
                log.append(big.clone(), AppendDurability::Synced).await,
                Err(AppendError::BatchTooLarge { .. })
            ));
            log.close().await.unwrap();
        }
    });
}

/// Runs every sealed-segment check of `log` to its end; the damage found, oldest first.
async fn verify_all<D: Disk>(log: &PartitionLog<D>) -> Vec<SegmentDamage> {
    use crate::storage::verify::VerifyStep;
    let mut found = Vec::new();
    for mut check in log.sealed_segment_checks() {
        loop {
            match check.step(300, 42).await.unwrap() {
                VerifyStep::Read(bytes) => assert!(bytes > 0),
                VerifyStep::Clean | VerifyStep::Abandoned => break,
                VerifyStep::Damaged(damage) => {
                    found.push(damage);
                    break;
                }
            }
        }
    }
    found
}

// Goal: the background verifier finds a bit flip in a sealed segment of a running log (which
// nothing else reads until a consumer does), names file, position and first offset, and
// from then on reads stop before the damaged range and a read in it fails with that damage,
// never returning the damaged batch or skipping past it in silence.
#[test]
fn the_verifier_finds_damage_in_sealed_segments_and_reads_report_it() {
    runtime().block_on(async {
        let disk = SimDisk::new(18);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        for tag in 0..100 {
            log.append(batch(tag, 3, 0), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let segments = log.segment_infos();
        assert!(segments.len() >= 3, "{segments:?}");
        assert!(verify_all(&log).await.is_empty(), "a healthy log is clean");
        // Flip a bit in the third batch of the second segment.
        let second = segments[1];
        let path = PathBuf::from(DIR).join(segment::segment_file_name(second.base_offset));
        let contents = disk.contents(&path).unwrap();
        let sizes: Vec<u64> = BatchIter::new(&contents[16..])
            .take(2)
            .map(|item| item.unwrap().1.len() as u64)
            .collect();
        let damaged_at = 16 + sizes[0] + sizes[1];
        assert!(disk.corrupt_bit(&path, damaged_at as usize + 70, 2));
        let found = verify_all(&log).await;
        assert_eq!(found.len(), 1, "{found:?}");
        let damage = found[0].clone();
        assert_eq!(damage.path, path);
        assert_eq!(damage.position, damaged_at);
        assert_eq!(damage.first_offset, second.base_offset + 6);
        assert_eq!(damage.found_ms, 42);
        assert!(damage.to_string().contains("CRC"), "{damage}");
        log.report_damage(damage.clone());
        assert_eq!(log.damage(), Some(damage.clone()));
        // Below the damage: whole batches, ending before it.
        let read = log.read(second.base_offset, 1 << 20).await.unwrap();
        let offsets: Vec<i64> = BatchIter::new(&read.bytes)
            .map(|item| item.unwrap().0.base_offset)
            .collect();
        assert_eq!(offsets, vec![second.base_offset, second.base_offset + 3]);
        // At and past it: an error naming it, not the damaged batch and not a skip.
        for offset in [damage.first_offset, damage.first_offset + 1] {
            let error = log.read(offset, 1 << 20).await.unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, ReadError::Corrupt { .. })
                    && message.contains(&path.display().to_string())
                    && message.contains("background verifier"),
                "{message}"
            );
        }
        // Other segments read as before.
        assert!(log.read(0, 1 << 20).await.is_ok());
        assert!(log.read(second.end_offset, 1 << 20).await.is_ok());
    });
}

/// Writes `checkpoint` into its slot of the partition's checkpoint file, as if the node had.
async fn store_checkpoint(disk: &SimDisk, checkpoint: Checkpoint) {
    let file = disk
        .open(&PathBuf::from(DIR).join("checkpoint"), OpenMode::ReadWrite)
        .await
        .unwrap();
    file.write_at(
        checkpoint.slot_position(),
        Bytes::copy_from_slice(&checkpoint.encode()),
    )
    .await
    .unwrap();
    file.sync_data().await.unwrap();
}

/// Opens `DIR`, appends 100 batches of 3 records with `small_config` (several segments)
/// and closes it; returns the segment file names.
async fn closed_log_with_segments(disk: &SimDisk) -> Vec<String> {
    let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
        .await
        .unwrap();
    for tag in 0..100 {
        log.append(batch(tag, 3, 0), AppendDurability::Synced)
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    let names: Vec<String> = disk_names(disk, DIR)
        .await
        .into_iter()
        .filter(|name| name.ends_with(".log"))
        .collect();
    assert!(names.len() >= 3, "{names:?}");
    names
}

// Goal: a checkpoint whose two slots are both damaged (or that is garbage of any length) no
// longer keeps the partition offline: it is rebuilt from the segments and every record is
// there. (Before, the only way out the docs offered was deleting the file by hand.)
#[test]
fn a_damaged_checkpoint_is_rebuilt_from_the_segments() {
    runtime().block_on(async {
        for garbage in [None, Some(5usize), Some(128)] {
            let disk = SimDisk::new(19);
            closed_log_with_segments(&disk).await;
            let path = PathBuf::from(DIR).join("checkpoint");
            match garbage {
                None => {
                    for slot in [0, 64] {
                        assert!(disk.corrupt_bit(&path, slot + 20, 0));
                    }
                }
                Some(length) => {
                    disk.remove_file(&path).await.unwrap();
                    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
                    file.write_at(0, Bytes::from(vec![0x5a; length]))
                        .await
                        .unwrap();
                    file.sync_data().await.unwrap();
                }
            }
            let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
                .await
                .unwrap();
            assert_eq!(log.high_watermark(), 300, "{garbage:?}");
            assert_eq!(read_all(&log).await.len(), 100);
            log.close().await.unwrap();
            let rebuilt = disk.contents(&path).unwrap();
            assert!(Checkpoint::decode(&rebuilt).is_ok(), "{garbage:?}");
        }
    });
}

// Goal: index files cut short or filled with garbage (a crash while sealing, a stray write)
// are rebuilt from their segment, never trusted and never a panic; every record reads back.
#[test]
fn truncated_and_garbage_index_files_are_rebuilt() {
    runtime().block_on(async {
        for damage in ["truncated", "garbage"] {
            let disk = SimDisk::new(21);
            let names = closed_log_with_segments(&disk).await;
            for name in &names[..names.len() - 1] {
                let base = &name[..20];
                for extension in ["index", "timeindex"] {
                    let path = PathBuf::from(DIR).join(format!("{base}.{extension}"));
                    let mut bytes = disk.contents(&path).unwrap();
                    if damage == "truncated" {
                        bytes.truncate(bytes.len().saturating_sub(5));
                    } else {
                        bytes
                            .iter_mut()
                            .for_each(|byte| *byte = byte.wrapping_mul(31) ^ 0xa5);
                    }
                    disk.remove_file(&path).await.unwrap();
                    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
                    file.write_at(0, Bytes::from(bytes)).await.unwrap();
                    file.sync_data().await.unwrap();
                }
            }
            let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
                .await
                .unwrap();
            assert_eq!(log.high_watermark(), 300, "{damage}");
            assert_eq!(read_all(&log).await.len(), 100, "{damage}");
            for offset in [0, 1, 150, 299] {
                let read = log.read(offset, 1).await.unwrap();
                let (header, _) = BatchIter::new(&read.bytes).next().unwrap().unwrap();
                assert!(
                    header.base_offset <= offset && offset <= header.last_offset(),
                    "{damage}: offset {offset}"
                );
            }
        }
    });
}

// Goal: the operator's repair gives up exactly the records asked for. A partition offline
// for damage followed by valid batches is refused a cut above the damage (the error names
// the offset to use), accepts a cut at the damage, and then opens with every record before
// it and appends from there; a cut in an earlier, sealed segment removes the later ones.
#[test]
fn truncate_from_brings_a_damaged_partition_back_with_what_precedes_the_damage() {
    runtime().block_on(async {
        let disk = SimDisk::new(22);
        let config = LogConfig::default();
        synced_batches_then_crash(&disk, &config, 20).await;
        let directory = PathBuf::from(DIR);
        let segment = directory.join("00000000000000000000.log");
        let tenth_batch = 16 + 9 * batch(0, 3, 0).len();
        assert!(disk.corrupt_bit(&segment, tenth_batch + 40, 5));
        let error = PartitionLog::open(disk.clone(), &directory, config.clone(), clock())
            .await
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("should start offset 27"),
            "{error}"
        );
        let refused = crate::storage::repair::truncate_from(&disk, &directory, 30, &config)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("truncate from offset 27"),
            "{refused}"
        );
        let report = crate::storage::repair::truncate_from(&disk, &directory, 27, &config)
            .await
            .unwrap();
        assert_eq!(report.new_end_offset, 27);
        assert_eq!(report.cut_position, tenth_batch as u64);
        let log = PartitionLog::open(disk.clone(), &directory, config.clone(), clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 27);
        assert_eq!(read_all(&log).await.len(), 9);
        let appended = log
            .append(batch(99, 1, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 27);
        log.close().await.unwrap();

        let disk = SimDisk::new(23);
        let names = closed_log_with_segments(&disk).await;
        let report = crate::storage::repair::truncate_from(&disk, &directory, 150, &small_config())
            .await
            .unwrap();
        assert_eq!(report.new_end_offset, 150);
        assert!(!report.removed_segments.is_empty());
        let log = PartitionLog::open(disk.clone(), &directory, small_config(), clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 150);
        assert_eq!(read_all(&log).await.len(), 50);
        assert!(log.segment_count() < names.len());
    });
}

// Goal: checkpoints that pass their checksum but cannot be true are errors naming the file,
// never panics and never deletions or truncations: a recovery point past the end of the
// segment, a log start past the end of the log (which used to delete every sealed segment
// as "an interrupted deletion"), and a sequence no writer reaches (whose `+ 1` overflowed).
#[test]
fn impossible_checkpoints_are_refused_and_nothing_is_deleted() {
    runtime().block_on(async {
        for case in [
            "recovery point past the end",
            "log start past the end",
            "sequence",
        ] {
            let disk = SimDisk::new(20);
            let names = closed_log_with_segments(&disk).await;
            let active: i64 = names.last().unwrap()[..20].parse().unwrap();
            let bytes_before: Vec<Vec<u8>> = names
                .iter()
                .map(|name| disk.contents(&PathBuf::from(DIR).join(name)).unwrap())
                .collect();
            let crafted = Checkpoint {
                sequence: 1000,
                log_start_offset: 0,
                recovery_segment: active,
                recovery_position: 16,
            };
            let (crafted, expected) = match case {
                "recovery point past the end" => (
                    Checkpoint {
                        recovery_position: 1 << 40,
                        ..crafted
                    },
                    "shorter than its recovery point",
                ),
                "log start past the end" => (
                    Checkpoint {
                        log_start_offset: 1_000_000_000_000,
                        ..crafted
                    },
                    "past the end of the log",
                ),
                _ => (
                    Checkpoint {
                        sequence: u64::MAX - 1,
                        ..crafted
                    },
                    "beyond any this node writes",
                ),
            };
            store_checkpoint(&disk, crafted).await;
            let error = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
                .await
                .err()
                .unwrap_or_else(|| panic!("{case}: opened"));
            let message = error.to_string();
            assert!(
                message.contains(expected) && message.contains(DIR),
                "{case}: {message}"
            );
            let bytes_after: Vec<Vec<u8>> = names
                .iter()
                .map(|name| disk.contents(&PathBuf::from(DIR).join(name)).unwrap())
                .collect();
            assert_eq!(bytes_before, bytes_after, "{case}: segments untouched");
        }
    });
}

// Goal: foreign files, newer formats and unreadable checkpoints are refused by name.
#[test]
fn foreign_and_newer_files_are_refused_by_name() {
    runtime().block_on(async {
        for case in ["foreign", "newer segment", "foreign segment"] {
            let disk = SimDisk::new(13);
            let log =
                PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
                    .await
                    .unwrap();
            log.append(batch(0, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
            log.close().await.unwrap();
            drop(log);
            let segment = PathBuf::from(DIR).join("00000000000000000000.log");
            let expected = match case {
                "foreign" => {
                    let file = disk
                        .open(&PathBuf::from(DIR).join("notes.txt"), OpenMode::CreateNew)
                        .await
                        .unwrap();
                    file.write_at(0, Bytes::from_static(b"hello"))
                        .await
                        .unwrap();
                    "notes.txt"
                }
                "newer segment" => {
                    assert!(disk.corrupt_bit(&segment, 11, 1));
                    "newer than this build"
                }
                _ => {
                    assert!(disk.corrupt_bit(&segment, 0, 0));
                    "not a Ledge segment"
                }
            };
            let error = PartitionLog::open(disk, Path::new(DIR), LogConfig::default(), clock())
                .await
                .err()
                .unwrap();
            let message = error.to_string();
            assert!(message.contains(expected), "{case}: {message}");
            assert!(
                message.contains(DIR),
                "{case}: error names the path: {message}"
            );
        }
    });
}

// Goal: a read-only filesystem gives a clear error naming the path, not a panic.
#[test]
fn read_only_filesystem_is_a_clear_error() {
    runtime().block_on(async {
        let disk = SimDisk::new(14);
        disk.set_read_only(true);
        let error = PartitionLog::open(disk, Path::new(DIR), LogConfig::default(), clock())
            .await
            .err()
            .unwrap();
        let message = error.to_string();
        assert!(
            message.contains("/data") && message.contains("Read-only"),
            "{message}"
        );
    });
}

/// One acknowledged batch the crash swarm expects to find again.
#[derive(Clone, Debug)]
struct Acked {
    last_offset: i64,
    tag: u64,
    count: usize,
}

// Goal: under seeded random crashes (power loss in the middle of any write, sync, roll or
// checkpoint, with torn and reordered unsynced sectors, and crashes during recovery itself),
// every batch acknowledged as synced is present and intact after recovery, offsets stay
// dense, and nothing half-written is ever visible. Replay one seed with LEDGE_SIM_SEED=<n>.
#[test]
fn crash_swarm_loses_no_acknowledged_batch() {
    for seed in sim::seeds(0, 2000) {
        let result = std::panic::catch_unwind(|| runtime().block_on(crash_iteration(seed)));
        if let Err(panic) = result {
            eprintln!("crash swarm failed with seed {seed}; replay with LEDGE_SIM_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
}

const IDEMPOTENT_PRODUCER: i64 = 4242;

/// The crash swarm's idempotent producer between rounds.
#[derive(Default)]
struct IdempotentProducer {
    next_sequence: i32,
    /// A batch sent but not acknowledged when the power failed: (tag, count, sequence).
    pending: Option<(u64, usize, i32)>,
}

async fn crash_iteration(seed: u64) {
    let disk = SimDisk::new(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de);
    let config = LogConfig {
        segment_bytes: rng.random_range(2048..8192),
        index_interval_bytes: rng.random_range(64..1024),
        batch_bytes_max: 1024,
        commit_bytes_max: rng.random_range(1024..4096),
        recovery_read_bytes: rng.random_range(128..2048),
        recovery_checkpoint_interval: Duration::ZERO,
        ..LogConfig::default()
    };
    let manual = ManualClock::new(1_000_000);
    let clock: Arc<dyn Clock> = Arc::new(manual.clone());
    let acked: Arc<std::sync::Mutex<BTreeMap<i64, Acked>>> = Arc::default();
    let mut deleted_before = 0i64;
    let mut next_tag = 0u64;
    let producer: Arc<std::sync::Mutex<IdempotentProducer>> = Arc::default();
    for _round in 0..4 {
        // Sometimes the power fails again during recovery; recovery must then be redone.
        let log = loop {
            if rng.random_bool(0.2) {
                disk.power_off_after(rng.random_range(0..6));
            }
            match PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                config.clone(),
                Arc::clone(&clock),
            )
            .await
            {
                Ok(log) if !disk.is_powered_off() => break log,
                Ok(_) | Err(_) if disk.is_powered_off() => disk.crash(),
                Ok(_) => unreachable!(),
                Err(error) => panic!("seed {seed}: recovery failed: {error}"),
            }
        };
        disk.power_off_after(u64::MAX);
        let expected = acked.lock().unwrap().clone();
        verify(&log, &expected, deleted_before, seed).await;

        disk.power_off_after(rng.random_range(0..60));
        let mut tasks = Vec::new();
        for _writer in 0..rng.random_range(1..4) {
            let log = log.clone();
            let acked = Arc::clone(&acked);
            let appends = rng.random_range(1..12);
            let mut plan = Vec::new();
            for _ in 0..appends {
                let count = rng.random_range(1..6);
                let durability = if rng.random_bool(0.8) {
                    AppendDurability::Synced
                } else {
                    AppendDurability::Written
                };
                plan.push((next_tag, count, durability));
                next_tag += 1;
            }
            tasks.push(tokio::spawn(async move {
                for (tag, count, durability) in plan {
                    match log.append(batch(tag, count, tag as i64), durability).await {
                        Ok(outcome) => {
                            if durability == AppendDurability::Synced {
                                acked.lock().unwrap().insert(
                                    outcome.base_offset,
                                    Acked {
                                        last_offset: outcome.last_offset,
                                        tag,
                                        count,
                                    },
                                );
                            }
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        // One idempotent producer: it first retries the batch it had in flight when the
        // power failed (as a producer does after reconnecting), then sends new ones. A
        // retry must never be refused and never be written twice.
        {
            let log = log.clone();
            let acked = Arc::clone(&acked);
            let producer = Arc::clone(&producer);
            let mut fresh = Vec::new();
            for _ in 0..rng.random_range(0..6) {
                fresh.push((next_tag, rng.random_range(1..4)));
                next_tag += 1;
            }
            tasks.push(tokio::spawn(async move {
                let pending = producer.lock().unwrap().pending.take();
                let retry = pending.into_iter().map(|(tag, count, sequence)| (tag, count, Some(sequence)));
                let new_batches = fresh.into_iter().map(|(tag, count)| (tag, count, None));
                for (tag, count, sequence) in retry.chain(new_batches) {
                    let sequence = sequence.unwrap_or_else(|| producer.lock().unwrap().next_sequence);
                    let bytes = idempotent_batch(tag, count, IDEMPOTENT_PRODUCER, 0, sequence);
                    match log.append(bytes, AppendDurability::Synced).await {
                        Ok(outcome) => {
                            let mut state = producer.lock().unwrap();
                            state.next_sequence = state.next_sequence.max(sequence + count as i32);
                            acked.lock().unwrap().insert(outcome.base_offset, Acked { last_offset: outcome.last_offset, tag, count });
                        }
                        Err(AppendError::OutOfOrderSequence { expected, received }) => {
                            panic!("seed {seed}: retry of sequence {received} refused, expected {expected}")
                        }
                        Err(_) => {
                            producer.lock().unwrap().pending = Some((tag, count, sequence));
                            return;
                        }
                    }
                }
            }));
        }
        if rng.random_bool(0.3) {
            manual.advance_ms(rng.random_range(0..10_000_000));
        }
        for task in tasks {
            task.await.unwrap();
        }
        if rng.random_bool(0.3) {
            let high_watermark = log.high_watermark();
            let target = rng.random_range(0..=high_watermark);
            if let Ok(start) = log.delete_before(target).await {
                deleted_before = deleted_before.max(start);
            }
        }
        drop(log);
        // Let the writer notice its handles are gone before the power fails.
        tokio::task::yield_now().await;
        disk.crash();
    }
}

async fn verify<D: Disk>(
    log: &PartitionLog<D>,
    acked: &BTreeMap<i64, Acked>,
    deleted_before: i64,
    seed: u64,
) {
    assert!(
        log.log_start_offset() >= deleted_before,
        "seed {seed}: log start went backwards"
    );
    let all = read_all(log).await;
    // Exactly once: no sequence of the idempotent producer is in the log twice.
    let mut sequences = std::collections::BTreeSet::new();
    for (_, _, bytes) in &all {
        let header = BatchHeader::parse(bytes).unwrap();
        if header.producer_id == IDEMPOTENT_PRODUCER {
            assert!(
                sequences.insert(header.base_sequence),
                "seed {seed}: sequence {} written twice",
                header.base_sequence
            );
        }
    }
    let found: BTreeMap<i64, (i64, Bytes)> = all
        .into_iter()
        .map(|(base, last, bytes)| (base, (last, bytes)))
        .collect();
    for (base, expected) in acked {
        if expected.last_offset < log.log_start_offset() {
            continue;
        }
        let Some((last, bytes)) = found.get(base) else {
            panic!(
                "seed {seed}: acknowledged batch at {base} (tag {}) is missing; high watermark {}",
                expected.tag,
                log.high_watermark()
            );
        };
        assert_eq!(*last, expected.last_offset, "seed {seed}");
        let want: Vec<String> = (0..expected.count)
            .map(|number| format!("value-{}-{number}", expected.tag))
            .collect();
        assert_eq!(values(bytes), want, "seed {seed}: batch at {base}");
    }
}

// Goal: the real backends (io_uring and std) survive SIGKILL of a process that appends
// with sync: every offset it printed as acknowledged is there after reopening.
#[test]
fn killed_writer_process_loses_no_acknowledged_batch() {
    if let Ok(directory) = std::env::var("LEDGE_KILL9_CHILD_DIR") {
        kill9_child(Path::new(&directory));
        return;
    }
    let temporary = tempfile::tempdir().unwrap();
    let directory = temporary.path().join("events-0");
    let mut rng = ChaCha8Rng::seed_from_u64(std::process::id().into());
    let mut acked: BTreeMap<u64, (i64, i64)> = BTreeMap::new();
    // Even rounds run on io_uring; where it is unavailable (and not required) they run on
    // std, and the skip is printed.
    let uring = crate::storage::disk::uring_in_tests::uring_disk_or_skip(
        "killed_writer_process_loses_no_acknowledged_batch (its io_uring rounds)",
    )
    .is_some();
    for round in 0..3 {
        let backend = if uring && round % 2 == 0 {
            "io_uring"
        } else {
            "std"
        };
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "storage::log::tests::killed_writer_process_loses_no_acknowledged_batch",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LEDGE_KILL9_CHILD_DIR", &directory)
            .env("LEDGE_KILL9_ROUND", round.to_string())
            .env("LEDGE_KILL9_BACKEND", backend)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_sender, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_sender.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the child to acknowledge something, then kill it at a random moment.
        let started = SystemClock.now();
        let mut first_ack = false;
        while !first_ack && SystemClock.now().duration_since(started) < Duration::from_secs(60) {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
                first_ack |= record_ack(&line, &mut acked);
            } else if let Some(status) = child.try_wait().unwrap() {
                panic!("child exited before acknowledging anything: {status}");
            }
        }
        assert!(first_ack, "child acknowledged nothing in 60 s");
        std::thread::sleep(Duration::from_millis(rng.random_range(10..300)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        while let Ok(line) = lines.try_recv() {
            record_ack(&line, &mut acked);
        }
        let runtime = runtime();
        runtime.block_on(async {
            let disk = SystemDisk::detect(BackendChoice::Auto).unwrap();
            let log = PartitionLog::open(
                disk,
                &directory,
                LogConfig::default(),
                Arc::new(SystemClock),
            )
            .await
            .unwrap();
            let all = read_all(&log).await;
            let found: BTreeMap<i64, Bytes> = all
                .into_iter()
                .map(|(base, _, bytes)| (base, bytes))
                .collect();
            for (tag, (base, last)) in &acked {
                let bytes = found.get(base).unwrap_or_else(|| {
                    panic!("round {round}: acknowledged tag {tag} at offset {base} missing")
                });
                assert_eq!(
                    values(bytes),
                    values(&batch(*tag, (last - base + 1) as usize, 0)),
                    "round {round}: tag {tag}"
                );
            }
            log.close().await.unwrap();
        });
    }
    assert!(acked.len() >= 3);
}

fn record_ack(line: &str, acked: &mut BTreeMap<u64, (i64, i64)>) -> bool {
    let mut fields = line.split_whitespace();
    if fields.next() != Some("ACK") {
        return false;
    }
    let numbers: Vec<i64> = fields.filter_map(|field| field.parse().ok()).collect();
    if let [tag, base, last] = numbers[..] {
        acked.insert(tag as u64, (base, last));
        return true;
    }
    false
}

fn kill9_child(directory: &Path) {
    use std::io::Write;
    let round: u64 = std::env::var("LEDGE_KILL9_ROUND").unwrap().parse().unwrap();
    let backend: BackendChoice = std::env::var("LEDGE_KILL9_BACKEND")
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let disk = SystemDisk::detect(backend).unwrap();
        let config = LogConfig {
            segment_bytes: 256 * 1024,
            batch_bytes_max: 64 * 1024,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(disk, directory, config, Arc::new(SystemClock))
            .await
            .unwrap();
        let (sender, mut receiver) = mpsc::channel::<(u64, AppendOutcome)>(1024);
        // Several concurrent appenders, so kills land inside group commits too.
        for writer in 0..4u64 {
            let log = log.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                for number in 0.. {
                    let tag = round * 1_000_000_000 + writer * 100_000_000 + number;
                    let outcome = log
                        .append(
                            batch(tag, 1 + (number % 5) as usize, 0),
                            AppendDurability::Synced,
                        )
                        .await
                        .unwrap();
                    if sender.send((tag, outcome)).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        let mut stdout = std::io::stdout().lock();
        while let Some((tag, outcome)) = receiver.recv().await {
            writeln!(
                stdout,
                "ACK {tag} {} {}",
                outcome.base_offset, outcome.last_offset
            )
            .unwrap();
            stdout.flush().unwrap();
        }
    });
}

fn idempotent_batch(tag: u64, count: usize, producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: 0,
            key: None,
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    let options = EncodeOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        ..EncodeOptions::default()
    };
    encode_batch(&records, &options).unwrap()
}

// Goal: a retried idempotent batch is written once and answered with its original
// offsets, before and after a reopen (from the active segment scan and from a roll's
// snapshot); gaps and stale epochs are refused.
#[test]
fn idempotent_retries_are_written_once_across_reopens() {
    runtime().block_on(async {
        let disk = SimDisk::new(20);
        let config = small_config();
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
            .await
            .unwrap();
        let first = log
            .append(idempotent_batch(0, 3, 42, 0, 0), AppendDurability::Synced)
            .await
            .unwrap();
        let again = log
            .append(idempotent_batch(0, 3, 42, 0, 0), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(log.high_watermark(), 3);
        assert!(matches!(
            log.append(idempotent_batch(1, 1, 42, 0, 5), AppendDurability::Synced)
                .await,
            Err(AppendError::OutOfOrderSequence {
                expected: 3,
                received: 5
            })
        ));
        assert!(matches!(
            log.append(idempotent_batch(1, 1, 42, -1, 3), AppendDurability::Synced)
                .await,
            Err(AppendError::InvalidProducerEpoch {
                current: 0,
                received: -1
            })
        ));
        let mut sequence = 3;
        let mut last = None;
        // Enough batches to roll several segments, so the state crosses a snapshot.
        for tag in 1..150u64 {
            last = Some((
                tag,
                sequence,
                log.append(
                    idempotent_batch(tag, 2, 42, 0, sequence),
                    AppendDurability::Synced,
                )
                .await
                .unwrap(),
            ));
            sequence += 2;
        }
        assert!(log.segment_count() > 2);
        let (tag, last_sequence, outcome) = last.unwrap();
        let high_watermark = log.high_watermark();
        log.close().await.unwrap();
        drop(log);
        // The active segment holds the last batch: rebuilt from the scan.
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
            .await
            .unwrap();
        assert_eq!(
            log.append(
                idempotent_batch(tag, 2, 42, 0, last_sequence),
                AppendDurability::Synced
            )
            .await
            .unwrap(),
            outcome
        );
        assert_eq!(log.high_watermark(), high_watermark);
        // Force a roll after the last batch, so the state comes from the snapshot alone.
        let segments = log.segment_count();
        let mut filler = 0;
        while log.segment_count() == segments {
            log.append(batch(1000 + filler, 2, 0), AppendDurability::Synced)
                .await
                .unwrap();
            filler += 1;
        }
        log.close().await.unwrap();
        drop(log);
        let log = PartitionLog::open(disk, Path::new(DIR), config, clock())
            .await
            .unwrap();
        let high_watermark = log.high_watermark();
        assert_eq!(
            log.append(
                idempotent_batch(tag, 2, 42, 0, last_sequence),
                AppendDurability::Synced
            )
            .await
            .unwrap(),
            outcome
        );
        assert_eq!(
            log.high_watermark(),
            high_watermark,
            "the duplicate was not written"
        );
        let next = log
            .append(
                idempotent_batch(99, 1, 42, 0, last_sequence + 2),
                AppendDurability::Synced,
            )
            .await
            .unwrap();
        assert_eq!(next.base_offset, high_watermark);
    });
}

// Goal: a write that fails for lack of space forgets the batch's sequence, so the
// producer's retry is accepted rather than refused as out of order.
#[test]
fn failed_write_forgets_producer_sequences() {
    runtime().block_on(async {
        let disk = SimDisk::new(21);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), LogConfig::default(), clock())
            .await
            .unwrap();
        log.append(idempotent_batch(0, 2, 7, 0, 0), AppendDurability::Synced)
            .await
            .unwrap();
        disk.set_space_bytes_max(Some(disk.used_bytes() + 10));
        assert!(matches!(
            log.append(idempotent_batch(1, 2, 7, 0, 2), AppendDurability::Synced)
                .await,
            Err(AppendError::Disk(_))
        ));
        disk.set_space_bytes_max(None);
        let retried = log
            .append(idempotent_batch(1, 2, 7, 0, 2), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(retried.base_offset, 2);
    });
}

fn keyed_batch(records: &[(String, Option<String>)], timestamp: i64) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .map(|(key, value)| Record {
            timestamp,
            key: Some(Bytes::from(key.clone())),
            value: value.clone().map(Bytes::from),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// Every record readable from the log start: (offset, key, value), offsets ascending.
async fn all_records<D: Disk>(log: &PartitionLog<D>) -> Vec<(i64, String, Option<String>)> {
    let mut records = Vec::new();
    for (_, _, bytes) in read_all_checked(log, false).await {
        for record in decode_batch(&bytes, &Default::default()).unwrap().records {
            let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let value = record
                .value
                .map(|value| String::from_utf8(value.to_vec()).unwrap());
            records.push((record.offset, key, value));
        }
    }
    for pair in records.windows(2) {
        assert!(pair[0].0 < pair[1].0, "offsets ascend");
    }
    records
}

fn latest_per_key(
    records: &[(i64, String, Option<String>)],
) -> BTreeMap<String, (i64, Option<String>)> {
    records
        .iter()
        .map(|(offset, key, value)| (key.clone(), (*offset, value.clone())))
        .collect()
}

fn compaction_policy(key_map_bytes_max: usize) -> crate::storage::compaction::CompactionPolicy {
    crate::storage::compaction::CompactionPolicy {
        delete_retention: Duration::from_secs(60),
        min_compaction_lag: Duration::ZERO,
        key_map_bytes_max,
    }
}

// Goal: compaction against a model (the last value per key): after it, and after a
// reopen, the latest record of every key is unchanged (same offset, same value), sealed
// segments hold at most one record per key, offsets keep ascending with gaps, and expired
// tombstones disappear; a small key map forces several passes with the same result.
#[test]
fn compaction_keeps_the_latest_value_of_every_key() {
    for (seed, key_map_bytes_max) in [(1u64, 1 << 20), (2, 1 << 20), (3, 700), (4, 1000)] {
        runtime().block_on(async {
            let disk = SimDisk::new(seed);
            let manual = ManualClock::new(1_000_000);
            let clock: Arc<dyn Clock> = Arc::new(manual.clone());
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let log = PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                small_config(),
                Arc::clone(&clock),
            )
            .await
            .unwrap();
            for round in 0..120 {
                let records: Vec<(String, Option<String>)> = (0..rng.random_range(1..4))
                    .map(|number| {
                        let key = format!("key-{}", rng.random_range(0..12));
                        let value =
                            (!rng.random_bool(0.15)).then(|| format!("value-{round}-{number}"));
                        (key, value)
                    })
                    .collect();
                log.append(
                    keyed_batch(&records, manual.wall_time_ms()),
                    AppendDurability::Synced,
                )
                .await
                .unwrap();
            }
            let before = all_records(&log).await;
            let model = latest_per_key(&before);
            // A key map that cannot hold one segment's keys is a clear error, not a loss.
            let too_small = log
                .compact(manual.wall_time_ms(), &compaction_policy(100))
                .await;
            assert!(
                matches!(
                    too_small,
                    Err(CompactError::KeyMapTooSmall { max: 100, .. })
                ),
                "{too_small:?}"
            );
            assert_eq!(all_records(&log).await, before);
            let report = log
                .compact(manual.wall_time_ms(), &compaction_policy(key_map_bytes_max))
                .await
                .unwrap();
            assert!(
                report.segments_rewritten > 0 && report.records_removed > 0,
                "{report:?}"
            );
            if key_map_bytes_max < 1000 {
                assert!(
                    report.passes > 1,
                    "a small key map takes several passes: {report:?}"
                );
            }
            let active_base = log.segment_infos().last().unwrap().base_offset;
            for reopen in [false, true] {
                let log = if reopen {
                    log.close().await.unwrap();
                    PartitionLog::open(
                        disk.clone(),
                        Path::new(DIR),
                        small_config(),
                        Arc::clone(&clock),
                    )
                    .await
                    .unwrap()
                } else {
                    log.clone()
                };
                let after = all_records(&log).await;
                assert_eq!(
                    latest_per_key(&after),
                    model,
                    "seed {seed}: the last value of every key survives"
                );
                let mut sealed_keys = std::collections::BTreeSet::new();
                for (offset, key, _) in after.iter().filter(|(offset, _, _)| *offset < active_base)
                {
                    assert!(
                        sealed_keys.insert(key.clone()),
                        "seed {seed}: {key} twice in compacted segments (offset {offset})"
                    );
                }
                assert!(after.len() < before.len());
            }
            // Tombstones older than delete.retention.ms go; live keys stay.
            manual.advance_ms(120_000);
            let log = PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                small_config(),
                Arc::clone(&clock),
            )
            .await
            .unwrap();
            log.compact(manual.wall_time_ms(), &compaction_policy(key_map_bytes_max))
                .await
                .unwrap();
            let after = all_records(&log).await;
            for (offset, key, value) in &after {
                if *offset < active_base {
                    assert!(
                        value.is_some(),
                        "seed {seed}: expired tombstone for {key} kept"
                    );
                }
            }
            for (key, (_, value)) in &model {
                if value.is_some() {
                    assert!(
                        after.iter().any(|(_, found, _)| found == key),
                        "seed {seed}: live key {key} lost"
                    );
                }
            }
        });
    }
}

// Goal: a power loss at any point of a compaction leaves either the old or the new
// segments: the last value of every key and every offset's order survive recovery.
#[test]
fn a_crash_during_compaction_loses_nothing() {
    for seed in sim::seeds(100, 60) {
        runtime().block_on(async {
            let disk = SimDisk::new(seed);
            let manual = ManualClock::new(1_000_000);
            let clock: Arc<dyn Clock> = Arc::new(manual.clone());
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let log = PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                small_config(),
                Arc::clone(&clock),
            )
            .await
            .unwrap();
            for round in 0..80 {
                let key = format!("key-{}", rng.random_range(0..8));
                log.append(
                    keyed_batch(
                        &[(key, Some(format!("value-{round}")))],
                        manual.wall_time_ms(),
                    ),
                    AppendDurability::Synced,
                )
                .await
                .unwrap();
            }
            let model = latest_per_key(&all_records(&log).await);
            disk.power_off_after(rng.random_range(0..40));
            let _ = log
                .compact(manual.wall_time_ms(), &compaction_policy(1 << 20))
                .await;
            drop(log);
            tokio::task::yield_now().await;
            disk.crash();
            let log = PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                small_config(),
                Arc::clone(&clock),
            )
            .await
            .unwrap_or_else(|error| {
                panic!("seed {seed}: recovery after a crash in compaction failed: {error}")
            });
            assert_eq!(
                latest_per_key(&all_records(&log).await),
                model,
                "seed {seed}"
            );
            // And compaction can finish afterwards.
            log.compact(manual.wall_time_ms(), &compaction_policy(1 << 20))
                .await
                .unwrap();
            assert_eq!(
                latest_per_key(&all_records(&log).await),
                model,
                "seed {seed}"
            );
        });
    }
}

/// Rewrites the batch at `position` of the segment file at `path` on `disk` in place, with
/// `edit` applied to its bytes and its CRC recomputed unless `reseal` is false: data an
/// older Ledge (which did not check records at append) or a damaged disk could have left.
async fn edit_stored_batch(
    disk: &SimDisk,
    path: &Path,
    position: u64,
    reseal: bool,
    edit: impl FnOnce(&mut [u8]),
) {
    let file = disk.open(path, OpenMode::ReadWrite).await.unwrap();
    let header = file.read_at(position, BATCH_HEADER_BYTES).await.unwrap();
    let total = BatchHeader::parse(&header).unwrap().total_bytes();
    let mut batch = file.read_at(position, total).await.unwrap();
    edit(&mut batch);
    if reseal {
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    file.write_at(position, Bytes::from(batch)).await.unwrap();
    file.sync_data().await.unwrap();
}

// Goal (issue 11, data item 5): compaction of a log holding a batch whose CRC is intact but
// whose records do not decode (bypassing the append check, as data from before it may be),
// and a sealed segment whose CRC is damaged, completes: it reports both, keeps them as they
// are and compacts the rest. Before, it failed with `Corrupt` on every run, forever.
#[test]
fn compaction_reports_and_keeps_undecodable_batches_and_damaged_segments() {
    runtime().block_on(async {
        let disk = SimDisk::new(31);
        let manual = ManualClock::new(1_000_000);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let log = PartitionLog::open(
            disk.clone(),
            Path::new(DIR),
            small_config(),
            Arc::clone(&clock),
        )
        .await
        .unwrap();
        for round in 0..150 {
            let records = vec![(format!("key-{}", round % 5), Some(format!("value-{round}")))];
            log.append(
                keyed_batch(&records, manual.wall_time_ms()),
                AppendDurability::Synced,
            )
            .await
            .unwrap();
        }
        let sealed: Vec<i64> = log
            .segment_infos()
            .iter()
            .filter(|info| !info.active)
            .map(|info| info.base_offset)
            .collect();
        assert!(sealed.len() >= 3, "{sealed:?}");
        log.close().await.unwrap();
        let directory = Path::new(DIR);
        let poisoned = directory.join(segment::segment_file_name(sealed[0]));
        // The first record's length varint now claims 63 bytes, more than the batch holds.
        edit_stored_batch(&disk, &poisoned, SEGMENT_HEADER_BYTES, true, |batch| {
            batch[BATCH_HEADER_BYTES] = 0x7e;
        })
        .await;
        let damaged = directory.join(segment::segment_file_name(sealed[1]));
        edit_stored_batch(&disk, &damaged, SEGMENT_HEADER_BYTES, false, |batch| {
            let last = batch.len() - 1;
            batch[last] ^= 0x01;
        })
        .await;

        let log = PartitionLog::open(disk.clone(), directory, small_config(), clock)
            .await
            .unwrap();
        let report = log
            .compact(manual.wall_time_ms(), &compaction_policy(1 << 20))
            .await
            .unwrap();
        assert_eq!(report.batches_undecodable, 1, "{report:?}");
        assert_eq!(report.segments_skipped, 1, "{report:?}");
        assert!(
            report.segments_rewritten > 0 && report.records_removed > 0,
            "{report:?}"
        );
        // The undecodable batch is still there, whole, at offset `sealed[0]`.
        let read = log.read(sealed[0], 100).await.unwrap();
        let (header, bytes) = BatchIter::new(&read.bytes).next().unwrap().unwrap();
        assert_eq!(header.base_offset, sealed[0]);
        validate_batch(bytes).unwrap();
        assert!(decode_batch(&read.bytes.slice_ref(bytes), &Default::default()).is_err());
        // A second run finds the same and still completes.
        let again = log
            .compact(manual.wall_time_ms(), &compaction_policy(1 << 20))
            .await
            .unwrap();
        assert_eq!(
            (again.batches_undecodable, again.segments_skipped),
            (1, 1),
            "{again:?}"
        );
    });
}

/// The segment file and position of the batch starting at `base_offset`.
async fn locate_batch<D: Disk>(
    log: &PartitionLog<D>,
    disk: &D,
    base_offset: i64,
) -> (PathBuf, u64) {
    let segment_base = log
        .segment_infos()
        .iter()
        .rev()
        .find(|info| info.base_offset <= base_offset)
        .unwrap()
        .base_offset;
    let path = Path::new(DIR).join(segment::segment_file_name(segment_base));
    let file = disk.open(&path, OpenMode::Read).await.unwrap();
    let bytes = file
        .read_at(0, file.len().await.unwrap() as usize)
        .await
        .unwrap();
    let mut position = SEGMENT_HEADER_BYTES as usize;
    for item in BatchIter::new(&bytes[position..]) {
        let (header, batch) = item.unwrap();
        if header.base_offset == base_offset {
            return (path, position as u64);
        }
        position += batch.len();
    }
    panic!("no batch starts at {base_offset}");
}

// Goal (issue 11, data item 5): a lookup by time passes over a stored batch whose records do
// not decode instead of failing at it (every ListOffsets by time used to fail there).
#[test]
fn offsets_for_times_skips_a_batch_whose_records_do_not_decode() {
    runtime().block_on(async {
        let disk = SimDisk::new(32);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        // Batch k holds offsets 3k..3k+2 with timestamps 100k..100k+2.
        for tag in 0..10u64 {
            log.append(batch(tag, 3, tag as i64 * 100), AppendDurability::Synced)
                .await
                .unwrap();
        }
        let (path, position) = locate_batch(&log, &disk, 15).await;
        log.close().await.unwrap();
        edit_stored_batch(&disk, &path, position, true, |batch| {
            batch[BATCH_HEADER_BYTES] = 0x7e;
        })
        .await;
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        assert_eq!(
            log.offset_for_timestamp(400).await.unwrap(),
            Some((12, 400))
        );
        assert_eq!(
            log.offset_for_timestamp(501).await.unwrap(),
            Some((18, 600))
        );
    });
}

// Goal (issue 11, "First"): a segment that an older Ledge wrote with inflated batches (each
// claiming 2^31 - 1 offsets, so the fourth starts past the 32-bit offsets of the segment
// index) no longer panics the open: the scan stops at the fourth batch as invalid, and the
// open either truncates it as a tail above the recovery point or reports the segment; the
// node never panics at start.
#[test]
fn recovery_stops_at_a_batch_past_the_segment_index_instead_of_panicking() {
    runtime().block_on(async {
        let disk = SimDisk::new(33);
        let directory = Path::new(DIR);
        disk.create_dir_all(directory).await.unwrap();
        let mut segment_bytes = segment::segment_header().to_vec();
        let span = i64::from(i32::MAX);
        for number in 0..4 {
            let mut inflated = claiming(&batch(number, 1, 0), i32::MAX, i32::MAX - 1).to_vec();
            set_base_offset(&mut inflated, number as i64 * span).unwrap();
            set_partition_leader_epoch(&mut inflated, PARTITION_LEADER_EPOCH).unwrap();
            segment_bytes.extend_from_slice(&inflated);
        }
        write_new_file(
            &disk,
            &directory.join(segment::segment_file_name(0)),
            segment_bytes,
        )
        .await
        .unwrap();
        disk.sync_dir(directory).await.unwrap();
        match PartitionLog::open(disk.clone(), directory, LogConfig::default(), clock()).await {
            Ok(log) => assert_eq!(log.high_watermark(), 3 * span),
            Err(OpenError::Corrupt { reason, .. }) => {
                assert!(reason.contains("32-bit offset range"), "{reason}")
            }
            Err(other) => panic!("unexpected open error: {other}"),
        }
    });
}

/// Records a consumer reading from the log start gets (whole batches are served, so records
/// of the first batch below the log start are left out here as a consumer skips them).
async fn readable_record_count<D: Disk>(log: &PartitionLog<D>) -> u64 {
    let start = log.log_start_offset();
    all_records(log)
        .await
        .iter()
        .filter(|(offset, _, _)| *offset >= start)
        .count() as u64
}

/// A batch of records at offset deltas `deltas` spanning `span` offsets, as a produce filter
/// writes one after dropping records.
fn gapped_batch(tag: u64, deltas: &[i32], span: i32, timestamp: i64) -> Bytes {
    let records: Vec<Record> = deltas
        .iter()
        .map(|delta| Record {
            timestamp,
            key: Some(Bytes::from(format!(
                "key-{}",
                (tag * 2 + *delta as u64) % 240
            ))),
            value: Some(Bytes::from(format!("value-{tag}-{delta}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch_with_deltas(&records, deltas, span - 1, &EncodeOptions::default()).unwrap()
}

// Goal: the partition's record count (topic describe's RECORDS) is the number of records a
// consumer reads from the log start, not the offsets, through every change of the log:
// appends with and without offset gaps (produce filters), a log start moved inside a
// segment with gaps, compaction removing superseded records (of the first segment too,
// below the log start), retention dropping segments, reopen from index files and a reopen
// that rebuilds an index from its segment (issue 11, bugs 8).
#[test]
fn record_count_follows_appends_compaction_retention_and_reopen() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let manual = ManualClock::new(1_000_000);
        let clock: Arc<dyn Clock> = Arc::new(manual.clone());
        let open = || {
            PartitionLog::open(
                disk.clone(),
                Path::new(DIR),
                small_config(),
                Arc::clone(&clock),
            )
        };
        let log = open().await.unwrap();
        assert_eq!(log.record_count(), 0);
        for tag in 0..150u64 {
            let now = manual.wall_time_ms();
            if tag % 3 == 0 {
                // 2 records over 5 offsets.
                log.append_with_gaps(gapped_batch(tag, &[1, 3], 5, now), AppendDurability::Synced)
                    .await
                    .unwrap();
            } else {
                let records: Vec<(String, Option<String>)> = (0..2)
                    .map(|number| {
                        (
                            format!("key-{}", (tag * 2 + number) % 240),
                            Some(format!("v{tag}")),
                        )
                    })
                    .collect();
                log.append(keyed_batch(&records, now), AppendDurability::Synced)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(log.record_count(), 300);
        assert_eq!(readable_record_count(&log).await, 300);
        assert!(log.high_watermark() > 300, "the gaps take offsets");
        assert!(log.segment_count() >= 4, "{}", log.segment_count());

        // A log start inside the first segment, inside a gapped batch (offsets 0..5 hold
        // records at 1 and 3): 1 record below it.
        assert_eq!(log.delete_before(2).await.unwrap(), 2);
        assert_eq!(log.record_count(), 299);
        assert_eq!(readable_record_count(&log).await, 299);

        // Compaction removes superseded records, in the first segment too.
        let report = log
            .compact(manual.wall_time_ms(), &compaction_policy(1 << 20))
            .await
            .unwrap();
        assert!(report.records_removed > 0, "{report:?}");
        let compacted = readable_record_count(&log).await;
        assert!(compacted < 299, "{compacted}");
        assert_eq!(log.record_count(), compacted);

        // A log start moved again inside the (now compacted) first segment.
        let first_end = log.segment_infos()[0].end_offset;
        let inside = log.log_start_offset() + (first_end - log.log_start_offset()) / 2;
        assert_eq!(log.delete_before(inside).await.unwrap(), inside);
        assert_eq!(log.record_count(), readable_record_count(&log).await);

        // Reopen: counts come from the index files (and the active segment's scan).
        let expected = log.record_count();
        log.close().await.unwrap();
        let log = open().await.unwrap();
        assert_eq!(log.record_count(), expected);
        assert_eq!(readable_record_count(&log).await, expected);

        // An index file lost: rebuilt from its segment, with the same count.
        let second = log.segment_infos()[1].base_offset;
        log.close().await.unwrap();
        disk.remove_file(&Path::new(DIR).join(segment::offset_index_file_name(second)))
            .await
            .unwrap();
        let log = open().await.unwrap();
        assert_eq!(log.record_count(), expected);

        // Retention drops whole segments and their records.
        let segments = log.segment_count();
        // Just small enough that the first two segments go.
        let infos = log.segment_infos();
        let retention_bytes = log.size_bytes() - infos[0].size_bytes - infos[1].size_bytes;
        let dropped = log
            .enforce_retention(
                manual.wall_time_ms(),
                &super::super::retention::RetentionPolicy {
                    retention: None,
                    retention_bytes: Some(retention_bytes),
                },
            )
            .await
            .unwrap();
        assert!(dropped.is_some() && log.segment_count() < segments);
        let kept = readable_record_count(&log).await;
        assert!(kept < expected, "{kept}");
        assert_eq!(log.record_count(), kept);
        log.close().await.unwrap();
        let log = open().await.unwrap();
        assert_eq!(log.record_count(), kept);
    });
}

// ---------------------------------------------------------------------------------------
// Sealed segments opened lazily, racing compaction and retention (issue 11, data item 8).

/// A log of several sealed segments in which every key is written again and again, so
/// compaction rewrites its first segment; nothing has read (or cached) any sealed file yet.
async fn log_with_obsolete_records(disk: &SimDisk) -> PartitionLog<SimDisk> {
    let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
        .await
        .unwrap();
    for round in 0..200 {
        let records: Vec<(String, Option<String>)> = (0..3)
            .map(|number| (format!("key-{number}"), Some(format!("value-{round:0>40}"))))
            .collect();
        log.append(keyed_batch(&records, 1_000), AppendDurability::Synced)
            .await
            .unwrap();
    }
    assert!(
        log.segment_infos().len() > 3,
        "the test needs sealed segments"
    );
    log
}

/// Polls `read` once: it must stop inside its first (uncached) open of a sealed file.
async fn park<F: Future>(read: std::pin::Pin<&mut F>) {
    let mut read = read;
    let pending = std::future::poll_fn(|context| {
        std::task::Poll::Ready(read.as_mut().poll(context).is_pending())
    })
    .await;
    assert!(pending, "the read must wait on the disk");
}

/// Lets other tasks run until `changed` says the file under a parked read changed, or for
/// a bounded number of turns (when the fix makes the other task wait for the read).
async fn run_others_until(changed: impl Fn() -> bool) {
    for _ in 0..2_000 {
        if changed() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Every batch of `read` is valid and the first holds `offset` or comes after it.
fn assert_valid_read_at(read: &ReadBatches, offset: i64) {
    assert!(!read.bytes.is_empty(), "no bytes at {offset}");
    let mut first = true;
    for item in BatchIter::new(&read.bytes) {
        let (header, bytes) = item.unwrap();
        validate_batch(bytes).unwrap();
        if first {
            assert!(header.last_offset() >= offset, "batch before {offset}");
            first = false;
        }
    }
}

// Goal: a read that took a sealed segment's position from its index, and is about to open
// its file, is never served the compacted file that replaced it meanwhile (it read the new
// file at the old index's positions: CRC errors or garbage reached the consumer).
#[test]
fn a_read_racing_compaction_reads_the_file_its_index_describes() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let log = log_with_obsolete_records(&disk).await;
        let first = log.segment_infos()[0].base_offset;
        let path = PathBuf::from(DIR).join(segment::segment_file_name(first));
        let before = disk.contents(&path);
        // An offset in the middle of the segment, so its index position is not the header's.
        let offset = first + 9;
        let reader = log.clone();
        let mut read = std::pin::pin!(reader.read(offset, 1 << 20));
        park(read.as_mut()).await;
        let compactor = log.clone();
        let compaction = tokio::spawn(async move {
            compactor
                .compact(1_000_000, &compaction_policy(1 << 20))
                .await
        });
        run_others_until(|| disk.contents(&path) != before).await;
        let read = read.await.unwrap();
        assert_valid_read_at(&read, offset);
        let report = compaction.await.unwrap().unwrap();
        assert!(report.segments_rewritten > 0, "{report:?}");
        assert_ne!(disk.contents(&path), before, "the segment was compacted");
        // Reads after it see the compacted file.
        let read = log.read(offset, 1 << 20).await.unwrap();
        assert_valid_read_at(&read, offset);
        log.close().await.unwrap();
    });
}

// Goal: a read that found a sealed segment and is about to open its file is not failed by
// retention removing that file meanwhile (it got ENOENT; with held files it could not).
#[test]
fn a_read_racing_retention_reads_the_segment_it_found() {
    runtime().block_on(async {
        let disk = SimDisk::new(8);
        let log = log_with_obsolete_records(&disk).await;
        let infos = log.segment_infos();
        let first = infos[0].base_offset;
        let path = PathBuf::from(DIR).join(segment::segment_file_name(first));
        let offset = first + 9;
        let reader = log.clone();
        let mut read = std::pin::pin!(reader.read(offset, 1 << 20));
        park(read.as_mut()).await;
        let retention = log.clone();
        let deletion_offset = infos[2].base_offset;
        let deletion = tokio::spawn(async move { retention.delete_before(deletion_offset).await });
        run_others_until(|| disk.contents(&path).is_none()).await;
        let read = read.await.unwrap();
        assert_valid_read_at(&read, offset);
        assert_eq!(deletion.await.unwrap().unwrap(), deletion_offset);
        assert!(disk.contents(&path).is_none(), "the segment was deleted");
        assert!(matches!(
            log.read(offset, 1 << 20).await,
            Err(ReadError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
    });
}

// Goal: the background verifier never reports damage because compaction replaced the
// segment it was checking (it went on reading the new file against the old size and
// offsets, and the false damage then failed every read of the segment); such a check is
// abandoned, and a later pass checks the new file.
#[test]
fn the_verifier_racing_compaction_reports_no_false_damage() {
    use crate::storage::verify::VerifyStep;
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let log = log_with_obsolete_records(&disk).await;
        let mut checks = log.sealed_segment_checks();
        assert!(checks.len() > 2);
        // Every check has read its first part when compaction replaces the segments.
        for check in &mut checks {
            assert!(matches!(
                check.step(300, 42).await.unwrap(),
                VerifyStep::Read(_)
            ));
        }
        let report = log
            .compact(1_000_000, &compaction_policy(1 << 20))
            .await
            .unwrap();
        assert!(report.segments_rewritten > 0, "{report:?}");
        for mut check in checks {
            loop {
                match check.step(300, 42).await.unwrap() {
                    VerifyStep::Read(bytes) => assert!(bytes > 0),
                    VerifyStep::Clean | VerifyStep::Abandoned => break,
                    VerifyStep::Damaged(damage) => panic!("false damage: {damage}"),
                }
            }
        }
        assert_eq!(log.damage(), None);
        assert!(verify_all(&log).await.is_empty());
        assert_valid_read_at(&log.read(0, 1 << 20).await.unwrap(), 0);
        log.close().await.unwrap();
    });
}

// Goal: once compaction has renamed the compacted file over a segment, the segment already
// has its new id and index (the gate is held from the rename to that update), so a read
// in the middle of the replacement (directory sync and index files still pending) reads the
// new file at the new index's positions, never either file at the other's.
#[test]
fn a_read_during_a_replacement_reads_the_new_file_at_its_index() {
    runtime().block_on(async {
        let disk = SimDisk::new(10);
        let log = log_with_obsolete_records(&disk).await;
        let first = log.segment_infos()[0].base_offset;
        let path = PathBuf::from(DIR).join(segment::segment_file_name(first));
        let before = disk.contents(&path);
        let old_id = log.shared.read_state().segments[&first].file;
        let compactor = log.clone();
        let compaction = tokio::spawn(async move {
            compactor
                .compact(1_000_000, &compaction_policy(1 << 20))
                .await
        });
        run_others_until(|| disk.contents(&path) != before).await;
        assert_ne!(disk.contents(&path), before, "the rename happened");
        // The segment has its new id and index as soon as the path names the new file, while
        // the rename's directory sync and the index files are still pending.
        assert_ne!(log.shared.read_state().segments[&first].file, old_id);
        let offset = first + 9;
        let read = log.read(offset, 1 << 20).await.unwrap();
        assert_valid_read_at(&read, offset);
        let report = compaction.await.unwrap().unwrap();
        assert!(report.segments_rewritten > 0, "{report:?}");
        log.close().await.unwrap();
    });
}

// Goal: a compaction whose replacement fails after the rename (here the index file write)
// leaves the log describing the file now at the segment's path: reads anywhere in the
// segment get valid batches and the verifier finds no damage. Before, the segment kept the
// old file id and index, so a read opened the compacted file at the old index's positions.
#[test]
fn a_compaction_failing_after_its_rename_leaves_reads_on_the_new_file() {
    runtime().block_on(async {
        let disk = SimDisk::new(9);
        let log = log_with_obsolete_records(&disk).await;
        let first = log.segment_infos()[0].base_offset;
        let path = PathBuf::from(DIR).join(segment::segment_file_name(first));
        let before = disk.contents(&path);
        disk.fail_next_write_to(".index", libc::EIO);
        let compaction = log.compact(1_000_000, &compaction_policy(1 << 20)).await;
        assert!(
            compaction.is_err(),
            "the index write was to fail: {compaction:?}"
        );
        assert_ne!(disk.contents(&path), before, "the rename happened");
        // As if the node-wide cache had evicted the file compaction read (it does under
        // load): the next read opens the segment's path afresh.
        let state_file = log.shared.read_state().segments[&first].file;
        if let SegmentFile::Sealed(id) = state_file {
            descriptors::forget_sealed_file(id);
        }
        let compacted = log.segment_infos()[0].end_offset;
        for offset in first..compacted {
            assert_valid_read_at(&log.read(offset, 1 << 20).await.unwrap(), offset);
        }
        assert!(verify_all(&log).await.is_empty());
        log.close().await.unwrap();
        // The missing index files are rebuilt at the next open, with every record readable.
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), small_config(), clock())
            .await
            .unwrap();
        assert_valid_read_at(&log.read(first, 1 << 20).await.unwrap(), first);
        log.close().await.unwrap();
    });
}
