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
    let (header, records) = read_batch_header(batch).map_err(|e| e.to_string())?;
    let mut reader = RecordReader::new(header, records);
    let mut out = Vec::new();
    for _ in 0..header.record_count {
        out.push(reader.next_record().map_err(|e| e.to_string())?);
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

/// A batch header for `count` records followed by `records` raw bytes.
fn raw_batch(count: u32, records: &[u8]) -> Vec<u8> {
    let mut batch = Vec::new();
    batch.extend_from_slice(&count.to_le_bytes());
    batch.extend_from_slice(&0u32.to_le_bytes());
    batch.extend_from_slice(&1u32.to_le_bytes());
    batch.extend_from_slice(&0i64.to_le_bytes());
    batch.extend_from_slice(&0i64.to_le_bytes());
    batch.extend_from_slice(records);
    batch
}

fn first_error(records: &[u8]) -> String {
    // Pad so the record count stays plausible whatever the record's length.
    let mut padded = records.to_vec();
    padded.resize(padded.len().max(7), 0);
    let batch = raw_batch(1, &padded);
    let (header, rest) = read_batch_header(&batch).unwrap();
    RecordReader::new(header, rest)
        .next_record()
        .unwrap_err()
        .to_string()
}

// Each malformed field is named in the error, with the numbers that made it wrong.
#[test]
fn malformed_records_name_the_field() {
    // Zigzag: 0x01 is -1, 0x03 is -2, 0x02 is 1, 0x0a is 5, 0x0c is 6, 0x0e is 7, 0x12 is 9.
    assert_eq!(first_error(&[0x03]), "record: negative length -2");
    assert_eq!(
        first_error(&[0x7e]),
        "record: length 63 exceeds the 6 bytes left"
    );
    assert_eq!(
        first_error(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        "record length: varint too long"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x0a, 0, 0]),
        "key: length 5 exceeds the 2 bytes left"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x01, 0x03, 0]),
        "value: negative length -2"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x01, 0x01, 0x01]),
        "header count: negative length -1"
    );
    // One header whose key is the single byte 0xff.
    assert_eq!(
        first_error(&[0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, 0xff, 0x01]),
        "header key: not UTF-8"
    );
    // Two headers claimed, one present.
    assert_eq!(
        first_error(&[0x12, 0, 0, 0, 0x01, 0x01, 0x04, 0x02, b'h', 0x01]),
        "header key length: the input ends inside it"
    );
    assert_eq!(
        first_error(&[0x0e, 0, 0, 0, 0x01, 0x01, 0x00, 0x00]),
        "record: 1 bytes after the last header"
    );
    // Attributes missing: a record of length 0.
    assert_eq!(first_error(&[0x00]), "attributes: the input ends inside it");
}

// The batch header itself: too short, or a record count no byte count could hold.
#[test]
fn unusable_batch_headers_are_refused() {
    assert_eq!(
        read_batch_header(&[0; 27]).unwrap_err(),
        BatchError::TruncatedHeader { length: 27 }
    );
    assert_eq!(
        read_batch_header(&raw_batch(3, &[0; 20])).unwrap_err(),
        BatchError::ImplausibleCount {
            record_count: 3,
            bytes: 20
        }
    );
    assert!(read_batch_header(&raw_batch(3, &[0; 21])).is_ok());
    assert!(read_batch_header(&raw_batch(0, &[])).is_ok());
}
