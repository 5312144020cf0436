//! The leader-epoch checkpoint of one partition: which leader epoch started at which offset
//! (Kafka's `leader-epoch-checkpoint`, KIP-101 and KIP-279).
//!
//! Owns: the pure [`LeaderEpochCache`] (the epoch -> start offset entries, the KIP-279
//! `end_offset_for_epoch` query, the cuts that follow a truncation or a log start move), its
//! file format, and the durable load and store of that file on the [`Disk`] seam. Does not
//! own: when epochs change (the replication state machines decide; the log calls
//! [`LeaderEpochCache::assign`] for the batches it writes).
//!
//! Invariants kept by every method:
//! - epochs strictly increase from entry to entry, and so do start offsets: an epoch that
//!   held no batch is replaced by the next one that does (Kafka's "remove conflicting
//!   entries");
//! - every epoch is >= 0 and every start offset is >= 0.
//!
//! The file is small and rewritten whole: a temporary file, `fdatasync`, a rename over the
//! final name and a `fsync` of the directory, so after a crash the name holds the old or the
//! new entries, never a mix. The batches' `partitionLeaderEpoch` fields are the source of
//! truth: a missing or damaged file is rebuilt from them ([`LeaderEpochCache::from_batches`]),
//! never a reason to refuse to open.
//!
//! File layout (big-endian): magic `LEPC` (4), format version u16 (2), reserved u16 (2),
//! entry count u32 (4), then per entry epoch i32 (4) + start offset i64 (8), then a CRC-32C
//! (4) of everything before it.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::disk::{Disk, DiskError, DiskFile, OpenMode};

/// The name of the checkpoint file in a partition directory.
pub const LEADER_EPOCH_FILE_NAME: &str = "leader-epoch-checkpoint";
/// The temporary name it is written under before the rename.
const TEMPORARY_FILE_NAME: &str = "leader-epoch-checkpoint.tmp";
const MAGIC: [u8; 4] = *b"LEPC";
const FORMAT_VERSION: u16 = 1;
const HEADER_BYTES: usize = 12;
const ENTRY_BYTES: usize = 12;
const CHECKSUM_BYTES: usize = 4;
/// The most entries a partition keeps. A leader epoch is bumped once per leader change, and
/// entries below the log start are dropped, so a real partition holds a handful; the bound
/// keeps a damaged or hostile count from sizing an allocation, and an `assign` past it is
/// refused (the caller fences the log rather than forget an epoch).
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1 << 16;
/// The largest file a valid checkpoint can be.
pub const LEADER_EPOCH_FILE_BYTES_MAX: usize =
    HEADER_BYTES + LEADER_EPOCH_ENTRIES_MAX * ENTRY_BYTES + CHECKSUM_BYTES;

/// One leader epoch and the first offset written in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch (Kafka's `partitionLeaderEpoch`).
    pub epoch: i32,
    /// The offset of the first batch written in that epoch.
    pub start_offset: i64,
}

/// The answer to "where does epoch E end?" (KIP-279 OffsetForLeaderEpoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochEnd {
    /// The asked epoch is before the first known one, or after the latest (Kafka's
    /// `UNDEFINED_EPOCH`/`UNDEFINED_EPOCH_OFFSET`): nothing here can say where it ends.
    Undefined,
    /// The largest known epoch <= the asked one, and the offset where it ends: the start of
    /// the next known epoch, or the log end offset for the latest.
    Known {
        /// The largest epoch <= the asked one.
        epoch: i32,
        /// One past its last offset.
        end_offset: i64,
    },
}

