//! The rebalance and reassignment drivers and decommission on a running one-voter controller,
//! in paused tokio time on a `SimDisk` (nodes 2 and 3 are registered in the metadata only:
//! the drivers act on the image, not on the nodes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SimClock, sleep};
use crate::controller::decisions::{AlterPartitionRequest, CreateTopicRequest, RegisterRequest};
use crate::controller::quorum::{
    Controller, ControllerConfig, ControllerRequestError, ControllerTransport, RaftMessage,
    RaftReply, TransportError,
};
use crate::controller::reassign::ReassignRequest;
use crate::controller::records::{NodeId, TopicId};
use crate::sim::SimDisk;

const INTERVAL: Duration = Duration::from_secs(30);

/// A voter alone: never asked to send anything.
struct Alone;

impl ControllerTransport for Alone {
    async fn send(
        &self,
        target: NodeId,
        _message: RaftMessage,
    ) -> Result<RaftReply, TransportError> {
        Err(TransportError {
            target,
            reason: "no peers in this test".to_owned(),
        })
    }
}

/// A one-voter controller (node 1) that has registered nodes 1..=3, all heartbeating.
async fn controller() -> Arc<Controller> {
    let disk = SimDisk::new(7);
    let dir = PathBuf::from("/data/node-1");
    crate::controller::bootstrap::write_marker(&disk, &dir, "test")
        .await
        .unwrap();
    let voters = BTreeMap::from([(1, "127.0.0.1:9101".to_owned())]);
    let controller = Arc::new(
        Controller::start(
            ControllerConfig::new(1, voters),
            disk,
            &dir,
            Arc::new(Alone),
        )
        .await
        .unwrap(),
    );
    let clock = SimClock::new(0);
    for _ in 0..1_000 {
        if controller.leader() == Some(1) {
            break;
        }
        sleep(&clock, Duration::from_millis(10)).await;
    }
    for node_id in 1..=3 {
        let request = RegisterRequest {
            node_id,
            address: format!("127.0.0.1:{}", 9100 + node_id),
            incarnation_id: u64::from(node_id),
            storage_id: None,
            kafka_listeners: None,
        };
        let epoch = controller.register(clock.now(), request).await.unwrap();
        controller
            .heartbeat(clock.now(), node_id, epoch)
            .await
            .unwrap();
    }
    controller
}

async fn create(controller: &Controller, name: &str, replication_factor: u16) -> TopicId {
    let topic_id = TopicId([9; 16]);
    controller
        .create_topic(CreateTopicRequest {
            name: name.to_owned(),
            topic_id,
            partitions: 1,
            replication_factor: Some(replication_factor),
            configs: BTreeMap::new(),
        })
        .await
        .unwrap();
    topic_id
}

/// The partition's leader reports `isr`.
async fn leader_reports_isr(controller: &Controller, topic_id: TopicId, isr: &[NodeId]) {
    let image = controller.image();
    let state = image.partition(topic_id, 0).unwrap();
    let leader = state.leader.unwrap();
    controller
        .alter_partition(AlterPartitionRequest {
            node_id: leader,
            node_epoch: image.nodes[&leader].node_epoch,
            topic_id,
            partition: 0,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr: isr
                .iter()
                .map(|id| (*id, image.nodes[id].node_epoch))
                .collect(),
        })
        .await
        .unwrap();
}

