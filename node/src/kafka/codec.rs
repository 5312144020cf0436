//! Frames of the Kafka protocol: a big-endian `i32` length, then a request header and body
//! (or a response header and body). Pure: bytes in, values out.
//!
//! The request header is v1 or v2 (flexible, with tagged fields) depending on the API and
//! version, and the response header v0 or v1 likewise, except that ApiVersions' response
//! header is always v0 so a client can read it whatever version it asked for
//! (`kafka-protocol` knows both rules).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader, api_versions_response,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::apis::{KafkaRequest, KafkaResponse, SERVED, served};
use kafka_protocol::ResponseError;

/// Bytes of the length prefix of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Bytes every request header starts with: API key, version, correlation id.
const HEADER_PREFIX_BYTES: usize = 8;

/// A decoded request.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedRequest {
    /// Its header (correlation id, client id).
    pub header: RequestHeader,
    /// The API.
    pub api: ApiKey,
    /// The version the client used; the response is encoded at it.
    pub version: i16,
    /// The body.
    pub body: KafkaRequest,
}

/// Why a request frame was not decoded. Every case but
/// [`DecodeError::UnsupportedVersion`] of ApiVersions closes the connection, as Kafka does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a request header's fixed part.
    #[error("request frame of {bytes} bytes is shorter than a request header")]
    Short {
        /// The frame's length.
        bytes: usize,
    },
    /// An API key Kafka does not define.
    #[error("unknown API key {key}")]
    UnknownApi {
        /// The key.
        key: i16,
    },
    /// An API Kafka defines and this node does not serve.
    #[error("API {api:?} (key {}) is not served by this node", *api as i16)]
    NotServed {
        /// The API.
        api: ApiKey,
    },
    /// A version outside the served range.
    #[error("{api:?} version {version} is not served (versions {min}..={max})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The version asked for.
        version: i16,
        /// Oldest served.
        min: i16,
        /// Newest served.
        max: i16,
        /// The request's correlation id (ApiVersions is answered with it).
        correlation_id: i32,
    },
    /// The header did not decode.
    #[error("{api:?} v{version}: malformed request header: {cause}")]
    Header {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What was wrong.
        cause: String,
    },
    /// The body did not decode.
    #[error("{api:?} v{version}: malformed request: {cause}")]
    Body {
        /// The API.
        api: ApiKey,
        /// The version.
        version: i16,
        /// What was wrong.
        cause: String,
    },
}

impl DecodeError {
    /// For ApiVersions at a version the node does not serve: the correlation id to answer
    /// (at version 0, with UNSUPPORTED_VERSION and the served ranges); the connection stays.
    pub fn api_versions_fallback(&self) -> Option<i32> {
        match self {
            Self::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                correlation_id,
                ..
            } => Some(*correlation_id),
            _ => None,
        }
    }
}

/// Why a response was not encoded: a handler set a field its version cannot carry. A bug,
/// reported in the log; the connection is closed since the client waits for this answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode {api:?} v{version} response: {cause}")]
pub struct EncodeError {
    /// The API.
    pub api: ApiKey,
    /// The version.
    pub version: i16,
    /// What the codec said.
    pub cause: String,
}

/// Decodes a request frame (without its length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    if frame.len() < HEADER_PREFIX_BYTES {
        return Err(DecodeError::Short { bytes: frame.len() });
    }
    let mut prefix = &frame[..HEADER_PREFIX_BYTES];
    let key = prefix.get_i16();
    let version = prefix.get_i16();
    let correlation_id = prefix.get_i32();
    let api = ApiKey::try_from(key).map_err(|()| DecodeError::UnknownApi { key })?;
    let range = served(api).ok_or(DecodeError::NotServed { api })?;
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            min: range.min,
            max: range.max,
            correlation_id,
        });
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version)).map_err(
        |error| DecodeError::Header {
            api,
            version,
            cause: error.to_string(),
        },
    )?;
    let body = match KafkaRequest::decode(api, version, &mut frame) {
        Some(Ok(body)) => body,
        Some(Err(cause)) => {
            return Err(DecodeError::Body {
                api,
                version,
                cause,
            });
        }
        None => return Err(DecodeError::NotServed { api }),
    };
    Ok(DecodedRequest {
        header,
        api,
        version,
        body,
    })
}

/// Encodes a response frame, length prefix included.
pub fn encode_response(
    correlation_id: i32,
    version: i16,
    response: &KafkaResponse,
) -> Result<Bytes, EncodeError> {
    let api = response.api_key();
    let failed = |cause: String| EncodeError {
        api,
        version,
        cause,
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header
        .encode(&mut out, api.response_header_version(version))
        .map_err(|error| failed(error.to_string()))?;
    response.encode(&mut out, version).map_err(failed)?;
    let body_bytes = out.len() - LENGTH_PREFIX_BYTES;
    let length = i32::try_from(body_bytes)
        .map_err(|_| failed(format!("{body_bytes} bytes do not fit a frame")))?;
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(out.freeze())
}

/// The served APIs as ApiVersions lists them.
pub fn api_version_list() -> Vec<api_versions_response::ApiVersion> {
    SERVED
        .iter()
        .map(|served| {
            let mut entry = api_versions_response::ApiVersion::default();
            entry.api_key = served.api as i16;
            entry.min_version = served.min;
            entry.max_version = served.max;
            entry
        })
        .collect()
}

/// The answer to ApiVersions at an unsupported version: version 0, UNSUPPORTED_VERSION and
/// the served ranges, so that the client retries with a version both sides speak (KIP-511).
pub fn api_versions_fallback(correlation_id: i32) -> Result<Bytes, EncodeError> {
    let mut response = ApiVersionsResponse::default();
    response.error_code = ResponseError::UnsupportedVersion.code();
    response.api_keys = api_version_list();
    encode_response(correlation_id, 0, &KafkaResponse::ApiVersions(response))
}

#[cfg(test)]
pub(crate) mod tests;
