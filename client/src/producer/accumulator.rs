//! Records waiting to be sent, grouped into batches per partition (Kafka's RecordAccumulator).
//!
//! Owns: the open batches, the batching policy (a batch is ready at `batch_size` bytes, once
//! it is `linger` old, or when a flush asks), and delivery-timeout expiry of batches that never
//! left.
//!
//! Adaptive batching: a batch is ready at `batch_size`, but until the sender takes it (it may
//! not yet: the partition's in-flight limit, a backlog of batches ahead) it keeps taking
//! records, up to `batch_size_max` (and never past the topic's `max.message.bytes`, which
//! `append` is given per record), instead of a new batch opening behind it. Those records
//! would wait anyway; this way they leave in one request instead of many small ones. When
//! the producer outruns the node, a backlog of 16 KiB batches (one request, one fdatasync
//! each with acks=all) becomes a backlog of `batch_size_max` ones (issue 7,
//! benches/RESULTS.md). A producer the node keeps up with sees its batches leave at about
//! `batch_size`, as before. Does not own: sequence numbers, encoding, retries or memory
//! permits (the sender and `Producer::send` do those). It is sans-IO: time comes in as `now`.
//!
//! Invariants: within a partition batches leave in the order they were opened, so records leave
//! in the order they were appended; only the last batch of a partition is open; every batch
//! holds at least one record.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledge_protocol::Record;

use super::completion::BatchCompletion;

/// A topic and partition, as the accumulator and sender key them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PartitionKey {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
}

/// A batch being filled or waiting to leave.
#[derive(Debug)]
pub(crate) struct PendingBatch {
    pub(crate) records: Vec<Record>,
    /// Sum of the records' estimated sizes: what they hold of `buffer_memory`.
    pub(crate) bytes: usize,
    /// When the first record arrived; `linger` and `delivery_timeout` count from here.
    pub(crate) created: Instant,
    pub(crate) completion: Arc<BatchCompletion>,
    /// No more records go in.
    pub(crate) closed: bool,
}

/// What [`Accumulator::append`] did.
#[derive(Debug)]
pub(crate) struct Appended {
    pub(crate) completion: Arc<BatchCompletion>,
    /// The record's position in its batch (its offset delta).
    pub(crate) index: u32,
    /// The record opened a batch: the sender must arm a linger timer for it.
    pub(crate) opened_batch: bool,
    /// A batch of this partition became ready to send because of this record.
    pub(crate) became_ready: bool,
    /// The record went into a batch that was already ready (it grows until taken): the
    /// sticky partitioner should move on, as if that batch had just completed.
    pub(crate) joined_ready_batch: bool,
}

#[derive(Debug)]
pub(crate) struct Accumulator {
    batch_size: usize,
    /// How far a ready batch may grow while it waits to be taken.
    batch_size_max: usize,
    /// How long after its first record a batch may still grow past `batch_size`.
    grow_for: Duration,
    linger: Duration,
    queues: BTreeMap<PartitionKey, VecDeque<PendingBatch>>,
    records: usize,
}

impl Accumulator {
    pub(crate) fn new(
        batch_size: usize,
        batch_size_max: usize,
        grow_for: Duration,
        linger: Duration,
    ) -> Self {
        let batch_size = batch_size.max(1);
        Self {
            batch_size,
            batch_size_max: batch_size_max.max(batch_size),
            grow_for,
            linger,
            queues: BTreeMap::new(),
            records: 0,
        }
    }

