//! The read path: reads by position in the segment files, up to the high watermark, never
//! waiting for the writer.

use std::path::Path;

use bytes::Bytes;
use ledge_protocol::{BATCH_HEADER_BYTES, BatchHeader, decode_batch};

use super::config::APPEND_DECODE_LIMITS;
use super::error::ReadError;
use super::{LogState, PartitionLog};
use crate::storage::disk::{Disk, DiskFile};
use crate::storage::segment::SEGMENT_HEADER_BYTES;
use crate::storage::verify::SegmentDamage;

/// How far a read may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadBound {
    /// Synced bytes only, below the high watermark.
    Synced,
    /// Written bytes too, below the written end (`LogConfig::visible_at_write`).
    Written,
}

/// Whole batches read from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBatches {
    /// Zero or more whole batches; the first contains the requested offset.
    pub bytes: Bytes,
    /// One past the last readable offset at the time of the read.
    pub high_watermark: i64,
    /// The first readable offset at the time of the read.
    pub log_start_offset: i64,
}

impl<D: Disk> PartitionLog<D> {
    /// Reads whole batches starting with the one that contains `from_offset`, up to
    /// `max_bytes` (at least one whole batch if any is available, as Kafka does, so a
    /// consumer always progresses). Reads stay within one segment.
    pub async fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        self.read_below(from_offset, max_bytes, ReadBound::Synced)
            .await
    }

    /// As [`read`](Self::read), up to [`visible_end`](Self::visible_end): with
    /// `LogConfig::visible_at_write` written batches are read before they are synced, and
    /// the answer's `high_watermark` is the written end. What a consumer's fetch reads.
    pub async fn read_visible(
        &self,
        from_offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, ReadError> {
        let bound = if self.shared.config().visible_at_write {
            ReadBound::Written
        } else {
            ReadBound::Synced
        };
        self.read_below(from_offset, max_bytes, bound).await
    }

    async fn read_below(
        &self,
        from_offset: i64,
        max_bytes: usize,
        bound: ReadBound,
    ) -> Result<ReadBatches, ReadError> {
        let mut from_offset = from_offset;
        loop {
            let (
                file,
                path,
                start_position,
                mut readable_end,
                segment_end,
                high_watermark,
                log_start_offset,
                segment_base,
            ) = {
                let state = self.shared.read_state();
                // The written end moves only after a successful write, so every byte of
                // the segments below it is in the file; read under the state lock, it
                // agrees with the segments' sizes taken here.
                let visible_end = match bound {
                    ReadBound::Synced => state.high_watermark,
                    ReadBound::Written => {
                        state.high_watermark.max(*self.shared.written_end.borrow())
                    }
                };
                let unsynced_visible = visible_end > state.high_watermark;
                if from_offset < state.log_start_offset || from_offset > visible_end {
                    return Err(ReadError::OffsetOutOfRange {
                        requested: from_offset,
                        log_start_offset: state.log_start_offset,
                        high_watermark: visible_end,
                    });
                }
                let empty = ReadBatches {
                    bytes: Bytes::new(),
                    high_watermark: visible_end,
                    log_start_offset: state.log_start_offset,
                };
                if from_offset == visible_end {
                    return Ok(empty);
                }
                let Some((_, segment)) = state.segments.range(..=from_offset).next_back() else {
                    // Below the first segment but not below the log start: the first segment
                    // starts later (its predecessors were deleted), so read from there.
                    let Some(first) = state.segments.values().next() else {
                        return Ok(empty);
                    };
                    from_offset = first.base_offset;
                    continue;
                };
                let position = segment
                    .index
                    .position_for_offset(from_offset)
                    .unwrap_or(SEGMENT_HEADER_BYTES);
                (
                    state.read_file(segment),
                    segment.path.clone(),
                    position,
                    if unsynced_visible {
                        segment.size_bytes
                    } else {
                        segment.synced_bytes
                    },
                    segment.next_offset,
                    visible_end,
                    state.log_start_offset,
                    segment.base_offset,
                )
            };
            // A damaged range found by the verifier is never served, and never skipped in
            // silence: reads stop before it, and a read at or past it is an error naming it.
            let damage = self
                .damage()
                .filter(|damage| damage.segment_base == segment_base);
            if let Some(damage) = &damage {
                if from_offset >= damage.first_offset {
                    return Err(damaged_range(damage));
                }
                readable_end = readable_end.min(damage.position);
            }
            let Some(file) = file.open(&self.shared, segment_base).await? else {
                // Compaction replaced the segment or retention removed it since the
                // lookup: its positions are stale, so look it up again.
                continue;
            };
            let bytes = read_batches(
                &*file,
                &path,
                start_position,
                readable_end,
                from_offset,
                max_bytes,
                u64::from(self.shared.config().index_interval_bytes),
            )
            .await?;
            if let Some(damage) = &damage
                && bytes.is_empty()
            {
                return Err(damaged_range(damage));
            }
            if bytes.is_empty() && segment_end > from_offset && segment_end < high_watermark {
                // Nothing readable left in this segment at or after the offset (it fell in a
                // gap left by deleted batches): continue in the next segment.
                from_offset = segment_end;
                continue;
            }
            return Ok(ReadBatches {
                bytes,
                high_watermark,
                log_start_offset,
            });
        }
    }

    /// The first offset whose record timestamp is at or after `timestamp_ms`, with that
    /// timestamp, as Kafka's `offsets_for_times`; `None` if no record is that recent.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, ReadError> {
        let start = {
            let state = self.shared.read_state();
            let candidate = state.segments.values().find(|segment| {
                segment
                    .index
                    .max_timestamp_ms()
                    .is_some_and(|max| max >= timestamp_ms)
            });
            match candidate {
                Some(segment) => segment
                    .index
                    .scan_start_for_timestamp(timestamp_ms)
                    .max(state.log_start_offset),
                None => return Ok(None),
            }
        };
        let mut offset = start;
        loop {
            let read = match self.read(offset, 1024 * 1024).await {
                Ok(read) => read,
                Err(ReadError::OffsetOutOfRange { .. }) => return Ok(None),
                Err(error) => return Err(error),
            };
            if read.bytes.is_empty() {
                return Ok(None);
            }
            let mut rest = &read.bytes[..];
            while let Ok(header) = BatchHeader::parse(rest) {
                let total = header.total_bytes();
                let Some(batch) = rest.get(..total) else {
                    break;
                };
                if header.max_timestamp >= timestamp_ms && header.last_offset() >= offset {
                    // A batch whose records do not decode (stored before appends checked
                    // records) is passed over, or every lookup by time would fail at it.
                    let decoded = match decode_batch(
                        &read.bytes.slice_ref(batch),
                        &APPEND_DECODE_LIMITS,
                    ) {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            tracing::warn!(directory = %self.shared.directory.display(), base_offset = header.base_offset, %error, "lookup by time skips a batch whose records do not decode");
                            offset = offset.max(header.last_offset() + 1);
                            rest = rest.get(total..).unwrap_or(&[]);
                            continue;
                        }
                    };
                    if let Some(record) = decoded
                        .records
                        .iter()
                        .find(|record| record.offset >= offset && record.timestamp >= timestamp_ms)
                    {
                        return Ok(Some((record.offset, record.timestamp)));
                    }
                }
                offset = offset.max(header.last_offset() + 1);
                rest = rest.get(total..).unwrap_or(&[]);
            }
            if offset >= read.high_watermark {
                return Ok(None);
            }
        }
    }
}

