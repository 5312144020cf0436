//! The replication driver on paused time: three nodes' `ReplicaManager`s with real
//! `PartitionLog`s on `SimDisk`s, fetches through the wire codec over an in-memory
//! transport that can stop a node, and a controller made of the real pure decisions
//! (`ControllerLogic::alter_partition`) applied to a `MetadataImage` every node watches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use ledge_protocol::wire::replica::{
    ReplicaFetchLimits, ReplicaFetchRequest, ReplicaFetchResponse,
};
use ledge_protocol::{BatchIter, EncodeOptions, Record, encode_batch};
use tokio::sync::watch;

use super::*;
use crate::clock::SimClock;
use crate::controller::{ControllerLogic, DecisionConfig, NodeRegistration, TopicImage};
use crate::sim::SimDisk;
use crate::storage::repair::DamageHint;
use crate::storage::{AppendDurability, LogConfig};

const TOPIC: &str = "orders";
const NODES: [NodeId; 3] = [1, 2, 3];
const LAG_MAX: Duration = Duration::from_secs(2);

type Manager = Arc<ReplicaManager<SimDisk>>;

/// The partition logs of one node, as the registry holds them: online, or offline as
/// damaged (a failed open, or a batch that failed its checks while served), repaired with
/// the storage's own `truncate_at_damage`.
struct MapLogs {
    logs: Mutex<BTreeMap<(String, u32), PartitionLog<SimDisk>>>,
    damaged: Mutex<BTreeMap<(String, u32), (String, DamageHint)>>,
    node: NodeId,
    disk: SimDisk,
    clock: Arc<dyn Clock>,
}

impl MapLogs {
    fn new(node: NodeId, disk: SimDisk, clock: Arc<dyn Clock>) -> Self {
        Self {
            logs: Mutex::new(BTreeMap::new()),
            damaged: Mutex::new(BTreeMap::new()),
            node,
            disk,
            clock,
        }
    }

    /// Opens `topic`/`partition` from `directory` as a restart would: online, or damaged
    /// with the open's report.
    async fn open(&self, topic: &str, partition: u32, directory: &std::path::Path) {
        let key = (topic.to_owned(), partition);
        match PartitionLog::open(
            self.disk.clone(),
            directory,
            log_config(),
            Arc::clone(&self.clock),
        )
        .await
        {
            Ok(log) => {
                self.logs.lock().unwrap().insert(key, log);
            }
            Err(error) => {
                let crate::storage::OpenError::Corrupt { path, position, .. } = &error else {
                    panic!("open failed: {error}");
                };
                let hint = DamageHint::At {
                    segment: path.clone(),
                    position: *position,
                };
                self.damaged
                    .lock()
                    .unwrap()
                    .insert(key, (error.to_string(), hint));
            }
        }
    }
}

impl LogStore<SimDisk> for MapLogs {
    fn partition_log(&self, topic: &str, partition: u32) -> Option<PartitionLog<SimDisk>> {
        self.logs
            .lock()
            .unwrap()
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    fn replace_log(&self, topic: &str, partition: u32, log: PartitionLog<SimDisk>) {
        self.logs
            .lock()
            .unwrap()
            .insert((topic.to_owned(), partition), log);
    }

    fn damaged(&self, topic: &str, partition: u32) -> Option<String> {
        self.damaged
            .lock()
            .unwrap()
            .get(&(topic.to_owned(), partition))
            .map(|(reason, _)| reason.clone())
    }

    fn mark_damaged<'a>(
        &'a self,
        topic: &'a str,
        partition: u32,
        offset: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let key = (topic.to_owned(), partition);
            let Some(log) = self.logs.lock().unwrap().remove(&key) else {
                return false;
            };
            self.damaged
                .lock()
                .unwrap()
                .insert(key, (reason.to_owned(), DamageHint::FromOffset(offset)));
            log.close().await.unwrap();
            true
        })
    }

    fn repair<'a>(&'a self, topic: &'a str, partition: u32) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let key = (topic.to_owned(), partition);
            let Some((_, hint)) = self.damaged.lock().unwrap().get(&key).cloned() else {
                return Err("not damaged".to_owned());
            };
            let directory = PathBuf::from(format!("/node-{}/{topic}-{partition}", self.node));
            crate::storage::repair::truncate_at_damage(
                &self.disk,
                &directory,
                Some(&hint),
                &log_config(),
            )
            .await
            .map_err(|error| error.to_string())?;
            self.damaged.lock().unwrap().remove(&key);
            self.open(topic, partition, &directory).await;
            Ok(())
        })
    }
}

/// The test controller: the real ISR decision applied to the image every node watches.
struct TestController {
    image: Mutex<(MetadataImage, u64)>,
    publish: watch::Sender<Arc<MetadataImage>>,
    logic: ControllerLogic,
}

impl TestController {
    fn update(&self, change: impl FnOnce(&mut MetadataImage)) {
        let mut guard = self.image.lock().unwrap();
        change(&mut guard.0);
        self.publish.send_replace(Arc::new(guard.0.clone()));
    }

    /// Runs one decision of the real controller logic on the image and publishes it.
    fn decide(
        &self,
        decision: impl FnOnce(
            &ControllerLogic,
            &MetadataImage,
        ) -> Result<
            Vec<crate::controller::MetadataRecord>,
            crate::controller::ControllerError,
        >,
        topic_id: TopicId,
        partition: u32,
    ) -> Result<AlterPartitionReply, String> {
        let mut guard = self.image.lock().unwrap();
        let (image, index) = &mut *guard;
        match decision(&self.logic, image) {
            Ok(records) => {
                for record in &records {
                    *index += 1;
                    image.apply(*index, record).unwrap();
                }
                self.publish.send_replace(Arc::new(image.clone()));
                let partition_epoch = image
                    .partition(topic_id, partition)
                    .unwrap()
                    .partition_epoch;
                Ok(AlterPartitionReply::Applied { partition_epoch })
            }
            Err(error) => Ok(AlterPartitionReply::Refused {
                code: error.code().to_owned(),
                message: error.to_string(),
            }),
        }
    }

    fn partition(&self) -> crate::controller::PartitionState {
        let guard = self.image.lock().unwrap();
        guard.0.topics[TOPIC].partitions[0].clone()
    }
}

/// Fetches through the wire codec to the leader's manager; a stopped node neither sends
/// nor answers.
struct MemoryTransport {
    managers: OnceLock<BTreeMap<NodeId, Manager>>,
    stopped: Mutex<Vec<NodeId>>,
    controller: Arc<TestController>,
}

impl MemoryTransport {
    fn is_stopped(&self, node: NodeId) -> bool {
        self.stopped.lock().unwrap().contains(&node)
    }
}

