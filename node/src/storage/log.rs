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
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ledge_protocol::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, BatchError, BatchHeader, BatchIter, DecodeError,
    DecodeLimits, EncodeOptions, decode_batch, encode_batch_with_deltas, set_base_offset,
    set_partition_leader_epoch, validate_batch, validate_batch_records,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint::{Checkpoint, CheckpointError};
use super::disk::{Disk, DiskError, DiskFile, OpenMode, descriptors};
use super::index::SegmentIndex;
use super::producers::{ProducerStates, SequenceCheck};
use super::record_count;
use super::recovery::{self, PARTITION_LEADER_EPOCH, ScanStop};
use super::segment::{
    self, ActiveSegmentStats, CHECKPOINT_FILE_NAME, PartitionFile, RollPolicy,
    SEGMENT_HEADER_BYTES, SegmentHeaderError,
};
use super::verify::{SegmentCheck, SegmentDamage};
use crate::clock::Clock;

/// Limits and policies of one partition log. Every field has a documented default
/// (docs/OPERATIONS.md); [`LogConfig::validate`] checks how they relate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before one would exceed this many bytes (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll once a segment's first append is this old (`segment.ms`).
    pub segment_age: Duration,
    /// Bytes of log between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// The largest batch accepted (`max.message.bytes`, counted as Kafka does: the whole batch).
    pub batch_bytes_max: u64,
    /// The most bytes one group commit writes with one `write` and one `fdatasync`.
    pub commit_bytes_max: u64,
    /// Appends waiting for the writer before `append` waits for room.
    pub append_queue_depth: usize,
    /// The longest an acknowledged `Written` (acks=1) append stays unsynced.
    pub flush_interval: Duration,
    /// While a reader waits at the end of the log, sync `Written` data at once (overlapped
    /// with later writes) instead of within `flush_interval`, so a tailing consumer sees
    /// acks=1 records after about one `fdatasync` rather than up to `flush_interval`.
    pub sync_for_readers: bool,
    /// How often the recovery point is advanced after syncs.
    pub recovery_checkpoint_interval: Duration,
    /// Bytes read per step when recovery scans a segment.
    pub recovery_read_bytes: usize,
    /// Idempotent producers remembered per partition (least recently active evicted).
    pub producers_max: usize,
    /// What an append may cost to check a batch's records (`log.append_decompressed_bytes_max`,
    /// `log.append_records_max`, `log.append_headers_max`); at most [`APPEND_DECODE_LIMITS`],
    /// which readers use, so anything appended can be read back.
    pub append_decode_limits: DecodeLimits,
}

/// Default of [`LogConfig::segment_bytes`]: small enough to scan quickly at start on an
/// edge box, large enough that a roll (two index files, a directory sync) is rare.
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 * 1024 * 1024;
/// Largest [`LogConfig::segment_bytes`]: index entries hold 32-bit positions.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// Default of [`LogConfig::batch_bytes_max`]: Kafka's `max.message.bytes` default.
pub const BATCH_BYTES_MAX_DEFAULT: u64 = 1_048_588;
/// Default and largest [`LogConfig::append_decode_limits`], what an append may cost to check
/// a batch's records ([`validate_batch_records`]): at most 64 MiB of decompressed records,
/// 1 Mi records and 1 Mi record headers per batch (the protocol's [`DecodeLimits`] defaults,
/// which readers and compaction use too, so anything appended can be read back; the config
/// may lower them, never raise them). A batch over them is refused with
/// [`AppendError::InvalidRecords`].
pub const APPEND_DECODE_LIMITS: DecodeLimits = DecodeLimits {
    decompressed_bytes_max: 64 * 1024 * 1024,
    records_max: 1 << 20,
    headers_max: 1 << 20,
};
/// Default of [`LogConfig::commit_bytes_max`].
pub const COMMIT_BYTES_MAX_DEFAULT: u64 = 8 * 1024 * 1024;

// A batch must fit in one segment, or an append could never be written anywhere.
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT + SEGMENT_HEADER_BYTES <= SEGMENT_BYTES_DEFAULT);
// One group commit must be able to carry the largest batch.
const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= COMMIT_BYTES_MAX_DEFAULT);

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_age: Duration::from_secs(7 * 24 * 3600),
            index_interval_bytes: 4096,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            commit_bytes_max: COMMIT_BYTES_MAX_DEFAULT,
            append_queue_depth: 1024,
            flush_interval: Duration::from_millis(100),
            sync_for_readers: true,
            recovery_checkpoint_interval: Duration::from_secs(5),
            recovery_read_bytes: 4 * 1024 * 1024,
            producers_max: super::producers::PRODUCERS_MAX_DEFAULT,
            append_decode_limits: APPEND_DECODE_LIMITS,
        }
    }
}

impl LogConfig {
    /// Checks the relationships between limits; the error names the keys involved.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(format!(
                "segment.bytes ({}) exceeds the maximum {SEGMENT_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        if self.batch_bytes_max + SEGMENT_HEADER_BYTES > self.segment_bytes {
            return Err(format!(
                "max.message.bytes ({}) must fit in segment.bytes ({}) minus the {SEGMENT_HEADER_BYTES}-byte header",
                self.batch_bytes_max, self.segment_bytes
            ));
        }
        if self.batch_bytes_max > self.commit_bytes_max {
            return Err(format!(
                "max.message.bytes ({}) must not exceed commit.bytes.max ({})",
                self.batch_bytes_max, self.commit_bytes_max
            ));
        }
        if self.index_interval_bytes == 0
            || self.append_queue_depth == 0
            || self.recovery_read_bytes == 0
        {
            return Err(
                "index.interval.bytes, append.queue.depth and recovery.read.bytes must be positive"
                    .into(),
            );
        }
        let limits = &self.append_decode_limits;
        for (key, value, max) in [
            (
                "append_decompressed_bytes_max",
                limits.decompressed_bytes_max,
                APPEND_DECODE_LIMITS.decompressed_bytes_max,
            ),
            (
                "append_records_max",
                limits.records_max,
                APPEND_DECODE_LIMITS.records_max,
            ),
            (
                "append_headers_max",
                limits.headers_max,
                APPEND_DECODE_LIMITS.headers_max,
            ),
        ] {
            // Above the maximum, a batch could be appended that readers and compaction (which
            // decode with the maximum) could not open.
            if value == 0 || value > max {
                return Err(format!("{key} must be 1..={max}, got {value}"));
            }
        }
        Ok(())
    }
}

