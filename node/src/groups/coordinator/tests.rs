//! Deterministic coordinator tests: simulated members heartbeat in turns; invariants are
//! checked after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::clock::Clock;

/// A well-behaved client: owns exactly what it was last told to, after one heartbeat.
struct Client {
    member_id: String,
    epoch: i32,
    owned: BTreeSet<TopicPartition>,
    instance_id: Option<String>,
}

fn topics(counts: &[(&str, u32)]) -> BTreeMap<String, u32> {
    counts
        .iter()
        .map(|(name, count)| (name.to_string(), *count))
        .collect()
}

fn heartbeat(client: &Client, assignor: &str, subscribed: &[&str]) -> Heartbeat {
    Heartbeat {
        group_id: "g".into(),
        member_id: client.member_id.clone(),
        member_id_from_client: false,
        member_epoch: client.epoch,
        instance_id: client.instance_id.clone(),
        client_id: "test".into(),
        rebalance_timeout: Duration::from_secs(30),
        session_timeout: Duration::from_secs(10),
        subscribed_topics: subscribed.iter().map(|topic| topic.to_string()).collect(),
        subscribed_pattern: None,
        pattern_filter: TopicFilter::default(),
        assignor: assignor.into(),
        owned: client.owned.clone(),
        owned_omitted: false,
        protocol: MemberProtocol::Consumer,
    }
}

fn step(
    coordinator: &mut GroupCoordinator,
    now: Instant,
    client: &mut Client,
    assignor: &str,
    subscribed: &[&str],
    counts: &BTreeMap<String, u32>,
) {
    let reply = coordinator
        .handle_heartbeat(now, heartbeat(client, assignor, subscribed), counts)
        .unwrap();
    client.member_id = reply.member_id;
    client.epoch = reply.member_epoch;
    client.owned = reply.assignment;
    coordinator.check_invariants();
}

fn join(
    coordinator: &mut GroupCoordinator,
    now: Instant,
    assignor: &str,
    counts: &BTreeMap<String, u32>,
    instance: Option<&str>,
) -> Client {
    let mut client = Client {
        member_id: String::new(),
        epoch: 0,
        owned: BTreeSet::new(),
        instance_id: instance.map(String::from),
    };
    step(coordinator, now, &mut client, assignor, &["t"], counts);
    client
}

/// Heartbeats every client in turn until no assignment changes.
fn settle(
    coordinator: &mut GroupCoordinator,
    now: Instant,
    clients: &mut [Client],
    assignor: &str,
    counts: &BTreeMap<String, u32>,
) {
    for _round in 0..20 {
        let before: Vec<BTreeSet<TopicPartition>> =
            clients.iter().map(|client| client.owned.clone()).collect();
        for client in clients.iter_mut() {
            step(coordinator, now, client, assignor, &["t"], counts);
        }
        let after: Vec<BTreeSet<TopicPartition>> =
            clients.iter().map(|client| client.owned.clone()).collect();
        if before == after {
            return;
        }
    }
    panic!("group did not settle in 20 rounds");
}

fn all_owned(clients: &[Client]) -> Vec<usize> {
    clients.iter().map(|client| client.owned.len()).collect()
}

// Goal: with each assignor, members joining one by one and leaving always end with every
// partition owned by exactly one member, and no partition ever has two owners on the way.
#[test]
fn members_join_and_leave_and_every_partition_has_one_owner() {
    for assignor in ["range", "round-robin", "cooperative-sticky"] {
        let now = crate::clock::ManualClock::new(0).now();
        let counts = topics(&[("t", 4)]);
        let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(join(&mut coordinator, now, assignor, &counts, None));
            settle(&mut coordinator, now, &mut clients, assignor, &counts);
            let owned: BTreeSet<TopicPartition> = clients
                .iter()
                .flat_map(|client| client.owned.clone())
                .collect();
            assert_eq!(owned.len(), 4, "{assignor}: every partition owned");
        }
        assert_eq!(all_owned(&clients), [1, 1, 1, 1], "{assignor}");
        // Two leave (as close() does); the other two take over.
        for _ in 0..2 {
            let leaving = clients.pop().unwrap();
            let mut request = heartbeat(&leaving, assignor, &["t"]);
            request.member_epoch = -1;
            coordinator.handle_heartbeat(now, request, &counts).unwrap();
            coordinator.check_invariants();
            settle(&mut coordinator, now, &mut clients, assignor, &counts);
        }
        assert_eq!(all_owned(&clients), [2, 2], "{assignor}");
    }
}

