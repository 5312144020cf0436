//! The QUIC listener: quinn + rustls (ring), ALPN `ledge/1`, one request per bidirectional
//! stream.
//!
//! Limits, all configurable: connections, in all and from one IP address (beyond either a
//! connection attempt is refused, [`super::address_limit`]),
//! requests in flight per connection (QUIC's stream limit, so a client that opens thousands
//! of streams is held back by flow control rather than served out of memory), frame size (a
//! larger request is answered `FrameTooLarge` and its stream stopped), QUIC's receive and
//! send windows, and the bytes of requests and responses in flight, for the node and per
//! connection ([`super::budget`]). A frame that does not decode is answered `InvalidRequest`
//! (or `UnknownApiKey`, `UnsupportedVersion`) on its own stream; the connection and every
//! other client carry on.
//!
//! Memory held for clients is then bounded by `in_flight_bytes_max` (frames being read and
//! processed, answers until the client acknowledged them, including while quinn holds them)
//! plus request bytes quinn has received and the node not yet read, at most
//! `connections_max` x `quic_connection_receive_window_bytes`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};
use tokio::sync::{Semaphore, watch};

use super::address_limit::{
    AddressLimit, CONNECTIONS_PER_ADDRESS_MAX_DEFAULT, REFUSAL_LOG_INTERVAL, RefusalLog,
    address_key,
};
use super::budget::{
    BudgetError, ConnectionBudget, IN_FLIGHT_BYTES_MAX_DEFAULT,
    IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT, InFlightBudget, Reservation,
};
use super::client_auth::ClientAuthenticator;
use super::sasl::{Admission, ConnectionAuth};
use super::tls::ServerTls;
use crate::broker::Broker;
use crate::cluster::peer::{CLOSE_PEER_REFUSED, PEER_ALPN, PeerService};
use crate::security::identity::ClientIdentity;
use crate::security::quota::{
    ClientQuotaManager, PrincipalLimitReached, PrincipalPermit, QuotaKind,
};
use crate::security::sasl::SaslServer;
use crate::storage::Disk;
use crate::wasm::fuel_budget::FuelAccount;

/// QUIC application close code: the client proved no identity and this node accepts no
/// anonymous clients (`[security] allow_anonymous = false`).
pub const CLOSE_AUTHENTICATION_REQUIRED: u32 = 0x4c10;
/// QUIC application close code: the client certificate verified but no
/// `[security] principal_mapping_rules` rule maps its subject.
pub const CLOSE_NO_PRINCIPAL: u32 = 0x4c11;
/// QUIC application close code: SASL authentication failed (after its answer was sent).
pub const CLOSE_AUTHENTICATION_FAILED: u32 = 0x4c12;
/// QUIC application close code: the connection's principal holds its
/// `security.connections_per_principal_max` connections already.
pub const CLOSE_PRINCIPAL_LIMIT: u32 = 0x4c13;
/// Longest wait, after a failed SASL exchange, for the client to acknowledge the answer
/// before the connection is closed (closing drops what the client has not received).
pub const AUTHENTICATION_FAILURE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Transport limits (see docs/OPERATIONS.md).
#[derive(Clone, Debug)]
pub struct TransportLimits {
    /// Most open connections.
    pub connections_max: usize,
    /// Most open connections from one IP address (`limits.connections_per_address_max`),
    /// counted from the first packet, as `connections_max` is.
    pub connections_per_address_max: usize,
    /// Most requests (streams) in flight per connection.
    pub requests_in_flight_per_connection_max: u32,
    /// Largest request frame.
    pub frame_bytes_max: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// UDP socket send and receive buffer size.
    pub udp_buffer_bytes: usize,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Most bytes of requests and responses in flight in the whole node (a request's frame
    /// from its first byte read, its response until the client acknowledged it).
    pub in_flight_bytes_max: u64,
    /// Most of those bytes one connection may hold, so that a client that never reads its
    /// answers cannot starve the others.
    pub in_flight_bytes_per_connection_max: u64,
    /// QUIC flow-control window of one request stream: how much of a frame the client may
    /// send before the node has read it.
    pub quic_stream_receive_window_bytes: u32,
    /// QUIC flow-control window of a whole connection, over all its streams.
    pub quic_connection_receive_window_bytes: u32,
    /// Most response bytes quinn buffers per connection before the client acknowledges them.
    pub quic_send_window_bytes: u32,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            connections_per_address_max: CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
            requests_in_flight_per_connection_max: 256,
            frame_bytes_max: wire::FRAME_BYTES_MAX_DEFAULT,
            idle_timeout: Duration::from_secs(60),
            udp_buffer_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            in_flight_bytes_max: IN_FLIGHT_BYTES_MAX_DEFAULT,
            in_flight_bytes_per_connection_max: IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT,
            quic_stream_receive_window_bytes: 8 * 1024 * 1024,
            quic_connection_receive_window_bytes: 32 * 1024 * 1024,
            quic_send_window_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Binding or configuring the UDP socket failed.
    // The OS error is part of the message and deliberately not a `source`: printed as a
    // chain (`{:#}`), it would otherwise appear twice.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A bound QUIC listener.
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    limits: TransportLimits,
    /// Serves connections on the peer ALPN; `None` outside a cluster.
    peers: Option<Arc<PeerService>>,
    /// Client certificates and anonymous access; `None`: every client is anonymous and
    /// allowed (tests, tools).
    client_auth: Option<Arc<ClientAuthenticator>>,
    /// SASL on client connections; `None`: SASL off (a SaslHandshake is answered
    /// `UnsupportedSaslMechanism`).
    sasl: Option<Arc<SaslServer>>,
    /// Client quotas and per-principal connection limits; `None`: none enforced.
    quotas: Option<Arc<ClientQuotaManager>>,
}

impl QuicServer {
    /// Binds the UDP socket and sets up TLS 1.3 with ALPN `ledge/1`: [`bind_socket`],
    /// [`server_config`] and [`QuicServer::new`] in one call.
    ///
    /// `reset_key` must stay the same across restarts (see [`load_or_create_reset_key`]): a
    /// restarted node can then reset clients' old connections at once instead of leaving
    /// them to their idle timeout.
    pub fn bind(
        addr: SocketAddr,
        tls: ServerTls,
        limits: TransportLimits,
        reset_key: [u8; 32],
    ) -> Result<Self, TransportError> {
        let socket = bind_socket(addr, &limits)?;
        let config = server_config(tls, &limits)?;
        Self::new(socket, config, limits, reset_key)
    }

