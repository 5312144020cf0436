//! Reassignment, decommission and per-topic preferred election as pure decisions: every
//! transition of a move (start, copying, complete, cancel), each refusal leaving the image
//! as it was, and decommission's refusals.

use std::time::{Duration, Instant};

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::controller::decisions::{
    AlterPartitionRequest, CreateTopicRequest, DecisionConfig, RegisterRequest,
};
use crate::controller::records::{StorageId, TopicId};

const SESSION: Duration = Duration::from_millis(9_000);

struct Cluster {
    logic: ControllerLogic,
    image: MetadataImage,
    now: Instant,
}

impl Cluster {
    /// `nodes` registered and heartbeating.
    fn new(nodes: u32) -> Self {
        let mut cluster = Self {
            logic: ControllerLogic::new(DecisionConfig {
                node_session_timeout: SESSION,
                ..DecisionConfig::default()
            }),
            image: MetadataImage::default(),
            now: SystemClock.now(),
        };
        for node_id in 1..=nodes {
            let request = RegisterRequest {
                node_id,
                address: format!("127.0.0.1:{}", 9100 + node_id),
                incarnation_id: u64::from(node_id),
                storage_id: Some(StorageId([u8::try_from(node_id).unwrap(); 16])),
                kafka_listeners: None,
            };
            let (records, _) = cluster
                .logic
                .handle_register(&cluster.image, cluster.now, &request)
                .unwrap();
            cluster.commit(&records);
            cluster.heartbeat(node_id);
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

    fn heartbeat(&mut self, node_id: NodeId) {
        let epoch = self.image.nodes[&node_id].node_epoch;
        let records = self
            .logic
            .handle_heartbeat(&self.image, self.now, node_id, epoch)
            .unwrap();
        self.commit(&records);
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

    /// A topic of `partitions` partitions with replication factor `factor` (placed
    /// round-robin: the first topic's partition 0 on nodes 1..=factor).
    fn create(&mut self, name: &str, partitions: u32, factor: u16) -> TopicId {
        let topic_id = TopicId([u8::try_from(self.image.topics.len()).unwrap() + 1; 16]);
        let request = CreateTopicRequest {
            name: name.to_owned(),
            topic_id,
            partitions,
            replication_factor: Some(factor),
            configs: Default::default(),
        };
        let records = self.logic.create_topic(&self.image, &request).unwrap();
        self.commit(&records);
        topic_id
    }

    fn state(&self, topic_id: TopicId, partition: u32) -> PartitionState {
        self.image.partition(topic_id, partition).unwrap().clone()
    }

    fn reassign(
        &self,
        topic: &str,
        partition: u32,
        target: &[NodeId],
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        self.logic.reassign_partition(
            &self.image,
            &ReassignRequest {
                topic: topic.to_owned(),
                partition,
                target: target.to_vec(),
            },
        )
    }

    /// The leader of partition 0 reports `isr` (an ISR expansion once followers caught up).
    fn leader_reports_isr(&mut self, topic_id: TopicId, isr: &[NodeId]) {
        let state = self.state(topic_id, 0);
        let leader = state.leader.unwrap();
        let request = AlterPartitionRequest {
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
        };
        let records = self.logic.alter_partition(&self.image, &request).unwrap();
        self.commit(&records);
    }

    fn poll(&mut self) {
        let records = self.logic.poll_reassignments(&self.image).unwrap();
        self.commit(&records);
    }
}

// Goal: KIP-455's whole move. {1,2} -> {2,3}: while copying the replicas are the union (the
// new one materializes and fetches), leader and ISR unchanged; nothing completes before node
// 3 is in the ISR; then one entry drops node 1, elects from the target (the leader was node
// 1) with a new leader epoch, and ends the reassignment.
#[test]
fn a_move_serves_from_the_old_replicas_until_the_new_ones_are_in_sync_then_drops_the_removed() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 2);
    let before = cluster.state(topic, 0);
    assert_eq!(before.replicas, vec![1, 2]);
    assert_eq!(before.leader, Some(1));
    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    let copying = cluster.state(topic, 0);
    assert_eq!(
        copying.replicas,
        vec![2, 3, 1],
        "target first, then the removing"
    );
    assert_eq!(copying.isr, before.isr);
    assert_eq!(copying.leader, Some(1));
    assert_eq!(copying.leader_epoch, before.leader_epoch);
    assert_eq!(copying.partition_epoch, before.partition_epoch + 1);
    let running = cluster.image.reassignment(topic, 0).unwrap();
    assert_eq!(running.adding(), vec![3]);
    assert_eq!(running.removing(), vec![1]);

    // Node 3 still copying: nothing to complete.
    cluster.poll();
    assert_eq!(cluster.state(topic, 0), copying);
    assert!(cluster.image.reassignment(topic, 0).is_some());

    cluster.leader_reports_isr(topic, &[1, 2, 3]);
    cluster.poll();
    let after = cluster.state(topic, 0);
    assert_eq!(after.replicas, vec![2, 3]);
    assert_eq!(after.isr, vec![2, 3]);
    assert_eq!(after.leader, Some(2), "elected from the target set");
    assert_eq!(after.leader_epoch, copying.leader_epoch + 1);
    assert!(cluster.image.reassignment(topic, 0).is_none());
    assert!(cluster.image.reassignments.is_empty());
}

// Goal: a leader that stays in the target keeps leading at the same leader epoch (its
// clients see no election), and a move of the other replica only.
#[test]
fn a_leader_in_the_target_keeps_its_leader_epoch() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 2);
    let records = cluster.reassign("orders", 0, &[1, 3]).unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.state(topic, 0).replicas, vec![1, 3, 2]);
    cluster.leader_reports_isr(topic, &[1, 2, 3]);
    let before = cluster.state(topic, 0);
    cluster.poll();
    let after = cluster.state(topic, 0);
    assert_eq!(after.replicas, vec![1, 3]);
    assert_eq!(after.isr, vec![1, 3]);
    assert_eq!(after.leader, Some(1));
    assert_eq!(after.leader_epoch, before.leader_epoch);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
}

