//! The two ends of a partition's log as Kafka clients ask about them: its leader epochs
//! (KIP-320: ListOffsets' epochs, OffsetForLeaderEpoch) and moving its start
//! (DeleteRecords). Both are answered by the partition's leader only, as Kafka does, after
//! checking the client's `current_leader_epoch`.
//!
//! DeleteRecords moves the leader's log start with `PartitionLog::delete_before`, the same
//! durable path retention takes (the checkpoint first, then the files). In a cluster the
//! followers follow it through the replica fetch answer's `log_start_offset`
//! (`replication::manager`), as Kafka's followers do, and report theirs in their next fetch;
//! the answer waits, up to the request's timeout, until the low watermark (the lowest log
//! start over the leader and its live followers) reaches the offset, as Kafka's
//! `DelayedDeleteRecords` does (`ReplicaManager::wait_low_watermark`).

use std::time::Duration;

use ledge_protocol::wire::ErrorCode;

use super::Broker;
use super::cluster_view::{LeaderEpochError, check_leader_epoch};
use super::dispatch;
use super::fetch::FetchError;
use crate::replication::leader::LowWatermarkError;
use crate::replication::manager::PartitionRole;
use crate::storage::leader_epoch::LeaderEpochCache;
use crate::storage::log::ProducersError;
use crate::storage::{DeleteError, Disk, PartitionLog};

/// A partition's leader epochs as its leader knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionEpochs {
    /// The partition's current leader epoch.
    pub leader_epoch: i32,
    /// The leader-epoch checkpoint of the leader's log (epoch -> start offset).
    pub epochs: LeaderEpochCache,
    /// The first offset readers may see.
    pub log_start_offset: i64,
    /// The offset after the last batch of the leader's log.
    pub log_end_offset: i64,
    /// The partition's high watermark (replicated, in a cluster).
    pub high_watermark: i64,
}

