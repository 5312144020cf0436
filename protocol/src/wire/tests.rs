//! Frame and message codec tests: round trips, frame-level errors, hostile input.

use bytes::{BufMut, Bytes};
use rand::{Rng, SeedableRng};

use super::*;
use crate::{OnError, PluginKind};

fn samples() -> Vec<Request> {
    let binding = AclBindingWire {
        resource_type: 2,
        resource_name: "orders".into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: 3,
        permission: 3,
    };
    let filter = AclFilterWire {
        resource_type: 1,
        resource_name: Some("orders".into()),
        pattern_type: 2,
        principal: None,
        host: None,
        operation: 1,
        permission: 1,
    };
    vec![
        Request::AlterUserScramCredentials(AlterUserScramCredentialsRequest {
            deletions: vec![ScramDeletion {
                name: "bob".into(),
                mechanism: "SCRAM-SHA-512".into(),
            }],
            upsertions: vec![ScramUpsertion {
                name: "alice".into(),
                mechanism: "SCRAM-SHA-256".into(),
                iterations: 8192,
                salt: Bytes::from_static(b"salt"),
                salted_password: Bytes::from_static(&[7; 32]),
            }],
        }),
        Request::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest {
            users: vec!["alice".into()],
        }),
        Request::CreateAcls(CreateAclsRequest {
            bindings: vec![binding],
        }),
        Request::DescribeAcls(DescribeAclsRequest {
            filter: filter.clone(),
        }),
        Request::DeleteAcls(DeleteAclsRequest {
            filters: vec![filter],
        }),
        Request::AlterClientQuotas(AlterClientQuotasRequest {
            entries: vec![
                ClientQuotaAlteration {
                    user: Some("alice".into()),
                    ops: vec![ClientQuotaOp {
                        key: "producer_byte_rate".into(),
                        value: 1_048_576,
                        remove: false,
                    }],
                },
                ClientQuotaAlteration {
                    user: None,
                    ops: vec![ClientQuotaOp {
                        key: "consumer_byte_rate".into(),
                        value: 0,
                        remove: true,
                    }],
                },
            ],
            validate_only: true,
        }),
        Request::DescribeClientQuotas(DescribeClientQuotasRequest {
            users: vec!["alice".into()],
        }),
        Request::Snapshot(SnapshotRequest {
            out_dir: "/var/backups/ledge/2026-12-07".into(),
        }),
        Request::SnapshotProgress(SnapshotProgressRequest {
            out_dir: "/var/backups/ledge/2026-12-07".into(),
        }),
        Request::TableGet(TableGetRequest {
            name: "counts".into(),
            key: Bytes::from_static(b"42"),
        }),
        Request::TableScan(TableScanRequest {
            name: "counts".into(),
            prefix: Bytes::from_static(b"4"),
            limit: 10,
        }),
        Request::ApiVersions(ApiVersionsRequest {
            client_software_name: "ledge-cli".into(),
            client_software_version: "0.1".into(),
        }),
        Request::Metadata(MetadataRequest { topics: None }),
        Request::Metadata(MetadataRequest {
            topics: Some(vec!["orders".into(), "é-topic".into()]),
        }),
        Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "orders".into(),
                partitions: 3,
                replication_factor: Some(3),
                configs: vec![ConfigEntry {
                    name: "min.insync.replicas".into(),
                    value: "2".into(),
                }],
            }],
            validate_only: true,
        }),
        Request::CreateTopics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "defaults".into(),
                partitions: 1,
                replication_factor: None,
                configs: Vec::new(),
            }],
            validate_only: false,
        }),
        Request::DescribeCluster(DescribeClusterRequest {}),
        Request::SaslHandshake(SaslHandshakeRequest {
            mechanism: "SCRAM-SHA-512".into(),
        }),
        Request::SaslAuthenticate(SaslAuthenticateRequest {
            auth_bytes: Bytes::from_static(b"n,,n=alice,r=abc"),
        }),
        Request::CreatePartitions(CreatePartitionsRequest {
            topics: vec![
                CreatePartitionsTopic {
                    name: "orders".into(),
                    count: 6,
                    assignments: Vec::new(),
                },
                CreatePartitionsTopic {
                    name: "payments".into(),
                    count: 3,
                    assignments: vec![vec![1, 2, 3], vec![2, 3, 1]],
                },
            ],
            validate_only: true,
        }),
        Request::FindCoordinator(FindCoordinatorRequest {
            group_id: "billing".into(),
        }),
        Request::DeleteTopics(DeleteTopicsRequest {
            names: vec!["a".into(), "b".into()],
        }),
        Request::DescribeConfigs(DescribeConfigsRequest {
            topics: vec!["orders".into()],
        }),
        Request::AlterConfigs(AlterConfigsRequest {
            topics: vec![AlterTopicConfigs {
                name: "orders".into(),
                set: vec![ConfigEntry {
                    name: "segment.bytes".into(),
                    value: "1024".into(),
                }],
                delete: vec!["retention.ms".into()],
            }],
            validate_only: false,
        }),
        Request::InitProducerId(InitProducerIdRequest {
            transactional_id: None,
        }),
        Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 30_000,
            topics: vec![ProduceTopic {
                name: "orders".into(),
                partitions: vec![ProducePartition {
                    partition: 2,
                    current_leader_epoch: Some(4),
                    records: Bytes::from_static(b"batch bytes"),
                }],
            }],
        }),
        Request::Fetch(FetchRequest {
            plugin: None,
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "orders".into(),
                partitions: vec![FetchPartition {
                    partition: 0,
                    current_leader_epoch: None,
                    fetch_offset: 42,
                    partition_max_bytes: 1 << 20,
                }],
            }],
        }),
        Request::ListOffsets(ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                name: "orders".into(),
                partitions: vec![
                    ListOffsetsPartition {
                        partition: 0,
                        spec: OffsetSpec::Earliest,
                    },
                    ListOffsetsPartition {
                        partition: 1,
                        spec: OffsetSpec::Latest,
                    },
                    ListOffsetsPartition {
                        partition: 2,
                        spec: OffsetSpec::Timestamp(1_700_000_000_000),
                    },
                ],
            }],
        }),
        Request::UploadModule(UploadModuleRequest {
            name: "vip".into(),
            kind: PluginKind::Partitioner,
            module: Bytes::from_static(b"\0asm"),
            params: vec![PluginParam {
                key: "null_key_partition".into(),
                value: "0".into(),
            }],
        }),
        Request::DeployTransform(DeployTransformRequest {
            name: "big".into(),
            kind: PluginKind::FlatMap,
            module: Bytes::from_static(b"\0asm"),
            input: "orders".into(),
            output: String::new(),
            params: Vec::new(),
            on_error: OnError::Stop,
            dead_letter_topic: String::new(),
            join_table: String::new(),
            join_with: "customers".into(),
            join_before_ms: 300_000,
            join_after_ms: 60_000,
            join_grace_ms: 1_000,
            window: None,
        }),
        Request::DeployTransform(DeployTransformRequest {
            name: "per-minute".into(),
            kind: PluginKind::Aggregate,
            module: Bytes::from_static(b"\0asm"),
            input: "orders".into(),
            output: String::new(),
            params: Vec::new(),
            on_error: OnError::DeadLetter,
            dead_letter_topic: String::new(),
            join_table: String::new(),
            join_with: String::new(),
            join_before_ms: 0,
            join_after_ms: 0,
            join_grace_ms: 0,
            window: Some(TransformWindow {
                kind: "hopping".into(),
                size_ms: Some(60_000),
                advance_ms: Some(10_000),
                gap_ms: None,
                grace_ms: Some(-1),
                retention_ms: Some(3_600_000),
                emit: "suppress".into(),
            }),
        }),
    ]
}

