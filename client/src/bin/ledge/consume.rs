//! `ledge consume TOPIC`: print records, as text or JSON lines, from the end, the beginning,
//! an offset or a time (`--from-timestamp`, by ListOffsets); with `--group`, as a member of
//! a consumer group that commits what it printed before it exits (also on `--timeout-ms`,
//! `--max-messages` and Ctrl-C); with `--filter`, through a module the node runs on every
//! record before sending it.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use ledge_client::{
    Admin, Client, Consumer, ConsumerConfig, ConsumerRecord, FetchPlugin, OffsetReset,
    TopicPartition,
};

use crate::args::{ConsumeArgs, RecordFormat};
use crate::output::bytes_json;

/// Longest single poll, so `--timeout-ms` is honoured closely and Ctrl-C feels immediate.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Records asked for per poll.
const POLL_RECORDS_MAX: usize = 500;

pub(crate) async fn run(client: &Client, arguments: ConsumeArgs) -> anyhow::Result<()> {
    let topic = &arguments.topic;
    let described = Admin::new(client)
        .describe_topics(vec![topic.clone()])
        .await
        .context("cannot consume")?;
    let partition_count = described
        .first()
        .map_or(0, |description| description.partitions.len());
    let partitions: Vec<TopicPartition> = match arguments.partition {
        Some(partition) if (partition as usize) < partition_count => {
            vec![TopicPartition::new(topic.clone(), partition)]
        }
        Some(partition) => anyhow::bail!(
            "partition {partition} does not exist: topic {topic} has {partition_count} \
             partition(s), numbered from 0"
        ),
        None => (0..partition_count)
            .map(|partition| TopicPartition::new(topic.clone(), partition as u32))
            .collect(),
    };

    let mut config = ConsumerConfig::default();
    config.fetch_plugin = arguments.filter.as_ref().map(|module| FetchPlugin {
        module: module.clone(),
        params: arguments.params.clone(),
    });
    if let Some(group) = &arguments.group {
        config.group_id = Some(group.clone());
        config.session_timeout = Duration::from_millis(arguments.session_timeout_ms);
        // Positions move only past records `poll` handed out, and each batch is printed before
        // the next poll, so auto-commit (every interval, before a revocation, on close)
        // commits exactly what was printed.
        config.enable_auto_commit = true;
    }
    config.auto_offset_reset = if arguments.offset.is_some() {
        // An explicit offset outside the log is an error worth reporting, not a silent jump.
        OffsetReset::None
    } else if arguments.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let mut consumer = Consumer::new(client, config);
    if arguments.group.is_some() {
        consumer
            .subscribe(vec![topic.clone()])
            .context("cannot join the group")?;
    } else {
        consumer.assign(partitions.clone());
    }
    if let Some(offset) = arguments.offset {
        for partition in &partitions {
            consumer.seek(partition, offset)?;
        }
    }
    if let Some(timestamp) = arguments.from_timestamp {
        let found = consumer
            .offsets_for_times(
                partitions
                    .iter()
                    .map(|partition| (partition.clone(), timestamp))
                    .collect(),
            )
            .await
            .context("cannot find the offsets for --from-timestamp")?;
        let mut past_the_end = Vec::new();
        for partition in &partitions {
            match found.get(partition).copied().flatten() {
                Some(found) => consumer.seek(partition, found.offset)?,
                // Every record is older: only records written from now on are after it.
                None => past_the_end.push(partition.clone()),
            }
        }
        // An empty list would mean every assigned partition.
        if !past_the_end.is_empty() {
            consumer
                .seek_to_end(&past_the_end)
                .await
                .context("cannot find the end offsets")?;
        }
    }

    let timeout = arguments.timeout_ms.map(Duration::from_millis);
    let mut last_record = crate::now();
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        if arguments.max_messages.is_some_and(|max| printed >= max) {
            break;
        }
        let wait = match timeout {
            Some(timeout) => {
                let idle = last_record.elapsed();
                if idle >= timeout {
                    break;
                }
                (timeout - idle).min(POLL_INTERVAL)
            }
            None => POLL_INTERVAL,
        };
        let wanted = arguments.max_messages.map_or(POLL_RECORDS_MAX, |max| {
            (max - printed).min(POLL_RECORDS_MAX as u64) as usize
        });
        let records = tokio::select! {
            records = consumer.poll(wait, wanted) => records.context("cannot consume")?,
            // Ctrl-C: stop reading, then commit what was printed and leave (below).
            _ = tokio::signal::ctrl_c() => break,
        };
        if records.is_empty() {
            continue;
        }
        last_record = crate::now();
        for record in &records {
            let written = match arguments.format {
                RecordFormat::Json => writeln!(out, "{}", record_json(record)),
                RecordFormat::Text => write_text(&mut out, record, &arguments),
            };
            if let Err(error) = written {
                return closed_pipe_is_fine(error);
            }
            printed += 1;
        }
        if let Err(error) = out.flush() {
            return closed_pipe_is_fine(error);
        }
    }
    if let Err(error) = out.flush() {
        return closed_pipe_is_fine(error);
    }
    drop(out);
    if let Some(group) = &arguments.group {
        consumer
            .close()
            .await
            .with_context(|| format!("cannot commit the printed records for group {group}"))?;
    }
    if std::io::stderr().is_terminal() {
        eprintln!("Consumed {printed} records.");
    }
    Ok(())
}

fn write_text(
    out: &mut impl Write,
    record: &ConsumerRecord,
    arguments: &ConsumeArgs,
) -> std::io::Result<()> {
    if arguments.print_key {
        match &record.key {
            Some(key) => out.write_all(key)?,
            None => out.write_all(b"null")?,
        }
        out.write_all(arguments.key_separator.as_bytes())?;
    }
    match &record.value {
        Some(value) => out.write_all(value)?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b"\n")
}

/// One record as printed by `--format json`; fields in this order.
#[derive(serde::Serialize)]
struct RecordJson<'a> {
    topic: &'a str,
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: serde_json::Value,
    value: serde_json::Value,
    headers: Vec<HeaderJson<'a>>,
}

#[derive(serde::Serialize)]
struct HeaderJson<'a> {
    key: &'a str,
    value: serde_json::Value,
}

fn record_json(record: &ConsumerRecord) -> String {
    let printed = RecordJson {
        topic: &record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: bytes_json(record.key.as_deref()),
        value: bytes_json(record.value.as_deref()),
        headers: record
            .headers
            .iter()
            .map(|header| HeaderJson {
                key: &header.key,
                value: bytes_json(header.value.as_deref()),
            })
            .collect(),
    };
    // Serializing strings, numbers and JSON values cannot fail.
    serde_json::to_string(&printed).unwrap_or_default()
}

fn closed_pipe_is_fine(error: std::io::Error) -> anyhow::Result<()> {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        return Ok(());
    }
    Err(anyhow::Error::new(error).context("cannot write to standard output"))
}
