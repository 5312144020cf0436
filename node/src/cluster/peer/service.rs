//! The accepting side of peer RPC: admission of peer connections and dispatch of their
//! requests to the handlers registered by kind.
//!
//! Admission happens after the TLS handshake, on a connection that negotiated the peer
//! ALPN. rustls has already checked that any client certificate leads to the cluster CA
//! (clients of `ledge/1` may present none); here the certificate is required, and the node
//! id is found in it ([`PeerVerifier::identify`]). Refused, each with one warning line and a
//! QUIC close carrying the reason ([`super::CLOSE_PEER_REFUSED`]): no certificate, a
//! certificate naming no node of this cluster, this node's own id (two nodes configured with
//! the same id), and a second live connection for a node id from another address (a
//! duplicate node id). A new connection from the address of a live one is the same node
//! restarted or redialing: it replaces the old one.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::{Semaphore, watch};

use super::frame::{
    self, FrameError, PeerRequestKind, PeerStatus, REQUEST_HEADER_BYTES, RESPONSE_HEADER_BYTES,
};
use super::{CLOSE_PEER_REFUSED, CLOSE_PEER_REPLACED, PeerLimits};
use crate::clock::Clock;
use crate::cluster::NodeId;
use crate::cluster::identity::{IdentityError, PeerVerifier};

/// A request from a peer, as a handler sees it.
#[derive(Clone, Debug)]
pub struct PeerRequest {
    /// The node that sent it, from its certificate.
    pub from: NodeId,
    /// What it asks for.
    pub kind: PeerRequestKind,
    /// The dialer's id for it.
    pub request_id: u64,
    /// The kind's own encoding.
    pub body: Bytes,
}

/// A handler's refusal or failure; the peer receives the message with
/// [`PeerStatus::HandlerFailed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeerHandlerError(pub String);

/// A kind already has a handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a handler for {0:?} is registered already")]
pub struct AlreadyRegistered(pub PeerRequestKind);

/// A handler's answer to come.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Bytes, PeerHandlerError>> + Send>>;
type Handler = Arc<dyn Fn(PeerRequest) -> HandlerFuture + Send + Sync>;

/// The handlers of peer requests, one per kind. Registered at any time (the controller may
/// start after the endpoint); a request of a kind with no handler is answered
/// [`PeerStatus::UnknownKind`].
#[derive(Default)]
pub struct PeerHandlers {
    handlers: RwLock<HashMap<PeerRequestKind, Handler>>,
}

impl std::fmt::Debug for PeerHandlers {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let handlers = self.handlers.read().unwrap_or_else(PoisonError::into_inner);
        formatter
            .debug_struct("PeerHandlers")
            .field("kinds", &handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PeerHandlers {
    /// Registers `handler` for `kind`.
    pub fn register<F, Answer>(
        &self,
        kind: PeerRequestKind,
        handler: F,
    ) -> Result<(), AlreadyRegistered>
    where
        F: Fn(PeerRequest) -> Answer + Send + Sync + 'static,
        Answer: Future<Output = Result<Bytes, PeerHandlerError>> + Send + 'static,
    {
        let mut handlers = self
            .handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if handlers.contains_key(&kind) {
            return Err(AlreadyRegistered(kind));
        }
        let handler: Handler = Arc::new(move |request| Box::pin(handler(request)));
        handlers.insert(kind, handler);
        Ok(())
    }

    /// Answers `request` with its kind's handler, as the service does for a request off the
    /// network (the whole-node simulator delivers requests here): `None` if no handler is
    /// registered for the kind.
    pub fn answer(&self, request: PeerRequest) -> Option<HandlerFuture> {
        let handler = self.handler(request.kind)?;
        Some(handler(request))
    }

    fn handler(&self, kind: PeerRequestKind) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kind)
            .cloned()
    }
}

/// Why a peer connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefusal {
    /// The peer ALPN without a client certificate.
    #[error(
        "no client certificate: a node certificate signed by the cluster CA is required on ledge-peer/0"
    )]
    NoCertificate,
    /// The certificate does not name a node of this cluster.
    #[error("certificate refused: {0}")]
    Identity(#[from] IdentityError),
    /// The certificate names this node.
    #[error(
        "the peer's certificate names this node's own id {0}: two nodes share that id, or a node dialed itself"
    )]
    OwnNodeId(NodeId),
    /// Another live connection holds the node id.
    #[error(
        "duplicate node id {node}: node {node} is already connected from {existing}; refusing a second connection from another address"
    )]
    Duplicate {
        /// The node id claimed twice.
        node: NodeId,
        /// Where the live connection comes from.
        existing: SocketAddr,
    },
}

