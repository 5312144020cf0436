use super::*;
use crate::wasm_abi::{self, OutputEntry, PluginKind, TAG_KEY};

/// A batch of `count` one-byte-value records (the record bytes only need to fit the count).
fn batch(count: u32) -> Vec<u8> {
    let mut batch = InputHeader {
        record_count: count,
        ..InputHeader::default()
    }
    .to_bytes()
    .to_vec();
    batch.extend(std::iter::repeat_n(0u8, 7 * count as usize));
    batch
}

#[test]
fn aggregate_input_round_trips_and_checks_indices() {
    let slots = [
        Slot {
            key: b"alice",
            window: None,
            state: Some(b"3"),
        },
        Slot {
            key: b"",
            window: Some(Window {
                start: 0,
                end: 60_000,
            }),
            state: None,
        },
    ];
    let batch = batch(2);
    let applications = [
        Application {
            record_index: 1,
            slot_index: 0,
        },
        Application {
            record_index: 0,
            slot_index: 1,
        },
    ];
    let mut out = Vec::new();
    encode_aggregate_input(&slots, &batch, &applications, &mut out).unwrap();
    let decoded = decode_aggregate_input(&out).unwrap();
    assert_eq!(decoded.slots, slots);
    assert_eq!(decoded.batch, &batch[..]);
    assert_eq!(decoded.applications, applications);
    for cut in 0..out.len() {
        assert!(decode_aggregate_input(&out[..cut]).is_err(), "{cut}");
    }
    let mut padded = out.clone();
    padded.push(0);
    assert!(decode_aggregate_input(&padded).is_err());
    for (record_index, slot_index) in [(2, 0), (0, 2)] {
        let bad = [Application {
            record_index,
            slot_index,
        }];
        encode_aggregate_input(&slots, &batch, &bad, &mut out).unwrap();
        let error = decode_aggregate_input(&out).unwrap_err();
        assert!(error.0.contains("application 0"), "{error}");
    }
    // A claimed slot count the bytes cannot hold is refused before allocating.
    let error = decode_aggregate_input(&u32::MAX.to_le_bytes()).unwrap_err();
    assert!(error.0.contains("cannot fit"), "{error}");
}

#[test]
fn aggregate_output_round_trips_and_is_strict() {
    let applications = [Ok(()), Err("amount is not a number")];
    let slots = [
        SlotChange::Unchanged,
        SlotChange::Put(b"{\"n\":1}"),
        SlotChange::Delete,
    ];
    let mut out = Vec::new();
    encode_aggregate_output(&applications, &slots, &mut out).unwrap();
    let decoded = decode_aggregate_output(&out, 2, 3).unwrap();
    assert_eq!(decoded.applications, applications);
    assert_eq!(decoded.slots, slots);
    for cut in 0..out.len() {
        assert!(decode_aggregate_output(&out[..cut], 2, 3).is_err(), "{cut}");
    }
    assert!(decode_aggregate_output(&out, 2, 2).is_err());
    assert!(decode_aggregate_output(&out, 3, 3).is_err());
    let error = decode_aggregate_output(&[0, 7], 1, 1).unwrap_err();
    assert_eq!(error.0, "slot 0: slot result 7");
    let error = decode_aggregate_output(&[1], 1, 0).unwrap_err();
    assert_eq!(error.0, "application 0: application status 1");
    // A huge claimed state length fails without allocating.
    let mut huge = vec![SLOT_PUT];
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(decode_aggregate_output(&huge, 0, 1).is_err());
}