/// Waits (bounded, in paused time) until `condition` holds on the controller's image.
async fn until(controller: &Controller, what: &str, condition: impl Fn(&Controller) -> bool) {
    let clock = SimClock::new(0);
    for _ in 0..2_000 {
        if condition(controller) {
            return;
        }
        sleep(&clock, Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

// Goal: after the preferred leader (node 1) was fenced and came back into the ISR, the
// rebalance timer moves leadership back to it within one check interval, with a new leader
// epoch; nothing moves before it is in the ISR.
#[tokio::test(start_paused = true)]
async fn the_rebalance_timer_moves_leadership_back_to_the_preferred_replica() {
    let controller = controller().await;
    let clock = SimClock::new(0);
    let topic = create(&controller, "orders", 3).await;
    assert_eq!(
        controller.image().partition(topic, 0).unwrap().leader,
        Some(1)
    );
    // Node 1's session lapses (2 and 3 keep heartbeating): it is fenced, node 2 leads.
    let later = clock.now() + Duration::from_secs(60);
    for node_id in [2, 3] {
        let epoch = controller.image().nodes[&node_id].node_epoch;
        controller.heartbeat(later, node_id, epoch).await.unwrap();
    }
    controller.poll_fencing(later).await.unwrap();
    let moved = controller.image().partition(topic, 0).unwrap().clone();
    assert_eq!(moved.leader, Some(2));
    assert_eq!(moved.isr, vec![2, 3]);

    let timer = {
        let controller = Arc::clone(&controller);
        tokio::spawn(async move {
            controller
                .run_leader_rebalance(&SimClock::new(0), INTERVAL)
                .await;
        })
    };
    // Back and heartbeating, but not in the ISR: a full interval changes nothing.
    let epoch = controller.image().nodes[&1].node_epoch;
    controller.heartbeat(later, 1, epoch).await.unwrap();
    sleep(&clock, INTERVAL + Duration::from_secs(1)).await;
    assert_eq!(controller.image().partition(topic, 0).unwrap(), &moved);

    leader_reports_isr(&controller, topic, &[2, 3, 1]).await;
    until(&controller, "node 1 leads again", |controller| {
        controller.image().partition(topic, 0).unwrap().leader == Some(1)
    })
    .await;
    let state = controller.image().partition(topic, 0).unwrap().clone();
    assert_eq!(state.leader_epoch, moved.leader_epoch + 1);
    timer.abort();
}

// Goal: the reassignment driver completes a move as soon as the leader reports the new
// replica in sync: replicas become the target, the removed leader is replaced.
#[tokio::test(start_paused = true)]
async fn the_reassignment_driver_completes_a_move_once_the_target_is_in_sync() {
    let controller = controller().await;
    let topic = create(&controller, "orders", 2).await;
    assert_eq!(
        controller.image().partition(topic, 0).unwrap().replicas,
        vec![1, 2]
    );
    let driver = {
        let controller = Arc::clone(&controller);
        tokio::spawn(async move {
            controller
                .run_reassignments(&SimClock::new(0), Duration::from_secs(2))
                .await;
        })
    };
    controller
        .decide(|logic, image| {
            logic
                .reassign_partition(
                    image,
                    &ReassignRequest {
                        topic: "orders".to_owned(),
                        partition: 0,
                        target: vec![2, 3],
                    },
                )
                .map(|records| (records, ()))
        })
        .await
        .unwrap();
    sleep(&SimClock::new(0), Duration::from_secs(10)).await;
    let copying = controller.image().partition(topic, 0).unwrap().clone();
    assert_eq!(copying.replicas, vec![2, 3, 1]);
    assert_eq!(controller.image().reassignments.len(), 1);

    leader_reports_isr(&controller, topic, &[1, 2, 3]).await;
    until(&controller, "the move completed", |controller| {
        controller.image().reassignments.is_empty()
    })
    .await;
    let state = controller.image().partition(topic, 0).unwrap().clone();
    assert_eq!(state.replicas, vec![2, 3]);
    assert_eq!(state.leader, Some(2));
    assert_eq!(state.leader_epoch, copying.leader_epoch + 1);
    driver.abort();
}

// Goal: decommission through the controller: a voter is refused in one line, an alive node
// too; a stopped node with no replica leaves the image.
#[tokio::test(start_paused = true)]
async fn decommission_refuses_a_voter_and_removes_a_stopped_empty_node() {
    let controller = controller().await;
    let clock = SimClock::new(0);
    let error = controller.decommission_node(1).await.unwrap_err();
    assert!(matches!(error, ControllerRequestError::Refused(_)));
    assert_eq!(
        error.to_string(),
        "node 1 is a voter of the controller quorum (controller_voters); changing the voters \
         is not supported, so it cannot be decommissioned"
    );
    let error = controller.decommission_node(3).await.unwrap_err();
    assert!(error.to_string().contains("alive"), "{error}");
    let later = clock.now() + Duration::from_secs(60);
    for node_id in [1, 2] {
        let epoch = controller.image().nodes[&node_id].node_epoch;
        controller.heartbeat(later, node_id, epoch).await.unwrap();
    }
    controller.poll_fencing(later).await.unwrap();
    assert!(controller.image().nodes[&3].fenced);
    controller.decommission_node(3).await.unwrap();
    assert!(!controller.image().nodes.contains_key(&3));
    assert_eq!(controller.image().nodes.len(), 2);
}
