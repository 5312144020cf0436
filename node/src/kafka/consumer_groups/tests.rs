//! ConsumerGroupHeartbeat and ConsumerGroupDescribe with `kafka-protocol` request types
//! against a real broker on a simulated disk and paused time: what a Kafka 4 consumer with
//! `group.protocol=consumer` exchanges, beside native QUIC and classic members.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{GroupId, JoinGroupRequest};
use ledge_protocol::wire::{
    ConsumerGroupHeartbeatRequest as NativeHeartbeat, ErrorCode, Request, Response,
    TopicPartitions as NativeTopicPartitions,
};

use super::*;
use crate::broker::{BrokerConfig, DeclaredTopic};
use crate::clock::{Clock, SimClock};
use crate::groups::consumer_protocol::{ConsumerSubscription, encode_subscription};
use crate::kafka::authorize::unrestricted as open;
use crate::sim::SimDisk;

async fn broker() -> Arc<Broker<SimDisk>> {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
    let broker = Broker::open(
        SimDisk::new(68),
        Path::new("/data"),
        BrokerConfig::default(),
        clock,
    )
    .await
    .unwrap();
    broker
        .reconcile(&[DeclaredTopic {
            name: "t".into(),
            partitions: 2,
            configs: BTreeMap::new(),
            origin: "test".into(),
        }])
        .await
        .unwrap();
    Arc::new(broker)
}

/// The join a Kafka 4 consumer sends (v1: its own member id, epoch 0, every field set).
fn join(member_id: &str) -> ConsumerGroupHeartbeatRequest {
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = GroupId(text("g"));
    request.member_id = text(member_id);
    request.member_epoch = 0;
    request.rebalance_timeout_ms = 30_000;
    request.subscribed_topic_names = Some(vec![TopicName(text("t"))]);
    request.topic_partitions = Some(Vec::new());
    request
}

/// A heartbeat that changes nothing: every optional field null.
fn beat(member_id: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
    let mut request = ConsumerGroupHeartbeatRequest::default();
    request.group_id = GroupId(text("g"));
    request.member_id = text(member_id);
    request.member_epoch = epoch;
    request
}

/// The id Kafka clients are given for topic `t`, as Metadata lists it.
async fn t_id(broker: &Broker<SimDisk>) -> uuid::Uuid {
    let id = TopicIds::of(broker).await.by_name["t"];
    assert_ne!(id, uuid::Uuid::nil());
    id
}

fn owning(
    mut request: ConsumerGroupHeartbeatRequest,
    topic_id: uuid::Uuid,
    partitions: &[i32],
) -> ConsumerGroupHeartbeatRequest {
    let mut owned = OwnedTopic::default();
    owned.topic_id = topic_id;
    owned.partitions = partitions.to_vec();
    request.topic_partitions = Some(vec![owned]);
    request
}

/// The partitions of `t` an answer assigns; `None` when it sends no assignment.
fn assigned(response: &ConsumerGroupHeartbeatResponse, topic_id: uuid::Uuid) -> Option<Vec<i32>> {
    response.assignment.as_ref().map(|assignment| {
        assignment
            .topic_partitions
            .iter()
            .inspect(|topic| assert_eq!(topic.topic_id, topic_id))
            .flat_map(|topic| topic.partitions.clone())
            .collect()
    })
}

async fn describe(
    broker: &Broker<SimDisk>,
    group: &str,
    version: i16,
) -> consumer_group_describe_response::DescribedGroup {
    let mut request = ConsumerGroupDescribeRequest::default();
    request.group_ids = vec![GroupId(text(group))];
    consumer_group_describe(broker, &open(), request, version)
        .await
        .groups
        .remove(0)
}

