//! Ledge wire protocol: the Kafka RecordBatch v2 codec shared by node, client and WASM SDK.
//!
//! The crate does no IO and never panics on input: every length field read off the wire is
//! checked against the bytes that are really there, decompression stops at a configured limit,
//! and no allocation is sized by a count that the input claims without bytes to back it.
//!
//! The important items, in the order a produce request meets them:
//!
//! - [`BatchIter`] splits a byte range into whole batches by their length fields, reading only
//!   headers. It is what a broker uses to walk a produce payload or a segment tail.
//! - [`validate_batch`] checks one whole batch: framing, magic, CRC-32C and the header fields
//!   that must agree with each other. It returns the parsed [`BatchHeader`].
//!   [`validate_batch_records`] adds the records: every record's framing and exactly
//!   `record_count` of them, without building any (what a broker checks before it appends).
//! - [`set_base_offset`] and [`set_partition_leader_epoch`] stamp the two fields Kafka leaves
//!   outside the CRC so a broker can assign them in place; [`BatchHeader::check_stamp`] checks
//!   them when the batch is read back. [`set_log_append_time`] rewrites the timestamp for topics
//!   that use broker time.
//! - [`decode_batch`] turns a batch into owned [`DecodedRecord`]s, within [`DecodeLimits`].
//!   [`decompress_records`] with [`RecordIter`] is the borrowing path: it yields
//!   [`RecordView`]s whose keys, values and headers point into the batch, and keeps duplicate
//!   header keys, which Kafka allows.
//! - [`encode_batch`] builds one batch from [`Record`]s with [`EncodeOptions`], compressed with
//!   any Kafka codec ([`Compression`]).
//!
//! [`wasm_abi`] holds the WASM plug-in ABI that the node and the guest SDK share (including
//! [`PluginKind`], one byte on the wire), and [`partitioner`] Kafka's murmur2 key placement,
//! shared by the client and partitioner plug-ins.
//!
//! The codecs are cargo features (`gzip`, `snappy`, `lz4`, `zstd`; all under the default
//! `compression`): built without them, for `wasm32-unknown-unknown`, a compressed batch is
//! refused with [`DecodeError::CodecNotBuiltIn`]. The `serde` feature makes [`PluginKind`] and
//! [`OnError`] serializable by name, as the node stores them.
//!
//! The native protocol's frames and messages live in [`wire`]: [`wire::Request`],
//! [`wire::Response`], [`wire::ErrorCode`], and the frame functions
//! [`wire::encode_request`] / [`wire::decode_request`].
//!
//! Errors are one enum per operation: [`BatchError`] for framing and header checks,
//! [`DecodeError`] (with [`RecordError`] for a single record) for decoding, and [`EncodeError`].
//!
//! Layout of a batch (Kafka's `DefaultRecordBatch`, big-endian; the CRC covers `attributes` to
//! the end of the batch):
//!
//! ```text
//!  0 base_offset i64          | 27 base_timestamp i64
//!  8 batch_length i32         | 35 max_timestamp i64
//! 12 partition_leader_epoch   | 43 producer_id i64
//! 16 magic i8 (= 2)           | 51 producer_epoch i16
//! 17 crc u32 (CRC-32C)        | 53 base_sequence i32
//! 21 attributes i16           | 57 record_count i32
//! 23 last_offset_delta i32    | 61 records (one compressed blob if attributes say so)
//! ```

#![warn(missing_docs)]
// A panic while reading a batch would be a remote crash of the broker: decoders use `.get()`.
#![warn(clippy::indexing_slicing)]
// Tests index freely: a panic there is a failed test, not a crash. The library target is still
// linted on its own by `clippy --all-targets`.
#![cfg_attr(test, allow(clippy::indexing_slicing))]

mod batch;
mod compression;
pub mod partitioner;
mod record;
pub mod varint;
pub mod wasm_abi;
pub mod wire;

#[cfg(test)]
mod robustness_tests;
#[cfg(test)]
mod test_support;

pub use batch::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_MIN, BATCH_LENGTH_PREFIX_BYTES, BatchError, BatchHeader,
    BatchIter, Compression, MAGIC_V2, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE, NO_TIMESTAMP, TimestampType, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, validate_batch,
};
pub use record::{
    DecodeError, DecodeLimits, DecodedBatch, DecodedRecord, EncodeError, EncodeOptions, Header,
    HeaderIter, HeaderView, Record, RecordError, RecordField, RecordIter, RecordView, decode_batch,
    decompress_records, encode_batch, encode_batch_with_deltas, encode_empty_batch,
    validate_batch_records,
};
pub use wasm_abi::{OnError, PluginKind};
