//! Topic transforms: a WASM module running continuously in the node from an input topic to
//! an output topic.
//!
//! One task per input partition reads whole batches from its position, runs the module
//! (one guest call per batch of up to `wasm.batch_records_max` records), appends the output
//! with `acks=all` to the output partition (the same number modulo the output's partition
//! count, or the partition a partitioner module picks), and then commits its position in
//! `__consumer_offsets` under the group `__transform.<name>` (written, synced within
//! `flush.interval`). A crash between the output append and the commit's sync re-runs those
//! batches after restart: at-least-once, never a loss.
//!
//! Failures: a record the module reports as failed (an ERROR entry) and a batch whose call
//! fails (trap, fuel, memory, malformed output) follow `on_error`. With `dead-letter` or
//! `skip` a failed batch is split in halves until the failing records are alone; each goes
//! to the dead-letter topic (with headers naming the transform, source and error) or is
//! skipped, and the rest flows on. With `stop` the transform stops before the batch, with
//! the error visible. A transform whose failure rate stays above
//! `transforms.breaker_error_ratio` is paused by a circuit breaker, with the reason kept
//! in `metadata.json` so a restart does not resume a poisoned pipeline by itself.
//!
//! Deploying a new version of a running transform swaps the plug-in at the next batch
//! boundary; positions are kept, so no record is skipped or lost.
//!
//! Files: this one holds the admin API (deploy, alter, describe, reconcile), the limits and
//! the `TransformRunner` with its driver; `task.rs` a partition's task (read, run, write,
//! commit); `route.rs` where outcomes go (pure); `bisect.rs` the isolation of failing records.

mod bisect;
mod link;
mod route;
mod stateful;
mod task;

pub use link::{LinkError, TransformLink};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{
    ErrorCode, PartitionOffset, TransformDescription, TransformPartitionStatus,
};
use ledge_protocol::{EncodeError, EncodeOptions, Record, encode_batch};
use tokio::sync::{Notify, broadcast, watch};

use route::BreakerWindow;
use task::PartitionTask;

use super::metadata::{StoppedReason, StoredTransform};
use super::plugins::{ModuleError, PluginHost};
use super::registry::{
    CreateTopicError, LookupError, RegistryEvent, RemoveTransformError, SetTransformStoppedError,
    StoreTransformError, TopicRegistry,
};
use super::topic_config::{
    ModuleNameError, TopicNameError, validate_module_name, validate_topic_name,
};
use crate::clock::Clock;
use crate::groups::offsets::{OffsetKey, encode_value};
use crate::groups::service::{GroupService, GroupServiceError};
use crate::storage::{AppendDurability, AppendError, Disk};
use crate::wasm::batch::params_list;
use crate::wasm::{Plugin, PluginKind};

pub use super::metadata::OnError;

/// Why a transform could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployTransformError {
    /// The transform's name is not a valid name.
    #[error("transform name: {0}")]
    InvalidName(ModuleNameError),
    /// The parameters are refused.
    #[error(transparent)]
    Params(#[from] crate::wasm::batch::ParamsError),
    /// The input topic does not exist.
    #[error("input topic {0:?} does not exist")]
    UnknownInput(String),
    /// The input is an internal topic.
    #[error("a transform cannot read an internal topic")]
    InternalInput,
    /// A join setting is missing, refused, or given to another kind; the message names the
    /// setting (`join.table`, `join.with`, `join.before_ms`, ...).
    #[error("{0}")]
    JoinSetting(String),
    /// A join's second input does not exist.
    #[error("join input topic {0:?} does not exist")]
    UnknownJoinInput(String),
    /// A join's two inputs are not co-partitioned.
    #[error(
        "a join's inputs must have equal partition counts: {left:?} has {left_partitions}, \
         {right:?} has {right_partitions}"
    )]
    CoPartitioning {
        /// The left input.
        left: String,
        /// Its partitions.
        left_partitions: u32,
        /// The right input.
        right: String,
        /// Its partitions.
        right_partitions: u32,
    },
    /// The `window.*` settings do not make a window (the setting is named).
    #[error("{0}")]
    Window(#[from] crate::streams::window::WindowSettingsError),
    /// A window on a transform that is not an aggregate.
    #[error("window settings apply to aggregate transforms only, not {0}")]
    WindowNotAggregate(PluginKind),
    /// Session windows with a module that cannot merge two states.
    #[error(
        "session windows (window.gap_ms) need the module's ledge_merge export to merge \
         sessions a record bridges; this module has none"
    )]
    SessionWithoutMerge,
    /// A stateful transform in a `[cluster]`: not built yet (its changelog is written on one
    /// node; docs/STREAMS.md).
    #[error("stateful transforms run on a single node for now (docs/STREAMS.md)")]
    StatefulInCluster,
    /// A stateful transform redeployed with another kind or state layout, or a stateless
    /// one redeployed as stateful: its state would not match.
    #[error("transform {name:?}: {reason}; remove it and deploy it again")]
    StateChanged {
        /// The transform.
        name: String,
        /// What changed.
        reason: String,
    },
    /// An output or dead-letter topic name is not a valid name.
    #[error(transparent)]
    InvalidTopicName(TopicNameError),
    /// An output or dead-letter topic is internal or the input itself.
    #[error("a transform cannot write {0:?} (internal, or its own input)")]
    ForbiddenOutput(String),
    /// A transform of that name reads another input.
    #[error(
        "transform {name:?} reads {existing:?}; remove it before deploying one that reads {declared:?}"
    )]
    InputChanged {
        /// The transform.
        name: String,
        /// The input it reads.
        existing: String,
        /// The input asked for.
        declared: String,
    },
    /// `transforms.transforms_max` transforms exist.
    #[error("the node runs at most {0} transforms (transforms.transforms_max)")]
    TooMany(usize),
    /// The stored version is the last a `u32` holds.
    #[error(
        "transform {name:?} is at version {version}, the last there is; remove it and deploy it again"
    )]
    VersionsExhausted {
        /// The transform.
        name: String,
        /// Its version.
        version: u32,
    },
    /// Storing or instantiating the module failed (the plug-in host's answer).
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// Creating the output or dead-letter topic failed (the registry's answer).
    #[error(transparent)]
    Topic(#[from] CreateTopicError),
    /// `metadata.json` did not take the definition.
    #[error(transparent)]
    Record(#[from] StoreTransformError),
    /// In a cluster: the controller did not record the definition (or an output topic).
    #[error(transparent)]
    Controller(crate::controller::admin::AdminError),
}

/// A transform asked for by name that does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no transform named {name:?}")]
pub struct UnknownTransform {
    /// The name asked for.
    pub name: String,
}

/// Why a transform's output or dead letters were not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendRecordsError {
    /// No such topic or partition, or the partition is offline.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The records could not be encoded as a batch.
    #[error("{0}")]
    Encode(EncodeError),
    /// The partition log refused or failed the append.
    #[error(transparent)]
    Append(AppendError),
    /// In a cluster: the output partition's leader did not take it.
    #[error(transparent)]
    Leader(LinkError),
}

