//! The controller on real QUIC: three voters and a fourth node on loopback endpoints, with
//! certificates `cluster-init` wrote, each voter's store on a `SimDisk`. Real time (quinn's
//! handshake and loss timers run on real sockets); every wait polls a condition under a
//! generous deadline, and no assertion depends on how long anything takes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::sleep;

use super::*;
use crate::broker::{Broker, BrokerConfig};
use crate::clock::{Clock, SystemClock};
use crate::cluster::config::ClusterConfig;
use crate::cluster::identity::ClusterTls;
use crate::cluster::init::{InitOptions, init};
use crate::cluster::peer::{PeerClientTls, PeerLimits, PeerRequestError, PeerService, PeerStatus};
use crate::config::NodeConfig;
use crate::sim::SimDisk;
use crate::transport::quic::{QuicServer, TransportLimits, bind_socket, cluster_server_config};
use crate::transport::tls::ServerTls;

/// How long any wait for the cluster to converge may take before the test fails.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A node's serving endpoint (a broker on a `SimDisk` behind the client ALPN).
struct Endpoint {
    endpoint: quinn::Endpoint,
    handlers: Arc<PeerHandlers>,
    stop: watch::Sender<bool>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.endpoint.close(0u32.into(), b"test over");
    }
}

/// `nodes` nodes from `cluster-init`, the first `voters` of them voters, with short session
/// timings and each listening on a loopback port the kernel chose.
async fn cluster(
    dir: &Path,
    nodes: u32,
    voters: u32,
) -> Vec<(ClusterConfig, ClusterTls, std::net::UdpSocket)> {
    let report = init(&InitOptions {
        nodes,
        dir: dir.join("cluster"),
        base_port: 9100,
        force: false,
    })
    .unwrap();
    let transport = TransportLimits::default();
    let sockets: Vec<std::net::UdpSocket> = (0..nodes)
        .map(|_| bind_socket("127.0.0.1:0".parse().unwrap(), &transport).unwrap())
        .collect();
    let addresses: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    report
        .nodes
        .iter()
        .zip(sockets)
        .map(|(node, socket)| {
            let mut cluster = NodeConfig::from_file(&node.config_file)
                .unwrap()
                .cluster
                .unwrap();
            for peer in &mut cluster.peers {
                peer.address = addresses[peer.id as usize - 1];
            }
            cluster.controller_voters = (1..=voters).collect();
            cluster.node_heartbeat_interval = Duration::from_millis(200);
            cluster.node_session_timeout = Duration::from_millis(1_500);
            cluster.peer_request_timeout = Duration::from_secs(2);
            let tls = cluster.load_tls(SystemClock.wall_time_ms()).unwrap();
            (cluster, tls, socket)
        })
        .collect()
}

async fn serve(config: &ClusterConfig, tls: &ClusterTls, socket: std::net::UdpSocket) -> Endpoint {
    let handlers = Arc::new(PeerHandlers::default());
    let service = Arc::new(PeerService::new(
        config.node_id,
        config.peers.iter().map(|peer| peer.id).collect(),
        tls.verifier().unwrap(),
        Arc::clone(&handlers),
        PeerLimits::from_config(config),
        clock(),
    ));
    let transport = TransportLimits::default();
    let server_config = cluster_server_config(
        ServerTls {
            chain: tls.chain.clone(),
            key: tls.key.clone_key(),
            dev_ca: None,
        },
        service.roots(),
        &transport,
    )
    .unwrap();
    let server = QuicServer::new(socket, server_config, transport, [7; 32]).unwrap();
    let endpoint = server.endpoint();
    let server = server.with_peers(service);
    let broker = Broker::open(
        SimDisk::new(u64::from(config.node_id)),
        Path::new("/data"),
        BrokerConfig::default(),
        clock(),
    )
    .await
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server.serve(Arc::new(broker), stopped));
    Endpoint {
        endpoint,
        handlers,
        stop,
    }
}

async fn start(
    config: &ClusterConfig,
    tls: &ClusterTls,
    endpoint: &Endpoint,
    disk: SimDisk,
    incarnation_id: u64,
) -> NodeCluster {
    // As `cluster-init` does: each voter's first start may initialize the quorum.
    crate::controller::bootstrap::write_marker(&disk, Path::new("/controller-data"), "test")
        .await
        .unwrap();
    start_node_cluster(NodeClusterParts {
        cluster: config,
        tls,
        endpoint: &endpoint.endpoint,
        handlers: &endpoint.handlers,
        disk,
        data_dir: Path::new("/controller-data"),
        clock: clock(),
        incarnation_id,
        admin_limits: crate::controller::admin::AdminLimits {
            topic_partitions_max: 1024,
        },
    })
    .await
    .unwrap()
}

/// Polls `condition` until it holds; fails the test after [`CONVERGE_DEADLINE`].
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = SystemClock.now() + CONVERGE_DEADLINE;
    while !condition() {
        assert!(SystemClock.now() < deadline, "timed out waiting for {what}");
        sleep(&SystemClock, Duration::from_millis(50)).await;
    }
}

