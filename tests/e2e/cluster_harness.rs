//! The 3-node process harness itself (`ledge_e2e::cluster_harness`), on what runs without
//! the replication data plane: nodes that advertise their proxies' addresses and listen
//! elsewhere form the controller quorum through the proxies; a node cut off by the proxies
//! is fenced and readmitted when healed; SIGSTOP and SIGCONT, and all nodes killed at once
//! and restarted, are seen by the controller.

use ledge_e2e::cluster_harness::{ClusterOptions, TestCluster, alive, node_epoch};
use ledge_e2e::fault_proxy::LinkFaults;

// Goal: peers and clients reach every node only through its proxy (the addresses the
// cluster lists are the proxies', and the proxies forward peer datagrams both ways); cutting
// every link to and from the controller with the proxies, while its process runs, makes the
// others elect another controller and fence it; healing readmits it. Method: cluster-init's
// configs rewritten by the harness, `cut_one_way` both ways between the controller and each
// other node, `ledge cluster describe` asked of the other nodes, polled under deadlines.
#[test]
fn a_cluster_behind_proxies_fences_a_cut_off_controller_and_readmits_it() {
    let cluster = TestCluster::start(ClusterOptions::default());
    let described = cluster.wait_for_all_alive();
    for id in cluster.ids() {
        let address = cluster.node(id).address().to_string();
        let listed = described["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|node| node["id"].as_u64() == Some(u64::from(id)))
            .unwrap();
        assert_eq!(listed["address"], address, "{described}");
        assert_ne!(cluster.node(id).process.addr.to_string(), address);
        let counts = cluster.node(id).proxy.counts();
        assert!(
            counts.to_node.forwarded > 0 && counts.from_node.forwarded > 0,
            "node {id}'s proxy forwarded nothing: {counts:?}"
        );
    }
    let controller = u32::try_from(described["controller"].as_u64().unwrap()).unwrap();
    let others: Vec<u32> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != controller)
        .collect();
    for other in &others {
        cluster.cut_one_way(controller, *other, LinkFaults::block());
        cluster.cut_one_way(*other, controller, LinkFaults::block());
    }
    cluster.wait_for_cluster(
        "another controller, and the cut-off one fenced",
        &others,
        |described| {
            described["controller"]
                .as_u64()
                .is_some_and(|id| id != u64::from(controller))
                && !alive(described, controller)
                && others.iter().all(|id| alive(described, *id))
        },
    );
    cluster.heal();
    cluster.wait_for_cluster("every node alive again", &others, |described| {
        described["controller"].as_u64().is_some()
            && cluster.ids().iter().all(|id| alive(described, *id))
    });
}

// Goal: a node stopped with SIGSTOP is fenced and, continued, is alive again; all nodes
// killed at once and restarted form the quorum again, each registered at a larger node
// epoch. Method: the harness's pause/resume, kill_all/restart_all, describe polled.
#[test]
fn paused_and_all_killed_nodes_come_back() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    let before = cluster.wait_for_all_alive();
    let controller = u32::try_from(before["controller"].as_u64().unwrap()).unwrap();
    let paused = cluster
        .ids()
        .into_iter()
        .find(|id| *id != controller)
        .unwrap();
    cluster.pause(paused);
    cluster.wait_for_cluster("the paused node fenced", &cluster.serving(), |described| {
        !alive(described, paused)
    });
    cluster.resume(paused);
    cluster.wait_for_all_alive();

    cluster.kill_all();
    assert!(cluster.serving().is_empty());
    cluster.restart_all();
    cluster.wait_for_cluster(
        "every node alive at a larger epoch",
        &cluster.serving(),
        |described| {
            described["controller"].as_u64().is_some()
                && cluster.ids().iter().all(|id| {
                    let old = node_epoch(&before, *id).unwrap().1;
                    node_epoch(described, *id).is_some_and(|(alive, epoch)| alive && epoch > old)
                })
        },
    );
}
