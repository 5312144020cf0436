//! Disaster recovery (issue 16, item 6): `ledge admin snapshot` while a producer keeps
//! producing, `kill -9`, `ledge-node restore` into a new directory, and a node on it serves
//! every record up to the manifest's offsets, the group offsets and the topic configs; bad
//! inputs get one clear error line and change nothing.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ledge_client::{
    Admin, Client, Consumer, ConsumerConfig, NewTopic, OffsetReset, OffsetResetSpec, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use ledge_e2e::{NodeOptions, NodeProcess, binary, run_cli};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 2;

/// Runs `ledge --server NODE --ca CA args`.
fn ledge(node: &NodeProcess, args: &[&str]) -> (bool, String, String) {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, None);
    (status.success(), stdout, stderr)
}

/// Runs `ledge-node restore --from FROM --data-dir TO`: (success, stdout, stderr).
fn restore(from: &Path, to: &Path) -> (bool, String, String) {
    let output = Command::new(binary("ledge-node"))
        .arg("restore")
        .arg("--from")
        .arg(from)
        .arg("--data-dir")
        .arg(to)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every (offset, value) of `partition` from `from` up to `end` (exclusive).
async fn records(client: &Client, partition: u32, from: i64, end: i64) -> Vec<(i64, String)> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    let key = TopicPartition::new(TOPIC, partition);
    consumer.assign(vec![key.clone()]);
    consumer.seek(&key, from).unwrap();
    let mut out = Vec::new();
    for _ in 0..120 {
        if out.last().is_some_and(|(offset, _)| offset + 1 >= end) || end <= from {
            break;
        }
        for record in consumer
            .poll(Duration::from_millis(500), 1000)
            .await
            .unwrap()
        {
            if record.offset < end {
                let value = record.value.clone().unwrap_or_default();
                out.push((record.offset, String::from_utf8_lossy(&value).into_owned()));
            }
        }
    }
    out
}

