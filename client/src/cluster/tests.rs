//! The routing state machine on its own: leader moves, nodes that disappear, stale answers.

use std::time::Duration;

use ledge_protocol::wire::{
    ErrorCode, MetadataResponse, NodeMetadata, PartitionMetadata, TopicMetadata,
};

use super::*;

const MAX_AGE: Duration = Duration::from_secs(300);

fn node(node_id: u32) -> NodeMetadata {
    NodeMetadata {
        node_id,
        address: format!("10.0.0.{node_id}:9092"),
    }
}

/// A Metadata answer for topic `t` with one partition per `(leader, epoch)`.
fn answer(nodes: &[u32], partitions: &[(Option<u32>, i32)]) -> MetadataResponse {
    MetadataResponse {
        node_id: nodes.first().copied().unwrap_or(1),
        nodes: nodes.iter().copied().map(node).collect(),
        controller_id: nodes.first().copied(),
        topics: vec![TopicMetadata {
            name: "t".into(),
            error: ErrorCode::None,
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(index, (leader, leader_epoch))| PartitionMetadata {
                    partition: index as u32,
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    replicas: nodes.to_vec(),
                    isr: nodes.to_vec(),
                    ..PartitionMetadata::default()
                })
                .collect(),
            ..TopicMetadata::default()
        }],
    }
}

fn leader(view: &ClusterMetadata, partition: u32) -> Option<(u32, i32)> {
    view.route("t", partition)
        .map(|route| (route.node_id, route.leader_epoch))
}

// Goal: an empty view has no routes and is due; an answer gives each partition its leader's
// node, address and epoch, and the view is fresh until max_age passes.
#[test]
fn an_answer_routes_each_partition_to_its_leader_until_it_ages() {
    let start = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    assert!(view.needs_refresh(start));
    assert_eq!(view.route("t", 0), None);

    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(2), 5), (Some(3), 1)]), start);
    assert_eq!(
        view.route("t", 0),
        Some(Route {
            node_id: 2,
            address: "10.0.0.2:9092".into(),
            leader_epoch: 5
        })
    );
    assert_eq!(leader(&view, 1), Some((3, 1)));
    assert_eq!(view.route("t", 2), None, "no such partition");
    assert_eq!(view.controller(), Some(1));
    assert!(!view.needs_refresh(start + MAX_AGE - Duration::from_millis(1)));
    assert!(view.needs_refresh(start + MAX_AGE));
}

// Goal: a leader move is learnt through NotLeaderOrFollower: the old route is dropped at once
// (nothing more goes to the old leader), a refresh is due, and the refreshed answer routes to
// the new leader at the new epoch. FencedLeaderEpoch does the same.
#[test]
fn a_leader_move_drops_the_route_until_the_refresh() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2], &[(Some(1), 0), (Some(2), 0)]), now);

    view.handle_partition_error("t", 0, ErrorCode::NotLeaderOrFollower);
    assert_eq!(leader(&view, 0), None);
    assert_eq!(
        leader(&view, 1),
        Some((2, 0)),
        "other partitions keep their route"
    );
    assert!(view.needs_refresh(now));
    view.handle_metadata(&answer(&[1, 2], &[(Some(2), 1), (Some(2), 0)]), now);
    assert_eq!(leader(&view, 0), Some((2, 1)));
    assert!(!view.needs_refresh(now));

    view.handle_partition_error("t", 1, ErrorCode::FencedLeaderEpoch);
    assert_eq!(leader(&view, 1), None);
    assert!(view.needs_refresh(now));

    // UnknownLeaderEpoch: the node is behind us; keep the route, no refresh.
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1], &[(Some(1), 3)]), now);
    view.handle_partition_error("t", 0, ErrorCode::UnknownLeaderEpoch);
    assert_eq!(leader(&view, 0), Some((1, 3)));
    assert!(!view.needs_refresh(now));
    // Errors that say nothing about metadata change nothing.
    view.handle_partition_error("t", 0, ErrorCode::NotEnoughReplicas);
    assert!(!view.needs_refresh(now));
    view.handle_partition_error("t", 0, ErrorCode::UnknownTopicOrPartition);
    assert!(view.needs_refresh(now));
}

