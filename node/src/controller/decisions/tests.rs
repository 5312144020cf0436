use super::*;
use crate::clock::{Clock, SystemClock};

const SESSION: Duration = Duration::from_millis(9_000);

fn config() -> DecisionConfig {
    DecisionConfig {
        node_session_timeout: SESSION,
        ..DecisionConfig::default()
    }
}

struct Cluster {
    logic: ControllerLogic,
    image: MetadataImage,
    now: Instant,
}

impl Cluster {
    /// `nodes` registered and heartbeating.
    fn new(nodes: u32) -> Self {
        let mut cluster = Self {
            logic: ControllerLogic::new(config()),
            image: MetadataImage::default(),
            now: SystemClock.now(),
        };
        for node_id in 1..=nodes {
            cluster.start(node_id, u64::from(node_id));
        }
        cluster
    }

    fn commit(&mut self, records: &[MetadataRecord]) {
        if records.is_empty() {
            return;
        }
        let index = self.image.last_applied_index + 1;
        self.image.apply_batch(index, records).unwrap();
    }

    /// Registers a start of `node_id` with its data directory kept and heartbeats once;
    /// returns its epoch.
    fn start(&mut self, node_id: NodeId, incarnation_id: u64) -> NodeEpoch {
        self.start_with_disk(node_id, incarnation_id, u8::try_from(node_id).unwrap())
    }

    /// Registers a start of `node_id` whose data directory has storage id `[disk; 16]`.
    fn start_with_disk(&mut self, node_id: NodeId, incarnation_id: u64, disk: u8) -> NodeEpoch {
        let request = RegisterRequest {
            node_id,
            address: format!("127.0.0.1:{}", 9100 + node_id),
            incarnation_id,
            storage_id: Some(StorageId([disk; 16])),
            kafka_listeners: None,
        };
        let (records, epoch) = self
            .logic
            .handle_register(&self.image, self.now, &request)
            .unwrap();
        self.commit(&records);
        self.heartbeat(node_id);
        epoch
    }

    fn heartbeat(&mut self, node_id: NodeId) {
        let epoch = self.image.nodes[&node_id].node_epoch;
        let records = self
            .logic
            .handle_heartbeat(&self.image, self.now, node_id, epoch)
            .unwrap();
        self.commit(&records);
    }

    fn create(&mut self, name: &str, partitions: u32, factor: u16) -> TopicId {
        self.create_with(name, partitions, factor, &[]).unwrap()
    }

    fn create_with(
        &mut self,
        name: &str,
        partitions: u32,
        factor: u16,
        configs: &[(&str, &str)],
    ) -> Result<TopicId, ControllerError> {
        let topic_id = TopicId([u8::try_from(self.image.topics.len()).unwrap() + 1; 16]);
        let request = CreateTopicRequest {
            name: name.to_owned(),
            topic_id,
            partitions,
            replication_factor: Some(factor),
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let records = self.logic.create_topic(&self.image, &request)?;
        self.commit(&records);
        Ok(topic_id)
    }

    /// Time passes with only `alive` heartbeating; fencing runs.
    fn pass(&mut self, duration: Duration, alive: &[NodeId]) {
        self.now += duration;
        for node in alive {
            self.heartbeat(*node);
        }
        let records = self.logic.poll_fencing(&self.image, self.now).unwrap();
        self.commit(&records);
    }

    fn state(&self, topic_id: TopicId, partition: u32) -> PartitionState {
        self.image.partition(topic_id, partition).unwrap().clone()
    }

    /// Leaves partition 0 of `topic` with its leader alone in the ISR and nobody in the
    /// ELR, so no other replica holds every committed record: the last follower in replica
    /// order is shrunk out of an ISR that stays at min.insync (2 of 3: the HW moves on
    /// without it), then the other one reports its copy damaged. Returns the leader.
    fn leave_the_leader_alone_in_the_isr(&mut self, topic: TopicId) -> NodeId {
        let state = self.state(topic, 0);
        let leader = state.leader.unwrap();
        let others: Vec<NodeId> = state
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != leader)
            .collect();
        let records = self
            .logic
            .alter_partition(
                &self.image,
                &self.alter(&state, topic, &[leader, others[0]]),
            )
            .unwrap();
        self.commit(&records);
        let damaged = ReplicaDamagedRequest {
            node_id: others[0],
            node_epoch: self.image.nodes[&others[0]].node_epoch,
            topic_id: topic,
            partition: 0,
        };
        let records = self.logic.replica_damaged(&self.image, &damaged).unwrap();
        self.commit(&records);
        let alone = self.state(topic, 0);
        assert_eq!((alone.isr, alone.elr), (vec![leader], vec![]));
        leader
    }

