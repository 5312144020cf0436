//! Codec tests: header versions, ApiVersions' fallback, and bad frames of every served API
//! and version (truncated, random, huge lengths): an error, never a panic or an abort.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rand::{Rng, SeedableRng};

use super::*;
use crate::kafka::apis::KafkaRequest;

/// A request frame (without its length prefix) as a client encodes it.
pub(crate) fn request_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &KafkaRequest,
) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("test-client"));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

/// A default request body of `api`, which every version can encode.
pub(crate) fn default_request(api: ApiKey) -> KafkaRequest {
    match api {
        ApiKey::ApiVersions => KafkaRequest::ApiVersions(Default::default()),
        ApiKey::Metadata => KafkaRequest::Metadata(Default::default()),
        ApiKey::Produce => KafkaRequest::Produce(Default::default()),
        ApiKey::Fetch => KafkaRequest::Fetch(Default::default()),
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(Default::default()),
        ApiKey::OffsetForLeaderEpoch => KafkaRequest::OffsetForLeaderEpoch(Default::default()),
        ApiKey::DeleteRecords => KafkaRequest::DeleteRecords(Default::default()),
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(Default::default()),
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(Default::default()),
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(Default::default()),
        ApiKey::CreatePartitions => KafkaRequest::CreatePartitions(Default::default()),
        ApiKey::DescribeConfigs => KafkaRequest::DescribeConfigs(Default::default()),
        ApiKey::AlterConfigs => KafkaRequest::AlterConfigs(Default::default()),
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(Default::default())
        }
        ApiKey::DescribeCluster => KafkaRequest::DescribeCluster(Default::default()),
        ApiKey::DescribeTopicPartitions => {
            KafkaRequest::DescribeTopicPartitions(Default::default())
        }
        ApiKey::FindCoordinator => KafkaRequest::FindCoordinator(Default::default()),
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(Default::default()),
        ApiKey::SyncGroup => KafkaRequest::SyncGroup(Default::default()),
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(Default::default()),
        ApiKey::LeaveGroup => KafkaRequest::LeaveGroup(Default::default()),
        ApiKey::OffsetCommit => KafkaRequest::OffsetCommit(Default::default()),
        ApiKey::OffsetFetch => KafkaRequest::OffsetFetch(Default::default()),
        ApiKey::OffsetDelete => KafkaRequest::OffsetDelete(Default::default()),
        ApiKey::ListGroups => KafkaRequest::ListGroups(Default::default()),
        ApiKey::DescribeGroups => KafkaRequest::DescribeGroups(Default::default()),
        ApiKey::DeleteGroups => KafkaRequest::DeleteGroups(Default::default()),
        ApiKey::DescribeProducers => KafkaRequest::DescribeProducers(Default::default()),
        ApiKey::ConsumerGroupHeartbeat => KafkaRequest::ConsumerGroupHeartbeat(Default::default()),
        ApiKey::ConsumerGroupDescribe => KafkaRequest::ConsumerGroupDescribe(Default::default()),
        ApiKey::SaslHandshake => KafkaRequest::SaslHandshake(Default::default()),
        ApiKey::SaslAuthenticate => KafkaRequest::SaslAuthenticate(Default::default()),
        ApiKey::DescribeAcls => KafkaRequest::DescribeAcls(Default::default()),
        ApiKey::CreateAcls => KafkaRequest::CreateAcls(Default::default()),
        ApiKey::DeleteAcls => KafkaRequest::DeleteAcls(Default::default()),
        ApiKey::DescribeUserScramCredentials => {
            KafkaRequest::DescribeUserScramCredentials(Default::default())
        }
        ApiKey::DescribeClientQuotas => KafkaRequest::DescribeClientQuotas(Default::default()),
        ApiKey::AlterClientQuotas => KafkaRequest::AlterClientQuotas(Default::default()),
        ApiKey::AlterUserScramCredentials => {
            KafkaRequest::AlterUserScramCredentials(Default::default())
        }
        other => panic!("add {other:?} to default_request"),
    }
}

/// Splits a response frame into its correlation id and body, reading the header at the
/// version the client expects.
pub(crate) fn split_response(api: ApiKey, version: i16, frame: &Bytes) -> (i32, Bytes) {
    let length = i32::from_be_bytes(frame[..4].try_into().unwrap());
    assert_eq!(length as usize, frame.len() - 4, "length prefix");
    let mut body = frame.slice(4..);
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    (header.correlation_id, body)
}

