//! A data directory on a read-only filesystem (issue 11, data item 9), on `SimDisk`: at
//! open, and when it turns read-only under a running log, reads go on and appends answer
//! with a clear "read-only" error.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::{BatchIter, EncodeOptions, Record, decode_batch, encode_batch};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::sim::SimDisk;
use crate::storage::disk::OpenMode;
use crate::storage::segment::{self, CHECKPOINT_FILE_NAME, PartitionFile};

const DIRECTORY: &str = "/data/logs/t-0";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

fn batch(tag: u64) -> Bytes {
    let records = vec![Record {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(format!("value-{tag}"))),
        headers: Vec::new(),
    }];
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        batch_bytes_max: 2048,
        commit_bytes_max: 4096,
        ..LogConfig::default()
    }
}

/// Values of every record readable from offset 0.
async fn values<D: Disk>(log: &PartitionLog<D>) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = 0;
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 20).await.unwrap();
        for item in BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            let decoded =
                decode_batch(&Bytes::copy_from_slice(bytes), &Default::default()).unwrap();
            for record in decoded.records {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
            offset = header.last_offset() + 1;
        }
    }
    values
}

/// Writes `count` synced batches across several segments, then closes the log.
async fn write_and_close(disk: &SimDisk, count: u64) {
    let log = PartitionLog::open(disk.clone(), Path::new(DIRECTORY), config(), clock())
        .await
        .unwrap();
    for tag in 0..count {
        log.append(batch(tag), AppendDurability::Synced)
            .await
            .unwrap();
    }
    log.close().await.unwrap();
}

/// The base offset of the log's last (active) segment.
async fn active_base(disk: &SimDisk) -> i64 {
    disk.list_dir(Path::new(DIRECTORY))
        .await
        .unwrap()
        .iter()
        .filter_map(|name| match segment::parse_file_name(name) {
            Some(PartitionFile::Segment(base)) => Some(base),
            _ => None,
        })
        .max()
        .unwrap()
}

fn expected(count: u64) -> Vec<String> {
    (0..count).map(|tag| format!("value-{tag}")).collect()
}

#[test]
fn a_log_on_a_read_only_filesystem_opens_for_reads_and_refuses_appends() {
    // Goal: on a filesystem that refuses every write, the log still opens (before the fix
    // the open failed writing its checkpoint, and the partition went offline), every
    // record is readable across sealed and active segments, and an append answers with the
    // filesystem's read-only error, leaving the log as it was.
    runtime().block_on(async {
        let disk = SimDisk::new(91);
        write_and_close(&disk, 60).await;
        disk.set_read_only(true);
        let log = PartitionLog::open(disk.clone(), Path::new(DIRECTORY), config(), clock())
            .await
            .unwrap();
        assert!(log.segment_count() > 1, "the test needs sealed segments");
        assert_eq!(values(&log).await, expected(60));
        // Counted as a writable open counts: sealed segments from their index, the active
        // one by its scan.
        assert_eq!(log.record_count(), 60);
        let error = log
            .append(batch(99), AppendDurability::Synced)
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(&error, AppendError::Disk(disk) if disk.is_read_only()),
            "{text}"
        );
        assert!(text.contains("Read-only file system"), "{text}");
        assert_eq!(log.high_watermark(), 60);
        log.close().await.unwrap();
    });
}