    /// Starts QUIC on a socket from [`bind_socket`] with a config from [`server_config`].
    /// The node binds first and opens its data directory after, so a busy port is reported
    /// before anything is written there (issue 11, bug 2).
    pub fn new(
        socket: std::net::UdpSocket,
        config: quinn::ServerConfig,
        limits: TransportLimits,
        reset_key: [u8; 32],
    ) -> Result<Self, TransportError> {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_key);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key)),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|cause| TransportError::Bind { addr, cause })?;
        Ok(Self {
            endpoint,
            limits,
            peers: None,
            client_auth: None,
            sasl: None,
            quotas: None,
        })
    }

    /// Enforces the node's client quotas (shared with the Kafka listener): a Produce's or
    /// Fetch's answer over its principal's byte rate goes out at once with the throttle time
    /// in its `throttle_time_ms` (KIP-219), and the connection's next request of that kind
    /// waits until that time has passed (a client that ignores the field just waits); a
    /// principal past
    /// `security.connections_per_principal_max` has the connection closed
    /// ([`CLOSE_PRINCIPAL_LIMIT`]).
    pub fn with_quotas(mut self, quotas: Arc<ClientQuotaManager>) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// Identifies clients with `client_auth` (their verified certificates, mapped to
    /// principals) and refuses anonymous ones it does not allow. The server config must
    /// come from [`client_auth_server_config`] with the same authenticator.
    pub fn with_client_auth(mut self, client_auth: Arc<ClientAuthenticator>) -> Self {
        self.client_auth = Some(client_auth);
        self
    }

    /// Lets client connections authenticate with SASL (`transport/sasl.rs`): an anonymous
    /// connection may then go on where anonymous clients are not allowed, limited to the
    /// SASL requests and ApiVersions until it authenticated.
    pub fn with_sasl(mut self, sasl: Arc<SaslServer>) -> Self {
        self.sasl = Some(sasl);
        self
    }

    /// Serves peer connections (ALPN `ledge-peer/0`) with `peers`; the server config must
    /// come from [`cluster_server_config`] so that peers can present certificates.
    pub fn with_peers(mut self, peers: Arc<PeerService>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The endpoint, for dialing peers from the node's own address and port.
    pub fn endpoint(&self) -> quinn::Endpoint {
        self.endpoint.clone()
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves until `shutdown` turns true, then stops accepting, waits up to the grace
    /// period for requests in flight, and closes every connection.
    pub async fn serve<D: Disk>(self, broker: Arc<Broker<D>>, mut shutdown: watch::Receiver<bool>) {
        let connections = Arc::new(Semaphore::new(self.limits.connections_max));
        let per_address = AddressLimit::new(self.limits.connections_per_address_max);
        let refused_per_address = RefusalLog::new(REFUSAL_LOG_INTERVAL);
        let refused_node_wide = RefusalLog::new(REFUSAL_LOG_INTERVAL);
        let budget = InFlightBudget::new(
            self.limits.in_flight_bytes_max,
            self.limits.in_flight_bytes_per_connection_max,
        );
        // Requests being served; shutdown waits for it to reach 0 (a watch, so nothing polls).
        let in_flight = Arc::new(watch::Sender::new(0usize));
        let limits = Arc::new(self.limits.clone());
        loop {
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => incoming,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Some(incoming) = incoming else { break };
            let remote = incoming.remote_address();
            let address_permit = match per_address.try_acquire(address_key(remote)) {
                Ok(permit) => permit,
                Err(reached) => {
                    if let Some(suppressed) = refused_per_address.admit(broker.clock().now()) {
                        tracing::warn!(%remote, limit = reached.max, suppressed, "connection refused: limits.connections_per_address_max reached for this address");
                    }
                    incoming.refuse();
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                if let Some(suppressed) = refused_node_wide.admit(broker.clock().now()) {
                    tracing::warn!(%remote, limit = self.limits.connections_max, suppressed, "connection refused: limits.connections_max reached");
                }
                incoming.refuse();
                continue;
            };
            let broker = Arc::clone(&broker);
            let in_flight = Arc::clone(&in_flight);
            let limits = Arc::clone(&limits);
            let shutdown = shutdown.clone();
            let budget = budget.connection();
            let peers = self.peers.clone();
            let client_auth = self.client_auth.clone();
            let sasl = self.sasl.clone();
            let audit = broker.audit_log().cloned();
            let quotas = self.quotas.clone();
            tokio::spawn(async move {
                let _permits = (permit, address_permit);
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(error) => {
                        log_handshake_failure(remote, &error, audit.as_deref());
                        return;
                    }
                };
                if negotiated_alpn(&connection).as_deref() == Some(PEER_ALPN) {
                    match peers {
                        Some(peers) => peers.serve_connection(connection, shutdown).await,
                        None => {
                            tracing::warn!(%remote, "peer connection refused: this node has no [cluster] section");
                            connection
                                .close(CLOSE_PEER_REFUSED.into(), b"this node is not in a cluster");
                        }
                    }
                    return;
                }
                let Some(auth) = identify(&connection, client_auth.as_deref(), sasl, audit) else {
                    return;
                };
                serve_connection(
                    connection,
                    Arc::new(std::sync::Mutex::new(auth)),
                    Arc::new(ConnectionQuota::new(quotas)),
                    broker,
                    in_flight,
                    limits,
                    budget,
                    shutdown,
                )
                .await;
            });
        }
        // Graceful: no new connections or streams; let requests in flight finish.
        self.endpoint.set_server_config(None);
        let clock = broker.clock();
        let unfinished = wait_for_requests(&*clock, self.limits.shutdown_grace, &in_flight).await;
        if unfinished > 0 {
            tracing::warn!(
                requests = unfinished,
                grace_ms = self.limits.shutdown_grace.as_millis(),
                "shutdown grace over; closing connections with requests unanswered"
            );
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ =
            crate::clock::timeout(&*clock, Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Waits until no request is in flight or `grace` has passed on `clock`; returns how many
/// requests were still in flight (0 when they all finished).
async fn wait_for_requests(
    clock: &dyn crate::clock::Clock,
    grace: Duration,
    in_flight: &watch::Sender<usize>,
) -> usize {
    let mut requests = in_flight.subscribe();
    let drained = requests.wait_for(|count| *count == 0);
    let _ = crate::clock::timeout(clock, grace, drained).await;
    *in_flight.borrow()
}

/// Binds the listener's UDP socket (with enlarged buffers: loopback drops datagrams at full
/// rate with the defaults). Needs no disk, so the node does it before touching its data
/// directory.
pub fn bind_socket(
    addr: SocketAddr,
    limits: &TransportLimits,
) -> Result<std::net::UdpSocket, TransportError> {
    let bind_error = |cause| TransportError::Bind { addr, cause };
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(bind_error)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(limits.udp_buffer_bytes);
    let _ = socket.set_send_buffer_size(limits.udp_buffer_bytes);
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    Ok(socket.into())
}

/// The QUIC server config: TLS 1.3 only, ALPN `ledge/1`, the transport limits. Refuses a
/// key that does not fit the certificate, before the node touches its data directory.
pub fn server_config(
    tls: ServerTls,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    server_config_with(tls, limits, None)
}

/// The QUIC server config of a cluster node: as [`server_config`], plus the peer ALPN
/// `ledge-peer/0` and client certificates checked against the cluster CA `roots`.
///
/// One endpoint serves both ALPNs, so the client-certificate verifier must let clients
/// without a certificate through (`ledge/1` never needed one); a certificate that is
/// presented must lead to the cluster CA or the handshake fails. On the peer ALPN the
/// certificate is then required and its node id checked ([`PeerService`]).
pub fn cluster_server_config(
    tls: ServerTls,
    roots: Arc<rustls::RootCertStore>,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    server_config_with(tls, limits, Some(roots))
}

/// The QUIC server config with client certificates as `client_auth` says
/// (`[security] client_auth`, `client_ca`, `client_crls`); with `peer_roots` (a cluster
/// node), also the peer ALPN, and peers' certificates trusted beside the client CA.
pub fn client_auth_server_config(
    tls: ServerTls,
    limits: &TransportLimits,
    client_auth: &ClientAuthenticator,
    peer_roots: Option<&rustls::RootCertStore>,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier = client_auth
        .verifier(peer_roots)
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let peer_alpn = peer_roots.is_some();
    server_config_verified(tls, limits, verifier, peer_alpn)
}

fn server_config_with(
    tls: ServerTls,
    limits: &TransportLimits,
    peer_roots: Option<Arc<rustls::RootCertStore>>,
) -> Result<quinn::ServerConfig, TransportError> {
    let verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>> = match &peer_roots {
        None => None,
        Some(roots) => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(roots),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|error| TransportError::Tls(error.to_string()))?,
            )
        }
    };
    server_config_verified(tls, limits, verifier, peer_roots.is_some())
}

fn server_config_verified(
    tls: ServerTls,
    limits: &TransportLimits,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    peer_alpn: bool,
) -> Result<quinn::ServerConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let mut alpn = vec![wire::ALPN.to_vec()];
    if peer_alpn {
        alpn.push(PEER_ALPN.to_vec());
    }
    let builder = match verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut crypto = builder
        .with_single_cert(tls.chain, tls.key)
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    crypto.alpn_protocols = alpn;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.requests_in_flight_per_connection_max.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(limits.idle_timeout.try_into().ok())
        .stream_receive_window(limits.quic_stream_receive_window_bytes.into())
        .receive_window(limits.quic_connection_receive_window_bytes.into())
        .send_window(limits.quic_send_window_bytes.into());
    server_config.transport_config(Arc::new(transport));
    Ok(server_config)
}

/// The key for QUIC stateless resets, kept in `<data-dir>/quic-reset.key` (created once,
/// mode 0600, written durably). On a read-only data directory without one, a key for this
/// run only is used (clients of the previous run then wait for their idle timeout).
pub fn load_or_create_reset_key(
    data_dir: &std::path::Path,
) -> Result<[u8; 32], crate::storage::DiskError> {
    use crate::storage::DiskError;
    let path = data_dir.join("quic-reset.key");
    match std::fs::read(&path) {
        Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(key) => return Ok(key),
            Err(_) => tracing::warn!(
                path = %path.display(),
                bytes = bytes.len(),
                "reset key has the wrong size; replacing it"
            ),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(DiskError::new("read", &path, error)),
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).map_err(|_| {
        DiskError::new(
            "generate",
            &path,
            std::io::Error::other("the system random generator failed"),
        )
    })?;
    match crate::storage::disk::durable::write_file_durable(&path, &key, 0o600) {
        Ok(()) => Ok(key),
        Err(error) if error.cause.raw_os_error() == Some(libc::EROFS) => {
            tracing::warn!(%error, "read-only data directory: using a QUIC reset key for this run only");
            Ok(key)
        }
        Err(error) => Err(error),
    }
}

/// The ALPN protocol the handshake settled on.
fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    connection
        .handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

/// A handshake this node refused on TLS grounds (a certificate not from the cluster CA, no
/// common ALPN) is a misconfiguration worth a warning; lost or timed-out handshakes are not.
/// A client certificate this node refused (see [`refused_certificate_alert`]) is also an
/// authentication failure in the audit log.
fn log_handshake_failure(
    remote: SocketAddr,
    error: &quinn::ConnectionError,
    audit: Option<&crate::security::audit::AuditLog>,
) {
    // QUIC carries TLS alerts as transport error codes 0x100..=0x1ff (RFC 9001, 4.8).
    let alert = match error {
        quinn::ConnectionError::TransportError(transport) => {
            let code = u64::from(transport.code);
            (0x100..=0x1ff).contains(&code).then(|| code - 0x100)
        }
        _ => None,
    };
    match alert {
        Some(alert) => {
            tracing::warn!(%remote, %error, "connection refused in the TLS handshake");
            if let Some(reason) = refused_certificate_alert(alert) {
                crate::security::audit::record(
                    audit,
                    &crate::security::audit::AuditEvent::authentication_failure(
                        crate::security::audit::AuditListener::Quic,
                        remote.ip(),
                        None,
                        "certificate",
                        reason,
                    ),
                );
            }
        }
        None => tracing::debug!(%remote, %error, "handshake failed"),
    }
}

/// Why a client certificate was refused, for the TLS alert this node sent (RFC 8446, 6.2):
/// the alerts rustls's client-certificate verifier ends a handshake with; `None` for other
/// alerts (no common ALPN, a protocol error).
pub fn refused_certificate_alert(alert: u64) -> Option<&'static str> {
    Some(match alert {
        42 => "client certificate refused: bad certificate",
        43 => "client certificate refused: unsupported certificate",
        44 => "client certificate refused: revoked",
        45 => "client certificate refused: expired or not yet valid",
        46 => "client certificate refused: unknown or unusable",
        48 => "client certificate refused: not issued by security.client_ca",
        49 => "client certificate refused: access denied",
        51 => "client certificate refused: its signature does not verify",
        116 => "no client certificate, and security.client_auth = \"required\"",
        _ => return None,
    })
}

