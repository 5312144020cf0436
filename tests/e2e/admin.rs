//! The admin HTTP listener of a real node (issue 16): `/metrics` reports what the node did
//! (offsets, sizes, a group 100 records behind, traffic by API, fsyncs, connections, disk,
//! replication) under the documented names, `/livez`, `/readyz` (503 while a partition is
//! offline) and `/v1/status`; malformed HTTP, oversized headers, request bodies, a client
//! that never finishes its headers and a scrape storm are each bounded while QUIC produce is
//! still served; a busy admin port is one start-up error line; with `[admin] tls = true` it
//! listens off loopback over HTTPS and asks for HTTP Basic credentials of a SCRAM user.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ledge_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(node: &NodeProcess) -> Client {
    Client::connect(ClientConfig::new(
        node.addr.to_string(),
        Trust::CaFile(node.ca_file.clone()),
    ))
    .await
    .unwrap()
}

/// Produces `count` records of about `value_bytes` bytes to partition 0 of `topic`, a
/// batch each, and waits for every acknowledgement.
async fn produce(client: &Client, topic: &str, count: usize, value_bytes: usize) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for index in 0..count {
        let mut value = format!("value-{index:06}-").into_bytes();
        value.resize(value_bytes.max(value.len()), b'x');
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic, value).partition(0))
                .await
                .unwrap(),
        );
        producer.flush().await;
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }
    producer.close().await;
}

/// Reads partition 0 of `topic` from offset 0 until `expected` records arrived.
async fn consume(client: &Client, topic: &str, expected: usize) -> usize {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    let partition = TopicPartition::new(topic, 0);
    consumer.assign(vec![partition.clone()]);
    consumer.seek(&partition, 0).unwrap();
    let mut read = 0;
    for _ in 0..60 {
        read += consumer
            .poll(Duration::from_millis(500), 1000)
            .await
            .unwrap()
            .len();
        if read >= expected {
            break;
        }
    }
    read
}

/// An HTTP answer: status code, headers (lowercase names) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// Sends `request` as is on a new connection and reads until the server closes it; `None`
/// when it closed without answering.
fn exchange(address: SocketAddr, request: &[u8]) -> Option<Answer> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The server may close before reading everything (a refused connection): a failed
    // write is then expected, and the read tells what happened.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    Some(Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

fn get(address: SocketAddr, path: &str) -> Answer {
    exchange(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: ledge\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|| panic!("GET {path}: the connection closed without an answer"))
}

/// Parses an OpenMetrics exposition into `name{labels} -> value` (labels sorted by name);
/// checks each sample's metric has a TYPE line and the text ends in `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no # EOF: {text}");
    let mut types = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            types.push(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let mut pairs: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                pairs.sort_unstable();
                (name, format!("{{{}}}", pairs.join(",")))
            }
            None => (series, String::new()),
        };
        assert!(
            types.iter().any(|family| name.starts_with(family.as_str())),
            "{name} has no TYPE line"
        );
        let value = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().unwrap()
        };
        samples.insert(format!("{name}{labels}"), value);
    }
    samples
}

fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let answer = get(address, "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer
            .headers
            .contains("content-type: application/openmetrics-text"),
        "{}",
        answer.headers
    );
    samples(&answer.body)
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("{series} missing from {samples:#?}"))
}

