//! The broker: a router over the node's services, each with its own state and errors.
//!
//! - `registry/` ([`registry::TopicRegistry`]): topics, partitions, configs,
//!   `metadata.json` (with named modules and transform definitions) and the topic files,
//!   producer ids; emits [`registry::RegistryEvent`]s. Its state is private: the other
//!   services call its methods.
//! - `data_path.rs` (`DataPath`), with `produce.rs` and `fetch.rs`: the data path over the
//!   registry's partition logs; `sequencing.rs`: when a produce is sequenced (queued in
//!   order in its partitions' writers), for callers that pipeline produces.
//! - `maintenance.rs`: retention, compaction, the disk guard and the background verifier.
//! - `groups.rs` (the `GroupHost` handle, implemented by the registry, that the group
//!   service `groups/service.rs` reaches the node through), `plugins.rs` ([`PluginHost`]:
//!   named modules and plug-in calls), `transforms/` ([`TransformRunner`]: transform admin
//!   and tasks): consumer groups, WASM plug-ins, transforms. The services hold `Arc`
//!   handles to what they use (the registry, the plug-in host, the group service, the
//!   clock), never the broker.
//! - `cluster_view.rs`: the cluster as clients see it (nodes, controller, each partition's
//!   leader, replicas and ISR) and the replication checks; a one-node cluster today.
//! - `dispatch.rs`: [`Broker::handle`] maps each request to its service and turns each
//!   service's error enum into the wire `ErrorCode`, in one place.
//!
//! Does not own: sockets (the transport decodes frames and calls [`Broker::handle`]) or
//! the config file (the node reconciles it through [`Broker::reconcile`]).
//!
//! [`PluginHost`]: plugins::PluginHost
//! [`TransformRunner`]: transforms::TransformRunner

pub mod authorize;
pub(crate) mod client_text;
mod cluster_ops;
pub mod cluster_view;
pub mod console;
pub mod create_partitions;
mod data_path;
pub(crate) mod dispatch;
mod fetch;
pub(crate) mod groups;
pub mod log_edges;
mod maintenance;
pub mod materialize;
pub mod metadata;
mod observe;
pub mod plugin_cluster;
pub mod plugins;
mod produce;
mod producer_id_hold;
mod quota_admin;
pub mod registry;
mod replication;
mod security_admin;
pub mod sequencing;
pub mod snapshot;
pub mod topic_config;
pub mod transforms;

pub use fetch::FetchError;
pub use maintenance::{VERIFY_BYTES_PER_SECOND_DEFAULT, VerifyPassReport, filesystem_bytes};
pub use plugins::{
    FetchPluginError, MalformedProducedBatch, ModuleError, ModuleReferenceError, NamedPluginError,
    PartitionerError, PluginError, ProduceFilterError,
};
pub use produce::{PrepareError, ProduceError};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::clock::Clock;
use crate::groups::coordinator::GroupLimits;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::storage::{Disk, DiskError, LogConfig, PartitionLog};
// The WASM tests build stored topics and parse batch headers by hand.
#[cfg(test)]
use ledge_protocol::BatchHeader;
#[cfg(test)]
use metadata::StoredTopic;
use topic_config::TopicConfig;

/// Node-wide broker settings and limits (see docs/OPERATIONS.md).
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// This node's id in metadata responses.
    pub node_id: u32,
    /// `host:port` clients reach this node at, as Metadata and DescribeCluster list it (the
    /// bound listener address; empty in tests that never listen).
    pub advertised_address: String,
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
    /// Longest a DeleteRecords may wait for the followers' log starts (the low watermark),
    /// whatever the client asks.
    pub delete_records_timeout_max: Duration,
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
    /// Where plug-in work (compiles, instantiations, guest calls) runs: tokio's blocking
    /// pool in the node, inline in the simulator (`sim/node.rs`). Not a config-file key.
    pub plugin_executor: crate::wasm::PluginExecutor,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertised_address: String::new(),
            log: LogConfig::default(),
            topic_defaults: TopicConfig::default(),
            topic_partitions_max: 1024,
            partitions_max: 4096,
            fetch_wait_max: Duration::from_secs(30),
            fetch_bytes_max: 50 * 1024 * 1024,
            produce_timeout_max: Duration::from_secs(300),
            delete_records_timeout_max: Duration::from_secs(300),
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
            plugin_executor: crate::wasm::PluginExecutor::BlockingPool,
        }
    }
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
    #[error("{origin}: {source}")]
    DeclaredTransform {
        /// Where it was declared.
        origin: String,
        /// Why it was not deployed.
        source: transforms::DeployTransformError,
    },
    /// The WASM engine could not start.
    #[error("wasm engine: {0}")]
    Wasm(crate::wasm::WasmError),
}

