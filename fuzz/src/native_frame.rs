//! `native_frame`: the native protocol's decoders in `ledge-protocol`, on arbitrary bytes:
//! [`wire::decode_request`] (what the node's QUIC listener runs on every stream),
//! [`wire::decode_response`] (what the client runs on the node's answers; the API it expects is
//! the input's first byte) and the peer protocol's [`ReplicaFetchRequest::decode_bounded`] /
//! [`ReplicaFetchResponse::decode_bounded`] (what a node runs on another node's frames).
//!
//! Oracles:
//! - A decoded request encodes again to exactly the input bytes (the encoding is canonical:
//!   every field has one form and the frame has no trailing bytes), with the header's API key
//!   matching the body.
//! - A refused request whose header decoded is answered: the error response encodes and the
//!   client reads the same code back.
//! - A decoded response encodes again and decodes to the same value (not the same bytes: an
//!   unknown error code reads as `Unknown`).
//! - A decoded replica fetch request encodes again to exactly the bytes it was read from, a
//!   response to the same value; neither holds more partitions than its limit.

use bytes::Bytes;
use ledge_protocol::wire::{
    self, ApiKey, ErrorCode,
    replica::{ReplicaFetchLimits, ReplicaFetchRequest, ReplicaFetchResponse},
};

/// The replica-fetch partition limit of the fuzz run, small so the limit is reachable from
/// short inputs.
const FUZZ_REPLICA_FETCH_LIMITS: ReplicaFetchLimits = ReplicaFetchLimits { partitions_max: 8 };

/// Runs one input.
pub fn run(data: &[u8]) {
    check_request(data);
    if let Some((&selector, body)) = data.split_first() {
        let api = ApiKey::ALL[usize::from(selector) % ApiKey::ALL.len()];
        check_response(api, body);
    }
    check_replica_fetch(data);
}

fn check_request(data: &[u8]) {
    match wire::decode_request(Bytes::copy_from_slice(data)) {
        Ok((header, request)) => {
            assert_eq!(header.api_key, request.api_key() as u16);
            assert_eq!(header.api_version, wire::API_VERSION);
            let encoded = wire::encode_request(header.correlation_id, &header.client_id, &request);
            assert_eq!(
                &encoded[..],
                data,
                "request encoding differs from the input"
            );
        }
        Err(error) => {
            let _ = error.to_string();
            assert_ne!(
                error.code,
                ErrorCode::None,
                "a refused request answers with no error"
            );
            if let Some(header) = error.header {
                let answer =
                    wire::encode_error_response(header.correlation_id, error.code, &error.message);
                let api = ApiKey::from_u16(header.api_key).unwrap_or(ApiKey::ApiVersions);
                let (read, body) =
                    wire::decode_response(api, answer).expect("an error response decodes");
                assert_eq!(read.correlation_id, header.correlation_id);
                assert_eq!(read.error, error.code);
                assert_eq!(read.message, error.message);
                assert!(body.is_none());
            }
        }
    }
}

fn check_response(api: ApiKey, data: &[u8]) {
    let Ok(decoded) = wire::decode_response(api, Bytes::copy_from_slice(data)) else {
        return;
    };
    let (header, response) = &decoded;
    let encoded = match response {
        Some(response) => {
            assert_eq!(header.error, ErrorCode::None);
            assert_eq!(response.api_key(), api);
            wire::encode_response(header.correlation_id, response)
        }
        None => {
            assert_ne!(header.error, ErrorCode::None);
            wire::encode_error_response(header.correlation_id, header.error, &header.message)
        }
    };
    // Not byte for byte: an error code this build does not know decodes as `Unknown`
    // (`error_codes_are_stable_and_unknown_codes_degrade`), an error response's body is not
    // read, and a success header's message is not carried (the node writes it empty). The
    // value must survive.
    let (again_header, again_response) =
        wire::decode_response(api, encoded).expect("an encoded response decodes");
    assert_eq!(again_header.correlation_id, header.correlation_id);
    assert_eq!(again_header.error, header.error);
    if header.error != ErrorCode::None {
        assert_eq!(again_header.message, header.message);
    }
    assert_eq!(
        &again_response, response,
        "decode(encode(response)) differs"
    );
}

fn check_replica_fetch(data: &[u8]) {
    let limits = FUZZ_REPLICA_FETCH_LIMITS;
    let max = usize::try_from(limits.partitions_max).unwrap_or(usize::MAX);
    if let Ok(request) = ReplicaFetchRequest::decode_bounded(Bytes::copy_from_slice(data), &limits)
    {
        assert!(request.partitions.len() <= max);
        let encoded = request.encode_frame().into_bytes();
        assert_eq!(&encoded[..], data, "replica fetch request encoding differs");
    }
    if let Ok(response) =
        ReplicaFetchResponse::decode_bounded(Bytes::copy_from_slice(data), &limits)
    {
        assert!(response.partitions.len() <= max);
        // Structural, as for client responses: an unknown error number reads as `Unknown`.
        let encoded = response.encode_frame().into_bytes();
        let again = ReplicaFetchResponse::decode_bounded(encoded, &limits)
            .expect("an encoded replica fetch response decodes");
        assert_eq!(again, response, "replica fetch response round trip");
    }
}
