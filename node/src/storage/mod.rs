//! The storage engine: segmented partition logs on a [`disk::Disk`].
//!
//! Pure parts (no IO, tested alone): [`segment`] (names, header, roll policy), [`index`]
//! (sparse offset and time indexes), [`checkpoint`] (recovery point and log start),
//! [`leader_epoch`] (epoch -> start offset, KIP-101/279),
//! [`recovery`] (scanning bytes for valid batches), [`verify`] (checking sealed segments
//! in the background, one paced step at a time). The driver is [`log::PartitionLog`],
//! which applies their decisions through a `Disk`; the broker opens every partition of a
//! data directory and keeps the healthy ones serving when one is damaged.

pub mod checkpoint;
pub mod compaction;
pub mod disk;
pub mod dump;
pub mod group_commit;
pub mod index;
pub mod leader_epoch;
pub mod log;
pub mod partition_key;
pub mod producers;
pub mod record_count;
pub mod recovery;
pub mod repair;
pub mod retention;
pub mod segment;
pub mod snapshot;
pub mod storage_id;
pub mod verify;

pub use disk::{BackendChoice, Disk, DiskError, DiskFile, OpenMode, SystemDisk};
pub use log::{
    AppendBatchesError, AppendDurability, AppendError, AppendInput, AppendOutcome, DeleteError,
    LogConfig, OpenError, PartitionLog, QueuedBatches, ReadBatches, ReadError,
};
pub use partition_key::PartitionKey;
