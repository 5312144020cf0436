//! `plugin_output`: what a WASM plug-in hands back to the host
//! (`ledge_protocol::wasm_abi::decode_output` and `decode_init_result`, which the node's host
//! runs on every call, `node/src/wasm/abi.rs`). A module is user code: its output buffer is
//! as untrusted as a client's bytes.
//!
//! The first input byte picks what is read: bit 7 set reads the rest as `ledge_init`'s result;
//! bit 6 set reads an output of a stateful call (docs/STREAMS.md; `ledge_protocol::wasm_abi::
//! stateful`): the low two bits pick `ledge_aggregate` (0 and 3), `ledge_merge` (1) or
//! `ledge_state_check` (2), and the next two bytes are the counts the host expects
//! (applications and slots; pairs or states and an unused byte). Otherwise `% 7` picks the
//! plug-in kind (an aggregate's batch output is `ledge_group`'s, a join's is `ledge_join`'s),
//! and the second byte is the topic's partition count. The rest is the output buffer; the
//! record count the host expects is the buffer's own entry count (its first four bytes), so
//! mutations get past the count check to the entries.
//!
//! Oracles besides "no panic": an accepted output writes back to exactly the input bytes (the
//! layout is canonical: docs/WASM-ABI.md "Output"); every accepted entry is one the kind may
//! return (the ABI's tag table, one record from a map or filter_map, a partition below the
//! count); with the `node` feature, the node's own decoder (`ledge_node::wasm::abi`) accepts
//! exactly the same buffers and reads the same entries. An accepted init result is `OK`, or
//! `ERROR` with a UTF-8 message whose bytes are exactly the input's. An accepted stateful
//! output has exactly the expected counts and writes back to the same bytes.

use ledge_protocol::wasm_abi::stateful::{
    self, decode_aggregate_output, decode_merge_output, decode_state_check_output,
    encode_aggregate_output, encode_merge_output, encode_state_check_output,
};
use ledge_protocol::wasm_abi::{
    self, INIT_ERROR, INIT_OK, OutputEntry, PluginKind, TAG_DROP, TAG_ERROR, TAG_KEEP, TAG_KEY,
    TAG_PARTITION, TAG_RECORDS, TIMESTAMP_KEEP,
};

/// Selector bit that reads the input as an init result.
pub const INIT_SELECTOR: u8 = 0x80;
/// Selector bit that reads the input as a stateful call's output.
pub const STATEFUL_SELECTOR: u8 = 0x40;
/// With [`STATEFUL_SELECTOR`]: a `ledge_aggregate` output.
pub const STATEFUL_AGGREGATE: u8 = 0;
/// With [`STATEFUL_SELECTOR`]: a `ledge_merge` output.
pub const STATEFUL_MERGE: u8 = 1;
/// With [`STATEFUL_SELECTOR`]: a `ledge_state_check` output.
pub const STATEFUL_STATE_CHECK: u8 = 2;

/// Whether the decoder `run` picks for `data` accepts it (the seeds' check).
pub fn accepted(data: &[u8]) -> bool {
    match data {
        [selector, rest @ ..] if selector & INIT_SELECTOR != 0 => {
            wasm_abi::decode_init_result(rest).is_ok()
        }
        [selector, a, b, output @ ..] if selector & STATEFUL_SELECTOR != 0 => {
            let (a, b) = (usize::from(*a), usize::from(*b));
            match selector & 3 {
                STATEFUL_MERGE => decode_merge_output(output, a).is_ok(),
                STATEFUL_STATE_CHECK => decode_state_check_output(output, a).is_ok(),
                _ => decode_aggregate_output(output, a, b).is_ok(),
            }
        }
        [selector, _, ..] if selector & STATEFUL_SELECTOR != 0 => false,
        [selector, partitions, output @ ..] => wasm_abi::decode_output(
            PluginKind::ALL[usize::from(*selector) % PluginKind::ALL.len()],
            output,
            declared_count(output),
            u32::from(*partitions),
        )
        .is_ok(),
        _ => false,
    }
}

/// Runs one input; panics when an oracle fails.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & INIT_SELECTOR != 0 {
        return run_init(rest);
    }
    if selector & STATEFUL_SELECTOR != 0 {
        return run_stateful(selector & 3, rest);
    }
    let Some((&partition_count, output)) = rest.split_first() else {
        return;
    };
    let kind = PluginKind::ALL[usize::from(selector) % PluginKind::ALL.len()];
    let partition_count = u32::from(partition_count);
    let record_count = declared_count(output);
    let decoded = wasm_abi::decode_output(kind, output, record_count, partition_count);
    #[cfg(feature = "node")]
    node_agrees(kind, output, record_count, partition_count, &decoded);
    let Ok(entries) = decoded else {
        return;
    };
    assert_eq!(entries.len(), record_count, "one entry per input record");
    for entry in &entries {
        check_allowed(kind, entry, partition_count);
    }
    assert_eq!(
        encode_output(&entries),
        output,
        "an accepted output writes back to the same bytes"
    );
}