/// The authentication state a client connection starts with (its verified certificate's
/// principal, or anonymous); `None` after closing a connection that may not go on: a
/// certificate whose subject no rule maps, or an anonymous client where none is allowed and
/// SASL is off.
fn identify(
    connection: &quinn::Connection,
    client_auth: Option<&ClientAuthenticator>,
    sasl: Option<Arc<SaslServer>>,
    audit: Option<Arc<crate::security::audit::AuditLog>>,
) -> Option<ConnectionAuth> {
    let remote = connection.remote_address();
    let Some(client_auth) = client_auth else {
        return Some(
            ConnectionAuth::new(ClientIdentity::anonymous(remote.ip()), true, sasl)
                .with_audit(audit),
        );
    };
    let audit_failure = |reason: &str| {
        crate::security::audit::record(
            audit.as_deref(),
            &crate::security::audit::AuditEvent::authentication_failure(
                crate::security::audit::AuditListener::Quic,
                remote.ip(),
                None,
                "certificate",
                reason,
            ),
        );
    };
    let anonymous_allowed = client_auth.anonymous_allowed();
    let certificates = connection.peer_identity().and_then(|identity| {
        identity
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
    });
    match client_auth.identify(certificates.as_deref().map(Vec::as_slice), remote.ip()) {
        Ok(identity)
            if ConnectionAuth::may_start(&identity, anonymous_allowed, sasl.as_deref()) =>
        {
            tracing::debug!(%remote, principal = %identity.principal, method = ?identity.method, "client identified");
            Some(ConnectionAuth::new(identity, anonymous_allowed, sasl).with_audit(audit.clone()))
        }
        Ok(_) => {
            tracing::info!(%remote, "connection closed: anonymous clients are not allowed ([security] allow_anonymous = false), SASL is off and it presented no client certificate");
            audit_failure(
                "no client certificate; anonymous clients are not allowed and SASL is off",
            );
            connection.close(
                CLOSE_AUTHENTICATION_REQUIRED.into(),
                b"authentication required: this node accepts no anonymous clients; present a client certificate (--cert FILE --key FILE)",
            );
            None
        }
        Err(error) => {
            // The subject is in the certificate, not a secret; it says which rule is missing.
            tracing::warn!(%remote, %error, "connection closed: client certificate maps to no principal");
            audit_failure(&error.to_string());
            connection.close(
                CLOSE_NO_PRINCIPAL.into(),
                b"client certificate refused: its subject maps to no principal ([security] principal_mapping_rules)",
            );
            None
        }
    }
}