/// Why a transform could not be paused, resumed or removed.
#[derive(Debug, thiserror::Error)]
pub enum AlterTransformError {
    /// The action is not pause, resume or remove.
    #[error("unknown action {0:?}: pause, resume or remove")]
    UnknownAction(String),
    /// Pausing or resuming it failed (no such transform, `metadata.json`).
    #[error(transparent)]
    Stopped(#[from] SetTransformStoppedError),
    /// Removing it failed (no such transform, `metadata.json`).
    #[error(transparent)]
    Remove(#[from] RemoveTransformError),
    /// In a cluster: the controller did not record the change.
    #[error(transparent)]
    Controller(crate::controller::admin::AdminError),
}

/// Limits and tuning of transforms; `[transforms]` in the node config.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformLimits {
    /// Bytes of input one iteration reads per partition.
    pub read_bytes_max: usize,
    /// Bytes of output records per appended batch (kept below the output topic's
    /// `max.message.bytes`).
    pub output_batch_bytes: usize,
    /// Longest an idle transform waits for input before checking again.
    pub idle_wait: Duration,
    /// Wait before retrying after an append or read failed (disk full, offline partition).
    pub retry_backoff: Duration,
    /// The circuit breaker looks at roughly this many recent records.
    pub breaker_window_records: u64,
    /// Pause when more than this share of the recent records failed.
    pub breaker_error_ratio: f64,
    /// ... and at least this many records were seen.
    pub breaker_records_min: u64,
    /// Most transforms on the node.
    pub transforms_max: usize,
    /// Bytes of state per stateful transform partition (docs/STREAMS.md).
    pub state_memory_bytes_max: u64,
    /// Bytes of one commit's changelog batch (one input batch's state changes, change
    /// records and position).
    pub commit_batch_bytes_max: u64,
    /// Most entries one table scan answers.
    pub table_scan_entries_max: usize,
    /// Least time between two deletions of a stateful transform's consumed repartition
    /// records (Kafka Streams' `repartition.purge.interval.ms`).
    pub repartition_purge_interval: Duration,
    /// Most windows one record may fall into (a hopping window's `size / advance`).
    pub windows_per_record_max: u32,
    /// How far ahead of the node's clock a windowed aggregate's record timestamp may be, ms.
    pub future_timestamp_ms_max: i64,
}

impl Default for TransformLimits {
    fn default() -> Self {
        Self {
            // Two fdatasyncs' worth of latency per iteration at most: bigger reads amortize
            // them (transform-bench in benches/RESULTS.md).
            read_bytes_max: 4 * 1024 * 1024,
            output_batch_bytes: 512 * 1024,
            idle_wait: Duration::from_millis(500),
            retry_backoff: Duration::from_secs(1),
            breaker_window_records: 1000,
            breaker_error_ratio: 0.5,
            breaker_records_min: 100,
            transforms_max: 256,
            state_memory_bytes_max: crate::streams::store::STATE_MEMORY_BYTES_MAX_DEFAULT,
            commit_batch_bytes_max: crate::streams::changelog::COMMIT_BATCH_BYTES_MAX_DEFAULT,
            table_scan_entries_max: 10_000,
            // Kafka Streams' default.
            repartition_purge_interval: Duration::from_secs(30),
            windows_per_record_max: crate::streams::window::WINDOWS_PER_RECORD_MAX_DEFAULT,
            future_timestamp_ms_max: crate::streams::window::FUTURE_TIMESTAMP_MS_MAX_DEFAULT,
        }
    }
}

/// A transform as its tasks see it; replaced whole by a deploy, pause or resume.
pub(crate) struct TransformVersion {
    definition: StoredTransform,
    plugin: Arc<Plugin>,
}

#[derive(Default)]
struct TransformStats {
    records_in: AtomicU64,
    records_out: AtomicU64,
    records_dead: AtomicU64,
    busy_us: AtomicU64,
    last_error: Mutex<String>,
    /// Why the transform waits for a permission its deployer lacks (empty: it does not):
    /// `User:alice may not Write Topic:out`. Shown as state `denied`.
    denied: Mutex<String>,
    positions: Mutex<BTreeMap<u32, i64>>,
    /// The same counters per input partition, for a describe that shows each partition
    /// with the node running it.
    partitions: Mutex<BTreeMap<u32, PartitionCounters>>,
    breaker: Mutex<BreakerWindow>,
    /// A stateful transform's committed input position per state partition.
    state_positions: Mutex<BTreeMap<u32, i64>>,
    /// A stateful transform's state bytes per state partition.
    state_bytes: Mutex<BTreeMap<u32, u64>>,
    /// Changelog records each state partition's restore has read.
    restore_records: Mutex<BTreeMap<u32, u64>>,
    /// A stateful transform's stores by state partition, once restored (table queries).
    stores: Mutex<BTreeMap<u32, Arc<tokio::sync::Mutex<crate::streams::store::StateStore>>>>,
    /// A join's committed position in its second input, per state partition.
    join_positions: Mutex<BTreeMap<u32, i64>>,
    /// A windowed aggregate's windows holding state and not closed yet, per state partition
    /// (as of its last commit).
    windows_open: Mutex<BTreeMap<u32, u64>>,
    /// Records dropped unprocessed since the node started: late (a windowed aggregate's
    /// record whose windows are all closed, a join's record behind its window), or keyless
    /// for a join.
    records_late: AtomicU64,
}

/// A transform's counters for one input partition on this node.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PartitionCounters {
    records_in: u64,
    records_out: u64,
    records_dead: u64,
    busy_us: u64,
}

impl TransformStats {
    /// Adds to the counters of `partition` (the transform's totals are counted apart).
    fn count(&self, partition: u32, add: PartitionCounters) {
        let mut partitions = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counters = partitions.entry(partition).or_default();
        counters.records_in = counters.records_in.saturating_add(add.records_in);
        counters.records_out = counters.records_out.saturating_add(add.records_out);
        counters.records_dead = counters.records_dead.saturating_add(add.records_dead);
        counters.busy_us = counters.busy_us.saturating_add(add.busy_us);
    }

    fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = message;
    }

    /// Records whether the deployer lacks a permission (`Some(text)`) or no longer does;
    /// true when that changed.
    fn set_denied(&self, denied: Option<&str>) -> bool {
        let mut current = self
            .denied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = denied.unwrap_or_default();
        if *current == next {
            return false;
        }
        next.clone_into(&mut current);
        true
    }

    /// Adds a chunk's counts to the breaker window; the reason to pause, when it trips.
    fn breaker_trips(&self, records: u64, failed: u64, limits: &TransformLimits) -> Option<String> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(records, failed, limits)
    }
}

/// What the runner and its partition tasks reach the node through: narrow handles (the
/// topic registry for partition logs and stored definitions, the plug-in host, the group
/// service for positions, the clock), never the broker.
pub(crate) struct TransformHandles<D: Disk> {
    registry: Arc<TopicRegistry<D>>,
    plugins: Arc<PluginHost<D>>,
    groups: Arc<GroupService>,
    clock: Arc<dyn Clock>,
    limits: TransformLimits,
    /// This node's id (`node_id` of the config), named in each partition a describe shows.
    node_id: u32,
    /// The running transforms; a task that stops its transform tells the others here.
    running: Mutex<BTreeMap<String, RunningTransform>>,
    /// In a `[cluster]`: where tasks run, outputs go, positions are kept and definitions
    /// change (set before the runner starts); unset on one node.
    link: OnceLock<Arc<dyn TransformLink>>,
    /// The ACLs a transform's deployer is checked against before each chunk (the broker's).
    policy: Arc<super::authorize::AccessPolicy>,
}

/// The transform service: deploys, alters, describes and reconciles transforms, and runs
/// them. The partition tasks are started by its driver (`drive_runner`); request handlers change the
/// map and wake it.
pub struct TransformRunner<D: Disk> {
    handles: Arc<TransformHandles<D>>,
    /// Set by [`TransformRunner::start`]; a transform launched before only has its
    /// definition stored.
    started: AtomicBool,
    /// Wakes the driver to start the tasks a transform lacks.
    wake: Arc<Notify>,
    /// Ends the driver (at shutdown, or when the runner goes).
    shutdown: Arc<Notify>,
}

impl<D: Disk> Drop for TransformRunner<D> {
    fn drop(&mut self) {
        // The tasks hold the handles, not the runner: they end here, not when the runtime
        // does.
        self.stop();
    }
}

