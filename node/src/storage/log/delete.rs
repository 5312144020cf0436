//! Deleting from the front of the log (retention, DeleteRecords): the writer's side of
//! `PartitionLog::delete_before`.

use super::error::DeleteError;
use super::open::{count_records_below, remove_segment_files};
use super::writer::Writer;
use super::{Segment, SegmentFile};
use crate::storage::checkpoint::Checkpoint;
use crate::storage::disk::{Disk, descriptors};
use crate::storage::leader_epoch::{self, LeaderEpochIoError};

impl<D: Disk> Writer<D> {
    /// Moves the log start up to `offset` (retention, DeleteRecords): the checkpoint first,
    /// then the segments wholly below it are removed.
    pub(super) async fn delete_before(&mut self, offset: i64) -> Result<i64, DeleteError> {
        if let Some(reason) = self.fenced() {
            return Err(DeleteError::Fenced { reason });
        }
        let (high_watermark, log_start_offset) = {
            let state = self.shared.read_state();
            (state.high_watermark, state.log_start_offset)
        };
        if offset > high_watermark {
            return Err(DeleteError::BeyondHighWatermark {
                requested: offset,
                high_watermark,
            });
        }
        if offset <= log_start_offset {
            return Ok(log_start_offset);
        }
        // Counted before anything changes (only this task changes segments), so the record
        // count moves in one step with the log start.
        let records_below = {
            let segment = self.shared.read_state().segment_records_at(offset);
            count_records_below(
                &self.disk,
                segment,
                offset,
                self.shared.config().recovery_read_bytes,
            )
            .await?
        };
        // Durable first: once the checkpoint says so, a crash mid-removal is finished by
        // the next open, and no reader is ever served below the new start.
        let checkpoint = Checkpoint {
            sequence: self.checkpoint.sequence + 1,
            log_start_offset: offset,
            ..self.checkpoint
        };
        self.store_checkpoint(checkpoint).await?;
        // Held until the files are gone: a reader that found a doomed segment before the
        // state update below opens its file first (see `Shared::sealed_files`).
        let removing = self.shared.sealed_files.write().await;
        let doomed: Vec<i64> = {
            let mut state = self.shared.write_state();
            state.log_start_offset = offset;
            state.records_below_log_start = records_below;
            let bases: Vec<i64> = state.segments.keys().copied().collect();
            let doomed: Vec<i64> = bases
                .windows(2)
                .filter_map(|pair| match pair {
                    [base, next] if *next <= offset => Some(*base),
                    _ => None,
                })
                .collect();
            for base in &doomed {
                if let Some(Segment {
                    file: SegmentFile::Sealed(id),
                    ..
                }) = state.segments.remove(base)
                {
                    descriptors::forget_sealed_file(id);
                }
            }
            doomed
        };
        for base in &doomed {
            remove_segment_files(&self.disk, &self.shared.directory, *base).await?;
        }
        drop(removing);
        if !doomed.is_empty() {
            self.disk.sync_dir(&self.shared.directory).await?;
        }
        // The epochs follow the new start, as the next open would make them (and as Kafka's
        // cache does): OffsetForLeaderEpoch never answers an offset below the log.
        let mut epochs = self.shared.read_state().epochs.clone();
        if epochs.truncate_from_start(offset) {
            leader_epoch::store(&self.disk, &self.shared.directory, &epochs)
                .await
                .map_err(|LeaderEpochIoError::Disk(error)| DeleteError::Disk(error))?;
            self.shared.write_state().epochs = epochs;
        }
        Ok(offset)
    }
}
