//! What changes in the topic registry, told to whoever runs on topics (transforms, and
//! later replication), so they follow a topic that grows or goes without a restart.

use tokio::sync::broadcast;

/// A change to the set of topics or their partitions, sent after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A topic was created with `partitions` partitions.
    TopicCreated {
        /// The topic.
        name: String,
        /// Its partition count.
        partitions: u32,
    },
    /// A topic grew from `before` to `after` partitions.
    PartitionsAdded {
        /// The topic.
        name: String,
        /// Partition count before.
        before: u32,
        /// Partition count now.
        after: u32,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// The topic.
        name: String,
    },
}

/// Events kept for a subscriber that lags; one that falls further behind is told it lagged
/// (`RecvError::Lagged`) and must re-read the registry.
pub const REGISTRY_EVENTS_BUFFERED: usize = 256;

/// The sending side of registry events.
#[derive(Debug)]
pub struct RegistryEvents {
    sender: broadcast::Sender<RegistryEvent>,
}

impl Default for RegistryEvents {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(REGISTRY_EVENTS_BUFFERED),
        }
    }
}

impl RegistryEvents {
    /// Tells every subscriber; nobody listening is fine.
    pub fn emit(&self, event: RegistryEvent) {
        let _ = self.sender.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.sender.subscribe()
    }
}
