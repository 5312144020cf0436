//! The Kafka service over a broker on the simulated disk: every served API at every served
//! version answers and encodes, and the semantics clients rely on (fetch inside a batch,
//! idempotent retries, acks=0, bad batches refused with Kafka's codes).

use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    self as kafka, ApiKey, ProducerId, RequestHeader, TopicName, create_topics_request,
    fetch_request, list_offsets_request, metadata_request, produce_request,
};
use kafka_protocol::protocol::StrBytes;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

use super::KafkaSettings;
use super::apis::{KafkaRequest, KafkaResponse, SERVED};
use super::codec::{DecodedRequest, encode_response};
use super::dispatch::KafkaService;
use super::fetch_sessions::FetchSessionCache;
use crate::broker::sequencing::SequencingHold;
use crate::broker::{Broker, BrokerConfig};
use crate::clock::SimClock;
use crate::sim::SimDisk;

const ADVERTISED: &str = "127.0.0.1:19092";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

async fn service() -> KafkaService<SimDisk> {
    service_with(KafkaSettings::default(), BrokerConfig::default()).await
}

async fn service_with(settings: KafkaSettings, config: BrokerConfig) -> KafkaService<SimDisk> {
    service_on(Arc::new(broker(config).await), settings)
}

async fn broker(config: BrokerConfig) -> Broker<SimDisk> {
    Broker::open(
        SimDisk::new(14),
        Path::new("/data"),
        config,
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap()
}

/// A plaintext service over `broker` (a test that reaches under the Kafka API keeps a
/// clone of it).
fn service_on(broker: Arc<Broker<SimDisk>>, settings: KafkaSettings) -> KafkaService<SimDisk> {
    KafkaService::new(
        broker,
        Arc::new(std::sync::Mutex::new(FetchSessionCache::new(
            KafkaSettings::default().fetch_sessions,
            5,
        ))),
        settings,
        ADVERTISED.to_owned(),
        crate::kafka::dispatch::ListenerKind::Plaintext,
    )
}

pub(super) fn name(text: &str) -> TopicName {
    TopicName(StrBytes::from_string(text.to_owned()))
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Asks `service` at `version` and checks the answer encodes at that version and decodes
/// back to itself, as a client reads it.
pub(super) async fn ask(
    service: &KafkaService<SimDisk>,
    version: i16,
    body: KafkaRequest,
) -> Option<KafkaResponse> {
    let api = body.api_key();
    let mut header = RequestHeader::default();
    header.correlation_id = 9;
    header.request_api_key = api as i16;
    header.request_api_version = version;
    let response = service
        .handle(
            DecodedRequest {
                header,
                api,
                version,
                body,
            },
            &crate::security::identity::ClientIdentity::anonymous([127, 0, 0, 1].into()),
            SequencingHold::unobserved(),
        )
        .await?;
    let frame = encode_response(9, version, &response)
        .unwrap_or_else(|error| panic!("{api:?} v{version}: {error}"));
    let (correlation_id, mut body) = super::codec::tests::split_response(api, version, &frame);
    assert_eq!(correlation_id, 9);
    let decoded = KafkaResponse::decode(api, version, &mut body)
        .unwrap()
        .unwrap_or_else(|error| panic!("{api:?} v{version} response: {error}"));
    assert!(body.is_empty(), "{api:?} v{version}: trailing bytes");
    Some(decoded)
}

/// Creates `topic` with CreateTopics v7 and returns the id its answer gives.
pub(super) async fn create_topic(
    service: &KafkaService<SimDisk>,
    topic: &str,
    partitions: i32,
) -> uuid::Uuid {
    let mut creatable = create_topics_request::CreatableTopic::default();
    creatable.name = name(topic);
    creatable.num_partitions = partitions;
    creatable.replication_factor = -1;
    let mut request = kafka::CreateTopicsRequest::default();
    request.topics = vec![creatable];
    let Some(KafkaResponse::CreateTopics(response)) =
        ask(service, 7, KafkaRequest::CreateTopics(request)).await
    else {
        panic!("no answer");
    };
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
    response.topics[0].topic_id
}

pub(super) fn batch(count: usize, options: &EncodeOptions) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|number| Record {
            timestamp: 1_000 + number as i64,
            key: Some(Bytes::from(format!("key-{number}"))),
            value: Some(Bytes::from(format!("value-{number}"))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, options).unwrap()
}

pub(super) fn produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> KafkaRequest {
    let mut data = produce_request::PartitionProduceData::default();
    data.index = partition;
    data.records = Some(records);
    let mut topic_data = produce_request::TopicProduceData::default();
    topic_data.name = name(topic);
    topic_data.partition_data = vec![data];
    let mut request = kafka::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 30_000;
    request.topic_data = vec![topic_data];
    KafkaRequest::Produce(request)
}

/// (error code, base offset) of the one partition of a produce answer.
pub(super) async fn produce(
    service: &KafkaService<SimDisk>,
    version: i16,
    request: KafkaRequest,
) -> (i16, i64) {
    let Some(KafkaResponse::Produce(response)) = ask(service, version, request).await else {
        panic!("no produce answer");
    };
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

fn fetch_request(topic: &str, partition: i32, offset: i64) -> kafka::FetchRequest {
    let mut fetch_partition = fetch_request::FetchPartition::default();
    fetch_partition.partition = partition;
    fetch_partition.fetch_offset = offset;
    fetch_partition.partition_max_bytes = 1024 * 1024;
    let mut fetch_topic = fetch_request::FetchTopic::default();
    fetch_topic.topic = name(topic);
    fetch_topic.partitions = vec![fetch_partition];
    let mut request = kafka::FetchRequest::default();
    request.max_wait_ms = 0;
    request.max_bytes = 1024 * 1024;
    request.topics = vec![fetch_topic];
    request
}

/// A request of `api` that reaches the broker with real content (topic `t` exists).
fn realistic_request(api: ApiKey, version: i16) -> KafkaRequest {
    match api {
        ApiKey::Metadata => {
            let mut topic = metadata_request::MetadataRequestTopic::default();
            topic.name = Some(name("t"));
            let mut unknown = metadata_request::MetadataRequestTopic::default();
            unknown.name = Some(name("missing"));
            let mut request = kafka::MetadataRequest::default();
            request.topics = Some(vec![topic, unknown]);
            KafkaRequest::Metadata(request)
        }
        ApiKey::Produce => produce_request("t", 0, batch(3, &EncodeOptions::default()), -1),
        ApiKey::Fetch => KafkaRequest::Fetch(fetch_request("t", 0, 0)),
        ApiKey::ListOffsets => {
            let mut partition = list_offsets_request::ListOffsetsPartition::default();
            partition.partition_index = 0;
            partition.timestamp = -1;
            let mut topic = list_offsets_request::ListOffsetsTopic::default();
            topic.name = name("t");
            topic.partitions = vec![partition];
            let mut request = kafka::ListOffsetsRequest::default();
            request.topics = vec![topic];
            KafkaRequest::ListOffsets(request)
        }
        ApiKey::CreateTopics => {
            let mut creatable = create_topics_request::CreatableTopic::default();
            creatable.name = name(&format!("created-{version}"));
            creatable.num_partitions = 2;
            creatable.replication_factor = 1;
            let mut request = kafka::CreateTopicsRequest::default();
            request.topics = vec![creatable];
            KafkaRequest::CreateTopics(request)
        }
        ApiKey::DeleteTopics => {
            let mut request = kafka::DeleteTopicsRequest::default();
            if version >= 6 {
                let mut state = kafka::delete_topics_request::DeleteTopicState::default();
                state.name = Some(name("missing"));
                request.topics = vec![state];
            } else {
                request.topic_names = vec![name("missing")];
            }
            KafkaRequest::DeleteTopics(request)
        }
        ApiKey::DescribeConfigs => {
            let mut resource = kafka::describe_configs_request::DescribeConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text("t");
            let mut request = kafka::DescribeConfigsRequest::default();
            request.resources = vec![resource];
            KafkaRequest::DescribeConfigs(request)
        }
        ApiKey::AlterConfigs => {
            let mut config = kafka::alter_configs_request::AlterableConfig::default();
            config.name = text("retention.ms");
            config.value = Some(text("3600000"));
            let mut resource = kafka::alter_configs_request::AlterConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text("t");
            resource.configs = vec![config];
            let mut request = kafka::AlterConfigsRequest::default();
            request.resources = vec![resource];
            KafkaRequest::AlterConfigs(request)
        }
        ApiKey::IncrementalAlterConfigs => {
            let mut config = kafka::incremental_alter_configs_request::AlterableConfig::default();
            config.name = text("retention.ms");
            config.config_operation = 0;
            config.value = Some(text("7200000"));
            let mut resource =
                kafka::incremental_alter_configs_request::AlterConfigsResource::default();
            resource.resource_type = 2;
            resource.resource_name = text("t");
            resource.configs = vec![config];
            let mut request = kafka::IncrementalAlterConfigsRequest::default();
            request.resources = vec![resource];
            KafkaRequest::IncrementalAlterConfigs(request)
        }
        ApiKey::CreatePartitions => {
            let mut topic = kafka::create_partitions_request::CreatePartitionsTopic::default();
            topic.name = name("t");
            topic.count = 3 + i32::from(version);
            let mut request = kafka::CreatePartitionsRequest::default();
            request.topics = vec![topic];
            KafkaRequest::CreatePartitions(request)
        }
        ApiKey::DescribeCluster => {
            let mut request = kafka::DescribeClusterRequest::default();
            request.endpoint_type = 1;
            KafkaRequest::DescribeCluster(request)
        }
        ApiKey::OffsetForLeaderEpoch => {
            KafkaRequest::OffsetForLeaderEpoch(offset_for_leader_epoch_request("t", 0, 0, -1))
        }
        // Offset 0 is at or below the log start: accepted at every version, nothing moves.
        ApiKey::DeleteRecords => KafkaRequest::DeleteRecords(delete_records_request("t", 0, 0)),
        other => super::codec::tests::default_request(other),
    }
}

#[test]
fn every_served_api_and_version_answers_and_encodes() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        for served in SERVED {
            for version in served.min..=served.max {
                let request = realistic_request(served.api, version);
                let answer = ask(&service, version, request).await;
                assert!(answer.is_some(), "{:?} v{version}", served.api);
            }
        }
    });
}

