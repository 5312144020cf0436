use std::time::Duration;

use ledge_protocol::wire::replica::DivergingEpoch;

use super::*;
use crate::clock::{Clock, SystemClock};

fn config() -> FollowerConfig {
    FollowerConfig {
        fetch_wait_max: Duration::from_millis(500),
        fetch_bytes_max: 1 << 20,
        partition_fetch_bytes_max: 1 << 16,
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1000),
    }
}

fn state(leader: NodeId, leader_epoch: i32) -> PartitionState {
    PartitionState {
        replicas: vec![1, 2, 3],
        isr: vec![1, 2, 3],
        leader: Some(leader),
        leader_epoch,
        partition_epoch: 1,
    }
}

fn epochs(entries: &[(i32, i64)]) -> LeaderEpochCache {
    LeaderEpochCache::from_batches(entries.iter().copied()).0
}

fn answer(error: ReplicaFetchError) -> ReplicaFetchPartitionResponse {
    ReplicaFetchPartitionResponse {
        topic: "orders".into(),
        partition: 0,
        error,
        high_watermark: 7,
        log_start_offset: 0,
        log_end_offset: 20,
        diverging_epoch: None,
        records: Bytes::new(),
    }
}

#[test]
fn a_fetch_carries_the_synced_end_and_epochs_and_one_is_in_flight_at_a_time() {
    // Goal: the fetch names the current leader epoch, the synced end as fetch offset, the
    // last epoch and the log start; no second fetch while one is out.
    let now = SystemClock.now();
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let cache = epochs(&[(1, 0), (3, 8)]);
    let view = FollowerLogView {
        log_start_offset: 2,
        synced_end: 12,
        epochs: &cache,
    };
    let fetch = follower.poll_fetch(now, &view).unwrap();
    assert_eq!(
        (
            fetch.current_leader_epoch,
            fetch.fetch_offset,
            fetch.last_fetched_epoch,
            fetch.log_start_offset
        ),
        (4, 12, Some(3), 2)
    );
    assert_eq!(follower.poll_fetch(now, &view), None);
    let request = fetch_request(2, 77, &config(), vec![fetch]);
    assert_eq!(
        (request.replica_id, request.node_epoch, request.max_wait_ms),
        (2, 77, 500)
    );
}

#[test]
fn records_are_appended_and_the_leaders_high_watermark_kept() {
    // Goal: a served fetch returns the batches to append; the follower's HW is the
    // leader's, capped by its own synced end.
    let now = SystemClock.now();
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let cache = epochs(&[]);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 0,
        epochs: &cache,
    };
    follower.poll_fetch(now, &view).unwrap();
    let mut served = answer(ReplicaFetchError::None);
    served.records = Bytes::from_static(b"batches");
    assert_eq!(
        follower.handle_answer(now, 4, &served, &view),
        FollowerAction::Append {
            records: Bytes::from_static(b"batches")
        }
    );
    assert_eq!(follower.high_watermark(&view), 0);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 20,
        epochs: &cache,
    };
    assert_eq!(follower.high_watermark(&view), 7);
    assert!(follower.poll_fetch(now, &view).is_some());
}

#[test]
fn a_diverging_answer_truncates_before_anything_is_appended() {
    // Goal: KIP-279 truncation: to the lower of both ends of a shared epoch; to the
    // follower's own end of the largest lower epoch when it lacks the leader's; never above
    // its synced end.
    let cache = epochs(&[(1, 0), (3, 10)]);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 20,
        epochs: &cache,
    };
    // Shared epoch 3: leader ends it at 15.
    assert_eq!(truncation_offset(3, 15, &view), 15);
    // Shared epoch 1: the follower's ends at 10, the leader's at 12: keep 10.
    assert_eq!(truncation_offset(1, 12, &view), 10);
    // The follower lacks epoch 2 (it has 1 then 3): cut to the end of its epoch 1.
    assert_eq!(truncation_offset(2, 18, &view), 10);
    // Nothing at or below the leader's epoch: everything from the first epoch goes.
    let cache = epochs(&[(5, 4)]);
    let view = FollowerLogView {
        log_start_offset: 4,
        synced_end: 20,
        epochs: &cache,
    };
    assert_eq!(truncation_offset(2, 18, &view), 4);

    let now = SystemClock.now();
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let cache = epochs(&[(1, 0), (3, 10)]);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 20,
        epochs: &cache,
    };
    follower.poll_fetch(now, &view).unwrap();
    let mut diverging = answer(ReplicaFetchError::None);
    diverging.diverging_epoch = Some(DivergingEpoch {
        epoch: 3,
        end_offset: 15,
    });
    assert_eq!(
        follower.handle_answer(now, 4, &diverging, &view),
        FollowerAction::Truncate { offset: 15 }
    );
}

