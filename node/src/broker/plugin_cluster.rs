//! WASM plug-ins in a `[cluster]` (issue 13 item 3).
//!
//! - **Modules and transforms are the controller's.** Uploads, deletes, deploys, pauses,
//!   resumes, stops and removals become `PutModule`/`DeleteModule`/`PutTransform`/
//!   `DeleteTransform` records (`controller/decisions/plugins.rs`). Every node mirrors the
//!   image's modules and transforms into its `metadata.json` (`Broker::mirror_plugins`,
//!   driven by `Broker::run_plugin_mirror`), so the plug-in host and the transform runner
//!   read them as on one node.
//! - **Module bytes travel by digest.** The node that takes an upload (or a deploy) stores
//!   and compiles the bytes before it asks the controller; a node whose image names a
//!   digest it lacks asks the other nodes for it (peer kind `Plugins`,
//!   [`PluginPeerRequest::FetchModule`]), and keeps the bytes only if they are at most
//!   `wasm.module_bytes_max` and their SHA-256 is the digest. A module whose bytes no node
//!   could give yet is retried every [`PLUGIN_MIRROR_RETRY_MS`].
//! - **Transforms run on the leaders of their input partitions** (the runner's
//!   [`TransformLink`], implemented here by [`BrokerLink`]): output goes to each output
//!   partition's leader with acks=all (this node's produce path, or the leader's through
//!   [`PluginPeerRequest::AppendOutput`]); positions go to the coordinator of
//!   `__transform.<name>` (the leader of its `__consumer_offsets` partition), synced and
//!   held by that partition's in-sync replicas before the chunk counts as done.
//!
//! Peer body layout (both directions): a 4-byte big-endian length, that many bytes of
//! JSON (the request or reply), then the payload (a batch, module bytes, or nothing).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use ledge_protocol::Record;
use ledge_protocol::wire::{
    Acks, ErrorCode, ProducePartition, ProduceRequest, ProduceTopic, UploadModuleRequest,
};
use serde::{Deserialize, Serialize};

use super::Broker;
use super::transforms::{LinkError, TransformLink, position_group};
use crate::cluster::NodeId;
use crate::cluster::peer::service::AlreadyRegistered;
use crate::cluster::peer::{
    PeerClient, PeerHandlerError, PeerHandlers, PeerRequest, PeerRequestKind,
};
use crate::controller::MetadataImage;
use crate::controller::admin::{AdminError, AdminRequest};
use crate::groups::offsets::{OFFSETS_TOPIC, OffsetKey, encode_value};
use crate::groups::placement::offsets_partition_of;
use crate::storage::{AppendDurability, Disk};

/// Pause before the mirror retries what failed (module bytes no node could give yet, a
/// transform whose module is not here yet, a `metadata.json` write).
pub const PLUGIN_MIRROR_RETRY_MS: u64 = 1_000;

/// Longest a transform's output append or position commit waits for the in-sync replicas
/// on the node that takes it: below the default `cluster.peer_request_timeout_ms` (5 s),
/// so the asking node hears the outcome rather than its own timeout.
pub const PLUGIN_PEER_ACKS_WAIT_MS: u32 = 4_000;

/// Most bytes of JSON a `Plugins` peer body may carry before its payload.
pub const PLUGIN_PEER_HEADER_BYTES_MAX: usize = 64 * 1024;

/// A request of peer kind `Plugins`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PluginPeerRequest {
    /// The stored bytes of the module with this SHA-256 (hex).
    FetchModule {
        /// The digest.
        hash: String,
    },
    /// Append the payload (one record batch) to `topic`/`partition` with acks=all; only
    /// the partition's leader takes it.
    AppendOutput {
        /// The output topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// Commit a transform's position; only its coordinator takes it.
    CommitPosition {
        /// The transform.
        transform: String,
        /// Its input topic.
        topic: String,
        /// The input partition.
        partition: u32,
        /// The next offset to process.
        offset: i64,
    },
    /// A transform's committed positions in its input topic; only its coordinator answers.
    Positions {
        /// The transform.
        transform: String,
        /// Its input topic.
        topic: String,
    },
    /// Forget a removed transform's positions; only its coordinator does.
    DeletePositions {
        /// The transform.
        transform: String,
    },
}

