//! `truncate_at_damage` on the simulated disk: the log ends at the last batch that verifies,
//! whatever the damage (a bit flip in the middle, in the last batch, a file cut short, a
//! sealed segment), the cut bytes are kept aside, and the leader-epoch checkpoint follows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::sim::SimDisk;
use crate::storage::log::{AppendDurability, OpenError, PartitionLog};

const DIR: &str = "/data/orders-0";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

/// A batch of two records tagged `tag`.
fn batch(tag: u64) -> Bytes {
    let records: Vec<Record> = (0..2)
        .map(|number| Record {
            timestamp: number,
            key: None,
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn segment_path(base: i64) -> PathBuf {
    Path::new(DIR).join(segment::segment_file_name(base))
}

/// Writes `batches` synced batches of two records, the first half in leader epoch 1 and the
/// rest in epoch 2, and closes the log (so the recovery point covers them all).
async fn written_log(disk: &SimDisk, config: &LogConfig, batches: u64) {
    let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
        .await
        .unwrap();
    log.set_leader_epoch(1).await.unwrap();
    for tag in 0..batches {
        if tag == batches / 2 {
            log.set_leader_epoch(2).await.unwrap();
        }
        log.append(batch(tag), AppendDurability::Synced)
            .await
            .unwrap();
    }
    log.close().await.unwrap();
}

/// The batches the reopened log serves, as (base offset, record count).
async fn served(log: &PartitionLog<SimDisk>) -> Vec<(i64, i64)> {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read_verified(offset, 1 << 20).await.unwrap();
        assert!(read.damage.is_none(), "{:?}", read.damage);
        for item in ledge_protocol::BatchIter::new(&read.bytes) {
            let (header, _) = item.unwrap();
            batches.push((
                header.base_offset,
                header.last_offset() - header.base_offset + 1,
            ));
        }
        offset = read.end_offset;
    }
    batches
}

/// Opens the damaged partition (it must refuse), repairs it with the open's report, and
/// opens it again.
async fn repaired(
    disk: &SimDisk,
    config: &LogConfig,
) -> (DamageRepairReport, PartitionLog<SimDisk>) {
    let error = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
        .await
        .err()
        .expect("a damaged partition does not open");
    let OpenError::Corrupt { path, position, .. } = &error else {
        panic!("not a damage report: {error}");
    };
    let hint = DamageHint::At {
        segment: path.clone(),
        position: *position,
    };
    let report = truncate_at_damage(disk, Path::new(DIR), Some(&hint), config)
        .await
        .unwrap();
    let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
        .await
        .unwrap();
    (report, log)
}

// Goal: a bit flip in the middle of the active segment, below the recovery point (the open
// refuses it), is cut at the start of its batch: the batches before it are served, the new
// end is the damaged batch's first offset, the cut bytes are kept in a `.damaged` file next
// to the segment, and the leader-epoch checkpoint loses the epoch that started after the
// cut. The repaired log takes appends at its new end.
#[test]
fn a_bit_flip_in_the_middle_is_cut_at_its_batch() {
    runtime().block_on(async {
        let disk = SimDisk::new(1);
        let config = LogConfig::default();
        written_log(&disk, &config, 6).await;
        let size = batch(0).len();
        let original = disk.contents(&segment_path(0)).unwrap();
        // Inside the second batch (offsets 2-3), epoch 1.
        assert!(disk.corrupt_bit(&segment_path(0), 16 + size + 40, 2));
        let (report, log) = repaired(&disk, &config).await;
        assert_eq!(report.new_end_offset, 2);
        assert_eq!(report.damage_position, 16 + size as u64);
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(served(&log).await, vec![(0, 2)]);
        // The epochs: 1 from offset 0 only (epoch 2 started at 6, past the new end).
        let epochs: Vec<(i32, i64)> = log
            .leader_epochs()
            .entries()
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect();
        assert_eq!(epochs, vec![(1, 0)]);
        // The cut bytes, flipped bit included, are in the kept file.
        assert_eq!(report.kept_aside.len(), 1);
        let kept = disk.contents(&report.kept_aside[0]).unwrap();
        assert_eq!(kept.len(), original.len() - 16 - size);
        assert_ne!(kept[..], original[16 + size..]);
        assert_eq!(kept[41..], original[16 + size + 41..]);
        let appended = log
            .append(batch(9), AppendDurability::Synced)
            .await
            .unwrap();
        assert_eq!(appended.base_offset, 2);
    });
}

// Goal: a bit flip in the last batch is cut there and nothing before it is lost.
#[test]
fn a_bit_flip_in_the_last_batch_is_cut_at_its_batch() {
    runtime().block_on(async {
        let disk = SimDisk::new(2);
        let config = LogConfig::default();
        written_log(&disk, &config, 4).await;
        let size = batch(0).len();
        assert!(disk.corrupt_bit(&segment_path(0), 16 + 3 * size + 50, 5));
        let (report, log) = repaired(&disk, &config).await;
        assert_eq!(report.new_end_offset, 6);
        assert_eq!(served(&log).await, vec![(0, 2), (2, 2), (4, 2)]);
        let epochs: Vec<(i32, i64)> = log
            .leader_epochs()
            .entries()
            .iter()
            .map(|entry| (entry.epoch, entry.start_offset))
            .collect();
        assert_eq!(epochs, vec![(1, 0), (2, 4)]);
    });
}

// Goal: a segment cut short below its recovery point (a truncated file) ends at its last
// whole batch; the half batch left is kept aside.
#[test]
fn a_truncated_file_ends_at_its_last_whole_batch() {
    runtime().block_on(async {
        let disk = SimDisk::new(3);
        let config = LogConfig::default();
        written_log(&disk, &config, 4).await;
        let size = batch(0).len() as u64;
        let file = disk
            .open(&segment_path(0), OpenMode::ReadWrite)
            .await
            .unwrap();
        file.set_len(16 + 2 * size + size / 2).await.unwrap();
        file.sync_data().await.unwrap();
        drop(file);
        let (report, log) = repaired(&disk, &config).await;
        assert_eq!(report.new_end_offset, 4);
        assert_eq!(report.damage_position, 16 + 2 * size);
        assert_eq!(served(&log).await, vec![(0, 2), (2, 2)]);
        let kept = disk.contents(&report.kept_aside[0]).unwrap();
        assert_eq!(kept.len() as u64, size / 2);
    });
}

// Goal: damage in a sealed segment (which the open does not rescan while its index is
// intact) is found by the repair's own scan: the log is cut there, and every later segment
// is taken out of the log whole and kept aside under a `.damaged` name, which the next
// open ignores.
#[test]
fn damage_in_a_sealed_segment_takes_the_later_segments_aside() {
    runtime().block_on(async {
        let disk = SimDisk::new(4);
        let config = LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 256,
            batch_bytes_max: 512,
            commit_bytes_max: 1024,
            recovery_read_bytes: 1024,
            ..LogConfig::default()
        };
        written_log(&disk, &config, 30).await;
        let mut bases: Vec<i64> = disk
            .list_dir(Path::new(DIR))
            .await
            .unwrap()
            .iter()
            .filter_map(|name| match segment::parse_file_name(name) {
                Some(PartitionFile::Segment(base)) => Some(base),
                _ => None,
            })
            .collect();
        bases.sort_unstable();
        assert!(bases.len() >= 3, "{bases:?}");
        let size = batch(0).len();
        // The second batch of the second segment.
        let damaged = bases[1];
        assert!(disk.corrupt_bit(&segment_path(damaged), 16 + size + 30, 1));
        let report = truncate_at_damage(&disk, Path::new(DIR), None, &config)
            .await
            .unwrap();
        assert_eq!(report.segment, segment_path(damaged));
        assert_eq!(report.new_end_offset, damaged + 2);
        // The damaged segment's tail and every later segment.
        assert_eq!(report.kept_aside.len(), bases.len() - 1);
        for later in &bases[2..] {
            let aside = PathBuf::from(format!("{}.damaged", segment_path(*later).display()));
            assert!(
                report.kept_aside.contains(&aside),
                "{:?}",
                report.kept_aside
            );
            assert!(disk.contents(&aside).is_some());
            assert!(disk.contents(&segment_path(*later)).is_none());
        }
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), damaged + 2);
        let served = served(&log).await;
        assert_eq!(served.len() as i64, damaged / 2 + 1);
        assert_eq!(served.last(), Some(&(damaged, 2)));
    });
}

