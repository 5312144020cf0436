//! Authorization on the Kafka listener: which operation on which resource each Kafka API
//! checks, in which order, and the shape of its answer when one is denied, as Kafka 4.x's
//! `KafkaApis`/`ControllerApis` (docs/research/kafka-authorization-per-api.md is the table
//! this follows).
//!
//! Every request carries its caller's [`Access`] (made once per request from the
//! connection's identity). The checks are made here and in the Kafka handlers, before the
//! broker is asked, never inside broker methods (internal callers stay unchecked). Three
//! rules hold throughout:
//! - Authorization comes before existence: a topic the caller may not see is answered
//!   TOPIC_AUTHORIZATION_FAILED whether or not it exists, and is never sent to the broker.
//! - "All" listings (Metadata for all topics, ListGroups, OffsetFetch of every topic) leave
//!   out what the caller may not describe, without an error and without an audit line
//!   ([`Access::allows_silently`]).
//! - A name asked for several times is checked (and a denial logged) once ([`Decisions`]).
//!
//! The wrappers below (`list_offsets`, `delete_records`...) take the denied items out of a
//! request, have the handler answer the rest, and append the denied items' answers, as
//! Kafka appends its unauthorized results after the authorized ones.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    DeleteGroupsRequest, DeleteGroupsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, alter_configs_response, create_partitions_response,
    delete_groups_response, delete_records_response, describe_configs_response,
    incremental_alter_configs_response, list_offsets_response, offset_commit_response,
    offset_delete_response, offset_for_leader_epoch_response,
};
use kafka_protocol::protocol::StrBytes;

use super::groups;
use super::handlers::{self, text};
use crate::broker::Broker;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::storage::Disk;

/// Kafka's default messages of the authorization errors (`Errors.*.message()`).
pub const TOPIC_DENIED: &str = "Topic authorization failed.";
/// See [`TOPIC_DENIED`].
pub const GROUP_DENIED: &str = "Group authorization failed.";
/// See [`TOPIC_DENIED`].
pub const CLUSTER_DENIED: &str = "Cluster authorization failed.";

/// Kafka's resource type codes in DescribeConfigs/AlterConfigs/IncrementalAlterConfigs.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;
const CONFIG_CLIENT_METRICS: i8 = 16;
const CONFIG_GROUP: i8 = 32;

/// The operations Kafka reports in an `authorized_operations` bitfield for a resource
/// type (`AclEntry.supportedOperations`).
fn supported_operations(resource_type: ResourceType) -> &'static [AclOperation] {
    use AclOperation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
        ResourceType::Module | ResourceType::Transform => &[],
    }
}

/// Kafka's `authorized_operations` bitfield of `(resource_type, name)` for the caller: bit
/// `1 << code` for each supported operation the caller may perform, each decided without an
/// audit line (Kafka's `logIfAllowed = logIfDenied = false`). With authorization off, every
/// supported operation (Topic 3576, Group 3400, Cluster 8096).
pub fn authorized_operations(access: &Access, resource_type: ResourceType, name: &str) -> i32 {
    supported_operations(resource_type)
        .iter()
        .filter(|operation| access.allows_silently(**operation, resource_type, name))
        .fold(0i32, |bits, operation| bits | (1i32 << operation.code()))
}

/// One operation on one resource type, decided once per distinct name: Kafka's
/// `filterByAuthorized` (one Action per name, whatever the number of items naming it).
pub struct Decisions<'a> {
    access: &'a Access,
    operation: AclOperation,
    resource_type: ResourceType,
    /// Decide without audit lines (listings).
    silent: bool,
    decided: BTreeMap<String, bool>,
}

impl<'a> Decisions<'a> {
    /// Decisions for `operation` on `resource_type`, a denial logged once per name.
    pub fn new(access: &'a Access, operation: AclOperation, resource_type: ResourceType) -> Self {
        Self {
            access,
            operation,
            resource_type,
            silent: false,
            decided: BTreeMap::new(),
        }
    }

    /// Decisions that log nothing ("all" listings, which leave out what is denied).
    pub fn silent(
        access: &'a Access,
        operation: AclOperation,
        resource_type: ResourceType,
    ) -> Self {
        Self {
            silent: true,
            ..Self::new(access, operation, resource_type)
        }
    }

