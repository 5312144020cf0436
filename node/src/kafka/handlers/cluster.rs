//! ApiVersions, Metadata and DescribeCluster: what the node serves and where partitions are
//! led. In a cluster the answers are the controller image's (leaders, leader epochs,
//! replicas, ISR), as the native Metadata gives them.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, DescribeClusterRequest, DescribeClusterResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest,
    MetadataResponse, TopicName, describe_cluster_response, describe_topic_partitions_response,
    metadata_request, metadata_response,
};
use ledge_protocol::wire::{self, DescribeClusterRequest as NativeDescribeCluster, ErrorCode};

use super::{NodeAddresses, ask, broker_id, kafka_topic_id, message, text, topic_name};
use crate::broker::Broker;
use crate::broker::topic_config::validate_topic_name;
use crate::kafka::authorize::{Decisions, authorized_operations, cluster_allows_silently, record};
use crate::kafka::codec::api_version_list;
use crate::kafka::errors::kafka_code;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::storage::Disk;

/// The served APIs and versions.
pub fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = api_version_list();
    response
}

/// The first Metadata version with `allow_auto_topic_creation`; older requests always allow
/// it.
const AUTO_CREATION_FIELD_VERSION: i16 = 4;

/// The Metadata versions with `include_cluster_authorized_operations` (v11 moved it to
/// DescribeCluster) and the first with `include_topic_authorized_operations`.
const CLUSTER_OPERATIONS_VERSIONS: std::ops::RangeInclusive<i16> = 8..=10;
const TOPIC_OPERATIONS_VERSION: i16 = 8;