/// An UploadModule request frame whose kind byte is `kind_number`.
fn upload_module_frame(kind_number: u8) -> Vec<u8> {
    let request = Request::UploadModule(UploadModuleRequest {
        name: "m".into(),
        kind: PluginKind::Map,
        module: Bytes::new(),
        params: Vec::new(),
    });
    let mut frame = encode_request(5, "c", &request).to_vec();
    // The body ends with the kind byte, the module (u32 length 0) and the params (u32 0).
    let kind_at = frame.len() - 4 - 4 - 1;
    assert_eq!(frame[kind_at], PluginKind::Map.number());
    frame[kind_at] = kind_number;
    frame
}

fn response_samples() -> Vec<Response> {
    vec![
        Response::Snapshot(SnapshotResponse {
            error: ErrorCode::None,
            message: String::new(),
            node_id: 3,
            partitions: vec![SnapshotPartition {
                topic: "orders".into(),
                partition: 1,
                log_start_offset: 5,
                end_offset: 1_000_000_000_000,
            }],
            offline_partitions: 1,
            files_linked: 12,
            files_copied: 4,
        }),
        Response::SnapshotProgress(SnapshotProgressResponse {
            error: ErrorCode::None,
            message: String::new(),
            running: true,
            partitions_done: 2,
            partitions_total: 5,
            bytes_done: 1 << 33,
        }),
        Response::TableGet(TableGetResponse {
            error: ErrorCode::None,
            message: String::new(),
            found: true,
            value: Bytes::from_static(b"100"),
            windows: Vec::new(),
        }),
        Response::TableGet(TableGetResponse {
            error: ErrorCode::None,
            message: String::new(),
            found: false,
            value: Bytes::new(),
            windows: vec![TableEntry {
                key: Bytes::from_static(b"42"),
                value: Bytes::from_static(b"12.5"),
                partition: 1,
                window: Some(TableWindow {
                    start_ms: -60_000,
                    end_ms: 0,
                }),
            }],
        }),
        Response::TableScan(TableScanResponse {
            error: ErrorCode::None,
            message: String::new(),
            entries: vec![TableEntry {
                key: Bytes::from_static(b"42"),
                value: Bytes::from_static(b"3"),
                partition: 2,
                window: None,
            }],
            truncated: true,
        }),
        Response::SaslHandshake(SaslHandshakeResponse {
            error: ErrorCode::UnsupportedSaslMechanism,
            message: "not enabled".into(),
            mechanisms: vec!["SCRAM-SHA-256".into(), "PLAIN".into()],
        }),
        Response::SaslAuthenticate(SaslAuthenticateResponse {
            error: ErrorCode::None,
            message: String::new(),
            auth_bytes: Bytes::from_static(b"v=abc"),
            session_lifetime_ms: 0,
        }),
        Response::ApiVersions(ApiVersionsResponse {
            apis: supported_api_versions(),
            node_version: "0.1.0".into(),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
        }),
        Response::Metadata(MetadataResponse {
            node_id: 1,
            nodes: vec![
                NodeMetadata {
                    node_id: 1,
                    address: "127.0.0.1:9101".into(),
                },
                NodeMetadata {
                    node_id: 2,
                    address: "[::1]:9102".into(),
                },
            ],
            controller_id: Some(2),
            topics: vec![TopicMetadata {
                partitioner_module: String::new(),
                topic_id: "000000000000000100000000000000ab".into(),
                message: "why".into(),
                name: "orders".into(),
                error: ErrorCode::None,
                internal: false,
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    error: ErrorCode::PartitionOffline,
                    leader: Some(2),
                    leader_epoch: 7,
                    replicas: vec![2, 1, 3],
                    isr: vec![2, 1],
                    log_start_offset: 3,
                    high_watermark: 10,
                    size_bytes: 4096,
                    segment_count: 2,
                    dirty_ratio_per_mille: 500,
                    last_compaction_ms: Some(1_700_000_000_000),
                    damage: "segment orders-0/00000000000000000000.log is corrupt at byte 16"
                        .into(),
                    record_count: 9,
                }],
            }],
        }),
        Response::Produce(ProduceResponse {
            throttle_time_ms: 1_250,
            topics: vec![ProduceTopicResponse {
                name: "orders".into(),
                partitions: vec![ProducePartitionResponse {
                    routed: None,
                    partition: 0,
                    error: ErrorCode::MessageTooLarge,
                    message: "too big".into(),
                    base_offset: -1,
                    log_append_time_ms: -1,
                    log_start_offset: 0,
                }],
            }],
        }),
        Response::Fetch(FetchResponse {
            throttle_time_ms: 3_000,
            error: ErrorCode::None,
            message: String::new(),
            topics: vec![FetchTopicResponse {
                name: "orders".into(),
                partitions: vec![FetchPartitionResponse {
                    message: String::new(),
                    partition: 0,
                    error: ErrorCode::None,
                    high_watermark: 5,
                    log_start_offset: 0,
                    records: Bytes::from_static(b"records"),
                }],
            }],
        }),
        Response::ListOffsets(ListOffsetsResponse {
            topics: vec![ListOffsetsTopicResponse {
                name: "t".into(),
                partitions: vec![ListOffsetsPartitionResponse {
                    partition: 0,
                    error: ErrorCode::None,
                    offset: Some(7),
                    timestamp: None,
                    message: "why".into(),
                }],
            }],
        }),
        Response::InitProducerId(InitProducerIdResponse {
            error: ErrorCode::None,
            producer_id: 1000,
            producer_epoch: 0,
        }),
        Response::DescribeTransforms(DescribeTransformsResponse {
            transforms: vec![TransformDescription {
                name: "keep".into(),
                kind: PluginKind::Filter,
                input: "raw".into(),
                output: "kept".into(),
                state: "running".into(),
                version: 2,
                records_in: 7,
                positions: vec![PartitionOffset {
                    partition: 1,
                    offset: 5,
                }],
                partitions: vec![TransformPartitionStatus {
                    partition: 1,
                    node_id: 3,
                    position: 5,
                    lag: 2,
                    records_in: 7,
                    records_out: 6,
                    records_dead: 1,
                    busy_us: 900,
                }],
                window: Some(TransformWindow {
                    kind: "tumbling".into(),
                    size_ms: Some(60_000),
                    ..TransformWindow::default()
                }),
                windows_open: 3,
                records_late: 1,
                ..TransformDescription::default()
            }],
        }),
        Response::CreatePartitions(CreatePartitionsResponse {
            topics: vec![
                TopicResult {
                    name: "orders".into(),
                    error: ErrorCode::None,
                    message: String::new(),
                },
                TopicResult {
                    name: "payments".into(),
                    error: ErrorCode::InvalidPartitions,
                    message: "cannot shrink".into(),
                },
            ],
        }),
        Response::FindCoordinator(FindCoordinatorResponse {
            error: ErrorCode::None,
            message: String::new(),
            node_id: 2,
            address: "127.0.0.1:9102".into(),
        }),
        Response::DescribeCluster(DescribeClusterResponse {
            error: ErrorCode::None,
            message: String::new(),
            cluster_id: "c-1".into(),
            controller_id: Some(1),
            nodes: vec![ClusterNode {
                node_id: 1,
                address: "127.0.0.1:9101".into(),
                alive: true,
                node_epoch: 42,
            }],
            under_replicated: vec![ClusterPartition {
                topic: "orders".into(),
                partition: 1,
                leader: Some(1),
                replicas: vec![1, 2, 3],
                isr: vec![1],
            }],
            offline: vec![ClusterPartition {
                topic: "orders".into(),
                partition: 2,
                leader: None,
                replicas: vec![2, 3],
                isr: vec![],
            }],
        }),
    ]
}

