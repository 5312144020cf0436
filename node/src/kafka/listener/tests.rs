//! The listener on real TCP sockets: responses in request order, bad frames close only their
//! own connection, the connection limit, and a busy port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;
use crate::broker::BrokerConfig;
use crate::clock::SimClock;
use crate::kafka::PlaintextListen;
use crate::kafka::codec::tests::{default_request, request_frame, split_response};
use crate::sim::SimDisk;

struct Running {
    /// The plaintext socket's address; `None` when it is off.
    address: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

impl Running {
    fn plain(&self) -> SocketAddr {
        self.address.expect("a plaintext socket")
    }
}

fn any_port() -> Option<SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

async fn start(settings: KafkaSettings) -> Running {
    let listener = KafkaListener::bind(any_port(), settings).unwrap();
    start_listener(listener).await
}

async fn start_listener(listener: KafkaListener) -> Running {
    start_listener_with_audit(listener, None).await
}

/// [`start_listener`] with `audit` installed in the broker.
async fn start_listener_with_audit(
    listener: KafkaListener,
    audit: Option<Arc<AuditLog>>,
) -> Running {
    let broker = Broker::open(
        SimDisk::new(7),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    if let Some(audit) = audit {
        broker.set_audit_log(audit);
    }
    let address = listener.local_addr().transpose().unwrap();
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn(listener.serve(Arc::new(broker), stopped));
    Running {
        address,
        stop,
        serving,
    }
}

/// A request with its length prefix.
fn prefixed(api: ApiKey, version: i16, correlation_id: i32) -> Bytes {
    let frame = request_frame(api, version, correlation_id, &default_request(api));
    let mut out = BytesMut::new();
    out.put_i32(frame.len() as i32);
    out.put_slice(&frame);
    out.freeze()
}

/// Reads one response frame, length prefix included; `None` at the end of the stream.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Bytes> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).await.ok()?;
    let mut frame = BytesMut::from(&length[..]);
    frame.put_slice(&body);
    Some(frame.freeze())
}

/// Whether the node closed the connection: the next read finds its end.
async fn closed<S: AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let running = start(KafkaSettings::default()).await;
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    // Three requests in one write, the slow one (Metadata) in the middle.
    let mut batch = BytesMut::new();
    batch.put_slice(&prefixed(ApiKey::ApiVersions, 3, 1));
    batch.put_slice(&prefixed(ApiKey::Metadata, 12, 2));
    batch.put_slice(&prefixed(ApiKey::ApiVersions, 0, 3));
    stream.write_all(&batch).await.unwrap();
    let first = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::ApiVersions, 3, &first);
    assert_eq!(correlation, 1);
    ApiVersionsResponse::decode(&mut body, 3).unwrap();
    let second = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::Metadata, 12, &second);
    assert_eq!(correlation, 2);
    let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(metadata.brokers[0].port, i32::from(running.plain().port()));
    let third = read_response(&mut stream).await.unwrap();
    assert_eq!(split_response(ApiKey::ApiVersions, 0, &third).0, 3);
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn bad_frames_close_their_connection_only() {
    let settings = KafkaSettings {
        frame_bytes_max: 64 * 1024,
        ..KafkaSettings::default()
    };
    let running = start(settings).await;
    let mut healthy = TcpStream::connect(running.plain()).await.unwrap();
    let bad_frames: Vec<Vec<u8>> = vec![
        // A negative length.
        (-1i32).to_be_bytes().to_vec(),
        // A length over frame_bytes_max: refused before anything is allocated or read.
        (i32::MAX).to_be_bytes().to_vec(),
        [&(64 * 1024 + 1i32).to_be_bytes()[..], &[0; 16]].concat(),
        // An unknown API key.
        [&8i32.to_be_bytes()[..], &[0x27, 0x0f, 0, 0, 0, 0, 0, 1]].concat(),
        // Produce at version 0 (served from 3).
        [&8i32.to_be_bytes()[..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat(),
        // Metadata claiming two billion topics.
        {
            let mut frame = BytesMut::new();
            frame.put_i16(ApiKey::Metadata as i16);
            frame.put_i16(1);
            frame.put_i32(1);
            frame.put_i16(-1);
            frame.put_i32(i32::MAX);
            let mut out = (frame.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            out
        },
    ];
    for (index, bytes) in bad_frames.iter().enumerate() {
        let mut stream = TcpStream::connect(running.plain()).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        assert!(closed(&mut stream).await, "bad frame {index}: still open");
        // The other connection is still served.
        healthy
            .write_all(&prefixed(ApiKey::ApiVersions, 3, index as i32))
            .await
            .unwrap();
        let answer = read_response(&mut healthy).await.unwrap();
        assert_eq!(
            split_response(ApiKey::ApiVersions, 3, &answer).0,
            index as i32
        );
    }
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn requests_before_a_bad_frame_are_answered() {
    let running = start(KafkaSettings::default()).await;
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    let mut bytes = BytesMut::new();
    bytes.put_slice(&prefixed(ApiKey::ApiVersions, 3, 11));
    bytes.put_i32(-5);
    stream.write_all(&bytes).await.unwrap();
    let answer = read_response(&mut stream).await.unwrap();
    assert_eq!(split_response(ApiKey::ApiVersions, 3, &answer).0, 11);
    assert!(closed(&mut stream).await);
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let settings = KafkaSettings {
        connections_max: 1,
        ..KafkaSettings::default()
    };
    let running = start(settings).await;
    let mut first = TcpStream::connect(running.plain()).await.unwrap();
    first
        .write_all(&prefixed(ApiKey::ApiVersions, 3, 1))
        .await
        .unwrap();
    read_response(&mut first).await.unwrap();
    let mut second = TcpStream::connect(running.plain()).await.unwrap();
    assert!(closed(&mut second).await, "over the limit");
    // Once the first is gone, a new connection is served.
    drop(first);
    let mut served = None;
    for attempt in 0..50 {
        let mut third = TcpStream::connect(running.plain()).await.unwrap();
        let _ = third
            .write_all(&prefixed(ApiKey::ApiVersions, 3, attempt))
            .await;
        if let Some(answer) = read_response(&mut third).await {
            served = Some(answer);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        served.is_some(),
        "a connection is served after the first closed"
    );
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[test]
fn a_busy_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let Err(error) = KafkaListener::bind(Some(address), KafkaSettings::default()) else {
        panic!("bound a busy port");
    };
    let message = error.to_string();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(message.contains("[kafka] listen"), "{message}");
    assert!(message.contains("enabled = false"), "{message}");
}

/// A running listener with a TLS socket presenting a development certificate, and a
/// connector that trusts that certificate's CA.
struct TlsRunning {
    running: Running,
    tls_address: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    _certificates: tempfile::TempDir,
}

async fn start_tls(settings: KafkaSettings) -> TlsRunning {
    start_tls_with(any_port(), settings).await
}

/// [`start_tls`] with the plaintext socket at `plaintext` (`None`: off).
async fn start_tls_with(plaintext: Option<SocketAddr>, settings: KafkaSettings) -> TlsRunning {
    let certificates = tempfile::tempdir().unwrap();
    let certificate = crate::transport::tls::load_or_generate_dev(certificates.path()).unwrap();
    let ca = std::fs::read(certificates.path().join("tls/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let settings = KafkaSettings {
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..settings
    };
    let mut listener = KafkaListener::bind(plaintext, settings).unwrap();
    listener.present(certificate).unwrap();
    let tls_address = listener.local_tls_addr().unwrap().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsRunning {
        running: start_listener(listener).await,
        tls_address,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        _certificates: certificates,
    }
}

impl TlsRunning {
    async fn connect(&self) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.tls_address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        self.connector.connect(name, tcp).await.unwrap()
    }

    async fn stop(self) {
        let _ = self.running.stop.send(true);
        self.running.serving.await.unwrap();
    }
}

use rustls::pki_types::pem::PemObject;

// Goal: a Kafka client verifying the node's certificate gets the same answers over TLS as
// over plaintext, and Metadata asked over TLS lists the node at its TLS address (a client
// bootstrapped over TLS must be sent to a TLS port). Method: tokio-rustls as the client,
// trusting only the dev CA; pipelined ApiVersions and Metadata.
#[tokio::test]
async fn tls_round_trip_lists_the_tls_address() {
    let tls = start_tls(KafkaSettings::default()).await;
    let mut stream = tls.connect().await;
    let mut batch = BytesMut::new();
    batch.put_slice(&prefixed(ApiKey::ApiVersions, 3, 1));
    batch.put_slice(&prefixed(ApiKey::Metadata, 12, 2));
    stream.write_all(&batch).await.unwrap();
    let first = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::ApiVersions, 3, &first);
    assert_eq!(correlation, 1);
    ApiVersionsResponse::decode(&mut body, 3).unwrap();
    let second = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::Metadata, 12, &second);
    assert_eq!(correlation, 2);
    let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port, i32::from(tls.tls_address.port()));
    // The plaintext socket still lists its own port.
    let mut plain = TcpStream::connect(tls.running.plain()).await.unwrap();
    plain
        .write_all(&prefixed(ApiKey::Metadata, 12, 3))
        .await
        .unwrap();
    let answer = read_response(&mut plain).await.unwrap();
    let (_, mut body) = split_response(ApiKey::Metadata, 12, &answer);
    let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(
        metadata.brokers[0].port,
        i32::from(tls.running.plain().port())
    );
    tls.stop().await;
}

// Goal: with `kafka.listen = "off"` and a TLS listener, Kafka is served on the TLS port
// only: Metadata there lists the TLS address, and nothing listens for plaintext Kafka where
// the plaintext listener would default to (the QUIC address, on TCP). Method: a UDP socket
// stands for the node's QUIC socket; a TCP connect to its address is refused.
#[tokio::test]
async fn with_plaintext_off_only_the_tls_port_serves() {
    let quic = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let quic_address = quic.local_addr().unwrap();
    let settings = KafkaSettings {
        listen: PlaintextListen::Off,
        ..KafkaSettings::default()
    };
    let plaintext = settings.listen_address(quic_address);
    assert_eq!(plaintext, None);
    let tls = start_tls_with(plaintext, settings).await;
    assert_eq!(tls.running.address, None);
    let mut stream = tls.connect().await;
    stream
        .write_all(&prefixed(ApiKey::Metadata, 12, 1))
        .await
        .unwrap();
    let answer = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::Metadata, 12, &answer);
    assert_eq!(correlation, 1);
    let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].port, i32::from(tls.tls_address.port()));
    let refused = TcpStream::connect(quic_address).await;
    assert!(
        refused.is_err(),
        "something listens for plaintext Kafka on {quic_address}"
    );
    drop(quic);
    tls.stop().await;
}

