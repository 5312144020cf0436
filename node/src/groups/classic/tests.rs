//! Classic group protocol scenarios on the pure state machine: time advances by hand; every
//! held answer is collected by token; invariants are checked after every step.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::clock::Clock;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

/// Drives `ClassicGroups` as the service does: a token per held request, every completion
/// collected by token, invariants checked after every step.
struct Harness {
    groups: ClassicGroups,
    now: Instant,
    next_token: Token,
    answers: BTreeMap<Token, Completion>,
}

impl Harness {
    fn new() -> Self {
        Self::with_limits(GroupLimits::default())
    }

    fn with_limits(limits: GroupLimits) -> Self {
        Self {
            groups: ClassicGroups::new(limits, 7),
            now: crate::clock::ManualClock::new(0).now(),
            next_token: 0,
            answers: BTreeMap::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(completion) = self.groups.poll_completion() {
            let token = completion.token();
            assert!(
                self.answers.insert(token, completion).is_none(),
                "token {token} answered twice"
            );
        }
        self.groups.check_invariants();
    }

    fn advance(&mut self, by: Duration) -> Vec<(String, String)> {
        self.now += by;
        let removed = self.groups.handle_timeout(self.now);
        self.drain();
        removed
    }

    fn join_input(member_id: &str, instance_id: Option<&str>, protocols: &[&str]) -> JoinInput {
        JoinInput {
            group_id: "g".into(),
            member_id: member_id.into(),
            instance_id: instance_id.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: SESSION,
            rebalance_timeout: REBALANCE,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| (name.to_string(), Bytes::from(format!("{member_id}/{name}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn join(&mut self, input: JoinInput) -> Result<Step<JoinReply>, ClassicError> {
        self.next_token += 1;
        let step = self.groups.handle_join(self.now, input, self.next_token);
        self.drain();
        step
    }

    /// A new dynamic member: MemberIdRequired, then the join with that id (held).
    fn join_new(&mut self, protocols: &[&str]) -> (String, Token) {
        let Err(ClassicError::MemberIdRequired { member_id }) =
            self.join(Self::join_input("", None, protocols))
        else {
            panic!("a new member must be asked to rejoin with its id")
        };
        match self.join(Self::join_input(&member_id, None, protocols)) {
            Ok(Step::Wait(token)) => (member_id, token),
            other => panic!("expected a held join, got {other:?}"),
        }
    }

    fn joined(&mut self, token: Token) -> Result<JoinReply, ClassicError> {
        match self.answers.remove(&token) {
            Some(Completion::Join(_, result)) => result,
            other => panic!("join {token} not answered: {other:?}"),
        }
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Step<SyncReply>, ClassicError> {
        self.next_token += 1;
        let step = self.groups.handle_sync(
            self.now,
            SyncInput {
                group_id: "g".into(),
                generation,
                member_id: member_id.into(),
                assignments,
                ..SyncInput::default()
            },
            self.next_token,
        );
        self.drain();
        step
    }

    fn synced(&mut self, token: Token) -> Result<SyncReply, ClassicError> {
        match self.answers.remove(&token) {
            Some(Completion::Sync(_, result)) => result,
            other => panic!("sync {token} not answered: {other:?}"),
        }
    }

    fn heartbeat(&mut self, member_id: &str, generation: i32) -> Result<(), ClassicError> {
        let result = self
            .groups
            .handle_heartbeat(self.now, "g", generation, member_id, None);
        self.drain();
        result
    }

    fn state(&self) -> ClassicState {
        self.groups.describe("g").unwrap().state
    }

    /// Three members join a new group and sync; returns their ids (leader first) and the
    /// generation.
    fn stable_group_of_three(&mut self) -> (Vec<String>, i32) {
        let (a, ta) = self.join_new(&["range"]);
        let (b, tb) = self.join_new(&["range"]);
        let (c, tc) = self.join_new(&["range"]);
        self.advance(GroupLimits::default().initial_rebalance_delay);
        let replies = [self.joined(ta), self.joined(tb), self.joined(tc)].map(Result::unwrap);
        let generation = replies[0].generation;
        let leader = replies[0].leader.clone();
        let mut ids = vec![a, b, c];
        ids.sort_by_key(|id| *id != leader);
        let mut sync_tokens = Vec::new();
        for follower in &ids[1..] {
            let Ok(Step::Wait(token)) = self.sync(follower, generation, Vec::new()) else {
                panic!("a follower's sync waits for the leader")
            };
            sync_tokens.push(token);
        }
        let assignments = ids
            .iter()
            .map(|id| (id.clone(), Bytes::from(format!("for {id}"))))
            .collect();
        let Ok(Step::Wait(leader_token)) = self.sync(&ids[0], generation, assignments) else {
            panic!("the leader's sync is answered through the completions")
        };
        sync_tokens.insert(0, leader_token);
        for (id, token) in ids.iter().zip(sync_tokens) {
            assert_eq!(
                self.synced(token).unwrap().assignment,
                Bytes::from(format!("for {id}"))
            );
        }
        assert_eq!(self.state(), ClassicState::Stable);
        (ids, generation)
    }
}

// Goal: the basic rebalance with three members. Each new member is first told its id
// (MemberIdRequired, v4+); the joins are held through the initial delay and answered
// together; the leader alone gets every member's metadata for the selected protocol; the
// leader's SyncGroup hands each member its bytes; heartbeats then succeed.
#[test]
fn three_members_rebalance_through_the_initial_delay() {
    let mut harness = Harness::new();
    let (a, ta) = harness.join_new(&["range", "roundrobin"]);
    let (b, tb) = harness.join_new(&["roundrobin", "range"]);
    let (c, tc) = harness.join_new(&["range"]);
    assert_eq!(harness.state(), ClassicState::PreparingRebalance);
    assert!(
        harness.answers.is_empty(),
        "joins are held during the initial delay"
    );
    harness.advance(GroupLimits::default().initial_rebalance_delay);
    let replies = [
        harness.joined(ta).unwrap(),
        harness.joined(tb).unwrap(),
        harness.joined(tc).unwrap(),
    ];
    // `range` is the only protocol every member supports.
    for reply in &replies {
        assert_eq!(reply.generation, 1);
        assert_eq!(reply.protocol_name, "range");
        assert_eq!(reply.protocol_type, "consumer");
        assert_eq!(reply.leader, replies[0].leader);
    }
    let leader_reply = replies
        .iter()
        .find(|reply| reply.member_id == reply.leader)
        .unwrap();
    let mut metadata: Vec<_> = leader_reply
        .members
        .iter()
        .map(|(id, _, metadata)| (id.clone(), metadata.clone()))
        .collect();
    metadata.sort();
    let mut expected: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|id| ((*id).clone(), Bytes::from(format!("{id}/range"))))
        .collect();
    expected.sort();
    assert_eq!(metadata, expected);
    for reply in &replies {
        if reply.member_id != reply.leader {
            assert!(reply.members.is_empty(), "followers get no metadata");
        }
    }
    let mut harness2 = Harness::new();
    let (ids, generation) = harness2.stable_group_of_three();
    for id in &ids {
        harness2.heartbeat(id, generation).unwrap();
    }
}

// Goal: protocol selection and protocol types. A member sharing no protocol with the group,
// or of another protocol type, is refused; any protocol type string works (`connect`).
#[test]
fn protocols_are_checked_and_any_protocol_type_is_accepted() {
    let mut harness = Harness::new();
    let (_, _) = harness.join_new(&["range"]);
    assert!(matches!(
        harness.join(Harness::join_input("", None, &["sticky"])),
        Err(ClassicError::InconsistentGroupProtocol(_))
    ));
    let mut input = Harness::join_input("", None, &["range"]);
    input.protocol_type = "connect".into();
    assert!(matches!(
        harness.join(input),
        Err(ClassicError::InconsistentGroupProtocol(_))
    ));

    let mut connect = Harness::new();
    let mut input = Harness::join_input("", None, &["sessioned", "default"]);
    input.protocol_type = "connect".into();
    input.require_known_member_id = false;
    let Ok(Step::Wait(token)) = connect.join(input) else {
        panic!("a v3 join is held at once")
    };
    connect.advance(GroupLimits::default().initial_rebalance_delay);
    let reply = connect.joined(token).unwrap();
    assert_eq!(
        (reply.protocol_type.as_str(), reply.protocol_name.as_str()),
        ("connect", "sessioned")
    );
    assert_eq!(reply.leader, reply.member_id);
}

// Goal: a member that does not rejoin during a rebalance is dropped when the rebalance
// timeout passes; the others get the next generation without it.
#[test]
fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
    let mut harness = Harness::new();
    let (ids, generation) = harness.stable_group_of_three();
    // The leader rejoins (as after a metadata change): a rebalance starts.
    let Ok(Step::Wait(leader_token)) = harness.join(Harness::join_input(&ids[0], None, &["range"]))
    else {
        panic!("the leader's rejoin is held")
    };
    assert_eq!(harness.state(), ClassicState::PreparingRebalance);
    assert_eq!(
        harness.heartbeat(&ids[1], generation),
        Err(ClassicError::RebalanceInProgress("g".into()))
    );
    let Ok(Step::Wait(token_b)) = harness.join(Harness::join_input(&ids[1], None, &["range"]))
    else {
        panic!("held")
    };
    // The third member keeps heartbeating but never rejoins (a consumer stuck in poll).
    let step = SESSION / 2;
    for _ in 1..REBALANCE.as_millis() / step.as_millis() {
        harness.advance(step);
        assert_eq!(
            harness.heartbeat(&ids[2], generation),
            Err(ClassicError::RebalanceInProgress("g".into()))
        );
    }
    assert!(harness.answers.is_empty());
    let removed = harness.advance(step);
    assert_eq!(removed, vec![("g".to_string(), ids[2].clone())]);
    let leader = harness.joined(leader_token).unwrap();
    let follower = harness.joined(token_b).unwrap();
    assert_eq!(leader.generation, generation + 1);
    assert_eq!(leader.members.len(), 2);
    assert_eq!(follower.generation, generation + 1);
    assert!(matches!(
        harness.heartbeat(&ids[2], generation),
        Err(ClassicError::UnknownMember { .. })
    ));
}

// Goal: a member whose session times out while the group is stable is removed and the
// others are told to rejoin; a member blocked on a held join is not expired meanwhile.
#[test]
fn a_silent_member_times_out_and_the_others_rebalance() {
    let mut harness = Harness::new();
    let (ids, generation) = harness.stable_group_of_three();
    harness.advance(SESSION / 2);
    harness.heartbeat(&ids[0], generation).unwrap();
    harness.heartbeat(&ids[1], generation).unwrap();
    harness.advance(SESSION / 2);
    assert_eq!(harness.state(), ClassicState::PreparingRebalance);
    assert!(!harness.groups.is_member("g", &ids[2]));
    assert_eq!(
        harness.heartbeat(&ids[0], generation),
        Err(ClassicError::RebalanceInProgress("g".into()))
    );
    let Ok(Step::Wait(t0)) = harness.join(Harness::join_input(&ids[0], None, &["range"])) else {
        panic!("held")
    };
    // Longer than a session: the held member is kept alive; the other one, silent, expires
    // too, and then everyone left has rejoined, so the join phase ends without its timeout.
    harness.advance(SESSION + Duration::from_secs(1));
    assert!(harness.groups.is_member("g", &ids[0]));
    assert!(!harness.groups.is_member("g", &ids[1]));
    let reply = harness.joined(t0).unwrap();
    assert_eq!(reply.generation, generation + 1);
    assert_eq!(reply.members.len(), 1);
}

// Goal: a slow leader. The join phase ends, the follower syncs and waits; the leader never
// syncs. After the rebalance timeout the leader is dropped, the follower's held sync is told
// to rejoin, and on rejoining it becomes the leader of the next generation.
#[test]
fn a_leader_that_never_syncs_is_dropped_and_the_follower_takes_over() {
    let mut harness = Harness::new();
    let (a, ta) = harness.join_new(&["range"]);
    let (b, tb) = harness.join_new(&["range"]);
    harness.advance(GroupLimits::default().initial_rebalance_delay);
    let ra = harness.joined(ta).unwrap();
    harness.joined(tb).unwrap();
    let (leader, follower) = if ra.leader == a { (a, b) } else { (b, a) };
    let Ok(Step::Wait(follower_sync)) = harness.sync(&follower, ra.generation, Vec::new()) else {
        panic!("held")
    };
    // The leader keeps heartbeating, so only the pending-sync deadline can catch it.
    let step = SESSION / 2;
    for _ in 1..REBALANCE.as_millis() / step.as_millis() {
        harness.advance(step);
        harness.heartbeat(&leader, ra.generation).unwrap();
        assert_eq!(harness.state(), ClassicState::CompletingRebalance);
    }
    harness.advance(step);
    assert!(!harness.groups.is_member("g", &leader));
    assert_eq!(
        harness.synced(follower_sync),
        Err(ClassicError::RebalanceInProgress("g".into()))
    );
    let Ok(Step::Wait(rejoin)) = harness.join(Harness::join_input(&follower, None, &["range"]))
    else {
        panic!("held")
    };
    let reply = harness.joined(rejoin).unwrap();
    assert_eq!(reply.leader, follower);
    assert_eq!(reply.generation, ra.generation + 1);
    let Ok(Step::Wait(sync)) = harness.sync(
        &follower,
        reply.generation,
        vec![(follower.clone(), Bytes::from_static(b"all"))],
    ) else {
        panic!("held")
    };
    assert_eq!(
        harness.synced(sync).unwrap().assignment,
        Bytes::from_static(b"all")
    );
}

// Goal: LeaveGroup with a batch (v3+): the named members go, an unknown one is answered
// per member, the rest rebalance; when the last member leaves the group is Empty with a
// new generation.
#[test]
fn members_leave_and_the_rest_rebalance() {
    let mut harness = Harness::new();
    let (ids, generation) = harness.stable_group_of_three();
    let results = harness
        .groups
        .handle_leave(
            harness.now,
            "g",
            &[
                LeavingMember {
                    member_id: ids[1].clone(),
                    instance_id: None,
                },
                LeavingMember {
                    member_id: "nobody".into(),
                    instance_id: None,
                },
            ],
        )
        .unwrap();
    harness.drain();
    assert_eq!(results[0], Ok(ids[1].clone()));
    assert!(matches!(
        results[1],
        Err(ClassicError::UnknownMember { .. })
    ));
    assert_eq!(harness.state(), ClassicState::PreparingRebalance);
    for survivor in [&ids[0], &ids[2]] {
        assert_eq!(
            harness.heartbeat(survivor, generation),
            Err(ClassicError::RebalanceInProgress("g".into()))
        );
    }
    let Ok(Step::Wait(t0)) = harness.join(Harness::join_input(&ids[0], None, &["range"])) else {
        panic!("held")
    };
    let Ok(Step::Wait(t2)) = harness.join(Harness::join_input(&ids[2], None, &["range"])) else {
        panic!("held")
    };
    // Everyone left rejoined: the join phase ends at once, no timeout needed.
    assert_eq!(harness.joined(t0).unwrap().generation, generation + 1);
    assert_eq!(harness.joined(t2).unwrap().generation, generation + 1);
    for id in [&ids[0], &ids[2]] {
        harness
            .groups
            .handle_leave(
                harness.now,
                "g",
                &[LeavingMember {
                    member_id: id.clone(),
                    instance_id: None,
                }],
            )
            .unwrap();
        harness.drain();
    }
    let described = harness.groups.describe("g").unwrap();
    assert_eq!(described.state, ClassicState::Empty);
    assert_eq!(described.generation, generation + 2);
    assert!(described.members.is_empty());
}

// Goal: static membership (KIP-345). A static follower that restarts (new process, empty
// member id, same group.instance.id) gets its old assignment back in the same generation
// with no rebalance; its old member id is fenced.
#[test]
fn a_static_member_restarts_without_a_rebalance() {
    let mut harness = Harness::new();
    let mut input = Harness::join_input("", Some("instance-a"), &["range"]);
    // Its member id sorts after the dynamic member's, so the dynamic member leads.
    input.client_id = "z-static".into();
    let Ok(Step::Wait(ta)) = harness.join(input.clone()) else {
        panic!("a static member joins without MemberIdRequired")
    };
    let (b, tb) = harness.join_new(&["range"]);
    harness.advance(GroupLimits::default().initial_rebalance_delay);
    let ra = harness.joined(ta).unwrap();
    let rb = harness.joined(tb).unwrap();
    let generation = ra.generation;
    let static_id = ra.member_id.clone();
    // Make the dynamic member the leader's counterpart either way: whoever leads assigns.
    let leader = ra.leader.clone();
    let assignments = vec![
        (static_id.clone(), Bytes::from_static(b"static's")),
        (b.clone(), Bytes::from_static(b"b's")),
    ];
    let follower = if leader == static_id { &b } else { &static_id };
    let Ok(Step::Wait(follower_sync)) = harness.sync(follower, generation, Vec::new()) else {
        panic!("held")
    };
    let Ok(Step::Wait(leader_sync)) = harness.sync(&leader, generation, assignments) else {
        panic!("held")
    };
    harness.synced(follower_sync).unwrap();
    harness.synced(leader_sync).unwrap();
    assert_eq!(rb.generation, generation);
    assert_eq!(leader, b, "the static member is a follower");
    input.client_id = "restarted".into();
    let Ok(Step::Done(rejoined)) = harness.join(input) else {
        panic!("a static follower of a stable group is answered at once")
    };
    assert_ne!(rejoined.member_id, static_id);
    assert_eq!(rejoined.generation, generation);
    assert_eq!(harness.state(), ClassicState::Stable);
    let Ok(Step::Done(synced)) = harness.sync(&rejoined.member_id, generation, Vec::new()) else {
        panic!("stable: answered at once")
    };
    assert_eq!(synced.assignment, Bytes::from_static(b"static's"));
    assert_eq!(
        harness.groups.handle_heartbeat(
            harness.now,
            "g",
            generation,
            &static_id,
            Some("instance-a")
        ),
        Err(ClassicError::FencedInstanceId {
            group_id: "g".into(),
            instance_id: "instance-a".into()
        })
    );
    harness.heartbeat(&b, generation).unwrap();
}

// Goal: generation checks on commits, as Kafka's classic validateOffsetCommit: a simple
// consumer (generation -1, no member) commits to an unknown or empty group; a member commits
// only with its current generation; an unknown member or a stale generation is refused; a
// commit while the group completes a rebalance is told to finish it; during
// PreparingRebalance the previous generation may still commit (eager revocation).
#[test]
fn offset_commits_are_checked_against_the_generation() {
    let mut harness = Harness::new();
    assert_eq!(
        harness.groups.validate_offset_commit("g", "", None, -1),
        Ok(())
    );
    assert!(matches!(
        harness
            .groups
            .validate_offset_commit("g", "someone", None, 3),
        Err(ClassicError::IllegalGeneration { .. })
    ));
    let (ids, generation) = harness.stable_group_of_three();
    assert_eq!(
        harness
            .groups
            .validate_offset_commit("g", &ids[1], None, generation),
        Ok(())
    );
    assert!(matches!(
        harness
            .groups
            .validate_offset_commit("g", &ids[1], None, generation - 1),
        Err(ClassicError::IllegalGeneration { .. })
    ));
    assert!(matches!(
        harness
            .groups
            .validate_offset_commit("g", "stranger", None, generation),
        Err(ClassicError::UnknownMember { .. })
    ));
    assert!(matches!(
        harness.groups.validate_offset_commit("g", "", None, -1),
        Err(ClassicError::UnknownMember { .. })
    ));
    let Ok(Step::Wait(t0)) = harness.join(Harness::join_input(&ids[0], None, &["range"])) else {
        panic!("held")
    };
    assert_eq!(
        harness
            .groups
            .validate_offset_commit("g", &ids[1], None, generation),
        Ok(()),
        "eager consumers commit while giving partitions up"
    );
    let Ok(Step::Wait(t1)) = harness.join(Harness::join_input(&ids[1], None, &["range"])) else {
        panic!("held")
    };
    let Ok(Step::Wait(t2)) = harness.join(Harness::join_input(&ids[2], None, &["range"])) else {
        panic!("held")
    };
    let next = harness.joined(t0).unwrap().generation;
    harness.joined(t1).unwrap();
    harness.joined(t2).unwrap();
    assert_eq!(
        harness
            .groups
            .validate_offset_commit("g", &ids[1], None, next),
        Err(ClassicError::RebalanceInProgress("g".into()))
    );
}

// Goal: a member id handed out with MemberIdRequired and never used expires with its
// session timeout, and does not keep the join phase from ending.
#[test]
fn an_unused_member_id_expires() {
    let mut harness = Harness::new();
    let (_, token) = harness.join_new(&["range"]);
    let Err(ClassicError::MemberIdRequired { member_id }) =
        harness.join(Harness::join_input("", None, &["range"]))
    else {
        panic!("MemberIdRequired")
    };
    harness.advance(GroupLimits::default().initial_rebalance_delay);
    // The initial delay passed with the id still pending: the deadline ends the phase anyway.
    assert_eq!(harness.joined(token).unwrap().members.len(), 1);
    harness.advance(SESSION);
    assert!(!harness.groups.is_member("g", &member_id));
    assert!(matches!(
        harness.join(Harness::join_input(&member_id, None, &["range"])),
        Err(ClassicError::UnknownMember { .. })
    ));
}

// Goal: bad input is refused with a clear error and changes nothing: an empty group id, a
// session timeout out of bounds, an empty protocol list, requests for unknown groups.
#[test]
fn bad_requests_are_refused_and_leave_no_group_behind() {
    let mut harness = Harness::new();
    let mut input = Harness::join_input("", None, &["range"]);
    input.group_id = String::new();
    assert!(matches!(
        harness.join(input),
        Err(ClassicError::InvalidGroupId(_))
    ));
    let mut input = Harness::join_input("", None, &["range"]);
    input.session_timeout = Duration::from_millis(1);
    assert!(matches!(
        harness.join(input),
        Err(ClassicError::InvalidSessionTimeout { .. })
    ));
    assert!(matches!(
        harness.join(Harness::join_input("", None, &[])),
        Err(ClassicError::InconsistentGroupProtocol(_))
    ));
    assert!(!harness.groups.contains("g"));
    assert!(matches!(
        harness.join(Harness::join_input("ghost", None, &["range"])),
        Err(ClassicError::UnknownMember { .. })
    ));
    assert!(matches!(
        harness.sync("ghost", 1, Vec::new()),
        Err(ClassicError::UnknownMember { .. })
    ));
    assert!(matches!(
        harness.heartbeat("ghost", 1),
        Err(ClassicError::UnknownMember { .. })
    ));
    assert!(harness.groups.handle_leave(harness.now, "g", &[]).is_err());
    assert!(!harness.groups.contains("g"));
    assert_eq!(harness.groups.poll_timeout(), None);
}
