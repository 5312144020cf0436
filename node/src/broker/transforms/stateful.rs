//! Stateful (aggregate) transforms on one node (docs/STREAMS.md, "The host").
//!
//! Stage 1, only for a module that exports `ledge_group`, is today's partition task
//! (`task.rs`) with the group call instead of the batch call: [`group_outcomes`] and
//! [`route_group`] turn each input record into a re-keyed record with its `ledge.src`
//! header, appended to `__transform.NAME.repartition` in the partition murmur2 gives its
//! key; the input position is committed like a stateless transform's (at-least-once).
//!
//! Stage 2 is a [`StateTask`] per state partition: it restores its store, position and
//! pending outbox from `__transform.NAME.changelog` with the `Restorer`, forwards the
//! pending outbox, then for each input batch (the repartition partition, deduplicated by
//! source offset; or the input partition when the module does not re-key) folds the
//! records into the store through `ledge_aggregate`, and appends ONE `CommitBatch` to its
//! changelog partition, synced: the state changes, the change records as outbox entries,
//! the tombstones of the entries already forwarded, and the position. Then it forwards the
//! new outbox entries to the output topic as an idempotent producer it owns (producer id
//! in the position, one sequence per output partition), so a crash at any point neither
//! loses nor repeats a state change or a change record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use ledge_protocol::partitioner::partition_for_key;
use ledge_protocol::{
    BatchError, BatchIter, DecodedRecord, EncodeOptions, Header, Record, encode_batch,
};
use tokio::sync::watch;

use super::route::{IterationOutput, Route, Routed};
use super::{OnError, PartitionCounters, TransformHandles, TransformStats, TransformVersion};
use crate::broker::metadata::{StatefulSpec, StoppedReason, StoredTransform};
use crate::broker::registry::LookupError;
use crate::storage::{AppendDurability, AppendError, Disk, ReadError};
use crate::streams::changelog::{
    CommitBatch, CommitPosition, CommitTooLarge, OutboxEntry, OutputRecord,
};
use crate::streams::dedup::{Dedup, SOURCE_HEADER, SourceOffset, decide};
use crate::streams::restore::{RestoreError, Restorer};
use crate::streams::store::{STORE_AGGREGATE, StateKey, StateStore};
use crate::streams::window::{
    Emit, SessionDecision, WINDOW_END_HEADER, WINDOW_START_HEADER, Watermark, Window, WindowKind,
    assign, check_future_timestamp, session_decision,
};
use crate::wasm::abi::{Application, GroupOutcome, SlotChange};
use crate::wasm::batch::{OpenedBatch, open_batch};
use crate::wasm::{Outcome, Plugin, WasmError};

mod join_task;

/// Outbox output index of the transform's output topic.
const OUTPUT_INDEX: u32 = 0;
/// Outbox output index of its dead-letter topic.
const DEAD_LETTER_INDEX: u32 = 1;
/// Input index of the one input stage 2 reads (the repartition topic or the input).
const INPUT_INDEX: u32 = 0;

// ---------------------------------------------------------------------------------------
// Stage 1: re-keying.

/// `ledge_group` over records `range` of `opened`, in calls of at most
/// `wasm.batch_records_max` records.
pub(super) async fn group_outcomes(
    opened: &OpenedBatch,
    plugin: &Arc<Plugin>,
    range: std::ops::Range<usize>,
    partition: u32,
    partition_count: u32,
) -> Result<Vec<GroupOutcome>, WasmError> {
    let chunk = plugin.limits().batch_records_max.max(1);
    let mut outcomes = Vec::with_capacity(range.len());
    let mut start = range.start;
    while start < range.end {
        let end = (start + chunk).min(range.end);
        let Some((header, records, count)) =
            opened.call_input(start..end, partition, partition_count)
        else {
            break;
        };
        let run = plugin.group_on_executor(header, records, count).await?;
        outcomes.extend(run.output);
        start = end;
    }
    Ok(outcomes)
}

/// [`group_outcomes`] for a range whose call failed: halves until each failing call is one
/// record, which gets an `Error` outcome with the failure.
pub(super) fn group_isolating<'a>(
    opened: &'a OpenedBatch,
    plugin: &'a Arc<Plugin>,
    range: std::ops::Range<usize>,
    partition: u32,
    partition_count: u32,
) -> std::pin::Pin<Box<dyn Future<Output = Vec<GroupOutcome>> + Send + 'a>> {
    Box::pin(async move {
        if range.len() <= 1 {
            return match group_outcomes(opened, plugin, range.clone(), partition, partition_count)
                .await
            {
                Ok(outcomes) => outcomes,
                Err(error) => vec![GroupOutcome::Error(error.to_string()); range.len()],
            };
        }
        let middle = range.start + range.len() / 2;
        let mut outcomes = Vec::with_capacity(range.len());
        for half in [range.start..middle, middle..range.end] {
            match group_outcomes(opened, plugin, half.clone(), partition, partition_count).await {
                Ok(part) => outcomes.extend(part),
                Err(_) => outcomes.extend(
                    group_isolating(opened, plugin, half, partition, partition_count).await,
                ),
            }
        }
        outcomes
    })
}

/// Routes one batch's group outcomes: each grouped record re-keyed (its own key for
/// `KEEP`, null as empty) with a `ledge.src` header naming its input partition and offset,
/// to the repartition partition of its key; `DROP` nothing; `ERROR` by the policy.
pub(super) fn route_group(
    route: &Route<'_>,
    records: &[DecodedRecord],
    outcomes: Vec<GroupOutcome>,
    state_partitions: u32,
) -> Routed {
    let mut output = IterationOutput::default();
    for (record, outcome) in records.iter().zip(outcomes) {
        let key = match outcome {
            GroupOutcome::Drop => {
                output.records_in += 1;
                continue;
            }
            GroupOutcome::Error(message) => {
                match route.batch(std::slice::from_ref(record), vec![Outcome::Error(message)]) {
                    Routed::Output(failed) => output.absorb(failed),
                    Routed::Stop(reason) => return Routed::Stop(reason),
                }
                continue;
            }
            GroupOutcome::Keep => record.key.clone().unwrap_or_default(),
            GroupOutcome::Key(key) => key,
        };
        output.records_in += 1;
        output.records_out += 1;
        let source = SourceOffset {
            partition: route.partition,
            offset: record.offset,
        };
        let mut headers = record.headers.clone();
        headers.push(Header {
            key: SOURCE_HEADER.to_string(),
            value: Some(Bytes::copy_from_slice(&source.encode())),
        });
        let target = partition_for_key(&key, state_partitions.max(1));
        output.outputs.entry(target).or_default().push(Record {
            timestamp: record.timestamp,
            key: Some(key),
            value: record.value.clone(),
            headers,
        });
    }
    Routed::Output(output)
}

