//! The high-watermark checkpoint (Kafka's `replication-offset-checkpoint`): the replicated
//! high watermark of every partition this node hosts, so a restarted node does not start
//! from 0.
//!
//! Without it a node that leads after a restart starts at high watermark 0 and moves it up
//! only once every ISR member has fetched in the new epoch and the ISR holds
//! `min.insync.replicas`: until then consumers get nothing (and `ListOffsets` latest says
//! 0), and a last replica restarted below `min.insync.replicas` served none of the records
//! committed before its restart. With it, the node starts each partition at
//! `min(checkpointed, local synced end)`. That is safe to show: a checkpointed value was a
//! high watermark this node held (as leader, or as follower: the leader's, capped at its own
//! synced end), so every record below it was on every ISR member's disk then, and a clean
//! election never elects a replica without them; the log end cap covers a log cut since
//! (a damaged replica's repair). A value that is too old is merely low.
//!
//! The file is `<data-dir>/high-watermark-checkpoint`, text: a header line
//! `ledge-high-watermarks <version> <count> <crc32c of the rest, 8 hex digits>`, then one line
//! per partition, `<topic id, 32 hex digits> <partition> <high watermark>`. Partitions are
//! keyed by topic id, so a topic deleted and created again under its name never inherits the
//! old one's value. It is replaced whole with `broker::metadata::write_durable` (a temporary
//! file, fdatasync, rename, directory fsync), at most once per
//! `cluster.high_watermark_checkpoint_interval_ms` and only when a value changed. A file
//! that does not decode (damaged, truncated, another format) is a warning and the node
//! starts every partition from 0, as without a file; it never stops a start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::controller::TopicId;
use crate::storage::{Disk, DiskError, DiskFile, OpenMode};

/// The checkpoint's file name in the data directory.
pub const HIGH_WATERMARK_CHECKPOINT_FILE: &str = "high-watermark-checkpoint";

/// The largest checkpoint file read (a line is at most ~75 bytes, so this holds about
/// 900,000 partitions); a larger file is not one this node wrote.
pub const HIGH_WATERMARK_CHECKPOINT_BYTES_MAX: usize = 64 << 20;

/// Default `cluster.high_watermark_checkpoint_interval_ms` (Kafka's
/// `replica.high.watermark.checkpoint.interval.ms`).
pub const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 5_000;

/// Default `cluster.damaged_retention_ms`: 7 days, time to look at the cut bytes of a
/// repaired replica (`replication::manager`'s housekeeping deletes them after it, once the
/// replica is healthy).
pub const DAMAGED_RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;

const MAGIC: &str = "ledge-high-watermarks";
const FORMAT_VERSION: u32 = 1;

/// High watermarks by (topic id, partition).
pub type HighWatermarks = BTreeMap<(TopicId, u32), i64>;

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HighWatermarkCheckpointError {
    /// Reading the file failed.
    #[error("reading the high-watermark checkpoint: {0}")]
    Disk(#[from] DiskError),
    /// The file is not a checkpoint this node wrote, or was damaged since.
    #[error("high-watermark checkpoint {path} is damaged: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The checkpoint's bytes for `high_watermarks`.
pub fn encode(high_watermarks: &HighWatermarks) -> Vec<u8> {
    let mut body = String::new();
    for ((topic_id, partition), high_watermark) in high_watermarks {
        let _ = writeln!(body, "{topic_id} {partition} {high_watermark}");
    }
    format!(
        "{MAGIC} {FORMAT_VERSION} {} {:08x}\n{body}",
        high_watermarks.len(),
        crc32c::crc32c(body.as_bytes())
    )
    .into_bytes()
}

/// Decodes a checkpoint; why not, if it is not one [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<HighWatermarks, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_owned())?;
    let (header, body) = text
        .split_once('\n')
        .ok_or_else(|| "no header line".to_owned())?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, count, crc] = fields.as_slice() else {
        return Err(format!(
            "header {header:?} is not `{MAGIC} <version> <count> <crc>`"
        ));
    };
    if *magic != MAGIC {
        return Err(format!("header {header:?} does not start with {MAGIC}"));
    }
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(format!(
            "format version {version:?}, this node reads {FORMAT_VERSION}"
        ));
    }
    let count: usize = count
        .parse()
        .map_err(|_| format!("partition count {count:?} is not a number"))?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| format!("checksum {crc:?} is not hex"))?;
    let computed = crc32c::crc32c(body.as_bytes());
    if crc != computed {
        return Err(format!(
            "CRC-32C mismatch: stored {crc:08x}, computed {computed:08x}"
        ));
    }
    let mut high_watermarks = HighWatermarks::new();
    for (number, line) in body.lines().enumerate() {
        let bad = |what: &str| format!("line {}: {what}: {line:?}", number + 2);
        let mut parts = line.split(' ');
        let (Some(topic_id), Some(partition), Some(high_watermark), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("not `<topic id> <partition> <high watermark>`"));
        };
        let topic_id = TopicId::parse_hex(topic_id).ok_or_else(|| bad("bad topic id"))?;
        let partition: u32 = partition.parse().map_err(|_| bad("bad partition"))?;
        let high_watermark: i64 = high_watermark
            .parse()
            .ok()
            .filter(|value| *value >= 0)
            .ok_or_else(|| bad("bad high watermark"))?;
        if high_watermarks
            .insert((topic_id, partition), high_watermark)
            .is_some()
        {
            return Err(bad("partition listed twice"));
        }
    }
    if high_watermarks.len() != count {
        return Err(format!(
            "the header counts {count} partitions, the file lists {}",
            high_watermarks.len()
        ));
    }
    Ok(high_watermarks)
}

