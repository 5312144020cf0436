#[cfg(feature = "zstd")]
use std::io::Write as _;

use bytes::BytesMut;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as KafkaCompression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType as KafkaTimestampType,
};
use proptest::prelude::*;

use super::*;
use crate::test_support::{
    arb_record, batch_with_region, edit_header, sample_batch, sample_records,
};

const CODECS: [Compression; 5] = Compression::ALL;

/// One record on the wire: the varint length, then `fields`.
fn raw_record(fields: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint::write_varint(&mut out, i32::try_from(fields.len()).unwrap());
    out.extend_from_slice(fields);
    out
}

/// Record fields after the length: attributes, timestamp delta 0, `offset_delta`, key "k",
/// value "v", then `headers` raw (count included).
fn fields(offset_delta: i32, headers: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0];
    varint::write_varint(&mut out, offset_delta);
    out.extend_from_slice(&[0x02, b'k', 0x02, b'v']);
    out.extend_from_slice(headers);
    out
}

fn decode(batch: &Bytes) -> Result<DecodedBatch, DecodeError> {
    decode_batch(batch, &DecodeLimits::default())
}

fn record_error(batch: &Bytes) -> (usize, RecordError) {
    match decode(batch) {
        Err(DecodeError::Record { index, error }) => (index, error),
        other => panic!("expected a record error, got {other:?}"),
    }
}

