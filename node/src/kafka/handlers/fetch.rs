//! Fetch and ListOffsets over the node's read path. A fetch from an offset inside a batch
//! returns that whole batch (the client skips the records before its offset), a long poll
//! waits up to `max_wait_ms` for `min_bytes` (bounded by the node's `fetch_wait_max`), and
//! `max_bytes` / `partition_max_bytes` bound the answer (at least one batch is returned so a
//! large batch cannot stall a consumer). No transactions: the last stable offset is the high
//! watermark, so read_committed and read_uncommitted read the same records.
//!
//! Fetch sessions (KIP-227, from v7): the session fields go through the broker-wide
//! [`FetchSessionCache`] before the read (which partitions to read: those listed, or for an
//! incremental fetch every partition of the session) and after it (which partitions to
//! answer, and the session id). The cache's rules are Kafka's (`kafka/fetch_sessions.rs`).
//!
//! Diverging epochs (KIP-320, Fetch v12+): a partition that names its `last_fetched_epoch`
//! is checked against the leader's epoch checkpoint before it is read, as Kafka's
//! `Partition.readRecords` does. Where that epoch ends here comes from OffsetForLeaderEpoch's
//! answer (`log_edges::epoch_end_offset`); if it ends before the fetch offset, or the
//! largest epoch here at or below it is an older one, the partition is answered with
//! `diverging_epoch` (that epoch and end) and no records, and the fetch does not wait. An
//! epoch that cannot be placed, or a fetch offset below the log start, is
//! OFFSET_OUT_OF_RANGE. Before v12 the field does not exist and nothing is checked.

use std::sync::{Mutex, PoisonError};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    fetch_response, list_offsets_response,
};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::wire::{self, OffsetSpec};

use super::log_edges::{
    UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET, current_leader_epoch, epoch_end_offset,
};
use super::{ask, topic_name};
use crate::broker::Broker;
use crate::broker::log_edges::PartitionEpochs;
use crate::kafka::authorize::{Decisions, cluster_allows};
use crate::kafka::errors::{fetch_session_code, kafka_code};
use crate::kafka::fetch_sessions::{
    FetchKind, FetchPlan, FetchSessionCache, PartitionFetch, PartitionOutcome, SessionPartition,
    SessionRequest,
};
use crate::security::access::Access;
use crate::security::acl::{AclOperation, ResourceType};
use crate::storage::Disk;

/// Kafka's "earliest" and "latest" ListOffsets timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// The first ListOffsets version whose answer carries a leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;

/// The first Fetch version with session fields (KIP-227).
const SESSION_VERSION: i16 = 7;
/// The first Fetch version that names topics by id (a session keeps to one or the other).
const TOPIC_ID_VERSION: i16 = 13;

/// The first Fetch version that carries `last_fetched_epoch` (and answers
/// `diverging_epoch`).
const LAST_FETCHED_EPOCH_VERSION: i16 = 12;

/// A requested partition: its index, and its leader epochs (with the spec asked), or `Err`
/// with the code it is refused with here.
type PartitionPlan = (i32, Result<(OffsetSpec, PartitionEpochs), i16>);

