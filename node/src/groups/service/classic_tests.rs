//! The service's classic side on simulated time: held JoinGroup/SyncGroup answers reach
//! their requests (by the timer or by another member's request), commits are checked against
//! the generation, and a classic member shares a KIP-848 group with a QUIC member.

use std::collections::BTreeSet;

use ledge_protocol::wire::{ConsumerGroupHeartbeatRequest, TopicPartitions};

use super::cluster_tests::MemoryHost;
use super::*;
use crate::clock::SimClock;
use crate::groups::classic::{JoinInput, SyncInput};
use crate::groups::consumer_protocol::{
    ConsumerSubscription, decode_assignment, encode_subscription,
};

fn service() -> Arc<GroupService> {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
    Arc::new(GroupService::new(GroupLimits::default(), 7, clock))
}

fn consumer_join(group_id: &str, member_id: &str) -> JoinInput {
    JoinInput {
        group_id: group_id.into(),
        member_id: member_id.into(),
        client_id: "kafka-python".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![(
            "range".into(),
            encode_subscription(&ConsumerSubscription {
                topics: vec!["t".into()],
                owned: BTreeSet::new(),
            }),
        )],
        require_known_member_id: false,
        ..JoinInput::default()
    }
}

fn commit(partition: u32, offset: i64) -> Vec<ClassicCommit> {
    vec![ClassicCommit {
        topic: "t".into(),
        partition,
        offset,
        metadata: String::new(),
    }]
}

