//! Fetch and list offsets: reads below each partition's high watermark.
//!
//! On a single node the high watermark is the log's synced end, or its written end with
//! `log.visible_at_write` (`PartitionLog::visible_end`). In a cluster, a partition
//! the replication driver manages is read on its leader only (a follower answers
//! `NotLeaderOrFollower`), below the *replicated* high watermark: a consumer never sees a
//! record that a failover could still lose, and ListOffsets' latest is that watermark too.
//!
//! On a cluster leader every batch is checked before it is served (`leader_read`); a bad
//! one hands the leadership over when another ISR member holds the records
//! (`ReplicaManager::handle_leader_damage`).
//!
//! A fetch reads whole batches below each high watermark (through the fetch plug-in, if the
//! request names one) and, if fewer than `min_bytes` are ready, waits for any of the
//! partitions' high watermarks to move, up to `max_wait_ms` on the node's clock.

use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::BatchIter;
use ledge_protocol::wire::{
    ErrorCode, FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
    ListOffsetsPartitionResponse, ListOffsetsRequest, ListOffsetsResponse,
    ListOffsetsTopicResponse, OffsetSpec,
};
use tokio::sync::watch;

use super::data_path::DataPath;
use super::dispatch;
use super::plugins::FetchPluginError;
use super::registry::LookupError;
use crate::replication::LeaderEpoch;
use crate::replication::manager::ReplicaRoleError;
use crate::replication::repair::LeaderDamageAction;
use crate::storage::{Disk, PartitionLog, ReadBatches, ReadError};
use crate::wasm::fuel_budget::FuelAccount;

