use std::time::Duration;

use tokio::sync::watch;

use super::wait_for_requests;
use crate::clock::{Clock, SimClock};

// Goal: shutdown waits for requests in flight, and no longer than its grace. Method: paused
// time; a request finishes 5 s in; with a 10 s grace the wait ends when it does (none left),
// with a 1 s grace it ends first and reports the request still in flight.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_requests_up_to_its_grace() {
    let clock = SimClock::new(1_000_000);
    for (grace, unfinished) in [(Duration::from_secs(10), 0), (Duration::from_secs(1), 1)] {
        let in_flight = Arc::new(watch::Sender::new(1usize));
        let request = tokio::spawn({
            let in_flight = Arc::clone(&in_flight);
            async move {
                crate::clock::sleep(&clock, Duration::from_secs(5)).await;
                in_flight.send_modify(|count| *count -= 1);
            }
        });
        let started = clock.now();
        assert_eq!(
            wait_for_requests(&clock, grace, &in_flight).await,
            unfinished
        );
        let waited = clock.now() - started;
        // Simulated time: exact, whatever the machine's load.
        assert_eq!(waited, grace.min(Duration::from_secs(5)));
        request.await.unwrap();
    }
}

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;

use super::{QuicServer, TransportLimits, bind_socket, server_config};
use crate::broker::{Broker, BrokerConfig};
use crate::clock::SystemClock;
use crate::sim::SimDisk;

/// A node's QUIC listener on 127.0.0.1:<any port> with the dev CA, and a client config
/// trusting that CA.
struct Listening {
    address: SocketAddr,
    client: quinn::ClientConfig,
    stop: watch::Sender<bool>,
    _certificates: tempfile::TempDir,
}

