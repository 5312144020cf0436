//! The node's durable metadata, in `<data-dir>/metadata.json`: topics (partition counts and
//! config overrides), the producer-id reservation, named WASM modules and topic transforms.
//!
//! Written whole to `metadata.json.tmp`, synced, renamed over the old file, and the
//! directory synced, so a crash leaves either the old or the new file, never a mix. The
//! file is the source of truth for which topics exist; partition directories without a
//! topic in it are leftovers of an interrupted deletion.
//!
//! Each topic's definition is also kept in its own file, `<data-dir>/topics/<name>.json`
//! ([`TopicFiles`]), written the same way before `metadata.json` names the topic. If
//! `metadata.json` is lost, the broker rebuilds the topic list from the partition directories
//! and takes each topic's configs from its file, so a rebuild never guesses configs
//! (`retention.ms=-1` must not become 7 days). Producer ids are not taken from these files:
//! the broker derives their floor from the producer ids the logs hold.

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
/// Directory (in the data directory) of the per-topic definition files.
pub const TOPICS_DIR_NAME: &str = "topics";
/// Largest `metadata.json` or topic file read, in bytes. Real files are a few KiB per topic,
/// module and transform; a bigger one is not ours, and reading it whole could exhaust memory.
pub const METADATA_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
const TOPIC_FILE_SUFFIX: &str = ".json";

/// One topic as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTopic {
    /// Partition count.
    pub partitions: u32,
    /// Config overrides (Kafka key → value text).
    pub configs: BTreeMap<String, String>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// In a `[cluster]`: the controller's id of the topic (32 hex digits), so a topic
    /// deleted and re-created under the same name is told apart, across restarts too.
    /// Absent on a one-node node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// In a `[cluster]`: the partitions this node is a replica of (the others have no
    /// directory here). Absent: every partition is here (a one-node node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosted: Option<std::collections::BTreeSet<u32>>,
    /// In a `[cluster]`: the metadata-log index of the image this definition was taken
    /// from. An image behind it (still replaying at start) must not change or remove the
    /// topic: it may not know the topic yet, or know an older one of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_index: Option<u64>,
    /// A topic the node created itself (every topic on a node without `[cluster]`, a
    /// cluster node's internal topics): its id (32 hex digits), a random UUID (v4) drawn at
    /// creation ([`new_topic_id`]), so a topic deleted and created again under the same name
    /// is another topic to Kafka clients (KIP-516), across restarts too. Absent on a topic of
    /// the controller (`topic_id`), and in files of builds before 2026-12 ([`legacy_topic_id`]
    /// fills it at the next start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_topic_id: Option<String>,
}

/// How many times [`new_topic_id`] draws before giving up. A draw is refused only when Kafka
/// would refuse it (1 time in 64), so this many refusals in a row means the generator is
/// broken, not unlucky.
pub const TOPIC_ID_DRAWS_MAX: u32 = 16;

/// A new topic id in the stored text form (32 hex digits): a UUID v4 of the 16 bytes `draw`
/// gives (`None` when the generator fails). As Kafka's `Uuid.randomUuid`, an id whose
/// base64 text starts with `-` (first 6 bits `111110`) is drawn again: Kafka's tools read
/// such an id as an option. A v4 id is never Kafka's reserved nil (0) or metadata id (1):
/// its version bits are set. `None` if no acceptable id came in [`TOPIC_ID_DRAWS_MAX`] draws.
pub fn new_topic_id(mut draw: impl FnMut() -> Option<[u8; 16]>) -> Option<String> {
    for _ in 0..TOPIC_ID_DRAWS_MAX {
        let id = uuid::Builder::from_random_bytes(draw()?).into_uuid();
        if id.as_bytes()[0] >> 2 != 0b11_1110 {
            return Some(topic_id_text(id.as_u128()));
        }
    }
    None
}

/// [`new_topic_id`] from the system's random generator.
pub fn random_topic_id() -> Option<String> {
    new_topic_id(|| {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .ok()
            .map(|()| bytes)
    })
}

/// A topic id as stored and sent on the native protocol: 32 lowercase hex digits.
pub fn topic_id_text(id: u128) -> String {
    format!("{id:032x}")
}

