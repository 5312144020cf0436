//! The metadata image as openraft's state machine, with durable snapshots.
//!
//! The image itself lives in memory: after a restart it is the last snapshot plus the
//! committed entries openraft applies again (the store keeps the committed log id). A
//! snapshot is written to `<data_dir>/controller/snapshot` (one frame: the snapshot's
//! metadata and the image, replaced atomically and durably) before openraft may purge the log
//! entries it covers, so the log never loses an entry the snapshot does not hold.
//!
//! Two writers race for that file: the snapshot builder (openraft runs it in its own task,
//! on a copy of the image taken earlier) and `install_snapshot` (a snapshot from the leader).
//! They take one async mutex, write under temporary names of their own
//! (`snapshot.<n>.tmp`), and never replace a stored snapshot with one whose last log id is
//! not newer: a builder that finishes after a newer snapshot was installed leaves the file
//! alone (review finding 3: an older snapshot could otherwise replace a newer one, and the
//! log it had let openraft purge would be gone).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};

use super::image::MetadataImage;
use super::store::{
    CONTROLLER_DIR_NAME, ControllerEntry, ControllerStoreError, decode_frame, encode_frame,
    read_whole,
};
use super::types::{ControllerResponse, ControllerTypes};
use crate::storage::disk::{Disk, DiskFile, OpenMode, create_dir_durable};

const SNAPSHOT_FILE: &str = "snapshot";
/// Temporary snapshot files are `snapshot.<n>.tmp`; any left by a crash are removed at open.
const SNAPSHOT_TEMPORARY_PREFIX: &str = "snapshot.";
const SNAPSHOT_TEMPORARY_SUFFIX: &str = ".tmp";
type RaftStorageError = StorageError<u64>;
type Meta = SnapshotMeta<u64, openraft::BasicNode>;

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: Meta,
    /// [`MetadataImage::to_snapshot`] bytes.
    data: Vec<u8>,
}

/// The metadata image under openraft.
pub struct ControllerStateMachine<D: Disk> {
    disk: D,
    dir: PathBuf,
    image: MetadataImage,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    /// Every applied change is published here (decisions and readers take the latest).
    published: watch::Sender<Arc<MetadataImage>>,
    snapshots_built: u64,
    /// The one writer of the snapshot file at a time (builders and installs).
    snapshot_file: SnapshotFile<D>,
}

/// The snapshot file, shared by the state machine and its builders.
struct SnapshotFile<D: Disk> {
    disk: D,
    dir: PathBuf,
    lock: Arc<Mutex<()>>,
    /// Numbers temporary files, so two writers never share one.
    temporary_next: Arc<AtomicU64>,
}

impl<D: Disk> Clone for SnapshotFile<D> {
    fn clone(&self) -> Self {
        Self {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            lock: Arc::clone(&self.lock),
            temporary_next: Arc::clone(&self.temporary_next),
        }
    }
}

impl<D: Disk> SnapshotFile<D> {
    /// Stores `meta` and `data` as the snapshot, durably, unless the stored one is as new or
    /// newer (by last log id). Returns whether it was stored.
    async fn store_if_newer(&self, meta: &Meta, data: &[u8]) -> Result<bool, ControllerStoreError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let _writer = self.lock.lock().await;
        if let Some(bytes) = read_whole(&self.disk, &path).await?
            && let Ok((payload, _)) = decode_frame(&bytes)
            && let Ok(stored) = serde_json::from_slice::<StoredMeta>(payload)
            && stored.meta.last_log_id >= meta.last_log_id
        {
            tracing::debug!(
                stored = ?stored.meta.last_log_id,
                offered = ?meta.last_log_id,
                "controller snapshot not replaced by an older one"
            );
            return Ok(false);
        }
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let payload =
            serde_json::to_vec(&stored).map_err(|error| ControllerStoreError::Corrupt {
                path: path.clone(),
                detail: format!("snapshot does not encode: {error}"),
            })?;
        let mut frame = Vec::new();
        encode_frame(&mut frame, &payload);
        let number = self.temporary_next.fetch_add(1, Ordering::Relaxed);
        let temporary = self.dir.join(format!(
            "{SNAPSHOT_TEMPORARY_PREFIX}{number}{SNAPSHOT_TEMPORARY_SUFFIX}"
        ));
        match self.disk.remove_file(&temporary).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error.into()),
        }
        let file = self.disk.open(&temporary, OpenMode::CreateNew).await?;
        file.write_at(0, Bytes::from(frame)).await?;
        file.sync_data().await?;
        drop(file);
        self.disk.rename(&temporary, &path).await?;
        self.disk.sync_dir(&self.dir).await?;
        Ok(true)
    }

    /// Removes temporary snapshot files a crash left behind.
    async fn remove_temporaries(&self) -> Result<(), ControllerStoreError> {
        for name in self.disk.list_dir(&self.dir).await? {
            let temporary = name.starts_with(SNAPSHOT_TEMPORARY_PREFIX)
                && name.ends_with(SNAPSHOT_TEMPORARY_SUFFIX);
            if temporary {
                match self.disk.remove_file(&self.dir.join(&name)).await {
                    Ok(()) => {}
                    Err(error) if error.is_not_found() => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Ok(())
    }
}

/// The metadata part of a stored snapshot (its image is not decoded to compare).
#[derive(Deserialize)]
struct StoredMeta {
    meta: Meta,
}

impl<D: Disk> ControllerStateMachine<D> {
    /// Opens the state machine in `<data_dir>/controller/`, starting from the stored snapshot
    /// if there is one.
    pub async fn open(disk: D, data_dir: &Path) -> Result<Self, ControllerStoreError> {
        let dir = data_dir.join(CONTROLLER_DIR_NAME);
        create_dir_durable(&disk, &dir).await?;
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot_file = SnapshotFile {
            disk: disk.clone(),
            dir: dir.clone(),
            lock: Arc::new(Mutex::new(())),
            temporary_next: Arc::new(AtomicU64::new(0)),
        };
        snapshot_file.remove_temporaries().await?;
        let mut machine = Self {
            disk,
            dir,
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            published: watch::Sender::new(Arc::new(MetadataImage::default())),
            snapshots_built: 0,
            snapshot_file,
        };
        if let Some(bytes) = read_whole(&machine.disk, &path).await? {
            let corrupt = |detail: String| ControllerStoreError::Corrupt {
                path: path.clone(),
                detail,
            };
            let (payload, _) = decode_frame(&bytes).map_err(corrupt)?;
            let stored: StoredSnapshot = serde_json::from_slice(payload)
                .map_err(|error| corrupt(format!("snapshot does not decode: {error}")))?;
            machine
                .install(stored.meta, &stored.data)
                .map_err(corrupt)?;
        }
        Ok(machine)
    }

    /// A receiver of the image as applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    /// Snapshots built by this state machine since it opened.
    pub fn snapshots_built(&self) -> u64 {
        self.snapshots_built
    }

    fn install(&mut self, meta: Meta, data: &[u8]) -> Result<(), String> {
        let image = MetadataImage::from_snapshot(data).map_err(|error| error.to_string())?;
        self.image = image;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership;
        self.published.send_replace(Arc::new(self.image.clone()));
        Ok(())
    }
}

fn snapshot_error(error: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&error)).into()
}

