//! Producer unit tests: sequence numbering, backoff, size estimates, config checks, delivery
//! futures, and where the node's routing puts each record of a node-partitioned batch.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ledge_protocol::wire::{PartitionOffset, ProducePartitionResponse, ProduceRouting};

use super::completion::{ALL_RECORDS, BatchAck, BatchCompletion, Placement, place_records};
use super::sender::{batch_ack, next_sequence};
use super::*;

#[test]
fn sequences_advance_by_record_count_and_wrap_like_kafka() {
    assert_eq!(next_sequence(0, 1), 1);
    assert_eq!(next_sequence(5, 10), 15);
    assert_eq!(next_sequence(i32::MAX - 1, 1), i32::MAX);
    // DefaultRecordBatch.incrementSequence: past i32::MAX it continues from 0.
    assert_eq!(next_sequence(i32::MAX, 1), 0);
    assert_eq!(next_sequence(i32::MAX - 2, 5), 2);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let config = ProducerConfig {
        retry_backoff: Duration::from_millis(100),
        retry_backoff_max: Duration::from_millis(700),
        ..ProducerConfig::default()
    };
    let waits: Vec<u128> = (1..=6)
        .map(|attempt| backoff(&config, attempt).as_millis())
        .collect();
    assert_eq!(waits, vec![100, 200, 400, 700, 700, 700]);
    assert_eq!(backoff(&config, u32::MAX), Duration::from_millis(700));
}

#[test]
fn size_estimate_is_an_upper_bound_of_the_encoding() {
    let record = ProducerRecord::new("t", vec![7u8; 1000])
        .key("some key")
        .header("trace", "abc")
        .header("empty", "");
    let estimate = estimated_size(&record);
    let encoded = ledge_protocol::encode_batch(
        &[Record {
            timestamp: 1,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record.headers.clone(),
        }],
        &ledge_protocol::EncodeOptions::default(),
    )
    .unwrap();
    let record_bytes = encoded.len() - BATCH_HEADER_BYTES;
    assert!(estimate >= record_bytes, "{estimate} < {record_bytes}");
    assert!(estimate < record_bytes + 64);
}

#[test]
fn config_validation_names_the_conflict() {
    assert!(ProducerConfig::default().validate().is_ok());
    let acks_one = ProducerConfig {
        acks: Acks::Leader,
        ..ProducerConfig::default()
    };
    assert!(acks_one.validate().unwrap_err().contains("acks"));
    let acks_one_plain = ProducerConfig {
        enable_idempotence: false,
        ..acks_one
    };
    assert!(acks_one_plain.validate().is_ok());
    let too_many = ProducerConfig {
        max_in_flight_per_partition: 6,
        ..ProducerConfig::default()
    };
    assert!(
        too_many
            .validate()
            .unwrap_err()
            .contains("max_in_flight_per_partition")
    );
    let small_buffer = ProducerConfig {
        buffer_memory: 1000,
        ..ProducerConfig::default()
    };
    assert!(
        small_buffer
            .validate()
            .unwrap_err()
            .contains("buffer_memory")
    );
}

#[test]
fn every_record_of_a_batch_resolves_with_its_own_offset() {
    let completion = Arc::new(BatchCompletion::default());
    let topic: Arc<str> = Arc::from("orders");
    let mut futures: Vec<DeliveryFuture> = (0..3)
        .map(|index| {
            DeliveryFuture::new(
                completion.clone(),
                index,
                topic.clone(),
                2,
                100 + i64::from(index),
            )
        })
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    for future in &mut futures {
        // Polling twice must not grow the waker list.
        assert!(
            std::pin::Pin::new(&mut *future)
                .poll(&mut context)
                .is_pending()
        );
        assert!(
            std::pin::Pin::new(&mut *future)
                .poll(&mut context)
                .is_pending()
        );
    }
    completion.complete(
        ALL_RECORDS,
        Ok(BatchAck {
            base_offset: Some(40),
            log_append_time: None,
            placements: None,
            throttle_time: Duration::ZERO,
        }),
    );
    // A second outcome is ignored.
    completion.complete(ALL_RECORDS, Err(ProduceError::Closed));
    for (index, future) in futures.iter_mut().enumerate() {
        let Poll::Ready(Ok(metadata)) = std::pin::Pin::new(future).poll(&mut context) else {
            panic!("future {index} did not resolve");
        };
        assert_eq!(metadata.offset, Some(40 + index as i64));
        assert_eq!(metadata.partition, 2);
        assert_eq!(metadata.timestamp, 100 + index as i64);
    }
    assert!(completion.outcome().unwrap().is_ok());
}

