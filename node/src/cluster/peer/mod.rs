//! Node-to-node RPC over the node's QUIC endpoint, ALPN `ledge-peer/0`, with mTLS.
//!
//! - [`frame`]: the request and response frames (pure).
//! - [`service`]: the accepting side. [`PeerService`] admits a connection only with a client
//!   certificate signed by the cluster CA that names a node of the cluster (the node id is
//!   the certificate's, never anything the peer says), refuses a second live connection
//!   claiming the same node id from another address, and dispatches each request to the
//!   handler registered for its [`PeerRequestKind`] in [`PeerHandlers`].
//! - [`client`]: the dialing side. [`PeerClient`] keeps one connection to one peer, dialed
//!   with this node's certificate, verifying that the peer's certificate names the expected
//!   node of this cluster; it redials with back-off on the node's clock and bounds each
//!   request by a timeout.
//!
//! The controller (raft RPCs, registration, heartbeats) and replication (replica fetch) plug
//! in by registering a handler per kind and by calling [`PeerClient::request`]; neither
//! touches transport code. Why one UDP port with two ALPNs rather than a second endpoint:
//! peers reach each other at the one address in `cluster.peers`, connections a node dials
//! come from that same address (so a restarted node is recognised by it), and there is one
//! socket to size and one port to open. The client ALPN `ledge/1` keeps working without a
//! client certificate: the TLS verifier allows unauthenticated clients, and the peer ALPN
//! then requires and checks the identity after the handshake ([`service`]).

pub mod client;
pub mod frame;
pub mod service;

pub use client::{PeerClient, PeerClientTls, PeerRequestError};
pub use frame::{PeerRequestKind, PeerStatus};
pub use service::{PeerHandlerError, PeerHandlers, PeerRequest, PeerService};

/// ALPN protocol id of node-to-node traffic.
pub const PEER_ALPN: &[u8] = b"ledge-peer/0";

/// QUIC application close code: the node refused this peer connection (the reason says why).
pub const CLOSE_PEER_REFUSED: u32 = 0x4c01;
/// QUIC application close code: a newer connection from the same node replaced this one.
pub const CLOSE_PEER_REPLACED: u32 = 0x4c02;

/// Peer RPC limits and timings, from `[cluster]`.
#[derive(Clone, Debug)]
pub struct PeerLimits {
    /// Largest request or response frame (`cluster.peer_frame_bytes_max`).
    pub frame_bytes_max: u32,
    /// How long a request waits for its answer (`cluster.peer_request_timeout_ms`).
    pub request_timeout: std::time::Duration,
    /// First wait after a failed dial (`cluster.peer_reconnect_backoff_min_ms`).
    pub reconnect_backoff_min: std::time::Duration,
    /// Longest wait between dials (`cluster.peer_reconnect_backoff_max_ms`).
    pub reconnect_backoff_max: std::time::Duration,
}

impl PeerLimits {
    /// The limits a `[cluster]` section sets.
    pub fn from_config(config: &super::config::ClusterConfig) -> Self {
        Self {
            frame_bytes_max: config.peer_frame_bytes_max,
            request_timeout: config.peer_request_timeout,
            reconnect_backoff_min: config.peer_reconnect_backoff_min,
            reconnect_backoff_max: config.peer_reconnect_backoff_max,
        }
    }
}

/// The accepting side for `config`'s node, with `handlers` (register more at any time).
pub fn peer_service(
    config: &super::config::ClusterConfig,
    tls: &super::identity::ClusterTls,
    handlers: std::sync::Arc<PeerHandlers>,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<PeerService, super::identity::IdentityError> {
    Ok(PeerService::new(
        config.node_id,
        config.peers.iter().map(|peer| peer.id).collect(),
        tls.verifier()?,
        handlers,
        PeerLimits::from_config(config),
        clock,
    ))
}

/// A client per other node of `config`'s cluster, dialing from `endpoint` (the node's own).
pub fn peer_clients(
    config: &super::config::ClusterConfig,
    tls: &super::identity::ClusterTls,
    endpoint: &quinn::Endpoint,
    clock: &std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<
    std::collections::BTreeMap<super::NodeId, std::sync::Arc<PeerClient>>,
    super::identity::IdentityError,
> {
    let limits = PeerLimits::from_config(config);
    let client_tls = PeerClientTls::new(tls, &limits)?;
    Ok(config
        .peers
        .iter()
        .filter(|peer| peer.id != config.node_id)
        .map(|peer| {
            let client = PeerClient::new(
                endpoint.clone(),
                &client_tls,
                peer.id,
                peer.address,
                limits.clone(),
                std::sync::Arc::clone(clock),
            );
            (peer.id, std::sync::Arc::new(client))
        })
        .collect())
}

#[cfg(test)]
mod tests;
