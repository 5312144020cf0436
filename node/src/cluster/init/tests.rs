use super::*;
use crate::config::NodeConfig;

// Goal: cluster-init writes a config per node that parses, with its own data directory and
// port, the CA key private, certificates that pass the node's own start-up check, and a
// report whose table lines up. Method: run it into a temporary directory and read it all back.
#[test]
fn cluster_init_writes_configs_and_certificates_that_the_node_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        nodes: 3,
        dir: dir.path().join("cluster"),
        base_port: 9200,
        force: false,
    };
    let report = init(&options).unwrap();
    assert_eq!(report.cluster_id.len(), 32);
    let root = std::fs::canonicalize(&options.dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&root.join("tls/ca.key")), 0o600);
    assert_eq!(mode(&root.join("tls/node-2.key")), 0o600);
    let mut data_dirs = std::collections::BTreeSet::new();
    let mut kafka_listens = std::collections::BTreeSet::new();
    for id in 1..=3u32 {
        let config = NodeConfig::from_file(&root.join(format!("node-{id}.toml"))).unwrap();
        let cluster = config.cluster.clone().unwrap();
        assert_eq!(cluster.node_id, id);
        assert_eq!(cluster.cluster_id, report.cluster_id);
        assert_eq!(config.listen.port(), 9200 + u16::try_from(id).unwrap());
        // Its own Kafka port, the same number on TCP.
        assert_eq!(
            config.kafka.listen,
            crate::kafka::PlaintextListen::At(config.listen)
        );
        kafka_listens.insert(config.kafka.listen_address(config.listen));
        // Its own admin port (issue 16): 9644 + id.
        assert_eq!(
            config.admin.listen,
            crate::admin::AdminListen::At(
                format!("127.0.0.1:{}", 9644 + id).parse().unwrap()
            )
        );
        assert_eq!(cluster.peers.len(), 3);
        assert_eq!(cluster.ca_file, root.join("tls/ca.pem"));
        assert!(config.data_dir.starts_with(&root));
        // Each voter's first start may initialize the controller quorum.
        assert!(
            crate::controller::bootstrap::marker_path(&config.data_dir).is_file(),
            "node {id}"
        );
        data_dirs.insert(config.data_dir.clone());
        cluster.load_tls(1_900_000_000_000).unwrap();
    }
    assert_eq!(data_dirs.len(), 3);
    // Each local node its own Kafka port (issue 14).
    assert_eq!(kafka_listens.len(), 3, "{kafka_listens:?}");
    let text = report.render();
    assert!(
        text.contains(&format!(
            "ledge-node --config {}",
            root.join("node-3.toml").display()
        )),
        "{text}"
    );
    // The table's columns start at the same place on every row.
    let rows: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("NODE") || line.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    let column = |row: &str| {
        row.find("127.0.0.1")
            .or_else(|| row.find("ADDRESS"))
            .unwrap()
    };
    assert!(
        rows.iter().all(|row| column(row) == column(rows[0])),
        "{text}"
    );
}

// Goal: an existing cluster is never overwritten by accident; --force replaces its
// certificates and configs (a new cluster id) and keeps data directories.
#[test]
fn an_existing_cluster_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let options = InitOptions {
        nodes: 2,
        dir: dir.path().to_path_buf(),
        base_port: BASE_PORT_DEFAULT,
        force: false,
    };
    let first = init(&options).unwrap();
    let ca_before = std::fs::read(dir.path().join("tls/ca.pem")).unwrap();
    let error = init(&options).unwrap_err().to_string();
    assert!(error.contains("already holds a cluster"), "{error}");
    assert!(error.contains("node-1.toml"), "{error}");
    assert!(error.contains("--force"), "{error}");
    assert_eq!(
        std::fs::read(dir.path().join("tls/ca.pem")).unwrap(),
        ca_before
    );

    std::fs::create_dir_all(dir.path().join("data/node-1")).unwrap();
    std::fs::write(dir.path().join("data/node-1/keep"), b"x").unwrap();
    let second = init(&InitOptions {
        force: true,
        ..options.clone()
    })
    .unwrap();
    assert_ne!(first.cluster_id, second.cluster_id);
    assert_ne!(
        std::fs::read(dir.path().join("tls/ca.pem")).unwrap(),
        ca_before
    );
    assert_eq!(second.data_dirs_kept.len(), 1);
    assert!(dir.path().join("data/node-1/keep").exists());
}

// Goal: arguments out of range are refused before anything is written.
#[test]
fn bad_arguments_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let options = |nodes, base_port| InitOptions {
        nodes,
        dir: dir.path().join("x"),
        base_port,
        force: false,
    };
    assert!(matches!(init(&options(0, 9100)), Err(InitError::Nodes(0))));
    assert!(matches!(
        init(&options(INIT_NODES_MAX + 1, 9100)),
        Err(InitError::Nodes(_))
    ));
    let error = init(&options(3, 65534)).unwrap_err();
    assert!(matches!(error, InitError::Ports { .. }), "{error}");
    assert!(!dir.path().join("x").exists());
}
