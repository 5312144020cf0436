//! Running a plug-in natively in tests, through the bytes the host exchanges with a module.
//!
//! [`TestPlugin`] encodes the parameter block and each input batch exactly as the host does,
//! runs the same decode, call and encode code the module's exports run, and decodes the output
//! with the host's own decoder (`ledge_protocol::wasm_abi::decode_output`: entry count, the tags
//! the kind allows, one record for a map, partitions in range), so a test fails on anything
//! the node would refuse. The crate's
//! front page shows a whole test.
//!
//! The type parameter is the plug-in function's name: the attribute defines a type of that
//! name beside the function.

use std::collections::BTreeMap;

use ledge_protocol::varint::{write_varint, write_varlong};
use ledge_protocol::wasm_abi::stateful::{
    self, encode_aggregate_input, encode_join_input, encode_merge_input, encode_states,
};
pub use ledge_protocol::wasm_abi::stateful::{Application, JoinPair, Slot, Window};
use ledge_protocol::wasm_abi::{self, INPUT_HEADER_BYTES, InputHeader, OutputEntry, PluginKind};

pub use crate::module_check::check_module;
use crate::output::OutputRecord;
use crate::runtime::{Plugin, init_plugin, process_batch};
use crate::stateful::{
    AggregatePlugin, JoinPlugin, aggregate_call, join_call, merge_call, state_check_call,
};

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
    /// `KEY` (an aggregate's `group_by`): the record's group key.
    Key(Vec<u8>),
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

/// What an aggregate call did to one slot, decoded with the host's checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateChange {
    /// The state did not change.
    Unchanged,
    /// The new state (JSON).
    Put(Vec<u8>),
    /// The state is deleted.
    Delete,
}

/// An aggregate call's answer: per application `Ok` or the fold's error message, per slot its
/// change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateOutcome {
    /// Per application, in order.
    pub applications: Vec<Result<(), String>>,
    /// Per slot, in order.
    pub slots: Vec<StateChange>,
}

