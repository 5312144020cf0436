//! Real Kafka clients authenticating with SASL against an in-process listener on real
//! sockets: kafka-python (`tests/kafka/kafka_python_sasl.py`) and confluent-kafka, i.e.
//! librdkafka (`tests/kafka/confluent_kafka_sasl.py`), produce and consume with SCRAM-SHA-256
//! and SCRAM-SHA-512 over SASL_PLAINTEXT, kafka-python with PLAIN and SCRAM over SASL_SSL
//! (the tutorial's settings), a wrong password is refused, and kafka-python re-authenticates
//! (KIP-368) when the session is short. The users come from the test's credential fixture
//! (real SCRAM credentials from real passwords): the durable user store is wired in by the
//! node, where `ledge user create` makes them.
//!
//! The clients are installed by `.ci/run` (the venv under `target/kafka-venv`), which sets
//! `LEDGE_REQUIRE_KAFKA_CLIENTS=1`: there a missing client fails the test; elsewhere it is
//! reported ("skipped: ...") and the test returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;
use crate::kafka::sasl::tests::{ALICE_PASSWORD, sasl_settings};
use crate::kafka::sasl::{KafkaSasl, SaslCounts};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ has a parent")
        .to_path_buf()
}

/// The venv's Python if it imports `module`; else a loud skip (or a failure under `.ci/run`).
fn python_with(module: &str) -> Option<PathBuf> {
    let python = std::env::var_os("LEDGE_KAFKA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/kafka-venv/bin/python"));
    let imports = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if imports {
        return Some(python);
    }
    if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
        panic!("{module} is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
    }
    eprintln!("skipped: {module} not installed (.ci/run installs it)");
    None
}

/// A listener with SASL (alice and bob; anonymous clients refused), plaintext and TLS.
struct SaslNode {
    running: Running,
    tls_address: SocketAddr,
    ca_file: PathBuf,
    sasl: Arc<KafkaSasl>,
    _certificates: tempfile::TempDir,
}

async fn start_node(settings: KafkaSettings) -> SaslNode {
    let certificates = tempfile::tempdir().unwrap();
    let certificate = crate::transport::tls::load_or_generate_dev(certificates.path()).unwrap();
    let settings = KafkaSettings {
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..settings
    };
    let mut listener = KafkaListener::bind(any_port(), settings).unwrap();
    listener.present(certificate).unwrap();
    let sasl = Arc::new(sasl_settings(false));
    listener.sasl(Arc::clone(&sasl));
    let tls_address = listener.local_tls_addr().unwrap().unwrap();
    // Real clients stamp records with the real time: the broker's clock must be real too.
    let broker = Broker::open(
        SimDisk::new(9),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(crate::clock::SystemClock),
    )
    .await
    .unwrap();
    let address = listener.local_addr().transpose().unwrap();
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn(listener.serve(Arc::new(broker), stopped));
    SaslNode {
        running: Running {
            address,
            stop,
            serving,
        },
        tls_address,
        ca_file: certificates.path().join("tls/ca.pem"),
        sasl,
        _certificates: certificates,
    }
}

impl SaslNode {
    async fn stop(self) {
        let _ = self.running.stop.send(true);
        self.running.serving.await.unwrap();
    }
}

/// What a script run is asked to do.
struct Run<'a> {
    script: &'a str,
    bootstrap: SocketAddr,
    protocol: &'a str,
    mechanism: &'a str,
    password: &'a str,
    topic: &'a str,
    cafile: Option<&'a Path>,
    expect: &'a str,
    pause_s: f64,
}

/// Runs the script (off the runtime's threads); its output, after checking it succeeded.
async fn run(python: &Path, run: Run<'_>) -> String {
    let arguments = serde_json::json!({
        "bootstrap": run.bootstrap.to_string(),
        "protocol": run.protocol,
        "mechanism": run.mechanism,
        "user": "alice",
        "password": run.password,
        "topic": run.topic,
        "records": 40,
        "cafile": run.cafile.map(|path| path.to_string_lossy().into_owned()),
        "expect": run.expect,
        "pause_s": run.pause_s,
    })
    .to_string();
    let script = workspace().join("tests/kafka").join(run.script);
    let python = python.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(arguments)
            .output()
            .expect("run python")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} {}: {stdout}\n{stderr}",
        run.script,
        run.protocol,
        run.mechanism
    );
    stdout
}

