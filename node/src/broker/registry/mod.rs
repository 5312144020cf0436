//! The topic registry: topics, their partitions and configs, `metadata.json` and the topic
//! files beside it, producer-id allocation, and the reconcile of topics declared in the
//! config file.
//!
//! It owns the only copy of this state; the produce, fetch and maintenance paths look
//! partitions up here, and whoever runs on topics (transforms, later replication)
//! subscribes to its [`RegistryEvent`]s, sent after each change is durable, so they follow a
//! topic that grows or goes without a restart. Its operations return their own error enums;
//! `broker/dispatch.rs` turns them into wire codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use tokio::sync::broadcast;

use super::metadata::{
    self, MetadataError, MetadataStore, PRODUCER_ID_BLOCK, StoredMetadata, StoredTopic, TopicFiles,
};
use super::plugins::ModuleReferenceError;
use super::producer_id_hold;
use super::topic_config::{
    self, TopicConfig, TopicConfigError, TopicNameError, validate_topic_name,
};
use super::{DeclaredTopic, plugins, read, write};

mod hosted;
pub mod producer_blocks;
mod stored;
use crate::clock::Clock;
use crate::storage::disk::descriptors::DescriptorBudgetError;
use crate::storage::{Disk, DiskError, LogConfig, PartitionKey, PartitionLog};
pub use hosted::{HostTopicError, HostedTopic, RepairPartitionError};
pub use stored::{
    ModuleReference, RemoveModuleError, RemoveTransformError, SetTransformStoppedError,
    StoreModuleError, StoreTransformError,
};

/// A change to the set of topics or their partitions, sent after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A topic was created with `partitions` partitions.
    TopicCreated {
        /// The topic.
        name: String,
        /// Its partition count.
        partitions: u32,
    },
    /// A topic grew from `before` to `after` partitions.
    PartitionsAdded {
        /// The topic.
        name: String,
        /// Partition count before.
        before: u32,
        /// Partition count now.
        after: u32,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// The topic.
        name: String,
    },
    /// In a `[cluster]`: the partitions of a topic this node hosts changed (a topic placed
    /// here, partitions moved here or away, its configs changed); `hosted` is the new set.
    /// Replication follows it to start or stop replicas.
    PartitionsHosted {
        /// The topic.
        name: String,
        /// The partitions this node now holds.
        hosted: Vec<u32>,
    },
}

/// Events kept for a subscriber that lags; one that falls further behind is told it lagged
/// (`RecvError::Lagged`) and must re-read the registry.
pub const REGISTRY_EVENTS_BUFFERED: usize = 256;

/// The sending side of registry events.
#[derive(Debug)]
pub struct RegistryEvents {
    sender: broadcast::Sender<RegistryEvent>,
}

impl Default for RegistryEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(REGISTRY_EVENTS_BUFFERED),
        }
    }
}

impl RegistryEvents {
    /// Tells every subscriber; nobody listening is fine.
    pub fn emit(&self, event: RegistryEvent) {
        let _ = self.sender.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.sender.subscribe()
    }
}

/// Partitions of one topic opened at once at start (and when a topic is created or grows).
const PARTITION_OPENS_CONCURRENT: usize = 8;
/// Topics opened at once at start; with the above, up to 64 partitions in flight.
const TOPIC_OPENS_CONCURRENT: usize = 8;

/// The settings the registry needs, taken from the broker's.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Node-wide log settings each partition log opens with (under its topic's overrides).
    pub log: LogConfig,
    /// Topic config defaults (Kafka's `log.*` broker settings).
    pub topic_defaults: TopicConfig,
    /// Most partitions one topic may have.
    pub topic_partitions_max: u32,
    /// Most partitions on the node.
    pub partitions_max: u32,
}

enum PartitionState<D: Disk> {
    Online(PartitionLog<D>),
    Offline(String),
    /// In a `[cluster]`: offline because its log is damaged (`OpenError::Corrupt` at
    /// `segment`/`position`). Served like `Offline`; the replication driver may cut it at
    /// its last good batch and refetch the rest from the leader
    /// ([`TopicRegistry::repair_damaged`]).
    Damaged {
        reason: String,
        hint: crate::storage::repair::DamageHint,
    },
    /// In a `[cluster]`: another node is this partition's replica; nothing of it is here.
    NotHosted,
}

/// One partition: its log, or why it is offline.
pub struct Partition<D: Disk> {
    key: PartitionKey,
    state: RwLock<PartitionState<D>>,
    /// A fenced log is being reopened (see [`TopicRegistry::reopen_fenced`]).
    reopening: AtomicBool,
}

/// One topic: its config and partitions.
pub struct Topic<D: Disk> {
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition<D>>>>,
    /// In a `[cluster]`: the controller's topic id (hex) and the image index it was taken
    /// at; `None` on a one-node node.
    topic_id: RwLock<Option<(String, u64)>>,
    /// A topic this node created ([`StoredTopic::local_topic_id`]): its id (hex); `None` on
    /// a topic of the controller.
    local_id: Option<String>,
    /// Produced and fetched records and bytes (`/metrics`), counted by the data path on
    /// the entry it looked up anyway: atomics, no lock.
    counters: crate::metrics::TopicCounters,
}

/// The topic map, read and changed under its lock by the registry only.
type TopicMap<D> = RwLock<BTreeMap<String, Arc<Topic<D>>>>;

impl<D: Disk> Topic<D> {
    /// In a `[cluster]`: the controller's id of the topic (32 hex digits).
    pub fn topic_id(&self) -> Option<String> {
        read(&self.topic_id)
            .as_ref()
            .map(|(topic_id, _)| topic_id.clone())
    }

    /// The topic's id as clients see it (32 hex digits): the controller's for a topic it
    /// placed, else the one this node drew when it created the topic.
    pub fn id(&self) -> Option<String> {
        self.topic_id().or_else(|| self.local_id.clone())
    }

    /// The topic's config now.
    pub fn config(&self) -> TopicConfig {
        read(&self.config).clone()
    }

    /// The topic's partitions now.
    pub fn partitions(&self) -> Vec<Arc<Partition<D>>> {
        read(&self.partitions).clone()
    }

    /// How many partitions the topic has.
    pub fn partition_count(&self) -> u32 {
        read(&self.partitions).len() as u32
    }

    /// The topic's produce and fetch counters.
    pub fn counters(&self) -> &crate::metrics::TopicCounters {
        &self.counters
    }
}

impl<D: Disk> Partition<D> {
    /// Which partition this is.
    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    /// The partition's log, or why it is offline.
    pub fn online_log(&self) -> Result<PartitionLog<D>, LookupError> {
        match &*read(&self.state) {
            PartitionState::Online(log) => Ok(log.clone()),
            PartitionState::Offline(reason) | PartitionState::Damaged { reason, .. } => {
                Err(LookupError::Offline {
                    reason: reason.clone(),
                })
            }
            PartitionState::NotHosted => Err(LookupError::NotHosted {
                topic: self.key.topic.clone(),
                partition: self.key.partition,
            }),
        }
    }

    /// Whether this node holds the partition (online or offline); in a `[cluster]`, the
    /// partitions of other nodes are not hosted.
    pub fn is_hosted(&self) -> bool {
        !matches!(&*read(&self.state), PartitionState::NotHosted)
    }

