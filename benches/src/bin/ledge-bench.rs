//! `ledge-bench`: a load generator over the Ledge SDK against a running node.
//!
//! Workloads (issue 7, item 1):
//!
//! - `produce`: `--records` records of `--record-bytes` bytes each (payloads from a fixed-seed
//!   generator, so every run sends the same bytes) to `--topic`, created with `--partitions`
//!   if it does not exist, from `--producers` producers (one QUIC connection each). Reports
//!   records/s, MB/s and produce latency at p50/p99/p99.9/max from an HdrHistogram. Without
//!   `--rate` the producers send as fast as the SDK takes records (closed loop) and latency
//!   runs from `send` to the acknowledgement. With `--rate` the run is open-loop: record n is
//!   due at start + n/rate whatever happened before it, and its latency runs from that due
//!   time, so a stall anywhere (SDK buffer full, node slow) shows in the figures instead of
//!   silently slowing the sender down. `--duration` bounds a run by time instead of count.
//! - `consume`: reads `--topic` from the beginning with `--consumers` consumers (manual
//!   assignment, the partitions dealt out round-robin, one QUIC connection each) up to the end
//!   offsets captured at the start. Reports records/s and MB/s.
//! - `e2e`: one producer at a fixed `--rate` (open-loop as above) and a concurrent consumer
//!   (its own connection) reading the same topic from its end. Each record's value starts
//!   with this run's id and the record's due time, and the consumer takes the latency from
//!   that due time to the moment `poll` hands the record over: produce-to-consume latency at
//!   p50/p99/p99.9/max over `--duration`, after a `--warmup` that is sent but not counted.
//!   The acknowledgement latency (due → ack) and the sender's own lag (due → `send`
//!   returned) are reported beside it, so a late sender is told apart from a slow node.
//! - `group`: `--consumers` members of one consumer group (`group_id` + `subscribe`) read a
//!   pre-filled topic. The members join with `auto_offset_reset = latest`, so nothing is read
//!   while the group settles; once every partition has exactly one owner, each member seeks
//!   its partitions to their start and the clock starts for all at once. Reports total
//!   records/s and MB/s up to the end offsets captured at the start.
//! - `broker-produce`: no node and no network: a broker opened in this process on
//!   `--data-dir` (the real disk) answers produce requests that each carry
//!   `--batches-per-request` batches for one partition, from `--producers` closed-loop
//!   producers (one partition each). The SDK sends one batch per partition entry, so this is
//!   the workload that shows how the produce path treats several batches of one partition
//!   in one request (issue 12 item 5). Reports records/s, MB/s and request latency.
//! - `failover`: one producer at a fixed `--rate` (open-loop, acks=all by default) to
//!   partition 0 of a replicated topic; after `--kill-after` the partition's leader (from
//!   Metadata) is sent SIGKILL, its pid taken from `--node-pids ID=PID,...`, and producing
//!   goes on for `--run-after-kill`. Reports the failover time (the kill to the first
//!   acknowledgement after it, which only a new leader can give), the gap between the last
//!   acknowledgement before the kill and that first one after it, the leaders and epochs
//!   before and after, whether the killed node was also the active controller, and the
//!   latency (due → ack) of the records acknowledged before the kill and of all of them.
//! - `transform`: deploys a transform (`--kind`, `--module`, `--param`) over `--input`, a
//!   topic already written, and asks the node every `--poll-ms` until the transform has read
//!   the input up to the end offsets captured at the start (`--until lag`: position at the
//!   end, outputs written) and, for a counting aggregate with `--until table-sum`, until its
//!   table's counts add up to the input's record count (every record folded and committed).
//!   Reports input records/s from the deploy request and from the first progress seen
//!   (`records_per_s_after_first`, which leaves the module's compilation and the task's start
//!   out), and the state bytes the node accounts. `benches/scripts/streams_compare.py` runs it
//!   for the aggregate and the filter beside Kafka Streams.
//! - `restore`: after a node start, asks every `--poll-ms` until stateful transform `--name`
//!   has every state partition restored, then looks up `--sample` keys (`0`, `keys/n`, ...) in
//!   its table, each expected to hold `--expect-value`. Reports the restore time from
//!   `--started-at-ms` (when the node was started), `--keys` over it as keys/s, the changelog
//!   records the restore read and the state bytes.
//!
//! `--server` takes one node or a cluster's bootstrap list (`a:9101,b:9102,c:9103`); a topic
//! a run creates gets `--replication-factor` and `--min-insync-replicas` when given.
//! `benches/scripts/replication.sh` runs the single node against a 3-node cluster.
//!
//! With `--node-pid` the node's CPU time (utime + stime from `/proc/<pid>/stat`, 10 ms
//! ticks) is read before and after the measured part and reported in total and per record;
//! this program's own CPU time is reported the same way, so a run limited by the client shows
//! as one.
//!
//! Every parameter is a flag with a default. A progress bar runs on stderr (hidden with
//! `--quiet` or when stderr is not a terminal); the summary is an aligned table on stdout, or
//! with `--json` one JSON object per result, one per line. MB is 10^6 bytes of record values
//! and keys (framing, headers and compression are not counted). Nothing here is timed against
//! a limit: the figures are reported, never asserted.
//!
//! ```text
//! # a node to measure (release build for figures worth keeping)
//! cargo build --release -p ledge-node -p ledge-benches
//! target/release/ledge-node --data-dir /tmp/lb-data --listen 127.0.0.1:19777 &
//! B="target/release/ledge-bench --server 127.0.0.1:19777 --ca /tmp/lb-data/tls/ca.pem"
//!
//! # one million 1 KiB records, acks=all, one partition, one producer
//! $B produce --records 1000000 --record-bytes 1024
//!
//! # acks=1, four partitions, two producers, 256 KiB batches, lz4, JSON output
//! $B --json produce --topic bench-4 --partitions 4 --producers 2 --acks 1 \
//!     --batch-bytes 262144 --linger-ms 2 --compression lz4
//!
//! # 20,000 records/s for 30 s, open-loop, with the node's CPU per record
//! $B --node-pid $(pgrep -n ledge-node) produce --rate 20000 --duration 30
//!
//! # read it all back with two consumers, then with a group of four
//! $B consume --topic bench-4 --consumers 2
//! $B group --topic bench-4 --consumers 4
//!
//! # produce-to-consume latency at 5,000 records/s of 1 KiB, acks=1
//! $B e2e --rate 5000 --duration 30 --acks 1
//!
//! # a 3-node cluster (ledge-node cluster-init --nodes 3 --dir C, one node per config):
//! # acks=all to RF=3, min.insync.replicas=2, then kill the leader at 1,000 records/s
//! C="target/release/ledge-bench --server 127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103 \
//!     --ca C/tls/ca.pem --replication-factor 3 --min-insync-replicas 2"
//! $C produce --topic rf3 --records 200000
//! $C failover --node-pids 1=$PID1,2=$PID2,3=$PID3 --rate 1000 --kill-after 5
//!
//! # 8 batches of 16 records of 1 KiB per request, acks=all, in-process (no node needed)
//! target/release/ledge-bench broker-produce --batches-per-request 8 --records-per-batch 16
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::{CellAlignment, Table, presets};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledge_client::{
    ASSIGNOR_DEFAULT, Acks, Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig,
    DeliveryFuture, ErrorCode, NewTopic, OffsetReset, PartitionDescription, Producer,
    ProducerConfig, ProducerRecord, TopicPartition, Trust,
};
use ledge_node::clock::{Clock, SystemClock};
use serde_json::json;
use tokio::sync::{Barrier, mpsc, watch};

/// Highest latency the histograms hold (longer ones are recorded as this): 10 minutes, in µs.
const LATENCY_MAX_US: u64 = 600_000_000;
/// Delivery futures queued between a producer's send loop and its collector; a full queue
/// holds the send loop back.
const DELIVERY_QUEUE: usize = 65_536;
/// How often the progress bar is brought up to date.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Between setting up an open-loop run and its first due time, so the first records are not
/// due before the send loop's thread is running.
const PACED_START_DELAY: Duration = Duration::from_millis(100);
/// Bytes at the front of an `e2e` record's value: the run id and the due time.
const STAMP_BYTES: usize = 16;
/// How often the `group` workload looks at the members' assignments while the group settles.
const SETTLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Consecutive looks at a complete assignment before the group counts as settled.
const SETTLE_CHECKS: u32 = 3;
/// `/proc/<pid>/stat` counts CPU time in clock ticks of `USER_HZ`, which the kernel fixes at
/// 100 for user space on every architecture Ledge runs on (`sysconf(_SC_CLK_TCK)`).
const USER_HZ: u64 = 100;

