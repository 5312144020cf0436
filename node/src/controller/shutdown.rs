//! Controlled shutdown, the node's side (Kafka's `controlled.shutdown.enable`, in KRaft's
//! shape): before a `[cluster]` node stops on SIGTERM or Ctrl-C, it asks the active
//! controller to move its leaderships to other in-sync replicas, so each partition it led
//! sees one planned leader election instead of being offline until the node's session
//! expires (`node_session_timeout_ms`).
//!
//! The node's session ([`super::peer_link::NodeSession`]) does the asking: once
//! [`ShutdownHandle::run`] raises the request, every heartbeat becomes a
//! `SessionRequest::ControlledShutdown` (at once, then every heartbeat interval, so a new
//! active controller learns it again), and each `ShutdownProgress` answer is published here.
//! The node stops waiting when the controller says it leads nothing AND its own metadata
//! image shows it leads nothing (the replication driver follows that image, so it no longer
//! acknowledges as a leader), or when `cluster.controlled_shutdown_timeout_ms` has passed
//! (no controller answers, for example on the last node of a cluster), and then stops as
//! before. The controller's side is [`super::ControllerLogic::handle_controlled_shutdown`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::decisions::leaderships;
use super::image::MetadataImage;
use super::records::NodeId;
use crate::clock::{Clock, Elapsed, deadline_after, timeout_at};

/// Default `cluster.controlled_shutdown_enable` (Kafka's `controlled.shutdown.enable`).
pub const CONTROLLED_SHUTDOWN_ENABLE_DEFAULT: bool = true;
/// Default `cluster.controlled_shutdown_timeout_ms`: the longest a stopping node waits for
/// its leaderships to move. Kafka's ZooKeeper mode gave up after
/// `controlled.shutdown.max.retries` (3) times `retry.backoff` plus request time, about
/// 15 s; KRaft waits without a bound. One election per partition takes well under a second
/// with a live controller, so 30 s only matters when none answers.
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT: u64 = 30_000;

/// The session's end of a controlled shutdown: whether one is asked for, and where to
/// publish the controller's answers.
pub struct ShutdownLink {
    /// Becomes true when the node starts its controlled shutdown.
    pub requested: watch::Receiver<bool>,
    /// The `leaderships_left` of the controller's latest `ShutdownProgress` answer.
    pub progress: watch::Sender<Option<u32>>,
}

/// The node's end of a controlled shutdown (see [`shutdown_channel`]).
pub struct ShutdownHandle {
    requested: watch::Sender<bool>,
    progress: watch::Receiver<Option<u32>>,
}

/// A connected pair: the handle the node keeps and the link its session reads.
pub fn shutdown_channel() -> (ShutdownHandle, ShutdownLink) {
    let (requested, requested_receiver) = watch::channel(false);
    let (progress_sender, progress) = watch::channel(None);
    (
        ShutdownHandle {
            requested,
            progress,
        },
        ShutdownLink {
            requested: requested_receiver,
            progress: progress_sender,
        },
    )
}

/// How a controlled shutdown ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// The controller and the node's own image agree it leads nothing.
    Moved {
        /// Partitions it led when the shutdown began.
        leaderships: u32,
        /// How long it took.
        elapsed: Duration,
    },
    /// The timeout passed first (or the session stopped).
    TimedOut {
        /// Partitions still led: the controller's last answer, or the node's own image if
        /// no controller answered.
        leaderships_left: u32,
        /// Whether any controller answered.
        controller_answered: bool,
        /// How long it waited.
        elapsed: Duration,
    },
}

impl ShutdownHandle {
    /// Asks the session to request a controlled shutdown, and waits until the controller
    /// answers that node `node_id` leads nothing and `image` (the node's own metadata image)
    /// agrees, for at most `timeout` of `clock`'s time. Logs one line when it starts and
    /// one when it ends.
    pub async fn run(
        &self,
        node_id: NodeId,
        mut image: watch::Receiver<Arc<MetadataImage>>,
        clock: &dyn Clock,
        timeout: Duration,
    ) -> ShutdownOutcome {
        let start = clock.now();
        let deadline = deadline_after(start, timeout);
        let at_start = leaderships(&image.borrow_and_update(), node_id);
        tracing::info!(
            leaderships = at_start,
            timeout_ms = timeout.as_millis(),
            "controlled shutdown: asking the controller to move this node's leaderships away"
        );
        self.requested.send_replace(true);
        let mut progress = self.progress.clone();
        let mut open = true;
        let outcome = loop {
            let answered = *progress.borrow_and_update();
            let own = leaderships(&image.borrow_and_update(), node_id);
            if answered == Some(0) && own == 0 {
                break ShutdownOutcome::Moved {
                    leaderships: at_start,
                    elapsed: clock.now().saturating_duration_since(start),
                };
            }
            let timed_out = || ShutdownOutcome::TimedOut {
                leaderships_left: answered.unwrap_or(own).max(own),
                controller_answered: answered.is_some(),
                elapsed: clock.now().saturating_duration_since(start),
            };
            if !open {
                // The session or the controller is gone: nothing can move any more.
                break timed_out();
            }
            let changed = async {
                tokio::select! {
                    changed = progress.changed() => changed.is_ok(),
                    changed = image.changed() => changed.is_ok(),
                }
            };
            match timeout_at(clock, deadline, changed).await {
                Ok(still_open) => open = still_open,
                Err(Elapsed) => break timed_out(),
            }
        };
        match outcome {
            ShutdownOutcome::Moved {
                leaderships,
                elapsed,
            } => tracing::info!(
                leaderships,
                elapsed_ms = elapsed.as_millis(),
                "controlled shutdown: moved {leaderships} leaderships away in {} ms",
                elapsed.as_millis()
            ),
            ShutdownOutcome::TimedOut {
                leaderships_left,
                controller_answered,
                elapsed,
            } => tracing::warn!(
                leaderships_left,
                controller_answered,
                elapsed_ms = elapsed.as_millis(),
                "controlled shutdown: timed out with {leaderships_left} leaderships left after {} ms{}; stopping anyway (they move when this node's session expires)",
                elapsed.as_millis(),
                if controller_answered {
                    ""
                } else {
                    " (no controller answered)"
                }
            ),
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