// Goal: with cooperative-sticky, a join moves only the partitions the new member gets.
#[test]
fn cooperative_sticky_revokes_only_what_moves() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 6)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = vec![join(
        &mut coordinator,
        now,
        "cooperative-sticky",
        &counts,
        None,
    )];
    clients.push(join(
        &mut coordinator,
        now,
        "cooperative-sticky",
        &counts,
        None,
    ));
    settle(
        &mut coordinator,
        now,
        &mut clients,
        "cooperative-sticky",
        &counts,
    );
    let before: Vec<BTreeSet<TopicPartition>> =
        clients.iter().map(|client| client.owned.clone()).collect();
    clients.push(join(
        &mut coordinator,
        now,
        "cooperative-sticky",
        &counts,
        None,
    ));
    settle(
        &mut coordinator,
        now,
        &mut clients,
        "cooperative-sticky",
        &counts,
    );
    for (client, previous) in clients.iter().zip(&before) {
        assert!(
            client.owned.is_subset(previous),
            "kept partitions only shrink"
        );
        assert_eq!(client.owned.len(), 2);
    }
}

// Goal: a member that stops heartbeating is evicted after its session timeout and its
// partitions go to the others; a live member is never evicted.
#[test]
fn silent_members_expire_after_the_session_timeout() {
    let start = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = vec![
        join(&mut coordinator, start, "range", &counts, None),
        join(&mut coordinator, start, "range", &counts, None),
    ];
    settle(&mut coordinator, start, &mut clients, "range", &counts);
    assert_eq!(
        coordinator.poll_timeout(),
        Some(start + Duration::from_secs(10))
    );
    let later = start + Duration::from_secs(8);
    step(
        &mut coordinator,
        later,
        &mut clients[0],
        "range",
        &["t"],
        &counts,
    );
    assert!(
        coordinator
            .handle_timeout(start + Duration::from_secs(9), &counts)
            .is_empty()
    );
    let removed = coordinator.handle_timeout(start + Duration::from_secs(11), &counts);
    assert_eq!(removed, [("g".to_string(), clients[1].member_id.clone())]);
    coordinator.check_invariants();
    let mut survivors = vec![clients.remove(0)];
    settle(
        &mut coordinator,
        start + Duration::from_secs(11),
        &mut survivors,
        "range",
        &counts,
    );
    assert_eq!(all_owned(&survivors), [4]);
}

// Goal: a static member that leaves temporarily and comes back with the same instance id
// within its session timeout gets its partitions back without moving anyone else's.
#[test]
fn static_members_restart_without_a_rebalance() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = vec![
        join(&mut coordinator, now, "range", &counts, Some("box-a")),
        join(&mut coordinator, now, "range", &counts, Some("box-b")),
    ];
    settle(&mut coordinator, now, &mut clients, "range", &counts);
    let epoch_before = coordinator.describe("g").unwrap().group_epoch;
    let owned_before = clients[1].owned.clone();
    let mut request = heartbeat(&clients[1], "range", &["t"]);
    request.member_epoch = -2;
    coordinator.handle_heartbeat(now, request, &counts).unwrap();
    // While it is away, its partitions stay with it, not with box-a.
    step(
        &mut coordinator,
        now,
        &mut clients[0],
        "range",
        &["t"],
        &counts,
    );
    assert_eq!(clients[0].owned.len(), 2);
    let returning = join(
        &mut coordinator,
        now + Duration::from_secs(2),
        "range",
        &counts,
        Some("box-b"),
    );
    assert_eq!(returning.owned, owned_before);
    assert_eq!(coordinator.describe("g").unwrap().group_epoch, epoch_before);
    // Past the departed entry's session timeout (10 s from its last heartbeat at `now`),
    // with both members heartbeating, its timer does not fire: nobody expires.
    let mut returned = [returning];
    for client in [&mut clients[0], &mut returned[0]] {
        step(
            &mut coordinator,
            now + Duration::from_secs(9),
            client,
            "range",
            &["t"],
            &counts,
        );
    }
    assert!(
        coordinator
            .handle_timeout(now + Duration::from_secs(11), &counts)
            .is_empty()
    );
    assert_eq!(coordinator.describe("g").unwrap().group_epoch, epoch_before);
    // The old member id is fenced.
    let stale = coordinator.handle_heartbeat(now, heartbeat(&clients[1], "range", &["t"]), &counts);
    assert!(matches!(stale, Err(GroupError::UnknownMember { .. })));
}