    /// Appends `record` (of estimated size `bytes`) to the open batch of `key`, or to a new one
    /// when the open one is closed or would grow past `batch_size_max` (past `batch_size`
    /// once it is `grow_for` old). A record larger than that gets a batch of its own.
    ///
    /// `records_bytes_max` is the topic's own bound (its `max.message.bytes` less the batch
    /// header): no batch of `key` grows past it, whatever `batch_size` and `batch_size_max`
    /// say, since the node would refuse it whole.
    pub(crate) fn append(
        &mut self,
        key: &PartitionKey,
        record: Record,
        bytes: usize,
        records_bytes_max: usize,
        now: Instant,
    ) -> Appended {
        let batch_size_max = self.batch_size_max.min(records_bytes_max.max(1));
        let batch_size = self.batch_size.min(batch_size_max);
        let grow_for = self.grow_for;
        let queue = match self.queues.get_mut(key) {
            Some(queue) => queue,
            None => self.queues.entry(key.clone()).or_default(),
        };
        let mut became_ready = false;
        let fits = queue.back().is_some_and(|open| {
            let grown = open.bytes.saturating_add(bytes);
            // Past `batch_size` only while young: a record joining a batch that has waited
            // long would inherit its age, and with it an early delivery timeout.
            let young = now.saturating_duration_since(open.created) < grow_for;
            !open.closed && (grown <= batch_size || (grown <= batch_size_max && young))
        });
        if !fits
            && let Some(open) = queue.back_mut()
            && !open.closed
        {
            open.closed = true;
            became_ready = open.bytes < batch_size;
        }
        let opened_batch = !fits;
        if opened_batch {
            queue.push_back(PendingBatch {
                records: Vec::new(),
                bytes: 0,
                created: now,
                completion: Arc::default(),
                closed: false,
            });
        }
        let open = queue
            .back_mut()
            .expect("a partition queue has an open batch after the push above");
        let joined_ready_batch = open.bytes >= batch_size;
        let index = u32::try_from(open.records.len()).unwrap_or(u32::MAX);
        open.records.push(record);
        open.bytes = open.bytes.saturating_add(bytes);
        if !joined_ready_batch && open.bytes >= batch_size {
            became_ready = true;
        }
        if open.bytes >= batch_size_max {
            open.closed = true;
        }
        self.records += 1;
        Appended {
            completion: open.completion.clone(),
            index,
            opened_batch,
            became_ready,
            joined_ready_batch,
        }
    }

    /// Partitions whose first batch may leave now: full (`batch_size` reached), closed,
    /// `linger` old, or `flush` is set.
    pub(crate) fn ready(&self, now: Instant, flush: bool) -> Vec<PartitionKey> {
        self.queues
            .iter()
            .filter(|(_, queue)| {
                queue.front().is_some_and(|batch| {
                    flush
                        || batch.closed
                        || batch.bytes >= self.batch_size
                        || now >= batch.created.checked_add(self.linger).unwrap_or(now)
                })
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// When the next open batch turns `linger` old, if any is waiting for that.
    #[cfg(test)]
    pub(crate) fn next_linger_deadline(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(VecDeque::front)
            .filter(|batch| !batch.closed && batch.bytes < self.batch_size)
            .map(|batch| batch.created + self.linger)
            .min()
    }

    /// When the oldest batch turns `timeout` old.
    pub(crate) fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(VecDeque::front)
            .map(|batch| batch.created + timeout)
            .min()
    }

    /// Takes the first batch of `key`, closing it.
    pub(crate) fn take(&mut self, key: &PartitionKey) -> Option<PendingBatch> {
        let queue = self.queues.get_mut(key)?;
        let mut batch = queue.pop_front()?;
        batch.closed = true;
        if queue.is_empty() {
            self.queues.remove(key);
        }
        self.records = self.records.saturating_sub(batch.records.len());
        Some(batch)
    }

    /// Removes every batch created `timeout` or longer before `now` (they never left).
    pub(crate) fn take_expired(
        &mut self,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(PartitionKey, PendingBatch)> {
        let mut expired = Vec::new();
        for (key, queue) in &mut self.queues {
            while queue
                .front()
                .is_some_and(|batch| now >= batch.created.checked_add(timeout).unwrap_or(now))
            {
                if let Some(batch) = queue.pop_front() {
                    self.records = self.records.saturating_sub(batch.records.len());
                    expired.push((key.clone(), batch));
                }
            }
        }
        self.queues.retain(|_, queue| !queue.is_empty());
        expired
    }

    /// Removes every batch, of every partition.
    pub(crate) fn take_all(&mut self) -> Vec<(PartitionKey, PendingBatch)> {
        self.records = 0;
        std::mem::take(&mut self.queues)
            .into_iter()
            .flat_map(|(key, queue)| queue.into_iter().map(move |batch| (key.clone(), batch)))
            .collect()
    }

    /// The estimated size of the first batch of `key`.
    pub(crate) fn front_bytes(&self, key: &PartitionKey) -> Option<usize> {
        self.queues.get(key)?.front().map(|batch| batch.bytes)
    }

    /// Partitions whose first batch is still open and not yet full, with when it was opened.
    pub(crate) fn open_fronts(&self) -> impl Iterator<Item = (&PartitionKey, Instant)> {
        self.queues.iter().filter_map(|(key, queue)| {
            queue
                .front()
                .filter(|batch| !batch.closed && batch.bytes < self.batch_size)
                .map(|batch| (key, batch.created))
        })
    }

    /// How long an open batch waits for more records.
    pub(crate) fn linger(&self) -> Duration {
        self.linger
    }

    /// Records waiting, in all partitions.
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests;
