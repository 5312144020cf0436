use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::controller::TopicImage;
use crate::controller::records::{PartitionState, TopicId};

fn image_with_leaders(leaders: &[Option<NodeId>]) -> MetadataImage {
    let mut image = MetadataImage::default();
    image.topics.insert(
        OFFSETS_TOPIC.to_owned(),
        TopicImage {
            topic_id: TopicId([7; 16]),
            configs: BTreeMap::new(),
            partitions: leaders
                .iter()
                .map(|leader| PartitionState {
                    replicas: vec![1, 2, 3],
                    isr: vec![1, 2, 3],
                    elr: Vec::new(),
                    leader: *leader,
                    leader_epoch: 0,
                    partition_epoch: 0,
                })
                .collect(),
        },
    );
    image
}

// Goal: the group -> partition mapping is stable (the same on every node and build: FNV-1a,
// pinned here by known values) and spreads groups over the partitions.
#[test]
fn offsets_partition_is_a_stable_hash_of_the_group_id() {
    // FNV-1a 32 of "" is the offset basis, of "a" is 0xe40c292c (published test vectors).
    assert_eq!(offsets_partition_of("", 8), 0x811c_9dc5 % 8);
    assert_eq!(offsets_partition_of("a", 8), 0xe40c_292c % 8);
    assert_eq!(offsets_partition_of("a", 1), 0);
    assert_eq!(offsets_partition_of("anything", 0), 0);
    let used: BTreeSet<u32> = (0..64)
        .map(|number| offsets_partition_of(&format!("group-{number}"), 8))
        .collect();
    assert_eq!(used.len(), 8, "64 groups use every one of 8 partitions");
}

// Goal: a group's coordinator is the current leader of its offsets partition; no topic and
// no leader are told apart (created at first need vs. wait for an election).
#[test]
fn the_coordinator_is_the_leader_of_the_groups_offsets_partition() {
    assert_eq!(
        coordinator_of(&MetadataImage::default(), "g"),
        Err(CoordinatorLookupError::OffsetsTopicMissing)
    );
    let leaders = [Some(1), Some(2), None, Some(3)];
    let image = image_with_leaders(&leaders);
    for number in 0..32 {
        let group = format!("g{number}");
        let partition = offsets_partition_of(&group, 4);
        let found = coordinator_of(&image, &group);
        match leaders[partition as usize] {
            Some(node) => assert_eq!(found, Ok(Coordinator { partition, node })),
            None => assert_eq!(found, Err(CoordinatorLookupError::NoLeader { partition })),
        }
    }
}

// Goal: a node loads exactly the partitions it newly leads and unloads the ones it lost.
#[test]
fn leadership_changes_load_new_and_unload_lost_partitions() {
    let image = image_with_leaders(&[Some(1), Some(2), Some(1), None]);
    assert_eq!(led_offsets_partitions(&image, 1), BTreeSet::from([0, 2]));
    assert_eq!(led_offsets_partitions(&image, 3), BTreeSet::new());
    assert_eq!(
        led_offsets_partitions(&MetadataImage::default(), 1),
        BTreeSet::new()
    );
    let loaded = BTreeSet::from([2, 3]);
    let led = led_offsets_partitions(&image, 1);
    assert_eq!(
        leadership_changes(&loaded, &led),
        (BTreeSet::from([0]), BTreeSet::from([3]))
    );
    assert_eq!(
        leadership_changes(&led, &led),
        (BTreeSet::new(), BTreeSet::new())
    );
}
