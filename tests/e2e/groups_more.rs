//! Consumer groups against a real node, the cases `groups.rs` leaves open: static membership
//! (a member that closes and comes back with the same instance id takes its partitions back
//! without a rebalance), `max_poll_interval` (a member that stops polling leaves and rejoins
//! on its next poll), commits from a member that was removed, and hundreds of members joining
//! one group at once.
//!
//! The node tells members to heartbeat every 200 ms and session timeouts are 1 to 3 s (the
//! node accepts 1 s and up), so every test stays within about 15 s on a loaded 2-core machine.
//! Raw heartbeats (`RawClient`) stand in for members whose heartbeats the test must stop, and
//! for the 200 members, which share one connection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_client::{
    Admin, Client, CommitError, Consumer, ConsumerConfig, ErrorCode, GroupDescription,
    ListenerFuture, OffsetAndMetadata, OffsetReset, RebalanceListener, TopicPartition,
};
use ledge_e2e::{
    NodeOptions, NodeProcess, RawClient, connect, create_topic, produce_numbered, runtime,
};
use ledge_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, OffsetCommitPartition,
    OffsetCommitRequest, OffsetCommitResponse, OffsetCommitTopic, OffsetFetchRequest, Request,
    Response, TopicPartitions, decode_response, encode_request,
};

/// Members are told to heartbeat every 200 ms, so short session timeouts hold.
const NODE_CONFIG: &str = "[groups]\nheartbeat_interval_ms = 200\n";
/// Longest wait for the group to settle after a change.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The tests' one clock read: bounded waits and measured delays.
#[expect(
    clippy::disallowed_methods,
    reason = "test deadlines, not logic under test"
)]
fn now() -> Instant {
    Instant::now()
}

fn start_node() -> NodeProcess {
    NodeProcess::start_with(NodeOptions {
        config: Some(NODE_CONFIG.to_string()),
        ..NodeOptions::default()
    })
}

fn group_config(group: &str, session_timeout: Duration) -> ConsumerConfig {
    let mut config = ConsumerConfig::default();
    config.group_id = Some(group.to_string());
    config.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = session_timeout;
    config.enable_auto_commit = false;
    config
}

/// Commits everything read before partitions move, and records every call.
struct Recorder {
    calls: Arc<Mutex<Vec<String>>>,
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked<'a>(
        &'a mut self,
        consumer: &'a mut Consumer,
        revoked: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("revoked {revoked:?}"));
        Box::pin(async move {
            consumer
                .commit()
                .await
                .expect("commit in on_partitions_revoked");
        })
    }

    fn on_partitions_assigned<'a>(
        &'a mut self,
        _consumer: &'a mut Consumer,
        assigned: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("assigned {assigned:?}"));
        Box::pin(async {})
    }

    fn on_partitions_lost<'a>(
        &'a mut self,
        _consumer: &'a mut Consumer,
        lost: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.calls.lock().unwrap().push(format!("lost {lost:?}"));
        Box::pin(async {})
    }
}

/// (member name, partition, offset) of every record handed out.
type Deliveries = Arc<Mutex<Vec<(String, u32, i64)>>>;

/// A consumer polling in its own task until stopped; it commits after every batch, so a
/// member that leaves without a revocation (a poll timeout) hands over exactly where it was.
struct Member {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Consumer>,
    calls: Arc<Mutex<Vec<String>>>,
}

fn start_member(
    client: &Client,
    config: ConsumerConfig,
    topic: &str,
    name: &str,
    log: &Deliveries,
) -> Member {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut consumer = Consumer::new(client, config);
    consumer.set_rebalance_listener(Box::new(Recorder {
        calls: calls.clone(),
    }));
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
                if records.is_empty() {
                    continue;
                }
                log.lock().unwrap().extend(
                    records
                        .iter()
                        .map(|record| (name.clone(), record.partition, record.offset)),
                );
                consumer.commit().await.expect("commit after a batch");
            }
            consumer
        }
    });
    Member { stop, task, calls }
}

