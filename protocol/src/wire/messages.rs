//! Request and response bodies of the native protocol, version 0 of every API.
//!
//! Field order is wire order. Kafka's sentinels (-1 offsets, -2 for "earliest") exist only
//! inside the [`OffsetSpec`] and [`Acks`] codecs; Rust code sees enums and `Option`s.

use bytes::{BufMut, Bytes};

use super::codec::{FrameWriter, Reader, Wire, WireError, wire_struct};
use super::error_code::ErrorCode;
use crate::wasm_abi::{OnError, PluginKind};

/// How many replicas must have a produce before it is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Acks {
    /// No acknowledgement: the client does not wait for a response (Kafka `acks=0`).
    None,
    /// Written to the leader's log, not yet synced (Kafka `acks=1`).
    Leader,
    /// Synced to disk on every in-sync replica (Kafka `acks=all`, `-1`).
    #[default]
    All,
}

impl Acks {
    /// Kafka's number for it: 0, 1 or -1.
    pub fn as_i8(self) -> i8 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "0" => Ok(Self::None),
            "1" => Ok(Self::Leader),
            "all" | "-1" => Ok(Self::All),
            other => Err(format!("invalid acks {other:?}: expected 0, 1 or all")),
        }
    }
}

impl Wire for Acks {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_i8(self.as_i8());
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        match i8::decode(input)? {
            0 => Ok(Self::None),
            1 => Ok(Self::Leader),
            -1 => Ok(Self::All),
            value => Err(WireError::InvalidValue {
                field: "acks",
                value: i64::from(value),
            }),
        }
    }
}

/// One byte, [`PluginKind::number`] (the stable table in `wasm_abi.rs`); an unknown number is
/// [`WireError::InvalidValue`] for `plug-in kind`, so the request fails as a whole with a
/// message naming the number.
impl Wire for PluginKind {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_u8(self.number());
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        let number = u8::decode(input)?;
        Self::from_number(number).map_err(|_| WireError::InvalidValue {
            field: "plug-in kind",
            value: i64::from(number),
        })
    }
}

/// One byte, [`OnError::number`]: 0 dead-letter, 1 skip, 2 stop.
impl Wire for OnError {
    const BYTES_MIN: usize = 1;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_u8(self.number());
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        let number = u8::decode(input)?;
        Self::from_number(number).map_err(|_| WireError::InvalidValue {
            field: "on_error",
            value: i64::from(number),
        })
    }
}

/// Which offset a ListOffsets request asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    #[default]
    Earliest,
    /// The high watermark (the next offset to be written and read).
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

impl Wire for OffsetSpec {
    const BYTES_MIN: usize = 8;
    fn encode(&self, out: &mut FrameWriter) {
        out.put_i64(match self {
            Self::Earliest => -2,
            Self::Latest => -1,
            Self::Timestamp(timestamp) => *timestamp,
        });
    }
    fn decode(input: &mut Reader) -> Result<Self, WireError> {
        match i64::decode(input)? {
            -2 => Ok(Self::Earliest),
            -1 => Ok(Self::Latest),
            timestamp if timestamp >= 0 => Ok(Self::Timestamp(timestamp)),
            value => Err(WireError::InvalidValue {
                field: "offset spec",
                value,
            }),
        }
    }
}

wire_struct! {
    /// Opens a session: which API versions each side speaks.
    pub struct ApiVersionsRequest {
        /// Client name, for logs.
        pub client_software_name: String,
        /// Client version, for logs.
        pub client_software_version: String,
    }
}

wire_struct! {
    /// One API and the versions the node supports.
    pub struct ApiVersionRange {
        /// The API key.
        pub api_key: u16,
        /// Oldest supported version.
        pub min_version: u16,
        /// Newest supported version.
        pub max_version: u16,
    }
}

wire_struct! {
    /// The node's supported APIs and limits.
    pub struct ApiVersionsResponse {
        /// Supported APIs.
        pub apis: Vec<ApiVersionRange>,
        /// The node's software version.
        pub node_version: String,
        /// The largest request frame the node accepts.
        pub frame_bytes_max: u32,
    }
}

wire_struct! {
    /// Topics and partitions with their offsets; `None` asks for every topic.
    pub struct MetadataRequest {
        /// Topic names, or `None` for all.
        pub topics: Option<Vec<String>>,
    }
}

wire_struct! {
    /// One partition in a metadata response.
    pub struct PartitionMetadata {
        /// Partition number.
        pub partition: u32,
        /// `PartitionOffline` when the partition could not be opened.
        pub error: ErrorCode,
        /// The node that leads the partition (produce and fetch go there), `None` while no
        /// replica can lead (an offline partition).
        pub leader: Option<u32>,
        /// The leader's epoch: bumped by every election. Clients send it with produce and
        /// fetch so a stale leader, or stale metadata, is detected (KIP-320).
        pub leader_epoch: i32,
        /// The nodes that hold a copy, the preferred leader first.
        pub replicas: Vec<u32>,
        /// The replicas in sync with the leader (the ISR): those whose synced log reaches
        /// the high watermark.
        pub isr: Vec<u32>,
        /// First readable offset.
        pub log_start_offset: i64,
        /// One past the last readable offset.
        pub high_watermark: i64,
        /// Bytes of the partition's segments on disk.
        pub size_bytes: u64,
        /// Number of segments.
        pub segment_count: u32,
        /// Share of the sealed bytes not yet compacted, in per mille (compacted topics).
        pub dirty_ratio_per_mille: u16,
        /// When compaction last rewrote a segment, ms since the epoch, if it has since the
        /// node started.
        pub last_compaction_ms: Option<i64>,
        /// Empty if the partition is healthy; else what is damaged: the reason it is
        /// offline (`error` is `PartitionOffline`), or damage the background verifier found
        /// in a sealed segment (file, byte position, first affected offset; reads from
        /// there fail with `DataDamaged`).
        pub damage: String,
        /// Records from the log start to the high watermark (fewer than the offsets
        /// between them where compaction or a produce filter left offsets without records).
        pub record_count: u64,
    }
}

wire_struct! {
    /// One topic in a metadata response.
    pub struct TopicMetadata {
        /// Topic name.
        pub name: String,
        /// `UnknownTopicOrPartition` when asked for a topic that does not exist.
        pub error: ErrorCode,
        /// Internal topics (`__` prefix) belong to the node.
        pub internal: bool,
        /// Its partitions, in order.
        pub partitions: Vec<PartitionMetadata>,
        /// The topic's partitioner module (`partitioner.module`), empty if none: producers
        /// send records without an explicit partition to [`NODE_PARTITIONED`].
        pub partitioner_module: String,
        /// The topic's id (32 hex digits; the controller's in a cluster, the node's own on a
        /// single node): a topic deleted and created again under the same name gets a new
        /// one, so a client can tell its partitions' leader epochs (restarting at 0) from
        /// stale answers about the old topic (KIP-516). Empty for an unknown topic.
        pub topic_id: String,
        /// Why `error` (`User:alice may not Describe Topic:orders`); empty without one.
        pub message: String,
    }
}

