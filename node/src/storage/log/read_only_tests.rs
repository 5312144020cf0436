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
