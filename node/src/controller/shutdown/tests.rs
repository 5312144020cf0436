//! The node's wait in a controlled shutdown, on paused time: it ends when the controller
//! and the node's own image agree the node leads nothing, and gives up after the timeout
//! when no controller answers.

use std::collections::BTreeMap;

use super::*;
use crate::clock::SimClock;
use crate::controller::records::{MetadataRecord, PartitionState, TopicId};

const NODE: NodeId = 1;
const TIMEOUT: Duration = Duration::from_secs(30);

/// An image where `leader` leads partition 0 of a one-partition topic on [1, 2].
fn image_led_by(leader: Option<NodeId>) -> Arc<MetadataImage> {
    let mut image = MetadataImage::default();
    let record = MetadataRecord::CreateTopic {
        name: "orders".to_owned(),
        topic_id: TopicId([7; 16]),
        configs: BTreeMap::new(),
        partitions: vec![PartitionState {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            elr: Vec::new(),
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }],
    };
    image.apply(1, &record).unwrap();
    Arc::new(image)
}

// Goal: the wait ends once the controller answered 0 AND the node's own image no longer
// shows it leading (the replication driver follows that image), whichever comes last.
#[tokio::test(start_paused = true)]
async fn the_wait_ends_when_the_controller_and_the_own_image_agree() {
    let clock = SimClock::new(0);
    let (handle, mut link) = shutdown_channel();
    let (image_sender, image) = watch::channel(image_led_by(Some(NODE)));
    let session = tokio::spawn(async move {
        // The session sees the request, the controller answers 0 at once, and the image
        // catches up a little later.
        link.requested
            .wait_for(|requested| *requested)
            .await
            .unwrap();
        link.progress.send_replace(Some(0));
        crate::clock::sleep(&clock, Duration::from_millis(300)).await;
        image_sender.send_replace(image_led_by(Some(2)));
        (link, image_sender)
    });
    let outcome = handle.run(NODE, image, &clock, TIMEOUT).await;
    assert_eq!(
        outcome,
        ShutdownOutcome::Moved {
            leaderships: 1,
            elapsed: Duration::from_millis(300)
        }
    );
    session.await.unwrap();
}

// Goal: with no controller answering, the node gives up after the timeout and says how many
// leaderships it still has; a controller that answers "1 left" is reported as answering.
#[tokio::test(start_paused = true)]
async fn with_no_answer_the_wait_gives_up_after_the_timeout() {
    let clock = SimClock::new(0);
    let (handle, _link) = shutdown_channel();
    let (_image_sender, image) = watch::channel(image_led_by(Some(NODE)));
    let outcome = handle.run(NODE, image, &clock, TIMEOUT).await;
    assert_eq!(
        outcome,
        ShutdownOutcome::TimedOut {
            leaderships_left: 1,
            controller_answered: false,
            elapsed: TIMEOUT
        }
    );
    let (handle, link) = shutdown_channel();
    link.progress.send_replace(Some(1));
    let (_image_sender, image) = watch::channel(image_led_by(Some(NODE)));
    let outcome = handle.run(NODE, image, &clock, TIMEOUT).await;
    assert!(matches!(
        outcome,
        ShutdownOutcome::TimedOut {
            leaderships_left: 1,
            controller_answered: true,
            ..
        }
    ));
}

// Goal: a node leading nothing (a follower everywhere, or leaderless last ISR member) stops
// as soon as the controller confirms; if the image's sender is gone (the controller
// stopped), the wait ends at once instead of spinning or waiting out the timeout.
#[tokio::test(start_paused = true)]
async fn a_node_leading_nothing_stops_at_the_first_answer_and_a_closed_image_ends_the_wait() {
    let clock = SimClock::new(0);
    let (handle, link) = shutdown_channel();
    link.progress.send_replace(Some(0));
    let (_image_sender, image) = watch::channel(image_led_by(None));
    assert_eq!(
        handle.run(NODE, image, &clock, TIMEOUT).await,
        ShutdownOutcome::Moved {
            leaderships: 0,
            elapsed: Duration::ZERO
        }
    );
    let (handle, _link) = shutdown_channel();
    let (image_sender, image) = watch::channel(image_led_by(Some(NODE)));
    drop(image_sender);
    let outcome = handle.run(NODE, image, &clock, TIMEOUT).await;
    assert!(
        matches!(outcome, ShutdownOutcome::TimedOut { elapsed, .. } if elapsed < TIMEOUT),
        "{outcome:?}"
    );
}

// Goal: `cluster.controlled_shutdown_enable` and `cluster.controlled_shutdown_timeout_ms`
// default to Kafka's behaviour (on, 30 s), are read when given, and a zero timeout is
// refused with one line naming the key.
#[test]
fn the_controlled_shutdown_keys_have_their_defaults_and_are_checked() {
    let section = |extra: &str| {
        format!(
            "[cluster]\nnode_id = 1\ncluster_id = \"c0ffee\"\n\
             peers = [{{ id = 1, address = \"127.0.0.1:9101\" }}, {{ id = 2, address = \"127.0.0.1:9102\" }}]\n\
             ca_file = \"ca.pem\"\ncert_file = \"n.pem\"\nkey_file = \"n.key\"\n{extra}\n"
        )
    };
    let parse = |extra: &str| crate::config::NodeConfig::from_toml(&section(extra), "node.toml");
    let cluster = parse("").unwrap().cluster.unwrap();
    assert!(cluster.controlled_shutdown_enable);
    assert_eq!(
        cluster.controlled_shutdown_timeout,
        Duration::from_millis(CONTROLLED_SHUTDOWN_TIMEOUT_MS_DEFAULT)
    );
    let cluster =
        parse("controlled_shutdown_enable = false\ncontrolled_shutdown_timeout_ms = 5000")
            .unwrap()
            .cluster
            .unwrap();
    assert!(!cluster.controlled_shutdown_enable);
    assert_eq!(cluster.controlled_shutdown_timeout, Duration::from_secs(5));
    let error = parse("controlled_shutdown_timeout_ms = 0")
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "node.toml: cluster.controlled_shutdown_timeout_ms must be positive"
    );
}
