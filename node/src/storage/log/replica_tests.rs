//! Replication primitives of the partition log: leader epochs stamped and checkpointed,
//! follower appends that keep the leader's offsets and epochs, and durable truncation, on
//! the simulated disk with power loss.

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ledge_protocol::{BatchHeader, BatchIter, EncodeOptions, Record, encode_batch};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::sim::SimDisk;
use crate::storage::disk::OpenMode;
use crate::storage::leader_epoch::{EpochEntry, LEADER_EPOCH_FILE_NAME, LeaderEpochCache};
use crate::storage::segment::SEGMENT_HEADER_BYTES;

const LEADER: &str = "/data/leader/orders-0";
const FOLLOWER: &str = "/data/follower/orders-0";

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(1_700_000_000_000))
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 256,
        batch_bytes_max: 512,
        commit_bytes_max: 4096,
        recovery_read_bytes: 1024,
        ..LogConfig::default()
    }
}

/// A batch of 3 records tagged `tag`; from idempotent producer 7 at `sequence` if given.
fn batch(tag: u64, sequence: Option<i32>) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|number| Record {
            timestamp: 1_700_000_000_000 + number,
            key: Some(Bytes::from(format!("key-{tag}"))),
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    let options = match sequence {
        Some(sequence) => EncodeOptions {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: sequence,
            ..EncodeOptions::default()
        },
        None => EncodeOptions::default(),
    };
    encode_batch(&records, &options).unwrap()
}

async fn open(disk: &SimDisk, directory: &str) -> PartitionLog<SimDisk> {
    PartitionLog::open(disk.clone(), Path::new(directory), config(), clock())
        .await
        .unwrap()
}

/// Every batch from the log start to the high watermark, as stored.
async fn stored(log: &PartitionLog<SimDisk>) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 4096).await.unwrap();
        assert!(!read.bytes.is_empty(), "nothing at {offset}");
        for item in BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            offset = header.last_offset() + 1;
            batches.push(read.bytes.slice_ref(bytes));
        }
    }
    batches
}

fn joined(batches: &[Bytes]) -> Bytes {
    let mut all = BytesMut::new();
    for batch in batches {
        all.extend_from_slice(batch);
    }
    all.freeze()
}

fn epochs_of(batches: &[Bytes]) -> Vec<i32> {
    batches
        .iter()
        .map(|batch| BatchHeader::parse(batch).unwrap().partition_leader_epoch)
        .collect()
}

/// A leader log with 12 batches (36 offsets) in epochs 0, 2 and 5, over several segments.
async fn leader_log(disk: &SimDisk) -> PartitionLog<SimDisk> {
    let log = open(disk, LEADER).await;
    for tag in 0..12 {
        if tag == 4 {
            log.set_leader_epoch(2).await.unwrap();
        }
        if tag == 8 {
            log.set_leader_epoch(5).await.unwrap();
        }
        log.append(batch(tag, Some(tag as i32 * 3)), AppendDurability::Synced)
            .await
            .unwrap();
    }
    log
}

#[tokio::test]
async fn leader_appends_carry_the_epoch_set_and_the_checkpoint_survives_loss_of_its_file() {
    // Goal: appends are stamped with the epoch `set_leader_epoch` made current, the
    // checkpoint holds each epoch's start, and it is the same after a power loss and after
    // its file is deleted (rebuilt from the batches).
    let disk = SimDisk::new(1);
    let log = leader_log(&disk).await;
    assert!(log.segment_count() > 1);
    let batches = stored(&log).await;
    assert_eq!(epochs_of(&batches), [0, 0, 0, 0, 2, 2, 2, 2, 5, 5, 5, 5]);
    let expected = [
        EpochEntry {
            epoch: 0,
            start_offset: 0,
        },
        EpochEntry {
            epoch: 2,
            start_offset: 12,
        },
        EpochEntry {
            epoch: 5,
            start_offset: 24,
        },
    ];
    assert_eq!(log.leader_epochs().entries(), &expected[..]);
    assert_eq!(log.leader_epoch(), 5);
    assert!(matches!(
        log.set_leader_epoch(4).await,
        Err(LeaderEpochError::WentBackwards {
            requested: 4,
            current: 5
        })
    ));
    disk.crash();
    let log = open(&disk, LEADER).await;
    assert_eq!(log.leader_epochs().entries(), &expected[..]);
    assert_eq!(log.leader_epoch(), 5);
    log.close().await.unwrap();
    disk.remove_file(&Path::new(LEADER).join(LEADER_EPOCH_FILE_NAME))
        .await
        .unwrap();
    let log = open(&disk, LEADER).await;
    assert_eq!(log.leader_epochs().entries(), &expected[..]);
    assert_eq!(stored(&log).await, batches);
}

