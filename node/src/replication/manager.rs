//! The replication driver of one node (issue 13 item 2): from the controller's metadata
//! image and this node's node epoch, it makes the node leader or follower of each partition
//! it hosts, and drives the pure state machines of this module with real logs, the node's
//! clock and a [`ReplicaTransport`].
//!
//! - Leader at epoch E (the image names this node, and holds this node's registration at
//!   its current node epoch, so it is not an image from before the node's start): the
//!   log's leader epoch is set to E
//!   (durably, `PartitionLog::set_leader_epoch`) *before* anything is acknowledged, then a
//!   [`PartitionLeader`] seeded with the image's ISR and partition epoch and the log's
//!   synced end answers replica fetches ([`ReplicaManager::handle_replica_fetch`], a long
//!   poll woken by appends and high watermark moves), holds acks=all produces until the
//!   high watermark passes them ([`ReplicaManager::wait_acks_all`]), holds DeleteRecords
//!   until every live follower moved its log start past the deleted offset
//!   ([`ReplicaManager::wait_low_watermark`]) and proposes ISR changes to the controller
//!   (with a back-off after a refusal).
//! - Follower: a [`PartitionFollower`] fetched for by one fetcher task per leader node, many
//!   partitions per request; its answers are carried out on the log (`append_as_follower`,
//!   which syncs before the new end is reported; `truncate_to`, whose reopened log replaces
//!   the old handle in the [`LogStore`]).
//! - Deposed (the image moved the leadership or bumped the epoch): the leader state fails
//!   every pending acks=all with `NotLeaderOrFollower` at once, and the node follows the
//!   new leader (which truncates it per KIP-279 through the diverging-epoch answer).
//!
//! Partitions the image does not place here, or whose log the store does not hold, are not
//! managed: their produce and fetch paths stay as on a single node.
//!
//! Locking: one `std::sync::Mutex` over every partition's state, never held across an
//! `await`; log IO happens outside it, with the state re-checked after.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ledge_protocol::wire::replica::{
    ReplicaFetchError, ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetchResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use super::checkpoint::{self, HighWatermarks};
use super::fetch::{self, FetchPlan, LeaderLogView};
use super::follower::{self, FollowerAction, FollowerConfig, FollowerLogView, PartitionFollower};
use super::leader::{AcksAllError, IsrProposal, LeaderConfig, LowWatermarkError, PartitionLeader};
use super::repair::{self as damage_repair, RepairDecision};
use super::{LeaderEpoch, NodeEpoch, NodeId, PartitionEpoch, PartitionState};
use crate::clock::{self, Clock};
use crate::controller::decisions::{AlterPartitionRequest, ReplicaDamagedRequest};
use crate::controller::{MetadataImage, TopicId};
use crate::storage::{Disk, PartitionLog};

/// Default most bytes of records in one replica fetch answer
/// (`cluster.replica_fetch_response_bytes_max`): half the default peer frame limit
/// (16 MiB), so an answer always fits in a frame with its headers.
pub const REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT: u32 = 8 << 20;

/// Default most bytes of records per partition in one replica fetch
/// (`cluster.replica_fetch_partition_bytes_max`).
pub const REPLICA_FETCH_PARTITION_BYTES_MAX_DEFAULT: u32 = 1 << 20;

/// The first wait after a failed fetch or a refused ISR change; doubles up to
/// [`REPLICA_BACKOFF_MAX`].
pub const REPLICA_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between failed fetches or refused ISR changes.
pub const REPLICA_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Topic config key of the in-sync replica minimum (Kafka's name).
const MIN_INSYNC_REPLICAS_KEY: &str = "min.insync.replicas";

/// The driver's settings (from `[cluster]`).
#[derive(Clone, Debug)]
pub struct ReplicationSettings {
    /// This node.
    pub node_id: NodeId,
    /// `cluster.min_insync_replicas`: the default of a topic's `min.insync.replicas`.
    pub min_insync_replicas_default: usize,
    /// `cluster.replica_lag_time_max_ms`.
    pub replica_lag_time_max: Duration,
    /// `cluster.replica_fetch_wait_max_ms`: how long a leader holds a fetch that finds
    /// nothing new, and how long a follower asks it to.
    pub replica_fetch_wait_max: Duration,
    /// Most bytes of records in one replica fetch answer.
    pub replica_fetch_response_bytes_max: u32,
    /// Most bytes of records per partition in one replica fetch.
    pub replica_fetch_partition_bytes_max: u32,
    /// `cluster.high_watermark_checkpoint_interval_ms`: how often the high-watermark
    /// checkpoint is written, at most (`replication::checkpoint`).
    pub high_watermark_checkpoint_interval: Duration,
    /// `cluster.damaged_retention_ms`: how long a healthy replica's `.damaged` files (the
    /// bytes a repair cut) are kept before they are deleted.
    pub damaged_retention: Duration,
}

impl ReplicationSettings {
    /// The settings of a `[cluster]` section.
    pub fn from_cluster(cluster: &crate::cluster::config::ClusterConfig) -> Self {
        Self {
            node_id: cluster.node_id,
            min_insync_replicas_default: cluster.min_insync_replicas as usize,
            replica_lag_time_max: cluster.replica_lag_time_max,
            replica_fetch_wait_max: cluster.replica_fetch_wait_max,
            replica_fetch_response_bytes_max: cluster.replica_fetch_response_bytes_max,
            replica_fetch_partition_bytes_max: cluster.replica_fetch_partition_bytes_max,
            high_watermark_checkpoint_interval: cluster.high_watermark_checkpoint_interval,
            damaged_retention: cluster.damaged_retention,
        }
    }

    fn follower_config(&self) -> FollowerConfig {
        FollowerConfig {
            fetch_wait_max: self.replica_fetch_wait_max,
            fetch_bytes_max: self.replica_fetch_response_bytes_max,
            partition_fetch_bytes_max: self.replica_fetch_partition_bytes_max,
            backoff_initial: REPLICA_BACKOFF_INITIAL,
            backoff_max: REPLICA_BACKOFF_MAX,
        }
    }
}

/// Where the driver finds the partition logs this node hosts (the broker's registry), and
/// where a truncated log's reopened handle goes.
pub trait LogStore<D: Disk>: Send + Sync + 'static {
    /// The online log of `topic`/`partition`, if this node holds it.
    fn partition_log(&self, topic: &str, partition: u32) -> Option<PartitionLog<D>>;
    /// Replaces the log of `topic`/`partition` by `log` (the handle `truncate_to` returned).
    fn replace_log(&self, topic: &str, partition: u32, log: PartitionLog<D>);
    /// Why `topic`/`partition` is offline with a damaged log a repair can cut, if it is
    /// (`broker::registry`'s `Damaged` state).
    fn damaged(&self, topic: &str, partition: u32) -> Option<String>;
    /// Takes the online log of `topic`/`partition` offline as damaged from `offset` on (a
    /// batch failed its checks while being served); whether it was online.
    fn mark_damaged<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        offset: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, bool>;
    /// Cuts a damaged log at its last good batch and brings it back online
    /// (`storage::repair::truncate_at_damage`); why not, if it stays offline.
    fn repair<'a>(&'a self, topic: &'a str, partition: u32) -> BoxFuture<'a, Result<(), String>>;
}

/// The controller's answer to an ISR change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterPartitionReply {
    /// Applied (or nothing to change): the partition epoch after it.
    Applied {
        /// The partition's epoch in the controller's image after the change.
        partition_epoch: PartitionEpoch,
    },
    /// Ask `leader` instead (unknown during an election).
    NotController {
        /// The active controller, if known.
        leader: Option<NodeId>,
    },
    /// Refused (stale partition epoch, a member's node epoch not current, ...).
    Refused {
        /// The Kafka error name.
        code: String,
        /// Why.
        message: String,
    },
}

/// How the driver reaches other nodes: replica fetches to a leader, ISR changes to the
/// active controller. The node's is over the peer RPC; tests pass one in memory.
pub trait ReplicaTransport: Send + Sync + 'static {
    /// Sends `request` to `leader` and returns its answer, or why there is none.
    fn fetch(
        &self,
        leader: NodeId,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, String>>;
    /// Sends an ISR change to the active controller.
    fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>>;
    /// Tells the active controller this node's replica of a partition is damaged (it leaves
    /// the ISR and ELR; see `replication::repair`).
    fn report_damaged(
        &self,
        request: ReplicaDamagedRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>>;
}

/// What this node is for a partition, as produce and fetch need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionRole {
    /// Not managed by replication (no image entry placing it here): single-node rules.
    Unreplicated,
    /// This node leads it at `leader_epoch`.
    Leader {
        /// The leader epoch.
        leader_epoch: LeaderEpoch,
        /// Which of this node's leaderships of the partition (a number the driver gives
        /// each leader state it installs): an acks=all wait is bound to the leadership its
        /// append was accepted in ([`ReplicaManager::wait_acks_all`]), so it never completes
        /// in a later one, whose log may hold other records at those offsets.
        leadership: u64,
    },
}

