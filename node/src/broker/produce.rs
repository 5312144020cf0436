//! Produce: the path from a decoded produce request to the partition logs.
//!
//! Per partition: internal-topic and disk-guard checks, one registry lookup (topic and
//! partition together), the batches split and their timestamps checked, each batch prepared
//! (the topic's `compression.type` and `message.timestamp.type`) and passed through the
//! topic's produce filter, then all of them handed to the partition's writer in one
//! `PartitionLog::append_batches` (one write, one fdatasync) with the durability `acks`
//! asks for; the answer waits at most `timeout_ms`. A produce to `NODE_PARTITIONED`
//! is routed by the topic's partitioner (the plug-in host, `plugins.rs`), which prepares
//! through [`prepare_batch`] here; a fenced log is reopened by the registry
//! (`TopicRegistry::reopen_fenced`) whoever meets it.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use ledge_protocol::wire::{
    Acks, ErrorCode, NODE_PARTITIONED, ProducePartition, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopicResponse,
};
use ledge_protocol::{
    BatchError, BatchHeader, BatchIter, DecodeError, EncodeError, EncodeOptions, decode_batch,
    encode_batch,
};

use super::data_path::DataPath;
use super::dispatch;
use super::maintenance::DiskGuardTrip;
use super::plugins::{PartitionerError, ProduceFilterError};
use super::registry::{LookupError, Partition, TopicRegistry};
use super::sequencing::SequencingHold;
use super::topic_config::{TimestampError, TimestampType, TopicCompression, TopicConfig};
use crate::replication::leader::AcksAllError;
use crate::replication::manager::{PartitionRole, ReplicaRoleError};
use crate::storage::{AppendDurability, AppendError, AppendInput, Disk};

