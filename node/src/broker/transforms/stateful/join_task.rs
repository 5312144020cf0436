//! Join transforms on one node (docs/STREAMS.md, "Joins"): the state task's step for a
//! module of kind `join`. Restore, the atomic commit and outbox forwarding are the
//! aggregate's (`StateTask::restore`, `commit`, `forward`); this file reads the two inputs
//! and turns their records into `ledge_join` pairs.
//!
//! State partition `q` reads partition `q` of both inputs (co-partitioned, checked at
//! deploy). The commit position holds both inputs' next offsets (input 0 the left, the
//! transform's input; input 1 the right) and, for a stream-stream join, the watermark.
//!
//! - Stream-table (`join.table`): each step first applies the table's new records (up to
//!   `transforms.read_bytes_max`) to store 3, the latest record per key (a null value
//!   deletes it), then joins the left records it reads with their key's current record (or
//!   none: a left join; the module drops what it does not want). So a left record is joined
//!   with the table as of every table record appended before the task read that left
//!   record's batch.
//! - Stream-stream (`join.with`): each step reads the left input, then the right; each record
//!   is buffered (stores 1 and 2) and paired with the other side's buffered records of its
//!   key within the window (`streams::join::insert`), late ones counted and dropped, and
//!   buffered records past any possible partner expired. Every pair of non-late records
//!   within the window is emitted once, when the second of the two is processed.
//!
//! A record without a key joins nothing on either side of a stream-stream join and updates
//! no table row: it is counted late/dropped (Kafka drops them too). A left record without a
//! key in a stream-table join is joined with no table record. A pair the module fails sends
//! the record that completed it to the dead-letter topic (through the outbox, once), or
//! stops the transform before the batch, by `on_error`; the record stays buffered.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use ledge_protocol::{BatchIter, EncodeOptions, Header, Record, encode_batch};
use tokio::sync::watch;

use super::{DEAD_LETTER_INDEX, Folded, INPUT_INDEX, LiveState, StateTask, StateTaskError, Step};
use crate::broker::metadata::{JoinKind, JoinSpec};
use crate::broker::transforms::route::{Route, Routed};
use crate::broker::transforms::{OnError, PartitionCounters, TransformHandles, TransformVersion};
use crate::storage::log::PartitionLog;
use crate::storage::{Disk, ReadError};
use crate::streams::changelog::OutputRecord;
use crate::streams::join::{self as join_state, JoinInsert, Side};
use crate::streams::window::Watermark;
use crate::wasm::abi::{InputHeader, JoinPair};
use crate::wasm::batch::{OpenedBatch, open_batch};
use crate::wasm::{Outcome, Plugin, WasmError};

/// Input index of a join's second (right) input in the commit position.
pub(super) const RIGHT_INDEX: u32 = 1;

const _: () = assert!(RIGHT_INDEX != INPUT_INDEX && DEAD_LETTER_INDEX == 1);

/// One `ledge_join` pair and where it came from.
struct Pair {
    /// Index (in the batch being processed) of the record that completed the pair: it
    /// takes the blame when the module fails the pair.
    trigger: usize,
    left: OutputRecord,
    right: Option<OutputRecord>,
    /// An output record without its own timestamp gets this: the left record's for a
    /// stream-table join, the later of the two for a stream-stream one (Kafka's rule).
    timestamp_ms: i64,
}

/// What reading one input came to.
enum Read {
    /// Nothing new.
    Nothing,
    /// Committed at least one batch.
    Progress,
    /// The transform stopped (`on_error = stop`).
    Stopped,
}

fn output_record(record: &ledge_protocol::DecodedRecord) -> OutputRecord {
    OutputRecord {
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|header| (header.key.clone(), header.value.clone()))
            .collect(),
        timestamp_ms: record.timestamp,
    }
}

