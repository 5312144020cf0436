//! Error types, one per operation (STYLE B.4): connecting, one request, producing, consuming,
//! committing offsets, administering topics and groups, and creating a producer.
//!
//! Every enum is `#[non_exhaustive]` so that new variants are not breaking changes. Errors that
//! came from the node carry its [`ErrorCode`] and message. `is_retriable` says whether the same
//! operation may succeed later; the producer and consumer already retry those themselves, so a
//! retriable error reaching the caller means the retry budget ran out.
//!
//! Produce errors are `Clone`: one failed batch fails every record in it, and each record's
//! [`crate::DeliveryFuture`] gets its own copy.

use std::path::PathBuf;
use std::time::Duration;

use ledge_protocol::wire::{ErrorCode, NODE_PARTITIONED};

/// Why a connection to the node could not be set up.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The CA file could not be read. Check the path (`<data-dir>/tls/ca.pem` on the node).
    #[error("cannot read CA file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The operating system's or the PEM parser's explanation.
        message: String,
    },
    /// The CA file holds no certificate. Pass the node's `ca.pem`, not its key.
    #[error("CA file {path} contains no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The client certificate or its key could not be used (unreadable, not PEM, a key file
    /// others can read).
    #[error("client certificate: {}: {message}", path.display())]
    ClientCertificate {
        /// The certificate or key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The TLS configuration was refused (an unusable certificate, say).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The server address did not resolve. Check `host:port`.
    #[error("cannot resolve {server}: {message}")]
    Resolve {
        /// The address as given.
        server: String,
        /// Why.
        message: String,
    },
    /// The local UDP socket could not be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(String),
    /// The QUIC or TLS handshake failed: a certificate the CA did not sign, a wrong server
    /// name, or a node that does not speak `ledge/1`. Not worth retrying as is.
    #[error("cannot connect to {server}: {message}")]
    Handshake {
        /// The address.
        server: String,
        /// quinn's or rustls's explanation.
        message: String,
    },
    /// [`crate::Client::close`] was called: a closed client does not connect again. Make a
    /// new `Client` to talk to the node.
    #[error("the client was closed; connect a new one to talk to the node again")]
    Closed,
    /// None of the bootstrap servers answered; `reasons` says why for each, in order.
    #[error("no bootstrap server answered: {reasons}")]
    NoServerReachable {
        /// The bootstrap list as given.
        servers: String,
        /// Each server's failure.
        reasons: String,
    },
    /// SASL authentication failed: a wrong password or an unknown user (the node does not
    /// tell them apart), a mechanism the node does not enable, or a node that could not prove
    /// it knows the user's credential. Not worth retrying with the same credentials.
    #[error("authentication as user {user:?} with {mechanism} failed at {server}: {message}")]
    Authentication {
        /// The address.
        server: String,
        /// The user name given (never the password).
        user: String,
        /// The SASL mechanism.
        mechanism: String,
        /// The node's or the client's explanation.
        message: String,
    },
    /// No answer within the connect timeout: the node is not running there, or is restarting.
    #[error("no answer from {server} within {timeout:?}: is ledge-node running there?")]
    TimedOut {
        /// The address.
        server: String,
        /// How long we waited.
        timeout: Duration,
    },
}

impl ConnectError {
    /// Whether trying again later may work (the node may be restarting).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::TimedOut { .. } | Self::NoServerReachable { .. })
    }
}

