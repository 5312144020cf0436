//! A `[cluster]` node's topics follow the controller's metadata image (issue 13): every
//! topic of the image exists in the local registry with the image's topic id, and exactly
//! the partitions whose `replicas` name this node have a log here; a topic gone from the
//! image (or replaced by another of the same name) is removed; config changes are applied
//! to the live logs (retention and compaction then run from them).
//!
//! [`plan`] is the pure part: image + what the registry holds -> the actions to take.
//! [`Broker::run_materializer`] is the one driver: it reconciles at start (the image replays
//! from the controller's store) and after every image change, and retries failed actions
//! every [`MATERIALIZE_RETRY_MS`]. Each action is idempotent (`registry/hosted.rs`), so a
//! reconcile racing an admin handler's own (see `dispatch.rs`) is harmless.
//!
//! A topic recorded here from an image at index `i` is only changed or removed by an image
//! at index `i` or later: an image still replaying at start may not know the topic yet, or
//! know an older topic of the same name, and must not remove or replace it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::Broker;
use super::registry::HostedTopic;
use crate::cluster::NodeId;
use crate::controller::MetadataImage;
use crate::storage::Disk;

/// Pause before retrying actions that failed (a disk error, a read-only moment).
pub const MATERIALIZE_RETRY_MS: u64 = 1_000;

/// One change to make to the local registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// Create, replace or update topic `name` to match `wanted`.
    Host {
        /// The topic.
        name: String,
        /// What the image places here.
        wanted: HostedTopic,
    },
    /// Remove topic `name` (recorded here with `topic_id`): the image no longer has it.
    Drop {
        /// The topic.
        name: String,
        /// Its id here.
        topic_id: String,
    },
}

/// What node `node_id` must change so its registry matches `image`, given the cluster
/// topics it holds (`local`, with the image index each was recorded at).
pub fn plan(
    image: &MetadataImage,
    node_id: NodeId,
    local: &BTreeMap<String, HostedTopic>,
) -> Vec<HostAction> {
    let mut actions = Vec::new();
    for (name, topic) in &image.topics {
        let wanted = HostedTopic {
            topic_id: topic.topic_id.to_string(),
            partitions: u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX),
            hosted: topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, state)| state.replicas.contains(&node_id))
                .filter_map(|(index, _)| u32::try_from(index).ok())
                .collect::<BTreeSet<u32>>(),
            configs: topic.configs.clone(),
            image_index: image.last_applied_index,
        };
        match local.get(name) {
            Some(held) if held.same_placement(&wanted) => {}
            // Recorded from a newer image than this one: wait for this one to catch up.
            Some(held) if held.image_index > image.last_applied_index => {}
            _ => actions.push(HostAction::Host {
                name: name.clone(),
                wanted,
            }),
        }
    }
    for (name, held) in local {
        if !image.topics.contains_key(name) && held.image_index <= image.last_applied_index {
            actions.push(HostAction::Drop {
                name: name.clone(),
                topic_id: held.topic_id.clone(),
            });
        }
    }
    actions
}

impl<D: Disk> Broker<D> {
    /// Makes the local registry match `image` (see [`plan`]); returns how many actions
    /// failed (logged; retried by the driver).
    pub async fn materialize(&self, image: &MetadataImage) -> usize {
        let actions = plan(image, self.config.node_id, &self.registry.hosted_topics());
        let mut failed = 0;
        for action in actions {
            match action {
                HostAction::Host { name, wanted } => {
                    // The controller refuses such names; a log written by another build
                    // must still never make a path of one.
                    if let Err(error) = super::topic_config::validate_topic_name(&name)
                        .map_err(|error| error.to_string())
                        .and_then(|()| {
                            // `__consumer_offsets` is the cluster's (the group coordinators').
                            if name.starts_with("__")
                                && name != crate::groups::offsets::OFFSETS_TOPIC
                            {
                                Err("reserved for internal topics".to_owned())
                            } else {
                                Ok(())
                            }
                        })
                    {
                        tracing::error!(topic = %name, %error, "the metadata image names a topic no node may hold; not materialized");
                        continue;
                    }
                    match self.registry.host_topic(&name, &wanted).await {
                        Ok(_) => {
                            tracing::info!(topic = %name, topic_id = %wanted.topic_id, partitions = wanted.partitions, hosted = ?wanted.hosted, "topic placed on this node")
                        }
                        Err(error) => {
                            failed += 1;
                            tracing::error!(topic = %name, %error, "could not materialize a topic of the metadata image; retried");
                        }
                    }
                }
                HostAction::Drop { name, topic_id } => {
                    match self.registry.drop_hosted_topic(&name, &topic_id).await {
                        Ok(removed) => {
                            if removed {
                                self.groups.remove_topic(&name);
                                tracing::info!(topic = %name, %topic_id, "topic deleted by the controller; removed here");
                            }
                        }
                        Err(error) => {
                            failed += 1;
                            tracing::error!(topic = %name, %error, "could not remove a topic the metadata image deleted; retried");
                        }
                    }
                }
            }
        }
        failed
    }

    /// The driver: reconciles at once, then after every image change (and, while
    /// something failed, every [`MATERIALIZE_RETRY_MS`]). Runs until the image's sender
    /// (the controller) is gone; a node without a cluster source returns at once.
    pub async fn run_materializer(self: Arc<Self>) {
        let Some(source) = self.cluster_source.get() else {
            return;
        };
        let mut image = source.image.clone();
        loop {
            let current = image.borrow_and_update().clone();
            let failed = self.materialize(&current).await;
            if failed == 0 {
                if image.changed().await.is_err() {
                    return;
                }
            } else {
                let retry = Duration::from_millis(MATERIALIZE_RETRY_MS);
                match crate::clock::timeout(&*self.clock, retry, image.changed()).await {
                    Ok(Ok(())) | Err(crate::clock::Elapsed) => {}
                    Ok(Err(_)) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
