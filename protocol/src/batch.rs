//! The RecordBatch v2 header: parsing, whole-batch validation, in-place stamping, iteration.
//!
//! Owns: the fixed 61-byte header layout, the CRC-32C check, and the rules that make a header
//! consistent with itself. Does not own: the records after the header (`record.rs`) or their
//! decompression (`compression.rs`).
//!
//! Callers: the node's produce path walks a request with [`BatchIter`], checks each batch with
//! [`crate::validate_batch_records`] (which runs [`validate_batch`], then walks the records:
//! a header's `record_count` is only a claim), then stamps it with [`set_base_offset`] and
//! [`set_partition_leader_epoch`]; recovery walks a segment tail with [`BatchIter`] and treats
//! the first error as the end of the valid prefix ([`BatchIter::position`]).
//!
//! Kafka leaves `base_offset` and `partition_leader_epoch` outside the CRC so a broker can
//! assign them without rehashing the batch. That also means a flipped bit there is invisible to
//! the CRC; [`BatchHeader::check_stamp`] is how a reader that knows the expected values catches
//! it.

use std::iter::FusedIterator;

use bytes::{Buf, BufMut, TryGetError};

/// Size of the header that precedes the records of every v2 batch.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Bytes before the part that `batch_length` counts: `base_offset` and `batch_length` itself.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;

/// The smallest legal `batch_length`: a header with no records (Kafka writes such batches when
/// compaction removes every record but producer state must be kept).
pub const BATCH_LENGTH_MIN: i32 = 49;

// A header-only batch is exactly the header, or `total_bytes` and the parser would disagree.
const _: () = assert!(BATCH_LENGTH_PREFIX_BYTES + BATCH_LENGTH_MIN as usize == BATCH_HEADER_BYTES);

/// The `magic` byte of RecordBatch v2, the only format this crate reads or writes.
pub const MAGIC_V2: i8 = 2;

/// `producer_id` of a batch from a producer that is neither idempotent nor transactional.
pub const NO_PRODUCER_ID: i64 = -1;
/// `producer_epoch` when there is no producer id.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `base_sequence` when there is no producer id.
pub const NO_SEQUENCE: i32 = -1;
/// A timestamp field that carries no time.
pub const NO_TIMESTAMP: i64 = -1;
/// `partition_leader_epoch` as producers send it, before a leader stamps its epoch.
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
/// The CRC covers everything from `attributes` to the end of the batch.
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

const ATTRIBUTES_COMPRESSION_MASK: i16 = 0b111;
pub(crate) const ATTRIBUTES_TIMESTAMP_TYPE: i16 = 1 << 3;
pub(crate) const ATTRIBUTES_TRANSACTIONAL: i16 = 1 << 4;
const ATTRIBUTES_CONTROL: i16 = 1 << 5;
const ATTRIBUTES_DELETE_HORIZON: i16 = 1 << 6;

