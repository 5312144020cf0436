//! The node as an operating-system process: its data directory lock, start-up checks that
//! run before the data directory is touched, its log on a non-terminal, damaged dev TLS
//! files, and the open-file limit (issue 11: bugs 1, 2, 6; data items 7, 8).

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use ledge_e2e::{NodeProcess, binary, limit_open_files};

/// How long a node that must refuse to start may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `ledge-node` with `args` (and an optional open-file limit), expecting it to exit by
/// itself; returns its status, stdout and stderr.
fn run_node_to_exit(args: &[&str], open_files_limit: Option<(u64, u64)>) -> (ExitStatus, String) {
    let mut command = Command::new(binary("ledge-node"));
    command
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((soft, hard)) = open_files_limit {
        limit_open_files(&mut command, soft, hard);
    }
    let mut child = command.spawn().unwrap();
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    while child.try_wait().unwrap().is_none() {
        if waited > EXIT_TIMEOUT {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "ledge-node did not exit within {EXIT_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(step);
        waited += step;
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The lines of stderr that are the node's final error (`error: ...`).
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect()
}

/// Every file under `directory` with its contents, for "nothing changed" checks.
fn snapshot(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_second_node_on_a_data_directory_in_use_is_refused_and_changes_nothing() {
    // Goal (issue 11, bug 1): a second node on the same --data-dir (another port) exits
    // non-zero with one line naming the directory and the first node's pid, and the first
    // node's files are byte for byte as they were; the first node still serves.
    // Before the fix the second node started beside the first and rewrote metadata.json.
    let node = NodeProcess::start();
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        ledge_e2e::create_topic(&client, "kept", 2).await;
        ledge_e2e::produce_numbered(&client, "kept", 0, 10).await;
    });
    let before = snapshot(&node.data_dir);
    let data_dir = node.data_dir.display().to_string();
    let (status, stderr) =
        run_node_to_exit(&["--data-dir", &data_dir, "--listen", "127.0.0.1:0"], None);
    assert!(!status.success(), "the second node started: {stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    let expected = format!(
        "error: data directory {data_dir} is in use by another ledge-node (pid {} on host",
        node.pid()
    );
    assert!(errors[0].starts_with(&expected), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert_eq!(
        snapshot(&node.data_dir),
        before,
        "the second node changed files"
    );
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        let topics = ledge_client::Admin::new(&client)
            .list_topics()
            .await
            .unwrap();
        assert!(
            topics.iter().any(|topic| topic.name == "kept"),
            "{topics:?}"
        );
    });
}

#[test]
fn a_busy_port_is_refused_in_one_line_before_the_data_directory_is_made() {
    // Goal (issue 11, bug 2): the listen port is checked before the data directory is
    // created, and the OS error appears once. Before the fix the directory (with metadata,
    // logs and a dev CA) was made first, and the message repeated "Address in use".
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let (status, stderr) = run_node_to_exit(
        &[
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            &address,
        ],
        None,
    );
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with(&format!("error: cannot listen on {address}: ")),
        "{stderr}"
    );
    assert_eq!(errors[0].matches("in use").count(), 1, "{stderr}");
    assert!(!data_dir.exists(), "a data directory was left behind");
}

#[test]
fn bad_tls_flags_are_refused_in_one_line_before_the_data_directory_is_made() {
    // Goal (issue 11, bug 2): a lone --tls-cert, or certificate files that cannot be read,
    // are refused before anything is written, each in one line with the OS error once.
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let data_dir_text = data_dir.display().to_string();
    let missing = root.path().join("missing.pem").display().to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--tls-cert", &missing],
            "error: --tls-cert and --tls-key must be given together",
        ),
        (&["--tls-cert", &missing, "--tls-key", &missing], "error: "),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["--data-dir", &data_dir_text, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let (status, stderr) = run_node_to_exit(&args, None);
        assert!(!status.success(), "{stderr}");
        let errors = error_lines(&stderr);
        assert_eq!(errors.len(), 1, "{flags:?}: {stderr}");
        assert!(errors[0].starts_with(expected), "{flags:?}: {stderr}");
        assert!(errors[0].matches("No such file").count() <= 1, "{stderr}");
        assert!(!data_dir.exists(), "{flags:?} left a data directory behind");
    }
}

#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    // Goal (issue 11, bug 6): a node whose stderr is a pipe writes plain text; before the
    // fix every level and field name carried ANSI escape codes.
    let mut node = NodeProcess::start();
    node.terminate(Duration::from_secs(30));
    let log = node.log();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}

#[test]
fn a_damaged_dev_certificate_set_is_reported_with_the_way_out() {
    // Goal (issue 11, data item 7): dev TLS files emptied by a crash are reported in one
    // line naming each damaged file and what to do, not as a PEM parse error; the fix the
    // message gives (moving tls/ away) works and keeps the data.
    let mut node = NodeProcess::start();
    node.terminate(Duration::from_secs(30));
    let tls = node.data_dir.join("tls");
    std::fs::write(tls.join("server.pem"), b"").unwrap();
    std::fs::write(tls.join("server.key"), b"not a key").unwrap();
    let data_dir = node.data_dir.display().to_string();
    let (status, stderr) =
        run_node_to_exit(&["--data-dir", &data_dir, "--listen", "127.0.0.1:0"], None);
    assert!(!status.success(), "{stderr}");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    let line = errors[0];
    assert!(
        line.contains(&format!(
            "the development TLS files in {} are damaged",
            tls.display()
        )),
        "{line}"
    );
    assert!(line.contains("server.pem: empty file"), "{line}");
    assert!(line.contains("server.key: no usable private key"), "{line}");
    assert!(!line.contains("ca.pem:"), "ca.pem is intact: {line}");
    assert!(line.contains("move that directory away"), "{line}");
    std::fs::rename(&tls, node.data_dir.join("tls.damaged")).unwrap();
    node.restart();
    assert!(node.ca_file.exists());
}
