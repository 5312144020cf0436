//! Repair of one partition directory: [`truncate_from`], run only by an explicit operator
//! command (`ledge-repair truncate`), and [`truncate_at_damage`], run by a `[cluster]` node
//! on a replica whose leader holds the records (issue 13 item 4), never on a single node.
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
use super::leader_epoch::{self, LeaderEpochIoError, LoadedEpochs};
use super::log::{remove_segment_files, scan_segment, write_checkpoint};
use super::segment::{self, CHECKPOINT_FILE_NAME, DAMAGED_FILE_SUFFIX, PartitionFile};

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
    /// [`truncate_at_damage`] found no damaged batch to cut at (the damage is elsewhere: a
    /// checkpoint, a segment header, a missing segment).
    #[error("no damaged batch found in the segments of {0}")]
    NoDamage(PathBuf),
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

/// Where damage was seen before [`truncate_at_damage`] looks for it: what the open or a
/// verified read found beyond the scan's checks (a leader epoch the checkpoint does not
/// give, a segment shorter than its recovery point, a read the disk could not serve).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DamageHint {
    /// The open's report (`OpenError::Corrupt`): the batch at `position` of `segment`.
    At {
        /// The segment file.
        segment: PathBuf,
        /// File position.
        position: u64,
    },
    /// A verified read's report (`BatchDamage`): every offset from this one on is suspect.
    FromOffset(i64),
}

/// What [`truncate_at_damage`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamageRepairReport {
    /// The segment holding the first damaged batch (cut there; now the active one).
    pub segment: PathBuf,
    /// File position of the first damaged batch: the segment's new length.
    pub damage_position: u64,
    /// What is wrong there.
    pub reason: String,
    /// The partition's new end: the first offset the damaged bytes stood for.
    pub new_end_offset: i64,
    /// Files the cut bytes were kept in (the damaged segment's tail, later segments whole).
    pub kept_aside: Vec<PathBuf>,
}

/// Cuts the partition in `directory` at its first damaged batch (CRC, framing, offsets
/// that do not continue, a sealed segment ending short of its successor), the batch the
/// `hint` names counting as damaged too (see [`DamageHint`]). The log
/// then ends at the last batch that verifies, and its leader-epoch checkpoint is cut to
/// match. Nothing is deleted unseen: the damaged segment's tail is copied to
/// `<segment>.<position>.damaged` and later segments are renamed `<segment>.damaged` (their
/// index files go), each named in the report and logged.
///
/// Reads every segment up to the damage (a repair is rare; the scan is what finds damage
/// the open did not look for, in sealed segments). Crash-safe: the cut itself is
/// [`truncate_from`]; a crash before it leaves the damage in place, found again at the next
/// open. Only for a replica whose records another replica holds: the caller makes sure.
pub async fn truncate_at_damage<D: Disk>(
    disk: &D,
    directory: &Path,
    hint: Option<&DamageHint>,
    config: &LogConfig,
) -> Result<DamageRepairReport, RepairError> {
    let mut bases = segment_bases(disk, directory).await?;
    bases.sort_unstable();
    let mut found = None;
    for (number, &base) in bases.iter().enumerate() {
        let path = directory.join(segment::segment_file_name(base));
        let file = disk.open(&path, OpenMode::Read).await?;
        let file_len = file.len().await?;
        let limit = match hint {
            Some(DamageHint::At { segment, position }) if *segment == path => {
                (*position).min(file_len)
            }
            _ => file_len,
        };
        let from_offset = match hint {
            Some(DamageHint::FromOffset(offset)) => Some(*offset),
            _ => None,
        };
        // The first batch holding the hinted offset or a later one.
        let mut hinted: Option<(u64, i64)> = None;
        let (valid_end, next_offset, problem) =
            scan_segment(&file, base, limit, config, &mut |header, position, _| {
                if hinted.is_none()
                    && from_offset.is_some_and(|offset| header.last_offset() >= offset)
                {
                    hinted = Some((position, header.base_offset));
                }
                Ok(())
            })
            .await?;
        if let Some((position, first_offset)) = hinted {
            found = Some((
                base,
                path,
                position,
                first_offset,
                "reported damaged by a verified read".to_owned(),
            ));
            break;
        }
        let successor = bases.get(number + 1).copied();
        let reason = if let Some((_, reason)) = problem {
            Some(reason)
        } else if limit < file_len {
            Some("reported damaged when the partition was opened".to_owned())
        } else if let Some(next_base) = successor {
            // A compacted segment may end below its successor's base, never above.
            let short = next_offset < next_base && !compacted(&file).await;
            (next_offset > next_base || short).then(|| {
                format!(
                    "sealed segment ends at offset {next_offset}, but the next segment starts at {next_base}"
                )
            })
        } else {
            None
        };
        if let Some(reason) = reason {
            found = Some((base, path, valid_end, next_offset, reason));
            break;
        }
    }
    let Some((base, path, cut_position, new_end_offset, reason)) = found else {
        return Err(RepairError::NoDamage(directory.to_path_buf()));
    };
    let mut kept_aside = Vec::new();
    let file = disk.open(&path, OpenMode::Read).await?;
    let file_len = file.len().await?;
    if file_len > cut_position {
        let aside = directory.join(format!(
            "{}.{cut_position}{DAMAGED_FILE_SUFFIX}",
            segment::segment_file_name(base)
        ));
        copy_range(disk, &file, cut_position, file_len, &aside, config).await?;
        tracing::warn!(segment = %path.display(), position = cut_position, bytes = file_len - cut_position, kept_in = %aside.display(), "damaged bytes cut from the log kept aside");
        kept_aside.push(aside);
    }
    drop(file);
    // Newest first, so a crash in between never leaves a hole in the middle of the segments.
    for &later in bases.iter().rev().filter(|&&later| later > base) {
        let from = directory.join(segment::segment_file_name(later));
        let aside = directory.join(format!(
            "{}{DAMAGED_FILE_SUFFIX}",
            segment::segment_file_name(later)
        ));
        disk.rename(&from, &aside).await?;
        remove_segment_files(disk, directory, later).await?;
        disk.sync_dir(directory).await?;
        tracing::warn!(segment = %from.display(), kept_in = %aside.display(), "segment after the damage taken out of the log and kept aside");
        kept_aside.push(aside);
    }
    truncate_from(disk, directory, new_end_offset, config).await?;
    match leader_epoch::load(disk, directory).await {
        Ok(LoadedEpochs::Loaded(mut epochs)) => {
            if epochs.truncate_from_end(new_end_offset) {
                leader_epoch::store(disk, directory, &epochs)
                    .await
                    .map_err(|LeaderEpochIoError::Disk(error)| RepairError::Disk(error))?;
            }
        }
        // The open rebuilds a missing or damaged one from the batches that are left.
        Ok(LoadedEpochs::Missing | LoadedEpochs::Damaged(_)) => {}
        Err(LeaderEpochIoError::Disk(error)) => return Err(error.into()),
    }
    Ok(DamageRepairReport {
        segment: path,
        damage_position: cut_position,
        reason,
        new_end_offset,
        kept_aside,
    })
}

