use proptest::prelude::*;

use super::*;
use crate::test_support::{edit_header, reseal, sample_batch};

// A header-only batch: the smallest thing `validate_batch` accepts.
fn empty_batch() -> Vec<u8> {
    let header = BatchHeader {
        base_offset: 0,
        batch_length: BATCH_LENGTH_MIN,
        partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
        magic: MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: 0,
        base_timestamp: NO_TIMESTAMP,
        max_timestamp: NO_TIMESTAMP,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
        record_count: 0,
    };
    let mut batch = header.to_bytes().to_vec();
    reseal(&mut batch);
    batch
}

// Parse reads every field at its documented offset (checked against hand-placed bytes).
#[test]
fn parse_reads_fields_at_their_offsets() {
    let mut bytes = [0u8; BATCH_HEADER_BYTES];
    bytes[0..8].copy_from_slice(&7i64.to_be_bytes());
    bytes[8..12].copy_from_slice(&49i32.to_be_bytes());
    bytes[12..16].copy_from_slice(&5i32.to_be_bytes());
    bytes[16] = 2;
    bytes[17..21].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    bytes[21..23].copy_from_slice(&0b111_1100i16.to_be_bytes());
    bytes[23..27].copy_from_slice(&3i32.to_be_bytes());
    bytes[27..35].copy_from_slice(&100i64.to_be_bytes());
    bytes[35..43].copy_from_slice(&200i64.to_be_bytes());
    bytes[43..51].copy_from_slice(&9i64.to_be_bytes());
    bytes[51..53].copy_from_slice(&4i16.to_be_bytes());
    bytes[53..57].copy_from_slice(&11i32.to_be_bytes());
    bytes[57..61].copy_from_slice(&4i32.to_be_bytes());
    let header = BatchHeader::parse(&bytes).unwrap();
    assert_eq!(
        header,
        BatchHeader {
            base_offset: 7,
            batch_length: 49,
            partition_leader_epoch: 5,
            magic: 2,
            crc: 0xdead_beef,
            attributes: 0b111_1100,
            last_offset_delta: 3,
            base_timestamp: 100,
            max_timestamp: 200,
            producer_id: 9,
            producer_epoch: 4,
            base_sequence: 11,
            record_count: 4,
        }
    );
    assert_eq!(header.to_bytes(), bytes);
    assert_eq!(header.total_bytes(), 61);
    assert_eq!(header.last_offset(), 10);
    assert_eq!(header.compression(), Ok(Compression::Zstd));
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert!(header.is_transactional());
    assert!(header.is_control());
    assert!(header.has_delete_horizon());
}

// Parse needs 61 bytes, magic 2 and a length of at least 49, and checks nothing else.
#[test]
fn parse_errors() {
    let batch = sample_batch(3);
    assert_eq!(
        BatchHeader::parse(&batch[..60]),
        Err(BatchError::Truncated {
            needed: 61,
            available: 60
        })
    );
    assert!(BatchHeader::parse(&batch[..61]).is_ok());

    let mut bad_magic = batch.clone();
    bad_magic[16] = 1;
    assert_eq!(BatchHeader::parse(&bad_magic), Err(BatchError::BadMagic(1)));

    for length in [48, 0, -1, i32::MIN] {
        let mut bad_length = batch.clone();
        bad_length[8..12].copy_from_slice(&length.to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&bad_length),
            Err(BatchError::BadLength(length))
        );
    }
}

#[test]
fn compression_codes_round_trip() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let attributes = i16::from(compression.code()) | ATTRIBUTES_TRANSACTIONAL;
        assert_eq!(Compression::from_attributes(attributes), Ok(compression));
    }
    for code in 5..=7 {
        assert_eq!(
            Compression::from_attributes(code),
            Err(BatchError::UnknownCompression(code as u8))
        );
    }
}

#[test]
fn validate_accepts_encoded_and_header_only_batches() {
    let batch = sample_batch(5);
    let header = validate_batch(&batch).unwrap();
    assert_eq!(header.record_count, 5);
    assert_eq!(header.last_offset_delta, 4);
    assert_eq!(header.total_bytes(), batch.len());

    let empty = empty_batch();
    assert_eq!(validate_batch(&empty).unwrap().record_count, 0);
}