/// The accepting side of peer RPC for one node.
pub struct PeerService {
    node_id: NodeId,
    members: Vec<NodeId>,
    verifier: PeerVerifier,
    handlers: Arc<PeerHandlers>,
    limits: PeerLimits,
    clock: Arc<dyn Clock>,
    connected: Mutex<HashMap<NodeId, quinn::Connection>>,
}

impl std::fmt::Debug for PeerService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerService")
            .field("node_id", &self.node_id)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl PeerService {
    /// The service of node `node_id` in a cluster of `members`, trusting `verifier`'s CA.
    pub fn new(
        node_id: NodeId,
        members: Vec<NodeId>,
        verifier: PeerVerifier,
        handlers: Arc<PeerHandlers>,
        limits: PeerLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            node_id,
            members,
            verifier,
            handlers,
            limits,
            clock,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// The handler registry requests are dispatched to.
    pub fn handlers(&self) -> &Arc<PeerHandlers> {
        &self.handlers
    }

    /// The cluster CA as a root store, for the listener's client-certificate verifier.
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        self.verifier.roots()
    }

    /// Nodes with a live inbound connection, by id.
    pub fn connected_nodes(&self) -> Vec<NodeId> {
        let connected = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut nodes: Vec<NodeId> = connected
            .iter()
            .filter(|(_, connection)| connection.close_reason().is_none())
            .map(|(node, _)| *node)
            .collect();
        nodes.sort_unstable();
        nodes
    }

    /// Serves a connection that negotiated the peer ALPN until it ends or `shutdown` turns
    /// true: admits it or refuses it, then answers each request stream.
    pub async fn serve_connection(
        self: Arc<Self>,
        connection: quinn::Connection,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let remote = connection.remote_address();
        let node = match self.admit(&connection) {
            Ok(node) => node,
            Err(refusal) => {
                tracing::warn!(%remote, "peer connection refused: {refusal}");
                let reason = refusal.to_string();
                // A QUIC close reason must fit in one packet; the log line has it whole.
                let reason = reason.as_bytes();
                let reason = reason
                    .get(..reason.len().min(REFUSAL_REASON_BYTES_MAX))
                    .unwrap_or(reason);
                connection.close(CLOSE_PEER_REFUSED.into(), reason);
                return;
            }
        };
        tracing::info!(node, %remote, "peer connected");
        // Request bytes this connection holds; a stream waits for room before reading its
        // body, so a peer that sends faster than handlers answer is held back by QUIC flow
        // control instead of filling memory.
        let permits = usize::try_from(self.limits.in_flight_bytes_per_connection_max)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let budget = Arc::new(Semaphore::new(permits));
        loop {
            let stream = tokio::select! {
                stream = connection.accept_bi() => stream,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (send, receive) = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::info!(node, %remote, %error, "peer connection ended");
                    break;
                }
            };
            let service = Arc::clone(&self);
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { service.serve_stream(node, send, receive, budget).await });
        }
        let mut connected = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connected
            .get(&node)
            .is_some_and(|live| live.stable_id() == connection.stable_id())
        {
            connected.remove(&node);
        }
    }

    /// Finds the node id in the connection's certificate and records the connection, or
    /// says why it is refused.
    fn admit(&self, connection: &quinn::Connection) -> Result<NodeId, PeerRefusal> {
        let chain = connection
            .peer_identity()
            .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
            .ok_or(PeerRefusal::NoCertificate)?;
        let now_ms = u64::try_from(self.clock.wall_time_ms()).unwrap_or(0);
        let now = UnixTime::since_unix_epoch(Duration::from_millis(now_ms));
        let node = self
            .verifier
            .identify(&chain, self.members.iter().copied(), now)?;
        if node == self.node_id {
            return Err(PeerRefusal::OwnNodeId(node));
        }
        let remote = connection.remote_address();
        let mut connected = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(live) = connected.get(&node)
            && live.close_reason().is_none()
        {
            // Two processes cannot share a UDP address, so a second live connection from
            // another address is another process holding the same node id.
            if live.remote_address() != remote {
                return Err(PeerRefusal::Duplicate {
                    node,
                    existing: live.remote_address(),
                });
            }
            live.close(
                CLOSE_PEER_REPLACED.into(),
                b"replaced by a newer connection from the same node",
            );
        }
        connected.insert(node, connection.clone());
        Ok(node)
    }

    /// Reads one request, dispatches it, and writes the answer. A bad frame is answered
    /// with its status on this stream; the connection carries on.
    async fn serve_stream(
        &self,
        from: NodeId,
        mut send: quinn::SendStream,
        mut receive: quinn::RecvStream,
        budget: Arc<Semaphore>,
    ) {
        let frame_bytes_max = self.limits.frame_bytes_max;
        let mut header = [0u8; REQUEST_HEADER_BYTES];
        match receive.read_exact(&mut header).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(bytes)) => {
                let error = FrameError::Truncated {
                    bytes,
                    header: REQUEST_HEADER_BYTES,
                };
                respond_error(&mut send, 0, PeerStatus::InvalidFrame, &error.to_string()).await;
                return;
            }
            Err(quinn::ReadExactError::ReadError(error)) => {
                tracing::debug!(from, %error, "peer request stream failed");
                return;
            }
        }
        let request_id = u64::from_be_bytes(
            header[3..11]
                .try_into()
                .expect("an 8-byte slice of the header"),
        );
        let body_bytes = u32::from_be_bytes(
            header[11..15]
                .try_into()
                .expect("a 4-byte slice of the header"),
        );
        // Refused from the header, before the body is read or memory reserved for it.
        let frame_bytes = REQUEST_HEADER_BYTES as u64 + u64::from(body_bytes);
        if frame_bytes > u64::from(frame_bytes_max) {
            let _ = receive.stop(0u32.into());
            let message = FrameError::TooLarge {
                bytes: usize::try_from(frame_bytes).unwrap_or(usize::MAX),
                max: frame_bytes_max,
            }
            .to_string();
            tracing::debug!(from, request_id, "peer request refused: {message}");
            respond_error(&mut send, request_id, PeerStatus::FrameTooLarge, &message).await;
            return;
        }
        // At most `frame_bytes_max` (checked above), which validation keeps within the budget.
        // Never more than the whole budget, or the stream would wait forever.
        let reserved =
            u32::try_from(frame_bytes.min(self.limits.in_flight_bytes_per_connection_max))
                .unwrap_or(u32::MAX);
        let Ok(_reservation) = budget.acquire_many_owned(reserved).await else {
            return;
        };
        let body = match receive.read_to_end(body_bytes as usize).await {
            Ok(body) => body,
            Err(quinn::ReadToEndError::TooLong) => {
                let _ = receive.stop(0u32.into());
                let message =
                    format!("more bytes follow than the body length field ({body_bytes}) says");
                respond_error(&mut send, request_id, PeerStatus::InvalidFrame, &message).await;
                return;
            }
            Err(quinn::ReadToEndError::Read(error)) => {
                tracing::debug!(from, %error, "peer request stream failed");
                return;
            }
        };
        let mut frame = Vec::with_capacity(REQUEST_HEADER_BYTES + body.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&body);
        let request = match frame::decode_request(Bytes::from(frame), frame_bytes_max) {
            Ok(request) => request,
            Err(error @ FrameError::UnknownKind { request_id, .. }) => {
                respond_error(
                    &mut send,
                    request_id,
                    PeerStatus::UnknownKind,
                    &error.to_string(),
                )
                .await;
                return;
            }
            Err(error) => {
                respond_error(
                    &mut send,
                    request_id,
                    PeerStatus::InvalidFrame,
                    &error.to_string(),
                )
                .await;
                return;
            }
        };
        let Some(handler) = self.handlers.handler(request.kind) else {
            let message = format!(
                "node {} has no handler for {:?}",
                self.node_id, request.kind
            );
            respond_error(&mut send, request_id, PeerStatus::UnknownKind, &message).await;
            return;
        };
        let answer = handler(PeerRequest {
            from,
            kind: request.kind,
            request_id,
            body: request.body,
        })
        .await;
        let frame = match answer {
            Ok(body) if RESPONSE_HEADER_BYTES + body.len() > frame_bytes_max as usize => {
                let message = format!(
                    "the answer ({} bytes) exceeds cluster.peer_frame_bytes_max ({frame_bytes_max} bytes)",
                    body.len()
                );
                tracing::warn!(from, kind = ?request.kind, "{message}");
                frame::encode_response(request_id, PeerStatus::FrameTooLarge, message.as_bytes())
            }
            Ok(body) => frame::encode_response(request_id, PeerStatus::Ok, &body),
            Err(error) => frame::encode_response(
                request_id,
                PeerStatus::HandlerFailed,
                error.to_string().as_bytes(),
            ),
        };
        respond(&mut send, &frame).await;
    }
}

/// Longest close reason sent with a refusal.
const REFUSAL_REASON_BYTES_MAX: usize = 512;

async fn respond_error(
    send: &mut quinn::SendStream,
    request_id: u64,
    status: PeerStatus,
    message: &str,
) {
    respond(
        send,
        &frame::encode_response(request_id, status, message.as_bytes()),
    )
    .await;
}

async fn respond(send: &mut quinn::SendStream, frame: &[u8]) {
    // The dialer may have gone (timed out): nothing to do then.
    if send.write_all(frame).await.is_ok() {
        let _ = send.finish();
    }
}
