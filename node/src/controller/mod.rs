//! The controller quorum and the metadata log (issue 13, KRaft's model on openraft 0.9).
//!
//! - [`records`]: [`MetadataRecord`], the only way cluster metadata changes.
//! - [`image`]: [`MetadataImage`], the records folded in log order; a pure state machine.
//! - [`decisions`]: [`ControllerLogic`], what the controller proposes (registration, fencing,
//!   placement, elections, ISR changes), as pure code with time passed in.

pub mod decisions;
pub mod image;
pub mod records;

pub use decisions::{ControllerError, ControllerLogic, DecisionConfig};
pub use image::{ApplyError, MetadataImage, NodeRegistration, SnapshotError, TopicImage};
pub use records::{
    LeaderEpoch, MetadataRecord, NodeEpoch, NodeId, PartitionEpoch, PartitionState, TopicId,
};
