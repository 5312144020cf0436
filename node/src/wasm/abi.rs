//! The host side of the plug-in ABI (docs/WASM-ABI.md): building input batches and
//! parameter blocks, and reading a guest's output back. Pure; no wasmtime here.
//!
//! The ABI's numbers and shared layouts (version, input header, tags, [`PluginKind`]) live in
//! `ledge_protocol::wasm_abi`, which the guest SDK links too; this file is what only the host
//! does with them.
//!
//! Nothing the guest returns is trusted: every count and length is checked against the
//! bytes that remain, tags are checked against what the module's kind may return, and an
//! output that does not parse is [`AbiError`] ("garbage"), which fails the batch like a trap.

use bytes::Bytes;
use ledge_protocol::Header;
use ledge_protocol::wasm_abi::stateful;
pub use ledge_protocol::wasm_abi::stateful::{Application, JoinPair, Slot, Window};
use ledge_protocol::wasm_abi::{self, OutputEntry};
pub use ledge_protocol::wasm_abi::{ABI_VERSION, INPUT_HEADER_BYTES, PluginKind};

/// Output that breaks the ABI: the batch fails as if the module had trapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("module returned malformed output: {0}")]
pub struct AbiError(pub String);

fn garbage(message: impl Into<String>) -> AbiError {
    AbiError(message.into())
}

/// The fixed part of an input batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InputHeader {
    /// Source partition (0 on produce).
    pub partition: u32,
    /// Partitions of the target (partitioner) or source topic.
    pub partition_count: u32,
    /// Offset the record offset deltas are relative to.
    pub base_offset: i64,
    /// Timestamp the record timestamp deltas are relative to.
    pub base_timestamp: i64,
}

/// Writes an input batch: the header (its layout is `ledge_protocol::wasm_abi::InputHeader`,
/// the one the guest SDK reads), then `records` (a Kafka v2 records region holding
/// `record_count` records) as is.
pub fn encode_input(header: &InputHeader, record_count: u32, records: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(INPUT_HEADER_BYTES + records.len());
    let header = wasm_abi::InputHeader {
        record_count,
        partition: header.partition,
        partition_count: header.partition_count,
        base_offset: header.base_offset,
        base_timestamp: header.base_timestamp,
    };
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(records);
}

/// The parameter block `ledge_init` receives.
pub fn encode_params(params: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len_u32(params.len()).to_le_bytes());
    for (key, value) in params {
        out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn len_u32(len: usize) -> u32 {
    // Parameters are bounded by the request frame, far below 4 GiB.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The byte span of each record in a records region, so a big batch can be handed to the
/// guest in chunks without re-encoding (deltas stay relative to the same base).
pub fn record_spans(region: &[u8], record_count: usize) -> Result<Vec<(usize, usize)>, AbiError> {
    let mut spans = Vec::with_capacity(record_count.min(region.len() / 7 + 1));
    let mut position = 0usize;
    for index in 0..record_count {
        let mut rest = region.get(position..).unwrap_or_default();
        let before = rest.len();
        let length = ledge_protocol::varint::read_varint(&mut rest)
            .map_err(|_| garbage(format!("record {index}: bad length varint")))?;
        let width = before - rest.len();
        let length = usize::try_from(length)
            .map_err(|_| garbage(format!("record {index}: negative length")))?;
        let end = position
            .checked_add(width)
            .and_then(|start| start.checked_add(length))
            .filter(|end| *end <= region.len())
            .ok_or_else(|| garbage(format!("record {index}: length past the region")))?;
        spans.push((position, end));
        position = end;
    }
    Ok(spans)
}

/// A record a module produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord {
    /// `None` keeps the input record's timestamp.
    pub timestamp: Option<i64>,
    /// The key; `None` is null.
    pub key: Option<Bytes>,
    /// The value; `None` is null.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<Header>,
}

/// What a module decided for one input record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Unchanged.
    Keep,
    /// Removed.
    Drop,
    /// This record failed, with the module's message.
    Error(String),
    /// Replaced by these records.
    Records(Vec<OutputRecord>),
    /// Goes to this partition.
    Partition(u32),
}

/// Reads `ledge_init`'s result: `Ok(Err(message))` is the module refusing its parameters.
pub fn decode_init_result(output: Bytes) -> Result<Result<(), String>, AbiError> {
    match wasm_abi::decode_init_result(&output) {
        Ok(result) => Ok(result.map_err(str::to_string)),
        Err(error) => Err(AbiError(error.0)),
    }
}