/// Why one request to the node failed below the level of its API's own answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// There was no connection and a new one could not be made.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection broke while the request was out (a node restart, say). The request may
    /// or may not have been carried out.
    #[error("connection to the node lost: {0}")]
    ConnectionLost(String),
    /// No answer within the request timeout; the connection is dropped and made again.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// While the request waited for its answer, the cluster elected another leader for one of
    /// its partitions (the node died or was deposed). The request may or may not have been
    /// carried out there; the producer sends it again to the new leader.
    #[error("no answer from {node} before its partition's leadership moved to another node")]
    LeaderMoved {
        /// The node the request went to.
        node: String,
    },
    /// While the request waited for its answer, the cluster stopped listing the node as alive
    /// (it was killed, stopped or cut off, and the controller fenced it). The request may or
    /// may not have been carried out there; the client sends it again to another node.
    #[error("no answer from {node} before the cluster stopped listing it as alive")]
    NodeLost {
        /// The node the request went to.
        node: String,
    },
    /// The node refused the frame itself (unknown API, unsupported version, too large, ...).
    #[error("node refused the request: {}", explain_code(*code, message))]
    Refused {
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The request is larger than the frame limit; nothing was sent.
    #[error("request of {bytes} bytes exceeds the frame limit of {limit} bytes")]
    FrameTooLarge {
        /// Size of the encoded request.
        bytes: usize,
        /// `ClientConfig::frame_bytes_max`.
        limit: u32,
    },
    /// The answer could not be decoded, or answered something else. A bug on one side.
    #[error("malformed response: {0}")]
    MalformedResponse(String),
}

impl RequestError {
    /// Whether the same request may succeed if sent again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connect(error) => error.is_retriable(),
            Self::ConnectionLost(_)
            | Self::TimedOut(_)
            | Self::LeaderMoved { .. }
            | Self::NodeLost { .. } => true,
            Self::Refused { code, .. } => code.is_retriable(),
            Self::FrameTooLarge { .. } | Self::MalformedResponse(_) => false,
        }
    }

    /// Whether the node did not answer at all (no connection, a connection lost, no answer in
    /// time, the node left the cluster): the request is worth sending to another node. Not
    /// after [`crate::Client::close`]: a closed client sends nothing anywhere.
    pub(crate) fn is_no_answer(&self) -> bool {
        match self {
            Self::Connect(ConnectError::Closed) => false,
            _ => matches!(
                self,
                Self::Connect(_)
                    | Self::ConnectionLost(_)
                    | Self::TimedOut(_)
                    | Self::LeaderMoved { .. }
                    | Self::NodeLost { .. }
            ),
        }
    }
}

/// Why a [`crate::Producer`] could not be created.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CreateProducerError {
    /// The configuration is inconsistent; the message names the fields.
    #[error("invalid producer configuration: {0}")]
    InvalidConfig(String),
    /// Asking the node for a producer id failed.
    #[error("cannot get a producer id: {0}")]
    Request(#[from] RequestError),
    /// The node refused to hand out a producer id.
    #[error("node refused a producer id: {0}")]
    ProducerId(ErrorCode),
}

