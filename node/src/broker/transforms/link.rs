//! How a transform reaches the rest of a `[cluster]` (issue 13 item 3). On one node the
//! runner works on its own registry and group service; in a cluster the partition tasks run
//! where their input partitions are led, their output goes to each output partition's
//! leader, their positions to the coordinator of `__transform.<name>`, and definitions
//! change through the controller. [`TransformLink`] is that window, implemented by the
//! broker (`broker/plugin_cluster.rs`) over the metadata image, the local data path and the
//! peer clients, and set once before the runner starts. It is a trait so the runner keeps
//! holding narrow handles, never the broker.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ledge_protocol::wire::ErrorCode;

use crate::cluster::NodeId;
use crate::controller::admin::{AdminError, AdminRequest};

/// Why a request through the cluster did not succeed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LinkError {
    /// The partition (or the group's offsets partition) has no leader in the image now.
    #[error("{topic}/{partition} has no leader now")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The node that should do it refused (not the leader any more, too few replicas in
    /// sync, a timeout).
    #[error("node {node} refused: {code:?}: {message}")]
    Refused {
        /// The node asked.
        node: NodeId,
        /// Its answer.
        code: ErrorCode,
        /// Why.
        message: String,
    },
    /// The node did not answer, or answered something this node cannot read.
    #[error("node {node}: {reason}")]
    Unreachable {
        /// The node asked.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The broker is closing.
    #[error("the node is shutting down")]
    Closed,
}

/// A transform's window on the cluster (see the module docs).
pub trait TransformLink: Send + Sync {
    /// This node id.
    fn node_id(&self) -> NodeId;

    /// The leader of `topic`/`partition` in the image (`None`: none now, or no such
    /// partition).
    fn leader(&self, topic: &str, partition: u32) -> Option<NodeId>;

    /// How far a task may read `topic`/`partition` here, as a watch: the replicated high
    /// watermark where this node leads it (a record above it is on too few replicas and a
    /// failover may still truncate it, so output made from it could outlive its input, as
    /// a consumer fetch never sees it either); `None` where replication does not manage the
    /// partition (the log's own high watermark then). Refused where this node does not lead
    /// it.
    fn read_bound(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<i64>>, LinkError>;

    /// Appends `batch` (one record batch, no producer id) to `topic`/`partition` on its
    /// leader with `acks=all` (through the leader's produce path: its role and epoch checks,
    /// the topic's produce filter); answered with the batch's base offset once the
    /// partition's in-sync replicas hold it.
    fn append(
        &self,
        topic: String,
        partition: u32,
        batch: Bytes,
    ) -> BoxFuture<'static, Result<i64, LinkError>>;

    /// Commits transform `transform`'s position in `topic`/`partition` at its coordinator,
    /// durably (acks=all on its `__consumer_offsets` partition).
    fn commit_position(
        &self,
        transform: String,
        topic: String,
        partition: u32,
        offset: i64,
    ) -> BoxFuture<'static, Result<(), LinkError>>;

    /// Transform `transform`'s committed positions in `topic`, by partition, from its
    /// coordinator.
    fn positions(
        &self,
        transform: String,
        topic: String,
    ) -> BoxFuture<'static, Result<BTreeMap<u32, i64>, LinkError>>;

    /// Forgets transform `transform`'s positions at its coordinator (after its removal).
    fn delete_positions(&self, transform: String) -> BoxFuture<'static, Result<(), LinkError>>;

    /// Has the active controller do `request`; returns once this node's registry holds the
    /// change (topics materialized, modules and transforms mirrored).
    fn admin(&self, request: AdminRequest) -> BoxFuture<'static, Result<(), AdminError>>;
}
