//! The Kafka group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, OffsetDelete, ListGroups, DescribeGroups, DeleteGroups.
//!
//! Each handler translates a Kafka request into the [`GroupService`]'s classic-protocol
//! calls (`groups/service/classic.rs`), on the group's coordinator only (in a cluster other
//! nodes answer NOT_COORDINATOR, as for QUIC), and translates the answer back. The group
//! service's errors become Kafka's codes in [`service_code`] and [`classic_code`], and nowhere
//! else: group errors have Kafka codes the node's own wire codes lack (ILLEGAL_GENERATION,
//! REBALANCE_IN_PROGRESS, MEMBER_ID_REQUIRED).
//!
//! Authorization (Kafka's `KafkaApis`), before the coordinator is looked for: JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup need Read on the group (GROUP_AUTHORIZATION_FAILED for
//! the whole request); FindCoordinator Describe on each key's group (or transactional id);
//! OffsetFetch Describe on the group, then on each topic asked for (the all-topics form
//! leaves out, silently, the topics the caller may not describe); ListGroups lists the
//! groups the caller may describe (all of them with Describe on the cluster);
//! DescribeGroups needs Describe on each group. OffsetCommit, OffsetDelete and DeleteGroups
//! are checked in `kafka/authorize.rs` before these handlers run.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName, delete_groups_response,
    describe_groups_response, find_coordinator_response, join_group_response, leave_group_response,
    list_groups_response, offset_commit_response, offset_delete_response, offset_fetch_response,
};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::wire::ErrorCode;

use crate::broker::Broker;
use crate::broker::groups::CoordinatorError;
use crate::groups::classic::{ClassicError, JoinInput, LeavingMember, SyncInput};
use crate::groups::consumer_protocol::{
    CONSUMER_PROTOCOL_TYPE, ConsumerSubscription, encode_assignment, encode_subscription,
};
use crate::groups::coordinator::GroupError;
use crate::groups::service::{
    ClassicCommit, DescribedAnyGroup, GroupService, GroupServiceError, OffsetsLogError,
};
use crate::kafka::authorize::{Decisions, authorized_operations, cluster_allows_silently};
use crate::security::access::Access;
use crate::security::acl::{AclOperation, ResourceType};
use crate::storage::Disk;

/// The first JoinGroup version whose `protocol_name` may be null.
const JOIN_NULL_PROTOCOL_VERSION: i16 = 7;
/// The first SyncGroup version that carries the protocol type and name.
const SYNC_PROTOCOL_VERSION: i16 = 5;
/// The first DescribeGroups version with `include_authorized_operations`.
const DESCRIBE_OPERATIONS_VERSION: i16 = 3;
/// The first OffsetFetch version with a top-level error code.
const OFFSET_FETCH_ERROR_VERSION: i16 = 2;

/// Whether the caller may read `group_id` (Kafka's check for the classic group APIs).
fn may_read_group(access: &Access, group_id: &str) -> bool {
    access.allows(AclOperation::Read, ResourceType::Group, group_id)
}

/// FindCoordinator's key types: groups (served), transactions (KIP-98, not served) and share
/// groups (KIP-932, not served); any other is a malformed request.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
const KEY_TYPE_SHARE: i8 = 2;

