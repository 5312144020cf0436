//! The writer task: one per partition; a thin driver of its `CommitQueue`. It hands the
//! appends that arrive to the queue, writes the groups the queue forms (stamping offsets,
//! checking producers, rolling the segment), runs the fdatasync and answers the appends as
//! the queue decides.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use ledge_protocol::{set_base_offset, set_partition_leader_epoch};
use tokio::sync::{mpsc, oneshot};

use super::append::{AppendDurability, AppendOutcome};
use super::error::{AppendError, LeaderEpochError, copy_disk_error};
use super::open::write_checkpoint;
use super::{Command, LogState, PendingAppend, Shared};
use crate::clock::Clock;
use crate::storage::checkpoint::Checkpoint;
use crate::storage::disk::{Disk, DiskError, DiskFile};
use crate::storage::group_commit::{Action, AppendId, CommitPolicy, CommitQueue, Write};
use crate::storage::index::NoteBatchError;
use crate::storage::producers::{ProducerEntry, ProducerStates, SequenceCheck};
use crate::storage::record_count;
use crate::storage::recovery::PARTITION_LEADER_EPOCH;
use crate::storage::segment::{self, ActiveSegmentStats};

#[cfg(test)]
thread_local! {
    /// The size (in batches) of every group the writers on this thread wrote, so a
    /// test can prove its concurrent appends formed one group commit (and does not pass by
    /// accident when the scheduler splits them). Tests run each log on a current-thread
    /// runtime, so the writer task runs on the test's own thread.
    static GROUPS_DRAINED: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the sizes of the groups drained on this thread since the last call (test-only).
#[cfg(test)]
pub(super) fn take_groups_drained() -> Vec<usize> {
    GROUPS_DRAINED.with(|groups| std::mem::take(&mut *groups.borrow_mut()))
}

pub(super) struct Writer<D: Disk> {
    pub(super) disk: D,
    pub(super) shared: Arc<Shared<D>>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) checkpoint_file: D::File,
    pub(super) checkpoint: Checkpoint,
    /// Idempotent producers' sequences, as of everything written.
    pub(super) producers: ProducerStates,
    /// The group-commit policy: what to write, when to sync, which appends to answer, when
    /// to checkpoint.
    pub(super) queue: CommitQueue<Staged>,
    /// The batches of each append the queue holds, by the number it gave them, in arrival
    /// order (the queue knows only their sizes).
    pub(super) queued: VecDeque<(AppendId, Vec<PendingAppend>)>,
    /// The `fdatasync` running while later groups are written, if any (the queue decided
    /// to start it).
    pub(super) sync_in_flight: Option<SyncFuture>,
    /// The active segment and its size as of the last successful sync: the recovery point
    /// a checkpoint stores.
    pub(super) last_synced: (i64, u64),
}

/// A running sync of the active segment and what it covers once it succeeds.
pub(super) type SyncFuture = std::pin::Pin<Box<dyn Future<Output = SyncDone> + Send>>;

pub(super) struct SyncDone {
    result: Result<(), DiskError>,
    segment_base: i64,
    size: u64,
    next_offset: i64,
    /// When the sync started, for `ledge_fsync_duration_seconds`.
    started: Instant,
}

/// What wakes the writer.
pub(super) enum WriterEvent {
    Synced(SyncDone),
    Command(Option<Command>),
    FlushDue,
    ReaderArrived,
}

