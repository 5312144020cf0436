//! Controlled shutdown (`ControllerLogic::handle_controlled_shutdown`): leaderships move,
//! the ISR and ELR change as fencing changes them, the last ISR member keeps no leadership,
//! and a node in controlled shutdown is elected nowhere and added to no ISR until a new
//! incarnation registers.

use super::*;

impl Cluster {
    /// Node `node_id` asks for a controlled shutdown at its current epoch; the records are
    /// committed and `leaderships_left` returned.
    fn shut_down(&mut self, node_id: NodeId) -> u32 {
        let epoch = self.image.nodes[&node_id].node_epoch;
        let (records, left) = self
            .logic
            .handle_controlled_shutdown(&self.image, self.now, node_id, epoch)
            .unwrap();
        self.commit(&records);
        left
    }

    fn led_by(&self, node_id: NodeId) -> u32 {
        leaderships(&self.image, node_id)
    }
}

// Goal: a controlled shutdown moves every leadership of the node to another ISR member in
// one decision (each with a new leader epoch), takes it out of every ISR where others
// remain (no ELR while the ISR stays at min.insync), and a repeat changes nothing.
#[test]
fn a_controlled_shutdown_moves_every_leadership_and_leaves_every_isr() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 6, 3);
    let before: Vec<PartitionState> = (0..6).map(|p| cluster.state(topic, p)).collect();
    let led = cluster.led_by(1);
    assert_eq!(led, 2, "placement gives node 1 two of six leaderships");
    assert_eq!(cluster.shut_down(1), 0);
    assert_eq!(cluster.led_by(1), 0);
    for (partition, old) in (0..6).zip(&before) {
        let state = cluster.state(topic, partition);
        assert!(!state.isr.contains(&1), "partition {partition}: {state:?}");
        assert!(
            state.elr.is_empty(),
            "ISR of 2 meets min.insync 2: {state:?}"
        );
        let leader = state.leader.expect("a leader");
        assert!(state.isr.contains(&leader));
        if old.leader == Some(1) {
            assert_eq!(state.leader_epoch, old.leader_epoch + 1);
        } else {
            assert_eq!(state.leader, old.leader, "only node 1's leaderships move");
            assert_eq!(state.leader_epoch, old.leader_epoch);
        }
    }
    let epoch = cluster.image.nodes[&1].node_epoch;
    let (records, left) = cluster
        .logic
        .handle_controlled_shutdown(&cluster.image, cluster.now, 1, epoch)
        .unwrap();
    assert_eq!((records, left), (Vec::new(), 0), "a repeat changes nothing");
    assert!(
        !cluster.image.nodes[&1].fenced,
        "a shutting-down node is not fenced"
    );
}

// Goal: the request is a heartbeat (the node is not fenced while it repeats it), and a
// request from an old incarnation or an unknown node is refused as a heartbeat would be.
#[test]
fn a_controlled_shutdown_request_keeps_the_session_and_checks_the_epoch() {
    let mut cluster = Cluster::new(3);
    cluster.create("orders", 3, 3);
    for _ in 0..3 {
        cluster.pass(SESSION / 2, &[2, 3]);
        cluster.shut_down(1);
    }
    cluster.pass(SESSION / 2, &[2, 3]);
    assert!(!cluster.image.nodes[&1].fenced);
    let epoch = cluster.image.nodes[&1].node_epoch;
    assert!(matches!(
        cluster
            .logic
            .handle_controlled_shutdown(&cluster.image, cluster.now, 1, epoch - 1),
        Err(ControllerError::StaleNodeEpoch { .. })
    ));
    assert!(matches!(
        cluster
            .logic
            .handle_controlled_shutdown(&cluster.image, cluster.now, 9, 1),
        Err(ControllerError::UnknownNode { node_id: 9 })
    ));
}

// Goal: where the ISR drops below min.insync.replicas the node keeps an ELR place (it holds
// every committed record, as with fencing), yet it is not elected from there while it shuts
// down: the partition goes offline rather than back to the stopping node.
#[test]
fn an_isr_below_min_insync_keeps_the_node_in_the_elr_but_never_elects_it() {
    let mut cluster = Cluster::new(3);
    // RF=2, min.insync 2: partition 0 on [1, 2], led by 1.
    let topic = cluster.create("orders", 1, 2);
    assert_eq!(cluster.state(topic, 0).replicas, vec![1, 2]);
    assert_eq!(cluster.shut_down(1), 0);
    let state = cluster.state(topic, 0);
    assert_eq!(state.isr, vec![2]);
    assert_eq!(state.elr, vec![1]);
    assert_eq!(state.leader, Some(2));
    // Node 2 dies: without the shutdown mark node 1 would be elected from the ELR.
    cluster.pass(SESSION, &[1, 3]);
    assert!(cluster.image.nodes[&2].fenced);
    let state = cluster.state(topic, 0);
    assert_eq!(
        state.leader, None,
        "not elected while shutting down: {state:?}"
    );
    // The same with node 1 fenced and back instead of shutting down: the ELR member leads.
    let mut control = Cluster::new(3);
    let topic = control.create("orders", 1, 2);
    control.pass(SESSION, &[2, 3]);
    assert_eq!(control.state(topic, 0).elr, vec![1]);
    control.heartbeat(1);
    control.pass(SESSION, &[1, 3]);
    assert!(control.image.nodes[&2].fenced);
    assert_eq!(control.state(topic, 0).leader, Some(1));
}

