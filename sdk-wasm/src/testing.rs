//! Running a plug-in natively in tests, through the bytes the host exchanges with a module.
//!
//! [`TestPlugin`] encodes the parameter block and each input batch exactly as the host does,
//! runs the same decode, call and encode code the module's exports run, and decodes the output
//! with the host's checks (entry count, the tags the kind allows, one record for a map,
//! partitions in range), so a test fails on anything the node would refuse. The crate's
//! front page shows a whole test.
//!
//! The type parameter is the plug-in function's name: the attribute defines a type of that
//! name beside the function.

use ledge_protocol::varint::{write_varint, write_varlong};
use ledge_protocol::wasm_abi::{
    INIT_ERROR, INIT_OK, INPUT_HEADER_BYTES, InputHeader, PluginKind, TAG_DROP, TAG_ERROR,
    TAG_KEEP, TAG_PARTITION, TAG_RECORDS, TIMESTAMP_KEEP,
};

pub use crate::module_check::check_module;
use crate::output::OutputRecord;
use crate::runtime::{Plugin, init_plugin, process_batch};

/// What the module answered for one input record: one output entry, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `KEEP`: the record passes unchanged.
    Keep,
    /// `DROP`: the record is removed.
    Drop,
    /// `ERROR`: the record failed with this message.
    Error(String),
    /// `RECORDS`: the record is replaced by these. A `timestamp` of `None` keeps the input's.
    Records(Vec<OutputRecord>),
    /// `PARTITION`: the record goes to this partition.
    Partition(u32),
}

/// The batch header fields of the input batches a [`TestPlugin`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchInfo {
    /// The source partition (0 on produce).
    pub partition: u32,
    /// Partitions of the target (partitioner) or source topic; at least 1.
    pub partition_count: u32,
    /// Offset of the first record; records get consecutive offsets from here.
    pub base_offset: i64,
    /// Timestamp of records whose `timestamp` is `None`; others are encoded as deltas from it.
    pub base_timestamp: i64,
}

impl Default for BatchInfo {
    fn default() -> Self {
        Self {
            partition: 0,
            partition_count: 1,
            base_offset: 0,
            base_timestamp: 0,
        }
    }
}

/// One plug-in, initialised with parameters, ready to run batches natively.
pub struct TestPlugin<P: Plugin> {
    state: P::State,
    batch: BatchInfo,
    input: Vec<u8>,
    output: Vec<u8>,
}

impl<P: Plugin> TestPlugin<P> {
    /// Initialises the plug-in as `ledge_init` does; `Err` is the init error message.
    pub fn init(params: &[(&str, &str)]) -> Result<Self, String> {
        let mut output = Vec::new();
        let state = init_plugin::<P>(&encode_params(params), &mut output);
        let decoded = decode_init_result(&output).expect("the SDK wrote a valid init result");
        match (state, decoded) {
            (Some(state), Ok(())) => Ok(Self {
                state,
                batch: BatchInfo::default(),
                input: Vec::new(),
                output,
            }),
            (None, Err(message)) => Err(message),
            (state, decoded) => panic!(
                "init result {decoded:?} disagrees with the state (present: {})",
                state.is_some()
            ),
        }
    }

