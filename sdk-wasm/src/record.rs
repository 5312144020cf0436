//! The input side of a batch call: the batch header and the zero-copy [`Record`] view.
//!
//! The host writes one input batch into guest memory (docs/WASM-ABI.md, "Input batch"): a
//! fixed header, then Kafka v2 records back to back. [`RecordReader`] walks them and yields
//! [`Record`]s whose keys, values and headers point into that buffer. Every length is checked
//! against the bytes that are really there before anything is read, and a record is validated
//! whole (headers included) before it is handed out, so the accessors on [`Record`] and the
//! [`Headers`] iterator cannot fail.

use std::fmt;

use crate::abi::{BATCH_HEADER_BYTES, RECORD_BYTES_MIN};
use crate::varint::{VarintError, read_varint, read_varlong};

/// One input record, borrowed from the batch the host wrote into the module's memory.
///
/// Keys, values and header values may be null (`None`), which Kafka distinguishes from empty.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    /// The encoded headers, already validated by [`read_record`].
    headers: &'a [u8],
    header_count: u32,
    timestamp: i64,
    offset: i64,
    partition: u32,
}

impl<'a> Record<'a> {
    /// The key, or `None` for a null key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The key as UTF-8, or `None` if it is null or not valid UTF-8.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key.and_then(|key| std::str::from_utf8(key).ok())
    }

    /// The value, or `None` for a null value (a tombstone on compacted topics).
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The value as UTF-8, or `None` if it is null or not valid UTF-8. Use
    /// [`std::str::from_utf8`] on [`Record::value`] to tell the two apart.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value.and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The headers in the order the producer wrote them; a key may repeat, as Kafka allows.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            rest: self.headers,
            remaining: self.header_count,
        }
    }

    /// The last header named `key` (Kafka's `Headers.lastHeader`), if any.
    pub fn header(&self, key: &str) -> Option<Header<'a>> {
        self.headers().filter(|header| header.key == key).last()
    }

    /// The record's timestamp in milliseconds since the Unix epoch (the batch's base timestamp
    /// plus the record's delta; for `LogAppendTime` topics, the append time).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The record's offset: the batch's base offset plus the record's delta (0-based deltas
    /// on produce, where offsets are not assigned yet).
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The partition the record comes from (0 on produce, see docs/WASM-ABI.md).
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field("value", &self.value.map(String::from_utf8_lossy))
            .field("headers", &self.headers().collect::<Vec<_>>())
            .finish()
    }
}

/// One record header: a UTF-8 key and a value that may be null.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    key: &'a str,
    value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// The header's key.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The header's value, or `None` for a null value.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The value as UTF-8, or `None` if it is null or not valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value.and_then(|value| std::str::from_utf8(value).ok())
    }
}

impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Header")
            .field(&self.key)
            .field(&self.value.map(String::from_utf8_lossy))
            .finish()
    }
}

/// The headers of a [`Record`], in wire order.
#[derive(Clone, Debug)]
pub struct Headers<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // `read_record` validated every header, so this cannot fail; stop rather than panic
        // if it ever did.
        let header = read_header(&mut self.rest);
        debug_assert!(
            header.is_ok(),
            "headers are validated when the record is read"
        );
        header.map_err(|_| self.remaining = 0).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.remaining as usize;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// The fixed header of an input batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) record_count: u32,
    pub(crate) partition: u32,
    pub(crate) partition_count: u32,
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
}

/// Why an input batch cannot be answered record by record (the call then traps).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchError {
    /// Fewer bytes than the fixed batch header.
    TruncatedHeader { length: usize },
    /// More records claimed than the bytes could hold, so even one ERROR entry per claimed
    /// record would be an answer sized by a number the input made up.
    ImplausibleCount { record_count: u32, bytes: usize },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TruncatedHeader { length } => write!(
                f,
                "malformed input batch: {length} bytes, shorter than the \
                 {BATCH_HEADER_BYTES}-byte batch header"
            ),
            Self::ImplausibleCount {
                record_count,
                bytes,
            } => write!(
                f,
                "malformed input batch: {record_count} records cannot fit in {bytes} bytes"
            ),
        }
    }
}

/// Why one record could not be read: the field and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DecodeError {
    field: &'static str,
    problem: Problem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Problem {
    Truncated,
    VarintOverflow,
    NegativeLength(i32),
    Exceeds { length: usize, left: usize },
    NotUtf8,
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = self.field;
        match &self.problem {
            Problem::Truncated => write!(f, "{field}: the input ends inside it"),
            Problem::VarintOverflow => write!(f, "{field}: varint too long"),
            Problem::NegativeLength(length) => write!(f, "{field}: negative length {length}"),
            Problem::Exceeds { length, left } => {
                write!(f, "{field}: length {length} exceeds the {left} bytes left")
            }
            Problem::NotUtf8 => write!(f, "{field}: not UTF-8"),
            Problem::TrailingBytes(count) => {
                write!(f, "{field}: {count} bytes after the last header")
            }
        }
    }
}

impl DecodeError {
    fn new(field: &'static str, problem: Problem) -> Self {
        Self { field, problem }
    }

