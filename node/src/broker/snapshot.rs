//! The native Snapshot request (`ledge admin snapshot --out DIR`, issue 16 item 6): the
//! node writes a snapshot of its data directory on its own host while it serves
//! (`storage::snapshot`). Authorization (Alter on the cluster) and the audit line are the
//! dispatch's (`authorize.rs`).
//!
//! Order: the target is checked before anything is written; the node's files outside the
//! logs are copied under the metadata lock; then each online partition, up to its synced
//! end; the manifest last. Offline partitions are listed in the manifest, not copied.
//!
//! Progress: while it runs, a snapshot is listed in the broker's [`RunningSnapshots`] by its
//! directory, with the partitions and bytes copied so far, updated after each partition;
//! the native SnapshotProgress request (50) reads it, so `ledge admin snapshot` can show
//! progress while its Snapshot request waits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ledge_protocol::wire::{
    ErrorCode, SnapshotPartition, SnapshotProgressRequest, SnapshotProgressResponse,
    SnapshotRequest, SnapshotResponse,
};

use super::Broker;
use crate::storage::snapshot::{
    LOGS_DIR_NAME, Manifest, ManifestPartition, OfflinePartition, SNAPSHOT_FORMAT_VERSION,
    SnapshotError, check_target, write_manifest,
};
use crate::storage::{Disk, PartitionKey};

/// What a finished snapshot holds, beyond its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenSnapshot {
    /// As written into the snapshot.
    pub manifest: Manifest,
    /// Files hard-linked to the node's own.
    pub files_linked: u64,
    /// Files copied.
    pub files_copied: u64,
}

/// How far one running snapshot is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotProgress {
    /// Partitions copied so far.
    pub partitions_done: u32,
    /// Online partitions the snapshot copies.
    pub partitions_total: u32,
    /// Segment bytes of the partitions copied so far.
    pub bytes_done: u64,
}

/// The snapshots running on a node, by directory (one per directory: a second Snapshot
/// into the same directory is refused, it exists).
#[derive(Debug, Default)]
pub struct RunningSnapshots(std::sync::Mutex<BTreeMap<PathBuf, SnapshotProgress>>);

impl RunningSnapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, SnapshotProgress>> {
        // Never held across an await; poisoning means a panic already reported.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The progress of the snapshot into `target`, while it runs.
    pub fn get(&self, target: &Path) -> Option<SnapshotProgress> {
        self.lock().get(target).copied()
    }
}

/// Lists a snapshot in [`RunningSnapshots`] until dropped (finished, failed or cancelled).
struct Listed<'a> {
    running: &'a RunningSnapshots,
    target: PathBuf,
}

impl Listed<'_> {
    fn set(&self, progress: SnapshotProgress) {
        self.running.lock().insert(self.target.clone(), progress);
    }
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.running.lock().remove(&self.target);
    }
}

impl<D: Disk> Broker<D> {
    /// Writes a snapshot of the data directory into `target` (absolute, new, outside the
    /// data directory) on this node's host.
    pub async fn snapshot(&self, target: &Path) -> Result<TakenSnapshot, SnapshotError> {
        self.snapshot_reporting(target, |_| {}).await
    }

