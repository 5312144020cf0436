//! Authorization on QUIC, end to end: a node with `allow_anonymous = false` (authorization
//! on), users made with `ledge user create`, ACLs with `ledge acl add` by a super user.

use std::io::Write as _;
use std::process::{Command, Stdio};

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

/// `ledge --server ... --ca ... --user USER ARGS` with the password in `LEDGE_PASSWORD` and
/// `stdin` as standard input: (success, stdout, stderr).
fn ledge_as(node: &NodeProcess, user: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(binary("ledge"))
        .arg("--server")
        .arg(node.addr.to_string())
        .arg("--ca")
        .arg(&node.ca_file)
        .args(["--user", user])
        .args(args)
        .env("LEDGE_PASSWORD", format!("{user}-secret"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ledge");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// Goal (issue 15: "authorization failures exit non-zero with one line naming the principal,
// the operation and the resource"): alice, authenticated but without ACLs, is refused a
// produce and a topic delete with one line naming her, the operation and the resource, and
// exits non-zero; after the super user runs `ledge acl add --allow-principal User:alice
// --operation Write --topic orders` her produce is served (and the delete still refused).
#[test]
fn the_cli_is_refused_without_an_acl_and_served_once_one_is_added() {
    let data_dir = tempfile::tempdir().unwrap();
    // Users and the topic are made while the node still serves anonymous loopback clients.
    let mut open = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..NodeOptions::default()
    });
    let server = open.addr.to_string();
    let ca = open.ca_file.to_string_lossy().into_owned();
    for user in ["admin", "alice"] {
        let password = format!("{user}-secret\n");
        let (status, _, stderr) = run_cli(
            &[
                "--server",
                &server,
                "--ca",
                &ca,
                "user",
                "create",
                user,
                "--mechanism",
                "SCRAM-SHA-512",
                "--password-stdin",
            ],
            Some(&password),
        );
        assert!(status.success(), "{stderr}");
    }
    let (status, _, stderr) = run_cli(
        &[
            "--server", &server, "--ca", &ca, "topic", "create", "orders",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    open.terminate(std::time::Duration::from_secs(10));
    let node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        config: Some(
            "[security]\nallow_anonymous = false\nsuper_users = [\"User:admin\"]\n[kafka]\nenabled = false\n"
                .into(),
        ),
        ..NodeOptions::default()
    });

    let (success, _, stderr) = ledge_as(&node, "alice", &["produce", "orders"], "hello\n");
    assert!(!success, "{stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "{stderr}");
    assert!(line.starts_with("error: "), "{stderr}");
    assert!(line.contains("User:alice may not "), "{stderr}");
    let (success, _, stderr) = ledge_as(&node, "alice", &["topic", "delete", "orders"], "");
    assert!(!success);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("User:alice may not Delete Topic:orders"),
        "{stderr}"
    );

    let (success, _, stderr) = ledge_as(
        &node,
        "admin",
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--topic",
            "orders",
        ],
        "",
    );
    assert!(success, "{stderr}");
    let (success, stdout, stderr) =
        ledge_as(&node, "alice", &["produce", "orders"], "hello\nworld\n");
    assert!(success, "{stdout}{stderr}");
    let (success, stdout, stderr) = ledge_as(
        &node,
        "admin",
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "2",
        ],
        "",
    );
    assert!(success, "{stderr}");
    assert!(stdout.contains("world"), "{stdout}");
    let (success, _, stderr) = ledge_as(&node, "alice", &["topic", "delete", "orders"], "");
    assert!(!success);
    assert!(
        stderr.contains("User:alice may not Delete Topic:orders"),
        "{stderr}"
    );
}
