//! Replication on the node's peer RPC (`cluster/peer/`):
//! - [`PeerReplicaTransport`]: the [`ReplicaTransport`] of a `[cluster]` node: replica
//!   fetches as `PeerRequestKind::ReplicaFetch` (the replica wire codec) to the leader's
//!   node, ISR changes as `PeerRequestKind::AlterPartition` (JSON, like the controller's
//!   other node requests) to the active controller, following `NotController` redirects,
//!   and damage reports of a replica as `PeerRequestKind::ReplicaDamaged` the same way;
//! - [`register_replication_handlers`]: the accepting side of both. The follower or leader
//!   a request speaks for is the sender's certificate's node id, never one its body claims.
//!   A body that does not decode is answered `HandlerFailed` with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ledge_protocol::wire::replica::{
    ReplicaFetchLimits, ReplicaFetchRequest, ReplicaFetchResponse,
};
use serde::{Deserialize, Serialize};

use super::manager::{AlterPartitionReply, ReplicaManager, ReplicaTransport};
use super::{LeaderEpoch, NodeEpoch, NodeId, PartitionEpoch};
use crate::cluster::peer::{
    PeerClient, PeerHandlerError, PeerHandlers, PeerRequest, PeerRequestKind,
};
use crate::controller::decisions::{AlterPartitionRequest, ReplicaDamagedRequest};
use crate::controller::{Controller, ControllerRequestError, TopicId};
use crate::storage::Disk;

/// Redirects to another controller followed for one ISR change before giving up (the
/// driver retries after its back-off).
pub const ALTER_PARTITION_REDIRECTS_MAX: u32 = 3;

/// An ISR change on the wire; the leader is the sender (its certificate's node id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlterPartitionBody {
    /// The leader's node epoch.
    pub node_epoch: NodeEpoch,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: u32,
    /// The leader epoch the change is made in.
    pub leader_epoch: LeaderEpoch,
    /// The compare-and-set token.
    pub partition_epoch: PartitionEpoch,
    /// The new ISR with each member's node epoch.
    pub new_isr: Vec<(NodeId, NodeEpoch)>,
}

/// A damaged replica's report on the wire; the replica is the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDamagedBody {
    /// The sender's node epoch.
    pub node_epoch: NodeEpoch,
    /// The topic.
    pub topic_id: TopicId,
    /// The partition.
    pub partition: u32,
}

/// What is asked of the active controller.
enum ControllerAsk {
    AlterPartition(AlterPartitionRequest),
    ReplicaDamaged(ReplicaDamagedRequest),
}

/// Replica fetches and ISR changes over the peer RPC.
pub struct PeerReplicaTransport {
    node_id: NodeId,
    clients: BTreeMap<NodeId, Arc<PeerClient>>,
    /// This node's controller: asked directly when it leads, and for who leads otherwise.
    controller: Option<Arc<Controller>>,
    voters: Vec<NodeId>,
    limits: ReplicaFetchLimits,
}

impl PeerReplicaTransport {
    /// A transport for node `node_id` over `clients` (the node's clients of the others).
    pub fn new(
        node_id: NodeId,
        clients: BTreeMap<NodeId, Arc<PeerClient>>,
        controller: Option<Arc<Controller>>,
        voters: Vec<NodeId>,
    ) -> Self {
        Self {
            node_id,
            clients,
            controller,
            voters,
            limits: ReplicaFetchLimits::default(),
        }
    }