    /// [`Broker::snapshot`], calling `report` with the progress once the partitions to copy
    /// are known and after each partition (the same progress SnapshotProgress answers).
    pub async fn snapshot_reporting(
        &self,
        target: &Path,
        mut report: impl FnMut(SnapshotProgress) + Send,
    ) -> Result<TakenSnapshot, SnapshotError> {
        let data_dir = self.registry.data_dir();
        check_target(data_dir, target)?;
        let disk = self.registry.disk();
        let failed = |source| SnapshotError::Disk {
            path: target.to_path_buf(),
            source,
        };
        crate::storage::disk::create_dir_durable(disk, target)
            .await
            .map_err(failed)?;
        // Credentials and keys are inside: the node user only.
        std::fs::set_permissions(target, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|error| failed(crate::storage::DiskError::new("chmod", target, error)))?;
        let files = self
            .registry
            .copy_node_files(target)
            .await
            .map_err(failed)?;
        let logs = target.join(LOGS_DIR_NAME);
        crate::storage::disk::create_dir_durable(disk, &logs)
            .await
            .map_err(failed)?;
        let mut taken = TakenSnapshot {
            manifest: Manifest {
                format_version: SNAPSHOT_FORMAT_VERSION,
                node_id: self.config.node_id,
                created_ms: 0,
                files,
                partitions: Vec::new(),
                offline: Vec::new(),
            },
            files_linked: 0,
            files_copied: 0,
        };
        let online = self.registry.online_logs(|_| true);
        let listed = Listed {
            running: &self.snapshots,
            target: target.to_path_buf(),
        };
        let mut progress = SnapshotProgress {
            partitions_total: u32::try_from(online.len()).unwrap_or(u32::MAX),
            ..SnapshotProgress::default()
        };
        listed.set(progress);
        report(progress);
        for (log, _) in online {
            let Some(name) = log
                .directory()
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
            else {
                continue;
            };
            let Some(key) = PartitionKey::from_directory_name(&name) else {
                continue;
            };
            let copy = log
                .copy_synced_to(&logs.join(&name))
                .await
                .map_err(failed)?;
            taken.files_linked += copy.files_linked;
            taken.files_copied += copy.files_copied;
            taken.manifest.partitions.push(ManifestPartition {
                topic: key.topic,
                partition: key.partition,
                log_start_offset: copy.log_start_offset,
                end_offset: copy.end_offset,
                segment_bytes: copy.segment_bytes,
            });
            progress.partitions_done = progress.partitions_done.saturating_add(1);
            progress.bytes_done = progress.bytes_done.saturating_add(copy.segment_bytes);
            listed.set(progress);
            report(progress);
        }
        disk.sync_dir(&logs).await.map_err(failed)?;
        taken
            .manifest
            .partitions
            .sort_by(|a, b| (a.topic.as_str(), a.partition).cmp(&(b.topic.as_str(), b.partition)));
        taken.manifest.offline = self
            .offline_partitions()
            .into_iter()
            .map(|(topic, partition, reason)| OfflinePartition {
                topic,
                partition,
                reason,
            })
            .collect();
        taken.manifest.created_ms = self.clock.wall_time_ms();
        write_manifest(disk, target, &taken.manifest)
            .await
            .map_err(failed)?;
        tracing::info!(
            directory = %target.display(),
            partitions = taken.manifest.partitions.len(),
            offline = taken.manifest.offline.len(),
            files_linked = taken.files_linked,
            files_copied = taken.files_copied,
            "snapshot written"
        );
        Ok(taken)
    }

    /// The progress of the snapshot into `target`, while it runs.
    pub fn snapshot_progress(&self, target: &Path) -> Option<SnapshotProgress> {
        self.snapshots.get(target)
    }

    /// The SnapshotProgress request.
    pub(crate) fn snapshot_progress_request(
        &self,
        request: &SnapshotProgressRequest,
    ) -> SnapshotProgressResponse {
        let progress = self.snapshot_progress(Path::new(&request.out_dir));
        let shown = progress.unwrap_or_default();
        SnapshotProgressResponse {
            error: ErrorCode::None,
            message: String::new(),
            running: progress.is_some(),
            partitions_done: shown.partitions_done,
            partitions_total: shown.partitions_total,
            bytes_done: shown.bytes_done,
        }
    }