/// Load generator for a Ledge node.
#[derive(Debug, Parser)]
#[command(name = "ledge-bench", version, about)]
struct Cli {
    /// `host:port` of the node, or a comma-separated bootstrap list of a cluster's nodes
    /// (`a:9101,b:9102,c:9103`); the SDK sends each partition's requests to its leader.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    server: String,
    /// The node's CA certificate (the node writes it to `<data-dir>/tls/ca.pem`).
    #[arg(long, global = true, default_value = "./ledge-data/tls/ca.pem")]
    ca: PathBuf,
    /// Accept any certificate (still encrypted, not authenticated). Throwaway nodes only.
    #[arg(long, global = true)]
    insecure: bool,
    /// One JSON object per result, one per line, instead of the table.
    #[arg(long, global = true)]
    json: bool,
    /// No progress bar.
    #[arg(long, global = true)]
    quiet: bool,
    /// The node's process id (same machine): report its CPU time over the measured part, in
    /// total and per record.
    #[arg(long, global = true)]
    node_pid: Option<u32>,
    /// Replication factor of a topic this run creates (a cluster's `default_replication_factor`
    /// without it; a single node takes only 1).
    #[arg(long, global = true)]
    replication_factor: Option<u16>,
    /// `min.insync.replicas` of a topic this run creates (the node's default without it).
    #[arg(long, global = true)]
    min_insync_replicas: Option<u16>,
    /// The client's QUIC idle timeout, in milliseconds: how long a connection to a node that
    /// went silent (kill -9) is waited on before it is made again (the SDK's default 10 s
    /// without it).
    #[arg(long, global = true)]
    idle_timeout_ms: Option<u64>,
    /// The client's longest wait for a QUIC handshake, in milliseconds (a dead bootstrap
    /// server costs this much; the SDK's default 10 s without it).
    #[arg(long, global = true)]
    connect_timeout_ms: Option<u64>,
    /// A client certificate to present (mTLS), for nodes with `client_auth` set; with `--key`.
    #[arg(long, global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// The private key of `--cert` (mode 0600).
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// Authenticate as this user by SASL SCRAM-SHA-512, the password from the
    /// `LEDGE_PASSWORD` environment variable.
    #[arg(long, global = true)]
    user: Option<String>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Produce N records of S bytes (or at a rate, for a duration) and measure throughput and
    /// produce latency.
    Produce(ProduceArgs),
    /// Read a topic from the beginning up to its end offsets at the start.
    Consume(ConsumeArgs),
    /// Produce at a fixed rate with a concurrent consumer: produce-to-consume latency.
    E2e(E2eArgs),
    /// Members of one consumer group read a pre-filled topic: total records/s.
    Group(GroupArgs),
    /// Produce at a fixed rate to a replicated partition, kill -9 its leader's process and
    /// measure the time to the first acknowledgement from the new leader.
    Failover(FailoverArgs),
    /// In this process, no network: a broker on `--data-dir` answers produce requests that
    /// each carry `--batches-per-request` batches for one partition (what a client that packs
    /// several batches per partition entry sends; the SDK sends one batch per entry).
    BrokerProduce(BrokerProduceArgs),
    /// Deploy a transform over a topic already written and time it until it has processed
    /// every record there (issue 17: aggregate against filter, benches/scripts/streams_compare.py).
    Transform(TransformArgs),
    /// Wait for a stateful transform's state to be restored after a node start, then check
    /// a sample of its table (issue 17: restore rate).
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
struct TransformArgs {
    /// Transform name (also its module's name).
    #[arg(long)]
    name: String,
    /// The `.wasm` module.
    #[arg(long)]
    module: PathBuf,
    /// Module kind: filter, map, filter-map, flat-map or aggregate.
    #[arg(long, value_enum)]
    kind: TransformKindArg,
    /// Input topic, already written: its records between its start and end offsets at the
    /// start of the run are the records the transform is timed over.
    #[arg(long)]
    input: String,
    /// Output topic (the node's default `<input>.<name>` without it).
    #[arg(long)]
    output: Option<String>,
    /// A module parameter `NAME=VALUE` (repeatable).
    #[arg(long = "param")]
    params: Vec<String>,
    /// When the run is done: `lag` (the transform's input position is at the input's end:
    /// its outputs are written) or `table-sum` (also, for a counting aggregate, its table's
    /// values add up to the input's record count: every record is folded and committed).
    #[arg(long, value_enum, default_value_t = DoneWhen::Lag)]
    until: DoneWhen,
    /// How often the node is asked, in milliseconds.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Remove the transform once done.
    #[arg(long)]
    remove: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TransformKindArg {
    Filter,
    Map,
    FilterMap,
    FlatMap,
    Aggregate,
}

impl From<TransformKindArg> for ledge_client::PluginKind {
    fn from(kind: TransformKindArg) -> Self {
        match kind {
            TransformKindArg::Filter => Self::Filter,
            TransformKindArg::Map => Self::Map,
            TransformKindArg::FilterMap => Self::FilterMap,
            TransformKindArg::FlatMap => Self::FlatMap,
            TransformKindArg::Aggregate => Self::Aggregate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DoneWhen {
    Lag,
    TableSum,
}

#[derive(Debug, Args)]
struct RestoreArgs {
    /// The stateful transform.
    #[arg(long)]
    name: String,
    /// Keys its table should hold: the restore rate is this over the restore time.
    #[arg(long)]
    keys: u64,
    /// Wall-clock time (Unix ms) the node was started, which the restore time runs from
    /// (the time this program started without it).
    #[arg(long)]
    started_at_ms: Option<u64>,
    /// Keys to look up once restored: `0`, `keys/n`, `2·keys/n`, ... as decimal text.
    #[arg(long, default_value_t = 1000)]
    sample: u64,
    /// The value each sampled key must hold (the check is skipped without it).
    #[arg(long)]
    expect_value: Option<String>,
    /// How often the node is asked, in milliseconds.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
struct BrokerProduceArgs {
    /// Data directory of the in-process broker (emptied first; on the disk to measure).
    #[arg(long, default_value = "target/broker-produce-bench")]
    data_dir: PathBuf,
    /// Produce requests per producer.
    #[arg(long, default_value_t = 2_000)]
    requests: u64,
    /// Concurrent producers, each one request at a time (closed loop), each to its own
    /// partition.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Record batches per request, all for the producer's one partition.
    #[arg(long, default_value_t = 8)]
    batches_per_request: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 16)]
    records_per_batch: usize,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Acknowledgement level: all (synced to disk, the case that shares a sync) or 1.
    #[arg(long, default_value = "all")]
    acks: Acks,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Topic; created with `--partitions` if it does not exist.
    #[arg(long, default_value = "ledge-bench")]
    topic: String,
    /// Partitions of the topic when this run creates it (an existing topic keeps its own).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Records to send, over all producers (ignored with `--duration`).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Records per second over all producers, open-loop (latency from each record's due
    /// time). Without it, records go as fast as the producers take them.
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds to run instead of a record count (with `--rate`: rate × duration records).
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Bytes of each record's value (no key, no headers).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Producers, each with its own connection, sending an equal share of the records.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    #[command(flatten)]
    producer: ProducerArgs,
    #[command(flatten)]
    payload: PayloadArgs,
}

/// The producer's settings, shared by `produce` and `e2e`.
#[derive(Debug, Args)]
struct ProducerArgs {
    /// A partition's batch is ready to leave at this many bytes (the SDK's `batch_size`).
    #[arg(long, default_value_t = ledge_client::BATCH_SIZE_DEFAULT)]
    batch_bytes: usize,
    /// How far a ready batch grows until the SDK's sender takes it (the SDK's
    /// `batch_size_max`); at or below `--batch-bytes`, batches stay at `--batch-bytes`.
    #[arg(long, default_value_t = ledge_client::BATCH_SIZE_MAX_DEFAULT)]
    batch_max_bytes: usize,
    /// Longest a batch waits for more records, in milliseconds (`e2e` defaults to 0).
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Acknowledgement level: 0 (none; latency is then send → written to the connection,
    /// and records are counted as sent, not as stored), 1 (leader's log) or all (synced to
    /// disk).
    #[arg(long, default_value = "all")]
    acks: Acks,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Turn idempotence off with acks=all (it is always off with acks 0 and 1, which the SDK
    /// requires).
    #[arg(long)]
    no_idempotence: bool,
    /// Bytes of records waiting to be sent or acknowledged, per producer.
    #[arg(long, default_value_t = ledge_client::BUFFER_MEMORY_DEFAULT)]
    buffer_memory_bytes: usize,
    /// Largest produce request, in bytes; must be at least `--batch-bytes`.
    #[arg(long, default_value_t = ledge_client::MAX_REQUEST_SIZE_DEFAULT)]
    max_request_bytes: usize,
}

/// How the record values are made.
#[derive(Debug, Args)]
struct PayloadArgs {
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Distinct payloads generated and sent in turn (so compression sees realistic, not
    /// identical, records).
    #[arg(long, default_value_t = 64)]
    payload_pool: usize,
}

/// The consumer's fetch settings, shared by `consume`, `e2e` and `group`.
#[derive(Debug, Args)]
struct FetchArgs {
    /// Most records one `poll` returns.
    #[arg(long, default_value_t = 10_000)]
    max_poll_records: usize,
    /// Most bytes in one fetch answer.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    fetch_max_bytes: u32,
    /// Most bytes per partition in one fetch answer.
    #[arg(long, default_value_t = 1024 * 1024)]
    partition_fetch_bytes: u32,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    /// Topic to read.
    #[arg(long, default_value = "ledge-bench")]
    topic: String,
    /// Consumers, each with its own connection; partitions are dealt out round-robin (more
    /// consumers than partitions leaves the extra ones out).
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Give up when no record arrives for this many seconds (a stuck node, not a limit on
    /// the run's length).
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
}

#[derive(Debug, Args)]
struct E2eArgs {
    /// Topic; created with `--partitions` if it does not exist. The consumer starts at its
    /// end, so earlier records do not count.
    #[arg(long, default_value = "ledge-bench-e2e")]
    topic: String,
    /// Partitions of the topic when this run creates it; records go round-robin over them.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Records per second (open-loop).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    duration: Duration,
    /// Seconds sent first and not counted (connections, first segment, page cache).
    #[arg(long, value_parser = parse_seconds, default_value = "1")]
    warmup: Duration,
    /// Bytes of each record's value, the 16-byte stamp included.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    #[command(flatten)]
    producer: ProducerArgs,
    #[command(flatten)]
    payload: PayloadArgs,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Longest the node holds a fetch waiting for data, in milliseconds (the consumer's
    /// `fetch_max_wait`; a waiting fetch is answered as soon as a record is readable).
    #[arg(long, default_value_t = 500)]
    fetch_max_wait_ms: u64,
    /// After the last record is acknowledged, how long the consumer may take to see every
    /// record before the missing ones are reported.
    #[arg(long, default_value_t = 30)]
    drain_timeout_secs: u64,
}

/// Where `failover` wants the killed leader (`--leader-on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LeaderOn {
    /// Wherever the partition's leader is.
    Any,
    /// On the active controller's node.
    Controller,
    /// On a node that is not the active controller.
    NotController,
}

#[derive(Debug, Args)]
struct FailoverArgs {
    /// Topic of one partition; created (with `--replication-factor`, `--min-insync-replicas`)
    /// if it does not exist.
    #[arg(long, default_value = "ledge-bench-failover")]
    topic: String,
    /// The cluster's node processes on this machine, `ID=PID,...` (`1=4711,2=4712,3=4713`):
    /// the partition's leader is looked up in Metadata and its process is sent SIGKILL.
    #[arg(long, required = true)]
    node_pids: String,
    /// Records per second (open-loop).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Where the partition's leader must be when it is killed: on the active controller's
    /// node (its death then also costs a controller election), on another node, or wherever
    /// it is. When it is not there, the partition's replicas are reordered (a reassignment
    /// to the same nodes) and its preferred leader elected before producing starts.
    #[arg(long, value_enum, default_value_t = LeaderOn::Any)]
    leader_on: LeaderOn,
    /// Seconds of steady producing before the leader is killed.
    #[arg(long, value_parser = parse_seconds, default_value = "5")]
    kill_after: Duration,
    /// Seconds of producing after the kill (must cover the failover).
    #[arg(long, value_parser = parse_seconds, default_value = "20")]
    run_after_kill: Duration,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Longest wait for the last acknowledgements (and for Metadata to name the new leader)
    /// once sending has stopped.
    #[arg(long, default_value_t = 60)]
    drain_timeout_secs: u64,
    #[command(flatten)]
    producer: ProducerArgs,
    #[command(flatten)]
    payload: PayloadArgs,
}

#[derive(Debug, Args)]
struct GroupArgs {
    /// A pre-filled topic to read.
    #[arg(long, default_value = "ledge-bench")]
    topic: String,
    /// Members of the group, each with its own connection.
    #[arg(long, default_value_t = 4)]
    consumers: u32,
    /// Group id; by default a fresh one per run, so there are no committed offsets.
    #[arg(long)]
    group: Option<String>,
    /// Assignor: range, round-robin or cooperative-sticky.
    #[arg(long, default_value = ASSIGNOR_DEFAULT)]
    assignor: String,
    #[command(flatten)]
    fetch: FetchArgs,
    /// Longest the group may take to give every partition one owner.
    #[arg(long, default_value_t = 60)]
    settle_timeout_secs: u64,
    /// Give up when no record arrives for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
}

/// `--compression` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(value: CompressionArg) -> Self {
        match value {
            CompressionArg::None => Self::None,
            CompressionArg::Gzip => Self::Gzip,
            CompressionArg::Snappy => Self::Snappy,
            CompressionArg::Lz4 => Self::Lz4,
            CompressionArg::Zstd => Self::Zstd,
        }
    }
}

impl CompressionArg {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

fn acks_name(acks: Acks) -> &'static str {
    match acks {
        Acks::None => "0",
        Acks::Leader => "1",
        Acks::All => "all",
    }
}

/// `--duration 2.5` as 2.5 seconds.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|error| format!("{text:?} is not a number of seconds: {error}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|error| format!("{text:?}: {error}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The in-process workload connects to nothing.
    let in_process = matches!(cli.workload, Workload::BrokerProduce(_));
    let trust = if cli.insecure || in_process {
        Trust::Insecure
    } else {
        if !cli.ca.exists() {
            bail!(
                "CA file {} not found: pass the node's <data-dir>/tls/ca.pem with --ca, or \
                 --insecure for a throwaway node",
                cli.ca.display()
            );
        }
        Trust::CaFile(cli.ca.clone())
    };
    let mut config = ClientConfig::new(cli.server.clone(), trust);
    config.client_id = "ledge-bench".into();
    if let Some(millis) = cli.idle_timeout_ms {
        config.idle_timeout = Duration::from_millis(millis);
    }
    if let Some(millis) = cli.connect_timeout_ms {
        config.connect_timeout = Duration::from_millis(millis);
    }
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        config.client_certificate = Some(ledge_client::ClientCertificate {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    if let Some(user) = &cli.user {
        let password = std::env::var("LEDGE_PASSWORD")
            .map_err(|_| anyhow::anyhow!("--user {user} needs the password in LEDGE_PASSWORD"))?;
        config.sasl = Some(ledge_client::SaslCredentials::new(user.clone(), password));
    }
    let output = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let cpu = CpuMeter {
        node_pid: cli.node_pid,
    };
    let topic_settings = TopicSettings {
        replication_factor: cli.replication_factor,
        min_insync_replicas: cli.min_insync_replicas,
    };
    let mut report = match &cli.workload {
        Workload::Produce(args) => produce(&config, args, &topic_settings, &output, &cpu).await?,
        Workload::Consume(args) => consume(&config, args, &output, &cpu).await?,
        Workload::E2e(args) => e2e(&config, args, &topic_settings, &output, &cpu).await?,
        Workload::Failover(args) => failover(&config, args, &topic_settings, &output).await?,
        Workload::Group(args) => group(&config, args, &output, &cpu).await?,
        Workload::BrokerProduce(args) => broker_produce(args, &output, &cpu).await?,
        Workload::Transform(args) => transform(&config, args, &cpu).await?,
        Workload::Restore(args) => restore(&config, args, &cpu).await?,
    };
    report.add_cpu();
    output.print(&report);
    if let Some(error) = &report.first_error {
        bail!("{} records failed; the first: {error}", report.errors);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// produce

async fn produce(
    config: &ClientConfig,
    args: &ProduceArgs,
    topic_settings: &TopicSettings,
    output: &Output,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if args.partitions == 0 {
        bail!("--partitions must be at least 1");
    }
    if args.rate == Some(0) {
        bail!("--rate must be at least 1");
    }
    let admin_client = connect(config).await?;
    let partitions =
        ensure_topic(&admin_client, &args.topic, args.partitions, topic_settings).await?;
    let producer_config = args.producer.config(5)?;

    // Connect every producer (and get its producer id) before the clock starts.
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let client = connect(config).await?;
        let producer = Producer::new(&client, producer_config.clone())
            .await
            .context("creating a producer")?;
        producers.push((client, producer));
    }
    let payloads = args.payload.pool(args.record_bytes);

    // How many records, and until when.
    let records = match (args.rate, args.duration) {
        (Some(rate), Some(duration)) => records_in(rate, duration),
        (None, Some(_)) => u64::MAX,
        (_, None) => args.records,
    };
    let known_total = (records != u64::MAX).then_some(records);
    let acked = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(known_total, "produce");
    let ticker = spawn_ticker(progress.clone(), acked.clone());
    let cpu_before = cpu.sample()?;
    let started = now();
    let pacing = args.rate.map(|rate| Schedule {
        epoch: started + PACED_START_DELAY,
        rate,
    });
    let deadline = match (args.rate, args.duration) {
        (None, Some(duration)) => Some(started + duration),
        _ => None,
    };
    let mut tasks = Vec::new();
    for (index, (client, producer)) in producers.into_iter().enumerate() {
        let job = ProducerJob {
            topic: args.topic.clone(),
            records: if records == u64::MAX {
                u64::MAX
            } else {
                share(records, args.producers, index)
            },
            first_index: index as u64,
            stride: u64::from(args.producers),
            pacing,
            deadline,
            warmup_records: 0,
            partitions: None,
            stamp: None,
            payloads: payloads.clone(),
            acked: acked.clone(),
        };
        tasks.push(job.spawn(client, producer));
    }
    let mut latency = new_histogram()?;
    let mut send_lag = new_histogram()?;
    let mut sent = 0;
    let mut errors = 0;
    let mut first_error = None;
    let mut ended = started;
    for task in tasks {
        let outcome = task.await.context("a producer task panicked")??;
        ended = ended.max(outcome.finished);
        latency
            .add(&outcome.latency)
            .context("merging histograms")?;
        send_lag
            .add(&outcome.send_lag)
            .context("merging histograms")?;
        sent += outcome.sent;
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
    }
    let cpu_after = cpu.sample()?;
    // Until the last acknowledgement, not past closing the connections (quinn's draining
    // period). An open-loop run is measured from its first due time.
    let elapsed = ended.saturating_duration_since(pacing.map_or(started, |pacing| pacing.epoch));
    ticker.abort();
    progress.finish_and_clear();
    admin_client.close().await;

    let delivered = sent - errors.min(sent);
    let bytes = delivered * args.record_bytes as u64;
    let mut parameters = vec![
        ("server", json!(config.server)),
        ("topic", json!(args.topic)),
        ("partitions", json!(partitions)),
        ("producers", json!(args.producers)),
        ("record_bytes", json!(args.record_bytes)),
    ];
    parameters.extend(args.producer.parameters(&producer_config));
    parameters.push(("rate", json!(args.rate)));
    parameters.push((
        "duration_s",
        json!(args.duration.map(|duration| duration.as_secs_f64())),
    ));
    let mut latencies = vec![Latency {
        label: if pacing.is_some() {
            "latency (due → ack)"
        } else {
            "latency (send → ack)"
        },
        key: "latency_us",
        histogram: latency,
    }];
    if pacing.is_some() {
        latencies.push(Latency {
            label: "sender lag (due → sent)",
            key: "send_lag_us",
            histogram: send_lag,
        });
    }
    Ok(Report {
        workload: "produce",
        parameters,
        records: delivered,
        bytes,
        elapsed,
        latencies,
        results: Vec::new(),
        cpu: CpuSpent::between(cpu_before, cpu_after),
        errors,
        first_error,
    })
}

impl ProducerArgs {
    /// The SDK settings these flags make; `linger_default_ms` is the workload's default.
    fn config(&self, linger_default_ms: u64) -> anyhow::Result<ProducerConfig> {
        let mut config = ProducerConfig::default();
        config.acks = self.acks;
        config.batch_size = self.batch_bytes;
        config.batch_size_max = self.batch_max_bytes;
        config.linger = Duration::from_millis(self.linger_ms.unwrap_or(linger_default_ms));
        config.compression = self.compression.into();
        config.enable_idempotence = self.acks == Acks::All && !self.no_idempotence;
        config.buffer_memory = self.buffer_memory_bytes;
        config.max_request_size = self.max_request_bytes;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    fn parameters(&self, config: &ProducerConfig) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("batch_bytes", json!(config.batch_size)),
            ("batch_max_bytes", json!(config.batch_size_max)),
            ("linger_ms", json!(config.linger.as_millis())),
            ("acks", json!(acks_name(config.acks))),
            ("compression", json!(self.compression.name())),
            ("idempotence", json!(config.enable_idempotence)),
        ]
    }
}

impl PayloadArgs {
    fn pool(&self, record_bytes: usize) -> Arc<[Bytes]> {
        payload_pool(self.seed, self.payload_pool.max(1), record_bytes)
    }
}

/// When each record of an open-loop run is due: record `index` (counted over all producers)
/// at `epoch + index / rate`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    epoch: Instant,
    rate: u64,
}

impl Schedule {
    /// Nanoseconds from the epoch to record `index`'s due time.
    fn offset_ns(self, index: u64) -> u64 {
        let nanos = u128::from(index) * 1_000_000_000 / u128::from(self.rate);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    fn due(self, index: u64) -> Instant {
        self.epoch + Duration::from_nanos(self.offset_ns(index))
    }
}

/// Records due at `rate` per second over `duration`.
fn records_in(rate: u64, duration: Duration) -> u64 {
    let records = u128::from(rate) * duration.as_nanos() / 1_000_000_000;
    u64::try_from(records).unwrap_or(u64::MAX)
}

/// One producer's part of the run.
struct ProducerJob {
    topic: String,
    /// Records to send (`u64::MAX` when a deadline ends the run).
    records: u64,
    /// This producer sends the records `first_index`, `first_index + stride`, ... of the run.
    first_index: u64,
    stride: u64,
    /// Open-loop due times; `None` sends as fast as the producer takes records.
    pacing: Option<Schedule>,
    /// No record is sent at or after this time.
    deadline: Option<Instant>,
    /// Records of the run (by index) sent but left out of the histograms.
    warmup_records: u64,
    /// Sends record `index` to partition `index % partitions`; `None` leaves it to the SDK.
    partitions: Option<u32>,
    /// `e2e`: the run id stamped, with the due time, over each value's first 16 bytes.
    stamp: Option<u64>,
    payloads: Arc<[Bytes]>,
    acked: Arc<AtomicU64>,
}

/// What one producer measured.
struct ProducerOutcome {
    /// Records handed to the producer.
    sent: u64,
    /// Due (or send) → acknowledged, of the records past the warm-up.
    latency: Histogram<u64>,
    /// Due → `send` returned, of the records past the warm-up (open-loop runs only).
    send_lag: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    /// When the last record was acknowledged (before the producer and connection closed).
    finished: Instant,
}

impl ProducerJob {
    /// Runs the job and then closes its producer and connection. A paced job runs on a
    /// thread of its own (see [`pause_until`]); the others are ordinary tasks.
    fn spawn(
        self,
        client: Client,
        producer: Producer,
    ) -> tokio::task::JoinHandle<anyhow::Result<ProducerOutcome>> {
        let paced = self.pacing.is_some();
        let work = async move {
            let outcome = self.run(&producer).await;
            producer.close().await;
            client.close().await;
            outcome
        };
        if paced {
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(work))
        } else {
            tokio::spawn(work)
        }
    }
}

impl ProducerJob {
    /// Sends the records, handing each delivery future to a collector task that times it.
    /// The collector is its own task so an acknowledgement is noticed when it arrives, not
    /// when the send loop next pauses.
    async fn run(self, producer: &Producer) -> anyhow::Result<ProducerOutcome> {
        let (deliveries, incoming) = mpsc::channel(DELIVERY_QUEUE);
        let collector = tokio::spawn(collect(incoming, self.acked.clone()));
        let mut send_lag = new_histogram()?;
        let mut sent = 0;
        let mut send_errors = 0;
        let mut first_error = None;
        for number in 0..self.records {
            let index = self.first_index + number * self.stride;
            let due = match self.pacing {
                Some(schedule) => {
                    let due = schedule.due(index);
                    pause_until(due);
                    due
                }
                None => now(),
            };
            if self.deadline.is_some_and(|deadline| due >= deadline) {
                break;
            }
            let payload = &self.payloads[(index as usize) % self.payloads.len()];
            let value = match (self.stamp, self.pacing) {
                (Some(run_id), Some(schedule)) => {
                    stamped(run_id, schedule.offset_ns(index), payload)
                }
                _ => payload.clone(),
            };
            let mut record = ProducerRecord::new(self.topic.clone(), value);
            if let Some(partitions) = self.partitions {
                record = record.partition((index % u64::from(partitions)) as u32);
            }
            let counted = index >= self.warmup_records;
            sent += 1;
            match producer.send(record).await {
                Ok(delivery) => {
                    if counted && self.pacing.is_some() {
                        send_lag.saturating_record(micros(now().saturating_duration_since(due)));
                    }
                    // The collector only stops once this sender is dropped.
                    let _ = deliveries.send((due, counted, delivery)).await;
                }
                Err(error) => {
                    send_errors += 1;
                    first_error.get_or_insert_with(|| error.to_string());
                    self.acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(deliveries);
        producer.flush().await;
        let (latency, errors, collect_error) =
            collector.await.context("the collector panicked")??;
        Ok(ProducerOutcome {
            sent,
            latency,
            send_lag,
            errors: errors + send_errors,
            first_error: first_error.or(collect_error),
            finished: now(),
        })
    }
}

/// Blocks the calling thread until `due`. Only the paced send loops call it, each on a
/// thread of its own (`spawn_blocking`, driving its future with `Handle::block_on`): tokio's
/// timer has a 1 ms granularity, which at 5,000 records/s would send records in bursts of
/// five and add up to a millisecond of the bench's own making to every latency, while a
/// thread sleep lands within the kernel's timer slack (~50 µs).
fn pause_until(due: Instant) {
    let wait = due.saturating_duration_since(now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// `payload` with its first [`STAMP_BYTES`] replaced by the run id and the due time (ns after
/// the run's epoch), both little-endian.
fn stamped(run_id: u64, due_ns: u64, payload: &Bytes) -> Bytes {
    let mut value = BytesMut::with_capacity(payload.len().max(STAMP_BYTES));
    value.put_u64_le(run_id);
    value.put_u64_le(due_ns);
    if let Some(rest) = payload.get(STAMP_BYTES..) {
        value.put_slice(rest);
    }
    value.freeze()
}

/// The run id and due time of a stamped value.
fn stamp_of(value: &[u8]) -> Option<(u64, u64)> {
    let run_id = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let due_ns = u64::from_le_bytes(value.get(8..STAMP_BYTES)?.try_into().ok()?);
    Some((run_id, due_ns))
}

/// Awaits delivery futures in whatever order they resolve and records due → ack latency of
/// the counted ones. Returns the histogram, the failed records and the first failure.
async fn collect(
    mut incoming: mpsc::Receiver<(Instant, bool, DeliveryFuture)>,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<(Histogram<u64>, u64, Option<String>)> {
    let mut latency = new_histogram()?;
    let mut errors = 0;
    let mut first_error = None;
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((took, counted, result)) = pending.next(), if !pending.is_empty() => {
                acked.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(_) if counted => latency.saturating_record(micros(took)),
                    Ok(_) => {}
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error}"));
                    }
                }
            }
            next = incoming.recv(), if open => match next {
                Some((due, counted, delivery)) => pending.push(async move {
                    let result = delivery.await;
                    (now().saturating_duration_since(due), counted, result)
                }),
                None => open = false,
            },
            else => break,
        }
    }
    Ok((latency, errors, first_error))
}

/// How a topic this run creates is replicated (`None`: the node's default).
#[derive(Debug, Clone, Copy)]
struct TopicSettings {
    replication_factor: Option<u16>,
    min_insync_replicas: Option<u16>,
}

impl TopicSettings {
    fn new_topic(self, topic: &str, partitions: u32) -> NewTopic {
        let mut new_topic = NewTopic::new(topic, partitions);
        if let Some(factor) = self.replication_factor {
            new_topic = new_topic.replication_factor(factor);
        }
        if let Some(min_insync) = self.min_insync_replicas {
            new_topic = new_topic.config("min.insync.replicas", min_insync.to_string());
        }
        new_topic
    }
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count.
async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: u32,
    settings: &TopicSettings,
) -> anyhow::Result<u32> {
    let admin = Admin::new(client);
    match admin
        .create_topics(vec![settings.new_topic(topic, partitions)], false)
        .await
    {
        Ok(()) => Ok(partitions),
        Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {
            let existing = partition_count(&admin, topic).await?;
            if existing != partitions {
                eprintln!(
                    "note: topic {topic} already exists with {existing} partitions; \
                     --partitions {partitions} is ignored"
                );
            }
            Ok(existing)
        }
        Err(error) => Err(error).with_context(|| format!("creating topic {topic}")),
    }
}

async fn partition_count(admin: &Admin, topic: &str) -> anyhow::Result<u32> {
    let described = admin
        .describe_topics(vec![topic.to_string()])
        .await
        .with_context(|| format!("describing topic {topic}"))?;
    let count = described
        .first()
        .map_or(0, |description| description.partitions.len());
    Ok(u32::try_from(count)?)
}

/// `count` payloads of `bytes` bytes each: upper-case ASCII letters from a SplitMix64 stream
/// seeded with `seed` (like Kafka's perf tool, compressible but not trivially so).
fn payload_pool(seed: u64, count: usize, bytes: usize) -> Arc<[Bytes]> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            let payload: Vec<u8> = (0..bytes)
                .map(|_| b'A' + (splitmix64(&mut state) % 26) as u8)
                .collect();
            Bytes::from(payload)
        })
        .collect()
}

/// One step of SplitMix64: small, fast and the same on every platform.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `index`th of `workers` equal shares of `total` (the first ones take the remainder).
fn share(total: u64, workers: u32, index: usize) -> u64 {
    let workers = u64::from(workers);
    total / workers + u64::from((index as u64) < total % workers)
}

// ---------------------------------------------------------------------------------------------
// consume

async fn consume(
    config: &ClientConfig,
    args: &ConsumeArgs,
    output: &Output,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let ranges = topic_ranges(config, &args.topic).await?;
    let partitions = u32::try_from(ranges.len())?;
    let consumers = args.consumers.min(partitions.max(1));
    if consumers < args.consumers {
        eprintln!(
            "note: {} has {partitions} partitions; using {consumers} consumers",
            args.topic
        );
    }
    let expected = records_between(ranges.values());
    let mut consumer_config = args.fetch.config();
    consumer_config.auto_offset_reset = OffsetReset::Earliest;

    // Connect and position every consumer before the clock starts.
    let mut jobs = Vec::new();
    for index in 0..consumers {
        let mine: BTreeMap<u32, (i64, i64)> = ranges
            .iter()
            .filter(|(partition, _)| *partition % consumers == index)
            .map(|(partition, range)| (*partition, *range))
            .collect();
        let client = connect(config).await?;
        let mut consumer = Consumer::new(&client, consumer_config.clone());
        consumer.assign(
            mine.keys()
                .map(|partition| TopicPartition::new(args.topic.clone(), *partition))
                .collect(),
        );
        for (partition, (start, _)) in &mine {
            consumer.seek(&TopicPartition::new(args.topic.clone(), *partition), *start)?;
        }
        jobs.push((client, consumer, ends_of(&mine)));
    }

    let consumed = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(Some(expected), "consume");
    let ticker = spawn_ticker(progress.clone(), consumed.clone());
    let cpu_before = cpu.sample()?;
    let started = now();
    let mut tasks = Vec::new();
    for (client, mut consumer, ends) in jobs {
        let job = ConsumerJob {
            ends,
            max_poll_records: args.fetch.max_poll_records,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            consumed: consumed.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let outcome = job.run(&mut consumer).await;
            client.close().await;
            outcome
        }));
    }
    let read = join_readers(tasks, "a consumer task").await?;
    let (records, bytes) = (read.records, read.bytes);
    // Until the last record was read: closing the connection afterwards (quinn's draining
    // period, ~3 probe timeouts) is not part of reading.
    let elapsed = read.finished.saturating_duration_since(started);
    let cpu_after = cpu.sample()?;
    ticker.abort();
    progress.finish_and_clear();

