//! The active controller's periodic work on leaders and replicas (the drivers; the decisions
//! are pure, in `decisions.rs` and `reassign.rs`):
//! - Preferred-leader rebalancing (Kafka's `auto.leader.rebalance.enable` with
//!   `leader.imbalance.check.interval.seconds`): every
//!   `cluster.leader_imbalance_check_interval_ms`, leadership moves back to each partition's
//!   first replica where it is alive and in the ISR (after a node returns, its partitions'
//!   leaders stay elsewhere until then). Kafka waits for an imbalance above
//!   `leader.imbalance.per.broker.percentage`; Ledge moves every such partition, since edge
//!   clusters are small and an unbalanced leader doubles one node's load.
//! - Reassignment completion: on every image change (an ISR expansion may complete a move) and
//!   at least every `node_heartbeat_interval`.
//!
//! On a voter that is not the active controller every tick is a no-op.

use std::time::Duration;

use super::quorum::{Controller, ControllerRequestError};
use crate::clock::{Clock, Elapsed, sleep, timeout};

/// Default `cluster.leader_imbalance_check_interval_ms`: Kafka checks every 300 s; an edge
/// cluster is small and a returning node should carry its share of leaders soon, so 30 s.
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// Default `cluster.auto_leader_rebalance_enable` (Kafka's `auto.leader.rebalance.enable`).
pub const AUTO_LEADER_REBALANCE_ENABLE_DEFAULT: bool = true;

impl Controller {
    /// Moves leadership back to preferred replicas that are alive and in their ISR, for one
    /// topic (`Some`) or all; answers how many partitions changed leader.
    pub async fn elect_preferred_leaders_of(
        &self,
        topic: Option<&str>,
    ) -> Result<usize, ControllerRequestError> {
        self.decide(|logic, image| {
            logic
                .elect_preferred_leaders_of(image, topic)
                .map(|records| {
                    let moved = records.len();
                    (records, moved)
                })
        })
        .await
    }

    /// Completes the reassignments whose target replicas are all in the ISR.
    pub async fn poll_reassignments(&self) -> Result<(), ControllerRequestError> {
        self.decide(|logic, image| logic.poll_reassignments(image).map(|records| (records, ())))
            .await
    }

    /// The preferred-leader timer: every `interval`, [`Self::elect_preferred_leaders_of`] for
    /// every topic. Runs until dropped.
    pub async fn run_leader_rebalance(&self, clock: &dyn Clock, interval: Duration) {
        loop {
            sleep(clock, interval).await;
            match self.elect_preferred_leaders_of(None).await {
                Ok(0) | Err(ControllerRequestError::NotController { .. }) => {}
                Ok(moved) => tracing::info!(moved, "leadership moved back to preferred replicas"),
                Err(error) => tracing::warn!(%error, "preferred leader election"),
            }
        }
    }

    /// The reassignment driver: on every image change, and at least every `interval`,
    /// completes the moves that can complete. Runs until dropped.
    pub async fn run_reassignments(&self, clock: &dyn Clock, interval: Duration) {
        let mut image = self.subscribe();
        loop {
            if !image.borrow_and_update().reassignments.is_empty() {
                match self.poll_reassignments().await {
                    Ok(()) | Err(ControllerRequestError::NotController { .. }) => {}
                    Err(error) => tracing::warn!(%error, "completing reassignments"),
                }
            }
            match timeout(clock, interval, image.changed()).await {
                Ok(Ok(())) | Err(Elapsed) => {}
                // The state machine is gone: the controller stopped.
                Ok(Err(_)) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
