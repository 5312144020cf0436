//! Records inside a v2 batch: encoding a batch from records, and decoding one back.
//!
//! Owns: the record layout (length, attributes, timestamp and offset deltas, key, value,
//! headers, all as zigzag varints), the checks that make a record well formed, and
//! [`DecodeLimits`]. Does not own: the batch header and its CRC (`batch.rs`) or the codecs
//! (`compression.rs`).
//!
//! Two ways to read: [`decode_batch`] builds owned [`DecodedRecord`]s whose bytes share the
//! batch buffer when it is uncompressed; [`decompress_records`] plus [`RecordIter`] yields
//! borrowed [`RecordView`]s without allocating per record. Both keep headers in wire order with
//! duplicate keys, which Kafka allows and a map would lose.
//!
//! Nothing read from the input sizes an allocation unchecked: every length is compared with the
//! bytes that remain, decompression stops at `decompressed_bytes_max`, and vectors are sized by
//! the smaller of the claimed count and what the remaining bytes could hold.

use std::borrow::Cow;
use std::fmt;
use std::io;

use bytes::Bytes;

use crate::batch::{
    ATTRIBUTES_TIMESTAMP_TYPE, ATTRIBUTES_TRANSACTIONAL, BATCH_HEADER_BYTES,
    BATCH_LENGTH_PREFIX_BYTES, BatchError, BatchHeader, Compression, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, TimestampType,
    crc_of, validate_batch,
};
use crate::compression::{self, CompressError, DecompressError};
use crate::varint::{self, VarintError};

/// The smallest possible record: seven one-byte fields (length, attributes, timestamp delta,
/// offset delta, key length, value length, header count).
pub(crate) const RECORD_BYTES_MIN: usize = 7;

/// A record to encode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Milliseconds since the Unix epoch, or [`crate::NO_TIMESTAMP`].
    pub timestamp: i64,
    /// The key; `None` is Kafka's null key, distinct from an empty one.
    pub key: Option<Bytes>,
    /// The value; `None` is a tombstone under compaction.
    pub value: Option<Bytes>,
    /// Headers in order; keys may repeat.
    pub headers: Vec<Header>,
}

/// A record header. Keys are UTF-8 (Kafka's Java client requires it) and may repeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// The header key.
    pub key: String,
    /// The header value; `None` is null, distinct from empty.
    pub value: Option<Bytes>,
}

/// How [`encode_batch`] fills the batch header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Codec for the records.
    pub compression: Compression,
    /// Idempotent/transactional producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: i64,
    /// Producer epoch, or [`NO_PRODUCER_EPOCH`].
    pub producer_epoch: i16,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Offset of the first record; producers send 0 and the leader stamps the real one.
    pub base_offset: i64,
    /// Leader epoch; producers send [`NO_PARTITION_LEADER_EPOCH`].
    pub partition_leader_epoch: i32,
    /// With [`TimestampType::LogAppendTime`] readers report `max_timestamp` for every record;
    /// a broker normally sets that with [`crate::set_log_append_time`] instead.
    pub timestamp_type: TimestampType,
    /// Marks the batch as part of a transaction.
    pub transactional: bool,
    /// zstd level for [`Compression::Zstd`].
    pub zstd_level: i32,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            compression: Compression::None,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            base_offset: 0,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            // Level 1: DEPENDENCIES.md measured ~290 MB/s at a 6.2x ratio on JSON-like records,
            // against ~256 MB/s at level 3 for about the same ratio.
            zstd_level: 1,
        }
    }
}

/// Why [`encode_batch`] could not build a batch. All are caused by the records or options
/// given; retrying with the same input fails the same way.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Offset deltas given for a compacted batch are not one per record, ascending, and
    /// within `0..=last_offset_delta`.
    #[error("offset deltas must be one per record, ascending, within 0..=last_offset_delta")]
    BadOffsetDeltas,
    /// The encoded batch would exceed `i32::MAX` bytes. Split the records over more batches.
    #[error("encoded batch of {bytes} bytes exceeds the i32 length field")]
    BatchTooLarge {
        /// Size of the batch as far as it was encoded.
        bytes: usize,
    },
    /// The codec failed (for zstd, possibly an unsupported level).
    #[error("{compression:?} compression failed: {source}")]
    Compression {
        /// The codec that failed.
        compression: Compression,
        /// The codec's error.
        source: io::Error,
    },
    /// This build of `ledge-protocol` has no such codec: its cargo feature (`gzip`, `snappy`,
    /// `lz4`, `zstd`, or all under `compression`) is off. Send uncompressed, or enable it.
    #[error("{compression:?} codec not built in (ledge-protocol built without its feature)")]
    CodecNotBuiltIn {
        /// The codec asked for.
        compression: Compression,
    },
    /// A key, value, header or the record as a whole exceeds `i32::MAX` bytes (or headers in
    /// number). Make it smaller.
    #[error("record {index}: {field} of {bytes} exceeds the i32 length field")]
    FieldTooLarge {
        /// Position of the record in the input.
        index: usize,
        /// The field that is too large.
        field: RecordField,
        /// Its size in bytes (or count, for headers).
        bytes: usize,
    },
    /// A batch holds at least one record. Send nothing instead.
    #[error("a batch needs at least one record")]
    NoRecords,
    /// The record's timestamp minus the first record's does not fit an `i64`.
    #[error("record {index}: timestamp {timestamp} is too far from the first record's")]
    TimestampOutOfRange {
        /// Position of the record in the input.
        index: usize,
        /// Its timestamp.
        timestamp: i64,
    },
    /// More records than `record_count` (an `i32`) can count. Split them.
    #[error("{count} records exceed the i32 record count")]
    TooManyRecords {
        /// Number of records given.
        count: usize,
    },
}

