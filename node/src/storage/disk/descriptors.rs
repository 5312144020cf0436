//! The open-file budget: the process's `RLIMIT_NOFILE` against what partitions hold.
//!
//! With the common default soft limit of 1024 and a few thousand partitions, opens failed
//! with EMFILE: partitions went offline and the node exited (issue 11, data item 8). Now:
//! - at start the soft limit is raised to the hard limit (the kernel allows that without
//!   privilege) and logged;
//! - each partition keeps [`DESCRIPTORS_PER_PARTITION`] files open for its whole life (the
//!   active segment and the checkpoint); sealed segments are opened when read and kept in
//!   one process-wide cache of at most [`SEALED_SEGMENT_FILES_OPEN_MAX_DEFAULT`] files, least
//!   recently used closed first (`storage::log`);
//! - a partition count the limit cannot hold is refused with an error naming the numbers
//!   ([`check_partition_count`]), at start and when topics are created or grown, instead of
//!   failing opens one by one later.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::{Disk, DiskError, OpenMode};

/// Descriptors a partition holds while online: its active segment and its checkpoint.
pub const DESCRIPTORS_PER_PARTITION: u64 = 2;

/// Descriptors kept free for everything that is not a partition: stdio, the lock file, the
/// UDP socket, the io_uring ring, tokio's epoll and wakers, files opened briefly (metadata,
/// modules, index files at a roll, compaction's rewrite, the recovery scan of a segment).
pub const DESCRIPTORS_RESERVED: u64 = 256;

/// Default of the process-wide cap on sealed segment files kept open for reads
/// (`[log] sealed_segment_files_open_max`).
pub const SEALED_SEGMENT_FILES_OPEN_MAX_DEFAULT: u64 = 256;

/// The soft `RLIMIT_NOFILE` in force, once known (`u64::MAX` until [`set_open_files_max`]:
/// tests and embedders that never set it are not limited by this module).
static OPEN_FILES_MAX: AtomicU64 = AtomicU64::new(u64::MAX);

/// The sealed-segment cache size in force (see [`set_sealed_segment_files_open_max`]).
static SEALED_SEGMENT_FILES_OPEN_MAX: AtomicU64 =
    AtomicU64::new(SEALED_SEGMENT_FILES_OPEN_MAX_DEFAULT);

/// The open-file limit after [`raise_open_file_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit (the ceiling for the soft one).
    pub hard: u64,
    /// Soft limit before raising.
    pub soft_before: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns both.
pub fn raise_open_file_limit() -> std::io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit(2) reads one `rlimit` from a struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            // Some sandboxes refuse even a raise within the hard limit: run with what we have.
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "cannot raise the open-file limit"
            );
        }
    }
    Ok(OpenFileLimit {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
        soft_before,
    })
}

/// Records the open-file limit partition counts are checked against.
pub fn set_open_files_max(open_files_max: u64) {
    OPEN_FILES_MAX.store(open_files_max, Ordering::Relaxed);
}

/// Sets the process-wide cap on sealed segment files kept open (at least 1).
pub fn set_sealed_segment_files_open_max(files: u64) {
    SEALED_SEGMENT_FILES_OPEN_MAX.store(files.max(1), Ordering::Relaxed);
}

/// The process-wide cap on sealed segment files kept open.
pub fn sealed_segment_files_open_max() -> u64 {
    SEALED_SEGMENT_FILES_OPEN_MAX.load(Ordering::Relaxed)
}

/// The most partitions `open_files_max` descriptors can hold beside the reserve and the
/// sealed-segment cache.
pub fn partitions_max(open_files_max: u64, sealed_segment_files_open_max: u64) -> u64 {
    open_files_max
        .saturating_sub(DESCRIPTORS_RESERVED)
        .saturating_sub(sealed_segment_files_open_max)
        / DESCRIPTORS_PER_PARTITION
}

/// A partition count the open-file limit cannot hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{partitions} partitions need more open files than the limit allows: at most {partitions_max} fit in RLIMIT_NOFILE {open_files_max} ({DESCRIPTORS_PER_PARTITION} per partition, {DESCRIPTORS_RESERVED} reserved, {sealed_segment_files} for sealed segments); raise the hard limit (ulimit -Hn, LimitNOFILE= in a systemd unit) or use fewer partitions"
)]
pub struct DescriptorBudgetError {
    /// Partitions asked for in total (existing plus new).
    pub partitions: u64,
    /// The most that fit.
    pub partitions_max: u64,
    /// The soft `RLIMIT_NOFILE`.
    pub open_files_max: u64,
    /// The sealed-segment cache size.
    pub sealed_segment_files: u64,
}

/// Checks that `partitions` in total (every topic's, after the change being made) fit the
/// open-file limit in force. Call it before creating a topic or adding partitions.
pub fn check_partition_count(partitions: u64) -> Result<(), DescriptorBudgetError> {
    check_partition_count_against(
        partitions,
        OPEN_FILES_MAX.load(Ordering::Relaxed),
        sealed_segment_files_open_max(),
    )
}

