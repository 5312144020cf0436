//! `PartitionLog`: one partition's segments on disk, with group commit and recovery.
//!
//! Owns: the partition directory, its segment files and checkpoint, the in-memory indexes,
//! the high watermark. Does not own: topics, produce validation beyond the batch itself,
//! retention policy (callers decide what to pass to `delete_before`).
//!
//! Writes go through one writer task per partition, which drains every append queued while
//! the previous commit was in flight into one buffer, writes it with one `write`, makes it
//! durable with one `fdatasync`, then acknowledges all of them (group commit). Readers never
//! wait for the writer: they take the segment list under a short lock and read by position,
//! and see only synced bytes: the high watermark is the last synced offset + 1.
//!
//! Where things are: `append.rs` checks a batch on the caller's task and sends it to the
//! writer; `writer.rs` is the writer task (the write in `Writer::commit_part`, the
//! `fdatasync` in `Writer::start_sync`, its result applied in `Writer::finish_sync`); the
//! policy of when to sync and whom to answer is `storage::group_commit::CommitQueue`, which
//! the writer only carries out; `roll.rs` seals segments; `delete.rs` moves the log start; `read.rs` serves reads;
//! `compact.rs` rewrites sealed segments; `open.rs` recovers a log at open; `config.rs` and
//! `error.rs` hold the settings and the errors. The io_uring completion reaper is
//! `storage::disk::uring`'s `reap` task.
//!
//! Invariants:
//! - offsets are dense: each batch's base offset is the previous batch's last offset + 1;
//! - every byte below a segment's `synced_bytes` is durable, and everything readers see is
//!   below it;
//! - the checkpoint's recovery point never passes durable bytes, so recovery may truncate a
//!   bad tail above it and must report anything bad below it;
//! - after a failed `fdatasync` nothing more is appended until the log is reopened: the
//!   kernel may have dropped the dirty pages, so retrying the sync could report success for
//!   data that is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use ledge_protocol::BatchHeader;
use tokio::sync::{mpsc, oneshot, watch};

use super::disk::{Disk, DiskError, DiskFile, OpenMode, descriptors};
use super::index::SegmentIndex;
use super::leader_epoch::LeaderEpochCache;
use super::record_count;
use super::segment::SEGMENT_HEADER_BYTES;
use super::verify::{SegmentCheck, SegmentDamage};
use crate::clock::Clock;

mod append;
mod compact;
mod config;
mod delete;
mod error;
mod open;
mod read;
mod replica_read;
mod roll;
mod snapshot;
mod truncate;
mod writer;

pub use append::{AppendDurability, AppendInput, AppendOutcome, QueuedBatches};
pub use compact::CompactionReport;
pub use config::{
    APPEND_DECODE_LIMITS, BATCH_BYTES_MAX_DEFAULT, COMMIT_BYTES_MAX_DEFAULT, LogConfig,
    LogConfigError, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX,
};
pub use error::{
    AppendBatchesError, AppendError, CompactError, DeleteError, LeaderEpochError, OpenError,
    ProducersError, ReadError, TruncateError,
};
pub(in crate::storage) use open::{remove_segment_files, scan_segment, write_checkpoint};
pub use read::ReadBatches;
use read::known_exists;
pub use replica_read::{BatchDamage, VerifiedRead};
pub(in crate::storage) use snapshot::copy_whole;
pub use snapshot::{PartitionCopy, SNAPSHOT_COPY_CHUNK_BYTES};
#[cfg(test)]
use writer::take_groups_drained;

/// A handle to a partition log; clones share the same log.
pub struct PartitionLog<D: Disk> {
    shared: Arc<Shared<D>>,
    commands: mpsc::Sender<Command>,
}

impl<D: Disk> Clone for PartitionLog<D> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            commands: self.commands.clone(),
        }
    }
}