/// Encodes `records` as one RecordBatch v2, compressed per `options`.
///
/// Record `i` gets offset delta `i`. `base_timestamp` is the first record's timestamp, as the
/// Java producer writes it (later deltas may be negative), and `max_timestamp` the largest.
pub fn encode_batch(records: &[Record], options: &EncodeOptions) -> Result<Bytes, EncodeError> {
    let record_count = i32::try_from(records.len()).map_err(|_| EncodeError::TooManyRecords {
        count: records.len(),
    })?;
    let deltas: Vec<i32> = (0..record_count).collect();
    encode_batch_with_deltas(records, &deltas, record_count - 1, options)
}

/// Encodes one batch whose records keep the given offset deltas (ascending, each at most
/// `last_offset_delta`), as log compaction writes them: removed records leave gaps, and the
/// batch still spans its original offsets. `records` and `offset_deltas` pair up by index.
pub fn encode_batch_with_deltas(
    records: &[Record],
    offset_deltas: &[i32],
    last_offset_delta: i32,
    options: &EncodeOptions,
) -> Result<Bytes, EncodeError> {
    let (first, _) = records.split_first().ok_or(EncodeError::NoRecords)?;
    encode_batch_spanning(
        records,
        offset_deltas,
        last_offset_delta,
        first.timestamp,
        options,
    )
}

/// Encodes a batch that keeps its offset span but holds none of its records: what a filter
/// leaves of a batch it dropped whole. Consumers move past `last_offset_delta`, and an
/// idempotent producer's sequence numbers still line up.
pub fn encode_empty_batch(
    last_offset_delta: i32,
    timestamp: i64,
    options: &EncodeOptions,
) -> Result<Bytes, EncodeError> {
    if last_offset_delta < 0 {
        return Err(EncodeError::BadOffsetDeltas);
    }
    encode_batch_spanning(&[], &[], last_offset_delta, timestamp, options)
}

fn encode_batch_spanning(
    records: &[Record],
    offset_deltas: &[i32],
    last_offset_delta: i32,
    base_timestamp: i64,
    options: &EncodeOptions,
) -> Result<Bytes, EncodeError> {
    let record_count = i32::try_from(records.len()).map_err(|_| EncodeError::TooManyRecords {
        count: records.len(),
    })?;
    let ascending = offset_deltas
        .windows(2)
        .all(|pair| pair.first() < pair.get(1));
    let in_range = offset_deltas.first().is_none_or(|first| *first >= 0)
        && offset_deltas
            .last()
            .is_none_or(|last| *last <= last_offset_delta)
        && last_offset_delta >= 0;
    if offset_deltas.len() != records.len() || !ascending || !in_range {
        return Err(EncodeError::BadOffsetDeltas);
    }
    let max_timestamp = records
        .iter()
        .map(|record| record.timestamp)
        .max()
        .unwrap_or(base_timestamp);

    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    if options.compression == Compression::None {
        encode_records(&mut batch, records, offset_deltas, base_timestamp)?;
    } else {
        let mut plain = Vec::new();
        encode_records(&mut plain, records, offset_deltas, base_timestamp)?;
        compression::compress(options.compression, &plain, options.zstd_level, &mut batch)
            .map_err(|error| match error {
                CompressError::Codec(source) => EncodeError::Compression {
                    compression: options.compression,
                    source,
                },
                CompressError::NotBuiltIn => EncodeError::CodecNotBuiltIn {
                    compression: options.compression,
                },
            })?;
    }

    let batch_length = batch
        .len()
        .checked_sub(BATCH_LENGTH_PREFIX_BYTES)
        .and_then(|length| i32::try_from(length).ok())
        .ok_or(EncodeError::BatchTooLarge { bytes: batch.len() })?;
    let mut attributes = i16::from(options.compression.code());
    if options.timestamp_type == TimestampType::LogAppendTime {
        attributes |= ATTRIBUTES_TIMESTAMP_TYPE;
    }
    if options.transactional {
        attributes |= ATTRIBUTES_TRANSACTIONAL;
    }
    let mut header = BatchHeader {
        base_offset: options.base_offset,
        batch_length,
        partition_leader_epoch: options.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: options.producer_id,
        producer_epoch: options.producer_epoch,
        base_sequence: options.base_sequence,
        record_count,
    };
    // The CRC covers header fields too, so write the header, hash, then write it again.
    write_header(&mut batch, &header);
    header.crc = crc_of(&batch);
    write_header(&mut batch, &header);
    Ok(Bytes::from(batch))
}

/// Bounds on what decoding one batch may cost.
///
/// Worst-case memory for [`decode_batch`] is about `decompressed_bytes_max` for the records
/// region, plus roughly 100 bytes per record and 60 per header (plus the header keys' text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed records region accepted from a compressed batch.
    pub decompressed_bytes_max: usize,
    /// Largest `record_count` accepted.
    pub records_max: usize,
    /// Most headers accepted over all records of a batch by [`decode_batch`]. A header costs
    /// 2 bytes on the wire but ~60 in memory, so this bounds the expansion.
    pub headers_max: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            decompressed_bytes_max: 64 * 1024 * 1024,
            // A 1 MiB batch (Kafka's default `message.max.bytes`) of tiny records has ~150k of
            // them; compressed batches can hold more. 1 Mi records is about 100 MiB decoded.
            records_max: 1 << 20,
            headers_max: 1 << 20,
        }
    }
}