/// Why a batch, or its header, was rejected.
///
/// Every variant is an input error: the batch came from a peer or from disk and is wrong. The
/// reaction is to refuse it (produce) or to stop at it (recovery, fetch); nothing here is
/// worth retrying with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// `last_offset_delta` is negative, or smaller than `record_count - 1` (records need
    /// distinct offsets). Compaction may leave it larger, never smaller. Reject the batch.
    #[error("last offset delta {last_offset_delta} does not fit record count {record_count}")]
    BadLastOffsetDelta {
        /// The stored `last_offset_delta`.
        last_offset_delta: i32,
        /// The stored `record_count`.
        record_count: i32,
    },
    /// `batch_length` is below the 49 bytes of a header-only batch. The framing is broken, so
    /// no later byte can be located either: reject the request, or in recovery treat this as
    /// the end of the valid log.
    #[error("batch length {0} is below the minimum of {BATCH_LENGTH_MIN}")]
    BadLength(i32),
    /// The magic byte is not 2. Older message formats (v0, v1) are not supported; the client
    /// must produce RecordBatch v2 (Kafka 0.11 and later do by default).
    #[error("magic byte {0} is not 2: only RecordBatch v2 is supported")]
    BadMagic(i8),
    /// `record_count` is negative. Reject the batch.
    #[error("record count {0} is negative")]
    BadRecordCount(i32),
    /// The stored base offset is not the one the log assigned here: the batch was misplaced
    /// or the (CRC-less) field was corrupted. Treat the batch as corrupt.
    #[error("base offset {stored} where {expected} was expected")]
    BaseOffsetMismatch {
        /// The base offset in the batch.
        stored: i64,
        /// The base offset the caller expected.
        expected: i64,
    },
    /// The CRC-32C over `attributes..end` does not match the stored one: the bytes were
    /// corrupted after the producer wrote them. Reject, or stop reading at this batch.
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The `crc` field of the batch.
        stored: u32,
        /// The CRC-32C of the bytes actually present.
        computed: u32,
    },
    /// `base_offset + last_offset_delta` does not fit in an `i64`. Reject the batch.
    #[error("base offset {base_offset} plus last offset delta {last_offset_delta} overflows")]
    OffsetOverflow {
        /// The stored `base_offset`.
        base_offset: i64,
        /// The stored `last_offset_delta`.
        last_offset_delta: i32,
    },
    /// The stored partition leader epoch is not the one the caller expected: the batch was
    /// misplaced or the (CRC-less) field was corrupted. Treat the batch as corrupt.
    #[error("partition leader epoch {stored} where {expected} was expected")]
    PartitionLeaderEpochMismatch {
        /// The partition leader epoch in the batch.
        stored: i32,
        /// The partition leader epoch the caller expected.
        expected: i32,
    },
    /// `max_timestamp` is earlier than `base_timestamp` in a create-time batch. Reject it.
    #[error("max timestamp {max_timestamp} is before base timestamp {base_timestamp}")]
    TimestampOrder {
        /// The stored `base_timestamp`.
        base_timestamp: i64,
        /// The stored `max_timestamp`.
        max_timestamp: i64,
    },
    /// The slice holds more bytes than the one batch its header describes. Pass exactly one
    /// batch, or walk the slice with [`BatchIter`].
    #[error("{available} bytes given for one batch of {batch_bytes} bytes")]
    TrailingBytes {
        /// The batch size from its header (`12 + batch_length`).
        batch_bytes: usize,
        /// The bytes given.
        available: usize,
    },
    /// Fewer bytes than the header or the batch needs. At the end of a log or a read buffer
    /// this is a torn or partial batch: read more, or truncate there.
    #[error("truncated batch: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes needed: the 61-byte header, or the whole batch once its length is known.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// The compression code in `attributes` is not one Kafka defines (0 to 4). Reject it.
    #[error("unknown compression code {0}")]
    UnknownCompression(u8),
}

/// The codec of a batch's records, from bits 0-2 of `attributes`. Codes follow Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// Records are stored as they are.
    #[default]
    None,
    /// gzip (RFC 1952) stream.
    Gzip,
    /// Snappy, in xerial framing as Java clients write it; raw snappy is also accepted.
    Snappy,
    /// LZ4 frame format.
    Lz4,
    /// Zstandard frame.
    Zstd,
}

impl Compression {
    /// Every codec, in attribute-bit order (tests and fuzzers walk all of them).
    pub const ALL: [Self; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    /// Reads the codec from a batch's `attributes`.
    pub fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & ATTRIBUTES_COMPRESSION_MASK {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            // The mask keeps the value in 0..=7.
            other => Err(BatchError::UnknownCompression(other as u8)),
        }
    }

    /// The code stored in bits 0-2 of `attributes`.
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

/// What a batch's timestamps mean, from bit 3 of `attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Each record carries the time its producer created it.
    #[default]
    CreateTime,
    /// The broker's append time, stored once as `max_timestamp`; it applies to every record.
    LogAppendTime,
}

impl TimestampType {
    /// Reads the timestamp type from a batch's `attributes`.
    pub fn from_attributes(attributes: i16) -> Self {
        if attributes & ATTRIBUTES_TIMESTAMP_TYPE == 0 {
            Self::CreateTime
        } else {
            Self::LogAppendTime
        }
    }
}

