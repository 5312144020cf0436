//! Counting a partition's records (what `topic describe` shows as RECORDS).
//!
//! Offsets are not records: compaction removes records and keeps their offsets, and a
//! produce filter's dropped records leave their offsets empty. So every segment's index
//! counts the records of its batches ([`super::index::SegmentIndex::record_count`]), kept
//! as batches are appended, recovered, rewritten by compaction, and dropped with the
//! segment. A stored batch's `record_count` is exact: appends check it against the records
//! (`validate_batch_records`), and compaction and produce filters write the count of what
//! they keep.
//!
//! The partition's count is the sum over its segments minus the records of the first
//! segment below the log start (the log start moves inside a segment when `delete_before`
//! is given an offset that is not a segment boundary; retention always moves it to one).
//! That part is computed by [`records_below`] only when the log start or the first segment
//! changes (open, `delete_before`, compaction of the first segment), not per request, and
//! cheaply in the common case: a segment whose records fill its offsets (no compaction, no
//! filter) has exactly `log_start - base` records below the log start, with no read. Only a
//! segment with empty offsets is read, from its start to the batch holding the log start,
//! batch headers only but for that one batch, whose records are decoded to see which offsets
//! they hold.

use ledge_protocol::{BatchHeader, BatchIter, decode_batch};

use super::disk::{DiskError, DiskFile};
use super::segment::SEGMENT_HEADER_BYTES;

/// The records a stored batch holds: its `record_count`, bounded by the offsets it spans
/// (records have distinct offsets), so a header read from a file cannot make a segment's
/// count exceed its offsets.
pub fn stored_records(header: &BatchHeader) -> u64 {
    let span = i64::from(header.last_offset_delta).saturating_add(1).max(0);
    u64::try_from(i64::from(header.record_count).clamp(0, span)).unwrap_or(0)
}

/// What [`records_below`] needs to know about the segment that holds the log start.
pub struct SegmentRecords {
    /// Its first offset.
    pub base_offset: i64,
    /// One past its last offset.
    pub next_offset: i64,
    /// Its bytes (header included).
    pub size_bytes: u64,
    /// Records in its batches.
    pub record_count: u64,
}

/// Records of `segment` at offsets below `log_start`, if known without reading it: when the
/// log start is outside the segment, or every offset of the segment holds a record.
pub fn records_below_known(segment: &SegmentRecords, log_start: i64) -> Option<u64> {
    if log_start <= segment.base_offset {
        return Some(0);
    }
    if log_start >= segment.next_offset {
        return Some(segment.record_count);
    }
    let span = segment.next_offset - segment.base_offset;
    i64::try_from(segment.record_count)
        .is_ok_and(|records| records >= span)
        .then(|| u64::try_from(log_start - segment.base_offset).unwrap_or(0))
}

/// Records of `segment` at offsets below `log_start` (inside it), read from its `file` in
/// steps of `read_bytes`. Bytes that do not parse as batches end the count there (the
/// verifier and readers report such damage; the count is then of what precedes it).
pub async fn records_below_by_reading<F: DiskFile>(
    file: &F,
    segment: &SegmentRecords,
    log_start: i64,
    read_bytes: usize,
) -> Result<u64, DiskError> {
    let read_bytes = read_bytes.max(ledge_protocol::BATCH_HEADER_BYTES) as u64;
    let mut below = 0u64;
    let mut position = SEGMENT_HEADER_BYTES;
    let mut want = read_bytes;
    while position < segment.size_bytes {
        let chunk = file
            .read_at(position, want.min(segment.size_bytes - position) as usize)
            .await?;
        let mut batches = BatchIter::new(&chunk);
        for item in batches.by_ref() {
            let Ok((header, batch)) = item else { break };
            if header.base_offset >= log_start {
                return Ok(below);
            }
            if header.last_offset() < log_start {
                below += stored_records(&header);
                continue;
            }
            // The batch holding the log start: count its records below it.
            return Ok(below
                + match decode_batch(
                    &bytes::Bytes::copy_from_slice(batch),
                    &super::log::APPEND_DECODE_LIMITS,
                ) {
                    Ok(decoded) => decoded
                        .records
                        .iter()
                        .filter(|record| record.offset < log_start)
                        .count() as u64,
                    // Records that do not decode cannot be read either; count as many as
                    // the offsets below the log start could hold.
                    Err(_) => stored_records(&header)
                        .min(u64::try_from(log_start - header.base_offset).unwrap_or(0)),
                });
        }
        let consumed = batches.position() as u64;
        if consumed == 0 {
            // A batch longer than the step: read it whole next time, if the file holds it.
            match BatchHeader::parse(&chunk) {
                Ok(header)
                    if (header.total_bytes() as u64) > want
                        && position + header.total_bytes() as u64 <= segment.size_bytes =>
                {
                    want = header.total_bytes() as u64;
                    continue;
                }
                _ => break,
            }
        }
        position += consumed;
        want = read_bytes;
    }
    Ok(below)
}
