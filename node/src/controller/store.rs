//! The controller's durable Raft storage on the node's [`Disk`] (so `SimDisk` crash tests
//! cover it): log entries, the vote, the committed log id, the last purged log id and (in
//! [`super::state_machine`]) the snapshot, in files under `<data_dir>/controller/`.
//!
//! Layout:
//! - `log`: frames `[payload length u32 LE][CRC-32C of payload u32 LE][payload]`, one per
//!   entry, the payload the entry as JSON. Appended in place; rewritten (to `log.tmp`, synced,
//!   renamed) only when a snapshot lets the head be purged.
//! - `state`: one frame holding the vote, the committed log id and the last purged log id,
//!   replaced whole (write `state.tmp`, fdatasync, rename, fsync the directory).
//!
//! The durability rule (openraft's downstream stores lost acknowledged entries and voted twice
//! by answering from the page cache): `save_vote` returns, and `append` fires its callback,
//! only after fdatasync.
//!
//! The recovery rule (review finding 5): an append acknowledges its entries only after they
//! are synced *and* `state` records the last index of that append as `synced`. So on open,
//! damage in an entry above both `synced` and the committed index lies in the one append that
//! was in flight at the crash (a torn write, possibly with whole frames after the torn one):
//! it was never acknowledged, and the log is cut at the first bad frame. Damage at or below
//! either refuses the start with one line naming the file, the byte offset and the entry:
//! the entry may have been acknowledged, so cutting it could lose committed metadata. (A
//! `state` written before this rule has no `synced`: the committed index alone decides.)

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, LogId, RaftLogReader, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::types::ControllerTypes;
use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode, create_dir_durable};

/// The controller's directory under the node's data directory.
pub const CONTROLLER_DIR_NAME: &str = "controller";
/// Permission bits of the controller's directory: its log holds the cluster's SCRAM
/// credentials (salted, as `security.json` does on a single node), so only the node's user
/// may list or read it.
pub const CONTROLLER_DIR_MODE: u32 = 0o700;

/// Creates `<data_dir>/controller` with [`CONTROLLER_DIR_MODE`], or narrows an existing one
/// to it (directories made before this rule were 0755). Blocking: call at start, before the
/// store opens. Returns whether an existing directory's mode was narrowed.
pub fn restrict_controller_dir(data_dir: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = data_dir.join(CONTROLLER_DIR_NAME);
    match std::fs::metadata(&dir) {
        Ok(metadata) => {
            if metadata.permissions().mode() & 0o777 == CONTROLLER_DIR_MODE {
                return Ok(false);
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(CONTROLLER_DIR_MODE))?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(CONTROLLER_DIR_MODE)
                .create(&dir)?;
            // The new entry is durable once its parent is synced; the store's
            // `create_dir_durable` finds it present, so sync here.
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

/// Largest log entry or state frame read back, in bytes: a decision's records are a few KiB;
/// a length above this is damage, not an entry.
pub const CONTROLLER_FRAME_BYTES_MAX: u32 = 16 * 1024 * 1024;
const LOG_FILE: &str = "log";
const STATE_FILE: &str = "state";
const FRAME_HEADER_BYTES: usize = 8;

/// One log entry of the controller quorum.
pub type ControllerEntry = openraft::Entry<ControllerTypes>;
type RaftStorageError = StorageError<u64>;

/// Why the controller's storage could not open or write.
#[derive(Debug, thiserror::Error)]
pub enum ControllerStoreError {
    /// The disk failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Damage that would lose committed entries or the vote: the node must not start.
    #[error(
        "controller storage {path}: {detail}; refusing to start rather than lose committed metadata"
    )]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong, where.
        detail: String,
    },
}

/// The small durable state beside the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DurableState {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    last_purged: Option<LogId<u64>>,
    /// The last index of the last append that completed (synced, then recorded here, then
    /// acknowledged): entries up to it may have been acknowledged.
    #[serde(default)]
    synced: Option<u64>,
}

/// Entries in memory (the log is small: snapshots bound it), shared with the log readers
/// openraft's replication tasks use.
type SharedEntries = Arc<Mutex<BTreeMap<u64, ControllerEntry>>>;

/// The controller's log and vote store.
pub struct ControllerLogStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    log: D::File,
    /// File offset where each entry's frame starts.
    offsets: BTreeMap<u64, u64>,
    /// The log file's length.
    end: u64,
    entries: SharedEntries,
    state: DurableState,
    /// The node's data directory (for the bootstrap marker).
    data_dir: PathBuf,
    /// The bootstrap marker exists and is removed after the next durable append, which
    /// stores a membership (the quorum's first entry, or entries replicated from its leader).
    bootstrap_marker_pending: bool,
}

/// A reader of the log for openraft's replication tasks.
#[derive(Clone)]
pub struct ControllerLogReader {
    entries: SharedEntries,
}

