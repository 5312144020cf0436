//! `ledge-repair`: explicit, offline repairs of a stopped node's data directory, and a
//! read-only dump of what a partition holds.
//!
//! The node never gives up acknowledged records on its own. When a partition is offline for
//! damage and no copy exists to restore from, an operator can choose to give up the records
//! from a given offset on with `ledge-repair truncate`; docs/OPERATIONS.md ("A damaged
//! partition") says when. Every action is printed, and the node logs the partition's new
//! end when it opens it.
//!
//! `ledge-repair dump` (Kafka's `kafka-dump-log`) prints every batch and record of one
//! partition as stored, stopping at the first damaged batch and naming it; it writes
//! nothing to the partition. The replication tests compare replicas with it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::storage::disk::lock::{LockError, lock_data_dir};
use ledge_node::storage::dump::{DumpDamage, DumpedBatch, dump_segment};
use ledge_node::storage::repair::truncate_from;
use ledge_node::storage::segment::{PartitionFile, parse_file_name};
use ledge_node::storage::{BackendChoice, LogConfig, SystemDisk};

/// Offline repairs of a Ledge data directory. Stop the node first, and keep a copy of the
/// partition directory.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gives up every record of one partition from an offset on: cuts the segment holding
    /// it at the start of that batch, removes later segments, rewrites the checkpoint.
    /// Refuses to cut above damage it meets first, and says which offset to use instead.
    Truncate {
        /// The node's data directory. Refused while a node runs on it (the node's data
        /// directory lock is taken first).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Partition number.
        #[arg(long)]
        partition: u32,
        /// The first offset to give up (from a damage report: the offset the damaged
        /// batch should start).
        #[arg(long, value_name = "OFFSET")]
        from_offset: i64,
    },
    /// Prints every batch and record of one partition (offset, leader epoch, producer id,
    /// epoch and sequence, timestamp, key, value), stopping at the first damaged batch and
    /// naming it (exit status 2). Reads only: nothing in the partition is written.
    Dump {
        /// The node's data directory. Refused while a node runs on it (a running node may be
        /// writing the files being read).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Topic name.
        #[arg(long)]
        topic: String,
        /// Partition number.
        #[arg(long)]
        partition: u32,
        /// `table` (keys and values as hex up to 16 bytes, else a CRC-32C digest and the
        /// length) or `json` (every key and value in full, as hex).
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// How `dump` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// An aligned table, one row per record.
    Table,
    /// One JSON document.
    Json,
}

/// Exit status of a dump that met a damaged batch (everything before it was printed).
const EXIT_DAMAGED: u8 = 2;

