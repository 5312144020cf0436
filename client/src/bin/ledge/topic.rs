//! `ledge topic ...`: create, list, describe, alter, delete.

use anyhow::Context;
use ledge_client::{Admin, Client, NewPartitions, NewTopic, PartitionDescription};
use serde_json::json;

use crate::args::{AlterArgs, Format, TopicCommand};
use crate::output::{format_time, human_bytes, print, table};

pub(crate) async fn run(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        TopicCommand::Create(arguments) => {
            let topic = NewTopic {
                name: arguments.name.clone(),
                partitions: arguments.partitions,
                replication_factor: arguments.replication_factor,
                configs: arguments.configs.clone(),
            };
            admin
                .create_topics(vec![topic], arguments.validate_only)
                .await
                .context("cannot create topic")?;
            if arguments.format == Format::Json {
                let configs: serde_json::Map<String, serde_json::Value> = arguments
                    .configs
                    .iter()
                    .map(|(key, value)| (key.clone(), json!(value)))
                    .collect();
                return print(&serde_json::to_string(&json!({
                    "topic": arguments.name,
                    "partitions": arguments.partitions,
                    "replication_factor": arguments.replication_factor,
                    "configs": configs,
                    "created": !arguments.validate_only,
                }))?);
            }
            let partitions = match arguments.partitions {
                1 => "1 partition".to_string(),
                count => format!("{count} partitions"),
            };
            if arguments.validate_only {
                print(&format!(
                    "Topic {} with {partitions} can be created.",
                    arguments.name
                ))
            } else {
                print(&format!(
                    "Created topic {} with {partitions}.",
                    arguments.name
                ))
            }
        }
        TopicCommand::List(arguments) => {
            let topics = admin
                .describe_all_topics()
                .await
                .context("cannot list topics")?;
            match arguments.format {
                Format::Json => {
                    let topics: Vec<_> = topics
                        .iter()
                        .map(|topic| {
                            json!({
                                "topic": topic.name,
                                "partitions": topic.partitions.len(),
                                "records": records(&topic.partitions),
                                "offsets": offsets(&topic.partitions),
                                "internal": topic.internal,
                            })
                        })
                        .collect();
                    print(&serde_json::to_string(&topics)?)
                }
                Format::Table => {
                    let mut output = table(&["TOPIC", "PARTITIONS", "RECORDS"], &[1, 2]);
                    for topic in &topics {
                        output.add_row(vec![
                            topic.name.clone(),
                            topic.partitions.len().to_string(),
                            records(&topic.partitions).to_string(),
                        ]);
                    }
                    if topics.is_empty() {
                        print("No topics. Create one with: ledge topic create NAME")
                    } else {
                        print(&output.to_string())
                    }
                }
            }
        }
        TopicCommand::Describe(arguments) => {
            let name = arguments.name;
            let context = || "cannot describe topic";
            let topic = admin
                .describe_topics(vec![name.clone()])
                .await
                .with_context(context)?
                .into_iter()
                .next()
                .with_context(context)?;
            let configs = admin
                .describe_configs(vec![name.clone()])
                .await
                .with_context(context)?
                .into_iter()
                .next()
                .map(|(_, configs)| configs)
                .unwrap_or_default();
            match arguments.format {
                Format::Json => {
                    let partitions: Vec<_> = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            json!({
                                "partition": partition.partition,
                                "leader": partition.leader,
                                "leader_epoch": partition.leader_epoch,
                                "replicas": partition.replicas,
                                "isr": partition.isr,
                                "start_offset": partition.log_start_offset,
                                "end_offset": partition.high_watermark,
                                "records": partition.record_count,
                                "offsets": partition_offsets(partition),
                                "size_bytes": partition.size_bytes,
                                "segments": partition.segment_count,
                                "dirty_ratio": f64::from(partition.dirty_per_mille) / 1000.0,
                                "last_compaction": partition.last_compaction_ms.map(format_time),
                                "error": partition.error.map(|code| code.name()),
                                "damage": partition.damage,
                            })
                        })
                        .collect();
                    let configs: Vec<_> = configs
                        .iter()
                        .map(|config| {
                            json!({
                                "name": config.name,
                                "value": config.value,
                                "default": config.is_default,
                            })
                        })
                        .collect();
                    let described = json!({
                        "topic": topic.name,
                        "internal": topic.internal,
                        "partitions": partitions,
                        "configs": configs,
                    });
                    print(&serde_json::to_string(&described)?)
                }
                Format::Table => {
                    let compacted = configs.iter().any(|config| {
                        config.name == "cleanup.policy" && config.value.contains("compact")
                    });
                    let mut headers = vec![
                        "PARTITION",
                        "LEADER",
                        "EPOCH",
                        "REPLICAS",
                        "ISR",
                        "START OFFSET",
                        "END OFFSET",
                        "RECORDS",
                        "SIZE",
                        "SEGMENTS",
                    ];
                    if compacted {
                        headers.extend(["DIRTY", "LAST COMPACTION"]);
                    }
                    headers.push("STATUS");
                    let mut partitions = table(&headers, &[0, 1, 2, 5, 6, 7, 8, 9]);
                    for partition in &topic.partitions {
                        let mut row = vec![
                            partition.partition.to_string(),
                            partition
                                .leader
                                .map_or_else(|| "none".to_string(), |leader| leader.to_string()),
                            partition.leader_epoch.to_string(),
                            node_list(&partition.replicas),
                            node_list(&partition.isr),
                            partition.log_start_offset.to_string(),
                            partition.high_watermark.to_string(),
                            partition.record_count.to_string(),
                            human_bytes(partition.size_bytes),
                            partition.segment_count.to_string(),
                        ];
                        if compacted {
                            row.push(format!(
                                "{:.1}%",
                                f64::from(partition.dirty_per_mille) / 10.0
                            ));
                            row.push(
                                partition
                                    .last_compaction_ms
                                    .map_or_else(|| "-".to_string(), format_time),
                            );
                        }
                        let status = match (&partition.error, &partition.damage) {
                            (Some(code), _) => code.name(),
                            (None, Some(_)) => "damaged",
                            (None, None) => "online",
                        };
                        row.push(status.to_string());
                        partitions.add_row(row);
                    }
                    // The damage itself is too long for a column: one line per partition.
                    let damage: Vec<String> = topic
                        .partitions
                        .iter()
                        .filter_map(|partition| {
                            let damage = partition.damage.as_ref()?;
                            Some(format!("partition {}: {damage}", partition.partition))
                        })
                        .collect();
                    let damage = if damage.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "\n\nDamage (see docs/OPERATIONS.md, \"A damaged partition\"):\n{}",
                            damage.join("\n")
                        )
                    };
                    let mut settings = table(&["CONFIG", "VALUE", "SOURCE"], &[]);
                    for config in &configs {
                        settings.add_row(vec![
                            config.name.clone(),
                            config.value.clone(),
                            if config.is_default {
                                "default"
                            } else {
                                "topic"
                            }
                            .to_string(),
                        ]);
                    }
                    print(&format!(
                        "Topic: {}  Partitions: {}  Records: {}\n\n{partitions}{damage}\n\n{settings}",
                        topic.name,
                        topic.partitions.len(),
                        records(&topic.partitions)
                    ))
                }
            }
        }
        TopicCommand::Alter(arguments) => alter(&admin, arguments).await,
        TopicCommand::Delete(arguments) => {
            admin
                .delete_topics(vec![arguments.name.clone()])
                .await
                .context("cannot delete topic")?;
            print(&format!("Deleted topic {}.", arguments.name))
        }
        TopicCommand::Reassign(arguments) => crate::operations::reassign(&admin, arguments).await,
    }
}