/// A record field, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordField {
    /// The record's attributes byte (unused by Kafka).
    Attributes,
    /// The number of headers.
    HeaderCount,
    /// A header key.
    HeaderKey,
    /// A header value.
    HeaderValue,
    /// The record key.
    Key,
    /// The record's length prefix.
    Length,
    /// The offset delta.
    OffsetDelta,
    /// The timestamp delta.
    TimestampDelta,
    /// The record value.
    Value,
}

impl fmt::Display for RecordField {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Attributes => "attributes",
            Self::HeaderCount => "header count",
            Self::HeaderKey => "header key",
            Self::HeaderValue => "header value",
            Self::Key => "key",
            Self::Length => "record length",
            Self::OffsetDelta => "offset delta",
            Self::TimestampDelta => "timestamp delta",
            Self::Value => "value",
        })
    }
}

/// Why one record in a batch is malformed. The batch passed its CRC, so the producer wrote it
/// this way: reject the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A length or count is negative where only `-1` (null) or more is allowed, or `-1` where
    /// null is not allowed (record length, header key, header count).
    #[error("{field} has invalid length {length}")]
    BadLength {
        /// The field.
        field: RecordField,
        /// The length read.
        length: i32,
    },
    /// Offset deltas must ascend and stay within `0..=last_offset_delta`.
    #[error("offset delta {offset_delta} outside {min}..={max}")]
    BadOffsetDelta {
        /// The offset delta read.
        offset_delta: i32,
        /// The smallest allowed: one past the previous record's delta.
        min: i64,
        /// The batch's `last_offset_delta`.
        max: i32,
    },
    /// A header key is not UTF-8.
    #[error("header {header} key is not UTF-8")]
    HeaderKeyNotUtf8 {
        /// Position of the header in the record.
        header: usize,
    },
    /// The fields did not fill exactly the record's declared length.
    #[error("record declares {declared} bytes but its fields take {consumed}")]
    LengthMismatch {
        /// The record length prefix.
        declared: usize,
        /// Bytes its fields used.
        consumed: usize,
    },
    /// A length claims more bytes than remain in the record (or the records region).
    #[error("{field} of {length} bytes overruns the {available} bytes left")]
    LengthOverrun {
        /// The field.
        field: RecordField,
        /// The length read.
        length: usize,
        /// Bytes left.
        available: usize,
    },
    /// `base_timestamp + timestamp_delta` does not fit an `i64`.
    #[error("timestamp delta {timestamp_delta} overflows")]
    TimestampOverflow {
        /// The timestamp delta read.
        timestamp_delta: i64,
    },
    /// The record ends inside a field.
    #[error("record ends inside {field}")]
    Truncated {
        /// The field that was cut.
        field: RecordField,
    },
    /// A varint is longer than 5 bytes (10 for a varlong) or sets bits beyond its width.
    #[error("{field} varint overflows")]
    VarintOverflow {
        /// The field.
        field: RecordField,
    },
}

/// Why a batch could not be decoded. Input errors: reject the batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The batch failed framing, CRC or header checks ([`crate::validate_batch`]).
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The codec rejected the compressed records.
    #[error("corrupt {compression:?} records: {source}")]
    Decompression {
        /// The batch's codec.
        compression: Compression,
        /// The codec's error.
        source: io::Error,
    },
    /// The batch is compressed with a codec this build of `ledge-protocol` lacks (its cargo
    /// feature is off, as in the WASM guest SDK). The batch may be fine; this reader cannot
    /// open it.
    #[error("{compression:?} codec not built in (ledge-protocol built without its feature)")]
    CodecNotBuiltIn {
        /// The batch's codec.
        compression: Compression,
    },
    /// The records decompress to more than `decompressed_bytes_max`. Reject the batch, or
    /// raise the limit if the producer is trusted.
    #[error("{compression:?} records decompress past the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// The batch's codec.
        compression: Compression,
        /// The limit that was reached.
        limit: usize,
    },
    /// The records region ended before `record_count` records.
    #[error("{found} of {record_count} records present")]
    MissingRecords {
        /// The header's `record_count`.
        record_count: usize,
        /// Records actually present.
        found: usize,
    },
    /// One record is malformed.
    #[error("record {index}: {error}")]
    Record {
        /// Position of the record in the batch.
        index: usize,
        /// What is wrong with it.
        error: RecordError,
    },
    /// The batch holds more headers than `headers_max`.
    #[error("more than {limit} headers in one batch")]
    TooManyHeaders {
        /// The limit that was reached.
        limit: usize,
    },
    /// `record_count` exceeds `records_max`.
    #[error("record count {record_count} exceeds the limit of {limit}")]
    TooManyRecords {
        /// The header's `record_count`.
        record_count: i32,
        /// The limit.
        limit: usize,
    },
    /// Bytes remain after the last record the header counts.
    #[error("{bytes} bytes after the last record")]
    TrailingRecordBytes {
        /// How many.
        bytes: usize,
    },
    /// A create-time record is stamped after the header's `max_timestamp`, so checks of
    /// the header's timestamps would not cover it.
    #[error(
        "record {index}: timestamp {timestamp} is after the batch's max timestamp {max_timestamp}"
    )]
    TimestampAfterBatchMax {
        /// Position of the record in the batch.
        index: usize,
        /// Its timestamp.
        timestamp: i64,
        /// The header's `max_timestamp`.
        max_timestamp: i64,
    },
}

