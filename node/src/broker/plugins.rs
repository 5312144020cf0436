//! WASM plug-ins in the broker: named modules (upload, list, delete), the plug-in cache,
//! running a module over a stored batch, and the two request-path hooks: a topic's
//! produce filter and partitioner (`produce.filter.module`, `partitioner.module`) and a
//! consumer's fetch plug-in (`FetchRequest::plugin`). Topic transforms are in
//! `transforms.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use ledge_protocol::wire::{PartitionOffset, PluginRef, ProduceRouting, UploadModuleRequest};
use ledge_protocol::{
    BATCH_HEADER_BYTES, BatchError, BatchHeader, BatchIter, EncodeError, EncodeOptions, Record,
    encode_empty_batch,
};

use super::metadata::StoredModule;
use super::produce::ProduceError;
use super::registry::{LookupError, RemoveModuleError, StoreModuleError, TopicRegistry};
use super::topic_config::TopicConfig;
use super::topic_config::{ModuleNameError, validate_module_name};
use crate::clock::Clock;
use crate::security::identity::ClientIdentity;
use crate::storage::{AppendDurability, AppendError, Disk};
use crate::wasm::batch::{
    MeteredRunError, OpenBatchError, OpenedBatchBudget, ParamsError, apply_one_to_one, open_batch,
    params_list, params_map,
};
use crate::wasm::fuel_budget::{FetchFuel, FuelAccount, FuelExhausted, FuelOwner};
use crate::wasm::{
    ModuleStore, ModuleStoreError, Outcome, Plugin, PluginKind, WasmError, WasmLimits,
};

/// Plug-ins (a module with one set of parameters) kept instantiated for fetches and
/// produce hooks; beyond this the cache starts over.
const PLUGIN_CACHE_MAX: usize = 64;

/// An empty batch that spans the offsets of `header`'s batch, to stand in for one whose
/// records cannot be decoded.
fn undecodable_placeholder(header: &BatchHeader) -> Result<Bytes, EncodeError> {
    let options = EncodeOptions {
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        ..EncodeOptions::default()
    };
    encode_empty_batch(header.last_offset_delta, header.max_timestamp, &options)
}

/// A produced batch whose records could not be opened, with whether its framing and CRC
/// are intact (the producer wrote it that way) or not (damaged in transit).
fn produced_batch_error(batch: &[u8], error: OpenBatchError) -> MalformedProducedBatch {
    MalformedProducedBatch {
        framing_intact: ledge_protocol::validate_batch(batch).is_ok(),
        error,
    }
}

/// A produced batch a produce filter or partitioner could not open.
#[derive(Debug, thiserror::Error)]
#[error("malformed batch: {error}")]
pub struct MalformedProducedBatch {
    /// Its framing and CRC pass: the producer wrote records that do not match their
    /// header, which a retry cannot fix (otherwise it was damaged in transit).
    pub framing_intact: bool,
    /// Why it did not open.
    pub error: OpenBatchError,
}