/// Reads the checkpoint in `data_dir`; `None` if there is none (a new node, or one from
/// before checkpoints).
pub async fn load<D: Disk>(
    disk: &D,
    data_dir: &Path,
) -> Result<Option<HighWatermarks>, HighWatermarkCheckpointError> {
    let path = data_dir.join(HIGH_WATERMARK_CHECKPOINT_FILE);
    let file = match disk.open(&path, OpenMode::Read).await {
        Ok(file) => file,
        Err(error) if error.is_not_found() => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let length = file.len().await?;
    // One byte more than a valid file may hold: an oversized file is refused by length.
    let want = usize::try_from(length)
        .unwrap_or(usize::MAX)
        .min(HIGH_WATERMARK_CHECKPOINT_BYTES_MAX + 1);
    if want > HIGH_WATERMARK_CHECKPOINT_BYTES_MAX {
        return Err(HighWatermarkCheckpointError::Damaged {
            path,
            reason: format!(
                "{length} bytes, over the {HIGH_WATERMARK_CHECKPOINT_BYTES_MAX} a checkpoint may have"
            ),
        });
    }
    let bytes = file.read_at(0, want).await?;
    decode(&bytes)
        .map(Some)
        .map_err(|reason| HighWatermarkCheckpointError::Damaged { path, reason })
}

/// Replaces the checkpoint in `data_dir` with `high_watermarks`, durably.
pub async fn store<D: Disk>(
    disk: &D,
    data_dir: &Path,
    high_watermarks: &HighWatermarks,
) -> Result<(), DiskError> {
    crate::broker::metadata::write_durable(
        disk,
        data_dir,
        HIGH_WATERMARK_CHECKPOINT_FILE,
        encode(high_watermarks),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HighWatermarks {
        HighWatermarks::from([
            ((TopicId::derive(7, "orders"), 0), 120),
            ((TopicId::derive(7, "orders"), 1), 0),
            ((TopicId::derive(9, "events"), 3), i64::MAX),
        ])
    }

    // Goal: what `encode` writes, `decode` reads back, an empty map included.
    #[test]
    fn a_checkpoint_round_trips() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
        assert_eq!(
            decode(&encode(&HighWatermarks::new())).unwrap(),
            HighWatermarks::new()
        );
    }

    // Goal: every damage to a written checkpoint is refused with a reason, never read as
    // other values (a value read too high would show consumers uncommitted records). Method:
    // every single-bit flip and every truncation of a real file.
    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let bytes = encode(&sample());
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[index] ^= 1 << bit;
                if let Ok(decoded) = decode(&flipped) {
                    assert_eq!(decoded, sample(), "byte {index} bit {bit}");
                }
            }
        }
        for length in 0..bytes.len() {
            assert!(decode(&bytes[..length]).is_err(), "cut at {length}");
        }
        for bad in [
            &b"\xff\xfe"[..],
            b"ledge-high-watermarks 2 0 00000000\n",
            b"something else entirely",
            b"ledge-high-watermarks 1 1 00000000\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    // Goal: the file on disk: missing is `None`, stored is read back, damaged and oversized
    // are errors naming the file (the caller warns and starts from 0).
    #[tokio::test]
    async fn stored_checkpoints_load_and_damaged_ones_are_errors() {
        let disk = crate::sim::SimDisk::new(1);
        let data_dir = Path::new("/data");
        disk.create_dir_all(data_dir).await.unwrap();
        assert!(load(&disk, data_dir).await.unwrap().is_none());
        store(&disk, data_dir, &sample()).await.unwrap();
        assert_eq!(load(&disk, data_dir).await.unwrap(), Some(sample()));
        let path = data_dir.join(HIGH_WATERMARK_CHECKPOINT_FILE);
        assert!(disk.corrupt_bit(&path, 60, 0));
        let error = load(&disk, data_dir).await.unwrap_err();
        assert!(
            matches!(&error, HighWatermarkCheckpointError::Damaged { path: named, .. } if *named == path),
            "{error}"
        );
    }
}