#[tokio::test]
async fn a_follower_copy_keeps_the_leaders_offsets_epochs_and_bytes() {
    // Goal: what a follower appends from the leader's read is byte-identical at the same
    // offsets, with the same epoch checkpoint, synced when the call returns.
    let disk = SimDisk::new(2);
    let leader = leader_log(&disk).await;
    let follower = open(&disk, FOLLOWER).await;
    let batches = stored(&leader).await;
    let (first, rest) = batches.split_at(5);
    let appended = follower.append_as_follower(joined(first)).await.unwrap();
    assert_eq!(appended.len(), 5);
    assert_eq!(follower.high_watermark(), 15);
    follower.append_as_follower(joined(rest)).await.unwrap();
    disk.crash();
    let follower = open(&disk, FOLLOWER).await;
    assert_eq!(stored(&follower).await, batches);
    assert_eq!(
        follower.leader_epochs(),
        open(&disk, LEADER).await.leader_epochs()
    );
}

#[tokio::test]
async fn a_follower_refuses_batches_that_do_not_continue_its_log_or_are_damaged() {
    // Goal: a gap, an epoch going back and a flipped bit are each refused without writing
    // the refused batch or anything after it; batches before it are kept.
    let disk = SimDisk::new(3);
    let leader = leader_log(&disk).await;
    let follower = open(&disk, FOLLOWER).await;
    let batches = stored(&leader).await;
    follower
        .append_as_follower(joined(&batches[..2]))
        .await
        .unwrap();
    // A gap: batch 3 where batch 2 is due.
    let error = follower
        .append_as_follower(batches[3].clone())
        .await
        .unwrap_err();
    assert!(matches!(
        error.error,
        AppendError::NotContinuing { base_offset: 9, .. }
    ));
    // Epochs going back: batch 2 (epoch 0) restamped as epoch -> after an epoch-2 batch.
    follower
        .append_as_follower(joined(&batches[2..5]))
        .await
        .unwrap();
    let mut older = BytesMut::from(&batches[5][..]);
    ledge_protocol::set_partition_leader_epoch(&mut older, 1).unwrap();
    let error = follower
        .append_as_follower(older.freeze())
        .await
        .unwrap_err();
    assert!(matches!(error.error, AppendError::NotContinuing { .. }));
    // A flipped bit in the second of three batches: the first is appended, no more.
    let mut damaged = BytesMut::from(&joined(&batches[5..8])[..]);
    let at = batches[5].len() + batches[6].len() - 3;
    damaged[at] ^= 0x10;
    let error = follower
        .append_as_follower(damaged.freeze())
        .await
        .unwrap_err();
    assert_eq!(error.appended.len(), 1);
    assert!(matches!(error.error, AppendError::InvalidBatch(_)));
    assert_eq!(stored(&follower).await, batches[..6].to_vec());
}

#[tokio::test]
async fn a_producer_retry_after_failover_is_deduplicated_on_the_new_leader() {
    // Goal: the follower rebuilds idempotent-producer state from the copied batches, so
    // once it leads, a retry of a batch the old leader acknowledged gets its original
    // offsets instead of a second copy.
    let disk = SimDisk::new(4);
    let leader = leader_log(&disk).await;
    let follower = open(&disk, FOLLOWER).await;
    follower
        .append_as_follower(joined(&stored(&leader).await))
        .await
        .unwrap();
    follower.set_leader_epoch(6).await.unwrap();
    let retry = follower
        .append(batch(11, Some(33)), AppendDurability::Synced)
        .await
        .unwrap();
    assert_eq!(
        retry,
        AppendOutcome {
            base_offset: 33,
            last_offset: 35
        }
    );
    assert_eq!(follower.log_end_offset(), 36);
    let next = follower
        .append(batch(12, Some(36)), AppendDurability::Synced)
        .await
        .unwrap();
    assert_eq!(next.base_offset, 36);
    let all = stored(&follower).await;
    assert_eq!(epochs_of(&all).last(), Some(&6));
}

