//! The answering loop over an in-memory stream and a simulated disk whose fdatasyncs can be
//! held: produces written back to back on one connection are all sequenced before the first
//! is durable and share its group commits, and are answered in order; a failed produce
//! answers only itself; other requests stay serial; a client that goes away or a shutdown
//! never cuts an append short; a client that does not read its answers holds back only the
//! writes. Time never moves (a manual clock), so only progress can make a condition hold.
//!
//! The one place where a produce's path can be overtaken by a later produce's is the
//! topic's produce filter: its calls run on tokio's blocking pool (the node's
//! `PluginExecutor`), so a slow call for one produce lets a later produce's fast call end
//! first. A filter that spins on a marked record (`SPIN_ON_MARKER`) makes that happen;
//! the tests then check the order the connection promises, never how long anything took.

use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use kafka_protocol::protocol::Decodable;
use ledge_protocol::EncodeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use kafka_protocol::messages::{CreateTopicsRequest, create_topics_request, produce_request};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::wire::UploadModuleRequest;
use ledge_protocol::{Record, encode_batch};

use super::{Order, frame_bytes, may_start, serve_connection};
use crate::broker::{Broker, BrokerConfig};
use crate::clock::{Clock, ManualClock};
use crate::kafka::KafkaSettings;
use crate::kafka::apis::{KafkaRequest, KafkaResponse};
use crate::kafka::codec::tests::{request_frame, split_response};
use crate::kafka::dispatch::{KafkaService, ListenerKind};
use crate::kafka::fetch_sessions::FetchSessionCache;
use crate::kafka::tests::{
    ask, batch, create_topic, list_offsets, list_offsets_request, name, produce, produce_request,
};
use crate::sim::SimDisk;
use crate::transport::budget::InFlightBudget;
use crate::wasm::PluginKind;
use crate::wasm::runtime::tests::Wat;

const TOPIC: &str = "t";
const RECORDS_PER_BATCH: usize = 4;
const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 6;
/// Offsets taken by the batch `connect` writes first.
const WARM_UP: i64 = RECORDS_PER_BATCH as i64;
/// ListOffsets' "latest" timestamp.
const LATEST: i64 = -1;
/// A topic whose produce filter is `SLOW_FILTER` (with `Setup::filtered`).
const FILTERED: &str = "filtered";
const FILTERED_PARTITIONS: i32 = 2;
/// The produce filter that spins on marked records.
const SLOW_FILTER: &str = "slow";
/// Values starting with this make `SLOW_FILTER` spin; the others pass at once.
const MARKER: &str = "SLOW";
/// A filter call's fuel per record in these tests: room for `SPIN_ON_MARKER`'s loop (eight
/// instructions a turn) in a call over one record.
const FUEL_PER_RECORD: u64 = 1_000_000_000;
/// Before a filter call answers (keeping every record): if the input holds `MARKER`'s
/// four bytes (the little-endian i32 0x574F4C53, "SLOW"), counts down from 100,000,000
/// once (about 800,000,000 fuel: well within `FUEL_PER_RECORD`, and a long while on the
/// blocking pool next to an unmarked call).
const SPIN_ON_MARKER: &str = r#"
    (local.set $k (local.get $p))
    (block $scanned (loop $scan
      (br_if $scanned (i32.gt_u (i32.add (local.get $k) (i32.const 4)) (local.get $out)))
      (if (i32.eq (i32.load (local.get $k)) (i32.const 0x574F4C53))
        (then
          (local.set $k (i32.const 100000000))
          (block $spun (loop $spin
            (br_if $spun (i32.eqz (local.get $k)))
            (local.set $k (i32.sub (local.get $k) (i32.const 1)))
            (br $spin)))
          (br $scanned)))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $scan)))"#;

#[test]
fn frame_lengths_are_checked_before_allocation() {
    assert_eq!(frame_bytes(-1, 100), None);
    assert_eq!(frame_bytes(i32::MIN, 100), None);
    assert_eq!(frame_bytes(101, 100), None);
    assert_eq!(frame_bytes(100, 100), Some(100));
    assert_eq!(frame_bytes(0, 100), Some(0));
}

#[test]
fn produces_start_once_sequenced_and_everything_else_alone() {
    // The rule alone: a produce starts behind a sequenced one (the bound on how many are
    // unfinished is the reader's permits, not this rule); a request that is not a produce
    // starts only when nothing is unfinished (started, or its answer not yet written), and
    // nothing starts behind it (it counts as sequenced only once answered).
    assert!(may_start(Order::Pipelined, 0, false));
    assert!(may_start(Order::Serial, 0, false));
    assert!(may_start(Order::Pipelined, 3, true));
    assert!(!may_start(Order::Pipelined, 3, false));
    assert!(!may_start(Order::Serial, 1, true));
    assert!(!may_start(Order::Serial, 1, false));
}

/// One connection served over an in-memory stream, with the disk and service behind it.
struct Connection {
    disk: SimDisk,
    clock: Arc<ManualClock>,
    service: Arc<KafkaService<SimDisk>>,
    client: DuplexStream,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

/// What a test's connection is served with beyond the defaults.
struct Setup {
    /// Bytes the in-memory stream buffers each way; a client that does not read blocks the
    /// node's writes beyond them.
    stream_bytes: usize,
    /// Whether `FILTERED` exists, with `SLOW_FILTER` as its produce filter.
    filtered: bool,
    /// The connection's share of a bytes-in-flight budget (`None`: one of its own, 64 MiB
    /// with a 16 MiB share).
    budget: Option<crate::transport::budget::ConnectionBudget>,
    /// Who the client is (`None`: anonymous).
    identity: Option<crate::security::identity::ClientIdentity>,
    /// The node's client quotas, if enforced.
    quotas: Option<Arc<crate::security::quota::ClientQuotaManager>>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            stream_bytes: 1 << 20,
            filtered: false,
            budget: None,
            identity: None,
            quotas: None,
        }
    }
}

