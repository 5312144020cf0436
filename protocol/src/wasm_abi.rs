//! The WASM plug-in ABI, version 1 (docs/WASM-ABI.md): the numbers and layouts the node (the
//! host) and the guest SDK (`sdk-wasm`) must agree on, in one place both link.
//!
//! Owns: the ABI version; the input batch header layout ([`InputHeader`]) and the walk over
//! its records ([`InputRecords`], the same record parser as a Kafka batch's); init statuses;
//! output entry tags and which of them each [`PluginKind`] may return; reading a batch's
//! output back with the host's checks ([`decode_output`]); the kinds' names, exports and stable
//! numbers on the native protocol; and [`OnError`], a transform's error policy. Does not own:
//! writing output entries (the SDK's `encode.rs`), owning the decoded records (the node's
//! `wasm/abi.rs` makes them zero-copy slices of its buffer), or running modules (the node's
//! wasmtime runtime).
//!
//! Builds without the codec features, for `wasm32-unknown-unknown`: nothing here decompresses
//! (the host hands the guest decompressed records).

use std::fmt;
use std::str::FromStr;

use crate::RecordError;
use crate::record::{RecordView, read_record_fields};

/// The export that re-keys records for an aggregate with `group_by` (optional).
pub const EXPORT_GROUP: &str = "ledge_group";
/// The export that merges two states of an aggregate (optional; session windows need it).
pub const EXPORT_MERGE: &str = "ledge_merge";
/// The export naming an aggregate's state type (`() -> i64`, a result pointer to UTF-8).
pub const EXPORT_STATE_SCHEMA: &str = "ledge_state_schema";
/// The export that checks whether a module can read stored states (hot swap).
pub const EXPORT_STATE_CHECK: &str = "ledge_state_check";

/// The ABI version a module's `ledge_abi_version` returns and the host requires.
pub const ABI_VERSION: i32 = 1;

/// Bytes of the fixed input batch header: `record_count`, `partition`, `partition_count`
/// (`u32` each), `base_offset`, `base_timestamp` (`i64` each), little-endian.
pub const INPUT_HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 8;
// docs/WASM-ABI.md and ARCHITECTURE.md give the header as 28 bytes; modules depend on it.
const _: () = assert!(INPUT_HEADER_BYTES == 28);

/// The smallest Kafka v2 record: one byte each for length, attributes, timestamp delta, offset
/// delta, key length, value length and header count (the Kafka batch reader's bound too).
pub const RECORD_BYTES_MIN: usize = crate::record::RECORD_BYTES_MIN;

/// Output record timestamp meaning "keep the input record's timestamp".
pub const TIMESTAMP_KEEP: i64 = -1;

/// Init result status: the parameters were accepted.
pub const INIT_OK: u8 = 0;
/// Init result status: followed by `u32 message_len, message`.
pub const INIT_ERROR: u8 = 1;

/// Output entry tag: the input record passes unchanged.
pub const TAG_KEEP: u8 = 0;
/// Output entry tag: the record is removed.
pub const TAG_DROP: u8 = 1;
/// Output entry tag: followed by `u32 message_len, message`; this record failed.
pub const TAG_ERROR: u8 = 2;
/// Output entry tag: followed by `u32 n` and `n` output records that replace the record.
pub const TAG_RECORDS: u8 = 3;
/// Output entry tag: followed by `u32 partition`.
pub const TAG_PARTITION: u8 = 4;
/// Output entry tag (`ledge_group`): followed by `u32 key_len, key`; the record's group key.
pub const TAG_KEY: u8 = 5;

