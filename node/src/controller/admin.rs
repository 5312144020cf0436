//! Topic admin through the controller (issue 13): in a `[cluster]`, CreateTopics,
//! DeleteTopics, AlterConfigs and added partitions are decisions of the active controller,
//! recorded in the metadata log, not changes one node makes to its own registry.
//!
//! - [`AdminRequest`]/[`AdminReply`]: the serde bodies of peer request kind
//!   `ControllerAdmin` (JSON, as the other controller bodies in `peer_link.rs`).
//! - [`execute`]: the decision on the active controller (`ControllerLogic`'s pure code,
//!   proposed through the quorum); answers the log index the change is applied at.
//! - [`register_admin_handler`]: the accepting side on every node; a non-controller answers
//!   `NotController { leader }`.
//! - [`AdminClient`]: the sending side, used by the broker's admin handlers on any node. It
//!   asks the local controller when this node is the active one, else the known leader over
//!   the peer RPC, follows redirects, retries while no controller is known, and returns only
//!   once the change is applied in this node's own image (so a Metadata right after a
//!   CreateTopics on the same node sees the topic). The whole is bounded by
//!   `cluster.peer_request_timeout_ms`.
//!
//! Not here: the validation a node does before forwarding (names, config keys and values,
//! module references: `broker/dispatch.rs` with the registry's rules), and the wire codes
//! (`broker/dispatch.rs` maps [`AdminRefusal`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::decisions::{ControllerError, CreateTopicRequest};
use super::quorum::{Controller, ControllerRequestError};
use super::reassign::ReassignRequest;
use super::records::{NodeId, TopicId};
use crate::clock::{Clock, Elapsed, deadline_after, sleep, timeout_at};
use crate::cluster::peer::service::AlreadyRegistered;
use crate::cluster::peer::{
    PeerClient, PeerHandlerError, PeerHandlers, PeerRequest, PeerRequestKind,
};

/// Pause before asking again while no controller is known (an election in progress) or the
/// one asked could not be reached: one Raft election timeout, so the next try usually finds
/// the new leader.
pub const CONTROLLER_ADMIN_RETRY_MS: u64 = 150;

