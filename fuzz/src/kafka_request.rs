//! `kafka_request`: [`ledge_node::kafka::codec::decode_request`] on arbitrary frames (the
//! bytes after the length prefix), every served API and version.
//!
//! Oracles:
//! - The decoded header carries the API key, version and correlation id of the frame's first
//!   eight bytes.
//! - A decoded request encodes again at its version (as a client would) and that frame decodes
//!   to the same request; encoding that again gives the same bytes.
//! - ApiVersions at an unsupported version is answered, not dropped: its fallback response
//!   encodes.
//! - Every error renders (its `Display` is what the node logs).

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use ledge_node::kafka::codec::{DecodedRequest, api_versions_fallback, decode_request};

/// Runs one input.
pub fn run(data: &[u8]) {
    let decoded = match decode_request(Bytes::copy_from_slice(data)) {
        Ok(decoded) => decoded,
        Err(error) => {
            let _ = error.to_string();
            if let Some(correlation_id) = error.api_versions_fallback() {
                api_versions_fallback(correlation_id)
                    .expect("the ApiVersions fallback answer always encodes");
            }
            return;
        }
    };
    let prefix = |at: usize| [data[at], data[at + 1]];
    assert_eq!(decoded.api as i16, i16::from_be_bytes(prefix(0)));
    assert_eq!(decoded.version, i16::from_be_bytes(prefix(2)));
    assert_eq!(decoded.header.request_api_key, decoded.api as i16);
    assert_eq!(decoded.header.request_api_version, decoded.version);
    assert_eq!(
        decoded.header.correlation_id,
        i32::from_be_bytes([data[4], data[5], data[6], data[7]])
    );
    assert_eq!(decoded.body.api_key(), decoded.api);

    let encoded = encode(&decoded).unwrap_or_else(|cause| {
        panic!(
            "{:?} v{} decoded but does not encode again: {cause}",
            decoded.api, decoded.version
        )
    });
    let again = decode_request(encoded.clone()).unwrap_or_else(|error| {
        panic!(
            "{:?} v{} re-encoded does not decode: {error}",
            decoded.api, decoded.version
        )
    });
    assert_eq!(again, decoded, "decode(encode(request)) differs");
    assert_eq!(
        encode(&again).ok(),
        Some(encoded),
        "encoding is not stable across a round trip"
    );
}

/// A request frame (without length prefix) as a client writes it.
pub fn encode(request: &DecodedRequest) -> Result<Bytes, String> {
    let mut out = BytesMut::new();
    request
        .header
        .encode(
            &mut out,
            request.api.request_header_version(request.version),
        )
        .map_err(|error| error.to_string())?;
    request.body.encode(&mut out, request.version)?;
    Ok(out.freeze())
}