/// Why a produce or consumer fetch is refused by replication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaRoleError {
    /// This node does not lead the partition (it follows, or is becoming leader).
    #[error("this node does not lead the partition: refresh metadata and retry at the leader")]
    NotLeaderOrFollower,
    /// acks=all refused before the append: too few in-sync replicas.
    #[error("not enough in-sync replicas: {isr} in sync, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        /// ISR size.
        isr: usize,
        /// The minimum.
        min: usize,
    },
}

type PartitionKey = (String, u32);

/// A request waiting on a leader state's output, by the token it gave the leader state.
enum Waiting {
    /// An acks=all produce ([`ReplicaManager::wait_acks_all`]).
    AcksAll(oneshot::Sender<Result<(), AcksAllError>>),
    /// A DeleteRecords ([`ReplicaManager::wait_low_watermark`]).
    LowWatermark(oneshot::Sender<Result<i64, LowWatermarkError>>),
}

enum Role {
    /// Setting the log's leader epoch; nothing is acknowledged or served yet.
    BecomingLeader {
        leader_epoch: LeaderEpoch,
    },
    /// Leading, in the leadership numbered by the second field.
    Leader(Box<PartitionLeader<u64>>, u64),
    Follower(PartitionFollower),
}

struct Hosted {
    topic_id: TopicId,
    state: PartitionState,
    role: Role,
    /// The replicated high watermark, for consumer fetch waits.
    high_watermark: watch::Sender<i64>,
    /// No ISR proposal before this instant (after a refusal).
    proposal_not_before: Option<Instant>,
    proposal_backoff: Duration,
    /// Orders the log's writers by role (Kafka's `leaderIsrUpdateLock`): a produce appends
    /// holding it shared, after checking under it that its leadership still holds
    /// ([`ReplicaManager::leader_append`]); a follower appends and truncates holding it
    /// exclusively. A produce accepted just before the node stopped leading can then only
    /// land before the follower's first write, at the end of its own epoch, where the
    /// diverging-epoch answer finds and cuts it; never after the new leader's batches,
    /// where it would sit at an offset the leader holds another record at, unseen.
    append_gate: Arc<tokio::sync::RwLock<()>>,
}

struct ManagerState {
    image: Arc<MetadataImage>,
    /// The last leadership number given ([`PartitionRole::Leader::leadership`]).
    leadership_last: u64,
    node_epoch: Option<NodeEpoch>,
    partitions: BTreeMap<PartitionKey, Hosted>,
    waiters: HashMap<u64, Waiting>,
    next_token: u64,
    /// Leader nodes with a running fetcher task.
    fetchers: BTreeMap<NodeId, tokio::task::JoinHandle<()>>,
    /// Damaged replicas with a report to the controller or a repair in flight.
    repairing: BTreeSet<PartitionKey>,
    /// Why each damaged replica waits, as last logged (logged again when it changes).
    repair_waits: BTreeMap<PartitionKey, String>,
    /// Verifier damage a leader here has handled, by partition and first damaged offset, so
    /// the leader's timers handle each once (the only in-sync leader keeps its damage).
    leader_damage_seen: BTreeSet<(PartitionKey, i64)>,
    /// High watermarks read from the checkpoint at start, for partitions not hosted yet:
    /// each seeds its partition's state once, when the partition is first hosted.
    checkpoint_seeds: HighWatermarks,
    /// Where the checkpoint is written (`None`: not written, as on a read-only data
    /// directory or before [`ReplicaManager::load_high_watermark_checkpoint`]).
    checkpoint_directory: Option<std::path::PathBuf>,
    /// Each `.damaged` file in a hosted partition's directory, with when this process first
    /// saw it (the retention of [`ReplicationSettings::damaged_retention`] counts from then).
    damaged_files_seen: BTreeMap<std::path::PathBuf, Instant>,
}

/// The replication driver of one node. See the module documentation.
pub struct ReplicaManager<D: Disk> {
    settings: ReplicationSettings,
    clock: Arc<dyn Clock>,
    disk: D,
    logs: Arc<dyn LogStore<D>>,
    transport: Arc<dyn ReplicaTransport>,
    state: Mutex<ManagerState>,
    /// Bumped on every change a waiting fetch or fetcher may care about (a high watermark
    /// moved, a role changed, a follower became ready).
    changed: watch::Sender<u64>,
    /// Wakes the driver to run the leaders' timers and ISR proposals (a follower's fetch
    /// may make it eligible to rejoin the ISR).
    tick_needed: tokio::sync::Notify,
    /// Wakes the driver to apply the image again: the set of logs in the store changed
    /// (a partition placed here was just created, after the image that placed it).
    reapply: tokio::sync::Notify,
}

