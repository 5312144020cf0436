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

mod dispatch;
mod groups;
pub mod metadata;
mod plugins;
mod producer_id_hold;
pub mod registry;
pub mod topic_config;
pub mod transforms;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use ledge_protocol::wire::{
    AlterConfigsRequest, AlterConfigsResponse, ApiVersionsResponse, ConfigDescription,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, ErrorCode, FetchPartitionResponse,
    FetchRequest, FetchResponse, FetchTopicResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopicResponse, MetadataRequest, MetadataResponse, OffsetSpec, PartitionMetadata,
    ProducePartition, ProducePartitionResponse, ProduceRequest, ProduceResponse,
    ProduceTopicResponse, Request, Response, TopicConfigs, TopicMetadata,
};
use ledge_protocol::{BatchHeader, BatchIter, EncodeOptions, decode_batch, encode_batch};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::groups::coordinator::{GroupCoordinator, GroupLimits};
use crate::groups::offsets::{OFFSETS_TOPIC, OffsetStore};
use crate::storage::retention::RetentionPolicy;
use crate::storage::{
    AppendDurability, AppendError, Disk, DiskError, LogConfig, PartitionLog, ReadError,
};
use metadata::MetadataStore;
// The WASM tests build stored topics by hand.
#[cfg(test)]
use metadata::StoredTopic;
use topic_config::{CleanupPolicy, TimestampType, TopicCompression, TopicConfig};

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
    /// The topic registry could not open the data directory.
    #[error(transparent)]
    Registry(#[from] registry::RegistryOpenError),
    /// A topic declared in the config file cannot be reconciled.
    #[error(transparent)]
    DeclaredTopic(#[from] registry::ReconcileError),
    /// A transform declared in the config file cannot be reconciled.
    #[error("{0}")]
    Reconcile(String),
    /// The WASM engine could not start.
    #[error("wasm engine: {0}")]
    Wasm(String),
}

/// The broker of one node: a router over its services. The topic registry owns topics,
/// partitions, configs, `metadata.json` and producer ids; the request handlers look
/// partitions up there; groups, plug-ins and transforms keep their own state below.
pub struct Broker<D: Disk> {
    disk: D,
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
    /// Topics, partitions, configs, `metadata.json`, producer ids.
    registry: registry::TopicRegistry<D>,
    /// The registry's topic map, read under its lock by the group, plug-in and transform
    /// code.
    topics: Arc<registry::TopicMap<D>>,
    /// The registry's `metadata.json`, which also stores modules and transforms.
    admin: Arc<tokio::sync::Mutex<MetadataStore<D>>>,
    groups: Mutex<GroupCoordinator>,
    offsets: Mutex<OffsetStore>,
    data_dir: PathBuf,
    /// Why produce is refused right now, if the disk guard tripped (see `check_disk_usage`).
    disk_full: RwLock<Option<String>>,
    /// Uploaded WASM modules and their compiled forms.
    modules: crate::wasm::ModuleStore<D>,
    /// Instantiated plug-ins for fetches and produce hooks, by module, kind and parameters.
    plugins: Mutex<std::collections::HashMap<String, Arc<crate::wasm::Plugin>>>,
    /// Bytes plug-in calls may hold opened, node-wide (`wasm.opened_batch_bytes_max`).
    opened_batch_budget: plugins::OpenedBatchBudget,
    /// Running topic transforms.
    transforms: Mutex<BTreeMap<String, transforms::RunningTransform>>,
    /// Set by `start_transforms`: lets request handlers spawn transform tasks.
    self_ref: std::sync::OnceLock<std::sync::Weak<Self>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // Never held across an await; poisoning means a panic already reported.
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let registry = registry::TopicRegistry::open(
            disk.clone(),
            data_dir,
            registry::RegistryConfig {
                log: config.log.clone(),
                topic_defaults: config.topic_defaults.clone(),
                topic_partitions_max: config.topic_partitions_max,
                partitions_max: config.partitions_max,
            },
            Arc::clone(&clock),
        )
        .await?;
        let read_only = registry.read_only();
        // Member ids stay unique across restarts without any stored counter.
        let member_salt = u64::try_from(clock.wall_time_ms()).unwrap_or_default();
        let config_groups = config.groups.clone();
        let engine = crate::wasm::WasmEngine::new(config.wasm.clone())
            .map_err(|error| BrokerError::Wasm(error.to_string()))?;
        let modules = crate::wasm::ModuleStore::open(disk.clone(), data_dir, engine).await?;
        let opened_batch_budget =
            plugins::OpenedBatchBudget::new(config.wasm.opened_batch_bytes_max);
        let broker = Self {
            disk,
            clock,
            config,
            topics: Arc::clone(&registry.topics),
            admin: Arc::clone(&registry.admin),
            registry,
            groups: Mutex::new(GroupCoordinator::new(config_groups, member_salt)),
            offsets: Mutex::new(OffsetStore::default()),
            data_dir: data_dir.to_path_buf(),
            disk_full: RwLock::new(None),
            modules,
            plugins: Mutex::new(std::collections::HashMap::new()),
            opened_batch_budget,
            transforms: Mutex::new(BTreeMap::new()),
            self_ref: std::sync::OnceLock::new(),
        };
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
                if let Err(error) = broker
                    .registry
                    .create_topic(OFFSETS_TOPIC, 1, &configs)
                    .await
                {
                    tracing::error!(%error, "cannot create {OFFSETS_TOPIC}; consumer-group commits will fail");
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

    /// Partitions that could not be opened, with the reason (naming file and position).
    pub fn offline_partitions(&self) -> Vec<(String, u32, String)> {
        self.registry.offline_partitions()
    }

    /// Creates declared topics that are missing, adds partitions and applies config
    /// overrides to existing ones; refuses impossible changes (fewer partitions).
    pub async fn reconcile(&self, declared: &[DeclaredTopic]) -> Result<(), BrokerError> {
        Ok(self.registry.reconcile(declared).await?)
    }

    /// Every online partition log of the topics whose config `wanted` accepts, with that
    /// config (taken under the locks, used after them).
    fn online_logs(
        &self,
        wanted: impl Fn(&TopicConfig) -> bool,
    ) -> Vec<(PartitionLog<D>, TopicConfig)> {
        self.registry.online_logs(wanted)
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
        self.registry.subscribe()
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

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response {
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
                Response::ConsumerGroupHeartbeat(self.heartbeat(request))
            }
            Request::OffsetCommit(request) => {
                Response::OffsetCommit(self.offset_commit(request).await)
            }
            Request::OffsetFetch(request) => Response::OffsetFetch(self.offset_fetch(request)),
            Request::ListGroups(request) => Response::ListGroups(self.list_groups(request)),
            Request::DescribeGroups(request) => {
                Response::DescribeGroups(self.describe_groups(request))
            }
            Request::DeleteGroups(request) => {
                Response::DeleteGroups(self.delete_groups(request).await)
            }
        }
    }

    /// The topic of that name (for the group, plug-in and transform code).
    fn topic(&self, name: &str) -> Option<Arc<registry::Topic<D>>> {
        self.registry.topic(name)
    }

    /// How many partitions the topic has; 0 if there is no such topic.
    fn partition_count(&self, name: &str) -> u32 {
        self.registry.partition_count(name)
    }

    /// One partition, with the wire code for the group, plug-in and transform code that
    /// still speaks `(ErrorCode, String)`.
    fn partition(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Arc<registry::Partition<D>>, (ErrorCode, String)> {
        self.registry
            .partition(topic, partition)
            .map_err(|error| (dispatch::lookup_code(&error), error.to_string()))
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

    async fn create_topics(&self, request: CreateTopicsRequest) -> CreateTopicsResponse {
        let mut results = Vec::new();
        for topic in request.topics {
            let configs: BTreeMap<String, String> = topic
                .configs
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect();
            let outcome = if request.validate_only {
                self.registry
                    .validate_create(&topic.name, topic.partitions, &configs)
                    .await
            } else if topic.name.starts_with("__") {
                Err(registry::CreateTopicError::Reserved {
                    topic: topic.name.clone(),
                })
            } else {
                self.registry
                    .create_topic(&topic.name, topic.partitions, &configs)
                    .await
            };
            results.push(dispatch::topic_result(
                topic.name,
                outcome.map_err(|error| dispatch::create_topic_wire(&error)),
            ));
        }
        CreateTopicsResponse { topics: results }
    }

    async fn delete_topics(&self, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let mut results = Vec::new();
        for name in request.names {
            let outcome = self.delete_topic(&name).await;
            results.push(dispatch::topic_result(
                name,
                outcome.map_err(|error| dispatch::delete_topic_wire(&error)),
            ));
        }
        DeleteTopicsResponse { topics: results }
    }

    /// Creates a topic, with the wire code for the transform code that still speaks
    /// `(ErrorCode, String)`.
    async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), (ErrorCode, String)> {
        self.registry
            .create_topic(name, partitions, configs)
            .await
            .map_err(|error| dispatch::create_topic_wire(&error))
    }

    /// Deletes a topic from the registry, then the committed offsets of its partitions.
    async fn delete_topic(&self, name: &str) -> Result<(), registry::DeleteTopicError> {
        self.registry.delete_topic(name).await?;
        self.offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove_topic(name);
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
                self.registry
                    .validate_alter(&topic.name, &set, &topic.delete)
                    .await
            } else {
                self.registry
                    .alter_topic(&topic.name, &set, &topic.delete)
                    .await
            };
            results.push(dispatch::topic_result(
                topic.name,
                outcome.map_err(|error| dispatch::alter_topic_wire(&error)),
            ));
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
        match self.registry.allocate_producer_id().await {
            Ok(producer_id) => InitProducerIdResponse {
                error: ErrorCode::None,
                producer_id,
                producer_epoch: 0,
            },
            Err(error) => {
                if !matches!(error, registry::ProducerIdError::Held) {
                    tracing::error!(%error, "no producer id handed out");
                }
                InitProducerIdResponse {
                    error: dispatch::producer_id_code(&error),
                    producer_id: -1,
                    producer_epoch: -1,
                }
            }
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
        partition: &Arc<registry::Partition<D>>,
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
    fn reopen_in_background(&self, partition: &Arc<registry::Partition<D>>) {
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
                    registry::PartitionState::Online(fresh)
                }
                Err(error) => {
                    tracing::error!(partition = %partition.key, %error, "fenced partition failed verification; offline");
                    registry::PartitionState::Offline(error.to_string())
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
