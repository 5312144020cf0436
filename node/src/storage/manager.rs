//! `LogManager`: every partition log under one data directory.
//!
//! Owns the map from partition to log. A partition that fails to open (corruption below its
//! recovery point, a foreign file, a newer format) is reported offline with its error and
//! the rest keep serving. A log fenced by a failed sync is reopened with full verification
//! by [`LogManager::reopen_fenced`]; if that fails too, it goes offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::disk::{Disk, DiskError};
use super::log::{LogConfig, OpenError, PartitionLog};
use crate::clock::Clock;

/// A partition: topic name and partition number. Its directory is `<topic>-<partition>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The topic.
    pub topic: String,
    /// The partition number within the topic.
    pub partition: u32,
}

impl PartitionKey {
    /// The directory name, `<topic>-<partition>` as in Kafka.
    pub fn directory_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; `None` if it is not `<topic>-<partition>`.
    pub fn from_directory_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() {
            return None;
        }
        Some(Self {
            topic: topic.to_string(),
            partition: partition.parse().ok()?,
        })
    }
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

/// A partition that could not be opened, and why.
#[derive(Debug)]
pub struct OfflinePartition {
    /// The partition.
    pub key: PartitionKey,
    /// Its directory.
    pub directory: PathBuf,
    /// The error, naming the file (and position) at fault.
    pub error: OpenError,
}

/// All partition logs of one data directory.
pub struct LogManager<D: Disk> {
    disk: D,
    root: PathBuf,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    online: BTreeMap<PartitionKey, PartitionLog<D>>,
    offline: BTreeMap<PartitionKey, OfflinePartition>,
}

impl<D: Disk> LogManager<D> {
    /// Opens every partition directory under `root` (created if missing). Partitions that
    /// fail to open are offline; only an error on `root` itself fails the whole call.
    pub async fn open(
        disk: D,
        root: &Path,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DiskError> {
        super::disk::create_dir_durable(&disk, root).await?;
        let mut manager = Self {
            disk,
            root: root.to_path_buf(),
            config,
            clock,
            online: BTreeMap::new(),
            offline: BTreeMap::new(),
        };
        for name in manager.disk.list_dir(root).await? {
            let Some(key) = PartitionKey::from_directory_name(&name) else {
                tracing::warn!(entry = %root.join(&name).display(), "ignoring an entry that is not a partition directory");
                continue;
            };
            manager.open_partition(key).await;
        }
        tracing::info!(
            root = %root.display(),
            backend = manager.disk.backend_name(),
            online = manager.online.len(),
            offline = manager.offline.len(),
            "logs opened"
        );
        Ok(manager)
    }

    async fn open_partition(&mut self, key: PartitionKey) {
        let directory = self.root.join(key.directory_name());
        match PartitionLog::open(
            self.disk.clone(),
            &directory,
            self.config.clone(),
            Arc::clone(&self.clock),
        )
        .await
        {
            Ok(log) => {
                self.offline.remove(&key);
                self.online.insert(key, log);
            }
            Err(error) => {
                tracing::error!(partition = %key, %error, "partition offline");
                self.online.remove(&key);
                self.offline.insert(
                    key.clone(),
                    OfflinePartition {
                        key,
                        directory,
                        error,
                    },
                );
            }
        }
    }

    /// Creates (or opens) a partition's log.
    pub async fn create(&mut self, key: PartitionKey) -> Result<PartitionLog<D>, OpenError> {
        if let Some(log) = self.online.get(&key) {
            return Ok(log.clone());
        }
        let directory = self.root.join(key.directory_name());
        let log = PartitionLog::open(
            self.disk.clone(),
            &directory,
            self.config.clone(),
            Arc::clone(&self.clock),
        )
        .await?;
        self.online.insert(key, log.clone());
        Ok(log)
    }

    /// The log of a partition, if it is online.
    pub fn log(&self, key: &PartitionKey) -> Option<&PartitionLog<D>> {
        self.online.get(key)
    }

    /// Partitions that are online.
    pub fn online(&self) -> impl Iterator<Item = &PartitionKey> {
        self.online.keys()
    }

    /// Partitions that failed to open, with their errors.
    pub fn offline(&self) -> impl Iterator<Item = &OfflinePartition> {
        self.offline.values()
    }

    /// Reopens, with full verification, every log fenced by a failed write or sync.
    /// Returns the partitions that were reopened; those that fail go offline.
    pub async fn reopen_fenced(&mut self) -> Vec<PartitionKey> {
        let fenced: Vec<(PartitionKey, PartitionLog<D>)> = self
            .online
            .iter()
            .filter(|(_, log)| log.fenced_reason().is_some())
            .map(|(key, log)| (key.clone(), log.clone()))
            .collect();
        let mut reopened = Vec::new();
        for (key, log) in fenced {
            match log.reopen(self.disk.clone(), Arc::clone(&self.clock)).await {
                Ok(fresh) => {
                    self.online.insert(key.clone(), fresh);
                    reopened.push(key);
                }
                Err(error) => {
                    tracing::error!(partition = %key, %error, "fenced partition failed verification; offline");
                    let directory = log.directory().to_path_buf();
                    self.online.remove(&key);
                    self.offline.insert(
                        key.clone(),
                        OfflinePartition {
                            key,
                            directory,
                            error,
                        },
                    );
                }
            }
        }
        reopened
    }

    /// Syncs and closes every log.
    pub async fn close(&self) -> Result<(), DiskError> {
        let mut first_error = None;
        for log in self.online.values() {
            if let Err(error) = log.close().await {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