impl<D: Disk> ControllerLogStore<D> {
    /// Opens (or creates) the store in `<data_dir>/controller/`, recovering as the module
    /// docs say.
    pub async fn open(disk: D, data_dir: &Path) -> Result<Self, ControllerStoreError> {
        let dir = data_dir.join(CONTROLLER_DIR_NAME);
        create_dir_durable(&disk, &dir).await?;
        let state_path = dir.join(STATE_FILE);
        let state = match read_whole(&disk, &state_path).await? {
            None => DurableState::default(),
            Some(bytes) => {
                decode_state(&bytes).map_err(|detail| ControllerStoreError::Corrupt {
                    path: state_path.clone(),
                    detail,
                })?
            }
        };
        let log_path = dir.join(LOG_FILE);
        let log = match disk.open(&log_path, OpenMode::ReadWrite).await {
            Ok(file) => file,
            Err(error) if error.is_not_found() => {
                let file = disk.open(&log_path, OpenMode::CreateNew).await?;
                file.sync_data().await?;
                disk.sync_dir(&dir).await?;
                file
            }
            Err(error) => return Err(error.into()),
        };
        let bootstrap_marker_pending = super::bootstrap::marker_exists(&disk, data_dir).await?;
        let mut store = Self {
            disk,
            dir,
            log,
            offsets: BTreeMap::new(),
            end: 0,
            entries: Arc::new(Mutex::new(BTreeMap::new())),
            state,
            data_dir: data_dir.to_path_buf(),
            bootstrap_marker_pending,
        };
        store.recover_log().await?;
        Ok(store)
    }