/// Fetch, with or within a fetch session.
///
/// Authorization (Kafka's `handleFetchRequest`): a consumer needs Read on each topic it
/// reads (the session's partitions included); a denied topic's partitions are
/// TOPIC_AUTHORIZATION_FAILED before their existence is looked at. A follower's fetch
/// (`replica_id` >= 0) needs ClusterAction on the cluster, and without it every partition
/// is TOPIC_AUTHORIZATION_FAILED, as Kafka answers it.
pub async fn fetch<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    sessions: &Mutex<FetchSessionCache>,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    let mut response = FetchResponse::default();
    let asked: Vec<(SessionPartition, PartitionFetch)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    SessionPartition {
                        topic: topic_name(&topic.topic),
                        partition: partition.partition,
                    },
                    PartitionFetch {
                        fetch_offset: partition.fetch_offset,
                        partition_max_bytes: partition.partition_max_bytes,
                        current_leader_epoch: partition.current_leader_epoch,
                        log_start_offset: partition.log_start_offset,
                        last_fetched_epoch: partition.last_fetched_epoch,
                    },
                )
            })
        })
        .collect();
    let plan = if version < SESSION_VERSION {
        // Before v7 there are no session fields: Kafka reads them as (0, FINAL).
        FetchPlan {
            kind: FetchKind::Sessionless,
            partitions: asked,
            closed: None,
        }
    } else {
        let forgotten = request
            .forgotten_topics_data
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| SessionPartition {
                    topic: topic_name(&topic.topic),
                    partition: *partition,
                })
            })
            .collect();
        let session_request = SessionRequest {
            session_id: request.session_id,
            epoch: request.session_epoch,
            uses_topic_ids: version >= TOPIC_ID_VERSION,
            partitions: asked,
            forgotten,
        };
        let planned = lock(sessions).handle_request(broker.clock().now(), session_request);
        match planned {
            Ok(plan) => plan,
            Err(error) => {
                tracing::debug!(session_id = request.session_id, epoch = request.session_epoch, %error, "kafka fetch: session refused");
                response.error_code = fetch_session_code(error);
                return response;
            }
        }
    };
    if let Some(closed) = plan.closed {
        tracing::info!(
            session_id = closed.session_id,
            partitions = closed.partitions,
            incremental_fetches = closed.incremental_fetches,
            reason = ?closed.reason,
            "kafka fetch session closed"
        );
    }
    let (error_code, answers) = read(broker, access, &plan.partitions, &request, version).await;
    response.error_code = error_code;
    let outcomes: Vec<PartitionOutcome> = answers
        .iter()
        .map(|answer| PartitionOutcome {
            records_bytes: answer.records.as_ref().map_or(0, bytes::Bytes::len),
            high_watermark: answer.high_watermark,
            log_start_offset: answer.log_start_offset,
            error_code: answer.error_code,
            diverging: is_diverging(answer),
        })
        .collect();
    let settled = lock(sessions).handle_answer(broker.clock().now(), &plan, &outcomes);
    if let Some(error) = settled.error {
        response.error_code = fetch_session_code(error);
        return response;
    }
    response.session_id = settled.session_id;
    // One topic entry per run of consecutive partitions of a topic, as Kafka's
    // `FetchResponse.of` builds it from the session's order.
    let kept = plan
        .partitions
        .iter()
        .zip(answers)
        .zip(settled.include)
        .filter_map(|(((key, _), answer), include)| include.then_some((&key.topic, answer)));
    for (topic, answer) in kept {
        match response.responses.last_mut() {
            Some(last) if last.topic.0.as_str() == topic.as_str() => last.partitions.push(answer),
            _ => {
                let mut entry = fetch_response::FetchableTopicResponse::default();
                entry.topic = TopicName(StrBytes::from_string(topic.clone()));
                entry.partitions.push(answer);
                response.responses.push(entry);
            }
        }
    }
    response
}

/// The cache; a handler that panicked holding it left it consistent (each call changes
/// it only after its checks), so a poisoned lock is used as is.
fn lock(sessions: &Mutex<FetchSessionCache>) -> std::sync::MutexGuard<'_, FetchSessionCache> {
    sessions.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `partitions` in order with the request's wait and size bounds; the top-level