impl Member {
    /// Stops polling, commits what was read and closes (a static member leaves with -2).
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

/// Panics if a (partition, offset) was delivered twice; returns how many were delivered.
fn exactly_once(log: &Deliveries) -> BTreeMap<(u32, i64), String> {
    let mut seen = BTreeMap::new();
    for (member, partition, offset) in log.lock().unwrap().iter() {
        if let Some(previous) = seen.insert((*partition, *offset), member.clone()) {
            panic!("partition {partition} offset {offset} delivered to {previous} and {member}");
        }
    }
    seen
}

fn assignment_of(description: &GroupDescription, member_id: &str) -> Vec<TopicPartition> {
    description
        .members
        .iter()
        .find(|member| member.member_id == member_id)
        .unwrap_or_else(|| panic!("{member_id} is not in {description:#?}"))
        .assignment
        .clone()
}

/// Goal: a static member that closes (epoch -2) and comes back with the same instance id
/// within its session timeout gets the same partitions without a rebalance: the group epoch
/// and the other member's assignment do not move, the other member's listener is not called,
/// and no record is lost or delivered twice. Method: two static members over 4 partitions,
/// DescribeGroups before and after, and the (partition, offset) of every record handed out.
#[test]
fn a_static_member_comes_back_without_a_rebalance() {
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "orders", 4).await;
        produce_numbered(&client, "orders", 0, 100).await;
        let log: Deliveries = Arc::default();
        // Far longer than the test takes even under load (SETTLE_TIMEOUT bounds each wait),
        // so "a" comes back within it without timing the comeback against the wall clock.
        let session_timeout = Duration::from_secs(60);
        let static_config = |instance: &str| {
            let mut config = group_config("statics", session_timeout);
            config.group_instance_id = Some(instance.to_string());
            config
        };

        let first = start_member(&client, static_config("a"), "orders", "a", &log);
        wait_for_members(&admin, "statics", &[4]).await;
        let steady = start_member(&client, static_config("b"), "orders", "b", &log);
        let before = wait_for_members(&admin, "statics", &[2, 2]).await;
        wait_for_deliveries(&log, 100).await;
        let instance = |description: &GroupDescription, id: &str| {
            description
                .members
                .iter()
                .find(|member| member.instance_id.as_deref() == Some(id))
                .unwrap_or_else(|| panic!("no member with instance id {id}: {description:#?}"))
                .clone()
        };
        let a_before = instance(&before, "a");
        let b_before = instance(&before, "b");
        let b_calls = steady.calls.lock().unwrap().len();

        first.close().await;
        // Records for every partition while "a" is away: its two wait for it.
        produce_numbered(&client, "orders", 100, 100).await;
        let away = admin.describe_group("statics").await.unwrap();
        assert_eq!(away.group_epoch, before.group_epoch, "{away:#?}");
        assert_eq!(
            assignment_of(&away, &b_before.member_id),
            b_before.assignment
        );

        let again = start_member(&client, static_config("a"), "orders", "a-again", &log);
        wait_for_deliveries(&log, 200).await;
        // That the departed entry's session timer does not fire later (nothing expires,
        // nothing moves) is checked on the coordinator with time passed in
        // (`static_members_restart_without_a_rebalance`): here it would take a wall-clock
        // wait asserting that nothing happens.
        let after = wait_for_members(&admin, "statics", &[2, 2]).await;
        let a_after = instance(&after, "a");
        let b_after = instance(&after, "b");
        assert_eq!(after.group_epoch, before.group_epoch, "{after:#?}");
        assert_ne!(a_after.member_id, a_before.member_id, "a new member id");
        assert_eq!(a_after.assignment, a_before.assignment, "same partitions");
        assert_eq!(b_after.member_id, b_before.member_id);
        assert_eq!(b_after.assignment, b_before.assignment);
        assert_eq!(b_after.member_epoch, b_before.member_epoch);
        let b_events = steady.calls.lock().unwrap()[b_calls..].to_vec();
        assert!(b_events.is_empty(), "b's listener was called: {b_events:?}");

        let seen = exactly_once(&log);
        assert_eq!(seen.len(), 200, "records lost");
        let comeback: BTreeSet<u32> = seen
            .iter()
            .filter(|(_, member)| *member == "a-again")
            .map(|((partition, _), _)| *partition)
            .collect();
        let a_partitions: BTreeSet<u32> = a_before
            .assignment
            .iter()
            .map(|partition| partition.partition)
            .collect();
        assert_eq!(comeback, a_partitions, "the comeback read a's partitions");
        again.close().await;
        steady.close().await;
    });
}