// Goal: Kafka on with neither listener (plaintext "off", no tls_listen), or an advertised
// plaintext address with the plaintext listener off, is one clear start-up error naming
// the keys to change.
#[test]
fn no_listener_at_all_is_one_clear_error() {
    let off = KafkaSettings {
        listen: PlaintextListen::Off,
        ..KafkaSettings::default()
    };
    let Err(error) = KafkaListener::bind(None, off.clone()) else {
        panic!("bound no listener");
    };
    let message = error.to_string();
    assert!(matches!(error, KafkaListenError::NoListener), "{message}");
    for key in ["listen = \"off\"", "tls_listen", "enabled = false"] {
        assert!(message.contains(key), "{key}: {message}");
    }
    let advertised = KafkaSettings {
        tls_listen: any_port(),
        advertised_listen: Some("broker.example:9092".to_owned()),
        ..off
    };
    let Err(error) = KafkaListener::bind(None, advertised) else {
        panic!("advertised a plaintext listener that is off");
    };
    let message = error.to_string();
    assert!(
        matches!(error, KafkaListenError::AdvertisedWithoutListener { .. }),
        "{message}"
    );
    assert!(message.contains("advertised_listen"), "{message}");
}

// Goal: what is not TLS on the TLS port (random bytes, a plaintext Kafka request, a
// ClientHello cut short) closes that connection only; TLS and plaintext clients already
// connected keep being answered. Method: each bad input on a fresh TCP connection, then a
// request on each healthy connection.
#[tokio::test]
async fn garbage_on_the_tls_port_closes_that_connection_only() {
    let settings = KafkaSettings {
        tls_handshake_timeout: std::time::Duration::from_secs(30),
        ..KafkaSettings::default()
    };
    let tls = start_tls(settings).await;
    let mut healthy_tls = tls.connect().await;
    let mut healthy_plain = TcpStream::connect(tls.running.plain()).await.unwrap();
    let mut random = vec![0u8; 4096];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for byte in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let bad_inputs: Vec<Vec<u8>> = vec![
        random,
        prefixed(ApiKey::ApiVersions, 3, 7).to_vec(),
        // A TLS handshake record header announcing 16 KiB, then the connection's end.
        vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01],
    ];
    for (index, bytes) in bad_inputs.iter().enumerate() {
        let mut stream = TcpStream::connect(tls.tls_address).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        stream.shutdown().await.unwrap();
        // Whatever the node writes back (a TLS alert at most) ends with the close.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(rest.len() < 64, "bad input {index}: answered {rest:?}");
        let correlation = index as i32;
        healthy_tls
            .write_all(&prefixed(ApiKey::ApiVersions, 3, correlation))
            .await
            .unwrap();
        let answer = read_response(&mut healthy_tls).await.unwrap();
        assert_eq!(
            split_response(ApiKey::ApiVersions, 3, &answer).0,
            correlation
        );
        healthy_plain
            .write_all(&prefixed(ApiKey::ApiVersions, 3, correlation))
            .await
            .unwrap();
        let answer = read_response(&mut healthy_plain).await.unwrap();
        assert_eq!(
            split_response(ApiKey::ApiVersions, 3, &answer).0,
            correlation
        );
    }
    tls.stop().await;
}

