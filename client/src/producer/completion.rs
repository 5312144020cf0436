//! The outcome of one batch, shared by the futures of all its records.
//!
//! One [`BatchCompletion`] per batch rather than one channel per record: a record's
//! [`DeliveryFuture`] is an `Arc` clone plus its index in the batch, so `send` allocates
//! nothing per record beyond the record itself. Wakers live in one vector per batch, indexed
//! by a slot each future remembers, so re-polling replaces its waker instead of growing it.
//!
//! A batch the node refused as too large is split and its parts sent apart; each part then
//! resolves the futures of its own range of records ([`BatchCompletion::complete`]).
//!
//! A batch the node partitioned is acknowledged with each record's partition and offset
//! ([`place_records`]), since its records may have gone to several partitions.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use ledge_protocol::wire::{NODE_PARTITIONED, ProduceRouting};

use crate::error::{ProduceError, RequestError};

/// What the node said about a whole batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record; `None` with acks=0.
    pub(crate) base_offset: Option<i64>,
    /// The node's append time when the topic uses log-append time.
    pub(crate) log_append_time: Option<i64>,
    /// For a batch the node partitioned: each record's place in batch order, `None` for a
    /// record the produce filter dropped. Replaces `base_offset`.
    pub(crate) placements: Option<Arc<[Option<Placement>]>>,
    /// How long the node throttles this client for its produce quota, as the answer said.
    pub(crate) throttle_time: std::time::Duration,
}

/// Where the node wrote one record of a node-partitioned batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placement {
    pub(crate) partition: u32,
    pub(crate) offset: i64,
}

/// Where each of the `record_count` records of a node-partitioned batch went, from the
/// node's routing: the i-th record routed to partition `p` has offset `base_offset(p)` plus
/// the number of earlier records of the batch routed to `p` (the node appends each
/// partition's records in batch order as one batch). Fails if the routing does not cover
/// the batch exactly, or names a partition without its base offset.
pub(crate) fn place_records(
    routing: &ProduceRouting,
    record_count: usize,
) -> Result<Vec<Option<Placement>>, String> {
    if routing.record_partitions.len() != record_count {
        return Err(format!(
            "the node routed {} records of a batch of {record_count}",
            routing.record_partitions.len()
        ));
    }
    let mut next: HashMap<u32, i64> = routing
        .base_offsets
        .iter()
        .map(|base| (base.partition, base.offset))
        .collect();
    routing
        .record_partitions
        .iter()
        .map(|&partition| {
            if partition == NODE_PARTITIONED {
                return Ok(None);
            }
            let offset = next.get_mut(&partition).ok_or_else(|| {
                format!("the node routed a record to partition {partition} without its offset")
            })?;
            let placement = Placement {
                partition,
                offset: *offset,
            };
            *offset += 1;
            Ok(Some(placement))
        })
        .collect()
}

#[derive(Debug, Default)]
pub(crate) struct BatchCompletion {
    state: Mutex<State>,
}

/// The records of a batch as their futures index them: `start..end` of the batch the
/// producer first built. A batch the node refused as too large is split (the sender's
/// `split`), and each part resolves only its own records.
pub(crate) type RecordRange = std::ops::Range<u32>;

/// Every record of a batch that was never split.
pub(crate) const ALL_RECORDS: RecordRange = 0..u32::MAX;

#[derive(Debug, Default)]
struct State {
    /// The outcome of a batch that was never split: the common case, kept out of `parts` so
    /// that resolving a batch allocates nothing.
    whole: Option<Result<BatchAck, ProduceError>>,
    /// Outcomes of the parts of a split batch resolved so far; a record's outcome is that of
    /// the part whose range holds its index. Parts never overlap.
    parts: Vec<(RecordRange, Result<BatchAck, ProduceError>)>,
    wakers: Vec<Option<Waker>>,
}

impl State {
    /// The outcome for the record at `index`, and the index of the part's first record.
    fn outcome(&self, index: u32) -> Option<(u32, &Result<BatchAck, ProduceError>)> {
        if let Some(outcome) = &self.whole {
            return Some((0, outcome));
        }
        self.parts
            .iter()
            .find(|(range, _)| range.contains(&index))
            .map(|(range, outcome)| (range.start, outcome))
    }
}