pub(super) struct Shared<D: Disk> {
    directory: PathBuf,
    /// Changed by `set_config` (topic config changes apply to a live log).
    config: RwLock<LogConfig>,
    state: RwLock<LogState<D::File>>,
    high_watermark: watch::Sender<i64>,
    /// One past the last offset written (not necessarily synced): what readers may see with
    /// `LogConfig::visible_at_write`. Starts at the high watermark when the log opens and is
    /// moved only by the writer, after a write succeeded, so it never covers a torn tail.
    written_end: watch::Sender<i64>,
    /// Signalled when a reader subscribes to the high watermark (it may wait for data that
    /// is written but not yet synced).
    reader_arrived: tokio::sync::Notify,
    disk: D,
    /// One compaction at a time per log.
    compaction: tokio::sync::Mutex<()>,
    /// Wall time of the last compaction that rewrote a segment (since this open).
    last_compaction_ms: std::sync::atomic::AtomicI64,
    /// The largest producer id recovery found in this partition's producer state.
    producer_id_max_recovered: Option<i64>,
    /// Damage the background verifier found in a sealed segment (since this open).
    damage: std::sync::Mutex<Option<SegmentDamage>>,
    /// Orders opening sealed segment files against replacing or removing them. A sealed
    /// file is opened by path after the state lock is released, so without it a reader
    /// could open the file compaction just renamed over the segment (and read it at the
    /// old index's positions) or find it removed by retention. Openers hold it shared from
    /// checking the segment still has their file id until the file is open (an open
    /// descriptor stays valid whatever happens to the path); compaction and retention hold
    /// it exclusively from renaming or removing a sealed file until the state says so.
    sealed_files: tokio::sync::RwLock<()>,
    /// Set by [`PartitionLog::close`] (under `sealed_files`, exclusively) once its sealed
    /// files left the node-wide cache: a sealed file read afterwards is opened for that
    /// read only, so a closed log (a deleted topic's, a removed replica's) never holds a
    /// descriptor beyond the reads in flight.
    closed: std::sync::atomic::AtomicBool,
}

/// How a segment's file is reached. Only the active segment's file stays open (in
/// [`LogState::active_file`]); a sealed one is opened read-only when read, through the
/// process-wide cache of `disk::descriptors`, so descriptors do not grow with segments
/// (issue 11, data item 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SegmentFile {
    /// The active segment: [`LogState::active_file`].
    Active,
    /// A sealed segment, cached under this id.
    Sealed(u64),
}

impl SegmentFile {
    fn sealed() -> Self {
        Self::Sealed(descriptors::new_sealed_file_id())
    }
}

/// A file to read from, taken under the state lock and opened (if sealed) after it.
enum ReadFile<F> {
    Held(Arc<F>),
    Sealed(u64),
}

impl<F: DiskFile> ReadFile<F> {
    /// The file of segment `base`; `None` if it was sealed and has been replaced or
    /// removed since it was taken (look the segment up again).
    async fn open<D: Disk<File = F>>(
        self,
        shared: &Shared<D>,
        base: i64,
    ) -> Result<Option<Arc<F>>, DiskError> {
        match self {
            Self::Held(file) => Ok(Some(file)),
            Self::Sealed(id) => shared.open_sealed_segment(base, id).await,
        }
    }

    /// The file, opened without the gate: only for the task that alone replaces and removes
    /// segments (the writer), or before the log is shared (open), where the id cannot go
    /// stale between the lookup and the open.
    async fn open_unshared<D: Disk<File = F>>(
        self,
        disk: &D,
        path: &Path,
    ) -> Result<Arc<F>, DiskError> {
        match self {
            Self::Held(file) => Ok(file),
            Self::Sealed(id) => descriptors::sealed_file(disk, id, path).await,
        }
    }
}

struct Segment {
    base_offset: i64,
    path: PathBuf,
    file: SegmentFile,
    index: SegmentIndex,
    /// Bytes written, header included.
    size_bytes: u64,
    /// Bytes durable and visible to readers.
    synced_bytes: u64,
    /// The offset after the last written batch.
    next_offset: i64,
    first_append_ms: Option<i64>,
    /// Rewritten by compaction (its header carries `SEGMENT_FLAG_COMPACTED`).
    compacted: bool,
}

struct LogState<F> {
    segments: BTreeMap<i64, Segment>,
    /// The active (last) segment's file, open for the log's life.
    active_file: Arc<F>,
    log_start_offset: i64,
    high_watermark: i64,
    fenced: Option<String>,
    /// Leader epoch -> start offset of the batches in the log (`storage::leader_epoch`),
    /// as stored in its file: changed only after the file says so, before the batches that
    /// need it are written.
    epochs: LeaderEpochCache,
    /// The epoch stamped on the batches this node appends as leader
    /// ([`PartitionLog::set_leader_epoch`]).
    leader_epoch: i32,
    /// Records of the first segment below the log start, which the record count leaves out
    /// (see `record_count`). Set when the log start or the first segment changes.
    records_below_log_start: u64,
    /// Records of written groups not yet below the high watermark, oldest first, as (offset
    /// after the group, its records): counted by the index, not yet readable.
    records_above_high_watermark: std::collections::VecDeque<(i64, u64)>,
}