/// Why a record was not (or may not have been) written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProduceError {
    /// An earlier batch of the same partition failed for good, and this one, numbered after
    /// it, was given up so that no record lands after a gap. Unless an earlier attempt of this
    /// batch lost its answer (a connection cut), it was not written. Send it again.
    #[error("not sent: an earlier batch of {} failed ({cause})", place(topic, *partition))]
    Aborted {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The earlier batch's error.
        cause: String,
    },
    /// There was no room in `buffer_memory` within `max_block`: the node is slower than the
    /// sender, or unreachable. Slow down, or raise either limit.
    #[error("producer buffer full: no room for the record within {waited:?} (buffer_memory)")]
    BufferFull {
        /// How long `send` waited.
        waited: Duration,
    },
    /// The producer was closed.
    #[error("producer is closed")]
    Closed,
    /// The record was not acknowledged within `delivery_timeout`. It may or may not have been
    /// written (the last error says more).
    #[error(
        "not acknowledged within the delivery timeout of {timeout:?}; last error: {last_error}"
    )]
    DeliveryTimeout {
        /// `ProducerConfig::delivery_timeout`.
        timeout: Duration,
        /// The last error seen, or "none" if the batch was never sent.
        last_error: String,
    },
    /// The topic's produce filter (`produce.filter.module`) dropped the record, so it was not
    /// written. Only records the node partitions (topics with a `partitioner.module`) report
    /// this; elsewhere a dropped record resolves with the offset the node left empty for it.
    #[error("dropped by the produce filter of topic {topic}: not written")]
    Dropped {
        /// Topic.
        topic: String,
    },
    /// The batch could not be encoded.
    #[error("cannot encode batch: {0}")]
    Encode(String),
    /// The explicit (or partitioner's) partition does not exist.
    #[error("partition {partition} does not exist: topic {topic} has {partition_count} partitions")]
    InvalidPartition {
        /// Topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many the topic has.
        partition_count: u32,
    },
    /// The node refused the batch. `code` says why (e.g. `MessageTooLarge` for a batch over the
    /// topic's `max.message.bytes`).
    #[error(
        "node refused the batch for {}: {}",
        place(topic, *partition),
        explain_code(*code, message)
    )]
    Node {
        /// Topic.
        topic: String,
        /// Partition; [`NODE_PARTITIONED`] for records the node partitions.
        partition: u32,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// One record, in a batch of its own, is larger than `max_request_size`; it was not sent.
    #[error(
        "record of about {bytes} bytes (in a batch of its own) exceeds max_request_size \
         ({limit} bytes)"
    )]
    RecordTooLarge {
        /// Estimated encoded size, with the batch header.
        bytes: usize,
        /// `ProducerConfig::max_request_size`.
        limit: usize,
    },
    /// One record, in a batch of its own, is larger than the topic's `max.message.bytes`; it
    /// was not sent. Raise the topic's limit (`ledge topic alter`) or send smaller records.
    #[error(
        "record of about {bytes} bytes (in a batch of its own) exceeds max.message.bytes of \
         topic {topic} ({limit} bytes)"
    )]
    RecordTooLargeForTopic {
        /// Topic.
        topic: String,
        /// Estimated encoded size, with the batch header.
        bytes: usize,
        /// The topic's `max.message.bytes`.
        limit: usize,
    },
    /// The request could not be delivered, and the retries ran out.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The topic does not exist on the node. Create it first (`ledge topic create`).
    #[error("topic {topic} does not exist")]
    UnknownTopic {
        /// Topic.
        topic: String,
    },
}

impl ProduceError {
    /// The node's error code, when the node refused the batch.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Node { code, .. } => Some(*code),
            Self::Request(RequestError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Why a consumer operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeError {
    /// The fetch plug-in (`ConsumerConfig::fetch_plugin`) is unknown, invalid for fetches,
    /// refused its parameters, or failed on a record (the message names its offset; seek
    /// past it to go on).
    #[error("fetch plug-in: {message} ({code})")]
    Plugin {
        /// `ModuleNotFound`, `InvalidModule`, `ModuleFailed`, `InvalidRequest`.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// A fetched batch failed its CRC or could not be decoded: the bytes were damaged.
    #[error("corrupt batch in {topic}/{partition} at offset {offset}: {message}")]
    CorruptBatch {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The position being read.
        offset: i64,
        /// What was wrong.
        message: String,
    },
    /// `poll` or `stream` was used with no partitions assigned and no subscription. Call
    /// `assign` or `subscribe` first.
    #[error("no partitions assigned: call assign() or subscribe() first")]
    NoAssignment,
    /// `subscribe` needs `ConsumerConfig::group_id`: the node assigns partitions to members
    /// of a group.
    #[error("subscribe needs a group id: set ConsumerConfig::group_id (or use assign())")]
    NoGroupId,
    /// `subscribe` and `assign` were mixed on one consumer: a consumer either reads the
    /// partitions the group gives it or the ones it names, not both. Use two consumers.
    #[error(
        "this consumer is {current}: it cannot also {attempted}; \
         subscribe() and assign() cannot be mixed on one consumer"
    )]
    SubscriptionMixed {
        /// What the consumer already does (`subscribed` or `manually assigned`).
        current: &'static str,
        /// What was asked (`subscribe` or `assign`).
        attempted: &'static str,
    },
    /// The node refused the membership for a reason retrying will not fix: an invalid
    /// pattern (`InvalidRegularExpression`), an assignor the node does not know or that differs
    /// from the group's (`InconsistentGroupProtocol`), a full group (`GroupMaxSizeReached`),
    /// an invalid group id, a session timeout outside the node's bounds. Fix the setting and
    /// subscribe again.
    #[error("group {group_id}: {}", explain_code(*code, message))]
    Group {
        /// The group.
        group_id: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The consumer was closed.
    #[error("consumer is closed")]
    Closed,
    /// The partition has no position and `auto_offset_reset` is `None`. Call `seek` (or
    /// `seek_to_beginning` / `seek_to_end`) first.
    #[error("no offset for {topic}/{partition} and auto_offset_reset is none: seek first")]
    NoOffsetForPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The partition is not in the assignment.
    #[error("{topic}/{partition} is not assigned to this consumer")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
    /// The position is outside the log and `auto_offset_reset` is `None`.
    #[error(
        "offset {offset} is out of range for {topic}/{partition} \
         (readable: {log_start_offset}..{high_watermark})"
    )]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The position asked for.
        offset: i64,
        /// First readable offset, when known (else -1).
        log_start_offset: i64,
        /// One past the last readable offset, when known (else -1).
        high_watermark: i64,
    },
    /// The node answered this partition with an error.
    #[error("{topic}/{partition}: {}", explain_code(*code, ""))]
    Partition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The node's code.
        code: ErrorCode,
    },
    /// The request failed and could not be retried in time.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The topic or partition does not exist.
    #[error("partition {partition} of topic {topic} does not exist")]
    UnknownTopicOrPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
    },
}