pub(super) fn list_offsets_request(
    topic: &str,
    partition: i32,
    timestamp: i64,
    current_leader_epoch: i32,
) -> KafkaRequest {
    let mut wanted = list_offsets_request::ListOffsetsPartition::default();
    wanted.partition_index = partition;
    wanted.timestamp = timestamp;
    wanted.current_leader_epoch = current_leader_epoch;
    let mut topic_data = list_offsets_request::ListOffsetsTopic::default();
    topic_data.name = name(topic);
    topic_data.partitions = vec![wanted];
    let mut request = kafka::ListOffsetsRequest::default();
    request.topics = vec![topic_data];
    KafkaRequest::ListOffsets(request)
}

/// (error code, offset, leader epoch) of the one partition of a ListOffsets answer.
pub(super) async fn list_offsets(
    service: &KafkaService<SimDisk>,
    version: i16,
    request: KafkaRequest,
) -> (i16, i64, i32) {
    let Some(KafkaResponse::ListOffsets(response)) = ask(service, version, request).await else {
        panic!("no ListOffsets answer");
    };
    let partition = &response.topics[0].partitions[0];
    (
        partition.error_code,
        partition.offset,
        partition.leader_epoch,
    )
}

fn offset_for_leader_epoch_request(
    topic: &str,
    partition: i32,
    leader_epoch: i32,
    current_leader_epoch: i32,
) -> kafka::OffsetForLeaderEpochRequest {
    let mut wanted = kafka::offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
    wanted.partition = partition;
    wanted.leader_epoch = leader_epoch;
    wanted.current_leader_epoch = current_leader_epoch;
    let mut topic_data = kafka::offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
    topic_data.topic = name(topic);
    topic_data.partitions = vec![wanted];
    let mut request = kafka::OffsetForLeaderEpochRequest::default();
    request.replica_id = kafka::BrokerId(-1);
    request.topics = vec![topic_data];
    request
}

/// (error code, leader epoch, end offset) of the one partition of an OffsetForLeaderEpoch
/// answer.
async fn epoch_end(
    service: &KafkaService<SimDisk>,
    version: i16,
    request: kafka::OffsetForLeaderEpochRequest,
) -> (i16, i32, i64) {
    let Some(KafkaResponse::OffsetForLeaderEpoch(response)) = ask(
        service,
        version,
        KafkaRequest::OffsetForLeaderEpoch(request),
    )
    .await
    else {
        panic!("no OffsetForLeaderEpoch answer");
    };
    let partition = &response.topics[0].partitions[0];
    (
        partition.error_code,
        partition.leader_epoch,
        partition.end_offset,
    )
}

fn delete_records_request(topic: &str, partition: i32, offset: i64) -> kafka::DeleteRecordsRequest {
    let mut wanted = kafka::delete_records_request::DeleteRecordsPartition::default();
    wanted.partition_index = partition;
    wanted.offset = offset;
    let mut topic_data = kafka::delete_records_request::DeleteRecordsTopic::default();
    topic_data.name = name(topic);
    topic_data.partitions = vec![wanted];
    let mut request = kafka::DeleteRecordsRequest::default();
    request.timeout_ms = 30_000;
    request.topics = vec![topic_data];
    request
}

/// (error code, low watermark) of the one partition of a DeleteRecords answer.
async fn delete_records(
    service: &KafkaService<SimDisk>,
    version: i16,
    request: kafka::DeleteRecordsRequest,
) -> (i16, i64) {
    let Some(KafkaResponse::DeleteRecords(response)) =
        ask(service, version, KafkaRequest::DeleteRecords(request)).await
    else {
        panic!("no DeleteRecords answer");
    };
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

const UNKNOWN_LEADER_EPOCH: i16 = 75;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_OUT_OF_RANGE: i16 = 1;

// Goal (KIP-320): ListOffsets answers the leader epoch of the offset it returns (v4+; the
// latest epoch for "latest", -1 on a log without batches), still encodes at v1-3 where the
// field does not exist, and checks the client's current_leader_epoch as Kafka does.
#[test]
fn list_offsets_answers_leader_epochs_and_checks_the_current_one() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        let (error, _) = produce(
            &service,
            9,
            produce_request("t", 0, batch(10, &EncodeOptions::default()), -1),
        )
        .await;
        assert_eq!(error, 0);
        // A single node leads at epoch 0 and stamps it on its batches.
        assert_eq!(
            list_offsets(&service, 6, list_offsets_request("t", 0, -1, -1)).await,
            (0, 10, 0)
        );
        assert_eq!(
            list_offsets(&service, 6, list_offsets_request("t", 0, -2, 0)).await,
            (0, 0, 0)
        );
        assert_eq!(
            list_offsets(&service, 4, list_offsets_request("t", 0, 0, 0)).await,
            (0, 0, 0)
        );
        // No batch yet: no epoch known.
        assert_eq!(
            list_offsets(&service, 6, list_offsets_request("t", 1, -1, -1)).await,
            (0, 0, -1)
        );
        // Before v4 the answer has no epoch field; it still encodes.
        for version in 1..4 {
            assert_eq!(
                list_offsets(&service, version, list_offsets_request("t", 0, -1, -1)).await,
                (0, 10, -1)
            );
        }
        // A client that heard of a newer epoch than this leader's: Kafka's retriable error.
        let (error, offset, epoch) =
            list_offsets(&service, 6, list_offsets_request("t", 0, -1, 1)).await;
        assert_eq!((error, offset, epoch), (UNKNOWN_LEADER_EPOCH, -1, -1));
        let (error, ..) =
            list_offsets(&service, 6, list_offsets_request("missing", 0, -1, -1)).await;
        assert_eq!(error, UNKNOWN_TOPIC_OR_PARTITION);
    });
}

