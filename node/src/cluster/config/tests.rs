use super::*;
use crate::cluster::init::{InitOptions, init};
use crate::config::NodeConfig;

/// A valid three-node `[cluster]` section for node 1, with `extra` lines added to it.
fn cluster_toml(extra: &str) -> String {
    format!(
        r#"
[cluster]
node_id = 1
cluster_id = "c0ffee"
peers = [
  {{ id = 1, address = "127.0.0.1:9101" }},
  {{ id = 2, address = "127.0.0.1:9102" }},
  {{ id = 3, address = "127.0.0.1:9103" }},
]
ca_file = "tls/ca.pem"
cert_file = "tls/node-1.pem"
key_file = "tls/node-1.key"
{extra}
"#
    )
}

fn refused(text: &str) -> String {
    let error = NodeConfig::from_toml(text, "node.toml")
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("node.toml: "), "{error}");
    assert_eq!(error.lines().count(), 1, "one line: {error}");
    error
}

// Goal: a valid section parses with the documented defaults, and the node takes its id and
// listen address from it.
#[test]
fn a_cluster_section_parses_with_its_defaults() {
    let config = NodeConfig::from_toml(&cluster_toml(""), "node.toml").unwrap();
    let cluster = config.cluster.unwrap();
    assert_eq!(cluster.node_id, 1);
    assert_eq!(config.broker.node_id, 1);
    assert_eq!(config.listen, "127.0.0.1:9101".parse().unwrap());
    assert_eq!(cluster.controller_voters, vec![1, 2, 3]);
    assert_eq!(cluster.default_replication_factor, 3);
    assert_eq!(cluster.min_insync_replicas, 2);
    assert!(!cluster.unclean_leader_election_enable);
    assert_eq!(cluster.replica_lag_time_max, Duration::from_secs(30));
    assert_eq!(cluster.replica_fetch_wait_max, Duration::from_millis(500));
    assert_eq!(cluster.node_heartbeat_interval, Duration::from_millis(250));
    assert_eq!(cluster.node_session_timeout, Duration::from_millis(1_500));
    assert_eq!(cluster.peer_request_timeout, Duration::from_millis(1_000));
    assert_eq!(cluster.peer_frame_bytes_max, PEER_FRAME_BYTES_MAX_DEFAULT);
    assert!(cluster.warnings().is_empty());
}

// Goal: no [cluster] section is a one-node cluster, node 1, exactly as before.
#[test]
fn no_cluster_section_is_node_one_alone() {
    let config = NodeConfig::from_toml("", "node.toml").unwrap();
    assert!(config.cluster.is_none());
    assert_eq!(config.broker.node_id, 1);
}

