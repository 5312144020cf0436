//! Compaction IO: rewriting a sealed segment beside it, then the writer swapping it in.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ledge_protocol::{
    BatchHeader, BatchIter, EncodeOptions, decode_batch, encode_batch_with_deltas, validate_batch,
};
use tokio::sync::oneshot;

use super::config::APPEND_DECODE_LIMITS;
use super::error::CompactError;
use super::open::{write_index_files, write_new_file};
use super::writer::Writer;
use super::{Command, PartitionLog, SegmentFile};
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode, descriptors};
use crate::storage::index::SegmentIndex;
use crate::storage::record_count;
use crate::storage::segment::{self, SEGMENT_HEADER_BYTES};

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten.
    pub segments_rewritten: usize,
    /// Records removed (superseded values and expired tombstones).
    pub records_removed: usize,
    /// Bytes of the rewritten segments before.
    pub bytes_before: u64,
    /// Bytes of the rewritten segments after.
    pub bytes_after: u64,
    /// Passes over the key map (more than one when the keys did not fit at once).
    pub passes: usize,
    /// Sealed segments left as they are because their batches do not pass their CRC or
    /// framing checks (damage; logged with the file and position).
    pub segments_skipped: usize,
    /// Batches whose CRC is intact but whose records do not decode (written before
    /// appends checked records; logged with the file and position). They are kept as they
    /// are, and no record is removed on their account.
    pub batches_undecodable: usize,
}

