//! A node restarted with a wiped data directory, in real processes (review findings 1 and
//! 2 of issue 13): it rejoins the controller quorum without starting one of its own, and it
//! is not elected for the partitions whose only in-sync copy it held.

use ledge_e2e::cluster_harness::{ClusterOptions, TestCluster, alive, node_epoch};

// Goal: a node whose data directory is wiped (a) has no bootstrap marker, so it does not
// initialize a controller quorum of its own: it registers again and its own `cluster
// describe` shows the whole cluster, caught up from the others; (b) registers with a new
// storage id, so the partition whose only ISR member it was stays offline with an empty ISR
// (unclean election is off) instead of being led from its empty log. Method: the 3-node
// harness behind proxies, an RF=1 topic placed by the controller, `restart_wiped` of a node
// that leads a partition and is not the controller, the `ledge` CLI polled under deadlines.
#[test]
fn a_wiped_node_rejoins_the_quorum_but_does_not_lead_the_partitions_it_lost() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    cluster.wait_for_all_alive();
    cluster
        .cli(&["topic", "create", "orders", "--partitions", "3", "-r", "1"])
        .expect("topic create");
    let controller = cluster.controller().expect("a controller");
    let (partition, wiped) = (0..3)
        .find_map(|partition| {
            let state = cluster.wait_for_partition("placed", "orders", partition, |state| {
                state.leader.is_some()
            });
            state
                .leader
                .filter(|leader| *leader != controller)
                .map(|leader| (partition, leader))
        })
        .expect("a partition led by a node other than the controller");
    let before = cluster.describe_cluster().expect("cluster describe");
    let (_, epoch_before) = node_epoch(&before, wiped).expect("the node's epoch");

    cluster.restart_wiped(wiped);
    let ids = cluster.ids();
    cluster.wait_for_cluster(
        "the wiped node registered again and caught up (asked of itself)",
        &[wiped],
        |described| {
            described["controller"].as_u64().is_some()
                && ids.iter().all(|id| alive(described, *id))
                && node_epoch(described, wiped).is_some_and(|(_, epoch)| epoch > epoch_before)
        },
    );
    let state = cluster.wait_for_partition(
        "the lost partition offline with an empty ISR",
        "orders",
        partition,
        |state| state.leader.is_none() && state.isr.is_empty(),
    );
    assert_eq!(state.replicas, vec![wiped], "{state:?}");
    // The partitions it did not hold are untouched.
    for other in (0..3).filter(|other| *other != partition) {
        let state = cluster.partition_state("orders", other).expect("describe");
        if !state.replicas.contains(&wiped) {
            assert!(state.leader.is_some(), "partition {other}: {state:?}");
        }
    }
}