    fn alter(
        &self,
        state: &PartitionState,
        topic_id: TopicId,
        isr: &[NodeId],
    ) -> AlterPartitionRequest {
        let leader = state.leader.unwrap();
        AlterPartitionRequest {
            node_id: leader,
            node_epoch: self.image.nodes[&leader].node_epoch,
            topic_id,
            partition: 0,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: isr
                .iter()
                .map(|id| (*id, self.image.nodes[id].node_epoch))
                .collect(),
        }
    }
}

#[test]
fn a_restart_registers_with_a_new_larger_epoch_and_a_retry_keeps_its_epoch() {
    let mut cluster = Cluster::new(2);
    let first = cluster.image.nodes[&1].node_epoch;
    let request = RegisterRequest {
        node_id: 1,
        address: "a".into(),
        incarnation_id: 1,
        storage_id: Some(StorageId([1; 16])),
        kafka_listeners: None,
    };
    let (records, epoch) = cluster
        .logic
        .handle_register(&cluster.image, cluster.now, &request)
        .unwrap();
    assert!(
        records.is_empty(),
        "a retried registration proposes nothing"
    );
    assert_eq!(epoch, first);
    let restarted = cluster.start(1, 77);
    assert!(restarted > first && restarted > cluster.image.nodes[&2].node_epoch);
    assert_eq!(
        cluster
            .logic
            .handle_heartbeat(&cluster.image, cluster.now, 1, first),
        Err(ControllerError::StaleNodeEpoch {
            node_id: 1,
            current: restarted,
            given: first
        })
    );
}

#[test]
fn a_node_is_fenced_after_the_session_timeout_and_its_partitions_elect_from_the_isr() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 3, 3);
    cluster.pass(SESSION / 2, &[1, 2, 3]);
    assert!(cluster.image.nodes.values().all(|node| !node.fenced));
    // Node 1 stops heartbeating; just before its deadline it is still in.
    cluster.pass(SESSION - Duration::from_millis(1), &[2, 3]);
    assert!(!cluster.image.nodes[&1].fenced);
    cluster.pass(Duration::from_millis(1), &[2, 3]);
    assert!(cluster.image.nodes[&1].fenced);
    for partition in 0..3 {
        let state = cluster.state(topic, partition);
        assert!(!state.isr.contains(&1), "partition {partition}: {state:?}");
        assert_ne!(state.leader, Some(1));
        assert!(
            state
                .leader
                .is_some_and(|leader| state.isr.contains(&leader))
        );
    }
    // The partition node 1 led got a new leader epoch; the others only a new partition epoch.
    let led = (0..3)
        .map(|p| cluster.state(topic, p))
        .filter(|s| s.leader_epoch == 1)
        .count();
    assert_eq!(led, 1);
}

#[test]
fn after_a_controller_change_every_node_gets_a_full_session_before_it_is_fenced() {
    let mut cluster = Cluster::new(2);
    cluster.now += SESSION;
    // A new active controller knows no sessions: its first poll starts one for every node.
    cluster.logic = ControllerLogic::new(config());
    cluster.pass(Duration::ZERO, &[]);
    cluster.pass(SESSION - Duration::from_millis(1), &[]);
    assert!(cluster.image.nodes.values().all(|node| !node.fenced));
    assert_eq!(
        cluster.logic.poll_timeout(&cluster.image),
        Some(cluster.now + Duration::from_millis(1))
    );
    cluster.pass(Duration::from_millis(1), &[]);
    assert!(cluster.image.nodes.values().all(|node| node.fenced));
}