impl<P: AggregatePlugin> TestPlugin<P> {
    /// What `ledge_state_schema` answers: the state type's name (and `;schema=` the
    /// attribute's `schema`).
    pub fn state_schema() -> &'static str {
        P::SCHEMA
    }

    /// Runs `ledge_group` over a batch of `records`: per record `Key`, `Drop` or `Error`.
    ///
    /// # Panics
    ///
    /// If the aggregate has no `group_by` (it exports no `ledge_group`), or as
    /// [`TestPlugin::run`].
    pub fn group(&mut self, records: &[OutputRecord]) -> Vec<Outcome> {
        assert!(
            P::GROUPS,
            "this aggregate has no group_by, so no ledge_group"
        );
        self.run(records)
    }

    /// Runs one `ledge_aggregate` call: `records` as the batch, folded into `slots` as
    /// `applications` say; decoded with the host's decoder. `Err` is what would trap the
    /// module or output the host refuses.
    pub fn aggregate(
        &mut self,
        slots: &[Slot<'_>],
        records: &[OutputRecord],
        applications: &[Application],
    ) -> Result<AggregateOutcome, String> {
        let batch = encode_batch(&self.batch, records);
        encode_aggregate_input(slots, &batch, applications, &mut self.input)
            .map_err(|error| error.to_string())?;
        aggregate_call::<P>(&self.state, &self.input, &mut self.output)?;
        let decoded =
            stateful::decode_aggregate_output(&self.output, applications.len(), slots.len())
                .map_err(|error| error.to_string())?;
        Ok(AggregateOutcome {
            applications: decoded
                .applications
                .into_iter()
                .map(|status| status.map_err(str::to_owned))
                .collect(),
            slots: decoded
                .slots
                .into_iter()
                .map(|change| match change {
                    stateful::SlotChange::Unchanged => StateChange::Unchanged,
                    stateful::SlotChange::Put(state) => StateChange::Put(state.to_vec()),
                    stateful::SlotChange::Delete => StateChange::Delete,
                })
                .collect(),
        })
    }

    /// Folds `records` into `table` (group key -> state JSON) as the host would, unwindowed:
    /// each record's key from `ledge_group` (or its own key without `group_by`; a record
    /// without one is an error), one slot per key, one `ledge_aggregate` call. `Err` is the
    /// first record's error (the table is then unchanged), or what would trap the module.
    pub fn fold_into(
        &mut self,
        table: &mut BTreeMap<Vec<u8>, Vec<u8>>,
        records: &[OutputRecord],
    ) -> Result<(), String> {
        let keys: Vec<Option<Vec<u8>>> = if P::GROUPS {
            let outcomes = self.run_batch(&encode_batch(&self.batch, records))?;
            outcomes
                .into_iter()
                .enumerate()
                .map(|(index, outcome)| match outcome {
                    Outcome::Key(key) => Ok(Some(key)),
                    Outcome::Keep => Ok(records.get(index).and_then(|r| r.key.clone())),
                    Outcome::Drop => Ok(None),
                    Outcome::Error(message) => Err(format!("record {index}: {message}")),
                    other => Err(format!("record {index}: ledge_group answered {other:?}")),
                })
                .collect::<Result<_, _>>()?
        } else {
            records.iter().map(|record| record.key.clone()).collect()
        };
        let mut slot_keys: Vec<Vec<u8>> = Vec::new();
        let mut applications = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                if P::GROUPS {
                    continue;
                }
                return Err(format!("record {index} has no key to group by"));
            };
            let slot = match slot_keys.iter().position(|known| known == key) {
                Some(slot) => slot,
                None => {
                    slot_keys.push(key.clone());
                    slot_keys.len() - 1
                }
            };
            applications.push(Application {
                record_index: u32::try_from(index).map_err(|error| error.to_string())?,
                slot_index: u32::try_from(slot).map_err(|error| error.to_string())?,
            });
        }
        let slots: Vec<Slot<'_>> = slot_keys
            .iter()
            .map(|key| Slot {
                key,
                window: None,
                state: table.get(key).map(Vec::as_slice),
            })
            .collect();
        let outcome = self.aggregate(&slots, records, &applications)?;
        for (application, status) in applications.iter().zip(&outcome.applications) {
            if let Err(message) = status {
                return Err(format!("record {}: {message}", application.record_index));
            }
        }
        for (key, change) in slot_keys.into_iter().zip(outcome.slots) {
            match change {
                StateChange::Unchanged => {}
                StateChange::Put(state) => {
                    table.insert(key, state);
                }
                StateChange::Delete => {
                    table.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Runs one `ledge_merge` call: per pair the merged state, or the error message.
    pub fn merge(
        &mut self,
        pairs: &[(&[u8], &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, String>>, String> {
        encode_merge_input(pairs, &mut self.input).map_err(|error| error.to_string())?;
        merge_call::<P>(&self.input, &mut self.output)?;
        let decoded = stateful::decode_merge_output(&self.output, pairs.len())
            .map_err(|error| error.to_string())?;
        Ok(decoded
            .into_iter()
            .map(|result| result.map(<[u8]>::to_vec).map_err(str::to_owned))
            .collect())
    }

    /// Runs one `ledge_state_check` call: per state `Ok`, or why the module cannot read it.
    pub fn check_states(&mut self, states: &[&[u8]]) -> Result<Vec<Result<(), String>>, String> {
        encode_states(states, &mut self.input).map_err(|error| error.to_string())?;
        state_check_call::<P>(&self.input, &mut self.output)?;
        let decoded = stateful::decode_state_check_output(&self.output, states.len())
            .map_err(|error| error.to_string())?;
        Ok(decoded
            .into_iter()
            .map(|status| status.map_err(str::to_owned))
            .collect())
    }
}

impl<P: JoinPlugin> TestPlugin<P> {
    /// Runs one `ledge_join` call: `left` and `right` as the two batches, one outcome per
    /// pair (`Records`, `Drop` or `Error`), decoded with the host's decoder.
    pub fn join(
        &mut self,
        left: &[OutputRecord],
        right: &[OutputRecord],
        pairs: &[JoinPair],
    ) -> Result<Vec<Outcome>, String> {
        let left = encode_batch(&self.batch, left);
        let right = encode_batch(&self.batch, right);
        encode_join_input(&left, &right, pairs, &mut self.input)
            .map_err(|error| error.to_string())?;
        join_call::<P>(&self.state, &self.input, &mut self.output)?;
        let count = u32::try_from(pairs.len()).map_err(|error| error.to_string())?;
        decode_output(PluginKind::Join, &self.output, count, 0)
    }

    /// Joins one left record with one right record (or none) and returns the outcome.
    ///
    /// # Panics
    ///
    /// If the call would trap the module or its output breaks the ABI (a bug in the SDK).
    pub fn join_one(&mut self, left: OutputRecord, right: Option<OutputRecord>) -> Outcome {
        let pair = JoinPair {
            left_index: 0,
            right_index: right.as_ref().map(|_| 0),
        };
        let right: Vec<OutputRecord> = right.into_iter().collect();
        let mut outcomes = self
            .join(std::slice::from_ref(&left), &right, &[pair])
            .unwrap_or_else(|message| panic!("the join failed: {message}"));
        assert_eq!(outcomes.len(), 1, "one outcome per pair");
        outcomes.remove(0)
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
/// bytes break the ABI (the host's reading, `ledge_protocol::wasm_abi::decode_init_result`, plus
/// no bytes after the result, which the SDK never writes).
pub fn decode_init_result(bytes: &[u8]) -> Result<Result<(), String>, String> {
    let result = wasm_abi::decode_init_result(bytes).map_err(|error| error.to_string())?;
    let used = match result {
        Ok(()) => 1,
        Err(message) => 1 + 4 + message.len(),
    };
    if bytes.len() > used {
        return Err(format!(
            "{} bytes after the init result",
            bytes.len() - used
        ));
    }
    Ok(result.map_err(str::to_owned))
}

/// Decodes a batch output with the host's own checks (`ledge_protocol::wasm_abi::decode_output`,
/// the function the node runs): `record_count` entries, tags the kind allows, exactly one record
/// for map and filter_map, partitions below `partition_count`, UTF-8 text, timestamps `-1` or
/// non-negative, no bytes left over.
pub fn decode_output(
    kind: PluginKind,
    output: &[u8],
    record_count: u32,
    partition_count: u32,
) -> Result<Vec<Outcome>, String> {
    let record_count = usize::try_from(record_count).map_err(|error| error.to_string())?;
    let entries = wasm_abi::decode_output(kind, output, record_count, partition_count)
        .map_err(|error| error.to_string())?;
    let owned = |bytes: Option<&[u8]>| bytes.map(<[u8]>::to_vec);
    let outcomes = entries
        .into_iter()
        .map(|entry| match entry {
            OutputEntry::Keep => Outcome::Keep,
            OutputEntry::Drop => Outcome::Drop,
            OutputEntry::Error(message) => Outcome::Error(message.to_owned()),
            OutputEntry::Records(records) => Outcome::Records(
                records
                    .into_iter()
                    .map(|record| OutputRecord {
                        key: owned(record.key),
                        value: owned(record.value),
                        headers: record
                            .headers
                            .into_iter()
                            .map(|(key, value)| (key.to_owned(), owned(value)))
                            .collect(),
                        timestamp: record.timestamp,
                    })
                    .collect(),
            ),
            OutputEntry::Partition(partition) => Outcome::Partition(partition),
            OutputEntry::Key(key) => Outcome::Key(key.to_vec()),
        })
        .collect();
    Ok(outcomes)
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
