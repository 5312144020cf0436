//! The broker's side of replication (issue 13): the registry as the replication driver's
//! [`LogStore`], and the driver's start. Produce (`produce.rs`) asks the driver whether
//! this node leads a partition and waits for the high watermark on acks=all; fetch and list
//! offsets (`fetch.rs`) read below the replicated high watermark. A node with no
//! `[cluster]` section starts no driver, and every partition keeps the single-node rules.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use super::Broker;
use super::registry::TopicRegistry;
use crate::replication::manager::{
    LogStore, ReplicaManager, ReplicaTransport, ReplicationSettings,
};
use crate::storage::{Disk, PartitionLog};

/// The registry's partition logs, as the replication driver reads and replaces them.
struct RegistryLogs<D: Disk>(Arc<TopicRegistry<D>>);

impl<D: Disk> LogStore<D> for RegistryLogs<D> {
    fn partition_log(&self, topic: &str, partition: u32) -> Option<PartitionLog<D>> {
        self.0.partition_log(topic, partition).ok()
    }

    fn replace_log(&self, topic: &str, partition: u32, log: PartitionLog<D>) {
        if let Err(error) = self.0.replace_partition_log(topic, partition, log) {
            tracing::warn!(topic, partition, %error, "truncated log not replaced: the partition is gone");
        }
    }

    fn damaged(&self, topic: &str, partition: u32) -> Option<String> {
        self.0.damaged_partition(topic, partition)
    }

    fn mark_damaged<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        offset: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.0.mark_damaged(topic, partition, offset, reason))
    }

    fn repair<'a>(&'a self, topic: &'a str, partition: u32) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0
                .repair_damaged(topic, partition)
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }
}

impl<D: Disk> Broker<D> {
    /// In a cluster: hands out producer ids from this node's share of the id space only
    /// (`TopicRegistry::set_producer_id_slot`), so producers of two nodes never share an id.
    /// Call before clients are served.
    pub fn set_producer_id_slot(&self, slot: u32, slots: u32) {
        self.registry.set_producer_id_slot(slot, slots);
    }

    /// Creates this node's replication driver over its registry and makes produce and
    /// fetch use it. The caller runs it (`ReplicaManager::run`) with the image and node
    /// epoch watches, and registers its peer handlers. `None` if one was started already.
    pub fn start_replication(
        &self,
        settings: ReplicationSettings,
        transport: Arc<dyn ReplicaTransport>,
    ) -> Option<Arc<ReplicaManager<D>>> {
        let manager = ReplicaManager::new(
            settings,
            Arc::clone(&self.clock),
            self.registry.disk().clone(),
            Arc::new(RegistryLogs(Arc::clone(&self.registry))),
            transport,
        );
        self.data.replication.set(Arc::clone(&manager)).ok()?;
        // The materializer creates a placed partition's log after the image that placed it
        // arrived: the driver looks at the image again when the hosted set changes.
        let mut events = self.registry.subscribe();
        let weak = Arc::downgrade(&manager);
        tokio::spawn(async move {
            loop {
                let event = events.recv().await;
                let Some(manager) = weak.upgrade() else {
                    return;
                };
                match event {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        manager.handle_hosted_changed();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Some(manager)
    }
}

impl<D: Disk> Broker<D> {
    /// The local log of `topic`/`partition` if this node hosts it (the whole-node
    /// simulator's checkers compare every replica's log).
    pub fn hosted_partition_log(&self, topic: &str, partition: u32) -> Option<PartitionLog<D>> {
        self.registry.partition_log(topic, partition).ok()
    }
}
