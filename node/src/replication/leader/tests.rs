use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::clock::{Clock, SystemClock};

const LAG_MAX: Duration = Duration::from_secs(30);

fn state(isr: &[NodeId], partition_epoch: i32) -> PartitionState {
    PartitionState {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader: Some(1),
        leader_epoch: 5,
        partition_epoch,
    }
}

fn new_leader(isr: &[NodeId], min: usize, now: Instant) -> PartitionLeader<u32> {
    let config = LeaderConfig {
        min_insync_replicas: min,
        replica_lag_time_max: LAG_MAX,
    };
    PartitionLeader::new(1, 100, state(isr, 10), config, 0, 0, now)
}

fn released(leader: &mut PartitionLeader<u32>) -> Vec<(u32, Result<(), AcksAllError>)> {
    std::iter::from_fn(|| leader.poll_released()).collect()
}

#[test]
fn the_high_watermark_is_the_lowest_synced_end_over_the_isr() {
    // Goal: HW = min synced end over the ISR (leader included); a follower's position is
    // its fetch offset; a follower outside the ISR does not hold it back; it never moves back.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    // Followers 2 and 3 have not fetched in this epoch: unknown positions hold it at 0.
    assert_eq!(leader.high_watermark(), 0);
    leader.handle_fetch(now, 2, 7, 10).unwrap();
    assert_eq!(leader.high_watermark(), 0);
    leader.handle_fetch(now, 3, 7, 6).unwrap();
    assert_eq!(leader.high_watermark(), 6);
    // The leader's own synced end bounds it too.
    leader.handle_fetch(now, 3, 7, 10).unwrap();
    assert_eq!(leader.high_watermark(), 10);
    // A follower that truncated fetches lower: the HW does not move back.
    leader.handle_fetch(now, 3, 7, 4).unwrap();
    assert_eq!(leader.high_watermark(), 10);

    // Follower 3 outside the ISR does not count.
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(8);
    leader.handle_fetch(now, 2, 7, 8).unwrap();
    assert_eq!(leader.high_watermark(), 8);
}

#[test]
fn the_high_watermark_stays_while_the_isr_is_below_min_insync() {
    // Goal: with |ISR| < min.insync.replicas the HW does not move (acks=1 data is not
    // shown to consumers), and moves again once the ISR grows back.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1], 2, now);
    leader.handle_local_synced(5);
    assert_eq!(leader.high_watermark(), 0);
    leader.handle_fetch(now, 2, 7, 5).unwrap();
    leader.handle_partition_state(state(&[1, 2], 11), now);
    assert_eq!(leader.high_watermark(), 5);
}

/// The invariant the controller's ELR rule rests on (`alter_partition`: a member the leader
/// shrinks out of an ISR that drops below min.insync.replicas joins the ELR): the shrunk
/// member holds every offset below the high watermark, before the shrink (the HW is the
/// lowest synced end over the ISR), while it is in flight (the maximal ISR still counts the
/// member) and after it (the HW does not move while the ISR is below the minimum), however
/// far the leader's own log goes on.
#[test]
fn a_member_shrunk_out_below_min_insync_holds_the_high_watermark() {
    let start = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, start);
    leader.handle_local_synced(10);
    leader.handle_fetch(start, 2, 7, 6).unwrap();
    assert_eq!(leader.high_watermark(), 6);
    // Follower 2 stops fetching; the leader's log goes on.
    leader.handle_local_synced(20);
    let due = leader.poll_timeout().unwrap();
    let proposal = leader.poll_isr_proposal(due).unwrap();
    assert_eq!(
        proposal.isr,
        vec![IsrMember {
            node: 1,
            node_epoch: 100
        }]
    );
    leader.handle_local_synced(30);
    assert_eq!(leader.high_watermark(), 6, "in flight: 2 still counts");
    leader.handle_partition_state(state(&[1], 11), due);
    leader.handle_local_synced(40);
    assert_eq!(leader.high_watermark(), 6, "below min.insync: the HW stays");
}

