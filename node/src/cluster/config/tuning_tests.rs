//! The `[cluster]` tuning keys: `replica_fetch_partition_bytes_max` and
//! `replica_fetch_response_bytes_max` (Kafka's `replica.fetch.max.bytes` and
//! `replica.fetch.response.max.bytes`), and the controller quorum's Raft timings
//! (`controller_heartbeat_interval_ms`, `controller_election_timeout_min_ms` / `_max_ms`).

use super::*;
use crate::config::NodeConfig;
use crate::replication::manager::{
    REPLICA_FETCH_PARTITION_BYTES_MAX_DEFAULT, REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT,
    ReplicationSettings,
};

fn section(extra: &str) -> String {
    format!(
        "[cluster]\nnode_id = 1\ncluster_id = \"c0ffee\"\n\
         peers = [{{ id = 1, address = \"127.0.0.1:9101\" }}, {{ id = 2, address = \"127.0.0.1:9102\" }}]\n\
         ca_file = \"ca.pem\"\ncert_file = \"n.pem\"\nkey_file = \"n.key\"\n{extra}\n"
    )
}

fn parse(extra: &str) -> Result<ClusterConfig, ConfigError> {
    NodeConfig::from_toml(&section(extra), "node.toml").map(|config| config.cluster.unwrap())
}

// Goal: the replica fetch limits default to 1 MiB per partition and 8 MiB per answer, are
// read when given and reach the replication driver's settings.
#[test]
fn the_replica_fetch_limits_have_their_defaults_and_reach_the_driver() {
    let cluster = parse("").unwrap();
    assert_eq!(
        cluster.replica_fetch_partition_bytes_max,
        REPLICA_FETCH_PARTITION_BYTES_MAX_DEFAULT
    );
    assert_eq!(
        cluster.replica_fetch_response_bytes_max,
        REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT
    );
    let cluster = parse(
        "replica_fetch_partition_bytes_max = 65536\nreplica_fetch_response_bytes_max = 262144",
    )
    .unwrap();
    let settings = ReplicationSettings::from_cluster(&cluster);
    assert_eq!(settings.replica_fetch_partition_bytes_max, 65_536);
    assert_eq!(settings.replica_fetch_response_bytes_max, 262_144);
}

// Goal: limits that cannot work are refused with one line naming the keys: zero, a
// per-partition limit above the answer's, an answer above half a peer frame.
#[test]
fn replica_fetch_limits_that_cannot_work_are_refused_in_one_line() {
    let refused = |extra: &str| {
        let error = parse(extra).unwrap_err().to_string();
        assert_eq!(error.lines().count(), 1, "{error}");
        error
    };
    assert_eq!(
        refused("replica_fetch_partition_bytes_max = 0"),
        "node.toml: cluster.replica_fetch_partition_bytes_max must be positive"
    );
    let error = refused(
        "replica_fetch_partition_bytes_max = 2097152\nreplica_fetch_response_bytes_max = 1048576",
    );
    assert!(
        error.contains("cluster.replica_fetch_response_bytes_max (1048576) must be between cluster.replica_fetch_partition_bytes_max (2097152)"),
        "{error}"
    );
    let error = refused("peer_frame_bytes_max = 4194304");
    assert!(
        error.contains("cluster.replica_fetch_response_bytes_max (8388608)")
            && error.contains("half of cluster.peer_frame_bytes_max (2097152)"),
        "{error}"
    );
    // Lowering both together works.
    parse("peer_frame_bytes_max = 4194304\nreplica_fetch_response_bytes_max = 2097152").unwrap();
}

// Goal: the controller quorum's Raft timings default to openraft's (50 ms heartbeat,
// 150-300 ms election timeout), can be raised for slow links (with 100 ms one-way delay the
// defaults never let the controller commit again), reach the controller's settings, and
// an order that cannot work is refused in one line.
#[test]
fn the_controller_raft_timings_have_their_defaults_are_read_and_checked() {
    let cluster = parse("").unwrap();
    assert_eq!(
        cluster.controller_heartbeat_interval,
        Duration::from_millis(50)
    );
    assert_eq!(
        cluster.controller_election_timeout,
        (Duration::from_millis(150), Duration::from_millis(300))
    );
    let cluster = parse(
        "controller_heartbeat_interval_ms = 250\ncontroller_election_timeout_min_ms = 1000\ncontroller_election_timeout_max_ms = 2000",
    )
    .unwrap();
    let config = crate::controller::peer_link::controller_config(&cluster);
    assert_eq!(config.raft_heartbeat, Duration::from_millis(250));
    assert_eq!(
        config.election_timeout,
        (Duration::from_secs(1), Duration::from_secs(2))
    );
    for extra in [
        "controller_heartbeat_interval_ms = 150",
        "controller_election_timeout_min_ms = 300",
        "controller_election_timeout_max_ms = 100",
    ] {
        let error = parse(extra).unwrap_err().to_string();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(
            error.contains("does not hold: voters would campaign"),
            "{extra}: {error}"
        );
    }
    assert_eq!(
        parse("controller_election_timeout_min_ms = 0")
            .unwrap_err()
            .to_string(),
        "node.toml: cluster.controller_election_timeout_min_ms must be positive"
    );
}
