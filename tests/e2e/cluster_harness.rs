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

// Goal: the harness's bit flip damages a stopped replica's partition where it says: after
// `flip_bit`, `ledge-repair dump` of that node stops at a damaged batch starting at the
// offset `flip_bit` returned, with the batches before it intact. Method: an RF=1 topic
// placed by the controller, 200 records from the SDK through the proxies, the holding node
// stopped with SIGTERM.
#[test]
fn flip_bit_damages_the_batch_it_names() {
    let mut cluster = TestCluster::start(ClusterOptions::default());
    cluster.wait_for_all_alive();
    cluster.runtime().block_on(async {
        let client = cluster.client().await;
        ledge_client::Admin::new(&client)
            .create_topics(
                vec![
                    ledge_client::NewTopic::new("flipped", 1)
                        .replication_factor(1)
                        .config("min.insync.replicas", "1"),
                ],
                false,
            )
            .await
            .unwrap();
        let producer =
            ledge_client::Producer::new(&client, ledge_client::ProducerConfig::default())
                .await
                .unwrap();
        for chunk in 0..20 {
            let mut deliveries = Vec::new();
            for index in 0..10 {
                let record = ledge_client::ProducerRecord::new(
                    "flipped",
                    format!("value-{chunk}-{index}-with-some-bytes-to-flip"),
                )
                .partition(0);
                deliveries.push(producer.send(record).await.unwrap());
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
        }
        producer.close().await;
        client.close().await;
    });
    let holder = cluster
        .wait_for_partition("a leader", "flipped", 0, |state| state.leader.is_some())
        .leader
        .unwrap();
    cluster.terminate(holder);
    let clean = cluster.dump(holder, "flipped", 0).unwrap();
    assert_eq!(clean["end_offset"], 200, "{clean}");
    let offset = cluster.flip_bit(holder, "flipped", 0);
    let damaged = cluster.dump(holder, "flipped", 0).unwrap();
    assert_eq!(damaged["damage"]["offset"], offset, "{damaged}");
    assert!(offset > 0, "a batch in the middle: {damaged}");
    let before: Vec<&serde_json::Value> = clean["batches"]
        .as_array()
        .unwrap()
        .iter()
        .take_while(|batch| batch["base_offset"].as_i64() < Some(offset))
        .collect();
    assert_eq!(
        damaged["batches"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        before
    );
}
