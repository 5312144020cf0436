//! Replica fetch codec tests: round trips, limits, and hostile bytes.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;

use super::*;
use crate::test_support::SplitMix64;

fn sample_request() -> ReplicaFetchRequest {
    ReplicaFetchRequest {
        replica_id: 2,
        node_epoch: 41,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![
            ReplicaFetchPartition {
                topic: "orders".into(),
                partition: 0,
                current_leader_epoch: 3,
                fetch_offset: 120,
                last_fetched_epoch: Some(2),
                log_start_offset: 0,
                partition_max_bytes: 1 << 20,
            },
            ReplicaFetchPartition {
                topic: "é-topic".into(),
                partition: 7,
                current_leader_epoch: 0,
                fetch_offset: 0,
                last_fetched_epoch: None,
                log_start_offset: 0,
                partition_max_bytes: 4096,
            },
        ],
    }
}

fn sample_response() -> ReplicaFetchResponse {
    ReplicaFetchResponse {
        error: ReplicaFetchError::None,
        partitions: vec![
            ReplicaFetchPartitionResponse {
                topic: "orders".into(),
                partition: 0,
                error: ReplicaFetchError::None,
                high_watermark: 118,
                log_start_offset: 0,
                log_end_offset: 130,
                diverging_epoch: Some(DivergingEpoch {
                    epoch: 2,
                    end_offset: 110,
                }),
                records: Bytes::new(),
            },
            ReplicaFetchPartitionResponse {
                topic: "é-topic".into(),
                partition: 7,
                error: ReplicaFetchError::FencedLeaderEpoch,
                high_watermark: 5,
                log_start_offset: 1,
                log_end_offset: 9,
                diverging_epoch: None,
                // Large enough to travel as its own zero-copy chunk.
                records: Bytes::from(vec![7u8; 5000]),
            },
        ],
    }
}

#[test]
fn request_and_response_round_trip() {
    // Goal: every field survives encode then decode, including the zero-copy records.
    let limits = ReplicaFetchLimits::default();
    let request = sample_request();
    let decoded =
        ReplicaFetchRequest::decode_bounded(request.encode_frame().into_bytes(), &limits).unwrap();
    assert_eq!(decoded, request);
    let response = sample_response();
    let decoded =
        ReplicaFetchResponse::decode_bounded(response.encode_frame().into_bytes(), &limits)
            .unwrap();
    assert_eq!(decoded, response);
}

#[test]
fn every_error_number_round_trips_and_unknown_ones_decode_as_unknown() {
    // Goal: numbers are stable and an unknown number from a newer peer is not a frame error.
    for number in 0..=u8::MAX {
        let error = ReplicaFetchError::from_number(number);
        if error != ReplicaFetchError::Unknown {
            assert_eq!(error.number(), number);
        }
    }
    assert_eq!(
        ReplicaFetchError::from_number(200),
        ReplicaFetchError::Unknown
    );
}

#[test]
fn more_partitions_than_the_limit_and_trailing_bytes_are_refused() {
    // Goal: the partition-count limit and the end-of-frame check hold for both messages.
    let limits = ReplicaFetchLimits { partitions_max: 1 };
    let request = sample_request().encode_frame().into_bytes();
    assert_eq!(
        ReplicaFetchRequest::decode_bounded(request.clone(), &limits),
        Err(ReplicaFetchDecodeError::TooManyPartitions { count: 2, max: 1 })
    );
    let response = sample_response().encode_frame().into_bytes();
    assert!(matches!(
        ReplicaFetchResponse::decode_bounded(response, &limits),
        Err(ReplicaFetchDecodeError::TooManyPartitions { .. })
    ));
    let mut longer = request.to_vec();
    longer.push(0);
    assert_eq!(
        ReplicaFetchRequest::decode_bounded(Bytes::from(longer), &ReplicaFetchLimits::default()),
        Err(ReplicaFetchDecodeError::Wire(WireError::TrailingBytes(1)))
    );
}

#[test]
fn a_count_larger_than_the_frame_is_refused_before_allocating() {
    // Goal: a partition count of u32::MAX in a tiny frame fails on the count, not on memory.
    let mut frame = Vec::new();
    frame.extend_from_slice(&2u32.to_be_bytes());
    frame.extend_from_slice(&1u64.to_be_bytes());
    frame.extend_from_slice(&[0; 12]);
    frame.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        ReplicaFetchRequest::decode_bounded(Bytes::from(frame), &ReplicaFetchLimits::default()),
        Err(ReplicaFetchDecodeError::Wire(
            WireError::CountTooLarge { .. }
        ))
    ));
}

#[test]
fn garbage_and_mutated_frames_never_panic() {
    // Goal: seeded random bytes, every truncation and random byte mutations of valid frames
    // decode to a value or an error, never a panic. A failure names its seed.
    let limits = ReplicaFetchLimits::default();
    let valid = [
        sample_request().encode_frame().into_bytes(),
        sample_response().encode_frame().into_bytes(),
    ];
    let decode_both = |bytes: Bytes| {
        let _ = ReplicaFetchRequest::decode_bounded(bytes.clone(), &limits);
        let _ = ReplicaFetchResponse::decode_bounded(bytes, &limits);
    };
    for frame in &valid {
        for length in 0..frame.len() {
            decode_both(frame.slice(..length));
        }
    }
    for seed in 0..2_000u64 {
        let mut random = SplitMix64(seed);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let garbage: Vec<u8> = (0..random.below(300))
                .map(|_| random.next_u64() as u8)
                .collect();
            decode_both(Bytes::from(garbage));
            let mut mutated = valid[random.below(valid.len())].to_vec();
            for _ in 0..=random.below(4) {
                let at = random.below(mutated.len());
                mutated[at] = random.next_u64() as u8;
            }
            decode_both(Bytes::from(mutated));
        }));
        assert!(outcome.is_ok(), "seed {seed} panicked");
    }
}
