//! Ledge's native protocol: one request and one response per QUIC bidirectional stream.
//!
//! A request frame is a [`RequestHeader`] followed by the body of its API; the client
//! finishes its side of the stream after it, so the stream's end delimits the frame. The
//! response frame is a [`ResponseHeader`] followed by the body. A frame-level error (an
//! unknown API, an unsupported version, a malformed or oversized frame) is answered with a
//! header carrying the error and an empty body. Record batches travel as raw `Bytes`
//! sliced from the frame, never re-encoded. See docs/PROTOCOL.md.

pub mod codec;
mod error_code;
pub mod messages;
pub mod replica;

use bytes::Bytes;

pub use codec::{FrameWriter, Reader, Wire, WireError};
pub use error_code::ErrorCode;
pub use messages::*;

/// ALPN protocol id of Ledge's native protocol over QUIC.
pub const ALPN: &[u8] = b"ledge/1";

/// Default largest frame, request or response: a fetch of up to 50 MiB of batches (Kafka's
/// `fetch.max.bytes` default) plus headers fits.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 64 * 1024 * 1024;

macro_rules! apis {
    ($($name:ident = $key:literal, $request:ident, $response:ident;)*) => {
        /// The APIs of the native protocol.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ApiKey {
            $(
                #[doc = concat!("`", stringify!($request), "` / `", stringify!($response), "`.")]
                $name = $key,
            )*
        }

        impl ApiKey {
            /// Every API, in key order.
            pub const ALL: &'static [ApiKey] = &[$(ApiKey::$name),*];

            /// The API for a key number.
            pub fn from_u16(key: u16) -> Option<Self> {
                match key {
                    $($key => Some(Self::$name),)*
                    _ => None,
                }
            }
        }

        /// A decoded request body.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Request {
            $($name($request),)*
        }

        /// A decoded response body.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Response {
            $($name($response),)*
        }

        impl Request {
            /// The API this request belongs to.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Self::$name(_) => ApiKey::$name,)*
                }
            }

            fn encode_body(&self, out: &mut FrameWriter) {
                match self {
                    $(Self::$name(body) => body.encode(out),)*
                }
            }

            fn decode_body(api_key: ApiKey, input: &mut Reader) -> Result<Self, WireError> {
                Ok(match api_key {
                    $(ApiKey::$name => Self::$name($request::decode(input)?),)*
                })
            }
        }

        impl Response {
            /// The API this response belongs to.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Self::$name(_) => ApiKey::$name,)*
                }
            }

            fn encode_body(&self, out: &mut FrameWriter) {
                match self {
                    $(Self::$name(body) => body.encode(out),)*
                }
            }

            fn decode_body(api_key: ApiKey, input: &mut Reader) -> Result<Self, WireError> {
                Ok(match api_key {
                    $(ApiKey::$name => Self::$name($response::decode(input)?),)*
                })
            }
        }
    };
}

apis! {
    ApiVersions = 0, ApiVersionsRequest, ApiVersionsResponse;
    Metadata = 1, MetadataRequest, MetadataResponse;
    CreateTopics = 2, CreateTopicsRequest, CreateTopicsResponse;
    DeleteTopics = 3, DeleteTopicsRequest, DeleteTopicsResponse;
    DescribeConfigs = 4, DescribeConfigsRequest, DescribeConfigsResponse;
    AlterConfigs = 5, AlterConfigsRequest, AlterConfigsResponse;
    InitProducerId = 6, InitProducerIdRequest, InitProducerIdResponse;
    Produce = 7, ProduceRequest, ProduceResponse;
    Fetch = 8, FetchRequest, FetchResponse;
    ListOffsets = 9, ListOffsetsRequest, ListOffsetsResponse;
    ConsumerGroupHeartbeat = 10, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse;
    OffsetCommit = 11, OffsetCommitRequest, OffsetCommitResponse;
    OffsetFetch = 12, OffsetFetchRequest, OffsetFetchResponse;
    ListGroups = 13, ListGroupsRequest, ListGroupsResponse;
    DescribeGroups = 14, DescribeGroupsRequest, DescribeGroupsResponse;
    DeleteGroups = 15, DeleteGroupsRequest, DeleteGroupsResponse;
    UploadModule = 16, UploadModuleRequest, UploadModuleResponse;
    ListModules = 17, ListModulesRequest, ListModulesResponse;
    DeleteModule = 18, DeleteModuleRequest, DeleteModuleResponse;
    DeployTransform = 19, DeployTransformRequest, DeployTransformResponse;
    DescribeTransforms = 20, DescribeTransformsRequest, DescribeTransformsResponse;
    AlterTransform = 21, AlterTransformRequest, AlterTransformResponse;
    DescribeCluster = 22, DescribeClusterRequest, DescribeClusterResponse;
    FindCoordinator = 23, FindCoordinatorRequest, FindCoordinatorResponse;
    CreatePartitions = 24, CreatePartitionsRequest, CreatePartitionsResponse;
    ElectLeaders = 30, ElectLeadersRequest, ElectLeadersResponse;
    AlterPartitionReassignments = 31, AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse;
    ListPartitionReassignments = 32, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse;
    DecommissionNode = 33, DecommissionNodeRequest, DecommissionNodeResponse;
    AlterUserScramCredentials = 40, AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse;
    DescribeUserScramCredentials = 41, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse;
    CreateAcls = 42, CreateAclsRequest, CreateAclsResponse;
    DescribeAcls = 43, DescribeAclsRequest, DescribeAclsResponse;
    DeleteAcls = 44, DeleteAclsRequest, DeleteAclsResponse;
    SaslHandshake = 45, SaslHandshakeRequest, SaslHandshakeResponse;
    SaslAuthenticate = 46, SaslAuthenticateRequest, SaslAuthenticateResponse;
    AlterClientQuotas = 47, AlterClientQuotasRequest, AlterClientQuotasResponse;
    DescribeClientQuotas = 48, DescribeClientQuotasRequest, DescribeClientQuotasResponse;
    Snapshot = 49, SnapshotRequest, SnapshotResponse;
    SnapshotProgress = 50, SnapshotProgressRequest, SnapshotProgressResponse;
    TableGet = 51, TableGetRequest, TableGetResponse;
    TableScan = 52, TableScanRequest, TableScanResponse;
}

