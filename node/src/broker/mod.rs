//! The broker: topics and partitions over the storage engine, and the request handlers.
//!
//! Owns: the topic registry (backed by `metadata.json`), each partition's log (or why it is
//! offline), producer-id allocation, and the meaning of every API. Does not own: sockets
//! (the transport decodes frames and calls [`Broker::handle`]) or the config file (the
//! node reconciles it through [`Broker::reconcile`]).
//!
//! A produce request is handled per partition concurrently: each batch is checked (CRC,
//! `max.message.bytes`, idempotent sequence) and appended by the partition's writer with
//! the durability `acks` asks for; the answer waits at most `timeout_ms`. A fetch reads
//! whole batches below each high watermark and, if fewer than `min_bytes` are ready,
//! waits for any of the partitions' high watermarks to move, up to `max_wait_ms`.

mod groups;
pub mod metadata;
mod plugins;
mod producer_id_hold;
pub mod registry;
pub mod topic_config;
pub mod transforms;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::join_all;
use ledge_protocol::wire::{
    AlterConfigsRequest, AlterConfigsResponse, ApiVersionsResponse, ConfigDescription,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, ErrorCode, FetchPartitionResponse,
    FetchRequest, FetchResponse, FetchTopicResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopicResponse, MetadataRequest, MetadataResponse, OffsetSpec, PartitionMetadata,
    ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopicResponse, Request, Response, TopicConfigs, TopicMetadata, TopicResult,
};
use ledge_protocol::{BatchHeader, BatchIter, EncodeOptions, decode_batch, encode_batch};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::groups::coordinator::GroupLimits;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::storage::PartitionKey;
use crate::storage::retention::RetentionPolicy;
use crate::storage::{
    AppendDurability, AppendError, Disk, DiskError, LogConfig, PartitionLog, ReadError,
};
use metadata::{MetadataStore, PRODUCER_ID_BLOCK, StoredMetadata, StoredTopic, TopicFiles};
use topic_config::{
    CleanupPolicy, TimestampType, TopicCompression, TopicConfig, validate_topic_name,
};

/// Node-wide broker settings and limits (see docs/OPERATIONS.md).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This node's id in metadata responses.
    pub node_id: u32,
    /// Node-wide log settings (flush interval, group commit size, recovery).
    pub log: LogConfig,
    /// Topic config defaults (Kafka's `log.*` broker settings).
    pub topic_defaults: TopicConfig,
    /// Most partitions one topic may have.
    pub topic_partitions_max: u32,
    /// Most partitions on the node.
    pub partitions_max: u32,
    /// Longest a fetch may wait for data, whatever the client asks.
    pub fetch_wait_max: Duration,
    /// Most bytes one fetch response carries, whatever the client asks.
    pub fetch_bytes_max: u32,
    /// Longest a produce may wait for durability, whatever the client asks.
    pub produce_timeout_max: Duration,
    /// Consumer-group limits.
    pub groups: GroupLimits,
    /// How often retention (`retention.ms`, `retention.bytes`) is enforced and compacted
    /// topics are checked for compaction.
    pub retention_check_interval: Duration,
    /// Bytes of keys one compaction pass may hold (more passes when a range does not fit).
    pub compaction_key_map_bytes_max: usize,
    /// Most bytes per second the background verifier reads from sealed segments
    /// (`log.verify_bytes_per_second`); 0 turns it off.
    pub verify_bytes_per_second: u64,
    /// Produce is refused with `DiskFull` while the logs use more than this many bytes.
    pub disk_usage_bytes_max: Option<u64>,
    /// Produce is refused with `DiskFull` while the data directory's filesystem is fuller
    /// than this percentage.
    pub disk_usage_percent_max: Option<u8>,
    /// Limits on WASM modules and calls.
    pub wasm: crate::wasm::WasmLimits,
    /// Limits and defaults of topic transforms.
    pub transforms: transforms::TransformLimits,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            log: LogConfig::default(),
            topic_defaults: TopicConfig::default(),
            topic_partitions_max: 1024,
            partitions_max: 4096,
            fetch_wait_max: Duration::from_secs(30),
            fetch_bytes_max: 50 * 1024 * 1024,
            produce_timeout_max: Duration::from_secs(300),
            groups: GroupLimits::default(),
            // Kafka checks every 5 minutes; a small edge disk cannot wait that long.
            retention_check_interval: Duration::from_secs(10),
            compaction_key_map_bytes_max: crate::storage::compaction::KEY_MAP_BYTES_MAX_DEFAULT,
            verify_bytes_per_second: VERIFY_BYTES_PER_SECOND_DEFAULT,
            // Off by default: the node cannot know what else shares the disk. ENOSPC is
            // always handled (the append is rolled back and answered DiskFull).
            disk_usage_bytes_max: None,
            disk_usage_percent_max: None,
            wasm: crate::wasm::WasmLimits::default(),
            transforms: transforms::TransformLimits::default(),
        }
    }
}

/// Default of [`BrokerConfig::verify_bytes_per_second`]: 4 MiB/s re-reads 100 GiB of sealed
/// segments about every 7 hours, a small share of even an SD card's read bandwidth.
pub const VERIFY_BYTES_PER_SECOND_DEFAULT: u64 = 4 * 1024 * 1024;

/// What one pass of the background verifier did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyPassReport {
    /// Sealed segments read to the end or to their damage.
    pub segments_checked: usize,
    /// Of those, damaged.
    pub segments_damaged: usize,
    /// Bytes read.
    pub bytes_read: u64,
}

/// A topic declared in the config file, to be reconciled at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredTopic {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Where it was declared (for errors), e.g. `configs/edge.toml line 12`.
    pub origin: String,
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Data directory IO failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// `metadata.json` is damaged or from a newer build.
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    /// A declared topic cannot be reconciled.
    #[error("{0}")]
    Reconcile(String),
    /// `metadata.json` is missing and the topics cannot be rebuilt without guessing.
    #[error("{0}")]
    MetadataLost(String),
    /// The WASM engine could not start.
    #[error("wasm engine: {0}")]
    Wasm(String),
}

enum PartitionState<D: Disk> {
    Online(PartitionLog<D>),
    Offline(String),
}

struct Partition<D: Disk> {
    key: PartitionKey,
    state: RwLock<PartitionState<D>>,
    reopening: AtomicBool,
}

struct Topic<D: Disk> {
    config: RwLock<TopicConfig>,
    partitions: RwLock<Vec<Arc<Partition<D>>>>,
}

struct ProducerIds {
    next: i64,
    reserved_until: i64,
}

/// The broker of one node.
pub struct Broker<D: Disk> {
    disk: D,
    logs_dir: PathBuf,
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic<D>>>>,
    admin: tokio::sync::Mutex<MetadataStore<D>>,
    /// Each topic's definition beside `metadata.json`, written under the `admin` lock.
    topic_files: TopicFiles<D>,
    producer_ids: Mutex<ProducerIds>,
    /// Producer ids are held back after a rebuild with a partition offline (see
    /// `producer_id_hold`).
    producer_ids_held: AtomicBool,
    /// Consumer groups and committed offsets.
    groups: crate::groups::service::GroupService,
    data_dir: PathBuf,
    /// Why produce is refused right now, if the disk guard tripped (see `check_disk_usage`).
    disk_full: RwLock<Option<String>>,
    /// Uploaded modules, instantiated plug-ins and the opened-batch budget.
    plugins: plugins::PluginHost<D>,
    /// Running topic transforms.
    transforms: transforms::TransformRunner,
    /// Topic created, grown or deleted, told after it is durable.
    registry_events: registry::RegistryEvents,
}