/// [`answer`] for a topic with id `topic_id`.
fn answer_with_id(
    topic_id: &str,
    nodes: &[u32],
    partitions: &[(Option<u32>, i32)],
) -> MetadataResponse {
    let mut response = answer(nodes, partitions);
    for topic in &mut response.topics {
        topic.topic_id = topic_id.to_string();
    }
    response
}

// Goal (review finding 8, KIP-516): a topic deleted and created again under the same name
// (a new topic id) is routed by the new answer although its leader epochs started over,
// instead of by the old topic's routes kept as "newer"; the same id with an older epoch is
// still a stale answer.
#[test]
fn a_topic_created_again_under_its_name_is_not_routed_by_the_old_ones_routes() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(
        &answer_with_id("aa", &[1, 2, 3], &[(Some(1), 7), (Some(2), 4)]),
        now,
    );
    view.handle_metadata(
        &answer_with_id("aa", &[1, 2, 3], &[(Some(3), 6), (Some(3), 4)]),
        now,
    );
    assert_eq!(
        leader(&view, 0),
        Some((1, 7)),
        "same topic, older epoch: stale"
    );
    assert!(view.needs_refresh(now));

    view.handle_metadata(
        &answer_with_id("bb", &[1, 2, 3], &[(Some(3), 0), (Some(2), 0)]),
        now,
    );
    assert_eq!(leader(&view, 0), Some((3, 0)));
    assert_eq!(leader(&view, 1), Some((2, 0)));
    assert!(!view.needs_refresh(now));

    // A node that answers without ids (a single node) changes nothing about them.
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(3), 1), (Some(2), 0)]), now);
    assert_eq!(leader(&view, 0), Some((3, 1)));
}

// Goal: a node that disappears takes its routes with it: one that cannot be reached forgets
// the leaders on it, and an answer that no longer lists the node leaves its partitions without
// a route even if a partition still names it (the address is unknown).
#[test]
fn a_node_that_disappears_loses_its_routes() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2], &[(Some(1), 0), (Some(2), 0)]), now);

    view.handle_node_unreachable("10.0.0.1:9092", now);
    assert_eq!(leader(&view, 0), None);
    assert_eq!(leader(&view, 1), Some((2, 0)));
    assert!(view.needs_refresh(now));

    // The controller has not fenced node 1 yet, but the answer lists only node 2.
    view.handle_metadata(&answer(&[2], &[(Some(1), 0), (Some(2), 0)]), now);
    assert_eq!(leader(&view, 0), None, "node 1 has no address any more");
    // Once elected elsewhere, the partition routes again.
    view.handle_metadata(&answer(&[2], &[(Some(2), 1), (Some(2), 0)]), now);
    assert_eq!(leader(&view, 0), Some((2, 1)));
}

// Goal: KIP-320 on the client: an answer from a node that has not heard of the latest
// election (an older leader epoch) does not move a partition back to the old leader, and
// the view stays due so the next refresh asks again; newer and equal epochs are taken.
#[test]
fn an_answer_with_an_older_epoch_is_ignored() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2], &[(Some(2), 4), (Some(1), 0)]), now);

    view.handle_metadata(&answer(&[1, 2], &[(Some(1), 3), (Some(2), 1)]), now);
    assert_eq!(
        leader(&view, 0),
        Some((2, 4)),
        "the stale epoch 3 is ignored"
    );
    assert_eq!(leader(&view, 1), Some((2, 1)), "the newer epoch is taken");
    assert!(view.needs_refresh(now));

    view.handle_metadata(&answer(&[1, 2], &[(Some(2), 4), (Some(2), 1)]), now);
    assert!(!view.needs_refresh(now));
}

