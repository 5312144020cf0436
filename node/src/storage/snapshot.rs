//! Snapshots of a data directory for disaster recovery (`ledge admin snapshot --out DIR`,
//! `ledge-node restore --from DIR --data-dir NEW`).
//!
//! A snapshot is written by the node on its own host, while it serves, into a directory
//! that did not exist (and is not inside the data directory): first the node's files outside
//! the partition logs (metadata, topic configs, modules, security and controller state, the
//! storage id, the development CA), each of which the node only ever replaces whole
//! (written aside and renamed), then each partition log up to its synced bytes
//! (`PartitionLog::copy_synced_to`: sealed segments hard-linked where the filesystem allows,
//! the active one copied to its synced size, a fresh checkpoint), and last the manifest,
//! written aside, synced and renamed. A directory without a manifest is therefore an
//! unfinished snapshot, and restore refuses it.
//!
//! Restore is offline: it reads and checks the manifest (format version, every partition
//! it lists present), then copies the snapshot into a new or empty data directory, syncing
//! every file and directory. Consumer-group offsets live in the `__consumer_offsets`
//! partition, so they come back with the logs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::disk::{Disk, DiskError, create_dir_durable};
use super::log::copy_whole;

/// The manifest's file name in a snapshot directory.
pub const MANIFEST_FILE_NAME: &str = "snapshot-manifest.json";

/// The manifest format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Largest manifest restore reads (a manifest lists every partition: about 100 bytes each).
pub const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// Top-level names of a data directory a snapshot leaves out: the lock and the audit log
/// belong to the running node, the QUIC reset key is made anew, and partition logs are
/// copied one by one (`logs`).
const NOT_COPIED: [&str; 5] = [
    super::disk::lock::LOCK_FILE_NAME,
    crate::security::audit::AUDIT_LOG_FILE,
    crate::security::audit::AUDIT_LOG_ROTATED_FILE,
    "quic-reset.key",
    LOGS_DIR_NAME,
];

/// Where partition logs live in a data directory.
pub const LOGS_DIR_NAME: &str = "logs";

/// What a snapshot holds, written last into it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SNAPSHOT_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The node that took it.
    pub node_id: u32,
    /// Wall-clock time it was finished, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// The data directory's top-level entries copied besides the logs (`metadata.json`,
    /// `topics`, `modules`, `security.json`, ...).
    pub files: Vec<String>,
    /// Every partition copied, in order.
    pub partitions: Vec<ManifestPartition>,
    /// Partitions that were offline (damaged or unopenable) and are not in the snapshot.
    pub offline: Vec<OfflinePartition>,
}

/// One partition of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// First offset the copy serves.
    pub log_start_offset: i64,
    /// One past the last offset the copy holds: every record below it is in the snapshot.
    pub end_offset: i64,
    /// Segment bytes copied or linked.
    pub segment_bytes: u64,
}

/// A partition left out of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflinePartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Why it was offline.
    pub reason: String,
}

impl Manifest {
    /// The manifest as stored.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and numbers always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a stored manifest, checking what can be checked without the files.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        // The version first, so a newer format is named as such rather than as damage.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| ManifestError::Damaged(error.to_string()))?;
        let version = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ManifestError::Damaged("no format_version".into()))?;
        if version != u64::from(SNAPSHOT_FORMAT_VERSION) {
            return Err(ManifestError::Version(version));
        }
        let manifest: Self = serde_json::from_value(value)
            .map_err(|error| ManifestError::Damaged(error.to_string()))?;
        for partition in &manifest.partitions {
            let key = super::PartitionKey {
                topic: partition.topic.clone(),
                partition: partition.partition,
            };
            // A topic name the node accepts is also a safe directory name.
            if crate::broker::topic_config::validate_topic_name(&partition.topic).is_err()
                || super::PartitionKey::from_directory_name(&key.directory_name()).as_ref()
                    != Some(&key)
                || partition.log_start_offset < 0
                || partition.end_offset < partition.log_start_offset
            {
                return Err(ManifestError::Damaged(format!(
                    "partition {}-{} is not a valid entry (log start {}, end {})",
                    partition.topic,
                    partition.partition,
                    partition.log_start_offset,
                    partition.end_offset
                )));
            }
        }
        for name in &manifest.files {
            if !is_plain_name(name) {
                return Err(ManifestError::Damaged(format!(
                    "file entry {name:?} is not a plain name"
                )));
            }
        }
        Ok(manifest)
    }
}

