//! A real node behind the UDP fault proxy (`ledge_e2e::fault_proxy`): QUIC rides through
//! delay and loss, a partition fails requests with a clear client error, and healing lets
//! the next request through (issue 13, "Tests": the proxy the 3-node tests will use).
//!
//! The client routes partition requests to the leader's address from Metadata, so each
//! node advertises its proxy's address (`node.advertised_address`): the proxy starts first,
//! the node is told its address, then the proxy learns the node's.

use std::collections::BTreeMap;
use std::time::Duration;

use ledge_client::{
    Client, ClientConfig, Consumer, ConsumerConfig, OffsetReset, ProduceError, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::fault_proxy::{Direction, FaultProxy, LinkFaults, Peer};
use ledge_e2e::{NodeOptions, NodeProcess};

/// A node behind a fault proxy seeded with `seed`: it advertises the proxy's address, so
/// every request of a client (bootstrap and partition routes alike) goes through the proxy.
async fn node_behind_proxy(seed: u64) -> (NodeProcess, FaultProxy) {
    let proxy = FaultProxy::start_before_node(seed).await.unwrap();
    let options = NodeOptions {
        config: Some(format!(
            "[node]\nadvertised_address = \"{}\"\n",
            proxy.addr()
        )),
        ..NodeOptions::default()
    };
    // Starting waits (bounded) for the node's ready line: off the runtime's worker.
    let node = tokio::task::block_in_place(|| NodeProcess::start_with(options));
    proxy.set_upstream(node.addr);
    (node, proxy)
}

/// A client of `node` that talks to it through `proxy`, noticing a lost node within about
/// three seconds (so a partition turns into an error, not a long hang).
async fn connect_through(node: &NodeProcess, proxy: &FaultProxy) -> Client {
    let mut config = ClientConfig::new(
        proxy.addr().to_string(),
        Trust::CaFile(node.ca_file.clone()),
    );
    config.idle_timeout = Duration::from_secs(3);
    config.connect_timeout = Duration::from_secs(5);
    config.request_timeout = Duration::from_secs(2);
    Client::connect(config)
        .await
        .expect("connect through the proxy")
}

/// A producer that gives a record up after `delivery_timeout`.
async fn producer(client: &Client, delivery_timeout: Duration) -> Producer {
    let mut config = ProducerConfig::default();
    config.delivery_timeout = delivery_timeout;
    Producer::new(client, config).await.expect("producer")
}

/// Every record of `topic` (`partitions` of them) from the start to the end offsets, as
/// partition -> values in offset order.
async fn read_all(client: &Client, topic: &str, partitions: u32) -> BTreeMap<u32, Vec<String>> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    let assignment: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition::new(topic, partition))
        .collect();
    consumer.assign(assignment.clone());
    let ends = consumer
        .end_offsets(&assignment)
        .await
        .expect("end offsets");
    let expected: i64 = ends.values().sum();
    let mut read: BTreeMap<u32, Vec<(i64, String)>> = BTreeMap::new();
    let mut count = 0;
    let mut idle_polls = 0;
    while count < expected {
        let batch = consumer
            .poll(Duration::from_secs(1), 10_000)
            .await
            .expect("poll");
        if batch.is_empty() {
            idle_polls += 1;
            assert!(idle_polls < 60, "read {count} of {expected}, then nothing");
        }
        for record in batch {
            count += 1;
            let value = String::from_utf8_lossy(&record.value.unwrap_or_default()).into_owned();
            read.entry(record.partition)
                .or_default()
                .push((record.offset, value));
        }
    }
    read.into_iter()
        .map(|(partition, records)| {
            let offsets: Vec<i64> = records.iter().map(|(offset, _)| *offset).collect();
            let dense: Vec<i64> = (0..records.len() as i64).collect();
            assert_eq!(offsets, dense, "partition {partition}: offsets read");
            (
                partition,
                records.into_iter().map(|(_, value)| value).collect(),
            )
        })
        .collect()
}

