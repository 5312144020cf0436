//! When a damaged replica may cut its log and refetch from the leader (issue 13 item 4).
//!
//! A partition whose log fails its checks (a bit flip, a file cut short) holds fewer
//! records than the controller may believe. Cutting it at its last good batch is only safe
//! once no election can pick it for the records it gave up: the controller must not count
//! it in the ISR (an election picks ISR members) nor the ELR (KIP-966: picked when no ISR
//! member is left). A restart already takes a node out of every ISR where others remain
//! (its new incarnation must rejoin through the leader, KIP-903), so a damaged replica found
//! at start is usually free to repair; a replica still in the ISR alone is the only copy the
//! controller knows of and stays offline (nothing to refetch, no data invented). A replica in
//! the ELR, or one damaged while running, first asks the controller to drop it from both
//! (`ReplicaTransport::report_damaged`), then repairs once the image says so.
//!
//! [`decide`] is the rule, pure: the image and this node's registration in, what to do out.
//!
//! A *leader* that meets a bad batch while serving (a consumer fetch, a follower's fetch) or
//! whose background verifier reports one takes [`on_leader_damage`]'s rule first: it hands
//! over (takes its log offline as damaged, which fails its pending acks=all waits, and the
//! driver then reports it, so the controller elects another ISR member) when another ISR
//! member holds the records; as the only ISR member it keeps leading and serves the intact
//! ranges only (Kafka's choice for the last replica: no other copy to fail over to, and an
//! offline partition would refuse the good records too). Reads at or past the damage then
//! fail with `DataDamaged` until an operator restores the segment.

use super::{NodeEpoch, NodeId};
use crate::controller::{MetadataImage, PartitionState};

/// What a damaged replica does now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepairDecision {
    /// Cut the log at its last good batch and follow `leader`.
    Repair {
        /// The leader the records are refetched from.
        leader: NodeId,
    },
    /// Ask the controller to drop this replica from the ISR and ELR first (another replica
    /// holds the records, but the controller still counts this one as holding them too).
    Report,
    /// Stay offline, for the reason given (logged, and retried at the next image).
    Wait(String),
}

/// The rule for node `local` (registered at `node_epoch`, as far as the driver knows) and a
/// damaged replica of the partition whose state in `image` is `state`.
pub fn decide(
    local: NodeId,
    node_epoch: Option<NodeEpoch>,
    image: &MetadataImage,
    state: &PartitionState,
) -> RepairDecision {
    let Some(node_epoch) = node_epoch else {
        return RepairDecision::Wait("this node is not registered with the controller yet".into());
    };
    // Until the image holds this incarnation's registration, its ISR places are the old
    // incarnation's (the registration removes them in the same metadata entry).
    if image.nodes.get(&local).map(|node| node.node_epoch) != Some(node_epoch) {
        return RepairDecision::Wait(
            "the metadata does not show this node's registration yet".into(),
        );
    }
    let in_isr = state.isr.contains(&local);
    let in_elr = state.elr.contains(&local);
    let others_in_isr = state.isr.iter().any(|member| *member != local);
    match state.leader {
        // Another replica leads and holds every committed record: repair from it once the
        // controller no longer counts this one, and until then ask it to stop.
        Some(leader) if leader != local => {
            if in_isr || in_elr {
                RepairDecision::Report
            } else {
                RepairDecision::Repair { leader }
            }
        }
        _ if in_isr && !others_in_isr => RepairDecision::Wait(
            "this replica is the only in-sync one: no other holds its records, so it stays \
             offline (restore the partition, or give up the damaged records with \
             `ledge-repair truncate` and restart)"
                .into(),
        ),
        // It leads, others are in sync (damage found while leading): the controller moves
        // the leadership to one of them.
        Some(_) => RepairDecision::Report,
        None => RepairDecision::Wait(
            "no replica leads the partition: nothing to refetch from until one does".into(),
        ),
    }
}