fn assert_same_records(decoded: &DecodedBatch, records: &[Record], base_offset: i64) {
    assert_eq!(decoded.records.len(), records.len());
    for (index, (got, want)) in decoded.records.iter().zip(records).enumerate() {
        assert_eq!(got.offset, base_offset + index as i64);
        assert_eq!(got.clone().into_record(), *want, "record {index}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // Arbitrary records round-trip through every codec with the header options intact; the
    // borrowing path (`RecordIter`) agrees with the owning one.
    #[test]
    fn round_trip(
        records in prop::collection::vec(arb_record(), 1..50),
        codec in 0..CODECS.len(),
        producer_id in prop_oneof![Just(NO_PRODUCER_ID), 0..i64::MAX],
        base_sequence in prop_oneof![Just(NO_SEQUENCE), 0..i32::MAX / 2],
        transactional in any::<bool>(),
    ) {
        let options = EncodeOptions {
            compression: CODECS[codec],
            producer_id,
            producer_epoch: 3,
            base_sequence,
            base_offset: 1_000,
            partition_leader_epoch: 9,
            transactional,
            ..EncodeOptions::default()
        };
        let batch = encode_batch(&records, &options).unwrap();
        let decoded = decode(&batch).unwrap();
        let header = decoded.header;
        prop_assert_eq!(header.compression(), Ok(options.compression));
        prop_assert_eq!(header.producer_id, producer_id);
        prop_assert_eq!(header.producer_epoch, 3);
        prop_assert_eq!(header.base_sequence, base_sequence);
        prop_assert_eq!(header.partition_leader_epoch, 9);
        prop_assert_eq!(header.is_transactional(), transactional);
        prop_assert_eq!(header.record_count as usize, records.len());
        prop_assert_eq!(header.last_offset(), 1_000 + records.len() as i64 - 1);
        prop_assert_eq!(header.base_timestamp, records[0].timestamp);
        prop_assert_eq!(
            header.max_timestamp,
            records.iter().map(|record| record.timestamp).max().unwrap()
        );
        assert_same_records(&decoded, &records, 1_000);

        let (_, region) = decompress_records(&batch, &DecodeLimits::default()).unwrap();
        let views: Vec<RecordView<'_>> =
            RecordIter::new(&region, header).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(views.len(), records.len());
        for (view, record) in views.iter().zip(&records) {
            prop_assert_eq!(view.key, record.key.as_deref());
            prop_assert_eq!(view.value, record.value.as_deref());
            let headers: Vec<(&str, Option<&[u8]>)> =
                view.headers().map(|header| (header.key, header.value)).collect();
            let expected: Vec<(&str, Option<&[u8]>)> = record
                .headers
                .iter()
                .map(|header| (header.key.as_str(), header.value.as_deref()))
                .collect();
            prop_assert_eq!(headers, expected);
        }
    }
}

// Uncompressed keys and values are slices of the input buffer, not copies.
#[test]
fn uncompressed_decode_is_zero_copy() {
    let batch = Bytes::from(sample_batch(3));
    let decoded = decode(&batch).unwrap();
    let range = batch.as_ptr_range();
    let key = decoded.records[0].key.as_ref().unwrap();
    assert!(range.contains(&key.as_ptr()));
    let header_value = decoded.records[0].headers[0].value.as_ref().unwrap();
    assert!(range.contains(&header_value.as_ptr()));
}

// Log-append-time batches report the broker's time for every record.
#[test]
fn log_append_time_applies_to_every_record() {
    let mut batch = sample_batch(3);
    crate::set_log_append_time(&mut batch, 42).unwrap();
    let decoded = decode(&Bytes::from(batch)).unwrap();
    assert!(decoded.records.iter().all(|record| record.timestamp == 42));
}

// Compaction can empty a batch and keep it for producer state: zero records, no region, under
// any codec flag.
#[test]
fn empty_batch_decodes_to_no_records() {
    for compression in CODECS {
        let mut batch = batch_with_region(&[], 0, Compression::None).to_vec();
        edit_header(&mut batch, |header| {
            header.attributes = i16::from(compression.code());
            header.last_offset_delta = 7;
        });
        let decoded = decode(&Bytes::from(batch)).unwrap();
        assert!(decoded.records.is_empty(), "{compression:?}");
    }
}

#[test]
fn encode_errors() {
    assert!(matches!(
        encode_batch(&[], &EncodeOptions::default()),
        Err(EncodeError::NoRecords)
    ));
    let far_apart = [
        Record {
            timestamp: i64::MAX,
            ..Record::default()
        },
        Record {
            timestamp: i64::MIN,
            ..Record::default()
        },
    ];
    assert!(matches!(
        encode_batch(&far_apart, &EncodeOptions::default()),
        Err(EncodeError::TimestampOutOfRange {
            index: 1,
            timestamp: i64::MIN
        })
    ));
}

// The batch-level decode errors, one case each.
#[test]
fn decode_batch_errors() {
    let mut corrupt = sample_batch(2);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    assert!(matches!(
        decode(&Bytes::from(corrupt)),
        Err(DecodeError::Batch(BatchError::CrcMismatch { .. }))
    ));

    let mut garbage = batch_with_region(&[0x5a; 40], 1, Compression::None).to_vec();
    edit_header(&mut garbage, |header| {
        header.attributes = i16::from(Compression::Gzip.code());
    });
    assert!(matches!(
        decode(&Bytes::from(garbage)),
        Err(DecodeError::Decompression {
            compression: Compression::Gzip,
            ..
        })
    ));

    let one = raw_record(&fields(0, &[0]));
    assert!(matches!(
        decode(&batch_with_region(&one, 2, Compression::None)),
        Err(DecodeError::MissingRecords {
            record_count: 2,
            found: 1
        })
    ));
    let trailing = [one.clone(), vec![0]].concat();
    assert!(matches!(
        decode(&batch_with_region(&trailing, 1, Compression::None)),
        Err(DecodeError::TrailingRecordBytes { bytes: 1 })
    ));

    let two = [raw_record(&fields(0, &[0])), raw_record(&fields(1, &[0]))].concat();
    let batch = batch_with_region(&two, 2, Compression::Lz4);
    let limits = DecodeLimits {
        records_max: 1,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_batch(&batch, &limits),
        Err(DecodeError::TooManyRecords {
            record_count: 2,
            limit: 1
        })
    ));

    // Three headers over two records, with room for two.
    let two_headers = [0x04, 0x02, b'a', 0x01, 0x02, b'a', 0x01];
    let one_header = [0x02, 0x02, b'b', 0x00];
    let region = [
        raw_record(&fields(0, &two_headers)),
        raw_record(&fields(1, &one_header)),
    ]
    .concat();
    let batch = batch_with_region(&region, 2, Compression::None);
    let limits = DecodeLimits {
        headers_max: 2,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_batch(&batch, &limits),
        Err(DecodeError::TooManyHeaders { limit: 2 })
    ));
    let decoded = decode(&batch).unwrap();
    let keys: Vec<&str> = decoded.records[0]
        .headers
        .iter()
        .map(|header| header.key.as_str())
        .collect();
    assert_eq!(keys, ["a", "a"]);
}