#[test]
fn a_failed_batch_fails_every_record_and_acks_zero_has_no_offset() {
    let failed = Arc::new(BatchCompletion::default());
    failed.complete(ALL_RECORDS, Err(ProduceError::Closed));
    let mut future = DeliveryFuture::new(failed, 0, Arc::from("t"), 0, 1);
    let mut context = Context::from_waker(Waker::noop());
    assert!(matches!(
        std::pin::Pin::new(&mut future).poll(&mut context),
        Poll::Ready(Err(ProduceError::Closed))
    ));
    let unacknowledged = Arc::new(BatchCompletion::default());
    unacknowledged.complete(
        ALL_RECORDS,
        Ok(BatchAck {
            base_offset: None,
            log_append_time: Some(999),
            placements: None,
            throttle_time: Duration::ZERO,
        }),
    );
    let mut future = DeliveryFuture::new(unacknowledged, 3, Arc::from("t"), 0, 1);
    let Poll::Ready(Ok(metadata)) = std::pin::Pin::new(&mut future).poll(&mut context) else {
        panic!("not resolved");
    };
    assert_eq!(metadata.offset, None);
    assert_eq!(metadata.timestamp, 999);
}

fn placed(partition: u32, offset: i64) -> Option<Placement> {
    Some(Placement { partition, offset })
}

fn routing(record_partitions: &[u32], base_offsets: &[(u32, i64)]) -> ProduceRouting {
    ProduceRouting {
        record_partitions: record_partitions.to_vec(),
        base_offsets: base_offsets
            .iter()
            .map(|&(partition, offset)| PartitionOffset { partition, offset })
            .collect(),
    }
}

/// Records routed to one partition take consecutive offsets from its base in batch order,
/// however they interleave with other partitions; dropped records have no place.
#[test]
fn routing_gives_each_record_its_partition_and_offset() {
    const DROPPED: u32 = NODE_PARTITIONED;
    let routed = routing(&[2, 0, 2, DROPPED, 0, 2], &[(0, 100), (2, 7)]);
    assert_eq!(
        place_records(&routed, 6),
        Ok(vec![
            placed(2, 7),
            placed(0, 100),
            placed(2, 8),
            None,
            placed(0, 101),
            placed(2, 9),
        ])
    );
    // Every record dropped: nothing written, no base offsets needed.
    assert_eq!(
        place_records(&routing(&[DROPPED, DROPPED], &[]), 2),
        Ok(vec![None, None])
    );
}

/// An answer that does not account for every record of the batch, or routes to a partition
/// without saying where it started, is refused rather than guessed at.
#[test]
fn routing_that_does_not_cover_the_batch_is_an_error() {
    let short = place_records(&routing(&[0, 0], &[(0, 5)]), 3).unwrap_err();
    assert!(short.contains("2 records of a batch of 3"), "{short}");
    let unknown = place_records(&routing(&[0, 1], &[(0, 5)]), 2).unwrap_err();
    assert!(unknown.contains("partition 1"), "{unknown}");
}

