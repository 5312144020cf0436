//! Issue 13, the SDK's admin and group requests ride through a node's death, with real
//! processes: a 3-node cluster from `cluster-init` behind UDP proxies
//! (`ledge_e2e::cluster_harness`), so a killed or stopped node is a black hole, as on a
//! network: nothing ends the client's QUIC connection to it.
//!
//! The clients here wait [`SDK_IDLE_TIMEOUT`] (60 s) before QUIC gives a silent connection
//! up, and as long for a handshake or an answer, while each call and each resumption must
//! come within [`RESUME_DEADLINE`] (30 s): a request that waited for any of those timeouts
//! could not pass. The point is made without timing anything that must be fast.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledge_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_e2e::cluster_harness::{
    CONDITION_TIMEOUT, ClusterOptions, NodeId, TestCluster, poll_until,
};
use ledge_protocol::wire::ErrorCode;

/// The SDK's QUIC idle timeout, connect timeout and request timeout in these tests: far
/// above [`RESUME_DEADLINE`].
const SDK_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Each admin call, and a consumer's first commit after the coordinator was lost, must come
/// within this.
const RESUME_DEADLINE: Duration = Duration::from_secs(30);

const TOPIC: &str = "events";
const GROUP: &str = "failover-group";
const PARTITIONS: u32 = 3;
const RECORDS: u32 = 3000;

#[expect(
    clippy::disallowed_methods,
    reason = "test deadlines and a reported stall, not logic under test"
)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

/// A client of every node with the idle, connect and request timeouts at
/// [`SDK_IDLE_TIMEOUT`].
async fn patient_client(cluster: &TestCluster) -> Client {
    let mut config = ClientConfig::new(cluster.bootstrap(), Trust::CaFile(cluster.ca_file.clone()));
    config.idle_timeout = SDK_IDLE_TIMEOUT;
    config.connect_timeout = SDK_IDLE_TIMEOUT;
    config.request_timeout = SDK_IDLE_TIMEOUT;
    Client::connect(config).await.expect("connect")
}

/// The id of the node listening at `address` (its proxy's).
fn node_at(cluster: &TestCluster, address: std::net::SocketAddr) -> NodeId {
    cluster
        .ids()
        .into_iter()
        .find(|id| cluster.node(*id).address() == address)
        .expect("the default node is a cluster node")
}

/// `call`, which must answer within [`RESUME_DEADLINE`].
async fn within_deadline<T>(what: &str, call: impl Future<Output = T>) -> T {
    tokio::time::timeout(RESUME_DEADLINE, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {RESUME_DEADLINE:?}"))
}

// Goal (issue 13, SDK item 4a): kill -9 of the node an admin client sends to by default,
// while the client creates and lists topics, costs no call: every create and list answers
// within 30 s although the client would wait 60 s for a silent connection, and every topic
// created is listed. A create whose answer was lost in the kill may be resent and answer
// TopicAlreadyExists for the topic it created itself (the Java AdminClient's behaviour);
// the listing proves the topic exists. After the calls, the CLI with the dead node first in
// its bootstrap list lists the topics too.
// Method: admin calls in a loop on the cluster's runtime, kill -9 from the test thread after
// the third round, six more rounds after it.
#[test]
fn admin_calls_ride_through_kill9_of_the_default_node() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    cluster.wait_for_all_alive();
    let client = cluster.runtime().block_on(patient_client(&cluster));
    let killed = Arc::new(Mutex::new(false));
    let rounds_done = Arc::new(Mutex::new(0u32));
    let calls = {
        let client = client.clone();
        let killed = Arc::clone(&killed);
        let rounds_done = Arc::clone(&rounds_done);
        cluster.runtime().spawn(async move {
            let admin = Admin::new(&client);
            let mut created = BTreeSet::new();
            let mut after_kill = 0;
            let mut round = 0u32;
            let mut slowest_after_kill = Duration::ZERO;
            while after_kill < 6 {
                let started = now();
                let name = format!("admin-{round}");
                let topic = NewTopic::new(&name, 2).replication_factor(2);
                let answer =
                    within_deadline("create", admin.create_topics(vec![topic], false)).await;
                match answer {
                    Ok(()) => {}
                    Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {
                        // Resent after its answer was lost: it created the topic itself.
                    }
                    Err(error) => panic!("create {name}: {error}"),
                }
                created.insert(name);
                let listed: BTreeSet<String> = within_deadline("list", admin.list_topics())
                    .await
                    .expect("list topics")
                    .into_iter()
                    .map(|topic| topic.name)
                    .collect();
                assert!(
                    created.is_subset(&listed),
                    "created {created:?}, listed {listed:?}"
                );
                if *killed.lock().unwrap() {
                    after_kill += 1;
                    slowest_after_kill = slowest_after_kill.max(now().duration_since(started));
                }
                round += 1;
                *rounds_done.lock().unwrap() = round;
            }
            eprintln!("slowest create + list round after the kill: {slowest_after_kill:?}");
            created
        })
    };
    poll_until(
        "three rounds of admin calls",
        CONDITION_TIMEOUT,
        || (*rounds_done.lock().unwrap() >= 3).then_some(()),
        || format!("{} rounds", *rounds_done.lock().unwrap()),
    );
    // The default node moves to whichever node answers a metadata refresh first: read it
    // just before the kill.
    let default_node = node_at(&cluster, client.server_addr());
    cluster.kill9(default_node);
    *killed.lock().unwrap() = true;
    let created = cluster
        .runtime()
        .block_on(calls)
        .expect("the admin calls went on after the kill");
    assert_ne!(
        node_at(&cluster, client.server_addr()),
        default_node,
        "the client moved its default node on"
    );
    cluster.runtime().block_on(client.close());

    // The CLI, with the dead node first in its list, lists every topic.
    let mut bootstrap = vec![default_node];
    bootstrap.extend(cluster.ids().into_iter().filter(|id| *id != default_node));
    let listed = cluster
        .cli_on(&bootstrap, &["topic", "list", "--format", "json"])
        .expect("ledge topic list with a dead first server");
    for name in &created {
        assert!(listed.contains(name.as_str()), "{name} not in {listed}");
    }
}

