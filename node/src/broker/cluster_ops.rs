//! The cluster operations a client asks any node for (issue 13 items 3 and 6): preferred
//! leader election, partition reassignment and its status, decommissioning a node. Each is
//! forwarded to the active controller as a `ControllerAdmin` request (`controller/admin.rs`);
//! the reassignment status is answered from this node's own image. A node with no
//! `[cluster]` section has nothing to move: election answers nothing moved, the others are
//! refused with one line.

use std::collections::BTreeSet;

use ledge_protocol::wire::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ClusterPartition,
    DecommissionNodeRequest, DecommissionNodeResponse, ElectLeadersRequest, ElectLeadersResponse,
    ErrorCode, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    PartitionReassignment,
};

use super::Broker;
use crate::controller::MetadataImage;
use crate::controller::admin::AdminRequest;
use crate::storage::Disk;

const NOT_A_CLUSTER: &str =
    "this node has no [cluster] section: it is the only node, so there is nothing to move";

impl<D: Disk> Broker<D> {
    pub(super) async fn elect_leaders(&self, request: ElectLeadersRequest) -> ElectLeadersResponse {
        let Some(source) = self.cluster_source.get() else {
            return ElectLeadersResponse::default();
        };
        let topic = request.topic;
        let before = not_preferred(&source.image.borrow(), topic.as_deref());
        if let Err((error, message)) = self
            .controller_admin(
                source,
                AdminRequest::ElectPreferredLeaders {
                    topic: topic.clone(),
                },
            )
            .await
        {
            return ElectLeadersResponse {
                error,
                message,
                ..ElectLeadersResponse::default()
            };
        }
        let image = source.image.borrow().clone();
        let after = not_preferred(&image, topic.as_deref());
        let still: BTreeSet<(String, u32)> = after
            .iter()
            .map(|entry| (entry.topic.clone(), entry.partition))
            .collect();
        let moved = before
            .into_iter()
            .filter(|entry| !still.contains(&(entry.topic.clone(), entry.partition)))
            .filter_map(|entry| {
                let state = image
                    .topics
                    .get(&entry.topic)?
                    .partitions
                    .get(usize::try_from(entry.partition).ok()?)?;
                Some(ClusterPartition {
                    leader: state.leader,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                    ..entry
                })
            })
            .collect();
        ElectLeadersResponse {
            error: ErrorCode::None,
            message: String::new(),
            moved,
            not_preferred: after,
        }
    }

    pub(super) async fn alter_partition_reassignments(
        &self,
        request: AlterPartitionReassignmentsRequest,
    ) -> AlterPartitionReassignmentsResponse {
        let Some(source) = self.cluster_source.get() else {
            return AlterPartitionReassignmentsResponse {
                error: ErrorCode::InvalidRequest,
                message: NOT_A_CLUSTER.to_owned(),
            };
        };
        let admin = if request.cancel {
            AdminRequest::CancelReassignment {
                name: request.topic,
                partition: request.partition,
            }
        } else {
            AdminRequest::ReassignPartition {
                name: request.topic,
                partition: request.partition,
                replicas: request.replicas,
            }
        };
        match self.controller_admin(source, admin).await {
            Ok(()) => AlterPartitionReassignmentsResponse::default(),
            Err((error, message)) => AlterPartitionReassignmentsResponse { error, message },
        }
    }

    pub(super) fn list_partition_reassignments(
        &self,
        request: ListPartitionReassignmentsRequest,
    ) -> ListPartitionReassignmentsResponse {
        let Some(source) = self.cluster_source.get() else {
            return ListPartitionReassignmentsResponse::default();
        };
        let image = source.image.borrow().clone();
        if let Some(topic) = &request.topic
            && !image.topics.contains_key(topic)
        {
            return ListPartitionReassignmentsResponse {
                error: ErrorCode::UnknownTopicOrPartition,
                message: format!("unknown topic {topic:?}"),
                reassignments: Vec::new(),
            };
        }
        let reassignments = image
            .reassignments
            .iter()
            .filter_map(|reassignment| {
                let (name, topic) = image.topic_by_id(reassignment.topic_id)?;
                if request.topic.as_deref().is_some_and(|only| only != name) {
                    return None;
                }
                let state = topic
                    .partitions
                    .get(usize::try_from(reassignment.partition).ok()?)?;
                Some(PartitionReassignment {
                    topic: name.to_owned(),
                    partition: reassignment.partition,
                    replicas: state.replicas.clone(),
                    adding: reassignment.adding(),
                    removing: reassignment.removing(),
                    isr: state.isr.clone(),
                    leader: state.leader,
                })
            })
            .collect();
        ListPartitionReassignmentsResponse {
            error: ErrorCode::None,
            message: String::new(),
            reassignments,
        }
    }

    pub(super) async fn decommission_node(
        &self,
        request: DecommissionNodeRequest,
    ) -> DecommissionNodeResponse {
        let Some(source) = self.cluster_source.get() else {
            return DecommissionNodeResponse {
                error: ErrorCode::InvalidRequest,
                message: NOT_A_CLUSTER.to_owned(),
            };
        };
        let admin = AdminRequest::DecommissionNode {
            node_id: request.node_id,
        };
        match self.controller_admin(source, admin).await {
            Ok(()) => DecommissionNodeResponse::default(),
            Err((error, message)) => DecommissionNodeResponse { error, message },
        }
    }
}

/// The partitions (of `topic`, or all) led by a replica other than their first.
fn not_preferred(image: &MetadataImage, topic: Option<&str>) -> Vec<ClusterPartition> {
    image
        .topics
        .iter()
        .filter(|(name, _)| topic.is_none_or(|only| only == name.as_str()))
        .flat_map(|(name, topic)| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, state)| state.leader != state.replicas.first().copied())
                .map(|(index, state)| ClusterPartition {
                    topic: name.clone(),
                    partition: u32::try_from(index).unwrap_or(u32::MAX),
                    leader: state.leader,
                    replicas: state.replicas.clone(),
                    isr: state.isr.clone(),
                })
        })
        .collect()
}
