//! The registry's API for a `[cluster]` node's topics, which the controller's metadata image
//! places (issue 13): [`TopicRegistry::host_topic`] makes the local topic match what the
//! image says this node holds, [`TopicRegistry::drop_hosted_topic`] removes a topic the image
//! no longer has. Both are idempotent, so the driver (`broker/materialize.rs`) simply calls
//! them for every difference it sees, at start and after every image change.
//!
//! Invariants:
//! - A cluster topic carries the image's topic id (`StoredTopic::topic_id`), so a topic
//!   deleted and re-created under the same name while this node was away is told apart at
//!   the next reconcile, across restarts too; the old one's data is removed, never served as
//!   the new one's.
//! - Only the partitions this node is a replica of (`StoredTopic::hosted`) have a directory
//!   and a log; the others are `NotHosted`. A newly hosted partition is created empty and
//!   durable before it is recorded; a partition no longer hosted is recorded first and its
//!   directory removed after, so a crash in between is finished at the next start (the
//!   directory of an unhosted partition is a leftover `open` removes).
//! - A hosted partition that fails to open stays offline with its reason (as at start); the
//!   topic is recorded anyway, so the node serves the rest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::{
    MetadataError, Partition, PartitionState, RegistryEvent, StoredTopic, Topic, TopicConfig,
    TopicRegistry, read, remove_tree, write,
};
use crate::storage::{Disk, PartitionKey, PartitionLog};

/// A topic as the controller's image places it on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostedTopic {
    /// The image's topic id, as text (32 hex digits).
    pub topic_id: String,
    /// Its partition count.
    pub partitions: u32,
    /// The partitions this node is a replica of.
    pub hosted: BTreeSet<u32>,
    /// Its config overrides.
    pub configs: BTreeMap<String, String>,
    /// The image's `last_applied_index` this was taken from (not compared: see
    /// `StoredTopic::image_index`).
    pub image_index: u64,
}

impl HostedTopic {
    /// Whether `self` and `other` place the same topic the same way (the image index
    /// aside).
    pub fn same_placement(&self, other: &Self) -> bool {
        self.topic_id == other.topic_id
            && self.partitions == other.partitions
            && self.hosted == other.hosted
            && self.configs == other.configs
    }
}

/// Why a topic of the image could not be made or removed here (retried at the next image
/// change or start).
#[derive(Debug, thiserror::Error)]
pub enum HostTopicError {
    /// `metadata.json` did not take the change.
    #[error("could not record topic {topic:?}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// Why.
        source: MetadataError,
    },
    /// Holding the partitions placed here would exceed this node's limits
    /// (`limits.topic_partitions_max`, `limits.partitions_max`, open files).
    #[error("topic {topic:?}: cannot hold the partitions the controller placed here: {source}")]
    Limit {
        /// The topic.
        topic: String,
        /// Which limit.
        source: super::PartitionCountError,
    },
    /// The data directory is read-only: nothing can be created or removed.
    #[error("topic {topic:?}: the data directory is read-only")]
    ReadOnly {
        /// The topic.
        topic: String,
    },
}

impl<D: Disk> TopicRegistry<D> {
    /// The topics placed by the controller (those with a topic id), as recorded here.
    pub fn hosted_topics(&self) -> BTreeMap<String, HostedTopic> {
        let topics = read(&self.topics);
        let mut hosted_topics = BTreeMap::new();
        for (name, topic) in topics.iter() {
            let Some((topic_id, image_index)) = read(&topic.topic_id).clone() else {
                continue;
            };
            let partitions = read(&topic.partitions);
            hosted_topics.insert(
                name.clone(),
                HostedTopic {
                    topic_id,
                    partitions: u32::try_from(partitions.len()).unwrap_or(u32::MAX),
                    hosted: partitions
                        .iter()
                        .filter(|partition| partition.is_hosted())
                        .map(|partition| partition.key.partition)
                        .collect(),
                    configs: read(&topic.config).overrides.clone(),
                    image_index,
                },
            );
        }
        hosted_topics
    }

