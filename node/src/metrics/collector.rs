//! The prometheus-client [`Collector`] over a broker: at each scrape it reads the broker's
//! state into a snapshot and encodes it with the process's event metrics (`encode.rs`).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::broker::Broker;
use crate::storage::Disk;

/// Ledge's metrics for one broker.
pub struct BrokerCollector<D: Disk> {
    broker: Arc<Broker<D>>,
    label_sets_max: usize,
}

impl<D: Disk> std::fmt::Debug for BrokerCollector<D> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BrokerCollector")
            .field("label_sets_max", &self.label_sets_max)
            .finish_non_exhaustive()
    }
}

impl<D: Disk> Collector for BrokerCollector<D> {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.broker.metrics_snapshot();
        super::encode::encode_node(encoder, &snapshot, super::node(), self.label_sets_max)
    }
}

/// A registry holding Ledge's metrics for `broker`, at most `label_sets_max` label sets per
/// metric. More collectors (the process, a later subsystem) can be registered on it.
pub fn registry<D: Disk>(broker: Arc<Broker<D>>, label_sets_max: usize) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BrokerCollector {
        broker,
        label_sets_max,
    }));
    registry
}

/// The registry's metrics as OpenMetrics text (ending in `# EOF`).
pub fn encode_text(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}
