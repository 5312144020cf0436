//! The Kafka listener's TLS socket (`--kafka-tls-listen`) with real clients: kcat
//! (librdkafka, OpenSSL) and Apache Kafka's Java client and tools, each verifying the
//! node's certificate against the CA the node uses for QUIC (here its development CA,
//! `<data-dir>/tls/ca.pem`), with hostname verification on (both clients' default).

use ledge_e2e::{NodeOptions, NodeProcess};

use crate::kafka_clients::{kcat, missing, run_kcat};
use crate::kafka_java::{
    CONSOLE_CONSUMER, CONSOLE_PRODUCER, TOPICS, kafka_java_lib, tool, tool_ok,
};

fn start_with_tls() -> NodeProcess {
    NodeProcess::start_with(NodeOptions {
        args: vec!["--kafka-tls-listen".to_owned(), "127.0.0.1:0".to_owned()],
        ..NodeOptions::default()
    })
}

// Goal: kcat lists, produces (idempotent, acks=all) and consumes over TLS, and Metadata
// asked over TLS names the TLS port (librdkafka then connects to it for everything else).
// Method: a node with both listeners; kcat with `security.protocol=ssl` and the node's CA.
#[test]
fn kafka_tls_kcat_lists_produces_and_consumes() {
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let node = start_with_tls();
    let tls = node
        .kafka_tls_addr
        .expect("--kafka-tls-listen starts the TLS listener")
        .to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let ssl = [
        "-b",
        tls.as_str(),
        "-X",
        "security.protocol=ssl",
        "-X",
        &format!("ssl.ca.location={ca}"),
    ]
    .map(str::to_owned);
    let with = |args: &[&str]| -> Vec<String> {
        ssl.iter()
            .cloned()
            .chain(args.iter().map(|arg| (*arg).to_owned()))
            .collect()
    };
    let run = |args: &[&str], stdin: &str| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_kcat(&kcat, &args, stdin)
    };
    let listing = run(&["-L", "-J"], "");
    let metadata: serde_json::Value = serde_json::from_str(&listing).expect("kcat -J is JSON");
    let brokers = metadata["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{listing}");
    assert_eq!(brokers[0]["name"], tls, "{listing}");

    // The topic is made over plaintext by the Java tool below in the other test; here kcat
    // cannot create topics, so the native CLI does.
    let (status, _, stderr) = ledge_e2e::run_cli(
        &[
            "--server",
            &node.addr.to_string(),
            "--ca",
            &ca,
            "topic",
            "create",
            "secret",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    let lines: Vec<String> = (0..30).map(|number| format!("secret-{number}")).collect();
    run(
        &[
            "-P",
            "-t",
            "secret",
            "-p",
            "0",
            "-X",
            "enable.idempotence=true",
            "-X",
            "acks=all",
        ],
        &(lines.join("\n") + "\n"),
    );
    let consumed = run(
        &[
            "-C",
            "-t",
            "secret",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        "",
    );
    assert_eq!(
        consumed.lines().collect::<Vec<_>>(),
        lines,
        "kcat -C over TLS"
    );
    // Plaintext kcat pointed at the TLS port gets nowhere, and the node keeps serving.
    let output = std::process::Command::new(&kcat)
        .args(["-b", &tls, "-L", "-m", "3"])
        .output()
        .expect("run kcat");
    assert!(
        !output.status.success(),
        "plaintext metadata over the TLS port"
    );
    assert!(
        node.log()
            .contains("kafka TLS connection closed: handshake failed"),
        "{}",
        node.log()
    );
    let again = run(
        &["-C", "-t", "secret", "-p", "0", "-o", "-1", "-e", "-q"],
        "",
    );
    assert_eq!(again.trim(), "secret-29");
}

// Goal: with the plaintext listener off (`--kafka-listen off`), Kafka is served over TLS
// only: the node announces no plaintext Kafka address, nothing accepts TCP at the address
// plaintext would default to (the QUIC address), and kcat lists, produces and consumes
// over TLS, Metadata naming the TLS port.
#[test]
fn kafka_tls_only_serves_kcat_without_a_plaintext_listener() {
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let node = NodeProcess::start_with(NodeOptions {
        args: ["--kafka-listen", "off", "--kafka-tls-listen", "127.0.0.1:0"]
            .map(str::to_owned)
            .to_vec(),
        ..NodeOptions::default()
    });
    assert_eq!(
        node.kafka_addr, None,
        "no plaintext Kafka listener announced"
    );
    assert!(
        std::net::TcpStream::connect(node.addr).is_err(),
        "something accepts TCP at the QUIC address {}",
        node.addr
    );
    let tls = node
        .kafka_tls_addr
        .expect("--kafka-tls-listen starts the TLS listener")
        .to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let ssl_ca = format!("ssl.ca.location={ca}");
    let run = |args: &[&str], stdin: &str| {
        let mut all = vec![
            "-b",
            tls.as_str(),
            "-X",
            "security.protocol=ssl",
            "-X",
            ssl_ca.as_str(),
        ];
        all.extend_from_slice(args);
        run_kcat(&kcat, &all, stdin)
    };
    let listing = run(&["-L", "-J"], "");
    let metadata: serde_json::Value = serde_json::from_str(&listing).expect("kcat -J is JSON");
    let brokers = metadata["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{listing}");
    assert_eq!(brokers[0]["name"], tls, "{listing}");
    let (status, _, stderr) = ledge_e2e::run_cli(
        &[
            "--server",
            &node.addr.to_string(),
            "--ca",
            &ca,
            "topic",
            "create",
            "tls-only",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    let lines: Vec<String> = (0..10).map(|number| format!("only-{number}")).collect();
    run(
        &["-P", "-t", "tls-only", "-p", "0", "-X", "acks=all"],
        &(lines.join("\n") + "\n"),
    );
    let consumed = run(
        &[
            "-C",
            "-t",
            "tls-only",
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ],
        "",
    );
    assert_eq!(consumed.lines().collect::<Vec<_>>(), lines);
}

// Goal: Kafka's own Java client and tools work over TLS with the node's CA given as a PEM
// trust store (`ssl.truststore.type=PEM`, KIP-651): `kafka-topics --create/--describe`,
// the console producer (acks=all) and the console consumer in a group. Method: the tools'
// `--command-config`, `--producer-property` and `--consumer-property`.
#[test]
fn kafka_tls_java_client_and_tools() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let node = start_with_tls();
    let tls = node
        .kafka_tls_addr
        .expect("--kafka-tls-listen starts the TLS listener")
        .to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let properties = [
        "security.protocol=SSL".to_owned(),
        "ssl.truststore.type=PEM".to_owned(),
        format!("ssl.truststore.location={ca}"),
    ];
    let config_file = node.data_dir.with_extension("ssl.properties");
    std::fs::write(&config_file, properties.join("\n") + "\n").expect("write client config");
    let config = config_file.to_string_lossy().into_owned();
    let topics = |args: &[&str]| -> Vec<String> {
        ["--bootstrap-server", &tls, "--command-config", &config]
            .iter()
            .chain(args)
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    let args = topics(&["--create", "--topic", "sealed", "--partitions", "2"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let created = tool_ok(&node, &lib, TOPICS, &args, "");
    assert!(created.contains("Created topic sealed."), "{created}");
    let args = topics(&["--describe", "--topic", "sealed"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let described = tool_ok(&node, &lib, TOPICS, &args, "");
    assert!(described.contains("PartitionCount: 2"), "{described}");

    let mut producer = vec!["--bootstrap-server", &tls, "--topic", "sealed"];
    for property in &properties {
        producer.extend(["--producer-property", property]);
    }
    producer.extend(["--producer-property", "acks=all"]);
    tool_ok(
        &node,
        &lib,
        CONSOLE_PRODUCER,
        &producer,
        "one\ntwo\nthree\n",
    );
    let mut consumer = vec![
        "--bootstrap-server",
        &tls,
        "--topic",
        "sealed",
        "--group",
        "sealed-readers",
        "--from-beginning",
        "--max-messages",
        "3",
        "--timeout-ms",
        "60000",
    ];
    for property in &properties {
        consumer.extend(["--consumer-property", property]);
    }
    let consumed = tool_ok(&node, &lib, CONSOLE_CONSUMER, &consumer, "");
    let mut values: Vec<&str> = consumed.lines().collect();
    values.sort_unstable();
    assert_eq!(values, ["one", "three", "two"], "{consumed}");

    // Without the CA the client refuses the node's certificate: verification is real.
    let unverified = tool(
        &lib,
        TOPICS,
        &[
            "--bootstrap-server",
            &tls,
            "--command-config",
            &{
                let path = node.data_dir.with_extension("nossl.properties");
                std::fs::write(&path, "security.protocol=SSL\n").expect("write client config");
                path.to_string_lossy().into_owned()
            },
            "--list",
        ],
        "",
    );
    assert!(!unverified.success, "{}", unverified.stdout);
    assert!(
        unverified.stderr.contains("SSLHandshakeException")
            || unverified.stderr.contains("PKIX")
            || unverified.stdout.contains("SSLHandshakeException"),
        "{}\n{}",
        unverified.stdout,
        unverified.stderr
    );
}

// Goal (issue 15, mTLS on the Kafka listener with a real client): with `[security]
// client_auth = "required"`, kcat presenting a certificate from `ledge-node cert issue`
// (`ssl.certificate.location`/`ssl.key.location`, the tutorial's `SSL` client settings)
// lists the cluster over TLS, and kcat without one is refused.
#[test]
fn kafka_tls_kcat_with_a_client_certificate_when_the_node_requires_one() {
    let Some(kcat) = kcat() else {
        missing("kcat");
        return;
    };
    let node = NodeProcess::start_with(NodeOptions {
        args: vec!["--kafka-tls-listen".to_owned(), "127.0.0.1:0".to_owned()],
        config: Some("[security]\nclient_auth = \"required\"\n".into()),
        ..NodeOptions::default()
    });
    let out = tempfile::tempdir().unwrap();
    let issued = std::process::Command::new(ledge_e2e::binary("ledge-node"))
        .args(["cert", "issue", "--name", "alice"])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let tls = node.kafka_tls_addr.expect("a TLS listener").to_string();
    let ca = format!("ssl.ca.location={}", node.ca_file.display());
    let certificate = format!(
        "ssl.certificate.location={}",
        out.path().join("alice.pem").display()
    );
    let key = format!(
        "ssl.key.location={}",
        out.path().join("alice.key").display()
    );
    let listing = run_kcat(
        &kcat,
        &[
            "-b",
            &tls,
            "-X",
            "security.protocol=ssl",
            "-X",
            &ca,
            "-X",
            &certificate,
            "-X",
            &key,
            "-L",
            "-J",
        ],
        "",
    );
    let metadata: serde_json::Value = serde_json::from_str(&listing).expect("kcat -J is JSON");
    assert_eq!(metadata["brokers"][0]["name"], tls, "{listing}");
    let refused = std::process::Command::new(&kcat)
        .args([
            "-b",
            &tls,
            "-X",
            "security.protocol=ssl",
            "-X",
            &ca,
            "-L",
            "-m",
            "3",
        ])
        .output()
        .expect("run kcat");
    assert!(
        !refused.status.success(),
        "kcat without a certificate was served: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
}
