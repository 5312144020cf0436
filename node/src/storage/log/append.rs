//! The append path: each batch is checked on the caller's task, then handed to the writer
//! task in one command.

use bytes::Bytes;
use ledge_protocol::{BatchError, BatchHeader, DecodeError, DecodeLimits, validate_batch_records};
use tokio::sync::oneshot;

use super::error::{AppendBatchesError, AppendError};
use super::{Command, PartitionLog, PendingAppend};
use crate::storage::disk::Disk;

/// How durable an append must be before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendDurability {
    /// Written to the file (page cache); synced within `flush_interval` (Kafka acks=1).
    Written,
    /// Synced with `fdatasync` (Kafka acks=all).
    Synced,
}

/// Offsets the broker stamped on an appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

/// One batch of an [`PartitionLog::append_batches`] call: what `append` or
/// `append_with_gaps` takes.
#[derive(Clone, Debug)]
pub struct AppendInput {
    /// One RecordBatch v2.
    pub batch: Bytes,
    /// True for a batch the node rewrote (see [`PartitionLog::append_with_gaps`]).
    pub gaps_allowed: bool,
}

impl<D: Disk> PartitionLog<D> {
    /// Appends one RecordBatch v2 and returns the offsets the log stamped on it.
    ///
    /// The batch's CRC, framing and records (their count and layout, not their contents)
    /// are checked here, on the caller's task, so the writer only copies and writes. Its base offset and partition leader epoch are overwritten
    /// (the CRC does not cover them).
    pub async fn append(
        &self,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_spanning(batch, durability, false).await
    }