    /// The user topics without a topic id: made on this node alone (before its topics went
    /// through the controller). The driver leaves them alone unless the image has a topic
    /// of the same name.
    pub fn local_only_topics(&self) -> Vec<String> {
        read(&self.topics)
            .iter()
            .filter(|(name, topic)| !name.starts_with("__") && read(&topic.topic_id).is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Makes topic `name` here match `wanted`: created if missing; replaced if it has
    /// another topic id (or none: a local topic of the same name); otherwise newly hosted
    /// partitions are created, partitions no longer hosted removed, and configs applied.
    /// Returns whether anything changed.
    pub async fn host_topic(
        &self,
        name: &str,
        wanted: &HostedTopic,
    ) -> Result<bool, HostTopicError> {
        if self.read_only {
            return Err(HostTopicError::ReadOnly {
                topic: name.to_owned(),
            });
        }
        let record = |source| HostTopicError::Record {
            topic: name.to_owned(),
            source,
        };
        let mut store = self.admin.lock().await;
        let existing = self.topic(name);
        if let Some(topic) = &existing
            && read(&topic.topic_id).as_ref().map(|(id, _)| id.as_str())
                != Some(wanted.topic_id.as_str())
        {
            tracing::info!(topic = %name, topic_id = %wanted.topic_id, "replacing a topic of the same name with another topic id");
            self.remove_topic_locked(&mut store, name, topic)
                .await
                .map_err(record)?;
        }
        let config = match TopicConfig::with_overrides(&self.config.topic_defaults, &wanted.configs)
        {
            Ok(config) => config,
            Err(error) => {
                // Checked by the node that forwarded the change; a node with other defaults
                // or an older build may still disagree. Serving with defaults beats not
                // serving.
                tracing::error!(topic = %name, %error, "topic config from the controller is invalid here; using defaults");
                // The overrides stay the image's, so the next reconcile sees the topic as
                // placed and does not redo (and log) this at every image change.
                let mut config = self.config.topic_defaults.clone();
                config.overrides = wanted.configs.clone();
                config
            }
        };
        let stored = StoredTopic {
            partitions: wanted.partitions,
            configs: wanted.configs.clone(),
            created_ms: store
                .current()
                .topics
                .get(name)
                .map_or_else(|| self.clock.wall_time_ms(), |topic| topic.created_ms),
            topic_id: Some(wanted.topic_id.clone()),
            hosted: Some(wanted.hosted.clone()),
            image_index: Some(wanted.image_index),
            local_topic_id: None,
        };
        let Some(topic) = self.topic(name) else {
            let adding = u32::try_from(wanted.hosted.len()).unwrap_or(u32::MAX);
            self.check_partition_count(name, wanted.partitions, adding)
                .map_err(|source| HostTopicError::Limit {
                    topic: name.to_owned(),
                    source,
                })?;
            let opened = self
                .open_partitions_hosted(name, 0..wanted.partitions, Some(&wanted.hosted), &config)
                .await;
            let mut next = store.current().clone();
            next.topics.insert(name.to_owned(), stored.clone());
            if let Err(source) = self.record_topic(&mut store, name, &stored, next).await {
                for partition in &opened {
                    if let Ok(log) = partition.online_log() {
                        let _ = log.close().await;
                    }
                }
                return Err(record(source));
            }
            write(&self.topics).insert(
                name.to_owned(),
                Arc::new(Topic {
                    config: std::sync::RwLock::new(config),
                    partitions: std::sync::RwLock::new(opened),
                    topic_id: std::sync::RwLock::new(Some((
                        wanted.topic_id.clone(),
                        wanted.image_index,
                    ))),
                    local_id: None,
                    counters: Default::default(),
                }),
            );
            self.events.emit(RegistryEvent::TopicCreated {
                name: name.to_owned(),
                partitions: wanted.partitions,
            });
            self.events.emit(RegistryEvent::PartitionsHosted {
                name: name.to_owned(),
                hosted: wanted.hosted.iter().copied().collect(),
            });
            return Ok(true);
        };
        let current = read(&topic.partitions).clone();
        let current_count = u32::try_from(current.len()).unwrap_or(u32::MAX);
        let hosted_now: BTreeSet<u32> = current
            .iter()
            .filter(|partition| partition.is_hosted())
            .map(|partition| partition.key.partition)
            .collect();
        let configs_changed = read(&topic.config).overrides != wanted.configs;
        if hosted_now == wanted.hosted && current_count >= wanted.partitions && !configs_changed {
            return Ok(false);
        }
        // Partitions are never removed from a topic: a smaller count in the image cannot
        // happen (the controller refuses it), and is not followed here.
        let count = current_count.max(wanted.partitions);
        let stored = StoredTopic {
            partitions: count,
            ..stored
        };
        // Newly hosted partitions first: created empty and durable before they are recorded.
        let added: Vec<u32> = wanted.hosted.difference(&hosted_now).copied().collect();
        let adding = u32::try_from(added.len()).unwrap_or(u32::MAX);
        if adding > 0 {
            self.check_partition_count(name, count, adding)
                .map_err(|source| HostTopicError::Limit {
                    topic: name.to_owned(),
                    source,
                })?;
        }
        let mut opened = BTreeMap::new();
        for number in &added {
            let mut partition = self
                .open_partitions_hosted(
                    name,
                    *number..number.saturating_add(1),
                    Some(&wanted.hosted),
                    &config,
                )
                .await;
            if let Some(partition) = partition.pop() {
                opened.insert(*number, partition);
            }
        }
        let mut next = store.current().clone();
        next.topics.insert(name.to_owned(), stored.clone());
        if let Err(source) = self.record_topic(&mut store, name, &stored, next).await {
            for partition in opened.values() {
                if let Ok(log) = partition.online_log() {
                    let _ = log.close().await;
                }
            }
            return Err(record(source));
        }
        *write(&topic.topic_id) = Some((wanted.topic_id.clone(), wanted.image_index));
        let removed: Vec<Arc<Partition<D>>> = {
            let mut partitions = write(&topic.partitions);
            while (partitions.len() as u64) < u64::from(count) {
                let number = u32::try_from(partitions.len()).unwrap_or(u32::MAX);
                partitions.push(Arc::new(Partition {
                    key: PartitionKey {
                        topic: name.to_owned(),
                        partition: number,
                    },
                    state: std::sync::RwLock::new(PartitionState::NotHosted),
                    reopening: AtomicBool::new(false),
                }));
            }
            let mut removed = Vec::new();
            for (index, slot) in partitions.iter_mut().enumerate() {
                let number = u32::try_from(index).unwrap_or(u32::MAX);
                if let Some(partition) = opened.remove(&number) {
                    *slot = partition;
                } else if slot.is_hosted() && !wanted.hosted.contains(&number) {
                    removed.push(Arc::clone(slot));
                    *slot = Arc::new(Partition {
                        key: slot.key.clone(),
                        state: std::sync::RwLock::new(PartitionState::NotHosted),
                        reopening: AtomicBool::new(false),
                    });
                }
            }
            removed
        };
        for partition in removed {
            partition
                .close_removed("the partition's replica moved to other nodes")
                .await;
            let directory = self.logs_dir.join(partition.key.directory_name());
            if let Err(error) = remove_tree(&self.disk, &directory).await {
                tracing::error!(directory = %directory.display(), %error, "removing a partition no longer hosted failed; retried at next start");
            }
        }
        if configs_changed {
            let log_config = config.log_config(&self.config.log);
            for partition in read(&topic.partitions).iter() {
                if let Ok(log) = partition.online_log()
                    && let Err(error) = log.set_config(log_config.clone())
                {
                    tracing::error!(partition = %partition.key, %error, "could not apply topic config to a live log");
                }
            }
            *write(&topic.config) = config;
        }
        if count > current_count {
            self.events.emit(RegistryEvent::PartitionsAdded {
                name: name.to_owned(),
                before: current_count,
                after: count,
            });
        }
        self.events.emit(RegistryEvent::PartitionsHosted {
            name: name.to_owned(),
            hosted: wanted.hosted.iter().copied().collect(),
        });
        drop(store);
        Ok(true)
    }

    /// Removes topic `name` if it is here with topic id `topic_id` (the image deleted it).
    /// Returns whether it was removed.
    pub async fn drop_hosted_topic(
        &self,
        name: &str,
        topic_id: &str,
    ) -> Result<bool, HostTopicError> {
        let mut store = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Ok(false);
        };
        if read(&topic.topic_id).as_ref().map(|(id, _)| id.as_str()) != Some(topic_id) {
            return Ok(false);
        }
        if self.read_only {
            return Err(HostTopicError::ReadOnly {
                topic: name.to_owned(),
            });
        }
        self.remove_topic_locked(&mut store, name, &topic)
            .await
            .map_err(|source| HostTopicError::Record {
                topic: name.to_owned(),
                source,
            })?;
        Ok(true)
    }
}

/// Why [`TopicRegistry::repair_damaged`] did not bring a partition back.
#[derive(Debug, thiserror::Error)]
pub enum RepairPartitionError {
    /// No such partition.
    #[error(transparent)]
    Lookup(#[from] super::LookupError),
    /// The partition is not offline for damage a repair can cut.
    #[error("partition {0} is not offline for a damaged log")]
    NotDamaged(PartitionKey),
    /// Another repair or reopen of it is running.
    #[error("partition {0} is being repaired or reopened")]
    Busy(PartitionKey),
    /// Nothing can be cut on a read-only data directory.
    #[error("partition {0}: the data directory is read-only")]
    ReadOnly(PartitionKey),
    /// The cut failed; the partition stays offline (retried while repairable).
    #[error("partition {key}: cutting the log at its damage failed: {source}")]
    Cut {
        /// The partition.
        key: PartitionKey,
        /// Why.
        source: crate::storage::repair::RepairError,
    },
    /// The log does not open after the cut.
    #[error("partition {key}: the log still does not open after the cut: {source}")]
    Reopen {
        /// The partition.
        key: PartitionKey,
        /// Why.
        source: crate::storage::OpenError,
    },
}

impl<D: Disk> TopicRegistry<D> {
    /// Why `topic`/`partition` is offline for a damaged log that
    /// [`Self::repair_damaged`] can cut; `None` if it is not.
    pub fn damaged_partition(&self, topic: &str, partition: u32) -> Option<String> {
        let partition = self.partition(topic, partition).ok()?;
        match &*read(&partition.state) {
            PartitionState::Damaged { reason, .. } => Some(reason.clone()),
            _ => None,
        }
    }

