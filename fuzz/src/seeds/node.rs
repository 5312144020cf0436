//! Seeds of the targets over ledge-node's decoders (the `node` feature).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, ConsumerProtocolSubscription, GroupId, RequestHeader,
    TopicName, consumer_protocol_assignment, consumer_protocol_subscription, fetch_request,
    join_group_request, metadata_request, produce_request, sync_group_request,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use ledge_node::groups::consumer_protocol::{
    ConsumerSubscription, encode_assignment, encode_subscription,
};
use ledge_node::kafka::apis::{KafkaRequest, SERVED};

use super::record_batches;

fn client_id() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("fuzz-seed"))
}

/// A Kafka request frame (without the length prefix) as a client writes it; `None` if the
/// request cannot be written at `version`.
pub fn kafka_frame(request: &KafkaRequest, version: i16, correlation_id: i32) -> Option<Vec<u8>> {
    let api = request.api_key();
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = client_id();
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api.request_header_version(version))
        .ok()?;
    request.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

fn topic_name(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// Requests with the content real clients send for the APIs whose bodies matter most.
fn realistic_kafka_requests() -> Vec<KafkaRequest> {
    let batch = Bytes::from(record_batches().swap_remove(4));
    let mut partition = produce_request::PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(batch);
    let mut topic = produce_request::TopicProduceData::default();
    topic.name = topic_name("orders");
    topic.partition_data = vec![partition];
    let mut produce = kafka_protocol::messages::ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 30_000;
    produce.topic_data = vec![topic];

    let mut metadata_topic = metadata_request::MetadataRequestTopic::default();
    metadata_topic.name = Some(topic_name("orders"));
    let mut metadata = kafka_protocol::messages::MetadataRequest::default();
    metadata.topics = Some(vec![metadata_topic]);
    metadata.allow_auto_topic_creation = true;

    let mut fetch_partition = fetch_request::FetchPartition::default();
    fetch_partition.partition = 0;
    fetch_partition.fetch_offset = 42;
    fetch_partition.partition_max_bytes = 1 << 20;
    let mut fetch_topic = fetch_request::FetchTopic::default();
    fetch_topic.topic = topic_name("orders");
    fetch_topic.partitions = vec![fetch_partition];
    let mut fetch = kafka_protocol::messages::FetchRequest::default();
    fetch.max_wait_ms = 500;
    fetch.min_bytes = 1;
    fetch.max_bytes = 50 << 20;
    fetch.topics = vec![fetch_topic];

    let subscription = ConsumerSubscription {
        topics: vec!["orders".into(), "payments".into()],
        owned: [("orders".to_string(), 0u32)].into_iter().collect(),
    };
    let mut protocol = join_group_request::JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = encode_subscription(&subscription);
    let mut join = kafka_protocol::messages::JoinGroupRequest::default();
    join.group_id = GroupId(StrBytes::from_static_str("billing"));
    join.session_timeout_ms = 10_000;
    join.rebalance_timeout_ms = 30_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![protocol];

    let mut assignment = sync_group_request::SyncGroupRequestAssignment::default();
    assignment.member_id = StrBytes::from_static_str("member-1");
    assignment.assignment = encode_assignment(&subscription.owned);
    let mut sync = kafka_protocol::messages::SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("billing"));
    sync.generation_id = 1;
    sync.member_id = StrBytes::from_static_str("member-1");
    sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
    sync.protocol_name = Some(StrBytes::from_static_str("range"));
    sync.assignments = vec![assignment];

    vec![
        KafkaRequest::Produce(produce),
        KafkaRequest::Metadata(metadata),
        KafkaRequest::Fetch(fetch),
        KafkaRequest::JoinGroup(join),
        KafkaRequest::SyncGroup(sync),
    ]
}

/// Every served API at every served version, empty, then the realistic requests at every
/// version of their API.
pub fn kafka_requests() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut correlation_id = 0;
    for served in SERVED {
        let Some(request) = KafkaRequest::default_for(served.api) else {
            continue;
        };
        for version in served.min..=served.max {
            correlation_id += 1;
            frames.extend(kafka_frame(&request, version, correlation_id));
        }
    }
    for request in realistic_kafka_requests() {
        let api: ApiKey = request.api_key();
        let Some(served) = SERVED.iter().find(|served| served.api == api) else {
            continue;
        };
        for version in served.min..=served.max {
            correlation_id += 1;
            frames.extend(kafka_frame(&request, version, correlation_id));
        }
    }
    frames
}

