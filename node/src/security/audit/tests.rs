//! The audit log's core (limiter with a manual clock, line shape) and its file writer
//! (rotation at the byte bound, mode 0600, IO errors survived).

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::clock::ManualClock;
use crate::security::acl::CLUSTER_NAME;
use crate::security::principal::KafkaPrincipal;
use crate::security::scram::ScramMechanism;

fn alice() -> ClientIdentity {
    ClientIdentity {
        principal: "User:alice".parse::<KafkaPrincipal>().unwrap(),
        host: IpAddr::from([10, 0, 0, 7]),
        method: AuthMethod::SaslScram(ScramMechanism::Sha256),
    }
}

fn failure(name: &str, host: [u8; 4]) -> AuditEvent {
    AuditEvent::authentication_failure(
        AuditListener::Kafka,
        IpAddr::from(host),
        Some(name),
        "SCRAM-SHA-256",
        "invalid credentials",
    )
}

fn denial() -> AuditEvent {
    AuditEvent::authorization_denied(&alice(), AclOperation::Write, ResourceType::Topic, "orders")
}

fn parse(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line).unwrap() {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

// Goal: a kind's bucket lets a burst of `rate` through at once, then one event per 1/rate
// second as time passes (never more than the burst after a long quiet), and counts what it
// left out per kind; kinds do not share a bucket.
#[test]
fn the_limiter_allows_a_burst_then_the_rate_and_counts_the_rest() {
    let clock = ManualClock::new(1_000_000);
    let mut limiter = AuditLimiter::new(4, 100, clock.now());
    let admitted = (0..10)
        .filter(|_| limiter.admit(&denial(), clock.now()))
        .count();
    assert_eq!(admitted, 4, "the burst is the rate");
    // Another kind still has its own bucket.
    let change =
        AuditEvent::admin_change(&alice(), "CreateTopics", ResourceType::Topic, "t", Ok(()));
    assert!(limiter.admit(&change, clock.now()));
    // A quarter of a second gives one token back.
    clock.advance_ms(250);
    assert!(limiter.admit(&denial(), clock.now()));
    assert!(!limiter.admit(&denial(), clock.now()));
    // A long quiet refills to the burst, no more.
    clock.advance_ms(60_000);
    let admitted = (0..10)
        .filter(|_| limiter.admit(&denial(), clock.now()))
        .count();
    assert_eq!(admitted, 4);
    assert_eq!(
        limiter.take_suppressed(),
        vec![(AuditKind::AuthorizationDenied, 6 + 1 + 6)]
    );
    assert!(limiter.take_suppressed().is_empty(), "counts start again");
}

// Goal: authentication failures from one claimed principal and host use at most their own
// bucket, so a client retrying in a loop cannot hide another client's failure.
#[test]
fn one_source_of_failures_cannot_hide_another() {
    let clock = ManualClock::new(1_000_000);
    let mut limiter = AuditLimiter::new(100, 3, clock.now());
    let attacker = (0..50)
        .filter(|_| limiter.admit(&failure("admin", [203, 0, 113, 9]), clock.now()))
        .count();
    assert_eq!(attacker, 3);
    assert!(limiter.admit(&failure("alice", [10, 0, 0, 7]), clock.now()));
    // The same name from another host is another source.
    assert!(limiter.admit(&failure("admin", [203, 0, 113, 10]), clock.now()));
    assert_eq!(
        limiter.take_suppressed(),
        vec![(AuditKind::AuthenticationFailure, 47)]
    );
}

// Goal: the sources tracked stay bounded when every failure claims a new name; sources
// whose bucket refilled are forgotten first.
#[test]
fn the_sources_tracked_are_bounded() {
    let clock = ManualClock::new(1_000_000);
    let mut limiter = AuditLimiter::new(u32::MAX, 1, clock.now());
    for n in 0..AUDIT_SOURCES_TRACKED_MAX + 100 {
        limiter.admit(&failure(&format!("user{n}"), [203, 0, 113, 9]), clock.now());
    }
    assert_eq!(limiter.sources_tracked(), AUDIT_SOURCES_TRACKED_MAX);
    clock.advance_ms(2_000);
    limiter.admit(&failure("later", [203, 0, 113, 9]), clock.now());
    assert_eq!(
        limiter.sources_tracked(),
        1,
        "refilled sources were forgotten"
    );
}

// Goal: each kind's line is one JSON object with every field, in a stable order; a
// resource name and a claimed user name full of quotes, newlines and control characters
// stay inside their strings (the line has no raw newline) and read back unchanged.
#[test]
fn lines_are_one_json_object_with_every_field_and_hostile_names_escaped() {
    let hostile = "or\"ders\n{\"event\":\"admin_change\"}\r\u{1b}[31m\\";
    let wall_ms = 1_796_655_267_123;
    let denied = AuditEvent::authorization_denied(
        &alice(),
        AclOperation::Write,
        ResourceType::Topic,
        hostile,
    );
    let line = denied.json_line(wall_ms);
    assert!(!line.contains('\n') && !line.contains('\r') && !line.contains('\u{1b}'));
    let fields = parse(&line);
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    let mut expected = [
        "time",
        "event",
        "outcome",
        "principal",
        "host",
        "listener",
        "method",
        "operation",
        "resource_type",
        "resource_name",
        "error",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert!(line.starts_with(r#"{"time":"2026-12-07T14:54:27.123Z","event":"authorization_denied","outcome":"denied","principal":"User:alice","host":"10.0.0.7""#), "{line}");
    assert_eq!(fields["resource_name"], hostile);
    assert_eq!(fields["resource_type"], "Topic");
    assert_eq!(fields["operation"], "Write");
    assert_eq!(fields["method"], "SCRAM-SHA-256");
    assert_eq!(fields["listener"], serde_json::Value::Null);

    let failed = AuditEvent::authentication_failure(
        AuditListener::KafkaTls,
        IpAddr::from([192, 0, 2, 1]),
        Some(hostile),
        "PLAIN",
        "Authentication failed",
    );
    let fields = parse(&failed.json_line(wall_ms));
    assert_eq!(fields["event"], "authentication_failure");
    assert_eq!(fields["principal"], format!("User:{hostile}"));
    assert_eq!(fields["listener"], "kafka-tls");
    assert_eq!(fields["operation"], "authenticate");
    assert_eq!(fields["outcome"], "failed");
    assert_eq!(fields["resource_type"], serde_json::Value::Null);

    let change = AuditEvent::admin_change(
        &alice(),
        "AlterConfigs",
        ResourceType::Cluster,
        CLUSTER_NAME,
        Err("retention.ms: not a number"),
    );
    let fields = parse(&change.json_line(wall_ms));
    assert_eq!(fields["event"], "admin_change");
    assert_eq!(fields["outcome"], "failed");
    assert_eq!(fields["error"], "retention.ms: not a number");
    assert_eq!(fields["resource_name"], "kafka-cluster");

    // A name the client made huge is cut.
    let huge = "x".repeat(10_000);
    let fields = parse(&failure(&huge, [1, 2, 3, 4]).json_line(wall_ms));
    let principal = fields["principal"].as_str().unwrap();
    assert!(principal.len() <= AUDIT_FIELD_CHARS_MAX + 3 && principal.ends_with("..."));
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_ms(1_796_655_267_123), "2026-12-07T14:54:27.123Z");
    assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
}

// Goal: the log records what the limiter admits into its queue, and the summary says how
// many were suppressed per kind and how many the full queue dropped; nothing when nothing
// was left out.
#[test]
fn the_log_queues_admitted_lines_and_sums_up_the_rest() {
    let clock = Arc::new(ManualClock::new(1_796_655_267_000));
    let settings = AuditSettings {
        events_per_second_max: 2,
        queue_events_max: 3,
        ..AuditSettings::default()
    };
    let (log, queue) = AuditLog::with_queue(&settings, Arc::clone(&clock) as _);
    for _ in 0..5 {
        log.record(&denial());
    }
    let lines = queue.drain();
    assert_eq!(lines.len(), 2);
    assert_eq!(parse(&lines[0])["event"], "authorization_denied");
    log.summarize();
    let lines = queue.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let summary = parse(&lines[0]);
    assert_eq!(summary["event"], "audit_suppressed");
    assert_eq!(summary["kind"], "authorization_denied");
    assert_eq!(summary["suppressed"], 3);
    assert_eq!(summary["dropped"], 0);
    log.summarize();
    assert!(queue.drain().is_empty(), "nothing left out, nothing said");

    // A queue nobody reads: the fourth line is dropped and counted, never waited for.
    clock.advance_ms(10_000);
    for n in 0..2 {
        log.record(&AuditEvent::admin_change(
            &alice(),
            "CreateTopics",
            ResourceType::Topic,
            &format!("t{n}"),
            Ok(()),
        ));
        log.record(&denial());
    }
    let lines = queue.drain();
    assert_eq!(lines.len(), 3);
    log.summarize();
    let summary = parse(&queue.drain()[0]);
    assert_eq!(summary["kind"], "all");
    assert_eq!(summary["dropped"], 1);
}

// Goal: the writer creates the file mode 0600 (and narrows a wider one), appends a line per
// event, and rotates to audit.log.1 before a line would pass the byte bound; the rotated
// file holds the earlier lines whole.
#[test]
fn the_file_is_private_and_rotates_at_the_byte_bound() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(AUDIT_LOG_FILE);
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut writer = FileWriter::open(path.clone(), 100).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let line = |n: u32| format!("{{\"n\":{n},\"pad\":\"{}\"}}", "p".repeat(23));
    assert_eq!(line(1).len() + 1, 40);
    for n in 1..=5 {
        writer.write_line(&line(n));
    }
    let rotated = directory.path().join(AUDIT_LOG_ROTATED_FILE);
    // 40 + 40 = 80 fit, a third would make 120: lines 1-2 rotate, then 3-4, then 5 alone.
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        format!("{}\n{}\n", line(3), line(4))
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", line(5))
    );
    for file in [&path, &rotated] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    // Reopened later (a restart), it goes on from its size.
    let mut writer = FileWriter::open(path.clone(), 100).unwrap();
    writer.write_line(&line(6));
    writer.write_line(&line(7));
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap(),
        format!("{}\n{}\n", line(5), line(6))
    );
}

