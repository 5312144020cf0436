//! `ledge topic reassign`, `ledge cluster elect-leaders`, `ledge cluster decommission`: the
//! cluster operations of docs/OPERATIONS.md.

use anyhow::{Context, bail};
use ledge_client::{Admin, ClusterPartitionDescription};
use serde::Deserialize;
use serde_json::json;

use crate::args::{DecommissionArgs, ElectLeadersArgs, Format, ReassignArgs};
use crate::cluster::partitions_section;
use crate::output::{print, table};
use crate::topic::node_list;

/// Most partitions one plan file may move (each is one request).
const PLAN_PARTITIONS_MAX: usize = 10_000;

/// A reassignment plan, in kafka-reassign-partitions' `--reassignment-json-file` shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    #[allow(dead_code, reason = "Kafka's format carries it; only version 1 exists")]
    version: Option<u32>,
    partitions: Vec<PlannedMove>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlannedMove {
    topic: String,
    partition: u32,
    replicas: Vec<u32>,
    /// Kafka's per-replica log directories: Ledge has one data directory per node.
    #[serde(default)]
    log_dirs: Option<Vec<String>>,
}

pub(crate) async fn reassign(admin: &Admin, arguments: ReassignArgs) -> anyhow::Result<()> {
    if arguments.status {
        return status(admin, arguments.name.as_deref(), arguments.format).await;
    }
    if let Some(path) = &arguments.plan_file {
        return run_plan(admin, path).await;
    }
    let Some(name) = arguments.name else {
        bail!("give a topic NAME (or --plan-file FILE)");
    };
    let Some(partition) = arguments.partition else {
        bail!("give the --partition to move (or --status to see moves in progress)");
    };
    if arguments.cancel {
        admin
            .cancel_reassignment(&name, partition)
            .await
            .with_context(|| format!("cannot cancel the reassignment of {name}/{partition}"))?;
        return print(&format!(
            "Cancelled the reassignment of {name}/{partition}: back to its original replicas."
        ));
    }
    let Some(replicas) = arguments.replicas else {
        bail!("give the target --replicas (node ids, the preferred leader first: 2,3,4)");
    };
    admin
        .reassign_partition(&name, partition, replicas.clone())
        .await
        .with_context(|| format!("cannot reassign {name}/{partition}"))?;
    print(&format!(
        "Reassigning {name}/{partition} to {}: follow it with `ledge topic reassign {name} --status`.",
        node_list(&replicas)
    ))
}

async fn run_plan(admin: &Admin, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    let plan: Plan = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a reassignment plan", path.display()))?;
    if plan.partitions.len() > PLAN_PARTITIONS_MAX {
        bail!(
            "{}: {} partitions, more than the {PLAN_PARTITIONS_MAX} one plan may move",
            path.display(),
            plan.partitions.len()
        );
    }
    if let Some(planned) = plan.partitions.iter().find(|planned| {
        planned
            .log_dirs
            .as_ref()
            .is_some_and(|dirs| dirs.iter().any(|dir| dir != "any"))
    }) {
        bail!(
            "{}/{}: log_dirs other than \"any\" are not supported (a node has one data directory)",
            planned.topic,
            planned.partition
        );
    }
    let mut started = 0usize;
    for planned in &plan.partitions {
        admin
            .reassign_partition(&planned.topic, planned.partition, planned.replicas.clone())
            .await
            .with_context(|| {
                format!(
                    "cannot reassign {}/{} ({started} of {} partitions started before it)",
                    planned.topic,
                    planned.partition,
                    plan.partitions.len()
                )
            })?;
        started += 1;
    }
    print(&format!(
        "Started {started} reassignment(s): follow them with `ledge topic reassign --status`."
    ))
}

async fn status(admin: &Admin, topic: Option<&str>, format: Format) -> anyhow::Result<()> {
    let moves = admin
        .list_reassignments(topic)
        .await
        .context("cannot list reassignments")?;
    match format {
        Format::Json => {
            let moves: Vec<_> = moves
                .iter()
                .map(|reassignment| {
                    json!({
                        "topic": reassignment.topic,
                        "partition": reassignment.partition,
                        "replicas": reassignment.replicas,
                        "adding": reassignment.adding,
                        "removing": reassignment.removing,
                        "isr": reassignment.isr,
                        "leader": reassignment.leader,
                    })
                })
                .collect();
            print(&serde_json::to_string(&json!({ "reassignments": moves }))?)
        }
        Format::Table if moves.is_empty() => print("No reassignment in progress."),
        Format::Table => {
            let mut rows = table(
                &[
                    "TOPIC",
                    "PARTITION",
                    "REPLICAS",
                    "ADDING",
                    "REMOVING",
                    "ISR",
                    "LEADER",
                ],
                &[1],
            );
            for reassignment in &moves {
                rows.add_row(vec![
                    reassignment.topic.clone(),
                    reassignment.partition.to_string(),
                    node_list(&reassignment.replicas),
                    node_list(&reassignment.adding),
                    node_list(&reassignment.removing),
                    node_list(&reassignment.isr),
                    reassignment
                        .leader
                        .map_or_else(|| "none".to_string(), |leader| leader.to_string()),
                ]);
            }
            print(&format!(
                "Reassignments in progress: {}\n{rows}",
                moves.len()
            ))
        }
    }
}

pub(crate) async fn elect_leaders(
    admin: &Admin,
    arguments: ElectLeadersArgs,
) -> anyhow::Result<()> {
    let election = admin
        .elect_preferred_leaders(arguments.topic.as_deref())
        .await
        .context("cannot elect preferred leaders")?;
    let partition_json = |partitions: &[ClusterPartitionDescription]| -> Vec<serde_json::Value> {
        partitions
            .iter()
            .map(|partition| {
                json!({
                    "topic": partition.topic,
                    "partition": partition.partition,
                    "leader": partition.leader,
                    "replicas": partition.replicas,
                    "isr": partition.isr,
                })
            })
            .collect()
    };
    match arguments.format {
        Format::Json => print(&serde_json::to_string(&json!({
            "moved": partition_json(&election.moved),
            "not_preferred": partition_json(&election.not_preferred),
        }))?),
        Format::Table => print(&format!(
            "{}\n\n{}",
            partitions_section("Leadership moved to the preferred replica", &election.moved),
            partitions_section(
                "Still not led by the preferred replica (not alive or not in sync)",
                &election.not_preferred
            ),
        )),
    }
}

pub(crate) async fn decommission(admin: &Admin, arguments: DecommissionArgs) -> anyhow::Result<()> {
    admin
        .decommission_node(arguments.node)
        .await
        .with_context(|| format!("cannot decommission node {}", arguments.node))?;
    print(&format!(
        "Decommissioned node {}: it is no longer part of the cluster. Remove it from the \
         `peers` of the other nodes' configs at their next restart, and do not start it again \
         with this config (it would register again).",
        arguments.node
    ))
}
