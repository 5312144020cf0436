//! Cluster operations (issue 13): preferred-leader election, partition reassignment and its
//! status, decommissioning a node. Any node answers; it forwards to the active controller.

use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};

use super::{Admin, ClusterPartitionDescription, request_with_retry, unexpected};
use crate::cluster::failover::RequestKind;
use crate::error::AdminError;

/// What [`Admin::elect_preferred_leaders`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferredLeaderElection {
    /// Partitions now led by their preferred replica (the first).
    pub moved: Vec<ClusterPartitionDescription>,
    /// Partitions still led by another replica: their preferred one is not alive or not in
    /// the ISR.
    pub not_preferred: Vec<ClusterPartitionDescription>,
}

/// A partition being moved, from [`Admin::list_reassignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentDescription {
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Its replicas while it moves: the target, then those being removed.
    pub replicas: Vec<u32>,
    /// Being added (copying until they are in the ISR).
    pub adding: Vec<u32>,
    /// Removed once every target replica is in the ISR.
    pub removing: Vec<u32>,
    /// In-sync replicas now.
    pub isr: Vec<u32>,
    /// Leader now.
    pub leader: Option<u32>,
}

fn refused(code: ErrorCode, message: String) -> Result<(), AdminError> {
    if code == ErrorCode::None {
        Ok(())
    } else {
        Err(AdminError::Cluster { code, message })
    }
}

fn described(partitions: Vec<wire::ClusterPartition>) -> Vec<ClusterPartitionDescription> {
    partitions
        .into_iter()
        .map(|partition| ClusterPartitionDescription {
            topic: partition.topic,
            partition: partition.partition,
            leader: partition.leader,
            replicas: partition.replicas,
            isr: partition.isr,
        })
        .collect()
}

impl Admin {
    /// Moves leadership back to each partition's preferred replica (the first) where it is
    /// alive and in the ISR, now (Kafka's preferred leader election), for one topic or all.
    pub async fn elect_preferred_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<PreferredLeaderElection, AdminError> {
        let request = Request::ElectLeaders(wire::ElectLeadersRequest {
            topic: topic.map(str::to_owned),
        });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::ElectLeaders(response) => response,
            other => return Err(unexpected(ApiKey::ElectLeaders, &other).into()),
        };
        refused(response.error, response.message)?;
        Ok(PreferredLeaderElection {
            moved: described(response.moved),
            not_preferred: described(response.not_preferred),
        })
    }

    /// Starts moving `topic`/`partition` to `replicas` (the preferred leader first): the new
    /// replicas copy from the leader while it serves, and the removed ones are dropped once
    /// every new one is in sync. Refused (`InvalidReplicaAssignment`,
    /// `InvalidReplicationFactor`, `ReassignmentInProgress`, `UnknownTopicOrPartition`) with
    /// nothing changed.
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<u32>,
    ) -> Result<(), AdminError> {
        self.alter_reassignment(topic, partition, replicas, false)
            .await
    }

    /// Cancels `topic`/`partition`'s reassignment: back to its original replicas.
    pub async fn cancel_reassignment(&self, topic: &str, partition: u32) -> Result<(), AdminError> {
        self.alter_reassignment(topic, partition, Vec::new(), true)
            .await
    }

    async fn alter_reassignment(
        &self,
        topic: &str,
        partition: u32,
        replicas: Vec<u32>,
        cancel: bool,
    ) -> Result<(), AdminError> {
        let request =
            Request::AlterPartitionReassignments(wire::AlterPartitionReassignmentsRequest {
                topic: topic.to_owned(),
                partition,
                replicas,
                cancel,
            });
        match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::AlterPartitionReassignments(response) => {
                refused(response.error, response.message)
            }
            other => Err(unexpected(ApiKey::AlterPartitionReassignments, &other).into()),
        }
    }

    /// The reassignments in progress, of one topic or all.
    pub async fn list_reassignments(
        &self,
        topic: Option<&str>,
    ) -> Result<Vec<ReassignmentDescription>, AdminError> {
        let request =
            Request::ListPartitionReassignments(wire::ListPartitionReassignmentsRequest {
                topic: topic.map(str::to_owned),
            });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::ListPartitionReassignments(response) => response,
            other => return Err(unexpected(ApiKey::ListPartitionReassignments, &other).into()),
        };
        refused(response.error, response.message)?;
        Ok(response
            .reassignments
            .into_iter()
            .map(|reassignment| ReassignmentDescription {
                topic: reassignment.topic,
                partition: reassignment.partition,
                replicas: reassignment.replicas,
                adding: reassignment.adding,
                removing: reassignment.removing,
                isr: reassignment.isr,
                leader: reassignment.leader,
            })
            .collect())
    }

    /// Removes node `node_id` from the cluster: refused (`NodeInUse`) while it is alive,
    /// still holds replicas (the message lists them), or votes in the controller quorum.
    pub async fn decommission_node(&self, node_id: u32) -> Result<(), AdminError> {
        let request = Request::DecommissionNode(wire::DecommissionNodeRequest { node_id });
        match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::DecommissionNode(response) => refused(response.error, response.message),
            other => Err(unexpected(ApiKey::DecommissionNode, &other).into()),
        }
    }
}
