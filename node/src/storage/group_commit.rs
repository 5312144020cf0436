//! `CommitQueue`: the group-commit policy of one partition log, free of IO.
//!
//! The writer task (`log/writer.rs`) stamps and writes batches and runs the `fdatasync`; this
//! state machine decides which queued appends form the next write, when a sync starts, what
//! it covers, which appends it answers and when the recovery checkpoint is stored. In
//! quinn's shape: events go in through `handle_*` (with the time passed in), the next write
//! comes out of [`CommitQueue::poll_write`] (as quinn's `poll_transmit`), every other
//! decision out of [`CommitQueue::poll_action`], and [`CommitQueue::poll_timeout`] says when
//! to call [`CommitQueue::handle_timeout`].
//!
//! The policy:
//! - appends are written in arrival order, each exactly once, one write at a time; a write
//!   takes the oldest queued append and as many following ones as fit `commit_bytes_max`
//!   together (one append larger than that is written alone); the driver splits a write
//!   where the segment rolls;
//! - one sync at a time; data written while it runs waits for the next one;
//! - a sync starts as soon as an acks=all append waits, or a reader waits at the end of
//!   the log (`sync_for_readers`) while data is unsynced, or the oldest unsynced write is
//!   `flush_interval` old (acks=1 data is synced within that interval of its write, unless
//!   a sync already running takes longer);
//! - an acks=all append is acknowledged once a finished sync covers its last offset;
//!   acks=1 and acks=0 appends (`Written`) once they are written;
//! - after a successful sync, a checkpoint of the recovery point is stored at most once per
//!   `checkpoint_interval`, before the appends the sync covers are acknowledged;
//! - a fence (a failed sync, write or checkpoint) fails every waiting append and stops all
//!   further syncs and acknowledgements.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::log::AppendDurability;
use crate::clock::deadline_after;

/// The settings the policy follows; they may change while the log runs (AlterConfigs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPolicy {
    /// How long acks=1 data may stay unsynced (`log.flush_interval`).
    pub flush_interval: Duration,
    /// The least time between two recovery checkpoints stored after syncs.
    pub checkpoint_interval: Duration,
    /// Whether a reader waiting at the end of the log starts a sync of unsynced data.
    pub sync_for_readers: bool,
    /// The most bytes one write takes from the queue, unless one append alone is larger
    /// (`log.commit_bytes_max`).
    pub commit_bytes_max: u64,
}

/// The number the queue gave an append when it arrived; appends are numbered in arrival
/// order from 0.
pub type AppendId = u64;

/// The next group to write: [`CommitQueue::poll_write`]'s answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Write {
    /// The queued appends to write, in arrival order: the oldest not written yet first.
    pub appends: Range<AppendId>,
    /// Their bytes together.
    pub bytes: u64,
}