#[test]
fn fenced_or_not_leader_waits_for_metadata_and_an_old_epochs_answer_is_dropped() {
    // Goal: FencedLeaderEpoch / NotLeaderOrFollower stop fetching until a newer state; an
    // answer to a fetch of an older epoch is ignored (it may come from a deposed leader).
    let now = SystemClock.now();
    let cache = epochs(&[]);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 0,
        epochs: &cache,
    };
    for error in [
        ReplicaFetchError::FencedLeaderEpoch,
        ReplicaFetchError::NotLeaderOrFollower,
    ] {
        let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
        follower.poll_fetch(now, &view).unwrap();
        assert_eq!(
            follower.handle_answer(now, 4, &answer(error), &view),
            FollowerAction::None
        );
        assert!(follower.is_awaiting_metadata());
        assert_eq!(
            follower.poll_fetch(now + Duration::from_secs(60), &view),
            None
        );
        follower.handle_partition_state(&state(3, 5));
        let fetch = follower.poll_fetch(now, &view).unwrap();
        assert_eq!(fetch.current_leader_epoch, 5);
        assert_eq!(follower.leader(), Some(3));
    }
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    follower.poll_fetch(now, &view).unwrap();
    follower.handle_partition_state(&state(3, 5));
    let mut stale = answer(ReplicaFetchError::None);
    stale.records = Bytes::from_static(b"from the deposed leader");
    assert_eq!(
        follower.handle_answer(now, 4, &stale, &view),
        FollowerAction::None
    );
    // Becoming the leader itself: nothing to fetch.
    follower.handle_partition_state(&state(2, 6));
    assert_eq!(follower.poll_fetch(now, &view), None);
}

#[test]
fn errors_back_off_exponentially_up_to_the_maximum_and_success_resets_it() {
    // Goal: each retriable error waits twice as long as the last, capped; a served fetch
    // starts over from the initial back-off.
    let start = SystemClock.now();
    let cache = epochs(&[]);
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 0,
        epochs: &cache,
    };
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let mut now = start;
    let mut waits = Vec::new();
    for _ in 0..6 {
        follower.poll_fetch(now, &view).unwrap();
        follower.handle_answer(
            now,
            4,
            &answer(ReplicaFetchError::UnknownLeaderEpoch),
            &view,
        );
        let until = follower.poll_timeout().unwrap();
        assert_eq!(
            follower.poll_fetch(until - Duration::from_millis(1), &view),
            None
        );
        waits.push((until - now).as_millis());
        now = until;
    }
    assert_eq!(waits, vec![100, 200, 400, 800, 1000, 1000]);
    follower.poll_fetch(now, &view).unwrap();
    follower.handle_answer(now, 4, &answer(ReplicaFetchError::None), &view);
    follower.poll_fetch(now, &view).unwrap();
    follower.handle_fetch_failed(now);
    assert_eq!(
        follower.poll_timeout(),
        Some(now + Duration::from_millis(100))
    );
}

#[test]
fn out_of_range_cuts_to_the_leaders_end_or_starts_over_at_its_log_start() {
    // Goal: a follower ahead of the leader truncates to the leader's end; one below the
    // leader's log start starts over there.
    let now = SystemClock.now();
    let cache = epochs(&[(1, 0)]);
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let ahead = FollowerLogView {
        log_start_offset: 0,
        synced_end: 25,
        epochs: &cache,
    };
    follower.poll_fetch(now, &ahead).unwrap();
    assert_eq!(
        follower.handle_answer(now, 4, &answer(ReplicaFetchError::OffsetOutOfRange), &ahead),
        FollowerAction::Truncate { offset: 20 }
    );
    let behind = FollowerLogView {
        log_start_offset: 0,
        synced_end: 3,
        epochs: &cache,
    };
    follower.poll_fetch(now, &behind).unwrap();
    let mut out = answer(ReplicaFetchError::OffsetOutOfRange);
    out.log_start_offset = 10;
    assert_eq!(
        follower.handle_answer(now, 4, &out, &behind),
        FollowerAction::TruncateFullyAndStartAt { offset: 10 }
    );
}

