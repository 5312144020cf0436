//! The error of each `PartitionLog` operation.

use std::path::PathBuf;

use ledge_protocol::{BatchError, DecodeError};

use super::append::AppendOutcome;
use crate::storage::checkpoint::CheckpointError;
use crate::storage::disk::DiskError;
use crate::storage::segment::SegmentHeaderError;

/// Names the node setting behind a refusal for a limit of [`LogConfig::append_decode_limits`](super::LogConfig::append_decode_limits),
/// so the producer's error says which key an operator would raise.
pub(super) fn append_limit_hint(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::DecompressedTooLarge { .. } => " (log.append_decompressed_bytes_max)",
        DecodeError::TooManyRecords { .. } => " (log.append_records_max)",
        DecodeError::TooManyHeaders { .. } => " (log.append_headers_max)",
        _ => "",
    }
}

/// Why an append failed. Nothing of a failed append is ever visible to readers.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The bytes are not one valid RecordBatch v2 (bad CRC, length, magic...).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch's records do not match its header: fewer or more than `record_count`, or
    /// malformed (lengths past the batch, bad offset deltas, non-UTF-8 header keys), or
    /// over [`LogConfig::append_decode_limits`](super::LogConfig::append_decode_limits). The producer wrote it that way (its CRC is intact), so
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
    /// A leader's batch a follower copies does not continue its log (its base offset is
    /// not the log end, or its leader epoch is below the log's latest): the follower's
    /// position or epochs are out of date; it fetches again from its log end.
    #[error("replicated batch at offset {base_offset} refused: {reason}")]
    NotContinuing {
        /// The batch's base offset.
        base_offset: i64,
        /// What does not line up.
        reason: String,
    },
}

/// Why [`PartitionLog::truncate_to`](super::PartitionLog::truncate_to) failed.
#[derive(Debug, thiserror::Error)]
pub enum TruncateError {
    /// The offset is below the log start: there is nothing to keep; start the log over.
    #[error("cannot truncate to offset {requested}, below the log start {log_start_offset}")]
    BelowLogStart {
        /// The offset asked for.
        requested: i64,
        /// The log start.
        log_start_offset: i64,
    },
    /// The log is fenced; reopen it.
    #[error("partition log is fenced: {reason}")]
    Fenced {
        /// What fenced it.
        reason: String,
    },
    /// A step failed; the log is fenced and opens (after `reopen`) as a prefix of the old
    /// one at least as long as the cut.
    #[error("truncation failed: {0}")]
    Disk(#[source] DiskError),
    /// The files were cut but opening the log again failed.
    #[error("log truncated but not reopened: {0}")]
    Reopen(#[source] Box<OpenError>),
    /// The log was closed.
    #[error("partition log is closed")]
    Closed,
}

/// Why [`PartitionLog::set_leader_epoch`](super::PartitionLog::set_leader_epoch) failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderEpochError {
    /// The epoch is below the one the log stamps already.
    #[error("leader epoch {requested} is below the log's current leader epoch {current}")]
    WentBackwards {
        /// The epoch asked for.
        requested: i32,
        /// The log's current epoch.
        current: i32,
    },
    /// Storing the leader-epoch checkpoint failed; the epoch is not in effect.
    #[error("leader-epoch checkpoint not stored: {0}")]
    Disk(#[source] DiskError),
    /// The log is fenced; reopen it.
    #[error("partition log is fenced: {reason}")]
    Fenced {
        /// What fenced it.
        reason: String,
    },
    /// The log was closed.
    #[error("partition log is closed")]
    Closed,
}

/// Why an [`PartitionLog::append_batches`](super::PartitionLog::append_batches) call stopped: batch `index` failed with `error`;
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

/// Why a partition's producer table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProducersError {
    /// The log was closed (or its writer stopped).
    #[error("partition log is closed")]
    Closed,
    /// A log opened read-only does not rebuild its producer table (nothing is appended).
    #[error("partition log {0} is read-only: its idempotent producers are not loaded")]
    ReadOnly(PathBuf),
}

/// Why a partition log could not be opened. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is inconsistent.
    #[error("invalid log configuration: {0}")]
    Config(super::LogConfigError),
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

/// `DiskError` holds an `io::Error`, which is not `Clone`; one failed write answers many appends.
pub(super) fn copy_disk_error(error: &DiskError) -> DiskError {
    let source = match error.cause.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(error.cause.kind(), error.cause.to_string()),
    };
    DiskError::new(error.operation, &error.path, source)
}