    let mut parameters = vec![
        ("server", json!(config.server)),
        ("topic", json!(args.topic)),
        ("partitions", json!(partitions)),
        ("consumers", json!(consumers)),
    ];
    parameters.extend(args.fetch.parameters());
    Ok(Report::reading(
        "consume",
        parameters,
        (records, bytes),
        elapsed,
        CpuSpent::between(cpu_before, cpu_after),
    ))
}

/// Waits for every reader task (consumers, group members): the records and bytes they read,
/// and when the last of them read its last record.
async fn join_readers(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<ReadOutcome>>>,
    what: &str,
) -> anyhow::Result<ReadOutcome> {
    let mut total: Option<ReadOutcome> = None;
    for task in tasks {
        let outcome = task.await.with_context(|| format!("{what} panicked"))??;
        total = Some(match total {
            None => outcome,
            Some(total) => ReadOutcome {
                records: total.records + outcome.records,
                bytes: total.bytes + outcome.bytes,
                finished: total.finished.max(outcome.finished),
            },
        });
    }
    total.with_context(|| format!("no {what} ran"))
}

/// What one reader read, and when it read its last record.
#[derive(Debug)]
struct ReadOutcome {
    records: u64,
    bytes: u64,
    finished: Instant,
}

impl FetchArgs {
    /// A consumer without auto-commit, with these fetch sizes.
    fn config(&self) -> ConsumerConfig {
        let mut config = ConsumerConfig::default();
        config.enable_auto_commit = false;
        config.fetch_max_bytes = self.fetch_max_bytes;
        config.max_partition_fetch_bytes = self.partition_fetch_bytes;
        config
    }