/// Goal: a member that stops calling `poll` for longer than its `max_poll_interval` leaves
/// the group, its partitions move to the other member, which reads them; its next poll
/// rejoins, and no record is lost or delivered twice. Method: a slow member polling by hand
/// (committing after every batch) beside a member polling in a task.
#[test]
fn a_member_that_stops_polling_leaves_and_rejoins() {
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "orders", 4).await;
        let log: Deliveries = Arc::default();
        // Longer than SETTLE_TIMEOUT, so partitions that move within a wait moved for the
        // poll timeout, never for the session timeout; when exactly they move is checked on
        // the coordinator with time passed in, not against the wall clock here.
        let session_timeout = Duration::from_secs(30);
        let max_poll_interval = Duration::from_millis(1500);

        let busy = start_member(
            &client,
            group_config("pollers", session_timeout),
            "orders",
            "busy",
            &log,
        );
        wait_for_members(&admin, "pollers", &[4]).await;
        let mut config = group_config("pollers", session_timeout);
        config.max_poll_interval = max_poll_interval;
        let mut slow = Consumer::new(&client, config);
        slow.subscribe(vec!["orders".into()]).unwrap();
        let deadline = now() + SETTLE_TIMEOUT;
        while slow.assignment().len() < 2 && now() < deadline {
            poll_by_hand(&mut slow, "slow", &log).await;
        }
        assert_eq!(slow.assignment().len(), 2, "slow took its share");
        produce_numbered(&client, "orders", 0, 100).await;
        while log.lock().unwrap().len() < 100 && now() < deadline {
            poll_by_hand(&mut slow, "slow", &log).await;
        }
        wait_for_deliveries(&log, 100).await;
        let slow_partitions: BTreeSet<u32> = slow
            .assignment()
            .iter()
            .map(|partition| partition.partition)
            .collect();

        let slow_id = slow.member_id();
        assert!(!slow_id.is_empty());
        // The slow member "processes" for longer than max_poll_interval.
        wait_for_members(&admin, "pollers", &[4]).await;
        produce_numbered(&client, "orders", 100, 100).await;
        wait_for_deliveries(&log, 200).await;
        let busy_read: BTreeSet<u32> = log.lock().unwrap()[100..]
            .iter()
            .filter(|entry| entry.0 == "busy")
            .map(|entry| entry.1)
            .collect();
        assert!(
            slow_partitions.is_subset(&busy_read),
            "busy read slow's partitions {slow_partitions:?}: {busy_read:?}"
        );
        // Out of the group, a commit is refused as a removed member's.
        match slow
            .commit_offsets(BTreeMap::from([(
                TopicPartition::new("orders", *slow_partitions.first().unwrap()),
                OffsetAndMetadata::new(0),
            )]))
            .await
        {
            Err(CommitError::Group {
                code: ErrorCode::UnknownMemberId,
                ..
            }) => {}
            other => panic!("expected UnknownMemberId, got {other:?}"),
        }

        // The next poll drops the lost partitions and rejoins; the slow member gets its
        // share back under a new member id.
        assert!(slow.member_id().is_empty(), "out of the group");
        let deadline = now() + SETTLE_TIMEOUT;
        while (slow.member_id().is_empty() || slow.assignment().len() < 2) && now() < deadline {
            poll_by_hand(&mut slow, "slow", &log).await;
        }
        assert_eq!(slow.assignment().len(), 2, "slow rejoined");
        assert_ne!(slow.member_id(), slow_id, "rejoined as a new member");
        // Polling on meanwhile: a wait past max_poll_interval would make it leave again.
        let deadline = now() + SETTLE_TIMEOUT;
        loop {
            poll_by_hand(&mut slow, "slow", &log).await;
            let description = admin.describe_group("pollers").await.unwrap();
            let mut sizes: Vec<usize> = description
                .members
                .iter()
                .map(|member| member.assignment.len())
                .collect();
            sizes.sort_unstable();
            if sizes == [2, 2] && description.state == "Stable" {
                break;
            }
            assert!(
                now() < deadline,
                "not [2, 2] after the rejoin: {description:#?}"
            );
        }
        produce_numbered(&client, "orders", 200, 100).await;
        let deadline = now() + SETTLE_TIMEOUT;
        while log.lock().unwrap().len() < 300 && now() < deadline {
            poll_by_hand(&mut slow, "slow", &log).await;
        }
        assert_eq!(exactly_once(&log).len(), 300, "records lost");
        let busy_events = busy.calls.lock().unwrap().clone();
        assert!(
            busy_events.iter().any(|event| event.starts_with("revoked")),
            "busy gave partitions back: {busy_events:?}"
        );
        busy.close().await;
        slow.close().await.unwrap();
    });
}

