//! `group-bench`: consumer-group measurements (issue 4) against a running node: how long a
//! rebalance takes when a member joins and when one crashes (10 s session timeout), and the
//! throughput of a 4-member group over 4 partitions against one member in the same run.
//! Results go to stdout and, when kept, to benches/RESULTS.md. Nothing is asserted against a
//! time limit; a run that never settles stops after a bounded wait.
//!
//! It used to be a test in `tests/e2e` that did nothing unless `LEDGE_GROUP_BENCH=1`, so it
//! passed without running in every `cargo test` (issue 12, item 7).
//!
//! ```text
//! cargo build --release -p ledge-node -p ledge-benches
//! target/release/ledge-node --data-dir /tmp/gb-data --listen 127.0.0.1:19778 &
//! target/release/group-bench --server 127.0.0.1:19778 --ca /tmp/gb-data/tls/ca.pem
//! ```
//!
//! Topic and group names carry this run's process id, so runs can repeat against one node.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ledge_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, Trust,
};

/// Rounds of each rebalance measurement.
const JOIN_ROUNDS: usize = 5;
const CRASH_ROUNDS: usize = 3;
/// The crash measurement's session timeout (what issue 4 asks for).
const CRASH_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Records for the throughput measurement, and their value size.
const THROUGHPUT_RECORDS: u64 = 200_000;
const VALUE_BYTES: usize = 100;
/// Bound on every wait, so a broken run ends.
const WAIT_MAX: Duration = Duration::from_secs(60);

#[expect(clippy::disallowed_methods, reason = "a benchmark measures time")]
fn now() -> Instant {
    Instant::now()
}

/// Where the node is.
#[derive(Parser)]
#[command(about = "Consumer-group rebalance times and throughput against a running node")]
struct Cli {
    /// `host:port` of the node.
    #[arg(long, default_value = "127.0.0.1:9092")]
    server: String,
    /// The node's CA certificate (the node writes it to `<data-dir>/tls/ca.pem`).
    #[arg(long, default_value = "./ledge-data/tls/ca.pem")]
    ca: std::path::PathBuf,
}

/// A node to connect to, as often as the measurements need a new client.
struct Node {
    server: String,
    ca: std::path::PathBuf,
}

async fn connect(node: &Node) -> Client {
    let mut config = ClientConfig::new(node.server.clone(), Trust::CaFile(node.ca.clone()));
    config.client_id = "group-bench".into();
    Client::connect(config).await.expect("connect")
}

fn member_config(group: &str, session_timeout: Duration) -> ConsumerConfig {
    let mut config = ConsumerConfig::default();
    config.group_id = Some(group.into());
    config.auto_offset_reset = OffsetReset::Earliest;
    config.session_timeout = session_timeout;
    config
}

/// Polls `consumer` until it owns `count` partitions; returns when that happened.
async fn poll_until_owning(consumer: &mut Consumer, count: usize) -> Instant {
    let deadline = now() + WAIT_MAX;
    while consumer.assignment().len() != count {
        assert!(now() < deadline, "never owned {count} partitions");
        consumer
            .poll(Duration::from_millis(10), 500)
            .await
            .expect("poll");
    }
    now()
}

