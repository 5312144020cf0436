//! The group handlers with `kafka-protocol` request types against a real broker on a
//! simulated disk and paused time: what a Kafka consumer's coordinator exchanges look like.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;

use super::*;
use crate::broker::{BrokerConfig, DeclaredTopic};
use crate::clock::{Clock, SimClock};
use crate::kafka::authorize::unrestricted as open;
use crate::sim::SimDisk;

async fn broker() -> Arc<Broker<SimDisk>> {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
    let broker = Broker::open(
        SimDisk::new(14),
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

fn group(id: &str) -> GroupId {
    GroupId(text(id))
}

fn join_request(member_id: &str) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = text("range");
    protocol.metadata = encode_subscription(&ConsumerSubscription {
        topics: vec!["t".into()],
        owned: Default::default(),
    });
    let mut request = JoinGroupRequest::default();
    request.group_id = group("g");
    request.session_timeout_ms = 10_000;
    request.rebalance_timeout_ms = 30_000;
    request.member_id = text(member_id);
    request.protocol_type = text("consumer");
    request.protocols = vec![protocol];
    request
}

fn commit_request(member_id: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 1;
    partition.committed_offset = offset;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(text("t"));
    topic.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = group("g");
    request.generation_id_or_member_epoch = generation;
    request.member_id = text(member_id);
    request.topics = vec![topic];
    request
}

fn commit_code(response: &OffsetCommitResponse) -> i16 {
    response.topics[0].partitions[0].error_code
}

// Goal: FindCoordinator refuses what it does not serve with the code that makes each
// client stop or retry as it should: a transaction key is TRANSACTIONAL_ID_AUTHORIZATION_FAILED
// (not retriable: a transactional producer fails at once instead of retrying until its
// caller gives up), a share-group key COORDINATOR_NOT_AVAILABLE, an unknown key type
// INVALID_REQUEST; unbatched (v3) and batched (v4) alike, a group key beside them served.
#[tokio::test(start_paused = true)]
async fn find_coordinator_refuses_transaction_share_and_unknown_keys() {
    let broker = broker().await;
    let registered = BTreeMap::new();
    let addresses = crate::kafka::handlers::NodeAddresses {
        own: "127.0.0.1:9092",
        kind: crate::kafka::dispatch::ListenerKind::Plaintext,
        registered: &registered,
    };
    let cases = [
        (
            KEY_TYPE_TRANSACTION,
            ResponseError::TransactionalIdAuthorizationFailed.code(),
        ),
        (
            KEY_TYPE_SHARE,
            ResponseError::CoordinatorNotAvailable.code(),
        ),
        (7, ResponseError::InvalidRequest.code()),
        (-1, ResponseError::InvalidRequest.code()),
    ];
    for (key_type, code) in cases {
        let mut find = FindCoordinatorRequest::default();
        find.key_type = key_type;
        find.key = text("txn-1");
        let single = find_coordinator(&broker, &open(), &addresses, find.clone(), 3).await;
        assert_eq!(single.error_code, code, "key type {key_type}, v3");
        assert_eq!((single.node_id, single.port), (BrokerId(-1), -1));
        assert!(single.error_message.is_some());

        find.coordinator_keys = vec![text("txn-1"), text("txn-2")];
        let batched = find_coordinator(&broker, &open(), &addresses, find, 4).await;
        assert_eq!(batched.coordinators.len(), 2);
        for answer in &batched.coordinators {
            assert_eq!(answer.error_code, code, "key type {key_type}, v4");
            assert_eq!((answer.node_id, answer.port), (BrokerId(-1), -1));
        }
    }
    let mut find = FindCoordinatorRequest::default();
    find.key_type = KEY_TYPE_GROUP;
    find.key = text("txn-1");
    let group = find_coordinator(&broker, &open(), &addresses, find, 3).await;
    assert_eq!(group.error_code, 0);
    assert_eq!((group.host.as_str(), group.port), ("127.0.0.1", 9092));
}

// Goal: one consumer's whole life with the group handlers at the versions kafka-python and
// the Java client use: FindCoordinator, JoinGroup (MEMBER_ID_REQUIRED, then the held join
// answered after the initial delay by the group timer), SyncGroup, Heartbeat, OffsetCommit
// (current generation yes, stale ILLEGAL_GENERATION), OffsetFetch (single and batched),
// DescribeGroups, ListGroups with a states filter, LeaveGroup, DeleteGroups.
#[tokio::test(start_paused = true)]
async fn a_consumer_joins_commits_describes_and_leaves() {
    let broker = broker().await;
    let timer = tokio::spawn(Arc::clone(&broker).run_group_timer());

    let mut find = FindCoordinatorRequest::default();
    find.key = text("g");
    let registered = BTreeMap::new();
    let addresses = crate::kafka::handlers::NodeAddresses {
        own: "127.0.0.1:9092",
        kind: crate::kafka::dispatch::ListenerKind::Plaintext,
        registered: &registered,
    };
    let found = find_coordinator(&broker, &open(), &addresses, find.clone(), 3).await;
    assert_eq!(found.error_code, 0);
    assert_eq!((found.host.as_str(), found.port), ("127.0.0.1", 9092));
    find.coordinator_keys = vec![text("g"), text("h")];
    let batched = find_coordinator(&broker, &open(), &addresses, find, 4).await;
    assert_eq!(batched.coordinators.len(), 2);

    let first = join_group(
        &broker,
        &open(),
        "consumer-1",
        "/127.0.0.1",
        join_request(""),
        5,
    )
    .await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    assert!(member_id.starts_with("consumer-1-"));
    let joined = join_group(
        &broker,
        &open(),
        "consumer-1",
        "/127.0.0.1",
        join_request(&member_id),
        5,
    )
    .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);

    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = text(member_id.clone());
    assignment.assignment = Bytes::from_static(b"the leader's bytes");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group("g");
    sync.generation_id = 1;
    sync.member_id = text(member_id.clone());
    sync.assignments = vec![assignment];
    let synced = sync_group(&broker, &open(), sync, 3).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"the leader's bytes"));

    let mut beat = HeartbeatRequest::default();
    beat.group_id = group("g");
    beat.generation_id = 1;
    beat.member_id = text(member_id.clone());
    assert_eq!(
        heartbeat(&broker, &open(), beat.clone()).await.error_code,
        0
    );
    beat.generation_id = 0;
    assert_eq!(
        heartbeat(&broker, &open(), beat).await.error_code,
        ResponseError::IllegalGeneration.code()
    );

    let committed = offset_commit(&broker, commit_request(&member_id, 1, 42)).await;
    assert_eq!(commit_code(&committed), 0);
    let stale = offset_commit(&broker, commit_request(&member_id, 0, 7)).await;
    assert_eq!(commit_code(&stale), ResponseError::IllegalGeneration.code());
    let outsider = offset_commit(&broker, commit_request("", -1, 7)).await;
    assert_eq!(
        commit_code(&outsider),
        ResponseError::UnknownMemberId.code()
    );

    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = group("g");
    fetch.topics = None;
    let fetched = offset_fetch(&broker, &open(), fetch, 5).await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 42);
    let mut batched_fetch = OffsetFetchRequest::default();
    let mut fetch_group = OffsetFetchRequestGroup::default();
    fetch_group.group_id = group("g");
    fetch_group.topics = None;
    batched_fetch.groups = vec![fetch_group];
    let fetched = offset_fetch(&broker, &open(), batched_fetch, 8).await;
    assert_eq!(
        fetched.groups[0].topics[0].partitions[0].committed_offset,
        42
    );

    let mut describe = DescribeGroupsRequest::default();
    describe.groups = vec![group("g"), group("nobody")];
    let described = describe_groups(&broker, &open(), describe, 5).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].protocol_data.as_str(), "range");
    assert_eq!(
        described.groups[0].members[0].member_assignment,
        Bytes::from_static(b"the leader's bytes")
    );
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    let mut list = ListGroupsRequest::default();
    list.states_filter = vec![text("Stable")];
    let listed = list_groups(&broker, &open(), list.clone()).await;
    assert_eq!(listed.groups.len(), 1);
    assert_eq!(listed.groups[0].protocol_type.as_str(), "consumer");

    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![group("g")];
    let refused = delete_groups(&broker, delete.clone()).await;
    assert_eq!(
        refused.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );

    let mut leave = LeaveGroupRequest::default();
    leave.group_id = group("g");
    let mut leaving = MemberIdentity::default();
    leaving.member_id = text(member_id.clone());
    leave.members = vec![leaving];
    let left = leave_group(&broker, &open(), leave, 3).await;
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);
    assert!(list_groups(&broker, &open(), list).await.groups.is_empty());

    let deleted = delete_groups(&broker, delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = group("g");
    fetch.topics = None;
    assert!(
        offset_fetch(&broker, &open(), fetch, 5)
            .await
            .topics
            .is_empty()
    );
    timer.abort();
}

