//! One task per input partition of a running transform: reads a chunk of input from its
//! position, runs the module over each batch, hands the outcomes to `route`, and writes the
//! chunk (output durable, then dead letters, then the position) while it reads the next.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use ledge_protocol::BatchIter;
use tokio::sync::watch;

use ledge_protocol::BatchError;
use tokio::task::JoinError;

use super::bisect::bisect;
use super::route::{IterationOutput, Route, Routed};
use super::{
    LinkError, OnError, PartitionCounters, TransformHandles, TransformStats, TransformVersion,
};
use crate::broker::metadata::{StoppedReason, StoredTransform};
use crate::broker::registry::LookupError;
use crate::groups::service::OffsetsLogError;
use crate::storage::{Disk, ReadError};
use crate::wasm::PluginKind;
use crate::wasm::batch::open_batch;

/// Why an iteration of a partition task failed: published as the transform's last error,
/// then retried from the committed position after `transforms.retry_backoff`.
#[derive(Debug, thiserror::Error)]
pub(super) enum TaskError {
    /// The input partition does not exist or is offline.
    #[error(transparent)]
    InputUnavailable(LookupError),
    /// Reading the input failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// In a cluster: this node does not lead the input partition now (the task ends when
    /// the runner sees the new leader).
    #[error("reading the input: {0}")]
    NotLeading(LinkError),
    /// A stored input batch's framing does not parse.
    #[error("input batch unreadable: {0}")]
    Unreadable(BatchError),
    /// Appending output or dead letters failed.
    #[error("writing {topic:?}: {source}")]
    Write {
        /// The topic written.
        topic: String,
        /// Why.
        source: super::AppendRecordsError,
    },
    /// Committing the position failed.
    #[error("committing the position: {0}")]
    Commit(CommitError),
    /// Reading the committed position from its coordinator failed (in a cluster).
    #[error("reading the committed position: {0}")]
    Position(LinkError),
    /// The task writing the previous chunk failed.
    #[error("transform write task failed: {0}")]
    WriteTask(JoinError),
}

/// Why a position was not committed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    /// On one node: the local `__consumer_offsets` did not take it.
    #[error(transparent)]
    Local(OffsetsLogError),
    /// In a cluster: the coordinator of the transform's positions did not take it.
    #[error(transparent)]
    Cluster(LinkError),
}

/// The task of one input partition of a running transform.
pub(super) struct PartitionTask<D: Disk> {
    /// The registry, plug-in host, group service and clock the task works through.
    pub(super) handles: Arc<TransformHandles<D>>,
    pub(super) name: String,
    pub(super) partition: u32,
    pub(super) versions: watch::Receiver<Arc<TransformVersion>>,
    pub(super) stats: Arc<TransformStats>,
    /// The previous chunk's output being made durable (then its position committed) while
    /// the next chunk is read and run: the module never waits for an fdatasync.
    pub(super) in_flight: Option<InFlight>,
    /// The position this task last committed (read from the coordinator when `None`): in
    /// a cluster the coordinator is often another node, asked once per task, not per
    /// iteration.
    pub(super) committed: Option<i64>,
}

/// A chunk being written.
pub(super) struct InFlight {
    write: tokio::task::JoinHandle<Result<(), TaskError>>,
    next_position: i64,
}

/// A processed chunk of input, ready to be written.
struct Processed {
    output: IterationOutput,
    start: i64,
    next_position: i64,
    stop_reason: Option<String>,
}

enum Step {
    /// Nothing to read: wait on the high watermark.
    CaughtUp(watch::Receiver<i64>),
    /// Go on at once (input was skipped).
    Again,
    /// Output to write.
    Work(Processed),
}

