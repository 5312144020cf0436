//! The node as a process: bad input on the wire, hostile clients, config reconcile across
//! restarts, graceful shutdown. Raw frames go through `RawClient`, not the SDK.

use std::time::Duration;

use bytes::Bytes;
use ledge_e2e::{NodeOptions, NodeProcess, RawClient, binary};
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn batch(count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{number}"))),
            value: Some(Bytes::from(format!("v{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

async fn create_topic(
    client: &RawClient,
    name: &str,
    partitions: u32,
    configs: &[(&str, &str)],
) -> TopicResult {
    let request = Request::CreateTopics(CreateTopicsRequest {
        topics: vec![CreatableTopic {
            replication_factor: None,
            name: name.into(),
            partitions,
            configs: configs
                .iter()
                .map(|(name, value)| ConfigEntry {
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
        }],
        validate_only: false,
    });
    let (_, Some(Response::CreateTopics(response))) = client.request(&request).await else {
        panic!("no CreateTopics response")
    };
    response.topics.into_iter().next().unwrap()
}

async fn produce(
    client: &RawClient,
    topic: &str,
    records: Bytes,
    acks: Acks,
) -> ProducePartitionResponse {
    let request = Request::Produce(ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: topic.into(),
            partitions: vec![ProducePartition {
                current_leader_epoch: None,
                partition: 0,
                records,
            }],
        }],
    });
    let (_, Some(Response::Produce(response))) = client.request(&request).await else {
        panic!("no Produce response")
    };
    response
        .topics
        .into_iter()
        .next()
        .unwrap()
        .partitions
        .into_iter()
        .next()
        .unwrap()
}

async fn high_watermark(client: &RawClient, topic: &str) -> i64 {
    let (_, Some(Response::Metadata(metadata))) = client
        .request(&Request::Metadata(MetadataRequest {
            topics: Some(vec![topic.into()]),
        }))
        .await
    else {
        panic!("no Metadata response")
    };
    metadata.topics[0].partitions[0].high_watermark
}

fn error_of(bytes: &[u8]) -> (u32, ErrorCode, String) {
    let (header, body) = decode_response(ApiKey::Metadata, Bytes::copy_from_slice(bytes))
        .expect("a response header");
    assert!(body.is_none(), "a frame error has no body");
    (header.correlation_id, header.error, header.message)
}

// Goal: malformed, truncated, unknown, unsupported and oversized frames each get a clear
// error code on their own stream; bad records get theirs; the same connection and other
// clients keep being served and nothing stored is lost.
#[test]
fn bad_frames_get_clear_errors_and_the_node_keeps_serving() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[limits]\nframe_bytes_max = 2097152\nfetch_bytes_max = 1048576\n".into()),
        ..NodeOptions::default()
    });
    runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        assert_eq!(
            create_topic(&client, "events", 1, &[("max.message.bytes", "2000")])
                .await
                .error,
            ErrorCode::None
        );
        assert_eq!(
            produce(&client, "events", batch(3), Acks::All).await.error,
            ErrorCode::None
        );

        let truncated = client
            .exchange(Bytes::from_static(&[0, 1, 0]))
            .await
            .unwrap();
        assert_eq!(error_of(&truncated).1, ErrorCode::InvalidRequest);

        let mut unknown = encode_request(
            41,
            "t",
            &Request::Metadata(MetadataRequest { topics: None }),
        )
        .to_vec();
        unknown[0..2].copy_from_slice(&999u16.to_be_bytes());
        let (correlation_id, code, _) =
            error_of(&client.exchange(Bytes::from(unknown.clone())).await.unwrap());
        assert_eq!((correlation_id, code), (41, ErrorCode::UnknownApiKey));

        unknown[0..2].copy_from_slice(&(ApiKey::Metadata as u16).to_be_bytes());
        unknown[2..4].copy_from_slice(&9u16.to_be_bytes());
        let (correlation_id, code, message) =
            error_of(&client.exchange(Bytes::from(unknown)).await.unwrap());
        assert_eq!((correlation_id, code), (41, ErrorCode::UnsupportedVersion));
        assert!(message.contains("version 9"), "{message}");

        let mut garbage_body = encode_request(
            42,
            "t",
            &Request::Metadata(MetadataRequest { topics: None }),
        )
        .to_vec();
        garbage_body.extend_from_slice(b"trailing junk");
        assert_eq!(
            error_of(&client.exchange(Bytes::from(garbage_body)).await.unwrap()).1,
            ErrorCode::InvalidRequest
        );

        let oversized = vec![0u8; 3 * 1024 * 1024];
        let (_, code, message) = error_of(&client.exchange(Bytes::from(oversized)).await.unwrap());
        assert_eq!(code, ErrorCode::FrameTooLarge);
        assert!(message.contains("2097152"), "{message}");

        let mut corrupt = batch(2).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x10;
        assert_eq!(
            produce(&client, "events", Bytes::from(corrupt), Acks::All)
                .await
                .error,
            ErrorCode::CorruptMessage
        );
        assert_eq!(
            produce(&client, "events", batch(200), Acks::All)
                .await
                .error,
            ErrorCode::MessageTooLarge
        );
        assert_eq!(
            produce(&client, "nowhere", batch(1), Acks::All).await.error,
            ErrorCode::UnknownTopicOrPartition
        );
        let invalid_name = create_topic(&client, "no spaces allowed", 1, &[]).await;
        assert_eq!(invalid_name.error, ErrorCode::InvalidTopic);
        assert!(
            invalid_name.message.contains("' '"),
            "{}",
            invalid_name.message
        );

        // The same connection still works, as does a new one; nothing was lost.
        assert_eq!(high_watermark(&client, "events").await, 3);
        let other = RawClient::connect(&node).await;
        assert_eq!(high_watermark(&other, "events").await, 3);
    });
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