// Goal: every request and response survives encode then decode unchanged.
#[test]
fn requests_and_responses_round_trip() {
    for (number, request) in samples().into_iter().enumerate() {
        let frame = encode_request(number as u32, "test", &request);
        let (header, decoded) = decode_request(frame).unwrap();
        assert_eq!(header.correlation_id, number as u32);
        assert_eq!(header.client_id, "test");
        assert_eq!(decoded, request);
    }
    for response in response_samples() {
        let frame = encode_response(9, &response);
        let (header, decoded) = decode_response(response.api_key(), frame).unwrap();
        assert_eq!(header.correlation_id, 9);
        assert_eq!(decoded, Some(response));
    }
}

// Goal: record batches are slices of the frame, not copies (no copy on the hot path).
#[test]
fn produce_records_are_zero_copy_slices_of_the_frame() {
    let request = samples()
        .into_iter()
        .find(|request| request.api_key() == ApiKey::Produce)
        .unwrap();
    let frame = encode_request(1, "c", &request);
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let (_, Request::Produce(produce)) = decode_request(frame.clone()).unwrap() else {
        panic!("not produce")
    };
    let records = &produce.topics[0].partitions[0].records;
    assert!(range.contains(&(records.as_ptr() as usize)));
}

// Goal: unknown APIs, unsupported versions, malformed bodies and trailing bytes get a
// frame error that keeps the correlation id, so the node can answer.
#[test]
fn frame_errors_carry_the_header() {
    let mut frame = encode_request(77, "c", &samples()[1]).to_vec();
    frame[0..2].copy_from_slice(&999u16.to_be_bytes());
    let error = decode_request(Bytes::from(frame.clone())).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnknownApiKey);
    assert_eq!(error.header.unwrap().correlation_id, 77);

    frame[0..2].copy_from_slice(&(ApiKey::Metadata as u16).to_be_bytes());
    frame[2..4].copy_from_slice(&5u16.to_be_bytes());
    let error = decode_request(Bytes::from(frame.clone())).unwrap_err();
    assert_eq!(error.code, ErrorCode::UnsupportedVersion);
    assert!(error.message.contains("version 5"));

    frame[2..4].copy_from_slice(&0u16.to_be_bytes());
    frame.push(0);
    let error = decode_request(Bytes::from(frame)).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert!(
        error.message.contains("unexpected bytes"),
        "{}",
        error.message
    );

    assert_eq!(
        decode_request(Bytes::from_static(b"\x00"))
            .unwrap_err()
            .header,
        None
    );
}