#[test]
fn a_new_controller_fences_its_silent_predecessor_one_session_after_it_was_last_heard() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 3, 3);
    // Node 1 was the active controller; node 2 last accepted its appends at `heard`, won the
    // election 400 ms later and took over.
    let heard = cluster.now;
    cluster.now += Duration::from_millis(400);
    cluster.logic = ControllerLogic::new(config()).with_predecessor(1, heard);
    cluster.pass(Duration::ZERO, &[2, 3]);
    assert!(cluster.image.nodes.values().all(|node| !node.fenced));
    // Node 1's session ends one session after it was heard, the others' one after the
    // takeover.
    assert_eq!(
        cluster.logic.poll_timeout(&cluster.image),
        Some(heard + SESSION)
    );
    cluster.pass(SESSION - Duration::from_millis(401), &[2, 3]);
    assert!(!cluster.image.nodes[&1].fenced);
    cluster.pass(Duration::from_millis(1), &[2, 3]);
    assert!(cluster.image.nodes[&1].fenced);
    assert!(!cluster.image.nodes[&2].fenced && !cluster.image.nodes[&3].fenced);
    for partition in 0..3 {
        assert_ne!(cluster.state(topic, partition).leader, Some(1));
    }
}

#[test]
fn a_predecessor_that_heartbeats_to_the_new_controller_keeps_a_full_session() {
    let mut cluster = Cluster::new(3);
    let heard = cluster.now;
    cluster.now += SESSION;
    // Stepped down and alive: it heartbeats here before the first fencing poll.
    cluster.logic = ControllerLogic::new(config()).with_predecessor(1, heard);
    cluster.pass(Duration::ZERO, &[1, 2, 3]);
    cluster.pass(SESSION - Duration::from_millis(1), &[]);
    assert!(cluster.image.nodes.values().all(|node| !node.fenced));
    // A predecessor heard "later" than now (clocks are one here, but never trust that)
    // gets no more than a full session either.
    let mut cluster = Cluster::new(2);
    let later = cluster.now + SESSION;
    cluster.logic = ControllerLogic::new(config()).with_predecessor(1, later);
    cluster.pass(Duration::ZERO, &[]);
    assert_eq!(
        cluster.logic.poll_timeout(&cluster.image),
        Some(cluster.now + SESSION)
    );
}

/// B.5 #1: the ISR has shrunk to the leader, the leader dies: with unclean election off
/// (the default) the partition goes offline rather than electing a replica missing acked
/// records; when the last ISR member returns, it leads again. (The others are out of the
/// ELR too: a follower merely shrunk out of an ISR below min.insync would hold every
/// committed record and lead from the ELR.)
#[test]
fn unclean_election_is_off_by_default_and_the_last_isr_member_leads_when_it_returns() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let leader = cluster.leave_the_leader_alone_in_the_isr(topic);
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    cluster.pass(SESSION, &others);
    let offline = cluster.state(topic, 0);
    assert_eq!(offline.leader, None);
    assert_eq!(
        offline.isr,
        vec![leader],
        "the last ISR member stays in the ISR"
    );
    cluster.heartbeat(leader);
    assert_eq!(cluster.state(topic, 0).leader, Some(leader));
}

/// B.5 #3/#4 (KIP-858 + KIP-966): the ISR has shrunk to the leader, the leader dies and
/// comes back with an empty disk (a new storage id). It must not lead: it leaves the ISR,
/// the partition stays offline, and no heartbeat of it elects it. Replicas that left the
/// ISR while it was below min.insync (the ELR) keep every committed record and may lead.
#[test]
fn the_last_isr_member_returning_with_an_empty_disk_is_not_elected() {
    // Case 1: the nodes die one by one. B leaves an ISR of 3 (2 remain = min.insync: no
    // ELR); A leaves next (the ISR is then below min.insync: A keeps every committed record
    // and joins the ELR); the leader L dies last and stays the last ISR member.
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let leader = cluster.state(topic, 0).leader.unwrap();
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    let (a, b) = (others[0], others[1]);
    cluster.pass(SESSION, &[leader, a]);
    assert!(cluster.state(topic, 0).elr.is_empty());
    cluster.pass(SESSION, &[leader]);
    assert_eq!(cluster.state(topic, 0).elr, vec![a]);
    cluster.pass(SESSION, &[]);
    let offline = cluster.state(topic, 0);
    assert_eq!(offline.leader, None);
    assert_eq!(
        (offline.isr.clone(), offline.elr.clone()),
        (vec![leader], vec![a])
    );
    // L returns with an empty disk: out of the ISR, and its heartbeats do not elect it; nor
    // do B's (B is in neither list).
    cluster.start_with_disk(leader, 50, 200);
    cluster.pass(Duration::from_millis(1), &[leader, b]);
    let still = cluster.state(topic, 0);
    assert_eq!(still.leader, None, "{still:?}");
    assert!(still.isr.is_empty() && still.elr == vec![a], "{still:?}");
    // A returns with its disk: it leads, from the ELR.
    cluster.start(a, 51);
    let back = cluster.state(topic, 0);
    assert_eq!(back.leader, Some(a));
    assert_eq!((back.isr, back.elr), (vec![a], vec![]));

    // Case 2: the last ISR member alone held the data and returns empty: offline for good
    // (unclean election is off), with an empty ISR; a retried registration changes nothing.
    // (A follower merely shrunk out of the leader's ISR would hold the data: seed 1283.)
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let leader = cluster.leave_the_leader_alone_in_the_isr(topic);
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    cluster.pass(SESSION, &others);
    assert_eq!(cluster.state(topic, 0).isr, vec![leader]);
    cluster.start_with_disk(leader, 60, 201);
    let wiped = cluster.state(topic, 0);
    assert_eq!(wiped.leader, None, "{wiped:?}");
    assert!(
        wiped.isr.is_empty() && !wiped.elr.contains(&leader),
        "{wiped:?}"
    );
    cluster.pass(Duration::from_millis(1), &[1, 2, 3]);
    cluster.start_with_disk(leader, 60, 201);
    assert_eq!(cluster.state(topic, 0).leader, None);
    // A restart with the same (new) disk changes nothing more.
    cluster.start_with_disk(leader, 61, 201);
    assert_eq!(cluster.state(topic, 0), wiped);

    // Case 3: the leader restarts quickly with an empty disk while it still leads with
    // others in the ISR: leadership moves to an ISR member that kept its data.
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let leader = cluster.state(topic, 0).leader.unwrap();
    cluster.start_with_disk(leader, 70, 202);
    let moved = cluster.state(topic, 0);
    assert!(moved.leader.is_some_and(|new| new != leader), "{moved:?}");
    assert!(!moved.isr.contains(&leader));
}