/// JoinGroup (v0-v9).
pub async fn join_group<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    client_id: &str,
    client_host: &str,
    request: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    let group_id = request.group_id.0.to_string();
    if !may_read_group(access, &group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        response.generation_id = -1;
        if version >= JOIN_NULL_PROTOCOL_VERSION {
            response.protocol_name = None;
        }
        return response;
    }
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            return response;
        }
    };
    let session_timeout = millis(request.session_timeout_ms);
    let join = JoinInput {
        group_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout: if version == 0 {
            session_timeout
        } else {
            millis(request.rebalance_timeout_ms)
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    match service.classic_join(&broker.group_host(), join).await {
        Ok(reply) => {
            response.generation_id = reply.generation;
            response.protocol_type = Some(text(reply.protocol_type));
            response.protocol_name = Some(text(reply.protocol_name));
            response.leader = text(reply.leader);
            response.member_id = text(reply.member_id);
            response.members = reply
                .members
                .into_iter()
                .map(|(member_id, instance_id, metadata)| {
                    let mut member = join_group_response::JoinGroupResponseMember::default();
                    member.member_id = text(member_id);
                    member.group_instance_id = instance_id.map(text);
                    member.metadata = metadata;
                    member
                })
                .collect();
        }
        Err(GroupServiceError::Classic(ClassicError::MemberIdRequired { member_id })) => {
            response.error_code = ResponseError::MemberIdRequired.code();
            response.member_id = text(member_id);
        }
        Err(error) => response.error_code = service_code(&error),
    }
    response
}

/// SyncGroup (v0-v5).
pub async fn sync_group<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: SyncGroupRequest,
    version: i16,
) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    let group_id = request.group_id.0.to_string();
    // Kafka checks the protocol fields first, then the group.
    if version >= SYNC_PROTOCOL_VERSION
        && (request.protocol_type.is_none() || request.protocol_name.is_none())
    {
        response.error_code = ResponseError::InconsistentGroupProtocol.code();
        return response;
    }
    if !may_read_group(access, &group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            return response;
        }
    };
    let sync = SyncInput {
        group_id,
        generation: request.generation_id,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|id| id.to_string()),
        protocol_type: request.protocol_type.map(|value| value.to_string()),
        protocol_name: request.protocol_name.map(|value| value.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| (assignment.member_id.to_string(), assignment.assignment))
            .collect(),
    };
    match service.classic_sync(sync).await {
        Ok(reply) => {
            response.protocol_type = Some(text(reply.protocol_type));
            response.protocol_name = Some(text(reply.protocol_name));
            response.assignment = reply.assignment;
        }
        Err(error) => response.error_code = service_code(&error),
    }
    response
}

/// Heartbeat (v0-v4).
pub async fn heartbeat<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    let group_id = request.group_id.0.to_string();
    if !may_read_group(access, &group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            return response;
        }
    };
    if let Err(error) = service.classic_heartbeat(
        &broker.group_host(),
        &group_id,
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_deref(),
    ) {
        response.error_code = service_code(&error);
    }
    response
}

/// LeaveGroup (v0-v5; a batch of members from v3).
pub async fn leave_group<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let mut response = LeaveGroupResponse::default();
    let group_id = request.group_id.0.to_string();
    if !may_read_group(access, &group_id) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            return response;
        }
    };
    let leaving: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|member| LeavingMember {
                member_id: member.member_id.to_string(),
                instance_id: member.group_instance_id.as_ref().map(|id| id.to_string()),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: request.member_id.to_string(),
            instance_id: None,
        }]
    };
    match service.classic_leave(&broker.group_host(), &group_id, &leaving) {
        Ok(results) if version >= 3 => {
            response.members = leaving
                .into_iter()
                .zip(results)
                .map(|(member, result)| {
                    let mut answer = leave_group_response::MemberResponse::default();
                    answer.member_id = text(member.member_id);
                    answer.group_instance_id = member.instance_id.map(text);
                    if let Err(error) = result {
                        answer.error_code = service_code(&error);
                    }
                    answer
                })
                .collect();
        }
        Ok(mut results) => {
            if let Some(Err(error)) = results.pop() {
                response.error_code = service_code(&error);
            }
        }
        Err(error) => response.error_code = service_code(&error),
    }
    response
}

