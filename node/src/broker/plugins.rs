//! WASM plug-ins in the broker: named modules (upload, list, delete), the plug-in cache,
//! running a module over a stored batch, and the two request-path hooks: a topic's
//! produce filter and partitioner (`produce.filter.module`, `partitioner.module`) and a
//! consumer's fetch plug-in (`FetchRequest::plugin`). Topic transforms are in
//! `transforms.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use ledge_protocol::wire::{
    DeleteModuleRequest, DeleteModuleResponse, ErrorCode, ListModulesResponse, ModuleDescription,
    PartitionOffset, PluginRef, ProduceRouting, UploadModuleRequest, UploadModuleResponse,
};
use ledge_protocol::{
    BATCH_HEADER_BYTES, BatchHeader, BatchIter, EncodeOptions, Record, encode_empty_batch,
};

use super::metadata::StoredModule;
use super::topic_config::TopicConfig;
use super::topic_config::validate_module_name;
use super::{Broker, read};
use crate::storage::{AppendDurability, Disk};
use crate::wasm::batch::{
    OpenBatchError, OpenedBatchBudget, apply_one_to_one, open_batch, params_list, params_map,
};
use crate::wasm::{ModuleStore, ModuleStoreError, Outcome, Plugin, PluginKind, WasmError};

/// Plug-ins (a module with one set of parameters) kept instantiated for fetches and
/// produce hooks; beyond this the cache starts over.
const PLUGIN_CACHE_MAX: usize = 64;

/// An empty batch that spans the offsets of `header`'s batch, to stand in for one whose
/// records cannot be decoded.
fn undecodable_placeholder(header: &BatchHeader) -> Result<Bytes, (ErrorCode, String)> {
    let options = EncodeOptions {
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        ..EncodeOptions::default()
    };
    encode_empty_batch(header.last_offset_delta, header.max_timestamp, &options)
        .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))
}

/// The answer to a produced batch whose records could not be opened: `CorruptMessage`
/// (retriable: damaged in transit) if its framing or CRC fails, `InvalidRecord` if the
/// producer wrote records that do not match their intact header, as an append answers it.
fn produced_batch_error(batch: &[u8], error: &OpenBatchError) -> (ErrorCode, String) {
    let code = if ledge_protocol::validate_batch(batch).is_ok() {
        ErrorCode::InvalidRecord
    } else {
        ErrorCode::CorruptMessage
    };
    (code, format!("malformed batch: {error}"))
}

/// The module kinds `partitioner.module` may name.
pub(crate) const PARTITIONER_KINDS: &[PluginKind] = &[PluginKind::Partitioner];
/// The module kinds `produce.filter.module` may name: one record in, at most one out, so the
/// batch keeps its offset span.
pub(crate) const PRODUCE_FILTER_KINDS: &[PluginKind] =
    &[PluginKind::Filter, PluginKind::Map, PluginKind::FilterMap];

/// "module "m" is a partitioner; produce.filter.module takes a filter, map, or filter_map".
fn wrong_kind_message(name: &str, kind: PluginKind, kinds: &[PluginKind], purpose: &str) -> String {
    let allowed: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    format!(
        "module {name:?} is a {kind}; {purpose} takes a {}",
        match allowed.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{}, or {last}", rest.join(", ")),
            _ => allowed.join(""),
        }
    )
}