// ---------------------------------------------------------------------------------------
// Stage 2: the state task.

/// Why a state task's run failed: published as the transform's last error; the task
/// restores from its changelog again after `transforms.retry_backoff`.
#[derive(Debug, thiserror::Error)]
pub(super) enum StateTaskError {
    /// A partition it reads or writes does not exist or is offline.
    #[error(transparent)]
    Unavailable(#[from] LookupError),
    /// Reading failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stored batch's framing does not parse.
    #[error("batch unreadable: {0}")]
    Unreadable(BatchError),
    /// A changelog batch's records do not decode.
    #[error("changelog batch at offset {offset} does not decode: {message}")]
    ChangelogBatch {
        /// Its base offset.
        offset: i64,
        /// Why.
        message: String,
    },
    /// The changelog does not restore.
    #[error("restoring the state: {0}")]
    Restore(#[from] RestoreError),
    /// No producer id for forwarding.
    #[error("allocating the task's producer id: {0}")]
    ProducerId(crate::broker::registry::ProducerIdError),
    /// Appending to the changelog or forwarding failed.
    #[error("writing {topic:?} partition {partition}: {source}")]
    Append {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        source: AppendError,
    },
    /// A record does not encode.
    #[error("{0}")]
    Encode(ledge_protocol::EncodeError),
    /// One input batch's commit is over `transforms.commit_batch_bytes_max`.
    #[error(transparent)]
    CommitTooLarge(#[from] CommitTooLarge),
    /// The output partition's producer table could not be read.
    #[error("reading the producers of {topic:?} partition {partition}")]
    Producers {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
}

/// A state partition's live state: what the last commit holds, plus the outbox entries
/// forwarded since (tombstoned by the next commit).
struct LiveState {
    /// Shared with table queries (`TransformStats::stores`); locked for a whole batch's
    /// fold and commit, so a query sees committed state only.
    store: Arc<tokio::sync::Mutex<StateStore>>,
    position: CommitPosition,
    /// Committed outbox entries not yet forwarded, in seq order.
    pending: Vec<(u64, OutboxEntry)>,
    /// Forwarded outbox entries whose tombstones the next commit carries.
    forwarded: Vec<u64>,
    /// When the repartition records below the committed position were last deleted.
    purged_at: Option<std::time::Instant>,
}

/// What one step of the loop found.
enum Step {
    /// Nothing to read: wait on the high watermark.
    CaughtUp(watch::Receiver<i64>),
    /// Nothing to read in either input of a join: wait on both high watermarks.
    CaughtUpEither(watch::Receiver<i64>, watch::Receiver<i64>),
    /// Go on at once.
    Again,
}

/// The task of one state partition of a stateful transform.
pub(super) struct StateTask<D: Disk> {
    pub(super) handles: Arc<TransformHandles<D>>,
    pub(super) name: String,
    /// The state partition.
    pub(super) partition: u32,
    pub(super) versions: watch::Receiver<Arc<TransformVersion>>,
    pub(super) stats: Arc<TransformStats>,
    /// Most input records one commit covers: unbounded until a commit would pass
    /// `transforms.commit_batch_bytes_max`, then halved each time one does.
    pub(super) records_per_commit: std::sync::atomic::AtomicUsize,
}

impl<D: Disk> StateTask<D> {
    pub(super) async fn run(mut self) {
        loop {
            match self.run_once().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(transform = %self.name, partition = self.partition, %error, "state task failed; restoring again");
                    self.stats.set_error(error.to_string());
                    let backoff = self.handles.limits.retry_backoff;
                    tokio::select! {
                        biased;
                        () = crate::clock::sleep(&*self.handles.clock, backoff) => {}
                        changed = self.versions.changed() => if changed.is_err() { return },
                    }
                }
            }
        }
    }

    /// Restores, then runs until the transform goes (`Ok`) or a step fails.
    async fn run_once(&mut self) -> Result<(), StateTaskError> {
        let handles = Arc::clone(&self.handles);
        let mut state = self.restore(&handles).await?;
        let pending = std::mem::take(&mut state.pending);
        if !pending.is_empty() {
            let definition = self.versions.borrow().definition.clone();
            self.forward(&handles, &definition, &mut state, pending, true)
                .await?;
        }
        loop {
            let version = Arc::clone(&self.versions.borrow_and_update());
            if version.definition.stopped.is_some() {
                if self.versions.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            }
            if let Err(denied) = handles.policy.transform_permits(&version.definition) {
                if self.stats.set_denied(Some(&denied)) {
                    tracing::warn!(transform = %self.name, partition = self.partition, %denied, "transform waits: its deployer lacks a permission");
                }
                let backoff = handles.limits.retry_backoff;
                tokio::select! {
                    biased;
                    () = crate::clock::sleep(&*handles.clock, backoff) => {}
                    changed = self.versions.changed() => if changed.is_err() { return Ok(()) },
                }
                continue;
            }
            self.stats.set_denied(None);
            match self.step(&handles, &version, &mut state).await? {
                Step::Again => {}
                Step::CaughtUp(mut high_watermark) => {
                    let idle = crate::clock::sleep(&*handles.clock, handles.limits.idle_wait);
                    tokio::select! {
                        biased;
                        _ = high_watermark.changed() => {}
                        () = idle => {}
                        changed = self.versions.changed() => if changed.is_err() { return Ok(()) },
                    }
                }
                Step::CaughtUpEither(mut left, mut right) => {
                    let idle = crate::clock::sleep(&*handles.clock, handles.limits.idle_wait);
                    tokio::select! {
                        biased;
                        () = join_task::either_changed(&mut left, &mut right) => {}
                        () = idle => {}
                        changed = self.versions.changed() => if changed.is_err() { return Ok(()) },
                    }
                }
            }
        }
    }

    /// Reads the changelog partition from its start into a new store.
    async fn restore(&self, handles: &TransformHandles<D>) -> Result<LiveState, StateTaskError> {
        // Not ready (table queries wait) until this restore is done.
        self.stats
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.partition);
        let changelog = StatefulSpec::changelog_topic(&self.name);
        let log = handles.registry.partition_log(&changelog, self.partition)?;
        let mut restorer = Restorer::new(
            handles.limits.state_memory_bytes_max,
            handles.limits.commit_batch_bytes_max,
        );
        let end = log.high_watermark();
        let mut next = log.log_start_offset();
        while next < end {
            let read = match log.read(next, handles.limits.read_bytes_max).await {
                Ok(read) => read,
                Err(ReadError::OffsetOutOfRange { .. }) => break,
                Err(error) => return Err(error.into()),
            };
            if read.bytes.is_empty() {
                break;
            }
            let before = next;
            for item in BatchIter::new(&read.bytes) {
                let (header, raw) = item.map_err(StateTaskError::Unreadable)?;
                let batch_end = header.last_offset() + 1;
                if header.is_control() || header.record_count == 0 || batch_end <= next {
                    next = next.max(batch_end);
                    continue;
                }
                let batch = read.bytes.slice_ref(raw);
                let opened =
                    open_batch(&batch, handles.plugins.budget())
                        .await
                        .map_err(|error| StateTaskError::ChangelogBatch {
                            offset: header.base_offset,
                            message: error.to_string(),
                        })?;
                for record in opened.records.iter().filter(|record| record.offset >= next) {
                    let key = record.key.as_deref().unwrap_or_default();
                    restorer.feed(record.offset, key, record.value.as_deref())?;
                }
                self.stats
                    .restore_records
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(self.partition, restorer.records());
                next = batch_end;
            }
            if next == before {
                break;
            }
        }
        let restored = restorer.finish()?;
        tracing::info!(transform = %self.name, partition = self.partition, records = restored.records, keys = restored.store.len(), "state restored");
        let position = match restored.position {
            Some(position) => position,
            None => {
                let producer_id = handles
                    .registry
                    .allocate_producer_id()
                    .await
                    .map_err(StateTaskError::ProducerId)?;
                CommitPosition {
                    producer_id,
                    producer_epoch: 0,
                    ..CommitPosition::default()
                }
            }
        };
        let memory_bytes = restored.store.memory_bytes();
        let store = Arc::new(tokio::sync::Mutex::new(restored.store));
        self.stats
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(self.partition, Arc::clone(&store));
        let live = LiveState {
            store,
            position,
            pending: restored.pending,
            forwarded: Vec::new(),
            purged_at: None,
        };
        self.publish(&live.position, Some(memory_bytes));
        Ok(live)
    }

    /// Shows the position and state size in `describe`.
    fn publish(&self, position: &CommitPosition, memory_bytes: Option<u64>) {
        if let Some(offset) = position.input_offsets.get(&INPUT_INDEX) {
            self.stats
                .state_positions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.partition, *offset);
        }
        if let Some(bytes) = memory_bytes {
            self.stats
                .state_bytes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.partition, bytes);
        }
    }

    /// Reads input from the committed position and commits each batch.
    async fn step(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        state: &mut LiveState,
    ) -> Result<Step, StateTaskError> {
        let definition = &version.definition;
        let Some(spec) = &definition.stateful else {
            // Not stateful any more (never: a redeploy that changes it is refused).
            return Ok(Step::CaughtUp(watch::channel(0).1));
        };
        if let Some(join) = &spec.join {
            return self.join_step(handles, version, state, join).await;
        }
        let input = if spec.repartition {
            StatefulSpec::repartition_topic(&self.name)
        } else {
            definition.input.clone()
        };
        let log = handles.registry.partition_log(&input, self.partition)?;
        let watch = log.subscribe_high_watermark();
        let committed = state.position.input_offsets.get(&INPUT_INDEX).copied();
        let start = committed
            .unwrap_or_else(|| log.log_start_offset())
            .max(log.log_start_offset());
        if let Some(committed) = committed
            && committed < start
        {
            self.stats.set_error(format!(
                "input offsets {committed}..{start} were deleted by retention before the transform read them"
            ));
        }
        let read = match log.read(start, handles.limits.read_bytes_max).await {
            Ok(read) => read,
            Err(ReadError::OffsetOutOfRange { .. }) => return Ok(Step::CaughtUp(watch)),
            Err(error) => return Err(error.into()),
        };
        if read.bytes.is_empty() {
            return Ok(Step::CaughtUp(watch));
        }
        let mut next = start;
        for item in BatchIter::new(&read.bytes) {
            let (header, raw) = item.map_err(StateTaskError::Unreadable)?;
            let batch_end = header.last_offset() + 1;
            if batch_end <= next {
                continue;
            }
            let opened = if header.is_control() || header.record_count == 0 {
                None
            } else {
                match open_batch(&read.bytes.slice_ref(raw), handles.plugins.budget()).await {
                    Ok(opened) => Some(opened),
                    Err(error) => {
                        let message = format!(
                            "partition {} batch at offset {} does not decode: {error}",
                            self.partition, header.base_offset
                        );
                        if definition.on_error == OnError::Stop {
                            self.stop(handles, message).await;
                            return Ok(Step::Again);
                        }
                        self.stats.set_error(message);
                        None
                    }
                }
            };
            let outcome = match &opened {
                Some(opened) => {
                    // Usually one commit for the batch; more when one would not fit
                    // `transforms.commit_batch_bytes_max` (see `records_per_commit`).
                    let mut from = next;
                    loop {
                        match self
                            .fold_batch(
                                handles, version, &input, spec, state, opened, from, batch_end,
                            )
                            .await?
                        {
                            Folded::Committed(until) if until < batch_end => from = until,
                            other => break other,
                        }
                    }
                }
                None => {
                    self.commit(
                        handles,
                        definition,
                        state,
                        Vec::new(),
                        Vec::new(),
                        Vec::new(),
                        batch_end,
                    )
                    .await?;
                    Folded::Committed(batch_end)
                }
            };
            match outcome {
                Folded::Committed(_) => next = batch_end,
                Folded::Stopped => return Ok(Step::Again),
            }
        }
        if spec.repartition {
            self.purge_repartition(handles, &log, state).await;
        }
        Ok(Step::Again)
    }

    /// After a batch's calls: adds the busy time since `began` to the stats, keeps one
    /// failure per record (its first) in offset order, and, under `on_error = stop` with a
    /// failure, gives the reason to stop, naming the first failing record (after `input`,
    /// which names the input when there are two). Returns the busy microseconds too.
    pub(super) fn settle_failures(
        &self,
        handles: &TransformHandles<D>,
        began: std::time::Instant,
        failures: &mut Vec<(usize, String)>,
        opened: &OpenedBatch,
        on_error: OnError,
        input: &str,
    ) -> (u64, Option<String>) {
        let busy_us = u64::try_from(
            handles
                .clock
                .now()
                .saturating_duration_since(began)
                .as_micros(),
        )
        .unwrap_or(u64::MAX);
        self.stats.busy_us.fetch_add(busy_us, Ordering::Relaxed);
        failures.sort_by_key(|(index, _)| *index);
        failures.dedup_by_key(|(index, _)| *index);
        if failures.is_empty() || on_error != OnError::Stop {
            return (busy_us, None);
        }
        let reason = failures
            .first()
            .and_then(|(index, message)| {
                let record = opened.records.get(*index)?;
                Some(format!(
                    "{input}partition {} offset {} failed: {message}",
                    self.partition, record.offset
                ))
            })
            .unwrap_or_default();
        (busy_us, Some(reason))
    }

    /// Deletes the repartition records below the committed position (Kafka Streams'
    /// purge of repartition topics): at most once per `transforms.repartition_purge_interval`,
    /// since moving a log start is a durable write. The position is in a synced changelog
    /// commit, so no restore reads below it again, and stage 1 never rewrites below it
    /// (its repeats are deduplicated by source offset, not by repartition offset). A
    /// failure is logged and retried at the next interval: the records stay readable.
    async fn purge_repartition(
        &self,
        handles: &TransformHandles<D>,
        log: &crate::storage::PartitionLog<D>,
        state: &mut LiveState,
    ) {
        let now = handles.clock.now();
        if state.purged_at.is_some_and(|at| {
            now.saturating_duration_since(at) < handles.limits.repartition_purge_interval
        }) {
            return;
        }
        let Some(&committed) = state.position.input_offsets.get(&INPUT_INDEX) else {
            return;
        };
        state.purged_at = Some(now);
        if committed <= log.log_start_offset() {
            return;
        }
        if let Err(error) = log.delete_before(committed).await {
            tracing::warn!(transform = %self.name, partition = self.partition, %error, "deleting consumed repartition records failed; retried at the next interval");
        }
    }

    /// Folds one input batch's records from `from` into the store and commits it.
    #[allow(clippy::too_many_arguments)]
    async fn fold_batch(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        input: &str,
        spec: &StatefulSpec,
        state: &mut LiveState,
        opened: &OpenedBatch,
        from: i64,
        batch_end: i64,
    ) -> Result<Folded, StateTaskError> {
        let definition = &version.definition;
        let began = handles.clock.now();
        // Which records apply, and to which key; a repeat from stage 1 is skipped.
        let mut sources = state.position.source_offsets.clone();
        let mut applications: Vec<(usize, StateKey)> = Vec::new();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut records_in = 0u64;
        // At most `records_per_commit` records per commit; the input position of this one
        // is the offset of the first record left for the next.
        let cap = self.records_per_commit.load(Ordering::Relaxed).max(1);
        let taken: Vec<usize> = opened
            .records
            .iter()
            .enumerate()
            .filter(|(_, record)| record.offset >= from)
            .map(|(index, _)| index)
            .take(cap.saturating_add(1))
            .collect();
        let until = match taken.get(cap) {
            Some(index) => opened
                .records
                .get(*index)
                .map_or(batch_end, |record| record.offset),
            None => batch_end,
        };
        for index in taken.into_iter().take(cap) {
            let Some(record) = opened.records.get(index) else {
                continue;
            };
            if spec.repartition {
                let headers = record
                    .headers
                    .iter()
                    .map(|header| (header.key.as_str(), header.value.as_deref()));
                match SourceOffset::from_headers(headers) {
                    Ok(source) => {
                        if decide(&mut sources, source) == Dedup::Skip {
                            continue;
                        }
                    }
                    Err(error) => {
                        records_in += 1;
                        failures.push((index, error.to_string()));
                        continue;
                    }
                }
            }
            records_in += 1;
            applications.push((
                index,
                StateKey::plain(STORE_AGGREGATE, record.key.clone().unwrap_or_default()),
            ));
        }
        let folder = Folder {
            plugin: &version.plugin,
            opened,
            partition: self.partition,
            partition_count: handles.registry.partition_count(input),
            chunk: version.plugin.limits().batch_records_max.max(1),
        };
        let store = Arc::clone(&state.store);
        let mut store = store.lock().await;
        let mut txn = store.begin();
        // A windowed aggregate: the records' windows from the committed watermark on.
        let committed_mark = spec.window.map(|window| {
            Watermark::restored(
                state.position.max_timestamp_ms,
                state.position.watermark_ms,
                window.spec.grace_ms,
            )
        });
        let mut late = 0u64;
        let mark = match (&spec.window, committed_mark) {
            (Some(window), Some(mut mark)) => {
                let unwindowed = std::mem::take(&mut applications);
                let now_ms = handles.clock.wall_time_ms();
                let mut sessions = Sessions::default();
                for (index, key) in unwindowed {
                    let Some(record) = opened.records.get(index) else {
                        continue;
                    };
                    let timestamp = record.timestamp;
                    if let Err(error) = check_future_timestamp(
                        timestamp,
                        now_ms,
                        handles.limits.future_timestamp_ms_max,
                    ) {
                        failures.push((index, error.to_string()));
                        continue;
                    }
                    let WindowKind::Session { gap_ms } = window.spec.kind else {
                        let assignment = assign(&window.spec, &mut mark, timestamp);
                        if assignment.is_late() {
                            late += 1;
                        }
                        applications.extend(assignment.open.into_iter().map(|window| {
                            (
                                index,
                                StateKey::windowed(STORE_AGGREGATE, key.key.clone(), window),
                            )
                        }));
                        continue;
                    };
                    mark.observe(timestamp);
                    let key = key.key;
                    let entities = sessions.of(&txn, &key);
                    let bounds: Vec<Window> = entities.iter().map(|e| e.bounds).collect();
                    match session_decision(&bounds, timestamp, gap_ms, &mark) {
                        SessionDecision::Late(_) => late += 1,
                        SessionDecision::New(window) => {
                            entities.push(SessionEntity {
                                storage: window,
                                bounds: window,
                            });
                            applications
                                .push((index, StateKey::windowed(STORE_AGGREGATE, key, window)));
                        }
                        SessionDecision::Extend { from, to } => {
                            if let Some(entity) = entities.iter_mut().find(|e| e.bounds == from) {
                                entity.bounds = to;
                                let storage = entity.storage;
                                applications.push((
                                    index,
                                    StateKey::windowed(STORE_AGGREGATE, key, storage),
                                ));
                            }
                        }
                        SessionDecision::Merge { from, to } => {
                            // The merged states must be the folded ones: fold what is
                            // pending first.
                            folder
                                .fold(&std::mem::take(&mut applications), &mut txn, &mut failures)
                                .await;
                            match merge_sessions(&folder, &mut txn, &mut sessions, &key, &from, to)
                                .await
                            {
                                Ok(storage) => applications.push((
                                    index,
                                    StateKey::windowed(STORE_AGGREGATE, key, storage),
                                )),
                                Err(message) => failures.push((index, message)),
                            }
                        }
                    }
                }
                folder.fold(&applications, &mut txn, &mut failures).await;
                // Sessions folded under their first bounds move to their final ones.
                if let Err(message) = sessions.move_to_bounds(&mut txn) {
                    self.stats.set_error(message);
                }
                Some(mark)
            }
            _ => {
                folder.fold(&applications, &mut txn, &mut failures).await;
                None
            }
        };
        // A hopping record fails once, however many of its windows failed.
        let (busy_us, stop) = self.settle_failures(
            handles,
            began,
            &mut failures,
            opened,
            definition.on_error,
            "",
        );
        if let Some(reason) = stop {
            // Nothing of the batch is committed: the transform resumes at it.
            drop(txn);
            self.stop(handles, reason).await;
            return Ok(Folded::Stopped);
        }
        let mut changes = txn.commit();
        state.position.source_offsets = sources;
        let timestamp_ms = opened.header.max_timestamp;
        let mut outputs: Vec<OutputRecord> = Vec::new();
        let window = spec.window.zip(committed_mark).zip(mark);
        match window {
            Some(((window, _), _)) if window.emit == Emit::Changes => {
                outputs.extend(
                    changes.iter().map(|change| {
                        change_record(&change.key, change.value.clone(), timestamp_ms)
                    }),
                );
            }
            Some(((window, before), after)) => {
                // Suppression: each window the watermark closed, once, with its final state.
                if let Some(end_max) = window.spec.closed_end_max(&after) {
                    let end_after = window.spec.closed_end_max(&before);
                    for key in store.ending_between(STORE_AGGREGATE, end_after, end_max) {
                        if let Some(value) = store.get(&key) {
                            outputs.push(change_record(&key, Some(value.clone()), timestamp_ms));
                        }
                    }
                }
            }
            None => outputs.extend(
                changes
                    .iter()
                    .filter(|change| change.key.store == STORE_AGGREGATE)
                    .map(|change| change_record(&change.key, change.value.clone(), timestamp_ms)),
            ),
        }
        if let Some(((window, _), after)) = window {
            // Expiry: windowed state past its retention is tombstoned (no change record),
            // at most a quarter of a commit's bytes of tombstones per commit; the rest goes
            // with the next ones.
            if let Some(end_max) = window.spec.expired_end_max(&after) {
                let budget = handles.limits.commit_batch_bytes_max / 4;
                let mut bytes = 0u64;
                let mut expire = store.begin();
                for key in expire.store().ending_at_or_before(STORE_AGGREGATE, end_max) {
                    bytes = bytes.saturating_add(key.key.len() as u64 + 17 + 36);
                    if bytes > budget {
                        break;
                    }
                    expire.delete(&key);
                }
                let expired = expire.commit();
                let expired_keys: std::collections::BTreeSet<&StateKey> =
                    expired.iter().map(|change| &change.key).collect();
                changes.retain(|change| !expired_keys.contains(&change.key));
                changes.extend(expired);
            }
            state.position.max_timestamp_ms = after.max_timestamp_ms();
            state.position.watermark_ms = after.value_ms();
        }
        // Dead letters go through the outbox too: written once, like the change records.
        let route = Route {
            transform: &self.name,
            input,
            partition: self.partition,
            output_partitions: 1,
            on_error: definition.on_error,
        };
        let mut dead = Vec::new();
        let mut last_error = None;
        for (index, message) in &failures {
            let Some(record) = opened.records.get(*index) else {
                continue;
            };
            if let Routed::Output(output) = route.batch(
                std::slice::from_ref(record),
                vec![Outcome::Error(message.clone())],
            ) {
                dead.extend(output.dead);
                last_error = output.last_error.or(last_error);
            }
        }
        if let Some(message) = last_error {
            self.stats.set_error(message);
        }
        let records_out = outputs.len() as u64;
        let dead_count = failures.len() as u64;
        let committed = self
            .commit(handles, definition, state, changes, outputs, dead, until)
            .await;
        if let Err(StateTaskError::CommitTooLarge(_)) = &committed {
            // The store is ahead of the log now: the task restores, and retries this input
            // in commits of half as many records.
            let halved = (records_in as usize / 2).max(1);
            self.records_per_commit.store(halved, Ordering::Relaxed);
            tracing::warn!(transform = %self.name, partition = self.partition, records_per_commit = halved, "a commit would pass transforms.commit_batch_bytes_max; splitting the input");
        }
        committed?;
        self.publish(&state.position, Some(store.memory_bytes()));
        if let Some(((window, _), after)) = window {
            let open =
                store.count_ending_after(STORE_AGGREGATE, window.spec.closed_end_max(&after));
            self.stats
                .windows_open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.partition, open as u64);
            self.stats.records_late.fetch_add(late, Ordering::Relaxed);
        }
        drop(store);
        // With a repartition stage, stage 1 counted these records when it read them from
        // the input: `describe` counts the transform's input once (stage 2 reads the
        // transform's own internal topic).
        let records_in = if spec.repartition { 0 } else { records_in };
        self.stats
            .records_in
            .fetch_add(records_in, Ordering::Relaxed);
        self.stats
            .records_out
            .fetch_add(records_out, Ordering::Relaxed);
        self.stats
            .records_dead
            .fetch_add(dead_count, Ordering::Relaxed);
        self.stats.count(
            self.partition,
            PartitionCounters {
                records_in,
                records_out,
                records_dead: dead_count,
                busy_us,
            },
        );
        Ok(Folded::Committed(until))
    }

    /// Appends one commit (state changes, outbox entries for `outputs`, tombstones of
    /// forwarded entries, the position with the input at `next_offset`), then forwards the
    /// new entries.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        handles: &TransformHandles<D>,
        definition: &StoredTransform,
        state: &mut LiveState,
        changes: Vec<crate::streams::store::StateChange>,
        outputs: Vec<OutputRecord>,
        dead: Vec<Record>,
        next_offset: i64,
    ) -> Result<(), StateTaskError> {
        let output_partitions = handles.registry.partition_count(&definition.output).max(1);
        let mut batch = CommitBatch::new(handles.limits.commit_batch_bytes_max);
        for change in &changes {
            batch.state(change)?;
        }
        let mut position = state.position.clone();
        let mut new_entries = Vec::new();
        let targets = outputs
            .into_iter()
            .map(|record| {
                let partition =
                    partition_for_key(record.key.as_deref().unwrap_or_default(), output_partitions);
                (OUTPUT_INDEX, partition, record)
            })
            .chain(dead.into_iter().map(|record| {
                let record = OutputRecord {
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|header| (header.key, header.value))
                        .collect(),
                    timestamp_ms: record.timestamp,
                };
                (DEAD_LETTER_INDEX, 0, record)
            }));
        for (output_index, partition, record) in targets {
            let sequence = position
                .producer_sequences
                .entry((output_index, partition))
                .or_insert(0);
            let entry = OutboxEntry {
                output_index,
                partition,
                producer_sequence: *sequence,
                record,
            };
            *sequence = sequence.wrapping_add(1) & i32::MAX;
            let seq = position.next_outbox_seq;
            position.next_outbox_seq = seq.saturating_add(1);
            batch.outbox(seq, &entry)?;
            new_entries.push((seq, entry));
        }
        for seq in &state.forwarded {
            batch.forwarded(*seq)?;
        }
        position
            .input_offsets
            .insert(INPUT_INDEX, next_offset.max(0));
        let records = batch.finish(&position)?;
        let now_ms = handles.clock.wall_time_ms();
        let records: Vec<Record> = records
            .into_iter()
            .map(|record| Record {
                timestamp: now_ms,
                key: Some(record.key),
                value: record.value,
                headers: Vec::new(),
            })
            .collect();
        let encoded =
            encode_batch(&records, &EncodeOptions::default()).map_err(StateTaskError::Encode)?;
        let changelog = StatefulSpec::changelog_topic(&self.name);
        self.append(handles, &changelog, self.partition, encoded)
            .await?;
        // Committed: the live state is the log's now.
        state.position = position;
        state.forwarded.clear();
        self.publish(&state.position, None);
        self.forward(handles, definition, state, new_entries, false)
            .await
    }

    /// Forwards outbox entries to their topics, batched per partition with the task's
    /// producer id and the entries' sequences. After a restore (`restored`), what the
    /// partition's producer table shows written is skipped.
    async fn forward(
        &self,
        handles: &TransformHandles<D>,
        definition: &StoredTransform,
        state: &mut LiveState,
        entries: Vec<(u64, OutboxEntry)>,
        restored: bool,
    ) -> Result<(), StateTaskError> {
        let mut by_target: BTreeMap<(u32, u32), Vec<(u64, OutboxEntry)>> = BTreeMap::new();
        for (seq, entry) in entries {
            by_target
                .entry((entry.output_index, entry.partition))
                .or_default()
                .push((seq, entry));
        }
        for ((output_index, partition), entries) in by_target {
            let topic = if output_index == DEAD_LETTER_INDEX {
                &definition.dead_letter_topic
            } else {
                &definition.output
            };
            let written = if restored {
                self.last_written_sequence(handles, topic, partition, &state.position)
                    .await?
            } else {
                None
            };
            let mut chunk: Vec<(u64, OutboxEntry)> = Vec::new();
            let mut chunk_bytes = 0usize;
            let limit = handles.limits.output_batch_bytes.max(1);
            let mut flushes = Vec::new();
            for (seq, entry) in entries {
                if written.is_some_and(|last| entry.producer_sequence <= last) {
                    state.forwarded.push(seq);
                    continue;
                }
                let size = 32
                    + entry.record.key.as_ref().map_or(0, Bytes::len)
                    + entry.record.value.as_ref().map_or(0, Bytes::len);
                if !chunk.is_empty() && chunk_bytes + size > limit {
                    flushes.push(std::mem::take(&mut chunk));
                    chunk_bytes = 0;
                }
                chunk_bytes += size;
                chunk.push((seq, entry));
            }
            if !chunk.is_empty() {
                flushes.push(chunk);
            }
            for chunk in flushes {
                let Some((_, first)) = chunk.first() else {
                    continue;
                };
                let options = EncodeOptions {
                    producer_id: state.position.producer_id,
                    producer_epoch: state.position.producer_epoch,
                    base_sequence: first.producer_sequence,
                    ..EncodeOptions::default()
                };
                let records: Vec<Record> = chunk
                    .iter()
                    .map(|(_, entry)| Record {
                        timestamp: entry.record.timestamp_ms,
                        key: entry.record.key.clone(),
                        value: entry.record.value.clone(),
                        headers: entry
                            .record
                            .headers
                            .iter()
                            .map(|(key, value)| Header {
                                key: key.clone(),
                                value: value.clone(),
                            })
                            .collect(),
                    })
                    .collect();
                let encoded = encode_batch(&records, &options).map_err(StateTaskError::Encode)?;
                self.append(handles, topic, partition, encoded).await?;
                state.forwarded.extend(chunk.iter().map(|(seq, _)| *seq));
            }
        }
        state.position.forwarded_seq_end = state.position.next_outbox_seq;
        Ok(())
    }

    /// The last sequence the task's producer wrote to a partition, as its producer table
    /// shows (`None`: nothing, or another epoch).
    async fn last_written_sequence(
        &self,
        handles: &TransformHandles<D>,
        topic: &str,
        partition: u32,
        position: &CommitPosition,
    ) -> Result<Option<i32>, StateTaskError> {
        let log = handles.registry.partition_log(topic, partition)?;
        let producers = log
            .producers()
            .await
            .map_err(|_| StateTaskError::Producers {
                topic: topic.to_string(),
                partition,
            })?;
        Ok(producers
            .into_iter()
            .find(|(id, entry)| {
                *id == position.producer_id && entry.epoch == position.producer_epoch
            })
            .and_then(|(_, entry)| entry.batches.back().map(|batch| batch.last_sequence)))
    }

    /// Appends one batch, synced.
    async fn append(
        &self,
        handles: &TransformHandles<D>,
        topic: &str,
        partition: u32,
        batch: Bytes,
    ) -> Result<(), StateTaskError> {
        let target = handles.registry.partition(topic, partition)?;
        let log = target.online_log()?;
        log.append(batch, AppendDurability::Synced)
            .await
            .map(|_| ())
            .map_err(|source| {
                if matches!(source, AppendError::Fenced { .. }) {
                    handles.registry.reopen_fenced(&target);
                }
                StateTaskError::Append {
                    topic: topic.to_string(),
                    partition,
                    source,
                }
            })
    }

    async fn stop(&self, handles: &TransformHandles<D>, reason: String) {
        tracing::error!(transform = %self.name, partition = self.partition, %reason, "transform stopped (on_error = stop)");
        self.stats.set_error(reason.clone());
        let stopped = StoppedReason {
            state: "failed".into(),
            reason,
        };
        if let Err(error) = handles.set_stopped(&self.name, Some(stopped)).await {
            tracing::error!(transform = %self.name, %error, "could not record the stop");
        }
    }
}