// Goal (KIP-320): OffsetForLeaderEpoch is answered from the partition's leader-epoch
// checkpoint: the latest epoch ends at the log end, an unknown newer one is undefined,
// the current_leader_epoch is checked, an unknown partition is UNKNOWN_TOPIC_OR_PARTITION;
// a log without batches knows no epoch.
#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_checkpoint() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        produce(
            &service,
            9,
            produce_request("t", 0, batch(10, &EncodeOptions::default()), -1),
        )
        .await;
        produce(
            &service,
            9,
            produce_request("t", 0, batch(5, &EncodeOptions::default()), -1),
        )
        .await;
        for version in 2..=4 {
            assert_eq!(
                epoch_end(
                    &service,
                    version,
                    offset_for_leader_epoch_request("t", 0, 0, 0)
                )
                .await,
                (0, 0, 15)
            );
        }
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", 0, 3, -1)).await,
            (0, -1, -1),
            "an epoch newer than any the log has is undefined"
        );
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", 0, 0, 2)).await,
            (UNKNOWN_LEADER_EPOCH, -1, -1)
        );
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", 1, 0, -1)).await,
            (0, -1, -1),
            "no batch, no epoch"
        );
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", 7, 0, -1))
                .await
                .0,
            UNKNOWN_TOPIC_OR_PARTITION
        );
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", -1, 0, -1))
                .await
                .0,
            UNKNOWN_TOPIC_OR_PARTITION
        );
    });
}

// Goal: DeleteRecords moves the log start durably through the log's own path: the low
// watermark is answered, ListOffsets' earliest follows, a fetch below it is out of range,
// an offset past the high watermark is OFFSET_OUT_OF_RANGE and moves nothing, -1 means the
// high watermark, and an offset below the start changes nothing.
#[test]
fn delete_records_moves_the_log_start() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        for _ in 0..3 {
            produce(
                &service,
                9,
                produce_request("t", 0, batch(4, &EncodeOptions::default()), -1),
            )
            .await;
        }
        assert_eq!(
            delete_records(&service, 2, delete_records_request("t", 0, 5)).await,
            (0, 5)
        );
        assert_eq!(
            list_offsets(&service, 6, list_offsets_request("t", 0, -2, -1)).await,
            (0, 5, 0)
        );
        let Some(KafkaResponse::Fetch(fetched)) =
            ask(&service, 12, KafkaRequest::Fetch(fetch_request("t", 0, 0))).await
        else {
            panic!("no answer");
        };
        let partition = &fetched.responses[0].partitions[0];
        assert_eq!(partition.error_code, OFFSET_OUT_OF_RANGE);
        assert_eq!(partition.log_start_offset, 5);
        assert_eq!(
            delete_records(&service, 1, delete_records_request("t", 0, 13)).await,
            (OFFSET_OUT_OF_RANGE, -1)
        );
        assert_eq!(
            delete_records(&service, 0, delete_records_request("t", 0, 2)).await,
            (0, 5)
        );
        assert_eq!(
            delete_records(&service, 2, delete_records_request("t", 0, -1)).await,
            (0, 12)
        );
        assert_eq!(
            list_offsets(&service, 6, list_offsets_request("t", 0, -2, -1)).await,
            (0, 12, 0)
        );
        assert_eq!(
            delete_records(&service, 2, delete_records_request("missing", 0, 1))
                .await
                .0,
            UNKNOWN_TOPIC_OR_PARTITION
        );
    });
}

#[test]
fn metadata_lists_this_node_and_its_leaders() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        let KafkaRequest::Metadata(mut request) = realistic_request(ApiKey::Metadata, 12) else {
            panic!("not a Metadata request");
        };
        request.allow_auto_topic_creation = false;
        let Some(KafkaResponse::Metadata(metadata)) =
            ask(&service, 12, KafkaRequest::Metadata(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(metadata.brokers.len(), 1);
        assert_eq!(metadata.brokers[0].host.as_str(), "127.0.0.1");
        assert_eq!(metadata.brokers[0].port, 19092);
        assert_eq!(metadata.controller_id, metadata.brokers[0].node_id);
        let topic = &metadata.topics[0];
        assert_eq!(topic.name.as_ref().unwrap().0.as_str(), "t");
        assert_eq!(topic.error_code, 0);
        assert_eq!(topic.partitions.len(), 2);
        for partition in &topic.partitions {
            assert_eq!(partition.leader_id, metadata.brokers[0].node_id);
            assert_eq!(partition.isr_nodes, vec![metadata.brokers[0].node_id]);
            assert!(partition.leader_epoch >= 0);
        }
        assert_eq!(
            metadata.topics[1].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
    });
}

#[test]
fn fetch_from_inside_a_batch_returns_that_batch() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        let (error, base) = produce(
            &service,
            9,
            produce_request("t", 0, batch(10, &EncodeOptions::default()), -1),
        )
        .await;
        assert_eq!((error, base), (0, 0));
        let Some(KafkaResponse::Fetch(response)) =
            ask(&service, 12, KafkaRequest::Fetch(fetch_request("t", 0, 5))).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.session_id, 0, "no fetch sessions");
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(partition.high_watermark, 10);
        assert_eq!(partition.last_stable_offset, 10);
        let records = partition.records.clone().unwrap();
        // A batch starts with its base offset (8 bytes, big-endian).
        let base_offset = i64::from_be_bytes(records[..8].try_into().unwrap());
        assert_eq!(base_offset, 0, "the batch holding offset 5, whole");
        assert_eq!(records.len(), batch(10, &EncodeOptions::default()).len());
    });
}

#[test]
fn idempotent_retry_gets_its_original_offsets() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        let mut request = kafka::InitProducerIdRequest::default();
        // Null: an idempotent producer (the codec's default is the empty string).
        request.transactional_id = None;
        let Some(KafkaResponse::InitProducerId(init)) =
            ask(&service, 4, KafkaRequest::InitProducerId(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(init.error_code, 0);
        assert!(init.producer_id.0 >= 0);
        let options = |sequence| EncodeOptions {
            producer_id: init.producer_id.0,
            producer_epoch: init.producer_epoch,
            base_sequence: sequence,
            ..EncodeOptions::default()
        };
        let first = batch(4, &options(0));
        let second = batch(4, &options(4));
        assert_eq!(
            produce(&service, 9, produce_request("t", 0, first.clone(), -1)).await,
            (0, 0)
        );
        assert_eq!(
            produce(&service, 9, produce_request("t", 0, second, -1)).await,
            (0, 4)
        );
        // The first batch again (its answer was lost): its original offset, no error.
        assert_eq!(
            produce(&service, 9, produce_request("t", 0, first, -1)).await,
            (0, 0)
        );
        // A gap in the sequence is Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
        let gap = batch(1, &options(20));
        assert_eq!(
            produce(&service, 9, produce_request("t", 0, gap, -1))
                .await
                .0,
            45
        );
    });
}

#[test]
fn acks_zero_is_written_and_not_answered() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        let answer = ask(
            &service,
            9,
            produce_request("t", 0, batch(2, &EncodeOptions::default()), 0),
        )
        .await;
        assert!(answer.is_none());
        // A long poll: the records are readable once the log has flushed them.
        let mut request = fetch_request("t", 0, 0);
        request.max_wait_ms = 5_000;
        request.min_bytes = 1;
        let Some(KafkaResponse::Fetch(response)) =
            ask(&service, 12, KafkaRequest::Fetch(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].partitions[0].high_watermark, 2);
    });
}