#[test]
fn served_ranges_are_within_the_codec() {
    for served in SERVED {
        let valid = served.api.valid_versions();
        assert!(
            served.min >= valid.min && served.max <= valid.max,
            "{:?}: {}..={} outside {}..={}",
            served.api,
            served.min,
            served.max,
            valid.min,
            valid.max
        );
    }
}

#[test]
fn every_served_version_decodes_with_its_header() {
    for served in SERVED {
        for version in served.min..=served.max {
            let body = default_request(served.api);
            let frame = request_frame(served.api, version, 42, &body);
            let decoded = decode_request(frame)
                .unwrap_or_else(|error| panic!("{:?} v{version}: {error}", served.api));
            assert_eq!(decoded.api, served.api);
            assert_eq!(decoded.version, version);
            assert_eq!(decoded.header.correlation_id, 42);
            assert_eq!(
                decoded.header.client_id.as_deref(),
                Some("test-client"),
                "{:?} v{version}",
                served.api
            );
            assert_eq!(decoded.body, body);
        }
    }
}

#[test]
fn api_versions_response_header_is_always_v0() {
    for version in 0..=4 {
        let response = KafkaResponse::ApiVersions(crate::kafka::handlers::cluster::api_versions());
        let frame = encode_response(7, version, &response).unwrap();
        // Header v0: the correlation id, then the body at once (no tagged-field byte).
        let mut body = frame.slice(8..);
        let decoded = ApiVersionsResponse::decode(&mut body, version).unwrap();
        assert_eq!(i32::from_be_bytes(frame[4..8].try_into().unwrap()), 7);
        assert_eq!(decoded.error_code, 0);
        assert_eq!(decoded.api_keys.len(), SERVED.len());
        assert!(body.is_empty(), "v{version}: trailing bytes");
    }
}

#[test]
fn api_versions_at_an_unknown_version_is_answered_with_the_ranges() {
    // A client newer than the node asks with version 99 (KIP-511).
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(5);
    frame.put_slice(b"whatever follows is not read");
    let error = decode_request(frame.freeze()).unwrap_err();
    let correlation_id = error.api_versions_fallback().unwrap();
    let answer = api_versions_fallback(correlation_id).unwrap();
    let (correlation, mut body) = split_response(ApiKey::ApiVersions, 0, &answer);
    assert_eq!(correlation, 5);
    let decoded = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(decoded.error_code, 35, "UNSUPPORTED_VERSION");
    let metadata = decoded
        .api_keys
        .iter()
        .find(|entry| entry.api_key == ApiKey::Metadata as i16)
        .unwrap();
    assert_eq!((metadata.min_version, metadata.max_version), (0, 12));
}

#[test]
fn other_apis_at_unserved_versions_close_the_connection() {
    // Metadata 13 exists in Kafka 4.1 and is beyond the served 12.
    let frame = request_frame(ApiKey::Metadata, 13, 1, &default_request(ApiKey::Metadata));
    let error = decode_request(frame).unwrap_err();
    assert!(
        matches!(error, DecodeError::UnsupportedVersion { .. }),
        "{error}"
    );
    assert_eq!(error.api_versions_fallback(), None);
}

#[test]
fn unknown_and_unserved_apis_are_refused() {
    let mut frame = BytesMut::new();
    frame.put_i16(9999);
    frame.put_i16(0);
    frame.put_i32(1);
    assert_eq!(
        decode_request(frame.freeze()).unwrap_err(),
        DecodeError::UnknownApi { key: 9999 }
    );
    let mut frame = BytesMut::new();
    frame.put_i16(ApiKey::EndTxn as i16);
    frame.put_i16(0);
    frame.put_i32(1);
    assert_eq!(
        decode_request(frame.freeze()).unwrap_err(),
        DecodeError::NotServed {
            api: ApiKey::EndTxn
        }
    );
    assert_eq!(
        decode_request(Bytes::from_static(&[0, 3, 0])).unwrap_err(),
        DecodeError::Short { bytes: 3 }
    );
}