// The batch must be exactly the slice: short is Truncated (with the whole size), long is
// TrailingBytes.
#[test]
fn validate_rejects_wrong_slice_length() {
    let batch = sample_batch(2);
    let available = batch.len() - 1;
    assert_eq!(
        validate_batch(&batch[..available]),
        Err(BatchError::Truncated {
            needed: batch.len(),
            available
        })
    );
    let mut long = batch.clone();
    long.push(0);
    assert_eq!(
        validate_batch(&long),
        Err(BatchError::TrailingBytes {
            batch_bytes: batch.len(),
            available: batch.len() + 1
        })
    );
}

#[test]
fn validate_rejects_crc_mismatch() {
    let mut batch = sample_batch(2);
    let stored = u32::from_be_bytes(batch[17..21].try_into().unwrap());
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    let computed = crc_of(&batch);
    assert_eq!(
        validate_batch(&batch),
        Err(BatchError::CrcMismatch { stored, computed })
    );
}

type HeaderEdit = fn(&mut BatchHeader);

// Each header rule, with the CRC made to match so the rule itself is what rejects.
#[test]
fn validate_rejects_inconsistent_headers() {
    let cases: [(HeaderEdit, BatchError); 6] = [
        (
            |header| header.attributes = 5,
            BatchError::UnknownCompression(5),
        ),
        (
            |header| header.record_count = -1,
            BatchError::BadRecordCount(-1),
        ),
        (
            |header| header.last_offset_delta = -1,
            BatchError::BadLastOffsetDelta {
                last_offset_delta: -1,
                record_count: 3,
            },
        ),
        (
            |header| header.last_offset_delta = 1,
            BatchError::BadLastOffsetDelta {
                last_offset_delta: 1,
                record_count: 3,
            },
        ),
        (
            |header| header.base_offset = i64::MAX - 1,
            BatchError::OffsetOverflow {
                base_offset: i64::MAX - 1,
                last_offset_delta: 2,
            },
        ),
        (
            |header| {
                header.base_timestamp = 10;
                header.max_timestamp = 9;
            },
            BatchError::TimestampOrder {
                base_timestamp: 10,
                max_timestamp: 9,
            },
        ),
    ];
    for (edit, expected) in cases {
        let mut batch = sample_batch(3);
        edit_header(&mut batch, edit);
        assert_eq!(validate_batch(&batch), Err(expected));
    }
}

// What Kafka itself writes must pass: a larger last offset delta after compaction, and
// timestamps out of order where they legitimately can be.
#[test]
fn validate_accepts_what_kafka_writes() {
    let edits: [HeaderEdit; 5] = [
        |header| header.last_offset_delta = 1000,
        |header| header.max_timestamp = NO_TIMESTAMP,
        |header| {
            header.base_timestamp = 10;
            header.max_timestamp = 9;
            header.attributes |= ATTRIBUTES_TIMESTAMP_TYPE;
        },
        |header| {
            header.base_timestamp = 10;
            header.max_timestamp = 9;
            header.attributes |= ATTRIBUTES_DELETE_HORIZON;
        },
        |header| header.base_offset = i64::MAX - 2,
    ];
    for edit in edits {
        let mut batch = sample_batch(3);
        edit_header(&mut batch, edit);
        validate_batch(&batch).unwrap();
    }
}

// Stamping writes the CRC-less fields in place; the batch stays valid and check_stamp sees
// the new values.
#[test]
fn stamping_keeps_the_batch_valid() {
    let mut batch = sample_batch(3);
    set_base_offset(&mut batch, 1_000).unwrap();
    set_partition_leader_epoch(&mut batch, 7).unwrap();
    let header = validate_batch(&batch).unwrap();
    assert_eq!(header.base_offset, 1_000);
    assert_eq!(header.last_offset(), 1_002);
    assert_eq!(header.check_stamp(1_000, 7), Ok(()));
    assert_eq!(
        header.check_stamp(999, 7),
        Err(BatchError::BaseOffsetMismatch {
            stored: 1_000,
            expected: 999
        })
    );
    assert_eq!(
        header.check_stamp(1_000, 6),
        Err(BatchError::PartitionLeaderEpochMismatch {
            stored: 7,
            expected: 6
        })
    );
}

