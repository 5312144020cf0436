//! `ledge table get|scan`: a stateful transform's table, from the node running it.

use anyhow::{Context, bail};
use ledge_client::{Admin, Client};
use serde_json::json;

use crate::args::{Format, TableCommand};
use crate::output::{format_time, print, table};
use ledge_client::table::TableEntry;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One entry as a JSON line: key, value, partition, and a windowed entry's window bounds
/// (ms since the epoch).
fn entry_json(entry: &TableEntry) -> serde_json::Value {
    let mut object = json!({
        "key": text(&entry.key),
        "value": text(&entry.value),
        "partition": entry.partition,
    });
    if let (Some((start, end)), Some(fields)) = (entry.window, object.as_object_mut()) {
        fields.insert("window_start".into(), start.into());
        fields.insert("window_end".into(), end.into());
    }
    object
}

/// Entries as columns; windowed entries get their window's bounds (UTC, and ms).
fn entries_table(entries: &[TableEntry]) -> String {
    let windowed = entries.iter().any(|entry| entry.window.is_some());
    let mut rows = if windowed {
        table(
            &["KEY", "WINDOW START", "WINDOW END", "VALUE", "PARTITION"],
            &[4],
        )
    } else {
        table(&["KEY", "VALUE", "PARTITION"], &[2])
    };
    for entry in entries {
        let mut row = vec![text(&entry.key)];
        if windowed {
            let (start, end) = entry.window.unwrap_or_default();
            row.push(format!("{} ({start})", format_time(start)));
            row.push(format!("{} ({end})", format_time(end)));
        }
        row.push(text(&entry.value));
        row.push(entry.partition.to_string());
        rows.add_row(row);
    }
    rows.to_string()
}

pub(crate) async fn run(client: &Client, command: TableCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        TableCommand::Get(arguments) => {
            let answer = admin
                .table_get_entries(&arguments.name, arguments.group_key.as_bytes())
                .await
                .context("cannot read the table")?;
            if !answer.windows.is_empty() {
                // A windowed table: the key's windows.
                return match arguments.format {
                    Format::Json => {
                        for entry in &answer.windows {
                            print(&serde_json::to_string(&entry_json(entry))?)?;
                        }
                        Ok(())
                    }
                    Format::Table => print(&entries_table(&answer.windows)),
                };
            }
            match (arguments.format, answer.value) {
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
                    print(&serde_json::to_string(&entry_json(entry))?)?;
                }
            } else {
                print(&entries_table(&scan.entries))?;
            }
            if scan.truncated {
                eprintln!("more entries matched; raise --limit or narrow --prefix");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    // Goal: windowed entries show their window's bounds (columns and JSON); plain ones do
    // not grow window fields.
    #[test]
    fn windowed_entries_show_their_window() {
        let windowed = TableEntry {
            key: Bytes::from_static(b"42"),
            value: Bytes::from_static(b"12.5"),
            partition: 1,
            window: Some((60_000, 120_000)),
        };
        let json = entry_json(&windowed);
        assert_eq!(json["window_start"], 60_000);
        assert_eq!(json["window_end"], 120_000);
        assert_eq!(json["value"], "12.5");
        let columns = entries_table(std::slice::from_ref(&windowed));
        assert!(columns.contains("WINDOW START"), "{columns}");
        assert!(
            columns.contains("1970-01-01T00:01:00Z (60000)"),
            "{columns}"
        );
        let plain = TableEntry {
            window: None,
            ..windowed
        };
        assert!(entry_json(&plain).get("window_start").is_none());
        assert!(!entries_table(&[plain]).contains("WINDOW"));
    }
}