// A bomb: 100 MiB of zeros compress to a few KiB of zstd; with a 1 MiB limit decoding stops at
// the limit instead of allocating 100 MiB.
#[cfg(feature = "zstd")]
#[test]
fn zstd_bomb_hits_the_limit() {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..100 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());

    let mut batch = batch_with_region(&[0x00], 1, Compression::None).to_vec();
    batch.truncate(BATCH_HEADER_BYTES);
    batch.extend_from_slice(&bomb);
    edit_header(&mut batch, |header| {
        header.attributes = i16::from(Compression::Zstd.code());
        header.batch_length = i32::try_from(batch_len_after(&bomb)).unwrap();
    });
    let limits = DecodeLimits {
        decompressed_bytes_max: 1 << 20,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_batch(&Bytes::from(batch), &limits),
        Err(DecodeError::DecompressedTooLarge {
            compression: Compression::Zstd,
            limit: 1_048_576
        })
    ));
}

#[cfg(feature = "zstd")]
fn batch_len_after(region: &[u8]) -> usize {
    BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES + region.len()
}

// Each record-level error, from a hand-written record that breaks exactly one rule.
#[test]
fn record_errors() {
    let cases: Vec<(Vec<u8>, i32, RecordError)> = vec![
        // Record length -2 (zigzag 3).
        (
            vec![0x03],
            1,
            RecordError::BadLength {
                field: RecordField::Length,
                length: -2,
            },
        ),
        // Key length -2.
        (
            raw_record(&[0, 0, 0, 0x03]),
            1,
            RecordError::BadLength {
                field: RecordField::Key,
                length: -2,
            },
        ),
        // Header count -1.
        (
            raw_record(&fields(0, &[0x01])),
            1,
            RecordError::BadLength {
                field: RecordField::HeaderCount,
                length: -1,
            },
        ),
        // Header key null.
        (
            raw_record(&fields(0, &[0x02, 0x01, 0x00])),
            1,
            RecordError::BadLength {
                field: RecordField::HeaderKey,
                length: -1,
            },
        ),
        // Header value length -3.
        (
            raw_record(&fields(0, &[0x02, 0x00, 0x05])),
            1,
            RecordError::BadLength {
                field: RecordField::HeaderValue,
                length: -3,
            },
        ),
        // Offset delta beyond last_offset_delta (0 for one record).
        (
            raw_record(&fields(1, &[0])),
            1,
            RecordError::BadOffsetDelta {
                offset_delta: 1,
                min: 0,
                max: 0,
            },
        ),
        // Header key 0xff is not UTF-8.
        (
            raw_record(&fields(0, &[0x04, 0x00, 0x00, 0x02, 0xff, 0x00])),
            1,
            RecordError::HeaderKeyNotUtf8 { header: 1 },
        ),
        // One byte more declared than the fields use.
        (
            raw_record(&[fields(0, &[0]), vec![0]].concat()),
            1,
            RecordError::LengthMismatch {
                declared: 9,
                consumed: 8,
            },
        ),
        // Record length past the region.
        (
            vec![0x10, 0, 0],
            1,
            RecordError::LengthOverrun {
                field: RecordField::Length,
                length: 8,
                available: 2,
            },
        ),
        // Value length past the record.
        (
            raw_record(&[0, 0, 0, 0x01, 0x10, b'v']),
            1,
            RecordError::LengthOverrun {
                field: RecordField::Value,
                length: 8,
                available: 1,
            },
        ),
        // Attributes only: the record ends inside the timestamp delta.
        (
            raw_record(&[0]),
            1,
            RecordError::Truncated {
                field: RecordField::TimestampDelta,
            },
        ),
        // Empty record: no attributes byte.
        (
            raw_record(&[]),
            1,
            RecordError::Truncated {
                field: RecordField::Attributes,
            },
        ),
        // Offset delta varint of six bytes.
        (
            raw_record(&[0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            1,
            RecordError::VarintOverflow {
                field: RecordField::OffsetDelta,
            },
        ),
    ];
    for (region, record_count, expected) in cases {
        let batch = batch_with_region(&region, record_count, Compression::None);
        assert_eq!(record_error(&batch), (0, expected));
    }

    // Offset deltas must ascend: a repeated delta is rejected at the second record.
    let region = [raw_record(&fields(0, &[0])), raw_record(&fields(0, &[0]))].concat();
    let batch = batch_with_region(&region, 2, Compression::None);
    assert_eq!(
        record_error(&batch),
        (
            1,
            RecordError::BadOffsetDelta {
                offset_delta: 0,
                min: 1,
                max: 1,
            }
        )
    );

    // base_timestamp + delta past i64::MAX.
    let mut batch = batch_with_region(
        &raw_record(&[0, 0x02, 0x00, 0x01, 0x01, 0x00]),
        1,
        Compression::None,
    )
    .to_vec();
    edit_header(&mut batch, |header| {
        header.base_timestamp = i64::MAX;
        header.max_timestamp = i64::MAX;
    });
    assert_eq!(
        record_error(&Bytes::from(batch)),
        (0, RecordError::TimestampOverflow { timestamp_delta: 1 })
    );
}

fn kafka_codec(compression: Compression) -> KafkaCompression {
    match compression {
        Compression::None => KafkaCompression::None,
        Compression::Gzip => KafkaCompression::Gzip,
        Compression::Snappy => KafkaCompression::Snappy,
        Compression::Lz4 => KafkaCompression::Lz4,
        Compression::Zstd => KafkaCompression::Zstd,
    }
}

fn our_codec(compression: KafkaCompression) -> Compression {
    match compression {
        KafkaCompression::None => Compression::None,
        KafkaCompression::Gzip => Compression::Gzip,
        KafkaCompression::Snappy => Compression::Snappy,
        KafkaCompression::Lz4 => Compression::Lz4,
        KafkaCompression::Zstd => Compression::Zstd,
    }
}

/// Records with distinct header keys, which kafka-protocol's `IndexMap` can represent.
fn unique_header_records(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut record| {
            let mut seen = std::collections::BTreeSet::new();
            record
                .headers
                .retain(|header| seen.insert(header.key.clone()));
            record
        })
        .collect()
}

/// kafka-protocol without default features has no codecs; these plug ours in, so the
/// cross-check covers its batch framing around every codec (the codec bytes are ours both
/// ways, checked on their own in `compression::tests`).
fn kafka_decode(batch: &Bytes) -> Vec<KafkaRecord> {
    let mut buf = batch.clone();
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut buf,
        Some(|compressed: &mut Bytes, codec: KafkaCompression| {
            let plain = compression::decompress(our_codec(codec), compressed, 1 << 26).unwrap();
            Ok(Bytes::from(plain))
        }),
    )
    .unwrap();
    assert!(buf.is_empty());
    set.records
}

