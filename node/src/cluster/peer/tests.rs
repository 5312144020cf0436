//! Peer RPC on loopback: real QUIC endpoints (the node's `QuicServer`, with a broker on a
//! simulated disk for the client ALPN) and certificates written by `cluster-init`'s code.
//! Real time: quinn's handshake and loss timers run on real sockets, which a paused runtime
//! would fire early. No assertion depends on how long anything takes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::frame::{self, FrameError, PeerRequestKind, PeerStatus};
use super::*;
use crate::broker::{Broker, BrokerConfig};
use crate::clock::{Clock, SystemClock};
use crate::cluster::config::ClusterConfig;
use crate::cluster::identity::{ClusterTls, node_dns_name, provider};
use crate::cluster::init::{InitOptions, init};
use crate::config::NodeConfig;
use crate::sim::SimDisk;
use crate::transport::quic::{QuicServer, TransportLimits, bind_socket, cluster_server_config};
use crate::transport::tls::ServerTls;

/// A cluster written by `cluster-init` into `dir/name`: each node's config and TLS.
fn cluster(dir: &Path, name: &str, nodes: u32) -> Vec<(ClusterConfig, ClusterTls)> {
    let options = InitOptions {
        nodes,
        dir: dir.join(name),
        base_port: 9100,
        force: false,
    };
    let report = init(&options).unwrap();
    report
        .nodes
        .iter()
        .map(|node| {
            let cluster = NodeConfig::from_file(&node.config_file)
                .unwrap()
                .cluster
                .unwrap();
            let tls = cluster.load_tls(SystemClock.wall_time_ms()).unwrap();
            (cluster, tls)
        })
        .collect()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A node's endpoint serving clients and peers on 127.0.0.1:<any port>.
struct Node {
    address: SocketAddr,
    endpoint: quinn::Endpoint,
    service: Arc<PeerService>,
    stop: watch::Sender<bool>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn start(config: &ClusterConfig, tls: &ClusterTls, handlers: Arc<PeerHandlers>) -> Node {
    start_with(config, tls, handlers, PeerLimits::from_config(config)).await
}

async fn start_with(
    config: &ClusterConfig,
    tls: &ClusterTls,
    handlers: Arc<PeerHandlers>,
    limits: PeerLimits,
) -> Node {
    let service = Arc::new(PeerService::new(
        config.node_id,
        config.peers.iter().map(|peer| peer.id).collect(),
        tls.verifier().unwrap(),
        handlers,
        limits,
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
    let socket = bind_socket("127.0.0.1:0".parse().unwrap(), &transport).unwrap();
    let server = QuicServer::new(socket, server_config, transport.clone(), [7; 32]).unwrap();
    let endpoint = server.endpoint();
    let server = server.with_peers(Arc::clone(&service));
    let address = server.local_addr().unwrap();
    let broker = Broker::open(
        SimDisk::new(1),
        Path::new("/data"),
        BrokerConfig::default(),
        clock(),
    )
    .await
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server.serve(Arc::new(broker), stopped));
    Node {
        address,
        endpoint,
        service,
        stop,
    }
}

/// An endpoint that only dials (a node whose own listener is not needed by the test).
fn dialing_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn client(
    endpoint: &quinn::Endpoint,
    from: &(ClusterConfig, ClusterTls),
    to: NodeId,
    address: SocketAddr,
) -> PeerClient {
    let limits = PeerLimits::from_config(&from.0);
    let tls = PeerClientTls::new(&from.1, &limits).unwrap();
    PeerClient::new(endpoint.clone(), &tls, to, address, limits, clock())
}

/// Handlers that answer a heartbeat with who sent it and what it said.
fn echo_handlers() -> Arc<PeerHandlers> {
    let handlers = Arc::new(PeerHandlers::default());
    handlers
        .register(
            PeerRequestKind::NodeHeartbeat,
            |request: PeerRequest| async move {
                let mut answer = format!("from {}: ", request.from).into_bytes();
                answer.extend_from_slice(&request.body);
                Ok(Bytes::from(answer))
            },
        )
        .unwrap();
    handlers
        .register(
            PeerRequestKind::NodeRegistration,
            |request: PeerRequest| async move {
                Err(PeerHandlerError(format!(
                    "node {} may not register",
                    request.from
                )))
            },
        )
        .unwrap();
    handlers
}

use crate::cluster::NodeId;

// Goal: two nodes exchange requests both ways over real QUIC with the certificates
// cluster-init wrote; the handler sees the sender's id from its certificate; an
// unregistered kind and a handler's refusal come back as statuses, not failures of the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_requests() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), "a", 3);
    let one = start(&nodes[0].0, &nodes[0].1, echo_handlers()).await;
    let two = start(&nodes[1].0, &nodes[1].1, echo_handlers()).await;
    // Each node dials from its own endpoint, as the node does.
    let two_to_one = client(&two.endpoint, &nodes[1], 1, one.address);
    let one_to_two = client(&one.endpoint, &nodes[0], 2, two.address);
    let answer = two_to_one
        .request(PeerRequestKind::NodeHeartbeat, b"hello")
        .await
        .unwrap();
    assert_eq!(&answer[..], b"from 2: hello");
    let answer = one_to_two
        .request(PeerRequestKind::NodeHeartbeat, b"back")
        .await
        .unwrap();
    assert_eq!(&answer[..], b"from 1: back");
    assert_eq!(one.service.connected_nodes(), vec![2]);
    assert_eq!(two.service.connected_nodes(), vec![1]);

    let error = two_to_one
        .request(PeerRequestKind::RaftVote, b"")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PeerRequestError::Remote {
                status: PeerStatus::UnknownKind,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("no handler for RaftVote"),
        "{error}"
    );
    let error = two_to_one
        .request(PeerRequestKind::NodeRegistration, b"")
        .await
        .unwrap_err();
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
    assert!(
        error.to_string().contains("node 2 may not register"),
        "{error}"
    );
    // Many requests share the one connection.
    let first = two_to_one.connection().await.unwrap().stable_id();
    let answers = futures_util::future::join_all(
        (0..20).map(|_| two_to_one.request(PeerRequestKind::NodeHeartbeat, b"x")),
    )
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(two_to_one.connection().await.unwrap().stable_id(), first);
    // A kind registered twice is refused.
    let again = one
        .service
        .handlers()
        .register(PeerRequestKind::NodeHeartbeat, |_| async {
            Ok(Bytes::new())
        });
    assert!(again.is_err());
}

// Goal: a node of another cluster is refused in both directions: as a dialer (its
// certificate is not from this cluster's CA) and as the dialed (ours does not trust its CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = cluster(dir.path(), "a", 2);
    let b = cluster(dir.path(), "b", 2);
    let one = start(&a[0].0, &a[0].1, echo_handlers()).await;
    // B's node 2 dialing A's node 1, trusting A's CA so that only A's check can refuse it.
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(a[0].1.verifier().unwrap().roots())
        .with_client_auth_cert(b[1].1.chain.clone(), b[1].1.key.clone_key())
        .unwrap();
    crypto.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let tls = PeerClientTls::from_parts(config, &a[0].0.cluster_id);
    let endpoint = dialing_endpoint();
    let intruder = PeerClient::new(
        endpoint.clone(),
        &tls,
        1,
        one.address,
        PeerLimits::from_config(&b[1].0),
        clock(),
    );
    let error = intruder
        .request(PeerRequestKind::NodeHeartbeat, b"")
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PeerRequestError::Dial { .. } | PeerRequestError::Connection { .. }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    assert!(one.service.connected_nodes().is_empty());
    // B's node 2 as B configures it: it refuses A's node 1 (unknown CA) before sending.
    let error = client(&endpoint, &b[1], 1, one.address)
        .request(PeerRequestKind::NodeHeartbeat, b"")
        .await
        .unwrap_err();
    assert!(matches!(error, PeerRequestError::Dial { .. }), "{error}");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
}

// Goal: the dialer checks that the peer is the node it meant: node 2 answering where node 3
// was expected is refused in the handshake, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_presenting_another_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), "a", 3);
    let two = start(&nodes[1].0, &nodes[1].1, echo_handlers()).await;
    let endpoint = dialing_endpoint();
    let error = client(&endpoint, &nodes[0], 3, two.address)
        .request(PeerRequestKind::NodeHeartbeat, b"")
        .await
        .unwrap_err();
    assert!(matches!(error, PeerRequestError::Dial { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains(&node_dns_name(&nodes[0].0.cluster_id, 3)),
        "{text}"
    );
    assert!(
        text.contains(&node_dns_name(&nodes[0].0.cluster_id, 2)),
        "{text}"
    );
    assert!(two.service.connected_nodes().is_empty());
}

// Goal: a node id is held by one connection: a second node with node 2's certificate from
// another address is refused while the first is connected, and a node presenting the
// listener's own id is refused; a redial from the same address replaces the old connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), "a", 3);
    let one = start(&nodes[0].0, &nodes[0].1, echo_handlers()).await;
    let first_endpoint = dialing_endpoint();
    let first = client(&first_endpoint, &nodes[1], 1, one.address);
    first
        .request(PeerRequestKind::NodeHeartbeat, b"first")
        .await
        .unwrap();
    let second_endpoint = dialing_endpoint();
    let second = client(&second_endpoint, &nodes[1], 1, one.address);
    let error = second
        .request(PeerRequestKind::NodeHeartbeat, b"second")
        .await
        .unwrap_err();
    assert!(matches!(error, PeerRequestError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("duplicate node id 2"), "{error}");
    // The first connection is untouched.
    first
        .request(PeerRequestKind::NodeHeartbeat, b"still")
        .await
        .unwrap();
    assert_eq!(one.service.connected_nodes(), vec![2]);

    // Node 1's own certificate, dialing node 1.
    let error = client(&dialing_endpoint(), &nodes[0], 1, one.address)
        .request(PeerRequestKind::NodeHeartbeat, b"")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("own id 1"), "{error}");

    // Node 2 redialing from its address (a restart): the new connection replaces the old.
    let old = first.connection().await.unwrap();
    let redial = client(&first_endpoint, &nodes[1], 1, one.address);
    redial
        .request(PeerRequestKind::NodeHeartbeat, b"again")
        .await
        .unwrap();
    let closed = old.closed().await;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close) if close.error_code == CLOSE_PEER_REPLACED.into()),
        "{closed}"
    );
}