// Goal: a Kafka 4 consumer's whole life over ConsumerGroupHeartbeat v1, sharing its group
// with a native QUIC member: it joins under its own id and gets both partitions by topic id;
// a heartbeat with every field null keeps everything and sends no assignment; when the QUIC
// member joins, the Kafka member is told to give one partition up (new epoch), the QUIC
// member gets it only once the Kafka member reports it gone; commits with the member epoch
// are accepted; ConsumerGroupDescribe shows both members with their current and target
// assignments; a leave answers epoch -1 and the QUIC member then takes both partitions.
#[tokio::test(start_paused = true)]
async fn a_kafka_member_and_a_quic_member_share_a_group() {
    let broker = broker().await;
    let t = t_id(&broker).await;
    let joined = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-1"), 1).await;
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(joined.member_id.as_deref(), Some("kafka-1"));
    assert!(joined.member_epoch > 0);
    assert!(joined.heartbeat_interval_ms > 0);
    assert_eq!(assigned(&joined, t), Some(vec![0, 1]));
    let epoch = joined.member_epoch;

    let acked = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        owning(beat("kafka-1", epoch), t, &[0, 1]),
        1,
    )
    .await;
    assert_eq!(acked.error_code, 0);
    assert_eq!(acked.member_epoch, epoch);
    assert_eq!(
        assigned(&acked, t),
        None,
        "an unchanged assignment is not sent again"
    );
    let quiet = consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", epoch), 1).await;
    assert_eq!((quiet.error_code, assigned(&quiet, t)), (0, None));

    let native_join = NativeHeartbeat {
        group_id: "g".into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscribed_topics: vec!["t".into()],
        assignor: "uniform".into(),
        ..NativeHeartbeat::default()
    };
    let Response::ConsumerGroupHeartbeat(quic) = broker
        .handle(Request::ConsumerGroupHeartbeat(native_join.clone()))
        .await
    else {
        panic!("wrong response")
    };
    assert_eq!(quic.error, ErrorCode::None, "{}", quic.message);
    assert!(
        quic.assignment.is_empty(),
        "both partitions are still owned"
    );

    let revoked =
        consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", epoch), 1).await;
    assert_eq!(revoked.error_code, 0);
    assert!(revoked.member_epoch > epoch);
    let kept = assigned(&revoked, t).expect("a changed assignment is sent");
    assert_eq!(kept.len(), 1);
    let epoch = revoked.member_epoch;
    let released = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        owning(beat("kafka-1", epoch), t, &kept),
        1,
    )
    .await;
    assert_eq!(released.error_code, 0);

    let Response::ConsumerGroupHeartbeat(quic) = broker
        .handle(Request::ConsumerGroupHeartbeat(NativeHeartbeat {
            member_id: quic.member_id.clone(),
            member_epoch: quic.member_epoch,
            ..native_join.clone()
        }))
        .await
    else {
        panic!("wrong response")
    };
    assert_eq!(quic.error, ErrorCode::None, "{}", quic.message);
    let freed = 1 - kept[0] as u32;
    assert_eq!(
        quic.assignment,
        vec![NativeTopicPartitions {
            topic: "t".into(),
            partitions: vec![freed]
        }]
    );

    let mut commit = kafka_protocol::messages::OffsetCommitRequest::default();
    commit.group_id = GroupId(text("g"));
    commit.member_id = text("kafka-1");
    commit.generation_id_or_member_epoch = epoch;
    let mut topic =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("t"));
    let mut partition =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default();
    partition.partition_index = kept[0];
    partition.committed_offset = 5;
    topic.partitions = vec![partition];
    commit.topics = vec![topic];
    let committed = crate::kafka::groups::offset_commit(&broker, commit).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);

    let described = describe(&broker, "g", 1).await;
    assert_eq!(described.error_code, 0);
    assert_eq!(described.group_state.as_str(), "Stable");
    assert_eq!(described.assignor_name.as_str(), "cooperative-sticky");
    assert!(described.group_epoch >= described.assignment_epoch);
    assert_eq!(described.members.len(), 2);
    let kafka = described
        .members
        .iter()
        .find(|member| member.member_id.as_str() == "kafka-1")
        .unwrap();
    assert_eq!(kafka.client_id.as_str(), "java");
    assert_eq!(kafka.member_type, MEMBER_TYPE_CONSUMER);
    assert_eq!(kafka.subscribed_topic_names, vec![TopicName(text("t"))]);
    assert_eq!(
        kafka.assignment.topic_partitions[0].topic_name.as_str(),
        "t"
    );
    assert_eq!(kafka.assignment.topic_partitions[0].partitions, kept);
    assert_eq!(kafka.target_assignment.topic_partitions[0].partitions, kept);
    // v0 has no member type.
    assert_eq!(describe(&broker, "g", 0).await.members[0].member_type, -1);

    let mut leave = beat("kafka-1", -1);
    leave.member_epoch = -1;
    let left = consumer_group_heartbeat(&broker, &open(), "java", leave, 1).await;
    assert_eq!((left.error_code, left.member_epoch), (0, -1));
    assert_eq!(assigned(&left, t), None);
    let Response::ConsumerGroupHeartbeat(quic) = broker
        .handle(Request::ConsumerGroupHeartbeat(NativeHeartbeat {
            member_id: quic.member_id.clone(),
            member_epoch: quic.member_epoch,
            owned_partitions: quic.assignment.clone(),
            ..native_join
        }))
        .await
    else {
        panic!("wrong response")
    };
    assert_eq!(quic.assignment[0].partitions, vec![0, 1]);
    let after = consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", epoch), 1).await;
    assert_eq!(after.error_code, ResponseError::UnknownMemberId.code());
}

