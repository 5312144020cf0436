//! The wasmtime host: one [`WasmEngine`] per node, modules compiled and checked once
//! ([`PluginModule`]), and [`Plugin`]s (a module with its parameters) that run batches on
//! pooled instances under a fuel budget, a memory cap and an output-size cap.
//!
//! Calls are synchronous and CPU-bound; async callers run them on the engine's
//! [`PluginExecutor`] (`Plugin::run_on_executor`): tokio's blocking pool in the node, so a
//! slow module never stalls the reactor, or inline in the simulator. Fuel, not an epoch
//! deadline, bounds a call: it needs no ticker thread and stops a loop deterministically at
//! the same point every run (the ABI measurement in docs/WASM-ABI.md compares the costs).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime::{
    Config, Engine, Instance, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc, ValType,
};

use super::abi::{
    self, ABI_VERSION, AbiError, AggregateOutput, Application, GroupOutcome, InputHeader, JoinPair,
    Outcome, PluginKind, Slot,
};
use super::executor::PluginExecutor;
use ledge_protocol::wasm_abi::stateful as stateful_abi;
use ledge_protocol::wasm_abi::{
    EXPORT_GROUP, EXPORT_MERGE, EXPORT_STATE_CHECK, EXPORT_STATE_SCHEMA,
};

/// Limits on modules and calls; `[wasm]` in the node config (docs/OPERATIONS.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmLimits {
    /// Largest module accepted at upload.
    pub module_bytes_max: usize,
    /// Linear memory one instance may grow to.
    pub memory_bytes_max: usize,
    /// Fuel (roughly, WASM instructions) a call over a full batch of `batch_records_max`
    /// records may burn; a call over fewer records gets a proportional share (at least one
    /// record's), so isolating a poison record in a runaway module costs about
    /// `log2(batch_records_max)` full budgets, not one per record.
    pub fuel_per_batch: u64,
    /// Largest output one batch call may return.
    pub output_bytes_max: usize,
    /// Most records handed to one call; bigger batches are split.
    pub batch_records_max: usize,
    /// Idle instances kept per plug-in.
    pub idle_instances_max: usize,
    /// Named modules the node keeps (uploads of new names are refused beyond).
    pub modules_max: usize,
    /// Module compiles that run at once, node-wide (`wasm.compiles_concurrent_max`): a
    /// compile cannot be interrupted (fuel meters guest code, not the compiler) and takes
    /// about 1.4 CPU-seconds per MB of module, so uploads wait their turn for one of these
    /// slots instead of taking every core. Each compile runs on one thread (wasmtime is
    /// built without its parallel-compilation feature).
    pub compiles_concurrent_max: usize,
    /// Bytes of the linear memories of idle instances kept warm over every cached plug-in,
    /// node-wide (`wasm.idle_instance_bytes_max`): an instance given back beyond it is
    /// dropped rather than kept, so the plug-in cache cannot hold
    /// plug-ins x `idle_instances_max` x `memory_bytes_max`.
    pub idle_instance_bytes_max: usize,
    /// Guest calls and instantiations running at once, node-wide
    /// (`wasm.calls_concurrent_max`): each holds a thread of the blocking pool and an
    /// instance of up to `memory_bytes_max`, so this bounds plug-ins' threads, CPU and
    /// in-use instance memory together; further calls wait their turn.
    pub calls_concurrent_max: usize,
    /// Fuel fetch plug-ins may burn per second over the whole node
    /// (`wasm.fetch_fuel_per_second`, [`super::fuel_budget`]).
    pub fetch_fuel_per_second: u64,
    /// Fuel one principal's fetch plug-ins may burn per second over all its connections
    /// (`wasm.fetch_fuel_per_principal_per_second`; anonymous clients: per address).
    pub fetch_fuel_per_principal_per_second: u64,
    /// Principals (and anonymous addresses) whose fetch fuel is tracked at once
    /// (`wasm.fetch_fuel_principals_tracked_max`).
    pub fetch_fuel_principals_tracked_max: usize,
    /// Bytes of parameter names and values one module or transform may have; they are kept
    /// in `metadata.json`, so this bounds what an upload can add to it.
    pub module_params_bytes_max: usize,
    /// Bytes of records held decompressed and indexed for plug-in calls at once, node-wide
    /// (`wasm.opened_batch_bytes_max`): a call keeps its batch opened across the call's
    /// `.await`, so without this many concurrent produces through a filter could hold
    /// 64 MiB each. Opening a batch beyond it waits, holding nothing, for room.
    pub opened_batch_bytes_max: usize,
}

/// Default of [`WasmLimits::opened_batch_bytes_max`]: four batches at the protocol's
/// 64 MiB decompression limit, so at least four plug-in calls on the largest batches run
/// at once (more than an edge box's cores).
pub const OPENED_BATCH_BYTES_MAX_DEFAULT: usize = 256 * 1024 * 1024;
/// Largest [`WasmLimits::opened_batch_bytes_max`]: a batch's cost is reserved with one
/// 32-bit semaphore acquisition.
pub const OPENED_BATCH_BYTES_MAX_LIMIT: usize = u32::MAX as usize;

/// Default of [`WasmLimits::compiles_concurrent_max`]: one, so uploads (each up to
/// `module_bytes_max`, 16 MiB: about 20 CPU-seconds) take at most one core of an edge box
/// and requests keep the others.
pub const COMPILES_CONCURRENT_MAX_DEFAULT: usize = 1;
/// Largest [`WasmLimits::compiles_concurrent_max`].
pub const COMPILES_CONCURRENT_MAX_LIMIT: usize = 64;
/// Default of [`WasmLimits::calls_concurrent_max`]: 8, a few per core of an edge box, so
/// instances in use hold at most 512 MiB at the default `memory_bytes_max` and plug-ins
/// never take all of tokio's blocking threads (512).
pub const CALLS_CONCURRENT_MAX_DEFAULT: usize = 8;
/// Largest [`WasmLimits::calls_concurrent_max`].
pub const CALLS_CONCURRENT_MAX_LIMIT: usize = 1024;
/// Default of [`WasmLimits::idle_instance_bytes_max`]: 256 MiB, four instances at the
/// default `memory_bytes_max` (64 MiB); real filters use a few pages, so hundreds fit.
pub const IDLE_INSTANCE_BYTES_MAX_DEFAULT: usize = 256 * 1024 * 1024;