/// Why committing offsets (or reading committed ones) failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// Offsets belong to a group: set `ConsumerConfig::group_id`.
    #[error("committing offsets needs a group id: set ConsumerConfig::group_id")]
    NoGroupId,
    /// The node refused the whole commit. `UnknownMemberId`: the member was removed (session
    /// timeout, `max_poll_interval`); `FencedMemberEpoch`: its assignment changed since. In both
    /// cases poll again (the consumer rejoins) and commit what it then owns. `NonEmptyGroup`: a
    /// consumer without a subscription committed while the group has active members.
    #[error("cannot commit for group {group_id}: {}", explain_code(*code, message))]
    Group {
        /// The group.
        group_id: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The node refused one partition's offset (`PartitionNotAssigned`: the member does not
    /// own it; `UnknownTopicOrPartition`). Other partitions of the same commit were stored.
    #[error("cannot commit {topic}/{partition}: {}", explain_code(*code, ""))]
    Partition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The node's code.
        code: ErrorCode,
    },
    /// The request failed (the node may or may not have stored the offsets).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The background commit was cancelled (the runtime shut down) before it answered.
    #[error("the commit was cancelled before the node answered")]
    Cancelled,
}

impl CommitError {
    /// The node's error code, if the node refused the commit.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Group { code, .. } | Self::Partition { code, .. } => Some(*code),
            Self::Request(RequestError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// Why an admin operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The request failed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The node refused the operation for one topic. Other topics in the same call may have
    /// succeeded.
    #[error("{}", explain_topic(topic, *code, message))]
    Topic {
        /// Topic.
        topic: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// The node refused the operation on a group: `GroupIdNotFound` (no members and no
    /// committed offsets), `NonEmptyGroup` (the group has active members: stop them first).
    #[error("{}", explain_group(group_id, *code, message))]
    Group {
        /// The group.
        group_id: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation.
        message: String,
    },
    /// An argument cannot be carried out as given; the message says which and why.
    #[error("{0}")]
    InvalidArgument(String),
    /// The node refused an operation on a named WASM module: `ModuleNotFound` (no module by
    /// that name), `InvalidModule` (not WebAssembly, the wrong exports for its kind, imports,
    /// too large, or it refused its parameters: rebuild it or fix the parameters),
    /// `ModuleInUse` (a topic's `partitioner.module` or `produce.filter.module` names it:
    /// change that config first), `InvalidRequest` (a bad name or a parameter given twice).
    #[error("{}", explain_named("module", name, *code, message))]
    Module {
        /// The module's name.
        name: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation, verbatim.
        message: String,
    },
    /// The node refused an operation on a transform: `TransformNotFound` (no transform by that
    /// name), `TransformAlreadyExists` (one by that name reads another input: remove it
    /// first), `InvalidModule` (as for [`AdminError::Module`]), `UnknownTopicOrPartition`
    /// (the input topic does not exist), `InvalidTopic` (an output or dead-letter topic it
    /// may not write), `InvalidRequest` (a bad name, parameters, or too many transforms).
    #[error("{}", explain_named("transform", name, *code, message))]
    Transform {
        /// The transform's name.
        name: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation, verbatim.
        message: String,
    },
    /// The node refused a cluster operation: `InvalidReplicaAssignment`,
    /// `InvalidReplicationFactor`, `ReassignmentInProgress`, `NoReassignmentInProgress`,
    /// `UnknownTopicOrPartition` (reassignment), `NodeInUse` (decommission), or
    /// `InvalidRequest` on a node with no `[cluster]` section. Nothing changed.
    #[error("{}", explain_code(*code, message))]
    Cluster {
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation, verbatim.
        message: String,
    },
    /// The node refused a user or ACL change: `UnacceptableCredential` (a bad name or
    /// iterations), `UnsupportedSaslMechanism`, `ResourceNotFound` (no such user or
    /// credential), `DuplicateResource`, `PolicyViolation` (a limit), `InvalidRequest` (a bad
    /// ACL binding or filter).
    #[error("{subject}: {}", explain_code(*code, message))]
    Security {
        /// What was refused (`user alice`, `ACL`).
        subject: String,
        /// The node's code.
        code: ErrorCode,
        /// The node's explanation, verbatim.
        message: String,
    },
}

impl AdminError {
    /// The node's error code, if the node refused the operation.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Topic { code, .. }
            | Self::Group { code, .. }
            | Self::Module { code, .. }
            | Self::Transform { code, .. }
            | Self::Cluster { code, .. }
            | Self::Security { code, .. } => Some(*code),
            Self::Request(RequestError::Refused { code, .. }) => Some(*code),
            Self::Request(_) | Self::InvalidArgument(_) => None,
        }
    }
}