/// A topic admin request, as forwarded to the active controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Create a topic; the controller places its partitions and draws its id.
    CreateTopic {
        /// The name (checked by the forwarding node).
        name: String,
        /// Partition count.
        partitions: u32,
        /// Replicas per partition; `None`: the cluster's `default_replication_factor`.
        replication_factor: Option<u16>,
        /// Config overrides (checked by the forwarding node).
        configs: BTreeMap<String, String>,
    },
    /// Delete a topic.
    DeleteTopic {
        /// The name.
        name: String,
    },
    /// Change a topic's config overrides.
    AlterTopicConfig {
        /// The name.
        name: String,
        /// Keys set to new values.
        set: BTreeMap<String, String>,
        /// Keys returned to the default.
        delete: Vec<String>,
    },
    /// Grow a topic to `partitions` partitions.
    CreatePartitions {
        /// The name.
        name: String,
        /// The new partition count.
        partitions: u32,
        /// The replicas of each new partition (the preferred leader first); empty: placed
        /// like a creation places them. Absent in bodies from older builds.
        #[serde(default)]
        assignments: Vec<Vec<NodeId>>,
    },
    /// Move leadership back to preferred replicas now (one topic, or all).
    ElectPreferredLeaders {
        /// The topic; `None`: every topic.
        topic: Option<String>,
    },
    /// Start moving a partition to other replicas (`reassign.rs`).
    ReassignPartition {
        /// The topic.
        name: String,
        /// The partition.
        partition: u32,
        /// The target replicas, the preferred leader first.
        replicas: Vec<NodeId>,
    },
    /// Cancel a partition's reassignment.
    CancelReassignment {
        /// The topic.
        name: String,
        /// The partition.
        partition: u32,
    },
    /// Remove a stopped node that holds no replica (`decommission.rs`).
    DecommissionNode {
        /// The node.
        node_id: NodeId,
    },
    /// Hand a block of `count` producer ids to the sending node (KIP-730's
    /// AllocateProducerIds): recorded in the metadata log before the answer, so no id is
    /// ever given twice, across nodes and restarts. The node is the sender's certificate's
    /// (or this node, asked locally), never a body's, and must be registered; the block is
    /// recorded under its current node epoch.
    AllocateProducerIds {
        /// Ids in the block, 1 to [`PRODUCER_ID_BLOCK_COUNT_MAX`].
        count: u32,
    },
    /// Record a named module (its bytes are already stored on the forwarding node; the
    /// others fetch them by digest).
    PutModule {
        /// The name.
        name: String,
        /// Digest, kind, size, parameters.
        module: crate::broker::metadata::StoredModule,
    },
    /// Remove a named module.
    DeleteModule {
        /// The name.
        name: String,
    },
    /// Record a transform's definition (deploy, pause, resume, stop).
    PutTransform {
        /// The name.
        name: String,
        /// The definition (boxed: a stateful one's window and join settings make it the
        /// largest request by far).
        transform: Box<crate::broker::metadata::StoredTransform>,
    },
    /// Remove a transform.
    DeleteTransform {
        /// The name.
        name: String,
    },
    /// Change one SASL user's SCRAM credentials (issue 15; `security/records.rs`).
    AlterUser {
        /// The user name.
        user: String,
        /// The change.
        alteration: crate::security::records::UserAlteration,
    },
    /// Add ACL bindings (validated by the forwarding node; checked again), all or none.
    CreateAcls {
        /// The bindings.
        bindings: Vec<crate::security::acl::AclBinding>,
    },
    /// Remove ACL bindings (those of them still there).
    DeleteAcls {
        /// The bindings.
        bindings: Vec<crate::security::acl::AclBinding>,
    },
    /// Set the cluster's decoy secret if it has none (the first one offered is kept).
    SetDecoySecret {
        /// A node's secret.
        secret: crate::security::records::DecoySecret,
    },
    /// Change one entity's client quotas (issue 15; `security/quota.rs`): each key set to a
    /// value, or removed with `None`.
    AlterClientQuota {
        /// The user, or the default user.
        entity: crate::security::quota::QuotaEntity,
        /// The changes.
        changes: Vec<(crate::security::quota::QuotaKind, Option<u64>)>,
    },
}

/// The most producer ids one AllocateProducerIds may ask for: a peer's body must not use up
/// the id space (i64) in a few requests.
pub const PRODUCER_ID_BLOCK_COUNT_MAX: u32 = 1_000_000;

impl AdminRequest {
    /// The topic the request names, if any.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Self::CreateTopic { name, .. }
            | Self::DeleteTopic { name }
            | Self::AlterTopicConfig { name, .. }
            | Self::CreatePartitions { name, .. }
            | Self::ReassignPartition { name, .. }
            | Self::CancelReassignment { name, .. }
            | Self::ElectPreferredLeaders { topic: Some(name) } => Some(name),
            Self::ElectPreferredLeaders { topic: None }
            | Self::DecommissionNode { .. }
            | Self::AllocateProducerIds { .. }
            | Self::PutModule { .. }
            | Self::DeleteModule { .. }
            | Self::PutTransform { .. }
            | Self::DeleteTransform { .. }
            | Self::AlterUser { .. }
            | Self::CreateAcls { .. }
            | Self::DeleteAcls { .. }
            | Self::SetDecoySecret { .. }
            | Self::AlterClientQuota { .. } => None,
        }
    }

    /// What the request is about, for messages (`topic "orders"`, `node 4`).
    pub fn subject(&self) -> String {
        match self {
            Self::CreateTopic { name, .. }
            | Self::DeleteTopic { name }
            | Self::AlterTopicConfig { name, .. }
            | Self::CreatePartitions { name, .. }
            | Self::ElectPreferredLeaders { topic: Some(name) } => format!("topic {name:?}"),
            Self::ReassignPartition {
                name, partition, ..
            }
            | Self::CancelReassignment { name, partition } => {
                format!("partition {name}/{partition}")
            }
            Self::ElectPreferredLeaders { topic: None } => "every topic".to_owned(),
            Self::DecommissionNode { node_id } => format!("node {node_id}"),
            Self::AllocateProducerIds { count } => format!("a block of {count} producer ids"),
            Self::PutModule { name, .. } | Self::DeleteModule { name } => {
                format!("module {name:?}")
            }
            Self::PutTransform { name, .. } | Self::DeleteTransform { name } => {
                format!("transform {name:?}")
            }
            Self::AlterUser { user, .. } => format!("user {user:?}"),
            Self::CreateAcls { bindings } | Self::DeleteAcls { bindings } => {
                format!("{} ACL(s)", bindings.len())
            }
            Self::SetDecoySecret { .. } => "the decoy secret".to_owned(),
            Self::AlterClientQuota { entity, .. } => format!("client quotas of {entity}"),
        }
    }
}