/// A node-partitioned batch's answer becomes per-record placements (and must carry routing);
/// an ordinary batch's answer keeps its base offset.
#[test]
fn acks_of_node_partitioned_batches_carry_placements() {
    let answer = |routed: Option<ProduceRouting>| ProducePartitionResponse {
        partition: NODE_PARTITIONED,
        error: ErrorCode::None,
        message: String::new(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        routed,
    };
    let node_key = PartitionKey {
        topic: Arc::from("orders"),
        partition: NODE_PARTITIONED,
    };
    let ack = batch_ack(
        &answer(Some(routing(&[1, NODE_PARTITIONED], &[(1, 3)]))),
        &node_key,
        2,
    )
    .unwrap();
    assert_eq!(ack.base_offset, None);
    assert_eq!(ack.placements.as_deref(), Some(&[placed(1, 3), None][..]));
    let missing = batch_ack(&answer(None), &node_key, 2).unwrap_err();
    assert!(missing.contains("without routing"), "{missing}");
    assert!(batch_ack(&answer(Some(routing(&[1], &[(1, 3)]))), &node_key, 2).is_err());

    let plain_key = PartitionKey {
        topic: Arc::from("orders"),
        partition: 4,
    };
    let mut plain = answer(None);
    plain.partition = 4;
    plain.base_offset = 60;
    plain.log_append_time_ms = 1234;
    let ack = batch_ack(&plain, &plain_key, 3).unwrap();
    assert_eq!(ack.base_offset, Some(60));
    assert_eq!(ack.log_append_time, Some(1234));
    assert_eq!(ack.placements, None);
}

/// Each record of a node-partitioned batch resolves with the partition the node chose (not
/// the `NODE_PARTITIONED` it was batched under); a record the produce filter dropped fails
/// with `Dropped`.
#[test]
fn node_partitioned_records_resolve_where_the_node_put_them() {
    let completion = Arc::new(BatchCompletion::default());
    let mut futures: Vec<DeliveryFuture> = (0..3)
        .map(|index| {
            DeliveryFuture::new(
                completion.clone(),
                index,
                Arc::from("orders"),
                NODE_PARTITIONED,
                50,
            )
        })
        .collect();
    assert_eq!(futures[0].partition(), NODE_PARTITIONED);
    let placements = place_records(&routing(&[3, NODE_PARTITIONED, 3], &[(3, 10)]), 3).unwrap();
    completion.complete(
        ALL_RECORDS,
        Ok(BatchAck {
            base_offset: None,
            log_append_time: None,
            placements: Some(placements.into()),
            throttle_time: Duration::ZERO,
        }),
    );
    let mut context = Context::from_waker(Waker::noop());
    let mut outcomes =
        futures.iter_mut().map(
            |future| match std::pin::Pin::new(future).poll(&mut context) {
                Poll::Ready(outcome) => outcome,
                Poll::Pending => panic!("not resolved"),
            },
        );
    let first = outcomes.next().unwrap().unwrap();
    assert_eq!((first.partition, first.offset), (3, Some(10)));
    assert_eq!(first.timestamp, 50);
    let dropped = outcomes.next().unwrap().unwrap_err();
    assert!(
        matches!(&dropped, ProduceError::Dropped { topic } if topic == "orders"),
        "{dropped:?}"
    );
    let third = outcomes.next().unwrap().unwrap();
    assert_eq!((third.partition, third.offset), (3, Some(11)));
}

/// A refusal of a node-partitioned batch names the topic and that the node partitions it,
/// not the partition number it was batched under.
#[test]
fn errors_of_node_partitioned_batches_do_not_show_the_sentinel() {
    let error = ProduceError::Node {
        topic: "payments".into(),
        partition: NODE_PARTITIONED,
        code: ErrorCode::InvalidRecord,
        message: "record 0 of the batch refused".into(),
    };
    assert_eq!(
        error.to_string(),
        "node refused the batch for payments (partitioned by the node): record 0 of the batch \
         refused (InvalidRecord)"
    );
    let error = ProduceError::Node {
        topic: "payments".into(),
        partition: 2,
        code: ErrorCode::InvalidRecord,
        message: String::new(),
    };
    assert_eq!(
        error.to_string(),
        "node refused the batch for payments/2: InvalidRecord"
    );
}

/// Goal: the parts of a split batch resolve their own records only, each with offsets from its
/// own base, and a part's outcome does not overwrite another's. Method: four futures on one
/// completion; records 0..2 acknowledged at offset 10, then 2.. failed.
#[test]
fn parts_of_a_split_batch_resolve_their_own_records() {
    let completion = Arc::new(BatchCompletion::default());
    let mut futures: Vec<DeliveryFuture> = (0..4)
        .map(|index| DeliveryFuture::new(completion.clone(), index, Arc::from("t"), 1, 7))
        .collect();
    let mut context = Context::from_waker(Waker::noop());
    for future in &mut futures {
        assert!(std::pin::Pin::new(future).poll(&mut context).is_pending());
    }
    completion.complete(
        0..2,
        Ok(BatchAck {
            base_offset: Some(10),
            log_append_time: None,
            placements: None,
            throttle_time: Duration::ZERO,
        }),
    );
    // A repeated outcome for records already resolved is ignored.
    completion.complete(0..2, Err(ProduceError::Closed));
    for (index, future) in futures.iter_mut().enumerate().take(2) {
        let Poll::Ready(Ok(metadata)) = std::pin::Pin::new(future).poll(&mut context) else {
            panic!("record {index} did not resolve");
        };
        assert_eq!(metadata.offset, Some(10 + index as i64));
    }
    // The other part's futures are still waiting, and poll again without losing a slot.
    for future in futures.iter_mut().skip(2) {
        assert!(std::pin::Pin::new(future).poll(&mut context).is_pending());
    }
    completion.complete(2..u32::MAX, Err(ProduceError::Closed));
    for future in futures.iter_mut().skip(2) {
        assert!(matches!(
            std::pin::Pin::new(future).poll(&mut context),
            Poll::Ready(Err(ProduceError::Closed))
        ));
    }
}