    /// Takes a partition leaving this node (its topic deleted, its replica moved away) out
    /// of service before its directory is removed: its log is closed and the registry's
    /// handle dropped, so whoever still holds this `Partition` (a fetch waiting, a task
    /// that looked it up) finds it offline and holds no file of it. Without this a
    /// deleted topic's files stayed open, their space in use, until the node restarted.
    async fn close_removed(&self, reason: &str) {
        let state = std::mem::replace(
            &mut *write(&self.state),
            PartitionState::Offline(reason.to_string()),
        );
        if let PartitionState::Online(log) = state {
            let _ = log.close().await;
        }
    }
}

/// A topic or partition that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No topic of that name.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The name asked for.
        topic: String,
    },
    /// The topic has fewer partitions.
    #[error("topic {topic:?} has {count} partitions; there is no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many it has.
        count: usize,
    },
    /// The partition's log could not be opened (or failed verification after a fence).
    #[error("{reason}")]
    Offline {
        /// Why, naming the file and position.
        reason: String,
    },
    /// In a `[cluster]`: the partition lives on other nodes; ask its leader (Metadata says
    /// which).
    #[error(
        "partition {partition} of topic {topic:?} is not on this node: refresh metadata and ask its leader"
    )]
    NotHosted {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
}

/// A partition count no limit allows.
#[derive(Debug, thiserror::Error)]
pub enum PartitionCountError {
    /// Zero partitions.
    #[error("topic {topic:?} needs at least one partition")]
    Zero {
        /// The topic.
        topic: String,
    },
    /// Over `limits.topic_partitions_max`.
    #[error("{partitions} partitions exceed limits.topic_partitions_max ({max})")]
    OverTopicMax {
        /// Asked for.
        partitions: u32,
        /// The limit.
        max: u32,
    },
    /// Over `limits.partitions_max`.
    #[error(
        "the node has {total} partitions; {adding} more would exceed limits.partitions_max ({max})"
    )]
    OverNodeMax {
        /// Partitions on the node now.
        total: usize,
        /// Partitions to add.
        adding: u32,
        /// The limit.
        max: u32,
    },
    /// More than `RLIMIT_NOFILE` can hold open.
    #[error(transparent)]
    Descriptors(#[from] DescriptorBudgetError),
}

/// Why a topic was not created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    /// The name is not a valid topic name.
    #[error(transparent)]
    InvalidName(TopicNameError),
    /// Names starting with `__` belong to the node.
    #[error("topic names starting with \"__\" are reserved for internal topics: {topic:?}")]
    Reserved {
        /// The name asked for.
        topic: String,
    },
    /// A config key or value is invalid.
    #[error(transparent)]
    InvalidConfig(TopicConfigError),
    /// A config names a module that is not uploaded, or of the wrong kind.
    #[error(transparent)]
    ModuleReference(ModuleReferenceError),
    /// The replication factor, or `min.insync.replicas` against it, is refused.
    #[error(transparent)]
    Replication(super::cluster_view::ReplicationError),
    /// The topic exists.
    #[error("topic {topic:?} already exists")]
    AlreadyExists {
        /// The name.
        topic: String,
    },
    /// The partition count is refused.
    #[error(transparent)]
    PartitionCount(#[from] PartitionCountError),
    /// `metadata.json` or the topic file could not be written.
    #[error("could not record topic {topic:?}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// Why.
        source: MetadataError,
    },
    /// A new partition's log could not be created (its first segment's write or sync
    /// failed); nothing was recorded.
    #[error(transparent)]
    PartitionNotCreated(PartitionNotCreated),
    /// The system's random generator gave no topic id; nothing was created.
    #[error("could not draw an id for topic {topic:?}: the system random generator failed")]
    NoTopicId {
        /// The topic.
        topic: String,
    },
}

/// A new partition whose log could not be created, so the topic change it belonged to was
/// not recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("could not create partition {partition} of {topic:?}: {reason}")]
pub struct PartitionNotCreated {
    /// The topic.
    pub topic: String,
    /// The partition that failed (the first, if several did).
    pub partition: u32,
    /// Why.
    pub reason: String,
}

/// Why partitions were not added.
#[derive(Debug, thiserror::Error)]
pub enum AddPartitionsError {
    /// No such topic.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The name.
        topic: String,
    },
    /// Fewer partitions than now: partitions are never removed (Kafka's rule).
    #[error(
        "cannot shrink {topic} from {current} to {asked} partitions: Kafka and Ledge only add partitions"
    )]
    Shrink {
        /// The topic.
        topic: String,
        /// Its partitions now.
        current: u32,
        /// The count asked for.
        asked: u32,
    },
    /// As many partitions as now: nothing to add (Kafka refuses it too).
    #[error("topic {topic} already has {current} partitions; ask for more to add some")]
    Unchanged {
        /// The topic.
        topic: String,
        /// Its partitions now.
        current: u32,
    },
    /// The partition count is refused.
    #[error(transparent)]
    PartitionCount(#[from] PartitionCountError),
    /// `metadata.json` or the topic file could not be written.
    #[error("could not record partitions of {topic:?}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// Why.
        source: MetadataError,
    },
    /// A new partition's log could not be created; nothing was recorded.
    #[error(transparent)]
    PartitionNotCreated(PartitionNotCreated),
}

/// Why a topic's configs were not changed.
#[derive(Debug, thiserror::Error)]
pub enum AlterTopicError {
    /// No such topic.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The name.
        topic: String,
    },
    /// A key to delete is not a topic config.
    #[error("unknown topic config {key:?}; known keys: {}", topic_config::KEYS.join(", "))]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A config key or value is invalid.
    #[error(transparent)]
    InvalidConfig(TopicConfigError),
    /// A config names a module that is not uploaded, or of the wrong kind.
    #[error(transparent)]
    ModuleReference(ModuleReferenceError),
    /// `metadata.json` or the topic file could not be written.
    #[error("could not record configs of {topic:?}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// Why.
        source: MetadataError,
    },
}

/// Why a topic was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteTopicError {
    /// Internal topics are the node's.
    #[error("internal topic {topic:?} cannot be deleted")]
    Internal {
        /// The name.
        topic: String,
    },
    /// No such topic.
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The name.
        topic: String,
    },
    /// A transform reads or writes it.
    #[error("topic {topic:?} is {}; remove the transform first", users.join(" and "))]
    InUse {
        /// The name.
        topic: String,
        /// Who uses it, e.g. `the input of transform "t"`.
        users: Vec<String>,
    },
    /// `metadata.json` could not be written.
    #[error("could not record the deletion of {topic:?}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// Why.
        source: MetadataError,
    },
}

/// Why a topic declared in the config file could not be reconciled.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The declared name is invalid.
    #[error("{origin}: {source}")]
    InvalidName {
        /// Where it was declared.
        origin: String,
        /// Why the name is invalid.
        source: TopicNameError,
    },
    /// Creating it failed.
    #[error("{origin}: {source}")]
    Create {
        /// Where it was declared.
        origin: String,
        /// Why.
        source: CreateTopicError,
    },
    /// The config asks for fewer partitions than the topic has.
    #[error(
        "{origin}: topic {topic:?} has {current} partitions; the config asks for {declared}, but partitions can only be added, never removed"
    )]
    Shrink {
        /// Where it was declared.
        origin: String,
        /// The topic.
        topic: String,
        /// Partitions now.
        current: u32,
        /// Partitions declared.
        declared: u32,
    },
    /// Adding partitions failed.
    #[error("{origin}: {source}")]
    AddPartitions {
        /// Where it was declared.
        origin: String,
        /// Why.
        source: AddPartitionsError,
    },
    /// Applying changed configs failed.
    #[error("{origin}: {source}")]
    Alter {
        /// Where it was declared.
        origin: String,
        /// Why.
        source: AlterTopicError,
    },
}