#[test]
fn bad_batches_get_kafkas_codes() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        let good = batch(3, &EncodeOptions::default());
        // Magic 1 (byte 16 of a batch): refused, never an unknown server error.
        let mut old_magic = BytesMut::from(&good[..]);
        old_magic[16] = 1;
        let (code, _) = produce(&service, 9, produce_request("t", 0, old_magic.freeze(), -1)).await;
        assert_eq!(
            code, 87,
            "magic 1: INVALID_RECORD, as Kafka answers on Produce v3+"
        );
        // Magic 1 in a second batch behind a good one: the whole produce is refused.
        let mut second_old = BytesMut::from(&good[..]);
        second_old.extend_from_slice(&good);
        second_old[good.len() + 16] = 0;
        let (code, _) = produce(
            &service,
            9,
            produce_request("t", 0, second_old.freeze(), -1),
        )
        .await;
        assert_eq!(code, 87, "magic 0 in the second batch");
        // A flipped byte in the records: the CRC fails, CORRUPT_MESSAGE.
        let mut corrupt = BytesMut::from(&good[..]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        let (code, _) = produce(&service, 9, produce_request("t", 0, corrupt.freeze(), -1)).await;
        assert_eq!(code, 2, "bad CRC");
        // A record count that lies (with a CRC that matches the lie): refused as on QUIC,
        // INVALID_RECORD as Kafka answers (not retried: the same bytes fail again), whether
        // it disagrees with the last offset delta (9 records, delta 2) or with the records
        // (2 or 4 records claimed, delta moved along, 3 records present).
        for (count, last_offset_delta) in [(9, 2), (2, 1), (4, 3)] {
            let mut lying = BytesMut::from(&good[..]);
            lying[23..27].copy_from_slice(&i32::to_be_bytes(last_offset_delta));
            lying[57..61].copy_from_slice(&i32::to_be_bytes(count));
            let crc = crc32c::crc32c(&lying[21..]);
            lying[17..21].copy_from_slice(&crc.to_be_bytes());
            let (code, _) = produce(&service, 9, produce_request("t", 0, lying.freeze(), -1)).await;
            assert_eq!(code, 87, "record count {count}, delta {last_offset_delta}");
        }
        // Bad acks, a negative partition, a transactional produce.
        assert_eq!(
            produce(&service, 9, produce_request("t", 0, good.clone(), 2))
                .await
                .0,
            21
        );
        assert_eq!(
            produce(&service, 9, produce_request("t", -1, good.clone(), -1))
                .await
                .0,
            3
        );
        let KafkaRequest::Produce(mut transactional) = produce_request("t", 0, good, -1) else {
            unreachable!()
        };
        transactional.transactional_id = Some(kafka::TransactionalId(text("tx")));
        let (code, _) = produce(&service, 9, KafkaRequest::Produce(transactional)).await;
        assert_eq!(code, 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
        // Nothing of it was written.
        let Some(KafkaResponse::Fetch(response)) =
            ask(&service, 12, KafkaRequest::Fetch(fetch_request("t", 0, 0))).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].partitions[0].high_watermark, 0);
    });
}

#[test]
fn transactional_init_producer_id_is_refused() {
    runtime().block_on(async {
        let service = service().await;
        let mut request = kafka::InitProducerIdRequest::default();
        request.transactional_id = Some(kafka::TransactionalId(text("tx")));
        let Some(KafkaResponse::InitProducerId(response)) =
            ask(&service, 4, KafkaRequest::InitProducerId(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.error_code, 53);
        assert_eq!(response.producer_id, ProducerId(-1));
    });
}

/// (partition, records bytes) per topic of a fetch answer, in answer order.
fn fetched(response: &kafka::FetchResponse) -> Vec<(String, i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.topic.0.to_string(),
                    partition.partition_index,
                    partition.records.as_ref().map_or(0, Bytes::len),
                )
            })
        })
        .collect()
}

/// A fetch at v12 with the given session fields, partitions (topic `t`, index, offset) and
/// forgotten partitions of `t`.
async fn session_fetch(
    service: &KafkaService<SimDisk>,
    session: (i32, i32),
    partitions: &[(i32, i64)],
    forgotten: &[i32],
) -> kafka::FetchResponse {
    let mut request = fetch_request("t", 0, 0);
    request.session_id = session.0;
    request.session_epoch = session.1;
    request.topics[0].partitions = partitions
        .iter()
        .map(|(index, offset)| {
            let mut partition = fetch_request::FetchPartition::default();
            partition.partition = *index;
            partition.fetch_offset = *offset;
            partition.partition_max_bytes = 1024 * 1024;
            partition
        })
        .collect();
    if partitions.is_empty() {
        request.topics.clear();
    }
    if !forgotten.is_empty() {
        let mut topic = fetch_request::ForgottenTopic::default();
        topic.topic = name("t");
        topic.partitions = forgotten.to_vec();
        request.forgotten_topics_data = vec![topic];
    }
    let Some(KafkaResponse::Fetch(response)) = ask(service, 12, KafkaRequest::Fetch(request)).await
    else {
        panic!("no answer");
    };
    response
}

#[test]
fn fetch_sessions_carry_only_changes() {
    // A consumer's session as the Java client drives it (KIP-227): a full fetch opens it,
    // incremental fetches list only changed partitions and get only partitions with news,
    // a replayed epoch is refused, forgotten partitions are no longer read, and FINAL closes.
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 3).await;
        produce(
            &service,
            9,
            produce_request("t", 0, batch(5, &EncodeOptions::default()), -1),
        )
        .await;
        let full = session_fetch(&service, (0, 0), &[(0, 0), (1, 0), (2, 0)], &[]).await;
        assert_eq!(full.error_code, 0);
        let id = full.session_id;
        assert!(id > 0, "a session was created: {full:?}");
        let listed = fetched(&full);
        assert_eq!(listed.len(), 3, "a full answer lists every partition");
        assert!(listed[0].2 > 0 && listed[1].2 == 0 && listed[2].2 == 0);

        // The client moved t-0 to offset 5; nothing is new anywhere: an empty answer.
        let quiet = session_fetch(&service, (id, 1), &[(0, 5)], &[]).await;
        assert_eq!((quiet.error_code, quiet.session_id), (0, id));
        assert_eq!(fetched(&quiet), []);

        // Records land on t-1: only t-1 is answered, though the request lists nothing.
        produce(
            &service,
            9,
            produce_request("t", 1, batch(2, &EncodeOptions::default()), -1),
        )
        .await;
        let news = session_fetch(&service, (id, 2), &[], &[]).await;
        let listed = fetched(&news);
        assert_eq!(listed.len(), 1, "{news:?}");
        assert_eq!((listed[0].1, listed[0].2 > 0), (1, true));
        assert_eq!(news.responses[0].partitions[0].high_watermark, 2);

        // The same epoch again (a duplicate): INVALID_FETCH_SESSION_EPOCH, nothing answered.
        let replay = session_fetch(&service, (id, 2), &[], &[]).await;
        assert_eq!(replay.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
        assert_eq!((replay.session_id, fetched(&replay)), (0, vec![]));

        // Forget t-1 and t-2, move t-0 to the start: t-0 is read again, from the session.
        let forgot = session_fetch(&service, (id, 3), &[(0, 0)], &[1, 2]).await;
        let listed = fetched(&forgot);
        assert_eq!(listed.len(), 1, "{forgot:?}");
        assert_eq!((listed[0].1, listed[0].2 > 0), (0, true));

        // FINAL (the Java consumer's close): no session in the answer, and the id is gone.
        let closed = session_fetch(&service, (id, -1), &[], &[]).await;
        assert_eq!((closed.error_code, closed.session_id), (0, 0));
        let gone = session_fetch(&service, (id, 4), &[], &[]).await;
        assert_eq!(gone.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    });
}