// Goal: a count field cannot make the decoder allocate beyond the frame.
#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut frame = FrameWriter::new();
    RequestHeader {
        api_key: ApiKey::DeleteTopics as u16,
        api_version: 0,
        correlation_id: 1,
        client_id: String::new(),
    }
    .encode(&mut frame);
    frame.extend_from_slice(&u32::MAX.to_be_bytes());
    let error = decode_request(frame.into_bytes()).unwrap_err();
    assert!(
        error.message.contains("claims 4294967295 elements"),
        "{}",
        error.message
    );
}

// Goal: invalid enum values are errors (acks 7, offset spec -5).
#[test]
fn invalid_enum_values_are_refused() {
    let Some(Request::Produce(mut produce)) = samples()
        .into_iter()
        .find(|request| request.api_key() == ApiKey::Produce)
    else {
        panic!()
    };
    produce.acks = Acks::All;
    let mut frame = encode_request(1, "", &Request::Produce(produce)).to_vec();
    // After acks: timeout, topic count, name, partition count, partition, the leader epoch
    // (`Some(4)`: 1 + 4 bytes), the records' length and bytes.
    let acks_at = frame.len() - (4 + 4 + 2 + 6 + 4 + 4 + 5 + 4 + 11) - 1;
    assert_eq!(frame[acks_at], 0xff);
    frame[acks_at] = 7;
    let error = decode_request(Bytes::from(frame)).unwrap_err();
    assert!(
        error.message.contains("invalid value 7 for acks"),
        "{}",
        error.message
    );
}

