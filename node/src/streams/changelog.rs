//! The changelog's entries and the one batch a chunk commits (pure, bounded codecs).
//!
//! Owns: the key and value layouts of the three entry types of docs/STREAMS.md (state,
//! outbox, commit position), their decoding with every length checked (client-shaped bytes
//! never panic), and [`CommitBatch`], which orders a chunk's records into one batch and
//! bounds its size.
//! Does not own: appending the batch (the task's driver), what state bytes mean (the guest).
//!
//! All integers are big-endian (host-only data; the guest ABI's little-endian does not apply).
//!
//! ```text
//! state     key   0x01, store u8, windowed u8 (0|1), window_start i64, window_end i64, user key
//!           value state bytes (null: deleted)
//! outbox    key   0x02, seq u64
//!           value version u8 (=1), output index u32, partition u32, producer sequence i32,
//!                 timestamp i64, key (i32 length, -1 null), value (i32 length, -1 null),
//!                 header count u32, per header: name (u32 length, UTF-8), value (i32, -1 null)
//!           (null: forwarded)
//! position  key   0x03
//!           value version u16 (=1), producer id i64, producer epoch i16,
//!                 max timestamp (u8 present, i64), watermark (u8 present, i64),
//!                 next outbox seq u64, forwarded seq end u64,
//!                 u32 n × (input index u32, next offset i64),
//!                 u32 n × (source partition u32, highest applied offset i64),
//!                 u32 n × (output index u32, partition u32, next producer sequence i32)
//! ```
//!
//! The state key carries a `windowed` flag where the design had the window alone: a
//! one-record session at timestamp -1 is the real window `[-1, -1]`, so no window value can
//! stand for "not windowed". When the flag is 0 both window fields are 0.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::store::{StateChange, StateKey};
use super::window::Window;

/// First key byte of a state entry.
pub const ENTRY_STATE: u8 = 0x01;
/// First key byte of an outbox entry.
pub const ENTRY_OUTBOX: u8 = 0x02;
/// The commit position's whole key.
pub const ENTRY_POSITION: u8 = 0x03;

const OUTBOX_VERSION: u8 = 1;
const POSITION_VERSION: u16 = 1;
/// Bytes of a state entry's changelog key before the user key.
pub const STATE_KEY_HEADER_BYTES: usize = 1 + 1 + 1 + 8 + 8;

/// Default for `transforms.commit_batch_bytes_max`: the largest changelog batch one chunk may
/// commit, Kafka's `max.message.bytes` default, so a commit is always an append the changelog
/// partition accepts. A chunk over it is split by the caller.
pub const COMMIT_BATCH_BYTES_MAX_DEFAULT: u64 = 1024 * 1024;

const _: () =
    assert!(COMMIT_BATCH_BYTES_MAX_DEFAULT <= crate::storage::log::BATCH_BYTES_MAX_DEFAULT);

/// Bytes counted per record on top of key and value: the largest Kafka v2 record framing
/// (length, attributes, timestamp delta, offset delta, key and value lengths and header count
/// as varints: 5 + 1 + 10 + 5 + 5 + 5 + 5), so the estimate never undercounts.
pub const RECORD_OVERHEAD_BYTES_MAX: u64 = 36;

/// Bytes of a Kafka v2 record batch's header, counted once per commit.
pub const BATCH_HEADER_BYTES: u64 = 61;

/// A decode failure; `what` names the field.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChangelogError {
    /// A record without a key.
    #[error("changelog record has an empty key")]
    EmptyKey,
    /// A key whose first byte is no entry type.
    #[error("changelog record key starts with unknown entry type {0:#04x}")]
    UnknownEntryType(u8),
    /// Fewer bytes than a field needs.
    #[error("changelog {what} is truncated: needs {needed} bytes, {remaining} remain")]
    Truncated {
        /// The field.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes after the last field.
    #[error("changelog {what} has {count} trailing bytes")]
    TrailingBytes {
        /// The entry part.
        what: &'static str,
        /// How many.
        count: usize,
    },
    /// A version this node cannot read.
    #[error("changelog {what} has unknown version {version}")]
    UnknownVersion {
        /// The entry part.
        what: &'static str,
        /// The version read.
        version: u16,
    },
    /// A negative length other than -1 (null).
    #[error("changelog {what} has invalid length {length}")]
    InvalidLength {
        /// The field.
        what: &'static str,
        /// The length read.
        length: i32,
    },
    /// A flag byte other than 0 or 1.
    #[error("changelog {what} has invalid flag {value}")]
    InvalidFlag {
        /// The field.
        what: &'static str,
        /// The byte read.
        value: u8,
    },
    /// A header name that is not UTF-8.
    #[error("changelog {what} is not UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
    },
    /// A map with the same key twice.
    #[error("changelog {what} lists the same key twice")]
    Duplicate {
        /// The map.
        what: &'static str,
    },
    /// A null value where the entry type needs one (a position tombstone).
    #[error("changelog {what} has a null value")]
    NullValue {
        /// The entry type.
        what: &'static str,
    },
}