fn main() -> std::process::ExitCode {
    let result = match Arguments::parse().command {
        Command::Truncate {
            data_dir,
            topic,
            partition,
            from_offset,
        } => truncate(&data_dir, &topic, partition, from_offset)
            .map(|()| std::process::ExitCode::SUCCESS),
        Command::Dump {
            data_dir,
            topic,
            partition,
            format,
        } => dump(&data_dir, &topic, partition, format),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Takes the node's data-directory lock, held until this process ends, or says who holds
/// it.
fn lock(
    data_dir: &Path,
    doing: &str,
) -> anyhow::Result<ledge_node::storage::disk::lock::DataDirLock> {
    if !data_dir.is_dir() {
        anyhow::bail!("{} is not a directory", data_dir.display());
    }
    match lock_data_dir(data_dir, SystemClock.wall_time_ms()) {
        Ok(lock) => Ok(lock),
        Err(LockError::InUse { directory, holder }) => anyhow::bail!(
            "data directory {} is in use by another process ({holder}); stop the ledge-node running on it before {doing}",
            directory.display()
        ),
        Err(error) => Err(error.into()),
    }
}

fn truncate(data_dir: &Path, topic: &str, partition: u32, from_offset: i64) -> anyhow::Result<()> {
    // The node's own lock, taken before anything is read or cut: a repair under a running
    // node would race its writer and its checkpoint (the node would write on past the cut,
    // or rewrite the checkpoint over the repaired one). Held until this process ends.
    let _lock = lock(data_dir, "repairing")?;
    let directory = data_dir.join("logs").join(format!("{topic}-{partition}"));
    if !directory.is_dir() {
        anyhow::bail!("{} is not a partition directory", directory.display());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let disk = SystemDisk::detect(BackendChoice::Std).context("cannot open the disk")?;
    let report = runtime
        .block_on(truncate_from(
            &disk,
            &directory,
            from_offset,
            &LogConfig::default(),
        ))
        .with_context(|| format!("cannot truncate {}", directory.display()))?;
    println!(
        "Truncated {topic}-{partition} from offset {}: cut {} bytes from {} (now {} bytes).",
        report.new_end_offset,
        report.cut_bytes,
        report.segment.display(),
        report.cut_position
    );
    for removed in &report.removed_segments {
        println!("Removed {} and its index files.", removed.display());
    }
    println!(
        "The next record appended to {topic}-{partition} gets offset {}.",
        report.new_end_offset
    );
    Ok(())
}

/// A segment's batches, as read, with the file they came from.
struct SegmentBatches {
    file: PathBuf,
    base_offset: i64,
    batches: Vec<DumpedBatch>,
}

/// The first damaged batch and its file.
struct Damage {
    file: PathBuf,
    damage: DumpDamage,
}

fn dump(
    data_dir: &Path,
    topic: &str,
    partition: u32,
    format: Format,
) -> anyhow::Result<std::process::ExitCode> {
    // Under the node's lock: a running node appends, rolls, compacts and deletes segments,
    // so a dump beside it could read a half-written batch and report damage that is not
    // there.
    let _lock = lock(data_dir, "dumping")?;
    let logs = data_dir.join("logs");
    let key = ledge_node::storage::PartitionKey {
        topic: topic.to_string(),
        partition,
    };
    let directory = logs.join(key.directory_name());
    if !directory.is_dir() {
        let mut present: Vec<String> = std::fs::read_dir(&logs)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .filter(|name| {
                        ledge_node::storage::PartitionKey::from_directory_name(name).is_some()
                    })
                    .collect()
            })
            .unwrap_or_default();
        present.sort();
        let present = if present.is_empty() {
            "none".to_string()
        } else {
            present.join(", ")
        };
        anyhow::bail!(
            "no partition {key} in {} (partitions there: {present})",
            logs.display()
        );
    }
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(&directory)
        .with_context(|| format!("cannot list {}", directory.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", directory.display()))?;
        if let Some(PartitionFile::Segment(base)) =
            parse_file_name(&entry.file_name().to_string_lossy())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    let mut segments = Vec::new();
    let mut damage = None;
    let mut next_offset: Option<i64> = None;
    for base in bases {
        let file = directory.join(ledge_node::storage::segment::segment_file_name(base));
        if let Some(end) = next_offset
            && base < end
        {
            damage = Some(Damage {
                file,
                damage: DumpDamage {
                    offset: end,
                    position: 0,
                    reason: format!(
                        "the segment starts at offset {base}, below the end of the segment before ({end})"
                    ),
                },
            });
            break;
        }
        let bytes =
            std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let read = dump_segment(&bytes, base);
        next_offset = Some(read.next_offset);
        segments.push(SegmentBatches {
            file: file.clone(),
            base_offset: base,
            batches: read.batches,
        });
        if let Some(found) = read.damage {
            damage = Some(Damage {
                file,
                damage: found,
            });
            break;
        }
    }
    let end_offset = next_offset;
    match format {
        Format::Json => println!(
            "{}",
            render_json(&key, &directory, &segments, end_offset, damage.as_ref())
        ),
        Format::Table => print!(
            "{}",
            render_table(&key, &directory, &segments, end_offset, damage.as_ref())
        ),
    }
    Ok(if damage.is_some() {
        std::process::ExitCode::from(EXIT_DAMAGED)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Bytes for a table cell: hex up to 16 bytes; longer ones as their CRC-32C and length, so
/// two replicas' cells still differ when their bytes do.
fn cell(bytes: Option<&[u8]>) -> String {
    /// Longest bytes shown whole in a table cell (32 hex digits).
    const CELL_BYTES_MAX: usize = 16;
    match bytes {
        None => "null".to_string(),
        Some(bytes) if bytes.len() <= CELL_BYTES_MAX => hex(bytes),
        Some(bytes) => format!("crc32c:{:08x}/{}B", crc32c::crc32c(bytes), bytes.len()),
    }
}

fn render_json(
    key: &ledge_node::storage::PartitionKey,
    directory: &Path,
    segments: &[SegmentBatches],
    end_offset: Option<i64>,
    damage: Option<&Damage>,
) -> serde_json::Value {
    let batches: Vec<serde_json::Value> = segments
        .iter()
        .flat_map(|segment| {
            segment.batches.iter().map(move |batch| {
                serde_json::json!({
                    "segment": segment.file.file_name().map(|name| name.to_string_lossy().into_owned()),
                    "position": batch.position,
                    "base_offset": batch.base_offset,
                    "last_offset": batch.last_offset,
                    "leader_epoch": batch.leader_epoch,
                    "producer_id": batch.producer_id,
                    "producer_epoch": batch.producer_epoch,
                    "base_sequence": batch.base_sequence,
                    "control": batch.control,
                    "records": batch.records.iter().map(|record| serde_json::json!({
                        "offset": record.offset,
                        "timestamp_ms": record.timestamp_ms,
                        "key_hex": record.key.as_deref().map(hex),
                        "value_hex": record.value.as_deref().map(hex),
                    })).collect::<Vec<_>>(),
                })
            })
        })
        .collect();
    serde_json::json!({
        "topic": key.topic,
        "partition": key.partition,
        "directory": directory.display().to_string(),
        "segments": segments.iter().map(|segment| serde_json::json!({
            "file": segment.file.file_name().map(|name| name.to_string_lossy().into_owned()),
            "base_offset": segment.base_offset,
        })).collect::<Vec<_>>(),
        "batches": batches,
        "end_offset": end_offset,
        "damage": damage.map(|damage| serde_json::json!({
            "segment": damage.file.file_name().map(|name| name.to_string_lossy().into_owned()),
            "position": damage.damage.position,
            "offset": damage.damage.offset,
            "reason": damage.damage.reason,
        })),
    })
}

fn render_table(
    key: &ledge_node::storage::PartitionKey,
    directory: &Path,
    segments: &[SegmentBatches],
    end_offset: Option<i64>,
    damage: Option<&Damage>,
) -> String {
    use std::fmt::Write;
    let mut rows = vec![[
        "OFFSET".to_string(),
        "EPOCH".to_string(),
        "PRODUCER".to_string(),
        "P-EPOCH".to_string(),
        "SEQUENCE".to_string(),
        "TIMESTAMP_MS".to_string(),
        "KEY".to_string(),
        "VALUE".to_string(),
    ]];
    let mut batch_count = 0usize;
    for batch in segments.iter().flat_map(|segment| segment.batches.iter()) {
        batch_count += 1;
        for record in &batch.records {
            // Kafka numbers each record of a batch from the batch's base sequence.
            let sequence = if batch.base_sequence < 0 {
                "-1".to_string()
            } else {
                (i64::from(batch.base_sequence) + (record.offset - batch.base_offset)).to_string()
            };
            rows.push([
                record.offset.to_string(),
                batch.leader_epoch.to_string(),
                batch.producer_id.to_string(),
                batch.producer_epoch.to_string(),
                sequence,
                record.timestamp_ms.to_string(),
                cell(record.key.as_deref()),
                cell(record.value.as_deref()),
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for row in &rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.len());
        }
    }
    let mut text = format!(
        "Partition {key} in {} ({} segment(s))\n",
        directory.display(),
        segments.len()
    );
    for row in &rows {
        let mut line = String::new();
        for (index, (width, value)) in widths.iter().zip(row).enumerate() {
            if index + 1 == row.len() {
                line.push_str(value);
            } else {
                let _ = write!(line, "{value:<width$}  ");
            }
        }
        let _ = writeln!(text, "{}", line.trim_end());
    }
    let records = rows.len() - 1;
    match end_offset {
        Some(end) => {
            let _ = writeln!(
                text,
                "{records} record(s) in {batch_count} batch(es); the next offset is {end}."
            );
        }
        None => {
            let _ = writeln!(text, "No segments.");
        }
    }
    if let Some(damage) = damage {
        let _ = writeln!(
            text,
            "Damaged batch at offset {} ({}, byte {}): {}. Nothing after it was read.",
            damage.damage.offset,
            damage.file.display(),
            damage.damage.position,
            damage.damage.reason
        );
    }
    text
}