// Goal: kafka-python's tutorial settings work with SCRAM over SASL_PLAINTEXT and with PLAIN
// and SCRAM over SASL_SSL; a wrong password is refused without the password in the error;
// PLAIN over plaintext is refused. Method: produce then consume 40 records per run; the
// listener's counters show the exchanges happened (and failed where they should).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_authenticates_with_scram_and_plain() {
    let Some(python) = python_with("kafka") else {
        return;
    };
    let node = start_node(KafkaSettings::default()).await;
    let plain = node.running.plain();
    let base = |protocol, mechanism, topic| Run {
        script: "kafka_python_sasl.py",
        bootstrap: plain,
        protocol,
        mechanism,
        password: ALICE_PASSWORD,
        topic,
        cafile: None,
        expect: "ok",
        pause_s: 0.0,
    };
    let output = run(&python, base("SASL_PLAINTEXT", "SCRAM-SHA-256", "scram256")).await;
    assert!(output.contains("consumed 40"), "{output}");
    run(&python, base("SASL_PLAINTEXT", "SCRAM-SHA-512", "scram512")).await;
    let counts = node.sasl.counts();
    assert!(counts.authentications >= 2, "{counts:?}");
    assert_eq!(counts.failures, 0, "{counts:?}");

    let output = run(
        &python,
        Run {
            password: "not-alices-password",
            expect: "auth-failure",
            ..base("SASL_PLAINTEXT", "SCRAM-SHA-256", "refused")
        },
    )
    .await;
    assert!(output.contains("refused"), "{output}");
    // PLAIN is not offered on plaintext: the client is refused at the handshake.
    run(
        &python,
        Run {
            expect: "auth-failure",
            ..base("SASL_PLAINTEXT", "PLAIN", "refused")
        },
    )
    .await;
    assert!(node.sasl.counts().failures >= 2, "{:?}", node.sasl.counts());

    for (mechanism, topic) in [("PLAIN", "tls-plain"), ("SCRAM-SHA-512", "tls-scram")] {
        let output = run(
            &python,
            Run {
                bootstrap: node.tls_address,
                cafile: Some(&node.ca_file),
                ..base("SASL_SSL", mechanism, topic)
            },
        )
        .await;
        assert!(output.contains("consumed 40"), "{output}");
    }
    node.stop().await;
}

// Goal: with a short session (kafka.sasl_session_lifetime_ms), kafka-python re-authenticates
// on its connection (KIP-368) and keeps producing; nothing is lost. Method: the script waits
// past the lifetime between two halves of its produce; the listener counts at least one
// re-authentication and no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_reauthenticates_when_the_session_is_short() {
    let Some(python) = python_with("kafka") else {
        return;
    };
    let node = start_node(KafkaSettings {
        sasl_session_lifetime: std::time::Duration::from_millis(1500),
        ..KafkaSettings::default()
    })
    .await;
    let output = run(
        &python,
        Run {
            script: "kafka_python_sasl.py",
            bootstrap: node.running.plain(),
            protocol: "SASL_PLAINTEXT",
            mechanism: "SCRAM-SHA-256",
            password: ALICE_PASSWORD,
            topic: "reauth",
            cafile: None,
            expect: "ok",
            pause_s: 3.0,
        },
    )
    .await;
    assert!(output.contains("consumed 40"), "{output}");
    let counts: SaslCounts = node.sasl.counts();
    assert!(counts.reauthentications >= 1, "{counts:?}");
    assert_eq!(counts.failures, 0, "{counts:?}");
    node.stop().await;
}

// Goal: librdkafka (confluent-kafka) produces and consumes with SCRAM-SHA-256 and -512 over
// SASL_PLAINTEXT, and reports a wrong password as an authentication error without the
// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_authenticates_with_scram() {
    let Some(python) = python_with("confluent_kafka") else {
        return;
    };
    let node = start_node(KafkaSettings::default()).await;
    for (mechanism, topic) in [("SCRAM-SHA-256", "rd256"), ("SCRAM-SHA-512", "rd512")] {
        let output = run(
            &python,
            Run {
                script: "confluent_kafka_sasl.py",
                bootstrap: node.running.plain(),
                protocol: "SASL_PLAINTEXT",
                mechanism,
                password: ALICE_PASSWORD,
                topic,
                cafile: None,
                expect: "ok",
                pause_s: 0.0,
            },
        )
        .await;
        assert!(output.contains("consumed 40"), "{output}");
    }
    let output = run(
        &python,
        Run {
            script: "confluent_kafka_sasl.py",
            bootstrap: node.running.plain(),
            protocol: "SASL_PLAINTEXT",
            mechanism: "SCRAM-SHA-512",
            password: "not-alices-password",
            topic: "rd-refused",
            cafile: None,
            expect: "auth-failure",
            pause_s: 0.0,
        },
    )
    .await;
    assert!(output.contains("refused"), "{output}");
    assert!(node.sasl.counts().failures >= 1);
    node.stop().await;
}
