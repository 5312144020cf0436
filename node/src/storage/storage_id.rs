//! The data directory's storage id (KIP-858's directory id): a random id drawn when a data
//! directory is first used by a `[cluster]` node and kept in `<data_dir>/storage-id`.
//!
//! The node sends it with every registration; the controller compares it with the one the
//! node registered with before. A different id means the directory the node's replicas lived
//! in is gone (a wiped or replaced disk): the controller takes the node out of every ISR and
//! eligible-leader list, so an empty disk is never elected to lead a partition it "was in
//! sync for" (issue 13, B.5 #3/#4).
//!
//! Invariants:
//! - The file is written once, durably (temporary name, fdatasync, rename, directory fsync):
//!   after a crash it holds the whole id or does not exist.
//! - A file that exists but does not parse (wrong size, a bad checksum) refuses the start
//!   with one line naming it: drawing a new id there would make the controller take a node
//!   that kept its data for one that lost it (safe, but it silently costs availability),
//!   and the damage deserves an operator's look.
//! - A missing file is drawn anew. In a data directory that already holds partitions or a
//!   controller store that is worth a WARN line: the node was upgraded from a build without
//!   storage ids (the controller then has none to compare with and keeps the node's places),
//!   or someone deleted the file (the controller then treats the node's replicas as empty).
//!
//! File format (one line of ASCII): `ledge-storage-id 1 <32 hex digits> <8 hex digits>\n`,
//! the last field being the CRC-32C of the 16 id bytes.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::disk::create_dir_durable;
use super::{Disk, DiskError, DiskFile, OpenMode};

/// The file's name inside the data directory.
pub const STORAGE_ID_FILE: &str = "storage-id";
/// The first word of the file.
const MAGIC: &str = "ledge-storage-id";
/// The format version this build writes and reads.
const FORMAT_VERSION: &str = "1";
/// The temporary name the file is written under before its rename.
const TEMPORARY_FILE: &str = "storage-id.tmp";
/// The length of a valid file: magic, version, 32 + 8 hex digits, 3 spaces and a newline.
const FILE_BYTES: usize = MAGIC.len() + FORMAT_VERSION.len() + 32 + 8 + 4;

/// A data directory's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StorageId(pub [u8; 16]);

impl std::fmt::Display for StorageId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why the storage id could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum StorageIdError {
    /// The file exists but is not a storage id.
    #[error(
        "{path} is damaged ({reason}); refusing to start rather than drawing a new storage id: if this data directory's partitions are intact, restore the file from a backup; if they are gone, delete the file (the node then rejoins as an empty replica)"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("storage id: {0}")]
    Disk(#[from] DiskError),
    /// The system's random generator failed.
    #[error("cannot draw a storage id for {0}: the system random generator failed")]
    Random(PathBuf),
}

/// Reads `<data_dir>/storage-id`, or draws a new id with the system's random generator and
/// stores it durably if the file does not exist.
pub async fn load_or_create<D: Disk>(
    disk: &D,
    data_dir: &Path,
) -> Result<StorageId, StorageIdError> {
    load_or_create_with(disk, data_dir, || {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .ok()
            .map(|()| bytes)
    })
    .await
}

/// [`load_or_create`] with the id drawn by `draw` (tests pass a fixed one).
pub async fn load_or_create_with<D: Disk>(
    disk: &D,
    data_dir: &Path,
    draw: impl FnOnce() -> Option<[u8; 16]>,
) -> Result<StorageId, StorageIdError> {
    let path = data_dir.join(STORAGE_ID_FILE);
    match disk.open(&path, OpenMode::Read).await {
        Ok(file) => {
            let length = file.len().await?;
            // One byte more than a valid file holds: an oversized file is refused by length.
            let want = usize::try_from(length)
                .unwrap_or(usize::MAX)
                .min(FILE_BYTES + 1);
            let bytes = file.read_at(0, want).await?;
            return parse(&bytes).map_err(|reason| StorageIdError::Damaged { path, reason });
        }
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error.into()),
    }
    let id = StorageId(draw().ok_or_else(|| StorageIdError::Random(path.clone()))?);
    if holds_data(disk, data_dir).await {
        tracing::warn!(
            path = %path.display(),
            storage_id = %id,
            "no storage id in a data directory that holds partitions or a controller store: drew a new one; if this node registered with a storage id before, the controller now treats its replicas as empty"
        );
    } else {
        tracing::info!(path = %path.display(), storage_id = %id, "new data directory: drew its storage id");
    }
    create_dir_durable(disk, data_dir).await?;
    let temporary = data_dir.join(TEMPORARY_FILE);
    // A temporary left by a crash in the middle of an earlier start is stale.
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error.into()),
    }
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(format(id))).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &path).await?;
    disk.sync_dir(data_dir).await?;
    Ok(id)
}

fn format(id: StorageId) -> String {
    format!(
        "{MAGIC} {FORMAT_VERSION} {id} {:08x}\n",
        crc32c::crc32c(&id.0)
    )
}

fn parse(bytes: &[u8]) -> Result<StorageId, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_owned())?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| format!("{} bytes, not one whole line", bytes.len()))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let [magic, version, id_hex, crc_hex] = fields.as_slice() else {
        return Err(format!("{} fields, expected 4", fields.len()));
    };
    if *magic != MAGIC {
        return Err(format!("it starts with {magic:?}, not {MAGIC:?}"));
    }
    if *version != FORMAT_VERSION {
        return Err(format!(
            "format version {version:?}; this build reads {FORMAT_VERSION}"
        ));
    }
    let id = decode_hex::<16>(id_hex).ok_or("the id is not 32 hex digits")?;
    let crc = decode_hex::<4>(crc_hex).ok_or("the checksum is not 8 hex digits")?;
    if u32::from_be_bytes(crc) != crc32c::crc32c(&id) {
        return Err("the checksum does not match the id".to_owned());
    }
    Ok(StorageId(id))
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(bytes)
}

/// Whether the data directory holds partitions or a controller store (anything a storage id
/// vouches for).
async fn holds_data<D: Disk>(disk: &D, data_dir: &Path) -> bool {
    for child in ["logs", "controller"] {
        if disk
            .list_dir(&data_dir.join(child))
            .await
            .is_ok_and(|entries| !entries.is_empty())
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests;