impl Default for WasmLimits {
    fn default() -> Self {
        Self {
            module_bytes_max: 16 * 1024 * 1024,
            memory_bytes_max: 64 * 1024 * 1024,
            // About a second of a runaway loop; a real filter uses well under 1% of it.
            fuel_per_batch: 1_000_000_000,
            output_bytes_max: 16 * 1024 * 1024,
            batch_records_max: 1024,
            idle_instances_max: 4,
            modules_max: 1024,
            compiles_concurrent_max: COMPILES_CONCURRENT_MAX_DEFAULT,
            idle_instance_bytes_max: IDLE_INSTANCE_BYTES_MAX_DEFAULT,
            calls_concurrent_max: CALLS_CONCURRENT_MAX_DEFAULT,
            fetch_fuel_per_second: super::fuel_budget::FETCH_FUEL_PER_SECOND_DEFAULT,
            fetch_fuel_per_principal_per_second:
                super::fuel_budget::FETCH_FUEL_PER_PRINCIPAL_PER_SECOND_DEFAULT,
            fetch_fuel_principals_tracked_max:
                super::fuel_budget::FETCH_FUEL_PRINCIPALS_TRACKED_MAX_DEFAULT,
            module_params_bytes_max: 16 * 1024,
            opened_batch_bytes_max: OPENED_BATCH_BYTES_MAX_DEFAULT,
        }
    }
}

/// Why a module was refused or a call failed. The messages go to operators as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WasmError {
    /// The bytes are not a usable module (invalid WASM, wrong exports, imports).
    #[error("invalid module: {0}")]
    InvalidModule(String),
    /// The module is bigger than `module_bytes_max`.
    #[error("module is {size} bytes, more than the limit of {limit} (wasm.module_bytes_max)")]
    ModuleTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `ledge_init` refused the parameters.
    #[error("module refused its parameters: {0}")]
    Init(String),
    /// The module trapped (a Rust panic is a trap).
    #[error("module trapped: {0}")]
    Trap(String),
    /// The call used its whole fuel budget.
    #[error(
        "module ran out of fuel ({0} for this call; wasm.fuel_per_batch): an endless loop or too much work per record"
    )]
    OutOfFuel(u64),
    /// The module tried to grow memory past `memory_bytes_max`.
    #[error("module exceeded its memory limit of {0} bytes (wasm.memory_bytes_max)")]
    MemoryLimit(usize),
    /// The output broke the ABI or its size limit.
    #[error("{0}")]
    Garbage(String),
    /// The engine itself failed (not the module's fault).
    #[error("wasm engine error: {0}")]
    Engine(String),
    /// The call is not one this module's kind answers (a record-by-record batch on an
    /// aggregate, `ledge_group` on a module without `group_by`, ...).
    #[error("{0}")]
    WrongCall(String),
}

impl From<AbiError> for WasmError {
    fn from(error: AbiError) -> Self {
        Self::Garbage(error.to_string())
    }
}

/// The node's one wasmtime engine and the limits every plug-in runs under.
#[derive(Clone)]
pub struct WasmEngine {
    engine: Engine,
    limits: WasmLimits,
    /// Where compiles, instantiations and guest calls run.
    executor: PluginExecutor,
    /// One permit per compile that may run at once (`compiles_concurrent_max`).
    compile_slots: Arc<tokio::sync::Semaphore>,
    /// One permit per guest call or instantiation that may run at once
    /// (`calls_concurrent_max`).
    call_slots: Arc<tokio::sync::Semaphore>,
    /// Bytes of linear memory held by idle pooled instances, over every plug-in.
    idle_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A compiled, checked module of one kind.
pub struct PluginModule {
    module: Module,
    kind: PluginKind,
    hash: String,
    /// An aggregate's `ledge_state_schema`, read when the module was checked.
    state_schema: Option<String>,
}

impl std::fmt::Debug for PluginModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginModule")
            .field("kind", &self.kind)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl PluginModule {
    /// The module's kind.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// SHA-256 of the module's bytes, hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// An aggregate's state type identifier (`ledge_state_schema`, read at upload); `None`
    /// for other kinds. A hot swap keeps the state when it is unchanged (docs/STREAMS.md).
    pub fn state_schema(&self) -> Option<&str> {
        self.state_schema.as_deref()
    }

    /// Whether the module exports `name` (an aggregate's optional `ledge_group` or
    /// `ledge_merge`).
    pub fn exports(&self, name: &str) -> bool {
        self.module.exports().any(|export| export.name() == name)
    }
}

/// SHA-256 of `bytes`, lower-case hex: a module's identity.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

impl WasmEngine {
    /// An engine with fuel metering on (guard pages and the rest at wasmtime's defaults).
    pub fn new(limits: WasmLimits) -> Result<Self, WasmError> {
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|error| WasmError::Engine(error.to_string()))?;
        let compile_slots = Arc::new(tokio::sync::Semaphore::new(
            limits.compiles_concurrent_max.max(1),
        ));
        let call_slots = Arc::new(tokio::sync::Semaphore::new(
            limits.calls_concurrent_max.max(1),
        ));
        Ok(Self {
            engine,
            limits,
            executor: PluginExecutor::default(),
            compile_slots,
            call_slots,
            idle_bytes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    /// The same engine running its plug-in work on `executor`.
    pub fn with_executor(mut self, executor: PluginExecutor) -> Self {
        self.executor = executor;
        self
    }

    /// Where compiles, instantiations and guest calls run.
    pub fn executor(&self) -> PluginExecutor {
        self.executor
    }

    /// The limits.
    pub fn limits(&self) -> &WasmLimits {
        &self.limits
    }

    /// Identifies compiled code this engine can load: compiled modules are cached under it,
    /// so a different wasmtime or different settings recompile instead of loading.
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        // FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
        struct Fnv(u64);
        impl Hasher for Fnv {
            fn finish(&self) -> u64 {
                self.0
            }
            fn write(&mut self, bytes: &[u8]) {
                for byte in bytes {
                    self.0 ^= u64::from(*byte);
                    self.0 = self.0.wrapping_mul(0x100_0000_01b3);
                }
            }
        }
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// [`compile`](Self::compile) on the engine's executor, once one of the
    /// `compiles_concurrent_max` compile slots is free (a module over `module_bytes_max` is
    /// refused at once, without waiting).
    pub async fn compile_in_turn(
        &self,
        bytes: Bytes,
        kind: PluginKind,
    ) -> Result<(Arc<PluginModule>, Vec<u8>), WasmError> {
        if bytes.len() > self.limits.module_bytes_max {
            return Err(WasmError::ModuleTooLarge {
                size: bytes.len(),
                limit: self.limits.module_bytes_max,
            });
        }
        let _slot = Arc::clone(&self.compile_slots)
            .acquire_owned()
            .await
            .map_err(|_| WasmError::Engine("compile slots closed".into()))?;
        let engine = self.clone();
        self.executor
            .run(move || engine.compile(&bytes, kind))
            .await
            .map_err(|error| WasmError::Engine(format!("compile task failed: {error}")))?
    }

    /// Runs guest work (a call, an instantiation) on the executor once one of the
    /// `calls_concurrent_max` call slots is free; an error only if the blocking task failed.
    pub async fn run_call<T, F>(&self, work: F) -> Result<T, tokio::task::JoinError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        // Never closed, so the permit is always granted.
        let _slot = Arc::clone(&self.call_slots).acquire_owned().await.ok();
        self.executor.run(work).await
    }

    /// The call slots (`calls_concurrent_max`), for tests that hold one.
    #[cfg(test)]
    pub(crate) fn call_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.call_slots
    }