wire_struct! {
    /// A node of the cluster and where clients reach it.
    pub struct NodeMetadata {
        /// Node id.
        pub node_id: u32,
        /// `host:port` of its client listener (UDP, QUIC).
        pub address: String,
    }
}

wire_struct! {
    /// Metadata answer.
    pub struct MetadataResponse {
        /// The id of the node that answered.
        pub node_id: u32,
        /// The live nodes of the cluster, by id (a node with no `[cluster]` section lists
        /// itself alone).
        pub nodes: Vec<NodeMetadata>,
        /// The active controller, `None` while there is none (an election is under way).
        pub controller_id: Option<u32>,
        /// Topics asked for, sorted by name.
        pub topics: Vec<TopicMetadata>,
    }
}

wire_struct! {
    /// A topic config key and value, as text (Kafka's names: `retention.ms`, ...).
    pub struct ConfigEntry {
        /// Key.
        pub name: String,
        /// Value.
        pub value: String,
    }
}

wire_struct! {
    /// A topic to create.
    pub struct CreatableTopic {
        /// Topic name.
        pub name: String,
        /// Partition count.
        pub partitions: u32,
        /// Copies of each partition; `None` asks for the cluster's
        /// `default_replication_factor`.
        pub replication_factor: Option<u16>,
        /// Configs that differ from the defaults (`min.insync.replicas` among them).
        pub configs: Vec<ConfigEntry>,
    }
}