/// Completes when the sync in flight does (and clears it); never, if there is none. The
/// sync itself lives in `in_flight`, so dropping this future does not cancel it.
pub(super) async fn sync_completion(in_flight: &mut Option<SyncFuture>) -> SyncDone {
    match in_flight.as_mut() {
        Some(sync) => {
            let done = sync.await;
            *in_flight = None;
            done
        }
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_if_due(clock: &dyn Clock, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => clock.sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Adds the batches of one append command to `group`, numbering a multi-batch chain so a
/// failure in it can stop the rest of it; returns their bytes.
pub(super) fn add_to_group(
    group: &mut Vec<PendingAppend>,
    batches: Vec<PendingAppend>,
    chains: &mut usize,
) -> u64 {
    let chained = batches.len() > 1;
    let mut bytes = 0;
    for mut pending in batches {
        bytes += pending.batch.len() as u64;
        pending.chain = chained.then_some(*chains);
        group.push(pending);
    }
    if chained {
        *chains += 1;
    }
    bytes
}

/// The chains of a group in which a batch failed: the rest of each is dropped unanswered
/// (its caller stops at the failure).
pub(super) type BrokenChains = std::collections::HashSet<usize>;

/// Answers a batch that is not appended, and breaks its chain.
pub(super) fn refuse(
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    chain: Option<usize>,
    error: AppendError,
    broken: &mut BrokenChains,
) {
    if let Some(chain) = chain {
        broken.insert(chain);
    }
    let _ = reply.send(Err(error));
}

/// A batch stamped into the group buffer, waiting for the write and maybe the sync.
pub(super) struct Staged {
    /// The `append_batches` chain it belongs to, if any.
    chain: Option<usize>,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    outcome: AppendOutcome,
    durability: AppendDurability,
    position: u64,
    max_timestamp_ms: i64,
    bytes: u64,
}

/// Where a group starts: the active segment's end, and what stamping needs to know.
struct GroupStart<'a> {
    /// The byte position in the active segment the group is written at.
    position: u64,
    /// The offset its first new batch gets.
    next_offset: i64,
    /// The bytes of its batches together (the buffer's capacity).
    bytes: u64,
    /// The most idempotent producers remembered (`LogConfig::producers_max`).
    producers_max: usize,
    /// The partition directory, for the log lines.
    directory: &'a std::path::Path,
    /// The epoch stamped on a leader's batches.
    leader_epoch: i32,
    /// The latest epoch in the log: a follower's batch may not go below it.
    epoch_latest: i32,
}

/// A group stamped into one buffer: what to write and whom to answer once it is written.
struct StampedGroup {
    buffer: BytesMut,
    /// The batches to answer (duplicates of earlier batches too, with no bytes of their own).
    staged: Vec<Staged>,
    records_written: u64,
    /// Each producer's state before the group, to restore (newest first) if the write fails.
    undo: Vec<(i64, Option<ProducerEntry>)>,
    /// One past the group's last offset.
    next_offset: i64,
    /// The (leader epoch, base offset) of each batch written, for the epoch checkpoint.
    epoch_starts: Vec<(i32, i64)>,
}

/// Checks each batch of a group against its producer's sequence and copies the accepted
/// ones into one buffer, stamped with their base offsets; refuses the rest (breaking their
/// chains) and answers duplicates with their original offsets. No IO: the caller writes the
/// buffer.
fn stamp_group(
    group: Vec<PendingAppend>,
    producers: &mut ProducerStates,
    group_start: &GroupStart<'_>,
    broken: &mut BrokenChains,
) -> StampedGroup {
    let mut next_offset = group_start.next_offset;
    let mut buffer = BytesMut::with_capacity(group_start.bytes as usize);
    let mut staged = Vec::with_capacity(group.len());
    let mut records_written = 0u64;
    let mut undo = Vec::new();
    let mut epoch_starts = Vec::new();
    let mut epoch_latest = group_start.epoch_latest;
    for pending in group {
        if pending.chain.is_some_and(|chain| broken.contains(&chain)) {
            continue;
        }
        if pending.follower {
            // A leader's batch: it must continue this log exactly, in a leader epoch not
            // below the latest; its producer sequences were checked by the leader.
            let header = &pending.header;
            let reason = if header.base_offset != next_offset {
                Some(format!("the log ends at offset {next_offset}"))
            } else if header.partition_leader_epoch < epoch_latest {
                Some(format!(
                    "its leader epoch {} is below the log's latest {epoch_latest}",
                    header.partition_leader_epoch
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                let error = AppendError::NotContinuing {
                    base_offset: header.base_offset,
                    reason,
                };
                refuse(pending.reply, pending.chain, error, broken);
                continue;
            }
            epoch_latest = header.partition_leader_epoch;
        } else {
            match producers.check(&pending.header) {
                SequenceCheck::Accept => {}
                SequenceCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    tracing::debug!(
                        directory = %group_start.directory.display(),
                        producer_id = pending.header.producer_id,
                        base_sequence = pending.header.base_sequence,
                        base_offset,
                        "duplicate batch from an idempotent producer; answered with its original offsets"
                    );
                    // A retry of a batch already in the log: answer with its offsets once it
                    // is as durable as this request asks (it may still be unsynced).
                    staged.push(Staged {
                        chain: pending.chain,
                        reply: pending.reply,
                        outcome: AppendOutcome {
                            base_offset,
                            last_offset,
                        },
                        durability: pending.durability,
                        position: 0,
                        max_timestamp_ms: pending.header.max_timestamp,
                        bytes: 0,
                    });
                    continue;
                }
                SequenceCheck::OutOfOrder { expected, received } => {
                    let error = AppendError::OutOfOrderSequence { expected, received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
                SequenceCheck::UnknownProducer { received } => {
                    let error = AppendError::UnknownProducer { received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
                SequenceCheck::StaleEpoch { current, received } => {
                    let error = AppendError::InvalidProducerEpoch { current, received };
                    refuse(pending.reply, pending.chain, error, broken);
                    continue;
                }
            }
        }
        let position = group_start.position + buffer.len() as u64;
        let start = buffer.len();
        buffer.extend_from_slice(&pending.batch);
        let epoch = if pending.follower {
            pending.header.partition_leader_epoch
        } else {
            let stamped = buffer
                .get_mut(start..)
                .expect("the batch was just appended");
            // The batch was validated on append, so its header is present and stamping
            // cannot fail; the CRC does not cover these two fields.
            let stamp = set_base_offset(stamped, next_offset)
                .and_then(|()| set_partition_leader_epoch(stamped, group_start.leader_epoch));
            if let Err(error) = stamp {
                buffer.truncate(start);
                let error = AppendError::InvalidBatch(error);
                refuse(pending.reply, pending.chain, error, broken);
                continue;
            }
            group_start.leader_epoch
        };
        epoch_starts.push((epoch, next_offset));
        let last_offset = next_offset + i64::from(pending.header.last_offset_delta);
        if pending.header.producer_id >= 0 {
            let previous =
                producers.record(&pending.header, next_offset, group_start.producers_max);
            undo.push((pending.header.producer_id, previous));
        }
        records_written += record_count::stored_records(&pending.header);
        staged.push(Staged {
            chain: pending.chain,
            reply: pending.reply,
            outcome: AppendOutcome {
                base_offset: next_offset,
                last_offset,
            },
            durability: pending.durability,
            position,
            max_timestamp_ms: pending.header.max_timestamp,
            bytes: pending.batch.len() as u64,
        });
        next_offset = last_offset + 1;
    }
    StampedGroup {
        buffer,
        staged,
        records_written,
        undo,
        next_offset,
        epoch_starts,
    }
}

/// Notes a written group in the active segment (index entries, records, size, next offset,
/// first append time) and counts its records as above the high watermark; `bytes` is where
/// it was written. A batch the index cannot hold is refused, and then nothing else changes.
fn note_written<F>(
    state: &mut LogState<F>,
    staged: &[Staged],
    bytes: std::ops::Range<u64>,
    next_offset: i64,
    records_written: u64,
    now_ms: i64,
) -> Result<(), NoteBatchError> {
    let active = state.active_mut();
    // The roll rule keeps every batch within what the index holds; should a batch
    // still not fit, the index refuses it rather than panic, and the caller fences
    // the log with the bytes written but never acknowledged or made visible (entries
    // noted before the refusal lie above the high watermark, where no reader looks,
    // and the reopen that clears the fence rebuilds the index from the file).
    let indexed = staged
        .iter()
        .filter(|batch| batch.bytes > 0)
        .try_for_each(|batch| {
            active.index.note_batch(
                batch.position,
                batch.outcome.base_offset,
                batch.max_timestamp_ms,
                batch.bytes,
            )
        });
    if indexed.is_ok() {
        active.index.note_records(records_written);
        active.size_bytes = bytes.end;
        active.next_offset = next_offset;
        if !bytes.is_empty() {
            active.first_append_ms.get_or_insert(now_ms);
        }
        // Counted, but readable only once a sync moves the high watermark past them.
        let high_watermark = state.high_watermark;
        let unsynced = &mut state.records_above_high_watermark;
        while unsynced
            .front()
            .is_some_and(|(end, _)| *end <= high_watermark)
        {
            unsynced.pop_front();
        }
        if records_written > 0 {
            unsynced.push_back((next_offset, records_written));
        }
    }
    indexed
}

impl<D: Disk> Writer<D> {
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let shared = Arc::clone(&self.shared);
        let mut deferred: Option<Command> = None;
        loop {
            let command = match deferred.take() {
                Some(command) => command,
                None => {
                    // With a sync in flight, its completion starts the next one if needed.
                    let flush_due = self.queue.poll_timeout();
                    let clock = Arc::clone(&self.clock);
                    let event = tokio::select! {
                        biased;
                        done = sync_completion(&mut self.sync_in_flight) => WriterEvent::Synced(done),
                        command = commands.recv() => WriterEvent::Command(command),
                        () = sleep_if_due(&*clock, flush_due) => WriterEvent::FlushDue,
                        () = shared.reader_arrived.notified() => WriterEvent::ReaderArrived,
                    };
                    match event {
                        WriterEvent::Synced(done) => {
                            self.finish_sync(done);
                            self.run_actions().await;
                            continue;
                        }
                        WriterEvent::FlushDue => {
                            self.queue.handle_timeout(self.clock.now());
                            self.run_actions().await;
                            continue;
                        }
                        WriterEvent::ReaderArrived => {
                            self.run_actions().await;
                            continue;
                        }
                        WriterEvent::Command(Some(command)) => command,
                        WriterEvent::Command(None) => {
                            let _ = self.shutdown().await;
                            return;
                        }
                    }
                }
            };
            if !matches!(command, Command::Append(_)) {
                // Deletes, segment swaps and close act on files a running sync may cover.
                self.drain_sync().await;
            }
            match command {
                Command::Append(first) => {
                    self.queue.set_policy(self.commit_policy());
                    self.enqueue(first);
                    // Appends already waiting join the queue while it wants more, so they
                    // share a write and a sync; anything else waits until they are written.
                    while self.queue.wants_appends() {
                        match commands.try_recv() {
                            Ok(Command::Append(next)) => self.enqueue(next),
                            Ok(other) => {
                                deferred = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_queued().await;
                }
                Command::DeleteBefore { offset, reply } => {
                    let _ = reply.send(self.delete_before(offset).await);
                }
                Command::Close { reply } => {
                    let _ = reply.send(self.shutdown().await);
                    return;
                }
                Command::Producers { reply } => {
                    let _ = reply.send(Ok(self
                        .producers
                        .entries()
                        .map(|(id, entry)| (id, entry.clone()))
                        .collect()));
                }
                Command::SetLeaderEpoch { epoch, reply } => {
                    let _ = reply.send(self.set_leader_epoch(epoch).await);
                }
                Command::TruncateTo { offset, reply } => {
                    let outcome = self.truncate_to(offset).await;
                    // Cut: the files no longer match this writer's state; the caller opens
                    // the log again.
                    let cut = matches!(outcome, Ok(true));
                    let _ = reply.send(outcome);
                    if cut {
                        return;
                    }
                }
                Command::ReplaceSegment {
                    base,
                    temporary,
                    size,
                    index,
                    reply,
                } => {
                    let _ = reply.send(self.replace_segment(base, &temporary, size, *index).await);
                }
            }
        }
    }

    pub(super) fn fenced(&self) -> Option<String> {
        self.shared.read_state().fenced.clone()
    }

    /// Fences the log: nothing more is appended or acknowledged until it is reopened, and
    /// every append waiting for a sync fails.
    pub(super) fn fence(&mut self, reason: String) {
        tracing::error!(directory = %self.shared.directory.display(), %reason, "partition log fenced");
        self.shared.write_state().fenced = Some(reason.clone());
        self.queue.handle_fence(reason);
    }

    fn commit_policy(&self) -> CommitPolicy {
        let config = self.shared.config();
        CommitPolicy {
            flush_interval: config.flush_interval,
            checkpoint_interval: config.recovery_checkpoint_interval,
            sync_for_readers: config.sync_for_readers,
            commit_bytes_max: config.commit_bytes_max,
        }
    }

    /// Hands an arrived append (the batches of one request to this partition) to the queue.
    fn enqueue(&mut self, batches: Vec<PendingAppend>) {
        let bytes = batches
            .iter()
            .map(|pending| pending.batch.len() as u64)
            .sum();
        let id = self.queue.handle_append(bytes);
        self.queued.push_back((id, batches));
    }

    /// Writes every group the queue forms from the queued appends, carrying out what it
    /// decides after each, until nothing is queued.
    pub(super) async fn write_queued(&mut self) {
        while let Some(Write { appends, .. }) = self.queue.poll_write() {
            let mut group = Vec::new();
            let mut chains = 0;
            while let Some((_, batches)) = self.queued.pop_front_if(|(id, _)| appends.contains(id))
            {
                add_to_group(&mut group, batches, &mut chains);
            }
            #[cfg(test)]
            GROUPS_DRAINED.with(|groups| groups.borrow_mut().push(group.len()));
            self.commit(group).await;
            self.queue.handle_write_done();
            self.run_actions().await;
        }
    }

    /// Carries out what the commit queue decided, until it has nothing more to do: starts
    /// a sync, stores a checkpoint, answers appends.
    pub(super) async fn run_actions(&mut self) {
        self.queue.set_policy(self.commit_policy());
        self.queue
            .handle_reader_waiting(self.shared.high_watermark.receiver_count() > 0);
        while let Some(action) = self.queue.poll_action() {
            match action {
                Action::StartSync => self.start_sync(),
                Action::StoreCheckpoint => {
                    let (recovery_segment, recovery_position) = self.last_synced;
                    let checkpoint = Checkpoint {
                        sequence: self.checkpoint.sequence + 1,
                        recovery_segment,
                        recovery_position,
                        ..self.checkpoint
                    };
                    if let Err(error) = self.store_checkpoint(checkpoint).await {
                        self.fence(format!("checkpoint write failed: {error}"));
                    }
                }
                Action::Acknowledge(batch) => {
                    let _ = batch.reply.send(Ok(batch.outcome));
                }
                Action::Fail { waiter, reason } => {
                    let _ = waiter.reply.send(Err(AppendError::Fenced { reason }));
                }
            }
        }
    }

    /// Writes a group of appends, rolling the segment wherever the roll rule says, between
    /// batches: the group is split into parts that each fit the segment they are written
    /// to, so no segment ever spans more offsets than its index can hold (32-bit relative
    /// offsets) or more bytes than `segment.bytes`, however many batches one drain takes.
    pub(super) async fn commit(&mut self, group: Vec<PendingAppend>) {
        let mut broken = BrokenChains::new();
        for part in self.split_at_rolls(group) {
            self.commit_part(part, &mut broken).await;
        }
    }

    pub(super) async fn commit_part(
        &mut self,
        group: Vec<PendingAppend>,
        broken: &mut BrokenChains,
    ) {
        // Batches after a failed one of their chain are not appended (nor answered).
        let group: Vec<PendingAppend> = group
            .into_iter()
            .filter(|pending| pending.chain.is_none_or(|chain| !broken.contains(&chain)))
            .collect();
        if let Some(reason) = self.fenced() {
            for pending in group {
                let error = AppendError::Fenced {
                    reason: reason.clone(),
                };
                refuse(pending.reply, pending.chain, error, broken);
            }
            return;
        }
        let total_bytes: u64 = group.iter().map(|pending| pending.batch.len() as u64).sum();
        let record_span: i64 = group
            .iter()
            .map(|pending| i64::from(pending.header.last_offset_delta) + 1)
            .sum();
        let now_ms = self.clock.wall_time_ms();
        let (stats, next_offset) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                ActiveSegmentStats {
                    base_offset: active.base_offset,
                    size_bytes: active.size_bytes,
                    first_append_ms: active.first_append_ms,
                },
                active.next_offset,
            )
        };
        let policy = self.roll_policy();
        if let Some(reason) = segment::roll_reason(
            &stats,
            total_bytes,
            next_offset + record_span - 1,
            now_ms,
            &policy,
        ) {
            tracing::debug!(?reason, directory = %self.shared.directory.display(), "rolling segment");
            if let Err(error) = self.roll().await {
                let reason = format!("segment roll failed: {error}");
                self.fence(reason.clone());
                for pending in group {
                    let error = AppendError::Fenced {
                        reason: reason.clone(),
                    };
                    refuse(pending.reply, pending.chain, error, broken);
                }
                return;
            }
        }

        let (file, start_position, next_offset, leader_epoch, mut epochs) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                Arc::clone(&state.active_file),
                active.size_bytes,
                active.next_offset,
                state.leader_epoch,
                state.epochs.clone(),
            )
        };
        let StampedGroup {
            buffer,
            staged,
            records_written,
            undo,
            next_offset,
            epoch_starts,
        } = stamp_group(
            group,
            &mut self.producers,
            &GroupStart {
                position: start_position,
                next_offset,
                bytes: total_bytes,
                producers_max: self.shared.config().producers_max,
                directory: &self.shared.directory,
                leader_epoch,
                epoch_latest: epochs.latest_epoch().unwrap_or(PARTITION_LEADER_EPOCH),
            },
            broken,
        );
        if staged.is_empty() {
            return;
        }
        let written = buffer.len() as u64;
        // A batch of a new epoch is written only once the checkpoint names the epoch, so
        // after any crash every epoch on disk is in the file (the open checks against it).
        let mut epochs_changed = false;
        let mut epoch_refused = None;
        for (epoch, base_offset) in epoch_starts {
            match epochs.assign(epoch, base_offset) {
                Ok(changed) => epochs_changed |= changed,
                Err(error) => epoch_refused = Some(error),
            }
        }
        let stored = match epoch_refused {
            // Stamping keeps epochs in order, so this is a bug; stop rather than write a
            // batch the checkpoint cannot place.
            Some(error) => Err(format!("leader epoch refused by the checkpoint: {error}")),
            None if epochs_changed => {
                crate::storage::leader_epoch::store(&self.disk, &self.shared.directory, &epochs)
                    .await
                    .map_err(|error| format!("leader-epoch checkpoint not stored: {error}"))
            }
            None => Ok(()),
        };
        if let Err(reason) = stored {
            for (producer_id, previous) in undo.into_iter().rev() {
                self.producers.restore(producer_id, previous);
            }
            self.fence(reason.clone());
            broken.extend(staged.iter().filter_map(|batch| batch.chain));
            for batch in staged {
                let _ = batch.reply.send(Err(AppendError::Fenced {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        if epochs_changed {
            self.shared.write_state().epochs = epochs;
        }
        if written > 0
            && let Err(error) = file.write_at(start_position, buffer.freeze()).await
        {
            // Nothing of this group is in the log: forget its sequences, newest first.
            for (producer_id, previous) in undo.into_iter().rev() {
                self.producers.restore(producer_id, previous);
            }
            // The rollback truncates the file: let a sync of the earlier bytes finish first.
            self.drain_sync().await;
            broken.extend(staged.iter().filter_map(|batch| batch.chain));
            self.fail_write(&*file, start_position, error, staged).await;
            return;
        }
        let indexed = note_written(
            &mut self.shared.write_state(),
            &staged,
            start_position..start_position + written,
            next_offset,
            records_written,
            now_ms,
        );
        if let Err(error) = indexed {
            let reason = format!("a written batch does not fit the segment index: {error}");
            self.fence(reason.clone());
            for batch in staged {
                let _ = batch.reply.send(Err(AppendError::Fenced {
                    reason: reason.clone(),
                }));
            }
            return;
        }
        self.queue
            .handle_written(self.clock.now(), next_offset, written > 0);
        // Readers with `visible_at_write` may read it now (it is in the page cache).
        self.shared.written_end.send_if_modified(|end| {
            let moved = next_offset > *end;
            *end = (*end).max(next_offset);
            moved
        });
        for batch in staged {
            // A duplicate of a batch synced earlier is answered at once.
            let (last_offset, durability) = (batch.outcome.last_offset, batch.durability);
            self.queue.handle_stamped(batch, last_offset, durability);
        }
    }

    /// Starts the sync the commit queue decided on: of the active segment, as written so
    /// far. Later groups are written while it runs.
    pub(super) fn start_sync(&mut self) {
        let (file, size, next_offset, segment_base) = {
            let state = self.shared.read_state();
            let active = state.active();
            (
                Arc::clone(&state.active_file),
                active.size_bytes,
                active.next_offset,
                active.base_offset,
            )
        };
        let started = self.clock.now();
        self.sync_in_flight = Some(Box::pin(async move {
            SyncDone {
                started,
                result: file.sync_data().await,
                segment_base,
                size,
                next_offset,
            }
        }));
    }

    /// Waits for the sync in flight, if any, applies it and carries out what follows (the
    /// checkpoint, the answers), until no sync runs.
    pub(super) async fn drain_sync(&mut self) {
        while let Some(sync) = self.sync_in_flight.take() {
            let done = sync.await;
            self.finish_sync(done);
            self.run_actions().await;
        }
    }

    /// Applies a finished sync: publishes the new high watermark and tells the commit
    /// queue, which then stores the checkpoint when due and answers the appends it covers.
    /// A failure fences the log.
    pub(super) fn finish_sync(&mut self, done: SyncDone) {
        let now = self.clock.now();
        crate::metrics::node().observe_fsync(now.saturating_duration_since(done.started));
        if let Err(error) = done.result {
            let reason = format!("fdatasync failed, not retried: {error}");
            self.queue.handle_sync_done(now, Err(reason.clone()));
            self.fence(reason);
            return;
        }
        let high_watermark = {
            let mut state = self.shared.write_state();
            let active = state.active_mut();
            if active.base_offset == done.segment_base {
                active.synced_bytes = active.synced_bytes.max(done.size);
            }
            state.high_watermark = state.high_watermark.max(done.next_offset);
            state.high_watermark
        };
        self.shared.high_watermark.send_replace(high_watermark);
        self.last_synced = (done.segment_base, done.size);
        self.queue.handle_sync_done(now, Ok(()));
    }

    /// A failed write: ENOSPC is rolled back (truncate to the last good size) and the log
    /// stays writable; anything else, or a failed rollback, fences the log.
    pub(super) async fn fail_write(
        &mut self,
        file: &D::File,
        start_position: u64,
        error: DiskError,
        staged: Vec<Staged>,
    ) {
        // Out of space, or the filesystem turned read-only under us: the write was refused,
        // so the log is unchanged once the rollback succeeds. If the rollback is refused
        // too (read-only), the log is fenced; its reopen then opens it read-only, so reads
        // go on either way (issue 11, data item 9).
        if error.is_out_of_space() || error.is_read_only() {
            match file.set_len(start_position).await {
                Ok(()) => {
                    tracing::warn!(%error, "append failed for lack of space; rolled back");
                    for batch in staged {
                        let _ = batch
                            .reply
                            .send(Err(AppendError::Disk(copy_disk_error(&error))));
                    }
                    return;
                }
                Err(truncate_error) => {
                    self.fence(format!("{error}; rollback failed: {truncate_error}"));
                }
            }
        } else {
            self.fence(format!("write failed: {error}"));
        }
        let reason = self.fenced().unwrap_or_else(|| error.to_string());
        for batch in staged {
            let _ = batch.reply.send(Err(AppendError::Fenced {
                reason: reason.clone(),
            }));
        }
    }

    /// Syncs the active segment now (after any sync in flight) and publishes the new high
    /// watermark. A failure fences the log; the error is the fence reason.
    pub(super) async fn sync_active(&mut self) -> Result<(), String> {
        self.drain_sync().await;
        if let Some(reason) = self.fenced() {
            return Err(reason);
        }
        self.queue.request_sync();
        self.run_actions().await;
        self.drain_sync().await;
        match self.fenced() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Makes `epoch` the one stamped on this log's appends from its end on (Kafka's
    /// `maybeAssignEpochStartOffset` when a node becomes leader), stored durably first.
    pub(super) async fn set_leader_epoch(&mut self, epoch: i32) -> Result<(), LeaderEpochError> {
        if let Some(reason) = self.fenced() {
            return Err(LeaderEpochError::Fenced { reason });
        }
        let (current, log_end, mut epochs) = {
            let state = self.shared.read_state();
            (
                state.leader_epoch,
                state.active().next_offset,
                state.epochs.clone(),
            )
        };
        if epoch < current {
            return Err(LeaderEpochError::WentBackwards {
                requested: epoch,
                current,
            });
        }
        let changed =
            epochs
                .assign(epoch, log_end)
                .map_err(|_| LeaderEpochError::WentBackwards {
                    requested: epoch,
                    current: epochs.latest_epoch().unwrap_or(current),
                })?;
        if changed {
            crate::storage::leader_epoch::store(&self.disk, &self.shared.directory, &epochs)
                .await
                .map_err(
                    |crate::storage::leader_epoch::LeaderEpochIoError::Disk(error)| {
                        LeaderEpochError::Disk(error)
                    },
                )?;
        }
        let mut state = self.shared.write_state();
        state.epochs = epochs;
        state.leader_epoch = epoch;
        Ok(())
    }

    pub(super) async fn store_checkpoint(
        &mut self,
        checkpoint: Checkpoint,
    ) -> Result<(), DiskError> {
        write_checkpoint(&self.checkpoint_file, &checkpoint).await?;
        self.checkpoint = checkpoint;
        Ok(())
    }

    pub(super) async fn shutdown(&mut self) -> Result<(), DiskError> {
        if self.fenced().is_some() {
            return Ok(());
        }
        // Force the checkpoint so the next open starts from an exact recovery point.
        self.queue.force_checkpoint();
        self.sync_active().await.map_err(|reason| {
            DiskError::new(
                "close",
                &self.shared.directory,
                std::io::Error::other(reason),
            )
        })
    }
}
