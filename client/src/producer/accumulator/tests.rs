//! Accumulator tests: batches close by size, leave by linger or flush, keep order, expire, and
//! a ready batch grows up to `batch_size_max` while it waits.

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
    let mut accumulator =
        Accumulator::new(100, 100, Duration::from_secs(60), Duration::from_secs(10));
    let first = accumulator.append(&key(0), record("a"), 40, usize::MAX, now);
    assert!(first.opened_batch && !first.became_ready);
    let second = accumulator.append(&key(0), record("b"), 40, usize::MAX, now);
    assert!(!second.opened_batch && !second.became_ready);
    assert_eq!(second.index, 1);
    assert!(
        accumulator.ready(now, false).is_empty(),
        "not full, not lingered"
    );
    // 120 > 100: the open batch closes and the record opens a new one.
    let third = accumulator.append(&key(0), record("c"), 40, usize::MAX, now);
    assert!(third.opened_batch && third.became_ready);
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
    let mut accumulator =
        Accumulator::new(100, 100, Duration::from_secs(60), Duration::from_secs(10));
    let appended = accumulator.append(&key(0), record("big"), 250, usize::MAX, now);
    assert!(appended.opened_batch && appended.became_ready);
    assert_eq!(accumulator.ready(now, false), vec![key(0)]);
}