impl<D: Disk> ReplicaManager<D> {
    /// A driver for the node of `settings`; call [`Self::run`] to follow the image.
    pub fn new(
        settings: ReplicationSettings,
        clock: Arc<dyn Clock>,
        disk: D,
        logs: Arc<dyn LogStore<D>>,
        transport: Arc<dyn ReplicaTransport>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            clock,
            disk,
            logs,
            transport,
            state: Mutex::new(ManagerState {
                image: Arc::new(MetadataImage::default()),
                leadership_last: 0,
                node_epoch: None,
                partitions: BTreeMap::new(),
                waiters: HashMap::new(),
                next_token: 0,
                fetchers: BTreeMap::new(),
                repairing: BTreeSet::new(),
                repair_waits: BTreeMap::new(),
                leader_damage_seen: BTreeSet::new(),
                checkpoint_seeds: HighWatermarks::new(),
                checkpoint_directory: None,
                damaged_files_seen: BTreeMap::new(),
            }),
            changed: watch::channel(0).0,
            tick_needed: tokio::sync::Notify::new(),
            reapply: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ManagerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Follows `image` and `node_epoch` until both senders are gone: applies each change,
    /// runs the leaders' timers (acks=all deadlines, ISR lag) and sends ISR proposals.
    pub async fn run(
        self: Arc<Self>,
        mut image: watch::Receiver<Arc<MetadataImage>>,
        mut node_epoch: watch::Receiver<Option<NodeEpoch>>,
    ) {
        let checkpoint_directory = self.lock().checkpoint_directory.clone();
        if let Some(directory) = checkpoint_directory {
            tokio::spawn(run_housekeeping(
                Arc::downgrade(&self),
                Arc::clone(&self.clock),
                self.disk.clone(),
                directory,
                self.settings.high_watermark_checkpoint_interval,
            ));
        }
        let mut changed = self.changed.subscribe();
        let mut apply = true;
        loop {
            if apply {
                let current = image.borrow_and_update().clone();
                let epoch = *node_epoch.borrow_and_update();
                self.apply(current, epoch).await;
                apply = false;
            }
            changed.borrow_and_update();
            let wake = self.tick();
            let sleep = async {
                match wake {
                    Some(deadline) => self.clock.sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            // A changed image or node epoch is applied; anything else (a high watermark
            // moved, a proposal answered, a deadline) runs the leaders' timers again.
            tokio::select! {
                result = image.changed() => {
                    if result.is_err() {
                        break;
                    }
                    apply = true;
                }
                result = node_epoch.changed() => {
                    if result.is_err() {
                        break;
                    }
                    apply = true;
                }
                _ = changed.changed() => {}
                () = self.tick_needed.notified() => {}
                () = self.reapply.notified() => apply = true,
                () = sleep => {}
            }
        }
        self.shutdown();
    }

    /// Reads the high-watermark checkpoint in `data_dir` (`replication::checkpoint`), so
    /// each partition starts from the high watermark it had before a restart, not 0; and,
    /// if `writable`, has [`Self::run`] keep it up to date. Call before `run`. A missing
    /// file is a new node's; a damaged one is a warning and every partition starts from 0,
    /// as without one.
    pub async fn load_high_watermark_checkpoint(&self, data_dir: &std::path::Path, writable: bool) {
        let seeds = match checkpoint::load(&self.disk, data_dir).await {
            Ok(Some(seeds)) => {
                tracing::info!(partitions = seeds.len(), "high-watermark checkpoint read");
                seeds
            }
            Ok(None) => HighWatermarks::new(),
            Err(error) => {
                tracing::warn!(%error, "high-watermark checkpoint not used: every partition starts from high watermark 0, as without one (consumers wait until the in-sync replicas have fetched); it is written again within cluster.high_watermark_checkpoint_interval_ms");
                HighWatermarks::new()
            }
        };
        let mut state = self.lock();
        state.checkpoint_seeds = seeds;
        if writable {
            state.checkpoint_directory = Some(data_dir.to_path_buf());
        }
    }

    /// A topic's `min.insync.replicas` as the controller applies it: the topic's own, else
    /// the cluster default capped at the replication factor (`replicas`).
    pub fn min_insync_replicas(&self, image: &MetadataImage, topic: &str, replicas: usize) -> usize {
        topic_min_insync(image, topic)
            .unwrap_or_else(|| self.settings.min_insync_replicas_default.min(replicas))
    }

    /// The high watermark of every partition hosted here (leader or follower), by topic id,
    /// as the checkpoint stores them; with the values read at start for partitions the
    /// image still places here but whose logs are not hosted yet (they would otherwise be
    /// lost from the file by a write before they are).
    pub fn high_watermarks(&self) -> HighWatermarks {
        let state = self.lock();
        let local = self.settings.node_id;
        let mut high_watermarks = HighWatermarks::new();
        for (key, hosted) in &state.partitions {
            let high_watermark = *hosted.high_watermark.borrow();
            if high_watermark > 0 {
                high_watermarks.insert((hosted.topic_id, key.1), high_watermark);
            }
        }
        for (&(topic_id, partition), &high_watermark) in &state.checkpoint_seeds {
            let placed = state.image.topics.is_empty()
                || state.image.topics.values().any(|topic| {
                    topic.topic_id == topic_id
                        && usize::try_from(partition)
                            .ok()
                            .and_then(|index| topic.partitions.get(index))
                            .is_some_and(|placement| placement.replicas.contains(&local))
                });
            if placed {
                high_watermarks
                    .entry((topic_id, partition))
                    .or_insert(high_watermark);
            }
        }
        high_watermarks
    }

    /// Deletes the `.damaged` files (the bytes a repair cut, `storage::repair`) of each
    /// hosted partition whose replica is healthy again, once they are older than
    /// `damaged_retention`: healthy is in the ISR (it caught up with the leader after its
    /// repair, or leads) with no damage the verifier reported since. Age counts from when
    /// this process first saw the file (the repair, or the start for files an earlier run
    /// left), so a restart only ever keeps them longer. Each deletion is logged.
    pub async fn remove_expired_damaged_files(&self) {
        let now = self.clock.now();
        let local = self.settings.node_id;
        let hosted: Vec<(PartitionKey, bool)> = self
            .lock()
            .partitions
            .iter()
            .map(|(key, hosted)| (key.clone(), hosted.state.isr.contains(&local)))
            .collect();
        let mut present = BTreeSet::new();
        for (key, in_isr) in hosted {
            let Some(log) = self.logs.partition_log(&key.0, key.1) else {
                continue;
            };
            let directory = log.directory().to_path_buf();
            let Ok(names) = self.disk.list_dir(&directory).await else {
                continue;
            };
            let healthy = in_isr && log.damage().is_none();
            let mut removed = false;
            for name in names
                .iter()
                .filter(|name| name.ends_with(crate::storage::segment::DAMAGED_FILE_SUFFIX))
            {
                let path = directory.join(name);
                let first_seen = *self
                    .lock()
                    .damaged_files_seen
                    .entry(path.clone())
                    .or_insert(now);
                present.insert(path.clone());
                if !healthy
                    || now.saturating_duration_since(first_seen) < self.settings.damaged_retention
                {
                    continue;
                }
                match self.disk.remove_file(&path).await {
                    Ok(()) => {
                        tracing::info!(topic = %key.0, partition = key.1, file = %path.display(), retention_ms = self.settings.damaged_retention.as_millis(), "deleted the bytes a repair cut: the replica is healthy again and cluster.damaged_retention_ms has passed");
                        present.remove(&path);
                        removed = true;
                    }
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "could not delete a .damaged file; tried again later");
                    }
                }
            }
            if removed && let Err(error) = self.disk.sync_dir(&directory).await {
                tracing::warn!(directory = %directory.display(), %error, "syncing a partition directory after deleting .damaged files failed");
            }
        }
        // Files gone (deleted here, with their partition, or by hand) are forgotten.
        self.lock()
            .damaged_files_seen
            .retain(|path, _| present.contains(path));
    }

    /// The logs the store holds changed (partitions created or removed here): the image is
    /// applied again, so a partition whose log appeared after its placement is replicated.
    pub fn handle_hosted_changed(&self) {
        self.reapply.notify_one();
    }

    /// Stops the fetchers and fails every pending acks=all and DeleteRecords wait (the node
    /// is stopping).
    pub fn shutdown(&self) {
        let mut state = self.lock();
        for (_, task) in std::mem::take(&mut state.fetchers) {
            task.abort();
        }
        for (_, waiter) in state.waiters.drain() {
            match waiter {
                Waiting::AcksAll(waiter) => {
                    let _ = waiter.send(Err(AcksAllError::NotLeaderOrFollower));
                }
                Waiting::LowWatermark(waiter) => {
                    let _ = waiter.send(Err(LowWatermarkError::NotLeaderOrFollower));
                }
            }
        }
    }

    /// Applies an image and node epoch: every partition placed on this node whose log is
    /// here gets its role. New leaders set their log's leader epoch before they lead.
    pub async fn apply(self: &Arc<Self>, image: Arc<MetadataImage>, node_epoch: Option<NodeEpoch>) {
        let now = self.clock.now();
        let local = self.settings.node_id;
        let mut becoming = Vec::new();
        let mut damaged = Vec::new();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let epoch_changed = state.node_epoch != node_epoch;
            state.node_epoch = node_epoch;
            state.image = Arc::clone(&image);
            let mut placed = BTreeMap::new();
            for (name, topic) in &image.topics {
                for (index, partition) in topic.partitions.iter().enumerate() {
                    let Ok(index) = u32::try_from(index) else {
                        break;
                    };
                    if partition.replicas.contains(&local) {
                        placed.insert((name.clone(), index), (topic.topic_id, partition));
                    }
                }
            }
            // Partitions no longer placed here (deleted, reassigned): stop at once.
            let gone: Vec<PartitionKey> = state
                .partitions
                .keys()
                .filter(|key| !placed.contains_key(*key))
                .cloned()
                .collect();
            for key in gone {
                if let Some(mut hosted) = state.partitions.remove(&key)
                    && let Role::Leader(leader, _) = &mut hosted.role
                {
                    leader.handle_partition_state(
                        PartitionState {
                            leader: None,
                            leader_epoch: leader.leader_epoch().saturating_add(1),
                            partition_epoch: i32::MAX,
                            ..hosted.state.clone()
                        },
                        now,
                    );
                    release(leader, &mut state.waiters);
                }
            }
            let Some(node_epoch) = node_epoch else {
                // Not registered: nothing is led or fetched until the controller gives this
                // incarnation its epoch.
                for hosted in state.partitions.values_mut() {
                    if let Role::Leader(leader, _) = &mut hosted.role {
                        leader.handle_partition_state(deposed_state(&hosted.state), now);
                        release(leader, &mut state.waiters);
                    }
                }
                state.partitions.clear();
                drop(guard);
                self.bump();
                return;
            };
            // An image that does not yet hold this incarnation's registration is older than
            // the registration, so older than this node's start: its leaders are what the
            // controller decided before the restart (a restarted leader would "lead" at its
            // old epoch and acknowledge what the real leader then truncates). The node leads
            // only from an image that holds its registration at its node epoch: that image
            // holds every change the controller made before (or at) the registration, the
            // fencing of the old incarnation included.
            let image_current = image_holds_registration(&image, local, node_epoch);
            if !image_current {
                tracing::debug!(
                    node_epoch,
                    image_index = image.last_applied_index,
                    "the image does not hold this node's registration yet: leading nothing"
                );
            }
            for (key, (topic_id, image_state)) in placed {
                let Some(log) = self.logs.partition_log(&key.0, key.1) else {
                    if self.logs.damaged(&key.0, key.1).is_some() {
                        // Its log is closed: whatever role it had ends here, and nothing
                        // pending is acknowledged.
                        if let Some(mut old) = state.partitions.remove(&key)
                            && let Role::Leader(leader, _) = &mut old.role
                        {
                            leader.handle_partition_state(deposed_state(&old.state), now);
                            release(leader, &mut state.waiters);
                        }
                        damaged.push((key.clone(), topic_id, image_state.clone()));
                    }
                    continue;
                };
                // A topic deleted and created again under the same name is another
                // partition: the old one's state goes (its waiters fail).
                let recreated = state
                    .partitions
                    .get(&key)
                    .is_some_and(|hosted| hosted.topic_id != topic_id);
                if recreated
                    && let Some(mut old) = state.partitions.remove(&key)
                    && let Role::Leader(leader, _) = &mut old.role
                {
                    leader.handle_partition_state(deposed_state(&old.state), now);
                    release(leader, &mut state.waiters);
                }
                let new_state = replication_state(image_state);
                // The controller's rule for a topic without its own: the cluster default,
                // capped at the replication factor.
                let min_insync = topic_min_insync(&image, &key.0).unwrap_or_else(|| {
                    self.settings
                        .min_insync_replicas_default
                        .min(image_state.replicas.len())
                });
                // A partition hosted for the first time since the start takes the high
                // watermark checkpointed before (capped at what its log holds now), so a
                // restarted node neither hides committed records from consumers nor answers
                // `ListOffsets` latest with 0 until the ISR has fetched again.
                let seeded = if state.partitions.contains_key(&key) {
                    0
                } else {
                    state
                        .checkpoint_seeds
                        .remove(&(topic_id, key.1))
                        .map_or(0, |checkpointed| {
                            checkpointed.min(log.high_watermark()).max(0)
                        })
                };
                let entry = state.partitions.entry(key.clone());
                let hosted = match entry {
                    std::collections::btree_map::Entry::Vacant(vacant) => {
                        let mut follower = PartitionFollower::new(
                            key.0.clone(),
                            key.1,
                            local,
                            &new_state,
                            self.settings.follower_config(),
                        );
                        follower.handle_known_high_watermark(seeded);
                        vacant.insert(Hosted {
                            topic_id,
                            state: new_state.clone(),
                            role: Role::Follower(follower),
                            high_watermark: watch::channel(seeded).0,
                            append_gate: Arc::default(),
                            proposal_not_before: None,
                            proposal_backoff: REPLICA_BACKOFF_INITIAL,
                        })
                    }
                    std::collections::btree_map::Entry::Occupied(occupied) => occupied.into_mut(),
                };
                hosted.topic_id = topic_id;
                let leads = new_state.leader == Some(local) && image_current;
                let same_epoch = hosted.state.leader_epoch == new_state.leader_epoch;
                match &mut hosted.role {
                    // A leader whose epoch and node epoch still hold takes the new ISR.
                    Role::Leader(leader, _) if leads && same_epoch && !epoch_changed => {
                        leader.handle_partition_state(new_state.clone(), now);
                        leader.handle_fenced_nodes(fenced_replicas(&image, &new_state.replicas));
                        release(leader, &mut state.waiters);
                        hosted.high_watermark.send_replace(leader.high_watermark());
                    }
                    Role::BecomingLeader { leader_epoch }
                        if leads && *leader_epoch == new_state.leader_epoch && !epoch_changed => {}
                    role => {
                        if let Role::Leader(leader, _) = role {
                            // Deposed: nothing pending is acknowledged from here on.
                            leader.handle_partition_state(deposed_state(&new_state), now);
                            release(leader, &mut state.waiters);
                        }
                        if leads {
                            *role = Role::BecomingLeader {
                                leader_epoch: new_state.leader_epoch,
                            };
                            becoming.push((key.clone(), log, new_state.clone(), min_insync));
                        } else if let Role::Follower(follower) = role
                            && !epoch_changed
                        {
                            follower.handle_partition_state(&new_state);
                        } else {
                            *role = Role::Follower(PartitionFollower::new(
                                key.0.clone(),
                                key.1,
                                local,
                                &new_state,
                                self.settings.follower_config(),
                            ));
                        }
                    }
                }
                hosted.state = new_state;
            }
            // The leader of a partition may be deposed; its own ISR membership of others
            // only: the node epoch goes to leaders below.
            let _ = node_epoch;
        }
        for (key, log, leader_state, min_insync) in becoming {
            // Kafka's rule: the new epoch starts at the log end, recorded before anything
            // is served or acknowledged in it.
            if let Err(error) = log.set_leader_epoch(leader_state.leader_epoch).await {
                tracing::error!(topic = %key.0, partition = key.1, %error, "cannot set the leader epoch; not leading");
                continue;
            }
            let now = self.clock.now();
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(node_epoch) = state.node_epoch else {
                continue;
            };
            let Some(hosted) = state.partitions.get_mut(&key) else {
                continue;
            };
            if !matches!(hosted.role, Role::BecomingLeader { leader_epoch } if leader_epoch == leader_state.leader_epoch)
            {
                continue;
            }
            let known_high_watermark = *hosted.high_watermark.borrow();
            let mut leader = PartitionLeader::new(
                local,
                node_epoch,
                hosted.state.clone(),
                LeaderConfig {
                    min_insync_replicas: min_insync,
                    replica_lag_time_max: self.settings.replica_lag_time_max,
                },
                log.high_watermark(),
                known_high_watermark,
                now,
            );
            hosted.high_watermark.send_replace(leader.high_watermark());
            leader.handle_local_log_start(log.log_start_offset());
            leader.handle_fenced_nodes(fenced_replicas(&state.image, &hosted.state.replicas));
            state.leadership_last += 1;
            hosted.role = Role::Leader(Box::new(leader), state.leadership_last);
            hosted.proposal_not_before = None;
            hosted.proposal_backoff = REPLICA_BACKOFF_INITIAL;
            tracing::info!(topic = %key.0, partition = key.1, leader_epoch = leader_state.leader_epoch, "leading");
        }
        if let Some(node_epoch) = node_epoch {
            self.handle_damaged(&image, node_epoch, damaged);
        }
        self.ensure_fetchers();
        self.bump();
    }