/// A record the task forwards to an output topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    /// Key (`None`: null).
    pub key: Option<Bytes>,
    /// Value (`None`: null).
    pub value: Option<Bytes>,
    /// Headers in order: name, value (`None`: null).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Timestamp, ms since the epoch.
    pub timestamp_ms: i64,
}

/// An output record waiting to be forwarded, with where it goes and its idempotent
/// producer sequence there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Which of the transform's outputs.
    pub output_index: u32,
    /// The output partition.
    pub partition: u32,
    /// The task producer's sequence number in that partition.
    pub producer_sequence: i32,
    /// The record.
    pub record: OutputRecord,
}

/// What a task has committed: everything it needs to resume exactly after a restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitPosition {
    /// The task's idempotent producer id (outbox forwarding).
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// Largest record timestamp seen (`None`: none yet).
    pub max_timestamp_ms: Option<i64>,
    /// The watermark suppression has emitted through (`None`: none yet).
    pub watermark_ms: Option<i64>,
    /// Sequence number the next outbox entry gets.
    pub next_outbox_seq: u64,
    /// Every outbox entry with a smaller seq has been forwarded.
    pub forwarded_seq_end: u64,
    /// Per input (index; a join has two, stage 2 reads the repartition topic): the next
    /// offset to read.
    pub input_offsets: BTreeMap<u32, i64>,
    /// Stage 2's dedup map: per source (input) partition, the highest source offset applied.
    pub source_offsets: BTreeMap<u32, i64>,
    /// Per (output index, output partition): the next producer sequence.
    pub producer_sequences: BTreeMap<(u32, u32), i32>,
}

/// A decoded changelog record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangelogEntry {
    /// A state put or tombstone.
    State(StateChange),
    /// An outbox entry, or its tombstone (`None`: forwarded).
    Outbox {
        /// Its sequence number.
        seq: u64,
        /// The entry.
        entry: Option<OutboxEntry>,
    },
    /// The commit position.
    Position(CommitPosition),
}

/// A record as appended: key and value (`None`: tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// Key.
    pub key: Bytes,
    /// Value (`None`: tombstone).
    pub value: Option<Bytes>,
}

impl ChangelogRecord {
    /// Bytes this record counts against `transforms.commit_batch_bytes_max`.
    #[must_use]
    pub fn counted_bytes(&self) -> u64 {
        RECORD_OVERHEAD_BYTES_MAX
            + self.key.len() as u64
            + self.value.as_ref().map_or(0, |v| v.len() as u64)
    }
}

/// A bounded reader over a byte slice.
struct Reader<'b> {
    bytes: &'b [u8],
}

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'b [u8], ChangelogError> {
        if n > self.bytes.len() {
            return Err(ChangelogError::Truncated {
                what,
                needed: n as u64,
                remaining: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ChangelogError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ChangelogError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn flag(&mut self, what: &'static str) -> Result<bool, ChangelogError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ChangelogError::InvalidFlag { what, value }),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ChangelogError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, ChangelogError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ChangelogError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, ChangelogError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ChangelogError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, ChangelogError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    fn optional_i64(&mut self, what: &'static str) -> Result<Option<i64>, ChangelogError> {
        let present = self.flag(what)?;
        let value = self.i64(what)?;
        Ok(present.then_some(value))
    }

    /// `i32` length then bytes; -1 is null.
    fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, ChangelogError> {
        let length = self.i32(what)?;
        if length == -1 {
            return Ok(None);
        }
        let n =
            usize::try_from(length).map_err(|_| ChangelogError::InvalidLength { what, length })?;
        Ok(Some(Bytes::copy_from_slice(self.take(n, what)?)))
    }

    /// A `u32` count of entries of at least `entry_bytes` each, checked against what remains
    /// before anything is allocated.
    fn count(&mut self, what: &'static str, entry_bytes: usize) -> Result<usize, ChangelogError> {
        let count = self.u32(what)?;
        let needed = u64::from(count) * entry_bytes as u64;
        if needed > self.bytes.len() as u64 {
            return Err(ChangelogError::Truncated {
                what,
                needed,
                remaining: self.bytes.len(),
            });
        }
        Ok(count as usize)
    }

    fn finish(self, what: &'static str) -> Result<(), ChangelogError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(ChangelogError::TrailingBytes {
                what,
                count: self.bytes.len(),
            })
        }
    }
}

