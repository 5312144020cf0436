//! `ledge-bench`: a load generator over the Ledge SDK against a running node.
//!
//! Workloads (issue 7, item 1):
//!
//! - `produce`: `--records` records of `--record-bytes` bytes each (payloads from a fixed-seed
//!   generator, so every run sends the same bytes) to `--topic`, created with `--partitions`
//!   if it does not exist, from `--producers` producers (one QUIC connection each). Reports
//!   records/s, MB/s and produce latency (from `send` to the acknowledgement) at
//!   p50/p99/p99.9/max from an HdrHistogram.
//! - `consume`: reads `--topic` from the beginning with `--consumers` consumers (manual
//!   assignment, the partitions dealt out round-robin, one QUIC connection each) up to the end
//!   offsets captured at the start. Reports records/s and MB/s.
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
//!
//! # one million 1 KiB records, acks=all, one partition, one producer
//! target/release/ledge-bench --server 127.0.0.1:19777 --ca /tmp/lb-data/tls/ca.pem \
//!     produce --records 1000000 --record-bytes 1024
//!
//! # acks=1, four partitions, two producers, 256 KiB batches, lz4, JSON output
//! target/release/ledge-bench --server 127.0.0.1:19777 --ca /tmp/lb-data/tls/ca.pem --json \
//!     produce --topic bench-4 --partitions 4 --producers 2 --acks 1 \
//!     --batch-bytes 262144 --linger-ms 2 --compression lz4
//!
//! # read it all back with two consumers
//! target/release/ledge-bench --server 127.0.0.1:19777 --ca /tmp/lb-data/tls/ca.pem \
//!     consume --topic bench-4 --consumers 2
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::{CellAlignment, Table, presets};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledge_client::{
    Acks, Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig, DeliveryFuture,
    ErrorCode, NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
    Trust,
};
use ledge_node::clock::{Clock, SystemClock};
use serde_json::json;
use tokio::sync::mpsc;

/// Highest latency the histograms hold (longer ones are recorded as this): 10 minutes, in µs.
const LATENCY_MAX_US: u64 = 600_000_000;
/// Delivery futures queued between a producer's send loop and its collector; a full queue
/// holds the send loop back.
const DELIVERY_QUEUE: usize = 65_536;
/// How often the progress bar is brought up to date.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Load generator for a Ledge node.
#[derive(Debug, Parser)]
#[command(name = "ledge-bench", version, about)]
struct Cli {
    /// `host:port` of the node.
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
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Produce N records of S bytes and measure throughput and produce latency.
    Produce(ProduceArgs),
    /// Read a topic from the beginning up to its end offsets at the start.
    Consume(ConsumeArgs),
}

