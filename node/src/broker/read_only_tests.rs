//! A data directory on a read-only filesystem (issue 11, data item 9), on `SimDisk`: the
//! broker opens it, serves what it holds and answers produce with the read-only error.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{BatchIter, EncodeOptions, Record, encode_batch};

use super::tests::produce;
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;

const DATA: &str = "/data";

async fn open(disk: &SimDisk) -> Result<Broker<SimDisk>, BrokerError> {
    Broker::open(
        disk.clone(),
        Path::new(DATA),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
}

fn batch(tag: usize) -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|number| Record {
            timestamp: 1_000_000,
            key: None,
            value: Some(Bytes::from(format!("value-{tag}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// Records readable in partition 0 of `topic` from offset 0, with the fetch's error code.
async fn records_in(broker: &Broker<SimDisk>, topic: &str) -> (ErrorCode, i32) {
    let request = FetchRequest {
        plugin: None,
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: topic.into(),
            partitions: vec![FetchPartition {
                current_leader_epoch: None,
                partition: 0,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let Response::Fetch(response) = broker.handle(Request::Fetch(request)).await else {
        panic!("wrong response")
    };
    let answer = &response.topics[0].partitions[0];
    let count = BatchIter::new(&answer.records)
        .map(|item| item.unwrap().0.record_count)
        .sum();
    (answer.error, count)
}

#[test]
fn a_read_only_data_directory_is_served_for_reads() {
    // Goal: after the filesystem turns read-only, the broker still opens the data
    // directory (before the fix the open failed storing metadata.json, so the node could
    // not start), no partition is offline, every record is fetched, and a produce answers
    // StorageError naming the read-only filesystem.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let disk = SimDisk::new(31);
            let broker = open(&disk).await.unwrap();
            let request = CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: "t".into(),
                    partitions: 2,
                    configs: Vec::new(),
                }],
                validate_only: false,
            };
            broker.handle(Request::CreateTopics(request)).await;
            for tag in 0..4 {
                let answer = produce(&broker, "t", 0, batch(tag), Acks::All).await;
                assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
            }
            broker.close().await;
            drop(broker);

            disk.set_read_only(true);
            let broker = open(&disk).await.unwrap();
            assert!(
                broker.offline_partitions().is_empty(),
                "{:?}",
                broker.offline_partitions()
            );
            assert_eq!(records_in(&broker, "t").await, (ErrorCode::None, 12));
            let refused = produce(&broker, "t", 0, batch(9), Acks::All).await;
            assert_eq!(refused.error, ErrorCode::StorageError);
            assert!(
                refused.message.contains("Read-only file system"),
                "{}",
                refused.message
            );
            assert_eq!(records_in(&broker, "t").await, (ErrorCode::None, 12));
        });
}

/// Log lines written while it is the thread's subscriber (WARN and above, no colours).
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[test]
fn a_missing_offsets_topic_on_a_read_only_filesystem_is_a_warning() {
    // Goal: a read-only data directory without `__consumer_offsets` (a node that never
    // started read-write on it) opens with a WARN saying the topic is not created because
    // the filesystem is read-only, and no ERROR: nothing is wrong with the node, and the
    // creation cannot succeed. Before the fix the node tried to create it and logged
    // "cannot create __consumer_offsets" and "__consumer_offsets is offline" as errors.
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(async {
            let disk = SimDisk::new(32);
            // The directories a node makes at its first start, with no topic yet (as a
            // node stopped during that start, or a hand-made directory, leaves them).
            for directory in ["logs", "topics", "wasm/modules", "wasm/compiled"] {
                crate::storage::disk::create_dir_durable(&disk, &Path::new(DATA).join(directory))
                    .await
                    .unwrap();
            }
            disk.set_read_only(true);
            let broker = open(&disk).await.unwrap();
            assert!(broker.topic(OFFSETS_TOPIC).is_none());
            assert!(broker.offline_partitions().is_empty());
        });
    let text = logs.text();
    assert!(!text.contains("ERROR"), "{text}");
    assert!(
        text.lines().any(|line| line.contains("WARN")
            && line.contains(OFFSETS_TOPIC)
            && line.contains("not created")
            && line.contains("read-only")),
        "{text}"
    );
}