    /// Scans the log: keeps the whole frames, cuts a torn tail above the committed index,
    /// refuses damage at or below it.
    async fn recover_log(&mut self) -> Result<(), ControllerStoreError> {
        let len = self.log.len().await?;
        let bytes = self
            .log
            .read_at(0, usize::try_from(len).unwrap_or(usize::MAX))
            .await?;
        let committed = self.state.committed.map(|id| id.index);
        let purged = self.state.last_purged.map(|id| id.index);
        let mut entries = BTreeMap::new();
        let mut position = 0usize;
        let mut damage = None;
        while position < bytes.len() {
            match decode_frame(bytes.get(position..).unwrap_or(&[])) {
                Ok((payload, frame_len)) => {
                    let entry: ControllerEntry = match serde_json::from_slice(payload) {
                        Ok(entry) => entry,
                        Err(error) => {
                            damage = Some(format!("entry does not decode: {error}"));
                            break;
                        }
                    };
                    let index = entry.log_id.index;
                    // Entries at or below the purge point are left over from a purge that
                    // crashed before its rewrite: skipped.
                    let live = purged.is_none_or(|purged| index > purged);
                    let expected = next_index(&entries, purged);
                    if live && expected.is_some_and(|expected| index != expected) {
                        damage = Some(format!("entry {index} where {expected:?} was expected"));
                        break;
                    }
                    if live {
                        self.offsets.insert(index, position as u64);
                        entries.insert(index, entry);
                    }
                    position += frame_len;
                }
                Err(detail) => {
                    damage = Some(detail);
                    break;
                }
            }
        }
        if let Some(detail) = damage {
            let next = next_index(&entries, purged).unwrap_or(0);
            if committed.is_some_and(|committed| next <= committed) {
                return Err(ControllerStoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    detail: format!(
                        "{detail} at byte {position} (entry {next}), at or below the committed index {}",
                        committed.unwrap_or_default()
                    ),
                });
            }
            if let Some(synced) = self.state.synced
                && next <= synced
            {
                return Err(ControllerStoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    detail: format!(
                        "{detail} at byte {position} (entry {next}), at or below entry {synced}, which this voter synced and may have acknowledged"
                    ),
                });
            }
            tracing::warn!(
                path = %self.log.path().display(),
                position,
                %detail,
                "cutting the controller log's torn tail (the append in flight at the crash, never acknowledged)"
            );
            self.log.set_len(position as u64).await?;
            self.log.sync_data().await?;
        }
        self.end = position as u64;
        *self.entries.lock().unwrap_or_else(PoisonError::into_inner) = entries;
        Ok(())
    }

    /// Appends entries and returns once they are fdatasync'd (what `append` acknowledges).
    pub async fn append_durable(
        &mut self,
        entries: Vec<ControllerEntry>,
    ) -> Result<(), ControllerStoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buffer = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push((entry.log_id.index, self.end + buffer.len() as u64));
            let payload =
                serde_json::to_vec(entry).map_err(|error| ControllerStoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    detail: format!("entry {} does not encode: {error}", entry.log_id.index),
                })?;
            encode_frame(&mut buffer, &payload);
        }
        let written = buffer.len() as u64;
        let last = entries.last().map(|entry| entry.log_id.index);
        self.log.write_at(self.end, Bytes::from(buffer)).await?;
        self.log.sync_data().await?;
        // Recorded before the acknowledgement: recovery then knows these entries are no torn
        // tail, and refuses rather than cuts if they are ever damaged.
        let mut next = self.state.clone();
        next.synced = last;
        self.write_state(next).await?;
        self.end += written;
        self.offsets.extend(offsets);
        {
            let mut shared = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                shared.insert(entry.log_id.index, entry);
            }
        }
        if self.bootstrap_marker_pending {
            // The log now holds a membership durably: a later empty store must not find the
            // marker. A failure here only delays that to the next start.
            match super::bootstrap::consume_marker(&self.disk, &self.data_dir).await {
                Ok(()) => self.bootstrap_marker_pending = false,
                Err(error) => {
                    tracing::warn!(%error, "cannot remove the controller bootstrap marker; retrying at the next append or start")
                }
            }
        }
        Ok(())
    }

    /// Persists the vote; returns once it is durable.
    pub async fn save_vote_durable(&mut self, vote: Vote<u64>) -> Result<(), ControllerStoreError> {
        let mut next = self.state.clone();
        next.vote = Some(vote);
        self.write_state(next).await
    }

    /// The vote as stored.
    pub fn vote(&self) -> Option<Vote<u64>> {
        self.state.vote
    }

    /// The entries held, first to last (for tests and the snapshot check).
    pub fn entries(&self) -> Vec<ControllerEntry> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The log file's size in bytes.
    pub fn log_bytes(&self) -> u64 {
        self.end
    }

    async fn write_state(&mut self, next: DurableState) -> Result<(), ControllerStoreError> {
        let payload = serde_json::to_vec(&next).map_err(|error| ControllerStoreError::Corrupt {
            path: self.dir.join(STATE_FILE),
            detail: format!("state does not encode: {error}"),
        })?;
        let mut frame = Vec::new();
        encode_frame(&mut frame, &payload);
        replace_file(&self.disk, &self.dir, STATE_FILE, frame).await?;
        self.state = next;
        Ok(())
    }

    async fn truncate_from(&mut self, index: u64) -> Result<(), ControllerStoreError> {
        let Some(&offset) = self.offsets.get(&index) else {
            return Ok(());
        };
        if self.state.synced.is_some_and(|synced| synced >= index) {
            // Lowered first: the entries going away are uncommitted ones a new leader
            // replaces; after a crash between the two steps they are simply still there.
            let mut next = self.state.clone();
            next.synced = index.checked_sub(1);
            self.write_state(next).await?;
        }
        self.log.set_len(offset).await?;
        self.log.sync_data().await?;
        self.end = offset;
        self.offsets.split_off(&index);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .split_off(&index);
        Ok(())
    }

    async fn purge_to(&mut self, log_id: LogId<u64>) -> Result<(), ControllerStoreError> {
        // The purge point is durable first: a crash before the rewrite leaves purged entries
        // in the file, which recovery skips.
        let mut next = self.state.clone();
        next.last_purged = Some(log_id);
        self.write_state(next).await?;
        let kept: Vec<ControllerEntry> = {
            let mut shared = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            *shared = shared.split_off(&(log_id.index.saturating_add(1)));
            shared.values().cloned().collect()
        };
        let mut buffer = Vec::new();
        let mut offsets = BTreeMap::new();
        for entry in &kept {
            offsets.insert(entry.log_id.index, buffer.len() as u64);
            let payload =
                serde_json::to_vec(entry).map_err(|error| ControllerStoreError::Corrupt {
                    path: self.log.path().to_path_buf(),
                    detail: format!("entry {} does not encode: {error}", entry.log_id.index),
                })?;
            encode_frame(&mut buffer, &payload);
        }
        let end = buffer.len() as u64;
        replace_file(&self.disk, &self.dir, LOG_FILE, buffer).await?;
        self.log = self
            .disk
            .open(&self.dir.join(LOG_FILE), OpenMode::ReadWrite)
            .await?;
        self.offsets = offsets;
        self.end = end;
        Ok(())
    }
}