#[derive(Debug, Args)]
struct ProduceArgs {
    /// Topic; created with `--partitions` if it does not exist.
    #[arg(long, default_value = "ledge-bench")]
    topic: String,
    /// Partitions of the topic when this run creates it (an existing topic keeps its own).
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Records to send, over all producers.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes of each record's value (no key, no headers).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Producers, each with its own connection, sending an equal share of the records.
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// A partition's batch is closed at this many bytes (the SDK's `batch_size`).
    #[arg(long, default_value_t = ledge_client::BATCH_SIZE_DEFAULT)]
    batch_bytes: usize,
    /// Longest a batch waits for more records, in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
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
    /// Seed of the payload generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Distinct payloads generated and sent in turn (so compression sees realistic, not
    /// identical, records).
    #[arg(long, default_value_t = 64)]
    payload_pool: usize,
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
    /// Most records one `poll` returns.
    #[arg(long, default_value_t = 10_000)]
    max_poll_records: usize,
    /// Most bytes in one fetch answer.
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    fetch_max_bytes: u32,
    /// Most bytes per partition in one fetch answer.
    #[arg(long, default_value_t = 1024 * 1024)]
    partition_fetch_bytes: u32,
    /// Give up when no record arrives for this many seconds (a stuck node, not a limit on
    /// the run's length).
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let trust = if cli.insecure {
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
    let output = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let report = match &cli.workload {
        Workload::Produce(args) => produce(&config, args, &output).await?,
        Workload::Consume(args) => consume(&config, args, &output).await?,
    };
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
    output: &Output,
) -> anyhow::Result<Report> {
    if args.producers == 0 {
        bail!("--producers must be at least 1");
    }
    if args.partitions == 0 {
        bail!("--partitions must be at least 1");
    }
    let admin_client = connect(config).await?;
    let partitions = ensure_topic(&admin_client, &args.topic, args.partitions).await?;

    let mut producer_config = ProducerConfig::default();
    producer_config.acks = args.acks;
    producer_config.batch_size = args.batch_bytes;
    producer_config.linger = Duration::from_millis(args.linger_ms);
    producer_config.compression = args.compression.into();
    producer_config.enable_idempotence = args.acks == Acks::All && !args.no_idempotence;
    producer_config.buffer_memory = args.buffer_memory_bytes;
    producer_config.max_request_size = args.max_request_bytes;

    // Connect every producer (and get its producer id) before the clock starts.
    let mut producers = Vec::new();
    for _ in 0..args.producers {
        let client = connect(config).await?;
        let producer = Producer::new(&client, producer_config.clone())
            .await
            .context("creating a producer")?;
        producers.push((client, producer));
    }
    let payloads = payload_pool(args.seed, args.payload_pool.max(1), args.record_bytes);

    let acked = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(args.records, "produce");
    let ticker = spawn_ticker(progress.clone(), acked.clone());
    let started = now();
    let mut tasks = Vec::new();
    for (index, (client, producer)) in producers.into_iter().enumerate() {
        let share = share(args.records, args.producers, index);
        // Offset each producer in the pool so they do not send identical sequences.
        let first = index * args.payload_pool.max(1) / args.producers as usize;
        let job = ProducerJob {
            topic: args.topic.clone(),
            records: share,
            payloads: payloads.clone(),
            first_payload: first,
            acked: acked.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let outcome = job.run(&producer).await;
            producer.close().await;
            client.close().await;
            outcome
        }));
    }
    let mut latency = new_histogram()?;
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let outcome = task.await.context("a producer task panicked")??;
        latency
            .add(&outcome.latency)
            .context("merging histograms")?;
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
    }
    let elapsed = now().saturating_duration_since(started);
    ticker.abort();
    progress.finish_and_clear();
    admin_client.close().await;

    let delivered = args.records - errors;
    let bytes = delivered * args.record_bytes as u64;
    Ok(Report {
        workload: "produce",
        parameters: vec![
            ("server", json!(config.server)),
            ("topic", json!(args.topic)),
            ("partitions", json!(partitions)),
            ("producers", json!(args.producers)),
            ("record_bytes", json!(args.record_bytes)),
            ("batch_bytes", json!(args.batch_bytes)),
            ("linger_ms", json!(args.linger_ms)),
            ("acks", json!(acks_name(args.acks))),
            ("compression", json!(args.compression.name())),
            ("idempotence", json!(producer_config.enable_idempotence)),
        ],
        records: delivered,
        bytes,
        elapsed,
        latency: Some(latency),
        errors,
        first_error,
    })
}

/// One producer's part of the run.
struct ProducerJob {
    topic: String,
    records: u64,
    payloads: Arc<[Bytes]>,
    first_payload: usize,
    acked: Arc<AtomicU64>,
}