async fn segment_bases<D: Disk>(disk: &D, directory: &Path) -> Result<Vec<i64>, DiskError> {
    Ok(disk
        .list_dir(directory)
        .await?
        .iter()
        .filter_map(|name| match segment::parse_file_name(name) {
            Some(PartitionFile::Segment(base)) => Some(base),
            _ => None,
        })
        .collect())
}

async fn compacted<F: DiskFile>(file: &F) -> bool {
    match file
        .read_at(0, segment::SEGMENT_HEADER_BYTES as usize)
        .await
    {
        Ok(header) => segment::check_segment_header(&header)
            .is_ok_and(|flags| flags & segment::SEGMENT_FLAG_COMPACTED != 0),
        Err(_) => false,
    }
}

/// Copies `from..to` of `file` into a new file `target` (replacing one of that name), in
/// `recovery_read_bytes` steps, synced.
async fn copy_range<D: Disk>(
    disk: &D,
    file: &D::File,
    from: u64,
    to: u64,
    target: &Path,
    config: &LogConfig,
) -> Result<(), DiskError> {
    match disk.remove_file(target).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let out = disk.open(target, OpenMode::CreateNew).await?;
    let step = (config.recovery_read_bytes as u64).max(4096);
    let mut position = from;
    while position < to {
        let bytes = file
            .read_at(position, step.min(to - position) as usize)
            .await?;
        let length = bytes.len() as u64;
        if length == 0 {
            break;
        }
        out.write_at(position - from, Bytes::from(bytes)).await?;
        position += length;
    }
    out.sync_data().await
}

/// Removes every record at `offset` and after from the partition in `directory` (see the
/// module doc). `config` gives the read size for the scan.
pub async fn truncate_from<D: Disk>(
    disk: &D,
    directory: &Path,
    offset: i64,
    config: &LogConfig,
) -> Result<TruncateReport, RepairError> {
    let mut bases = segment_bases(disk, directory).await?;
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

#[cfg(test)]
mod tests;
