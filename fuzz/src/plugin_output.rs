//! `plugin_output`: what a WASM plug-in hands back to the host
//! (`ledge_protocol::wasm_abi::decode_output` and `decode_init_result`, which the node's host
//! runs on every call, `node/src/wasm/abi.rs`). A module is user code: its output buffer is
//! as untrusted as a client's bytes.
//!
//! The first input byte picks what is read: bit 7 set reads the rest as `ledge_init`'s result;
//! otherwise `% 5` picks the plug-in kind, and the second byte is the topic's partition count.
//! The rest is the output buffer; the record count the host expects is the buffer's own entry
//! count (its first four bytes), so mutations get past the count check to the entries.
//!
//! Oracles besides "no panic": an accepted output writes back to exactly the input bytes (the
//! layout is canonical: docs/WASM-ABI.md "Output"); every accepted entry is one the kind may
//! return (the ABI's tag table, one record from a map or filter_map, a partition below the
//! count); with the `node` feature, the node's own decoder (`ledge_node::wasm::abi`) accepts
//! exactly the same buffers and reads the same entries. An accepted init result is `OK`, or
//! `ERROR` with a UTF-8 message whose bytes are exactly the input's.

use ledge_protocol::wasm_abi::{
    self, INIT_ERROR, INIT_OK, OutputEntry, PluginKind, TAG_DROP, TAG_ERROR, TAG_KEEP,
    TAG_PARTITION, TAG_RECORDS, TIMESTAMP_KEEP,
};

/// Selector bit that reads the input as an init result.
pub const INIT_SELECTOR: u8 = 0x80;

/// Runs one input; panics when an oracle fails.
pub fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & INIT_SELECTOR != 0 {
        return run_init(rest);
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
    use ledge_node::wasm::abi::{self, Outcome};

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
