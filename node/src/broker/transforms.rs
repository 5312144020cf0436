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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{
    AlterTransformRequest, AlterTransformResponse, DeployTransformRequest, DeployTransformResponse,
    DescribeTransformsRequest, DescribeTransformsResponse, ErrorCode, PartitionOffset,
    TransformDescription,
};
use ledge_protocol::{BatchIter, EncodeOptions, Header, Record, encode_batch};
use tokio::sync::watch;

use super::metadata::{StoppedReason, StoredTransform};
use super::plugins::{open_batch, output_record, params_list, params_map};
use super::topic_config::{validate_module_name, validate_topic_name};
use super::{Broker, read};
use crate::groups::offsets::{OffsetKey, encode_value};
use crate::storage::{AppendDurability, Disk, ReadError};
use crate::wasm::{Outcome, Plugin, PluginKind};

/// What a transform does with a record its module fails; shared with the client and the
/// wire (`ledge_protocol::wasm_abi`), stored by name in metadata.json.
pub use ledge_protocol::OnError;

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
    positions: Mutex<BTreeMap<u32, i64>>,
    breaker: Mutex<(u64, u64)>,
}

impl TransformStats {
    fn set_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = message;
    }

    /// Adds a batch's counts to the breaker window; true when it should trip.
    fn breaker_trips(&self, records: u64, failed: u64, limits: &TransformLimits) -> Option<String> {
        let mut window = self
            .breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        window.0 += records;
        window.1 += failed;
        let (seen, bad) = *window;
        let tripped = seen >= limits.breaker_records_min
            && (bad as f64) > limits.breaker_error_ratio * seen as f64;
        if seen >= limits.breaker_window_records {
            // Decay: the window keeps half its weight, so old history fades.
            window.0 /= 2;
            window.1 /= 2;
        }
        tripped.then(|| format!("circuit breaker: {bad} of the last {seen} records failed"))
    }
}

