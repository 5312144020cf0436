//! The controller quorum and the metadata log (issue 13, KRaft's model on openraft 0.9).
//!
//! - [`records`]: [`MetadataRecord`], the only way cluster metadata changes.
//! - [`image`]: [`MetadataImage`], the records folded in log order; a pure state machine.
//! - [`decisions`]: [`ControllerLogic`], what the controller proposes (registration, fencing,
//!   placement, elections, ISR changes), as pure code with time passed in.
//! - [`store`] and [`state_machine`]: openraft's log storage and state machine on the node's
//!   `Disk`, with fdatasync before every acknowledgement and durable snapshots.
//! - [`reassign`], [`decommission`], [`rebalance`]: partition moves (KIP-455), removing a
//!   node, and the active controller's preferred-leader and reassignment drivers.
//! - [`shutdown`]: controlled shutdown, the node's side (leaderships moved before it stops).
//! - [`bootstrap`]: the marker that lets a voter's first start initialize the quorum.
//! - [`peer_link`]: the quorum and node sessions on the node's peer RPC.
//! - [`quorum`]: [`Controller`], openraft running over a [`ControllerTransport`]; requests to
//!   a non-leader are answered `NotController` with the leader's id.

pub mod admin;
pub mod bootstrap;
pub mod decisions;
pub mod decommission;
pub mod image;
pub mod peer_link;
pub mod quorum;
pub mod reassign;
pub mod rebalance;
pub mod records;
pub mod shutdown;
pub mod state_machine;
pub mod store;
pub mod types;

pub use decisions::{ControllerError, ControllerLogic, DecisionConfig};
pub use image::{ApplyError, MetadataImage, NodeRegistration, SnapshotError, TopicImage};
pub use quorum::{
    Controller, ControllerConfig, ControllerRequestError, ControllerTransport, RaftMessage,
    RaftReply,
};
pub use records::{
    LeaderEpoch, MetadataRecord, NodeEpoch, NodeId, PartitionEpoch, PartitionState, TopicId,
};
