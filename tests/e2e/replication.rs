//! Issue 13, the replication data plane with real processes: a 3-node cluster from
//! `cluster-init` (the shared harness, `ledge_e2e::cluster_harness`), an RF=3 topic with
//! `min.insync.replicas=2`, an idempotent acks=all SDK producer, and kill -9 of the
//! partition's leader in the middle of the load. The fault matrix (`replication_matrix.rs`)
//! covers the other faults with the history checker; this test is the short story.

use std::collections::BTreeSet;
use std::time::Duration;

use ledge_client::{
    Admin, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use ledge_e2e::cluster_harness::{ClusterOptions, TestCluster};

const TOPIC: &str = "replicated";
const RECORDS: usize = 400;

// Goal: every record an idempotent acks=all producer had acknowledged survives a kill -9 of
// the partition's leader, and is read back exactly once, in send order, from the new leader;
// the killed node, restarted, catches up and is back in the ISR. Method: one partition, 400
// records sent in order (the SDK retries through the failover with the same producer id and
// sequences), the leader killed after the first 150 acknowledgements; a consumer reads the
// partition from the start on the new leader.
#[test]
fn acknowledged_records_survive_the_leaders_kill_9_exactly_once() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    cluster.wait_for_all_alive();
    let client = cluster.runtime().block_on(cluster.client());
    cluster
        .runtime()
        .block_on(Admin::new(&client).create_topics(
            vec![
                NewTopic::new(TOPIC, 1)
                    .replication_factor(3)
                    .config("min.insync.replicas", "2"),
            ],
            false,
        ))
        .expect("an RF=3 topic is created");
    let before = cluster.wait_for_partition("a leader and a full ISR", TOPIC, 0, |state| {
        state.leader.is_some() && state.isr.len() == 3
    });
    let leader = before.leader.expect("a leader");
    assert_eq!(before.replicas.len(), 3);

    let producer = std::sync::Arc::new(
        cluster
            .runtime()
            .block_on(Producer::new(&client, ProducerConfig::default()))
            .expect("producer"),
    );
    let send = |range: std::ops::Range<usize>| {
        cluster.runtime().block_on(async {
            let mut deliveries = Vec::new();
            for index in range {
                let record = ProducerRecord::new(TOPIC, format!("value-{index:04}")).partition(0);
                deliveries.push(producer.send(record).await.expect("send"));
            }
            let mut offsets = Vec::new();
            for delivery in deliveries {
                let metadata = delivery.await.expect("acknowledged");
                offsets.push(metadata.offset.expect("an offset"));
            }
            offsets
        })
    };
    let first = send(0..150);
    // The rest is in flight when the leader dies.
    let rest = {
        let handle = cluster.runtime().spawn({
            let producer = std::sync::Arc::clone(&producer);
            async move {
                let mut deliveries = Vec::new();
                for index in 150..RECORDS {
                    let record =
                        ProducerRecord::new(TOPIC, format!("value-{index:04}")).partition(0);
                    deliveries.push(producer.send(record).await.expect("send"));
                }
                let mut offsets = Vec::new();
                for delivery in deliveries {
                    offsets.push(delivery.await.expect("acknowledged").offset);
                }
                offsets
            }
        });
        cluster.kill9(leader);
        cluster
            .runtime()
            .block_on(handle)
            .expect("the producer task")
    };
    let after = cluster.wait_for_partition("a new leader", TOPIC, 0, |state| {
        state.leader.is_some_and(|id| id != leader)
    });
    let new_leader = after.leader.expect("a leader");
    assert!(after.leader_epoch > before.leader_epoch);
    cluster.runtime().block_on(producer.close());

    // Offsets are dense and increasing: every acknowledged record at its own offset.
    let mut offsets: Vec<i64> = first;
    offsets.extend(rest.into_iter().map(|offset| offset.expect("an offset")));
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "offsets out of order"
    );

    let values = cluster.runtime().block_on(async {
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, config);
        consumer.assign(vec![TopicPartition::new(TOPIC, 0)]);
        let mut values = Vec::new();
        let mut idle_polls = 0;
        while values.len() < RECORDS {
            let records = consumer
                .poll(Duration::from_secs(1), 10_000)
                .await
                .expect("poll");
            if records.is_empty() {
                idle_polls += 1;
                assert!(
                    idle_polls < 60,
                    "read {} of {RECORDS}, then nothing",
                    values.len()
                );
            }
            values.extend(records.into_iter().map(|record| {
                String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
            }));
        }
        values
    });
    let expected: Vec<String> = (0..RECORDS)
        .map(|index| format!("value-{index:04}"))
        .collect();
    assert_eq!(
        values, expected,
        "every acknowledged record once, in order, on node {new_leader}"
    );
    let distinct: BTreeSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), RECORDS);

    // The killed node comes back, fetches what it missed and rejoins the ISR.
    cluster.restart(leader);
    cluster.wait_for_partition("the restarted node back in the ISR", TOPIC, 0, |state| {
        state.isr.contains(&leader) && state.isr.len() == 3
    });
    cluster.runtime().block_on(client.close());
}