#[test]
fn an_idle_incremental_fetch_of_many_partitions_is_small() {
    // What sessions save: a consumer of 100 idle partitions sends and receives every one in
    // a full fetch, and almost nothing in an incremental one (v12 encodings compared).
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 100).await;
        let all: Vec<(i32, i64)> = (0..100).map(|index| (index, 0)).collect();
        let encoded = |body: KafkaRequest| {
            let mut out = BytesMut::new();
            body.encode(&mut out, 12).unwrap();
            out.len()
        };
        let response_size = |response: kafka::FetchResponse| {
            let mut out = BytesMut::new();
            KafkaResponse::Fetch(response).encode(&mut out, 12).unwrap();
            out.len()
        };
        let mut full_request = fetch_request("t", 0, 0);
        full_request.session_epoch = 0;
        full_request.topics[0].partitions = (0..100)
            .map(|index| {
                let mut partition = fetch_request::FetchPartition::default();
                partition.partition = index;
                partition
            })
            .collect();
        let full_request_bytes = encoded(KafkaRequest::Fetch(full_request));
        let full = session_fetch(&service, (0, 0), &all, &[]).await;
        let id = full.session_id;
        assert_eq!(fetched(&full).len(), 100);
        let full_response_bytes = response_size(full);
        let mut idle_request = fetch_request("t", 0, 0);
        idle_request.session_id = id;
        idle_request.session_epoch = 1;
        idle_request.topics.clear();
        let idle_request_bytes = encoded(KafkaRequest::Fetch(idle_request));
        let idle = session_fetch(&service, (id, 1), &[], &[]).await;
        assert_eq!(idle.session_id, id);
        assert_eq!(fetched(&idle), []);
        let idle_response_bytes = response_size(idle);
        eprintln!(
            "100 idle partitions, Fetch v12: full request {full_request_bytes} B, response \
             {full_response_bytes} B; incremental request {idle_request_bytes} B, response \
             {idle_response_bytes} B"
        );
        assert!(idle_request_bytes * 20 < full_request_bytes);
        assert!(idle_response_bytes * 20 < full_response_bytes);
    });
}

#[test]
fn fetches_without_sessions_stay_full() {
    // FINAL from the start (librdkafka, aiokafka), a v6 fetch (no session fields), and an
    // unknown session id: every partition answered, session id 0, or the id refused.
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        let sessionless = session_fetch(&service, (0, -1), &[(0, 0), (1, 0)], &[]).await;
        assert_eq!((sessionless.error_code, sessionless.session_id), (0, 0));
        assert_eq!(fetched(&sessionless).len(), 2);
        let mut old = fetch_request("t", 0, 0);
        old.session_epoch = 0;
        let Some(KafkaResponse::Fetch(response)) = ask(&service, 6, KafkaRequest::Fetch(old)).await
        else {
            panic!("no answer");
        };
        assert_eq!((response.error_code, response.session_id), (0, 0));
        assert_eq!(fetched(&response).len(), 1);
        let unknown = session_fetch(&service, (77, 3), &[(0, 0)], &[]).await;
        assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
        assert_eq!(fetched(&unknown), []);
    });
}

/// A fetch of t-0 from `offset` naming `last_fetched_epoch`, with the given
/// session fields (`(0, -1)`: none).
fn epoch_fetch(offset: i64, last_fetched_epoch: i32, session: (i32, i32)) -> kafka::FetchRequest {
    let mut request = fetch_request("t", 0, offset);
    request.topics[0].partitions[0].last_fetched_epoch = last_fetched_epoch;
    (request.session_id, request.session_epoch) = session;
    request
}

async fn fetch_answer(
    service: &KafkaService<SimDisk>,
    version: i16,
    request: kafka::FetchRequest,
) -> kafka::FetchResponse {
    let Some(KafkaResponse::Fetch(response)) =
        ask(service, version, KafkaRequest::Fetch(request)).await
    else {
        panic!("no fetch answer");
    };
    response
}

/// The one partition of a fetch answer: (error code, diverging (epoch, end offset),
/// records bytes, high watermark).
fn diverging_of(response: &kafka::FetchResponse) -> (i16, (i32, i64), usize, i64) {
    assert_eq!(response.error_code, 0, "{response:?}");
    let partition = &response.responses[0].partitions[0];
    (
        partition.error_code,
        (
            partition.diverging_epoch.epoch,
            partition.diverging_epoch.end_offset,
        ),
        partition.records.as_ref().map_or(0, Bytes::len),
        partition.high_watermark,
    )
}

// Goal (KIP-320, Fetch v12+): a fetch naming a last fetched epoch that ends on the leader
// before the fetch offset, or that the leader never had, is answered with the leader's
// OffsetForLeaderEpoch answer for it as `diverging_epoch` and no records, in a session's
// incremental fetches too; a consistent one is read; an epoch newer than any is
// OFFSET_OUT_OF_RANGE; before v12 the field does not exist and nothing is checked.
#[test]
fn a_fetch_whose_last_epoch_diverges_is_answered_with_its_end() {
    runtime().block_on(async {
        let broker = Arc::new(broker(BrokerConfig::default()).await);
        let service = service_on(Arc::clone(&broker), KafkaSettings::default());
        create_topic(&service, "t", 1).await;
        let (error, _) = produce(
            &service,
            9,
            produce_request("t", 0, batch(10, &EncodeOptions::default()), -1),
        )
        .await;
        assert_eq!(error, 0);
        // A new leader epoch from offset 10 on, as a leader change stamps it.
        let log = broker.hosted_partition_log("t", 0).unwrap();
        log.set_leader_epoch(3).await.unwrap();
        let (error, base) = produce(
            &service,
            9,
            produce_request("t", 0, batch(5, &EncodeOptions::default()), -1),
        )
        .await;
        assert_eq!((error, base), (0, 10));
        assert_eq!(
            epoch_end(&service, 4, offset_for_leader_epoch_request("t", 0, 0, -1)).await,
            (0, 0, 10),
            "epoch 0 ends at 10 here"
        );

        // The fetcher wrote epoch 0 up to 12: its log diverges at 10.
        let answer = fetch_answer(&service, 12, epoch_fetch(12, 0, (0, -1))).await;
        assert_eq!(diverging_of(&answer), (0, (0, 10), 0, 15));
        // It has epoch 2, which this leader never had: epoch 0's end.
        let answer = fetch_answer(&service, 12, epoch_fetch(10, 2, (0, -1))).await;
        assert_eq!(diverging_of(&answer), (0, (0, 10), 0, 15));
        // Consistent: epoch 0 up to 10, epoch 3 up to 12: records, no diverging epoch.
        for (offset, epoch) in [(10, 0), (12, 3), (15, 3)] {
            let answer = fetch_answer(&service, 12, epoch_fetch(offset, epoch, (0, -1))).await;
            let (error, diverging, records, high_watermark) = diverging_of(&answer);
            assert_eq!((error, diverging, high_watermark), (0, (-1, -1), 15));
            assert_eq!(records > 0, offset < 15, "offset {offset}");
        }
        // An epoch newer than the leader's latest cannot be placed.
        let answer = fetch_answer(&service, 12, epoch_fetch(12, 4, (0, -1))).await;
        assert_eq!(diverging_of(&answer).0, OFFSET_OUT_OF_RANGE);
        // The client's current_leader_epoch is still checked first.
        let mut newer = epoch_fetch(12, 0, (0, -1));
        newer.topics[0].partitions[0].current_leader_epoch = 1;
        let answer = fetch_answer(&service, 12, newer).await;
        assert_eq!(diverging_of(&answer).0, UNKNOWN_LEADER_EPOCH);
        // v11 has no last_fetched_epoch: read as asked.
        let answer = fetch_answer(&service, 11, epoch_fetch(12, 0, (0, -1))).await;
        let (error, diverging, records, _) = diverging_of(&answer);
        assert_eq!((error, diverging), (0, (-1, -1)));
        assert!(records > 0);

        // In a session: the full fetch and every incremental one (which lists nothing, so
        // nothing else about the partition changed) answer the diverging epoch.
        let full = fetch_answer(&service, 12, epoch_fetch(12, 0, (0, 0))).await;
        assert_eq!(diverging_of(&full), (0, (0, 10), 0, 15));
        let id = full.session_id;
        assert!(id > 0, "a session was created: {full:?}");
        for epoch in 1..=2 {
            let mut incremental = epoch_fetch(12, 0, (id, epoch));
            incremental.topics.clear();
            let answer = fetch_answer(&service, 12, incremental).await;
            assert_eq!(answer.session_id, id);
            assert_eq!(diverging_of(&answer), (0, (0, 10), 0, 15), "epoch {epoch}");
        }
    });
}