// Goal: a consumer outside group management (kafka-python's manual commit without
// subscribe) commits with generation -1 and no member id, and deletes the offset later;
// OffsetDelete refuses a topic an active member subscribes to; bad commits are refused per
// partition.
#[tokio::test(start_paused = true)]
async fn a_simple_consumer_commits_and_offsets_are_deleted() {
    let broker = broker().await;
    let simple = offset_commit(&broker, commit_request("", -1, 9)).await;
    assert_eq!(commit_code(&simple), 0);
    let mut negative = commit_request("", -1, -5);
    negative.topics[0].partitions[0].committed_metadata = Some(text("x".repeat(5000)));
    assert_eq!(
        commit_code(&offset_commit(&broker, negative).await),
        ResponseError::OffsetMetadataTooLarge.code()
    );
    assert_eq!(
        commit_code(&offset_commit(&broker, commit_request("", -1, -5)).await),
        ResponseError::InvalidCommitOffsetSize.code()
    );
    let mut partition = OffsetDeleteRequestPartition::default();
    partition.partition_index = 1;
    let mut topic = OffsetDeleteRequestTopic::default();
    topic.name = TopicName(text("t"));
    topic.partitions = vec![partition];
    let mut delete = OffsetDeleteRequest::default();
    delete.group_id = group("g");
    delete.topics = vec![topic];
    let deleted = offset_delete(&broker, delete.clone()).await;
    assert_eq!(deleted.error_code, 0);
    assert_eq!(deleted.topics[0].partitions[0].error_code, 0);
    let mut fetch = OffsetFetchRequest::default();
    fetch.group_id = group("g");
    fetch.topics = None;
    assert!(
        offset_fetch(&broker, &open(), fetch, 5)
            .await
            .topics
            .is_empty()
    );

    // A member subscribed to `t` (its join held in the initial delay) protects its offsets.
    let commit_again = offset_commit(&broker, commit_request("", -1, 11)).await;
    assert_eq!(commit_code(&commit_again), 0);
    let joining = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            join_group(&broker, &open(), "c", "/127.0.0.1", join_request(""), 3).await
        })
    };
    loop {
        let mut describe = DescribeGroupsRequest::default();
        describe.groups = vec![group("g")];
        if !describe_groups(&broker, &open(), describe, 5).await.groups[0]
            .members
            .is_empty()
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    let refused = offset_delete(&broker, delete).await;
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ResponseError::GroupSubscribedToTopic.code()
    );
    joining.abort();
}
