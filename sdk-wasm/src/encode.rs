//! The output side of a call: output entries and init results, written into a reused buffer.
//!
//! Layouts are docs/WASM-ABI.md's "Output" and "Init result", little-endian. [`Entries`]
//! appends one entry per input record and turns whatever the plug-in returned into the tag its
//! kind allows; a value the ABI cannot carry (a length past `i32::MAX`, a partition out of
//! range) becomes an `ERROR` entry for that record instead of output the host would reject.

use crate::outcome::{
    IntoFilterMapOutcome, IntoFilterOutcome, IntoFlatMapOutcome, IntoGroupOutcome, IntoJoinOutcome,
    IntoMapOutcome, IntoPartitionOutcome,
};
use crate::output::OutputRecord;
use ledge_protocol::wasm_abi::{
    INIT_ERROR, INIT_OK, TAG_DROP, TAG_ERROR, TAG_KEEP, TAG_KEY, TAG_PARTITION, TAG_RECORDS,
    TIMESTAMP_KEEP,
};

/// Longest error message an `ERROR` entry or init result carries; longer ones are cut at a
/// character boundary. Messages are for people, and a plug-in that formats a whole value into
/// its error would otherwise eat the host's output cap (`output_bytes_max`).
pub const ERROR_MESSAGE_BYTES_MAX: usize = 4096;

/// Appends output entries for one batch; the generated glue calls one method per record.
#[derive(Debug)]
pub struct Entries<'o> {
    out: &'o mut Vec<u8>,
    partition_count: u32,
}

impl<'o> Entries<'o> {
    /// Entries appended to `out`; partitions must be below `partition_count`.
    pub(crate) fn new(out: &'o mut Vec<u8>, partition_count: u32) -> Self {
        Self {
            out,
            partition_count,
        }
    }

    /// A `#[filter]` result: `KEEP`, `DROP` or `ERROR`.
    pub fn filter(&mut self, outcome: impl IntoFilterOutcome) {
        match outcome.into_filter_outcome() {
            Ok(true) => self.keep(),
            Ok(false) => self.drop_record(),
            Err(message) => self.error(&message),
        }
    }

    /// A `#[map]` result: `RECORDS` with one record, or `ERROR`.
    pub fn map(&mut self, outcome: impl IntoMapOutcome) {
        match outcome.into_map_outcome() {
            Ok(record) => self.records(std::slice::from_ref(&record)),
            Err(message) => self.error(&message),
        }
    }

    /// A `#[filter_map]` result: `RECORDS` with one record, `DROP` or `ERROR`.
    pub fn filter_map(&mut self, outcome: impl IntoFilterMapOutcome) {
        match outcome.into_filter_map_outcome() {
            Ok(Some(record)) => self.records(std::slice::from_ref(&record)),
            Ok(None) => self.drop_record(),
            Err(message) => self.error(&message),
        }
    }

    /// A `#[flat_map]` result: `RECORDS`, `DROP` for no records, or `ERROR`.
    pub fn flat_map(&mut self, outcome: impl IntoFlatMapOutcome) {
        match outcome.into_flat_map_outcome() {
            Ok(records) if records.is_empty() => self.drop_record(),
            Ok(records) => self.records(&records),
            Err(message) => self.error(&message),
        }
    }

    /// A `#[partitioner]` result: `PARTITION`, or `ERROR` (also for a partition out of range,
    /// which the host would otherwise treat as garbage and fail the whole batch for).
    pub fn partition(&mut self, outcome: impl IntoPartitionOutcome) {
        match outcome.into_partition_outcome() {
            Ok(partition) if partition < self.partition_count => {
                self.out.push(TAG_PARTITION);
                self.out.extend_from_slice(&partition.to_le_bytes());
            }
            Ok(partition) => self.error(&format!(
                "partition {partition} is out of range: the topic has {} partitions",
                self.partition_count
            )),
            Err(message) => self.error(&message),
        }
    }

    /// A `group_by` result (`ledge_group`): `KEY`, `DROP` for `None`, or `ERROR`.
    pub fn group(&mut self, outcome: impl IntoGroupOutcome) {
        match outcome.into_group_outcome() {
            Ok(Some(key)) => match u32::try_from(key.len()) {
                Ok(len) => {
                    self.out.push(TAG_KEY);
                    self.out.extend_from_slice(&len.to_le_bytes());
                    self.out.extend_from_slice(&key);
                }
                Err(_) => self.error(&format!(
                    "group key of {} bytes exceeds u32::MAX",
                    key.len()
                )),
            },
            Ok(None) => self.drop_record(),
            Err(message) => self.error(&message),
        }
    }

