//! Truncation of a log's end, for a follower whose log diverged from its leader's
//! (KIP-101/279) or that holds a damaged batch (issue 13 item 4).
//!
//! The rule implemented: any offset from the log start on may be cut to, the high watermark
//! included: a Kafka follower truncates below its own high watermark when its leader's answer
//! says so (the leader's log is the truth, and a follower's HW is only what the leader had
//! told it). The cut lands on a batch boundary: the batch holding `offset` goes too, so the new
//! end may be below `offset`. Below the log start is refused (there is nothing to cut to;
//! a follower that far behind starts over, see `replication::follower`).
//!
//! The writer does the disk work and stops, then the log is opened again, so the segment
//! index, the producer state (the snapshot at the start of the new active segment plus a scan
//! of it) and the counts are rebuilt by the same recovery as any open. Every step is durable
//! before the next, in an order where a crash anywhere leaves a log that opens as a prefix
//! of the old one at least as long as the cut:
//! 1. the checkpoint's recovery point moves down to the cut (recovery then scans, never
//!    trusts, what lies above);
//! 2. the segments after the one cut are removed, newest first, each removal made durable
//!    before the next (a crash never leaves a hole in the middle of the segments);
//! 3. a sealed segment that becomes the active one loses its index files (the active segment
//!    has none; its index is rebuilt by the scan);
//! 4. the segment is cut at the batch boundary and synced;
//! 5. the leader-epoch checkpoint drops the epochs that started at or after the new end
//!    (a crash before this leaves entries past the end, which the open cuts).

use std::sync::Arc;

use super::error::TruncateError;
use super::open::{remove_segment_files, write_checkpoint};
use super::writer::Writer;
use super::{PartitionLog, SegmentFile};
use crate::clock::Clock;
use crate::storage::checkpoint::Checkpoint;
use crate::storage::disk::{Disk, DiskFile, OpenMode};
use crate::storage::leader_epoch::{self, LeaderEpochIoError};
use crate::storage::recovery;
use crate::storage::segment::{self, SEGMENT_HEADER_BYTES};

impl<D: Disk> PartitionLog<D> {
    /// Cuts the log's end at the batch holding `offset` (durably; see the module
    /// documentation for the rule and the crash order) and returns the log opened again.
    /// This handle, and its clones, are closed by it: use the returned one. A cut at or past
    /// the log end cuts no batch, only the epochs that start there (an epoch this node was
    /// given as leader and wrote nothing in), and returns a clone of this handle.
    pub async fn truncate_to(
        &self,
        offset: i64,
        disk: D,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TruncateError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.commands
            .send(super::Command::TruncateTo { offset, reply })
            .await
            .map_err(|_| TruncateError::Closed)?;
        let cut = outcome.await.map_err(|_| TruncateError::Closed)??;
        if !cut {
            return Ok(self.clone());
        }
        // The writer stopped: the old handle's cached sealed files (some the cut removed)
        // must not stay open beside the reopened log's.
        self.shared.release_sealed_files().await;
        let config = self.shared.config();
        Self::open(disk, &self.shared.directory, config, clock)
            .await
            .map_err(|error| TruncateError::Reopen(Box::new(error)))
    }
}

