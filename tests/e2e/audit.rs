//! The audit log end to end: a node that refuses anonymous clients, a CLI login with a wrong
//! password, and the event in `<data-dir>/audit.log`.

use std::process::{Command, Stdio};
use std::time::Duration;

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

// Goal (issue 15, audit log): a wrong password on QUIC (`ledge --user alice` with
// LEDGE_PASSWORD) on a node with allow_anonymous = false is one `authentication_failure`
// line in `<data-dir>/audit.log` (mode 0600) naming the claimed user, the listener and the
// mechanism, and the file never holds the password.
#[test]
fn a_wrong_password_lands_in_the_audit_log() {
    let data_dir = tempfile::tempdir().unwrap();
    // The user is made while the node still serves anonymous clients on loopback.
    let mut open = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        ..NodeOptions::default()
    });
    let server = open.addr.to_string();
    let ca = open.ca_file.to_string_lossy().into_owned();
    let (status, _, stderr) = run_cli(
        &[
            "--server",
            &server,
            "--ca",
            &ca,
            "user",
            "create",
            "alice",
            "--password-stdin",
        ],
        Some("alice-secret\n"),
    );
    assert!(status.success(), "{stderr}");
    open.terminate(Duration::from_secs(10));

    let node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        config: Some("[security]\nallow_anonymous = false\n[kafka]\nenabled = false\n".into()),
        ..NodeOptions::default()
    });
    let output = Command::new(binary("ledge"))
        .arg("--server")
        .arg(node.addr.to_string())
        .arg("--ca")
        .arg(&node.ca_file)
        .args(["--user", "alice", "topic", "list"])
        .env("LEDGE_PASSWORD", "wrong-password-42")
        .stdin(Stdio::null())
        .output()
        .expect("run ledge");
    assert!(!output.status.success());

    let path = data_dir.path().join("audit.log");
    // The writer thread appends shortly after the failure; wait for the line, not a time.
    let mut failures = Vec::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        failures = text
            .lines()
            .filter(|line| line.contains("\"event\":\"authentication_failure\""))
            .map(str::to_owned)
            .collect();
        if !failures.is_empty() {
            assert!(!text.contains("wrong-password-42"), "{text}");
            assert!(!text.contains("alice-secret"), "{text}");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(failures.len(), 1, "{failures:?}");
    let event: serde_json::Value = serde_json::from_str(&failures[0]).unwrap();
    assert_eq!(event["principal"], "User:alice");
    assert_eq!(event["listener"], "quic");
    assert_eq!(event["method"], "SCRAM-SHA-512");
    assert_eq!(event["outcome"], "failed");
    assert_eq!(event["host"], "127.0.0.1");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