#[test]
fn acks_all_is_refused_before_the_append_when_the_isr_is_too_small() {
    // Goal: NotEnoughReplicas before the append; nothing to wait for.
    let now = SystemClock.now();
    let leader = new_leader(&[1], 2, now);
    assert_eq!(
        leader.check_acks_all(),
        Err(AcksAllError::NotEnoughReplicas { isr: 1, min: 2 })
    );
    let leader = new_leader(&[1, 3], 2, now);
    assert_eq!(leader.check_acks_all(), Ok(()));
}

#[test]
fn acks_all_waiters_are_released_at_the_high_watermark_in_order() {
    // Goal: a waiter is answered exactly when the HW reaches its end offset, not before.
    let now = SystemClock.now();
    let deadline = now + Duration::from_secs(30);
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(3);
    leader.handle_acks_all_append(1, 3, deadline);
    leader.handle_local_synced(6);
    leader.handle_acks_all_append(2, 6, deadline);
    assert!(released(&mut leader).is_empty());
    leader.handle_fetch(now, 2, 7, 3).unwrap();
    assert_eq!(released(&mut leader), vec![(1, Ok(()))]);
    leader.handle_fetch(now, 2, 7, 5).unwrap();
    assert!(released(&mut leader).is_empty());
    leader.handle_fetch(now, 2, 7, 6).unwrap();
    assert_eq!(released(&mut leader), vec![(2, Ok(()))]);
}

#[test]
fn a_waiter_fails_after_append_when_the_isr_shrinks_below_the_minimum() {
    // Goal: NotEnoughReplicasAfterAppend when the ISR falls below min.insync.replicas
    // before the HW reached the batch.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(4);
    leader.handle_acks_all_append(9, 4, now + Duration::from_secs(30));
    leader.handle_partition_state(state(&[1], 11), now);
    assert_eq!(
        released(&mut leader),
        vec![(
            9,
            Err(AcksAllError::NotEnoughReplicasAfterAppend { isr: 1, min: 2 })
        )]
    );
}

#[test]
fn a_deposed_leader_fails_its_waiters_and_acknowledges_nothing_more() {
    // Goal: a newer leader epoch fails every waiter with NotLeaderOrFollower; later
    // fetches cannot release anything, and acks=all is refused.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(4);
    leader.handle_acks_all_append(1, 4, now + Duration::from_secs(30));
    let mut newer = state(&[1, 2], 12);
    newer.leader_epoch = 6;
    leader.handle_partition_state(newer, now);
    assert!(leader.is_deposed());
    assert_eq!(
        released(&mut leader),
        vec![(1, Err(AcksAllError::NotLeaderOrFollower))]
    );
    leader.handle_acks_all_append(2, 4, now + Duration::from_secs(30));
    let _ = leader.handle_fetch(now, 2, 7, 4);
    assert_eq!(
        released(&mut leader),
        vec![(2, Err(AcksAllError::NotLeaderOrFollower))]
    );
    assert_eq!(leader.high_watermark(), 0);
    assert_eq!(
        leader.check_acks_all(),
        Err(AcksAllError::NotLeaderOrFollower)
    );
}

#[test]
fn a_waiter_times_out_at_its_deadline() {
    // Goal: poll_timeout names the deadline, and handle_timeout fails the waiter there.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(4);
    let deadline = now + Duration::from_secs(5);
    leader.handle_acks_all_append(3, 4, deadline);
    assert_eq!(leader.poll_timeout(), Some(deadline));
    leader.handle_timeout(deadline - Duration::from_millis(1));
    assert!(released(&mut leader).is_empty());
    leader.handle_timeout(deadline);
    assert_eq!(
        released(&mut leader),
        vec![(3, Err(AcksAllError::RequestTimedOut))]
    );
}