impl BatchCompletion {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves `State` consistent (every write is a single
        // assignment or push), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the outcome of the records in `range` and wakes the waiting futures. Only the
    /// first outcome of a record counts.
    pub(crate) fn complete(&self, range: RecordRange, outcome: Result<BatchAck, ProduceError>) {
        let wakers = {
            let mut state = self.lock();
            if state.outcome(range.start).is_some() {
                return;
            }
            if range == ALL_RECORDS {
                state.whole = Some(outcome);
                std::mem::take(&mut state.wakers)
            } else {
                state.parts.push((range, outcome));
                // Part of a split batch: futures of the other parts must keep their slots
                // (a slot handed out again would let two futures overwrite each other's
                // waker), so take the wakers and leave the slots. Each woken future whose
                // record is not done yet stores its waker again.
                state.wakers.iter_mut().map(Option::take).collect()
            }
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    /// The outcome of the batch's first record.
    #[cfg(test)]
    pub(crate) fn outcome(&self) -> Option<Result<BatchAck, ProduceError>> {
        self.lock().outcome(0).map(|(_, outcome)| outcome.clone())
    }
}

/// Where a record was written: resolved by its [`DeliveryFuture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition: the one the producer chose, or the one the topic's partitioner module chose
    /// on the node. With `acks = 0` the latter is unknown and this is
    /// [`NODE_PARTITIONED`](ledge_protocol::wire::NODE_PARTITIONED).
    pub partition: u32,
    /// The record's offset. `None` with `acks = 0`, where the node does not answer (Kafka
    /// reports -1 there).
    pub offset: Option<i64>,
    /// The record's timestamp: the one sent, or the node's append time for topics that use
    /// log-append time.
    pub timestamp: i64,
    /// How long the node throttled this client for going over its principal's
    /// `producer_byte_rate` quota, from the produce answer that acknowledged the record
    /// (Kafka's `throttle_time_ms`); zero within the quota and with `acks = 0`. The client
    /// waits this long before its next produce to that node.
    pub throttle_time: std::time::Duration,
}

/// Resolves when the node has acknowledged the record (or the producer gave up on it).
///
/// Returned by [`crate::Producer::send`]. Dropping it does not cancel the record.
#[derive(Debug)]
#[must_use = "a DeliveryFuture tells whether the record was written; await it or drop it knowingly"]
pub struct DeliveryFuture {
    pub(crate) completion: Arc<BatchCompletion>,
    pub(crate) index: u32,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) timestamp: i64,
    waker_slot: Option<usize>,
}

impl DeliveryFuture {
    pub(crate) fn new(
        completion: Arc<BatchCompletion>,
        index: u32,
        topic: Arc<str>,
        partition: u32,
        timestamp: i64,
    ) -> Self {
        Self {
            completion,
            index,
            topic,
            partition,
            timestamp,
            waker_slot: None,
        }
    }

    /// The partition the record was put in;
    /// [`NODE_PARTITIONED`](ledge_protocol::wire::NODE_PARTITIONED) when the topic's
    /// partitioner module picks it on the node (the [`RecordMetadata`] then names it).
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

impl DeliveryFuture {
    /// This record's place in an acknowledged batch (or part of one, whose first record has
    /// index `part_start`).
    fn metadata(&self, ack: &BatchAck, part_start: u32) -> Result<RecordMetadata, ProduceError> {
        let index = self.index.saturating_sub(part_start);
        let (partition, offset) = match &ack.placements {
            None => (
                self.partition,
                ack.base_offset
                    .map(|base| base.saturating_add(i64::from(index))),
            ),
            Some(placements) => match placements.get(index as usize) {
                Some(Some(placement)) => (placement.partition, Some(placement.offset)),
                Some(None) => {
                    return Err(ProduceError::Dropped {
                        topic: self.topic.to_string(),
                    });
                }
                // `place_records` checked that the routing covers the whole batch.
                None => {
                    return Err(ProduceError::Request(RequestError::MalformedResponse(
                        format!("no routing for record {index} of its batch"),
                    )));
                }
            },
        };
        Ok(RecordMetadata {
            topic: self.topic.to_string(),
            partition,
            offset,
            timestamp: ack.log_append_time.unwrap_or(self.timestamp),
            throttle_time: ack.throttle_time,
        })
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.completion.lock();
        if let Some((part_start, outcome)) = state.outcome(this.index) {
            return Poll::Ready(match outcome {
                Ok(ack) => this.metadata(ack, part_start),
                Err(error) => Err(error.clone()),
            });
        }
        match this.waker_slot.and_then(|slot| state.wakers.get_mut(slot)) {
            Some(Some(waker)) if waker.will_wake(context.waker()) => {}
            Some(slot) => *slot = Some(context.waker().clone()),
            None => {
                this.waker_slot = Some(state.wakers.len());
                state.wakers.push(Some(context.waker().clone()));
            }
        }
        Poll::Pending
    }
}