/// Goal: every named metric reports what the node did. Method: 150 records produced to
/// `orders` (a batch each), all consumed, the group `billing` set to offset 50 (100 behind),
/// then one scrape checked value by value; `/livez`, `/readyz` and `/v1/status` too.
#[test]
fn metrics_report_offsets_lag_and_traffic() {
    let node = NodeProcess::start();
    let admin = node
        .admin_addr
        .expect("the admin listener is on by default");
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("orders", 1)], false)
            .await
            .unwrap();
        produce(&client, "orders", 150, 100).await;
        assert_eq!(consume(&client, "orders", 150).await, 150);
    });
    let server = node.addr.to_string();
    let ca = node.ca_file.display().to_string();
    let (status, _, stderr) = run_cli(
        &[
            "--server",
            &server,
            "--ca",
            &ca,
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-offset",
            "50",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");

    let metrics = scrape(admin);
    let orders = "partition=\"0\",topic=\"orders\"";
    assert_eq!(
        value(&metrics, &format!("ledge_partition_end_offset{{{orders}}}")),
        150.0
    );
    assert_eq!(
        value(
            &metrics,
            &format!("ledge_partition_log_start_offset{{{orders}}}")
        ),
        0.0
    );
    let size = value(&metrics, &format!("ledge_partition_size_bytes{{{orders}}}"));
    assert!(size > 150.0 * 100.0, "{size}");
    assert_eq!(
        value(
            &metrics,
            &format!("ledge_consumer_group_lag{{group=\"billing\",{orders}}}")
        ),
        100.0
    );
    assert_eq!(
        value(&metrics, "ledge_consumer_group_lag_sum{group=\"billing\"}"),
        100.0
    );
    assert_eq!(
        value(&metrics, "ledge_produced_records_total{topic=\"orders\"}"),
        150.0
    );
    let produced = value(&metrics, "ledge_produced_bytes_total{topic=\"orders\"}");
    assert!(produced > 150.0 * 100.0, "{produced}");
    // Everything produced was read at least once.
    let fetched = value(&metrics, "ledge_fetched_bytes_total{topic=\"orders\"}");
    assert!(
        fetched >= produced,
        "fetched {fetched}, produced {produced}"
    );
    // One QUIC produce request per flushed batch, each timed.
    let produce_requests = value(
        &metrics,
        "ledge_requests_total{api=\"Produce\",outcome=\"ok\"}",
    );
    assert!(produce_requests >= 150.0, "{produce_requests}");
    assert_eq!(
        value(
            &metrics,
            "ledge_request_duration_seconds_count{api=\"Produce\"}"
        ),
        produce_requests
    );
    assert_eq!(
        value(
            &metrics,
            "ledge_request_duration_seconds_bucket{api=\"Produce\",le=\"+Inf\"}"
        ),
        produce_requests
    );
    assert!(
        value(
            &metrics,
            "ledge_requests_total{api=\"Fetch\",outcome=\"ok\"}"
        ) >= 1.0
    );
    assert!(value(&metrics, "ledge_fsync_duration_seconds_count") >= 1.0);
    // This scrape's own connection.
    assert!(value(&metrics, "ledge_connections{listener=\"admin\"}") >= 1.0);
    let disk = value(&metrics, "ledge_disk_usage_bytes");
    assert!(disk >= size, "{disk} < {size}");
    assert_eq!(value(&metrics, "ledge_disk_full"), 0.0);
    assert_eq!(value(&metrics, "ledge_partitions_offline"), 0.0);
    assert_eq!(value(&metrics, "ledge_under_replicated_partitions"), 0.0);
    assert_eq!(value(&metrics, "ledge_under_min_isr_partitions"), 0.0);
    // A node without [cluster] is its own controller.
    assert_eq!(value(&metrics, "ledge_controller_active"), 1.0);
    assert_eq!(
        value(
            &metrics,
            "ledge_metrics_label_sets_dropped{metric=\"ledge_partition_end_offset\"}"
        ),
        0.0
    );

    let livez = get(admin, "/livez");
    assert_eq!((livez.status, livez.body.as_str()), (200, "ok\n"));
    let readyz = get(admin, "/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    let status = get(admin, "/v1/status");
    assert_eq!(status.status, 200);
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(status["node_id"], 1);
    assert_eq!(status["listeners"]["quic"], node.addr.to_string());
    assert_eq!(status["listeners"]["admin"], admin.to_string());
    assert_eq!(
        status["data_dir"],
        node.data_dir.display().to_string().as_str()
    );
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    // `orders` and `__consumer_offsets`.
    assert_eq!(status["topics"], 2);
    assert_eq!(status["partitions"], 2);
    assert_eq!(status["partitions_offline"], 0);
    assert_eq!(status["health"]["ready"], true);
    assert!(status["disk"]["log_bytes"].as_u64().unwrap() >= size as u64);
    assert_eq!(get(admin, "/nowhere").status, 404);
}

/// Goal: `/readyz` is 503 with the reason while a partition is offline, `/livez` stays 200
/// and `/metrics` counts it. Method: as `damage.rs`, a bit flipped in the middle of a
/// segment with the checkpoint removed keeps `events` offline after a restart.
#[test]
fn readyz_is_503_while_a_partition_is_offline() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("events", 1)], false)
            .await
            .unwrap();
        produce(&client, "events", 300, 100).await;
    });
    let admin = node.admin_addr.unwrap();
    assert_eq!(get(admin, "/readyz").status, 200);
    node.terminate(Duration::from_secs(30)).unwrap();
    let partition = node.data_dir.join("logs").join("events-0");
    let segment = partition.join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, bytes).unwrap();
    std::fs::remove_file(partition.join("checkpoint")).unwrap();
    node.restart();
    let admin = node.admin_addr.unwrap();
    let readyz = get(admin, "/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert!(
        readyz.headers.contains("content-type: application/json"),
        "{}",
        readyz.headers
    );
    let reasons: serde_json::Value = serde_json::from_str(&readyz.body).unwrap();
    assert_eq!(reasons["ready"], false);
    let reason = reasons["reasons"][0].as_str().unwrap();
    assert!(reason.contains("partition events-0 is offline"), "{reason}");
    assert_eq!(get(admin, "/livez").status, 200);
    let metrics = scrape(admin);
    assert_eq!(value(&metrics, "ledge_partitions_offline"), 1.0);
    let status: serde_json::Value = serde_json::from_str(&get(admin, "/v1/status").body).unwrap();
    assert_eq!(status["partitions_offline"], 1);
    assert_eq!(status["health"]["ready"], false);
}

