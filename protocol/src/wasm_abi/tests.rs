//! The plug-in ABI's shared pieces: the kinds' stable numbers and names, the input header
//! layout, and the input record walk.

use bytes::Bytes;

use super::*;
use crate::{BATCH_HEADER_BYTES, EncodeOptions, Record, RecordField, encode_batch};

// Goal: the protocol numbers are the documented table, each round-trips, and every number
// outside it is refused with an error that names the number and the known kinds.
#[test]
fn plugin_kind_numbers_are_stable_and_round_trip() {
    let table = [
        (0, PluginKind::Filter),
        (1, PluginKind::Map),
        (2, PluginKind::FilterMap),
        (3, PluginKind::FlatMap),
        (4, PluginKind::Partitioner),
        (5, PluginKind::Aggregate),
        (6, PluginKind::Join),
    ];
    assert_eq!(table.len(), PluginKind::ALL.len());
    for (number, kind) in table {
        assert_eq!(kind.number(), number, "{kind}");
        assert_eq!(PluginKind::from_number(number), Ok(kind));
    }
    for number in 7..=u8::MAX {
        let error = PluginKind::from_number(number).unwrap_err();
        assert_eq!(error, UnknownPluginKind(number));
        let message = error.to_string();
        assert!(message.contains(&format!("number {number}")), "{message}");
        assert!(message.contains("6 join"), "{message}");
    }
}

// Goal: the names are the ones configs, the CLI and metadata.json use; `-` stands for `_`; an
// unknown name lists the valid ones.
#[test]
fn plugin_kind_names_round_trip() {
    for kind in PluginKind::ALL {
        assert_eq!(kind.as_str().parse::<PluginKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        assert_eq!(kind.export_name(), format!("ledge_{}", kind.as_str()));
    }
    assert_eq!("filter-map".parse(), Ok(PluginKind::FilterMap));
    let error = "reducer".parse::<PluginKind>().unwrap_err().to_string();
    assert!(error.contains("\"reducer\""), "{error}");
    assert!(
        error.contains("filter, map, filter_map, flat_map, partitioner, aggregate, join"),
        "{error}"
    );
}

// Goal: the tag table of docs/WASM-ABI.md, row by row.
#[test]
fn kinds_allow_the_documented_tags() {
    let tags = [
        TAG_KEEP,
        TAG_DROP,
        TAG_ERROR,
        TAG_RECORDS,
        TAG_PARTITION,
        TAG_KEY,
    ];
    let allowed = |kind: PluginKind| tags.map(|tag| kind.allows_tag(tag));
    let (y, n) = (true, false);
    assert_eq!(allowed(PluginKind::Filter), [y, y, y, n, n, n]);
    assert_eq!(allowed(PluginKind::Map), [y, n, y, y, n, n]);
    assert_eq!(allowed(PluginKind::FilterMap), [y, y, y, y, n, n]);
    assert_eq!(allowed(PluginKind::FlatMap), [y, y, y, y, n, n]);
    assert_eq!(allowed(PluginKind::Partitioner), [n, n, y, n, y, n]);
    assert_eq!(allowed(PluginKind::Aggregate), [y, y, y, n, n, y]);
    assert_eq!(allowed(PluginKind::Join), [n, y, y, y, n, n]);
    for kind in PluginKind::ALL {
        assert!(!kind.allows_tag(6), "{kind}");
        assert_eq!(
            kind.is_stateful(),
            matches!(kind, PluginKind::Aggregate | PluginKind::Join)
        );
    }
    assert_eq!(
        PluginKind::Aggregate.required_exports(),
        ["ledge_state_schema", "ledge_state_check"]
    );
    assert_eq!(
        PluginKind::Aggregate.optional_exports(),
        ["ledge_group", "ledge_merge"]
    );
}

// Goal: the error policies' numbers and names round-trip; unknown ones are refused.
#[test]
fn on_error_numbers_and_names_round_trip() {
    for (number, policy) in [
        (0, OnError::DeadLetter),
        (1, OnError::Skip),
        (2, OnError::Stop),
    ] {
        assert_eq!(policy.number(), number);
        assert_eq!(OnError::from_number(number), Ok(policy));
        assert_eq!(policy.as_str().parse::<OnError>(), Ok(policy));
    }
    assert_eq!(OnError::from_number(3), Err(UnknownOnError(3)));
    assert_eq!("dead_letter".parse(), Ok(OnError::DeadLetter));
    assert_eq!(OnError::default(), OnError::DeadLetter);
    let error = "retry".parse::<OnError>().unwrap_err().to_string();
    assert_eq!(
        error,
        "on_error \"retry\" must be dead-letter, skip or stop"
    );
}

// Goal: the header the host writes is the header the guest reads, and a header that is cut
// short or claims more records than its bytes could hold is refused.
#[test]
fn input_header_round_trips_and_refuses_lies() {
    let header = InputHeader {
        record_count: 2,
        partition: 3,
        partition_count: 8,
        base_offset: -5,
        base_timestamp: 1_700_000_000_000,
    };
    let mut batch = header.to_bytes().to_vec();
    batch.extend_from_slice(&[0; 2 * RECORD_BYTES_MIN]);
    let (read, records) = InputHeader::read(&batch).unwrap();
    assert_eq!(read, header);
    assert_eq!(records.len(), 2 * RECORD_BYTES_MIN);
    assert_eq!(
        InputHeader::read(&batch[..INPUT_HEADER_BYTES - 1]),
        Err(InputBatchError::TruncatedHeader {
            length: INPUT_HEADER_BYTES - 1
        })
    );
    let cut = &batch[..batch.len() - 1];
    assert_eq!(
        InputHeader::read(cut),
        Err(InputBatchError::ImplausibleCount {
            record_count: 2,
            bytes: 2 * RECORD_BYTES_MIN - 1
        })
    );
}

// Goal: the guest walks the records of a real Kafka batch's region with offsets and timestamps
// as `base + delta`, headers intact; a cut record is an error that leaves the reader in place.
#[test]
fn input_records_walk_a_kafka_records_region() {
    let records = [
        Record {
            timestamp: 1_000,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"one")),
            headers: vec![crate::Header {
                key: "h".into(),
                value: None,
            }],
        },
        Record {
            timestamp: 1_250,
            key: None,
            value: None,
            headers: Vec::new(),
        },
    ];
    let batch = encode_batch(&records, &EncodeOptions::default()).unwrap();
    let region = &batch[BATCH_HEADER_BYTES..];
    let header = InputHeader {
        record_count: 2,
        partition: 0,
        partition_count: 1,
        base_offset: 40,
        base_timestamp: 1_000,
    };
    let mut reader = InputRecords::new(header, region);
    let first = reader.next_record().unwrap();
    assert_eq!((first.offset, first.timestamp), (40, 1_000));
    assert_eq!(
        (first.key, first.value),
        (Some(&b"k"[..]), Some(&b"one"[..]))
    );
    let headers: Vec<_> = first.headers().collect();
    assert_eq!(headers.len(), 1);
    assert_eq!((headers[0].key, headers[0].value), ("h", None));
    let second = reader.next_record().unwrap();
    assert_eq!((second.offset, second.timestamp), (41, 1_250));
    assert_eq!((second.key, second.value), (None, None));
    assert_eq!(reader.remaining_bytes(), 0);

    let mut cut = InputRecords::new(header, &region[..region.len() - 1]);
    cut.next_record().unwrap();
    let before = cut.remaining_bytes();
    assert!(matches!(
        cut.next_record(),
        Err(RecordError::LengthOverrun {
            field: RecordField::Length,
            ..
        })
    ));
    assert_eq!(cut.remaining_bytes(), before);
}