/// The id builds before 2026-12 gave Kafka clients for a one-node topic `name` (they stored
/// none): two FNV-1a hashes of the name, from different offset bases, fill the 128 bits; the
/// high half is never 0, so the id is never Kafka's nil (0) or metadata id (1). A topic
/// stored without an id is given this one once, at start, and keeps it: clients that knew
/// the topic before the upgrade see the same id after it.
pub fn legacy_topic_id(name: &str) -> String {
    let fnv = |basis: u64| {
        name.bytes().fold(basis, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let high = fnv(0xcbf2_9ce4_8422_2325).max(1);
    let low = fnv(0x8422_2325_cbf2_9ce4);
    topic_id_text((u128::from(high) << 64) | u128::from(low))
}

/// One topic's own file, `topics/<name>.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TopicFile {
    /// Format version of this file.
    version: u32,
    /// The topic's name (also the file name, kept here so a renamed file is noticed).
    name: String,
    /// The definition.
    #[serde(flatten)]
    topic: StoredTopic,
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
    pub on_error: OnError,
    /// Incremented by each deploy.
    pub version: u32,
    /// Why it is stopped, if it is (paused by an operator, the circuit breaker, or the
    /// `stop` policy); survives restarts.
    pub stopped: Option<StoppedReason>,
    /// The principal that deployed it (`User:alice`), whose permissions it reads and
    /// writes with when authorization is on. `None`: declared in the config file, deployed
    /// with authorization off, or stored before deployers were recorded; it runs as the
    /// node itself, unrestricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployer: Option<String>,
    /// A stateful (aggregate) transform's state layout (docs/STREAMS.md); `None` for the
    /// record-by-record kinds and for definitions stored before stateful transforms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<StatefulSpec>,
}

/// How a stateful transform keeps its state: its partitions and whether its input is
/// re-keyed through `__transform.NAME.repartition` first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatefulSpec {
    /// State partitions: the partitions of `__transform.NAME.changelog` (and of the
    /// repartition topic), one stage-2 task each.
    pub state_partitions: u32,
    /// True when the module exports `ledge_group`: stage 1 re-keys the input into the
    /// repartition topic, and stage 2 reads that instead of the input.
    pub repartition: bool,
    /// A windowed aggregate's windows and emit mode (`None`: one state per key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::streams::window::WindowDeploy>,
    /// A join's second input (`None`: an aggregate). Absent in definitions written before
    /// joins ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinSpec>,
}

/// A join transform's second input (docs/STREAMS.md, "Joins"): the transform's input is the
/// left side, this the right; both have the state's partition count (co-partitioned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinSpec {
    /// The right input topic.
    pub right: String,
    /// How the right input is read.
    pub kind: JoinKind,
}

/// Stream-table or stream-stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    /// The right input is a table: the latest record per key, a null value deleting it
    /// (`join.table`); each left record is joined with its key's current record or none.
    Table,
    /// The right input is a stream (`join.with`): records of both sides with the same key
    /// pair within the window (Kafka's `JoinWindows`).
    Stream {
        /// `join.before_ms`.
        before_ms: i64,
        /// `join.after_ms`.
        after_ms: i64,
        /// `join.grace_ms`.
        grace_ms: i64,
    },
}

impl JoinKind {
    /// The stream-stream window (`None` for a table).
    #[must_use]
    pub fn window(&self) -> Option<crate::streams::join::JoinWindow> {
        match *self {
            Self::Table => None,
            Self::Stream {
                before_ms,
                after_ms,
                grace_ms,
            } => Some(crate::streams::join::JoinWindow {
                before_ms,
                after_ms,
                grace_ms,
            }),
        }
    }
}

impl StatefulSpec {
    /// The changelog topic of transform `name`.
    pub fn changelog_topic(name: &str) -> String {
        format!("__transform.{name}.changelog")
    }

    /// The repartition topic of transform `name`.
    pub fn repartition_topic(name: &str) -> String {
        format!("__transform.{name}.repartition")
    }
}

/// What a transform does with a record its module fails: shared with the client and the
/// wire (`ledge_protocol::wasm_abi`), stored by name in `metadata.json`.
pub use ledge_protocol::OnError;

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