// Goal: tracking a new topic makes the view due (its partitions are unknown), a topic that is
// gone loses its routes, and a topic's partitions added later appear with the next answer.
#[test]
fn topics_come_grow_and_go() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1], &[(Some(1), 0)]), now);
    assert_eq!(view.tracked_topics(), vec!["t".to_string()]);
    view.track("t");
    assert!(
        !view.needs_refresh(now),
        "a known topic does not make the view due"
    );
    view.track("u");
    assert!(view.needs_refresh(now));
    assert_eq!(
        view.tracked_topics(),
        vec!["t".to_string(), "u".to_string()]
    );

    view.handle_metadata(&answer(&[1], &[(Some(1), 0), (Some(1), 0)]), now);
    assert_eq!(
        leader(&view, 1),
        Some((1, 0)),
        "an added partition is routed"
    );

    let mut gone = answer(&[1], &[]);
    gone.topics[0].error = ErrorCode::UnknownTopicOrPartition;
    view.handle_metadata(&gone, now);
    assert_eq!(leader(&view, 0), None);
    assert_eq!(leader(&view, 1), None);

    // An answer without a node list keeps the nodes known.
    let mut nodeless = answer(&[1], &[(Some(1), 0)]);
    nodeless.nodes.clear();
    view.handle_metadata(&nodeless, now);
    assert_eq!(leader(&view, 0), Some((1, 0)));
}

fn address(node_id: u32) -> String {
    format!("10.0.0.{node_id}:9092")
}

fn socket(node_id: u32) -> SocketAddr {
    address(node_id).parse().expect("a socket address")
}

// Goal (the bug behind kill9_of_the_controller): a leader that cannot be reached, and that the
// next answer still names (the cluster has not fenced it yet), keeps the view due for refresh,
// so the client asks again until the election shows, instead of trusting the dead route
// until max_age. Once another leader is named the view is fresh again, even though the dead
// node stays unreachable.
#[test]
fn an_answer_that_still_names_an_unreachable_leader_leaves_the_view_due() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(1), 4), (Some(2), 0)]), now);
    assert!(!view.needs_refresh(now));

    view.handle_node_unreachable(&address(1), now);
    assert!(view.needs_refresh(now));
    // Node 2 has not heard of node 1's death: same leader, same epoch.
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(1), 4), (Some(2), 0)]), now);
    assert_eq!(
        leader(&view, 0),
        Some((1, 4)),
        "the answer is the best we know"
    );
    assert!(
        view.needs_refresh(now),
        "but it names a node we cannot reach"
    );
    assert!(view.needs_refresh(now + Duration::from_millis(1)));

    view.handle_metadata(&answer(&[2, 3], &[(Some(3), 5), (Some(2), 0)]), now);
    assert_eq!(leader(&view, 0), Some((3, 5)));
    assert!(!view.needs_refresh(now));
}

// Goal: an unreachable node that answers again is trusted again: an answer that names it is
// fresh.
#[test]
fn a_node_that_answers_again_is_trusted_again() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2], &[(Some(1), 0)]), now);
    view.handle_node_unreachable(&address(1), now);
    view.handle_node_answered(&address(1));
    view.handle_metadata(&answer(&[1, 2], &[(Some(1), 0)]), now);
    assert!(!view.needs_refresh(now));
    assert_eq!(leader(&view, 0), Some((1, 0)));
}

// Goal: metadata is asked of the preferred node first, then the known nodes and the bootstrap
// list (deduplicated, in that order); nodes that failed go after those that never did, those
// still backing off last (soonest over first), and a node a request is stuck on after all.
#[test]
fn metadata_is_asked_of_live_nodes_first() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    let bootstrap = vec![address(1), address(4)];
    assert_eq!(
        view.metadata_nodes(now, &address(1), &bootstrap, None),
        vec![address(1), address(4)],
        "before any answer: the default node, then the bootstrap list"
    );
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(1), 0)]), now);
    assert_eq!(
        view.metadata_nodes(now, &address(2), &bootstrap, None),
        vec![address(2), address(1), address(3), address(4)]
    );

    // Node 1 fails once (backs off for NODE_BACKOFF_MIN), node 2 twice (twice as long).
    view.handle_node_unreachable(&address(1), now);
    view.handle_node_unreachable(&address(2), now);
    view.handle_node_unreachable(&address(2), now);
    assert_eq!(
        view.metadata_nodes(now, &address(2), &bootstrap, None),
        vec![address(3), address(4), address(1), address(2)]
    );
    assert_eq!(
        view.metadata_nodes(now, &address(2), &bootstrap, Some(&address(3))),
        vec![address(4), address(1), address(2), address(3)],
        "the node a request is stuck on is asked last"
    );
    // Node 1's backoff is over, node 2's not yet: node 1 may be tried before it.
    let later = now + NODE_BACKOFF_MIN;
    assert_eq!(
        view.metadata_nodes(later, &address(2), &bootstrap, None),
        vec![address(3), address(4), address(1), address(2)]
    );
    // Node 2's too: both are "failed, backoff over", in the preferred order.
    let later = now + NODE_BACKOFF_MIN * 2;
    assert_eq!(
        view.metadata_nodes(later, &address(2), &bootstrap, None),
        vec![address(3), address(4), address(2), address(1)]
    );
}

