//! `ledge transform ...`: deploy, list, describe, pause, resume, remove.

use std::time::Duration;

use anyhow::Context;
use ledge_client::{
    Admin, Client, TransformDescription, TransformJoin, TransformPartition,
    TransformPartitionStatus, TransformSpec,
};
use serde_json::json;

use crate::args::{Format, JoinArgs, TransformCommand, TransformDeployArgs};
use crate::module::{hash_prefix, params_json, params_text};
use crate::output::{print, table};

pub(crate) async fn run(client: &Client, command: TransformCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        TransformCommand::Deploy(arguments) => deploy(&admin, arguments).await,
        TransformCommand::List(arguments) => {
            let transforms = admin
                .describe_transforms(Vec::new())
                .await
                .context("cannot list transforms")?;
            match arguments.format {
                Format::Json => {
                    let transforms: Vec<_> = transforms.iter().map(describe_json).collect();
                    print(&serde_json::to_string(&transforms)?)
                }
                Format::Table if transforms.is_empty() => print(
                    "No transforms. Deploy one with: ledge transform deploy NAME --module \
                     FILE.wasm --kind KIND --input TOPIC",
                ),
                Format::Table => print(&list_table(&transforms)),
            }
        }
        TransformCommand::Describe(arguments) => {
            let context = || "cannot describe transform";
            let transform = admin
                .describe_transforms(vec![arguments.name.clone()])
                .await
                .with_context(context)?
                .into_iter()
                .next()
                .with_context(context)?;
            match arguments.format {
                Format::Json => print(&serde_json::to_string(&describe_json(&transform))?),
                Format::Table => print(&describe_text(&transform)),
            }
        }
        TransformCommand::Pause(arguments) => {
            admin
                .pause_transform(&arguments.name)
                .await
                .context("cannot pause transform")?;
            print(&format!(
                "Paused transform {}; resume it with: ledge transform resume {}",
                arguments.name, arguments.name
            ))
        }
        TransformCommand::Resume(arguments) => {
            admin
                .resume_transform(&arguments.name)
                .await
                .context("cannot resume transform")?;
            print(&format!("Resumed transform {}.", arguments.name))
        }
        TransformCommand::Remove(arguments) => {
            admin
                .remove_transform(&arguments.name)
                .await
                .context("cannot remove transform")?;
            print(&format!(
                "Removed transform {}; its output and dead-letter topics stay.",
                arguments.name
            ))
        }
    }
}

async fn deploy(admin: &Admin, arguments: TransformDeployArgs) -> anyhow::Result<()> {
    let name = arguments.name.clone();
    let format = arguments.format;
    let spec = TransformSpec {
        name: arguments.name,
        kind: arguments.source.kind.into(),
        module: arguments.source.module_bytes,
        input: arguments.input,
        output: arguments.output,
        params: arguments.source.params,
        on_error: arguments.on_error.into(),
        dead_letter_topic: arguments.dead_letter_topic,
        join: join_of(arguments.join)?,
        window: arguments.window.settings(),
    };
    let fallback_output = spec.output_or_default();
    let input = spec.input.clone();
    let version = admin
        .deploy_transform(spec)
        .await
        .context("cannot deploy transform")?;
    // The node's word on where the output goes (a redeployment may keep an earlier one);
    // if asking fails, the name the node gives by default.
    let output = match admin.describe_transforms(vec![name.clone()]).await {
        Ok(described) => described
            .into_iter()
            .next()
            .map_or(fallback_output, |transform| transform.output),
        Err(_) => fallback_output,
    };
    match format {
        Format::Json => print(&serde_json::to_string(&serde_json::json!({
            "name": name,
            "version": version,
            "input": input,
            "output": output,
        }))?),
        Format::Table => print(&format!(
            "Deployed transform {name} version {version}: {input} -> {output}."
        )),
    }
}