// Goal: commits are accepted only from current members for partitions they hold; an
// administrative commit needs an empty group.
#[test]
fn commits_are_validated_against_membership() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 2)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = vec![
        join(&mut coordinator, now, "range", &counts, None),
        join(&mut coordinator, now, "range", &counts, None),
    ];
    settle(&mut coordinator, now, &mut clients, "range", &counts);
    let mine = clients[0].owned.iter().next().unwrap().clone();
    let theirs = clients[1].owned.iter().next().unwrap().clone();
    let verdict = coordinator
        .validate_commit(
            "g",
            &clients[0].member_id,
            clients[0].epoch,
            CommitEpochRule::NotNewer,
            &[mine, theirs],
        )
        .unwrap();
    assert_eq!(verdict, [None, Some(CommitRefusal::NotAssigned)]);
    assert!(matches!(
        coordinator.validate_commit("g", "nobody", 1, CommitEpochRule::NotNewer, &[]),
        Err(GroupError::UnknownMember { .. })
    ));
    assert!(matches!(
        coordinator.validate_commit(
            "g",
            &clients[0].member_id,
            clients[0].epoch + 5,
            CommitEpochRule::NotNewer,
            &[]
        ),
        Err(GroupError::FencedEpoch { .. })
    ));
    assert!(matches!(
        coordinator.validate_commit("g", "", 0, CommitEpochRule::NotNewer, &[]),
        Err(GroupError::NonEmptyGroup(_))
    ));
    assert!(
        coordinator
            .validate_commit("other", "", 0, CommitEpochRule::Current, &[("t".into(), 0)])
            .is_ok()
    );
    assert!(matches!(
        coordinator.validate_commit("", "", 0, CommitEpochRule::NotNewer, &[]),
        Err(GroupError::InvalidGroupId(_))
    ));
}

// Goal: bad heartbeats get specific errors and leave the coordinator consistent; other
// groups are unaffected; hundreds of members joining at once are all placed.
#[test]
fn bad_heartbeats_are_refused_and_crowds_are_handled() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 8)]);
    let mut coordinator = GroupCoordinator::new(
        GroupLimits {
            group_members_max: 300,
            ..GroupLimits::default()
        },
        1,
    );
    let first = join(&mut coordinator, now, "range", &counts, None);
    let mut bad = heartbeat(
        &Client {
            member_id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
            instance_id: None,
        },
        "fastest",
        &["t"],
    );
    assert!(
        matches!(coordinator.handle_heartbeat(now, bad.clone(), &counts), Err(GroupError::InconsistentAssignor(message)) if message.contains("fastest"))
    );
    bad.assignor = "round-robin".into();
    assert!(
        matches!(coordinator.handle_heartbeat(now, bad.clone(), &counts), Err(GroupError::InconsistentAssignor(message)) if message.contains("uses assignor range"))
    );
    bad.assignor = "range".into();
    bad.subscribed_pattern = Some("(unclosed".into());
    assert!(matches!(
        coordinator.handle_heartbeat(now, bad.clone(), &counts),
        Err(GroupError::InvalidPattern { .. })
    ));
    bad.subscribed_pattern = None;
    bad.session_timeout = Duration::from_millis(5);
    // The message names the node keys that set the bounds (keys that exist in config.rs).
    assert!(matches!(
        coordinator.handle_heartbeat(now, bad.clone(), &counts),
        Err(GroupError::InvalidTimeout(message)) if message.contains("session timeout of 5 ms is outside")
            && message.contains("groups.session_timeout_min_ms and groups.session_timeout_max_ms")
    ));
    bad.session_timeout = Duration::from_secs(10);
    bad.group_id = String::new();
    assert!(matches!(
        coordinator.handle_heartbeat(now, bad.clone(), &counts),
        Err(GroupError::InvalidGroupId(_))
    ));
    // A client claiming partitions it was never given is ignored.
    let mut liar = Client {
        member_id: String::new(),
        epoch: 0,
        owned: BTreeSet::new(),
        instance_id: None,
    };
    step(&mut coordinator, now, &mut liar, "range", &["t"], &counts);
    liar.owned = (0..8)
        .map(|partition| ("t".to_string(), partition))
        .collect();
    step(&mut coordinator, now, &mut liar, "range", &["t"], &counts);
    coordinator.check_invariants();

    let mut crowd: Vec<Client> = vec![first, liar];
    for _ in 0..298 {
        crowd.push(join(&mut coordinator, now, "range", &counts, None));
    }
    let refused = coordinator.handle_heartbeat(
        now,
        heartbeat(
            &Client {
                member_id: String::new(),
                epoch: 0,
                owned: BTreeSet::new(),
                instance_id: None,
            },
            "range",
            &["t"],
        ),
        &counts,
    );
    assert!(matches!(
        refused,
        Err(GroupError::GroupFull { limit: 300, .. })
    ));
    settle(&mut coordinator, now, &mut crowd, "range", &counts);
    let owned: Vec<TopicPartition> = crowd
        .iter()
        .flat_map(|client| client.owned.clone())
        .collect();
    assert_eq!(owned.len(), 8);
    // Another group is unaffected by all of this.
    let mut other = heartbeat(
        &Client {
            member_id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
            instance_id: None,
        },
        "round-robin",
        &["t"],
    );
    other.group_id = "other".into();
    let reply = coordinator.handle_heartbeat(now, other, &counts).unwrap();
    assert_eq!(reply.assignment.len(), 8);
}