// Goal: the backoff of a node that keeps failing doubles from NODE_BACKOFF_MIN up to
// NODE_BACKOFF_MAX, and an answer resets it.
#[test]
fn the_backoff_of_a_failing_node_doubles_up_to_its_maximum() {
    assert_eq!(node_backoff(1), NODE_BACKOFF_MIN);
    assert_eq!(node_backoff(2), NODE_BACKOFF_MIN * 2);
    assert_eq!(node_backoff(3), NODE_BACKOFF_MIN * 4);
    assert_eq!(node_backoff(64), NODE_BACKOFF_MAX);
    assert_eq!(node_backoff(u32::MAX), NODE_BACKOFF_MAX);

    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    let bootstrap = vec![address(1), address(2)];
    for _ in 0..3 {
        view.handle_node_unreachable(&address(1), now);
    }
    let backing_off = now + NODE_BACKOFF_MIN * 3;
    assert_eq!(
        view.metadata_nodes(backing_off, &address(1), &bootstrap, None),
        vec![address(2), address(1)],
        "after three failures node 1 backs off for 4 x the minimum"
    );
    view.handle_node_answered(&address(1));
    assert_eq!(
        view.metadata_nodes(now, &address(1), &bootstrap, None),
        vec![address(1), address(2)]
    );
}

// Goal: a request still out to a node is given up only when one of its partitions has a
// newer leader epoch or a leader elsewhere; the same leader, an unknown leader, or a request
// that was sent without an epoch to the node that now leads keep it waiting.
#[test]
fn a_request_is_given_up_only_when_its_leader_moved() {
    let now = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(1), 4), (None, 2)]), now);
    assert!(!view.leader_moved("t", 0, socket(1), Some(4)));
    assert!(
        !view.leader_moved("t", 1, socket(1), Some(2)),
        "no leader known"
    );
    assert!(
        !view.leader_moved("other", 0, socket(1), Some(2)),
        "unknown topic"
    );

    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(2), 5), (None, 2)]), now);
    assert!(
        view.leader_moved("t", 0, socket(1), Some(4)),
        "elected elsewhere"
    );
    assert!(!view.leader_moved("t", 0, socket(2), Some(5)));
    assert!(
        !view.leader_moved("t", 0, socket(2), None),
        "sent to the right node"
    );
    assert!(
        view.leader_moved("t", 0, socket(1), None),
        "sent to a node that does not lead"
    );
    // The same node re-elected (its epoch bumped): the old request was fenced anyway.
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(2), 6), (None, 2)]), now);
    assert!(view.leader_moved("t", 0, socket(2), Some(5)));
}

// Goal: a node that an answer listed and a later one omits has left the cluster (it was
// fenced), until an answer lists it again; a node never listed (reached at an address it
// does not advertise) never counts as left, and an answer without nodes changes nothing.
#[test]
fn a_node_the_cluster_stops_listing_has_left_until_it_is_listed_again() {
    let start = crate::clock::now();
    let mut view = ClusterMetadata::new(MAX_AGE);
    assert!(!view.node_left(socket(1)));
    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(1), 1)]), start);
    assert!((1..=3).all(|id| !view.node_left(socket(id))));

    view.handle_metadata(&answer(&[2, 3], &[(Some(2), 2)]), start);
    assert!(view.node_left(socket(1)), "fenced: no longer listed");
    assert!(!view.node_left(socket(2)));
    assert!(!view.node_left(socket(9)), "never listed");

    let mut empty = answer(&[], &[(Some(2), 2)]);
    empty.nodes.clear();
    view.handle_metadata(&empty, start);
    assert!(
        view.node_left(socket(1)),
        "an answer without nodes says nothing"
    );

    view.handle_metadata(&answer(&[1, 2, 3], &[(Some(2), 2)]), start);
    assert!(
        !view.node_left(socket(1)),
        "back: registered and unfenced again"
    );
}
