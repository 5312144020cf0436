//! The dialing side of peer RPC: one QUIC connection per peer, dialed from the node's own
//! endpoint with the node's certificate.
//!
//! The peer's certificate must lead to the cluster CA and name the expected node of this
//! cluster (`node-<id>.<cluster_id>.ledge.invalid`, checked by rustls as a server name), so
//! a node answering at a peer's address with another node's or another cluster's
//! certificate is refused in the handshake. A failed dial, or a connection that fails under
//! a request, delays the next dial by a back-off that doubles from
//! `cluster.peer_reconnect_backoff_min_ms` to `..._max_ms`, on the node's clock; an answered
//! request resets it. Each request is bounded by `cluster.peer_request_timeout_ms`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::frame::{self, FrameError, PeerRequestKind, PeerStatus, REQUEST_HEADER_BYTES};
use super::{CLOSE_PEER_REFUSED, PEER_ALPN, PeerLimits};
use crate::clock::{self, Clock};
use crate::cluster::NodeId;
use crate::cluster::identity::{ClusterTls, IdentityError, node_dns_name, provider};

/// The TLS side of dialing peers: the cluster CA as the only root, this node's certificate
/// as the client certificate, ALPN `ledge-peer/0`.
#[derive(Clone)]
pub struct PeerClientTls {
    config: quinn::ClientConfig,
    cluster_id: String,
}