/// Why the controller refused an admin request: the Kafka error it maps to on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRefusal {
    /// A topic name no node may use (it names directories on every replica).
    InvalidTopic,
    /// Bad replication factor (above the live nodes, zero).
    InvalidReplicationFactor,
    /// A config value the controller checks (min.insync.replicas, unclean election).
    InvalidConfig,
    /// Bad partition count (zero, fewer than now).
    InvalidPartitions,
    /// The topic exists.
    TopicAlreadyExists,
    /// No such topic.
    UnknownTopicOrPartition,
    /// A reassignment target that cannot be used.
    InvalidReplicaAssignment,
    /// The partition is already being reassigned.
    ReassignmentInProgress,
    /// No reassignment to cancel (or it cannot be cancelled).
    NoReassignmentInProgress,
    /// The node cannot be decommissioned now.
    NodeInUse,
    /// No module of that name.
    ModuleNotFound,
    /// A topic config names the module.
    ModuleInUse,
    /// No transform of that name.
    TransformNotFound,
    /// A request no controller can do (a producer id block of 0 or too many ids; a module
    /// or transform request that cannot be recorded as asked).
    InvalidRequest,
    /// A user or ACL change refused (issue 15): the kind says which Kafka error.
    Security(crate::security::records::SecurityRefusal),
    /// Anything else (a bug in a decision; the message says what).
    Internal,
}

impl AdminRefusal {
    /// The refusal a decision's error becomes.
    pub fn of(error: &ControllerError) -> Self {
        match error {
            ControllerError::InvalidReplicationFactor(_) => Self::InvalidReplicationFactor,
            ControllerError::InvalidConfig(_) => Self::InvalidConfig,
            ControllerError::InvalidPartitions(_) => Self::InvalidPartitions,
            ControllerError::TopicAlreadyExists(_) => Self::TopicAlreadyExists,
            ControllerError::UnknownTopicOrPartition(_) => Self::UnknownTopicOrPartition,
            ControllerError::InvalidReplicaAssignment(_) => Self::InvalidReplicaAssignment,
            ControllerError::ReassignmentInProgress(_) => Self::ReassignmentInProgress,
            ControllerError::NoReassignmentInProgress(_) => Self::NoReassignmentInProgress,
            ControllerError::NodeInUse(_) => Self::NodeInUse,
            ControllerError::ModuleNotFound(_) => Self::ModuleNotFound,
            ControllerError::ModuleInUse(_) => Self::ModuleInUse,
            ControllerError::TransformNotFound(_) => Self::TransformNotFound,
            ControllerError::InvalidPluginRequest(_) => Self::InvalidRequest,
            ControllerError::Security { refusal, .. } => Self::Security(*refusal),
            _ => Self::Internal,
        }
    }
}