    fn parameters(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![
            ("max_poll_records", json!(self.max_poll_records)),
            ("fetch_max_bytes", json!(self.fetch_max_bytes)),
            ("partition_fetch_bytes", json!(self.partition_fetch_bytes)),
        ]
    }
}

/// Each partition's log start offset and high watermark, read now: a run reads
/// `[start, end)` of every partition.
async fn topic_ranges(
    config: &ClientConfig,
    topic: &str,
) -> anyhow::Result<BTreeMap<u32, (i64, i64)>> {
    let admin_client = connect(config).await?;
    let described = Admin::new(&admin_client)
        .describe_topics(vec![topic.to_string()])
        .await
        .with_context(|| format!("describing topic {topic}"));
    admin_client.close().await;
    let Some(description) = described?.into_iter().next() else {
        bail!("topic {topic} not found");
    };
    Ok(description
        .partitions
        .iter()
        .map(|partition| {
            (
                partition.partition,
                (partition.log_start_offset, partition.high_watermark),
            )
        })
        .collect())
}

fn records_between<'a>(ranges: impl Iterator<Item = &'a (i64, i64)>) -> u64 {
    ranges
        .map(|(start, end)| u64::try_from(end - start).unwrap_or(0))
        .sum()
}

/// The end offsets of the non-empty partitions among `ranges`.
fn ends_of(ranges: &BTreeMap<u32, (i64, i64)>) -> BTreeMap<u32, i64> {
    ranges
        .iter()
        .filter(|(_, (start, end))| end > start)
        .map(|(partition, (_, end))| (*partition, *end))
        .collect()
}

/// One consumer's part of the run: its partitions and where each ends.
struct ConsumerJob {
    /// End offset (exclusive) of each partition still to read; empty partitions are left out.
    ends: BTreeMap<u32, i64>,
    max_poll_records: usize,
    idle_timeout: Duration,
    consumed: Arc<AtomicU64>,
}

impl ConsumerJob {
    /// Polls until every partition reached its end offset; returns records and bytes read.
    async fn run(self, consumer: &mut Consumer) -> anyhow::Result<ReadOutcome> {
        let mut remaining: BTreeSet<u32> = self.ends.keys().copied().collect();
        let mut records = 0;
        let mut bytes = 0;
        let mut last_record = now();
        while !remaining.is_empty() {
            let polled = consumer
                .poll(Duration::from_millis(500), self.max_poll_records)
                .await?;
            if polled.is_empty() {
                if now().saturating_duration_since(last_record) >= self.idle_timeout {
                    bail!(
                        "no record for {:?} with partitions {remaining:?} unfinished \
                         ({records} records read)",
                        self.idle_timeout
                    );
                }
                continue;
            }
            last_record = now();
            let mut counted = 0;
            for record in &polled {
                let Some(&end) = self.ends.get(&record.partition) else {
                    continue;
                };
                if record.offset < end {
                    counted += 1;
                    bytes += (record.value.as_ref().map_or(0, Bytes::len)
                        + record.key.as_ref().map_or(0, Bytes::len))
                        as u64;
                }
                if record.offset + 1 >= end {
                    remaining.remove(&record.partition);
                }
            }
            records += counted;
            self.consumed.fetch_add(counted, Ordering::Relaxed);
        }
        Ok(ReadOutcome {
            records,
            bytes,
            finished: now(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// e2e

async fn e2e(
    config: &ClientConfig,
    args: &E2eArgs,
    topic_settings: &TopicSettings,
    output: &Output,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    if args.rate == 0 || args.partitions == 0 {
        bail!("--rate and --partitions must be at least 1");
    }
    if args.record_bytes < STAMP_BYTES {
        bail!("--record-bytes must be at least {STAMP_BYTES} (the stamp)");
    }
    if args.duration.is_zero() {
        bail!("--duration must be above 0");
    }
    let admin_client = connect(config).await?;
    let partitions =
        ensure_topic(&admin_client, &args.topic, args.partitions, topic_settings).await?;
    admin_client.close().await;

    // The consumer first, positioned at the end, so it sees exactly this run's records.
    let consumer_client = connect(config).await?;
    let mut consumer_config = args.fetch.config();
    consumer_config.auto_offset_reset = OffsetReset::Latest;
    consumer_config.fetch_max_wait = Duration::from_millis(args.fetch_max_wait_ms);
    let mut consumer = Consumer::new(&consumer_client, consumer_config);
    let assigned: Vec<TopicPartition> = (0..partitions)
        .map(|partition| TopicPartition::new(args.topic.clone(), partition))
        .collect();
    consumer.assign(assigned.clone());
    consumer
        .seek_to_end(&assigned)
        .await
        .context("seeking to the end")?;
    for partition in &assigned {
        consumer.position(partition).await?;
    }

    let producer_config = args.producer.config(0)?;
    let producer_client = connect(config).await?;
    let producer = Producer::new(&producer_client, producer_config.clone())
        .await
        .context("creating a producer")?;

    // Records from other runs (or other programs) on the topic are told apart by this id.
    let run_id = (SystemClock.wall_time_ms() as u64) << 22 ^ u64::from(std::process::id());
    let warmup_records = records_in(args.rate, args.warmup);
    let total = warmup_records + records_in(args.rate, args.duration);
    let received = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(Some(total), "e2e");
    let ticker = spawn_ticker(progress.clone(), received.clone());
    let cpu_before = cpu.sample()?;
    let schedule = Schedule {
        epoch: now() + PACED_START_DELAY,
        rate: args.rate,
    };
    let (delivered_sender, delivered) = watch::channel(None);
    let reader = E2eReader {
        run_id,
        schedule,
        warmup_ns: schedule.offset_ns(warmup_records),
        delivered,
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        max_poll_records: args.fetch.max_poll_records,
        received: received.clone(),
    };
    let reading = tokio::spawn(async move {
        let outcome = reader.run(&mut consumer).await;
        consumer_client.close().await;
        outcome
    });
    let job = ProducerJob {
        topic: args.topic.clone(),
        records: total,
        first_index: 0,
        stride: 1,
        pacing: Some(schedule),
        deadline: None,
        warmup_records,
        partitions: Some(partitions),
        stamp: Some(run_id),
        payloads: args.payload.pool(args.record_bytes),
        acked: Arc::new(AtomicU64::new(0)),
    };
    let produced = job
        .spawn(producer_client, producer)
        .await
        .context("the producer panicked")??;
    // Acknowledged records must all be read (with acks=0, every record sent).
    let delivered = produced.sent - produced.errors.min(produced.sent);
    let _ = delivered_sender.send(Some(delivered));
    let read = reading.await.context("the consumer panicked")??;
    let cpu_after = cpu.sample()?;
    ticker.abort();
    progress.finish_and_clear();

    let missing = delivered.saturating_sub(read.received);
    let counted = read.latency.len();
    let mut parameters = vec![
        ("server", json!(config.server)),
        ("topic", json!(args.topic)),
        ("partitions", json!(partitions)),
        ("record_bytes", json!(args.record_bytes)),
        ("rate", json!(args.rate)),
        ("duration_s", json!(args.duration.as_secs_f64())),
        ("warmup_s", json!(args.warmup.as_secs_f64())),
    ];
    parameters.extend(args.producer.parameters(&producer_config));
    parameters.push(("fetch_max_wait_ms", json!(args.fetch_max_wait_ms)));
    let mut results = vec![
        ("sent", json!(produced.sent)),
        ("read", json!(read.received)),
    ];
    if missing > 0 {
        results.push(("missing", json!(missing)));
    }
    if read.foreign > 0 {
        results.push(("foreign", json!(read.foreign)));
    }
    let mut errors = produced.errors;
    let mut first_error = produced.first_error;
    if missing > 0 {
        errors += missing;
        first_error.get_or_insert_with(|| {
            format!(
                "{missing} acknowledged records were not read within {} s",
                args.drain_timeout_secs
            )
        });
    }
    Ok(Report {
        workload: "e2e",
        parameters,
        records: counted,
        bytes: counted * args.record_bytes as u64,
        // The measured window: the records due in it are the ones counted.
        elapsed: args.duration,
        latencies: vec![
            Latency {
                label: "e2e latency (due → read)",
                key: "latency_us",
                histogram: read.latency,
            },
            Latency {
                label: "ack latency (due → ack)",
                key: "ack_latency_us",
                histogram: produced.latency,
            },
            Latency {
                label: "sender lag (due → sent)",
                key: "send_lag_us",
                histogram: produced.send_lag,
            },
        ],
        results,
        cpu: CpuSpent::between(cpu_before, cpu_after),
        errors,
        first_error,
    })
}

/// The consumer side of `e2e`.
struct E2eReader {
    run_id: u64,
    schedule: Schedule,
    /// Records due before this many ns after the epoch are the warm-up: read, not counted.
    warmup_ns: u64,
    /// How many records were delivered, once the producer is done.
    delivered: watch::Receiver<Option<u64>>,
    drain_timeout: Duration,
    max_poll_records: usize,
    received: Arc<AtomicU64>,
}

struct E2eRead {
    /// Due → handed over by `poll`, of the records past the warm-up.
    latency: Histogram<u64>,
    /// Records of this run read, warm-up included.
    received: u64,
    /// Records read that this run did not send.
    foreign: u64,
}

impl E2eReader {
    async fn run(self, consumer: &mut Consumer) -> anyhow::Result<E2eRead> {
        let mut latency = new_histogram()?;
        let mut received = 0;
        let mut foreign = 0;
        let mut drain_deadline = None;
        loop {
            if let Some(delivered) = *self.delivered.borrow() {
                if received >= delivered {
                    break;
                }
                let deadline = *drain_deadline.get_or_insert_with(|| now() + self.drain_timeout);
                if now() >= deadline {
                    break;
                }
            }
            let polled = consumer
                .poll(Duration::from_millis(100), self.max_poll_records)
                .await?;
            let read_at = now();
            for record in &polled {
                let stamp = record.value.as_deref().and_then(stamp_of);
                let Some((run_id, due_ns)) = stamp.filter(|(run_id, _)| *run_id == self.run_id)
                else {
                    foreign += 1;
                    continue;
                };
                debug_assert_eq!(run_id, self.run_id);
                received += 1;
                if due_ns >= self.warmup_ns {
                    let due = self.schedule.epoch + Duration::from_nanos(due_ns);
                    latency.saturating_record(micros(read_at.saturating_duration_since(due)));
                }
            }
            self.received.store(received, Ordering::Relaxed);
        }
        Ok(E2eRead {
            latency,
            received,
            foreign,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// group

async fn group(
    config: &ClientConfig,
    args: &GroupArgs,
    output: &Output,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let ranges = Arc::new(topic_ranges(config, &args.topic).await?);
    let partitions = u32::try_from(ranges.len())?;
    let expected = records_between(ranges.values());
    let group_id = args.group.clone().unwrap_or_else(|| {
        format!(
            "ledge-bench-{}-{}",
            SystemClock.wall_time_ms(),
            std::process::id()
        )
    });
    let mut consumer_config = args.fetch.config();
    consumer_config.group_id = Some(group_id.clone());
    // Nothing is read while the group settles: every member starts at the end.
    consumer_config.auto_offset_reset = OffsetReset::Latest;
    consumer_config.assignor = args.assignor.clone();

    let consumed = Arc::new(AtomicU64::new(0));
    let (settled_sender, settled) = watch::channel(false);
    let start_line = Arc::new(Barrier::new(args.consumers as usize + 1));
    let mut assignments = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..args.consumers {
        let (assignment_sender, assignment) = watch::channel(Vec::new());
        assignments.push(assignment);
        let member = Member {
            config: config.clone(),
            consumer_config: consumer_config.clone(),
            topic: args.topic.clone(),
            ranges: ranges.clone(),
            assignment: assignment_sender,
            settled: settled.clone(),
            start_line: start_line.clone(),
            max_poll_records: args.fetch.max_poll_records,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            consumed: consumed.clone(),
        };
        tasks.push(tokio::spawn(member.run()));
    }

    // Wait until every partition has exactly one owner, a few looks in a row.
    let settle_started = now();
    let settle_timeout = Duration::from_secs(args.settle_timeout_secs);
    let mut complete_looks = 0;
    while complete_looks < SETTLE_CHECKS {
        let owned: Vec<Vec<u32>> = assignments
            .iter()
            .map(|assignment| assignment.borrow().clone())
            .collect();
        if complete_assignment(&owned, partitions) {
            complete_looks += 1;
        } else {
            complete_looks = 0;
        }
        if let Some(index) = tasks.iter().position(tokio::task::JoinHandle::is_finished) {
            let outcome = tasks.swap_remove(index).await;
            bail!("member {index} stopped while the group settled: {outcome:?}");
        }
        if now().saturating_duration_since(settle_started) > settle_timeout {
            bail!("the group did not settle within {settle_timeout:?}; assignments {owned:?}");
        }
        tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
    }
    let settle_time = now().saturating_duration_since(settle_started);
    let _ = settled_sender.send(true);
    tokio::time::timeout(settle_timeout, start_line.wait())
        .await
        .context("the members did not reach the start line")?;

    let progress = output.progress_bar(Some(expected), "group");
    let ticker = spawn_ticker(progress.clone(), consumed.clone());
    let cpu_before = cpu.sample()?;
    let started = now();
    let read = join_readers(tasks, "a member").await?;
    let (records, bytes) = (read.records, read.bytes);
    let elapsed = read.finished.saturating_duration_since(started);
    let cpu_after = cpu.sample()?;
    ticker.abort();
    progress.finish_and_clear();

    let mut parameters = vec![
        ("server", json!(config.server)),
        ("topic", json!(args.topic)),
        ("partitions", json!(partitions)),
        ("consumers", json!(args.consumers)),
        ("group", json!(group_id)),
        ("assignor", json!(args.assignor)),
    ];
    parameters.extend(args.fetch.parameters());
    let mut report = Report::reading(
        "group",
        parameters,
        (records, bytes),
        elapsed,
        CpuSpent::between(cpu_before, cpu_after),
    );
    report.results.push((
        "settle_ms",
        json!(u64::try_from(settle_time.as_millis()).unwrap_or(u64::MAX)),
    ));
    Ok(report)
}

/// Every partition in `0..partitions` owned by exactly one member, and as many members own
/// something as can (all of them, or one per partition).
fn complete_assignment(owned: &[Vec<u32>], partitions: u32) -> bool {
    let mut seen = BTreeSet::new();
    for partition in owned.iter().flatten() {
        if !seen.insert(*partition) {
            return false;
        }
    }
    let owners = owned.iter().filter(|mine| !mine.is_empty()).count();
    seen.len() == partitions as usize && owners == owned.len().min(partitions as usize)
}

/// One member of the `group` workload.
struct Member {
    config: ClientConfig,
    consumer_config: ConsumerConfig,
    topic: String,
    ranges: Arc<BTreeMap<u32, (i64, i64)>>,
    /// Where the member publishes its partitions while the group settles.
    assignment: watch::Sender<Vec<u32>>,
    settled: watch::Receiver<bool>,
    start_line: Arc<Barrier>,
    max_poll_records: usize,
    idle_timeout: Duration,
    consumed: Arc<AtomicU64>,
}

impl Member {
    /// Joins, polls until the group has settled, seeks its partitions to their start, waits
    /// at the start line, then reads to the end offsets and leaves the group.
    async fn run(self) -> anyhow::Result<ReadOutcome> {
        let client = connect(&self.config).await?;
        let mut consumer = Consumer::new(&client, self.consumer_config.clone());
        consumer.subscribe(vec![self.topic.clone()])?;
        while !*self.settled.borrow() {
            // Positions start at the end, so these polls read nothing of the backlog.
            consumer
                .poll(SETTLE_CHECK_INTERVAL, self.max_poll_records)
                .await?;
            let mine: Vec<u32> = consumer
                .assignment()
                .into_iter()
                .filter(|partition| partition.topic == self.topic)
                .map(|partition| partition.partition)
                .collect();
            self.assignment.send_replace(mine);
        }
        let mut mine = BTreeMap::new();
        for partition in consumer.assignment() {
            let Some(&(start, end)) = self.ranges.get(&partition.partition) else {
                continue;
            };
            consumer.seek(&partition, start)?;
            mine.insert(partition.partition, (start, end));
        }
        self.start_line.wait().await;
        let job = ConsumerJob {
            ends: ends_of(&mine),
            max_poll_records: self.max_poll_records,
            idle_timeout: self.idle_timeout,
            consumed: self.consumed,
        };
        let outcome = job.run(&mut consumer).await;
        let _ = consumer.close().await;
        client.close().await;
        outcome
    }
}

// ---------------------------------------------------------------------------------------------
// broker-produce

/// Runs [`BrokerProduceArgs`]: the broker and its storage on the real disk, without QUIC,
/// so the figures show what the produce path does with several batches per partition.
async fn broker_produce(
    args: &BrokerProduceArgs,
    output: &Output,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    use ledge_node::broker::{Broker, BrokerConfig};
    use ledge_node::storage::{BackendChoice, SystemDisk};
    use ledge_protocol::wire::{
        CreatableTopic, CreateTopicsRequest, ErrorCode, ProducePartition, ProduceRequest,
        ProduceTopic, Request, Response,
    };
    if args.producers == 0 || args.batches_per_request == 0 || args.records_per_batch == 0 {
        bail!("--producers, --batches-per-request and --records-per-batch must be at least 1");
    }
    match std::fs::remove_dir_all(&args.data_dir) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).context("emptying --data-dir"),
    }
    let disk = SystemDisk::detect(BackendChoice::Auto)?;
    let broker = Arc::new(
        Broker::open(
            disk,
            &args.data_dir,
            BrokerConfig::default(),
            Arc::new(SystemClock),
        )
        .await
        .context("opening the broker")?,
    );
    let topic = "broker-produce".to_string();
    let Response::CreateTopics(created) = broker
        .handle(Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                replication_factor: None,
                name: topic.clone(),
                partitions: args.producers,
                configs: Vec::new(),
            }],
            validate_only: false,
        }))
        .await
    else {
        bail!("CreateTopics answered with another response");
    };
    if let Some(failed) = created
        .topics
        .iter()
        .find(|topic| topic.error != ErrorCode::None)
    {
        bail!("creating the topic: {:?} {}", failed.error, failed.message);
    }
    // One request's records: the same bytes every time (the broker does not look at values).
    let value = Bytes::from(vec![0x5a; args.record_bytes]);
    let records: Vec<ledge_protocol::Record> = (0..args.records_per_batch)
        .map(|_| ledge_protocol::Record {
            timestamp: SystemClock.wall_time_ms(),
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
        })
        .collect();
    let one_batch = ledge_protocol::encode_batch(&records, &Default::default())?;
    let request_records = Bytes::from(vec![one_batch; args.batches_per_request].concat());
    let records_per_request = (args.batches_per_request * args.records_per_batch) as u64;
    let acks = args.acks;
    let progress = output.progress_bar(
        Some(args.requests * u64::from(args.producers) * records_per_request),
        "broker-produce",
    );
    let acked = Arc::new(AtomicU64::new(0));
    let ticker = spawn_ticker(progress.clone(), acked.clone());
    let cpu_before = cpu.sample()?;
    let started = now();
    let mut tasks = Vec::new();
    for partition in 0..args.producers {
        let broker = Arc::clone(&broker);
        let topic = topic.clone();
        let request_records = request_records.clone();
        let acked = acked.clone();
        let requests = args.requests;
        tasks.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            let mut first_error = None;
            let mut errors = 0u64;
            for _ in 0..requests {
                let sent = now();
                let response = broker
                    .handle(Request::Produce(ProduceRequest {
                        acks,
                        timeout_ms: 30_000,
                        topics: vec![ProduceTopic {
                            name: topic.clone(),
                            partitions: vec![ProducePartition {
                                current_leader_epoch: None,
                                partition,
                                records: request_records.clone(),
                            }],
                        }],
                    }))
                    .await;
                histogram.saturating_record(micros(now() - sent));
                let failed = match &response {
                    Response::Produce(produced) => produced
                        .topics
                        .iter()
                        .flat_map(|topic| &topic.partitions)
                        .find(|partition| partition.error != ErrorCode::None)
                        .map(|partition| format!("{:?} {}", partition.error, partition.message)),
                    other => Some(format!("unexpected response {other:?}")),
                };
                match failed {
                    Some(error) => {
                        errors += records_per_request;
                        first_error.get_or_insert(error);
                    }
                    None => {
                        acked.fetch_add(records_per_request, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok((histogram, errors, first_error))
        }));
    }
    let mut histogram = new_histogram()?;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (part, failed, error) = task.await??;
        histogram.add(part)?;
        errors += failed;
        if first_error.is_none() {
            first_error = error;
        }
    }
    let elapsed = now() - started;
    let cpu_after = cpu.sample()?;
    ticker.abort();
    progress.finish_and_clear();
    broker.close().await;
    let delivered = acked.load(Ordering::Relaxed);
    Ok(Report {
        workload: "broker-produce",
        parameters: vec![
            ("producers", args.producers.into()),
            ("requests per producer", args.requests.into()),
            ("batches per request", args.batches_per_request.into()),
            ("records per batch", args.records_per_batch.into()),
            ("record_bytes", json!(args.record_bytes)),
            ("acks", acks_name(args.acks).into()),
        ],
        records: delivered,
        bytes: delivered * args.record_bytes as u64,
        elapsed,
        latencies: vec![Latency {
            label: "latency (request → answer)",
            key: "latency_us",
            histogram,
        }],
        results: Vec::new(),
        cpu: CpuSpent::between(cpu_before, cpu_after),
        errors,
        first_error,
    })
}

// ---------------------------------------------------------------------------------------------
// failover

/// When one record of a `failover` run was due and when its answer reached this program.
struct Answered {
    due: Instant,
    at: Instant,
    /// `None`: acknowledged; otherwise why the record failed.
    error: Option<String>,
}

/// Produces to partition 0 of `--topic` at `--rate` (open-loop, one producer, acks as given:
/// all by default), sends SIGKILL to the process of the partition's leader after
/// `--kill-after`, keeps producing for `--run-after-kill`, and reports the failover: from
/// the kill to the first acknowledgement of a record sent after the old leader was dead
/// (which only a new leader can give), and the gap between the last acknowledgement before
/// the kill and that first one.
async fn failover(
    config: &ClientConfig,
    args: &FailoverArgs,
    topic_settings: &TopicSettings,
    output: &Output,
) -> anyhow::Result<Report> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    let pids = parse_node_pids(&args.node_pids)?;
    let admin_client = connect(config).await?;
    ensure_topic(&admin_client, &args.topic, 1, topic_settings).await?;
    let admin = Admin::new(&admin_client);
    // A topic just created may be described before its leader is.
    let drain = Duration::from_secs(args.drain_timeout_secs);
    let patience = now() + drain;
    let (before, old_leader) = loop {
        let partition = first_partition(&admin, &args.topic).await?;
        if let Some(leader) = partition.leader {
            break (partition, leader);
        }
        if now() >= patience {
            bail!("partition 0 of {} has no leader", args.topic);
        }
        tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
    };
    let controller = admin
        .describe_cluster()
        .await
        .context("describing the cluster")?
        .controller;
    let (before, old_leader, controller) = match place_leader(
        &admin,
        &args.topic,
        args.leader_on,
        old_leader,
        controller,
        patience,
    )
    .await?
    {
        Some(placed) => placed,
        None => (before, old_leader, controller),
    };
    let Some(&leader_pid) = pids.get(&old_leader) else {
        bail!("partition 0's leader is node {old_leader}, which --node-pids does not name");
    };
    admin_client.close().await;

    let producer_config = args.producer.config(0)?;
    let client = connect(config).await?;
    let producer = Producer::new(&client, producer_config.clone())
        .await
        .context("creating a producer")?;
    let payloads = args.payload.pool(args.record_bytes);
    let total = records_in(args.rate, args.kill_after + args.run_after_kill);
    let acked = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(Some(total), "failover");
    let ticker = spawn_ticker(progress.clone(), acked.clone());
    let started = now();
    let schedule = Schedule {
        epoch: started + PACED_START_DELAY,
        rate: args.rate,
    };
    let kill_due = schedule.epoch + args.kill_after;

    let (deliveries, incoming) = mpsc::channel(DELIVERY_QUEUE);
    let collector = tokio::spawn(collect_answers(incoming, acked.clone()));
    let topic = args.topic.clone();
    let runtime = tokio::runtime::Handle::current();
    // The paced send loop on a thread of its own, as `ProducerJob` (see `pause_until`).
    let sender = tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let mut refused = Vec::new();
            for index in 0..total {
                let due = schedule.due(index);
                pause_until(due);
                let payload = payloads[(index as usize) % payloads.len()].clone();
                let record = ProducerRecord::new(topic.clone(), payload).partition(0);
                match producer.send(record).await {
                    // The collector only stops once this sender is dropped.
                    Ok(delivery) => drop(deliveries.send((due, delivery)).await),
                    Err(error) => refused.push((due, now(), error.to_string())),
                }
            }
            drop(deliveries);
            producer.flush().await;
            producer.close().await;
            client.close().await;
            refused
        })
    });

    tokio::time::sleep_until(tokio::time::Instant::from_std(kill_due)).await;
    // Taken before `kill` runs, so the figures include its fork and exec (a millisecond or
    // two): they err long, never short.
    let killed_at = now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &leader_pid.to_string()])
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -KILL {leader_pid} (node {old_leader}) failed: {status}");
    }
    // Only a record sent once the old leader is surely dead is surely acknowledged by the
    // new one: the old leader may still answer records sent while `kill` runs.
    let dead_at = now();

    let refused = sender.await.context("the send loop panicked")?;
    let mut answers = tokio::time::timeout(drain, collector)
        .await
        .context("acknowledgements still missing after --drain-timeout-secs")?
        .context("the collector panicked")??;
    ticker.abort();
    progress.finish_and_clear();
    for (due, at, error) in refused {
        answers.push(Answered {
            due,
            at,
            error: Some(error),
        });
    }
    answers.sort_by_key(|answer| answer.at);
    let failed: Vec<&str> = answers
        .iter()
        .filter_map(|answer| answer.error.as_deref())
        .collect();
    let errors = failed.len() as u64;
    let first_error = failed.first().map(|error| (*error).to_string());

    // Metadata from the survivors: who leads now.
    let after = new_leader(config, &args.topic, old_leader, drain).await?;

    let last_before = answers
        .iter()
        .filter(|answer| answer.error.is_none() && answer.at < killed_at)
        .map(|answer| answer.at)
        .max();
    let first_after = answers
        .iter()
        .filter(|answer| answer.error.is_none() && answer.due >= dead_at)
        .map(|answer| answer.at)
        .min();
    let Some(first_after) = first_after else {
        bail!("no record sent after the kill was acknowledged: {first_error:?}");
    };
    let millis = |duration: Duration| duration.as_secs_f64() * 1000.0;
    let failover_ms = millis(first_after - killed_at);
    let gap_ms = last_before.map(|last| millis(first_after - last));

    let mut before_kill = new_histogram()?;
    let mut all = new_histogram()?;
    let mut delivered = 0;
    for answer in answers.iter().filter(|answer| answer.error.is_none()) {
        delivered += 1;
        let latency = micros(answer.at.saturating_duration_since(answer.due));
        all.saturating_record(latency);
        if answer.at < killed_at {
            before_kill.saturating_record(latency);
        }
    }
    let mut parameters = vec![
        ("server", json!(config.server)),
        ("topic", json!(args.topic)),
        ("rate", json!(args.rate)),
        ("record_bytes", json!(args.record_bytes)),
        ("kill_after_s", json!(args.kill_after.as_secs_f64())),
        ("run_after_kill_s", json!(args.run_after_kill.as_secs_f64())),
        ("replication_factor", json!(before.replicas.len())),
        ("idle_timeout_ms", json!(config.idle_timeout.as_millis())),
        (
            "connect_timeout_ms",
            json!(config.connect_timeout.as_millis()),
        ),
    ];
    parameters.extend(args.producer.parameters(&producer_config));
    Ok(Report {
        workload: "failover",
        parameters,
        records: delivered,
        bytes: delivered * args.record_bytes as u64,
        elapsed: now() - started,
        latencies: vec![
            Latency {
                label: "latency (due → ack), acked before the kill",
                key: "before_kill_latency_us",
                histogram: before_kill,
            },
            Latency {
                label: "latency (due → ack), all",
                key: "latency_us",
                histogram: all,
            },
        ],
        results: vec![
            ("failover_ms", json!(failover_ms)),
            ("ack_gap_ms", json!(gap_ms)),
            ("old_leader", json!(old_leader)),
            ("old_leader_epoch", json!(before.leader_epoch)),
            ("new_leader", json!(after.leader)),
            ("new_leader_epoch", json!(after.leader_epoch)),
            ("isr_after", json!(after.isr)),
            ("controller_before", json!(controller)),
            ("killed_controller", json!(controller == Some(old_leader))),
            ("leader_on", json!(format!("{:?}", args.leader_on))),
        ],
        cpu: CpuSpent {
            node: None,
            bench: None,
        },
        errors,
        first_error,
    })
}