/// What a plug-in does with each record; a module exports the function of exactly one kind.
///
/// On the native protocol a kind is one byte, [`PluginKind::number`]; the mapping is stable
/// and a retired number is never reused:
///
/// | number | kind | export |
/// |---|---|---|
/// | 0 | `filter` | `ledge_filter` |
/// | 1 | `map` | `ledge_map` |
/// | 2 | `filter_map` | `ledge_filter_map` |
/// | 3 | `flat_map` | `ledge_flat_map` |
/// | 4 | `partitioner` | `ledge_partitioner` |
/// | 5 | `aggregate` | `ledge_aggregate` (and [`PluginKind::required_exports`]) |
/// | 6 | `join` | `ledge_join` |
///
/// `aggregate` and `join` are stateful (docs/STREAMS.md): the host keeps state for them and
/// calls them with the layouts of [`stateful`]; places that run a module record by record
/// (produce hooks, fetch plug-ins, stateless transforms) refuse them
/// ([`PluginKind::is_stateful`]).
///
/// In configs, on the command line and in the node's `metadata.json` a kind is its name
/// ([`PluginKind::as_str`]; with the `serde` feature it serializes as that name, so data
/// directories written before the kind had a number still load). The default, `filter`, is
/// number 0 and exists only so that wire messages have a default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
// Exhaustive on purpose: a new kind must be handled by every host and SDK match.
pub enum PluginKind {
    /// Keeps or drops each record (`ledge_filter`).
    #[default]
    Filter,
    /// Replaces each record by exactly one record (`ledge_map`).
    Map,
    /// Drops a record or replaces it by one record (`ledge_filter_map`).
    FilterMap,
    /// Replaces each record by any number of records (`ledge_flat_map`; transforms only).
    FlatMap,
    /// Picks each record's partition (`ledge_partitioner`).
    Partitioner,
    /// Folds records into per-key state (`ledge_aggregate`; stateful transforms only).
    Aggregate,
    /// Joins records of two inputs (`ledge_join`; stateful transforms only).
    Join,
}

impl PluginKind {
    /// Every kind, in number order.
    pub const ALL: [Self; 7] = [
        Self::Filter,
        Self::Map,
        Self::FilterMap,
        Self::FlatMap,
        Self::Partitioner,
        Self::Aggregate,
        Self::Join,
    ];

    /// The kind's number on the native protocol (the table above).
    pub fn number(self) -> u8 {
        match self {
            Self::Filter => 0,
            Self::Map => 1,
            Self::FilterMap => 2,
            Self::FlatMap => 3,
            Self::Partitioner => 4,
            Self::Aggregate => 5,
            Self::Join => 6,
        }
    }

    /// The kind with protocol number `number`.
    pub fn from_number(number: u8) -> Result<Self, UnknownPluginKind> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.number() == number)
            .ok_or(UnknownPluginKind(number))
    }

    /// The kind's name in configs, on the command line and in `metadata.json`: `filter`,
    /// `map`, `filter_map`, `flat_map`, `partitioner`, `aggregate`, `join`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Map => "map",
            Self::FilterMap => "filter_map",
            Self::FlatMap => "flat_map",
            Self::Partitioner => "partitioner",
            Self::Aggregate => "aggregate",
            Self::Join => "join",
        }
    }

    /// The export the host calls once per batch: `ledge_filter`, `ledge_map`, ...
    pub fn export_name(self) -> &'static str {
        match self {
            Self::Filter => "ledge_filter",
            Self::Map => "ledge_map",
            Self::FilterMap => "ledge_filter_map",
            Self::FlatMap => "ledge_flat_map",
            Self::Partitioner => "ledge_partitioner",
            Self::Aggregate => "ledge_aggregate",
            Self::Join => "ledge_join",
        }
    }

    /// Exports this kind needs besides the common ones and [`PluginKind::export_name`]:
    /// an aggregate's `ledge_state_schema` and `ledge_state_check`.
    pub fn required_exports(self) -> &'static [&'static str] {
        match self {
            Self::Aggregate => &[EXPORT_STATE_SCHEMA, EXPORT_STATE_CHECK],
            Self::Filter
            | Self::Map
            | Self::FilterMap
            | Self::FlatMap
            | Self::Partitioner
            | Self::Join => &[],
        }
    }

    /// Exports this kind may have: an aggregate's `ledge_group` (re-keying by `group_by`)
    /// and `ledge_merge` (session windows).
    pub fn optional_exports(self) -> &'static [&'static str] {
        match self {
            Self::Aggregate => &[EXPORT_GROUP, EXPORT_MERGE],
            Self::Filter
            | Self::Map
            | Self::FilterMap
            | Self::FlatMap
            | Self::Partitioner
            | Self::Join => &[],
        }
    }

    /// Whether the host keeps state for this kind (docs/STREAMS.md): `aggregate` and `join`
    /// do not run record by record, so produce hooks, fetch plug-ins and stateless transforms
    /// refuse them.
    pub fn is_stateful(self) -> bool {
        match self {
            Self::Aggregate | Self::Join => true,
            Self::Filter | Self::Map | Self::FilterMap | Self::FlatMap | Self::Partitioner => false,
        }
    }

    /// Whether an output entry with `tag` is allowed for this kind (the ABI's table; the count
    /// of records in a `RECORDS` entry and the partition range are checked separately).
    pub fn allows_tag(self, tag: u8) -> bool {
        match self {
            Self::Filter => matches!(tag, TAG_KEEP | TAG_DROP | TAG_ERROR),
            Self::Map => matches!(tag, TAG_KEEP | TAG_ERROR | TAG_RECORDS),
            Self::FilterMap | Self::FlatMap => {
                matches!(tag, TAG_KEEP | TAG_DROP | TAG_ERROR | TAG_RECORDS)
            }
            Self::Partitioner => matches!(tag, TAG_ERROR | TAG_PARTITION),
            // `ledge_group`'s entries.
            Self::Aggregate => matches!(tag, TAG_KEEP | TAG_DROP | TAG_ERROR | TAG_KEY),
            // `ledge_join`'s entries: a flat_map's, but a pair has no one input record to keep.
            Self::Join => matches!(tag, TAG_DROP | TAG_ERROR | TAG_RECORDS),
        }
    }

    /// Whether records of this kind keep a one-to-one relation to their input (so the output
    /// can keep the input's offsets, as a fetch needs).
    pub fn preserves_offsets(self) -> bool {
        matches!(self, Self::Filter | Self::Map | Self::FilterMap)
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = ParsePluginKindError;

    /// The names; `-` may stand for `_` (`filter-map`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == wanted)
            .ok_or_else(|| ParsePluginKindError(text.to_string()))
    }
}

