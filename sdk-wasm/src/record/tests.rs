//! The SDK's accessors over records read from input batches the test helpers write. The
//! reader itself (malformed fields, unusable headers) is tested in ledge-protocol's
//! `wasm_abi/tests.rs`.

use ledge_protocol::wasm_abi::{InputHeader, InputRecords};

use super::*;
use crate::output::OutputRecord;
use crate::testing::{BatchInfo, encode_batch};

fn info() -> BatchInfo {
    BatchInfo {
        partition: 3,
        partition_count: 8,
        base_offset: 1000,
        base_timestamp: 1_700_000_000_000,
    }
}

fn read_all(batch: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let (header, records) = InputHeader::read(batch).map_err(|e| e.to_string())?;
    let mut reader = InputRecords::new(header, records);
    let mut out = Vec::new();
    for _ in 0..header.record_count {
        let view = reader.next_record().map_err(|e| e.to_string())?;
        out.push(Record::new(view, header.partition));
    }
    if reader.remaining_bytes() != 0 {
        return Err(format!("{} bytes left", reader.remaining_bytes()));
    }
    Ok(out)
}

// Every field of a record comes back as encoded: nulls stay distinct from empty, headers keep
// order and duplicates, offsets and timestamps are base plus delta.
#[test]
fn reads_every_field() {
    let batch = encode_batch(
        &info(),
        &[
            OutputRecord::new()
                .with_key("k1")
                .with_value("v1")
                .with_header("trace", "a")
                .with_null_header("empty")
                .with_header("trace", "b")
                .with_timestamp(1_700_000_000_500),
            OutputRecord::new().with_value(""),
            OutputRecord::new().with_timestamp(1_699_999_999_000),
        ],
    );
    let records = read_all(&batch).unwrap();
    assert_eq!(records.len(), 3);

    let first = &records[0];
    assert_eq!(first.key(), Some(&b"k1"[..]));
    assert_eq!(first.key_str(), Some("k1"));
    assert_eq!(first.value_str(), Some("v1"));
    assert_eq!(first.offset(), 1000);
    assert_eq!(first.timestamp(), 1_700_000_000_500);
    assert_eq!(first.partition(), 3);
    let headers: Vec<(&str, Option<&[u8]>)> =
        first.headers().map(|h| (h.key(), h.value())).collect();
    assert_eq!(
        headers,
        [
            ("trace", Some(&b"a"[..])),
            ("empty", None),
            ("trace", Some(&b"b"[..]))
        ]
    );
    assert_eq!(first.headers().len(), 3);
    assert_eq!(first.header("trace").and_then(|h| h.value_str()), Some("b"));
    assert_eq!(first.header("empty").map(|h| h.value()), Some(None));
    assert!(first.header("missing").is_none());

    let second = &records[1];
    assert_eq!(second.key(), None);
    assert_eq!(second.value(), Some(&b""[..]));
    assert_eq!(second.offset(), 1001);
    assert_eq!(second.timestamp(), 1_700_000_000_000);
    assert_eq!(second.headers().count(), 0);

    let third = &records[2];
    assert_eq!(third.value(), None);
    assert_eq!(third.value_str(), None);
    assert_eq!(third.timestamp(), 1_699_999_999_000);
}

// A value that is not UTF-8 reads as bytes; only the `_str` helpers decline it.
#[test]
fn non_utf8_values_are_bytes() {
    let batch = encode_batch(
        &info(),
        &[OutputRecord::new()
            .with_key(vec![0xff])
            .with_value(vec![0xc3])],
    );
    let records = read_all(&batch).unwrap();
    assert_eq!(records[0].value(), Some(&[0xc3][..]));
    assert_eq!(records[0].value_str(), None);
    assert_eq!(records[0].key_str(), None);
}

// Cutting a valid batch anywhere never panics and never yields a record past the cut: either
// the header is unusable, or a record reports what was cut short.
#[test]
fn every_truncation_is_an_error() {
    let batch = encode_batch(
        &info(),
        &[
            OutputRecord::new()
                .with_key("key")
                .with_value("value")
                .with_header("h", "v"),
            OutputRecord::new().with_value("second"),
        ],
    );
    assert!(read_all(&batch).is_ok());
    for cut in 0..batch.len() {
        assert!(read_all(&batch[..cut]).is_err(), "cut at {cut}");
    }
}

// Flipping any single byte of a valid batch never panics (it may still decode).
#[test]
fn corrupted_bytes_never_panic() {
    let batch = encode_batch(
        &info(),
        &[OutputRecord::new()
            .with_key("key")
            .with_value("value")
            .with_header("h", "v")],
    );
    for at in 0..batch.len() {
        for byte in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
            let mut corrupted = batch.clone();
            corrupted[at] = byte;
            let _ = read_all(&corrupted);
        }
    }
}