wire_struct! {
    /// Creates topics.
    pub struct CreateTopicsRequest {
        /// Topics to create.
        pub topics: Vec<CreatableTopic>,
        /// Check only; create nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// The outcome for one topic.
    pub struct TopicResult {
        /// Topic name.
        pub name: String,
        /// `None` on success.
        pub error: ErrorCode,
        /// A human-readable explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Per-topic outcomes of CreateTopics.
    pub struct CreateTopicsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Deletes topics and their data.
    pub struct DeleteTopicsRequest {
        /// Topic names.
        pub names: Vec<String>,
    }
}

wire_struct! {
    /// Per-topic outcomes of DeleteTopics.
    pub struct DeleteTopicsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// A topic to grow (Kafka's CreatePartitionsTopic).
    pub struct CreatePartitionsTopic {
        /// Topic name.
        pub name: String,
        /// The new total partition count; must be above the current one.
        pub count: u32,
        /// The replicas of each new partition, the preferred leader first, in partition
        /// order; empty to let the node (the controller in a cluster) place them like a
        /// creation does. When given, one entry per new partition, each as long as the
        /// topic's replication factor.
        pub assignments: Vec<Vec<u32>>,
    }
}

wire_struct! {
    /// Adds partitions to topics (Kafka's CreatePartitions). Partitions are never removed.
    pub struct CreatePartitionsRequest {
        /// Topics to grow.
        pub topics: Vec<CreatePartitionsTopic>,
        /// Check only; add nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// Per-topic outcomes of CreatePartitions.
    pub struct CreatePartitionsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Asks for topics' configs.
    pub struct DescribeConfigsRequest {
        /// Topic names.
        pub topics: Vec<String>,
    }
}

wire_struct! {
    /// One config of a topic.
    pub struct ConfigDescription {
        /// Key.
        pub name: String,
        /// Effective value.
        pub value: String,
        /// Whether the value is the node's default (not set on the topic).
        pub is_default: bool,
    }
}

wire_struct! {
    /// A topic's configs.
    pub struct TopicConfigs {
        /// Topic name.
        pub name: String,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Every known config key, sorted.
        pub configs: Vec<ConfigDescription>,
    }
}

wire_struct! {
    /// Configs of each requested topic.
    pub struct DescribeConfigsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<TopicConfigs>,
    }
}

wire_struct! {
    /// Changes to one topic's configs.
    pub struct AlterTopicConfigs {
        /// Topic name.
        pub name: String,
        /// Keys to set.
        pub set: Vec<ConfigEntry>,
        /// Keys to return to the default.
        pub delete: Vec<String>,
    }
}

wire_struct! {
    /// Changes topic configs (incrementally: keys not named keep their values).
    pub struct AlterConfigsRequest {
        /// Topics to change.
        pub topics: Vec<AlterTopicConfigs>,
        /// Check only; change nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// Per-topic outcomes of AlterConfigs.
    pub struct AlterConfigsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Asks for a producer id for an idempotent producer.
    pub struct InitProducerIdRequest {
        /// Reserved for transactions; must be `None` for now.
        pub transactional_id: Option<String>,
    }
}

wire_struct! {
    /// A fresh producer id, never handed out before by this node.
    pub struct InitProducerIdResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// The producer id.
        pub producer_id: i64,
        /// Its epoch.
        pub producer_epoch: i16,
    }
}

wire_struct! {
    /// Record batches for one partition.
    pub struct ProducePartition {
        /// Partition number.
        pub partition: u32,
        /// The leader epoch the client's metadata names for this partition, `None` to skip
        /// the check. An older epoch is refused with `FencedLeaderEpoch`, a newer one with
        /// `UnknownLeaderEpoch` (KIP-320).
        pub current_leader_epoch: Option<i32>,
        /// One or more whole RecordBatch v2, carried as raw bytes.
        pub records: Bytes,
    }
}

wire_struct! {
    /// Record batches for one topic.
    pub struct ProduceTopic {
        /// Topic name.
        pub name: String,
        /// Its partitions.
        pub partitions: Vec<ProducePartition>,
    }
}

wire_struct! {
    /// Appends record batches.
    pub struct ProduceRequest {
        /// Acknowledgement level.
        pub acks: Acks,
        /// How long to wait for durability before answering `RequestTimedOut`.
        pub timeout_ms: u32,
        /// Batches by topic and partition.
        pub topics: Vec<ProduceTopic>,
    }
}

wire_struct! {
    /// The outcome for one partition of a produce.
    pub struct ProducePartitionResponse {
        /// Partition number.
        pub partition: u32,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Offset of the first record of the first batch.
        pub base_offset: i64,
        /// The log append time if the topic uses it, else -1.
        pub log_append_time_ms: i64,
        /// The partition's log start offset.
        pub log_start_offset: i64,
        /// For a produce to [`NODE_PARTITIONED`]: where the topic's partitioner module
        /// sent the records, in request order (one partition per record, dropped records
        /// `u32::MAX`) and the first offset written in each partition.
        pub routed: Option<ProduceRouting>,
    }
}

/// A produce to this partition number asks the node to partition the records with the
/// topic's partitioner module (`partitioner.module`).
pub const NODE_PARTITIONED: u32 = u32::MAX;

wire_struct! {
    /// Where a node-partitioned produce put its records.
    pub struct ProduceRouting {
        /// The partition of each record in request order; `u32::MAX` for a dropped record.
        pub record_partitions: Vec<u32>,
        /// `(partition, offset of its first record)` for every partition written.
        pub base_offsets: Vec<PartitionOffset>,
    }
}

wire_struct! {
    /// An offset in one partition.
    pub struct PartitionOffset {
        /// Partition number.
        pub partition: u32,
        /// The offset.
        pub offset: i64,
    }
}

wire_struct! {
    /// Produce outcomes for one topic.
    pub struct ProduceTopicResponse {
        /// Topic name.
        pub name: String,
        /// One per requested partition, in request order.
        pub partitions: Vec<ProducePartitionResponse>,
    }
}

wire_struct! {
    /// Produce outcomes.
    pub struct ProduceResponse {
        /// How long the client is throttled for exceeding its principal's
        /// `producer_byte_rate` quota, in milliseconds; 0 within it (Kafka's
        /// `throttle_time_ms`, KIP-219). The answer is sent at once; the node holds the
        /// connection's next Produce until the time has passed, and a well-behaved client
        /// waits it out before sending one.
        pub throttle_time_ms: u32,
        /// One per requested topic, in request order.
        pub topics: Vec<ProduceTopicResponse>,
    }
}

wire_struct! {
    /// Where to read in one partition.
    pub struct FetchPartition {
        /// Partition number.
        pub partition: u32,
        /// The leader epoch the client's metadata names for this partition, `None` to skip
        /// the check (as for produce).
        pub current_leader_epoch: Option<i32>,
        /// First offset wanted.
        pub fetch_offset: i64,
        /// Most bytes to return for this partition (at least one whole batch is returned).
        pub partition_max_bytes: u32,
    }
}

wire_struct! {
    /// Where to read in one topic.
    pub struct FetchTopic {
        /// Topic name.
        pub name: String,
        /// Its partitions.
        pub partitions: Vec<FetchPartition>,
    }
}

wire_struct! {
    /// Reads record batches, waiting up to `max_wait_ms` for `min_bytes` (long poll).
    pub struct FetchRequest {
        /// Longest wait for `min_bytes` to arrive.
        pub max_wait_ms: u32,
        /// Answer as soon as this many bytes are available.
        pub min_bytes: u32,
        /// Most bytes in the whole response.
        pub max_bytes: u32,
        /// What to read.
        pub topics: Vec<FetchTopic>,
        /// A named filter, map or filter_map module the node applies to every record
        /// before sending (dropped records never cross the network; offsets are kept).
        pub plugin: Option<PluginRef>,
    }
}

wire_struct! {
    /// Data for one partition of a fetch.
    pub struct FetchPartitionResponse {
        /// Partition number.
        pub partition: u32,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set (a fetch plug-in's failure names the record).
        pub message: String,
        /// One past the last readable offset.
        pub high_watermark: i64,
        /// First readable offset.
        pub log_start_offset: i64,
        /// Whole RecordBatch v2, the first containing `fetch_offset`; raw bytes.
        pub records: Bytes,
    }
}

wire_struct! {
    /// Data for one topic of a fetch.
    pub struct FetchTopicResponse {
        /// Topic name.
        pub name: String,
        /// One per requested partition, in request order.
        pub partitions: Vec<FetchPartitionResponse>,
    }
}

wire_struct! {
    /// Fetch answer.
    pub struct FetchResponse {
        /// How long the client is throttled for exceeding its principal's
        /// `consumer_byte_rate` quota, in milliseconds; 0 within it (Kafka's
        /// `throttle_time_ms`, KIP-219): the node holds the connection's next Fetch until
        /// the time has passed.
        pub throttle_time_ms: u32,
        /// Set when the whole fetch was refused (its plug-in is unknown or invalid).
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// One per requested topic, in request order.
        pub topics: Vec<FetchTopicResponse>,
    }
}

wire_struct! {
    /// Which offset to look up in one partition.
    pub struct ListOffsetsPartition {
        /// Partition number.
        pub partition: u32,
        /// Earliest, latest or by timestamp.
        pub spec: OffsetSpec,
    }
}

wire_struct! {
    /// Offsets to look up in one topic.
    pub struct ListOffsetsTopic {
        /// Topic name.
        pub name: String,
        /// Its partitions.
        pub partitions: Vec<ListOffsetsPartition>,
    }
}

wire_struct! {
    /// Looks up offsets: log start, high watermark, or the first at or after a time.
    pub struct ListOffsetsRequest {
        /// What to look up.
        pub topics: Vec<ListOffsetsTopic>,
    }
}

wire_struct! {
    /// One looked-up offset.
    pub struct ListOffsetsPartitionResponse {
        /// Partition number.
        pub partition: u32,
        /// `None` on success.
        pub error: ErrorCode,
        /// The offset; `None` when no record is at or after the timestamp.
        pub offset: Option<i64>,
        /// The record's timestamp for a timestamp lookup.
        pub timestamp: Option<i64>,
        /// Why `error` (`User:alice may not Describe Topic:orders`); empty without one.
        pub message: String,
    }
}

wire_struct! {
    /// Looked-up offsets for one topic.
    pub struct ListOffsetsTopicResponse {
        /// Topic name.
        pub name: String,
        /// One per requested partition, in request order.
        pub partitions: Vec<ListOffsetsPartitionResponse>,
    }
}

wire_struct! {
    /// ListOffsets answer.
    pub struct ListOffsetsResponse {
        /// One per requested topic, in request order.
        pub topics: Vec<ListOffsetsTopicResponse>,
    }
}

wire_struct! {
    /// Partitions of one topic.
    pub struct TopicPartitions {
        /// Topic name.
        pub topic: String,
        /// Partition numbers, ascending.
        pub partitions: Vec<u32>,
    }
}

wire_struct! {
    /// Joins, stays in, or leaves a consumer group; the node assigns partitions (KIP-848
    /// style: every exchange is a heartbeat, assignment is computed by the node).
    pub struct ConsumerGroupHeartbeatRequest {
        /// The group.
        pub group_id: String,
        /// Empty to join; afterwards the id the node gave.
        pub member_id: String,
        /// 0 to join, -1 to leave, -2 for a static member leaving temporarily; otherwise
        /// the epoch of the assignment the member holds.
        pub member_epoch: i32,
        /// `group.instance.id` for static membership.
        pub instance_id: Option<String>,
        /// How long the member may take to give up revoked partitions.
        pub rebalance_timeout_ms: u32,
        /// The member is removed if it sends no heartbeat for this long.
        pub session_timeout_ms: u32,
        /// Topics subscribed by name.
        pub subscribed_topics: Vec<String>,
        /// Topics subscribed by regular expression (matched against every topic).
        pub subscribed_pattern: Option<String>,
        /// `range`, `round-robin` or `cooperative-sticky`; all members must agree.
        pub assignor: String,
        /// Partitions the member holds right now.
        pub owned_partitions: Vec<TopicPartitions>,
    }
}

wire_struct! {
    /// The member's id, epoch and the partitions it should hold now.
    pub struct ConsumerGroupHeartbeatResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The member's id.
        pub member_id: String,
        /// The epoch of `assignment`.
        pub member_epoch: i32,
        /// How often to heartbeat.
        pub heartbeat_interval_ms: u32,
        /// Every partition the member should hold; owned ones not listed must be revoked.
        pub assignment: Vec<TopicPartitions>,
    }
}

wire_struct! {
    /// One partition's offset to commit.
    pub struct OffsetCommitPartition {
        /// Partition number.
        pub partition: u32,
        /// The next offset to consume.
        pub offset: i64,
        /// Free-form metadata stored with it.
        pub metadata: String,
    }
}

wire_struct! {
    /// Offsets to commit in one topic.
    pub struct OffsetCommitTopic {
        /// Topic name.
        pub name: String,
        /// Its partitions.
        pub partitions: Vec<OffsetCommitPartition>,
    }
}

wire_struct! {
    /// Commits offsets for a group. A member commits with its id and epoch; an empty member
    /// id is an administrative commit (reset), accepted only while the group has no members.
    pub struct OffsetCommitRequest {
        /// The group.
        pub group_id: String,
        /// The committing member, or empty for an administrative commit.
        pub member_id: String,
        /// The member's epoch.
        pub member_epoch: i32,
        /// What to commit.
        pub topics: Vec<OffsetCommitTopic>,
    }
}

wire_struct! {
    /// The outcome for one partition of a commit.
    pub struct OffsetCommitPartitionResponse {
        /// Partition number.
        pub partition: u32,
        /// `None` on success.
        pub error: ErrorCode,
    }
}

wire_struct! {
    /// Commit outcomes in one topic.
    pub struct OffsetCommitTopicResponse {
        /// Topic name.
        pub name: String,
        /// One per requested partition.
        pub partitions: Vec<OffsetCommitPartitionResponse>,
    }
}

wire_struct! {
    /// Commit outcomes.
    pub struct OffsetCommitResponse {
        /// A group-level error (unknown member, fenced epoch, non-empty group).
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Per partition, when there is no group-level error.
        pub topics: Vec<OffsetCommitTopicResponse>,
    }
}

wire_struct! {
    /// Reads a group's committed offsets.
    pub struct OffsetFetchRequest {
        /// The group.
        pub group_id: String,
        /// Partitions to read, or `None` for every committed one.
        pub topics: Option<Vec<TopicPartitions>>,
    }
}

wire_struct! {
    /// One committed offset.
    pub struct OffsetFetchPartition {
        /// Partition number.
        pub partition: u32,
        /// The committed offset, if any.
        pub offset: Option<i64>,
        /// Metadata committed with it.
        pub metadata: String,
        /// When it was committed, ms since the epoch (-1 if none).
        pub commit_time_ms: i64,
    }
}

wire_struct! {
    /// Committed offsets in one topic.
    pub struct OffsetFetchTopic {
        /// Topic name.
        pub name: String,
        /// Its partitions.
        pub partitions: Vec<OffsetFetchPartition>,
    }
}

wire_struct! {
    /// A group's committed offsets.
    pub struct OffsetFetchResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Offsets by topic.
        pub topics: Vec<OffsetFetchTopic>,
    }
}

wire_struct! {
    /// Lists consumer groups.
    pub struct ListGroupsRequest {
        /// Only groups in these states (`Empty`, `Stable`, `Reconciling`); all if empty.
        pub states: Vec<String>,
    }
}

wire_struct! {
    /// One group in a listing.
    pub struct ListedGroup {
        /// The group id.
        pub group_id: String,
        /// `Empty`, `Stable` or `Reconciling`.
        pub state: String,
        /// Active members.
        pub members: u32,
    }
}

wire_struct! {
    /// Consumer groups the node knows (with members or committed offsets).
    pub struct ListGroupsResponse {
        /// Groups, sorted by id.
        pub groups: Vec<ListedGroup>,
    }
}

wire_struct! {
    /// Describes groups.
    pub struct DescribeGroupsRequest {
        /// Group ids.
        pub group_ids: Vec<String>,
    }
}

wire_struct! {
    /// One member of a described group.
    pub struct DescribedMember {
        /// Member id.
        pub member_id: String,
        /// Static `group.instance.id`, if any.
        pub instance_id: Option<String>,
        /// The client's id.
        pub client_id: String,
        /// The member's epoch.
        pub member_epoch: i32,
        /// Topics it subscribes to (patterns resolved).
        pub subscribed_topics: Vec<String>,
        /// Partitions it is assigned now.
        pub assignment: Vec<TopicPartitions>,
    }
}

wire_struct! {
    /// One described group.
    pub struct DescribedGroup {
        /// The group id.
        pub group_id: String,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// `Empty`, `Stable` or `Reconciling`.
        pub state: String,
        /// The group's assignor.
        pub assignor: String,
        /// The group epoch.
        pub group_epoch: i32,
        /// Active members.
        pub members: Vec<DescribedMember>,
    }
}

wire_struct! {
    /// Described groups.
    pub struct DescribeGroupsResponse {
        /// One per requested id, in request order.
        pub groups: Vec<DescribedGroup>,
    }
}

wire_struct! {
    /// Deletes groups (their committed offsets); only groups without members.
    pub struct DeleteGroupsRequest {
        /// Group ids.
        pub group_ids: Vec<String>,
    }
}

wire_struct! {
    /// The outcome for one group.
    pub struct GroupResult {
        /// The group id.
        pub group_id: String,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Deletion outcomes.
    pub struct DeleteGroupsResponse {
        /// One per requested id, in request order.
        pub groups: Vec<GroupResult>,
    }
}

wire_struct! {
    /// A deployment parameter of a module (`threshold=1000`).
    pub struct PluginParam {
        /// Name; unique within a deployment.
        pub key: String,
        /// Value as text; the module parses it into its parameter's type.
        pub value: String,
    }
}

wire_struct! {
    /// A named module with parameters, for a fetch.
    pub struct PluginRef {
        /// The module's name (`ledge module upload NAME`).
        pub module: String,
        /// Parameters, overriding the module's defaults.
        pub params: Vec<PluginParam>,
    }
}

wire_struct! {
    /// Stores a module under a name (replacing the name's previous module).
    pub struct UploadModuleRequest {
        /// The name consumers and topic configs use.
        pub name: String,
        /// What the module does (one byte, [`PluginKind::number`]).
        pub kind: PluginKind,
        /// The `.wasm` bytes.
        pub module: Bytes,
        /// Default parameters.
        pub params: Vec<PluginParam>,
    }
}

wire_struct! {
    /// Upload outcome.
    pub struct UploadModuleResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// SHA-256 of the module, hex.
        pub hash: String,
    }
}

wire_struct! {
    /// Lists named modules.
    pub struct ListModulesRequest {}
}

wire_struct! {
    /// A named module.
    pub struct ModuleDescription {
        /// Name.
        pub name: String,
        /// Kind.
        pub kind: PluginKind,
        /// SHA-256, hex.
        pub hash: String,
        /// Size of the `.wasm` in bytes.
        pub size_bytes: u64,
        /// Default parameters.
        pub params: Vec<PluginParam>,
        /// Upload time, ms since the epoch.
        pub uploaded_ms: i64,
    }
}

wire_struct! {
    /// Named modules, sorted by name.
    pub struct ListModulesResponse {
        /// The modules.
        pub modules: Vec<ModuleDescription>,
    }
}

wire_struct! {
    /// Removes a named module.
    pub struct DeleteModuleRequest {
        /// Name.
        pub name: String,
    }
}

wire_struct! {
    /// Removal outcome.
    pub struct DeleteModuleResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Deploys a topic transform, or a new version of one (swapped at a batch boundary,
    /// keeping its input position).
    pub struct DeployTransformRequest {
        /// The transform's name.
        pub name: String,
        /// Kind of the module.
        pub kind: PluginKind,
        /// The `.wasm` bytes.
        pub module: Bytes,
        /// Input topic.
        pub input: String,
        /// Output topic; empty means `<input>.<name>`. Created with the input's partition
        /// count if missing.
        pub output: String,
        /// Parameters.
        pub params: Vec<PluginParam>,
        /// What a record the module fails does.
        pub on_error: OnError,
        /// Dead-letter topic; empty means `<name>.dead-letter`.
        pub dead_letter_topic: String,
        /// A join's second input as a table (`join.table`): latest value per key, a null
        /// value deletes. Empty: none. At most one of this and `join_with`.
        pub join_table: String,
        /// A join's second input as a stream (`join.with`), paired within the window below.
        /// Empty: none.
        pub join_with: String,
        /// Stream-stream join: how far a right record may precede its left partner, ms
        /// (`join.before_ms`).
        pub join_before_ms: i64,
        /// Stream-stream join: how far a right record may follow its left partner, ms
        /// (`join.after_ms`).
        pub join_after_ms: i64,
        /// Stream-stream join: how long out-of-order records are still joined, ms
        /// (`join.grace_ms`).
        pub join_grace_ms: i64,
        /// An aggregate's event-time window (`None`: not windowed).
        pub window: Option<TransformWindow>,
    }
}

wire_struct! {
    /// A windowed aggregate's deploy settings (docs/STREAMS.md, "Windows"), each named as in
    /// `[[transform]]`'s `window.*` keys. The kind is `size_ms` alone (tumbling), `size_ms`
    /// and `advance_ms` (hopping) or `gap_ms` (session); `kind` may say it explicitly.
    pub struct TransformWindow {
        /// `tumbling`, `hopping`, `session`, or empty (from the settings given).
        pub kind: String,
        /// `window.size_ms`: a tumbling or hopping window's length.
        pub size_ms: Option<i64>,
        /// `window.advance_ms`: a hopping window's step.
        pub advance_ms: Option<i64>,
        /// `window.gap_ms`: a session window's inactivity gap.
        pub gap_ms: Option<i64>,
        /// `window.grace_ms`: records this late after a window's end still count (default 0).
        pub grace_ms: Option<i64>,
        /// `window.retention_ms`: how long a closed window's state stays queryable.
        pub retention_ms: Option<i64>,
        /// `window.emit`: `changes` (default, every change) or `suppress` (one final result
        /// per window when it closes); empty for the default.
        pub emit: String,
    }
}

wire_struct! {
    /// Deploy outcome.
    pub struct DeployTransformResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The deployed version (1 for a new transform).
        pub version: u32,
    }
}

wire_struct! {
    /// Describes transforms.
    pub struct DescribeTransformsRequest {
        /// Names; empty for every transform.
        pub names: Vec<String>,
    }
}

wire_struct! {
    /// A transform's definition and live status.
    pub struct TransformDescription {
        /// Name.
        pub name: String,
        /// `ModuleNotFound` for an unknown name.
        pub error: ErrorCode,
        /// Kind of its module.
        pub kind: PluginKind,
        /// Input topic.
        pub input: String,
        /// Output topic.
        pub output: String,
        /// Dead-letter topic.
        pub dead_letter_topic: String,
        /// Error policy.
        pub on_error: OnError,
        /// Module SHA-256, hex.
        pub module_hash: String,
        /// Parameters.
        pub params: Vec<PluginParam>,
        /// Deployed version.
        pub version: u32,
        /// `running`, `paused` or `failed`.
        pub state: String,
        /// Why it is paused or failed, or the last record error.
        pub last_error: String,
        /// Records read since the node started.
        pub records_in: u64,
        /// Records written to the output since the node started.
        pub records_out: u64,
        /// Records sent to the dead-letter topic (or skipped) since the node started.
        pub records_dead: u64,
        /// Records of the input not processed yet, over all partitions.
        pub lag: u64,
        /// Time spent inside the module since the node started, µs.
        pub busy_us: u64,
        /// Per input partition: next input offset to process.
        pub positions: Vec<PartitionOffset>,
        /// The input partitions this node runs (every one on a node alone; in a cluster the
        /// ones it leads), with this node's figures for each. A client asks each
        /// partition's leader for its own.
        pub partitions: Vec<TransformPartitionStatus>,
        /// A stateful transform's state partitions (0: a stateless transform).
        pub state_partitions: u32,
        /// Of those, restored and running on this node.
        pub state_partitions_ready: u32,
        /// Bytes of state on this node, over its state partitions (key + value + 160 an
        /// entry, as `transforms.state_memory_bytes_max` counts them).
        pub state_bytes: u64,
        /// Changelog records read by this node's restores of the state since it started.
        pub restore_records: u64,
        /// A join's second input (empty: not a join).
        pub join_input: String,
        /// True when that input is read as a table (stream-table join).
        pub join_table: bool,
        /// Per partition of the second input: next offset to process.
        pub join_positions: Vec<PartitionOffset>,
        /// Records of the second input not processed yet, over all partitions.
        pub join_lag: u64,
        /// A windowed aggregate's window, as deployed with defaults filled in.
        pub window: Option<TransformWindow>,
        /// Windows holding state that are not closed yet, over this node's state partitions.
        pub windows_open: u64,
        /// Records dropped unprocessed since the node started: late (a windowed aggregate's
        /// record whose windows are all closed, a join's record behind its window), or
        /// without a key a join can match.
        pub records_late: u64,
    }
}

wire_struct! {
    /// One input partition of a transform as the node running it sees it.
    pub struct TransformPartitionStatus {
        /// Input partition.
        pub partition: u32,
        /// The node running it (the one answering).
        pub node_id: u32,
        /// Next input offset to process.
        pub position: i64,
        /// Records of the partition not processed yet (its high watermark here less the
        /// position).
        pub lag: u64,
        /// Records read from it since this node started running it.
        pub records_in: u64,
        /// Records written to the output from it since then.
        pub records_out: u64,
        /// Records of it sent to the dead-letter topic (or skipped) since then.
        pub records_dead: u64,
        /// Time spent inside the module on it since then, µs.
        pub busy_us: u64,
    }
}

wire_struct! {
    /// Transforms.
    pub struct DescribeTransformsResponse {
        /// One per requested name, or every transform sorted by name.
        pub transforms: Vec<TransformDescription>,
    }
}

wire_struct! {
    /// Pauses, resumes or removes a transform.
    pub struct AlterTransformRequest {
        /// Name.
        pub name: String,
        /// `pause`, `resume` or `remove`.
        pub action: String,
    }
}

wire_struct! {
    /// Outcome.
    pub struct AlterTransformResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Asks for the cluster's nodes, controller and unhealthy partitions.
    pub struct DescribeClusterRequest {}
}

wire_struct! {
    /// A node as the controller sees it.
    pub struct ClusterNode {
        /// Node id.
        pub node_id: u32,
        /// `host:port` of its client listener.
        pub address: String,
        /// Whether it is registered and heartbeating (not fenced).
        pub alive: bool,
        /// Its current registration's epoch (a restart registers again with a larger one).
        pub node_epoch: u64,
    }
}

wire_struct! {
    /// A partition with fewer in-sync replicas than replicas, or without a leader.
    pub struct ClusterPartition {
        /// Topic name.
        pub topic: String,
        /// Partition number.
        pub partition: u32,
        /// Its leader, `None` when offline.
        pub leader: Option<u32>,
        /// The nodes that hold a copy.
        pub replicas: Vec<u32>,
        /// The replicas in sync.
        pub isr: Vec<u32>,
    }
}

wire_struct! {
    /// The cluster's nodes, controller and unhealthy partitions.
    pub struct DescribeClusterResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The cluster's id (empty for a node with no `[cluster]` section).
        pub cluster_id: String,
        /// The active controller, `None` while there is none.
        pub controller_id: Option<u32>,
        /// Every node of the cluster, by id, alive or not.
        pub nodes: Vec<ClusterNode>,
        /// Partitions whose ISR is smaller than their replica set.
        pub under_replicated: Vec<ClusterPartition>,
        /// Partitions without a leader.
        pub offline: Vec<ClusterPartition>,
    }
}