// Goal: random UDP datagrams at the node's port are ignored: handshakes and requests from
// real clients still succeed afterwards.
#[test]
fn garbage_datagrams_do_not_disturb_the_node() {
    use rand::{Rng, SeedableRng};
    let node = NodeProcess::start();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for number in 0..5000 {
        let len = [1, 20, 1200, 1452, rng.random_range(1..1500)][number % 5];
        let mut datagram: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Some look like QUIC long-header Initial packets, to reach deeper parsing.
        if number % 3 == 0 {
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
            if datagram.len() > 5 {
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        let _ = socket.send_to(&datagram, node.addr);
    }
    runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        let (header, body) = client
            .request(&Request::Metadata(MetadataRequest { topics: None }))
            .await;
        assert_eq!(header.error, ErrorCode::None);
        assert!(body.is_some());
    });
}

// Goal: a client that opens thousands of streams at once is held to the configured
// in-flight limit by QUIC flow control; every request is answered, and another client is
// served meanwhile.
#[test]
fn thousands_of_streams_are_bounded_and_answered() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[limits]\nrequests_in_flight_per_connection_max = 32\n".into()),
        ..NodeOptions::default()
    });
    runtime().block_on(async {
        let greedy = std::sync::Arc::new(RawClient::connect(&node).await);
        let mut tasks = Vec::new();
        for _ in 0..3000 {
            let greedy = std::sync::Arc::clone(&greedy);
            tasks.push(tokio::spawn(async move {
                greedy
                    .request(&Request::ApiVersions(ApiVersionsRequest::default()))
                    .await
                    .0
                    .error
            }));
        }
        let polite = RawClient::connect(&node).await;
        let (header, _) = polite
            .request(&Request::Metadata(MetadataRequest { topics: None }))
            .await;
        assert_eq!(header.error, ErrorCode::None);
        for task in tasks {
            assert_eq!(
                tokio::time::timeout(Duration::from_secs(120), task)
                    .await
                    .unwrap()
                    .unwrap(),
                ErrorCode::None
            );
        }
    });
}