// Goal: moves with nothing to copy complete in the start entry: a reorder (the preferred
// leader changes; the preferred election then moves leadership), and a shrink of the
// replication factor.
#[test]
fn a_reorder_or_a_shrink_completes_at_once() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 3);
    let records = cluster.reassign("orders", 0, &[2, 1, 3]).unwrap();
    cluster.commit(&records);
    let reordered = cluster.state(topic, 0);
    assert_eq!(reordered.replicas, vec![2, 1, 3]);
    assert_eq!(reordered.leader, Some(1));
    assert!(cluster.image.reassignments.is_empty());
    let records = cluster
        .logic
        .elect_preferred_leaders_of(&cluster.image, Some("orders"))
        .unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.state(topic, 0).leader, Some(2));

    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    let shrunk = cluster.state(topic, 0);
    assert_eq!(shrunk.replicas, vec![2, 3]);
    assert_eq!(shrunk.isr, vec![2, 3]);
    assert_eq!(shrunk.leader, Some(2));
    assert!(cluster.image.reassignments.is_empty());
    // The same replicas again: nothing to do.
    assert!(cluster.reassign("orders", 0, &[2, 3]).unwrap().is_empty());
}

// Goal: bad input is refused in one line with nothing changed: unknown topic and partition,
// RF 0, a node twice, an unregistered node, a fenced node, a partition already moving.
#[test]
fn bad_reassignments_are_refused_and_change_nothing() {
    let mut cluster = Cluster::new(4);
    let topic = cluster.create("orders", 1, 2);
    cluster.pass(SESSION, &[1, 2, 3]);
    assert!(cluster.image.nodes[&4].fenced);
    let image = cluster.image.clone();
    let refused = |result: Result<Vec<MetadataRecord>, ControllerError>| {
        let error = result.unwrap_err();
        let text = error.to_string();
        assert!(!text.contains('\n'), "{text}");
        error
    };
    assert!(matches!(
        refused(cluster.reassign("missing", 0, &[2, 3])),
        ControllerError::UnknownTopicOrPartition(_)
    ));
    assert!(matches!(
        refused(cluster.reassign("orders", 7, &[2, 3])),
        ControllerError::UnknownTopicOrPartition(_)
    ));
    let error = refused(cluster.reassign("orders", 0, &[]));
    assert!(matches!(
        error,
        ControllerError::InvalidReplicationFactor(_)
    ));
    assert_eq!(
        error.to_string(),
        "orders/0: the target replica list is empty (a replication factor of 0)"
    );
    let error = refused(cluster.reassign("orders", 0, &[2, 3, 2]));
    assert_eq!(
        error.to_string(),
        "orders/0: node 2 is listed twice in the target [2, 3, 2]"
    );
    let error = refused(cluster.reassign("orders", 0, &[2, 9]));
    assert_eq!(
        error.to_string(),
        "orders/0: node 9 is not registered in the cluster"
    );
    let error = refused(cluster.reassign("orders", 0, &[2, 4]));
    assert!(matches!(
        error,
        ControllerError::InvalidReplicaAssignment(_)
    ));
    assert_eq!(
        error.to_string(),
        "orders/0: node 4 is not alive, so it could not copy the partition"
    );
    assert_eq!(cluster.image, image);

    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    let moving = cluster.image.clone();
    let error = refused(cluster.reassign("orders", 0, &[1, 3]));
    assert!(matches!(error, ControllerError::ReassignmentInProgress(_)));
    assert_eq!(
        error.to_string(),
        "orders/0 is already moving from [1, 2] to [2, 3]; wait for it or cancel it first"
    );
    assert_eq!(cluster.image, moving);
    assert_eq!(topic, cluster.image.reassignments[0].topic_id);
}