/// error code and one answer per partition. A negative partition index is answered
/// UNKNOWN_TOPIC_OR_PARTITION here. So is (v12+) a partition whose `last_fetched_epoch`
/// diverges from the leader's log (its diverging epoch) or cannot be checked (its error),
/// and then the fetch does not wait, as Kafka's.
async fn read<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    partitions: &[(SessionPartition, PartitionFetch)],
    request: &FetchRequest,
    version: i16,
) -> (i16, Vec<fetch_response::PartitionData>) {
    let mut native = wire::FetchRequest {
        max_wait_ms: u32::try_from(request.max_wait_ms).unwrap_or(0),
        min_bytes: u32::try_from(request.min_bytes).unwrap_or(0),
        max_bytes: u32::try_from(request.max_bytes).unwrap_or(0),
        topics: Vec::new(),
        plugin: None,
    };
    // Per partition: `None` when sent to the broker, else its answer made here.
    let mut early = Vec::with_capacity(partitions.len());
    let mut epoch_answered = false;
    let follower = request.replica_id.0 >= 0;
    let follower_denied =
        follower && !partitions.is_empty() && !cluster_allows(access, AclOperation::ClusterAction);
    let mut read_topics = Decisions::new(access, AclOperation::Read, ResourceType::Topic);
    for (key, fetch) in partitions {
        if follower_denied || (!follower && !read_topics.allows(&key.topic)) {
            early.push(Some(refused(
                key.partition,
                ResponseError::TopicAuthorizationFailed.code(),
            )));
            continue;
        }
        let Ok(index) = u32::try_from(key.partition) else {
            early.push(Some(refused(
                key.partition,
                ResponseError::UnknownTopicOrPartition.code(),
            )));
            continue;
        };
        if version >= LAST_FETCHED_EPOCH_VERSION
            && fetch.last_fetched_epoch >= 0
            && let Some(answer) = epoch_answer(broker, key, index, fetch)
        {
            early.push(Some(answer));
            epoch_answered = true;
            continue;
        }
        let wanted = wire::FetchPartition {
            partition: index,
            current_leader_epoch: current_leader_epoch(fetch.current_leader_epoch),
            fetch_offset: fetch.fetch_offset,
            partition_max_bytes: u32::try_from(fetch.partition_max_bytes).unwrap_or(0),
        };
        match native.topics.last_mut() {
            Some(topic) if topic.name == key.topic => topic.partitions.push(wanted),
            _ => native.topics.push(wire::FetchTopic {
                name: key.topic.clone(),
                partitions: vec![wanted],
            }),
        }
        early.push(None);
    }
    if epoch_answered {
        // Kafka answers a diverging (or refused) epoch at once, with whatever the other
        // partitions have now.
        native.max_wait_ms = 0;
    }
    let mut error_code = 0;
    let native_topics = if native.topics.is_empty() {
        Vec::new()
    } else {
        match ask!(broker, "", Fetch(native)) {
            Ok(native) => {
                error_code = kafka_code(native.error);
                native.topics
            }
            Err(api) => {
                tracing::error!(?api, "kafka fetch: the broker answered another API");
                error_code = ResponseError::UnknownServerError.code();
                Vec::new()
            }
        }
    };
    // The broker answers every partition sent, in order.
    let mut native_answers = native_topics.into_iter().flat_map(|topic| topic.partitions);
    let answers = partitions
        .iter()
        .zip(early)
        .map(|((key, _), early)| {
            if let Some(answer) = early {
                return answer;
            }
            match native_answers.next() {
                Some(answer) => {
                    let mut partition = refused(key.partition, kafka_code(answer.error));
                    partition.high_watermark = answer.high_watermark;
                    partition.last_stable_offset = answer.high_watermark;
                    partition.log_start_offset = answer.log_start_offset;
                    partition.records = Some(answer.records);
                    partition
                }
                None => refused(key.partition, ResponseError::UnknownTopicOrPartition.code()),
            }
        })
        .collect();
    (error_code, answers)
}

/// A partition's answer with `error_code`, no records and Kafka's "unknown" offsets.
fn refused(partition_index: i32, error_code: i16) -> fetch_response::PartitionData {
    let mut partition = fetch_response::PartitionData::default();
    partition.partition_index = partition_index;
    partition.error_code = error_code;
    partition.high_watermark = -1;
    partition.last_stable_offset = -1;
    partition.log_start_offset = -1;
    partition.preferred_read_replica = BrokerId(-1);
    partition.records = Some(bytes::Bytes::new());
    partition
}

/// Whether `answer` is a diverging-epoch answer (Kafka's `FetchResponse.isDivergingEpoch`).
fn is_diverging(answer: &fetch_response::PartitionData) -> bool {
    answer.diverging_epoch.epoch >= 0 || answer.diverging_epoch.end_offset >= 0
}

/// The answer for a partition that names its `last_fetched_epoch`, when the leader's log
/// says it is not to be read: its error (this node does not lead it, the client's
/// `current_leader_epoch` is off, or [`EpochCheck::OutOfRange`]) or its diverging epoch.
/// `None`: read it.
fn epoch_answer<D: Disk>(
    broker: &Broker<D>,
    key: &SessionPartition,
    index: u32,
    fetch: &PartitionFetch,
) -> Option<fetch_response::PartitionData> {
    let view = match broker.partition_epochs(
        &key.topic,
        index,
        current_leader_epoch(fetch.current_leader_epoch),
    ) {
        Ok(view) => view,
        Err((code, _)) => return Some(refused(key.partition, kafka_code(code))),
    };
    match check_last_fetched_epoch(&view, fetch.last_fetched_epoch, fetch.fetch_offset) {
        EpochCheck::Read => None,
        EpochCheck::OutOfRange => Some(refused(
            key.partition,
            ResponseError::OffsetOutOfRange.code(),
        )),
        EpochCheck::Diverging { epoch, end_offset } => {
            tracing::debug!(
                topic = %key.topic,
                partition = key.partition,
                last_fetched_epoch = fetch.last_fetched_epoch,
                fetch_offset = fetch.fetch_offset,
                epoch,
                end_offset,
                "kafka fetch: diverging epoch"
            );
            let mut partition = refused(key.partition, 0);
            partition.high_watermark = view.high_watermark;
            partition.last_stable_offset = view.high_watermark;
            partition.log_start_offset = view.log_start_offset;
            partition.diverging_epoch.epoch = epoch;
            partition.diverging_epoch.end_offset = end_offset;
            Some(partition)
        }
    }
}