/// The answer to a [`PluginPeerRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PluginPeerReply {
    /// The module's bytes are the payload.
    Module,
    /// This node does not have the module's bytes.
    NoModule,
    /// Done.
    Done,
    /// Appended at this base offset (and held by the in-sync replicas).
    Appended {
        /// The batch's first offset.
        base_offset: i64,
    },
    /// Committed positions, by partition.
    Positions {
        /// By partition.
        positions: BTreeMap<u32, i64>,
    },
    /// Refused: the wire code and why.
    Refused {
        /// An `ErrorCode` number.
        code: u16,
        /// Why.
        message: String,
    },
}

/// Why a `Plugins` body does not decode.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PluginBodyError {
    /// Shorter than its length prefix says.
    #[error("body of {bytes} bytes is shorter than its header")]
    Truncated {
        /// The body's size.
        bytes: usize,
    },
    /// The JSON part is over [`PLUGIN_PEER_HEADER_BYTES_MAX`].
    #[error("header of {bytes} bytes exceeds {PLUGIN_PEER_HEADER_BYTES_MAX}")]
    HeaderTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The JSON part does not parse.
    #[error("header does not parse: {0}")]
    Json(String),
}

/// Encodes a `Plugins` body: JSON header, then `payload`.
pub fn encode_body<T: Serialize>(header: &T, payload: &[u8]) -> Bytes {
    // Serializing these plain enums cannot fail; an empty header would be refused by the
    // receiver rather than misread.
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut body = BytesMut::with_capacity(4 + json.len() + payload.len());
    body.put_u32(u32::try_from(json.len()).unwrap_or(u32::MAX));
    body.put_slice(&json);
    body.put_slice(payload);
    body.freeze()
}

/// Decodes a `Plugins` body into its header and payload.
pub fn decode_body<T: for<'de> Deserialize<'de>>(
    body: &Bytes,
) -> Result<(T, Bytes), PluginBodyError> {
    let truncated = PluginBodyError::Truncated { bytes: body.len() };
    let prefix: [u8; 4] = body
        .get(..4)
        .and_then(|prefix| prefix.try_into().ok())
        .ok_or_else(|| truncated.clone())?;
    let length = u32::from_be_bytes(prefix) as usize;
    if length > PLUGIN_PEER_HEADER_BYTES_MAX {
        return Err(PluginBodyError::HeaderTooLarge { bytes: length });
    }
    let end = 4usize
        .checked_add(length)
        .ok_or_else(|| truncated.clone())?;
    let json = body.get(4..end).ok_or(truncated)?;
    let header =
        serde_json::from_slice(json).map_err(|error| PluginBodyError::Json(error.to_string()))?;
    Ok((header, body.slice(end..)))
}

/// The leader of `topic`/`partition` in `image`.
fn leader_in(image: &MetadataImage, topic: &str, partition: u32) -> Option<NodeId> {
    image
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)?
        .leader
}

/// The `__consumer_offsets` partition of transform `transform`'s positions, and its leader.
fn coordinator_in(image: &MetadataImage, transform: &str) -> (u32, Option<NodeId>) {
    let count = image.topics.get(OFFSETS_TOPIC).map_or(0, |topic| {
        u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX)
    });
    let partition = offsets_partition_of(&position_group(transform), count.max(1));
    let leader = if count == 0 {
        None
    } else {
        leader_in(image, OFFSETS_TOPIC, partition)
    };
    (partition, leader)
}

/// What [`Broker::start_plugin_cluster`] needs from the node's cluster parts.
pub struct PluginClusterParts<'a> {
    /// The peer handler registry (the `Plugins` kind is registered there).
    pub handlers: &'a PeerHandlers,
    /// This node's clients of the other nodes.
    pub clients: BTreeMap<NodeId, Arc<PeerClient>>,
    /// Whether transforms run on this node (not on a read-only data directory).
    pub run_transforms: bool,
}

/// The broker's side of a transform's [`TransformLink`].
pub struct BrokerLink<D: Disk> {
    broker: Weak<Broker<D>>,
    node_id: NodeId,
    image: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
    clients: BTreeMap<NodeId, Arc<PeerClient>>,
}