    /// Damaged replicas placed here (issue 13 item 4): each is repaired, reported to the
    /// controller, or left offline, by [`damage_repair::decide`]; one report or repair per
    /// partition at a time, each waking the driver to look again when it ends.
    fn handle_damaged(
        self: &Arc<Self>,
        image: &MetadataImage,
        node_epoch: NodeEpoch,
        damaged: Vec<(PartitionKey, TopicId, crate::controller::PartitionState)>,
    ) {
        let local = self.settings.node_id;
        let mut state = self.lock();
        state
            .repair_waits
            .retain(|key, _| damaged.iter().any(|(damaged, _, _)| damaged == key));
        for (key, topic_id, partition_state) in damaged {
            if state.repairing.contains(&key) {
                continue;
            }
            match damage_repair::decide(local, Some(node_epoch), image, &partition_state) {
                RepairDecision::Wait(reason) => {
                    if state.repair_waits.get(&key) != Some(&reason) {
                        tracing::error!(topic = %key.0, partition = key.1, %reason, "damaged replica stays offline");
                        state.repair_waits.insert(key, reason);
                    }
                }
                RepairDecision::Report => {
                    state.repair_waits.remove(&key);
                    state.repairing.insert(key.clone());
                    let request = ReplicaDamagedRequest {
                        node_id: local,
                        node_epoch,
                        topic_id,
                        partition: key.1,
                    };
                    let manager = Arc::clone(self);
                    tokio::spawn(async move { manager.report_damaged(key, request).await });
                }
                RepairDecision::Repair { leader } => {
                    state.repair_waits.remove(&key);
                    state.repairing.insert(key.clone());
                    let manager = Arc::clone(self);
                    tokio::spawn(async move { manager.repair_replica(key, leader).await });
                }
            }
        }
    }

    /// Asks the controller to drop this damaged replica from the ISR and ELR; the image
    /// that does so brings the repair.
    async fn report_damaged(self: Arc<Self>, key: PartitionKey, request: ReplicaDamagedRequest) {
        tracing::warn!(topic = %key.0, partition = key.1, "damaged replica asks the controller to drop it from the ISR and ELR before it cuts its log");
        let pause = match self.transport.report_damaged(request).await {
            // The image saying so may already be here, or still on its way: look again
            // shortly either way.
            Ok(AlterPartitionReply::Applied { .. }) => REPLICA_BACKOFF_INITIAL,
            Ok(refusal) => {
                tracing::info!(topic = %key.0, partition = key.1, ?refusal, "damage report refused; retried after a back-off");
                REPLICA_BACKOFF_MAX
            }
            Err(error) => {
                tracing::info!(topic = %key.0, partition = key.1, %error, "damage report not delivered; retried after a back-off");
                REPLICA_BACKOFF_MAX
            }
        };
        clock::sleep(&*self.clock, pause).await;
        self.lock().repairing.remove(&key);
        self.reapply.notify_one();
    }

    /// Cuts a damaged replica's log at its last good batch; the next look at the image
    /// makes it a follower of `leader`, which refetches the rest.
    async fn repair_replica(self: Arc<Self>, key: PartitionKey, leader: NodeId) {
        tracing::warn!(topic = %key.0, partition = key.1, leader, "repairing a damaged replica: its log is cut at the last good batch, then the rest is fetched from the leader");
        if let Err(error) = self.logs.repair(&key.0, key.1).await {
            tracing::error!(topic = %key.0, partition = key.1, %error, "damaged replica not repaired; retried after a back-off while it stays repairable");
            clock::sleep(&*self.clock, REPLICA_BACKOFF_MAX).await;
        }
        self.lock().repairing.remove(&key);
        self.reapply.notify_one();
    }

    /// Starts a fetcher task for every leader some follower here fetches from.
    fn ensure_fetchers(self: &Arc<Self>) {
        let mut state = self.lock();
        let leaders: Vec<NodeId> = state
            .partitions
            .values()
            .filter_map(|hosted| match &hosted.role {
                Role::Follower(follower) => follower.leader(),
                _ => None,
            })
            .collect();
        state.fetchers.retain(|_, task| !task.is_finished());
        for leader in leaders {
            if state.fetchers.contains_key(&leader) {
                continue;
            }
            let manager = Arc::clone(self);
            let task = tokio::spawn(async move { manager.run_fetcher(leader).await });
            state.fetchers.insert(leader, task);
        }
    }