/// An input batch header for `count` records followed by `records` raw bytes.
fn raw_batch(count: u32, records: &[u8]) -> Vec<u8> {
    let header = InputHeader {
        record_count: count,
        partition: 0,
        partition_count: 1,
        base_offset: 0,
        base_timestamp: 0,
    };
    let mut batch = header.to_bytes().to_vec();
    batch.extend_from_slice(records);
    batch
}

fn first_error(records: &[u8]) -> String {
    // Pad so the record count stays plausible whatever the record's length.
    let mut padded = records.to_vec();
    padded.resize(padded.len().max(RECORD_BYTES_MIN), 0);
    let batch = raw_batch(1, &padded);
    let (header, rest) = InputHeader::read(&batch).unwrap();
    InputRecords::new(header, rest)
        .next_record()
        .unwrap_err()
        .to_string()
}

// Goal: each malformed field of a record in an input batch is named in the error, with the
// numbers that made it wrong (moved from the guest SDK's own reader, now this one).
#[test]
fn malformed_input_records_name_the_field() {
    // Zigzag: 0x01 is -1, 0x03 is -2, 0x02 is 1, 0x0a is 5, 0x0c is 6, 0x0e is 7, 0x12 is 9.
    assert_eq!(first_error(&[0x03]), "record length has invalid length -2");
    assert_eq!(
        first_error(&[0x7e]),
        "record length of 63 bytes overruns the 6 bytes left"
    );
    assert_eq!(
        first_error(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        "record length varint overflows"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x0a, 0, 0]),
        "key of 5 bytes overruns the 2 bytes left"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x01, 0x03, 0]),
        "value has invalid length -2"
    );
    assert_eq!(
        first_error(&[0x0c, 0, 0, 0, 0x01, 0x01, 0x01]),
        "header count has invalid length -1"
    );
    // One header whose key is the single byte 0xff.
    assert_eq!(
        first_error(&[0x12, 0, 0, 0, 0x01, 0x01, 0x02, 0x02, 0xff, 0x01]),
        "header 0 key is not UTF-8"
    );
    // Two headers claimed, one present.
    assert_eq!(
        first_error(&[0x12, 0, 0, 0, 0x01, 0x01, 0x04, 0x02, b'h', 0x01]),
        "record ends inside header key"
    );
    assert_eq!(
        first_error(&[0x0e, 0, 0, 0, 0x01, 0x01, 0x00, 0x00]),
        "record declares 7 bytes but its fields take 6"
    );
    // Attributes missing: a record of length 0.
    assert_eq!(first_error(&[0x00]), "record ends inside attributes");
}