/// Every file under `directory` with its bytes, sorted, for "nothing changed" checks.
fn contents(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn a_snapshot_taken_under_load_restores_into_a_node_that_serves_it_all() {
    let root = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(root.path().join("data")),
        ..NodeOptions::default()
    });
    let runtime = ledge_e2e::runtime();
    let client = runtime.block_on(ledge_e2e::connect(&node));
    runtime.block_on(async {
        Admin::new(&client)
            .create_topics(
                vec![NewTopic::new(TOPIC, PARTITIONS).config("retention.ms", "86400123")],
                false,
            )
            .await
            .unwrap();
        ledge_e2e::produce_numbered(&client, TOPIC, 0, 300).await;
        Admin::new(&client)
            .reset_offsets("billing", TOPIC, OffsetResetSpec::Offset(7), false)
            .await
            .unwrap();
    });
    // A producer that keeps producing while the snapshot is taken.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_task = {
        let client = client.clone();
        let producing = Arc::clone(&producing);
        runtime.spawn(async move {
            let producer = Producer::new(&client, ProducerConfig::default())
                .await
                .unwrap();
            let mut sent = 0u64;
            while producing.load(Ordering::SeqCst) {
                let record =
                    ProducerRecord::new(TOPIC, format!("live-{sent}")).key(format!("k{sent}"));
                if let Ok(delivery) = producer.send(record).await {
                    let _ = delivery.await;
                }
                sent += 1;
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let snapshot_dir = root.path().join("snap");
    let out = snapshot_dir.display().to_string();
    let (success, stdout, stderr) = ledge(
        &node,
        &[
            "admin",
            "snapshot",
            "--out",
            &out,
            "--format",
            "json",
            "--progress",
            "--progress-interval-ms",
            "50",
        ],
    );
    assert!(success, "{stderr}");
    assert!(stderr.contains("partitions written"), "{stderr}");
    producing.store(false, Ordering::SeqCst);
    let sent_live = runtime.block_on(producer_task).unwrap();
    assert!(sent_live > 0);
    let result: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ends: Vec<(u32, i64)> = result["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|partition| partition["topic"] == TOPIC)
        .map(|partition| {
            (
                partition["partition"].as_u64().unwrap() as u32,
                partition["end_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ends.len(), PARTITIONS as usize, "{stdout}");
    // Everything produced before the snapshot is in it.
    assert!(
        ends.iter().map(|(_, end)| end).sum::<i64>() >= 300,
        "{stdout}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(snapshot_dir.join("snapshot-manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["format_version"], 1);

    // A second snapshot into the same directory is refused and changes nothing.
    let before = contents(&snapshot_dir);
    let (success, _, stderr) = ledge(&node, &["admin", "snapshot", "--out", &out]);
    assert!(!success);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(contents(&snapshot_dir), before);

    // The records the snapshot holds, read from the live node before it dies.
    let expected: Vec<Vec<(i64, String)>> = runtime.block_on(async {
        let mut all = Vec::new();
        for (partition, end) in &ends {
            all.push(records(&client, *partition, 0, *end).await);
        }
        all
    });
    node.kill9();

    let restored_dir = root.path().join("restored");
    let (success, stdout, stderr) = restore(&snapshot_dir, &restored_dir);
    assert!(success, "{stderr}");
    assert!(
        stdout.contains("restored the snapshot of node 1"),
        "{stdout}"
    );
    let restored = NodeProcess::start_with(NodeOptions {
        data_dir: Some(restored_dir.clone()),
        ..NodeOptions::default()
    });
    let client = runtime.block_on(ledge_e2e::connect(&restored));
    runtime.block_on(async {
        for ((partition, end), expected) in ends.iter().zip(&expected) {
            let served = records(&client, *partition, 0, *end).await;
            assert_eq!(served.len() as i64, *end, "partition {partition}");
            assert_eq!(&served, expected, "partition {partition}");
            for (index, (offset, _)) in served.iter().enumerate() {
                assert_eq!(*offset, index as i64);
            }
        }
        let admin = Admin::new(&client);
        let mut config = ConsumerConfig::default();
        config.group_id = Some("billing".into());
        let reader = Consumer::new(&client, config);
        let keys: Vec<TopicPartition> = (0..PARTITIONS)
            .map(|partition| TopicPartition::new(TOPIC, partition))
            .collect();
        let committed = reader.committed(&keys).await.unwrap();
        for key in &keys {
            assert_eq!(
                committed[key].as_ref().map(|committed| committed.offset),
                Some(7),
                "{committed:?}"
            );
        }
        let configs = admin.describe_configs(vec![TOPIC.into()]).await.unwrap();
        let retention = configs[0]
            .1
            .iter()
            .find(|config| config.name == "retention.ms")
            .unwrap();
        assert_eq!(retention.value, "86400123");
    });
}

#[test]
fn restore_refuses_a_missing_or_damaged_manifest_and_a_used_directory_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with(NodeOptions {
        data_dir: Some(root.path().join("data")),
        ..NodeOptions::default()
    });
    let runtime = ledge_e2e::runtime();
    runtime.block_on(async {
        let client = ledge_e2e::connect(&node).await;
        ledge_e2e::create_topic(&client, TOPIC, 1).await;
        ledge_e2e::produce_numbered(&client, TOPIC, 0, 20).await;
    });
    // A relative directory, and one inside the data directory, are refused.
    let (success, _, stderr) = ledge(&node, &["admin", "snapshot", "--out", "relative"]);
    assert!(!success);
    assert!(stderr.contains("must be an absolute path"), "{stderr}");
    let inside = root.path().join("data/snap").display().to_string();
    let (success, _, stderr) = ledge(&node, &["admin", "snapshot", "--out", &inside]);
    assert!(!success);
    assert!(stderr.contains("inside the data directory"), "{stderr}");
    assert!(!root.path().join("data/snap").exists());

    let snapshot = root.path().join("snap");
    let (success, _, stderr) = ledge(
        &node,
        &[
            "admin",
            "snapshot",
            "--out",
            &snapshot.display().to_string(),
        ],
    );
    assert!(success, "{stderr}");
    let manifest = snapshot.join("snapshot-manifest.json");
    let good = std::fs::read(&manifest).unwrap();
    let target = root.path().join("new");

    // A used directory: refused, untouched.
    let used = root.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("mine"), b"keep").unwrap();
    let (success, _, stderr) = restore(&snapshot, &used);
    assert!(!success);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    assert_eq!(contents(&used).len(), 1);

    // A damaged manifest.
    std::fs::write(&manifest, &good[..good.len() / 2]).unwrap();
    let (success, _, stderr) = restore(&snapshot, &target);
    assert!(!success);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("the manifest is damaged"), "{stderr}");
    assert!(!target.exists());

    // No manifest: an unfinished snapshot.
    std::fs::remove_file(&manifest).unwrap();
    let (success, _, stderr) = restore(&snapshot, &target);
    assert!(!success);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a finished snapshot"), "{stderr}");
    assert!(!target.exists());
}