async fn listen(limits: TransportLimits) -> Listening {
    let certificates = tempfile::tempdir().unwrap();
    let tls = crate::transport::tls::load_or_generate_dev(certificates.path()).unwrap();
    let ca = std::fs::read(certificates.path().join("tls/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ledge_protocol::wire::ALPN.to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let socket = bind_socket("127.0.0.1:0".parse().unwrap(), &limits).unwrap();
    let config = server_config(tls, &limits).unwrap();
    let server = QuicServer::new(socket, config, limits, [7; 32]).unwrap();
    let address = server.local_addr().unwrap();
    let broker = Broker::open(
        SimDisk::new(1),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server.serve(Arc::new(broker), stopped));
    Listening {
        address,
        client,
        stop,
        _certificates: certificates,
    }
}

impl Listening {
    /// A client endpoint on the loopback address `from` (any 127.0.0.0/8 address is this
    /// host's on Linux), so a test can be several clients.
    fn endpoint(&self, from: &str) -> quinn::Endpoint {
        let mut endpoint =
            quinn::Endpoint::client(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
        endpoint.set_default_client_config(self.client.clone());
        endpoint
    }

    async fn connect(
        &self,
        endpoint: &quinn::Endpoint,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        endpoint.connect(self.address, "localhost").unwrap().await
    }
}

// Goal: one address cannot hold more than limits.connections_per_address_max connections
// while another address is still served, and the address gets its slot back when a
// connection ends (issue 15: ~1,019 held connections from one client locked every other
// client out). Method: real QUIC on loopback from two source addresses (127.0.0.1 and
// 127.0.0.2), a node-wide limit far above the per-address one. Real time: no assertion
// depends on how long anything takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_at_most_its_share_of_connections() {
    let node = listen(TransportLimits {
        connections_max: 10,
        connections_per_address_max: 2,
        ..TransportLimits::default()
    })
    .await;
    let one = node.endpoint("127.0.0.1");
    let first = node.connect(&one).await.unwrap();
    let _second = node.connect(&one).await.unwrap();
    let refused = node.connect(&one).await.unwrap_err();
    assert_eq!(
        refused,
        quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
            error_code: quinn::TransportErrorCode::CONNECTION_REFUSED,
            frame_type: None,
            reason: bytes::Bytes::new(),
        }),
        "{refused}"
    );
    let two = node.endpoint("127.0.0.2");
    let _other = node.connect(&two).await.expect("another address is served");
    // Once one ends, the address may connect again.
    first.close(0u32.into(), b"done");
    let mut again = None;
    for _ in 0..100 {
        if let Ok(connection) = node.connect(&one).await {
            again = Some(connection);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        again.is_some(),
        "served after a connection of its own ended"
    );
    let _ = node.stop.send(true);
}

// Goal (KIP-219 on QUIC): a Produce over its principal's quota mutes the connection's next
// Produce until the throttle time (Kafka's formula, here its bound) has passed on the node's
// clock, and leaves its Fetches alone; a Fetch over its own quota mutes Fetches alike; the
// mute only ever moves later. Method: the connection's quota state alone, simulated time.
#[tokio::test]
async fn a_throttle_mutes_the_connections_requests_of_its_kind_only() {
    use crate::security::quota::{ClientQuotaManager, QuotaEntity, QuotaKind, QuotaSettings};
    let dir = tempfile::tempdir().unwrap();
    let store = crate::security::store::SecurityStore::open(
        dir.path(),
        crate::security::store::StoreMode::OneNode,
        false,
        crate::security::acl::AuthorizerConfig::default(),
        crate::security::records::SecurityLimits::default(),
        [7; 32],
    )
    .unwrap();
    let results = store
        .alter_quotas(
            vec![(
                QuotaEntity::User("alice".into()),
                vec![(QuotaKind::Produce, Some(1)), (QuotaKind::Fetch, Some(1))],
            )],
            false,
        )
        .await;
    assert!(results[0].1.is_ok());
    let settings = QuotaSettings::default();
    let bound = settings.span();
    let quotas = Arc::new(ClientQuotaManager::new(
        settings,
        Some(Arc::new(store)),
        0,
        Vec::new(),
    ));
    let alice = crate::security::identity::ClientIdentity {
        principal: crate::security::principal::KafkaPrincipal::user("alice"),
        host: [127, 0, 0, 1].into(),
        method: crate::security::identity::AuthMethod::Certificate,
    };
    let quota = super::ConnectionQuota::new(Some(quotas));
    let clock = SimClock::new(1_000_000);
    let now = clock.now();
    assert_eq!(quota.muted_until(QuotaKind::Produce), None);
    let throttle = quota.record(&alice, QuotaKind::Produce, 500, now);
    assert_eq!(throttle, bound);
    assert_eq!(quota.muted_until(QuotaKind::Produce), Some(now + bound));
    assert_eq!(quota.muted_until(QuotaKind::Fetch), None);
    let later = now + Duration::from_secs(1);
    let throttle = quota.record(&alice, QuotaKind::Fetch, 500, later);
    assert_eq!(throttle, bound);
    assert_eq!(quota.muted_until(QuotaKind::Fetch), Some(later + bound));
    assert_eq!(quota.muted_until(QuotaKind::Produce), Some(now + bound));
    // Without a quota manager nothing is recorded or muted.
    let unlimited = super::ConnectionQuota::new(None);
    assert_eq!(
        unlimited.record(&alice, QuotaKind::Produce, 500, now),
        Duration::ZERO
    );
    assert_eq!(unlimited.muted_until(QuotaKind::Produce), None);
}

// Goal: the throttle goes into a Produce's or Fetch's answer in whole milliseconds (at most
// u32::MAX), and no other answer changes; a zero throttle changes nothing.
#[test]
fn the_throttle_time_is_set_in_produce_and_fetch_answers_only() {
    use ledge_protocol::wire::{FetchResponse, ProduceResponse, Response};
    let mut produce = Response::Produce(ProduceResponse::default());
    assert!(super::set_throttle_time(
        &mut produce,
        Duration::from_millis(1_234)
    ));
    assert_eq!(
        produce,
        Response::Produce(ProduceResponse {
            throttle_time_ms: 1_234,
            topics: Vec::new(),
        })
    );
    let mut fetch = Response::Fetch(FetchResponse::default());
    assert!(!super::set_throttle_time(&mut fetch, Duration::ZERO));
    assert_eq!(fetch, Response::Fetch(FetchResponse::default()));
    assert!(super::set_throttle_time(
        &mut fetch,
        Duration::from_secs(u64::MAX / 2_000)
    ));
    let Response::Fetch(fetch) = fetch else {
        unreachable!()
    };
    assert_eq!(fetch.throttle_time_ms, u32::MAX);
    let mut other = Response::DeleteGroups(Default::default());
    assert!(!super::set_throttle_time(
        &mut other,
        Duration::from_secs(1)
    ));
}