async fn connect(settings: KafkaSettings) -> Connection {
    connect_with(settings, Setup::default()).await
}

async fn connect_with(settings: KafkaSettings, setup: Setup) -> Connection {
    let disk = SimDisk::new(5);
    let manual = Arc::new(ManualClock::new(1_000_000));
    let clock: Arc<dyn Clock> = Arc::clone(&manual) as Arc<dyn Clock>;
    let mut config = BrokerConfig::default();
    // The filter's calls run on tokio's blocking pool, as on the node (the default).
    assert_eq!(
        config.plugin_executor,
        crate::wasm::PluginExecutor::BlockingPool
    );
    // Room for the marked record's spin: a call's share of this is per record.
    config.wasm.fuel_per_batch = FUEL_PER_RECORD * config.wasm.batch_records_max as u64;
    let broker = Broker::open(disk.clone(), Path::new("/data"), config, Arc::clone(&clock))
        .await
        .unwrap();
    if setup.filtered {
        broker
            .plugins()
            .upload_module(UploadModuleRequest {
                name: SLOW_FILTER.to_owned(),
                kind: PluginKind::Filter,
                module: Bytes::from(
                    Wat {
                        before: SPIN_ON_MARKER,
                        ..Wat::default()
                    }
                    .module(),
                ),
                params: vec![],
            })
            .await
            .unwrap();
    }
    let mut service = KafkaService::new(
        Arc::new(broker),
        Arc::new(std::sync::Mutex::new(FetchSessionCache::new(
            settings.fetch_sessions,
            5,
        ))),
        settings,
        "127.0.0.1:9092".to_owned(),
        ListenerKind::Plaintext,
    );
    if let Some(quotas) = setup.quotas {
        service = service.with_quotas(quotas);
    }
    let service = Arc::new(service);
    create_topic(&service, TOPIC, 1).await;
    // The first batch of a partition stores its leader-epoch checkpoint (a synced file)
    // before it is written; the tests hold syncs to see what is written meanwhile.
    let warm_up = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
    let answer = produce(
        &service,
        PRODUCE_VERSION,
        produce_request(TOPIC, 0, warm_up.clone(), -1),
    )
    .await;
    assert_eq!(answer, (0, 0));
    if setup.filtered {
        create_filtered_topic(&service).await;
        for partition in 0..FILTERED_PARTITIONS {
            let answer = produce(
                &service,
                PRODUCE_VERSION,
                produce_request(FILTERED, partition, warm_up.clone(), -1),
            )
            .await;
            assert_eq!(answer, (0, 0));
        }
    }
    let (client, server) = tokio::io::duplex(setup.stream_bytes);
    let (stop, stopped) = watch::channel(false);
    let budget = setup
        .budget
        .unwrap_or_else(|| InFlightBudget::new(64 << 20, 16 << 20).connection());
    let serving = tokio::spawn(serve_connection(
        server,
        None,
        setup.identity.unwrap_or_else(|| {
            crate::security::identity::ClientIdentity::anonymous([127, 0, 0, 1].into())
        }),
        clock,
        Arc::clone(&service),
        budget,
        stopped,
    ));
    Connection {
        disk,
        clock: manual,
        service,
        client,
        stop,
        serving,
    }
}

/// Creates `FILTERED` with `SLOW_FILTER` as its produce filter, as a Kafka client would.
async fn create_filtered_topic(service: &KafkaService<SimDisk>) {
    let mut filter = create_topics_request::CreatableTopicConfig::default();
    filter.name = StrBytes::from_static_str("produce.filter.module");
    filter.value = Some(StrBytes::from_static_str(SLOW_FILTER));
    let mut topic = create_topics_request::CreatableTopic::default();
    topic.name = name(FILTERED);
    topic.num_partitions = FILTERED_PARTITIONS;
    topic.replication_factor = -1;
    topic.configs = vec![filter];
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    let Some(KafkaResponse::CreateTopics(response)) =
        ask(service, 7, KafkaRequest::CreateTopics(request)).await
    else {
        panic!("no CreateTopics answer");
    };
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A request frame with its length prefix.
fn prefixed(api: ApiKey, version: i16, correlation_id: i32, body: &KafkaRequest) -> Bytes {
    let frame = request_frame(api, version, correlation_id, body);
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(frame.len()).unwrap());
    out.put_slice(&frame);
    out.freeze()
}

fn produce_frame(correlation_id: i32, topic: &str, records: Bytes, acks: i16) -> Bytes {
    prefixed(
        ApiKey::Produce,
        PRODUCE_VERSION,
        correlation_id,
        &produce_request(topic, 0, records, acks),
    )
}