#[test]
fn merge_and_state_check_layouts_round_trip() {
    let pairs: [(&[u8], &[u8]); 2] = [(b"1", b"2"), (b"", b"{}")];
    let mut out = Vec::new();
    encode_merge_input(&pairs, &mut out).unwrap();
    assert_eq!(decode_merge_input(&out).unwrap(), pairs);
    assert!(decode_merge_input(&out[..out.len() - 1]).is_err());
    let results: [Result<&[u8], &str>; 2] = [Ok(b"3"), Err("cannot merge")];
    encode_merge_output(&results, &mut out).unwrap();
    assert_eq!(decode_merge_output(&out, 2).unwrap(), results);
    assert!(decode_merge_output(&out, 1).is_err());
    assert!(decode_merge_output(&out, 3).is_err());

    let states: [&[u8]; 3] = [b"1", b"x", b""];
    encode_states(&states, &mut out).unwrap();
    assert_eq!(decode_states(&out).unwrap(), states);
    assert!(decode_states(&u32::MAX.to_le_bytes()).is_err());
    let checks = [Ok(()), Err("expected a number"), Ok(())];
    encode_state_check_output(&checks, &mut out).unwrap();
    assert_eq!(decode_state_check_output(&out, 3).unwrap(), checks);
    assert!(decode_state_check_output(&out, 2).is_err());
    assert!(decode_state_check_output(&[2, 1, 0, 0, 0, 0xff], 1).is_err());
}

#[test]
fn join_input_round_trips_and_checks_indices() {
    let (left, right) = (batch(2), batch(1));
    let pairs = [
        JoinPair {
            left_index: 0,
            right_index: Some(0),
        },
        JoinPair {
            left_index: 1,
            right_index: None,
        },
    ];
    let mut out = Vec::new();
    encode_join_input(&left, &right, &pairs, &mut out).unwrap();
    let decoded = decode_join_input(&out).unwrap();
    assert_eq!(decoded.left, &left[..]);
    assert_eq!(decoded.right, &right[..]);
    assert_eq!(decoded.pairs, pairs);
    for cut in 0..out.len() {
        assert!(decode_join_input(&out[..cut]).is_err(), "{cut}");
    }
    let bad = [JoinPair {
        left_index: 0,
        right_index: Some(1),
    }];
    encode_join_input(&left, &right, &bad, &mut out).unwrap();
    assert!(decode_join_input(&out).unwrap_err().0.contains("pair 0"));
}

#[test]
fn group_and_join_outputs_use_the_batch_output_with_their_tags() {
    // ledge_group: KEY entries (tag 5) next to KEEP, DROP, ERROR.
    let mut group = 2u32.to_le_bytes().to_vec();
    group.push(TAG_KEY);
    group.extend_from_slice(&3u32.to_le_bytes());
    group.extend_from_slice(b"c42");
    group.push(wasm_abi::TAG_KEEP);
    let entries = wasm_abi::decode_output(PluginKind::Aggregate, &group, 2, 0).unwrap();
    assert_eq!(entries, [OutputEntry::Key(b"c42"), OutputEntry::Keep]);
    assert!(wasm_abi::decode_output(PluginKind::FlatMap, &group, 2, 0).is_err());
    // ledge_join: a pair has no single input record to KEEP.
    let keep = [1, 0, 0, 0, wasm_abi::TAG_KEEP];
    let error = wasm_abi::decode_output(PluginKind::Join, &keep, 1, 0).unwrap_err();
    assert_eq!(error.0, "entry 0: a join may not return KEEP");
    let drop = [1, 0, 0, 0, wasm_abi::TAG_DROP];
    assert!(wasm_abi::decode_output(PluginKind::Join, &drop, 1, 0).is_ok());
    // A KEY entry cut short.
    let cut = [1, 0, 0, 0, TAG_KEY, 9, 0, 0, 0, b'x'];
    assert!(wasm_abi::decode_output(PluginKind::Aggregate, &cut, 1, 0).is_err());
}

#[test]
fn state_schemas_are_short_utf8() {
    assert_eq!(decode_state_schema(b"u64").unwrap(), "u64");
    assert!(decode_state_schema(b"").is_err());
    assert!(decode_state_schema(&[0xff]).is_err());
    assert!(decode_state_schema(&vec![b'a'; STATE_SCHEMA_BYTES_MAX + 1]).is_err());
}
