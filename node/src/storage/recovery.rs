//! Scanning segment bytes for whole, valid batches (pure).
//!
//! `scan` walks a slice of a segment batch by batch, checking for each: the length prefix,
//! the magic, the CRC-32C, that the base offset is exactly the next expected offset (the
//! CRC does not cover it, so contiguity is what protects it) and that the partition leader
//! epoch is the one this node stamps. It hands every good batch to the caller (index,
//! producer state) and stops at the first batch that is incomplete in the slice or invalid. The caller (the
//! log driver) decides what a stop means: read more, truncate a torn tail above the
//! recovery point, or report corruption below it. In a compacted segment (`allow_gaps`)
//! base offsets may jump forward but never back.
//!
//! A stop above the recovery point is a torn tail only if it looks like one. What a crash
//! leaves of an unfinished append is a prefix of it, with lost sectors reading as zeros or
//! missing (the file ends early); sectors may be lost out of order, so a later batch can
//! survive a lost earlier one. Damage that is not a lost write (a bit flip, a wrong
//! length) followed by a valid batch is corruption of data that may have been
//! acknowledged, and is reported, never truncated. [`continuing_batch`] finds the valid
//! batch after a stop; [`lost_write_in`] tells whether the damage before it shows a lost
//! sector.
//!
//! Stored batches are bounded only by what a segment can hold
//! ([`STORED_BATCH_BYTES_MAX`]), never by today's `max.message.bytes`: lowering that limit
//! must not turn batches accepted under the old one into "corruption".

use ledge_protocol::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_MIN, BATCH_LENGTH_PREFIX_BYTES, BatchHeader, MAGIC_V2,
    validate_batch,
};

use super::segment::SEGMENT_HEADER_BYTES;

/// The largest batch a stored segment can hold: segment positions are 32-bit (index
/// entries), and the segment header comes first. A length field above this cannot be one
/// our writer wrote, whatever `max.message.bytes` was at the time.
pub const STORED_BATCH_BYTES_MAX: u64 = u32::MAX as u64 - SEGMENT_HEADER_BYTES;

/// The unit in which a disk keeps or loses unsynced writes at a power loss: the smallest
/// sector size. A larger unit (a 4 KiB page) lost whole is also a run of lost 512-byte
/// sectors, so checking at 512 covers both.
pub const LOST_WRITE_UNIT_BYTES: u64 = 512;

/// The partition leader epoch of a log that never changed leader (a single node, or a
/// partition from before replication). Replicated logs stamp the leader's epoch instead; a
/// stored epoch is then checked against the leader-epoch checkpoint (`storage::leader_epoch`).
pub const PARTITION_LEADER_EPOCH: i32 = 0;

/// Where and why a scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The slice ended exactly at a batch boundary.
    End,
    /// The batch at `position` needs `total_bytes` but the slice ends first.
    Incomplete {
        /// File position of the batch.
        position: u64,
        /// Its declared size, if the length prefix was readable.
        total_bytes: Option<u64>,
    },
    /// The batch at `position` is not valid.
    Invalid {
        /// File position of the batch.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// The outcome of scanning one slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// File position just after the last valid batch.
    pub valid_end: u64,
    /// The offset the next batch must start at.
    pub next_offset: i64,
    /// Why the scan stopped.
    pub stop: ScanStop,
    /// The largest max-timestamp among the valid batches.
    pub max_timestamp_ms: Option<i64>,
}