/// Reads a batch's output: one outcome per input record, each allowed for `kind`
/// (`ledge_protocol::wasm_abi::decode_output`, the checks the SDK's test harness applies too).
/// Keys, values and header values are slices of `output`, not copies.
pub fn decode_output(
    kind: PluginKind,
    output: Bytes,
    record_count: usize,
    partition_count: u32,
) -> Result<Vec<Outcome>, AbiError> {
    let entries = wasm_abi::decode_output(kind, &output, record_count, partition_count)
        .map_err(|error| AbiError(error.0))?;
    let owned = |bytes: Option<&[u8]>| bytes.map(|bytes| output.slice_ref(bytes));
    entries
        .into_iter()
        .map(|entry| match entry {
            OutputEntry::Keep => Ok(Outcome::Keep),
            OutputEntry::Drop => Ok(Outcome::Drop),
            OutputEntry::Error(message) => Ok(Outcome::Error(message.to_string())),
            OutputEntry::Records(records) => Ok(Outcome::Records(
                records
                    .into_iter()
                    .map(|record| OutputRecord {
                        timestamp: record.timestamp,
                        key: owned(record.key),
                        value: owned(record.value),
                        headers: record
                            .headers
                            .into_iter()
                            .map(|(key, value)| Header {
                                key: key.to_string(),
                                value: owned(value),
                            })
                            .collect(),
                    })
                    .collect(),
            )),
            OutputEntry::Partition(partition) => Ok(Outcome::Partition(partition)),
            // Only `ledge_group` returns keys; it is read by `decode_group_output`.
            OutputEntry::Key(_) => Err(garbage("a KEY entry outside ledge_group's output")),
        })
        .collect()
}

/// What `ledge_group` decided for one record of an aggregate's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Grouped by the record's own key.
    Keep,
    /// Not aggregated.
    Drop,
    /// This record failed, with the module's message.
    Error(String),
    /// Grouped by this key (a slice of the output buffer).
    Key(Bytes),
}

/// Reads `ledge_group`'s output: one entry per input record, each `KEEP`, `DROP`, `ERROR` or
/// `KEY` (docs/STREAMS.md), with the batch output's checks.
pub fn decode_group_output(
    output: Bytes,
    record_count: usize,
) -> Result<Vec<GroupOutcome>, AbiError> {
    let entries = wasm_abi::decode_output(PluginKind::Aggregate, &output, record_count, 0)
        .map_err(|error| AbiError(error.0))?;
    entries
        .into_iter()
        .map(|entry| match entry {
            OutputEntry::Keep => Ok(GroupOutcome::Keep),
            OutputEntry::Drop => Ok(GroupOutcome::Drop),
            OutputEntry::Error(message) => Ok(GroupOutcome::Error(message.to_string())),
            OutputEntry::Key(key) => Ok(GroupOutcome::Key(output.slice_ref(key))),
            // `allows_tag` already refused these for an aggregate.
            OutputEntry::Records(_) | OutputEntry::Partition(_) => {
                Err(garbage("ledge_group returned records or a partition"))
            }
        })
        .collect()
}

/// What an aggregate call did to one slot; a new state is a slice of the output buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotChange {
    /// Unchanged.
    Unchanged,
    /// The new state.
    Put(Bytes),
    /// Deleted.
    Delete,
}

/// `ledge_aggregate`'s output: per application `Ok` or the module's message, per slot its
/// change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateOutput {
    /// Per application, in input order.
    pub applications: Vec<Result<(), String>>,
    /// Per slot, in input order.
    pub slots: Vec<SlotChange>,
}

/// Reads `ledge_aggregate`'s output (`ledge_protocol::wasm_abi::stateful`'s checks).
pub fn decode_aggregate_output(
    output: Bytes,
    application_count: usize,
    slot_count: usize,
) -> Result<AggregateOutput, AbiError> {
    let decoded = stateful::decode_aggregate_output(&output, application_count, slot_count)
        .map_err(|error| AbiError(error.0))?;
    Ok(AggregateOutput {
        applications: decoded
            .applications
            .into_iter()
            .map(|status| status.map_err(str::to_string))
            .collect(),
        slots: decoded
            .slots
            .into_iter()
            .map(|change| match change {
                stateful::SlotChange::Unchanged => SlotChange::Unchanged,
                stateful::SlotChange::Put(state) => SlotChange::Put(output.slice_ref(state)),
                stateful::SlotChange::Delete => SlotChange::Delete,
            })
            .collect(),
    })
}

/// Reads `ledge_merge`'s output: per pair the merged state or the module's message.
pub fn decode_merge_output(
    output: Bytes,
    pair_count: usize,
) -> Result<Vec<Result<Bytes, String>>, AbiError> {
    let decoded =
        stateful::decode_merge_output(&output, pair_count).map_err(|error| AbiError(error.0))?;
    Ok(decoded
        .into_iter()
        .map(|result| {
            result
                .map(|state| output.slice_ref(state))
                .map_err(str::to_string)
        })
        .collect())
}