#[test]
fn a_filesystem_turning_read_only_under_a_running_log_keeps_reads_going() {
    // Goal: when writes start failing with EROFS, the append is refused with that error,
    // the log's reopen (what the broker does with a fenced log) opens it for reads instead
    // of failing (before the fix the reopen failed and the partition went offline, so
    // nothing could be read), and every acknowledged record stays readable.
    runtime().block_on(async {
        let disk = SimDisk::new(92);
        let log = PartitionLog::open(disk.clone(), Path::new(DIRECTORY), config(), clock())
            .await
            .unwrap();
        for tag in 0..20 {
            log.append(batch(tag), AppendDurability::Synced)
                .await
                .unwrap();
        }
        disk.set_read_only(true);
        let text = log
            .append(batch(20), AppendDurability::Synced)
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("Read-only file system"), "{text}");
        assert_eq!(values(&log).await, expected(20));
        let log = if log.fenced_reason().is_some() {
            log.reopen(disk.clone(), clock()).await.unwrap()
        } else {
            log
        };
        assert_eq!(values(&log).await, expected(20));
        let text = log
            .append(batch(21), AppendDurability::Synced)
            .await
            .unwrap_err()
            .to_string();
        assert!(text.contains("Read-only file system"), "{text}");
        assert_eq!(log.high_watermark(), 20);
    });
}

#[test]
fn damage_followed_by_valid_batches_on_a_read_only_filesystem_is_reported() {
    // Goal: the read-only open judges a stop above the recovery point by the normal open's
    // rule: a bit flip in the active segment followed by valid batches takes the partition
    // offline with the same message as the normal open, and nothing is served. Before the
    // fix every such stop was hidden as a torn tail: the log opened and served only the
    // records before the flip, with no damage reported.
    runtime().block_on(async {
        let disk = SimDisk::new(93);
        write_and_close(&disk, 60).await;
        let directory = Path::new(DIRECTORY);
        // Without a checkpoint every byte of the active segment is above the recovery point.
        disk.remove_file(&directory.join(CHECKPOINT_FILE_NAME))
            .await
            .unwrap();
        let active_base = active_base(&disk).await;
        assert!(active_base > 0, "the test needs sealed segments");
        let segment = directory.join(segment::segment_file_name(active_base));
        let length_before = disk.contents(&segment).unwrap().len();
        // The active segment's batches all hold two-digit tags, so they are of one size.
        let batch_bytes = batch(active_base as u64).len();
        let third_batch = SEGMENT_HEADER_BYTES as usize + 2 * batch_bytes;
        assert!(
            third_batch + 3 * batch_bytes < length_before,
            "valid batches must follow the damage"
        );
        assert!(disk.corrupt_bit(&segment, third_batch + 40, 5));
        disk.set_read_only(true);
        let error = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened on a read-only filesystem");
        let message = error.to_string();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{message}");
        assert!(
            message.contains(&segment::segment_file_name(active_base))
                && message.contains(&format!("byte {third_batch}"))
                && message.contains("valid batches follow"),
            "{message}"
        );
        assert_eq!(disk.contents(&segment).unwrap().len(), length_before);
        // The same judgement and message as a normal open of the same bytes.
        disk.set_read_only(false);
        let writable = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened");
        assert_eq!(writable.to_string(), message);
        assert_eq!(disk.contents(&segment).unwrap().len(), length_before);
    });
}

#[test]
fn a_bit_flip_in_the_final_batch_on_a_read_only_filesystem_is_reported() {
    // Goal: the rest of the normal open's rule holds read-only too: a bit flip in the
    // active segment's whole final batch (no lost sector, nothing after it) is damage, not
    // a torn tail: the partition goes offline with the normal open's message. Before the
    // fix the read-only open hid the final batch and served one record less, silently.
    runtime().block_on(async {
        let disk = SimDisk::new(97);
        write_and_close(&disk, 60).await;
        let directory = Path::new(DIRECTORY);
        disk.remove_file(&directory.join(CHECKPOINT_FILE_NAME))
            .await
            .unwrap();
        let segment = directory.join(segment::segment_file_name(active_base(&disk).await));
        let length_before = disk.contents(&segment).unwrap().len();
        let final_batch = length_before - batch(59).len();
        assert!(disk.corrupt_bit(&segment, final_batch + 40, 5));
        disk.set_read_only(true);
        let error = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened on a read-only filesystem");
        let message = error.to_string();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{message}");
        assert!(
            message.contains(&format!("byte {final_batch}"))
                && message.contains("final batch is whole"),
            "{message}"
        );
        disk.set_read_only(false);
        let writable = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened");
        assert_eq!(writable.to_string(), message);
        assert_eq!(disk.contents(&segment).unwrap().len(), length_before);
    });
}