/// Builds snapshots of the image as of the moment it was asked.
pub struct ControllerSnapshotBuilder<D: Disk> {
    machine: SnapshotSource<D>,
}

struct SnapshotSource<D: Disk> {
    file: SnapshotFile<D>,
    image: MetadataImage,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, openraft::BasicNode>,
}

impl<D: Disk> RaftSnapshotBuilder<ControllerTypes> for ControllerSnapshotBuilder<D> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<ControllerTypes>, RaftStorageError> {
        let source = &self.machine;
        let data = source.image.to_snapshot();
        let snapshot_id = match source.last_applied {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_owned(),
        };
        let meta = Meta {
            last_log_id: source.last_applied,
            last_membership: source.membership.clone(),
            snapshot_id,
        };
        // Durable before openraft learns of it (and may purge the log it covers). If a newer
        // snapshot was installed meanwhile, the file keeps that one: it covers more of the
        // log than this one, so whatever openraft purges up to this one is covered too.
        source
            .file
            .store_if_newer(&meta, &data)
            .await
            .map_err(snapshot_error)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<D: Disk> RaftStateMachine<ControllerTypes> for ControllerStateMachine<D> {
    type SnapshotBuilder = ControllerSnapshotBuilder<D>;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        RaftStorageError,
    > {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ControllerResponse>, RaftStorageError>
    where
        I: IntoIterator<Item = ControllerEntry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(()),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(())
                }
                EntryPayload::Normal(request) => {
                    let result = self.image.apply_batch(index, &request.records);
                    if let Err(error) = &result {
                        // Normal for a decision made on an image a concurrent one changed;
                        // every replica refuses it alike.
                        tracing::debug!(index, %error, "metadata records refused");
                    }
                    result
                }
            };
            responses.push(ControllerResponse { index, result });
        }
        self.published.send_replace(Arc::new(self.image.clone()));
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        ControllerSnapshotBuilder {
            machine: SnapshotSource {
                file: self.snapshot_file.clone(),
                image: self.image.clone(),
                last_applied: self.last_applied,
                membership: self.membership.clone(),
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        // Check it decodes before making it durable: a bad snapshot from a peer changes nothing.
        MetadataImage::from_snapshot(&data).map_err(snapshot_error)?;
        // A newer stored snapshot (built here meanwhile) stays: it is of the same committed
        // log, further on.
        self.snapshot_file
            .store_if_newer(meta, &data)
            .await
            .map_err(snapshot_error)?;
        self.install(meta.clone(), &data)
            .map_err(|detail| snapshot_error(std::io::Error::other(detail)))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ControllerTypes>>, RaftStorageError> {
        // The latest durable snapshot is the file's: a builder may have written one since.
        let path = self.dir.join(SNAPSHOT_FILE);
        let Some(bytes) = read_whole(&self.disk, &path)
            .await
            .map_err(snapshot_error)?
        else {
            return Ok(None);
        };
        let (payload, _) =
            decode_frame(&bytes).map_err(|detail| snapshot_error(std::io::Error::other(detail)))?;
        let stored: StoredSnapshot = serde_json::from_slice(payload).map_err(snapshot_error)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