    /// The compile slots (`compiles_concurrent_max`), for tests that hold one.
    #[cfg(test)]
    pub(crate) fn compile_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.compile_slots
    }

    /// Bytes of linear memory idle pooled instances hold now, over every plug-in.
    pub fn idle_instance_bytes(&self) -> usize {
        self.idle_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compiles and checks a module of `kind`: size, no imports, the ABI's exports with the
    /// right signatures, exactly one kind export and it is `kind`'s, and
    /// `ledge_abi_version` returns 1. Returns the module and its compiled form for the cache.
    pub fn compile(
        &self,
        bytes: &[u8],
        kind: PluginKind,
    ) -> Result<(Arc<PluginModule>, Vec<u8>), WasmError> {
        if bytes.len() > self.limits.module_bytes_max {
            return Err(WasmError::ModuleTooLarge {
                size: bytes.len(),
                limit: self.limits.module_bytes_max,
            });
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(WasmError::InvalidModule(
                "not a WebAssembly binary (no \\0asm magic); build with --target wasm32-unknown-unknown".into(),
            ));
        }
        let module = Module::new(&self.engine, bytes)
            .map_err(|error| WasmError::InvalidModule(format!("{error:#}")))?;
        let compiled = module
            .serialize()
            .map_err(|error| WasmError::Engine(error.to_string()))?;
        let mut plugin = PluginModule {
            module,
            kind,
            hash: content_hash(bytes),
            state_schema: None,
        };
        self.check(&mut plugin)?;
        Ok((Arc::new(plugin), compiled))
    }

    /// Loads a module compiled by [`compile`](Self::compile) (from the on-disk cache).
    ///
    /// # Safety
    /// `compiled` must be exactly what `compile` returned for an engine with the same
    /// [`compatibility_key`](Self::compatibility_key): wasmtime runs it as machine code.
    /// The caller checks a digest of the cache file before calling this.
    pub unsafe fn load_compiled(
        &self,
        compiled: &[u8],
        kind: PluginKind,
        hash: String,
    ) -> Result<Arc<PluginModule>, WasmError> {
        // SAFETY: forwarded from this function's contract.
        let module = unsafe { Module::deserialize(&self.engine, compiled) }
            .map_err(|error| WasmError::Engine(format!("cached module unusable: {error}")))?;
        let mut plugin = PluginModule {
            module,
            kind,
            hash,
            state_schema: None,
        };
        self.check(&mut plugin)?;
        Ok(Arc::new(plugin))
    }

    /// The checks of [`compile`](Self::compile); reads an aggregate's `ledge_state_schema`
    /// into `plugin`.
    fn check(&self, plugin: &mut PluginModule) -> Result<(), WasmError> {
        let module = &plugin.module;
        if let Some(import) = module.imports().next() {
            return Err(WasmError::InvalidModule(format!(
                "imports {}::{}; plug-ins may not import anything (the node offers no host functions)",
                import.module(),
                import.name()
            )));
        }
        let export = |name: &str| module.exports().find(|export| export.name() == name);
        let memory = export("memory").and_then(|export| export.ty().memory().cloned());
        match memory {
            Some(memory) if !memory.is_64() => {}
            Some(_) => {
                return Err(WasmError::InvalidModule(
                    "`memory` is a 64-bit memory; the ABI is wasm32".into(),
                ));
            }
            None => {
                return Err(WasmError::InvalidModule("no exported `memory`".into()));
            }
        }
        let signature = |name: &str, params: &[ValType], results: &[ValType]| {
            let Some(func) = export(name).and_then(|export| export.ty().func().cloned()) else {
                return Err(WasmError::InvalidModule(format!(
                    "missing export `{name}` (is it built with ledge-wasm-sdk?)"
                )));
            };
            let same = |actual: Vec<ValType>, wanted: &[ValType]| {
                actual.len() == wanted.len()
                    && actual.iter().zip(wanted).all(|(a, b)| ValType::eq(a, b))
            };
            if same(func.params().collect(), params) && same(func.results().collect(), results) {
                Ok(())
            } else {
                Err(WasmError::InvalidModule(format!(
                    "export `{name}` has the wrong signature: {func}"
                )))
            }
        };
        use ValType::{I32, I64};
        signature("ledge_abi_version", &[], &[I32])?;
        signature("ledge_alloc", &[I32], &[I32])?;
        signature("ledge_init", &[I32, I32], &[I64])?;
        let present: Vec<PluginKind> = PluginKind::ALL
            .into_iter()
            .filter(|kind| export(kind.export_name()).is_some())
            .collect();
        if !present.contains(&plugin.kind) {
            let found = if present.is_empty() {
                "none".to_string()
            } else {
                present
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(WasmError::InvalidModule(format!(
                "declared as a {} but has no `{}` export (kinds it exports: {found})",
                plugin.kind,
                plugin.kind.export_name()
            )));
        }
        if present.len() > 1 {
            return Err(WasmError::InvalidModule(format!(
                "exports more than one kind ({}); a module is exactly one plug-in",
                present
                    .iter()
                    .map(|kind| kind.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        signature(plugin.kind.export_name(), &[I32, I32], &[I64])?;
        // The stateful kinds' other exports: required ones present, optional ones with the
        // right signature when present, and none on a kind that has no use for them.
        let kind = plugin.kind;
        for name in [
            EXPORT_GROUP,
            EXPORT_MERGE,
            EXPORT_STATE_SCHEMA,
            EXPORT_STATE_CHECK,
        ] {
            let (params, results): (&[ValType], &[ValType]) = if name == EXPORT_STATE_SCHEMA {
                (&[], &[I64])
            } else {
                (&[I32, I32], &[I64])
            };
            if kind.required_exports().contains(&name) {
                signature(name, params, results)?;
            } else if export(name).is_some() {
                if !kind.optional_exports().contains(&name) {
                    return Err(WasmError::InvalidModule(format!(
                        "exports `{name}`, which only an aggregate has, but is declared as a {kind}"
                    )));
                }
                signature(name, params, results)?;
            }
        }
        // Instantiate once with no parameters to run `ledge_abi_version`: a module whose start
        // function traps or that speaks another ABI is refused here, not at first use.
        let mut instance = PluginInstance::new(self, plugin)?;
        instance.store.set_fuel(self.limits.fuel_per_batch).ok();
        let version = instance
            .abi_version
            .call(&mut instance.store, ())
            .map_err(|error| instance.classify(self, error))?;
        if version != ABI_VERSION {
            return Err(WasmError::InvalidModule(format!(
                "speaks plug-in ABI version {version}; this node speaks {ABI_VERSION}"
            )));
        }
        if kind.required_exports().contains(&EXPORT_STATE_SCHEMA) {
            let schema = instance
                .exported(EXPORT_STATE_SCHEMA)
                .and_then(|func| func.typed::<(), i64>(&instance.store).ok())
                .ok_or_else(|| {
                    WasmError::InvalidModule(format!("no callable `{EXPORT_STATE_SCHEMA}`"))
                })?;
            let packed = schema
                .call(&mut instance.store, ())
                .map_err(|error| instance.classify(self, error))?;
            // Bounded by the output cap; the schema's own bound is the decoder's.
            let bytes = instance.read_result(packed, self.limits.output_bytes_max)?;
            let schema = stateful_abi::decode_state_schema(&bytes)
                .map_err(|error| WasmError::InvalidModule(error.0))?;
            plugin.state_schema = Some(schema.to_string());
        }
        Ok(())
    }
}

/// Tracks whether a growth was refused for the memory cap, to name the failure.
struct MemoryCap {
    bytes_max: usize,
    refused: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.bytes_max;
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real module.
        Ok(desired <= 1_000_000)
    }
}

struct PluginInstance {
    store: Store<MemoryCap>,
    /// Fuel the current call started with.
    fuel_budget: u64,
    memory: Memory,
    abi_version: TypedFunc<(), i32>,
    alloc: TypedFunc<i32, i32>,
    init: TypedFunc<(i32, i32), i64>,
    process: TypedFunc<(i32, i32), i64>,
    /// An aggregate's `ledge_group`, `ledge_merge` and `ledge_state_check`, when exported.
    group: Option<TypedFunc<(i32, i32), i64>>,
    merge: Option<TypedFunc<(i32, i32), i64>>,
    state_check: Option<TypedFunc<(i32, i32), i64>>,
    panic_message: Option<TypedFunc<(), i64>>,
    instance: Instance,
}

impl PluginInstance {
    fn new(engine: &WasmEngine, plugin: &PluginModule) -> Result<Self, WasmError> {
        let mut store = Store::new(
            &engine.engine,
            MemoryCap {
                bytes_max: engine.limits.memory_bytes_max,
                refused: false,
            },
        );
        store.limiter(|cap| cap);
        // A start function runs during instantiation: it gets a budget too.
        store.set_fuel(engine.limits.fuel_per_batch).ok();
        let instance = Instance::new(&mut store, &plugin.module, &[]).map_err(|error| {
            if store.data().refused {
                WasmError::MemoryLimit(engine.limits.memory_bytes_max)
            } else {
                WasmError::InvalidModule(format!("cannot instantiate: {error:#}"))
            }
        })?;
        let func_error = |error: wasmtime::Error| WasmError::InvalidModule(format!("{error:#}"));
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| WasmError::InvalidModule("no exported `memory`".into()))?;
        let abi_version = instance
            .get_typed_func(&mut store, "ledge_abi_version")
            .map_err(func_error)?;
        let alloc = instance
            .get_typed_func(&mut store, "ledge_alloc")
            .map_err(func_error)?;
        let init = instance
            .get_typed_func(&mut store, "ledge_init")
            .map_err(func_error)?;
        let process = instance
            .get_typed_func(&mut store, plugin.kind.export_name())
            .map_err(func_error)?;
        let panic_message = instance
            .get_typed_func(&mut store, "ledge_panic_message")
            .ok();
        let mut optional = |name: &str| instance.get_typed_func(&mut store, name).ok();
        let group = optional(EXPORT_GROUP);
        let merge = optional(EXPORT_MERGE);
        let state_check = optional(EXPORT_STATE_CHECK);
        Ok(Self {
            store,
            fuel_budget: engine.limits.fuel_per_batch,
            memory,
            abi_version,
            alloc,
            init,
            process,
            group,
            merge,
            state_check,
            panic_message,
            instance,
        })
    }

    /// The export `name`, if the module has it.
    fn exported(&mut self, name: &str) -> Option<wasmtime::Func> {
        self.instance.get_func(&mut self.store, name)
    }

    /// Names a failed call: fuel, the memory cap, or a trap with the guest's panic message.
    fn classify(&mut self, engine: &WasmEngine, error: wasmtime::Error) -> WasmError {
        if let Some(Trap::OutOfFuel) = error.downcast_ref::<Trap>() {
            return WasmError::OutOfFuel(self.fuel_budget);
        }
        if self.store.data().refused {
            return WasmError::MemoryLimit(engine.limits.memory_bytes_max);
        }
        let trap = match error.downcast_ref::<Trap>() {
            Some(trap) => trap.to_string(),
            None => format!("{error}"),
        };
        match self.read_panic_message() {
            Some(message) => WasmError::Trap(format!("{message} ({trap})")),
            None => WasmError::Trap(trap),
        }
    }

    fn read_panic_message(&mut self) -> Option<String> {
        let func = self.panic_message.clone()?;
        // A little fuel of its own: the module already failed once.
        self.store.set_fuel(1_000_000).ok()?;
        let packed = func.call(&mut self.store, ()).ok()?;
        if packed == 0 {
            return None;
        }
        let bytes = self.read_result(packed, 4096).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Copies the `(ptr << 32) | len` result out of guest memory, bounds-checked.
    fn read_result(&mut self, packed: i64, limit: usize) -> Result<Vec<u8>, WasmError> {
        let packed = packed as u64;
        let pointer = (packed >> 32) as usize;
        let len = (packed & 0xffff_ffff) as usize;
        if len > limit {
            return Err(WasmError::Garbage(format!(
                "module returned {len} bytes of output, more than the limit of {limit} (wasm.output_bytes_max)"
            )));
        }
        let data = self.memory.data(&self.store);
        let slice = pointer
            .checked_add(len)
            .and_then(|end| data.get(pointer..end))
            .ok_or_else(|| {
                WasmError::Garbage(format!(
                    "module returned output at {pointer}..{} outside its {}-byte memory",
                    pointer.saturating_add(len),
                    data.len()
                ))
            })?;
        Ok(slice.to_vec())
    }

    /// Copies `input` into a guest buffer from `ledge_alloc`, returning its pointer.
    fn write_input(&mut self, engine: &WasmEngine, input: &[u8]) -> Result<i32, WasmError> {
        let len = i32::try_from(input.len())
            .map_err(|_| WasmError::Garbage("input larger than 2 GiB".into()))?;
        let pointer = self
            .alloc
            .call(&mut self.store, len)
            .map_err(|error| self.classify(engine, error))?;
        if pointer == 0 && !input.is_empty() {
            return Err(WasmError::MemoryLimit(engine.limits.memory_bytes_max));
        }
        let start = pointer as u32 as usize;
        let data = self.memory.data_mut(&mut self.store);
        let memory_len = data.len();
        let target = start
            .checked_add(input.len())
            .and_then(|end| data.get_mut(start..end))
            .ok_or_else(|| {
                WasmError::Garbage(format!(
                    "ledge_alloc returned {start} for {} bytes, outside its {memory_len}-byte memory",
                    input.len()
                ))
            })?;
        target.copy_from_slice(input);
        Ok(pointer)
    }

    fn initialize(&mut self, engine: &WasmEngine, params: &[u8]) -> Result<(), WasmError> {
        self.fuel_budget = engine.limits.fuel_per_batch;
        self.store.set_fuel(self.fuel_budget).ok();
        let pointer = self.write_input(engine, params)?;
        let len = params.len() as i32;
        let packed = self
            .init
            .call(&mut self.store, (pointer, len))
            .map_err(|error| self.classify(engine, error))?;
        let result = self.read_result(packed, engine.limits.output_bytes_max)?;
        abi::decode_init_result(Bytes::from(result))?.map_err(WasmError::Init)
    }

    fn process(
        &mut self,
        engine: &WasmEngine,
        input: &[u8],
        record_count: usize,
    ) -> Result<Vec<u8>, WasmError> {
        let process = self.process.clone();
        self.call(engine, &process, input, record_count)
    }

    /// Calls `func` (a `(ptr, len) -> result pointer` export) on `input` with the fuel share
    /// of `units` records, and copies its output out, bounded by `output_bytes_max`.
    fn call(
        &mut self,
        engine: &WasmEngine,
        func: &TypedFunc<(i32, i32), i64>,
        input: &[u8],
        record_count: usize,
    ) -> Result<Vec<u8>, WasmError> {
        let limits = &engine.limits;
        let records_max = limits.batch_records_max.max(1) as u64;
        let share = limits
            .fuel_per_batch
            .saturating_mul(record_count.max(1) as u64)
            / records_max;
        self.fuel_budget = share
            .max(limits.fuel_per_batch / records_max)
            .clamp(1, limits.fuel_per_batch);
        self.store.set_fuel(self.fuel_budget).ok();
        let pointer = self.write_input(engine, input)?;
        let len = i32::try_from(input.len())
            .map_err(|_| WasmError::Garbage("input larger than 2 GiB".into()))?;
        let packed = func
            .call(&mut self.store, (pointer, len))
            .map_err(|error| self.classify(engine, error))?;
        self.read_result(packed, engine.limits.output_bytes_max)
    }

    fn fuel_used(&self) -> u64 {
        self.fuel_budget
            .saturating_sub(self.store.get_fuel().unwrap_or(0))
    }
}

/// A module with its parameters, ready to run batches. Cheap to share (`Arc`); instances
/// are pooled and one that failed is dropped, never reused.
pub struct Plugin {
    engine: WasmEngine,
    module: Arc<PluginModule>,
    params: Vec<(String, String)>,
    encoded_params: Vec<u8>,
    idle: Mutex<Vec<(PluginInstance, IdleCharge)>>,
    /// Fuel `ledge_init` burned when the plug-in was made.
    init_fuel_used: u64,
    /// Its `/metrics` counters, shared by every plug-in of the same module and kind
    /// (`ledge_wasm_records_total`, `ledge_wasm_duration_seconds`).
    metrics: Arc<crate::metrics::PluginMetrics>,
}

/// An idle instance's share of the engine's `idle_instance_bytes_max`, given back when the
/// instance leaves the pool (checked out, or dropped with its plug-in).
struct IdleCharge {
    bytes: usize,
    counter: Arc<std::sync::atomic::AtomicUsize>,
}

impl IdleCharge {
    /// Charges `bytes` to `counter` if it stays within `max`.
    fn take(
        counter: &Arc<std::sync::atomic::AtomicUsize>,
        bytes: usize,
        max: usize,
    ) -> Option<Self> {
        use std::sync::atomic::Ordering;
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= max)
            })
            .ok()?;
        Some(Self {
            bytes,
            counter: Arc::clone(counter),
        })
    }
}

impl Drop for IdleCharge {
    fn drop(&mut self) {
        self.counter
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("module", &self.module)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// The result of one call of a stateful plug-in ([`Plugin::aggregate`] and its siblings).
#[derive(Debug)]
pub struct CallRun<T> {
    /// The decoded, bounds-checked output.
    pub output: T,
    /// Fuel the call burned (with `ledge_init`'s, when no idle instance was at hand).
    pub fuel_used: u64,
}

/// The exports of the stateful kinds' calls.
#[derive(Clone, Copy, Debug)]
enum StatefulExport {
    Group,
    Aggregate,
    Merge,
    StateCheck,
    Join,
}

impl StatefulExport {
    fn name(self) -> &'static str {
        match self {
            Self::Group => EXPORT_GROUP,
            Self::Aggregate => PluginKind::Aggregate.export_name(),
            Self::Merge => EXPORT_MERGE,
            Self::StateCheck => EXPORT_STATE_CHECK,
            Self::Join => PluginKind::Join.export_name(),
        }
    }
}

/// The result of one batch call.
#[derive(Debug)]
pub struct BatchRun {
    /// One per input record, in order.
    pub outcomes: Vec<Outcome>,
    /// Fuel the call burned (with `ledge_init`'s, when no idle instance was at hand).
    pub fuel_used: u64,
}

impl Plugin {
    /// Instantiates the module once and runs `ledge_init` with `params`, so bad
    /// parameters are reported now, to whoever deployed the plug-in.
    pub fn new(
        engine: &WasmEngine,
        module: Arc<PluginModule>,
        params: Vec<(String, String)>,
    ) -> Result<Self, WasmError> {
        let encoded_params = abi::encode_params(&params);
        // The `plugin` label: kind and the module hash's first 12 hex digits (what
        // `ledge module list` shows beside each name).
        let label = format!(
            "{}/{}",
            module.kind(),
            module.hash().get(..12).unwrap_or_else(|| module.hash())
        );
        let plugin = Self {
            engine: engine.clone(),
            module,
            params,
            encoded_params,
            idle: Mutex::new(Vec::new()),
            init_fuel_used: 0,
            metrics: crate::metrics::node().plugin(&label),
        };
        let (instance, init_fuel_used) = plugin.fresh_instance()?;
        plugin.release(instance);
        Ok(Self {
            init_fuel_used,
            ..plugin
        })
    }

    /// The module.
    pub fn module(&self) -> &Arc<PluginModule> {
        &self.module
    }

    /// The parameters.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The engine's limits.
    pub fn limits(&self) -> &WasmLimits {
        &self.engine.limits
    }

    /// A new instance, initialised, with the fuel `ledge_init` burned.
    fn fresh_instance(&self) -> Result<(PluginInstance, u64), WasmError> {
        let mut instance = PluginInstance::new(&self.engine, &self.module)?;
        instance.initialize(&self.engine, &self.encoded_params)?;
        let init_fuel = instance.fuel_used();
        Ok((instance, init_fuel))
    }

    /// An idle instance, or a new one; with the fuel initialising it burned (0 if idle).
    fn checkout(&self) -> Result<(PluginInstance, u64), WasmError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match pooled {
            Some((instance, _charge)) => Ok((instance, 0)),
            None => self.fresh_instance(),
        }
    }

    /// Fuel `ledge_init` burned when this plug-in was made.
    pub fn init_fuel_used(&self) -> u64 {
        self.init_fuel_used
    }

    /// Keeps `instance` for the next call if this plug-in keeps fewer than
    /// `idle_instances_max` and its memory fits in the engine's `idle_instance_bytes_max`;
    /// drops it otherwise.
    fn release(&self, mut instance: PluginInstance) {
        instance.store.data_mut().refused = false;
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() >= self.engine.limits.idle_instances_max {
            return;
        }
        let bytes = instance.memory.data_size(&instance.store);
        let limits = &self.engine.limits;
        if let Some(charge) = IdleCharge::take(
            &self.engine.idle_bytes,
            bytes,
            limits.idle_instance_bytes_max,
        ) {
            idle.push((instance, charge));
        }
    }

    /// Idle instances this plug-in keeps now.
    pub fn idle_instances(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Runs one guest call over `record_count` records (a Kafka v2 records region, at most
    /// `batch_records_max` of them). Any failure discards the instance.
    pub fn run(
        &self,
        header: &InputHeader,
        records: &[u8],
        record_count: usize,
    ) -> Result<BatchRun, WasmError> {
        let count = u32::try_from(record_count)
            .map_err(|_| WasmError::Garbage("too many records".into()))?;
        let mut input = Vec::new();
        abi::encode_input(header, count, records, &mut input);
        // The system clock, for `ledge_wasm_duration_seconds` only: it decides nothing (a
        // call runs on a blocking thread, where no simulated clock drives anything).
        let clock = crate::clock::SystemClock;
        let started = crate::clock::Clock::now(&clock);
        let ran = self.run_counted(&input, header, record_count);
        self.metrics
            .observe_call(crate::clock::Clock::now(&clock).saturating_duration_since(started));
        use crate::metrics::PluginRecordOutcome;
        match &ran {
            Ok(run) => {
                let mut counts = [0u64; PluginRecordOutcome::ALL.len()];
                for outcome in &run.outcomes {
                    let kind = match outcome {
                        Outcome::Keep => PluginRecordOutcome::Keep,
                        Outcome::Drop => PluginRecordOutcome::Drop,
                        Outcome::Error(_) => PluginRecordOutcome::Error,
                        Outcome::Records(_) => PluginRecordOutcome::Transformed,
                        Outcome::Partition(_) => PluginRecordOutcome::Routed,
                    };
                    counts[kind as usize] += 1;
                }
                for (kind, count) in PluginRecordOutcome::ALL.into_iter().zip(counts) {
                    if count > 0 {
                        self.metrics.count(kind, count);
                    }
                }
            }
            Err(_) => self
                .metrics
                .count(PluginRecordOutcome::Failed, record_count as u64),
        }
        ran
    }

    fn run_counted(
        &self,
        input: &[u8],
        header: &InputHeader,
        record_count: usize,
    ) -> Result<BatchRun, WasmError> {
        let kind = self.module.kind;
        if kind.is_stateful() {
            return Err(WasmError::WrongCall(format!(
                "a {kind} module is not run record by record: it is a stateful plug-in \
                 (docs/STREAMS.md)"
            )));
        }
        let (mut instance, init_fuel) = self.checkout()?;
        let output = instance.process(&self.engine, input, record_count)?;
        // A call without an idle instance also paid for initialising one.
        let fuel_used = instance.fuel_used().saturating_add(init_fuel);
        let outcomes = abi::decode_output(
            self.module.kind,
            Bytes::from(output),
            record_count,
            header.partition_count,
        )?;
        self.release(instance);
        Ok(BatchRun {
            outcomes,
            fuel_used,
        })
    }

    /// [`run`](Self::run) on the engine's [`PluginExecutor`], in one of its call slots.
    pub async fn run_on_executor(
        self: &Arc<Self>,
        header: InputHeader,
        records: Bytes,
        record_count: usize,
    ) -> Result<BatchRun, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || plugin.run(&header, &records, record_count))
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// [`group`](Self::group) on the node's plug-in executor.
    pub async fn group_on_executor(
        self: &Arc<Self>,
        header: InputHeader,
        records: Bytes,
        record_count: usize,
    ) -> Result<CallRun<Vec<GroupOutcome>>, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || plugin.group(&header, &records, record_count))
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// [`check_states`](Self::check_states) on the node's plug-in executor.
    pub async fn check_states_on_executor(
        self: &Arc<Self>,
        states: Vec<Bytes>,
    ) -> Result<CallRun<Vec<Result<(), String>>>, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || {
                let states: Vec<&[u8]> = states.iter().map(|state| state.as_ref()).collect();
                plugin.check_states(&states)
            })
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// [`Self::join`] on the plug-in executor: the left and right batches as
    /// `(header, records region, record count)`.
    pub async fn join_on_executor(
        self: &Arc<Self>,
        left: (InputHeader, Bytes, usize),
        right: (InputHeader, Bytes, usize),
        pairs: Vec<JoinPair>,
    ) -> Result<CallRun<Vec<Outcome>>, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || {
                plugin.join(
                    (&left.0, &left.1, left.2),
                    (&right.0, &right.1, right.2),
                    &pairs,
                )
            })
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// [`merge`](Self::merge) on the node's plug-in executor, with owned pairs.
    pub async fn merge_on_executor(
        self: &Arc<Self>,
        pairs: Vec<(Bytes, Bytes)>,
    ) -> Result<CallRun<Vec<Result<Bytes, String>>>, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || {
                let pairs: Vec<(&[u8], &[u8])> = pairs
                    .iter()
                    .map(|(a, b)| (a.as_ref(), b.as_ref()))
                    .collect();
                plugin.merge(&pairs)
            })
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// [`aggregate`](Self::aggregate) on the node's plug-in executor, with owned slots:
    /// (group key, window or `None` when unwindowed, stored state) each.
    pub async fn aggregate_on_executor(
        self: &Arc<Self>,
        slots: Vec<(Bytes, Option<abi::Window>, Option<Bytes>)>,
        header: InputHeader,
        records: Bytes,
        record_count: usize,
        applications: Vec<Application>,
    ) -> Result<CallRun<AggregateOutput>, WasmError> {
        let plugin = Arc::clone(self);
        self.engine
            .run_call(move || {
                let slots: Vec<Slot<'_>> = slots
                    .iter()
                    .map(|(key, window, state)| Slot {
                        key,
                        window: *window,
                        state: state.as_deref(),
                    })
                    .collect();
                plugin.aggregate(&slots, &header, &records, record_count, &applications)
            })
            .await
            .map_err(|error| WasmError::Engine(format!("plug-in task failed: {error}")))?
    }