impl<D: Disk> BrokerLink<D> {
    fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image.borrow())
    }

    /// Sends `request` (with `payload`) to node `node` and decodes the reply.
    async fn ask(
        clients: &BTreeMap<NodeId, Arc<PeerClient>>,
        node: NodeId,
        request: &PluginPeerRequest,
        payload: &[u8],
    ) -> Result<(PluginPeerReply, Bytes), LinkError> {
        let unreachable = |reason: String| LinkError::Unreachable { node, reason };
        let client = clients
            .get(&node)
            .ok_or_else(|| unreachable("not a peer of this node".to_owned()))?;
        let answer = client
            .request(PeerRequestKind::Plugins, &encode_body(request, payload))
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        decode_body(&answer).map_err(|error| unreachable(format!("invalid answer: {error}")))
    }

    fn refused(node: NodeId, (code, message): (ErrorCode, String)) -> LinkError {
        LinkError::Refused {
            node,
            code,
            message,
        }
    }
}

/// A reply that is only `Done` or a refusal.
fn expect_done(node: NodeId, reply: PluginPeerReply) -> Result<(), LinkError> {
    match reply {
        PluginPeerReply::Done => Ok(()),
        PluginPeerReply::Refused { code, message } => Err(LinkError::Refused {
            node,
            code: ErrorCode::from_u16(code),
            message,
        }),
        other => Err(LinkError::Unreachable {
            node,
            reason: format!("unexpected answer {other:?}"),
        }),
    }
}

impl<D: Disk> TransformLink for BrokerLink<D> {
    fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn leader(&self, topic: &str, partition: u32) -> Option<NodeId> {
        leader_in(&self.image(), topic, partition)
    }

    fn read_bound(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<i64>>, LinkError> {
        let broker = self.broker.upgrade().ok_or(LinkError::Closed)?;
        match broker.data.replicated_bound(topic, partition) {
            Ok(bound) => Ok(bound.map(|(_, high_watermark)| high_watermark)),
            Err(error) => Err(LinkError::Refused {
                node: self.node_id,
                code: super::dispatch::fetch_wire(&error).0,
                message: crate::broker::client_text::client_text(&error),
            }),
        }
    }

    fn append(
        &self,
        topic: String,
        partition: u32,
        batch: Bytes,
    ) -> BoxFuture<'static, Result<i64, LinkError>> {
        let leader = self.leader(&topic, partition);
        let broker = self.broker.clone();
        let clients = self.clients.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let Some(leader) = leader else {
                return Err(LinkError::NoLeader { topic, partition });
            };
            if leader == node_id {
                let broker = broker.upgrade().ok_or(LinkError::Closed)?;
                return broker
                    .append_here(&topic, partition, batch)
                    .await
                    .map_err(|refusal| Self::refused(node_id, refusal));
            }
            let request = PluginPeerRequest::AppendOutput { topic, partition };
            match Self::ask(&clients, leader, &request, &batch).await? {
                (PluginPeerReply::Appended { base_offset }, _) => Ok(base_offset),
                (reply, _) => expect_done(leader, reply).and_then(|()| {
                    Err(LinkError::Unreachable {
                        node: leader,
                        reason: "answered Done to an append".to_owned(),
                    })
                }),
            }
        })
    }

    fn commit_position(
        &self,
        transform: String,
        topic: String,
        partition: u32,
        offset: i64,
    ) -> BoxFuture<'static, Result<(), LinkError>> {
        let broker = self.broker.clone();
        let clients = self.clients.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let broker = broker.upgrade().ok_or(LinkError::Closed)?;
            let coordinator = broker.position_coordinator(&transform).await?;
            if coordinator == node_id {
                return broker
                    .commit_position_here(&transform, &topic, partition, offset)
                    .await
                    .map_err(|refusal| Self::refused(node_id, refusal));
            }
            let request = PluginPeerRequest::CommitPosition {
                transform,
                topic,
                partition,
                offset,
            };
            let (reply, _) = Self::ask(&clients, coordinator, &request, &[]).await?;
            expect_done(coordinator, reply)
        })
    }

    fn positions(
        &self,
        transform: String,
        topic: String,
    ) -> BoxFuture<'static, Result<BTreeMap<u32, i64>, LinkError>> {
        let broker = self.broker.clone();
        let clients = self.clients.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let broker = broker.upgrade().ok_or(LinkError::Closed)?;
            let coordinator = broker.position_coordinator(&transform).await?;
            if coordinator == node_id {
                return broker
                    .positions_here(&transform, &topic)
                    .await
                    .map_err(|refusal| Self::refused(node_id, refusal));
            }
            let request = PluginPeerRequest::Positions { transform, topic };
            match Self::ask(&clients, coordinator, &request, &[]).await? {
                (PluginPeerReply::Positions { positions }, _) => Ok(positions),
                (reply, _) => expect_done(coordinator, reply).and_then(|()| {
                    Err(LinkError::Unreachable {
                        node: coordinator,
                        reason: "answered Done to a positions request".to_owned(),
                    })
                }),
            }
        })
    }

    fn delete_positions(&self, transform: String) -> BoxFuture<'static, Result<(), LinkError>> {
        let broker = self.broker.clone();
        let clients = self.clients.clone();
        let node_id = self.node_id;
        Box::pin(async move {
            let broker = broker.upgrade().ok_or(LinkError::Closed)?;
            let coordinator = broker.position_coordinator(&transform).await?;
            if coordinator == node_id {
                return broker
                    .delete_positions_here(&transform)
                    .await
                    .map_err(|refusal| Self::refused(node_id, refusal));
            }
            let request = PluginPeerRequest::DeletePositions { transform };
            let (reply, _) = Self::ask(&clients, coordinator, &request, &[]).await?;
            expect_done(coordinator, reply)
        })
    }

    fn admin(&self, request: AdminRequest) -> BoxFuture<'static, Result<(), AdminError>> {
        let broker = self.broker.clone();
        Box::pin(async move {
            let broker = broker
                .upgrade()
                .ok_or_else(|| AdminError::Failed("the node is shutting down".to_owned()))?;
            broker.plugin_admin(request).await
        })
    }
}