/// `topic alter`: added partitions and config changes. With both, both are checked first
/// (`validate_only`), so a refused one leaves the other undone too.
async fn alter(admin: &Admin, arguments: AlterArgs) -> anyhow::Result<()> {
    let name = arguments.name;
    let grow = arguments.partitions.map(|count| {
        NewPartitions::increase_to(name.clone(), count)
            .assignments(arguments.replica_assignments.clone())
    });
    let configs_change = !arguments.configs.is_empty() || !arguments.delete_configs.is_empty();
    let alter_configs = |validate_only| {
        admin.alter_configs(
            &name,
            arguments.configs.clone(),
            arguments.delete_configs.clone(),
            validate_only,
        )
    };
    if let Some(grow) = &grow
        && configs_change
        && !arguments.validate_only
    {
        admin
            .create_partitions(vec![grow.clone()], true)
            .await
            .context("cannot add partitions")?;
        alter_configs(true).await.context("cannot alter topic")?;
    }
    if let Some(grow) = &grow {
        admin
            .create_partitions(vec![grow.clone()], arguments.validate_only)
            .await
            .context("cannot add partitions")?;
    }
    if configs_change {
        alter_configs(arguments.validate_only)
            .await
            .context("cannot alter topic")?;
    }
    if arguments.format == Format::Json {
        let set: serde_json::Map<String, serde_json::Value> = arguments
            .configs
            .iter()
            .map(|(key, value)| (key.clone(), json!(value)))
            .collect();
        return print(&serde_json::to_string(&json!({
            "topic": name,
            "partitions": arguments.partitions,
            "replica_assignments": arguments.replica_assignments,
            "set": set,
            "deleted": arguments.delete_configs,
            "changed": !arguments.validate_only,
        }))?);
    }
    let mut changes: Vec<String> = arguments
        .partitions
        .map(|count| format!("{count} partitions"))
        .into_iter()
        .collect();
    changes.extend(
        arguments
            .configs
            .iter()
            .map(|(key, value)| format!("{key}={value}")),
    );
    changes.extend(
        arguments
            .delete_configs
            .iter()
            .map(|key| format!("{key} (reset to default)")),
    );
    let verb = if arguments.validate_only {
        "Valid change of"
    } else {
        "Updated"
    };
    print(&format!("{verb} topic {name}: {}.", changes.join(", ")))
}

/// Node ids as `1,2,3`, or `-` for none.
pub(crate) fn node_list(nodes: &[u32]) -> String {
    if nodes.is_empty() {
        return "-".to_string();
    }
    nodes
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Offsets from the partition's start to its end: more than its records where compaction or
/// a produce filter left offsets without a record.
fn partition_offsets(partition: &PartitionDescription) -> i64 {
    (partition.high_watermark - partition.log_start_offset).max(0)
}

fn offsets(partitions: &[PartitionDescription]) -> i64 {
    partitions.iter().map(partition_offsets).sum()
}

/// Records of all partitions, as the node counts them.
fn records(partitions: &[PartitionDescription]) -> u64 {
    partitions
        .iter()
        .map(|partition| partition.record_count)
        .sum()
}