/// `topic/partition`, or for records the node partitions, the topic and that fact.
fn place(topic: &str, partition: u32) -> String {
    if partition == NODE_PARTITIONED {
        format!("{topic} (partitioned by the node)")
    } else {
        format!("{topic}/{partition}")
    }
}

/// The node's message with its code, or the code alone when the node sent no message.
fn explain_code(code: ErrorCode, message: &str) -> String {
    if message.is_empty() {
        code.name().to_string()
    } else {
        format!("{message} ({code})")
    }
}

/// A per-topic refusal in words, for the codes a user meets most.
fn explain_topic(topic: &str, code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::UnknownTopicOrPartition => format!("topic {topic} does not exist"),
        ErrorCode::TopicAlreadyExists => format!("topic {topic} already exists"),
        _ => format!("topic {topic}: {}", explain_code(code, message)),
    }
}

/// A refusal about a named module or transform (`what`): the node's message names the
/// problem, so it is kept whole.
fn explain_named(what: &str, name: &str, code: ErrorCode, message: &str) -> String {
    format!("{what} {name}: {}", explain_code(code, message))
}

/// A per-group refusal in words, for the codes a user meets most.
fn explain_group(group_id: &str, code: ErrorCode, message: &str) -> String {
    match code {
        ErrorCode::GroupIdNotFound => {
            format!("group {group_id} does not exist (no members and no committed offsets)")
        }
        ErrorCode::NonEmptyGroup => format!(
            "group {group_id} has active members; stop its consumers (or wait for their \
             session timeout) and try again"
        ),
        _ => format!("group {group_id}: {}", explain_code(code, message)),
    }
}