    async fn ask_controller(
        &self,
        target: NodeId,
        request: &ControllerAsk,
    ) -> Result<AlterPartitionReply, String> {
        if target == self.node_id
            && let Some(controller) = &self.controller
        {
            return Ok(match request {
                ControllerAsk::AlterPartition(request) => {
                    answer_alter_partition(controller, request.clone()).await
                }
                ControllerAsk::ReplicaDamaged(request) => {
                    answer_replica_damaged(controller, request.clone()).await
                }
            });
        }
        let client = self
            .clients
            .get(&target)
            .ok_or_else(|| format!("node {target} is not a peer"))?;
        let (kind, body) = match request {
            ControllerAsk::AlterPartition(request) => (
                PeerRequestKind::AlterPartition,
                serde_json::to_vec(&AlterPartitionBody {
                    node_epoch: request.node_epoch,
                    topic_id: request.topic_id,
                    partition: request.partition,
                    leader_epoch: request.leader_epoch,
                    partition_epoch: request.partition_epoch,
                    new_isr: request.new_isr.clone(),
                }),
            ),
            ControllerAsk::ReplicaDamaged(request) => (
                PeerRequestKind::ReplicaDamaged,
                serde_json::to_vec(&ReplicaDamagedBody {
                    node_epoch: request.node_epoch,
                    topic_id: request.topic_id,
                    partition: request.partition,
                }),
            ),
        };
        let body = body.map_err(|error| error.to_string())?;
        let answer = client
            .request(kind, &body)
            .await
            .map_err(|error| error.to_string())?;
        serde_json::from_slice(&answer)
            .map_err(|error| format!("invalid answer from node {target}: {error}"))
    }
}