/// Why an epoch could not be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AssignEpochError {
    /// The epoch is below the latest one recorded: batches must carry non-decreasing epochs.
    #[error("leader epoch {epoch} is below the latest recorded epoch {latest}")]
    EpochWentBackwards {
        /// The epoch asked for.
        epoch: i32,
        /// The latest recorded.
        latest: i32,
    },
    /// The start offset is below the latest epoch's start: offsets only grow.
    #[error(
        "leader epoch {epoch} would start at {start_offset}, below epoch {latest}'s start {latest_start}"
    )]
    OffsetWentBackwards {
        /// The epoch asked for.
        epoch: i32,
        /// Its start offset.
        start_offset: i64,
        /// The latest recorded epoch.
        latest: i32,
        /// Where that epoch starts.
        latest_start: i64,
    },
    /// A negative epoch or offset (only the wire codec's sentinels are negative).
    #[error("leader epoch {epoch} at offset {start_offset}: negative values are not epochs")]
    Negative {
        /// The epoch asked for.
        epoch: i32,
        /// Its start offset.
        start_offset: i64,
    },
    /// [`LEADER_EPOCH_ENTRIES_MAX`] entries are kept already.
    #[error("a partition keeps at most {LEADER_EPOCH_ENTRIES_MAX} leader epochs")]
    TooMany,
}

/// Why a checkpoint file's bytes were refused (the caller rebuilds from the batches).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaderEpochFileError {
    /// Shorter than a header and a checksum, or not as long as its count says.
    #[error("leader-epoch checkpoint is {actual} bytes, expected {expected}")]
    BadLength {
        /// Bytes the file holds.
        actual: usize,
        /// Bytes its header implies.
        expected: usize,
    },
    /// Not this format.
    #[error("leader-epoch checkpoint has the wrong magic")]
    BadMagic,
    /// Written by a newer Ledge.
    #[error("leader-epoch checkpoint format version {0} is not {FORMAT_VERSION}")]
    UnknownVersion(u16),
    /// The checksum does not match: torn or damaged.
    #[error("leader-epoch checkpoint fails its checksum")]
    BadChecksum,
    /// More entries than any partition keeps.
    #[error("leader-epoch checkpoint claims {0} entries, more than {LEADER_EPOCH_ENTRIES_MAX}")]
    TooManyEntries(u32),
    /// The entries break the ordering invariant.
    #[error("leader-epoch checkpoint entry {index} is out of order: {reason}")]
    Unordered {
        /// The entry.
        index: usize,
        /// What is wrong with it.
        reason: AssignEpochError,
    },
}

/// Why loading or storing the checkpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderEpochIoError {
    /// The disk refused an operation.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

