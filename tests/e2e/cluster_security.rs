//! Issue 15 in a `[cluster]`: users and ACLs are the controller's. A user created through one
//! node and an ACL added through another are seen by every node, survive a node's restart
//! (replayed from the metadata log), and are not kept in the nodes' `security.json`.

use ledge_e2e::{NodeProcess, run_cli};

use crate::cluster_topics::{Cluster, until};

fn cli(
    cluster: &Cluster,
    node: &NodeProcess,
    args: &[&str],
    stdin: Option<&str>,
) -> Option<String> {
    let server = node.addr.to_string();
    let mut full = vec!["--server", server.as_str(), "--ca", cluster.ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, _) = run_cli(&full, stdin);
    status.success().then_some(stdout)
}

fn listed(cluster: &Cluster, node: &NodeProcess, what: &str) -> serde_json::Value {
    cli(cluster, node, &[what, "list", "--format", "json"], None)
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn users_and_acls_are_the_controllers() {
    let mut cluster = Cluster::start();
    let created = cli(
        &cluster,
        &cluster.nodes[0],
        &[
            "user",
            "create",
            "alice",
            "--password-stdin",
            "--iterations",
            "8192",
        ],
        Some("alice-secret\n"),
    );
    assert!(created.is_some(), "user create failed");
    let added = cli(
        &cluster,
        &cluster.nodes[1],
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
        None,
    );
    assert!(added.is_some(), "acl add failed");
    for node in &cluster.nodes {
        until("every node lists the user and the ACL", || {
            listed(&cluster, node, "user")[0]["credentials"][0]["iterations"] == 8192
                && listed(&cluster, node, "acl")[0]["principal"] == "User:alice"
        });
    }
    // The user is the controller's, not in any node's own file.
    for node in &cluster.nodes {
        let file = std::fs::read_to_string(node.data_dir.join("security.json")).unwrap();
        let file: serde_json::Value = serde_json::from_str(&file).unwrap();
        assert_eq!(file["users"], serde_json::json!({}), "{file}");
        assert!(file["decoy_secret"].is_string(), "{file}");
    }
    cluster.nodes[2].restart();
    until("the restarted node lists them again", || {
        listed(&cluster, &cluster.nodes[2], "user")[0]["name"] == "alice"
            && listed(&cluster, &cluster.nodes[2], "acl")[0]["resource_name"] == "orders"
    });
    // A refusal decided by the controller comes back as the node's one line.
    let address = cluster.nodes[2].addr.to_string();
    let (status, _, stderr) = run_cli(
        &[
            "--server",
            &address,
            "--ca",
            &cluster.ca,
            "user",
            "delete",
            "alice",
            "--mechanism",
            "SCRAM-SHA-256",
        ],
        None,
    );
    assert!(!status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    let first = cluster.nodes[0].addr.to_string();
    let (status, _, stderr) = run_cli(
        &[
            "--server",
            &first,
            "--ca",
            &cluster.ca,
            "user",
            "delete",
            "alice",
        ],
        None,
    );
    assert!(status.success(), "user delete failed: {stderr}");
    until("the user is gone everywhere", || {
        cluster
            .nodes
            .iter()
            .all(|node| listed(&cluster, node, "user") == serde_json::json!([]))
    });
}