/// The entry count an output starts with (0 when it is shorter than the count).
pub fn declared_count(output: &[u8]) -> usize {
    output.get(..4).map_or(0, |bytes| {
        u32::from_le_bytes(bytes.try_into().unwrap()) as usize
    })
}

fn run_init(output: &[u8]) {
    match wasm_abi::decode_init_result(output) {
        Ok(Ok(())) => assert_eq!(output.first(), Some(&INIT_OK)),
        Ok(Err(message)) => {
            assert_eq!(output.first(), Some(&INIT_ERROR));
            let len = u32::from_le_bytes(output[1..5].try_into().unwrap()) as usize;
            assert_eq!(message.as_bytes(), &output[5..5 + len]);
        }
        Err(error) => assert!(!error.0.is_empty(), "a refusal says why"),
    }
}

fn run_stateful(which: u8, data: &[u8]) {
    let [a, b, output @ ..] = data else {
        return;
    };
    let (a, b) = (usize::from(*a), usize::from(*b));
    let mut written = Vec::new();
    match which {
        STATEFUL_MERGE => {
            let decoded = decode_merge_output(output, a);
            #[cfg(feature = "node")]
            {
                let node = ledge_node::wasm::abi::decode_merge_output(
                    bytes::Bytes::copy_from_slice(output),
                    a,
                );
                assert_eq!(
                    decoded.is_ok(),
                    node.is_ok(),
                    "node and ABI decoders disagree"
                );
            }
            let Ok(results) = decoded else {
                return;
            };
            assert_eq!(results.len(), a);
            encode_merge_output(&results, &mut written).unwrap();
        }
        STATEFUL_STATE_CHECK => {
            let decoded = decode_state_check_output(output, a);
            #[cfg(feature = "node")]
            {
                let node = ledge_node::wasm::abi::decode_state_check_output(output, a);
                assert_eq!(
                    decoded.is_ok(),
                    node.is_ok(),
                    "node and ABI decoders disagree"
                );
            }
            let Ok(results) = decoded else {
                return;
            };
            assert_eq!(results.len(), a);
            encode_state_check_output(&results, &mut written).unwrap();
        }
        _ => {
            let decoded = decode_aggregate_output(output, a, b);
            #[cfg(feature = "node")]
            {
                let node = ledge_node::wasm::abi::decode_aggregate_output(
                    bytes::Bytes::copy_from_slice(output),
                    a,
                    b,
                );
                assert_eq!(
                    decoded.is_ok(),
                    node.is_ok(),
                    "node and ABI decoders disagree"
                );
            }
            let Ok(stateful::AggregateOutput {
                applications,
                slots,
            }) = decoded
            else {
                return;
            };
            assert_eq!((applications.len(), slots.len()), (a, b));
            encode_aggregate_output(&applications, &slots, &mut written).unwrap();
        }
    }
    assert_eq!(
        written, output,
        "an accepted output writes back to the same bytes"
    );
}

fn check_allowed(kind: PluginKind, entry: &OutputEntry<'_>, partition_count: u32) {
    let tag = tag_of(entry);
    assert!(kind.allows_tag(tag), "a {kind} returned tag {tag}");
    match entry {
        OutputEntry::Records(records)
            if matches!(kind, PluginKind::Map | PluginKind::FilterMap) =>
        {
            assert_eq!(records.len(), 1, "a {kind} returns exactly one record");
        }
        OutputEntry::Partition(partition) => assert!(*partition < partition_count),
        OutputEntry::Records(records) => {
            for record in records {
                assert!(record.timestamp.is_none_or(|timestamp| timestamp >= 0));
            }
        }
        _ => {}
    }
}

