//! Authorization on the Kafka listener, API by API: every served API (the table in
//! `kafka/apis.rs`; an API without a row here fails) is asked by `User:alice` against a
//! broker with a security store and authorization on, with the ACLs it needs (allowed),
//! without one of them (denied), with a DENY beside the ALLOW (denied), with a PREFIXED
//! ALLOW (allowed), and by a super user without ACLs (allowed); each denial must be Kafka's
//! error code in Kafka's place in the response.

use std::net::IpAddr;
use std::sync::Arc;

use kafka_protocol::messages::{
    self as kafka, ApiKey, GroupId, alter_configs_request, alter_user_scram_credentials_request,
    consumer_group_heartbeat_request, create_acls_request, create_partitions_request,
    create_topics_request, delete_acls_request, delete_records_request, delete_topics_request,
    describe_configs_request, describe_producers_request, describe_topic_partitions_request,
    describe_user_scram_credentials_request, incremental_alter_configs_request, join_group_request,
    leave_group_request, list_offsets_request, metadata_request, offset_commit_request,
    offset_delete_request, offset_fetch_request, offset_for_leader_epoch_request,
};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::EncodeOptions;

use crate::kafka::KafkaSettings;
use crate::kafka::apis::{KafkaRequest, KafkaResponse, SERVED};
use crate::kafka::dispatch::{KafkaService, Reply};
use crate::kafka::handlers::security::tests::broker_with;
use crate::kafka::tests::{ask_as, batch, create_topic, name, produce_request, service_on};
use crate::security::access::Access;
use crate::security::acl::{
    AclBinding, AclOperation, AclPermission, AuthorizerConfig, CLUSTER_NAME, PatternType,
    ResourceType,
};
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::sim::SimDisk;

const TOPIC: &str = "orders";
const NEW_TOPIC: &str = "orders-new";
const GROUP: &str = "g-orders";
const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const AUTHORIZATION_CODES: [i16; 4] = [TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, 53];

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn identity(user: &str) -> ClientIdentity {
    ClientIdentity {
        principal: format!("User:{user}").parse().unwrap(),
        host: IpAddr::from([127, 0, 0, 1]),
        method: AuthMethod::SaslScram(crate::security::scram::ScramMechanism::Sha256),
    }
}