/// KIP-966 (Kafka's `PartitionChangeBuilder`): a member the leader shrinks out while the
/// ISR drops below min.insync joins the ELR, as a fenced one does: the leader's high
/// watermark counted it until the shrink and does not move after, so it holds every
/// committed record. The finding of simulator seeds 1283 and 7707: a follower cut off from
/// its leader was shrunk out, leaving the leader alone in the ISR with no ELR; the leader
/// came back on a wiped disk and left the ISR, and the partition had nobody to elect for
/// good although the follower held every record. Now the follower leads. A member shrunk
/// out of an ISR that stays at min.insync does not join (the HW moves on without it).
#[test]
fn a_member_shrunk_out_below_min_insync_joins_the_elr_and_leads_after_a_wiped_leader() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    let (a, b) = (others[0], others[1]);
    // B lags: the ISR stays at min.insync (2), so the HW moves on without B: no ELR.
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &cluster.alter(&state, topic, &[leader, a]))
        .unwrap();
    cluster.commit(&records);
    let shrunk = cluster.state(topic, 0);
    assert_eq!(
        (shrunk.isr.clone(), shrunk.elr.clone()),
        (vec![leader, a], vec![])
    );
    // A lags too: the ISR drops below min.insync and A keeps an ELR place.
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &cluster.alter(&shrunk, topic, &[leader]))
        .unwrap();
    cluster.commit(&records);
    let alone = cluster.state(topic, 0);
    // B stays out: it may miss records the HW passed while A and the leader were the ISR.
    assert_eq!(
        (alone.isr.clone(), alone.elr.clone()),
        (vec![leader], vec![a])
    );
    assert!(!alone.elr.contains(&b));
    // The leader comes back on a wiped disk: A, which holds every committed record, leads.
    cluster.start_with_disk(leader, 80, 210);
    let moved = cluster.state(topic, 0);
    assert_eq!(moved.leader, Some(a), "{moved:?}");
    assert_eq!((moved.isr, moved.elr), (vec![a], vec![]));
    assert!(moved.leader_epoch > alone.leader_epoch);

    // Two members shrunk out at once both join; an expansion back to min.insync empties it.
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &cluster.alter(&state, topic, &[leader]))
        .unwrap();
    cluster.commit(&records);
    let alone = cluster.state(topic, 0);
    let mut elr = alone.elr.clone();
    elr.sort_unstable();
    let mut expected: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    expected.sort_unstable();
    assert_eq!(elr, expected);
    let back = expected[0];
    let records = cluster
        .logic
        .alter_partition(
            &cluster.image,
            &cluster.alter(&alone, topic, &[leader, back]),
        )
        .unwrap();
    cluster.commit(&records);
    assert!(cluster.state(topic, 0).elr.is_empty());
}