    /// Runs one call of `export` on `input` with the fuel share of `units` records, then
    /// `decode` on its output. A failure of either discards the instance; success gives it
    /// back to the pool. The fuel includes `ledge_init`'s when no idle instance was at hand.
    fn call_stateful<T>(
        &self,
        export: StatefulExport,
        input: &[u8],
        units: usize,
        decode: impl FnOnce(Vec<u8>) -> Result<T, AbiError>,
    ) -> Result<CallRun<T>, WasmError> {
        let kind = self.module.kind;
        let wanted = match export {
            StatefulExport::Aggregate
            | StatefulExport::Group
            | StatefulExport::Merge
            | StatefulExport::StateCheck => PluginKind::Aggregate,
            StatefulExport::Join => PluginKind::Join,
        };
        let name = export.name();
        if kind != wanted {
            return Err(WasmError::WrongCall(format!(
                "`{name}` is a call of a {wanted} module; this one is a {kind}"
            )));
        }
        let (mut instance, init_fuel) = self.checkout()?;
        let func = match export {
            StatefulExport::Aggregate | StatefulExport::Join => Some(instance.process.clone()),
            StatefulExport::Group => instance.group.clone(),
            StatefulExport::Merge => instance.merge.clone(),
            StatefulExport::StateCheck => instance.state_check.clone(),
        };
        let Some(func) = func else {
            // The instance is fine: give it back.
            self.release(instance);
            return Err(WasmError::WrongCall(format!(
                "the module does not export `{name}`"
            )));
        };
        let output = instance.call(&self.engine, &func, input, units)?;
        let fuel_used = instance.fuel_used().saturating_add(init_fuel);
        let output = decode(output)?;
        self.release(instance);
        Ok(CallRun { output, fuel_used })
    }