/// The running voters (nodes 1-3).
fn voters(running: &[Option<NodeCluster>]) -> Vec<&NodeCluster> {
    running[..3].iter().flatten().collect()
}

/// The leader every running voter agrees on, once they do.
fn agreed_leader(nodes: &[&NodeCluster]) -> Option<NodeId> {
    let leaders: Vec<Option<NodeId>> = nodes
        .iter()
        .map(|node| node.controller.as_ref().and_then(|c| c.leader()))
        .collect();
    let first = leaders.first().copied().flatten()?;
    leaders
        .iter()
        .all(|leader| *leader == Some(first))
        .then_some(first)
}

// Goal: voters on separate QUIC endpoints form a quorum through the peer RPC; every node
// (a non-voter too) registers with a node epoch and heartbeats; bad bodies from a peer are
// answered with an error and change nothing; when the active controller stops, the others
// elect a new one and fence it after the session timeout. Method: 3 voters and node 4, a
// non-voter whose endpoint also sends hand-made requests; the leader is stopped by dropping
// its endpoint and controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_form_a_quorum_over_quic_and_fence_a_lost_controller() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), 4, 3).await;
    let mut endpoints = Vec::new();
    let mut running = Vec::new();
    for (index, (config, tls, socket)) in nodes.drain(..).enumerate() {
        let endpoint = serve(&config, &tls, socket).await;
        let node = start(
            &config,
            &tls,
            &endpoint,
            SimDisk::new(index as u64),
            100 + index as u64,
        )
        .await;
        endpoints.push((config, tls, endpoint));
        running.push(Some(node));
    }
    let learner = running[3].as_ref().unwrap().controller.clone().unwrap();
    assert!(learner.is_learner(), "node 4 is no voter");
    until("a leader", || agreed_leader(&voters(&running)).is_some()).await;
    until("every node registered and unfenced", || {
        voters(&running).iter().all(|node| {
            let image = node.controller.as_ref().unwrap().image();
            image.nodes.len() == 4 && image.nodes.values().all(|n| !n.fenced)
        })
    })
    .await;
    let leader = agreed_leader(&voters(&running)).unwrap();
    // The non-voter is added as a learner and follows the log: its image shows every
    // registered node, and it knows the active controller, as a voter does.
    until("the learner holds the image", || {
        learner.image().nodes.len() == 4 && learner.leader() == Some(leader)
    })
    .await;
    let voters_of = |metrics: &openraft::RaftMetrics<u64, openraft::BasicNode>| {
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .collect::<Vec<_>>()
    };
    assert_eq!(voters_of(&learner.metrics().borrow()), vec![1, 2, 3]);
    let image = running[0]
        .as_ref()
        .unwrap()
        .controller
        .as_ref()
        .unwrap()
        .image();
    let mut epochs: Vec<NodeEpoch> = image.nodes.values().map(|n| n.node_epoch).collect();
    epochs.sort_unstable();
    epochs.dedup();
    assert_eq!(
        epochs.len(),
        4,
        "each registration has its own epoch: {image:?}"
    );
    for (config, _, _) in &endpoints {
        let registered = &image.nodes[&config.node_id];
        assert_eq!(registered.address, config.own_address().to_string());
        let published = *running[config.node_id as usize - 1]
            .as_ref()
            .unwrap()
            .node_epoch
            .borrow();
        assert_eq!(published, Some(registered.node_epoch));
    }
    // Each node drew its data directory's storage id and registered with it.
    let mut storage_ids: Vec<_> = image.nodes.values().map(|n| n.storage_id).collect();
    storage_ids.sort_unstable();
    storage_ids.dedup();
    assert!(
        storage_ids.len() == 4 && storage_ids.iter().all(Option::is_some),
        "{storage_ids:?}"
    );

    // Bad bodies, sent as node 4 to the leader: each refused with a reason, none answered.
    let (config_4, tls_4, endpoint_4) = &endpoints[3];
    let limits = PeerLimits::from_config(config_4);
    let raw = PeerClient::new(
        endpoint_4.endpoint.clone(),
        &PeerClientTls::new(tls_4, &limits).unwrap(),
        leader,
        config_4.peers[leader as usize - 1].address,
        limits,
        clock(),
    );
    let vote = serde_json::to_vec(&RaftMessage::Vote(openraft::raft::VoteRequest::new(
        openraft::Vote::new(1, 4),
        None,
    )))
    .unwrap();
    // Raft messages whose claimed sender is not the certificate's node, or not a voter.
    let vote_as = |candidate: u64| {
        serde_json::to_vec(&RaftMessage::Vote(openraft::raft::VoteRequest::new(
            openraft::Vote::new(1_000, candidate),
            None,
        )))
        .unwrap()
    };
    let append_as_leader_1 = serde_json::to_vec(&RaftMessage::AppendEntries(
        openraft::raft::AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1_000, 1),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        },
    ))
    .unwrap();
    for (kind, body, expected) in [
        (
            PeerRequestKind::RaftVote,
            vote_as(2),
            "a RaftVote from node 4 names candidate Some(2), not the sender",
        ),
        (
            PeerRequestKind::RaftVote,
            vote_as(4),
            "a RaftVote from node 4, which is not one of controller_voters {1, 2, 3}",
        ),
        (
            PeerRequestKind::RaftAppendEntries,
            append_as_leader_1,
            "a RaftAppendEntries from node 4 names leader Some(1), not the sender",
        ),
        (
            // A vote survey (a rejoining voter's) from a node that is not a voter.
            PeerRequestKind::RaftVote,
            serde_json::to_vec(&RaftMessage::ReadVote).unwrap(),
            "a RaftVote from node 4, which is not one of controller_voters {1, 2, 3}",
        ),
        (
            PeerRequestKind::RaftVote,
            b"not json".to_vec(),
            "invalid RaftVote body from node 4",
        ),
        (
            PeerRequestKind::RaftAppendEntries,
            vote.clone(),
            "carried a RaftVote message",
        ),
        (
            PeerRequestKind::RaftInstallSnapshot,
            Vec::new(),
            "invalid RaftInstallSnapshot body",
        ),
        (
            PeerRequestKind::NodeHeartbeat,
            b"{\"Heartbeat\":{}}".to_vec(),
            "invalid NodeHeartbeat body",
        ),
        (
            PeerRequestKind::NodeHeartbeat,
            serde_json::to_vec(&SessionRequest::Register {
                incarnation_id: 1,
                storage_id: None,
                kafka_listeners: None,
            })
            .unwrap(),
            "carried a NodeRegistration body",
        ),
        (
            PeerRequestKind::NodeRegistration,
            serde_json::to_vec(&SessionRequest::ControlledShutdown { node_epoch: 1 }).unwrap(),
            "carried a NodeHeartbeat body",
        ),
    ] {
        let error = raw.request(kind, &body).await.unwrap_err();
        assert!(
            matches!(
                error,
                PeerRequestError::Remote {
                    status: PeerStatus::HandlerFailed,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains(expected), "{kind:?}: {error}");
    }
    // A heartbeat at an epoch the node does not have: register again, the session stays.
    let answer = raw
        .request(
            PeerRequestKind::NodeHeartbeat,
            &serde_json::to_vec(&SessionRequest::Heartbeat { node_epoch: 9_999 }).unwrap(),
        )
        .await
        .unwrap();
    let answer: SessionReply = serde_json::from_slice(&answer).unwrap();
    assert!(
        matches!(answer, SessionReply::RegisterAgain { .. }),
        "{answer:?}"
    );
    // The quorum still decides: the same incarnation's registration gets its epoch back.
    let node_4_epoch = running[3].as_ref().unwrap().node_epoch.borrow().unwrap();
    let answer = raw
        .request(
            PeerRequestKind::NodeRegistration,
            &serde_json::to_vec(&SessionRequest::Register {
                incarnation_id: 103,
                storage_id: None,
                kafka_listeners: None,
            })
            .unwrap(),
        )
        .await
        .unwrap();
    let answer: SessionReply = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        answer,
        SessionReply::Registered {
            node_epoch: node_4_epoch
        }
    );
    drop(raw);

    // The active controller goes away: the others elect another and fence it.
    let lost = running[leader as usize - 1].take().unwrap();
    lost.shutdown().await;
    let (_, _, lost_endpoint) = &endpoints[leader as usize - 1];
    let _ = lost_endpoint.stop.send(true);
    lost_endpoint.endpoint.close(0u32.into(), b"gone");
    until("a new leader", || {
        agreed_leader(&voters(&running)).is_some_and(|new| new != leader)
    })
    .await;
    until("the lost controller fenced, the others alive", || {
        running.iter().flatten().all(|node| {
            let image = node.controller.as_ref().unwrap().image();
            image
                .nodes
                .iter()
                .all(|(id, n)| n.fenced == (*id == leader))
        })
    })
    .await;
    // The learner follows the new controller too.
    let new_leader = agreed_leader(&voters(&running)).unwrap();
    until("the learner knows the new controller", || {
        learner.leader() == Some(new_leader)
    })
    .await;
    until("the learner's image equal to the new controller's", || {
        let active = running[new_leader as usize - 1].as_ref().unwrap();
        learner.image() == active.controller.as_ref().unwrap().image()
    })
    .await;
    drop(learner);
    // Node 4 stops with a controlled shutdown: its session asks the new controller over
    // QUIC (`ControlledShutdown` in place of a heartbeat); it leads nothing, so the first
    // `ShutdownProgress { leaderships_left: 0 }` ends the wait.
    let outcome = running[3].as_ref().unwrap().controlled_shutdown().await;
    assert!(
        matches!(
            outcome,
            Some(crate::controller::shutdown::ShutdownOutcome::Moved { leaderships: 0, .. })
        ),
        "{outcome:?}"
    );
    for node in running.into_iter().flatten() {
        node.shutdown().await;
    }
}