impl<D: Disk> Writer<D> {
    /// Carries out a truncation (steps 1-5 of the module documentation). Returns whether
    /// anything was cut; if so the writer stops after answering (the log is reopened).
    pub(super) async fn truncate_to(&mut self, offset: i64) -> Result<bool, TruncateError> {
        if let Some(reason) = self.fenced() {
            return Err(TruncateError::Fenced { reason });
        }
        let (log_start, log_end) = {
            let state = self.shared.read_state();
            (state.log_start_offset, state.active().next_offset)
        };
        if offset < log_start {
            return Err(TruncateError::BelowLogStart {
                requested: offset,
                log_start_offset: log_start,
            });
        }
        if offset >= log_end {
            // No batch to cut, but an epoch assigned at the end with no batch (this node led
            // in it and wrote nothing) goes: the leader's answer says this log ends in an
            // earlier epoch, and the next fetch must say so too, or it asks forever.
            let mut epochs = self.shared.read_state().epochs.clone();
            if epochs.truncate_from_end(offset) {
                leader_epoch::store(&self.disk, &self.shared.directory, &epochs)
                    .await
                    .map_err(|LeaderEpochIoError::Disk(error)| TruncateError::Disk(error))?;
                let mut state = self.shared.write_state();
                state.leader_epoch = epochs.latest_epoch().unwrap_or(state.leader_epoch);
                state.epochs = epochs;
            }
            return Ok(false);
        }
        // Nothing may be half-written past the cut when the files change.
        self.drain_sync().await;
        let (base, path, file, search_from, size, later, sealed) = {
            let state = self.shared.read_state();
            let (_, cut) = state
                .segments
                .range(..=offset)
                .next_back()
                .or_else(|| state.segments.iter().next())
                .expect("a partition log always has an active segment");
            let later: Vec<i64> = state
                .segments
                .range(cut.base_offset + 1..)
                .map(|(base, _)| *base)
                .collect();
            (
                cut.base_offset,
                cut.path.clone(),
                state.read_file(cut),
                cut.index
                    .position_for_offset(offset)
                    .unwrap_or(SEGMENT_HEADER_BYTES),
                cut.size_bytes,
                later,
                cut.file != SegmentFile::Active,
            )
        };
        let file = file
            .open_unshared(&self.disk, &path)
            .await
            .map_err(TruncateError::Disk)?;
        let (position, new_end) = batch_boundary(&*file, search_from, size, offset, base).await?;
        drop(file);

        // 1. The recovery point never lies above the cut.
        let recovery_above = (
            self.checkpoint.recovery_segment,
            self.checkpoint.recovery_position,
        ) > (base, position);
        if recovery_above {
            let checkpoint = Checkpoint {
                sequence: self.checkpoint.sequence + 1,
                recovery_segment: base,
                recovery_position: position,
                ..self.checkpoint
            };
            write_checkpoint(&self.checkpoint_file, &checkpoint)
                .await
                .map_err(TruncateError::Disk)?;
            self.checkpoint = checkpoint;
        }
        // From here on the in-memory state no longer matches the files: nothing more is
        // served or appended through this writer.
        self.fence(format!("truncated to offset {new_end}; reopen the log"));
        let directory = self.shared.directory.clone();
        // 2. Later segments, newest first, each durable before the next.
        for later_base in later.iter().rev() {
            remove_segment_files(&self.disk, &directory, *later_base)
                .await
                .map_err(TruncateError::Disk)?;
            self.disk
                .sync_dir(&directory)
                .await
                .map_err(TruncateError::Disk)?;
        }
        // 3. The segment becomes the active one: its index files go.
        if sealed {
            for name in [
                segment::offset_index_file_name(base),
                segment::time_index_file_name(base),
            ] {
                match self.disk.remove_file(&directory.join(name)).await {
                    Ok(()) => {}
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(TruncateError::Disk(error)),
                }
            }
            self.disk
                .sync_dir(&directory)
                .await
                .map_err(TruncateError::Disk)?;
        }
        // 4. The cut itself.
        let file = self
            .disk
            .open(&path, OpenMode::ReadWrite)
            .await
            .map_err(TruncateError::Disk)?;
        file.set_len(position).await.map_err(TruncateError::Disk)?;
        file.sync_data().await.map_err(TruncateError::Disk)?;
        drop(file);
        // 5. The epochs that started at or after the new end.
        let mut epochs = self.shared.read_state().epochs.clone();
        if epochs.truncate_from_end(new_end) {
            leader_epoch::store(&self.disk, &directory, &epochs)
                .await
                .map_err(|LeaderEpochIoError::Disk(error)| TruncateError::Disk(error))?;
        }
        tracing::info!(directory = %directory.display(), requested = offset, log_end_offset = new_end, "log truncated");
        Ok(true)
    }
}

/// The file position and offset of the first batch at or after `from` (a position at or
/// before the batch holding `offset`) whose last offset is at least `offset`: where the cut
/// goes. The segment's end if no batch there reaches `offset`.
async fn batch_boundary<F: DiskFile>(
    file: &F,
    from: u64,
    size: u64,
    offset: i64,
    segment_base: i64,
) -> Result<(u64, i64), TruncateError> {
    let mut position = from;
    let mut end = segment_base;
    while position < size {
        let bytes = file
            .read_at(position, ledge_protocol::BATCH_HEADER_BYTES)
            .await
            .map_err(TruncateError::Disk)?;
        let Some(header) = recovery::peek_header(&bytes) else {
            // Recovery or the writer validated everything below `size`: a header that does
            // not parse means damage, and the cut goes before it.
            return Ok((position, end));
        };
        if header.last_offset() >= offset {
            return Ok((position, header.base_offset));
        }
        end = header.last_offset() + 1;
        position += header.total_bytes() as u64;
    }
    Ok((position, end))
}
