//! The QUIC listener with SASL on loopback: a node that accepts no anonymous clients
//! (`allow_anonymous = false`, no client certificates, SASL on), the SDK's `Client` with and
//! without credentials, and raw streams for what the SDK never does (a request before or
//! during authentication).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use ledge_client::sasl::{SaslCredentials, SaslMechanism as ClientMechanism, ScramClient};
use ledge_client::{Client, ClientConfig, ConnectError, Trust};
use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};
use tokio::sync::watch;

use super::{authenticate, handshake, metadata, sasl_server};
use crate::broker::{Broker, BrokerConfig};
use crate::clock::SystemClock;
use crate::config::SecurityConfig;
use crate::config::security::AnonymousAccess;
use crate::security::sasl::SASL_MECHANISMS_ALL;
use crate::sim::SimDisk;
use crate::transport::client_auth::ClientAuthenticator;
use crate::transport::quic::{
    CLOSE_AUTHENTICATION_FAILED, QuicServer, TransportLimits, bind_socket,
    client_auth_server_config,
};
use crate::transport::tls;

struct Node {
    address: std::net::SocketAddr,
    ca: std::path::PathBuf,
    _stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

/// A node on 127.0.0.1 that accepts no anonymous clients, with SASL on (the fixture's users
/// alice and bob).
async fn closed_node(directory: &Path) -> Node {
    closed_node_at(directory, "127.0.0.1:0".parse().unwrap()).await
}

/// [`closed_node`] on `address`, with the TLS material in `directory` (made once).
async fn closed_node_at(directory: &Path, address: std::net::SocketAddr) -> Node {
    closed_node_with(directory, address, None, &SecurityConfig::default(), None).await
}

/// [`closed_node_at`] with `audit` installed in its broker, `security`'s client
/// certificate settings (the node's development CA is the client CA) and `quotas` enforced.
async fn closed_node_with(
    directory: &Path,
    address: std::net::SocketAddr,
    audit: Option<Arc<crate::security::audit::AuditLog>>,
    security: &SecurityConfig,
    quotas: Option<Arc<crate::security::quota::ClientQuotaManager>>,
) -> Node {
    let server_tls = tls::load_or_generate_dev(directory).unwrap();
    let transport = TransportLimits::default();
    let ca = directory.join("tls").join("ca.pem");
    let authenticator =
        Arc::new(ClientAuthenticator::load(security, Some(&ca), AnonymousAccess::Never).unwrap());
    let server_config =
        client_auth_server_config(server_tls, &transport, &authenticator, None).unwrap();
    let socket = bind_socket(address, &transport).unwrap();
    let server = QuicServer::new(socket, server_config, transport, [9; 32])
        .unwrap()
        .with_client_auth(authenticator)
        .with_sasl(sasl_server(&SASL_MECHANISMS_ALL));
    let server = match quotas {
        Some(quotas) => server.with_quotas(quotas),
        None => server,
    };
    let address = server.local_addr().unwrap();
    let broker = Broker::open(
        SimDisk::new(1),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    if let Some(audit) = audit {
        broker.set_audit_log(audit);
    }
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn(server.serve(Arc::new(broker), stopped));
    Node {
        address,
        ca: directory.join("tls").join("ca.pem"),
        _stop: stop,
        serving,
    }
}

fn config(node: &Node, credentials: Option<SaslCredentials>) -> ClientConfig {
    let mut config = ClientConfig::new(node.address.to_string(), Trust::CaFile(node.ca.clone()));
    config.sasl = credentials;
    config
}

/// A raw QUIC connection to `node` (ALPN `ledge/1`), for frames the SDK never sends.
async fn raw_connection(node: &Node) -> quinn::Connection {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&node.ca).unwrap();
    for certificate in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
        .connect(node.address, "localhost")
        .unwrap()
        .await
        .unwrap()
}

/// One request on its own stream: the answer's header and body.
async fn ask(
    connection: &quinn::Connection,
    request: &Request,
) -> (wire::ResponseHeader, Option<Response>) {
    let (mut send, mut receive) = connection.open_bi().await.unwrap();
    send.write_all(&wire::encode_request(1, "raw", request))
        .await
        .unwrap();
    send.finish().unwrap();
    let bytes = receive.read_to_end(1 << 20).await.unwrap();
    wire::decode_response(request.api_key(), Bytes::from(bytes)).unwrap()
}

use rustls::pki_types::pem::PemObject as _;

// Goal (negative first): against a node that accepts no anonymous clients, the SDK with a
// wrong password, or an unknown user, fails to connect with one error naming the user and
// mechanism, never the password; without credentials its requests are refused
// AuthenticationRequired (the connection is kept so it could still authenticate).
#[tokio::test]
async fn wrong_passwords_unknown_users_and_anonymous_clients_are_refused() {
    let directory = tempfile::tempdir().unwrap();
    let node = closed_node(directory.path()).await;
    for (user, password) in [
        ("alice", "not-alices-password"),
        ("mallory", "alice-secret"),
    ] {
        let credentials = SaslCredentials::new(user, password);
        let error = Client::connect(config(&node, Some(credentials)))
            .await
            .unwrap_err();
        let ConnectError::Authentication {
            user: named,
            mechanism,
            message,
            ..
        } = &error
        else {
            panic!("expected an authentication error, got {error:?}");
        };
        assert_eq!(named, user);
        assert_eq!(mechanism, "SCRAM-SHA-512");
        assert!(message.contains("SaslAuthenticationFailed"), "{message}");
        let text = error.to_string();
        assert!(!text.contains(password), "{text}");
        assert!(text.contains(user), "{text}");
    }
    let anonymous = Client::connect(config(&node, None)).await.unwrap();
    // ApiVersions is served before authentication.
    anonymous.api_versions().await.unwrap();
    let error = ledge_client::Admin::new(&anonymous)
        .list_topics()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("authentication required"),
        "{error}"
    );
}