/// The broker of one node: a router over its services. The topic registry owns topics,
/// partitions, configs, `metadata.json` and producer ids; the request handlers look
/// partitions up there; groups, plug-ins and transforms keep their own state below.
pub struct Broker<D: Disk> {
    clock: Arc<dyn Clock>,
    config: BrokerConfig,
    /// Topics, partitions, configs, `metadata.json` (with modules and transforms),
    /// producer ids.
    registry: Arc<registry::TopicRegistry<D>>,
    /// Consumer groups and committed offsets.
    groups: Arc<crate::groups::service::GroupService>,
    /// Whether produce is refused for lack of space, and why (see `check_disk_usage`).
    disk_guard: Arc<maintenance::DiskGuard>,
    /// Produce, fetch and list offsets.
    data: data_path::DataPath<D>,
    /// Uploaded modules, instantiated plug-ins and the opened-batch budget.
    plugins: Arc<plugins::PluginHost<D>>,
    /// Topic transforms: their definitions' admin and their running tasks.
    transforms: transforms::TransformRunner<D>,
    /// The controller's metadata image, once a `[cluster]` node started its controller
    /// (`cluster_view.rs`); unset on a one-node node.
    cluster_source: std::sync::OnceLock<cluster_view::ClusterSource>,
    /// Topics the config file declares (`[[topic]]`), by name: where, and with how many
    /// partitions. Their counts are the file's, so CreatePartitions refuses them (a count
    /// grown over the wire would make the next start refuse the file as a shrink).
    declared_topics: std::sync::Mutex<BTreeMap<String, (String, u32)>>,
    /// The security store and whether requests are checked against its ACLs, shared with
    /// the transform runner (a transform runs with its deployer's permissions).
    policy: Arc<authorize::AccessPolicy>,
    /// The audit log (`security/audit.rs`), installed by the node at start; unset in tests
    /// and the simulator (audit events then go to the node's log only).
    audit: std::sync::OnceLock<Arc<crate::security::audit::AuditLog>>,
    /// Snapshots running now, with their progress (`snapshot.rs`).
    snapshots: snapshot::RunningSnapshots,
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
        let registry = Arc::new(registry);
        // Member ids stay unique across restarts without any stored counter.
        let member_salt = u64::try_from(clock.wall_time_ms()).unwrap_or_default();
        let config_groups = config.groups.clone();
        let engine = crate::wasm::WasmEngine::new(config.wasm.clone())
            .map_err(BrokerError::Wasm)?
            .with_executor(config.plugin_executor);
        let modules = crate::wasm::ModuleStore::open(disk.clone(), data_dir, engine).await?;
        let plugins = Arc::new(plugins::PluginHost::new(
            modules,
            Arc::clone(&registry),
            Arc::clone(&clock),
            config.wasm.clone(),
        ));
        let groups = Arc::new(crate::groups::service::GroupService::new(
            config_groups,
            member_salt,
            Arc::clone(&clock),
        ));
        let policy = Arc::new(authorize::AccessPolicy::default());
        let transforms = transforms::TransformRunner::new(
            Arc::clone(&registry),
            Arc::clone(&plugins),
            Arc::clone(&groups),
            Arc::clone(&clock),
            config.transforms.clone(),
            config.node_id,
            Arc::clone(&policy),
        );
        let disk_guard = Arc::new(maintenance::DiskGuard::new(
            data_dir,
            config.disk_usage_bytes_max,
            config.disk_usage_percent_max,
        ));
        let data = data_path::DataPath {
            registry: Arc::clone(&registry),
            plugins: Arc::clone(&plugins),
            disk_guard: Arc::clone(&disk_guard),
            clock: Arc::clone(&clock),
            limits: data_path::DataPathLimits {
                produce_timeout_max: config.produce_timeout_max,
                fetch_wait_max: config.fetch_wait_max,
                fetch_bytes_max: config.fetch_bytes_max,
            },
            replication: std::sync::OnceLock::new(),
        };
        let broker = Self {
            clock,
            config,
            registry,
            groups,
            disk_guard,
            data,
            plugins,
            transforms,
            cluster_source: std::sync::OnceLock::new(),
            declared_topics: std::sync::Mutex::new(BTreeMap::new()),
            policy,
            audit: std::sync::OnceLock::new(),
            snapshots: snapshot::RunningSnapshots::default(),
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

    /// How many topics the node holds and their partitions, internal ones included (the
    /// start-up summary line).
    pub fn topic_and_partition_counts(&self) -> (usize, u64) {
        let names = self.registry.topic_names();
        let partitions = names
            .iter()
            .map(|name| u64::from(self.registry.partition_count(name)))
            .sum();
        (names.len(), partitions)
    }

    /// Creates declared topics that are missing, adds partitions and applies config
    /// overrides to existing ones; refuses impossible changes (fewer partitions).
    pub async fn reconcile(&self, declared: &[DeclaredTopic]) -> Result<(), BrokerError> {
        *self
            .declared_topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = declared
            .iter()
            .map(|topic| (topic.name.clone(), (topic.origin.clone(), topic.partitions)))
            .collect();
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

    /// The plug-in host: named modules (upload, list, delete) and plug-in calls.
    pub fn plugins(&self) -> &plugins::PluginHost<D> {
        &self.plugins
    }

    /// Installs the security store (once; a second store is ignored).
    pub fn set_security_store(&self, store: Arc<crate::security::store::SecurityStore>) {
        let _ = self.policy.security.set(store);
    }

    /// Turns authorization on (once; the node does it at start when `[security]
    /// authorization` resolves to on): from now on every request is checked against the
    /// security store's ACLs, with `config`'s super users (the store's own settings decide
    /// when the store is installed; `config` decides while none is, denying all else).
    pub fn enforce_authorization(&self, config: crate::security::acl::AuthorizerConfig) {
        let _ = self.policy.authorization.set(config);
    }

    /// What a request from `identity` may do, as of now: every check allows while
    /// authorization is off; with it on, checks read the ACLs (see `security/access.rs`).
    pub fn access(
        &self,
        identity: &crate::security::identity::ClientIdentity,
    ) -> crate::security::access::Access {
        let access = self.policy.access(identity);
        access.with_audit(self.audit.get().cloned())
    }

    /// Installs the audit log (once; a second is ignored): denials, administrative changes
    /// and the listeners' authentication failures are recorded there from now on.
    pub fn set_audit_log(&self, audit: Arc<crate::security::audit::AuditLog>) {
        let _ = self.audit.set(audit);
    }

    /// The audit log, once installed.
    pub fn audit_log(&self) -> Option<&Arc<crate::security::audit::AuditLog>> {
        self.audit.get()
    }

    /// The security store, once installed: credentials for SASL, the authorizer.
    pub fn security_store(&self) -> Option<&Arc<crate::security::store::SecurityStore>> {
        self.policy.security.get()
    }

    /// The transform runner: deploy, alter, describe, reconcile and run transforms.
    pub fn transforms(&self) -> &transforms::TransformRunner<D> {
        &self.transforms
    }

    /// Stops the transforms, then syncs and closes every partition log.
    pub async fn close(&self) {
        self.transforms.stop();
        for (log, _) in self.online_logs(|_| true) {
            if let Err(error) = log.close().await {
                tracing::error!(directory = %log.directory().display(), %error, "closing partition log failed");
            }
        }
    }

    /// The topic of that name (for the group, plug-in and transform code).
    fn topic(&self, name: &str) -> Option<Arc<registry::Topic<D>>> {
        self.registry.topic(name)
    }
}

#[cfg(test)]
mod authorize_tests;
#[cfg(test)]
mod client_text_tests;
#[cfg(test)]
mod cluster_view_tests;
#[cfg(test)]
mod create_partitions_tests;
#[cfg(test)]
mod join_transform_tests;
#[cfg(test)]
mod produce_fuzz_tests;
#[cfg(test)]
mod read_only_tests;
#[cfg(test)]
mod stateful_restore_tests;
#[cfg(test)]
mod stateful_transform_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wasm_tests;
#[cfg(test)]
mod windowed_transform_tests;
