//! What the admin listener reads from the broker (`/metrics`, `/readyz`, `/v1/status`):
//! the node's state copied out under the registry's short read locks, nothing kept.

use std::collections::BTreeMap;

use super::Broker;
use crate::metrics::snapshot::{
    GroupLagSample, NodeSnapshot, PartitionSample, TopicSample,
};
use crate::storage::Disk;

/// One partition this node holds, as readiness sees it.
enum Held {
    Online,
    Offline(String),
}

impl<D: Disk> Broker<D> {
    /// Every partition this node holds (online or offline), by topic and partition.
    fn held_partitions(&self) -> Vec<(String, u32, Held, Option<crate::storage::PartitionLog<D>>)> {
        let mut held = Vec::new();
        for name in self.registry.topic_names() {
            let Some(topic) = self.registry.topic(&name) else {
                continue;
            };
            for partition in topic.partitions() {
                let number = partition.key().partition;
                match partition.online_log() {
                    Ok(log) => held.push((name.clone(), number, Held::Online, Some(log))),
                    Err(super::registry::LookupError::NotHosted { .. }) => {}
                    Err(error) => held.push((name.clone(), number, Held::Offline(error.to_string()), None)),
                }
            }
        }
        held
    }

    /// The node's state for `/metrics`.
    pub fn metrics_snapshot(&self) -> NodeSnapshot {
        let mut snapshot = NodeSnapshot::default();
        let mut end_offsets: BTreeMap<(String, u32), i64> = BTreeMap::new();
        for (topic, partition, state, log) in self.held_partitions() {
            match (state, log) {
                (Held::Online, Some(log)) => {
                    let sample = PartitionSample {
                        topic,
                        partition,
                        end_offset: log.high_watermark(),
                        log_start_offset: log.log_start_offset(),
                        size_bytes: log.size_bytes(),
                    };
                    snapshot.disk_usage_bytes =
                        snapshot.disk_usage_bytes.saturating_add(sample.size_bytes);
                    end_offsets.insert((sample.topic.clone(), partition), sample.end_offset);
                    snapshot.partitions.push(sample);
                }
                _ => snapshot.partitions_offline += 1,
            }
        }
        for name in self.registry.topic_names() {
            let Some(topic) = self.registry.topic(&name) else {
                continue;
            };
            let counters = topic.counters();
            let load = |counter: &std::sync::atomic::AtomicU64| {
                counter.load(std::sync::atomic::Ordering::Relaxed)
            };
            snapshot.topics.push(TopicSample {
                topic: name,
                produced_records: load(&counters.produced_records),
                produced_bytes: load(&counters.produced_bytes),
                fetched_bytes: load(&counters.fetched_bytes),
            });
        }
        for (group, topic, partition, committed) in self.groups.all_committed_offsets() {
            // Lag is known where the partition's end is: on the nodes holding it.
            let Some(end) = end_offsets.get(&(topic.clone(), partition)) else {
                continue;
            };
            snapshot.group_lag.push(GroupLagSample {
                group,
                topic,
                partition,
                lag: u64::try_from(end.saturating_sub(committed)).unwrap_or(0),
            });
        }
        snapshot.group_lag.sort_by(|a, b| {
            (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition))
        });
        snapshot.disk_full = self.disk_guard.tripped().is_some();
        snapshot.controller_active = self.controller_id() == Some(self.config.node_id);
        if let Some(image) = self.cluster_image() {
            let own = self.config.node_id;
            let manager = self.data.replication.get();
            for (name, topic) in &image.topics {
                for state in &topic.partitions {
                    if state.leader != Some(own) {
                        continue;
                    }
                    if state.isr.len() < state.replicas.len() {
                        snapshot.under_replicated_partitions += 1;
                    }
                    let min_insync = manager.map_or(1, |manager| {
                        manager.min_insync_replicas(&image, name, state.replicas.len())
                    });
                    if state.isr.len() < min_insync {
                        snapshot.under_min_isr_partitions += 1;
                    }
                }
            }
        }
        snapshot.transforms = self.transforms.metrics_samples();
        snapshot
    }

    /// Why the node is not ready to serve (empty: it is): a partition it holds is offline;
    /// in a cluster, no controller is known, or a partition placed here has no leader or
    /// does not count this node in its ISR (not caught up).
    pub fn readiness_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        for (topic, partition, state, _) in self.held_partitions() {
            if let Held::Offline(reason) = state {
                reasons.push(format!("partition {topic}-{partition} is offline: {reason}"));
            }
        }
        if self.cluster_source.get().is_some() {
            if self.controller_id().is_none() {
                reasons.push("no active controller is known (election in progress, or the controller quorum is unreachable)".to_string());
            }
            match self.cluster_image() {
                Some(image) if image.last_applied_index > 0 => {
                    let own = self.config.node_id;
                    for (name, topic) in &image.topics {
                        for (index, state) in topic.partitions.iter().enumerate() {
                            if !state.replicas.contains(&own) {
                                continue;
                            }
                            if state.leader.is_none() {
                                reasons.push(format!("partition {name}-{index} has no leader"));
                            } else if !state.isr.contains(&own) {
                                reasons.push(format!(
                                    "partition {name}-{index} is not caught up here (this node is not in its ISR)"
                                ));
                            }
                        }
                    }
                }
                _ => reasons.push("the cluster metadata has not been received yet".to_string()),
            }
        }
        reasons
    }

    /// Topics, partitions held and partitions offline, for `/v1/status`.
    pub fn partition_counts(&self) -> (u64, u64, u64) {
        let topics = self.registry.topic_names().len() as u64;
        let held = self.held_partitions();
        let offline = held
            .iter()
            .filter(|(_, _, state, _)| matches!(state, Held::Offline(_)))
            .count() as u64;
        (topics, held.len() as u64, offline)
    }

    /// Why the disk guard refuses produce, if it does.
    pub fn disk_full_reason(&self) -> Option<String> {
        self.disk_guard.tripped().map(|trip| trip.to_string())
    }

    /// Whether the data directory is on a read-only filesystem.
    pub fn read_only(&self) -> bool {
        self.registry.read_only()
    }

    /// The cluster's id, in a `[cluster]`.
    pub fn cluster_id(&self) -> Option<String> {
        self.cluster_source
            .get()
            .map(|source| source.cluster_id.clone())
    }
}
