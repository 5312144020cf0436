//! `SimDisk`: an in-memory [`Disk`] with a real fault model, for deterministic crash tests.
//!
//! Every file keeps `live` bytes (what reads see now) and `durable` bytes (what survives a
//! power loss); `sync_data` copies live to durable. Directory entries are live or durable
//! the same way, and only `sync_dir` of the parent makes a creation or removal durable.
//!
//! [`SimDisk::crash`] models a power loss: each file keeps its durable bytes plus a seeded
//! choice of unsynced sectors (some written, some lost, some zero past the durable end, so a
//! write can be torn and reordered, while a rewritten sector is atomically old or new), each undurable directory change survives or not by a seeded coin, and
//! every handle opened before the crash is dead. [`SimDisk::power_off_after`] makes the
//! crash strike in the middle of a later operation, leaving a prefix of an in-progress write.
//! Faults: EIO on the next write or sync; ENOSPC past a byte budget (a write keeps what
//! fits, and creating a file or directory fails once nothing fits; space comes back when
//! files are removed and no handle holds them open, as on Linux); EROFS for a filesystem
//! turned read-only (as ext4 does after an error with `errors=remount-ro`), after which
//! [`SimDisk::crash_dropping_unsynced`] models the reboot: the kernel could write nothing
//! back, so only synced bytes and directory entries survive. The model never corrupts
//! bytes that were synced: recovery is not required to survive media corruption of
//! acknowledged data, and a test failure must be a real bug.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::storage::disk::{Disk, DiskError, DiskFile, OpenMode};

/// The unit in which unsynced data survives or is lost at a crash.
pub const SECTOR_BYTES: usize = 512;

/// An in-memory disk with seeded crash and fault injection.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<SimState>>,
    /// True while every `sync_data` waits before it starts ([`SimDisk::hold_syncs`]).
    syncs_held: Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SimDisk")
    }
}

/// A file handle on a [`SimDisk`]; dead after a crash.
pub struct SimFile {
    disk: SimDisk,
    inode: u64,
    generation: u64,
    writable: bool,
    path: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Directory,
    File(u64),
}

#[derive(Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Handles of the current generation open on it: a removed file's bytes stay in use
    /// until the last one closes, as on Linux.
    handles: u64,
}

#[derive(Default)]
struct Faults {
    fail_next_write: Option<i32>,
    /// The next write to a file whose name ends with the text fails with the errno.
    fail_next_write_to: Option<(String, i32)>,
    fail_next_sync: Option<i32>,
    space_bytes_max: Option<u64>,
    read_only: bool,
    power_off_after_operations: Option<u64>,
    /// The operations injected write and sync errors struck (`fdatasync <path>`), oldest
    /// first, for a simulator's trace.
    struck: Vec<String>,
}

struct SimState {
    rng: ChaCha8Rng,
    generation: u64,
    powered_off: bool,
    live: BTreeMap<PathBuf, Entry>,
    durable: BTreeMap<PathBuf, Entry>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    faults: Faults,
    syncs: u64,
    /// Operations refused with ENOSPC or EROFS so far (never reset by a crash).
    storage_refusals: u64,
}