    fn varint(field: &'static str, error: VarintError) -> Self {
        let problem = match error {
            VarintError::Truncated => Problem::Truncated,
            VarintError::Overflow => Problem::VarintOverflow,
        };
        Self::new(field, problem)
    }
}

/// Splits an input batch into its header and the records section.
pub(crate) fn read_batch_header(input: &[u8]) -> Result<(BatchHeader, &[u8]), BatchError> {
    let Some((fixed, records)) = input.split_first_chunk::<BATCH_HEADER_BYTES>() else {
        return Err(BatchError::TruncatedHeader {
            length: input.len(),
        });
    };
    let u32_at = |at: usize| {
        let mut bytes = [0; 4];
        bytes.copy_from_slice(&fixed[at..at + 4]);
        u32::from_le_bytes(bytes)
    };
    let i64_at = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&fixed[at..at + 8]);
        i64::from_le_bytes(bytes)
    };
    let header = BatchHeader {
        record_count: u32_at(0),
        partition: u32_at(4),
        partition_count: u32_at(8),
        base_offset: i64_at(12),
        base_timestamp: i64_at(20),
    };
    if header.record_count as usize > records.len() / RECORD_BYTES_MIN {
        return Err(BatchError::ImplausibleCount {
            record_count: header.record_count,
            bytes: records.len(),
        });
    }
    Ok((header, records))
}

/// Walks the records section of a batch, one [`Record`] at a time.
#[derive(Clone, Debug)]
pub(crate) struct RecordReader<'a> {
    header: BatchHeader,
    rest: &'a [u8],
}

impl<'a> RecordReader<'a> {
    pub(crate) fn new(header: BatchHeader, records: &'a [u8]) -> Self {
        Self {
            header,
            rest: records,
        }
    }

    /// Reads the next record; on error the reader is left where the record started.
    pub(crate) fn next_record(&mut self) -> Result<Record<'a>, DecodeError> {
        let mut rest = self.rest;
        let record = read_record(&mut rest, &self.header)?;
        self.rest = rest;
        Ok(record)
    }

    /// Bytes not yet read; a batch must have none left after its last record.
    pub(crate) fn remaining_bytes(&self) -> usize {
        self.rest.len()
    }
}

/// Reads one whole Kafka v2 record, including every header, from the front of `input`.
fn read_record<'a>(input: &mut &'a [u8], batch: &BatchHeader) -> Result<Record<'a>, DecodeError> {
    let length = read_varint(input).map_err(|e| DecodeError::varint("record length", e))?;
    let mut body = take_length(input, length, "record")?;
    let (_attributes, rest) = body
        .split_first()
        .ok_or_else(|| DecodeError::new("attributes", Problem::Truncated))?;
    body = rest;
    let timestamp_delta =
        read_varlong(&mut body).map_err(|e| DecodeError::varint("timestamp delta", e))?;
    let offset_delta =
        read_varint(&mut body).map_err(|e| DecodeError::varint("offset delta", e))?;
    let key = read_nullable(&mut body, "key")?;
    let value = read_nullable(&mut body, "value")?;
    let header_count =
        read_varint(&mut body).map_err(|e| DecodeError::varint("header count", e))?;
    let header_count = u32::try_from(header_count)
        .map_err(|_| DecodeError::new("header count", Problem::NegativeLength(header_count)))?;
    // Validate every header now so that `Headers` never meets a bad one. Each header takes at
    // least two bytes or fails, so a made-up count ends at the end of the record.
    let headers = body;
    for _ in 0..header_count {
        read_header(&mut body)?;
    }
    if !body.is_empty() {
        return Err(DecodeError::new(
            "record",
            Problem::TrailingBytes(body.len()),
        ));
    }
    Ok(Record {
        key,
        value,
        headers,
        header_count,
        // Java's long arithmetic wraps; so does ours, rather than panicking on odd input.
        timestamp: batch.base_timestamp.wrapping_add(timestamp_delta),
        offset: batch.base_offset.wrapping_add(i64::from(offset_delta)),
        partition: batch.partition,
    })
}

fn read_header<'a>(input: &mut &'a [u8]) -> Result<Header<'a>, DecodeError> {
    let length = read_varint(input).map_err(|e| DecodeError::varint("header key length", e))?;
    let key = take_length(input, length, "header key")?;
    let key =
        std::str::from_utf8(key).map_err(|_| DecodeError::new("header key", Problem::NotUtf8))?;
    let value = read_nullable(input, "header value")?;
    Ok(Header { key, value })
}

/// Reads a varint length (`-1` = null) and that many bytes.
fn read_nullable<'a>(
    input: &mut &'a [u8],
    field: &'static str,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let length = read_varint(input).map_err(|e| DecodeError::varint(field, e))?;
    if length == -1 {
        return Ok(None);
    }
    take_length(input, length, field).map(Some)
}

fn take_length<'a>(
    input: &mut &'a [u8],
    length: i32,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let length = usize::try_from(length)
        .map_err(|_| DecodeError::new(field, Problem::NegativeLength(length)))?;
    let Some((taken, rest)) = input.split_at_checked(length) else {
        return Err(DecodeError::new(
            field,
            Problem::Exceeds {
                length,
                left: input.len(),
            },
        ));
    };
    *input = rest;
    Ok(taken)
}

#[cfg(test)]
mod tests;