/// What the leader's epoch checkpoint says of a fetch that names its last fetched epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EpochCheck {
    /// The fetcher's log agrees with the leader's up to the fetch offset: read.
    Read,
    /// The fetcher's log diverges: answer where its last fetched epoch ends here (the
    /// largest epoch here at or below it, and that epoch's end offset), with no records.
    Diverging {
        /// The epoch.
        epoch: i32,
        /// Where it ends here.
        end_offset: i64,
    },
    /// The epoch cannot be placed here (newer than the latest, or no epochs at all), or the
    /// fetch offset is below the log start.
    OutOfRange,
}

/// Kafka's `Partition.readRecords` check of `last_fetched_epoch` against the leader's log:
/// where that epoch ends here is OffsetForLeaderEpoch's answer for it; undefined is out of
/// range, then so is a fetch offset below the log start (diverging or not), then the log
/// diverges if the answer's epoch is older than the one asked or it ends before the fetch
/// offset.
fn check_last_fetched_epoch(
    view: &PartitionEpochs,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> EpochCheck {
    let (epoch, end_offset) =
        epoch_end_offset(&view.epochs, last_fetched_epoch, view.log_end_offset);
    if epoch == UNDEFINED_EPOCH || end_offset == UNDEFINED_EPOCH_OFFSET {
        return EpochCheck::OutOfRange;
    }
    if fetch_offset < view.log_start_offset {
        return EpochCheck::OutOfRange;
    }
    if epoch < last_fetched_epoch || end_offset < fetch_offset {
        return EpochCheck::Diverging { epoch, end_offset };
    }
    EpochCheck::Read
}

/// ListOffsets: earliest (-2), latest (-1) or the first offset at or after a timestamp,
/// with the leader epoch of that offset (KIP-320; the latest epoch for "latest", as Kafka)
/// from the leader's epoch checkpoint, -1 when the log has none yet. The client's
/// `current_leader_epoch` (v4+) is checked first: FENCED_LEADER_EPOCH or
/// UNKNOWN_LEADER_EPOCH, as Kafka.
pub async fn list_offsets<D: Disk>(
    broker: &Broker<D>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut native = wire::ListOffsetsRequest { topics: Vec::new() };
    let mut plan: Vec<(TopicName, Vec<PartitionPlan>)> = Vec::new();
    for topic in &request.topics {
        let mut partitions = Vec::new();
        let mut outcomes = Vec::new();
        for partition in &topic.partitions {
            let spec = match partition.timestamp {
                LATEST_TIMESTAMP => Some(OffsetSpec::Latest),
                EARLIEST_TIMESTAMP => Some(OffsetSpec::Earliest),
                timestamp if timestamp >= 0 => Some(OffsetSpec::Timestamp(timestamp)),
                _ => None,
            };
            let outcome = match (u32::try_from(partition.partition_index), spec) {
                (Err(_), _) => Err(ResponseError::UnknownTopicOrPartition.code()),
                (Ok(_), None) => Err(ResponseError::InvalidRequest.code()),
                (Ok(index), Some(spec)) => match broker.partition_epochs(
                    &topic_name(&topic.name),
                    index,
                    current_leader_epoch(partition.current_leader_epoch),
                ) {
                    Err((code, _)) => Err(kafka_code(code)),
                    Ok(epochs) => {
                        partitions.push(wire::ListOffsetsPartition {
                            partition: index,
                            spec,
                        });
                        Ok((spec, epochs))
                    }
                },
            };
            outcomes.push((partition.partition_index, outcome));
        }
        if !partitions.is_empty() {
            native.topics.push(wire::ListOffsetsTopic {
                name: topic_name(&topic.name),
                partitions,
            });
        }
        plan.push((topic.name.clone(), outcomes));
    }
    let native_topics = if native.topics.is_empty() {
        Vec::new()
    } else {
        match ask!(broker, "", ListOffsets(native)) {
            Ok(native) => native.topics,
            Err(api) => {
                tracing::error!(?api, "kafka list offsets: the broker answered another API");
                Vec::new()
            }
        }
    };
    let mut native_topics = native_topics.into_iter();
    let mut response = ListOffsetsResponse::default();
    for (name, outcomes) in plan {
        let mut answers = if outcomes.iter().any(|(_, outcome)| outcome.is_ok()) {
            native_topics
                .next()
                .map(|topic| topic.partitions)
                .unwrap_or_default()
                .into_iter()
        } else {
            Vec::new().into_iter()
        };
        let mut topic = list_offsets_response::ListOffsetsTopicResponse::default();
        topic.name = name;
        for (index, outcome) in outcomes {
            let mut partition = list_offsets_response::ListOffsetsPartitionResponse::default();
            partition.partition_index = index;
            partition.timestamp = -1;
            partition.offset = -1;
            partition.leader_epoch = -1;
            match outcome {
                Err(code) => partition.error_code = code,
                Ok((spec, view)) => match answers.next() {
                    Some(answer) => {
                        partition.error_code = kafka_code(answer.error);
                        partition.offset = answer.offset.unwrap_or(-1);
                        partition.timestamp = answer.timestamp.unwrap_or(-1);
                        // The field exists from v4 on (an older answer cannot carry it).
                        if version >= LEADER_EPOCH_VERSION {
                            partition.leader_epoch = offset_epoch(&view, spec, answer.offset);
                        }
                    }
                    None => partition.error_code = ResponseError::UnknownServerError.code(),
                },
            }
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}

/// The leader epoch ListOffsets answers with an offset: the latest epoch for "latest" (as
/// Kafka), else the epoch of the batch holding the offset; -1 when unknown.
fn offset_epoch(view: &PartitionEpochs, spec: OffsetSpec, offset: Option<i64>) -> i32 {
    let epoch = match (spec, offset) {
        (OffsetSpec::Latest, _) => view.epochs.latest_epoch(),
        (_, Some(offset)) => view.epochs.epoch_at(offset),
        (_, None) => None,
    };
    epoch.unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::leader_epoch::LeaderEpochCache;

    /// A leader log of epochs 1 from 0, 3 from 10 and 5 from 25, ending at 40, starting at
    /// `log_start_offset`.
    fn view(log_start_offset: i64) -> PartitionEpochs {
        let (epochs, refused) = LeaderEpochCache::from_batches([(1, 0), (3, 10), (5, 25)]);
        assert!(refused.is_empty());
        PartitionEpochs {
            leader_epoch: 5,
            epochs,
            log_start_offset,
            log_end_offset: 40,
            high_watermark: 38,
        }
    }

    // Goal: the last fetched epoch is checked as Kafka's `Partition.readRecords`: a log
    // that agrees is read; one whose epoch ends here before the fetch offset, or that has
    // an epoch this leader never had, diverges at OffsetForLeaderEpoch's answer; an epoch
    // that cannot be placed, or an offset below the log start, is out of range.
    #[test]
    fn the_last_fetched_epoch_is_checked_as_kafka() {
        let leader = view(0);
        // Agrees: the epoch ends at or after the fetch offset.
        assert_eq!(check_last_fetched_epoch(&leader, 3, 25), EpochCheck::Read);
        assert_eq!(check_last_fetched_epoch(&leader, 3, 12), EpochCheck::Read);
        assert_eq!(check_last_fetched_epoch(&leader, 5, 40), EpochCheck::Read);
        // Epoch 3 ends at 25 here; the fetcher is past it.
        assert_eq!(
            check_last_fetched_epoch(&leader, 3, 27),
            EpochCheck::Diverging {
                epoch: 3,
                end_offset: 25
            }
        );
        // The latest epoch ends at the log end: a fetcher past it diverges too.
        assert_eq!(
            check_last_fetched_epoch(&leader, 5, 41),
            EpochCheck::Diverging {
                epoch: 5,
                end_offset: 40
            }
        );
        // Epoch 4 was never this leader's: the largest below it (3) and its end.
        assert_eq!(
            check_last_fetched_epoch(&leader, 4, 20),
            EpochCheck::Diverging {
                epoch: 3,
                end_offset: 25
            }
        );
        // Older than every epoch here: Kafka answers the epoch itself, ending where the
        // first known one starts (0 here), so any later offset diverges.
        assert_eq!(
            check_last_fetched_epoch(&leader, 0, 5),
            EpochCheck::Diverging {
                epoch: 0,
                end_offset: 0
            }
        );
        // Newer than the latest: cannot be placed.
        assert_eq!(
            check_last_fetched_epoch(&leader, 6, 40),
            EpochCheck::OutOfRange
        );
        // Below the log start, diverging or not.
        let moved = view(12);
        assert_eq!(
            check_last_fetched_epoch(&moved, 3, 11),
            EpochCheck::OutOfRange
        );
        assert_eq!(check_last_fetched_epoch(&moved, 3, 12), EpochCheck::Read);
        // No epochs at all (a log without batches).
        let empty = PartitionEpochs {
            epochs: LeaderEpochCache::new(),
            log_end_offset: 0,
            ..leader
        };
        assert_eq!(
            check_last_fetched_epoch(&empty, 0, 0),
            EpochCheck::OutOfRange
        );
    }
}