/// A decoded batch: its header and its records in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBatch {
    /// The validated header.
    pub header: BatchHeader,
    /// The records, `record_count` of them.
    pub records: Vec<DecodedRecord>,
}

/// A decoded record with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// `base_offset + offset_delta`.
    pub offset: i64,
    /// `base_timestamp + timestamp_delta`, or `max_timestamp` for log-append-time batches.
    pub timestamp: i64,
    /// The key; `None` is null.
    pub key: Option<Bytes>,
    /// The value; `None` is null.
    pub value: Option<Bytes>,
    /// Headers in wire order, duplicates kept.
    pub headers: Vec<Header>,
}

impl DecodedRecord {
    /// The record without its offset, ready to encode again (a transform's output, say).
    pub fn into_record(self) -> Record {
        Record {
            timestamp: self.timestamp,
            key: self.key,
            value: self.value,
            headers: self.headers,
        }
    }
}

/// Validates `batch` and returns its header with its uncompressed records region.
///
/// The region is borrowed from `batch` when the batch is uncompressed, and decompressed
/// within `limits.decompressed_bytes_max` otherwise. `limits.records_max` is checked against
/// the header's `record_count` before any decompression. Walk the region with [`RecordIter`].
pub fn decompress_records<'a>(
    batch: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(BatchHeader, Cow<'a, [u8]>), DecodeError> {
    let header = validate_batch(batch)?;
    check_record_count(&header, limits)?;
    let region = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let compression = header.compression()?;
    // An empty region is an empty record list under any codec: compaction can empty a batch
    // entirely, and no codec's empty stream is zero bytes.
    if compression == Compression::None || region.is_empty() {
        return Ok((header, Cow::Borrowed(region)));
    }
    let limit = limits.decompressed_bytes_max;
    let records = compression::decompress(compression, region, limit)
        .map_err(|error| decompress_error(error, compression, limit))?;
    Ok((header, Cow::Owned(records)))
}

/// Checks one whole batch, records included, without building any record: what a broker
/// must know before it appends a batch and hands out offsets for it.
///
/// On top of [`crate::validate_batch`] (framing, CRC, header fields) it walks every record
/// with [`RecordIter`]: each record's length and fields lie within the batch, offset deltas
/// ascend up to `last_offset_delta`, header keys are UTF-8, and exactly `record_count` records
/// fill the records region. A compressed batch is walked as it decompresses (gzip, LZ4,
/// zstd: one record in memory at a time; snappy is decompressed whole), within
/// `limits.decompressed_bytes_max`; `record_count` is checked against `limits.records_max`
/// first, and the headers of all records against `limits.headers_max`. It accepts exactly
/// the batches [`decode_batch`] decodes.
///
/// Without this, a few real bytes could claim `record_count = 2^31 - 1` with a matching
/// `last_offset_delta` and take two billion offsets, or carry records no reader can decode.
/// Kafka's broker makes the same check (`LogValidator`, `INVALID_RECORD`/`CORRUPT_MESSAGE`).
/// Keys and values are not copied; the cost is the varint walk (and the decompression).
pub fn validate_batch_records(
    batch: &[u8],
    limits: &DecodeLimits,
) -> Result<BatchHeader, DecodeError> {
    let header = validate_batch(batch)?;
    check_record_count(&header, limits)?;
    let region = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let compression = header.compression()?;
    let limit = limits.decompressed_bytes_max;
    if compression == Compression::None || region.is_empty() {
        walk_records(region, header, limits)?;
        return Ok(header);
    }
    // Streaming codecs are walked as they decompress, so checking a batch holds one record
    // at a time rather than the whole decompressed region.
    let streamed = compression::streaming_reader(compression, region).map_err(|source| {
        DecodeError::Decompression {
            compression,
            source,
        }
    })?;
    match streamed {
        Some(reader) => walk_record_stream(reader, header, compression, limits)?,
        None => {
            let records = compression::decompress(compression, region, limit)
                .map_err(|error| decompress_error(error, compression, limit))?;
            walk_records(&records, header, limits)?;
        }
    }
    Ok(header)
}

/// Walks an uncompressed records region: exactly `record_count` well-formed records, and
/// at most `headers_max` headers in all.
fn walk_records(
    region: &[u8],
    header: BatchHeader,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    let mut headers_total = 0usize;
    // `RecordIter` ends after exactly `record_count` records, with an error if the region
    // holds fewer or more, so a count that lies fails here. Each round consumes at least one
    // byte of the region, so a huge claimed count cannot make the loop long.
    for (index, view) in RecordIter::new(region, header).enumerate() {
        let view = view?;
        check_record_timestamp(&header, index, view.timestamp)?;
        headers_total = headers_total.saturating_add(view.header_count());
        check_headers(headers_total, limits)?;
    }
    Ok(())
}