/// Why a named module could not be made a plug-in for a hook or a fetch.
#[derive(Debug, thiserror::Error)]
pub enum NamedPluginError {
    /// No module of that name.
    #[error("no module named {name:?} (upload it with `ledge module upload`)")]
    NotFound {
        /// The name asked for.
        name: String,
    },
    /// The module is of a kind the hook does not take.
    #[error("{}", wrong_kind_message(name, *kind, kinds, purpose))]
    WrongKind {
        /// The module.
        name: String,
        /// Its kind.
        kind: PluginKind,
        /// The kinds the hook takes.
        kinds: &'static [PluginKind],
        /// The hook ("produce.filter.module", "a fetch").
        purpose: &'static str,
    },
    /// It could not be instantiated.
    #[error(transparent)]
    Instantiate(#[from] PluginError),
}

/// Why a module was not uploaded, stored or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The module's name is not a valid name.
    #[error("module name: {0}")]
    InvalidName(ModuleNameError),
    /// The parameters are refused.
    #[error(transparent)]
    Params(ParamsError),
    /// The parameters are over `wasm.module_params_bytes_max`.
    #[error("the parameters are {bytes} bytes, more than wasm.module_params_bytes_max ({max})")]
    ParamsTooLarge {
        /// Their size (keys and values).
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Topic configs name the module for a key that does not take its new kind.
    #[error(
        "module {name:?} is used by {}, which does not take a {kind}; change that config first",
        users.join(", ")
    )]
    KindInUse {
        /// The module.
        name: String,
        /// The kind uploaded.
        kind: PluginKind,
        /// "topic "t" (partitioner.module)" for each refusing config.
        users: Vec<String>,
    },
    /// The module does not compile or validate.
    #[error("{0}")]
    Invalid(WasmError),
    /// The module store could not write it.
    #[error("{0}")]
    Store(ModuleStoreError),
    /// It could not be instantiated with its parameters.
    #[error(transparent)]
    Instantiate(#[from] PluginError),
    /// The registry did not record it (over `wasm.modules_max`, `metadata.json`).
    #[error(transparent)]
    Register(#[from] StoreModuleError),
    /// The registry did not remove it (no such module, in use, `metadata.json`).
    #[error(transparent)]
    Remove(#[from] RemoveModuleError),
}

/// Why a topic's produce filter did not pass a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProduceFilterError {
    /// The filter module cannot be used.
    #[error(transparent)]
    Plugin(#[from] NamedPluginError),
    /// The batch's records could not be opened.
    #[error(transparent)]
    Malformed(#[from] MalformedProducedBatch),
    /// The filter failed (trap, limit).
    #[error("produce filter {module:?}: {error}")]
    Failed {
        /// The filter module.
        module: String,
        /// Why.
        error: WasmError,
    },
    /// The filter answered a record with an error.
    #[error("record {index} of the batch refused by produce filter {module:?}: {message}")]
    RecordRefused {
        /// The filter module.
        module: String,
        /// The record's index in the batch.
        index: usize,
        /// The filter's message.
        message: String,
    },
    /// The kept records could not be encoded again.
    #[error("{0}")]
    Reencode(EncodeError),
}

/// Why a fetch plug-in did not run over a partition's batches.
#[derive(Debug, thiserror::Error)]
pub enum FetchPluginError {
    /// The plug-in's parameter overrides are refused.
    #[error(transparent)]
    Params(ParamsError),
    /// The plug-in's module cannot be used.
    #[error(transparent)]
    Plugin(#[from] NamedPluginError),
    /// A stored batch's framing is unreadable.
    #[error("stored batch unreadable: {0}")]
    StoredBatch(BatchError),
    /// The empty batch standing in for an undecodable one could not be encoded.
    #[error("{0}")]
    Placeholder(EncodeError),
    /// The plug-in failed (trap, limit).
    #[error("fetch plug-in on batch at offset {base_offset}: {error}")]
    Failed {
        /// The batch it ran on.
        base_offset: i64,
        /// Why.
        error: WasmError,
    },
    /// A fuel budget of fetch plug-ins is spent (`wasm.fetch_fuel_per_second`, or the
    /// connection's share): retriable.
    #[error(transparent)]
    FuelSpent(FuelExhausted),
    /// The plug-in answered a record with an error.
    #[error(
        "fetch plug-in failed the record at offset {offset}: {message} (seek past it to go on)"
    )]
    RecordFailed {
        /// The record's offset (-1 if the plug-in named no record of the batch).
        offset: i64,
        /// The plug-in's message.
        message: String,
    },
    /// The kept records could not be encoded again.
    #[error("{0}")]
    Reencode(EncodeError),
}

/// Why a topic's partitioner did not route a node-partitioned produce (the causes a
/// produce to one partition shares are [`ProduceError`]'s own).
#[derive(Debug, thiserror::Error)]
pub enum PartitionerError {
    /// The topic names no partitioner.
    #[error("topic {topic:?} has no partitioner.module; name a partition")]
    NoPartitioner {
        /// The topic.
        topic: String,
    },
    /// The partitioner module cannot be used.
    #[error(transparent)]
    Plugin(#[from] NamedPluginError),
    /// A batch carries a producer id.
    #[error(
        "a node-partitioned produce cannot be idempotent (the node, not the producer, orders the records); send it without a producer id"
    )]
    Idempotent,
    /// A batch's records could not be opened.
    #[error(transparent)]
    Malformed(#[from] MalformedProducedBatch),
    /// The partitioner failed (trap, limit).
    #[error("partitioner {module:?}: {error}")]
    Failed {
        /// The partitioner module.
        module: String,
        /// Why.
        error: WasmError,
    },
    /// The partitioner answered a record with an error.
    #[error("partitioner {module:?} failed record {index}: {message}")]
    RecordFailed {
        /// The partitioner module.
        module: String,
        /// The record's index in its batch.
        index: i64,
        /// The partitioner's message.
        message: String,
    },
    /// The partitioner answered with something other than a partition.
    #[error("partitioner {module:?} returned {outcome:?}")]
    NotAPartition {
        /// The partitioner module.
        module: String,
        /// What it answered.
        outcome: Outcome,
    },
    /// One partition's records could not be encoded as a batch.
    #[error("{0}")]
    Encode(EncodeError),
    /// The encoded batch's header did not parse.
    #[error("{0}")]
    EncodedHeader(BatchError),
    /// In a cluster: a partition's leader did not take its records (those of other
    /// partitions may be appended).
    #[error("partition {partition}: {source}")]
    Leader {
        /// The partition.
        partition: u32,
        /// Why.
        source: super::transforms::LinkError,
    },
}

/// The module kinds `partitioner.module` may name.
pub(crate) const PARTITIONER_KINDS: &[PluginKind] = &[PluginKind::Partitioner];
/// The module kinds `produce.filter.module` may name: one record in, at most one out, so the
/// batch keeps its offset span.
pub(crate) const PRODUCE_FILTER_KINDS: &[PluginKind] =
    &[PluginKind::Filter, PluginKind::Map, PluginKind::FilterMap];

/// The module kinds a topic config key naming a module takes.
fn kinds_of_key(key: &str) -> &'static [PluginKind] {
    if key == "partitioner.module" {
        PARTITIONER_KINDS
    } else {
        PRODUCE_FILTER_KINDS
    }
}

/// "module "m" is a partitioner; produce.filter.module takes a filter, map, or filter_map".
fn wrong_kind_message(name: &str, kind: PluginKind, kinds: &[PluginKind], purpose: &str) -> String {
    let allowed: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    let article = if kind.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let stateful = if kind.is_stateful() {
        " (a stateful plug-in, run by stateful transforms only: docs/STREAMS.md)"
    } else {
        ""
    };
    format!(
        "module {name:?} is {article} {kind}{stateful}; {purpose} takes a {}",
        match allowed.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{}, or {last}", rest.join(", ")),
            _ => allowed.join(""),
        }
    )
}