    /// Runs the leaders' timers; returns when to run them next.
    fn tick(self: &Arc<Self>) -> Option<Instant> {
        let now = self.clock.now();
        let mut proposals = Vec::new();
        let mut verifier_damage = Vec::new();
        let mut wake: Option<Instant> = None;
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let node_epoch = state.node_epoch;
            for (key, hosted) in &mut state.partitions {
                let Role::Leader(leader, _) = &mut hosted.role else {
                    continue;
                };
                if let Some(log) = self.logs.partition_log(&key.0, key.1) {
                    leader.handle_local_synced(log.high_watermark());
                    leader.handle_local_log_start(log.log_start_offset());
                    // The verifier found a bad batch in a sealed segment this node serves
                    // from: handled as a read that met it (once per damage).
                    if let Some(damage) = log.damage() {
                        verifier_damage.push((key.clone(), damage));
                    }
                }
                leader.handle_timeout(now);
                release(leader, &mut state.waiters);
                hosted.high_watermark.send_if_modified(|value| {
                    let changed = *value != leader.high_watermark();
                    *value = leader.high_watermark();
                    changed
                });
                let allowed = hosted.proposal_not_before.is_none_or(|until| now >= until);
                if allowed && let Some(proposal) = leader.poll_isr_proposal(now) {
                    proposals.push((key.clone(), hosted.topic_id, proposal));
                }
                for instant in [leader.poll_timeout(), hosted.proposal_not_before]
                    .into_iter()
                    .flatten()
                    .filter(|instant| *instant > now)
                {
                    wake = Some(wake.map_or(instant, |wake| wake.min(instant)));
                }
            }
            let seen: BTreeSet<(PartitionKey, i64)> = verifier_damage
                .iter()
                .map(|(key, damage)| (key.clone(), damage.first_offset))
                .collect();
            verifier_damage.retain(|(key, damage)| {
                !state
                    .leader_damage_seen
                    .contains(&(key.clone(), damage.first_offset))
            });
            state.leader_damage_seen = seen;
            if let Some(node_epoch) = node_epoch {
                for (key, topic_id, proposal) in proposals {
                    let request =
                        self.alter_request(&state.image, node_epoch, topic_id, &key, &proposal);
                    let manager = Arc::clone(self);
                    tokio::spawn(
                        async move { manager.send_proposal(key, proposal, request).await },
                    );
                }
            }
        }
        for (key, damage) in verifier_damage {
            let manager = Arc::clone(self);
            tokio::spawn(async move {
                manager
                    .handle_leader_damage(&key.0, key.1, damage.first_offset, &damage.reason)
                    .await
            });
        }
        wake
    }

    fn alter_request(
        &self,
        image: &MetadataImage,
        node_epoch: NodeEpoch,
        topic_id: TopicId,
        key: &PartitionKey,
        proposal: &IsrProposal,
    ) -> AlterPartitionRequest {
        AlterPartitionRequest {
            node_id: self.settings.node_id,
            node_epoch,
            topic_id,
            partition: key.1,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal
                .isr
                .iter()
                .map(|member| {
                    // A member kept without having fetched in this leader epoch carries no
                    // epoch of its own (0): it is already in the ISR, so claim the epoch the
                    // image holds for it, which the controller checks against (a 0 would be
                    // refused forever and the proposal retried in a loop).
                    let epoch = if member.node_epoch == 0 {
                        image
                            .nodes
                            .get(&member.node)
                            .map_or(0, |node| node.node_epoch)
                    } else {
                        member.node_epoch
                    };
                    (member.node, epoch)
                })
                .collect(),
        }
    }

    async fn send_proposal(
        self: Arc<Self>,
        key: PartitionKey,
        proposal: IsrProposal,
        request: AlterPartitionRequest,
    ) {
        let reply = self.transport.alter_partition(request).await;
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(hosted) = state.partitions.get_mut(&key) else {
            return;
        };
        let Role::Leader(leader, _) = &mut hosted.role else {
            return;
        };
        match reply {
            Ok(AlterPartitionReply::Applied { partition_epoch })
                if partition_epoch > proposal.partition_epoch =>
            {
                // The new state arrives with the image; the proposal stays in flight until
                // then, so the HW keeps counting both ISRs.
                hosted.proposal_backoff = REPLICA_BACKOFF_INITIAL;
            }
            Ok(AlterPartitionReply::Applied { .. }) => {
                // Nothing changed on the controller: the image already says this ISR.
                leader.handle_proposal_refused();
                hosted.proposal_backoff = REPLICA_BACKOFF_INITIAL;
            }
            Ok(refusal) => {
                tracing::info!(topic = %key.0, partition = key.1, ?refusal, "ISR change refused; retrying after a back-off");
                leader.handle_proposal_refused();
                hosted.proposal_not_before =
                    Some(clock::deadline_after(now, hosted.proposal_backoff));
                hosted.proposal_backoff = (hosted.proposal_backoff * 2).min(REPLICA_BACKOFF_MAX);
            }
            Err(error) => {
                tracing::info!(topic = %key.0, partition = key.1, %error, "ISR change not delivered; retrying after a back-off");
                leader.handle_proposal_refused();
                hosted.proposal_not_before =
                    Some(clock::deadline_after(now, hosted.proposal_backoff));
                hosted.proposal_backoff = (hosted.proposal_backoff * 2).min(REPLICA_BACKOFF_MAX);
            }
        }
        drop(state);
        self.bump();
    }

    /// This node's role for `topic`/`partition`, for a produce (`acks_all`: also refused
    /// with `NotEnoughReplicas` while the ISR is below `min.insync.replicas`, before any
    /// append) or a consumer fetch.
    pub fn role(
        &self,
        topic: &str,
        partition: u32,
        acks_all: bool,
    ) -> Result<PartitionRole, ReplicaRoleError> {
        let mut state = self.lock();
        let Some(hosted) = state.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return Ok(PartitionRole::Unreplicated);
        };
        let Role::Leader(leader, leadership) = &mut hosted.role else {
            return Err(ReplicaRoleError::NotLeaderOrFollower);
        };
        let leadership = *leadership;
        if acks_all {
            match leader.check_acks_all() {
                Ok(()) => {}
                Err(AcksAllError::NotEnoughReplicas { isr, min }) => {
                    return Err(ReplicaRoleError::NotEnoughReplicas { isr, min });
                }
                Err(_) => return Err(ReplicaRoleError::NotLeaderOrFollower),
            }
        } else if leader.is_deposed() {
            return Err(ReplicaRoleError::NotLeaderOrFollower);
        }
        Ok(PartitionRole::Leader {
            leader_epoch: leader.leader_epoch(),
            leadership,
        })
    }

    /// Lets a produce of `leadership` (from [`Self::role`]) append to the log: the returned
    /// guard holds off follower writes to it until dropped (drop it once the append is
    /// done). Refused with `NotLeaderOrFollower` if the leadership ended since the role
    /// check.
    pub async fn leader_append(
        &self,
        topic: &str,
        partition: u32,
        leadership: u64,
    ) -> Result<tokio::sync::OwnedRwLockReadGuard<()>, ReplicaRoleError> {
        let key = (topic.to_owned(), partition);
        let gate = {
            let state = self.lock();
            let hosted = state
                .partitions
                .get(&key)
                .ok_or(ReplicaRoleError::NotLeaderOrFollower)?;
            Arc::clone(&hosted.append_gate)
        };
        let guard = Arc::clone(&gate).read_owned().await;
        let state = self.lock();
        match state.partitions.get(&key) {
            Some(Hosted {
                role: Role::Leader(leader, current),
                append_gate,
                ..
            }) if *current == leadership
                && !leader.is_deposed()
                && Arc::ptr_eq(append_gate, &gate) =>
            {
                Ok(guard)
            }
            _ => Err(ReplicaRoleError::NotLeaderOrFollower),
        }
    }

    /// Waits until the high watermark of `topic`/`partition` reaches `end_offset` (an
    /// acks=all produce whose last offset is `end_offset - 1`, appended and synced here), or
    /// fails: the ISR fell below the minimum, this node stopped leading, or `deadline`.
    ///
    /// The wait belongs to `leadership`, the one [`Self::role`] named when the produce was
    /// accepted (Kafka's delayed produce is likewise answered `NotLeaderOrFollower` when its
    /// partition's leadership changes). If this node stopped leading since, even to lead
    /// again in a later leadership or epoch, it fails with `NotLeaderOrFollower` (retriable:
    /// the SDK resends the same sequence to the leader, whose producer state, rebuilt from the
    /// batches, deduplicates it if it holds it): in between, the log may have been truncated
    /// as a follower's, so `end_offset` may now hold other records, and a later leadership's
    /// high watermark passing it says nothing about this append.
    pub async fn wait_acks_all(
        &self,
        topic: &str,
        partition: u32,
        leadership: u64,
        end_offset: i64,
        deadline: Instant,
    ) -> Result<(), AcksAllError> {
        let receiver = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let key = (topic.to_owned(), partition);
            let Some(hosted) = state.partitions.get_mut(&key) else {
                return Err(AcksAllError::NotLeaderOrFollower);
            };
            let Role::Leader(leader, current) = &mut hosted.role else {
                return Err(AcksAllError::NotLeaderOrFollower);
            };
            if *current != leadership || leader.is_deposed() {
                return Err(AcksAllError::NotLeaderOrFollower);
            }
            if let Some(log) = self.logs.partition_log(topic, partition) {
                leader.handle_local_synced(log.high_watermark());
            }
            let token = state.next_token;
            state.next_token += 1;
            let (sender, receiver) = oneshot::channel();
            state.waiters.insert(token, Waiting::AcksAll(sender));
            leader.handle_acks_all_append(token, end_offset, deadline);
            release(leader, &mut state.waiters);
            hosted.high_watermark.send_replace(leader.high_watermark());
            receiver
        };
        // The append moved the leader's synced end: waiting fetches answer it now.
        self.bump();
        match clock::timeout_at(&*self.clock, deadline, receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(AcksAllError::NotLeaderOrFollower),
            Err(clock::Elapsed) => Err(AcksAllError::RequestTimedOut),
        }
    }

    /// Waits until the low watermark of `topic`/`partition` (the lowest log start over this
    /// leader and its live followers, [`PartitionLeader::low_watermark`]) reaches `offset`,
    /// and answers it: a DeleteRecords whose move of the leader's log start to `offset` is
    /// durable here (Kafka's `DelayedDeleteRecords`). Fails with `NotLeaderOrFollower` if
    /// this node stopped leading since `leadership` (from [`Self::role`]), with
    /// `RequestTimedOut` at `deadline`.
    pub async fn wait_low_watermark(
        &self,
        topic: &str,
        partition: u32,
        leadership: u64,
        offset: i64,
        deadline: Instant,
    ) -> Result<i64, LowWatermarkError> {
        let receiver = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(hosted) = state.partitions.get_mut(&(topic.to_owned(), partition)) else {
                return Err(LowWatermarkError::NotLeaderOrFollower);
            };
            let Role::Leader(leader, current) = &mut hosted.role else {
                return Err(LowWatermarkError::NotLeaderOrFollower);
            };
            if *current != leadership || leader.is_deposed() {
                return Err(LowWatermarkError::NotLeaderOrFollower);
            }
            if let Some(log) = self.logs.partition_log(topic, partition) {
                leader.handle_local_log_start(log.log_start_offset());
            }
            let token = state.next_token;
            state.next_token += 1;
            let (sender, receiver) = oneshot::channel();
            state.waiters.insert(token, Waiting::LowWatermark(sender));
            leader.handle_delete_records(token, offset, deadline);
            release(leader, &mut state.waiters);
            receiver
        };
        // The leader's log start moved: waiting fetches answer it now, so the followers move
        // theirs without waiting out `replica_fetch_wait_max`; the driver takes the deadline.
        self.bump();
        match clock::timeout_at(&*self.clock, deadline, receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(LowWatermarkError::NotLeaderOrFollower),
            Err(clock::Elapsed) => Err(LowWatermarkError::RequestTimedOut),
        }
    }

    /// The log end at which this node's leader epoch of a partition began (`None` where it
    /// does not lead): until the high watermark reaches it, the leader does not know the
    /// high watermark its predecessor may have answered (KIP-207).
    pub fn leader_epoch_start_offset(&self, topic: &str, partition: u32) -> Option<i64> {
        let state = self.lock();
        match &state.partitions.get(&(topic.to_owned(), partition))?.role {
            Role::Leader(leader, _) if !leader.is_deposed() => {
                Some(leader.leader_epoch_start_offset())
            }
            _ => None,
        }
    }

    /// The replicated high watermark of a partition this node leads, and a watch of it
    /// (consumers read below it); `None` for a partition replication does not manage.
    pub fn consumer_bound(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(LeaderEpoch, watch::Receiver<i64>)>, ReplicaRoleError> {
        let mut state = self.lock();
        let Some(hosted) = state.partitions.get_mut(&(topic.to_owned(), partition)) else {
            return Ok(None);
        };
        let Role::Leader(leader, _) = &mut hosted.role else {
            return Err(ReplicaRoleError::NotLeaderOrFollower);
        };
        if leader.is_deposed() {
            return Err(ReplicaRoleError::NotLeaderOrFollower);
        }
        if let Some(log) = self.logs.partition_log(topic, partition) {
            leader.handle_local_synced(log.high_watermark());
        }
        hosted.high_watermark.send_replace(leader.high_watermark());
        Ok(Some((
            leader.leader_epoch(),
            hosted.high_watermark.subscribe(),
        )))
    }

    /// A partition this node leads met a batch that failed its checks at `offset` while
    /// being served (a consumer's or a follower's verified read; the bytes were not served)
    /// or its background verifier found one (issue 13 item 4, `replication::repair`'s
    /// [`on_leader_damage`](damage_repair::on_leader_damage)). When another ISR member
    /// holds the records, the log goes offline as damaged: pending acks=all waits fail,
    /// reads answer `NotLeaderOrFollower`, and the next look at the image reports the
    /// damage so the controller elects that member; then this replica is cut at the damage
    /// and refetches as a follower, as one damaged at start does. The only ISR member keeps
    /// leading and serves its intact ranges. Returns which of the two it did.
    pub async fn handle_leader_damage(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        reason: &str,
    ) -> damage_repair::LeaderDamageAction {
        let local = self.settings.node_id;
        let action = self
            .lock()
            .partitions
            .get(&(topic.to_owned(), partition))
            .map_or(damage_repair::LeaderDamageAction::KeepLeading, |hosted| {
                damage_repair::on_leader_damage(local, &hosted.state.isr)
            });
        match action {
            damage_repair::LeaderDamageAction::HandOver => {
                if self
                    .logs
                    .mark_damaged(topic, partition, offset, reason)
                    .await
                {
                    self.reapply.notify_one();
                }
            }
            damage_repair::LeaderDamageAction::KeepLeading => {
                tracing::error!(topic, partition, offset, %reason, "damaged batch met by the only in-sync replica: it keeps leading and serves the intact ranges only; reads at the damage fail until the partition is restored (docs/OPERATIONS.md, \"A damaged replica\")");
            }
        }
        action
    }

    /// The ISR this node's leader state works with, for tests and describe.
    pub fn leader_isr(&self, topic: &str, partition: u32) -> Option<Vec<NodeId>> {
        let state = self.lock();
        match &state.partitions.get(&(topic.to_owned(), partition))?.role {
            Role::Leader(leader, _) => Some(leader.isr().to_vec()),
            _ => None,
        }
    }

    /// Answers a replica fetch from node `from` (the sender's certificate's id, never the
    /// body's): per partition the fetch plan and a verified read, the follower's position
    /// taken with its log start (which moves the HW and the low watermark, releasing acks=all
    /// and DeleteRecords waits), and, when nothing is new, a wait of up to
    /// `replica_fetch_wait_max` for an append, a HW move or a log start move.
    pub async fn handle_replica_fetch(
        &self,
        from: NodeId,
        request: ReplicaFetchRequest,
    ) -> ReplicaFetchResponse {
        let registered = self
            .lock()
            .image
            .nodes
            .get(&from)
            .map(|node| node.node_epoch);
        if registered.is_some_and(|current| request.node_epoch < current) || registered.is_none() {
            return ReplicaFetchResponse {
                error: ReplicaFetchError::StaleNodeEpoch,
                partitions: Vec::new(),
            };
        }
        let wait = Duration::from_millis(u64::from(request.max_wait_ms))
            .min(self.settings.replica_fetch_wait_max);
        let deadline = clock::deadline_after(self.clock.now(), wait);
        let bytes_max = request
            .max_bytes
            .min(self.settings.replica_fetch_response_bytes_max) as usize;
        let mut changed = self.changed.subscribe();
        let mut first_bounds: Option<Vec<(i64, i64)>> = None;
        loop {
            changed.borrow_and_update();
            let mut log_watches = Vec::new();
            let mut partitions = Vec::with_capacity(request.partitions.len());
            let mut total = 0usize;
            let mut answer_now = false;
            for wanted in &request.partitions {
                let (answer, log_watch) = self
                    .answer_partition(from, request.node_epoch, wanted, bytes_max, &mut total)
                    .await;
                answer_now |= answer.error != ReplicaFetchError::None
                    || answer.diverging_epoch.is_some()
                    || !answer.records.is_empty();
                log_watches.extend(log_watch);
                partitions.push(answer);
            }
            // A moved high watermark or log start is news for the follower (it moves its own
            // log start, which answers a DeleteRecords waiting for the low watermark).
            let bounds: Vec<(i64, i64)> = partitions
                .iter()
                .map(|p| (p.high_watermark, p.log_start_offset))
                .collect();
            let moved = first_bounds.as_ref().is_some_and(|first| *first != bounds);
            first_bounds.get_or_insert(bounds);
            if answer_now || moved || self.clock.now() >= deadline || partitions.is_empty() {
                return ReplicaFetchResponse {
                    error: ReplicaFetchError::None,
                    partitions,
                };
            }
            if log_watches.is_empty() {
                let _ = clock::timeout_at(&*self.clock, deadline, changed.changed()).await;
                continue;
            }
            let log_changed = futures_util::future::select_all(
                log_watches
                    .iter_mut()
                    .map(|watch: &mut watch::Receiver<i64>| Box::pin(watch.changed())),
            );
            let woken = async {
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = log_changed => {}
                }
            };
            let _ = clock::timeout_at(&*self.clock, deadline, woken).await;
        }
    }

    async fn answer_partition(
        &self,
        from: NodeId,
        node_epoch: NodeEpoch,
        wanted: &ledge_protocol::wire::replica::ReplicaFetchPartition,
        bytes_max: usize,
        total: &mut usize,
    ) -> (ReplicaFetchPartitionResponse, Option<watch::Receiver<i64>>) {
        let refuse = |error| ReplicaFetchPartitionResponse {
            topic: wanted.topic.clone(),
            partition: wanted.partition,
            error,
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            diverging_epoch: None,
            records: Bytes::new(),
        };
        let Some(log) = self.logs.partition_log(&wanted.topic, wanted.partition) else {
            return (refuse(ReplicaFetchError::UnknownTopicOrPartition), None);
        };
        let log_watch = log.subscribe_high_watermark();
        let epochs = log.leader_epochs();
        let (plan, high_watermark) = {
            let mut state = self.lock();
            let Some(hosted) = state
                .partitions
                .get_mut(&(wanted.topic.clone(), wanted.partition))
            else {
                return (refuse(ReplicaFetchError::NotLeaderOrFollower), None);
            };
            // This node has not applied the metadata the follower fetches in, or is still
            // setting its log's leader epoch: the follower backs off and asks again (a
            // `NotLeaderOrFollower` would make it wait for metadata it already has).
            let becoming = matches!(hosted.role, Role::BecomingLeader { .. });
            if wanted.current_leader_epoch > hosted.state.leader_epoch
                || (becoming && wanted.current_leader_epoch == hosted.state.leader_epoch)
            {
                return (refuse(ReplicaFetchError::UnknownLeaderEpoch), None);
            }
            let (partition_state, high_watermark) = match &mut hosted.role {
                Role::Leader(leader, _) if !leader.is_deposed() => {
                    leader.handle_local_synced(log.high_watermark());
                    (hosted.state.clone(), leader.high_watermark())
                }
                // Not leading (or not yet: becoming leader): every fetch is refused.
                _ => (
                    PartitionState {
                        leader: None,
                        ..hosted.state.clone()
                    },
                    -1,
                ),
            };
            let view = LeaderLogView {
                log_start_offset: log.log_start_offset(),
                synced_end: log.high_watermark(),
                high_watermark,
                epochs: &epochs,
            };
            let plan =
                fetch::plan_fetch(self.settings.node_id, &partition_state, from, wanted, &view);
            (plan, high_watermark)
        };
        let view = LeaderLogView {
            log_start_offset: log.log_start_offset(),
            synced_end: log.high_watermark(),
            high_watermark,
            epochs: &epochs,
        };
        let mut plan = plan;
        let mut records = Bytes::new();
        if let FetchPlan::Read {
            from: offset,
            max_bytes,
            ..
        } = &plan
        {
            let budget = (*max_bytes as usize).min(bytes_max.saturating_sub(*total));
            // Past the answer's budget only the position is taken; at least one batch is
            // read otherwise, so a large batch cannot stall replication.
            if budget > 0 || *total == 0 {
                match log.read_verified(*offset, budget.max(1)).await {
                    Ok(read) => {
                        if let Some(damage) = &read.damage {
                            tracing::error!(topic = %wanted.topic, partition = wanted.partition, offset = damage.offset, reason = %damage.reason, "damaged batch not served to a follower");
                            // The verified prefix read above is still good to serve.
                            self.handle_leader_damage(
                                &wanted.topic,
                                wanted.partition,
                                damage.offset,
                                &damage.reason,
                            )
                            .await;
                        }
                        if read.damage.is_some() && read.bytes.is_empty() {
                            plan = FetchPlan::Refuse(ReplicaFetchError::StorageError);
                        }
                        records = read.bytes;
                    }
                    Err(error) => {
                        tracing::warn!(topic = %wanted.topic, partition = wanted.partition, %error, "replica read failed");
                        plan = FetchPlan::Refuse(ReplicaFetchError::StorageError);
                    }
                }
            }
        }
        *total += records.len();
        let mut high_watermark = high_watermark;
        if matches!(plan, FetchPlan::Read { .. }) {
            let mut guard = self.lock();
            let state = &mut *guard;
            if let Some(hosted) = state
                .partitions
                .get_mut(&(wanted.topic.clone(), wanted.partition))
                && let Role::Leader(leader, _) = &mut hosted.role
            {
                let now = self.clock.now();
                match leader.handle_fetch(now, from, node_epoch, wanted.fetch_offset) {
                    Ok(()) => {
                        leader.handle_local_log_start(log.log_start_offset());
                        leader.handle_follower_log_start(from, wanted.log_start_offset);
                    }
                    Err(error) => {
                        tracing::debug!(topic = %wanted.topic, partition = wanted.partition, %error, "fetch not counted as a position");
                    }
                }
                release(leader, &mut state.waiters);
                self.tick_needed.notify_one();
                high_watermark = leader.high_watermark();
                hosted.high_watermark.send_if_modified(|value| {
                    let changed = *value != high_watermark;
                    *value = high_watermark;
                    changed
                });
            }
        }
        let view = LeaderLogView {
            high_watermark,
            ..view
        };
        (
            fetch::answer(wanted, &plan, &view, records),
            Some(log_watch),
        )
    }

    /// One leader's fetcher: fetches every partition this node follows from `leader`, in
    /// one request, until none does.
    async fn run_fetcher(self: Arc<Self>, leader: NodeId) {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let now = self.clock.now();
            let mut damaged = Vec::new();
            let (node_epoch, mut wanted, wake) = {
                let mut guard = self.lock();
                let state = &mut *guard;
                let node_epoch = state.node_epoch;
                let mut wanted = Vec::new();
                let mut wake: Option<Instant> = None;
                let mut follows_any = false;
                for (key, hosted) in &mut state.partitions {
                    let Role::Follower(follower) = &mut hosted.role else {
                        continue;
                    };
                    if follower.leader() != Some(leader) {
                        continue;
                    }
                    follows_any = true;
                    let Some(log) = self.logs.partition_log(&key.0, key.1) else {
                        continue;
                    };
                    if let Some(damage) = log.damage() {
                        // The verifier found a bad batch in this replica: it is repaired
                        // like one found at start (reported, cut, refetched).
                        damaged.push((key.clone(), damage));
                        continue;
                    }
                    let epochs = log.leader_epochs();
                    let view = FollowerLogView {
                        log_start_offset: log.log_start_offset(),
                        synced_end: log.high_watermark(),
                        epochs: &epochs,
                    };
                    if let Some(partition) = follower.poll_fetch(now, &view) {
                        wanted.push((key.clone(), follower.leader_epoch(), partition));
                    } else if let Some(instant) = follower.poll_timeout() {
                        wake = Some(wake.map_or(instant, |wake| wake.min(instant)));
                    }
                }
                if !follows_any {
                    // Leaves the map under the same lock that found nothing to follow, so a
                    // partition that starts following this leader again gets a new fetcher
                    // (`ensure_fetchers` would otherwise see this one still running).
                    state.fetchers.remove(&leader);
                    return;
                }
                (node_epoch, wanted, wake)
            };
            for (key, damage) in damaged {
                if self
                    .logs
                    .mark_damaged(&key.0, key.1, damage.first_offset, &damage.reason)
                    .await
                {
                    self.reapply.notify_one();
                }
            }
            let Some(node_epoch) = node_epoch else {
                let _ = changed.changed().await;
                continue;
            };
            if wanted.is_empty() {
                let sleep = async {
                    match wake {
                        Some(deadline) => self.clock.sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = changed.changed() => {}
                    () = sleep => {}
                }
                continue;
            }
            let partitions = wanted
                .iter()
                .map(|(_, _, partition)| partition.clone())
                .collect();
            let request = follower::fetch_request(
                self.settings.node_id,
                node_epoch,
                &self.settings.follower_config(),
                partitions,
            );
            let response = self.transport.fetch(leader, request).await;
            let now = self.clock.now();
            let response = match response {
                Ok(response) if response.error == ReplicaFetchError::None => response,
                outcome => {
                    if let Err(error) = &outcome {
                        tracing::debug!(leader, %error, "replica fetch failed");
                    }
                    let mut state = self.lock();
                    for (key, _, _) in &wanted {
                        if let Some(Hosted {
                            role: Role::Follower(follower),
                            ..
                        }) = state.partitions.get_mut(key)
                        {
                            follower.handle_fetch_failed(now);
                        }
                    }
                    continue;
                }
            };
            let mut answers: HashMap<PartitionKey, ReplicaFetchPartitionResponse> = response
                .partitions
                .into_iter()
                .map(|answer| ((answer.topic.clone(), answer.partition), answer))
                .collect();
            for (key, fetch_epoch, _) in wanted.drain(..) {
                let Some(answer) = answers.remove(&key) else {
                    let mut state = self.lock();
                    if let Some(Hosted {
                        role: Role::Follower(follower),
                        ..
                    }) = state.partitions.get_mut(&key)
                    {
                        follower.handle_fetch_failed(now);
                    }
                    continue;
                };
                self.carry_out(&key, fetch_epoch, &answer, now).await;
            }
        }
    }

    /// Handles one partition's answer on the follower and does what it says to the log.
    async fn carry_out(
        &self,
        key: &PartitionKey,
        fetch_epoch: LeaderEpoch,
        answer: &ReplicaFetchPartitionResponse,
        now: Instant,
    ) {
        let Some(log) = self.logs.partition_log(&key.0, key.1) else {
            return;
        };
        let (action, gate, follow_bound) = {
            let mut state = self.lock();
            let Some(Hosted {
                role: Role::Follower(follower),
                high_watermark,
                append_gate,
                ..
            }) = state.partitions.get_mut(key)
            else {
                return;
            };
            let gate = Arc::clone(append_gate);
            let epochs = log.leader_epochs();
            let view = FollowerLogView {
                log_start_offset: log.log_start_offset(),
                synced_end: log.high_watermark(),
                epochs: &epochs,
            };
            // Only an answer of the epoch the follower follows moves its log start, and
            // never past the follower's high watermark (records it holds as the leader does).
            let current_epoch = fetch_epoch == follower.leader_epoch();
            let action = follower.handle_answer(now, fetch_epoch, answer, &view);
            let follower_high_watermark = follower.high_watermark(&view);
            high_watermark.send_replace(follower_high_watermark);
            (
                action,
                gate,
                current_epoch.then_some(follower_high_watermark),
            )
        };
        // Produce appends accepted while this node led finish first (see `append_gate`).
        let _writing = match action {
            FollowerAction::None => None,
            _ => Some(gate.write_owned().await),
        };
        let keeps_log = matches!(action, FollowerAction::None | FollowerAction::Append { .. });
        let mut failed = match action {
            FollowerAction::None => false,
            FollowerAction::Append { records } => match log.append_as_follower(records).await {
                Ok(_) => false,
                Err(error) => {
                    tracing::warn!(topic = %key.0, partition = key.1, error = %error.error, "follower append refused");
                    true
                }
            },
            FollowerAction::Truncate { offset } => self.truncate(key, &log, offset).await,
            FollowerAction::TruncateFullyAndStartAt { offset } => {
                if offset <= log.log_start_offset() {
                    self.truncate(key, &log, log.log_start_offset()).await
                } else {
                    // Starting a log empty past its own start needs a primitive the storage
                    // does not have yet; the follower stays out of the ISR and retries.
                    tracing::error!(topic = %key.0, partition = key.1, offset, "follower is behind the leader's log start; cannot catch up");
                    true
                }
            }
        };
        if let Some(bound) = follow_bound
            && !failed
            && keeps_log
        {
            failed = follow_log_start(key, &log, answer.log_start_offset.min(bound)).await;
        }
        if failed {
            let mut state = self.lock();
            if let Some(Hosted {
                role: Role::Follower(follower),
                ..
            }) = state.partitions.get_mut(key)
            {
                follower.handle_action_failed(now);
            }
        }
    }

    /// Truncates a follower's log; returns whether it failed.
    async fn truncate(&self, key: &PartitionKey, log: &PartitionLog<D>, offset: i64) -> bool {
        match log
            .truncate_to(offset, self.disk.clone(), Arc::clone(&self.clock))
            .await
        {
            Ok(fresh) => {
                tracing::info!(topic = %key.0, partition = key.1, offset, "follower log truncated");
                self.logs.replace_log(&key.0, key.1, fresh);
                false
            }
            Err(error) => {
                tracing::error!(topic = %key.0, partition = key.1, offset, %error, "follower truncation failed");
                true
            }
        }
    }
}