    /// Takes an online partition offline as `Damaged`: a verified read found the batch at
    /// `offset` bad while serving it (issue 13 item 4). Its log is closed, so nothing more
    /// is served or appended from it; the replication driver then reports it to the
    /// controller and repairs it from the leader ([`Self::repair_damaged`]). Only in a
    /// `[cluster]` (the driver calls it); returns whether the partition was online.
    pub async fn mark_damaged(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        reason: &str,
    ) -> bool {
        let Ok(entry) = self.partition(topic, partition) else {
            return false;
        };
        let log = {
            let mut state = write(&entry.state);
            let PartitionState::Online(log) = &*state else {
                return false;
            };
            let log = log.clone();
            *state = PartitionState::Damaged {
                reason: format!(
                    "damaged batch at offset {offset} found while serving it: {reason}"
                ),
                hint: crate::storage::repair::DamageHint::FromOffset(offset),
            };
            log
        };
        tracing::error!(partition = %entry.key, offset, %reason, "partition taken offline: a batch failed its checks while being served; repaired from another replica if one holds it (docs/OPERATIONS.md, \"A damaged replica\")");
        if let Err(error) = log.close().await {
            tracing::warn!(partition = %entry.key, %error, "closing the damaged log failed");
        }
        true
    }

    /// Cuts a damaged partition's log at its last batch that verifies
    /// (`storage::repair::truncate_at_damage`: the cut bytes are kept in `.damaged` files,
    /// the leader-epoch checkpoint follows) and opens it again: online, ending where its
    /// good records end, for the replication driver to refetch the rest from the leader.
    /// Only the driver calls it, once the controller no longer counts this replica as
    /// holding the records (see `replication::manager`). Damage met again at the reopen
    /// (further back than the first report) leaves it `Damaged` at the new place; damage no
    /// cut can remove (a checkpoint, a segment header) leaves it plainly offline.
    pub async fn repair_damaged(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<crate::storage::repair::DamageRepairReport, RepairPartitionError> {
        let entry = self.partition(topic, partition)?;
        let key = entry.key.clone();
        if self.read_only {
            return Err(RepairPartitionError::ReadOnly(key));
        }
        let hint = match &*read(&entry.state) {
            PartitionState::Damaged { hint, .. } => hint.clone(),
            _ => return Err(RepairPartitionError::NotDamaged(key)),
        };
        if entry
            .reopening
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(RepairPartitionError::Busy(key));
        }
        let outcome = self.cut_and_reopen(&entry, &hint).await;
        entry
            .reopening
            .store(false, std::sync::atomic::Ordering::SeqCst);
        outcome
    }