/// A protocol number no [`PluginKind`] has: the peer is newer than this build, or the frame
/// is damaged. Upgrade the older side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown plug-in kind number {0} (this build knows 0 filter, 1 map, 2 filter_map, \
     3 flat_map, 4 partitioner, 5 aggregate, 6 join)"
)]
pub struct UnknownPluginKind(pub u8);

/// A name no [`PluginKind`] has. Use one of the names the message lists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown plug-in kind {0:?}; expected one of filter, map, filter_map, flat_map, \
     partitioner, aggregate, join"
)]
pub struct ParsePluginKindError(pub String);

/// What a topic transform does with a record its module fails (a trap, running out of fuel or
/// memory, malformed output, or an error the module reports for the record).
///
/// On the native protocol a policy is one byte, [`OnError::number`]: 0 `dead-letter`,
/// 1 `skip`, 2 `stop` (stable; a retired number is never reused). In configs, on the command
/// line and in `metadata.json` it is its name ([`OnError::as_str`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum OnError {
    /// The record goes to the dead-letter topic, with the error in its headers, and the rest
    /// flows on. The default.
    #[default]
    DeadLetter,
    /// The record is dropped (and counted as dead); the rest flows on.
    Skip,
    /// The transform stops before the record's batch until it is resumed or a fixed version
    /// is deployed.
    Stop,
}

impl OnError {
    /// Every policy, in number order.
    pub const ALL: [Self; 3] = [Self::DeadLetter, Self::Skip, Self::Stop];

    /// The policy's number on the native protocol.
    pub fn number(self) -> u8 {
        match self {
            Self::DeadLetter => 0,
            Self::Skip => 1,
            Self::Stop => 2,
        }
    }

    /// The policy with protocol number `number`.
    pub fn from_number(number: u8) -> Result<Self, UnknownOnError> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.number() == number)
            .ok_or(UnknownOnError(number))
    }

    /// The name in configs, on the command line and in `metadata.json`: `dead-letter`,
    /// `skip`, `stop`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadLetter => "dead-letter",
            Self::Skip => "skip",
            Self::Stop => "stop",
        }
    }
}

impl fmt::Display for OnError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for OnError {
    type Err = ParseOnErrorError;

    /// `dead-letter` (or `dead_letter`), `skip` or `stop`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "dead-letter" | "dead_letter" => Ok(Self::DeadLetter),
            "skip" => Ok(Self::Skip),
            "stop" => Ok(Self::Stop),
            other => Err(ParseOnErrorError(other.to_string())),
        }
    }
}

/// A protocol number no [`OnError`] policy has: the peer is newer than this build, or the
/// frame is damaged. Upgrade the older side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown on_error number {0} (this build knows 0 dead-letter, 1 skip, 2 stop)")]
pub struct UnknownOnError(pub u8);