    /// The Snapshot request.
    pub(crate) async fn snapshot_request(&self, request: SnapshotRequest) -> SnapshotResponse {
        match self.snapshot(Path::new(&request.out_dir)).await {
            Ok(taken) => SnapshotResponse {
                error: ErrorCode::None,
                message: String::new(),
                node_id: taken.manifest.node_id,
                partitions: taken
                    .manifest
                    .partitions
                    .iter()
                    .map(|partition| SnapshotPartition {
                        topic: partition.topic.clone(),
                        partition: partition.partition,
                        log_start_offset: partition.log_start_offset,
                        end_offset: partition.end_offset,
                    })
                    .collect(),
                offline_partitions: u32::try_from(taken.manifest.offline.len()).unwrap_or(u32::MAX),
                files_linked: taken.files_linked,
                files_copied: taken.files_copied,
            },
            Err(error) => {
                let code = match &error {
                    SnapshotError::Target { .. } => ErrorCode::InvalidRequest,
                    SnapshotError::Disk { .. } => ErrorCode::StorageError,
                };
                tracing::warn!(%error, "snapshot refused or failed");
                SnapshotResponse {
                    error: code,
                    message: error.to_string(),
                    ..SnapshotResponse::default()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use ledge_protocol::wire::{
        Acks, CreatableTopic, CreateTopicsRequest, ProducePartition, ProduceRequest, ProduceTopic,
        Request, Response,
    };
    use ledge_protocol::{EncodeOptions, Record, encode_batch};

    use super::*;
    use crate::broker::BrokerConfig;
    use crate::storage::disk::StdDisk;

    fn batch(tag: usize) -> Bytes {
        let record = Record {
            timestamp: 1_000,
            key: None,
            value: Some(Bytes::from(format!("value-{tag}-{}", "x".repeat(200)))),
            headers: Vec::new(),
        };
        encode_batch(&[record], &EncodeOptions::default()).unwrap()
    }

    // Goal (issue 16, snapshot progress): a multi-partition snapshot reports its progress
    // after each partition, 0/M first and M/M last with the bytes growing, and lists the
    // same progress for SnapshotProgress while it runs, nothing once finished. Method: a
    // real broker on the std disk in a temporary directory, three partitions with records;
    // the report callback reads the broker's SnapshotProgress answer too (no timing).
    #[tokio::test]
    async fn a_snapshot_reports_progress_partition_by_partition() {
        let directory = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            StdDisk::new(),
            &directory.path().join("data"),
            BrokerConfig::default(),
            Arc::new(crate::clock::SystemClock),
        )
        .await
        .unwrap();
        let Response::CreateTopics(created) = broker
            .handle(Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: "orders".into(),
                    partitions: 3,
                    configs: Vec::new(),
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!("wrong response")
        };
        assert_eq!(created.topics[0].error, ErrorCode::None);
        for partition in 0..3 {
            let Response::Produce(produced) = broker
                .handle(Request::Produce(ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 10_000,
                    topics: vec![ProduceTopic {
                        name: "orders".into(),
                        partitions: vec![ProducePartition {
                            partition,
                            current_leader_epoch: None,
                            records: batch(partition as usize),
                        }],
                    }],
                }))
                .await
            else {
                panic!("wrong response")
            };
            assert_eq!(produced.topics[0].partitions[0].error, ErrorCode::None);
        }
        let target = directory.path().join("snapshot");
        let request = SnapshotProgressRequest {
            out_dir: target.display().to_string(),
        };
        let mut reports = Vec::new();
        let mut answers = Vec::new();
        let taken = broker
            .snapshot_reporting(&target, |progress| {
                reports.push(progress);
                answers.push(broker.snapshot_progress_request(&request));
            })
            .await
            .unwrap();
        let total = u32::try_from(taken.manifest.partitions.len()).unwrap();
        assert!(total >= 3, "{total}");
        assert_eq!(reports.len(), total as usize + 1, "{reports:?}");
        for (index, progress) in reports.iter().enumerate() {
            assert_eq!(progress.partitions_done as usize, index);
            assert_eq!(progress.partitions_total, total);
        }
        assert!(
            reports
                .windows(2)
                .all(|pair| pair[0].bytes_done <= pair[1].bytes_done)
        );
        let bytes: u64 = taken
            .manifest
            .partitions
            .iter()
            .map(|partition| partition.segment_bytes)
            .sum();
        assert!(bytes > 0);
        assert_eq!(reports.last().unwrap().bytes_done, bytes);
        // SnapshotProgress answered the same while it ran, and nothing after.
        for (answer, progress) in answers.iter().zip(&reports) {
            assert!(answer.running);
            assert_eq!(answer.partitions_done, progress.partitions_done);
            assert_eq!(answer.partitions_total, total);
            assert_eq!(answer.bytes_done, progress.bytes_done);
        }
        assert!(!broker.snapshot_progress_request(&request).running);
        broker.close().await;
    }
}