/// A transform's running tasks.
pub(crate) struct RunningTransform {
    version: watch::Sender<Arc<TransformVersion>>,
    stats: Arc<TransformStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RunningTransform {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The prefix of the groups under which transforms' positions are committed.
pub(crate) const POSITION_GROUP_PREFIX: &str = "__transform.";

/// The group under which a transform's positions are committed.
pub fn position_group(name: &str) -> String {
    format!("{POSITION_GROUP_PREFIX}{name}")
}

/// A transform declared in the config file (`[[transform]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

impl<D: Disk> Broker<D> {
    /// The transform's stored definition, if it exists.
    async fn stored_transform(&self, name: &str) -> Option<StoredTransform> {
        self.admin
            .lock()
            .await
            .current()
            .transforms
            .get(name)
            .cloned()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RunningTransform>> {
        self.transforms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the stored transforms; call once, on the shared broker, after `open`.
    pub async fn start_transforms(self: &Arc<Self>) {
        let _ = self.self_ref.set(Arc::downgrade(self));
        let stored = self.admin.lock().await.current().transforms.clone();
        for (name, definition) in stored {
            let plugin = match self
                .plugin(&definition.module, definition.module.params.clone())
                .await
            {
                Ok(plugin) => plugin,
                Err((_, message)) => {
                    tracing::error!(transform = %name, %message, "transform cannot start");
                    continue;
                }
            };
            self.launch(&name, definition, plugin);
        }
    }

    fn launch(&self, name: &str, definition: StoredTransform, plugin: Arc<Plugin>) {
        let Some(weak) = self.self_ref.get().cloned() else {
            // Deployed before `start_transforms` (the config file's `[[transform]]`s are
            // reconciled at start, before the broker is shared): the definition is stored,
            // and `start_transforms` launches every stored transform.
            tracing::debug!(transform = %name, "transform recorded; it starts with the broker's transforms");
            return;
        };
        let mut running = self.running();
        let version = Arc::new(TransformVersion { definition, plugin });
        if let Some(existing) = running.get(name) {
            // A new version: the tasks pick it up at their next batch boundary.
            existing.version.send_replace(version);
            return;
        }
        let (sender, _) = watch::channel(Arc::clone(&version));
        let stats = Arc::new(TransformStats::default());
        let partitions = self.partition_count(&version.definition.input);
        let tasks = (0..partitions)
            .map(|partition| {
                let task = PartitionTask {
                    broker: weak.clone(),
                    name: name.to_string(),
                    partition,
                    versions: sender.subscribe(),
                    stats: Arc::clone(&stats),
                    in_flight: None,
                };
                tokio::spawn(task.run())
            })
            .collect();
        running.insert(
            name.to_string(),
            RunningTransform {
                version: sender,
                stats,
                tasks,
            },
        );
    }

    /// Stops every transform task (at shutdown, before the logs close).
    pub(crate) fn stop_transforms(&self) {
        self.running().clear();
    }

    pub(crate) async fn deploy_transform_request(
        &self,
        request: DeployTransformRequest,
    ) -> DeployTransformResponse {
        let declared = (|| {
            Ok::<_, (ErrorCode, String)>(DeclaredTransform {
                kind: request.kind,
                on_error: request.on_error,
                params: params_map(&request.params)
                    .map_err(|error| (ErrorCode::InvalidRequest, error))?,
                name: request.name,
                module: request.module,
                input: request.input,
                output: request.output,
                dead_letter_topic: request.dead_letter_topic,
            })
        })();
        let result = match declared {
            Ok(declared) => self.deploy_transform(declared).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(version) => DeployTransformResponse {
                error: ErrorCode::None,
                message: String::new(),
                version,
            },
            Err((error, message)) => DeployTransformResponse {
                error,
                message,
                version: 0,
            },
        }
    }

    /// Deploys a transform or a new version of one; returns the version.
    pub async fn deploy_transform(
        &self,
        declared: DeclaredTransform,
    ) -> Result<u32, (ErrorCode, String)> {
        let name = declared.name.clone();
        validate_module_name(&name).map_err(|error| {
            (
                ErrorCode::InvalidRequest,
                format!("transform name: {error}"),
            )
        })?;
        let Some(input) = self.topic(&declared.input) else {
            return Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("input topic {:?} does not exist", declared.input),
            ));
        };
        if declared.input.starts_with("__") {
            return Err((
                ErrorCode::InternalTopic,
                "a transform cannot read an internal topic".into(),
            ));
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
            validate_topic_name(topic).map_err(|error| (ErrorCode::InvalidTopic, error))?;
            if topic.starts_with("__") || *topic == declared.input {
                return Err((
                    ErrorCode::InvalidTopic,
                    format!("a transform cannot write {topic:?} (internal, or its own input)"),
                ));
            }
        }
        if let Some(existing) = &existing
            && existing.input != declared.input
        {
            return Err((
                ErrorCode::TransformAlreadyExists,
                format!(
                    "transform {name:?} reads {:?}; remove it before deploying one that reads {:?}",
                    existing.input, declared.input
                ),
            ));
        }
        if existing.is_none()
            && self.admin.lock().await.current().transforms.len()
                >= self.config.transforms.transforms_max
        {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "the node runs at most {} transforms (transforms.transforms_max)",
                    self.config.transforms.transforms_max
                ),
            ));
        }
        let module = self
            .store_module(declared.module, declared.kind, declared.params.clone())
            .await?;
        let plugin = self.plugin(&module, declared.params.clone()).await?;
        let input_partitions = read(&input.partitions).len() as u32;
        if self.topic(&output).is_none() {
            match self
                .create_topic(&output, input_partitions, &BTreeMap::new())
                .await
            {
                Ok(()) | Err((ErrorCode::TopicAlreadyExists, _)) => {}
                Err(error) => return Err(error),
            }
        }
        if declared.on_error == OnError::DeadLetter && self.topic(&dead_letter_topic).is_none() {
            match self
                .create_topic(&dead_letter_topic, 1, &BTreeMap::new())
                .await
            {
                Ok(()) | Err((ErrorCode::TopicAlreadyExists, _)) => {}
                Err(error) => return Err(error),
            }
        }
        let version = match &existing {
            None => 1,
            // The version comes from metadata.json; wrapping would repeat old versions.
            Some(existing) => existing.version.checked_add(1).ok_or_else(|| {
                (
                    ErrorCode::InvalidRequest,
                    format!(
                        "transform {:?} is at version {}, the last there is; remove it and deploy it again",
                        declared.name, existing.version
                    ),
                )
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
        };
        {
            let mut admin = self.admin.lock().await;
            let mut next = admin.current().clone();
            next.transforms.insert(name.clone(), definition.clone());
            admin.store(next).await.map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record transform {name:?}: {error}"),
                )
            })?;
        }
        self.collect_module_garbage().await;
        let version = definition.version;
        self.launch(&name, definition, plugin);
        if let Some(running) = self.running().get(&name) {
            running.stats.set_error(String::new());
        }
        tracing::info!(transform = %name, version, "transform deployed");
        Ok(version)
    }

    /// Records why a transform stopped (or that it runs again) and tells its tasks.
    async fn set_stopped(
        &self,
        name: &str,
        stopped: Option<StoppedReason>,
    ) -> Result<(), (ErrorCode, String)> {
        let definition = {
            let mut admin = self.admin.lock().await;
            let mut next = admin.current().clone();
            let Some(definition) = next.transforms.get_mut(name) else {
                return Err((
                    ErrorCode::ModuleNotFound,
                    format!("no transform named {name:?}"),
                ));
            };
            definition.stopped = stopped;
            let definition = definition.clone();
            admin.store(next).await.map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record transform {name:?}: {error}"),
                )
            })?;
            definition
        };
        if let Some(running) = self.running().get(name) {
            let plugin = Arc::clone(&running.version.borrow().plugin);
            running
                .version
                .send_replace(Arc::new(TransformVersion { definition, plugin }));
        }
        Ok(())
    }

    pub(crate) async fn alter_transform(
        &self,
        request: AlterTransformRequest,
    ) -> AlterTransformResponse {
        let name = request.name.as_str();
        let result = match request.action.as_str() {
            "pause" => {
                self.set_stopped(
                    name,
                    Some(StoppedReason {
                        state: "paused".into(),
                        reason: "paused by an operator".into(),
                    }),
                )
                .await
            }
            "resume" => {
                let result = self.set_stopped(name, None).await;
                if let Some(running) = self.running().get(name) {
                    *running
                        .stats
                        .breaker
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = (0, 0);
                }
                result
            }
            "remove" => self.remove_transform(name).await,
            other => Err((
                ErrorCode::InvalidRequest,
                format!("unknown action {other:?}: pause, resume or remove"),
            )),
        };
        match result {
            Ok(()) => AlterTransformResponse {
                error: ErrorCode::None,
                message: String::new(),
            },
            Err((error, message)) => AlterTransformResponse { error, message },
        }
    }

    async fn remove_transform(&self, name: &str) -> Result<(), (ErrorCode, String)> {
        {
            let mut admin = self.admin.lock().await;
            let mut next = admin.current().clone();
            if next.transforms.remove(name).is_none() {
                return Err((
                    ErrorCode::ModuleNotFound,
                    format!("no transform named {name:?}"),
                ));
            }
            admin.store(next).await.map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record the removal: {error}"),
                )
            })?;
        }
        self.running().remove(name);
        match self.delete_group(&position_group(name)).await {
            Ok(()) | Err((ErrorCode::GroupIdNotFound, _)) => {}
            Err((_, message)) => {
                tracing::warn!(transform = %name, %message, "removing transform positions failed");
            }
        }
        self.collect_module_garbage().await;
        Ok(())
    }

    pub(crate) async fn describe_transforms(
        &self,
        request: DescribeTransformsRequest,
    ) -> DescribeTransformsResponse {
        let stored = self.admin.lock().await.current().transforms.clone();
        let names: Vec<String> = if request.names.is_empty() {
            stored.keys().cloned().collect()
        } else {
            request.names
        };
        let transforms = names
            .into_iter()
            .map(|name| match stored.get(&name) {
                None => TransformDescription {
                    last_error: format!("no transform named {name:?}"),
                    name,
                    error: ErrorCode::ModuleNotFound,
                    ..TransformDescription::default()
                },
                Some(definition) => self.describe_transform(&name, definition),
            })
            .collect();
        DescribeTransformsResponse { transforms }
    }

    fn describe_transform(&self, name: &str, definition: &StoredTransform) -> TransformDescription {
        let running = self.running();
        let stats = running.get(name).map(|running| Arc::clone(&running.stats));
        drop(running);
        let (state, mut last_error) = match &definition.stopped {
            Some(stopped) => (stopped.state.clone(), stopped.reason.clone()),
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
        let group = position_group(name);
        let committed: BTreeMap<u32, i64> = {
            let offsets = self
                .offsets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            offsets
                .group(&group)
                .map(|positions| {
                    positions
                        .iter()
                        .filter(|((topic, _), _)| *topic == definition.input)
                        .map(|((_, partition), committed)| (*partition, committed.offset))
                        .collect()
                })
                .unwrap_or_default()
        };
        let live = stats.as_ref().map(|stats| {
            stats
                .positions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        for partition in 0..self.partition_count(&definition.input) {
            let log = self
                .partition(&definition.input, partition)
                .and_then(|partition| partition.log());
            let Ok(log) = log else { continue };
            let position = live
                .as_ref()
                .and_then(|live| live.get(&partition).copied())
                .or_else(|| committed.get(&partition).copied())
                .unwrap_or_else(|| log.log_start_offset());
            // A stored position can be anything `__consumer_offsets` holds: no overflow.
            description.lag = description.lag.saturating_add(
                u64::try_from(log.high_watermark().saturating_sub(position)).unwrap_or(0),
            );
            description.positions.push(PartitionOffset {
                partition,
                offset: position,
            });
        }
        if let Some(stats) = stats {
            description.records_in = stats.records_in.load(Ordering::Relaxed);
            description.records_out = stats.records_out.load(Ordering::Relaxed);
            description.records_dead = stats.records_dead.load(Ordering::Relaxed);
            description.busy_us = stats.busy_us.load(Ordering::Relaxed);
            if last_error.is_empty() {
                last_error = stats
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
            }
        }
        description.last_error = last_error;
        description
    }

    /// Reconciles `[[transform]]` tables from the config file: deploys what is new or
    /// changed (module bytes, parameters, topics, policy); leaves the rest running.
    pub async fn reconcile_transforms(
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
            });
            if unchanged {
                continue;
            }
            self.deploy_transform(transform)
                .await
                .map_err(|(_, message)| {
                    super::BrokerError::Reconcile(format!("{origin}: {message}"))
                })?;
        }
        Ok(())
    }

    /// The committed position of a transform in one input partition.
    fn transform_position(&self, name: &str, topic: &str, partition: u32) -> Option<i64> {
        let offsets = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        offsets
            .group(&position_group(name))
            .and_then(|positions| positions.get(&(topic.to_string(), partition)))
            .map(|committed| committed.offset)
    }

    async fn commit_transform_position(
        &self,
        name: &str,
        topic: &str,
        partition: u32,
        offset: i64,
    ) -> Result<(), (ErrorCode, String)> {
        let now_ms = self.clock.wall_time_ms();
        let key = OffsetKey {
            group: position_group(name),
            topic: topic.to_string(),
            partition,
        };
        // Written, not synced: the output it covers is already durable, so a position lost
        // to a crash only repeats work (at-least-once), and the iteration saves an fsync.
        self.append_offsets_with(
            &[Record {
                timestamp: now_ms,
                key: Some(key.encode()),
                value: Some(encode_value(offset, "", now_ms)),
                headers: Vec::new(),
            }],
            AppendDurability::Written,
        )
        .await
    }

    /// Appends records to a partition with `acks=all`, in batches of bounded size.
    async fn append_records(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<Record>,
    ) -> Result<(), (ErrorCode, String)> {
        let target = self.partition(topic, partition)?;
        let log = target.log()?;
        let limit = self.config.transforms.output_batch_bytes.max(1);
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
        let appends = pending.into_iter().map(|records| {
            let log = log.clone();
            let target = &target;
            async move {
                let batch = encode_batch(&records, &EncodeOptions::default())
                    .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
                log.append(batch, AppendDurability::Synced)
                    .await
                    .map(|_| ())
                    .map_err(|error| self.append_failed(target, error))
            }
        });
        // Queued together, the writer commits them with one fdatasync.
        for result in futures_util::future::join_all(appends).await {
            result?;
        }
        Ok(())
    }
}