// Goal: a plug-in kind travels as its stable number, and a number this build does not know
// fails the request with InvalidRequest, keeping the correlation id, with a message that names
// the field and the number.
#[test]
fn plugin_kinds_travel_as_numbers_and_unknown_ones_are_refused() {
    for kind in PluginKind::ALL {
        let frame = upload_module_frame(kind.number());
        let (_, Request::UploadModule(upload)) = decode_request(Bytes::from(frame)).unwrap() else {
            panic!("not UploadModule")
        };
        assert_eq!(upload.kind, kind);
    }
    let error = decode_request(Bytes::from(upload_module_frame(7))).unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidRequest);
    assert_eq!(error.header.unwrap().correlation_id, 5);
    assert!(
        error.message.contains("invalid value 7 for plug-in kind"),
        "{}",
        error.message
    );
    // The same in a response: a ListModules answer from a newer node.
    let response = Response::ListModules(ListModulesResponse {
        modules: vec![ModuleDescription {
            name: "m".into(),
            kind: PluginKind::Filter,
            ..ModuleDescription::default()
        }],
    });
    let mut frame = encode_response(3, &response).to_vec();
    // After the name come the kind, the hash (u16 0), size u64, params u32, uploaded i64.
    let kind_at = frame.len() - 8 - 4 - 8 - 2 - 1;
    assert_eq!(frame[kind_at], PluginKind::Filter.number());
    frame[kind_at] = 200;
    let error = decode_response(ApiKey::ListModules, Bytes::from(frame)).unwrap_err();
    assert_eq!(
        error,
        WireError::InvalidValue {
            field: "plug-in kind",
            value: 200
        }
    );
}

