//! Consumer groups against a real node: partitions move between members with one owner at a
//! time, no record is lost or read twice across clean rebalances, a `kill -9`ed member is
//! evicted after its session timeout, groups are independent, committed offsets and lag
//! survive a restart, the `ledge group` commands round trip, and bad input gets clear errors.
//!
//! Session timeouts are short (2 s; the node accepts 1 s and up) so every test stays within
//! about 20 s on a loaded 2-core machine.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledge_client::{
    Admin, Client, CommitError, ConsumeError, Consumer, ConsumerConfig, ErrorCode,
    GroupDescription, ListenerFuture, OffsetAndMetadata, OffsetReset, RebalanceListener,
    TopicPartition,
};
use ledge_e2e::{NodeProcess, binary, connect, create_topic, produce_numbered, run_cli, runtime};

const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for the group to settle after a change.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The tests' one clock read: bounded waits, and how long an eviction took.
#[expect(
    clippy::disallowed_methods,
    reason = "test deadlines, not logic under test"
)]
fn now() -> Instant {
    Instant::now()
}

fn group_config(group: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::default();
    config.group_id = Some(group.to_string());
    config.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = SESSION_TIMEOUT;
    config.enable_auto_commit = false;
    config
}

/// Commits everything it has read before its partitions move (the seed's
/// `MyRebalanceListener`).
struct CommitOnRevoke;

impl RebalanceListener for CommitOnRevoke {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        consumer: &'a mut Consumer,
        _revoked: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        Box::pin(async move {
            consumer
                .commit()
                .await
                .expect("commit in on_partitions_revoked");
        })
    }
}

/// (member name, partition, offset) of every record handed out.
type Deliveries = Arc<Mutex<Vec<(String, u32, i64)>>>;

/// A consumer polling in its own task until stopped.
struct Member {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Consumer>,
}

fn start_member(client: &Client, group: &str, topic: &str, name: &str, log: &Deliveries) -> Member {
    let mut consumer = Consumer::new(client, group_config(group));
    consumer.set_rebalance_listener(Box::new(CommitOnRevoke));
    consumer
        .subscribe(vec![topic.to_string()])
        .expect("subscribe");
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let stop = stop.clone();
        let log = log.clone();
        let name = name.to_string();
        async move {
            while !stop.load(Ordering::Relaxed) {
                let records = consumer
                    .poll(Duration::from_millis(200), 100)
                    .await
                    .expect("poll");
                let mut log = log.lock().unwrap();
                for record in records {
                    log.push((name.clone(), record.partition, record.offset));
                }
            }
            consumer
        }
    });
    Member { stop, task }
}

impl Member {
    /// Stops polling, commits what was read and leaves the group at once.
    async fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        let mut consumer = self.task.await.expect("member task");
        consumer.commit().await.expect("final commit");
        consumer.close().await.expect("close");
    }
}

/// The harness's wait with this file's settle timeout.
async fn wait_for_members(admin: &Admin, group: &str, sizes: &[usize]) -> GroupDescription {
    ledge_e2e::wait_for_members(admin, group, sizes, SETTLE_TIMEOUT).await
}

