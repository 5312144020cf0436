//! The bootstrap marker: the one thing that lets a voter initialize the controller quorum.
//!
//! A voter whose controller store is empty is either a member of a cluster that was never
//! started, or a member of a running cluster whose store was lost (a wiped or replaced disk).
//! Only the first may initialize the quorum: a wiped voter that did so would start a new
//! term-0 history of its own, and a majority of wiped voters would elect a leader without
//! the metadata the cluster had committed. Like `kafka-storage format`, the first start is
//! marked on disk beforehand: `ledge-node cluster-init` writes
//! `<data_dir>/controller/bootstrap` for every voter, and an operator writing configs by hand
//! creates the same file (any contents) on each voter before its first start.
//!
//! Rules (in [`super::quorum::Controller::start`] and [`super::store`]):
//! - an empty store with the marker initializes the quorum with `controller_voters`;
//! - an empty store without it does not: the voter waits to be contacted by the existing
//!   quorum, which catches it up as an empty voter (one INFO line says so);
//! - the marker is consumed (removed, the directory synced) as soon as the store holds a
//!   membership: after the first durable append, or at a start that finds one stored. So a
//!   later wipe of the store cannot meet a marker left behind.
//!
//! The marker lives inside `controller/`, so wiping the store wipes it too.
//!
//! The rejoin marker (`controller/rejoining`) is the other side: a voter that starts with an
//! empty store and no bootstrap marker writes it, durably, before it answers any Raft message,
//! and grants no vote while it exists. It may have voted, and held committed entries, before
//! its store was lost; with an empty log it would grant its vote to any candidate, so a
//! lagging voter could win with it and lose what the wiped voter and one other had committed
//! (simulator seeds 622 and 1375: a wiped voter, then a power loss, then a majority without
//! the committed entries). The node removes the marker once it has caught up (see
//! [`super::quorum::caught_up_after_rejoin`]); a power loss before that finds the marker
//! again, so the vote stays withheld across restarts.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::store::CONTROLLER_DIR_NAME;
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode, create_dir_durable};

/// The marker's file name inside `<data_dir>/controller/`.
pub const BOOTSTRAP_MARKER_FILE: &str = "bootstrap";

/// Where the marker of the node with `data_dir` is.
pub fn marker_path(data_dir: &Path) -> PathBuf {
    data_dir
        .join(CONTROLLER_DIR_NAME)
        .join(BOOTSTRAP_MARKER_FILE)
}

/// What `cluster-init` writes into the marker (for a person reading it; only its presence
/// counts).
pub fn marker_text(cluster_id: &str, voters: &[u32]) -> String {
    let voters: Vec<String> = voters.iter().map(u32::to_string).collect();
    format!(
        "This voter may initialize the controller quorum of cluster {cluster_id} (voters {}) at its first start; the node removes this file once the quorum's membership is stored.\n",
        voters.join(", ")
    )
}

/// The rejoin marker's file name inside `<data_dir>/controller/`.
pub const REJOIN_MARKER_FILE: &str = "rejoining";

/// Where the rejoin marker of the node with `data_dir` is.
pub fn rejoin_marker_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROLLER_DIR_NAME).join(REJOIN_MARKER_FILE)
}

/// Writes the rejoin marker, durably.
pub async fn write_rejoin_marker<D: Disk>(disk: &D, data_dir: &Path) -> Result<(), DiskError> {
    write_file(
        disk,
        data_dir,
        &rejoin_marker_path(data_dir),
        "This voter started with an empty controller store: it grants no vote until it has caught up with the controller quorum; the node removes this file then.\n",
    )
    .await
}

/// Whether the rejoin marker of the node with `data_dir` exists.
pub async fn rejoin_marker_exists<D: Disk>(disk: &D, data_dir: &Path) -> Result<bool, DiskError> {
    file_exists(disk, &rejoin_marker_path(data_dir)).await
}

/// Removes the rejoin marker durably, if it exists.
pub async fn consume_rejoin_marker<D: Disk>(disk: &D, data_dir: &Path) -> Result<(), DiskError> {
    match disk.remove_file(&rejoin_marker_path(data_dir)).await {
        Ok(()) => disk.sync_dir(&data_dir.join(CONTROLLER_DIR_NAME)).await,
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Writes the marker for the node with `data_dir` on `disk`, durably (the directories
/// created and synced, the file synced).
pub async fn write_marker<D: Disk>(disk: &D, data_dir: &Path, text: &str) -> Result<(), DiskError> {
    write_file(disk, data_dir, &marker_path(data_dir), text).await
}

/// Writes `path` (a file in `<data_dir>/controller/`) with `text`, durably.
async fn write_file<D: Disk>(
    disk: &D,
    data_dir: &Path,
    path: &Path,
    text: &str,
) -> Result<(), DiskError> {
    let dir = data_dir.join(CONTROLLER_DIR_NAME);
    create_dir_durable(disk, &dir).await?;
    match disk.remove_file(path).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(path, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::copy_from_slice(text.as_bytes()))
        .await?;
    file.sync_data().await?;
    disk.sync_dir(&dir).await
}

/// Whether the marker of the node with `data_dir` exists.
pub async fn marker_exists<D: Disk>(disk: &D, data_dir: &Path) -> Result<bool, DiskError> {
    file_exists(disk, &marker_path(data_dir)).await
}

async fn file_exists<D: Disk>(disk: &D, path: &Path) -> Result<bool, DiskError> {
    match disk.open(path, OpenMode::Read).await {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Removes the marker durably, if it exists.
pub async fn consume_marker<D: Disk>(disk: &D, data_dir: &Path) -> Result<(), DiskError> {
    match disk.remove_file(&marker_path(data_dir)).await {
        Ok(()) => {
            tracing::info!(path = %marker_path(data_dir).display(), "controller quorum membership stored: bootstrap marker consumed");
            disk.sync_dir(&data_dir.join(CONTROLLER_DIR_NAME)).await
        }
        Err(error) if error.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}