fn put_nullable(out: &mut BytesMut, bytes: Option<&Bytes>) {
    match bytes {
        // Lengths above i32::MAX cannot occur: a record is bounded by the batch limit.
        Some(b) => {
            out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
            out.put_slice(b);
        }
        None => out.put_i32(-1),
    }
}

fn put_optional_i64(out: &mut BytesMut, value: Option<i64>) {
    out.put_u8(u8::from(value.is_some()));
    out.put_i64(value.unwrap_or(0));
}

/// The changelog key of a state entry.
#[must_use]
pub fn encode_state_key(key: &StateKey) -> Bytes {
    let mut out = BytesMut::with_capacity(STATE_KEY_HEADER_BYTES + key.key.len());
    out.put_u8(ENTRY_STATE);
    out.put_u8(key.store);
    out.put_u8(u8::from(key.window.is_some()));
    let window = key.window.unwrap_or(Window {
        start_ms: 0,
        end_ms: 0,
    });
    out.put_i64(window.start_ms);
    out.put_i64(window.end_ms);
    out.put_slice(&key.key);
    out.freeze()
}

/// The changelog key of an outbox entry.
#[must_use]
pub fn encode_outbox_key(seq: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(9);
    out.put_u8(ENTRY_OUTBOX);
    out.put_u64(seq);
    out.freeze()
}

/// The commit position's key.
#[must_use]
pub fn position_key() -> Bytes {
    Bytes::from_static(&[ENTRY_POSITION])
}

/// A record's bytes: `i64 timestamp`, key and value as `i32` length or -1, `u32` header
/// count, each `u32` name length + UTF-8 and `i32` value length or -1 (an outbox value's
/// tail, and a join buffer's record).
fn put_record(out: &mut BytesMut, record: &OutputRecord) {
    out.put_i64(record.timestamp_ms);
    put_nullable(out, record.key.as_ref());
    put_nullable(out, record.value.as_ref());
    out.put_u32(u32::try_from(record.headers.len()).unwrap_or(u32::MAX));
    for (name, value) in &record.headers {
        out.put_u32(u32::try_from(name.len()).unwrap_or(u32::MAX));
        out.put_slice(name.as_bytes());
        put_nullable(out, value.as_ref());
    }
}

/// Reads [`put_record`]'s bytes; `names` name the timestamp, key, value, header count,
/// header name and header value fields in errors.
fn read_record(
    r: &mut Reader<'_>,
    names: [&'static str; 6],
) -> Result<OutputRecord, ChangelogError> {
    let [timestamp, key, value, count, header_name, header_value] = names;
    let timestamp_ms = r.i64(timestamp)?;
    let key = r.nullable_bytes(key)?;
    let value = r.nullable_bytes(value)?;
    // A header is at least a name length and a value length.
    let count = r.count(count, 8)?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32(header_name)? as usize;
        let name = std::str::from_utf8(r.take(len, header_name)?)
            .map_err(|_| ChangelogError::InvalidUtf8 { what: header_name })?
            .to_string();
        headers.push((name, r.nullable_bytes(header_value)?));
    }
    Ok(OutputRecord {
        key,
        value,
        headers,
        timestamp_ms,
    })
}

impl OutputRecord {
    /// The record alone, as a join buffer or table entry keeps it.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        put_record(&mut out, self);
        out.freeze()
    }

    /// Parses [`Self::encode`]'s bytes.
    ///
    /// # Errors
    /// [`ChangelogError`] naming the field.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChangelogError> {
        let mut r = Reader { bytes };
        let record = read_record(
            &mut r,
            [
                "record timestamp",
                "record key",
                "record value",
                "record header count",
                "record header name",
                "record header value",
            ],
        )?;
        r.finish("record")?;
        Ok(record)
    }
}

impl OutboxEntry {
    /// The changelog value.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u8(OUTBOX_VERSION);
        out.put_u32(self.output_index);
        out.put_u32(self.partition);
        out.put_i32(self.producer_sequence);
        put_record(&mut out, &self.record);
        out.freeze()
    }

    /// Parses a changelog value.
    ///
    /// # Errors
    /// [`ChangelogError`] naming the field.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChangelogError> {
        let mut r = Reader { bytes };
        let version = r.u8("outbox version")?;
        if version != OUTBOX_VERSION {
            return Err(ChangelogError::UnknownVersion {
                what: "outbox value",
                version: u16::from(version),
            });
        }
        let output_index = r.u32("outbox output index")?;
        let partition = r.u32("outbox partition")?;
        let producer_sequence = r.i32("outbox producer sequence")?;
        let record = read_record(
            &mut r,
            [
                "outbox timestamp",
                "outbox record key",
                "outbox record value",
                "outbox header count",
                "outbox header name",
                "outbox header value",
            ],
        )?;
        r.finish("outbox value")?;
        Ok(Self {
            output_index,
            partition,
            producer_sequence,
            record,
        })
    }
}