/// One poll by hand, logging what it returns as `name`'s and committing it.
async fn poll_by_hand(consumer: &mut Consumer, name: &str, log: &Deliveries) {
    let records = consumer
        .poll(Duration::from_millis(200), 100)
        .await
        .expect("poll");
    if records.is_empty() {
        return;
    }
    log.lock().unwrap().extend(
        records
            .iter()
            .map(|record| (name.to_string(), record.partition, record.offset)),
    );
    consumer.commit().await.expect("commit after a batch");
}

/// One request over `client`, its error as text (the 200-member test reports, not panics).
async fn try_request(client: &RawClient, request: &Request) -> Result<Response, String> {
    let frame = encode_request(7, "raw-test", request);
    let bytes = client.exchange(frame).await?;
    match decode_response(request.api_key(), Bytes::from(bytes)) {
        Ok((_, Some(response))) => Ok(response),
        Ok((header, None)) => Err(format!("{}: {}", header.error, header.message)),
        Err(error) => Err(error.to_string()),
    }
}

fn heartbeat_request(
    group: &str,
    member_id: &str,
    member_epoch: i32,
    topic: &str,
    owned: &[TopicPartitions],
    session_timeout_ms: u32,
) -> Request {
    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        member_epoch,
        instance_id: None,
        rebalance_timeout_ms: 5_000,
        session_timeout_ms,
        subscribed_topics: vec![topic.to_string()],
        subscribed_pattern: None,
        assignor: "cooperative-sticky".to_string(),
        owned_partitions: owned.to_vec(),
    })
}

async fn heartbeat(client: &RawClient, request: &Request) -> ConsumerGroupHeartbeatResponse {
    match try_request(client, request).await {
        Ok(Response::ConsumerGroupHeartbeat(response)) => response,
        other => panic!("heartbeat: {other:?}"),
    }
}

async fn commit(
    client: &RawClient,
    group: &str,
    member_id: &str,
    member_epoch: i32,
    offsets: &[(&str, u32, i64)],
) -> OffsetCommitResponse {
    let request = Request::OffsetCommit(OffsetCommitRequest {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        member_epoch,
        topics: offsets
            .iter()
            .map(|(topic, partition, offset)| OffsetCommitTopic {
                name: topic.to_string(),
                partitions: vec![OffsetCommitPartition {
                    partition: *partition,
                    offset: *offset,
                    metadata: String::new(),
                }],
            })
            .collect(),
    });
    match try_request(client, &request).await {
        Ok(Response::OffsetCommit(response)) => response,
        other => panic!("commit: {other:?}"),
    }
}

/// The committed offset of every partition of `group` that has one.
async fn committed(client: &RawClient, group: &str) -> BTreeMap<(String, u32), i64> {
    let request = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group.to_string(),
        topics: None,
    });
    let Ok(Response::OffsetFetch(response)) = try_request(client, &request).await else {
        panic!("offset fetch failed");
    };
    assert_eq!(response.error, ErrorCode::None, "{}", response.message);
    response
        .topics
        .into_iter()
        .flat_map(|topic| {
            topic.partitions.into_iter().filter_map(move |partition| {
                partition
                    .offset
                    .map(|offset| ((topic.name.clone(), partition.partition), offset))
            })
        })
        .collect()
}

fn count(assignment: &[TopicPartitions]) -> usize {
    assignment.iter().map(|topic| topic.partitions.len()).sum()
}