#[test]
fn produce_and_consume_through_delay_and_loss_lose_nothing() {
    // Goal: with 20 ms (+ up to 5 ms jitter) of delay and 5% of datagrams dropped each way,
    // an idempotent acks=all producer and a consumer see every record exactly once, in
    // order: QUIC retransmits what the proxy drops. The proxy's counters show it dropped
    // datagrams both ways, so the faults were really applied.
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let (node, proxy) = node_behind_proxy(13).await;
        proxy.set_all(LinkFaults::lossy(
            0.05,
            Duration::from_millis(20),
            Duration::from_millis(5),
        ));
        let client = connect_through(&node, &proxy).await;
        ledge_e2e::create_topic(&client, "lossy", 3).await;
        let producer = producer(&client, Duration::from_secs(60)).await;
        let mut deliveries = Vec::new();
        for index in 0..300 {
            let record =
                ProducerRecord::new("lossy", format!("value-{index}")).partition(index % 3);
            deliveries.push(producer.send(record).await.expect("send"));
            if index % 5 == 4 {
                // Sixty rounds of requests and answers: enough datagrams each way that the
                // seeded drops strike both (each direction has its own generator, so this
                // does not depend on how the directions interleave).
                producer.flush().await;
            }
        }
        for delivery in deliveries {
            delivery.await.expect("delivered through delay and loss");
        }
        producer.close().await;

        let read = read_all(&client, "lossy", 3).await;
        for partition in 0..3u32 {
            let expected: Vec<String> = (0..300u32)
                .filter(|index| index % 3 == partition)
                .map(|index| format!("value-{index}"))
                .collect();
            assert_eq!(
                read.get(&partition),
                Some(&expected),
                "partition {partition}"
            );
        }
        let counts = proxy.counts();
        assert!(counts.to_node.dropped > 0, "{counts:?}");
        assert!(counts.from_node.dropped > 0, "{counts:?}");
        assert!(counts.to_node.forwarded > 0, "{counts:?}");
    });
}

/// Sends one record and waits for its outcome.
async fn produce_one(producer: &Producer, value: &str) -> Result<Option<i64>, ProduceError> {
    let record = ProducerRecord::new("cut", value.to_string()).partition(0);
    producer
        .send(record)
        .await?
        .await
        .map(|metadata| metadata.offset)
}

/// Produces through `proxy` with `cut` applied: the record must fail with a delivery
/// timeout naming the last error, and after [`FaultProxy::heal`] the next record (same
/// client, same producer) must be acknowledged. Returns the counts while cut.
async fn cut_then_heal(node: &NodeProcess, proxy: &FaultProxy, cut: impl Fn(&FaultProxy)) {
    let client = connect_through(node, proxy).await;
    ledge_e2e::create_topic(&client, "cut", 1).await;
    let producer = producer(&client, Duration::from_secs(4)).await;
    assert_eq!(produce_one(&producer, "before").await.unwrap(), Some(0));

    cut(proxy);
    let before = proxy.counts();
    let error = produce_one(&producer, "during")
        .await
        .expect_err("a produce through a cut link cannot be acknowledged");
    assert!(
        matches!(error, ProduceError::DeliveryTimeout { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("not acknowledged within the delivery timeout"),
        "{message}"
    );
    assert!(
        proxy.counts().to_node.dropped + proxy.counts().from_node.dropped
            > before.to_node.dropped + before.from_node.dropped,
        "the proxy dropped the produce's datagrams: {:?}",
        proxy.counts()
    );

    proxy.heal();
    let offset = produce_one(&producer, "after")
        .await
        .expect("the produce after healing is acknowledged");
    // "during" may or may not have been written (its answer, not its request, may be what
    // was lost); nothing else is in between.
    assert!(matches!(offset, Some(1 | 2)), "offset {offset:?}");
    producer.close().await;
    let read = read_all(&client, "cut", 1).await;
    let values = read.get(&0).cloned().unwrap_or_default();
    assert_eq!(values.first().map(String::as_str), Some("before"));
    assert_eq!(values.last().map(String::as_str), Some("after"));
}

#[test]
fn a_full_partition_times_out_a_produce_and_healing_lets_the_next_succeed() {
    // Goal: with every datagram blocked both ways, a produce fails with the producer's
    // delivery timeout (a clear error naming the last failure), not a hang; after healing
    // the same producer's next record is acknowledged.
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let (node, proxy) = node_behind_proxy(14).await;
        cut_then_heal(&node, &proxy, FaultProxy::block_all).await;
    });
}

#[test]
fn a_one_way_block_from_client_to_node_fails_requests_and_heals() {
    // Goal: blocking only client -> node (answers would pass, but no request arrives)
    // fails a produce the same clear way, and healing lets the next one through. The
    // node -> client direction keeps forwarding while the other is blocked.
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let (node, proxy) = node_behind_proxy(15).await;
        cut_then_heal(&node, &proxy, |proxy| {
            proxy.set(Peer::Any, Direction::ToNode, LinkFaults::block());
        })
        .await;
        let counts = proxy.counts();
        assert!(counts.to_node.dropped > 0, "{counts:?}");
    });
}
