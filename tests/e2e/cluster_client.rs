//! Issue 13 item 5 against a real node with no `[cluster]` section (a one-node cluster): the
//! SDK's bootstrap list and leader routing, the refresh that finds added partitions, and the
//! CLI's `--server A,B`, `topic create --replication-factor`, `topic describe` and
//! `cluster describe`, with the refused replication settings.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use ledge_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::{NodeOptions, NodeProcess, run_cli};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A UDP port that never answers: bound (so no ICMP "port unreachable" makes the failure
/// fast or slow by chance) and never read. A QUIC handshake to it can only time out.
fn silent_address() -> (UdpSocket, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a silent UDP socket");
    let address = socket.local_addr().expect("its address").to_string();
    (socket, address)
}

fn client_config(server: String, node: &NodeProcess) -> ClientConfig {
    let mut config = ClientConfig::new(server, Trust::CaFile(node.ca_file.clone()));
    config.connect_timeout = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(10);
    config
}

/// Reads `count` records from `partitions` of `topic` from the start (bounded: 30 empty polls).
async fn read(client: &Client, partitions: Vec<TopicPartition>, count: usize) -> Vec<String> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(partitions);
    let mut values = Vec::new();
    let mut idle_polls = 0;
    while values.len() < count {
        let records = consumer
            .poll(Duration::from_secs(1), 10_000)
            .await
            .expect("poll");
        if records.is_empty() {
            idle_polls += 1;
            assert!(
                idle_polls < 30,
                "read {} of {count}, then nothing",
                values.len()
            );
        }
        values.extend(records.into_iter().map(|record| {
            String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned()
        }));
    }
    values
}

// Goal: a bootstrap list whose first node is dead still connects (to the next one, after the
// per-node connect timeout), metadata describes the node as a one-node cluster, and an
// idempotent acks=all producer routed by that metadata writes every record exactly once,
// also across a kill -9 and restart of the node between two halves. Method: a silent UDP
// port first in the list, 3 partitions, 300 keyed records, a consumer reads them all back.
#[test]
fn sdk_bootstraps_past_a_dead_node_and_routes_every_record_once() {
    let mut node = NodeProcess::start();
    let (_silent, dead) = silent_address();
    runtime().block_on(async {
        let config = client_config(format!("{dead},{}", node.addr), &node);
        let client = Client::connect(config)
            .await
            .expect("bootstrap past the dead node");
        assert_eq!(client.server_addr(), node.addr);

        let admin = Admin::new(&client);
        admin
            .create_topics(
                vec![
                    NewTopic::new("routed", 3)
                        .replication_factor(1)
                        .config("min.insync.replicas", "1"),
                ],
                false,
            )
            .await
            .expect("create");
        let described = admin
            .describe_topics(vec!["routed".into()])
            .await
            .expect("describe");
        for partition in &described[0].partitions {
            assert_eq!(partition.leader, Some(1));
            assert_eq!(partition.leader_epoch, 0);
            assert_eq!(partition.replicas, vec![1]);
            assert_eq!(partition.isr, vec![1]);
        }
        let cluster = admin.describe_cluster().await.expect("describe cluster");
        assert_eq!(cluster.controller, Some(1));
        assert_eq!(cluster.nodes.len(), 1);
        assert_eq!(cluster.nodes[0].address, node.addr.to_string());
        assert!(cluster.nodes[0].alive);
        assert!(cluster.under_replicated.is_empty() && cluster.offline.is_empty());

        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        for half in 0..2u32 {
            let mut deliveries = Vec::new();
            for index in half * 150..(half + 1) * 150 {
                let record = ProducerRecord::new("routed", format!("value-{index}"))
                    .key(format!("key-{index}"));
                deliveries.push(producer.send(record).await.expect("send"));
            }
            for delivery in deliveries {
                delivery.await.expect("acknowledged");
            }
            if half == 0 {
                node.restart();
            }
        }
        producer.close().await;

        let partitions = (0..3).map(|partition| TopicPartition::new("routed", partition));
        let values = read(&client, partitions.collect(), 300).await;
        let distinct: BTreeSet<&String> = values.iter().collect();
        assert_eq!(values.len(), 300, "no duplicates");
        assert_eq!(distinct.len(), 300, "every record once");
        client.close().await;
    });
}

// Goal: partitions added to a topic while a client runs are found: a send to a partition
// beyond the client's cached count looks the topic up again instead of failing, and a
// consumer assigned the new partition routes its fetch after a refresh. Method: a declared
// topic grown from 1 to 3 partitions by restarting the node with a new config.
#[test]
fn sdk_finds_partitions_added_to_a_topic() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let options = |partitions: u32, listen| NodeOptions {
        data_dir: Some(data_dir.clone()),
        config: Some(format!(
            "[[topic]]\nname = \"grow\"\npartitions = {partitions}\n"
        )),
        listen,
        ..NodeOptions::default()
    };
    let node = NodeProcess::start_with(options(1, None));
    let address = node.addr;
    runtime().block_on(async {
        let client = Client::connect(client_config(address.to_string(), &node))
            .await
            .expect("connect");
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        let first = ProducerRecord::new("grow", "before").partition(0);
        producer
            .send(first)
            .await
            .expect("send")
            .await
            .expect("ack");

        drop(node);
        let node = NodeProcess::start_with(options(3, Some(address)));
        let grown = ProducerRecord::new("grow", "after").partition(2);
        let metadata = producer
            .send(grown)
            .await
            .expect("a partition added since is found")
            .await
            .expect("ack");
        assert_eq!((metadata.partition, metadata.offset), (2, Some(0)));
        producer.close().await;

        let values = read(&client, vec![TopicPartition::new("grow", 2)], 1).await;
        assert_eq!(values, vec!["after".to_string()]);
        client.close().await;
        drop(node);
    });
}

