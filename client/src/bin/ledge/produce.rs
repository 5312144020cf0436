//! `ledge produce TOPIC`: one record per line of standard input. On a topic with a
//! partitioner module the node picks the partitions; records its produce filter drops are
//! counted apart, not as failures. With `--format json`, one line per record on standard
//! output says where it went.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use ledge_client::{
    Acks, Admin, Client, DeliveryFuture, Header, MAX_REQUEST_SIZE_DEFAULT, ProduceError, Producer,
    ProducerConfig, ProducerRecord, RecordMetadata,
};
use ledge_protocol::wire::NODE_PARTITIONED;
use tokio::io::AsyncBufReadExt;

use crate::args::{ProduceArgs, ProduceFormat};

/// Records sent but not yet confirmed before reading waits for the oldest: enough to keep many
/// batches in flight, few enough that a failure is reported soon after it happens.
const DELIVERIES_PENDING_MAX: usize = 20_000;

pub(crate) async fn run(client: &Client, arguments: ProduceArgs) -> anyhow::Result<()> {
    let topic_limit = topic_batch_bytes_max(client, &arguments.topic).await;
    let mut config = ProducerConfig::default();
    config.acks = arguments.acks;
    // Kafka requires acks=all for idempotence; with 0 or 1 the user chose speed over it.
    config.enable_idempotence = arguments.acks == Acks::All;
    config.compression = arguments.compression.into();
    config.linger = Duration::from_millis(arguments.linger_ms);
    config.batch_size = arguments.batch_size;
    config.batch_size_max = arguments.batch_size_max;
    // The CLI writes to one topic, so by default a record may be as large as the topic
    // allows (the SDK's own default, 1 MiB, would refuse what a 4 MiB topic accepts).
    config.max_request_size = arguments.max_request_size.unwrap_or_else(|| {
        topic_limit.map_or(MAX_REQUEST_SIZE_DEFAULT, |limit| {
            limit.max(MAX_REQUEST_SIZE_DEFAULT)
        })
    });
    config.buffer_memory = config.buffer_memory.max(config.max_request_size);
    let producer = Producer::new(client, config)
        .await
        .context("cannot start the producer")?;
    let mut report = Report::new(arguments.format);
    let headers: Vec<Header> = arguments
        .headers
        .iter()
        .map(|(key, value)| Header {
            key: key.clone(),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        })
        .collect();

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {human_pos} records sent ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };

    let started = crate::now();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut pending: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut sent = 0u64;
    let mut dropped = 0u64;
    let mut failed = 0u64;
    // The longest throttle time an acknowledgement carried (client quotas).
    let mut throttled = Duration::ZERO;
    let mut failure: Option<anyhow::Error> = None;
    let mut line_number = 0u64;
    while let Some(mut line) = lines
        .next_segment()
        .await
        .context("cannot read standard input")?
    {
        line_number += 1;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let record = match record(&arguments, &headers, line, line_number) {
            Ok(record) => record,
            Err(error) => {
                failure = Some(error);
                break;
            }
        };
        match producer.send(record).await {
            Ok(delivery) => pending.push_back((line_number, delivery)),
            Err(error) => {
                let error = explain_send_error(error, &arguments, topic_limit);
                failure = Some(error.context(format!("line {line_number}")));
                break;
            }
        }
        sent += 1;
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        if pending.len() >= DELIVERIES_PENDING_MAX
            && let Some((line, oldest)) = pending.pop_front()
        {
            let outcome = oldest.await;
            report.record(line, &arguments.topic, &outcome);
            match outcome {
                Ok(metadata) => throttled = throttled.max(metadata.throttle_time),
                Err(ProduceError::Dropped { .. }) => dropped += 1,
                Err(error) => {
                    failed += 1;
                    failure = Some(error.into());
                    break;
                }
            }
        }
    }
    producer.flush().await;
    for (line, delivery) in pending {
        let outcome = delivery.await;
        report.record(line, &arguments.topic, &outcome);
        match outcome {
            Ok(metadata) => throttled = throttled.max(metadata.throttle_time),
            Err(ProduceError::Dropped { .. }) => dropped += 1,
            Err(error) => {
                failed += 1;
                failure.get_or_insert_with(|| error.into());
            }
        }
    }
    producer.close().await;
    report.finish()?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let written = sent.saturating_sub(failed).saturating_sub(dropped);
    let verb = if arguments.acks == Acks::None {
        "Sent"
    } else {
        "Produced"
    };
    // After a failure that wrote nothing, the error line alone says it all.
    if failure.is_none() || written > 0 {
        let dropped = match dropped {
            0 => String::new(),
            count => format!("; the topic's produce filter dropped {count}"),
        };
        let records = if written == 1 { "record" } else { "records" };
        let throttled = if throttled.is_zero() {
            String::new()
        } else {
            format!(
                "; throttled by the producer_byte_rate quota (longest throttle {} ms)",
                throttled.as_millis()
            )
        };
        eprintln!(
            "{verb} {written} {records} to {} in {elapsed:.2} s ({:.0} records/s){dropped}{throttled}.",
            arguments.topic,
            written as f64 / elapsed.max(1e-9)
        );
    }
    if let Some(error) = failure {
        if failed > 0 {
            bail!("{failed} of {sent} records were not written: {error:#}");
        }
        return Err(error.context("cannot produce"));
    }
    Ok(())
}