/// One operation on one resource a request needs.
#[derive(Clone, Copy, Debug)]
struct Need(AclOperation, ResourceType, &'static str);

impl Need {
    fn binding(self, pattern: PatternType, permission: AclPermission) -> AclBinding {
        let name = match (pattern, self.1) {
            (PatternType::Literal, _) | (_, ResourceType::Cluster) => self.2,
            // A prefix of the name that is not the name.
            (PatternType::Prefixed, _) => &self.2[..3],
        };
        AclBinding::new(self.1, name, pattern, "User:alice", "*", self.0, permission).unwrap()
    }
}

type Codes = fn(&KafkaResponse) -> Vec<i16>;

/// How one API is asked and what its denials look like.
struct Row {
    version: i16,
    request: KafkaRequest,
    /// Everything the request needs to be allowed.
    needs: Vec<Need>,
    /// Per need that can be denied: its index in `needs`, the code a denial answers, and the
    /// codes of the response where Kafka puts it (every one of them must be that code).
    denials: Vec<(usize, i16, Codes)>,
    /// The codes an allowed request must not be an authorization error in (a -1 marks a part
    /// of the response a denial must not have, e.g. a member answer beside a whole-request
    /// error; it is ignored when allowed).
    codes: Codes,
}

macro_rules! codes {
    ($variant:ident, |$response:ident| $body:expr) => {
        |response: &KafkaResponse| match response {
            KafkaResponse::$variant($response) => $body,
            other => panic!("unexpected answer {other:?}"),
        }
    };
}

fn row(version: i16, request: KafkaRequest, needs: Vec<Need>, code: i16, codes: Codes) -> Row {
    let denials = (0..needs.len()).map(|index| (index, code, codes)).collect();
    Row {
        version,
        request,
        needs,
        denials,
        codes,
    }
}

fn unchecked(version: i16, request: KafkaRequest, codes: Codes) -> Row {
    row(version, request, Vec::new(), 0, codes)
}

fn topic_need(operation: AclOperation) -> Vec<Need> {
    vec![Need(operation, ResourceType::Topic, TOPIC)]
}

fn group_need(operation: AclOperation) -> Vec<Need> {
    vec![Need(operation, ResourceType::Group, GROUP)]
}

fn cluster_need(operation: AclOperation) -> Vec<Need> {
    vec![Need(operation, ResourceType::Cluster, CLUSTER_NAME)]
}

/// The row of `api`; `None` for an API without one (the test fails on it).
fn row_for(api: ApiKey) -> Option<Row> {
    use AclOperation::*;
    Some(match api {
        ApiKey::ApiVersions => unchecked(
            3,
            KafkaRequest::ApiVersions(Default::default()),
            codes!(ApiVersions, |r| vec![r.error_code]),
        ),
        ApiKey::SaslHandshake => unchecked(
            1,
            KafkaRequest::SaslHandshake(Default::default()),
            codes!(SaslHandshake, |r| vec![r.error_code]),
        ),
        ApiKey::SaslAuthenticate => unchecked(
            2,
            KafkaRequest::SaslAuthenticate(Default::default()),
            codes!(SaslAuthenticate, |r| vec![r.error_code]),
        ),
        ApiKey::DescribeCluster => {
            let mut request = kafka::DescribeClusterRequest::default();
            request.endpoint_type = 1;
            unchecked(
                1,
                KafkaRequest::DescribeCluster(request),
                codes!(DescribeCluster, |r| vec![r.error_code]),
            )
        }
        ApiKey::Metadata => {
            let mut topic = metadata_request::MetadataRequestTopic::default();
            topic.name = Some(name(TOPIC));
            let mut request = kafka::MetadataRequest::default();
            request.topics = Some(vec![topic]);
            row(
                12,
                KafkaRequest::Metadata(request),
                topic_need(Describe),
                TOPIC_DENIED,
                codes!(Metadata, |r| r
                    .topics
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::Produce => row(
            9,
            produce_request(TOPIC, 0, batch(2, &EncodeOptions::default()), -1),
            topic_need(Write),
            TOPIC_DENIED,
            codes!(Produce, |r| r
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .map(|p| p.error_code)
                .collect()),
        ),
        ApiKey::Fetch => {
            let mut partition = kafka::fetch_request::FetchPartition::default();
            partition.partition_max_bytes = 1024;
            let mut topic = kafka::fetch_request::FetchTopic::default();
            topic.topic = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::FetchRequest::default();
            request.max_bytes = 1024;
            request.topics = vec![topic];
            row(
                12,
                KafkaRequest::Fetch(request),
                topic_need(Read),
                TOPIC_DENIED,
                codes!(Fetch, |r| r
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .collect()),
            )
        }
        ApiKey::ListOffsets => {
            let mut partition = list_offsets_request::ListOffsetsPartition::default();
            partition.timestamp = -1;
            let mut topic = list_offsets_request::ListOffsetsTopic::default();
            topic.name = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::ListOffsetsRequest::default();
            request.topics = vec![topic];
            row(
                6,
                KafkaRequest::ListOffsets(request),
                topic_need(Describe),
                TOPIC_DENIED,
                codes!(ListOffsets, |r| r
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .collect()),
            )
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut partition =
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            partition.current_leader_epoch = -1;
            let mut topic = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
            topic.topic = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::OffsetForLeaderEpochRequest::default();
            request.topics = vec![topic];
            row(
                4,
                KafkaRequest::OffsetForLeaderEpoch(request),
                topic_need(Describe),
                TOPIC_DENIED,
                codes!(OffsetForLeaderEpoch, |r| r
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .collect()),
            )
        }
        ApiKey::DeleteRecords => {
            let partition = delete_records_request::DeleteRecordsPartition::default();
            let mut topic = delete_records_request::DeleteRecordsTopic::default();
            topic.name = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::DeleteRecordsRequest::default();
            request.topics = vec![topic];
            row(
                2,
                KafkaRequest::DeleteRecords(request),
                topic_need(Delete),
                TOPIC_DENIED,
                codes!(DeleteRecords, |r| r
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .collect()),
            )
        }
        ApiKey::InitProducerId => {
            let mut request = kafka::InitProducerIdRequest::default();
            request.transaction_timeout_ms = 60_000;
            request.transactional_id = None;
            row(
                4,
                KafkaRequest::InitProducerId(request),
                cluster_need(IdempotentWrite),
                CLUSTER_DENIED,
                codes!(InitProducerId, |r| vec![r.error_code]),
            )
        }
        ApiKey::CreateTopics => {
            let mut topic = create_topics_request::CreatableTopic::default();
            topic.name = name(NEW_TOPIC);
            topic.num_partitions = 1;
            topic.replication_factor = -1;
            let mut request = kafka::CreateTopicsRequest::default();
            request.topics = vec![topic];
            row(
                7,
                KafkaRequest::CreateTopics(request),
                vec![Need(Create, ResourceType::Topic, NEW_TOPIC)],
                TOPIC_DENIED,
                codes!(CreateTopics, |r| r
                    .topics
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::DeleteTopics => {
            let mut topic = delete_topics_request::DeleteTopicState::default();
            topic.name = Some(name(TOPIC));
            let mut request = kafka::DeleteTopicsRequest::default();
            request.topics = vec![topic];
            row(
                6,
                KafkaRequest::DeleteTopics(request),
                topic_need(Delete),
                TOPIC_DENIED,
                codes!(DeleteTopics, |r| r
                    .responses
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::CreatePartitions => {
            let mut topic = create_partitions_request::CreatePartitionsTopic::default();
            topic.name = name(TOPIC);
            topic.count = 3;
            let mut request = kafka::CreatePartitionsRequest::default();
            request.topics = vec![topic];
            row(
                3,
                KafkaRequest::CreatePartitions(request),
                topic_need(Alter),
                TOPIC_DENIED,
                codes!(CreatePartitions, |r| r
                    .results
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeConfigs => {
            let mut resource = describe_configs_request::DescribeConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text(TOPIC);
            let mut request = kafka::DescribeConfigsRequest::default();
            request.resources = vec![resource];
            row(
                4,
                KafkaRequest::DescribeConfigs(request),
                topic_need(DescribeConfigs),
                TOPIC_DENIED,
                codes!(DescribeConfigs, |r| r
                    .results
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::AlterConfigs => {
            let mut config = alter_configs_request::AlterableConfig::default();
            config.name = text("retention.ms");
            config.value = Some(text("60000"));
            let mut resource = alter_configs_request::AlterConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text(TOPIC);
            resource.configs = vec![config];
            let mut request = kafka::AlterConfigsRequest::default();
            request.resources = vec![resource];
            row(
                2,
                KafkaRequest::AlterConfigs(request),
                topic_need(AlterConfigs),
                TOPIC_DENIED,
                codes!(AlterConfigs, |r| r
                    .responses
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut config = incremental_alter_configs_request::AlterableConfig::default();
            config.name = text("retention.ms");
            config.value = Some(text("60000"));
            let mut resource = incremental_alter_configs_request::AlterConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text(TOPIC);
            resource.configs = vec![config];
            let mut request = kafka::IncrementalAlterConfigsRequest::default();
            request.resources = vec![resource];
            row(
                1,
                KafkaRequest::IncrementalAlterConfigs(request),
                topic_need(AlterConfigs),
                TOPIC_DENIED,
                codes!(IncrementalAlterConfigs, |r| r
                    .responses
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeTopicPartitions => {
            let mut topic = describe_topic_partitions_request::TopicRequest::default();
            topic.name = name(TOPIC);
            let mut request = kafka::DescribeTopicPartitionsRequest::default();
            request.topics = vec![topic];
            request.response_partition_limit = 100;
            row(
                0,
                KafkaRequest::DescribeTopicPartitions(request),
                topic_need(Describe),
                TOPIC_DENIED,
                codes!(DescribeTopicPartitions, |r| r
                    .topics
                    .iter()
                    .map(|t| t.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeProducers => {
            let mut topic = describe_producers_request::TopicRequest::default();
            topic.name = name(TOPIC);
            topic.partition_indexes = vec![0, 1];
            let mut request = kafka::DescribeProducersRequest::default();
            request.topics = vec![topic];
            row(
                0,
                KafkaRequest::DescribeProducers(request),
                topic_need(Read),
                TOPIC_DENIED,
                codes!(DescribeProducers, |r| r
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.error_code)
                    .collect()),
            )
        }
        ApiKey::FindCoordinator => {
            let mut request = kafka::FindCoordinatorRequest::default();
            request.coordinator_keys = vec![text(GROUP)];
            row(
                4,
                KafkaRequest::FindCoordinator(request),
                group_need(Describe),
                GROUP_DENIED,
                codes!(FindCoordinator, |r| r
                    .coordinators
                    .iter()
                    .map(|c| c.error_code)
                    .collect()),
            )
        }
        ApiKey::JoinGroup => {
            let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
            protocol.name = text("range");
            let mut request = kafka::JoinGroupRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.session_timeout_ms = 10_000;
            request.rebalance_timeout_ms = 10_000;
            request.protocol_type = text("consumer");
            request.protocols = vec![protocol];
            row(
                9,
                KafkaRequest::JoinGroup(request),
                group_need(Read),
                GROUP_DENIED,
                codes!(JoinGroup, |r| vec![r.error_code]),
            )
        }
        ApiKey::SyncGroup => {
            let mut request = kafka::SyncGroupRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.generation_id = 1;
            request.member_id = text("m");
            request.protocol_type = Some(text("consumer"));
            request.protocol_name = Some(text("range"));
            row(
                5,
                KafkaRequest::SyncGroup(request),
                group_need(Read),
                GROUP_DENIED,
                codes!(SyncGroup, |r| vec![r.error_code]),
            )
        }
        ApiKey::Heartbeat => {
            let mut request = kafka::HeartbeatRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.generation_id = 1;
            request.member_id = text("m");
            row(
                4,
                KafkaRequest::Heartbeat(request),
                group_need(Read),
                GROUP_DENIED,
                codes!(Heartbeat, |r| vec![r.error_code]),
            )
        }
        ApiKey::LeaveGroup => {
            let mut member = leave_group_request::MemberIdentity::default();
            member.member_id = text("m");
            let mut request = kafka::LeaveGroupRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.members = vec![member];
            row(
                5,
                KafkaRequest::LeaveGroup(request),
                group_need(Read),
                GROUP_DENIED,
                // The whole request: a top-level error and no member answers.
                codes!(LeaveGroup, |r| std::iter::once(r.error_code)
                    .chain((!r.members.is_empty()).then_some(-1))
                    .collect()),
            )
        }
        ApiKey::OffsetCommit => {
            let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
            partition.committed_offset = 1;
            let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
            topic.name = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::OffsetCommitRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.generation_id_or_member_epoch = -1;
            request.topics = vec![topic];
            let partitions: Codes = codes!(OffsetCommit, |r| r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.error_code)
                .collect());
            Row {
                version: 9,
                request: KafkaRequest::OffsetCommit(request),
                needs: vec![
                    Need(Read, ResourceType::Group, GROUP),
                    Need(Read, ResourceType::Topic, TOPIC),
                ],
                denials: vec![(0, GROUP_DENIED, partitions), (1, TOPIC_DENIED, partitions)],
                codes: partitions,
            }
        }
        ApiKey::OffsetFetch => {
            let mut topic = offset_fetch_request::OffsetFetchRequestTopics::default();
            topic.name = name(TOPIC);
            topic.partition_indexes = vec![0];
            let mut group = offset_fetch_request::OffsetFetchRequestGroup::default();
            group.group_id = GroupId(text(GROUP));
            group.topics = Some(vec![topic]);
            let mut request = kafka::OffsetFetchRequest::default();
            request.groups = vec![group];
            Row {
                version: 8,
                request: KafkaRequest::OffsetFetch(request),
                needs: vec![
                    Need(Describe, ResourceType::Group, GROUP),
                    Need(Describe, ResourceType::Topic, TOPIC),
                ],
                // A denied group: its error and no topics; a denied topic: its partitions.
                denials: vec![
                    (
                        0,
                        GROUP_DENIED,
                        codes!(OffsetFetch, |r| r
                            .groups
                            .iter()
                            .map(|g| g.error_code)
                            .chain(r.groups.iter().flat_map(|g| &g.topics).map(|_| -1))
                            .collect()),
                    ),
                    (
                        1,
                        TOPIC_DENIED,
                        codes!(OffsetFetch, |r| r
                            .groups
                            .iter()
                            .flat_map(|g| &g.topics)
                            .flat_map(|t| &t.partitions)
                            .map(|p| p.error_code)
                            .collect()),
                    ),
                ],
                codes: codes!(OffsetFetch, |r| r
                    .groups
                    .iter()
                    .map(|g| g.error_code)
                    .chain(
                        r.groups
                            .iter()
                            .flat_map(|g| &g.topics)
                            .flat_map(|t| &t.partitions)
                            .map(|p| p.error_code)
                    )
                    .collect()),
            }
        }
        ApiKey::OffsetDelete => {
            let partition = offset_delete_request::OffsetDeleteRequestPartition::default();
            let mut topic = offset_delete_request::OffsetDeleteRequestTopic::default();
            topic.name = name(TOPIC);
            topic.partitions = vec![partition];
            let mut request = kafka::OffsetDeleteRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.topics = vec![topic];
            let partitions: Codes = codes!(OffsetDelete, |r| r
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.error_code)
                .collect());
            Row {
                version: 0,
                request: KafkaRequest::OffsetDelete(request),
                needs: vec![
                    Need(Delete, ResourceType::Group, GROUP),
                    Need(Read, ResourceType::Topic, TOPIC),
                ],
                denials: vec![
                    (
                        0,
                        GROUP_DENIED,
                        codes!(OffsetDelete, |r| std::iter::once(r.error_code)
                            .chain(r.topics.iter().map(|_| -1))
                            .collect()),
                    ),
                    (1, TOPIC_DENIED, partitions),
                ],
                codes: codes!(OffsetDelete, |r| std::iter::once(r.error_code)
                    .chain(
                        r.topics
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .map(|p| p.error_code)
                    )
                    .collect()),
            }
        }
        // Never an error: a group the caller may not describe is left out. Read here as
        // GROUP_DENIED when the group (which has committed offsets) is missing.
        ApiKey::ListGroups => row(
            5,
            KafkaRequest::ListGroups(Default::default()),
            group_need(Describe),
            GROUP_DENIED,
            codes!(ListGroups, |r| {
                let listed = r.groups.iter().any(|g| g.group_id.0.as_str() == GROUP);
                if listed {
                    vec![r.error_code]
                } else {
                    vec![GROUP_DENIED]
                }
            }),
        ),
        ApiKey::DescribeGroups => {
            let mut request = kafka::DescribeGroupsRequest::default();
            request.groups = vec![GroupId(text(GROUP))];
            request.include_authorized_operations = true;
            row(
                5,
                KafkaRequest::DescribeGroups(request),
                group_need(Describe),
                GROUP_DENIED,
                codes!(DescribeGroups, |r| r
                    .groups
                    .iter()
                    .map(|g| g.error_code)
                    .collect()),
            )
        }
        ApiKey::DeleteGroups => {
            let mut request = kafka::DeleteGroupsRequest::default();
            request.groups_names = vec![GroupId(text(GROUP))];
            row(
                2,
                KafkaRequest::DeleteGroups(request),
                group_need(Delete),
                GROUP_DENIED,
                codes!(DeleteGroups, |r| r
                    .results
                    .iter()
                    .map(|g| g.error_code)
                    .collect()),
            )
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let mut request = kafka::ConsumerGroupHeartbeatRequest::default();
            request.group_id = GroupId(text(GROUP));
            request.member_id = text("member-1");
            request.member_epoch = 0;
            request.rebalance_timeout_ms = 30_000;
            request.subscribed_topic_names = Some(vec![name(TOPIC)]);
            request.topic_partitions =
                Some(Vec::<consumer_group_heartbeat_request::TopicPartitions>::new());
            let whole: Codes = codes!(ConsumerGroupHeartbeat, |r| vec![r.error_code]);
            Row {
                version: 1,
                request: KafkaRequest::ConsumerGroupHeartbeat(request),
                needs: vec![
                    Need(Read, ResourceType::Group, GROUP),
                    Need(Describe, ResourceType::Topic, TOPIC),
                ],
                denials: vec![(0, GROUP_DENIED, whole), (1, TOPIC_DENIED, whole)],
                codes: whole,
            }
        }
        ApiKey::ConsumerGroupDescribe => {
            let mut request = kafka::ConsumerGroupDescribeRequest::default();
            request.group_ids = vec![GroupId(text(GROUP))];
            row(
                1,
                KafkaRequest::ConsumerGroupDescribe(request),
                group_need(Describe),
                GROUP_DENIED,
                codes!(ConsumerGroupDescribe, |r| r
                    .groups
                    .iter()
                    .map(|g| g.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeAcls => {
            let mut request = kafka::DescribeAclsRequest::default();
            request.resource_type_filter = 1;
            request.pattern_type_filter = 1;
            request.operation = 1;
            request.permission_type = 1;
            row(
                3,
                KafkaRequest::DescribeAcls(request),
                cluster_need(Describe),
                CLUSTER_DENIED,
                codes!(DescribeAcls, |r| std::iter::once(r.error_code)
                    .chain(r.resources.iter().map(|_| -1))
                    .collect()),
            )
        }
        ApiKey::CreateAcls => {
            let mut creation = create_acls_request::AclCreation::default();
            creation.resource_type = ResourceType::Topic.code();
            creation.resource_name = text("payments");
            creation.resource_pattern_type = PatternType::Literal.code();
            creation.principal = text("User:bob");
            creation.host = text("*");
            creation.operation = Read.code();
            creation.permission_type = AclPermission::Allow.code();
            let mut request = kafka::CreateAclsRequest::default();
            request.creations = vec![creation];
            row(
                3,
                KafkaRequest::CreateAcls(request),
                cluster_need(Alter),
                CLUSTER_DENIED,
                codes!(CreateAcls, |r| r
                    .results
                    .iter()
                    .map(|c| c.error_code)
                    .collect()),
            )
        }
        ApiKey::DeleteAcls => {
            let mut filter = delete_acls_request::DeleteAclsFilter::default();
            filter.resource_type_filter = ResourceType::Topic.code();
            filter.resource_name_filter = Some(text("payments"));
            filter.pattern_type_filter = PatternType::Literal.code();
            filter.operation = 1;
            filter.permission_type = 1;
            let mut request = kafka::DeleteAclsRequest::default();
            request.filters = vec![filter];
            row(
                3,
                KafkaRequest::DeleteAcls(request),
                cluster_need(Alter),
                CLUSTER_DENIED,
                codes!(DeleteAcls, |r| r
                    .filter_results
                    .iter()
                    .map(|f| f.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeUserScramCredentials => {
            let mut user = describe_user_scram_credentials_request::UserName::default();
            user.name = text("alice");
            let mut request = kafka::DescribeUserScramCredentialsRequest::default();
            request.users = Some(vec![user]);
            row(
                0,
                KafkaRequest::DescribeUserScramCredentials(request),
                cluster_need(Describe),
                CLUSTER_DENIED,
                // Top-level, and each user asked for with the error and no name.
                codes!(DescribeUserScramCredentials, |r| std::iter::once(
                    r.error_code
                )
                .chain(
                    r.results
                        .iter()
                        .map(|u| if u.user.is_empty() { u.error_code } else { -1 })
                )
                .collect()),
            )
        }
        ApiKey::AlterUserScramCredentials => {
            let mut deletion =
                alter_user_scram_credentials_request::ScramCredentialDeletion::default();
            deletion.name = text("bob");
            deletion.mechanism = 1;
            let mut request = kafka::AlterUserScramCredentialsRequest::default();
            request.deletions = vec![deletion];
            row(
                0,
                KafkaRequest::AlterUserScramCredentials(request),
                cluster_need(Alter),
                CLUSTER_DENIED,
                codes!(AlterUserScramCredentials, |r| r
                    .results
                    .iter()
                    .map(|u| u.error_code)
                    .collect()),
            )
        }
        ApiKey::AlterClientQuotas => {
            use kafka_protocol::messages::alter_client_quotas_request::{
                EntityData, EntryData, OpData,
            };
            let mut entity = EntityData::default();
            entity.entity_type = text("user");
            entity.entity_name = Some(text("alice"));
            let mut op = OpData::default();
            op.key = text("producer_byte_rate");
            op.value = 1_048_576.0;
            let mut entry = EntryData::default();
            entry.entity = vec![entity];
            entry.ops = vec![op];
            let mut request = kafka::AlterClientQuotasRequest::default();
            request.entries = vec![entry];
            row(
                1,
                KafkaRequest::AlterClientQuotas(request),
                cluster_need(AlterConfigs),
                CLUSTER_DENIED,
                codes!(AlterClientQuotas, |r| r
                    .entries
                    .iter()
                    .map(|e| e.error_code)
                    .collect()),
            )
        }
        ApiKey::DescribeClientQuotas => row(
            1,
            KafkaRequest::DescribeClientQuotas(Default::default()),
            cluster_need(DescribeConfigs),
            CLUSTER_DENIED,
            codes!(DescribeClientQuotas, |r| std::iter::once(r.error_code)
                .chain(r.entries.iter().map(|_| -1))
                .collect()),
        ),
        _ => return None,
    })
}

/// A node with authorization on: topics `orders` (2 partitions, one record) and
/// `payments`, group
/// `g-orders` with a committed offset, super user `User:root`, and `bindings` installed.
async fn node(bindings: Vec<AclBinding>) -> (KafkaService<SimDisk>, tempfile::TempDir) {
    let config = AuthorizerConfig {
        super_users: vec!["User:root".to_owned()],
        ..AuthorizerConfig::default()
    };
    let (broker, dir) = broker_with(Some(config.clone())).await;
    let broker = Arc::new(broker);
    let service = service_on(Arc::clone(&broker), KafkaSettings::default());
    // Set up before authorization is on.
    create_topic(&service, TOPIC, 2).await;
    create_topic(&service, "payments", 1).await;
    let setup = service.access(&identity("setup"));
    let produced = ask_as(
        &service,
        &setup,
        9,
        produce_request(TOPIC, 0, batch(1, &EncodeOptions::default()), -1),
    )
    .await;
    assert!(matches!(produced, Reply::Answer(_)));
    let mut partition = offset_commit_request::OffsetCommitRequestPartition::default();
    partition.committed_offset = 1;
    let mut topic = offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = name(TOPIC);
    topic.partitions = vec![partition];
    let mut commit = kafka::OffsetCommitRequest::default();
    commit.group_id = GroupId(text(GROUP));
    commit.generation_id_or_member_epoch = -1;
    commit.topics = vec![topic];
    let committed = ask_as(&service, &setup, 9, KafkaRequest::OffsetCommit(commit)).await;
    assert!(matches!(committed, Reply::Answer(_)));
    broker.enforce_authorization(config);
    if !bindings.is_empty() {
        broker
            .security_store()
            .unwrap()
            .create_acls(bindings)
            .await
            .unwrap();
    }
    (service, dir)
}

/// `user`'s answer to the row's request on a node with `bindings`.
async fn answer(row: &Row, user: &str, bindings: Vec<AclBinding>) -> KafkaResponse {
    let (service, _dir) = node(bindings).await;
    let access: Access = service.access(&identity(user));
    match ask_as(&service, &access, row.version, row.request.clone()).await {
        Reply::Answer(response) => response,
        other => panic!("{:?}: no answer ({other:?})", row.request.api_key()),
    }
}

fn literal(needs: &[Need]) -> Vec<AclBinding> {
    needs
        .iter()
        .map(|need| need.binding(PatternType::Literal, AclPermission::Allow))
        .collect()
}

fn assert_allowed(row: &Row, response: &KafkaResponse, case: &str) {
    let api = row.request.api_key();
    let codes = (row.codes)(response);
    assert!(
        codes.iter().all(|code| !AUTHORIZATION_CODES.contains(code)),
        "{api:?} {case}: allowed, yet {codes:?} ({response:?})"
    );
}

fn assert_denied(row: &Row, response: &KafkaResponse, code: i16, codes: Codes, case: &str) {
    let api = row.request.api_key();
    let found = codes(response);
    assert!(
        !found.is_empty() && found.iter().all(|found| *found == code),
        "{api:?} {case}: expected {code} everywhere, got {found:?} ({response:?})"
    );
}

// Goal: every served Kafka API checks what Kafka 4.x checks, with Kafka's error in Kafka's
// place; allowed through a literal or a prefixed ALLOW and for a super user, denied without
// the ACL or with a DENY over the ALLOW. A new API in the table without a row fails here.
#[tokio::test(flavor = "current_thread")]
async fn every_served_api_is_authorized_as_kafka() {
    let mut missing = Vec::new();
    for served in SERVED {
        let Some(row) = row_for(served.api) else {
            missing.push(served.api);
            continue;
        };
        assert!(
            (served.min..=served.max).contains(&row.version),
            "{:?}: the row's version is not served",
            served.api
        );
        // Allowed: the literal ACLs, a super user without any.
        let response = answer(&row, "alice", literal(&row.needs)).await;
        assert_allowed(&row, &response, "with literal ACLs");
        let response = answer(&row, "root", Vec::new()).await;
        assert_allowed(&row, &response, "as a super user");
        if row.needs.is_empty() {
            // Checks nothing: answered the same to a caller without any ACL.
            let response = answer(&row, "alice", Vec::new()).await;
            assert_allowed(&row, &response, "without ACLs (unchecked)");
            continue;
        }
        for (index, code, codes) in &row.denials {
            let need = row.needs[*index];
            let case = format!("{need:?}");
            // Missing: every other need granted, this one not.
            let mut bindings = literal(&row.needs);
            bindings.remove(*index);
            let response = answer(&row, "alice", bindings).await;
            assert_denied(&row, &response, *code, *codes, &format!("without {case}"));
            // A DENY beside the ALLOW wins.
            let mut bindings = literal(&row.needs);
            bindings.push(need.binding(PatternType::Literal, AclPermission::Deny));
            let response = answer(&row, "alice", bindings).await;
            assert_denied(&row, &response, *code, *codes, &format!("DENY {case}"));
            // A PREFIXED ALLOW in place of the literal one.
            let mut bindings = literal(&row.needs);
            bindings[*index] = need.binding(PatternType::Prefixed, AclPermission::Allow);
            let response = answer(&row, "alice", bindings).await;
            assert_allowed(&row, &response, &format!("PREFIXED {case}"));
        }
    }
    assert!(missing.is_empty(), "served APIs without a row: {missing:?}");
}

fn metadata_request(topics: Option<&[&str]>, version: i16) -> KafkaRequest {
    let mut request = kafka::MetadataRequest::default();
    request.topics = topics.map(|topics| {
        topics
            .iter()
            .map(|topic| {
                let mut entry = metadata_request::MetadataRequestTopic::default();
                entry.name = Some(name(topic));
                entry
            })
            .collect()
    });
    request.allow_auto_topic_creation = false;
    request.include_topic_authorized_operations = true;
    request.include_cluster_authorized_operations = version <= 10;
    KafkaRequest::Metadata(request)
}

async fn metadata(
    service: &KafkaService<SimDisk>,
    user: &str,
    topics: Option<&[&str]>,
    version: i16,
) -> kafka::MetadataResponse {
    let access = service.access(&identity(user));
    match ask_as(service, &access, version, metadata_request(topics, version)).await {
        Reply::Answer(KafkaResponse::Metadata(response)) => response,
        other => panic!("no metadata answer: {other:?}"),
    }
}

// Goal: Metadata for all topics lists only the topics the caller may describe, silently;
// a topic it may not describe is TOPIC_AUTHORIZATION_FAILED with the nil id and no
// partitions whether it exists or not (the two answers are identical but for the name), so
// Metadata reveals no existence; the bitfields are the caller's real operations.
#[tokio::test(flavor = "current_thread")]
async fn metadata_lists_only_describable_topics_and_hides_existence() {
    let read_orders = Need(AclOperation::Read, ResourceType::Topic, TOPIC)
        .binding(PatternType::Literal, AclPermission::Allow);
    let (service, _dir) = node(vec![read_orders]).await;

    let all = metadata(&service, "alice", None, 12).await;
    let listed: Vec<_> = all
        .topics
        .iter()
        .map(|topic| topic.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(listed, vec![TOPIC.to_owned()]);
    assert_eq!(all.topics[0].error_code, 0);
    assert_eq!(all.topics[0].partitions.len(), 2);
    // Read implies Describe: bits 3 (Read) and 8 (Describe), nothing else.
    assert_eq!(
        all.topics[0].topic_authorized_operations,
        (1 << 3) | (1 << 8)
    );
    // The super user sees every topic, with every topic operation.
    let root = metadata(&service, "root", None, 12).await;
    let names: Vec<_> = root
        .topics
        .iter()
        .map(|topic| topic.name.as_ref().unwrap().0.to_string())
        .collect();
    assert!(names.contains(&"payments".to_owned()) && names.contains(&TOPIC.to_owned()));
    assert!(
        root.topics
            .iter()
            .all(|t| t.topic_authorized_operations == 3576)
    );

    let asked = metadata(&service, "alice", Some(&["payments", "nowhere"]), 12).await;
    assert_eq!(asked.topics.len(), 2);
    for topic in &asked.topics {
        assert_eq!(topic.error_code, TOPIC_DENIED, "{topic:?}");
        assert!(topic.topic_id.is_nil());
        assert!(topic.partitions.is_empty());
        assert!(!topic.is_internal);
        assert_eq!(topic.topic_authorized_operations, i32::MIN);
    }
    let mut existing = asked.topics[0].clone();
    existing.name = asked.topics[1].name.clone();
    assert_eq!(existing, asked.topics[1]);

    // v10 with the cluster bitfield: 0 without Describe on the cluster, the super user's
    // every cluster operation.
    assert_eq!(
        metadata(&service, "alice", None, 10)
            .await
            .cluster_authorized_operations,
        0
    );
    assert_eq!(
        metadata(&service, "root", None, 10)
            .await
            .cluster_authorized_operations,
        8096
    );
}

// Goal: Metadata creates a missing topic only for a caller with Create on the cluster or on
// the topic; without, it is TOPIC_AUTHORIZATION_FAILED and not created.
#[tokio::test(flavor = "current_thread")]
async fn metadata_auto_creation_needs_create() {
    let describe_all = AclBinding::new(
        ResourceType::Topic,
        "*",
        PatternType::Literal,
        "User:alice",
        "*",
        AclOperation::Describe,
        AclPermission::Allow,
    )
    .unwrap();
    let create_fresh = AclBinding::new(
        ResourceType::Topic,
        "fresh",
        PatternType::Literal,
        "User:alice",
        "*",
        AclOperation::Create,
        AclPermission::Allow,
    )
    .unwrap();
    let (service, _dir) = node(vec![describe_all, create_fresh]).await;
    let access = service.access(&identity("alice"));
    let ask = |topic: &'static str| {
        let mut request = kafka::MetadataRequest::default();
        let mut entry = metadata_request::MetadataRequestTopic::default();
        entry.name = Some(name(topic));
        request.topics = Some(vec![entry]);
        request.allow_auto_topic_creation = true;
        let service = &service;
        let access = access.clone();
        async move {
            match ask_as(service, &access, 12, KafkaRequest::Metadata(request)).await {
                Reply::Answer(KafkaResponse::Metadata(response)) => response.topics[0].error_code,
                other => panic!("{other:?}"),
            }
        }
    };
    // LEADER_NOT_AVAILABLE: created, ask again.
    assert_eq!(ask("fresh").await, 5);
    assert_eq!(ask("fresh").await, 0);
    assert_eq!(ask("other").await, TOPIC_DENIED);
    assert_eq!(ask("other").await, TOPIC_DENIED);
}

// Goal: a produce with acks=0 that is denied closes the connection (Kafka's answer: the
// client reads no response), one that is allowed is not answered; the records of a denied
// produce are not written.
#[tokio::test(flavor = "current_thread")]
async fn a_denied_acks_zero_produce_closes_the_connection() {
    let write = Need(AclOperation::Write, ResourceType::Topic, TOPIC)
        .binding(PatternType::Literal, AclPermission::Allow);
    let (service, _dir) = node(vec![write]).await;
    let records = || produce_request(TOPIC, 1, batch(3, &EncodeOptions::default()), 0);
    let bob = service.access(&identity("bob"));
    assert!(matches!(
        ask_as(&service, &bob, 9, records()).await,
        Reply::Close
    ));
    let alice = service.access(&identity("alice"));
    assert!(matches!(
        ask_as(&service, &alice, 9, records()).await,
        Reply::Nothing
    ));
}

// Goal: an idempotent producer without IdempotentWrite on the cluster gets a producer id
// once it may write to at least one topic (Kafka 4's rule, KIP-679), and
// CLUSTER_AUTHORIZATION_FAILED before.
#[tokio::test(flavor = "current_thread")]
async fn init_producer_id_needs_write_on_some_topic() {
    let write = Need(AclOperation::Write, ResourceType::Topic, TOPIC)
        .binding(PatternType::Prefixed, AclPermission::Allow);
    let (service, _dir) = node(vec![write]).await;
    let mut request = kafka::InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let code = |user: &'static str| {
        let access = service.access(&identity(user));
        let request = KafkaRequest::InitProducerId(request.clone());
        let service = &service;
        async move {
            match ask_as(service, &access, 4, request).await {
                Reply::Answer(KafkaResponse::InitProducerId(response)) => response.error_code,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(code("alice").await, 0);
    assert_eq!(code("bob").await, CLUSTER_DENIED);
}