fn os_error(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl SimDisk {
    /// A fresh empty disk whose crash behaviour is drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut live = BTreeMap::new();
        live.insert(PathBuf::from("/"), Entry::Directory);
        Self {
            inner: Arc::new(Mutex::new(SimState {
                rng: ChaCha8Rng::seed_from_u64(seed),
                generation: 0,
                powered_off: false,
                durable: live.clone(),
                live,
                inodes: HashMap::new(),
                next_inode: 0,
                faults: Faults::default(),
                syncs: 0,
                storage_refusals: 0,
            })),
            syncs_held: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Makes every `sync_data` wait, before it starts, until [`SimDisk::release_syncs`]: a
    /// slow disk, for tests of what runs while an fdatasync is in flight (a held sync is
    /// not counted by [`SimDisk::sync_count`] until it runs).
    pub fn hold_syncs(&self) {
        self.syncs_held.send_replace(true);
    }

    /// Lets held and later syncs run.
    pub fn release_syncs(&self) {
        self.syncs_held.send_replace(false);
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding this lock is already a failing test; keep going so the
        // panic message, not a poison error, is what the test reports.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next write fails with `errno` (e.g. `libc::EIO`) without writing anything.
    pub fn fail_next_write(&self, errno: i32) {
        self.state().faults.fail_next_write = Some(errno);
    }

    /// The next write to a file whose name ends with `suffix` (e.g. `.index`) fails with
    /// `errno` without writing anything: a fault placed at one step of a multi-file change.
    pub fn fail_next_write_to(&self, suffix: &str, errno: i32) {
        self.state().faults.fail_next_write_to = Some((suffix.to_string(), errno));
    }

    /// The next `sync_data` fails with `errno`; as on Linux, its dirty data stays unsynced.
    pub fn fail_next_sync(&self, errno: i32) {
        self.state().faults.fail_next_sync = Some(errno);
    }

    /// Writes that would grow the total of live file bytes past `bytes` fail with ENOSPC
    /// after writing what fits; `None` lifts the limit.
    pub fn set_space_bytes_max(&self, bytes: Option<u64>) {
        self.state().faults.space_bytes_max = bytes;
    }

    /// Every mutating operation, and opening a file for writing, fails with EROFS while set.
    pub fn set_read_only(&self, read_only: bool) {
        self.state().faults.read_only = read_only;
    }

    /// Whether the filesystem is read-only now.
    pub fn is_read_only(&self) -> bool {
        self.state().faults.read_only
    }

    /// The byte budget set by [`SimDisk::set_space_bytes_max`], if any.
    pub fn space_bytes_max(&self) -> Option<u64> {
        self.state().faults.space_bytes_max
    }

    /// Operations refused with ENOSPC or EROFS since the disk was made: a simulator moves
    /// the node's incarnation on when it grows (a refused write may fence a partition,
    /// whose reopen cuts what was not synced).
    pub fn storage_refusals(&self) -> u64 {
        self.state().storage_refusals
    }

    /// Power fails during the `operations`-th mutating operation from now: a write then
    /// leaves a seeded prefix, and this and every later operation fails with EIO until
    /// [`SimDisk::crash`].
    pub fn power_off_after(&self, operations: u64) {
        self.state().faults.power_off_after_operations = Some(operations);
    }

    /// Whether an injected write or sync error has not struck yet.
    pub fn fault_pending(&self) -> bool {
        let state = self.state();
        state.faults.fail_next_write.is_some()
            || state.faults.fail_next_write_to.is_some()
            || state.faults.fail_next_sync.is_some()
    }

    /// The operations injected write or sync errors struck since the last call
    /// (`fdatasync <path>`, `write <path>`).
    pub fn take_struck_faults(&self) -> Vec<String> {
        std::mem::take(&mut self.state().faults.struck)
    }

    /// Whether a scheduled power-off has happened.
    pub fn is_powered_off(&self) -> bool {
        self.state().powered_off
    }

    /// Successful `sync_data` calls so far (to observe group commit).
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Live bytes of every file that has a name or an open handle (what a filesystem
    /// counts as used).
    pub fn used_bytes(&self) -> u64 {
        self.state().used_bytes()
    }

    /// Files removed from the namespace that a handle still holds open (Linux's
    /// "(deleted)" descriptors): their bytes stay in use until the last handle closes.
    pub fn removed_files_open(&self) -> usize {
        self.state().removed_files_open()
    }

    /// Simulates power loss and reboot: see the module documentation for what survives.
    pub fn crash(&self) {
        self.state().crash(false);
    }

    /// Simulates a reboot after the filesystem turned read-only: nothing written since the
    /// last sync reached the disk (no torn or reordered sectors, no undurable directory
    /// change), which is the strictest test that nothing acknowledged was left unsynced.
    /// The disk is writable again afterwards, as after `fsck` and a remount.
    pub fn crash_dropping_unsynced(&self) {
        self.state().crash(true);
    }

    /// Flips one bit of the durable and live bytes of `path` (for tests of corruption that
    /// recovery must detect, not survive).
    pub fn corrupt_bit(&self, path: &Path, byte: usize, bit: u8) -> bool {
        let mut state = self.state();
        let Some(Entry::File(inode)) = state.live.get(path).copied() else {
            return false;
        };
        let Some(inode) = state.inodes.get_mut(&inode) else {
            return false;
        };
        let mut flipped = false;
        for bytes in [&mut inode.live, &mut inode.durable] {
            if let Some(value) = bytes.get_mut(byte) {
                *value ^= 1 << (bit % 8);
                flipped = true;
            }
        }
        flipped
    }

    /// Appends `data` to a file's live and durable bytes, as if something else wrote it.
    pub fn append_durable(&self, path: &Path, data: &[u8]) -> bool {
        let mut state = self.state();
        let Some(Entry::File(inode)) = state.live.get(path).copied() else {
            return false;
        };
        let Some(inode) = state.inodes.get_mut(&inode) else {
            return false;
        };
        inode.live.extend_from_slice(data);
        inode.durable = inode.live.clone();
        true
    }

    /// The live bytes of a file, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        match state.live.get(path) {
            Some(Entry::File(inode)) => state.inodes.get(inode).map(|inode| inode.live.clone()),
            _ => None,
        }
    }
}

impl SimState {
    fn removed_files_open(&self) -> usize {
        let named: std::collections::HashSet<u64> = self
            .live
            .values()
            .filter_map(|entry| match entry {
                Entry::File(id) => Some(*id),
                Entry::Directory => None,
            })
            .collect();
        self.inodes
            .iter()
            .filter(|(id, inode)| inode.handles > 0 && !named.contains(id))
            .count()
    }

    fn used_bytes(&self) -> u64 {
        let named: std::collections::HashSet<u64> = self
            .live
            .values()
            .filter_map(|entry| match entry {
                Entry::File(id) => Some(*id),
                Entry::Directory => None,
            })
            .collect();
        self.inodes
            .iter()
            .filter(|(id, inode)| inode.handles > 0 || named.contains(id))
            .map(|(_, inode)| inode.live.len() as u64)
            .sum()
    }

    /// Refuses an allocation (a new file or directory) with ENOSPC when no byte is left.
    fn check_allocation(&mut self) -> io::Result<()> {
        if let Some(space) = self.faults.space_bytes_max
            && self.used_bytes() >= space
        {
            self.storage_refusals += 1;
            return Err(os_error(libc::ENOSPC));
        }
        Ok(())
    }

    /// Counts a mutating operation against the power-off schedule and checks faults shared
    /// by all of them. Returns whether this operation is the one the power fails during.
    fn begin_mutation(&mut self) -> io::Result<bool> {
        if self.powered_off {
            return Err(os_error(libc::EIO));
        }
        if self.faults.read_only {
            self.storage_refusals += 1;
            return Err(os_error(libc::EROFS));
        }
        if let Some(remaining) = self.faults.power_off_after_operations.as_mut() {
            if *remaining == 0 {
                self.faults.power_off_after_operations = None;
                self.powered_off = true;
                return Ok(true);
            }
            *remaining -= 1;
        }
        Ok(false)
    }

    fn check_handle(&self, generation: u64) -> io::Result<()> {
        if self.powered_off || generation != self.generation {
            return Err(os_error(libc::EIO));
        }
        Ok(())
    }

    fn crash(&mut self, drop_unsynced: bool) {
        // Directory entries: an undurable change survives or not by a coin.
        let mut paths: Vec<PathBuf> = self.live.keys().cloned().collect();
        paths.extend(self.durable.keys().cloned());
        paths.sort();
        paths.dedup();
        let mut namespace = BTreeMap::new();
        for path in paths {
            let live = self.live.get(&path).copied();
            let durable = self.durable.get(&path).copied();
            let survivor = if live == durable || drop_unsynced || self.rng.random_bool(0.5) {
                durable
            } else {
                live
            };
            if let Some(entry) = survivor {
                namespace.insert(path, entry);
            }
        }
        // An entry whose directory did not survive is unreachable.
        let reachable: BTreeMap<PathBuf, Entry> = namespace
            .iter()
            .filter(|(path, _)| {
                path.ancestors()
                    .skip(1)
                    .all(|ancestor| namespace.get(ancestor) == Some(&Entry::Directory))
            })
            .map(|(path, entry)| (path.clone(), *entry))
            .collect();

        // File contents: durable bytes plus a seeded choice of unsynced sectors. Files
        // without a name are gone (every handle died with the power).
        let named: std::collections::HashSet<u64> = reachable
            .values()
            .filter_map(|entry| match entry {
                Entry::File(id) => Some(*id),
                Entry::Directory => None,
            })
            .collect();
        let inode_ids: Vec<u64> = self.inodes.keys().copied().collect();
        let mut sorted_ids = inode_ids;
        sorted_ids.sort_unstable();
        for id in sorted_ids {
            let Some(inode) = self.inodes.remove(&id) else {
                continue;
            };
            if !named.contains(&id) {
                continue;
            }
            let survived = if drop_unsynced {
                inode.durable
            } else {
                torn_contents(&mut self.rng, &inode.live, &inode.durable)
            };
            self.inodes.insert(
                id,
                Inode {
                    live: survived.clone(),
                    durable: survived,
                    handles: 0,
                },
            );
        }
        self.live = reachable.clone();
        self.durable = reachable;
        self.generation += 1;
        self.powered_off = false;
        self.faults = Faults::default();
    }
}

/// What a file holds after power loss: its durable bytes, with every sector that differs in
/// the live copy independently kept as written, kept as before, or zeroed; its length is the
/// durable length or, if the live copy is longer, anywhere up to it on a sector boundary.
fn torn_contents(rng: &mut ChaCha8Rng, live: &[u8], durable: &[u8]) -> Vec<u8> {
    if live == durable {
        return durable.to_vec();
    }
    let length = if live.len() > durable.len() {
        let extra_sectors = (live.len() - durable.len()).div_ceil(SECTOR_BYTES);
        let kept = rng.random_range(0..=extra_sectors);
        (durable.len() + kept * SECTOR_BYTES).min(live.len())
    } else if rng.random_bool(0.5) {
        durable.len()
    } else {
        live.len()
    };
    let mut result = vec![0u8; length];
    let mut start = 0;
    while start < length {
        let end = (start + SECTOR_BYTES).min(length);
        let live_sector = live.get(start..end.min(live.len())).unwrap_or(&[]);
        let durable_sector = durable.get(start..end.min(durable.len())).unwrap_or(&[]);
        // A sector write is atomic on the devices we model: a sector that held durable
        // bytes ends up old or new, never zero. Sectors wholly past the durable end may
        // also read as zeros (allocated but never written).
        let source = if live_sector == durable_sector {
            durable_sector
        } else if start < durable.len() {
            if rng.random_bool(0.5) {
                live_sector
            } else {
                durable_sector
            }
        } else {
            match rng.random_range(0..3u8) {
                0 => live_sector,
                1 => durable_sector,
                _ => &[],
            }
        };
        if let Some(target) = result.get_mut(start..start + source.len()) {
            target.copy_from_slice(source);
        }
        start = end;
    }
    result
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.disk.state();
        // A handle of an earlier generation died with the power; its count was reset then.
        if state.generation == self.generation
            && let Some(inode) = state.inodes.get_mut(&self.inode)
        {
            inode.handles = inode.handles.saturating_sub(1);
        }
    }
}

impl SimFile {
    fn error(&self, operation: &'static str, source: io::Error) -> DiskError {
        DiskError::new(operation, &self.path, source)
    }
}

impl DiskFile for SimFile {
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        tokio::task::yield_now().await;
        let state = self.disk.state();
        state
            .check_handle(self.generation)
            .map_err(|error| self.error("read", error))?;
        let inode = state
            .inodes
            .get(&self.inode)
            .ok_or_else(|| self.error("read", os_error(libc::EBADF)))?;
        let start = usize::try_from(position)
            .unwrap_or(usize::MAX)
            .min(inode.live.len());
        let end = start.saturating_add(len).min(inode.live.len());
        Ok(inode.live.get(start..end).unwrap_or(&[]).to_vec())
    }

    async fn write_at(&self, position: u64, data: Bytes) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut guard = self.disk.state();
        let state = &mut *guard;
        state
            .check_handle(self.generation)
            .map_err(|error| self.error("write", error))?;
        if !self.writable {
            return Err(self.error("write", os_error(libc::EBADF)));
        }
        let power_fails_now = state
            .begin_mutation()
            .map_err(|error| self.error("write", error))?;
        if let Some(errno) = state.faults.fail_next_write.take() {
            state
                .faults
                .struck
                .push(format!("write {}", self.path.display()));
            return Err(self.error("write", os_error(errno)));
        }
        let name = self.path.to_string_lossy();
        if let Some((suffix, errno)) = &state.faults.fail_next_write_to
            && name.ends_with(suffix.as_str())
        {
            let errno = *errno;
            state.faults.fail_next_write_to = None;
            return Err(self.error("write", os_error(errno)));
        }
        let position = usize::try_from(position).map_err(|_| {
            self.error(
                "write",
                io::Error::new(io::ErrorKind::InvalidInput, "position"),
            )
        })?;
        let mut length = data.len();
        let mut no_space = false;
        if power_fails_now {
            // The write was in progress when the power failed: a sector-aligned prefix of
            // it reached the page cache (and may or may not reach the disk at the crash).
            let sectors = length.div_ceil(SECTOR_BYTES);
            length = (state.rng.random_range(0..=sectors) * SECTOR_BYTES).min(length);
        }
        if let Some(space) = state.faults.space_bytes_max {
            let used = state.used_bytes();
            let current = state
                .inodes
                .get(&self.inode)
                .map_or(0, |inode| inode.live.len());
            let growth = (position + length).saturating_sub(current) as u64;
            if used + growth > space {
                let room = usize::try_from(space.saturating_sub(used)).unwrap_or(usize::MAX);
                length = (current + room).saturating_sub(position).min(length);
                no_space = true;
                state.storage_refusals += 1;
            }
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| self.error("write", os_error(libc::EBADF)))?;
        if let Some(written) = data.get(..length)
            && !written.is_empty()
        {
            if inode.live.len() < position + length {
                inode.live.resize(position + length, 0);
            }
            if let Some(target) = inode.live.get_mut(position..position + length) {
                target.copy_from_slice(written);
            }
        }
        if power_fails_now {
            return Err(self.error("write", os_error(libc::EIO)));
        }
        if no_space {
            return Err(self.error("write", os_error(libc::ENOSPC)));
        }
        Ok(())
    }

    async fn sync_data(&self) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        // The sender lives in the disk this handle holds, so the wait ends only on release.
        let _ = self
            .disk
            .syncs_held
            .subscribe()
            .wait_for(|held| !held)
            .await;
        let mut state = self.disk.state();
        state
            .check_handle(self.generation)
            .map_err(|error| self.error("fdatasync", error))?;
        if state
            .begin_mutation()
            .map_err(|error| self.error("fdatasync", error))?
        {
            return Err(self.error("fdatasync", os_error(libc::EIO)));
        }
        if let Some(errno) = state.faults.fail_next_sync.take() {
            state
                .faults
                .struck
                .push(format!("fdatasync {}", self.path.display()));
            return Err(self.error("fdatasync", os_error(errno)));
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| self.error("fdatasync", os_error(libc::EBADF)))?;
        inode.durable.clone_from(&inode.live);
        state.syncs += 1;
        Ok(())
    }

    async fn set_len(&self, len: u64) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.disk.state();
        state
            .check_handle(self.generation)
            .map_err(|error| self.error("truncate", error))?;
        if state
            .begin_mutation()
            .map_err(|error| self.error("truncate", error))?
        {
            return Err(self.error("truncate", os_error(libc::EIO)));
        }
        let len = usize::try_from(len).map_err(|_| {
            self.error(
                "truncate",
                io::Error::new(io::ErrorKind::InvalidInput, "length"),
            )
        })?;
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| self.error("truncate", os_error(libc::EBADF)))?;
        inode.live.resize(len, 0);
        Ok(())
    }

    async fn len(&self) -> Result<u64, DiskError> {
        let state = self.disk.state();
        state
            .check_handle(self.generation)
            .map_err(|error| self.error("stat", error))?;
        let inode = state
            .inodes
            .get(&self.inode)
            .ok_or_else(|| self.error("stat", os_error(libc::EBADF)))?;
        Ok(inode.live.len() as u64)
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

impl Disk for SimDisk {
    type File = SimFile;

    fn backend_name(&self) -> &'static str {
        "sim"
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<SimFile, DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.state();
        if state.powered_off {
            return Err(DiskError::new("open", path, os_error(libc::EIO)));
        }
        let existing = state.live.get(path).copied();
        let inode = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(DiskError::new("open", path, os_error(libc::EEXIST)));
            }
            (OpenMode::CreateNew, None) => {
                if state.live.get(&parent_of(path)) != Some(&Entry::Directory) {
                    return Err(DiskError::new("open", path, os_error(libc::ENOENT)));
                }
                if state
                    .begin_mutation()
                    .map_err(|error| DiskError::new("open", path, error))?
                {
                    return Err(DiskError::new("open", path, os_error(libc::EIO)));
                }
                state
                    .check_allocation()
                    .map_err(|error| DiskError::new("open", path, error))?;
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.live.insert(path.to_path_buf(), Entry::File(id));
                id
            }
            (_, Some(Entry::File(id))) => id,
            (_, Some(Entry::Directory)) => {
                return Err(DiskError::new("open", path, os_error(libc::EISDIR)));
            }
            (_, None) => return Err(DiskError::new("open", path, os_error(libc::ENOENT))),
        };
        // As Linux does: opening an existing file for writing on a read-only filesystem is
        // refused at open, not at the first write.
        if mode == OpenMode::ReadWrite && state.faults.read_only {
            state.storage_refusals += 1;
            return Err(DiskError::new("open", path, os_error(libc::EROFS)));
        }
        if let Some(inode) = state.inodes.get_mut(&inode) {
            inode.handles += 1;
        }
        Ok(SimFile {
            disk: self.clone(),
            inode,
            generation: state.generation,
            writable: mode != OpenMode::Read,
            path: path.to_path_buf(),
        })
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.state();
        let missing: Vec<PathBuf> = path
            .ancestors()
            .filter(|ancestor| !state.live.contains_key(*ancestor))
            .map(Path::to_path_buf)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if state
            .begin_mutation()
            .map_err(|error| DiskError::new("create directory", path, error))?
        {
            return Err(DiskError::new(
                "create directory",
                path,
                os_error(libc::EIO),
            ));
        }
        state
            .check_allocation()
            .map_err(|error| DiskError::new("create directory", path, error))?;
        for directory in missing {
            state.live.insert(directory, Entry::Directory);
        }
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        tokio::task::yield_now().await;
        let state = self.state();
        if state.live.get(path) != Some(&Entry::Directory) {
            return Err(DiskError::new(
                "list directory",
                path,
                os_error(libc::ENOENT),
            ));
        }
        Ok(state
            .live
            .keys()
            .filter(|child| child.parent() == Some(path))
            .filter_map(|child| child.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.state();
        if state
            .begin_mutation()
            .map_err(|error| DiskError::new("rename", from, error))?
        {
            return Err(DiskError::new("rename", from, os_error(libc::EIO)));
        }
        let entry = state
            .live
            .remove(from)
            .ok_or_else(|| DiskError::new("rename", from, os_error(libc::ENOENT)))?;
        state.live.insert(to.to_path_buf(), entry);
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.state();
        if state
            .begin_mutation()
            .map_err(|error| DiskError::new("remove", path, error))?
        {
            return Err(DiskError::new("remove", path, os_error(libc::EIO)));
        }
        match state.live.get(path) {
            Some(Entry::File(_)) => {
                state.live.remove(path);
                Ok(())
            }
            Some(Entry::Directory) => Err(DiskError::new("remove", path, os_error(libc::EISDIR))),
            None => Err(DiskError::new("remove", path, os_error(libc::ENOENT))),
        }
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut state = self.state();
        if state
            .begin_mutation()
            .map_err(|error| DiskError::new("remove directory", path, error))?
        {
            return Err(DiskError::new(
                "remove directory",
                path,
                os_error(libc::EIO),
            ));
        }
        if state.live.get(path) != Some(&Entry::Directory) {
            return Err(DiskError::new(
                "remove directory",
                path,
                os_error(libc::ENOENT),
            ));
        }
        if state.live.keys().any(|child| child.parent() == Some(path)) {
            return Err(DiskError::new(
                "remove directory",
                path,
                os_error(libc::ENOTEMPTY),
            ));
        }
        state.live.remove(path);
        Ok(())
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        tokio::task::yield_now().await;
        let mut guard = self.state();
        let state = &mut *guard;
        if state
            .begin_mutation()
            .map_err(|error| DiskError::new("fsync directory", path, error))?
        {
            return Err(DiskError::new("fsync directory", path, os_error(libc::EIO)));
        }
        if state.live.get(path) != Some(&Entry::Directory) {
            return Err(DiskError::new(
                "fsync directory",
                path,
                os_error(libc::ENOENT),
            ));
        }
        let is_child = |child: &Path| child.parent() == Some(path);
        state.durable.retain(|child, _| !is_child(child));
        for (child, entry) in &state.live {
            if is_child(child) {
                state.durable.insert(child.clone(), *entry);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    // Goal: a full disk refuses writes past its budget (keeping what fits) and new files,
    // and gives space back once a removed file's last handle closes, as Linux does.
    #[test]
    fn a_full_disk_refuses_growth_and_new_files_until_space_is_freed() {
        run(async {
            let disk = SimDisk::new(1);
            disk.create_dir_all(Path::new("/d")).await.unwrap();
            let old = disk
                .open(Path::new("/d/old"), OpenMode::CreateNew)
                .await
                .unwrap();
            old.write_at(0, Bytes::from(vec![1u8; 1000])).await.unwrap();
            disk.set_space_bytes_max(Some(1500));
            let new = disk
                .open(Path::new("/d/new"), OpenMode::CreateNew)
                .await
                .unwrap();
            let error = new
                .write_at(0, Bytes::from(vec![2u8; 800]))
                .await
                .unwrap_err();
            assert!(error.is_out_of_space(), "{error}");
            assert_eq!(new.len().await.unwrap(), 500, "what fits is written");
            let error = disk
                .open(Path::new("/d/third"), OpenMode::CreateNew)
                .await
                .err()
                .expect("no file can be created on a full disk");
            assert!(error.is_out_of_space(), "{error}");
            assert_eq!(disk.storage_refusals(), 2);

            // Removed but still open: the bytes stay in use.
            disk.remove_file(Path::new("/d/old")).await.unwrap();
            assert_eq!(disk.used_bytes(), 1500);
            drop(old);
            assert_eq!(disk.used_bytes(), 500);
            new.write_at(500, Bytes::from(vec![2u8; 300]))
                .await
                .unwrap();
            assert!(
                disk.open(Path::new("/d/third"), OpenMode::CreateNew)
                    .await
                    .is_ok()
            );
        });
    }

    // Goal: a read-only filesystem refuses every change and serves reads; the reboot after
    // it keeps exactly the synced bytes and the synced directory entries.
    #[test]
    fn a_read_only_filesystem_refuses_changes_and_its_reboot_keeps_only_synced_bytes() {
        run(async {
            let disk = SimDisk::new(2);
            disk.create_dir_all(Path::new("/d")).await.unwrap();
            disk.sync_dir(Path::new("/")).await.unwrap();
            let file = disk
                .open(Path::new("/d/log"), OpenMode::CreateNew)
                .await
                .unwrap();
            disk.sync_dir(Path::new("/d")).await.unwrap();
            file.write_at(0, Bytes::from(vec![1u8; 2000]))
                .await
                .unwrap();
            file.sync_data().await.unwrap();
            file.write_at(2000, Bytes::from(vec![2u8; 3000]))
                .await
                .unwrap();
            let unsynced = disk
                .open(Path::new("/d/unsynced"), OpenMode::CreateNew)
                .await
                .unwrap();
            unsynced
                .write_at(0, Bytes::from_static(b"x"))
                .await
                .unwrap();
            unsynced.sync_data().await.unwrap();

            disk.set_read_only(true);
            for error in [
                file.write_at(5000, Bytes::from_static(b"y"))
                    .await
                    .unwrap_err(),
                file.sync_data().await.unwrap_err(),
                file.set_len(0).await.unwrap_err(),
                disk.open(Path::new("/d/log"), OpenMode::ReadWrite)
                    .await
                    .err()
                    .expect("no writable open"),
            ] {
                assert!(error.is_read_only(), "{error}");
            }
            assert_eq!(file.read_at(0, 5000).await.unwrap().len(), 5000);

            disk.crash_dropping_unsynced();
            assert!(!disk.is_read_only());
            assert_eq!(
                disk.contents(Path::new("/d/log")),
                Some(vec![1u8; 2000]),
                "exactly the synced bytes"
            );
            assert_eq!(
                disk.contents(Path::new("/d/unsynced")),
                None,
                "its directory entry was never synced"
            );
        });
    }
}