/// An OffsetCommit of `offset` for partition `partition` of `t` by `member_id` at `epoch`:
/// the partition's code.
async fn commit_code(
    broker: &Broker<SimDisk>,
    member_id: &str,
    epoch: i32,
    partition: i32,
    offset: i64,
) -> i16 {
    let mut commit = kafka_protocol::messages::OffsetCommitRequest::default();
    commit.group_id = GroupId(text("g"));
    commit.member_id = text(member_id);
    commit.generation_id_or_member_epoch = epoch;
    let mut topic =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("t"));
    let mut entry =
        kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default();
    entry.partition_index = partition;
    entry.committed_offset = offset;
    topic.partitions = vec![entry];
    commit.topics = vec![topic];
    crate::kafka::groups::offset_commit(broker, commit)
        .await
        .topics[0]
        .partitions[0]
        .error_code
}

// Goal: Kafka's epoch fencing over the wire. A Kafka member whose answer moving it to a new
// epoch was lost heartbeats again at its previous epoch: FENCED_MEMBER_EPOCH (110) when it
// leaves its owned partitions out (null) or owns more than its new assignment, accepted
// (answered with the new epoch) when it owns only what it kept. Its commit at the previous
// epoch is STALE_MEMBER_EPOCH (113), at the current one accepted. A fenced member rejoins
// under its id at epoch 0 (KIP-848).
#[tokio::test(start_paused = true)]
async fn a_kafka_member_behind_the_coordinator_is_fenced_unless_at_its_previous_epoch() {
    let broker = broker().await;
    let t = t_id(&broker).await;
    let joined = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-1"), 1).await;
    assert_eq!(assigned(&joined, t), Some(vec![0, 1]));
    let first = joined.member_epoch;
    let acked = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        owning(beat("kafka-1", first), t, &[0, 1]),
        1,
    )
    .await;
    assert_eq!(acked.error_code, 0);
    // A second member makes the first give one partition up, at a new epoch.
    let second = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-2"), 1).await;
    assert_eq!(second.error_code, 0);
    let moved = consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", first), 1).await;
    assert_eq!(moved.error_code, 0);
    let current = moved.member_epoch;
    assert!(current > first);
    let kept = assigned(&moved, t).expect("a changed assignment is sent");
    assert_eq!(kept.len(), 1);

    // That answer is lost: the member is still at `first`, owning both.
    let null_owned =
        consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", first), 1).await;
    assert_eq!(
        null_owned.error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    let owns_more = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        owning(beat("kafka-1", first), t, &[0, 1]),
        1,
    )
    .await;
    assert_eq!(
        owns_more.error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    let within = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        owning(beat("kafka-1", first), t, &kept),
        1,
    )
    .await;
    assert_eq!(within.error_code, 0, "{:?}", within.error_message);
    assert_eq!(within.member_epoch, current);

    assert_eq!(
        commit_code(&broker, "kafka-1", first, kept[0], 3).await,
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit_code(&broker, "kafka-1", current + 1, kept[0], 3).await,
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit_code(&broker, "kafka-1", current, kept[0], 3).await,
        0
    );

    // Fenced for an epoch ahead, it gives everything up and rejoins under its id.
    let ahead =
        consumer_group_heartbeat(&broker, &open(), "java", beat("kafka-1", current + 1), 1).await;
    assert_eq!(ahead.error_code, ResponseError::FencedMemberEpoch.code());
    let rejoined = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-1"), 1).await;
    assert_eq!(rejoined.error_code, 0, "{:?}", rejoined.error_message);
    assert_eq!(rejoined.member_id.as_deref(), Some("kafka-1"));
    assert!(rejoined.member_epoch >= current);
    assert_eq!(describe(&broker, "g", 1).await.members.len(), 2);
}

