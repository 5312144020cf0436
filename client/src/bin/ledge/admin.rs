//! `ledge admin snapshot --out DIR`: the node writes a snapshot of its data directory on its
//! own host (native Snapshot request); restore is `ledge-node restore`.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context;
use ledge_client::snapshot::{Snapshot, SnapshotProgress};
use ledge_client::{Admin, AdminError, Client};
use serde_json::json;

use crate::args::{AdminCommand, Format};
use crate::output::{print, table};

pub(crate) async fn run(client: &Client, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Snapshot(arguments) => {
            // One request: the node answers when every partition is written; meanwhile,
            // with progress shown, SnapshotProgress requests ask how far it is (stderr only,
            // so --format json stays clean on stdout).
            eprintln!("snapshotting into {} on the node ...", arguments.out);
            let admin = Admin::new(client);
            let snapshot = if arguments.progress || std::io::stderr().is_terminal() {
                snapshot_showing_progress(
                    &admin,
                    &arguments.out,
                    Duration::from_millis(arguments.progress_interval_ms),
                )
                .await
            } else {
                admin.snapshot(&arguments.out).await
            }
            .context("snapshot failed")?;
            let total = snapshot.partitions.len();
            eprintln!("{total}/{total} partitions written");
            match arguments.format {
                Format::Json => {
                    let partitions: Vec<_> = snapshot
                        .partitions
                        .iter()
                        .map(|partition| {
                            json!({
                                "topic": partition.topic,
                                "partition": partition.partition,
                                "log_start_offset": partition.log_start_offset,
                                "end_offset": partition.end_offset,
                            })
                        })
                        .collect();
                    print(&serde_json::to_string_pretty(&json!({
                        "directory": arguments.out,
                        "node_id": snapshot.node_id,
                        "partitions": partitions,
                        "offline_partitions": snapshot.offline_partitions,
                        "files_linked": snapshot.files_linked,
                        "files_copied": snapshot.files_copied,
                    }))?)
                }
                Format::Table => {
                    let mut output = table(
                        &["TOPIC", "PARTITION", "LOG-START", "END-OFFSET"],
                        &[1, 2, 3],
                    );
                    for partition in &snapshot.partitions {
                        output.add_row(vec![
                            partition.topic.clone(),
                            partition.partition.to_string(),
                            partition.log_start_offset.to_string(),
                            partition.end_offset.to_string(),
                        ]);
                    }
                    print(&output.to_string())?;
                    print(&format!(
                        "Snapshot of node {} written to {}: {total} partitions ({} offline left out), {} files linked, {} copied.",
                        snapshot.node_id,
                        arguments.out,
                        snapshot.offline_partitions,
                        snapshot.files_linked,
                        snapshot.files_copied
                    ))
                }
            }
        }
    }
}

/// The Snapshot request, asking every `interval` how far it is and printing each new
/// progress on stderr. A progress request that fails is skipped: the snapshot decides.
async fn snapshot_showing_progress(
    admin: &Admin,
    out: &str,
    interval: Duration,
) -> Result<Snapshot, AdminError> {
    let taking = admin.snapshot(out);
    tokio::pin!(taking);
    let mut shown: Option<SnapshotProgress> = None;
    loop {
        tokio::select! {
            taken = &mut taking => return taken,
            () = tokio::time::sleep(interval) => {
                if let Ok(Some(progress)) = admin.snapshot_progress(out).await
                    && shown != Some(progress)
                {
                    eprintln!("{}", progress_line(&progress));
                    shown = Some(progress);
                }
            }
        }
    }
}

/// One progress line: `partition 3/12 copied, 48.0 MiB`.
fn progress_line(progress: &SnapshotProgress) -> String {
    format!(
        "partition {}/{} copied, {}",
        progress.partitions_done,
        progress.partitions_total,
        bytes_text(progress.bytes_done)
    )
}

/// `bytes` in the largest binary unit that keeps it at least 1 (B, KiB, MiB, GiB, TiB).
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_the_partitions_and_bytes() {
        let line = progress_line(&SnapshotProgress {
            partitions_done: 3,
            partitions_total: 12,
            bytes_done: 48 * 1024 * 1024,
        });
        assert_eq!(line, "partition 3/12 copied, 48.0 MiB");
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(5 << 40), "5.0 TiB");
    }
}
