//! The plug-in through the real ABI bytes with `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::*;

// Kafka's murmur2 vectors are checked where murmur2 lives, ledge-protocol's
// `partitioner/tests.rs`; here the plug-in places keys with it.

fn keyed(key: &str) -> OutputRecord {
    OutputRecord::new().with_key(key).with_value("v")
}

// VIP keys go to partition 0; the rest go where Kafka puts them.
#[test]
fn vip_keys_to_zero_the_rest_by_murmur2() {
    let mut plugin = TestPlugin::<vip_partitioner>::init(&[])
        .unwrap()
        .with_partition_count(7);
    let outcomes = plugin.run(&[
        keyed("vip-alice"),
        keyed("21"),
        keyed("foobar"),
        keyed("vip"),
    ]);
    // to_positive(-973932308) = 1173551340 = 7 * 167650191 + 3; to_positive(-790332482) =
    // 1357151166 = 7 * 193878738 + 0; "vip" has no dash, so it is hashed like any key.
    assert_eq!(
        outcomes,
        [
            Outcome::Partition(0),
            Outcome::Partition(3),
            Outcome::Partition(0),
            Outcome::Partition(partition_for_key(b"vip", 7)),
        ]
    );
    // One partition: everything goes to 0.
    let mut single = TestPlugin::<vip_partitioner>::init(&[]).unwrap();
    assert_eq!(single.run_one(keyed("21")), Outcome::Partition(0));
}

// Keyless records fail unless `null_key_partition` says where they go; a partition beyond the
// topic's count fails the record rather than the batch.
#[test]
fn keyless_records() {
    let keyless = OutputRecord::new().with_value("v");
    let mut strict = TestPlugin::<vip_partitioner>::init(&[]).unwrap();
    assert_eq!(
        strict.run_one(keyless.clone()),
        Outcome::Error(
            "record has no key (set the `null_key_partition` parameter to place keyless \
             records)"
                .to_owned()
        )
    );
    let mut placed = TestPlugin::<vip_partitioner>::init(&[("null_key_partition", "2")])
        .unwrap()
        .with_partition_count(3);
    assert_eq!(placed.run_one(keyless.clone()), Outcome::Partition(2));
    let mut too_few = TestPlugin::<vip_partitioner>::init(&[("null_key_partition", "2")]).unwrap();
    assert_eq!(
        too_few.run_one(keyless),
        Outcome::Error("partition 2 is out of range: the topic has 1 partitions".to_owned())
    );
    assert_eq!(
        TestPlugin::<vip_partitioner>::init(&[("null_key_partition", "first")]).err(),
        Some("parameter `null_key_partition`: invalid digit found in string".to_owned())
    );
}