fn kafka_encode(records: &[KafkaRecord], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: kafka_codec(compression),
    };
    RecordBatchEncoder::encode_with_custom_compression(
        &mut buf,
        records,
        &options,
        Some(
            |plain: &mut BytesMut, out: &mut BytesMut, codec: KafkaCompression| {
                let mut packed = Vec::new();
                compression::compress(our_codec(codec), plain, 1, &mut packed).unwrap();
                out.extend_from_slice(&packed);
                Ok(())
            },
        ),
    )
    .unwrap();
    buf.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // Ours -> kafka-protocol: same offsets, timestamps, keys, values and headers.
    #[test]
    fn kafka_protocol_decodes_our_batches(
        records in prop::collection::vec(arb_record(), 1..20),
        codec in 0..CODECS.len(),
    ) {
        let records = unique_header_records(records);
        let options = EncodeOptions {
            compression: CODECS[codec],
            base_offset: 50,
            ..EncodeOptions::default()
        };
        let batch = encode_batch(&records, &options).unwrap();
        let theirs = kafka_decode(&batch);
        prop_assert_eq!(theirs.len(), records.len());
        for (index, (their, ours)) in theirs.iter().zip(&records).enumerate() {
            prop_assert_eq!(their.offset, 50 + index as i64);
            prop_assert_eq!(their.timestamp, ours.timestamp);
            prop_assert_eq!(&their.key, &ours.key);
            prop_assert_eq!(&their.value, &ours.value);
            let their_headers: Vec<(&str, &Option<Bytes>)> =
                their.headers.iter().map(|(key, value)| (&**key, value)).collect();
            let our_headers: Vec<(&str, &Option<Bytes>)> =
                ours.headers.iter().map(|header| (header.key.as_str(), &header.value)).collect();
            prop_assert_eq!(their_headers, our_headers);
        }
    }

    // kafka-protocol -> ours: the batch validates and decodes to the same records.
    #[test]
    fn we_decode_kafka_protocol_batches(
        records in prop::collection::vec(arb_record(), 1..20),
        codec in 0..CODECS.len(),
    ) {
        let records = unique_header_records(records);
        let theirs: Vec<KafkaRecord> = records
            .iter()
            .enumerate()
            .map(|(index, record)| KafkaRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 4,
                producer_id: 77,
                producer_epoch: 1,
                timestamp_type: KafkaTimestampType::Creation,
                offset: index as i64,
                // Offset minus sequence must be equal across the batch, or it splits.
                sequence: index as i32,
                timestamp: record.timestamp,
                key: record.key.clone(),
                value: record.value.clone(),
                headers: record
                    .headers
                    .iter()
                    .map(|header| (StrBytes::from_string(header.key.clone()), header.value.clone()))
                    .collect(),
            })
            .collect();
        let batch = kafka_encode(&theirs, CODECS[codec]);
        let header = validate_batch(&batch).unwrap();
        prop_assert_eq!(header.producer_id, 77);
        prop_assert_eq!(header.partition_leader_epoch, 4);
        prop_assert_eq!(header.compression(), Ok(CODECS[codec]));
        let decoded = decode(&batch).unwrap();
        assert_same_records(&decoded, &records, 0);
    }
}