// Goal: the SDK authenticates with each mechanism and its requests are then served; a
// failed exchange closes the connection with CLOSE_AUTHENTICATION_FAILED after its answer.
// A multi-threaded runtime, as the node's: SaslAuthenticate runs in `block_in_place` there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_authenticates_with_each_mechanism() {
    let directory = tempfile::tempdir().unwrap();
    let node = closed_node(directory.path()).await;
    for mechanism in ClientMechanism::ALL {
        let credentials = SaslCredentials::new("alice", "alice-secret").with_mechanism(mechanism);
        let client = Client::connect(config(&node, Some(credentials)))
            .await
            .unwrap_or_else(|error| panic!("{mechanism}: {error}"));
        ledge_client::Admin::new(&client)
            .list_topics()
            .await
            .unwrap_or_else(|error| panic!("{mechanism}: {error}"));
        client.close().await;
    }
    let connection = raw_connection(&node).await;
    let (_, answer) = ask(&connection, &handshake("PLAIN")).await;
    assert!(matches!(answer, Some(Response::SaslHandshake(ref a)) if a.error == ErrorCode::None));
    let credentials = SaslCredentials::new("alice", "wrong");
    let (_, answer) = ask(
        &connection,
        &authenticate(ledge_client::sasl::plain_message(&credentials)),
    )
    .await;
    assert!(
        matches!(answer, Some(Response::SaslAuthenticate(ref a)) if a.error == ErrorCode::SaslAuthenticationFailed),
        "{answer:?}"
    );
    let closed = connection.closed().await;
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close) if close.error_code == CLOSE_AUTHENTICATION_FAILED.into()),
        "{closed:?}"
    );
}

