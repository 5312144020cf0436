//! Security building blocks (issue 15): pure code for identities and authorization, not yet
//! wired into the QUIC or Kafka listeners.

pub mod principal;