#[test]
fn stamping_refuses_what_is_not_a_batch() {
    let mut short = [0u8; 20];
    assert_eq!(
        set_base_offset(&mut short, 1),
        Err(BatchError::Truncated {
            needed: 61,
            available: 20
        })
    );
    let mut batch = sample_batch(1);
    batch[16] = 0;
    assert_eq!(
        set_partition_leader_epoch(&mut batch, 1),
        Err(BatchError::BadMagic(0))
    );
    assert_eq!(batch[12..16], NO_PARTITION_LEADER_EPOCH.to_be_bytes());
}

// Log-append time rewrites CRC-covered fields, so it must refuse a corrupt batch rather than
// launder it with a fresh CRC.
#[test]
fn log_append_time_updates_crc_and_refuses_corruption() {
    let mut batch = sample_batch(3);
    let header = set_log_append_time(&mut batch, 42).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(validate_batch(&batch), Ok(header));
    assert_eq!(header.max_timestamp, 42);

    let mut corrupt = sample_batch(3);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x80;
    let before = corrupt.clone();
    assert!(matches!(
        set_log_append_time(&mut corrupt, 42),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert_eq!(corrupt, before);
}

#[test]
fn iter_walks_consecutive_batches() {
    let first = sample_batch(1);
    let second = sample_batch(4);
    let third = empty_batch();
    let bytes = [first.clone(), second.clone(), third.clone()].concat();
    let mut iter = BatchIter::new(&bytes);
    let (header, batch) = iter.next().unwrap().unwrap();
    assert_eq!((header.record_count, batch), (1, &first[..]));
    let (header, batch) = iter.next().unwrap().unwrap();
    assert_eq!((header.record_count, batch), (4, &second[..]));
    let (header, batch) = iter.next().unwrap().unwrap();
    assert_eq!((header.record_count, batch), (0, &third[..]));
    assert!(iter.next().is_none());
    assert_eq!(iter.position(), bytes.len());

    assert!(BatchIter::new(&[]).next().is_none());
}

// A torn tail is reported once with the size the whole batch needs, and `position` marks the
// end of the valid prefix.
#[test]
fn iter_reports_a_torn_tail() {
    let first = sample_batch(2);
    let second = sample_batch(3);
    let bytes = [first.clone(), second.clone()].concat();
    for cut in [
        first.len() + 1,
        first.len() + 12,
        first.len() + 61,
        bytes.len() - 1,
    ] {
        let mut iter = BatchIter::new(&bytes[..cut]);
        assert!(iter.next().unwrap().is_ok());
        let needed = if cut - first.len() < 12 {
            BATCH_HEADER_BYTES
        } else {
            second.len()
        };
        assert_eq!(
            iter.next(),
            Some(Err(BatchError::Truncated {
                needed,
                available: cut - first.len()
            })),
            "cut at {cut}"
        );
        assert!(iter.next().is_none());
        assert_eq!(iter.position(), first.len());
    }
}

#[test]
fn iter_stops_at_a_bad_header() {
    let first = sample_batch(2);
    let mut second = sample_batch(2);
    second[16] = 1;
    let bytes = [first.clone(), second, first.clone()].concat();
    let mut iter = BatchIter::new(&bytes);
    assert!(iter.next().unwrap().is_ok());
    assert_eq!(iter.next(), Some(Err(BatchError::BadMagic(1))));
    assert!(iter.next().is_none());
    assert_eq!(iter.position(), first.len());
}

fn arb_header() -> impl Strategy<Value = BatchHeader> {
    (
        (any::<i64>(), BATCH_LENGTH_MIN.., any::<i32>(), any::<u32>()),
        (any::<i16>(), any::<i32>(), any::<i64>(), any::<i64>()),
        (any::<i64>(), any::<i16>(), any::<i32>(), any::<i32>()),
    )
        .prop_map(|(a, b, c)| BatchHeader {
            base_offset: a.0,
            batch_length: a.1,
            partition_leader_epoch: a.2,
            magic: MAGIC_V2,
            crc: a.3,
            attributes: b.0,
            last_offset_delta: b.1,
            base_timestamp: b.2,
            max_timestamp: b.3,
            producer_id: c.0,
            producer_epoch: c.1,
            base_sequence: c.2,
            record_count: c.3,
        })
}

proptest! {
    // `to_bytes` and `parse` are inverses for every header `parse` accepts.
    #[test]
    fn header_bytes_round_trip(header in arb_header()) {
        prop_assert_eq!(BatchHeader::parse(&header.to_bytes()), Ok(header));
    }
}