#[tokio::test]
async fn truncate_cuts_at_a_batch_boundary_and_rebuilds_producer_state_and_epochs() {
    // Goal: a cut inside a batch of an earlier segment removes that batch and everything
    // after, the epochs past the end, and the producer's later sequences, so the producer
    // continues from what is left; below the log start is refused.
    let disk = SimDisk::new(5);
    let log = leader_log(&disk).await;
    let before = stored(&log).await;
    let segments = log.segment_count();
    let log = log.truncate_to(14, disk.clone(), clock()).await.unwrap();
    assert!(log.segment_count() < segments);
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.high_watermark(), 12);
    assert_eq!(stored(&log).await, before[..4].to_vec());
    assert_eq!(
        log.leader_epochs().entries(),
        &[EpochEntry {
            epoch: 0,
            start_offset: 0
        }]
    );
    // The producer's batch at sequence 12 was cut: sequence 12 is due again, not 36.
    let again = log
        .append(batch(4, Some(12)), AppendDurability::Synced)
        .await
        .unwrap();
    assert_eq!(again.base_offset, 12);
    // A cut at or past the end changes nothing.
    let same = log.truncate_to(100, disk.clone(), clock()).await.unwrap();
    assert_eq!(same.log_end_offset(), 15);
    log.delete_before(3).await.unwrap();
    assert!(matches!(
        log.truncate_to(2, disk.clone(), clock()).await,
        Err(TruncateError::BelowLogStart {
            requested: 2,
            log_start_offset: 3
        })
    ));
}

#[tokio::test]
async fn a_power_loss_anywhere_in_a_truncate_leaves_a_prefix_at_least_as_long_as_the_cut() {
    // Goal: crash consistency of truncation: power fails at each operation of a truncate in
    // turn, under several seeds; the reopened log is a prefix of the old one that reaches
    // the cut, with epochs that match its batches, and truncating again finishes the job.
    let cut = 14;
    for seed in 0..3u64 {
        for operations in 0..40u64 {
            let disk = SimDisk::new(seed * 1_000 + operations);
            let log = leader_log(&disk).await;
            let before = stored(&log).await;
            disk.power_off_after(operations);
            let finished = log.truncate_to(cut, disk.clone(), clock()).await.is_ok();
            disk.crash();
            let log = open(&disk, LEADER).await;
            let after = stored(&log).await;
            assert!(
                after.len() >= 4 && before.starts_with(&after),
                "seed {seed} ops {operations}: {} batches left",
                after.len()
            );
            if finished {
                assert_eq!(after.len(), 4, "seed {seed} ops {operations}");
            }
            let (rebuilt, refused) = LeaderEpochCache::from_batches(after.iter().map(|batch| {
                let header = BatchHeader::parse(batch).unwrap();
                (header.partition_leader_epoch, header.base_offset)
            }));
            assert!(refused.is_empty());
            assert_eq!(log.leader_epochs(), rebuilt, "seed {seed} ops {operations}");
            let log = log.truncate_to(cut, disk.clone(), clock()).await.unwrap();
            assert_eq!(stored(&log).await, before[..4].to_vec());
        }
    }
}

/// Reads a whole log with `read_verified`: the good batches, and the first damage met.
async fn verified(log: &PartitionLog<SimDisk>) -> (Vec<Bytes>, Option<BatchDamage>) {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read_verified(offset, 4096).await.unwrap();
        for item in BatchIter::new(&read.bytes) {
            batches.push(read.bytes.slice_ref(item.unwrap().1));
        }
        if read.damage.is_some() {
            return (batches, read.damage);
        }
        offset = read.end_offset;
    }
    (batches, None)
}