// Goal: no byte string makes a decoder panic: random frames, truncations and single-byte
// mutations of every sample.
#[test]
fn decoders_never_panic_on_hostile_frames() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut frames: Vec<Vec<u8>> = samples()
        .iter()
        .map(|request| encode_request(1, "x", request).to_vec())
        .collect();
    frames.extend(
        response_samples()
            .iter()
            .map(|response| encode_response(1, response).to_vec()),
    );
    for frame in &frames {
        for cut in 0..frame.len() {
            let _ = decode_request(Bytes::copy_from_slice(&frame[..cut]));
            for key in ApiKey::ALL {
                let _ = decode_response(*key, Bytes::copy_from_slice(&frame[..cut]));
            }
        }
        for _ in 0..300 {
            let mut mutated = frame.clone();
            let at = rng.random_range(0..mutated.len());
            mutated[at] = rng.random();
            let _ = decode_request(Bytes::from(mutated.clone()));
            let _ = decode_response(
                ApiKey::ALL[rng.random_range(0..ApiKey::ALL.len())],
                Bytes::from(mutated),
            );
        }
    }
    for _ in 0..3000 {
        let len = rng.random_range(0..200);
        let random: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let _ = decode_request(Bytes::from(random.clone()));
        let _ = decode_response(
            ApiKey::ALL[rng.random_range(0..ApiKey::ALL.len())],
            Bytes::from(random),
        );
    }
}