impl<D: Disk> Broker<D> {
    /// The node coordinating transform `transform`'s positions (the leader of its
    /// `__consumer_offsets` partition); the topic is created through the controller first
    /// if the image has none yet (as a consumer group's FindCoordinator does).
    async fn position_coordinator(&self, transform: &str) -> Result<NodeId, LinkError> {
        let Some(source) = self.cluster_source.get() else {
            return Ok(self.config.node_id);
        };
        let group = position_group(transform);
        match self.lookup_coordinator(source, &group).await {
            Ok((node, _)) => Ok(node),
            Err(error) => {
                let (partition, _) = coordinator_in(&source.image.borrow(), transform);
                tracing::debug!(%error, "no coordinator for transform positions");
                Err(LinkError::NoLeader {
                    topic: OFFSETS_TOPIC.to_owned(),
                    partition,
                })
            }
        }
    }

    /// In a `[cluster]`, after the cluster source is set: registers the `Plugins` peer
    /// handler, links the transform runner to the cluster and starts it (unless
    /// `run_transforms` is false), and spawns the mirror of modules and transforms.
    pub async fn start_plugin_cluster(
        self: &Arc<Self>,
        parts: PluginClusterParts<'_>,
    ) -> Result<(), AlreadyRegistered> {
        let Some(source) = self.cluster_source.get() else {
            return Ok(());
        };
        let weak = Arc::downgrade(self);
        parts
            .handlers
            .register(PeerRequestKind::Plugins, move |request: PeerRequest| {
                let broker = weak.clone();
                async move {
                    let broker = broker
                        .upgrade()
                        .ok_or_else(|| PeerHandlerError("the node is shutting down".into()))?;
                    broker.handle_plugin_peer(request).await
                }
            })?;
        let link = BrokerLink {
            broker: Arc::downgrade(self),
            node_id: self.config.node_id,
            image: source.image.clone(),
            clients: parts.clients.clone(),
        };
        let link: Arc<dyn TransformLink> = Arc::new(link);
        self.transforms.set_link(Arc::clone(&link));
        self.plugins.set_leader_router(link);
        // The registry's copy first, so the runner starts what the image holds.
        let image = source.image.borrow().clone();
        self.mirror_plugins(&image, &parts.clients, false).await;
        if parts.run_transforms {
            self.transforms.start().await;
        }
        tokio::spawn(Arc::clone(self).run_plugin_mirror(parts.clients));
        Ok(())
    }

