//! Durable whole-file writes and directory creation for the files a node makes outside the
//! partition logs (dev TLS material, the QUIC reset key, the data directory itself), done
//! with plain blocking `std::fs` calls because they happen once, at start, before the
//! runtime's disk backend is in use.
//!
//! A file is written to a temporary name, synced, renamed over its final name, and the
//! directory is synced: after a crash the name holds either the old contents or the whole
//! new contents, never a 0-byte or half-written file (issue 11, data item 7: dev TLS files
//! written with `std::fs::write` were found empty after a crash soon after first start).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::DiskError;

/// Suffix of the temporary name a file is written under before its rename.
const TEMPORARY_SUFFIX: &str = ".tmp";

/// Writes `contents` to `path` durably (temporary file, fsync, rename, directory fsync),
/// creating it with permission bits `mode` (e.g. `0o600` for keys).
pub fn write_file_durable(path: &Path, contents: &[u8], mode: u32) -> Result<(), DiskError> {
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(TEMPORARY_SUFFIX);
    let temporary = PathBuf::from(temporary_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|cause| DiskError::new("create", &temporary, cause))?;
    file.write_all(contents)
        .map_err(|cause| DiskError::new("write", &temporary, cause))?;
    file.sync_all()
        .map_err(|cause| DiskError::new("fsync", &temporary, cause))?;
    drop(file);
    std::fs::rename(&temporary, path)
        .map_err(|cause| DiskError::new("rename", &temporary, cause))?;
    sync_parent(path)
}

/// Creates `path` and any missing ancestors, syncing the parent of each one created, so a
/// crash cannot take a new directory (and what is later put in it) away.
pub fn create_dir_all_durable(path: &Path) -> Result<(), DiskError> {
    let mut missing = Vec::new();
    for ancestor in path.ancestors() {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(ancestor) {
            Ok(_) => break,
            Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => {
                missing.push(ancestor.to_path_buf());
            }
            Err(cause) => return Err(DiskError::new("stat", ancestor, cause)),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(path)
        .map_err(|cause| DiskError::new("create directory", path, cause))?;
    // Outermost first: a child's entry is only reachable once its parent's is durable.
    for created in missing.iter().rev() {
        sync_parent(created)?;
    }
    Ok(())
}

/// Syncs the directory holding `path`, making its entry (creation, rename) durable.
pub fn sync_parent(path: &Path) -> Result<(), DiskError> {
    let parent = match path.parent() {
        // The parent of a relative single-component path is "", which means ".".
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    sync_dir(parent)
}

/// Makes a directory's entries durable.
pub fn sync_dir(directory: &Path) -> Result<(), DiskError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|cause| DiskError::new("fsync directory", directory, cause))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_durable_write_replaces_the_whole_file_and_leaves_no_temporary() {
        // Goal: the final name holds exactly the new bytes with the requested mode, and the
        // temporary name used on the way is gone.
        let directory = tempfile::tempdir().unwrap();
        let nested = directory.path().join("a").join("b");
        create_dir_all_durable(&nested).unwrap();
        let path = nested.join("key");
        std::fs::write(&path, b"old contents, longer than the new").unwrap();
        write_file_durable(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(&nested).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_names_the_operation_and_path_once() {
        // Goal: the error is one line naming what failed and where, with the OS error once.
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("missing").join("file");
        let error = write_file_durable(&path, b"x", 0o644).unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("create "), "{text}");
        assert!(text.contains("missing/file.tmp"), "{text}");
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
    }
}