/// The join flags as the node takes them: --join-window is both --join-before and
/// --join-after unless they are given.
fn join_of(arguments: JoinArgs) -> anyhow::Result<Option<TransformJoin>> {
    let windowed = arguments.join_window.is_some()
        || arguments.join_before.is_some()
        || arguments.join_after.is_some()
        || arguments.join_grace.is_some();
    if let Some(table) = arguments.table {
        if windowed {
            anyhow::bail!(
                "--join-window, --join-before, --join-after and --join-grace are for \
                 --join-with; a --table join has no window"
            );
        }
        return Ok(Some(TransformJoin::Table(table)));
    }
    let Some(topic) = arguments.join_with else {
        if windowed {
            anyhow::bail!(
                "--join-window, --join-before, --join-after and --join-grace need --join-with"
            );
        }
        return Ok(None);
    };
    let (Some(before), Some(after)) = (
        arguments.join_before.or(arguments.join_window),
        arguments.join_after.or(arguments.join_window),
    ) else {
        anyhow::bail!(
            "--join-with needs --join-window (or both --join-before and --join-after): how far \
             apart two records' timestamps may be to pair"
        );
    };
    Ok(Some(TransformJoin::Stream {
        topic,
        before,
        after,
        grace: arguments.join_grace.unwrap_or_default(),
    }))
}

fn list_table(transforms: &[TransformDescription]) -> String {
    let mut output = table(
        &[
            "NAME",
            "STATE",
            "KIND",
            "INPUT -> OUTPUT",
            "IN",
            "OUT",
            "DEAD",
            "LAG",
        ],
        &[4, 5, 6, 7],
    );
    for transform in transforms {
        output.add_row(vec![
            transform.name.clone(),
            transform.state.to_string(),
            transform.kind.to_string(),
            format!("{} -> {}", transform.input, transform.output),
            transform.records_in.to_string(),
            transform.records_out.to_string(),
            transform.records_dead.to_string(),
            transform.lag.to_string(),
        ]);
    }
    output.to_string()
}