/// Goal: an SDK consumer the node fences (its heartbeat comes at its previous epoch while it
/// owns a partition its new assignment lacks: the answer that moved it on never reached it)
/// drops what it owns and rejoins under the same member id at epoch 0, without waiting for a
/// session timeout: the group shows its two members (no stale third entry holding
/// partitions), the other member gets its partition, and the consumer reads on from the
/// committed offset of the partition it keeps: nothing skipped, nothing read twice. Method:
/// the consumer heartbeats every 3 s; a raw member joins and, right after, a raw heartbeat
/// in the consumer's name takes the answer that moves the consumer to a new epoch.
#[test]
fn a_fenced_sdk_consumer_rejoins_under_its_member_id() {
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "fenced", 2).await;
        produce_numbered(&client, "fenced", 0, 100).await;
        let raw = RawClient::connect(&node).await;
        let mut config = group_config("fencing", Duration::from_secs(20));
        config.heartbeat_interval = Some(Duration::from_secs(3));
        let mut consumer = Consumer::new(&client, config);
        consumer.subscribe(vec!["fenced".into()]).unwrap();
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
        consumer.commit().await.unwrap();
        let member_id = consumer.member_id();
        let alone = wait_for_members(&admin, "fencing", &[2]).await;
        let epoch = alone.members[0].member_epoch;
        let both = vec![TopicPartitions {
            topic: "fenced".into(),
            partitions: vec![0, 1],
        }];
        assert_eq!(assignment_of(&alone, &member_id).len(), 2);

        // Another member joins; the answer telling the consumer to give a partition up goes
        // to the test's heartbeat in its name.
        let other = heartbeat(
            &raw,
            &heartbeat_request("fencing", "", 0, "fenced", &[], 20_000),
        )
        .await;
        assert_eq!(other.error, ErrorCode::None, "{}", other.message);
        let mut steal = heartbeat_request("fencing", &member_id, epoch, "fenced", &both, 20_000);
        if let Request::ConsumerGroupHeartbeat(request) = &mut steal {
            // The consumer's own rebalance timeout (max_poll_interval), so it is not expired
            // for a revocation it never heard of before its next heartbeat.
            request.rebalance_timeout_ms = 300_000;
        }
        let stolen = heartbeat(&raw, &steal).await;
        assert_eq!(stolen.error, ErrorCode::None, "{}", stolen.message);
        assert!(stolen.member_epoch > epoch);
        assert_eq!(count(&stolen.assignment), 1);

        // The consumer's next heartbeat (old epoch, owning both) is fenced; it rejoins. The
        // raw member heartbeats until it has the partition the consumer gave up.
        let (mut other_epoch, mut other_owned) = (other.member_epoch, other.assignment);
        let deadline = now() + SETTLE_TIMEOUT;
        let settled = loop {
            consumer
                .poll(Duration::from_millis(200), 500)
                .await
                .unwrap();
            let answer = heartbeat(
                &raw,
                &heartbeat_request(
                    "fencing",
                    &other.member_id,
                    other_epoch,
                    "fenced",
                    &other_owned,
                    20_000,
                ),
            )
            .await;
            assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
            (other_epoch, other_owned) = (answer.member_epoch, answer.assignment);
            let description = admin.describe_group("fencing").await.unwrap();
            let settled = description.members.len() == 2
                && count(&other_owned) == 1
                && consumer.assignment().len() == 1;
            if settled || now() > deadline {
                break description;
            }
        };
        let ids: BTreeSet<&str> = settled
            .members
            .iter()
            .map(|member| member.member_id.as_str())
            .collect();
        assert_eq!(
            ids,
            BTreeSet::from([member_id.as_str(), other.member_id.as_str()]),
            "{settled:#?}"
        );
        assert_eq!(consumer.member_id(), member_id, "rejoined under its id");
        assert_eq!(count(&other_owned), 1);
        let kept = consumer.assignment();
        assert_eq!(kept.len(), 1, "{settled:#?}");

        // It reads on from its partition's committed offset: nothing skipped or repeated.
        let before = committed(&raw, "fencing").await;
        let start = before[&(kept[0].topic.clone(), kept[0].partition)];
        produce_numbered(&client, "fenced", 100, 100).await;
        let end = admin
            .describe_group("fencing")
            .await
            .unwrap()
            .partitions
            .iter()
            .find(|offsets| offsets.partition == kept[0])
            .and_then(|offsets| offsets.end_offset)
            .unwrap();
        let mut offsets = Vec::new();
        let deadline = now() + SETTLE_TIMEOUT;
        while offsets.len() < usize::try_from(end - start).unwrap() && now() < deadline {
            for record in consumer
                .poll(Duration::from_millis(200), 500)
                .await
                .unwrap()
            {
                assert_eq!(record.partition, kept[0].partition, "only its partition");
                offsets.push(record.offset);
            }
        }
        assert_eq!(offsets, (start..end).collect::<Vec<_>>());
        consumer.commit().await.unwrap();
        let after = committed(&raw, "fencing").await;
        assert_eq!(after[&(kept[0].topic.clone(), kept[0].partition)], end);
        consumer.close().await.unwrap();
    });
}

