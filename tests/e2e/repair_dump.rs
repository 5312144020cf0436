//! `ledge-repair dump` on a real node's data directory: every acknowledged record printed at
//! its offset with its producer fields, key and value (JSON and the aligned table); a bit
//! flip named with the offset of the damaged batch and nothing after it read; a missing
//! partition and a running node each refused with one line; nothing in the partition
//! written.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ledge_client::{Admin, NewTopic, Producer, ProducerConfig, ProducerRecord};
use ledge_e2e::{NodeProcess, binary, connect, runtime};

/// Runs `ledge-repair` with `args`; returns (exit code, stdout, stderr).
fn repair(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(binary("ledge-repair"))
        .args(args)
        .output()
        .expect("run ledge-repair");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn dump_args<'a>(data_dir: &'a str, topic: &'a str, format: &'a str) -> Vec<&'a str> {
    vec![
        "dump",
        "--data-dir",
        data_dir,
        "--topic",
        topic,
        "--partition",
        "0",
        "--format",
        format,
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every file under `directory` with its bytes, for "nothing was written" checks.
fn snapshot(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// Produces `count` records (key `key-N`, value `value-N`) with the idempotent acks=all
/// producer, several per batch; returns each acknowledged (offset, key, value).
fn produce(node: &NodeProcess, topic: &str, count: usize) -> Vec<(i64, String, String)> {
    runtime().block_on(async {
        let client = connect(node).await;
        Admin::new(&client)
            .create_topics(vec![NewTopic::new(topic, 1)], false)
            .await
            .unwrap();
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .unwrap();
        let mut acknowledged = Vec::new();
        for chunk in 0..count.div_ceil(10) {
            let mut deliveries = Vec::new();
            for index in chunk * 10..((chunk + 1) * 10).min(count) {
                let (key, value) = (format!("key-{index}"), format!("value-{index}"));
                let record = ProducerRecord::new(topic, value.clone()).key(key.clone());
                deliveries.push((key, value, producer.send(record).await.unwrap()));
            }
            for (key, value, delivery) in deliveries {
                let metadata = delivery.await.unwrap();
                acknowledged.push((metadata.offset.unwrap(), key, value));
            }
        }
        producer.close().await;
        client.close().await;
        acknowledged
    })
}

// Goal: a dump of a stopped node's partition lists every acknowledged record at the offset
// it was acknowledged with, with its key and value, the idempotent producer's id and epoch
// and consecutive sequences, and the next offset after the last; the table shows the same
// rows aligned; the partition's files are byte for byte unchanged; while the node runs the
// dump is refused with one line naming the holder. Method: 45 records from the SDK, the
// node stopped with SIGTERM, both formats compared with the acknowledgements.
#[test]
fn dump_lists_every_acknowledged_record_and_writes_nothing() {
    let mut node = NodeProcess::start();
    let acknowledged = produce(&node, "events", 45);
    let data_dir = node.data_dir.display().to_string();

    let (code, _, stderr) = repair(&dump_args(&data_dir, "events", "json"));
    assert_eq!(code, Some(1), "{stderr}");
    let stderr = stderr.trim();
    assert!(
        stderr.starts_with("error: ") && stderr.contains("in use by another process"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    node.terminate(Duration::from_secs(30)).unwrap();
    let partition_dir = node.data_dir.join("logs/events-0");
    let before = snapshot(&partition_dir);
    let (code, stdout, stderr) = repair(&dump_args(&data_dir, "events", "json"));
    assert_eq!(code, Some(0), "{stderr}");
    let dump: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(dump["damage"], serde_json::Value::Null, "{dump}");
    assert_eq!(dump["end_offset"], 45, "{dump}");
    let batches = dump["batches"].as_array().unwrap();
    assert!(
        batches.len() < 45,
        "records share batches: {}",
        batches.len()
    );
    let mut producer_id = None;
    let mut records = Vec::new();
    for batch in batches {
        let id = batch["producer_id"].as_i64().unwrap();
        assert!(id >= 0, "idempotent: {batch}");
        assert_eq!(*producer_id.get_or_insert(id), id, "one producer: {batch}");
        assert_eq!(batch["producer_epoch"], 0, "{batch}");
        // Sequences run with offsets: one producer, one partition, from 0.
        assert_eq!(batch["base_sequence"], batch["base_offset"], "{batch}");
        assert_eq!(batch["leader_epoch"], 0, "{batch}");
        for record in batch["records"].as_array().unwrap() {
            records.push((
                record["offset"].as_i64().unwrap(),
                record["key_hex"].as_str().unwrap().to_string(),
                record["value_hex"].as_str().unwrap().to_string(),
            ));
        }
    }
    let expected: Vec<(i64, String, String)> = acknowledged
        .iter()
        .map(|(offset, key, value)| (*offset, hex(key.as_bytes()), hex(value.as_bytes())))
        .collect();
    assert_eq!(records, expected);

    let (code, table, stderr) = repair(&dump_args(&data_dir, "events", "table"));
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("OFFSET"))
        .unwrap_or_else(|| panic!("no header: {table}"));
    for column in [
        "EPOCH",
        "PRODUCER",
        "SEQUENCE",
        "TIMESTAMP_MS",
        "KEY",
        "VALUE",
    ] {
        assert!(lines[header].contains(column), "{table}");
    }
    let rows = &lines[header + 1..header + 46];
    let value_column = lines[header].find("VALUE").unwrap();
    for (row, (offset, _, value)) in rows.iter().zip(&acknowledged) {
        assert!(row.starts_with(&format!("{offset} ")), "{row}");
        assert_eq!(
            &row[value_column..],
            hex(value.as_bytes()),
            "aligned: {row}"
        );
    }
    assert!(
        table.contains("45 record(s)") && table.contains("the next offset is 45"),
        "{table}"
    );
    assert_eq!(snapshot(&partition_dir), before, "the dump wrote nothing");
}

// Goal: a bit flip inside one batch of a stopped replica's segment is named with the
// offset that batch starts at and its byte position; every record before it is listed and
// nothing after it (exit status 2, in both formats); the file is not changed. A missing
// partition is refused with one line naming the partitions that exist.
#[test]
fn dump_stops_at_a_flipped_bit_and_names_its_offset() {
    let mut node = NodeProcess::start();
    produce(&node, "events", 40);
    node.terminate(Duration::from_secs(30)).unwrap();
    let data_dir = node.data_dir.display().to_string();
    let (code, stdout, stderr) = repair(&dump_args(&data_dir, "events", "json"));
    assert_eq!(code, Some(0), "{stderr}");
    let clean: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let batches = clean["batches"].as_array().unwrap();
    assert!(batches.len() >= 3, "{clean}");
    // The last byte of the second batch (its last record), which the CRC covers.
    let damaged = &batches[1];
    let damaged_offset = damaged["base_offset"].as_i64().unwrap();
    let flip_at = batches[2]["position"].as_u64().unwrap() - 1;
    let segment = node
        .data_dir
        .join("logs/events-0")
        .join(damaged["segment"].as_str().unwrap());
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[usize::try_from(flip_at).unwrap()] ^= 0x10;
    std::fs::write(&segment, &bytes).unwrap();

    let (code, stdout, stderr) = repair(&dump_args(&data_dir, "events", "json"));
    assert_eq!(code, Some(2), "{stderr}");
    let dump: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(dump["damage"]["offset"], damaged_offset, "{dump}");
    assert_eq!(dump["damage"]["position"], damaged["position"], "{dump}");
    assert_eq!(dump["batches"].as_array().unwrap().len(), 1, "{dump}");
    assert_eq!(dump["end_offset"], damaged_offset, "{dump}");

    let (code, table, _) = repair(&dump_args(&data_dir, "events", "table"));
    assert_eq!(code, Some(2));
    assert!(
        table.contains(&format!("Damaged batch at offset {damaged_offset} (")),
        "{table}"
    );
    assert!(
        table.contains(&format!("{damaged_offset} record(s)")),
        "{table}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), bytes);

    let (code, _, stderr) = repair(&dump_args(&data_dir, "missing", "table"));
    assert_eq!(code, Some(1));
    let stderr = stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: no partition missing-0 in ")
            && stderr.contains("(partitions there: ")
            && stderr.ends_with("events-0)"),
        "{stderr}"
    );
}