/// OffsetCommit (v2-v9): classic generation checks, then `__consumer_offsets`.
pub async fn offset_commit<D: Disk>(
    broker: &Broker<D>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut response = OffsetCommitResponse::default();
    let group_id = request.group_id.0.to_string();
    let answer_all = |code: i16| {
        request
            .topics
            .iter()
            .map(|topic| {
                let mut answer = offset_commit_response::OffsetCommitResponseTopic::default();
                answer.name = topic.name.clone();
                answer.partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        let mut entry =
                            offset_commit_response::OffsetCommitResponsePartition::default();
                        entry.partition_index = partition.partition_index;
                        entry.error_code = code;
                        entry
                    })
                    .collect();
                answer
            })
            .collect::<Vec<_>>()
    };
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.topics = answer_all(coordinator_code(&error));
            return response;
        }
    };
    let metadata_limit = service.limits().offset_metadata_bytes_max;
    let mut topics = answer_all(0);
    // Partitions Kafka refuses alone (a negative index, metadata over the limit) get their
    // code here; the rest go to the service in one commit.
    let mut commits = Vec::new();
    let mut sent = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let metadata = partition
                .committed_metadata
                .as_ref()
                .map(|metadata| metadata.to_string())
                .unwrap_or_default();
            let refusal = if metadata.len() > metadata_limit {
                Some(ResponseError::OffsetMetadataTooLarge.code())
            } else if partition.partition_index < 0 {
                Some(ResponseError::UnknownTopicOrPartition.code())
            } else {
                None
            };
            match refusal {
                Some(code) => set_commit_code(&mut topics, topic_index, partition_index, code),
                None => {
                    commits.push(ClassicCommit {
                        topic: topic.name.0.to_string(),
                        partition: u32::try_from(partition.partition_index).unwrap_or_default(),
                        offset: partition.committed_offset,
                        metadata,
                    });
                    sent.push((topic_index, partition_index));
                }
            }
        }
    }
    if !commits.is_empty() {
        let outcome = service
            .classic_offset_commit(
                &broker.group_host(),
                &group_id,
                request.member_id.as_str(),
                request.group_instance_id.as_deref(),
                request.generation_id_or_member_epoch,
                commits,
            )
            .await;
        match outcome {
            Ok(codes) => {
                for ((topic_index, partition_index), code) in sent.into_iter().zip(codes) {
                    set_commit_code(
                        &mut topics,
                        topic_index,
                        partition_index,
                        commit_partition_code(code),
                    );
                }
            }
            Err(error) => {
                let code = commit_error_code(&error);
                for (topic_index, partition_index) in sent {
                    set_commit_code(&mut topics, topic_index, partition_index, code);
                }
            }
        }
    }
    response.topics = topics;
    response
}

fn set_commit_code(
    topics: &mut [offset_commit_response::OffsetCommitResponseTopic],
    topic_index: usize,
    partition_index: usize,
    code: i16,
) {
    if let Some(entry) = topics
        .get_mut(topic_index)
        .and_then(|topic| topic.partitions.get_mut(partition_index))
    {
        entry.error_code = code;
    }
}

/// OffsetFetch (v1-v9; one group before v8, a batch of groups from v8).
pub async fn offset_fetch<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
                    .collect()
            });
            let (code, fetched) =
                fetch_group(broker, access, group.group_id.0.as_str(), topics).await;
            let mut answer = offset_fetch_response::OffsetFetchResponseGroup::default();
            answer.group_id = group.group_id;
            answer.error_code = code;
            answer.topics = fetched
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = offset_fetch_response::OffsetFetchResponseTopics::default();
                    topic.name = TopicName(text(name));
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(partition_index, offset, metadata, code)| {
                            let mut entry =
                                offset_fetch_response::OffsetFetchResponsePartitions::default();
                            entry.partition_index = partition_index;
                            entry.committed_offset = offset;
                            entry.metadata = Some(text(metadata));
                            entry.error_code = code;
                            entry
                        })
                        .collect();
                    topic
                })
                .collect();
            response.groups.push(answer);
        }
        return response;
    }
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.0.to_string(), topic.partition_indexes))
            .collect()
    });
    let (code, fetched) = fetch_group(broker, access, request.group_id.0.as_str(), topics).await;
    // v2+ carries a top-level error; v1 only per partition, so a coordinator error is put on
    // every partition asked for there (a denied group has none: v1's answer is empty).
    if version >= OFFSET_FETCH_ERROR_VERSION {
        response.error_code = code;
    }
    response.topics = fetched
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = offset_fetch_response::OffsetFetchResponseTopic::default();
            topic.name = TopicName(text(name));
            topic.partitions = partitions
                .into_iter()
                .map(|(partition_index, offset, metadata, partition_code)| {
                    let mut entry = offset_fetch_response::OffsetFetchResponsePartition::default();
                    entry.partition_index = partition_index;
                    entry.committed_offset = offset;
                    entry.metadata = Some(text(metadata));
                    entry.error_code = partition_code;
                    if version < OFFSET_FETCH_ERROR_VERSION && partition_code == 0 {
                        entry.error_code = code;
                    }
                    entry
                })
                .collect();
            topic
        })
        .collect();
    response
}