/// [`check_partition_count`] against explicit limits (pure, for tests).
pub fn check_partition_count_against(
    partitions: u64,
    open_files_max: u64,
    sealed_segment_files: u64,
) -> Result<(), DescriptorBudgetError> {
    let partitions_max = partitions_max(open_files_max, sealed_segment_files);
    if partitions > partitions_max {
        return Err(DescriptorBudgetError {
            partitions,
            partitions_max,
            open_files_max,
            sealed_segment_files,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The sealed-segment file cache.

/// One cached sealed segment file, type-erased so that one process-wide cache serves logs
/// over any `Disk` backend (ids are unique per process, so an id always maps to the type it
/// was inserted with).
struct SealedEntry {
    file: Arc<dyn Any + Send + Sync>,
    last_used: u64,
}

#[derive(Default)]
struct SealedFiles {
    entries: HashMap<u64, SealedEntry>,
    /// Monotonic use counter for least-recently-used eviction.
    tick: u64,
}

impl SealedFiles {
    /// The cached file `id` (marked used), if cached with type `F`.
    fn get<F: Send + Sync + 'static>(&mut self, id: u64) -> Option<Arc<F>> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&id)?;
        let file = Arc::clone(&entry.file).downcast::<F>().ok()?;
        entry.last_used = tick;
        Some(file)
    }

    /// Caches `file` as `id`, first closing the least recently used entries so that at
    /// most `cap` stay cached.
    fn insert<F: Send + Sync + 'static>(&mut self, id: u64, file: &Arc<F>, cap: usize) {
        self.tick += 1;
        let tick = self.tick;
        while self.entries.len() >= cap.max(1) {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let erased: Arc<dyn Any + Send + Sync> = file.clone();
        self.entries.insert(
            id,
            SealedEntry {
                file: erased,
                last_used: tick,
            },
        );
    }
}

static SEALED_FILES: LazyLock<Mutex<SealedFiles>> = LazyLock::new(Mutex::default);

/// Source of [`new_sealed_file_id`].
static NEXT_SEALED_FILE_ID: AtomicU64 = AtomicU64::new(0);

fn sealed_files() -> std::sync::MutexGuard<'static, SealedFiles> {
    // Held only for map operations that cannot panic on input.
    SEALED_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh id for a sealed segment file (a new segment, or one replaced by compaction), so
/// a cached descriptor of an older file under the same name is never served.
pub fn new_sealed_file_id() -> u64 {
    NEXT_SEALED_FILE_ID.fetch_add(1, Ordering::Relaxed)
}

/// The sealed segment file `id` at `path`, opened read-only: from the cache, or opened and
/// cached, closing the least recently used cached file beyond the cap. A reader holding a
/// file keeps it usable after eviction; it closes when the last holder drops it.
pub async fn sealed_file<D: Disk>(
    disk: &D,
    id: u64,
    path: &Path,
) -> Result<Arc<D::File>, DiskError> {
    if let Some(file) = sealed_files().get::<D::File>(id) {
        return Ok(file);
    }
    let file = Arc::new(disk.open(path, OpenMode::Read).await?);
    let cap = usize::try_from(sealed_segment_files_open_max()).unwrap_or(usize::MAX);
    sealed_files().insert(id, &file, cap);
    Ok(file)
}

/// Closes the cached file `id` (its segment was deleted or replaced), so its disk space is
/// freed now rather than at eviction.
pub fn forget_sealed_file(id: u64) {
    sealed_files().entries.remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_the_reserve_the_cache_and_two_files_per_partition() {
        // Goal: 1024 descriptors with a 256-file cache and a 256 reserve hold 256 partitions
        // and refuse the 257th, with a message naming the numbers and the way out.
        assert_eq!(partitions_max(1024, 256), 256);
        check_partition_count_against(256, 1024, 256).unwrap();
        let error = check_partition_count_against(257, 1024, 256).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("257 partitions"), "{text}");
        assert!(text.contains("at most 256"), "{text}");
        assert!(text.contains("RLIMIT_NOFILE 1024"), "{text}");
        // A limit below the reserve holds none, without underflow.
        assert_eq!(partitions_max(100, 256), 0);
        // An unknown limit (never set) refuses nothing.
        assert_eq!(partitions_max(u64::MAX, 256), (u64::MAX - 512) / 2);
    }

    #[test]
    fn the_sealed_file_cache_closes_the_least_recently_used_beyond_its_cap() {
        // Goal: at most `cap` files stay cached; the one evicted is the least recently
        // used (a lookup counts as a use); a holder of an evicted file keeps it usable.
        let mut cache = SealedFiles::default();
        let files: Vec<Arc<String>> = (0..3).map(|n| Arc::new(format!("file-{n}"))).collect();
        cache.insert(0, &files[0], 2);
        cache.insert(1, &files[1], 2);
        assert_eq!(
            cache.get::<String>(0).as_deref().map(String::as_str),
            Some("file-0")
        );
        cache.insert(2, &files[2], 2);
        assert_eq!(cache.entries.len(), 2);
        assert!(
            cache.get::<String>(1).is_none(),
            "1 was the least recently used"
        );
        assert!(cache.get::<String>(0).is_some());
        assert!(cache.get::<String>(2).is_some());
        // A lookup with the wrong type is a miss, never a panic.
        assert!(cache.get::<u64>(2).is_none());
        // The evicted file is still whole for whoever holds it; only the cache let go.
        assert_eq!(Arc::strong_count(&files[1]), 1);
        assert_eq!(*files[1], "file-1");
    }

    #[test]
    fn raising_the_limit_reaches_the_hard_limit() {
        // Goal: after raising, the soft limit equals the hard limit (or, where a sandbox
        // refuses, stays where it was), and never drops.
        let limit = raise_open_file_limit().unwrap();
        assert!(limit.soft >= limit.soft_before);
        assert!(limit.soft == limit.hard || limit.soft == limit.soft_before);
    }
}
