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

use ledge_protocol::{BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, BatchHeader, validate_batch};

/// The partition leader epoch this node stamps on every batch (no replication yet).
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
/// Batches larger than `batch_bytes_max` are invalid (no writer of ours could have
/// produced one, so the length field is damaged). A batch `on_batch` refuses (say, one the
/// segment index cannot hold) stops the scan there as invalid, with the reason it gave.
pub fn scan(
    bytes: &[u8],
    position: u64,
    next_offset: i64,
    batch_bytes_max: u64,
    allow_gaps: bool,
    on_batch: &mut (dyn FnMut(&BatchHeader, u64, u64) -> Result<(), String> + Send),
) -> ScanResult {
    let mut offset_in_slice = 0usize;
    let mut next_offset = next_offset;
    let mut max_timestamp_ms = None;
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
        if total > batch_bytes_max {
            break ScanStop::Invalid {
                position: at,
                reason: format!("batch length {total} exceeds the limit {batch_bytes_max}"),
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
        if let Err(error) = header.check_stamp(expected, PARTITION_LEADER_EPOCH) {
            break ScanStop::Invalid {
                position: at,
                reason: error.to_string(),
            };
        }
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
        next_offset = header.last_offset() + 1;
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