type FetchedTopics = Vec<(String, Vec<(i32, i64, String, i16)>)>;

/// One group's committed offsets: (error code, topics with (partition, offset or -1,
/// metadata, error code)). `topics` None asks for every committed offset of the group.
///
/// Authorization (Kafka's `handleOffsetFetchRequest`): Describe on the group (denied:
/// GROUP_AUTHORIZATION_FAILED and no topics), then Describe on each topic asked for, before
/// the coordinator is asked (a denied topic's partitions are TOPIC_AUTHORIZATION_FAILED
/// with offset -1, after the others); every committed offset is asked for with `topics`
/// None, and the topics the caller may not describe are left out, silently.
async fn fetch_group<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, FetchedTopics) {
    if !access.allows(AclOperation::Describe, ResourceType::Group, group_id) {
        return (ResponseError::GroupAuthorizationFailed.code(), Vec::new());
    }
    let mut describe = Decisions::new(access, AclOperation::Describe, ResourceType::Topic);
    let all_topics = topics.is_none();
    let (topics, denied) = match topics {
        None => (None, Vec::new()),
        Some(mut topics) => {
            let denied = describe.take_denied(&mut topics, |(name, _)| name.as_str());
            (Some(topics), denied)
        }
    };
    let denied: FetchedTopics = denied
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|partition| {
                    (
                        partition,
                        -1,
                        String::new(),
                        ResponseError::TopicAuthorizationFailed.code(),
                    )
                })
                .collect();
            (name, partitions)
        })
        .collect();
    let (code, mut fetched) = fetch_authorized(broker, group_id, topics).await;
    if all_topics {
        fetched.retain(|(name, _)| {
            access.allows_silently(AclOperation::Describe, ResourceType::Topic, name)
        });
    }
    fetched.extend(denied);
    (code, fetched)
}

/// [`fetch_group`] once authorized.
async fn fetch_authorized<D: Disk>(
    broker: &Broker<D>,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, FetchedTopics) {
    let service = match broker.coordinated_group_service(group_id).await {
        Ok(service) => service,
        Err(error) => {
            let code = coordinator_code(&error);
            let asked = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|partition| (partition, -1, String::new(), 0))
                        .collect();
                    (name, partitions)
                })
                .collect();
            return (code, asked);
        }
    };
    let native = service.offset_fetch(ledge_protocol::wire::OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics: topics.map(|topics| {
            topics
                .into_iter()
                .map(
                    |(topic, partitions)| ledge_protocol::wire::TopicPartitions {
                        topic,
                        // A negative partition cannot have a commit: it is asked as one that
                        // does not exist and answered -1.
                        partitions: partitions
                            .into_iter()
                            .map(|partition| u32::try_from(partition).unwrap_or(u32::MAX))
                            .collect(),
                    },
                )
                .collect()
        }),
    });
    let fetched = native
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|partition| {
                    (
                        i32::try_from(partition.partition).unwrap_or(-1),
                        partition.offset.unwrap_or(-1),
                        partition.metadata,
                        0,
                    )
                })
                .collect();
            (topic.name, partitions)
        })
        .collect();
    (0, fetched)
}