    /// A `#[join]` result for one pair: `RECORDS`, `DROP` for no records, or `ERROR`.
    pub fn join(&mut self, outcome: impl IntoJoinOutcome) {
        match outcome.into_join_outcome() {
            Ok(records) if records.is_empty() => self.drop_record(),
            Ok(records) => self.records(&records),
            Err(message) => self.error(&message),
        }
    }

    /// `KEEP` (`ledge_group`: group the record by its own key).
    pub fn keep_record(&mut self) {
        self.keep();
    }

    pub(crate) fn keep(&mut self) {
        self.out.push(TAG_KEEP);
    }

    pub(crate) fn drop_record(&mut self) {
        self.out.push(TAG_DROP);
    }

    pub(crate) fn error(&mut self, message: &str) {
        self.out.push(TAG_ERROR);
        write_message(self.out, message);
    }

    /// A `RECORDS` entry, or an `ERROR` entry if a length does not fit the ABI's integers.
    pub(crate) fn records(&mut self, records: &[OutputRecord]) {
        let start = self.out.len();
        if let Err(message) = write_records(self.out, records) {
            self.out.truncate(start);
            self.error(&message);
        }
    }
}

/// Writes an init result: status `0`, or status `1` and the message.
pub(crate) fn write_init_result(out: &mut Vec<u8>, result: Result<(), &str>) {
    match result {
        Ok(()) => out.push(INIT_OK),
        Err(message) => {
            out.push(INIT_ERROR);
            write_message(out, message);
        }
    }
}

fn write_records(out: &mut Vec<u8>, records: &[OutputRecord]) -> Result<(), String> {
    out.push(TAG_RECORDS);
    write_u32_length(out, records.len(), "output records")?;
    for record in records {
        // -1 is the ABI's "keep the input's" (documented on `OutputRecord::timestamp`); the
        // host refuses any other negative timestamp as garbage and would fail the whole batch.
        let timestamp = record.timestamp.unwrap_or(TIMESTAMP_KEEP);
        if timestamp < TIMESTAMP_KEEP {
            return Err(format!(
                "output timestamp {timestamp} is negative (milliseconds since the Unix epoch)"
            ));
        }
        out.extend_from_slice(&timestamp.to_le_bytes());
        write_nullable(out, record.key.as_deref(), "output key")?;
        write_nullable(out, record.value.as_deref(), "output value")?;
        write_u32_length(out, record.headers.len(), "output headers")?;
        for (key, value) in &record.headers {
            write_u32_length(out, key.len(), "output header key")?;
            out.extend_from_slice(key.as_bytes());
            write_nullable(out, value.as_deref(), "output header value")?;
        }
    }
    Ok(())
}

/// `i32` length (`-1` = null) and the bytes.
fn write_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>, what: &str) -> Result<(), String> {
    let Some(bytes) = bytes else {
        out.extend_from_slice(&(-1i32).to_le_bytes());
        return Ok(());
    };
    let length = i32::try_from(bytes.len())
        .map_err(|_| format!("{what} of {} bytes exceeds i32::MAX", bytes.len()))?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn write_u32_length(out: &mut Vec<u8>, length: usize, what: &str) -> Result<(), String> {
    let length = u32::try_from(length).map_err(|_| format!("{length} {what} exceed u32::MAX"))?;
    out.extend_from_slice(&length.to_le_bytes());
    Ok(())
}

/// `message` cut to [`ERROR_MESSAGE_BYTES_MAX`] at a char boundary.
pub(crate) fn cut_message(message: &str) -> &str {
    let mut end = message.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// `u32` length and the message, cut to [`ERROR_MESSAGE_BYTES_MAX`] at a char boundary.
fn write_message(out: &mut Vec<u8>, message: &str) {
    let message = cut_message(message).as_bytes();
    // At most ERROR_MESSAGE_BYTES_MAX, so it fits.
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message);
}

// A cut message still fits the u32 length field.
const _: () = assert!(ERROR_MESSAGE_BYTES_MAX <= u32::MAX as usize);

#[cfg(test)]
mod tests;