/// Moves a follower's log start up to `target`: its leader's (DeleteRecords or retention on
/// the leader), as Kafka's followers do, bounded by the follower's high watermark and never
/// past what this replica holds synced: the rest follows on later fetches. Returns whether
/// it failed (the follower then retries).
async fn follow_log_start<D: Disk>(key: &PartitionKey, log: &PartitionLog<D>, target: i64) -> bool {
    let target = target.min(log.high_watermark());
    if target <= log.log_start_offset() {
        return false;
    }
    match log.delete_before(target).await {
        Ok(start) => {
            tracing::info!(topic = %key.0, partition = key.1, log_start_offset = start, "follower log start follows the leader's");
            false
        }
        Err(error) => {
            tracing::warn!(topic = %key.0, partition = key.1, target, %error, "follower could not move its log start");
            true
        }
    }
}

/// The driver's housekeeping on a writable data directory, every `interval` until the
/// manager is gone: writes the high-watermark checkpoint of `manager` into `directory` when
/// a value changed (a failed write is a warning and is tried again at the next interval; the
/// file on disk stays the previous, older one: lower values, still safe), and deletes the
/// `.damaged` files of healthy replicas past their retention
/// ([`ReplicaManager::remove_expired_damaged_files`]).
async fn run_housekeeping<D: Disk>(
    manager: std::sync::Weak<ReplicaManager<D>>,
    clock: Arc<dyn Clock>,
    disk: D,
    directory: std::path::PathBuf,
    interval: Duration,
) {
    let mut written: Option<HighWatermarks> = None;
    loop {
        clock::sleep(&*clock, interval).await;
        let Some(current) = manager.upgrade().map(|manager| manager.high_watermarks()) else {
            return;
        };
        if written.as_ref() != Some(&current) {
            match checkpoint::store(&disk, &directory, &current).await {
                Ok(()) => written = Some(current),
                Err(error) => {
                    tracing::warn!(%error, "high-watermark checkpoint not written; tried again at the next interval");
                }
            }
        }
        let Some(manager) = manager.upgrade() else {
            return;
        };
        manager.remove_expired_damaged_files().await;
    }
}