#[test]
fn a_lagging_isr_member_is_proposed_for_removal_after_the_lag_limit() {
    // Goal: a member that does not catch up for replica_lag_time_max is proposed out, not
    // one moment earlier; the proposal carries the partition epoch and node epochs, and a
    // second one waits until the first is answered.
    let start = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, start);
    leader.handle_local_synced(10);
    leader.handle_fetch(start, 2, 7, 10).unwrap();
    leader.handle_fetch(start, 3, 8, 2).unwrap();
    let later = start + LAG_MAX;
    leader.handle_fetch(later, 2, 7, 10).unwrap();
    assert_eq!(leader.poll_isr_proposal(later), None);
    let due = leader.poll_timeout().unwrap();
    assert!(due > later);
    let proposal = leader.poll_isr_proposal(due).unwrap();
    assert_eq!(
        proposal,
        IsrProposal {
            leader_epoch: 5,
            partition_epoch: 10,
            isr: vec![
                IsrMember {
                    node: 1,
                    node_epoch: 100
                },
                IsrMember {
                    node: 2,
                    node_epoch: 7
                },
            ],
        }
    );
    assert_eq!(leader.poll_isr_proposal(due), None);
    // The controller applies it: the HW now ignores follower 3.
    leader.handle_partition_state(state(&[1, 2], 11), due);
    assert_eq!(leader.high_watermark(), 10);
}

#[test]
fn a_follower_that_catches_up_within_its_round_trip_is_not_lagging() {
    // Goal: Kafka's rule: a fetch at or past the leader's end at the previous fetch counts
    // as caught up as of that previous fetch, so steady appends do not shrink the ISR.
    let start = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 1, start);
    let mut now = start;
    let mut end = 0;
    for _ in 0..100 {
        now += Duration::from_secs(1);
        leader.handle_fetch(now, 2, 7, end).unwrap();
        end += 5;
        leader.handle_local_synced(end);
    }
    assert_eq!(leader.poll_isr_proposal(now + LAG_MAX / 2), None);
}

#[test]
fn a_caught_up_follower_is_proposed_for_the_isr_in_the_current_epoch() {
    // Goal: a replica outside the ISR is proposed in once its synced end reached the HW and
    // the start of this leader epoch; while the proposal waits, the HW counts it too.
    let now = SystemClock.now();
    let config = LeaderConfig {
        min_insync_replicas: 1,
        replica_lag_time_max: LAG_MAX,
    };
    let mut leader = PartitionLeader::<u32>::new(1, 100, state(&[1, 2], 10), config, 20, 20, now);
    leader.handle_fetch(now, 2, 7, 20).unwrap();
    leader.handle_fetch(now, 3, 9, 15).unwrap();
    assert_eq!(leader.poll_isr_proposal(now), None);
    leader.handle_local_synced(30);
    leader.handle_fetch(now, 2, 7, 30).unwrap();
    assert_eq!(leader.high_watermark(), 30);
    leader.handle_fetch(now, 3, 9, 30).unwrap();
    let proposal = leader.poll_isr_proposal(now).unwrap();
    assert_eq!(proposal.isr.len(), 3);
    leader.handle_local_synced(35);
    leader.handle_fetch(now, 2, 7, 35).unwrap();
    // Follower 3 is in the maximal ISR now: it holds the HW at its end.
    assert_eq!(leader.high_watermark(), 30);
    // Refused by the controller: proposed again.
    leader.handle_proposal_refused();
    assert!(leader.poll_isr_proposal(now).is_some());
}