/// A topic config key naming a module that is not uploaded, or of a kind the key does not
/// take.
#[derive(Debug, thiserror::Error)]
pub enum ModuleReferenceError {
    /// No module of that name.
    #[error(
        "{key}: no module named {name:?}; upload it first (`ledge module upload {name} --module <file.wasm> --kind {}`)",
        kinds.first().map_or("", |kind| kind.as_str())
    )]
    Missing {
        /// The key (`partitioner.module`, `produce.filter.module`).
        key: &'static str,
        /// The module named.
        name: String,
        /// The kinds the key takes.
        kinds: &'static [PluginKind],
    },
    /// The module is of a kind the key does not take.
    #[error("{key}: {}", wrong_kind_message(name, *kind, kinds, key))]
    WrongKind {
        /// The key.
        key: &'static str,
        /// The module named.
        name: String,
        /// Its kind.
        kind: PluginKind,
        /// The kinds the key takes.
        kinds: &'static [PluginKind],
    },
}

/// Checks that the modules a topic config names exist and are of a kind the key takes, so a
/// topic is never left where every produce fails. `modules` are the stored named modules.
pub(crate) fn check_module_references(
    config: &TopicConfig,
    modules: &BTreeMap<String, StoredModule>,
) -> Result<(), ModuleReferenceError> {
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
                return Err(ModuleReferenceError::Missing {
                    key,
                    name: name.to_string(),
                    kinds,
                });
            }
            Some(module) if !kinds.contains(&module.kind) => {
                return Err(ModuleReferenceError::WrongKind {
                    key,
                    name: name.to_string(),
                    kind: module.kind,
                    kinds,
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The node's plug-ins: the uploaded modules (and their compiled forms), the plug-ins
/// instantiated from them (a module with one set of parameters, kept for reuse), and the
/// node-wide budget of bytes plug-in calls may hold opened.
///
/// It reaches the rest of the node through narrow handles: the topic registry (named
/// modules in `metadata.json`, topic configs, the partition logs a node-partitioned produce
/// appends to) and the clock.
pub struct PluginHost<D: Disk> {
    modules: ModuleStore<D>,
    /// By module hash, kind and parameters; starts over beyond [`PLUGIN_CACHE_MAX`].
    instantiated: Mutex<HashMap<String, Arc<Plugin>>>,
    budget: OpenedBatchBudget,
    /// What fetch plug-ins may burn per second, node-wide and per connection.
    fetch_fuel: FetchFuel,
    registry: Arc<TopicRegistry<D>>,
    clock: Arc<dyn Clock>,
    limits: WasmLimits,
    /// In a `[cluster]`: where a node-partitioned produce sends each partition's records
    /// (its leader); unset on one node, where they are appended here.
    leaders: std::sync::OnceLock<Arc<dyn super::transforms::TransformLink>>,
    /// Hashes of modules stored but not yet recorded (a cluster upload or deploy waiting for
    /// the controller), with how many holds each has: garbage collection keeps their files.
    held: Arc<Mutex<BTreeMap<String, usize>>>,
}

/// Keeps a stored module's files from garbage collection until dropped.
pub(crate) struct ModuleHold {
    hash: String,
    held: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Drop for ModuleHold {
    fn drop(&mut self) {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.hash) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.hash);
            }
        }
    }
}