// Goal: a client that opens TCP to the TLS port and never finishes the handshake is cut off
// after kafka.tls_handshake_timeout_ms and gives its slot back. Method: one connection
// allowed; a silent TCP connection takes it; the node closes it (the read finds the end);
// then a TLS client is served.
#[tokio::test]
async fn a_silent_tls_client_is_cut_off_after_the_handshake_timeout() {
    let settings = KafkaSettings {
        connections_max: 1,
        tls_handshake_timeout: std::time::Duration::from_millis(200),
        ..KafkaSettings::default()
    };
    let tls = start_tls(settings).await;
    let mut silent = TcpStream::connect(tls.tls_address).await.unwrap();
    // Bounded so a listener that never cuts it off fails instead of hanging.
    let cut = crate::clock::timeout(
        &crate::clock::SystemClock,
        std::time::Duration::from_secs(30),
        closed(&mut silent),
    )
    .await;
    assert!(
        matches!(cut, Ok(true)),
        "the silent connection was not closed"
    );
    let mut served = None;
    for attempt in 0..50 {
        let tcp = TcpStream::connect(tls.tls_address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let Ok(mut stream) = tls.connector.connect(name, tcp).await else {
            crate::clock::sleep(
                &crate::clock::SystemClock,
                std::time::Duration::from_millis(20),
            )
            .await;
            continue;
        };
        let _ = stream
            .write_all(&prefixed(ApiKey::ApiVersions, 3, attempt))
            .await;
        if let Some(answer) = read_response(&mut stream).await {
            served = Some(answer);
            break;
        }
    }
    assert!(served.is_some(), "no TLS client served after the cut-off");
    tls.stop().await;
}

#[test]
fn a_tls_socket_without_a_certificate_is_one_clear_error() {
    let settings = KafkaSettings {
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..KafkaSettings::default()
    };
    let listener = KafkaListener::bind(any_port(), settings).unwrap();
    let tls_address = listener.local_tls_addr().unwrap().unwrap();
    let error = listener.check().unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, KafkaListenError::NoCertificate { .. }),
        "{message}"
    );
    assert!(message.contains(&tls_address.to_string()), "{message}");
    assert!(message.contains("tls_listen"), "{message}");
    // Without a TLS socket there is nothing to present and nothing to refuse.
    let plain = KafkaListener::bind(any_port(), KafkaSettings::default()).unwrap();
    plain.check().unwrap();
}

