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
//! The partition's count is the sum over its segments, minus the records of the first
//! segment below the log start, minus records written but not yet below the high watermark
//! (not readable yet). The log start lies inside a segment only when `delete_before` is given
//! an offset that is not a segment boundary (retention always moves it to one). The records
//! below it are counted only when the log start or the first segment changes (open,
//! `delete_before`, compaction of the first segment), never per request, and cheaply in the
//! common case: a segment whose records fill its offsets (no compaction, no filter) has
//! exactly `log_start - base` records below the log start, with no read
//! ([`records_below_known`]). Only a segment with empty offsets is read
//! ([`records_below_by_reading`]): from its start to the batch holding the log start (at most
//! one segment, `segment.bytes`), batch headers only but for that one batch, whose records are
//! decoded to see which offsets they hold. An exact count from the index alone would need a
//! cumulative count per index entry and still a decode of the straddling batch; the rare read
//! was preferred to a larger index.

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

/// What the record count needs to know about the segment that holds the log start.
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use bytes::Bytes;
    use ledge_protocol::{EncodeOptions, Record, encode_batch_with_deltas, set_base_offset};

    use super::*;
    use crate::sim::SimDisk;
    use crate::storage::disk::{Disk, OpenMode};
    use crate::storage::segment;

    // Goal: the records below every possible log start of a segment with offset gaps are
    // counted exactly (against the list of record offsets), whatever the read step: steps
    // that end inside batches and a step smaller than one batch. Method: a segment file of
    // batches with gaps written on SimDisk, counted for each log start with three steps.
    #[test]
    fn records_below_every_log_start_of_a_gapped_segment() {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                let disk = SimDisk::new(3);
                let path = Path::new("/data/t-0/00000000000000000100.log");
                let mut bytes = segment::segment_header().to_vec();
                let mut offsets = Vec::new();
                let mut next = 100i64;
                for (batch, deltas) in [
                    vec![0, 2],
                    vec![1],
                    vec![0, 1, 2, 3],
                    vec![3, 5, 9],
                    vec![0],
                ]
                .into_iter()
                .enumerate()
                {
                    let records: Vec<Record> = deltas
                        .iter()
                        .map(|delta| Record {
                            timestamp: 0,
                            key: None,
                            value: Some(Bytes::from(format!("{batch}-{delta}-{}", "v".repeat(40)))),
                            headers: Vec::new(),
                        })
                        .collect();
                    let span = deltas.iter().max().unwrap() + 2;
                    let mut encoded = encode_batch_with_deltas(
                        &records,
                        &deltas,
                        span - 1,
                        &EncodeOptions::default(),
                    )
                    .unwrap()
                    .to_vec();
                    set_base_offset(&mut encoded, next).unwrap();
                    offsets.extend(deltas.iter().map(|delta| next + i64::from(*delta)));
                    next += i64::from(span);
                    bytes.extend_from_slice(&encoded);
                }
                disk.create_dir_all(Path::new("/data/t-0")).await.unwrap();
                let file = disk.open(path, OpenMode::CreateNew).await.unwrap();
                file.write_at(0, Bytes::from(bytes.clone())).await.unwrap();
                let segment = SegmentRecords {
                    base_offset: 100,
                    next_offset: next,
                    size_bytes: bytes.len() as u64,
                    record_count: offsets.len() as u64,
                };
                for log_start in 100..=next {
                    let expected = offsets.iter().filter(|offset| **offset < log_start).count();
                    let known = records_below_known(&segment, log_start);
                    if log_start == 100 || log_start == next {
                        assert_eq!(known, Some(expected as u64));
                        continue;
                    }
                    assert_eq!(known, None, "a gapped segment must be read");
                    for step in [1, 150, 1 << 20] {
                        let counted = records_below_by_reading(&file, &segment, log_start, step)
                            .await
                            .unwrap();
                        assert_eq!(
                            counted, expected as u64,
                            "log start {log_start}, step {step}"
                        );
                    }
                }
                // Without gaps no read is needed.
                let dense = SegmentRecords {
                    record_count: (next - 100) as u64,
                    ..segment
                };
                assert_eq!(records_below_known(&dense, 107), Some(7));
            });
    }
}