/// [`walk_records`] over records as a decompressor produces them: the same checks in the
/// same order, holding one record at a time. Reads to the end of the stream (so a codec's
/// trailing checksum is checked) and never past `decompressed_bytes_max + 1` bytes.
fn walk_record_stream(
    reader: impl io::Read,
    header: BatchHeader,
    compression: Compression,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    use io::{BufRead, Read};
    let limit = limits.decompressed_bytes_max;
    let corrupt = |source| DecodeError::Decompression {
        compression,
        source,
    };
    let mut input =
        io::BufReader::new(reader.take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1)));
    let record_count = usize::try_from(header.record_count).unwrap_or(0);
    let mut consumed = 0usize;
    let mut previous_offset_delta = None;
    let mut headers_total = 0usize;
    let mut body = Vec::new();
    let record_error = |index, error| DecodeError::Record { index, error };
    for index in 0..record_count {
        // The length varint, byte by byte: at most 5 bytes, the last without the
        // continuation bit (`varint::read_varint` judges what was read).
        let mut length_bytes = [0u8; 5];
        let mut read = 0usize;
        while read < length_bytes.len() {
            let Some(&byte) = input.fill_buf().map_err(corrupt)?.first() else {
                break;
            };
            input.consume(1);
            if let Some(slot) = length_bytes.get_mut(read) {
                *slot = byte;
            }
            read += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if read == 0 {
            return Err(DecodeError::MissingRecords {
                record_count,
                found: index,
            });
        }
        let mut length_input = length_bytes.get(..read).unwrap_or_default();
        let length = read_varint(&mut length_input, RecordField::Length)
            .map_err(|error| record_error(index, error))?;
        let length = usize::try_from(length).map_err(|_| {
            record_error(
                index,
                RecordError::BadLength {
                    field: RecordField::Length,
                    length,
                },
            )
        })?;
        body.clear();
        // `take` + `read_to_end` grows the buffer with the bytes that really arrive, so a
        // claimed length allocates nothing by itself.
        (&mut input)
            .take(u64::try_from(length).unwrap_or(u64::MAX))
            .read_to_end(&mut body)
            .map_err(corrupt)?;
        consumed = consumed.saturating_add(read).saturating_add(body.len());
        if consumed > limit {
            return Err(DecodeError::DecompressedTooLarge { compression, limit });
        }
        if body.len() < length {
            return Err(record_error(
                index,
                RecordError::LengthOverrun {
                    field: RecordField::Length,
                    length,
                    available: body.len(),
                },
            ));
        }
        let (view, offset_delta) = parse_record_body(&header, previous_offset_delta, &body)
            .map_err(|error| record_error(index, error))?;
        previous_offset_delta = Some(offset_delta);
        check_record_timestamp(&header, index, view.timestamp)?;
        headers_total = headers_total.saturating_add(view.header_count());
        check_headers(headers_total, limits)?;
    }
    let trailing = io::copy(&mut input, &mut io::sink()).map_err(corrupt)?;
    let trailing = usize::try_from(trailing).unwrap_or(usize::MAX);
    if consumed.saturating_add(trailing) > limit {
        return Err(DecodeError::DecompressedTooLarge { compression, limit });
    }
    if trailing > 0 {
        return Err(DecodeError::TrailingRecordBytes { bytes: trailing });
    }
    Ok(())
}

/// The header's max timestamp must bound every record, so the produce-time bounds on it
/// (message.timestamp.after.max.ms) cover them all: a record stamped a century ahead under an
/// honest-looking header would pin time retention once compaction recomputes max_timestamp
/// from the records. (A log-append-time batch reports its max timestamp for every record, so
/// it always passes.) No lower bound: in Kafka's format the base timestamp is the first
/// record's and later deltas may be negative.
fn check_record_timestamp(
    header: &BatchHeader,
    index: usize,
    timestamp: i64,
) -> Result<(), DecodeError> {
    if timestamp > header.max_timestamp {
        return Err(DecodeError::TimestampAfterBatchMax {
            index,
            timestamp,
            max_timestamp: header.max_timestamp,
        });
    }
    Ok(())
}

fn check_headers(headers_total: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if headers_total > limits.headers_max {
        return Err(DecodeError::TooManyHeaders {
            limit: limits.headers_max,
        });
    }
    Ok(())
}

fn check_record_count(header: &BatchHeader, limits: &DecodeLimits) -> Result<(), DecodeError> {
    let record_count = usize::try_from(header.record_count).unwrap_or(0);
    if record_count > limits.records_max {
        return Err(DecodeError::TooManyRecords {
            record_count: header.record_count,
            limit: limits.records_max,
        });
    }
    Ok(())
}

fn decompress_error(error: DecompressError, compression: Compression, limit: usize) -> DecodeError {
    match error {
        DecompressError::TooLarge => DecodeError::DecompressedTooLarge { compression, limit },
        DecompressError::Corrupt(source) => DecodeError::Decompression {
            compression,
            source,
        },
        DecompressError::NotBuiltIn => DecodeError::CodecNotBuiltIn { compression },
    }
}

/// Decodes a whole batch into owned records.
///
/// Checks the batch ([`crate::validate_batch`], CRC included), decompresses within `limits`,
/// then parses every record: lengths within the bytes left, exactly `record_count` records
/// filling the region, offset deltas ascending up to `last_offset_delta`, header keys UTF-8.
/// Keys, values and header values of an uncompressed batch are slices of `batch`, not copies.
pub fn decode_batch(batch: &Bytes, limits: &DecodeLimits) -> Result<DecodedBatch, DecodeError> {
    let (header, region) = decompress_records(batch, limits)?;
    let region = match region {
        Cow::Borrowed(slice) => batch.slice_ref(slice),
        Cow::Owned(vec) => Bytes::from(vec),
    };
    // `record_count` is only a claim; the bytes present bound how many records can exist.
    let capacity = usize::try_from(header.record_count)
        .unwrap_or(0)
        .min(region.len() / RECORD_BYTES_MIN);
    let mut records = Vec::with_capacity(capacity);
    let mut headers_total = 0usize;
    for view in RecordIter::new(&region, header) {
        let view = view?;
        headers_total = headers_total.saturating_add(view.header_count());
        if headers_total > limits.headers_max {
            return Err(DecodeError::TooManyHeaders {
                limit: limits.headers_max,
            });
        }
        // `slice_ref` needs its argument inside `region`; every view slice is cut from it.
        let headers = view
            .headers()
            .map(|header| Header {
                key: header.key.to_owned(),
                value: header.value.map(|value| region.slice_ref(value)),
            })
            .collect();
        records.push(DecodedRecord {
            offset: view.offset,
            timestamp: view.timestamp,
            key: view.key.map(|key| region.slice_ref(key)),
            value: view.value.map(|value| region.slice_ref(value)),
            headers,
        });
    }
    Ok(DecodedBatch { header, records })
}