// Goal: the last ISR member keeps its ISR place but no leadership (the partition goes
// leaderless, as in Kafka), so leaderships_left reaches 0; neither the preferred-leader
// election nor another node's unfencing hands the leadership back.
#[test]
fn the_last_isr_member_gives_up_its_leadership_and_is_not_elected_again() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("solo", 1, 1);
    assert_eq!(cluster.state(topic, 0).replicas, vec![1]);
    assert_eq!(cluster.shut_down(1), 0);
    let state = cluster.state(topic, 0);
    assert_eq!(state.isr, vec![1]);
    assert_eq!(state.leader, None);
    assert_eq!(state.leader_epoch, 1);
    assert_eq!(
        cluster
            .logic
            .elect_preferred_leaders(&cluster.image)
            .unwrap(),
        Vec::new()
    );
    // Node 3 is fenced and comes back: its unfencing elects offline leaders, not node 1.
    cluster.pass(SESSION, &[1, 2]);
    cluster.shut_down(1);
    assert!(cluster.image.nodes[&3].fenced);
    cluster.heartbeat(3);
    assert!(!cluster.image.nodes[&3].fenced);
    assert_eq!(cluster.state(topic, 0).leader, None);
}

// Goal (KIP-841): while it shuts down the node's leaders cannot add it back to their ISRs
// (its catch-up as a follower would otherwise pull it back), and the preferred-leader
// election skips it; a registration of its next incarnation clears the mark, after which
// it rejoins with its new epoch and becomes the preferred leader again.
#[test]
fn alter_partition_refuses_a_node_in_shutdown_until_its_next_incarnation_registers() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    assert_eq!(cluster.state(topic, 0).leader, Some(1));
    cluster.shut_down(1);
    let state = cluster.state(topic, 0);
    assert_eq!(state.isr, vec![2, 3]);
    let expand = cluster.alter(&state, topic, &[2, 3, 1]);
    assert!(matches!(
        cluster.logic.alter_partition(&cluster.image, &expand),
        Err(ControllerError::IneligibleReplica { node_id: 1, reason }) if reason == "in controlled shutdown"
    ));
    // The node restarts: a new incarnation, no longer in controlled shutdown.
    cluster.start(1, 1001);
    assert!(
        cluster
            .logic
            .nodes_in_controlled_shutdown(&cluster.image)
            .is_empty()
    );
    let state = cluster.state(topic, 0);
    let expand = cluster.alter(&state, topic, &[2, 3, 1]);
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &expand)
        .unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.state(topic, 0).isr, vec![2, 3, 1]);
    let records = cluster
        .logic
        .elect_preferred_leaders(&cluster.image)
        .unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.state(topic, 0).leader, Some(1));
}

// Goal: a reassignment that removes the leader does not elect a replica in controlled
// shutdown either.
#[test]
fn a_reassignment_completing_does_not_elect_a_node_in_shutdown() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    // Node 2 shuts down first (out of the ISR: [1, 3]), then node 1's partition moves to
    // [2, 3]: node 3 must lead, not node 2.
    cluster.shut_down(2);
    let request = super::super::super::reassign::ReassignRequest {
        topic: "orders".to_owned(),
        partition: 0,
        target: vec![2, 3],
    };
    let records = cluster
        .logic
        .reassign_partition(&cluster.image, &request)
        .unwrap();
    cluster.commit(&records);
    let records = cluster.logic.poll_reassignments(&cluster.image).unwrap();
    cluster.commit(&records);
    let state = cluster.state(topic, 0);
    assert_ne!(state.leader, Some(2), "{state:?}");
}

// Goal: a partition created while its first replica shuts down is led by another replica
// from the start (the stopping node would only have to give it up), and leaderships_left
// stays 0.
#[test]
fn a_topic_created_during_a_controlled_shutdown_is_not_led_by_the_stopping_node() {
    let mut cluster = Cluster::new(3);
    cluster.shut_down(1);
    let topic = cluster.create("late", 3, 3);
    for partition in 0..3 {
        let state = cluster.state(topic, partition);
        assert_ne!(state.leader, Some(1), "partition {partition}: {state:?}");
        assert!(state.leader.is_some());
    }
    assert_eq!(cluster.shut_down(1), 0);
    let single = cluster.create("single", 3, 1);
    // RF=1 on node 1 alone: no other replica can lead, so node 1 is placed as leader and the
    // next request gives it up (leaderless, as the last ISR member).
    let on_node_1 = (0..3)
        .find(|p| cluster.state(single, *p).replicas == vec![1])
        .expect("one partition on node 1");
    assert_eq!(cluster.state(single, on_node_1).leader, Some(1));
    assert_eq!(cluster.shut_down(1), 0);
    assert_eq!(cluster.state(single, on_node_1).leader, None);
}