    /// Answers a `Plugins` peer request.
    async fn handle_plugin_peer(&self, request: PeerRequest) -> Result<Bytes, PeerHandlerError> {
        let (asked, payload) =
            decode_body::<PluginPeerRequest>(&request.body).map_err(|error| {
                PeerHandlerError(format!(
                    "invalid Plugins body from node {}: {error}",
                    request.from
                ))
            })?;
        let refused = |(code, message): (ErrorCode, String)| PluginPeerReply::Refused {
            code: code as u16,
            message,
        };
        let (reply, payload) = match asked {
            PluginPeerRequest::FetchModule { hash } => {
                match self.plugins.stored_module_bytes(&hash).await {
                    Ok(Some(bytes)) => (PluginPeerReply::Module, bytes),
                    Ok(None) => (PluginPeerReply::NoModule, Bytes::new()),
                    Err(error) => {
                        tracing::warn!(%hash, %error, "cannot read a module a peer asked for");
                        (PluginPeerReply::NoModule, Bytes::new())
                    }
                }
            }
            PluginPeerRequest::AppendOutput { topic, partition } => (
                self.append_here(&topic, partition, payload)
                    .await
                    .map_or_else(refused, |base_offset| PluginPeerReply::Appended {
                        base_offset,
                    }),
                Bytes::new(),
            ),
            PluginPeerRequest::CommitPosition {
                transform,
                topic,
                partition,
                offset,
            } => (
                self.commit_position_here(&transform, &topic, partition, offset)
                    .await
                    .map_or_else(refused, |()| PluginPeerReply::Done),
                Bytes::new(),
            ),
            PluginPeerRequest::DeletePositions { transform } => (
                self.delete_positions_here(&transform)
                    .await
                    .map_or_else(refused, |()| PluginPeerReply::Done),
                Bytes::new(),
            ),
            PluginPeerRequest::Positions { transform, topic } => (
                self.positions_here(&transform, &topic)
                    .await
                    .map_or_else(refused, |positions| PluginPeerReply::Positions {
                        positions,
                    }),
                Bytes::new(),
            ),
        };
        Ok(encode_body(&reply, &payload))
    }

