//! The `Disk` seam: the only way storage code touches files.
//!
//! Owns: positional reads and writes, `fdatasync`, truncation, and the directory operations
//! a segmented log needs (create, list, rename, remove, and fsync of a directory so that new
//! names are durable). Does not own: what the bytes mean (segments, indexes, checkpoints).
//!
//! Three implementations sit behind it: [`UringDisk`] (io_uring: the task that wants the IO
//! submits it and enters the kernel itself; one reaper task on the runtime answers the
//! completions; no thread of its own), [`StdDisk`] (positional `std::fs` calls on tokio's
//! blocking pool), and, for tests,
//! `sim::SimDisk` (live vs durable bytes, torn writes, injected EIO and ENOSPC). Beside it:
//! [`lock`] (one node per data directory), [`durable`] (whole-file writes outside the logs)
//! and [`descriptors`] (the open-file budget).
//! [`SystemDisk::detect`] picks io_uring when the kernel lets us set up a ring and complete a
//! no-op on it, and std otherwise, and says which one it chose.
//!
//! Every error names the operation and the file, so that a full disk or a read-only mount
//! shows up as one readable line.

pub mod descriptors;
pub mod durable;
pub mod lock;
mod std_fs;
mod uring;
#[cfg(test)]
pub(crate) mod uring_in_tests;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

pub use std_fs::{StdDisk, StdFile};
pub use uring::{UringDisk, UringFile};

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file for reading and writing; fails if the name exists.
    CreateNew,
    /// Open an existing file for reading only.
    Read,
    /// Open an existing file for reading and writing.
    ReadWrite,
}

/// An IO failure, naming what was being done and to which path.
#[derive(Debug, thiserror::Error)]
// The OS error is part of the message and deliberately not a `source`: printed as a chain,
// it would otherwise appear twice.
#[error("{operation} {path}: {cause}")]
pub struct DiskError {
    /// The operation that failed (`write`, `fdatasync`, `open`, ...).
    pub operation: &'static str,
    /// The file or directory it was applied to.
    pub path: PathBuf,
    /// The operating system's error.
    pub cause: io::Error,
}

impl DiskError {
    /// Wraps an OS error with the operation and path it came from.
    pub fn new(operation: &'static str, path: &Path, cause: io::Error) -> Self {
        Self {
            operation,
            path: path.to_path_buf(),
            cause,
        }
    }

    /// The device or quota is full: retrying after space is freed may succeed.
    pub fn is_out_of_space(&self) -> bool {
        matches!(
            self.cause.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        )
    }

    /// The filesystem is read-only (EROFS): nothing was written; reads still work.
    pub fn is_read_only(&self) -> bool {
        self.cause.raw_os_error() == Some(libc::EROFS)
    }

    /// The file named does not exist.
    pub fn is_not_found(&self) -> bool {
        self.cause.kind() == io::ErrorKind::NotFound
    }
}

/// A file opened through a [`Disk`].
///
/// (`len` is an async query of the file size, so clippy's `len_without_is_empty` does not
/// apply: an `is_empty` would be one more syscall nobody needs.)
///
/// Reads and writes are positional, so concurrent readers never race a writer over a shared
/// cursor. Writes are complete or fail: a short write is retried by the backend.
#[allow(clippy::len_without_is_empty)]
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `len` bytes at `position`; fewer only at end of file.
    fn read_at(
        &self,
        position: u64,
        len: usize,
    ) -> impl Future<Output = Result<Vec<u8>, DiskError>> + Send;

    /// Writes all of `data` at `position`.
    fn write_at(
        &self,
        position: u64,
        data: Bytes,
    ) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// `fdatasync`: every completed write is durable when this returns `Ok`.
    fn sync_data(&self) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Truncates or extends the file to `len` bytes (not durable until `sync_data`).
    fn set_len(&self, len: u64) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// The current length of the file in bytes.
    fn len(&self) -> impl Future<Output = Result<u64, DiskError>> + Send;

    /// The path this file was opened at.
    fn path(&self) -> &Path;
}