/// Goal: a member removed for its session timeout cannot commit: the node refuses with
/// `UnknownMemberId`, a live member committing with an epoch it was never given gets
/// `FencedMemberEpoch`, and the committed offsets stay as they were; the SDK refuses a commit
/// from a consumer that was removed the same way. Method: raw heartbeats for a member the
/// test silences, a live member heartbeating in a task, OffsetFetch after every refusal; then
/// an SDK consumer that leaves for a poll timeout and commits alone in its group.
#[test]
fn a_removed_member_cannot_commit() {
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "ledger", 2).await;
        produce_numbered(&client, "ledger", 0, 100).await;
        let raw = Arc::new(RawClient::connect(&node).await);

        // "stale" joins alone, takes both partitions, acknowledges them and commits.
        let join = heartbeat_request("auditors", "", 0, "ledger", &[], 1_000);
        let joined = heartbeat(&raw, &join).await;
        assert_eq!(joined.error, ErrorCode::None, "{}", joined.message);
        assert_eq!(count(&joined.assignment), 2);
        let acked = heartbeat(
            &raw,
            &heartbeat_request(
                "auditors",
                &joined.member_id,
                joined.member_epoch,
                "ledger",
                &joined.assignment,
                1_000,
            ),
        )
        .await;
        assert_eq!(acked.error, ErrorCode::None, "{}", acked.message);
        let (stale_id, stale_epoch) = (acked.member_id.clone(), acked.member_epoch);
        let answer = commit(
            &raw,
            "auditors",
            &stale_id,
            stale_epoch,
            &[("ledger", 0, 5), ("ledger", 1, 7)],
        )
        .await;
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        let expected = BTreeMap::from([
            (("ledger".to_string(), 0), 5),
            (("ledger".to_string(), 1), 7),
        ]);
        assert_eq!(committed(&raw, "auditors").await, expected);

        // "live" joins and keeps heartbeating; "stale" falls silent and is removed.
        let stop = Arc::new(AtomicBool::new(false));
        let live_state = Arc::new(Mutex::new((String::new(), 0, Vec::new())));
        let live = tokio::spawn({
            let raw = raw.clone();
            let stop = stop.clone();
            let live_state = live_state.clone();
            async move {
                let (mut id, mut epoch, mut owned) = (String::new(), 0, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let answer = heartbeat(
                        &raw,
                        &heartbeat_request("auditors", &id, epoch, "ledger", &owned, 3_000),
                    )
                    .await;
                    assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
                    (id, epoch, owned) = (answer.member_id, answer.member_epoch, answer.assignment);
                    *live_state.lock().unwrap() = (id.clone(), epoch, owned.clone());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
        let silenced_at = now();
        // "[2]" alone would also match the stale member before the live one joined; wait for
        // the group without it.
        let mut description = wait_for_members(&admin, "auditors", &[2]).await;
        while description
            .members
            .iter()
            .any(|member| member.member_id == stale_id)
            && now() < silenced_at + SETTLE_TIMEOUT
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            description = wait_for_members(&admin, "auditors", &[2]).await;
        }
        // Not removed before its session timeout: checked with time passed in
        // (`silent_members_expire_after_the_session_timeout`), not against the wall clock.
        assert!(
            description
                .members
                .iter()
                .all(|member| member.member_id != stale_id)
        );
        // The live member must have heard of both partitions before it can commit them.
        let deadline = now() + SETTLE_TIMEOUT;
        while count(&live_state.lock().unwrap().2) < 2 && now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let answer = commit(
            &raw,
            "auditors",
            &stale_id,
            stale_epoch,
            &[("ledger", 0, 50), ("ledger", 1, 50)],
        )
        .await;
        assert_eq!(answer.error, ErrorCode::UnknownMemberId, "{answer:?}");
        assert!(answer.message.contains(&stale_id), "{}", answer.message);
        assert_eq!(
            committed(&raw, "auditors").await,
            expected,
            "a stale commit landed"
        );

        let (live_id, live_epoch, _) = live_state.lock().unwrap().clone();
        let answer = commit(
            &raw,
            "auditors",
            &live_id,
            live_epoch + 1,
            &[("ledger", 0, 60)],
        )
        .await;
        assert_eq!(answer.error, ErrorCode::FencedMemberEpoch, "{answer:?}");
        let answer = commit(&raw, "auditors", &live_id, -1, &[("ledger", 0, 60)]).await;
        assert_eq!(answer.error, ErrorCode::FencedMemberEpoch, "{answer:?}");
        assert_eq!(
            committed(&raw, "auditors").await,
            expected,
            "a fenced commit landed"
        );
        // The live member's own commit goes through (the refusals above were not a fluke).
        let answer = commit(&raw, "auditors", &live_id, live_epoch, &[("ledger", 0, 60)]).await;
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        assert_eq!(
            committed(&raw, "auditors").await[&("ledger".to_string(), 0)],
            60
        );
        stop.store(true, Ordering::Relaxed);
        live.await.unwrap();

        // The SDK: a consumer alone in its group stops polling past max_poll_interval and is
        // out of the group; its commit must not land as an administrative one.
        let mut config = group_config("solo", Duration::from_secs(3));
        config.max_poll_interval = Duration::from_secs(1);
        let mut consumer = Consumer::new(&client, config);
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
        consumer.commit().await.unwrap();
        let before = committed(&raw, "solo").await;
        assert_eq!(before.values().sum::<i64>(), 100);
        let deadline = now() + SETTLE_TIMEOUT;
        while admin.describe_group("solo").await.unwrap().state != "Empty" && now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(consumer.member_id().is_empty(), "left for the poll timeout");
        match consumer
            .commit_offsets(BTreeMap::from([(
                TopicPartition::new("ledger", 0),
                OffsetAndMetadata::new(1),
            )]))
            .await
        {
            Err(CommitError::Group {
                code: ErrorCode::UnknownMemberId,
                ..
            }) => {}
            other => panic!("expected UnknownMemberId, got {other:?}"),
        }
        assert_eq!(
            committed(&raw, "solo").await,
            before,
            "a removed member's commit landed"
        );
        drop(consumer);
    });
}