    /// Whether the caller may perform the operation on `name`.
    pub fn allows(&mut self, name: &str) -> bool {
        if let Some(decided) = self.decided.get(name) {
            return *decided;
        }
        let allowed = if self.silent {
            self.access
                .allows_silently(self.operation, self.resource_type, name)
        } else {
            self.access.allows(self.operation, self.resource_type, name)
        };
        self.decided.insert(name.to_owned(), allowed);
        allowed
    }

    /// Takes out of `items` those whose name the caller may not use, in order.
    pub fn take_denied<T>(&mut self, items: &mut Vec<T>, name: impl Fn(&T) -> &str) -> Vec<T> {
        let (allowed, denied) = std::mem::take(items)
            .into_iter()
            .partition(|item| self.allows(name(item)));
        *items = allowed;
        denied
    }
}

/// Whether the caller may perform `operation` on the cluster (a denial logged).
pub fn cluster_allows(access: &Access, operation: AclOperation) -> bool {
    access.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
}

/// Whether the caller may perform `operation` on the cluster, without an audit line (the
/// cluster-wide shortcut Kafka tries before per-resource checks, `logIfDenied = false`).
pub fn cluster_allows_silently(access: &Access, operation: AclOperation) -> bool {
    access.allows_silently(operation, ResourceType::Cluster, CLUSTER_NAME)
}

/// The text of a change's outcome for [`Access::record_change`]: `Ok` for code 0, else the
/// message (or the code's name).
pub fn change_outcome(code: i16, message: Option<&StrBytes>) -> Result<(), String> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code)
        .map_or_else(|| format!("error {code}"), |error| format!("{error:?}"));
    Err(match message {
        Some(message) if !message.is_empty() => format!("{name}: {}", message.as_str()),
        _ => name,
    })
}

/// Records one administrative change (see [`Access::record_change`]).
pub fn record(
    access: &Access,
    action: &str,
    resource_type: ResourceType,
    name: &str,
    outcome: Result<(), String>,
) {
    access.record_change(
        action,
        resource_type,
        name,
        outcome.as_ref().map(|_| ()).map_err(String::as_str),
    );
}

/// ListOffsets: Describe on each topic; a denied topic's partitions are
/// TOPIC_AUTHORIZATION_FAILED with timestamp and offset -1, after the others.
pub async fn list_offsets<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let denied = Decisions::new(access, AclOperation::Describe, ResourceType::Topic)
        .take_denied(&mut request.topics, |topic| topic.name.0.as_str());
    let mut response = if request.topics.is_empty() {
        ListOffsetsResponse::default()
    } else {
        handlers::fetch::list_offsets(broker, request, version).await
    };
    response.topics.extend(denied.into_iter().map(|topic| {
        let mut answer = list_offsets_response::ListOffsetsTopicResponse::default();
        answer.name = topic.name;
        answer.partitions = topic
            .partitions
            .into_iter()
            .map(|partition| {
                let mut entry = list_offsets_response::ListOffsetsPartitionResponse::default();
                entry.partition_index = partition.partition_index;
                entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                entry.timestamp = -1;
                entry.offset = -1;
                entry.leader_epoch = -1;
                entry
            })
            .collect();
        answer
    }));
    response
}

/// OffsetForLeaderEpoch: ClusterAction on the cluster (a follower; not logged when denied),
/// else Describe on each topic (a consumer validating its position); a denied topic's
/// partitions are TOPIC_AUTHORIZATION_FAILED, after the others.
pub async fn offset_for_leader_epoch<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let denied = if cluster_allows_silently(access, AclOperation::ClusterAction) {
        Vec::new()
    } else {
        Decisions::new(access, AclOperation::Describe, ResourceType::Topic)
            .take_denied(&mut request.topics, |topic| topic.topic.0.as_str())
    };
    let mut response = handlers::log_edges::offset_for_leader_epoch(broker, request).await;
    response.topics.extend(denied.into_iter().map(|topic| {
        let mut answer = offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
        answer.topic = topic.topic;
        answer.partitions = topic
            .partitions
            .into_iter()
            .map(|partition| {
                let mut entry = offset_for_leader_epoch_response::EpochEndOffset::default();
                entry.partition = partition.partition;
                entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                entry.leader_epoch = handlers::log_edges::UNDEFINED_EPOCH;
                entry.end_offset = handlers::log_edges::UNDEFINED_EPOCH_OFFSET;
                entry
            })
            .collect();
        answer
    }));
    response
}