    /// Appends one batch to `topic`/`partition` through this node's produce path with
    /// acks=all: refused unless this node leads it, answered once the ISR holds it.
    pub(super) async fn append_here(
        &self,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> Result<i64, (ErrorCode, String)> {
        let request = ProduceRequest {
            acks: Acks::All,
            timeout_ms: PLUGIN_PEER_ACKS_WAIT_MS,
            topics: vec![ProduceTopic {
                name: topic.to_string(),
                partitions: vec![ProducePartition {
                    partition,
                    current_leader_epoch: None,
                    records: batch,
                }],
            }],
        };
        let response = self
            .data
            .produce(request, super::sequencing::SequencingHold::unobserved())
            .await;
        let answer = response
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .next();
        match answer {
            Some(answer) if answer.error == ErrorCode::None => Ok(answer.base_offset),
            Some(answer) => Err((answer.error, answer.message)),
            None => Err((
                ErrorCode::UnknownServerError,
                "the produce path answered nothing".to_owned(),
            )),
        }
    }

    /// Commits a transform's position here, as its coordinator: synced, and answered once
    /// the in-sync replicas of its offsets partition hold it.
    async fn commit_position_here(
        &self,
        transform: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), (ErrorCode, String)> {
        let group = position_group(transform);
        self.check_coordinator(&group)
            .await
            .map_err(|error| (ErrorCode::from(&error), error.to_string()))?;
        let now_ms = self.clock.wall_time_ms();
        let key = OffsetKey {
            group: group.clone(),
            topic: topic.to_string(),
            partition,
        };
        let record = Record {
            timestamp: now_ms,
            key: Some(key.encode()),
            value: Some(encode_value(offset, "", now_ms)),
            headers: Vec::new(),
        };
        self.groups
            .append_offsets(
                &self.group_host(),
                &group,
                &[record],
                AppendDurability::Synced,
            )
            .await
            .map_err(|error| (ErrorCode::from(&error), error.to_string()))
    }

    /// Forgets a removed transform's positions, as its coordinator (tombstones in its
    /// offsets partition), so a transform deployed again under the name starts afresh.
    async fn delete_positions_here(&self, transform: &str) -> Result<(), (ErrorCode, String)> {
        let group = position_group(transform);
        self.check_coordinator(&group)
            .await
            .map_err(|error| (ErrorCode::from(&error), error.to_string()))?;
        match self.groups.delete_group(&self.group_host(), &group).await {
            Ok(()) | Err(crate::groups::service::GroupServiceError::NotFound(_)) => Ok(()),
            Err(error) => Err((ErrorCode::from(&error), error.to_string())),
        }
    }

    /// A transform's committed positions, as its coordinator.
    async fn positions_here(
        &self,
        transform: &str,
        topic: &str,
    ) -> Result<BTreeMap<u32, i64>, (ErrorCode, String)> {
        let group = position_group(transform);
        self.check_coordinator(&group)
            .await
            .map_err(|error| (ErrorCode::from(&error), error.to_string()))?;
        Ok(self.groups.committed_offsets(&group, topic))
    }

    /// Module and transform admin through the controller: returns once this node's
    /// registry mirrors the change.
    pub(super) async fn plugin_admin(&self, request: AdminRequest) -> Result<(), AdminError> {
        let Some(source) = self.cluster_source.get() else {
            return Err(AdminError::Failed(
                "this node is not in a cluster".to_owned(),
            ));
        };
        let Some(admin) = &source.admin else {
            return Err(AdminError::Failed(
                "this node has no controller client".to_owned(),
            ));
        };
        admin.submit(request).await?;
        let image = source.image.borrow().clone();
        // Topics (an output topic a deploy created) first, then modules and transforms.
        self.materialize(&image).await;
        // The bytes of what this node just sent are here; nothing to fetch.
        self.mirror_plugins(&image, &BTreeMap::new(), true).await;
        Ok(())
    }

    /// Uploads a module in a cluster: checked and stored here, recorded by the controller.
    pub(super) async fn upload_module_in_cluster(
        &self,
        request: UploadModuleRequest,
    ) -> Result<String, (ErrorCode, String)> {
        let name = request.name.clone();
        let (module, _hold) = self
            .plugins
            .prepare_module(request)
            .await
            .map_err(|error| super::dispatch::module_wire(&error))?;
        let hash = module.hash.clone();
        self.plugin_admin(AdminRequest::PutModule { name, module })
            .await
            .map_err(|error| super::dispatch::admin_wire(&error))?;
        Ok(hash)
    }

    /// Makes this node's modules and transforms match `image`: fetches the bytes of every
    /// module it names that are not here (from the nodes in `clients`), mirrors the names
    /// and definitions into the registry, forgets the positions of removed transforms it
    /// coordinates, and has the runner follow. Returns how many steps failed (retried).
    ///
    /// `collect_garbage`: remove module files the image no longer names. Only after an
    /// admin change this node made, whose image holds every record up to that change: an
    /// image still replaying at start lacks later records, and removing the files they name
    /// on every node at once (a coordinated restart) would lose the module everywhere.
    async fn mirror_plugins(
        &self,
        image: &MetadataImage,
        clients: &BTreeMap<NodeId, Arc<PeerClient>>,
        collect_garbage: bool,
    ) -> usize {
        if image.last_applied_index == 0 {
            // Nothing replayed yet: keep the copy from the last run until the image says.
            return 0;
        }
        let mut failed = 0;
        // Names first (a topic config naming a module is checked against them here), then
        // the bytes they need.
        match self
            .registry
            .mirror_plugins(&image.modules, &image.transforms)
            .await
        {
            Ok(changed) => {
                if changed && collect_garbage {
                    self.plugins.collect_module_garbage().await;
                }
            }
            Err(error) => {
                failed += 1;
                tracing::error!(%error, "cannot record the cluster's modules and transforms here; retried");
            }
        }
        let wanted: BTreeMap<&str, crate::wasm::PluginKind> = image
            .modules
            .values()
            .chain(image.transforms.values().map(|transform| &transform.module))
            .map(|module| (module.hash.as_str(), module.kind))
            .collect();
        for (hash, kind) in wanted {
            match self.plugins.stored_module_bytes(hash).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%hash, %error, "cannot read a stored module");
                }
            }
            if !self.fetch_module(image, clients, hash, kind).await {
                failed += 1;
            }
        }
        failed += self.transforms.follow_definitions().await;
        failed
    }

    /// Fetches module `hash` from the first node that has it; `false` if none could.
    async fn fetch_module(
        &self,
        image: &MetadataImage,
        clients: &BTreeMap<NodeId, Arc<PeerClient>>,
        hash: &str,
        kind: crate::wasm::PluginKind,
    ) -> bool {
        let request = PluginPeerRequest::FetchModule {
            hash: hash.to_string(),
        };
        // Live nodes first; the others may still answer.
        let mut nodes: Vec<NodeId> = clients.keys().copied().collect();
        nodes.sort_by_key(|node| image.nodes.get(node).is_none_or(|node| node.fenced));
        for node in nodes {
            match BrokerLink::<D>::ask(clients, node, &request, &[]).await {
                Ok((PluginPeerReply::Module, bytes)) => {
                    match self.plugins.store_fetched_module(hash, bytes, kind).await {
                        Ok(()) => {
                            tracing::info!(%hash, node, "module fetched from a peer");
                            return true;
                        }
                        Err(error) => {
                            tracing::warn!(%hash, node, %error, "module bytes from a peer refused");
                        }
                    }
                }
                Ok((PluginPeerReply::NoModule, _)) => {}
                Ok((other, _)) => {
                    tracing::warn!(%hash, node, ?other, "unexpected answer to a module fetch");
                }
                Err(error) => tracing::debug!(%hash, %error, "module fetch failed"),
            }
        }
        if !clients.is_empty() {
            tracing::warn!(%hash, "no node could give this module's bytes yet; retried");
        }
        false
    }

    /// The mirror's driver: follows the image (and retries what failed every
    /// [`PLUGIN_MIRROR_RETRY_MS`]), and tells the transform runner of every image change
    /// (leaders move, so tasks move).
    async fn run_plugin_mirror(self: Arc<Self>, clients: BTreeMap<NodeId, Arc<PeerClient>>) {
        let Some(source) = self.cluster_source.get() else {
            return;
        };
        let mut image = source.image.clone();
        loop {
            let current = image.borrow_and_update().clone();
            let failed = self.mirror_plugins(&current, &clients, false).await;
            self.transforms.refresh();
            if failed == 0 {
                if image.changed().await.is_err() {
                    return;
                }
            } else {
                let retry = Duration::from_millis(PLUGIN_MIRROR_RETRY_MS);
                match crate::clock::timeout(&*self.clock, retry, image.changed()).await {
                    Ok(Ok(())) | Err(crate::clock::Elapsed) => {}
                    Ok(Err(_)) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod leader_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let request = PluginPeerRequest::AppendOutput {
            topic: "out".into(),
            partition: 3,
        };
        let body = encode_body(&request, b"batch bytes");
        let (decoded, payload) = decode_body::<PluginPeerRequest>(&body).unwrap();
        assert_eq!(decoded, request);
        assert_eq!(&payload[..], b"batch bytes");
        let reply = PluginPeerReply::Positions {
            positions: BTreeMap::from([(0, 7), (2, 9)]),
        };
        let (decoded, payload) = decode_body::<PluginPeerReply>(&encode_body(&reply, &[])).unwrap();
        assert_eq!(decoded, reply);
        assert!(payload.is_empty());

        for bad in [&b""[..], b"\x00\x00", b"\x00\x00\x00\x09{}"] {
            assert!(matches!(
                decode_body::<PluginPeerRequest>(&Bytes::copy_from_slice(bad)),
                Err(PluginBodyError::Truncated { .. })
            ));
        }
        assert!(matches!(
            decode_body::<PluginPeerRequest>(&Bytes::from_static(b"\xff\xff\xff\xff")),
            Err(PluginBodyError::HeaderTooLarge { .. })
        ));
        assert!(matches!(
            decode_body::<PluginPeerRequest>(&Bytes::from_static(b"\x00\x00\x00\x02{}")),
            Err(PluginBodyError::Json(_))
        ));
    }

    #[test]
    fn a_transform_positions_coordinator_is_its_offsets_partition_leader() {
        let mut image = MetadataImage::default();
        assert_eq!(coordinator_in(&image, "t").1, None);
        let state = |leader| crate::controller::records::PartitionState {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            elr: Vec::new(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        image.topics.insert(
            OFFSETS_TOPIC.to_owned(),
            crate::controller::image::TopicImage {
                topic_id: crate::controller::records::TopicId::derive(1, OFFSETS_TOPIC),
                configs: BTreeMap::new(),
                partitions: (0..8).map(|index| state(Some(index % 2 + 1))).collect(),
            },
        );
        let (partition, leader) = coordinator_in(&image, "t");
        assert_eq!(partition, offsets_partition_of("__transform.t", 8));
        assert_eq!(leader, Some(partition % 2 + 1));
        assert_eq!(leader_in(&image, OFFSETS_TOPIC, 8), None);
        assert_eq!(leader_in(&image, "nope", 0), None);
    }
}