#[test]
fn unclean_election_when_the_topic_enables_it_elects_a_live_replica_alone_in_the_isr() {
    let mut cluster = Cluster::new(3);
    let topic = cluster
        .create_with("logs", 1, 3, &[(UNCLEAN_LEADER_ELECTION_KEY, "true")])
        .unwrap();
    let leader = cluster.leave_the_leader_alone_in_the_isr(topic);
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != leader).collect();
    cluster.pass(SESSION, &others);
    let elected = cluster.state(topic, 0);
    let new_leader = elected.leader.unwrap();
    assert!(others.contains(&new_leader));
    assert_eq!(elected.isr, vec![new_leader]);
}

/// B.5 #4 (KIP-903): a follower restarted with an empty disk registers a new epoch; it leaves
/// the ISR at once, and a leader that still knows it by its old epoch cannot put it back.
#[test]
fn a_restarted_follower_leaves_the_isr_and_rejoins_only_with_its_new_epoch() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let follower = state
        .replicas
        .iter()
        .copied()
        .find(|id| *id != leader)
        .unwrap();
    let old_epoch = cluster.image.nodes[&follower].node_epoch;
    let new_epoch = cluster.start(follower, 99);
    let after = cluster.state(topic, 0);
    assert!(!after.isr.contains(&follower), "{after:?}");
    assert_eq!(after.leader, Some(leader));

    let mut stale = cluster.alter(&after, topic, &after.isr);
    stale.new_isr.push((follower, old_epoch));
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &stale),
        Err(ControllerError::IneligibleReplica { node_id, .. }) if node_id == follower
    ));
    let mut fresh = stale.clone();
    fresh.new_isr.last_mut().unwrap().1 = new_epoch;
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &fresh)
        .unwrap();
    cluster.commit(&records);
    assert!(cluster.state(topic, 0).isr.contains(&follower));
}

/// Review finding 4: a new leader keeps ISR members it has not seen fetch yet with node
/// epoch 0 ("no claim", `replication::leader`). That must be accepted for members already
/// in the ISR (else every such proposal is refused and re-proposed forever), and refused for
/// a member joining, which must name the epoch it fetched with (KIP-903).
#[test]
fn a_kept_isr_member_may_come_without_a_claim_and_a_joining_one_may_not() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let (kept, dropped) = (state.replicas[1], state.replicas[2]);
    let mut shrink = cluster.alter(&state, topic, &[leader, kept]);
    shrink.new_isr[1].1 = NODE_EPOCH_NO_CLAIM;
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &shrink)
        .unwrap();
    cluster.commit(&records);
    let shrunk = cluster.state(topic, 0);
    assert_eq!(shrunk.isr, vec![leader, kept]);
    let mut expand = cluster.alter(&shrunk, topic, &[leader, kept, dropped]);
    expand.new_isr[2].1 = NODE_EPOCH_NO_CLAIM;
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &expand),
        Err(ControllerError::IneligibleReplica { node_id, reason })
            if node_id == dropped && reason.contains("needs the node epoch")
    ));
}

#[test]
fn alter_partition_checks_leader_epochs_partition_epoch_and_fenced_members() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let follower = state.replicas[1];
    let shrink = cluster.alter(&state, topic, &[leader, state.replicas[2]]);

    let mut not_leader = shrink.clone();
    not_leader.node_id = follower;
    not_leader.node_epoch = cluster.image.nodes[&follower].node_epoch;
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &not_leader),
        Err(ControllerError::NotLeaderOrFollower { .. })
    ));
    let mut old_epoch = shrink.clone();
    old_epoch.leader_epoch = -1;
    assert_eq!(
        cluster.logic.alter_partition(&cluster.image, &old_epoch),
        Err(ControllerError::FencedLeaderEpoch {
            current: 0,
            given: -1
        })
    );
    let mut new_epoch = shrink.clone();
    new_epoch.leader_epoch = 1;
    assert_eq!(
        cluster.logic.alter_partition(&cluster.image, &new_epoch),
        Err(ControllerError::UnknownLeaderEpoch {
            current: 0,
            given: 1
        })
    );
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &shrink)
        .unwrap();
    cluster.commit(&records);
    // The same request again was decided on an old partition epoch: the CAS refuses it.
    assert_eq!(
        cluster.logic.alter_partition(&cluster.image, &shrink),
        Err(ControllerError::InvalidUpdateVersion {
            current: 1,
            given: 0
        })
    );
    // A fenced node cannot be added back.
    cluster.pass(SESSION, &[leader, state.replicas[2]]);
    assert!(cluster.image.nodes[&follower].fenced);
    let current = cluster.state(topic, 0);
    let expand = cluster.alter(&current, topic, &[leader, state.replicas[2], follower]);
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &expand),
        Err(ControllerError::IneligibleReplica { reason, .. }) if reason == "fenced"
    ));
    let mut stale_sender = cluster.alter(&current, topic, &[leader]);
    stale_sender.node_epoch -= 1;
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &stale_sender),
        Err(ControllerError::StaleNodeEpoch { .. })
    ));
}