// A batch from kafka-protocol's own test suite (fetch_response.rs), decoded by us.
#[test]
fn kafka_protocol_fixture() {
    const FIRST_RECORD: [u8; 79] = [
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x43, 0x0, 0x0, 0x0, 0x0, 0x2, 0x73,
        0x6d, 0x29, 0x7b, 0x0, 0x0, 0x0, 0x0, 0x0, 0x3, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x1, 0x22, 0x1, 0xd0, 0xf, 0x2, 0xa, 0x68, 0x65, 0x6c,
        0x6c, 0x6f, 0xa, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0x0,
    ];
    let batch = Bytes::from_static(&FIRST_RECORD);
    let decoded = decode(&batch).unwrap();
    assert_eq!(decoded.header.last_offset_delta, 3);
    let [record] = &decoded.records[..] else {
        panic!("expected one record: {:?}", decoded.records)
    };
    assert_eq!(record.offset, 1);
    assert_eq!(record.timestamp, 1_000);
    assert_eq!(record.key.as_deref(), Some(&b"hello"[..]));
    assert_eq!(record.value.as_deref(), Some(&b"world"[..]));
    assert!(record.headers.is_empty());
}

// The sample records used across the tests survive a round trip (a readable smoke test).
#[test]
fn sample_round_trip() {
    let records = sample_records(4);
    let batch = Bytes::from(sample_batch(4));
    assert_same_records(&decode(&batch).unwrap(), &records, 0);
}

// Goal: a batch whose `record_count` (with a matching `last_offset_delta`) claims more or
// fewer records than it carries passes the header-only `validate_batch` but is refused by
// `validate_batch_records`, for every codec; a true count passes. This is the
// two-billion-offsets batch of issue 11.
#[test]
fn validate_batch_records_refuses_a_count_that_lies() {
    let unbounded = DecodeLimits {
        records_max: usize::MAX,
        ..DecodeLimits::default()
    };
    for compression in CODECS {
        let honest = Bytes::from(crate::test_support::sample_batch_with(3, compression));
        let header = validate_batch_records(&honest, &DecodeLimits::default()).unwrap();
        assert_eq!(header.record_count, 3, "{compression:?}");

        for claimed in [i32::MAX, 4, 2, 1] {
            let mut lying = honest.to_vec();
            edit_header(&mut lying, |header| {
                header.record_count = claimed;
                header.last_offset_delta = claimed - 1;
            });
            // The header alone agrees with itself: only the record walk can see the lie.
            assert!(validate_batch(&lying).is_ok());
            let error = validate_batch_records(&lying, &unbounded).unwrap_err();
            match claimed {
                i32::MAX | 4 => assert!(
                    matches!(error, DecodeError::MissingRecords { found: 3, .. }),
                    "{compression:?} {claimed}: {error:?}"
                ),
                // Fewer claimed than present: the extra records are trailing bytes (or, with
                // the last offset delta shrunk, an offset delta out of range first).
                _ => assert!(
                    matches!(
                        error,
                        DecodeError::TrailingRecordBytes { .. }
                            | DecodeError::Record {
                                error: RecordError::BadOffsetDelta { .. },
                                ..
                            }
                    ),
                    "{compression:?} {claimed}: {error:?}"
                ),
            }
        }
        let mut huge = honest.to_vec();
        edit_header(&mut huge, |header| {
            header.record_count = i32::MAX;
            header.last_offset_delta = i32::MAX - 1;
        });
        // Under the default limits the claim is refused before any decompression.
        assert!(matches!(
            validate_batch_records(&huge, &DecodeLimits::default()),
            Err(DecodeError::TooManyRecords { .. })
        ));
    }
}