impl<F> LogState<F> {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a partition log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a partition log always has an active segment")
    }

    /// The segment holding offset `log_start` (the last one starting at or before it), as
    /// the record count needs it, with its file and path.
    fn segment_records_at(
        &self,
        log_start: i64,
    ) -> Option<(record_count::SegmentRecords, ReadFile<F>, PathBuf)> {
        let (_, segment) = self.segments.range(..=log_start).next_back()?;
        Some((
            record_count::SegmentRecords {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                size_bytes: segment.size_bytes,
                record_count: segment.index.record_count(),
            },
            self.read_file(segment),
            segment.path.clone(),
        ))
    }

    /// The file to read `segment` from.
    fn read_file(&self, segment: &Segment) -> ReadFile<F> {
        match segment.file {
            SegmentFile::Active => ReadFile::Held(Arc::clone(&self.active_file)),
            SegmentFile::Sealed(id) => ReadFile::Sealed(id),
        }
    }
}

enum Command {
    /// One append, or the batches of one [`PartitionLog::append_batches`] call: written in
    /// order in one group, so they share one write and one fdatasync.
    Append(Vec<PendingAppend>),
    DeleteBefore {
        offset: i64,
        reply: oneshot::Sender<Result<i64, DeleteError>>,
    },
    Close {
        reply: oneshot::Sender<Result<(), DiskError>>,
    },
    SetLeaderEpoch {
        epoch: i32,
        reply: oneshot::Sender<Result<(), LeaderEpochError>>,
    },
    TruncateTo {
        offset: i64,
        reply: oneshot::Sender<Result<bool, TruncateError>>,
    },
    Producers {
        reply: oneshot::Sender<
            Result<Vec<(i64, crate::storage::producers::ProducerEntry)>, ProducersError>,
        >,
    },
    ReplaceSegment {
        base: i64,
        temporary: PathBuf,
        size: u64,
        index: Box<SegmentIndex>,
        reply: oneshot::Sender<Result<bool, DiskError>>,
    },
}

struct PendingAppend {
    batch: Bytes,
    header: BatchHeader,
    durability: AppendDurability,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    /// Set for the batches of one `append_batches` call, numbered by the writer within the
    /// group it drains: once one of them fails, the rest of its chain is not appended.
    chain: Option<usize>,
    /// A leader's batch copied by a follower ([`PartitionLog::append_as_follower`]): its
    /// base offset and leader epoch are kept, not stamped, and must continue the log.
    follower: bool,
}