impl ReplicaTransport for MemoryTransport {
    fn fetch(
        &self,
        leader: NodeId,
        request: ReplicaFetchRequest,
    ) -> BoxFuture<'_, Result<ReplicaFetchResponse, String>> {
        Box::pin(async move {
            let from = request.replica_id;
            if self.is_stopped(from) || self.is_stopped(leader) {
                return Err(format!("node {leader} unreachable"));
            }
            let limits = ReplicaFetchLimits::default();
            let frame = request.encode_frame().into_bytes();
            let request = ReplicaFetchRequest::decode_bounded(frame, &limits).unwrap();
            let Some(manager) = self
                .managers
                .get()
                .map(|managers| Arc::clone(&managers[&leader]))
            else {
                return Err("the cluster is starting".to_owned());
            };
            let response = manager.handle_replica_fetch(from, request).await;
            if self.is_stopped(from) || self.is_stopped(leader) {
                return Err(format!("node {leader} unreachable"));
            }
            let frame = response.encode_frame().into_bytes();
            Ok(ReplicaFetchResponse::decode_bounded(frame, &limits).unwrap())
        })
    }

    fn report_damaged(
        &self,
        request: ReplicaDamagedRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>> {
        Box::pin(async move {
            if self.is_stopped(request.node_id) {
                return Err("the controller is unreachable".to_owned());
            }
            let topic_id = request.topic_id;
            let partition = request.partition;
            self.controller.decide(
                |logic, image| logic.replica_damaged(image, &request),
                topic_id,
                partition,
            )
        })
    }

    fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> BoxFuture<'_, Result<AlterPartitionReply, String>> {
        Box::pin(async move {
            let mut guard = self.controller.image.lock().unwrap();
            let (image, index) = &mut *guard;
            match self.controller.logic.alter_partition(image, &request) {
                Ok(records) => {
                    for record in &records {
                        *index += 1;
                        image.apply(*index, record).unwrap();
                    }
                    self.controller
                        .publish
                        .send_replace(Arc::new(image.clone()));
                    let partition_epoch = image
                        .partition(request.topic_id, request.partition)
                        .unwrap()
                        .partition_epoch;
                    Ok(AlterPartitionReply::Applied { partition_epoch })
                }
                Err(error) => Ok(AlterPartitionReply::Refused {
                    code: error.code().to_owned(),
                    message: error.to_string(),
                }),
            }
        })
    }
}

struct Cluster {
    managers: BTreeMap<NodeId, Manager>,
    logs: BTreeMap<NodeId, Arc<MapLogs>>,
    transport: Arc<MemoryTransport>,
    controller: Arc<TestController>,
    epochs: BTreeMap<NodeId, watch::Sender<Option<NodeEpoch>>>,
    disks: BTreeMap<NodeId, SimDisk>,
}

/// The tests' `damaged_retention`: short, so paused time does not run the cluster for days.
const DAMAGED_RETENTION: Duration = Duration::from_secs(600);

fn settings(node_id: NodeId) -> ReplicationSettings {
    ReplicationSettings {
        node_id,
        min_insync_replicas_default: 2,
        replica_lag_time_max: LAG_MAX,
        replica_fetch_wait_max: Duration::from_millis(500),
        replica_fetch_response_bytes_max: REPLICA_FETCH_RESPONSE_BYTES_MAX_DEFAULT,
        replica_fetch_partition_bytes_max: 4096,
        high_watermark_checkpoint_interval: Duration::from_secs(5),
        damaged_retention: DAMAGED_RETENTION,
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        batch_bytes_max: 1024,
        commit_bytes_max: 4096,
        recovery_read_bytes: 1024,
        ..LogConfig::default()
    }
}

fn batch(token: u64) -> Bytes {
    let records = vec![Record {
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from(format!("record-{token}"))),
        headers: Vec::new(),
    }];
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

fn initial_image() -> MetadataImage {
    let mut image = MetadataImage {
        last_applied_index: 10,
        ..MetadataImage::default()
    };
    for node in NODES {
        image.nodes.insert(
            node,
            NodeRegistration {
                node_epoch: u64::from(node) + 100,
                address: format!("127.0.0.1:{}", 9100 + node),
                incarnation_id: u64::from(node),
                storage_id: None,
                fenced: false,
                kafka_listeners: None,
            },
        );
    }
    image.topics.insert(
        TOPIC.to_owned(),
        TopicImage {
            topic_id: TopicId([7; 16]),
            configs: BTreeMap::new(),
            partitions: vec![crate::controller::PartitionState {
                replicas: NODES.to_vec(),
                isr: NODES.to_vec(),
                elr: Vec::new(),
                leader: Some(1),
                leader_epoch: 0,
                partition_epoch: 0,
            }],
        },
    );
    image
}

impl Cluster {
    async fn start() -> Self {
        let image = initial_image();
        let (publish, _) = watch::channel(Arc::new(image.clone()));
        let controller = Arc::new(TestController {
            image: Mutex::new((image, 10)),
            publish,
            logic: ControllerLogic::new(DecisionConfig::default()),
        });
        let transport = Arc::new(MemoryTransport {
            managers: OnceLock::new(),
            stopped: Mutex::new(Vec::new()),
            controller: Arc::clone(&controller),
        });
        let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_700_000_000_000));
        let mut managers = BTreeMap::new();
        let mut all_logs = BTreeMap::new();
        let mut epochs = BTreeMap::new();
        let mut disks = BTreeMap::new();
        for node in NODES {
            let disk = SimDisk::new(u64::from(node));
            let log = PartitionLog::open(
                disk.clone(),
                &PathBuf::from(format!("/node-{node}/{TOPIC}-0")),
                log_config(),
                Arc::clone(&clock),
            )
            .await
            .unwrap();
            let logs = Arc::new(MapLogs::new(node, disk.clone(), Arc::clone(&clock)));
            logs.replace_log(TOPIC, 0, log);
            let manager = ReplicaManager::new(
                settings(node),
                Arc::clone(&clock),
                disk.clone(),
                Arc::clone(&logs) as Arc<dyn LogStore<SimDisk>>,
                Arc::clone(&transport) as Arc<dyn ReplicaTransport>,
            );
            let (epoch, epoch_watch) = watch::channel(Some(u64::from(node) + 100));
            tokio::spawn(Arc::clone(&manager).run(controller.publish.subscribe(), epoch_watch));
            epochs.insert(node, epoch);
            disks.insert(node, disk.clone());
            managers.insert(node, manager);
            all_logs.insert(node, logs);
        }
        transport.managers.set(managers.clone()).ok().unwrap();
        Self {
            managers,
            logs: all_logs,
            transport,
            controller,
            epochs,
            disks,
        }
    }

    fn log(&self, node: NodeId) -> PartitionLog<SimDisk> {
        self.logs[&node].partition_log(TOPIC, 0).unwrap()
    }

    /// Node `node` restarts with `damage` done to its disk while it was down: its log is
    /// closed, damaged, and opened again as a restart opens it (online, or offline as
    /// damaged), and the node registers a new incarnation with the real controller decision
    /// (which takes it out of the ISR where others remain, KIP-903) and heartbeats.
    async fn restart_with(&self, node: NodeId, damage: impl FnOnce(&SimDisk)) {
        self.stop(node);
        let key = (TOPIC.to_owned(), 0);
        let log = self.logs[&node].logs.lock().unwrap().remove(&key).unwrap();
        log.close().await.unwrap();
        damage(&self.disks[&node]);
        let directory = PathBuf::from(format!("/node-{node}/{TOPIC}-0"));
        self.logs[&node].open(TOPIC, 0, &directory).await;
        let now = SimClock::new(0).now();
        let mut logic = ControllerLogic::new(DecisionConfig::default());
        let request = crate::controller::decisions::RegisterRequest {
            node_id: node,
            address: format!("127.0.0.1:{}", 9100 + node),
            incarnation_id: 1_000 + u64::from(node),
            storage_id: None,
            kafka_listeners: None,
        };
        let epoch = {
            let mut guard = self.controller.image.lock().unwrap();
            let (image, index) = &mut *guard;
            image.node_epoch_high = image.node_epoch_high.max(200);
            let (mut records, epoch) = logic.handle_register(image, now, &request).unwrap();
            let mut apply = |image: &mut MetadataImage, records: &[_]| {
                for record in records {
                    *index += 1;
                    image.apply(*index, record).unwrap();
                }
            };
            apply(image, &records);
            records = logic.handle_heartbeat(image, now, node, epoch).unwrap();
            apply(image, &records);
            self.controller
                .publish
                .send_replace(Arc::new(image.clone()));
            epoch
        };
        self.epochs[&node].send_replace(Some(epoch));
        self.resume(node);
    }

    fn stop(&self, node: NodeId) {
        self.transport.stopped.lock().unwrap().push(node);
    }

    fn resume(&self, node: NodeId) {
        self.transport
            .stopped
            .lock()
            .unwrap()
            .retain(|n| *n != node);
    }

    /// Produces one acks=all batch on `leader` and returns its end offset and the wait.
    async fn produce(
        &self,
        leader: NodeId,
        token: u64,
    ) -> (i64, tokio::task::JoinHandle<Result<(), AcksAllError>>) {
        let manager = Arc::clone(&self.managers[&leader]);
        let Ok(PartitionRole::Leader { leadership, .. }) = manager.role(TOPIC, 0, true) else {
            panic!("node {leader} does not lead");
        };
        let outcome = self
            .log(leader)
            .append(batch(token), AppendDurability::Synced)
            .await
            .unwrap();
        let end = outcome.last_offset + 1;
        let deadline = clock::deadline_after(SimClock::new(0).now(), Duration::from_secs(60));
        let wait = tokio::spawn(async move {
            manager
                .wait_acks_all(TOPIC, 0, leadership, end, deadline)
                .await
        });
        (end, wait)
    }

    /// Waits (in paused time, bounded) until `condition` holds.
    async fn until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        for _ in 0..2_000 {
            if condition(self) {
                return;
            }
            clock::sleep(&SimClock::new(0), Duration::from_millis(50)).await;
        }
        panic!("never reached: {what}");
    }
}

