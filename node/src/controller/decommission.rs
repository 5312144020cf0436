//! Decommissioning a node: removing it from the cluster once it holds nothing.
//!
//! [`ControllerLogic::decommission_node`] is the pure decision: refused while the node is
//! alive (it would register again at its next heartbeat; stop it first), or while it is still
//! a replica of any partition (the refusal lists them and points at `ledge topic reassign`);
//! otherwise one `UnregisterNode` record removes it from the image, so `cluster describe` and
//! Metadata stop listing it and placement never picks it. A voter of the controller quorum is
//! refused by the driver ([`Controller::decommission_node`]): changing the voters is out of
//! scope. A learner leaves openraft's membership through the learner driver
//! (`Controller::remove_unregistered_learners`), which removes every learner no longer
//! registered, also after a controller failover.

use super::decisions::{ControllerError, ControllerLogic, Work};
use super::image::MetadataImage;
use super::quorum::{Controller, ControllerRequestError};
use super::records::{MetadataRecord, NodeId};

/// How many partitions a refusal lists by name before it only counts the rest.
const DECOMMISSION_PARTITIONS_LISTED_MAX: usize = 10;

impl ControllerLogic {
    /// The record that unregisters `node_id`, or why it cannot go yet.
    pub fn decommission_node(
        &self,
        image: &MetadataImage,
        node_id: NodeId,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let Some(node) = image.nodes.get(&node_id) else {
            return Err(ControllerError::NodeInUse(format!(
                "node {node_id} is not registered in the cluster"
            )));
        };
        if !node.fenced {
            return Err(ControllerError::NodeInUse(format!(
                "node {node_id} is alive; stop it first (a running node registers again)"
            )));
        }
        let held: Vec<String> = image
            .topics
            .iter()
            .flat_map(|(name, topic)| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, state)| state.replicas.contains(&node_id))
                    .map(move |(index, _)| format!("{name}/{index}"))
            })
            .collect();
        if !held.is_empty() {
            let mut listed = held
                .iter()
                .take(DECOMMISSION_PARTITIONS_LISTED_MAX)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if held.len() > DECOMMISSION_PARTITIONS_LISTED_MAX {
                listed.push_str(&format!(
                    " and {} more",
                    held.len() - DECOMMISSION_PARTITIONS_LISTED_MAX
                ));
            }
            return Err(ControllerError::NodeInUse(format!(
                "node {node_id} still holds replicas of {} partition(s): {listed}; move them \
                 with `ledge topic reassign NAME --partition P --replicas ...` first",
                held.len()
            )));
        }
        let mut work = Work::new(image);
        work.push(MetadataRecord::UnregisterNode {
            node_id,
            node_epoch: node.node_epoch,
        })?;
        Ok(work.records)
    }
}

impl Controller {
    /// Decommissions `node_id` on the active controller: refuses a voter of the controller
    /// quorum, else decides [`ControllerLogic::decommission_node`]. The learner leaves the
    /// quorum's membership through the learner driver.
    pub async fn decommission_node(&self, node_id: NodeId) -> Result<(), ControllerRequestError> {
        if self.is_voter(node_id) {
            return Err(ControllerRequestError::Refused(ControllerError::NodeInUse(
                format!(
                    "node {node_id} is a voter of the controller quorum (controller_voters); \
                     changing the voters is not supported, so it cannot be decommissioned"
                ),
            )));
        }
        self.decide(|logic, image| {
            logic
                .decommission_node(image, node_id)
                .map(|records| (records, ()))
        })
        .await?;
        self.remove_unregistered_learners().await;
        Ok(())
    }
}