/// A name no [`OnError`] policy has.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("on_error {0:?} must be dead-letter, skip or stop")]
pub struct ParseOnErrorError(pub String);

/// The fixed header of an input batch, as the host writes it and the guest reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputHeader {
    /// Records that follow the header.
    pub record_count: u32,
    /// Source partition (0 on produce).
    pub partition: u32,
    /// Partitions of the target (partitioner) or source topic.
    pub partition_count: u32,
    /// Offset the record offset deltas are relative to.
    pub base_offset: i64,
    /// Timestamp the record timestamp deltas are relative to.
    pub base_timestamp: i64,
}

impl InputHeader {
    /// The header's bytes, little-endian.
    pub fn to_bytes(&self) -> [u8; INPUT_HEADER_BYTES] {
        let mut bytes = [0u8; INPUT_HEADER_BYTES];
        let fields = self
            .record_count
            .to_le_bytes()
            .into_iter()
            .chain(self.partition.to_le_bytes())
            .chain(self.partition_count.to_le_bytes())
            .chain(self.base_offset.to_le_bytes())
            .chain(self.base_timestamp.to_le_bytes());
        for (slot, byte) in bytes.iter_mut().zip(fields) {
            *slot = byte;
        }
        bytes
    }

    /// Splits an input batch into its header and its records section. Refuses a header whose
    /// `record_count` the records section could not hold, so that even one output entry per
    /// claimed record is not an answer sized by a number the input made up.
    pub fn read(input: &[u8]) -> Result<(Self, &[u8]), InputBatchError> {
        let Some((fixed, records)) = input.split_first_chunk::<INPUT_HEADER_BYTES>() else {
            return Err(InputBatchError::TruncatedHeader {
                length: input.len(),
            });
        };
        let (record_count, rest) = split_u32(fixed);
        let (partition, rest) = split_u32(rest);
        let (partition_count, rest) = split_u32(rest);
        let (base_offset, rest) = split_i64(rest);
        let (base_timestamp, _) = split_i64(rest);
        let header = Self {
            record_count,
            partition,
            partition_count,
            base_offset,
            base_timestamp,
        };
        let fits = usize::try_from(record_count)
            .is_ok_and(|count| count <= records.len() / RECORD_BYTES_MIN);
        if !fits {
            return Err(InputBatchError::ImplausibleCount {
                record_count,
                bytes: records.len(),
            });
        }
        Ok((header, records))
    }
}

fn split_u32(bytes: &[u8]) -> (u32, &[u8]) {
    match bytes.split_first_chunk::<4>() {
        Some((field, rest)) => (u32::from_le_bytes(*field), rest),
        None => (0, &[]),
    }
}

fn split_i64(bytes: &[u8]) -> (i64, &[u8]) {
    match bytes.split_first_chunk::<8>() {
        Some((field, rest)) => (i64::from_le_bytes(*field), rest),
        None => (0, &[]),
    }
}

/// Why an input batch cannot be answered record by record (the guest then traps).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputBatchError {
    /// Fewer bytes than the fixed batch header.
    #[error(
        "malformed input batch: {length} bytes, shorter than the {INPUT_HEADER_BYTES}-byte \
         batch header"
    )]
    TruncatedHeader {
        /// Bytes there were.
        length: usize,
    },
    /// More records claimed than the bytes could hold.
    #[error("malformed input batch: {record_count} records cannot fit in {bytes} bytes")]
    ImplausibleCount {
        /// The header's `record_count`.
        record_count: u32,
        /// Bytes of the records section.
        bytes: usize,
    },
}

/// Walks the records section of an input batch, one [`RecordView`] at a time: the record
/// parser of Kafka batches, with offsets and timestamps as `base + delta`.
///
/// Every record is checked whole (headers included) before it is handed out. Unlike a Kafka
/// batch's walk, offset deltas are not checked against a `last_offset_delta` (a chunk of a
/// batch starts anywhere in it), and `base + delta` wraps as Java's `long` does rather than
/// failing: the host validated the batch these records came from.
#[derive(Clone, Debug)]
pub struct InputRecords<'a> {
    header: InputHeader,
    rest: &'a [u8],
}

impl<'a> InputRecords<'a> {
    /// The records of the batch whose header is `header`.
    pub fn new(header: InputHeader, records: &'a [u8]) -> Self {
        Self {
            header,
            rest: records,
        }
    }