impl CommitPosition {
    /// The changelog value.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u16(POSITION_VERSION);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        put_optional_i64(&mut out, self.max_timestamp_ms);
        put_optional_i64(&mut out, self.watermark_ms);
        out.put_u64(self.next_outbox_seq);
        out.put_u64(self.forwarded_seq_end);
        // Map sizes are bounded by partition counts, far below u32::MAX.
        out.put_u32(u32::try_from(self.input_offsets.len()).unwrap_or(u32::MAX));
        for (input, offset) in &self.input_offsets {
            out.put_u32(*input);
            out.put_i64(*offset);
        }
        out.put_u32(u32::try_from(self.source_offsets.len()).unwrap_or(u32::MAX));
        for (partition, offset) in &self.source_offsets {
            out.put_u32(*partition);
            out.put_i64(*offset);
        }
        out.put_u32(u32::try_from(self.producer_sequences.len()).unwrap_or(u32::MAX));
        for ((output, partition), sequence) in &self.producer_sequences {
            out.put_u32(*output);
            out.put_u32(*partition);
            out.put_i32(*sequence);
        }
        out.freeze()
    }

    /// Parses a changelog value.
    ///
    /// # Errors
    /// [`ChangelogError`] naming the field.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChangelogError> {
        let mut r = Reader { bytes };
        let version = r.u16("position version")?;
        if version != POSITION_VERSION {
            return Err(ChangelogError::UnknownVersion {
                what: "position value",
                version,
            });
        }
        let producer_id = r.i64("position producer id")?;
        let producer_epoch = r.i16("position producer epoch")?;
        let max_timestamp_ms = r.optional_i64("position max timestamp")?;
        let watermark_ms = r.optional_i64("position watermark")?;
        let next_outbox_seq = r.u64("position next outbox seq")?;
        let forwarded_seq_end = r.u64("position forwarded seq end")?;
        let input_offsets = read_map(&mut r, "position input offsets", 12, |r| {
            Ok((
                r.u32("position input index")?,
                r.i64("position input offset")?,
            ))
        })?;
        let source_offsets = read_map(&mut r, "position source offsets", 12, |r| {
            Ok((
                r.u32("position source partition")?,
                r.i64("position source offset")?,
            ))
        })?;
        let producer_sequences = read_map(&mut r, "position producer sequences", 12, |r| {
            Ok((
                (
                    r.u32("position output index")?,
                    r.u32("position output partition")?,
                ),
                r.i32("position producer sequence")?,
            ))
        })?;
        r.finish("position value")?;
        Ok(Self {
            producer_id,
            producer_epoch,
            max_timestamp_ms,
            watermark_ms,
            next_outbox_seq,
            forwarded_seq_end,
            input_offsets,
            source_offsets,
            producer_sequences,
        })
    }
}

impl ChangelogEntry {
    /// The record this entry is appended as.
    #[must_use]
    pub fn encode(&self) -> ChangelogRecord {
        match self {
            Self::State(change) => ChangelogRecord {
                key: encode_state_key(&change.key),
                value: change.value.clone(),
            },
            Self::Outbox { seq, entry } => ChangelogRecord {
                key: encode_outbox_key(*seq),
                value: entry.as_ref().map(OutboxEntry::encode),
            },
            Self::Position(position) => ChangelogRecord {
                key: position_key(),
                value: Some(position.encode()),
            },
        }
    }