/// Goal: hundreds of members joining one group at once all get an answer without error, the
/// coordinator stays consistent (8 partitions end with exactly 8 members, one each, never two
/// owners in a round of answers), and another group on the node is unaffected. Method: 200
/// raw joins in flight at once on one connection, then rounds of heartbeats in which every
/// member reports what it was last told to own; an SDK member of another group before, and a
/// new SDK member of a third group after.
#[test]
fn two_hundred_members_join_at_once() {
    const MEMBERS: usize = 200;
    const PARTITIONS: u32 = 8;
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "wide", PARTITIONS).await;
        let log: Deliveries = Arc::default();
        let bystander = start_member(
            &client,
            group_config("bystanders", Duration::from_secs(3)),
            "wide",
            "bystander",
            &log,
        );
        let bystanders_before = wait_for_members(&admin, "bystanders", &[8]).await;
        let raw = Arc::new(RawClient::connect(&node).await);

        let started = now();
        let mut joins = tokio::task::JoinSet::new();
        for _ in 0..MEMBERS {
            let raw = raw.clone();
            joins.spawn(async move {
                try_request(
                    &raw,
                    &heartbeat_request("crowd", "", 0, "wide", &[], 10_000),
                )
                .await
            });
        }
        let mut members: Vec<(String, i32, Vec<TopicPartitions>)> = Vec::new();
        let mut failures = Vec::new();
        while let Some(joined) = joins.join_next().await {
            match joined.unwrap() {
                Ok(Response::ConsumerGroupHeartbeat(answer)) if answer.error == ErrorCode::None => {
                    members.push((answer.member_id, answer.member_epoch, answer.assignment));
                }
                other => failures.push(format!("{other:?}")),
            }
        }
        let joined_in = started.elapsed();
        assert!(
            failures.is_empty(),
            "{} joins failed: {failures:#?}",
            failures.len()
        );
        let ids: BTreeSet<&String> = members.iter().map(|member| &member.0).collect();
        assert_eq!(ids.len(), MEMBERS, "member ids are unique");

        let all: BTreeSet<u32> = (0..PARTITIONS).collect();
        let mut rounds = 0;
        let mut owners;
        loop {
            // Every member reports what it was last told (revocations done at once).
            owners = check_one_owner(&members);
            let settled = owners.len() == PARTITIONS as usize
                && owners.keys().copied().collect::<BTreeSet<u32>>() == all
                && members.iter().filter(|member| count(&member.2) > 0).count()
                    == PARTITIONS as usize
                && members.iter().all(|member| count(&member.2) <= 1);
            if settled {
                break;
            }
            rounds += 1;
            assert!(rounds <= 20, "not settled after 20 rounds: {owners:?}");
            let mut round = tokio::task::JoinSet::new();
            for (index, (id, epoch, owned)) in members.iter().enumerate() {
                let raw = raw.clone();
                let request = heartbeat_request("crowd", id, *epoch, "wide", owned, 10_000);
                round.spawn(async move { (index, try_request(&raw, &request).await) });
            }
            while let Some(answered) = round.join_next().await {
                let (index, answer) = answered.unwrap();
                match answer {
                    Ok(Response::ConsumerGroupHeartbeat(answer))
                        if answer.error == ErrorCode::None =>
                    {
                        members[index] = (answer.member_id, answer.member_epoch, answer.assignment);
                    }
                    other => panic!("round {rounds}: member {index}: {other:?}"),
                }
            }
        }
        let settled_in = started.elapsed();
        println!(
            "{MEMBERS} joins answered in {joined_in:?}; settled after {rounds} heartbeat rounds, \
             {settled_in:?}"
        );
        let crowd = admin.describe_group("crowd").await.unwrap();
        assert_eq!(crowd.members.len(), MEMBERS);
        let mut sizes: Vec<usize> = crowd
            .members
            .iter()
            .map(|member| member.assignment.len())
            .collect();
        sizes.sort_unstable();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            PARTITIONS as usize,
            "{sizes:?}"
        );
        assert_eq!(
            sizes.iter().filter(|size| **size == 1).count(),
            PARTITIONS as usize
        );

        // The group that was there before did not move, and still reads every partition.
        let bystanders = wait_for_members(&admin, "bystanders", &[8]).await;
        assert_eq!(bystanders.group_epoch, bystanders_before.group_epoch);
        assert_eq!(bystanders.members, bystanders_before.members);
        produce_numbered(&client, "wide", 0, 80).await;
        wait_for_deliveries(&log, 80).await;
        assert_eq!(exactly_once(&log).len(), 80);
        // A new group joins and gets every partition.
        let late_log: Deliveries = Arc::default();
        let late = start_member(
            &client,
            group_config("latecomers", Duration::from_secs(3)),
            "wide",
            "late",
            &late_log,
        );
        wait_for_members(&admin, "latecomers", &[8]).await;
        wait_for_deliveries(&late_log, 80).await;
        late.close().await;
        bystander.close().await;
    });
}