impl ReplicaTransport for PeerReplicaTransport {
    fn fetch(
        &self,
        leader: NodeId,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, String>> {
        Box::pin(async move {
            let client = self
                .clients
                .get(&leader)
                .ok_or_else(|| format!("node {leader} is not a peer"))?;
            let frame = request.encode_frame().into_bytes();
            let answer = client
                .request(PeerRequestKind::ReplicaFetch, &frame)
                .await
                .map_err(|error| error.to_string())?;
            ReplicaFetchResponse::decode_bounded(answer, &self.limits).map_err(|error| {
                format!("invalid replica fetch answer from node {leader}: {error}")
            })
        })
    }

    fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>> {
        Box::pin(self.to_controller(ControllerAsk::AlterPartition(request)))
    }

    fn report_damaged(
        &self,
        request: ReplicaDamagedRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>> {
        Box::pin(self.to_controller(ControllerAsk::ReplicaDamaged(request)))
    }
}

impl PeerReplicaTransport {
    /// Asks the active controller, following `NotController` redirects.
    async fn to_controller(&self, request: ControllerAsk) -> Result<AlterPartitionReply, String> {
        {
            let mut target = self
                .controller
                .as_ref()
                .and_then(|controller| controller.leader())
                .or_else(|| self.voters.first().copied())
                .ok_or_else(|| "no controller voter is known".to_owned())?;
            let mut reply = self.ask_controller(target, &request).await?;
            for _ in 0..ALTER_PARTITION_REDIRECTS_MAX {
                match reply {
                    AlterPartitionReply::NotController {
                        leader: Some(leader),
                    } if leader != target => {
                        target = leader;
                        reply = self.ask_controller(target, &request).await?;
                    }
                    _ => break,
                }
            }
            Ok(reply)
        }
    }
}

/// Answers an ISR change on the local controller.
pub async fn answer_alter_partition(
    controller: &Controller,
    request: AlterPartitionRequest,
) -> AlterPartitionReply {
    let topic_id = request.topic_id;
    let partition = request.partition;
    match controller.alter_partition(request).await {
        Ok(()) => {
            let image = controller.image();
            match image.partition(topic_id, partition) {
                Some(state) => AlterPartitionReply::Applied {
                    partition_epoch: state.partition_epoch,
                },
                None => AlterPartitionReply::Refused {
                    code: "UNKNOWN_TOPIC_OR_PARTITION".to_owned(),
                    message: format!("partition {topic_id}/{partition} is gone"),
                },
            }
        }
        Err(ControllerRequestError::NotController { leader }) => {
            AlterPartitionReply::NotController { leader }
        }
        Err(error) => AlterPartitionReply::Refused {
            code: error.code().to_owned(),
            message: error.to_string(),
        },
    }
}

/// Answers a damaged replica's report on the local controller.
pub async fn answer_replica_damaged(
    controller: &Controller,
    request: ReplicaDamagedRequest,
) -> AlterPartitionReply {
    let topic_id = request.topic_id;
    let partition = request.partition;
    match controller.replica_damaged(request).await {
        Ok(()) => match controller.image().partition(topic_id, partition) {
            Some(state) => AlterPartitionReply::Applied {
                partition_epoch: state.partition_epoch,
            },
            None => AlterPartitionReply::Refused {
                code: "UNKNOWN_TOPIC_OR_PARTITION".to_owned(),
                message: format!("partition {topic_id}/{partition} is gone"),
            },
        },
        Err(ControllerRequestError::NotController { leader }) => {
            AlterPartitionReply::NotController { leader }
        }
        Err(error) => AlterPartitionReply::Refused {
            code: error.code().to_owned(),
            message: error.to_string(),
        },
    }
}

/// Registers the replica fetch handler (answered by `manager` as leader) and the ISR change
/// handler (answered by `controller`).
pub fn register_replication_handlers<D: Disk>(
    handlers: &PeerHandlers,
    manager: Arc<ReplicaManager<D>>,
    controller: Option<Arc<Controller>>,
) -> Result<(), crate::cluster::peer::service::AlreadyRegistered> {
    let limits = ReplicaFetchLimits::default();
    handlers.register(
        PeerRequestKind::ReplicaFetch,
        move |request: PeerRequest| {
            let manager = Arc::clone(&manager);
            async move {
                let body = ReplicaFetchRequest::decode_bounded(request.body, &limits).map_err(
                    |error| {
                        PeerHandlerError(format!(
                            "invalid replica fetch from node {}: {error}",
                            request.from
                        ))
                    },
                )?;
                let answer = manager.handle_replica_fetch(request.from, body).await;
                Ok(answer.encode_frame().into_bytes())
            }
        },
    )?;
    if let Some(controller) = controller {
        let damage_controller = Arc::clone(&controller);
        handlers.register(
            PeerRequestKind::AlterPartition,
            move |request: PeerRequest| {
                let controller = Arc::clone(&controller);
                async move {
                    let body: AlterPartitionBody =
                        serde_json::from_slice(&request.body).map_err(|error| {
                            PeerHandlerError(format!(
                                "invalid AlterPartition body from node {}: {error}",
                                request.from
                            ))
                        })?;
                    let reply = answer_alter_partition(
                        &controller,
                        AlterPartitionRequest {
                            node_id: request.from,
                            node_epoch: body.node_epoch,
                            topic_id: body.topic_id,
                            partition: body.partition,
                            leader_epoch: body.leader_epoch,
                            partition_epoch: body.partition_epoch,
                            new_isr: body.new_isr,
                        },
                    )
                    .await;
                    serde_json::to_vec(&reply)
                        .map(Bytes::from)
                        .map_err(|error| PeerHandlerError(format!("encode answer: {error}")))
                }
            },
        )?;
        handlers.register(
            PeerRequestKind::ReplicaDamaged,
            move |request: PeerRequest| {
                let controller = Arc::clone(&damage_controller);
                async move {
                    let body: ReplicaDamagedBody =
                        serde_json::from_slice(&request.body).map_err(|error| {
                            PeerHandlerError(format!(
                                "invalid ReplicaDamaged body from node {}: {error}",
                                request.from
                            ))
                        })?;
                    // The replica reported on is the sender's certificate's, never one a
                    // body could name.
                    let reply = answer_replica_damaged(
                        &controller,
                        ReplicaDamagedRequest {
                            node_id: request.from,
                            node_epoch: body.node_epoch,
                            topic_id: body.topic_id,
                            partition: body.partition,
                        },
                    )
                    .await;
                    serde_json::to_vec(&reply)
                        .map(Bytes::from)
                        .map_err(|error| PeerHandlerError(format!("encode answer: {error}")))
                }
            },
        )?;
    }
    Ok(())
}
