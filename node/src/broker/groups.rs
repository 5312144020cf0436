//! The broker's side of the consumer groups: the narrow [`GroupHost`] handle the
//! [`GroupService`](crate::groups::service::GroupService) reaches the node through (the
//! topic registry: topic list, `__consumer_offsets`, transform definitions), and its timer
//! driver, which `main.rs` spawns.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Broker;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::groups::service::{GroupHost, OffsetsLogError};
use crate::storage::{AppendDurability, AppendError, Disk};

// The registry is the group service's window on the node: topics, `__consumer_offsets`
// and the transform definitions all live there.
impl<D: Disk> GroupHost for super::registry::TopicRegistry<D> {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        self.user_topic_partition_counts()
    }

    fn has_partition(&self, topic: &str, partition: u32) -> bool {
        self.partition(topic, partition).is_ok()
    }

    async fn transform_exists(&self, name: &str) -> bool {
        self.transform(name).await.is_some()
    }

    async fn append_offsets_batch(
        &self,
        batch: Bytes,
        durability: AppendDurability,
    ) -> Result<i64, OffsetsLogError> {
        let partition = self
            .partition(OFFSETS_TOPIC, 0)
            .map_err(|_| OffsetsLogError::Missing)?;
        let log = partition
            .online_log()
            .map_err(|error| OffsetsLogError::Offline {
                reason: error.to_string(),
            })?;
        match log.append(batch, durability).await {
            Ok(outcome) => Ok(outcome.base_offset),
            Err(error) => {
                // As for any append: a fenced log is reopened.
                if matches!(error, AppendError::Fenced { .. }) {
                    self.reopen_fenced(&partition);
                }
                Err(error.into())
            }
        }
    }
}

impl<D: Disk> Broker<D> {
    /// Replays `__consumer_offsets` into the group service (at start).
    pub(super) async fn load_offsets(&self) {
        match self
            .registry
            .partition(OFFSETS_TOPIC, 0)
            .and_then(|partition| partition.online_log())
        {
            Ok(log) => self.groups.load_offsets(&log).await,
            Err(_) => {
                tracing::error!("{OFFSETS_TOPIC} is offline: committed offsets are unavailable");
            }
        }
    }

    /// Expires silent group members (also run on every heartbeat, and by
    /// [`Broker::run_group_timer`]).
    pub fn expire_group_members(&self) {
        self.groups.expire_members(&*self.registry);
    }

    /// Expires group members on time (on the node's clock), for as long as the broker lives.
    pub async fn run_group_timer(self: Arc<Self>) {
        self.groups.run_timer(&*self.registry).await;
    }
}
