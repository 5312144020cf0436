//! `ledge group ...`: list, describe (with lag), reset-offsets, delete.

use anyhow::Context;
use ledge_client::{Admin, Client, GroupDescription, OffsetResetSpec, PlannedOffset};
use serde_json::json;

use crate::args::{Format, GroupCommand, ResetOffsetsArgs};
use crate::output::{print, table};

pub(crate) async fn run(client: &Client, command: GroupCommand) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    match command {
        GroupCommand::List(arguments) => {
            let groups = admin.list_groups().await.context("cannot list groups")?;
            match arguments.format {
                Format::Json => {
                    let groups: Vec<_> = groups
                        .iter()
                        .map(|group| {
                            json!({
                                "group": group.group_id,
                                "state": group.state,
                                "members": group.members,
                            })
                        })
                        .collect();
                    print(&serde_json::to_string(&groups)?)
                }
                Format::Table if groups.is_empty() => {
                    print("No consumer groups. Start one with: ledge consume TOPIC --group NAME")
                }
                Format::Table => {
                    let mut output = table(&["GROUP", "STATE", "MEMBERS"], &[2]);
                    for group in &groups {
                        output.add_row(vec![
                            group.group_id.clone(),
                            group.state.clone(),
                            group.members.to_string(),
                        ]);
                    }
                    print(&output.to_string())
                }
            }
        }
        GroupCommand::Describe(arguments) => {
            let group = admin
                .describe_group(&arguments.group)
                .await
                .context("cannot describe group")?;
            match arguments.format {
                Format::Json => print(&serde_json::to_string(&describe_json(&group))?),
                Format::Table => print(&describe_table(&group)),
            }
        }
        GroupCommand::ResetOffsets(arguments) => reset_offsets(&admin, arguments).await,
        GroupCommand::Delete(arguments) => {
            admin
                .delete_group(&arguments.group)
                .await
                .context("cannot delete group")?;
            print(&format!("Deleted group {}.", arguments.group))
        }
    }
}

fn describe_table(group: &GroupDescription) -> String {
    let members = match group.members.len() {
        1 => "1 member".to_string(),
        count => format!("{count} members"),
    };
    let mut text = format!("Group {}: {}, {members}", group.group_id, group.state);
    if !group.assignor.is_empty() {
        text.push_str(&format!(
            ", assignor {}, epoch {}",
            group.assignor, group.group_epoch
        ));
    }
    text.push('\n');
    if group.partitions.is_empty() {
        text.push_str("\nNo partitions assigned and no offsets committed yet.");
        return text;
    }
    let mut output = table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "END-OFFSET",
            "LAG",
            "MEMBER",
        ],
        &[1, 2, 3, 4],
    );
    let dash = || "-".to_string();
    for partition in &group.partitions {
        output.add_row(vec![
            partition.partition.topic.clone(),
            partition.partition.partition.to_string(),
            partition
                .committed
                .as_ref()
                .map_or_else(dash, |committed| committed.offset.to_string()),
            partition
                .end_offset
                .map_or_else(dash, |end| end.to_string()),
            partition.lag.map_or_else(dash, |lag| lag.to_string()),
            partition.member_id.clone().unwrap_or_else(dash),
        ]);
    }
    text.push('\n');
    text.push_str(&output.to_string());
    text
}

fn describe_json(group: &GroupDescription) -> serde_json::Value {
    json!({
        "group": group.group_id,
        "state": group.state,
        "assignor": group.assignor,
        "group_epoch": group.group_epoch,
        "members": group.members.iter().map(|member| json!({
            "member_id": member.member_id,
            "instance_id": member.instance_id,
            "client_id": member.client_id,
            "member_epoch": member.member_epoch,
            "subscribed_topics": member.subscribed_topics,
            "assignment": member.assignment.iter().map(|partition| json!({
                "topic": partition.topic,
                "partition": partition.partition,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "partitions": group.partitions.iter().map(|partition| json!({
            "topic": partition.partition.topic,
            "partition": partition.partition.partition,
            "current_offset": partition.committed.as_ref().map(|committed| committed.offset),
            "metadata": partition.committed.as_ref().map(|committed| committed.metadata.clone()),
            "end_offset": partition.end_offset,
            "lag": partition.lag,
            "member": partition.member_id,
        })).collect::<Vec<_>>(),
    })
}

async fn reset_offsets(admin: &Admin, arguments: ResetOffsetsArgs) -> anyhow::Result<()> {
    let spec = if arguments.to_earliest {
        OffsetResetSpec::Earliest
    } else if arguments.to_latest {
        OffsetResetSpec::Latest
    } else if let Some(timestamp) = arguments.to_datetime {
        OffsetResetSpec::Timestamp(timestamp)
    } else if let Some(offset) = arguments.to_offset {
        OffsetResetSpec::Offset(offset)
    } else if let Some(shift) = arguments.shift_by {
        OffsetResetSpec::ShiftBy(shift)
    } else {
        // clap's argument group requires one of the above.
        anyhow::bail!(
            "say where to reset to: --to-earliest, --to-latest, --to-datetime, --to-offset or --shift-by"
        );
    };
    let plan = admin
        .reset_partition_offsets(
            &arguments.group,
            &arguments.topic.topic,
            arguments.topic.partitions.as_deref(),
            spec,
            arguments.dry_run,
        )
        .await
        .with_context(|| format!("cannot reset offsets of group {}", arguments.group))?;
    match arguments.format {
        Format::Json => {
            let planned: Vec<_> = plan
                .iter()
                .map(|planned| {
                    json!({
                        "topic": planned.partition.topic,
                        "partition": planned.partition.partition,
                        "current_offset": planned.current,
                        "new_offset": planned.new_offset,
                    })
                })
                .collect();
            print(&serde_json::to_string(&json!({
                "group": arguments.group,
                "dry_run": arguments.dry_run,
                "partitions": planned,
            }))?)
        }
        Format::Table => {
            print(&plan_table(&plan))?;
            if arguments.dry_run {
                print("Dry run: nothing was committed. Run again without --dry-run to apply.")
            } else {
                print(&format!(
                    "Reset {} partition(s) of {} for group {}.",
                    plan.len(),
                    arguments.topic.topic,
                    arguments.group
                ))
            }
        }
    }
}

fn plan_table(plan: &[PlannedOffset]) -> String {
    let mut output = table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        &[1, 2, 3],
    );
    for planned in plan {
        output.add_row(vec![
            planned.partition.topic.clone(),
            planned.partition.partition.to_string(),
            planned
                .current
                .map_or_else(|| "-".to_string(), |offset| offset.to_string()),
            planned.new_offset.to_string(),
        ]);
    }
    output.to_string()
}