/// The epoch -> start offset entries of one partition, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// No epochs known (a new partition).
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest entry, if any.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.latest().map(|entry| entry.epoch)
    }

    /// Rebuilds the entries from the `(partition_leader_epoch, base_offset)` of each batch of
    /// the log, in offset order: each epoch starts at its first batch. A batch whose epoch is
    /// below an earlier one is skipped with its reason returned, so damage never stops the
    /// rebuild (the log's own checks report the batch).
    pub fn from_batches(
        batches: impl IntoIterator<Item = (i32, i64)>,
    ) -> (Self, Vec<AssignEpochError>) {
        let mut cache = Self::new();
        let mut refused = Vec::new();
        for (epoch, base_offset) in batches {
            if let Err(error) = cache.assign(epoch, base_offset) {
                refused.push(error);
            }
        }
        (cache, refused)
    }

    /// Records that `epoch` starts at `start_offset` (the base offset of its first batch).
    /// Returns whether the entries changed (then the file must be stored before the batch is
    /// acknowledged, or a crash could leave a batch of an unknown epoch; the rebuild would
    /// still find it, so it is a cost, not a loss). The same epoch again is no change; an
    /// entry at or past `start_offset` is replaced (its epoch held no batch).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool, AssignEpochError> {
        if epoch < 0 || start_offset < 0 {
            return Err(AssignEpochError::Negative {
                epoch,
                start_offset,
            });
        }
        if let Some(latest) = self.latest() {
            if epoch == latest.epoch {
                return Ok(false);
            }
            if epoch < latest.epoch {
                return Err(AssignEpochError::EpochWentBackwards {
                    epoch,
                    latest: latest.epoch,
                });
            }
            if start_offset < latest.start_offset {
                return Err(AssignEpochError::OffsetWentBackwards {
                    epoch,
                    start_offset,
                    latest: latest.epoch,
                    latest_start: latest.start_offset,
                });
            }
            // An epoch that started where this one starts wrote nothing: replace it.
            if start_offset == latest.start_offset {
                self.entries.pop();
            }
        }
        if self.entries.len() >= LEADER_EPOCH_ENTRIES_MAX {
            return Err(AssignEpochError::TooMany);
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        Ok(true)
    }

    /// KIP-279: where the asked epoch ends in a log whose end offset is `log_end_offset`.
    /// The largest known epoch <= `epoch`, with the start offset of the epoch after it, or
    /// `log_end_offset` when that is the latest; [`EpochEnd::Undefined`] when `epoch` is
    /// before the first known epoch or after the latest (Kafka answers the latter
    /// `UNDEFINED` too: a follower cannot have fetched an epoch its leader never had).
    pub fn end_offset_for_epoch(&self, epoch: i32, log_end_offset: i64) -> EpochEnd {
        let Some(latest) = self.latest() else {
            return EpochEnd::Undefined;
        };
        if epoch == latest.epoch {
            return EpochEnd::Known {
                epoch,
                end_offset: log_end_offset,
            };
        }
        if epoch > latest.epoch {
            return EpochEnd::Undefined;
        }
        // The first entry with a larger epoch exists (the latest one, at least).
        let after = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let (Some(floor), Some(next)) = (
            after.checked_sub(1).and_then(|at| self.entries.get(at)),
            self.entries.get(after),
        ) else {
            return EpochEnd::Undefined;
        };
        EpochEnd::Known {
            epoch: floor.epoch,
            end_offset: next.start_offset,
        }
    }

    /// The epoch of the batch at `offset`: the latest entry starting at or below it.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let after = self
            .entries
            .partition_point(|entry| entry.start_offset <= offset);
        after
            .checked_sub(1)
            .and_then(|at| self.entries.get(at))
            .map(|entry| entry.epoch)
    }

    /// Follows a truncation of the log to `end_offset` (everything from it on is gone):
    /// drops the epochs that started at or after it. Returns whether anything changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Follows a move of the log start to `start_offset`: drops the epochs wholly below it
    /// and moves the start of the one holding it up to it (Kafka does the same), so the
    /// entries never point below the log. Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        // The entries starting at or below the new start: all but the last are wholly below.
        let at_or_below = self
            .entries
            .partition_point(|entry| entry.start_offset <= start_offset);
        let Some(holding) = at_or_below.checked_sub(1) else {
            return false;
        };
        let mut changed = holding > 0;
        self.entries.drain(..holding);
        if let Some(first) = self.entries.first_mut()
            && first.start_offset < start_offset
        {
            first.start_offset = start_offset;
            changed = true;
        }
        changed
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes =
            Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES + CHECKSUM_BYTES);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        let count = u32::try_from(self.entries.len())
            .expect("assign keeps at most LEADER_EPOCH_ENTRIES_MAX entries");
        bytes.extend_from_slice(&count.to_be_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.epoch.to_be_bytes());
            bytes.extend_from_slice(&entry.start_offset.to_be_bytes());
        }
        let checksum = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&checksum.to_be_bytes());
        bytes
    }

    /// Reads a file's bytes; never panics, whatever they are.
    pub fn decode(bytes: &[u8]) -> Result<Self, LeaderEpochFileError> {
        let length_error = |expected| LeaderEpochFileError::BadLength {
            actual: bytes.len(),
            expected,
        };
        let header = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| length_error(HEADER_BYTES + CHECKSUM_BYTES))?;
        if header.get(..4) != Some(&MAGIC[..]) {
            return Err(LeaderEpochFileError::BadMagic);
        }
        let version = u16::from_be_bytes(field(header, 4));
        let count = u32::from_be_bytes(field(header, 8));
        if count as usize > LEADER_EPOCH_ENTRIES_MAX {
            return Err(LeaderEpochFileError::TooManyEntries(count));
        }
        let body_bytes = HEADER_BYTES + count as usize * ENTRY_BYTES;
        if bytes.len() != body_bytes + CHECKSUM_BYTES {
            return Err(length_error(body_bytes + CHECKSUM_BYTES));
        }
        let (body, checksum) = bytes.split_at(body_bytes);
        if crc32c::crc32c(body) != u32::from_be_bytes(field(checksum, 0)) {
            return Err(LeaderEpochFileError::BadChecksum);
        }
        // The version is judged after the checksum, so a torn file is not read as "newer".
        if version != FORMAT_VERSION {
            return Err(LeaderEpochFileError::UnknownVersion(version));
        }
        let mut cache = Self::new();
        for (index, entry) in body
            .get(HEADER_BYTES..)
            .unwrap_or_default()
            .chunks_exact(ENTRY_BYTES)
            .enumerate()
        {
            let epoch = i32::from_be_bytes(field(entry, 0));
            let start_offset = i64::from_be_bytes(field(entry, 4));
            // A stored file is strictly ordered: anything `assign` would merge or refuse is
            // damage that happens to pass the checksum (or a bug), not a file we wrote.
            let strictly_after = cache
                .latest()
                .is_none_or(|latest| epoch > latest.epoch && start_offset > latest.start_offset);
            let assigned = if strictly_after {
                cache.assign(epoch, start_offset)
            } else {
                Err(AssignEpochError::OffsetWentBackwards {
                    epoch,
                    start_offset,
                    latest: cache.latest_epoch().unwrap_or(-1),
                    latest_start: cache.latest().map_or(-1, |latest| latest.start_offset),
                })
            };
            if let Err(reason) = assigned {
                return Err(LeaderEpochFileError::Unordered { index, reason });
            }
        }
        Ok(cache)
    }
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(source) = bytes.get(at..at + N) {
        out.copy_from_slice(source);
    }
    out
}

