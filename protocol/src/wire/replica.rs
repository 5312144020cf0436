//! Replica fetch: the messages a follower sends its partitions' leader to copy their logs
//! (Kafka's follower Fetch with KIP-320's diverging epoch, which folds KIP-279's
//! OffsetForLeaderEpoch into the fetch answer, so no separate message is needed).
//!
//! These travel on the peer protocol between nodes (the cluster's `ledge-peer/0` ALPN, its
//! own request kinds), never on the client protocol, so their errors are their own small
//! enum ([`ReplicaFetchError`]) rather than client [`ErrorCode`](super::ErrorCode)s: a
//! client never sees them, and the peer protocol can change them without touching clients.
//!
//! The encoding is the native protocol's ([`super::codec`]): big-endian, length-prefixed,
//! every count checked against the bytes that remain. On top of that,
//! [`ReplicaFetchRequest::decode_bounded`] and [`ReplicaFetchResponse::decode_bounded`] refuse
//! more partitions than [`ReplicaFetchLimits`] allows and any trailing byte, so a peer's
//! frame can cost no more than its own size and a bounded number of partitions.

use bytes::{BufMut, Bytes};

use super::codec::{FrameWriter, Reader, Wire, WireError, wire_struct};

/// The default most partitions one replica fetch may name: more than any node leads in a
/// test cluster, few enough that one request's work is bounded.
pub const REPLICA_FETCH_PARTITIONS_MAX_DEFAULT: u32 = 10_000;

/// Bounds on a decoded replica fetch, besides the frame's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaFetchLimits {
    /// Most partitions in one request or response.
    pub partitions_max: u32,
}

impl Default for ReplicaFetchLimits {
    fn default() -> Self {
        Self {
            partitions_max: REPLICA_FETCH_PARTITIONS_MAX_DEFAULT,
        }
    }
}

/// Why a replica fetch (or one partition of it) was refused. Kafka's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReplicaFetchError {
    /// No error.
    #[default]
    None,
    /// The asked node does not lead this partition (any more): refresh metadata.
    NotLeaderOrFollower,
    /// The follower's current leader epoch is older than the leader's: refresh metadata.
    FencedLeaderEpoch,
    /// The follower's current leader epoch is newer than the leader's: the leader has not
    /// caught up with metadata yet; retry after a back-off.
    UnknownLeaderEpoch,
    /// The partition is unknown on this node.
    UnknownTopicOrPartition,
    /// The fetch offset is outside the leader's log: below its log start or above its end.
    OffsetOutOfRange,
    /// The follower's node epoch is not the one the controller gave it: a node that
    /// restarted and has not registered again (Kafka's STALE_BROKER_EPOCH).
    StaleNodeEpoch,
    /// The leader could not read its own log (damage, IO): retry after a back-off.
    StorageError,
    /// A code this build does not know (sent by a newer peer).
    Unknown,
}

impl ReplicaFetchError {
    /// The stable wire number (never reused).
    pub fn number(self) -> u8 {
        match self {
            Self::None => 0,
            Self::NotLeaderOrFollower => 1,
            Self::FencedLeaderEpoch => 2,
            Self::UnknownLeaderEpoch => 3,
            Self::UnknownTopicOrPartition => 4,
            Self::OffsetOutOfRange => 5,
            Self::StaleNodeEpoch => 6,
            Self::StorageError => 7,
            Self::Unknown => u8::MAX,
        }
    }

    /// The error for a wire number; an unknown number is [`Self::Unknown`], so a newer
    /// peer's code does not fail the whole frame.
    pub fn from_number(number: u8) -> Self {
        match number {
            0 => Self::None,
            1 => Self::NotLeaderOrFollower,
            2 => Self::FencedLeaderEpoch,
            3 => Self::UnknownLeaderEpoch,
            4 => Self::UnknownTopicOrPartition,
            5 => Self::OffsetOutOfRange,
            6 => Self::StaleNodeEpoch,
            7 => Self::StorageError,
            _ => Self::Unknown,
        }
    }
}

impl Wire for ReplicaFetchError {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_u8(self.number());
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        Ok(Self::from_number(u8::decode(input)?))
    }
}

wire_struct! {
    /// A follower's fetch of many partitions from one leader.
    pub struct ReplicaFetchRequest {
        /// The follower's node id.
        pub replica_id: u32,
        /// The follower's node epoch from its registration; a stale one is refused.
        pub node_epoch: u64,
        /// How long the leader may hold the request when it has nothing new (ms).
        pub max_wait_ms: u32,
        /// Bytes of records that end the wait early.
        pub min_bytes: u32,
        /// Most bytes of records in the whole response.
        pub max_bytes: u32,
        /// The partitions asked for.
        pub partitions: Vec<ReplicaFetchPartition>,
    }
}