fn summary(name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let millis: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    println!(
        "{name}: min {} ms, median {} ms, max {} ms over {} rounds ({millis:?})",
        millis.first().copied().unwrap_or(0),
        millis.get(millis.len() / 2).copied().unwrap_or(0),
        millis.last().copied().unwrap_or(0),
        millis.len()
    );
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.ca.exists() {
        anyhow::bail!(
            "CA file {} not found: pass the node's <data-dir>/tls/ca.pem with --ca",
            cli.ca.display()
        );
    }
    let node = Node {
        server: cli.server,
        ca: cli.ca,
    };
    let run = std::process::id();
    let bench_topic = format!("group-bench-{run}");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = connect(&node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new(bench_topic.clone(), 4)], false)
            .await
            .expect("create topic");

        // Join: a second member joins a member owning all 4 partitions; measured from its
        // subscribe until it owns its 2 (the first gave them up and the node handed them on).
        let mut samples = Vec::new();
        let mut first = Consumer::new(&client, member_config(&format!("join-{run}"), Duration::from_secs(10)));
        first.subscribe(vec![bench_topic.clone()]).expect("subscribe");
        poll_until_owning(&mut first, 4).await;
        for _ in 0..JOIN_ROUNDS {
            let joiner_client = connect(&node).await;
            let mut joiner =
                Consumer::new(&joiner_client, member_config(&format!("join-{run}"), Duration::from_secs(10)));
            let started = now();
            joiner.subscribe(vec![bench_topic.clone()]).expect("subscribe");
            // The first member must keep polling: revocation happens in its poll.
            let settled = loop {
                tokio::select! {
                    result = first.poll(Duration::from_millis(10), 500) => { result.expect("poll"); }
                    result = joiner.poll(Duration::from_millis(10), 500) => { result.expect("poll"); }
                }
                if joiner.assignment().len() == 2 && first.assignment().len() == 2 {
                    break now();
                }
                assert!(started.elapsed() < WAIT_MAX, "join never settled");
            };
            samples.push(settled - started);
            joiner.close().await.expect("close");
            joiner_client.close().await;
            poll_until_owning(&mut first, 4).await;
        }
        summary("rebalance on join (2nd member, 4 partitions)", &mut samples);
        first.close().await.expect("close");

        // Crash: a member stops heartbeating without leaving (its heartbeat task is gone and
        // its connection closed, as after kill -9); measured from the crash until the survivor
        // owns all 4 partitions.
        let mut samples = Vec::new();
        let mut survivor = Consumer::new(&client, member_config(&format!("crash-{run}"), CRASH_SESSION_TIMEOUT));
        survivor.subscribe(vec![bench_topic.clone()]).expect("subscribe");
        poll_until_owning(&mut survivor, 4).await;
        for _ in 0..CRASH_ROUNDS {
            let victim_client = connect(&node).await;
            let mut victim =
                Consumer::new(&victim_client, member_config(&format!("crash-{run}"), CRASH_SESSION_TIMEOUT));
            victim.subscribe(vec![bench_topic.clone()]).expect("subscribe");
            let started = now();
            while victim.assignment().len() != 2 || survivor.assignment().len() != 2 {
                assert!(started.elapsed() < WAIT_MAX, "join never settled");
                tokio::select! {
                    result = survivor.poll(Duration::from_millis(10), 500) => { result.expect("poll"); }
                    result = victim.poll(Duration::from_millis(10), 500) => { result.expect("poll"); }
                }
            }
            drop(victim);
            victim_client.close().await;
            let crashed = now();
            let recovered = poll_until_owning(&mut survivor, 4).await;
            samples.push(recovered - crashed);
        }
        summary(
            "rebalance on crash (10 s session timeout, 2 -> 1 member)",
            &mut samples,
        );
        survivor.close().await.expect("close");


        // Throughput: a group of 1, then of 4 members (each its own connection) settles on an
        // empty 4-partition topic; then THROUGHPUT_RECORDS records are produced, and the time
        // from the first send until the group has read them all is measured. The producer
        // alone is timed too, since it bounds both.
        for members in [1usize, 4] {
            let topic = format!("throughput-{members}-{run}");
            Admin::new(&client)
                .create_topics(vec![NewTopic::new(topic.clone(), 4)], false)
                .await
                .expect("create topic");
            let read = Arc::new(AtomicU64::new(0));
            let owned = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::new();
            for _ in 0..members {
                let member_client = connect(&node).await;
                let mut consumer =
                    Consumer::new(&member_client, member_config(&topic, Duration::from_secs(10)));
                consumer.subscribe(vec![topic.clone()]).expect("subscribe");
                let read = read.clone();
                let owned = owned.clone();
                tasks.push(tokio::spawn(async move {
                    let started = now();
                    let mut counted = 0;
                    while read.load(Ordering::Relaxed) < THROUGHPUT_RECORDS
                        && started.elapsed() < WAIT_MAX
                    {
                        let records = consumer
                            .poll(Duration::from_millis(50), 5000)
                            .await
                            .expect("poll");
                        read.fetch_add(records.len() as u64, Ordering::Relaxed);
                        let now_owned = consumer.assignment().len() as u64;
                        if now_owned != counted {
                            owned.fetch_add(now_owned, Ordering::Relaxed);
                            owned.fetch_sub(counted, Ordering::Relaxed);
                            counted = now_owned;
                        }
                    }
                    let finished = now();
                    consumer.close().await.expect("close");
                    member_client.close().await;
                    finished
                }));
            }
            let deadline = now() + WAIT_MAX;
            // Settled: the members own the 4 partitions between them, one each with 4 members.
            while owned.load(Ordering::Relaxed) != 4 {
                assert!(now() < deadline, "group never settled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let started = now();
            let produced_in = produce_records(&client, &topic).await;
            let mut finished = started;
            for task in tasks {
                finished = finished.max(task.await.expect("member"));
            }
            let seconds = (finished - started).as_secs_f64();
            let total = read.load(Ordering::Relaxed);
            println!(
                "throughput, {members} member(s) over 4 partitions: {total} records \
                 ({VALUE_BYTES} B values) produced and read in {seconds:.2} s = {:.0} records/s, \
                 {:.1} MB/s (producing alone took {:.2} s)",
                total as f64 / seconds,
                total as f64 * VALUE_BYTES as f64 / seconds / 1e6,
                produced_in.as_secs_f64()
            );
        }
    });
    Ok(())
}

/// Produces THROUGHPUT_RECORDS keyed records to `topic`; returns how long until all were
/// acknowledged.
async fn produce_records(client: &Client, topic: &str) -> Duration {
    let started = now();
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let value = "x".repeat(VALUE_BYTES);
    let mut deliveries = Vec::new();
    for index in 0..THROUGHPUT_RECORDS {
        let record = ProducerRecord::new(topic, value.clone()).key(format!("k{index}"));
        deliveries.push(producer.send(record).await.expect("send"));
        if deliveries.len() >= 10_000 {
            for delivery in deliveries.drain(..) {
                delivery.await.expect("delivered");
            }
        }
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
    started.elapsed()
}