/// Partitions of one topic opened at once at start (and when a topic is created or grows).
const PARTITION_OPENS_CONCURRENT: usize = 8;
/// Topics opened at once at start; with the above, up to 64 partitions in flight.
const TOPIC_OPENS_CONCURRENT: usize = 8;

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Never held across an await; poisoning means a panic already reported.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<D: Disk> Partition<D> {
    fn log(&self) -> Result<PartitionLog<D>, (ErrorCode, String)> {
        match &*read(&self.state) {
            PartitionState::Online(log) => Ok(log.clone()),
            PartitionState::Offline(reason) => Err((ErrorCode::PartitionOffline, reason.clone())),
        }
    }
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
) -> Result<(), BrokerError> {
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
        return Err(BrokerError::MetadataLost(format!(
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

impl<D: Disk> Broker<D> {
    /// Opens the data directory: metadata, then every partition. A partition that fails to
    /// open is offline (answered with `PartitionOffline`); the rest serve.
    pub async fn open(
        disk: D,
        data_dir: &Path,
        config: BrokerConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BrokerError> {
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
        let producer_ids_held = producer_id_hold::hold_marker_exists(&disk, data_dir).await?;
        // Every stored partition is opened below: a count no limit allows (a damaged or
        // hand-edited file, or a lowered limit) is refused before anything is touched.
        let stored_partitions: u64 = stored
            .topics
            .values()
            .map(|topic| u64::from(topic.partitions))
            .sum();
        if stored_partitions > u64::from(config.partitions_max) {
            return Err(BrokerError::Reconcile(format!(
                "{} holds {stored_partitions} partitions, more than limits.partitions_max ({}); raise limits.partitions_max to at least {stored_partitions} to open it",
                data_dir.display(),
                config.partitions_max
            )));
        }
        for name in &directories {
            let path = logs_dir.join(name);
            let known = PartitionKey::from_directory_name(name).is_some_and(|key| {
                stored
                    .topics
                    .get(&key.topic)
                    .is_some_and(|topic| key.partition < topic.partitions)
            });
            if !known {
                tracing::warn!(directory = %path.display(), "removing a partition directory of a deleted topic");
                match remove_tree(&disk, &path).await {
                    Err(error) if error.is_read_only() => {}
                    other => other?,
                }
            }
        }
        // A data directory on a read-only filesystem is served for reads (issue 11, data
        // item 9): the writes of this open are skipped, no producer ids are reserved (so
        // none are handed out), and each partition opens read-only.
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
                Err(metadata::MetadataError::Disk(error)) if error.is_read_only() => {
                    tracing::warn!(data_dir = %data_dir.display(), %error, "read-only filesystem: serving reads only; produce is refused");
                    read_only = true;
                }
                Err(error) => return Err(error.into()),
            }
        }

        // Member ids stay unique across restarts without any stored counter.
        let member_salt = u64::try_from(clock.wall_time_ms()).unwrap_or_default();
        let config_groups = config.groups.clone();
        let engine = crate::wasm::WasmEngine::new(config.wasm.clone())
            .map_err(|error| BrokerError::Wasm(error.to_string()))?;
        let modules = crate::wasm::ModuleStore::open(disk.clone(), data_dir, engine).await?;
        let plugins = plugins::PluginHost::new(modules, config.wasm.opened_batch_bytes_max);
        let groups = crate::groups::service::GroupService::new(
            config_groups,
            member_salt,
            Arc::clone(&clock),
        );
        let broker = Self {
            disk,
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
            groups,
            data_dir: data_dir.to_path_buf(),
            disk_full: RwLock::new(None),
            plugins,
            transforms: transforms::TransformRunner::default(),
            registry_events: registry::RegistryEvents::default(),
        };
        let opens = stored.topics.iter().map(|(name, topic)| {
            let broker = &broker;
            async move {
                let config = match TopicConfig::with_overrides(
                    &broker.config.topic_defaults,
                    &topic.configs,
                ) {
                    Ok(config) => config,
                    Err(error) => {
                        tracing::error!(topic = %name, %error, "stored topic config invalid; using defaults");
                        broker.config.topic_defaults.clone()
                    }
                };
                let partitions = broker
                    .open_partitions(name, 0..topic.partitions, &config)
                    .await;
                (name.clone(), config, partitions)
            }
        });
        let opened: Vec<_> = futures_util::stream::iter(opens)
            .buffer_unordered(TOPIC_OPENS_CONCURRENT)
            .collect()
            .await;
        for (name, config, partitions) in opened {
            write(&broker.topics).insert(
                name,
                Arc::new(Topic {
                    config: RwLock::new(config),
                    partitions: RwLock::new(partitions),
                }),
            );
        }
        if !read_only {
            broker.reserve_producer_ids_after_open().await?;
            broker.end_producer_id_hold_if_possible(true).await?;
        }
        if broker.topic(OFFSETS_TOPIC).is_none() {
            if read_only {
                // Creating it could only fail with EROFS, logged as errors: nothing is
                // wrong with the node, it just cannot write.
                tracing::warn!(
                    data_dir = %data_dir.display(),
                    "{OFFSETS_TOPIC} not created: the data directory is read-only; no committed offsets are served and commits fail"
                );
            } else {
                let configs =
                    BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
                if let Err((_, message)) = broker.create_topic(OFFSETS_TOPIC, 1, &configs).await {
                    tracing::error!(%message, "cannot create {OFFSETS_TOPIC}; consumer-group commits will fail");
                }
            }
        }
        // A missing topic was reported just above.
        if broker.topic(OFFSETS_TOPIC).is_some() {
            broker.load_offsets().await;
        }
        broker.check_disk_usage();
        Ok(broker)
    }

    /// Reserves a fresh block of producer ids before any is handed out, above both the stored
    /// reservation and every producer id the opened logs remember. The second bound is what
    /// keeps ids unique when `metadata.json` was lost (or restored from an old copy): an id
    /// a partition still remembers, handed to a new producer, would make that producer's first
    /// batch look like a resend of the old one's, acknowledged and never written.
    async fn reserve_producer_ids_after_open(&self) -> Result<(), BrokerError> {
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
            *self
                .producer_ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = ProducerIds {
                next: i64::MAX,
                reserved_until: i64::MAX,
            };
            return Ok(());
        };
        next_stored.producer_ids_reserved_until = reserved_until;
        store.store(next_stored).await?;
        *self
            .producer_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ProducerIds {
            next,
            reserved_until,
        };
        Ok(())
    }

    async fn open_partitions(
        &self,
        topic: &str,
        range: std::ops::Range<u32>,
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
                if let PartitionState::Offline(reason) = &*read(&partition.state) {
                    offline.push((name.clone(), partition.key.partition, reason.clone()));
                }
            }
        }
        offline
    }

    /// Creates declared topics that are missing, adds partitions and applies config
    /// overrides to existing ones; refuses impossible changes (fewer partitions).
    pub async fn reconcile(&self, declared: &[DeclaredTopic]) -> Result<(), BrokerError> {
        for topic in declared {
            validate_topic_name(&topic.name)
                .map_err(|error| BrokerError::Reconcile(format!("{}: {error}", topic.origin)))?;
            let existing = read(&self.topics).get(&topic.name).cloned();
            match existing {
                None => {
                    self.create_topic(&topic.name, topic.partitions, &topic.configs)
                        .await
                        .map_err(|(_, message)| {
                            BrokerError::Reconcile(format!("{}: {message}", topic.origin))
                        })?;
                    tracing::info!(topic = %topic.name, partitions = topic.partitions, "created declared topic");
                }
                Some(existing) => {
                    let current = read(&existing.partitions).len() as u32;
                    if topic.partitions < current {
                        return Err(BrokerError::Reconcile(format!(
                            "{}: topic {:?} has {current} partitions; the config asks for {}, but partitions can only be added, never removed",
                            topic.origin, topic.name, topic.partitions
                        )));
                    }
                    if topic.partitions > current {
                        self.add_partitions(&topic.name, topic.partitions)
                            .await
                            .map_err(|(_, message)| {
                                BrokerError::Reconcile(format!("{}: {message}", topic.origin))
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
                        self.alter_topic(&topic.name, &changed, &[]).await.map_err(
                            |(_, message)| {
                                BrokerError::Reconcile(format!("{}: {message}", topic.origin))
                            },
                        )?;
                        tracing::info!(topic = %topic.name, ?changed, "applied changed topic configs");
                    }
                }
            }
        }
        Ok(())
    }

    /// Every online partition log of the topics whose config `wanted` accepts, with that
    /// config (taken under the locks, used after them).
    fn online_logs(
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
                if let Ok(log) = partition.log() {
                    logs.push((log, config.clone()));
                }
            }
        }
        logs
    }

    /// Deletes segments past their topic's retention in every partition of every topic with
    /// `cleanup.policy` including `delete`. Returns how many partitions moved their start.
    pub async fn enforce_retention(&self) -> usize {
        let now_ms = self.clock.wall_time_ms();
        let work = self.online_logs(|config| {
            matches!(
                config.cleanup_policy,
                CleanupPolicy::Delete | CleanupPolicy::CompactAndDelete
            )
        });
        let mut moved = 0;
        for (log, config) in work {
            let policy = RetentionPolicy {
                retention: config.retention,
                retention_bytes: config.retention_bytes,
            };
            match log.enforce_retention(now_ms, &policy).await {
                Ok(Some(_)) => moved += 1,
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(directory = %log.directory().display(), %error, "retention failed")
                }
            }
        }
        moved
    }

    /// Compacts every partition of every topic with `cleanup.policy` including `compact`
    /// whose dirty ratio reached `min.cleanable.dirty.ratio`, or whose oldest dirty segment is
    /// older than `max.compaction.lag.ms`. Returns how many partitions were compacted.
    pub async fn enforce_compaction(&self) -> usize {
        let now_ms = self.clock.wall_time_ms();
        let work = self.online_logs(|config| {
            matches!(
                config.cleanup_policy,
                CleanupPolicy::Compact | CleanupPolicy::CompactAndDelete
            )
        });
        let mut compacted = 0;
        for (log, config) in work {
            let (dirty, total) = log.compaction_stats();
            if dirty == 0 || total == 0 {
                continue;
            }
            let ratio_reached = dirty as f64 / total as f64 >= config.min_cleanable_dirty_ratio;
            let overdue = config.max_compaction_lag.is_some_and(|lag| {
                let lag_ms = i64::try_from(lag.as_millis()).unwrap_or(i64::MAX);
                log.segment_infos()
                    .iter()
                    .filter(|segment| !segment.active && !segment.compacted)
                    .filter_map(|segment| segment.max_timestamp_ms)
                    .any(|newest| newest < now_ms.saturating_sub(lag_ms))
            });
            if !(ratio_reached || overdue) {
                continue;
            }
            let policy = crate::storage::compaction::CompactionPolicy {
                delete_retention: config.delete_retention,
                min_compaction_lag: config.min_compaction_lag,
                key_map_bytes_max: self.config.compaction_key_map_bytes_max,
            };
            match log.compact(now_ms, &policy).await {
                Ok(report) if report.segments_rewritten > 0 => compacted += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(directory = %log.directory().display(), %error, "compaction failed")
                }
            }
        }
        compacted
    }

    /// Changes to the topics and their partitions from now on.
    pub fn subscribe_registry_events(
        &self,
    ) -> tokio::sync::broadcast::Receiver<registry::RegistryEvent> {
        self.registry_events.subscribe()
    }

    /// The node's clock: every timer and deadline of the node waits on it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Enforces retention every `retention_check_interval`, and re-checks the disk guard
    /// every second, for as long as the broker lives.
    pub async fn run_retention(self: Arc<Self>) {
        let mut since_retention = Duration::ZERO;
        let step = Duration::from_secs(1).min(self.config.retention_check_interval);
        loop {
            crate::clock::sleep(&*self.clock, step).await;
            since_retention += step;
            if since_retention >= self.config.retention_check_interval {
                since_retention = Duration::ZERO;
                self.enforce_retention().await;
                self.enforce_compaction().await;
            }
            self.check_disk_usage();
        }
    }

    /// Verifies the sealed segments of every online partition, over and over, reading at
    /// most `verify_bytes_per_second` (0: never). The driver of `storage::verify`.
    pub async fn run_verifier(self: Arc<Self>) {
        let rate = self.config.verify_bytes_per_second;
        if rate == 0 {
            return;
        }
        loop {
            let report = self.verify_pass(rate).await;
            if report.bytes_read == 0 {
                // Nothing sealed yet: look again when retention does.
                crate::clock::sleep(&*self.clock, self.config.retention_check_interval).await;
            }
        }
    }

    /// One pass over every sealed segment of every online partition, sleeping after each
    /// read so as to read at most `bytes_per_second` (reading itself takes time too, so the
    /// real rate is lower). Damage is logged and kept by the partition log: `topic
    /// describe` shows it and reads of the damaged range fail with it.
    pub async fn verify_pass(&self, bytes_per_second: u64) -> VerifyPassReport {
        use crate::storage::verify::VerifyStep;
        let rate = bytes_per_second.max(1);
        // One read is at most a second's budget, so the pace stays even.
        let step_bytes = rate.min(self.config.log.recovery_read_bytes as u64).max(1);
        let mut report = VerifyPassReport::default();
        for (log, _) in self.online_logs(|_| true) {
            for mut check in log.sealed_segment_checks() {
                loop {
                    match check.step(step_bytes, self.clock.wall_time_ms()).await {
                        Ok(VerifyStep::Read(bytes)) => {
                            report.bytes_read += bytes;
                            crate::clock::sleep(
                                &*self.clock,
                                Duration::from_secs_f64(bytes as f64 / rate as f64),
                            )
                            .await;
                        }
                        Ok(VerifyStep::Clean) => {
                            report.segments_checked += 1;
                            break;
                        }
                        // Replaced by compaction or removed by retention meanwhile: the
                        // next pass checks what is there then.
                        Ok(VerifyStep::Abandoned) => break,
                        Ok(VerifyStep::Damaged(damage)) => {
                            report.segments_checked += 1;
                            report.segments_damaged += 1;
                            log.report_damage(damage);
                            break;
                        }
                        Err(error) => {
                            tracing::warn!(directory = %log.directory().display(), segment_base = check.segment_base(), %error, "verifier could not read a sealed segment");
                            break;
                        }
                    }
                }
            }
        }
        report
    }

    /// Bytes used by every partition log.
    pub fn log_bytes(&self) -> u64 {
        self.online_logs(|_| true)
            .iter()
            .map(|(log, _)| log.size_bytes())
            .sum()
    }

    /// Trips or resets the disk guard: produce is refused while the logs exceed
    /// `disk_usage_bytes_max` or the filesystem is fuller than `disk_usage_percent_max`.
    /// Reads and retention carry on, so the guard resets itself once retention frees space.
    pub fn check_disk_usage(&self) -> Option<String> {
        let mut reason = None;
        if let Some(limit) = self.config.disk_usage_bytes_max {
            let used = self.log_bytes();
            if used > limit {
                reason = Some(format!(
                    "logs use {used} bytes, over limits.disk_usage_bytes_max ({limit})"
                ));
            }
        }
        if reason.is_none()
            && let Some(limit) = self.config.disk_usage_percent_max
            && let Some(percent) = filesystem_used_percent(&self.data_dir)
            && percent > f64::from(limit)
        {
            reason = Some(format!(
                "the filesystem of {} is {percent:.1}% full, over limits.disk_usage_percent_max ({limit}%)",
                self.data_dir.display()
            ));
        }
        let mut guard = write(&self.disk_full);
        if *guard != reason {
            match &reason {
                Some(why) => {
                    tracing::warn!(reason = %why, "disk guard: refusing produce until space is freed")
                }
                None => tracing::info!("disk guard: space available again; produce resumes"),
            }
            guard.clone_from(&reason);
        }
        reason
    }

    /// Syncs and closes every partition log.
    pub async fn close(&self) {
        self.stop_transforms();
        for (log, _) in self.online_logs(|_| true) {
            if let Err(error) = log.close().await {
                tracing::error!(directory = %log.directory().display(), %error, "closing partition log failed");
            }
        }
    }

    /// Answers one request from a caller without a client id (tests, the bench tools).
    pub async fn handle(&self, request: Request) -> Response {
        self.handle_from("", request).await
    }

    /// Answers one request; `client_id` is the one its request header names (DescribeGroups
    /// reports it for group members).
    pub async fn handle_from(&self, client_id: &str, request: Request) -> Response {
        // One exhaustive match: a new request kind that is not answered here does not compile
        // (it used to fall through to an `unreachable!` a peer's frame could hit).
        match request {
            Request::ApiVersions(_) => Response::ApiVersions(ApiVersionsResponse {
                apis: ledge_protocol::wire::supported_api_versions(),
                node_version: env!("CARGO_PKG_VERSION").to_string(),
                frame_bytes_max: 0,
            }),
            Request::Metadata(request) => Response::Metadata(self.metadata(request)),
            Request::CreateTopics(request) => {
                Response::CreateTopics(self.create_topics(request).await)
            }
            Request::DeleteTopics(request) => {
                Response::DeleteTopics(self.delete_topics(request).await)
            }
            Request::DescribeConfigs(request) => {
                Response::DescribeConfigs(self.describe_configs(request))
            }
            Request::AlterConfigs(request) => {
                Response::AlterConfigs(self.alter_configs(request).await)
            }
            Request::InitProducerId(request) => {
                Response::InitProducerId(self.init_producer_id(request).await)
            }
            Request::Produce(request) => Response::Produce(self.produce(request).await),
            Request::Fetch(request) => Response::Fetch(self.fetch(request).await),
            Request::ListOffsets(request) => {
                Response::ListOffsets(self.list_offsets(request).await)
            }
            Request::UploadModule(request) => {
                Response::UploadModule(self.upload_module(request).await)
            }
            Request::ListModules(_) => Response::ListModules(self.list_modules().await),
            Request::DeleteModule(request) => {
                Response::DeleteModule(self.delete_module(request).await)
            }
            Request::DeployTransform(request) => {
                Response::DeployTransform(self.deploy_transform_request(request).await)
            }
            Request::DescribeTransforms(request) => {
                Response::DescribeTransforms(self.describe_transforms(request).await)
            }
            Request::AlterTransform(request) => {
                Response::AlterTransform(self.alter_transform(request).await)
            }
            Request::ConsumerGroupHeartbeat(request) => {
                Response::ConsumerGroupHeartbeat(self.groups.heartbeat(self, request, client_id))
            }
            Request::OffsetCommit(request) => {
                Response::OffsetCommit(self.groups.offset_commit(self, request).await)
            }
            Request::OffsetFetch(request) => {
                Response::OffsetFetch(self.groups.offset_fetch(request))
            }
            Request::ListGroups(request) => Response::ListGroups(self.groups.list_groups(request)),
            Request::DescribeGroups(request) => {
                Response::DescribeGroups(self.groups.describe_groups(request))
            }
            Request::DeleteGroups(request) => {
                Response::DeleteGroups(self.groups.delete_groups(self, request).await)
            }
        }
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic<D>>> {
        read(&self.topics).get(name).cloned()
    }

    fn partition_count(&self, name: &str) -> u32 {
        self.topic(name)
            .map_or(0, |topic| read(&topic.partitions).len() as u32)
    }

    fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<Partition<D>>, (ErrorCode, String)> {
        let Some(topic_entry) = self.topic(topic) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {topic:?}"),
            ));
        };
        let partitions = read(&topic_entry.partitions);
        partitions.get(partition as usize).cloned().ok_or_else(|| {
            (
                ErrorCode::UnknownTopicOrPartition,
                format!(
                    "topic {topic:?} has {} partitions; there is no partition {partition}",
                    partitions.len()
                ),
            )
        })
    }

    fn metadata(&self, request: MetadataRequest) -> MetadataResponse {
        let topics = read(&self.topics);
        let names: Vec<String> = match request.topics {
            Some(names) => names,
            None => topics.keys().cloned().collect(),
        };
        let topics = names
            .into_iter()
            .map(|name| match topics.get(&name) {
                None => TopicMetadata {
                    error: ErrorCode::UnknownTopicOrPartition,
                    internal: name.starts_with("__"),
                    name,
                    partitions: Vec::new(),
                    partitioner_module: String::new(),
                },
                Some(topic) => TopicMetadata {
                    internal: name.starts_with("__"),
                    partitioner_module: read(&topic.config)
                        .partitioner_module
                        .clone()
                        .unwrap_or_default(),
                    name,
                    error: ErrorCode::None,
                    partitions: read(&topic.partitions)
                        .iter()
                        .map(|partition| match partition.log() {
                            Ok(log) => {
                                let (dirty, sealed) = log.compaction_stats();
                                PartitionMetadata {
                                    partition: partition.key.partition,
                                    error: ErrorCode::None,
                                    log_start_offset: log.log_start_offset(),
                                    high_watermark: log.high_watermark(),
                                    size_bytes: log.size_bytes(),
                                    segment_count: log.segment_count() as u32,
                                    dirty_ratio_per_mille: (dirty * 1000)
                                        .checked_div(sealed)
                                        .map_or(0, |ratio| ratio as u16),
                                    last_compaction_ms: log.last_compaction_ms(),
                                    damage: log
                                        .damage()
                                        .map(|damage| damage.to_string())
                                        .unwrap_or_default(),
                                    record_count: log.record_count(),
                                }
                            }
                            Err((error, reason)) => PartitionMetadata {
                                partition: partition.key.partition,
                                error,
                                log_start_offset: -1,
                                high_watermark: -1,
                                damage: reason,
                                ..PartitionMetadata::default()
                            },
                        })
                        .collect(),
                },
            })
            .collect();
        MetadataResponse {
            node_id: self.config.node_id,
            topics,
        }
    }

    fn check_partition_count(
        &self,
        topic: &str,
        partitions: u32,
        adding: u32,
    ) -> Result<(), (ErrorCode, String)> {
        if partitions == 0 {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("topic {topic:?} needs at least one partition"),
            ));
        }
        if partitions > self.config.topic_partitions_max {
            return Err((
                ErrorCode::InvalidPartitions,
                format!(
                    "{partitions} partitions exceed limits.topic_partitions_max ({})",
                    self.config.topic_partitions_max
                ),
            ));
        }
        let total: usize = read(&self.topics)
            .values()
            .map(|topic| read(&topic.partitions).len())
            .sum();
        if total as u64 + u64::from(adding) > u64::from(self.config.partitions_max) {
            return Err((
                ErrorCode::InvalidPartitions,
                format!(
                    "the node has {total} partitions; {adding} more would exceed limits.partitions_max ({})",
                    self.config.partitions_max
                ),
            ));
        }
        // Each partition holds open files: refuse what RLIMIT_NOFILE cannot hold, rather
        // than fail opens later (issue 11, data item 8).
        crate::storage::disk::descriptors::check_partition_count(total as u64 + u64::from(adding))
            .map_err(|error| (ErrorCode::InvalidPartitions, error.to_string()))?;
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
    ) -> Result<(), metadata::MetadataError> {
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

    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), (ErrorCode, String)> {
        validate_topic_name(name).map_err(|error| (ErrorCode::InvalidTopic, error))?;
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, configs)
            .map_err(|error| (ErrorCode::InvalidConfig, error))?;
        let mut store = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err((
                ErrorCode::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            ));
        }
        plugins::check_module_references(&config, &store.current().modules)
            .map_err(|error| (ErrorCode::InvalidConfig, error))?;
        self.check_partition_count(name, partitions, partitions)?;
        let opened = self.open_partitions(name, 0..partitions, &config).await;
        let stored_topic = StoredTopic {
            partitions,
            configs: configs.clone(),
            created_ms: self.clock.wall_time_ms(),
        };
        let mut next = store.current().clone();
        next.topics.insert(name.to_string(), stored_topic.clone());
        if let Err(error) = self
            .record_topic(&mut store, name, &stored_topic, next)
            .await
        {
            // Not recorded: the directories are leftovers the next start removes.
            for partition in &opened {
                if let Ok(log) = partition.log() {
                    let _ = log.close().await;
                }
            }
            return Err((
                error.error_code(),
                format!("could not record topic {name:?}: {error}"),
            ));
        }
        write(&self.topics).insert(
            name.to_string(),
            Arc::new(Topic {
                config: RwLock::new(config),
                partitions: RwLock::new(opened),
            }),
        );
        // Under the admin lock, so subscribers see changes in the order they were made.
        self.registry_events
            .emit(registry::RegistryEvent::TopicCreated {
                name: name.to_string(),
                partitions,
            });
        drop(store);
        Ok(())
    }

    async fn add_partitions(&self, name: &str, partitions: u32) -> Result<(), (ErrorCode, String)> {
        let mut store = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
        let current = read(&topic.partitions).len() as u32;
        self.check_partition_count(name, partitions, partitions.saturating_sub(current))?;
        let config = read(&topic.config).clone();
        let added = self
            .open_partitions(name, current..partitions, &config)
            .await;
        let mut next = store.current().clone();
        let Some(stored_topic) = next.topics.get_mut(name) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
        stored_topic.partitions = partitions;
        let stored_topic = stored_topic.clone();
        self.record_topic(&mut store, name, &stored_topic, next)
            .await
            .map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record partitions of {name:?}: {error}"),
                )
            })?;
        write(&topic.partitions).extend(added);
        self.registry_events
            .emit(registry::RegistryEvent::PartitionsAdded {
                name: name.to_string(),
                before: current,
                after: partitions,
            });
        drop(store);
        Ok(())
    }

    async fn alter_topic(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), (ErrorCode, String)> {
        let mut store = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
        let mut overrides = read(&topic.config).overrides.clone();
        for key in delete {
            if !topic_config::KEYS.contains(&key.as_str()) {
                return Err((
                    ErrorCode::InvalidConfig,
                    format!(
                        "unknown topic config {key:?}; known keys: {}",
                        topic_config::KEYS.join(", ")
                    ),
                ));
            }
            overrides.remove(key);
        }
        overrides.extend(set.iter().map(|(key, value)| (key.clone(), value.clone())));
        let config = TopicConfig::with_overrides(&self.config.topic_defaults, &overrides)
            .map_err(|error| (ErrorCode::InvalidConfig, error))?;
        plugins::check_module_references(&config, &store.current().modules)
            .map_err(|error| (ErrorCode::InvalidConfig, error))?;
        let mut next = store.current().clone();
        let Some(stored_topic) = next.topics.get_mut(name) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
        stored_topic.configs = overrides;
        let stored_topic = stored_topic.clone();
        self.record_topic(&mut store, name, &stored_topic, next)
            .await
            .map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record configs of {name:?}: {error}"),
                )
            })?;
        let log_config = config.log_config(&self.config.log);
        for partition in read(&topic.partitions).iter() {
            if let Ok(log) = partition.log()
                && let Err(error) = log.set_config(log_config.clone())
            {
                tracing::error!(partition = %partition.key, %error, "could not apply topic config to a live log");
            }
        }
        *write(&topic.config) = config;
        Ok(())
    }

    async fn create_topics(&self, request: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut results = Vec::new();
        for topic in request.topics {
            let configs: BTreeMap<String, String> = topic
                .configs
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect();
            let outcome = if request.validate_only {
                let modules = self.admin.lock().await.current().modules.clone();
                validate_topic_name(&topic.name)
                    .map_err(|error| (ErrorCode::InvalidTopic, error))
                    .and_then(|()| {
                        TopicConfig::with_overrides(&self.config.topic_defaults, &configs)
                            .and_then(|config| plugins::check_module_references(&config, &modules))
                            .map_err(|error| (ErrorCode::InvalidConfig, error))
                    })
                    .and_then(|()| {
                        if self.topic(&topic.name).is_some() {
                            Err((
                                ErrorCode::TopicAlreadyExists,
                                format!("topic {:?} already exists", topic.name),
                            ))
                        } else {
                            self.check_partition_count(
                                &topic.name,
                                topic.partitions,
                                topic.partitions,
                            )
                        }
                    })
            } else if topic.name.starts_with("__") {
                Err((
                    ErrorCode::InvalidTopic,
                    format!(
                        "topic names starting with \"__\" are reserved for internal topics: {:?}",
                        topic.name
                    ),
                ))
            } else {
                self.create_topic(&topic.name, topic.partitions, &configs)
                    .await
            };
            results.push(topic_result(topic.name, outcome));
        }
        CreateTopicsResponse { topics: results }
    }

    async fn delete_topics(&self, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let mut results = Vec::new();
        for name in request.names {
            let outcome = self.delete_topic(&name).await;
            results.push(topic_result(name, outcome));
        }
        DeleteTopicsResponse { topics: results }
    }

    async fn delete_topic(&self, name: &str) -> Result<(), (ErrorCode, String)> {
        if name.starts_with("__") {
            return Err((
                ErrorCode::InternalTopic,
                format!("internal topic {name:?} cannot be deleted"),
            ));
        }
        let mut store = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {name:?}"),
            ));
        };
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
                } else {
                    return None;
                };
                Some(format!("the {role} of transform {transform:?}"))
            })
            .collect();
        if !users.is_empty() {
            return Err((
                ErrorCode::TopicInUse,
                format!(
                    "topic {name:?} is {}; remove the transform first",
                    users.join(" and ")
                ),
            ));
        }
        // Durable first: once metadata.json no longer has the topic, a crash mid-removal is
        // finished at the next start.
        let mut next = store.current().clone();
        next.topics.remove(name);
        store.store(next).await.map_err(|error| {
            (
                error.error_code(),
                format!("could not record the deletion of {name:?}: {error}"),
            )
        })?;
        write(&self.topics).remove(name);
        self.registry_events
            .emit(registry::RegistryEvent::TopicDeleted {
                name: name.to_string(),
            });
        self.groups.remove_topic(name);
        let partitions = read(&topic.partitions).clone();
        for partition in partitions {
            if let Ok(log) = partition.log() {
                let _ = log.close().await;
            }
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

    fn describe_configs(&self, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
        let topics = request
            .topics
            .into_iter()
            .map(|name| match self.topic(&name) {
                None => TopicConfigs {
                    message: format!("unknown topic {name:?}"),
                    name,
                    error: ErrorCode::UnknownTopicOrPartition,
                    configs: Vec::new(),
                },
                Some(topic) => TopicConfigs {
                    name,
                    error: ErrorCode::None,
                    message: String::new(),
                    configs: read(&topic.config)
                        .describe()
                        .into_iter()
                        .map(|(name, value, is_default)| ConfigDescription {
                            name,
                            value,
                            is_default,
                        })
                        .collect(),
                },
            })
            .collect();
        DescribeConfigsResponse { topics }
    }

    async fn alter_configs(&self, request: AlterConfigsRequest) -> AlterConfigsResponse {
        let mut results = Vec::new();
        for topic in request.topics {
            let set: BTreeMap<String, String> = topic
                .set
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect();
            let outcome = if request.validate_only {
                match self.topic(&topic.name) {
                    None => Err((
                        ErrorCode::UnknownTopicOrPartition,
                        format!("unknown topic {:?}", topic.name),
                    )),
                    Some(existing) => {
                        let mut overrides = read(&existing.config).overrides.clone();
                        for key in &topic.delete {
                            overrides.remove(key);
                        }
                        overrides.extend(set);
                        let modules = self.admin.lock().await.current().modules.clone();
                        TopicConfig::with_overrides(&self.config.topic_defaults, &overrides)
                            .and_then(|config| plugins::check_module_references(&config, &modules))
                            .map_err(|error| (ErrorCode::InvalidConfig, error))
                    }
                }
            } else {
                self.alter_topic(&topic.name, &set, &topic.delete).await
            };
            results.push(topic_result(topic.name, outcome));
        }
        AlterConfigsResponse { topics: results }
    }

    async fn init_producer_id(&self, request: InitProducerIdRequest) -> InitProducerIdResponse {
        if request.transactional_id.is_some() {
            return InitProducerIdResponse {
                error: ErrorCode::InvalidRequest,
                producer_id: -1,
                producer_epoch: -1,
            };
        }
        match self.end_producer_id_hold_if_possible(false).await {
            Ok(true) => {}
            Ok(false) => {
                return InitProducerIdResponse {
                    error: ErrorCode::StorageError,
                    producer_id: -1,
                    producer_epoch: -1,
                };
            }
            Err(error) => {
                tracing::error!(%error, "could not end the producer id hold");
                return InitProducerIdResponse {
                    error: ErrorCode::StorageError,
                    producer_id: -1,
                    producer_epoch: -1,
                };
            }
        }
        let needs_block = {
            let ids = self
                .producer_ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ids.next >= ids.reserved_until
        };
        if needs_block {
            let mut store = self.admin.lock().await;
            let mut next: StoredMetadata = store.current().clone();
            let start = next.producer_ids_reserved_until;
            // i64::MAX producer ids are not handed out in the life of a node; refusing beats
            // wrapping to ids that repeat.
            let Some(reserved_until) = start.checked_add(PRODUCER_ID_BLOCK) else {
                tracing::error!(start, "producer ids are exhausted");
                return InitProducerIdResponse {
                    error: ErrorCode::StorageError,
                    producer_id: -1,
                    producer_epoch: -1,
                };
            };
            next.producer_ids_reserved_until = reserved_until;
            if let Err(error) = store.store(next).await {
                tracing::error!(%error, "could not reserve producer ids");
                return InitProducerIdResponse {
                    error: error.error_code(),
                    producer_id: -1,
                    producer_epoch: -1,
                };
            }
            let mut ids = self
                .producer_ids
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if ids.next >= ids.reserved_until {
                ids.next = start;
                ids.reserved_until = reserved_until;
            }
        }
        let mut ids = self
            .producer_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let producer_id = ids.next;
        ids.next += 1;
        InitProducerIdResponse {
            error: ErrorCode::None,
            producer_id,
            producer_epoch: 0,
        }
    }

    async fn produce(&self, request: ProduceRequest) -> ProduceResponse {
        let durability = match request.acks {
            ledge_protocol::wire::Acks::All => AppendDurability::Synced,
            ledge_protocol::wire::Acks::Leader | ledge_protocol::wire::Acks::None => {
                AppendDurability::Written
            }
        };
        let timeout = Duration::from_millis(u64::from(request.timeout_ms))
            .min(self.config.produce_timeout_max);
        let topics = request.topics.into_iter().map(|topic| async move {
            let name = topic.name;
            let partitions =
                join_all(topic.partitions.into_iter().map(|partition| {
                    self.produce_partition(&name, partition, durability, timeout)
                }))
                .await;
            ProduceTopicResponse { name, partitions }
        });
        ProduceResponse {
            topics: join_all(topics).await,
        }
    }

    async fn produce_partition(
        &self,
        topic: &str,
        request: ProducePartition,
        durability: AppendDurability,
        timeout: Duration,
    ) -> ProducePartitionResponse {
        let mut response = ProducePartitionResponse {
            partition: request.partition,
            error: ErrorCode::None,
            message: String::new(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            routed: None,
        };
        let fail = |mut response: ProducePartitionResponse,
                    (code, message): (ErrorCode, String)| {
            response.error = code;
            response.message = message;
            response
        };
        if topic.starts_with("__") {
            return fail(
                response,
                (
                    ErrorCode::InternalTopic,
                    format!("internal topic {topic:?} is written by the node only"),
                ),
            );
        }
        if let Some(reason) = read(&self.disk_full).clone() {
            return fail(
                response,
                (ErrorCode::DiskFull, format!("disk full: {reason}")),
            );
        }
        if request.partition == ledge_protocol::wire::NODE_PARTITIONED {
            let work = self.produce_node_partitioned(topic, request.records, durability);
            return match crate::clock::timeout(&*self.clock, timeout, work).await {
                Ok(Ok((routing, append_time))) => {
                    response.routed = Some(routing);
                    response.log_append_time_ms = append_time.unwrap_or(-1);
                    response
                }
                Ok(Err(error)) => fail(response, error),
                Err(_) => fail(
                    response,
                    (
                        ErrorCode::RequestTimedOut,
                        format!(
                            "not durable within the request timeout of {} ms",
                            timeout.as_millis()
                        ),
                    ),
                ),
            };
        }
        let partition = match self.partition(topic, request.partition) {
            Ok(partition) => partition,
            Err(error) => return fail(response, error),
        };
        let log = match partition.log() {
            Ok(log) => log,
            Err(error) => return fail(response, error),
        };
        let config = match self.topic(topic) {
            Some(topic) => read(&topic.config).clone(),
            None => {
                return fail(
                    response,
                    (
                        ErrorCode::UnknownTopicOrPartition,
                        format!("unknown topic {topic:?}"),
                    ),
                );
            }
        };
        if request.records.is_empty() {
            return fail(
                response,
                (
                    ErrorCode::CorruptMessage,
                    "no record batches in the request".into(),
                ),
            );
        }
        let mut batches = Vec::new();
        for item in BatchIter::new(&request.records) {
            match item {
                Ok((header, bytes)) => batches.push((header, request.records.slice_ref(bytes))),
                Err(error) => {
                    return fail(
                        response,
                        (
                            ErrorCode::CorruptMessage,
                            format!("malformed record batch: {error}"),
                        ),
                    );
                }
            }
        }
        let now_ms = self.clock.wall_time_ms();
        for (header, _) in &batches {
            if let Err(message) = config.check_timestamps(header, now_ms) {
                return fail(response, (ErrorCode::InvalidTimestamp, message));
            }
        }
        let append_time = (config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let work = async {
            let mut first = None;
            let partition_count = self
                .topic(topic)
                .map_or(0, |topic| read(&topic.partitions).len() as u32);
            for (header, batch) in batches {
                let batch = match self.prepare_batch(&header, batch, &config, append_time) {
                    Ok(batch) => batch,
                    Err(error) => return Err(error),
                };
                let (batch, gaps) = match &config.produce_filter_module {
                    Some(filter) => {
                        self.filter_produced_batch(filter, batch, partition_count)
                            .await?
                    }
                    None => (batch, false),
                };
                let appended = if gaps {
                    log.append_with_gaps(batch, durability).await
                } else {
                    log.append(batch, durability).await
                };
                match appended {
                    Ok(outcome) => {
                        first.get_or_insert(outcome.base_offset);
                    }
                    Err(error) => return Err(self.append_failed(&partition, error)),
                }
            }
            Ok(first.unwrap_or(-1))
        };
        match crate::clock::timeout(&*self.clock, timeout, work).await {
            Ok(Ok(base_offset)) => {
                response.base_offset = base_offset;
                response.log_append_time_ms = append_time.unwrap_or(-1);
                response.log_start_offset = log.log_start_offset();
                response
            }
            Ok(Err(error)) => fail(response, error),
            Err(_) => fail(
                response,
                (
                    ErrorCode::RequestTimedOut,
                    format!(
                        "not durable within the request timeout of {} ms",
                        timeout.as_millis()
                    ),
                ),
            ),
        }
    }

    /// Applies the topic's `message.timestamp.type` and `compression.type` to a batch; the
    /// common case (producer's codec, create time) returns it untouched, without a copy.
    fn prepare_batch(
        &self,
        header: &BatchHeader,
        batch: Bytes,
        config: &TopicConfig,
        append_time: Option<i64>,
    ) -> Result<Bytes, (ErrorCode, String)> {
        let wanted = match config.compression {
            TopicCompression::Codec(codec)
                if !header.is_control() && header.compression().ok() != Some(codec) =>
            {
                Some(codec)
            }
            _ => None,
        };
        let mut batch = batch;
        if let Some(codec) = wanted {
            let decoded = decode_batch(&batch, &Default::default()).map_err(|error| {
                (
                    undecodable_batch_code(&error),
                    format!("cannot recompress batch: {error}"),
                )
            })?;
            let records: Vec<_> = decoded
                .records
                .into_iter()
                .map(ledge_protocol::DecodedRecord::into_record)
                .collect();
            if records.is_empty() {
                return Err((ErrorCode::CorruptMessage, "a batch without records".into()));
            }
            let options = EncodeOptions {
                compression: codec,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                timestamp_type: header.timestamp_type(),
                transactional: header.is_transactional(),
                ..EncodeOptions::default()
            };
            batch = encode_batch(&records, &options).map_err(|error| {
                (
                    ErrorCode::CorruptMessage,
                    format!("cannot recompress batch: {error}"),
                )
            })?;
        }
        if let Some(timestamp) = append_time {
            let mut owned = BytesMut::from(&batch[..]);
            ledge_protocol::set_log_append_time(&mut owned, timestamp)
                .map_err(|error| (ErrorCode::CorruptMessage, error.to_string()))?;
            batch = owned.freeze();
        }
        Ok(batch)
    }

    fn append_failed(
        &self,
        partition: &Arc<Partition<D>>,
        error: AppendError,
    ) -> (ErrorCode, String) {
        let code = match &error {
            AppendError::InvalidBatch(_) => ErrorCode::CorruptMessage,
            // Records that do not match their (intact) header: the same bytes will fail
            // again, so the code is not a retriable one.
            AppendError::InvalidRecords(_) => ErrorCode::InvalidRecord,
            AppendError::BatchTooLarge { .. } => ErrorCode::MessageTooLarge,
            AppendError::Disk(disk) if disk.is_out_of_space() => ErrorCode::DiskFull,
            AppendError::Disk(_) => ErrorCode::StorageError,
            AppendError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
            AppendError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            AppendError::UnknownProducer { .. } => ErrorCode::UnknownProducerId,
            AppendError::Fenced { .. } => {
                self.reopen_in_background(partition);
                ErrorCode::StorageError
            }
            AppendError::Closed => ErrorCode::ShuttingDown,
        };
        (code, error.to_string())
    }

    /// A fenced log is reopened with full verification once; on failure it goes offline.
    fn reopen_in_background(&self, partition: &Arc<Partition<D>>) {
        if partition.reopening.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(log) = partition.log() else {
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
            *write(&partition.state) = state;
            partition.reopening.store(false, Ordering::SeqCst);
        });
    }

    async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let plugin = match self.fetch_plugin(&request.plugin).await {
            Ok(plugin) => plugin,
            Err((error, message)) => {
                tracing::debug!(%message, "fetch plug-in refused");
                return FetchResponse {
                    error,
                    message,
                    topics: Vec::new(),
                };
            }
        };
        let max_bytes = request.max_bytes.min(self.config.fetch_bytes_max) as usize;
        let wait =
            Duration::from_millis(u64::from(request.max_wait_ms)).min(self.config.fetch_wait_max);
        let deadline = crate::clock::deadline_after(self.clock.now(), wait);
        loop {
            // Subscribe before reading, so an append between the read and the wait wakes us.
            let mut watches: Vec<watch::Receiver<i64>> = Vec::new();
            let mut total = 0usize;
            let mut any_error = false;
            let mut topics = Vec::new();
            for topic in &request.topics {
                let mut partitions = Vec::new();
                for wanted in &topic.partitions {
                    let mut response = FetchPartitionResponse {
                        partition: wanted.partition,
                        error: ErrorCode::None,
                        message: String::new(),
                        high_watermark: -1,
                        log_start_offset: -1,
                        records: Bytes::new(),
                    };
                    let log = match self
                        .partition(&topic.name, wanted.partition)
                        .and_then(|partition| partition.log())
                    {
                        Ok(log) => log,
                        Err((code, _)) => {
                            response.error = code;
                            any_error = true;
                            partitions.push(response);
                            continue;
                        }
                    };
                    watches.push(log.subscribe_high_watermark());
                    let budget =
                        (wanted.partition_max_bytes as usize).min(max_bytes.saturating_sub(total));
                    if budget == 0 && total > 0 {
                        response.high_watermark = log.high_watermark();
                        response.log_start_offset = log.log_start_offset();
                        partitions.push(response);
                        continue;
                    }
                    match log.read(wanted.fetch_offset, budget.max(1)).await {
                        Ok(read) => {
                            total += read.bytes.len();
                            response.high_watermark = read.high_watermark;
                            response.log_start_offset = read.log_start_offset;
                            response.records = read.bytes;
                            if let Some(plugin) = &plugin
                                && !response.records.is_empty()
                            {
                                let partition_count = self.partition_count(&topic.name);
                                match self
                                    .apply_fetch_plugin(
                                        plugin,
                                        std::mem::take(&mut response.records),
                                        wanted.partition,
                                        partition_count,
                                    )
                                    .await
                                {
                                    Ok(records) => response.records = records,
                                    Err((error, message)) => {
                                        response.error = error;
                                        response.message = message;
                                        any_error = true;
                                    }
                                }
                            }
                        }
                        Err(ReadError::OffsetOutOfRange {
                            log_start_offset,
                            high_watermark,
                            ..
                        }) => {
                            response.error = ErrorCode::OffsetOutOfRange;
                            response.high_watermark = high_watermark;
                            response.log_start_offset = log_start_offset;
                            any_error = true;
                        }
                        Err(error) => {
                            tracing::error!(topic = %topic.name, partition = wanted.partition, %error, "fetch read failed");
                            response.error = match error {
                                ReadError::Corrupt { .. } => ErrorCode::DataDamaged,
                                _ => ErrorCode::StorageError,
                            };
                            response.message = error.to_string();
                            any_error = true;
                        }
                    }
                    partitions.push(response);
                }
                topics.push(FetchTopicResponse {
                    name: topic.name.clone(),
                    partitions,
                });
            }
            let enough = total >= (request.min_bytes as usize).max(1) || any_error;
            if enough || self.clock.now() >= deadline || watches.is_empty() {
                return FetchResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                    topics,
                };
            }
            let changed = futures_util::future::select_all(
                watches.iter_mut().map(|watch| Box::pin(watch.changed())),
            );
            if crate::clock::timeout_at(&*self.clock, deadline, changed)
                .await
                .is_err()
            {
                return FetchResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                    topics,
                };
            }
        }
    }

    async fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut topics = Vec::new();
        for topic in request.topics {
            let mut partitions = Vec::new();
            for wanted in topic.partitions {
                let mut response = ListOffsetsPartitionResponse {
                    partition: wanted.partition,
                    error: ErrorCode::None,
                    offset: None,
                    timestamp: None,
                };
                match self
                    .partition(&topic.name, wanted.partition)
                    .and_then(|partition| partition.log())
                {
                    Err((code, _)) => response.error = code,
                    Ok(log) => match wanted.spec {
                        OffsetSpec::Earliest => response.offset = Some(log.log_start_offset()),
                        OffsetSpec::Latest => response.offset = Some(log.high_watermark()),
                        OffsetSpec::Timestamp(timestamp) => {
                            match log.offset_for_timestamp(timestamp).await {
                                Ok(found) => {
                                    response.offset = found.map(|(offset, _)| offset);
                                    response.timestamp = found.map(|(_, timestamp)| timestamp);
                                }
                                Err(error) => {
                                    tracing::error!(topic = %topic.name, partition = wanted.partition, %error, "offset lookup failed");
                                    response.error = ErrorCode::StorageError;
                                }
                            }
                        }
                    },
                }
                partitions.push(response);
            }
            topics.push(ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
            });
        }
        ListOffsetsResponse { topics }
    }
}