    /// Reads the next record; on error the reader stays where the record starts.
    pub fn next_record(&mut self) -> Result<RecordView<'a>, RecordError> {
        let fields = read_record_fields(&mut self.rest)?;
        let offset = self
            .header
            .base_offset
            .wrapping_add(i64::from(fields.offset_delta));
        let timestamp = self
            .header
            .base_timestamp
            .wrapping_add(fields.timestamp_delta);
        Ok(fields.into_view(offset, timestamp))
    }

    /// Bytes not read yet; a batch has none left after its last record.
    pub fn remaining_bytes(&self) -> usize {
        self.rest.len()
    }
}

/// What a module answered for one input record: one output entry, its bytes borrowed from
/// the output buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputEntry<'a> {
    /// `KEEP`: the input record passes unchanged.
    Keep,
    /// `DROP`: the record is removed.
    Drop,
    /// `ERROR`: the record failed with this message.
    Error(&'a str),
    /// `RECORDS`: the record is replaced by these.
    Records(Vec<OutputRecordView<'a>>),
    /// `PARTITION`: the record goes to this partition.
    Partition(u32),
    /// `KEY` (`ledge_group`): the record's group key.
    Key(&'a [u8]),
}

/// A record in a `RECORDS` entry, borrowed from the output buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecordView<'a> {
    /// `None` keeps the input record's timestamp ([`TIMESTAMP_KEEP`] on the wire).
    pub timestamp: Option<i64>,
    /// The key; `None` is null.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is null.
    pub value: Option<&'a [u8]>,
    /// Headers in order: UTF-8 key, value (`None` is null).
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// A batch output that breaks the ABI ("garbage"): the host fails the batch as if the module
/// had trapped. The message says what and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OutputError(pub String);

/// The fewest bytes an output record takes (timestamp, two null lengths, header count), so a
/// claimed count allocates no more than the bytes could hold.
const OUTPUT_RECORD_BYTES_MIN: usize = 8 + 4 + 4 + 4;
/// The fewest bytes an output header takes (key length, null value length).
const OUTPUT_HEADER_BYTES_MIN: usize = 4 + 4;

/// Reads a batch's output with the host's checks: `record_count` entries, each a tag `kind`
/// may return ([`PluginKind::allows_tag`]), exactly one record from a map or filter_map,
/// partitions below `partition_count`, lengths within the bytes there, UTF-8 text, timestamps
/// `-1` or non-negative, no bytes after the last entry. The node's host decodes every call
/// with it, and the SDK's test harness too, so a native test refuses what the node refuses.
pub fn decode_output(
    kind: PluginKind,
    output: &[u8],
    record_count: usize,
    partition_count: u32,
) -> Result<Vec<OutputEntry<'_>>, OutputError> {
    let mut reader = OutputReader {
        bytes: output,
        position: 0,
    };
    let count = reader.len("entry count")?;
    if count != record_count {
        return Err(garbage(format!(
            "{count} entries for {record_count} input records"
        )));
    }
    let mut entries = Vec::with_capacity(count.min(reader.remaining()));
    for index in 0..count {
        let in_entry = |error: OutputError| garbage(format!("entry {index}: {}", error.0));
        let tag = reader.u8("entry tag").map_err(in_entry)?;
        let entry = reader.entry(tag).map_err(in_entry)?;
        check_entry(kind, tag, &entry, partition_count)
            .map_err(|message| garbage(format!("entry {index}: {message}")))?;
        entries.push(entry);
    }
    if reader.remaining() != 0 {
        return Err(garbage(format!(
            "{} bytes after the last entry",
            reader.remaining()
        )));
    }
    Ok(entries)
}

/// Reads `ledge_init`'s result: `Ok(Err(message))` is the module refusing its parameters.
/// Bytes after the result are ignored, as the host always has.
pub fn decode_init_result(output: &[u8]) -> Result<Result<(), &str>, OutputError> {
    let mut reader = OutputReader {
        bytes: output,
        position: 0,
    };
    match reader.u8("init status")? {
        INIT_OK => Ok(Ok(())),
        INIT_ERROR => Ok(Err(reader.text("init error message")?)),
        other => Err(garbage(format!("init status {other}"))),
    }
}

/// The tag table, then what the tag alone does not say: one record from a map or filter_map,
/// a partition in range.
fn check_entry(
    kind: PluginKind,
    tag: u8,
    entry: &OutputEntry<'_>,
    partition_count: u32,
) -> Result<(), String> {
    let allowed = kind.allows_tag(tag)
        && match (kind, entry) {
            (PluginKind::Map | PluginKind::FilterMap, OutputEntry::Records(records)) => {
                records.len() == 1
            }
            (_, OutputEntry::Partition(partition)) if *partition >= partition_count => {
                return Err(format!(
                    "partition {partition} out of range (the topic has {partition_count})"
                ));
            }
            _ => true,
        };
    if allowed {
        return Ok(());
    }
    let what = match entry {
        OutputEntry::Keep => "KEEP".to_string(),
        OutputEntry::Drop => "DROP".to_string(),
        OutputEntry::Error(_) => "ERROR".to_string(),
        OutputEntry::Records(records) => format!("{} records", records.len()),
        OutputEntry::Partition(_) => "PARTITION".to_string(),
        OutputEntry::Key(_) => "KEY".to_string(),
    };
    Err(format!("a {kind} may not return {what}"))
}

fn garbage(message: String) -> OutputError {
    OutputError(message)
}

/// A strict little-endian reader over a module's output; errors say what was cut short where.
struct OutputReader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> OutputReader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], OutputError> {
        let taken = self
            .position
            .checked_add(len)
            .and_then(|end| self.bytes.get(self.position..end))
            .ok_or_else(|| {
                garbage(format!(
                    "{what} needs {len} bytes at position {}, output is {} bytes",
                    self.position,
                    self.bytes.len()
                ))
            })?;
        self.position = self.position.saturating_add(len);
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], OutputError> {
        let bytes = self.take(N, what)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    fn u8(&mut self, what: &str) -> Result<u8, OutputError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, OutputError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, OutputError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    fn i64(&mut self, what: &str) -> Result<i64, OutputError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    fn len(&mut self, what: &str) -> Result<usize, OutputError> {
        usize::try_from(self.u32(what)?).map_err(|_| garbage(format!("{what} too large")))
    }

    /// An `i32` length where -1 means null, then the bytes.
    fn nullable(&mut self, what: &str) -> Result<Option<&'a [u8]>, OutputError> {
        match self.i32(what)? {
            -1 => Ok(None),
            len => {
                let len = usize::try_from(len)
                    .map_err(|_| garbage(format!("{what} has length {len}")))?;
                Ok(Some(self.take(len, what)?))
            }
        }
    }

    fn text(&mut self, what: &str) -> Result<&'a str, OutputError> {
        let len = self.len(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| garbage(format!("{what} is not UTF-8")))
    }

    /// The body of an entry whose tag is `tag`.
    fn entry(&mut self, tag: u8) -> Result<OutputEntry<'a>, OutputError> {
        Ok(match tag {
            TAG_KEEP => OutputEntry::Keep,
            TAG_DROP => OutputEntry::Drop,
            TAG_ERROR => OutputEntry::Error(self.text("error message")?),
            TAG_RECORDS => {
                let n = self.len("record count")?;
                let mut records =
                    Vec::with_capacity(n.min(self.remaining() / OUTPUT_RECORD_BYTES_MIN));
                for _ in 0..n {
                    records.push(self.output_record()?);
                }
                OutputEntry::Records(records)
            }
            TAG_PARTITION => OutputEntry::Partition(self.u32("partition")?),
            TAG_KEY => {
                let len = self.len("group key")?;
                OutputEntry::Key(self.take(len, "group key")?)
            }
            other => return Err(garbage(format!("unknown tag {other}"))),
        })
    }

    fn output_record(&mut self) -> Result<OutputRecordView<'a>, OutputError> {
        let timestamp = match self.i64("timestamp")? {
            TIMESTAMP_KEEP => None,
            value if value >= 0 => Some(value),
            value => return Err(garbage(format!("timestamp {value}"))),
        };
        let key = self.nullable("key")?;
        let value = self.nullable("value")?;
        let header_count = self.len("header count")?;
        let mut headers =
            Vec::with_capacity(header_count.min(self.remaining() / OUTPUT_HEADER_BYTES_MIN));
        for _ in 0..header_count {
            let key = self.text("header key")?;
            let value = self.nullable("header value")?;
            headers.push((key, value));
        }
        Ok(OutputRecordView {
            timestamp,
            key,
            value,
            headers,
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.position)
    }
}

pub mod stateful;

#[cfg(test)]
mod tests;
