//! KIP-848 over the Kafka wire: ConsumerGroupHeartbeat (68) and ConsumerGroupDescribe (69),
//! what Kafka 4 consumers with `group.protocol=consumer` and the admin client's
//! `describeConsumerGroups` use.
//!
//! Both are answered by the node's own KIP-848 coordinator (`groups/coordinator.rs`), the one
//! native QUIC consumers join, through the group service's Kafka entry points
//! (`groups/service/kafka_consumer.rs`): a Kafka member, a QUIC member and a classic
//! (JoinGroup) member can be in one group. This file only checks the request as Kafka's
//! `GroupMetadataManager` does (INVALID_REQUEST with Kafka's own messages), translates topic
//! ids to names and back (KIP-848 names topics by id only), and maps the service's errors to
//! Kafka's codes in [`heartbeat_code`], the one place for them.
//!
//! Authorization (Kafka 4.0, with KAFKA-18813): ConsumerGroupHeartbeat needs Read on the
//! group, then Describe on every topic subscribed to by name (any denied: the whole request
//! is TOPIC_AUTHORIZATION_FAILED); ConsumerGroupDescribe needs Describe on each group, then
//! Describe on every topic in its members' assignments (any denied: that group is
//! TOPIC_AUTHORIZATION_FAILED, its description withheld). A regex subscription matches only
//! the topics the member's principal may Describe (`groups/coordinator.rs`'s `TopicFilter`,
//! judged with the ACLs of the member's latest heartbeat), as Kafka resolves regexes with
//! the member's authorization context.

use std::collections::BTreeSet;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName, consumer_group_describe_response,
    consumer_group_heartbeat_response,
};
use kafka_protocol::protocol::StrBytes;

use super::groups::{coordinator_code, service_code};
use super::handlers::{TopicIds, kafka_topic_id, text};
use crate::broker::Broker;
use crate::groups::assignor::{Assignor, TopicPartition};
use crate::groups::coordinator::GroupError;
use crate::groups::service::{GroupServiceError, KafkaConsumerHeartbeat};
use crate::kafka::authorize::{Decisions, authorized_operations};
use crate::security::access::Access;
use crate::security::acl::{AclOperation, ResourceType};
use crate::storage::Disk;

/// The member type ConsumerGroupDescribe v1 gives a member that joined with JoinGroup.
const MEMBER_TYPE_CLASSIC: i8 = 0;
/// The member type of a KIP-848 member (ConsumerGroupHeartbeat, or a native QUIC member).
const MEMBER_TYPE_CONSUMER: i8 = 1;
/// The first ConsumerGroupHeartbeat version whose members choose their own id (KIP-1082).
const CLIENT_MEMBER_ID_VERSION: i16 = 1;

/// The server assignors a member may name: Kafka's two, and the node's other names.
const SERVER_ASSIGNORS: &str = "uniform, range, cooperative-sticky, round-robin";