#[test]
fn a_busy_tls_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let settings = KafkaSettings {
        tls_listen: Some(address),
        ..KafkaSettings::default()
    };
    let Err(error) = KafkaListener::bind(any_port(), settings) else {
        panic!("bound a busy port");
    };
    let message = error.to_string();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(message.contains("tls_listen"), "{message}");
}

// Goal: a connection that sends no request for kafka.connections_max_idle_ms is closed
// (Kafka's connections.max.idle.ms), one that keeps sending is not, and the closed one's
// slot is free again. Method: a 1 s idle limit and one connection allowed; an active
// connection sends a request every 100 ms for about a second and is answered every time;
// once it stops, the node closes it (the read finds the end, bounded by 30 s); then a new
// connection is served.
#[tokio::test]
async fn idle_connections_are_closed() {
    let settings = KafkaSettings {
        connections_max: 1,
        connections_max_idle: std::time::Duration::from_millis(1000),
        ..KafkaSettings::default()
    };
    let running = start(settings).await;
    let clock = crate::clock::SystemClock;
    let mut active = TcpStream::connect(running.plain()).await.unwrap();
    for correlation in 0..10 {
        active
            .write_all(&prefixed(ApiKey::ApiVersions, 3, correlation))
            .await
            .unwrap();
        let answer = read_response(&mut active)
            .await
            .expect("an active connection stays open");
        assert_eq!(
            split_response(ApiKey::ApiVersions, 3, &answer).0,
            correlation
        );
        crate::clock::sleep(&clock, std::time::Duration::from_millis(100)).await;
    }
    let cut = crate::clock::timeout(
        &clock,
        std::time::Duration::from_secs(30),
        closed(&mut active),
    )
    .await;
    assert!(
        matches!(cut, Ok(true)),
        "the idle connection was not closed"
    );
    let mut served = None;
    for attempt in 0..50 {
        let mut next = TcpStream::connect(running.plain()).await.unwrap();
        let _ = next
            .write_all(&prefixed(ApiKey::ApiVersions, 3, attempt))
            .await;
        if let Some(answer) = read_response(&mut next).await {
            served = Some(answer);
            break;
        }
        crate::clock::sleep(&clock, std::time::Duration::from_millis(20)).await;
    }
    assert!(
        served.is_some(),
        "no connection served after the idle one closed"
    );
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

mod sasl;
mod sasl_clients;

#[test]
fn a_wildcard_advertised_address_is_one_clear_error() {
    // Listening on every address without saying which one clients use: Metadata would
    // send them to 0.0.0.0, so the node refuses to start.
    let listener =
        KafkaListener::bind(Some("0.0.0.0:0".parse().unwrap()), KafkaSettings::default()).unwrap();
    let message = listener.check().unwrap_err().to_string();
    assert!(message.contains("0.0.0.0:"), "{message}");
    assert!(message.contains("advertised_listen"), "{message}");
    // Given a routable address, it starts.
    let mut listener = listener;
    listener.advertise("broker.example:9092".to_owned());
    listener.check().unwrap();
    assert!(advertises_a_wildcard("[::]:9092"));
    assert!(!advertises_a_wildcard("[::1]:9092"));
    assert!(!advertises_a_wildcard("broker.example:9092"));
}

/// A TLS listener with `[security] client_auth` as `security` says, checked against the dev
/// CA in a temporary data directory; `alice.pem`/`alice.key` issued by that CA.
struct MtlsRunning {
    running: Running,
    tls_address: SocketAddr,
    roots: rustls::RootCertStore,
    authenticator: Arc<ClientAuthenticator>,
    directory: tempfile::TempDir,
    /// The broker's audit log's lines.
    audit: crate::security::audit::AuditQueue,
}

async fn start_mtls(security: crate::config::SecurityConfig) -> MtlsRunning {
    let directory = tempfile::tempdir().unwrap();
    let certificate = crate::transport::tls::load_or_generate_dev(directory.path()).unwrap();
    let ca_path = directory.path().join("tls/ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_slice_iter(&std::fs::read(&ca_path).unwrap())
    {
        roots.add(certificate.unwrap()).unwrap();
    }
    // rustls checks the certificate against the real time in the handshake.
    let now = crate::clock::Clock::wall_time_ms(&crate::clock::SystemClock) / 1000;
    crate::transport::issue::issue_client_certificate(
        directory.path(),
        "alice",
        directory.path(),
        1,
        now,
    )
    .unwrap();
    let authenticator = Arc::new(
        ClientAuthenticator::load(
            &security,
            Some(&ca_path),
            crate::config::security::AnonymousAccess::LoopbackOnly,
        )
        .unwrap(),
    );
    let settings = KafkaSettings {
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..KafkaSettings::default()
    };
    let mut listener = KafkaListener::bind(None, settings).unwrap();
    listener
        .present_with_client_auth(certificate, Some(&authenticator))
        .unwrap();
    let tls_address = listener.local_tls_addr().unwrap().unwrap();
    let listener = listener.with_client_auth(Arc::clone(&authenticator));
    let (audit, queue) = AuditLog::with_queue(
        &crate::security::audit::AuditSettings::default(),
        Arc::new(crate::clock::ManualClock::new(1_000_000)),
    );
    MtlsRunning {
        running: start_listener_with_audit(listener, Some(Arc::new(audit))).await,
        tls_address,
        roots,
        authenticator,
        directory,
        audit: queue,
    }
}

impl MtlsRunning {
    /// The audit lines written so far, once there is at least one (the listener records a
    /// refusal after the client may have seen the connection close).
    async fn audit_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..500 {
            lines.extend(self.audit.drain());
            if !lines.is_empty() {
                break;
            }
            crate::clock::sleep(
                &crate::clock::SystemClock,
                std::time::Duration::from_millis(10),
            )
            .await;
        }
        lines
    }

    /// Connects, presenting alice's certificate if `as_alice`; the TLS 1.3 client finishes
    /// its handshake before the node has checked its certificate, so a refusal shows as a
    /// closed connection on the first read.
    async fn connect(&self, as_alice: bool) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone());
        let client = if as_alice {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(
                self.directory.path().join("alice.pem"),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(
                self.directory.path().join("alice.key"),
            )
            .unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let tcp = TcpStream::connect(self.tls_address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .ok()
    }

    /// Whether an ApiVersions request on a new connection is answered.
    async fn answered(&self, as_alice: bool) -> bool {
        let Some(mut stream) = self.connect(as_alice).await else {
            return false;
        };
        if stream
            .write_all(&prefixed(ApiKey::ApiVersions, 3, 1))
            .await
            .is_err()
        {
            return false;
        }
        read_response(&mut stream).await.is_some()
    }

    async fn stop(self) {
        let _ = self.running.stop.send(true);
        self.running.serving.await.unwrap();
    }
}

// Goal (issue 15, mTLS on the Kafka listener): with client_auth = "required", a client
// without a certificate is refused in the TLS handshake and one with a certificate from the
// node's CA is served; the certificate's subject CN=alice is the connection's principal
// User:alice. Method: tokio-rustls clients against the real listener; the principal through
// the listener's own `identify` on the certificate the client presented.
#[tokio::test]
async fn required_client_certificates_refuse_clients_without_one_and_map_alice() {
    let security = crate::config::SecurityConfig {
        client_auth: crate::config::ClientAuth::Required,
        ..crate::config::SecurityConfig::default()
    };
    let mtls = start_mtls(security).await;
    assert!(!mtls.answered(false).await, "served without a certificate");
    // The refusal is one authentication failure in the audit log.
    let lines = mtls.audit_lines().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["event"], "authentication_failure");
    assert_eq!(event["listener"], "kafka-tls");
    assert_eq!(event["method"], "certificate");
    assert_eq!(event["host"], "127.0.0.1");
    assert!(
        event["error"]
            .as_str()
            .unwrap()
            .contains("no client certificate"),
        "{event}"
    );
    assert!(mtls.answered(true).await, "alice was not served");
    assert!(
        mtls.audit.drain().is_empty(),
        "alice's connection is no failure"
    );
    let alice =
        rustls::pki_types::CertificateDer::pem_file_iter(mtls.directory.path().join("alice.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
    let remote: SocketAddr = "192.0.2.1:50000".parse().unwrap();
    let identity = identify(
        remote,
        Some(&alice),
        Some(&mtls.authenticator),
        AuditListener::KafkaTls,
        None,
    )
    .unwrap();
    assert_eq!(identity.principal.to_string(), "User:alice");
    assert_eq!(identity.host, remote.ip());
    mtls.stop().await;
}

// Goal: a verified certificate whose subject no `principal_mapping_rules` rule maps is a
// closed connection (Kafka fails its authentication the same way), and with client_auth =
// "optional" a client without a certificate is served as anonymous.
#[tokio::test]
async fn an_unmapped_subject_is_refused_and_optional_lets_anonymous_through() {
    let security = crate::config::SecurityConfig {
        client_auth: crate::config::ClientAuth::Optional,
        principal_mapping_rules: crate::security::principal::PrincipalMappingRules::parse(
            "RULE:^CN=bob$/bob/",
        )
        .unwrap(),
        ..crate::config::SecurityConfig::default()
    };
    let mtls = start_mtls(security).await;
    assert!(!mtls.answered(true).await, "an unmapped subject was served");
    let lines = mtls.audit_lines().await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["event"], "authentication_failure");
    assert_eq!(event["method"], "certificate");
    assert!(
        event["error"].as_str().unwrap().contains("CN=alice"),
        "{event}"
    );
    assert!(
        mtls.answered(false).await,
        "anonymous refused with optional"
    );
    let identity = identify(
        "127.0.0.1:1".parse().unwrap(),
        None,
        Some(&mtls.authenticator),
        AuditListener::KafkaTls,
        None,
    )
    .unwrap();
    assert!(!identity.is_authenticated());
    mtls.stop().await;
}

/// A plaintext connection to `to` from the loopback address `from` (any 127.0.0.0/8 address
/// is this host's on Linux), so a test can be two clients.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends ApiVersions on `stream`; whether it was answered.
async fn served<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, id: i32) -> bool {
    let _ = stream
        .write_all(&prefixed(ApiKey::ApiVersions, 3, id))
        .await;
    read_response(stream).await.is_some()
}

// Goal: one address cannot hold more than kafka.connections_per_address_max connections,
// counted over the plaintext and TLS listeners together, while another address is still
// served and the address gets its slot back when a connection ends (issue 15: ~1,019 held
// connections from one client locked every other client out). Method: two loopback source
// addresses (127.0.0.1, 127.0.0.2), a node-wide limit far above the per-address one.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_connections() {
    let settings = KafkaSettings {
        connections_max: 10,
        connections_per_address_max: 2,
        ..KafkaSettings::default()
    };
    let tls = start_tls(settings).await;
    let plain = tls.running.plain();
    let mut first = connect_from("127.0.0.1", plain).await;
    assert!(served(&mut first, 1).await);
    let mut second = tls.connect().await;
    assert!(
        served(&mut second, 2).await,
        "TLS connection inside the share"
    );
    let mut third = connect_from("127.0.0.1", plain).await;
    // Closed at once, unanswered (not idle-timed-out later: that would answer this first).
    assert!(
        !served(&mut third, 4).await,
        "a third from the same address"
    );
    let mut other = connect_from("127.0.0.2", plain).await;
    assert!(served(&mut other, 3).await, "another address is served");
    // Once one ends, the address may connect again.
    drop(first);
    let mut again = None;
    for attempt in 0..50 {
        let mut next = connect_from("127.0.0.1", plain).await;
        if served(&mut next, 10 + attempt).await {
            again = Some(next);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        again.is_some(),
        "served after a connection of its own ended"
    );
    tls.stop().await;
}