/// Why module bytes fetched from a peer were not stored.
#[derive(Debug, thiserror::Error)]
pub enum FetchedModuleError {
    /// More bytes than any module may have.
    #[error("module {hash} arrived with {bytes} bytes, more than wasm.module_bytes_max ({max})")]
    TooLarge {
        /// The digest asked for.
        hash: String,
        /// What arrived.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not the ones asked for.
    #[error("module {hash}: the bytes that arrived have digest {actual}; refused")]
    DigestMismatch {
        /// The digest asked for.
        hash: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// Storing or compiling them failed.
    #[error(transparent)]
    Store(#[from] ModuleStoreError),
}

/// Why a plug-in could not be instantiated.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
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
    /// A host over `modules` (names in `registry`), under `limits`.
    pub(crate) fn new(
        modules: ModuleStore<D>,
        registry: Arc<TopicRegistry<D>>,
        clock: Arc<dyn Clock>,
        limits: WasmLimits,
    ) -> Self {
        Self {
            modules,
            instantiated: Mutex::new(HashMap::new()),
            budget: OpenedBatchBudget::new(limits.opened_batch_bytes_max),
            fetch_fuel: FetchFuel::new(
                limits.fetch_fuel_per_second,
                limits.fetch_fuel_per_principal_per_second,
                limits.fetch_fuel_principals_tracked_max,
            ),
            registry,
            clock,
            limits,
            held: Arc::new(Mutex::new(BTreeMap::new())),
            leaders: std::sync::OnceLock::new(),
        }
    }

    /// In a `[cluster]`: a node-partitioned produce sends each partition's records to its
    /// leader through `router` from now on.
    pub(crate) fn set_leader_router(&self, router: Arc<dyn super::transforms::TransformLink>) {
        let _ = self.leaders.set(router);
    }

    /// Whether a node-partitioned produce goes to the partitions' leaders (a cluster).
    pub(crate) fn routes_to_leaders(&self) -> bool {
        self.leaders.get().is_some()
    }

    /// Keeps the files of module `hash` until the hold is dropped.
    pub(crate) fn hold(&self, hash: &str) -> ModuleHold {
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(hash.to_string())
            .or_default() += 1;
        ModuleHold {
            hash: hash.to_string(),
            held: Arc::clone(&self.held),
        }
    }

    /// The intact stored bytes of module `hash`, if this node has them (for a peer).
    pub(crate) async fn stored_module_bytes(
        &self,
        hash: &str,
    ) -> Result<Option<Bytes>, crate::storage::DiskError> {
        self.modules.stored_bytes(hash).await
    }

    /// Stores module bytes a peer sent for digest `hash`: refused unless they are at most
    /// `wasm.module_bytes_max` and their SHA-256 is `hash`; then checked and compiled as
    /// any upload is. A node never stores or runs bytes under another digest.
    pub(crate) async fn store_fetched_module(
        &self,
        hash: &str,
        bytes: Bytes,
        kind: PluginKind,
    ) -> Result<(), FetchedModuleError> {
        if bytes.len() > self.limits.module_bytes_max {
            return Err(FetchedModuleError::TooLarge {
                hash: hash.to_string(),
                bytes: bytes.len(),
                max: self.limits.module_bytes_max,
            });
        }
        let actual = crate::wasm::content_hash(&bytes);
        if actual != hash {
            return Err(FetchedModuleError::DigestMismatch {
                hash: hash.to_string(),
                actual,
            });
        }
        self.modules.put(bytes, kind).await?;
        Ok(())
    }

    /// The node-wide budget of opened-batch bytes.
    pub(crate) fn budget(&self) -> &OpenedBatchBudget {
        &self.budget
    }

    /// The fetch fuel account of `identity`'s fetches: its principal's bucket of
    /// `wasm.fetch_fuel_per_principal_per_second`, shared by all the principal's connections
    /// (a connection that did not authenticate: its address's), drawing on the node's too.
    pub fn fetch_fuel_account(&self, identity: &ClientIdentity) -> FuelAccount {
        self.fetch_fuel
            .account(FuelOwner::of(identity), self.clock.now())
    }

    /// The node-wide fetch fuel account alone (fetches not made over a client connection,
    /// and fetches that name no plug-in).
    pub(crate) fn node_fetch_fuel(&self) -> FuelAccount {
        self.fetch_fuel.node_only()
    }

    /// The clock plug-in budgets are kept on.
    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
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
        self.plugin_metered(module, params, None).await
    }

    /// [`plugin`](Self::plugin); instantiating it (a cache miss) is charged to `fuel`, if
    /// given, for the fuel `ledge_init` burned (all of its budget if it ran out).
    async fn plugin_metered(
        &self,
        module: &StoredModule,
        params: BTreeMap<String, String>,
        fuel: Option<&FuelAccount>,
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
        let made = self.instantiate(module, params).await;
        if let Some(fuel) = fuel {
            let burned = match &made {
                Ok(plugin) => plugin.init_fuel_used(),
                Err(PluginError::Instantiate(WasmError::OutOfFuel(budget))) => *budget,
                Err(_) => 0,
            };
            fuel.charge(self.clock.now(), burned);
        }
        let plugin = made?;
        let mut cache = self.instantiated();
        if cache.len() >= PLUGIN_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&plugin));
        Ok(plugin)
    }

    /// Instantiates `module` with `params` on the plug-in executor (not cached).
    async fn instantiate(
        &self,
        module: &StoredModule,
        params: BTreeMap<String, String>,
    ) -> Result<Arc<Plugin>, PluginError> {
        let compiled = self.modules.get(&module.hash, module.kind).await?;
        let engine = self.modules.engine().clone();
        let params: Vec<(String, String)> = params.into_iter().collect();
        let caller = engine.clone();
        let plugin = caller
            .run_call(move || Plugin::new(&engine, compiled, params))
            .await??;
        Ok(Arc::new(plugin))
    }

    /// The named module, with its default parameters overridden by `overrides`, as a
    /// plug-in of one of `kinds`.
    pub(crate) async fn named_plugin(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        kinds: &'static [PluginKind],
        purpose: &'static str,
    ) -> Result<Arc<Plugin>, NamedPluginError> {
        self.named_plugin_metered(name, overrides, kinds, purpose, None)
            .await
    }

    /// [`named_plugin`](Self::named_plugin), instantiating it charged to `fuel`.
    async fn named_plugin_metered(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
        kinds: &'static [PluginKind],
        purpose: &'static str,
        fuel: Option<&FuelAccount>,
    ) -> Result<Arc<Plugin>, NamedPluginError> {
        let module =
            self.registry
                .module(name)
                .await
                .ok_or_else(|| NamedPluginError::NotFound {
                    name: name.to_string(),
                })?;
        if !kinds.contains(&module.kind) {
            return Err(NamedPluginError::WrongKind {
                name: name.to_string(),
                kind: module.kind,
                kinds,
                purpose,
            });
        }
        let mut params = module.params.clone();
        params.extend(overrides);
        Ok(self.plugin_metered(&module, params, fuel).await?)
    }

    /// Stores `bytes` as the module `name` (the config file's `[[module]]`); unchanged
    /// modules are a no-op. Returns the module's hash.
    pub async fn upload_named_module(
        &self,
        name: &str,
        kind: PluginKind,
        bytes: Bytes,
        params: BTreeMap<String, String>,
    ) -> Result<String, ModuleError> {
        let existing = self.registry.module(name).await;
        if let Some(existing) = existing
            && existing.kind == kind
            && existing.params == params
            && existing.hash == crate::wasm::content_hash(&bytes)
        {
            return Ok(existing.hash);
        }
        self.upload_module(UploadModuleRequest {
            name: name.to_string(),
            kind,
            module: bytes,
            params: params_list(&params),
        })
        .await
    }

    /// Checks, compiles and stores a module under a name (an upload); returns its hash.
    pub async fn upload_module(&self, request: UploadModuleRequest) -> Result<String, ModuleError> {
        let name = request.name.clone();
        let (stored, _hold) = self.prepare_module(request).await?;
        let hash = stored.hash.clone();
        self.registry
            .store_module(&name, stored, self.limits.modules_max)
            .await?;
        self.collect_module_garbage().await;
        Ok(hash)
    }

    /// Everything an upload does but recording the name: checks the name, the parameters
    /// and the topic configs naming it, then checks, compiles and stores the bytes. The
    /// hold keeps the files until the name is recorded (in a cluster, by the controller).
    pub(crate) async fn prepare_module(
        &self,
        request: UploadModuleRequest,
    ) -> Result<(StoredModule, ModuleHold), ModuleError> {
        validate_module_name(&request.name).map_err(ModuleError::InvalidName)?;
        let kind = request.kind;
        let params = params_map(&request.params).map_err(ModuleError::Params)?;
        // Replacing a module a topic config names with one of a kind that key does not take
        // would make every produce to that topic fail.
        let mut refusing = self.registry.module_references(&request.name);
        refusing.retain(|reference| !kinds_of_key(reference.key).contains(&kind));
        // One entry per topic, naming the first key that refuses the kind.
        refusing.dedup_by(|later, earlier| later.topic == earlier.topic);
        let refused_by: Vec<String> = refusing
            .into_iter()
            .map(|reference| format!("topic {:?} ({})", reference.topic, reference.key))
            .collect();
        if !refused_by.is_empty() {
            return Err(ModuleError::KindInUse {
                name: request.name,
                kind,
                users: refused_by,
            });
        }
        let modules_max = self.limits.modules_max;
        // Checked before the compile (refused cheaply), and again when it is recorded:
        // another upload may have come in meanwhile.
        self.registry
            .check_module_room(&request.name, modules_max)
            .await?;
        let hold = self.hold(&crate::wasm::content_hash(&request.module));
        let stored = self.store_module(request.module, kind, params).await?;
        Ok((stored, hold))
    }

    /// Checks, compiles and stores a module, and checks `params` by instantiating it.
    pub(crate) async fn store_module(
        &self,
        bytes: Bytes,
        kind: PluginKind,
        params: BTreeMap<String, String>,
    ) -> Result<StoredModule, ModuleError> {
        let params_bytes: usize = params
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if params_bytes > self.limits.module_params_bytes_max {
            return Err(ModuleError::ParamsTooLarge {
                bytes: params_bytes,
                max: self.limits.module_params_bytes_max,
            });
        }
        let size_bytes = bytes.len() as u64;
        let module = self
            .modules
            .put(bytes, kind)
            .await
            .map_err(|error| match error {
                ModuleStoreError::Wasm(error) => ModuleError::Invalid(error),
                other => ModuleError::Store(other),
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
        let mut keep = self.registry.referenced_module_hashes().await;
        keep.extend(
            self.held
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keys()
                .cloned(),
        );
        if let Err(error) = self.modules.retain(&keep).await {
            tracing::warn!(%error, "removing unused module files failed");
        }
    }

    /// The named modules, by name.
    pub async fn list_modules(&self) -> BTreeMap<String, StoredModule> {
        self.registry.modules().await
    }

    /// Deletes a named module (refused while a topic config names it); its files go once
    /// no transform uses them either.
    pub async fn delete_module(&self, name: &str) -> Result<(), ModuleError> {
        self.registry.remove_module(name).await?;
        self.collect_module_garbage().await;
        Ok(())
    }

    /// Runs a topic's produce filter over one batch: the batch unchanged when every record
    /// is kept, else a rewritten batch that keeps the original offset span (`true`).
    pub(crate) async fn filter_produced_batch(
        &self,
        module_name: &str,
        batch: Bytes,
        partition_count: u32,
    ) -> Result<(Bytes, bool), ProduceFilterError> {
        let plugin = self
            .named_plugin(
                module_name,
                BTreeMap::new(),
                PRODUCE_FILTER_KINDS,
                "produce.filter.module",
            )
            .await?;
        let opened = open_batch(&batch, &self.budget)
            .await
            .map_err(|error| produced_batch_error(&batch, error))?;
        let outcomes = opened
            .run(&plugin, 0..opened.records.len(), 0, partition_count)
            .await
            .map_err(|error| ProduceFilterError::Failed {
                module: module_name.to_string(),
                error,
            })?;
        if outcomes.iter().all(|outcome| *outcome == Outcome::Keep) {
            return Ok((batch, false));
        }
        let kept = apply_one_to_one(&opened.records, outcomes).map_err(|(index, message)| {
            ProduceFilterError::RecordRefused {
                module: module_name.to_string(),
                index,
                message,
            }
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
            .map_err(ProduceFilterError::Reencode)?;
        Ok((rewritten, true))
    }

    /// Runs a fetch plug-in over the batches read from one partition; dropped records
    /// leave offset gaps (empty batches where a whole batch went), so positions advance.
    /// Each plug-in call is admitted by `fuel` first and charged what it burned.
    pub(crate) async fn apply_fetch_plugin(
        &self,
        plugin: &Arc<Plugin>,
        bytes: Bytes,
        partition: u32,
        partition_count: u32,
        fuel: &FuelAccount,
    ) -> Result<Bytes, FetchPluginError> {
        let mut out = BytesMut::with_capacity(bytes.len());
        for item in BatchIter::new(&bytes) {
            let (header, raw) = item.map_err(FetchPluginError::StoredBatch)?;
            if header.is_control() || header.record_count == 0 {
                out.extend_from_slice(raw);
                continue;
            }
            let batch = bytes.slice_ref(raw);
            let opened = match open_batch(&batch, &self.budget).await {
                Ok(opened) => opened,
                Err(error) => {
                    // Records that do not decode (stored before appends checked records) can
                    // be shown to no plug-in: the consumer gets an empty batch spanning their
                    // offsets and moves on, instead of failing at this offset forever.
                    tracing::warn!(partition, base_offset = header.base_offset, %error, "fetch plug-in skips a stored batch whose records do not decode");
                    out.extend_from_slice(
                        &undecodable_placeholder(&header).map_err(FetchPluginError::Placeholder)?,
                    );
                    continue;
                }
            };
            let meter = Some((fuel, self.clock()));
            let outcomes = opened
                .run_metered(
                    plugin,
                    0..opened.records.len(),
                    partition,
                    partition_count,
                    meter,
                )
                .await
                .map_err(|error| match error {
                    MeteredRunError::Wasm(error) => FetchPluginError::Failed {
                        base_offset: header.base_offset,
                        error,
                    },
                    MeteredRunError::Budget(error) => FetchPluginError::FuelSpent(error),
                })?;
            if outcomes.iter().all(|outcome| *outcome == Outcome::Keep) {
                out.extend_from_slice(raw);
                continue;
            }
            let kept =
                apply_one_to_one(&opened.records, outcomes).map_err(|(index, message)| {
                    let offset = opened.records.get(index).map_or(-1, |record| record.offset);
                    FetchPluginError::RecordFailed { offset, message }
                })?;
            let rewritten = opened
                .encode_kept(&kept, &EncodeOptions::default())
                .map_err(FetchPluginError::Reencode)?;
            debug_assert!(rewritten.len() >= BATCH_HEADER_BYTES);
            out.extend_from_slice(&rewritten);
        }
        Ok(out.freeze())
    }

    /// The fetch plug-in a request names, if any; instantiating it (parameters not seen
    /// before: `ledge_init` runs) is charged to `fuel`.
    pub(crate) async fn fetch_plugin(
        &self,
        plugin: &Option<PluginRef>,
        fuel: &FuelAccount,
    ) -> Result<Option<Arc<Plugin>>, FetchPluginError> {
        let Some(plugin) = plugin else {
            return Ok(None);
        };
        let overrides = params_map(&plugin.params).map_err(FetchPluginError::Params)?;
        Ok(Some(
            self.named_plugin_metered(
                &plugin.module,
                overrides,
                &[PluginKind::Filter, PluginKind::Map, PluginKind::FilterMap],
                "a fetch",
                Some(fuel),
            )
            .await?,
        ))
    }

    /// A produce to `NODE_PARTITIONED`: the topic's partitioner module picks each record's
    /// partition (after its produce filter, if any); records are appended per partition.
    pub(crate) async fn produce_node_partitioned(
        &self,
        topic: &str,
        records: Bytes,
        durability: AppendDurability,
    ) -> Result<(ProduceRouting, Option<i64>), ProduceError> {
        let topic_entry = self
            .registry
            .topic(topic)
            .ok_or_else(|| LookupError::UnknownTopic {
                topic: topic.to_string(),
            })?;
        let config = topic_entry.config();
        let partition_count = topic_entry.partition_count();
        let Some(partitioner) = config.partitioner_module.clone() else {
            return Err(PartitionerError::NoPartitioner {
                topic: topic.to_string(),
            }
            .into());
        };
        let plugin = self
            .named_plugin(
                &partitioner,
                BTreeMap::new(),
                PARTITIONER_KINDS,
                "partitioner.module",
            )
            .await
            .map_err(PartitionerError::Plugin)?;
        let mut routing = ProduceRouting::default();
        let mut per_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        let mut codec = ledge_protocol::Compression::None;
        for item in BatchIter::new(&records) {
            let (header, raw) = item.map_err(ProduceError::MalformedBatch)?;
            config
                .check_timestamps(&header, self.clock.wall_time_ms())
                .map_err(ProduceError::InvalidTimestamp)?;
            if header.producer_id >= 0 {
                return Err(PartitionerError::Idempotent.into());
            }
            let mut batch = records.slice_ref(raw);
            // In a cluster the filter runs on each partition's leader, in its produce path.
            if let Some(filter) = &config.produce_filter_module
                && !self.routes_to_leaders()
            {
                batch = self
                    .filter_produced_batch(filter, batch, partition_count)
                    .await?
                    .0;
            }
            let opened = open_batch(&batch, &self.budget)
                .await
                .map_err(|error| PartitionerError::from(produced_batch_error(&batch, error)))?;
            codec = opened
                .header
                .compression()
                .unwrap_or(ledge_protocol::Compression::None);
            let outcomes = opened
                .run(&plugin, 0..opened.records.len(), 0, partition_count)
                .await
                .map_err(|error| PartitionerError::Failed {
                    module: partitioner.clone(),
                    error,
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
                        return Err(PartitionerError::RecordFailed {
                            module: partitioner,
                            index: record.offset - opened.header.base_offset,
                            message,
                        }
                        .into());
                    }
                    outcome => {
                        return Err(PartitionerError::NotAPartition {
                            module: partitioner,
                            outcome,
                        }
                        .into());
                    }
                }
            }
            let last = opened.header.base_offset + i64::from(opened.header.last_offset_delta);
            while next_offset <= last {
                routing.record_partitions.push(u32::MAX);
                next_offset += 1;
            }
        }
        if let Some(leaders) = self.leaders.get() {
            // Each partition's records to its leader, acks=all, through its produce path
            // (role and epoch checks, produce filter, timestamps, the ISR wait).
            let appends = per_partition
                .into_iter()
                .map(|(partition, records)| async move {
                    let options = EncodeOptions {
                        compression: codec,
                        ..EncodeOptions::default()
                    };
                    let batch = ledge_protocol::encode_batch(&records, &options)
                        .map_err(PartitionerError::Encode)?;
                    let offset = leaders
                        .append(topic.to_string(), partition, batch)
                        .await
                        .map_err(|source| PartitionerError::Leader { partition, source })?;
                    Ok::<_, ProduceError>(PartitionOffset { partition, offset })
                });
            for result in futures_util::future::join_all(appends).await {
                routing.base_offsets.push(result?);
            }
            return Ok((routing, None));
        }
        let append_time = (config.timestamp_type
            == super::topic_config::TimestampType::LogAppendTime)
            .then(|| self.clock.wall_time_ms());
        let appends = per_partition.into_iter().map(|(partition, records)| {
            let config = &config;
            async move {
                let target = self.registry.partition(topic, partition)?;
                let log = target.online_log()?;
                let options = EncodeOptions {
                    compression: codec,
                    ..EncodeOptions::default()
                };
                let batch = ledge_protocol::encode_batch(&records, &options)
                    .map_err(PartitionerError::Encode)?;
                let header = BatchHeader::parse(&batch).map_err(PartitionerError::EncodedHeader)?;
                let batch = super::produce::prepare_batch(&header, batch, config, append_time)?;
                let outcome = log.append(batch, durability).await.map_err(|error| {
                    // As for any append: a fenced log is reopened in the background.
                    if matches!(error, AppendError::Fenced { .. }) {
                        self.registry.reopen_fenced(&target);
                    }
                    ProduceError::Append(error)
                })?;
                Ok::<_, ProduceError>(PartitionOffset {
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
