//! WASM plug-ins: user modules that filter, map, flat-map and partition records inside the
//! node, and the stateful aggregate and join modules' calls (docs/WASM-ABI.md for the
//! contract, docs/STREAMS.md for stateful processing, docs/ARCHITECTURE.md for where they
//! run).
//!
//! - [`abi`]: the byte formats between host and guest (pure).
//! - [`batch`]: stored batches opened for a plug-in call under the node-wide budget.
//! - [`fuel_budget`]: what fetch plug-ins may burn per second, per node and per principal.
//! - [`executor`]: where compiles, instantiations and guest calls run (blocking pool, or
//!   inline in the simulator).
//! - [`runtime`]: the wasmtime engine, module checks, pooled instances, limits.
//! - [`store`]: uploaded modules on disk by content hash, and the compiled-module cache.

pub mod abi;
pub mod batch;
pub mod executor;
pub mod fuel_budget;
pub mod runtime;
pub mod store;

pub use abi::{InputHeader, Outcome, OutputRecord, PluginKind};
pub use executor::PluginExecutor;
pub use runtime::{
    BatchRun, CallRun, OPENED_BATCH_BYTES_MAX_DEFAULT, OPENED_BATCH_BYTES_MAX_LIMIT, Plugin,
    PluginModule, WasmEngine, WasmError, WasmLimits, content_hash,
};
pub use store::{ModuleStore, ModuleStoreError};