#[test]
fn list_offsets_earliest_latest_and_by_time() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        produce(
            &service,
            9,
            produce_request("t", 0, batch(5, &EncodeOptions::default()), -1),
        )
        .await;
        for (timestamp, offset) in [(-2, 0), (-1, 5), (1_002, 2), (9_999_999, -1)] {
            let KafkaRequest::ListOffsets(mut request) = realistic_request(ApiKey::ListOffsets, 6)
            else {
                unreachable!()
            };
            request.topics[0].partitions[0].timestamp = timestamp;
            let Some(KafkaResponse::ListOffsets(response)) =
                ask(&service, 6, KafkaRequest::ListOffsets(request)).await
            else {
                panic!("no answer");
            };
            let partition = &response.topics[0].partitions[0];
            assert_eq!(partition.error_code, 0, "{timestamp}");
            assert_eq!(partition.offset, offset, "{timestamp}");
        }
    });
}

#[test]
fn create_topics_defaults_and_refusals() {
    runtime().block_on(async {
        let service = service().await;
        let mut defaults = create_topics_request::CreatableTopic::default();
        defaults.name = name("defaults");
        defaults.num_partitions = -1;
        defaults.replication_factor = -1;
        let mut assigned = create_topics_request::CreatableTopic::default();
        assigned.name = name("assigned");
        assigned.num_partitions = -1;
        assigned.replication_factor = -1;
        assigned.assignments = vec![Default::default()];
        let mut zero = create_topics_request::CreatableTopic::default();
        zero.name = name("zero");
        zero.num_partitions = 0;
        zero.replication_factor = 1;
        let mut request = kafka::CreateTopicsRequest::default();
        request.topics = vec![defaults, assigned, zero];
        let Some(KafkaResponse::CreateTopics(response)) =
            ask(&service, 7, KafkaRequest::CreateTopics(request)).await
        else {
            panic!("no answer");
        };
        let codes: Vec<i16> = response
            .topics
            .iter()
            .map(|topic| topic.error_code)
            .collect();
        assert_eq!(codes, vec![0, 39, 37]);
        assert_eq!(response.topics[0].num_partitions, 1);
        // Again: it exists.
        create_topic(&service, "again", 1).await;
        let mut again = create_topics_request::CreatableTopic::default();
        again.name = name("again");
        again.num_partitions = 1;
        again.replication_factor = -1;
        let mut request = kafka::CreateTopicsRequest::default();
        request.topics = vec![again];
        let Some(KafkaResponse::CreateTopics(response)) =
            ask(&service, 7, KafkaRequest::CreateTopics(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.topics[0].error_code, 36, "TOPIC_ALREADY_EXISTS");
    });
}

/// (config name -> (value, source)) of topic `t`.
async fn topic_configs(
    service: &KafkaService<SimDisk>,
) -> std::collections::BTreeMap<String, (String, i8)> {
    let Some(KafkaResponse::DescribeConfigs(response)) =
        ask(service, 4, realistic_request(ApiKey::DescribeConfigs, 4)).await
    else {
        panic!("no answer");
    };
    assert_eq!(response.results[0].error_code, 0);
    response.results[0]
        .configs
        .iter()
        .map(|config| {
            (
                config.name.as_str().to_owned(),
                (
                    config
                        .value
                        .as_ref()
                        .map(|value| value.as_str().to_owned())
                        .unwrap(),
                    config.config_source,
                ),
            )
        })
        .collect()
}

#[test]
fn alter_configs_replaces_and_incremental_alters() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        // Incremental: set retention.ms, append compact to cleanup.policy.
        let KafkaRequest::IncrementalAlterConfigs(mut request) =
            realistic_request(ApiKey::IncrementalAlterConfigs, 1)
        else {
            unreachable!()
        };
        let mut append = kafka::incremental_alter_configs_request::AlterableConfig::default();
        append.name = text("cleanup.policy");
        append.config_operation = 2;
        append.value = Some(text("compact"));
        request.resources[0].configs.push(append);
        let Some(KafkaResponse::IncrementalAlterConfigs(response)) =
            ask(&service, 1, KafkaRequest::IncrementalAlterConfigs(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].error_code, 0, "{response:?}");
        let configs = topic_configs(&service).await;
        assert_eq!(configs["retention.ms"], ("7200000".to_owned(), 1));
        assert_eq!(configs["cleanup.policy"], ("compact,delete".to_owned(), 1));
        // AlterConfigs names only retention.ms: cleanup.policy goes back to its default.
        let Some(KafkaResponse::AlterConfigs(response)) =
            ask(&service, 2, realistic_request(ApiKey::AlterConfigs, 2)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].error_code, 0, "{response:?}");
        let configs = topic_configs(&service).await;
        assert_eq!(configs["retention.ms"], ("3600000".to_owned(), 1));
        assert_eq!(configs["cleanup.policy"].1, 5, "default again");
        // An unknown key is INVALID_CONFIG, a broker resource INVALID_REQUEST.
        let KafkaRequest::AlterConfigs(mut request) = realistic_request(ApiKey::AlterConfigs, 2)
        else {
            unreachable!()
        };
        request.resources[0].configs[0].name = text("no.such.key");
        let Some(KafkaResponse::AlterConfigs(response)) =
            ask(&service, 2, KafkaRequest::AlterConfigs(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].error_code, 40, "{response:?}");
        let KafkaRequest::DescribeConfigs(mut request) =
            realistic_request(ApiKey::DescribeConfigs, 4)
        else {
            unreachable!()
        };
        request.resources[0].resource_type = 4;
        let Some(KafkaResponse::DescribeConfigs(response)) =
            ask(&service, 4, KafkaRequest::DescribeConfigs(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(response.results[0].error_code, 42);
    });
}

/// DescribeConfigs with `include_synonyms` lists each value's own source as its first synonym
/// (what `kafka-configs --describe` prints); without it, none.
#[test]
fn describe_configs_synonyms_name_the_source() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 1).await;
        let Some(KafkaResponse::IncrementalAlterConfigs(response)) = ask(
            &service,
            1,
            realistic_request(ApiKey::IncrementalAlterConfigs, 1),
        )
        .await
        else {
            panic!("no answer");
        };
        assert_eq!(response.responses[0].error_code, 0, "{response:?}");
        for include_synonyms in [true, false] {
            let KafkaRequest::DescribeConfigs(mut request) =
                realistic_request(ApiKey::DescribeConfigs, 4)
            else {
                unreachable!()
            };
            request.include_synonyms = include_synonyms;
            let Some(KafkaResponse::DescribeConfigs(response)) =
                ask(&service, 4, KafkaRequest::DescribeConfigs(request)).await
            else {
                panic!("no answer");
            };
            let synonyms = |key: &str| -> Vec<(String, String, i8)> {
                let config = response.results[0]
                    .configs
                    .iter()
                    .find(|config| config.name.as_str() == key)
                    .expect("key described");
                config
                    .synonyms
                    .iter()
                    .map(|synonym| {
                        (
                            synonym.name.as_str().to_owned(),
                            synonym.value.as_deref().unwrap_or_default().to_owned(),
                            synonym.source,
                        )
                    })
                    .collect()
            };
            if include_synonyms {
                assert_eq!(
                    synonyms("retention.ms"),
                    [("retention.ms".to_owned(), "7200000".to_owned(), 1)],
                    "set on the topic: DYNAMIC_TOPIC_CONFIG"
                );
                assert_eq!(
                    synonyms("cleanup.policy"),
                    [("cleanup.policy".to_owned(), "delete".to_owned(), 5)],
                    "the default: DEFAULT_CONFIG"
                );
            } else {
                assert_eq!(synonyms("retention.ms"), []);
            }
        }
    });
}