// Goal: each way a heartbeat is refused gets Kafka's code: UNKNOWN_MEMBER_ID for an id the
// group does not know, FENCED_MEMBER_EPOCH for an epoch ahead of the coordinator's,
// UNSUPPORTED_ASSIGNOR for an assignor the node lacks or one other than the group's,
// INVALID_REGULAR_EXPRESSION, INVALID_REQUEST for an oversized rebalance timeout or member
// id, GROUP_ID_NOT_FOUND for a classic group with members, GROUP_AUTHORIZATION_FAILED for a
// transform's position group; a v0 join without an id is given one.
#[tokio::test(start_paused = true)]
async fn refused_heartbeats_get_kafkas_codes() {
    let broker = broker().await;
    let code = |response: ConsumerGroupHeartbeatResponse| response.error_code;

    let unknown = consumer_group_heartbeat(&broker, &open(), "java", beat("nobody", 3), 1).await;
    assert_eq!(code(unknown), ResponseError::UnknownMemberId.code());
    let mut leave_unknown = beat("nobody", -1);
    leave_unknown.member_epoch = -1;
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", leave_unknown, 1).await),
        ResponseError::UnknownMemberId.code()
    );

    let joined = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-1"), 1).await;
    assert_eq!(joined.error_code, 0);
    let ahead = consumer_group_heartbeat(
        &broker,
        &open(),
        "java",
        beat("kafka-1", joined.member_epoch + 1),
        1,
    )
    .await;
    assert_eq!(ahead.error_code, ResponseError::FencedMemberEpoch.code());
    assert!(ahead.error_message.is_some());

    let mut unknown_assignor = join("kafka-2");
    unknown_assignor.server_assignor = Some(text("magic"));
    let refused = consumer_group_heartbeat(&broker, &open(), "java", unknown_assignor, 1).await;
    assert_eq!(
        refused.error_code,
        ResponseError::UnsupportedAssignor.code()
    );
    assert!(refused.error_message.unwrap().contains("magic"));
    let mut other_assignor = join("kafka-2");
    other_assignor.server_assignor = Some(text("range"));
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", other_assignor, 1).await),
        ResponseError::UnsupportedAssignor.code()
    );

    let mut bad_regex = join("kafka-3");
    bad_regex.group_id = GroupId(text("by-pattern"));
    bad_regex.subscribed_topic_names = None;
    bad_regex.subscribed_topic_regex = Some(text("t("));
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", bad_regex, 1).await),
        ResponseError::InvalidRegularExpression.code()
    );

    let mut slow = join("kafka-4");
    slow.rebalance_timeout_ms = i32::MAX;
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", slow, 1).await),
        ResponseError::InvalidRequest.code()
    );
    let long_id = "x".repeat(crate::groups::coordinator::CLIENT_MEMBER_ID_BYTES_MAX + 1);
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", join(&long_id), 1).await),
        ResponseError::InvalidRequest.code()
    );

    // A classic group with a member: Kafka 4 answers GROUP_ID_NOT_FOUND when it cannot
    // convert it.
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = encode_subscription(&ConsumerSubscription {
        topics: vec!["t".into()],
        owned: Default::default(),
    });
    let mut classic_join = JoinGroupRequest::default();
    classic_join.group_id = GroupId(text("classic"));
    classic_join.session_timeout_ms = 10_000;
    classic_join.rebalance_timeout_ms = 10_000;
    classic_join.member_id = text("");
    classic_join.protocol_type = text("consumer");
    classic_join.protocols = vec![protocol];
    // v3 joins at once (no MEMBER_ID_REQUIRED); its answer waits out the initial rebalance
    // delay, while the group already has the member.
    let held = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            crate::kafka::groups::join_group(&broker, &open(), "old", "", classic_join, 3)
                .await
                .error_code
        })
    };
    tokio::task::yield_now().await;
    let mut into_classic = join("kafka-5");
    into_classic.group_id = GroupId(text("classic"));
    let refused = consumer_group_heartbeat(&broker, &open(), "java", into_classic, 1).await;
    assert_eq!(refused.error_code, ResponseError::GroupIdNotFound.code());

    let mut transform = join("kafka-6");
    transform.group_id = GroupId(text("__transform.enrich"));
    assert_eq!(
        code(consumer_group_heartbeat(&broker, &open(), "java", transform, 1).await),
        ResponseError::GroupAuthorizationFailed.code()
    );
    held.abort();

    // v0: the coordinator names the member.
    let mut v0 = join("");
    v0.group_id = GroupId(text("v0"));
    let named = consumer_group_heartbeat(&broker, &open(), "java", v0, 0).await;
    assert_eq!(named.error_code, 0);
    assert!(!named.member_id.unwrap().is_empty());
}