/// DeleteRecords: Delete on each topic; a denied topic's partitions are
/// TOPIC_AUTHORIZATION_FAILED with low watermark -1, after the others. Each topic whose
/// records were deleted (or not) is a recorded change.
pub async fn delete_records<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let denied = Decisions::new(access, AclOperation::Delete, ResourceType::Topic)
        .take_denied(&mut request.topics, |topic| topic.name.0.as_str());
    let mut response = handlers::log_edges::delete_records(broker, request).await;
    for topic in &response.topics {
        let failed = topic
            .partitions
            .iter()
            .find(|partition| partition.error_code != 0);
        let outcome = failed.map_or(Ok(()), |partition| {
            change_outcome(partition.error_code, None)
        });
        record(
            access,
            "DeleteRecords",
            ResourceType::Topic,
            topic.name.0.as_str(),
            outcome,
        );
    }
    response.topics.extend(denied.into_iter().map(|topic| {
        let mut answer = delete_records_response::DeleteRecordsTopicResult::default();
        answer.name = topic.name;
        answer.partitions = topic
            .partitions
            .into_iter()
            .map(|partition| {
                let mut entry = delete_records_response::DeleteRecordsPartitionResult::default();
                entry.partition_index = partition.partition_index;
                entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                entry.low_watermark = -1;
                entry
            })
            .collect();
        answer
    }));
    response
}

/// CreatePartitions: Alter on each topic; a denied topic is TOPIC_AUTHORIZATION_FAILED
/// (no message), after the others, never sent to the broker.
pub async fn create_partitions<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let denied = Decisions::new(access, AclOperation::Alter, ResourceType::Topic)
        .take_denied(&mut request.topics, |topic| topic.name.0.as_str());
    let validate_only = request.validate_only;
    let mut response = handlers::topics::create_partitions(broker, request).await;
    if !validate_only {
        for result in &response.results {
            record(
                access,
                "CreatePartitions",
                ResourceType::Topic,
                result.name.0.as_str(),
                change_outcome(result.error_code, result.error_message.as_ref()),
            );
        }
    }
    response.results.extend(denied.into_iter().map(|topic| {
        let mut result = create_partitions_response::CreatePartitionsTopicResult::default();
        result.name = topic.name;
        result.error_code = ResponseError::TopicAuthorizationFailed.code();
        result.error_message = None;
        result
    }));
    response
}

/// The resource a config request names, as Kafka's `ConfigHelper`/`ControllerApis`
/// authorize it: broker, broker logger and client metrics resources on the cluster,
/// topics and groups by name. `None`: a type Kafka refuses (left to the handler).
fn config_resource(resource_type: i8) -> Option<(ResourceType, i16, &'static str)> {
    match resource_type {
        CONFIG_TOPIC => Some((
            ResourceType::Topic,
            ResponseError::TopicAuthorizationFailed.code(),
            TOPIC_DENIED,
        )),
        CONFIG_GROUP => Some((
            ResourceType::Group,
            ResponseError::GroupAuthorizationFailed.code(),
            GROUP_DENIED,
        )),
        CONFIG_BROKER | CONFIG_BROKER_LOGGER | CONFIG_CLIENT_METRICS => Some((
            ResourceType::Cluster,
            ResponseError::ClusterAuthorizationFailed.code(),
            CLUSTER_DENIED,
        )),
        _ => None,
    }
}