#[test]
fn create_partitions_grows_and_never_shrinks() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        let grow = |count| {
            let mut topic = kafka::create_partitions_request::CreatePartitionsTopic::default();
            topic.name = name("t");
            topic.count = count;
            let mut request = kafka::CreatePartitionsRequest::default();
            request.topics = vec![topic];
            KafkaRequest::CreatePartitions(request)
        };
        let code = |answer: Option<KafkaResponse>| match answer {
            Some(KafkaResponse::CreatePartitions(response)) => response.results[0].error_code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(ask(&service, 3, grow(4)).await), 0);
        assert_eq!(
            code(ask(&service, 3, grow(3)).await),
            37,
            "INVALID_PARTITIONS"
        );
        assert_eq!(code(ask(&service, 3, grow(-1)).await), 37);
        let Some(KafkaResponse::Metadata(metadata)) =
            ask(&service, 12, realistic_request(ApiKey::Metadata, 12)).await
        else {
            panic!("no answer");
        };
        assert_eq!(metadata.topics[0].partitions.len(), 4);
    });
}

/// DescribeTopicPartitions lists topics sorted by name, stops at the partition limit with a
/// cursor to the next partition, resumes from that cursor, answers an unknown topic with
/// UNKNOWN_TOPIC_OR_PARTITION, and reports empty ELR lists (what `kafka-topics --describe`
/// prints as `Elr:`).
#[test]
fn describe_topic_partitions_pages_by_cursor() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "b", 3).await;
        create_topic(&service, "a", 2).await;
        let describe = |names: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
            let mut request = kafka::DescribeTopicPartitionsRequest::default();
            request.topics = names
                .iter()
                .map(|topic| {
                    let mut entry =
                        kafka::describe_topic_partitions_request::TopicRequest::default();
                    entry.name = name(topic);
                    entry
                })
                .collect();
            request.response_partition_limit = limit;
            request.cursor = cursor.map(|(topic, partition)| {
                let mut entry = kafka::describe_topic_partitions_request::Cursor::default();
                entry.topic_name = name(topic);
                entry.partition_index = partition;
                entry
            });
            KafkaRequest::DescribeTopicPartitions(request)
        };
        let listed = |response: &kafka::DescribeTopicPartitionsResponse| -> Vec<(String, i32)> {
            response
                .topics
                .iter()
                .flat_map(|topic| {
                    let topic_name = topic.name.as_ref().unwrap().0.as_str().to_owned();
                    topic
                        .partitions
                        .iter()
                        .map(move |partition| (topic_name.clone(), partition.partition_index))
                })
                .collect()
        };
        let Some(KafkaResponse::DescribeTopicPartitions(first)) =
            ask(&service, 0, describe(&["b", "a"], 3, None)).await
        else {
            panic!("no answer");
        };
        assert_eq!(
            listed(&first),
            [
                ("a".to_owned(), 0),
                ("a".to_owned(), 1),
                ("b".to_owned(), 0)
            ]
        );
        let cursor = first.next_cursor.as_ref().expect("more to come");
        assert_eq!(
            (cursor.topic_name.0.as_str(), cursor.partition_index),
            ("b", 1)
        );
        let partition = &first.topics[0].partitions[0];
        assert_eq!(partition.leader_id.0, 1);
        assert_eq!(partition.eligible_leader_replicas, Some(Vec::new()));
        let Some(KafkaResponse::DescribeTopicPartitions(rest)) =
            ask(&service, 0, describe(&["b", "a"], 3, Some(("b", 1)))).await
        else {
            panic!("no answer");
        };
        assert_eq!(listed(&rest), [("b".to_owned(), 1), ("b".to_owned(), 2)]);
        assert!(rest.next_cursor.is_none());
        // No names: every topic. An unknown name: its error, no partitions.
        let Some(KafkaResponse::DescribeTopicPartitions(all)) =
            ask(&service, 0, describe(&[], 100, None)).await
        else {
            panic!("no answer");
        };
        // Internal topics (the node's __consumer_offsets) are listed too, marked so.
        let user_partitions: usize = all
            .topics
            .iter()
            .filter(|topic| !topic.is_internal)
            .map(|topic| topic.partitions.len())
            .sum();
        assert_eq!(user_partitions, 5, "{all:?}");
        let Some(KafkaResponse::DescribeTopicPartitions(unknown)) =
            ask(&service, 0, describe(&["missing"], 100, None)).await
        else {
            panic!("no answer");
        };
        assert_eq!(unknown.topics.len(), 1);
        assert_eq!(
            unknown.topics[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert!(unknown.topics[0].partitions.is_empty());
    });
}

// Goal (DescribeProducers): each partition lists the idempotent producers its leader's
// producer table holds, with epoch, last sequence and the max timestamp of the producer's
// last batch there (coordinator epoch and transaction start -1: no transactions); a
// partition written only by a plain producer lists none; a partition, topic or negative
// index that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn describe_producers_lists_each_partitions_idempotent_producers() {
    runtime().block_on(async {
        let service = service().await;
        create_topic(&service, "t", 2).await;
        let mut producers = Vec::new();
        for _ in 0..2 {
            let mut request = kafka::InitProducerIdRequest::default();
            request.transactional_id = None;
            let Some(KafkaResponse::InitProducerId(init)) =
                ask(&service, 4, KafkaRequest::InitProducerId(request)).await
            else {
                panic!("no answer");
            };
            assert_eq!(init.error_code, 0);
            producers.push((init.producer_id.0, init.producer_epoch));
        }
        let options = |(producer_id, producer_epoch): (i64, i16), sequence| EncodeOptions {
            producer_id,
            producer_epoch,
            base_sequence: sequence,
            ..EncodeOptions::default()
        };
        for (records, producer, sequence) in [
            (4, producers[0], 0),
            (4, producers[0], 4),
            (3, producers[1], 0),
        ] {
            let written = produce(
                &service,
                9,
                produce_request("t", 0, batch(records, &options(producer, sequence)), -1),
            )
            .await;
            assert_eq!(written.0, 0);
        }
        let plain = produce(
            &service,
            9,
            produce_request("t", 1, batch(2, &EncodeOptions::default()), -1),
        )
        .await;
        assert_eq!(plain.0, 0);

        let mut asked = kafka::describe_producers_request::TopicRequest::default();
        asked.name = name("t");
        asked.partition_indexes = vec![0, 1, 7, -1];
        let mut missing = kafka::describe_producers_request::TopicRequest::default();
        missing.name = name("nope");
        missing.partition_indexes = vec![0];
        let mut request = kafka::DescribeProducersRequest::default();
        request.topics = vec![asked, missing];
        let Some(KafkaResponse::DescribeProducers(response)) =
            ask(&service, 0, KafkaRequest::DescribeProducers(request)).await
        else {
            panic!("no answer");
        };
        let partitions = &response.topics[0].partitions;
        assert_eq!(partitions[0].error_code, 0);
        let states: Vec<(i64, i32, i32, i64, i32, i64)> = partitions[0]
            .active_producers
            .iter()
            .map(|state| {
                (
                    state.producer_id.0,
                    state.producer_epoch,
                    state.last_sequence,
                    state.last_timestamp,
                    state.coordinator_epoch,
                    state.current_txn_start_offset,
                )
            })
            .collect();
        // `batch` stamps records 1000, 1001, ...: a batch's max timestamp is its last one.
        assert_eq!(
            states,
            [
                (producers[0].0, i32::from(producers[0].1), 7, 1_003, -1, -1),
                (producers[1].0, i32::from(producers[1].1), 2, 1_002, -1, -1),
            ]
        );
        assert_eq!(partitions[1].error_code, 0);
        assert!(partitions[1].active_producers.is_empty());
        let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(partitions[2].error_code, unknown);
        assert_eq!(partitions[3].error_code, unknown);
        assert_eq!(response.topics[1].partitions[0].error_code, unknown);
    });
}

/// The id Metadata v12 gives `topic`, and its error code.
async fn metadata_topic_id(service: &KafkaService<SimDisk>, topic: &str) -> (i16, uuid::Uuid) {
    let mut entry = metadata_request::MetadataRequestTopic::default();
    entry.name = Some(name(topic));
    let mut request = kafka::MetadataRequest::default();
    request.topics = Some(vec![entry]);
    request.allow_auto_topic_creation = false;
    let Some(KafkaResponse::Metadata(response)) =
        ask(service, 12, KafkaRequest::Metadata(request)).await
    else {
        panic!("no answer");
    };
    (response.topics[0].error_code, response.topics[0].topic_id)
}