wire_struct! {
    /// Moves leadership back to each partition's preferred replica (the first) where it is
    /// alive and in the ISR, now (Kafka's ElectLeaders with the preferred election type).
    pub struct ElectLeadersRequest {
        /// One topic, or `None` for every topic.
        pub topic: Option<String>,
    }
}

wire_struct! {
    /// The partitions whose leader moved, and those still not led by their preferred replica.
    pub struct ElectLeadersResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Now led by their preferred replica.
        pub moved: Vec<ClusterPartition>,
        /// Still led by another replica (the preferred one is not alive or not in the ISR).
        pub not_preferred: Vec<ClusterPartition>,
    }
}

wire_struct! {
    /// Starts (or cancels) moving one partition to other replicas (Kafka's
    /// AlterPartitionReassignments, one partition per request).
    pub struct AlterPartitionReassignmentsRequest {
        /// Topic name.
        pub topic: String,
        /// Partition number.
        pub partition: u32,
        /// The target replicas, the preferred leader first; ignored by a cancel.
        pub replicas: Vec<u32>,
        /// Cancel the partition's reassignment instead (back to its original replicas).
        pub cancel: bool,
    }
}

wire_struct! {
    /// The reassignment is started (or cancelled, or complete at once) in the metadata.
    pub struct AlterPartitionReassignmentsResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Lists the reassignments in progress.
    pub struct ListPartitionReassignmentsRequest {
        /// One topic, or `None` for every topic.
        pub topic: Option<String>,
    }
}