/// How to take the coordinator away.
#[derive(Clone, Copy, Debug)]
enum Loss {
    Kill9,
    /// SIGSTOP, and SIGCONT once the consumer has read everything.
    Stop,
}

// Goal (issue 13, SDK item 4b): a group consumer that commits after every poll rides through
// the loss of its group's coordinator: within 30 s of the loss (the client would wait 60 s
// for a silent connection) a commit succeeds again and records flow; in the end every record
// was consumed at least once, and the group's committed offsets, read back after every
// commit, never went backwards.
// Method: 3000 records produced first into an RF=3 topic; one consumer reads 50 at a time,
// commits and reads the committed offsets back; the coordinator (the leader of the group's
// `__consumer_offsets` partition, as `topic describe` says) is lost once a third is read.
fn consumer_rides_through_the_loss_of_its_coordinator(loss: Loss) {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    cluster.wait_for_all_alive();
    let client = cluster.runtime().block_on(patient_client(&cluster));
    cluster.runtime().block_on(create_topic(&client));
    // Produced only once every replica is in sync: the setup is not what is under test.
    for partition in 0..PARTITIONS {
        cluster.wait_for_partition("a leader and a full ISR", TOPIC, partition, |state| {
            state.leader.is_some() && state.isr.len() == 3
        });
    }
    let expected = cluster.runtime().block_on(produce(&client));

    let progress = Arc::new(Mutex::new(Progress::default()));
    let consuming = {
        let client = client.clone();
        let progress = Arc::clone(&progress);
        let expected = expected.clone();
        cluster
            .runtime()
            .spawn(async move { consume(&client, &expected, &progress).await })
    };
    poll_until(
        "a third of the records consumed and committed",
        CONDITION_TIMEOUT,
        || {
            let progress = progress.lock().unwrap();
            (progress.consumed.len() >= expected.len() / 3 && progress.commits > 0).then_some(())
        },
        || format!("{:?}", progress.lock().unwrap().consumed.len()),
    );
    let coordinator = poll_until(
        "the group's coordinator",
        CONDITION_TIMEOUT,
        || {
            cluster
                .partition_state("__consumer_offsets", offsets_partition(GROUP))
                .and_then(|state| state.leader)
        },
        || cluster.logs(),
    );
    let lost_at = now();
    let commits_before = progress.lock().unwrap().commits;
    match loss {
        Loss::Kill9 => cluster.kill9(coordinator),
        Loss::Stop => cluster.pause(coordinator),
    }
    // Resumed: a commit succeeded after the loss, and records flowed after it.
    let resumed = poll_until(
        "the consumer to commit again after the coordinator was lost",
        RESUME_DEADLINE,
        || {
            let progress = progress.lock().unwrap();
            progress
                .first_commit_after(lost_at, commits_before)
                .map(|at| at.duration_since(lost_at))
        },
        || format!("{:?}", progress.lock().unwrap()),
    );
    eprintln!("{loss:?} of coordinator node {coordinator}: first commit {resumed:?} after");
    let outcome = cluster.runtime().block_on(async {
        tokio::time::timeout(CONDITION_TIMEOUT, consuming)
            .await
            .expect("the consumer read every record")
    });
    outcome.expect("the consumer task");
    if let Loss::Stop = loss {
        cluster.resume(coordinator);
        cluster.wait_for_all_alive();
    }
    let progress = progress.lock().unwrap();
    let missing: Vec<&(u32, i64)> = expected.difference(&progress.consumed).collect();
    assert!(missing.is_empty(), "never consumed: {missing:?}");
    cluster.runtime().block_on(client.close());
}