wire_struct! {
    /// One partition of a replica fetch.
    pub struct ReplicaFetchPartition {
        /// The topic.
        pub topic: String,
        /// The partition.
        pub partition: u32,
        /// The leader epoch the follower believes current (fencing, KIP-320).
        pub current_leader_epoch: i32,
        /// The follower's synced log end offset: the next offset it wants. The leader takes
        /// it as the follower's position, so it must count only fdatasync'd batches.
        pub fetch_offset: i64,
        /// The epoch of the follower's last batch (`None` for an empty log): the leader
        /// checks it against its own epochs and answers a diverging epoch if they differ.
        pub last_fetched_epoch: Option<i32>,
        /// The follower's log start offset.
        pub log_start_offset: i64,
        /// Most bytes of records for this partition.
        pub partition_max_bytes: u32,
    }
}

wire_struct! {
    /// Where the follower's last fetched epoch ends on the leader (KIP-279/320): the
    /// follower truncates to `end_offset` (or its own end of that epoch, if lower) before
    /// appending anything.
    pub struct DivergingEpoch {
        /// The largest leader epoch <= the follower's last fetched epoch.
        pub epoch: i32,
        /// Where that epoch ends on the leader.
        pub end_offset: i64,
    }
}

wire_struct! {
    /// The leader's answer to a replica fetch.
    pub struct ReplicaFetchResponse {
        /// A whole-request error (a stale node epoch); the partitions are then empty.
        pub error: ReplicaFetchError,
        /// One entry per partition asked for, in the same order.
        pub partitions: Vec<ReplicaFetchPartitionResponse>,
    }
}

wire_struct! {
    /// One partition of a replica fetch answer.
    pub struct ReplicaFetchPartitionResponse {
        /// The topic.
        pub topic: String,
        /// The partition.
        pub partition: u32,
        /// Why this partition was not served, if it was not.
        pub error: ReplicaFetchError,
        /// The leader's high watermark.
        pub high_watermark: i64,
        /// The leader's log start offset.
        pub log_start_offset: i64,
        /// The leader's log end offset.
        pub log_end_offset: i64,
        /// Set when the follower's log diverges from the leader's: truncate first; the
        /// records are then empty.
        pub diverging_epoch: Option<DivergingEpoch>,
        /// Record batches from the fetch offset, as stored on the leader (its offsets and
        /// leader epochs), whole batches only.
        pub records: Bytes,
    }
}

impl ReplicaFetchRequest {
    /// The request's bytes.
    pub fn encode_frame(&self) -> FrameWriter {
        encode_message(self)
    }

    /// Decodes a request, refusing more partitions than `limits` allow and trailing bytes.
    pub fn decode_bounded(
        bytes: Bytes,
        limits: &ReplicaFetchLimits,
    ) -> Result<Self, ReplicaFetchDecodeError> {
        decode_message(bytes, limits, |request: &Self| request.partitions.len())
    }
}

impl ReplicaFetchResponse {
    /// The response's bytes (records by reference, not copied).
    pub fn encode_frame(&self) -> FrameWriter {
        encode_message(self)
    }

    /// Decodes a response, refusing more partitions than `limits` allow and trailing bytes.
    pub fn decode_bounded(
        bytes: Bytes,
        limits: &ReplicaFetchLimits,
    ) -> Result<Self, ReplicaFetchDecodeError> {
        decode_message(bytes, limits, |response: &Self| response.partitions.len())
    }
}

/// Why a replica fetch frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaFetchDecodeError {
    /// The bytes are not a message.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// More partitions than the limit.
    #[error("replica fetch names {count} partitions, more than the limit {max}")]
    TooManyPartitions {
        /// Partitions in the frame.
        count: usize,
        /// The limit.
        max: u32,
    },
}

// The check runs after decoding: the codec already bounds the allocation by the frame's
// size (each partition takes at least its `BYTES_MIN` bytes), so the count limit bounds the
// work done per request, not memory.
/// The bytes of one replica-fetch message.
fn encode_message<T: Wire>(message: &T) -> FrameWriter {
    let mut out = FrameWriter::new();
    message.encode(&mut out);
    out
}

/// Decodes one whole message (trailing bytes refused), then refuses more partitions than
/// `limits` allow.
fn decode_message<T: Wire>(
    bytes: Bytes,
    limits: &ReplicaFetchLimits,
    partitions: impl Fn(&T) -> usize,
) -> Result<T, ReplicaFetchDecodeError> {
    let mut input = Reader::new(bytes);
    let message = T::decode(&mut input)?;
    input.finish()?;
    check_partitions(partitions(&message), limits)?;
    Ok(message)
}

fn check_partitions(
    count: usize,
    limits: &ReplicaFetchLimits,
) -> Result<(), ReplicaFetchDecodeError> {
    if count > limits.partitions_max as usize {
        return Err(ReplicaFetchDecodeError::TooManyPartitions {
            count,
            max: limits.partitions_max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