#[test]
fn local_damage_truncates_to_the_last_good_batch_and_fetches_again() {
    // Goal: damage found in the follower's own log becomes a truncation to its first bad
    // offset (never below the log start), after which the next fetch starts there.
    let now = SystemClock.now();
    let cache = epochs(&[(1, 0)]);
    let view = FollowerLogView {
        log_start_offset: 5,
        synced_end: 40,
        epochs: &cache,
    };
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    follower.poll_fetch(now, &view).unwrap();
    assert_eq!(
        follower.handle_local_damage(17, &view),
        FollowerAction::Truncate { offset: 17 }
    );
    assert_eq!(
        follower.handle_local_damage(2, &view),
        FollowerAction::Truncate { offset: 5 }
    );
    let view = FollowerLogView {
        log_start_offset: 5,
        synced_end: 17,
        epochs: &cache,
    };
    assert_eq!(follower.poll_fetch(now, &view).unwrap().fetch_offset, 17);
}

#[test]
fn out_of_range_below_the_high_watermark_halts_instead_of_truncating() {
    // Goal: KAFKA-14139. The follower learned HW 7 from the leader; a leader (re-elected
    // with an empty disk) then answers OffsetOutOfRange with a log ending at 0. Truncating to
    // 0 would drop committed records: the follower keeps its log, stops fetching, reports
    // it, and fetches again only for a new leader epoch.
    let now = SystemClock.now();
    let cache = epochs(&[(1, 0)]);
    let mut follower = PartitionFollower::new("orders".into(), 0, 2, &state(1, 4), config());
    let view = FollowerLogView {
        log_start_offset: 0,
        synced_end: 10,
        epochs: &cache,
    };
    follower.poll_fetch(now, &view).unwrap();
    follower.handle_answer(now, 4, &answer(ReplicaFetchError::None), &view);
    assert_eq!(follower.high_watermark(&view), 7);

    follower.handle_partition_state(&state(3, 5));
    follower.poll_fetch(now, &view).unwrap();
    let mut empty = answer(ReplicaFetchError::OffsetOutOfRange);
    empty.log_end_offset = 0;
    assert_eq!(
        follower.handle_answer(now, 5, &empty, &view),
        FollowerAction::None
    );
    assert_eq!(
        follower.halted(),
        Some(&LeaderBelowHighWatermark {
            leader: 3,
            leader_epoch: 5,
            leader_log_start_offset: 0,
            leader_log_end_offset: 0,
            high_watermark: 7,
        })
    );
    assert_eq!(follower.poll_fetch(now, &view), None);
    // Local damage found meanwhile is still cut, but does not resume fetching.
    follower.handle_local_damage(9, &view);
    assert_eq!(follower.poll_fetch(now, &view), None);
    // The same leader epoch again changes nothing; a new one fetches again.
    follower.handle_partition_state(&state(3, 5));
    assert_eq!(follower.poll_fetch(now, &view), None);
    follower.handle_partition_state(&state(1, 6));
    assert_eq!(follower.halted(), None);
    assert!(follower.poll_fetch(now, &view).is_some());

    // A leader behind the follower but not below its HW is still followed (truncate to 8).
    let mut behind = answer(ReplicaFetchError::OffsetOutOfRange);
    behind.log_end_offset = 8;
    assert_eq!(
        follower.handle_answer(now, 6, &behind, &view),
        FollowerAction::Truncate { offset: 8 }
    );
    // Starting over at a log start below the HW is refused the same way.
    follower.poll_fetch(now, &view).unwrap();
    let mut restarted = answer(ReplicaFetchError::OffsetOutOfRange);
    restarted.log_end_offset = 3;
    restarted.log_start_offset = 3;
    let below_start = FollowerLogView {
        log_start_offset: 5,
        synced_end: 10,
        epochs: &cache,
    };
    assert_eq!(
        follower.handle_answer(now, 6, &restarted, &below_start),
        FollowerAction::None
    );
    assert!(follower.halted().is_some());
}
