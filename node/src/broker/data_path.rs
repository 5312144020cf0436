//! The data path: produce (`produce.rs`) and fetch / list offsets (`fetch.rs`), a service
//! over the topic registry's partition logs.
//!
//! It owns no state of its own; it holds the handles it works through: the registry (one
//! lookup per partition), the plug-in host (a topic's produce filter and partitioner, a
//! consumer's fetch plug-in), the disk guard (produce is refused while it is tripped) and
//! the clock (produce timeouts, fetch waits).

use std::sync::Arc;
use std::time::Duration;

use super::maintenance::DiskGuard;
use super::plugins::PluginHost;
use super::registry::TopicRegistry;
use crate::clock::Clock;
use crate::replication::manager::ReplicaManager;
use crate::storage::Disk;

/// The limits the data path applies to every request, whatever the client asks.
#[derive(Clone, Debug)]
pub(super) struct DataPathLimits {
    /// Longest a produce may wait for durability.
    pub(super) produce_timeout_max: Duration,
    /// Longest a fetch may wait for data.
    pub(super) fetch_wait_max: Duration,
    /// Most bytes one fetch response carries.
    pub(super) fetch_bytes_max: u32,
}

/// Produce, fetch and list offsets.
pub(super) struct DataPath<D: Disk> {
    pub(super) registry: Arc<TopicRegistry<D>>,
    pub(super) plugins: Arc<PluginHost<D>>,
    pub(super) disk_guard: Arc<DiskGuard>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) limits: DataPathLimits,
    /// The replication driver of a `[cluster]` node (`replication.rs`); unset on a single
    /// node, where every partition's high watermark is its synced end.
    pub(super) replication: std::sync::OnceLock<Arc<ReplicaManager<D>>>,
}