async fn stored(log: &PartitionLog<SimDisk>) -> Vec<Bytes> {
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.high_watermark() {
        let read = log.read(offset, 1 << 16).await.unwrap();
        if read.bytes.is_empty() {
            break;
        }
        for item in BatchIter::new(&read.bytes) {
            let (header, bytes) = item.unwrap();
            offset = header.last_offset() + 1;
            batches.push(read.bytes.slice_ref(bytes));
        }
    }
    batches
}

// Three nodes, one leader: acks=all produces are released only once both followers have
// synced them (checked at the moment of release), and all three logs end identical, the
// leader's offsets and epochs kept.
#[tokio::test(start_paused = true)]
async fn leader_and_two_followers_converge_and_acks_all_is_released_at_the_high_watermark() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..20 {
        let (end, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
        // Released: every ISR member has the batch on disk (and none was dropped).
        assert_eq!(
            cluster.managers[&1].leader_isr(TOPIC, 0),
            Some(NODES.to_vec())
        );
        for node in [2, 3] {
            assert!(
                cluster.log(node).high_watermark() >= end,
                "acks=all released at {end} while node {node} synced only {}",
                cluster.log(node).high_watermark()
            );
        }
    }
    let leader = stored(&cluster.log(1)).await;
    assert_eq!(leader.len(), 20);
    for node in [2, 3] {
        assert_eq!(stored(&cluster.log(node)).await, leader, "node {node}");
    }
    // A consumer on the leader reads up to the replicated high watermark.
    let (_, bound) = cluster.managers[&1]
        .consumer_bound(TOPIC, 0)
        .unwrap()
        .unwrap();
    assert_eq!(*bound.borrow(), cluster.log(1).high_watermark());
    // Followers refuse produce and consumer fetch.
    assert_eq!(
        cluster.managers[&2].role(TOPIC, 0, false),
        Err(ReplicaRoleError::NotLeaderOrFollower)
    );
    assert!(cluster.managers[&3].consumer_bound(TOPIC, 0).is_err());
}

// A stopped follower is proposed out of the ISR after replica_lag_time_max and the
// controller (the real decision) applies it; acks=all with min.insync.replicas = 2 then
// succeeds with two members, and with one left is refused with NotEnoughReplicas before
// anything is appended. The follower rejoins once it is back and caught up.
#[tokio::test(start_paused = true)]
async fn a_stopped_follower_leaves_the_isr_and_acks_all_follows_min_insync() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let (_, wait) = cluster.produce(1, 0).await;
    wait.await.unwrap().unwrap();
    cluster.stop(3);
    let (end, wait) = cluster.produce(1, 1).await;
    // Released once node 3 left the ISR: node 2 alone had to sync it.
    wait.await.unwrap().unwrap();
    assert_eq!(cluster.controller.partition().isr, vec![1, 2]);
    assert!(cluster.log(2).high_watermark() >= end);
    assert!(cluster.log(3).high_watermark() < end);
    cluster.stop(2);
    cluster
        .until("node 2 leaves the ISR", |cluster| {
            cluster.controller.partition().isr == vec![1]
        })
        .await;
    cluster
        .until("the leader takes the new ISR", |cluster| {
            cluster.managers[&1].leader_isr(TOPIC, 0) == Some(vec![1])
        })
        .await;
    let log_end = cluster.log(1).log_end_offset();
    assert_eq!(
        cluster.managers[&1].role(TOPIC, 0, true),
        Err(ReplicaRoleError::NotEnoughReplicas { isr: 1, min: 2 })
    );
    assert_eq!(cluster.log(1).log_end_offset(), log_end);
    // acks=1 is still taken by the leader alone.
    assert!(cluster.managers[&1].role(TOPIC, 0, false).is_ok());
    cluster.resume(2);
    cluster.resume(3);
    cluster
        .until("both followers rejoin", |cluster| {
            cluster.controller.partition().isr == vec![1, 2, 3]
        })
        .await;
    let (_, wait) = cluster.produce(1, 2).await;
    wait.await.unwrap().unwrap();
}

// A leader whose followers stopped holds an acks=all produce; the controller moves the
// leadership: the pending produce fails with NotLeaderOrFollower at once (never released
// by a high watermark the deposed leader can no longer prove), the old leader follows the
// new one and truncates the batch the new leader never had (KIP-279 diverging epoch).
#[tokio::test(start_paused = true)]
async fn a_deposed_leaders_pending_acks_fail_and_its_unreplicated_batch_is_truncated() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let (_, wait) = cluster.produce(1, 0).await;
    wait.await.unwrap().unwrap();
    let committed = stored(&cluster.log(1)).await;
    // Node 1 is cut off from its followers (its fetch answers are lost).
    cluster.stop(1);
    let Ok(PartitionRole::Leader { leadership, .. }) = cluster.managers[&1].role(TOPIC, 0, true)
    else {
        panic!("node 1 does not lead");
    };
    let outcome = cluster
        .log(1)
        .append(batch(1), AppendDurability::Synced)
        .await
        .unwrap();
    let manager = Arc::clone(&cluster.managers[&1]);
    let end = outcome.last_offset + 1;
    let deadline = clock::deadline_after(SimClock::new(0).now(), Duration::from_secs(60));
    let wait = tokio::spawn(async move {
        manager
            .wait_acks_all(TOPIC, 0, leadership, end, deadline)
            .await
    });
    // The controller elects node 2 from the ISR.
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(2);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    assert_eq!(wait.await.unwrap(), Err(AcksAllError::NotLeaderOrFollower));
    cluster.resume(1);
    cluster
        .until("node 2 leads", |cluster| {
            cluster.managers[&2].role(TOPIC, 0, false).is_ok()
        })
        .await;
    let (_, wait) = cluster.produce(2, 2).await;
    wait.await.unwrap().unwrap();
    let leader = stored(&cluster.log(2)).await;
    assert_eq!(leader.len(), committed.len() + 1);
    assert_eq!(leader[..committed.len()], committed[..]);
    cluster
        .until("node 1 truncated and caught up", |cluster| {
            cluster.log(1).high_watermark() == cluster.log(2).high_watermark()
        })
        .await;
    assert_eq!(stored(&cluster.log(1)).await, leader);
    assert_eq!(stored(&cluster.log(3)).await, leader);
}

