//! Partitioner tests: key placement, sticky switching.

use super::*;

// Kafka's murmur2 vectors are checked in ledge-protocol's `partitioner/tests.rs`.

#[test]
fn keyed_records_land_where_kafka_puts_them() {
    // to_positive(-973932308) = 1173551340; 1173551340 % 3 = 0, % 7 = 6.
    assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
    assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
    let mut partitioner = DefaultPartitioner::with_seed(7);
    for key in [&b"customer-1"[..], b"customer-2", b"", b"abc"] {
        let first = partitioner.partition("orders", Some(key), 12);
        for _ in 0..10 {
            assert_eq!(partitioner.partition("orders", Some(key), 12), first);
            // Completed batches never move keyed records.
            partitioner.on_batch_complete("orders", first, 12);
        }
        assert_eq!(first, partition_for_key(key, 12));
    }
}

#[test]
fn keyless_records_stick_until_their_batch_completes() {
    let mut partitioner = DefaultPartitioner::with_seed(42);
    let first = partitioner.partition("orders", None, 6);
    for _ in 0..100 {
        assert_eq!(partitioner.partition("orders", None, 6), first);
    }
    // A batch of another partition completing changes nothing.
    partitioner.on_batch_complete("orders", (first + 1) % 6, 6);
    assert_eq!(partitioner.partition("orders", None, 6), first);
    // Its own batch completing moves it to a different partition.
    partitioner.on_batch_complete("orders", first, 6);
    let second = partitioner.partition("orders", None, 6);
    assert_ne!(second, first);
    assert!(second < 6);
    // Topics stick independently.
    let other = partitioner.partition("payments", None, 6);
    partitioner.on_batch_complete("payments", other, 6);
    assert_eq!(partitioner.partition("orders", None, 6), second);
}

#[test]
fn sticky_switching_visits_every_partition() {
    let mut partitioner = DefaultPartitioner::with_seed(1);
    let mut seen = [false; 4];
    for _ in 0..200 {
        let partition = partitioner.partition("t", None, 4);
        seen[partition as usize] = true;
        partitioner.on_batch_complete("t", partition, 4);
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn single_partition_topics_and_shrunk_topics_stay_in_range() {
    let mut partitioner = DefaultPartitioner::with_seed(3);
    for _ in 0..10 {
        assert_eq!(partitioner.partition("one", None, 1), 0);
        partitioner.on_batch_complete("one", 0, 1);
    }
    let before = partitioner.partition("shrinks", None, 100);
    let after = partitioner.partition("shrinks", None, 2);
    assert!(after < 2, "{before} -> {after}");
}