/// The only version of each API so far.
pub const API_VERSION: u16 = 0;

codec::wire_struct! {
    /// Precedes every request body.
    pub struct RequestHeader {
        /// Which API ([`ApiKey`] as a number, so unknown keys can be answered).
        pub api_key: u16,
        /// Which version of it.
        pub api_version: u16,
        /// Echoed in the response.
        pub correlation_id: u32,
        /// Free-form client name, for logs.
        pub client_id: String,
    }
}

codec::wire_struct! {
    /// Precedes every response body.
    pub struct ResponseHeader {
        /// The request's correlation id.
        pub correlation_id: u32,
        /// A frame-level error; when set, the body is empty.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

/// Why a request frame was refused, with its header when that much could be read (so the
/// answer can carry the correlation id).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FrameError {
    /// The header, if it decoded.
    pub header: Option<RequestHeader>,
    /// The code to answer with.
    pub code: ErrorCode,
    /// What was wrong.
    pub message: String,
}

/// Encodes a request frame as one buffer.
pub fn encode_request(correlation_id: u32, client_id: &str, request: &Request) -> Bytes {
    encode_request_frame(correlation_id, client_id, request).into_bytes()
}

/// Encodes a request frame as chunks: record batches are referenced, not copied (write
/// them with `write_all_chunks`).
pub fn encode_request_frame(
    correlation_id: u32,
    client_id: &str,
    request: &Request,
) -> FrameWriter {
    let mut out = FrameWriter::new();
    RequestHeader {
        api_key: request.api_key() as u16,
        api_version: API_VERSION,
        correlation_id,
        client_id: client_id.to_string(),
    }
    .encode(&mut out);
    request.encode_body(&mut out);
    out
}

/// Decodes a request frame. Record batches inside are slices of `frame`.
pub fn decode_request(frame: Bytes) -> Result<(RequestHeader, Request), FrameError> {
    let mut input = Reader::new(frame);
    let header = RequestHeader::decode(&mut input).map_err(|error| FrameError {
        header: None,
        code: ErrorCode::InvalidRequest,
        message: format!("request header: {error}"),
    })?;
    let Some(api_key) = ApiKey::from_u16(header.api_key) else {
        return Err(FrameError {
            message: format!("unknown API key {}", header.api_key),
            header: Some(header),
            code: ErrorCode::UnknownApiKey,
        });
    };
    if header.api_version != API_VERSION {
        return Err(FrameError {
            message: format!(
                "{api_key:?} version {} is not supported (supported: {API_VERSION}..={API_VERSION})",
                header.api_version
            ),
            header: Some(header),
            code: ErrorCode::UnsupportedVersion,
        });
    }
    let body = Request::decode_body(api_key, &mut input)
        .and_then(|request| input.finish().map(|()| request));
    match body {
        Ok(request) => Ok((header, request)),
        Err(error) => Err(FrameError {
            message: format!("{api_key:?} request: {error}"),
            header: Some(header),
            code: ErrorCode::InvalidRequest,
        }),
    }
}

/// Encodes a successful response frame as one buffer.
pub fn encode_response(correlation_id: u32, response: &Response) -> Bytes {
    encode_response_frame(correlation_id, response).into_bytes()
}

/// Encodes a successful response frame as chunks: record batches are referenced, not
/// copied.
pub fn encode_response_frame(correlation_id: u32, response: &Response) -> FrameWriter {
    let mut out = FrameWriter::new();
    ResponseHeader {
        correlation_id,
        error: ErrorCode::None,
        message: String::new(),
    }
    .encode(&mut out);
    response.encode_body(&mut out);
    out
}

/// Encodes a frame-level error response.
pub fn encode_error_response(correlation_id: u32, code: ErrorCode, message: &str) -> Bytes {
    let mut out = FrameWriter::new();
    ResponseHeader {
        correlation_id,
        error: code,
        message: message.to_string(),
    }
    .encode(&mut out);
    out.into_bytes()
}

/// Decodes a response frame to a request of `api_key`: the header, and the body unless the
/// header carries a frame-level error.
pub fn decode_response(
    api_key: ApiKey,
    frame: Bytes,
) -> Result<(ResponseHeader, Option<Response>), WireError> {
    let mut input = Reader::new(frame);
    let header = ResponseHeader::decode(&mut input)?;
    if header.error != ErrorCode::None {
        return Ok((header, None));
    }
    let response = Response::decode_body(api_key, &mut input)?;
    input.finish()?;
    Ok((header, Some(response)))
}

/// The version range of every API this build speaks.
pub fn supported_api_versions() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .iter()
        .map(|key| ApiVersionRange {
            api_key: *key as u16,
            min_version: API_VERSION,
            max_version: API_VERSION,
        })
        .collect()
}

#[cfg(test)]
mod tests;
