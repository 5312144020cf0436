//! Copying a live partition log into a snapshot (`ledge admin snapshot`,
//! `storage::snapshot`): every segment up to what is synced, while the log keeps serving.
//!
//! The log's state is read once, under its lock: the segments, each one's synced size, the
//! log start and the high watermark. Sealed segments never change in place (appends go to
//! the active one; compaction writes a new file and renames it over, retention removes
//! whole files), so they are hard-linked where the filesystem allows and copied otherwise,
//! with their index and producer-snapshot files, while this holds the log's sealed-file
//! gate shared: compaction and retention wait for it, so no sealed file is renamed or
//! removed between reading the state and linking it. The active segment is copied only up
//! to its synced size, through the descriptor the log holds (a roll after the state was
//! read leaves those bytes as they were). A fresh checkpoint records the log start and a
//! recovery point at the end of what was copied, so a node opening the copy treats every
//! copied byte as acknowledged data.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{PartitionLog, SegmentFile, write_checkpoint};
use crate::storage::checkpoint::{CHECKPOINT_FILE_BYTES, Checkpoint};
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode, create_dir_durable};
use crate::storage::leader_epoch::LEADER_EPOCH_FILE_NAME;
use crate::storage::segment;

/// Bytes read and written per step when a file is copied rather than linked.
pub const SNAPSHOT_COPY_CHUNK_BYTES: usize = 1 << 20;

/// What one partition's copy holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionCopy {
    /// The first offset readers of the copy may see.
    pub log_start_offset: i64,
    /// One past the last offset the copy holds (the log's high watermark when it was read).
    pub end_offset: i64,
    /// Segment bytes in the copy, headers included.
    pub segment_bytes: u64,
    /// Files hard-linked to the log's own.
    pub files_linked: u64,
    /// Files copied byte by byte.
    pub files_copied: u64,
}

/// One segment as the state showed it.
struct SegmentPlan {
    base_offset: i64,
    path: PathBuf,
    synced_bytes: u64,
    active: bool,
}

impl<D: Disk> PartitionLog<D> {
    /// Writes a copy of this log, up to its synced bytes, into `target` (a directory that
    /// must not exist yet; created, and every file and the directory synced).
    pub async fn copy_synced_to(&self, target: &Path) -> Result<PartitionCopy, DiskError> {
        let disk = &self.shared.disk;
        // Held to the end: compaction and retention rename and remove sealed files only
        // while they hold it exclusively.
        let _gate = self.shared.sealed_files.read().await;
        let (plan, active_file, log_start_offset, end_offset) = {
            let state = self.shared.read_state();
            let plan: Vec<SegmentPlan> = state
                .segments
                .values()
                .map(|segment| SegmentPlan {
                    base_offset: segment.base_offset,
                    path: segment.path.clone(),
                    synced_bytes: segment.synced_bytes,
                    active: segment.file == SegmentFile::Active,
                })
                .collect();
            (
                plan,
                Arc::clone(&state.active_file),
                state.log_start_offset,
                state.high_watermark,
            )
        };
        create_dir_durable(disk, target).await?;
        let mut copy = PartitionCopy {
            log_start_offset,
            end_offset,
            ..PartitionCopy::default()
        };
        for segment in &plan {
            let to = target.join(segment::segment_file_name(segment.base_offset));
            copy.segment_bytes += segment.synced_bytes;
            if segment.active {
                copy_prefix(&*active_file, disk, &to, segment.synced_bytes).await?;
                copy.files_copied += 1;
                continue;
            }
            let linked = link_or_copy(disk, &segment.path, &to).await?;
            count(&mut copy, linked);
            let directory = self.directory();
            for name in [
                segment::offset_index_file_name(segment.base_offset),
                segment::time_index_file_name(segment.base_offset),
                segment::producer_snapshot_file_name(segment.base_offset),
            ] {
                match link_or_copy(disk, &directory.join(&name), &target.join(&name)).await {
                    Ok(linked) => count(&mut copy, linked),
                    // Indexes are rebuilt at open when missing; not every segment has a
                    // producer snapshot.
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error),
                }
            }
        }
        // The leader epochs: rewritten aside and renamed by the writer, so whole.
        let epochs = self.directory().join(LEADER_EPOCH_FILE_NAME);
        match copy_whole(disk, &epochs, &target.join(LEADER_EPOCH_FILE_NAME)).await {
            Ok(()) => copy.files_copied += 1,
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        if let Some(last) = plan.last() {
            let checkpoint = Checkpoint {
                sequence: 1,
                log_start_offset,
                recovery_segment: last.base_offset,
                recovery_position: last.synced_bytes,
            };
            let file = disk
                .open(
                    &target.join(segment::CHECKPOINT_FILE_NAME),
                    OpenMode::CreateNew,
                )
                .await?;
            file.set_len(CHECKPOINT_FILE_BYTES as u64).await?;
            write_checkpoint(&file, &checkpoint).await?;
        }
        disk.sync_dir(target).await?;
        Ok(copy)
    }
}

fn count(copy: &mut PartitionCopy, linked: bool) {
    if linked {
        copy.files_linked += 1;
    } else {
        copy.files_copied += 1;
    }
}

/// Hard-links `from` to `to` (`true`), or copies it whole where the disk cannot link.
async fn link_or_copy<D: Disk>(disk: &D, from: &Path, to: &Path) -> Result<bool, DiskError> {
    if disk.hard_link(from, to).await? {
        return Ok(true);
    }
    copy_whole(disk, from, to).await?;
    Ok(false)
}

/// Copies all of `from` into a new file `to`, synced.
pub(in crate::storage) async fn copy_whole<D: Disk>(
    disk: &D,
    from: &Path,
    to: &Path,
) -> Result<(), DiskError> {
    let source = disk.open(from, OpenMode::Read).await?;
    let bytes = source.len().await?;
    copy_prefix(&source, disk, to, bytes).await
}

/// Copies the first `bytes` of `source` into a new file `to`, synced; a source shorter than
/// that is an error (the bytes were promised durable).
async fn copy_prefix<F: DiskFile, D: Disk>(
    source: &F,
    disk: &D,
    to: &Path,
    bytes: u64,
) -> Result<(), DiskError> {
    let target = disk.open(to, OpenMode::CreateNew).await?;
    let mut position = 0u64;
    while position < bytes {
        let want = usize::try_from(bytes - position)
            .unwrap_or(usize::MAX)
            .min(SNAPSHOT_COPY_CHUNK_BYTES);
        let chunk = source.read_at(position, want).await?;
        if chunk.is_empty() {
            return Err(DiskError::new(
                "read",
                source.path(),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ends at byte {position}, before {bytes}"),
                ),
            ));
        }
        let read = chunk.len() as u64;
        target.write_at(position, Bytes::from(chunk)).await?;
        position += read;
    }
    target.sync_data().await
}
