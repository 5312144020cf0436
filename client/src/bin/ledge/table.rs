//! `ledge table get|scan`: a stateful transform's table, from the node running it.

use anyhow::{Context, bail};
use ledge_client::{Admin, Client};
use serde_json::json;

use crate::args::{Format, TableCommand};
use crate::output::{print, table};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) async fn run(client: &Client, command: TableCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        TableCommand::Get(arguments) => {
            let value = admin
                .table_get(&arguments.name, arguments.group_key.as_bytes())
                .await
                .context("cannot read the table")?;
            match (arguments.format, value) {
                (Format::Json, value) => print(&serde_json::to_string(&json!({
                    "key": arguments.group_key,
                    "value": value.as_deref().map(text),
                }))?),
                (Format::Table, Some(value)) => print(&text(&value)),
                (Format::Table, None) => bail!(
                    "transform {:?} has no state for key {:?}",
                    arguments.name,
                    arguments.group_key
                ),
            }
        }
        TableCommand::Scan(arguments) => {
            let scan = admin
                .table_scan(
                    &arguments.name,
                    arguments.prefix.as_bytes(),
                    arguments.limit,
                )
                .await
                .context("cannot scan the table")?;
            if arguments.format == Format::Json {
                for entry in &scan.entries {
                    print(&serde_json::to_string(&json!({
                        "key": text(&entry.key),
                        "value": text(&entry.value),
                        "partition": entry.partition,
                    }))?)?;
                }
            } else {
                let mut rows = table(&["KEY", "VALUE", "PARTITION"], &[2]);
                for entry in &scan.entries {
                    rows.add_row(vec![
                        text(&entry.key),
                        text(&entry.value),
                        entry.partition.to_string(),
                    ]);
                }
                print(&rows.to_string())?;
            }
            if scan.truncated {
                eprintln!("more entries matched; raise --limit or narrow --prefix");
            }
            Ok(())
        }
    }
}