fn run_node_expecting_failure(config: &str) -> String {
    let temporary = tempfile::tempdir().unwrap();
    let path = temporary.path().join("node.toml");
    std::fs::write(&path, config).unwrap();
    let output = std::process::Command::new(binary("ledge-node"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(temporary.path().join("data"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "the node should refuse this config"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// Goal: declared topics are created, grown and re-configured across restarts; shrinking is
// refused at start with the file, line and reason; a bad config file stops the node with
// the line and key.
#[test]
fn config_reconcile_across_restarts() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let config = |partitions: u32, retention: u64| {
        format!(
            "# declared topics\n[[topic]]\nname = \"orders\"\npartitions = {partitions}\nconfig.retention.ms = {retention}\n"
        )
    };
    let options = |text: String| NodeOptions {
        data_dir: Some(data_dir.clone()),
        config: Some(text),
        ..NodeOptions::default()
    };
    let describe = |node: &NodeProcess| {
        runtime().block_on(async {
            let client = RawClient::connect(node).await;
            let (_, Some(Response::Metadata(metadata))) = client
                .request(&Request::Metadata(MetadataRequest { topics: None }))
                .await
            else {
                panic!()
            };
            let (_, Some(Response::DescribeConfigs(configs))) = client
                .request(&Request::DescribeConfigs(DescribeConfigsRequest {
                    topics: vec!["orders".into()],
                }))
                .await
            else {
                panic!()
            };
            let retention = configs.topics[0]
                .configs
                .iter()
                .find(|config| config.name == "retention.ms")
                .unwrap()
                .value
                .clone();
            let orders = metadata
                .topics
                .iter()
                .find(|topic| topic.name == "orders")
                .expect("orders exists");
            (orders.partitions.len(), retention)
        })
    };
    let mut node = NodeProcess::start_with(options(config(2, 1000)));
    assert_eq!(describe(&node), (2, "1000".to_string()));
    assert!(node.terminate(Duration::from_secs(30)).unwrap().success());
    let mut node = NodeProcess::start_with(options(config(3, 2000)));
    assert_eq!(describe(&node), (3, "2000".to_string()));
    node.terminate(Duration::from_secs(30));

    let shrink = temporary.path().join("shrink.toml");
    std::fs::write(&shrink, config(1, 2000)).unwrap();
    let output = std::process::Command::new(binary("ledge-node"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&shrink)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("shrink.toml line 2") && stderr.contains("has 3 partitions"),
        "{stderr}"
    );

    let stderr = run_node_expecting_failure("[limits]\nconnections_mx = 5\n");
    assert!(
        stderr.contains("line 2") && stderr.contains("connections_mx"),
        "{stderr}"
    );
    let stderr = run_node_expecting_failure(
        "[[topic]]\nname = \"t\"\npartitions = 1\nconfig.retention.ms = \"soon\"\n",
    );
    assert!(
        stderr.contains("line 1") && stderr.contains("retention.ms"),
        "{stderr}"
    );
}

// Goal: SIGTERM finishes what is in flight, syncs every log and exits 0: records produced
// with acks=1 (acknowledged before their fsync) are all there after a restart.
#[test]
fn graceful_shutdown_syncs_acks_1_records() {
    let mut node = NodeProcess::start();
    let written = runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        create_topic(&client, "t", 1, &[]).await;
        let mut written = 0;
        for _ in 0..50 {
            let response = produce(&client, "t", batch(10), Acks::Leader).await;
            assert_eq!(response.error, ErrorCode::None);
            written += 10;
        }
        written
    });
    let status = node
        .terminate(Duration::from_secs(30))
        .expect("the node exits on SIGTERM");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        node.log()
    );
    assert!(node.log().contains("shutdown complete"));
    node.restart();
    runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        assert_eq!(high_watermark(&client, "t").await, written);
    });
}

// Goal: connections beyond `limits.connections_max` are refused at the handshake while the
// ones inside the limit keep working.
#[test]
fn connections_beyond_the_limit_are_refused() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[limits]\nconnections_max = 2\n".into()),
        ..NodeOptions::default()
    });
    runtime().block_on(async {
        let first = RawClient::connect(&node).await;
        let second = RawClient::connect(&node).await;
        let refused = RawClient::try_connect(&node).await;
        assert!(refused.is_err(), "a third connection must be refused");
        let message = refused.err().unwrap_or_default();
        assert!(message.to_lowercase().contains("refused"), "{message}");
        for client in [&first, &second] {
            let (header, _) = client
                .request(&Request::Metadata(MetadataRequest { topics: None }))
                .await;
            assert_eq!(header.error, ErrorCode::None);
        }
    });
}

// Goal: an operator's certificate (`--tls-cert`/`--tls-key`) is served instead of the dev
// CA; a client trusting only the issuing CA connects, and a missing key file is a clear
// start-up error.
#[test]
fn operator_certificates_are_used() {
    // Borrow a CA and a server certificate from a node's dev material.
    let donor = NodeProcess::start();
    let tls = donor.data_dir.join("tls");
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.clone()),
        args: vec![
            "--tls-cert".into(),
            tls.join("server.pem").display().to_string(),
            "--tls-key".into(),
            tls.join("server.key").display().to_string(),
        ],
        ..NodeOptions::default()
    });
    assert!(
        !data_dir.join("tls").exists(),
        "no dev CA when certificates are given"
    );
    runtime().block_on(async {
        let client = RawClient::connect_trusting(&node, &tls.join("ca.pem"))
            .await
            .unwrap();
        let (header, _) = client
            .request(&Request::Metadata(MetadataRequest { topics: None }))
            .await;
        assert_eq!(header.error, ErrorCode::None);
    });
    let output = std::process::Command::new(binary("ledge-node"))
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(tls.join("server.pem"))
        .arg("--tls-key")
        .arg(temporary.path().join("missing.key"))
        .arg("--data-dir")
        .arg(temporary.path().join("other"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing.key"), "{stderr}");
}