/// The 61-byte header of a RecordBatch v2, field for field as on the wire.
///
/// Kafka's `-1` sentinels ([`NO_PRODUCER_ID`], [`NO_TIMESTAMP`], ...) are kept as they are:
/// this is the wire view. A header from [`BatchHeader::parse`] has `magic == 2` and
/// `batch_length >= 49`; one from [`validate_batch`] also passed every other check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BatchHeader {
    /// Offset of the first record; assigned by the leader, not covered by the CRC.
    pub base_offset: i64,
    /// Bytes after this field to the end of the batch.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch; not covered by the CRC.
    pub partition_leader_epoch: i32,
    /// Format version; always [`MAGIC_V2`] after parsing.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional, control and delete-horizon bits.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp that record timestamp deltas are relative to (the delete horizon when that
    /// attribute is set).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the log append time.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`, which may hold more than one batch.
    ///
    /// Checks only what is needed to find the batch's end: at least 61 bytes, magic 2 and
    /// `batch_length >= 49`. It does not check the CRC or that the whole batch is present; use
    /// [`validate_batch`] for that.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        let header = Self::read(bytes).map_err(|_| BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available: bytes.len(),
        })?;
        if header.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(header.magic));
        }
        if header.batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::BadLength(header.batch_length));
        }
        Ok(header)
    }

    /// The header as its 61 wire bytes.
    pub fn to_bytes(&self) -> [u8; BATCH_HEADER_BYTES] {
        let mut out = [0u8; BATCH_HEADER_BYTES];
        let mut cursor = out.as_mut_slice();
        // The field widths add up to exactly 61 bytes (the layout `read` parses), so no put
        // below can run out of room.
        cursor.put_i64(self.base_offset);
        cursor.put_i32(self.batch_length);
        cursor.put_i32(self.partition_leader_epoch);
        cursor.put_i8(self.magic);
        cursor.put_u32(self.crc);
        cursor.put_i16(self.attributes);
        cursor.put_i32(self.last_offset_delta);
        cursor.put_i64(self.base_timestamp);
        cursor.put_i64(self.max_timestamp);
        cursor.put_i64(self.producer_id);
        cursor.put_i16(self.producer_epoch);
        cursor.put_i32(self.base_sequence);
        cursor.put_i32(self.record_count);
        debug_assert!(cursor.is_empty());
        out
    }

    /// The size of the whole batch: the 12-byte prefix plus `batch_length`.
    ///
    /// A negative `batch_length`, which [`BatchHeader::parse`] never returns, counts as 0.
    pub fn total_bytes(&self) -> usize {
        let batch_length = usize::try_from(self.batch_length).unwrap_or(0);
        BATCH_LENGTH_PREFIX_BYTES.saturating_add(batch_length)
    }

    /// Offset of the last record (`base_offset + last_offset_delta`), saturating at
    /// `i64::MAX`. [`validate_batch`] rejects batches where it would overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The codec of the records; fails for the codes Kafka does not define.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.attributes)
    }

    /// What the timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        TimestampType::from_attributes(self.attributes)
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTES_TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (transaction markers), not user data.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTES_CONTROL != 0
    }

    /// Whether `base_timestamp` holds the compaction delete horizon (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTRIBUTES_DELETE_HORIZON != 0
    }

    /// Checks the two fields the CRC does not cover against what the log expects here.
    ///
    /// Together with [`validate_batch`] this detects any single-bit corruption of a stored
    /// batch: the CRC covers `attributes..end`, the framing checks cover `batch_length` and
    /// `magic`, and this covers the rest.
    pub fn check_stamp(
        &self,
        expected_base_offset: i64,
        expected_partition_leader_epoch: i32,
    ) -> Result<(), BatchError> {
        if self.base_offset != expected_base_offset {
            return Err(BatchError::BaseOffsetMismatch {
                stored: self.base_offset,
                expected: expected_base_offset,
            });
        }
        if self.partition_leader_epoch != expected_partition_leader_epoch {
            return Err(BatchError::PartitionLeaderEpochMismatch {
                stored: self.partition_leader_epoch,
                expected: expected_partition_leader_epoch,
            });
        }
        Ok(())
    }

    fn read(mut bytes: &[u8]) -> Result<Self, TryGetError> {
        Ok(Self {
            base_offset: bytes.try_get_i64()?,
            batch_length: bytes.try_get_i32()?,
            partition_leader_epoch: bytes.try_get_i32()?,
            magic: bytes.try_get_i8()?,
            crc: bytes.try_get_u32()?,
            attributes: bytes.try_get_i16()?,
            last_offset_delta: bytes.try_get_i32()?,
            base_timestamp: bytes.try_get_i64()?,
            max_timestamp: bytes.try_get_i64()?,
            producer_id: bytes.try_get_i64()?,
            producer_epoch: bytes.try_get_i16()?,
            base_sequence: bytes.try_get_i32()?,
            record_count: bytes.try_get_i32()?,
        })
    }

    /// The checks on header fields that need nothing but the header.
    fn check_fields(&self) -> Result<(), BatchError> {
        self.compression()?;
        if self.record_count < 0 {
            return Err(BatchError::BadRecordCount(self.record_count));
        }
        // Offsets within a batch are distinct and ascending, so the last one is at least
        // `record_count - 1` past the first. Compaction removes records but keeps
        // `last_offset_delta` (Kafka needs it for producer state), so it may be larger; an
        // empty batch keeps whatever delta it had.
        let last_offset_delta_min = self.record_count.saturating_sub(1).max(0);
        if self.last_offset_delta < last_offset_delta_min {
            return Err(BatchError::BadLastOffsetDelta {
                last_offset_delta: self.last_offset_delta,
                record_count: self.record_count,
            });
        }
        if self
            .base_offset
            .checked_add(i64::from(self.last_offset_delta))
            .is_none()
        {
            return Err(BatchError::OffsetOverflow {
                base_offset: self.base_offset,
                last_offset_delta: self.last_offset_delta,
            });
        }
        // The order only holds for create time without a delete horizon: a log-append time is
        // the broker's clock, which may trail the producer's, and a delete horizon is a future
        // time written over `base_timestamp` by compaction.
        let timestamps_present =
            self.base_timestamp != NO_TIMESTAMP && self.max_timestamp != NO_TIMESTAMP;
        if timestamps_present
            && self.timestamp_type() == TimestampType::CreateTime
            && !self.has_delete_horizon()
            && self.max_timestamp < self.base_timestamp
        {
            return Err(BatchError::TimestampOrder {
                base_timestamp: self.base_timestamp,
                max_timestamp: self.max_timestamp,
            });
        }
        Ok(())
    }
}

