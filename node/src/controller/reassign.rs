//! Partition reassignment (Kafka's KIP-455 model), as pure decisions on the image.
//!
//! A move from the `original` replicas to a `target` set goes through three states:
//! 1. **Start** ([`ControllerLogic::reassign_partition`]): one entry with an `AlterPartition`
//!    whose replicas are `target` followed by the original replicas not in it (Kafka's
//!    "replicas = target ∪ original" while copying), and a `StartReassignment` record. The
//!    adding replicas materialize the partition and fetch from the leader as followers; the
//!    leader and ISR are unchanged, so producers and consumers are served throughout.
//! 2. **Copying**: the leader adds each new replica to the ISR when it has caught up (the
//!    ordinary ISR expansion, checked by `alter_partition`).
//! 3. **Complete** ([`ControllerLogic::poll_reassignments`]): once every target replica is in
//!    the ISR, one entry drops the removing replicas: replicas = target, ISR and ELR cut to
//!    the target, a new leader elected from the target set if the leader is being removed
//!    (with a new leader epoch, so the old leader is fenced), and `EndReassignment`.
//!
//! A cancel ([`ControllerLogic::cancel_reassignment`]) returns to the original replicas the
//! same way (refused when no original replica is in sync, which would leave the partition
//! without a copy of its committed records). A reassignment whose target is already in the
//! ISR (a reorder, or a shrink) completes in the start entry.
//!
//! Not here: the driver that calls `poll_reassignments` (`rebalance.rs`), the admin request
//! (`admin.rs`), materialization and fetching (the broker and the replication runtime).

use super::decisions::{
    ControllerError, ControllerLogic, Work, elect, install_leader, is_unfenced,
    min_insync_replicas, normalize_elr,
};
use super::image::{MetadataImage, PartitionReassignment, TopicImage};
use super::records::{MetadataRecord, NodeId, PartitionState};

/// One partition to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassignRequest {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: u32,
    /// The replicas to move to, the preferred leader first.
    pub target: Vec<NodeId>,
}

impl ControllerLogic {
    /// Starts moving a partition to `request.target` (see the module doc). Refused, with
    /// nothing changed: an unknown topic or partition, an empty target (a replication factor
    /// of 0), a node listed twice, a node that is not registered or is fenced (and not already
    /// a replica: it could never catch up), a partition already moving. A target equal to the
    /// current replicas changes nothing.
    pub fn reassign_partition(
        &self,
        image: &MetadataImage,
        request: &ReassignRequest,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let name = format!("{}/{}", request.topic, request.partition);
        let (topic, state) = partition_of(image, &request.topic, request.partition)?;
        if request.target.is_empty() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "{name}: the target replica list is empty (a replication factor of 0)"
            )));
        }
        for (position, node) in request.target.iter().enumerate() {
            if request
                .target
                .iter()
                .skip(position + 1)
                .any(|other| other == node)
            {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{name}: node {node} is listed twice in the target {:?}",
                    request.target
                )));
            }
            if !image.nodes.contains_key(node) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{name}: node {node} is not registered in the cluster"
                )));
            }
            if !state.replicas.contains(node) && !is_unfenced(image, *node) {
                return Err(ControllerError::InvalidReplicaAssignment(format!(
                    "{name}: node {node} is not alive, so it could not copy the partition"
                )));
            }
        }
        if let Some(running) = image.reassignment(topic.topic_id, request.partition) {
            return Err(ControllerError::ReassignmentInProgress(format!(
                "{name} is already moving from {:?} to {:?}; wait for it or cancel it first",
                running.original, running.target
            )));
        }
        if request.target == state.replicas {
            return Ok(Vec::new());
        }
        let reassignment = PartitionReassignment {
            topic_id: topic.topic_id,
            partition: request.partition,
            target: request.target.clone(),
            original: state.replicas.clone(),
        };
        let mut replicas = reassignment.target.clone();
        replicas.extend(reassignment.removing());
        let mut work = Work::new(image);
        if replicas != state.replicas {
            work.push(MetadataRecord::AlterPartition {
                topic_id: topic.topic_id,
                partition: request.partition,
                state: PartitionState {
                    replicas,
                    partition_epoch: state.partition_epoch.saturating_add(1),
                    ..state.clone()
                },
            })?;
        }
        work.push(MetadataRecord::StartReassignment {
            topic_id: reassignment.topic_id,
            partition: reassignment.partition,
            target: reassignment.target.clone(),
            original: reassignment.original.clone(),
        })?;
        // Nothing to copy and the target already in sync: done in the same entry.
        finish(&mut work, &reassignment, &reassignment.target, self)?;
        Ok(work.records)
    }

    /// Cancels a partition's reassignment: its replicas return to the original ones (ISR and
    /// ELR cut to them, a leader elected among them if the leader was a new replica).
    /// Refused when none is running, or when no original replica is in the ISR.
    pub fn cancel_reassignment(
        &self,
        image: &MetadataImage,
        topic: &str,
        partition: u32,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let name = format!("{topic}/{partition}");
        let (topic_image, state) = partition_of(image, topic, partition)?;
        let reassignment = image
            .reassignment(topic_image.topic_id, partition)
            .ok_or_else(|| {
                ControllerError::NoReassignmentInProgress(format!("{name} is not being reassigned"))
            })?
            .clone();
        if !state
            .isr
            .iter()
            .any(|member| reassignment.original.contains(member))
        {
            return Err(ControllerError::NoReassignmentInProgress(format!(
                "{name}: no original replica {:?} is in sync (ISR {:?}), so the move cannot be \
                 cancelled without losing committed records; let it complete",
                reassignment.original, state.isr
            )));
        }
        let mut work = Work::new(image);
        let target = reassignment.original.clone();
        end(&mut work, &reassignment, &target, self)?;
        Ok(work.records)
    }

    /// Completes every reassignment whose target replicas are all in the ISR (the driver
    /// calls this on every image change and periodically on the active controller).
    pub fn poll_reassignments(
        &self,
        image: &MetadataImage,
    ) -> Result<Vec<MetadataRecord>, ControllerError> {
        let mut work = Work::new(image);
        for reassignment in &image.reassignments {
            finish(&mut work, reassignment, &reassignment.target, self)?;
        }
        Ok(work.records)
    }
}