/// What a batch's fold came to.
enum Folded {
    /// Committed (and forwarded) the input up to this offset.
    Committed(i64),
    /// The transform stopped before it (`on_error = stop`).
    Stopped,
}

/// Folds applications through `ledge_aggregate` for one input batch: calls of at most
/// `chunk` applications, a failing call re-run in halves down to the failing record.
struct Folder<'a> {
    plugin: &'a Arc<Plugin>,
    opened: &'a OpenedBatch,
    partition: u32,
    partition_count: u32,
    chunk: usize,
}

impl Folder<'_> {
    /// Folds `applications` in order into `txn`; a record that fails is pushed to
    /// `failures` (its changes undone).
    async fn fold(
        &self,
        applications: &[(usize, StateKey)],
        txn: &mut crate::streams::store::Transaction<'_>,
        failures: &mut Vec<(usize, String)>,
    ) {
        // Ranges of `applications` still to fold, the next on top: each call is exact from
        // the states the earlier ones left, so a failed one is re-run in halves.
        let mut ranges: Vec<std::ops::Range<usize>> = (0..applications.len())
            .step_by(self.chunk)
            .map(|start| start..(start + self.chunk).min(applications.len()))
            .rev()
            .collect();
        while let Some(range) = ranges.pop() {
            let Some(slice) = applications.get(range.clone()) else {
                continue;
            };
            if slice.is_empty() {
                continue;
            }
            match fold_call(
                self.plugin,
                self.opened,
                slice,
                txn,
                self.partition,
                self.partition_count,
            )
            .await
            {
                Ok(()) => {}
                Err(message) if range.len() == 1 => {
                    if let Some((index, _)) = slice.first() {
                        failures.push((*index, message));
                    }
                }
                Err(_) => {
                    let middle = range.start + range.len() / 2;
                    ranges.push(middle..range.end);
                    ranges.push(range.start..middle);
                }
            }
        }
    }
}

