use bytes::Bytes;

use super::*;

fn state() -> PartitionState {
    PartitionState {
        replicas: vec![1, 2, 3],
        isr: vec![1, 2, 3],
        leader: Some(1),
        leader_epoch: 4,
        partition_epoch: 9,
    }
}

fn request(
    current_leader_epoch: i32,
    fetch_offset: i64,
    last: Option<i32>,
) -> ReplicaFetchPartition {
    ReplicaFetchPartition {
        topic: "orders".into(),
        partition: 0,
        current_leader_epoch,
        fetch_offset,
        last_fetched_epoch: last,
        log_start_offset: 0,
        partition_max_bytes: 1024,
    }
}

// The leader's epochs: 1@0, 2@10, 4@25; its synced end 30, log start 0.
fn epochs() -> LeaderEpochCache {
    let (cache, refused) = LeaderEpochCache::from_batches([(1, 0), (2, 10), (4, 25)]);
    assert!(refused.is_empty());
    cache
}

fn plan(follower: NodeId, request: &ReplicaFetchPartition) -> FetchPlan {
    let epochs = epochs();
    let log = LeaderLogView {
        log_start_offset: 0,
        synced_end: 30,
        high_watermark: 28,
        epochs: &epochs,
    };
    plan_fetch(1, &state(), follower, request, &log)
}

#[test]
fn fencing_by_leadership_and_leader_epoch() {
    // Goal: each fencing rule answers its Kafka error.
    assert_eq!(
        plan(9, &request(4, 30, Some(4))),
        FetchPlan::Refuse(ReplicaFetchError::NotLeaderOrFollower)
    );
    assert_eq!(
        plan(1, &request(4, 30, Some(4))),
        FetchPlan::Refuse(ReplicaFetchError::NotLeaderOrFollower)
    );
    assert_eq!(
        plan(2, &request(3, 30, Some(4))),
        FetchPlan::Refuse(ReplicaFetchError::FencedLeaderEpoch)
    );
    assert_eq!(
        plan(2, &request(5, 30, Some(4))),
        FetchPlan::Refuse(ReplicaFetchError::UnknownLeaderEpoch)
    );
    let epochs = epochs();
    let log = LeaderLogView {
        log_start_offset: 0,
        synced_end: 30,
        high_watermark: 28,
        epochs: &epochs,
    };
    let mut deposed = state();
    deposed.leader = Some(2);
    assert_eq!(
        plan_fetch(1, &deposed, 3, &request(4, 30, Some(4)), &log),
        FetchPlan::Refuse(ReplicaFetchError::NotLeaderOrFollower)
    );
}

#[test]
fn a_diverging_log_is_answered_with_the_epoch_end() {
    // Goal: KIP-320: the follower's last epoch ends below its fetch offset here, or is an
    // epoch the leader never had: answer the largest epoch <= it and where it ends.
    // Follower wrote epoch 2 up to 14, but the leader's epoch 2 ends at 25: no divergence.
    assert_eq!(
        plan(2, &request(4, 14, Some(2))),
        FetchPlan::Read {
            from: 14,
            to: 30,
            max_bytes: 1024
        }
    );
    // Follower's epoch 2 goes past the leader's end of it (25).
    assert_eq!(
        plan(2, &request(4, 27, Some(2))),
        FetchPlan::Diverging(DivergingEpoch {
            epoch: 2,
            end_offset: 25
        })
    );
    // Follower has epoch 3, which the leader never had: answer epoch 2's end.
    assert_eq!(
        plan(2, &request(4, 20, Some(3))),
        FetchPlan::Diverging(DivergingEpoch {
            epoch: 2,
            end_offset: 25
        })
    );
    // An epoch the leader cannot place: out of range (the follower starts over).
    assert_eq!(
        plan(2, &request(4, 20, Some(0))),
        FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange)
    );
}

#[test]
fn offsets_outside_the_leaders_log_are_out_of_range_and_reads_stop_at_the_synced_end() {
    // Goal: below the log start or past the synced end is OffsetOutOfRange; a read never
    // goes past what the leader synced.
    assert_eq!(
        plan(2, &request(4, 31, None)),
        FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange)
    );
    assert_eq!(
        plan(2, &request(4, 0, None)),
        FetchPlan::Read {
            from: 0,
            to: 30,
            max_bytes: 1024
        }
    );
    let epochs = epochs();
    let log = LeaderLogView {
        log_start_offset: 12,
        synced_end: 30,
        high_watermark: 28,
        epochs: &epochs,
    };
    assert_eq!(
        plan_fetch(1, &state(), 2, &request(4, 5, None), &log),
        FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange)
    );
    let answer = answer(
        &request(4, 5, None),
        &FetchPlan::Refuse(ReplicaFetchError::OffsetOutOfRange),
        &log,
        Bytes::from_static(b"x"),
    );
    assert_eq!(answer.error, ReplicaFetchError::OffsetOutOfRange);
    assert!(answer.records.is_empty());
    assert_eq!(
        (
            answer.high_watermark,
            answer.log_start_offset,
            answer.log_end_offset
        ),
        (28, 12, 30)
    );
}