impl<D: Disk> PartitionLog<D> {
    /// Compacts the sealed segments (never the active one): keeps the latest record per key,
    /// removes tombstones older than `delete.retention.ms`, keeps every surviving record's
    /// offset. Each rewritten segment replaces the old one atomically (see `replace_segment`).
    /// Memory: the key map (bounded by `policy.key_map_bytes_max`) plus one segment.
    pub async fn compact(
        &self,
        now_ms: i64,
        policy: &crate::storage::compaction::CompactionPolicy,
    ) -> Result<CompactionReport, CompactError> {
        use crate::storage::compaction::KeyMap;
        let _one_at_a_time = self.shared.compaction.lock().await;
        let lag_ms = i64::try_from(policy.min_compaction_lag.as_millis()).unwrap_or(i64::MAX);
        let eligible: Vec<i64> = {
            let state = self.shared.read_state();
            let last = state.segments.keys().next_back().copied();
            state
                .segments
                .values()
                .filter(|segment| Some(segment.base_offset) != last)
                .take_while(|segment| {
                    lag_ms == 0
                        || segment
                            .index
                            .max_timestamp_ms()
                            .is_none_or(|newest| newest <= now_ms.saturating_sub(lag_ms))
                })
                .map(|segment| segment.base_offset)
                .collect()
        };
        let mut report = CompactionReport::default();
        // Segments whose bytes fail their checks: neither mapped nor rewritten, so a
        // damaged segment cannot stop the compaction of the others. Leaving records in place
        // is always safe: a record is removed only for a newer one compaction has seen.
        let mut skipped: Vec<i64> = Vec::new();
        let mut start = 0;
        while start < eligible.len() {
            let mut map = KeyMap::default();
            let mut end = start;
            while let Some(&base) = eligible.get(end) {
                let mut segment_map = KeyMap::default();
                let (path, batches) = match self.segment_batches(base).await {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        end += 1;
                        continue;
                    }
                    Err(CompactError::Corrupt {
                        path,
                        position,
                        reason,
                    }) => {
                        tracing::warn!(segment = %path.display(), position, %reason, "compaction skips a damaged segment");
                        report.segments_skipped += 1;
                        skipped.push(base);
                        end += 1;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                for (position, _, batch) in &batches {
                    let decoded = match decode_batch(batch, &APPEND_DECODE_LIMITS) {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            tracing::warn!(segment = %path.display(), position, %error, "compaction keeps a batch whose records do not decode as it is");
                            report.batches_undecodable += 1;
                            continue;
                        }
                    };
                    for record in decoded.records {
                        if let Some(key) = record.key {
                            segment_map.insert(key, record.offset);
                        }
                    }
                }
                if map.bytes() + segment_map.bytes() > policy.key_map_bytes_max {
                    if end == start {
                        return Err(CompactError::KeyMapTooSmall {
                            path,
                            needed: segment_map.bytes(),
                            max: policy.key_map_bytes_max,
                        });
                    }
                    break;
                }
                map.merge(segment_map);
                end += 1;
            }
            report.passes += 1;
            for &base in eligible.get(..end).unwrap_or_default() {
                if skipped.contains(&base) {
                    continue;
                }
                match self
                    .rewrite_segment(base, &map, now_ms, policy, &mut report)
                    .await
                {
                    Ok(()) => {}
                    // Damage that appeared since the segment was mapped: leave it, as above.
                    Err(CompactError::Corrupt {
                        path,
                        position,
                        reason,
                    }) => {
                        tracing::warn!(segment = %path.display(), position, %reason, "compaction skips a damaged segment");
                        report.segments_skipped += 1;
                        skipped.push(base);
                    }
                    Err(error) => return Err(error),
                }
            }
            start = end;
        }
        if report.segments_skipped > 0 || report.batches_undecodable > 0 {
            tracing::warn!(directory = %self.shared.directory.display(), ?report, "compaction left damaged or undecodable data in place");
        }
        if report.segments_rewritten > 0 {
            self.shared
                .last_compaction_ms
                .store(now_ms, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(directory = %self.shared.directory.display(), ?report, "compacted");
        }
        Ok(report)
    }

    /// The current file of sealed segment `base` read whole, as (header, batch) pairs;
    /// `None` if the segment is gone (retention) or active.
    pub(super) async fn segment_batches(
        &self,
        base: i64,
    ) -> Result<Option<(PathBuf, Vec<(u64, BatchHeader, Bytes)>)>, CompactError> {
        let (file, path, size) = {
            let state = self.shared.read_state();
            let last = state.segments.keys().next_back().copied();
            match state.segments.get(&base) {
                Some(segment) if Some(base) != last => (
                    state.read_file(segment),
                    segment.path.clone(),
                    segment.size_bytes,
                ),
                _ => return Ok(None),
            }
        };
        let Some(file) = file.open(&self.shared, base).await? else {
            // Removed by retention since the lookup (compaction, the only replacer, is
            // the caller and runs one at a time).
            return Ok(None);
        };
        let bytes = Bytes::from(file.read_at(0, size as usize).await?);
        let corrupt = |position: u64, reason: String| CompactError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        if (bytes.len() as u64) < size {
            return Err(corrupt(
                bytes.len() as u64,
                "segment is shorter than its size".into(),
            ));
        }
        let body = bytes.slice(SEGMENT_HEADER_BYTES as usize..);
        let mut batches = Vec::new();
        let mut position = SEGMENT_HEADER_BYTES;
        for item in BatchIter::new(&body) {
            let (header, batch) = item.map_err(|error| corrupt(position, error.to_string()))?;
            validate_batch(batch).map_err(|error| corrupt(position, error.to_string()))?;
            batches.push((position, header, body.slice_ref(batch)));
            position += batch.len() as u64;
        }
        Ok(Some((path, batches)))
    }

    pub(super) async fn rewrite_segment(
        &self,
        base: i64,
        map: &crate::storage::compaction::KeyMap,
        now_ms: i64,
        policy: &crate::storage::compaction::CompactionPolicy,
        report: &mut CompactionReport,
    ) -> Result<(), CompactError> {
        let Some((path, batches)) = self.segment_batches(base).await? else {
            return Ok(());
        };
        let interval = self.shared.config().index_interval_bytes;
        let mut output =
            segment::segment_header_with_flags(segment::SEGMENT_FLAG_COMPACTED).to_vec();
        let mut index = SegmentIndex::new(base, interval);
        let mut removed = 0usize;
        let bytes_before = SEGMENT_HEADER_BYTES
            + batches
                .iter()
                .map(|(_, _, batch)| batch.len() as u64)
                .sum::<u64>();
        for (_, header, batch) in batches {
            let Ok(decoded) = decode_batch(&batch, &APPEND_DECODE_LIMITS) else {
                // Records that do not decode (reported when the key map was built) cannot be
                // judged: the batch stays whole, at its offsets.
                index
                    .note_batch(
                        output.len() as u64,
                        header.base_offset,
                        header.max_timestamp,
                        batch.len() as u64,
                    )
                    .map_err(|error| CompactError::Corrupt {
                        path: path.clone(),
                        position: output.len() as u64,
                        reason: error.to_string(),
                    })?;
                index.note_records(record_count::stored_records(&header));
                output.extend_from_slice(&batch);
                continue;
            };
            let total = decoded.records.len();
            let mut deltas = Vec::with_capacity(total);
            let mut kept = Vec::with_capacity(total);
            for record in decoded.records {
                let tombstone = record.value.is_none();
                if crate::storage::compaction::keep_record(
                    record.offset,
                    record.key.as_deref(),
                    tombstone,
                    record.timestamp,
                    map,
                    now_ms,
                    policy,
                ) {
                    deltas.push(
                        i32::try_from(record.offset - header.base_offset).unwrap_or(i32::MAX),
                    );
                    kept.push(record.into_record());
                }
            }
            removed += total - kept.len();
            let rewritten = if kept.len() == total {
                batch
            } else if kept.is_empty() {
                continue;
            } else {
                let options = EncodeOptions {
                    compression: header
                        .compression()
                        .unwrap_or(ledge_protocol::Compression::None),
                    producer_id: header.producer_id,
                    producer_epoch: header.producer_epoch,
                    base_sequence: header.base_sequence,
                    base_offset: header.base_offset,
                    // The batch keeps the epoch it was written in: the leader-epoch
                    // checkpoint and replicas' divergence checks rely on it.
                    partition_leader_epoch: header.partition_leader_epoch,
                    timestamp_type: header.timestamp_type(),
                    transactional: header.is_transactional(),
                    ..EncodeOptions::default()
                };
                encode_batch_with_deltas(&kept, &deltas, header.last_offset_delta, &options)
                    .map_err(|error| CompactError::Corrupt {
                        path: path.clone(),
                        position: 0,
                        reason: format!("re-encoding a compacted batch failed: {error}"),
                    })?
            };
            let header = BatchHeader::parse(&rewritten).map_err(|error| CompactError::Corrupt {
                path: path.clone(),
                position: 0,
                reason: error.to_string(),
            })?;
            index
                .note_batch(
                    output.len() as u64,
                    header.base_offset,
                    header.max_timestamp,
                    rewritten.len() as u64,
                )
                .map_err(|error| CompactError::Corrupt {
                    path: path.clone(),
                    position: output.len() as u64,
                    reason: error.to_string(),
                })?;
            index.note_records(record_count::stored_records(&header));
            output.extend_from_slice(&rewritten);
        }
        let already_compacted = {
            let state = self.shared.read_state();
            state
                .segments
                .get(&base)
                .is_some_and(|segment| segment.compacted)
        };
        if removed == 0 && already_compacted {
            return Ok(());
        }
        index.seal();
        let size = output.len() as u64;
        let temporary = PathBuf::from(format!("{}.tmp", path.display()));
        write_new_file(&self.shared.disk, &temporary, output).await?;
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::ReplaceSegment {
                base,
                temporary,
                size,
                index: Box::new(index),
                reply,
            })
            .await
            .map_err(|_| CompactError::Closed)?;
        if outcome.await.map_err(|_| CompactError::Closed)?? {
            report.segments_rewritten += 1;
            report.records_removed += removed;
            report.bytes_before += bytes_before;
            report.bytes_after += size;
        }
        Ok(())
    }
}

