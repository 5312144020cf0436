//! `ledge admin snapshot --out DIR`: the node writes a snapshot of its data directory on its
//! own host (native Snapshot request); restore is `ledge-node restore`.

use anyhow::Context;
use ledge_client::{Admin, Client};
use serde_json::json;

use crate::args::{AdminCommand, Format};
use crate::output::{print, table};

pub(crate) async fn run(client: &Client, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Snapshot(arguments) => {
            // One request: the node reports when every partition is written.
            eprintln!("snapshotting into {} on the node ...", arguments.out);
            let snapshot = Admin::new(client)
                .snapshot(&arguments.out)
                .await
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
