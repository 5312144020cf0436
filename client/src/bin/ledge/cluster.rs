//! `ledge cluster describe`: the nodes, the controller and the unhealthy partitions.

use anyhow::Context;
use ledge_client::{Admin, Client, ClusterPartitionDescription};
use serde_json::json;

use crate::args::{ClusterCommand, Format};
use crate::output::{print, table};
use crate::topic::node_list;

pub(crate) async fn run(client: &Client, command: ClusterCommand) -> anyhow::Result<()> {
    let arguments = match command {
        ClusterCommand::Describe(arguments) => arguments,
        ClusterCommand::ElectLeaders(arguments) => {
            return crate::operations::elect_leaders(&Admin::new(client), arguments).await;
        }
        ClusterCommand::Decommission(arguments) => {
            return crate::operations::decommission(&Admin::new(client), arguments).await;
        }
    };
    let cluster = Admin::new(client)
        .describe_cluster()
        .await
        .context("cannot describe the cluster")?;
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
        Format::Json => {
            let nodes: Vec<_> = cluster
                .nodes
                .iter()
                .map(|node| {
                    json!({
                        "id": node.node_id,
                        "address": node.address,
                        "alive": node.alive,
                        "node_epoch": node.node_epoch,
                    })
                })
                .collect();
            print(&serde_json::to_string(&json!({
                "cluster_id": cluster.cluster_id,
                "controller": cluster.controller,
                "nodes": nodes,
                "under_replicated_partitions": partition_json(&cluster.under_replicated),
                "offline_partitions": partition_json(&cluster.offline),
            }))?)
        }
        Format::Table => {
            let mut nodes = table(&["NODE", "ADDRESS", "ALIVE", "NODE EPOCH", "ROLE"], &[0, 3]);
            for node in &cluster.nodes {
                nodes.add_row(vec![
                    node.node_id.to_string(),
                    node.address.clone(),
                    if node.alive { "yes" } else { "no" }.to_string(),
                    node.node_epoch.to_string(),
                    if cluster.controller == Some(node.node_id) {
                        "controller"
                    } else {
                        "-"
                    }
                    .to_string(),
                ]);
            }
            let id = if cluster.cluster_id.is_empty() {
                "(single node, no [cluster] section)".to_string()
            } else {
                cluster.cluster_id.clone()
            };
            let controller = cluster.controller.map_or_else(
                || "none (election under way)".to_string(),
                |id| id.to_string(),
            );
            print(&format!(
                "Cluster: {id}  Controller: {controller}  Nodes: {}\n\n{nodes}\n\n{}\n\n{}",
                cluster.nodes.len(),
                partitions_section("Under-replicated partitions", &cluster.under_replicated),
                partitions_section("Offline partitions", &cluster.offline),
            ))
        }
    }
}

/// A titled table of partitions, or the title and "none".
pub(crate) fn partitions_section(
    title: &str,
    partitions: &[ClusterPartitionDescription],
) -> String {
    if partitions.is_empty() {
        return format!("{title}: none");
    }
    let mut rows = table(
        &["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"],
        &[1, 2],
    );
    for partition in partitions {
        rows.add_row(vec![
            partition.topic.clone(),
            partition.partition.to_string(),
            partition
                .leader
                .map_or_else(|| "none".to_string(), |leader| leader.to_string()),
            node_list(&partition.replicas),
            node_list(&partition.isr),
        ]);
    }
    format!("{title}: {}\n{rows}", partitions.len())
}