// Goal: each mistake the issue lists is refused with one line naming the key(s).
#[test]
fn each_bad_cluster_section_is_refused_with_one_clear_line() {
    let duplicate = cluster_toml("").replace(
        r#"{ id = 3, address = "127.0.0.1:9103" }"#,
        r#"{ id = 2, address = "127.0.0.1:9103" }"#,
    );
    let error = refused(&duplicate);
    assert!(error.contains("duplicate node id 2"), "{error}");

    let error = refused(&cluster_toml("").replace("node_id = 1", "node_id = 7"));
    assert!(
        error.contains("cluster.node_id 7 is not in cluster.peers (ids 1, 2, 3)"),
        "{error}"
    );

    let error = refused(&cluster_toml("controller_voters = [1, 4]"));
    assert!(
        error.contains("cluster.controller_voters names node 4"),
        "{error}"
    );
    let error = refused(&cluster_toml("controller_voters = []"));
    assert!(
        error.contains("cluster.controller_voters is empty"),
        "{error}"
    );

    let error = refused(&cluster_toml(
        "min_insync_replicas = 3\ndefault_replication_factor = 2",
    ));
    assert!(
        error.contains(
            "cluster.min_insync_replicas (3) is above cluster.default_replication_factor (2)"
        ),
        "{error}"
    );
    let error = refused(&cluster_toml("default_replication_factor = 4"));
    assert!(
        error.contains("cluster.default_replication_factor (4) is above the number of nodes in cluster.peers (3)"),
        "{error}"
    );

    let error = refused(&cluster_toml("").replace("c0ffee", "Bad_Id"));
    assert!(error.contains("cluster.cluster_id"), "{error}");
    let error = refused(&cluster_toml("").replace("cert_file = \"tls/node-1.pem\"", ""));
    assert!(error.contains("cluster.cert_file is missing"), "{error}");
    let error = refused(&cluster_toml("").replace("127.0.0.1:9103", "127.0.0.1:9102"));
    assert!(
        error.contains("share the address 127.0.0.1:9102"),
        "{error}"
    );
    let error = refused(&cluster_toml("").replace("127.0.0.1:9103", "nowhere"));
    assert!(error.contains("node 3: address \"nowhere\""), "{error}");
    let error = refused(&format!(
        "[node]\nlisten = \"127.0.0.1:9999\"\n{}",
        cluster_toml("")
    ));
    assert!(
        error.contains("node.listen (127.0.0.1:9999) disagrees"),
        "{error}"
    );
    let error = refused(&format!("[node]\nnode_id = 2\n{}", cluster_toml("")));
    assert!(
        error.contains("node.node_id (2) disagrees with cluster.node_id (1)"),
        "{error}"
    );
    let error = refused(&format!(
        "[tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n{}",
        cluster_toml("")
    ));
    assert!(
        error.contains("[tls] cert/key cannot be combined with [cluster]"),
        "{error}"
    );
    let error = refused(&cluster_toml("replica_fetch_wait_max_ms = 30000"));
    assert!(
        error.contains("cluster.replica_fetch_wait_max_ms (30000) must be below"),
        "{error}"
    );
    // A peer request must give up before a node's session expires.
    let error = refused(&cluster_toml("peer_request_timeout_ms = 10000"));
    assert!(
        error.contains(
            "cluster.peer_request_timeout_ms (10000) must be below cluster.node_session_timeout_ms (1500)"
        ),
        "{error}"
    );
    // The default peer request timeout against a shorter session.
    let error = refused(&cluster_toml("node_session_timeout_ms = 800"));
    assert!(
        error.contains("cluster.peer_request_timeout_ms (1000) must be below cluster.node_session_timeout_ms (800)"),
        "{error}"
    );
    // The default fetch wait against a shorter peer request timeout.
    let error = refused(&cluster_toml("peer_request_timeout_ms = 400"));
    assert!(
        error.contains("cluster.replica_fetch_wait_max_ms (500) must be below cluster.peer_request_timeout_ms (400)"),
        "{error}"
    );
    // The default heartbeat against a session no longer than it.
    let error = refused(&cluster_toml(
        "node_session_timeout_ms = 250\npeer_request_timeout_ms = 200\nreplica_fetch_wait_max_ms = 100",
    ));
    assert!(
        error.contains("cluster.node_heartbeat_interval_ms (250) must be below cluster.node_session_timeout_ms (250)"),
        "{error}"
    );
    NodeConfig::from_toml(
        &cluster_toml("node_session_timeout_ms = 4000\nnode_heartbeat_interval_ms = 1000\npeer_request_timeout_ms = 3000"),
        "node.toml",
    )
    .unwrap();

    let error = refused(&cluster_toml(
        "replica_fetch_wait_max_ms = 2000\npeer_request_timeout_ms = 2000\nnode_session_timeout_ms = 3000",
    ));
    assert!(
        error.contains(
            "cluster.replica_fetch_wait_max_ms (2000) must be below cluster.peer_request_timeout_ms (2000)"
        ),
        "{error}"
    );
    let error = refused(&cluster_toml("node_heartbeat_interval_ms = 1500"));
    assert!(
        error.contains("cluster.node_heartbeat_interval_ms (1500) must be below"),
        "{error}"
    );
    let error = refused(&cluster_toml(
        "peer_frame_bytes_max = 1048576\npeer_in_flight_bytes_per_connection_max = 1024",
    ));
    assert!(
        error.contains("cluster.peer_in_flight_bytes_per_connection_max (1024) must be between cluster.peer_frame_bytes_max (1048576)"),
        "{error}"
    );
    let error = refused(&cluster_toml("peer_frame_bytes_max = 10"));
    assert!(
        error.contains("cluster.peer_frame_bytes_max (10) is below"),
        "{error}"
    );
    // The TOML parser's own errors show the line they point at.
    let error = NodeConfig::from_toml(&cluster_toml("replication = 3"), "node.toml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("unknown field `replication`"), "{error}");
    // Listening on every address with the peer port is allowed.
    NodeConfig::from_toml(
        &format!("[node]\nlisten = \"0.0.0.0:9101\"\n{}", cluster_toml("")),
        "node.toml",
    )
    .unwrap();
}

// Goal: an even voter set is allowed but warned, and the warning says why.
#[test]
fn an_even_voter_set_is_warned_with_the_reason() {
    let text = cluster_toml("").replace(
        "]\nca_file",
        "  { id = 4, address = \"127.0.0.1:9104\" },\n]\nca_file",
    );
    let cluster = NodeConfig::from_toml(&text, "node.toml")
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(cluster.controller_voters, vec![1, 2, 3, 4]);
    let warnings = cluster.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("4 voters (an even number)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("survives 1 failure(s), no more than with 3 voters"),
        "{}",
        warnings[0]
    );
}

// Goal: the certificate files are checked against the config at start: a missing or
// unreadable file, a certificate of another node, and one of another cluster are refused
// with one line naming the key; the files cluster-init wrote pass.
#[test]
fn certificate_files_are_checked_against_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        nodes: 3,
        dir: dir.path().join("a"),
        base_port: 9100,
        force: false,
    };
    init(&options).unwrap();
    let other = InitOptions {
        dir: dir.path().join("b"),
        ..options.clone()
    };
    init(&other).unwrap();
    let now_ms = 1_900_000_000_000; // 2030: inside the certificates' validity.
    let config_of = |cluster: &str, id: u32| {
        NodeConfig::from_file(&dir.path().join(cluster).join(format!("node-{id}.toml")))
            .unwrap()
            .cluster
            .unwrap()
    };
    let good = config_of("a", 1);
    good.load_tls(now_ms).unwrap();

    let mut missing = good.clone();
    missing.cert_file = dir.path().join("a/tls/none.pem");
    let error = missing.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.starts_with("cluster.cert_file "), "{error}");
    assert!(error.contains("No such file"), "{error}");

    let mut missing_key = good.clone();
    missing_key.key_file = dir.path().join("a/tls/none.key");
    let error = missing_key.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.starts_with("cluster.key_file "), "{error}");

    let mut not_pem = good.clone();
    not_pem.ca_file = dir.path().join("a/node-1.toml");
    let error = not_pem.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.starts_with("cluster.ca_file "), "{error}");
    assert!(error.contains("no CERTIFICATE block"), "{error}");

    // Node 1's config with node 2's certificate and key.
    let mut wrong_node = good.clone();
    wrong_node.cert_file = dir.path().join("a/tls/node-2.pem");
    wrong_node.key_file = dir.path().join("a/tls/node-2.key");
    let error = wrong_node.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.contains("does not name node 1 of cluster"), "{error}");
    assert!(error.contains("node-2."), "{error}");

    // Node 1's config claiming another cluster id, with its own files.
    let mut wrong_cluster = good.clone();
    wrong_cluster.cluster_id = config_of("b", 1).cluster_id;
    let error = wrong_cluster.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.contains("does not name node 1 of cluster"), "{error}");

    // A certificate of another cluster's CA.
    let mut other_ca = good.clone();
    other_ca.cert_file = dir.path().join("b/tls/node-1.pem");
    other_ca.key_file = dir.path().join("b/tls/node-1.key");
    let error = other_ca.load_tls(now_ms).unwrap_err().to_string();
    assert!(error.contains("UnknownIssuer"), "{error}");

    // A key that is not the certificate's.
    let mut wrong_key = good.clone();
    wrong_key.key_file = dir.path().join("a/tls/node-2.key");
    let error = wrong_key.load_tls(now_ms).unwrap_err().to_string();
    assert!(
        error.contains("cluster.key_file does not belong to cluster.cert_file"),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
}

// Goal: a node whose `node.advertised_address` is its own address in `cluster.peers` may
// listen elsewhere (a proxy or NAT in front of it forwards that address to it; the process
// tests put a fault proxy there), while an advertised address that is not its peers
// address does not lift the check. Method: parse both configs.
#[test]
fn a_node_advertising_its_peers_address_may_listen_elsewhere() {
    let config = NodeConfig::from_toml(
        &format!(
            "[node]\nlisten = \"127.0.0.1:9999\"\nadvertised_address = \"127.0.0.1:9101\"\n{}",
            cluster_toml("")
        ),
        "node.toml",
    )
    .unwrap();
    assert_eq!(config.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(
        config.advertised_address,
        Some("127.0.0.1:9101".parse().unwrap())
    );
    assert!(crate::config::listen_reaches(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:9101".parse().unwrap(),
        config.advertised_address
    ));

    let error = refused(&format!(
        "[node]\nlisten = \"127.0.0.1:9999\"\nadvertised_address = \"127.0.0.1:9102\"\n{}",
        cluster_toml("")
    ));
    assert!(
        error.contains("node.listen (127.0.0.1:9999) disagrees")
            && error.contains("node.advertised_address"),
        "{error}"
    );
}