/// Reads whole batches from one segment: skips batches that end before `from_offset`,
/// then takes batches while they fit in `max_bytes` (always the first one whole). The
/// result is a slice of the read buffer, not a copy.
pub(super) async fn read_batches<F: DiskFile>(
    file: &F,
    path: &Path,
    start_position: u64,
    readable_end: u64,
    from_offset: i64,
    max_bytes: usize,
    index_interval_bytes: u64,
) -> Result<Bytes, ReadError> {
    let corrupt = |position: u64, reason: String| ReadError::Corrupt {
        path: path.to_path_buf(),
        position,
        reason,
    };
    let mut position = start_position;
    while position < readable_end {
        // The sparse index may leave up to one interval (plus a batch) to skip.
        let want = (max_bytes as u64 + index_interval_bytes)
            .max(BATCH_HEADER_BYTES as u64)
            .min(readable_end - position);
        let chunk = Bytes::from(file.read_at(position, want as usize).await?);
        if chunk.is_empty() {
            return Err(corrupt(
                position,
                "segment is shorter than its synced length".into(),
            ));
        }
        let mut cursor = 0usize;
        let mut taken: Option<usize> = None;
        while let Some(rest) = chunk.get(cursor..) {
            if rest.len() < BATCH_HEADER_BYTES {
                // The next header straddles the chunk end.
                break;
            }
            let header = BatchHeader::parse(rest)
                .map_err(|error| corrupt(position + cursor as u64, error.to_string()))?;
            let total = header.total_bytes();
            if taken.is_none() && header.last_offset() < from_offset {
                cursor += total;
                continue;
            }
            let first = *taken.get_or_insert(cursor);
            let taken_bytes = cursor - first;
            if taken_bytes > 0 && taken_bytes + total > max_bytes {
                break;
            }
            if rest.len() < total {
                if taken_bytes > 0 {
                    break;
                }
                // The first batch is larger than this chunk: read exactly it.
                let whole = file.read_at(position + cursor as u64, total).await?;
                if whole.len() != total {
                    return Err(corrupt(
                        position + cursor as u64,
                        "batch extends past the end of the segment".into(),
                    ));
                }
                return Ok(Bytes::from(whole));
            }
            cursor += total;
            if cursor - first >= max_bytes {
                break;
            }
        }
        if let Some(first) = taken {
            return Ok(chunk.slice(first..cursor));
        }
        if cursor == 0 {
            break;
        }
        position += cursor as u64;
    }
    Ok(Bytes::new())
}

/// Whether the segment `damage` is in is still part of the log (retention may have removed it).
pub(super) fn known_exists<F>(state: &LogState<F>, damage: &SegmentDamage) -> bool {
    state.segments.contains_key(&damage.segment_base)
}

pub(super) fn damaged_range(damage: &SegmentDamage) -> ReadError {
    ReadError::Corrupt {
        path: damage.path.clone(),
        position: damage.position,
        reason: format!(
            "damaged from offset {} on (found by the background verifier: {}); restore the \
             partition (docs/OPERATIONS.md, \"A damaged partition\")",
            damage.first_offset, damage.reason
        ),
    }
}
