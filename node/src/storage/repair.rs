//! Offline repair of one partition directory, run only by an explicit operator command
//! (`ledge-repair truncate`), never by the node on its own.
//!
//! [`truncate_from`] gives up every record from an offset on: the segment holding it is cut
//! at the start of the batch that holds the offset, every later segment is removed, and the
//! checkpoint is rewritten so that the recovery point is the new end (written aside and
//! renamed, as the node writes a first checkpoint). It is how an operator brings a partition
//! with damage followed by valid batches back online when the records after the damage can
//! be given up and no copy exists to restore from. It refuses to cut below damage it meets
//! before the offset: the records between would be lost without the operator asking.
//!
//! The node must not be running on the data directory. Callers log the report.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::LogConfig;
use super::checkpoint::{CHECKPOINT_FILE_BYTES, Checkpoint};
use super::disk::{Disk, DiskError, DiskFile, OpenMode};
use super::log::{remove_segment_files, scan_segment, write_checkpoint};
use super::segment::{self, CHECKPOINT_FILE_NAME, PartitionFile};

/// What [`truncate_from`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TruncateReport {
    /// The segment that was cut (now the active one).
    pub segment: PathBuf,
    /// Its new length.
    pub cut_position: u64,
    /// Bytes cut from it.
    pub cut_bytes: u64,
    /// The partition's new end: the next record appended gets this offset.
    pub new_end_offset: i64,
    /// Later segments removed, with their index files.
    pub removed_segments: Vec<PathBuf>,
}

/// Why [`truncate_from`] refused or failed; the partition is unchanged unless `Disk` says
/// otherwise.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// IO failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// No segment holds the offset (it is below the first one).
    #[error("no segment of {directory} holds offset {offset} (the first starts at {first})")]
    BelowFirstSegment {
        /// The partition directory.
        directory: PathBuf,
        /// The offset asked for.
        offset: i64,
        /// The first segment's base offset.
        first: i64,
    },
    /// The directory has no segment at all.
    #[error("{0} holds no segment")]
    NoSegment(PathBuf),
    /// Damage comes before the offset: cutting there would lose records not asked for.
    #[error(
        "segment {path} is damaged at byte {position}, at offset {damaged_offset}, before offset \
         {requested}: truncate from offset {damaged_offset} (or restore the partition)"
    )]
    DamageBefore {
        /// The damaged segment.
        path: PathBuf,
        /// File position of the damage.
        position: u64,
        /// The first offset the damage affects.
        damaged_offset: i64,
        /// The offset asked for.
        requested: i64,
    },
}

/// Removes every record at `offset` and after from the partition in `directory` (see the
/// module doc). `config` gives the read size for the scan.
pub async fn truncate_from<D: Disk>(
    disk: &D,
    directory: &Path,
    offset: i64,
    config: &LogConfig,
) -> Result<TruncateReport, RepairError> {
    let mut bases: Vec<i64> = disk
        .list_dir(directory)
        .await?
        .iter()
        .filter_map(|name| match segment::parse_file_name(name) {
            Some(PartitionFile::Segment(base)) => Some(base),
            _ => None,
        })
        .collect();
    bases.sort_unstable();
    let Some(&first) = bases.first() else {
        return Err(RepairError::NoSegment(directory.to_path_buf()));
    };
    let Some(&base) = bases.iter().rev().find(|&&base| base <= offset) else {
        return Err(RepairError::BelowFirstSegment {
            directory: directory.to_path_buf(),
            offset,
            first,
        });
    };
    let path = directory.join(segment::segment_file_name(base));
    let file = disk.open(&path, OpenMode::ReadWrite).await?;
    let file_len = file.len().await?;
    // The first batch that holds `offset` or a later one: the cut goes at its start.
    let mut cut: Option<(u64, i64)> = None;
    let (valid_end, next_offset, problem) =
        scan_segment(&file, base, file_len, config, &mut |header, position, _| {
            if cut.is_none() && header.last_offset() >= offset {
                cut = Some((position, header.base_offset));
            }
            Ok(())
        })
        .await?;
    let (cut_position, new_end_offset) = match (cut, problem) {
        (Some(cut), _) => cut,
        (None, Some((position, _))) if next_offset < offset => {
            return Err(RepairError::DamageBefore {
                path,
                position,
                damaged_offset: next_offset,
                requested: offset,
            });
        }
        // The damage starts exactly at the offset, or the offset is past this segment's
        // records (it ends in a compaction gap): cut where the valid batches end.
        (None, _) => (valid_end, next_offset),
    };
    let mut removed_segments = Vec::new();
    for &later in bases.iter().filter(|&&later| later > base) {
        remove_segment_files(disk, directory, later).await?;
        removed_segments.push(directory.join(segment::segment_file_name(later)));
    }
    // The cut segment is the active one now: it is rescanned at open, and index files are
    // written again when it is sealed.
    for name in [
        segment::offset_index_file_name(base),
        segment::time_index_file_name(base),
    ] {
        match disk.remove_file(&directory.join(name)).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
    }
    file.set_len(cut_position).await?;
    file.sync_data().await?;
    drop(file);

    let checkpoint_path = directory.join(CHECKPOINT_FILE_NAME);
    let previous = match disk.open(&checkpoint_path, OpenMode::Read).await {
        Ok(existing) => Checkpoint::decode(&existing.read_at(0, CHECKPOINT_FILE_BYTES).await?).ok(),
        Err(error) if error.is_not_found() => None,
        Err(error) => return Err(error.into()),
    };
    let log_start_offset = previous
        .map_or(first, |previous| previous.log_start_offset)
        .clamp(first, new_end_offset.max(first));
    let checkpoint = Checkpoint {
        sequence: previous.map_or(0, |previous| previous.sequence) + 1,
        log_start_offset,
        recovery_segment: base,
        recovery_position: cut_position,
    };
    // Never a checkpoint file without a valid slot: write aside, sync, rename, sync the
    // directory (which also makes the removals durable).
    let temporary = directory.join(format!("{CHECKPOINT_FILE_NAME}.tmp"));
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error.into()),
    }
    let aside = disk.open(&temporary, OpenMode::CreateNew).await?;
    aside
        .write_at(0, Bytes::from(vec![0u8; CHECKPOINT_FILE_BYTES]))
        .await?;
    write_checkpoint(&aside, &checkpoint).await?;
    drop(aside);
    disk.rename(&temporary, &checkpoint_path).await?;
    disk.sync_dir(directory).await?;
    Ok(TruncateReport {
        segment: path,
        cut_position,
        cut_bytes: file_len - cut_position,
        new_end_offset,
        removed_segments,
    })
}