/// Scans `bytes`, which start at file position `position`, expecting the first batch at
/// `next_offset`, calling `on_batch(header, position, total bytes)` for each valid batch.
/// Batches larger than [`STORED_BATCH_BYTES_MAX`] are invalid (no writer of ours could have
/// produced one, so the length field is damaged). A batch `on_batch` refuses (say, one the
/// segment index cannot hold) stops the scan there as invalid, with the reason it gave.
pub fn scan(
    bytes: &[u8],
    position: u64,
    next_offset: i64,
    allow_gaps: bool,
    on_batch: &mut (dyn FnMut(&BatchHeader, u64, u64) -> Result<(), String> + Send),
) -> ScanResult {
    let mut offset_in_slice = 0usize;
    let mut next_offset = next_offset;
    let mut max_timestamp_ms = None;
    let mut epoch_floor = PARTITION_LEADER_EPOCH;
    let stop = loop {
        let at = position + offset_in_slice as u64;
        let Some(rest) = bytes.get(offset_in_slice..) else {
            break ScanStop::End;
        };
        if rest.is_empty() {
            break ScanStop::End;
        }
        let Some(prefix) = rest.get(..BATCH_LENGTH_PREFIX_BYTES) else {
            break ScanStop::Incomplete {
                position: at,
                total_bytes: None,
            };
        };
        let mut length = [0u8; 4];
        length.copy_from_slice(prefix.get(8..12).unwrap_or(&[0; 4]));
        let batch_length = i32::from_be_bytes(length);
        let minimum = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;
        if batch_length < minimum {
            break ScanStop::Invalid {
                position: at,
                reason: format!("batch length {batch_length} is below the minimum {minimum}"),
            };
        }
        let total = BATCH_LENGTH_PREFIX_BYTES as u64 + batch_length as u64;
        if total > STORED_BATCH_BYTES_MAX {
            break ScanStop::Invalid {
                position: at,
                reason: format!(
                    "batch length {total} exceeds what a segment can hold ({STORED_BATCH_BYTES_MAX})"
                ),
            };
        }
        let Some(batch) = rest.get(..total as usize) else {
            break ScanStop::Incomplete {
                position: at,
                total_bytes: Some(total),
            };
        };
        let header = match validate_batch(batch) {
            Ok(header) => header,
            Err(error) => {
                break ScanStop::Invalid {
                    position: at,
                    reason: error.to_string(),
                };
            }
        };
        // A compacted segment may skip offsets between batches; it never goes backwards.
        let expected = if allow_gaps && header.base_offset > next_offset {
            header.base_offset
        } else {
            next_offset
        };
        if let Err(error) = header.check_stamp(expected, header.partition_leader_epoch) {
            break ScanStop::Invalid {
                position: at,
                reason: error.to_string(),
            };
        }
        // Leader epochs never go back along a log and are never negative (the scan cannot
        // know which epochs the log had; the open checks each against the leader-epoch
        // checkpoint when it has one).
        if header.partition_leader_epoch < epoch_floor {
            break ScanStop::Invalid {
                position: at,
                reason: format!(
                    "partition leader epoch {} is below {epoch_floor}, the epoch of the batch before",
                    header.partition_leader_epoch
                ),
            };
        }
        epoch_floor = header.partition_leader_epoch;
        // A segment named for a base near `i64::MAX` could hold a batch ending at the last
        // offset there is; nothing may follow it.
        let Some(after) = header.last_offset().checked_add(1) else {
            break ScanStop::Invalid {
                position: at,
                reason: format!(
                    "batch ends at offset {}, the largest there is",
                    header.last_offset()
                ),
            };
        };
        if let Err(reason) = on_batch(&header, at, total) {
            break ScanStop::Invalid {
                position: at,
                reason,
            };
        }
        if header.max_timestamp >= 0 {
            max_timestamp_ms = Some(max_timestamp_ms.map_or(header.max_timestamp, |max: i64| {
                max.max(header.max_timestamp)
            }));
        }
        next_offset = after;
        offset_in_slice += total as usize;
    };
    ScanResult {
        valid_end: position + offset_in_slice as u64,
        next_offset,
        stop,
        max_timestamp_ms,
    }
}

/// Reads just the header of the batch at the start of `bytes` (no CRC check), for walking
/// batches already validated on append.
pub fn peek_header(bytes: &[u8]) -> Option<BatchHeader> {
    BatchHeader::parse(bytes).ok()
}

/// If the header at the start of `bytes` could begin a batch that continues a log whose
/// next offset is at least `next_offset_min`, the batch's total size. A cheap filter (no
/// CRC) for [`continuing_batch`]'s search past damage: magic, length, the epoch this node
/// stamps, an offset not below the log's.
pub fn plausible_continuation(bytes: &[u8], next_offset_min: i64) -> Option<u64> {
    let header = BatchHeader::parse(bytes).ok()?;
    let total = header.total_bytes() as u64;
    let plausible = header.magic == MAGIC_V2
        && header.batch_length >= BATCH_LENGTH_MIN
        && total <= STORED_BATCH_BYTES_MAX
        && header.partition_leader_epoch >= PARTITION_LEADER_EPOCH
        && header.base_offset >= next_offset_min;
    plausible.then_some(total)
}

/// Whether `batch` (exactly one batch's bytes) is a whole valid batch that continues a log
/// whose next offset is at least `next_offset_min`; its header if so.
pub fn continuing_batch(batch: &[u8], next_offset_min: i64) -> Option<BatchHeader> {
    let header = validate_batch(batch).ok()?;
    let continues = header.base_offset >= next_offset_min
        && header.partition_leader_epoch >= PARTITION_LEADER_EPOCH;
    continues.then_some(header)
}

/// Whether the damaged range starting at `damage_start` shows a lost write within `bytes`
/// (which start at file position `position` and end before the next valid batch): some
/// sector's part at or after `damage_start`, running to the sector's end, reads as zeros.
/// That is what an unsynced append lost at a power failure leaves (the sector was never
/// written); a bit flip or a misdirected write leaves no such run. Only sectors that end
/// within `bytes` are judged.
pub fn lost_write_in(bytes: &[u8], position: u64, damage_start: u64) -> bool {
    let end = position + bytes.len() as u64;
    let mut sector_end = (damage_start / LOST_WRITE_UNIT_BYTES + 1) * LOST_WRITE_UNIT_BYTES;
    while sector_end <= end {
        let from = damage_start.max(sector_end - LOST_WRITE_UNIT_BYTES);
        if from >= position {
            let range = (from - position) as usize..(sector_end - position) as usize;
            if bytes
                .get(range)
                .is_some_and(|part| part.iter().all(|&byte| byte == 0))
            {
                return true;
            }
        }
        sector_end += LOST_WRITE_UNIT_BYTES;
    }
    false
}