// Goal: a cancel returns to the original replicas (the adding one leaves, even after it
// joined the ISR), and a cancel with nothing running is refused.
#[test]
fn a_cancel_returns_to_the_original_replicas() {
    let mut cluster = Cluster::new(4);
    let topic = cluster.create("orders", 1, 2);
    let error = cluster
        .logic
        .cancel_reassignment(&cluster.image, "orders", 0)
        .unwrap_err();
    assert!(matches!(
        error,
        ControllerError::NoReassignmentInProgress(_)
    ));
    assert_eq!(error.to_string(), "orders/0 is not being reassigned");

    let records = cluster.reassign("orders", 0, &[3, 4]).unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.state(topic, 0).replicas, vec![3, 4, 1, 2]);
    // Node 3 caught up, node 4 not yet: the move cannot complete; cancel it.
    cluster.leader_reports_isr(topic, &[1, 2, 3]);
    cluster.poll();
    assert!(cluster.image.reassignment(topic, 0).is_some());
    let before = cluster.state(topic, 0);
    let records = cluster
        .logic
        .cancel_reassignment(&cluster.image, "orders", 0)
        .unwrap();
    cluster.commit(&records);
    let after = cluster.state(topic, 0);
    assert_eq!(after.replicas, vec![1, 2]);
    assert_eq!(after.isr, vec![1, 2]);
    assert_eq!(after.leader, Some(1));
    assert_eq!(after.leader_epoch, before.leader_epoch);
    assert!(cluster.image.reassignments.is_empty());
}

// Goal: a move whose leader dies while copying: the partition elects among the in-sync
// replicas as usual, and the move still completes once the target is in sync.
#[test]
fn a_move_survives_its_leader_being_fenced() {
    let mut cluster = Cluster::new(4);
    let topic = cluster.create("orders", 1, 3);
    assert_eq!(cluster.state(topic, 0).replicas, vec![1, 2, 3]);
    let records = cluster.reassign("orders", 0, &[2, 3, 4]).unwrap();
    cluster.commit(&records);
    cluster.pass(SESSION, &[2, 3, 4]);
    let fenced = cluster.state(topic, 0);
    assert_eq!(fenced.leader, Some(2));
    assert_eq!(fenced.isr, vec![2, 3]);
    cluster.leader_reports_isr(topic, &[2, 3, 4]);
    cluster.poll();
    let after = cluster.state(topic, 0);
    assert_eq!(after.replicas, vec![2, 3, 4]);
    assert_eq!(after.isr, vec![2, 3, 4]);
    assert_eq!(after.leader, Some(2));
    assert!(cluster.image.reassignments.is_empty());
}

// Goal: deleting a topic that is moving forgets the move.
#[test]
fn deleting_a_moving_topic_forgets_the_move() {
    let mut cluster = Cluster::new(3);
    cluster.create("orders", 1, 2);
    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    assert_eq!(cluster.image.reassignments.len(), 1);
    let records = cluster
        .logic
        .delete_topic(&cluster.image, "orders")
        .unwrap();
    cluster.commit(&records);
    assert!(cluster.image.reassignments.is_empty());
}

// Goal: the preferred election can be limited to one topic, and names an unknown one.
#[test]
fn preferred_election_of_one_topic_leaves_the_others() {
    let mut cluster = Cluster::new(3);
    let orders = cluster.create("orders", 1, 3);
    let audit = cluster.create("audit", 1, 3);
    let preferred_orders = cluster.state(orders, 0).replicas[0];
    let preferred_audit = cluster.state(audit, 0).replicas[0];
    for preferred in [preferred_orders, preferred_audit] {
        let alive: Vec<NodeId> = (1..=3).filter(|id| *id != preferred).collect();
        cluster.pass(SESSION, &alive);
        cluster.heartbeat(preferred);
    }
    for topic in [orders, audit] {
        let state = cluster.state(topic, 0);
        assert_ne!(state.leader, state.replicas.first().copied());
        cluster.leader_reports_isr(topic, &[1, 2, 3]);
    }
    let records = cluster
        .logic
        .elect_preferred_leaders_of(&cluster.image, Some("orders"))
        .unwrap();
    assert_eq!(records.len(), 1);
    cluster.commit(&records);
    assert_eq!(cluster.state(orders, 0).leader, Some(preferred_orders));
    assert_ne!(cluster.state(audit, 0).leader, Some(preferred_audit));
    let error = cluster
        .logic
        .elect_preferred_leaders_of(&cluster.image, Some("missing"))
        .unwrap_err();
    assert_eq!(error.to_string(), "unknown topic or partition \"missing\"");
}