impl StoredMetadata {
    /// Checks what the node later uses as file names: topic names become partition directory
    /// and topic file names, module hashes become module file names (and select compiled
    /// native code to load), so a hand-edited or damaged file must not lead outside the
    /// data directory.
    fn validate(&self) -> Result<(), UnsafeMetadataError> {
        for name in self.topics.keys() {
            crate::broker::topic_config::validate_topic_name(name).map_err(|source| {
                UnsafeMetadataError::TopicName {
                    name: name.clone(),
                    source,
                }
            })?;
        }
        let hashes =
            self.modules
                .iter()
                .map(|(name, module)| (format!("module {name:?}"), &module.hash))
                .chain(self.transforms.iter().map(|(name, transform)| {
                    (format!("transform {name:?}"), &transform.module.hash)
                }));
        for (owner, hash) in hashes {
            if !is_content_hash(hash) {
                return Err(UnsafeMetadataError::ModuleHash {
                    owner,
                    hash: hash.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A name or hash in `metadata.json` the node would use as a file name but must not.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeMetadataError {
    /// A topic name that is not a valid topic name.
    #[error("topic {name:?}: {source}")]
    TopicName {
        /// The name.
        name: String,
        /// Why it is not valid.
        source: crate::broker::topic_config::TopicNameError,
    },
    /// A module hash that is not a SHA-256 in lowercase hex.
    #[error("{owner}: module hash {hash:?} is not a SHA-256 in lowercase hex")]
    ModuleHash {
        /// `module "m"` or `transform "t"`.
        owner: String,
        /// The hash.
        hash: String,
    },
}

/// Whether `text` is a SHA-256 in lowercase hex, as [`crate::wasm::content_hash`] writes it.
fn is_content_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Why the metadata file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Reading or writing failed.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The change would make the file bigger than the node reads back at start.
    #[error(
        "the metadata would be {bytes} bytes, over the {METADATA_FILE_BYTES_MAX} the node reads back at start; remove unused modules or transforms"
    )]
    TooLarge {
        /// Its size.
        bytes: u64,
    },
    /// The file is not valid metadata (or a topic file is not a valid topic definition).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (the JSON parser's words, or the version found).
        message: String,
    },
    /// The file names a file the node must not open (a bad topic name or module hash).
    #[error("{path}: {source}")]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: UnsafeMetadataError,
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
                let bytes = read_whole(&file, &path).await?;
                let current: StoredMetadata =
                    serde_json::from_slice(&bytes).map_err(|error| MetadataError::Invalid {
                        path: path.clone(),
                        message: crate::broker::client_text::client_text(&error),
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
                current.validate().map_err(|source| MetadataError::Unsafe {
                    path: path.clone(),
                    source,
                })?;
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
    /// copy is unchanged. A file over [`METADATA_FILE_BYTES_MAX`] is refused, since `load`
    /// would refuse it at the next start: the change that would grow it fails instead.
    pub async fn store(&mut self, next: StoredMetadata) -> Result<(), MetadataError> {
        let bytes = serde_json::to_vec_pretty(&next)
            .expect("metadata serializes: plain maps, strings and integers");
        check_size(&bytes)?;
        write_durable(&self.disk, &self.directory, METADATA_FILE_NAME, bytes).await?;
        self.current = next;
        Ok(())
    }
}

/// The per-topic definition files in `<data-dir>/topics/`.
pub struct TopicFiles<D: Disk> {
    disk: D,
    directory: PathBuf,
}

impl<D: Disk> TopicFiles<D> {
    /// The topic files of `data_dir`, creating their directory (durably) if missing.
    pub async fn open(disk: D, data_dir: &Path) -> Result<Self, DiskError> {
        let directory = data_dir.join(TOPICS_DIR_NAME);
        crate::storage::disk::create_dir_durable(&disk, &directory).await?;
        Ok(Self { disk, directory })
    }

    /// Every topic file, by topic name. A file that cannot be read as a topic definition is an
    /// error naming it: its topic's configs would otherwise be guessed.
    pub async fn load_all(&self) -> Result<BTreeMap<String, StoredTopic>, MetadataError> {
        let mut topics = BTreeMap::new();
        for name in self.disk.list_dir(&self.directory).await? {
            let Some(topic) = name.strip_suffix(TOPIC_FILE_SUFFIX) else {
                // `<name>.json.tmp` of an interrupted write: the old file (if any) stands.
                continue;
            };
            let path = self.directory.join(&name);
            let file = self.disk.open(&path, OpenMode::Read).await?;
            let bytes = read_whole(&file, &path).await?;
            let invalid = |message: String| MetadataError::Invalid {
                path: path.clone(),
                message,
            };
            let stored: TopicFile =
                serde_json::from_slice(&bytes).map_err(|error| invalid(error.to_string()))?;
            if stored.version != FORMAT_VERSION {
                return Err(invalid(format!(
                    "topic file format version {} is not supported by this build ({FORMAT_VERSION})",
                    stored.version
                )));
            }
            crate::broker::topic_config::validate_topic_name(&stored.name)
                .map_err(|error| invalid(format!("topic {:?}: {error}", stored.name)))?;
            if stored.name != topic {
                return Err(invalid(format!(
                    "the file names topic {:?} but is named for {topic:?}",
                    stored.name
                )));
            }
            topics.insert(stored.name, stored.topic);
        }
        Ok(topics)
    }

    /// Writes (or replaces) the file of `name` durably.
    pub async fn store(&self, name: &str, topic: &StoredTopic) -> Result<(), MetadataError> {
        let file = TopicFile {
            version: FORMAT_VERSION,
            name: name.to_string(),
            topic: topic.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file)
            .expect("a topic file serializes: plain maps, strings and integers");
        check_size(&bytes)?;
        write_durable(
            &self.disk,
            &self.directory,
            &format!("{name}{TOPIC_FILE_SUFFIX}"),
            bytes,
        )
        .await?;
        Ok(())
    }

    /// Removes the file of `name`, if there is one.
    pub async fn remove(&self, name: &str) -> Result<(), DiskError> {
        let path = self.directory.join(format!("{name}{TOPIC_FILE_SUFFIX}"));
        match self.disk.remove_file(&path).await {
            Ok(()) => self.disk.sync_dir(&self.directory).await,
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Makes the files match `topics` (the source of truth): writes missing or different
    /// ones, removes those of topics that no longer exist. Run at every start, so a data
    /// directory from an older build, or a crash between a topic file and `metadata.json`,
    /// ends with files that match.
    pub async fn sync_with(
        &self,
        topics: &BTreeMap<String, StoredTopic>,
    ) -> Result<(), MetadataError> {
        let on_disk = self.load_all().await?;
        for (name, topic) in topics {
            if on_disk.get(name) != Some(topic) {
                self.store(name, topic).await?;
            }
        }
        for name in on_disk.keys() {
            if !topics.contains_key(name) {
                self.remove(name).await?;
            }
        }
        Ok(())
    }
}

fn check_size(bytes: &[u8]) -> Result<(), MetadataError> {
    let bytes = bytes.len() as u64;
    if bytes > METADATA_FILE_BYTES_MAX {
        return Err(MetadataError::TooLarge { bytes });
    }
    Ok(())
}

/// Reads a whole metadata or topic file, refusing one over [`METADATA_FILE_BYTES_MAX`].
async fn read_whole<F: DiskFile>(file: &F, path: &Path) -> Result<Vec<u8>, MetadataError> {
    let len = file.len().await?;
    if len > METADATA_FILE_BYTES_MAX {
        return Err(MetadataError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "the file is {len} bytes, over the {METADATA_FILE_BYTES_MAX} a metadata file may have; it is not one this node wrote"
            ),
        });
    }
    let len = usize::try_from(len).expect("at most METADATA_FILE_BYTES_MAX, which fits usize");
    Ok(file.read_at(0, len).await?)
}

/// Replaces `<directory>/<name>` with `bytes` so a crash leaves the old or the new file,
/// never a mix: written to `<name>.tmp`, synced, renamed over, and the directory synced.
pub(crate) async fn write_durable<D: Disk>(
    disk: &D,
    directory: &Path,
    name: &str,
    bytes: Vec<u8>,
) -> Result<(), DiskError> {
    let path = directory.join(name);
    let temporary = directory.join(format!("{name}.tmp"));
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error),
    }
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(bytes)).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &path).await?;
    disk.sync_dir(directory).await
}
