//! SASL on QUIC, end to end: a node with `allow_anonymous = false` and a user made with
//! `ledge user create`, driven by the CLI with `--user` and each password source.

use std::path::Path;
use std::process::{Command, Stdio};

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

/// `ledge --server ... --ca ... ARGS` with `LEDGE_PASSWORD` set to `password` (or removed).
fn ledge_with_env(
    node: &NodeProcess,
    args: &[&str],
    password: Option<&str>,
) -> (bool, String, String) {
    let mut command = Command::new(binary("ledge"));
    command
        .arg("--server")
        .arg(node.addr.to_string())
        .arg("--ca")
        .arg(&node.ca_file)
        .args(args)
        .stdin(Stdio::null());
    match password {
        Some(password) => command.env("LEDGE_PASSWORD", password),
        None => command.env_remove("LEDGE_PASSWORD"),
    };
    let output = command.output().expect("run ledge");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `ledge --server ... --ca ... ARGS` with `stdin` (LEDGE_PASSWORD inherited: unset in CI).
fn ledge(node: &NodeProcess, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let server = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", server.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, stdin);
    (status.success(), stdout, stderr)
}

/// A node on `data_dir` that accepts no anonymous clients (SASL on by default). That turns
/// authorization on: alice and bob are super users, as authentication is what this file
/// tests (`quic_authz.rs` tests ACLs).
fn closed_node(data_dir: &Path) -> NodeProcess {
    NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.to_path_buf()),
        config: Some(
            "[security]\nallow_anonymous = false\nsuper_users = [\"User:alice\", \"User:bob\"]\n[kafka]\nenabled = false\n"
                .into(),
        ),
        ..NodeOptions::default()
    })
}

// Goal (issue 15, SASL on QUIC; negative first): on a node with allow_anonymous = false, the
// CLI without credentials is refused (AuthenticationRequired); with a wrong password, or an
// unknown user, it exits non-zero with one line naming the user and mechanism but not the
// password; `--user` without a password source, or with two, is refused before connecting;
// with the right password from LEDGE_PASSWORD or --password-stdin, for SCRAM-SHA-512 (the
// default), SCRAM-SHA-256 and PLAIN, it is served.
#[test]
fn the_cli_authenticates_with_sasl_where_anonymous_clients_are_refused() {
    let data_dir = tempfile::tempdir().unwrap();
    // Users are made while the node still serves anonymous clients on loopback.
    let mut open = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..NodeOptions::default()
    });
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let (success, _, stderr) = ledge(
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
        assert!(success, "{stderr}");
    }
    open.terminate(std::time::Duration::from_secs(10));
    let node = closed_node(data_dir.path());

    let (success, _, stderr) = ledge_with_env(&node, &["topic", "list"], None);
    assert!(!success);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("authentication required"), "{stderr}");

    for (user, password) in [("alice", "wrong-password"), ("mallory", "alice-secret")] {
        let (success, _, stderr) =
            ledge_with_env(&node, &["--user", user, "topic", "list"], Some(password));
        assert!(!success, "{user}");
        let line = stderr.trim();
        assert_eq!(line.lines().count(), 1, "{stderr}");
        assert!(line.starts_with("error: "), "{stderr}");
        assert!(line.contains(&format!("{user:?}")), "{stderr}");
        assert!(line.contains("SCRAM-SHA-512"), "{stderr}");
        assert!(!line.contains(password), "{stderr}");
    }

    let (success, _, stderr) = ledge_with_env(&node, &["--user", "alice", "topic", "list"], None);
    assert!(!success);
    assert!(stderr.contains("LEDGE_PASSWORD"), "{stderr}");
    let (success, _, stderr) = ledge_with_env(
        &node,
        &["--user", "alice", "--password-stdin", "topic", "list"],
        Some("alice-secret"),
    );
    assert!(!success);
    assert!(stderr.contains("not both"), "{stderr}");
    assert!(!stderr.contains("alice-secret"), "{stderr}");

    let (success, stdout, stderr) = ledge_with_env(
        &node,
        &["--user", "alice", "topic", "create", "orders"],
        Some("alice-secret"),
    );
    assert!(success, "{stdout}{stderr}");
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let (success, stdout, stderr) = ledge(
            &node,
            &[
                "--user",
                "alice",
                "--password-stdin",
                "--sasl-mechanism",
                mechanism,
                "topic",
                "list",
            ],
            Some("alice-secret\n"),
        );
        assert!(success, "{mechanism}: {stderr}");
        assert!(stdout.contains("orders"), "{mechanism}: {stdout}");
    }

    // An authenticated user creates another: both passwords on standard input, alice's
    // first; bob then authenticates with his (SCRAM-SHA-512, what `user create` makes and
    // what `--user` logs in with by default).
    let (success, _, stderr) = ledge(
        &node,
        &[
            "--user",
            "alice",
            "--password-stdin",
            "user",
            "create",
            "bob",
            "--password-stdin",
        ],
        Some("alice-secret\nbob-secret\n"),
    );
    assert!(success, "{stderr}");
    let (success, stdout, stderr) = ledge_with_env(
        &node,
        &["--user", "bob", "topic", "list"],
        Some("bob-secret"),
    );
    assert!(success, "{stderr}");
    assert!(stdout.contains("orders"), "{stdout}");
}