/// A produce of `batches` ((partition, records)) to `topic`, framed.
fn produce_frame_to(
    correlation_id: i32,
    topic: &str,
    batches: &[(i32, Bytes)],
    acks: i16,
) -> Bytes {
    let mut request = kafka_protocol::messages::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 30_000;
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = name(topic);
    for (partition, records) in batches {
        let mut data = produce_request::PartitionProduceData::default();
        data.index = *partition;
        data.records = Some(records.clone());
        topic_data.partition_data.push(data);
    }
    request.topic_data = vec![topic_data];
    prefixed(
        ApiKey::Produce,
        PRODUCE_VERSION,
        correlation_id,
        &KafkaRequest::Produce(request),
    )
}

/// A batch of `RECORDS_PER_BATCH` records whose values start with `MARKER` if `marked`.
fn filtered_batch(marked: bool, options: &EncodeOptions) -> Bytes {
    let prefix = if marked { MARKER } else { "fast" };
    let records: Vec<Record> = (0..RECORDS_PER_BATCH)
        .map(|number| Record {
            timestamp: 1_000 + number as i64,
            key: Some(Bytes::from(format!("key-{number}"))),
            value: Some(Bytes::from(format!("{prefix}-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, options).unwrap()
}

/// (correlation id, [(partition, error code, base offset)]) of the next response, a produce
/// to one topic.
async fn produce_answers(client: &mut DuplexStream) -> (i32, Vec<(i32, i16, i64)>) {
    let frame = read_response(client).await.expect("a produce answer");
    let (correlation_id, mut body) = split_response(ApiKey::Produce, PRODUCE_VERSION, &frame);
    let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
    let partitions = response.responses[0]
        .partition_responses
        .iter()
        .map(|partition| (partition.index, partition.error_code, partition.base_offset))
        .collect();
    (correlation_id, partitions)
}

/// A new idempotent producer's (id, epoch), from InitProducerId.
async fn init_producer(service: &KafkaService<SimDisk>) -> (i64, i16) {
    let mut init = kafka_protocol::messages::InitProducerIdRequest::default();
    init.transactional_id = None;
    let Some(KafkaResponse::InitProducerId(init)) =
        ask(service, 4, KafkaRequest::InitProducerId(init)).await
    else {
        panic!("no InitProducerId answer");
    };
    assert_eq!(init.error_code, 0);
    (init.producer_id.0, init.producer_epoch)
}

/// Options for the idempotent producer's batch starting at `sequence`.
fn idempotent((producer_id, producer_epoch): (i64, i16), sequence: usize) -> EncodeOptions {
    EncodeOptions {
        producer_id,
        producer_epoch,
        base_sequence: i32::try_from(sequence).unwrap(),
        ..EncodeOptions::default()
    }
}

/// Reads one response frame, length prefix included; `None` at the end of the stream.
async fn read_response(client: &mut DuplexStream) -> Option<Bytes> {
    let mut length = [0u8; 4];
    client.read_exact(&mut length).await.ok()?;
    let mut frame = BytesMut::from(&length[..]);
    frame.resize(4 + usize::try_from(i32::from_be_bytes(length)).unwrap(), 0);
    client.read_exact(&mut frame[4..]).await.ok()?;
    Some(frame.freeze())
}

/// (correlation id, error code, base offset) of the next response, a one-partition produce.
async fn produce_answer(client: &mut DuplexStream) -> (i32, i16, i64) {
    let frame = read_response(client).await.expect("a produce answer");
    let (correlation_id, mut body) = split_response(ApiKey::Produce, PRODUCE_VERSION, &frame);
    let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
    let partition = &response.responses[0].partition_responses[0];
    (correlation_id, partition.error_code, partition.base_offset)
}

/// Lets the node's tasks run until `done` holds; false if it still does not after many
/// turns (the clock is manual: only progress, never a timeout, can make it hold).
async fn runs_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..20_000 {
        if done() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    done()
}

/// Lets the node's tasks run as many turns as [`runs_until`] allows.
async fn settle() {
    assert!(!runs_until(|| false).await);
}

/// Whether the node has written nothing to the client yet.
fn nothing_answered(client: &mut DuplexStream) -> bool {
    let mut byte = [0u8; 1];
    client.read(&mut byte).now_or_never().is_none()
}

/// The latest offset of the topic's partition 0, asked of the service directly.
async fn log_end(service: &KafkaService<SimDisk>) -> i64 {
    log_end_of(service, TOPIC, 0).await
}

/// The latest offset of `topic`'s `partition`, asked of the service directly.
async fn log_end_of(service: &KafkaService<SimDisk>, topic: &str, partition: i32) -> i64 {
    let (code, offset, _) = list_offsets(
        service,
        LIST_OFFSETS_VERSION,
        list_offsets_request(topic, partition, LATEST, -1),
    )
    .await;
    assert_eq!(code, 0);
    offset
}

#[test]
fn pipelined_produces_share_a_sync_and_are_answered_in_order() {
    // Five acks=all produces in one write, with every fdatasync held: all five are written
    // (sequenced into the partition's writer) before the first is durable, where a
    // connection answered one request at a time would write only the first. Released, they
    // are answered in request order with their own correlation ids and consecutive base
    // offsets, after fewer syncs than produces.
    const PRODUCES: i32 = 5;
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings::default()).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let written_before = connection.disk.used_bytes();
        let syncs_before = connection.disk.sync_count();
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        for number in 0..PRODUCES {
            frames.put_slice(&produce_frame(100 + number, TOPIC, records.clone(), -1));
        }
        connection.client.write_all(&frames).await.unwrap();
        let all_written = (records.len() as u64) * u64::try_from(PRODUCES).unwrap();
        let disk = connection.disk.clone();
        assert!(
            runs_until(|| disk.used_bytes() - written_before >= all_written).await,
            "every produce is written while the first one's sync is held"
        );
        assert_eq!(
            connection.disk.sync_count(),
            syncs_before,
            "nothing synced yet"
        );
        assert!(
            nothing_answered(&mut connection.client),
            "nothing answered before its sync"
        );
        connection.disk.release_syncs();
        for number in 0..PRODUCES {
            let expected_offset = WARM_UP + i64::from(number) * RECORDS_PER_BATCH as i64;
            assert_eq!(
                produce_answer(&mut connection.client).await,
                (100 + number, 0, expected_offset)
            );
        }
        let syncs = connection.disk.sync_count() - syncs_before;
        assert!(
            syncs < u64::try_from(PRODUCES).unwrap(),
            "{syncs} syncs for {PRODUCES} pipelined produces"
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_failed_produce_answers_only_itself_in_its_place() {
    // Good produces around one to an unknown topic, one with a corrupt batch and one with
    // acks=0, all pipelined behind a held sync: each failure gets its own error in its
    // place, acks=0 gets no answer, the good ones their offsets in order. Six requests in
    // flight, one more than the default window.
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings {
            requests_in_flight_per_connection_max: 6,
            ..KafkaSettings::default()
        })
        .await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let mut corrupt = BytesMut::from(&records[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame(1, TOPIC, records.clone(), -1));
        frames.put_slice(&produce_frame(2, "no-such-topic", records.clone(), -1));
        frames.put_slice(&produce_frame(3, TOPIC, records.clone(), -1));
        frames.put_slice(&produce_frame(4, TOPIC, corrupt.freeze(), -1));
        frames.put_slice(&produce_frame(5, TOPIC, records.clone(), 0));
        frames.put_slice(&produce_frame(6, TOPIC, records.clone(), 1));
        connection.client.write_all(&frames).await.unwrap();
        // Produces 1, 3, 5 and 6 are written before the first sync ends.
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        assert!(
            runs_until(|| disk.used_bytes() - before >= 4 * records.len() as u64).await,
            "the produces after a failed one still start before the first sync ends"
        );
        connection.disk.release_syncs();
        let batch_offsets = RECORDS_PER_BATCH as i64;
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (1, 0, WARM_UP)
        );
        // UNKNOWN_TOPIC_OR_PARTITION.
        assert_eq!(produce_answer(&mut connection.client).await, (2, 3, -1));
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (3, 0, WARM_UP + batch_offsets)
        );
        // CORRUPT_MESSAGE.
        assert_eq!(produce_answer(&mut connection.client).await, (4, 2, -1));
        // 5 (acks=0) sends nothing, though its records take their offsets.
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (6, 0, WARM_UP + 3 * batch_offsets)
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn idempotent_produces_in_flight_keep_their_sequence_order() {
    // An idempotent producer with five produces in flight (Kafka's Java default), then a
    // retry of the second one (its answer lost) and one out of sequence, all pipelined
    // behind a held sync: sequences are checked in request order, so the five get
    // consecutive offsets, the retry its original offset, the gap OUT_OF_ORDER_SEQUENCE.
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings::default()).await;
        let producer = init_producer(&connection.service).await;
        let sequenced = |sequence: usize| {
            batch(
                RECORDS_PER_BATCH,
                &idempotent(producer, sequence * RECORDS_PER_BATCH),
            )
        };
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        for number in 0..5 {
            frames.put_slice(&produce_frame(
                10 + number,
                TOPIC,
                sequenced(number as usize),
                -1,
            ));
        }
        frames.put_slice(&produce_frame(15, TOPIC, sequenced(1), -1));
        frames.put_slice(&produce_frame(16, TOPIC, sequenced(9), -1));
        connection.client.write_all(&frames).await.unwrap();
        let disk = connection.disk.clone();
        let one_batch = sequenced(0).len() as u64;
        let before = disk.used_bytes();
        assert!(
            runs_until(|| disk.used_bytes() - before >= 5 * one_batch).await,
            "the five are written before the first sync ends"
        );
        connection.disk.release_syncs();
        let batch_offsets = RECORDS_PER_BATCH as i64;
        for number in 0..5 {
            assert_eq!(
                produce_answer(&mut connection.client).await,
                (10 + number, 0, WARM_UP + i64::from(number) * batch_offsets)
            );
        }
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (15, 0, WARM_UP + batch_offsets),
            "a retried duplicate gets its original offset"
        );
        let (correlation_id, code, _) = produce_answer(&mut connection.client).await;
        assert_eq!(
            (correlation_id, code),
            (16, 45),
            "OUT_OF_ORDER_SEQUENCE_NUMBER"
        );
        assert_eq!(
            log_end(&connection.service).await,
            WARM_UP + 5 * batch_offsets
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_produce_behind_a_slow_filter_call_keeps_its_sequence_order() {
    // An idempotent producer's produce A (sequence 0) whose filter call spins, and right
    // behind it on the connection produce B (the next sequence) whose call is quick: B
    // starts only once A is queued in the partition's writer, so both are appended, in
    // order. Were B started before A is sequenced, its quick call would reach the writer
    // first, out of sequence.
    runtime().block_on(async {
        let setup = Setup {
            filtered: true,
            ..Setup::default()
        };
        let mut connection = connect_with(KafkaSettings::default(), setup).await;
        let producer = init_producer(&connection.service).await;
        let slow = filtered_batch(true, &idempotent(producer, 0));
        let fast = filtered_batch(false, &idempotent(producer, RECORDS_PER_BATCH));
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame_to(1, FILTERED, &[(0, slow)], -1));
        frames.put_slice(&produce_frame_to(2, FILTERED, &[(0, fast)], -1));
        connection.client.write_all(&frames).await.unwrap();
        assert_eq!(
            produce_answers(&mut connection.client).await,
            (1, vec![(0, 0, WARM_UP)])
        );
        assert_eq!(
            produce_answers(&mut connection.client).await,
            (2, vec![(0, 0, WARM_UP + RECORDS_PER_BATCH as i64)])
        );
        assert_eq!(
            log_end_of(&connection.service, FILTERED, 0).await,
            WARM_UP + 2 * RECORDS_PER_BATCH as i64
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_produce_is_sequenced_only_once_every_partition_is() {
    // Produce A to partitions 0 (a slow filter call) and 1 (a quick one), then B to
    // partition 0 with the producer's next sequence there: B waits for A's partition 0,
    // not just for its first partition to be queued, so both keep their sequence order.
    runtime().block_on(async {
        let setup = Setup {
            filtered: true,
            ..Setup::default()
        };
        let mut connection = connect_with(KafkaSettings::default(), setup).await;
        let producer = init_producer(&connection.service).await;
        let a = [
            (0, filtered_batch(true, &idempotent(producer, 0))),
            (1, filtered_batch(false, &idempotent(producer, 0))),
        ];
        let b = [(
            0,
            filtered_batch(false, &idempotent(producer, RECORDS_PER_BATCH)),
        )];
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame_to(1, FILTERED, &a, -1));
        frames.put_slice(&produce_frame_to(2, FILTERED, &b, -1));
        connection.client.write_all(&frames).await.unwrap();
        assert_eq!(
            produce_answers(&mut connection.client).await,
            (1, vec![(0, 0, WARM_UP), (1, 0, WARM_UP)])
        );
        assert_eq!(
            produce_answers(&mut connection.client).await,
            (2, vec![(0, 0, WARM_UP + RECORDS_PER_BATCH as i64)])
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_request_behind_a_produce_waits_for_its_answer() {
    // ListOffsets written right behind an acks=all produce whose sync is held: it is not
    // answered (nor started) before the produce, so its latest offset already counts the
    // produce's records, as on Kafka's broker, which serializes a connection.
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings::default()).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame(1, TOPIC, records.clone(), -1));
        frames.put_slice(&prefixed(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            2,
            &list_offsets_request(TOPIC, 0, LATEST, -1),
        ));
        connection.client.write_all(&frames).await.unwrap();
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        assert!(runs_until(|| disk.used_bytes() - before >= records.len() as u64).await);
        // Many turns later, with the sync still held, still nothing is answered.
        settle().await;
        assert!(nothing_answered(&mut connection.client));
        connection.disk.release_syncs();
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (1, 0, WARM_UP)
        );
        let frame = read_response(&mut connection.client).await.unwrap();
        let (correlation_id, mut body) =
            split_response(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &frame);
        assert_eq!(correlation_id, 2);
        let response =
            kafka_protocol::messages::ListOffsetsResponse::decode(&mut body, LIST_OFFSETS_VERSION)
                .unwrap();
        assert_eq!(
            response.topics[0].partitions[0].offset,
            WARM_UP + RECORDS_PER_BATCH as i64
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn produces_in_flight_are_appended_when_the_client_goes_away() {
    // The client writes three produces and hangs up while the first sync is held: the
    // connection still runs every started produce to its end (appended whole), then
    // closes.
    runtime().block_on(async {
        let connection = connect(KafkaSettings::default()).await;
        let Connection {
            disk,
            service,
            mut client,
            serving,
            stop: _stop,
            ..
        } = connection;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        disk.hold_syncs();
        let mut frames = BytesMut::new();
        for number in 0..3 {
            frames.put_slice(&produce_frame(number, TOPIC, records.clone(), -1));
        }
        client.write_all(&frames).await.unwrap();
        let before = disk.used_bytes();
        assert!(runs_until(|| disk.used_bytes() - before >= 3 * records.len() as u64).await);
        drop(client);
        assert!(
            !runs_until(|| serving.is_finished()).await,
            "held until durable"
        );
        disk.release_syncs();
        serving.await.unwrap();
        assert_eq!(
            log_end(&service).await,
            WARM_UP + 3 * RECORDS_PER_BATCH as i64
        );
    });
}

#[test]
fn a_produce_still_filtering_when_the_client_goes_away_is_appended() {
    // Produce 1 (no filter) waits for a held sync; produce 2, started behind it, is still
    // in its slow filter call, short of its writer, when the client hangs up. Released,
    // produce 1's answer cannot be written; produce 2 still runs to its end and its
    // records land, then the connection closes.
    runtime().block_on(async {
        let setup = Setup {
            filtered: true,
            ..Setup::default()
        };
        let Connection {
            disk,
            service,
            mut client,
            serving,
            stop: _stop,
            ..
        } = connect_with(KafkaSettings::default(), setup).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let slow = filtered_batch(true, &EncodeOptions::default());
        disk.hold_syncs();
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame(1, TOPIC, records.clone(), -1));
        frames.put_slice(&produce_frame_to(2, FILTERED, &[(0, slow)], -1));
        client.write_all(&frames).await.unwrap();
        let before = disk.used_bytes();
        assert!(runs_until(|| disk.used_bytes() - before >= records.len() as u64).await);
        drop(client);
        // Produce 2 starts (produce 1 is sequenced) and its filter call begins.
        settle().await;
        assert!(!serving.is_finished(), "held until durable");
        disk.release_syncs();
        serving.await.unwrap();
        assert_eq!(log_end(&service).await, WARM_UP + RECORDS_PER_BATCH as i64);
        assert_eq!(
            log_end_of(&service, FILTERED, 0).await,
            WARM_UP + RECORDS_PER_BATCH as i64,
            "the started produce ran to its end"
        );
    });
}

#[test]
fn shutdown_answers_the_produces_in_flight_first() {
    // A shutdown while three pipelined produces wait for a held sync: the three are
    // answered, in order, before the connection closes.
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings::default()).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        for number in 0..3 {
            frames.put_slice(&produce_frame(number, TOPIC, records.clone(), -1));
        }
        connection.client.write_all(&frames).await.unwrap();
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        assert!(runs_until(|| disk.used_bytes() - before >= 3 * records.len() as u64).await);
        let _ = connection.stop.send(true);
        assert!(!runs_until(|| connection.serving.is_finished()).await);
        connection.disk.release_syncs();
        for number in 0..3 {
            assert_eq!(
                produce_answer(&mut connection.client).await,
                (
                    number,
                    0,
                    WARM_UP + i64::from(number) * RECORDS_PER_BATCH as i64
                )
            );
        }
        assert!(read_response(&mut connection.client).await.is_none());
        connection.serving.await.unwrap();
    });
}

#[test]
fn requests_in_flight_are_bounded_per_connection() {
    // With kafka.requests_in_flight_per_connection_max = 2, five produces behind a held
    // sync: only two are read and started; the rest wait in the socket until answers go
    // out, and then all five are answered in order.
    runtime().block_on(async {
        let settings = KafkaSettings {
            requests_in_flight_per_connection_max: 2,
            ..KafkaSettings::default()
        };
        let mut connection = connect(settings).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        connection.disk.hold_syncs();
        let mut frames = BytesMut::new();
        for number in 0..5 {
            frames.put_slice(&produce_frame(number, TOPIC, records.clone(), -1));
        }
        connection.client.write_all(&frames).await.unwrap();
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        let batch_bytes = records.len() as u64;
        assert!(runs_until(|| disk.used_bytes() - before >= 2 * batch_bytes).await);
        assert!(
            !runs_until(|| disk.used_bytes() - before > 2 * batch_bytes).await,
            "a third produce started beyond the bound"
        );
        connection.disk.release_syncs();
        for number in 0..5 {
            assert_eq!(
                produce_answer(&mut connection.client).await,
                (
                    number,
                    0,
                    WARM_UP + i64::from(number) * RECORDS_PER_BATCH as i64
                )
            );
        }
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_produce_behind_a_blocked_write_is_still_appended() {
    // The stream holds 16 bytes each way and the client reads nothing: produce 1's answer
    // does not fit, so its write waits for the client. Produce 2, sent meanwhile, is still
    // read, started and appended before the client reads a byte; then both answers come,
    // in order.
    runtime().block_on(async {
        let setup = Setup {
            stream_bytes: 16,
            ..Setup::default()
        };
        let mut connection = connect_with(KafkaSettings::default(), setup).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        let batch_bytes = records.len() as u64;
        connection
            .client
            .write_all(&produce_frame(1, TOPIC, records.clone(), 1))
            .await
            .unwrap();
        assert!(runs_until(|| disk.used_bytes() - before >= batch_bytes).await);
        // Produce 1 is answered and its write fills the stream.
        settle().await;
        connection
            .client
            .write_all(&produce_frame(2, TOPIC, records.clone(), 1))
            .await
            .unwrap();
        assert!(
            runs_until(|| disk.used_bytes() - before >= 2 * batch_bytes).await,
            "a produce read while an answer's write is blocked is appended"
        );
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (1, 0, WARM_UP)
        );
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (2, 0, WARM_UP + RECORDS_PER_BATCH as i64)
        );
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_request_behind_a_blocked_write_waits_for_it() {
    // The stream holds 16 bytes each way and the client reads nothing: produce 1's answer
    // waits for the client. A CreateTopics sent meanwhile is not a produce, so it starts
    // only once that answer is written (a Fetch's answer, which may be large, is never
    // held beside others for a client that does not read): its topic does not exist
    // before the client reads, and does after.
    runtime().block_on(async {
        let setup = Setup {
            stream_bytes: 16,
            ..Setup::default()
        };
        let mut connection = connect_with(KafkaSettings::default(), setup).await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let disk = connection.disk.clone();
        let before = disk.used_bytes();
        connection
            .client
            .write_all(&produce_frame(1, TOPIC, records.clone(), 1))
            .await
            .unwrap();
        assert!(runs_until(|| disk.used_bytes() - before >= records.len() as u64).await);
        settle().await;
        let mut creatable = create_topics_request::CreatableTopic::default();
        creatable.name = name("created");
        creatable.num_partitions = 1;
        creatable.replication_factor = -1;
        let mut create = CreateTopicsRequest::default();
        create.topics = vec![creatable];
        connection
            .client
            .write_all(&prefixed(
                ApiKey::CreateTopics,
                7,
                2,
                &KafkaRequest::CreateTopics(create),
            ))
            .await
            .unwrap();
        settle().await;
        let unknown_topic = 3;
        assert_eq!(
            list_offsets(
                &connection.service,
                LIST_OFFSETS_VERSION,
                list_offsets_request("created", 0, LATEST, -1)
            )
            .await
            .0,
            unknown_topic,
            "started before the answer ahead of it was written"
        );
        assert_eq!(
            produce_answer(&mut connection.client).await,
            (1, 0, WARM_UP)
        );
        let frame = read_response(&mut connection.client).await.unwrap();
        let (correlation_id, _) = split_response(ApiKey::CreateTopics, 7, &frame);
        assert_eq!(correlation_id, 2);
        assert_eq!(log_end_of(&connection.service, "created", 0).await, 0);
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

// Goal: request frames clients start and never finish pin at most kafka.in_flight_bytes_max
// over all connections (issue 15: unfinished 48 MiB requests pinned 852 MiB): a frame's
// length is reserved whole before a byte of it is buffered, so another connection's request
// waits for room, holding nothing, instead of the node allocating past the budget, and is
// answered once the unfinished frame's connection goes. Method: a 1000-byte budget; one
// connection announces a 990-byte frame and sends nothing more.
#[test]
fn unfinished_frames_hold_the_bytes_budget_and_no_more() {
    runtime().block_on(async {
        let budget = InFlightBudget::new(1000, 1000);
        let setup = || Setup {
            budget: Some(budget.connection()),
            ..Setup::default()
        };
        let mut stalled = connect_with(KafkaSettings::default(), setup()).await;
        stalled
            .client
            .write_all(&990i32.to_be_bytes())
            .await
            .unwrap();
        settle().await;
        let mut waiting = connect_with(KafkaSettings::default(), setup()).await;
        let versions = KafkaRequest::ApiVersions(Default::default());
        waiting
            .client
            .write_all(&prefixed(ApiKey::ApiVersions, 3, 7, &versions))
            .await
            .unwrap();
        settle().await;
        assert!(
            nothing_answered(&mut waiting.client),
            "its frame does not fit beside the unfinished one"
        );
        drop(stalled.client);
        assert!(
            runs_until(|| !nothing_answered(&mut waiting.client)).await,
            "answered once the unfinished frame is gone"
        );
    });
}

/// `User:name` as proven by a client certificate.
fn certified(name: &str) -> crate::security::identity::ClientIdentity {
    crate::security::identity::ClientIdentity {
        principal: crate::security::principal::KafkaPrincipal::user(name),
        host: [127, 0, 0, 1].into(),
        method: crate::security::identity::AuthMethod::Certificate,
    }
}

/// A security store in `dir` with `alice`'s producer_byte_rate set to `rate`.
async fn store_with_produce_quota(
    dir: &Path,
    rate: u64,
) -> Arc<crate::security::store::SecurityStore> {
    use crate::security::quota::{QuotaEntity, QuotaKind};
    let store = crate::security::store::SecurityStore::open(
        dir,
        crate::security::store::StoreMode::OneNode,
        false,
        crate::security::acl::AuthorizerConfig::default(),
        crate::security::records::SecurityLimits::default(),
        [7; 32],
    )
    .unwrap();
    let results = store
        .alter_quotas(
            vec![(
                QuotaEntity::User("alice".into()),
                vec![(QuotaKind::Produce, Some(rate))],
            )],
            false,
        )
        .await;
    assert!(results[0].1.is_ok());
    Arc::new(store)
}

/// Serves one more connection of `identity` on `service`: the client end, and the task.
fn serve_another(
    connection: &Connection,
    identity: crate::security::identity::ClientIdentity,
) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(serve_connection(
        server,
        None,
        identity,
        Arc::clone(&connection.clock) as Arc<dyn Clock>,
        Arc::clone(&connection.service),
        InFlightBudget::new(64 << 20, 16 << 20).connection(),
        connection.stop.subscribe(),
    ));
    (client, serving)
}

fn list_offsets_frame(correlation_id: i32) -> Bytes {
    prefixed(
        ApiKey::ListOffsets,
        LIST_OFFSETS_VERSION,
        correlation_id,
        &list_offsets_request(TOPIC, 0, LATEST, -1),
    )
}

/// The correlation id of the next answer, a ListOffsets; `None` if the connection closed.
async fn list_offsets_answer(client: &mut DuplexStream) -> Option<i32> {
    let frame = read_response(client).await?;
    let (correlation_id, _) = split_response(ApiKey::ListOffsets, LIST_OFFSETS_VERSION, &frame);
    Some(correlation_id)
}

#[test]
fn a_produce_over_its_quota_is_throttled_and_mutes_the_connection() {
    // Goal (KIP-219): alice's produce over her producer_byte_rate is answered at once with
    // throttle_time_ms > 0, and her next request (already sent) is not started until that
    // much of the node's clock has passed; then it is answered. A produce within a quota
    // carries no throttle.
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_produce_quota(dir.path(), 1).await;
        let quotas = Arc::new(crate::security::quota::ClientQuotaManager::new(
            crate::security::quota::QuotaSettings::default(),
            Some(store),
            0,
            Vec::new(),
        ));
        let mut connection = connect_with(
            KafkaSettings::default(),
            Setup {
                identity: Some(certified("alice")),
                quotas: Some(quotas),
                ..Setup::default()
            },
        )
        .await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame(1, TOPIC, records, -1));
        frames.put_slice(&list_offsets_frame(2));
        connection.client.write_all(&frames).await.unwrap();
        let frame = read_response(&mut connection.client).await.unwrap();
        let (correlation_id, mut body) = split_response(ApiKey::Produce, PRODUCE_VERSION, &frame);
        assert_eq!(correlation_id, 1);
        let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
        let throttle_ms = response.throttle_time_ms;
        // A few hundred bytes against 1 B/s: the bound, all 11 windows.
        assert_eq!(throttle_ms, 11_000);
        // The ListOffsets is muted: many turns later nothing more is answered.
        settle().await;
        assert!(nothing_answered(&mut connection.client));
        connection.clock.advance_ms(i64::from(throttle_ms) - 1);
        settle().await;
        assert!(nothing_answered(&mut connection.client));
        connection.clock.advance_ms(1);
        assert_eq!(list_offsets_answer(&mut connection.client).await, Some(2));
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_produce_within_its_quota_is_not_throttled() {
    // Goal: the same produce against a generous quota has throttle_time_ms 0 and the next
    // request is answered without the clock moving.
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_produce_quota(dir.path(), 1 << 30).await;
        let quotas = Arc::new(crate::security::quota::ClientQuotaManager::new(
            crate::security::quota::QuotaSettings::default(),
            Some(store),
            0,
            Vec::new(),
        ));
        let mut connection = connect_with(
            KafkaSettings::default(),
            Setup {
                identity: Some(certified("alice")),
                quotas: Some(quotas),
                ..Setup::default()
            },
        )
        .await;
        let records = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
        let mut frames = BytesMut::new();
        frames.put_slice(&produce_frame(1, TOPIC, records, -1));
        frames.put_slice(&list_offsets_frame(2));
        connection.client.write_all(&frames).await.unwrap();
        let frame = read_response(&mut connection.client).await.unwrap();
        let (_, mut body) = split_response(ApiKey::Produce, PRODUCE_VERSION, &frame);
        let response = ProduceResponse::decode(&mut body, PRODUCE_VERSION).unwrap();
        assert_eq!(response.throttle_time_ms, 0);
        assert_eq!(list_offsets_answer(&mut connection.client).await, Some(2));
        let _ = connection.stop.send(true);
        connection.serving.await.unwrap();
    });
}

#[test]
fn a_principal_past_its_connection_limit_is_closed_and_super_users_are_exempt() {
    // Goal: with security.connections_per_principal_max = 1, alice's second connection is
    // closed before its request is served, while her first is served; once the first is
    // gone a new one is served. The super user `admin` holds two at once; anonymous
    // connections are not counted.
    runtime().block_on(async {
        let quotas = Arc::new(crate::security::quota::ClientQuotaManager::new(
            crate::security::quota::QuotaSettings::default(),
            None,
            1,
            vec!["User:admin".to_owned()],
        ));
        let mut first = connect_with(
            KafkaSettings::default(),
            Setup {
                identity: Some(certified("alice")),
                quotas: Some(Arc::clone(&quotas)),
                ..Setup::default()
            },
        )
        .await;
        first
            .client
            .write_all(&list_offsets_frame(1))
            .await
            .unwrap();
        assert_eq!(list_offsets_answer(&mut first.client).await, Some(1));
        assert_eq!(quotas.connections_of("User:alice"), 1);
        let (mut second, serving) = serve_another(&first, certified("alice"));
        second.write_all(&list_offsets_frame(2)).await.unwrap();
        assert_eq!(list_offsets_answer(&mut second).await, None);
        serving.await.unwrap();
        // The first is still served.
        first
            .client
            .write_all(&list_offsets_frame(3))
            .await
            .unwrap();
        assert_eq!(list_offsets_answer(&mut first.client).await, Some(3));
        // Super users and anonymous clients are not counted.
        let mut held = Vec::new();
        for identity in [
            certified("admin"),
            certified("admin"),
            crate::security::identity::ClientIdentity::anonymous([127, 0, 0, 1].into()),
            crate::security::identity::ClientIdentity::anonymous([127, 0, 0, 1].into()),
        ] {
            let (mut client, _serving) = serve_another(&first, identity);
            client.write_all(&list_offsets_frame(4)).await.unwrap();
            assert_eq!(list_offsets_answer(&mut client).await, Some(4));
            held.push(client);
        }
        // The first goes away: its slot is free again.
        drop(first.client);
        first.serving.await.unwrap();
        assert!(runs_until(|| quotas.connections_of("User:alice") == 0).await);
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut client = client;
        let (stop, stopped) = watch::channel(false);
        let serving = tokio::spawn(serve_connection(
            server,
            None,
            certified("alice"),
            Arc::clone(&first.clock) as Arc<dyn Clock>,
            Arc::clone(&first.service),
            InFlightBudget::new(64 << 20, 16 << 20).connection(),
            stopped,
        ));
        client.write_all(&list_offsets_frame(5)).await.unwrap();
        assert_eq!(list_offsets_answer(&mut client).await, Some(5));
        let _ = stop.send(true);
        let _ = first.stop.send(true);
        serving.await.unwrap();
    });
}