#[test]
fn error_codes_are_stable_and_unknown_codes_degrade() {
    assert_eq!(ErrorCode::from_u16(3), ErrorCode::UnknownTopicOrPartition);
    assert_eq!(ErrorCode::from_u16(60_000), ErrorCode::UnknownServerError);
    assert_eq!(ErrorCode::MessageTooLarge as u16, 8);
    assert!(ErrorCode::RequestTimedOut.is_retriable());
    assert!(!ErrorCode::InvalidTopic.is_retriable());
    assert_eq!(ErrorCode::CorruptMessage.to_string(), "CorruptMessage");
    // The SASL codes docs/PROTOCOL.md publishes; none is worth retrying unchanged.
    for (code, number) in [
        (ErrorCode::UnsupportedSaslMechanism, 71),
        (ErrorCode::AuthenticationRequired, 75),
        (ErrorCode::SaslAuthenticationFailed, 76),
        (ErrorCode::IllegalSaslState, 77),
    ] {
        assert_eq!(code as u16, number);
        assert_eq!(ErrorCode::from_u16(number), code);
        assert!(!code.is_retriable());
    }
    // The authorization codes (issue 15): Kafka's meanings, never retriable, recognised as
    // authorization failures.
    for (code, number) in [
        (ErrorCode::TopicAuthorizationFailed, 78),
        (ErrorCode::GroupAuthorizationFailed, 79),
        (ErrorCode::ClusterAuthorizationFailed, 80),
        (ErrorCode::TransactionalIdAuthorizationFailed, 81),
        (ErrorCode::ResourceAuthorizationFailed, 82),
    ] {
        assert_eq!(code as u16, number);
        assert_eq!(ErrorCode::from_u16(number), code);
        assert!(!code.is_retriable());
        assert!(code.is_authorization_failure());
    }
    assert!(!ErrorCode::AuthenticationRequired.is_authorization_failure());
    assert_eq!(ErrorCode::TransformNotFound as u16, 83);
    assert_eq!(ErrorCode::from_u16(83), ErrorCode::TransformNotFound);
    assert!(!ErrorCode::TransformNotFound.is_retriable());
    assert_eq!(ApiKey::from_u16(45), Some(ApiKey::SaslHandshake));
    assert_eq!(ApiKey::from_u16(46), Some(ApiKey::SaslAuthenticate));
}

// Goal: the replication codes keep the numbers docs/PROTOCOL.md publishes, and the ones a
// client answers by refreshing metadata and retrying are retriable.
#[test]
fn replication_error_codes_are_stable() {
    let expected = [
        (44, ErrorCode::NotLeaderOrFollower, true),
        (45, ErrorCode::FencedLeaderEpoch, true),
        (46, ErrorCode::UnknownLeaderEpoch, true),
        (47, ErrorCode::NotEnoughReplicas, true),
        (48, ErrorCode::NotEnoughReplicasAfterAppend, true),
        (49, ErrorCode::InvalidReplicationFactor, false),
        (50, ErrorCode::StaleNodeEpoch, false),
        (51, ErrorCode::NotController, true),
        (64, ErrorCode::LeaderNotAvailable, true),
        (65, ErrorCode::OffsetNotAvailable, true),
    ];
    for (number, code, retriable) in expected {
        assert_eq!(code as u16, number, "{code}");
        assert_eq!(ErrorCode::from_u16(number), code);
        assert_eq!(code.is_retriable(), retriable, "{code}");
    }
}

// Goal: an older client's Metadata body (no node list) is refused as malformed rather than
// misread: the fields are not optional, so a truncated answer never decodes.
#[test]
fn metadata_without_the_cluster_fields_is_refused() {
    let mut out = FrameWriter::new();
    ResponseHeader {
        correlation_id: 1,
        error: ErrorCode::None,
        message: String::new(),
    }
    .encode(&mut out);
    // node id, then (as before issue 13) the topic count straight away.
    out.put_u32(1);
    out.put_u32(0);
    assert!(decode_response(ApiKey::Metadata, out.into_bytes()).is_err());
}