// Goal: a request on a stream opened while the exchange is under way (after client-first,
// before client-final) does not slip through: it is refused AuthenticationRequired, and once
// the exchange completes the same request is served.
#[tokio::test]
async fn a_concurrent_stream_during_authentication_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let node = closed_node(directory.path()).await;
    let connection = raw_connection(&node).await;
    let (header, _) = ask(&connection, &metadata()).await;
    assert_eq!(header.error, ErrorCode::AuthenticationRequired);
    let (_, answer) = ask(&connection, &handshake("SCRAM-SHA-256")).await;
    assert!(matches!(answer, Some(Response::SaslHandshake(ref a)) if a.error == ErrorCode::None));
    let credentials =
        SaslCredentials::new("alice", "alice-secret").with_mechanism(ClientMechanism::ScramSha256);
    let (mut client, first) =
        ScramClient::start(&credentials, ScramClient::random_nonce().unwrap()).unwrap();
    let (_, answer) = ask(&connection, &authenticate(first)).await;
    let Some(Response::SaslAuthenticate(server_first)) = answer else {
        panic!("{answer:?}");
    };
    // Mid-exchange, two streams at once: neither is served.
    let request = metadata();
    let (one, two) = tokio::join!(ask(&connection, &request), ask(&connection, &request));
    assert_eq!(one.0.error, ErrorCode::AuthenticationRequired);
    assert_eq!(two.0.error, ErrorCode::AuthenticationRequired);
    let last = client
        .handle_server_first(&server_first.auth_bytes)
        .unwrap();
    let (_, answer) = ask(&connection, &authenticate(last)).await;
    let Some(Response::SaslAuthenticate(server_final)) = answer else {
        panic!("{answer:?}");
    };
    assert_eq!(server_final.error, ErrorCode::None);
    client
        .handle_server_final(&server_final.auth_bytes)
        .unwrap();
    let (header, answer) = ask(&connection, &metadata()).await;
    assert_eq!(header.error, ErrorCode::None);
    assert_eq!(answer.map(|a| a.api_key()), Some(ApiKey::Metadata));
}

// Goal: the SDK authenticates again on every new connection: after the node restarts (every
// connection closed, a fresh listener on the same port that knows nothing of the old
// connections), the same client's next requests are served, which they would not be
// (AuthenticationRequired) on a connection that skipped the exchange.
#[tokio::test]
async fn the_sdk_authenticates_again_after_a_reconnect() {
    let directory = tempfile::tempdir().unwrap();
    let node = closed_node(directory.path()).await;
    let credentials = SaslCredentials::new("bob", "bob-secret");
    let client = Client::connect(config(&node, Some(credentials)))
        .await
        .unwrap();
    let admin = ledge_client::Admin::new(&client);
    admin.list_topics().await.unwrap();
    let address = node.address;
    node._stop.send(true).unwrap();
    node.serving.await.unwrap();
    let _restarted = closed_node_at(directory.path(), address).await;
    // The first try may meet the old, closed connection; the client reconnects.
    let mut outcome = admin.list_topics().await.map(|_| ());
    for _ in 0..3 {
        if outcome.is_ok() {
            break;
        }
        outcome = admin.list_topics().await.map(|_| ());
    }
    outcome.unwrap();
}

// Goal (audit log): through the real QUIC listener, the SDK with a wrong password is exactly
// one `authentication_failure` line in the broker's audit log (listener `quic`, the claimed
// user, the mechanism), without the password; a connection that sends a request without
// authenticating is one line naming no user.
#[tokio::test]
async fn a_wrong_password_over_quic_is_one_audit_line() {
    let directory = tempfile::tempdir().unwrap();
    let (log, queue) = crate::security::audit::AuditLog::with_queue(
        &crate::security::audit::AuditSettings::default(),
        Arc::new(crate::clock::ManualClock::new(1_796_655_267_000)),
    );
    let node = closed_node_with(
        directory.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some(Arc::new(log)),
        &SecurityConfig::default(),
        None,
    )
    .await;
    let credentials = SaslCredentials::new("alice", "not-alices-password-7");
    Client::connect(config(&node, Some(credentials)))
        .await
        .unwrap_err();
    let lines = queue.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["event"], "authentication_failure");
    assert_eq!(event["listener"], "quic");
    assert_eq!(event["principal"], "User:alice");
    assert_eq!(event["method"], "SCRAM-SHA-512");
    assert_eq!(event["host"], "127.0.0.1");
    assert!(!lines[0].contains("not-alices-password-7"), "{}", lines[0]);

    let connection = raw_connection(&node).await;
    let (header, _) = ask(&connection, &metadata()).await;
    assert_eq!(header.error, ErrorCode::AuthenticationRequired);
    let lines = queue.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"principal\":null"), "{}", lines[0]);
}

