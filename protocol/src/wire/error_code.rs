//! Wire error codes: stable numbers, never reused.
//!
//! Internal error types convert to these at the transport edge; they can change freely,
//! these cannot. A code a peer does not know decodes as `UnknownServerError`, so new codes
//! do not break old clients.

use bytes::BufMut;

use super::codec::{FrameWriter, Reader, Wire, WireError};

macro_rules! error_codes {
    ($($(#[$meta:meta])* $name:ident = $value:literal, $retriable:literal;)*) => {
        /// An error code carried in a response.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            /// Success.
            #[default]
            None = 0,
            $($(#[$meta])* $name = $value,)*
        }

        impl ErrorCode {
            /// The code for a number; unknown numbers become `UnknownServerError`.
            pub fn from_u16(value: u16) -> Self {
                match value {
                    0 => Self::None,
                    $($value => Self::$name,)*
                    _ => Self::UnknownServerError,
                }
            }

            /// Whether retrying the same request may succeed.
            pub fn is_retriable(self) -> bool {
                match self {
                    Self::None => false,
                    $(Self::$name => $retriable,)*
                }
            }

            /// The code's name, for messages and JSON output.
            pub fn name(self) -> &'static str {
                match self {
                    Self::None => "NONE",
                    $(Self::$name => stringify!($name),)*
                }
            }
        }
    };
}

error_codes! {
    /// An error the server did not classify (see the message).
    UnknownServerError = 1, false;
    /// A record batch failed its CRC or framing checks.
    CorruptMessage = 2, true;
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3, false;
    /// The topic name is not valid (1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
    InvalidTopic = 4, false;
    /// A topic with that name exists.
    TopicAlreadyExists = 5, false;
    /// The partition count is invalid (zero, too many, or fewer than now).
    InvalidPartitions = 6, false;
    /// A topic config key or value is invalid.
    InvalidConfig = 7, false;
    /// A batch is larger than the topic's `max.message.bytes`.
    MessageTooLarge = 8, false;
    /// The offset is outside `[log start, high watermark]`.
    OffsetOutOfRange = 9, false;
    /// The request did not complete within its timeout.
    RequestTimedOut = 10, true;
    /// The API version is not supported.
    UnsupportedVersion = 11, false;
    /// The request is malformed.
    InvalidRequest = 12, false;
    /// The frame exceeds the peer's frame limit.
    FrameTooLarge = 13, false;
    /// A batch's sequence number is not the next one expected for its producer.
    OutOfOrderSequenceNumber = 14, false;
    /// The producer epoch is older than the current one (a newer instance took over).
    InvalidProducerEpoch = 15, false;
    /// The producer id is not known to this partition.
    UnknownProducerId = 16, false;
    /// A disk error; the partition is fenced and being verified.
    StorageError = 17, true;
    /// The partition could not be opened (see the node log for the file and position).
    PartitionOffline = 18, false;
    /// `acks` must be 0, 1 or -1.
    InvalidRequiredAcks = 19, false;
    /// Too many requests in flight on this connection.
    TooManyRequests = 20, true;
    /// The API key is not known.
    UnknownApiKey = 21, false;
    /// The disk is full; the append was rolled back.
    DiskFull = 22, true;
    /// The node is shutting down.
    ShuttingDown = 23, true;
    /// The request would change an internal topic (`__` prefix), which only the node may do.
    InternalTopic = 24, false;
    /// The group id is empty or too long.
    InvalidGroupId = 25, false;
    /// The group does not exist (or has no committed offsets).
    GroupIdNotFound = 26, false;
    /// The member id is not (or no longer) in the group: rejoin with an empty member id.
    UnknownMemberId = 27, false;
    /// The member's epoch is older than the group's view of it: its assignment changed.
    /// Rejoin (heartbeat) before committing again.
    FencedMemberEpoch = 28, false;
    /// The assignor name is not one the node knows, or differs from the group's.
    InconsistentGroupProtocol = 29, false;
    /// The operation needs a group without active members.
    NonEmptyGroup = 30, false;
    /// The member committed an offset for a partition it is not assigned.
    PartitionNotAssigned = 31, false;
    /// The group has reached `group_members_max`.
    GroupMaxSizeReached = 32, false;
    /// A subscription pattern is not a valid regular expression.
    InvalidRegularExpression = 33, false;
    /// Another member already uses this `group.instance.id`.
    FencedInstanceId = 34, false;
    /// A WASM module is invalid: not WebAssembly, wrong exports for its kind, imports,
    /// too large, or it refused its parameters.
    InvalidModule = 35, false;
    /// No module with that name (a transform: `TransformNotFound`).
    ModuleNotFound = 36, false;
    /// A module failed while running (trap, out of fuel, memory limit, malformed output).
    ModuleFailed = 37, false;
    /// A record was refused by the topic's produce filter, or a batch's records do not match
    /// its header (a count that lies, records that do not decode; see the message). The
    /// same bytes fail again: fix the producer.
    InvalidRecord = 38, false;
    /// A transform with that name exists already with another input (remove it first).
    TransformAlreadyExists = 39, false;
    /// The module is in use (by a topic config); change that first.
    ModuleInUse = 40, false;
    /// A topic transform reads from or writes to the topic; remove the transform first.
    TopicInUse = 41, false;
    /// A create-time batch's timestamp is further in the future than the topic's
    /// `message.timestamp.after.max.ms`, or further in the past than its
    /// `message.timestamp.before.max.ms` (Kafka's INVALID_TIMESTAMP). Fix the producer's clock
    /// or the timestamps it sets.
    InvalidTimestamp = 42, false;
    /// The records at the fetched offset are damaged on the node's disk (found by its
    /// background verifier; the message names the file and byte position). The node will
    /// not serve them; earlier offsets, and later segments, are intact. Seek past the damaged
    /// segment or ask the operator to restore it (docs/OPERATIONS.md, "A damaged partition").
    DataDamaged = 43, false;
    /// This node is not the leader of the partition (nor, for a replica fetch, a follower):
    /// leadership moved. Refresh metadata and send to the new leader (Kafka's
    /// NOT_LEADER_OR_FOLLOWER).
    NotLeaderOrFollower = 44, true;
    /// The request's leader epoch is older than the partition's: the client's metadata is
    /// stale. Refresh metadata and retry (KIP-320).
    FencedLeaderEpoch = 45, true;
    /// The request's leader epoch is newer than the one this node knows: the node has not
    /// heard of the latest election yet. Retry after a back-off (KIP-320).
    UnknownLeaderEpoch = 46, true;
    /// Fewer replicas are in sync than the topic's `min.insync.replicas`; an acks=all
    /// produce was refused before it was written. Retry once the replicas catch up.
    NotEnoughReplicas = 47, true;
    /// The batch was written on the leader, but the in-sync replicas fell below
    /// `min.insync.replicas` before it was replicated. Retry (an idempotent producer's retry
    /// is not written twice).
    NotEnoughReplicasAfterAppend = 48, true;
    /// The replication factor is zero, or above the number of live nodes.
    InvalidReplicationFactor = 49, false;
    /// A node's request carries a node epoch older than its current registration (it
    /// restarted since); the old incarnation is fenced (Kafka's STALE_BROKER_EPOCH).
    StaleNodeEpoch = 50, false;
    /// This node is not the active controller; ask the one metadata names.
    NotController = 51, true;
    /// This node is not the coordinator of the group: its offsets partition is led
    /// elsewhere. Ask FindCoordinator again and send there (Kafka's NOT_COORDINATOR).
    NotCoordinator = 52, true;
    /// The group's coordinator is not available: its offsets partition has no leader, or
    /// `__consumer_offsets` is still being created. Retry after a back-off (Kafka's
    /// COORDINATOR_NOT_AVAILABLE).
    CoordinatorNotAvailable = 53, true;
    /// A reassignment's target replicas cannot be used: a node listed twice, not registered,
    /// or not alive (Kafka's INVALID_REPLICA_ASSIGNMENT). Nothing changed.
    InvalidReplicaAssignment = 60, false;
    /// The partition is already being reassigned; wait for it (`ledge topic reassign NAME
    /// --status`) or cancel it first (Kafka's REASSIGNMENT_IN_PROGRESS).
    ReassignmentInProgress = 61, false;
    /// There is no reassignment of the partition to cancel, or it cannot be cancelled
    /// (Kafka's NO_REASSIGNMENT_IN_PROGRESS).
    NoReassignmentInProgress = 62, false;
    /// The node cannot be decommissioned now: it is alive, still a replica, or a voter of the
    /// controller quorum; the message says which.
    NodeInUse = 63, false;
    /// The node answering has not caught up with the cluster's metadata yet (it restarted,
    /// or has not registered this incarnation): it names no leader for the partition. Ask
    /// again after a back-off, or ask another node (Kafka's LEADER_NOT_AVAILABLE).
    LeaderNotAvailable = 64, true;
    /// The partition's new leader has not yet learnt a high watermark of its own leader
    /// epoch, so an end offset (or a timestamp lookup at the end) could be below one
    /// answered before the election: ask again shortly (Kafka's OFFSET_NOT_AVAILABLE,
    /// KIP-207).
    OffsetNotAvailable = 65, true;
    /// A user name or SCRAM credential that cannot be stored: empty or too long a name,
    /// iterations outside 4096..=16384, a salt or key of the wrong length (Kafka's
    /// UNACCEPTABLE_CREDENTIAL).
    UnacceptableCredential = 70, false;
    /// Not a SCRAM mechanism the node knows (Kafka's UNSUPPORTED_SASL_MECHANISM).
    UnsupportedSaslMechanism = 71, false;
    /// No such user credential (Kafka's RESOURCE_NOT_FOUND).
    ResourceNotFound = 72, false;
    /// The same user twice in one request (Kafka's DUPLICATE_RESOURCE).
    DuplicateResource = 73, false;
    /// A limit on users or ACLs would be exceeded (Kafka's POLICY_VIOLATION); the message
    /// names it.
    PolicyViolation = 74, false;
    /// The node accepts no anonymous clients and this connection has not authenticated:
    /// authenticate first (SaslHandshake and SaslAuthenticate, or a client certificate).
    /// Only ApiVersions and the SASL requests are answered until then.
    AuthenticationRequired = 75, false;
    /// SASL authentication failed: a wrong password or an unknown user (the two are not
    /// told apart), or a malformed message. The node closes the connection after this answer
    /// (Kafka's SASL_AUTHENTICATION_FAILED).
    SaslAuthenticationFailed = 76, false;
    /// A SASL request out of order: SaslAuthenticate without a SaslHandshake, a second
    /// SaslHandshake during an exchange, or after the connection authenticated (QUIC
    /// connections authenticate once; Kafka's ILLEGAL_SASL_STATE).
    IllegalSaslState = 77, false;
    /// The caller may not do this to the topic (Kafka's TOPIC_AUTHORIZATION_FAILED). The
    /// message names the principal, operation and topic (`User:alice may not Write
    /// Topic:orders`). A topic the caller may not see gets this answer whether or not it
    /// exists.
    TopicAuthorizationFailed = 78, false;
    /// The caller may not do this to the group (Kafka's GROUP_AUTHORIZATION_FAILED).
    GroupAuthorizationFailed = 79, false;
    /// The caller may not do this to the cluster (Kafka's CLUSTER_AUTHORIZATION_FAILED).
    ClusterAuthorizationFailed = 80, false;
    /// The caller may not use the transactional id (Kafka's
    /// TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
    TransactionalIdAuthorizationFailed = 81, false;
    /// The caller may not do this to a Ledge resource: a module or a transform (neither
    /// has a Kafka twin). The message names principal, operation and resource.
    ResourceAuthorizationFailed = 82, false;
    /// No transform with that name (`ledge transform list` shows the deployed ones).
    TransformNotFound = 83, false;
}

impl ErrorCode {
    /// Whether the code is an authorization failure (the caller lacks a permission; the
    /// message names principal, operation and resource).
    pub fn is_authorization_failure(self) -> bool {
        matches!(
            self,
            Self::TopicAuthorizationFailed
                | Self::GroupAuthorizationFailed
                | Self::ClusterAuthorizationFailed
                | Self::TransactionalIdAuthorizationFailed
                | Self::ResourceAuthorizationFailed
        )
    }
}

impl Wire for ErrorCode {
    const BYTES_MIN: usize = 2;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_u16(*self as u16);
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        Ok(Self::from_u16(u16::decode(input)?))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}