// Goal: the boundaries of an unusable input header: one byte short, and a record count one
// more than the bytes could hold, are refused; exactly enough bytes, and no records, are not.
#[test]
fn unusable_input_headers_are_refused() {
    assert_eq!(
        InputHeader::read(&[0; INPUT_HEADER_BYTES - 1]).unwrap_err(),
        InputBatchError::TruncatedHeader {
            length: INPUT_HEADER_BYTES - 1
        }
    );
    assert_eq!(
        InputHeader::read(&raw_batch(3, &[0; 20])).unwrap_err(),
        InputBatchError::ImplausibleCount {
            record_count: 3,
            bytes: 20
        }
    );
    assert!(InputHeader::read(&raw_batch(3, &[0; 21])).is_ok());
    assert!(InputHeader::read(&raw_batch(0, &[])).is_ok());
    assert_eq!(
        InputBatchError::TruncatedHeader { length: 27 }.to_string(),
        "malformed input batch: 27 bytes, shorter than the 28-byte batch header"
    );
}

/// A valid output of `count` entries for a flat_map: every tag a flat_map may use, records
/// with keys, values and headers.
fn sample_output() -> Vec<u8> {
    let mut out = 4u32.to_le_bytes().to_vec();
    out.push(TAG_KEEP);
    out.push(TAG_DROP);
    out.push(TAG_ERROR);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(b"bad");
    out.push(TAG_RECORDS);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&TIMESTAMP_KEEP.to_le_bytes());
    out.extend_from_slice(&1i32.to_le_bytes());
    out.extend_from_slice(b"k");
    out.extend_from_slice(&(-1i32).to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(b"h");
    out.extend_from_slice(&2i32.to_le_bytes());
    out.extend_from_slice(b"hv");
    out
}

// Goal: the output decoder reads every field of a valid output, borrowing it.
#[test]
fn output_decodes_every_entry() {
    let output = sample_output();
    let entries = decode_output(PluginKind::FlatMap, &output, 4, 1).unwrap();
    assert_eq!(
        entries,
        [
            OutputEntry::Keep,
            OutputEntry::Drop,
            OutputEntry::Error("bad"),
            OutputEntry::Records(vec![OutputRecordView {
                timestamp: None,
                key: Some(b"k"),
                value: None,
                headers: vec![("h", Some(&b"hv"[..]))],
            }]),
        ]
    );
    // The same bytes are not a filter's answer: it may not return records.
    let error = decode_output(PluginKind::Filter, &output, 4, 1).unwrap_err();
    assert_eq!(error.0, "entry 3: a filter may not return 1 records");
}

// Goal: no byte string makes the guest-facing decoders panic or allocate by a claimed count:
// every cut and seeded single-byte mutations of a valid output, for every kind, and random
// input batches walked record by record. Method: seeded, so a failure replays.
#[test]
fn hostile_output_and_input_never_panic() {
    let output = sample_output();
    for kind in PluginKind::ALL {
        for cut in 0..output.len() {
            assert!(
                decode_output(kind, &output[..cut], 4, 2).is_err(),
                "{kind} {cut}"
            );
        }
    }
    let mut rng = crate::test_support::SplitMix64(12);
    for _ in 0..2_000 {
        let mut mutated = output.clone();
        let at = rng.below(mutated.len());
        mutated[at] = rng.next_u64() as u8;
        for kind in PluginKind::ALL {
            let _ = decode_output(kind, &mutated, 4, 2);
        }
        let _ = decode_init_result(&mutated);

        let length = rng.below(96);
        let random: Vec<u8> = (0..length).map(|_| rng.next_u64() as u8).collect();
        let _ = decode_output(PluginKind::FlatMap, &random, 1, 1);
        let mut input = InputHeader {
            record_count: u32::try_from(rng.below(8)).unwrap(),
            ..InputHeader::default()
        }
        .to_bytes()
        .to_vec();
        input.extend_from_slice(&random);
        if let Ok((header, records)) = InputHeader::read(&input) {
            let mut reader = InputRecords::new(header, records);
            for _ in 0..header.record_count {
                if reader.next_record().is_err() {
                    break;
                }
            }
        }
    }
}