/// Reads `ledge_state_check`'s output: per state `Ok`, or why the module cannot read it.
pub fn decode_state_check_output(
    output: &[u8],
    state_count: usize,
) -> Result<Vec<Result<(), String>>, AbiError> {
    let decoded = stateful::decode_state_check_output(output, state_count)
        .map_err(|error| AbiError(error.0))?;
    Ok(decoded
        .into_iter()
        .map(|status| status.map_err(str::to_string))
        .collect())
}

/// Reads `ledge_join`'s output: one outcome per pair, each `DROP`, `ERROR` or `RECORDS`.
pub fn decode_join_output(output: Bytes, pair_count: usize) -> Result<Vec<Outcome>, AbiError> {
    decode_output(PluginKind::Join, output, pair_count, 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use ledge_protocol::wasm_abi::{TAG_DROP, TAG_ERROR, TAG_KEEP, TAG_PARTITION, TAG_RECORDS};

    use super::*;

    /// Encodes outputs the way a guest would (test side of the ABI).
    pub(crate) fn encode_output(outcomes: &[Outcome]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&len_u32(outcomes.len()).to_le_bytes());
        for outcome in outcomes {
            match outcome {
                Outcome::Keep => out.push(TAG_KEEP),
                Outcome::Drop => out.push(TAG_DROP),
                Outcome::Error(message) => {
                    out.push(TAG_ERROR);
                    out.extend_from_slice(&len_u32(message.len()).to_le_bytes());
                    out.extend_from_slice(message.as_bytes());
                }
                Outcome::Records(records) => {
                    out.push(TAG_RECORDS);
                    out.extend_from_slice(&len_u32(records.len()).to_le_bytes());
                    for record in records {
                        out.extend_from_slice(&record.timestamp.unwrap_or(-1).to_le_bytes());
                        for field in [&record.key, &record.value] {
                            put_nullable(&mut out, field.as_ref());
                        }
                        out.extend_from_slice(&len_u32(record.headers.len()).to_le_bytes());
                        for header in &record.headers {
                            out.extend_from_slice(&len_u32(header.key.len()).to_le_bytes());
                            out.extend_from_slice(header.key.as_bytes());
                            put_nullable(&mut out, header.value.as_ref());
                        }
                    }
                }
                Outcome::Partition(partition) => {
                    out.push(TAG_PARTITION);
                    out.extend_from_slice(&partition.to_le_bytes());
                }
            }
        }
        out
    }

    fn put_nullable(out: &mut Vec<u8>, value: Option<&Bytes>) {
        match value {
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }

    fn record(value: &str) -> OutputRecord {
        OutputRecord {
            timestamp: Some(5),
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![Header {
                key: "h".into(),
                value: None,
            }],
        }
    }

    #[test]
    fn every_outcome_round_trips() {
        let outcomes = vec![
            Outcome::Keep,
            Outcome::Drop,
            Outcome::Error("bad amount".into()),
            Outcome::Records(vec![record("a"), record("bc")]),
            Outcome::Records(vec![]),
        ];
        let bytes = Bytes::from(encode_output(&outcomes));
        let decoded = decode_output(PluginKind::FlatMap, bytes, 5, 0).unwrap();
        assert_eq!(decoded, outcomes);
    }

    #[test]
    fn kinds_refuse_outcomes_they_may_not_return() {
        let cases = [
            (PluginKind::Filter, Outcome::Records(vec![record("x")])),
            (PluginKind::Map, Outcome::Drop),
            (PluginKind::Map, Outcome::Records(vec![])),
            (
                PluginKind::FilterMap,
                Outcome::Records(vec![record("a"), record("b")]),
            ),
            (PluginKind::Partitioner, Outcome::Keep),
            (PluginKind::Filter, Outcome::Partition(0)),
            (PluginKind::Partitioner, Outcome::Partition(3)),
        ];
        for (kind, outcome) in cases {
            let bytes = Bytes::from(encode_output(std::slice::from_ref(&outcome)));
            let error = decode_output(kind, bytes, 1, 3).unwrap_err();
            assert!(error.0.contains("entry 0"), "{kind}: {error}");
        }
        let ok = Bytes::from(encode_output(&[Outcome::Partition(2)]));
        assert_eq!(
            decode_output(PluginKind::Partitioner, ok, 1, 3).unwrap(),
            vec![Outcome::Partition(2)]
        );
    }

    #[test]
    fn truncated_or_padded_output_is_garbage() {
        let outcomes = vec![Outcome::Records(vec![record("value")]), Outcome::Keep];
        let full = encode_output(&outcomes);
        for cut in 0..full.len() {
            let bytes = Bytes::copy_from_slice(&full[..cut]);
            assert!(
                decode_output(PluginKind::FlatMap, bytes, 2, 0).is_err(),
                "{cut}"
            );
        }
        let mut padded = full.clone();
        padded.push(0);
        assert!(decode_output(PluginKind::FlatMap, Bytes::from(padded), 2, 0).is_err());
        // A wrong entry count, and a huge claimed record count, fail without allocating.
        assert!(decode_output(PluginKind::FlatMap, Bytes::from(full), 3, 0).is_err());
        let mut huge = Vec::new();
        huge.extend_from_slice(&1u32.to_le_bytes());
        huge.push(TAG_RECORDS);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_output(PluginKind::FlatMap, Bytes::from(huge), 1, 0).is_err());
    }

    #[test]
    fn record_spans_follow_length_varints() {
        let batch = ledge_protocol::encode_batch(
            &[
                ledge_protocol::Record {
                    value: Some(Bytes::from_static(b"one")),
                    ..Default::default()
                },
                ledge_protocol::Record {
                    value: Some(Bytes::from(vec![7u8; 300])),
                    ..Default::default()
                },
            ],
            &ledge_protocol::EncodeOptions::default(),
        )
        .unwrap();
        let region = &batch[ledge_protocol::BATCH_HEADER_BYTES..];
        let spans = record_spans(region, 2).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].0, 0);
        assert_eq!(spans[0].1, spans[1].0);
        assert_eq!(spans[1].1, region.len());
        assert!(record_spans(region, 3).is_err());
        assert!(record_spans(&region[..region.len() - 1], 2).is_err());
    }

    #[test]
    fn kind_names_parse() {
        for kind in PluginKind::ALL {
            assert_eq!(kind.as_str().parse::<PluginKind>().unwrap(), kind);
        }
        assert_eq!(
            "flat-map".parse::<PluginKind>().unwrap(),
            PluginKind::FlatMap
        );
        assert!("reduce".parse::<PluginKind>().is_err());
    }

    // Goal: metadata.json keeps kinds and error policies by name, as data directories written
    // before kinds had wire numbers store them, so those directories still load; and what the
    // node writes now reads back the same way. Method: a metadata.json fragment in the old
    // form, every kind and policy.
    #[test]
    fn metadata_json_stores_kinds_and_policies_by_name() {
        use crate::broker::metadata::StoredMetadata;
        use ledge_protocol::OnError;

        let hash = "ab".repeat(32);
        let module = |kind: &str| {
            format!(
                r#"{{"hash": "{hash}", "kind": "{kind}", "size_bytes": 8, "params": {{}}, "uploaded_ms": 1}}"#
            )
        };
        let modules: Vec<String> = PluginKind::ALL
            .iter()
            .map(|kind| format!(r#""{kind}": {}"#, module(kind.as_str())))
            .collect();
        let transforms: Vec<String> = OnError::ALL
            .iter()
            .map(|policy| {
                format!(
                    r#""t-{policy}": {{"module": {}, "input": "in", "output": "out",
                        "dead_letter_topic": "dl", "on_error": "{policy}", "version": 1,
                        "stopped": null}}"#,
                    module("flat_map")
                )
            })
            .collect();
        let text = format!(
            r#"{{"version": 1, "topics": {{}}, "producer_ids_reserved_until": 1000,
                "modules": {{{}}}, "transforms": {{{}}}}}"#,
            modules.join(","),
            transforms.join(",")
        );
        let metadata: StoredMetadata = serde_json::from_str(&text).unwrap();
        for kind in PluginKind::ALL {
            assert_eq!(metadata.modules[kind.as_str()].kind, kind);
        }
        for policy in OnError::ALL {
            let transform = &metadata.transforms[&format!("t-{policy}")];
            assert_eq!(transform.on_error, policy);
            assert_eq!(transform.module.kind, PluginKind::FlatMap);
        }
        let written = serde_json::to_value(&metadata).unwrap();
        assert_eq!(written["modules"]["filter_map"]["kind"], "filter_map");
        assert_eq!(
            written["transforms"]["t-dead-letter"]["on_error"],
            "dead-letter"
        );
        let unknown = text.replace(r#""kind": "partitioner""#, r#""kind": "reduce""#);
        let error = serde_json::from_str::<StoredMetadata>(&unknown).unwrap_err();
        assert!(error.to_string().contains("reduce"), "{error}");
    }

    #[test]
    fn init_results_decode() {
        assert_eq!(
            decode_init_result(Bytes::from_static(&[0])).unwrap(),
            Ok(())
        );
        let mut error = vec![1u8];
        error.extend_from_slice(&4u32.to_le_bytes());
        error.extend_from_slice(b"nope");
        assert_eq!(
            decode_init_result(Bytes::from(error)).unwrap(),
            Err("nope".to_string())
        );
        assert!(decode_init_result(Bytes::new()).is_err());
        assert!(decode_init_result(Bytes::from_static(&[9])).is_err());
    }
}