#[test]
fn a_consumer_rides_through_kill9_of_its_coordinator() {
    consumer_rides_through_the_loss_of_its_coordinator(Loss::Kill9);
}

#[test]
fn a_consumer_rides_through_sigstop_of_its_coordinator() {
    consumer_rides_through_the_loss_of_its_coordinator(Loss::Stop);
}

/// What the consumer task did so far.
#[derive(Debug, Default)]
struct Progress {
    /// (partition, offset) of every record returned.
    consumed: BTreeSet<(u32, i64)>,
    /// Commits that succeeded, and when each did.
    commits: usize,
    commit_times: Vec<std::time::Instant>,
    /// Commits refused (a member the new coordinator does not know, say): the consumer
    /// rejoins and commits again.
    commit_failures: Vec<String>,
}

impl Progress {
    /// When the first commit after `lost_at` succeeded (among those after the first
    /// `commits_before`), if one did.
    fn first_commit_after(
        &self,
        lost_at: std::time::Instant,
        commits_before: usize,
    ) -> Option<std::time::Instant> {
        self.commit_times
            .iter()
            .skip(commits_before)
            .find(|at| **at > lost_at)
            .copied()
    }
}

/// Creates the RF=3 topic.
async fn create_topic(client: &Client) {
    Admin::new(client)
        .create_topics(
            vec![NewTopic::new(TOPIC, PARTITIONS).replication_factor(3)],
            false,
        )
        .await
        .expect("create the topic");
}

/// Produces [`RECORDS`] records over the topic's partitions; returns their (partition,
/// offset).
async fn produce(client: &Client) -> BTreeSet<(u32, i64)> {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for index in 0..RECORDS {
        let record =
            ProducerRecord::new(TOPIC, format!("value-{index}")).partition(index % PARTITIONS);
        deliveries.push(producer.send(record).await.expect("send"));
    }
    let mut written = BTreeSet::new();
    for delivery in deliveries {
        let metadata = delivery
            .await
            .unwrap_or_else(|error| panic!("a setup record not acknowledged: {error}"));
        written.insert((metadata.partition, metadata.offset.expect("an offset")));
    }
    producer.close().await;
    written
}

/// Reads until every record of `expected` was returned once at least, committing after
/// every poll and checking the committed offsets never go backwards.
async fn consume(client: &Client, expected: &BTreeSet<(u32, i64)>, progress: &Mutex<Progress>) {
    let mut config = ConsumerConfig::default();
    config.group_id = Some(GROUP.to_string());
    config.auto_offset_reset = OffsetReset::Earliest;
    config.enable_auto_commit = false;
    let mut consumer = Consumer::new(client, config);
    consumer
        .subscribe(vec![TOPIC.to_string()])
        .expect("subscribe");
    let partitions: Vec<TopicPartition> = (0..PARTITIONS)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect();
    let mut committed_seen: BTreeMap<u32, i64> = BTreeMap::new();
    loop {
        let records = consumer
            .poll(Duration::from_millis(200), 50)
            .await
            .expect("poll");
        {
            let mut progress = progress.lock().unwrap();
            progress.consumed.extend(
                records
                    .iter()
                    .map(|record| (record.partition, record.offset)),
            );
            if expected.is_subset(&progress.consumed) {
                break;
            }
        }
        if records.is_empty() {
            continue;
        }
        match consumer.commit().await {
            Ok(()) => {
                let mut progress = progress.lock().unwrap();
                progress.commits += 1;
                progress.commit_times.push(now());
            }
            Err(error) => progress
                .lock()
                .unwrap()
                .commit_failures
                .push(error.to_string()),
        }
        // The group's committed offsets never go backwards.
        if let Ok(committed) = consumer.committed(&partitions).await {
            for (partition, offset) in committed {
                let Some(offset) = offset else { continue };
                let previous = committed_seen.entry(partition.partition).or_insert(0);
                assert!(
                    offset.offset >= *previous,
                    "committed offset of {partition} went back from {previous} to {}",
                    offset.offset
                );
                *previous = offset.offset;
            }
        }
        // Slow enough that the loss lands in the middle of the reading.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.close().await.ok();
}

/// The node's default partition count of `__consumer_offsets` in a cluster.
const OFFSETS_PARTITIONS: u32 = 8;

/// The node's group -> `__consumer_offsets` partition mapping (FNV-1a 32, docs/PROTOCOL.md),
/// computed independently here (as `cluster_groups.rs` does).
fn offsets_partition(group_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group_id.as_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % OFFSETS_PARTITIONS
}