/// A change record of the output: key = group key, value = the state (null: deleted), and
/// a windowed entry's bounds as headers `ledge.window.start` and `ledge.window.end`.
fn change_record(key: &StateKey, value: Option<Bytes>, timestamp_ms: i64) -> OutputRecord {
    let headers = key
        .window
        .map(|window| {
            vec![
                (
                    WINDOW_START_HEADER.to_string(),
                    Some(Bytes::from(window.start_ms.to_string())),
                ),
                (
                    WINDOW_END_HEADER.to_string(),
                    Some(Bytes::from(window.end_ms.to_string())),
                ),
            ]
        })
        .unwrap_or_default();
    OutputRecord {
        key: Some(key.key.clone()),
        value,
        headers,
        timestamp_ms,
    }
}

/// One session of a key while a batch folds: its records are folded into the entry at
/// `storage` (its bounds when the batch began, or when it was created or merged), and it
/// moves to `bounds` once the batch is folded.
struct SessionEntity {
    storage: Window,
    bounds: Window,
}

/// The sessions of the keys a batch touches.
#[derive(Default)]
struct Sessions {
    by_key: BTreeMap<Bytes, Vec<SessionEntity>>,
}

impl Sessions {
    /// The key's sessions, read from the store at first use.
    fn of(
        &mut self,
        txn: &crate::streams::store::Transaction<'_>,
        key: &Bytes,
    ) -> &mut Vec<SessionEntity> {
        self.by_key.entry(key.clone()).or_insert_with(|| {
            txn.store()
                .windows_of(STORE_AGGREGATE, key, i64::MIN, i64::MAX)
                .filter_map(|(state_key, _)| state_key.window)
                .map(|window| SessionEntity {
                    storage: window,
                    bounds: window,
                })
                .collect()
        })
    }

