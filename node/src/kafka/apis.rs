//! The APIs and versions the Kafka listener serves: one table, from which the request and
//! response enums, the body decoder and ApiVersions' answer are generated.
//!
//! Ranges: each API's floor is what `kafka-protocol` 0.18 (Kafka 4.1's schemas) still
//! decodes, which is also what Kafka 4.x brokers accept (KIP-896 removed older versions), and
//! low enough for kafka-python 3 and librdkafka. Ceilings stop before versions whose meaning
//! the node does not implement: Produce 12 (transactions v2) and 13, Fetch 13+ (topics by id
//! only), ListOffsets 7+ (max-timestamp and tiered-storage offsets), InitProducerId 6 (two-phase
//! commit), DescribeCluster 2 (controller endpoints), Metadata 13 (a top-level error code the
//! node never sets differs from nothing, but 12 is what every client in the matrix asks for).
//!
//! The group APIs (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! OffsetDelete, ListGroups, DescribeGroups, DeleteGroups, FindCoordinator) are served by
//! `kafka/groups.rs`, the KIP-848 ones (ConsumerGroupHeartbeat, ConsumerGroupDescribe) by
//! `kafka/consumer_groups.rs`: each gets a
//! row here, in the marked section, one arm in `dispatch.rs`, and an entry in the tests'
//! `default_request` (`codec/tests.rs`; the every-version tests then cover it, and
//! `realistic_request` in `kafka/tests.rs` can give it real content). An API without a row is
//! neither advertised nor decoded: a request for it closes the connection, as Kafka does for
//! an API it does not know.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as kafka, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable};

/// One served API and its version range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedApi {
    /// The API.
    pub api: ApiKey,
    /// Oldest version served.
    pub min: i16,
    /// Newest version served.
    pub max: i16,
}