/// Why a partition's epochs or log start could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum LogEdgeError {
    /// No such partition here, or this node does not lead it.
    #[error(transparent)]
    Partition(#[from] FetchError),
    /// The client's `current_leader_epoch` is not the partition's.
    #[error(transparent)]
    LeaderEpoch(#[from] LeaderEpochError),
    /// DeleteRecords asked for an offset past the high watermark (or a negative one other
    /// than -1, "the high watermark").
    #[error("cannot delete before offset {requested}: the high watermark is {high_watermark}")]
    BeyondHighWatermark {
        /// The offset asked for.
        requested: i64,
        /// The partition's (replicated) high watermark.
        high_watermark: i64,
    },
    /// The log refused to move its start.
    #[error(transparent)]
    Delete(#[from] DeleteError),
    /// The log's producer table could not be read.
    #[error(transparent)]
    Producers(#[from] ProducersError),
    /// The leader's log start moved, but the live followers' did not follow in time, or
    /// this node stopped leading meanwhile.
    #[error(transparent)]
    LowWatermark(#[from] LowWatermarkError),
}

/// One idempotent producer of a partition as Kafka's DescribeProducers shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerDescription {
    /// The producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub producer_epoch: i16,
    /// The last sequence it wrote here.
    pub last_sequence: i32,
    /// The max timestamp of its last batch here; -1 when that batch is no longer readable
    /// (below the log start, or not yet under the high watermark).
    pub last_timestamp: i64,
}

/// Kafka's "up to the high watermark" in DeleteRecords.
pub const DELETE_TO_HIGH_WATERMARK: i64 = -1;

impl<D: Disk> Broker<D> {
    /// The leader's log of a partition, its current leader epoch and high watermark, after
    /// checking the client's `current_leader_epoch`.
    fn led_log(
        &self,
        topic: &str,
        partition: u32,
        current_leader_epoch: Option<i32>,
    ) -> Result<(PartitionLog<D>, i32, i64), LogEdgeError> {
        let log = self
            .registry
            .partition_log(topic, partition)
            .map_err(FetchError::from)?;
        let (leader_epoch, high_watermark) = match self.data.replicated_bound(topic, partition)? {
            Some((leader_epoch, bound)) => (leader_epoch, *bound.borrow()),
            None => (
                super::cluster_view::SINGLE_NODE_LEADER_EPOCH,
                log.high_watermark(),
            ),
        };
        check_leader_epoch(current_leader_epoch, leader_epoch)?;
        Ok((log, leader_epoch, high_watermark))
    }

    fn partition_epochs_checked(
        &self,
        topic: &str,
        partition: u32,
        current_leader_epoch: Option<i32>,
    ) -> Result<PartitionEpochs, LogEdgeError> {
        let (log, leader_epoch, high_watermark) =
            self.led_log(topic, partition, current_leader_epoch)?;
        Ok(PartitionEpochs {
            leader_epoch,
            epochs: log.leader_epochs(),
            log_start_offset: log.log_start_offset(),
            log_end_offset: log.log_end_offset(),
            high_watermark,
        })
    }

    async fn describe_producers_checked(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<ProducerDescription>, LogEdgeError> {
        let (log, _, _) = self.led_log(topic, partition, None)?;
        let mut described = Vec::new();
        for (producer_id, entry) in log.producers().await? {
            // Every remembered producer has at least one batch (an entry is made by one).
            let Some(last) = entry.batches.back() else {
                continue;
            };
            described.push(ProducerDescription {
                producer_id,
                producer_epoch: entry.epoch,
                last_sequence: last.last_sequence,
                last_timestamp: batch_max_timestamp(&log, last.base_offset).await,
            });
        }
        Ok(described)
    }

    /// The idempotent producers of a partition (Kafka's DescribeProducers), answered by its
    /// leader only, from the leader log's own producer table. `Err` is the wire code.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<ProducerDescription>, (ErrorCode, String)> {
        self.describe_producers_checked(topic, partition)
            .await
            .map_err(|error| dispatch::log_edge_wire(&error))
    }

    /// A partition's leader epochs, answered by its leader (`current_leader_epoch`: the
    /// client's, checked as Kafka does; `None` skips the check). `Err` is the wire code.
    pub fn partition_epochs(
        &self,
        topic: &str,
        partition: u32,
        current_leader_epoch: Option<i32>,
    ) -> Result<PartitionEpochs, (ErrorCode, String)> {
        self.partition_epochs_checked(topic, partition, current_leader_epoch)
            .map_err(|error| dispatch::log_edge_wire(&error))
    }

    async fn delete_records_checked(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        timeout: Duration,
    ) -> Result<i64, LogEdgeError> {
        let deadline = crate::clock::deadline_after(
            self.clock.now(),
            timeout.min(self.config.delete_records_timeout_max),
        );
        let (log, _, high_watermark) = self.led_log(topic, partition, None)?;
        // The leadership the wait below belongs to, taken before the move: one lost since
        // fails the wait rather than let a later leadership's followers answer for it.
        let leadership = match self.data.replication.get() {
            Some(manager) => match manager
                .role(topic, partition, false)
                .map_err(FetchError::from)?
            {
                PartitionRole::Leader { leadership, .. } => Some((manager, leadership)),
                PartitionRole::Unreplicated => None,
            },
            None => None,
        };
        let target = if offset == DELETE_TO_HIGH_WATERMARK {
            high_watermark
        } else {
            offset
        };
        if target < 0 || target > high_watermark {
            return Err(LogEdgeError::BeyondHighWatermark {
                requested: offset,
                high_watermark,
            });
        }
        let start = log.delete_before(target).await?;
        tracing::info!(
            topic,
            partition,
            log_start_offset = start,
            "records deleted (DeleteRecords)"
        );
        match leadership {
            // Kafka's answer: the low watermark once it reaches the offset asked for (the
            // leader's own start is already there; a no-op delete waits for it too).
            Some((manager, leadership)) => Ok(manager
                .wait_low_watermark(topic, partition, leadership, target, deadline)
                .await?),
            None => Ok(start),
        }
    }

    /// DeleteRecords on one partition: moves its log start up to `offset` (-1: the high
    /// watermark) on its leader, durably, and returns Kafka's low watermark: the new log
    /// start on a single node or an unreplicated partition; in a cluster, the lowest log
    /// start over the leader and its live followers, once that reaches the offset (waited
    /// for up to `timeout`, capped by `limits.delete_records_timeout_max_ms`; then
    /// `RequestTimedOut`, the leader's move staying done). An offset at or below the log
    /// start changes nothing. `Err` is the wire code.
    pub async fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        timeout: Duration,
    ) -> Result<i64, (ErrorCode, String)> {
        self.delete_records_checked(topic, partition, offset, timeout)
            .await
            .map_err(|error| dispatch::log_edge_wire(&error))
    }
}

/// The max timestamp of the batch at `base_offset` (the producer table keeps offsets, not
/// times, so the batch is read back: at most one batch, its header only is parsed); -1 when
/// it cannot be read.
async fn batch_max_timestamp<D: Disk>(log: &PartitionLog<D>, base_offset: i64) -> i64 {
    let Ok(read) = log
        .read(base_offset, ledge_protocol::BATCH_HEADER_BYTES)
        .await
    else {
        return -1;
    };
    ledge_protocol::BatchHeader::parse(&read.bytes)
        .ok()
        .filter(|header| header.base_offset == base_offset)
        .map_or(-1, |header| header.max_timestamp)
}
