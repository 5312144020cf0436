//! The runner's side of a cluster on one simulated node, with a [`TransformLink`] whose
//! leaders the test moves: a transform's task runs only for the input partitions this node
//! leads, starts when it gains one, ends when it loses it, and a task started again resumes
//! from the position committed through the link. And module bytes from a peer are stored
//! only under their own digest and within the size limit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ledge_protocol::wire::{Acks, ErrorCode};
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::super::transforms::{DeclaredTransform, LinkError, OnError, TransformLink};
use super::super::{Broker, BrokerConfig};
use crate::clock::SimClock;
use crate::cluster::NodeId;
use crate::controller::admin::{AdminError, AdminRequest};
use crate::sim::SimDisk;
use crate::wasm::PluginKind;
use crate::wasm::runtime::tests::Wat;

const THIS_NODE: NodeId = 1;
const OTHER_NODE: NodeId = 2;

/// Leaders set by the test; output appended through this node's produce path; positions
/// kept in memory as a coordinator would.
struct MovableLeaders {
    broker: Mutex<Weak<Broker<SimDisk>>>,
    leaders: Mutex<BTreeMap<u32, NodeId>>,
    positions: Arc<Mutex<BTreeMap<u32, i64>>>,
    /// Replicated high watermarks of input partitions, where the test sets one.
    bounds: Mutex<BTreeMap<u32, tokio::sync::watch::Sender<i64>>>,
}

impl TransformLink for MovableLeaders {
    fn node_id(&self) -> NodeId {
        THIS_NODE
    }

    fn leader(&self, topic: &str, partition: u32) -> Option<NodeId> {
        // Input partitions move; every other partition (the output) is led here.
        if topic == "in" {
            self.leaders.lock().unwrap().get(&partition).copied()
        } else {
            Some(THIS_NODE)
        }
    }

    fn read_bound(
        &self,
        topic: &str,
        partition: u32,
    ) -> Result<Option<tokio::sync::watch::Receiver<i64>>, LinkError> {
        if topic != "in" {
            return Ok(None);
        }
        Ok(self
            .bounds
            .lock()
            .unwrap()
            .get(&partition)
            .map(tokio::sync::watch::Sender::subscribe))
    }

    fn append(
        &self,
        topic: String,
        partition: u32,
        batch: Bytes,
    ) -> BoxFuture<'static, Result<i64, LinkError>> {
        let broker = self.broker.lock().unwrap().clone();
        Box::pin(async move {
            let broker = broker.upgrade().ok_or(LinkError::Closed)?;
            broker
                .append_here(&topic, partition, batch)
                .await
                .map_err(|(code, message)| LinkError::Refused {
                    node: THIS_NODE,
                    code,
                    message,
                })
        })
    }

    fn commit_position(
        &self,
        _transform: String,
        _topic: String,
        partition: u32,
        offset: i64,
    ) -> BoxFuture<'static, Result<(), LinkError>> {
        let positions = Arc::clone(&self.positions);
        Box::pin(async move {
            positions.lock().unwrap().insert(partition, offset);
            Ok(())
        })
    }

    fn positions(
        &self,
        _transform: String,
        _topic: String,
    ) -> BoxFuture<'static, Result<BTreeMap<u32, i64>, LinkError>> {
        let positions = self.positions.lock().unwrap().clone();
        Box::pin(async move { Ok(positions) })
    }

    fn delete_positions(&self, _transform: String) -> BoxFuture<'static, Result<(), LinkError>> {
        let positions = Arc::clone(&self.positions);
        Box::pin(async move {
            positions.lock().unwrap().clear();
            Ok(())
        })
    }

    fn admin(&self, _request: AdminRequest) -> BoxFuture<'static, Result<(), AdminError>> {
        Box::pin(async { Err(AdminError::Failed("no controller in this test".into())) })
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