    /// Sets the source partition of the batches (default 0).
    #[must_use]
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.batch.partition = partition;
        self
    }

    /// Sets the partition count of the batches (default 1).
    #[must_use]
    pub fn with_partition_count(mut self, partition_count: u32) -> Self {
        self.batch.partition_count = partition_count;
        self
    }

    /// Sets the base offset of the batches (default 0).
    #[must_use]
    pub fn with_base_offset(mut self, base_offset: i64) -> Self {
        self.batch.base_offset = base_offset;
        self
    }

    /// Sets the base timestamp of the batches (default 0).
    #[must_use]
    pub fn with_base_timestamp(mut self, base_timestamp: i64) -> Self {
        self.batch.base_timestamp = base_timestamp;
        self
    }

    /// Runs one batch of `records` and returns one outcome per record.
    ///
    /// # Panics
    ///
    /// If the module would have trapped or its output breaks the ABI (a bug in the SDK).
    pub fn run(&mut self, records: &[OutputRecord]) -> Vec<Outcome> {
        let batch = encode_batch(&self.batch, records);
        self.run_batch(&batch)
            .unwrap_or_else(|message| panic!("the batch failed: {message}"))
    }

    /// Runs a batch of one record and returns its outcome.
    ///
    /// # Panics
    ///
    /// As [`TestPlugin::run`].
    pub fn run_one(&mut self, record: OutputRecord) -> Outcome {
        let mut outcomes = self.run(std::slice::from_ref(&record));
        assert_eq!(outcomes.len(), 1, "one outcome per record");
        outcomes.remove(0)
    }

    /// Runs an input batch given as bytes (see [`encode_batch`]); `Err` is what would trap
    /// the module, or output that breaks the ABI.
    pub fn run_batch(&mut self, batch: &[u8]) -> Result<Vec<Outcome>, String> {
        self.input.clear();
        self.input.extend_from_slice(batch);
        process_batch::<P>(&self.state, &self.input, &mut self.output)
            .map_err(|error| error.to_string())?;
        let (record_count, partition_count) = match batch.first_chunk::<12>() {
            Some(header) => (u32_at(header, 0), u32_at(header, 8)),
            None => (0, 0),
        };
        decode_output(P::KIND, &self.output, record_count, partition_count)
    }
}