impl TopicIds {
    /// Partitions named by topic id as (name, partition); ids of unknown topics (deleted
    /// meanwhile) and negative partitions are left out: nobody can own them.
    fn partitions_by_name<'a>(
        &self,
        topics: impl IntoIterator<Item = (&'a uuid::Uuid, &'a [i32])>,
    ) -> BTreeSet<TopicPartition> {
        topics
            .into_iter()
            .filter_map(|(id, partitions)| self.by_id.get(id).map(|name| (name, partitions)))
            .flat_map(|(name, partitions)| {
                partitions
                    .iter()
                    .filter_map(|partition| u32::try_from(*partition).ok())
                    .map(|partition| (name.clone(), partition))
            })
            .collect()
    }

    /// Partitions grouped by topic as (id, name, partitions).
    fn grouped(
        &self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Vec<(uuid::Uuid, String, Vec<i32>)> {
        let mut grouped: Vec<(uuid::Uuid, String, Vec<i32>)> = Vec::new();
        for (topic, partition) in partitions {
            let partition = i32::try_from(*partition).unwrap_or(i32::MAX);
            match grouped.last_mut() {
                Some((_, last, list)) if last == topic => list.push(partition),
                _ => {
                    let id = self
                        .by_name
                        .get(topic)
                        .copied()
                        .unwrap_or_else(|| kafka_topic_id("", topic));
                    grouped.push((id, topic.clone(), vec![partition]));
                }
            }
        }
        grouped
    }
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`: the request's shape, checked
/// before the group is looked at; the message is Kafka's.
pub fn check_heartbeat(
    request: &ConsumerGroupHeartbeatRequest,
    version: i16,
) -> Result<(), (ResponseError, String)> {
    let invalid = |message: &str| Err((ResponseError::InvalidRequest, message.to_string()));
    let blank = |value: Option<&StrBytes>| value.is_some_and(|value| value.trim().is_empty());
    if request.group_id.0.trim().is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if blank(request.instance_id.as_ref()) {
        return invalid("InstanceId can't be empty.");
    }
    if blank(request.rack_id.as_ref()) {
        return invalid("RackId can't be empty.");
    }
    if blank(request.subscribed_topic_regex.as_ref()) {
        return invalid("SubscribedTopicRegex must not be empty.");
    }
    let member_id_blank = request.member_id.trim().is_empty();
    if version >= CLIENT_MEMBER_ID_VERSION && member_id_blank {
        return invalid("MemberId can't be empty.");
    }
    match request.member_epoch {
        epoch if epoch > 0 || epoch == -1 => {
            if member_id_blank {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if request.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if request
                .topic_partitions
                .as_ref()
                .is_none_or(|owned| !owned.is_empty())
            {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if request.subscribed_topic_names.is_none() && request.subscribed_topic_regex.is_none()
            {
                return invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
        }
        -2 => {
            if member_id_blank {
                return invalid("MemberId can't be empty.");
            }
            if request.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if request.rebalance_timeout_ms < -1 {
        return invalid("RebalanceTimeoutMs must be -1 or a duration.");
    }
    if let Some(assignor) = &request.server_assignor
        && Assignor::from_name(assignor).is_none()
    {
        return Err((
            ResponseError::UnsupportedAssignor,
            format!(
                "ServerAssignor {assignor} is not supported. Supported assignors: {SERVER_ASSIGNORS}."
            ),
        ));
    }
    Ok(())
}

/// ConsumerGroupHeartbeat (v0-v1): join, heartbeat, acknowledge an assignment, leave.
pub async fn consumer_group_heartbeat<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    client_id: &str,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
) -> ConsumerGroupHeartbeatResponse {
    let mut response = ConsumerGroupHeartbeatResponse::default();
    if !access.allows(
        AclOperation::Read,
        ResourceType::Group,
        request.group_id.0.as_str(),
    ) {
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    if let Some(names) = &request.subscribed_topic_names {
        let mut describe = Decisions::new(access, AclOperation::Describe, ResourceType::Topic);
        // Every name is checked (each denial logged), as Kafka's `filterByAuthorized`.
        let denied = names
            .iter()
            .filter(|name| !describe.allows(name.0.as_str()))
            .count();
        if denied > 0 {
            response.error_code = ResponseError::TopicAuthorizationFailed.code();
            return response;
        }
    }
    if let Err((error, message)) = check_heartbeat(&request, version) {
        response.error_code = error.code();
        response.error_message = Some(text(message));
        return response;
    }
    let group_id = request.group_id.0.to_string();
    let service = match broker.coordinated_group_service(&group_id).await {
        Ok(service) => service,
        Err(error) => {
            response.error_code = coordinator_code(&error);
            response.error_message = Some(text(crate::broker::client_text::client_text(&error)));
            return response;
        }
    };
    let topics = TopicIds::of(broker).await;
    let heartbeat = KafkaConsumerHeartbeat {
        group_id,
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|id| id.to_string()),
        client_id: client_id.to_string(),
        rebalance_timeout: u64::try_from(request.rebalance_timeout_ms)
            .ok()
            .map(Duration::from_millis),
        subscribed_topics: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|name| name.0.to_string()).collect()),
        subscribed_pattern: request
            .subscribed_topic_regex
            .map(|regex| regex.to_string()),
        assignor: request.server_assignor.map(|name| name.to_string()),
        owned: request.topic_partitions.map(|owned| {
            topics.partitions_by_name(
                owned
                    .iter()
                    .map(|topic| (&topic.topic_id, topic.partitions.as_slice())),
            )
        }),
    };
    let pattern_filter = crate::broker::authorize::describable_topics(access);
    match service.kafka_consumer_heartbeat(&broker.group_host(), heartbeat, pattern_filter) {
        Ok(reply) => {
            response.member_id = Some(text(reply.member_id));
            response.member_epoch = reply.member_epoch;
            response.heartbeat_interval_ms =
                i32::try_from(reply.heartbeat_interval.as_millis()).unwrap_or(i32::MAX);
            response.assignment = reply.assignment.map(|assignment| {
                let mut answer = consumer_group_heartbeat_response::Assignment::default();
                answer.topic_partitions = topics
                    .grouped(&assignment)
                    .into_iter()
                    .map(|(topic_id, _, partitions)| {
                        let mut entry =
                            consumer_group_heartbeat_response::TopicPartitions::default();
                        entry.topic_id = topic_id;
                        entry.partitions = partitions;
                        entry
                    })
                    .collect();
                answer
            });
        }
        Err(error) => {
            response.error_code = heartbeat_code(&error);
            response.error_message = Some(text(crate::broker::client_text::client_text(&error)));
        }
    }
    response
}

/// ConsumerGroupDescribe (v0-v1): KIP-848 groups, their members (QUIC, Kafka and classic
/// ones), current and target assignments. Anything else is GROUP_ID_NOT_FOUND, as on Kafka,
/// and the admin client then asks DescribeGroups.
pub async fn consumer_group_describe<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let mut response = ConsumerGroupDescribeResponse::default();
    let (allowed, denied): (Vec<_>, Vec<_>) = request.group_ids.into_iter().partition(|group_id| {
        access.allows(
            AclOperation::Describe,
            ResourceType::Group,
            group_id.0.as_str(),
        )
    });
    for group_id in denied {
        let mut described = consumer_group_describe_response::DescribedGroup::default();
        described.group_id = group_id;
        described.error_code = ResponseError::GroupAuthorizationFailed.code();
        described.error_message = Some(text("Group authorization failed."));
        response.groups.push(described);
    }
    let mut describe_topics = Decisions::new(access, AclOperation::Describe, ResourceType::Topic);
    let topics = TopicIds::of(broker).await;
    for group_id in allowed {
        let mut described = consumer_group_describe_response::DescribedGroup::default();
        described.group_id = group_id.clone();
        let service = match broker.coordinated_group_service(group_id.0.as_str()).await {
            Ok(service) => service,
            Err(error) => {
                described.error_code = coordinator_code(&error);
                described.error_message =
                    Some(text(crate::broker::client_text::client_text(&error)));
                response.groups.push(described);
                continue;
            }
        };
        let Some(view) = service.consumer_group_view(group_id.0.as_str()) else {
            described.error_code = ResponseError::GroupIdNotFound.code();
            described.error_message = Some(text(format!(
                "Group {} is not a consumer group.",
                group_id.0.as_str()
            )));
            response.groups.push(described);
            continue;
        };
        let group = view.group;
        let assigned_denied = group
            .members
            .iter()
            .flat_map(|member| member.assignment.iter().chain(member.target.iter()))
            .map(|(topic, _)| topic.clone())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .filter(|topic| !describe_topics.allows(topic))
            .count();
        if assigned_denied > 0 {
            described.error_code = ResponseError::TopicAuthorizationFailed.code();
            described.error_message = Some(text(
                "The group has topics in its assignment that the caller may not describe.",
            ));
            response.groups.push(described);
            continue;
        }
        if request.include_authorized_operations {
            described.authorized_operations =
                authorized_operations(access, ResourceType::Group, group_id.0.as_str());
        }
        described.group_state = text(group.state);
        described.group_epoch = group.group_epoch;
        described.assignment_epoch = group.assignment_epoch;
        described.assignor_name = text(group.assignor);
        described.members = group
            .members
            .into_iter()
            .map(|member| {
                let mut entry = consumer_group_describe_response::Member::default();
                if version >= 1 {
                    entry.member_type = if view.classic_members.contains(&member.member_id) {
                        MEMBER_TYPE_CLASSIC
                    } else {
                        MEMBER_TYPE_CONSUMER
                    };
                }
                entry.member_id = text(member.member_id);
                entry.instance_id = member.instance_id.map(text);
                entry.member_epoch = member.member_epoch;
                entry.client_id = text(member.client_id);
                entry.subscribed_topic_names = member
                    .subscribed_topics
                    .into_iter()
                    .map(|topic| TopicName(text(topic)))
                    .collect();
                entry.subscribed_topic_regex = member.subscribed_pattern.map(text);
                entry.assignment = describe_assignment(&topics, &member.assignment);
                entry.target_assignment = describe_assignment(&topics, &member.target);
                entry
            })
            .collect();
        response.groups.push(described);
    }
    response
}

fn describe_assignment(
    topics: &TopicIds,
    partitions: &BTreeSet<TopicPartition>,
) -> consumer_group_describe_response::Assignment {
    let mut assignment = consumer_group_describe_response::Assignment::default();
    assignment.topic_partitions = topics
        .grouped(partitions)
        .into_iter()
        .map(|(topic_id, name, partitions)| {
            let mut entry = consumer_group_describe_response::TopicPartitions::default();
            entry.topic_id = topic_id;
            entry.topic_name = TopicName(text(name));
            entry.partitions = partitions;
            entry
        })
        .collect();
    assignment
}

/// Kafka's code for a refused ConsumerGroupHeartbeat, as Kafka 4's coordinator answers it
/// (the Java consumer rejoins on UNKNOWN_MEMBER_ID and FENCED_MEMBER_EPOCH, and fails on
/// the rest).
pub fn heartbeat_code(error: &GroupServiceError) -> i16 {
    match error {
        GroupServiceError::Group(error) => match error {
            GroupError::UnknownMember { .. } => ResponseError::UnknownMemberId,
            GroupError::FencedEpoch { .. } => ResponseError::FencedMemberEpoch,
            // Kafka lets members name different server assignors; the node's groups use
            // one, so a member asking for another is refused as an assignor Kafka lacks.
            GroupError::InconsistentAssignor(_) => ResponseError::UnsupportedAssignor,
            GroupError::InvalidPattern { .. } => ResponseError::InvalidRegularExpression,
            // A rebalance timeout over `groups.rebalance_timeout_max_ms`.
            GroupError::InvalidTimeout(_) | GroupError::InvalidMemberId(_) => {
                ResponseError::InvalidRequest
            }
            _ => return service_code(&GroupServiceError::Group(error.clone())),
        }
        .code(),
        // Kafka converts a classic group to a consumer group when it can; the node keeps it
        // classic while it has members, which Kafka answers this way when it cannot.
        GroupServiceError::ClassicGroupInUse { .. } => ResponseError::GroupIdNotFound.code(),
        other => service_code(other),
    }
}

#[cfg(test)]
mod tests;
