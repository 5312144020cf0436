//! Accumulator tests: batches close by size, leave by linger or flush, keep order, expire.

use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::Record;

use super::*;

fn key(partition: u32) -> PartitionKey {
    PartitionKey {
        topic: Arc::from("orders"),
        partition,
    }
}

fn record(value: &str) -> Record {
    Record {
        timestamp: 0,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
    }
}

#[test]
fn batches_close_at_batch_size_and_a_new_one_opens() {
    let now = crate::clock::now();
    let mut accumulator = Accumulator::new(100, Duration::from_secs(10));
    let first = accumulator.append(&key(0), record("a"), 40, now);
    assert!(first.opened_batch && !first.closed_batch);
    let second = accumulator.append(&key(0), record("b"), 40, now);
    assert!(!second.opened_batch && !second.closed_batch);
    assert_eq!(second.index, 1);
    assert!(
        accumulator.ready(now, false).is_empty(),
        "not full, not lingered"
    );
    // 120 > 100: the open batch closes and the record opens a new one.
    let third = accumulator.append(&key(0), record("c"), 40, now);
    assert!(third.opened_batch && third.closed_batch);
    assert_eq!(third.index, 0);
    assert_eq!(accumulator.ready(now, false), vec![key(0)]);
    let batch = accumulator.take(&key(0)).unwrap();
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.bytes, 80);
    assert!(accumulator.ready(now, false).is_empty());
    assert_eq!(accumulator.records(), 1);
}

#[test]
fn a_record_reaching_batch_size_closes_its_batch() {
    let now = crate::clock::now();
    let mut accumulator = Accumulator::new(100, Duration::from_secs(10));
    let appended = accumulator.append(&key(0), record("big"), 250, now);
    assert!(appended.opened_batch && appended.closed_batch);
    assert_eq!(accumulator.ready(now, false), vec![key(0)]);
}

#[test]
fn linger_and_flush_make_batches_ready() {
    let start = crate::clock::now();
    let linger = Duration::from_millis(5);
    let mut accumulator = Accumulator::new(1000, linger);
    accumulator.append(&key(0), record("a"), 10, start);
    accumulator.append(&key(1), record("b"), 10, start + Duration::from_millis(3));
    assert!(accumulator.ready(start, false).is_empty());
    assert_eq!(accumulator.ready(start, true), vec![key(0), key(1)]);
    assert_eq!(accumulator.next_linger_deadline(), Some(start + linger));
    assert_eq!(accumulator.ready(start + linger, false), vec![key(0)]);
    assert_eq!(
        accumulator.ready(start + Duration::from_millis(8), false),
        vec![key(0), key(1)]
    );
}

#[test]
fn batches_leave_in_append_order() {
    let now = crate::clock::now();
    let mut accumulator = Accumulator::new(30, Duration::ZERO);
    for index in 0..10 {
        accumulator.append(&key(0), record(&index.to_string()), 10, now);
    }
    let mut values = Vec::new();
    while let Some(batch) = accumulator.take(&key(0)) {
        assert!(!batch.records.is_empty());
        values.extend(
            batch
                .records
                .into_iter()
                .map(|record| record.value.unwrap()),
        );
    }
    let expected: Vec<Bytes> = (0..10)
        .map(|index| Bytes::from(index.to_string()))
        .collect();
    assert_eq!(values, expected);
    assert!(accumulator.is_empty());
}

#[test]
fn batches_that_never_left_expire() {
    let start = crate::clock::now();
    let timeout = Duration::from_secs(2);
    let mut accumulator = Accumulator::new(10, Duration::from_secs(60));
    accumulator.append(&key(0), record("old"), 10, start);
    accumulator.append(&key(0), record("new"), 10, start + Duration::from_secs(1));
    assert_eq!(accumulator.next_expiry(timeout), Some(start + timeout));
    assert!(
        accumulator
            .take_expired(start + Duration::from_secs(1), timeout)
            .is_empty()
    );
    let expired = accumulator.take_expired(start + timeout, timeout);
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].1.records[0].value.as_deref(), Some(&b"old"[..]));
    assert_eq!(accumulator.records(), 1);
    let expired = accumulator.take_expired(start + Duration::from_secs(5), timeout);
    assert_eq!(expired.len(), 1);
    assert!(accumulator.is_empty());
}

proptest::proptest! {
    /// Whatever the sizes, every record comes out exactly once, in order, and no batch but a
    /// single-record one exceeds `batch_size`.
    #[test]
    fn every_record_leaves_once_in_order(sizes in proptest::collection::vec(1usize..300, 1..200)) {
        let now = crate::clock::now();
        let batch_size = 256;
        let mut accumulator = Accumulator::new(batch_size, Duration::ZERO);
        for (index, size) in sizes.iter().enumerate() {
            accumulator.append(&key(0), record(&index.to_string()), *size, now);
        }
        let mut seen = 0usize;
        while let Some(batch) = accumulator.take(&key(0)) {
            proptest::prop_assert!(batch.records.len() == 1 || batch.bytes <= batch_size);
            for record in batch.records {
                proptest::prop_assert_eq!(record.value.unwrap(), Bytes::from(seen.to_string()));
                seen += 1;
            }
        }
        proptest::prop_assert_eq!(seen, sizes.len());
    }
}