// Goal: the request checks are Kafka's, message for message, at each epoch: blank group,
// instance, rack and regex; a v1 member without an id; a join without rebalance timeout,
// with owned partitions or without a subscription; a static leave without instance id; an
// epoch below -2. Well-formed requests pass.
#[test]
fn malformed_heartbeats_are_invalid_requests() {
    let message = |request: &ConsumerGroupHeartbeatRequest, version: i16| match check_heartbeat(
        request, version,
    ) {
        Ok(()) => "ok".to_string(),
        Err((error, message)) => {
            assert_eq!(error, ResponseError::InvalidRequest);
            message
        }
    };
    assert_eq!(message(&join("m"), 1), "ok");
    assert_eq!(message(&join(""), 0), "ok");
    assert_eq!(message(&beat("m", 4), 1), "ok");
    let mut blank_group = join("m");
    blank_group.group_id = GroupId(text(" "));
    assert_eq!(message(&blank_group, 1), "GroupId can't be empty.");
    let mut blank_instance = join("m");
    blank_instance.instance_id = Some(text(""));
    assert_eq!(message(&blank_instance, 1), "InstanceId can't be empty.");
    let mut blank_rack = join("m");
    blank_rack.rack_id = Some(text(""));
    assert_eq!(message(&blank_rack, 1), "RackId can't be empty.");
    let mut blank_regex = join("m");
    blank_regex.subscribed_topic_regex = Some(text(""));
    assert_eq!(
        message(&blank_regex, 1),
        "SubscribedTopicRegex must not be empty."
    );
    assert_eq!(message(&join(""), 1), "MemberId can't be empty.");
    assert_eq!(message(&beat("", 3), 0), "MemberId can't be empty.");
    let mut no_timeout = join("m");
    no_timeout.rebalance_timeout_ms = -1;
    assert_eq!(
        message(&no_timeout, 1),
        "RebalanceTimeoutMs must be provided in first request."
    );
    let with_owned = owning(join("m"), uuid::Uuid::nil(), &[0]);
    assert_eq!(
        message(&with_owned, 1),
        "TopicPartitions must be empty when (re-)joining."
    );
    let mut null_owned = join("m");
    null_owned.topic_partitions = None;
    assert_eq!(
        message(&null_owned, 1),
        "TopicPartitions must be empty when (re-)joining."
    );
    let mut no_subscription = join("m");
    no_subscription.subscribed_topic_names = None;
    assert_eq!(
        message(&no_subscription, 1),
        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
    );
    let mut static_leave = beat("m", -2);
    static_leave.member_epoch = -2;
    assert_eq!(message(&static_leave, 1), "InstanceId can't be null.");
    static_leave.instance_id = Some(text("i"));
    assert_eq!(message(&static_leave, 1), "ok");
    assert_eq!(message(&beat("m", -3), 1), "MemberEpoch is invalid.");
    let mut negative_timeout = beat("m", 3);
    negative_timeout.rebalance_timeout_ms = -5;
    assert_eq!(
        message(&negative_timeout, 1),
        "RebalanceTimeoutMs must be -1 or a duration."
    );
}