/// What one iteration produced before it was written.
#[derive(Default)]
struct IterationOutput {
    outputs: BTreeMap<u32, Vec<Record>>,
    dead: Vec<Record>,
    records_in: u64,
    records_out: u64,
    failed: u64,
    last_error: Option<String>,
}

struct PartitionTask<D: Disk> {
    broker: Weak<Broker<D>>,
    name: String,
    partition: u32,
    versions: watch::Receiver<Arc<TransformVersion>>,
    stats: Arc<TransformStats>,
    /// The previous chunk's output being made durable (then its position committed) while
    /// the next chunk is read and run: the module never waits for an fdatasync.
    in_flight: Option<InFlight>,
}

struct InFlight {
    write: tokio::task::JoinHandle<Result<(), String>>,
    next_position: i64,
}

/// A processed chunk of input, ready to be written.
struct Processed {
    output: IterationOutput,
    start: i64,
    next_position: i64,
    stop_reason: Option<String>,
}

enum Step {
    /// Nothing to read: wait on the high watermark.
    CaughtUp(watch::Receiver<i64>),
    /// Go on at once (input was skipped).
    Again,
    /// Output to write.
    Work(Processed),
}

impl<D: Disk> PartitionTask<D> {
    async fn run(mut self) {
        loop {
            let version = Arc::clone(&self.versions.borrow_and_update());
            if version.definition.stopped.is_some() {
                let _ = self.settle().await;
                if self.versions.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let Some(broker) = self.broker.upgrade() else {
                let _ = self.settle().await;
                return;
            };
            let pending_position = self.in_flight.as_ref().map(|write| write.next_position);
            let step = self.process(&broker, &version, pending_position).await;
            let step = match step {
                Ok(step) => step,
                Err(message) => {
                    let _ = self.settle().await;
                    self.back_off(&broker, message).await;
                    continue;
                }
            };
            match step {
                Step::Again => {}
                Step::CaughtUp(mut high_watermark) => {
                    if let Err(message) = self.settle().await {
                        self.back_off(&broker, message).await;
                        continue;
                    }
                    // Caught up: wait for input, a new version, or the idle timeout.
                    let idle = broker.config.transforms.idle_wait;
                    let idle_over = crate::clock::sleep(&*broker.clock, idle);
                    drop(broker);
                    tokio::select! {
                        _ = high_watermark.changed() => {}
                        () = idle_over => {}
                        changed = self.versions.changed() => if changed.is_err() { return },
                    }
                }
                Step::Work(processed) => {
                    if let Err(message) = self.settle().await {
                        // The previous chunk did not become durable: drop this one too and
                        // start again from the committed position.
                        self.back_off(&broker, message).await;
                        continue;
                    }
                    let must_finish = processed.stop_reason.is_some();
                    let next_position = processed.next_position;
                    let write = tokio::spawn(write_chunk(
                        Arc::clone(&broker),
                        self.name.clone(),
                        self.partition,
                        version.definition.clone(),
                        processed,
                        Arc::clone(&self.stats),
                    ));
                    self.in_flight = Some(InFlight {
                        write,
                        next_position,
                    });
                    if must_finish && let Err(message) = self.settle().await {
                        self.back_off(&broker, message).await;
                    }
                }
            }
        }
    }

    /// Waits for the chunk being written, if any.
    async fn settle(&mut self) -> Result<(), String> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(in_flight) => in_flight
                .write
                .await
                .map_err(|error| format!("transform write task failed: {error}"))?,
        }
    }

    async fn back_off(&mut self, broker: &Arc<Broker<D>>, message: String) {
        tracing::warn!(transform = %self.name, partition = self.partition, %message, "transform iteration failed; retrying");
        self.stats.set_error(message);
        let backoff = broker.config.transforms.retry_backoff;
        tokio::select! {
            () = crate::clock::sleep(&*broker.clock, backoff) => {}
            _ = self.versions.changed() => {}
        }
    }

    /// Reads and runs one chunk of input from `pending_position` (where the chunk being
    /// written ends) or else the committed position.
    async fn process(
        &self,
        broker: &Arc<Broker<D>>,
        version: &TransformVersion,
        pending_position: Option<i64>,
    ) -> Result<Step, String> {
        let definition = &version.definition;
        let input = &definition.input;
        let log = broker
            .partition(input, self.partition)
            .and_then(|partition| partition.log())
            .map_err(|(_, message)| message)?;
        let start = pending_position.unwrap_or_else(|| {
            let start = broker
                .transform_position(&self.name, input, self.partition)
                .unwrap_or_else(|| log.log_start_offset())
                .max(log.log_start_offset());
            set_position(&self.stats, self.partition, start);
            start
        });
        let watch = log.subscribe_high_watermark();
        let read = match log
            .read(start, broker.config.transforms.read_bytes_max)
            .await
        {
            Ok(read) => read,
            Err(ReadError::OffsetOutOfRange {
                log_start_offset, ..
            }) if start < log_start_offset => {
                // Retention removed input the transform had not reached: note it and go on.
                let message = format!(
                    "input offsets {start}..{log_start_offset} were deleted by retention before the transform read them"
                );
                if pending_position.is_some() {
                    // Let the chunk in flight finish first; then start from the log start.
                    return Ok(Step::CaughtUp(watch));
                }
                self.stats.set_error(message);
                commit(
                    broker,
                    &self.name,
                    self.partition,
                    &self.stats,
                    input,
                    log_start_offset,
                )
                .await?;
                return Ok(Step::Again);
            }
            Err(ReadError::OffsetOutOfRange { .. }) => return Ok(Step::CaughtUp(watch)),
            Err(error) => return Err(error.to_string()),
        };
        if read.bytes.is_empty() {
            return Ok(Step::CaughtUp(watch));
        }
        let output_partitions = broker.partition_count(&definition.output).max(1);
        let input_partitions = broker.partition_count(input);
        let mut output = IterationOutput::default();
        let mut next_position = start;
        let mut stop_reason = None;
        for item in BatchIter::new(&read.bytes) {
            let (header, raw) = item.map_err(|error| format!("input batch unreadable: {error}"))?;
            let batch_end = header.last_offset() + 1;
            if header.is_control() || header.record_count == 0 {
                next_position = batch_end.max(next_position);
                continue;
            }
            let batch = read.bytes.slice_ref(raw);
            let opened = match open_batch(&batch, &broker.opened_batch_budget).await {
                Ok(opened) => opened,
                Err(error) => {
                    // Records that do not decode (stored before appends checked records)
                    // cannot be transformed; retrying would stall the partition forever.
                    let message = format!(
                        "partition {} batch at offset {} does not decode: {error}",
                        self.partition, header.base_offset
                    );
                    if definition.on_error == OnError::Stop {
                        stop_reason = Some(message);
                        break;
                    }
                    tracing::warn!(transform = %self.name, %message, "transform skips an input batch that does not decode");
                    // Published at once too: the skip is reported even if this chunk's write
                    // is dropped and redone.
                    self.stats.set_error(message.clone());
                    output.last_error = Some(message);
                    next_position = batch_end;
                    continue;
                }
            };
            let first = opened
                .records
                .iter()
                .position(|record| record.offset >= start)
                .unwrap_or(opened.records.len());
            let range = first..opened.records.len();
            let partition_count = if definition.module.kind == PluginKind::Partitioner {
                output_partitions
            } else {
                input_partitions
            };
            let began = broker.clock.now();
            let outcomes = match opened
                .run(
                    &version.plugin,
                    range.clone(),
                    self.partition,
                    partition_count,
                )
                .await
            {
                Ok(outcomes) => outcomes,
                Err(error) if definition.on_error == OnError::Stop => {
                    stop_reason = Some(format!(
                        "partition {} batch at offset {} failed: {error}",
                        self.partition, header.base_offset
                    ));
                    break;
                }
                Err(error) => {
                    tracing::info!(transform = %self.name, partition = self.partition, offset = header.base_offset, %error, "batch failed; isolating the failing records");
                    bisect(
                        &opened,
                        &version.plugin,
                        range.clone(),
                        self.partition,
                        partition_count,
                    )
                    .await
                }
            };
            self.stats.busy_us.fetch_add(
                u64::try_from(
                    broker
                        .clock
                        .now()
                        .saturating_duration_since(began)
                        .as_micros(),
                )
                .unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            let records = opened.records.get(range).unwrap_or_default();
            let mut batch_output = IterationOutput::default();
            for (record, outcome) in records.iter().zip(outcomes) {
                batch_output.records_in += 1;
                let target = self.partition % output_partitions;
                match outcome {
                    Outcome::Keep => {
                        batch_output.records_out += 1;
                        batch_output
                            .outputs
                            .entry(target)
                            .or_default()
                            .push(record.clone().into_record());
                    }
                    Outcome::Drop => {}
                    Outcome::Records(records_out) => {
                        batch_output.records_out += records_out.len() as u64;
                        let entry = batch_output.outputs.entry(target).or_default();
                        entry.extend(
                            records_out
                                .into_iter()
                                .map(|out| output_record(out, record.timestamp)),
                        );
                    }
                    Outcome::Partition(partition) => {
                        batch_output.records_out += 1;
                        batch_output
                            .outputs
                            .entry(partition)
                            .or_default()
                            .push(record.clone().into_record());
                    }
                    Outcome::Error(message) => {
                        batch_output.failed += 1;
                        if definition.on_error == OnError::Stop {
                            stop_reason = Some(format!(
                                "partition {} offset {} failed: {message}",
                                self.partition, record.offset
                            ));
                            break;
                        }
                        if definition.on_error == OnError::DeadLetter {
                            batch_output.dead.push(self.dead_letter(
                                record.clone().into_record(),
                                definition,
                                record.offset,
                                &message,
                            ));
                        }
                        batch_output.last_error = Some(format!(
                            "partition {} offset {}: {message}",
                            self.partition, record.offset
                        ));
                    }
                }
            }
            if stop_reason.is_some() {
                // Nothing of the failing batch is written: the transform resumes at it.
                break;
            }
            output.records_in += batch_output.records_in;
            output.records_out += batch_output.records_out;
            output.failed += batch_output.failed;
            output.last_error = batch_output.last_error.or(output.last_error);
            output.dead.extend(batch_output.dead);
            for (partition, records) in batch_output.outputs {
                output.outputs.entry(partition).or_default().extend(records);
            }
            next_position = batch_end;
        }
        Ok(Step::Work(Processed {
            output,
            start,
            next_position,
            stop_reason,
        }))
    }

    fn dead_letter(
        &self,
        mut record: Record,
        definition: &StoredTransform,
        offset: i64,
        error: &str,
    ) -> Record {
        let header = |key: &str, value: String| Header {
            key: key.into(),
            value: Some(Bytes::from(value)),
        };
        record.headers.extend([
            header("ledge.transform", self.name.clone()),
            header("ledge.source.topic", definition.input.clone()),
            header("ledge.source.partition", self.partition.to_string()),
            header("ledge.source.offset", offset.to_string()),
            header("ledge.error", error.to_string()),
        ]);
        record
    }
}

