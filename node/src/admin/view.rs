//! The broker as the admin listener sees it ([`NodeView`]).

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::routes::{NodeView, Readiness, StatusDisk, StatusListeners, StatusReport};
use crate::broker::Broker;
use crate::storage::Disk;

/// What the node knows about itself at start, for `/v1/status`.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// This node's id.
    pub node_id: u32,
    /// Where it listens.
    pub listeners: StatusListeners,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its disk backend's name.
    pub disk_backend: String,
}

/// A broker's [`NodeView`]: readiness and status read from it, metrics from its registry.
pub struct BrokerView<D: Disk> {
    broker: Arc<Broker<D>>,
    registry: Registry,
    info: NodeInfo,
}

impl<D: Disk> BrokerView<D> {
    /// The view of `broker`, with `label_sets_max` label sets per metric at most.
    pub fn new(broker: Arc<Broker<D>>, info: NodeInfo, label_sets_max: usize) -> Self {
        let registry = crate::metrics::collector::registry(Arc::clone(&broker), label_sets_max);
        Self {
            broker,
            registry,
            info,
        }
    }
}

impl<D: Disk> NodeView for BrokerView<D> {
    fn readiness(&self) -> Readiness {
        Readiness::from_reasons(self.broker.readiness_reasons())
    }

    fn status(&self) -> StatusReport {
        let (topics, partitions, partitions_offline) = self.broker.partition_counts();
        let filesystem = crate::broker::filesystem_bytes(&self.info.data_dir);
        let full_reason = self.broker.disk_full_reason();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            node_id: self.info.node_id,
            cluster_id: self.broker.cluster_id(),
            listeners: self.info.listeners.clone(),
            data_dir: self.info.data_dir.display().to_string(),
            read_only: self.broker.read_only(),
            disk: StatusDisk {
                backend: self.info.disk_backend.clone(),
                log_bytes: self.broker.log_bytes(),
                filesystem_bytes: filesystem.map(|(total, _)| total),
                filesystem_available_bytes: filesystem.map(|(_, available)| available),
                full: full_reason.is_some(),
                full_reason,
            },
            topics,
            partitions,
            partitions_offline,
            health: self.readiness(),
        }
    }

    fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        crate::metrics::collector::encode_text(&self.registry)
    }

    fn console(&self) -> serde_json::Value {
        // Answers run on tokio's blocking pool (server.rs), where blocking on the runtime
        // is allowed; describing transforms reads the registry asynchronously.
        let view = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.block_on(self.broker.console_view()),
            Err(_) => return serde_json::json!({ "error": "no runtime" }),
        };
        serde_json::to_value(view)
            .unwrap_or_else(|error| serde_json::json!({ "error": error.to_string() }))
    }
}