    /// An aggregate's `ledge_group` over one batch (as [`run`](Self::run) takes it): each
    /// record's group key, or keep (its own key), drop or error. A module without `group_by`
    /// has no `ledge_group` ([`WasmError::WrongCall`]): group by record key instead.
    pub fn group(
        &self,
        header: &InputHeader,
        records: &[u8],
        record_count: usize,
    ) -> Result<CallRun<Vec<GroupOutcome>>, WasmError> {
        let count = u32::try_from(record_count)
            .map_err(|_| WasmError::Garbage("too many records".into()))?;
        let mut input = Vec::new();
        abi::encode_input(header, count, records, &mut input);
        self.call_stateful(StatefulExport::Group, &input, record_count, |output| {
            abi::decode_group_output(Bytes::from(output), record_count)
        })
    }

    /// An aggregate's `ledge_aggregate`: folds record `record_index` of the batch into slot
    /// `slot_index`, for each application in order, from the slots' states (absent: the
    /// state type's default). Returns per application `Ok` or the module's message and per
    /// slot its change. On any `Err` application the caller drops the whole output and re-runs
    /// from the old states (docs/STREAMS.md).
    pub fn aggregate(
        &self,
        slots: &[Slot<'_>],
        header: &InputHeader,
        records: &[u8],
        record_count: usize,
        applications: &[Application],
    ) -> Result<CallRun<AggregateOutput>, WasmError> {
        let count = u32::try_from(record_count)
            .map_err(|_| WasmError::Garbage("too many records".into()))?;
        let mut batch = Vec::new();
        abi::encode_input(header, count, records, &mut batch);
        let mut input = Vec::new();
        stateful_abi::encode_aggregate_input(slots, &batch, applications, &mut input)
            .map_err(|error| WasmError::Garbage(error.to_string()))?;
        let (application_count, slot_count) = (applications.len(), slots.len());
        let units = application_count.max(slot_count).max(record_count);
        self.call_stateful(StatefulExport::Aggregate, &input, units, |output| {
            abi::decode_aggregate_output(Bytes::from(output), application_count, slot_count)
        })
    }

    /// An aggregate's `ledge_merge`: each pair of states merged into one (session windows a
    /// record bridges), or the module's message.
    pub fn merge(
        &self,
        pairs: &[(&[u8], &[u8])],
    ) -> Result<CallRun<Vec<Result<Bytes, String>>>, WasmError> {
        let mut input = Vec::new();
        stateful_abi::encode_merge_input(pairs, &mut input)
            .map_err(|error| WasmError::Garbage(error.to_string()))?;
        let count = pairs.len();
        self.call_stateful(StatefulExport::Merge, &input, count, |output| {
            abi::decode_merge_output(Bytes::from(output), count)
        })
    }

    /// An aggregate's `ledge_state_check`: per stored state, whether this module can read it
    /// (`Err`: why not), for a hot swap to a module with another `ledge_state_schema`.
    pub fn check_states(
        &self,
        states: &[&[u8]],
    ) -> Result<CallRun<Vec<Result<(), String>>>, WasmError> {
        let mut input = Vec::new();
        stateful_abi::encode_states(states, &mut input)
            .map_err(|error| WasmError::Garbage(error.to_string()))?;
        let count = states.len();
        self.call_stateful(StatefulExport::StateCheck, &input, count, |output| {
            abi::decode_state_check_output(&output, count)
        })
    }

    /// A join's `ledge_join`: one outcome per pair (`DROP`, `ERROR` or `RECORDS`), for left
    /// record `left_index` with right record `right_index` (`None`: no match). Each side is
    /// a batch as [`run`](Self::run) takes it: header, records region, record count.
    pub fn join(
        &self,
        left: (&InputHeader, &[u8], usize),
        right: (&InputHeader, &[u8], usize),
        pairs: &[JoinPair],
    ) -> Result<CallRun<Vec<Outcome>>, WasmError> {
        let batch = |(header, records, count): (&InputHeader, &[u8], usize)| {
            let count =
                u32::try_from(count).map_err(|_| WasmError::Garbage("too many records".into()))?;
            let mut out = Vec::new();
            abi::encode_input(header, count, records, &mut out);
            Ok::<_, WasmError>(out)
        };
        let (left_batch, right_batch) = (batch(left)?, batch(right)?);
        let mut input = Vec::new();
        stateful_abi::encode_join_input(&left_batch, &right_batch, pairs, &mut input)
            .map_err(|error| WasmError::Garbage(error.to_string()))?;
        let count = pairs.len();
        self.call_stateful(StatefulExport::Join, &input, count, |output| {
            abi::decode_join_output(Bytes::from(output), count)
        })
    }
}

#[cfg(test)]
pub(crate) mod stateful_tests;
#[cfg(test)]
pub(crate) mod tests;