/// OffsetDelete (v0): deletes committed offsets of partitions the group does not consume.
pub async fn offset_delete<D: Disk>(
    broker: &Broker<D>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let group_id = request.group_id.0.to_string();
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            return response;
        }
    };
    let asked: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|topic| {
            (
                topic.name.0.to_string(),
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.partition_index)
                    .collect(),
            )
        })
        .collect();
    let partitions: Vec<(String, u32)> = asked
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .filter_map(|partition| u32::try_from(*partition).ok())
                .map(|partition| (topic.clone(), partition))
        })
        .collect();
    let codes = match service
        .delete_offsets(&broker.group_host(), &group_id, &partitions)
        .await
    {
        Ok(codes) => codes,
        Err(error) => {
            response.error_code = service_code(&error);
            return response;
        }
    };
    let mut codes = codes.into_iter();
    response.topics = asked
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = offset_delete_response::OffsetDeleteResponseTopic::default();
            topic.name = TopicName(text(name));
            topic.partitions = partitions
                .into_iter()
                .map(|partition_index| {
                    let mut entry =
                        offset_delete_response::OffsetDeleteResponsePartition::default();
                    entry.partition_index = partition_index;
                    entry.error_code = if partition_index < 0 {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        match codes.next().flatten() {
                            None => 0,
                            Some(OffsetDeleteRefusal::Subscribed) => {
                                ResponseError::GroupSubscribedToTopic.code()
                            }
                            Some(OffsetDeleteRefusal::UnknownPartition) => {
                                ResponseError::UnknownTopicOrPartition.code()
                            }
                        }
                    };
                    entry
                })
                .collect();
            topic
        })
        .collect();
    response
}

pub use crate::groups::service::OffsetDeleteRefusal;

/// FindCoordinator (v0-v6; a batch of keys from v4). Only group keys are served.
/// Transactions are out of scope: a transaction key is answered
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, Kafka's answer to a client that may not use that
/// transactional id and what InitProducerId and Produce answer here too, so a transactional
/// producer fails at once (a retriable code kept franz-go's retrying until its caller gave
/// up). A share-group key gets COORDINATOR_NOT_AVAILABLE; an unknown key type
/// INVALID_REQUEST, as Kafka does.
///
/// Authorization first, per key: Describe on the group (GROUP_AUTHORIZATION_FAILED) or on
/// the transactional id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); before v4 the one key's
/// answer is the whole response's.
pub async fn find_coordinator<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    addresses: &crate::kafka::handlers::NodeAddresses<'_>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let mut response = FindCoordinatorResponse::default();
    let keys = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut answers = Vec::with_capacity(keys.len());
    for key in keys {
        let mut answer = find_coordinator_response::Coordinator::default();
        answer.key = key.clone();
        let refusal = match request.key_type {
            KEY_TYPE_GROUP
                if !access.allows(AclOperation::Describe, ResourceType::Group, key.as_str()) =>
            {
                Some((
                    ResponseError::GroupAuthorizationFailed,
                    "Group authorization failed.",
                ))
            }
            KEY_TYPE_TRANSACTION
                if !access.allows(
                    AclOperation::Describe,
                    ResourceType::TransactionalId,
                    key.as_str(),
                ) =>
            {
                Some((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "Transactional Id authorization failed.",
                ))
            }
            KEY_TYPE_GROUP => None,
            KEY_TYPE_TRANSACTION => Some((
                ResponseError::TransactionalIdAuthorizationFailed,
                "transactions are not supported by this node",
            )),
            KEY_TYPE_SHARE => Some((
                ResponseError::CoordinatorNotAvailable,
                "share groups are not supported by this node",
            )),
            _ => Some((
                ResponseError::InvalidRequest,
                "unknown coordinator key type",
            )),
        };
        if let Some((error, message)) = refusal {
            answer.error_code = error.code();
            answer.error_message = Some(text(message));
            answer.node_id = BrokerId(-1);
            answer.port = -1;
        } else {
            // The broker names another node at its registered (QUIC) address; clients go
            // to its Kafka listener of the kind this request came in on.
            let found = broker
                .group_coordinator_address(key.as_str(), addresses.own)
                .await
                .map(|(node_id, host, port)| {
                    let registered = format!("{host}:{port}");
                    let kafka = addresses.kafka_address(broker.own_node_id(), node_id, &registered);
                    (node_id, kafka)
                });
            match found {
                Ok((node_id, Some((host, port)))) => {
                    answer.node_id = BrokerId(i32::try_from(node_id).unwrap_or(-1));
                    answer.host = host;
                    answer.port = port;
                }
                Ok((node_id, None)) => {
                    answer.error_code = ResponseError::CoordinatorNotAvailable.code();
                    answer.error_message = Some(text(format!(
                        "the group's coordinator, node {node_id}, has no Kafka listener of this kind (plaintext or TLS)"
                    )));
                    answer.node_id = BrokerId(-1);
                    answer.port = -1;
                }
                Err(error) => {
                    answer.error_code = coordinator_code(&error);
                    answer.error_message =
                        Some(text(crate::broker::client_text::client_text(&error)));
                    answer.node_id = BrokerId(-1);
                    answer.port = -1;
                }
            }
        }
        answers.push(answer);
    }
    if version >= 4 {
        response.coordinators = answers;
    } else if let Some(answer) = answers.pop() {
        response.error_code = answer.error_code;
        response.error_message = answer.error_message;
        response.node_id = answer.node_id;
        response.host = answer.host;
        response.port = answer.port;
    }
    response
}

