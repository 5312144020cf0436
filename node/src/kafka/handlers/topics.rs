//! CreateTopics, CreatePartitions and DeleteTopics over the node's topic admin (on one node, its registry; in
//! a cluster, the controller, with the same checks).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName, create_partitions_response,
    create_topics_response, delete_topics_response,
};
use ledge_protocol::wire::{self, ConfigEntry};

use super::{ask, message, text, topic_name};
use crate::broker::Broker;
use crate::kafka::errors::kafka_code;
use crate::storage::Disk;

/// Partitions of a topic created without a count (-1): Kafka's `num.partitions` default.
pub const DEFAULT_PARTITIONS: u32 = 1;

/// CreateTopics. `-1` partitions is [`DEFAULT_PARTITIONS`], `-1` replication the cluster's
/// default. Manual replica assignments are refused (INVALID_REPLICA_ASSIGNMENT): the node
/// places replicas itself.
pub async fn create_topics<D: Disk>(
    broker: &Broker<D>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let mut result = create_topics_response::CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let partitions = match topic.num_partitions {
            -1 => Ok(DEFAULT_PARTITIONS),
            count => u32::try_from(count).ok().filter(|count| *count > 0).ok_or((
                ResponseError::InvalidPartitions,
                "partitions must be at least 1",
            )),
        };
        let replication_factor = match topic.replication_factor {
            -1 => Ok(None),
            factor => u16::try_from(factor)
                .ok()
                .filter(|factor| *factor > 0)
                .map(Some)
                .ok_or((
                    ResponseError::InvalidReplicationFactor,
                    "replication factor must be at least 1",
                )),
        };
        let assignments = if topic.assignments.is_empty() {
            Ok(())
        } else {
            Err((
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are not supported: give a partition count and replication factor",
            ))
        };
        let checked = partitions.and_then(|partitions| {
            let factor = replication_factor?;
            assignments?;
            Ok((partitions, factor))
        });
        let (partitions, factor) = match checked {
            Ok(checked) => checked,
            Err((error, reason)) => {
                result.error_code = error.code();
                result.error_message = Some(text(reason));
                response.topics.push(result);
                continue;
            }
        };
        let configs = topic
            .configs
            .iter()
            // A null value asks for the default, which is what an absent key gets.
            .filter_map(|config| {
                config.value.as_ref().map(|value| ConfigEntry {
                    name: config.name.as_str().to_owned(),
                    value: value.as_str().to_owned(),
                })
            })
            .collect();
        let native = wire::CreateTopicsRequest {
            topics: vec![wire::CreatableTopic {
                name: topic_name(&topic.name),
                partitions,
                replication_factor: factor,
                configs,
            }],
            validate_only: request.validate_only,
        };
        match ask!(broker, "", CreateTopics(native)) {
            Ok(native) => match native.topics.into_iter().next() {
                Some(outcome) => {
                    result.error_code = kafka_code(outcome.error);
                    result.error_message = message(&outcome.message);
                    if outcome.error == wire::ErrorCode::None && version >= 5 {
                        result.num_partitions = i32::try_from(partitions).unwrap_or(-1);
                        result.replication_factor =
                            factor.map_or(-1, |factor| i16::try_from(factor).unwrap_or(i16::MAX));
                    }
                }
                None => result.error_code = ResponseError::UnknownServerError.code(),
            },
            Err(api) => {
                tracing::error!(?api, "kafka create topics: the broker answered another API");
                result.error_code = ResponseError::UnknownServerError.code();
            }
        }
        response.topics.push(result);
    }
    response
}

/// DeleteTopics, by name (topic ids, version 6, are answered UNKNOWN_TOPIC_ID when no name
/// comes with them).
pub async fn delete_topics<D: Disk>(
    broker: &Broker<D>,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    // Versions 1-5 list names; 6 lists (name, id) pairs.
    let mut asked: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name), uuid::Uuid::nil()))
        .collect();
    asked.extend(
        request
            .topics
            .into_iter()
            .map(|topic| (topic.name, topic.topic_id)),
    );
    let names: Vec<String> = asked
        .iter()
        .filter_map(|(name, _)| name.as_ref().map(topic_name))
        .collect();
    let mut outcomes = if names.is_empty() {
        Vec::new()
    } else {
        match ask!(
            broker,
            "",
            DeleteTopics(wire::DeleteTopicsRequest { names })
        ) {
            Ok(native) => native.topics,
            Err(api) => {
                tracing::error!(?api, "kafka delete topics: the broker answered another API");
                Vec::new()
            }
        }
    }
    .into_iter();
    let mut response = DeleteTopicsResponse::default();
    for (name, topic_id) in asked {
        let mut result = delete_topics_response::DeletableTopicResult::default();
        result.topic_id = topic_id;
        match &name {
            None => {
                result.error_code = ResponseError::UnknownTopicId.code();
                result.error_message = Some(text("topics are deleted by name on this node"));
            }
            Some(_) => match outcomes.next() {
                Some(outcome) => {
                    result.error_code = kafka_code(outcome.error);
                    result.error_message = message(&outcome.message);
                }
                None => result.error_code = ResponseError::UnknownServerError.code(),
            },
        }
        result.name = name;
        response.responses.push(result);
    }
    response
}

/// CreatePartitions: grows each topic to `count` partitions in all (never shrinks), with
/// the replicas of each new partition given or placed by the node (the controller in a
/// cluster).
pub async fn create_partitions<D: Disk>(
    broker: &Broker<D>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = create_partitions_response::CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let Some(count) = u32::try_from(topic.count).ok().filter(|count| *count > 0) else {
            result.error_code = ResponseError::InvalidPartitions.code();
            result.error_message = Some(text("the partition count must be at least 1"));
            response.results.push(result);
            continue;
        };
        let assignments: Option<Vec<Vec<u32>>> = topic
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|assignment| {
                assignment
                    .broker_ids
                    .into_iter()
                    .map(|id| u32::try_from(id.0).ok())
                    .collect()
            })
            .collect();
        let Some(assignments) = assignments else {
            result.error_code = ResponseError::InvalidReplicaAssignment.code();
            result.error_message = Some(text("a negative node id in an assignment"));
            response.results.push(result);
            continue;
        };
        let native = wire::CreatePartitionsRequest {
            topics: vec![wire::CreatePartitionsTopic {
                name: topic_name(&topic.name),
                count,
                assignments,
            }],
            validate_only: request.validate_only,
        };
        match ask!(broker, "", CreatePartitions(native)) {
            Ok(native) => match native.topics.into_iter().next() {
                Some(outcome) => {
                    result.error_code = kafka_code(outcome.error);
                    result.error_message = message(&outcome.message);
                }
                None => result.error_code = ResponseError::UnknownServerError.code(),
            },
            Err(api) => {
                tracing::error!(
                    ?api,
                    "kafka create partitions: the broker answered another API"
                );
                result.error_code = ResponseError::UnknownServerError.code();
            }
        }
        response.results.push(result);
    }
    response
}
