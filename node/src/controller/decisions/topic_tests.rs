//! The topic admin decisions (delete, config changes, added partitions) on a pure image.

use super::*;
use crate::clock::{Clock, SystemClock};

/// An image with `nodes` registered and unfenced, and the logic that made it.
fn cluster(nodes: u32) -> (ControllerLogic, MetadataImage) {
    let mut logic = ControllerLogic::new(DecisionConfig::default());
    let mut image = MetadataImage::default();
    let now = SystemClock.now();
    for node_id in 1..=nodes {
        let request = RegisterRequest {
            node_id,
            address: format!("127.0.0.1:{}", 9100 + node_id),
            incarnation_id: u64::from(node_id),
            storage_id: None,
            kafka_listeners: None,
        };
        let (records, epoch) = logic.handle_register(&image, now, &request).unwrap();
        commit(&mut image, &records);
        let records = logic.handle_heartbeat(&image, now, node_id, epoch).unwrap();
        commit(&mut image, &records);
    }
    (logic, image)
}

fn commit(image: &mut MetadataImage, records: &[MetadataRecord]) {
    if records.is_empty() {
        return;
    }
    let index = image.last_applied_index + 1;
    image.apply_batch(index, records).unwrap();
}

fn create(logic: &ControllerLogic, image: &mut MetadataImage, name: &str, partitions: u32) {
    let request = CreateTopicRequest {
        name: name.to_owned(),
        topic_id: TopicId::derive(image.last_applied_index + 1, name),
        partitions,
        replication_factor: Some(1),
        configs: BTreeMap::new(),
    };
    let records = logic.create_topic(image, &request).unwrap();
    commit(image, &records);
}

// Goal: a delete names the topic's id, so the image drops exactly that topic; a recreate
// of the same name gets a new id; an unknown name is refused and changes nothing.
#[test]
fn a_delete_removes_the_topic_by_id_and_a_recreate_gets_a_new_id() {
    let (logic, mut image) = cluster(3);
    create(&logic, &mut image, "orders", 2);
    let first = image.topics["orders"].topic_id;
    let records = logic.delete_topic(&image, "orders").unwrap();
    assert_eq!(
        records,
        vec![MetadataRecord::DeleteTopic {
            name: "orders".into(),
            topic_id: first
        }]
    );
    commit(&mut image, &records);
    assert!(image.topics.is_empty());
    let before = image.clone();
    assert!(matches!(
        logic.delete_topic(&image, "orders"),
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));
    assert_eq!(image, before);
    create(&logic, &mut image, "orders", 2);
    assert_ne!(image.topics["orders"].topic_id, first);
    // A replayed delete of the old incarnation is refused by the image.
    let stale = MetadataRecord::DeleteTopic {
        name: "orders".into(),
        topic_id: first,
    };
    let index = image.last_applied_index + 1;
    assert!(image.apply(index, &stale).is_err());
    assert!(image.topics.contains_key("orders"));
}

// Goal: config changes are recorded; min.insync.replicas above the replication factor and
// a non-boolean unclean flag are refused; a change to nothing proposes no record.
#[test]
fn config_changes_are_checked_against_the_replication_factor() {
    let (logic, mut image) = cluster(3);
    create(&logic, &mut image, "orders", 1);
    let set = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    };
    let records = logic
        .alter_topic_config(&image, "orders", &set(&[("retention.ms", "1000")]), &[])
        .unwrap();
    commit(&mut image, &records);
    assert_eq!(image.topics["orders"].configs["retention.ms"], "1000");
    assert!(
        logic
            .alter_topic_config(&image, "orders", &set(&[("retention.ms", "1000")]), &[])
            .unwrap()
            .is_empty()
    );
    let error = logic
        .alter_topic_config(
            &image,
            "orders",
            &set(&[(MIN_INSYNC_REPLICAS_KEY, "2")]),
            &[],
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("must be between 1 and the replication factor 1"),
        "{error}"
    );
    assert!(matches!(
        logic.alter_topic_config(
            &image,
            "orders",
            &set(&[(UNCLEAN_LEADER_ELECTION_KEY, "yes")]),
            &[]
        ),
        Err(ControllerError::InvalidConfig(_))
    ));
    assert!(matches!(
        logic.alter_topic_config(&image, "missing", &set(&[]), &[]),
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));
    let records = logic
        .alter_topic_config(&image, "orders", &BTreeMap::new(), &["retention.ms".into()])
        .unwrap();
    commit(&mut image, &records);
    assert!(image.topics["orders"].configs.is_empty());
}