/// Every field of a transform: a few lines of definition and status, then its position in
/// each input partition.
fn describe_text(transform: &TransformDescription) -> String {
    let fields = [
        ("State", transform.state.to_string()),
        ("Version", transform.version.to_string()),
        (
            "Module",
            format!("{} (sha256 {})", transform.kind, transform.module_hash),
        ),
        ("Params", params_text(&transform.params)),
        (
            "Topics",
            format!("{} -> {}", transform.input, transform.output),
        ),
        ("On error", transform.on_error.to_string()),
        ("Dead letters", transform.dead_letter_topic.clone()),
        (
            "Records",
            format!(
                "{} in, {} out, {} dead (since the nodes running it started)",
                transform.records_in, transform.records_out, transform.records_dead
            ),
        ),
        ("Lag", format!("{} records", transform.lag)),
        ("Busy", human_duration(transform.busy)),
        (
            "Stored state",
            if transform.state_partitions == 0 {
                "-".to_string()
            } else {
                format!(
                    "{} bytes, {}/{} partitions ready, {} changelog records restored",
                    transform.state_bytes,
                    transform.state_partitions_ready,
                    transform.state_partitions,
                    transform.restore_records
                )
            },
        ),
        (
            "Join",
            match &transform.join {
                None => "-".to_string(),
                Some(join) => format!(
                    "with {} {} (lag {} records), {} records late or unmatched dropped",
                    if join.table { "table" } else { "stream" },
                    join.input,
                    join.lag,
                    transform.records_late
                ),
            },
        ),
        (
            "Window",
            match &transform.window {
                None => "-".to_string(),
                Some(window) => format!(
                    "{}; {} windows open, {} late records dropped",
                    window_text(window),
                    transform.windows_open,
                    transform.records_late
                ),
            },
        ),
        (
            "Last error",
            transform
                .last_error
                .clone()
                .unwrap_or_else(|| "-".to_string()),
        ),
    ];
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    let mut text = format!("Transform {}\n", transform.name);
    for (label, value) in fields {
        text.push_str(&format!("  {:<width$} {value}\n", format!("{label}:")));
    }
    if transform.partitions.is_empty() && transform.positions.is_empty() {
        text.push_str("\nNo input partitions.");
        return text;
    }
    if transform.partitions.is_empty() {
        let mut positions = table(&["PARTITION", "POSITION"], &[0, 1]);
        for (partition, offset) in &transform.positions {
            positions.add_row(vec![partition.to_string(), offset.to_string()]);
        }
        text.push('\n');
        text.push_str(&positions.to_string());
        return text;
    }
    // One row per input partition, from the node running it (its leader in a cluster).
    let mut partitions = table(
        &[
            "PARTITION",
            "NODE",
            "STATUS",
            "POSITION",
            "LAG",
            "IN",
            "OUT",
            "DEAD",
            "BUSY",
        ],
        &[0, 1, 3, 4, 5, 6, 7],
    );
    let mut unreachable = Vec::new();
    for entry in &transform.partitions {
        let node = entry
            .node
            .map_or_else(|| "-".to_string(), |node| node.to_string());
        let mut row = vec![
            entry.partition.to_string(),
            node,
            entry.status.as_str().to_string(),
        ];
        match &entry.status {
            TransformPartitionStatus::Running {
                position,
                lag,
                records_in,
                records_out,
                records_dead,
                busy,
            } => row.extend([
                position.to_string(),
                lag.to_string(),
                records_in.to_string(),
                records_out.to_string(),
                records_dead.to_string(),
                human_duration(*busy),
            ]),
            status => {
                if let TransformPartitionStatus::Unreachable(why) = status {
                    unreachable.push(format!("partition {}: {why}", entry.partition));
                }
                let position = transform
                    .positions
                    .get(&entry.partition)
                    .map_or_else(|| "-".to_string(), i64::to_string);
                row.push(position);
                row.extend(std::iter::repeat_n("-".to_string(), 5));
            }
        }
        partitions.add_row(row);
    }
    text.push('\n');
    text.push_str(&partitions.to_string());
    if !unreachable.is_empty() {
        text.push_str("\n\n");
        text.push_str(&unreachable.join("\n"));
    }
    text
}

fn partition_json(entry: &TransformPartition) -> serde_json::Value {
    let mut value = json!({
        "partition": entry.partition,
        "node": entry.node,
        "status": entry.status.as_str(),
    });
    match &entry.status {
        TransformPartitionStatus::Running {
            position,
            lag,
            records_in,
            records_out,
            records_dead,
            busy,
        } => {
            value["position"] = json!(position);
            value["lag"] = json!(lag);
            value["records_in"] = json!(records_in);
            value["records_out"] = json!(records_out);
            value["records_dead"] = json!(records_dead);
            value["busy_us"] = json!(u64::try_from(busy.as_micros()).unwrap_or(u64::MAX));
        }
        TransformPartitionStatus::Unreachable(why) => value["error"] = json!(why),
        _ => {}
    }
    value
}

fn describe_json(transform: &TransformDescription) -> serde_json::Value {
    json!({
        "name": transform.name,
        "state": transform.state.as_str(),
        "version": transform.version,
        "kind": transform.kind.as_str(),
        "module_hash": transform.module_hash,
        "module_hash_prefix": hash_prefix(&transform.module_hash),
        "params": params_json(&transform.params),
        "input": transform.input,
        "output": transform.output,
        "on_error": transform.on_error.as_str(),
        "dead_letter_topic": transform.dead_letter_topic,
        "records_in": transform.records_in,
        "records_out": transform.records_out,
        "records_dead": transform.records_dead,
        "lag": transform.lag,
        "busy_us": u64::try_from(transform.busy.as_micros()).unwrap_or(u64::MAX),
        "state_partitions": transform.state_partitions,
        "state_partitions_ready": transform.state_partitions_ready,
        "state_bytes": transform.state_bytes,
        "restore_records": transform.restore_records,
        "records_late": transform.records_late,
        "join": transform.join.as_ref().map(|join| json!({
            "input": join.input,
            "table": join.table,
            "lag": join.lag,
            "positions": join.positions.iter().map(|(partition, offset)| json!({
                "partition": partition,
                "offset": offset,
            })).collect::<Vec<_>>(),
        })),
        "window": transform.window.as_ref().map(|window| json!({
            "kind": window.kind,
            "size_ms": window.size_ms,
            "advance_ms": window.advance_ms,
            "gap_ms": window.gap_ms,
            "grace_ms": window.grace_ms,
            "retention_ms": window.retention_ms,
            "emit": window.emit,
        })),
        "windows_open": transform.windows_open,
        "last_error": transform.last_error,
        "positions": transform.positions.iter().map(|(partition, offset)| json!({
            "partition": partition,
            "offset": offset,
        })).collect::<Vec<_>>(),
        "partitions": transform.partitions.iter().map(partition_json).collect::<Vec<_>>(),
    })
}