/// `1=4711,2=4712` as node id → process id.
fn parse_node_pids(text: &str) -> anyhow::Result<BTreeMap<u32, u32>> {
    let mut pids = BTreeMap::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let Some((node, pid)) = pair.split_once('=') else {
            bail!("--node-pids: {pair:?} is not ID=PID");
        };
        let node: u32 = node
            .trim()
            .parse()
            .with_context(|| format!("--node-pids: node id {node:?}"))?;
        let pid: u32 = pid
            .trim()
            .parse()
            .with_context(|| format!("--node-pids: pid {pid:?}"))?;
        pids.insert(node, pid);
    }
    Ok(pids)
}

/// Partition 0 of `topic` as Metadata describes it.
async fn first_partition(admin: &Admin, topic: &str) -> anyhow::Result<PartitionDescription> {
    let described = admin
        .describe_topics(vec![topic.to_string()])
        .await
        .with_context(|| format!("describing topic {topic}"))?;
    described
        .into_iter()
        .flat_map(|description| description.partitions)
        .find(|partition| partition.partition == 0)
        .with_context(|| format!("topic {topic} has no partition 0"))
}

/// Moves partition 0 of `topic`'s leadership where `want` asks (see `--leader-on`): reorders
/// its replicas with the wanted node first and elects the preferred leader, until the
/// partition's leader and the active controller stand as wanted (or `patience` ends).
/// `None` when they already did; otherwise the partition, its leader and the controller.
async fn place_leader(
    admin: &Admin,
    topic: &str,
    want: LeaderOn,
    leader: u32,
    controller: Option<u32>,
    patience: Instant,
) -> anyhow::Result<Option<(PartitionDescription, u32, Option<u32>)>> {
    let placed = |leader: u32, controller: Option<u32>| match want {
        LeaderOn::Any => true,
        LeaderOn::Controller => controller == Some(leader),
        LeaderOn::NotController => controller.is_some() && controller != Some(leader),
    };
    if placed(leader, controller) {
        return Ok(None);
    }
    loop {
        let Some(active) = controller_now(admin).await? else {
            if now() >= patience {
                bail!("the cluster has no active controller");
            }
            tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
            continue;
        };
        let partition = first_partition(admin, topic).await?;
        if let Some(leader) = partition.leader
            && placed(leader, Some(active))
        {
            return Ok(Some((partition, leader, Some(active))));
        }
        if now() >= patience {
            bail!(
                "could not place partition 0's leader ({:?}) as --leader-on {want:?} asks (controller {active})",
                partition.leader
            );
        }
        let target = match want {
            LeaderOn::Controller => Some(active),
            _ => partition
                .replicas
                .iter()
                .copied()
                .find(|node| *node != active),
        };
        let Some(target) = target.filter(|node| partition.replicas.contains(node)) else {
            bail!(
                "partition 0 of {topic} has no replica where --leader-on {want:?} asks (replicas {:?}, controller {active})",
                partition.replicas
            );
        };
        if partition.replicas.first() != Some(&target) {
            let mut replicas = vec![target];
            replicas.extend(
                partition
                    .replicas
                    .iter()
                    .copied()
                    .filter(|node| *node != target),
            );
            admin
                .reassign_partition(topic, 0, replicas)
                .await
                .with_context(|| format!("reordering the replicas of {topic}/0"))?;
        }
        // The reordering lands through the controller; the election may find it not there
        // yet, and is asked again.
        let _ = admin.elect_preferred_leaders(Some(topic)).await;
        tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
    }
}

