//! Opening: recovery of the active and sealed segments, the producer state, and the
//! read-only open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use ledge_protocol::{BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, BatchHeader};
use tokio::sync::{mpsc, watch};

use super::config::LogConfig;
use super::error::{
    AppendError, DeleteError, LeaderEpochError, OpenError, ProducersError, TruncateError,
};
use super::roll::create_segment;
use super::writer::Writer;
use super::{Command, LogState, PartitionLog, ReadFile, Segment, SegmentFile, Shared};
use crate::clock::Clock;
use crate::storage::checkpoint::{Checkpoint, CheckpointError};
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode};
use crate::storage::group_commit::{CommitPolicy, CommitQueue};
use crate::storage::index::SegmentIndex;
use crate::storage::leader_epoch::{self, LeaderEpochCache, LeaderEpochIoError, LoadedEpochs};
use crate::storage::producers::ProducerStates;
use crate::storage::record_count;
use crate::storage::recovery::{self, PARTITION_LEADER_EPOCH, ScanStop};
use crate::storage::segment::{
    self, CHECKPOINT_FILE_NAME, PartitionFile, SEGMENT_HEADER_BYTES, SegmentHeaderError,
};

impl<D: Disk> PartitionLog<D> {
    /// Opens the partition log in `directory`, creating it if missing, and recovers it: a
    /// torn tail above the recovery point is truncated, damage below it is an error naming
    /// the file and position. Spawns the writer task on the current tokio runtime.
    pub async fn open(
        disk: D,
        directory: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let opened = match open_files(&disk, directory, &config).await {
            // Nothing was changed (the first write was refused): serve reads.
            Err(OpenError::Disk(error)) if error.is_read_only() => {
                return match Self::open_read_only(disk, directory, config).await {
                    Ok(log) => {
                        tracing::warn!(directory = %directory.display(), %error, "read-only filesystem: the partition serves reads only");
                        Ok(log)
                    }
                    // A partition that does not exist yet cannot be made here: the
                    // read-only error says why.
                    Err(OpenError::Disk(missing)) if missing.is_not_found() => {
                        Err(OpenError::Disk(error))
                    }
                    Err(other) => Err(other),
                };
            }
            opened => opened?,
        };
        let (high_watermark, _) = watch::channel(opened.state.high_watermark);
        let (written_end, _) = watch::channel(opened.state.high_watermark);
        tracing::debug!(
            directory = %directory.display(),
            backend = disk.backend_name(),
            log_start_offset = opened.state.log_start_offset,
            high_watermark = opened.state.high_watermark,
            "partition log open"
        );
        let shared = Arc::new(Shared {
            directory: directory.to_path_buf(),
            config: RwLock::new(config.clone()),
            state: RwLock::new(opened.state),
            high_watermark,
            written_end,
            reader_arrived: tokio::sync::Notify::new(),
            disk: disk.clone(),
            compaction: tokio::sync::Mutex::new(()),
            last_compaction_ms: std::sync::atomic::AtomicI64::new(-1),
            producer_id_max_recovered: opened.producers.producer_id_max(),
            damage: std::sync::Mutex::new(None),
            sealed_files: tokio::sync::RwLock::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let (commands, receiver) = mpsc::channel(config.append_queue_depth);
        let (written_end, durable_end, last_synced) = {
            let state = shared.read_state();
            let active = state.active();
            (
                active.next_offset,
                state.high_watermark,
                (active.base_offset, active.synced_bytes),
            )
        };
        let policy = CommitPolicy {
            flush_interval: config.flush_interval,
            checkpoint_interval: config.recovery_checkpoint_interval,
            sync_for_readers: config.sync_for_readers,
            commit_bytes_max: config.commit_bytes_max,
        };
        let writer = Writer {
            disk,
            shared: Arc::clone(&shared),
            clock,
            checkpoint_file: opened.checkpoint_file,
            checkpoint: opened.checkpoint,
            producers: opened.producers,
            queue: CommitQueue::new(policy, written_end, durable_end),
            sync_in_flight: None,
            queued: std::collections::VecDeque::new(),
            last_synced,
        };
        tokio::spawn(writer.run(receiver));
        Ok(Self { shared, commands })
    }
}

pub(super) struct Opened<F> {
    state: LogState<F>,
    checkpoint_file: F,
    checkpoint: Checkpoint,
    producers: ProducerStates,
}

pub(super) async fn open_files<D: Disk>(
    disk: &D,
    directory: &Path,
    config: &LogConfig,
) -> Result<Opened<D::File>, OpenError> {
    crate::storage::disk::create_dir_durable(disk, directory).await?;
    let names = disk.list_dir(directory).await?;
    let mut segment_bases = Vec::new();
    let mut index_files = Vec::new();
    let mut has_checkpoint = false;
    for name in &names {
        let path = directory.join(name);
        match segment::parse_file_name(name) {
            Some(PartitionFile::Segment(base)) => segment_bases.push(base),
            Some(
                PartitionFile::OffsetIndex(base)
                | PartitionFile::TimeIndex(base)
                | PartitionFile::ProducerSnapshot(base),
            ) => index_files.push((base, path)),
            Some(PartitionFile::Checkpoint) => has_checkpoint = true,
            // Loaded after the segments (`load_leader_epochs`).
            Some(PartitionFile::LeaderEpochCheckpoint) => {}
            Some(PartitionFile::Temporary) => disk.remove_file(&path).await?,
            // Kept for the operator (a replica's repair cut them off); never part of the log.
            Some(PartitionFile::Damaged) => {}
            None => return Err(OpenError::ForeignFile { path }),
        }
    }
    segment_bases.sort_unstable();

    let checkpoint_path = directory.join(CHECKPOINT_FILE_NAME);
    let mut stored = None;
    if has_checkpoint {
        let file = disk.open(&checkpoint_path, OpenMode::ReadWrite).await?;
        let bytes = file
            .read_at(0, crate::storage::checkpoint::CHECKPOINT_FILE_BYTES)
            .await?;
        match Checkpoint::decode(&bytes) {
            Ok(checkpoint) => stored = Some((file, checkpoint)),
            // Both slots damaged: only media damage does that (writes alternate slots). The
            // segments say everything but the log start, and recovery does not need the
            // recovery point to keep damage from being cut (it judges the damage's shape),
            // so rebuild it rather than keep the partition offline. Records below the lost
            // log start in the first segment become readable again; none is lost.
            Err(error @ CheckpointError::NoValidSlot) => tracing::error!(
                checkpoint = %checkpoint_path.display(),
                %error,
                "checkpoint unreadable; rebuilding it from the segments (the log start becomes the first segment's base offset)"
            ),
            Err(error) => {
                return Err(OpenError::Checkpoint {
                    path: checkpoint_path.clone(),
                    error,
                });
            }
        }
    }
    let (mut checkpoint_file, mut checkpoint) = if let Some((file, checkpoint)) = stored {
        (Some(file), checkpoint)
    } else {
        if has_checkpoint {
            // Replaced below by a checkpoint written aside and renamed over it.
        } else if !segment_bases.is_empty() {
            tracing::warn!(
                directory = %directory.display(),
                "checkpoint missing; recovering the whole active segment without a recovery point"
            );
        }
        // Nothing is known to be durable: recovery may truncate any bad tail.
        let base = segment_bases.first().copied().unwrap_or(0);
        let checkpoint = Checkpoint {
            sequence: 0,
            log_start_offset: base,
            recovery_segment: base,
            recovery_position: 0,
        };
        (None, checkpoint)
    };

    // Finish a deletion interrupted by a crash: segments wholly below the log start. They
    // are removed only after the log start is checked against the recovered log below, so
    // a checkpoint with a wrong log start cannot delete segments.
    let mut deleted = false;
    let mut interrupted_deletions = Vec::new();
    while segment_bases.len() > 1 {
        let (Some(&first), Some(&second)) = (segment_bases.first(), segment_bases.get(1)) else {
            break;
        };
        if second > checkpoint.log_start_offset {
            break;
        }
        interrupted_deletions.push(first);
        segment_bases.remove(0);
    }
    for (base, path) in &index_files {
        if segment_bases.binary_search(base).is_err() {
            // Already gone if its segment was just removed above.
            match disk.remove_file(path).await {
                Ok(()) => deleted = true,
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    let mut segments = BTreeMap::new();
    let created_first_segment = segment_bases.is_empty();
    let mut producers = ProducerStates::default();
    // (leader epoch, base offset, position) of each batch recovery keeps in the active
    // segment, checked against the leader-epoch checkpoint once it is loaded.
    let mut active_epochs = Vec::new();
    // The last segment is the active one; every earlier one is sealed and ends where its
    // successor starts.
    let (active, active_file) = match segment_bases.split_last() {
        None => create_segment(disk, directory, checkpoint.log_start_offset, config).await?,
        Some((&active_base, sealed)) => {
            for (number, &base) in sealed.iter().enumerate() {
                let end = sealed.get(number + 1).copied().unwrap_or(active_base);
                let segment = open_sealed_segment(
                    disk,
                    directory,
                    base,
                    end,
                    config,
                    RebuiltIndex::WriteFiles,
                )
                .await?;
                segments.insert(base, segment);
            }
            producers = load_producer_states(disk, directory, &segment_bases, config).await?;
            recover_active_segment(
                disk,
                directory,
                active_base,
                &checkpoint,
                config,
                &mut producers,
                &mut active_epochs,
            )
            .await?
        }
    };
    segments.insert(active.base_offset, active);
    if deleted || created_first_segment {
        disk.sync_dir(directory).await?;
    }
    let first_base = segments.keys().next().copied().unwrap_or(0);
    let log_start_offset = checkpoint.log_start_offset.max(first_base);
    let mut state = LogState {
        segments,
        active_file: Arc::new(active_file),
        log_start_offset,
        high_watermark: 0,
        fenced: None,
        epochs: LeaderEpochCache::new(),
        leader_epoch: PARTITION_LEADER_EPOCH,
        records_below_log_start: 0,
        records_above_high_watermark: std::collections::VecDeque::new(),
    };
    let (active_base, active_next, active_synced) = {
        let active = state.active();
        (active.base_offset, active.next_offset, active.synced_bytes)
    };
    if log_start_offset > active_next {
        // The log start may reach the end of the log (everything deleted), never beyond.
        return Err(OpenError::Corrupt {
            path: checkpoint_path,
            position: 0,
            reason: format!(
                "the checkpoint's log start offset {log_start_offset} is past the end of the log \
                 ({active_next}); nothing was deleted"
            ),
        });
    }
    state.records_below_log_start = count_records_below(
        disk,
        state.segment_records_at(log_start_offset),
        log_start_offset,
        config.recovery_read_bytes,
    )
    .await?;
    for &base in &interrupted_deletions {
        remove_segment_files(disk, directory, base).await?;
    }
    if !interrupted_deletions.is_empty() {
        disk.sync_dir(directory).await?;
    }
    state.high_watermark = active_next;
    // Everything recovery kept is synced (recover_active_segment synced it), so the
    // recovery point moves to the end of the active segment.
    checkpoint = Checkpoint {
        sequence: checkpoint.sequence + 1,
        log_start_offset,
        recovery_segment: active_base,
        recovery_position: active_synced,
    };
    let checkpoint_file = match checkpoint_file.take() {
        Some(file) => {
            write_checkpoint(&file, &checkpoint).await?;
            file
        }
        None => {
            // A checkpoint file must never be visible without a valid slot, or a crash here
            // would leave a partition that cannot open: write it aside, sync, then rename.
            // The same directory sync makes a first segment's name durable too.
            let temporary = directory.join(format!("{CHECKPOINT_FILE_NAME}.tmp"));
            let file = disk.open(&temporary, OpenMode::CreateNew).await?;
            write_checkpoint(&file, &checkpoint).await?;
            drop(file);
            disk.rename(&temporary, &checkpoint_path).await?;
            disk.sync_dir(directory).await?;
            disk.open(&checkpoint_path, OpenMode::ReadWrite).await?
        }
    };
    state.epochs = load_leader_epochs(disk, directory, &state, true, &active_epochs).await?;
    state.leader_epoch = state
        .epochs
        .latest_epoch()
        .unwrap_or(PARTITION_LEADER_EPOCH);
    Ok(Opened {
        state,
        checkpoint_file,
        checkpoint,
        producers,
    })
}

/// The idempotent-producer state as of the start of the active segment (the last of
/// `segment_bases`): its snapshot if usable, else rebuilt by scanning every sealed segment.
pub(super) async fn load_producer_states<D: Disk>(
    disk: &D,
    directory: &Path,
    segment_bases: &[i64],
    config: &LogConfig,
) -> Result<ProducerStates, OpenError> {
    let Some((&active, sealed)) = segment_bases.split_last() else {
        return Ok(ProducerStates::default());
    };
    if sealed.is_empty() {
        return Ok(ProducerStates::default());
    }
    let snapshot_path = directory.join(segment::producer_snapshot_file_name(active));
    if let Some(bytes) = read_whole(disk, &snapshot_path).await? {
        if let Some(states) = ProducerStates::decode_snapshot(&bytes) {
            return Ok(states);
        }
        tracing::warn!(snapshot = %snapshot_path.display(), "producer snapshot unusable; rebuilding from segments");
    }
    let mut producers = ProducerStates::default();
    for &base in sealed {
        let path = directory.join(segment::segment_file_name(base));
        let file = disk.open(&path, OpenMode::Read).await?;
        let size = file.len().await?;
        let (_, _, problem) = scan_segment(&file, base, size, config, &mut |header, _, _| {
            producers.record(header, header.base_offset, config.producers_max);
            Ok(())
        })
        .await?;
        if let Some((position, reason)) = problem {
            return Err(OpenError::Corrupt {
                path,
                position,
                reason,
            });
        }
    }
    Ok(producers)
}

pub(in crate::storage) async fn write_checkpoint<F: DiskFile>(
    file: &F,
    checkpoint: &Checkpoint,
) -> Result<(), DiskError> {
    file.write_at(
        checkpoint.slot_position(),
        Bytes::copy_from_slice(&checkpoint.encode()),
    )
    .await?;
    file.sync_data().await
}

pub(in crate::storage) async fn remove_segment_files<D: Disk>(
    disk: &D,
    directory: &Path,
    base: i64,
) -> Result<(), DiskError> {
    for name in [
        segment::segment_file_name(base),
        segment::offset_index_file_name(base),
        segment::time_index_file_name(base),
        segment::producer_snapshot_file_name(base),
    ] {
        match disk.remove_file(&directory.join(name)).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

pub(super) async fn check_header<F: DiskFile>(file: &F, path: &Path) -> Result<u32, OpenError> {
    let header = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await?;
    segment::check_segment_header(&header).map_err(|error| OpenError::SegmentHeader {
        path: path.to_path_buf(),
        error,
    })
}

/// Scans a segment from its header to its end, handing each valid batch to `on_batch`.
/// Returns the scan's valid end, next offset and, if it stopped early, where and why.
pub(in crate::storage) async fn scan_segment<F: DiskFile>(
    file: &F,
    base: i64,
    file_len: u64,
    config: &LogConfig,
    on_batch: &mut (dyn FnMut(&BatchHeader, u64, u64) -> Result<(), String> + Send),
) -> Result<(u64, i64, Option<(u64, String)>), DiskError> {
    let mut position = SEGMENT_HEADER_BYTES;
    let mut next_offset = base;
    let mut want = config.recovery_read_bytes as u64;
    let header = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await?;
    let allow_gaps = segment::check_segment_header(&header)
        .is_ok_and(|flags| flags & segment::SEGMENT_FLAG_COMPACTED != 0);
    while position < file_len {
        let length = want.min(file_len - position);
        let bytes = file.read_at(position, length as usize).await?;
        if (bytes.len() as u64) < length {
            // The file shrank under us; treat what is there as all there is.
            let end = position + bytes.len() as u64;
            let result = recovery::scan(&bytes, position, next_offset, allow_gaps, on_batch);
            let problem = match result.stop {
                ScanStop::End => None,
                ScanStop::Incomplete { position: at, .. } => {
                    Some((at, format!("batch cut off by the end of the file at {end}")))
                }
                ScanStop::Invalid {
                    position: at,
                    reason,
                } => Some((at, reason)),
            };
            return Ok((result.valid_end, result.next_offset, problem));
        }
        let result = recovery::scan(&bytes, position, next_offset, allow_gaps, on_batch);
        position = result.valid_end;
        next_offset = result.next_offset;
        match result.stop {
            ScanStop::End => want = config.recovery_read_bytes as u64,
            ScanStop::Incomplete {
                position: at,
                total_bytes,
            } => {
                let needed = total_bytes.unwrap_or(BATCH_LENGTH_PREFIX_BYTES as u64);
                if at + needed > file_len {
                    return Ok((
                        position,
                        next_offset,
                        Some((
                            at,
                            format!("batch of {needed} bytes is cut off by the end of the file"),
                        )),
                    ));
                }
                want = needed.max(config.recovery_read_bytes as u64);
            }
            ScanStop::Invalid {
                position: at,
                reason,
            } => return Ok((position, next_offset, Some((at, reason)))),
        }
    }
    Ok((position, next_offset, None))
}

/// Damage above the recovery point that no crash explains.
pub(super) enum TailDamage {
    /// A valid batch (at `resumes_at`, base offset `resumes_offset`) follows the damage.
    BeforeValidBatches {
        resumes_at: u64,
        resumes_offset: i64,
    },
    /// Nothing valid follows, but the damaged batch is whole and shows no lost sector.
    InFinalBatch,
}

/// Where a scan of the active segment stopped (see [`scan_segment`]).
struct ScanEnd {
    valid_end: u64,
    next_offset: i64,
    problem: Option<(u64, String)>,
}

/// The recovery rule for the active segment, one for the writable and the read-only open:
/// a stop below the recovery point is damage to acknowledged data, and above it only an
/// unfinished write may be taken for a torn tail (damage before valid batches is refused).
/// Returns the torn tail's position and reason, for the caller to cut or hide.
async fn torn_tail_above_recovery_point<F: DiskFile>(
    file: &F,
    path: &Path,
    scanned: ScanEnd,
    durable_floor: u64,
    file_len: u64,
    config: &LogConfig,
    checkpoint: &Checkpoint,
) -> Result<Option<(u64, String)>, OpenError> {
    let ScanEnd {
        valid_end,
        next_offset,
        problem,
    } = scanned;
    if valid_end < durable_floor {
        return Err(below_recovery_point_error(
            path.to_path_buf(),
            problem,
            valid_end,
            next_offset,
            durable_floor,
        ));
    }
    let Some((position, reason)) = problem else {
        return Ok(None);
    };
    if let Some(damage) = damage_before_valid_batches(
        file,
        valid_end,
        next_offset,
        file_len,
        config,
        checkpoint.sequence > 0,
    )
    .await?
    {
        return Err(tail_damage_error(
            path.to_path_buf(),
            position,
            &reason,
            next_offset,
            damage,
        ));
    }
    Ok(Some((position, reason)))
}

/// Damage below the recovery point: synced, acknowledged data. The same error for the
/// writable and the read-only open.
pub(super) fn below_recovery_point_error(
    path: PathBuf,
    problem: Option<(u64, String)>,
    valid_end: u64,
    next_offset: i64,
    durable_floor: u64,
) -> OpenError {
    let (position, reason) = problem.unwrap_or_else(|| {
        (
            valid_end,
            "segment is shorter than its recovery point".into(),
        )
    });
    OpenError::Corrupt {
        path,
        position,
        reason: format!(
            "{reason} (the batch that should start offset {next_offset}), below the \
             recovery point {durable_floor}"
        ),
    }
}

/// Judges a stop at `stop` in the active segment, above the recovery point: `None` if it
/// is a torn tail, else the damage no crash explains. A torn tail is what a crash leaves of
/// an unfinished append: the file ends inside the batch (its size was not yet extended), or
/// the damaged range (to the next valid batch, or to the file's end if none follows) shows
/// a lost sector, a run of zeros to a sector end or to the file's end (ext4 and xfs read
/// unwritten extents as zeros, and unsynced sectors may be lost out of order). A bit flip
/// in a whole final batch is neither, and cutting it would lose acknowledged records.
/// Reads from `stop` to the next valid batch or the file's end, in `recovery_read_bytes`
/// steps.
///
/// `recovery_point_known` is false when no valid checkpoint was found (deleted, or both
/// slots damaged): then a lost sector followed by valid batches is not taken for a torn
/// write, because those batches may have been synced and acknowledged long ago and zeroed
/// sectors may be media damage; the partition goes offline rather than lose them (issue 11,
/// data item 2). With a checkpoint, writes after its recovery point can have been in flight
/// at the crash, and a sector of one lost while a later one survived is a torn tail.
pub(super) async fn damage_before_valid_batches<F: DiskFile>(
    file: &F,
    stop: u64,
    next_offset: i64,
    file_len: u64,
    config: &LogConfig,
    recovery_point_known: bool,
) -> Result<Option<TailDamage>, DiskError> {
    let Some((resumes_at, resumes_offset)) =
        next_continuing_batch(file, stop, next_offset, file_len, config).await?
    else {
        let prefix = file.read_at(stop, BATCH_LENGTH_PREFIX_BYTES).await?;
        // A negative length is no unfinished write's; it is judged like any damage.
        let ends_inside = prefix.len() < BATCH_LENGTH_PREFIX_BYTES
            || recovery::declared_total_bytes(&prefix)
                .is_some_and(|total| total > file_len.saturating_sub(stop));
        if ends_inside || lost_write_between(file, stop, file_len, config).await? {
            return Ok(None);
        }
        let last_sector = file_len - file_len % recovery::LOST_WRITE_UNIT_BYTES;
        let from = last_sector.max(stop);
        let tail = file.read_at(from, (file_len - from) as usize).await?;
        if recovery::lost_write_at_file_end(&tail, from, stop) {
            return Ok(None);
        }
        return Ok(Some(TailDamage::InFinalBatch));
    };
    // A lost sector may end inside the valid batch's first bytes when those are zeros
    // anyway (the high bytes of its base offset and length, its epoch 0): judge the
    // damaged range up to the end of that zero prefix.
    let prefix = file.read_at(resumes_at, BATCH_HEADER_BYTES).await?;
    let zero_prefix = prefix.iter().take_while(|&&byte| byte == 0).count() as u64;
    let judged_end = resumes_at + zero_prefix;
    if recovery_point_known && lost_write_between(file, stop, judged_end, config).await? {
        return Ok(None);
    }
    Ok(Some(TailDamage::BeforeValidBatches {
        resumes_at,
        resumes_offset,
    }))
}

/// Whether the damaged range from `stop` to `judged_end` shows a lost sector
/// ([`recovery::lost_write_in`]). Reads it from its first whole sector on, so every sector
/// that ends before `judged_end` is judged.
pub(super) async fn lost_write_between<F: DiskFile>(
    file: &F,
    stop: u64,
    judged_end: u64,
    config: &LogConfig,
) -> Result<bool, DiskError> {
    let step = (config.recovery_read_bytes as u64).max(recovery::LOST_WRITE_UNIT_BYTES);
    let mut from = stop - stop % recovery::LOST_WRITE_UNIT_BYTES;
    while from < judged_end {
        let until = (from + step).min(judged_end);
        let bytes = file.read_at(from, (until - from) as usize).await?;
        if recovery::lost_write_in(&bytes, from, stop) {
            return Ok(true);
        }
        if (bytes.len() as u64) < until - from {
            break;
        }
        // Step on by whole sectors so no sector is split between two reads.
        let judged =
            (until - from) / recovery::LOST_WRITE_UNIT_BYTES * recovery::LOST_WRITE_UNIT_BYTES;
        if judged == 0 {
            break;
        }
        from += judged;
    }
    Ok(false)
}

/// The open error for damage above the recovery point ([`damage_before_valid_batches`]),
/// one message for the normal and the read-only open: `reason` is the scan's, for the
/// batch at `position` that should start `next_offset`.
pub(super) fn tail_damage_error(
    path: PathBuf,
    position: u64,
    reason: &str,
    next_offset: i64,
    damage: TailDamage,
) -> OpenError {
    let found = match damage {
        TailDamage::BeforeValidBatches {
            resumes_at,
            resumes_offset,
        } => format!("valid batches follow from byte {resumes_at} (offset {resumes_offset})"),
        TailDamage::InFinalBatch => "the final batch is whole and shows no lost sector".into(),
    };
    OpenError::Corrupt {
        path,
        position,
        reason: format!(
            "{reason} (the batch that should start offset {next_offset}); {found}, so this is \
             damage to written data, not an unfinished write, and nothing is truncated"
        ),
    }
}

/// The first whole valid batch after `stop` (searched byte by byte) whose base offset is at
/// least `next_offset`: its position and base offset.
pub(super) async fn next_continuing_batch<F: DiskFile>(
    file: &F,
    stop: u64,
    next_offset: i64,
    file_len: u64,
    config: &LogConfig,
) -> Result<Option<(u64, i64)>, DiskError> {
    let header_bytes = BATCH_HEADER_BYTES as u64;
    let step = (config.recovery_read_bytes as u64).max(2 * header_bytes);
    let mut start = stop + 1;
    while start + header_bytes <= file_len {
        let chunk = file
            .read_at(start, step.min(file_len - start) as usize)
            .await?;
        let Some(candidates) = chunk.len().checked_sub(BATCH_HEADER_BYTES - 1) else {
            break;
        };
        for at_in_chunk in 0..candidates {
            let Some(rest) = chunk.get(at_in_chunk..) else {
                break;
            };
            let Some(total) = recovery::plausible_continuation(rest, next_offset) else {
                continue;
            };
            let at = start + at_in_chunk as u64;
            if total > file_len - at {
                continue;
            }
            let whole;
            let batch = match rest.get(..total as usize) {
                Some(batch) => batch,
                None => {
                    whole = file.read_at(at, total as usize).await?;
                    whole.as_slice()
                }
            };
            if let Some(header) = recovery::continuing_batch(batch, next_offset) {
                return Ok(Some((at, header.base_offset)));
            }
        }
        start += candidates as u64;
    }
    Ok(None)
}

/// What becomes of a sealed segment's index rebuilt at open (its files were missing or
/// unusable).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RebuiltIndex {
    /// Written to the index files, so the next open needs no scan.
    WriteFiles,
    /// Kept in memory only: the data directory is read-only.
    KeepInMemory,
}

pub(super) async fn open_sealed_segment<D: Disk>(
    disk: &D,
    directory: &Path,
    base: i64,
    end_offset: i64,
    config: &LogConfig,
    rebuilt_index: RebuiltIndex,
) -> Result<Segment, OpenError> {
    let path = directory.join(segment::segment_file_name(base));
    let file = disk.open(&path, OpenMode::Read).await?;
    let compacted = check_header(&file, &path).await? & segment::SEGMENT_FLAG_COMPACTED != 0;
    let size = file.len().await?;
    let offset_path = directory.join(segment::offset_index_file_name(base));
    let time_path = directory.join(segment::time_index_file_name(base));
    let loaded = match (
        read_whole(disk, &offset_path).await?,
        read_whole(disk, &time_path).await?,
    ) {
        (Some(offsets), Some(times)) => {
            SegmentIndex::decode(base, config.index_interval_bytes, &offsets, &times, size, end_offset).map_err(|error| match error {
                // Written before indexes counted records: expected once after an upgrade.
                crate::storage::index::IndexFileError::OlderVersion(_) => {
                    tracing::info!(segment = %path.display(), %error, "rebuilding the index from the segment");
                }
                error => {
                    tracing::warn!(segment = %path.display(), %error, "index unusable; rebuilding from the segment");
                }
            })
        }
        _ => Err(()),
    };
    let index = match loaded {
        Ok(index) => index,
        Err(()) => {
            // Sealed segments were synced before their successor was created, so any damage
            // found here is real corruption of acknowledged data.
            let mut index = SegmentIndex::new(base, config.index_interval_bytes);
            let (valid_end, next_offset, problem) =
                scan_segment(&file, base, size, config, &mut |header, position, bytes| {
                    index
                        .note_batch(position, header.base_offset, header.max_timestamp, bytes)
                        .map_err(|error| error.to_string())?;
                    index.note_records(record_count::stored_records(header));
                    Ok(())
                })
                .await?;
            if let Some((position, reason)) = problem {
                return Err(OpenError::Corrupt {
                    path,
                    position,
                    reason,
                });
            }
            // Compaction may have removed the segment's last records, never added any.
            let ends_right = if compacted {
                next_offset <= end_offset
            } else {
                next_offset == end_offset
            };
            if valid_end != size || !ends_right {
                return Err(OpenError::Corrupt {
                    path,
                    position: valid_end,
                    reason: format!(
                        "sealed segment ends at offset {next_offset}, but the next segment starts at {end_offset}"
                    ),
                });
            }
            index.seal();
            if rebuilt_index == RebuiltIndex::WriteFiles {
                write_index_files(disk, directory, &index).await?;
            }
            index
        }
    };
    // Closed here; reads reopen it through the sealed-file cache.
    drop(file);
    Ok(Segment {
        base_offset: base,
        path,
        file: SegmentFile::sealed(),
        index,
        size_bytes: size,
        synced_bytes: size,
        next_offset: end_offset,
        first_append_ms: None,
        compacted,
    })
}

/// Records of `segment` (found by `LogState::segment_records_at`) below `log_start`; reads
/// its file only when `record_count::records_below_known` cannot tell.
pub(super) async fn count_records_below<D: Disk>(
    disk: &D,
    segment: Option<(record_count::SegmentRecords, ReadFile<D::File>, PathBuf)>,
    log_start: i64,
    read_bytes: usize,
) -> Result<u64, DiskError> {
    let Some((segment, file, path)) = segment else {
        return Ok(0);
    };
    if let Some(known) = record_count::records_below_known(&segment, log_start) {
        return Ok(known);
    }
    // Called at open and by the writer, the one task that replaces or removes segments.
    let file = file.open_unshared(disk, &path).await?;
    record_count::records_below_by_reading(&*file, &segment, log_start, read_bytes).await
}

pub(super) async fn read_whole<D: Disk>(
    disk: &D,
    path: &Path,
) -> Result<Option<Vec<u8>>, DiskError> {
    let file = match disk.open(path, OpenMode::Read).await {
        Ok(file) => file,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.len().await?;
    // Index files are small (8 or 12 bytes per index interval); a huge one is damaged.
    if len > 64 * 1024 * 1024 {
        return Ok(None);
    }
    Ok(Some(file.read_at(0, len as usize).await?))
}

/// Writes a sealed segment's index files (replacing any) and syncs them; the caller syncs
/// the directory.
/// Writes a file whole (replacing any of that name) and syncs it; the caller syncs the
/// directory.
pub(super) async fn write_new_file<D: Disk>(
    disk: &D,
    path: &Path,
    bytes: Vec<u8>,
) -> Result<(), DiskError> {
    match disk.remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(path, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(bytes)).await?;
    file.sync_data().await
}

pub(super) async fn write_index_files<D: Disk>(
    disk: &D,
    directory: &Path,
    index: &SegmentIndex,
) -> Result<(), DiskError> {
    let base = index.base_offset();
    for (name, bytes) in [
        (
            segment::offset_index_file_name(base),
            index.encode_offset_index(),
        ),
        (
            segment::time_index_file_name(base),
            index.encode_time_index(),
        ),
    ] {
        write_new_file(disk, &directory.join(name), bytes).await?;
    }
    Ok(())
}

pub(super) async fn recover_active_segment<D: Disk>(
    disk: &D,
    directory: &Path,
    base: i64,
    checkpoint: &Checkpoint,
    config: &LogConfig,
    producers: &mut ProducerStates,
    epochs_seen: &mut Vec<(i32, i64, u64)>,
) -> Result<(Segment, D::File), OpenError> {
    let path = directory.join(segment::segment_file_name(base));
    let file = disk.open(&path, OpenMode::ReadWrite).await?;
    let file_len = file.len().await?;
    // The recovery point says how much of this segment was synced; if it lies in a later
    // segment, that segment is missing.
    let durable_floor = match checkpoint.recovery_segment.cmp(&base) {
        std::cmp::Ordering::Equal => checkpoint.recovery_position,
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Greater => {
            return Err(OpenError::Corrupt {
                path: directory.join(segment::segment_file_name(checkpoint.recovery_segment)),
                position: checkpoint.recovery_position,
                reason: "the checkpoint's recovery point is in this segment, which is missing"
                    .into(),
            });
        }
    };
    let header = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await?;
    let unfinished_roll = durable_floor == 0
        && file_len <= SEGMENT_HEADER_BYTES
        && matches!(
            segment::check_segment_header(&header),
            Err(SegmentHeaderError::Truncated { .. } | SegmentHeaderError::Foreign)
        );
    if unfinished_roll {
        // The roll that created this segment did not finish (its header never became
        // durable, and the checkpoint still points at an earlier segment), so nothing in it
        // was acknowledged: start it afresh.
        file.set_len(0).await?;
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
        return Ok((segment, file));
    }
    check_header(&file, &path).await?;
    let mut index = SegmentIndex::new(base, config.index_interval_bytes);
    let (valid_end, next_offset, problem) = scan_segment(
        &file,
        base,
        file_len,
        config,
        &mut |header, position, bytes| {
            index
                .note_batch(position, header.base_offset, header.max_timestamp, bytes)
                .map_err(|error| error.to_string())?;
            index.note_records(record_count::stored_records(header));
            producers.record(header, header.base_offset, config.producers_max);
            epochs_seen.push((header.partition_leader_epoch, header.base_offset, position));
            Ok(())
        },
    )
    .await?;
    let scanned = ScanEnd {
        valid_end,
        next_offset,
        problem,
    };
    if let Some((position, reason)) = torn_tail_above_recovery_point(
        &file,
        &path,
        scanned,
        durable_floor,
        file_len,
        config,
        checkpoint,
    )
    .await?
    {
        tracing::warn!(
            segment = %path.display(),
            position,
            dropped_bytes = file_len - valid_end,
            %reason,
            "truncating a torn tail above the recovery point"
        );
        file.set_len(valid_end).await?;
    }
    // Whatever survived may still be only in the page cache (a killed process, not a power
    // loss): sync before anything of it becomes visible.
    file.sync_data().await?;
    let segment = Segment {
        base_offset: base,
        path,
        file: SegmentFile::Active,
        index,
        size_bytes: valid_end,
        synced_bytes: valid_end,
        next_offset,
        first_append_ms: None,
        compacted: false,
    };
    Ok((segment, file))
}

// Read-only logs (a data directory on a read-only filesystem).

impl<D: Disk> PartitionLog<D> {
    /// Opens the log for reads only and writes nothing, for a data directory on a
    /// read-only filesystem (issue 11, data item 9: such a directory used to make every
    /// partition, and the node, fail to open). Files are opened read-only; the segments
    /// are verified as at a normal open, by the same rules (damage is an error with the
    /// same message), except that a torn tail above the recovery point is hidden from
    /// readers rather than truncated, and a sealed segment's rebuilt index is kept in
    /// memory rather than written. Every append and deletion answers with the
    /// filesystem's "read-only" error; reads go on.
    pub async fn open_read_only(
        disk: D,
        directory: &Path,
        config: LogConfig,
    ) -> Result<Self, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let state = open_files_read_only(&disk, directory, &config).await?;
        let (high_watermark, _) = watch::channel(state.high_watermark);
        // Nothing is written while read-only: readers see the synced end in either mode.
        let (written_end, _) = watch::channel(state.high_watermark);
        let shared = Arc::new(Shared {
            directory: directory.to_path_buf(),
            config: RwLock::new(config.clone()),
            state: RwLock::new(state),
            high_watermark,
            written_end,
            reader_arrived: tokio::sync::Notify::new(),
            disk,
            compaction: tokio::sync::Mutex::new(()),
            last_compaction_ms: std::sync::atomic::AtomicI64::new(-1),
            // No producer ids are handed out while the data directory is read-only.
            producer_id_max_recovered: None,
            damage: std::sync::Mutex::new(None),
            sealed_files: tokio::sync::RwLock::new(()),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let (commands, receiver) = mpsc::channel(config.append_queue_depth);
        tokio::spawn(refuse_writes(directory.to_path_buf(), receiver));
        Ok(Self { shared, commands })
    }
}

/// The error every write to a read-only log answers with.
pub(super) fn read_only_error(directory: &Path) -> DiskError {
    DiskError::new(
        "write",
        directory,
        std::io::Error::from_raw_os_error(libc::EROFS),
    )
}

/// The writer of a read-only log: answers every command without touching the disk.
pub(super) async fn refuse_writes(directory: PathBuf, mut commands: mpsc::Receiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Append(batches) => {
                for append in batches {
                    let _ = append
                        .reply
                        .send(Err(AppendError::Disk(read_only_error(&directory))));
                }
            }
            Command::DeleteBefore { reply, .. } => {
                let _ = reply.send(Err(DeleteError::Disk(read_only_error(&directory))));
            }
            Command::ReplaceSegment { reply, .. } => {
                let _ = reply.send(Err(read_only_error(&directory)));
            }
            Command::SetLeaderEpoch { reply, .. } => {
                let _ = reply.send(Err(LeaderEpochError::Disk(read_only_error(&directory))));
            }
            Command::TruncateTo { reply, .. } => {
                let _ = reply.send(Err(TruncateError::Disk(read_only_error(&directory))));
            }
            Command::Producers { reply } => {
                let _ = reply.send(Err(ProducersError::ReadOnly(directory.clone())));
            }
            Command::Close { reply } => {
                let _ = reply.send(Ok(()));
                return;
            }
        }
    }
}

/// [`open_files`] without a single write: leftovers are left in place, nothing is
/// truncated, no checkpoint or index file is stored.
pub(super) async fn open_files_read_only<D: Disk>(
    disk: &D,
    directory: &Path,
    config: &LogConfig,
) -> Result<LogState<D::File>, OpenError> {
    let mut segment_bases = Vec::new();
    let mut has_checkpoint = false;
    for name in disk.list_dir(directory).await? {
        match segment::parse_file_name(&name) {
            Some(PartitionFile::Segment(base)) => segment_bases.push(base),
            Some(PartitionFile::Checkpoint) => has_checkpoint = true,
            // Loaded after the segments (`load_leader_epochs`).
            Some(PartitionFile::LeaderEpochCheckpoint) => {}
            // Index files are read by their segment; a leftover temporary is ignored.
            Some(_) => {}
            None => {
                return Err(OpenError::ForeignFile {
                    path: directory.join(name),
                });
            }
        }
    }
    segment_bases.sort_unstable();
    let checkpoint_path = directory.join(CHECKPOINT_FILE_NAME);
    let checkpoint = if has_checkpoint {
        let file = disk.open(&checkpoint_path, OpenMode::Read).await?;
        let bytes = file
            .read_at(0, crate::storage::checkpoint::CHECKPOINT_FILE_BYTES)
            .await?;
        Checkpoint::decode(&bytes).map_err(|error| OpenError::Checkpoint {
            path: checkpoint_path.clone(),
            error,
        })?
    } else {
        let base = segment_bases.first().copied().unwrap_or(0);
        Checkpoint {
            sequence: 0,
            log_start_offset: base,
            recovery_segment: base,
            recovery_position: 0,
        }
    };
    // Segments wholly below the log start (a deletion interrupted by a crash) are skipped.
    while let (Some(_), Some(&second)) = (segment_bases.first(), segment_bases.get(1)) {
        if second > checkpoint.log_start_offset {
            break;
        }
        segment_bases.remove(0);
    }
    let Some((&active_base, sealed)) = segment_bases.split_last() else {
        // A partition without a segment needs one created, which this filesystem refuses.
        return Err(read_only_error(directory).into());
    };
    let mut segments = BTreeMap::new();
    for (number, &base) in sealed.iter().enumerate() {
        let end = sealed.get(number + 1).copied().unwrap_or(active_base);
        segments.insert(
            base,
            open_sealed_segment(
                disk,
                directory,
                base,
                end,
                config,
                RebuiltIndex::KeepInMemory,
            )
            .await?,
        );
    }
    let path = directory.join(segment::segment_file_name(active_base));
    let file = disk.open(&path, OpenMode::Read).await?;
    let file_len = file.len().await?;
    let durable_floor = match checkpoint.recovery_segment.cmp(&active_base) {
        std::cmp::Ordering::Equal => checkpoint.recovery_position,
        std::cmp::Ordering::Less => 0,
        std::cmp::Ordering::Greater => {
            return Err(OpenError::Corrupt {
                path: directory.join(segment::segment_file_name(checkpoint.recovery_segment)),
                position: checkpoint.recovery_position,
                reason: "the checkpoint's recovery point is in this segment, which is missing"
                    .into(),
            });
        }
    };
    let compacted = check_header(&file, &path).await? & segment::SEGMENT_FLAG_COMPACTED != 0;
    let mut index = SegmentIndex::new(active_base, config.index_interval_bytes);
    let (valid_end, next_offset, problem) = scan_segment(
        &file,
        active_base,
        file_len,
        config,
        &mut |header, position, bytes| {
            index
                .note_batch(position, header.base_offset, header.max_timestamp, bytes)
                .map_err(|error| error.to_string())?;
            index.note_records(record_count::stored_records(header));
            Ok(())
        },
    )
    .await?;
    let scanned = ScanEnd {
        valid_end,
        next_offset,
        problem,
    };
    if let Some((position, reason)) = torn_tail_above_recovery_point(
        &file,
        &path,
        scanned,
        durable_floor,
        file_len,
        config,
        &checkpoint,
    )
    .await?
    {
        tracing::warn!(segment = %path.display(), position, %reason, "a torn tail above the recovery point is hidden, not truncated (read-only)");
    }
    segments.insert(
        active_base,
        Segment {
            base_offset: active_base,
            path,
            file: SegmentFile::Active,
            index,
            size_bytes: valid_end,
            synced_bytes: valid_end,
            next_offset,
            first_append_ms: None,
            compacted,
        },
    );
    let first_base = segments.keys().next().copied().unwrap_or(active_base);
    let log_start_offset = checkpoint.log_start_offset.max(first_base);
    let mut state = LogState {
        segments,
        active_file: Arc::new(file),
        log_start_offset,
        high_watermark: next_offset,
        fenced: None,
        epochs: LeaderEpochCache::new(),
        leader_epoch: PARTITION_LEADER_EPOCH,
        records_below_log_start: 0,
        // Everything served is below the high watermark: nothing is written after open.
        records_above_high_watermark: std::collections::VecDeque::new(),
    };
    // The same count as a writable open (`open_files`): records below a log start inside the
    // first segment are not the partition's.
    state.records_below_log_start = count_records_below(
        disk,
        state.segment_records_at(log_start_offset),
        log_start_offset,
        config.recovery_read_bytes,
    )
    .await?;
    state.epochs = load_leader_epochs(disk, directory, &state, false, &[]).await?;
    state.leader_epoch = state
        .epochs
        .latest_epoch()
        .unwrap_or(PARTITION_LEADER_EPOCH);
    Ok(state)
}

/// The leader-epoch checkpoint of a recovered log: the stored file cut to the log's start and
/// end (a crash between a truncation of the log and the store of its cut leaves entries past
/// the end), or, when the file is missing or damaged, rebuilt from the batches' epochs. With
/// `store`, a changed or rebuilt checkpoint is stored before the log serves anything.
///
/// A stored checkpoint is also a check of the batches: the writer stores it before the first
/// batch of a new epoch, so each batch of `active_batches` (epoch, base offset, position, as
/// recovery kept them) must carry the epoch it gives that offset. The CRC does not cover the
/// epoch field; this is what catches a flipped bit in it (the scan only sees epochs that go
/// down). A mismatch is damage to written data: the partition stays offline, as for any.
pub(super) async fn load_leader_epochs<D: Disk>(
    disk: &D,
    directory: &Path,
    state: &LogState<D::File>,
    store: bool,
    active_batches: &[(i32, i64, u64)],
) -> Result<LeaderEpochCache, OpenError> {
    let log_end = state.active().next_offset;
    let (mut epochs, mut changed) = match leader_epoch::load(disk, directory).await {
        Ok(LoadedEpochs::Loaded(epochs)) => {
            // Batches starting below the log start may be in epochs the checkpoint dropped
            // when the log start moved past them (they are never served).
            let served = active_batches
                .iter()
                .filter(|(_, base_offset, _)| *base_offset >= state.log_start_offset);
            for &(epoch, base_offset, position) in served {
                let expected = epochs.epoch_at(base_offset);
                if expected != Some(epoch) {
                    return Err(OpenError::Corrupt {
                        path: state.active().path.clone(),
                        position,
                        reason: format!(
                            "the batch at offset {base_offset} carries leader epoch {epoch}, the \
                             leader-epoch checkpoint says {expected:?}"
                        ),
                    });
                }
            }
            (epochs, false)
        }
        Ok(LoadedEpochs::Missing) => (rebuild_leader_epochs(disk, state).await?, true),
        Ok(LoadedEpochs::Damaged(error)) => {
            tracing::warn!(directory = %directory.display(), %error, "leader-epoch checkpoint unusable; rebuilding it from the batches");
            (rebuild_leader_epochs(disk, state).await?, true)
        }
        Err(LeaderEpochIoError::Disk(error)) => return Err(error.into()),
    };
    changed |= epochs.truncate_from_end(log_end);
    changed |= epochs.truncate_from_start(state.log_start_offset);
    if store && changed {
        leader_epoch::store(disk, directory, &epochs)
            .await
            .map_err(|LeaderEpochIoError::Disk(error)| OpenError::Disk(error))?;
    }
    Ok(epochs)
}

/// Walks the batch headers of every segment (one small read per batch) for their leader
/// epochs. Costly on a long log, and done only when the checkpoint file is missing (a log
/// from before replication: once) or damaged.
async fn rebuild_leader_epochs<D: Disk>(
    disk: &D,
    state: &LogState<D::File>,
) -> Result<LeaderEpochCache, OpenError> {
    let mut batches = Vec::new();
    for segment in state.segments.values() {
        let file = state
            .read_file(segment)
            .open_unshared(disk, &segment.path)
            .await?;
        let mut position = SEGMENT_HEADER_BYTES;
        while position < segment.size_bytes {
            let bytes = file.read_at(position, BATCH_HEADER_BYTES).await?;
            // Recovery validated every batch below the segment's size; a header that does
            // not parse here means the file changed under us: stop, keep what was found.
            let Some(header) = recovery::peek_header(&bytes) else {
                break;
            };
            batches.push((header.partition_leader_epoch, header.base_offset));
            position += header.total_bytes() as u64;
        }
    }
    let (epochs, refused) = LeaderEpochCache::from_batches(batches);
    for error in refused {
        tracing::warn!(%error, "a batch's leader epoch was skipped while rebuilding the leader-epoch checkpoint");
    }
    Ok(epochs)
}
