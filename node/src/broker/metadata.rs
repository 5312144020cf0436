//! The node's durable metadata: topics (partition counts and config overrides) and the
//! producer-id reservation, in `<data-dir>/metadata.json`.
//!
//! Written whole to `metadata.json.tmp`, synced, renamed over the old file, and the
//! directory synced, so a crash leaves either the old or the new file, never a mix. The
//! file is the source of truth for which topics exist; partition directories without a
//! topic in it are leftovers of an interrupted deletion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::{Disk, DiskError, DiskFile, OpenMode};

/// File name in the data directory.
pub const METADATA_FILE_NAME: &str = "metadata.json";
const FORMAT_VERSION: u32 = 1;
/// Producer ids are reserved durably in blocks, so handing one out costs no IO.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// One topic as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTopic {
    /// Partition count.
    pub partitions: u32,
    /// Config overrides (Kafka key → value text).
    pub configs: BTreeMap<String, String>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
}

/// The whole metadata file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMetadata {
    /// Format version of this file.
    pub version: u32,
    /// Topics by name.
    pub topics: BTreeMap<String, StoredTopic>,
    /// Producer ids below this have been (or may have been) handed out.
    pub producer_ids_reserved_until: i64,
    /// Named WASM modules (for fetch plug-ins and topic produce hooks).
    #[serde(default)]
    pub modules: BTreeMap<String, StoredModule>,
    /// Topic transforms.
    #[serde(default)]
    pub transforms: BTreeMap<String, StoredTransform>,
}

/// A named WASM module; its bytes are in `wasm/modules/<hash>.wasm`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredModule {
    /// SHA-256 of the bytes, hex.
    pub hash: String,
    /// What it does.
    pub kind: crate::wasm::PluginKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Default parameters.
    pub params: BTreeMap<String, String>,
    /// Upload time, ms since the epoch.
    pub uploaded_ms: i64,
}

/// A topic transform's definition. Its input positions live in `__consumer_offsets`
/// under the group `__transform.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTransform {
    /// The module.
    pub module: StoredModule,
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// What a failing record does.
    pub on_error: crate::broker::transforms::OnError,
    /// Incremented by each deploy.
    pub version: u32,
    /// Why it is stopped, if it is (paused by an operator, the circuit breaker, or the
    /// `stop` policy); survives restarts.
    pub stopped: Option<StoppedReason>,
}

/// Why a transform is not running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoppedReason {
    /// `paused` (operator or circuit breaker) or `failed` (the `stop` policy).
    pub state: String,
    /// The explanation shown by `ledge transform describe`.
    pub reason: String,
}

impl Default for StoredMetadata {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            topics: BTreeMap::new(),
            // Start well above zero so ids never look like Kafka's -1/0 sentinels.
            producer_ids_reserved_until: PRODUCER_ID_BLOCK,
            modules: BTreeMap::new(),
            transforms: BTreeMap::new(),
        }
    }
}

/// Why the metadata file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Reading or writing failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The file is not valid metadata.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Loads and stores the metadata file.
pub struct MetadataStore<D: Disk> {
    disk: D,
    directory: PathBuf,
    current: StoredMetadata,
}

impl<D: Disk> MetadataStore<D> {
    /// Loads `<directory>/metadata.json`, or starts empty if there is none. The second
    /// value says whether a file existed.
    pub async fn load(disk: D, directory: &Path) -> Result<(Self, bool), MetadataError> {
        let path = directory.join(METADATA_FILE_NAME);
        let (current, existed) = match disk.open(&path, OpenMode::Read).await {
            Ok(file) => {
                let len = file.len().await?;
                let bytes = file.read_at(0, len as usize).await?;
                let current: StoredMetadata =
                    serde_json::from_slice(&bytes).map_err(|error| MetadataError::Invalid {
                        path: path.clone(),
                        message: error.to_string(),
                    })?;
                if current.version != FORMAT_VERSION {
                    return Err(MetadataError::Invalid {
                        path,
                        message: format!(
                            "metadata format version {} is not supported by this build ({FORMAT_VERSION})",
                            current.version
                        ),
                    });
                }
                (current, true)
            }
            Err(error) if error.is_not_found() => (StoredMetadata::default(), false),
            Err(error) => return Err(error.into()),
        };
        Ok((
            Self {
                disk,
                directory: directory.to_path_buf(),
                current,
            },
            existed,
        ))
    }

    /// The metadata as last stored.
    pub fn current(&self) -> &StoredMetadata {
        &self.current
    }

    /// Replaces the stored metadata durably; on error the old file stands and the in-memory
    /// copy is unchanged.
    pub async fn store(&mut self, next: StoredMetadata) -> Result<(), DiskError> {
        let path = self.directory.join(METADATA_FILE_NAME);
        let temporary = self.directory.join(format!("{METADATA_FILE_NAME}.tmp"));
        let bytes = serde_json::to_vec_pretty(&next)
            .expect("metadata serializes: plain maps, strings and integers");
        match self.disk.remove_file(&temporary).await {
            Ok(()) => {}
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        let file = self.disk.open(&temporary, OpenMode::CreateNew).await?;
        file.write_at(0, Bytes::from(bytes)).await?;
        file.sync_data().await?;
        drop(file);
        self.disk.rename(&temporary, &path).await?;
        self.disk.sync_dir(&self.directory).await?;
        self.current = next;
        Ok(())
    }
}