/// Subscriptions and assignments at every schema version, from the schema's encoder and the
/// node's.
pub fn consumer_protocol() -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    let mut owned = consumer_protocol_subscription::TopicPartition::default();
    owned.topic = topic_name("orders");
    owned.partitions = vec![0, 2];
    let mut subscription = ConsumerProtocolSubscription::default();
    subscription.topics = vec![
        StrBytes::from_static_str("orders"),
        StrBytes::from_static_str("payments"),
    ];
    subscription.user_data = Some(Bytes::from_static(b"sticky"));
    subscription.owned_partitions = vec![owned];
    subscription.generation_id = 3;
    subscription.rack_id = Some(StrBytes::from_static_str("rack-a"));
    let mut assigned = consumer_protocol_assignment::TopicPartition::default();
    assigned.topic = topic_name("orders");
    assigned.partitions = vec![0, 1, 2];
    let mut assignment = ConsumerProtocolAssignment::default();
    assignment.assigned_partitions = vec![assigned];
    assignment.user_data = Some(Bytes::from_static(b"cooperative"));
    for version in 0..=3i16 {
        for message in [
            encoded_with_version(&subscription, version),
            encoded_with_version(&assignment, version),
        ] {
            inputs.extend(message);
        }
    }
    let node_subscription = ConsumerSubscription {
        topics: vec!["orders".into()],
        owned: [("orders".to_string(), 1u32)].into_iter().collect(),
    };
    inputs.push(encode_subscription(&node_subscription).to_vec());
    inputs.push(encode_assignment(&node_subscription.owned).to_vec());
    inputs
}

fn encoded_with_version<T: Encodable>(message: &T, version: i16) -> Option<Vec<u8>> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&version.to_be_bytes());
    message.encode(&mut out, version).ok()?;
    Some(out.to_vec())
}

/// Start-up files as the node writes them, behind the selector byte `storage_files` reads:
/// a two-slot checkpoint, a leader-epoch file, a producer snapshot with two producers, and a
/// segment (header, then batches from [`record_batches`] stamped at consecutive offsets).
pub fn storage_files() -> Vec<Vec<u8>> {
    use ledge_node::storage::checkpoint::Checkpoint;
    use ledge_node::storage::leader_epoch::LeaderEpochCache;
    use ledge_node::storage::producers::ProducerStates;
    use ledge_node::storage::segment::segment_header;
    use ledge_protocol::{
        BatchHeader, set_base_offset, set_partition_leader_epoch, validate_batch,
    };

    let mut files = Vec::new();
    let checkpoint = |sequence| Checkpoint {
        sequence,
        log_start_offset: 10,
        recovery_segment: 0,
        recovery_position: 4_096,
    };
    files.push([&[0u8][..], &checkpoint(1).encode(), &checkpoint(2).encode()].concat());

    let mut epochs = LeaderEpochCache::new();
    for (epoch, start_offset) in [(0, 0), (3, 120), (4, 500)] {
        epochs
            .assign(epoch, start_offset)
            .expect("ascending epochs");
    }
    files.push([&[1u8][..], &epochs.encode()].concat());

    let mut producers = ProducerStates::default();
    let mut next_offset = 0;
    let mut segment = segment_header().to_vec();
    for batch in record_batches().into_iter().take(8) {
        let mut batch = batch;
        // Payloads of two batches are not one stored batch; keep single ones.
        if validate_batch(&batch).is_err() {
            continue;
        }
        // Stamped as a single node's log stamps them: its offsets, leader epoch 0.
        set_base_offset(&mut batch, next_offset).expect("a valid batch takes an offset");
        set_partition_leader_epoch(&mut batch, 0).expect("a valid batch takes an epoch");
        let stamped: BatchHeader = validate_batch(&batch).expect("stamped batch");
        producers.record(&stamped, next_offset, 100);
        next_offset = stamped.last_offset() + 1;
        segment.extend_from_slice(&batch);
    }
    files.push([&[2u8][..], &producers.encode_snapshot()].concat());
    files.push([&[3u8][..], &segment].concat());
    files.push([&[7u8][..], &segment].concat());
    files
}

/// SASL messages for the `sasl` target, for both SCRAM mechanisms: client-first in the shapes
/// clients send (gs2 flags `n` and `y`, an authzid, escaped names, extensions), client-final
/// answering `sasl::CLIENT_FIRST` (well formed, wrong proof), and PLAIN messages.
pub fn sasl() -> Vec<Vec<u8>> {
    use ledge_node::security::scram::ScramMechanism;

    let with = |selector: u8, message: &[u8]| [&[selector][..], message].concat();
    let mut seeds = Vec::new();
    for (index, mechanism) in ScramMechanism::ALL.into_iter().enumerate() {
        let base = 3 * index as u8;
        for first in [
            &b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"[..],
            b"y,,n=user,r=abc",
            b"n,a=a=2Cb=3D,n=a=2Cb=3D,r=abc",
            b"n,,n=alice,r=x,tokenauth=false,foo=bar",
        ] {
            seeds.push(with(base, first));
        }
        let server_first = crate::sasl::server_first(mechanism);
        let nonce = server_first
            .split(|&b| b == b',')
            .next()
            .and_then(|r| r.strip_prefix(b"r="))
            .unwrap()
            .to_vec();
        // Base64 of an all-zero proof of the digest's length.
        let zeros = match mechanism {
            ScramMechanism::Sha256 => format!("{}=", "A".repeat(43)),
            ScramMechanism::Sha512 => format!("{}==", "A".repeat(86)),
        };
        let nonce = String::from_utf8(nonce).unwrap();
        for last in [
            format!("c=biws,r={nonce},p={zeros}"),
            format!("c=biws,r={nonce},ext=value,p={zeros}"),
        ] {
            seeds.push(with(base + 1, last.as_bytes()));
        }
        seeds.push(with(base + 2, b"\0user\0pencil"));
        seeds.push(with(base + 2, "user\0user\0p\u{e9}ncil".as_bytes()));
    }
    seeds
}