// Goal: ConsumerGroupDescribe answers GROUP_ID_NOT_FOUND for what is not a KIP-848 group (an
// unknown id, a classic group), so the admin client falls back to DescribeGroups as against
// Kafka; a classic member of a KIP-848 group is listed with member type 0 (classic).
#[tokio::test(start_paused = true)]
async fn describe_tells_consumer_groups_from_the_rest() {
    let broker = broker().await;
    let unknown = describe(&broker, "nobody", 1).await;
    assert_eq!(unknown.error_code, ResponseError::GroupIdNotFound.code());
    assert_eq!(
        unknown.error_message.as_deref(),
        Some("Group nobody is not a consumer group.")
    );

    let joined = consumer_group_heartbeat(&broker, &open(), "java", join("kafka-1"), 1).await;
    assert_eq!(joined.error_code, 0);
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = encode_subscription(&ConsumerSubscription {
        topics: vec!["t".into()],
        owned: Default::default(),
    });
    let mut classic_join = JoinGroupRequest::default();
    classic_join.group_id = GroupId(text("g"));
    classic_join.session_timeout_ms = 10_000;
    classic_join.rebalance_timeout_ms = 10_000;
    classic_join.protocol_type = text("consumer");
    classic_join.protocols = vec![protocol];
    let classic =
        crate::kafka::groups::join_group(&broker, &open(), "old", "", classic_join, 3).await;
    assert_eq!(classic.error_code, 0);
    let described = describe(&broker, "g", 1).await;
    assert_eq!(described.error_code, 0);
    let types: BTreeMap<String, i8> = described
        .members
        .iter()
        .map(|member| (member.member_id.to_string(), member.member_type))
        .collect();
    assert_eq!(types.get("kafka-1"), Some(&MEMBER_TYPE_CONSUMER));
    assert_eq!(
        types.get(classic.member_id.as_str()),
        Some(&MEMBER_TYPE_CLASSIC)
    );
}

// Goal (issue 15): a KIP-848 regex subscription (SubscribedTopicRegex) is assigned only the
// topics the member's principal may Describe. Method: topics t and t2 both match `t.*`;
// alice may Describe t only; her join is assigned t's partitions and none of t2's.
#[tokio::test(start_paused = true)]
async fn a_regex_subscription_matches_only_topics_the_member_may_describe() {
    use crate::security::acl::{
        AclBinding, AclPermission, Authorizer, AuthorizerConfig, PatternType,
    };
    let broker = broker().await;
    broker
        .reconcile(&[DeclaredTopic {
            name: "t2".into(),
            partitions: 2,
            configs: BTreeMap::new(),
            origin: "test".into(),
        }])
        .await
        .unwrap();
    let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
    for (resource_type, name, operation) in [
        (ResourceType::Group, "by-regex", AclOperation::Read),
        (ResourceType::Topic, "t", AclOperation::Describe),
    ] {
        let binding = AclBinding::new(
            resource_type,
            name,
            PatternType::Literal,
            "User:alice",
            "*",
            operation,
            AclPermission::Allow,
        )
        .unwrap();
        authorizer.add(binding).unwrap();
    }
    let alice = crate::security::identity::ClientIdentity {
        principal: "User:alice".parse().unwrap(),
        host: std::net::IpAddr::from([10, 0, 0, 7]),
        method: crate::security::identity::AuthMethod::Certificate,
    };
    let access = Access::enforced(alice, Arc::new(authorizer));
    let mut request = join("kafka-regex");
    request.group_id = GroupId(text("by-regex"));
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some(text("t.*"));
    let joined = consumer_group_heartbeat(&broker, &access, "java", request, 1).await;
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    let t = t_id(&broker).await;
    // Only t's partitions (assigned() checks every entry is t's).
    assert_eq!(assigned(&joined, t), Some(vec![0, 1]));
    // The same join without authorization is assigned t2 too.
    let mut request = join("kafka-open");
    request.group_id = GroupId(text("by-regex-open"));
    request.subscribed_topic_names = None;
    request.subscribed_topic_regex = Some(text("t.*"));
    let open_join = consumer_group_heartbeat(&broker, &open(), "java", request, 1).await;
    let topics = open_join
        .assignment
        .map_or(0, |assignment| assignment.topic_partitions.len());
    assert_eq!(topics, 2);
}
