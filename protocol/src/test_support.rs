//! Helpers shared by the crate's tests: sample batches, header surgery, proptest strategies.

use bytes::Bytes;
use proptest::prelude::*;

use crate::batch::crc_of;
use crate::{
    BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, BatchHeader, Compression, EncodeOptions, Header,
    MAGIC_V2, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record, encode_batch,
};

/// `count` small records with keys, values, a null value every third record and headers.
pub(crate) fn sample_records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|index| Record {
            timestamp: 1_700_000_000_000 + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: (index % 3 != 2).then(|| Bytes::from(format!("value-{index}").repeat(4))),
            headers: vec![
                Header {
                    key: "trace".to_owned(),
                    value: Some(Bytes::from_static(b"abc")),
                },
                Header {
                    key: "trace".to_owned(),
                    value: None,
                },
            ],
        })
        .collect()
}

/// An uncompressed batch of `count` sample records, as a mutable buffer.
pub(crate) fn sample_batch(count: usize) -> Vec<u8> {
    sample_batch_with(count, Compression::None)
}

/// A batch of `count` sample records with `compression`.
pub(crate) fn sample_batch_with(count: usize, compression: Compression) -> Vec<u8> {
    let options = EncodeOptions {
        compression,
        ..EncodeOptions::default()
    };
    encode_batch(&sample_records(count), &options)
        .unwrap()
        .to_vec()
}

/// A batch around a hand-written records region, compressed with `compression`, with a
/// correct CRC, so that only the records can be wrong. Base offset 100, timestamps 1000.
pub(crate) fn batch_with_region(
    region: &[u8],
    record_count: i32,
    compression: Compression,
) -> Bytes {
    let mut batch = vec![0u8; BATCH_HEADER_BYTES];
    crate::compression::compress(compression, region, 1, &mut batch).unwrap();
    let header = BatchHeader {
        base_offset: 100,
        batch_length: i32::try_from(batch.len() - BATCH_LENGTH_PREFIX_BYTES).unwrap(),
        partition_leader_epoch: 0,
        magic: MAGIC_V2,
        crc: 0,
        attributes: i16::from(compression.code()),
        last_offset_delta: (record_count - 1).max(0),
        base_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
        record_count,
    };
    batch[..BATCH_HEADER_BYTES].copy_from_slice(&header.to_bytes());
    reseal(&mut batch);
    Bytes::from(batch)
}

/// Recomputes the CRC after a test edited CRC-covered bytes on purpose.
pub(crate) fn reseal(batch: &mut [u8]) {
    let crc = crc_of(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Edits header fields of `batch` in place and reseals it, to build batches that pass the
/// CRC but break another rule.
pub(crate) fn edit_header(batch: &mut [u8], edit: impl FnOnce(&mut BatchHeader)) {
    let mut header = BatchHeader::parse(batch).unwrap();
    edit(&mut header);
    batch[..61].copy_from_slice(&header.to_bytes());
    reseal(batch);
}

/// A small `SplitMix64` generator for the seeded robustness loops: deterministic, so a failing
/// seed replays, and dependency-free.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (`bound > 0`); the tiny modulo bias does not matter here.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }
}

fn arb_bytes(max: usize) -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from))
}

/// Headers with keys from a tiny alphabet, so duplicates are common.
fn arb_headers() -> impl Strategy<Value = Vec<Header>> {
    let key = prop_oneof![
        Just(String::new()),
        Just("a".to_owned()),
        Just("b".to_owned()),
        "[a-zé€]{0,8}",
    ];
    prop::collection::vec(
        (key, arb_bytes(16)).prop_map(|(key, value)| Header { key, value }),
        0..5,
    )
}

/// Arbitrary records: null, empty and non-empty keys and values, duplicate header keys, and
/// timestamps from before 1970 to year ~2500 (or -1).
pub(crate) fn arb_record() -> impl Strategy<Value = Record> {
    let timestamp = prop_oneof![Just(-1i64), -10_000_000_000i64..17_000_000_000_000i64];
    (timestamp, arb_bytes(64), arb_bytes(256), arb_headers()).prop_map(
        |(timestamp, key, value, headers)| Record {
            timestamp,
            key,
            value,
            headers,
        },
    )
}
