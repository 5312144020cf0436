//! OffsetForLeaderEpoch (KIP-320: a consumer validates its position after a leader change
//! or a seek with an epoch) and DeleteRecords, over the broker's view of a partition's log
//! ends (`broker::log_edges`). Both are answered by the partition's leader only.

use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, delete_records_response, offset_for_leader_epoch_response,
};

use super::topic_name;
use crate::broker::Broker;
use crate::kafka::errors::kafka_code;
use crate::storage::Disk;
use crate::storage::leader_epoch::LeaderEpochCache;

/// Kafka's "no epoch" and "no offset" in OffsetForLeaderEpoch answers.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Where leader epoch `requested` ends in a log whose end offset is `log_end_offset`, as
/// Kafka's `LeaderEpochFileCache.endOffsetFor` answers it: the latest epoch ends at the log
/// end; an older one ends where the next known epoch starts, answered with the largest
/// known epoch at or below it (the requested one itself when it is older than every known
/// epoch, e.g. after the log start moved past it); an unknown newer epoch, or no epochs at
/// all, is undefined.
pub fn epoch_end_offset(
    epochs: &LeaderEpochCache,
    requested: i32,
    log_end_offset: i64,
) -> (i32, i64) {
    if requested == UNDEFINED_EPOCH {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    }
    if epochs.latest_epoch() == Some(requested) {
        return (requested, log_end_offset);
    }
    let entries = epochs.entries();
    let higher = entries.partition_point(|entry| entry.epoch <= requested);
    let Some(next) = entries.get(higher) else {
        return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
    };
    match higher.checked_sub(1).and_then(|at| entries.get(at)) {
        Some(floor) => (floor.epoch, next.start_offset),
        None => (requested, next.start_offset),
    }
}

/// The client's `current_leader_epoch` (-1: none, skip the check).
pub fn current_leader_epoch(value: i32) -> Option<i32> {
    (value >= 0).then_some(value)
}

/// OffsetForLeaderEpoch (v2+: every version carries `current_leader_epoch`).
pub async fn offset_for_leader_epoch<D: Disk>(
    broker: &Broker<D>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let name = topic_name(&topic.topic);
        let mut result = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
        result.topic = topic.topic;
        for wanted in topic.partitions {
            let mut answer = offset_for_leader_epoch_response::EpochEndOffset::default();
            answer.partition = wanted.partition;
            answer.leader_epoch = UNDEFINED_EPOCH;
            answer.end_offset = UNDEFINED_EPOCH_OFFSET;
            let Ok(index) = u32::try_from(wanted.partition) else {
                answer.error_code = ResponseError::UnknownTopicOrPartition.code();
                result.partitions.push(answer);
                continue;
            };
            match broker.partition_epochs(
                &name,
                index,
                current_leader_epoch(wanted.current_leader_epoch),
            ) {
                Err((code, _)) => answer.error_code = kafka_code(code),
                Ok(view) => {
                    (answer.leader_epoch, answer.end_offset) =
                        epoch_end_offset(&view.epochs, wanted.leader_epoch, view.log_end_offset);
                }
            }
            result.partitions.push(answer);
        }
        response.topics.push(result);
    }
    response
}

/// DeleteRecords: each partition's log start moved up to the given offset (-1: the high
/// watermark) on its leader; the answer is the low watermark: in a cluster once every live
/// follower moved its log start there too, each partition waiting up to `timeout_ms` (a
/// negative one is 0: answered at once if the followers are already there), then
/// REQUEST_TIMED_OUT with low watermark -1, the leader's move staying done (Kafka's
/// `DelayedDeleteRecords` answers the low watermark it had at the delete; clients read only
/// the error). The partitions are handled together, so the request waits `timeout_ms` once,
/// as Kafka's one delayed operation per request does, not once per partition.
pub async fn delete_records<D: Disk>(
    broker: &Broker<D>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let mut response = DeleteRecordsResponse::default();
    let topics = request.topics.into_iter().map(|topic| async move {
        let name = topic_name(&topic.name);
        let mut result = delete_records_response::DeleteRecordsTopicResult::default();
        result.name = topic.name;
        let partitions = topic.partitions.into_iter().map(|wanted| {
            let name = &name;
            async move {
                let mut answer = delete_records_response::DeleteRecordsPartitionResult::default();
                answer.partition_index = wanted.partition_index;
                answer.low_watermark = -1;
                match u32::try_from(wanted.partition_index) {
                    Err(_) => answer.error_code = ResponseError::UnknownTopicOrPartition.code(),
                    Ok(index) => match broker
                        .delete_records(name, index, wanted.offset, timeout)
                        .await
                    {
                        Ok(low_watermark) => answer.low_watermark = low_watermark,
                        Err((code, _)) => answer.error_code = kafka_code(code),
                    },
                }
                answer
            }
        });
        result.partitions = join_all(partitions).await;
        result
    });
    response.topics = join_all(topics).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let (cache, refused) = LeaderEpochCache::from_batches(entries.iter().copied());
        assert!(refused.is_empty());
        cache
    }

    // Goal: OffsetForLeaderEpoch's answer is Kafka's `endOffsetFor` in every case a client
    // meets: the latest epoch ends at the log end, an older one where the next starts, a
    // gap epoch answers the epoch below it, one older than all the first start, and an
    // unknown newer epoch, -1 or an empty log are undefined.
    #[test]
    fn epoch_end_offsets_are_kafkas() {
        let epochs = cache(&[(1, 0), (3, 10), (5, 25)]);
        assert_eq!(epoch_end_offset(&epochs, 5, 40), (5, 40));
        assert_eq!(epoch_end_offset(&epochs, 3, 40), (3, 25));
        assert_eq!(epoch_end_offset(&epochs, 1, 40), (1, 10));
        assert_eq!(epoch_end_offset(&epochs, 4, 40), (3, 25));
        assert_eq!(epoch_end_offset(&epochs, 2, 40), (1, 10));
        assert_eq!(epoch_end_offset(&epochs, 0, 40), (0, 0));
        assert_eq!(epoch_end_offset(&epochs, 6, 40), (-1, -1));
        assert_eq!(epoch_end_offset(&epochs, -1, 40), (-1, -1));
        assert_eq!(epoch_end_offset(&LeaderEpochCache::new(), 0, 0), (-1, -1));
    }
}