// Goal: added partitions keep the topic's replication factor, are placed round-robin over
// the live nodes (every node leads some), number on from the current count; shrinking, and
// growing to the current count, are refused with InvalidPartitions (Kafka's rule).
#[test]
fn added_partitions_are_placed_like_created_ones() {
    let (logic, mut image) = cluster(3);
    create(&logic, &mut image, "orders", 2);
    let records = logic.create_partitions(&image, "orders", 6, &[]).unwrap();
    commit(&mut image, &records);
    let partitions = &image.topics["orders"].partitions;
    assert_eq!(partitions.len(), 6);
    let mut leaders = BTreeMap::new();
    for state in partitions {
        assert_eq!(state.replicas.len(), 1);
        assert_eq!(state.isr, state.replicas);
        assert_eq!(state.leader, state.replicas.first().copied());
        *leaders.entry(state.leader.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    let error = logic
        .create_partitions(&image, "orders", 6, &[])
        .unwrap_err();
    assert!(matches!(error, ControllerError::InvalidPartitions(_)));
    assert!(error.to_string().contains("already has 6"), "{error}");
    let error = logic
        .create_partitions(&image, "orders", 3, &[])
        .unwrap_err();
    assert!(matches!(error, ControllerError::InvalidPartitions(_)));
    assert_eq!(
        error.to_string(),
        "cannot shrink orders from 6 to 3 partitions: Kafka and Ledge only add partitions"
    );
    assert!(matches!(
        logic.create_partitions(&image, "missing", 3, &[]),
        Err(ControllerError::UnknownTopicOrPartition(_))
    ));
}

// Goal: explicit assignments place each new partition on the nodes named, led by the first;
// a wrong count of lists, a list of another length than the replication factor, a node
// listed twice, an unregistered or a fenced node are refused with InvalidReplicaAssignment
// and propose nothing.
#[test]
fn added_partitions_follow_valid_assignments_and_refuse_bad_ones() {
    let (logic, mut image) = cluster(3);
    let request = CreateTopicRequest {
        name: "orders".to_owned(),
        topic_id: TopicId::derive(1, "orders"),
        partitions: 1,
        replication_factor: Some(2),
        configs: BTreeMap::new(),
    };
    let records = logic.create_topic(&image, &request).unwrap();
    commit(&mut image, &records);
    let bad: [(&[Vec<u32>], &str); 4] = [
        (
            &[vec![1, 2]],
            "1 assignment(s) given for 2 new partition(s)",
        ),
        (&[vec![1, 2], vec![3]], "1 replica(s) [3]"),
        (&[vec![1, 2], vec![3, 3]], "node 3 is listed twice"),
        (&[vec![1, 2], vec![3, 9]], "node 9 is not registered"),
    ];
    for (assignments, expected) in bad {
        let error = logic
            .create_partitions(&image, "orders", 3, assignments)
            .unwrap_err();
        assert!(
            matches!(error, ControllerError::InvalidReplicaAssignment(_)),
            "{error}"
        );
        assert!(error.to_string().contains(expected), "{error}");
    }
    let records = logic
        .create_partitions(&image, "orders", 3, &[vec![3, 1], vec![2, 3]])
        .unwrap();
    commit(&mut image, &records);
    let partitions = &image.topics["orders"].partitions;
    assert_eq!(partitions.len(), 3);
    assert_eq!(partitions[1].replicas, vec![3, 1]);
    assert_eq!(partitions[1].leader, Some(3));
    assert_eq!(partitions[1].isr, vec![3, 1]);
    assert_eq!(partitions[2].replicas, vec![2, 3]);
    assert_eq!(partitions[2].leader, Some(2));

    image.nodes.get_mut(&2).unwrap().fenced = true;
    let error = logic
        .create_partitions(&image, "orders", 4, &[vec![2, 1]])
        .unwrap_err();
    assert!(error.to_string().contains("node 2 is not alive"), "{error}");
}

// Goal: topic ids parse back from their text and differ by index and name.
#[test]
fn topic_ids_round_trip_through_their_text() {
    let id = TopicId::derive(42, "orders");
    assert_eq!(TopicId::parse_hex(&id.to_string()), Some(id));
    assert_ne!(TopicId::derive(43, "orders"), id);
    assert_ne!(TopicId::derive(42, "payments"), id);
    assert_eq!(TopicId::parse_hex("zz"), None);
    assert_eq!(TopicId::parse_hex(&"g".repeat(32)), None);
    assert_eq!(TopicId::parse_hex("é".repeat(16).as_str()), None);
}