/// The image's partition state as the replication state machines take it.
fn replication_state(state: &crate::controller::PartitionState) -> PartitionState {
    PartitionState {
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
    }
}

/// Whether `image` holds the registration of `node` at `node_epoch`: only such an image may
/// make the node a leader (see `ReplicaManager::apply`).
pub(crate) fn image_holds_registration(
    image: &MetadataImage,
    node: NodeId,
    node_epoch: NodeEpoch,
) -> bool {
    image
        .nodes
        .get(&node)
        .is_some_and(|registration| registration.node_epoch == node_epoch)
}

/// A state that deposes any leader: no leader, a newer epoch.
fn deposed_state(state: &PartitionState) -> PartitionState {
    PartitionState {
        leader: None,
        leader_epoch: state.leader_epoch.saturating_add(1),
        partition_epoch: state.partition_epoch.saturating_add(1),
        ..state.clone()
    }
}

fn topic_min_insync(image: &MetadataImage, topic: &str) -> Option<usize> {
    image
        .topics
        .get(topic)?
        .configs
        .get(MIN_INSYNC_REPLICAS_KEY)?
        .trim()
        .parse()
        .ok()
}

/// Hands every acks=all and DeleteRecords outcome the leader state released to its waiting
/// request.
fn release(leader: &mut PartitionLeader<u64>, waiters: &mut HashMap<u64, Waiting>) {
    while let Some((token, outcome)) = leader.poll_released() {
        if let Some(Waiting::AcksAll(waiter)) = waiters.remove(&token) {
            let _ = waiter.send(outcome);
        }
    }
    while let Some((token, outcome)) = leader.poll_low_watermark_released() {
        if let Some(Waiting::LowWatermark(waiter)) = waiters.remove(&token) {
            let _ = waiter.send(outcome);
        }
    }
}

/// The replicas among `replicas` whose node `image` does not hold as live (fenced, or not
/// registered): Kafka's low watermark skips the brokers that are not alive.
fn fenced_replicas(image: &MetadataImage, replicas: &[NodeId]) -> BTreeSet<NodeId> {
    replicas
        .iter()
        .copied()
        .filter(|node| {
            image
                .nodes
                .get(node)
                .is_none_or(|registration| registration.fenced)
        })
        .collect()
}

#[cfg(test)]
mod tests;