/// Polls DescribeGroups until stopped; records every partition seen in two members'
/// assignments at once.
fn watch_ownership(
    client: &Client,
    group: &str,
) -> (
    Arc<AtomicBool>,
    tokio::task::JoinHandle<(usize, Vec<String>)>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let admin = Admin::new(client);
    let group = group.to_string();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut snapshots = 0;
            let mut violations = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(description) = admin.describe_group(&group).await {
                    snapshots += 1;
                    let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
                    for member in &description.members {
                        for partition in &member.assignment {
                            if let Some(other) =
                                owners.insert(partition.clone(), member.member_id.clone())
                            {
                                violations.push(format!(
                                    "{partition} assigned to {other} and {} (epoch {})",
                                    member.member_id, description.group_epoch
                                ));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (snapshots, violations)
        }
    });
    (stop, handle)
}

/// Waits until `log` holds `count` deliveries.
async fn wait_for_deliveries(log: &Deliveries, count: usize) {
    let deadline = now() + SETTLE_TIMEOUT;
    while now() < deadline {
        if log.lock().unwrap().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "only {} of {count} records were delivered",
        log.lock().unwrap().len()
    );
}

/// Goal: with 4 partitions and members joining one by one and then leaving, every partition
/// has one owner at any time, and with commits in `on_partitions_revoked` every record is
/// delivered exactly once across the clean rebalances. Method: DescribeGroups snapshots
/// every 20 ms, and the (partition, offset) of every record handed out to any member.
#[test]
fn members_join_and_leave_with_one_owner_and_exactly_once_delivery() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "orders", 4).await;
        let log: Deliveries = Arc::default();
        let (stop_watch, watch) = watch_ownership(&client, "processors");

        let first = start_member(&client, "processors", "orders", "first", &log);
        wait_for_members(&admin, "processors", &[4]).await;
        produce_numbered(&client, "orders", 0, 100).await;
        let second = start_member(&client, "processors", "orders", "second", &log);
        wait_for_members(&admin, "processors", &[2, 2]).await;
        produce_numbered(&client, "orders", 100, 100).await;
        let third = start_member(&client, "processors", "orders", "third", &log);
        wait_for_members(&admin, "processors", &[1, 1, 2]).await;
        produce_numbered(&client, "orders", 200, 100).await;
        wait_for_deliveries(&log, 300).await;
        third.close().await;
        wait_for_members(&admin, "processors", &[2, 2]).await;
        produce_numbered(&client, "orders", 300, 100).await;
        second.close().await;
        wait_for_members(&admin, "processors", &[4]).await;
        produce_numbered(&client, "orders", 400, 100).await;
        wait_for_deliveries(&log, 500).await;
        first.close().await;

        stop_watch.store(true, Ordering::Relaxed);
        let (snapshots, violations) = watch.await.unwrap();
        assert!(snapshots > 10, "only {snapshots} ownership snapshots");
        assert!(violations.is_empty(), "two owners: {violations:#?}");

        let log = log.lock().unwrap().clone();
        let mut seen: BTreeMap<(u32, i64), String> = BTreeMap::new();
        for (member, partition, offset) in &log {
            if let Some(previous) = seen.insert((*partition, *offset), member.clone()) {
                panic!("orders/{partition} offset {offset} delivered to {previous} and {member}");
            }
        }
        assert_eq!(seen.len(), 500, "records lost");
        let members: BTreeSet<&String> = seen.values().collect();
        assert_eq!(members.len(), 3, "every member read something");
        // The final commits cover everything: no lag left.
        let description = admin.describe_group("processors").await.unwrap();
        assert_eq!(description.state, "Empty");
        assert!(
            description
                .partitions
                .iter()
                .all(|partition| partition.lag == Some(0)),
            "{description:#?}"
        );
    });
}

/// Goal: a member killed with `kill -9` is removed after its session timeout and its
/// partitions are read by the remaining member. Method: `ledge consume --group` as a child
/// process shares the group with an in-process member; after the kill, records produced to
/// every partition must reach the in-process member.
#[test]
fn a_killed_member_is_evicted_and_its_partitions_move() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "events", 4).await;
        let mut child = Command::new(binary("ledge"))
            .args(["--server", &node.addr.to_string(), "--ca"])
            .arg(&node.ca_file)
            .args([
                "consume",
                "events",
                "--group",
                "survivors",
                "--session-timeout-ms",
                "2000",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ledge consume");
        wait_for_members(&admin, "survivors", &[4]).await;
        let log: Deliveries = Arc::default();
        let survivor = start_member(&client, "survivors", "events", "survivor", &log);
        wait_for_members(&admin, "survivors", &[2, 2]).await;

        child.kill().expect("kill -9 the child");
        child.wait().expect("reap the child");
        produce_numbered(&client, "events", 0, 200).await;
        // Not evicted before the session timeout: checked with time passed in
        // (`silent_members_expire_after_the_session_timeout`), not against the wall clock.
        let description = wait_for_members(&admin, "survivors", &[4]).await;
        assert_eq!(description.members.len(), 1);
        wait_for_deliveries(&log, 200).await;
        let partitions: BTreeSet<u32> = log.lock().unwrap().iter().map(|entry| entry.1).collect();
        assert_eq!(partitions.len(), 4, "the survivor reads every partition");
        survivor.close().await;
    });
}

