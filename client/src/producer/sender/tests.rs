//! Sender tests: splitting a batch the node refused as too large; when a failed batch goes
//! again.

use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::{
    Compression, DecodeLimits, EncodeOptions, Record, decode_batch, encode_batch,
};

use super::*;

fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|index| Record {
            timestamp: 1_000 + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(format!("value-{index}"))),
            headers: Vec::new(),
        })
        .collect()
}

fn sent(records: &[Record], base_sequence: i32, compression: Compression) -> SentBatch {
    let options = EncodeOptions {
        compression,
        producer_id: 7,
        producer_epoch: 3,
        base_sequence,
        ..EncodeOptions::default()
    };
    let now = clock::now();
    SentBatch {
        key: PartitionKey {
            topic: Arc::from("t"),
            partition: 2,
        },
        order: BatchOrder {
            batch: 9,
            first_record: 0,
        },
        bytes: encode_batch(records, &options).unwrap(),
        record_count: records.len(),
        memory: 1_000,
        completion: Arc::default(),
        records: ALL_RECORDS,
        created: now,
        attempts: 2,
        retry_at: now,
        last_error: None,
        sent_behind_another: true,
    }
}

fn too_large() -> ProduceError {
    ProduceError::Node {
        topic: "t".into(),
        partition: 2,
        code: ErrorCode::MessageTooLarge,
        message: "record batch of 300 bytes exceeds max.message.bytes (200)".into(),
    }
}

/// Goal: the halves of a refused batch carry its records in order, under its producer id and
/// epoch, with the refused batch's sequence numbers split between them (across the i32 wrap,
/// as Kafka's sequences do), and keep its place in the resend order, its futures and its
/// memory. Method: split a compressed 5-record batch numbered from i32::MAX - 1, then split
/// its second half again.
#[test]
fn halves_take_the_refused_batchs_sequences_order_and_records() {
    let original = records(5);
    let batch = sent(&original, i32::MAX - 1, Compression::Lz4);
    let [first, second] = split(&batch, Compression::Lz4, &too_large()).unwrap();
    let limits = DecodeLimits::default();
    let first_decoded = decode_batch(&first.bytes, &limits).unwrap();
    let second_decoded = decode_batch(&second.bytes, &limits).unwrap();
    assert_eq!(first_decoded.header.base_sequence, i32::MAX - 1);
    assert_eq!(first_decoded.header.record_count, 2);
    // Sequences i32::MAX - 1 and i32::MAX went to the first half; the second goes on at 0.
    assert_eq!(second_decoded.header.base_sequence, 0);
    assert_eq!(second_decoded.header.record_count, 3);
    for decoded in [&first_decoded, &second_decoded] {
        assert_eq!(decoded.header.producer_id, 7);
        assert_eq!(decoded.header.producer_epoch, 3);
        assert_eq!(decoded.header.compression().unwrap(), Compression::Lz4);
    }
    let halves: Vec<Record> = first_decoded
        .records
        .into_iter()
        .chain(second_decoded.records)
        .map(ledge_protocol::DecodedRecord::into_record)
        .collect();
    assert_eq!(halves, original, "the same records, in order");

    assert_eq!(first.order, batch.order);
    assert!(
        batch.order < second.order
            && second.order < batch.order.successor().successor().successor()
    );
    assert_eq!(
        (first.records.clone(), second.records.clone()),
        (0..2, 2..u32::MAX)
    );
    assert_eq!((first.record_count, second.record_count), (2, 3));
    assert_eq!(first.memory + second.memory, batch.memory);
    assert!(Arc::ptr_eq(&first.completion, &batch.completion));
    assert_eq!(
        (first.attempts, second.attempts),
        (2, 2),
        "a split is not a retry"
    );

    // A half split again keeps to its own range of sequences, orders and records.
    let [third, fourth] = split(&second, Compression::Lz4, &too_large()).unwrap();
    assert_eq!(
        decode_batch(&third.bytes, &limits)
            .unwrap()
            .header
            .base_sequence,
        0
    );
    assert_eq!(
        decode_batch(&fourth.bytes, &limits)
            .unwrap()
            .header
            .base_sequence,
        1
    );
    assert_eq!(
        (third.records.clone(), fourth.records.clone()),
        (2..3, 3..u32::MAX)
    );
    assert!(first.order < third.order && third.order < fourth.order);
    assert_eq!(third.order, second.order);
}