#[test]
fn placement_spreads_leaders_and_replicas_over_live_nodes() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 6, 2);
    let mut leaders = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    for partition in 0..6 {
        let state = cluster.state(topic, partition);
        assert_eq!(state.replicas.len(), 2);
        assert_eq!(state.isr, state.replicas);
        *leaders.entry(state.leader.unwrap()).or_insert(0) += 1;
        for replica in state.replicas {
            *replicas.entry(replica).or_insert(0) += 1;
        }
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    assert_eq!(
        replicas.values().copied().collect::<Vec<_>>(),
        vec![4, 4, 4]
    );
    // A fenced node gets no new replicas.
    cluster.pass(SESSION, &[1, 2]);
    let second = cluster.create("payments", 4, 2);
    for partition in 0..4 {
        assert!(!cluster.state(second, partition).replicas.contains(&3));
    }
}

#[test]
fn replication_factor_and_min_insync_replicas_are_checked_with_clear_messages() {
    let mut cluster = Cluster::new(3);
    let error = cluster.create_with("big", 1, 4, &[]).unwrap_err();
    assert_eq!(error.code(), "INVALID_REPLICATION_FACTOR");
    assert_eq!(
        error.to_string(),
        "topic \"big\": replication factor 4 is larger than the 3 live node(s)"
    );
    let error = cluster
        .create_with("strict", 1, 2, &[(MIN_INSYNC_REPLICAS_KEY, "3")])
        .unwrap_err();
    assert_eq!(error.code(), "INVALID_CONFIG");
    assert!(
        error
            .to_string()
            .contains("min.insync.replicas=3 must be between 1 and the replication factor 2")
    );
    assert_eq!(
        cluster.create_with("zero", 1, 0, &[]).unwrap_err().code(),
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        cluster.create_with("none", 0, 1, &[]).unwrap_err().code(),
        "INVALID_PARTITIONS"
    );
    cluster.create("fine", 1, 3);
    assert_eq!(
        cluster.create_with("fine", 1, 3, &[]).unwrap_err().code(),
        "TOPIC_ALREADY_EXISTS"
    );
    // With one node fenced, RF 3 no longer fits.
    cluster.pass(SESSION, &[1, 2]);
    assert_eq!(
        cluster.create_with("late", 1, 3, &[]).unwrap_err().code(),
        "INVALID_REPLICATION_FACTOR"
    );
    // Nor does the cluster's default of 3: it is refused, not lowered to the 2 live nodes.
    let request = CreateTopicRequest {
        name: "defaulted".to_owned(),
        topic_id: TopicId([9; 16]),
        partitions: 1,
        replication_factor: None,
        configs: Default::default(),
    };
    let error = cluster
        .logic
        .create_topic(&cluster.image, &request)
        .unwrap_err();
    assert_eq!(error.code(), "INVALID_REPLICATION_FACTOR");
    assert_eq!(
        error.to_string(),
        "topic \"defaulted\": replication factor 3 is larger than the 2 live node(s)"
    );
}

#[test]
fn the_preferred_leader_is_elected_again_once_it_is_back_in_the_isr() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let preferred = cluster.state(topic, 0).replicas[0];
    let others: Vec<NodeId> = (1..=3).filter(|id| *id != preferred).collect();
    cluster.pass(SESSION, &others);
    let moved = cluster.state(topic, 0);
    assert_ne!(moved.leader, Some(preferred));
    // Back, unfenced, but not yet in the ISR: no preferred election.
    cluster.heartbeat(preferred);
    assert!(
        cluster
            .logic
            .elect_preferred_leaders(&cluster.image)
            .unwrap()
            .is_empty()
    );
    let mut isr = moved.isr.clone();
    isr.push(preferred);
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &cluster.alter(&moved, topic, &isr))
        .unwrap();
    cluster.commit(&records);
    let records = cluster
        .logic
        .elect_preferred_leaders(&cluster.image)
        .unwrap();
    cluster.commit(&records);
    let state = cluster.state(topic, 0);
    assert_eq!(state.leader, Some(preferred));
    assert_eq!(state.leader_epoch, moved.leader_epoch + 1);
}

