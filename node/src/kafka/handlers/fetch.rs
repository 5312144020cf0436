//! Fetch and ListOffsets over the node's read path. A fetch from an offset inside a batch
//! returns that whole batch (the client skips the records before its offset), a long poll
//! waits up to `max_wait_ms` for `min_bytes` (bounded by the node's `fetch_wait_max`), and
//! `max_bytes` / `partition_max_bytes` bound the answer (at least one batch is returned so a
//! large batch cannot stall a consumer). No transactions: the last stable offset is the high
//! watermark, so read_committed and read_uncommitted read the same records.
//!
//! Fetch sessions (KIP-227): every answer carries session id 0, "no session", so clients
//! send full fetches, as they do against a broker whose session cache is full.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, TopicName,
    fetch_response, list_offsets_response,
};
use ledge_protocol::wire::{self, OffsetSpec};

use super::log_edges::current_leader_epoch;
use super::{ask, topic_name};
use crate::broker::Broker;
use crate::broker::log_edges::PartitionEpochs;
use crate::kafka::errors::kafka_code;
use crate::storage::Disk;

/// Kafka's "earliest" and "latest" ListOffsets timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// The first ListOffsets version whose answer carries a leader epoch.
const LEADER_EPOCH_VERSION: i16 = 4;

/// A requested partition: its index, and its leader epochs (with the spec asked), or `Err`
/// with the code it is refused with here.
type PartitionPlan = (i32, Result<(OffsetSpec, PartitionEpochs), i16>);

/// Fetch.
pub async fn fetch<D: Disk>(
    broker: &Broker<D>,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    let mut response = FetchResponse::default();
    if version >= 7 && request.session_id != 0 {
        // The node never hands out a session id, so a client cannot hold one.
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return response;
    }
    let mut native = wire::FetchRequest {
        max_wait_ms: u32::try_from(request.max_wait_ms).unwrap_or(0),
        min_bytes: u32::try_from(request.min_bytes).unwrap_or(0),
        max_bytes: u32::try_from(request.max_bytes).unwrap_or(0),
        topics: Vec::new(),
        plugin: None,
    };
    // Per requested partition: answered by the broker, or refused here (negative index).
    let mut plan: Vec<(TopicName, Vec<(i32, bool)>)> = Vec::new();
    for topic in &request.topics {
        let mut partitions = Vec::new();
        let mut outcomes = Vec::new();
        for partition in &topic.partitions {
            let index = u32::try_from(partition.partition).ok();
            if let Some(index) = index {
                partitions.push(wire::FetchPartition {
                    partition: index,
                    current_leader_epoch: (partition.current_leader_epoch >= 0)
                        .then_some(partition.current_leader_epoch),
                    fetch_offset: partition.fetch_offset,
                    partition_max_bytes: u32::try_from(partition.partition_max_bytes).unwrap_or(0),
                });
            }
            outcomes.push((partition.partition, index.is_some()));
        }
        if !partitions.is_empty() {
            native.topics.push(wire::FetchTopic {
                name: topic_name(&topic.topic),
                partitions,
            });
        }
        plan.push((topic.topic.clone(), outcomes));
    }
    let native_topics = if native.topics.is_empty() {
        Vec::new()
    } else {
        match ask!(broker, "", Fetch(native)) {
            Ok(native) => {
                response.error_code = kafka_code(native.error);
                native.topics
            }
            Err(api) => {
                tracing::error!(?api, "kafka fetch: the broker answered another API");
                response.error_code = ResponseError::UnknownServerError.code();
                Vec::new()
            }
        }
    };
    let mut native_topics = native_topics.into_iter();
    for (name, outcomes) in plan {
        let mut answers = if outcomes.iter().any(|(_, asked)| *asked) {
            native_topics
                .next()
                .map(|topic| topic.partitions)
                .unwrap_or_default()
                .into_iter()
        } else {
            Vec::new().into_iter()
        };
        let mut topic = fetch_response::FetchableTopicResponse::default();
        topic.topic = name;
        for (index, asked) in outcomes {
            let mut partition = fetch_response::PartitionData::default();
            partition.partition_index = index;
            partition.high_watermark = -1;
            partition.last_stable_offset = -1;
            partition.log_start_offset = -1;
            partition.preferred_read_replica = BrokerId(-1);
            match asked.then(|| answers.next()).flatten() {
                Some(answer) => {
                    partition.error_code = kafka_code(answer.error);
                    partition.high_watermark = answer.high_watermark;
                    partition.last_stable_offset = answer.high_watermark;
                    partition.log_start_offset = answer.log_start_offset;
                    partition.records = Some(answer.records);
                }
                None => {
                    partition.error_code = ResponseError::UnknownTopicOrPartition.code();
                    partition.records = Some(bytes::Bytes::new());
                }
            }
            topic.partitions.push(partition);
        }
        response.responses.push(topic);
    }
    response
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