/// Why a produce to one partition was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// Internal topics are written by the node only.
    #[error("internal topic {topic:?} is written by the node only")]
    InternalTopic {
        /// The topic.
        topic: String,
    },
    /// The disk guard tripped.
    #[error("disk full: {reason}")]
    DiskFull {
        /// Which limit, and how full.
        reason: DiskGuardTrip,
    },
    /// No such topic or partition, or the partition is offline.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The request carried no batches for the partition.
    #[error("no record batches in the request")]
    NoBatches,
    /// The batches cannot be split (framing, CRC).
    #[error("malformed record batch: {0}")]
    MalformedBatch(BatchError),
    /// A timestamp outside what the topic accepts.
    #[error(transparent)]
    InvalidTimestamp(TimestampError),
    /// A batch could not be prepared for the topic.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The partition log refused or failed the append.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The topic's produce filter refused or failed.
    #[error(transparent)]
    Filter(#[from] ProduceFilterError),
    /// The topic's partitioner refused or failed (a produce to `NODE_PARTITIONED`).
    #[error(transparent)]
    Partitioner(#[from] PartitionerError),
    /// Replication refused the produce before the append: this node does not lead the
    /// partition, or (acks=all) too few replicas are in sync.
    #[error(transparent)]
    Replication(#[from] ReplicaRoleError),
    /// Appended here, but acks=all was not confirmed by the in-sync replicas.
    #[error(transparent)]
    AcksAll(#[from] AcksAllError),
    /// Not durable within the request's timeout.
    #[error("not durable within the request timeout of {} ms", timeout.as_millis())]
    TimedOut {
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// Why a batch could not be rewritten for its topic's configs.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The batch could not be decoded to recompress it.
    #[error("cannot recompress batch: {0}")]
    Undecodable(DecodeError),
    /// The batch holds no records.
    #[error("a batch without records")]
    NoRecords,
    /// The records could not be encoded again.
    #[error("cannot recompress batch: {0}")]
    Reencode(EncodeError),
    /// The log-append time could not be stamped.
    #[error("{0}")]
    AppendTime(BatchError),
}

/// Applies the topic's `message.timestamp.type` and `compression.type` to a batch; the
/// common case (producer's codec, create time) returns it untouched, without a copy.
pub(super) fn prepare_batch(
    header: &BatchHeader,
    batch: Bytes,
    config: &TopicConfig,
    append_time: Option<i64>,
) -> Result<Bytes, PrepareError> {
    let wanted = match config.compression {
        TopicCompression::Codec(codec)
            if !header.is_control() && header.compression().ok() != Some(codec) =>
        {
            Some(codec)
        }
        _ => None,
    };
    let mut batch = batch;
    if let Some(codec) = wanted {
        let decoded =
            decode_batch(&batch, &Default::default()).map_err(PrepareError::Undecodable)?;
        let records: Vec<_> = decoded
            .records
            .into_iter()
            .map(ledge_protocol::DecodedRecord::into_record)
            .collect();
        if records.is_empty() {
            return Err(PrepareError::NoRecords);
        }
        let options = EncodeOptions {
            compression: codec,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            timestamp_type: header.timestamp_type(),
            transactional: header.is_transactional(),
            ..EncodeOptions::default()
        };
        batch = encode_batch(&records, &options).map_err(PrepareError::Reencode)?;
    }
    if let Some(timestamp) = append_time {
        let mut owned = BytesMut::from(&batch[..]);
        ledge_protocol::set_log_append_time(&mut owned, timestamp)
            .map_err(PrepareError::AppendTime)?;
        batch = owned.freeze();
    }
    Ok(batch)
}

impl<D: Disk> DataPath<D> {
    /// Answers a produce; `sequencing` (and each partition's clone) is dropped once that
    /// partition's batches are queued in its writer or refused (`sequencing.rs`).
    pub(super) async fn produce(
        &self,
        request: ProduceRequest,
        sequencing: SequencingHold,
    ) -> ProduceResponse {
        let durability = match request.acks {
            Acks::All => AppendDurability::Synced,
            Acks::Leader | Acks::None => AppendDurability::Written,
        };
        let timeout = Duration::from_millis(u64::from(request.timeout_ms))
            .min(self.limits.produce_timeout_max);
        let topics = join_all(request.topics.into_iter().map(|topic| {
            // Each partition's clone is made here, before the original is dropped below.
            let holds: Vec<_> = topic
                .partitions
                .iter()
                .map(|_| sequencing.clone())
                .collect();
            async move {
                let name = topic.name;
                let partitions = join_all(topic.partitions.into_iter().zip(holds).map(
                    |(partition, hold)| {
                        // Every log line of the partition's produce names it (`crate::logging`).
                        let span = crate::logging::partition_span(&name, partition.partition);
                        tracing::Instrument::instrument(
                            self.produce_partition(&name, partition, durability, timeout, hold),
                            span,
                        )
                    },
                ))
                .await;
                ProduceTopicResponse { name, partitions }
            }
        }));
        // Only the partitions' clones say when this produce is sequenced.
        drop(sequencing);
        ProduceResponse {
            throttle_time_ms: 0,
            topics: topics.await,
        }
    }

    async fn produce_partition(
        &self,
        topic: &str,
        request: ProducePartition,
        durability: AppendDurability,
        timeout: Duration,
        sequencing: SequencingHold,
    ) -> ProducePartitionResponse {
        let mut response = ProducePartitionResponse {
            partition: request.partition,
            error: ErrorCode::None,
            message: String::new(),
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            routed: None,
        };
        let acks_all = matches!(durability, AppendDurability::Synced);
        // In a cluster a node-partitioned produce is partitioned here and each partition's
        // records go to its leader (`plugins.rs`), whose produce path checks its role.
        let partitioned_here =
            request.partition == NODE_PARTITIONED && self.plugins.routes_to_leaders();
        let role = match self.replication_role(topic, request.partition, acks_all) {
            _ if partitioned_here => PartitionRole::Unreplicated,
            Ok(role) => role,
            Err(error) => {
                let (code, message) = dispatch::produce_wire(&ProduceError::Replication(error));
                response.error = code;
                response.message = message;
                return response;
            }
        };
        let epoch_check = match role {
            PartitionRole::Leader { leader_epoch, .. } => {
                super::cluster_view::check_leader_epoch(request.current_leader_epoch, leader_epoch)
            }
            PartitionRole::Unreplicated => self.leader_epoch_check(request.current_leader_epoch),
        };
        if let Err(error) = epoch_check {
            (response.error, response.message) = dispatch::leader_epoch_wire(&error);
            return response;
        }
        let outcome = self
            .produce_to_partition(topic, request, durability, timeout, &role, sequencing)
            .await;
        match outcome {
            Ok(produced) => {
                response.base_offset = produced.base_offset;
                response.log_append_time_ms = produced.append_time.unwrap_or(-1);
                response.log_start_offset = produced.log_start_offset;
                response.routed = produced.routed;
                tracing::debug!(base_offset = produced.base_offset, "produced");
            }
            Err(error) => {
                let (code, message) = dispatch::produce_wire(&error);
                tracing::debug!(?code, %message, "produce refused");
                response.error = code;
                response.message = message;
            }
        }
        response
    }

    async fn produce_to_partition(
        &self,
        topic: &str,
        request: ProducePartition,
        durability: AppendDurability,
        timeout: Duration,
        role: &PartitionRole,
        sequencing: SequencingHold,
    ) -> Result<Produced, ProduceError> {
        if topic.starts_with("__") {
            return Err(ProduceError::InternalTopic {
                topic: topic.to_string(),
            });
        }
        if let Some(reason) = self.disk_guard.tripped() {
            return Err(ProduceError::DiskFull { reason });
        }
        let timed_out = |_| ProduceError::TimedOut { timeout };
        if request.partition == NODE_PARTITIONED {
            // Sequenced only when answered: its partitions are chosen and written by the
            // partitioner, which reports no earlier point.
            let _sequencing = sequencing;
            let work = self
                .plugins
                .produce_node_partitioned(topic, request.records, durability);
            let (routing, append_time) = crate::clock::timeout(&*self.clock, timeout, work)
                .await
                .map_err(timed_out)??;
            return Ok(Produced {
                base_offset: -1,
                append_time,
                log_start_offset: -1,
                routed: Some(routing),
            });
        }
        let topic_entry = self
            .registry
            .topic(topic)
            .ok_or_else(|| LookupError::UnknownTopic {
                topic: topic.to_string(),
            })?;
        let partition = TopicRegistry::partition_of(&topic_entry, topic, request.partition)?;
        let log = partition.online_log()?;
        let config = topic_entry.config();
        let partition_count = topic_entry.partition_count();
        if request.records.is_empty() {
            return Err(ProduceError::NoBatches);
        }
        let mut batches = Vec::new();
        for item in BatchIter::new(&request.records) {
            let (header, bytes) = item.map_err(ProduceError::MalformedBatch)?;
            batches.push((header, request.records.slice_ref(bytes)));
        }
        let now_ms = self.clock.wall_time_ms();
        for (header, _) in &batches {
            config
                .check_timestamps(header, now_ms)
                .map_err(ProduceError::InvalidTimestamp)?;
        }
        let append_time = (config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let partition_index = request.partition;
        let acks_deadline = crate::clock::deadline_after(self.clock.now(), timeout);
        let work = async {
            // Every batch is prepared (and filtered) first, then all go to the writer in one
            // command: one write, one fdatasync, one wait. A batch that cannot be prepared
            // stops the list there; those before it are still appended, as they were when
            // each batch was appended before the next was prepared.
            let mut inputs = Vec::with_capacity(batches.len());
            let mut refused = None;
            for (header, batch) in batches {
                match self
                    .prepare_and_filter(&header, batch, &config, append_time, partition_count)
                    .await
                {
                    Ok(input) => inputs.push(input),
                    Err(error) => {
                        refused = Some(error);
                        break;
                    }
                }
            }
            let appended = if inputs.is_empty() {
                Vec::new()
            } else {
                // In a cluster the append holds the partition's append gate, checked to
                // still be this leadership's: a follower's write never lands before it.
                let _gate = match (role, self.replication.get()) {
                    (PartitionRole::Leader { leadership, .. }, Some(manager)) => Some(
                        manager
                            .leader_append(topic, partition_index, *leadership)
                            .await?,
                    ),
                    _ => None,
                };
                let input_bytes: usize = inputs.iter().map(|input| input.batch.len()).sum();
                let queued = log
                    .enqueue_batches(inputs, durability)
                    .await
                    .map_err(|failed| self.append_error(&partition, failed.error))?;
                // Queued in the writer: a produce started after this cannot overtake them.
                drop(sequencing);
                let appended = queued
                    .outcomes()
                    .await
                    .map_err(|failed| self.append_error(&partition, failed.error))?;
                // `/metrics`: atomics on the topic entry looked up above.
                let records: i64 = appended
                    .iter()
                    .map(|outcome| outcome.last_offset - outcome.base_offset + 1)
                    .sum();
                topic_entry
                    .counters()
                    .produced(u64::try_from(records).unwrap_or(0), input_bytes as u64);
                appended
            };
            if let Some(error) = refused {
                return Err(error);
            }
            // acks=all in a cluster: appended and synced here; answered once the in-sync
            // replicas hold it too (the high watermark passed it), or failed.
            // The wait is bound to the leadership the role check saw: one lost (and maybe
            // regained) since the check fails it rather than let a later leadership's high
            // watermark answer for this append.
            if let (PartitionRole::Leader { leadership, .. }, Some(manager), Some(last)) = (
                role,
                self.replication.get(),
                appended
                    .last()
                    .filter(|_| matches!(durability, AppendDurability::Synced)),
            ) {
                manager
                    .wait_acks_all(
                        topic,
                        partition_index,
                        *leadership,
                        last.last_offset + 1,
                        acks_deadline,
                    )
                    .await?;
            }
            Ok(appended.first().map_or(-1, |outcome| outcome.base_offset))
        };
        let base_offset = crate::clock::timeout(&*self.clock, timeout, work)
            .await
            .map_err(timed_out)??;
        Ok(Produced {
            base_offset,
            append_time,
            log_start_offset: log.log_start_offset(),
            routed: None,
        })
    }

    /// One batch made ready for the log: the topic's compression and timestamp type
    /// applied, then the topic's produce filter, if any (which may leave offset gaps).
    async fn prepare_and_filter(
        &self,
        header: &BatchHeader,
        batch: Bytes,
        config: &TopicConfig,
        append_time: Option<i64>,
        partition_count: u32,
    ) -> Result<AppendInput, ProduceError> {
        let batch = prepare_batch(header, batch, config, append_time)?;
        let (batch, gaps_allowed) = match &config.produce_filter_module {
            Some(filter) => {
                self.plugins
                    .filter_produced_batch(filter, batch, partition_count)
                    .await?
            }
            None => (batch, false),
        };
        Ok(AppendInput {
            batch,
            gaps_allowed,
        })
    }

    /// This node's replication role for a partition; a node without a replication driver
    /// (no `[cluster]`) leaves every partition unreplicated.
    pub(super) fn replication_role(
        &self,
        topic: &str,
        partition: u32,
        acks_all: bool,
    ) -> Result<PartitionRole, ReplicaRoleError> {
        let role = match self.replication.get() {
            Some(manager) => manager.role(topic, partition, acks_all)?,
            None => PartitionRole::Unreplicated,
        };
        // A topic the controller placed is never served by the single-node rules: before the
        // driver runs or registers, or after it lost its node epoch, this node does not know
        // whether it leads, and acknowledging on its own disk alone could lose the record
        // when it follows the real leader (its log truncated to the leader's).
        if matches!(role, PartitionRole::Unreplicated) && self.placed_by_controller(topic) {
            return Err(ReplicaRoleError::NotLeaderOrFollower);
        }
        Ok(role)
    }

    /// Whether `topic` was placed by the controller (it has a topic id): its partitions
    /// follow the replication rules only.
    pub(super) fn placed_by_controller(&self, topic: &str) -> bool {
        self.registry
            .topic(topic)
            .is_some_and(|topic| topic.topic_id().is_some())
    }

    /// An append error as the produce path answers it; a fenced log is reopened in the
    /// background first.
    pub(super) fn append_error(
        &self,
        partition: &Arc<Partition<D>>,
        error: AppendError,
    ) -> ProduceError {
        if matches!(error, AppendError::Fenced { .. }) {
            self.registry.reopen_fenced(partition);
        }
        ProduceError::Append(error)
    }
}

/// What a produce to one partition did.
struct Produced {
    base_offset: i64,
    append_time: Option<i64>,
    log_start_offset: i64,
    routed: Option<ledge_protocol::wire::ProduceRouting>,
}