// Goal: a pattern subscription follows the topics that match it, including new ones.
#[test]
fn pattern_subscriptions_follow_new_topics() {
    let now = crate::clock::ManualClock::new(0).now();
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut request = Heartbeat {
        group_id: "g".into(),
        member_epoch: 0,
        rebalance_timeout: Duration::from_secs(30),
        session_timeout: Duration::from_secs(10),
        subscribed_pattern: Some("sensor-.*".into()),
        assignor: "range".into(),
        ..Heartbeat::default()
    };
    let counts = topics(&[("sensor-a", 1), ("orders", 1), ("__consumer_offsets", 1)]);
    let reply = coordinator
        .handle_heartbeat(now, request.clone(), &counts)
        .unwrap();
    assert_eq!(
        reply.assignment,
        BTreeSet::from([("sensor-a".to_string(), 0)])
    );
    request.member_id = reply.member_id;
    request.member_epoch = reply.member_epoch;
    request.owned = reply.assignment;
    let grown = topics(&[("sensor-a", 1), ("sensor-b", 2), ("orders", 1)]);
    let reply = coordinator.handle_heartbeat(now, request, &grown).unwrap();
    assert_eq!(reply.assignment.len(), 3);
}

// Goal: under seeded random churn (joins, clean leaves, crashes that expire, static
// restarts, heartbeats in random order, slow revocations) no partition ever has two
// holders; once churn stops and time passes, every partition is owned by exactly one live
// member (safety, then liveness). Replay a seed with LEDGE_SIM_SEED=<n>.
#[test]
fn random_churn_keeps_one_owner_per_partition() {
    use rand::{Rng, SeedableRng};
    for seed in crate::sim::seeds(0, 300) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let assignor = ["range", "round-robin", "cooperative-sticky"][rng.random_range(0..3)];
        let counts = topics(&[("t", rng.random_range(1..9)), ("u", rng.random_range(1..5))]);
        let epoch = crate::clock::ManualClock::new(0).now();
        let mut now = epoch;
        let mut coordinator = GroupCoordinator::new(GroupLimits::default(), seed);
        let mut clients: Vec<Client> = Vec::new();
        let mut next_instance = 0;
        for _ in 0..200 {
            now += Duration::from_millis(rng.random_range(0..800));
            match rng.random_range(0..10) {
                0 | 1 if clients.len() < 6 => {
                    let instance = rng.random_bool(0.3).then(|| {
                        next_instance += 1;
                        format!("instance-{next_instance}")
                    });
                    let mut client = Client {
                        member_id: String::new(),
                        epoch: 0,
                        owned: BTreeSet::new(),
                        instance_id: instance,
                    };
                    let reply = coordinator
                        .handle_heartbeat(now, heartbeat(&client, assignor, &["t", "u"]), &counts)
                        .unwrap();
                    client.member_id = reply.member_id;
                    client.epoch = reply.member_epoch;
                    client.owned = reply.assignment;
                    clients.push(client);
                }
                2 if !clients.is_empty() => {
                    // Clean leave (or a static member stepping away).
                    let leaving = clients.remove(rng.random_range(0..clients.len()));
                    let mut request = heartbeat(&leaving, assignor, &["t", "u"]);
                    request.member_epoch = if leaving.instance_id.is_some() {
                        -2
                    } else {
                        -1
                    };
                    let _ = coordinator.handle_heartbeat(now, request, &counts);
                }
                3 if !clients.is_empty() => {
                    // Crash: the client just disappears; the session timeout removes it.
                    clients.remove(rng.random_range(0..clients.len()));
                }
                _ if !clients.is_empty() => {
                    let index = rng.random_range(0..clients.len());
                    let client = &mut clients[index];
                    // A slow client sometimes reports its old holdings (not yet revoked).
                    let slow = rng.random_bool(0.2);
                    match coordinator.handle_heartbeat(
                        now,
                        heartbeat(client, assignor, &["t", "u"]),
                        &counts,
                    ) {
                        Ok(reply) => {
                            client.member_id = reply.member_id;
                            client.epoch = reply.member_epoch;
                            if !slow {
                                client.owned = reply.assignment;
                            }
                        }
                        Err(GroupError::UnknownMember { .. }) => {
                            // Expired while silent: rejoin, as the SDK does.
                            client.member_id.clear();
                            client.epoch = 0;
                            client.owned.clear();
                        }
                        Err(error) => panic!("seed {seed}: {error}"),
                    }
                }
                _ => {}
            }
            coordinator.handle_timeout(now, &counts);
            coordinator.check_invariants();
        }
        // Liveness: no more churn; everyone heartbeats promptly until things settle.
        for _round in 0..30 {
            now += Duration::from_millis(500);
            for client in clients.iter_mut() {
                match coordinator.handle_heartbeat(
                    now,
                    heartbeat(client, assignor, &["t", "u"]),
                    &counts,
                ) {
                    Ok(reply) => {
                        client.member_id = reply.member_id;
                        client.epoch = reply.member_epoch;
                        client.owned = reply.assignment;
                    }
                    Err(_) => {
                        client.member_id.clear();
                        client.epoch = 0;
                        client.owned.clear();
                    }
                }
            }
            coordinator.handle_timeout(now, &counts);
            coordinator.check_invariants();
        }
        if !clients.is_empty() {
            let owned: Vec<TopicPartition> = clients
                .iter()
                .flat_map(|client| client.owned.clone())
                .collect();
            let unique: BTreeSet<TopicPartition> = owned.iter().cloned().collect();
            let total: u32 = counts.values().sum();
            assert_eq!(
                owned.len(),
                unique.len(),
                "seed {seed}: a partition with two owners"
            );
            assert_eq!(
                unique.len(),
                total as usize,
                "seed {seed}: {assignor}: not every partition owned after settling"
            );
        }
    }
}