/// Goal (issue 16, bad input): malformed HTTP, an oversized request head, a request body, a
/// client that never finishes its head and a storm of concurrent scrapes are each bounded
/// by the admin listener, and QUIC produce is served throughout. Method: each sent on its
/// own connection to a node with small `[admin]` limits; 400 records produced over QUIC
/// while 24 threads scrape `/metrics` as fast as they can.
#[test]
fn bad_input_on_the_admin_listener_is_bounded_and_quic_still_serves() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some(
            "[admin]\nconnections_max = 4\nheader_bytes_max = 2048\nheader_read_timeout_ms = 300\nconnection_time_max_ms = 30000\n"
                .into(),
        ),
        ..NodeOptions::default()
    });
    let admin = node.admin_addr.unwrap();
    // Malformed HTTP: answered 400, the connection closed.
    let malformed = exchange(admin, b"THIS IS NOT HTTP\r\n\r\n");
    assert!(
        malformed.as_ref().is_none_or(|answer| answer.status == 400),
        "{:?}",
        malformed.map(|answer| answer.status)
    );
    let binary_garbage = exchange(admin, &[0u8, 159, 146, 150, 13, 10, 13, 10]);
    assert!(binary_garbage.is_none_or(|answer| answer.status == 400));
    // A head over admin.header_bytes_max: 431.
    let oversized = format!(
        "GET /metrics HTTP/1.1\r\nHost: ledge\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(4096)
    );
    assert_eq!(
        exchange(admin, oversized.as_bytes()).map(|answer| answer.status),
        Some(431)
    );
    // A body is refused, whatever the method.
    let with_body = exchange(
        admin,
        b"POST /metrics HTTP/1.1\r\nHost: ledge\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(with_body.map(|answer| answer.status), Some(413));
    let other_method = exchange(admin, b"DELETE /metrics HTTP/1.1\r\nHost: ledge\r\n\r\n");
    assert_eq!(other_method.map(|answer| answer.status), Some(405));
    // A client that never finishes its head is cut off (admin.header_read_timeout_ms):
    // the read ends (EOF, or hyper's 408) instead of waiting forever.
    let mut slow = TcpStream::connect(admin).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: le")
        .unwrap();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "the slow client was not cut off: {read:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );

    // The scrape storm, with QUIC produce running.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..24)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let (mut served, mut refused) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: ledge\r\n\r\n") {
                        Some(answer) => {
                            assert_eq!(answer.status, 200);
                            assert!(answer.body.ends_with("# EOF\n"));
                            served += 1;
                        }
                        // Over admin.connections_max: closed at once.
                        None => refused += 1,
                    }
                }
                (served, refused)
            })
        })
        .collect();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new("storm", 1)], false)
            .await
            .unwrap();
        produce(&client, "storm", 400, 200).await;
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut served = 0;
    for scraper in scrapers {
        let (done, _) = scraper.join().expect("a scraper failed");
        served += done;
    }
    assert!(served > 0, "no scrape was served");
    let metrics = scrape(admin);
    assert_eq!(
        value(&metrics, "ledge_produced_records_total{topic=\"storm\"}"),
        400.0
    );
    // The storm's connections are gone once their tasks end (a client sees the close a
    // moment before the task drops its count): only the scrape's own remains.
    let open = (0..100)
        .map(|_| value(&scrape(admin), "ledge_connections{listener=\"admin\"}"))
        .find(|open| *open == 1.0);
    assert_eq!(open, Some(1.0));
    assert_eq!(get(admin, "/livez").status, 200);
}

