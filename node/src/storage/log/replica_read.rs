//! The verified read: what a leader serves a follower, and what a replica checks its own log
//! with, so damaged bytes are never copied to another replica nor counted as replicated
//! (issue 13 item 4).
//!
//! The consumer read path (`read.rs`) trusts bytes recovery or the writer validated and
//! serves them without a CRC pass; damage that happens later is found by the background
//! verifier. A replica cannot wait for that: a bad batch copied by a follower would be on
//! two disks, and a follower's position would count it as replicated. So this read checks
//! every batch before handing it out (CRC, framing, the base offset continuing the previous
//! batch, the leader epoch the checkpoint gives its offset) and stops at the first bad one,
//! reporting its offset: the good prefix is served, the bad bytes never.

use bytes::Bytes;
use ledge_protocol::{BatchIter, validate_batch};

use super::PartitionLog;
use super::error::ReadError;
use crate::storage::disk::Disk;

/// Batches checked one by one, and where the first bad one starts, if one was met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRead {
    /// Whole batches that passed every check, from the requested offset on.
    pub bytes: Bytes,
    /// The offset after the last batch in `bytes` (the requested one if it is empty).
    pub end_offset: i64,
    /// The first bad batch met, if the read stopped at one.
    pub damage: Option<BatchDamage>,
}

/// A batch that failed its checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchDamage {
    /// The first offset the damaged bytes stand for: everything from it on is suspect. A
    /// replica truncates to it and fetches again from its leader.
    pub offset: i64,
    /// What is wrong.
    pub reason: String,
}

impl<D: Disk> PartitionLog<D> {
    /// Reads whole batches from `from_offset` up to `max_bytes` (at least one batch if any
    /// is good), as [`read`](Self::read) does, checking each batch first; stops before the
    /// first bad batch and reports it. A read the disk cannot serve (a file shorter than the
    /// log says) is reported as damage at the offset it was for; other errors (out of range,
    /// IO) are returned.
    pub async fn read_verified(
        &self,
        from_offset: i64,
        max_bytes: usize,
    ) -> Result<VerifiedRead, ReadError> {
        let read = match self.read(from_offset, max_bytes).await {
            Ok(read) => read,
            Err(ReadError::Corrupt {
                path,
                position,
                reason,
            }) => {
                return Ok(VerifiedRead {
                    bytes: Bytes::new(),
                    end_offset: from_offset,
                    damage: Some(BatchDamage {
                        offset: from_offset,
                        reason: format!("{} at position {position}: {reason}", path.display()),
                    }),
                });
            }
            Err(other) => return Err(other),
        };
        let epochs = self.leader_epochs();
        let mut good = 0usize;
        let mut expected: Option<i64> = None;
        let mut end_offset = from_offset;
        let mut damage = None;
        let mut batches = BatchIter::new(&read.bytes);
        for item in batches.by_ref() {
            let checked = item.map_err(|error| error.to_string()).and_then(|(header, bytes)| {
                validate_batch(bytes).map_err(|error| error.to_string())?;
                // Compaction may leave gaps between batches; offsets never go back.
                let floor = expected.unwrap_or(i64::MIN);
                if header.base_offset < floor {
                    return Err(format!(
                        "batch base offset {} is below {floor}, where the batch before ended",
                        header.base_offset
                    ));
                }
                if let Some(epoch) = epochs.epoch_at(header.base_offset)
                    && epoch != header.partition_leader_epoch
                {
                    return Err(format!(
                        "batch at offset {} carries leader epoch {}, the checkpoint says {epoch}",
                        header.base_offset, header.partition_leader_epoch
                    ));
                }
                Ok((header, bytes.len()))
            });
            match checked {
                Ok((header, length)) => {
                    good += length;
                    expected = Some(header.last_offset() + 1);
                    end_offset = header.last_offset() + 1;
                }
                Err(reason) => {
                    damage = Some(BatchDamage {
                        offset: end_offset.max(from_offset),
                        reason,
                    });
                    break;
                }
            }
        }
        Ok(VerifiedRead {
            bytes: read.bytes.slice(..good),
            end_offset,
            damage,
        })
    }
}