/// Goal: two groups on one topic are independent: each sees every record (the seed's
/// `analytics` and `notifications`). Method: two consumers, one per group, read 200 records.
#[test]
fn two_groups_each_see_every_record() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", 4).await;
        produce_numbered(&client, "orders", 0, 200).await;
        for group in ["analytics", "notifications"] {
            let mut consumer = Consumer::new(&client, group_config(group));
            consumer.subscribe(vec!["orders".into()]).unwrap();
            let mut seen = BTreeSet::new();
            let deadline = now() + SETTLE_TIMEOUT;
            while seen.len() < 200 && now() < deadline {
                for record in consumer
                    .poll(Duration::from_millis(200), 500)
                    .await
                    .unwrap()
                {
                    assert!(seen.insert((record.partition, record.offset)), "read twice");
                }
            }
            assert_eq!(seen.len(), 200, "group {group} saw every record");
            consumer.commit().await.unwrap();
            consumer.close().await.unwrap();
        }
    });
}

/// Goal: DescribeGroups reports each member's real client id, the one its client sends in
/// every request header (the transport used to drop the header, so it was always empty).
/// Method: two SDK clients with their own `client_id` each run a member of one group.
#[test]
fn describe_groups_reports_each_members_client_id() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let setup = connect(&node).await;
        create_topic(&setup, "orders", 2).await;
        let mut clients = Vec::new();
        for client_id in ["billing-east", "billing-west"] {
            let mut config = ledge_client::ClientConfig::new(
                node.addr.to_string(),
                ledge_client::Trust::CaFile(node.ca_file.clone()),
            );
            config.client_id = client_id.to_string();
            clients.push(Client::connect(config).await.unwrap());
        }
        let log = Deliveries::default();
        let members: Vec<Member> = clients
            .iter()
            .zip(["east", "west"])
            .map(|(client, name)| start_member(client, "billing", "orders", name, &log))
            .collect();
        let description = wait_for_members(&Admin::new(&setup), "billing", &[1, 1]).await;
        let mut client_ids: Vec<&str> = description
            .members
            .iter()
            .map(|member| member.client_id.as_str())
            .collect();
        client_ids.sort_unstable();
        assert_eq!(client_ids, ["billing-east", "billing-west"]);
        for member in members {
            member.close().await;
        }
    });
}

/// Goal: committed offsets, their metadata and the lag survive a node restart, and a member
/// resumes after them. Method: commit specific offsets with metadata, restart the node
/// (`kill -9`), describe again, then read only the rest.
#[test]
fn committed_offsets_and_lag_survive_a_restart() {
    let mut node = NodeProcess::start();
    let runtime = runtime();
    let before = runtime.block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "ledger", 2).await;
        produce_numbered(&client, "ledger", 0, 100).await;
        let mut consumer = Consumer::new(&client, group_config("auditors"));
        consumer.subscribe(vec!["ledger".into()]).unwrap();
        let mut read = 0;
        let deadline = now() + SETTLE_TIMEOUT;
        while read < 100 && now() < deadline {
            read += consumer
                .poll(Duration::from_millis(200), 500)
                .await
                .unwrap()
                .len();
        }
        assert_eq!(read, 100);
        // Commit 10 short of the end in partition 0, with metadata; all of partition 1.
        let mut offsets = BTreeMap::new();
        for partition in consumer.assignment() {
            let position = consumer.position(&partition).await.unwrap();
            let offset = if partition.partition == 0 {
                position - 10
            } else {
                position
            };
            offsets.insert(
                partition,
                OffsetAndMetadata::with_metadata(offset, "batch-7"),
            );
        }
        consumer.commit_offsets(offsets).await.unwrap();
        let committed = consumer
            .committed(&[TopicPartition::new("ledger", 0)])
            .await
            .unwrap();
        let committed = committed[&TopicPartition::new("ledger", 0)]
            .clone()
            .unwrap();
        assert_eq!(committed.metadata, "batch-7");
        consumer.close().await.unwrap();
        let description = Admin::new(&client)
            .describe_group("auditors")
            .await
            .unwrap();
        assert_eq!(
            description
                .partitions
                .iter()
                .map(|p| p.lag.unwrap())
                .sum::<i64>(),
            10
        );
        client.close().await;
        description.partitions
    });
    node.restart();
    runtime.block_on(async {
        let client = connect(&node).await;
        let description = Admin::new(&client)
            .describe_group("auditors")
            .await
            .unwrap();
        assert_eq!(description.state, "Empty");
        assert_eq!(
            description.partitions, before,
            "offsets changed across the restart"
        );
        let mut consumer = Consumer::new(&client, group_config("auditors"));
        consumer.subscribe(vec!["ledger".into()]).unwrap();
        let mut read = Vec::new();
        let deadline = now() + SETTLE_TIMEOUT;
        while read.len() < 10 && now() < deadline {
            read.extend(
                consumer
                    .poll(Duration::from_millis(200), 500)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(read.len(), 10, "resumed after the committed offsets");
        assert!(read.iter().all(|record| record.partition == 0));
        consumer.close().await.unwrap();
    });
}

fn ledge(node: &NodeProcess, args: &[&str]) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, None);
    (status.success(), stdout, stderr)
}