impl<D: Disk> PartitionTask<D> {
    pub(super) async fn run(mut self) {
        loop {
            let version = Arc::clone(&self.versions.borrow_and_update());
            if version.definition.stopped.is_some() {
                let _ = self.settle().await;
                if self.versions.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let handles = Arc::clone(&self.handles);
            // Runs with its deployer's permissions, checked before each chunk: a revoked
            // Read or Write pauses it (state `denied`) until they are granted again.
            if let Err(denied) = handles.policy.transform_permits(&version.definition) {
                let _ = self.settle().await;
                if self.stats.set_denied(Some(&denied)) {
                    tracing::warn!(transform = %self.name, partition = self.partition, %denied, "transform waits: its deployer lacks a permission");
                }
                let backoff = handles.limits.retry_backoff;
                tokio::select! {
                    biased;
                    () = crate::clock::sleep(&*handles.clock, backoff) => {}
                    changed = self.versions.changed() => if changed.is_err() { return },
                }
                continue;
            }
            if self.stats.set_denied(None) {
                tracing::info!(transform = %self.name, partition = self.partition, "transform resumes: its deployer's permissions allow it again");
            }
            let pending_position = self.in_flight.as_ref().map(|write| write.next_position);
            let step = self.process(&handles, &version, pending_position).await;
            let step = match step {
                Ok(step) => step,
                Err(error) => {
                    let _ = self.settle().await;
                    self.back_off(&handles, error).await;
                    continue;
                }
            };
            match step {
                Step::Again => {}
                Step::CaughtUp(mut high_watermark) => {
                    if let Err(message) = self.settle().await {
                        self.back_off(&handles, message).await;
                        continue;
                    }
                    // Caught up: wait for input, a new version, or the idle timeout.
                    let idle = handles.limits.idle_wait;
                    let idle_over = crate::clock::sleep(&*handles.clock, idle);
                    tokio::select! {
                        biased;
                        _ = high_watermark.changed() => {}
                        () = idle_over => {}
                        changed = self.versions.changed() => if changed.is_err() { return },
                    }
                }
                Step::Work(processed) => {
                    if let Err(message) = self.settle().await {
                        // The previous chunk did not become durable: drop this one too and
                        // start again from the committed position.
                        self.back_off(&handles, message).await;
                        continue;
                    }
                    let must_finish = processed.stop_reason.is_some();
                    let next_position = processed.next_position;
                    let write = tokio::spawn(write_chunk(
                        Arc::clone(&handles),
                        self.name.clone(),
                        self.partition,
                        version.definition.clone(),
                        processed,
                        Arc::clone(&self.stats),
                    ));
                    self.in_flight = Some(InFlight {
                        write,
                        next_position,
                    });
                    if must_finish && let Err(message) = self.settle().await {
                        self.back_off(&handles, message).await;
                    }
                }
            }
        }
    }

    /// Waits for the chunk being written, if any.
    async fn settle(&mut self) -> Result<(), TaskError> {
        match self.in_flight.take() {
            None => Ok(()),
            Some(in_flight) => {
                in_flight.write.await.map_err(TaskError::WriteTask)??;
                self.committed = Some(in_flight.next_position);
                Ok(())
            }
        }
    }

    async fn back_off(&mut self, handles: &TransformHandles<D>, error: TaskError) {
        tracing::warn!(transform = %self.name, partition = self.partition, %error, "transform iteration failed; retrying");
        self.stats.set_error(error.to_string());
        let backoff = handles.limits.retry_backoff;
        tokio::select! {
            biased;
            () = crate::clock::sleep(&*handles.clock, backoff) => {}
            _ = self.versions.changed() => {}
        }
    }

    /// Reads and runs one chunk of input from `pending_position` (where the chunk being
    /// written ends) or else the committed position.
    async fn process(
        &self,
        handles: &TransformHandles<D>,
        version: &TransformVersion,
        pending_position: Option<i64>,
    ) -> Result<Step, TaskError> {
        let definition = &version.definition;
        let input = &definition.input;
        let log = handles
            .registry
            .partition_log(input, self.partition)
            .map_err(TaskError::InputUnavailable)?;
        let start = match pending_position {
            Some(start) => start,
            None => {
                let committed = match self.committed {
                    Some(committed) => Some(committed),
                    None => handles
                        .transform_position(&self.name, input, self.partition)
                        .await
                        .map_err(TaskError::Position)?,
                };
                let start = committed
                    .unwrap_or_else(|| log.log_start_offset())
                    .max(log.log_start_offset());
                set_position(&self.stats, self.partition, start);
                start
            }
        };
        // In a cluster, input is read only below the replicated high watermark (what an
        // acks=all consumer may see): a record above it may be truncated by a failover, and
        // output made from it would stay while its input is gone.
        let bound = match handles.link.get() {
            Some(link) => link
                .read_bound(input, self.partition)
                .map_err(TaskError::NotLeading)?,
            None => None,
        };
        let watch = match &bound {
            Some(bound) => bound.clone(),
            None => log.subscribe_high_watermark(),
        };
        let read = match log.read(start, handles.limits.read_bytes_max).await {
            Ok(mut read) => {
                if let Some(bound) = &bound {
                    let high_watermark = *bound.borrow();
                    read.bytes =
                        crate::broker::fetch::below_high_watermark(read.bytes, high_watermark);
                }
                read
            }
            Err(ReadError::OffsetOutOfRange {
                log_start_offset, ..
            }) if start < log_start_offset => {
                // Retention removed input the transform had not reached: note it and go on.
                let message = format!(
                    "input offsets {start}..{log_start_offset} were deleted by retention before the transform read them"
                );
                if pending_position.is_some() {
                    // Let the chunk in flight finish first; then start from the log start.
                    return Ok(Step::CaughtUp(watch));
                }
                self.stats.set_error(message);
                commit(
                    handles,
                    &self.name,
                    self.partition,
                    &self.stats,
                    input,
                    log_start_offset,
                )
                .await?;
                return Ok(Step::Again);
            }
            Err(ReadError::OffsetOutOfRange { .. }) => return Ok(Step::CaughtUp(watch)),
            Err(error) => return Err(error.into()),
        };
        if read.bytes.is_empty() {
            return Ok(Step::CaughtUp(watch));
        }
        let output_partitions = handles.registry.partition_count(&definition.output).max(1);
        let input_partitions = handles.registry.partition_count(input);
        let mut output = IterationOutput::default();
        let mut next_position = start;
        let mut stop_reason = None;
        for item in BatchIter::new(&read.bytes) {
            let (header, raw) = item.map_err(TaskError::Unreadable)?;
            let batch_end = header.last_offset() + 1;
            if header.is_control() || header.record_count == 0 {
                next_position = batch_end.max(next_position);
                continue;
            }
            let batch = read.bytes.slice_ref(raw);
            let opened = match open_batch(&batch, handles.plugins.budget()).await {
                Ok(opened) => opened,
                Err(error) => {
                    // Records that do not decode (stored before appends checked records)
                    // cannot be transformed; retrying would stall the partition forever.
                    let message = format!(
                        "partition {} batch at offset {} does not decode: {error}",
                        self.partition, header.base_offset
                    );
                    if definition.on_error == OnError::Stop {
                        stop_reason = Some(message);
                        break;
                    }
                    tracing::warn!(transform = %self.name, %message, "transform skips an input batch that does not decode");
                    // Published at once too: the skip is reported even if this chunk's write
                    // is dropped and redone.
                    self.stats.set_error(message.clone());
                    output.last_error = Some(message);
                    next_position = batch_end;
                    continue;
                }
            };
            let first = opened
                .records
                .iter()
                .position(|record| record.offset >= start)
                .unwrap_or(opened.records.len());
            let range = first..opened.records.len();
            let partition_count = if definition.module.kind == PluginKind::Partitioner {
                output_partitions
            } else {
                input_partitions
            };
            if definition.module.kind == PluginKind::Aggregate {
                // Stage 1 of a stateful transform: re-key into the repartition topic.
                let state_partitions = definition
                    .stateful
                    .as_ref()
                    .map_or(1, |spec| spec.state_partitions);
                let outcomes = match super::stateful::group_outcomes(
                    &opened,
                    &version.plugin,
                    range.clone(),
                    self.partition,
                    input_partitions,
                )
                .await
                {
                    Ok(outcomes) => outcomes,
                    Err(error) if definition.on_error == OnError::Stop => {
                        stop_reason = Some(format!(
                            "partition {} batch at offset {} failed: {error}",
                            self.partition, header.base_offset
                        ));
                        break;
                    }
                    Err(_) => {
                        super::stateful::group_isolating(
                            &opened,
                            &version.plugin,
                            range.clone(),
                            self.partition,
                            input_partitions,
                        )
                        .await
                    }
                };
                let records = opened.records.get(range).unwrap_or_default();
                let route = Route {
                    transform: &self.name,
                    input,
                    partition: self.partition,
                    output_partitions: state_partitions,
                    on_error: definition.on_error,
                };
                match super::stateful::route_group(&route, records, outcomes, state_partitions) {
                    Routed::Output(batch_output) => output.absorb(batch_output),
                    Routed::Stop(reason) => {
                        stop_reason = Some(reason);
                        break;
                    }
                }
                next_position = batch_end;
                continue;
            }
            let began = handles.clock.now();
            let outcomes = match opened
                .run(
                    &version.plugin,
                    range.clone(),
                    self.partition,
                    partition_count,
                )
                .await
            {
                Ok(outcomes) => outcomes,
                Err(error) if definition.on_error == OnError::Stop => {
                    stop_reason = Some(format!(
                        "partition {} batch at offset {} failed: {error}",
                        self.partition, header.base_offset
                    ));
                    break;
                }
                Err(error) => {
                    tracing::info!(transform = %self.name, partition = self.partition, offset = header.base_offset, %error, "batch failed; isolating the failing records");
                    bisect(
                        &opened,
                        &version.plugin,
                        range.clone(),
                        self.partition,
                        partition_count,
                    )
                    .await
                }
            };
            let busy_us = u64::try_from(
                handles
                    .clock
                    .now()
                    .saturating_duration_since(began)
                    .as_micros(),
            )
            .unwrap_or(u64::MAX);
            self.stats.busy_us.fetch_add(busy_us, Ordering::Relaxed);
            self.stats.count(
                self.partition,
                PartitionCounters {
                    busy_us,
                    ..PartitionCounters::default()
                },
            );
            let records = opened.records.get(range).unwrap_or_default();
            let route = Route {
                transform: &self.name,
                input,
                partition: self.partition,
                output_partitions,
                on_error: definition.on_error,
            };
            match route.batch(records, outcomes) {
                Routed::Output(batch_output) => output.absorb(batch_output),
                Routed::Stop(reason) => {
                    // Nothing of the failing batch is written: the transform resumes at it.
                    stop_reason = Some(reason);
                    break;
                }
            }
            next_position = batch_end;
        }
        Ok(Step::Work(Processed {
            output,
            start,
            next_position,
            stop_reason,
        }))
    }
}

/// Writes a processed chunk: output (durable), dead letters, then the position; updates
/// the statistics and stops the transform if the chunk asks for it or the breaker trips.
async fn write_chunk<D: Disk>(
    handles: Arc<TransformHandles<D>>,
    name: String,
    partition: u32,
    definition: StoredTransform,
    processed: Processed,
    stats: Arc<TransformStats>,
) -> Result<(), TaskError> {
    let Processed {
        output,
        start,
        next_position,
        stop_reason,
    } = processed;
    // A stateful transform's stage 1 writes its repartition topic.
    let output_topic = match &definition.stateful {
        Some(_) => crate::broker::metadata::StatefulSpec::repartition_topic(&name),
        None => definition.output.clone(),
    };
    let writes = output
        .outputs
        .into_iter()
        .map(|(target, records)| handles.append_records(&output_topic, target, records));
    for result in futures_util::future::join_all(writes).await {
        result.map_err(|source| TaskError::Write {
            topic: output_topic.clone(),
            source,
        })?;
    }
    if !output.dead.is_empty() {
        handles
            .append_records(&definition.dead_letter_topic, 0, output.dead)
            .await
            .map_err(|source| TaskError::Write {
                topic: definition.dead_letter_topic.clone(),
                source,
            })?;
    }
    if next_position > start {
        commit(
            &handles,
            &name,
            partition,
            &stats,
            &definition.input,
            next_position,
        )
        .await?;
    }
    // A stateful transform's stage 1 writes its internal repartition topic, not the output:
    // `describe` counts as out what reaches the output topic (stage 2's change records).
    let records_out = match &definition.stateful {
        Some(_) => 0,
        None => output.records_out,
    };
    stats
        .records_in
        .fetch_add(output.records_in, Ordering::Relaxed);
    stats.records_out.fetch_add(records_out, Ordering::Relaxed);
    stats
        .records_dead
        .fetch_add(output.failed, Ordering::Relaxed);
    stats.count(
        partition,
        PartitionCounters {
            records_in: output.records_in,
            records_out,
            records_dead: output.failed,
            busy_us: 0,
        },
    );
    if let Some(message) = output.last_error.clone() {
        stats.set_error(message);
    }
    if let Some(reason) = stop_reason {
        tracing::error!(transform = %name, partition, %reason, "transform stopped (on_error = stop)");
        stop(&handles, &name, &stats, "failed", reason).await;
        return Ok(());
    }
    if let Some(reason) = stats.breaker_trips(output.records_in, output.failed, &handles.limits) {
        let reason = match output.last_error {
            Some(last) => format!("{reason}; last error: {last}"),
            None => reason,
        };
        tracing::error!(transform = %name, %reason, "transform paused");
        stop(&handles, &name, &stats, "paused", reason).await;
    }
    Ok(())
}

async fn commit<D: Disk>(
    handles: &TransformHandles<D>,
    name: &str,
    partition: u32,
    stats: &TransformStats,
    input: &str,
    offset: i64,
) -> Result<(), TaskError> {
    handles
        .commit_transform_position(name, input, partition, offset)
        .await
        .map_err(TaskError::Commit)?;
    set_position(stats, partition, offset);
    Ok(())
}

fn set_position(stats: &TransformStats, partition: u32, offset: i64) {
    stats
        .positions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(partition, offset);
}

async fn stop<D: Disk>(
    handles: &TransformHandles<D>,
    name: &str,
    stats: &TransformStats,
    state: &str,
    reason: String,
) {
    stats.set_error(reason.clone());
    let stopped = StoppedReason {
        state: state.into(),
        reason,
    };
    if let Err(error) = handles.set_stopped(name, Some(stopped)).await {
        tracing::error!(transform = %name, %error, "could not record the stop");
    }
}