// An acks=all produce accepted in one leadership whose wait starts only after the node lost
// and regained the leadership (deposed, truncated as a follower, elected again): the wait
// fails with NotLeaderOrFollower at once, and is never answered by the new leadership's
// high watermark, which passes offsets that now hold other records.
#[tokio::test(start_paused = true)]
async fn an_acks_all_wait_from_a_lost_leadership_fails_even_when_the_node_leads_again() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let Ok(PartitionRole::Leader { leadership, .. }) = cluster.managers[&1].role(TOPIC, 0, true)
    else {
        panic!("node 1 does not lead");
    };
    // The produce's append lands on node 1 alone (its followers are cut off) ...
    cluster.stop(1);
    let outcome = cluster
        .log(1)
        .append(batch(10), AppendDurability::Synced)
        .await
        .unwrap();
    let end = outcome.last_offset + 1;
    // ... node 2 is elected and writes its own record at that offset ...
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(2);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    cluster.resume(1);
    cluster
        .until("node 2 leads", |cluster| {
            cluster.managers[&2].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let (_, wait) = cluster.produce(2, 20).await;
    wait.await.unwrap().unwrap();
    cluster
        .until("node 1 truncated to node 2's log", |cluster| {
            cluster.log(1).high_watermark() == cluster.log(2).high_watermark()
        })
        .await;
    // ... and node 1 leads again, in a later epoch, with node 2's record at `end - 1`.
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(1);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    cluster
        .until("node 1 leads again", |cluster| {
            matches!(
                cluster.managers[&1].role(TOPIC, 0, true),
                Ok(PartitionRole::Leader { leadership: now, .. }) if now != leadership
            )
        })
        .await;
    let (_, wait) = cluster.produce(1, 30).await;
    wait.await.unwrap().unwrap();
    assert!(
        cluster.managers[&1]
            .consumer_bound(TOPIC, 0)
            .unwrap()
            .unwrap()
            .1
            .borrow()
            .ge(&end)
    );
    // The first produce's wait: its leadership is gone, whatever the high watermark says.
    let deadline = clock::deadline_after(SimClock::new(0).now(), Duration::from_secs(60));
    assert_eq!(
        cluster.managers[&1]
            .wait_acks_all(TOPIC, 0, leadership, end, deadline)
            .await,
        Err(AcksAllError::NotLeaderOrFollower)
    );
    let leader = stored(&cluster.log(1)).await;
    assert!(
        !leader.contains(&batch(10)),
        "the unreplicated append was truncated"
    );
}

// A restarted node (node epoch 105) whose image still holds its old registration (101) and
// names it leader at epoch 0 does not lead from that image: produce is refused and its log's
// leader epoch is left alone. Once the image holds the registration at 105 (and the
// controller's re-election), it leads in the epoch that image names.
#[tokio::test(start_paused = true)]
async fn a_restarted_node_never_leads_from_an_image_older_than_its_registration() {
    let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_700_000_000_000));
    let disk = SimDisk::new(1);
    let log = PartitionLog::open(
        disk.clone(),
        &PathBuf::from(format!("/node-1/{TOPIC}-0")),
        log_config(),
        Arc::clone(&clock),
    )
    .await
    .unwrap();
    log.append(batch(1), AppendDurability::Synced)
        .await
        .unwrap();
    let logs = Arc::new(MapLogs::new(1, disk.clone(), Arc::clone(&clock)));
    logs.replace_log(TOPIC, 0, log.clone());
    let (publish, _) = watch::channel(Arc::new(initial_image()));
    let transport = Arc::new(MemoryTransport {
        managers: OnceLock::new(),
        stopped: Mutex::new(Vec::new()),
        controller: Arc::new(TestController {
            image: Mutex::new((initial_image(), 10)),
            publish,
            logic: ControllerLogic::new(DecisionConfig::default()),
        }),
    });
    let manager = ReplicaManager::new(
        settings(1),
        Arc::clone(&clock),
        disk,
        Arc::clone(&logs) as Arc<dyn LogStore<SimDisk>>,
        transport as Arc<dyn ReplicaTransport>,
    );
    let restarted: NodeEpoch = 105;
    // The image replayed from before the restart: node 1 registered at 101, leader at 0.
    let stale = initial_image();
    assert_eq!(stale.nodes[&1].node_epoch, 101);
    assert_eq!(stale.topics[TOPIC].partitions[0].leader, Some(1));
    manager.apply(Arc::new(stale), Some(restarted)).await;
    assert_eq!(
        manager.role(TOPIC, 0, false),
        Err(ReplicaRoleError::NotLeaderOrFollower)
    );
    assert_eq!(
        manager.role(TOPIC, 0, true),
        Err(ReplicaRoleError::NotLeaderOrFollower)
    );
    assert!(manager.consumer_bound(TOPIC, 0).is_err());
    assert_eq!(
        log.leader_epoch(),
        0,
        "no leader epoch was written from the stale image"
    );
    // The image catches up: the registration at 105 and the controller's new epoch.
    let mut current = initial_image();
    current.last_applied_index += 2;
    current.nodes.get_mut(&1).unwrap().node_epoch = restarted;
    let partition = &mut current.topics.get_mut(TOPIC).unwrap().partitions[0];
    partition.leader_epoch = 1;
    partition.partition_epoch = 1;
    manager.apply(Arc::new(current), Some(restarted)).await;
    assert!(matches!(
        manager.role(TOPIC, 0, false),
        Ok(PartitionRole::Leader {
            leader_epoch: 1,
            ..
        })
    ));
    assert_eq!(logs.partition_log(TOPIC, 0).unwrap().leader_epoch(), 1);
}

// A produce that passed its checks while node 1 led appends while node 1 is deposed and
// node 2 writes new records: holding the append gate, its batch lands before any of node
// 2's on node 1 (the follower waits), so the diverging-epoch answer cuts it and the logs
// converge; after the gate, the old leadership can append nothing more.
#[tokio::test(start_paused = true)]
async fn a_produce_append_of_a_deposed_leader_lands_before_the_followers_writes() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let (_, wait) = cluster.produce(1, 0).await;
    wait.await.unwrap().unwrap();
    let Ok(PartitionRole::Leader { leadership, .. }) = cluster.managers[&1].role(TOPIC, 0, true)
    else {
        panic!("node 1 does not lead");
    };
    let gate = cluster.managers[&1]
        .leader_append(TOPIC, 0, leadership)
        .await
        .unwrap();
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(2);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    cluster
        .until("node 2 leads", |cluster| {
            cluster.managers[&2].role(TOPIC, 0, false).is_ok()
        })
        .await;
    // Node 2 writes a record; node 1's fetcher has every chance to fetch it meanwhile.
    let (_, new_leader_wait) = cluster.produce(2, 1).await;
    clock::sleep(&SimClock::new(0), Duration::from_secs(1)).await;
    // The produce accepted by node 1's old leadership lands now, then lets go of the gate.
    cluster
        .log(1)
        .append(batch(2), AppendDurability::Synced)
        .await
        .unwrap();
    drop(gate);
    assert_eq!(
        cluster.managers[&1]
            .leader_append(TOPIC, 0, leadership)
            .await
            .err(),
        Some(ReplicaRoleError::NotLeaderOrFollower)
    );
    new_leader_wait.await.unwrap().unwrap();
    cluster
        .until("node 1 holds exactly node 2's log", |cluster| {
            cluster.log(1).high_watermark() == cluster.log(2).high_watermark()
        })
        .await;
    let leader = stored(&cluster.log(2)).await;
    assert_eq!(stored(&cluster.log(1)).await, leader);
    assert!(!leader.contains(&batch(2)));
}

