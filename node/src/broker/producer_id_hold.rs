//! Holding producer ids back after a `metadata.json` rebuild while a partition is offline
//! (issue 11, data item 1).
//!
//! After a rebuild the producer-id floor is taken from what the logs remember
//! (`reserve_producer_ids_after_open`), but an offline partition's log did not open, so the
//! ids only it holds are not seen. Handed out again, such an id makes a new producer's first
//! batch to that partition, once it is back, look like a resend of the old producer's:
//! acknowledged at the old offset and never written.
//!
//! Two ways out were weighed. Reading the offline partition's producer snapshot file
//! directly is not enough: a snapshot is the state as of the active segment's start (it is
//! written at rolls), so a producer that began since the last roll is only in the active
//! segment's batches, which is typically where the damage is, and past damage nothing can
//! be read for certain. So ids are held back instead: until every partition is online,
//! InitProducerId answers `StorageError` (retriable; the producer retries within its
//! patience, and non-idempotent producers are not affected). Then the floor is taken over
//! every log and the hold ends. The hold is a marker file written durably before the
//! rebuilt `metadata.json` is stored, so it survives restarts (a crash, or a restart with
//! the partition still offline, must not end it); the operator ends it by making the
//! partition open again (restore, `ledge-repair truncate`) or deleting its topic.

use bytes::Bytes;

use std::path::Path;

use crate::storage::disk::{DiskFile, OpenMode};
use crate::storage::{Disk, DiskError};

/// The marker's name in the data directory: present while producer ids are held back.
pub(super) const PRODUCER_ID_HOLD_FILE_NAME: &str = "producer-ids.held";

/// Writes the marker durably (file and directory), before a rebuilt `metadata.json` is
/// stored.
pub(super) async fn write_hold_marker<D: Disk>(disk: &D, data_dir: &Path) -> Result<(), DiskError> {
    let path = data_dir.join(PRODUCER_ID_HOLD_FILE_NAME);
    let file = match disk.open(&path, OpenMode::CreateNew).await {
        Ok(file) => file,
        // Left by an earlier rebuild whose hold has not ended: it still holds.
        Err(_) if disk.open(&path, OpenMode::Read).await.is_ok() => return Ok(()),
        Err(error) => return Err(error),
    };
    file.write_at(
        0,
        Bytes::from_static(
            b"metadata.json was rebuilt while a partition may have been offline: producer ids are held back until every partition is online\n",
        ),
    )
    .await?;
    file.sync_data().await?;
    disk.sync_dir(data_dir).await
}

/// Whether the marker is present.
pub(super) async fn hold_marker_exists<D: Disk>(
    disk: &D,
    data_dir: &Path,
) -> Result<bool, DiskError> {
    match disk
        .open(&data_dir.join(PRODUCER_ID_HOLD_FILE_NAME), OpenMode::Read)
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if error.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Removes the marker durably, once every partition is online and the floor is taken.
pub(super) async fn remove_hold_marker<D: Disk>(
    disk: &D,
    data_dir: &Path,
) -> Result<(), DiskError> {
    match disk
        .remove_file(&data_dir.join(PRODUCER_ID_HOLD_FILE_NAME))
        .await
    {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    disk.sync_dir(data_dir).await
}
