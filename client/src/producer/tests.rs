//! Producer unit tests: sequence numbering, backoff, size estimates, config checks, delivery
//! futures.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::completion::{BatchAck, BatchCompletion};
use super::sender::next_sequence;
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
    let record_bytes = encoded.len() - ledge_protocol::BATCH_HEADER_BYTES;
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
    completion.complete(Ok(BatchAck {
        base_offset: Some(40),
        log_append_time: None,
    }));
    // A second outcome is ignored.
    completion.complete(Err(ProduceError::Closed));
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
    failed.complete(Err(ProduceError::Closed));
    let mut future = DeliveryFuture::new(failed, 0, Arc::from("t"), 0, 1);
    let mut context = Context::from_waker(Waker::noop());
    assert!(matches!(
        std::pin::Pin::new(&mut future).poll(&mut context),
        Poll::Ready(Err(ProduceError::Closed))
    ));
    let unacknowledged = Arc::new(BatchCompletion::default());
    unacknowledged.complete(Ok(BatchAck {
        base_offset: None,
        log_append_time: Some(999),
    }));
    let mut future = DeliveryFuture::new(unacknowledged, 3, Arc::from("t"), 0, 1);
    let Poll::Ready(Ok(metadata)) = std::pin::Pin::new(&mut future).poll(&mut context) else {
        panic!("not resolved");
    };
    assert_eq!(metadata.offset, None);
    assert_eq!(metadata.timestamp, 999);
}