    /// Moves each session's state from where it was folded to its final bounds.
    fn move_to_bounds(
        &mut self,
        txn: &mut crate::streams::store::Transaction<'_>,
    ) -> Result<(), String> {
        let mut moves = Vec::new();
        for (key, entities) in &self.by_key {
            for entity in entities.iter().filter(|e| e.storage != e.bounds) {
                let from = StateKey::windowed(STORE_AGGREGATE, key.clone(), entity.storage);
                if let Some(value) = txn.get(&from).cloned() {
                    txn.delete(&from);
                    moves.push((
                        StateKey::windowed(STORE_AGGREGATE, key.clone(), entity.bounds),
                        value,
                    ));
                }
            }
        }
        self.by_key.clear();
        for (key, value) in moves {
            // Same bytes as the entry just deleted: it fits unless the limit was lowered.
            txn.put(key, value).map_err(|error| error.to_string())?;
        }
        Ok(())
    }
}

/// Merges the sessions `from` (start order) of `key` into one with bounds `to` through the
/// module's `ledge_merge`, left to right; returns where its state is stored now.
async fn merge_sessions(
    folder: &Folder<'_>,
    txn: &mut crate::streams::store::Transaction<'_>,
    sessions: &mut Sessions,
    key: &Bytes,
    from: &[Window],
    to: Window,
) -> Result<Window, String> {
    let entities = sessions.of(txn, key);
    let merging: Vec<Window> = entities
        .iter()
        .filter(|e| from.contains(&e.bounds))
        .map(|e| e.storage)
        .collect();
    let Some(first) = merging.first().copied() else {
        return Err("no session to merge".into());
    };
    let mut merged: Option<Bytes> = None;
    for storage in &merging {
        let state = txn
            .get(&StateKey::windowed(STORE_AGGREGATE, key.clone(), *storage))
            .cloned();
        merged = match (merged, state) {
            (Some(left), Some(right)) => {
                let run = folder
                    .plugin
                    .merge_on_executor(vec![(left, right)])
                    .await
                    .map_err(|error| error.to_string())?;
                match run.output.into_iter().next() {
                    Some(Ok(state)) => Some(state),
                    Some(Err(message)) => return Err(message),
                    None => return Err("ledge_merge answered no state".into()),
                }
            }
            (left, right) => left.or(right),
        };
    }
    for storage in merging.iter().skip(1) {
        txn.delete(&StateKey::windowed(STORE_AGGREGATE, key.clone(), *storage));
    }
    if let Some(state) = merged {
        txn.put(
            StateKey::windowed(STORE_AGGREGATE, key.clone(), first),
            state,
        )
        .map_err(|error| error.to_string())?;
    }
    entities.retain(|e| !from.contains(&e.bounds) || e.storage == first);
    if let Some(entity) = entities.iter_mut().find(|e| e.storage == first) {
        entity.bounds = to;
    }
    Ok(first)
}