fn wire_record(record: &OutputRecord) -> Record {
    Record {
        timestamp: record.timestamp_ms,
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| Header {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}

impl<D: Disk> StateTask<D> {
    /// One step of a join: reads the inputs from the committed positions (the table first)
    /// and commits each batch.
    pub(super) async fn join_step(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        state: &mut LiveState,
        join: &JoinSpec,
    ) -> Result<Step, StateTaskError> {
        let definition = &version.definition;
        let left = handles
            .registry
            .partition_log(&definition.input, self.partition)?;
        let right = handles
            .registry
            .partition_log(&join.right, self.partition)?;
        let left_watch = left.subscribe_high_watermark();
        let right_watch = right.subscribe_high_watermark();
        self.publish_join(state);
        let sides = match join.kind {
            JoinKind::Table => [Side::Right, Side::Left],
            JoinKind::Stream { .. } => [Side::Left, Side::Right],
        };
        let mut progressed = false;
        for side in sides {
            let (topic, log) = match side {
                Side::Left => (definition.input.as_str(), &left),
                Side::Right => (join.right.as_str(), &right),
            };
            match self
                .join_read(handles, version, state, join, side, topic, log, &left)
                .await?
            {
                Read::Nothing => {}
                Read::Progress => progressed = true,
                Read::Stopped => return Ok(Step::Again),
            }
        }
        Ok(if progressed {
            Step::Again
        } else {
            Step::CaughtUpEither(left_watch, right_watch)
        })
    }

    /// Shows the right input's committed position in `describe`.
    fn publish_join(&self, state: &LiveState) {
        if let Some(offset) = state.position.input_offsets.get(&RIGHT_INDEX) {
            self.stats
                .join_positions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(self.partition, *offset);
        }
    }

    /// Reads one input of the join from its committed position (at most
    /// `transforms.read_bytes_max`) and commits each batch read.
    #[allow(clippy::too_many_arguments)]
    async fn join_read(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        state: &mut LiveState,
        join: &JoinSpec,
        side: Side,
        topic: &str,
        log: &PartitionLog<D>,
        left: &PartitionLog<D>,
    ) -> Result<Read, StateTaskError> {
        let definition = &version.definition;
        let index = match side {
            Side::Left => INPUT_INDEX,
            Side::Right => RIGHT_INDEX,
        };
        let committed = state.position.input_offsets.get(&index).copied();
        let start = committed
            .unwrap_or_else(|| log.log_start_offset())
            .max(log.log_start_offset());
        if let Some(committed) = committed
            && committed < start
        {
            self.stats.set_error(format!(
                "{topic:?} offsets {committed}..{start} were deleted by retention before the join read them"
            ));
        }
        let read = match log.read(start, handles.limits.read_bytes_max).await {
            Ok(read) => read,
            Err(ReadError::OffsetOutOfRange { .. }) => return Ok(Read::Nothing),
            Err(error) => return Err(error.into()),
        };
        if read.bytes.is_empty() {
            return Ok(Read::Nothing);
        }
        let mut next = start;
        let mut progressed = false;
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
                            "{topic:?} partition {} batch at offset {} does not decode: {error}",
                            self.partition, header.base_offset
                        );
                        if definition.on_error == OnError::Stop {
                            self.stop(handles, message).await;
                            return Ok(Read::Stopped);
                        }
                        self.stats.set_error(message);
                        None
                    }
                }
            };
            let mut from = next;
            loop {
                let folded = match &opened {
                    Some(opened) => {
                        self.join_batch(
                            handles, version, state, join, side, topic, opened, from, batch_end,
                            left,
                        )
                        .await?
                    }
                    None => {
                        self.join_commit(
                            handles,
                            version,
                            state,
                            side,
                            left,
                            Vec::new(),
                            Vec::new(),
                            Vec::new(),
                            batch_end,
                        )
                        .await?;
                        Folded::Committed(batch_end)
                    }
                };
                match folded {
                    Folded::Committed(until) if until < batch_end => from = until,
                    Folded::Committed(_) => break,
                    Folded::Stopped => return Ok(Read::Stopped),
                }
            }
            next = batch_end;
            progressed = true;
        }
        Ok(if progressed {
            Read::Progress
        } else {
            Read::Nothing
        })
    }

    /// Joins one batch's records from `from` (at most `records_per_commit` of them) and
    /// commits them.
    #[allow(clippy::too_many_arguments)]
    async fn join_batch(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        state: &mut LiveState,
        join: &JoinSpec,
        side: Side,
        topic: &str,
        opened: &OpenedBatch,
        from: i64,
        batch_end: i64,
        left: &PartitionLog<D>,
    ) -> Result<Folded, StateTaskError> {
        let definition = &version.definition;
        let began = handles.clock.now();
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
        let window = join.kind.window();
        let mut mark = Watermark::restored(
            state.position.max_timestamp_ms,
            state.position.watermark_ms,
            window.map_or(0, |window| window.grace_ms),
        );
        let store = Arc::clone(&state.store);
        let mut store = store.lock().await;
        let mut txn = store.begin();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut records_in = 0u64;
        let mut late = 0u64;
        for index in taken.into_iter().take(cap) {
            let Some(record) = opened.records.get(index) else {
                continue;
            };
            records_in += 1;
            let this = output_record(record);
            match (window, side) {
                (None, Side::Right) => {
                    let Some(key) = &record.key else {
                        late += 1;
                        continue;
                    };
                    let row = record.value.as_ref().map(|_| this.encode());
                    if let Err(error) = join_state::table_update(&mut txn, key, row) {
                        failures.push((index, error.to_string()));
                    }
                }
                (None, Side::Left) => {
                    let row = record
                        .key
                        .as_ref()
                        .and_then(|key| join_state::table_lookup(txn.store(), key))
                        .map(|row| OutputRecord::decode(row));
                    let right = match row.transpose() {
                        Ok(right) => right,
                        Err(error) => {
                            failures.push((index, format!("table row does not decode: {error}")));
                            continue;
                        }
                    };
                    pairs.push(Pair {
                        trigger: index,
                        timestamp_ms: this.timestamp_ms,
                        left: this,
                        right,
                    });
                }
                (Some(window), side) => {
                    let Some(key) = &record.key else {
                        late += 1;
                        continue;
                    };
                    let inserted = join_state::insert(
                        &window,
                        &mut txn,
                        &mut mark,
                        side,
                        key,
                        record.timestamp,
                        &this.encode(),
                    );
                    let partners = match inserted {
                        Ok(JoinInsert::Late) => {
                            late += 1;
                            continue;
                        }
                        Ok(JoinInsert::Buffered { partners }) => partners,
                        Err(error) => {
                            failures.push((index, error.to_string()));
                            continue;
                        }
                    };
                    for partner in partners {
                        let other = match OutputRecord::decode(&partner.record) {
                            Ok(other) => other,
                            Err(error) => {
                                failures.push((
                                    index,
                                    format!("buffered record does not decode: {error}"),
                                ));
                                break;
                            }
                        };
                        let timestamp_ms = this.timestamp_ms.max(other.timestamp_ms);
                        let (left, right) = match side {
                            Side::Left => (this.clone(), other),
                            Side::Right => (other, this.clone()),
                        };
                        pairs.push(Pair {
                            trigger: index,
                            left,
                            right: Some(right),
                            timestamp_ms,
                        });
                    }
                }
            }
        }
        if let Some(window) = &window {
            join_state::expire(window, &mut txn, &mark);
        }
        let partition_count = handles.registry.partition_count(topic);
        let outcomes = join_pairs(
            &version.plugin,
            handles,
            &pairs,
            self.partition,
            partition_count,
        )
        .await;
        let mut outputs = Vec::new();
        for (pair, outcome) in pairs.iter().zip(outcomes) {
            match outcome {
                Outcome::Records(records) => {
                    outputs.extend(records.into_iter().map(|record| {
                        OutputRecord {
                            key: record.key,
                            value: record.value,
                            headers: record
                                .headers
                                .into_iter()
                                .map(|header| (header.key, header.value))
                                .collect(),
                            timestamp_ms: record.timestamp.unwrap_or(pair.timestamp_ms),
                        }
                    }));
                }
                Outcome::Drop => {}
                Outcome::Error(message) => failures.push((pair.trigger, message)),
                Outcome::Keep | Outcome::Partition(_) => failures.push((
                    pair.trigger,
                    "a join returned an entry other than DROP, ERROR or RECORDS".to_string(),
                )),
            }
        }
        let (busy_us, stop) = self.settle_failures(
            handles,
            began,
            &mut failures,
            opened,
            definition.on_error,
            &format!("{topic:?} "),
        );
        if let Some(reason) = stop {
            // Nothing of the batch is committed: the transform resumes at it.
            drop(txn);
            self.stop(handles, reason).await;
            return Ok(Folded::Stopped);
        }
        let changes = txn.commit();
        if window.is_some() {
            state.position.max_timestamp_ms = mark.max_timestamp_ms();
            state.position.watermark_ms = mark.value_ms();
        }
        // Dead letters go through the outbox too: written once, like the outputs.
        let route = Route {
            transform: &self.name,
            input: topic,
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
            .join_commit(
                handles, version, state, side, left, changes, outputs, dead, until,
            )
            .await;
        if let Err(StateTaskError::CommitTooLarge(_)) = &committed {
            // The store is ahead of the log now: the task restores, and retries this input
            // in commits of half as many records.
            let halved = (records_in as usize / 2).max(1);
            self.records_per_commit.store(halved, Ordering::Relaxed);
            tracing::warn!(transform = %self.name, partition = self.partition, records_per_commit = halved, "a join commit would pass transforms.commit_batch_bytes_max; splitting the input");
        }
        committed?;
        self.publish(&state.position, Some(store.memory_bytes()));
        drop(store);
        for (counter, add) in [
            (&self.stats.records_in, records_in),
            (&self.stats.records_out, records_out),
            (&self.stats.records_dead, dead_count),
            (&self.stats.records_late, late),
        ] {
            counter.fetch_add(add, Ordering::Relaxed);
        }
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

    /// Commits with `side`'s input at `next_offset` and the other input where it was (the
    /// left's start when it has no position yet).
    #[allow(clippy::too_many_arguments)]
    async fn join_commit(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        state: &mut LiveState,
        side: Side,
        left: &PartitionLog<D>,
        changes: Vec<crate::streams::store::StateChange>,
        outputs: Vec<OutputRecord>,
        dead: Vec<Record>,
        next_offset: i64,
    ) -> Result<(), StateTaskError> {
        let left_next = match side {
            Side::Left => next_offset,
            Side::Right => {
                // A failed commit restores the task, so the live position may run ahead.
                state
                    .position
                    .input_offsets
                    .insert(RIGHT_INDEX, next_offset);
                state
                    .position
                    .input_offsets
                    .get(&INPUT_INDEX)
                    .copied()
                    .unwrap_or_else(|| left.log_start_offset())
            }
        };
        self.commit(
            handles,
            &version.definition,
            state,
            changes,
            outputs,
            dead,
            left_next,
        )
        .await?;
        self.publish_join(state);
        Ok(())
    }
}

/// A batch's `(header, records region, count)` for a call, from records (an empty batch for
/// none).
async fn call_batch<D: Disk>(
    handles: &TransformHandles<D>,
    records: &[Record],
    partition: u32,
    partition_count: u32,
) -> Result<(InputHeader, Bytes, usize), WasmError> {
    let empty = InputHeader {
        partition,
        partition_count,
        base_offset: 0,
        base_timestamp: 0,
    };
    if records.is_empty() {
        return Ok((empty, Bytes::new(), 0));
    }
    let encoded = encode_batch(records, &EncodeOptions::default())
        .map_err(|error| WasmError::Garbage(error.to_string()))?;
    let opened = open_batch(&encoded, handles.plugins.budget())
        .await
        .map_err(|error| WasmError::Garbage(error.to_string()))?;
    opened
        .call_input(0..records.len(), partition, partition_count)
        .ok_or_else(|| WasmError::Garbage("empty join batch".to_string()))
}

/// One `ledge_join` call over `pairs`: the left records in pair order, the right ones
/// likewise (a record appears once per pair it is in).
async fn join_call<D: Disk>(
    plugin: &Arc<Plugin>,
    handles: &TransformHandles<D>,
    pairs: &[Pair],
    partition: u32,
    partition_count: u32,
) -> Result<Vec<Outcome>, WasmError> {
    let lefts: Vec<Record> = pairs.iter().map(|pair| wire_record(&pair.left)).collect();
    let rights: Vec<Record> = pairs
        .iter()
        .filter_map(|pair| pair.right.as_ref().map(wire_record))
        .collect();
    let mut next_right = 0u32;
    let mut call_pairs = Vec::with_capacity(pairs.len());
    for (index, pair) in pairs.iter().enumerate() {
        let right_index = pair.right.as_ref().map(|_| {
            let right = next_right;
            next_right += 1;
            right
        });
        call_pairs.push(JoinPair {
            left_index: u32::try_from(index)
                .map_err(|_| WasmError::Garbage("too many pairs".to_string()))?,
            right_index,
        });
    }
    let left = call_batch(handles, &lefts, partition, partition_count).await?;
    let right = call_batch(handles, &rights, partition, partition_count).await?;
    Ok(plugin
        .join_on_executor(left, right, call_pairs)
        .await?
        .output)
}

/// The module's outcome for each pair, in calls of at most `wasm.batch_records_max` pairs;
/// a call that fails (trap, fuel, malformed output) is re-run pair by pair, and a pair whose
/// own call fails gets an `Error` outcome with the failure.
async fn join_pairs<D: Disk>(
    plugin: &Arc<Plugin>,
    handles: &TransformHandles<D>,
    pairs: &[Pair],
    partition: u32,
    partition_count: u32,
) -> Vec<Outcome> {
    let chunk = plugin.limits().batch_records_max.max(1);
    let mut outcomes = Vec::with_capacity(pairs.len());
    for calls in pairs.chunks(chunk) {
        match join_call(plugin, handles, calls, partition, partition_count).await {
            Ok(answered) if answered.len() == calls.len() => outcomes.extend(answered),
            _ => {
                for pair in calls {
                    let outcome = match join_call(
                        plugin,
                        handles,
                        std::slice::from_ref(pair),
                        partition,
                        partition_count,
                    )
                    .await
                    {
                        Ok(mut answered) if answered.len() == 1 => {
                            answered.pop().unwrap_or(Outcome::Drop)
                        }
                        Ok(_) => Outcome::Error("the join answered no outcome".to_string()),
                        Err(error) => Outcome::Error(error.to_string()),
                    };
                    outcomes.push(outcome);
                }
            }
        }
    }
    outcomes
}

/// Waits for either input's high watermark (used by `StateTask::run_once`).
pub(super) async fn either_changed(
    left: &mut watch::Receiver<i64>,
    right: &mut watch::Receiver<i64>,
) {
    tokio::select! {
        _ = left.changed() => {}
        _ = right.changed() => {}
    }
}
