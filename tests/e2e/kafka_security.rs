//! SCRAM users and ACLs through Kafka's own tools (issue 15): `kafka-configs --entity-type
//! users` (AlterUserScramCredentials, DescribeUserScramCredentials) and `kafka-acls`
//! (CreateAcls, DescribeAcls, DeleteAcls) against a node's Kafka listener, and what they
//! made surviving a restart (`<data-dir>/security.json`).

use std::os::unix::fs::PermissionsExt;

use ledge_e2e::NodeProcess;

use crate::kafka_java::{kafka_java_lib, missing, tool, tool_ok};

const CONFIGS: &str = "kafka.admin.ConfigCommand";
const ACLS: &str = "org.apache.kafka.tools.AclCommand";

#[test]
fn kafka_tools_manage_users_and_acls_durably() {
    let Some(lib) = kafka_java_lib() else {
        missing("the Kafka Java tools");
        return;
    };
    let mut node = NodeProcess::start();
    // The Kafka port may change at a restart: read it each time.
    let with = |node: &NodeProcess, args: &[&str]| -> Vec<String> {
        let kafka = node
            .kafka_addr
            .expect("the Kafka listener is on by default")
            .to_string();
        ["--bootstrap-server", kafka.as_str()]
            .iter()
            .chain(args.iter())
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    let run_ok = |node: &NodeProcess, class: &str, args: &[&str]| -> String {
        let args = with(node, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool_ok(node, &lib, class, &args, "")
    };

    let altered = run_ok(
        &node,
        CONFIGS,
        &[
            "--alter",
            "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret]",
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    );
    assert!(
        altered.contains("Completed updating config for user alice."),
        "{altered}"
    );
    let describe_alice = [
        "--describe",
        "--entity-type",
        "users",
        "--entity-name",
        "alice",
    ];
    let described = run_ok(&node, CONFIGS, &describe_alice);
    assert!(
        described.contains(
            "SCRAM credential configs for user-principal 'alice' are SCRAM-SHA-256=iterations=8192"
        ),
        "{described}"
    );
    // The file holds keys, never the password, and only its owner may read it.
    let file = node.data_dir.join("security.json");
    let contents = std::fs::read_to_string(&file).unwrap();
    assert!(!contents.contains("alice-secret"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Too many iterations (the tool itself refuses too few): the node's
    // UNACCEPTABLE_CREDENTIAL, reported by the tool.
    let weak = with(
        &node,
        &[
            "--alter",
            "--add-config",
            "SCRAM-SHA-512=[iterations=20000,password=x]",
            "--entity-type",
            "users",
            "--entity-name",
            "bob",
        ],
    );
    let weak: Vec<&str> = weak.iter().map(String::as_str).collect();
    let refused = tool(&lib, CONFIGS, &weak, "");
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("Too many iterations"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );

    let added = run_ok(
        &node,
        ACLS,
        &[
            "--add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
    );
    assert!(added.contains("User:alice"), "{added}");
    run_ok(
        &node,
        ACLS,
        &[
            "--add",
            "--deny-principal",
            "User:mallory",
            "--operation",
            "All",
            "--group",
            "billing",
            "--resource-pattern-type",
            "prefixed",
        ],
    );
    let listed = run_ok(&node, ACLS, &["--list", "--topic", "orders"]);
    assert!(
        listed.contains("(principal=User:alice, host=*, operation=READ, permissionType=ALLOW)"),
        "{listed}"
    );

    // Everything survives a restart.
    node.restart();
    let described = run_ok(&node, CONFIGS, &describe_alice);
    assert!(
        described.contains("SCRAM-SHA-256=iterations=8192"),
        "{described}"
    );
    let listed = run_ok(&node, ACLS, &["--list"]);
    assert!(listed.contains("User:alice"), "{listed}");
    assert!(
        listed.contains("name=billing, patternType=PREFIXED"),
        "{listed}"
    );
    assert!(listed.contains("permissionType=DENY"), "{listed}");

    run_ok(
        &node,
        ACLS,
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
    );
    let listed = run_ok(&node, ACLS, &["--list", "--topic", "orders"]);
    assert!(!listed.contains("User:alice"), "{listed}");
    run_ok(
        &node,
        CONFIGS,
        &[
            "--alter",
            "--delete-config",
            "SCRAM-SHA-256",
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    );
    node.restart();
    let described = run_ok(&node, CONFIGS, &describe_alice);
    assert!(!described.contains("SCRAM-SHA-256"), "{described}");
    let listed = run_ok(&node, ACLS, &["--list"]);
    assert!(!listed.contains("User:alice"), "{listed}");
    assert!(listed.contains("User:mallory"), "{listed}");
}

/// Goal (issue 15): the tutorial's kafka-python SASL settings work as written against a node
/// whose users were made with `ledge user create`: SCRAM-SHA-256 and SCRAM-SHA-512 over
/// SASL_PLAINTEXT and PLAIN over SASL_SSL produce and consume, a wrong password is refused without being repeated,
/// and with `allow_anonymous = false` a client that does not authenticate is not served.
/// The users are created while the node still takes anonymous clients on loopback (the
/// default), then the node restarts requiring authentication: how an operator bootstraps.
#[test]
fn kafka_python_authenticates_with_users_the_cli_created() {
    let Some(python) = crate::kafka_confluent_aiokafka::python_with("kafka") else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("kafka-python is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: kafka-python not installed (.ci/run installs it)");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let open = NodeProcess::start_with(ledge_e2e::NodeOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    });
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        crate::cli::ok(
            &open,
            &[
                "user",
                "create",
                "alice",
                "--mechanism",
                mechanism,
                "--password-stdin",
            ],
            Some("alice-secret\n"),
        );
    }
    // Authorization follows authentication: alice may use the topics the runs name.
    crate::cli::ok(
        &open,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "All",
            "--topic",
            "sasl-",
            "--resource-pattern-type",
            "prefixed",
        ],
        None,
    );
    drop(open);
    let node = NodeProcess::start_with(ledge_e2e::NodeOptions {
        data_dir: Some(data.path().to_path_buf()),
        config: Some(
            "[kafka]\ntls_listen = \"127.0.0.1:0\"\n[security]\nallow_anonymous = false\n".into(),
        ),
        ..Default::default()
    });
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let script =
        crate::kafka_confluent_aiokafka::workspace().join("tests/kafka/kafka_python_sasl.py");
    let tls = node.kafka_tls_addr.expect("tls_listen is set");
    let run = |mechanism: &str, password: &str, expect: &str, topic: &str| {
        // PLAIN only over TLS (the tutorial's SASL_SSL settings), SCRAM over plaintext.
        let (bootstrap, protocol) = if mechanism == "PLAIN" {
            (tls, "SASL_SSL")
        } else {
            (kafka, "SASL_PLAINTEXT")
        };
        let arguments = serde_json::json!({
            "bootstrap": bootstrap.to_string(),
            "protocol": protocol,
            "cafile": node.ca_file.to_string_lossy(),
            "mechanism": mechanism,
            "user": "alice",
            "password": password,
            "topic": topic,
            "records": 20,
            "expect": expect,
        });
        let output = std::process::Command::new(&python)
            .arg(&script)
            .arg(arguments.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{mechanism} {expect}:\n{}\n{}\nnode log:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(&node.log_file).unwrap_or_default()
        );
    };
    run("SCRAM-SHA-256", "alice-secret", "ok", "sasl-256");
    run("SCRAM-SHA-512", "alice-secret", "ok", "sasl-512");
    run("PLAIN", "alice-secret", "ok", "sasl-plain");
    run("SCRAM-SHA-256", "wrong-secret", "auth-failure", "sasl-256");
    run("PLAIN", "wrong-secret", "auth-failure", "sasl-plain");
    // Without SASL: the node closes the connection at the first request other than
    // ApiVersions, so the producer never gets metadata.
    let anonymous = std::process::Command::new(&python)
        .args([
            "-c",
            &format!(
                "from kafka import KafkaProducer\nimport sys\ntry:\n    p = KafkaProducer(bootstrap_servers='{kafka}', max_block_ms=4000, request_timeout_ms=4000)\n    p.send('sasl-256', b'x').get(timeout=5)\nexcept Exception as error:\n    print('refused', type(error).__name__)\n    sys.exit(0)\nprint('served')\nsys.exit(1)"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        anonymous.status.success(),
        "an anonymous producer was served: {}{}",
        String::from_utf8_lossy(&anonymous.stdout),
        String::from_utf8_lossy(&anonymous.stderr)
    );
    let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
    assert!(!log.contains("alice-secret") && !log.contains("wrong-secret"));
}

/// Runs one step of tests/kafka/kafka_python_authz.py as `user`; its one result line.
fn kafka_python_step(
    python: &std::path::Path,
    node: &NodeProcess,
    user: &str,
    step: &str,
    topic: &str,
    group: &str,
) -> String {
    let kafka = node
        .kafka_addr
        .expect("the Kafka listener is on by default");
    let script =
        crate::kafka_confluent_aiokafka::workspace().join("tests/kafka/kafka_python_authz.py");
    let arguments = serde_json::json!({
        "bootstrap": kafka.to_string(),
        "user": user,
        "password": format!("{user}-secret"),
        "step": step,
        "topic": topic,
        "group": group,
    });
    let output = std::process::Command::new(python)
        .arg(&script)
        .arg(arguments.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{step} as {user}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim().to_owned()
}

/// Goal (issue 15, authorization on the Kafka listener): on a node with `allow_anonymous =
/// false` (so authorization is on and no ACL means deny), kafka-python authenticated as
/// alice (a user `ledge user create` made) may not produce to `orders` without Write on it
/// (TopicAuthorizationFailedError); once `ledge acl add --allow-principal User:alice
/// --operation Write --topic orders` ran (as the super user admin), it produces; a
/// consumer allowed to read the topic but not the group gets GroupAuthorizationFailedError.
#[test]
fn kafka_python_is_authorized_by_the_acls_the_cli_adds() {
    let Some(python) = crate::kafka_confluent_aiokafka::python_with("kafka") else {
        if std::env::var_os("LEDGE_REQUIRE_KAFKA_CLIENTS").is_some_and(|value| value == "1") {
            panic!("kafka-python is missing and LEDGE_REQUIRE_KAFKA_CLIENTS=1");
        }
        eprintln!("skipped: kafka-python not installed (.ci/run installs it)");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    // Bootstrap while the node takes anonymous clients on loopback: the users and the topic.
    let open = NodeProcess::start_with(ledge_e2e::NodeOptions {
        data_dir: Some(data.path().to_path_buf()),
        ..Default::default()
    });
    // kafka-python logs alice in with SCRAM-SHA-256, the CLI admin with SCRAM-SHA-512.
    for (user, mechanism) in [("alice", "SCRAM-SHA-256"), ("admin", "SCRAM-SHA-512")] {
        crate::cli::ok(
            &open,
            &[
                "user",
                "create",
                user,
                "--mechanism",
                mechanism,
                "--password-stdin",
            ],
            Some(&format!("{user}-secret\n")),
        );
    }
    crate::cli::ok(&open, &["topic", "create", "orders"], None);
    drop(open);
    let node = NodeProcess::start_with(ledge_e2e::NodeOptions {
        data_dir: Some(data.path().to_path_buf()),
        config: Some(
            "[security]\nallow_anonymous = false\nsuper_users = [\"User:admin\"]\n".into(),
        ),
        ..Default::default()
    });
    let as_admin = |args: &[&str]| {
        let mut full = vec!["--user", "admin", "--password-stdin"];
        full.extend_from_slice(args);
        crate::cli::ok(&node, &full, Some("admin-secret\n"))
    };

    let denied = kafka_python_step(&python, &node, "alice", "produce", "orders", "");
    assert!(
        denied.starts_with("error TopicAuthorizationFailedError"),
        "{denied}"
    );
    as_admin(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Write",
        "--topic",
        "orders",
    ]);
    let produced = kafka_python_step(&python, &node, "alice", "produce", "orders", "");
    assert_eq!(produced, "ok");

    // Read on the topic, nothing on the group.
    as_admin(&[
        "acl",
        "add",
        "--allow-principal",
        "User:alice",
        "--operation",
        "Read",
        "--topic",
        "orders",
    ]);
    let consumed = kafka_python_step(&python, &node, "alice", "consume", "orders", "billing");
    assert!(
        consumed.starts_with("error GroupAuthorizationFailedError"),
        "{consumed}"
    );
    // The denials are audit lines naming principal, operation and resource.
    let log = std::fs::read_to_string(&node.log_file).unwrap_or_default();
    assert!(log.contains("request denied"), "{log}");
    assert!(!log.contains("alice-secret") && !log.contains("admin-secret"));
}
