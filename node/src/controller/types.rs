//! The openraft type configuration of the controller quorum.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use super::image::ApplyError;
use super::records::MetadataRecord;

openraft::declare_raft_types!(
    /// The controller quorum's types: one log entry carries one decision's records.
    pub ControllerTypes:
        D = ControllerRequest,
        R = ControllerResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<ControllerTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// One log entry's payload: the records of one decision, applied whole or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRequest {
    /// The records, in order.
    pub records: Vec<MetadataRecord>,
}

/// What applying an entry did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerResponse {
    /// The entry's log index.
    pub index: u64,
    /// `Err` if the image refused the records (nothing changed).
    pub result: Result<(), ApplyError>,
}

/// openraft's node id for a Ledge node id.
pub fn raft_id(node_id: super::NodeId) -> u64 {
    u64::from(node_id)
}
