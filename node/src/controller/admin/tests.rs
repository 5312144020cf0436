//! Admin requests through a one-voter controller on `SimDisk`, paused time.

use std::path::Path;

use super::*;
use crate::clock::SimClock;
use crate::controller::ControllerConfig;
use crate::controller::decisions::RegisterRequest;
use crate::controller::quorum::{ControllerTransport, RaftMessage, RaftReply, TransportError};
use crate::sim::SimDisk;

/// The limits of the tests' controllers.
pub(crate) const LIMITS: AdminLimits = AdminLimits {
    topic_partitions_max: 1024,
};

/// A transport for a quorum of one: there is nobody to send to.
pub(crate) struct Alone;

impl ControllerTransport for Alone {
    async fn send(
        &self,
        target: NodeId,
        _message: RaftMessage,
    ) -> Result<RaftReply, TransportError> {
        Err(TransportError {
            target,
            reason: "no other controller".to_owned(),
        })
    }
}

/// A one-voter controller (node 1) that leads, with nodes `1..=nodes` registered and
/// unfenced.
pub(crate) async fn single_voter(disk: SimDisk, data_dir: &Path, nodes: u32) -> Arc<Controller> {
    let voters = BTreeMap::from([(1, "127.0.0.1:9101".to_owned())]);
    // As `cluster-init` does: the first start may initialize the quorum (a restart finds
    // the membership stored and the marker consumed).
    crate::controller::bootstrap::write_marker(&disk, data_dir, "test")
        .await
        .unwrap();
    let controller = Arc::new(
        Controller::start(
            ControllerConfig::new(1, voters),
            disk,
            data_dir,
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
    assert_eq!(controller.leader(), Some(1), "the single voter never led");
    for node_id in 1..=nodes {
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

fn client(controller: Arc<Controller>, voters: Vec<NodeId>) -> AdminClient {
    AdminClient::new(
        controller.node_id(),
        voters,
        controller,
        BTreeMap::new(),
        Arc::new(SimClock::new(0)),
        Duration::from_millis(2_000),
        LIMITS,
    )
}

fn create(name: &str, partitions: u32) -> AdminRequest {
    AdminRequest::CreateTopic {
        name: name.to_owned(),
        partitions,
        replication_factor: Some(1),
        configs: BTreeMap::new(),
    }
}

// Goal: each admin request becomes a controller record applied in the image before submit
// returns; refusals carry their Kafka error and change nothing. Method: one voter that is
// the active controller, asked through the same path a remote node's request takes.
#[tokio::test(start_paused = true)]
async fn admin_requests_are_decided_and_applied_before_the_answer() {
    let controller = single_voter(SimDisk::new(1), Path::new("/data"), 3).await;
    let admin = client(Arc::clone(&controller), vec![1]);
    admin.submit(create("orders", 6)).await.unwrap();
    let image = controller.image();
    let topic = &image.topics["orders"];
    assert_eq!(topic.partitions.len(), 6);
    let leaders: std::collections::BTreeSet<_> =
        topic.partitions.iter().map(|state| state.leader).collect();
    assert_eq!(
        leaders.len(),
        3,
        "placed round-robin over 3 nodes: {topic:?}"
    );

    let before = controller.image();
    let error = admin.submit(create("orders", 1)).await.unwrap_err();
    assert!(
        matches!(
            error,
            AdminError::Refused {
                refusal: AdminRefusal::TopicAlreadyExists,
                ..
            }
        ),
        "{error}"
    );
    let error = admin
        .submit(AdminRequest::CreateTopic {
            name: "wide".to_owned(),
            partitions: 1,
            replication_factor: Some(4),
            configs: BTreeMap::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            AdminError::Refused {
                refusal: AdminRefusal::InvalidReplicationFactor,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(controller.image().topics, before.topics);

    admin
        .submit(AdminRequest::CreatePartitions {
            name: "orders".to_owned(),
            partitions: 8,
            assignments: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(controller.image().topics["orders"].partitions.len(), 8);
    admin
        .submit(AdminRequest::AlterTopicConfig {
            name: "orders".to_owned(),
            set: BTreeMap::from([("retention.ms".to_owned(), "5000".to_owned())]),
            delete: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        controller.image().topics["orders"].configs["retention.ms"],
        "5000"
    );
    admin
        .submit(AdminRequest::DeleteTopic {
            name: "orders".to_owned(),
        })
        .await
        .unwrap();
    assert!(controller.image().topics.is_empty());
    let error = admin
        .submit(AdminRequest::DeleteTopic {
            name: "orders".to_owned(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            AdminError::Refused {
                refusal: AdminRefusal::UnknownTopicOrPartition,
                ..
            }
        ),
        "{error}"
    );
}

// Goal: with no controller reachable, a request ends with TimedOut at the configured
// bound (naming the key), not a hang. Method: a learner whose only voter never answers.
#[tokio::test(start_paused = true)]
async fn without_a_controller_a_request_times_out_with_the_reason() {
    let voters = BTreeMap::from([(2, "127.0.0.1:9102".to_owned())]);
    let learner = Arc::new(
        Controller::start(
            ControllerConfig::new(1, voters),
            SimDisk::new(3),
            Path::new("/data"),
            Arc::new(Alone),
        )
        .await
        .unwrap(),
    );
    let admin = client(learner, vec![2]);
    let error = admin.submit(create("orders", 1)).await.unwrap_err();
    assert!(matches!(error, AdminError::TimedOut { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("cluster.peer_request_timeout_ms"),
        "{message}"
    );
    assert!(message.contains("not a peer"), "{message}");
}

// Goal: a ControllerAdmin body that does not decode is refused with the reason, not a
// panic; a good one decodes. Method: the handler's decoder on garbage and on a real body.
#[test]
fn a_garbage_admin_body_is_refused_with_the_reason() {
    let request = |body: &[u8]| PeerRequest {
        from: 2,
        kind: PeerRequestKind::ControllerAdmin,
        request_id: 1,
        body: Bytes::copy_from_slice(body),
    };
    for body in [
        &b""[..],
        b"{",
        b"{\"DeleteTopic\":{}}",
        b"\xff\xfe",
        b"[1,2]",
    ] {
        let error = decode_admin(&request(body)).unwrap_err();
        assert!(
            error.0.contains("invalid ControllerAdmin body from node 2"),
            "{error:?}"
        );
    }
    let good = create("orders", 3);
    let body = serde_json::to_vec(&good).unwrap();
    assert_eq!(decode_admin(&request(&body)).unwrap(), good);
}

// Goal: the controller checks what a peer's body could smuggle past a forwarding node's
// checks: a name that is a path, a reserved name, a partition count above the limit, a
// config no node can parse; each refused with its Kafka error and nothing applied.
// Method: the answering side on a one-voter controller, as a peer request reaches it.
#[tokio::test(start_paused = true)]
async fn the_controller_checks_requests_itself() {
    let controller = single_voter(SimDisk::new(5), Path::new("/data"), 1).await;
    let cases = [
        (create("../escape", 1), AdminRefusal::InvalidTopic),
        // `__consumer_offsets` is created by nodes for the group coordinators; every other
        // internal name, and any change to it, is refused.
        (create("__internal", 1), AdminRefusal::InvalidTopic),
        (
            AdminRequest::DeleteTopic {
                name: "__consumer_offsets".to_owned(),
            },
            AdminRefusal::InvalidTopic,
        ),
        (create("huge", 1_025), AdminRefusal::InvalidPartitions),
        (
            AdminRequest::CreatePartitions {
                name: "huge".to_owned(),
                partitions: u32::MAX,
                assignments: Vec::new(),
            },
            AdminRefusal::InvalidPartitions,
        ),
        (
            AdminRequest::CreateTopic {
                name: "configs".to_owned(),
                partitions: 1,
                replication_factor: Some(1),
                configs: BTreeMap::from([("retention.ms".to_owned(), "soon".to_owned())]),
            },
            AdminRefusal::InvalidConfig,
        ),
        (
            AdminRequest::AlterTopicConfig {
                name: "configs".to_owned(),
                set: BTreeMap::from([("no.such.key".to_owned(), "1".to_owned())]),
                delete: Vec::new(),
            },
            AdminRefusal::InvalidConfig,
        ),
    ];
    let before = controller.image();
    for (request, expected) in cases {
        match answer_admin(&controller, 2, &request, LIMITS).await {
            AdminReply::Refused { refusal, .. } => assert_eq!(refusal, expected, "{request:?}"),
            other => panic!("{request:?} answered {other:?}"),
        }
    }
    assert_eq!(controller.image().topics, before.topics);
}

// Goal (KIP-730): producer id blocks come from the metadata log, one after the other, for
// the node that asks (the certificate's id, never a body's), recorded before the answer;
// an unregistered node, an empty block and an oversized one are refused with nothing
// recorded. Method: one voter; asked locally (node 1) and as a peer would be (node 2, 99).
#[tokio::test(start_paused = true)]
async fn producer_id_blocks_are_recorded_for_the_asking_node_and_never_overlap() {
    let controller = single_voter(SimDisk::new(1), Path::new("/data"), 3).await;
    let admin = client(Arc::clone(&controller), vec![1]);
    let first = admin.allocate_producer_ids(1_000).await.unwrap();
    assert_eq!(first, crate::controller::image::PRODUCER_ID_FIRST);
    assert_eq!(controller.image().producer_id_next, first + 1_000);
    let from_peer = answer_admin(
        &controller,
        2,
        &AdminRequest::AllocateProducerIds { count: 500 },
        LIMITS,
    )
    .await;
    assert_eq!(
        from_peer,
        AdminReply::ProducerIds {
            first_producer_id: first + 1_000
        }
    );
    let next = admin.allocate_producer_ids(10).await.unwrap();
    assert_eq!(next, first + 1_500);
    let before = controller.image().producer_id_next;
    assert_eq!(before, first + 1_510);
    for (from, count, expected) in [
        (99, 10, AdminRefusal::Internal),
        (2, 0, AdminRefusal::InvalidRequest),
        (
            2,
            PRODUCER_ID_BLOCK_COUNT_MAX + 1,
            AdminRefusal::InvalidRequest,
        ),
    ] {
        let request = AdminRequest::AllocateProducerIds { count };
        match answer_admin(&controller, from, &request, LIMITS).await {
            AdminReply::Refused { refusal, message } => {
                assert_eq!(refusal, expected, "{message}");
            }
            other => panic!("node {from}, {count} ids: answered {other:?}"),
        }
    }
    assert_eq!(controller.image().producer_id_next, before);
}