/// Why one partition of a fetch or list-offsets was not answered with data.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No such topic or partition, or the partition is offline.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Reading the log failed (damage, IO, an offset out of range).
    #[error(transparent)]
    Read(ReadError),
    /// Looking an offset up by timestamp failed.
    #[error(transparent)]
    OffsetLookup(ReadError),
    /// The fetch plug-in refused or failed.
    #[error(transparent)]
    Plugin(#[from] FetchPluginError),
    /// This node does not lead the partition.
    #[error(transparent)]
    Replication(#[from] ReplicaRoleError),
    /// The leader's high watermark has not reached the start of its leader epoch yet
    /// (KIP-207): an end offset answered now could go backwards.
    #[error(
        "the leader was elected recently and its high watermark ({high_watermark}) has not          reached the start of its leader epoch ({epoch_start_offset}) yet; ask again shortly"
    )]
    OffsetNotAvailable {
        /// The leader's high watermark.
        high_watermark: i64,
        /// Its log end when its leader epoch began.
        epoch_start_offset: i64,
    },
    /// The batch at `offset` failed its checks on the only in-sync replica: nothing from it
    /// on is served until the partition is restored.
    #[error(
        "the batch at offset {offset} failed its checks ({reason}); no other in-sync replica \
         holds it: restore the partition (docs/OPERATIONS.md, \"A damaged replica\")"
    )]
    Damaged {
        /// The first offset of the bad batch.
        offset: i64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The whole batches of `bytes` that end below `high_watermark`.
pub(super) fn below_high_watermark(bytes: Bytes, high_watermark: i64) -> Bytes {
    let mut end = 0usize;
    for item in BatchIter::new(&bytes) {
        let Ok((header, batch)) = item else {
            break;
        };
        if header.last_offset() >= high_watermark {
            break;
        }
        // Batches follow each other from the start of the read.
        end += batch.len();
    }
    bytes.slice(..end)
}

impl<D: Disk> DataPath<D> {
    /// One partition's log, looked up once.
    fn online_log(&self, topic: &str, partition: u32) -> Result<PartitionLog<D>, FetchError> {
        Ok(self.registry.partition_log(topic, partition)?)
    }

    /// The leader epoch and replicated high watermark of a partition the replication
    /// driver manages (`None`: single-node rules); refused on a non-leader. Consumer
    /// fetches and transform tasks (`plugin_cluster.rs`) read below it.
    pub(super) fn replicated_bound(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(LeaderEpoch, watch::Receiver<i64>)>, FetchError> {
        let bound = match self.replication.get() {
            Some(manager) => manager.consumer_bound(topic, partition)?,
            None => None,
        };
        // As for produce: a controller-placed partition this node does not (yet) lead is
        // not read by the single-node rules, or a consumer could see records the leader's
        // log later replaces.
        if bound.is_none() && self.placed_by_controller(topic) {
            return Err(ReplicaRoleError::NotLeaderOrFollower.into());
        }
        Ok(bound)
    }

    /// A consumer read on a partition this node leads in a cluster: every batch is checked
    /// (CRC, framing, offsets, leader epoch) before it is served, as a follower's read is,
    /// so a bit flipped on this disk since the append is never handed out. At a bad batch
    /// the intact prefix is served; with nothing intact before it, the read fails:
    /// `NotLeaderOrFollower` when this node hands the leadership to another ISR member (the
    /// consumer finds the new leader and reads the intact copy there), the damage itself
    /// (`DataDamaged`) when it is the only in-sync copy (see `replication::repair`).
    async fn leader_read(
        &self,
        log: &PartitionLog<D>,
        topic: &str,
        partition: u32,
        from_offset: i64,
        max_bytes: usize,
    ) -> Result<ReadBatches, FetchError> {
        let read = log
            .read_verified(from_offset, max_bytes)
            .await
            .map_err(FetchError::Read)?;
        let high_watermark = log.high_watermark();
        let log_start_offset = log.log_start_offset();
        if let Some(damage) = read.damage {
            tracing::error!(topic, partition, offset = damage.offset, reason = %damage.reason, "damaged batch not served to a consumer");
            let action = match self.replication.get() {
                Some(manager) => {
                    manager
                        .handle_leader_damage(topic, partition, damage.offset, &damage.reason)
                        .await
                }
                None => LeaderDamageAction::KeepLeading,
            };
            if read.bytes.is_empty() {
                return Err(match action {
                    LeaderDamageAction::HandOver => {
                        FetchError::Replication(ReplicaRoleError::NotLeaderOrFollower)
                    }
                    LeaderDamageAction::KeepLeading => FetchError::Damaged {
                        offset: damage.offset,
                        reason: damage.reason,
                    },
                });
            }
        }
        Ok(ReadBatches {
            bytes: read.bytes,
            high_watermark,
            log_start_offset,
        })
    }

    /// A fetch whose plug-in calls draw on the node's fetch fuel budget alone.
    pub(super) async fn fetch(&self, request: FetchRequest) -> FetchResponse {
        let fuel = self.plugins.node_fetch_fuel();
        self.fetch_metered(request, &fuel).await
    }

    /// A fetch whose plug-in calls, if it names a plug-in, draw on `fuel` (a principal's
    /// account): refused `TooManyRequests` when it is spent before the first call, and a
    /// partition whose call finds it spent is answered so.
    pub(super) async fn fetch_metered(
        &self,
        request: FetchRequest,
        fuel: &FuelAccount,
    ) -> FetchResponse {
        // Checked before the plug-in is looked up: instantiating one burns fuel too.
        if request.plugin.is_some()
            && let Err(spent) = fuel.admit(self.clock.now())
        {
            tracing::debug!(%spent, "fetch refused: plug-in fuel spent");
            let error = FetchError::Plugin(FetchPluginError::FuelSpent(spent));
            let (error, message) = dispatch::fetch_wire(&error);
            return FetchResponse {
                throttle_time_ms: 0,
                error,
                message,
                topics: Vec::new(),
            };
        }
        let plugin = match self.plugins.fetch_plugin(&request.plugin, fuel).await {
            Ok(plugin) => plugin,
            Err(error) => {
                tracing::debug!(%error, "fetch plug-in refused");
                let (error, message) = dispatch::fetch_wire(&FetchError::Plugin(error));
                return FetchResponse {
                    throttle_time_ms: 0,
                    error,
                    message,
                    topics: Vec::new(),
                };
            }
        };
        let max_bytes = request.max_bytes.min(self.limits.fetch_bytes_max) as usize;
        let wait =
            Duration::from_millis(u64::from(request.max_wait_ms)).min(self.limits.fetch_wait_max);
        let deadline = crate::clock::deadline_after(self.clock.now(), wait);
        loop {
            // Subscribe before reading, so an append between the read and the wait wakes us.
            let mut watches: Vec<watch::Receiver<i64>> = Vec::new();
            let mut total = 0usize;
            let mut any_error = false;
            let mut topics = Vec::new();
            for topic in &request.topics {
                let mut partitions = Vec::new();
                for wanted in &topic.partitions {
                    let mut response = FetchPartitionResponse {
                        partition: wanted.partition,
                        error: ErrorCode::None,
                        message: String::new(),
                        high_watermark: -1,
                        log_start_offset: -1,
                        records: Bytes::new(),
                    };
                    let bound = match self.replicated_bound(&topic.name, wanted.partition) {
                        Ok(bound) => bound,
                        Err(error) => {
                            (response.error, response.message) = dispatch::fetch_wire(&error);
                            any_error = true;
                            partitions.push(response);
                            continue;
                        }
                    };
                    let epoch_check = match &bound {
                        Some((leader_epoch, _)) => super::cluster_view::check_leader_epoch(
                            wanted.current_leader_epoch,
                            *leader_epoch,
                        ),
                        None => self.leader_epoch_check(wanted.current_leader_epoch),
                    };
                    if let Err(error) = epoch_check {
                        (response.error, response.message) = dispatch::leader_epoch_wire(&error);
                        any_error = true;
                        partitions.push(response);
                        continue;
                    }
                    let log = match self.online_log(&topic.name, wanted.partition) {
                        Ok(log) => log,
                        Err(error) => {
                            // The code alone, as before: the client looks the topic up again.
                            response.error = dispatch::fetch_wire(&error).0;
                            any_error = true;
                            partitions.push(response);
                            continue;
                        }
                    };
                    let replicated = bound.as_ref().map(|(_, watch)| *watch.borrow());
                    match bound {
                        Some((_, watch)) => watches.push(watch),
                        None => watches.push(log.subscribe_visible_end()),
                    }
                    let budget =
                        (wanted.partition_max_bytes as usize).min(max_bytes.saturating_sub(total));
                    if budget == 0 && total > 0 {
                        response.high_watermark = replicated.unwrap_or_else(|| log.visible_end());
                        response.log_start_offset = log.log_start_offset();
                        partitions.push(response);
                        continue;
                    }
                    let read = match replicated {
                        Some(_) => {
                            self.leader_read(
                                &log,
                                &topic.name,
                                wanted.partition,
                                wanted.fetch_offset,
                                budget.max(1),
                            )
                            .await
                        }
                        None => log
                            .read_visible(wanted.fetch_offset, budget.max(1))
                            .await
                            .map_err(FetchError::Read),
                    };
                    match read {
                        Ok(read) => {
                            let (records, high_watermark) = match replicated {
                                Some(bound) => (below_high_watermark(read.bytes, bound), bound),
                                None => (read.bytes, read.high_watermark),
                            };
                            total += records.len();
                            response.high_watermark = high_watermark;
                            response.log_start_offset = read.log_start_offset;
                            response.records = records;
                            if let Some(plugin) = &plugin
                                && !response.records.is_empty()
                            {
                                let partition_count = self.registry.partition_count(&topic.name);
                                // Its log lines name the partition (`crate::logging`).
                                let span =
                                    crate::logging::partition_span(&topic.name, wanted.partition);
                                match tracing::Instrument::instrument(
                                    self.plugins.apply_fetch_plugin(
                                        plugin,
                                        std::mem::take(&mut response.records),
                                        wanted.partition,
                                        partition_count,
                                        fuel,
                                    ),
                                    span,
                                )
                                .await
                                {
                                    Ok(records) => response.records = records,
                                    Err(error) => {
                                        let (code, message) =
                                            dispatch::fetch_wire(&FetchError::from(error));
                                        response.error = code;
                                        response.message = message;
                                        any_error = true;
                                    }
                                }
                            }
                        }
                        Err(FetchError::Read(ReadError::OffsetOutOfRange {
                            log_start_offset,
                            high_watermark,
                            ..
                        })) => {
                            response.error = ErrorCode::OffsetOutOfRange;
                            response.high_watermark = replicated.unwrap_or(high_watermark);
                            response.log_start_offset = log_start_offset;
                            any_error = true;
                        }
                        Err(error) => {
                            tracing::error!(topic = %topic.name, partition = wanted.partition, %error, "fetch read failed");
                            let (code, message) = dispatch::fetch_wire(&error);
                            response.error = code;
                            response.message = message;
                            any_error = true;
                        }
                    }
                    partitions.push(response);
                }
                topics.push(FetchTopicResponse {
                    name: topic.name.clone(),
                    partitions,
                });
            }
            let enough = total >= (request.min_bytes as usize).max(1) || any_error;
            if enough || self.clock.now() >= deadline || watches.is_empty() {
                self.count_fetched(&topics);
                return FetchResponse {
                    throttle_time_ms: 0,
                    error: ErrorCode::None,
                    message: String::new(),
                    topics,
                };
            }
            let changed = futures_util::future::select_all(
                watches.iter_mut().map(|watch| Box::pin(watch.changed())),
            );
            if crate::clock::timeout_at(&*self.clock, deadline, changed)
                .await
                .is_err()
            {
                self.count_fetched(&topics);
                return FetchResponse {
                    throttle_time_ms: 0,
                    error: ErrorCode::None,
                    message: String::new(),
                    topics,
                };
            }
        }
    }

    /// Adds the bytes answered to each topic's `ledge_fetched_bytes_total` (atomics on the
    /// topic entry; one lookup per topic with records).
    fn count_fetched(&self, topics: &[FetchTopicResponse]) {
        for topic in topics {
            let bytes: usize = topic
                .partitions
                .iter()
                .map(|partition| partition.records.len())
                .sum();
            if bytes > 0
                && let Some(entry) = self.registry.topic(&topic.name)
            {
                entry.counters().fetched(bytes as u64);
            }
        }
    }

    /// The end a consumer may read to (the replicated high watermark of a partition this
    /// node leads in a cluster, the log's high watermark by the single-node rules), and the
    /// KIP-207 refusal to answer it with while a new leader's high watermark lags the start
    /// of its leader epoch.
    fn fetchable_end(
        &self,
        topic: &str,
        partition: u32,
        log: &PartitionLog<D>,
    ) -> Result<(i64, Option<FetchError>), FetchError> {
        let Some((_, bound)) = self.replicated_bound(topic, partition)? else {
            return Ok((log.visible_end(), None));
        };
        let high_watermark = *bound.borrow();
        let lagging = self
            .replication
            .get()
            .and_then(|manager| manager.leader_epoch_start_offset(topic, partition))
            .filter(|epoch_start_offset| high_watermark < *epoch_start_offset)
            .map(|epoch_start_offset| FetchError::OffsetNotAvailable {
                high_watermark,
                epoch_start_offset,
            });
        Ok((high_watermark, lagging))
    }

    pub(super) async fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let mut topics = Vec::new();
        for topic in request.topics {
            let mut partitions = Vec::new();
            for wanted in topic.partitions {
                let mut response = ListOffsetsPartitionResponse {
                    partition: wanted.partition,
                    error: ErrorCode::None,
                    offset: None,
                    timestamp: None,
                    message: String::new(),
                };
                match self.online_log(&topic.name, wanted.partition) {
                    Err(error) => response.error = dispatch::fetch_wire(&error).0,
                    Ok(log) => match wanted.spec {
                        OffsetSpec::Earliest => response.offset = Some(log.log_start_offset()),
                        OffsetSpec::Latest => {
                            match self.fetchable_end(&topic.name, wanted.partition, &log) {
                                Ok((end, None)) => response.offset = Some(end),
                                Ok((_, Some(lagging))) | Err(lagging) => {
                                    response.error = dispatch::fetch_wire(&lagging).0;
                                }
                            }
                        }
                        OffsetSpec::Timestamp(timestamp) => {
                            let end = match self.fetchable_end(&topic.name, wanted.partition, &log)
                            {
                                Ok(end) => end,
                                Err(error) => {
                                    response.error = dispatch::fetch_wire(&error).0;
                                    partitions.push(response);
                                    continue;
                                }
                            };
                            match log.offset_for_timestamp(timestamp).await {
                                // Kafka's rule: a record at or above the fetchable end is not
                                // answered (a consumer could not read it yet), and while the
                                // leader's high watermark lags it is "ask again".
                                Ok(Some((offset, _))) if offset >= end.0 => {
                                    if let Some(lagging) = end.1 {
                                        response.error = dispatch::fetch_wire(&lagging).0;
                                    }
                                }
                                Ok(found) => {
                                    response.offset = found.map(|(offset, _)| offset);
                                    response.timestamp = found.map(|(_, timestamp)| timestamp);
                                }
                                Err(error) => {
                                    tracing::error!(topic = %topic.name, partition = wanted.partition, %error, "offset lookup failed");
                                    response.error =
                                        dispatch::fetch_wire(&FetchError::OffsetLookup(error)).0;
                                }
                            }
                        }
                    },
                }
                partitions.push(response);
            }
            topics.push(ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
            });
        }
        ListOffsetsResponse { topics }
    }
}