impl std::fmt::Debug for PeerClientTls {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerClientTls")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

impl PeerClientTls {
    /// The dialing config for `tls`'s node. A peer silent for `limits.request_timeout` is
    /// taken as gone (QUIC idle timeout); keep-alives at a quarter of it keep a quiet but
    /// live connection open and find a restarted peer (it answers them with a reset).
    pub fn new(tls: &ClusterTls, limits: &PeerLimits) -> Result<Self, IdentityError> {
        let refused = |error: rustls::Error| IdentityError::Untrusted(error.to_string());
        let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(refused)?
            .with_root_certificates(tls.verifier()?.roots())
            .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(|error| IdentityError::KeyMismatch(error.to_string()))?;
        crypto.alpn_protocols = vec![PEER_ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|error| IdentityError::Untrusted(error.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_idle_timeout(limits.request_timeout.try_into().ok())
            .keep_alive_interval(Some(limits.request_timeout / 4));
        config.transport_config(Arc::new(transport));
        Ok(Self {
            config,
            cluster_id: tls.cluster_id.clone(),
        })
    }
}

#[cfg(test)]
impl PeerClientTls {
    /// A dialing config built by a test (to dial with a wrong or missing certificate).
    pub(crate) fn from_parts(config: quinn::ClientConfig, cluster_id: &str) -> Self {
        Self {
            config,
            cluster_id: cluster_id.to_string(),
        }
    }
}

/// Why a peer request got no answer from the peer's handler.
#[derive(Debug, thiserror::Error)]
pub enum PeerRequestError {
    /// The request is larger than `cluster.peer_frame_bytes_max`; nothing was sent.
    #[error("peer request of {bytes} bytes exceeds cluster.peer_frame_bytes_max ({max} bytes)")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: u32,
    },
    /// Dialing failed (unreachable, or the handshake refused: the peer's certificate does not
    /// name the expected node, or ours was refused).
    #[error("cannot connect to node {node} at {address}: {reason}")]
    Dial {
        /// The peer.
        node: NodeId,
        /// Its address.
        address: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The peer refused this node's connection after the handshake.
    #[error("node {node} refused the connection: {reason}")]
    Refused {
        /// The peer.
        node: NodeId,
        /// The peer's reason.
        reason: String,
    },
    /// The connection failed under the request.
    #[error("connection to node {node} failed: {reason}")]
    Connection {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// No answer within `cluster.peer_request_timeout_ms`.
    #[error("node {node} did not answer within {} ms (cluster.peer_request_timeout_ms)", after.as_millis())]
    Timeout {
        /// The peer.
        node: NodeId,
        /// The timeout.
        after: Duration,
    },
    /// The answer did not decode, or answered another request.
    #[error("node {node} sent an invalid answer: {reason}")]
    InvalidResponse {
        /// The peer.
        node: NodeId,
        /// What is wrong.
        reason: String,
    },
    /// The peer answered with an error status.
    #[error("node {node} answered {status:?}: {message}")]
    Remote {
        /// The peer.
        node: NodeId,
        /// The status.
        status: PeerStatus,
        /// The peer's message.
        message: String,
    },
}

#[derive(Default)]
struct DialState {
    connection: Option<quinn::Connection>,
    /// Consecutive failures since the last answered request.
    failures: u32,
    next_dial_at: Option<Instant>,
}

/// A link to a peer that is not QUIC: the whole-node simulator's network (`sim/multi.rs`)
/// carries each request to the peer's handlers and the answer back, with its delays, losses
/// and partitions. The client's timeout still bounds every request.
pub trait PeerLink: Send + Sync + 'static {
    /// Carries a request of `kind` to the peer and returns its answer.
    fn exchange(
        &self,
        kind: PeerRequestKind,
        body: Bytes,
    ) -> futures_util::future::BoxFuture<'static, Result<Bytes, PeerRequestError>>;
}

/// How a client reaches its peer.
enum Dial {
    /// QUIC from the node's endpoint.
    Quic {
        endpoint: quinn::Endpoint,
        tls: quinn::ClientConfig,
    },
    /// A simulated link.
    Link(Arc<dyn PeerLink>),
}

/// One connection to one peer, and requests over it.
pub struct PeerClient {
    node: NodeId,
    address: SocketAddr,
    server_name: String,
    dial: Dial,
    limits: PeerLimits,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<DialState>,
    next_request_id: AtomicU64,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerClient")
            .field("node", &self.node)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client of node `node` at `address`, dialing from `endpoint` (the node's own, so
    /// the connection comes from the node's address). Dials on the first request.
    pub fn new(
        endpoint: quinn::Endpoint,
        tls: &PeerClientTls,
        node: NodeId,
        address: SocketAddr,
        limits: PeerLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node,
            address,
            server_name: node_dns_name(&tls.cluster_id, node),
            dial: Dial::Quic {
                endpoint,
                tls: tls.config.clone(),
            },
            limits,
            clock,
            state: tokio::sync::Mutex::new(DialState::default()),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// A client of node `node` over a simulated `link` (the whole-node simulator).
    pub fn simulated(
        node: NodeId,
        address: SocketAddr,
        link: Arc<dyn PeerLink>,
        limits: PeerLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node,
            address,
            server_name: format!("node-{node}.simulated"),
            dial: Dial::Link(link),
            limits,
            clock,
            state: tokio::sync::Mutex::new(DialState::default()),
            next_request_id: AtomicU64::new(1),
        }
    }

    /// The peer's node id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Sends `body` as a request of `kind` and returns the handler's answer, within
    /// `cluster.peer_request_timeout_ms`.
    pub async fn request(
        &self,
        kind: PeerRequestKind,
        body: &[u8],
    ) -> Result<Bytes, PeerRequestError> {
        let frame_bytes_max = self.limits.frame_bytes_max;
        if REQUEST_HEADER_BYTES + body.len() > frame_bytes_max as usize {
            return Err(PeerRequestError::TooLarge {
                bytes: REQUEST_HEADER_BYTES + body.len(),
                max: frame_bytes_max,
            });
        }
        let timeout = self.limits.request_timeout;
        match clock::timeout(&*self.clock, timeout, self.exchange(kind, body)).await {
            Ok(answer) => answer,
            Err(clock::Elapsed) => Err(PeerRequestError::Timeout {
                node: self.node,
                after: timeout,
            }),
        }
    }

    /// The live connection, dialing (after the back-off) when there is none. The lock is
    /// held while dialing, so concurrent requests share one dial.
    pub async fn connection(&self) -> Result<quinn::Connection, PeerRequestError> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        if let Some(at) = state.next_dial_at {
            self.clock.sleep_until(at).await;
        }
        let Dial::Quic { endpoint, tls } = &self.dial else {
            return Err(PeerRequestError::Dial {
                node: self.node,
                address: self.address,
                reason: "a simulated link has no QUIC connection".to_owned(),
            });
        };
        let dialed = match endpoint.connect_with(tls.clone(), self.address, &self.server_name) {
            Ok(connecting) => connecting.await.map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match dialed {
            Ok(connection) => {
                tracing::debug!(node = self.node, address = %self.address, "peer dialed");
                state.connection = Some(connection.clone());
                Ok(connection)
            }
            Err(reason) => {
                self.note_failure(&mut state);
                tracing::debug!(node = self.node, address = %self.address, %reason, "peer dial failed");
                Err(PeerRequestError::Dial {
                    node: self.node,
                    address: self.address,
                    reason,
                })
            }
        }
    }

    async fn exchange(
        &self,
        kind: PeerRequestKind,
        body: &[u8],
    ) -> Result<Bytes, PeerRequestError> {
        if let Dial::Link(link) = &self.dial {
            return link.exchange(kind, Bytes::copy_from_slice(body)).await;
        }
        let connection = self.connection().await?;
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        let answer = self.exchange_on(&connection, kind, request_id, body).await;
        let mut state = self.state.lock().await;
        match &answer {
            Err(PeerRequestError::Refused { .. } | PeerRequestError::Connection { .. }) => {
                self.note_failure(&mut state);
            }
            _ => {
                state.failures = 0;
                state.next_dial_at = None;
            }
        }
        answer
    }

    async fn exchange_on(
        &self,
        connection: &quinn::Connection,
        kind: PeerRequestKind,
        request_id: u64,
        body: &[u8],
    ) -> Result<Bytes, PeerRequestError> {
        let lost = |error: quinn::ConnectionError| self.connection_error(error);
        let (mut send, mut receive) = connection.open_bi().await.map_err(lost)?;
        let frame = frame::encode_request(kind, request_id, body);
        let written = send.write_all(&frame).await;
        if let Err(error) = written {
            return Err(match error {
                quinn::WriteError::ConnectionLost(error) => lost(error),
                other => PeerRequestError::Connection {
                    node: self.node,
                    reason: other.to_string(),
                },
            });
        }
        let _ = send.finish();
        let frame_bytes_max = self.limits.frame_bytes_max;
        let bytes = match receive.read_to_end(frame_bytes_max as usize).await {
            Ok(bytes) => bytes,
            Err(quinn::ReadToEndError::TooLong) => {
                let _ = receive.stop(0u32.into());
                return Err(PeerRequestError::InvalidResponse {
                    node: self.node,
                    reason: format!(
                        "the answer exceeds cluster.peer_frame_bytes_max ({frame_bytes_max} bytes)"
                    ),
                });
            }
            Err(quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(error))) => {
                return Err(lost(error));
            }
            Err(quinn::ReadToEndError::Read(error)) => {
                return Err(PeerRequestError::Connection {
                    node: self.node,
                    reason: error.to_string(),
                });
            }
        };
        let invalid = |error: FrameError| PeerRequestError::InvalidResponse {
            node: self.node,
            reason: error.to_string(),
        };
        let response =
            frame::decode_response(Bytes::from(bytes), frame_bytes_max).map_err(invalid)?;
        if response.request_id != request_id {
            return Err(PeerRequestError::InvalidResponse {
                node: self.node,
                reason: format!(
                    "it answers request {} on the stream of request {request_id}",
                    response.request_id
                ),
            });
        }
        match response.status {
            PeerStatus::Ok => Ok(response.body),
            status => Err(PeerRequestError::Remote {
                node: self.node,
                status,
                message: String::from_utf8_lossy(&response.body).into_owned(),
            }),
        }
    }

    fn connection_error(&self, error: quinn::ConnectionError) -> PeerRequestError {
        match error {
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == CLOSE_PEER_REFUSED.into() =>
            {
                PeerRequestError::Refused {
                    node: self.node,
                    reason: String::from_utf8_lossy(&close.reason).into_owned(),
                }
            }
            other => PeerRequestError::Connection {
                node: self.node,
                reason: other.to_string(),
            },
        }
    }

    fn note_failure(&self, state: &mut DialState) {
        state.failures = state.failures.saturating_add(1);
        let wait = reconnect_backoff(
            state.failures,
            self.limits.reconnect_backoff_min,
            self.limits.reconnect_backoff_max,
        );
        state.next_dial_at = Some(clock::deadline_after(self.clock.now(), wait));
    }
}

/// The wait before the next dial after `failures` consecutive failures: `min` doubled per
/// failure after the first, at most `max`; none before the first failure.
pub fn reconnect_backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(31);
    min.saturating_mul(1u32 << doublings).min(max)
}