/// The whole size a batch at the start of `bytes` declares in its length prefix, if the
/// prefix is there (8-byte base offset, then a big-endian 32-bit length) and not negative.
/// Used to tell whether the file ends inside a final damaged batch (an unfinished write).
pub fn declared_total_bytes(bytes: &[u8]) -> Option<u64> {
    let field: [u8; 4] = bytes
        .get(BATCH_LENGTH_PREFIX_BYTES - 4..BATCH_LENGTH_PREFIX_BYTES)?
        .try_into()
        .ok()?;
    let batch_length = u64::try_from(i32::from_be_bytes(field)).ok()?;
    Some(BATCH_LENGTH_PREFIX_BYTES as u64 + batch_length)
}

/// Whether the file's last, partial sector (the `bytes` from file position `position` to
/// the file's end `file_end`) reads as zeros from the damage at `damage_start` (or the
/// sector's start) to the end of the file. A file whose size was extended but whose last
/// block never reached the disk reads so on ext4 and xfs (unwritten extents read as zeros),
/// and SimDisk leaves the same; [`lost_write_in`] judges only whole sectors.
pub fn lost_write_at_file_end(bytes: &[u8], position: u64, damage_start: u64) -> bool {
    let file_end = position + bytes.len() as u64;
    let partial = file_end % LOST_WRITE_UNIT_BYTES;
    if partial == 0 {
        return false;
    }
    let from = damage_start.max(file_end - partial);
    if from < position || from >= file_end {
        return false;
    }
    bytes
        .get((from - position) as usize..)
        .is_some_and(|part| part.iter().all(|&byte| byte == 0))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use ledge_protocol::{
        EncodeOptions, Record, encode_batch, set_base_offset, set_partition_leader_epoch,
    };

    use super::*;

    fn stamped(base: i64) -> Vec<u8> {
        let records = [Record {
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        }];
        let mut bytes = encode_batch(&records, &EncodeOptions::default())
            .unwrap()
            .to_vec();
        set_base_offset(&mut bytes, base).unwrap();
        set_partition_leader_epoch(&mut bytes, PARTITION_LEADER_EPOCH).unwrap();
        bytes
    }

    // Goal: a batch at the very last offset (a segment file named for a base near i64::MAX)
    // ends the scan with a reason instead of overflowing `last offset + 1`.
    #[test]
    fn a_batch_at_the_last_offset_stops_the_scan() {
        let bytes = stamped(i64::MAX);
        let result = scan(&bytes, 16, i64::MAX, false, &mut |_, _, _| Ok(()));
        assert!(
            matches!(&result.stop, ScanStop::Invalid { position: 16, reason } if reason.contains("largest")),
            "{result:?}"
        );
        assert_eq!(result.valid_end, 16);
    }

    // Goal: a zero run that reaches the file's end inside its last, partial sector is a lost
    // write (a size extended before the block was written); zeros stopping short of the
    // end, or a file ending on a sector boundary, are not judged here.
    #[test]
    fn a_zero_run_to_the_file_end_is_a_lost_write() {
        let unit = LOST_WRITE_UNIT_BYTES as usize;
        let mut bytes = vec![7u8; unit + 100];
        assert!(!lost_write_at_file_end(&bytes, 0, 10));
        bytes[unit..].fill(0);
        assert!(lost_write_at_file_end(&bytes, 0, 10));
        // The damage inside the last sector: only zeros from it on count.
        bytes[unit..unit + 50].fill(7);
        assert!(lost_write_at_file_end(&bytes, 0, unit as u64 + 50));
        assert!(!lost_write_at_file_end(&bytes, 0, 10));
        // Ending on a sector boundary: nothing partial to judge.
        assert!(!lost_write_at_file_end(&bytes[..unit], 0, 10));
        assert_eq!(
            declared_total_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(268)
        );
        assert_eq!(declared_total_bytes(&[0; 11]), None);
        assert_eq!(
            declared_total_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0]),
            None
        );
    }

    // Goal: the lost-write test sees a zero run to a sector end that starts at the damage
    // or a sector start, and nothing else: not zeros that stop short of a sector end, and
    // not a sector that ends after the bytes given.
    #[test]
    fn a_lost_write_is_a_zero_run_to_a_sector_end() {
        let unit = LOST_WRITE_UNIT_BYTES as usize;
        let mut bytes = vec![7u8; 3 * unit];
        // Damage at 100; zeros from 100 to the first sector end: a lost write.
        bytes[100..unit].fill(0);
        assert!(lost_write_in(&bytes, 0, 100));
        // The same zeros stopping one byte short: not.
        bytes[unit - 1] = 1;
        assert!(!lost_write_in(&bytes, 0, 100));
        // A whole zero sector later: a lost write.
        bytes[2 * unit..3 * unit].fill(0);
        assert!(lost_write_in(&bytes, 0, 100));
        // ...unless the bytes end before that sector does.
        assert!(!lost_write_in(&bytes[..3 * unit - 1], 0, 100));
        // Zeros before the damage do not count.
        let mut early = vec![7u8; 2 * unit];
        early[..unit].fill(0);
        assert!(!lost_write_in(&early, 0, unit as u64 + 10));
    }
}
