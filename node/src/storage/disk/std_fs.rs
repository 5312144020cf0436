//! The std backend: positional `pread`/`pwrite`/`fdatasync` on tokio's blocking pool.
//!
//! Used where io_uring is unavailable. Directory operations of every backend live here too,
//! because they are rare (segment rolls, retention) and io_uring offers no gain for them.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::{Disk, DiskError, DiskFile, OpenMode};

/// Positional IO through `std::fs`, each call on tokio's blocking pool.
#[derive(Clone, Debug, Default)]
pub struct StdDisk;

impl StdDisk {
    /// The std backend needs no setup.
    pub fn new() -> Self {
        Self
    }
}

/// A file of the std backend.
#[derive(Debug)]
pub struct StdFile {
    file: Arc<File>,
    path: PathBuf,
}

/// Runs a blocking closure on tokio's blocking pool; a panic or cancelled task there is
/// reported as an IO error rather than propagated.
async fn blocking<T, F>(operation: &'static str, path: &Path, work: F) -> Result<T, DiskError>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|source| DiskError::new(operation, path, source)),
        Err(join_error) => Err(DiskError::new(
            operation,
            path,
            std::io::Error::other(join_error.to_string()),
        )),
    }
}

pub(super) fn open_std(path: &Path, mode: OpenMode) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    match mode {
        OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        OpenMode::Read => options.read(true),
        OpenMode::ReadWrite => options.read(true).write(true),
    };
    options.open(path)
}

pub(super) async fn open_file(path: &Path, mode: OpenMode) -> Result<Arc<File>, DiskError> {
    let owned = path.to_path_buf();
    blocking("open", path, move || open_std(&owned, mode).map(Arc::new)).await
}

pub(super) async fn create_dir_all(path: &Path) -> Result<(), DiskError> {
    let owned = path.to_path_buf();
    blocking("create directory", path, move || {
        std::fs::create_dir_all(owned)
    })
    .await
}

pub(super) async fn list_dir(path: &Path) -> Result<Vec<String>, DiskError> {
    let owned = path.to_path_buf();
    blocking("list directory", path, move || {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(owned)? {
            let entry = entry?;
            // A name that is not UTF-8 cannot be one of ours; keep it (lossily) so the caller
            // can refuse it as a foreign file by name.
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    })
    .await
}

pub(super) async fn rename(from: &Path, to: &Path) -> Result<(), DiskError> {
    let (owned_from, owned_to) = (from.to_path_buf(), to.to_path_buf());
    blocking("rename", from, move || {
        std::fs::rename(owned_from, owned_to)
    })
    .await
}

pub(super) async fn remove_file(path: &Path) -> Result<(), DiskError> {
    let owned = path.to_path_buf();
    blocking("remove", path, move || std::fs::remove_file(owned)).await
}

pub(super) async fn remove_dir(path: &Path) -> Result<(), DiskError> {
    let owned = path.to_path_buf();
    blocking("remove directory", path, move || std::fs::remove_dir(owned)).await
}

pub(super) async fn sync_dir(path: &Path) -> Result<(), DiskError> {
    let owned = path.to_path_buf();
    blocking("fsync directory", path, move || {
        File::open(owned)?.sync_all()
    })
    .await
}

/// A hard link `to` -> `from`; `Ok(false)` where the filesystem cannot make one (another
/// filesystem, no hard links, the link count at its maximum).
pub(super) async fn hard_link(from: &Path, to: &Path) -> Result<bool, DiskError> {
    let (source, target) = (from.to_path_buf(), to.to_path_buf());
    let linked = blocking("link", to, move || {
        match std::fs::hard_link(&source, &target) {
            Ok(()) => Ok(true),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EXDEV | libc::EPERM | libc::EMLINK | libc::EOPNOTSUPP)
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    })
    .await?;
    Ok(linked)
}

pub(super) async fn file_len(file: &Arc<File>, path: &Path) -> Result<u64, DiskError> {
    let file = Arc::clone(file);
    blocking("stat", path, move || Ok(file.metadata()?.len())).await
}

pub(super) async fn file_set_len(file: &Arc<File>, path: &Path, len: u64) -> Result<(), DiskError> {
    let file = Arc::clone(file);
    blocking("truncate", path, move || file.set_len(len)).await
}

impl DiskFile for StdFile {
    async fn read_at(&self, position: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let file = Arc::clone(&self.file);
        blocking("read", &self.path, move || {
            let mut buffer = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                let Some(rest) = buffer.get_mut(filled..) else {
                    break;
                };
                match file.read_at(rest, position + filled as u64) {
                    Ok(0) => break,
                    Ok(read) => filled += read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            buffer.truncate(filled);
            Ok(buffer)
        })
        .await
    }

    async fn write_at(&self, position: u64, data: Bytes) -> Result<(), DiskError> {
        let file = Arc::clone(&self.file);
        blocking("write", &self.path, move || {
            file.write_all_at(&data, position)
        })
        .await
    }

    async fn sync_data(&self) -> Result<(), DiskError> {
        let file = Arc::clone(&self.file);
        blocking("fdatasync", &self.path, move || file.sync_data()).await
    }

    async fn set_len(&self, len: u64) -> Result<(), DiskError> {
        file_set_len(&self.file, &self.path, len).await
    }

    async fn len(&self) -> Result<u64, DiskError> {
        file_len(&self.file, &self.path).await
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Disk for StdDisk {
    type File = StdFile;

    fn backend_name(&self) -> &'static str {
        "std"
    }

    async fn open(&self, path: &Path, mode: OpenMode) -> Result<StdFile, DiskError> {
        Ok(StdFile {
            file: open_file(path, mode).await?,
            path: path.to_path_buf(),
        })
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), DiskError> {
        create_dir_all(path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Vec<String>, DiskError> {
        list_dir(path).await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), DiskError> {
        rename(from, to).await
    }

    async fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        remove_file(path).await
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), DiskError> {
        remove_dir(path).await
    }

    async fn sync_dir(&self, path: &Path) -> Result<(), DiskError> {
        sync_dir(path).await
    }

    async fn hard_link(&self, from: &Path, to: &Path) -> Result<bool, DiskError> {
        hard_link(from, to).await
    }
}