// Goal: a partition whose segments all verify has nothing to cut: the repair refuses and
// changes nothing.
#[test]
fn an_undamaged_partition_is_not_cut() {
    runtime().block_on(async {
        let disk = SimDisk::new(5);
        let config = LogConfig::default();
        written_log(&disk, &config, 3).await;
        let before = disk.contents(&segment_path(0)).unwrap();
        let error = truncate_at_damage(&disk, Path::new(DIR), None, &config)
            .await
            .unwrap_err();
        assert!(matches!(error, RepairError::NoDamage(_)), "{error}");
        assert_eq!(disk.contents(&segment_path(0)).unwrap(), before);
    });
}

// Goal: a verified read's report (an offset, for damage the scan does not see: here a batch
// whose CRC is fine) cuts at the batch holding that offset.
#[test]
fn a_reported_offset_is_cut_at_its_batch() {
    runtime().block_on(async {
        let disk = SimDisk::new(6);
        let config = LogConfig::default();
        written_log(&disk, &config, 5).await;
        let size = batch(0).len() as u64;
        let report = truncate_at_damage(
            &disk,
            Path::new(DIR),
            Some(&DamageHint::FromOffset(5)),
            &config,
        )
        .await
        .unwrap();
        assert_eq!(report.new_end_offset, 4);
        assert_eq!(report.damage_position, 16 + 2 * size);
        let log = PartitionLog::open(disk.clone(), Path::new(DIR), config.clone(), clock())
            .await
            .unwrap();
        assert_eq!(served(&log).await, vec![(0, 2), (2, 2)]);
    });
}