/// Goal: without idempotence the halves stay unnumbered, and a single record too large is
/// not split: the refusal stands. Method: split an unnumbered batch, then a one-record one.
#[test]
fn unnumbered_halves_stay_unnumbered_and_one_record_is_not_split() {
    let batch = sent(&records(3), NO_SEQUENCE, Compression::None);
    let [first, second] = split(&batch, Compression::None, &too_large()).unwrap();
    for half in [&first, &second] {
        let header = decode_batch(&half.bytes, &DecodeLimits::default())
            .unwrap()
            .header;
        assert_eq!(header.base_sequence, NO_SEQUENCE);
    }
    let single = sent(&records(1), 5, Compression::None);
    let error = split(&single, Compression::None, &too_large()).unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::MessageTooLarge));
}

/// Goal: a batch resent to a new leader is the same batch: the request for a leader carries
/// each partition's leader epoch and the batch's original bytes (same producer id, epoch and
/// sequence, so the new leader's duplicate check recognises a batch the old one wrote), and
/// the answers that mean "the leader moved" are retried. Method: build the request for a
/// routed batch and decode what it carries; check the retry decision for each cluster code.
#[test]
fn a_batch_resent_to_a_new_leader_keeps_its_bytes_and_carries_the_epoch() {
    let batch = sent(&records(3), 40, Compression::None);
    let bytes = batch.bytes.clone();
    let Request::Produce(request) = produce_request(Acks::All, 1_000, &[(batch, Some(6))]) else {
        panic!("not a produce request")
    };
    let partition = &request.topics[0].partitions[0];
    assert_eq!(request.topics[0].name, "t");
    assert_eq!(partition.partition, 2);
    assert_eq!(partition.current_leader_epoch, Some(6));
    assert_eq!(
        partition.records.as_ptr(),
        bytes.as_ptr(),
        "the same buffer, not a copy"
    );
    let header = decode_batch(&partition.records, &DecodeLimits::default())
        .unwrap()
        .header;
    assert_eq!(
        (
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        ),
        (7, 3, 40)
    );

    let node_error = |code| ProduceError::Node {
        topic: "t".into(),
        partition: 2,
        code,
        message: String::new(),
    };
    for code in [
        ErrorCode::NotLeaderOrFollower,
        ErrorCode::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend,
    ] {
        assert!(is_retriable(&node_error(code)), "{code}");
    }
    assert!(!is_retriable(&node_error(
        ErrorCode::InvalidReplicationFactor
    )));
}

// Goal: a batch given up because its partition's leader moved is resent at once (the new
// leader is known) and counts as retriable; one that was overtaken too; any other retriable
// failure (a lost connection, a handshake timeout) waits for the backoff.
#[test]
fn a_batch_whose_leader_moved_is_resent_at_once() {
    let now = clock::now();
    let backoff_wait = Duration::from_millis(400);
    let moved = ProduceError::Request(RequestError::LeaderMoved {
        node: "127.0.0.1:9101".into(),
    });
    assert!(is_retriable(&moved));
    assert_eq!(resend_at(&moved, false, now, backoff_wait), now);

    let lost = ProduceError::Request(RequestError::ConnectionLost("reset".into()));
    assert!(is_retriable(&lost));
    assert_eq!(
        resend_at(&lost, false, now, backoff_wait),
        now + backoff_wait
    );
    assert_eq!(resend_at(&lost, true, now, backoff_wait), now, "overtaken");

    let unreachable = ProduceError::Request(RequestError::Connect(ConnectError::TimedOut {
        server: "127.0.0.1:9101".into(),
        timeout: Duration::from_secs(10),
    }));
    assert!(is_retriable(&unreachable));
    assert_eq!(
        resend_at(&unreachable, false, now, backoff_wait),
        now + backoff_wait
    );
}
