//! CreateTopics, CreatePartitions and DeleteTopics over the node's topic admin (on one node, its registry; in
//! a cluster, the controller, with the same checks).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName, create_partitions_response,
    create_topics_response, delete_topics_response,
};
use ledge_protocol::wire::{self, ConfigEntry};

use super::{TopicIds, ask, message, text, topic_name, topic_uuid};
use crate::broker::Broker;
use crate::kafka::authorize::{Decisions, change_outcome, cluster_allows_silently, record};
use crate::kafka::errors::kafka_code;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, ResourceType};
use crate::storage::Disk;

/// The message Kafka's controller gives a topic it may not create.
const CREATE_DENIED: &str = "Authorization failed.";

/// The first CreateTopics version with `topic_config_error_code` (and the created topic's
/// partitions and replication factor).
const CONFIGS_VERSION: i16 = 5;

/// Partitions of a topic created without a count (-1): Kafka's `num.partitions` default.
pub const DEFAULT_PARTITIONS: u32 = 1;

/// The first CreateTopics version whose answer carries the topic's id (KIP-516).
const TOPIC_ID_VERSION: i16 = 7;

/// The id of topic `name` just created, as Metadata gives it; nil if Metadata does not list
/// it (deleted meanwhile, or in a cluster, not in this node's image yet), as Kafka answers
/// a topic whose id it does not know.
async fn created_topic_id<D: Disk>(broker: &Broker<D>, name: &TopicName) -> uuid::Uuid {
    let request = wire::MetadataRequest {
        topics: Some(vec![topic_name(name)]),
    };
    match ask!(broker, "", Metadata(request)) {
        Ok(native) => native
            .topics
            .into_iter()
            .find(|topic| topic.error == wire::ErrorCode::None && !topic.topic_id.is_empty())
            .map_or(uuid::Uuid::nil(), |topic| topic_uuid(&topic.topic_id)),
        Err(api) => {
            tracing::error!(?api, "kafka create topics: the broker answered another API");
            uuid::Uuid::nil()
        }
    }
}

/// CreateTopics. `-1` partitions is [`DEFAULT_PARTITIONS`], `-1` replication the cluster's
/// default. Manual replica assignments are refused (INVALID_REPLICA_ASSIGNMENT): the node
/// places replicas itself.
///
/// Authorization (Kafka's `ControllerApis.createTopics`): Create on the cluster (not logged
/// when denied), else Create on each topic: a denied topic is TOPIC_AUTHORIZATION_FAILED
/// and never reaches the broker, so its existence is not revealed. A topic created by a
/// caller without DescribeConfigs on it has `topic_config_error_code`
/// TOPIC_AUTHORIZATION_FAILED and its partitions and replication factor withheld. Each
/// topic created (or not) is a recorded change.
pub async fn create_topics<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    let create_on_cluster = cluster_allows_silently(access, AclOperation::Create);
    let mut create = Decisions::new(access, AclOperation::Create, ResourceType::Topic);
    let mut describe_configs =
        Decisions::silent(access, AclOperation::DescribeConfigs, ResourceType::Topic);
    for topic in request.topics {
        let mut result = create_topics_response::CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let name = topic_name(&topic.name);
        if !create_on_cluster && !create.allows(&name) {
            result.error_code = ResponseError::TopicAuthorizationFailed.code();
            result.error_message = Some(text(CREATE_DENIED));
            response.topics.push(result);
            continue;
        }
        let configs_visible = describe_configs.allows(&name);
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
                    if outcome.error == wire::ErrorCode::None
                        && version >= CONFIGS_VERSION
                        && !configs_visible
                    {
                        result.topic_config_error_code =
                            ResponseError::TopicAuthorizationFailed.code();
                    } else if outcome.error == wire::ErrorCode::None && version >= CONFIGS_VERSION {
                        result.num_partitions = i32::try_from(partitions).unwrap_or(-1);
                        result.replication_factor =
                            factor.map_or(-1, |factor| i16::try_from(factor).unwrap_or(i16::MAX));
                    }
                    if outcome.error == wire::ErrorCode::None
                        && version >= TOPIC_ID_VERSION
                        && !request.validate_only
                    {
                        result.topic_id = created_topic_id(broker, &topic.name).await;
                    }
                }
                None => result.error_code = ResponseError::UnknownServerError.code(),
            },
            Err(api) => {
                tracing::error!(?api, "kafka create topics: the broker answered another API");
                result.error_code = ResponseError::UnknownServerError.code();
            }
        }
        if !request.validate_only {
            record(
                access,
                "CreateTopics",
                ResourceType::Topic,
                &name,
                change_outcome(result.error_code, result.error_message.as_ref()),
            );
        }
        response.topics.push(result);
    }
    response
}

