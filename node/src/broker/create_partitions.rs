//! CreatePartitions (Kafka's semantics): grow topics to a new total partition count,
//! optionally with the replicas of each new partition. Alone, the registry opens the new
//! partitions' logs; in a `[cluster]` the node forwards to the active controller (as
//! CreateTopics does), which places the new partitions with the topic's replication factor
//! and elects their leaders (a `validate_only` request is answered here with the
//! controller's rules on this node's image). The error enum of this operation becomes
//! wire codes in `dispatch.rs`.
//!
//! What grows with the topic, unchanged: a running transform reading it starts tasks for
//! the new partitions (in a cluster, on their leaders), and a partitioner module is called
//! with the new count. The key-to-partition mapping changes, as in Kafka.

use ledge_protocol::wire::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::Broker;
use super::dispatch::{controller_wire, create_partitions_wire, topic_result};
use super::registry::AddPartitionsError;
use crate::controller::admin::AdminRequest;
use crate::controller::decisions::plan_new_partitions;
use crate::storage::Disk;

/// Why a topic of a CreatePartitions was not grown.
#[derive(Debug, thiserror::Error)]
pub enum CreatePartitionsError {
    /// `__` topics belong to the node (their partition counts key the node's own data).
    #[error("partitions of internal topic {topic:?} are the node's; they cannot be added")]
    Internal {
        /// The topic.
        topic: String,
    },
    /// Assignments this node cannot hold: without a `[cluster]` every replica is this node.
    #[error("{0}")]
    Assignment(String),
    /// The config file declares the topic: its partition count is the file's.
    #[error(
        "topic {topic} is declared in the config file ({origin}) with {declared} partitions: change `partitions` there and restart the node (the file's count is applied at every start, and a smaller one than the topic has is refused)"
    )]
    Declared {
        /// The topic.
        topic: String,
        /// Where it is declared.
        origin: String,
        /// Its partitions there.
        declared: u32,
    },
    /// The registry refused (unknown topic, not more than now, a limit) or failed.
    #[error(transparent)]
    Registry(#[from] AddPartitionsError),
}

impl<D: Disk> Broker<D> {
    pub(super) async fn create_partitions(
        &self,
        request: CreatePartitionsRequest,
    ) -> CreatePartitionsResponse {
        let mut results = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let outcome = if topic.name.starts_with("__") {
                Err(create_partitions_wire(&CreatePartitionsError::Internal {
                    topic: topic.name.clone(),
                }))
            } else if let Some(source) = self.cluster_source.get() {
                if request.validate_only {
                    // The controller's own rules on this node's image: the answer the
                    // controller would give, with nothing sent.
                    let image = source.image.borrow().clone();
                    plan_new_partitions(
                        &image,
                        &topic.name,
                        topic.count,
                        &topic.assignments,
                        &Default::default(),
                    )
                    .map(drop)
                    .map_err(|error| controller_wire(&error))
                } else {
                    // Decided on the controller's image, not this node's, which may lag
                    // (a topic created through another node a moment ago).
                    self.controller_admin(
                        source,
                        AdminRequest::CreatePartitions {
                            name: topic.name.clone(),
                            partitions: topic.count,
                            assignments: topic.assignments,
                        },
                    )
                    .await
                }
            } else {
                self.add_partitions_alone(
                    &topic.name,
                    topic.count,
                    &topic.assignments,
                    request.validate_only,
                )
                .await
                .map_err(|error| create_partitions_wire(&error))
            };
            results.push(topic_result(topic.name, outcome));
        }
        CreatePartitionsResponse { topics: results }
    }

    /// One node: every replica is this node, so an assignment may only name it, once per
    /// new partition.
    async fn add_partitions_alone(
        &self,
        name: &str,
        count: u32,
        assignments: &[Vec<u32>],
        validate_only: bool,
    ) -> Result<(), CreatePartitionsError> {
        self.registry.validate_add_partitions(name, count)?;
        let declared = self
            .declared_topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        if let Some((origin, declared)) = declared {
            return Err(CreatePartitionsError::Declared {
                topic: name.to_string(),
                origin,
                declared,
            });
        }
        if !assignments.is_empty() {
            let adding = count.saturating_sub(self.registry.partition_count(name));
            let node_id = self.config.node_id;
            if u32::try_from(assignments.len()).ok() != Some(adding) {
                return Err(CreatePartitionsError::Assignment(format!(
                    "topic {name}: {} assignment(s) given for {adding} new partition(s); give one per new partition, or none",
                    assignments.len()
                )));
            }
            if let Some(bad) = assignments
                .iter()
                .find(|replicas| replicas.as_slice() != [node_id])
            {
                return Err(CreatePartitionsError::Assignment(format!(
                    "topic {name}: assignment {bad:?} names nodes this node does not know; without a [cluster] section every partition has the one replica [{node_id}]"
                )));
            }
        }
        if validate_only {
            return Ok(());
        }
        self.registry.add_partitions(name, count).await?;
        Ok(())
    }
}