/// Checks that the modules a topic config names exist and are of a kind the key takes, so a
/// topic is never left where every produce fails. `modules` are the stored named modules.
pub(crate) fn check_module_references(
    config: &TopicConfig,
    modules: &BTreeMap<String, StoredModule>,
) -> Result<(), String> {
    let references = [
        (
            "partitioner.module",
            config.partitioner_module.as_deref(),
            PARTITIONER_KINDS,
        ),
        (
            "produce.filter.module",
            config.produce_filter_module.as_deref(),
            PRODUCE_FILTER_KINDS,
        ),
    ];
    for (key, name, kinds) in references {
        let Some(name) = name else { continue };
        match modules.get(name) {
            None => {
                return Err(format!(
                    "{key}: no module named {name:?}; upload it first (`ledge module upload {name} --module <file.wasm> --kind {}`)",
                    kinds.first().map_or("", |kind| kind.as_str())
                ));
            }
            Some(module) if !kinds.contains(&module.kind) => {
                return Err(format!(
                    "{key}: {}",
                    wrong_kind_message(name, module.kind, kinds, key)
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

pub(crate) fn wasm_error_code(error: &WasmError) -> ErrorCode {
    match error {
        WasmError::InvalidModule(_) | WasmError::ModuleTooLarge { .. } | WasmError::Init(_) => {
            ErrorCode::InvalidModule
        }
        WasmError::Engine(_) => ErrorCode::UnknownServerError,
        _ => ErrorCode::ModuleFailed,
    }
}

/// The node's plug-ins: the uploaded modules (and their compiled forms), the plug-ins
/// instantiated from them (a module with one set of parameters, kept for reuse), and the
/// node-wide budget of bytes plug-in calls may hold opened.
pub(crate) struct PluginHost<D: Disk> {
    modules: ModuleStore<D>,
    /// By module hash, kind and parameters; starts over beyond [`PLUGIN_CACHE_MAX`].
    instantiated: Mutex<HashMap<String, Arc<Plugin>>>,
    budget: OpenedBatchBudget,
}

/// Why a plug-in could not be instantiated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PluginError {
    /// The module's stored or compiled form could not be loaded.
    #[error(transparent)]
    Module(#[from] ModuleStoreError),
    /// Instantiating or initialising it failed (a refused parameter, a trap in init).
    #[error(transparent)]
    Instantiate(#[from] WasmError),
    /// The blocking task that instantiates it failed.
    #[error("instantiating the plug-in: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl<D: Disk> PluginHost<D> {
    /// A host over `modules`, with `opened_batch_bytes_max` bytes of opened batches.
    pub(crate) fn new(modules: ModuleStore<D>, opened_batch_bytes_max: usize) -> Self {
        Self {
            modules,
            instantiated: Mutex::new(HashMap::new()),
            budget: OpenedBatchBudget::new(opened_batch_bytes_max),
        }
    }

    /// The uploaded modules.
    pub(crate) fn modules(&self) -> &ModuleStore<D> {
        &self.modules
    }

    /// The node-wide budget of opened-batch bytes.
    pub(crate) fn budget(&self) -> &OpenedBatchBudget {
        &self.budget
    }

    fn instantiated(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Plugin>>> {
        self.instantiated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A plug-in for `module` with `params`, instantiated once and cached.
    pub(crate) async fn plugin(
        &self,
        module: &StoredModule,
        params: BTreeMap<String, String>,
    ) -> Result<Arc<Plugin>, PluginError> {
        let key = format!(
            "{}/{}/{}",
            module.hash,
            module.kind,
            serde_json::to_string(&params).unwrap_or_default()
        );
        if let Some(plugin) = self.instantiated().get(&key) {
            return Ok(Arc::clone(plugin));
        }
        let compiled = self.modules.get(&module.hash, module.kind).await?;
        let engine = self.modules.engine().clone();
        let params: Vec<(String, String)> = params.into_iter().collect();
        let plugin =
            tokio::task::spawn_blocking(move || Plugin::new(&engine, compiled, params)).await??;
        let plugin = Arc::new(plugin);
        let mut cache = self.instantiated();
        if cache.len() >= PLUGIN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&plugin));
        Ok(plugin)
    }
}

impl<D: Disk> Broker<D> {
    /// A plug-in for `module` with `params`, instantiated once and cached.
    pub(crate) async fn plugin(
        &self,
        module: &StoredModule,
        params: BTreeMap<String, String>,
    ) -> Result<Arc<Plugin>, (ErrorCode, String)> {
        self.plugins
            .plugin(module, params)
            .await
            .map_err(|error| (ErrorCode::from(&error), error.to_string()))
    }

    /// The named module, with its default parameters overridden by `overrides`, as a
    /// plug-in of one of `kinds`.
    pub(crate) async fn named_plugin(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        kinds: &[PluginKind],
        purpose: &str,
    ) -> Result<Arc<Plugin>, (ErrorCode, String)> {
        let module = self
            .admin
            .lock()
            .await
            .current()
            .modules
            .get(name)
            .cloned()
            .ok_or_else(|| {
                (
                    ErrorCode::ModuleNotFound,
                    format!("no module named {name:?} (upload it with `ledge module upload`)"),
                )
            })?;
        if !kinds.contains(&module.kind) {
            return Err((
                ErrorCode::InvalidModule,
                wrong_kind_message(name, module.kind, kinds, purpose),
            ));
        }
        let mut params = module.params.clone();
        params.extend(overrides);
        self.plugin(&module, params).await
    }

    pub(crate) async fn upload_module(&self, request: UploadModuleRequest) -> UploadModuleResponse {
        let fail = |(error, message): (ErrorCode, String)| UploadModuleResponse {
            error,
            message,
            hash: String::new(),
        };
        match self.store_named_module(request).await {
            Ok(hash) => UploadModuleResponse {
                error: ErrorCode::None,
                message: String::new(),
                hash,
            },
            Err(error) => fail(error),
        }
    }

    /// Stores `bytes` as the module `name` (the config file's `[[module]]`); unchanged
    /// modules are a no-op. Returns the module's hash.
    pub async fn upload_named_module(
        &self,
        name: &str,
        kind: PluginKind,
        bytes: Bytes,
        params: BTreeMap<String, String>,
    ) -> Result<String, (ErrorCode, String)> {
        let existing = self.admin.lock().await.current().modules.get(name).cloned();
        if let Some(existing) = existing
            && existing.kind == kind
            && existing.params == params
            && existing.hash == crate::wasm::content_hash(&bytes)
        {
            return Ok(existing.hash);
        }
        self.store_named_module(UploadModuleRequest {
            name: name.to_string(),
            kind,
            module: bytes,
            params: params_list(&params),
        })
        .await
    }

    async fn store_named_module(
        &self,
        request: UploadModuleRequest,
    ) -> Result<String, (ErrorCode, String)> {
        validate_module_name(&request.name)
            .map_err(|error| (ErrorCode::InvalidRequest, format!("module name: {error}")))?;
        let kind = request.kind;
        let params = params_map(&request.params)
            .map_err(|error| (ErrorCode::InvalidRequest, error.to_string()))?;
        // Replacing a module a topic config names with one of a kind that key does not take
        // would make every produce to that topic fail.
        let refused_by: Vec<String> = read(&self.topics)
            .iter()
            .filter_map(|(topic, entry)| {
                let config = read(&entry.config);
                let keys = [
                    (
                        "partitioner.module",
                        &config.partitioner_module,
                        PARTITIONER_KINDS,
                    ),
                    (
                        "produce.filter.module",
                        &config.produce_filter_module,
                        PRODUCE_FILTER_KINDS,
                    ),
                ];
                keys.into_iter()
                    .find(|(_, module, kinds)| {
                        module.as_deref() == Some(request.name.as_str()) && !kinds.contains(&kind)
                    })
                    .map(|(key, _, _)| format!("topic {topic:?} ({key})"))
            })
            .collect();
        if !refused_by.is_empty() {
            return Err((
                ErrorCode::ModuleInUse,
                format!(
                    "module {:?} is used by {}, which does not take a {kind}; change that config first",
                    request.name,
                    refused_by.join(", ")
                ),
            ));
        }
        let too_many = |count: usize| {
            (
                ErrorCode::InvalidRequest,
                format!(
                    "the node keeps {count} modules, its limit (wasm.modules_max); delete unused ones with `ledge module delete`"
                ),
            )
        };
        let is_new_name_over_limit = |modules: &BTreeMap<String, StoredModule>| {
            !modules.contains_key(&request.name) && modules.len() >= self.config.wasm.modules_max
        };
        {
            let admin = self.admin.lock().await;
            if is_new_name_over_limit(&admin.current().modules) {
                return Err(too_many(admin.current().modules.len()));
            }
        }
        let stored = self.store_module(request.module, kind, params).await?;
        let hash = stored.hash.clone();
        let mut admin = self.admin.lock().await;
        // Again under the lock that records it: another upload may have come in meanwhile.
        if is_new_name_over_limit(&admin.current().modules) {
            return Err(too_many(admin.current().modules.len()));
        }
        let mut next = admin.current().clone();
        next.modules.insert(request.name.clone(), stored);
        admin.store(next).await.map_err(|error| {
            (
                error.error_code(),
                format!("could not record module {:?}: {error}", request.name),
            )
        })?;
        drop(admin);
        self.collect_module_garbage().await;
        Ok(hash)
    }

    /// Checks, compiles and stores a module, and checks `params` by instantiating it.
    pub(crate) async fn store_module(
        &self,
        bytes: Bytes,
        kind: PluginKind,
        params: BTreeMap<String, String>,
    ) -> Result<StoredModule, (ErrorCode, String)> {
        let params_bytes: usize = params
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if params_bytes > self.config.wasm.module_params_bytes_max {
            return Err((
                ErrorCode::InvalidRequest,
                format!(
                    "the parameters are {params_bytes} bytes, more than wasm.module_params_bytes_max ({})",
                    self.config.wasm.module_params_bytes_max
                ),
            ));
        }
        let size_bytes = bytes.len() as u64;
        let module =
            self.plugins
                .modules()
                .put(bytes, kind)
                .await
                .map_err(|error| match error {
                    ModuleStoreError::Wasm(error) => (wasm_error_code(&error), error.to_string()),
                    other => (ErrorCode::StorageError, other.to_string()),
                })?;
        let stored = StoredModule {
            hash: module.hash().to_string(),
            kind,
            size_bytes,
            params: params.clone(),
            uploaded_ms: self.clock.wall_time_ms(),
        };
        // Instantiating with the parameters reports a refused parameter now, not later.
        self.plugin(&stored, params).await?;
        Ok(stored)
    }

    /// Removes module files no name or transform refers to.
    pub(crate) async fn collect_module_garbage(&self) {
        let admin = self.admin.lock().await;
        let current = admin.current();
        let keep = current
            .modules
            .values()
            .map(|module| module.hash.clone())
            .chain(
                current
                    .transforms
                    .values()
                    .map(|transform| transform.module.hash.clone()),
            )
            .collect();
        if let Err(error) = self.plugins.modules().retain(&keep).await {
            tracing::warn!(%error, "removing unused module files failed");
        }
    }

    pub(crate) async fn list_modules(&self) -> ListModulesResponse {
        let admin = self.admin.lock().await;
        ListModulesResponse {
            modules: admin
                .current()
                .modules
                .iter()
                .map(|(name, module)| ModuleDescription {
                    name: name.clone(),
                    kind: module.kind,
                    hash: module.hash.clone(),
                    size_bytes: module.size_bytes,
                    params: params_list(&module.params),
                    uploaded_ms: module.uploaded_ms,
                })
                .collect(),
        }
    }

    pub(crate) async fn delete_module(&self, request: DeleteModuleRequest) -> DeleteModuleResponse {
        let result = async {
            let mut admin = self.admin.lock().await;
            let mut next = admin.current().clone();
            if next.modules.remove(&request.name).is_none() {
                return Err((
                    ErrorCode::ModuleNotFound,
                    format!("no module named {:?}", request.name),
                ));
            }
            let users: Vec<String> = read(&self.topics)
                .iter()
                .filter(|(_, topic)| {
                    let config = read(&topic.config);
                    config.partitioner_module.as_deref() == Some(request.name.as_str())
                        || config.produce_filter_module.as_deref() == Some(request.name.as_str())
                })
                .map(|(name, _)| name.clone())
                .collect();
            if !users.is_empty() {
                return Err((
                    ErrorCode::ModuleInUse,
                    format!(
                        "module {:?} is used by topic(s) {}; change their partitioner.module / produce.filter.module first",
                        request.name,
                        users.join(", ")
                    ),
                ));
            }
            admin.store(next).await.map_err(|error| {
                (
                    error.error_code(),
                    format!("could not record the removal: {error}"),
                )
            })
        }
        .await;
        match result {
            Ok(()) => {
                self.collect_module_garbage().await;
                DeleteModuleResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                }
            }
            Err((error, message)) => DeleteModuleResponse { error, message },
        }
    }

    /// Runs a topic's produce filter over one batch: the batch unchanged when every record
    /// is kept, else a rewritten batch that keeps the original offset span (`true`).
    pub(crate) async fn filter_produced_batch(
        &self,
        module_name: &str,
        batch: Bytes,
        partition_count: u32,
    ) -> Result<(Bytes, bool), (ErrorCode, String)> {
        let plugin = self
            .named_plugin(
                module_name,
                BTreeMap::new(),
                PRODUCE_FILTER_KINDS,
                "produce.filter.module",
            )
            .await?;
        let opened = open_batch(&batch, self.plugins.budget())
            .await
            .map_err(|error| produced_batch_error(&batch, &error))?;
        let outcomes = opened
            .run(&plugin, 0..opened.records.len(), 0, partition_count)
            .await
            .map_err(|error| {
                (
                    wasm_error_code(&error),
                    format!("produce filter {module_name:?}: {error}"),
                )
            })?;
        if outcomes.iter().all(|outcome| *outcome == Outcome::Keep) {
            return Ok((batch, false));
        }
        let kept = apply_one_to_one(&opened.records, outcomes).map_err(|(index, message)| {
            (
                ErrorCode::InvalidRecord,
                format!("record {index} of the batch refused by produce filter {module_name:?}: {message}"),
            )
        })?;
        let compression = opened
            .header
            .compression()
            .unwrap_or(ledge_protocol::Compression::None);
        let options = EncodeOptions {
            compression,
            ..EncodeOptions::default()
        };
        let rewritten = opened
            .encode_kept(&kept, &options)
            .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
        Ok((rewritten, true))
    }

    /// Runs a fetch plug-in over the batches read from one partition; dropped records
    /// leave offset gaps (empty batches where a whole batch went), so positions advance.
    pub(crate) async fn apply_fetch_plugin(
        &self,
        plugin: &Arc<Plugin>,
        bytes: Bytes,
        partition: u32,
        partition_count: u32,
    ) -> Result<Bytes, (ErrorCode, String)> {
        let mut out = BytesMut::with_capacity(bytes.len());
        for item in BatchIter::new(&bytes) {
            let (header, raw) = item.map_err(|error| {
                (
                    ErrorCode::CorruptMessage,
                    format!("stored batch unreadable: {error}"),
                )
            })?;
            if header.is_control() || header.record_count == 0 {
                out.extend_from_slice(raw);
                continue;
            }
            let batch = bytes.slice_ref(raw);
            let opened = match open_batch(&batch, self.plugins.budget()).await {
                Ok(opened) => opened,
                Err(error) => {
                    // Records that do not decode (stored before appends checked records) can
                    // be shown to no plug-in: the consumer gets an empty batch spanning their
                    // offsets and moves on, instead of failing at this offset forever.
                    tracing::warn!(partition, base_offset = header.base_offset, %error, "fetch plug-in skips a stored batch whose records do not decode");
                    out.extend_from_slice(&undecodable_placeholder(&header)?);
                    continue;
                }
            };
            let outcomes = opened
                .run(plugin, 0..opened.records.len(), partition, partition_count)
                .await
                .map_err(|error| {
                    (
                        wasm_error_code(&error),
                        format!(
                            "fetch plug-in on batch at offset {}: {error}",
                            header.base_offset
                        ),
                    )
                })?;
            if outcomes.iter().all(|outcome| *outcome == Outcome::Keep) {
                out.extend_from_slice(raw);
                continue;
            }
            let kept = apply_one_to_one(&opened.records, outcomes).map_err(|(index, message)| {
                let offset = opened.records.get(index).map_or(-1, |record| record.offset);
                (
                    ErrorCode::ModuleFailed,
                    format!("fetch plug-in failed the record at offset {offset}: {message} (seek past it to go on)"),
                )
            })?;
            let rewritten = opened
                .encode_kept(&kept, &EncodeOptions::default())
                .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
            debug_assert!(rewritten.len() >= BATCH_HEADER_BYTES);
            out.extend_from_slice(&rewritten);
        }
        Ok(out.freeze())
    }

    /// The fetch plug-in a request names, if any.
    pub(crate) async fn fetch_plugin(
        &self,
        plugin: &Option<PluginRef>,
    ) -> Result<Option<Arc<Plugin>>, (ErrorCode, String)> {
        let Some(plugin) = plugin else {
            return Ok(None);
        };
        let overrides = params_map(&plugin.params)
            .map_err(|error| (ErrorCode::InvalidRequest, error.to_string()))?;
        self.named_plugin(
            &plugin.module,
            overrides,
            &[PluginKind::Filter, PluginKind::Map, PluginKind::FilterMap],
            "a fetch",
        )
        .await
        .map(Some)
    }

    /// A produce to `NODE_PARTITIONED`: the topic's partitioner module picks each record's
    /// partition (after its produce filter, if any); records are appended per partition.
    pub(crate) async fn produce_node_partitioned(
        &self,
        topic: &str,
        records: Bytes,
        durability: AppendDurability,
    ) -> Result<(ProduceRouting, Option<i64>), (ErrorCode, String)> {
        let topic_entry = self.topic(topic).ok_or_else(|| {
            (
                ErrorCode::UnknownTopicOrPartition,
                format!("unknown topic {topic:?}"),
            )
        })?;
        let config = read(&topic_entry.config).clone();
        let partition_count = read(&topic_entry.partitions).len() as u32;
        let Some(partitioner) = config.partitioner_module.clone() else {
            return Err((
                ErrorCode::InvalidRequest,
                format!("topic {topic:?} has no partitioner.module; name a partition"),
            ));
        };
        let plugin = self
            .named_plugin(
                &partitioner,
                BTreeMap::new(),
                PARTITIONER_KINDS,
                "partitioner.module",
            )
            .await?;
        let mut routing = ProduceRouting::default();
        let mut per_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let mut codec = ledge_protocol::Compression::None;
        for item in BatchIter::new(&records) {
            let (header, raw) = item.map_err(|error| {
                (
                    ErrorCode::CorruptMessage,
                    format!("malformed record batch: {error}"),
                )
            })?;
            config
                .check_timestamps(&header, self.clock.wall_time_ms())
                .map_err(|message| (ErrorCode::InvalidTimestamp, message))?;
            if header.producer_id >= 0 {
                return Err((
                    ErrorCode::InvalidRequest,
                    "a node-partitioned produce cannot be idempotent (the node, not the producer, orders the records); send it without a producer id".into(),
                ));
            }
            let mut batch = records.slice_ref(raw);
            if let Some(filter) = &config.produce_filter_module {
                batch = self
                    .filter_produced_batch(filter, batch, partition_count)
                    .await?
                    .0;
            }
            let opened = open_batch(&batch, self.plugins.budget())
                .await
                .map_err(|error| produced_batch_error(&batch, &error))?;
            codec = opened
                .header
                .compression()
                .unwrap_or(ledge_protocol::Compression::None);
            let outcomes = opened
                .run(&plugin, 0..opened.records.len(), 0, partition_count)
                .await
                .map_err(|error| {
                    (
                        wasm_error_code(&error),
                        format!("partitioner {partitioner:?}: {error}"),
                    )
                })?;
            // Records the filter dropped are gaps in the rewritten batch: report them so the
            // producer can still pair each of its records with an outcome.
            let mut next_offset = opened.header.base_offset;
            for (record, outcome) in opened.records.iter().zip(outcomes) {
                while next_offset < record.offset {
                    routing.record_partitions.push(u32::MAX);
                    next_offset += 1;
                }
                next_offset = record.offset + 1;
                match outcome {
                    Outcome::Partition(partition) => {
                        routing.record_partitions.push(partition);
                        per_partition
                            .entry(partition)
                            .or_default()
                            .push(record.clone().into_record());
                    }
                    Outcome::Error(message) => {
                        return Err((
                            ErrorCode::InvalidRecord,
                            format!(
                                "partitioner {partitioner:?} failed record {}: {message}",
                                record.offset - opened.header.base_offset
                            ),
                        ));
                    }
                    other => {
                        return Err((
                            ErrorCode::ModuleFailed,
                            format!("partitioner {partitioner:?} returned {other:?}"),
                        ));
                    }
                }
            }
            let last = opened.header.base_offset + i64::from(opened.header.last_offset_delta);
            while next_offset <= last {
                routing.record_partitions.push(u32::MAX);
                next_offset += 1;
            }
        }
        let append_time = (config.timestamp_type
            == super::topic_config::TimestampType::LogAppendTime)
            .then(|| self.clock.wall_time_ms());
        let appends = per_partition.into_iter().map(|(partition, records)| {
            let config = &config;
            async move {
                let target = self.partition(topic, partition)?;
                let log = target.log()?;
                let options = EncodeOptions {
                    compression: codec,
                    ..EncodeOptions::default()
                };
                let batch = ledge_protocol::encode_batch(&records, &options)
                    .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
                let header = BatchHeader::parse(&batch)
                    .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
                let batch = self.prepare_batch(&header, batch, config, append_time)?;
                let outcome = log
                    .append(batch, durability)
                    .await
                    .map_err(|error| self.append_failed(&target, error))?;
                Ok::<_, (ErrorCode, String)>(PartitionOffset {
                    partition,
                    offset: outcome.base_offset,
                })
            }
        });
        for result in futures_util::future::join_all(appends).await {
            routing.base_offsets.push(result?);
        }
        Ok((routing, append_time))
    }
}
