//! `ledge user ...` and `ledge acl ...` against a node: each command's success and its
//! refusals (one `error:` line, non-zero exit), and what they made surviving a restart.

use std::num::NonZeroU32;

use ledge_e2e::NodeProcess;

use crate::cli::{fails, ok};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Goal: users are created with a password read from stdin (never stored: only keys derived
/// from a salted hash), listed as an aligned table and as JSON, deleted per mechanism or
/// whole; bad input fails with one line.
#[test]
fn users_are_created_listed_and_deleted() {
    let mut node = NodeProcess::start();
    let created = ok(
        &node,
        &[
            "user",
            "create",
            "alice",
            "--mechanism",
            "SCRAM-SHA-256",
            "--password-stdin",
            "--iterations",
            "8192",
        ],
        Some("alice-secret\n"),
    );
    assert_eq!(
        created.trim(),
        "Created user alice (SCRAM-SHA-256, 8192 iterations)."
    );
    ok(
        &node,
        &[
            "user",
            "create",
            "alice",
            "--mechanism",
            "SCRAM-SHA-512",
            "--password-stdin",
        ],
        Some("alice-secret\n"),
    );
    ok(
        &node,
        &["user", "create", "bob", "--password-stdin"],
        Some("b\n"),
    );
    // Created with the defaults, bob logs in with the CLI's defaults.
    ok(
        &node,
        &["--user", "bob", "--password-stdin", "topic", "list"],
        Some("b\n"),
    );
    // The stored keys are those the password gives with the stored salt and iterations,
    // and the password itself is nowhere in the file.
    let file = std::fs::read_to_string(node.data_dir.join("security.json")).unwrap();
    assert!(!file.contains("alice-secret"));
    let stored: serde_json::Value = json(&file);
    let credential = &stored["users"]["alice"]["SCRAM-SHA-256"];
    assert_eq!(credential["iterations"], 8192);
    let salt = base64_decode(credential["salt"].as_str().unwrap());
    let mut salted = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(8192).unwrap(),
        &salt,
        b"alice-secret",
        &mut salted,
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salted);
    let server_key = ring::hmac::sign(&key, b"Server Key");
    assert_eq!(
        base64_decode(credential["server_key"].as_str().unwrap()),
        server_key.as_ref()
    );

    let listed = ok(&node, &["user", "list"], None);
    let rows: Vec<&str> = listed.lines().collect();
    assert_eq!(rows.len(), 4, "{listed}");
    assert!(rows[0].trim_start().starts_with("NAME"), "{listed}");
    // Columns line up: every row has its iterations ending at the same column.
    let ends: Vec<usize> = rows.iter().map(|row| row.trim_end().len()).collect();
    assert!(ends.windows(2).all(|pair| pair[0] == pair[1]), "{listed}");
    assert!(listed.contains("SCRAM-SHA-512"), "{listed}");
    let as_json = json(&ok(&node, &["user", "list", "--format", "json"], None));
    assert_eq!(as_json[0]["name"], "alice");
    assert_eq!(as_json[0]["credentials"][0]["mechanism"], "SCRAM-SHA-256");
    assert_eq!(as_json[0]["credentials"][0]["iterations"], 8192);

    // Refusals.
    let few = fails(
        &node,
        &[
            "user",
            "create",
            "carol",
            "--password-stdin",
            "--iterations",
            "100",
        ],
        Some("x\n"),
    );
    assert!(few.contains("Too few iterations"), "{few}");
    let empty = fails(
        &node,
        &["user", "create", "carol", "--password-stdin"],
        Some(""),
    );
    assert!(empty.contains("no password"), "{empty}");
    let long_name = "n".repeat(300);
    let long = fails(
        &node,
        &["user", "create", &long_name, "--password-stdin"],
        Some("x\n"),
    );
    assert!(long.contains("the limit is 256 bytes"), "{long}");
    let ghost = fails(&node, &["user", "delete", "ghost"], None);
    assert!(ghost.contains("user ghost"), "{ghost}");
    let (success, _, stderr) = {
        let address = node.addr.to_string();
        let ca = node.ca_file.to_string_lossy().into_owned();
        let (status, stdout, stderr) = ledge_e2e::run_cli(
            &[
                "--server",
                &address,
                "--ca",
                &ca,
                "user",
                "create",
                "dave",
                "--mechanism",
                "MD5",
                "--password-stdin",
            ],
            Some("x\n"),
        );
        (status.success(), stdout, stderr)
    };
    assert!(!success);
    assert!(stderr.contains("MD5"), "{stderr}");

    ok(
        &node,
        &["user", "delete", "alice", "--mechanism", "SCRAM-SHA-512"],
        None,
    );
    node.restart();
    let listed = json(&ok(&node, &["user", "list", "--format", "json"], None));
    assert_eq!(listed[0]["credentials"].as_array().unwrap().len(), 1);
    let deleted = ok(&node, &["user", "delete", "bob"], None);
    assert_eq!(deleted.trim(), "Deleted user bob.");
    let listed = json(&ok(&node, &["user", "list", "--format", "json"], None));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

/// Goal: `ledge acl add/list/remove` in kafka-acls' syntax: several operations and
/// principals, prefixed patterns, the cluster and Ledge's own resources; list filters;
/// removal; refusals as one line; everything survives a restart.
#[test]
fn acls_are_added_listed_and_removed() {
    let mut node = NodeProcess::start();
    let added = ok(
        &node,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--operation",
            "Describe",
            "--topic",
            "orders",
        ],
        None,
    );
    assert_eq!(added.trim(), "Added 2 ACL(s).");
    ok(
        &node,
        &[
            "acl",
            "add",
            "--deny-principal",
            "User:mallory",
            "--host",
            "10.0.0.9",
            "--operation",
            "Write",
            "--topic",
            "ord",
            "--resource-pattern-type",
            "prefixed",
        ],
        None,
    );
    ok(
        &node,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:ops",
            "--operation",
            "Alter",
            "--cluster",
            "--module",
            "filters",
            "--transform",
            "enrich",
            "--group",
            "billing",
            "--transactional-id",
            "tx-1",
        ],
        None,
    );

    let all = json(&ok(&node, &["acl", "list", "--format", "json"], None));
    assert_eq!(all.as_array().unwrap().len(), 8, "{all}");
    let on_orders = json(&ok(
        &node,
        &[
            "acl",
            "list",
            "--topic",
            "orders",
            "--resource-pattern-type",
            "match",
            "--format",
            "json",
        ],
        None,
    ));
    // The literal ACLs and the prefixed one that applies to "orders".
    assert_eq!(on_orders.as_array().unwrap().len(), 3, "{on_orders}");
    let table = ok(&node, &["acl", "list", "--principal", "User:ops"], None);
    assert!(table.trim_start().starts_with("PRINCIPAL"), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(table.contains("kafka-cluster"), "{table}");
    assert!(table.contains("Transform"), "{table}");

    // Refusals.
    let principal = fails(
        &node,
        &[
            "acl",
            "add",
            "--allow-principal",
            "alice",
            "--topic",
            "orders",
        ],
        None,
    );
    assert!(principal.contains("Type:name"), "{principal}");
    let operation = fails(
        &node,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Fly",
            "--topic",
            "orders",
        ],
        None,
    );
    assert!(operation.contains("unknown operation"), "{operation}");
    let resource = fails(&node, &["acl", "add", "--allow-principal", "User:a"], None);
    assert!(resource.contains("name a resource"), "{resource}");
    let host = fails(
        &node,
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:a",
            "--host",
            "example.com",
            "--topic",
            "t",
        ],
        None,
    );
    assert!(host.contains("neither * nor an IP address"), "{host}");
    let nothing = fails(&node, &["acl", "remove", "--topic", "payments"], None);
    assert!(nothing.contains("nothing was removed"), "{nothing}");

    node.restart();
    let removed = ok(
        &node,
        &[
            "acl",
            "remove",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
        None,
    );
    assert_eq!(removed.trim(), "Removed 1 ACL(s).");
    let removed = ok(&node, &["acl", "remove", "--cluster"], None);
    assert_eq!(removed.trim(), "Removed 1 ACL(s).");
    let all = json(&ok(&node, &["acl", "list", "--format", "json"], None));
    assert_eq!(all.as_array().unwrap().len(), 6, "{all}");
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|binding| binding["resource_type"] != "Cluster")
    );
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = ALPHABET.iter().position(|c| *c == byte).unwrap() as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// Goal: `security.users_max` and `security.acls_max` bound what the node stores; past
/// them `ledge user create` and `ledge acl add` fail with one line naming the limit.
#[test]
fn the_configured_user_and_acl_limits_are_enforced() {
    let node = NodeProcess::start_with(ledge_e2e::NodeOptions {
        config: Some("[security]\nusers_max = 1\nacls_max = 1\n".into()),
        ..ledge_e2e::NodeOptions::default()
    });
    ok(
        &node,
        &["user", "create", "alice", "--password-stdin"],
        Some("a\n"),
    );
    let refused = fails(
        &node,
        &["user", "create", "bob", "--password-stdin"],
        Some("b\n"),
    );
    assert!(refused.contains("the limit is 1"), "{refused}");
    let acl = |topic: &str| {
        vec![
            "acl".to_owned(),
            "add".to_owned(),
            "--allow-principal".to_owned(),
            "User:alice".to_owned(),
            "--operation".to_owned(),
            "Read".to_owned(),
            "--topic".to_owned(),
            topic.to_owned(),
        ]
    };
    let first = acl("orders");
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    ok(&node, &first, None);
    let second = acl("payments");
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let refused = fails(&node, &second, None);
    assert!(refused.contains("the limit is 1"), "{refused}");
}