fn ok(node: &NodeProcess, args: &[&str]) -> String {
    let (success, stdout, stderr) = ledge(node, args);
    assert!(success, "ledge {args:?} failed:\n{stderr}");
    stdout
}

fn fails(node: &NodeProcess, args: &[&str]) -> String {
    let (success, _, stderr) = ledge(node, args);
    assert!(!success, "ledge {args:?} should have failed");
    let stderr = stderr.trim().to_string();
    assert!(
        stderr.starts_with("error: "),
        "not an error line: {stderr:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "more than one line: {stderr:?}");
    stderr
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// Goal: `ledge consume --group` commits what it printed; `ledge group` list, describe (table
/// and JSON with lag), reset-offsets (dry run and every target) and delete round trip; their
/// errors are one clear line. Method: the commands in the order a user meets them.
#[test]
fn group_commands_round_trip() {
    let node = NodeProcess::start();
    let runtime = runtime();
    runtime.block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", 2).await;
        produce_numbered(&client, "orders", 0, 40).await;
    });
    assert!(ok(&node, &["group", "list"]).contains("No consumer groups"));

    let printed = ok(
        &node,
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--max-messages",
            "30",
        ],
    );
    assert_eq!(printed.lines().count(), 30);
    // The group resumes after what was printed: --from-beginning no longer applies.
    let printed = ok(
        &node,
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--timeout-ms",
            "1500",
        ],
    );
    assert_eq!(printed.lines().count(), 10, "{printed}");

    let listed = ok(&node, &["group", "list"]);
    assert!(
        listed.contains("billing") && listed.contains("Empty"),
        "{listed}"
    );
    let table = ok(&node, &["group", "describe", "billing"]);
    for column in [
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "END-OFFSET",
        "LAG",
        "MEMBER",
    ] {
        assert!(table.contains(column), "{table}");
    }
    let described = json(&ok(
        &node,
        &["group", "describe", "billing", "--format", "json"],
    ));
    let partitions = described["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    assert!(
        partitions.iter().all(|partition| partition["lag"] == 0),
        "{described}"
    );

    let plan = ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
            "--dry-run",
        ],
    );
    assert!(
        plan.contains("NEW-OFFSET") && plan.contains("Dry run"),
        "{plan}"
    );
    let described = json(&ok(
        &node,
        &["group", "describe", "billing", "--format", "json"],
    ));
    let lag: i64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|partition| partition["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, 0, "a dry run commits nothing");

    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
        ],
    );
    let lag_of = |node: &NodeProcess| -> i64 {
        json(&ok(
            node,
            &["group", "describe", "billing", "--format", "json"],
        ))["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|partition| partition["lag"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(lag_of(&node), 40);
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--shift-by",
            "5",
        ],
    );
    assert_eq!(lag_of(&node), 30);
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-latest",
        ],
    );
    assert_eq!(lag_of(&node), 0);
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-offset",
            "0",
        ],
    );
    assert_eq!(lag_of(&node), 40);
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-datetime",
            "2100-01-01T00:00:00Z",
        ],
    );
    assert_eq!(lag_of(&node), 0, "no record is that new: reset to the end");
    // Only some partitions, kafka-consumer-groups' `--topic orders:1`: partition 0 keeps
    // its offset (the end), partition 1 goes back to 0.
    let plan = json(&ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders:1",
            "--to-earliest",
            "--format",
            "json",
        ],
    ));
    let planned = plan["partitions"].as_array().unwrap();
    assert_eq!(planned.len(), 1, "{plan}");
    assert_eq!(planned[0]["partition"], 1, "{plan}");
    let described = json(&ok(
        &node,
        &["group", "describe", "billing", "--format", "json"],
    ));
    let lags: Vec<(i64, i64)> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap(), p["lag"].as_i64().unwrap()))
        .collect();
    assert!(lags.contains(&(0, 0)), "{described}");
    assert!(
        lags.iter().any(|(p, lag)| *p == 1 && *lag > 0),
        "{described}"
    );
    let error = fails(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders:0,7",
            "--to-earliest",
        ],
    );
    assert!(
        error.contains("topic orders has no partition 7: it has 2"),
        "{error}"
    );
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-latest",
        ],
    );

    // A group with an active member cannot be reset or deleted.
    runtime.block_on(async {
        let client = connect(&node).await;
        let mut consumer = Consumer::new(&client, group_config("billing"));
        consumer.subscribe(vec!["orders".into()]).unwrap();
        consumer.poll(Duration::from_millis(500), 1).await.unwrap();
        wait_for_members(&Admin::new(&client), "billing", &[2]).await;
        let error = fails(
            &node,
            &[
                "group",
                "reset-offsets",
                "billing",
                "--topic",
                "orders",
                "--to-earliest",
            ],
        );
        assert!(error.contains("active members"), "{error}");
        let error = fails(&node, &["group", "delete", "billing"]);
        assert!(error.contains("active members"), "{error}");
        consumer.close().await.unwrap();
    });

    assert!(ok(&node, &["group", "delete", "billing"]).contains("Deleted group billing"));
    let error = fails(&node, &["group", "describe", "billing"]);
    assert!(error.contains("does not exist"), "{error}");
    let error = fails(&node, &["group", "delete", "nobody"]);
    assert!(error.contains("group nobody does not exist"), "{error}");
    let (success, _, stderr) = ledge(
        &node,
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "orders",
            "--to-datetime",
            "soon",
        ],
    );
    assert!(!success && stderr.contains("RFC 3339"), "{stderr}");
}