/// Metadata: brokers, cluster id, controller, and the topics asked for (all for a null
/// list, or an empty one at version 0). A topic asked for by name that does not exist is
/// created as Kafka's `auto.create.topics.enable` does when `auto_create_partitions` is
/// `Some` (`[kafka] auto_create_topics`) and the request allows it
/// (`allow_auto_topic_creation`, always on before v4): see `auto_create_topic`. A name
/// that is not a valid topic name answers INVALID_TOPIC_EXCEPTION either way, as on Kafka.
///
/// Authorization (Kafka's `handleTopicMetadataRequest`): Describe on each topic asked for
/// by name, before its existence is looked at: a denied one is TOPIC_AUTHORIZATION_FAILED
/// with the nil id and no partitions, whether or not it exists; the all-topics form leaves
/// out the topics the caller may not describe, silently. Creating a missing topic needs
/// Create on the cluster or on the topic (TOPIC_AUTHORIZATION_FAILED otherwise). The
/// `authorized_operations` bitfields asked for are the caller's real permissions.
pub async fn metadata<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    addresses: &NodeAddresses<'_>,
    request: MetadataRequest,
    version: i16,
    auto_create_partitions: Option<u32>,
) -> MetadataResponse {
    let auto_create_partitions = auto_create_partitions
        .filter(|_| version < AUTO_CREATION_FIELD_VERSION || request.allow_auto_topic_creation);
    let cluster_operations = CLUSTER_OPERATIONS_VERSIONS.contains(&version)
        && request.include_cluster_authorized_operations;
    let topic_operations =
        version >= TOPIC_OPERATIONS_VERSION && request.include_topic_authorized_operations;
    let mut by_id_only = Vec::new();
    let names = match request.topics {
        None => None,
        Some(topics) if version == 0 && topics.is_empty() => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .filter_map(|topic| match topic.name {
                    Some(name) => Some(topic_name(&name)),
                    None => {
                        by_id_only.push(topic.topic_id);
                        None
                    }
                })
                .collect(),
        ),
    };
    let mut response = MetadataResponse::default();
    // Describe first: a denied topic is never asked for, so its existence is not revealed.
    let mut describe = Decisions::new(access, AclOperation::Describe, ResourceType::Topic);
    let mut denied: Vec<String> = Vec::new();
    let names = names.map(|names: Vec<String>| {
        names
            .into_iter()
            .filter(|name| {
                let allowed = describe.allows(name);
                if !allowed && !denied.contains(name) {
                    denied.push(name.clone());
                }
                allowed
            })
            .collect::<Vec<_>>()
    });
    let all_topics = names.is_none();
    // Only topics asked for by name are created, never on a request for all topics.
    let auto_create_partitions = auto_create_partitions.filter(|_| names.is_some());
    let mut native = match ask!(
        broker,
        "",
        Metadata(wire::MetadataRequest { topics: names })
    ) {
        Ok(native) => native,
        Err(api) => {
            tracing::error!(?api, "kafka metadata: the broker answered another API");
            response.controller_id = BrokerId(-1);
            return response;
        }
    };
    if all_topics {
        native.topics.retain(|topic| {
            access.allows_silently(AclOperation::Describe, ResourceType::Topic, &topic.name)
        });
    }
    // Missing topics the caller may not create (Kafka tries Create on the cluster, not
    // logged, then on each topic).
    let mut create_denied: Vec<String> = Vec::new();
    let mut create_on_cluster = None;
    for topic in &mut native.topics {
        if topic.error != ErrorCode::UnknownTopicOrPartition {
            continue;
        }
        topic.error = if validate_topic_name(&topic.name).is_err() {
            ErrorCode::InvalidTopic
        } else if let Some(partitions) = auto_create_partitions {
            let on_cluster = *create_on_cluster
                .get_or_insert_with(|| cluster_allows_silently(access, AclOperation::Create));
            if on_cluster || access.allows(AclOperation::Create, ResourceType::Topic, &topic.name) {
                auto_create_topic(broker, access, &topic.name, partitions).await
            } else {
                create_denied.push(topic.name.clone());
                ErrorCode::UnknownTopicOrPartition
            }
        } else {
            ErrorCode::UnknownTopicOrPartition
        };
    }
    let cluster_id = cluster_id(broker).await;
    let own_id = native.node_id;
    response.brokers = native
        .nodes
        .iter()
        .filter_map(|node| {
            let (host, port) = addresses.kafka_address(own_id, node.node_id, &node.address)?;
            let mut entry = metadata_response::MetadataResponseBroker::default();
            entry.node_id = BrokerId(broker_id(node.node_id));
            entry.host = host;
            entry.port = port;
            Some(entry)
        })
        .collect();
    if version >= 2 {
        response.cluster_id = (!cluster_id.is_empty()).then(|| text(cluster_id));
    }
    response.controller_id = BrokerId(native.controller_id.map_or(-1, broker_id));
    if cluster_operations {
        response.cluster_authorized_operations =
            if access.allows(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                authorized_operations(access, ResourceType::Cluster, CLUSTER_NAME)
            } else {
                0
            };
    }
    response.topics = native
        .topics
        .into_iter()
        .map(|topic| {
            let mut entry = metadata_response::MetadataResponseTopic::default();
            if create_denied.contains(&topic.name) {
                entry.error_code = ResponseError::TopicAuthorizationFailed.code();
                entry.is_internal = topic.internal;
                entry.name = Some(TopicName(text(topic.name)));
                return entry;
            }
            if topic_operations {
                entry.topic_authorized_operations =
                    authorized_operations(access, ResourceType::Topic, &topic.name);
            }
            entry.error_code = kafka_code(topic.error);
            // An unknown topic has the nil id, as on Kafka.
            if version >= 10 && topic.error == ErrorCode::None {
                entry.topic_id = kafka_topic_id(&topic.topic_id, &topic.name);
            }
            entry.name = Some(TopicName(text(topic.name)));
            entry.is_internal = topic.internal;
            entry.partitions = topic
                .partitions
                .into_iter()
                .map(|partition| {
                    let mut entry = metadata_response::MetadataResponsePartition::default();
                    entry.error_code = match partition.leader {
                        // No replica leads it now: Kafka's answer while an election is due.
                        None => ResponseError::LeaderNotAvailable.code(),
                        Some(_) => kafka_code(partition.error),
                    };
                    entry.partition_index = i32::try_from(partition.partition).unwrap_or(-1);
                    entry.leader_id = BrokerId(partition.leader.map_or(-1, broker_id));
                    entry.leader_epoch = partition.leader_epoch;
                    entry.replica_nodes = ids(&partition.replicas);
                    entry.isr_nodes = ids(&partition.isr);
                    entry
                })
                .collect();
            entry
        })
        .chain(denied.into_iter().map(|name| {
            let mut entry = metadata_response::MetadataResponseTopic::default();
            entry.error_code = ResponseError::TopicAuthorizationFailed.code();
            entry.name = Some(TopicName(text(name)));
            entry
        }))
        .chain(by_id_only.into_iter().map(|topic_id| {
            let mut entry = metadata_response::MetadataResponseTopic::default();
            entry.error_code = ResponseError::UnknownTopicId.code();
            entry.topic_id = topic_id;
            entry
        }))
        .collect();
    response
}