/// A follower whose copy is damaged by `damage`, repaired the way the follower state says:
/// its good prefix is kept, it truncates at the first bad offset, fetches again from the
/// leader, and ends identical to it.
async fn repaired_after(seed: u64, damage: impl AsyncFnOnce(&SimDisk, &Path)) {
    let disk = SimDisk::new(seed);
    let leader = leader_log(&disk).await;
    let follower = open(&disk, FOLLOWER).await;
    let batches = stored(&leader).await;
    follower.append_as_follower(joined(&batches)).await.unwrap();
    assert!(follower.segment_count() > 2);
    let first_segment = Path::new(FOLLOWER).join(crate::storage::segment::segment_file_name(0));
    damage(&disk, &first_segment).await;
    let (good, found) = verified(&follower).await;
    let found = found.expect("the damage is found");
    assert!(batches.starts_with(&good));
    let good_end = good.last().map_or(0, |batch| {
        BatchHeader::parse(batch).unwrap().last_offset() + 1
    });
    assert_eq!(found.offset, good_end, "{}", found.reason);
    let follower = follower
        .truncate_to(found.offset, disk.clone(), clock())
        .await
        .unwrap();
    assert_eq!(follower.log_end_offset(), good_end);
    let refetch = leader.read_verified(good_end, 1 << 20).await.unwrap();
    assert_eq!(refetch.damage, None);
    let mut rest = refetch.bytes;
    let mut offset = refetch.end_offset;
    while offset < leader.high_watermark() {
        follower.append_as_follower(rest).await.unwrap();
        let next = leader.read_verified(offset, 1 << 20).await.unwrap();
        rest = next.bytes;
        offset = next.end_offset;
    }
    follower.append_as_follower(rest).await.unwrap();
    assert_eq!(stored(&follower).await, batches);
    assert_eq!(verified(&follower).await, (batches, None));
}

#[tokio::test]
async fn a_flipped_bit_is_never_served_and_the_follower_refetches_from_its_last_good_batch() {
    // Goal: issue 13 item 4: a bit flipped in a stored batch (here in the first segment's
    // second batch) stops the verified read before it; the replica truncates there and
    // copies the rest from its leader again.
    repaired_after(6, async |disk: &SimDisk, segment: &Path| {
        let second_batch = SEGMENT_HEADER_BYTES as usize + batch(0, Some(0)).len() + 40;
        assert!(disk.corrupt_bit(segment, second_batch, 3));
    })
    .await;
}

#[tokio::test]
async fn a_truncated_segment_file_is_never_served_and_the_follower_refetches() {
    // Goal: a segment file cut short under the log (lost blocks) is reported at the first
    // offset it no longer holds whole, and repaired the same way.
    repaired_after(7, async |disk: &SimDisk, segment: &Path| {
        let file = disk.open(segment, OpenMode::ReadWrite).await.unwrap();
        let length = file.len().await.unwrap();
        file.set_len(length - 30).await.unwrap();
        file.sync_data().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_cut_at_the_end_drops_only_an_epoch_that_wrote_nothing() {
    // Goal: a node that was elected (epoch assigned at its end) and wrote nothing in that
    // epoch drops it when its new leader's answer says its log ends in an earlier epoch;
    // no batch is cut, and the drop survives a power loss.
    let disk = SimDisk::new(8);
    let log = leader_log(&disk).await;
    log.set_leader_epoch(9).await.unwrap();
    assert_eq!(log.leader_epochs().latest_epoch(), Some(9));
    let before = stored(&log).await;
    let log = log.truncate_to(36, disk.clone(), clock()).await.unwrap();
    assert_eq!(log.leader_epochs().latest_epoch(), Some(5));
    assert_eq!(stored(&log).await, before);
    disk.crash();
    let log = open(&disk, LEADER).await;
    assert_eq!(log.leader_epochs().latest_epoch(), Some(5));
    assert_eq!(stored(&log).await, before);
}

#[tokio::test]
async fn a_flipped_bit_in_a_stored_leader_epoch_keeps_the_partition_offline() {
    // Goal: the CRC does not cover the leader epoch, and the last batch's epoch can go up
    // without the scan noticing; the stored checkpoint catches it at open (5 becomes 7).
    let disk = SimDisk::new(9);
    let log = leader_log(&disk).await;
    let active_base = log.segment_infos().last().unwrap().base_offset;
    log.close().await.unwrap();
    let path = Path::new(LEADER).join(crate::storage::segment::segment_file_name(active_base));
    let contents = Bytes::from(disk.contents(&path).unwrap());
    let mut last = SEGMENT_HEADER_BYTES as usize;
    let mut position = last;
    for item in BatchIter::new(&contents[SEGMENT_HEADER_BYTES as usize..]) {
        last = position;
        position += item.unwrap().1.len();
    }
    // Byte 15 of a batch is the low byte of its partition leader epoch.
    assert!(disk.corrupt_bit(&path, last + 15, 1));
    let error = PartitionLog::open(disk.clone(), Path::new(LEADER), config(), clock())
        .await
        .err()
        .expect("the flip is found");
    assert!(
        matches!(&error, OpenError::Corrupt { reason, .. } if reason.contains("leader epoch 7")),
        "{error}"
    );
}