/// Walks the records of an uncompressed records region (from [`decompress_records`]).
///
/// Yields exactly `header.record_count` records, then an error if bytes remain; any error
/// ends the iteration. Each record is fully checked before it is yielded, headers included,
/// so iterating a [`RecordView`]'s headers cannot fail.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    remaining: &'a [u8],
    header: BatchHeader,
    record_count: usize,
    index: usize,
    previous_offset_delta: Option<i32>,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Iterates `records`, the uncompressed region of the batch whose header is `header`.
    pub fn new(records: &'a [u8], header: BatchHeader) -> Self {
        Self {
            remaining: records,
            header,
            record_count: usize::try_from(header.record_count).unwrap_or(0),
            index: 0,
            previous_offset_delta: None,
            failed: false,
        }
    }

    fn parse_next(&mut self) -> Result<RecordView<'a>, RecordError> {
        let mut input = self.remaining;
        let length = read_varint(&mut input, RecordField::Length)?;
        let length = usize::try_from(length).map_err(|_| RecordError::BadLength {
            field: RecordField::Length,
            length,
        })?;
        let (body, rest) = input
            .split_at_checked(length)
            .ok_or(RecordError::LengthOverrun {
                field: RecordField::Length,
                length,
                available: input.len(),
            })?;
        let (view, offset_delta) =
            parse_record_body(&self.header, self.previous_offset_delta, body)?;
        self.remaining = rest;
        self.previous_offset_delta = Some(offset_delta);
        Ok(view)
    }
}

/// Parses one record's fields, `body` being exactly the bytes its length prefix counts,
/// after a record whose offset delta was `previous_offset_delta`; returns the record and its
/// offset delta.
fn parse_record_body<'b>(
    header: &BatchHeader,
    previous_offset_delta: Option<i32>,
    body: &'b [u8],
) -> Result<(RecordView<'b>, i32), RecordError> {
    let fields = parse_record_fields(body)?;
    let offset_delta = fields.offset_delta;
    let min = previous_offset_delta.map_or(0, |previous| i64::from(previous) + 1);
    if i64::from(offset_delta) < min || offset_delta > header.last_offset_delta {
        return Err(RecordError::BadOffsetDelta {
            offset_delta,
            min,
            max: header.last_offset_delta,
        });
    }
    let timestamp_delta = fields.timestamp_delta;
    let timestamp = match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => header
            .base_timestamp
            .checked_add(timestamp_delta)
            .ok_or(RecordError::TimestampOverflow { timestamp_delta })?,
    };
    // Cannot saturate for a validated header: `validate_batch` checks that
    // `base_offset + last_offset_delta` fits, and the delta is at most that.
    let offset = header.base_offset.saturating_add(i64::from(offset_delta));
    Ok((fields.into_view(offset, timestamp), offset_delta))
}

/// The fields of one record as written, before a batch gives its deltas meaning.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordFields<'b> {
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    key: Option<&'b [u8]>,
    value: Option<&'b [u8]>,
    headers: &'b [u8],
    header_count: usize,
}

impl<'b> RecordFields<'b> {
    /// The record at `offset` and `timestamp`, as its batch computes them from the deltas.
    pub(crate) fn into_view(self, offset: i64, timestamp: i64) -> RecordView<'b> {
        RecordView {
            offset,
            timestamp,
            key: self.key,
            value: self.value,
            headers: self.headers,
            header_count: self.header_count,
        }
    }
}

/// Parses one record's fields, `body` being exactly the bytes its length prefix counts: every
/// length within the bytes there, every header whole with a UTF-8 key, no bytes left over.
/// Shared by Kafka batches (above) and the plug-in ABI's input batch (`wasm_abi.rs`), which
/// give the deltas their meaning.
pub(crate) fn parse_record_fields(body: &[u8]) -> Result<RecordFields<'_>, RecordError> {
    let length = body.len();
    let mut body = body;
    // Record attributes are unused since v2; the byte must still be there.
    let (_attributes, after_attributes) = body.split_first().ok_or(RecordError::Truncated {
        field: RecordField::Attributes,
    })?;
    body = after_attributes;
    let timestamp_delta = read_varlong(&mut body, RecordField::TimestampDelta)?;
    let offset_delta = read_varint(&mut body, RecordField::OffsetDelta)?;
    let key = read_nullable(&mut body, RecordField::Key)?;
    let value = read_nullable(&mut body, RecordField::Value)?;
    let header_count = read_varint(&mut body, RecordField::HeaderCount)?;
    let header_count = usize::try_from(header_count).map_err(|_| RecordError::BadLength {
        field: RecordField::HeaderCount,
        length: header_count,
    })?;
    let headers_start = body;
    // Each header takes at least 2 bytes, so a false count fails on the bytes, not by
    // looping: the loop ends within `body.len() / 2 + 1` rounds.
    for index in 0..header_count {
        read_header(&mut body, index)?;
    }
    let headers_bytes = headers_start.len().saturating_sub(body.len());
    let headers = headers_start.get(..headers_bytes).unwrap_or_default();
    if !body.is_empty() {
        return Err(RecordError::LengthMismatch {
            declared: length,
            consumed: length.saturating_sub(body.len()),
        });
    }
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        header_count,
    })
}

