//! Deleting a topic gives its files back at once: the node keeps no descriptor of them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use ledge_e2e::{NodeProcess, RawClient, runtime};
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, EncodeOptions, Record, encode_batch};

const TOPIC: &str = "doomed";
const PARTITIONS: u32 = 2;
const BATCHES_PER_PARTITION: usize = 24;
/// How many times the node's descriptors are looked at after the deletion (closing may
/// finish on the node's tasks just after the answer), `POLL` apart.
const POLLS: u32 = 100;
const POLL: Duration = Duration::from_millis(100);

fn batch(first: usize) -> Bytes {
    let records: Vec<Record> = (first..first + 4)
        .map(|number| Record {
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(format!("k{number}"))),
            value: Some(Bytes::from(vec![b'x'; 8 * 1024])),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// The targets of the node's open descriptors that are files of `directories` or removed
/// files (Linux shows those as "<path> (deleted)").
fn held_files(pid: u32, directories: &[PathBuf]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            target.to_string_lossy().ends_with(" (deleted)")
                || directories
                    .iter()
                    .any(|directory| target.starts_with(directory))
        })
        .map(|target| target.display().to_string())
        .collect()
}

async fn fetch_all(client: &RawClient, partition: u32) -> i64 {
    let mut offset = 0;
    loop {
        let (_, Some(Response::Fetch(fetched))) = client
            .request(&Request::Fetch(FetchRequest {
                max_wait_ms: 0,
                min_bytes: 1,
                max_bytes: 1 << 20,
                topics: vec![FetchTopic {
                    name: TOPIC.into(),
                    partitions: vec![FetchPartition {
                        current_leader_epoch: None,
                        partition,
                        fetch_offset: offset,
                        partition_max_bytes: 1 << 20,
                    }],
                }],
                plugin: None,
            }))
            .await
        else {
            panic!("no Fetch answer")
        };
        let answer = &fetched.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        let Some(last) = BatchIter::new(&answer.records).last() else {
            return offset;
        };
        let (header, _) = last.unwrap();
        offset = header.base_offset + i64::from(header.last_offset_delta) + 1;
    }
}

// Goal: after a topic with several segments per partition is produced to, read from its
// first offset to its end (which opens every sealed segment) and deleted, the node process
// holds no descriptor into the topic's partition directories and none of a removed file
// (before the fix a deleted topic's sealed segments stayed open in the node-wide
// descriptor cache, and its space in use, until the node restarted).
// Method: /proc/<pid>/fd of the real node, looked at repeatedly for a bounded number of
// times after the deletion (outcome only, no timing asserted).
#[test]
fn a_deleted_topic_leaves_no_file_open() {
    let node = NodeProcess::start();
    let logs = node
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| node.data_dir.clone())
        .join("logs");
    let directories: Vec<PathBuf> = (0..PARTITIONS)
        .map(|partition| logs.join(format!("{TOPIC}-{partition}")))
        .collect();
    runtime().block_on(async {
        let client = RawClient::connect(&node).await;
        let (_, Some(Response::CreateTopics(created))) = client
            .request(&Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: TOPIC.into(),
                    partitions: PARTITIONS,
                    configs: vec![
                        ConfigEntry {
                            name: "segment.bytes".into(),
                            value: "65536".into(),
                        },
                        ConfigEntry {
                            name: "max.message.bytes".into(),
                            value: "60000".into(),
                        },
                    ],
                }],
                validate_only: false,
            }))
            .await
        else {
            panic!("no CreateTopics answer")
        };
        assert_eq!(
            created.topics[0].error,
            ErrorCode::None,
            "{}",
            created.topics[0].message
        );
        for partition in 0..PARTITIONS {
            for number in 0..BATCHES_PER_PARTITION {
                let (header, _) = client
                    .request(&Request::Produce(ProduceRequest {
                        acks: Acks::All,
                        timeout_ms: 10_000,
                        topics: vec![ProduceTopic {
                            name: TOPIC.into(),
                            partitions: vec![ProducePartition {
                                current_leader_epoch: None,
                                partition,
                                records: batch(number * 4),
                            }],
                        }],
                    }))
                    .await;
                assert_eq!(header.error, ErrorCode::None);
            }
            assert_eq!(
                fetch_all(&client, partition).await,
                (BATCHES_PER_PARTITION * 4) as i64
            );
        }
        let segments = std::fs::read_dir(&directories[0])
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert!(segments > 2, "{segments} segments in {:?}", directories[0]);
        let before = held_files(node.pid(), &directories);
        assert!(
            before.len() > usize::try_from(PARTITIONS).unwrap() * 2,
            "the read opened sealed segments: {before:?}"
        );

        let (_, Some(Response::DeleteTopics(deleted))) = client
            .request(&Request::DeleteTopics(DeleteTopicsRequest {
                names: vec![TOPIC.into()],
            }))
            .await
        else {
            panic!("no DeleteTopics answer")
        };
        assert_eq!(deleted.topics[0].error, ErrorCode::None);
        for directory in &directories {
            assert!(!Path::new(directory).exists(), "{directory:?} removed");
        }
        let mut held = held_files(node.pid(), &directories);
        for _ in 0..POLLS {
            if held.is_empty() {
                break;
            }
            tokio::time::sleep(POLL).await;
            held = held_files(node.pid(), &directories);
        }
        assert!(held.is_empty(), "still open after deletion: {held:?}");
    });
}