/// A filesystem as the storage engine sees it.
pub trait Disk: Clone + Send + Sync + 'static {
    /// The open-file type of this backend.
    type File: DiskFile;

    /// A short name for logs: `io_uring`, `std` or `sim`.
    fn backend_name(&self) -> &'static str;

    /// Opens or creates a file.
    fn open(
        &self,
        path: &Path,
        mode: OpenMode,
    ) -> impl Future<Output = Result<Self::File, DiskError>> + Send;

    /// Creates a directory and its parents (names are not durable until [`Disk::sync_dir`]).
    fn create_dir_all(&self, path: &Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// The names of the entries in a directory, sorted.
    fn list_dir(&self, path: &Path) -> impl Future<Output = Result<Vec<String>, DiskError>> + Send;

    /// Renames a file (not durable until the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Removes a file (not durable until the directory is synced).
    fn remove_file(&self, path: &Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Removes an empty directory (not durable until its parent is synced).
    fn remove_dir(&self, path: &Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> impl Future<Output = Result<(), DiskError>> + Send;

    /// Makes `to` a second name of the file `from` (a hard link; not durable until the
    /// directory is synced): `Ok(false)` when this disk or filesystem cannot (another
    /// filesystem, no link support), and the caller copies instead. Snapshots use it for
    /// files that never change in place.
    fn hard_link(
        &self,
        from: &Path,
        to: &Path,
    ) -> impl Future<Output = Result<bool, DiskError>> + Send {
        let _ = (from, to);
        async { Ok(false) }
    }
}

/// Creates `path` and any missing ancestors, and syncs the parent of each one created, so
/// that a crash cannot take a new directory (and everything later put in it) away.
pub async fn create_dir_durable<D: Disk>(disk: &D, path: &Path) -> Result<(), DiskError> {
    let mut missing = Vec::new();
    for ancestor in path.ancestors() {
        match disk.list_dir(ancestor).await {
            Ok(_) => break,
            Err(error) if error.is_not_found() => missing.push(ancestor.to_path_buf()),
            Err(error) => return Err(error),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    disk.create_dir_all(path).await?;
    // Outermost first: a child's entry is only reachable once its parent's is durable.
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent() {
            // The parent of a relative single-component path is "", which means ".".
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            disk.sync_dir(parent).await?;
        }
    }
    Ok(())
}

/// Which real backend to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// io_uring when it works here, std otherwise.
    #[default]
    Auto,
    /// Positional `std::fs` calls on the blocking pool.
    Std,
    /// io_uring, failing if it cannot be set up.
    Uring,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "std" => Ok(Self::Std),
            "io_uring" | "uring" => Ok(Self::Uring),
            other => Err(format!(
                "unknown disk backend {other:?}: expected auto, std or io_uring"
            )),
        }
    }
}

/// The disk a real node runs on: io_uring, or std where io_uring is unavailable.
#[derive(Clone, Debug)]
pub enum SystemDisk {
    /// io_uring backend.
    Uring(UringDisk),
    /// std positional IO backend.
    Std(StdDisk),
}

/// An open file of a [`SystemDisk`].
#[derive(Debug)]
pub enum SystemFile {
    /// A file driven through io_uring.
    Uring(UringFile),
    /// A file driven through std positional IO.
    Std(StdFile),
}

impl SystemDisk {
    /// Sets up the backend `choice` asks for; `Auto` falls back to std when io_uring cannot
    /// be set up (disabled by sysctl, seccomp, an old kernel) and logs why.
    pub fn detect(choice: BackendChoice) -> Result<Self, DiskError> {
        Self::detect_with_ring_entries(choice, uring::RING_ENTRIES_DEFAULT)
    }

    fn detect_with_ring_entries(choice: BackendChoice, entries: u32) -> Result<Self, DiskError> {
        match choice {
            BackendChoice::Std => Ok(Self::Std(StdDisk::new())),
            BackendChoice::Uring => UringDisk::new(entries)
                .map(Self::Uring)
                .map_err(|source| DiskError::new("set up", Path::new("io_uring"), source)),
            BackendChoice::Auto => match UringDisk::new(entries) {
                Ok(disk) => Ok(Self::Uring(disk)),
                Err(error) => {
                    tracing::warn!(%error, "io_uring unavailable, using the std disk backend");
                    Ok(Self::Std(StdDisk::new()))
                }
            },
        }
    }
}

impl DiskFile for SystemFile {
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        match self {
            Self::Uring(file) => file.read_at(position, len).await,
            Self::Std(file) => file.read_at(position, len).await,
        }
    }

    async fn write_at(&self, position: u64, data: Bytes) -> Result<(), DiskError> {
        match self {
            Self::Uring(file) => file.write_at(position, data).await,
            Self::Std(file) => file.write_at(position, data).await,
        }
    }

    async fn sync_data(&self) -> Result<(), DiskError> {
        match self {
            Self::Uring(file) => file.sync_data().await,
            Self::Std(file) => file.sync_data().await,
        }
    }

    async fn set_len(&self, len: u64) -> Result<(), DiskError> {
        match self {
            Self::Uring(file) => file.set_len(len).await,
            Self::Std(file) => file.set_len(len).await,
        }
    }

    async fn len(&self) -> Result<u64, DiskError> {
        match self {
            Self::Uring(file) => file.len().await,
            Self::Std(file) => file.len().await,
        }
    }

    fn path(&self) -> &Path {
        match self {
            Self::Uring(file) => file.path(),
            Self::Std(file) => file.path(),
        }
    }
}

impl Disk for SystemDisk {
    type File = SystemFile;

    fn backend_name(&self) -> &'static str {
        match self {
            Self::Uring(disk) => disk.backend_name(),
            Self::Std(disk) => disk.backend_name(),
        }
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<SystemFile, DiskError> {
        match self {
            Self::Uring(disk) => disk.open(path, mode).await.map(SystemFile::Uring),
            Self::Std(disk) => disk.open(path, mode).await.map(SystemFile::Std),
        }
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::create_dir_all(path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        std_fs::list_dir(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        std_fs::rename(from, to).await
    }

    async fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::remove_file(path).await
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::remove_dir(path).await
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        std_fs::sync_dir(path).await
    }

    async fn hard_link(&self, from: &Path, to: &Path) -> Result<bool, DiskError> {
        std_fs::hard_link(from, to).await
    }
}

#[cfg(test)]
mod tests;