/// Creates missing topic `name` (a valid topic name) with `partitions` partitions for a
/// Metadata request, through the path CreateTopics takes (the registry's checks and limits
/// on one node, the controller in a cluster), and gives the code Metadata answers for it:
/// LEADER_NOT_AVAILABLE once it is created (or if another request just created it), as
/// Kafka answers while its new topic's leaders are elected, so clients ask again; a name
/// starting with `__` is the node's (internal topics are never created by a client):
/// UNKNOWN_TOPIC_OR_PARTITION; a refusal (a partition limit, a read-only node) its own code,
/// which clients log and retry until `max.block.ms`. The caller has been allowed to create
/// it; the creation is a recorded change of the caller's.
async fn auto_create_topic<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    name: &str,
    partitions: u32,
) -> ErrorCode {
    if name.starts_with("__") {
        return ErrorCode::UnknownTopicOrPartition;
    }
    let code = create_missing_topic(broker, name, partitions).await;
    let outcome = match code {
        ErrorCode::LeaderNotAvailable => Ok(()),
        other => Err(format!("{other:?}")),
    };
    record(access, "Metadata", ResourceType::Topic, name, outcome);
    code
}

/// [`auto_create_topic`]'s creation.
async fn create_missing_topic<D: Disk>(
    broker: &Broker<D>,
    name: &str,
    partitions: u32,
) -> ErrorCode {
    let request = wire::CreateTopicsRequest {
        topics: vec![wire::CreatableTopic {
            name: name.to_owned(),
            partitions,
            replication_factor: None,
            configs: Vec::new(),
        }],
        validate_only: false,
    };
    let outcome = match ask!(broker, "", CreateTopics(request)) {
        Ok(answer) => answer.topics.into_iter().next(),
        Err(api) => {
            tracing::error!(?api, "kafka metadata: the broker answered another API");
            return ErrorCode::UnknownServerError;
        }
    };
    match outcome {
        Some(outcome) if outcome.error == ErrorCode::None => {
            tracing::info!(topic = %name, partitions, "topic created by a Kafka Metadata request (kafka.auto_create_topics)");
            ErrorCode::LeaderNotAvailable
        }
        Some(outcome) if outcome.error == ErrorCode::TopicAlreadyExists => {
            ErrorCode::LeaderNotAvailable
        }
        Some(outcome) => {
            tracing::warn!(topic = %name, error = ?outcome.error, message = %outcome.message, "a Kafka Metadata request's topic was not created");
            outcome.error
        }
        None => ErrorCode::UnknownServerError,
    }
}

/// The most partitions one DescribeTopicPartitions answer lists, whatever the client asks:
/// Kafka's `max.request.partition.size.limit` default. The rest come by cursor.
pub const DESCRIBE_TOPIC_PARTITIONS_PARTITIONS_MAX: usize = 2000;

/// DescribeTopicPartitions (KIP-966), what Kafka 4's admin client asks before Metadata for
/// `describeTopics`: the Metadata answer's topics (all of them for an empty list), sorted by
/// name, from the request's cursor on, at most `response_partition_limit` partitions (capped
/// at [`DESCRIBE_TOPIC_PARTITIONS_PARTITIONS_MAX`]), with a cursor to the next partition when
/// more remain. The node has no eligible leader replicas (ELR): both lists are empty.
///
/// Authorization as Metadata's: a listed topic without Describe is
/// TOPIC_AUTHORIZATION_FAILED, after the others; the all-topics form leaves it out. Every
/// topic answered carries the caller's `topic_authorized_operations`.
pub async fn describe_topic_partitions<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    addresses: &NodeAddresses<'_>,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let mut asked = MetadataRequest::default();
    asked.include_topic_authorized_operations = true;
    asked.topics = (!request.topics.is_empty()).then(|| {
        request
            .topics
            .iter()
            .map(|topic| {
                let mut entry = metadata_request::MetadataRequestTopic::default();
                entry.name = Some(topic.name.clone());
                entry
            })
            .collect()
    });
    // DescribeTopicPartitions creates nothing (it has no `allow_auto_topic_creation`).
    let (mut topics, denied): (Vec<_>, Vec<_>) =
        metadata(broker, access, addresses, asked, 12, None)
            .await
            .topics
            .into_iter()
            .partition(|topic| topic.error_code != ResponseError::TopicAuthorizationFailed.code());
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let limit = usize::try_from(request.response_partition_limit)
        .unwrap_or(0)
        .clamp(1, DESCRIBE_TOPIC_PARTITIONS_PARTITIONS_MAX);
    let mut response = DescribeTopicPartitionsResponse::default();
    let mut listed = 0;
    for topic in topics {
        let name = topic.name.clone().unwrap_or_default();
        let first_partition = match &request.cursor {
            Some(cursor) if name.0 < cursor.topic_name.0 => continue,
            Some(cursor) if name == cursor.topic_name => cursor.partition_index,
            _ => 0,
        };
        let mut entry =
            describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default();
        entry.error_code = topic.error_code;
        entry.name = topic.name;
        entry.topic_id = topic.topic_id;
        entry.is_internal = topic.is_internal;
        entry.topic_authorized_operations = topic.topic_authorized_operations;
        for partition in topic.partitions {
            if partition.partition_index < first_partition {
                continue;
            }
            if listed == limit {
                let mut cursor = describe_topic_partitions_response::Cursor::default();
                cursor.topic_name = name.clone();
                cursor.partition_index = partition.partition_index;
                response.next_cursor = Some(cursor);
                break;
            }
            listed += 1;
            let mut described =
                describe_topic_partitions_response::DescribeTopicPartitionsResponsePartition::default();
            described.error_code = partition.error_code;
            described.partition_index = partition.partition_index;
            described.leader_id = partition.leader_id;
            described.leader_epoch = partition.leader_epoch;
            described.replica_nodes = partition.replica_nodes;
            described.isr_nodes = partition.isr_nodes;
            described.eligible_leader_replicas = Some(Vec::new());
            described.last_known_elr = Some(Vec::new());
            entry.partitions.push(described);
        }
        response.topics.push(entry);
        if response.next_cursor.is_some() {
            break;
        }
    }
    response.topics.extend(denied.into_iter().map(|topic| {
        let mut entry =
            describe_topic_partitions_response::DescribeTopicPartitionsResponseTopic::default();
        entry.error_code = topic.error_code;
        entry.name = topic.name;
        entry
    }));
    response
}