impl<D: Disk> Shared<D> {
    /// Opens sealed segment `base`'s file if the segment still has file `id`: `None` if
    /// compaction replaced it or retention removed it since the caller looked it up.
    pub(super) async fn open_sealed_segment(
        &self,
        base: i64,
        id: u64,
    ) -> Result<Option<Arc<D::File>>, DiskError> {
        let _opening = self.sealed_files.read().await;
        let Some(path) = self.sealed_segment_path(base, id) else {
            return Ok(None);
        };
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            // Not cached: the file closes when this read drops it.
            return Ok(Some(Arc::new(self.disk.open(&path, OpenMode::Read).await?)));
        }
        descriptors::sealed_file(&self.disk, id, &path)
            .await
            .map(Some)
    }

    /// Takes this log's sealed files out of the node-wide cache and keeps them out: after
    /// it, only the active file (held while a handle to the log lives) and reads in flight
    /// hold descriptors of this log.
    pub(super) async fn release_sealed_files(&self) {
        let _releasing = self.sealed_files.write().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let ids: Vec<u64> = self
            .read_state()
            .segments
            .values()
            .filter_map(|segment| match segment.file {
                SegmentFile::Sealed(id) => Some(id),
                SegmentFile::Active => None,
            })
            .collect();
        for id in ids {
            descriptors::forget_sealed_file(id);
        }
    }

    /// The path of sealed segment `base` if it still has file `id`.
    pub(super) fn sealed_segment_path(&self, base: i64, id: u64) -> Option<PathBuf> {
        let state = self.read_state();
        state
            .segments
            .get(&base)
            .filter(|segment| segment.file == SegmentFile::Sealed(id))
            .map(|segment| segment.path.clone())
    }

    fn config(&self) -> LogConfig {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, LogState<D::File>> {
        // The lock is never held across an await or a call that can panic on input; a
        // poisoned lock means a bug already reported by its panic.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, LogState<D::File>> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<D: Disk> PartitionLog<D> {
    /// Applies a changed configuration to the live log (for example a topic's
    /// `max.message.bytes` or `segment.bytes` after an AlterConfigs). It takes effect for the
    /// next append and the next roll decision.
    pub fn set_config(&self, config: LogConfig) -> Result<(), LogConfigError> {
        config.validate()?;
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    /// The partition directory.
    pub fn directory(&self) -> &Path {
        &self.shared.directory
    }

    /// One past the last durable offset: what readers may see.
    pub fn high_watermark(&self) -> i64 {
        self.shared.read_state().high_watermark
    }

    /// The first offset readers may see.
    pub fn log_start_offset(&self) -> i64 {
        self.shared.read_state().log_start_offset
    }

    /// Why the log is fenced, if it is.
    pub fn fenced_reason(&self) -> Option<String> {
        self.shared.read_state().fenced.clone()
    }

    /// The end a consumer may read to: the written end with `LogConfig::visible_at_write`,
    /// else the high watermark (the synced end). Never below the high watermark.
    pub fn visible_end(&self) -> i64 {
        let high_watermark = self.high_watermark();
        if self.shared.config().visible_at_write {
            high_watermark.max(*self.shared.written_end.borrow())
        } else {
            high_watermark
        }
    }

    /// Watches [`visible_end`](Self::visible_end) (for long-poll fetches): the written end
    /// with `LogConfig::visible_at_write` (no sync is started for the reader: it sees the
    /// data once written), else the high watermark as
    /// [`subscribe_high_watermark`](Self::subscribe_high_watermark).
    pub fn subscribe_visible_end(&self) -> watch::Receiver<i64> {
        if self.shared.config().visible_at_write {
            self.shared.written_end.subscribe()
        } else {
            self.subscribe_high_watermark()
        }
    }

    /// Watches the high watermark (for long-poll fetches).
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        let receiver = self.shared.high_watermark.subscribe();
        // Wake the writer only for written-but-invisible data: a fetch of a synced log must
        // not cost a writer wake-up. Data written after this check finds the receiver.
        let unsynced = {
            let state = self.shared.read_state();
            state.active().next_offset > state.high_watermark
        };
        if unsynced {
            self.shared.reader_arrived.notify_one();
        }
        receiver
    }

    /// Records from the log start to the high watermark: what a consumer reading the whole
    /// partition would get. Fewer than the offsets between them where compaction or a
    /// produce filter left offsets without records. Kept as the log changes (see
    /// `record_count.rs`); costs no read.
    pub fn record_count(&self) -> u64 {
        let state = self.shared.read_state();
        let written: u64 = state
            .segments
            .values()
            .map(|segment| segment.index.record_count())
            .sum();
        let unsynced: u64 = state
            .records_above_high_watermark
            .iter()
            .filter(|(end, _)| *end > state.high_watermark)
            .map(|(_, records)| records)
            .sum();
        written
            .saturating_sub(state.records_below_log_start)
            .saturating_sub(unsynced)
    }

    /// Number of segments, for tests and metrics.
    pub fn segment_count(&self) -> usize {
        self.shared.read_state().segments.len()
    }

    /// A check of each sealed segment, oldest first, for the background verifier.
    pub fn sealed_segment_checks(&self) -> Vec<SegmentCheck<D>> {
        let state = self.shared.read_state();
        let last = state.segments.len().saturating_sub(1);
        state
            .segments
            .values()
            .take(last)
            .filter_map(|segment| match segment.file {
                SegmentFile::Sealed(id) => Some((segment, id)),
                // Only the last segment is active, and it was left out above.
                SegmentFile::Active => None,
            })
            .map(|(segment, sealed_file_id)| SegmentCheck {
                path: segment.path.clone(),
                log: Arc::downgrade(&self.shared),
                sealed_file_id,
                segment_base: segment.base_offset,
                size: segment.size_bytes,
                end_offset: segment.next_offset,
                compacted: segment.compacted,
                position: SEGMENT_HEADER_BYTES,
                next_offset: segment.base_offset,
                want: 0,
            })
            .collect()
    }

    /// Records damage the verifier found (logged once per segment and position); reads of
    /// the damaged range then fail with it, and `damage` reports it.
    pub fn report_damage(&self, damage: SegmentDamage) {
        let mut current = self
            .shared
            .damage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = current.as_ref().is_some_and(|known| {
            known.segment_base == damage.segment_base && known.position == damage.position
        });
        if !known {
            tracing::error!(
                segment = %damage.path.display(),
                position = damage.position,
                first_offset = damage.first_offset,
                reason = %damage.reason,
                "damage found in a sealed segment; reads from offset {} of this segment fail until it is restored (docs/OPERATIONS.md, \"A damaged partition\")",
                damage.first_offset
            );
        }
        // Keep the oldest damage: it is the one a consumer meets first.
        let replace = current.as_ref().is_none_or(|known| {
            !known_exists(&self.shared.read_state(), known)
                || (damage.segment_base, damage.position) <= (known.segment_base, known.position)
        });
        if replace {
            *current = Some(damage);
        }
    }

    /// Damage the verifier found in a segment that is still part of the log, if any.
    pub fn damage(&self) -> Option<SegmentDamage> {
        let damage = self
            .shared
            .damage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        known_exists(&self.shared.read_state(), &damage).then_some(damage)
    }

    /// Size, offsets and newest timestamp of every segment, oldest first.
    pub fn segment_infos(&self) -> Vec<super::retention::SegmentInfo> {
        let state = self.shared.read_state();
        let last = state.segments.len().saturating_sub(1);
        state
            .segments
            .values()
            .enumerate()
            .map(|(number, segment)| super::retention::SegmentInfo {
                base_offset: segment.base_offset,
                end_offset: segment.next_offset,
                size_bytes: segment.size_bytes,
                max_timestamp_ms: segment.index.max_timestamp_ms(),
                active: number == last,
                compacted: segment.compacted,
            })
            .collect()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.shared
            .read_state()
            .segments
            .values()
            .map(|segment| segment.size_bytes)
            .sum()
    }

    /// Deletes the segments `policy` says are past retention (see `retention::plan`);
    /// returns the new log start offset if anything was deleted.
    pub async fn enforce_retention(
        &self,
        now_ms: i64,
        policy: &super::retention::RetentionPolicy,
    ) -> Result<Option<i64>, DeleteError> {
        let Some((offset, reason)) = super::retention::plan(&self.segment_infos(), now_ms, policy)
        else {
            return Ok(None);
        };
        if offset <= self.log_start_offset() {
            return Ok(None);
        }
        let start = self.delete_before(offset).await?;
        tracing::info!(directory = %self.shared.directory.display(), ?reason, log_start_offset = start, "retention deleted segments");
        Ok(Some(start))
    }

    /// The largest idempotent producer id this partition remembered when it was opened (its
    /// producer snapshot plus the active segment), if any. The broker keeps new producer ids
    /// above it, so a lost `metadata.json` never hands out an id the logs still know.
    pub fn producer_id_max_recovered(&self) -> Option<i64> {
        self.shared.producer_id_max_recovered
    }

    /// When compaction last rewrote a segment (wall ms), if it has since the log was opened.
    pub fn last_compaction_ms(&self) -> Option<i64> {
        let value = self
            .shared
            .last_compaction_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        (value >= 0).then_some(value)
    }

    /// Bytes of sealed segments not yet compacted, and of all sealed segments (the dirty
    /// ratio is the first over the second).
    pub fn compaction_stats(&self) -> (u64, u64) {
        let state = self.shared.read_state();
        let last = state.segments.keys().next_back().copied();
        let sealed = state
            .segments
            .values()
            .filter(|segment| Some(segment.base_offset) != last);
        sealed.fold((0, 0), |(dirty, total), segment| {
            (
                dirty
                    + if segment.compacted {
                        0
                    } else {
                        segment.size_bytes
                    },
                total + segment.size_bytes,
            )
        })
    }

    /// Moves the log start offset up to `offset` (durably) and deletes every sealed
    /// segment that lies wholly below it. Returns the new log start offset.
    pub async fn delete_before(&self, offset: i64) -> Result<i64, DeleteError> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::DeleteBefore { offset, reply })
            .await
            .map_err(|_| DeleteError::Closed)?;
        outcome.await.map_err(|_| DeleteError::Closed)?
    }

    /// The idempotent producers this partition remembers, by id, as of everything written
    /// (Kafka's DescribeProducers): the writer's own table, so a batch being written is
    /// either wholly in it or not at all.
    pub async fn producers(
        &self,
    ) -> Result<Vec<(i64, crate::storage::producers::ProducerEntry)>, ProducersError> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::Producers { reply })
            .await
            .map_err(|_| ProducersError::Closed)?;
        outcome.await.map_err(|_| ProducersError::Closed)?
    }

    /// Reopens a log, typically one fenced by a failed sync: stops its writer, cuts the
    /// active segment back to what was last synced (bytes whose sync failed may be gone
    /// from disk while still in the page cache, so they must never become visible), syncs
    /// that, and runs the full open-time verification again. On error the log stays fenced.
    pub async fn reopen(&self, disk: D, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let _ = self.close().await;
        let (file, synced_bytes) = {
            let state = self.shared.read_state();
            (Arc::clone(&state.active_file), state.active().synced_bytes)
        };
        let cut = match file.set_len(synced_bytes).await {
            Ok(()) => file.sync_data().await,
            Err(error) => Err(error),
        };
        drop(file);
        match cut {
            Ok(()) => {}
            // Nothing can be cut on a read-only filesystem, and nothing can be appended
            // either: reopen for reads only. (Bytes written before the filesystem turned
            // read-only but never synced are then served if they are whole batches: they
            // can no longer be cut, and the kernel still holds them.)
            Err(error) if error.is_read_only() => {
                tracing::warn!(directory = %self.shared.directory.display(), %error, "read-only filesystem: the partition reopens for reads only");
                return Self::open_read_only(
                    disk,
                    &self.shared.directory,
                    self.shared.config().clone(),
                )
                .await;
            }
            Err(error) => return Err(error.into()),
        }
        Self::open(
            disk,
            &self.shared.directory,
            self.shared.config().clone(),
            clock,
        )
        .await
    }

    /// Makes `epoch` the leader epoch stamped on this log's appends from its current end
    /// on, and records it in the leader-epoch checkpoint (durably, before it returns). The
    /// node calls it when it becomes the partition's leader (Kafka assigns the new epoch's
    /// start offset then, so a follower's last epoch from the old leader is placed right).
    pub async fn set_leader_epoch(&self, epoch: i32) -> Result<(), LeaderEpochError> {
        let (reply, outcome) = oneshot::channel();
        self.commands
            .send(Command::SetLeaderEpoch { epoch, reply })
            .await
            .map_err(|_| LeaderEpochError::Closed)?;
        outcome.await.map_err(|_| LeaderEpochError::Closed)?
    }

    /// The leader epoch this log stamps on its appends.
    pub fn leader_epoch(&self) -> i32 {
        self.shared.read_state().leader_epoch
    }

    /// The leader-epoch checkpoint as stored (epoch -> start offset).
    pub fn leader_epochs(&self) -> LeaderEpochCache {
        self.shared.read_state().epochs.clone()
    }

    /// The offset after the last batch written (synced or not): the log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.shared.read_state().active().next_offset
    }

    /// Syncs everything written, records the recovery point and stops the writer. Other
    /// handles fail with `Closed` afterwards. Its sealed segment files leave the node-wide
    /// descriptor cache (a deleted topic's files would otherwise stay open, their space
    /// in use, until evicted or the node restarts); the active segment's file closes when
    /// the last handle is dropped.
    pub async fn close(&self) -> Result<(), DiskError> {
        let (reply, outcome) = oneshot::channel();
        let closed = if self.commands.send(Command::Close { reply }).await.is_err() {
            Ok(())
        } else {
            outcome.await.unwrap_or(Ok(()))
        };
        self.shared.release_sealed_files().await;
        closed
    }
}

#[cfg(test)]
mod read_only_tests;
#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;
