//! Rolls: where a group is split between segments, and sealing the active segment.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::config::LogConfig;
use super::open::{write_index_files, write_new_file};
use super::writer::Writer;
use super::{PendingAppend, Segment, SegmentFile};
use crate::storage::checkpoint::Checkpoint;
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode};
use crate::storage::index::SegmentIndex;
use crate::storage::segment::{self, ActiveSegmentStats, RollPolicy, SEGMENT_HEADER_BYTES};

impl<D: Disk> Writer<D> {
    /// Splits `group` where a roll is due before a batch, as if every batch were written
    /// (a batch the producer check refuses later only makes its part smaller, never too
    /// large). `commit_part` then rolls before each part that needs it.
    pub(super) fn split_at_rolls(&self, group: Vec<PendingAppend>) -> Vec<Vec<PendingAppend>> {
        let now_ms = self.clock.wall_time_ms();
        let policy = self.roll_policy();
        let (mut segment, mut next_offset) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                ActiveSegmentStats {
                    base_offset: active.base_offset,
                    size_bytes: active.size_bytes,
                    first_append_ms: active.first_append_ms,
                },
                active.next_offset,
            )
        };
        let mut parts = Vec::new();
        let mut part: Vec<PendingAppend> = Vec::new();
        for pending in group {
            let bytes = pending.batch.len() as u64;
            let last_offset =
                next_offset.saturating_add(i64::from(pending.header.last_offset_delta));
            if segment::roll_reason(&segment, bytes, last_offset, now_ms, &policy).is_some() {
                if !part.is_empty() {
                    parts.push(std::mem::take(&mut part));
                }
                // The segment the roll starts. Its first append is now, and no time passes
                // within one group, so the age rule cannot call for another roll in it: no
                // first-append time keeps it from firing (with `segment.ms = 0` it would
                // roll before every batch), while size and offset span still apply.
                segment = ActiveSegmentStats {
                    base_offset: next_offset,
                    size_bytes: SEGMENT_HEADER_BYTES,
                    first_append_ms: None,
                };
            }
            segment.size_bytes = segment.size_bytes.saturating_add(bytes);
            next_offset = last_offset.saturating_add(1);
            part.push(pending);
        }
        if !part.is_empty() {
            parts.push(part);
        }
        parts
    }

    pub(super) fn roll_policy(&self) -> RollPolicy {
        let config = self.shared.config();
        RollPolicy {
            segment_bytes: config.segment_bytes,
            segment_age_ms: i64::try_from(config.segment_age.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Seals the active segment (synced, index files written) and starts a new one whose
    /// creation is durable before anything is written to it.
    pub(super) async fn roll(&mut self) -> Result<(), String> {
        self.sync_active().await?;
        let directory = self.shared.directory.clone();
        let (mut sealed_index, next_offset) = {
            let state = self.shared.read_state();
            let active = state.active();
            (active.index.clone(), active.next_offset)
        };
        sealed_index.seal();
        write_index_files(&self.disk, &directory, &sealed_index)
            .await
            .map_err(|error| error.to_string())?;
        // The producer state as of the new segment's start, so an open needs to scan only
        // the active segment to rebuild it.
        write_new_file(
            &self.disk,
            &directory.join(segment::producer_snapshot_file_name(next_offset)),
            self.producers.encode_snapshot(),
        )
        .await
        .map_err(|error| error.to_string())?;
        let (segment, file) =
            create_segment(&self.disk, &directory, next_offset, &self.shared.config())
                .await
                .map_err(|error| error.to_string())?;
        self.disk
            .sync_dir(&directory)
            .await
            .map_err(|error| error.to_string())?;
        {
            let mut state = self.shared.write_state();
            let sealed = state.active_mut();
            sealed.index = sealed_index;
            // The old active file closes once in-flight readers drop it; later reads of the
            // sealed segment go through the sealed-file cache.
            sealed.file = SegmentFile::sealed();
            state.segments.insert(next_offset, segment);
            state.active_file = Arc::new(file);
        }
        let checkpoint = Checkpoint {
            sequence: self.checkpoint.sequence + 1,
            recovery_segment: next_offset,
            recovery_position: SEGMENT_HEADER_BYTES,
            ..self.checkpoint
        };
        self.store_checkpoint(checkpoint)
            .await
            .map_err(|error| error.to_string())?;
        self.queue.handle_checkpoint_stored(self.clock.now());
        Ok(())
    }
}

/// Creates a segment file with its header, synced; the caller syncs the directory.
pub(super) async fn create_segment<D: Disk>(
    disk: &D,
    directory: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<(Segment, D::File), DiskError> {
    let path = directory.join(segment::segment_file_name(base));
    let file = disk.open(&path, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::copy_from_slice(&segment::segment_header()))
        .await?;
    file.sync_data().await?;
    let segment = Segment {
        base_offset: base,
        path,
        file: SegmentFile::Active,
        index: SegmentIndex::new(base, config.index_interval_bytes),
        size_bytes: SEGMENT_HEADER_BYTES,
        synced_bytes: SEGMENT_HEADER_BYTES,
        next_offset: base,
        first_append_ms: None,
        compacted: false,
    };
    Ok((segment, file))
}