// Goal: a member whose partitions are still moving is told to heartbeat sooner, so a
// rebalance takes a few short intervals; a settled member goes back to the normal pace.
#[test]
fn moving_members_heartbeat_faster() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let limits = GroupLimits::default();
    let mut coordinator = GroupCoordinator::new(limits.clone(), 1);
    let mut clients = vec![join(&mut coordinator, now, "range", &counts, None)];
    settle(&mut coordinator, now, &mut clients, "range", &counts);
    let settled = coordinator
        .handle_heartbeat(now, heartbeat(&clients[0], "range", &["t"]), &counts)
        .unwrap();
    assert_eq!(settled.heartbeat_interval, limits.heartbeat_interval);
    let joining = Client {
        member_id: String::new(),
        epoch: 0,
        owned: BTreeSet::new(),
        instance_id: None,
    };
    let waiting = coordinator
        .handle_heartbeat(now, heartbeat(&joining, "range", &["t"]), &counts)
        .unwrap();
    assert!(
        waiting.assignment.is_empty(),
        "its partitions are still owned by the first member"
    );
    assert_eq!(
        waiting.heartbeat_interval,
        limits.reconciling_heartbeat_interval
    );
    let revoking = coordinator
        .handle_heartbeat(now, heartbeat(&clients[0], "range", &["t"]), &counts)
        .unwrap();
    assert_eq!(
        revoking.heartbeat_interval,
        limits.reconciling_heartbeat_interval
    );
}

