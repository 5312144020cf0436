//! Network edges: the QUIC listener of the native protocol and its TLS material.

pub mod address_limit;
pub mod budget;
pub mod quic;
pub mod tls;