macro_rules! kafka_apis {
    ($($name:ident: $request:ident, $response:ident, $min:literal..=$max:literal;)*) => {
        /// A decoded request body of a served API.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(missing_docs)]
        pub enum KafkaRequest {
            $($name(kafka::$request),)*
        }

        /// A response body to encode.
        #[derive(Clone, Debug, PartialEq)]
        #[allow(missing_docs)]
        pub enum KafkaResponse {
            $($name(kafka::$response),)*
        }

        /// Every served API with its versions, in table order.
        pub const SERVED: &[ServedApi] = &[
            $(ServedApi { api: ApiKey::$name, min: $min, max: $max },)*
        ];

        impl KafkaRequest {
            /// The request's API.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Self::$name(_) => ApiKey::$name,)*
                }
            }

            /// Decodes the body of `api` at `version`; `None` for an API without a row.
            pub(crate) fn decode(
                api: ApiKey,
                version: i16,
                body: &mut Bytes,
            ) -> Option<Result<Self, String>> {
                match api {
                    $(ApiKey::$name => Some(
                        kafka::$request::decode(body, version)
                            .map(Self::$name)
                            .map_err(|error| error.to_string()),
                    ),)*
                    _ => None,
                }
            }

            /// Encodes the body as a client would (tests, and the fuzz crate's round trip
            /// with the `kafka-request-encode` feature).
            #[cfg(any(test, feature = "kafka-request-encode"))]
            pub fn encode(&self, out: &mut BytesMut, version: i16) -> Result<(), String> {
                match self {
                    $(Self::$name(body) => body.encode(out, version).map_err(|error| error.to_string()),)*
                }
            }

            /// An empty request of `api` (every field at its default); `None` for an API
            /// without a row. Seeds for the fuzz crate.
            #[cfg(any(test, feature = "kafka-request-encode"))]
            pub fn default_for(api: ApiKey) -> Option<Self> {
                match api {
                    $(ApiKey::$name => Some(Self::$name(Default::default())),)*
                    _ => None,
                }
            }
        }

        impl KafkaResponse {
            /// The response's API.
            pub fn api_key(&self) -> ApiKey {
                match self {
                    $(Self::$name(_) => ApiKey::$name,)*
                }
            }

            /// Encodes the body at `version`. Fails when the response sets a field the
            /// version cannot carry (a bug in a handler, never the client's bytes).
            pub fn encode(&self, out: &mut BytesMut, version: i16) -> Result<(), String> {
                match self {
                    $(Self::$name(body) => body.encode(out, version).map_err(|error| error.to_string()),)*
                }
            }

            /// Decodes a response body as a client would (tests).
            #[cfg(test)]
            pub fn decode(api: ApiKey, version: i16, body: &mut Bytes) -> Option<Result<Self, String>> {
                match api {
                    $(ApiKey::$name => Some(
                        kafka::$response::decode(body, version)
                            .map(Self::$name)
                            .map_err(|error| error.to_string()),
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

kafka_apis! {
    ApiVersions: ApiVersionsRequest, ApiVersionsResponse, 0..=4;
    Metadata: MetadataRequest, MetadataResponse, 0..=12;
    Produce: ProduceRequest, ProduceResponse, 3..=11;
    Fetch: FetchRequest, FetchResponse, 4..=12;
    ListOffsets: ListOffsetsRequest, ListOffsetsResponse, 1..=6;
    // Log ends (handlers/log_edges.rs): KIP-320 position validation, DeleteRecords.
    OffsetForLeaderEpoch: OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, 2..=4;
    DeleteRecords: DeleteRecordsRequest, DeleteRecordsResponse, 0..=2;
    InitProducerId: InitProducerIdRequest, InitProducerIdResponse, 0..=5;
    CreateTopics: CreateTopicsRequest, CreateTopicsResponse, 2..=7;
    DeleteTopics: DeleteTopicsRequest, DeleteTopicsResponse, 1..=6;
    CreatePartitions: CreatePartitionsRequest, CreatePartitionsResponse, 0..=3;
    DescribeConfigs: DescribeConfigsRequest, DescribeConfigsResponse, 1..=4;
    AlterConfigs: AlterConfigsRequest, AlterConfigsResponse, 0..=2;
    IncrementalAlterConfigs: IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, 0..=1;
    DescribeCluster: DescribeClusterRequest, DescribeClusterResponse, 0..=1;
    DescribeTopicPartitions: DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, 0..=0;
    // Idempotent producers' state (handlers/producers.rs).
    DescribeProducers: DescribeProducersRequest, DescribeProducersResponse, 0..=0;
    // Groups (kafka/groups.rs): one row per API here, one arm in dispatch.rs.
    FindCoordinator: FindCoordinatorRequest, FindCoordinatorResponse, 0..=5;
    JoinGroup: JoinGroupRequest, JoinGroupResponse, 0..=9;
    SyncGroup: SyncGroupRequest, SyncGroupResponse, 0..=5;
    Heartbeat: HeartbeatRequest, HeartbeatResponse, 0..=4;
    LeaveGroup: LeaveGroupRequest, LeaveGroupResponse, 0..=5;
    OffsetCommit: OffsetCommitRequest, OffsetCommitResponse, 2..=9;
    OffsetFetch: OffsetFetchRequest, OffsetFetchResponse, 1..=9;
    OffsetDelete: OffsetDeleteRequest, OffsetDeleteResponse, 0..=0;
    ListGroups: ListGroupsRequest, ListGroupsResponse, 0..=5;
    DescribeGroups: DescribeGroupsRequest, DescribeGroupsResponse, 0..=6;
    DeleteGroups: DeleteGroupsRequest, DeleteGroupsResponse, 0..=2;
    // KIP-848 groups (kafka/consumer_groups.rs).
    ConsumerGroupHeartbeat: ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, 0..=1;
    ConsumerGroupDescribe: ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, 0..=1;
    // SASL (kafka/sasl.rs): the connection answers them during an exchange, the service
    // outside one (ILLEGAL_SASL_STATE, as Kafka's KafkaApis).
    SaslHandshake: SaslHandshakeRequest, SaslHandshakeResponse, 0..=1;
    SaslAuthenticate: SaslAuthenticateRequest, SaslAuthenticateResponse, 0..=2;
    // SCRAM users and ACLs (handlers/security.rs). ACL v0 is below kafka-protocol's floor.
    DescribeAcls: DescribeAclsRequest, DescribeAclsResponse, 1..=3;
    CreateAcls: CreateAclsRequest, CreateAclsResponse, 1..=3;
    DeleteAcls: DeleteAclsRequest, DeleteAclsResponse, 1..=3;
    DescribeUserScramCredentials: DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, 0..=0;
    AlterUserScramCredentials: AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, 0..=0;
    // Client quotas, users only (handlers/quotas.rs); enforced in connection.rs.
    DescribeClientQuotas: DescribeClientQuotasRequest, DescribeClientQuotasResponse, 0..=1;
    AlterClientQuotas: AlterClientQuotasRequest, AlterClientQuotasResponse, 0..=1;
}

/// The served range of `api`, if it is served.
pub fn served(api: ApiKey) -> Option<ServedApi> {
    SERVED.iter().copied().find(|served| served.api == api)
}

// Every row must be a range the codec can decode: a typo in the table would otherwise
// advertise versions that close the connection.
const _: () = {
    let mut index = 0;
    while index < SERVED.len() {
        assert!(SERVED[index].min <= SERVED[index].max);
        assert!(SERVED[index].min >= 0);
        index += 1;
    }
};