/// One `ledge_aggregate` call over `applications` (record index in `opened`, state key),
/// from the states in `txn`; applies its slot changes, or changes nothing and says why it
/// failed (a record's error, the call's failure, or the state memory limit).
async fn fold_call(
    plugin: &Arc<Plugin>,
    opened: &OpenedBatch,
    applications: &[(usize, StateKey)],
    txn: &mut crate::streams::store::Transaction<'_>,
    partition: u32,
    partition_count: u32,
) -> Result<(), String> {
    let (Some(first), Some(last)) = (
        applications.iter().map(|(index, _)| *index).min(),
        applications.iter().map(|(index, _)| *index).max(),
    ) else {
        return Ok(());
    };
    let Some((header, records, count)) =
        opened.call_input(first..last + 1, partition, partition_count)
    else {
        return Err("record range out of the batch".into());
    };
    let mut slot_of: BTreeMap<&StateKey, u32> = BTreeMap::new();
    let mut slots: Vec<(StateKey, Option<Bytes>)> = Vec::new();
    let mut calls = Vec::with_capacity(applications.len());
    for (index, key) in applications {
        let slot = match slot_of.get(key) {
            Some(slot) => *slot,
            None => {
                let slot = u32::try_from(slots.len()).map_err(|_| "too many slots".to_string())?;
                slots.push((key.clone(), txn.get(key).cloned()));
                slot_of.insert(key, slot);
                slot
            }
        };
        calls.push(Application {
            record_index: u32::try_from(index - first).map_err(|_| "record index".to_string())?,
            slot_index: slot,
        });
    }
    let guest_slots = slots
        .iter()
        .map(|(key, state)| {
            let window = key.window.map(|window| crate::wasm::abi::Window {
                start: window.start_ms,
                end: window.end_ms,
            });
            (key.key.clone(), window, state.clone())
        })
        .collect();
    let run = plugin
        .aggregate_on_executor(guest_slots, header, records, count, calls)
        .await
        .map_err(|error| error.to_string())?;
    if let Some(Err(message)) = run
        .output
        .applications
        .iter()
        .find(|result| result.is_err())
    {
        return Err(message.clone());
    }
    let mut applied: Vec<(StateKey, Option<Bytes>)> = Vec::new();
    for ((state_key, old), change) in slots.into_iter().zip(run.output.slots) {
        match change {
            SlotChange::Unchanged => {}
            SlotChange::Delete => {
                txn.delete(&state_key);
                applied.push((state_key, old));
            }
            SlotChange::Put(value) => {
                if let Err(error) = txn.put(state_key.clone(), value) {
                    // Undo this call's changes: the halves re-run from the old states.
                    for (state_key, old) in applied.into_iter().rev() {
                        match old {
                            Some(old) => {
                                let _ = txn.put(state_key, old);
                            }
                            None => txn.delete(&state_key),
                        }
                    }
                    return Err(error.to_string());
                }
                applied.push((state_key, old));
            }
        }
    }
    Ok(())
}