#[test]
fn producer_id_blocks_never_overlap_and_need_a_current_node_epoch() {
    let mut cluster = Cluster::new(2);
    let epoch = cluster.image.nodes[&1].node_epoch;
    let (records, first) = cluster
        .logic
        .allocate_producer_ids(&cluster.image, 1, epoch, 1000)
        .unwrap();
    cluster.commit(&records);
    let epoch_2 = cluster.image.nodes[&2].node_epoch;
    let (records, second) = cluster
        .logic
        .allocate_producer_ids(&cluster.image, 2, epoch_2, 1000)
        .unwrap();
    cluster.commit(&records);
    assert_eq!(second, first + 1000);
    assert!(matches!(
        cluster
            .logic
            .allocate_producer_ids(&cluster.image, 1, epoch - 1, 10),
        Err(ControllerError::StaleNodeEpoch { .. })
    ));
}

/// Goal: a replica reporting its copy damaged (issue 13 item 4) leaves the ISR and the ELR
/// and never joins the ELR (it no longer holds the committed records); where it led, another
/// ISR member leads; the last ISR member's report is refused (it stays, offline, the only
/// copy); a stale node epoch is refused; a repeat changes nothing.
#[test]
fn a_damaged_replica_leaves_the_isr_and_the_elr_and_is_not_elected() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let state = cluster.state(topic, 0);
    let leader = state.leader.unwrap();
    let report = |cluster: &Cluster, node_id: NodeId| ReplicaDamagedRequest {
        node_id,
        node_epoch: cluster.image.nodes[&node_id].node_epoch,
        topic_id: topic,
        partition: 0,
    };
    // The leader reports: another ISR member leads, in a new leader epoch; with 2 of 3 left
    // (= min.insync) nobody is in the ELR, the damaged node least of all.
    let records = cluster
        .logic
        .replica_damaged(&cluster.image, &report(&cluster, leader))
        .unwrap();
    cluster.commit(&records);
    let after = cluster.state(topic, 0);
    assert!(
        !after.isr.contains(&leader) && !after.elr.contains(&leader),
        "{after:?}"
    );
    let new_leader = after.leader.unwrap();
    assert_ne!(new_leader, leader);
    assert_eq!(after.leader_epoch, state.leader_epoch + 1);
    assert_eq!(after.partition_epoch, state.partition_epoch + 1);
    // A repeat changes nothing; a stale epoch is refused.
    assert!(
        cluster
            .logic
            .replica_damaged(&cluster.image, &report(&cluster, leader))
            .unwrap()
            .is_empty()
    );
    let mut stale = report(&cluster, leader);
    stale.node_epoch -= 1;
    assert!(matches!(
        cluster.logic.replica_damaged(&cluster.image, &stale),
        Err(ControllerError::StaleNodeEpoch { .. })
    ));
    // A follower fenced out of an ISR below min.insync sits in the ELR; its damage report
    // takes it out of the ELR too, so it cannot be elected from there.
    let follower = after
        .isr
        .iter()
        .copied()
        .find(|id| *id != new_leader)
        .unwrap();
    cluster.pass(SESSION, &[new_leader, leader]);
    let fenced = cluster.state(topic, 0);
    assert_eq!(fenced.elr, vec![follower], "{fenced:?}");
    cluster.start(follower, 70);
    let records = cluster
        .logic
        .replica_damaged(&cluster.image, &report(&cluster, follower))
        .unwrap();
    cluster.commit(&records);
    let out = cluster.state(topic, 0);
    assert!(out.elr.is_empty() && out.isr == vec![new_leader], "{out:?}");
    // The last ISR member's report is refused: the only copy stays where it is.
    assert!(matches!(
        cluster.logic.replica_damaged(&cluster.image, &report(&cluster, new_leader)),
        Err(ControllerError::IneligibleReplica { reason, .. }) if reason.contains("only in-sync")
    ));
    assert_eq!(cluster.state(topic, 0), out);
}

mod controlled_shutdown;