/// Checks that `bytes` is exactly one whole, intact batch and returns its header.
///
/// In order: the header parses ([`BatchHeader::parse`]); its length matches `bytes.len()`; the
/// CRC-32C matches; the compression code is known; `record_count >= 0`; `last_offset_delta >=
/// max(record_count - 1, 0)` (larger is allowed, as compaction leaves it); `base_offset +
/// last_offset_delta` fits an `i64`; and `max_timestamp >= base_timestamp` for create-time
/// batches without a delete horizon where neither is `-1`.
///
/// The records themselves are not parsed (see [`crate::validate_batch_records`], which a
/// broker must use before appending, and [`crate::decode_batch`]), and `base_offset` and
/// `partition_leader_epoch` are not compared with what the log expects (see
/// [`BatchHeader::check_stamp`]).
pub fn validate_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let batch_bytes = header.total_bytes();
    if batch_bytes > bytes.len() {
        return Err(BatchError::Truncated {
            needed: batch_bytes,
            available: bytes.len(),
        });
    }
    if batch_bytes < bytes.len() {
        return Err(BatchError::TrailingBytes {
            batch_bytes,
            available: bytes.len(),
        });
    }
    let computed = crc_of(bytes);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    header.check_fields()?;
    Ok(header)
}

/// Writes `base_offset` into the batch at the start of `batch`.
///
/// The field is outside the CRC, so the batch stays valid. The header is parsed first, so a
/// slice that does not start with a v2 batch header is refused rather than overwritten.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    BatchHeader::parse(batch)?;
    write_field(batch, 0, base_offset.to_be_bytes())
}