    /// Parses a changelog record (`value` `None`: a tombstone).
    ///
    /// # Errors
    /// [`ChangelogError`] naming the field.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, ChangelogError> {
        let mut r = Reader { bytes: key };
        match r.u8("key").map_err(|_| ChangelogError::EmptyKey)? {
            ENTRY_STATE => {
                let store = r.u8("state key store")?;
                let windowed = r.flag("state key windowed flag")?;
                let start_ms = r.i64("state key window start")?;
                let end_ms = r.i64("state key window end")?;
                let user_key = Bytes::copy_from_slice(r.bytes);
                Ok(Self::State(StateChange {
                    key: StateKey {
                        store,
                        key: user_key,
                        window: windowed.then_some(Window::new(start_ms, end_ms)),
                    },
                    value: value.map(Bytes::copy_from_slice),
                }))
            }
            ENTRY_OUTBOX => {
                let seq = r.u64("outbox key seq")?;
                r.finish("outbox key")?;
                let entry = value.map(OutboxEntry::decode).transpose()?;
                Ok(Self::Outbox { seq, entry })
            }
            ENTRY_POSITION => {
                r.finish("position key")?;
                let value = value.ok_or(ChangelogError::NullValue { what: "position" })?;
                Ok(Self::Position(CommitPosition::decode(value)?))
            }
            other => Err(ChangelogError::UnknownEntryType(other)),
        }
    }
}

/// A chunk's commit would pass `transforms.commit_batch_bytes_max`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "the chunk's commit would be {would_be} bytes, over the limit of {limit} bytes \
     (transforms.commit_batch_bytes_max): split the chunk"
)]
pub struct CommitTooLarge {
    /// `transforms.commit_batch_bytes_max`.
    pub limit: u64,
    /// The batch's counted bytes with the refused record.
    pub would_be: u64,
}

/// Collects one chunk's commit and yields its records in append order: state changes, new
/// outbox entries, tombstones of forwarded outbox entries, and the commit position last (so
/// a restore that sees the position has seen the whole batch). Bytes are counted as records
/// are added (key, value and [`RECORD_OVERHEAD_BYTES_MAX`] each, plus the batch header); a
/// record that would pass the limit is refused and the builder is left as it was, so the
/// caller can commit a shorter chunk.
#[derive(Debug)]
pub struct CommitBatch {
    states: Vec<ChangelogRecord>,
    outbox: Vec<ChangelogRecord>,
    forwarded: Vec<ChangelogRecord>,
    bytes: u64,
    limit_bytes: u64,
}

impl CommitBatch {
    /// An empty batch bounded by `limit_bytes` (`transforms.commit_batch_bytes_max`).
    #[must_use]
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            states: Vec::new(),
            outbox: Vec::new(),
            forwarded: Vec::new(),
            bytes: BATCH_HEADER_BYTES,
            limit_bytes,
        }
    }

    /// Counted bytes so far (with the batch header).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn admit(&mut self, record: &ChangelogRecord) -> Result<(), CommitTooLarge> {
        let would_be = self.bytes + record.counted_bytes();
        if would_be > self.limit_bytes {
            return Err(CommitTooLarge {
                limit: self.limit_bytes,
                would_be,
            });
        }
        self.bytes = would_be;
        Ok(())
    }

    /// Adds a state change.
    ///
    /// # Errors
    /// [`CommitTooLarge`]; nothing is added.
    pub fn state(&mut self, change: &StateChange) -> Result<(), CommitTooLarge> {
        let record = ChangelogEntry::State(change.clone()).encode();
        self.admit(&record)?;
        self.states.push(record);
        Ok(())
    }

    /// Adds a new outbox entry.
    ///
    /// # Errors
    /// [`CommitTooLarge`]; nothing is added.
    pub fn outbox(&mut self, seq: u64, entry: &OutboxEntry) -> Result<(), CommitTooLarge> {
        let record = ChangelogRecord {
            key: encode_outbox_key(seq),
            value: Some(entry.encode()),
        };
        self.admit(&record)?;
        self.outbox.push(record);
        Ok(())
    }

    /// Adds the tombstone of a forwarded outbox entry.
    ///
    /// # Errors
    /// [`CommitTooLarge`]; nothing is added.
    pub fn forwarded(&mut self, seq: u64) -> Result<(), CommitTooLarge> {
        let record = ChangelogRecord {
            key: encode_outbox_key(seq),
            value: None,
        };
        self.admit(&record)?;
        self.forwarded.push(record);
        Ok(())
    }

    /// Closes the batch with the commit position; returns the records in append order.
    ///
    /// # Errors
    /// [`CommitTooLarge`] if the position does not fit.
    pub fn finish(
        mut self,
        position: &CommitPosition,
    ) -> Result<Vec<ChangelogRecord>, CommitTooLarge> {
        let record = ChangelogEntry::Position(position.clone()).encode();
        self.admit(&record)?;
        let mut records = self.states;
        records.extend(self.outbox);
        records.extend(self.forwarded);
        records.push(record);
        Ok(records)
    }
}