/// DeleteTopics v6 of one topic by name or id: (error code, name, id) of the answer.
async fn delete_topic(
    service: &KafkaService<SimDisk>,
    topic: Option<&str>,
    id: uuid::Uuid,
) -> (i16, Option<String>, uuid::Uuid) {
    let mut state = kafka::delete_topics_request::DeleteTopicState::default();
    state.name = topic.map(name);
    state.topic_id = id;
    let mut request = kafka::DeleteTopicsRequest::default();
    request.topics = vec![state];
    let Some(KafkaResponse::DeleteTopics(response)) =
        ask(service, 6, KafkaRequest::DeleteTopics(request)).await
    else {
        panic!("no answer");
    };
    let result = &response.responses[0];
    (
        result.error_code,
        result.name.as_ref().map(|name| name.0.as_str().to_owned()),
        result.topic_id,
    )
}

// Goal (issue 14): a topic's id is drawn when it is created, not derived from its name: a
// topic deleted and created again under the same name has another id, as on Kafka; every
// API that carries ids gives the same one (CreateTopics v7, Metadata v12,
// DescribeTopicPartitions), and DeleteTopics v6 deletes by it, answering UNKNOWN_TOPIC_ID
// for an id no topic has.
#[test]
fn topic_ids_are_drawn_at_creation_and_served_everywhere() {
    runtime().block_on(async {
        let service = service().await;
        let first = create_topic(&service, "t", 2).await;
        assert_ne!(first, uuid::Uuid::nil());
        assert_eq!(first.get_version_num(), 4, "a random (v4) UUID: {first}");
        assert_eq!(metadata_topic_id(&service, "t").await, (0, first));
        let mut request = kafka::DescribeTopicPartitionsRequest::default();
        let mut entry = kafka::describe_topic_partitions_request::TopicRequest::default();
        entry.name = name("t");
        request.topics = vec![entry];
        request.response_partition_limit = 10;
        let Some(KafkaResponse::DescribeTopicPartitions(described)) =
            ask(&service, 0, KafkaRequest::DescribeTopicPartitions(request)).await
        else {
            panic!("no answer");
        };
        assert_eq!(described.topics[0].topic_id, first);

        let unknown = uuid::Uuid::from_u128(first.as_u128() ^ 1);
        assert_eq!(
            delete_topic(&service, None, unknown).await,
            (100, None, unknown),
            "UNKNOWN_TOPIC_ID"
        );
        assert_eq!(metadata_topic_id(&service, "t").await, (0, first));
        assert_eq!(
            delete_topic(&service, None, first).await,
            (0, Some("t".to_owned()), first),
            "deleted by id, named in the answer"
        );
        assert_eq!(
            metadata_topic_id(&service, "t").await,
            (3, uuid::Uuid::nil()),
            "gone: UNKNOWN_TOPIC_OR_PARTITION, nil id"
        );

        let second = create_topic(&service, "t", 2).await;
        assert_ne!(second, first, "a recreated topic is another topic");
        assert_eq!(metadata_topic_id(&service, "t").await, (0, second));
        assert_eq!(
            delete_topic(&service, Some("t"), uuid::Uuid::nil()).await,
            (0, Some("t".to_owned()), second),
            "deleted by name, its id in the answer"
        );
    });
}

/// Metadata at `version` for `topics` (`allow_auto_topic_creation` as given; versions
/// before 4 have no such field and always allow it): each topic's (error code, partition
/// count).
async fn metadata_of(
    service: &KafkaService<SimDisk>,
    version: i16,
    topics: &[&str],
    allow_auto_topic_creation: bool,
) -> Vec<(i16, usize)> {
    let mut request = kafka::MetadataRequest::default();
    request.topics = Some(
        topics
            .iter()
            .map(|topic| {
                let mut entry = metadata_request::MetadataRequestTopic::default();
                entry.name = Some(name(topic));
                entry
            })
            .collect(),
    );
    request.allow_auto_topic_creation = allow_auto_topic_creation;
    let Some(KafkaResponse::Metadata(response)) =
        ask(service, version, KafkaRequest::Metadata(request)).await
    else {
        panic!("no answer");
    };
    response
        .topics
        .iter()
        .map(|topic| {
            if topic.error_code != 0 {
                assert_eq!(topic.topic_id, uuid::Uuid::nil(), "{topic:?}");
            }
            (topic.error_code, topic.partitions.len())
        })
        .collect()
}

// Goal (issue 14): Metadata creates a missing topic it names as Kafka's
// `auto.create.topics.enable=true` does: LEADER_NOT_AVAILABLE in that answer, the topic with
// `kafka.auto_create_topic_partitions` partitions in the next; not when the request does not
// allow it, nor for a name starting with `__`; an invalid name answers
// INVALID_TOPIC_EXCEPTION whether or not creation is allowed; before v4 (no such field)
// creation is always allowed; a request for all topics creates nothing.
#[test]
fn metadata_creates_missing_topics_as_kafka() {
    runtime().block_on(async {
        let service = service().await;
        assert_eq!(
            metadata_of(&service, 12, &["auto", "bad name!", "__mine"], true).await,
            vec![(5, 0), (17, 0), (3, 0)],
            "LEADER_NOT_AVAILABLE, INVALID_TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            metadata_of(
                &service,
                12,
                &["auto", "manual", "bad name!", "__mine"],
                false
            )
            .await,
            vec![(0, 1), (3, 0), (17, 0), (3, 0)],
            "created with one partition; nothing more created"
        );
        assert_ne!(
            metadata_topic_id(&service, "auto").await.1,
            uuid::Uuid::nil()
        );
        assert_eq!(
            metadata_of(&service, 3, &["old-client"], false).await,
            vec![(5, 0)]
        );
        assert_eq!(
            metadata_of(&service, 3, &["old-client"], false).await,
            vec![(0, 1)]
        );

        let mut request = kafka::MetadataRequest::default();
        request.topics = None;
        request.allow_auto_topic_creation = true;
        let Some(KafkaResponse::Metadata(all)) =
            ask(&service, 12, KafkaRequest::Metadata(request)).await
        else {
            panic!("no answer");
        };
        let mut listed: Vec<&str> = all
            .topics
            .iter()
            .map(|topic| topic.name.as_ref().unwrap().0.as_str())
            .filter(|topic| !topic.starts_with("__"))
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, vec!["auto", "old-client"]);
    });
}

// Goal (issue 14): `kafka.auto_create_topics = false` creates nothing (UNKNOWN_TOPIC_OR_PARTITION,
// as before), `kafka.auto_create_topic_partitions` sets the new topic's partition count, and
// the node's partition limit applies to auto-created topics as to CreateTopics: refused
// (INVALID_PARTITIONS in the Metadata answer), nothing created.
#[test]
fn metadata_auto_creation_follows_the_settings_and_limits() {
    runtime().block_on(async {
        let off = KafkaSettings {
            auto_create_topics: false,
            ..KafkaSettings::default()
        };
        let service = service_with(off, BrokerConfig::default()).await;
        assert_eq!(metadata_of(&service, 12, &["x"], true).await, vec![(3, 0)]);
        assert_eq!(metadata_of(&service, 12, &["x"], true).await, vec![(3, 0)]);

        let three = KafkaSettings {
            auto_create_topic_partitions: 3,
            ..KafkaSettings::default()
        };
        let config = BrokerConfig {
            partitions_max: 4,
            ..BrokerConfig::default()
        };
        let service = service_with(three, config).await;
        assert_eq!(metadata_of(&service, 12, &["x"], true).await, vec![(5, 0)]);
        assert_eq!(metadata_of(&service, 12, &["x"], true).await, vec![(0, 3)]);
        assert_eq!(
            metadata_of(&service, 12, &["y"], true).await,
            vec![(37, 0)],
            "3 more partitions would pass partitions_max (4)"
        );
        assert_eq!(metadata_of(&service, 12, &["y"], false).await, vec![(3, 0)]);
    });
}