// A replica fetch is answered for the sender the peer layer names (its certificate), never
// the id its body claims; a sender the image does not know, or one with an older node epoch
// than the image's, is refused whole (StaleNodeEpoch); an unknown partition is refused alone.
#[tokio::test(start_paused = true)]
async fn replica_fetches_are_answered_for_the_certified_sender_and_bad_ones_refused() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let leader = &cluster.managers[&1];
    let partition = |topic: &str| ledge_protocol::wire::replica::ReplicaFetchPartition {
        topic: topic.to_owned(),
        partition: 0,
        current_leader_epoch: 0,
        fetch_offset: 0,
        last_fetched_epoch: None,
        log_start_offset: 0,
        partition_max_bytes: 4096,
    };
    let request =
        |replica_id: NodeId, node_epoch: NodeEpoch, topics: &[&str]| ReplicaFetchRequest {
            replica_id,
            node_epoch,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: topics.iter().map(|topic| partition(topic)).collect(),
        };
    // The body claims node 99 (no replica); the certificate says node 2: served.
    let answer = leader
        .handle_replica_fetch(2, request(99, 102, &[TOPIC, "missing"]))
        .await;
    assert_eq!(answer.error, ReplicaFetchError::None);
    assert_eq!(answer.partitions[0].error, ReplicaFetchError::None);
    assert_eq!(
        answer.partitions[1].error,
        ReplicaFetchError::UnknownTopicOrPartition
    );
    // The certificate says node 99 (not registered): refused, whatever the body says.
    let answer = leader
        .handle_replica_fetch(99, request(2, 102, &[TOPIC]))
        .await;
    assert_eq!(answer.error, ReplicaFetchError::StaleNodeEpoch);
    assert!(answer.partitions.is_empty());
    // An older incarnation of node 3.
    let answer = leader
        .handle_replica_fetch(3, request(3, 50, &[TOPIC]))
        .await;
    assert_eq!(answer.error, ReplicaFetchError::StaleNodeEpoch);
    // A follower is not a leader: refused per partition.
    let answer = cluster.managers[&2]
        .handle_replica_fetch(3, request(3, 103, &[TOPIC]))
        .await;
    assert_eq!(
        answer.partitions[0].error,
        ReplicaFetchError::NotLeaderOrFollower
    );
}

/// The path of a node's first segment.
// DeleteRecords in a cluster: the leader moves its log start; each follower moves its own
// up to it through its fetches (Kafka's followers do the same with the fetch answer's log
// start), its leader-epoch checkpoint with it, and a follower that was stopped follows once
// it is back. Without this, records deleted on the leader came back on a failover.
#[tokio::test(start_paused = true)]
async fn followers_follow_the_leaders_log_start() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..10 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster.stop(3);
    assert_eq!(cluster.log(1).delete_before(4).await.unwrap(), 4);
    cluster
        .until("node 2 follows the leader's log start", |cluster| {
            cluster.log(2).log_start_offset() == 4
        })
        .await;
    let epochs = cluster.log(2).leader_epochs();
    assert_eq!(
        epochs.entries().first().map(|entry| entry.start_offset),
        Some(4)
    );
    cluster.resume(3);
    cluster
        .until("node 3 follows once it is back", |cluster| {
            cluster.log(3).log_start_offset() == 4
        })
        .await;
    for node in [2, 3] {
        assert_eq!(
            stored(&cluster.log(node)).await,
            stored(&cluster.log(1)).await,
            "node {node} holds the leader's records from the new start"
        );
    }
}

impl Cluster {
    /// DeleteRecords on `leader` as the broker runs it: the leadership taken, the leader's
    /// log start moved durably to `offset`, then the wait for the low watermark, spawned.
    async fn delete_records(
        &self,
        leader: NodeId,
        offset: i64,
        timeout: Duration,
    ) -> tokio::task::JoinHandle<Result<i64, LowWatermarkError>> {
        let manager = Arc::clone(&self.managers[&leader]);
        let Ok(PartitionRole::Leader { leadership, .. }) = manager.role(TOPIC, 0, false) else {
            panic!("node {leader} does not lead");
        };
        assert!(self.log(leader).delete_before(offset).await.unwrap() >= offset);
        let deadline = clock::deadline_after(SimClock::new(0).now(), timeout);
        tokio::spawn(async move {
            manager
                .wait_low_watermark(TOPIC, 0, leadership, offset, deadline)
                .await
        })
    }

    /// Sets whether the controller holds `node` as fenced, in the image every node watches.
    fn set_fenced(&self, node: NodeId, fenced: bool) {
        self.controller.update(|image| {
            image.nodes.get_mut(&node).unwrap().fenced = fenced;
        });
    }

    async fn produced(&self, count: u64) {
        for token in 0..count {
            let (_, wait) = self.produce(1, token).await;
            wait.await.unwrap().unwrap();
        }
    }
}

// DeleteRecords on a 3-replica partition (Kafka's `DelayedDeleteRecords`): the answer comes
// only once both followers moved their log start to the offset (durably: their fetches
// report it after `delete_before`), and it is the low watermark. Before, the leader
// answered as soon as its own move was durable.
#[tokio::test(start_paused = true)]
async fn delete_records_is_answered_once_the_followers_moved_their_log_start() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    cluster.produced(10).await;
    let wait = cluster.delete_records(1, 4, Duration::from_secs(30)).await;
    assert_eq!(wait.await.unwrap(), Ok(4));
    // Checked at the moment of the answer: every replica's log starts there.
    for node in NODES {
        assert_eq!(cluster.log(node).log_start_offset(), 4, "node {node}");
    }
    // A delete the replicas already passed is answered at once with the low watermark.
    let wait = cluster.delete_records(1, 2, Duration::ZERO).await;
    assert_eq!(wait.await.unwrap(), Ok(4));
}

// A follower's fetch waiting at the leader (nothing new to read) is answered as soon as the
// leader's log start moves, with the new log start, not at the end of its wait: the
// followers move theirs, and DeleteRecords is answered, within a round trip rather than
// `replica_fetch_wait_max`. Measured on the paused (simulated) clock.
#[tokio::test(start_paused = true)]
async fn a_waiting_replica_fetch_is_answered_when_the_leaders_log_start_moves() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    cluster.produced(10).await;
    let end = cluster.log(1).high_watermark();
    let request = ReplicaFetchRequest {
        replica_id: 3,
        node_epoch: 103,
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        partitions: vec![ledge_protocol::wire::replica::ReplicaFetchPartition {
            topic: TOPIC.to_owned(),
            partition: 0,
            current_leader_epoch: 0,
            fetch_offset: end,
            last_fetched_epoch: Some(0),
            log_start_offset: 0,
            partition_max_bytes: 4096,
        }],
    };
    let clock = SimClock::new(0);
    let started = clock.now();
    let leader = Arc::clone(&cluster.managers[&1]);
    let fetch = tokio::spawn(async move { leader.handle_replica_fetch(3, request).await });
    clock::sleep(&clock, Duration::from_millis(10)).await;
    assert!(!fetch.is_finished(), "nothing new: the fetch waits");
    let wait = cluster.delete_records(1, 4, Duration::from_secs(30)).await;
    let answer = fetch.await.unwrap();
    assert!(
        clock.now() < started + Duration::from_millis(500),
        "answered only at the end of its wait"
    );
    assert_eq!(answer.partitions[0].error, ReplicaFetchError::None);
    assert_eq!(answer.partitions[0].log_start_offset, 4);
    assert!(answer.partitions[0].records.is_empty());
    assert_eq!(wait.await.unwrap(), Ok(4));
}

// A follower down but still live in the controller's image (Kafka's alive broker) holds
// DeleteRecords back, in the ISR or not: while it is live the wait stays pending (here
// past the time it is shrunk out of the ISR); once the controller fences it, the answer
// comes without it. Back and unfenced, it follows the leader's log start.
#[tokio::test(start_paused = true)]
async fn a_live_follower_out_of_the_isr_holds_delete_records_back_until_it_is_fenced() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    cluster.produced(10).await;
    cluster.stop(3);
    let wait = cluster.delete_records(1, 4, Duration::from_secs(60)).await;
    cluster
        .until("node 2 follows the leader's log start", |cluster| {
            cluster.log(2).log_start_offset() == 4
        })
        .await;
    cluster
        .until("node 3 leaves the ISR", |cluster| {
            cluster.managers[&1].leader_isr(TOPIC, 0) == Some(vec![1, 2])
        })
        .await;
    assert!(!wait.is_finished(), "answered while node 3 is live");
    assert_eq!(cluster.log(3).log_start_offset(), 0);
    cluster.set_fenced(3, true);
    assert_eq!(wait.await.unwrap(), Ok(4));
    assert_eq!(cluster.log(3).log_start_offset(), 0);
    cluster.set_fenced(3, false);
    cluster.resume(3);
    cluster
        .until("node 3 follows once it is back", |cluster| {
            cluster.log(3).log_start_offset() == 4
        })
        .await;
}

