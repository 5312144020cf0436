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