impl<D: Disk> Writer<D> {
    /// Puts a compacted segment in place of the sealed segment `base`. Crash-safe at every
    /// step: the old index files are removed (and that made durable) before the rename, so
    /// no index ever describes the wrong file; the rename replaces the segment atomically;
    /// a leftover `.tmp` is removed at open. Returns false if the segment is gone meanwhile
    /// (deleted by retention) or is not sealed.
    pub(super) async fn replace_segment(
        &mut self,
        base: i64,
        temporary: &Path,
        size: u64,
        index: SegmentIndex,
    ) -> Result<bool, DiskError> {
        let (path, sealed, next_offset, first, log_start) = {
            let state = self.shared.read_state();
            let last = state.segments.keys().next_back().copied();
            let first = state.segments.keys().next().copied() == Some(base);
            match state.segments.get(&base) {
                Some(segment) => (
                    segment.path.clone(),
                    last != Some(base),
                    segment.next_offset,
                    first,
                    state.log_start_offset,
                ),
                None => (PathBuf::new(), false, base, false, base),
            }
        };
        if !sealed {
            let _ = self.disk.remove_file(temporary).await;
            return Ok(false);
        }
        // Compaction may have removed records below the log start of the first segment:
        // count them again in the new file, before anything is replaced (a failed read
        // leaves the old segment in place).
        let records_below = if first {
            let segment = record_count::SegmentRecords {
                base_offset: base,
                next_offset,
                size_bytes: size,
                record_count: index.record_count(),
            };
            Some(
                match record_count::records_below_known(&segment, log_start) {
                    Some(known) => known,
                    None => {
                        let file = self.disk.open(temporary, OpenMode::Read).await?;
                        record_count::records_below_by_reading(
                            &file,
                            &segment,
                            log_start,
                            self.shared.config().recovery_read_bytes,
                        )
                        .await?
                    }
                },
            )
        } else {
            None
        };
        let directory = self.shared.directory.clone();
        for name in [
            segment::offset_index_file_name(base),
            segment::time_index_file_name(base),
        ] {
            match self.disk.remove_file(&directory.join(name)).await {
                Ok(()) => {}
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error),
            }
        }
        self.disk.sync_dir(&directory).await?;
        // Held from the rename until the segment has its new file id, index and size: a
        // reader that took the old ones opens the old file first, and one that opens later
        // finds the new id (see `Shared::sealed_files`).
        let replacing = self.shared.sealed_files.write().await;
        self.disk.rename(temporary, &path).await?;
        // From here the path names the compacted file, so the segment's state follows at
        // once, before a later step can fail: an error after the rename (a directory sync,
        // the index files) must not leave readers pairing the new file with the old index.
        // Missing index files are rebuilt at the next open.
        {
            let mut state = self.shared.write_state();
            if let Some(records_below) = records_below {
                state.records_below_log_start = records_below;
            }
            if let Some(segment) = state.segments.get_mut(&base) {
                // A fresh id: the cached descriptor (if any) is of the file replaced.
                if let SegmentFile::Sealed(id) = segment.file {
                    descriptors::forget_sealed_file(id);
                }
                segment.file = SegmentFile::sealed();
                segment.size_bytes = size;
                segment.synced_bytes = size;
                segment.index = index.clone();
                segment.compacted = true;
            }
        }
        drop(replacing);
        self.disk.sync_dir(&directory).await?;
        write_index_files(&self.disk, &directory, &index).await?;
        self.disk.sync_dir(&directory).await?;
        Ok(true)
    }
}