/// The topic and partition state named by `topic`/`partition`.
fn partition_of<'image>(
    image: &'image MetadataImage,
    topic: &str,
    partition: u32,
) -> Result<(&'image TopicImage, &'image PartitionState), ControllerError> {
    let topic_image = image
        .topics
        .get(topic)
        .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{topic:?}")))?;
    let state = usize::try_from(partition)
        .ok()
        .and_then(|index| topic_image.partitions.get(index))
        .ok_or_else(|| ControllerError::UnknownTopicOrPartition(format!("{topic}/{partition}")))?;
    Ok((topic_image, state))
}

/// Ends `reassignment` on `final_replicas` if every one of them is in the ISR.
fn finish(
    work: &mut Work,
    reassignment: &PartitionReassignment,
    final_replicas: &[NodeId],
    logic: &ControllerLogic,
) -> Result<(), ControllerError> {
    let Some(state) = work
        .image
        .partition(reassignment.topic_id, reassignment.partition)
    else {
        return Ok(());
    };
    if final_replicas.iter().all(|node| state.isr.contains(node)) {
        end(work, reassignment, final_replicas, logic)?;
    }
    Ok(())
}

/// One `AlterPartition` that makes `final_replicas` the partition's replicas (the ISR and
/// ELR cut to them; a leader outside them replaced by one elected from them, with a new
/// leader epoch), and the `EndReassignment` record.
fn end(
    work: &mut Work,
    reassignment: &PartitionReassignment,
    final_replicas: &[NodeId],
    logic: &ControllerLogic,
) -> Result<(), ControllerError> {
    let Some((_, topic)) = work.image.topic_by_id(reassignment.topic_id) else {
        return Ok(());
    };
    let topic = topic.clone();
    let Some(state) = work
        .image
        .partition(reassignment.topic_id, reassignment.partition)
        .cloned()
    else {
        return Ok(());
    };
    let mut next = PartitionState {
        replicas: final_replicas.to_vec(),
        ..state.clone()
    };
    next.isr.retain(|member| final_replicas.contains(member));
    next.elr.retain(|member| final_replicas.contains(member));
    let min_insync = min_insync_replicas(&topic, &next, logic.config());
    match next.leader {
        Some(leader) if final_replicas.contains(&leader) => normalize_elr(&mut next, min_insync),
        // The leader is removed (or there is none): elect from what stays. The removed
        // leader is not a candidate even though it is still unfenced.
        excluded => {
            let ineligible = logic.nodes_in_controlled_shutdown(&work.image);
            let election = elect(
                &work.image,
                &next,
                &topic,
                logic.config(),
                excluded,
                &ineligible,
            );
            install_leader(&mut next, election, min_insync);
        }
    }
    if next != state {
        next.partition_epoch = state.partition_epoch.saturating_add(1);
        work.push(MetadataRecord::AlterPartition {
            topic_id: reassignment.topic_id,
            partition: reassignment.partition,
            state: next,
        })?;
    }
    work.push(MetadataRecord::EndReassignment {
        topic_id: reassignment.topic_id,
        partition: reassignment.partition,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