/// Two members sharing `t`'s 4 partitions, settled, after the second joined: the first
/// member's epoch moved on (its assignment shrank), so it has a previous epoch.
fn two_settled_members(coordinator: &mut GroupCoordinator, now: Instant) -> Vec<Client> {
    let counts = topics(&[("t", 4)]);
    let mut clients = vec![join(coordinator, now, "range", &counts, None)];
    settle(coordinator, now, &mut clients, "range", &counts);
    clients.push(join(coordinator, now, "range", &counts, None));
    settle(coordinator, now, &mut clients, "range", &counts);
    assert_eq!(all_owned(&clients), [2, 2]);
    clients
}

/// The first member's epoch moves on while its client does not hear of it (the answer was
/// lost): the second member leaves, so the first is given all 4 partitions at a new epoch.
/// Returns (the client as it still is, the epoch the coordinator moved it to).
fn lose_an_answer(coordinator: &mut GroupCoordinator, now: Instant) -> (Client, i32) {
    let counts = topics(&[("t", 4)]);
    let mut clients = two_settled_members(coordinator, now);
    let leaving = clients.remove(1);
    let mut leave = heartbeat(&leaving, "range", &["t"]);
    leave.member_epoch = -1;
    coordinator.handle_heartbeat(now, leave, &counts).unwrap();
    let client = clients.remove(0);
    let reply = coordinator
        .handle_heartbeat(now, heartbeat(&client, "range", &["t"]), &counts)
        .unwrap();
    assert!(reply.member_epoch > client.epoch, "the epoch moved on");
    assert_eq!(reply.assignment.len(), 4);
    (client, reply.member_epoch)
}

// Goal: Kafka's epoch fencing (`throwIfConsumerGroupMemberEpochIsInvalid`): a member at its
// previous epoch whose answer was lost is taken back when it owns only what it is assigned,
// and answered with its current epoch and assignment.
#[test]
fn the_previous_epoch_owning_within_the_assignment_is_accepted() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let (client, current) = lose_an_answer(&mut coordinator, now);
    // The client heartbeats again at its old epoch, owning its 2 (a subset of the 4).
    let reply = coordinator
        .handle_heartbeat(now, heartbeat(&client, "range", &["t"]), &counts)
        .unwrap();
    assert_eq!(reply.member_epoch, current);
    assert_eq!(reply.assignment.len(), 4);
    coordinator.check_invariants();
}

// Goal: a member at its previous epoch that owns a partition its current assignment does
// not have is fenced: its view is too old to trust.
#[test]
fn the_previous_epoch_owning_more_than_the_assignment_is_fenced() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = vec![join(&mut coordinator, now, "range", &counts, None)];
    settle(&mut coordinator, now, &mut clients, "range", &counts);
    let first_epoch = clients[0].epoch;
    // A second member joins; the first is told (at a new epoch) to give up 2 partitions,
    // and that answer is lost.
    let _second = join(&mut coordinator, now, "range", &counts, None);
    let reply = coordinator
        .handle_heartbeat(now, heartbeat(&clients[0], "range", &["t"]), &counts)
        .unwrap();
    assert!(reply.member_epoch > first_epoch);
    assert_eq!(reply.assignment.len(), 2);
    // The client, still at its old epoch and owning all 4, is fenced.
    assert_eq!(
        coordinator.handle_heartbeat(now, heartbeat(&clients[0], "range", &["t"]), &counts),
        Err(GroupError::FencedEpoch {
            member_id: clients[0].member_id.clone(),
            current: reply.member_epoch,
            received: first_epoch,
        })
    );
    // Owning only what it kept, it is accepted.
    let mut trimmed = heartbeat(&clients[0], "range", &["t"]);
    trimmed.owned = reply.assignment.clone();
    assert!(coordinator.handle_heartbeat(now, trimmed, &counts).is_ok());
    coordinator.check_invariants();
}