#[test]
fn a_torn_tail_on_a_read_only_filesystem_is_hidden_not_truncated() {
    // Goal: the other side of the rule: an unfinished append (the file ends inside its
    // batch) above the recovery point is a torn tail; on a read-only filesystem it is
    // hidden from readers, every acknowledged record is served, and the file is untouched.
    runtime().block_on(async {
        let disk = SimDisk::new(94);
        write_and_close(&disk, 60).await;
        let directory = Path::new(DIRECTORY);
        let active_base = active_base(&disk).await;
        let segment = directory.join(segment::segment_file_name(active_base));
        let torn = batch(60);
        assert!(disk.append_durable(&segment, &torn[..torn.len() / 2]));
        let length_before = disk.contents(&segment).unwrap().len();
        disk.set_read_only(true);
        let log = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 60);
        assert_eq!(values(&log).await, expected(60));
        assert_eq!(log.record_count(), 60, "the torn tail is not counted");
        assert_eq!(disk.contents(&segment).unwrap().len(), length_before);
    });
}

#[test]
fn a_sealed_segment_with_a_missing_or_garbage_index_opens_on_a_read_only_filesystem() {
    // Goal: a sealed segment whose index files are missing or unreadable has its index
    // rebuilt by scanning the segment; on a read-only filesystem the rebuilt index is kept
    // in memory (nothing can be written), the partition opens and every record is
    // readable. Before the fix the rebuild's index write failed with EROFS and the
    // partition went offline.
    for case in ["offset index missing", "time index garbage"] {
        runtime().block_on(async {
            let disk = SimDisk::new(95);
            write_and_close(&disk, 60).await;
            let directory = Path::new(DIRECTORY);
            match case {
                "offset index missing" => {
                    disk.remove_file(&directory.join(segment::offset_index_file_name(0)))
                        .await
                        .unwrap();
                }
                _ => {
                    let path = directory.join(segment::time_index_file_name(0));
                    disk.remove_file(&path).await.unwrap();
                    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
                    file.write_at(0, Bytes::from_static(b"not a time index"))
                        .await
                        .unwrap();
                    file.sync_data().await.unwrap();
                }
            }
            disk.set_read_only(true);
            let log = PartitionLog::open(disk.clone(), directory, config(), clock())
                .await
                .unwrap_or_else(|error| panic!("{case}: {error}"));
            assert!(
                log.segment_count() > 1,
                "{case}: the test needs sealed segments"
            );
            assert_eq!(values(&log).await, expected(60), "{case}");
            assert_eq!(log.high_watermark(), 60, "{case}");
        });
    }
}

#[test]
fn damage_below_the_recovery_point_on_a_read_only_filesystem_reads_as_at_a_normal_open() {
    // Goal: damage below the recovery point (the checkpoint says those bytes were synced)
    // takes the partition offline on a read-only filesystem with the same message as a
    // normal open. Before the fix the read-only message left out which offset's batch
    // was damaged and that it lies below the recovery point.
    runtime().block_on(async {
        let disk = SimDisk::new(96);
        write_and_close(&disk, 60).await;
        let directory = Path::new(DIRECTORY);
        let segment = directory.join(segment::segment_file_name(active_base(&disk).await));
        assert!(disk.corrupt_bit(&segment, SEGMENT_HEADER_BYTES as usize + 40, 3));
        disk.set_read_only(true);
        let error = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened on a read-only filesystem");
        let message = error.to_string();
        assert!(matches!(error, OpenError::Corrupt { .. }), "{message}");
        assert!(message.contains("below the recovery point"), "{message}");
        disk.set_read_only(false);
        let writable = PartitionLog::open(disk.clone(), directory, config(), clock())
            .await
            .err()
            .expect("the damaged partition opened");
        assert_eq!(writable.to_string(), message);
    });
}