// Goal (audit log): with client_auth = "required", a QUIC client without a certificate is
// refused in the TLS handshake, and that refusal is one `authentication_failure` line
// (listener `quic`, method `certificate`), recorded from the alert the node sent.
#[tokio::test]
async fn a_refused_client_certificate_is_one_audit_line() {
    let directory = tempfile::tempdir().unwrap();
    let (log, queue) = crate::security::audit::AuditLog::with_queue(
        &crate::security::audit::AuditSettings::default(),
        Arc::new(crate::clock::ManualClock::new(1_796_655_267_000)),
    );
    let security = SecurityConfig {
        client_auth: crate::config::ClientAuth::Required,
        ..SecurityConfig::default()
    };
    let node = closed_node_with(
        directory.path(),
        "127.0.0.1:0".parse().unwrap(),
        Some(Arc::new(log)),
        &security,
        None,
    )
    .await;
    // The client may finish its side of the handshake before the node refuses: whether
    // its connect or its first request fails is not the point.
    let refused = Client::connect(config(&node, None)).await;
    if let Ok(client) = refused {
        let _ = client.api_versions().await;
    }
    let mut lines = Vec::new();
    for _ in 0..500 {
        lines.extend(queue.drain());
        if !lines.is_empty() {
            break;
        }
        crate::clock::sleep(&SystemClock, std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["event"], "authentication_failure");
    assert_eq!(event["listener"], "quic");
    assert_eq!(event["method"], "certificate");
    assert_eq!(event["principal"], serde_json::Value::Null);
    assert!(
        event["error"]
            .as_str()
            .unwrap()
            .contains("no client certificate"),
        "{event}"
    );
}

// Goal (issue 15): with security.connections_per_principal_max = 1, alice's second SDK
// connection authenticates but is closed (CLOSE_PRINCIPAL_LIMIT) at its first request, while
// her first connection and bob's are served; once the first is closed she may connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_past_its_connection_limit_is_closed_on_quic() {
    let directory = tempfile::tempdir().unwrap();
    let quotas = Arc::new(crate::security::quota::ClientQuotaManager::new(
        crate::security::quota::QuotaSettings::default(),
        None,
        1,
        Vec::new(),
    ));
    let node = closed_node_with(
        directory.path(),
        "127.0.0.1:0".parse().unwrap(),
        None,
        &SecurityConfig::default(),
        Some(Arc::clone(&quotas)),
    )
    .await;
    let alice = || Some(SaslCredentials::new("alice", "alice-secret"));
    let first = Client::connect(config(&node, alice())).await.unwrap();
    ledge_client::Admin::new(&first)
        .list_topics()
        .await
        .unwrap();
    assert_eq!(quotas.connections_of("User:alice"), 1);
    let second = Client::connect(config(&node, alice())).await.unwrap();
    let error = ledge_client::Admin::new(&second)
        .list_topics()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("connections_per_principal_max"),
        "{error}"
    );
    ledge_client::Admin::new(&first)
        .list_topics()
        .await
        .unwrap();
    let bob = Client::connect(config(
        &node,
        Some(SaslCredentials::new("bob", "bob-secret")),
    ))
    .await
    .unwrap();
    ledge_client::Admin::new(&bob).list_topics().await.unwrap();
    first.close().await;
    second.close().await;
    let mut served = false;
    for _ in 0..100 {
        let again = Client::connect(config(&node, alice())).await.unwrap();
        if ledge_client::Admin::new(&again).list_topics().await.is_ok() {
            served = true;
            break;
        }
        again.close().await;
        tokio::task::yield_now().await;
    }
    assert!(
        served,
        "alice is served again once her first connection is gone"
    );
}

/// A security store in `dir` where `user`'s producer_byte_rate and consumer_byte_rate are
/// both `rate` bytes per second.
async fn store_with_quotas(
    dir: &Path,
    user: &str,
    rate: u64,
) -> Arc<crate::security::store::SecurityStore> {
    use crate::security::quota::{QuotaEntity, QuotaKind};
    let store = crate::security::store::SecurityStore::open(
        dir,
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
                QuotaEntity::User(user.into()),
                vec![
                    (QuotaKind::Produce, Some(rate)),
                    (QuotaKind::Fetch, Some(rate)),
                ],
            )],
            false,
        )
        .await;
    assert!(results[0].1.is_ok());
    Arc::new(store)
}