/// Goal: the admin listener on a port in use is one clear start-up error line, and nothing
/// is written. Method: the port held by this test.
#[test]
fn admin_busy_port_is_one_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let output = std::process::Command::new(binary("ledge-node"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", &address])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started on a busy port: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "error: cannot listen for admin HTTP on {address} (TCP): "
        )),
        "{stderr}"
    );
    assert!(lines[0].contains("--admin-listen"), "{stderr}");
    assert!(!data_dir.exists(), "data directory created");
}

/// Goal: the admin listener turns off, and off loopback it is refused unless anonymous
/// access is allowed explicitly (it has no authentication). Method: `--admin-listen off`
/// starts with no admin line; `0.0.0.0:0` is refused before anything is written, and
/// starts with `[security] allow_anonymous = true`.
#[test]
fn admin_listener_turns_off_and_refuses_to_serve_anonymously_off_loopback() {
    let off = NodeProcess::start_with(NodeOptions {
        args: vec!["--admin-listen".into(), "off".into()],
        ..NodeOptions::default()
    });
    assert_eq!(off.admin_addr, None);
    assert!(!off.log().contains("admin listener up"));

    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("data");
    let output = std::process::Command::new(binary("ledge-node"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("the admin HTTP listener on 0.0.0.0:0 is not on a loopback address")
            && stderr.contains("allow_anonymous = true"),
        "{stderr}"
    );
    assert!(!data_dir.exists());

    let allowed = NodeProcess::start_with(NodeOptions {
        config: Some("[security]\nallow_anonymous = true\n".into()),
        args: vec!["--admin-listen".into(), "0.0.0.0:0".into()],
        ..NodeOptions::default()
    });
    let port = allowed.admin_addr.unwrap().port();
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(get(loopback, "/livez").status, 200);
}

/// `GET path` over TLS to `address`, trusting `ca_file`, with `Authorization: Basic` for
/// `basic`; `None` when the connection closed without an answer.
fn get_tls(
    address: SocketAddr,
    ca_file: &std::path::Path,
    path: &str,
    basic: Option<(&str, &str)>,
) -> Option<Answer> {
    use base64::Engine as _;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(
        std::sync::Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let authorization = basic.map_or_else(String::new, |(user, password)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    });
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}\r\n").as_bytes(),
    )
    .ok()?;
    let mut bytes = Vec::new();
    // The node may close without close_notify: what arrived is the answer.
    let _ = tls.read_to_end(&mut bytes);
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Answer {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

// Goal (issue 16, admin listener off loopback): with `[admin] tls = true` a node listens
// for admin on 0.0.0.0 without `allow_anonymous`, serves HTTPS with its own (development)
// certificate, and asks for credentials: HTTP Basic as a SCRAM user created with `ledge
// user create` reads /metrics, a wrong password and none are 401 with a Basic challenge,
// the probes answer without credentials, plain HTTP gets no answer.
#[test]
fn an_admin_listener_with_tls_authenticates_scram_users_off_loopback() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[admin]\ntls = true\n".into()),
        args: vec!["--admin-listen".into(), "0.0.0.0:0".into()],
        ..NodeOptions::default()
    });
    let port = node.admin_addr.unwrap().port();
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    crate::cli::ok(
        &node,
        &["user", "create", "prometheus", "--password-stdin"],
        Some("scrape-secret\n"),
    );
    let metrics = get_tls(
        address,
        &node.ca_file,
        "/metrics",
        Some(("prometheus", "scrape-secret")),
    )
    .unwrap();
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert!(
        metrics.body.contains("ledge_connections"),
        "{}",
        metrics.body
    );
    for basic in [Some(("prometheus", "wrong")), None] {
        let refused = get_tls(address, &node.ca_file, "/v1/status", basic).unwrap();
        assert_eq!(refused.status, 401, "{basic:?}");
        assert!(
            refused
                .headers
                .contains("www-authenticate: basic realm=\"ledge-admin\""),
            "{}",
            refused.headers
        );
    }
    assert_eq!(
        get_tls(address, &node.ca_file, "/livez", None)
            .unwrap()
            .status,
        200
    );
    // Plain HTTP gets no HTTP answer (at most a TLS alert record).
    let mut plain = TcpStream::connect(address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let _ = plain.write_all(b"GET /livez HTTP/1.1\r\nHost: ledge\r\n\r\n");
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes);
    assert!(!bytes.starts_with(b"HTTP/"), "{bytes:?}");
}
