//! Corruption detection and decoder robustness across the whole crate.
//!
//! Two promises are checked here: any single flipped bit in a stored batch is caught (by
//! `validate_batch` plus `check_stamp`), and no byte string makes a decoder panic. The fuzz
//! loops are seeded and bounded; a failure names its case seed so it can be replayed with
//! `run_case`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use proptest::prelude::*;

use crate::test_support::{
    SplitMix64, arb_record, batch_with_region, reseal, sample_batch_with, sample_records,
};
use crate::{
    BATCH_HEADER_BYTES, BatchHeader, BatchIter, Compression, DecodeLimits, EncodeOptions,
    RecordIter, decode_batch, decompress_records, encode_batch, validate_batch,
};

const CODECS: [Compression; 5] = Compression::ALL;

const BASE_OFFSET: i64 = 4_242;
const PARTITION_LEADER_EPOCH: i32 = 17;

/// What a reader of a stored batch runs: the batch checks plus the stamp it expects.
fn check_stored(batch: &[u8]) -> Result<BatchHeader, crate::BatchError> {
    let header = validate_batch(batch)?;
    header.check_stamp(BASE_OFFSET, PARTITION_LEADER_EPOCH)?;
    Ok(header)
}

fn stamped_batch(records: &[crate::Record], compression: Compression) -> Vec<u8> {
    let options = EncodeOptions {
        compression,
        base_offset: BASE_OFFSET,
        partition_leader_epoch: PARTITION_LEADER_EPOCH,
        ..EncodeOptions::default()
    };
    encode_batch(records, &options).unwrap().to_vec()
}

// Every bit of one batch per codec, flipped in turn: each flip is rejected. CRC-32C catches
// every single-bit error in the region it covers; framing catches length and magic; the stamp
// check catches base offset and leader epoch.
#[test]
fn every_single_bit_flip_is_detected() {
    for compression in CODECS {
        let batch = stamped_batch(&sample_records(3), compression);
        assert!(check_stored(&batch).is_ok());
        for bit in 0..batch.len() * 8 {
            let mut flipped = batch.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                check_stored(&flipped).is_err(),
                "{compression:?}: flip of bit {bit} went unnoticed"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // The same over arbitrary records and codecs, at an arbitrary bit.
    #[test]
    fn any_single_bit_flip_is_detected(
        records in prop::collection::vec(arb_record(), 1..20),
        codec in 0..CODECS.len(),
        bit in any::<prop::sample::Index>(),
    ) {
        let batch = stamped_batch(&records, CODECS[codec]);
        prop_assert!(check_stored(&batch).is_ok());
        let bit = bit.index(batch.len() * 8);
        let mut flipped = batch;
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(check_stored(&flipped).is_err(), "bit {} went unnoticed", bit);
    }
}

/// Seeds for the fuzz loops; each case derives its own generator from `(seed, case)`.
const FUZZ_SEEDS: [u64; 4] = [1, 0x5eed, 0xdead_beef, 20_260_501];
const FUZZ_CASES_PER_SEED: u64 = 1_000;

// Random and mutated input never panics any decoder. Mutations are resealed half the time so
// the record parser and the codecs see them, not just the CRC check.
#[test]
fn decoders_never_panic() {
    let valid = valid_batches();
    for seed in FUZZ_SEEDS {
        for case in 0..FUZZ_CASES_PER_SEED {
            let case_seed = seed.wrapping_mul(0x1_0000_0001).wrapping_add(case);
            let mut rng = SplitMix64(case_seed);
            let input = generate(&mut rng, &valid);
            let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&input, &mut rng)));
            assert!(
                outcome.is_ok(),
                "decoder panicked: replay with run_case({case_seed:#x})"
            );
        }
    }
}

/// Replays one fuzz case by its seed, outside `catch_unwind`, for a debugger or a backtrace.
#[allow(dead_code, reason = "called by hand when a case fails")]
fn run_case(case_seed: u64) {
    let mut rng = SplitMix64(case_seed);
    let input = generate(&mut rng, &valid_batches());
    exercise(&input, &mut rng);
}

/// Valid batches of every codec, the starting points for mutation.
fn valid_batches() -> Vec<Vec<u8>> {
    CODECS
        .iter()
        .flat_map(|&compression| {
            [
                sample_batch_with(1, compression),
                sample_batch_with(7, compression),
            ]
        })
        .collect()
}

fn generate(rng: &mut SplitMix64, valid: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(5) {
        0 => random_bytes(rng),
        1 => mutated(rng, valid, false),
        2 => mutated(rng, valid, true),
        3 => mutated_records(rng),
        _ => concatenated(rng, valid),
    }
}

fn random_bytes(rng: &mut SplitMix64) -> Vec<u8> {
    let length = rng.below(200);
    (0..length).map(|_| rng.next_u64() as u8).collect()
}