// Goal: decommission refuses an alive node and a node still holding replicas (listing
// them, pointing at reassign); once its replicas moved away and it stopped, it leaves the
// image, and its epoch is never given again.
#[test]
fn decommission_needs_a_stopped_node_without_replicas() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 2, 2);
    assert_eq!(cluster.state(topic, 0).replicas, vec![1, 2]);
    assert_eq!(cluster.state(topic, 1).replicas, vec![2, 3]);
    let error = cluster
        .logic
        .decommission_node(&cluster.image, 9)
        .unwrap_err();
    assert_eq!(error.to_string(), "node 9 is not registered in the cluster");
    let error = cluster
        .logic
        .decommission_node(&cluster.image, 3)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "node 3 is alive; stop it first (a running node registers again)"
    );
    cluster.pass(SESSION, &[1, 2]);
    let error = cluster
        .logic
        .decommission_node(&cluster.image, 3)
        .unwrap_err();
    assert!(matches!(error, ControllerError::NodeInUse(_)));
    assert_eq!(
        error.to_string(),
        "node 3 still holds replicas of 1 partition(s): orders/1; move them with \
         `ledge topic reassign NAME --partition P --replicas ...` first"
    );
    let records = cluster
        .logic
        .reassign_partition(
            &cluster.image,
            &ReassignRequest {
                topic: "orders".to_owned(),
                partition: 1,
                target: vec![2, 1],
            },
        )
        .unwrap();
    cluster.commit(&records);
    // Node 1 copies partition 1 and joins its ISR.
    let state = cluster.state(topic, 1);
    let request = AlterPartitionRequest {
        node_id: 2,
        node_epoch: cluster.image.nodes[&2].node_epoch,
        topic_id: topic,
        partition: 1,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        new_isr: [2, 1]
            .iter()
            .map(|id| (*id, cluster.image.nodes[id].node_epoch))
            .collect(),
    };
    let records = cluster
        .logic
        .alter_partition(&cluster.image, &request)
        .unwrap();
    cluster.commit(&records);
    cluster.poll();
    assert_eq!(cluster.state(topic, 1).replicas, vec![2, 1]);
    let high = cluster.image.node_epoch_high;
    let records = cluster.logic.decommission_node(&cluster.image, 3).unwrap();
    cluster.commit(&records);
    assert!(!cluster.image.nodes.contains_key(&3));
    assert_eq!(cluster.image.node_epoch_high, high);
}

// Goal: the image refuses reassignment and unregister records that do not fit, whatever a
// decision sends (a second start, an end with none running, a target outside the replicas,
// unregistering an alive node or a replica).
#[test]
fn the_image_refuses_records_that_do_not_fit() {
    let mut cluster = Cluster::new(3);
    let topic = cluster.create("orders", 1, 2);
    let mut image = cluster.image.clone();
    let mut apply = |record: MetadataRecord| {
        let index = image.last_applied_index + 1;
        image.apply(index, &record)
    };
    assert!(
        apply(MetadataRecord::EndReassignment {
            topic_id: topic,
            partition: 0
        })
        .is_err()
    );
    assert!(
        apply(MetadataRecord::StartReassignment {
            topic_id: topic,
            partition: 0,
            target: vec![2, 3],
            original: vec![1, 2],
        })
        .is_err(),
        "node 3 is not a replica yet"
    );
    let epoch = cluster.image.nodes[&1].node_epoch;
    assert!(
        apply(MetadataRecord::UnregisterNode {
            node_id: 1,
            node_epoch: epoch
        })
        .is_err(),
        "alive"
    );
    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    assert!(
        cluster
            .image
            .clone()
            .apply(
                cluster.image.last_applied_index + 1,
                &MetadataRecord::StartReassignment {
                    topic_id: topic,
                    partition: 0,
                    target: vec![2, 3],
                    original: vec![1, 2],
                }
            )
            .is_err(),
        "already running"
    );
}

// Goal: a snapshot written before reassignments existed reads as none running, and one
// with a move in progress round-trips.
#[test]
fn snapshots_carry_reassignments_and_older_ones_read_as_none() {
    let mut cluster = Cluster::new(3);
    cluster.create("orders", 1, 2);
    let records = cluster.reassign("orders", 0, &[2, 3]).unwrap();
    cluster.commit(&records);
    let bytes = cluster.image.to_snapshot();
    assert_eq!(MetadataImage::from_snapshot(&bytes).unwrap(), cluster.image);
    let mut old: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    old["image"]
        .as_object_mut()
        .unwrap()
        .remove("reassignments");
    let old = MetadataImage::from_snapshot(&serde_json::to_vec(&old).unwrap()).unwrap();
    assert!(old.reassignments.is_empty());
}