    /// [`append`](Self::append) for a batch the node rewrote (a produce filter dropped
    /// records): it may hold fewer records than its offset span, even none, and still
    /// takes the whole span, so a producer's sequence numbers keep lining up.
    pub async fn append_with_gaps(
        &self,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<AppendOutcome, AppendError> {
        self.append_spanning(batch, durability, true).await
    }

    pub(super) async fn append_spanning(
        &self,
        batch: Bytes,
        durability: AppendDurability,
        gaps_allowed: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let (max, limits) = self.append_limits();
        let header = validate_append(&batch, gaps_allowed, max, &limits)?;
        self.refuse_if_fenced()?;
        let (reply, outcome) = oneshot::channel();
        let pending = PendingAppend {
            batch,
            header,
            durability,
            reply,
            chain: None,
            follower: false,
        };
        self.commands
            .send(Command::Append(vec![pending]))
            .await
            .map_err(|_| AppendError::Closed)?;
        outcome.await.map_err(|_| AppendError::Closed)?
    }

    /// Appends `batches` in order as one group: they share one write and one fdatasync
    /// (one wait for the durability of the last), where `append` per batch would wait for
    /// each in turn. Each batch is checked here, on the caller's task, as `append` checks
    /// it. If one fails (its checks, its producer sequence, a fence), none after it is
    /// appended, and the error names it and holds the outcomes of those before it.
    pub async fn append_batches(
        &self,
        batches: Vec<AppendInput>,
        durability: AppendDurability,
    ) -> Result<Vec<AppendOutcome>, AppendBatchesError> {
        self.append_chain(batches, durability, false).await
    }

    /// [`append_batches`](Self::append_batches) in two steps: returns once the batches are
    /// checked and queued in the partition's writer (sequenced: an append queued after
    /// this returns is written after them, and their producer sequences are checked in
    /// that order), before they are written or synced; [`QueuedBatches::outcomes`] then
    /// waits for the durability asked. A caller that must keep its appends in order (a
    /// Kafka connection's pipelined produces) starts the next one after this returns, so
    /// several appends can share one write and one fdatasync.
    pub async fn enqueue_batches(
        &self,
        batches: Vec<AppendInput>,
        durability: AppendDurability,
    ) -> Result<QueuedBatches, AppendBatchesError> {
        self.enqueue_chain(batches, durability, false).await
    }

    /// Appends a leader's batches on a follower, as they are on the leader: their base
    /// offsets and leader epochs are kept (not stamped), each must continue the log (its
    /// base offset is the log end, its epoch not below the latest), and each is checked
    /// (size, CRC, records) as `append` checks it, so a batch damaged on the way or on the
    /// leader is never written. Idempotent producers' state is taken from the batches (no
    /// sequence check: the leader made it), so a retry after a failover is still found a
    /// duplicate. Answered once synced (`fdatasync`): the follower reports as its position
    /// only what is on its disk. The log's leader-epoch checkpoint is stored before a batch
    /// of a new epoch is written.
    pub async fn append_as_follower(
        &self,
        records: Bytes,
    ) -> Result<Vec<AppendOutcome>, AppendBatchesError> {
        let mut batches = Vec::new();
        let mut iter = ledge_protocol::BatchIter::new(&records);
        for item in iter.by_ref() {
            match item {
                Ok((_, bytes)) => batches.push(AppendInput {
                    batch: records.slice_ref(bytes),
                    // A leader's batch may have been compacted or rewritten by a filter.
                    gaps_allowed: true,
                }),
                Err(error) => {
                    // A partial or damaged batch is refused with the batches before it
                    // appended, as a damaged batch in the middle would be.
                    let appended = self
                        .append_chain(batches, AppendDurability::Synced, true)
                        .await?;
                    return Err(AppendBatchesError {
                        index: appended.len(),
                        count: appended.len() + 1,
                        error: AppendError::InvalidBatch(error),
                        appended,
                    });
                }
            }
        }
        self.append_chain(batches, AppendDurability::Synced, true)
            .await
    }

    async fn append_chain(
        &self,
        batches: Vec<AppendInput>,
        durability: AppendDurability,
        follower: bool,
    ) -> Result<Vec<AppendOutcome>, AppendBatchesError> {
        self.enqueue_chain(batches, durability, follower)
            .await?
            .outcomes()
            .await
    }

    /// Checks `batches` and queues those before the first that fails its checks in the
    /// writer, as one chain.
    async fn enqueue_chain(
        &self,
        batches: Vec<AppendInput>,
        durability: AppendDurability,
        follower: bool,
    ) -> Result<QueuedBatches, AppendBatchesError> {
        let count = batches.len();
        let fail = |index, error, appended| AppendBatchesError {
            index,
            count,
            error,
            appended,
        };
        let (max, limits) = self.append_limits();
        let mut pending = Vec::with_capacity(count);
        let mut outcomes = Vec::with_capacity(count);
        // The first batch that fails its checks, if any: those before it are still appended.
        let mut invalid = None;
        for (index, input) in batches.into_iter().enumerate() {
            match validate_append(&input.batch, input.gaps_allowed, max, &limits) {
                Ok(header) => {
                    let (reply, outcome) = oneshot::channel();
                    pending.push(PendingAppend {
                        batch: input.batch,
                        header,
                        durability,
                        reply,
                        chain: Some(0),
                        follower,
                    });
                    outcomes.push(outcome);
                }
                Err(error) => {
                    invalid = Some((index, error));
                    break;
                }
            }
        }
        if !pending.is_empty() {
            if let Err(error) = self.refuse_if_fenced() {
                return Err(fail(0, error, Vec::new()));
            }
            if self.commands.send(Command::Append(pending)).await.is_err() {
                return Err(fail(0, AppendError::Closed, Vec::new()));
            }
        }
        Ok(QueuedBatches {
            count,
            outcomes,
            invalid,
        })
    }

    /// The batch size limit and decode limits of the current configuration.
    pub(super) fn append_limits(&self) -> (u64, DecodeLimits) {
        let config = self
            .shared
            .config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (config.batch_bytes_max, config.append_decode_limits.clone())
    }

    pub(super) fn refuse_if_fenced(&self) -> Result<(), AppendError> {
        match &self.shared.read_state().fenced {
            Some(reason) => Err(AppendError::Fenced {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Batches queued in a partition's writer by [`PartitionLog::enqueue_batches`], not yet
/// answered. Dropping it does not withdraw them: they are written (and synced, as asked)
/// all the same, and only their answers are lost.
#[must_use = "the batches are appended whether or not the outcome is awaited"]
pub struct QueuedBatches {
    /// How many batches the caller gave (queued or not).
    count: usize,
    /// The writer's answer for each queued batch, in order.
    outcomes: Vec<oneshot::Receiver<Result<AppendOutcome, AppendError>>>,
    /// The first batch that failed its checks, and why: none from it on was queued.
    invalid: Option<(usize, AppendError)>,
}

impl QueuedBatches {
    /// Waits for the writer's answers: the outcome of every batch, or the first failure,
    /// with the outcomes of those before it (as [`PartitionLog::append_batches`]).
    pub async fn outcomes(self) -> Result<Vec<AppendOutcome>, AppendBatchesError> {
        let count = self.count;
        let fail = |index, error, appended| AppendBatchesError {
            index,
            count,
            error,
            appended,
        };
        let mut appended = Vec::with_capacity(self.outcomes.len());
        for (index, outcome) in self.outcomes.into_iter().enumerate() {
            // Answers come in order; the writer drops those after a failure unanswered.
            match outcome.await {
                Ok(Ok(done)) => appended.push(done),
                Ok(Err(error)) => return Err(fail(index, error, appended)),
                Err(_) => return Err(fail(index, AppendError::Closed, appended)),
            }
        }
        match self.invalid {
            Some((index, error)) => Err(fail(index, error, appended)),
            None => Ok(appended),
        }
    }
}

/// Checks one batch for append on the caller's task: its size, CRC, framing and records
/// (their count and layout, not their contents), and that it covers exactly its records
/// unless `gaps_allowed`. The writer then only copies and stamps it.
pub(super) fn validate_append(
    batch: &Bytes,
    gaps_allowed: bool,
    max: u64,
    limits: &DecodeLimits,
) -> Result<BatchHeader, AppendError> {
    let size = batch.len() as u64;
    if size > max {
        return Err(AppendError::BatchTooLarge { size, max });
    }
    let header = validate_batch_records(batch, limits).map_err(|error| {
        match error {
            // Header, framing and CRC errors keep their own variant (a damaged batch).
            DecodeError::Batch(error) => AppendError::InvalidBatch(error),
            other => AppendError::InvalidRecords(other),
        }
    })?;
    // A producer's batch covers exactly its records: a larger last offset delta (legal
    // only after compaction) would let a client burn offsets without writing records.
    let exact = header.record_count >= 1 && header.last_offset_delta == header.record_count - 1;
    if !exact && !gaps_allowed {
        return Err(AppendError::InvalidBatch(BatchError::BadLastOffsetDelta {
            last_offset_delta: header.last_offset_delta,
            record_count: header.record_count,
        }));
    }
    Ok(header)
}