/// What one producer measured.
struct ProducerOutcome {
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl ProducerJob {
    /// Sends the records as fast as the producer takes them, handing each delivery future to
    /// a collector task that times it. The collector is its own task so an acknowledgement is
    /// noticed when it arrives, not when the send loop next pauses.
    async fn run(self, producer: &Producer) -> anyhow::Result<ProducerOutcome> {
        let (deliveries, incoming) = mpsc::channel(DELIVERY_QUEUE);
        let collector = tokio::spawn(collect(incoming, self.acked.clone()));
        let mut send_errors = 0;
        let mut first_error = None;
        for number in 0..self.records {
            let payload =
                &self.payloads[(self.first_payload + number as usize) % self.payloads.len()];
            let record = ProducerRecord::new(self.topic.clone(), payload.clone());
            let sent_at = now();
            match producer.send(record).await {
                Ok(delivery) => {
                    // The collector only stops once this sender is dropped.
                    let _ = deliveries.send((sent_at, delivery)).await;
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
        let mut outcome = collector.await.context("the collector panicked")??;
        outcome.errors += send_errors;
        outcome.first_error = first_error.or(outcome.first_error);
        Ok(outcome)
    }
}

/// Awaits delivery futures in whatever order they resolve and records send → ack latency.
async fn collect(
    mut incoming: mpsc::Receiver<(Instant, DeliveryFuture)>,
    acked: Arc<AtomicU64>,
) -> anyhow::Result<ProducerOutcome> {
    let mut latency = new_histogram()?;
    let mut errors = 0;
    let mut first_error = None;
    let mut pending = FuturesUnordered::new();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((took, result)) = pending.next(), if !pending.is_empty() => {
                acked.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(_) => latency.saturating_record(micros(took)),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error}"));
                    }
                }
            }
            next = incoming.recv(), if open => match next {
                Some((sent_at, delivery)) => pending.push(async move {
                    let result = delivery.await;
                    (now().saturating_duration_since(sent_at), result)
                }),
                None => open = false,
            },
            else => break,
        }
    }
    Ok(ProducerOutcome {
        latency,
        errors,
        first_error,
    })
}