/// The active controller, as the cluster describes it now.
async fn controller_now(admin: &Admin) -> anyhow::Result<Option<u32>> {
    Ok(admin
        .describe_cluster()
        .await
        .context("describing the cluster")?
        .controller)
}

/// Partition 0 of `topic` once Metadata names a leader other than `old_leader`, asked anew
/// every [`SETTLE_CHECK_INTERVAL`] for at most `patience`.
async fn new_leader(
    config: &ClientConfig,
    topic: &str,
    old_leader: u32,
    patience: Duration,
) -> anyhow::Result<PartitionDescription> {
    let deadline = now() + patience;
    let client = connect(config).await?;
    let admin = Admin::new(&client);
    loop {
        if let Ok(partition) = first_partition(&admin, topic).await
            && partition.leader.is_some_and(|leader| leader != old_leader)
        {
            client.close().await;
            return Ok(partition);
        }
        if now() >= deadline {
            bail!("Metadata named no new leader of {topic} within {patience:?}");
        }
        tokio::time::sleep(SETTLE_CHECK_INTERVAL).await;
    }
}

/// Awaits each delivery and notes when its answer came, whatever it was.
async fn collect_answers(
    mut incoming: mpsc::Receiver<(Instant, DeliveryFuture)>,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Answered>> {
    let mut answers = Vec::new();
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(answer) = pending.next(), if !pending.is_empty() => {
                acked.fetch_add(1, Ordering::Relaxed);
                answers.push(answer);
            }
            next = incoming.recv(), if open => match next {
                Some((due, delivery)) => pending.push(async move {
                    let error = delivery.await.err().map(|error| error.to_string());
                    Answered { due, at: now(), error }
                }),
                None => open = false,
            },
            else => break,
        }
    }
    Ok(answers)
}