// Goal (issue 11, data item 6, review follow-up): a create-time batch whose header is
// honest-looking (a max timestamp near now) but whose records carry one stamped later than
// that max is refused by `validate_batch_records`, for every codec, so the header bounds
// checked at produce cover every record. Compaction recomputes max_timestamp from records,
// so such a record would otherwise pin time retention later. Records before the base
// timestamp stay legal (Kafka's format: the base is the first record's timestamp and later
// deltas may be negative), and log-append-time batches are not judged (readers report the
// header's time for every record).
#[test]
fn validate_batch_records_refuses_a_record_after_the_header_max_timestamp() {
    let now = 1_765_000_000_000i64;
    let century_ms = 100 * 365 * 24 * 3600 * 1000i64;
    let stamped = |timestamps: &[i64]| -> Vec<Record> {
        timestamps
            .iter()
            .map(|&timestamp| Record {
                timestamp,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
            })
            .collect()
    };
    for compression in CODECS {
        let options = EncodeOptions {
            compression,
            ..EncodeOptions::default()
        };
        let honest = encode_batch(&stamped(&[now, now + 5, now + century_ms]), &options).unwrap();
        assert!(validate_batch_records(&honest, &DecodeLimits::default()).is_ok());
        let mut lying = honest.to_vec();
        edit_header(&mut lying, |header| header.max_timestamp = now + 5);
        assert!(validate_batch(&lying).is_ok());
        let error = validate_batch_records(&lying, &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                error,
                DecodeError::TimestampAfterBatchMax { index: 2, timestamp, max_timestamp }
                    if timestamp == now + century_ms && max_timestamp == now + 5
            ),
            "{compression:?}: {error:?}"
        );
        assert!(error.to_string().contains("max timestamp"), "{error}");
        // The same records in a log-append-time batch are not judged.
        let mut appended = lying.clone();
        crate::set_log_append_time(&mut appended, now).unwrap();
        assert!(validate_batch_records(&appended, &DecodeLimits::default()).is_ok());
        // A record before the first one's timestamp is legal.
        let backwards = encode_batch(&stamped(&[now, now - 1000, now + 5]), &options).unwrap();
        assert!(validate_batch_records(&backwards, &DecodeLimits::default()).is_ok());
    }
}

// Goal: a "poison" batch, a valid CRC over records that do not decode, is refused by
// `validate_batch_records` (issue 11, data item 5), whatever is wrong inside the records;
// an empty batch (what compaction or a filter leaves) passes.
#[test]
fn validate_batch_records_refuses_records_that_do_not_decode() {
    let limits = DecodeLimits::default();
    let poison_regions: [Vec<u8>; 4] = [
        // A record length that overruns the region.
        vec![0x7e, 0, 0],
        // A header count of one with no header bytes.
        raw_record(&fields(0, &[0x02])),
        // A header key that is not UTF-8.
        raw_record(&fields(0, &[0x02, 0x02, 0xff, 0x01])),
        // A negative record length.
        vec![0x01, 0, 0, 0],
    ];
    for compression in CODECS {
        for region in &poison_regions {
            let batch = batch_with_region(region, 1, compression);
            assert!(validate_batch(&batch).is_ok());
            let error = validate_batch_records(&batch, &limits).unwrap_err();
            assert!(
                matches!(error, DecodeError::Record { index: 0, .. }),
                "{compression:?} {region:?}: {error:?}"
            );
        }
        let empty = batch_with_region(&[], 0, compression);
        assert_eq!(
            validate_batch_records(&empty, &limits)
                .unwrap()
                .record_count,
            0
        );
    }
    let many_headers = raw_record(&fields(0, &[0x06, 0, 0x01, 0, 0x01, 0, 0x01]));
    let batch = batch_with_region(&many_headers, 1, Compression::None);
    let tight = DecodeLimits {
        headers_max: 2,
        ..DecodeLimits::default()
    };
    assert!(validate_batch_records(&batch, &limits).is_ok());
    assert!(matches!(
        validate_batch_records(&batch, &tight),
        Err(DecodeError::TooManyHeaders { limit: 2 })
    ));
}

