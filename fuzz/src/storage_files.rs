//! `storage_files`: the loaders of the files a node reads when it starts, over arbitrary bytes.
//! A damaged or foreign file must give a clear error (or be rebuilt), never a panic, so the
//! node never fails to start for a reason it cannot name. The first input byte picks the file;
//! the rest is its content, with its checksum made to match (as a bit flip that happens to keep
//! the CRC would, and so mutations reach the parsing behind the checksum):
//!
//! - partition checkpoint (`storage::checkpoint`, two CRC-32C slots);
//! - leader-epoch checkpoint (`storage::leader_epoch`, trailing CRC-32C);
//! - producer-state snapshot (`storage::producers`, CRC-32C of the body in the header);
//! - segment header (`storage::segment::check_segment_header`), then the batches after it as
//!   the start-up scan of a segment tail reads them (`storage::recovery::scan`).
//!
//! Oracles: whatever a loader accepts, its writer writes again and the loader reads back to the
//! same value; the scan reports contiguous valid batches from the start of the slice, each of
//! which validates on its own, ending where the scan says valid bytes end.

use ledge_node::storage::checkpoint::{Checkpoint, SLOT_BYTES as CHECKPOINT_SLOT_BYTES};
use ledge_node::storage::leader_epoch::LeaderEpochCache;
use ledge_node::storage::producers::ProducerStates;
use ledge_node::storage::recovery::{ScanStop, scan};
use ledge_node::storage::segment::{
    SEGMENT_HEADER_BYTES, check_segment_header, segment_header_with_flags,
};

/// Bytes of a checkpoint slot that its CRC-32C covers, then the CRC.
const CHECKPOINT_CHECKED_BYTES: usize = 40;
/// Bytes of a producer snapshot's header; its body's CRC-32C is at 16..20.
const SNAPSHOT_HEADER_BYTES: usize = 24;

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => check_checkpoint(content),
        1 => check_leader_epochs(content),
        2 => check_producer_snapshot(content),
        // Whether compaction gaps are allowed: the selector's next bit.
        _ => check_segment(content, selector & 4 != 0),
    }
}

fn check_checkpoint(content: &[u8]) {
    // Spread the content over the two slots so both are reached from short inputs.
    let mut file = [0u8; 2 * CHECKPOINT_SLOT_BYTES];
    let (first, second) = content.split_at(content.len() / 2);
    for (slot, part) in [first, second].into_iter().enumerate() {
        let start = slot * CHECKPOINT_SLOT_BYTES;
        let length = part.len().min(CHECKPOINT_SLOT_BYTES);
        file[start..start + length].copy_from_slice(&part[..length]);
        let crc = crc32c::crc32c(&file[start..start + CHECKPOINT_CHECKED_BYTES]);
        file[start + CHECKPOINT_CHECKED_BYTES..start + CHECKPOINT_CHECKED_BYTES + 4]
            .copy_from_slice(&crc.to_be_bytes());
    }
    for bytes in [content, &file[..]] {
        match Checkpoint::decode(bytes) {
            Ok(checkpoint) => {
                let again = Checkpoint::decode(&checkpoint.encode()).expect("a written slot reads");
                assert_eq!(again, checkpoint, "checkpoint round trip");
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
}

fn check_leader_epochs(content: &[u8]) {
    let mut sealed = content.to_vec();
    if let Some(body) = content.len().checked_sub(4) {
        let crc = crc32c::crc32c(&content[..body]);
        sealed[body..].copy_from_slice(&crc.to_be_bytes());
    }
    for bytes in [content, &sealed[..]] {
        match LeaderEpochCache::decode(bytes) {
            Ok(cache) => {
                let again = LeaderEpochCache::decode(&cache.encode())
                    .expect("a written leader-epoch file reads");
                assert_eq!(again, cache, "leader-epoch round trip");
                for pair in cache.entries().windows(2) {
                    assert!(pair[0].epoch < pair[1].epoch, "epochs ascend");
                    assert!(
                        pair[0].start_offset < pair[1].start_offset,
                        "offsets ascend"
                    );
                }
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
}

fn check_producer_snapshot(content: &[u8]) {
    let mut sealed = content.to_vec();
    if content.len() >= SNAPSHOT_HEADER_BYTES {
        let crc = crc32c::crc32c(&content[SNAPSHOT_HEADER_BYTES..]);
        sealed[16..20].copy_from_slice(&crc.to_be_bytes());
    }
    for bytes in [content, &sealed[..]] {
        if let Some(states) = ProducerStates::decode_snapshot(bytes) {
            let again = ProducerStates::decode_snapshot(&states.encode_snapshot())
                .expect("a written snapshot reads");
            assert_eq!(again, states, "producer snapshot round trip");
        }
    }
}

fn check_segment(content: &[u8], allow_gaps: bool) {
    let header_bytes = SEGMENT_HEADER_BYTES as usize;
    if let Ok(flags) = check_segment_header(content) {
        assert_eq!(
            check_segment_header(&segment_header_with_flags(flags)),
            Ok(flags)
        );
    }
    let tail = content.get(header_bytes..).unwrap_or_default();
    // The offset the scan expects first: the first batch's own, so a valid tail scans whole
    // (the scan's refusal of a wrong first offset is the same check as of a later one).
    let next_offset = tail
        .get(..8)
        .map_or(0, |bytes| i64::from_be_bytes(bytes.try_into().unwrap()));
    let mut batches = Vec::new();
    let result = scan(
        tail,
        SEGMENT_HEADER_BYTES,
        next_offset,
        allow_gaps,
        &mut |header, position, total_bytes| {
            batches.push((*header, position, total_bytes));
            Ok(())
        },
    );
    let mut expected_position = SEGMENT_HEADER_BYTES;
    for (header, position, total_bytes) in &batches {
        assert_eq!(
            *position, expected_position,
            "scanned batches are contiguous"
        );
        let start = usize::try_from(position - SEGMENT_HEADER_BYTES).unwrap();
        let end = start + usize::try_from(*total_bytes).unwrap();
        let batch = &tail[start..end];
        assert_eq!(
            ledge_protocol::validate_batch(batch).as_ref(),
            Ok(header),
            "the scan passed a batch that does not validate"
        );
        expected_position += total_bytes;
    }
    assert_eq!(result.valid_end, expected_position, "valid end");
    match &result.stop {
        ScanStop::End => assert_eq!(expected_position, SEGMENT_HEADER_BYTES + tail.len() as u64),
        ScanStop::Incomplete { position, .. } | ScanStop::Invalid { position, .. } => {
            assert_eq!(
                *position, expected_position,
                "the scan stops where valid bytes end"
            );
        }
    }
}