/// Names the node setting behind a refusal for a limit of [`LogConfig::append_decode_limits`],
/// so the producer's error says which key an operator would raise.
fn append_limit_hint(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::DecompressedTooLarge { .. } => " (log.append_decompressed_bytes_max)",
        DecodeError::TooManyRecords { .. } => " (log.append_records_max)",
        DecodeError::TooManyHeaders { .. } => " (log.append_headers_max)",
        _ => "",
    }
}

/// How durable an append must be before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendDurability {
    /// Written to the file (page cache); synced within `flush_interval` (Kafka acks=1).
    Written,
    /// Synced with `fdatasync` (Kafka acks=all).
    Synced,
}

/// Offsets the broker stamped on an appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// Why an append failed. Nothing of a failed append is ever visible to readers.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The bytes are not one valid RecordBatch v2 (bad CRC, length, magic...).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch's records do not match its header: fewer or more than `record_count`, or
    /// malformed (lengths past the batch, bad offset deltas, non-UTF-8 header keys), or
    /// over [`LogConfig::append_decode_limits`]. The producer wrote it that way (its CRC is intact), so
    /// a retry with the same bytes fails the same way.
    #[error("invalid records in batch: {0}{hint}", hint = append_limit_hint(.0))]
    InvalidRecords(#[source] DecodeError),
    /// The batch is over `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    BatchTooLarge {
        /// The batch's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The write failed (e.g. disk full); the log rolled it back and stays writable.
    #[error("append failed, log unchanged: {0}")]
    Disk(#[source] DiskError),
    /// An idempotent producer's batch does not continue its sequence (a gap or reordering).
    #[error("out of order sequence number: expected {expected}, received {received}")]
    OutOfOrderSequence {
        /// The sequence the batch had to start at.
        expected: i32,
        /// The sequence it started at.
        received: i32,
    },
    /// The producer id is unknown here and the batch does not start at sequence 0: the
    /// producer must start over with a new id.
    #[error("unknown producer id: its first batch here starts at sequence {received}, not 0")]
    UnknownProducer {
        /// The sequence the batch started at.
        received: i32,
    },
    /// The producer's epoch is older than the one this partition has seen.
    #[error("producer epoch {received} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The current epoch.
        current: i16,
        /// The batch's epoch.
        received: i16,
    },
    /// The log is fenced after a failed sync or write; reopen it to verify and continue.
    #[error("partition log is fenced: {reason}")]
    Fenced {
        /// What fenced it.
        reason: String,
    },
    /// The log was closed.
    #[error("partition log is closed")]
    Closed,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The offset is below the log start or above the high watermark.
    #[error("offset {requested} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The first readable offset.
        log_start_offset: i64,
        /// One past the last readable offset.
        high_watermark: i64,
    },
    /// Reading the segment failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The bytes on disk are not valid batches where the index says they should be.
    #[error("segment {path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// File position.
        position: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Why a compaction failed; the log is unchanged by a failed pass.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading or writing failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A sealed segment does not hold valid batches.
    #[error("segment {path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// File position.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// One segment's keys alone exceed the key map.
    #[error(
        "the keys of segment {path} need {needed} bytes, more than compaction.key_map_bytes_max ({max})"
    )]
    KeyMapTooSmall {
        /// The segment.
        path: PathBuf,
        /// Bytes its keys need.
        needed: usize,
        /// The limit.
        max: usize,
    },
    /// The log was closed.
    #[error("partition log is closed")]
    Closed,
}

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

/// Why `delete_before` failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Records at or above the high watermark cannot be deleted.
    #[error("cannot delete before offset {requested}: the high watermark is {high_watermark}")]
    BeyondHighWatermark {
        /// The offset asked for.
        requested: i64,
        /// The current high watermark.
        high_watermark: i64,
    },
    /// Writing the checkpoint or removing files failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The log is fenced.
    #[error("partition log is fenced: {reason}")]
    Fenced {
        /// What fenced it.
        reason: String,
    },
    /// The log was closed.
    #[error("partition log is closed")]
    Closed,
}

/// Why a partition log could not be opened. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is inconsistent.
    #[error("invalid log configuration: {0}")]
    Config(String),
    /// An IO operation failed (read-only or full filesystem, permissions, EIO).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A file Ledge does not write is in the partition directory.
    #[error("foreign file in partition directory: {path}")]
    ForeignFile {
        /// The file.
        path: PathBuf,
    },
    /// A segment's header is wrong (not ours, or a newer format).
    #[error("segment {path}: {error}")]
    SegmentHeader {
        /// The segment file.
        path: PathBuf,
        /// What was wrong.
        error: SegmentHeaderError,
    },
    /// The checkpoint cannot be read.
    #[error("checkpoint {path}: {error}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What was wrong.
        error: CheckpointError,
    },
    /// Damage below the recovery point or in a sealed segment: acknowledged data may be
    /// affected, so nothing is truncated and the partition stays offline.
    #[error("segment {path} is corrupt at byte {position}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// File position of the first bad byte range.
        position: u64,
        /// What was wrong.
        reason: String,
    },
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
}

/// One batch of an [`PartitionLog::append_batches`] call: what `append` or
/// `append_with_gaps` takes.
#[derive(Clone, Debug)]
pub struct AppendInput {
    /// One RecordBatch v2.
    pub batch: Bytes,
    /// True for a batch the node rewrote (see [`PartitionLog::append_with_gaps`]).
    pub gaps_allowed: bool,
}