wire_struct! {
    /// A partition being moved.
    pub struct PartitionReassignment {
        /// Topic name.
        pub topic: String,
        /// Partition number.
        pub partition: u32,
        /// Its replicas while it moves: the target, then the ones being removed.
        pub replicas: Vec<u32>,
        /// Being added (copying from the leader until they are in the ISR).
        pub adding: Vec<u32>,
        /// Being removed once every target replica is in the ISR.
        pub removing: Vec<u32>,
        /// The in-sync replicas now.
        pub isr: Vec<u32>,
        /// The leader now.
        pub leader: Option<u32>,
    }
}

wire_struct! {
    /// The reassignments in progress.
    pub struct ListPartitionReassignmentsResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The partitions being moved.
        pub reassignments: Vec<PartitionReassignment>,
    }
}

wire_struct! {
    /// Removes a stopped node that holds no replica from the cluster.
    pub struct DecommissionNodeRequest {
        /// The node.
        pub node_id: u32,
    }
}

wire_struct! {
    /// The node is removed from the cluster's metadata.
    pub struct DecommissionNodeResponse {
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Asks which node coordinates a consumer group (Kafka's FindCoordinator, key type
    /// group).
    pub struct FindCoordinatorRequest {
        /// The group id.
        pub group_id: String,
    }
}

wire_struct! {
    /// The node that coordinates a group: the leader of the group's `__consumer_offsets`
    /// partition.
    pub struct FindCoordinatorResponse {
        /// `None` on success; `CoordinatorNotAvailable` while the partition has no leader.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The coordinator's node id.
        pub node_id: u32,
        /// `host:port` of its client listener.
        pub address: String,
    }
}

// SASL users and ACLs (issue 15). Mechanisms travel by SASL name (`SCRAM-SHA-256`); ACL
// fields by Kafka's codes (`AclOperation`, `AclPermissionType`, `PatternType`,
// `ResourceType`, with Ledge's module 64 and transform 65), as CreateAcls carries them.

wire_struct! {
    /// Sets a user's credential for one mechanism. The client salts and hashes the
    /// password (`SaltedPassword = Hi(password, salt, iterations)`, as Kafka's clients do for
    /// AlterUserScramCredentials): the password never travels, and the node stores only
    /// keys derived from the salted password.
    pub struct ScramUpsertion {
        /// The user name.
        pub name: String,
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        pub mechanism: String,
        /// PBKDF2 iterations, 4096..=16384.
        pub iterations: u32,
        /// The salt.
        pub salt: Bytes,
        /// `Hi(password, salt, iterations)`.
        pub salted_password: Bytes,
    }
}

wire_struct! {
    /// Removes a user's credential for one mechanism.
    pub struct ScramDeletion {
        /// The user name.
        pub name: String,
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        pub mechanism: String,
    }
}

wire_struct! {
    /// Changes SASL users: at most one change per user per request.
    pub struct AlterUserScramCredentialsRequest {
        /// Credentials to remove.
        pub deletions: Vec<ScramDeletion>,
        /// Credentials to set.
        pub upsertions: Vec<ScramUpsertion>,
    }
}

wire_struct! {
    /// One user's outcome.
    pub struct UserResult {
        /// The user name.
        pub name: String,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Each user's outcome.
    pub struct AlterUserScramCredentialsResponse {
        /// One per user named in the request.
        pub results: Vec<UserResult>,
    }
}

wire_struct! {
    /// Describes SASL users.
    pub struct DescribeUserScramCredentialsRequest {
        /// The users; empty: every user.
        pub users: Vec<String>,
    }
}

wire_struct! {
    /// One credential of a user: never a key, only the mechanism and its iterations.
    pub struct ScramCredentialInfo {
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        pub mechanism: String,
        /// PBKDF2 iterations.
        pub iterations: u32,
    }
}

wire_struct! {
    /// A user and its credentials.
    pub struct UserScramDescription {
        /// The user name.
        pub name: String,
        /// `None`, or `ResourceNotFound` for a user without credentials.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Its credentials, by mechanism.
        pub credentials: Vec<ScramCredentialInfo>,
    }
}

wire_struct! {
    /// The users asked for, sorted by name when all were asked for.
    pub struct DescribeUserScramCredentialsResponse {
        /// The users.
        pub users: Vec<UserScramDescription>,
    }
}

wire_struct! {
    /// One ACL, with Kafka's codes.
    pub struct AclBindingWire {
        /// Resource type code (2 topic, 3 group, 4 cluster, 5 transactional id, 64 module,
        /// 65 transform).
        pub resource_type: i8,
        /// Resource name (`kafka-cluster` for the cluster, `*` for every resource).
        pub resource_name: String,
        /// Pattern type code (3 literal, 4 prefixed).
        pub pattern_type: i8,
        /// `Type:name`, e.g. `User:alice`.
        pub principal: String,
        /// `*` or an IP address.
        pub host: String,
        /// Operation code (Kafka's `AclOperation`).
        pub operation: i8,
        /// Permission code (2 deny, 3 allow).
        pub permission: i8,
    }
}

wire_struct! {
    /// A filter over ACLs, with Kafka's codes: 1 (ANY) in a code field and `None` in a
    /// text field match every value; pattern type 2 (MATCH) matches the bindings that
    /// apply to the named resource.
    pub struct AclFilterWire {
        /// Resource type code, or 1.
        pub resource_type: i8,
        /// Resource name, or `None`.
        pub resource_name: Option<String>,
        /// Pattern type code, 1 or 2.
        pub pattern_type: i8,
        /// Principal, or `None`.
        pub principal: Option<String>,
        /// Host, or `None`.
        pub host: Option<String>,
        /// Operation code, or 1.
        pub operation: i8,
        /// Permission code, or 1.
        pub permission: i8,
    }
}

wire_struct! {
    /// Adds ACLs.
    pub struct CreateAclsRequest {
        /// The bindings.
        pub bindings: Vec<AclBindingWire>,
    }
}

wire_struct! {
    /// One binding's outcome.
    pub struct AclResult {
        /// `None` on success (also when it existed already).
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Each binding's outcome, in request order.
    pub struct CreateAclsResponse {
        /// One per binding.
        pub results: Vec<AclResult>,
    }
}

wire_struct! {
    /// Lists the ACLs a filter matches.
    pub struct DescribeAclsRequest {
        /// The filter.
        pub filter: AclFilterWire,
    }
}

wire_struct! {
    /// The matching ACLs, by resource type, pattern type and name.
    pub struct DescribeAclsResponse {
        /// `None`, or why the filter was refused.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The bindings.
        pub bindings: Vec<AclBindingWire>,
    }
}

wire_struct! {
    /// Removes the ACLs each filter matches.
    pub struct DeleteAclsRequest {
        /// The filters.
        pub filters: Vec<AclFilterWire>,
    }
}

wire_struct! {
    /// What one filter removed.
    pub struct DeleteAclsResult {
        /// `None`, or why nothing was removed.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The bindings it removed.
        pub bindings: Vec<AclBindingWire>,
    }
}

wire_struct! {
    /// Each filter's outcome, in request order.
    pub struct DeleteAclsResponse {
        /// One per filter.
        pub results: Vec<DeleteAclsResult>,
    }
}

wire_struct! {
    /// Starts SASL authentication on a connection (Kafka's SaslHandshake, v1 semantics): the
    /// mechanism the client will use. Then SaslAuthenticate requests carry the exchange.
    pub struct SaslHandshakeRequest {
        /// `SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`.
        pub mechanism: String,
    }
}

wire_struct! {
    /// The mechanisms the node enables, and whether the chosen one is among them.
    pub struct SaslHandshakeResponse {
        /// `None`; `UnsupportedSaslMechanism` (the connection is then closed);
        /// `IllegalSaslState` (an exchange is under way, or the connection authenticated).
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The mechanisms enabled on this listener (`[security] sasl_mechanisms`).
        pub mechanisms: Vec<String>,
    }
}

wire_struct! {
    /// One client message of the exchange (SCRAM client-first or client-final, or PLAIN's
    /// one message), as Kafka's SaslAuthenticate carries it.
    pub struct SaslAuthenticateRequest {
        /// The SASL message.
        pub auth_bytes: Bytes,
    }
}

wire_struct! {
    /// The node's reply to one client message.
    pub struct SaslAuthenticateResponse {
        /// `None`; `SaslAuthenticationFailed` (the connection is then closed);
        /// `IllegalSaslState` (no exchange under way).
        pub error: ErrorCode,
        /// Explanation when `error` is set; never tells an unknown user from a wrong
        /// password, never repeats a secret.
        pub message: String,
        /// The server's SASL message (SCRAM server-first or server-final; empty for PLAIN).
        pub auth_bytes: Bytes,
        /// Once the exchange completed: how long the authentication holds, in ms; 0 means
        /// for the connection's life (QUIC connections do not re-authenticate).
        pub session_lifetime_ms: u64,
    }
}

wire_struct! {
    /// One change of a client quota key (issue 15; Kafka's AlterClientQuotas op).
    pub struct ClientQuotaOp {
        /// `producer_byte_rate` or `consumer_byte_rate`.
        pub key: String,
        /// Bytes per second (ignored when `remove`).
        pub value: u64,
        /// Remove the key instead of setting it.
        pub remove: bool,
    }
}

wire_struct! {
    /// One user's (or the default user's) quota changes.
    pub struct ClientQuotaAlteration {
        /// The user name; `None`: the default user (`<default>`).
        pub user: Option<String>,
        /// The changes, each key at most once.
        pub ops: Vec<ClientQuotaOp>,
    }
}

wire_struct! {
    /// Sets or removes client quotas (Kafka's AlterClientQuotas, user entities only).
    pub struct AlterClientQuotasRequest {
        /// One per entity.
        pub entries: Vec<ClientQuotaAlteration>,
        /// Check only; store nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// One entity's outcome.
    pub struct ClientQuotaResult {
        /// The user name; `None`: the default user.
        pub user: Option<String>,
        /// `None` on success.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
    }
}

wire_struct! {
    /// Each entity's outcome, in request order.
    pub struct AlterClientQuotasResponse {
        /// One per entry of the request.
        pub results: Vec<ClientQuotaResult>,
    }
}

wire_struct! {
    /// Describes client quotas.
    pub struct DescribeClientQuotasRequest {
        /// The users; empty: every entity with a quota (the default user included).
        pub users: Vec<String>,
    }
}

wire_struct! {
    /// One quota value.
    pub struct ClientQuotaValue {
        /// `producer_byte_rate` or `consumer_byte_rate`.
        pub key: String,
        /// Bytes per second.
        pub value: u64,
    }
}

wire_struct! {
    /// One entity's quotas.
    pub struct ClientQuotaEntry {
        /// The user name; `None`: the default user.
        pub user: Option<String>,
        /// Its values.
        pub values: Vec<ClientQuotaValue>,
    }
}

wire_struct! {
    /// The quotas asked for: the default user first, then users by name.
    pub struct DescribeClientQuotasResponse {
        /// Set when the request was refused as a whole (not authorized, no store).
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The entities with a quota.
        pub entries: Vec<ClientQuotaEntry>,
    }
}

wire_struct! {
    /// Writes a snapshot of the node's data directory on the node's own host
    /// (`ledge admin snapshot --out DIR`): every partition up to its synced end, metadata,
    /// group offsets, security state, modules and transforms, and a manifest written last.
    pub struct SnapshotRequest {
        /// Where, on the node's host: an absolute path that does not exist yet, outside the
        /// data directory.
        pub out_dir: String,
    }
}

wire_struct! {
    /// One partition of a snapshot.
    pub struct SnapshotPartition {
        /// Topic.
        pub topic: String,
        /// Partition.
        pub partition: u32,
        /// First offset the snapshot serves.
        pub log_start_offset: i64,
        /// One past the last offset it holds.
        pub end_offset: i64,
    }
}

wire_struct! {
    /// What the snapshot holds.
    pub struct SnapshotResponse {
        /// `InvalidRequest` for a refused directory, `StorageError` when writing failed
        /// (the directory then has no manifest), `ClusterAuthorizationFailed`.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The node that took it.
        pub node_id: u32,
        /// Every partition copied, by topic and partition.
        pub partitions: Vec<SnapshotPartition>,
        /// Partitions offline at the time, left out (listed in the manifest).
        pub offline_partitions: u32,
        /// Files hard-linked to the node's own (sealed segments and their indexes).
        pub files_linked: u64,
        /// Files copied.
        pub files_copied: u64,
    }
}

wire_struct! {
    /// How far the snapshot into `out_dir` running on this node is (`ledge admin snapshot`
    /// asks while its Snapshot request waits, to show progress).
    pub struct SnapshotProgressRequest {
        /// The running snapshot's directory, as its Snapshot request named it.
        pub out_dir: String,
    }
}

wire_struct! {
    /// Progress of one running snapshot.
    pub struct SnapshotProgressResponse {
        /// `ClusterAuthorizationFailed`; otherwise none.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// A snapshot into that directory is running (false: none, or it has finished).
        pub running: bool,
        /// Partitions copied so far.
        pub partitions_done: u32,
        /// Online partitions the snapshot copies.
        pub partitions_total: u32,
        /// Segment bytes of the partitions copied so far.
        pub bytes_done: u64,
    }
}

wire_struct! {
    /// One key of a stateful transform's table (`ledge table get`), answered from the
    /// state of the node running it.
    pub struct TableGetRequest {
        /// The transform.
        pub name: String,
        /// The group key.
        pub key: Bytes,
    }
}

wire_struct! {
    /// A table key's state.
    pub struct TableGetResponse {
        /// `ModuleNotFound` (no such transform), `InvalidRequest` (not a stateful
        /// transform), an authorization error, or `LeaderNotAvailable` (retriable) while a
        /// state partition restores or runs on no task here; otherwise none.
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// The key has a state.
        pub found: bool,
        /// The state (the module's JSON) when found.
        pub value: Bytes,
        /// A windowed table: the key's windows in window order (`found` and `value` then
        /// stay unset).
        pub windows: Vec<TableEntry>,
    }
}

wire_struct! {
    /// Keys of a stateful transform's table in key order (`ledge table scan`).
    pub struct TableScanRequest {
        /// The transform.
        pub name: String,
        /// Only keys starting with these bytes (empty: all).
        pub prefix: Bytes,
        /// At most this many entries (0: the node's limit).
        pub limit: u32,
    }
}

wire_struct! {
    /// One entry of a table scan.
    pub struct TableEntry {
        /// The group key.
        pub key: Bytes,
        /// Its state.
        pub value: Bytes,
        /// The state partition holding it.
        pub partition: u32,
        /// A windowed table's window of the entry.
        pub window: Option<TableWindow>,
    }
}

wire_struct! {
    /// A window's bounds, ms since the epoch (`end` exclusive for tumbling and hopping
    /// windows; a session's last record's timestamp).
    pub struct TableWindow {
        /// Start.
        pub start_ms: i64,
        /// End.
        pub end_ms: i64,
    }
}

wire_struct! {
    /// A table scan's entries.
    pub struct TableScanResponse {
        /// As [`TableGetResponse::error`].
        pub error: ErrorCode,
        /// Explanation when `error` is set.
        pub message: String,
        /// Entries in key order.
        pub entries: Vec<TableEntry>,
        /// More entries matched than were returned.
        pub truncated: bool,
    }
}
