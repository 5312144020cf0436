//! The native Snapshot request (`ledge admin snapshot --out DIR`, issue 16 item 6): the
//! node writes a snapshot of its data directory on its own host while it serves
//! (`storage::snapshot`). Authorization (Alter on the cluster) and the audit line are the
//! dispatch's (`authorize.rs`).
//!
//! Order: the target is checked before anything is written; the node's files outside the
//! logs are copied under the metadata lock; then each online partition, up to its synced
//! end; the manifest last. Offline partitions are listed in the manifest, not copied.

use std::path::Path;

use ledge_protocol::wire::{ErrorCode, SnapshotPartition, SnapshotRequest, SnapshotResponse};

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

impl<D: Disk> Broker<D> {
    /// Writes a snapshot of the data directory into `target` (absolute, new, outside the
    /// data directory) on this node's host.
    pub async fn snapshot(&self, target: &Path) -> Result<TakenSnapshot, SnapshotError> {
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
