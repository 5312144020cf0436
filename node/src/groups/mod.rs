//! Consumer groups: membership and assignment ([`coordinator`], KIP-848, sans-IO; [`classic`],
//! Kafka's JoinGroup/SyncGroup protocol, sans-IO), assignors
//! ([`assignor`], pure), the consumer protocol embedded in classic metadata
//! ([`consumer_protocol`], pure), committed offsets ([`offsets`]), and the requests over them with the
//! timer that drives the coordinator ([`service`], the only group code that touches IO or time),
//! and which node coordinates a group in a cluster ([`placement`], pure).

pub mod assignor;
pub mod classic;
pub mod consumer_protocol;
pub mod coordinator;
pub mod offsets;
pub mod placement;
pub mod service;