/// The controller's answer to an [`AdminRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    /// Done: the change is applied in the controller's image at this log index (or was
    /// already so, for a change to nothing).
    Done {
        /// Wait for the local image to reach this index before answering the client.
        applied_index: u64,
    },
    /// A producer id block, recorded in the metadata log: ids `first_producer_id` to
    /// `first_producer_id + count - 1` belong to the asking node.
    ProducerIds {
        /// The block's first id.
        first_producer_id: i64,
    },
    /// Ask `leader` instead (unknown during an election).
    NotController {
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
    /// Refused; nothing changed.
    Refused {
        /// The Kafka error.
        refusal: AdminRefusal,
        /// Why, in one line.
        message: String,
    },
    /// The quorum failed (storage, shutdown).
    Failed {
        /// Why.
        message: String,
    },
}

/// Why an admin request was not done.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The controller refused it; nothing changed.
    #[error("{message}")]
    Refused {
        /// The Kafka error.
        refusal: AdminRefusal,
        /// Why.
        message: String,
    },
    /// No answer in time: no controller known (an election, or no quorum), or the change
    /// not yet seen here.
    #[error(
        "{subject}: the controller did not confirm the change within {waited_ms} ms \
         (cluster.peer_request_timeout_ms): {last}; it may still be applied, check with \
         `ledge topic describe` or `ledge cluster describe`"
    )]
    TimedOut {
        /// What the request was about (`topic "orders"`).
        subject: String,
        /// How long it waited.
        waited_ms: u64,
        /// The last thing that went wrong.
        last: String,
    },
    /// The controller's quorum failed.
    #[error("controller failed: {0}")]
    Failed(String),
}

/// What the controller checks of a request itself, whoever sent it: the forwarding node
/// checked everything already, but a body from a peer (another build, a bug) must not put
/// a name that is a path, a partition count that exhausts memory, or a config no node can
/// parse into the log every node applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Most partitions a topic may have (`limits.topic_partitions_max` of the controller).
    pub topic_partitions_max: u32,
}

/// The request's own problems, before any decision.
fn check_request(request: &AdminRequest, limits: AdminLimits) -> Result<(), AdminReply> {
    let refused = |refusal, message: String| AdminReply::Refused { refusal, message };
    if let Some(name) = request.topic() {
        if let Err(error) = crate::broker::topic_config::validate_topic_name(name) {
            return Err(refused(AdminRefusal::InvalidTopic, error.to_string()));
        }
        // The one internal topic of the cluster's: nodes create `__consumer_offsets` for the
        // group coordinators (`broker/groups.rs`; clients' CreateTopics of `__` names are
        // refused by the node before forwarding). Nothing may delete, alter or grow it.
        let offsets_topic_creation = matches!(
            request,
            AdminRequest::CreateTopic { name, .. } if name == crate::groups::offsets::OFFSETS_TOPIC
        );
        if name.starts_with("__") && !offsets_topic_creation {
            return Err(refused(
                AdminRefusal::InvalidTopic,
                format!(
                    "topic names starting with \"__\" are reserved for internal topics: {name:?}"
                ),
            ));
        }
    }
    if let AdminRequest::AllocateProducerIds { count } = request
        && !(1..=PRODUCER_ID_BLOCK_COUNT_MAX).contains(count)
    {
        return Err(refused(
            AdminRefusal::InvalidRequest,
            format!(
                "a block of {count} producer ids: a block holds 1 to {PRODUCER_ID_BLOCK_COUNT_MAX}"
            ),
        ));
    }
    let partitions = match request {
        AdminRequest::CreateTopic { partitions, .. }
        | AdminRequest::CreatePartitions { partitions, .. } => Some(*partitions),
        _ => None,
    };
    if let Some(partitions) = partitions
        && partitions > limits.topic_partitions_max
    {
        return Err(refused(
            AdminRefusal::InvalidPartitions,
            format!(
                "{partitions} partitions exceed limits.topic_partitions_max ({}) of the controller",
                limits.topic_partitions_max
            ),
        ));
    }
    let configs = match request {
        AdminRequest::CreateTopic { configs, .. } => Some(configs),
        AdminRequest::AlterTopicConfig { set, .. } => Some(set),
        _ => None,
    };
    if let Some(configs) = configs {
        let defaults = crate::broker::topic_config::TopicConfig::default();
        if let Err(error) =
            crate::broker::topic_config::TopicConfig::with_overrides(&defaults, configs)
        {
            return Err(refused(AdminRefusal::InvalidConfig, error.to_string()));
        }
    }
    Ok(())
}