/// A single path component: no separators, not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not what a snapshot writes.
    #[error("the manifest is damaged: {0}")]
    Damaged(String),
    /// Another format.
    #[error(
        "the manifest is format version {0}; this build reads version {SNAPSHOT_FORMAT_VERSION}"
    )]
    Version(u64),
}

/// Why a snapshot could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The target is refused before anything is written.
    #[error("snapshot directory {path}: {reason}")]
    Target {
        /// The directory asked for.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// Writing it failed; the directory has no manifest and is not a snapshot.
    #[error(
        "snapshot into {path} failed, leaving it unfinished (no manifest; remove it): {source}"
    )]
    Disk {
        /// The snapshot directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: DiskError,
    },
}

/// Checks a snapshot target before anything is written: an absolute path that does not
/// exist, whose parent does, outside `data_dir`.
pub fn check_target(data_dir: &Path, target: &Path) -> Result<(), SnapshotError> {
    let refuse = |reason: String| SnapshotError::Target {
        path: target.to_path_buf(),
        reason,
    };
    if !target.is_absolute() {
        return Err(refuse(
            "must be an absolute path (the node writes it on its own host)".into(),
        ));
    }
    match std::fs::symlink_metadata(target) {
        Ok(_) => return Err(refuse("already exists; give a new directory".into())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(refuse(error.to_string())),
    }
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(refuse("has no parent directory".into()));
    };
    let parent = std::fs::canonicalize(parent)
        .map_err(|error| refuse(format!("its parent {}: {error}", parent.display())))?;
    let data_dir = std::fs::canonicalize(data_dir).map_err(|error| {
        refuse(format!(
            "the data directory {}: {error}",
            data_dir.display()
        ))
    })?;
    if parent.join(name).starts_with(&data_dir) {
        return Err(refuse(format!(
            "is inside the data directory {}",
            data_dir.display()
        )));
    }
    Ok(())
}

/// Copies the data directory's files outside the partition logs into `target` (which
/// exists), returning the top-level names copied.
pub async fn copy_node_files<D: Disk>(
    disk: &D,
    data_dir: &Path,
    target: &Path,
) -> Result<Vec<String>, DiskError> {
    let mut copied = Vec::new();
    for name in disk.list_dir(data_dir).await? {
        if NOT_COPIED.contains(&name.as_str()) || name.ends_with(".tmp") {
            continue;
        }
        copy_tree(disk, &data_dir.join(&name), &target.join(&name)).await?;
        copied.push(name);
    }
    disk.sync_dir(target).await?;
    Ok(copied)
}

/// Copies a file, or a directory and everything under it (temporary files left out).
async fn copy_tree<D: Disk>(disk: &D, from: &Path, to: &Path) -> Result<(), DiskError> {
    // A directory lists; a file does not.
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((from, to)) = pending.pop() {
        match disk.list_dir(&from).await {
            Ok(names) => {
                create_dir_durable(disk, &to).await?;
                for name in names.into_iter().filter(|name| !name.ends_with(".tmp")) {
                    pending.push((from.join(&name), to.join(&name)));
                }
            }
            Err(_) => {
                copy_whole(disk, &from, &to).await?;
                // The same mode (private keys stay 0600; the node refuses them otherwise).
                // Only where the path is a real file (not on the simulated disk).
                if let Ok(metadata) = std::fs::metadata(&from) {
                    std::fs::set_permissions(&to, metadata.permissions())
                        .map_err(|error| DiskError::new("chmod", &to, error))?;
                }
                if let Some(parent) = to.parent() {
                    disk.sync_dir(parent).await?;
                }
            }
        }
    }
    Ok(())
}