/// Splits config resources into those the caller may act on with `operation` and the
/// denied ones, each with its error code and message.
fn split_config_resources<T>(
    access: &Access,
    operation: AclOperation,
    resources: &mut Vec<T>,
    kind: impl Fn(&T) -> (i8, &str),
) -> Vec<(T, i16, &'static str)> {
    let mut topics = Decisions::new(access, operation, ResourceType::Topic);
    let mut groups = Decisions::new(access, operation, ResourceType::Group);
    let mut cluster = Decisions::new(access, operation, ResourceType::Cluster);
    let mut denied = Vec::new();
    let mut allowed = Vec::new();
    for resource in std::mem::take(resources) {
        let (resource_type, name) = kind(&resource);
        let verdict = config_resource(resource_type).map(|(kind, code, message)| {
            let allows = match kind {
                ResourceType::Topic => topics.allows(name),
                ResourceType::Group => groups.allows(name),
                _ => cluster.allows(CLUSTER_NAME),
            };
            (allows, code, message)
        });
        match verdict {
            Some((false, code, message)) => denied.push((resource, code, message)),
            _ => allowed.push(resource),
        }
    }
    *resources = allowed;
    denied
}

/// The resource type and name an altered config resource is recorded under.
fn config_change_resource(resource_type: i8, name: &str) -> (ResourceType, &str) {
    match config_resource(resource_type) {
        Some((ResourceType::Topic, _, _)) => (ResourceType::Topic, name),
        Some((ResourceType::Group, _, _)) => (ResourceType::Group, name),
        _ => (ResourceType::Cluster, CLUSTER_NAME),
    }
}

/// DescribeConfigs: DescribeConfigs on each resource (the cluster for broker resources);
/// a denied one is CLUSTER/TOPIC/GROUP_AUTHORIZATION_FAILED with no configs, after the
/// others, whether or not it exists.
pub async fn describe_configs<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let denied = split_config_resources(
        access,
        AclOperation::DescribeConfigs,
        &mut request.resources,
        |resource| (resource.resource_type, resource.resource_name.as_str()),
    );
    let mut response = handlers::configs::describe_configs(broker, request).await;
    response
        .results
        .extend(denied.into_iter().map(|(resource, code, message)| {
            let mut result = describe_configs_response::DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            result.error_code = code;
            result.error_message = Some(text(message));
            result
        }));
    response
}

/// AlterConfigs: AlterConfigs on each resource (the cluster for broker resources); a denied
/// one is answered as DescribeConfigs answers it. Each resource altered is a recorded change.
pub async fn alter_configs<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let denied = split_config_resources(
        access,
        AclOperation::AlterConfigs,
        &mut request.resources,
        |resource| (resource.resource_type, resource.resource_name.as_str()),
    );
    let validate_only = request.validate_only;
    let mut response = handlers::configs::alter_configs(broker, request).await;
    if !validate_only {
        for result in &response.responses {
            let (kind, name) =
                config_change_resource(result.resource_type, result.resource_name.as_str());
            record(
                access,
                "AlterConfigs",
                kind,
                name,
                change_outcome(result.error_code, result.error_message.as_ref()),
            );
        }
    }
    response
        .responses
        .extend(denied.into_iter().map(|(resource, code, message)| {
            let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            result.error_code = code;
            result.error_message = Some(text(message));
            result
        }));
    response
}

/// IncrementalAlterConfigs: as [`alter_configs`].
pub async fn incremental_alter_configs<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let denied = split_config_resources(
        access,
        AclOperation::AlterConfigs,
        &mut request.resources,
        |resource| (resource.resource_type, resource.resource_name.as_str()),
    );
    let validate_only = request.validate_only;
    let mut response = handlers::configs::incremental_alter_configs(broker, request).await;
    if !validate_only {
        for result in &response.responses {
            let (kind, name) =
                config_change_resource(result.resource_type, result.resource_name.as_str());
            record(
                access,
                "IncrementalAlterConfigs",
                kind,
                name,
                change_outcome(result.error_code, result.error_message.as_ref()),
            );
        }
    }
    response
        .responses
        .extend(denied.into_iter().map(|(resource, code, message)| {
            let mut result =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name;
            result.error_code = code;
            result.error_message = Some(text(message));
            result
        }));
    response
}

