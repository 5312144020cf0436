//! The numbers of the plug-in ABI (docs/WASM-ABI.md, version 1) as the guest sees them.
//!
//! `ledge-protocol` holds the host's copy (`wasm_abi.rs`); the SDK cannot depend on it because
//! that crate links C zstd, which does not build for `wasm32-unknown-unknown`. The two are kept
//! equal by the end-to-end tests, which load modules built with this SDK into the node.

/// The ABI version `ledge_abi_version` returns.
pub const ABI_VERSION: i32 = 1;

/// Bytes of the fixed input batch header: `record_count`, `partition`, `partition_count`
/// (`u32` each), `base_offset`, `base_timestamp` (`i64` each).
pub const BATCH_HEADER_BYTES: usize = 28;

/// The smallest Kafka v2 record: one byte each for length, attributes, timestamp delta, offset
/// delta, key length, value length and header count.
pub const RECORD_BYTES_MIN: usize = 7;

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

/// What a plug-in does with each record; a module exports the function of exactly one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Keeps or drops each record (`ledge_filter`).
    Filter,
    /// Replaces each record by zero or one record (`ledge_filter_map`).
    FilterMap,
    /// Replaces each record by any number of records (`ledge_flat_map`).
    FlatMap,
    /// Replaces each record by exactly one record (`ledge_map`).
    Map,
    /// Picks each record's partition (`ledge_partitioner`).
    Partitioner,
}

impl Kind {
    /// The kind's name as `--kind` spells it: `filter`, `filter_map`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::FilterMap => "filter_map",
            Self::FlatMap => "flat_map",
            Self::Map => "map",
            Self::Partitioner => "partitioner",
        }
    }

    /// The export the host calls once per batch: `ledge_filter`, `ledge_filter_map`, ...
    pub fn export_name(self) -> &'static str {
        match self {
            Self::Filter => "ledge_filter",
            Self::FilterMap => "ledge_filter_map",
            Self::FlatMap => "ledge_flat_map",
            Self::Map => "ledge_map",
            Self::Partitioner => "ledge_partitioner",
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
        }
    }
}