/// Why an [`PartitionLog::append_batches`] call stopped: batch `index` failed with `error`;
/// the batches before it were appended (`appended`, as durable as the call asked), none
/// after it was.
#[derive(Debug, thiserror::Error)]
#[error("batch {index} of {count} not appended: {error}")]
pub struct AppendBatchesError {
    /// The position of the failed batch in the call's list.
    pub index: usize,
    /// How many batches the call had.
    pub count: usize,
    /// Why it failed.
    #[source]
    pub error: AppendError,
    /// The outcomes of the batches before it, in order.
    pub appended: Vec<AppendOutcome>,
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
        descriptors::sealed_file(&self.disk, id, &path)
            .await
            .map(Some)
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
            reader_arrived: tokio::sync::Notify::new(),
            disk: disk.clone(),
            compaction: tokio::sync::Mutex::new(()),
            last_compaction_ms: std::sync::atomic::AtomicI64::new(-1),
            producer_id_max_recovered: opened.producers.producer_id_max(),
            damage: std::sync::Mutex::new(None),
            sealed_files: tokio::sync::RwLock::new(()),
        });
        let (commands, receiver) = mpsc::channel(config.append_queue_depth);
        let writer = Writer {
            disk,
            shared: Arc::clone(&shared),
            clock,
            checkpoint_file: opened.checkpoint_file,
            checkpoint: opened.checkpoint,
            last_checkpoint: None,
            unsynced_since: None,
            producers: opened.producers,
            sync_in_flight: None,
            waiting: Vec::new(),
        };
        tokio::spawn(writer.run(receiver));
        Ok(Self { shared, commands })
    }

    /// Applies a changed configuration to the live log (for example a topic's
    /// `max.message.bytes` or `segment.bytes` after an AlterConfigs). It takes effect for the
    /// next append and the next roll decision.
    pub fn set_config(&self, config: LogConfig) -> Result<(), String> {
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

    /// Appends one RecordBatch v2 and returns the offsets the log stamped on it.
    ///
    /// The batch's CRC, framing and records (their count and layout, not their contents)
    /// are checked here, on the caller's task, so the writer only copies and writes. Its base offset and partition leader epoch are overwritten
    /// (the CRC does not cover them).
    pub async fn append(
        &self,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_spanning(batch, durability, false).await
    }

    /// [`append`](Self::append) for a batch the node rewrote (a produce filter dropped
    /// records): it may hold fewer records than its offset span, even none, and still
    /// takes the whole span, so a producer's sequence numbers keep lining up.
    pub async fn append_with_gaps(
        &self,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_spanning(batch, durability, true).await
    }

    async fn append_spanning(
        &self,
        batch: Bytes,
        durability: AppendDurability,
        gaps_allowed: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let (max, limits) = self.append_limits();
        let header = validate_append(&batch, gaps_allowed, max, &limits)?;
        self.refuse_if_fenced()?;
        let (reply, outcome) = oneshot::channel();
        let pending = PendingAppend {
            batch,
            header,
            durability,
            reply,
            chain: None,
        };
        self.commands
            .send(Command::Append(vec![pending]))
            .await
            .map_err(|_| AppendError::Closed)?;
        outcome.await.map_err(|_| AppendError::Closed)?
    }

    /// Appends `batches` in order as one group: they share one write and one fdatasync
    /// (one wait for the durability of the last), where `append` per batch would wait for
    /// each in turn. Each batch is checked here, on the caller's task, as `append` checks
    /// it. If one fails (its checks, its producer sequence, a fence), none after it is
    /// appended, and the error names it and holds the outcomes of those before it.
    pub async fn append_batches(
        &self,
        batches: Vec<AppendInput>,
        durability: AppendDurability,
    ) -> Result<Vec<AppendOutcome>, AppendBatchesError> {
        let count = batches.len();
        let fail = |index, error, appended| AppendBatchesError {
            index,
            count,
            error,
            appended,
        };
        let (max, limits) = self.append_limits();
        let mut pending = Vec::with_capacity(count);
        let mut outcomes = Vec::with_capacity(count);
        // The first batch that fails its checks, if any: those before it are still appended.
        let mut invalid = None;
        for (index, input) in batches.into_iter().enumerate() {
            match validate_append(&input.batch, input.gaps_allowed, max, &limits) {
                Ok(header) => {
                    let (reply, outcome) = oneshot::channel();
                    pending.push(PendingAppend {
                        batch: input.batch,
                        header,
                        durability,
                        reply,
                        chain: Some(0),
                    });
                    outcomes.push(outcome);
                }
                Err(error) => {
                    invalid = Some((index, error));
                    break;
                }
            }
        }
        if !pending.is_empty() {
            if let Err(error) = self.refuse_if_fenced() {
                return Err(fail(0, error, Vec::new()));
            }
            if self.commands.send(Command::Append(pending)).await.is_err() {
                return Err(fail(0, AppendError::Closed, Vec::new()));
            }
        }
        let mut appended = Vec::with_capacity(outcomes.len());
        for (index, outcome) in outcomes.into_iter().enumerate() {
            // Answers come in order; the writer drops those after a failure unanswered.
            match outcome.await {
                Ok(Ok(done)) => appended.push(done),
                Ok(Err(error)) => return Err(fail(index, error, appended)),
                Err(_) => return Err(fail(index, AppendError::Closed, appended)),
            }
        }
        match invalid {
            Some((index, error)) => Err(fail(index, error, appended)),
            None => Ok(appended),
        }
    }

    /// The batch size limit and decode limits of the current configuration.
    fn append_limits(&self) -> (u64, DecodeLimits) {
        let config = self
            .shared
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (config.batch_bytes_max, config.append_decode_limits.clone())
    }

    fn refuse_if_fenced(&self) -> Result<(), AppendError> {
        match &self.shared.read_state().fenced {
            Some(reason) => Err(AppendError::Fenced {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
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

    /// Reads whole batches starting with the one that contains `from_offset`, up to
    /// `max_bytes` (at least one whole batch if any is available, as Kafka does, so a
    /// consumer always progresses). Reads stay within one segment.
    pub async fn read(&self, from_offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
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
                if from_offset < state.log_start_offset || from_offset > state.high_watermark {
                    return Err(ReadError::OffsetOutOfRange {
                        requested: from_offset,
                        log_start_offset: state.log_start_offset,
                        high_watermark: state.high_watermark,
                    });
                }
                let empty = ReadBatches {
                    bytes: Bytes::new(),
                    high_watermark: state.high_watermark,
                    log_start_offset: state.log_start_offset,
                };
                if from_offset == state.high_watermark {
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
                    segment.synced_bytes,
                    segment.next_offset,
                    state.high_watermark,
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

    /// Compacts the sealed segments (never the active one): keeps the latest record per key,
    /// removes tombstones older than `delete.retention.ms`, keeps every surviving record's
    /// offset. Each rewritten segment replaces the old one atomically (see `replace_segment`).
    /// Memory: the key map (bounded by `policy.key_map_bytes_max`) plus one segment.
    pub async fn compact(
        &self,
        now_ms: i64,
        policy: &super::compaction::CompactionPolicy,
    ) -> Result<CompactionReport, CompactError> {
        use super::compaction::KeyMap;
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
    async fn segment_batches(
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

    async fn rewrite_segment(
        &self,
        base: i64,
        map: &super::compaction::KeyMap,
        now_ms: i64,
        policy: &super::compaction::CompactionPolicy,
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
                if super::compaction::keep_record(
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
                    partition_leader_epoch: PARTITION_LEADER_EPOCH,
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

    /// Syncs everything written, records the recovery point and stops the writer. Other
    /// handles fail with `Closed` afterwards.
    pub async fn close(&self) -> Result<(), DiskError> {
        let (reply, outcome) = oneshot::channel();
        if self.commands.send(Command::Close { reply }).await.is_err() {
            return Ok(());
        }
        outcome.await.unwrap_or(Ok(()))
    }
}

/// Checks one batch for append on the caller's task: its size, CRC, framing and records
/// (their count and layout, not their contents), and that it covers exactly its records
/// unless `gaps_allowed`. The writer then only copies and stamps it.
fn validate_append(
    batch: &Bytes,
    gaps_allowed: bool,
    max: u64,
    limits: &DecodeLimits,
) -> Result<BatchHeader, AppendError> {
    let size = batch.len() as u64;
    if size > max {
        return Err(AppendError::BatchTooLarge { size, max });
    }
    let header = validate_batch_records(batch, limits).map_err(|error| {
        match error {
            // Header, framing and CRC errors keep their own variant (a damaged batch).
            DecodeError::Batch(error) => AppendError::InvalidBatch(error),
            other => AppendError::InvalidRecords(other),
        }
    })?;
    // A producer's batch covers exactly its records: a larger last offset delta (legal
    // only after compaction) would let a client burn offsets without writing records.
    let exact = header.record_count >= 1 && header.last_offset_delta == header.record_count - 1;
    if !exact && !gaps_allowed {
        return Err(AppendError::InvalidBatch(BatchError::BadLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        }));
    }
    Ok(header)
}

/// Reads whole batches from one segment: skips batches that end before `from_offset`,
/// then takes batches while they fit in `max_bytes` (always the first one whole). The
/// result is a slice of the read buffer, not a copy.
async fn read_batches<F: DiskFile>(
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
fn known_exists<F>(state: &LogState<F>, damage: &SegmentDamage) -> bool {
    state.segments.contains_key(&damage.segment_base)
}

fn damaged_range(damage: &SegmentDamage) -> ReadError {
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

/// `DiskError` holds an `io::Error`, which is not `Clone`; one failed write answers many appends.
fn copy_disk_error(error: &DiskError) -> DiskError {
    let source = match error.cause.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(error.cause.kind(), error.cause.to_string()),
    };
    DiskError::new(error.operation, &error.path, source)
}

// ---------------------------------------------------------------------------------------
// Opening and recovery.

struct Opened<F> {
    state: LogState<F>,
    checkpoint_file: F,
    checkpoint: Checkpoint,
    producers: ProducerStates,
}

async fn open_files<D: Disk>(
    disk: &D,
    directory: &Path,
    config: &LogConfig,
) -> Result<Opened<D::File>, OpenError> {
    super::disk::create_dir_durable(disk, directory).await?;
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
            Some(PartitionFile::Temporary) => disk.remove_file(&path).await?,
            None => return Err(OpenError::ForeignFile { path }),
        }
    }
    segment_bases.sort_unstable();

    let checkpoint_path = directory.join(CHECKPOINT_FILE_NAME);
    let mut stored = None;
    if has_checkpoint {
        let file = disk.open(&checkpoint_path, OpenMode::ReadWrite).await?;
        let bytes = file
            .read_at(0, super::checkpoint::CHECKPOINT_FILE_BYTES)
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
    Ok(Opened {
        state,
        checkpoint_file,
        checkpoint,
        producers,
    })
}

/// The idempotent-producer state as of the start of the active segment (the last of
/// `segment_bases`): its snapshot if usable, else rebuilt by scanning every sealed segment.
async fn load_producer_states<D: Disk>(
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

pub(super) async fn write_checkpoint<F: DiskFile>(
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

pub(super) async fn remove_segment_files<D: Disk>(
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

/// Creates a segment file with its header, synced; the caller syncs the directory.
async fn create_segment<D: Disk>(
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

async fn check_header<F: DiskFile>(file: &F, path: &Path) -> Result<u32, OpenError> {
    let header = file.read_at(0, SEGMENT_HEADER_BYTES as usize).await?;
    segment::check_segment_header(&header).map_err(|error| OpenError::SegmentHeader {
        path: path.to_path_buf(),
        error,
    })
}

/// Scans a segment from its header to its end, handing each valid batch to `on_batch`.
/// Returns the scan's valid end, next offset and, if it stopped early, where and why.
pub(super) async fn scan_segment<F: DiskFile>(
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
enum TailDamage {
    /// A valid batch (at `resumes_at`, base offset `resumes_offset`) follows the damage.
    BeforeValidBatches {
        resumes_at: u64,
        resumes_offset: i64,
    },
    /// Nothing valid follows, but the damaged batch is whole and shows no lost sector.
    InFinalBatch,
}

/// Damage below the recovery point: synced, acknowledged data. The same error for the
/// writable and the read-only open.
fn below_recovery_point_error(
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
async fn damage_before_valid_batches<F: DiskFile>(
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
async fn lost_write_between<F: DiskFile>(
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
fn tail_damage_error(
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
async fn next_continuing_batch<F: DiskFile>(
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
enum RebuiltIndex {
    /// Written to the index files, so the next open needs no scan.
    WriteFiles,
    /// Kept in memory only: the data directory is read-only.
    KeepInMemory,
}

async fn open_sealed_segment<D: Disk>(
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
                super::index::IndexFileError::OlderVersion(_) => {
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
async fn count_records_below<D: Disk>(
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

async fn read_whole<D: Disk>(disk: &D, path: &Path) -> Result<Option<Vec<u8>>, DiskError> {
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
async fn write_new_file<D: Disk>(disk: &D, path: &Path, bytes: Vec<u8>) -> Result<(), DiskError> {
    match disk.remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(path, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(bytes)).await?;
    file.sync_data().await
}

async fn write_index_files<D: Disk>(
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

async fn recover_active_segment<D: Disk>(
    disk: &D,
    directory: &Path,
    base: i64,
    checkpoint: &Checkpoint,
    config: &LogConfig,
    producers: &mut ProducerStates,
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
            Ok(())
        },
    )
    .await?;
    if valid_end < durable_floor {
        return Err(below_recovery_point_error(
            path,
            problem,
            valid_end,
            next_offset,
            durable_floor,
        ));
    }
    if let Some((position, reason)) = &problem {
        // Above the recovery point a stop may be a torn tail or damage to data that was
        // synced after the last checkpoint (or any data, if the checkpoint is gone). Only
        // an unfinished write may be cut.
        if let Some(damage) = damage_before_valid_batches(
            &file,
            valid_end,
            next_offset,
            file_len,
            config,
            checkpoint.sequence > 0,
        )
        .await?
        {
            return Err(tail_damage_error(
                path,
                *position,
                reason,
                next_offset,
                damage,
            ));
        }
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

// ---------------------------------------------------------------------------------------
// The writer task.

#[cfg(test)]
thread_local! {
    /// The size of every group the writers on this thread drained from their queue, so a
    /// test can prove its concurrent appends formed one group commit (and does not pass by
    /// accident when the scheduler splits them). Tests run each log on a current-thread
    /// runtime, so the writer task runs on the test's own thread.
    static GROUPS_DRAINED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the sizes of the groups drained on this thread since the last call (test-only).
#[cfg(test)]
fn take_groups_drained() -> Vec<usize> {
    GROUPS_DRAINED.with(|groups| std::mem::take(&mut *groups.borrow_mut()))
}

struct Writer<D: Disk> {
    disk: D,
    shared: Arc<Shared<D>>,
    clock: Arc<dyn Clock>,
    checkpoint_file: D::File,
    checkpoint: Checkpoint,
    last_checkpoint: Option<Instant>,
    /// When the oldest unsynced (acks=1) write happened, if any.
    unsynced_since: Option<Instant>,
    /// Idempotent producers' sequences, as of everything written.
    producers: ProducerStates,
    /// The `fdatasync` running while later groups are written, if any.
    sync_in_flight: Option<SyncFuture>,
    /// Written `Synced` (acks=all) batches waiting for a sync that covers them.
    waiting: Vec<Staged>,
}

/// A running sync of the active segment and what it covers once it succeeds.
type SyncFuture = std::pin::Pin<Box<dyn Future<Output = SyncDone> + Send>>;

struct SyncDone {
    result: Result<(), DiskError>,
    segment_base: i64,
    size: u64,
    next_offset: i64,
}

/// What wakes the writer.
enum WriterEvent {
    Synced(SyncDone),
    Command(Option<Command>),
    FlushDue,
    ReaderArrived,
}

/// Completes when the sync in flight does (and clears it); never, if there is none. The
/// sync itself lives in `in_flight`, so dropping this future does not cancel it.
async fn sync_completion(in_flight: &mut Option<SyncFuture>) -> SyncDone {
    match in_flight.as_mut() {
        Some(sync) => {
            let done = sync.await;
            *in_flight = None;
            done
        }
        None => std::future::pending().await,
    }
}

async fn sleep_if_due(clock: &dyn Clock, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => clock.sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Adds the batches of one append command to `group`, numbering a multi-batch chain so a
/// failure in it can stop the rest of it; returns their bytes.
fn add_to_group(
    group: &mut Vec<PendingAppend>,
    batches: Vec<PendingAppend>,
    chains: &mut usize,
) -> u64 {
    let chained = batches.len() > 1;
    let mut bytes = 0;
    for mut pending in batches {
        bytes += pending.batch.len() as u64;
        pending.chain = chained.then_some(*chains);
        group.push(pending);
    }
    if chained {
        *chains += 1;
    }
    bytes
}

/// The chains of a group in which a batch failed: the rest of each is dropped unanswered
/// (its caller stops at the failure).
type BrokenChains = std::collections::HashSet<usize>;

/// Answers a batch that is not appended, and breaks its chain.
fn refuse(
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    chain: Option<usize>,
    error: AppendError,
    broken: &mut BrokenChains,
) {
    if let Some(chain) = chain {
        broken.insert(chain);
    }
    let _ = reply.send(Err(error));
}

/// A batch stamped into the group buffer, waiting for the write and maybe the sync.
struct Staged {
    /// The `append_batches` chain it belongs to, if any.
    chain: Option<usize>,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    outcome: AppendOutcome,
    durability: AppendDurability,
    position: u64,
    max_timestamp_ms: i64,
    bytes: u64,
}

impl<D: Disk> Writer<D> {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let shared = Arc::clone(&self.shared);
        let mut deferred: Option<Command> = None;
        loop {
            let command = match deferred.take() {
                Some(command) => command,
                None => {
                    // With a sync in flight, its completion starts the next one if needed.
                    let flush_due = match (&self.sync_in_flight, self.unsynced_since) {
                        (None, Some(since)) => Some(crate::clock::deadline_after(
                            since,
                            self.shared.config().flush_interval,
                        )),
                        _ => None,
                    };
                    let clock = Arc::clone(&self.clock);
                    let event = tokio::select! {
                        biased;
                        done = sync_completion(&mut self.sync_in_flight) => WriterEvent::Synced(done),
                        command = commands.recv() => WriterEvent::Command(command),
                        () = sleep_if_due(&*clock, flush_due) => WriterEvent::FlushDue,
                        () = shared.reader_arrived.notified() => WriterEvent::ReaderArrived,
                    };
                    match event {
                        WriterEvent::Synced(done) => {
                            self.finish_sync(done).await;
                            self.maybe_start_sync();
                            continue;
                        }
                        WriterEvent::FlushDue => {
                            // A failure fences the log and is logged there; appends then report it.
                            self.start_sync(false);
                            continue;
                        }
                        WriterEvent::ReaderArrived => {
                            self.maybe_start_sync();
                            continue;
                        }
                        WriterEvent::Command(Some(command)) => command,
                        WriterEvent::Command(None) => {
                            let _ = self.shutdown().await;
                            return;
                        }
                    }
                }
            };
            if !matches!(command, Command::Append(_)) {
                // Deletes, segment swaps and close act on files a running sync may cover.
                self.drain_sync().await;
            }
            match command {
                Command::Append(first) => {
                    let mut group = Vec::new();
                    let mut chains = 0;
                    let mut bytes = add_to_group(&mut group, first, &mut chains);
                    while bytes < self.shared.config().commit_bytes_max {
                        match commands.try_recv() {
                            Ok(Command::Append(next)) => {
                                bytes += add_to_group(&mut group, next, &mut chains);
                            }
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    #[cfg(test)]
                    GROUPS_DRAINED.with(|groups| groups.borrow_mut().push(group.len()));
                    self.commit(group).await;
                    self.maybe_start_sync();
                }
                Command::DeleteBefore { offset, reply } => {
                    let _ = reply.send(self.delete_before(offset).await);
                }
                Command::Close { reply } => {
                    let _ = reply.send(self.shutdown().await);
                    return;
                }
                Command::ReplaceSegment {
                    base,
                    temporary,
                    size,
                    index,
                    reply,
                } => {
                    let _ = reply.send(self.replace_segment(base, &temporary, size, *index).await);
                }
            }
        }
    }

    fn fenced(&self) -> Option<String> {
        self.shared.read_state().fenced.clone()
    }

    fn fence(&self, reason: String) {
        tracing::error!(directory = %self.shared.directory.display(), %reason, "partition log fenced");
        self.shared.write_state().fenced = Some(reason);
    }

    /// Writes a group of appends, rolling the segment wherever the roll rule says, between
    /// batches: the group is split into parts that each fit the segment they are written
    /// to, so no segment ever spans more offsets than its index can hold (32-bit relative
    /// offsets) or more bytes than `segment.bytes`, however many batches one drain takes.
    async fn commit(&mut self, group: Vec<PendingAppend>) {
        let mut broken = BrokenChains::new();
        for part in self.split_at_rolls(group) {
            self.commit_part(part, &mut broken).await;
        }
    }

    /// Splits `group` where a roll is due before a batch, as if every batch were written
    /// (a batch the producer check refuses later only makes its part smaller, never too
    /// large). `commit_part` then rolls before each part that needs it.
    fn split_at_rolls(&self, group: Vec<PendingAppend>) -> Vec<Vec<PendingAppend>> {
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

    fn roll_policy(&self) -> RollPolicy {
        let config = self.shared.config();
        RollPolicy {
            segment_bytes: config.segment_bytes,
            segment_age_ms: i64::try_from(config.segment_age.as_millis()).unwrap_or(i64::MAX),
        }
    }

    async fn commit_part(&mut self, group: Vec<PendingAppend>, broken: &mut BrokenChains) {
        // Batches after a failed one of their chain are not appended (nor answered).
        let group: Vec<PendingAppend> = group
            .into_iter()
            .filter(|pending| pending.chain.is_none_or(|chain| !broken.contains(&chain)))
            .collect();
        if let Some(reason) = self.fenced() {
            for pending in group {
                let error = AppendError::Fenced {
                    reason: reason.clone(),
                };
                refuse(pending.reply, pending.chain, error, broken);
            }
            return;
        }
        let total_bytes: u64 = group.iter().map(|pending| pending.batch.len() as u64).sum();
        let record_span: i64 = group
            .iter()
            .map(|pending| i64::from(pending.header.last_offset_delta) + 1)
            .sum();
        let now_ms = self.clock.wall_time_ms();
        let (stats, next_offset) = {
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
        let policy = self.roll_policy();
        if let Some(reason) = segment::roll_reason(
            &stats,
            total_bytes,
            next_offset + record_span - 1,
            now_ms,
            &policy,
        ) {
            tracing::debug!(?reason, directory = %self.shared.directory.display(), "rolling segment");
            if let Err(error) = self.roll().await {
                let reason = format!("segment roll failed: {error}");
                self.fence(reason.clone());
                for pending in group {
                    let error = AppendError::Fenced {
                        reason: reason.clone(),
                    };
                    refuse(pending.reply, pending.chain, error, broken);
                }
                return;
            }
        }

        let (file, start_position, mut next_offset) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                Arc::clone(&state.active_file),
                active.size_bytes,
                active.next_offset,
            )
        };
        let mut buffer = BytesMut::with_capacity(total_bytes as usize);
        let mut staged = Vec::with_capacity(group.len());
        let mut records_written = 0u64;
        let mut undo = Vec::new();
        for pending in group {
            if pending.chain.is_some_and(|chain| broken.contains(&chain)) {
                continue;
            }
            match self.producers.check(&pending.header) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    tracing::debug!(
                        directory = %self.shared.directory.display(),
                        producer_id = pending.header.producer_id,
                        base_sequence = pending.header.base_sequence,
                        base_offset,
                        "duplicate batch from an idempotent producer; answered with its original offsets"
                    );
                    // A retry of a batch already in the log: answer with its offsets once it
                    // is as durable as this request asks (it may still be unsynced).
                    staged.push(Staged {
                        chain: pending.chain,
                        reply: pending.reply,
                        outcome: AppendOutcome {
                            base_offset,
                            last_offset,
                        },
                        durability: pending.durability,
                        position: 0,
                        max_timestamp_ms: pending.header.max_timestamp,
                        bytes: 0,
                    });
                    continue;
                }
                SequenceCheck::OutOfOrder { expected, received } => {
                    let error = AppendError::OutOfOrderSequence { expected, received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
                SequenceCheck::UnknownProducer { received } => {
                    let error = AppendError::UnknownProducer { received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
                SequenceCheck::StaleEpoch { current, received } => {
                    let error = AppendError::InvalidProducerEpoch { current, received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
            }
            let position = start_position + buffer.len() as u64;
            let start = buffer.len();
            buffer.extend_from_slice(&pending.batch);
            let stamped = buffer
                .get_mut(start..)
                .expect("the batch was just appended");
            // The batch was validated on append, so its header is present and stamping
            // cannot fail; the CRC does not cover these two fields.
            let stamp = set_base_offset(stamped, next_offset)
                .and_then(|()| set_partition_leader_epoch(stamped, PARTITION_LEADER_EPOCH));
            if let Err(error) = stamp {
                buffer.truncate(start);
                let error = AppendError::InvalidBatch(error);
                refuse(pending.reply, pending.chain, error, broken);
                continue;
            }
            let last_offset = next_offset + i64::from(pending.header.last_offset_delta);
            if pending.header.producer_id >= 0 {
                let previous = self.producers.record(
                    &pending.header,
                    next_offset,
                    self.shared.config().producers_max,
                );
                undo.push((pending.header.producer_id, previous));
            }
            records_written += record_count::stored_records(&pending.header);
            staged.push(Staged {
                chain: pending.chain,
                reply: pending.reply,
                outcome: AppendOutcome {
                    base_offset: next_offset,
                    last_offset,
                },
                durability: pending.durability,
                position,
                max_timestamp_ms: pending.header.max_timestamp,
                bytes: pending.batch.len() as u64,
            });
            next_offset = last_offset + 1;
        }
        if staged.is_empty() {
            return;
        }
        let written = buffer.len() as u64;
        if written > 0
            && let Err(error) = file.write_at(start_position, buffer.freeze()).await
        {
            // Nothing of this group is in the log: forget its sequences, newest first.
            for (producer_id, previous) in undo.into_iter().rev() {
                self.producers.restore(producer_id, previous);
            }
            // The rollback truncates the file: let a sync of the earlier bytes finish first.
            self.drain_sync().await;
            broken.extend(staged.iter().filter_map(|batch| batch.chain));
            self.fail_write(&*file, start_position, error, staged).await;
            return;
        }
        let indexed = {
            let mut state = self.shared.write_state();
            let active = state.active_mut();
            // The roll rule keeps every batch within what the index holds; should a batch
            // still not fit, the index refuses it rather than panic, and the log is fenced
            // below with the bytes written but never acknowledged or made visible (entries
            // noted before the refusal lie above the high watermark, where no reader looks,
            // and the reopen that clears the fence rebuilds the index from the file).
            let indexed = staged
                .iter()
                .filter(|batch| batch.bytes > 0)
                .try_for_each(|batch| {
                    active.index.note_batch(
                        batch.position,
                        batch.outcome.base_offset,
                        batch.max_timestamp_ms,
                        batch.bytes,
                    )
                });
            if indexed.is_ok() {
                active.index.note_records(records_written);
                active.size_bytes = start_position + written;
                active.next_offset = next_offset;
                if written > 0 {
                    active.first_append_ms.get_or_insert(now_ms);
                }
                // Counted, but readable only once a sync moves the high watermark past them.
                let high_watermark = state.high_watermark;
                let unsynced = &mut state.records_above_high_watermark;
                while unsynced
                    .front()
                    .is_some_and(|(end, _)| *end <= high_watermark)
                {
                    unsynced.pop_front();
                }
                if records_written > 0 {
                    unsynced.push_back((next_offset, records_written));
                }
            }
            indexed
        };
        if let Err(error) = indexed {
            let reason = format!("a written batch does not fit the segment index: {error}");
            self.fence(reason.clone());
            for batch in staged {
                let _ = batch.reply.send(Err(AppendError::Fenced {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        if written > 0 {
            self.unsynced_since.get_or_insert_with(|| self.clock.now());
        }
        for batch in staged {
            if batch.durability == AppendDurability::Written {
                let _ = batch.reply.send(Ok(batch.outcome));
            } else {
                self.waiting.push(batch);
            }
        }
        // A duplicate of a batch synced earlier is answered at once.
        self.release_waiters();
    }

    /// Starts a sync of the active segment unless one is running, the log is fenced, or
    /// (unless `force`) nothing is unsynced. Later groups are written while it runs.
    fn start_sync(&mut self, force: bool) {
        if self.sync_in_flight.is_some() || self.fenced().is_some() {
            return;
        }
        if self.unsynced_since.is_none() && !force {
            return;
        }
        let (file, size, next_offset, segment_base) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                Arc::clone(&state.active_file),
                active.size_bytes,
                active.next_offset,
                active.base_offset,
            )
        };
        // Whatever is written from now on waits for the next sync.
        self.unsynced_since = None;
        self.sync_in_flight = Some(Box::pin(async move {
            SyncDone {
                result: file.sync_data().await,
                segment_base,
                size,
                next_offset,
            }
        }));
    }

    /// Starts a sync when one is needed: acks=all batches wait, or acks=1 data is unsynced
    /// while a reader waits at the end of the log (`sync_for_readers`).
    fn maybe_start_sync(&mut self) {
        if let Some(reason) = self.fenced() {
            self.fail_waiters(&reason);
            return;
        }
        let reader_waits = self.shared.config().sync_for_readers
            && self.shared.high_watermark.receiver_count() > 0;
        if !self.waiting.is_empty() {
            self.start_sync(true);
        } else if reader_waits {
            self.start_sync(false);
        }
    }

    /// Waits for the sync in flight, if any, and applies it.
    async fn drain_sync(&mut self) {
        if let Some(sync) = self.sync_in_flight.take() {
            let done = sync.await;
            self.finish_sync(done).await;
        }
    }

    /// Applies a finished sync: publishes the new high watermark, advances the recovery
    /// checkpoint when due and answers the acks=all batches it covers. A failure fences the
    /// log and fails every waiting batch.
    async fn finish_sync(&mut self, done: SyncDone) {
        if let Err(error) = done.result {
            let reason = format!("fdatasync failed, not retried: {error}");
            self.fence(reason.clone());
            self.fail_waiters(&reason);
            return;
        }
        let high_watermark = {
            let mut state = self.shared.write_state();
            let active = state.active_mut();
            if active.base_offset == done.segment_base {
                active.synced_bytes = active.synced_bytes.max(done.size);
            }
            state.high_watermark = state.high_watermark.max(done.next_offset);
            state.high_watermark
        };
        self.shared.high_watermark.send_replace(high_watermark);
        let now = self.clock.now();
        let due = self.last_checkpoint.is_none_or(|last| {
            now.saturating_duration_since(last) >= self.shared.config().recovery_checkpoint_interval
        });
        if due {
            self.last_checkpoint = Some(now);
            let checkpoint = Checkpoint {
                sequence: self.checkpoint.sequence + 1,
                recovery_segment: done.segment_base,
                recovery_position: done.size,
                ..self.checkpoint
            };
            if let Err(error) = self.store_checkpoint(checkpoint).await {
                let reason = format!("checkpoint write failed: {error}");
                self.fence(reason.clone());
                self.fail_waiters(&reason);
                return;
            }
        }
        self.release_waiters();
    }

    /// Answers the waiting acks=all batches below the high watermark.
    fn release_waiters(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let high_watermark = self.shared.read_state().high_watermark;
        let (durable, still_waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|batch| batch.outcome.last_offset < high_watermark);
        self.waiting = still_waiting;
        for batch in durable {
            let _ = batch.reply.send(Ok(batch.outcome));
        }
    }

    fn fail_waiters(&mut self, reason: &str) {
        for batch in self.waiting.drain(..) {
            let _ = batch.reply.send(Err(AppendError::Fenced {
                reason: reason.to_string(),
            }));
        }
    }

    /// A failed write: ENOSPC is rolled back (truncate to the last good size) and the log
    /// stays writable; anything else, or a failed rollback, fences the log.
    async fn fail_write(
        &mut self,
        file: &D::File,
        start_position: u64,
        error: DiskError,
        staged: Vec<Staged>,
    ) {
        // Out of space, or the filesystem turned read-only under us: the write was refused,
        // so the log is unchanged once the rollback succeeds. If the rollback is refused
        // too (read-only), the log is fenced; its reopen then opens it read-only, so reads
        // go on either way (issue 11, data item 9).
        if error.is_out_of_space() || error.is_read_only() {
            match file.set_len(start_position).await {
                Ok(()) => {
                    tracing::warn!(%error, "append failed for lack of space; rolled back");
                    for batch in staged {
                        let _ = batch
                            .reply
                            .send(Err(AppendError::Disk(copy_disk_error(&error))));
                    }
                    return;
                }
                Err(truncate_error) => {
                    self.fence(format!("{error}; rollback failed: {truncate_error}"));
                }
            }
        } else {
            self.fence(format!("write failed: {error}"));
        }
        let reason = self.fenced().unwrap_or_else(|| error.to_string());
        for batch in staged {
            let _ = batch.reply.send(Err(AppendError::Fenced {
                reason: reason.clone(),
            }));
        }
    }

    /// Syncs the active segment now (after any sync in flight) and publishes the new high
    /// watermark. A failure fences the log; the error is the fence reason.
    async fn sync_active(&mut self) -> Result<(), String> {
        self.drain_sync().await;
        if let Some(reason) = self.fenced() {
            return Err(reason);
        }
        self.start_sync(true);
        self.drain_sync().await;
        match self.fenced() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    async fn store_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), DiskError> {
        write_checkpoint(&self.checkpoint_file, &checkpoint).await?;
        self.checkpoint = checkpoint;
        Ok(())
    }

    /// Seals the active segment (synced, index files written) and starts a new one whose
    /// creation is durable before anything is written to it.
    async fn roll(&mut self) -> Result<(), String> {
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
        self.last_checkpoint = Some(self.clock.now());
        Ok(())
    }

    async fn delete_before(&mut self, offset: i64) -> Result<i64, DeleteError> {
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
        Ok(offset)
    }

    /// Puts a compacted segment in place of the sealed segment `base`. Crash-safe at every
    /// step: the old index files are removed (and that made durable) before the rename, so
    /// no index ever describes the wrong file; the rename replaces the segment atomically;
    /// a leftover `.tmp` is removed at open. Returns false if the segment is gone meanwhile
    /// (deleted by retention) or is not sealed.
    async fn replace_segment(
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

    async fn shutdown(&mut self) -> Result<(), DiskError> {
        if self.fenced().is_some() {
            return Ok(());
        }
        // Force the checkpoint so the next open starts from an exact recovery point.
        self.last_checkpoint = None;
        self.sync_active().await.map_err(|reason| {
            DiskError::new(
                "close",
                &self.shared.directory,
                std::io::Error::other(reason),
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
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
        let shared = Arc::new(Shared {
            directory: directory.to_path_buf(),
            config: RwLock::new(config.clone()),
            state: RwLock::new(state),
            high_watermark,
            reader_arrived: tokio::sync::Notify::new(),
            disk,
            compaction: tokio::sync::Mutex::new(()),
            last_compaction_ms: std::sync::atomic::AtomicI64::new(-1),
            // No producer ids are handed out while the data directory is read-only.
            producer_id_max_recovered: None,
            damage: std::sync::Mutex::new(None),
            sealed_files: tokio::sync::RwLock::new(()),
        });
        let (commands, receiver) = mpsc::channel(config.append_queue_depth);
        tokio::spawn(refuse_writes(directory.to_path_buf(), receiver));
        Ok(Self { shared, commands })
    }
}

/// The error every write to a read-only log answers with.
fn read_only_error(directory: &Path) -> DiskError {
    DiskError::new(
        "write",
        directory,
        std::io::Error::from_raw_os_error(libc::EROFS),
    )
}

/// The writer of a read-only log: answers every command without touching the disk.
async fn refuse_writes(directory: PathBuf, mut commands: mpsc::Receiver<Command>) {
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
            Command::Close { reply } => {
                let _ = reply.send(Ok(()));
                return;
            }
        }
    }
}

/// [`open_files`] without a single write: leftovers are left in place, nothing is
/// truncated, no checkpoint or index file is stored.
async fn open_files_read_only<D: Disk>(
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
            .read_at(0, super::checkpoint::CHECKPOINT_FILE_BYTES)
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
    if valid_end < durable_floor {
        return Err(below_recovery_point_error(
            path,
            problem,
            valid_end,
            next_offset,
            durable_floor,
        ));
    }
    if let Some((position, reason)) = &problem {
        // The normal open's rule (`recover_active_segment`): only an unfinished write may be
        // taken for a torn tail; damage to written data takes the partition offline.
        if let Some(damage) = damage_before_valid_batches(
            &file,
            valid_end,
            next_offset,
            file_len,
            config,
            checkpoint.sequence > 0,
        )
        .await?
        {
            return Err(tail_damage_error(
                path,
                *position,
                reason,
                next_offset,
                damage,
            ));
        }
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
    Ok(state)
}

#[cfg(test)]
mod read_only_tests;
#[cfg(test)]
mod tests;