/// DescribeCluster: the cluster id, controller and every registered node (fenced ones too,
/// marked so at version 2+, which the node does not serve yet). Anyone may ask (Kafka's
/// brokers do not gate it); `include_cluster_authorized_operations` answers the caller's
/// cluster operations if it may describe the cluster, else 0.
pub async fn describe_cluster<D: Disk>(
    broker: &Broker<D>,
    access: &Access,
    addresses: &NodeAddresses<'_>,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default();
    response.endpoint_type = request.endpoint_type;
    // 1 is brokers; 2 (controllers) is answered as Kafka's brokers answer it.
    if request.endpoint_type != 1 {
        response.error_code = ResponseError::UnsupportedEndpointType.code();
        response.error_message = Some(text("only the broker endpoint type (1) is served"));
        return response;
    }
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations =
            if access.allows(AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
                authorized_operations(access, ResourceType::Cluster, CLUSTER_NAME)
            } else {
                0
            };
    }
    let native = match ask!(broker, "", DescribeCluster(NativeDescribeCluster {})) {
        Ok(native) => native,
        Err(api) => {
            tracing::error!(
                ?api,
                "kafka describe cluster: the broker answered another API"
            );
            response.error_code = ResponseError::UnknownServerError.code();
            return response;
        }
    };
    response.error_code = kafka_code(native.error);
    response.error_message = message(&native.message);
    let own_id = own_node_id(broker).await;
    response.cluster_id = text(native.cluster_id);
    response.controller_id = BrokerId(native.controller_id.map_or(-1, broker_id));
    response.brokers = native
        .nodes
        .iter()
        .filter(|node| node.alive)
        .filter_map(|node| {
            let (host, port) = addresses.kafka_address(own_id, node.node_id, &node.address)?;
            let mut entry = describe_cluster_response::DescribeClusterBroker::default();
            entry.broker_id = BrokerId(broker_id(node.node_id));
            entry.host = host;
            entry.port = port;
            Some(entry)
        })
        .collect();
    response
}

/// The cluster's id, empty for a node without a `[cluster]` section.
async fn cluster_id<D: Disk>(broker: &Broker<D>) -> String {
    match ask!(broker, "", DescribeCluster(NativeDescribeCluster {})) {
        Ok(native) if native.error == ErrorCode::None => native.cluster_id,
        _ => String::new(),
    }
}

/// This node's id, as Metadata names it.
async fn own_node_id<D: Disk>(broker: &Broker<D>) -> u32 {
    match ask!(
        broker,
        "",
        Metadata(wire::MetadataRequest {
            topics: Some(Vec::new())
        })
    ) {
        Ok(native) => native.node_id,
        Err(_) => 0,
    }
}

fn ids(nodes: &[u32]) -> Vec<BrokerId> {
    nodes
        .iter()
        .map(|node| BrokerId(broker_id(*node)))
        .collect()
}
