//! The cluster layer: who the nodes are and how they reach each other.
//!
//! - [`config`]: the `[cluster]` section (node id, cluster id, peers, controller voters,
//!   certificate files, replication defaults) and its validation.
//! - [`identity`]: the cluster CA, node certificates, and the check that a certificate names a
//!   given node of a given cluster. A node's identity is carried only by its certificate.
//! - [`init`]: `ledge-node cluster-init`, which writes a local cluster's CA, certificates and
//!   config files.
//! - [`peer`]: node-to-node RPC on the node's QUIC endpoint under the ALPN `ledge-peer/0`
//!   (mTLS), with a handler registry by [`peer::PeerRequestKind`] that the controller and
//!   replication plug into.
//!
//! What this layer does not own: the controller quorum (`controller/`), replication
//! (`replication/`), and the client-facing protocol (`transport::quic`).

pub mod config;
pub mod identity;
pub mod init;
pub mod peer;

/// A node's id in a cluster: 1..N as `cluster-init` writes them. A node with no `[cluster]`
/// section is node 1 of a one-node cluster.
pub type NodeId = u32;