// A live follower that cannot follow (unreachable) makes DeleteRecords time out at its
// deadline (simulated time) with RequestTimedOut; the leader's move stays done, and a
// deposed leader's pending wait fails with NotLeaderOrFollower.
#[tokio::test(start_paused = true)]
async fn delete_records_times_out_without_the_followers_and_fails_when_deposed() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    cluster.produced(10).await;
    cluster.stop(3);
    let wait = cluster.delete_records(1, 4, Duration::from_secs(5)).await;
    assert_eq!(wait.await.unwrap(), Err(LowWatermarkError::RequestTimedOut));
    assert_eq!(cluster.log(1).log_start_offset(), 4);
    let wait = cluster.delete_records(1, 6, Duration::from_secs(600)).await;
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(2);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    assert_eq!(
        wait.await.unwrap(),
        Err(LowWatermarkError::NotLeaderOrFollower)
    );
}

fn first_segment(node: NodeId) -> PathBuf {
    PathBuf::from(format!("/node-{node}/{TOPIC}-0/00000000000000000000.log"))
}

/// Byte `byte` of the records of batch `index` (every test batch has the same size) in a
/// segment: past the batch header, so the CRC covers it.
fn inside_batch(index: usize) -> usize {
    16 + index * batch(0).len() + ledge_protocol::BATCH_HEADER_BYTES + 3
}

/// The names of the kept-aside files in a node's partition directory.
async fn kept_aside(disk: &SimDisk, node: NodeId) -> Vec<String> {
    use crate::storage::Disk;
    disk.list_dir(&PathBuf::from(format!("/node-{node}/{TOPIC}-0")))
        .await
        .unwrap()
        .into_iter()
        .filter(|name| name.ends_with(".damaged"))
        .collect()
}

// Goal (issue 13 item 4): a follower restarted with a bit flipped in an acknowledged batch
// opens offline as damaged; its registration took it out of the ISR, so it cuts its log at
// the last good batch (the cut bytes kept aside), refetches the rest from the leader while
// producers go on, and rejoins the ISR only once caught up, with a log equal to the
// leader's. Method: three managers on paused time, the real controller decisions.
#[tokio::test(start_paused = true)]
async fn a_follower_restarted_with_a_flipped_bit_is_cut_and_refetches_from_the_leader() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..10 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster
        .restart_with(3, |disk| {
            assert!(disk.corrupt_bit(&first_segment(3), inside_batch(3), 0));
        })
        .await;
    assert!(cluster.logs[&3].damaged(TOPIC, 0).is_some());
    assert_eq!(cluster.controller.partition().isr, vec![1, 2]);
    for token in 10..15 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster
        .until(
            "node 3 repaired, caught up and back in the ISR",
            |cluster| cluster.controller.partition().isr.len() == 3,
        )
        .await;
    // Back in the ISR means every acknowledged batch is on its disk, the damaged one too.
    let leader = stored(&cluster.log(1)).await;
    assert_eq!(leader.len(), 15);
    cluster
        .until("node 3 has the leader's log", |cluster| {
            cluster.log(3).high_watermark() == cluster.log(1).high_watermark()
        })
        .await;
    assert_eq!(stored(&cluster.log(3)).await, leader);
    let kept = kept_aside(&cluster.disks[&3], 3).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
}

// Goal (issue 13 item 4): a leader whose verified read meets a damaged batch while serving
// a follower never serves it: it takes the partition offline, reports the damage, the
// controller elects another ISR member, and the old leader cuts its log at the damage and
// refetches from the new one; every acknowledged batch survives on all three nodes.
#[tokio::test(start_paused = true)]
async fn a_leader_that_meets_a_damaged_batch_while_serving_hands_over_and_is_repaired() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..3 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    // Node 3 misses batches 3-7 (it leaves the ISR; node 2 has them all).
    cluster.stop(3);
    for token in 3..8 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    let acknowledged = stored(&cluster.log(2)).await;
    assert_eq!(acknowledged.len(), 8);
    assert!(cluster.disks[&1].corrupt_bit(&first_segment(1), inside_batch(5), 2));
    cluster.resume(3);
    cluster
        .until("node 2 leads", |cluster| {
            cluster.controller.partition().leader == Some(2)
        })
        .await;
    let after = cluster.controller.partition();
    assert!(
        !after.isr.contains(&1) && !after.elr.contains(&1),
        "{after:?}"
    );
    cluster
        .until("all three back in the ISR", |cluster| {
            cluster.controller.partition().isr.len() == 3
        })
        .await;
    cluster
        .until("all three logs equal", |cluster| {
            [1, 3].iter().all(|node| {
                cluster.logs[node]
                    .partition_log(TOPIC, 0)
                    .is_some_and(|log| log.high_watermark() == cluster.log(2).high_watermark())
            })
        })
        .await;
    for node in NODES {
        assert_eq!(
            stored(&cluster.log(node)).await,
            acknowledged,
            "node {node}"
        );
    }
    assert_eq!(kept_aside(&cluster.disks[&1], 1).await.len(), 1);
}

// Goal (issue 13 item 4): a follower in the ISR whose log the background verifier reports
// damaged in a sealed segment stops using it, reports itself so the controller drops it
// from the ISR (it is never counted with records it is about to give up), is cut at the
// damaged batch (the later segment kept aside) and refetches, then rejoins the ISR with the
// leader's log.
#[tokio::test(start_paused = true)]
async fn a_follower_the_verifier_finds_damaged_leaves_the_isr_before_it_is_cut() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    // Enough batches that the first segment (4 KiB) is sealed.
    for token in 0..80 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    let follower = cluster.log(3);
    assert!(
        follower.segment_count() >= 2,
        "the first segment is not sealed"
    );
    let position = inside_batch(10) - ledge_protocol::BATCH_HEADER_BYTES - 3;
    assert!(cluster.disks[&3].corrupt_bit(&first_segment(3), inside_batch(10), 4));
    follower.report_damage(crate::storage::verify::SegmentDamage {
        path: first_segment(3),
        segment_base: 0,
        position: position as u64,
        first_offset: 10,
        reason: "CRC-32C mismatch (test)".to_owned(),
        found_ms: 0,
    });
    let mut left_the_isr = false;
    cluster
        .until(
            "node 3 repaired, caught up and back in the ISR",
            |cluster| {
                let isr = cluster.controller.partition().isr;
                left_the_isr |= !isr.contains(&3);
                left_the_isr && isr.len() == 3
            },
        )
        .await;
    cluster
        .until("node 3 has the leader's log", |cluster| {
            cluster.log(3).high_watermark() == cluster.log(1).high_watermark()
        })
        .await;
    assert_eq!(stored(&cluster.log(3)).await, stored(&cluster.log(1)).await);
    // The damaged segment's tail and the later segment(s), kept aside.
    assert!(kept_aside(&cluster.disks[&3], 3).await.len() >= 2);
}