/// Panics if a partition is in two members' assignments; returns each partition's owner.
fn check_one_owner(members: &[(String, i32, Vec<TopicPartitions>)]) -> BTreeMap<u32, String> {
    let mut owners = BTreeMap::new();
    for (id, epoch, assignment) in members {
        for topic in assignment {
            for partition in &topic.partitions {
                if let Some(other) = owners.insert(*partition, id.clone()) {
                    panic!("wide/{partition} assigned to {other} and {id} (epoch {epoch})");
                }
            }
        }
    }
    owners
}

// Goal: one poll call that waits longer than max_poll_interval (an idle topic) is still
// polling: the member stays in the group with the same id and its partitions.
#[test]
fn a_long_poll_is_not_a_missed_poll() {
    let node = start_node();
    runtime().block_on(async {
        let client = connect(&node).await;
        let admin = Admin::new(&client);
        create_topic(&client, "quiet", 2).await;
        let mut config = group_config("patient", Duration::from_secs(3));
        config.max_poll_interval = Duration::from_millis(1000);
        let mut consumer = Consumer::new(&client, config);
        consumer.subscribe(vec!["quiet".into()]).unwrap();
        let deadline = now() + SETTLE_TIMEOUT;
        while consumer.assignment().len() < 2 && now() < deadline {
            consumer.poll(Duration::from_millis(200), 10).await.unwrap();
        }
        assert_eq!(consumer.assignment().len(), 2);
        let member = consumer.member_id();
        // Three times max_poll_interval inside one call, with nothing to read.
        let records = consumer
            .poll(Duration::from_millis(3000), 10)
            .await
            .unwrap();
        assert!(records.is_empty());
        assert_eq!(consumer.member_id(), member, "the member never left");
        let description = wait_for_members(&admin, "patient", &[2]).await;
        assert_eq!(description.members[0].member_id, member);
    });
}