/// A window's settings in a line: `tumbling size 1m, grace 10s, retention 1h, emit
/// suppress`.
fn window_text(window: &ledge_client::TransformWindow) -> String {
    let ms = |value: i64| {
        humantime::format_duration(Duration::from_millis(u64::try_from(value).unwrap_or(0)))
            .to_string()
    };
    let mut parts = vec![window.kind.clone()];
    for (name, value) in [
        ("size", window.size_ms),
        ("advance", window.advance_ms),
        ("gap", window.gap_ms),
        ("grace", window.grace_ms),
        ("retention", window.retention_ms),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name} {}", ms(value)));
        }
    }
    parts.push(format!("emit {}", window.emit));
    parts.join(", ")
}

/// A duration in the unit that suits it: `850 µs`, `12.5 ms`, `3.20 s`.
fn human_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros < 1000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ledge_client::{OnError, PluginKind, TransformState};

    use super::*;

    fn described() -> TransformDescription {
        TransformDescription {
            name: "high-value".into(),
            kind: PluginKind::Filter,
            input: "orders".into(),
            output: "orders.high-value".into(),
            dead_letter_topic: "high-value.dead-letter".into(),
            on_error: OnError::DeadLetter,
            module_hash: "0123456789abcdef".repeat(4),
            params: vec![("threshold".into(), "1000".into())],
            version: 2,
            state: TransformState::Paused,
            last_error: Some("paused by an operator".into()),
            records_in: 10,
            records_out: 4,
            records_dead: 1,
            lag: 7,
            busy: Duration::from_micros(1500),
            positions: BTreeMap::from([(0, 3), (1, 5)]),
            partitions: vec![
                TransformPartition {
                    partition: 0,
                    node: Some(2),
                    status: TransformPartitionStatus::Running {
                        position: 3,
                        lag: 4,
                        records_in: 6,
                        records_out: 3,
                        records_dead: 1,
                        busy: Duration::from_micros(900),
                    },
                },
                TransformPartition {
                    partition: 1,
                    node: Some(3),
                    status: TransformPartitionStatus::Unreachable(
                        "node 3 did not answer: connection refused".into(),
                    ),
                },
            ],
            state_partitions: 2,
            state_partitions_ready: 1,
            state_bytes: 4096,
            restore_records: 12,
            join: None,
            window: None,
            windows_open: 0,
            records_late: 0,
        }
    }

    #[test]
    fn durations_print_in_a_fitting_unit() {
        assert_eq!(human_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(human_duration(Duration::from_micros(12_500)), "12.5 ms");
        assert_eq!(human_duration(Duration::from_millis(3200)), "3.20 s");
    }

    /// Goal: `describe` shows every field, the last error and each partition's position.
    #[test]
    fn describe_shows_every_field() {
        let text = describe_text(&described());
        for expected in [
            "Transform high-value",
            "State:",
            "paused",
            "Version:",
            "filter (sha256 0123456789abcdef",
            "threshold=1000",
            "orders -> orders.high-value",
            "dead-letter",
            "high-value.dead-letter",
            "10 in, 4 out, 1 dead",
            "7 records",
            "1.5 ms",
            "paused by an operator",
            "PARTITION",
            "NODE",
            "unreachable",
            "partition 1: node 3 did not answer: connection refused",
            "4096 bytes, 1/2 partitions ready, 12 changelog records restored",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        let json = describe_json(&described());
        assert_eq!(json["state"], "paused");
        assert_eq!(json["busy_us"], 1500);
        assert_eq!(json["state_bytes"], 4096);
        assert_eq!(json["state_partitions_ready"], 1);
        assert_eq!(json["restore_records"], 12);
        assert_eq!(json["positions"][1], json!({"partition": 1, "offset": 5}));
        assert_eq!(json["params"], json!({"threshold": "1000"}));
        assert_eq!(
            json["partitions"][0],
            json!({"partition": 0, "node": 2, "status": "running", "position": 3, "lag": 4,
                   "records_in": 6, "records_out": 3, "records_dead": 1, "busy_us": 900})
        );
        assert_eq!(json["partitions"][1]["status"], "unreachable");
        assert_eq!(json["partitions"][1]["node"], 3);
        // The row of the partition whose node did not answer still shows the node and the
        // known position, and no figures.
        let text = describe_text(&described());
        let row = text
            .lines()
            .find(|line| line.trim_start().starts_with("1 "))
            .unwrap_or_else(|| panic!("no row for partition 1:\n{text}"));
        assert!(
            row.contains('3') && row.contains("unreachable") && row.contains('5'),
            "{row}"
        );
    }

    #[test]
    fn the_list_has_one_row_per_transform() {
        let text = list_table(&[described()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("INPUT -> OUTPUT"), "{text}");
        assert!(lines[1].contains("orders -> orders.high-value"), "{text}");
    }

    /// The join flags of `ledge transform deploy NAME --module m.wasm --kind join --input
    /// orders` plus `extra`.
    fn join_flags(extra: &[&str]) -> Result<Option<TransformJoin>, String> {
        use clap::Parser;
        let mut args = vec![
            "ledge",
            "transform",
            "deploy",
            "j",
            "--module",
            "m.wasm",
            "--kind",
            "join",
            "--input",
            "orders",
        ];
        args.extend_from_slice(extra);
        let cli = crate::args::Cli::try_parse_from(args).map_err(|error| error.to_string())?;
        let crate::args::Command::Transform {
            command: TransformCommand::Deploy(arguments),
        } = cli.command
        else {
            panic!("not a deploy")
        };
        join_of(arguments.join).map_err(|error| error.to_string())
    }

    // Goal: --table names a table; --join-with needs a window, which sets both before and
    // after unless they are given; the flags of one kind of join refuse the other's.
    #[test]
    fn join_flags_name_the_second_input_and_its_window() {
        assert_eq!(join_flags(&[]), Ok(None));
        assert_eq!(
            join_flags(&["--table", "customers"]),
            Ok(Some(TransformJoin::Table("customers".into())))
        );
        assert_eq!(
            join_flags(&[
                "--join-with",
                "clicks",
                "--join-window",
                "5m",
                "--join-after",
                "1s"
            ]),
            Ok(Some(TransformJoin::Stream {
                topic: "clicks".into(),
                before: Duration::from_secs(300),
                after: Duration::from_secs(1),
                grace: Duration::ZERO,
            }))
        );
        assert!(
            join_flags(&["--join-with", "clicks"])
                .unwrap_err()
                .contains("--join-window")
        );
        assert!(join_flags(&["--table", "a", "--join-with", "b", "--join-window", "1s"]).is_err());
        assert!(
            join_flags(&["--table", "a", "--join-grace", "1s"])
                .unwrap_err()
                .contains("no window")
        );
        assert!(join_flags(&["--join-with", "b", "--join-window", "soon"]).is_err());
        assert!(join_flags(&["--join-window", "1s"]).is_err());
    }
}
