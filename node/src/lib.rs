//! The Ledge node: an event log for edge hosts.
//!
//! Subsystems (more arrive with later work):
//! - [`storage`]: segmented partition logs with group commit and crash recovery, over the
//!   [`storage::Disk`] seam (io_uring, std fallback, simulated). Its planning parts
//!   (segment roll, indexes, checkpoint, recovery scan) are pure; `PartitionLog` applies them.
//! - [`clock`]: the one place real time is read.
//! - [`controller`]: the cluster's metadata log (KRaft's records) replicated by a quorum on
//!   openraft, with its image and the controller's decisions as pure code.
//! - [`assembly`]: how a node's services are put together once its broker is open, one
//!   sequence for the binary and the multi-node simulator.
//! - [`streams`]: the pure core of stateful stream processing (issue 17): state store,
//!   changelog codec and restore, windows, joins, repartition dedup.
//! - [`service`]: running under systemd: readiness notifications (`sd_notify`) and what a
//!   config reload on `SIGHUP` can apply.
//! - `sim` (tests and the `sim` feature): a simulated disk with crashes, torn writes, EIO
//!   and ENOSPC, driven by a seed.
//!
//! The life of an append: `PartitionLog::append` checks the batch's CRC and size on the
//! caller's task, queues it for the partition's writer task, which drains everything queued
//! into one buffer, stamps base offsets, writes it with one `write`, syncs with one
//! `fdatasync`, advances the high watermark and acknowledges every append in the group.

pub mod admin;
pub mod assembly;
pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod groups;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod replication;
pub mod security;
pub mod service;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod storage;
pub mod streams;
pub mod transport;
pub mod wasm;
