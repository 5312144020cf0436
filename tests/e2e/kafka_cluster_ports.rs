//! Nodes register their Kafka listeners with the controller: in a 3-node cluster whose nodes
//! listen for Kafka on ports of their own (not their QUIC ports, which the other nodes used
//! to assume), a Kafka client bootstrapped from one node finds and produces to the leaders
//! on the others.

use std::process::Command;

use crate::kafka_clients::missing;

/// A Python with confluent-kafka: the venv `.ci/run` makes.
fn confluent_kafka() -> Option<std::path::PathBuf> {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("target/kafka-venv/bin/python");
    let imports = Command::new(&python)
        .args(["-c", "import confluent_kafka"])
        .output()
        .is_ok_and(|output| output.status.success());
    imports.then_some(python)
}

// Goal: each node's Metadata lists every node at the Kafka address that node registered,
// and librdkafka, bootstrapped from node 1, produces (acks=all, idempotent) to leaders on
// the other nodes and reads their watermarks there. Method: cluster-init's configs with
// `[kafka] listen` on port 0 (so no Kafka port equals a QUIC port), an RF=3 topic with 3
// partitions spread by the controller, tests/kafka/confluent_kafka_cluster_ports.py.
#[test]
fn kafka_cluster_nodes_register_their_kafka_ports() {
    let Some(python) = confluent_kafka() else {
        missing("confluent-kafka");
        return;
    };
    let cluster = crate::cluster_topics::Cluster::start_edited(
        "node_heartbeat_interval_ms = 200\nnode_session_timeout_ms = 8000\npeer_request_timeout_ms = 5000\n",
        |config| {
            let start = config
                .find("[kafka]\nlisten = ")
                .expect("cluster-init writes [kafka] listen");
            let end = start + config[start..].find("\n\n").expect("the section ends");
            format!(
                "{}[kafka]\nlisten = \"127.0.0.1:0\"{}",
                &config[..start],
                &config[end..]
            )
        },
    );
    let kafka: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| {
            let kafka = node.kafka_addr.expect("each node listens for Kafka");
            assert_ne!(kafka.port(), node.addr.port(), "a Kafka port of its own");
            kafka.to_string()
        })
        .collect();
    cluster.ok(
        1,
        &[
            "topic",
            "create",
            "ports",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    // Every node registered (and the controller placed every partition) before the client
    // asks: leaders named and ISRs full.
    let deadline = crate::cluster::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = cluster.placement(1, "ports").is_some_and(|partitions| {
            partitions.len() == 3
                && partitions.iter().all(|partition| {
                    partition["leader"].as_u64().is_some()
                        && partition["isr"]
                            .as_array()
                            .is_some_and(|isr| isr.len() == 3)
                })
        });
        if ready {
            break;
        }
        assert!(crate::cluster::now() < deadline, "the topic was not placed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("kafka/confluent_kafka_cluster_ports.py");
    let output = Command::new(python)
        .arg(script)
        .args([&kafka[0], "ports", &kafka.join(",")])
        .output()
        .expect("run the confluent-kafka script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("OK"),
        "{stdout}\n{stderr}\nnode 1 log:\n{}",
        cluster.nodes[0].log()
    );
}