/// An append waiting to be written.
#[derive(Debug)]
struct QueuedAppend {
    id: AppendId,
    bytes: u64,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<W> {
    /// Start an `fdatasync` of everything written so far, and report its end with
    /// [`CommitQueue::handle_sync_done`].
    StartSync,
    /// Store the recovery checkpoint at the point the last successful sync covered, before
    /// any further action; a failure is reported with [`CommitQueue::handle_fence`].
    StoreCheckpoint,
    /// Answer this append with its outcome: it is as durable as it asked.
    Acknowledge(W),
    /// Answer this append with the fence's error: it may not be durable.
    Fail {
        /// The append.
        waiter: W,
        /// Why the log is fenced.
        reason: String,
    },
}

/// The group-commit state of one partition log; `W` is whatever the driver answers an
/// append with (a reply channel; a number in tests).
#[derive(Debug)]
pub struct CommitQueue<W> {
    policy: CommitPolicy,
    /// One past the last offset written.
    written_end: i64,
    /// One past the last offset a finished sync covers: the high watermark.
    durable_end: i64,
    /// When the oldest write not covered by a started sync happened, if any.
    unsynced_since: Option<Instant>,
    /// The end (`written_end` at its start) of the sync in flight, if any.
    sync_covers: Option<i64>,
    /// acks=all appends and the last offset each waits for, in arrival order.
    waiting: VecDeque<(W, i64)>,
    last_checkpoint: Option<Instant>,
    fenced: Option<String>,
    readers_waiting: bool,
    /// The flush interval passed while a write was unsynced.
    flush_due: bool,
    /// A sync was asked for even if nothing is unsynced (a roll, a close).
    sync_requested: bool,
    actions: VecDeque<Action<W>>,
    /// Appends not yet taken by a write, in arrival order.
    queued: VecDeque<QueuedAppend>,
    /// Their bytes together.
    queued_bytes: u64,
    /// The number the next arriving append gets.
    next_append: AppendId,
    /// A write was handed out and its end not yet reported.
    write_in_flight: bool,
}

impl<W> CommitQueue<W> {
    /// A queue for a log written up to `written_end` and synced up to `durable_end`.
    pub fn new(policy: CommitPolicy, written_end: i64, durable_end: i64) -> Self {
        Self {
            policy,
            written_end: written_end.max(durable_end),
            durable_end,
            unsynced_since: None,
            sync_covers: None,
            waiting: VecDeque::new(),
            last_checkpoint: None,
            fenced: None,
            readers_waiting: false,
            flush_due: false,
            sync_requested: false,
            actions: VecDeque::new(),
            queued: VecDeque::new(),
            queued_bytes: 0,
            next_append: 0,
            write_in_flight: false,
        }
    }

    /// Follows a changed configuration from the next decision on.
    pub fn set_policy(&mut self, policy: CommitPolicy) {
        self.policy = policy;
    }

    /// An append of `bytes` arrived: it waits for a write; returns its number, by which
    /// [`Write::appends`] names it.
    pub fn handle_append(&mut self, bytes: u64) -> AppendId {
        let id = self.next_append;
        self.next_append += 1;
        self.queued.push_back(QueuedAppend { id, bytes });
        self.queued_bytes = self.queued_bytes.saturating_add(bytes);
        id
    }

    /// Whether the queue holds less than one full write, so the driver should take more
    /// arrived appends in before writing (more of them share one write and one sync).
    pub fn wants_appends(&self) -> bool {
        self.queued_bytes < self.policy.commit_bytes_max
    }

    /// The next group to write, if no write is in flight and any append waits. The driver
    /// writes it (refusing what the log cannot take), reports the offsets written with
    /// [`handle_written`](Self::handle_written), each append written with
    /// [`handle_stamped`](Self::handle_stamped), and the write's end with
    /// [`handle_write_done`](Self::handle_write_done).
    pub fn poll_write(&mut self) -> Option<Write> {
        if self.write_in_flight {
            return None;
        }
        let first = self.queued.pop_front()?;
        let start = first.id;
        let mut end = first.id + 1;
        let mut bytes = first.bytes;
        while let Some(next) = self.queued.front()
            && bytes.saturating_add(next.bytes) <= self.policy.commit_bytes_max
        {
            bytes += next.bytes;
            end = next.id + 1;
            self.queued.pop_front();
        }
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
        self.write_in_flight = true;
        Some(Write {
            appends: start..end,
            bytes,
        })
    }

    /// The write in flight ended: each of its appends is written (and reported), or was
    /// refused and answered by the driver. The next write may start.
    pub fn handle_write_done(&mut self) {
        self.write_in_flight = false;
    }

    /// Data was written up to `next_offset` (exclusive); `wrote_bytes` is false for a
    /// group of duplicates only, which wrote nothing.
    pub fn handle_written(&mut self, now: Instant, next_offset: i64, wrote_bytes: bool) {
        self.written_end = self.written_end.max(next_offset);
        if wrote_bytes {
            self.unsynced_since.get_or_insert(now);
        }
    }

    /// An append written (or a duplicate of one written earlier) whose last offset is
    /// `last_offset` waits to be answered as durably as it asked.
    pub fn handle_stamped(&mut self, waiter: W, last_offset: i64, durability: AppendDurability) {
        if let Some(reason) = &self.fenced {
            let reason = reason.clone();
            self.actions.push_back(Action::Fail { waiter, reason });
            return;
        }
        match durability {
            AppendDurability::Written => self.actions.push_back(Action::Acknowledge(waiter)),
            AppendDurability::Synced => self.waiting.push_back((waiter, last_offset)),
        }
    }

