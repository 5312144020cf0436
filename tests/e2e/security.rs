//! Security defaults and client certificates with real processes (issue 15): the node
//! refuses to serve anonymous clients beyond loopback unless told to, refuses private key
//! files others can read and writes its own mode 0600, and `ledge-node cert issue` makes a
//! certificate the CLI presents to a node that requires one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

/// Runs `ledge-node` with `args` to its exit (it must refuse to start); returns whether it
/// succeeded and its stderr.
fn node_refusing(args: &[&str]) -> (bool, String) {
    let output = Command::new(binary("ledge-node"))
        // The default admin port is one for the whole machine: parallel tests take any.
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect()
}

// Goal (issue 15, "defaults that are hard to get wrong"): with no [security] section a node
// listening beyond loopback refuses to start, naming the listener and the ways out, before
// its data directory exists; `allow_anonymous = true` starts it and says so; a default node
// says its anonymous clients are loopback only.
#[test]
fn a_node_beyond_loopback_needs_an_explicit_choice_about_anonymous_clients() {
    let temporary = tempfile::tempdir().unwrap();
    let data_dir = temporary.path().join("data");
    let data = data_dir.to_string_lossy().into_owned();
    let (success, stderr) = node_refusing(&["--data-dir", &data, "--listen", "0.0.0.0:0"]);
    assert!(!success, "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    for part in [
        "refusing to start: the QUIC listener on 0.0.0.0:0 is not on a loopback address",
        "allow_anonymous = true",
        "allow_anonymous = false with client_auth = \"required\"",
    ] {
        assert!(errors[0].contains(part), "{part:?} in {stderr}");
    }
    assert!(!data_dir.exists(), "the data directory was created");
    // A Kafka listener beyond loopback is named the same way.
    let (success, stderr) = node_refusing(&[
        "--data-dir",
        &data,
        "--listen",
        "127.0.0.1:0",
        "--kafka-tls-listen",
        "0.0.0.0:0",
    ]);
    assert!(!success);
    assert!(
        stderr.contains("the Kafka TLS listener on 0.0.0.0:0 is not on a loopback address"),
        "{stderr}"
    );
    // Explicitly allowed: it starts (Kafka off: a wildcard Kafka listener would need an
    // advertised address, which is another check).
    let mut open = NodeProcess::start_with(NodeOptions {
        listen: Some("0.0.0.0:0".parse().unwrap()),
        config: Some("[security]\nallow_anonymous = true\n[kafka]\nenabled = false\n".into()),
        ..NodeOptions::default()
    });
    assert!(
        open.log()
            .contains("anonymous clients: accepted on every listener"),
        "{}",
        open.log()
    );
    open.terminate(Duration::from_secs(30));
    let default = NodeProcess::start();
    assert!(
        default
            .log()
            .contains("anonymous clients: loopback only, no authentication required"),
        "{}",
        default.log()
    );
}

