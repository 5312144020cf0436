//! Disaster recovery: `ledge admin snapshot --out DIR` through the native Snapshot request
//! (49). The node writes the snapshot on its own host; restore is offline
//! (`ledge-node restore --from DIR --data-dir NEW`).

use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};

use super::{Admin, unexpected};
use crate::cluster::failover::RequestKind;
use crate::error::AdminError;

pub use wire::SnapshotPartition;

/// How far a running snapshot is ([`Admin::snapshot_progress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotProgress {
    /// Partitions copied so far.
    pub partitions_done: u32,
    /// Online partitions the snapshot copies.
    pub partitions_total: u32,
    /// Segment bytes of the partitions copied so far.
    pub bytes_done: u64,
}

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The node that wrote it.
    pub node_id: u32,
    /// Every partition, with the offsets it holds.
    pub partitions: Vec<SnapshotPartition>,
    /// Partitions offline at the time, left out.
    pub offline_partitions: u32,
    /// Files hard-linked to the node's own.
    pub files_linked: u64,
    /// Files copied.
    pub files_copied: u64,
}

impl Admin {
    /// Has the connected node write a snapshot of its data directory into `out_dir` on its
    /// own host (absolute, not existing yet, outside its data directory). Not retried: a
    /// second attempt would find the directory the first one made.
    pub async fn snapshot(&self, out_dir: &str) -> Result<Snapshot, AdminError> {
        let request = Request::Snapshot(wire::SnapshotRequest {
            out_dir: out_dir.to_owned(),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::Snapshot(response) => response,
            other => return Err(unexpected(ApiKey::Snapshot, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Security {
                subject: format!("snapshot into {out_dir}"),
                code: response.error,
                message: response.message,
            });
        }
        Ok(Snapshot {
            node_id: response.node_id,
            partitions: response.partitions,
            offline_partitions: response.offline_partitions,
            files_linked: response.files_linked,
            files_copied: response.files_copied,
        })
    }

    /// How far the snapshot into `out_dir` running on the connected node is: `None` when
    /// none runs there (not started yet, or finished). Read-only, so retried as reads are.
    pub async fn snapshot_progress(
        &self,
        out_dir: &str,
    ) -> Result<Option<SnapshotProgress>, AdminError> {
        let request = Request::SnapshotProgress(wire::SnapshotProgressRequest {
            out_dir: out_dir.to_owned(),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Read, &request)
            .await?
        {
            Response::SnapshotProgress(response) => response,
            other => return Err(unexpected(ApiKey::SnapshotProgress, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Security {
                subject: format!("snapshot progress of {out_dir}"),
                code: response.error,
                message: response.message,
            });
        }
        Ok(response.running.then_some(SnapshotProgress {
            partitions_done: response.partitions_done,
            partitions_total: response.partitions_total,
            bytes_done: response.bytes_done,
        }))
    }
}