/// DeleteTopics, by name or (version 6) by topic id: an id is resolved to its topic's name
/// first; an id no topic has is answered UNKNOWN_TOPIC_ID, as Kafka. Each answer carries
/// the deleted topic's id and name, however it was asked for.
///
/// Authorization (Kafka's `ControllerApis.deleteTopics`), after ids are resolved: Delete on
/// the cluster (not logged when denied) allows every topic; else a topic needs Describe and
/// Delete. Without Describe it is TOPIC_AUTHORIZATION_FAILED whether or not it exists, with
/// the nil id (asked by name) or no name (asked by id); with Describe but not Delete,
/// TOPIC_AUTHORIZATION_FAILED with its name and id. Each topic deleted (or not) is a
/// recorded change.
pub async fn delete_topics<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
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
    let ids = TopicIds::of(broker).await;
    let delete_on_cluster = cluster_allows_silently(access, AclOperation::Delete);
    let mut describe = Decisions::new(access, AclOperation::Describe, ResourceType::Topic);
    let mut delete = Decisions::new(access, AclOperation::Delete, ResourceType::Topic);
    // Each asked topic as (name to delete, its id), or the code it is refused with here
    // (with the name and id to answer).
    let resolved: Vec<Result<(String, uuid::Uuid), Refused>> = asked
        .iter()
        .map(|(name, id)| {
            let by_name = name.is_some();
            let (name, id) = match name {
                Some(name) => {
                    let name = topic_name(name);
                    let id = ids.by_name.get(&name).copied().unwrap_or(*id);
                    (name, id)
                }
                None => match ids.name_of(id) {
                    Some(name) => (name.to_owned(), *id),
                    None => return Err(Refused::UnknownId),
                },
            };
            if delete_on_cluster {
                return Ok((name, id));
            }
            if !describe.allows(&name) {
                // Neither the id of a named topic nor the name of an id is revealed.
                return Err(if by_name {
                    Refused::Hidden(Some(name), uuid::Uuid::nil())
                } else {
                    Refused::Hidden(None, id)
                });
            }
            if !delete.allows(&name) {
                return Err(Refused::Hidden(Some(name), id));
            }
            Ok((name, id))
        })
        .collect();
    let names: Vec<String> = resolved
        .iter()
        .filter_map(|resolved| resolved.as_ref().ok().map(|(name, _)| name.clone()))
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
    for ((asked_name, asked_id), resolved) in asked.into_iter().zip(resolved) {
        let mut result = delete_topics_response::DeletableTopicResult::default();
        match resolved {
            Err(Refused::UnknownId) => {
                result.error_code = ResponseError::UnknownTopicId.code();
                result.error_message = Some(text("no topic has this id"));
                result.name = asked_name;
                result.topic_id = asked_id;
            }
            Err(Refused::Hidden(name, id)) => {
                result.error_code = ResponseError::TopicAuthorizationFailed.code();
                result.name = name.map(|name| TopicName(text(name)));
                result.topic_id = id;
            }
            Ok((name, id)) => {
                match outcomes.next() {
                    Some(outcome) => {
                        result.error_code = kafka_code(outcome.error);
                        result.error_message = message(&outcome.message);
                    }
                    None => result.error_code = ResponseError::UnknownServerError.code(),
                }
                record(
                    access,
                    "DeleteTopics",
                    ResourceType::Topic,
                    &name,
                    change_outcome(result.error_code, result.error_message.as_ref()),
                );
                result.name = Some(TopicName(text(name)));
                result.topic_id = id;
            }
        }
        response.responses.push(result);
    }
    response
}

/// Why DeleteTopics refused a topic before asking the broker.
enum Refused {
    /// Asked by an id no topic has (before authorization, as Kafka: ids are not secret).
    UnknownId,
    /// Not authorized: TOPIC_AUTHORIZATION_FAILED with this name and id.
    Hidden(Option<String>, uuid::Uuid),
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