// Goal: checking a compressed batch streams it under the limit: one record claiming 100 MiB
// of zeros (a few KiB compressed) is refused once the walk passes `decompressed_bytes_max`,
// for each streaming codec, without holding the claimed size.
#[test]
fn validate_batch_records_stops_a_bomb_at_the_limit() {
    let mut region = Vec::new();
    varint::write_varint(&mut region, 100 << 20);
    region.resize(region.len() + (100 << 20), 0);
    let limits = DecodeLimits {
        decompressed_bytes_max: 1 << 20,
        ..DecodeLimits::default()
    };
    for compression in [Compression::Gzip, Compression::Lz4, Compression::Zstd] {
        let batch = batch_with_region(&region, 1, compression);
        assert!(
            batch.len() < 1 << 20,
            "{compression:?}: {} bytes",
            batch.len()
        );
        let error = validate_batch_records(&batch, &limits).unwrap_err();
        assert!(
            matches!(
                error,
                DecodeError::DecompressedTooLarge {
                    limit: 1_048_576,
                    ..
                }
            ),
            "{compression:?}: {error:?}"
        );
    }
}

// Goal: a build without a codec (the WASM guest SDK's `default-features = false`) refuses a
// batch that needs it with a named error, never a panic, on every path that opens records,
// and refuses to encode with it. Method: mark a well-formed uncompressed batch as compressed
// with each codec left out of this build and reseal its CRC. Runs in `.ci/run` as
// `cargo test -p ledge-protocol --no-default-features --lib codec_not_built_in`.
#[cfg(not(all(
    feature = "gzip",
    feature = "snappy",
    feature = "lz4",
    feature = "zstd"
)))]
#[test]
fn codec_not_built_in_is_an_error_not_a_panic() {
    let built_in = [
        (Compression::Gzip, cfg!(feature = "gzip")),
        (Compression::Snappy, cfg!(feature = "snappy")),
        (Compression::Lz4, cfg!(feature = "lz4")),
        (Compression::Zstd, cfg!(feature = "zstd")),
    ];
    let mut checked = 0;
    for (compression, _) in built_in.iter().filter(|(_, built)| !built) {
        let compression = *compression;
        let mut batch = sample_batch(3);
        edit_header(&mut batch, |header| {
            header.attributes = i16::from(compression.code());
        });
        let batch = Bytes::from(batch);
        let limits = DecodeLimits::default();
        let not_built_in = |error: DecodeError| {
            assert!(
                matches!(error, DecodeError::CodecNotBuiltIn { compression: found } if found == compression),
                "{compression:?}: {error:?}"
            );
            assert!(error.to_string().contains("codec not built in"), "{error}");
        };
        not_built_in(decode_batch(&batch, &limits).unwrap_err());
        not_built_in(decompress_records(&batch, &limits).unwrap_err());
        not_built_in(validate_batch_records(&batch, &limits).unwrap_err());
        let options = EncodeOptions {
            compression,
            ..EncodeOptions::default()
        };
        let error = encode_batch(&sample_records(2), &options).unwrap_err();
        assert!(
            matches!(error, EncodeError::CodecNotBuiltIn { compression: found } if found == compression),
            "{compression:?}: {error:?}"
        );
        checked += 1;
    }
    assert!(
        checked > 0,
        "the cfg above admits only builds that lack a codec"
    );
}