/// Reads a count-prefixed map of `entry_bytes`-byte entries, refusing a key given twice
/// (an encoder writes each once, so a repeat is damage, not a newer value).
fn read_map<K: Ord, V>(
    r: &mut Reader<'_>,
    what: &'static str,
    entry_bytes: usize,
    mut entry: impl FnMut(&mut Reader<'_>) -> Result<(K, V), ChangelogError>,
) -> Result<BTreeMap<K, V>, ChangelogError> {
    let mut map = BTreeMap::new();
    for _ in 0..r.count(what, entry_bytes)? {
        let (key, value) = entry(r)?;
        if map.insert(key, value).is_some() {
            return Err(ChangelogError::Duplicate { what });
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> OutputRecord {
        OutputRecord {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                (
                    "ledge.window.start".to_string(),
                    Some(Bytes::from_static(b"0")),
                ),
                ("n".to_string(), None),
            ],
            timestamp_ms: -7,
        }
    }

    fn position() -> CommitPosition {
        CommitPosition {
            producer_id: 42,
            producer_epoch: 3,
            max_timestamp_ms: Some(100),
            watermark_ms: None,
            next_outbox_seq: 9,
            forwarded_seq_end: 5,
            input_offsets: [(0, 10), (1, 20)].into_iter().collect(),
            source_offsets: [(3, 99)].into_iter().collect(),
            producer_sequences: [((0, 1), 17)].into_iter().collect(),
        }
    }

    #[test]
    fn each_entry_type_round_trips() {
        let entries = [
            ChangelogEntry::State(StateChange {
                key: StateKey::windowed(2, Bytes::from_static(b"user"), Window::new(-1, -1)),
                value: Some(Bytes::from_static(b"100")),
            }),
            ChangelogEntry::State(StateChange {
                key: StateKey::plain(0, Bytes::new()),
                value: None,
            }),
            ChangelogEntry::Outbox {
                seq: u64::MAX,
                entry: Some(OutboxEntry {
                    output_index: 1,
                    partition: 7,
                    producer_sequence: i32::MAX,
                    record: record(),
                }),
            },
            ChangelogEntry::Outbox {
                seq: 0,
                entry: None,
            },
            ChangelogEntry::Position(position()),
            ChangelogEntry::Position(CommitPosition::default()),
        ];
        for entry in entries {
            let record = entry.encode();
            let decoded = ChangelogEntry::decode(&record.key, record.value.as_deref()).unwrap();
            assert_eq!(decoded, entry);
        }
    }

    #[test]
    fn the_state_key_layout_is_the_documented_one() {
        let key = encode_state_key(&StateKey::windowed(
            5,
            Bytes::from_static(b"ab"),
            Window::new(1, 2),
        ));
        let mut expected = vec![ENTRY_STATE, 5, 1];
        expected.extend(1i64.to_be_bytes());
        expected.extend(2i64.to_be_bytes());
        expected.extend(b"ab");
        assert_eq!(&key[..], &expected[..]);
        assert_eq!(&encode_outbox_key(1)[..], &[2, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&position_key()[..], &[3]);
    }

    #[test]
    fn every_decode_error_names_its_field() {
        let decode =
            |key: &[u8], value: Option<&[u8]>| ChangelogEntry::decode(key, value).unwrap_err();
        assert_eq!(decode(&[], None), ChangelogError::EmptyKey);
        assert_eq!(decode(&[9], None), ChangelogError::UnknownEntryType(9));
        assert!(matches!(
            decode(&[ENTRY_STATE, 0, 0, 1], None),
            ChangelogError::Truncated {
                what: "state key window start",
                needed: 8,
                remaining: 1
            }
        ));
        let mut bad_flag = encode_state_key(&StateKey::plain(0, Bytes::new())).to_vec();
        bad_flag[2] = 2;
        assert_eq!(
            decode(&bad_flag, None),
            ChangelogError::InvalidFlag {
                what: "state key windowed flag",
                value: 2
            }
        );
        assert_eq!(
            decode(&[ENTRY_OUTBOX, 0, 0, 0, 0, 0, 0, 0, 0, 0], None),
            ChangelogError::TrailingBytes {
                what: "outbox key",
                count: 1
            }
        );
        assert_eq!(
            decode(&[ENTRY_POSITION], None),
            ChangelogError::NullValue { what: "position" }
        );
        assert_eq!(
            decode(&[ENTRY_POSITION, 0], Some(&[])),
            ChangelogError::TrailingBytes {
                what: "position key",
                count: 1
            }
        );

        let outbox = OutboxEntry {
            output_index: 0,
            partition: 0,
            producer_sequence: 0,
            record: record(),
        }
        .encode();
        let mut wrong_version = outbox.to_vec();
        wrong_version[0] = 2;
        assert_eq!(
            OutboxEntry::decode(&wrong_version).unwrap_err(),
            ChangelogError::UnknownVersion {
                what: "outbox value",
                version: 2
            }
        );
        let mut negative = outbox.to_vec();
        // The key length field follows version, index, partition, sequence and timestamp.
        negative[21..25].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(
            OutboxEntry::decode(&negative).unwrap_err(),
            ChangelogError::InvalidLength {
                what: "outbox record key",
                length: -2
            }
        );
        let mut trailing = outbox.to_vec();
        trailing.push(0);
        assert_eq!(
            OutboxEntry::decode(&trailing).unwrap_err(),
            ChangelogError::TrailingBytes {
                what: "outbox value",
                count: 1
            }
        );
        let mut huge_count = OutboxEntry {
            output_index: 0,
            partition: 0,
            producer_sequence: 0,
            record: OutputRecord {
                key: None,
                value: None,
                headers: vec![],
                timestamp_ms: 0,
            },
        }
        .encode()
        .to_vec();
        let at = huge_count.len() - 4;
        huge_count[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            OutboxEntry::decode(&huge_count).unwrap_err(),
            ChangelogError::Truncated {
                what: "outbox header count",
                ..
            }
        ));
        let mut bad_utf8 = OutboxEntry {
            output_index: 0,
            partition: 0,
            producer_sequence: 0,
            record: OutputRecord {
                key: None,
                value: None,
                headers: vec![("h".to_string(), None)],
                timestamp_ms: 0,
            },
        }
        .encode()
        .to_vec();
        let at = bad_utf8.len() - 5;
        bad_utf8[at] = 0xff;
        assert_eq!(
            OutboxEntry::decode(&bad_utf8).unwrap_err(),
            ChangelogError::InvalidUtf8 {
                what: "outbox header name"
            }
        );

        let mut wrong_position = position().encode().to_vec();
        wrong_position[1] = 9;
        assert_eq!(
            CommitPosition::decode(&wrong_position).unwrap_err(),
            ChangelogError::UnknownVersion {
                what: "position value",
                version: 9
            }
        );
        // Two input offsets for input 0.
        let mut duplicate = CommitPosition::default().encode().to_vec();
        let at = 2 + 8 + 2 + 9 + 9 + 8 + 8;
        duplicate.truncate(at);
        duplicate.extend(2u32.to_be_bytes());
        for _ in 0..2 {
            duplicate.extend(0u32.to_be_bytes());
            duplicate.extend(5i64.to_be_bytes());
        }
        duplicate.extend(0u32.to_be_bytes());
        duplicate.extend(0u32.to_be_bytes());
        assert_eq!(
            CommitPosition::decode(&duplicate).unwrap_err(),
            ChangelogError::Duplicate {
                what: "position input offsets"
            }
        );
        for message in [
            ChangelogError::EmptyKey.to_string(),
            ChangelogError::UnknownEntryType(9).to_string(),
        ] {
            assert!(message.starts_with("changelog"), "{message}");
        }
    }

    #[test]
    fn a_commit_batch_orders_states_outbox_tombstones_then_position() {
        let mut batch = CommitBatch::new(COMMIT_BATCH_BYTES_MAX_DEFAULT);
        batch.forwarded(1).unwrap();
        let entry = OutboxEntry {
            output_index: 0,
            partition: 0,
            producer_sequence: 0,
            record: record(),
        };
        batch.outbox(2, &entry).unwrap();
        let change = StateChange {
            key: StateKey::plain(0, Bytes::from_static(b"a")),
            value: Some(Bytes::from_static(b"1")),
        };
        batch.state(&change).unwrap();
        let records = batch.finish(&position()).unwrap();
        let decoded: Vec<_> = records
            .iter()
            .map(|r| ChangelogEntry::decode(&r.key, r.value.as_deref()).unwrap())
            .collect();
        assert_eq!(
            decoded,
            vec![
                ChangelogEntry::State(change),
                ChangelogEntry::Outbox {
                    seq: 2,
                    entry: Some(entry)
                },
                ChangelogEntry::Outbox {
                    seq: 1,
                    entry: None
                },
                ChangelogEntry::Position(position()),
            ]
        );
    }

    #[test]
    fn a_commit_past_the_limit_is_refused_record_by_record() {
        let position_bytes = ChangelogEntry::Position(position())
            .encode()
            .counted_bytes();
        let header = BATCH_HEADER_BYTES;
        let change = StateChange {
            key: StateKey::plain(0, Bytes::from_static(b"a")),
            value: Some(Bytes::from(vec![0; 100])),
        };
        let change_bytes = ChangelogEntry::State(change.clone())
            .encode()
            .counted_bytes();
        let limit = header + change_bytes + position_bytes;
        let mut batch = CommitBatch::new(limit);
        batch.state(&change).unwrap();
        let error = batch.state(&change).unwrap_err();
        assert_eq!(
            error,
            CommitTooLarge {
                limit,
                would_be: header + 2 * change_bytes
            }
        );
        assert!(
            error
                .to_string()
                .contains("transforms.commit_batch_bytes_max")
        );
        assert_eq!(batch.bytes(), header + change_bytes);
        assert_eq!(batch.finish(&position()).unwrap().len(), 2);

        let mut full = CommitBatch::new(limit - 1);
        full.state(&change).unwrap();
        assert!(matches!(
            full.finish(&position()),
            Err(CommitTooLarge { .. })
        ));
        let mut tight = CommitBatch::new(header);
        assert!(tight.forwarded(0).is_err());
        assert!(
            tight
                .outbox(
                    0,
                    &OutboxEntry {
                        output_index: 0,
                        partition: 0,
                        producer_sequence: 0,
                        record: record()
                    }
                )
                .is_err()
        );
    }

    fn arb_bytes() -> impl Strategy<Value = Option<Bytes>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from))
    }

    fn arb_entry() -> impl Strategy<Value = ChangelogEntry> {
        let state = (
            any::<u8>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::option::of((any::<i64>(), any::<i64>())),
            arb_bytes(),
        )
            .prop_map(|(store, key, window, value)| {
                ChangelogEntry::State(StateChange {
                    key: StateKey {
                        store,
                        key: Bytes::from(key),
                        window: window.map(|(s, e)| Window::new(s, e)),
                    },
                    value,
                })
            });
        let outbox = (
            any::<u64>(),
            proptest::option::of((
                any::<u32>(),
                any::<u32>(),
                any::<i32>(),
                any::<i64>(),
                arb_bytes(),
                arb_bytes(),
                proptest::collection::vec(("[a-z.é]{0,8}", arb_bytes()), 0..4),
            )),
        )
            .prop_map(|(seq, entry)| ChangelogEntry::Outbox {
                seq,
                entry: entry.map(
                    |(
                        output_index,
                        partition,
                        producer_sequence,
                        timestamp_ms,
                        key,
                        value,
                        headers,
                    )| OutboxEntry {
                        output_index,
                        partition,
                        producer_sequence,
                        record: OutputRecord {
                            key,
                            value,
                            headers,
                            timestamp_ms,
                        },
                    },
                ),
            });
        let position = (
            any::<i64>(),
            any::<i16>(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<i64>()),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::btree_map(any::<u32>(), any::<i64>(), 0..4),
            proptest::collection::btree_map(any::<u32>(), any::<i64>(), 0..4),
            proptest::collection::btree_map((any::<u32>(), any::<u32>()), any::<i32>(), 0..4),
        )
            .prop_map(
                |(
                    producer_id,
                    producer_epoch,
                    max_timestamp_ms,
                    watermark_ms,
                    next_outbox_seq,
                    forwarded_seq_end,
                    input_offsets,
                    source_offsets,
                    producer_sequences,
                )| {
                    ChangelogEntry::Position(CommitPosition {
                        producer_id,
                        producer_epoch,
                        max_timestamp_ms,
                        watermark_ms,
                        next_outbox_seq,
                        forwarded_seq_end,
                        input_offsets,
                        source_offsets,
                        producer_sequences,
                    })
                },
            );
        prop_oneof![state, outbox, position]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
            first in 0u8..5,
        ) {
            let mut key = key;
            if let Some(b) = key.first_mut() {
                *b = first;
            }
            let _ = ChangelogEntry::decode(&key, value.as_deref());
            if let Some(value) = &value {
                let _ = OutboxEntry::decode(value);
                let _ = CommitPosition::decode(value);
            }
        }

        #[test]
        fn encode_then_decode_round_trips(entry in arb_entry()) {
            let record = entry.encode();
            prop_assert_eq!(ChangelogEntry::decode(&record.key, record.value.as_deref()).unwrap(), entry);
        }

        /// Any strict prefix of a valid value fails to decode (no silent partial read).
        #[test]
        fn truncated_values_are_refused(entry in arb_entry(), cut in any::<prop::sample::Index>()) {
            let record = entry.encode();
            if let (Some(value), ChangelogEntry::Outbox { .. } | ChangelogEntry::Position(_)) = (&record.value, &entry) {
                let at = cut.index(value.len());
                prop_assert!(ChangelogEntry::decode(&record.key, Some(&value[..at])).is_err());
            }
        }
    }
}
