//! The answering loop over an in-memory stream and a simulated disk whose fdatasyncs can be
//! held: produces written back to back on one connection are all sequenced before the first
//! is durable and share its group commits, and are answered in order; a failed produce
//! answers only itself; other requests stay serial; a client that goes away or a shutdown
//! never cuts an append short. Time never moves (a manual clock), so only progress can make
//! a condition hold.

use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use kafka_protocol::protocol::Decodable;
use ledge_protocol::EncodeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

use super::{Order, frame_bytes, may_start, serve_connection};
use crate::broker::{Broker, BrokerConfig};
use crate::clock::{Clock, ManualClock};
use crate::kafka::KafkaSettings;
use crate::kafka::apis::KafkaRequest;
use crate::kafka::codec::tests::{request_frame, split_response};
use crate::kafka::dispatch::{KafkaService, ListenerKind};
use crate::kafka::fetch_sessions::FetchSessionCache;
use crate::kafka::tests::{
    batch, create_topic, list_offsets, list_offsets_request, produce, produce_request,
};
use crate::sim::SimDisk;
use crate::transport::budget::InFlightBudget;

const TOPIC: &str = "t";
const RECORDS_PER_BATCH: usize = 4;
const PRODUCE_VERSION: i16 = 9;
const LIST_OFFSETS_VERSION: i16 = 6;
/// Offsets taken by the batch `connect` writes first.
const WARM_UP: i64 = RECORDS_PER_BATCH as i64;
/// ListOffsets' "latest" timestamp.
const LATEST: i64 = -1;

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
    // The rule alone: a produce starts behind a sequenced one up to the bound; a request
    // that is not a produce starts only on an idle connection, and nothing starts behind
    // it (it counts as sequenced only once answered).
    assert!(may_start(Order::Pipelined, 0, false, 5));
    assert!(may_start(Order::Serial, 0, false, 5));
    assert!(may_start(Order::Pipelined, 3, true, 5));
    assert!(!may_start(Order::Pipelined, 3, false, 5));
    assert!(!may_start(Order::Pipelined, 5, true, 5));
    assert!(!may_start(Order::Serial, 1, true, 5));
    assert!(!may_start(Order::Serial, 1, false, 5));
}

/// One connection served over an in-memory stream, with the disk and service behind it.
struct Connection {
    disk: SimDisk,
    service: Arc<KafkaService<SimDisk>>,
    client: DuplexStream,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

async fn connect(settings: KafkaSettings) -> Connection {
    let disk = SimDisk::new(5);
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000_000));
    let broker = Broker::open(
        disk.clone(),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::clone(&clock),
    )
    .await
    .unwrap();
    let service = Arc::new(KafkaService::new(
        Arc::new(broker),
        Arc::new(std::sync::Mutex::new(FetchSessionCache::new(
            settings.fetch_sessions,
            5,
        ))),
        settings,
        "127.0.0.1:9092".to_owned(),
        ListenerKind::Plaintext,
    ));
    create_topic(&service, TOPIC, 1).await;
    // The first batch of a partition stores its leader-epoch checkpoint (a synced file)
    // before it is written; the tests hold syncs to see what is written meanwhile.
    let warm_up = batch(RECORDS_PER_BATCH, &EncodeOptions::default());
    let answer = produce(
        &service,
        PRODUCE_VERSION,
        produce_request(TOPIC, 0, warm_up, -1),
    )
    .await;
    assert_eq!(answer, (0, 0));
    let (client, server) = tokio::io::duplex(1 << 20);
    let (stop, stopped) = watch::channel(false);
    let budget = InFlightBudget::new(64 << 20, 16 << 20).connection();
    let serving = tokio::spawn(serve_connection(
        server,
        None,
        clock,
        Arc::clone(&service),
        budget,
        stopped,
    ));
    Connection {
        disk,
        service,
        client,
        stop,
        serving,
    }
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
    let (code, offset, _) = list_offsets(
        service,
        LIST_OFFSETS_VERSION,
        list_offsets_request(TOPIC, 0, LATEST, -1),
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
    // place, acks=0 gets no answer, the good ones their offsets in order.
    runtime().block_on(async {
        let mut connection = connect(KafkaSettings::default()).await;
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
        let mut init = kafka_protocol::messages::InitProducerIdRequest::default();
        init.transactional_id = None;
        let Some(crate::kafka::apis::KafkaResponse::InitProducerId(init)) =
            crate::kafka::tests::ask(&connection.service, 4, KafkaRequest::InitProducerId(init))
                .await
        else {
            panic!("no InitProducerId answer");
        };
        assert_eq!(init.error_code, 0);
        let sequenced = |sequence: usize| {
            batch(
                RECORDS_PER_BATCH,
                &EncodeOptions {
                    producer_id: init.producer_id.0,
                    producer_epoch: init.producer_epoch,
                    base_sequence: i32::try_from(sequence * RECORDS_PER_BATCH).unwrap(),
                    ..EncodeOptions::default()
                },
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