// Goal: the peer ALPN requires a certificate: a dialer without one is refused after the
// handshake with the reason, and the listener records no peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), "a", 2);
    let one = start(&nodes[0].0, &nodes[0].1, echo_handlers()).await;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(nodes[0].1.verifier().unwrap().roots())
        .with_no_client_auth();
    crypto.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let tls = PeerClientTls::from_parts(config, &nodes[0].0.cluster_id);
    let anonymous = PeerClient::new(
        dialing_endpoint(),
        &tls,
        1,
        one.address,
        PeerLimits::from_config(&nodes[1].0),
        clock(),
    );
    let error = anonymous
        .request(PeerRequestKind::NodeHeartbeat, b"")
        .await
        .unwrap_err();
    assert!(matches!(error, PeerRequestError::Refused { .. }), "{error}");
    assert!(
        error.to_string().contains("no client certificate"),
        "{error}"
    );
    assert!(one.service.connected_nodes().is_empty());
}

// Goal: an oversized or malformed request frame is refused on its own stream and the
// connection carries on; a client refuses to send a frame over its own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_oversized_frames_are_refused_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), "a", 2);
    let small = PeerLimits {
        frame_bytes_max: crate::cluster::config::PEER_FRAME_BYTES_MIN,
        ..PeerLimits::from_config(&nodes[0].0)
    };
    let one = start_with(&nodes[0].0, &nodes[0].1, echo_handlers(), small.clone()).await;
    let endpoint = dialing_endpoint();
    let two = client(&endpoint, &nodes[1], 1, one.address);
    let connection = two.connection().await.unwrap();
    let big = vec![7u8; 8 * 1024];
    let error = two
        .request(PeerRequestKind::NodeHeartbeat, &big)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PeerRequestError::Remote {
                status: PeerStatus::FrameTooLarge,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("cluster.peer_frame_bytes_max (4096 bytes)"),
        "{error}"
    );

    // Raw bytes on a stream: too short for a header, then a length field that lies.
    for raw in [
        vec![0u8, 0, 5],
        frame::encode_request(PeerRequestKind::NodeHeartbeat, 9, b"abc")[..16].to_vec(),
        {
            let mut frame =
                frame::encode_request(PeerRequestKind::NodeHeartbeat, 9, b"abc").to_vec();
            frame.extend_from_slice(b"more");
            frame
        },
        {
            let mut frame = frame::encode_request(PeerRequestKind::NodeHeartbeat, 9, b"").to_vec();
            frame[1..3].copy_from_slice(&999u16.to_be_bytes());
            frame
        },
    ] {
        let (mut send, mut receive) = connection.open_bi().await.unwrap();
        send.write_all(&raw).await.unwrap();
        send.finish().unwrap();
        let answer = receive.read_to_end(64 * 1024).await.unwrap();
        let answer = frame::decode_response(Bytes::from(answer), u32::MAX).unwrap();
        assert!(
            matches!(
                answer.status,
                PeerStatus::InvalidFrame | PeerStatus::UnknownKind
            ),
            "{raw:?}: {answer:?}"
        );
    }

    // The same connection still answers.
    let answer = two
        .request(PeerRequestKind::NodeHeartbeat, b"ok")
        .await
        .unwrap();
    assert_eq!(&answer[..], b"from 2: ok");
    assert_eq!(
        two.connection().await.unwrap().stable_id(),
        connection.stable_id()
    );

    // A client with the small limit does not send the large frame at all.
    let tls = PeerClientTls::new(&nodes[1].1, &small).unwrap();
    let careful = PeerClient::new(endpoint.clone(), &tls, 1, one.address, small, clock());
    let error = careful
        .request(PeerRequestKind::NodeHeartbeat, &big)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PeerRequestError::TooLarge { .. }),
        "{error}"
    );
}