/// Goal: mistakes a client can make get clear errors, and other groups are unaffected.
/// Method: an unknown assignor, an invalid pattern, subscribe without a group, subscribe
/// mixed with assign, a commit for a partition the member does not own; then a pattern
/// subscription that works.
#[test]
fn bad_group_input_gets_clear_errors() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", 2).await;
        create_topic(&client, "payments", 1).await;

        let mut config = group_config("bad-assignor");
        config.assignor = "fastest".into();
        let mut consumer = Consumer::new(&client, config);
        consumer.subscribe(vec!["orders".into()]).unwrap();
        match consumer.poll(Duration::from_secs(5), 1).await {
            Err(
                error @ ConsumeError::Group {
                    code: ErrorCode::InconsistentGroupProtocol,
                    ..
                },
            ) => {
                assert!(error.to_string().contains("fastest"), "{error}");
            }
            other => panic!("expected InconsistentGroupProtocol, got {other:?}"),
        }

        let mut consumer = Consumer::new(&client, group_config("bad-pattern"));
        consumer.subscribe_pattern("orders(").unwrap();
        match consumer.poll(Duration::from_secs(5), 1).await {
            Err(ConsumeError::Group {
                code: ErrorCode::InvalidRegularExpression,
                message,
                ..
            }) => {
                assert!(message.contains("orders("), "{message}");
            }
            other => panic!("expected InvalidRegularExpression, got {other:?}"),
        }

        let mut consumer = Consumer::new(&client, ConsumerConfig::default());
        assert!(matches!(
            consumer.subscribe(vec!["orders".into()]),
            Err(ConsumeError::NoGroupId)
        ));
        let mut consumer = Consumer::new(&client, group_config("mixed"));
        consumer.assign(vec![TopicPartition::new("orders", 0)]);
        let error = consumer.subscribe(vec!["orders".into()]).unwrap_err();
        assert!(error.to_string().contains("cannot be mixed"), "{error}");

        // A pattern subscription, and a commit for a partition the member does not own.
        let mut consumer = Consumer::new(&client, group_config("by-pattern"));
        consumer.subscribe_pattern("pay.*").unwrap();
        let deadline = now() + SETTLE_TIMEOUT;
        while consumer.assignment().is_empty() && now() < deadline {
            consumer.poll(Duration::from_millis(200), 1).await.unwrap();
        }
        assert_eq!(
            consumer.assignment(),
            vec![TopicPartition::new("payments", 0)]
        );
        let foreign =
            BTreeMap::from([(TopicPartition::new("orders", 0), OffsetAndMetadata::new(1))]);
        match consumer.commit_offsets(foreign).await {
            Err(CommitError::Partition {
                code: ErrorCode::PartitionNotAssigned,
                ..
            }) => {}
            other => panic!("expected PartitionNotAssigned, got {other:?}"),
        }
        consumer.close().await.unwrap();
    });
}