// Goal: a write that fails (the directory is gone) neither panics nor stops the writer: the
// next line, once the directory is back, is written to a new file.
#[test]
fn write_errors_are_survived() {
    let directory = tempfile::tempdir().unwrap();
    let logs = directory.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join(AUDIT_LOG_FILE);
    let mut writer = FileWriter::open(path.clone(), 100).unwrap();
    writer.write_line(&"a".repeat(60));
    std::fs::remove_dir_all(&logs).unwrap();
    // Rotation needs the directory: this line fails.
    writer.write_line(&"b".repeat(60));
    assert!(!path.exists());
    std::fs::create_dir(&logs).unwrap();
    writer.write_line("{\"after\":true}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"after\":true}\n"
    );
}

// Goal: the node's audit log, started on a data directory, writes admitted events to
// `<data_dir>/audit.log` through its writer thread; with `audit_log = false` no file is made.
#[tokio::test]
async fn the_started_log_writes_the_file() {
    let directory = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_796_655_267_000));
    let log = AuditLog::start(
        &AuditSettings::default(),
        directory.path(),
        false,
        Arc::clone(&clock) as _,
    )
    .unwrap();
    log.record(&failure("mallory", [203, 0, 113, 9]));
    let path = directory.path().join(AUDIT_LOG_FILE);
    let mut text = String::new();
    for _ in 0..500 {
        text = std::fs::read_to_string(&path).unwrap();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let fields = parse(text.trim_end());
    assert_eq!(fields["principal"], "User:mallory");
    assert_eq!(fields["event"], "authentication_failure");

    let off = tempfile::tempdir().unwrap();
    let log = AuditLog::start(
        &AuditSettings {
            file: false,
            ..AuditSettings::default()
        },
        off.path(),
        false,
        clock,
    )
    .unwrap();
    log.record(&denial());
    assert!(!off.path().join(AUDIT_LOG_FILE).exists());
}

// Goal: once the node installed its audit log in the broker, every `Access` the broker
// makes records its denials there (and with authorization on and no security store, a
// denial is still recorded).
#[tokio::test]
async fn the_broker_hands_its_audit_log_to_every_access() {
    let broker = crate::broker::Broker::open(
        crate::sim::SimDisk::new(3),
        Path::new("/data"),
        crate::broker::BrokerConfig::default(),
        Arc::new(crate::clock::SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let (log, queue) = AuditLog::with_queue(
        &AuditSettings::default(),
        Arc::new(ManualClock::new(1_796_655_267_000)),
    );
    broker.set_audit_log(Arc::new(log));
    broker.enforce_authorization(crate::security::acl::AuthorizerConfig::default());
    let access = broker.access(&alice());
    access
        .check(AclOperation::Alter, ResourceType::Cluster, CLUSTER_NAME)
        .unwrap_err();
    access.record_change("CreateTopics", ResourceType::Topic, "orders", Ok(()));
    let lines = queue.drain();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(parse(&lines[0])["event"], "authorization_denied");
    assert_eq!(parse(&lines[1])["event"], "admin_change");
}