// Goal: the throttle time leads the Produce and Fetch bodies as a big-endian u32 (the
// layout PROTOCOL.md gives), and a body without it (the layout before) is refused rather
// than misread.
#[test]
fn produce_and_fetch_bodies_start_with_the_throttle_time() {
    let header_bytes = encode_error_response(5, ErrorCode::None, "").len();
    let produce = Response::Produce(ProduceResponse {
        throttle_time_ms: 0x0102_0304,
        topics: Vec::new(),
    });
    let frame = encode_response(5, &produce);
    assert_eq!(&frame[header_bytes..header_bytes + 4], &[1, 2, 3, 4]);
    let fetch = Response::Fetch(FetchResponse {
        throttle_time_ms: 0x0A0B_0C0D,
        ..FetchResponse::default()
    });
    let frame = encode_response(5, &fetch);
    assert_eq!(&frame[header_bytes..header_bytes + 4], &[10, 11, 12, 13]);
    // A Produce body as it was before the field: the topic count alone.
    let mut out = FrameWriter::new();
    ResponseHeader {
        correlation_id: 5,
        error: ErrorCode::None,
        message: String::new(),
    }
    .encode(&mut out);
    out.put_u32(0);
    assert!(decode_response(ApiKey::Produce, out.into_bytes()).is_err());
}

// Goal: large payloads are referenced by the frame, not copied, and the chunks concatenate
// to exactly the contiguous encoding.
#[test]
fn large_payloads_are_sent_as_their_own_chunks() {
    let records = Bytes::from(vec![7u8; 100_000]);
    let response = Response::Fetch(FetchResponse {
        throttle_time_ms: 0,
        error: ErrorCode::None,
        message: String::new(),
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![
                FetchPartitionResponse {
                    message: String::new(),
                    partition: 0,
                    error: ErrorCode::None,
                    high_watermark: 1,
                    log_start_offset: 0,
                    records: records.clone(),
                },
                FetchPartitionResponse {
                    message: String::new(),
                    partition: 1,
                    error: ErrorCode::None,
                    high_watermark: 1,
                    log_start_offset: 0,
                    records: Bytes::from_static(b"small"),
                },
            ],
        }],
    });
    let chunks = encode_response_frame(3, &response).into_chunks();
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk.as_ptr() == records.as_ptr()),
        "the batch bytes are referenced"
    );
    let joined: Vec<u8> = chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    assert_eq!(joined, encode_response(3, &response).to_vec());
    let (_, decoded) = decode_response(ApiKey::Fetch, Bytes::from(joined)).unwrap();
    assert_eq!(decoded, Some(response));
}

// Goal: a CreatePartitions body that lies is refused with InvalidRequest, keeping the
// correlation id: an assignment list claiming more entries than the frame holds (no
// allocation), a body cut inside an assignment, and trailing bytes after the flag.
#[test]
fn bad_create_partitions_bodies_are_refused() {
    let request = Request::CreatePartitions(CreatePartitionsRequest {
        topics: vec![CreatePartitionsTopic {
            name: "t".into(),
            count: 3,
            assignments: vec![vec![1, 2]],
        }],
        validate_only: false,
    });
    let frame = encode_request(41, "c", &request).to_vec();
    // The body ends with: assignments count (u32 1), one list (u32 2, u32 1, u32 2), the
    // validate_only flag.
    let outer_count_at = frame.len() - 1 - 4 * 3 - 4;
    assert_eq!(
        frame[outer_count_at..outer_count_at + 4],
        1u32.to_be_bytes()
    );
    let mut claims_many = frame.clone();
    claims_many[outer_count_at..outer_count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut cut = frame.clone();
    cut.truncate(frame.len() - 3);
    let mut trailing = frame.clone();
    trailing.push(0);
    for (what, bytes) in [
        ("too many", claims_many),
        ("cut", cut),
        ("trailing", trailing),
    ] {
        let error = decode_request(Bytes::from(bytes)).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRequest, "{what}");
        assert_eq!(error.header.unwrap().correlation_id, 41, "{what}");
        assert!(
            error.message.starts_with("CreatePartitions request"),
            "{what}: {}",
            error.message
        );
    }
    let mut bad_flag = frame;
    let last = bad_flag.len() - 1;
    bad_flag[last] = 2;
    assert_eq!(
        decode_request(Bytes::from(bad_flag)).unwrap_err().code,
        ErrorCode::InvalidRequest
    );
}