/// Writes `partition_leader_epoch` into the batch at the start of `batch`.
///
/// Like [`set_base_offset`], this needs no CRC update.
pub fn set_partition_leader_epoch(
    batch: &mut [u8],
    partition_leader_epoch: i32,
) -> Result<(), BatchError> {
    BatchHeader::parse(batch)?;
    write_field(
        batch,
        PARTITION_LEADER_EPOCH_AT,
        partition_leader_epoch.to_be_bytes(),
    )
}

/// Marks the batch as log-append time with `timestamp` as `max_timestamp`, and updates the CRC.
///
/// This is what a broker does for topics with `message.timestamp.type=LogAppendTime`. Both
/// fields are inside the CRC, so the batch is validated first: recomputing the CRC over
/// corrupted bytes would make them look intact. Returns the updated header.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) -> Result<BatchHeader, BatchError> {
    let mut header = validate_batch(batch)?;
    header.attributes |= ATTRIBUTES_TIMESTAMP_TYPE;
    header.max_timestamp = timestamp;
    write_field(batch, ATTRIBUTES_AT, header.attributes.to_be_bytes())?;
    write_field(batch, MAX_TIMESTAMP_AT, timestamp.to_be_bytes())?;
    header.crc = crc_of(batch);
    write_field(batch, CRC_AT, header.crc.to_be_bytes())?;
    Ok(header)
}

/// Walks consecutive batches in a byte slice, reading only their headers.
///
/// Yields each batch with its parsed header ([`BatchHeader::parse`]: no CRC check; call
/// [`validate_batch`] on the slice for that). Ends cleanly when the bytes end on a batch
/// boundary. A partial batch at the end yields [`BatchError::Truncated`], and any error ends
/// the iteration; [`BatchIter::position`] then says where the last whole batch ended.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Starts at the first byte of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            position: 0,
            failed: false,
        }
    }

    /// Bytes taken by the batches yielded so far: after an error, the offset of the batch
    /// that failed, which is the length of the valid prefix.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.bytes.get(self.position..).unwrap_or_default();
        if rest.is_empty() {
            return None;
        }
        let result = BatchHeader::parse(rest)
            .map_err(|error| match error {
                // Once the length field is readable, say how much the whole batch needs, so
                // a reader knows how far to read.
                BatchError::Truncated { .. } => BatchError::Truncated {
                    needed: peek_total_bytes(rest).unwrap_or(BATCH_HEADER_BYTES),
                    available: rest.len(),
                },
                other => other,
            })
            .and_then(|header| match rest.get(..header.total_bytes()) {
                Some(batch) => Ok((header, batch)),
                None => Err(BatchError::Truncated {
                    needed: header.total_bytes(),
                    available: rest.len(),
                }),
            });
        match &result {
            Ok((_, batch)) => self.position = self.position.saturating_add(batch.len()),
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

impl FusedIterator for BatchIter<'_> {}

/// The CRC-32C of a batch, over `attributes` to the end.
pub(crate) fn crc_of(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default())
}

/// The whole-batch size from a prefix too short to parse, when its length field is sane.
fn peek_total_bytes(bytes: &[u8]) -> Option<usize> {
    let mut length_field = bytes.get(BATCH_LENGTH_AT..BATCH_LENGTH_PREFIX_BYTES)?;
    let batch_length = length_field.try_get_i32().ok()?;
    if batch_length < BATCH_LENGTH_MIN {
        return None;
    }
    if let Some(&magic) = bytes.get(MAGIC_AT)
        && magic as i8 != MAGIC_V2
    {
        return None;
    }
    Some(BATCH_LENGTH_PREFIX_BYTES + usize::try_from(batch_length).ok()?)
}

fn write_field<const N: usize>(
    batch: &mut [u8],
    at: usize,
    value: [u8; N],
) -> Result<(), BatchError> {
    let end = at.saturating_add(N);
    let available = batch.len();
    let field = batch.get_mut(at..end).ok_or(BatchError::Truncated {
        needed: end,
        available,
    })?;
    field.copy_from_slice(&value);
    Ok(())
}

#[cfg(test)]
mod tests;
