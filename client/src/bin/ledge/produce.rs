//! `ledge produce TOPIC`: one record per line of standard input. On a topic with a
//! partitioner module the node picks the partitions; records its produce filter drops are
//! counted apart, not as failures.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use ledge_client::{
    Acks, Client, DeliveryFuture, Header, ProduceError, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::AsyncBufReadExt;

use crate::args::ProduceArgs;

/// Records sent but not yet confirmed before reading waits for the oldest: enough to keep many
/// batches in flight, few enough that a failure is reported soon after it happens.
const DELIVERIES_PENDING_MAX: usize = 20_000;

pub(crate) async fn run(client: &Client, arguments: ProduceArgs) -> anyhow::Result<()> {
    let mut config = ProducerConfig::default();
    config.acks = arguments.acks;
    // Kafka requires acks=all for idempotence; with 0 or 1 the user chose speed over it.
    config.enable_idempotence = arguments.acks == Acks::All;
    config.compression = arguments.compression.into();
    config.linger = Duration::from_millis(arguments.linger_ms);
    let producer = Producer::new(client, config)
        .await
        .context("cannot start the producer")?;
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
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut sent = 0u64;
    let mut dropped = 0u64;
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
            Ok(delivery) => pending.push_back(delivery),
            Err(error) => {
                failure = Some(anyhow::Error::new(error).context(format!("line {line_number}")));
                break;
            }
        }
        sent += 1;
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        if pending.len() >= DELIVERIES_PENDING_MAX
            && let Some(oldest) = pending.pop_front()
        {
            match oldest.await {
                Ok(_) => {}
                Err(ProduceError::Dropped { .. }) => dropped += 1,
                Err(error) => {
                    failure = Some(error.into());
                    break;
                }
            }
        }
    }
    producer.flush().await;
    let mut failed = 0u64;
    for delivery in pending {
        match delivery.await {
            Ok(_) => {}
            Err(ProduceError::Dropped { .. }) => dropped += 1,
            Err(error) => {
                failed += 1;
                failure.get_or_insert_with(|| error.into());
            }
        }
    }
    producer.close().await;
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
        eprintln!(
            "{verb} {written} records to {} in {elapsed:.2} s ({:.0} records/s){dropped}.",
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
    match &arguments.key_separator {
        None => record.value = Some(line),
        Some(separator) => {
            let Some(at) = find(&line, separator.as_bytes()) else {
                bail!(
                    "line {line_number} has no key separator {separator:?}; every line must be \
                     KEY{separator}VALUE"
                );
            };
            record.key = Some(line.slice(..at));
            record.value = Some(line.slice(at + separator.len()..));
        }
    }
    Ok(record)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