#[test]
fn linger_and_flush_make_batches_ready() {
    let start = crate::clock::now();
    let linger = Duration::from_millis(5);
    let mut accumulator = Accumulator::new(1000, 1000, Duration::from_secs(60), linger);
    accumulator.append(&key(0), record("a"), 10, usize::MAX, start);
    accumulator.append(
        &key(1),
        record("b"),
        10,
        usize::MAX,
        start + Duration::from_millis(3),
    );
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
    let mut accumulator = Accumulator::new(30, 30, Duration::from_secs(60), Duration::ZERO);
    for index in 0..10 {
        accumulator.append(&key(0), record(&index.to_string()), 10, usize::MAX, now);
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
    let mut accumulator =
        Accumulator::new(10, 10, Duration::from_secs(60), Duration::from_secs(60));
    accumulator.append(&key(0), record("old"), 10, usize::MAX, start);
    accumulator.append(
        &key(0),
        record("new"),
        10,
        usize::MAX,
        start + Duration::from_secs(1),
    );
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

#[test]
fn a_ready_batch_grows_until_taken_or_batch_size_max() {
    let now = crate::clock::now();
    let mut accumulator =
        Accumulator::new(100, 300, Duration::from_secs(60), Duration::from_secs(10));
    accumulator.append(&key(0), record("a"), 40, usize::MAX, now);
    accumulator.append(&key(0), record("b"), 40, usize::MAX, now);
    // 120 > batch_size: the batch is ready to leave, and takes the record while it waits.
    let third = accumulator.append(&key(0), record("c"), 40, usize::MAX, now);
    assert!(!third.opened_batch && third.became_ready);
    assert_eq!(third.index, 2);
    assert_eq!(accumulator.ready(now, false), vec![key(0)]);
    assert_eq!(
        accumulator.next_linger_deadline(),
        None,
        "ready: no linger timer"
    );
    // Not taken yet: it grows on, without announcing itself ready again.
    for value in ["d", "e", "f", "g"] {
        let appended = accumulator.append(&key(0), record(value), 40, usize::MAX, now);
        assert!(!appended.opened_batch && !appended.became_ready);
    }
    // 320 > batch_size_max: the batch is sealed and the record opens a new one, which grows
    // the same way behind it.
    let eighth = accumulator.append(&key(0), record("h"), 40, usize::MAX, now);
    assert!(eighth.opened_batch);
    assert_eq!(eighth.index, 0);
    for value in ["i", "j", "k", "l", "m", "n"] {
        assert!(
            !accumulator
                .append(&key(0), record(value), 40, usize::MAX, now)
                .opened_batch
        );
    }
    assert!(
        accumulator
            .append(&key(0), record("o"), 40, usize::MAX, now)
            .opened_batch
    );
    // Taken at once, a ready batch leaves at about batch_size.
    let sizes: Vec<(usize, usize)> = std::iter::from_fn(|| accumulator.take(&key(0)))
        .map(|batch| (batch.records.len(), batch.bytes))
        .collect();
    assert_eq!(sizes, vec![(7, 280), (7, 280), (1, 40)]);
    accumulator.append(&key(0), record("p"), 60, usize::MAX, now);
    accumulator.append(&key(0), record("q"), 60, usize::MAX, now);
    let taken = accumulator.take(&key(0)).unwrap();
    assert_eq!((taken.records.len(), taken.bytes), (2, 120));
}

#[test]
fn a_ready_batch_stops_growing_once_grow_for_has_passed() {
    let start = crate::clock::now();
    let grow_for = Duration::from_secs(1);
    let mut accumulator = Accumulator::new(100, 300, grow_for, Duration::from_secs(10));
    for value in ["a", "b", "c"] {
        accumulator.append(&key(0), record(value), 40, usize::MAX, start);
    }
    // Ready (120 > 100) and young: the record joins it, and says so (the sticky partitioner
    // moves on).
    let joined = accumulator.append(&key(0), record("d"), 40, usize::MAX, start + grow_for / 2);
    assert!(!joined.opened_batch && joined.joined_ready_batch && !joined.became_ready);
    // Older than grow_for: a record that joined now would inherit its age; a new batch opens.
    let late = accumulator.append(&key(0), record("e"), 40, usize::MAX, start + grow_for);
    assert!(late.opened_batch && !late.joined_ready_batch);
    let sizes: Vec<usize> = std::iter::from_fn(|| accumulator.take(&key(0)))
        .map(|batch| batch.records.len())
        .collect();
    assert_eq!(sizes, vec![4, 1]);
}

#[test]
fn batches_stay_at_batch_size_when_batch_size_max_is_not_above_it() {
    let now = crate::clock::now();
    for batch_size_max in [0, 50, 100] {
        let mut accumulator =
            Accumulator::new(100, batch_size_max, Duration::from_secs(60), Duration::ZERO);
        for value in ["a", "b", "c", "d", "e"] {
            accumulator.append(&key(0), record(value), 40, usize::MAX, now);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| accumulator.take(&key(0)))
            .map(|batch| batch.records.len())
            .collect();
        assert_eq!(sizes, vec![2, 2, 1], "batch_size_max {batch_size_max}");
    }
}

proptest::proptest! {
    /// Whatever the sizes and however appends and takes interleave, every record comes out
    /// exactly once, in order, and no batch but a single-record one exceeds `batch_size_max`
    /// (`batch_size` when both are the same).
    #[test]
    fn every_record_leaves_once_in_order(
        sizes in proptest::collection::vec(1usize..300, 1..200),
        growth in 0usize..1000,
        take_every in 1usize..20,
    ) {
        let now = crate::clock::now();
        let batch_size = 256;
        let batch_size_max = batch_size + growth;
        let mut accumulator = Accumulator::new(batch_size, batch_size_max, Duration::from_secs(60), Duration::ZERO);
        let mut batches = Vec::new();
        for (index, size) in sizes.iter().enumerate() {
            accumulator.append(&key(0), record(&index.to_string()), *size, usize::MAX, now);
            if index % take_every == 0 {
                batches.extend(accumulator.take(&key(0)));
            }
        }
        batches.extend(std::iter::from_fn(|| accumulator.take(&key(0))));
        let mut seen = 0usize;
        for batch in batches {
            proptest::prop_assert!(batch.records.len() == 1 || batch.bytes <= batch_size_max);
            for record in batch.records {
                proptest::prop_assert_eq!(record.value.unwrap(), Bytes::from(seen.to_string()));
                seen += 1;
            }
        }
        proptest::prop_assert_eq!(seen, sizes.len());
    }
}

/// Goal: a topic's own limit (its `max.message.bytes` less the batch header) bounds its
/// batches below `batch_size` and `batch_size_max`, and only that topic's. Method: append
/// 100-byte records under a 350-byte topic bound and look at the batches that leave.
#[test]
fn a_topics_limit_caps_its_batches_below_the_producers_sizes() {
    let now = crate::clock::now();
    let mut accumulator =
        Accumulator::new(1000, 4000, Duration::from_secs(60), Duration::from_secs(10));
    for index in 0..10 {
        accumulator.append(&key(0), record(&index.to_string()), 100, 350, now);
        accumulator.append(&key(1), record(&index.to_string()), 100, usize::MAX, now);
    }
    // Three records fill the capped topic's batch (a fourth would make 400 > 350), and a
    // batch at its bound is ready at once, as one at `batch_size` is.
    let mut sizes = Vec::new();
    while let Some(batch) = accumulator.take(&key(0)) {
        assert!(batch.bytes <= 350, "{} bytes", batch.bytes);
        sizes.push(batch.records.len());
    }
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    let uncapped = accumulator.take(&key(1)).unwrap();
    assert_eq!(
        uncapped.records.len(),
        10,
        "the other partition is not capped"
    );
}