/// What [`load`] found in a partition directory.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadedEpochs {
    /// A valid file.
    Loaded(LeaderEpochCache),
    /// No file: a partition from before replication, or a crash before its first store.
    Missing,
    /// A file that failed its checks; rebuild from the batches (and say why in the log).
    Damaged(LeaderEpochFileError),
}

/// Reads the checkpoint of partition directory `directory`.
pub async fn load<D: Disk>(disk: &D, directory: &Path) -> Result<LoadedEpochs, LeaderEpochIoError> {
    let path = directory.join(LEADER_EPOCH_FILE_NAME);
    let file = match disk.open(&path, OpenMode::Read).await {
        Ok(file) => file,
        Err(error) if error.is_not_found() => return Ok(LoadedEpochs::Missing),
        Err(error) => return Err(error.into()),
    };
    let length = file.len().await?;
    // Read one byte more than a valid file can hold, so an oversized file is refused by its
    // length without reading all of it.
    let want = usize::try_from(length)
        .unwrap_or(usize::MAX)
        .min(LEADER_EPOCH_FILE_BYTES_MAX + 1);
    let bytes = file.read_at(0, want).await?;
    Ok(match LeaderEpochCache::decode(&bytes) {
        Ok(cache) => LoadedEpochs::Loaded(cache),
        Err(error) => LoadedEpochs::Damaged(error),
    })
}

/// Replaces the checkpoint of partition directory `directory` with `cache`, durably: a
/// temporary file, `fdatasync`, rename, directory `fsync`. When it returns `Ok`, a crash
/// leaves exactly these entries.
pub async fn store<D: Disk>(
    disk: &D,
    directory: &Path,
    cache: &LeaderEpochCache,
) -> Result<(), LeaderEpochIoError> {
    let temporary = temporary_path(directory);
    // A temporary left by a crash in the middle of an earlier store is stale.
    match disk.remove_file(&temporary).await {
        Ok(()) => {}
        Err(error) if error.is_not_found() => {}
        Err(error) => return Err(error.into()),
    }
    let file = disk.open(&temporary, OpenMode::CreateNew).await?;
    file.write_at(0, Bytes::from(cache.encode())).await?;
    file.sync_data().await?;
    drop(file);
    disk.rename(&temporary, &directory.join(LEADER_EPOCH_FILE_NAME))
        .await?;
    disk.sync_dir(directory).await?;
    Ok(())
}

fn temporary_path(directory: &Path) -> PathBuf {
    directory.join(TEMPORARY_FILE_NAME)
}

#[cfg(test)]
mod tests;