/// ListGroups (v0-v5; states filter v4+, types filter v5+).
///
/// Only the groups the caller may describe are listed (all of them with Describe on the
/// cluster), the others left out silently: never an authorization error.
pub async fn list_groups<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    let every_group = cluster_allows_silently(access, AclOperation::Describe);
    let mut describe = Decisions::silent(access, AclOperation::Describe, ResourceType::Group);
    response.groups = broker
        .coordinated_groups_listing()
        .await
        .into_iter()
        .filter(|group| every_group || describe.allows(&group.group_id))
        .filter(|group| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|state| state.as_str().eq_ignore_ascii_case(&group.state))
        })
        .filter(|group| {
            request.types_filter.is_empty()
                || request
                    .types_filter
                    .iter()
                    .any(|kind| kind.as_str().eq_ignore_ascii_case(&group.group_type))
        })
        .map(|group| {
            let mut listed = list_groups_response::ListedGroup::default();
            listed.group_id = GroupId(text(group.group_id));
            listed.protocol_type = text(group.protocol_type);
            listed.group_state = text(group.state);
            listed.group_type = text(group.group_type);
            listed
        })
        .collect();
    response
}

/// DescribeGroups (v0-v6): classic groups as Kafka keeps them (opaque metadata and
/// assignments); KIP-848 groups in the consumer protocol, as Kafka 4 describes a consumer
/// group to a classic client; a group with only offsets as Empty; an unknown one Dead.
///
/// Describe on each group: a denied one is GROUP_AUTHORIZATION_FAILED with no state, members
/// or operations, listed first. v3+ with `include_authorized_operations`: each group
/// described without error carries the caller's operations on it.
pub async fn describe_groups<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    let (allowed, denied): (Vec<GroupId>, Vec<GroupId>) =
        request.groups.into_iter().partition(|group_id| {
            access.allows(
                AclOperation::Describe,
                ResourceType::Group,
                group_id.0.as_str(),
            )
        });
    for group_id in denied {
        let mut described = describe_groups_response::DescribedGroup::default();
        described.group_id = group_id;
        described.error_code = ResponseError::GroupAuthorizationFailed.code();
        response.groups.push(described);
    }
    let operations =
        version >= DESCRIBE_OPERATIONS_VERSION && request.include_authorized_operations;
    for group_id in allowed {
        let mut described = describe_groups_response::DescribedGroup::default();
        described.group_id = group_id.clone();
        match broker.coordinated_group_service(group_id.0.as_str()).await {
            Err(error) => {
                described.error_code = coordinator_code(&error);
                if version >= 6 {
                    described.error_message =
                        Some(text(crate::broker::client_text::client_text(&error)));
                }
            }
            Ok(service) => fill_described(&mut described, service, group_id.0.as_str(), version),
        }
        if operations && described.error_code == 0 {
            described.authorized_operations =
                authorized_operations(access, ResourceType::Group, group_id.0.as_str());
        }
        response.groups.push(described);
    }
    response
}