/// Sends one record of `value` to `topic`/0 with a fresh producer and waits for it.
async fn produce_one(client: &Client, topic: &str, value: &str) -> ledge_client::RecordMetadata {
    let producer = ledge_client::Producer::new(client, ledge_client::ProducerConfig::default())
        .await
        .unwrap();
    let delivery = producer
        .send(ledge_client::ProducerRecord::new(topic, value.to_owned()).partition(0))
        .await
        .unwrap();
    let metadata = delivery.await.unwrap();
    producer.close().await;
    metadata
}

/// Reads `topic`/0 from its start until a record comes; the consumer's fetch throttle time
/// then.
async fn fetch_throttle_of_first_read(client: &Client, topic: &str) -> std::time::Duration {
    let mut config = ledge_client::ConsumerConfig::default();
    config.auto_offset_reset = ledge_client::OffsetReset::Earliest;
    let mut consumer = ledge_client::Consumer::new(client, config);
    consumer.assign(vec![ledge_client::TopicPartition::new(topic, 0)]);
    loop {
        let records = consumer
            .poll(std::time::Duration::from_secs(10), 10)
            .await
            .unwrap();
        if !records.is_empty() {
            return consumer.fetch_throttle_time();
        }
    }
}

// Goal (issue 15, KIP-219 on the native protocol): alice, with producer_byte_rate and
// consumer_byte_rate of 1 byte per second, gets her produce and her fetch answered with
// throttle_time_ms set, which the SDK reports (RecordMetadata::throttle_time,
// Consumer::fetch_throttle_time); bob, who has no quota, sees zero for both. A few hundred
// bytes against 1 B/s measured over at least 10 windows is far over the quota, so Kafka's
// formula is bounded by all the windows together: exactly 11 s with the default [quota].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_quota_on_quic_is_told_its_throttle_time() {
    let directory = tempfile::tempdir().unwrap();
    let security = directory.path().join("security");
    std::fs::create_dir_all(&security).unwrap();
    let store = store_with_quotas(&security, "alice", 1).await;
    let settings = crate::security::quota::QuotaSettings::default();
    let bound = settings.span();
    let quotas = Arc::new(crate::security::quota::ClientQuotaManager::new(
        settings,
        Some(store),
        0,
        Vec::new(),
    ));
    let node = closed_node_with(
        directory.path(),
        "127.0.0.1:0".parse().unwrap(),
        None,
        &SecurityConfig::default(),
        Some(quotas),
    )
    .await;
    let bob = Client::connect(config(
        &node,
        Some(SaslCredentials::new("bob", "bob-secret")),
    ))
    .await
    .unwrap();
    ledge_client::Admin::new(&bob)
        .create_topics(vec![ledge_client::NewTopic::new("quota-topic", 1)], false)
        .await
        .unwrap();
    let bobs = produce_one(&bob, "quota-topic", "from bob").await;
    assert_eq!(bobs.throttle_time, std::time::Duration::ZERO);
    assert_eq!(
        fetch_throttle_of_first_read(&bob, "quota-topic").await,
        std::time::Duration::ZERO
    );

    let alice = || Some(SaslCredentials::new("alice", "alice-secret"));
    let producing = Client::connect(config(&node, alice())).await.unwrap();
    let alices = produce_one(&producing, "quota-topic", "from alice").await;
    assert_eq!(alices.throttle_time, bound, "{alices:?}");
    // Her fetches count against their own quota: a connection throttled for producing
    // still fetches at once (and this one is a fresh connection anyway).
    let consuming = Client::connect(config(&node, alice())).await.unwrap();
    assert_eq!(
        fetch_throttle_of_first_read(&consuming, "quota-topic").await,
        bound
    );
    bob.close().await;
    producing.close().await;
    consuming.close().await;
}