impl RaftLogReader<ControllerTypes> for ControllerLogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<ControllerEntry>, RaftStorageError> {
        // `BTreeMap::range` panics on an inverted range; openraft asked for one once (its
        // commit index had gone backwards, simulator seed 622): nothing is in it.
        if range_is_empty(&range) {
            return Ok(Vec::new());
        }
        Ok(self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

/// Whether `range` holds no index (an inverted range included).
fn range_is_empty(range: &impl RangeBounds<u64>) -> bool {
    use std::ops::Bound;
    let start = match range.start_bound() {
        Bound::Included(start) => Some(*start),
        Bound::Excluded(start) => start.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let end = match range.end_bound() {
        Bound::Included(end) => end.checked_add(1),
        Bound::Excluded(end) => Some(*end),
        Bound::Unbounded => None,
    };
    match (start, end) {
        (None, _) => true,
        (Some(start), Some(end)) => start >= end,
        (Some(_), None) => false,
    }
}

impl<D: Disk> RaftLogReader<ControllerTypes> for ControllerLogStore<D> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<ControllerEntry>, RaftStorageError> {
        ControllerLogReader {
            entries: self.entries.clone(),
        }
        .try_get_log_entries(range)
        .await
    }
}

fn write_error(error: ControllerStoreError) -> RaftStorageError {
    StorageIOError::write_logs(AnyError::new(&error)).into()
}

impl<D: Disk> RaftLogStorage<ControllerTypes> for ControllerLogStore<D> {
    type LogReader = ControllerLogReader;

    async fn get_log_state(&mut self) -> Result<LogState<ControllerTypes>, RaftStorageError> {
        let last = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .next_back()
            .map(|entry| entry.log_id);
        Ok(LogState {
            last_purged_log_id: self.state.last_purged,
            last_log_id: last.or(self.state.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        ControllerLogReader {
            entries: self.entries.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        self.save_vote_durable(*vote)
            .await
            .map_err(|error| StorageIOError::write_vote(AnyError::new(&error)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        Ok(self.state.vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), RaftStorageError> {
        let mut next = self.state.clone();
        next.committed = committed;
        self.write_state(next).await.map_err(write_error)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, RaftStorageError> {
        Ok(self.state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<ControllerTypes>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = ControllerEntry> + Send,
        I::IntoIter: Send,
    {
        // The callback is the acknowledgement: it fires only after fdatasync.
        match self.append_durable(entries.into_iter().collect()).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(std::io::Error::other(error.to_string())));
                Err(write_error(error))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        self.truncate_from(log_id.index).await.map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), RaftStorageError> {
        self.purge_to(log_id).await.map_err(write_error)
    }
}

/// The index the next entry must have, if any is determined yet.
fn next_index(entries: &BTreeMap<u64, ControllerEntry>, purged: Option<u64>) -> Option<u64> {
    match entries.keys().next_back() {
        Some(last) => Some(last.saturating_add(1)),
        None => purged.map(|purged| purged.saturating_add(1)),
    }
}

/// Appends one frame for `payload` to `buffer`.
pub(crate) fn encode_frame(buffer: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    buffer.extend_from_slice(payload);
}

/// The payload of the frame at the start of `bytes` and the frame's length, or what is wrong.
pub(crate) fn decode_frame(bytes: &[u8]) -> Result<(&[u8], usize), String> {
    let (Some(len), Some(crc)) = (bytes.get(0..4), bytes.get(4..FRAME_HEADER_BYTES)) else {
        return Err(format!("torn frame header ({} bytes)", bytes.len()));
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if len > CONTROLLER_FRAME_BYTES_MAX {
        return Err(format!(
            "frame length {len} is above the {CONTROLLER_FRAME_BYTES_MAX}-byte limit"
        ));
    }
    let end = FRAME_HEADER_BYTES + len as usize;
    let payload = bytes
        .get(FRAME_HEADER_BYTES..end)
        .ok_or_else(|| format!("torn frame ({} of {end} bytes)", bytes.len()))?;
    if crc32c::crc32c(payload) != crc {
        return Err("frame CRC mismatch".to_owned());
    }
    Ok((payload, end))
}

fn decode_state(bytes: &[u8]) -> Result<DurableState, String> {
    let (payload, len) = decode_frame(bytes)?;
    if len != bytes.len() {
        return Err(format!("{} bytes after the state frame", bytes.len() - len));
    }
    serde_json::from_slice(payload).map_err(|error| format!("state does not decode: {error}"))
}

/// The whole file, or `None` if it does not exist.
pub(crate) async fn read_whole<D: Disk>(
    disk: &D,
    path: &Path,
) -> Result<Option<Vec<u8>>, DiskError> {
    let file = match disk.open(path, OpenMode::Read).await {
        Ok(file) => file,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = file.len().await?;
    Ok(Some(
        file.read_at(0, usize::try_from(len).unwrap_or(usize::MAX))
            .await?,
    ))
}

/// Replaces `dir/name` with `contents` atomically and durably: a crash leaves the old file or
/// the new one, never a mix.
pub(crate) async fn replace_file<D: Disk>(
    disk: &D,
    dir: &Path,
    name: &str,
    contents: Vec<u8>,
) -> Result<(), DiskError> {
    let temporary = dir.join(format!("{name}.tmp"));
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(contents)).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &dir.join(name)).await?;
    disk.sync_dir(dir).await
}

#[cfg(test)]
mod tests;