/// Writes a processed chunk: output (durable), dead letters, then the position; updates
/// the statistics and stops the transform if the chunk asks for it or the breaker trips.
async fn write_chunk<D: Disk>(
    broker: Arc<Broker<D>>,
    name: String,
    partition: u32,
    definition: StoredTransform,
    processed: Processed,
    stats: Arc<TransformStats>,
) -> Result<(), String> {
    let Processed {
        output,
        start,
        next_position,
        stop_reason,
    } = processed;
    let writes = output
        .outputs
        .into_iter()
        .map(|(target, records)| broker.append_records(&definition.output, target, records));
    for result in futures_util::future::join_all(writes).await {
        result.map_err(|(_, message)| format!("writing {:?}: {message}", definition.output))?;
    }
    if !output.dead.is_empty() {
        broker
            .append_records(&definition.dead_letter_topic, 0, output.dead)
            .await
            .map_err(|(_, message)| {
                format!("writing {:?}: {message}", definition.dead_letter_topic)
            })?;
    }
    if next_position > start {
        commit(
            &broker,
            &name,
            partition,
            &stats,
            &definition.input,
            next_position,
        )
        .await?;
    }
    stats
        .records_in
        .fetch_add(output.records_in, Ordering::Relaxed);
    stats
        .records_out
        .fetch_add(output.records_out, Ordering::Relaxed);
    stats
        .records_dead
        .fetch_add(output.failed, Ordering::Relaxed);
    if let Some(message) = output.last_error.clone() {
        stats.set_error(message);
    }
    if let Some(reason) = stop_reason {
        tracing::error!(transform = %name, partition, %reason, "transform stopped (on_error = stop)");
        stop(&broker, &name, &stats, "failed", reason).await;
        return Ok(());
    }
    if let Some(reason) =
        stats.breaker_trips(output.records_in, output.failed, &broker.config.transforms)
    {
        let reason = match output.last_error {
            Some(last) => format!("{reason}; last error: {last}"),
            None => reason,
        };
        tracing::error!(transform = %name, %reason, "transform paused");
        stop(&broker, &name, &stats, "paused", reason).await;
    }
    Ok(())
}