// ---------------------------------------------------------------------------------------------
// shared pieces

// ---------------------------------------------------------------------------------------------
// transform and restore (issue 17)

/// The transform `name` as the node describes it.
async fn describe_transform(
    admin: &Admin,
    name: &str,
) -> anyhow::Result<ledge_client::TransformDescription> {
    admin
        .describe_transforms(vec![name.to_string()])
        .await
        .with_context(|| format!("describing transform {name}"))?
        .into_iter()
        .next()
        .with_context(|| format!("transform {name} not described"))
}

/// The values of a counting aggregate's table added up (`None` while its state is not
/// ready). An error if one scan cannot answer the whole table or a value is not a count.
async fn table_sum(admin: &Admin, name: &str) -> anyhow::Result<Option<u64>> {
    let Ok(scan) = admin.table_scan(name, b"", 0).await else {
        return Ok(None);
    };
    if scan.truncated {
        bail!(
            "table {name} has more keys than one scan answers (transforms.table_scan_entries_max): \
             use fewer distinct keys"
        );
    }
    let mut sum = 0u64;
    for entry in &scan.entries {
        let count: u64 = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .with_context(|| {
                format!(
                    "table {name}: the value of {:?} is not a count",
                    String::from_utf8_lossy(&entry.key)
                )
            })?;
        sum = sum.saturating_add(count);
    }
    Ok(Some(sum))
}

async fn transform(
    config: &ClientConfig,
    args: &TransformArgs,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    let module = std::fs::read(&args.module)
        .with_context(|| format!("reading {}", args.module.display()))?;
    let mut params = Vec::new();
    for param in &args.params {
        let Some((name, value)) = param.split_once('=') else {
            bail!("--param {param:?} is not NAME=VALUE");
        };
        params.push((name.to_string(), value.to_string()));
    }
    let ranges = topic_ranges(config, &args.input).await?;
    let expected = records_between(ranges.values());
    if expected == 0 {
        bail!("topic {} is empty: write the input first", args.input);
    }
    let client = connect(config).await?;
    let admin = Admin::new(&client);
    let mut spec = ledge_client::TransformSpec::new(
        args.name.clone(),
        args.kind.into(),
        Bytes::from(module),
        args.input.clone(),
    );
    spec.output = args.output.clone();
    spec.params = params;
    let poll = Duration::from_millis(args.poll_ms.max(1));
    let cpu_before = cpu.sample()?;
    let started = now();
    let deadline = started + Duration::from_secs(args.timeout_secs);
    admin
        .deploy_transform(spec)
        .await
        .with_context(|| format!("deploying transform {}", args.name))?;
    let deployed = started.elapsed();
    let mut first_progress: Option<Duration> = None;
    let mut polls = 0u64;
    let description = loop {
        polls += 1;
        let description = describe_transform(&admin, &args.name).await?;
        if description.state == ledge_client::TransformState::Failed {
            bail!(
                "transform {} failed: {}",
                args.name,
                description.last_error.unwrap_or_default()
            );
        }
        if first_progress.is_none() && (description.records_in > 0 || description.lag < expected) {
            first_progress = Some(started.elapsed());
        }
        let read_all = description.lag == 0 && description.records_in >= expected;
        let done = match args.until {
            DoneWhen::Lag => read_all,
            DoneWhen::TableSum => {
                read_all && table_sum(&admin, &args.name).await? == Some(expected)
            }
        };
        if done {
            break description;
        }
        if now() > deadline {
            bail!(
                "transform {} not done after {} s: lag {}, records in {} of {expected}, last error {:?}",
                args.name,
                args.timeout_secs,
                description.lag,
                description.records_in,
                description.last_error
            );
        }
        tokio::time::sleep(poll).await;
    };
    let elapsed = started.elapsed();
    let spent = CpuSpent::between(cpu_before, cpu.sample()?);
    let after_first = first_progress.map_or(elapsed, |first| elapsed.saturating_sub(first));
    if args.remove {
        admin
            .remove_transform(&args.name)
            .await
            .with_context(|| format!("removing transform {}", args.name))?;
    }
    client.close().await;
    let kind = ledge_client::PluginKind::from(args.kind);
    let mut report = Report::reading(
        "transform",
        vec![
            ("name", json!(args.name)),
            ("kind", json!(format!("{kind:?}").to_lowercase())),
            ("input", json!(args.input)),
            (
                "until",
                json!(match args.until {
                    DoneWhen::Lag => "lag",
                    DoneWhen::TableSum => "table-sum",
                }),
            ),
        ],
        (expected, 0),
        elapsed,
        spent,
    );
    report.results = vec![
        (
            "deploy_ms",
            json!(round(deployed.as_secs_f64() * 1000.0, 1)),
        ),
        (
            "first_progress_ms",
            json!(first_progress.map(|first| round(first.as_secs_f64() * 1000.0, 1))),
        ),
        (
            "records_per_s_after_first",
            json!(round(expected as f64 / after_first.as_secs_f64(), 0)),
        ),
        ("records_out", json!(description.records_out)),
        ("records_dead", json!(description.records_dead)),
        ("state_bytes", json!(description.state_bytes)),
        ("polls", json!(polls)),
    ];
    Ok(report)
}

