use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

pub(crate) fn topic_id(byte: u8) -> TopicId {
    TopicId([byte; 16])
}

pub(crate) fn register(node_id: NodeId, node_epoch: NodeEpoch) -> MetadataRecord {
    MetadataRecord::RegisterNode {
        node_id,
        node_epoch,
        address: format!("127.0.0.1:{}", 9100 + node_id),
        incarnation_id: node_epoch,
        storage_id: None,
        kafka_listeners: None,
    }
}

fn partition(replicas: &[NodeId]) -> PartitionState {
    PartitionState {
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
        elr: Vec::new(),
        leader: replicas.first().copied(),
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

fn create(name: &str, id: u8, partitions: Vec<PartitionState>) -> MetadataRecord {
    MetadataRecord::CreateTopic {
        name: name.to_owned(),
        topic_id: topic_id(id),
        configs: BTreeMap::new(),
        partitions,
    }
}

#[test]
fn a_registration_starts_fenced_and_a_heartbeat_record_unfences_it() {
    let mut image = MetadataImage::default();
    image.apply(1, &register(1, 1)).unwrap();
    assert!(image.nodes[&1].fenced);
    image
        .apply(
            2,
            &MetadataRecord::UnfenceNode {
                node_id: 1,
                node_epoch: 1,
            },
        )
        .unwrap();
    assert!(!image.nodes[&1].fenced);
}

#[test]
fn a_restart_needs_a_larger_epoch_and_the_old_epoch_is_stale_afterwards() {
    let mut image = MetadataImage::default();
    image.apply(1, &register(1, 1)).unwrap();
    image.apply(2, &register(2, 2)).unwrap();
    // Node 1 restarts: an epoch at or below the highest ever given is refused.
    assert_eq!(
        image.apply(3, &register(1, 2)),
        Err(ApplyError::NodeEpochNotIncreasing {
            node_id: 1,
            high: 2,
            given: 2
        })
    );
    image.apply(4, &register(1, 3)).unwrap();
    assert_eq!(
        image.apply(
            5,
            &MetadataRecord::UnfenceNode {
                node_id: 1,
                node_epoch: 1
            }
        ),
        Err(ApplyError::StaleNodeEpoch {
            node_id: 1,
            current: 3,
            given: 1
        })
    );
    assert_eq!(
        image.last_applied_index, 5,
        "a refused record still moves the index"
    );
}

#[test]
fn a_replayed_index_is_refused_and_changes_nothing() {
    let mut image = MetadataImage::default();
    image.apply(1, &register(1, 1)).unwrap();
    image
        .apply(2, &create("a", 1, vec![partition(&[1])]))
        .unwrap();
    let before = image.clone();
    assert_eq!(
        image.apply(2, &create("b", 2, vec![partition(&[1])])),
        Err(ApplyError::AlreadyApplied {
            index: 2,
            last_applied: 2
        })
    );
    assert_eq!(image, before);
}

#[test]
fn alter_partition_is_a_compare_and_set_on_the_partition_epoch() {
    let mut image = MetadataImage::default();
    image
        .apply(1, &create("a", 1, vec![partition(&[1, 2, 3])]))
        .unwrap();
    let mut shrunk = partition(&[1, 2, 3]);
    shrunk.isr = vec![1, 2];
    shrunk.partition_epoch = 1;
    let alter = |state: &PartitionState| MetadataRecord::AlterPartition {
        topic_id: topic_id(1),
        partition: 0,
        state: state.clone(),
    };
    image.apply(2, &alter(&shrunk)).unwrap();
    // The same change again (a duplicate proposal) fails the CAS: harmless.
    assert!(matches!(
        image.apply(3, &alter(&shrunk)),
        Err(ApplyError::PartitionEpochMismatch {
            current: 1,
            given: 1,
            ..
        })
    ));
    assert_eq!(image.partition(topic_id(1), 0), Some(&shrunk));
}

#[test]
fn a_new_leader_needs_a_new_leader_epoch_and_must_be_in_the_isr() {
    let mut image = MetadataImage::default();
    image
        .apply(1, &create("a", 1, vec![partition(&[1, 2])]))
        .unwrap();
    let mut same_epoch = partition(&[1, 2]);
    same_epoch.leader = Some(2);
    same_epoch.partition_epoch = 1;
    assert!(matches!(
        image.apply(
            2,
            &MetadataRecord::AlterPartition {
                topic_id: topic_id(1),
                partition: 0,
                state: same_epoch.clone(),
            }
        ),
        Err(ApplyError::InvalidPartitionState(_))
    ));
    let mut outside = same_epoch.clone();
    outside.leader_epoch = 1;
    outside.isr = vec![1];
    assert!(matches!(
        image.apply(3, &MetadataRecord::AlterPartition {
            topic_id: topic_id(1),
            partition: 0,
            state: outside,
        }),
        Err(ApplyError::InvalidPartitionState(reason)) if reason.contains("not in the ISR")
    ));
}

#[test]
fn a_batch_applies_whole_or_not_at_all() {
    let mut image = MetadataImage::default();
    image.apply(1, &register(1, 1)).unwrap();
    let before = image.clone();
    let result = image.apply_batch(
        2,
        &[
            MetadataRecord::UnfenceNode {
                node_id: 1,
                node_epoch: 1,
            },
            MetadataRecord::UnfenceNode {
                node_id: 9,
                node_epoch: 1,
            },
        ],
    );
    assert_eq!(result, Err(ApplyError::UnknownNode { node_id: 9 }));
    assert_eq!(
        image.nodes, before.nodes,
        "the first record was rolled back"
    );
    assert_eq!(image.last_applied_index, 2);
}

#[test]
fn topics_are_deleted_by_name_and_id_and_producer_blocks_are_contiguous() {
    let mut image = MetadataImage::default();
    image.apply(1, &register(1, 1)).unwrap();
    image
        .apply(2, &create("a", 1, vec![partition(&[1])]))
        .unwrap();
    assert!(matches!(
        image.apply(3, &create("a", 2, vec![partition(&[1])])),
        Err(ApplyError::TopicExists { .. })
    ));
    assert!(matches!(
        image.apply(
            4,
            &MetadataRecord::DeleteTopic {
                name: "a".into(),
                topic_id: topic_id(2)
            }
        ),
        Err(ApplyError::UnknownTopic { .. })
    ));
    image
        .apply(
            5,
            &MetadataRecord::DeleteTopic {
                name: "a".into(),
                topic_id: topic_id(1),
            },
        )
        .unwrap();
    assert!(image.topics.is_empty());
    let block = |first| MetadataRecord::AllocateProducerIds {
        node_id: 1,
        node_epoch: 1,
        first_producer_id: first,
        count: 100,
    };
    image.apply(6, &block(PRODUCER_ID_FIRST)).unwrap();
    assert_eq!(
        image.apply(7, &block(PRODUCER_ID_FIRST)),
        Err(ApplyError::ProducerIdBlockMismatch {
            expected: PRODUCER_ID_FIRST + 100,
            given: PRODUCER_ID_FIRST
        })
    );
}

#[test]
fn a_snapshot_of_another_format_or_garbage_is_refused_with_a_clear_error() {
    assert!(matches!(
        MetadataImage::from_snapshot(br#"{"version":99,"image":{}}"#),
        Err(SnapshotError::Version {
            found: 99,
            supported: 1
        })
    ));
    let error = MetadataImage::from_snapshot(b"\x00\x01garbage").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("metadata snapshot is not readable"),
        "{error}"
    );
}

fn record_strategy() -> impl Strategy<Value = MetadataRecord> {
    let node = 1u32..5;
    let replicas = proptest::sample::subsequence(vec![1u32, 2, 3, 4], 1..4);
    prop_oneof![
        (node.clone(), 0u64..20).prop_map(|(node_id, epoch)| register(node_id, epoch)),
        (node.clone(), 0u64..20).prop_map(|(node_id, node_epoch)| MetadataRecord::FenceNode {
            node_id,
            node_epoch
        }),
        (node.clone(), 0u64..20).prop_map(|(node_id, node_epoch)| MetadataRecord::UnfenceNode {
            node_id,
            node_epoch
        }),
        (0u8..4, proptest::collection::vec(replicas.clone(), 1..3)).prop_map(|(id, parts)| {
            create(
                &format!("t{id}"),
                id,
                parts.iter().map(|r| partition(r)).collect(),
            )
        }),
        (0u8..4).prop_map(|id| MetadataRecord::DeleteTopic {
            name: format!("t{id}"),
            topic_id: topic_id(id),
        }),
        (
            0u8..4,
            0u32..2,
            replicas,
            0usize..3,
            0usize..3,
            any::<bool>(),
            0i32..3,
            0i32..4
        )
            .prop_map(
                |(
                    id,
                    partition,
                    replicas,
                    isr_len,
                    elr_len,
                    leaderless,
                    leader_epoch,
                    partition_epoch,
                )| {
                    let isr: Vec<NodeId> = replicas.iter().copied().take(isr_len).collect();
                    // The ELR sometimes overlaps the ISR (refused), sometimes follows it.
                    let elr: Vec<NodeId> = replicas
                        .iter()
                        .copied()
                        .skip(isr_len.saturating_sub(usize::from(leaderless)))
                        .take(elr_len)
                        .collect();
                    MetadataRecord::AlterPartition {
                        topic_id: topic_id(id),
                        partition,
                        state: PartitionState {
                            leader: isr.first().copied().filter(|_| !leaderless),
                            replicas,
                            isr,
                            elr,
                            leader_epoch,
                            partition_epoch,
                        },
                    }
                }
            ),
        (node, 0u64..20, 0i64..3).prop_map(|(node_id, node_epoch, block)| {
            MetadataRecord::AllocateProducerIds {
                node_id,
                node_epoch,
                first_producer_id: PRODUCER_ID_FIRST + block * 10,
                count: 10,
            }
        }),
    ]
}

fn assert_invariants(image: &MetadataImage) {
    for topic in image.topics.values() {
        for state in &topic.partitions {
            check_partition_state(state).unwrap();
        }
    }
    for node in image.nodes.values() {
        assert!(node.node_epoch <= image.node_epoch_high);
    }
}

proptest! {
    /// Any log, applied in order: the invariants hold after every record, epochs only grow,
    /// the same log gives the same image on another replica, replays change nothing, and the
    /// image survives a snapshot round trip at every point.
    #[test]
    fn any_log_keeps_the_invariants_and_round_trips_through_snapshots(
        batches in proptest::collection::vec(proptest::collection::vec(record_strategy(), 1..3), 1..40)
    ) {
        let mut image = MetadataImage::default();
        let mut replica = MetadataImage::default();
        for (position, batch) in batches.iter().enumerate() {
            let index = u64::try_from(position).unwrap() + 1;
            let epochs_before: BTreeMap<NodeId, NodeEpoch> =
                image.nodes.iter().map(|(id, node)| (*id, node.node_epoch)).collect();
            let result = image.apply_batch(index, batch);
            prop_assert_eq!(&result, &replica.apply_batch(index, batch));
            prop_assert_eq!(&image, &replica);
            assert_invariants(&image);
            for (id, epoch) in epochs_before {
                prop_assert!(image.nodes[&id].node_epoch >= epoch);
            }
            let before = image.clone();
            let replayed = matches!(
                image.apply_batch(index, batch),
                Err(ApplyError::AlreadyApplied { .. })
            );
            prop_assert!(replayed);
            prop_assert_eq!(&image, &before);
            prop_assert_eq!(&MetadataImage::from_snapshot(&image.to_snapshot()).unwrap(), &image);
        }
    }
}

// Goal: a RegisterNode record written before nodes registered their Kafka listeners (no
// `kafka_listeners` field) still decodes, as "not said" (the old same-port assumption),
// and a new one round-trips. Method: the records' serde_json form, as the log stores them.
#[test]
fn register_node_records_without_kafka_listeners_still_decode() {
    let old = r#"{"RegisterNode":{"node_id":2,"node_epoch":5,"address":"127.0.0.1:9102","incarnation_id":7,"storage_id":null}}"#;
    let record: MetadataRecord = serde_json::from_str(old).unwrap();
    let MetadataRecord::RegisterNode {
        kafka_listeners, ..
    } = &record
    else {
        panic!("{record:?}");
    };
    assert_eq!(kafka_listeners, &None);
    let new = MetadataRecord::RegisterNode {
        node_id: 2,
        node_epoch: 6,
        address: "127.0.0.1:9102".into(),
        incarnation_id: 8,
        storage_id: None,
        kafka_listeners: Some(KafkaListeners {
            plaintext: Some("127.0.0.1:19102".into()),
            tls: None,
        }),
    };
    let text = serde_json::to_string(&new).unwrap();
    assert_eq!(serde_json::from_str::<MetadataRecord>(&text).unwrap(), new);
    let mut image = MetadataImage::default();
    image.apply(1, &record).unwrap();
    assert_eq!(image.nodes[&2].kafka_listeners, None);
    image.apply(2, &new).unwrap();
    assert_eq!(
        image.nodes[&2]
            .kafka_listeners
            .as_ref()
            .and_then(|listeners| listeners.plaintext.as_deref()),
        Some("127.0.0.1:19102")
    );
}