fn fill_described(
    described: &mut describe_groups_response::DescribedGroup,
    service: &GroupService,
    group_id: &str,
    version: i16,
) {
    match service.describe_any_group(group_id) {
        Some(DescribedAnyGroup::Classic(group)) => {
            described.group_state = text(group.state.name());
            described.protocol_type = text(group.protocol_type);
            described.protocol_data = text(group.protocol_name);
            described.members = group
                .members
                .into_iter()
                .map(|member| {
                    let mut entry = describe_groups_response::DescribedGroupMember::default();
                    entry.member_id = text(member.member_id);
                    entry.group_instance_id = member.instance_id.map(text);
                    entry.client_id = text(member.client_id);
                    entry.client_host = text(member.client_host);
                    entry.member_metadata = member.metadata;
                    entry.member_assignment = member.assignment;
                    entry
                })
                .collect();
        }
        Some(DescribedAnyGroup::Consumer(group)) => {
            described.group_state = text(group.state);
            described.protocol_type = text(CONSUMER_PROTOCOL_TYPE);
            described.protocol_data = text(group.assignor);
            described.members = group
                .members
                .into_iter()
                .map(|member| {
                    let mut entry = describe_groups_response::DescribedGroupMember::default();
                    entry.member_metadata = encode_subscription(&ConsumerSubscription {
                        topics: member.subscribed_topics,
                        owned: Default::default(),
                    });
                    entry.member_assignment = encode_assignment(&member.assignment);
                    entry.member_id = text(member.member_id);
                    entry.group_instance_id = member.instance_id.map(text);
                    entry.client_id = text(member.client_id);
                    entry
                })
                .collect();
        }
        Some(DescribedAnyGroup::OffsetsOnly) => {
            described.group_state = text("Empty");
        }
        None => {
            // Kafka describes a group it does not know as Dead with no error before v6, and
            // with GROUP_ID_NOT_FOUND from v6.
            described.group_state = text("Dead");
            if version >= 6 {
                described.error_code = ResponseError::GroupIdNotFound.code();
                described.error_message = Some(text(format!("group {group_id:?} does not exist")));
            }
        }
    }
}

/// DeleteGroups (v0-v2): empty groups and their committed offsets.
pub async fn delete_groups<D: Disk>(
    broker: &Broker<D>,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let mut result = delete_groups_response::DeletableGroupResult::default();
        result.group_id = group_id.clone();
        result.error_code = match broker.coordinated_group_service(group_id.0.as_str()).await {
            Err(error) => coordinator_code(&error),
            Ok(service) => match service
                .delete_group_checked(&broker.group_host(), group_id.0.as_str())
                .await
            {
                Ok(()) => 0,
                Err(error) => service_code(&error),
            },
        };
        response.results.push(result);
    }
    response
}