    async fn cut_and_reopen(
        &self,
        entry: &Partition<D>,
        hint: &crate::storage::repair::DamageHint,
    ) -> Result<crate::storage::repair::DamageRepairReport, RepairPartitionError> {
        let key = entry.key.clone();
        let log_config = self.topic(&key.topic).map_or_else(
            || self.config.log.clone(),
            |topic| read(&topic.config).log_config(&self.config.log),
        );
        let directory = self.logs_dir.join(key.directory_name());
        let report = match crate::storage::repair::truncate_at_damage(
            &self.disk,
            &directory,
            Some(hint),
            &log_config,
        )
        .await
        {
            Ok(report) => report,
            Err(source) => {
                if matches!(source, crate::storage::repair::RepairError::NoDamage(_)) {
                    let reason = format!(
                        "{}; no damaged batch to cut: {source}",
                        self.damaged_partition(&key.topic, key.partition)
                            .unwrap_or_default()
                    );
                    *write(&entry.state) = PartitionState::Offline(reason);
                }
                return Err(RepairPartitionError::Cut { key, source });
            }
        };
        tracing::warn!(
            partition = %key,
            segment = %report.segment.display(),
            position = report.damage_position,
            reason = %report.reason,
            new_end_offset = report.new_end_offset,
            kept_aside = ?report.kept_aside,
            "damaged replica cut at its last good batch; the rest is fetched from the leader"
        );
        match PartitionLog::open(
            self.disk.clone(),
            &directory,
            log_config,
            Arc::clone(&self.clock),
        )
        .await
        {
            Ok(log) => {
                *write(&entry.state) = PartitionState::Online(log);
                Ok(report)
            }
            Err(source) => {
                tracing::error!(partition = %key, error = %source, "partition still offline after its damage was cut");
                *write(&entry.state) = match &source {
                    crate::storage::OpenError::Corrupt { path, position, .. } => {
                        PartitionState::Damaged {
                            reason: source.to_string(),
                            hint: crate::storage::repair::DamageHint::At {
                                segment: path.clone(),
                                position: *position,
                            },
                        }
                    }
                    other => PartitionState::Offline(other.to_string()),
                };
                Err(RepairPartitionError::Reopen { key, source })
            }
        }
    }
}

// Tested through the broker, with the driver: `broker/materialize/tests.rs`.