// Goal: two classic members joining at once are both answered when the initial delay ends
// (by the group timer alone), the follower's held SyncGroup is answered by the leader's, and
// commits pass the classic generation checks: current generation yes, old no, a simple
// consumer only on another (empty) group.
#[tokio::test(start_paused = true)]
async fn held_answers_reach_their_requests_and_commits_check_the_generation() {
    let service = service();
    let host = Arc::new(MemoryHost::default());
    let timer = {
        let (service, host) = (Arc::clone(&service), Arc::clone(&host));
        tokio::spawn(async move { service.run_timer(&*host).await })
    };
    let joins: Vec<_> = (0..2)
        .map(|_| {
            let (service, host) = (Arc::clone(&service), Arc::clone(&host));
            tokio::spawn(async move { service.classic_join(&*host, consumer_join("g", "")).await })
        })
        .collect();
    let mut replies = Vec::new();
    for join in joins {
        replies.push(join.await.unwrap().unwrap());
    }
    let generation = replies[0].generation;
    assert_eq!(generation, 1);
    let leader = replies[0].leader.clone();
    let follower = replies
        .iter()
        .map(|reply| reply.member_id.clone())
        .find(|id| *id != leader)
        .unwrap();
    let follower_sync = {
        let service = Arc::clone(&service);
        let follower = follower.clone();
        tokio::spawn(async move {
            service
                .classic_sync(SyncInput {
                    group_id: "g".into(),
                    generation,
                    member_id: follower,
                    ..SyncInput::default()
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let leader_reply = service
        .classic_sync(SyncInput {
            group_id: "g".into(),
            generation,
            member_id: leader.clone(),
            assignments: vec![(follower.clone(), Bytes::from_static(b"follower's"))],
            ..SyncInput::default()
        })
        .await
        .unwrap();
    assert!(leader_reply.assignment.is_empty());
    assert_eq!(
        follower_sync.await.unwrap().unwrap().assignment,
        Bytes::from_static(b"follower's")
    );
    service
        .classic_heartbeat(&*host, "g", generation, &follower, None)
        .unwrap();
    let codes = service
        .classic_offset_commit(&*host, "g", &follower, None, generation, commit(1, 42))
        .await
        .unwrap();
    assert_eq!(codes, vec![ErrorCode::None]);
    assert_eq!(service.committed_offset("g", "t", 1), Some(42));
    let stale = service
        .classic_offset_commit(&*host, "g", &follower, None, generation - 1, commit(1, 7))
        .await;
    assert!(matches!(
        stale,
        Err(GroupServiceError::Classic(
            ClassicError::IllegalGeneration { .. }
        ))
    ));
    let simple = service
        .classic_offset_commit(&*host, "g", "", None, -1, commit(1, 7))
        .await;
    assert!(matches!(
        simple,
        Err(GroupServiceError::Classic(
            ClassicError::UnknownMember { .. }
        ))
    ));
    assert_eq!(
        service
            .classic_offset_commit(&*host, "simple", "", None, -1, commit(2, 5))
            .await
            .unwrap(),
        vec![ErrorCode::None]
    );
    assert_eq!(service.committed_offset("simple", "t", 2), Some(5));
    assert_eq!(service.committed_offset("g", "t", 1), Some(42));
    timer.abort();
}

fn quic_heartbeat(member_id: &str, epoch: i32, owned: &[u32]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: "mixed".into(),
        member_id: member_id.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        subscribed_topics: vec!["t".into()],
        assignor: "range".into(),
        owned_partitions: vec![TopicPartitions {
            topic: "t".into(),
            partitions: owned.to_vec(),
        }],
        ..ConsumerGroupHeartbeatRequest::default()
    }
}

fn partitions(assignment: &[TopicPartitions]) -> Vec<u32> {
    assignment
        .iter()
        .flat_map(|topic| topic.partitions.clone())
        .collect()
}

// Goal (issue 14: "a QUIC member and a Kafka member can be in one group"): a classic member
// joins a KIP-848 group that has a QUIC member. It gets nothing while the QUIC member still
// holds every partition, is told RebalanceInProgress once the QUIC member gave half up, then
// rejoins and gets that half through SyncGroup in the consumer protocol; it commits its own
// partitions and not the QUIC member's, and only at its generation. A QUIC member cannot join a classic group with
// members.
#[tokio::test(start_paused = true)]
async fn a_classic_member_and_a_quic_member_share_one_group() {
    let service = service();
    let host = MemoryHost::default();
    let quic = service.heartbeat(
        &host,
        quic_heartbeat("", 0, &[]),
        "quic",
        Default::default(),
    );
    assert_eq!(quic.error, ErrorCode::None, "{}", quic.message);
    assert_eq!(partitions(&quic.assignment), vec![0, 1, 2, 3]);
    let quic_id = quic.member_id.clone();

    let joined = service
        .classic_join(&host, consumer_join("mixed", ""))
        .await
        .unwrap();
    assert_eq!(joined.protocol_name, "range");
    assert!(
        joined.leader.is_empty(),
        "the node assigns: no member leads"
    );
    let synced = service
        .classic_sync(SyncInput {
            group_id: "mixed".into(),
            generation: joined.generation,
            member_id: joined.member_id.clone(),
            ..SyncInput::default()
        })
        .await
        .unwrap();
    assert!(decode_assignment(&synced.assignment).unwrap().is_empty());

    // The QUIC member is told to give half up, and does.
    let told = service.heartbeat(
        &host,
        quic_heartbeat(&quic_id, quic.member_epoch, &[0, 1, 2, 3]),
        "quic",
        Default::default(),
    );
    let kept = partitions(&told.assignment);
    assert_eq!(kept.len(), 2);
    let settled = service.heartbeat(
        &host,
        quic_heartbeat(&quic_id, told.member_epoch, &kept),
        "quic",
        Default::default(),
    );
    assert_eq!(settled.error, ErrorCode::None);

    assert!(matches!(
        service.classic_heartbeat(&host, "mixed", joined.generation, &joined.member_id, None),
        Err(GroupServiceError::Classic(
            ClassicError::RebalanceInProgress(_)
        ))
    ));
    let rejoined = service
        .classic_join(&host, consumer_join("mixed", &joined.member_id))
        .await
        .unwrap();
    let synced = service
        .classic_sync(SyncInput {
            group_id: "mixed".into(),
            generation: rejoined.generation,
            member_id: rejoined.member_id.clone(),
            ..SyncInput::default()
        })
        .await
        .unwrap();
    let mine: Vec<u32> = decode_assignment(&synced.assignment)
        .unwrap()
        .into_iter()
        .map(|(_, partition)| partition)
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|partition| !kept.contains(partition)));
    service
        .classic_heartbeat(
            &host,
            "mixed",
            rejoined.generation,
            &rejoined.member_id,
            None,
        )
        .unwrap();
    let codes = service
        .classic_offset_commit(
            &host,
            "mixed",
            &rejoined.member_id,
            None,
            rejoined.generation,
            [commit(mine[0], 10), commit(kept[0], 10)].concat(),
        )
        .await
        .unwrap();
    assert_eq!(
        codes,
        vec![ErrorCode::None, ErrorCode::PartitionNotAssigned]
    );
    // At another generation than its JoinGroup answered: ILLEGAL_GENERATION, as Kafka
    // answers a classic member of a consumer group.
    assert!(matches!(
        service
            .classic_offset_commit(
                &host,
                "mixed",
                &rejoined.member_id,
                None,
                rejoined.generation - 1,
                commit(mine[0], 11),
            )
            .await,
        Err(GroupServiceError::Classic(
            ClassicError::IllegalGeneration { .. }
        ))
    ));
    assert_eq!(service.committed_offset("mixed", "t", mine[0]), Some(10));
    let described = service.describe_groups(DescribeGroupsRequest {
        group_ids: vec!["mixed".into()],
    });
    assert_eq!(described.groups[0].members.len(), 2);

    // A classic group with members is closed to KIP-848 joins.
    // (Its join stays held through the initial delay: no timer runs here, so it is not
    // awaited; the member is in the group as soon as the join is handled.)
    let held = {
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            service
                .classic_join(&MemoryHost::default(), consumer_join("classic-only", ""))
                .await
        })
    };
    while !lock(&service.classic).has_members("classic-only") {
        tokio::task::yield_now().await;
    }
    let mut refused = quic_heartbeat("", 0, &[]);
    refused.group_id = "classic-only".into();
    let refused = service.heartbeat(&host, refused, "quic", Default::default());
    assert_eq!(
        refused.error,
        ErrorCode::InconsistentGroupProtocol,
        "{}",
        refused.message
    );
    held.abort();

    // The classic member leaves; the QUIC member gets everything back.
    let left = service
        .classic_leave(
            &host,
            "mixed",
            &[crate::groups::classic::LeavingMember {
                member_id: rejoined.member_id.clone(),
                instance_id: None,
            }],
        )
        .unwrap();
    assert!(left[0].is_ok());
    let back = service.heartbeat(
        &host,
        quic_heartbeat(&quic_id, settled.member_epoch, &kept),
        "quic",
        Default::default(),
    );
    assert_eq!(partitions(&back.assignment), vec![0, 1, 2, 3]);
}