fn tag_of(entry: &OutputEntry<'_>) -> u8 {
    match entry {
        OutputEntry::Keep => TAG_KEEP,
        OutputEntry::Drop => TAG_DROP,
        OutputEntry::Error(_) => TAG_ERROR,
        OutputEntry::Records(_) => TAG_RECORDS,
        OutputEntry::Partition(_) => TAG_PARTITION,
        OutputEntry::Key(_) => TAG_KEY,
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(bytes) => {
            out.extend_from_slice(&i32::try_from(bytes.len()).unwrap().to_le_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Writes entries in the ABI's output layout (little-endian): the test side of the ABI, as a
/// guest writes it.
pub fn encode_output(entries: &[OutputEntry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, entries.len());
    for entry in entries {
        out.push(tag_of(entry));
        match entry {
            OutputEntry::Keep | OutputEntry::Drop => {}
            OutputEntry::Error(message) => {
                put_len(&mut out, message.len());
                out.extend_from_slice(message.as_bytes());
            }
            OutputEntry::Records(records) => {
                put_len(&mut out, records.len());
                for record in records {
                    out.extend_from_slice(
                        &record.timestamp.unwrap_or(TIMESTAMP_KEEP).to_le_bytes(),
                    );
                    put_nullable(&mut out, record.key);
                    put_nullable(&mut out, record.value);
                    put_len(&mut out, record.headers.len());
                    for (key, value) in &record.headers {
                        put_len(&mut out, key.len());
                        out.extend_from_slice(key.as_bytes());
                        put_nullable(&mut out, *value);
                    }
                }
            }
            OutputEntry::Partition(partition) => out.extend_from_slice(&partition.to_le_bytes()),
            OutputEntry::Key(key) => {
                put_len(&mut out, key.len());
                out.extend_from_slice(key);
            }
        }
    }
    out
}

/// The node's host decoder must accept exactly what the ABI's decoder accepts, with the same
/// entries (its records are slices of the output buffer).
#[cfg(feature = "node")]
fn node_agrees(
    kind: PluginKind,
    output: &[u8],
    record_count: usize,
    partition_count: u32,
    decoded: &Result<Vec<OutputEntry<'_>>, wasm_abi::OutputError>,
) {
    use ledge_node::wasm::abi::{self, GroupOutcome, Outcome};

    if kind == PluginKind::Aggregate {
        // `ledge_group`'s output, read by the node's group decoder.
        let node = abi::decode_group_output(bytes::Bytes::copy_from_slice(output), record_count);
        match (decoded, node) {
            (Err(_), Err(_)) => {}
            (Ok(entries), Ok(outcomes)) => {
                assert_eq!(entries.len(), outcomes.len());
                for (entry, outcome) in entries.iter().zip(&outcomes) {
                    let same = match (entry, outcome) {
                        (OutputEntry::Keep, GroupOutcome::Keep)
                        | (OutputEntry::Drop, GroupOutcome::Drop) => true,
                        (OutputEntry::Error(a), GroupOutcome::Error(b)) => a == b,
                        (OutputEntry::Key(a), GroupOutcome::Key(b)) => a == b,
                        _ => false,
                    };
                    assert!(
                        same,
                        "node and ABI decoders disagree: {entry:?} vs {outcome:?}"
                    );
                }
            }
            (ours, node) => panic!(
                "node and ABI decoders disagree on acceptance: {:?} vs {:?}",
                ours.as_ref().map(Vec::len),
                node.map(|outcomes| outcomes.len())
            ),
        }
        return;
    }
    let node = abi::decode_output(
        kind,
        bytes::Bytes::copy_from_slice(output),
        record_count,
        partition_count,
    );
    match (decoded, node) {
        (Err(_), Err(_)) => {}
        (Ok(entries), Ok(outcomes)) => {
            assert_eq!(entries.len(), outcomes.len());
            for (entry, outcome) in entries.iter().zip(&outcomes) {
                let same = match (entry, outcome) {
                    (OutputEntry::Keep, Outcome::Keep) | (OutputEntry::Drop, Outcome::Drop) => true,
                    (OutputEntry::Error(a), Outcome::Error(b)) => a == b,
                    (OutputEntry::Partition(a), Outcome::Partition(b)) => a == b,
                    (OutputEntry::Records(a), Outcome::Records(b)) => {
                        a.len() == b.len()
                            && a.iter().zip(b).all(|(a, b)| {
                                a.timestamp == b.timestamp
                                    && a.key == b.key.as_deref()
                                    && a.value == b.value.as_deref()
                                    && a.headers.len() == b.headers.len()
                                    && a.headers
                                        .iter()
                                        .zip(&b.headers)
                                        .all(|(a, b)| a.0 == b.key && a.1 == b.value.as_deref())
                            })
                    }
                    _ => false,
                };
                assert!(
                    same,
                    "node and ABI decoders disagree: {entry:?} vs {outcome:?}"
                );
            }
        }
        (ours, node) => panic!(
            "node and ABI decoders disagree on acceptance: {:?} vs {:?}",
            ours.as_ref().map(Vec::len),
            node.map(|outcomes| outcomes.len())
        ),
    }
}
