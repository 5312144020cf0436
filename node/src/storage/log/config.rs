//! `LogConfig`: the limits and policies of one partition log, with their defaults.

use std::time::Duration;

use ledge_protocol::DecodeLimits;

use crate::storage::segment::SEGMENT_HEADER_BYTES;

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
    /// Readers (fetches) see appended data once it is written to the page cache, before the
    /// `fdatasync` that makes it durable (`log.visible_at_write`, default false). A power
    /// loss or kernel crash can then take back records a consumer has already read; a crash
    /// of the node's process alone cannot (the kernel keeps the written pages). Off, readers
    /// see only synced data. Replicated partitions ignore it: their consumers read below the
    /// replicated high watermark.
    pub visible_at_write: bool,
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
/// a batch's records ([`validate_batch_records`](ledge_protocol::validate_batch_records)): at most 64 MiB of decompressed records,
/// 1 Mi records and 1 Mi record headers per batch (the protocol's [`DecodeLimits`] defaults,
/// which readers and compaction use too, so anything appended can be read back; the config
/// may lower them, never raise them). A batch over them is refused with
/// [`AppendError::InvalidRecords`](super::AppendError::InvalidRecords).
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
            visible_at_write: false,
            recovery_checkpoint_interval: Duration::from_secs(5),
            recovery_read_bytes: 4 * 1024 * 1024,
            producers_max: crate::storage::producers::PRODUCERS_MAX_DEFAULT,
            append_decode_limits: APPEND_DECODE_LIMITS,
        }
    }
}

/// Limits of a partition log that do not fit together; each names the keys involved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogConfigError {
    /// `segment.bytes` over [`SEGMENT_BYTES_MAX`].
    #[error("segment.bytes ({segment_bytes}) exceeds the maximum {SEGMENT_BYTES_MAX}")]
    SegmentTooLarge {
        /// The value.
        segment_bytes: u64,
    },
    /// A batch of `max.message.bytes` would not fit in a segment after its header.
    #[error(
        "max.message.bytes ({batch_bytes_max}) must fit in segment.bytes ({segment_bytes}) minus the {SEGMENT_HEADER_BYTES}-byte header"
    )]
    BatchOverSegment {
        /// `max.message.bytes`.
        batch_bytes_max: u64,
        /// `segment.bytes`.
        segment_bytes: u64,
    },
    /// A batch of `max.message.bytes` would not fit in one commit.
    #[error(
        "max.message.bytes ({batch_bytes_max}) must not exceed commit.bytes.max ({commit_bytes_max})"
    )]
    BatchOverCommit {
        /// `max.message.bytes`.
        batch_bytes_max: u64,
        /// `commit.bytes.max`.
        commit_bytes_max: u64,
    },
    /// A size that must be positive is zero.
    #[error("index.interval.bytes, append.queue.depth and recovery.read.bytes must be positive")]
    Zero,
    /// An append decode limit outside 1 and the readers' maximum.
    #[error("{key} must be 1..={max}, got {value}")]
    DecodeLimit {
        /// The key.
        key: &'static str,
        /// The value.
        value: usize,
        /// The maximum readers and compaction decode with.
        max: usize,
    },
}

impl LogConfig {
    /// Checks the relationships between limits; the error names the keys involved.
    pub fn validate(&self) -> Result<(), LogConfigError> {
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LogConfigError::SegmentTooLarge {
                segment_bytes: self.segment_bytes,
            });
        }
        if self.batch_bytes_max + SEGMENT_HEADER_BYTES > self.segment_bytes {
            return Err(LogConfigError::BatchOverSegment {
                batch_bytes_max: self.batch_bytes_max,
                segment_bytes: self.segment_bytes,
            });
        }
        if self.batch_bytes_max > self.commit_bytes_max {
            return Err(LogConfigError::BatchOverCommit {
                batch_bytes_max: self.batch_bytes_max,
                commit_bytes_max: self.commit_bytes_max,
            });
        }
        if self.index_interval_bytes == 0
            || self.append_queue_depth == 0
            || self.recovery_read_bytes == 0
        {
            return Err(LogConfigError::Zero);
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
                return Err(LogConfigError::DecodeLimit { key, value, max });
            }
        }
        Ok(())
    }
}
