//! Network edges: the QUIC listener of the native protocol, its TLS material, and client
//! certificates (verification, identity, issuing), SASL on QUIC connections.

pub mod address_limit;
pub mod budget;
pub mod client_auth;
pub mod issue;
pub mod quic;
pub mod sasl;
pub mod tls;