/// What a decision did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executed {
    /// The change is applied in the controller's image at this log index.
    Applied(u64),
    /// A producer id block starting at this id was recorded.
    ProducerIds(i64),
}

/// Runs `request` from node `from` as a decision on `controller` (which must be the active
/// one).
pub async fn execute(
    controller: &Controller,
    from: NodeId,
    request: &AdminRequest,
) -> Result<Executed, ControllerRequestError> {
    match request {
        AdminRequest::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            controller
                .decide(|logic, image| {
                    let request = CreateTopicRequest {
                        name: name.clone(),
                        // The entry this decision becomes is the next one applied.
                        topic_id: TopicId::derive(image.last_applied_index.saturating_add(1), name),
                        partitions: *partitions,
                        replication_factor: *replication_factor,
                        configs: configs.clone(),
                    };
                    logic
                        .create_topic(image, &request)
                        .map(|records| (records, ()))
                })
                .await?
        }
        AdminRequest::DeleteTopic { name } => {
            controller
                .decide(|logic, image| logic.delete_topic(image, name).map(|records| (records, ())))
                .await?
        }
        AdminRequest::AlterTopicConfig { name, set, delete } => {
            controller
                .decide(|logic, image| {
                    logic
                        .alter_topic_config(image, name, set, delete)
                        .map(|records| (records, ()))
                })
                .await?
        }
        AdminRequest::CreatePartitions {
            name,
            partitions,
            assignments,
        } => {
            controller
                .decide(|logic, image| {
                    logic
                        .create_partitions(image, name, *partitions, assignments)
                        .map(|records| (records, ()))
                })
                .await?
        }
        AdminRequest::ElectPreferredLeaders { topic } => {
            controller
                .elect_preferred_leaders_of(topic.as_deref())
                .await
                .map(drop)?;
        }
        AdminRequest::ReassignPartition {
            name,
            partition,
            replicas,
        } => {
            let request = ReassignRequest {
                topic: name.clone(),
                partition: *partition,
                target: replicas.clone(),
            };
            controller
                .decide(|logic, image| {
                    logic
                        .reassign_partition(image, &request)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::CancelReassignment { name, partition } => {
            controller
                .decide(|logic, image| {
                    logic
                        .cancel_reassignment(image, name, *partition)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::DecommissionNode { node_id } => {
            controller.decommission_node(*node_id).await?;
        }
        AdminRequest::AllocateProducerIds { count } => {
            let first = controller
                .decide(|logic, image| {
                    let node_epoch = image
                        .nodes
                        .get(&from)
                        .map(|node| node.node_epoch)
                        .ok_or(ControllerError::UnknownNode { node_id: from })?;
                    logic.allocate_producer_ids(image, from, node_epoch, *count)
                })
                .await?;
            return Ok(Executed::ProducerIds(first));
        }
        AdminRequest::PutModule { name, module } => {
            controller
                .decide(|logic, image| {
                    logic
                        .put_module(image, name, module)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::DeleteModule { name } => {
            controller
                .decide(|logic, image| {
                    logic
                        .delete_module(image, name)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::PutTransform { name, transform } => {
            controller
                .decide(|logic, image| {
                    logic
                        .put_transform(image, name, transform)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::DeleteTransform { name } => {
            controller
                .decide(|logic, image| {
                    logic
                        .delete_transform(image, name)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::AlterUser { user, alteration } => {
            controller
                .decide(|logic, image| {
                    logic
                        .alter_user(image, user, alteration)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::CreateAcls { bindings } => {
            controller
                .decide(|logic, image| {
                    logic
                        .create_acls(image, bindings)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::DeleteAcls { bindings } => {
            controller
                .decide(|logic, image| {
                    logic
                        .delete_acls(image, bindings)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::SetDecoySecret { secret } => {
            controller
                .decide(|logic, image| {
                    logic
                        .set_decoy_secret(image, secret)
                        .map(|records| (records, ()))
                })
                .await?;
        }
        AdminRequest::AlterClientQuota { entity, changes } => {
            controller
                .decide(|logic, image| {
                    logic
                        .alter_client_quota(image, entity, changes)
                        .map(|records| (records, ()))
                })
                .await?;
        }
    }
    // The leader applies an entry before `client_write` returns, so its image holds the
    // change now (and a change to nothing was already there).
    Ok(Executed::Applied(controller.image().last_applied_index))
}

/// Answers `request` from node `from` (the sender's certificate's id, or this node) on the
/// local controller.
pub async fn answer_admin(
    controller: &Controller,
    from: NodeId,
    request: &AdminRequest,
    limits: AdminLimits,
) -> AdminReply {
    if let Err(refused) = check_request(request, limits) {
        return refused;
    }
    match execute(controller, from, request).await {
        Ok(Executed::Applied(applied_index)) => AdminReply::Done { applied_index },
        Ok(Executed::ProducerIds(first_producer_id)) => {
            AdminReply::ProducerIds { first_producer_id }
        }
        Err(ControllerRequestError::NotController { leader }) => {
            AdminReply::NotController { leader }
        }
        Err(ControllerRequestError::Refused(error)) => AdminReply::Refused {
            refusal: AdminRefusal::of(&error),
            message: error.to_string(),
        },
        Err(error @ ControllerRequestError::Quorum(_)) => AdminReply::Failed {
            message: error.to_string(),
        },
    }
}

/// Registers the `ControllerAdmin` handler, answering through `controller`. A body that
/// does not decode is answered `HandlerFailed` with the reason.
pub fn register_admin_handler(
    handlers: &PeerHandlers,
    controller: Arc<Controller>,
    limits: AdminLimits,
) -> Result<(), AlreadyRegistered> {
    handlers.register(
        PeerRequestKind::ControllerAdmin,
        move |request: PeerRequest| {
            let controller = Arc::clone(&controller);
            async move {
                let admin = decode_admin(&request)?;
                let reply = answer_admin(&controller, request.from, &admin, limits).await;
                serde_json::to_vec(&reply)
                    .map(Bytes::from)
                    .map_err(|error| PeerHandlerError(format!("encode answer: {error}")))
            }
        },
    )
}

/// The request a `ControllerAdmin` body carries, or why it does not decode.
fn decode_admin(request: &PeerRequest) -> Result<AdminRequest, PeerHandlerError> {
    serde_json::from_slice(&request.body).map_err(|error| {
        PeerHandlerError(format!(
            "invalid ControllerAdmin body from node {}: {error}",
            request.from
        ))
    })
}

/// Sends admin requests to the active controller from this node.
pub struct AdminClient {
    node_id: NodeId,
    voters: Vec<NodeId>,
    local: Arc<Controller>,
    clients: BTreeMap<NodeId, Arc<PeerClient>>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    limits: AdminLimits,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdminClient")
            .field("node_id", &self.node_id)
            .field("voters", &self.voters)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client on node `node_id` with its controller `local`, its peer `clients`, the
    /// `voters` to try when no leader is known, and `timeout`
    /// (`cluster.peer_request_timeout_ms`) bounding each request end to end; `limits` are
    /// those the local controller applies when it is the active one.
    pub fn new(
        node_id: NodeId,
        voters: Vec<NodeId>,
        local: Arc<Controller>,
        clients: BTreeMap<NodeId, Arc<PeerClient>>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
        limits: AdminLimits,
    ) -> Self {
        Self {
            node_id,
            voters,
            local,
            clients,
            clock,
            timeout,
            limits,
        }
    }

    /// Has the active controller do `request`, and returns once this node's image holds
    /// the change.
    pub async fn submit(&self, request: AdminRequest) -> Result<(), AdminError> {
        self.submit_for_answer(request).await.map(drop)
    }

    /// Has the active controller hand this node a block of `count` producer ids, recorded
    /// in the metadata log; returns the block's first id. Bounded by
    /// `cluster.peer_request_timeout_ms` like every admin request.
    pub async fn allocate_producer_ids(&self, count: u32) -> Result<i64, AdminError> {
        match self
            .submit_for_answer(AdminRequest::AllocateProducerIds { count })
            .await?
        {
            Some(first_producer_id) => Ok(first_producer_id),
            None => Err(AdminError::Failed(
                "the controller answered a producer id request without a block".to_owned(),
            )),
        }
    }

    /// [`Self::submit`], returning the first id of a producer id block if the answer is one.
    async fn submit_for_answer(&self, request: AdminRequest) -> Result<Option<i64>, AdminError> {
        let deadline = deadline_after(self.clock.now(), self.timeout);
        let mut last = String::from("no controller known yet");
        let outcome = timeout_at(
            &*self.clock,
            deadline,
            self.submit_until_done(&request, &mut last),
        )
        .await;
        match outcome {
            Ok(result) => result,
            Err(Elapsed) => Err(AdminError::TimedOut {
                subject: request.subject(),
                waited_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                last,
            }),
        }
    }

    async fn submit_until_done(
        &self,
        request: &AdminRequest,
        last: &mut String,
    ) -> Result<Option<i64>, AdminError> {
        let mut target: Option<NodeId> = None;
        let mut next_voter = 0usize;
        loop {
            let asked = target
                .or_else(|| self.local.leader())
                .or_else(|| {
                    let voter = self
                        .voters
                        .get(next_voter % self.voters.len().max(1))
                        .copied();
                    next_voter = next_voter.wrapping_add(1);
                    voter
                })
                .unwrap_or(self.node_id);
            target = None;
            match self.ask(asked, request).await {
                Ok(AdminReply::Done { applied_index }) => {
                    *last = format!(
                        "the change is committed at log index {applied_index} but not yet applied on this node"
                    );
                    self.applied(applied_index).await;
                    return Ok(None);
                }
                Ok(AdminReply::ProducerIds { first_producer_id }) => {
                    return Ok(Some(first_producer_id));
                }
                Ok(AdminReply::Refused { refusal, message }) => {
                    return Err(AdminError::Refused { refusal, message });
                }
                Ok(AdminReply::Failed { message }) => return Err(AdminError::Failed(message)),
                Ok(AdminReply::NotController {
                    leader: Some(leader),
                }) if leader != asked => {
                    // Redirects are followed at once; a ping-pong between two nodes that
                    // each name the other ends at the deadline.
                    *last = format!("node {asked} named node {leader} as the controller");
                    target = Some(leader);
                    continue;
                }
                Ok(AdminReply::NotController { .. }) => {
                    *last = format!("node {asked} knows no controller (an election?)");
                }
                Err(reason) => *last = reason,
            }
            sleep(
                &*self.clock,
                Duration::from_millis(CONTROLLER_ADMIN_RETRY_MS),
            )
            .await;
        }
    }

    /// Asks node `target` (this node's controller directly, when it is the target).
    async fn ask(&self, target: NodeId, request: &AdminRequest) -> Result<AdminReply, String> {
        if target == self.node_id {
            return Ok(answer_admin(&self.local, self.node_id, request, self.limits).await);
        }
        let client = self
            .clients
            .get(&target)
            .ok_or_else(|| format!("node {target} is not a peer of this node"))?;
        let body = serde_json::to_vec(request).map_err(|error| format!("encode: {error}"))?;
        let answer = client
            .request(PeerRequestKind::ControllerAdmin, &body)
            .await
            .map_err(|error| error.to_string())?;
        serde_json::from_slice(&answer)
            .map_err(|error| format!("invalid answer from node {target}: {error}"))
    }

    /// Waits until this node's image has applied `index`.
    async fn applied(&self, index: u64) {
        let mut image = self.local.subscribe();
        loop {
            if image.borrow_and_update().last_applied_index >= index {
                return;
            }
            if image.changed().await.is_err() {
                // The controller stopped: the deadline answers.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