async fn restore(
    config: &ClientConfig,
    args: &RestoreArgs,
    cpu: &CpuMeter,
) -> anyhow::Result<Report> {
    let wall_ms = || u64::try_from(SystemClock.wall_time_ms()).unwrap_or(0);
    let started_at_ms = args.started_at_ms.unwrap_or_else(wall_ms);
    let poll = Duration::from_millis(args.poll_ms.max(1));
    let deadline = now() + Duration::from_secs(args.timeout_secs);
    // The node may still be starting: connect until it answers.
    let client = loop {
        match Client::connect(config.clone()).await {
            Ok(client) => break client,
            Err(error) if now() > deadline => {
                return Err(error).with_context(|| format!("connecting to {}", config.server));
            }
            Err(_) => tokio::time::sleep(poll).await,
        }
    };
    let admin = Admin::new(&client);
    let cpu_before = cpu.sample()?;
    let mut polls = 0u64;
    let description = loop {
        polls += 1;
        // A node still opening its logs may not know the transform yet.
        if let Ok(description) = describe_transform(&admin, &args.name).await {
            if description.state == ledge_client::TransformState::Failed {
                bail!(
                    "transform {} failed: {}",
                    args.name,
                    description.last_error.unwrap_or_default()
                );
            }
            if description.state_partitions > 0
                && description.state_partitions_ready == description.state_partitions
            {
                break description;
            }
        }
        if now() > deadline {
            bail!(
                "transform {} not restored after {} s",
                args.name,
                args.timeout_secs
            );
        }
        tokio::time::sleep(poll).await;
    };
    let ready_at_ms = wall_ms();
    let spent = CpuSpent::between(cpu_before, cpu.sample()?);
    let restore_time = Duration::from_millis(ready_at_ms.saturating_sub(started_at_ms));
    let sample = args.sample.min(args.keys);
    let step = (args.keys / sample.max(1)).max(1);
    let (mut missing, mut wrong) = (0u64, 0u64);
    let mut first_error = None;
    for index in 0..sample {
        let key = (index * step).to_string();
        match admin.table_get(&args.name, key.as_bytes()).await? {
            None => {
                missing += 1;
                first_error.get_or_insert_with(|| format!("key {key} is missing"));
            }
            Some(value) => {
                if let Some(expected) = &args.expect_value
                    && value.as_ref() != expected.as_bytes()
                {
                    wrong += 1;
                    first_error.get_or_insert_with(|| {
                        format!(
                            "key {key} holds {:?}, expected {expected:?}",
                            String::from_utf8_lossy(&value)
                        )
                    });
                }
            }
        }
    }
    client.close().await;
    let mut report = Report::reading(
        "restore",
        vec![("name", json!(args.name))],
        (args.keys, 0),
        restore_time,
        spent,
    );
    let seconds = restore_time.as_secs_f64().max(f64::MIN_POSITIVE);
    report.results = vec![
        ("restore_records", json!(description.restore_records)),
        (
            "restore_records_per_s",
            json!(round(description.restore_records as f64 / seconds, 0)),
        ),
        ("state_bytes", json!(description.state_bytes)),
        ("state_partitions", json!(description.state_partitions)),
        ("sampled", json!(sample)),
        ("polls", json!(polls)),
    ];
    report.errors = missing + wrong;
    report.first_error = first_error;
    Ok(report)
}

/// Monotonic time, from the one real clock (the workspace reads time only through it).
fn now() -> Instant {
    SystemClock.now()
}

async fn connect(config: &ClientConfig) -> anyhow::Result<Client> {
    Client::connect(config.clone())
        .await
        .with_context(|| format!("connecting to {}", config.server))
}

/// Latencies in microseconds, 3 significant digits, up to [`LATENCY_MAX_US`].
fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Moves the progress bar to `counter` every [`PROGRESS_INTERVAL`] until aborted.
fn spawn_ticker(progress: ProgressBar, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
        loop {
            interval.tick().await;
            progress.set_position(counter.load(Ordering::Relaxed));
        }
    })
}

/// Where the results and the progress bar go.
struct Output {
    json: bool,
    quiet: bool,
}

impl Output {
    /// A bar to `total`, or a counter when the run ends by time.
    fn progress_bar(&self, total: Option<u64>, label: &'static str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "{msg:8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec:0}, eta {eta})"
        } else {
            "{msg:8} [{elapsed_precise}] {human_pos} ({per_sec:0})"
        };
        // The templates are constants; should one ever fail to parse, the default style stays.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_message(label);
        bar
    }

    fn print(&self, report: &Report) {
        if self.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.table());
        }
    }
}

/// One workload's result.
struct Report {
    workload: &'static str,
    /// The settings that shape the figures, in display order.
    parameters: Vec<(&'static str, serde_json::Value)>,
    /// Records delivered (produce), read (consume, group) or counted (e2e: read and due
    /// after the warm-up).
    records: u64,
    /// Bytes of values and keys in those records.
    bytes: u64,
    elapsed: Duration,
    /// Latency histograms, in microseconds, in display order.
    latencies: Vec<Latency>,
    /// Other figures of the workload, in display order.
    results: Vec<(&'static str, serde_json::Value)>,
    /// CPU time of the node (with `--node-pid`) and of this program over the measured part.
    cpu: CpuSpent,
    errors: u64,
    first_error: Option<String>,
}

/// One latency histogram of a report.
struct Latency {
    /// Row label in the table, e.g. `latency (send → ack)`.
    label: &'static str,
    /// Key in the JSON object, e.g. `latency_us`.
    key: &'static str,
    histogram: Histogram<u64>,
}

impl Latency {
    /// p50, p99, p99.9 and max, in microseconds; `None` when nothing was recorded.
    fn percentiles(&self) -> Option<[(&'static str, u64); 4]> {
        let histogram = &self.histogram;
        if histogram.is_empty() {
            return None;
        }
        Some([
            ("p50", histogram.value_at_quantile(0.50)),
            ("p99", histogram.value_at_quantile(0.99)),
            ("p99.9", histogram.value_at_quantile(0.999)),
            ("max", histogram.max()),
        ])
    }
}

/// Reads the CPU time of the node (`--node-pid`) and of this program.
struct CpuMeter {
    node_pid: Option<u32>,
}

/// User + system CPU time so far of each process (all threads, live and exited).
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    node: Option<Duration>,
    bench: Option<Duration>,
}

/// CPU time between two samples.
#[derive(Debug, Clone, Copy)]
struct CpuSpent {
    node: Option<Duration>,
    bench: Option<Duration>,
}

impl CpuMeter {
    /// The node's CPU time (an error if `--node-pid` names no readable process) and this
    /// program's (best effort: `None` where `/proc` is missing).
    fn sample(&self) -> anyhow::Result<CpuSample> {
        let node = match self.node_pid {
            Some(pid) => Some(process_cpu(&format!("/proc/{pid}/stat"))?),
            None => None,
        };
        Ok(CpuSample {
            node,
            bench: process_cpu("/proc/self/stat").ok(),
        })
    }
}

impl CpuSpent {
    fn between(before: CpuSample, after: CpuSample) -> Self {
        let spent = |before: Option<Duration>, after: Option<Duration>| {
            Some(after?.saturating_sub(before?))
        };
        Self {
            node: spent(before.node, after.node),
            bench: spent(before.bench, after.bench),
        }
    }
}

/// utime + stime of the process whose `stat` file is `path`.
fn process_cpu(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces, hence the last ')'): state is
    // field 3 of proc_pid_stat(5), utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |field: usize| -> anyhow::Result<u64> {
        fields
            .get(field - 3)
            .and_then(|text| text.parse().ok())
            .with_context(|| format!("field {field} of {path}"))
    };
    let ticks = ticks(14)? + ticks(15)?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

impl Report {
    /// The report of a read workload: no latencies, no errors.
    fn reading(
        workload: &'static str,
        parameters: Vec<(&'static str, serde_json::Value)>,
        (records, bytes): (u64, u64),
        elapsed: Duration,
        cpu: CpuSpent,
    ) -> Self {
        Self {
            workload,
            parameters,
            records,
            bytes,
            elapsed,
            latencies: Vec::new(),
            results: Vec::new(),
            cpu,
            errors: 0,
            first_error: None,
        }
    }

    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// Adds the node's and this program's CPU time, in total and per record, to the results.
    fn add_cpu(&mut self) {
        let processes = [
            (self.cpu.node, "node_cpu_s", "node_cpu_us_per_record"),
            (self.cpu.bench, "bench_cpu_s", "bench_cpu_us_per_record"),
        ];
        for (cpu, total_key, per_record_key) in processes {
            let Some(cpu) = cpu else {
                continue;
            };
            self.results
                .push((total_key, json!(round(cpu.as_secs_f64(), 3))));
            if self.records > 0 {
                let per_record = cpu.as_secs_f64() * 1e6 / self.records as f64;
                self.results
                    .push((per_record_key, json!(round(per_record, 3))));
            }
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("workload".into(), json!(self.workload));
        for (name, value) in &self.parameters {
            object.insert((*name).into(), value.clone());
        }
        object.insert("records".into(), json!(self.records));
        object.insert("bytes".into(), json!(self.bytes));
        object.insert("elapsed_s".into(), json!(self.elapsed.as_secs_f64()));
        object.insert("records_per_s".into(), json!(self.records_per_second()));
        object.insert("mb_per_s".into(), json!(self.megabytes_per_second()));
        for latency in &self.latencies {
            if let Some(percentiles) = latency.percentiles() {
                let values: serde_json::Map<String, serde_json::Value> = percentiles
                    .iter()
                    .map(|(name, micros)| ((*name).to_string(), json!(micros)))
                    .collect();
                object.insert(latency.key.into(), values.into());
            }
        }
        for (name, value) in &self.results {
            object.insert((*name).into(), value.clone());
        }
        object.insert("errors".into(), json!(self.errors));
        serde_json::Value::Object(object)
    }

    fn table(&self) -> Table {
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        table.set_header(vec!["", self.workload]);
        let text = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        for (name, value) in &self.parameters {
            table.add_row(vec![(*name).to_string(), text(value)]);
        }
        table.add_row(vec!["records".to_string(), group_digits(self.records)]);
        table.add_row(vec![
            "elapsed".to_string(),
            format!("{:.3} s", self.elapsed.as_secs_f64()),
        ]);
        table.add_row(vec![
            "records/s".to_string(),
            group_digits(self.records_per_second().round() as u64),
        ]);
        table.add_row(vec![
            "MB/s".to_string(),
            format!("{:.1}", self.megabytes_per_second()),
        ]);
        for latency in &self.latencies {
            if let Some(percentiles) = latency.percentiles() {
                for (name, micros) in percentiles {
                    table.add_row(vec![
                        format!("{} {name}", latency.label),
                        format!("{:.3} ms", micros as f64 / 1000.0),
                    ]);
                }
            }
        }
        for (name, value) in &self.results {
            table.add_row(vec![(*name).to_string(), text(value)]);
        }
        if self.errors > 0 {
            table.add_row(vec!["errors".to_string(), group_digits(self.errors)]);
        }
        if let Some(column) = table.column_mut(1) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        table
    }
}

/// `value` rounded to `decimals` places, for figures meant to be read.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// `1234567` as `1,234,567`.
fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}