/// Reads one length-prefixed record from the front of `input` and advances it past the
/// record; on error `input` is left as it was.
pub(crate) fn read_record_fields<'b>(
    input: &mut &'b [u8],
) -> Result<RecordFields<'b>, RecordError> {
    let mut rest = *input;
    let length = read_varint(&mut rest, RecordField::Length)?;
    let length = usize::try_from(length).map_err(|_| RecordError::BadLength {
        field: RecordField::Length,
        length,
    })?;
    let (body, rest) = rest
        .split_at_checked(length)
        .ok_or(RecordError::LengthOverrun {
            field: RecordField::Length,
            length,
            available: rest.len(),
        })?;
    let fields = parse_record_fields(body)?;
    *input = rest;
    Ok(fields)
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = if self.index == self.record_count {
            if self.remaining.is_empty() {
                return None;
            }
            Err(DecodeError::TrailingRecordBytes {
                bytes: self.remaining.len(),
            })
        } else if self.remaining.is_empty() {
            Err(DecodeError::MissingRecords {
                record_count: self.record_count,
                found: self.index,
            })
        } else {
            self.parse_next().map_err(|error| DecodeError::Record {
                index: self.index,
                error,
            })
        };
        match result {
            Ok(_) => self.index += 1,
            Err(_) => self.failed = true,
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            return (0, Some(0));
        }
        let left = self.record_count.saturating_sub(self.index);
        // An error, if one comes, is one more item.
        (0, Some(left.saturating_add(1)))
    }
}

impl std::iter::FusedIterator for RecordIter<'_> {}

/// One checked record, borrowing its bytes from the records region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// `base_offset + offset_delta`.
    pub offset: i64,
    /// `base_timestamp + timestamp_delta`, or `max_timestamp` for log-append-time batches.
    pub timestamp: i64,
    /// The key; `None` is null.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is null.
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: usize,
}

impl<'a> RecordView<'a> {
    /// The headers in wire order, duplicates kept.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            remaining: self.headers,
            count: self.header_count,
        }
    }

    /// How many headers the record has.
    pub fn header_count(&self) -> usize {
        self.header_count
    }
}

/// The headers of a [`RecordView`], already checked when the record was read.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    remaining: &'a [u8],
    count: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderView<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.count == 0 {
            return None;
        }
        // `RecordIter` parsed these same bytes with the same function before handing out the
        // view, so this cannot fail; if it somehow did, ending early beats panicking.
        match read_header(&mut self.remaining, 0) {
            Ok(header) => {
                self.count -= 1;
                Some(header)
            }
            Err(_) => {
                self.count = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Exact: every header was checked when the record was read.
        (self.count, Some(self.count))
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

impl std::iter::FusedIterator for HeaderIter<'_> {}

/// A header borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The key, checked to be UTF-8.
    pub key: &'a str,
    /// The value; `None` is null.
    pub value: Option<&'a [u8]>,
}

fn read_header<'a>(input: &mut &'a [u8], header: usize) -> Result<HeaderView<'a>, RecordError> {
    let key_length = read_varint(input, RecordField::HeaderKey)?;
    let key_length = usize::try_from(key_length).map_err(|_| RecordError::BadLength {
        field: RecordField::HeaderKey,
        length: key_length,
    })?;
    let key = take(input, key_length, RecordField::HeaderKey)?;
    let key = std::str::from_utf8(key).map_err(|_| RecordError::HeaderKeyNotUtf8 { header })?;
    let value = read_nullable(input, RecordField::HeaderValue)?;
    Ok(HeaderView { key, value })
}

/// Reads a varint length and that many bytes; `-1` is null.
fn read_nullable<'a>(
    input: &mut &'a [u8],
    field: RecordField,
) -> Result<Option<&'a [u8]>, RecordError> {
    let length = read_varint(input, field)?;
    if length == -1 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| RecordError::BadLength { field, length })?;
    take(input, length, field).map(Some)
}

fn take<'a>(
    input: &mut &'a [u8],
    length: usize,
    field: RecordField,
) -> Result<&'a [u8], RecordError> {
    let (taken, rest) = input
        .split_at_checked(length)
        .ok_or(RecordError::LengthOverrun {
            field,
            length,
            available: input.len(),
        })?;
    *input = rest;
    Ok(taken)
}

fn read_varint(input: &mut &[u8], field: RecordField) -> Result<i32, RecordError> {
    varint::read_varint(input).map_err(|error| varint_error(error, field))
}

fn read_varlong(input: &mut &[u8], field: RecordField) -> Result<i64, RecordError> {
    varint::read_varlong(input).map_err(|error| varint_error(error, field))
}

fn varint_error(error: VarintError, field: RecordField) -> RecordError {
    match error {
        VarintError::Truncated => RecordError::Truncated { field },
        VarintError::Overflow => RecordError::VarintOverflow { field },
    }
}

