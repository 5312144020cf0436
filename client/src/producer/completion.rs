//! The outcome of one batch, shared by the futures of all its records.
//!
//! One [`BatchCompletion`] per batch rather than one channel per record: a record's
//! [`DeliveryFuture`] is an `Arc` clone plus its index in the batch, so `send` allocates
//! nothing per record beyond the record itself. Wakers live in one vector per batch, indexed
//! by a slot each future remembers, so re-polling replaces its waker instead of growing it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::ProduceError;

/// What the node said about a whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchAck {
    /// Offset of the batch's first record; `None` with acks=0.
    pub(crate) base_offset: Option<i64>,
    /// The node's append time when the topic uses log-append time.
    pub(crate) log_append_time: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct BatchCompletion {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    outcome: Option<Result<BatchAck, ProduceError>>,
    wakers: Vec<Option<Waker>>,
}

impl BatchCompletion {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves `State` consistent (every write is a single
        // assignment), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the outcome and wakes every waiting record. Only the first call counts.
    pub(crate) fn complete(&self, outcome: Result<BatchAck, ProduceError>) {
        let wakers = {
            let mut state = self.lock();
            if state.outcome.is_some() {
                return;
            }
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
    }

    #[cfg(test)]
    pub(crate) fn outcome(&self) -> Option<Result<BatchAck, ProduceError>> {
        self.lock().outcome.clone()
    }
}

/// Where a record was written: resolved by its [`DeliveryFuture`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The record's offset. `None` with `acks = 0`, where the node does not answer (Kafka
    /// reports -1 there).
    pub offset: Option<i64>,
    /// The record's timestamp: the one sent, or the node's append time for topics that use
    /// log-append time.
    pub timestamp: i64,
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

    /// The partition the record was put in.
    pub fn partition(&self) -> u32 {
        self.partition
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.completion.lock();
        if let Some(outcome) = &state.outcome {
            return Poll::Ready(match outcome {
                Ok(ack) => Ok(RecordMetadata {
                    topic: this.topic.to_string(),
                    partition: this.partition,
                    offset: ack
                        .base_offset
                        .map(|base| base.saturating_add(i64::from(this.index))),
                    timestamp: ack.log_append_time.unwrap_or(this.timestamp),
                }),
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