/// Every served API and version, truncated at every length: a decode error, no panic. (A
/// truncated frame cannot decode: kafka-protocol reads fields to their end.)
#[test]
fn truncated_frames_are_errors() {
    for served in SERVED {
        for version in served.min..=served.max {
            let frame = request_frame(served.api, version, 1, &default_request(served.api));
            for length in 0..frame.len() {
                let truncated = frame.slice(..length);
                assert!(
                    decode_request(truncated).is_err(),
                    "{:?} v{version} cut at {length}",
                    served.api
                );
            }
        }
    }
}

/// Random bytes after a valid API key and version: an error or a request, never a panic.
#[test]
fn random_bodies_never_panic() {
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(14);
    for served in SERVED {
        for version in served.min..=served.max {
            for _ in 0..200 {
                let length = random.random_range(0..256);
                let mut frame = BytesMut::new();
                frame.put_i16(served.api as i16);
                frame.put_i16(version);
                frame.put_i32(1);
                for _ in 0..length {
                    frame.put_u8(random.random());
                }
                let _ = decode_request(frame.freeze());
            }
        }
    }
}

/// Lengths that claim far more than the frame holds (arrays, strings, bytes; plain and
/// compact; and varints that never end): refused before anything that size is allocated.
/// Without the patch in vendor/kafka-protocol this test aborts the process.
#[test]
fn huge_lengths_are_refused() {
    let mut cases = Vec::new();
    for served in SERVED {
        for version in served.min..=served.max {
            let header_version = served.api.request_header_version(version);
            let mut header = RequestHeader::default();
            header.request_api_key = served.api as i16;
            header.request_api_version = version;
            header.correlation_id = 1;
            let mut prefix = BytesMut::new();
            header.encode(&mut prefix, header_version).unwrap();
            let prefix = prefix.freeze();
            // The body's first field, whatever it is, read as a length: i32::MAX as an array
            // count, a bytes length or two string-length bytes; a varint of 0xff bytes.
            for body in [
                vec![0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0],
                vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0],
                vec![0xff; 12],
                vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
                vec![0xff, 0xff, 0xff, 0xfe],
            ] {
                let mut frame = BytesMut::from(&prefix[..]);
                frame.put_slice(&body);
                cases.push((served.api, version, frame.freeze()));
            }
        }
    }
    for (api, version, frame) in cases {
        let _ = decode_request(frame).map(|request| {
            // Whatever decoded must have come from these few bytes.
            assert_eq!(request.api, api, "v{version}");
        });
    }
}

#[test]
fn a_metadata_request_claiming_two_billion_topics_is_an_error() {
    let mut frame = BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Metadata as i16;
    header.request_api_version = 1;
    header.encode(&mut frame, 1).unwrap();
    frame.put_i32(i32::MAX);
    let error = decode_request(frame.freeze()).unwrap_err();
    assert!(matches!(error, DecodeError::Body { .. }), "{error}");
}

/// Flexible versions (request header v2): a tagged field whose size runs past the frame,
/// and a tagged-field count far beyond it, are errors.
#[test]
fn bad_tagged_fields_are_errors() {
    let prefix = |frame: &mut BytesMut| {
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(12);
        frame.put_i32(1);
        frame.put_i16(-1); // null client id
    };
    // One tagged field (tag 0) claiming 100 bytes, with 2 present.
    let mut frame = BytesMut::new();
    prefix(&mut frame);
    frame.put_slice(&[1, 0, 100, 0xaa, 0xbb]);
    assert!(matches!(
        decode_request(frame.freeze()),
        Err(DecodeError::Header { .. })
    ));
    // 2^32 - 1 tagged fields announced, none present.
    let mut frame = BytesMut::new();
    prefix(&mut frame);
    frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        decode_request(frame.freeze()),
        Err(DecodeError::Header { .. })
    ));
    // A valid header, then a body whose tagged section claims more than is left.
    let mut frame = BytesMut::new();
    prefix(&mut frame);
    frame.put_u8(0); // header: no tagged fields
    frame.put_u8(1); // topics: compact array of 0 entries
    frame.put_u8(0); // allow_auto_topic_creation
    frame.put_u8(0); // include_topic_authorized_operations
    frame.put_slice(&[1, 5, 200]); // one tagged field, tag 5, 200 bytes: absent
    assert!(matches!(
        decode_request(frame.freeze()),
        Err(DecodeError::Body { .. })
    ));
}