/// How full the filesystem holding `path` is, from statvfs; `None` if it cannot be read.
fn filesystem_used_percent(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `text` is a NUL-terminated path and `stats` points at writable memory the size
    // of a statvfs; the result is only read after statvfs reports success.
    let result = unsafe { libc::statvfs(text.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    let total = stats.f_blocks as f64;
    if total <= 0.0 {
        return None;
    }
    Some((total - stats.f_bavail as f64) / total * 100.0)
}

fn topic_result(name: String, outcome: Result<(), (ErrorCode, String)>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name,
            error: ErrorCode::None,
            message: String::new(),
        },
        Err((error, message)) => TopicResult {
            name,
            error,
            message,
        },
    }
}

/// The error code for a produced batch a node path could not decode: damaged in transit
/// (`CorruptMessage`, retriable) if its framing or CRC fails, otherwise written that way by
/// the producer (`InvalidRecord`, as `PartitionLog::append` answers it), which a retry
/// cannot fix.
pub(crate) fn undecodable_batch_code(error: &ledge_protocol::DecodeError) -> ErrorCode {
    match error {
        ledge_protocol::DecodeError::Batch(_) => ErrorCode::CorruptMessage,
        _ => ErrorCode::InvalidRecord,
    }
}

#[cfg(test)]
mod produce_fuzz_tests;
#[cfg(test)]
mod read_only_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wasm_tests;