/// A parameter block, as the host writes it for `ledge_init`.
pub fn encode_params(params: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    push_u32(&mut block, params.len());
    for (key, value) in params {
        push_u32(&mut block, key.len());
        block.extend_from_slice(key.as_bytes());
        push_u32(&mut block, value.len());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// An input batch, as the host writes it for a batch call: `info`'s header, then `records` as
/// Kafka v2 records with consecutive offset deltas.
///
/// # Panics
///
/// If a length does not fit Kafka's `i32` fields.
pub fn encode_batch(info: &BatchInfo, records: &[OutputRecord]) -> Vec<u8> {
    let header = InputHeader {
        record_count: u32::try_from(records.len()).expect("test inputs are shorter than 4 GiB"),
        partition: info.partition,
        partition_count: info.partition_count,
        base_offset: info.base_offset,
        base_timestamp: info.base_timestamp,
    };
    let mut batch = Vec::with_capacity(INPUT_HEADER_BYTES);
    batch.extend_from_slice(&header.to_bytes());
    let mut body = Vec::new();
    for (index, record) in records.iter().enumerate() {
        body.clear();
        body.push(0); // attributes
        let timestamp = record.timestamp.unwrap_or(info.base_timestamp);
        write_varlong(&mut body, timestamp.wrapping_sub(info.base_timestamp));
        write_varint(&mut body, to_i32(index, "offset delta"));
        push_nullable(&mut body, record.key.as_deref());
        push_nullable(&mut body, record.value.as_deref());
        write_varint(&mut body, to_i32(record.headers.len(), "header count"));
        for (key, value) in &record.headers {
            write_varint(&mut body, to_i32(key.len(), "header key length"));
            body.extend_from_slice(key.as_bytes());
            push_nullable(&mut body, value.as_deref());
        }
        write_varint(&mut batch, to_i32(body.len(), "record length"));
        batch.extend_from_slice(&body);
    }
    batch
}

/// Decodes an init result: `Ok(Ok(()))` accepted, `Ok(Err(message))` refused, `Err` if the
/// bytes break the ABI.
pub fn decode_init_result(bytes: &[u8]) -> Result<Result<(), String>, String> {
    let mut reader = Reader(bytes);
    let result = match reader.u8()? {
        INIT_OK => Ok(()),
        INIT_ERROR => Err(reader.text("init error message")?),
        status => return Err(format!("unknown init status {status}")),
    };
    reader.finish()?;
    Ok(result)
}

/// Decodes a batch output with the host's checks: `record_count` entries, tags the kind allows,
/// exactly one record for map and filter_map, partitions below `partition_count`, UTF-8 text,
/// no bytes left over.
pub fn decode_output(
    kind: PluginKind,
    output: &[u8],
    record_count: u32,
    partition_count: u32,
) -> Result<Vec<Outcome>, String> {
    let mut reader = Reader(output);
    let entry_count = reader.u32()?;
    if entry_count != record_count {
        return Err(format!("{entry_count} entries for {record_count} records"));
    }
    let mut outcomes = Vec::new();
    for index in 0..entry_count {
        let tag = reader.u8()?;
        if !kind.allows_tag(tag) {
            return Err(format!(
                "entry {index}: tag {tag} is not allowed for a {}",
                kind.as_str()
            ));
        }
        let outcome = match tag {
            TAG_KEEP => Outcome::Keep,
            TAG_DROP => Outcome::Drop,
            TAG_ERROR => Outcome::Error(reader.text("error message")?),
            TAG_RECORDS => {
                let count = reader.u32()?;
                if matches!(kind, PluginKind::Map | PluginKind::FilterMap) && count != 1 {
                    return Err(format!(
                        "entry {index}: {count} records from a {}",
                        kind.as_str()
                    ));
                }
                let mut records = Vec::new();
                for _ in 0..count {
                    records.push(reader.output_record()?);
                }
                Outcome::Records(records)
            }
            TAG_PARTITION => {
                let partition = reader.u32()?;
                if partition >= partition_count {
                    return Err(format!(
                        "entry {index}: partition {partition} of {partition_count}"
                    ));
                }
                Outcome::Partition(partition)
            }
            _ => unreachable!("allows_tag accepts only known tags"),
        };
        outcomes.push(outcome);
    }
    reader.finish()?;
    Ok(outcomes)
}

/// A strict little-endian reader over output bytes; errors describe what was cut short.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        let (taken, rest) = self
            .0
            .split_at_checked(length)
            .ok_or_else(|| format!("{length} bytes wanted, {} left", self.0.len()))?;
        self.0 = rest;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn i64(&mut self) -> Result<i64, String> {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(bytes))
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let length = self.u32()? as usize;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn nullable(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self.u32()? as i32 {
            -1 => Ok(None),
            length if length < 0 => Err(format!("negative length {length}")),
            length => Ok(Some(self.take(length as usize)?.to_vec())),
        }
    }

    fn output_record(&mut self) -> Result<OutputRecord, String> {
        let timestamp = self.i64()?;
        let key = self.nullable()?;
        let value = self.nullable()?;
        let header_count = self.u32()?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let header_key = self.text("header key")?;
            headers.push((header_key, self.nullable()?));
        }
        Ok(OutputRecord {
            key,
            value,
            headers,
            timestamp: (timestamp != TIMESTAMP_KEEP).then_some(timestamp),
        })
    }

    fn finish(&self) -> Result<(), String> {
        match self.0.len() {
            0 => Ok(()),
            left => Err(format!("{left} bytes after the last entry")),
        }
    }
}

fn u32_at(bytes: &[u8; 12], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn push_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("test inputs are shorter than 4 GiB");
    out.extend_from_slice(&value.to_le_bytes());
}

fn push_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => write_varint(out, -1),
        Some(bytes) => {
            write_varint(out, to_i32(bytes.len(), "length"));
            out.extend_from_slice(bytes);
        }
    }
}

fn to_i32(value: usize, what: &str) -> i32 {
    i32::try_from(value).unwrap_or_else(|_| panic!("{what} {value} exceeds i32::MAX"))
}

#[cfg(test)]
mod tests;