fn batch(values: std::ops::Range<u32>) -> Bytes {
    let records: Vec<Record> = values
        .map(|n| Record {
            timestamp: 1000,
            key: None,
            value: Some(Bytes::from(format!("v{n}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// How many records partition `partition` of `topic` holds (its end offset).
fn end_of(broker: &Broker<SimDisk>, topic: &str, partition: u32) -> i64 {
    broker
        .registry
        .partition_log(topic, partition)
        .unwrap()
        .high_watermark()
}

/// Waits (on the paused clock: a liveness bound, no timing claim) until `done`.
async fn until(broker: &Broker<SimDisk>, what: &str, done: impl Fn() -> bool) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// A broker on a simulated disk with topics `in` and `out` (2 partitions each) and the
/// `copy` transform (in -> out), recorded before the runner starts (as a node's mirror
/// does), then linked to `link` and started.
async fn broker_with_copy(link: &Arc<MovableLeaders>) -> Arc<Broker<SimDisk>> {
    let disk = SimDisk::new(13);
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    let broker = Arc::new(
        Broker::open(
            disk.clone(),
            Path::new("/data"),
            config,
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap(),
    );
    for name in ["in", "out"] {
        broker
            .registry
            .create_topic(name, 2, &BTreeMap::new())
            .await
            .unwrap();
    }
    broker
        .transforms()
        .deploy(DeclaredTransform {
            name: "copy".into(),
            kind: PluginKind::Filter,
            module: Bytes::from(Wat::default().module()),
            input: "in".into(),
            output: "out".into(),
            params: BTreeMap::new(),
            on_error: OnError::Skip,
            dead_letter_topic: String::new(),
            window: None,
        })
        .await
        .unwrap();
    *link.broker.lock().unwrap() = Arc::downgrade(&broker);
    assert!(broker.transforms().set_link(link.clone()));
    broker.transforms().start().await;
    broker
}

// Goal (issue 13, a transform on a leader): a task reads its input only below the
// replicated high watermark, never the leader's own log end: records a failover may still
// truncate are not transformed (their output would outlive them). Method: the link gives
// input partition 0 a replicated high watermark of 5 while the log holds 10 records; the
// task commits 5 and has written exactly those; raised to 10, the rest follows. Without the
// bound the task reads all 10 at once and never stops at 5.
#[test]
fn a_transform_reads_its_input_only_below_the_replicated_high_watermark() {
    runtime().block_on(async {
        let link = Arc::new(MovableLeaders {
            broker: Mutex::new(Weak::new()),
            leaders: Mutex::new(BTreeMap::from([(0, THIS_NODE), (1, OTHER_NODE)])),
            positions: Arc::new(Mutex::new(BTreeMap::new())),
            bounds: Mutex::new(BTreeMap::from([(0, tokio::sync::watch::channel(5).0)])),
        });
        let broker = broker_with_copy(&link).await;
        for values in [0..5, 5..10] {
            let produced =
                super::super::tests::produce(&broker, "in", 0, batch(values), Acks::All).await;
            assert_eq!(produced.error, ErrorCode::None, "{}", produced.message);
        }
        assert_eq!(end_of(&broker, "in", 0), 10);
        until(&broker, "the records below the bound transformed", || {
            link.positions.lock().unwrap().get(&0) == Some(&5)
        })
        .await;
        assert_eq!(end_of(&broker, "out", 0), 5);
        link.bounds.lock().unwrap()[&0].send_replace(10);
        until(&broker, "the rest transformed once replicated", || {
            link.positions.lock().unwrap().get(&0) == Some(&10)
        })
        .await;
        assert_eq!(end_of(&broker, "out", 0), 10);
        broker.transforms().stop();
    });
}

#[test]
fn transform_tasks_run_where_the_input_is_led_and_resume_from_the_committed_position() {
    runtime().block_on(async {
        let link = Arc::new(MovableLeaders {
            broker: Mutex::new(Weak::new()),
            leaders: Mutex::new(BTreeMap::from([(0, THIS_NODE), (1, OTHER_NODE)])),
            positions: Arc::new(Mutex::new(BTreeMap::new())),
            bounds: Mutex::new(BTreeMap::new()),
        });
        let broker = broker_with_copy(&link).await;
        for partition in 0..2 {
            let produced =
                super::super::tests::produce(&broker, "in", partition, batch(0..10), Acks::All)
                    .await;
            assert_eq!(produced.error, ErrorCode::None, "{}", produced.message);
        }

        // Only the partition led here is transformed.
        until(&broker, "partition 0 copied and committed", || {
            end_of(&broker, "out", 0) == 10 && link.positions.lock().unwrap().get(&0) == Some(&10)
        })
        .await;
        assert_eq!(end_of(&broker, "out", 1), 0, "partition 1 is led elsewhere");
        assert_eq!(link.positions.lock().unwrap().get(&1), None);

        // Partition 1 moves here: its task starts; partition 0 moves away: its task ends.
        *link.leaders.lock().unwrap() = BTreeMap::from([(0, OTHER_NODE), (1, THIS_NODE)]);
        broker.transforms().refresh();
        until(&broker, "partition 1 copied and committed", || {
            end_of(&broker, "out", 1) == 10 && link.positions.lock().unwrap().get(&1) == Some(&10)
        })
        .await;
        let produced =
            super::super::tests::produce(&broker, "in", 0, batch(10..15), Acks::All).await;
        assert_eq!(produced.error, ErrorCode::None, "{}", produced.message);

        // Back here: the new task starts from the committed 10, so exactly the 5 new
        // records are added (no record twice, none skipped).
        *link.leaders.lock().unwrap() = BTreeMap::from([(0, THIS_NODE), (1, THIS_NODE)]);
        broker.transforms().refresh();
        until(&broker, "partition 0 resumed", || {
            link.positions.lock().unwrap().get(&0) == Some(&15)
        })
        .await;
        assert_eq!(end_of(&broker, "out", 0), 15);
        assert_eq!(end_of(&broker, "out", 1), 10);
        broker.transforms().stop();
    });
}

#[test]
fn module_bytes_from_a_peer_are_kept_only_under_their_own_digest_and_size_limit() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let mut config = BrokerConfig::default();
        let module = Bytes::from(Wat::default().module());
        config.wasm.module_bytes_max = module.len();
        let broker = Broker::open(
            disk.clone(),
            Path::new("/data"),
            config,
            Arc::new(SimClock::new(1_000_000)),
        )
        .await
        .unwrap();
        let digest = crate::wasm::content_hash(&module);
        let other = crate::wasm::content_hash(b"other bytes");
        // Bytes under another digest: refused, nothing stored under either.
        let refused = broker
            .plugins
            .store_fetched_module(&other, module.clone(), PluginKind::Filter)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains(&digest), "{refused}");
        assert_eq!(
            broker.plugins.stored_module_bytes(&other).await.unwrap(),
            None
        );
        assert_eq!(
            broker.plugins.stored_module_bytes(&digest).await.unwrap(),
            None
        );
        // One byte over the limit: refused before hashing.
        let mut larger = module.to_vec();
        larger.push(0);
        let refused = broker
            .plugins
            .store_fetched_module(&digest, Bytes::from(larger), PluginKind::Filter)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("wasm.module_bytes_max"),
            "{refused}"
        );
        // The right bytes: stored, and handed on to the next peer that asks.
        broker
            .plugins
            .store_fetched_module(&digest, module.clone(), PluginKind::Filter)
            .await
            .unwrap();
        assert_eq!(
            broker.plugins.stored_module_bytes(&digest).await.unwrap(),
            Some(module)
        );
        // A digest that is not one never names a file.
        for hash in ["../../metadata.json", "", "zz"] {
            assert_eq!(
                broker.plugins.stored_module_bytes(hash).await.unwrap(),
                None
            );
        }
        // A module whose bytes are not a valid module under its digest is refused by the
        // engine (the bytes match their own digest, but do not compile).
        let junk = Bytes::from_static(b"\0asm junk");
        let refused = broker
            .plugins
            .store_fetched_module(&crate::wasm::content_hash(&junk), junk, PluginKind::Filter)
            .await;
        assert!(refused.is_err());
    });
}