async fn commit<D: Disk>(
    broker: &Broker<D>,
    name: &str,
    partition: u32,
    stats: &TransformStats,
    input: &str,
    offset: i64,
) -> Result<(), String> {
    broker
        .commit_transform_position(name, input, partition, offset)
        .await
        .map_err(|(_, message)| format!("committing the position: {message}"))?;
    set_position(stats, partition, offset);
    Ok(())
}

fn set_position(stats: &TransformStats, partition: u32, offset: i64) {
    stats
        .positions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(partition, offset);
}

async fn stop<D: Disk>(
    broker: &Broker<D>,
    name: &str,
    stats: &TransformStats,
    state: &str,
    reason: String,
) {
    stats.set_error(reason.clone());
    let stopped = StoppedReason {
        state: state.into(),
        reason,
    };
    if let Err((_, message)) = broker.set_stopped(name, Some(stopped)).await {
        tracing::error!(transform = %name, %message, "could not record the stop");
    }
}

/// Runs `range` in halves until each failing call is a single record; those records get an
/// `Error` outcome with the failure, the rest their real outcomes.
fn bisect<'a>(
    opened: &'a super::plugins::OpenedBatch,
    plugin: &'a Arc<Plugin>,
    range: std::ops::Range<usize>,
    partition: u32,
    partition_count: u32,
) -> std::pin::Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'a>> {
    Box::pin(async move {
        if range.len() <= 1 {
            return match opened
                .run(plugin, range.clone(), partition, partition_count)
                .await
            {
                Ok(outcomes) => outcomes,
                Err(error) => vec![Outcome::Error(error.to_string()); range.len()],
            };
        }
        let middle = range.start + range.len() / 2;
        let mut outcomes = Vec::with_capacity(range.len());
        for half in [range.start..middle, middle..range.end] {
            match opened
                .run(plugin, half.clone(), partition, partition_count)
                .await
            {
                Ok(part) => outcomes.extend(part),
                Err(_) => {
                    outcomes.extend(bisect(opened, plugin, half, partition, partition_count).await)
                }
            }
        }
        outcomes
    })
}