fn millis(value: i32) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Kafka's code for a coordinator lookup failure: both are retriable and make the client
/// find the coordinator again.
pub fn coordinator_code(error: &CoordinatorError) -> i16 {
    match error {
        CoordinatorError::NotCoordinator { .. } => ResponseError::NotCoordinator.code(),
        CoordinatorError::NotAvailable { .. } => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// Kafka's code for a classic-protocol refusal.
pub fn classic_code(error: &ClassicError) -> i16 {
    match error {
        ClassicError::InvalidGroupId(_) => ResponseError::InvalidGroupId,
        ClassicError::InconsistentGroupProtocol(_) => ResponseError::InconsistentGroupProtocol,
        ClassicError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        ClassicError::UnknownMember { .. } => ResponseError::UnknownMemberId,
        ClassicError::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
        ClassicError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        ClassicError::RebalanceInProgress(_) => ResponseError::RebalanceInProgress,
        ClassicError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
        ClassicError::GroupFull { .. } | ClassicError::TooManyGroups(_) => {
            ResponseError::GroupMaxSizeReached
        }
        ClassicError::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        // The group moved to another coordinator while the request waited.
        ClassicError::GroupRemoved(_) => ResponseError::NotCoordinator,
    }
    .code()
}

/// Kafka's code for a group service error, as a classic client must see it.
pub fn service_code(error: &GroupServiceError) -> i16 {
    match error {
        GroupServiceError::Classic(error) => return classic_code(error),
        GroupServiceError::Group(error) => match error {
            GroupError::InvalidGroupId(_) | GroupError::UnknownGroup(_) => {
                if matches!(error, GroupError::UnknownGroup(_)) {
                    ResponseError::GroupIdNotFound
                } else {
                    ResponseError::InvalidGroupId
                }
            }
            GroupError::InvalidMemberId(_) => ResponseError::InvalidRequest,
            GroupError::UnknownMember { .. } => ResponseError::UnknownMemberId,
            // A classic member of a KIP-848 group names its epoch as its generation.
            GroupError::FencedEpoch { .. } => ResponseError::IllegalGeneration,
            // A KIP-848 member's commit at another epoch than its current one.
            GroupError::StaleEpoch { .. } => ResponseError::StaleMemberEpoch,
            GroupError::InconsistentAssignor(_) => ResponseError::InconsistentGroupProtocol,
            GroupError::GroupFull { .. } | GroupError::TooManyGroups(_) => {
                ResponseError::GroupMaxSizeReached
            }
            GroupError::InvalidPattern { .. } => ResponseError::InvalidRegularExpression,
            GroupError::InvalidTimeout(_) => ResponseError::InvalidSessionTimeout,
            GroupError::NonEmptyGroup(_) => ResponseError::NonEmptyGroup,
        },
        // A transform's position group is closed to clients.
        GroupServiceError::TransformGroup { .. } => ResponseError::GroupAuthorizationFailed,
        GroupServiceError::MetadataTooLong { .. } => ResponseError::OffsetMetadataTooLarge,
        GroupServiceError::NotFound(_) => ResponseError::GroupIdNotFound,
        GroupServiceError::ClassicGroupInUse { .. } => ResponseError::InconsistentGroupProtocol,
        // As Kafka's group coordinator maps its log's errors: not the leader any more is
        // NOT_COORDINATOR; anything else the client retries after finding the coordinator.
        GroupServiceError::OffsetsLog(OffsetsLogError::NotLeader) => ResponseError::NotCoordinator,
        GroupServiceError::OffsetsLog(_) => ResponseError::CoordinatorNotAvailable,
    }
    .code()
}

/// A commit refused as a whole. A commit from outside a group that has members is
/// UNKNOWN_MEMBER_ID in Kafka, not NON_EMPTY_GROUP.
fn commit_error_code(error: &GroupServiceError) -> i16 {
    match error {
        GroupServiceError::Group(GroupError::NonEmptyGroup(_)) => {
            ResponseError::UnknownMemberId.code()
        }
        other => service_code(other),
    }
}

/// A partition of a commit refused alone.
fn commit_partition_code(code: ErrorCode) -> i16 {
    match code {
        ErrorCode::None => 0,
        ErrorCode::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition.code(),
        // A classic member of a KIP-848 group committing a partition it does not hold: the
        // answer Kafka gives a stale classic member, which makes it rejoin.
        ErrorCode::PartitionNotAssigned => ResponseError::IllegalGeneration.code(),
        // A negative offset.
        ErrorCode::InvalidRequest => ResponseError::InvalidCommitOffsetSize.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

#[cfg(test)]
mod tests;
