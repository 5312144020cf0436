//! The group service's side of coordinator failover (issue 13): commits go to the group's
//! `__consumer_offsets` partition, and unloading a partition forgets exactly its groups
//! (members and offsets), leaving the others' untouched.

use std::sync::Mutex as StdMutex;

use ledge_protocol::wire::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, TopicPartitions,
};

use super::*;
use crate::clock::SimClock;
use crate::groups::placement::offsets_partition_of;

const PARTITIONS: u32 = 8;

/// An in-memory host: one topic `t` of 4 partitions, `PARTITIONS` offsets partitions; it
/// records which offsets partition each batch went to and numbers them per partition.
#[derive(Default)]
pub(super) struct MemoryHost {
    appended: StdMutex<Vec<u32>>,
}

impl GroupHost for MemoryHost {
    fn partition_counts(&self) -> BTreeMap<String, u32> {
        BTreeMap::from([("t".to_string(), 4)])
    }

    fn has_partition(&self, topic: &str, partition: u32) -> bool {
        topic == "t" && partition < 4
    }

    fn offsets_partition(&self, group_id: &str) -> u32 {
        offsets_partition_of(group_id, PARTITIONS)
    }

    async fn transform_exists(&self, _name: &str) -> bool {
        false
    }

    async fn append_offsets_batch(
        &self,
        partition: u32,
        _batch: Bytes,
        _durability: AppendDurability,
    ) -> Result<i64, OffsetsLogError> {
        let mut appended = self.appended.lock().unwrap();
        let base = appended.iter().filter(|seen| **seen == partition).count() as i64;
        appended.push(partition);
        Ok(base)
    }
}

/// Two group ids in different offsets partitions.
fn two_groups() -> (String, String) {
    let first = "group-0".to_string();
    let other = (1..100)
        .map(|number| format!("group-{number}"))
        .find(|group| {
            offsets_partition_of(group, PARTITIONS) != offsets_partition_of(&first, PARTITIONS)
        })
        .unwrap();
    (first, other)
}

fn admin_commit(group: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.to_string(),
        member_id: String::new(),
        member_epoch: -1,
        topics: vec![OffsetCommitTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitPartition {
                partition: 1,
                offset,
                metadata: String::new(),
            }],
        }],
    }
}

// Goal: a commit is appended to its group's offsets partition; unloading that partition
// forgets the group's offsets and members and nothing of a group in another partition; the
// unloaded partition is no longer coordinated here.
#[tokio::test(start_paused = true)]
async fn unloading_an_offsets_partition_forgets_exactly_its_groups() {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
    let service = GroupService::new(GroupLimits::default(), 7, clock);
    let host = MemoryHost::default();
    let (first, other) = two_groups();
    let first_partition = offsets_partition_of(&first, PARTITIONS);
    let other_partition = offsets_partition_of(&other, PARTITIONS);
    for (group, offset) in [(&first, 10), (&other, 20)] {
        let answer = service
            .offset_commit(&host, admin_commit(group, offset))
            .await;
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
    }
    assert_eq!(
        *host.appended.lock().unwrap(),
        vec![first_partition, other_partition]
    );
    // A member of the other group (membership is unloaded with the offsets).
    let joined = service.heartbeat(
        &host,
        ConsumerGroupHeartbeatRequest {
            group_id: other.clone(),
            member_epoch: 0,
            rebalance_timeout_ms: 5_000,
            session_timeout_ms: 10_000,
            subscribed_topics: vec!["t".into()],
            assignor: "range".into(),
            ..ConsumerGroupHeartbeatRequest::default()
        },
        "client",
        Default::default(),
    );
    assert_eq!(joined.error, ErrorCode::None, "{}", joined.message);
    assert_eq!(
        joined.assignment,
        vec![TopicPartitions {
            topic: "t".into(),
            partitions: vec![0, 1, 2, 3],
        }]
    );

    service.unload_partition(first_partition, |group| {
        offsets_partition_of(group, PARTITIONS) == first_partition
    });
    assert_eq!(service.committed_offset(&first, "t", 1), None);
    assert_eq!(service.committed_offset(&other, "t", 1), Some(20));
    assert!(!service.coordinates(first_partition));

    service.unload_partition(other_partition, |group| {
        offsets_partition_of(group, PARTITIONS) == other_partition
    });
    assert_eq!(service.committed_offset(&other, "t", 1), None);
    let listed = service.list_groups(ListGroupsRequest { states: Vec::new() });
    assert!(listed.groups.is_empty(), "{:?}", listed.groups);
}

// Goal: once a node coordinates from the image (a cluster), offsets are appended only to the
// offsets partitions it has loaded: a transform position (or any commit) for a group of
// another partition is refused with `NotLeader` and nothing is appended.
#[tokio::test(start_paused = true)]
async fn in_a_cluster_offsets_are_appended_only_to_loaded_partitions() {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
    let service = GroupService::new(GroupLimits::default(), 7, clock);
    let host = MemoryHost::default();
    service.unload_all();
    let record = Record {
        timestamp: 0,
        key: Some(
            OffsetKey {
                group: "__transform.copy".into(),
                topic: "t".into(),
                partition: 0,
            }
            .encode(),
        ),
        value: Some(encode_value(5, "", 0)),
        headers: Vec::new(),
    };
    let refused = service
        .append_offsets(
            &host,
            "__transform.copy",
            &[record],
            AppendDurability::Written,
        )
        .await;
    assert!(
        matches!(refused, Err(OffsetsLogError::NotLeader)),
        "{refused:?}"
    );
    assert!(host.appended.lock().unwrap().is_empty());
    assert_eq!(service.committed_offset("__transform.copy", "t", 0), None);
}