fn write_header(batch: &mut [u8], header: &BatchHeader) {
    if let Some(slot) = batch.get_mut(..BATCH_HEADER_BYTES) {
        slot.copy_from_slice(&header.to_bytes());
    }
}

fn encode_records(
    out: &mut Vec<u8>,
    records: &[Record],
    offset_deltas: &[i32],
    base_timestamp: i64,
) -> Result<(), EncodeError> {
    for (index, (record, offset_delta)) in records.iter().zip(offset_deltas).enumerate() {
        encode_record(out, record, index, *offset_delta, base_timestamp)?;
    }
    Ok(())
}

fn encode_record(
    out: &mut Vec<u8>,
    record: &Record,
    index: usize,
    offset_delta: i32,
    base_timestamp: i64,
) -> Result<(), EncodeError> {
    let too_large = |field, bytes| EncodeError::FieldTooLarge {
        index,
        field,
        bytes,
    };
    let timestamp_delta =
        record
            .timestamp
            .checked_sub(base_timestamp)
            .ok_or(EncodeError::TimestampOutOfRange {
                index,
                timestamp: record.timestamp,
            })?;
    let key_length = nullable_length(record.key.as_deref())
        .ok_or_else(|| too_large(RecordField::Key, record.key.as_ref().map_or(0, Bytes::len)))?;
    let value_length = nullable_length(record.value.as_deref()).ok_or_else(|| {
        too_large(
            RecordField::Value,
            record.value.as_ref().map_or(0, Bytes::len),
        )
    })?;
    let header_count = i32::try_from(record.headers.len())
        .map_err(|_| too_large(RecordField::HeaderCount, record.headers.len()))?;

    // Sizes first: the length prefix comes before the fields it counts.
    let mut body_bytes = 1usize
        .saturating_add(varint::varlong_len(timestamp_delta))
        .saturating_add(varint::varint_len(offset_delta))
        .saturating_add(nullable_bytes(key_length, record.key.as_deref()))
        .saturating_add(nullable_bytes(value_length, record.value.as_deref()))
        .saturating_add(varint::varint_len(header_count));
    let mut header_lengths = Vec::with_capacity(record.headers.len());
    for header in &record.headers {
        let key_length = i32::try_from(header.key.len())
            .map_err(|_| too_large(RecordField::HeaderKey, header.key.len()))?;
        let value_length = nullable_length(header.value.as_deref()).ok_or_else(|| {
            too_large(
                RecordField::HeaderValue,
                header.value.as_ref().map_or(0, Bytes::len),
            )
        })?;
        body_bytes = body_bytes
            .saturating_add(varint::varint_len(key_length))
            .saturating_add(header.key.len())
            .saturating_add(nullable_bytes(value_length, header.value.as_deref()));
        header_lengths.push((key_length, value_length));
    }
    let length =
        i32::try_from(body_bytes).map_err(|_| too_large(RecordField::Length, body_bytes))?;

    out.reserve(body_bytes.saturating_add(varint::varint_len(length)));
    varint::write_varint(out, length);
    out.push(0); // Record attributes: unused since v2.
    varint::write_varlong(out, timestamp_delta);
    varint::write_varint(out, offset_delta);
    write_nullable(out, key_length, record.key.as_deref());
    write_nullable(out, value_length, record.value.as_deref());
    varint::write_varint(out, header_count);
    for (header, (key_length, value_length)) in record.headers.iter().zip(header_lengths) {
        varint::write_varint(out, key_length);
        out.extend_from_slice(header.key.as_bytes());
        write_nullable(out, value_length, header.value.as_deref());
    }
    Ok(())
}

/// The wire length of an optional field (`-1` for null), or `None` if it exceeds `i32`.
fn nullable_length(bytes: Option<&[u8]>) -> Option<i32> {
    match bytes {
        None => Some(-1),
        Some(bytes) => i32::try_from(bytes.len()).ok(),
    }
}

fn nullable_bytes(length: i32, bytes: Option<&[u8]>) -> usize {
    varint::varint_len(length).saturating_add(bytes.map_or(0, <[u8]>::len))
}

fn write_nullable(out: &mut Vec<u8>, length: i32, bytes: Option<&[u8]>) {
    varint::write_varint(out, length);
    if let Some(bytes) = bytes {
        out.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod compacted_batch_tests {
    use super::*;

    // Goal: a batch with gaps in its offsets (as compaction writes it) validates, decodes
    // to the original offsets, and spans its original offset range; bad deltas are refused.
    #[test]
    fn offset_gaps_round_trip() {
        let records: Vec<Record> = (0..3)
            .map(|number| Record {
                timestamp: 10 + number,
                key: Some(Bytes::from(format!("k{number}"))),
                value: None,
                headers: Vec::new(),
            })
            .collect();
        let options = EncodeOptions {
            base_offset: 100,
            ..EncodeOptions::default()
        };
        let batch = encode_batch_with_deltas(&records, &[1, 4, 9], 11, &options).unwrap();
        let header = validate_batch(&batch).unwrap();
        assert_eq!((header.record_count, header.last_offset()), (3, 111));
        let decoded = decode_batch(&batch, &DecodeLimits::default()).unwrap();
        let offsets: Vec<i64> = decoded.records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [101, 104, 109]);
        for bad in [&[4, 1, 9][..], &[1, 4, 12], &[-1, 4, 9], &[1, 4]] {
            assert!(matches!(
                encode_batch_with_deltas(&records, bad, 11, &options),
                Err(EncodeError::BadOffsetDeltas)
            ));
        }
    }
}