/// Runs `ledge` with `server` and the node's CA; returns (success, stdout, stderr).
fn ledge(server: &str, node: &NodeProcess, args: &[&str]) -> (bool, String, String) {
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", server, "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, None);
    (status.success(), stdout, stderr)
}

fn ok(node: &NodeProcess, args: &[&str]) -> String {
    let (success, stdout, stderr) = ledge(&node.addr.to_string(), node, args);
    assert!(success, "ledge {args:?} failed:\n{stderr}");
    stdout
}

/// Requires a non-zero exit with exactly one `error: ` line, and returns it.
fn fails_with(server: &str, node: &NodeProcess, args: &[&str]) -> String {
    let (success, _, stderr) = ledge(server, node, args);
    assert!(!success, "ledge {args:?} should have failed");
    let stderr = stderr.trim().to_string();
    assert!(
        stderr.starts_with("error: "),
        "not an error line: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr:?}");
    stderr
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

// Goal: the CLI as a new user meets clustering on a single node: a replication factor above
// the live nodes and a min.insync.replicas above the factor are refused with one clear line
// and store nothing; a valid create works; describe shows each partition's leader, replicas,
// ISR and leader epoch (JSON and an aligned table); cluster describe lists the node, the
// controller and no unhealthy partitions; a bootstrap list with a dead node first works, and
// one with only dead nodes fails with one line naming each.
#[test]
fn cli_replication_settings_describe_and_bootstrap_list() {
    let node = NodeProcess::start();
    let server = node.addr.to_string();
    let create = ["topic", "create", "orders", "--partitions", "2"];

    let refused = fails_with(
        &server,
        &node,
        &[&create[..], &["--replication-factor", "3"]].concat(),
    );
    assert!(
        refused.contains("replication factor 3 is above the 1 live node(s)"),
        "{refused}"
    );
    let refused = fails_with(
        &server,
        &node,
        &[
            &create[..],
            &["-r", "1", "--config", "min.insync.replicas=2"],
        ]
        .concat(),
    );
    assert!(
        refused.contains("min.insync.replicas 2 is above the replication factor 1"),
        "{refused}"
    );
    let listed = json(&ok(&node, &["topic", "list", "--format", "json"]));
    assert!(
        listed
            .as_array()
            .is_some_and(|topics| topics.iter().all(|topic| topic["topic"] != "orders")),
        "a refused topic was stored: {listed}"
    );

    let created = ok(
        &node,
        &[
            &create[..],
            &["-r", "1", "--config", "min.insync.replicas=1"],
        ]
        .concat(),
    );
    assert!(created.contains("Created topic orders"), "{created}");
    let described = json(&ok(
        &node,
        &["topic", "describe", "orders", "--format", "json"],
    ));
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2);
    for partition in partitions {
        assert_eq!(partition["leader"], 1, "{partition}");
        assert_eq!(partition["leader_epoch"], 0, "{partition}");
        assert_eq!(partition["replicas"], serde_json::json!([1]), "{partition}");
        assert_eq!(partition["isr"], serde_json::json!([1]), "{partition}");
    }
    let table = ok(&node, &["topic", "describe", "orders"]);
    let header = table
        .lines()
        .find(|line| line.contains("PARTITION"))
        .unwrap_or_else(|| panic!("no partition table: {table}"));
    for column in ["LEADER", "EPOCH", "REPLICAS", "ISR"] {
        assert!(header.contains(column), "{header}");
    }

    let cluster = json(&ok(&node, &["cluster", "describe", "--format", "json"]));
    assert_eq!(cluster["controller"], 1, "{cluster}");
    assert_eq!(
        cluster["nodes"],
        serde_json::json!([{"id": 1, "address": server, "alive": true, "node_epoch": 0}])
    );
    assert_eq!(
        cluster["under_replicated_partitions"],
        serde_json::json!([])
    );
    assert_eq!(cluster["offline_partitions"], serde_json::json!([]));
    let table = ok(&node, &["cluster", "describe"]);
    assert!(
        table.contains("controller") && table.contains(&server),
        "{table}"
    );

    let (_silent, dead) = silent_address();
    let (success, stdout, stderr) = ledge(&format!("{dead},{server}"), &node, &["topic", "list"]);
    assert!(success, "{stderr}");
    assert!(stdout.contains("orders"), "{stdout}");
    let (_other_silent, other_dead) = silent_address();
    let refused = fails_with(&format!("{dead},{other_dead}"), &node, &["topic", "list"]);
    assert!(
        refused.contains("no bootstrap server answered")
            && refused.contains(&dead)
            && refused.contains(&other_dead),
        "{refused}"
    );
}