/// OffsetCommit: Read on the group (denied: every partition GROUP_AUTHORIZATION_FAILED, the
/// response having no top-level error), then Read on each topic (denied: its partitions
/// TOPIC_AUTHORIZATION_FAILED, after the others, before existence). A commit from outside
/// the group (no member id, generation -1: an admin tool resetting offsets) is a recorded
/// change of the group.
pub async fn offset_commit<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let answer =
        |topics: Vec<kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic>,
         code: i16| {
            topics
                .into_iter()
                .map(|topic| {
                    let mut answer = offset_commit_response::OffsetCommitResponseTopic::default();
                    answer.name = topic.name;
                    answer.partitions = topic
                        .partitions
                        .into_iter()
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
    if !access.allows(AclOperation::Read, ResourceType::Group, &group_id) {
        let mut response = OffsetCommitResponse::default();
        response.topics = answer(
            request.topics,
            ResponseError::GroupAuthorizationFailed.code(),
        );
        return response;
    }
    let denied = Decisions::new(access, AclOperation::Read, ResourceType::Topic)
        .take_denied(&mut request.topics, |topic| topic.name.0.as_str());
    let from_outside = request.member_id.is_empty() && request.generation_id_or_member_epoch < 0;
    let mut response = groups::offset_commit(broker, request).await;
    if from_outside {
        let failed = response
            .topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .find(|partition| partition.error_code != 0);
        let outcome = failed.map_or(Ok(()), |partition| {
            change_outcome(partition.error_code, None)
        });
        record(
            access,
            "OffsetCommit",
            ResourceType::Group,
            &group_id,
            outcome,
        );
    }
    response.topics.extend(answer(
        denied,
        ResponseError::TopicAuthorizationFailed.code(),
    ));
    response
}

/// OffsetDelete: Delete on the group (denied: top-level GROUP_AUTHORIZATION_FAILED), then
/// Read (not Delete) on each topic (denied: its partitions TOPIC_AUTHORIZATION_FAILED, after
/// the others). The group's offsets deleted are a recorded change.
pub async fn offset_delete<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    if !access.allows(AclOperation::Delete, ResourceType::Group, &group_id) {
        let mut response = OffsetDeleteResponse::default();
        response.error_code = ResponseError::GroupAuthorizationFailed.code();
        return response;
    }
    let denied = Decisions::new(access, AclOperation::Read, ResourceType::Topic)
        .take_denied(&mut request.topics, |topic| topic.name.0.as_str());
    let mut response = groups::offset_delete(broker, request).await;
    let failed = response
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| partition.error_code)
        .find(|code| *code != 0);
    let outcome = match (response.error_code, failed) {
        (0, None) => Ok(()),
        (0, Some(code)) | (code, _) => change_outcome(code, None),
    };
    record(
        access,
        "OffsetDelete",
        ResourceType::Group,
        &group_id,
        outcome,
    );
    if response.error_code == 0 {
        response.topics.extend(denied.into_iter().map(|topic| {
            let mut answer = offset_delete_response::OffsetDeleteResponseTopic::default();
            answer.name = topic.name;
            answer.partitions = topic
                .partitions
                .into_iter()
                .map(|partition| {
                    let mut entry =
                        offset_delete_response::OffsetDeleteResponsePartition::default();
                    entry.partition_index = partition.partition_index;
                    entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                    entry
                })
                .collect();
            answer
        }));
    }
    response
}

/// DeleteGroups: Delete on each group; a denied group is GROUP_AUTHORIZATION_FAILED, after
/// the others. Each group deleted (or not) is a recorded change.
pub async fn delete_groups<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    mut request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let denied = Decisions::new(access, AclOperation::Delete, ResourceType::Group)
        .take_denied(&mut request.groups_names, |group| group.0.as_str());
    let mut response = groups::delete_groups(broker, request).await;
    for result in &response.results {
        record(
            access,
            "DeleteGroups",
            ResourceType::Group,
            result.group_id.0.as_str(),
            change_outcome(result.error_code, None),
        );
    }
    response.results.extend(denied.into_iter().map(|group_id| {
        let mut result = delete_groups_response::DeletableGroupResult::default();
        result.group_id = group_id;
        result.error_code = ResponseError::GroupAuthorizationFailed.code();
        result
    }));
    response
}

/// An access that allows everything (authorization off), for tests that call handlers
/// directly.
#[cfg(test)]
pub(crate) fn unrestricted() -> Access {
    Access::unrestricted(crate::security::identity::ClientIdentity::anonymous(
        std::net::IpAddr::from([127, 0, 0, 1]),
    ))
}

#[cfg(test)]
mod tests;