/// Creates `topic` with `partitions` unless it exists; returns its partition count.
async fn ensure_topic(client: &Client, topic: &str, partitions: u32) -> anyhow::Result<u32> {
    let admin = Admin::new(client);
    match admin
        .create_topics(vec![NewTopic::new(topic, partitions)], false)
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
) -> anyhow::Result<Report> {
    if args.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let admin_client = connect(config).await?;
    let described = Admin::new(&admin_client)
        .describe_topics(vec![args.topic.clone()])
        .await
        .with_context(|| format!("describing topic {}", args.topic))?;
    let Some(topic) = described.into_iter().next() else {
        bail!("topic {} not found", args.topic);
    };
    admin_client.close().await;
    // Where each partition starts and the end offsets captured now: the run reads
    // [log start, high watermark) of every partition.
    let ranges: Vec<(u32, i64, i64)> = topic
        .partitions
        .iter()
        .map(|partition| {
            (
                partition.partition,
                partition.log_start_offset,
                partition.high_watermark,
            )
        })
        .collect();
    let partitions = u32::try_from(ranges.len())?;
    let consumers = args.consumers.min(partitions.max(1));
    if consumers < args.consumers {
        eprintln!(
            "note: {} has {partitions} partitions; using {consumers} consumers",
            args.topic
        );
    }
    let expected: u64 = ranges
        .iter()
        .map(|(_, start, end)| u64::try_from(end - start).unwrap_or(0))
        .sum();

    let mut consumer_config = ConsumerConfig::default();
    consumer_config.auto_offset_reset = OffsetReset::Earliest;
    consumer_config.enable_auto_commit = false;
    consumer_config.fetch_max_bytes = args.fetch_max_bytes;
    consumer_config.max_partition_fetch_bytes = args.partition_fetch_bytes;

    // Connect and position every consumer before the clock starts.
    let mut jobs = Vec::new();
    for index in 0..consumers {
        let mine: Vec<(u32, i64, i64)> = ranges
            .iter()
            .copied()
            .filter(|(partition, _, _)| partition % consumers == index)
            .collect();
        let client = connect(config).await?;
        let mut consumer = Consumer::new(&client, consumer_config.clone());
        consumer.assign(
            mine.iter()
                .map(|(partition, _, _)| TopicPartition::new(args.topic.clone(), *partition))
                .collect(),
        );
        for (partition, start, _) in &mine {
            consumer.seek(&TopicPartition::new(args.topic.clone(), *partition), *start)?;
        }
        let ends = mine
            .iter()
            .filter(|(_, start, end)| end > start)
            .map(|(partition, _, end)| (*partition, *end))
            .collect();
        jobs.push((client, consumer, ends));
    }

    let consumed = Arc::new(AtomicU64::new(0));
    let progress = output.progress_bar(expected, "consume");
    let ticker = spawn_ticker(progress.clone(), consumed.clone());
    let started = now();
    let mut tasks = Vec::new();
    for (client, consumer, ends) in jobs {
        let job = ConsumerJob {
            ends,
            max_poll_records: args.max_poll_records,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            consumed: consumed.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let outcome = job.run(consumer).await;
            client.close().await;
            outcome
        }));
    }
    let mut records = 0;
    let mut bytes = 0;
    for task in tasks {
        let (task_records, task_bytes) = task.await.context("a consumer task panicked")??;
        records += task_records;
        bytes += task_bytes;
    }
    let elapsed = now().saturating_duration_since(started);
    ticker.abort();
    progress.finish_and_clear();

    Ok(Report {
        workload: "consume",
        parameters: vec![
            ("server", json!(config.server)),
            ("topic", json!(args.topic)),
            ("partitions", json!(partitions)),
            ("consumers", json!(consumers)),
            ("max_poll_records", json!(args.max_poll_records)),
            ("fetch_max_bytes", json!(args.fetch_max_bytes)),
            ("partition_fetch_bytes", json!(args.partition_fetch_bytes)),
        ],
        records,
        bytes,
        elapsed,
        latency: None,
        errors: 0,
        first_error: None,
    })
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
    async fn run(self, mut consumer: Consumer) -> anyhow::Result<(u64, u64)> {
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
        Ok((records, bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// shared pieces

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
    fn progress_bar(&self, total: u64, label: &'static str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        // The template is a constant; should it ever fail to parse, the default style stays.
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:8} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec:0}, eta {eta})",
        ) {
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
    /// Records delivered (produce) or read (consume).
    records: u64,
    /// Bytes of values and keys in those records.
    bytes: u64,
    elapsed: Duration,
    /// Produce latency (send → acknowledged), in microseconds.
    latency: Option<Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Report {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// p50, p99, p99.9 and max, in microseconds.
    fn percentiles(&self) -> Option<[(&'static str, u64); 4]> {
        let latency = self
            .latency
            .as_ref()
            .filter(|histogram| !histogram.is_empty())?;
        Some([
            ("p50", latency.value_at_quantile(0.50)),
            ("p99", latency.value_at_quantile(0.99)),
            ("p99.9", latency.value_at_quantile(0.999)),
            ("max", latency.max()),
        ])
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
        if let Some(percentiles) = self.percentiles() {
            let latency: serde_json::Map<String, serde_json::Value> = percentiles
                .iter()
                .map(|(name, micros)| ((*name).to_string(), json!(micros)))
                .collect();
            object.insert("latency_us".into(), latency.into());
        }
        object.insert("errors".into(), json!(self.errors));
        serde_json::Value::Object(object)
    }

    fn table(&self) -> Table {
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        table.set_header(vec!["", self.workload]);
        for (name, value) in &self.parameters {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            table.add_row(vec![(*name).to_string(), text]);
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
        if let Some(percentiles) = self.percentiles() {
            for (name, micros) in percentiles {
                table.add_row(vec![
                    format!("latency {name}"),
                    format!("{:.3} ms", micros as f64 / 1000.0),
                ]);
            }
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