// Goal (issue 13 item 4): a leader that is the only ISR member and meets a damaged batch
// while serving a follower serves the verified prefix only and keeps the partition online
// for its intact ranges (no other copy to hand over to), as a single node does.
#[tokio::test(start_paused = true)]
async fn the_only_in_sync_leader_meeting_a_damaged_batch_stays_online() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..3 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster.stop(2);
    cluster.stop(3);
    cluster
        .until("node 1 alone in the ISR", |cluster| {
            cluster.controller.partition().isr == vec![1]
        })
        .await;
    for token in 3..8 {
        cluster
            .log(1)
            .append(batch(token), AppendDurability::Synced)
            .await
            .unwrap();
    }
    assert!(cluster.disks[&1].corrupt_bit(&first_segment(1), inside_batch(5), 6));
    cluster.resume(3);
    // Node 3 gets the batches before the damaged one, and the answer that carried them was
    // made after the leader met the damage.
    cluster
        .until("node 3 has the verified prefix", |cluster| {
            cluster.log(3).high_watermark() == 5
        })
        .await;
    assert!(cluster.logs[&1].partition_log(TOPIC, 0).is_some());
    assert_eq!(cluster.logs[&1].damaged(TOPIC, 0), None);
    assert_eq!(cluster.controller.partition().leader, Some(1));
}

// Goal (issue 13 item 4, damage found on the read path): a leader whose consumer read meets
// a damaged batch never serves it and hands over: the verified read stops before the bad
// batch, the leader takes its log offline (acks=all and reads refused at once), the
// controller elects another ISR member and drops it from the ISR, and the old leader is
// cut at the damage, refetches and rejoins the ISR with the same batches as the others.
// Method: the broker's consumer path (`broker::fetch`'s `leader_read`) is the verified
// read plus `handle_leader_damage`, called here the same way on three managers.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_consumer_read_meets_a_damaged_batch_hands_over_and_is_repaired() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..8 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    let acknowledged = stored(&cluster.log(2)).await;
    assert!(cluster.disks[&1].corrupt_bit(&first_segment(1), inside_batch(5), 1));
    // A consumer reading from the start: the intact prefix only, and the damage named.
    let read = cluster.log(1).read_verified(0, 1 << 20).await.unwrap();
    let damage = read.damage.expect("the flipped batch is found");
    assert_eq!(damage.offset, 5);
    assert_eq!(read.end_offset, 5);
    let action = cluster.managers[&1]
        .handle_leader_damage(TOPIC, 0, damage.offset, &damage.reason)
        .await;
    assert_eq!(action, damage_repair::LeaderDamageAction::HandOver);
    // Offline at once: nothing more is served or acknowledged from the damaged log.
    assert!(cluster.logs[&1].damaged(TOPIC, 0).is_some());
    cluster
        .until("another ISR member leads", |cluster| {
            cluster
                .controller
                .partition()
                .leader
                .is_some_and(|leader| leader != 1)
        })
        .await;
    // Not a leader's bound any more (the broker answers `NotLeaderOrFollower` for a placed
    // partition without one).
    assert!(!matches!(
        cluster.managers[&1].consumer_bound(TOPIC, 0),
        Ok(Some(_))
    ));
    let after = cluster.controller.partition();
    assert!(
        !after.isr.contains(&1) && !after.elr.contains(&1),
        "{after:?}"
    );
    cluster
        .until("node 1 repaired and back in the ISR", |cluster| {
            cluster.controller.partition().isr.len() == 3
        })
        .await;
    let leader = cluster.controller.partition().leader.unwrap();
    cluster
        .until("node 1 has the new leader's log", |cluster| {
            cluster.logs[&1]
                .partition_log(TOPIC, 0)
                .is_some_and(|log| log.high_watermark() == cluster.log(leader).high_watermark())
        })
        .await;
    assert_eq!(stored(&cluster.log(1)).await, acknowledged);
    assert_eq!(kept_aside(&cluster.disks[&1], 1).await.len(), 1);
}

// Goal (issue 13 item 4): a leader whose background verifier finds a damaged batch in a
// sealed segment hands over even if nobody reads it: its timers see the damage, the log goes
// offline, the controller elects another ISR member, and the old leader is cut, refetches
// and rejoins with the others' log.
#[tokio::test(start_paused = true)]
async fn a_leader_the_verifier_finds_damaged_hands_over_and_is_repaired() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..80 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    let leader_log = cluster.log(1);
    assert!(
        leader_log.segment_count() >= 2,
        "the first segment is not sealed"
    );
    let position = inside_batch(10) - ledge_protocol::BATCH_HEADER_BYTES - 3;
    assert!(cluster.disks[&1].corrupt_bit(&first_segment(1), inside_batch(10), 4));
    leader_log.report_damage(crate::storage::verify::SegmentDamage {
        path: first_segment(1),
        segment_base: 0,
        position: position as u64,
        first_offset: 10,
        reason: "CRC-32C mismatch (test)".to_owned(),
        found_ms: 0,
    });
    let mut handed_over = false;
    cluster
        .until(
            "node 1 handed over, repaired and back in the ISR",
            |cluster| {
                let partition = cluster.controller.partition();
                handed_over |= partition.leader != Some(1) && !partition.isr.contains(&1);
                handed_over && partition.isr.len() == 3
            },
        )
        .await;
    let leader = cluster.controller.partition().leader.unwrap();
    cluster
        .until("node 1 has the new leader's log", |cluster| {
            cluster.logs[&1]
                .partition_log(TOPIC, 0)
                .is_some_and(|log| log.high_watermark() == cluster.log(leader).high_watermark())
        })
        .await;
    assert_eq!(
        stored(&cluster.log(1)).await,
        stored(&cluster.log(leader)).await
    );
    assert!(kept_aside(&cluster.disks[&1], 1).await.len() >= 2);
}

/// A new driver for node `node` over its log, as a restart makes one (nothing in memory),
/// with the checkpoint in `/node-<node>` read first if `checkpoint` (written back if
/// `writable`); the image is applied, not followed.
async fn restarted_manager(
    cluster: &Cluster,
    node: NodeId,
    checkpoint: bool,
    writable: bool,
) -> Manager {
    let manager = ReplicaManager::new(
        settings(node),
        Arc::new(SimClock::new(0)),
        cluster.disks[&node].clone(),
        Arc::clone(&cluster.logs[&node]) as Arc<dyn LogStore<SimDisk>>,
        Arc::clone(&cluster.transport) as Arc<dyn ReplicaTransport>,
    );
    if checkpoint {
        manager
            .load_high_watermark_checkpoint(&PathBuf::from(format!("/node-{node}")), writable)
            .await;
    }
    let image = Arc::clone(&cluster.controller.publish.borrow());
    manager.apply(image, Some(u64::from(node) + 100)).await;
    manager
}

/// The replicated high watermark `manager` serves consumers of the partition with.
fn consumer_high_watermark(manager: &Manager) -> i64 {
    let (_, bound) = manager
        .consumer_bound(TOPIC, 0)
        .unwrap()
        .expect("a leader's bound");
    *bound.borrow()
}

// Goal (issue 13, high-watermark checkpoint): a leader restarted as the last ISR member
// (the ISR below min.insync.replicas, so its high watermark cannot move) serves the records
// committed before its restart. Without the checkpoint it starts from 0 and serves nothing
// (and `ListOffsets` latest answers 0): the gap this closes. Method: the checkpoint as the
// driver writes it, then a fresh driver over the same log, with and without reading it.
#[tokio::test(start_paused = true)]
async fn a_restarted_leader_starts_from_its_checkpointed_high_watermark() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..10 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    // Node 1's checkpoint writer, as `run` starts it on a writable data directory.
    tokio::spawn(run_housekeeping(
        Arc::downgrade(&cluster.managers[&1]),
        Arc::new(SimClock::new(0)),
        cluster.disks[&1].clone(),
        PathBuf::from("/node-1"),
        Duration::from_secs(5),
    ));
    clock::sleep(&SimClock::new(0), Duration::from_secs(6)).await;
    let written = checkpoint::load(&cluster.disks[&1], &PathBuf::from("/node-1"))
        .await
        .unwrap()
        .expect("written");
    assert_eq!(written.get(&(TopicId([7; 16]), 0)), Some(&10));
    cluster.stop(2);
    cluster.stop(3);
    cluster
        .until("node 1 alone in the ISR", |cluster| {
            cluster.controller.partition().isr == vec![1]
        })
        .await;
    cluster.managers[&1].shutdown();

    let without = restarted_manager(&cluster, 1, false, false).await;
    assert_eq!(consumer_high_watermark(&without), 0);
    let with = restarted_manager(&cluster, 1, true, false).await;
    assert_eq!(consumer_high_watermark(&with), 10);
    // Capped at what the log holds: a value above it (a log cut since) is not trusted.
    checkpoint::store(
        &cluster.disks[&1],
        &PathBuf::from("/node-1"),
        &HighWatermarks::from([((TopicId([7; 16]), 0), 1_000)]),
    )
    .await
    .unwrap();
    let capped = restarted_manager(&cluster, 1, true, false).await;
    assert_eq!(consumer_high_watermark(&capped), 10);
}