/// One connection's share of the client quotas: its principal's connection slot and until
/// when its Produce and its Fetch requests are throttled (apart: a connection shared by a
/// producer and a consumer, as the SDK's is, keeps fetching while its produce quota is
/// spent, and the reverse).
struct ConnectionQuota {
    quotas: Option<Arc<ClientQuotaManager>>,
    state: std::sync::Mutex<QuotaState>,
}

#[derive(Default)]
struct QuotaState {
    /// The authenticated principal holding a slot (`None` inside: not counted).
    slot: Option<(ClientIdentity, Option<PrincipalPermit>)>,
    /// No Produce of the connection is served before this time of the clock's.
    produce_muted_until: Option<std::time::Instant>,
    /// No Fetch of the connection is served before this time of the clock's.
    fetch_muted_until: Option<std::time::Instant>,
}

impl QuotaState {
    fn muted_until(&mut self, kind: QuotaKind) -> &mut Option<std::time::Instant> {
        match kind {
            QuotaKind::Produce => &mut self.produce_muted_until,
            QuotaKind::Fetch => &mut self.fetch_muted_until,
        }
    }
}

impl ConnectionQuota {
    fn new(quotas: Option<Arc<ClientQuotaManager>>) -> Self {
        Self {
            quotas,
            state: std::sync::Mutex::new(QuotaState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QuotaState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the principal's connection slot the first time `identity` is authenticated
    /// (again if it changed); the error when the principal holds its limit already.
    fn admit(&self, identity: &ClientIdentity) -> Result<(), PrincipalLimitReached> {
        let Some(quotas) = &self.quotas else {
            return Ok(());
        };
        let mut state = self.state();
        if !identity.is_authenticated()
            || state
                .slot
                .as_ref()
                .is_some_and(|(held, _)| held.principal == identity.principal)
        {
            return Ok(());
        }
        state.slot = None;
        let permit = quotas.connect(identity)?;
        state.slot = Some((identity.clone(), permit));
        Ok(())
    }

    /// Until when the connection's requests of `kind` wait (`None`: never throttled).
    fn muted_until(&self, kind: QuotaKind) -> Option<std::time::Instant> {
        *self.state().muted_until(kind)
    }

    /// Records `bytes` of `kind` for `identity` and returns the throttle time, muting the
    /// connection's requests of `kind` until it has passed.
    fn record(
        &self,
        identity: &ClientIdentity,
        kind: QuotaKind,
        bytes: usize,
        now: std::time::Instant,
    ) -> Duration {
        let Some(quotas) = &self.quotas else {
            return Duration::ZERO;
        };
        let throttle = quotas.record(identity, kind, bytes as u64, now);
        if !throttle.is_zero() {
            let until = crate::clock::deadline_after(now, throttle);
            let mut state = self.state();
            let muted = state.muted_until(kind);
            *muted = Some(muted.map_or(until, |muted| muted.max(until)));
        }
        throttle
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the connection's own state and the listener's shared parts, each passed once"
)]
async fn serve_connection<D: Disk>(
    connection: quinn::Connection,
    auth: Arc<std::sync::Mutex<ConnectionAuth>>,
    quota: Arc<ConnectionQuota>,
    broker: Arc<Broker<D>>,
    in_flight: Arc<watch::Sender<usize>>,
    limits: Arc<TransportLimits>,
    budget: ConnectionBudget,
    mut shutdown: watch::Receiver<bool>,
) {
    let _count = crate::metrics::ConnectionCount::open(&crate::metrics::node().connections.quic);
    loop {
        let stream = tokio::select! {
            stream = connection.accept_bi() => stream,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (send, receive) = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // The path figures explain throughput and latency from outside the process.
                let stats = connection.stats();
                tracing::debug!(
                    remote = %connection.remote_address(),
                    %error,
                    rtt_us = stats.path.rtt.as_micros(),
                    cwnd = stats.path.cwnd,
                    congestion_events = stats.path.congestion_events,
                    lost_packets = stats.path.lost_packets,
                    sent_packets = stats.path.sent_packets,
                    udp_sent_datagrams = stats.udp_tx.datagrams,
                    udp_received_datagrams = stats.udp_rx.datagrams,
                    "connection ended"
                );
                return;
            }
        };
        in_flight.send_modify(|count| *count += 1);
        let broker = Arc::clone(&broker);
        let in_flight = Arc::clone(&in_flight);
        let limits = Arc::clone(&limits);
        let budget = budget.clone();
        let auth = Arc::clone(&auth);
        let quota = Arc::clone(&quota);
        let connection = connection.clone();
        tokio::spawn(async move {
            let shared = StreamShared {
                connection: &connection,
                auth: &auth,
                quota: &quota,
            };
            let answered = serve_stream(send, receive, shared, &broker, &limits, &budget).await;
            in_flight.send_modify(|count| *count -= 1);
            // The answer's bytes stay counted until the client has acknowledged them: quinn
            // holds them until then, and a client that never reads keeps them there.
            if let Some((send, reservation)) = answered {
                let _ = send.stopped().await;
                drop(reservation);
            }
        });
    }
}

/// The fuel account a request's plug-in calls draw on: its principal's (or anonymous
/// address's) for a fetch naming a plug-in; no other request runs a fetch plug-in, so the
/// others take the node's account alone without looking up the principal.
fn fetch_fuel_account<D: Disk>(
    broker: &Broker<D>,
    identity: &ClientIdentity,
    request: &Request,
) -> FuelAccount {
    match request {
        Request::Fetch(fetch) if fetch.plugin.is_some() => {
            broker.plugins().fetch_fuel_account(identity)
        }
        _ => broker.plugins().node_fetch_fuel(),
    }
}

/// What a request stream reserves before its first byte is read: most requests are smaller,
/// so one reservation covers them whole, and a stream that sends nothing holds little.
const REQUEST_FIRST_BYTES: usize = 16 * 1024;

/// What every request stream of one client connection shares.
struct StreamShared<'a> {
    connection: &'a quinn::Connection,
    /// The connection's authentication state (`transport/sasl.rs`).
    auth: &'a std::sync::Mutex<ConnectionAuth>,
    /// The connection's share of the client quotas.
    quota: &'a ConnectionQuota,
}

/// Reads, answers and writes one request; returns the stream and the reservation that
/// covers the answer, to be held until the client has acknowledged it.
async fn serve_stream<D: Disk>(
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    shared: StreamShared<'_>,
    broker: &Broker<D>,
    limits: &TransportLimits,
    budget: &ConnectionBudget,
) -> Option<(quinn::SendStream, Reservation)> {
    let StreamShared {
        connection,
        auth,
        quota,
    } = shared;
    let frame = match read_frame(&mut receive, limits, budget).await {
        Ok(frame) => frame,
        Err(ReadFrameError::Refused { code, message }) => {
            let _ = receive.stop(0u32.into());
            respond(
                &mut send,
                vec![wire::encode_error_response(0, code, &message)],
            )
            .await;
            return None;
        }
        Err(ReadFrameError::Stream(error)) => {
            tracing::debug!(%error, "request stream failed before its end");
            return None;
        }
    };
    let (frame, mut reservation) = frame;
    let reply = match wire::decode_request(frame) {
        Ok((header, request)) => {
            // Admitted one at a time against the connection's state: a request on a stream
            // opened while an exchange runs never slips through with a stale identity.
            // A SaslAuthenticate may cost milliseconds of CPU (PLAIN is one PBKDF2): the
            // runtime is told, as the Kafka listener does.
            let admit = || {
                auth.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .admit(&request)
            };
            let admission = if matches!(request, Request::SaslAuthenticate(_)) {
                crate::kafka::connection::costly(admit)
            } else {
                admit()
            };
            let identity = match admission {
                Admission::Serve(identity) => identity,
                Admission::Answer(response) => {
                    let reply = wire::encode_response_frame(header.correlation_id, &response);
                    respond(&mut send, reply.into_chunks()).await;
                    return Some((send, reservation));
                }
                Admission::AnswerAndClose(response) => {
                    let reply = wire::encode_response_frame(header.correlation_id, &response);
                    respond(&mut send, reply.into_chunks()).await;
                    // The client should read the answer before the connection goes.
                    let clock = broker.clock();
                    let _ = crate::clock::timeout(
                        &*clock,
                        AUTHENTICATION_FAILURE_CLOSE_WAIT,
                        send.stopped(),
                    )
                    .await;
                    connection.close(
                        CLOSE_AUTHENTICATION_FAILED.into(),
                        b"SASL authentication failed",
                    );
                    return None;
                }
                Admission::Refuse { code, message } => {
                    tracing::debug!(remote = %connection.remote_address(), ?code, api = ?request.api_key(), "request refused before authentication");
                    crate::metrics::node().requests.record_native(
                        request.api_key(),
                        crate::metrics::Outcome::Refused,
                        Duration::ZERO,
                    );
                    let reply = vec![wire::encode_error_response(
                        header.correlation_id,
                        code,
                        &message,
                    )];
                    respond(&mut send, reply).await;
                    return Some((send, reservation));
                }
            };
            // A fetch's answer is reserved before it is read from disk, so that unread
            // answers cannot pile up beyond the budget while they are being built.
            let answer_bytes_expected = answer_bytes_expected(&request, limits);
            if answer_bytes_expected > reservation.bytes()
                && let Err(error) = reservation.resize(answer_bytes_expected)
            {
                tracing::debug!(%error, answer_bytes_expected, "request refused: bytes in flight");
                let message = format!("the answer may take {answer_bytes_expected} bytes: {error}");
                let reply = vec![wire::encode_error_response(
                    header.correlation_id,
                    budget_error_code(&error),
                    &message,
                )];
                respond(&mut send, reply).await;
                return Some((send, reservation));
            }
            if let Err(reached) = quota.admit(&identity) {
                tracing::warn!(remote = %connection.remote_address(), %reached, "connection closed: security.connections_per_principal_max reached for this principal");
                connection.close(CLOSE_PRINCIPAL_LIMIT.into(), reached.to_string().as_bytes());
                return None;
            }
            let api = request.api_key();
            let quota_kind = match api {
                ApiKey::Produce => Some(QuotaKind::Produce),
                ApiKey::Fetch => Some(QuotaKind::Fetch),
                _ => None,
            };
            // Throttled (an earlier answer of this kind over the quota): wait it out first,
            // this stream alone (each stream is its own task; other streams and connections
            // go on).
            if let Some(kind) = quota_kind
                && let Some(until) = quota.muted_until(kind)
            {
                broker.clock().sleep_until(until).await;
            }
            let request_bytes = reservation.bytes();
            let started = broker.clock().now();
            // What a fetch's plug-in calls may burn: its principal's bucket, shared by all the
            // principal's connections (wasm.fetch_fuel_per_principal_per_second); looked up
            // per request, as the identity may change (SASL re-authentication).
            let fuel = fetch_fuel_account(broker, &identity, &request);
            let handled = broker
                .handle_as(&identity, &header.client_id, request, &fuel)
                .await;
            crate::metrics::node().requests.record_native(
                api,
                if handled.is_ok() {
                    crate::metrics::Outcome::Ok
                } else {
                    crate::metrics::Outcome::Refused
                },
                broker.clock().now().saturating_duration_since(started),
            );
            let mut response = match handled {
                // A whole request refused by authorization whose answer has no message
                // field: the header carries the code and the text.
                Err(refusal) => {
                    let reply = vec![wire::encode_error_response(
                        header.correlation_id,
                        refusal.code,
                        &refusal.message,
                    )];
                    respond(&mut send, reply).await;
                    return Some((send, reservation));
                }
                Ok(Response::ApiVersions(mut versions)) => {
                    // The largest frame this connection can send: a frame over its share of
                    // bytes in flight is refused however large `frame_bytes_max` is.
                    let share = u32::try_from(budget.reservation_bytes_max()).unwrap_or(u32::MAX);
                    versions.frame_bytes_max = limits.frame_bytes_max.min(share);
                    Response::ApiVersions(versions)
                }
                Ok(other) => other,
            };
            // Record batches go out as their own chunks, straight from the read buffers.
            let mut chunks =
                wire::encode_response_frame(header.correlation_id, &response).into_chunks();
            // The request's frame is gone now; the reservation covers the answer instead.
            let answer_bytes = chunks.iter().map(Bytes::len).sum();
            if let Some(kind) = quota_kind {
                let bytes = match kind {
                    QuotaKind::Produce => request_bytes,
                    QuotaKind::Fetch => answer_bytes,
                };
                let throttle = quota.record(&identity, kind, bytes, broker.clock().now());
                if set_throttle_time(&mut response, throttle) {
                    // Answered at once with the throttle time (KIP-219); the connection's
                    // next request of this kind waits until it has passed (`muted_until`
                    // above).
                    // The field is fixed-width: the answer keeps the size just measured.
                    tracing::debug!(principal = %identity.principal, ?kind, throttle_ms = throttle.as_millis(), "client throttled: over its byte-rate quota");
                    chunks =
                        wire::encode_response_frame(header.correlation_id, &response).into_chunks();
                }
            }
            match reservation.resize(answer_bytes) {
                Ok(()) => chunks,
                Err(error) if answer_may_be_dropped(api) => {
                    tracing::debug!(%error, answer_bytes, "answer refused: bytes in flight");
                    vec![wire::encode_error_response(
                        header.correlation_id,
                        budget_error_code(&error),
                        &format!("the answer ({answer_bytes} bytes) was dropped: {error}"),
                    )]
                }
                Err(error) => {
                    // The request changed something: a retriable refusal would invite a
                    // retry that finds it done (or, without idempotence, does it twice). Its
                    // answer goes out over the budget; such answers are small, and the
                    // reservation already covers at least `REQUEST_FIRST_BYTES` of it.
                    tracing::debug!(%error, answer_bytes, ?api, "answer sent over the bytes-in-flight budget");
                    chunks
                }
            }
        }
        Err(error) => {
            tracing::debug!(%error, "refused a request frame");
            let correlation_id = error
                .header
                .as_ref()
                .map_or(0, |header| header.correlation_id);
            vec![wire::encode_error_response(
                correlation_id,
                error.code,
                &error.message,
            )]
        }
    };
    respond(&mut send, reply).await;
    Some((send, reservation))
}

/// Sets a Produce's or Fetch's `throttle_time_ms` to `throttle` (whole milliseconds, at most
/// `u32::MAX`); whether the answer changed (a throttle of zero, or another API, leaves it).
fn set_throttle_time(response: &mut Response, throttle: Duration) -> bool {
    let millis = u32::try_from(throttle.as_millis()).unwrap_or(u32::MAX);
    if millis == 0 {
        return false;
    }
    match response {
        Response::Produce(produce) => produce.throttle_time_ms = millis,
        Response::Fetch(fetch) => fetch.throttle_time_ms = millis,
        _ => return false,
    }
    true
}

enum ReadFrameError {
    /// Answer this and stop the stream.
    Refused { code: ErrorCode, message: String },
    /// The stream failed (reset, connection lost): nothing to answer.
    Stream(quinn::ReadError),
}

/// Reads a request frame to its stream's end, holding a reservation for every byte before
/// it is read (the frame has no length prefix: its size is only known at the end). The
/// buffer grows by doubling, and the reservation with it, so the reservation covers the
/// buffer's whole allocation and a frame is copied O(log n) times.
async fn read_frame(
    receive: &mut quinn::RecvStream,
    limits: &TransportLimits,
    budget: &ConnectionBudget,
) -> Result<(Bytes, Reservation), ReadFrameError> {
    let frame_bytes_max = limits.frame_bytes_max as usize;
    let reservation_bytes_max = frame_bytes_max.min(budget.reservation_bytes_max());
    let refused = |error: BudgetError| ReadFrameError::Refused {
        code: budget_error_code(&error),
        message: format!("request frame refused: {error}"),
    };
    let mut reservation = budget
        .reserve(REQUEST_FIRST_BYTES.min(reservation_bytes_max))
        .await
        .map_err(refused)?;
    let mut frame = Vec::with_capacity(reservation.bytes());
    loop {
        let held = reservation.bytes();
        if frame.len() == held && held < reservation_bytes_max {
            // Doubling, but never past what one reservation may hold: a frame between the
            // last power of two and the limit must still fit.
            let grown = (held * 2).clamp(1, reservation_bytes_max);
            reservation.resize(grown).map_err(refused)?;
            frame.reserve_exact(grown - frame.len());
        }
        let room = reservation.bytes() - frame.len();
        // With the reservation full, one more byte tells a frame that ends here from one
        // that would not fit.
        let chunk = match receive.read_chunk(room.max(1), true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => return Ok((Bytes::from(frame), reservation)),
            Err(error) => return Err(ReadFrameError::Stream(error)),
        };
        let length = frame.len() + chunk.len();
        if length > frame_bytes_max {
            return Err(ReadFrameError::Refused {
                code: ErrorCode::FrameTooLarge,
                message: format!(
                    "request frame exceeds limits.frame_bytes_max ({} bytes)",
                    limits.frame_bytes_max
                ),
            });
        }
        if length > reservation.bytes() {
            // Past the most one reservation may hold: refused, naming the limit.
            reservation.resize(length).map_err(refused)?;
        }
        frame.extend_from_slice(&chunk);
    }
}

/// The most bytes `request`'s answer can take, where that may be large (a fetch: its own
/// limits, and at most a frame); 0 for requests whose answers are small, which are counted
/// once built.
fn answer_bytes_expected(request: &Request, limits: &TransportLimits) -> usize {
    let Request::Fetch(fetch) = request else {
        return 0;
    };
    let partitions: u64 = fetch
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| u64::from(partition.partition_max_bytes))
        .sum();
    let bytes = partitions
        .min(u64::from(fetch.max_bytes))
        .min(u64::from(limits.frame_bytes_max));
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Whether an answer that does not fit in the budget may be dropped and the request refused
/// as retriable: only for requests that change nothing, so a retry is always safe.
fn answer_may_be_dropped(api: ApiKey) -> bool {
    match api {
        ApiKey::ApiVersions
        | ApiKey::Metadata
        | ApiKey::DescribeConfigs
        | ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::ListModules
        | ApiKey::DescribeTransforms
        | ApiKey::DescribeCluster
        | ApiKey::ListPartitionReassignments
        | ApiKey::DescribeUserScramCredentials
        | ApiKey::DescribeAcls
        | ApiKey::DescribeClientQuotas
        | ApiKey::SnapshotProgress
        | ApiKey::TableGet
        | ApiKey::TableScan => true,
        ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::AlterConfigs
        | ApiKey::InitProducerId
        | ApiKey::Produce
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::OffsetCommit
        | ApiKey::DeleteGroups
        | ApiKey::UploadModule
        | ApiKey::DeleteModule
        | ApiKey::DeployTransform
        | ApiKey::AlterTransform
        | ApiKey::ElectLeaders
        | ApiKey::AlterPartitionReassignments
        | ApiKey::DecommissionNode
        | ApiKey::CreatePartitions
        | ApiKey::FindCoordinator
        | ApiKey::AlterUserScramCredentials
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::AlterClientQuotas
        | ApiKey::Snapshot
        | ApiKey::SaslHandshake
        | ApiKey::SaslAuthenticate => false,
    }
}

/// The wire code for a refusal by the budget: a request or answer that can never fit is too
/// large; one that finds the budget spent by others may be retried.
fn budget_error_code(error: &BudgetError) -> ErrorCode {
    match error {
        BudgetError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        BudgetError::Exhausted { .. } => ErrorCode::TooManyRequests,
    }
}

async fn respond(send: &mut quinn::SendStream, mut reply: Vec<Bytes>) {
    // The client may have gone (acks=0 producers do not read): nothing to do then.
    if send.write_all_chunks(&mut reply).await.is_ok() {
        let _ = send.finish();
    }
}

#[cfg(test)]
mod tests;