fn record(
    arguments: &ProduceArgs,
    headers: &[Header],
    line: Vec<u8>,
    line_number: u64,
) -> anyhow::Result<ProducerRecord> {
    let mut record = ProducerRecord {
        topic: arguments.topic.clone(),
        partition: arguments.partition,
        headers: headers.to_vec(),
        ..ProducerRecord::default()
    };
    let line = Bytes::from(line);
    // kcat's -Z: an empty key or value is sent as null (a value of null is a tombstone).
    let field = |bytes: Bytes| (!(arguments.empty_as_null && bytes.is_empty())).then_some(bytes);
    match &arguments.key_separator {
        None => record.value = field(line),
        Some(separator) => {
            let Some(at) = find(&line, separator.as_bytes()) else {
                bail!(
                    "line {line_number} has no key separator {separator:?}; every line must be \
                     KEY{separator}VALUE"
                );
            };
            record.key = field(line.slice(..at));
            record.value = field(line.slice(at + separator.len()..));
        }
    }
    Ok(record)
}

/// The topic's `max.message.bytes`, if the node says; without it the producer's defaults
/// apply and the producer itself reports a missing topic.
async fn topic_batch_bytes_max(client: &Client, topic: &str) -> Option<usize> {
    let described = Admin::new(client)
        .describe_configs(vec![topic.to_string()])
        .await
        .ok()?;
    let (_, configs) = described.into_iter().next()?;
    configs
        .iter()
        .find(|config| config.name == "max.message.bytes")
        .and_then(|config| config.value.parse().ok())
}

/// A refused record's error, in the CLI's terms: the flag or topic config that sets the limit
/// it broke, rather than the SDK field.
fn explain_send_error(
    error: ProduceError,
    arguments: &ProduceArgs,
    topic_limit: Option<usize>,
) -> anyhow::Error {
    let topic = &arguments.topic;
    let topic_refuses = |topic_limit: usize, bytes: usize| {
        anyhow!(
            "record of about {bytes} bytes (with its batch header) exceeds max.message.bytes of \
             topic {topic} ({topic_limit} bytes); raise it with: ledge topic alter {topic} \
             --config max.message.bytes=N"
        )
    };
    match error {
        // The topic's limit is the one to raise first when the record breaks both.
        ProduceError::RecordTooLarge { bytes, .. }
        | ProduceError::RecordTooLargeForTopic { bytes, .. }
            if topic_limit.is_some_and(|topic_limit| bytes > topic_limit) =>
        {
            topic_refuses(topic_limit.unwrap_or_default(), bytes)
        }
        ProduceError::RecordTooLargeForTopic { bytes, limit, .. } => topic_refuses(limit, bytes),
        ProduceError::RecordTooLarge { bytes, limit } => {
            let hint = match topic_limit {
                Some(topic_limit) => {
                    format!("; topic {topic} allows up to {topic_limit}: raise it up to that")
                }
                None => String::new(),
            };
            anyhow!(
                "record of about {bytes} bytes (with its batch header) exceeds \
                 --max-request-size ({limit} bytes){hint}"
            )
        }
        other => other.into(),
    }
}

/// One line of `produce --format json`; fields in this order.
#[derive(serde::Serialize)]
struct DeliveryJson<'a> {
    /// The input line the record came from, counted from 1.
    line: u64,
    topic: &'a str,
    /// `null` when unknown: dropped, failed, or placed by the node with acks=0.
    partition: Option<u32>,
    /// `null` with acks=0, and for a record not written.
    offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    /// How long the node throttled the client for its produce quota (absent: not at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    throttle_time_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `--format json`'s per-record lines, buffered; a closed pipe stops them, not the produce.
struct Report {
    out: Option<std::io::BufWriter<std::io::Stdout>>,
}

impl Report {
    fn new(format: ProduceFormat) -> Self {
        Self {
            out: (format == ProduceFormat::Json)
                .then(|| std::io::BufWriter::new(std::io::stdout())),
        }
    }

    fn record(&mut self, line: u64, topic: &str, outcome: &Result<RecordMetadata, ProduceError>) {
        let Some(out) = &mut self.out else {
            return;
        };
        let mut printed = DeliveryJson {
            line,
            topic,
            partition: None,
            offset: None,
            timestamp: None,
            throttle_time_ms: None,
            dropped: None,
            error: None,
        };
        match outcome {
            Ok(metadata) => {
                printed.partition =
                    (metadata.partition != NODE_PARTITIONED).then_some(metadata.partition);
                printed.offset = metadata.offset;
                printed.timestamp = Some(metadata.timestamp);
                printed.throttle_time_ms = (!metadata.throttle_time.is_zero())
                    .then_some(metadata.throttle_time.as_millis());
            }
            Err(ProduceError::Dropped { .. }) => printed.dropped = Some(true),
            Err(error) => printed.error = Some(error.to_string()),
        }
        // Serializing strings and numbers cannot fail.
        let printed = serde_json::to_string(&printed).unwrap_or_default();
        if writeln!(out, "{printed}").is_err() {
            self.out = None;
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        match self.out.take().map(|mut out| out.flush()) {
            Some(Err(error)) if error.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(anyhow::Error::new(error).context("cannot write to standard output"))
            }
            _ => Ok(()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
