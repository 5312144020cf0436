//! `ledge-repair`: explicit, offline repairs of a stopped node's data directory.
//!
//! The node never gives up acknowledged records on its own. When a partition is offline for
//! damage and no copy exists to restore from, an operator can choose to give up the records
//! from a given offset on with `ledge-repair truncate`; docs/OPERATIONS.md ("A damaged
//! partition") says when. Every action is printed, and the node logs the partition's new
//! end when it opens it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::storage::disk::lock::{LockError, lock_data_dir};
use ledge_node::storage::repair::truncate_from;
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
}

fn main() -> std::process::ExitCode {
    match run(Arguments::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(arguments: Arguments) -> anyhow::Result<()> {
    let Command::Truncate {
        data_dir,
        topic,
        partition,
        from_offset,
    } = arguments.command;
    if !data_dir.is_dir() {
        anyhow::bail!("{} is not a directory", data_dir.display());
    }
    // The node's own lock, taken before anything is read or cut: a repair under a running
    // node would race its writer and its checkpoint (the node would write on past the cut,
    // or rewrite the checkpoint over the repaired one). Held until this process ends.
    let _lock = match lock_data_dir(&data_dir, SystemClock.wall_time_ms()) {
        Ok(lock) => lock,
        Err(LockError::InUse { directory, holder }) => anyhow::bail!(
            "data directory {} is in use by another process ({holder}); stop the ledge-node running on it before repairing",
            directory.display()
        ),
        Err(error) => return Err(error.into()),
    };
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