/// Writes the manifest last: aside, synced, renamed, the directory synced.
pub async fn write_manifest<D: Disk>(
    disk: &D,
    target: &Path,
    manifest: &Manifest,
) -> Result<(), DiskError> {
    use super::disk::{DiskFile, OpenMode};
    let temporary = target.join(format!("{MANIFEST_FILE_NAME}.tmp"));
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, bytes::Bytes::from(manifest.encode()))
        .await?;
    file.sync_data().await?;
    disk.rename(&temporary, &target.join(MANIFEST_FILE_NAME))
        .await?;
    disk.sync_dir(target).await
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// No manifest: never finished, or not a snapshot.
    #[error(
        "{0} is not a finished snapshot: it has no {MANIFEST_FILE_NAME} (a snapshot writes it last)"
    )]
    NoManifest(PathBuf),
    /// The manifest is unreadable or wrong.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// A partition the manifest lists is missing from the snapshot.
    #[error("{0} is incomplete: the manifest lists {1} but the snapshot has no such directory")]
    MissingPartition(PathBuf, String),
    /// The new data directory is not new.
    #[error(
        "--data-dir {0} exists and is not empty; restore writes only into a new or empty directory"
    )]
    TargetNotEmpty(PathBuf),
    /// Copying failed.
    #[error("restore into {path} failed part way (remove it and restore again): {source}")]
    Copy {
        /// The new data directory.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Reading the snapshot failed.
    #[error("{path}: {source}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// Reads and checks the manifest of the snapshot in `snapshot`, and that every partition it
/// lists is there.
pub fn read_manifest(snapshot: &Path) -> Result<Manifest, RestoreError> {
    let path = snapshot.join(MANIFEST_FILE_NAME);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(RestoreError::NoManifest(snapshot.to_path_buf()));
        }
        Err(source) => return Err(RestoreError::Read { path, source }),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MANIFEST_BYTES_MAX + 1),
        &mut bytes,
    )
    .map_err(|source| RestoreError::Read {
        path: path.clone(),
        source,
    })?;
    if bytes.len() as u64 > MANIFEST_BYTES_MAX {
        return Err(RestoreError::Manifest {
            path,
            source: ManifestError::Damaged(format!("larger than {MANIFEST_BYTES_MAX} bytes")),
        });
    }
    let manifest =
        Manifest::decode(&bytes).map_err(|source| RestoreError::Manifest { path, source })?;
    for partition in &manifest.partitions {
        let name = super::PartitionKey {
            topic: partition.topic.clone(),
            partition: partition.partition,
        }
        .directory_name();
        if !snapshot.join(LOGS_DIR_NAME).join(&name).is_dir() {
            return Err(RestoreError::MissingPartition(snapshot.to_path_buf(), name));
        }
    }
    Ok(manifest)
}

/// Restores the snapshot in `snapshot` into `data_dir` (new, or an empty directory):
/// everything but the manifest, every file and directory synced. Refused, with nothing
/// written, when the manifest is missing or wrong or `data_dir` holds anything.
pub fn restore(snapshot: &Path, data_dir: &Path) -> Result<Manifest, RestoreError> {
    let manifest = read_manifest(snapshot)?;
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RestoreError::TargetNotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(RestoreError::TargetNotEmpty(data_dir.to_path_buf()));
        }
        Err(source) => {
            return Err(RestoreError::Read {
                path: data_dir.to_path_buf(),
                source,
            });
        }
    }
    let copy_error = |source| RestoreError::Copy {
        path: data_dir.to_path_buf(),
        source,
    };
    create_dir_synced(data_dir).map_err(copy_error)?;
    restore_tree(snapshot, data_dir, true).map_err(copy_error)?;
    Ok(manifest)
}

fn create_dir_synced(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    // The node user only: the data holds credentials and keys.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn restore_tree(from: &Path, to: &Path, top: bool) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if top && name == MANIFEST_FILE_NAME {
            continue;
        }
        let (source, target) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir(&target)?;
            restore_tree(&source, &target, false)?;
        } else {
            std::fs::copy(&source, &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    std::fs::File::open(to)?.sync_all()
}

#[cfg(test)]
mod tests;