// Goal (issue 15): every private key the node writes is mode 0600, and it refuses to start
// with a key file its group or others can read: an operator's --tls-key, or its own
// development server key.
#[test]
fn private_keys_are_written_private_and_readable_ones_are_refused() {
    let mut node = NodeProcess::start();
    let tls = node.data_dir.join("tls");
    assert_eq!(mode(&tls.join("ca.key")), 0o600);
    assert_eq!(mode(&tls.join("server.key")), 0o600);
    node.terminate(Duration::from_secs(30));
    let temporary = tempfile::tempdir().unwrap();
    let key = temporary.path().join("server.key");
    std::fs::copy(tls.join("server.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (success, stderr) = node_refusing(&[
        "--data-dir",
        &temporary.path().join("data").to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &tls.join("server.pem").to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
    ]);
    assert!(!success);
    assert!(
        stderr.contains(
            "server.key: private key file is readable by its group or by others (mode 0640); restrict it with `chmod 600"
        ),
        "{stderr}"
    );
    std::fs::set_permissions(
        tls.join("server.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (success, stderr) = node_refusing(&[
        "--data-dir",
        &node.data_dir.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!success);
    assert!(stderr.contains("(mode 0644)"), "{stderr}");
}

// Goal (issue 15, mTLS and `cert issue`): a node with client_auth = "required" serves the
// CLI presenting a certificate `ledge-node cert issue` signed with the node's CA, and
// refuses it without one in one clear line. The issued key is mode 0600; issuing the same
// name again overwrites nothing; a directory without a development CA says so.
#[test]
fn an_issued_client_certificate_opens_a_node_that_requires_one() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[security]\nclient_auth = \"required\"\n".into()),
        ..NodeOptions::default()
    });
    let out = tempfile::tempdir().unwrap();
    let issue = |data_dir: &Path| {
        Command::new(binary("ledge-node"))
            .args(["cert", "issue", "--name", "alice", "--days", "2"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap()
    };
    let issued = issue(&node.data_dir);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    assert!(
        String::from_utf8_lossy(&issued.stdout).contains("principal User:alice"),
        "{}",
        String::from_utf8_lossy(&issued.stdout)
    );
    let (cert, key) = (out.path().join("alice.pem"), out.path().join("alice.key"));
    assert_eq!(mode(&key), 0o600);
    let server = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let (status, stdout, stderr) = run_cli(
        &[
            "--server", &server, "--ca", &ca, "--cert", &cert, "--key", &key, "topic", "list",
        ],
        None,
    );
    assert!(status.success(), "{stdout}{stderr}");
    let (status, _, stderr) = run_cli(&["--server", &server, "--ca", &ca, "topic", "list"], None);
    assert!(!status.success());
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("the node requires a client certificate: pass --cert FILE --key FILE"),
        "{stderr}"
    );
    // Nothing is overwritten.
    let before = std::fs::read(out.path().join("alice.key")).unwrap();
    let again = issue(&node.data_dir);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists; not overwritten"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(out.path().join("alice.key")).unwrap(), before);
    let empty = tempfile::tempdir().unwrap();
    let refused = issue(empty.path());
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("has no development CA"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

// Goal (issue 15): on QUIC, a certificate from another CA is refused in the handshake and
// the CLI says the node refused it; with client_auth = "optional" and allow_anonymous =
// false, a client without a certificate is turned away after the handshake with a reason it
// prints, and one with a certificate is served.
#[test]
fn foreign_certificates_and_anonymous_clients_are_turned_away() {
    let node = NodeProcess::start_with(NodeOptions {
        config: Some("[security]\nclient_auth = \"optional\"\nallow_anonymous = false\n".into()),
        ..NodeOptions::default()
    });
    // Another node's development CA signs a certificate this node must refuse.
    let other = NodeProcess::start();
    let out = tempfile::tempdir().unwrap();
    for (data_dir, name) in [(&node.data_dir, "alice"), (&other.data_dir, "mallory")] {
        let issued = Command::new(binary("ledge-node"))
            .args(["cert", "issue", "--name", name])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        assert!(
            issued.status.success(),
            "{}",
            String::from_utf8_lossy(&issued.stderr)
        );
    }
    let server = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let cli_as = |name: Option<&str>| {
        let mut args = vec![
            "--server".to_string(),
            server.clone(),
            "--ca".into(),
            ca.clone(),
        ];
        if let Some(name) = name {
            for (flag, extension) in [("--cert", "pem"), ("--key", "key")] {
                args.push(flag.into());
                args.push(
                    out.path()
                        .join(format!("{name}.{extension}"))
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        args.extend(["topic".into(), "list".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&args, None)
    };
    let (status, stdout, stderr) = cli_as(Some("alice"));
    assert!(status.success(), "{stdout}{stderr}");
    let (status, _, stderr) = cli_as(Some("mallory"));
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the node refused the client certificate"),
        "{stderr}"
    );
    let (status, _, stderr) = cli_as(None);
    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("authentication required: this node accepts no anonymous clients"),
        "{stderr}"
    );
}