/// Why no producer id was handed out.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    /// Held back after a rebuild while a partition is offline (see `producer_id_hold`).
    #[error("producer ids are held back while a partition is offline")]
    Held,
    /// The id space is used up (only a damaged or hand-edited `metadata.json` gets here).
    #[error("producer ids are exhausted")]
    Exhausted,
    /// The reservation could not be recorded.
    #[error("could not reserve producer ids: {0}")]
    Record(#[from] MetadataError),
    /// The hold marker could not be removed.
    #[error("could not end the producer id hold: {0}")]
    Disk(#[from] DiskError),
    /// In a cluster: the controller gave no block of ids (retriable).
    #[error(transparent)]
    Controller(#[from] producer_blocks::BlockError),
}

/// Why the registry could not open the data directory.
#[derive(Debug, thiserror::Error)]
pub enum RegistryOpenError {
    /// Data directory IO failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// `metadata.json` is damaged or from a newer build.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// `metadata.json` is missing and the topics cannot be rebuilt without guessing.
    #[error("{0}")]
    MetadataLost(String),
    /// The stored topics hold more partitions than `limits.partitions_max` allows.
    #[error(
        "{} holds {stored} partitions, more than limits.partitions_max ({max}); raise limits.partitions_max to at least {stored} to open it",
        data_dir.display()
    )]
    TooManyPartitions {
        /// The data directory.
        data_dir: PathBuf,
        /// Partitions stored.
        stored: u64,
        /// The limit.
        max: u32,
    },
    /// The producer-id reservation at open failed.
    #[error(transparent)]
    ProducerIds(#[from] ProducerIdError),
}

struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

/// Topics, partitions, configs, `metadata.json` and producer ids of one node.
pub struct TopicRegistry<D: Disk> {
    disk: D,
    data_dir: PathBuf,
    logs_dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: RegistryConfig,
    /// The topics; other services reach them through the methods below.
    topics: TopicMap<D>,
    /// `metadata.json`; its lock orders every change to it, to topics, modules
    /// (`stored.rs`) and transforms alike.
    admin: tokio::sync::Mutex<MetadataStore<D>>,
    /// Each topic's definition beside `metadata.json`, written under the `admin` lock.
    topic_files: TopicFiles<D>,
    producer_ids: Mutex<ProducerIds>,
    /// In a cluster: ids from the controller's blocks ([`Self::allocate_cluster_producer_id`]).
    cluster_producer_ids: Arc<producer_blocks::ProducerIdBlocks>,
    /// In a cluster, `(slot, slots)`: this node hands out only ids of the blocks of
    /// `PRODUCER_ID_BLOCK` whose index is `slot` modulo `slots`, so two nodes never hand
    /// out the same producer id (each keeps its own durable counter).
    producer_id_slot: std::sync::OnceLock<(i64, i64)>,
    /// Producer ids are held back after a rebuild with a partition offline (see
    /// `producer_id_hold`).
    producer_ids_held: AtomicBool,
    /// The data directory is on a read-only filesystem: reads only.
    read_only: bool,
    /// Topic created, grown or deleted, told after it is durable.
    events: RegistryEvents,
}

/// Whether a node in `slot` (see `TopicRegistry::set_producer_id_slot`) may hand out `id`.
fn owns_producer_id(slot: Option<(i64, i64)>, id: i64) -> bool {
    slot.is_none_or(|(slot, slots)| (id / PRODUCER_ID_BLOCK) % slots == slot)
}

/// The start of the first block at or above `floor` that a node in `slot` owns.
fn owned_block_start(slot: Option<(i64, i64)>, floor: i64) -> Option<i64> {
    let Some((slot, slots)) = slot else {
        return Some(floor);
    };
    let mut block = floor.checked_add(PRODUCER_ID_BLOCK - 1)? / PRODUCER_ID_BLOCK;
    block = block.checked_add((slot - block % slots).rem_euclid(slots))?;
    block.checked_mul(PRODUCER_ID_BLOCK)
}

/// The first producer id to hand out after a start: above the stored reservation and above
/// every id the logs remember.
fn producer_id_floor(reserved_until: i64, logs_max: Option<i64>) -> i64 {
    let above_logs = logs_max.map_or(0, |max| max.saturating_add(1));
    reserved_until.max(above_logs).max(PRODUCER_ID_BLOCK)
}

/// Rebuilds the topic list of a data directory whose `metadata.json` is missing: partition
/// counts from the partition directories (or the topic file, if it says more), configs and
/// creation times from each topic's file. A topic without a file (from a build before topic
/// files existed) is refused with the way out, rather than given default configs.
async fn rebuild_topics<D: Disk>(
    data_dir: &Path,
    directories: &[String],
    topic_files: &TopicFiles<D>,
    stored: &mut StoredMetadata,
) -> Result<(), RegistryOpenError> {
    let files = topic_files.load_all().await?;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for name in directories {
        if let Some(key) = PartitionKey::from_directory_name(name) {
            let count = counts.entry(key.topic).or_insert(0);
            *count = (*count).max(key.partition.saturating_add(1));
        }
    }
    let missing: Vec<(&String, u32)> = counts
        .iter()
        .filter(|(topic, _)| !files.contains_key(*topic))
        .map(|(topic, count)| (topic, *count))
        .collect();
    if !missing.is_empty() {
        let example = missing
            .first()
            .map(|(topic, count)| {
                format!(
                    "{}: {{\"version\": 1, \"name\": \"{topic}\", \"partitions\": {count}, \"configs\": {{}}, \"created_ms\": 0}}",
                    data_dir.join(metadata::TOPICS_DIR_NAME).join(format!("{topic}.json")).display()
                )
            })
            .unwrap_or_default();
        return Err(RegistryOpenError::MetadataLost(format!(
            "{} is missing and {} topic(s) with partition directories have no topic file to restore their configs from: {}. Restore metadata.json from a backup; or, to keep a topic's data and give it the default configs (and the config file's overrides), write its topic file, for example {example}; or move its partition directories out of {} to drop it",
            data_dir.join(metadata::METADATA_FILE_NAME).display(),
            missing.len(),
            missing
                .iter()
                .map(|(topic, _)| format!("{topic:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            data_dir.join("logs").display(),
        )));
    }
    for (topic, count) in counts {
        let Some(file) = files.get(&topic) else {
            continue;
        };
        let mut restored = file.clone();
        restored.partitions = restored.partitions.max(count);
        stored.topics.insert(topic, restored);
    }
    tracing::warn!(
        data_dir = %data_dir.display(),
        topics = stored.topics.len(),
        "metadata.json missing; rebuilt the topics from the partition directories and topic files. Uploaded modules and transforms deployed with `ledge transform deploy` are not rebuilt: upload and deploy them again (transforms declared in the config file are deployed at start)"
    );
    Ok(())
}

async fn remove_tree<D: Disk>(disk: &D, directory: &Path) -> Result<(), DiskError> {
    match disk.list_dir(directory).await {
        Ok(names) => {
            for name in names {
                disk.remove_file(&directory.join(name)).await?;
            }
            disk.remove_dir(directory).await
        }
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

impl<D: Disk> TopicRegistry<D> {
    /// Opens the data directory's topics: loads (or rebuilds) `metadata.json`, removes the
    /// directories of deleted topics, opens every partition (one that fails is offline, the
    /// rest serve) and reserves producer ids. A data directory on a read-only filesystem is
    /// opened for reads (issue 11, data item 9): the writes of this open are skipped, no
    /// producer ids are reserved (so none are handed out), and each partition opens
    /// read-only.
    pub async fn open(
        disk: D,
        data_dir: &Path,
        config: RegistryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RegistryOpenError> {
        crate::storage::disk::create_dir_durable(&disk, data_dir).await?;
        let logs_dir = data_dir.join("logs");
        crate::storage::disk::create_dir_durable(&disk, &logs_dir).await?;
        let (mut store, existed) = MetadataStore::load(disk.clone(), data_dir).await?;
        let topic_files = TopicFiles::open(disk.clone(), data_dir).await?;
        let mut stored = store.current().clone();
        let directories = disk.list_dir(&logs_dir).await?;
        if !existed && !directories.is_empty() {
            rebuild_topics(data_dir, &directories, &topic_files, &mut stored).await?;
            // Before the rebuilt metadata.json is stored: ids stay held until every
            // partition has been seen online, even across a crash.
            producer_id_hold::write_hold_marker(&disk, data_dir).await?;
        }
        // Topics stored by a build that gave them no id get the one that build showed Kafka
        // clients, stored below with everything else (on a read-only filesystem it is
        // derived again at each start, the same).
        for (name, topic) in &mut stored.topics {
            if topic.topic_id.is_none() && topic.local_topic_id.is_none() {
                topic.local_topic_id = Some(metadata::legacy_topic_id(name));
            }
        }
        let producer_ids_held = producer_id_hold::hold_marker_exists(&disk, data_dir).await?;
        // Every stored partition is opened below: a count no limit allows (a damaged or
        // hand-edited file, or a lowered limit) is refused before anything is touched.
        // In a cluster only the hosted partitions are opened (and count).
        let stored_partitions: u64 = stored
            .topics
            .values()
            .map(|topic| {
                topic
                    .hosted
                    .as_ref()
                    .map_or_else(|| u64::from(topic.partitions), |hosted| hosted.len() as u64)
            })
            .sum();
        if stored_partitions > u64::from(config.partitions_max) {
            return Err(RegistryOpenError::TooManyPartitions {
                data_dir: data_dir.to_path_buf(),
                stored: stored_partitions,
                max: config.partitions_max,
            });
        }
        for name in &directories {
            let path = logs_dir.join(name);
            let known = PartitionKey::from_directory_name(name).is_some_and(|key| {
                stored.topics.get(&key.topic).is_some_and(|topic| {
                    key.partition < topic.partitions
                        && topic
                            .hosted
                            .as_ref()
                            .is_none_or(|hosted| hosted.contains(&key.partition))
                })
            });
            if !known {
                tracing::warn!(directory = %path.display(), "removing a partition directory of a deleted topic");
                match remove_tree(&disk, &path).await {
                    Err(error) if error.is_read_only() => {}
                    other => other?,
                }
            }
        }
        let mut read_only = false;
        match disk.sync_dir(&logs_dir).await {
            Err(error) if error.is_read_only() => read_only = true,
            other => other?,
        }
        if !read_only {
            let written = match topic_files.sync_with(&stored.topics).await {
                Ok(()) => store.store(stored.clone()).await,
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => {}
                Err(MetadataError::Disk(error)) if error.is_read_only() => {
                    tracing::warn!(data_dir = %data_dir.display(), %error, "read-only filesystem: serving reads only; produce is refused");
                    read_only = true;
                }
                Err(error) => return Err(error.into()),
            }
        }
        let registry = Self {
            disk,
            data_dir: data_dir.to_path_buf(),
            logs_dir,
            clock,
            config,
            topics: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(store),
            topic_files,
            // Nothing is handed out before `reserve_producer_ids_after_open` below.
            producer_ids: Mutex::new(ProducerIds {
                next: 0,
                reserved_until: 0,
            }),
            producer_ids_held: AtomicBool::new(producer_ids_held),
            producer_id_slot: std::sync::OnceLock::new(),
            cluster_producer_ids: Arc::default(),
            read_only,
            events: RegistryEvents::default(),
        };
        let opens = stored.topics.iter().map(|(name, topic)| {
            let registry = &registry;
            async move {
                let config = match TopicConfig::with_overrides(
                    &registry.config.topic_defaults,
                    &topic.configs,
                ) {
                    Ok(config) => config,
                    Err(error) => {
                        tracing::error!(topic = %name, %error, "stored topic config invalid; using defaults");
                        registry.config.topic_defaults.clone()
                    }
                };
                let partitions = registry
                    .open_partitions_hosted(name, 0..topic.partitions, topic.hosted.as_ref(), &config)
                    .await;
                (
                    name.clone(),
                    config,
                    partitions,
                    topic
                        .topic_id
                        .clone()
                        .map(|topic_id| (topic_id, topic.image_index.unwrap_or(0))),
                    topic.local_topic_id.clone(),
                )
            }
        });
        let opened: Vec<_> = futures_util::stream::iter(opens)
            .buffer_unordered(TOPIC_OPENS_CONCURRENT)
            .collect()
            .await;
        for (name, config, partitions, topic_id, local_id) in opened {
            write(&registry.topics).insert(
                name,
                Arc::new(Topic {
                    config: RwLock::new(config),
                    partitions: RwLock::new(partitions),
                    topic_id: RwLock::new(topic_id),
                    local_id,
                    counters: Default::default(),
                }),
            );
        }
        if !read_only {
            registry.reserve_producer_ids_after_open().await?;
            registry.end_producer_id_hold_if_possible(true).await?;
        }
        Ok(registry)
    }

    /// Reopens a fenced partition log with full verification, once, in the background;
    /// on failure the partition goes offline. Whoever sees an append fail with
    /// `AppendError::Fenced` calls it.
    pub fn reopen_fenced(&self, partition: &Arc<Partition<D>>) {
        if partition.reopening.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(log) = partition.online_log() else {
            partition.reopening.store(false, Ordering::SeqCst);
            return;
        };
        let partition = Arc::clone(partition);
        let disk = self.disk.clone();
        let clock = Arc::clone(&self.clock);
        tokio::spawn(async move {
            let state = match log.reopen(disk, clock).await {
                Ok(fresh) => {
                    tracing::info!(partition = %partition.key, "fenced partition reopened and verified");
                    PartitionState::Online(fresh)
                }
                Err(error) => {
                    tracing::error!(partition = %partition.key, %error, "fenced partition failed verification; offline");
                    PartitionState::Offline(error.to_string())
                }
            };
            // Installed only over the fenced log: a partition removed meanwhile (its topic
            // deleted) stays offline, and the reopened log is closed again.
            let stale = {
                let mut slot = write(&partition.state);
                if matches!(*slot, PartitionState::Online(_)) {
                    *slot = state;
                    None
                } else {
                    Some(state)
                }
            };
            if let Some(PartitionState::Online(fresh)) = stale {
                let _ = fresh.close().await;
            }
            partition.reopening.store(false, Ordering::SeqCst);
        });
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Copies the data directory's files outside the partition logs into `target` for a
    /// snapshot (`storage::snapshot::copy_node_files`), holding the metadata lock so no
    /// topic, module or transform changes while they are copied.
    pub async fn copy_node_files(&self, target: &Path) -> Result<Vec<String>, DiskError> {
        let _metadata = self.admin.lock().await;
        crate::storage::snapshot::copy_node_files(&self.disk, &self.data_dir, target).await
    }

    /// The names of every topic, internal ones included, in order.
    pub fn topic_names(&self) -> Vec<String> {
        read(&self.topics).keys().cloned().collect()
    }

    /// The partition counts of the user topics (not the node's `__` ones).
    pub fn user_topic_partition_counts(&self) -> BTreeMap<String, u32> {
        read(&self.topics)
            .iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(name, topic)| (name.clone(), topic.partition_count()))
            .collect()
    }

    /// The data directory is on a read-only filesystem: nothing is written.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Changes to the topics and their partitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.subscribe()
    }

    /// Reserves a fresh block of producer ids before any is handed out, above both the stored
    /// reservation and every producer id the opened logs remember. The second bound is what
    /// keeps ids unique when `metadata.json` was lost (or restored from an old copy): an id
    /// a partition still remembers, handed to a new producer, would make that producer's first
    /// batch look like a resend of the old one's, acknowledged and never written.
    async fn reserve_producer_ids_after_open(&self) -> Result<(), ProducerIdError> {
        let logs_max = self
            .online_logs(|_| true)
            .iter()
            .filter_map(|(log, _)| log.producer_id_max_recovered())
            .max();
        let mut store = self.admin.lock().await;
        let mut next_stored = store.current().clone();
        let next = producer_id_floor(next_stored.producer_ids_reserved_until, logs_max);
        if next > next_stored.producer_ids_reserved_until {
            tracing::warn!(
                stored = next_stored.producer_ids_reserved_until,
                logs_max = ?logs_max,
                next,
                "the logs hold producer ids above the stored reservation; new ids start above them"
            );
        }
        let Some(reserved_until) = next.checked_add(PRODUCER_ID_BLOCK) else {
            // Only a damaged or hand-edited metadata.json gets here: the node serves, and
            // InitProducerId answers StorageError (non-idempotent producers still work).
            tracing::error!(
                next,
                "producer ids are exhausted (metadata.json's producer_ids_reserved_until is at the end of the id space); idempotent producers cannot start"
            );
            *self.lock_producer_ids() = ProducerIds {
                next: i64::MAX,
                reserved_until: i64::MAX,
            };
            return Ok(());
        };
        next_stored.producer_ids_reserved_until = reserved_until;
        store.store(next_stored).await?;
        *self.lock_producer_ids() = ProducerIds {
            next,
            reserved_until,
        };
        Ok(())
    }

    /// In a cluster: this node is number `slot` of `slots` (its place among the sorted ids
    /// of `cluster.peers`), and hands out only producer ids of its own blocks. Each node
    /// keeps its own durable counter, so without this two nodes would give two producers the
    /// same id, and one producer's batch would be deduplicated as the other's (acknowledged
    /// at an offset that holds another record). Set once, before clients are served.
    pub fn set_producer_id_slot(&self, slot: u32, slots: u32) {
        if slots > 0 && slot < slots {
            let _ = self
                .producer_id_slot
                .set((i64::from(slot), i64::from(slots)));
        }
    }

    fn lock_producer_ids(&self) -> std::sync::MutexGuard<'_, ProducerIds> {
        // Never held across an await; poisoning means a panic already reported.
        self.producer_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// In a cluster: hands out the next producer id from the blocks the active controller
    /// gives this node through `source` (recorded in the metadata log before they are used:
    /// unique across nodes and restarts; see `producer_blocks`). The local reservation and
    /// its hold play no part: they guard the single-node counter.
    pub async fn allocate_cluster_producer_id(
        &self,
        source: Arc<dyn producer_blocks::ProducerIdBlockSource>,
    ) -> Result<i64, ProducerIdError> {
        Ok(self.cluster_producer_ids.allocate(source).await?)
    }

    /// Hands out the next producer id, reserving (durably) a new block when the current one
    /// is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, ProducerIdError> {
        if !self.end_producer_id_hold_if_possible(false).await? {
            return Err(ProducerIdError::Held);
        }
        let slot = self.producer_id_slot.get().copied();
        let needs_block = {
            let ids = self.lock_producer_ids();
            ids.next >= ids.reserved_until || !owns_producer_id(slot, ids.next)
        };
        if needs_block {
            let mut store = self.admin.lock().await;
            let mut next: StoredMetadata = store.current().clone();
            let Some(start) = owned_block_start(slot, next.producer_ids_reserved_until) else {
                return Err(ProducerIdError::Exhausted);
            };
            // i64::MAX producer ids are not handed out in the life of a node; refusing beats
            // wrapping to ids that repeat.
            let Some(reserved_until) = start.checked_add(PRODUCER_ID_BLOCK) else {
                return Err(ProducerIdError::Exhausted);
            };
            next.producer_ids_reserved_until = reserved_until;
            store.store(next).await?;
            let mut ids = self.lock_producer_ids();
            if ids.next >= ids.reserved_until || !owns_producer_id(slot, ids.next) {
                ids.next = start;
                ids.reserved_until = reserved_until;
            }
        }
        let mut ids = self.lock_producer_ids();
        let producer_id = ids.next;
        ids.next += 1;
        Ok(producer_id)
    }

    async fn open_partitions(
        &self,
        topic: &str,
        range: std::ops::Range<u32>,
        config: &TopicConfig,
    ) -> Vec<Arc<Partition<D>>> {
        self.open_partitions_hosted(topic, range, None, config)
            .await
    }

    /// Opens the partitions of `range` that `hosted` holds (all of them if `None`); the
    /// others are [`PartitionState::NotHosted`], with nothing on disk.
    async fn open_partitions_hosted(
        &self,
        topic: &str,
        range: std::ops::Range<u32>,
        hosted: Option<&std::collections::BTreeSet<u32>>,
        config: &TopicConfig,
    ) -> Vec<Arc<Partition<D>>> {
        let log_config = config.log_config(&self.config.log);
        // Opening a partition is ~20 dependent disk round trips (directory, segments,
        // checkpoint, recovery scan, index): opened one at a time, 400 partitions took
        // ~220 ms to start; several at once keep the disk queue busy instead.
        let opens = range.map(|number| {
            let log_config = log_config.clone();
            async move {
                let key = PartitionKey {
                    topic: topic.to_string(),
                    partition: number,
                };
                if hosted.is_some_and(|hosted| !hosted.contains(&number)) {
                    return Arc::new(Partition {
                        key,
                        state: RwLock::new(PartitionState::NotHosted),
                        reopening: AtomicBool::new(false),
                    });
                }
                let directory = self.logs_dir.join(key.directory_name());
                let state = match PartitionLog::open(
                    self.disk.clone(),
                    &directory,
                    log_config,
                    Arc::clone(&self.clock),
                )
                .await
                {
                    Ok(log) => PartitionState::Online(log),
                    // A replica placed by the controller: its leader may hold the records.
                    Err(crate::storage::OpenError::Corrupt {
                        path,
                        position,
                        reason,
                    }) if hosted.is_some() => {
                        let error = crate::storage::OpenError::Corrupt {
                            path: path.clone(),
                            position,
                            reason,
                        };
                        tracing::error!(partition = %key, %error, "partition offline: its log is damaged; repaired from the leader if another replica leads it (docs/OPERATIONS.md, \"A damaged replica\")");
                        PartitionState::Damaged {
                            reason: error.to_string(),
                            hint: crate::storage::repair::DamageHint::At {
                                segment: path,
                                position,
                            },
                        }
                    }
                    Err(error) => {
                        tracing::error!(partition = %key, %error, "partition offline");
                        PartitionState::Offline(error.to_string())
                    }
                };
                Arc::new(Partition {
                    key,
                    state: RwLock::new(state),
                    reopening: AtomicBool::new(false),
                })
            }
        });
        futures_util::stream::iter(opens)
            .buffered(PARTITION_OPENS_CONCURRENT)
            .collect()
            .await
    }

    /// Partitions that could not be opened, with the reason (naming file and position).
    pub fn offline_partitions(&self) -> Vec<(String, u32, String)> {
        let topics = read(&self.topics);
        let mut offline = Vec::new();
        for (name, topic) in topics.iter() {
            for partition in read(&topic.partitions).iter() {
                if let PartitionState::Offline(reason) | PartitionState::Damaged { reason, .. } =
                    &*read(&partition.state)
                {
                    offline.push((name.clone(), partition.key.partition, reason.clone()));
                }
            }
        }
        offline
    }

    /// Every online partition log of the topics whose config `wanted` accepts, with that
    /// config (taken under the locks, used after them).
    pub fn online_logs(
        &self,
        wanted: impl Fn(&TopicConfig) -> bool,
    ) -> Vec<(PartitionLog<D>, TopicConfig)> {
        let topics = read(&self.topics);
        let mut logs = Vec::new();
        for topic in topics.values() {
            let config = read(&topic.config).clone();
            if !wanted(&config) {
                continue;
            }
            for partition in read(&topic.partitions).iter() {
                if let Ok(log) = partition.online_log() {
                    logs.push((log, config.clone()));
                }
            }
        }
        logs
    }

    /// The topic of that name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic<D>>> {
        read(&self.topics).get(name).cloned()
    }

    /// How many partitions the topic has; 0 if there is no such topic.
    pub fn partition_count(&self, name: &str) -> u32 {
        self.topic(name)
            .map_or(0, |topic| read(&topic.partitions).len() as u32)
    }

    /// One partition of one topic.
    pub fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition<D>>, LookupError> {
        let topic_entry = self.topic(topic).ok_or_else(|| LookupError::UnknownTopic {
            topic: topic.to_string(),
        })?;
        Self::partition_of(&topic_entry, topic, partition)
    }

    /// The log of one partition of one topic, or why there is none to use.
    pub fn partition_log(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<PartitionLog<D>, LookupError> {
        self.partition(topic, partition)?.online_log()
    }

    /// Replaces a partition's log by `log`: the handle a follower's truncation reopened
    /// (`PartitionLog::truncate_to` closes the old one).
    pub fn replace_partition_log(
        &self,
        topic: &str,
        partition: u32,
        log: PartitionLog<D>,
    ) -> Result<(), LookupError> {
        let partition = self.partition(topic, partition)?;
        *write(&partition.state) = PartitionState::Online(log);
        Ok(())
    }

    /// The disk the partition logs live on.
    pub fn disk(&self) -> &D {
        &self.disk
    }

    /// One partition of a topic already looked up.
    pub fn partition_of(
        topic_entry: &Topic<D>,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Partition<D>>, LookupError> {
        let partitions = read(&topic_entry.partitions);
        partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| LookupError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                count: partitions.len(),
            })
    }

    fn check_partition_count(
        &self,
        topic: &str,
        partitions: u32,
        adding: u32,
    ) -> Result<(), PartitionCountError> {
        if partitions == 0 {
            return Err(PartitionCountError::Zero {
                topic: topic.to_string(),
            });
        }
        if partitions > self.config.topic_partitions_max {
            return Err(PartitionCountError::OverTopicMax {
                partitions,
                max: self.config.topic_partitions_max,
            });
        }
        // Partitions of a cluster topic held by other nodes take nothing here.
        let total: usize = read(&self.topics)
            .values()
            .map(|topic| {
                read(&topic.partitions)
                    .iter()
                    .filter(|partition| partition.is_hosted())
                    .count()
            })
            .sum();
        if total as u64 + u64::from(adding) > u64::from(self.config.partitions_max) {
            return Err(PartitionCountError::OverNodeMax {
                total,
                adding,
                max: self.config.partitions_max,
            });
        }
        // Each partition holds open files: refuse what RLIMIT_NOFILE cannot hold, rather
        // than fail opens later (issue 11, data item 8).
        crate::storage::disk::descriptors::check_partition_count(total as u64 + u64::from(adding))?;
        Ok(())
    }

    /// Records one topic's definition: its own file first, then `metadata.json` (`next`,
    /// which holds it). The file is written first so that whenever `metadata.json` names a
    /// topic its file exists; a file ahead of `metadata.json` after a failure here is put back
    /// in step at the next start.
    async fn record_topic(
        &self,
        store: &mut MetadataStore<D>,
        name: &str,
        topic: &StoredTopic,
        next: StoredMetadata,
    ) -> Result<(), MetadataError> {
        let previous = store.current().topics.get(name).cloned();
        self.topic_files.store(name, topic).await?;
        let stored = store.store(next).await;
        if stored.is_err() {
            // Best effort: put the file back as metadata.json still has it, so a rebuild
            // never restores a change that was refused (the next start fixes it otherwise).
            let restored = match &previous {
                Some(previous) => self.topic_files.store(name, previous).await,
                None => self.topic_files.remove(name).await.map_err(Into::into),
            };
            if let Err(error) = restored {
                tracing::warn!(topic = %name, %error, "could not restore the topic file; it is rewritten at the next start");
            }
        }
        stored
    }

    /// Checks everything [`Self::create_topic`] checks, without creating anything
    /// (`validate_only`).
    pub async fn validate_create(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), CreateTopicError> {
        let modules = self.admin.lock().await.current().modules.clone();
        validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, configs)
            .map_err(CreateTopicError::InvalidConfig)?;
        plugins::check_module_references(&config, &modules)
            .map_err(CreateTopicError::ModuleReference)?;
        if self.topic(name).is_some() {
            return Err(CreateTopicError::AlreadyExists {
                topic: name.to_string(),
            });
        }
        self.check_partition_count(name, partitions, partitions)?;
        Ok(())
    }

    /// Creates a topic: opens its partitions, records it, then tells subscribers.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), CreateTopicError> {
        validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, configs)
            .map_err(CreateTopicError::InvalidConfig)?;
        let mut store = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(CreateTopicError::AlreadyExists {
                topic: name.to_string(),
            });
        }
        plugins::check_module_references(&config, &store.current().modules)
            .map_err(CreateTopicError::ModuleReference)?;
        self.check_partition_count(name, partitions, partitions)?;
        let local_id = metadata::random_topic_id().ok_or_else(|| CreateTopicError::NoTopicId {
            topic: name.to_string(),
        })?;
        let opened = self.open_partitions(name, 0..partitions, &config).await;
        // A partition whose first segment could not be written or synced must not be
        // acknowledged: after a power loss it would be an acknowledged topic with a partition
        // offline (found by the whole-node simulator, seed 179).
        if let Some(failed) = self.discard_unless_all_online(name, &opened).await {
            return Err(CreateTopicError::PartitionNotCreated(failed));
        }
        let stored_topic = StoredTopic {
            partitions,
            configs: configs.clone(),
            created_ms: self.clock.wall_time_ms(),
            topic_id: None,
            hosted: None,
            image_index: None,
            local_topic_id: Some(local_id.clone()),
        };
        let mut next = store.current().clone();
        next.topics.insert(name.to_string(), stored_topic.clone());
        if let Err(source) = self
            .record_topic(&mut store, name, &stored_topic, next)
            .await
        {
            // Not recorded: the directories are leftovers the next start removes.
            for partition in &opened {
                if let Ok(log) = partition.online_log() {
                    let _ = log.close().await;
                }
            }
            return Err(CreateTopicError::Record {
                topic: name.to_string(),
                source,
            });
        }
        write(&self.topics).insert(
            name.to_string(),
            Arc::new(Topic {
                config: RwLock::new(config),
                partitions: RwLock::new(opened),
                topic_id: RwLock::new(None),
                local_id: Some(local_id),
                counters: Default::default(),
            }),
        );
        // Under the admin lock, so subscribers see changes in the order they were made.
        self.events.emit(RegistryEvent::TopicCreated {
            name: name.to_string(),
            partitions,
        });
        drop(store);
        Ok(())
    }

    /// If any of the just-opened `partitions` is offline, closes the others, removes their
    /// directories (best effort: a directory left behind is a leftover the next start
    /// removes, as nothing recorded it) and names the first that failed.
    async fn discard_unless_all_online(
        &self,
        topic: &str,
        partitions: &[Arc<Partition<D>>],
    ) -> Option<PartitionNotCreated> {
        let failed = partitions.iter().find_map(|partition| {
            partition
                .online_log()
                .err()
                .map(|error| PartitionNotCreated {
                    topic: topic.to_string(),
                    partition: partition.key.partition,
                    reason: error.to_string(),
                })
        })?;
        for partition in partitions {
            if let Ok(log) = partition.online_log() {
                let _ = log.close().await;
            }
            let directory = self.logs_dir.join(partition.key.directory_name());
            if let Err(error) = remove_tree(&self.disk, &directory).await {
                tracing::warn!(directory = %directory.display(), %error, "removing a partition that was not created failed; removed at next start");
            }
        }
        tracing::error!(%failed, "nothing recorded");
        Some(failed)
    }

    /// Checks what [`Self::add_partitions`] would do, without changing anything
    /// (`validate_only`).
    pub fn validate_add_partitions(
        &self,
        name: &str,
        partitions: u32,
    ) -> Result<(), AddPartitionsError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| AddPartitionsError::UnknownTopic {
                topic: name.to_string(),
            })?;
        self.check_add_partitions(&topic, name, partitions)
            .map(drop)
    }

    /// The topic's partition count now, if growing it to `partitions` is allowed: more
    /// than now, within the limits.
    fn check_add_partitions(
        &self,
        topic: &Topic<D>,
        name: &str,
        partitions: u32,
    ) -> Result<u32, AddPartitionsError> {
        let current = read(&topic.partitions).len() as u32;
        if partitions < current {
            return Err(AddPartitionsError::Shrink {
                topic: name.to_string(),
                current,
                asked: partitions,
            });
        }
        if partitions == current {
            return Err(AddPartitionsError::Unchanged {
                topic: name.to_string(),
                current,
            });
        }
        self.check_partition_count(name, partitions, partitions - current)?;
        Ok(current)
    }

    /// Grows a topic to `partitions` partitions (more than now: partitions are never
    /// removed).
    pub async fn add_partitions(
        &self,
        name: &str,
        partitions: u32,
    ) -> Result<(), AddPartitionsError> {
        let unknown = || AddPartitionsError::UnknownTopic {
            topic: name.to_string(),
        };
        let mut store = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(unknown)?;
        let current = self.check_add_partitions(&topic, name, partitions)?;
        let config = read(&topic.config).clone();
        let added = self
            .open_partitions(name, current..partitions, &config)
            .await;
        if let Some(failed) = self.discard_unless_all_online(name, &added).await {
            return Err(AddPartitionsError::PartitionNotCreated(failed));
        }
        let mut next = store.current().clone();
        let stored_topic = next.topics.get_mut(name).ok_or_else(unknown)?;
        stored_topic.partitions = partitions;
        let stored_topic = stored_topic.clone();
        self.record_topic(&mut store, name, &stored_topic, next)
            .await
            .map_err(|source| AddPartitionsError::Record {
                topic: name.to_string(),
                source,
            })?;
        write(&topic.partitions).extend(added);
        self.events.emit(RegistryEvent::PartitionsAdded {
            name: name.to_string(),
            before: current,
            after: partitions,
        });
        drop(store);
        Ok(())
    }

    /// The configs a topic would have with `set` applied and `delete` removed, checked.
    fn altered_config(
        &self,
        topic: &Topic<D>,
        set: &BTreeMap<String, String>,
        delete: &[String],
        store: &MetadataStore<D>,
    ) -> Result<(BTreeMap<String, String>, TopicConfig), AlterTopicError> {
        let mut overrides = read(&topic.config).overrides.clone();
        for key in delete {
            if !topic_config::KEYS.contains(&key.as_str()) {
                return Err(AlterTopicError::UnknownKey { key: key.clone() });
            }
            overrides.remove(key);
        }
        overrides.extend(set.iter().map(|(key, value)| (key.clone(), value.clone())));
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, &overrides)
            .map_err(AlterTopicError::InvalidConfig)?;
        plugins::check_module_references(&config, &store.current().modules)
            .map_err(AlterTopicError::ModuleReference)?;
        Ok((overrides, config))
    }

    /// Checks what [`Self::alter_topic`] would do, without changing anything
    /// (`validate_only`). Unlike the change itself, deleting an unknown key is not refused
    /// here (as before the registry was split out).
    pub async fn validate_alter(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AlterTopicError> {
        let topic = self
            .topic(name)
            .ok_or_else(|| AlterTopicError::UnknownTopic {
                topic: name.to_string(),
            })?;
        let mut overrides = read(&topic.config).overrides.clone();
        for key in delete {
            overrides.remove(key);
        }
        overrides.extend(set.iter().map(|(key, value)| (key.clone(), value.clone())));
        let modules = self.admin.lock().await.current().modules.clone();
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, &overrides)
            .map_err(AlterTopicError::InvalidConfig)?;
        plugins::check_module_references(&config, &modules)
            .map_err(AlterTopicError::ModuleReference)
    }

    /// Sets and deletes config overrides of a topic, records them and applies them to its
    /// live logs.
    pub async fn alter_topic(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AlterTopicError> {
        let unknown = || AlterTopicError::UnknownTopic {
            topic: name.to_string(),
        };
        let mut store = self.admin.lock().await;
        let topic = self.topic(name).ok_or_else(unknown)?;
        let (overrides, config) = self.altered_config(&topic, set, delete, &store)?;
        let mut next = store.current().clone();
        let stored_topic = next.topics.get_mut(name).ok_or_else(unknown)?;
        stored_topic.configs = overrides;
        let stored_topic = stored_topic.clone();
        self.record_topic(&mut store, name, &stored_topic, next)
            .await
            .map_err(|source| AlterTopicError::Record {
                topic: name.to_string(),
                source,
            })?;
        let log_config = config.log_config(&self.config.log);
        for partition in read(&topic.partitions).iter() {
            if let Ok(log) = partition.online_log()
                && let Err(error) = log.set_config(log_config.clone())
            {
                tracing::error!(partition = %partition.key, %error, "could not apply topic config to a live log");
            }
        }
        *write(&topic.config) = config;
        Ok(())
    }

    /// Deletes a topic: durable in `metadata.json` first, then its logs are closed and its
    /// directories removed. Returns nothing of the topic; whoever keeps state per topic
    /// (committed offsets) drops it on [`RegistryEvent::TopicDeleted`] or after this returns.
    pub async fn delete_topic(&self, name: &str) -> Result<(), DeleteTopicError> {
        if name.starts_with("__") {
            return Err(DeleteTopicError::Internal {
                topic: name.to_string(),
            });
        }
        let mut store = self.admin.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| DeleteTopicError::UnknownTopic {
                topic: name.to_string(),
            })?;
        Self::check_unused(&store, name)?;
        self.remove_topic_locked(&mut store, name, &topic)
            .await
            .map_err(|source| DeleteTopicError::Record {
                topic: name.to_string(),
                source,
            })?;
        drop(store);
        Ok(())
    }

    /// Deletes a stateful transform's internal topic (`__transform.NAME.changelog` or
    /// `.repartition`) when the transform is removed; no such topic is not an error.
    pub async fn delete_transform_topic(&self, name: &str) -> Result<(), DeleteTopicError> {
        let mut store = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Ok(());
        };
        self.remove_topic_locked(&mut store, name, &topic)
            .await
            .map_err(|source| DeleteTopicError::Record {
                topic: name.to_string(),
                source,
            })
    }

    /// Checks what deleting topic `name` would refuse for this node's sake (internal, or
    /// used by a transform), without deleting it: in a `[cluster]` the controller deletes,
    /// after this check on the node that forwards the request.
    pub async fn check_deletable(&self, name: &str) -> Result<(), DeleteTopicError> {
        if name.starts_with("__") {
            return Err(DeleteTopicError::Internal {
                topic: name.to_string(),
            });
        }
        let store = self.admin.lock().await;
        Self::check_unused(&store, name)
    }

    fn check_unused(store: &MetadataStore<D>, name: &str) -> Result<(), DeleteTopicError> {
        // A transform would lose its input (and its stored position) or fail every append.
        let users: Vec<String> = store
            .current()
            .transforms
            .iter()
            .filter_map(|(transform, stored)| {
                let role = if stored.input == name {
                    "input"
                } else if stored.output == name {
                    "output"
                } else if stored.dead_letter_topic == name {
                    "dead-letter topic"
                } else if stored
                    .stateful
                    .as_ref()
                    .and_then(|spec| spec.join.as_ref())
                    .is_some_and(|join| join.right == name)
                {
                    "join input"
                } else {
                    return None;
                };
                Some(format!("the {role} of transform {transform:?}"))
            })
            .collect();
        if !users.is_empty() {
            return Err(DeleteTopicError::InUse {
                topic: name.to_string(),
                users,
            });
        }
        Ok(())
    }

    /// Removes a topic under the `admin` lock (`store`): durable in `metadata.json` first,
    /// then its logs are closed and its directories and topic file removed.
    async fn remove_topic_locked(
        &self,
        store: &mut MetadataStore<D>,
        name: &str,
        topic: &Topic<D>,
    ) -> Result<(), MetadataError> {
        // Durable first: once metadata.json no longer has the topic, a crash mid-removal is
        // finished at the next start.
        let mut next = store.current().clone();
        next.topics.remove(name);
        store.store(next).await?;
        write(&self.topics).remove(name);
        self.events.emit(RegistryEvent::TopicDeleted {
            name: name.to_string(),
        });
        // The admin lock stays held to the end: a topic of the same name created meanwhile
        // would open partitions in the directories being removed.
        let partitions = read(&topic.partitions).clone();
        for partition in partitions {
            partition
                .close_removed(&format!("topic {name:?} was deleted"))
                .await;
            let directory = self.logs_dir.join(partition.key.directory_name());
            if let Err(error) = remove_tree(&self.disk, &directory).await {
                tracing::error!(directory = %directory.display(), %error, "removing a deleted partition failed; retried at next start");
            }
        }
        if let Err(error) = self.disk.sync_dir(&self.logs_dir).await {
            tracing::error!(%error, "syncing the logs directory after a deletion failed");
        }
        // Last: while partition directories remain, the file lets a lost metadata.json be
        // rebuilt; a file left behind by a crash is removed at the next start.
        if let Err(error) = self.topic_files.remove(name).await {
            tracing::error!(topic = %name, %error, "removing a deleted topic's file failed; retried at next start");
        }
        Ok(())
    }

    /// Creates declared topics that are missing, adds partitions and applies config
    /// overrides to existing ones; refuses impossible changes (fewer partitions).
    pub async fn reconcile(&self, declared: &[DeclaredTopic]) -> Result<(), ReconcileError> {
        for topic in declared {
            let origin = || topic.origin.clone();
            validate_topic_name(&topic.name).map_err(|source| ReconcileError::InvalidName {
                origin: origin(),
                source,
            })?;
            match self.topic(&topic.name) {
                None => {
                    self.create_topic(&topic.name, topic.partitions, &topic.configs)
                        .await
                        .map_err(|source| ReconcileError::Create {
                            origin: origin(),
                            source,
                        })?;
                    tracing::info!(topic = %topic.name, partitions = topic.partitions, "created declared topic");
                }
                Some(existing) => {
                    let current = read(&existing.partitions).len() as u32;
                    if topic.partitions < current {
                        return Err(ReconcileError::Shrink {
                            origin: origin(),
                            topic: topic.name.clone(),
                            current,
                            declared: topic.partitions,
                        });
                    }
                    if topic.partitions > current {
                        self.add_partitions(&topic.name, topic.partitions)
                            .await
                            .map_err(|source| ReconcileError::AddPartitions {
                                origin: origin(),
                                source,
                            })?;
                        tracing::info!(topic = %topic.name, from = current, to = topic.partitions, "added partitions");
                    }
                    let changed: BTreeMap<String, String> = {
                        let config = read(&existing.config);
                        topic
                            .configs
                            .iter()
                            .filter(|(key, value)| config.overrides.get(*key) != Some(*value))
                            .map(|(key, value)| (key.clone(), value.clone()))
                            .collect()
                    };
                    if !changed.is_empty() {
                        self.alter_topic(&topic.name, &changed, &[])
                            .await
                            .map_err(|source| ReconcileError::Alter {
                                origin: origin(),
                                source,
                            })?;
                        tracing::info!(topic = %topic.name, ?changed, "applied changed topic configs");
                    }
                }
            }
        }
        Ok(())
    }

    /// Ends the producer-id hold if every partition is online: the floor is taken over every
    /// log, then the marker is removed. `Ok(true)` if ids may be handed out. Warns with the
    /// offline partitions when `at_open` (each refused request only logs at debug level, so
    /// retrying producers do not flood the log).
    async fn end_producer_id_hold_if_possible(
        &self,
        at_open: bool,
    ) -> Result<bool, ProducerIdError> {
        if !self.producer_ids_held.load(Ordering::Acquire) {
            return Ok(true);
        }
        let offline: Vec<String> = self
            .offline_partitions()
            .into_iter()
            .map(|(topic, partition, _)| format!("{topic}-{partition}"))
            .collect();
        if !offline.is_empty() && !at_open {
            tracing::debug!(offline = %offline.join(", "), "InitProducerId refused: producer ids are held back");
            return Ok(false);
        }
        if !offline.is_empty() {
            tracing::warn!(
                offline = %offline.join(", "),
                "producer ids are held back: metadata.json was rebuilt while these partitions were offline, and ids only they remember must not be handed out again; idempotent producers get StorageError until they are online (restore them, run ledge-repair truncate, or delete their topics)"
            );
            return Ok(false);
        }
        self.reserve_producer_ids_after_open().await?;
        producer_id_hold::remove_hold_marker(&self.disk, &self.data_dir).await?;
        self.producer_ids_held.store(false, Ordering::Release);
        tracing::info!("every partition is online: producer ids are handed out again");
        Ok(true)
    }
}