// Goal: an epoch behind the coordinator's that is not the previous one is fenced, and so is
// the previous one when the client left its owned partitions out (Kafka's null list).
#[test]
fn an_older_epoch_than_the_previous_one_is_fenced() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let (mut client, current) = lose_an_answer(&mut coordinator, now);
    let previous = client.epoch;
    // Its epoch moves once more (a member joins, the first is told to give up 2).
    let _third = join(&mut coordinator, now, "range", &counts, None);
    client.epoch = current;
    client.owned = coordinator
        .member_state("g", &client.member_id)
        .unwrap()
        .assigned;
    let reply = coordinator
        .handle_heartbeat(now, heartbeat(&client, "range", &["t"]), &counts)
        .unwrap();
    assert!(reply.member_epoch > current);
    client.owned = reply.assignment;
    client.epoch = previous;
    assert!(matches!(
        coordinator.handle_heartbeat(now, heartbeat(&client, "range", &["t"]), &counts),
        Err(GroupError::FencedEpoch { received, .. }) if received == previous
    ));
    client.epoch = current;
    let mut omitted = heartbeat(&client, "range", &["t"]);
    omitted.owned_omitted = true;
    assert!(matches!(
        coordinator.handle_heartbeat(now, omitted.clone(), &counts),
        Err(GroupError::FencedEpoch { received, .. }) if received == current
    ));
    // The same heartbeat reporting what it owns is the lost-answer case, and is taken.
    omitted.owned_omitted = false;
    assert!(coordinator.handle_heartbeat(now, omitted, &counts).is_ok());
    coordinator.check_invariants();
}

// Goal: an epoch ahead of the coordinator's is fenced; a fenced member rejoins under its
// id at epoch 0 (KIP-848) reporting what it still owns, and is given an assignment.
#[test]
fn a_newer_epoch_is_fenced_and_the_member_rejoins_at_epoch_zero() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let mut clients = two_settled_members(&mut coordinator, now);
    let current = clients[0].epoch;
    clients[0].epoch = current + 1;
    assert!(matches!(
        coordinator.handle_heartbeat(now, heartbeat(&clients[0], "range", &["t"]), &counts),
        Err(GroupError::FencedEpoch { received, .. }) if received == current + 1
    ));
    // The rejoin: same id, epoch 0, its partitions given up.
    clients[0].epoch = 0;
    clients[0].owned.clear();
    step(
        &mut coordinator,
        now,
        &mut clients[0],
        "range",
        &["t"],
        &counts,
    );
    settle(&mut coordinator, now, &mut clients, "range", &counts);
    assert_eq!(all_owned(&clients), [2, 2]);
    assert!(clients[0].epoch > 0);
}

// Goal: a classic member of a KIP-848 group is not epoch-checked by the coordinator (the
// service checks its generation), as Kafka skips the check for classic members.
#[test]
fn classic_members_are_not_epoch_checked() {
    let now = crate::clock::ManualClock::new(0).now();
    let counts = topics(&[("t", 4)]);
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let (client, current) = lose_an_answer(&mut coordinator, now);
    let mut stale = heartbeat(&client, "range", &["t"]);
    stale.member_epoch = client.epoch - 1;
    assert!(
        coordinator
            .handle_heartbeat(now, stale.clone(), &counts)
            .is_err()
    );
    stale.protocol = MemberProtocol::Classic;
    let reply = coordinator.handle_heartbeat(now, stale, &counts).unwrap();
    assert_eq!(reply.member_epoch, current);
}

// Goal: commits per rule. Kafka's (`Current`): only the member's current epoch, an older or
// newer one is STALE_MEMBER_EPOCH. The native one (`NotNewer`): any epoch up to the current
// one, each partition checked to be the member's; a newer one is fenced.
#[test]
fn commit_epochs_are_checked_per_rule() {
    let now = crate::clock::ManualClock::new(0).now();
    let mut coordinator = GroupCoordinator::new(GroupLimits::default(), 1);
    let (client, current) = lose_an_answer(&mut coordinator, now);
    let mine: Vec<TopicPartition> = client.owned.iter().cloned().collect();
    let member = client.member_id.as_str();
    assert_eq!(
        coordinator.validate_commit("g", member, current, CommitEpochRule::Current, &mine),
        Ok(vec![None; mine.len()])
    );
    for epoch in [client.epoch, current + 1] {
        assert_eq!(
            coordinator.validate_commit("g", member, epoch, CommitEpochRule::Current, &mine),
            Err(GroupError::StaleEpoch {
                member_id: member.to_string(),
                current,
                received: epoch,
            })
        );
    }
    assert_eq!(
        coordinator.validate_commit("g", member, client.epoch, CommitEpochRule::NotNewer, &mine),
        Ok(vec![None; mine.len()])
    );
    assert!(matches!(
        coordinator.validate_commit("g", member, current + 1, CommitEpochRule::NotNewer, &mine),
        Err(GroupError::FencedEpoch { .. })
    ));
}