// Goal: a damaged checkpoint never stops a start: the driver warns, starts every partition
// from 0 (as without a file), and writes a good checkpoint again at its next interval.
// Method: a file with a bad checksum in node 1's data directory, then a fresh driver that
// reads it and runs.
#[tokio::test(start_paused = true)]
async fn a_damaged_checkpoint_falls_back_to_zero_and_is_written_again() {
    use crate::storage::{Disk, DiskFile, OpenMode};
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..4 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster.stop(2);
    cluster.stop(3);
    cluster
        .until("node 1 alone in the ISR", |cluster| {
            cluster.controller.partition().isr == vec![1]
        })
        .await;
    cluster.managers[&1].shutdown();
    let path = PathBuf::from("/node-1").join(checkpoint::HIGH_WATERMARK_CHECKPOINT_FILE);
    let disk = &cluster.disks[&1];
    let file = disk.open(&path, OpenMode::CreateNew).await.unwrap();
    file.write_at(
        0,
        Bytes::from_static(b"ledge-high-watermarks 1 1 0000\ngarbage\n"),
    )
    .await
    .unwrap();
    file.sync_data().await.unwrap();
    drop(file);
    let restarted = restarted_manager(&cluster, 1, true, true).await;
    assert_eq!(consumer_high_watermark(&restarted), 0);
    let (_epoch_sender, epoch) = watch::channel(Some(101));
    tokio::spawn(Arc::clone(&restarted).run(cluster.controller.publish.subscribe(), epoch));
    // The next write replaces the damaged file with a good one (no partition above 0).
    clock::sleep(&SimClock::new(0), Duration::from_secs(6)).await;
    let loaded = checkpoint::load(disk, &PathBuf::from("/node-1"))
        .await
        .expect("a good checkpoint again")
        .expect("written");
    assert_eq!(loaded, HighWatermarks::new());
}

// Goal (issue 13, `.damaged` cleanup): the bytes a repair cut are kept for
// `damaged_retention` (10 minutes here) and deleted only once the replica is healthy again (in
// the ISR): not before the retention, and not while the replica is out of the ISR however
// old they are. Method: a follower repaired from a flipped bit, then the housekeeping step
// on paused time.
#[tokio::test(start_paused = true)]
async fn a_repaired_replicas_damaged_files_go_after_their_retention_once_it_is_healthy() {
    let minute = Duration::from_secs(60);
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    for token in 0..10 {
        let (_, wait) = cluster.produce(1, token).await;
        wait.await.unwrap().unwrap();
    }
    cluster
        .restart_with(3, |disk| {
            assert!(disk.corrupt_bit(&first_segment(3), inside_batch(3), 0));
        })
        .await;
    cluster
        .until("node 3 repaired and back in the ISR", |cluster| {
            cluster.controller.partition().isr.len() == 3
        })
        .await;
    let disk = &cluster.disks[&3];
    let manager = &cluster.managers[&3];
    assert_eq!(kept_aside(disk, 3).await.len(), 1);
    // First seen now; kept for the retention.
    manager.remove_expired_damaged_files().await;
    clock::sleep(&SimClock::new(0), 6 * minute).await;
    manager.remove_expired_damaged_files().await;
    assert_eq!(
        kept_aside(disk, 3).await.len(),
        1,
        "deleted before its retention"
    );
    // Out of the ISR (stopped): kept, however old.
    cluster.stop(3);
    cluster
        .until("node 3 out of the ISR", |cluster| {
            !cluster.controller.partition().isr.contains(&3)
        })
        .await;
    clock::sleep(&SimClock::new(0), 6 * minute).await;
    manager.remove_expired_damaged_files().await;
    assert_eq!(
        kept_aside(disk, 3).await.len(),
        1,
        "deleted while the replica is out of the ISR"
    );
    // Back in the ISR: deleted.
    cluster.resume(3);
    cluster
        .until("node 3 back in the ISR", |cluster| {
            cluster.controller.partition().isr.len() == 3
        })
        .await;
    cluster
        .until("node 3's manager sees itself in the ISR", |cluster| {
            cluster.managers[&3]
                .lock()
                .partitions
                .values()
                .all(|hosted| hosted.state.isr.contains(&3))
        })
        .await;
    manager.remove_expired_damaged_files().await;
    assert!(kept_aside(disk, 3).await.is_empty());
}

// Goal (KIP-207): a new leader whose high watermark lags the start of its leader epoch says
// so (ListOffsets answers OffsetNotAvailable then), and stops lagging once a follower has
// fetched up to that start. Method: node 2 holds a batch beyond the committed end (fetched
// from node 1, never acknowledged) when node 1 and node 3 stop and node 2 is elected; node 3
// comes back and fetches.
#[tokio::test(start_paused = true)]
async fn a_new_leaders_high_watermark_lags_its_epoch_start_until_a_follower_fetches() {
    let cluster = Cluster::start().await;
    cluster
        .until("node 1 leads", |cluster| {
            cluster.managers[&1].role(TOPIC, 0, true).is_ok()
        })
        .await;
    let (committed_end, wait) = cluster.produce(1, 0).await;
    wait.await.unwrap().unwrap();
    cluster
        .until("node 2 knows the high watermark", |cluster| {
            cluster.managers[&2]
                .high_watermarks()
                .get(&(TopicId([7; 16]), 0))
                .is_some_and(|known| *known >= committed_end)
        })
        .await;
    assert_eq!(
        cluster.managers[&1].leader_epoch_start_offset(TOPIC, 0),
        Some(0)
    );
    assert_eq!(
        cluster.managers[&2].leader_epoch_start_offset(TOPIC, 0),
        None
    );
    cluster.stop(1);
    cluster.stop(3);
    // A batch node 2 fetched from node 1 whose high watermark never reached it.
    let fetched = cluster
        .log(2)
        .append(batch(1), AppendDurability::Synced)
        .await
        .unwrap();
    let epoch_start = fetched.last_offset + 1;
    cluster.controller.update(|image| {
        let partition = &mut image.topics.get_mut(TOPIC).unwrap().partitions[0];
        partition.leader = Some(2);
        partition.leader_epoch += 1;
        partition.partition_epoch += 1;
    });
    cluster
        .until("node 2 leads", |cluster| {
            cluster.managers[&2].leader_epoch_start_offset(TOPIC, 0) == Some(epoch_start)
        })
        .await;
    let (_, bound) = cluster.managers[&2]
        .consumer_bound(TOPIC, 0)
        .unwrap()
        .unwrap();
    assert_eq!(*bound.borrow(), committed_end, "lags its epoch start");
    cluster.resume(3);
    cluster
        .until("node 3 fetched up to the epoch start", |cluster| {
            cluster.managers[&2]
                .consumer_bound(TOPIC, 0)
                .is_ok_and(|bound| bound.is_some_and(|(_, hw)| *hw.borrow() >= epoch_start))
        })
        .await;
}
