use super::*;

fn entries(write: impl FnOnce(&mut Entries<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut Entries::new(&mut out, 4));
    out
}

fn le32(value: u32) -> [u8; 4] {
    value.to_le_bytes()
}

// Each entry's bytes, spelled out against the ABI's layout.
#[test]
fn entries_have_the_documented_layout() {
    assert_eq!(entries(|e| e.filter(true)), [TAG_KEEP]);
    assert_eq!(entries(|e| e.filter(false)), [TAG_DROP]);
    let error = entries(|e| e.filter(Err::<bool, _>("bad amount")));
    assert_eq!(error[0], TAG_ERROR);
    assert_eq!(error[1..5], le32(10));
    assert_eq!(&error[5..], b"bad amount");

    assert_eq!(entries(|e| e.partition(3u32)), [TAG_PARTITION, 3, 0, 0, 0]);
    assert_eq!(entries(|e| e.filter_map(None::<OutputRecord>)), [TAG_DROP]);
    assert_eq!(entries(|e| e.flat_map(Vec::new())), [TAG_DROP]);

    let record = OutputRecord::new()
        .with_key("k")
        .with_header("h", "v")
        .with_null_header("n")
        .with_timestamp(7);
    let mut expected = vec![TAG_RECORDS];
    expected.extend_from_slice(&le32(1));
    expected.extend_from_slice(&7i64.to_le_bytes());
    expected.extend_from_slice(&1i32.to_le_bytes());
    expected.extend_from_slice(b"k");
    expected.extend_from_slice(&(-1i32).to_le_bytes()); // null value
    expected.extend_from_slice(&le32(2));
    expected.extend_from_slice(&le32(1));
    expected.extend_from_slice(b"h");
    expected.extend_from_slice(&1i32.to_le_bytes());
    expected.extend_from_slice(b"v");
    expected.extend_from_slice(&le32(1));
    expected.extend_from_slice(b"n");
    expected.extend_from_slice(&(-1i32).to_le_bytes());
    assert_eq!(entries(|e| e.map(record.clone())), expected);
    assert_eq!(entries(|e| e.filter_map(Some(record.clone()))), expected);
    assert_eq!(entries(|e| e.flat_map(vec![record.clone()])), expected);

    // A timestamp of None is the ABI's -1, "keep the input's".
    let kept = entries(|e| e.map(OutputRecord::new()));
    assert_eq!(kept[5..13], (-1i64).to_le_bytes());
    let two = entries(|e| e.flat_map(vec![OutputRecord::new(), OutputRecord::new()]));
    assert_eq!(two[1..5], le32(2));
}

// Errors from `Result` returns carry their Display text; a partition out of range becomes an
// ERROR for that record rather than output the host would reject as garbage.
#[test]
fn errors_and_out_of_range_partitions_become_error_entries() {
    let message = |bytes: Vec<u8>| {
        assert_eq!(bytes[0], TAG_ERROR);
        String::from_utf8(bytes[5..].to_vec()).unwrap()
    };
    assert_eq!(
        message(entries(|e| e.partition(4u32))),
        "partition 4 is out of range: the topic has 4 partitions"
    );
    assert_eq!(
        message(entries(|e| e.partition(Err::<u32, _>("no key")))),
        "no key"
    );
    assert_eq!(
        message(entries(|e| e.map(Err::<OutputRecord, _>(std::fmt::Error)))),
        "an error occurred when formatting an argument"
    );
}

// Long messages are cut at a character boundary at or below the limit.
#[test]
fn long_messages_are_cut_on_a_char_boundary() {
    let long = "é".repeat(ERROR_MESSAGE_BYTES_MAX); // two bytes each
    let bytes = entries(|e| e.error(&long));
    let length = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(length, ERROR_MESSAGE_BYTES_MAX);
    assert!(std::str::from_utf8(&bytes[5..]).is_ok());

    let odd = format!("x{long}");
    let bytes = entries(|e| e.error(&odd));
    let length = u32::from_le_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(length, ERROR_MESSAGE_BYTES_MAX - 1);
    assert!(std::str::from_utf8(&bytes[5..]).is_ok());
}

#[test]
fn init_results_have_the_documented_layout() {
    let mut out = Vec::new();
    write_init_result(&mut out, Ok(()));
    assert_eq!(out, [INIT_OK]);
    out.clear();
    write_init_result(&mut out, Err("missing parameter `x`"));
    assert_eq!(out[0], INIT_ERROR);
    assert_eq!(out[1..5], le32(21));
    assert_eq!(&out[5..], b"missing parameter `x`");
}

// Goal: a negative output timestamp other than -1 ("keep the input's") fails that one record
// with an ERROR entry, instead of output the host refuses, which would fail the whole batch.
// Method: the entry, decoded with the host's own decoder.
#[test]
fn a_negative_output_timestamp_fails_only_its_record() {
    let past = OutputRecord::new().with_value("v").with_timestamp(-5);
    let mut out = 2u32.to_le_bytes().to_vec();
    {
        let mut entries = Entries::new(&mut out, 1);
        entries.map(past);
        entries.map(OutputRecord::new().with_timestamp(-1));
    }
    let outcomes = crate::testing::decode_output(ledge_protocol::PluginKind::Map, &out, 2, 1);
    assert_eq!(
        outcomes,
        Ok(vec![
            crate::testing::Outcome::Error(
                "output timestamp -5 is negative (milliseconds since the Unix epoch)".into()
            ),
            crate::testing::Outcome::Records(vec![OutputRecord::new()]),
        ])
    );
}