fn mutated(rng: &mut SplitMix64, valid: &[Vec<u8>], reseal_crc: bool) -> Vec<u8> {
    let mut batch = valid[rng.below(valid.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(batch.len());
        match rng.below(5) {
            0 => batch[at] ^= 1 << rng.below(8),
            1 => batch[at] = rng.next_u64() as u8,
            // Interesting varint and length bytes: -1, 0, large, continuation.
            2 => batch[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
            3 => batch.truncate(at.max(1)),
            _ => batch.insert(at, rng.next_u64() as u8),
        }
    }
    if reseal_crc && batch.len() >= BATCH_HEADER_BYTES {
        // Keep the framing consistent too, so the mutation reaches the records.
        let length = i32::try_from(batch.len() - 12).unwrap();
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        reseal(&mut batch);
    }
    batch
}

/// A well-framed batch, compressed with a random codec, around a mutated records region: this
/// is what reaches the record parser behind every codec.
fn mutated_records(rng: &mut SplitMix64) -> Vec<u8> {
    let record_count = 1 + rng.below(6);
    let plain = sample_batch_with(record_count, Compression::None);
    let mut region = plain[BATCH_HEADER_BYTES..].to_vec();
    for _ in 0..=rng.below(3) {
        if region.is_empty() {
            break;
        }
        let at = rng.below(region.len());
        match rng.below(4) {
            0 => region[at] ^= 1 << rng.below(8),
            1 => region[at] = [0x00, 0x01, 0x03, 0x7f, 0x80, 0xff][rng.below(6)],
            2 => region.truncate(at),
            _ => region.insert(at, rng.next_u64() as u8),
        }
    }
    // Sometimes claim a different count than the region holds.
    let claimed = record_count as i32 + [0, 0, -1, 1][rng.below(4)];
    let compression = CODECS[rng.below(CODECS.len())];
    batch_with_region(&region, claimed, compression).to_vec()
}

fn concatenated(rng: &mut SplitMix64, valid: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for _ in 0..=rng.below(3) {
        bytes.extend_from_slice(&valid[rng.below(valid.len())]);
    }
    bytes.truncate(rng.below(bytes.len() + 1));
    bytes
}

fn exercise(input: &[u8], rng: &mut SplitMix64) {
    let _ = BatchHeader::parse(input);
    let _ = validate_batch(input);

    // The iterator yields whole batches that tile a prefix of the input, then stops.
    let mut iter = BatchIter::new(input);
    let mut covered = 0;
    for item in iter.by_ref() {
        match item {
            Ok((header, batch)) => {
                assert_eq!(batch.as_ptr(), input[covered..].as_ptr());
                assert_eq!(batch.len(), header.total_bytes());
                covered += batch.len();
            }
            Err(_) => break,
        }
    }
    assert_eq!(iter.position(), covered);
    assert!(iter.next().is_none());

    let limits = DecodeLimits {
        decompressed_bytes_max: 1 << 16,
        records_max: 1_000,
        headers_max: 1_000,
    };
    let decoded = decode_batch(&Bytes::copy_from_slice(input), &limits);
    if let Ok(decoded) = &decoded {
        assert_eq!(decoded.records.len(), decoded.header.record_count as usize);
    }
    // The append-time check accepts exactly the batches a reader can decode whose header's
    // max timestamp bounds every record.
    let checked = crate::validate_batch_records(input, &limits);
    let bounded = |decoded: &&crate::DecodedBatch| {
        decoded
            .records
            .iter()
            .all(|record| record.timestamp <= decoded.header.max_timestamp)
    };
    assert_eq!(
        checked.as_ref().ok(),
        decoded
            .as_ref()
            .ok()
            .filter(bounded)
            .map(|decoded| &decoded.header),
        "validate_batch_records and decode_batch disagree: {:?} vs {:?}",
        checked.as_ref().err(),
        decoded.as_ref().err()
    );
    if let Ok((header, region)) = decompress_records(input, &limits) {
        for view in RecordIter::new(&region, header).flatten() {
            assert_eq!(view.headers().count(), view.header_count());
        }
    }

    // The record parser on its own, over the raw bytes under an arbitrary header.
    if let Some(header_bytes) = input.get(..BATCH_HEADER_BYTES)
        && let Ok(mut header) = BatchHeader::parse(header_bytes)
    {
        header.record_count = rng.below(20) as i32;
        header.last_offset_delta = rng.below(40) as i32 - 5;
        for view in RecordIter::new(&input[BATCH_HEADER_BYTES..], header).flatten() {
            let _ = view.headers().count();
        }
    }
    // One codec per case keeps the loop fast; over thousands of cases each sees plenty.
    let compression = CODECS[rng.below(CODECS.len())];
    let _ = crate::compression::decompress(compression, input, 1 << 16);
}