#[test]
fn a_removed_follower_that_stopped_fetching_is_not_proposed_back() {
    // Goal: a follower removed for lagging, whose last position is still at the HW (the HW
    // stays while the ISR is below min.insync.replicas), is not proposed back in until it
    // fetches again and is caught up; before the fix the ISR flapped every poll.
    let start = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, start);
    leader.handle_local_synced(5);
    leader.handle_fetch(start, 2, 7, 5).unwrap();
    assert_eq!(leader.high_watermark(), 5);
    let later = start + LAG_MAX + Duration::from_secs(1);
    let removal = leader.poll_isr_proposal(later).unwrap();
    assert_eq!(
        removal.isr.iter().map(|m| m.node).collect::<Vec<_>>(),
        vec![1]
    );
    leader.handle_partition_state(state(&[1], 11), later);
    assert_eq!(leader.poll_isr_proposal(later), None);
    // It fetches again, caught up: proposed back.
    let back = later + Duration::from_secs(1);
    leader.handle_fetch(back, 2, 7, 5).unwrap();
    let expansion = leader.poll_isr_proposal(back).unwrap();
    assert_eq!(
        expansion.isr.iter().map(|m| m.node).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_member_back_with_a_new_node_epoch_is_proposed_out_and_an_old_epoch_refused() {
    // Goal: KIP-903: an ISR member whose node epoch grew (it restarted, maybe with an
    // empty disk) is proposed for removal; a fetch with an older node epoch is refused.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    leader.handle_fetch(now, 2, 7, 10).unwrap();
    leader.handle_fetch(now, 3, 8, 10).unwrap();
    leader.handle_fetch(now, 3, 9, 0).unwrap();
    let proposal = leader.poll_isr_proposal(now).unwrap();
    assert_eq!(
        proposal
            .isr
            .iter()
            .map(|member| member.node)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        leader.handle_fetch(now, 3, 8, 10),
        Err(FetchPositionError::StaleNodeEpoch {
            current: 9,
            received: 8
        })
    );
}

#[test]
fn a_member_whose_log_moved_back_is_proposed_out() {
    // Goal: a follower that repaired a damaged segment (truncated below what it had
    // synced) and fetches again under the same node epoch no longer holds what the ISR
    // promises: it is proposed out, so it cannot be elected with committed records missing.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    leader.handle_fetch(now, 2, 7, 10).unwrap();
    leader.handle_fetch(now, 3, 8, 10).unwrap();
    assert!(leader.poll_isr_proposal(now).is_none());
    leader.handle_fetch(now, 3, 8, 4).unwrap();
    let proposal = leader.poll_isr_proposal(now).unwrap();
    assert_eq!(
        proposal
            .isr
            .iter()
            .map(|member| member.node)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[test]
fn a_fetch_past_the_leaders_synced_end_or_from_a_stranger_is_refused() {
    // Goal: positions are never taken from a fetch the leader could not have served.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 1, now);
    leader.handle_local_synced(4);
    assert_eq!(
        leader.handle_fetch(now, 2, 7, 5),
        Err(FetchPositionError::PastLogEnd {
            fetch_offset: 5,
            synced_end: 4
        })
    );
    assert_eq!(
        leader.handle_fetch(now, 9, 7, 1),
        Err(FetchPositionError::NotAReplica(9))
    );
}

#[derive(Clone, Debug)]
enum Step {
    Sync(i64),
    Fetch(NodeId, i64),
    Isr(Vec<NodeId>),
    Propose,
    Wait(u64),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (1i64..5).prop_map(Step::Sync),
        (2u32..4, 0i64..40).prop_map(|(node, offset)| Step::Fetch(node, offset)),
        proptest::sample::subsequence(vec![2u32, 3], 0..=2).prop_map(|mut isr| {
            isr.insert(0, 1);
            Step::Isr(isr)
        }),
        Just(Step::Propose),
        (0u64..10).prop_map(Step::Wait),
    ]
}

proptest::proptest! {
    // Goal: against a model, for any sequence of syncs, fetches, ISR changes, proposals and
    // waits: the HW never goes back, never passes the leader's synced end, and whenever it
    // moves, every member of the current and the proposed ISR has reported a position at or
    // past it and the ISR holds at least min.insync.replicas; every acks=all waiter released
    // Ok is below the HW.
    #[test]
    fn the_high_watermark_matches_the_model(steps in proptest::collection::vec(step(), 1..60)) {
        let start = SystemClock.now();
        let mut now = start;
        let mut leader = new_leader(&[1, 2, 3], 2, now);
        let mut synced = 0i64;
        let mut positions: BTreeMap<NodeId, i64> = BTreeMap::new();
        let mut isr = vec![1, 2, 3];
        let mut proposed: Option<Vec<NodeId>> = None;
        let mut epoch = 10;
        let mut token = 0u32;
        let mut ends: BTreeMap<u32, i64> = BTreeMap::new();
        for step in steps {
            let before = leader.high_watermark();
            match step {
                Step::Sync(records) => {
                    synced += records;
                    leader.handle_local_synced(synced);
                    token += 1;
                    ends.insert(token, synced);
                    leader.handle_acks_all_append(token, synced, now + Duration::from_secs(600));
                }
                Step::Fetch(node, offset) => {
                    let offset = offset.min(synced);
                    if leader.handle_fetch(now, node, 7, offset).is_ok() {
                        positions.insert(node, offset);
                    }
                }
                Step::Isr(members) => {
                    epoch += 1;
                    isr = members.clone();
                    proposed = None;
                    leader.handle_partition_state(state(&members, epoch), now);
                }
                Step::Propose => {
                    if let Some(proposal) = leader.poll_isr_proposal(now) {
                        proposed = Some(proposal.isr.iter().map(|member| member.node).collect());
                    }
                }
                Step::Wait(seconds) => {
                    now += Duration::from_secs(seconds);
                    leader.handle_timeout(now);
                }
            }
            let after = leader.high_watermark();
            proptest::prop_assert!(after >= before);
            proptest::prop_assert!(after <= synced);
            if after > before {
                proptest::prop_assert!(isr.len() >= 2);
                for node in isr.iter().chain(proposed.iter().flatten()) {
                    if *node != 1 {
                        proptest::prop_assert!(positions.get(node).is_some_and(|at| *at >= after));
                    }
                }
            }
            while let Some((released, outcome)) = leader.poll_released() {
                if outcome.is_ok() {
                    proptest::prop_assert!(ends[&released] <= after);
                }
            }
        }
    }
}

#[test]
fn a_member_the_controller_removes_is_proposed_back_only_after_a_new_fetch() {
    // Goal (issue 13 item 4): a caught-up member the controller takes out of the ISR on its
    // own (it reported its log damaged, or it was fenced) is not proposed back from the
    // position it fetched before: its log may since have been cut. Before, the leader put
    // a damaged replica back at once, and its report and the leader's expansion alternated.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    leader.handle_fetch(now, 2, 7, 10).unwrap();
    leader.handle_fetch(now, 3, 8, 10).unwrap();
    leader.handle_partition_state(state(&[1, 2], 11), now);
    assert_eq!(leader.poll_isr_proposal(now), None);
    // After the repair it fetches from where its log now ends, then catches up.
    leader.handle_fetch(now, 3, 8, 4).unwrap();
    assert_eq!(leader.poll_isr_proposal(now), None);
    leader.handle_fetch(now, 3, 8, 10).unwrap();
    let expansion = leader.poll_isr_proposal(now).unwrap();
    assert_eq!(
        expansion.isr.iter().map(|m| m.node).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}

fn low_watermark_released(
    leader: &mut PartitionLeader<u32>,
) -> Vec<(u32, Result<i64, LowWatermarkError>)> {
    std::iter::from_fn(|| leader.poll_low_watermark_released()).collect()
}

/// A follower's fetch as the driver takes it: its position, then its log start.
fn fetch(leader: &mut PartitionLeader<u32>, now: Instant, node: NodeId, end: i64, start: i64) {
    leader
        .handle_fetch(now, node, u64::from(node) + 5, end)
        .unwrap();
    leader.handle_follower_log_start(node, start);
}

#[test]
fn delete_records_is_answered_once_every_follower_moved_its_log_start() {
    // Goal: a DeleteRecords wait is answered with the low watermark (the lowest log start
    // over the leader and its followers) only once that reaches the offset, not when the
    // leader alone moved (Kafka's `DelayedDeleteRecords`); a follower that has not fetched in
    // this leader epoch holds it back (its log start is unknown).
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    assert_eq!(leader.low_watermark(), None);
    fetch(&mut leader, now, 2, 10, 0);
    leader.handle_local_log_start(6);
    leader.handle_delete_records(1, 6, now + Duration::from_secs(30));
    assert!(low_watermark_released(&mut leader).is_empty());
    fetch(&mut leader, now, 2, 10, 6);
    assert_eq!(leader.low_watermark(), None);
    assert!(low_watermark_released(&mut leader).is_empty());
    fetch(&mut leader, now, 3, 10, 4);
    assert_eq!(leader.low_watermark(), Some(4));
    assert!(low_watermark_released(&mut leader).is_empty());
    fetch(&mut leader, now, 3, 10, 6);
    assert_eq!(low_watermark_released(&mut leader), vec![(1, Ok(6))]);
    // A delete at or below the low watermark is answered at once, with the low watermark.
    leader.handle_delete_records(2, 3, now + Duration::from_secs(30));
    assert_eq!(low_watermark_released(&mut leader), vec![(2, Ok(6))]);
}

#[test]
fn the_low_watermark_counts_live_followers_in_the_isr_or_not_and_skips_fenced_ones() {
    // Goal: Kafka's `lowWatermarkIfLeader` counts every replica whose broker is alive, ISR
    // member or not: a live follower out of the ISR still holds a DeleteRecords wait back;
    // once the controller fences its node (or it is unregistered), it no longer does, and
    // it counts again once it is live.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2], 2, now);
    leader.handle_local_synced(10);
    leader.handle_local_log_start(5);
    fetch(&mut leader, now, 2, 10, 5);
    fetch(&mut leader, now, 3, 2, 0);
    leader.handle_delete_records(7, 5, now + Duration::from_secs(30));
    assert!(low_watermark_released(&mut leader).is_empty());
    leader.handle_fenced_nodes(BTreeSet::from([3]));
    assert_eq!(low_watermark_released(&mut leader), vec![(7, Ok(5))]);
    leader.handle_fenced_nodes(BTreeSet::new());
    assert_eq!(leader.low_watermark(), Some(0));
}

#[test]
fn a_delete_records_wait_times_out_at_its_deadline_and_fails_when_deposed() {
    // Goal: poll_timeout names a DeleteRecords deadline and handle_timeout fails the wait
    // there with RequestTimedOut; a deposed leader fails its waits with
    // NotLeaderOrFollower and answers none after.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    leader.handle_local_log_start(5);
    fetch(&mut leader, now, 2, 10, 0);
    fetch(&mut leader, now, 3, 10, 0);
    let deadline = now + Duration::from_secs(5);
    leader.handle_delete_records(1, 5, deadline);
    leader.handle_delete_records(2, 5, now + Duration::from_secs(60));
    assert_eq!(leader.poll_timeout(), Some(deadline));
    leader.handle_timeout(deadline - Duration::from_millis(1));
    assert!(low_watermark_released(&mut leader).is_empty());
    leader.handle_timeout(deadline);
    assert_eq!(
        low_watermark_released(&mut leader),
        vec![(1, Err(LowWatermarkError::RequestTimedOut))]
    );
    let mut newer = state(&[1, 2, 3], 12);
    newer.leader_epoch = 6;
    leader.handle_partition_state(newer, now);
    assert_eq!(
        low_watermark_released(&mut leader),
        vec![(2, Err(LowWatermarkError::NotLeaderOrFollower))]
    );
    leader.handle_delete_records(3, 0, now + Duration::from_secs(60));
    assert_eq!(
        low_watermark_released(&mut leader),
        vec![(3, Err(LowWatermarkError::NotLeaderOrFollower))]
    );
}

#[test]
fn a_replica_removed_by_a_reassignment_no_longer_holds_the_low_watermark_back() {
    // Goal: the low watermark is over the partition's current replicas: one a reassignment
    // removed stops holding a DeleteRecords wait back.
    let now = SystemClock.now();
    let mut leader = new_leader(&[1, 2, 3], 2, now);
    leader.handle_local_synced(10);
    leader.handle_local_log_start(5);
    fetch(&mut leader, now, 2, 10, 5);
    leader.handle_delete_records(4, 5, now + Duration::from_secs(60));
    assert!(low_watermark_released(&mut leader).is_empty());
    let mut moved = state(&[1, 2], 11);
    moved.replicas = vec![1, 2];
    leader.handle_partition_state(moved, now);
    assert_eq!(low_watermark_released(&mut leader), vec![(4, Ok(5))]);
}