/// The runner's driver: starts the partition tasks of launched transforms, and of
/// partitions added to a running transform's input (told by the registry), until the
/// runner stops. Level-triggered: each wake compares every transform's tasks with its
/// input's partitions, so a lagged event stream loses nothing.
async fn drive_runner<D: Disk>(
    handles: Arc<TransformHandles<D>>,
    wake: Arc<Notify>,
    shutdown: Arc<Notify>,
    mut events: broadcast::Receiver<RegistryEvent>,
) {
    loop {
        handles.start_missing_tasks();
        tokio::select! {
            biased;
            () = shutdown.notified() => return,
            () = wake.notified() => {}
            event = events.recv() => match event {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// A transform's running tasks.
pub(crate) struct RunningTransform {
    version: watch::Sender<Arc<TransformVersion>>,
    stats: Arc<TransformStats>,
    /// By input partition: every partition on one node, the ones it leads in a cluster.
    /// A stateful transform's stage 1 (re-keying); none when it does not re-key.
    tasks: BTreeMap<u32, tokio::task::JoinHandle<()>>,
    /// A stateful transform's stage-2 tasks, by state partition.
    state_tasks: BTreeMap<u32, tokio::task::JoinHandle<()>>,
}

impl Drop for RunningTransform {
    fn drop(&mut self) {
        for task in self.tasks.values().chain(self.state_tasks.values()) {
            task.abort();
        }
    }
}

pub(crate) use crate::groups::service::POSITION_GROUP_PREFIX;

/// The group under which a transform's positions are committed.
pub fn position_group(name: &str) -> String {
    format!("{POSITION_GROUP_PREFIX}{name}")
}

/// Checks a declaration's join settings against its kind: a join names exactly one second
/// input, and a stream-stream window whose settings are not negative; no other kind names
/// one. Errors name the setting.
fn check_join_settings(declared: &DeclaredTransform) -> Result<(), DeployTransformError> {
    let refused = |message: String| Err(DeployTransformError::JoinSetting(message));
    match (&declared.join, declared.kind == PluginKind::Join) {
        (None, false) => Ok(()),
        (Some(_), false) => refused(format!(
            "join.table and join.with are for join transforms; this module's kind is {}",
            declared.kind
        )),
        (None, true) => refused(
            "a join transform names its second input: join.table (a table, latest value per \
             key) or join.with (a stream, with join.window_ms)"
                .to_string(),
        ),
        (Some(join), true) => {
            if join.right.is_empty() {
                return refused("join.table or join.with: the topic name is empty".to_string());
            }
            if join.right == declared.input {
                return refused(format!(
                    "join.table or join.with: {:?} is the transform's input; a join reads two \
                     topics",
                    join.right
                ));
            }
            match join.kind.window() {
                Some(window) => window
                    .validate()
                    .map_err(|error| DeployTransformError::JoinSetting(error.to_string())),
                // A table has no window.
                None => Ok(()),
            }
        }
    }
}

/// A store entry as a table query answers it.
fn table_entry(
    key: &crate::streams::store::StateKey,
    value: &Bytes,
    partition: u32,
) -> ledge_protocol::wire::TableEntry {
    ledge_protocol::wire::TableEntry {
        key: key.key.clone(),
        value: value.clone(),
        partition,
        window: key.window.map(|window| ledge_protocol::wire::TableWindow {
            start_ms: window.start_ms,
            end_ms: window.end_ms,
        }),
    }
}

/// A deployed window as the wire's settings (describe).
fn wire_window(
    window: &crate::streams::window::WindowDeploy,
) -> ledge_protocol::wire::TransformWindow {
    let settings = window.settings();
    ledge_protocol::wire::TransformWindow {
        kind: settings.kind.unwrap_or_default(),
        size_ms: settings.size_ms,
        advance_ms: settings.advance_ms,
        gap_ms: settings.gap_ms,
        grace_ms: settings.grace_ms,
        retention_ms: settings.retention_ms,
        emit: settings.emit.unwrap_or_default(),
    }
}

/// A window as `describe` and refusals print it.
fn window_text(window: Option<&crate::streams::window::WindowDeploy>) -> String {
    let Some(window) = window else {
        return "none".into();
    };
    let settings = window.settings();
    let mut parts = vec![settings.kind.unwrap_or_default()];
    for (name, value) in [
        ("size_ms", settings.size_ms),
        ("advance_ms", settings.advance_ms),
        ("gap_ms", settings.gap_ms),
        ("grace_ms", settings.grace_ms),
        ("retention_ms", settings.retention_ms),
    ] {
        if let Some(value) = value {
            parts.push(format!("{name}={value}"));
        }
    }
    parts.push(format!("emit={}", window.emit.name()));
    parts.join(" ")
}

/// `retention.ms` of a windowed changelog: a window's state lives until its end plus grace
/// plus `window.retention_ms` passes the largest timestamp seen; its records are kept a
/// window length beyond that (at least a day), so time-based deletion never removes state a
/// restore still needs. Saturates at `i64::MAX`.
fn changelog_retention_ms(spec: &crate::streams::window::WindowSpec) -> i64 {
    use crate::streams::window::WindowKind;
    let length = match spec.kind {
        WindowKind::Tumbling { size_ms } | WindowKind::Hopping { size_ms, .. } => size_ms,
        WindowKind::Session { gap_ms } => gap_ms,
    };
    spec.retention_ms
        .saturating_add(spec.grace_ms)
        .saturating_add(length.saturating_mul(2))
        .saturating_add(24 * 60 * 60 * 1000)
}

/// A transform declared in the config file (`[[transform]]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeclaredTransform {
    /// Name.
    pub name: String,
    /// Module kind.
    pub kind: PluginKind,
    /// The module's bytes (read from the file the config names).
    pub module: Bytes,
    /// Input topic.
    pub input: String,
    /// Output topic (empty: `<input>.<name>`).
    pub output: String,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Error policy.
    pub on_error: OnError,
    /// Dead-letter topic (empty: `<name>.dead-letter`).
    pub dead_letter_topic: String,
    /// A join's second input (required for `join`, refused for the other kinds).
    pub join: Option<super::metadata::JoinSpec>,
    /// An aggregate's `window.*` settings (`None`: not windowed).
    pub window: Option<crate::streams::window::WindowSettings>,
}

impl<D: Disk> TransformRunner<D> {
    /// A runner with no transform started yet (see [`Self::start`]).
    pub(crate) fn new(
        registry: Arc<TopicRegistry<D>>,
        plugins: Arc<PluginHost<D>>,
        groups: Arc<GroupService>,
        clock: Arc<dyn Clock>,
        limits: TransformLimits,
        node_id: u32,
        policy: Arc<super::authorize::AccessPolicy>,
    ) -> Self {
        Self {
            handles: Arc::new(TransformHandles {
                registry,
                plugins,
                groups,
                clock,
                limits,
                node_id,
                running: Mutex::new(BTreeMap::new()),
                link: OnceLock::new(),
                policy,
            }),
            started: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            shutdown: Arc::new(Notify::new()),
        }
    }

    /// The transform's stored definition, if it exists.
    async fn stored_transform(&self, name: &str) -> Option<StoredTransform> {
        self.handles.registry.transform(name).await
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunningTransform>> {
        self.handles.running()
    }

    /// Starts the stored transforms and the runner's driver; call once, after the broker
    /// opened.
    pub async fn start(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        // Subscribed before any transform launches: no change to an input is missed.
        let events = self.handles.registry.subscribe();
        tokio::spawn(drive_runner(
            Arc::clone(&self.handles),
            Arc::clone(&self.wake),
            Arc::clone(&self.shutdown),
            events,
        ));
        let stored = self.handles.registry.transforms().await;
        for (name, definition) in stored {
            let plugin = match self
                .handles
                .plugins
                .plugin(&definition.module, definition.module.params.clone())
                .await
            {
                Ok(plugin) => plugin,
                Err(error) => {
                    tracing::error!(transform = %name, %error, "transform cannot start");
                    continue;
                }
            };
            self.launch(&name, definition, plugin);
        }
    }

    /// Runs a transform, or hands its running tasks a new version. The tasks themselves are
    /// started by the runner's driver (see [`drive_runner`]).
    fn launch(&self, name: &str, definition: StoredTransform, plugin: Arc<Plugin>) {
        if !self.started.load(Ordering::SeqCst) {
            // Deployed before `start` (the config file's `[[transform]]`s are reconciled at
            // start, before the broker is shared): the definition is stored, and `start`
            // launches every stored transform.
            tracing::debug!(transform = %name, "transform recorded; it starts with the broker's transforms");
            return;
        }
        let mut running = self.running();
        let version = Arc::new(TransformVersion { definition, plugin });
        if let Some(existing) = running.get(name) {
            // A new version starts with no error. Cleared before the tasks can see the
            // version: cleared after (as it was), an error the new version's tasks published
            // at once, such as an input batch that does not decode, was wiped on a
            // multi-threaded runtime whenever a task got there first.
            existing.stats.set_error(String::new());
            // The tasks pick it up at their next batch boundary.
            existing.version.send_replace(version);
            return;
        }
        let (sender, _) = watch::channel(version);
        running.insert(
            name.to_string(),
            RunningTransform {
                version: sender,
                stats: Arc::new(TransformStats::default()),
                tasks: BTreeMap::new(),
                state_tasks: BTreeMap::new(),
            },
        );
        drop(running);
        self.wake.notify_one();
    }

    /// Stops every transform task and the driver (at shutdown, before the logs close).
    pub fn stop(&self) {
        self.shutdown.notify_one();
        self.running().clear();
    }

    /// Deploys a transform or a new version of one, to run as the node itself (the config
    /// file's, and deploys with authorization off); returns the version.
    pub async fn deploy(&self, declared: DeclaredTransform) -> Result<u32, DeployTransformError> {
        self.deploy_as(declared, None).await
    }

    /// Deploys a transform or a new version of one that reads and writes with the
    /// permissions of `deployer` (a principal, `User:alice`; `None`: the node itself,
    /// unrestricted); returns the version. The caller checked that `deployer` may.
    pub async fn deploy_as(
        &self,
        declared: DeclaredTransform,
        deployer: Option<String>,
    ) -> Result<u32, DeployTransformError> {
        let name = declared.name.clone();
        validate_module_name(&name).map_err(DeployTransformError::InvalidName)?;
        check_join_settings(&declared)?;
        if declared.kind.is_stateful() && self.handles.link.get().is_some() {
            return Err(DeployTransformError::StatefulInCluster);
        }
        if declared.window.is_some() && declared.kind != PluginKind::Aggregate {
            return Err(DeployTransformError::WindowNotAggregate(declared.kind));
        }
        let Some(input) = self.handles.registry.topic(&declared.input) else {
            return Err(DeployTransformError::UnknownInput(declared.input));
        };
        if declared.input.starts_with("__") {
            return Err(DeployTransformError::InternalInput);
        }
        let existing = self.stored_transform(&name).await;
        // A new version without topics keeps the ones it had (as the config file does).
        let output = match (&existing, declared.output.is_empty()) {
            (_, false) => declared.output.clone(),
            (Some(existing), true) => existing.output.clone(),
            (None, true) => format!("{}.{name}", declared.input),
        };
        let dead_letter_topic = match (&existing, declared.dead_letter_topic.is_empty()) {
            (_, false) => declared.dead_letter_topic.clone(),
            (Some(existing), true) => existing.dead_letter_topic.clone(),
            (None, true) => format!("{name}.dead-letter"),
        };
        for topic in [&output, &dead_letter_topic] {
            validate_topic_name(topic).map_err(DeployTransformError::InvalidTopicName)?;
            if topic.starts_with("__") || *topic == declared.input {
                return Err(DeployTransformError::ForbiddenOutput(topic.clone()));
            }
        }
        if let Some(existing) = &existing
            && existing.input != declared.input
        {
            return Err(DeployTransformError::InputChanged {
                name,
                existing: existing.input.clone(),
                declared: declared.input,
            });
        }
        if existing.is_none()
            && self.handles.registry.transform_count().await >= self.handles.limits.transforms_max
        {
            return Err(DeployTransformError::TooMany(
                self.handles.limits.transforms_max,
            ));
        }
        // Held until the definition naming it is recorded: a garbage collection meanwhile
        // (another module's delete, the cluster mirror) must not remove the files.
        let _hold = self
            .handles
            .plugins
            .hold(&crate::wasm::content_hash(&declared.module));
        let module = self
            .handles
            .plugins
            .store_module(
                declared.module.clone(),
                declared.kind,
                declared.params.clone(),
            )
            .await?;
        let plugin = self
            .handles
            .plugins
            .plugin(&module, declared.params.clone())
            .await
            .map_err(ModuleError::Instantiate)?;
        let input_partitions = input.partition_count();
        if let Some(join) = &declared.join {
            // Co-partitioning (docs/STREAMS.md): state partition q joins left partition q
            // with right partition q, so both must spread keys over the same count.
            let Some(right) = self.handles.registry.topic(&join.right) else {
                return Err(DeployTransformError::UnknownJoinInput(join.right.clone()));
            };
            if join.right.starts_with("__") {
                return Err(DeployTransformError::InternalInput);
            }
            if [&output, &dead_letter_topic].contains(&&join.right) {
                return Err(DeployTransformError::ForbiddenOutput(join.right.clone()));
            }
            if right.partition_count() != input_partitions {
                return Err(DeployTransformError::CoPartitioning {
                    left: declared.input.clone(),
                    left_partitions: input_partitions,
                    right: join.right.clone(),
                    right_partitions: right.partition_count(),
                });
            }
        }
        if let Some(link) = self.handles.link.get() {
            return self
                .deploy_in_cluster(
                    link.as_ref(),
                    &name,
                    &declared,
                    module,
                    output,
                    dead_letter_topic,
                    existing,
                    input_partitions,
                    deployer,
                )
                .await;
        }
        if self.handles.registry.topic(&output).is_none() {
            match self
                .handles
                .registry
                .create_topic(&output, input_partitions, &BTreeMap::new())
                .await
            {
                Ok(()) | Err(CreateTopicError::AlreadyExists { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if declared.on_error == OnError::DeadLetter
            && self.handles.registry.topic(&dead_letter_topic).is_none()
        {
            match self
                .handles
                .registry
                .create_topic(&dead_letter_topic, 1, &BTreeMap::new())
                .await
            {
                Ok(()) | Err(CreateTopicError::AlreadyExists { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        let stateful = self
            .prepare_state(
                &name,
                &declared,
                &plugin,
                existing.as_ref(),
                input_partitions,
            )
            .await?;
        let version = match &existing {
            None => 1,
            // The version comes from metadata.json; wrapping would repeat old versions.
            Some(existing) => existing.version.checked_add(1).ok_or_else(|| {
                DeployTransformError::VersionsExhausted {
                    name: name.clone(),
                    version: existing.version,
                }
            })?,
        };
        let definition = StoredTransform {
            module,
            input: declared.input.clone(),
            output,
            dead_letter_topic,
            on_error: declared.on_error,
            version,
            // A new version starts running; an operator deploys a fix to resume.
            stopped: None,
            deployer,
            stateful,
        };
        self.handles
            .registry
            .store_transform(&name, definition.clone())
            .await?;
        self.handles.plugins.collect_module_garbage().await;
        let version = definition.version;
        self.launch(&name, definition, plugin);
        tracing::info!(transform = %name, version, "transform deployed");
        Ok(version)
    }

    /// Hot swap across a state schema change (docs/STREAMS.md, "Hot swap"): why the new
    /// module cannot take over the running transform's state, or `None` when its
    /// `ledge_state_check` accepts every stored state. Every state partition must be running
    /// and restored (a state not in memory cannot be checked); states go to the module in
    /// calls of at most `STATE_CHECK_BATCH` states, read from a snapshot of each store so
    /// the task keeps running meanwhile (what it writes later is written by the old module,
    /// in the schema just checked).
    async fn unreadable_state(
        &self,
        name: &str,
        plugin: &Arc<Plugin>,
        state_partitions: u32,
    ) -> Option<String> {
        /// States per `ledge_state_check` call: bounds one call's input and output.
        const STATE_CHECK_BATCH: usize = 1024;
        let stores = match self.table_stores(name).await {
            Ok((_, stores)) => stores,
            Err((_, message)) => return Some(message),
        };
        for partition in 0..state_partitions {
            let Some(store) = stores.get(&partition) else {
                return Some(format!(
                    "state partition {partition} is restoring or not running, so its states cannot be checked; retry once it runs"
                ));
            };
            let entries: Vec<(Bytes, Bytes)> = store
                .lock()
                .await
                .iter()
                .filter(|(key, _)| key.store == crate::streams::store::STORE_AGGREGATE)
                .map(|(key, value)| (key.key.clone(), value.clone()))
                .collect();
            for chunk in entries.chunks(STATE_CHECK_BATCH) {
                let states = chunk.iter().map(|(_, state)| state.clone()).collect();
                let verdicts = match plugin.check_states_on_executor(states).await {
                    Ok(run) => run.output,
                    Err(error) => {
                        return Some(format!("its ledge_state_check failed: {error}"));
                    }
                };
                if let Some(((key, _), Err(message))) = chunk
                    .iter()
                    .zip(verdicts)
                    .find(|(_, verdict)| verdict.is_err())
                {
                    return Some(format!(
                        "its ledge_state_check cannot read the state of key {} (state partition {partition}): {message}",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
        None
    }

    /// A stateful transform's spec, with its internal topics created: the changelog
    /// (compacted) and, when the module exports `ledge_group`, the repartition topic.
    /// `None` for the record-by-record kinds. A redeploy keeps the state only when the kind
    /// and layout are unchanged and the `ledge_state_schema` is too, or the new module's
    /// `ledge_state_check` reads every stored state.
    async fn prepare_state(
        &self,
        name: &str,
        declared: &DeclaredTransform,
        plugin: &Arc<Plugin>,
        existing: Option<&StoredTransform>,
        input_partitions: u32,
    ) -> Result<Option<super::metadata::StatefulSpec>, DeployTransformError> {
        use super::metadata::StatefulSpec;
        if !declared.kind.is_stateful() {
            if existing.is_some_and(|existing| existing.stateful.is_some()) {
                return Err(DeployTransformError::StateChanged {
                    name: name.to_string(),
                    reason: format!("it keeps state; a {} module keeps none", declared.kind),
                });
            }
            return Ok(None);
        }
        // Co-partitioning (docs/STREAMS.md): state partition q holds the keys murmur2
        // places in q. Without `ledge_group` the input's keys are the group keys, so the
        // state has the input's partitions; with it, the repartition topic is made with
        // the same count.
        let window = declared
            .window
            .as_ref()
            .map(|settings| settings.resolve(self.handles.limits.windows_per_record_max))
            .transpose()?;
        if let Some(window) = &window
            && matches!(
                window.spec.kind,
                crate::streams::window::WindowKind::Session { .. }
            )
            && !plugin
                .module()
                .exports(ledge_protocol::wasm_abi::EXPORT_MERGE)
        {
            return Err(DeployTransformError::SessionWithoutMerge);
        }
        let spec = StatefulSpec {
            state_partitions: input_partitions.max(1),
            repartition: plugin
                .module()
                .exports(ledge_protocol::wasm_abi::EXPORT_GROUP),
            join: declared.join.clone(),
            window,
        };
        if let Some(existing) = existing {
            let reason = match &existing.stateful {
                None => Some(format!(
                    "it keeps no state; a module of kind {} does",
                    declared.kind
                )),
                Some(old) if old.join != spec.join => Some(format!(
                    "its join input changes ({:?} -> {:?})",
                    old.join, spec.join
                )),
                Some(old) if old.window != spec.window => Some(format!(
                    "its window changes ({} -> {}); changing windows is not built yet",
                    window_text(old.window.as_ref()),
                    window_text(spec.window.as_ref())
                )),
                Some(old) if *old != spec => Some(format!(
                    "its state layout changes ({} state partitions, repartition {} -> {} and {})",
                    old.state_partitions, old.repartition, spec.state_partitions, spec.repartition
                )),
                Some(_) => {
                    let old_schema = self
                        .handles
                        .plugins
                        .plugin(&existing.module, existing.module.params.clone())
                        .await
                        .ok()
                        .and_then(|old| old.module().state_schema().map(str::to_string));
                    let new_schema = plugin.module().state_schema().map(str::to_string);
                    if old_schema == new_schema {
                        None
                    } else {
                        self.unreadable_state(name, plugin, spec.state_partitions)
                            .await
                            .map(|why| {
                                format!(
                                    "its state schema changes ({} -> {}) and {why}",
                                    old_schema.unwrap_or_default(),
                                    new_schema.unwrap_or_default()
                                )
                            })
                    }
                }
            };
            if let Some(reason) = reason {
                return Err(DeployTransformError::StateChanged {
                    name: name.to_string(),
                    reason,
                });
            }
        }
        // A windowed changelog also deletes by time: expired windows are tombstoned, and
        // `compact,delete` drops their records (and tombstones) once past the retention.
        // The commit position is rewritten by every commit, so it is always recent.
        let changelog_configs = match &spec.window {
            None => BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
            Some(window) => BTreeMap::from([
                ("cleanup.policy".to_string(), "compact,delete".to_string()),
                (
                    "retention.ms".to_string(),
                    changelog_retention_ms(&window.spec).to_string(),
                ),
            ]),
        };
        let mut topics = vec![(StatefulSpec::changelog_topic(name), changelog_configs)];
        if spec.repartition {
            topics.push((
                StatefulSpec::repartition_topic(name),
                BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
            ));
        }
        for (topic, configs) in topics {
            if self.handles.registry.topic(&topic).is_some() {
                continue;
            }
            match self
                .handles
                .registry
                .create_topic(&topic, spec.state_partitions, &configs)
                .await
            {
                Ok(()) | Err(CreateTopicError::AlreadyExists { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Some(spec))
    }

    /// The cluster half of [`Self::deploy`]: output topics and the definition go through
    /// the controller; every node's mirror then runs the new version where it leads.
    #[allow(clippy::too_many_arguments)]
    async fn deploy_in_cluster(
        &self,
        link: &dyn TransformLink,
        name: &str,
        declared: &DeclaredTransform,
        module: super::metadata::StoredModule,
        output: String,
        dead_letter_topic: String,
        existing: Option<StoredTransform>,
        input_partitions: u32,
        deployer: Option<String>,
    ) -> Result<u32, DeployTransformError> {
        use crate::controller::admin::{AdminError, AdminRefusal, AdminRequest};
        let mut created = vec![(output.clone(), input_partitions)];
        if declared.on_error == OnError::DeadLetter {
            created.push((dead_letter_topic.clone(), 1));
        }
        for (topic, partitions) in created {
            if self.handles.registry.topic(&topic).is_some() {
                continue;
            }
            let request = AdminRequest::CreateTopic {
                name: topic,
                partitions,
                replication_factor: None,
                configs: BTreeMap::new(),
            };
            match link.admin(request).await {
                Ok(())
                | Err(AdminError::Refused {
                    refusal: AdminRefusal::TopicAlreadyExists,
                    ..
                }) => {}
                Err(error) => return Err(DeployTransformError::Controller(error)),
            }
        }
        let version = match &existing {
            None => 1,
            Some(existing) => existing.version.checked_add(1).ok_or_else(|| {
                DeployTransformError::VersionsExhausted {
                    name: name.to_string(),
                    version: existing.version,
                }
            })?,
        };
        let definition = StoredTransform {
            module,
            input: declared.input.clone(),
            output,
            dead_letter_topic,
            on_error: declared.on_error,
            version,
            stopped: None,
            deployer,
            stateful: None,
        };
        link.admin(AdminRequest::PutTransform {
            name: name.to_string(),
            transform: Box::new(definition),
        })
        .await
        .map_err(DeployTransformError::Controller)?;
        tracing::info!(transform = %name, version, "transform deployed through the controller");
        Ok(version)
    }

    /// In a `[cluster]`: sets how transforms reach the cluster. Call once, before
    /// [`Self::start`]; `false` if a link was set already.
    pub fn set_link(&self, link: Arc<dyn TransformLink>) -> bool {
        self.handles.link.set(link).is_ok()
    }

    /// Wakes the driver to compare the running tasks with the leaders (after an image
    /// change).
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// Makes the running transforms match the stored definitions (in a cluster, the
    /// registry mirrors the controller's): launches new ones and new versions or states,
    /// stops removed ones. Returns how many could not be launched (their module is not
    /// here yet, or does not instantiate): the caller retries.
    pub async fn follow_definitions(&self) -> usize {
        let stored = self.handles.registry.transforms().await;
        let mut failed = 0;
        for (name, definition) in &stored {
            let current = self
                .running()
                .get(name)
                .map(|running| running.version.borrow().definition.clone());
            if current.as_ref() == Some(definition) {
                continue;
            }
            match self
                .handles
                .plugins
                .plugin(&definition.module, definition.module.params.clone())
                .await
            {
                Ok(plugin) => self.launch(name, definition.clone(), plugin),
                Err(error) => {
                    failed += 1;
                    tracing::warn!(transform = %name, %error, "transform cannot start here yet; retried");
                }
            }
        }
        self.running().retain(|name, _| stored.contains_key(name));
        self.wake.notify_one();
        failed
    }

    /// Pauses, resumes or removes transform `name` (`action`: pause, resume, remove).
    pub async fn alter(&self, name: &str, action: &str) -> Result<(), AlterTransformError> {
        match action {
            "pause" => {
                self.handles
                    .set_stopped(
                        name,
                        Some(StoppedReason {
                            state: "paused".into(),
                            reason: "paused by an operator".into(),
                        }),
                    )
                    .await
            }
            "resume" => {
                let result = self.handles.set_stopped(name, None).await;
                if let Some(running) = self.running().get(name) {
                    *running
                        .stats
                        .breaker
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        BreakerWindow::default();
                }
                result
            }
            "remove" => self.remove(name).await,
            other => Err(AlterTransformError::UnknownAction(other.to_string())),
        }
    }

    async fn remove(&self, name: &str) -> Result<(), AlterTransformError> {
        if let Some(link) = self.handles.link.get() {
            link.admin(crate::controller::admin::AdminRequest::DeleteTransform {
                name: name.to_string(),
            })
            .await
            .map_err(AlterTransformError::Controller)?;
            // Then its positions, at their coordinator. Kept if that fails (logged): a
            // transform deployed again under this name would resume from them.
            if let Err(error) = link.delete_positions(name.to_string()).await {
                tracing::warn!(transform = %name, %error, "removing transform positions failed; a transform deployed again under this name resumes from them");
            }
            return Ok(());
        }
        let stateful = self
            .stored_transform(name)
            .await
            .and_then(|stored| stored.stateful);
        self.handles.registry.remove_transform(name).await?;
        self.running().remove(name);
        if stateful.is_some() {
            // Its state goes with it: a transform deployed again under this name starts
            // empty, as its positions do.
            for topic in [
                super::metadata::StatefulSpec::changelog_topic(name),
                super::metadata::StatefulSpec::repartition_topic(name),
            ] {
                if let Err(error) = self.handles.registry.delete_transform_topic(&topic).await {
                    tracing::warn!(transform = %name, %topic, %error, "removing a state topic failed");
                }
            }
        }
        let handles = &self.handles;
        match handles
            .groups
            .delete_group(&*handles.registry, &position_group(name))
            .await
        {
            Ok(()) | Err(GroupServiceError::NotFound(_)) => {}
            Err(error) => {
                tracing::warn!(transform = %name, %error, "removing transform positions failed");
            }
        }
        self.handles.plugins.collect_module_garbage().await;
        Ok(())
    }

    /// Describes the transforms named (every transform if `names` is empty).
    pub async fn describe(
        &self,
        names: Vec<String>,
    ) -> Vec<Result<TransformDescription, UnknownTransform>> {
        let stored = self.handles.registry.transforms().await;
        let names: Vec<String> = if names.is_empty() {
            stored.keys().cloned().collect()
        } else {
            names
        };
        let mut described = Vec::with_capacity(names.len());
        for name in names {
            let Some(definition) = stored.get(&name) else {
                described.push(Err(UnknownTransform { name }));
                continue;
            };
            let committed = match self.handles.link.get() {
                None => self
                    .handles
                    .groups
                    .committed_offsets(&position_group(&name), &definition.input),
                // In a cluster: from the coordinator (unknown while it cannot be asked).
                Some(link) => link
                    .positions(name.clone(), definition.input.clone())
                    .await
                    .unwrap_or_default(),
            };
            described.push(Ok(self.describe_transform(&name, definition, &committed)));
        }
        described
    }

    fn describe_transform(
        &self,
        name: &str,
        definition: &StoredTransform,
        committed: &BTreeMap<u32, i64>,
    ) -> TransformDescription {
        let running = self.running();
        let stats = running.get(name).map(|running| Arc::clone(&running.stats));
        let runs_here: std::collections::BTreeSet<u32> = running
            .get(name)
            .map(|running| running.tasks.keys().copied().collect())
            .unwrap_or_default();
        drop(running);
        let counters = stats
            .as_ref()
            .map(|stats| {
                stats
                    .partitions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        let denied = stats
            .as_ref()
            .map(|stats| {
                stats
                    .denied
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        let (state, mut last_error) = match &definition.stopped {
            Some(stopped) => (stopped.state.clone(), stopped.reason.clone()),
            // Waiting for a permission its deployer lost: nothing is read or written.
            None if !denied.is_empty() => (
                "denied".to_string(),
                format!(
                    "{denied} (a transform reads and writes with the permissions of its deployer; it resumes once they are granted)"
                ),
            ),
            None if stats.is_some() => ("running".to_string(), String::new()),
            None => (
                "failed".to_string(),
                "not running (see the node log)".to_string(),
            ),
        };
        let mut description = TransformDescription {
            name: name.to_string(),
            error: ErrorCode::None,
            kind: definition.module.kind,
            input: definition.input.clone(),
            output: definition.output.clone(),
            // Only the dead-letter policy writes (and creates) the topic.
            dead_letter_topic: if definition.on_error == OnError::DeadLetter {
                definition.dead_letter_topic.clone()
            } else {
                String::new()
            },
            on_error: definition.on_error,
            module_hash: definition.module.hash.clone(),
            params: params_list(&definition.module.params),
            version: definition.version,
            state,
            ..TransformDescription::default()
        };
        // Stage 2 reads the input itself when nothing re-keys it: its positions are the
        // state tasks' committed ones.
        let reads_input_in_stage_2 = definition
            .stateful
            .as_ref()
            .is_some_and(|spec| !spec.repartition);
        let live = stats.as_ref().map(|stats| {
            if reads_input_in_stage_2 {
                &stats.state_positions
            } else {
                &stats.positions
            }
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        });
        for partition in 0..self.handles.registry.partition_count(&definition.input) {
            let log = self
                .handles
                .registry
                .partition_log(&definition.input, partition);
            let Ok(log) = log else {
                // In a cluster this node may hold no copy of the partition: its committed
                // position is still known (lag is counted where a copy is).
                if let Some(offset) = committed.get(&partition) {
                    description.positions.push(PartitionOffset {
                        partition,
                        offset: *offset,
                    });
                }
                continue;
            };
            let position = live
                .as_ref()
                .and_then(|live| live.get(&partition).copied())
                .or_else(|| committed.get(&partition).copied())
                .unwrap_or_else(|| log.log_start_offset());
            // A stored position can be anything `__consumer_offsets` holds: no overflow.
            let lag = u64::try_from(log.high_watermark().saturating_sub(position)).unwrap_or(0);
            description.lag = description.lag.saturating_add(lag);
            description.positions.push(PartitionOffset {
                partition,
                offset: position,
            });
            if runs_here.contains(&partition) {
                let counters = counters.get(&partition).copied().unwrap_or_default();
                description.partitions.push(TransformPartitionStatus {
                    partition,
                    node_id: self.handles.node_id,
                    position,
                    lag,
                    records_in: counters.records_in,
                    records_out: counters.records_out,
                    records_dead: counters.records_dead,
                    busy_us: counters.busy_us,
                });
            }
        }
        if let Some(spec) = &definition.stateful {
            description.state_partitions = spec.state_partitions;
            if let Some(join) = &spec.join {
                self.describe_join(join, stats.as_deref(), &mut description);
            }
            description.window = spec.window.as_ref().map(wire_window);
        }
        if let Some(stats) = &stats {
            let lock = |map: &Mutex<BTreeMap<u32, u64>>| -> u64 {
                map.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .values()
                    .fold(0u64, |sum, value| sum.saturating_add(*value))
            };
            description.state_bytes = lock(&stats.state_bytes);
            description.restore_records = lock(&stats.restore_records);
            description.windows_open = lock(&stats.windows_open);
            description.records_late = stats.records_late.load(Ordering::Relaxed);
            description.state_partitions_ready = u32::try_from(
                stats
                    .stores
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len(),
            )
            .unwrap_or(u32::MAX);
        }
        if let Some(stats) = stats {
            description.records_in = stats.records_in.load(Ordering::Relaxed);
            description.records_out = stats.records_out.load(Ordering::Relaxed);
            description.records_dead = stats.records_dead.load(Ordering::Relaxed);
            description.busy_us = stats.busy_us.load(Ordering::Relaxed);
            description.records_late = stats.records_late.load(Ordering::Relaxed);
            if last_error.is_empty() {
                last_error = stats
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
            }
        }
        description.last_error = crate::broker::client_text::without_paths(&last_error);
        description
    }

    /// A join's second input in `describe`: its positions (the state tasks' committed ones,
    /// else the partition's start) and lag.
    fn describe_join(
        &self,
        join: &super::metadata::JoinSpec,
        stats: Option<&TransformStats>,
        description: &mut TransformDescription,
    ) {
        description.join_input = join.right.clone();
        description.join_table = join.kind == super::metadata::JoinKind::Table;
        let committed = stats
            .map(|stats| {
                stats
                    .join_positions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        for partition in 0..self.handles.registry.partition_count(&join.right) {
            let Ok(log) = self.handles.registry.partition_log(&join.right, partition) else {
                continue;
            };
            let position = committed
                .get(&partition)
                .copied()
                .unwrap_or_else(|| log.log_start_offset());
            let lag = u64::try_from(log.high_watermark().saturating_sub(position)).unwrap_or(0);
            description.join_lag = description.join_lag.saturating_add(lag);
            description.join_positions.push(PartitionOffset {
                partition,
                offset: position,
            });
        }
    }

    /// The stores of a stateful transform running here, by state partition, with its
    /// spec; or the error answer (no such transform, not stateful).
    async fn table_stores(
        &self,
        name: &str,
    ) -> Result<
        (
            super::metadata::StatefulSpec,
            BTreeMap<u32, Arc<tokio::sync::Mutex<crate::streams::store::StateStore>>>,
        ),
        (ErrorCode, String),
    > {
        let Some(definition) = self.stored_transform(name).await else {
            return Err((
                ErrorCode::TransformNotFound,
                format!("no transform named {name:?}"),
            ));
        };
        let Some(spec) = definition.stateful else {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "transform {name:?} keeps no state (only aggregate transforms have a table)"
                ),
            ));
        };
        let stores = self
            .running()
            .get(name)
            .map(|running| {
                running
                    .stats
                    .stores
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default();
        Ok((spec, stores))
    }

    /// One key of a stateful transform's table (`ledge table get`): the state partition
    /// murmur2 gives the key, as last committed.
    pub async fn table_get(
        &self,
        request: ledge_protocol::wire::TableGetRequest,
    ) -> ledge_protocol::wire::TableGetResponse {
        use ledge_protocol::wire::TableGetResponse;
        let (spec, stores) = match self.table_stores(&request.name).await {
            Ok(found) => found,
            Err((error, message)) => {
                return TableGetResponse {
                    error,
                    message,
                    ..TableGetResponse::default()
                };
            }
        };
        let partition =
            ledge_protocol::partitioner::partition_for_key(&request.key, spec.state_partitions);
        let Some(store) = stores.get(&partition) else {
            return TableGetResponse {
                error: ErrorCode::LeaderNotAvailable,
                message: format!(
                    "state partition {partition} of transform {:?} is restoring or not running; retry",
                    request.name
                ),
                ..TableGetResponse::default()
            };
        };
        if spec.window.is_some() {
            // A windowed table: every window of the key, in window order.
            let store = store.lock().await;
            let windows = store
                .windows_of(
                    crate::streams::store::STORE_AGGREGATE,
                    &request.key,
                    i64::MIN,
                    i64::MAX,
                )
                .map(|(key, value)| table_entry(key, value, partition))
                .collect();
            return TableGetResponse {
                windows,
                ..TableGetResponse::default()
            };
        }
        let key = crate::streams::store::StateKey::plain(
            crate::streams::store::STORE_AGGREGATE,
            request.key,
        );
        let value = store.lock().await.get(&key).cloned();
        TableGetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
            ..TableGetResponse::default()
        }
    }

    /// The keys of a stateful transform's table starting with a prefix, in key order, at
    /// most `limit` (and `transforms.table_scan_entries_max`).
    pub async fn table_scan(
        &self,
        request: ledge_protocol::wire::TableScanRequest,
    ) -> ledge_protocol::wire::TableScanResponse {
        use ledge_protocol::wire::{TableEntry, TableScanResponse};
        let (spec, stores) = match self.table_stores(&request.name).await {
            Ok(found) => found,
            Err((error, message)) => {
                return TableScanResponse {
                    error,
                    message,
                    ..TableScanResponse::default()
                };
            }
        };
        if let Some(missing) = (0..spec.state_partitions).find(|p| !stores.contains_key(p)) {
            return TableScanResponse {
                error: ErrorCode::LeaderNotAvailable,
                message: format!(
                    "state partition {missing} of transform {:?} is restoring or not running; retry",
                    request.name
                ),
                ..TableScanResponse::default()
            };
        }
        let max = self.handles.limits.table_scan_entries_max;
        let limit = match usize::try_from(request.limit) {
            Ok(0) | Err(_) => max,
            Ok(limit) => limit.min(max),
        };
        let mut entries = Vec::new();
        let mut truncated = false;
        for (partition, store) in &stores {
            let store = store.lock().await;
            // Each partition yields keys in order: its first `limit` are enough to pick the
            // first `limit` overall.
            for (taken, (key, value)) in store
                .scan_prefix(crate::streams::store::STORE_AGGREGATE, &request.prefix)
                .enumerate()
            {
                if taken == limit {
                    truncated = true;
                    break;
                }
                entries.push(table_entry(key, value, *partition));
            }
        }
        entries.sort_by(|a, b| {
            let window = |entry: &TableEntry| entry.window.as_ref().map(|w| (w.start_ms, w.end_ms));
            a.key.cmp(&b.key).then_with(|| window(a).cmp(&window(b)))
        });
        if entries.len() > limit {
            entries.truncate(limit);
            truncated = true;
        }
        TableScanResponse {
            entries,
            truncated,
            ..TableScanResponse::default()
        }
    }

    /// The transforms running on this node for `/metrics`: (name, lag over the input
    /// partitions they run here, records sent to the dead-letter topic here), sorted.
    pub fn metrics_samples(&self) -> Vec<crate::metrics::snapshot::TransformSample> {
        let running: Vec<(String, String, Arc<TransformStats>, Vec<u32>)> = self
            .running()
            .iter()
            .map(|(name, running)| {
                (
                    name.clone(),
                    running.version.borrow().definition.input.clone(),
                    Arc::clone(&running.stats),
                    running.tasks.keys().copied().collect(),
                )
            })
            .collect();
        running
            .into_iter()
            .map(|(name, input, stats, partitions)| {
                let positions = stats
                    .positions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let lag = partitions
                    .iter()
                    .filter_map(|partition| {
                        let log = self
                            .handles
                            .registry
                            .partition_log(&input, *partition)
                            .ok()?;
                        let position = positions
                            .get(partition)
                            .copied()
                            .unwrap_or_else(|| log.log_start_offset());
                        u64::try_from(log.high_watermark().saturating_sub(position)).ok()
                    })
                    .fold(0u64, u64::saturating_add);
                crate::metrics::snapshot::TransformSample {
                    transform: name,
                    lag,
                    dead_letters: stats.records_dead.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Reconciles `[[transform]]` tables from the config file: deploys what is new or
    /// changed (module bytes, parameters, topics, policy); leaves the rest running.
    pub async fn reconcile(
        &self,
        declared: Vec<(DeclaredTransform, String)>,
    ) -> Result<(), super::BrokerError> {
        for (transform, origin) in declared {
            let existing = self.stored_transform(&transform.name).await;
            let unchanged = existing.as_ref().is_some_and(|existing| {
                existing.module.hash == crate::wasm::content_hash(&transform.module)
                    && existing.module.kind == transform.kind
                    && existing.module.params == transform.params
                    && existing.on_error == transform.on_error
                    && (transform.output.is_empty() || existing.output == transform.output)
                    && existing
                        .stateful
                        .as_ref()
                        .and_then(|spec| spec.join.as_ref())
                        == transform.join.as_ref()
            });
            if unchanged {
                continue;
            }
            self.deploy(transform)
                .await
                .map_err(|source| super::BrokerError::DeclaredTransform { origin, source })?;
        }
        Ok(())
    }
}

impl<D: Disk> TransformHandles<D> {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunningTransform>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a task for each partition of a running transform's input that should have
    /// one and has none (all of them on one node; in a cluster the ones this node leads),
    /// and ends the tasks of partitions this node stopped leading: the task moves with the
    /// leadership, and the new leader's task resumes from the committed position.
    fn start_missing_tasks(self: &Arc<Self>) {
        let link = self.link.get();
        let mut running = self.running();
        for (name, transform) in running.iter_mut() {
            let (input, stateful) = {
                let version = transform.version.borrow();
                (
                    version.definition.input.clone(),
                    version.definition.stateful.clone(),
                )
            };
            if let Some(spec) = &stateful {
                // Stage 2: one task per state partition (stateful transforms run on one
                // node, so all of them here).
                for partition in 0..spec.state_partitions {
                    if transform.state_tasks.contains_key(&partition) {
                        continue;
                    }
                    let task = stateful::StateTask {
                        handles: Arc::clone(self),
                        name: name.clone(),
                        partition,
                        versions: transform.version.subscribe(),
                        stats: Arc::clone(&transform.stats),
                        records_per_commit: std::sync::atomic::AtomicUsize::new(usize::MAX),
                    };
                    transform
                        .state_tasks
                        .insert(partition, tokio::spawn(task.run()));
                }
            }
            // Stage 1 of a stateful transform re-keys each input partition; without
            // `ledge_group` stage 2 reads the input itself.
            let partitions = match &stateful {
                Some(spec) if !spec.repartition => 0,
                _ => self.registry.partition_count(&input),
            };
            let runs_here = |partition: u32| {
                link.is_none_or(|link| link.leader(&input, partition) == Some(link.node_id()))
            };
            transform.tasks.retain(|partition, task| {
                let keep = *partition < partitions && runs_here(*partition);
                if !keep {
                    task.abort();
                    transform
                        .stats
                        .positions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(partition);
                    tracing::info!(transform = %name, partition, "transform task stops here (the partition is led elsewhere)");
                }
                keep
            });
            for partition in 0..partitions {
                if transform.tasks.contains_key(&partition) || !runs_here(partition) {
                    continue;
                }
                let task = PartitionTask {
                    handles: Arc::clone(self),
                    name: name.clone(),
                    partition,
                    versions: transform.version.subscribe(),
                    stats: Arc::clone(&transform.stats),
                    in_flight: None,
                    committed: None,
                };
                transform.tasks.insert(partition, tokio::spawn(task.run()));
            }
        }
    }

    /// Records why a transform stopped (or that it runs again) and tells its tasks.
    async fn set_stopped(
        &self,
        name: &str,
        stopped: Option<StoppedReason>,
    ) -> Result<(), AlterTransformError> {
        if let Some(link) = self.link.get() {
            // In a cluster the state is the controller's; the mirror hands it to the tasks
            // on every node that runs this transform.
            let Some(mut definition) = self.registry.transform(name).await else {
                return Err(SetTransformStoppedError::NotFound(name.to_string()).into());
            };
            definition.stopped = stopped;
            return link
                .admin(crate::controller::admin::AdminRequest::PutTransform {
                    name: name.to_string(),
                    transform: Box::new(definition),
                })
                .await
                .map_err(AlterTransformError::Controller);
        }
        let definition = self.registry.set_transform_stopped(name, stopped).await?;
        if let Some(running) = self.running().get(name) {
            let plugin = Arc::clone(&running.version.borrow().plugin);
            running
                .version
                .send_replace(Arc::new(TransformVersion { definition, plugin }));
        }
        Ok(())
    }

    /// The committed position of a transform in one input partition: from the local
    /// group service, or in a cluster from the coordinator of its positions.
    async fn transform_position(
        &self,
        name: &str,
        topic: &str,
        partition: u32,
    ) -> Result<Option<i64>, LinkError> {
        match self.link.get() {
            None => Ok(self
                .groups
                .committed_offset(&position_group(name), topic, partition)),
            Some(link) => Ok(link
                .positions(name.to_string(), topic.to_string())
                .await?
                .get(&partition)
                .copied()),
        }
    }

    async fn commit_transform_position(
        &self,
        name: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), task::CommitError> {
        if let Some(link) = self.link.get() {
            // At the coordinator, synced and held by the ISR of its offsets partition: the
            // node that leads the input next resumes from it, whatever dies.
            return link
                .commit_position(name.to_string(), topic.to_string(), partition, offset)
                .await
                .map_err(task::CommitError::Cluster);
        }
        let now_ms = self.clock.wall_time_ms();
        let group = position_group(name);
        let key = OffsetKey {
            group: group.clone(),
            topic: topic.to_string(),
            partition,
        };
        // Written, not synced: the output it covers is already durable, so a position lost
        // to a crash only repeats work (at-least-once), and the iteration saves an fsync.
        self.groups
            .append_offsets(
                &*self.registry,
                &group,
                &[Record {
                    timestamp: now_ms,
                    key: Some(key.encode()),
                    value: Some(encode_value(offset, "", now_ms)),
                    headers: Vec::new(),
                }],
                AppendDurability::Written,
            )
            .await
            .map_err(task::CommitError::Local)
    }

    /// Appends records to a partition with `acks=all`, in batches of bounded size.
    async fn append_records(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<(), AppendRecordsError> {
        let limit = self.limits.output_batch_bytes.max(1);
        let mut chunk: Vec<Record> = Vec::new();
        let mut chunk_bytes = 0usize;
        let mut pending = Vec::new();
        for record in records {
            let size = 32
                + record.key.as_ref().map_or(0, Bytes::len)
                + record.value.as_ref().map_or(0, Bytes::len)
                + record
                    .headers
                    .iter()
                    .map(|header| {
                        16 + header.key.len() + header.value.as_ref().map_or(0, Bytes::len)
                    })
                    .sum::<usize>();
            if !chunk.is_empty() && chunk_bytes + size > limit {
                pending.push(std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += size;
            chunk.push(record);
        }
        if !chunk.is_empty() {
            pending.push(chunk);
        }
        if let Some(link) = self.link.get() {
            // To the partition's leader, acks=all; in order, so a failure leaves a prefix.
            for records in pending {
                let batch = encode_batch(&records, &EncodeOptions::default())
                    .map_err(AppendRecordsError::Encode)?;
                link.append(topic.to_string(), partition, batch)
                    .await
                    .map_err(AppendRecordsError::Leader)?;
            }
            return Ok(());
        }
        let target = self.registry.partition(topic, partition)?;
        let log = target.online_log()?;
        let appends = pending.into_iter().map(|records| {
            let log = log.clone();
            let target = &target;
            async move {
                let batch = encode_batch(&records, &EncodeOptions::default())
                    .map_err(AppendRecordsError::Encode)?;
                log.append(batch, AppendDurability::Synced)
                    .await
                    .map(|_| ())
                    .map_err(|error| {
                        // As for any append: a fenced log is reopened in the background.
                        if matches!(error, AppendError::Fenced { .. }) {
                            self.registry.reopen_fenced(target);
                        }
                        AppendRecordsError::Append(error)
                    })
            }
        });
        // Queued together, the writer commits them with one fdatasync.
        for result in futures_util::future::join_all(appends).await {
            result?;
        }
        Ok(())
    }
}