    /// The sync in flight finished: on success what it covers is durable, on failure the
    /// log is fenced (a failed `fdatasync` is never retried: the kernel may have dropped
    /// the pages).
    pub fn handle_sync_done(&mut self, now: Instant, result: Result<(), String>) {
        let Some(covers) = self.sync_covers.take() else {
            return;
        };
        if let Err(reason) = result {
            self.handle_fence(reason);
            return;
        }
        self.durable_end = self.durable_end.max(covers);
        let due = self.last_checkpoint.is_none_or(|last| {
            now.saturating_duration_since(last) >= self.policy.checkpoint_interval
        });
        if due && self.fenced.is_none() {
            self.last_checkpoint = Some(now);
            self.actions.push_back(Action::StoreCheckpoint);
        }
    }

    /// Whether a reader now waits at the end of the log for data to become visible.
    pub fn handle_reader_waiting(&mut self, waiting: bool) {
        self.readers_waiting = waiting;
    }

    /// The deadline of [`poll_timeout`](Self::poll_timeout) may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout()
            && now >= deadline
        {
            self.flush_due = true;
        }
    }

    /// The log is fenced: every waiting append fails, nothing is synced or acknowledged
    /// any more. The first reason stays.
    pub fn handle_fence(&mut self, reason: String) {
        if self.fenced.is_none() {
            self.fenced = Some(reason);
        }
        let reason = self.fenced.clone().unwrap_or_default();
        for (waiter, _) in self.waiting.drain(..) {
            self.actions.push_back(Action::Fail {
                waiter,
                reason: reason.clone(),
            });
        }
    }

    /// The next sync starts as soon as none is in flight, even if nothing is unsynced.
    pub fn request_sync(&mut self) {
        self.sync_requested = true;
    }

    /// A checkpoint was stored outside a sync (a roll): the cadence restarts from `now`.
    pub fn handle_checkpoint_stored(&mut self, now: Instant) {
        self.last_checkpoint = Some(now);
    }

    /// The next successful sync stores a checkpoint whatever the cadence (a close, so the
    /// next open starts from an exact recovery point).
    pub fn force_checkpoint(&mut self) {
        self.last_checkpoint = None;
    }

    /// Whether a sync is in flight.
    pub fn sync_in_flight(&self) -> bool {
        self.sync_covers.is_some()
    }

    /// One past the last offset a finished sync covers.
    pub fn durable_end(&self) -> i64 {
        self.durable_end
    }

    /// The next thing to do, if any. Call until `None` after every event.
    pub fn poll_action(&mut self) -> Option<Action<W>> {
        if let Some(action) = self.actions.pop_front() {
            return Some(action);
        }
        if self.fenced.is_some() {
            return None;
        }
        if let Some(index) = self
            .waiting
            .iter()
            .position(|(_, last_offset)| *last_offset < self.durable_end)
        {
            return self
                .waiting
                .remove(index)
                .map(|(waiter, _)| Action::Acknowledge(waiter));
        }
        if self.sync_covers.is_none() && self.sync_wanted() {
            self.sync_covers = Some(self.written_end);
            // Whatever is written from now on waits for the next sync.
            self.unsynced_since = None;
            self.flush_due = false;
            self.sync_requested = false;
            return Some(Action::StartSync);
        }
        None
    }

    fn sync_wanted(&self) -> bool {
        let unsynced = self.unsynced_since.is_some();
        self.sync_requested
            || !self.waiting.is_empty()
            || (unsynced && self.flush_due)
            || (unsynced && self.policy.sync_for_readers && self.readers_waiting)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the flush interval after the
    /// oldest unsynced write, while no sync runs (a running sync's end decides again).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.sync_covers.is_some() || self.fenced.is_some() {
            return None;
        }
        self.unsynced_since
            .map(|since| deadline_after(since, self.policy.flush_interval))
    }
}

#[cfg(test)]
mod tests;