// Goal: the frame codec round-trips and refuses every malformed frame without panicking,
// including seeded random bytes and every truncation of a valid frame.
#[test]
fn frames_round_trip_and_bad_frames_are_refused() {
    let request = frame::encode_request(PeerRequestKind::ReplicaFetch, 42, b"body");
    let decoded = frame::decode_request(request.clone(), 1024).unwrap();
    assert_eq!(decoded.kind, PeerRequestKind::ReplicaFetch);
    assert_eq!(decoded.request_id, 42);
    assert_eq!(&decoded.body[..], b"body");
    let response = frame::encode_response(42, PeerStatus::HandlerFailed, b"why");
    let decoded = frame::decode_response(response.clone(), 1024).unwrap();
    assert_eq!(
        (decoded.request_id, decoded.status),
        (42, PeerStatus::HandlerFailed)
    );
    assert_eq!(
        frame::decode_request(request.clone(), 10),
        Err(FrameError::TooLarge {
            bytes: request.len(),
            max: 10
        })
    );
    for length in 0..request.len() {
        assert!(frame::decode_request(request.slice(..length), 1024).is_err());
    }
    for length in 0..response.len() {
        assert!(frame::decode_response(response.slice(..length), 1024).is_err());
    }
    let mut bad_version = request.to_vec();
    bad_version[0] = 1;
    assert_eq!(
        frame::decode_request(Bytes::from(bad_version), 1024),
        Err(FrameError::Version(1))
    );
    let mut bad_status = response.to_vec();
    bad_status[9] = 200;
    assert_eq!(
        frame::decode_response(Bytes::from(bad_status), 1024),
        Err(FrameError::UnknownStatus(200))
    );
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    for _ in 0..10_000 {
        let length = rng.random_range(0..40);
        let mut bytes = vec![0u8; length];
        rng.fill(&mut bytes[..]);
        if rng.random_bool(0.5) && length > 0 {
            bytes[0] = 0;
        }
        let _ = frame::decode_request(Bytes::from(bytes.clone()), 32);
        let _ = frame::decode_response(Bytes::from(bytes), 32);
    }
}

// Goal: the dial back-off doubles from its minimum and stops at its maximum.
#[test]
fn reconnect_backoff_doubles_up_to_its_maximum() {
    use std::time::Duration;
    let (min, max) = (Duration::from_millis(100), Duration::from_millis(5_000));
    let waits: Vec<u128> = (0..10)
        .map(|failures| client::reconnect_backoff(failures, min, max).as_millis())
        .collect();
    assert_eq!(waits, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    assert_eq!(client::reconnect_backoff(u32::MAX, min, max), max);
}