/// What a leader does about a damaged batch it met while serving or its verifier found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderDamageAction {
    /// Another ISR member holds the records: take the log offline as damaged; the driver
    /// reports it, the controller elects that member, and this replica is then cut at the
    /// damage and refetches ([`decide`]).
    HandOver,
    /// This node is the only ISR member: it keeps leading and serves its intact ranges only.
    KeepLeading,
}

/// The rule for a leader `local` whose partition's ISR (as the image says) is `isr`.
pub fn on_leader_damage(local: NodeId, isr: &[NodeId]) -> LeaderDamageAction {
    if isr.iter().any(|member| *member != local) {
        LeaderDamageAction::HandOver
    } else {
        LeaderDamageAction::KeepLeading
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::image::NodeRegistration;

    fn image(local_epoch: NodeEpoch) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (node, epoch) in [(1, 10), (2, 11), (3, local_epoch)] {
            image.nodes.insert(
                node,
                NodeRegistration {
                    node_epoch: epoch,
                    address: String::new(),
                    incarnation_id: 0,
                    storage_id: None,
                    fenced: false,
                    kafka_listeners: None,
                },
            );
        }
        image
    }

    fn state(isr: &[NodeId], elr: &[NodeId], leader: Option<NodeId>) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            elr: elr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
        }
    }

    // Goal: the rule, case by case, for node 3 registered at epoch 12.
    #[test]
    fn a_damaged_replica_repairs_only_when_no_election_can_pick_it() {
        let image = image(12);
        let decide = |node_epoch, state: &PartitionState| decide(3, node_epoch, &image, state);
        // Restarted, out of the ISR, another leads: repair from it.
        assert_eq!(
            decide(Some(12), &state(&[1, 2], &[], Some(1))),
            RepairDecision::Repair { leader: 1 }
        );
        // Not registered, or the image still shows the old incarnation: wait.
        assert!(matches!(
            decide(None, &state(&[1, 2], &[], Some(1))),
            RepairDecision::Wait(_)
        ));
        assert!(matches!(
            decide(Some(13), &state(&[1, 2], &[], Some(1))),
            RepairDecision::Wait(_)
        ));
        // Still in the ISR or the ELR while another leads: the controller drops it first.
        assert_eq!(
            decide(Some(12), &state(&[1, 3], &[], Some(1))),
            RepairDecision::Report
        );
        assert_eq!(
            decide(Some(12), &state(&[1], &[3], Some(1))),
            RepairDecision::Report
        );
        // The only ISR member (RF=1, or every other one gone): stays offline.
        let RepairDecision::Wait(reason) = decide(Some(12), &state(&[3], &[], Some(3))) else {
            panic!("the only copy must not be cut");
        };
        assert!(reason.contains("only in-sync"), "{reason}");
        assert!(matches!(
            decide(Some(12), &state(&[3], &[], None)),
            RepairDecision::Wait(_)
        ));
        // It leads with others in the ISR (damage found while leading): the controller
        // moves the leadership away first.
        assert_eq!(
            decide(Some(12), &state(&[1, 3], &[], Some(3))),
            RepairDecision::Report
        );
        // Nobody leads: nothing to refetch from.
        assert!(matches!(
            decide(Some(12), &state(&[], &[], None)),
            RepairDecision::Wait(_)
        ));
    }

    // Goal: a damaged leader hands over exactly when another ISR member holds the records;
    // the only in-sync copy keeps leading (and serving its intact ranges).
    #[test]
    fn a_damaged_leader_hands_over_only_to_another_isr_member() {
        assert_eq!(on_leader_damage(3, &[1, 3]), LeaderDamageAction::HandOver);
        assert_eq!(on_leader_damage(3, &[3, 2]), LeaderDamageAction::HandOver);
        assert_eq!(on_leader_damage(3, &[3]), LeaderDamageAction::KeepLeading);
        // An ISR that does not name the leader (a stale image) still has others to elect.
        assert_eq!(on_leader_damage(3, &[1]), LeaderDamageAction::HandOver);
        assert_eq!(on_leader_damage(3, &[]), LeaderDamageAction::KeepLeading);
    }
}
