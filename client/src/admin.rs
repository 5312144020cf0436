//! Topic administration: create, delete, list, describe, and topic configs; offset lookups;
//! consumer groups: list, describe with lag, reset offsets, delete; WASM plug-ins: named
//! modules (upload, list, delete) and topic transforms (deploy, describe, pause, resume,
//! remove).
//!
//! Every call goes to the client's default node and is sent again, within the request
//! timeout, to the next live node when that node does not answer or the cluster stops
//! listing it as alive (`Client::request_with_failover`, rules in `cluster/failover.rs`).
//! Read-only calls (list, describe, list offsets) are also sent again after any retriable
//! refusal. Calls that change something are sent again only when no answer came or the node
//! said it did nothing: the resend of a call whose answer was lost may find its own effect,
//! and then reports it as the Java AdminClient does (a CreateTopics answered
//! `TopicAlreadyExists` for a topic this very call created).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
// One plug-in kind and error policy for node, SDK, client and CLI; numbers on the wire.
pub use ledge_protocol::wire::TransformWindow;
use ledge_protocol::wire::{
    self, AlterTopicConfigs, ApiKey, ConfigEntry, CreatableTopic, ErrorCode, OffsetSpec,
    PluginParam, Request, Response, TopicResult,
};
pub use ledge_protocol::{OnError, PluginKind};

use crate::clock;
use crate::cluster::failover::RequestKind;
use crate::connection::{Client, unexpected};
use crate::consumer::{
    CommittedOffset, OffsetAndMetadata, TopicPartition, commit_offsets, fetch_committed, flatten,
};
use crate::error::{AdminError, CommitError, RequestError};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Partition count, at least 1.
    pub partitions: u32,
    /// Copies of each partition, on as many nodes; `None` for the cluster's default
    /// (`default_replication_factor`: min(3, nodes)). Refused above the live node count.
    pub replication_factor: Option<u16>,
    /// Configs that differ from the node's defaults (`retention.ms`, `cleanup.policy`,
    /// `min.insync.replicas`, ...).
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and default configs.
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication_factor: None,
            configs: Vec::new(),
        }
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, replication_factor: u16) -> Self {
        self.replication_factor = Some(replication_factor);
        self
    }

    /// Adds a config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// Partitions to add to a topic, for [`Admin::create_partitions`] (Kafka's
/// `NewPartitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// The topic.
    pub topic: String,
    /// The new total partition count: more than the topic has (partitions are never
    /// removed).
    pub total_count: u32,
    /// The replicas of each new partition (node ids, the preferred leader first), in
    /// partition order; empty to let the cluster place them as a creation does.
    pub assignments: Vec<Vec<u32>>,
}

impl NewPartitions {
    /// Grow `topic` to `total_count` partitions, placed by the cluster (Kafka's
    /// `NewPartitions.increaseTo`).
    pub fn increase_to(topic: impl Into<String>, total_count: u32) -> Self {
        Self {
            topic: topic.into(),
            total_count,
            assignments: Vec::new(),
        }
    }

    /// Places each new partition on the nodes given, one list per new partition, each as
    /// long as the topic's replication factor.
    pub fn assignments(mut self, assignments: Vec<Vec<u32>>) -> Self {
        self.assignments = assignments;
        self
    }
}

/// A topic in [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// Name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
    /// Internal topics (`__` prefix) belong to the node.
    pub internal: bool,
}

/// A topic with its partitions' offsets, from [`Admin::describe_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Internal topics (`__` prefix) belong to the node.
    pub internal: bool,
    /// Partitions in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition's readable range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition number.
    pub partition: u32,
    /// First readable offset.
    pub log_start_offset: i64,
    /// One past the last readable offset (the next offset to be written).
    pub high_watermark: i64,
    /// `Some(PartitionOffline)` when the node could not open the partition.
    pub error: Option<ErrorCode>,
    /// Bytes of the partition's segments on disk.
    pub size_bytes: u64,
    /// Number of segments.
    pub segment_count: u32,
    /// Share of the sealed bytes not yet compacted, per mille (meaningful for compacted topics).
    pub dirty_per_mille: u16,
    /// When compaction last rewrote a segment (ms since the epoch), since the node started.
    pub last_compaction_ms: Option<i64>,
    /// What is damaged, if anything: why the partition is offline, or damage the node's
    /// background verifier found in a sealed segment (file, byte position, first affected
    /// offset). See docs/OPERATIONS.md, "A damaged partition".
    pub damage: Option<String>,
    /// Records from the log start to the high watermark: fewer than the offsets between them
    /// where compaction or a produce filter left offsets without records.
    pub record_count: u64,
    /// The node leading the partition, `None` while it has no leader (offline).
    pub leader: Option<u32>,
    /// The leader's epoch (bumped by every election).
    pub leader_epoch: i32,
    /// The nodes holding a copy, the preferred leader first.
    pub replicas: Vec<u32>,
    /// The replicas in sync with the leader (ISR).
    pub isr: Vec<u32>,
}

/// The cluster, from [`Admin::describe_cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster's id (empty for a node with no `[cluster]` section).
    pub cluster_id: String,
    /// The active controller, `None` while there is none.
    pub controller: Option<u32>,
    /// Every node, by id.
    pub nodes: Vec<ClusterNodeDescription>,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated: Vec<ClusterPartitionDescription>,
    /// Partitions without a leader.
    pub offline: Vec<ClusterPartitionDescription>,
}

/// A node in a [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNodeDescription {
    /// Node id.
    pub node_id: u32,
    /// `host:port` of its client listener.
    pub address: String,
    /// Registered and heartbeating.
    pub alive: bool,
    /// Its registration's epoch: a restart registers again with a larger one.
    pub node_epoch: u64,
}

/// An unhealthy partition in a [`ClusterDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPartitionDescription {
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Its leader, if any.
    pub leader: Option<u32>,
    /// The nodes holding a copy.
    pub replicas: Vec<u32>,
    /// The replicas in sync.
    pub isr: Vec<u32>,
}

/// One config of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// Key (`retention.ms`, ...).
    pub name: String,
    /// Effective value.
    pub value: String,
    /// Whether it is the node's default rather than set on the topic.
    pub is_default: bool,
}

/// An offset found by [`Admin::list_offsets`] or a consumer lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; `None` when no record is at or after the asked timestamp.
    pub offset: Option<i64>,
    /// The record's timestamp, for timestamp lookups.
    pub timestamp: Option<i64>,
}

/// A group in [`Admin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// `Empty` (only committed offsets), `Stable` or `Reconciling` (partitions moving).
    pub state: String,
    /// Active members.
    pub members: u32,
}

/// A group with its members and, per partition, committed offset, end offset and lag, from
/// [`Admin::describe_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Empty`, `Stable` or `Reconciling`.
    pub state: String,
    /// The assignor the members use (empty without members).
    pub assignor: String,
    /// The group epoch (rises with every membership or subscription change).
    pub group_epoch: i32,
    /// Active members.
    pub members: Vec<GroupMemberDescription>,
    /// Every partition the group has a committed offset for or assigns, sorted.
    pub partitions: Vec<GroupPartitionOffsets>,
}

/// One member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static `group_instance_id`, if any.
    pub instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// Topics it reads (patterns resolved).
    pub subscribed_topics: Vec<String>,
    /// Partitions assigned to it now, sorted.
    pub assignment: Vec<TopicPartition>,
}

/// One partition's progress in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionOffsets {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset (the next to read); `None` if nothing was committed.
    pub committed: Option<CommittedOffset>,
    /// The partition's high watermark; `None` if the topic is gone.
    pub end_offset: Option<i64>,
    /// `end_offset - committed`; `None` when either is unknown.
    pub lag: Option<i64>,
    /// The member assigned the partition, if any.
    pub member_id: Option<String>,
}

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetResetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (skip everything written so far).
    Latest,
    /// The first record at or after this time (ms since the Unix epoch); the high watermark
    /// where every record is older.
    Timestamp(i64),
    /// This offset, clamped to the readable range.
    Offset(i64),
    /// The committed offset plus this (negative moves back), clamped to the readable range;
    /// partitions without a committed offset shift from the log start.
    ShiftBy(i64),
}

/// One partition of a reset: from where to where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOffset {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset before the reset.
    pub current: Option<i64>,
    /// The committed offset after it.
    pub new_offset: i64,
}

/// A named module in [`Admin::list_modules`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleDescription {
    /// The name consumers (`ConsumerConfig::fetch_plugin`) and topic configs
    /// (`partitioner.module`, `produce.filter.module`) refer to.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// SHA-256 of the `.wasm` bytes, hex.
    pub hash: String,
    /// Size of the `.wasm` in bytes.
    pub size_bytes: u64,
    /// Default parameters, sorted by key.
    pub params: Vec<(String, String)>,
    /// When it was uploaded, ms since the Unix epoch.
    pub uploaded_ms: i64,
}

/// A topic transform to deploy with [`Admin::deploy_transform`]: a module the node runs
/// continuously from `input` to `output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformSpec {
    /// The transform's name (also its module's name in `describe`).
    pub name: String,
    /// The module's kind.
    pub kind: PluginKind,
    /// The `.wasm` bytes.
    pub module: Bytes,
    /// Input topic; it must exist.
    pub input: String,
    /// Output topic; `None` means `<input>.<name>`. The node creates it, with the input's
    /// partition count, if it does not exist.
    pub output: Option<String>,
    /// Parameters (`threshold=1000`), handed to the module as text.
    pub params: Vec<(String, String)>,
    /// What to do with a record the module fails. Default [`OnError::DeadLetter`].
    pub on_error: OnError,
    /// Dead-letter topic; `None` means `<name>.dead-letter` (created with one partition if
    /// missing, with [`OnError::DeadLetter`]).
    pub dead_letter_topic: Option<String>,
    /// A join's second input: required for [`PluginKind::Join`], refused for the others.
    /// Both inputs must have the same partition count.
    pub join: Option<TransformJoin>,
    /// An aggregate's event-time window (`None`: not windowed); see
    /// [`TransformWindow`] for the settings.
    pub window: Option<TransformWindow>,
}

impl TransformSpec {
    /// A transform `name` running `module` (of `kind`) over `input`, writing to
    /// `<input>.<name>`, failed records to `<name>.dead-letter`.
    pub fn new(
        name: impl Into<String>,
        kind: PluginKind,
        module: impl Into<Bytes>,
        input: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            module: module.into(),
            input: input.into(),
            output: None,
            params: Vec::new(),
            on_error: OnError::default(),
            dead_letter_topic: None,
            join: None,
            window: None,
        }
    }

    /// Sets the output topic.
    pub fn output(mut self, topic: impl Into<String>) -> Self {
        self.output = Some(topic.into());
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((key.into(), value.into()));
        self
    }

    /// Sets the error policy.
    pub fn on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets the dead-letter topic.
    pub fn dead_letter_topic(mut self, topic: impl Into<String>) -> Self {
        self.dead_letter_topic = Some(topic.into());
        self
    }

    /// Windows an aggregate by event time.
    pub fn window(mut self, window: TransformWindow) -> Self {
        self.window = Some(window);
        self
    }

    /// The output topic as the node names it when none is given.
    pub fn output_or_default(&self) -> String {
        self.output
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.input, self.name))
    }
}

/// Whether a transform is processing records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransformState {
    /// Stopped by an error (`on_error = stop`) or not running on the node; `last_error`
    /// says why. Deploy a fixed version, or resume it.
    Failed,
    /// Paused by an operator or by the circuit breaker (too many failed records); resume it.
    Paused,
    /// Processing records.
    Running,
}

impl TransformState {
    /// The node's name for it: `running`, `paused`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::Paused => "paused",
            Self::Running => "running",
        }
    }
}

impl fmt::Display for TransformState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for TransformState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "failed" => Ok(Self::Failed),
            "paused" => Ok(Self::Paused),
            "running" => Ok(Self::Running),
            other => Err(format!("unknown transform state {other:?}")),
        }
    }
}

/// A transform's definition and live status, from [`Admin::describe_transforms`]. The
/// counters count since the node started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformDescription {
    /// Name.
    pub name: String,
    /// Its module's kind.
    pub kind: PluginKind,
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Dead-letter topic.
    pub dead_letter_topic: String,
    /// Error policy.
    pub on_error: OnError,
    /// SHA-256 of its module, hex.
    pub module_hash: String,
    /// Parameters, sorted by key.
    pub params: Vec<(String, String)>,
    /// Deployed version: 1 for the first deployment, one more with each redeployment.
    pub version: u32,
    /// Running, paused or failed.
    pub state: TransformState,
    /// Why it is paused or failed, or the last record error while running; `None` if none.
    pub last_error: Option<String>,
    /// Records read from the input.
    pub records_in: u64,
    /// Records written to the output.
    pub records_out: u64,
    /// Records sent to the dead-letter topic or skipped.
    pub records_dead: u64,
    /// Records of the input not processed yet, over all partitions.
    pub lag: u64,
    /// Time spent inside the module.
    pub busy: Duration,
    /// Per input partition, the next input offset to process.
    pub positions: BTreeMap<u32, i64>,
    /// Per input partition: the node running it and its figures there. In a cluster the
    /// counters above are the sums over these (see [`TransformPartitionStatus`]).
    pub partitions: Vec<TransformPartition>,
    /// A stateful transform's state partitions (0: stateless).
    pub state_partitions: u32,
    /// Of those, restored and running on the node answering.
    pub state_partitions_ready: u32,
    /// Bytes of state on the node answering.
    pub state_bytes: u64,
    /// Changelog records its restores have read since it started.
    pub restore_records: u64,
    /// A windowed aggregate's window as deployed (defaults filled in).
    pub window: Option<TransformWindow>,
    /// A windowed aggregate's windows holding state that are not closed yet.
    pub windows_open: u64,
    /// A join's second input (`None`: not a join).
    pub join: Option<TransformJoinStatus>,
    /// Records dropped unprocessed since the node started: late (a windowed aggregate's
    /// record whose windows are all closed, a join's record behind its window), or without a
    /// key a join can match.
    pub records_late: u64,
}

/// A join transform's second input as [`Admin::describe_transforms`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformJoinStatus {
    /// The topic.
    pub input: String,
    /// True when it is read as a table (stream-table join), false for a stream.
    pub table: bool,
    /// Per partition, the next offset to process.
    pub positions: BTreeMap<u32, i64>,
    /// Records not processed yet, over all partitions.
    pub lag: u64,
}

/// A join transform's second input (see [`TransformSpec::join`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformJoin {
    /// Stream-table: `topic` is read as a table (the latest record per key; a null value
    /// deletes it), and each input record is joined with its key's current record.
    Table(String),
    /// Stream-stream: records of the input and `topic` with the same key pair when the
    /// right one's timestamp is within `before` before to `after` after the left one's;
    /// records later than `grace` behind the largest timestamp seen are dropped.
    Stream {
        /// The topic.
        topic: String,
        /// How far a right record may precede its left partner.
        before: Duration,
        /// How far it may follow.
        after: Duration,
        /// How long out-of-order records are still joined.
        grace: Duration,
    },
}

/// Creates, deletes and describes topics and consumer groups; manages WASM modules and
/// transforms.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin client sharing `client`'s connection.
    pub fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
        }
    }

    /// Creates topics. With `validate_only` the node checks the request and creates nothing.
    /// Fails with the first topic the node refused (`TopicAlreadyExists`, `InvalidTopic`,
    /// `InvalidConfig`, ...); the others in the call may have been created.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let request = Request::CreateTopics(wire::CreateTopicsRequest {
            topics: topics
                .into_iter()
                .map(|topic| CreatableTopic {
                    replication_factor: topic.replication_factor,
                    name: topic.name,
                    partitions: topic.partitions,
                    configs: config_entries(topic.configs),
                })
                .collect(),
            validate_only,
        });
        match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::CreateTopics(response) => first_error(response.topics),
            other => Err(unexpected(ApiKey::CreateTopics, &other).into()),
        }
    }

    /// Adds partitions to topics (Kafka's `createPartitions`). With `validate_only` the node
    /// checks the request and adds nothing. Fails with the first topic the node refused:
    /// `InvalidPartitions` (a count not above the current one, or over the node's
    /// `limits.topic_partitions_max`), `UnknownTopicOrPartition`, `InvalidReplicaAssignment`,
    /// `InternalTopic`; the others in the call may have grown. Keyed records map to other
    /// partitions afterwards: producers hash keys over the new count once their metadata is
    /// refreshed (`metadata_max_age`), as in Kafka.
    pub async fn create_partitions(
        &self,
        topics: Vec<NewPartitions>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let request = Request::CreatePartitions(wire::CreatePartitionsRequest {
            topics: topics
                .into_iter()
                .map(|topic| wire::CreatePartitionsTopic {
                    name: topic.topic,
                    count: topic.total_count,
                    assignments: topic.assignments,
                })
                .collect(),
            validate_only,
        });
        match self.client.request(&request, Duration::ZERO).await? {
            Response::CreatePartitions(response) => first_error(response.topics),
            other => Err(unexpected(ApiKey::CreatePartitions, &other).into()),
        }
    }

    /// Deletes topics and their data. Refused with `TopicInUse` while a topic transform
    /// reads from or writes to one of them (the message names the transform).
    pub async fn delete_topics(&self, names: Vec<String>) -> Result<(), AdminError> {
        let request = Request::DeleteTopics(wire::DeleteTopicsRequest { names });
        match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::DeleteTopics(response) => first_error(response.topics),
            other => Err(unexpected(ApiKey::DeleteTopics, &other).into()),
        }
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicListing>, AdminError> {
        let metadata = metadata(&self.client, None).await?;
        Ok(metadata
            .topics
            .into_iter()
            .map(|topic| TopicListing {
                partitions: u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX),
                name: topic.name,
                internal: topic.internal,
            })
            .collect())
    }

    /// The named topics with their partitions' offsets. Fails with `UnknownTopicOrPartition`
    /// for a topic that does not exist.
    pub async fn describe_topics(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<TopicDescription>, AdminError> {
        self.describe(Some(names)).await
    }

    /// Every topic with its partitions' offsets, sorted by name.
    pub async fn describe_all_topics(&self) -> Result<Vec<TopicDescription>, AdminError> {
        self.describe(None).await
    }

    async fn describe(
        &self,
        names: Option<Vec<String>>,
    ) -> Result<Vec<TopicDescription>, AdminError> {
        let metadata = metadata(&self.client, names).await?;
        let mut described = Vec::with_capacity(metadata.topics.len());
        for topic in metadata.topics {
            if topic.error != ErrorCode::None {
                return Err(AdminError::Topic {
                    topic: topic.name,
                    code: topic.error,
                    message: topic.message,
                });
            }
            described.push(TopicDescription {
                name: topic.name,
                internal: topic.internal,
                partitions: topic
                    .partitions
                    .into_iter()
                    .map(|partition| PartitionDescription {
                        partition: partition.partition,
                        log_start_offset: partition.log_start_offset,
                        high_watermark: partition.high_watermark,
                        error: (partition.error != ErrorCode::None).then_some(partition.error),
                        size_bytes: partition.size_bytes,
                        segment_count: partition.segment_count,
                        dirty_per_mille: partition.dirty_ratio_per_mille,
                        last_compaction_ms: partition.last_compaction_ms,
                        damage: (!partition.damage.is_empty()).then_some(partition.damage),
                        record_count: partition.record_count,
                        leader: partition.leader,
                        leader_epoch: partition.leader_epoch,
                        replicas: partition.replicas,
                        isr: partition.isr,
                    })
                    .collect(),
            });
        }
        Ok(described)
    }

    /// Every config of each named topic, sorted by key, in the order asked.
    pub async fn describe_configs(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<(String, Vec<ConfigValue>)>, AdminError> {
        let request = Request::DescribeConfigs(wire::DescribeConfigsRequest { topics: names });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeConfigs(response) => response,
            other => return Err(unexpected(ApiKey::DescribeConfigs, &other).into()),
        };
        let mut described = Vec::with_capacity(response.topics.len());
        for topic in response.topics {
            if topic.error != ErrorCode::None {
                return Err(AdminError::Topic {
                    topic: topic.name,
                    code: topic.error,
                    message: topic.message,
                });
            }
            let configs = topic
                .configs
                .into_iter()
                .map(|config| ConfigValue {
                    name: config.name,
                    value: config.value,
                    is_default: config.is_default,
                })
                .collect();
            described.push((topic.name, configs));
        }
        Ok(described)
    }

    /// Sets the `set` configs of topic `name` and returns the `delete` ones to their
    /// defaults; other keys keep their values.
    pub async fn alter_configs(
        &self,
        name: &str,
        set: Vec<(String, String)>,
        delete: Vec<String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let request = Request::AlterConfigs(wire::AlterConfigsRequest {
            topics: vec![AlterTopicConfigs {
                name: name.to_string(),
                set: config_entries(set),
                delete,
            }],
            validate_only,
        });
        match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::AlterConfigs(response) => first_error(response.topics),
            other => Err(unexpected(ApiKey::AlterConfigs, &other).into()),
        }
    }

    /// Looks up offsets: earliest, latest, or the first at or after a timestamp.
    pub async fn list_offsets(
        &self,
        specs: Vec<(TopicPartition, OffsetSpec)>,
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>, AdminError> {
        let listed = list_offsets(&self.client, specs).await?;
        let mut offsets = BTreeMap::new();
        for (partition, result) in listed {
            match result {
                Ok(offset) => {
                    offsets.insert(partition, offset);
                }
                Err(code) => {
                    return Err(AdminError::Topic {
                        topic: partition.topic.clone(),
                        code,
                        message: format!("partition {}", partition.partition),
                    });
                }
            }
        }
        Ok(offsets)
    }

    /// The cluster's nodes (alive or not, with their node epochs), its controller, and its
    /// under-replicated and offline partitions.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, AdminError> {
        let request = Request::DescribeCluster(wire::DescribeClusterRequest {});
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeCluster(response) => response,
            other => return Err(unexpected(ApiKey::DescribeCluster, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(RequestError::Refused {
                code: response.error,
                message: response.message,
            }
            .into());
        }
        let partitions = |partitions: Vec<wire::ClusterPartition>| {
            partitions
                .into_iter()
                .map(|partition| ClusterPartitionDescription {
                    topic: partition.topic,
                    partition: partition.partition,
                    leader: partition.leader,
                    replicas: partition.replicas,
                    isr: partition.isr,
                })
                .collect()
        };
        Ok(ClusterDescription {
            cluster_id: response.cluster_id,
            controller: response.controller_id,
            nodes: response
                .nodes
                .into_iter()
                .map(|node| ClusterNodeDescription {
                    node_id: node.node_id,
                    address: node.address,
                    alive: node.alive,
                    node_epoch: node.node_epoch,
                })
                .collect(),
            under_replicated: partitions(response.under_replicated),
            offline: partitions(response.offline),
        })
    }

    /// Every consumer group the cluster knows (with members or committed offsets), sorted by
    /// id. In a cluster each node lists the groups it coordinates, so every live node is
    /// asked and the answers merged.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, AdminError> {
        let request = Request::ListGroups(wire::ListGroupsRequest { states: Vec::new() });
        let nodes: Vec<std::net::SocketAddr> = match self.describe_cluster().await {
            Ok(cluster) if cluster.nodes.len() > 1 => cluster
                .nodes
                .iter()
                .filter(|node| node.alive)
                .filter_map(|node| node.address.parse().ok())
                .collect(),
            _ => Vec::new(),
        };
        let mut answers = Vec::new();
        if nodes.is_empty() {
            answers.push(request_with_retry(&self.client, &request).await?);
        } else {
            for node in nodes {
                answers.push(request_with_retry_to(&self.client, node, &request).await?);
            }
        }
        let mut groups = BTreeMap::new();
        for answer in answers {
            let Response::ListGroups(response) = answer else {
                return Err(unexpected(ApiKey::ListGroups, &answer).into());
            };
            for group in response.groups {
                groups.insert(
                    group.group_id.clone(),
                    GroupListing {
                        group_id: group.group_id,
                        state: group.state,
                        members: group.members,
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members and per-partition committed offset, end offset and lag.
    /// Fails with `GroupIdNotFound` for a group with neither members nor committed offsets.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, AdminError> {
        let described = self.described_group(group_id).await?;
        let committed = fetch_committed(&self.client, group_id, None)
            .await
            .map_err(commit_to_admin)?;
        let members: Vec<GroupMemberDescription> = described
            .members
            .into_iter()
            .map(|member| GroupMemberDescription {
                member_id: member.member_id,
                instance_id: member.instance_id,
                client_id: member.client_id,
                member_epoch: member.member_epoch,
                subscribed_topics: member.subscribed_topics,
                assignment: flatten(&member.assignment).into_iter().collect(),
            })
            .collect();
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        for member in &members {
            for partition in &member.assignment {
                owners.insert(partition.clone(), member.member_id.clone());
            }
        }
        let mut partitions: std::collections::BTreeSet<TopicPartition> =
            committed.keys().cloned().collect();
        partitions.extend(owners.keys().cloned());
        let specs = partitions
            .iter()
            .map(|partition| (partition.clone(), OffsetSpec::Latest))
            .collect();
        let ends = list_offsets(&self.client, specs).await?;
        let partitions = partitions
            .into_iter()
            .map(|partition| {
                let end_offset = ends
                    .get(&partition)
                    .and_then(|result| result.as_ref().ok())
                    .and_then(|listed| listed.offset);
                let committed = committed.get(&partition).cloned();
                let lag = match (&committed, end_offset) {
                    (Some(committed), Some(end)) => Some((end - committed.offset).max(0)),
                    _ => None,
                };
                GroupPartitionOffsets {
                    member_id: owners.get(&partition).cloned(),
                    partition,
                    committed,
                    end_offset,
                    lag,
                }
            })
            .collect();
        Ok(GroupDescription {
            group_id: described.group_id,
            state: described.state,
            assignor: described.assignor,
            group_epoch: described.group_epoch,
            members,
            partitions,
        })
    }

    /// Moves the committed offsets of `group_id` for every partition of `topic` per `spec`,
    /// and returns the plan. With `dry_run` nothing is committed. Only for a group without
    /// active members (else `NonEmptyGroup`): a running member would overwrite the reset
    /// with its next commit. A group that does not exist yet is created by the reset.
    pub async fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        spec: OffsetResetSpec,
        dry_run: bool,
    ) -> Result<Vec<PlannedOffset>, AdminError> {
        self.reset_partition_offsets(group_id, topic, None, spec, dry_run)
            .await
    }

    /// [`Admin::reset_offsets`] for some partitions of `topic` only (`None`: all of them),
    /// as `kafka-consumer-groups --reset-offsets --topic orders:0,2`. A partition the topic
    /// does not have fails the whole call with [`AdminError::InvalidArgument`] naming it
    /// and the topic's partition count, before anything is committed.
    pub async fn reset_partition_offsets(
        &self,
        group_id: &str,
        topic: &str,
        only: Option<&[u32]>,
        spec: OffsetResetSpec,
        dry_run: bool,
    ) -> Result<Vec<PlannedOffset>, AdminError> {
        match self.described_group(group_id).await {
            Ok(group) if !group.members.is_empty() => {
                return Err(AdminError::Group {
                    group_id: group_id.to_string(),
                    code: ErrorCode::NonEmptyGroup,
                    message: format!("{} active members", group.members.len()),
                });
            }
            Ok(_) => {}
            Err(error) if error.code() == Some(ErrorCode::GroupIdNotFound) => {}
            Err(error) => return Err(error),
        }
        let described = self.describe_topics(vec![topic.to_string()]).await?;
        let mut partitions: Vec<PartitionDescription> = described
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .collect();
        if let Some(only) = only {
            let count = partitions.len();
            if let Some(missing) = only
                .iter()
                .find(|wanted| !partitions.iter().any(|p| p.partition == **wanted))
            {
                return Err(AdminError::InvalidArgument(format!(
                    "topic {topic} has no partition {missing}: it has {count} (0..={})",
                    count.saturating_sub(1)
                )));
            }
            partitions.retain(|partition| only.contains(&partition.partition));
        }
        let keys: Vec<TopicPartition> = partitions
            .iter()
            .map(|partition| TopicPartition::new(topic, partition.partition))
            .collect();
        let committed = fetch_committed(&self.client, group_id, Some(&keys))
            .await
            .map_err(commit_to_admin)?;
        let found = match spec {
            OffsetResetSpec::Timestamp(timestamp) => Some(
                self.list_offsets(
                    keys.iter()
                        .map(|key| (key.clone(), OffsetSpec::Timestamp(timestamp.max(0))))
                        .collect(),
                )
                .await?,
            ),
            _ => None,
        };
        let mut plan = Vec::with_capacity(partitions.len());
        for (key, description) in keys.into_iter().zip(&partitions) {
            let start = description.log_start_offset;
            let end = description.high_watermark;
            let current = committed.get(&key).map(|offset| offset.offset);
            let wanted = match spec {
                OffsetResetSpec::Earliest => start,
                OffsetResetSpec::Latest => end,
                OffsetResetSpec::Timestamp(_) => found
                    .as_ref()
                    .and_then(|found| found.get(&key))
                    .and_then(|listed| listed.offset)
                    .unwrap_or(end),
                OffsetResetSpec::Offset(offset) => offset,
                OffsetResetSpec::ShiftBy(shift) => current.unwrap_or(start).saturating_add(shift),
            };
            plan.push(PlannedOffset {
                partition: key,
                current,
                new_offset: wanted.clamp(start, end.max(start)),
            });
        }
        if !dry_run {
            let offsets = plan
                .iter()
                .map(|planned| {
                    (
                        planned.partition.clone(),
                        OffsetAndMetadata::new(planned.new_offset),
                    )
                })
                .collect();
            commit_offsets(&self.client, group_id, "", 0, &offsets)
                .await
                .map_err(commit_to_admin)?;
        }
        Ok(plan)
    }

    /// Deletes a group and its committed offsets. Fails with `NonEmptyGroup` while it has
    /// active members and `GroupIdNotFound` if it does not exist.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), AdminError> {
        let request = Request::DeleteGroups(wire::DeleteGroupsRequest {
            group_ids: vec![group_id.to_string()],
        });
        let response = match self.client.group_request(group_id, &request).await? {
            Response::DeleteGroups(response) => response,
            other => return Err(unexpected(ApiKey::DeleteGroups, &other).into()),
        };
        match response
            .groups
            .into_iter()
            .find(|group| group.error != ErrorCode::None)
        {
            Some(group) => Err(AdminError::Group {
                group_id: group.group_id,
                code: group.error,
                message: group.message,
            }),
            None => Ok(()),
        }
    }

    /// Stores `module` (a `.wasm` of `kind`) under `name`, replacing the name's previous
    /// module, with default `params`; returns the module's SHA-256 (hex). The node checks the
    /// module's exports against `kind` and instantiates it with `params`, so a module it
    /// cannot run, or parameters it refuses, fail here with `InvalidModule`.
    pub async fn upload_module(
        &self,
        name: &str,
        kind: PluginKind,
        module: impl Into<Bytes>,
        params: Vec<(String, String)>,
    ) -> Result<String, AdminError> {
        let request = Request::UploadModule(wire::UploadModuleRequest {
            name: name.to_string(),
            kind,
            module: module.into(),
            params: plugin_params(params),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::UploadModule(response) => response,
            other => return Err(unexpected(ApiKey::UploadModule, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Module {
                name: name.to_string(),
                code: response.error,
                message: response.message,
            });
        }
        Ok(response.hash)
    }

    /// Every named module, sorted by name.
    pub async fn list_modules(&self) -> Result<Vec<ModuleDescription>, AdminError> {
        let request = Request::ListModules(wire::ListModulesRequest {});
        let response = match request_with_retry(&self.client, &request).await? {
            Response::ListModules(response) => response,
            other => return Err(unexpected(ApiKey::ListModules, &other).into()),
        };
        response
            .modules
            .into_iter()
            .map(|module| {
                Ok(ModuleDescription {
                    kind: module.kind,
                    name: module.name,
                    hash: module.hash,
                    size_bytes: module.size_bytes,
                    params: param_pairs(module.params),
                    uploaded_ms: module.uploaded_ms,
                })
            })
            .collect()
    }

    /// Removes the named module. Fails with `ModuleNotFound` if there is none and
    /// `ModuleInUse` while a topic config names it. Transforms keep their own copy of their
    /// module, so removing a name does not stop them.
    pub async fn delete_module(&self, name: &str) -> Result<(), AdminError> {
        let request = Request::DeleteModule(wire::DeleteModuleRequest {
            name: name.to_string(),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::DeleteModule(response) => response,
            other => return Err(unexpected(ApiKey::DeleteModule, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Module {
                name: name.to_string(),
                code: response.error,
                message: response.message,
            });
        }
        Ok(())
    }

    /// Deploys a transform, or a new version of one with the same input (swapped at a batch
    /// boundary, keeping its input positions), and returns the deployed version. The node
    /// creates missing output and dead-letter topics.
    pub async fn deploy_transform(&self, spec: TransformSpec) -> Result<u32, AdminError> {
        let name = spec.name.clone();
        let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let (join_table, join_with, join_before_ms, join_after_ms, join_grace_ms) = match spec.join
        {
            None => (String::new(), String::new(), 0, 0, 0),
            Some(TransformJoin::Table(topic)) => (topic, String::new(), 0, 0, 0),
            Some(TransformJoin::Stream {
                topic,
                before,
                after,
                grace,
            }) => (
                String::new(),
                topic,
                millis(before),
                millis(after),
                millis(grace),
            ),
        };
        let request = Request::DeployTransform(wire::DeployTransformRequest {
            name: spec.name,
            kind: spec.kind,
            module: spec.module,
            input: spec.input,
            output: spec.output.unwrap_or_default(),
            params: plugin_params(spec.params),
            on_error: spec.on_error,
            dead_letter_topic: spec.dead_letter_topic.unwrap_or_default(),
            join_table,
            join_with,
            join_before_ms,
            join_after_ms,
            join_grace_ms,
            window: spec.window,
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::DeployTransform(response) => response,
            other => return Err(unexpected(ApiKey::DeployTransform, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Transform {
                name,
                code: response.error,
                message: response.message,
            });
        }
        Ok(response.version)
    }

    /// The named transforms, in the order asked, or every transform sorted by name when
    /// `names` is empty. Fails with `TransformNotFound` for a name that is not a transform.
    pub async fn describe_transforms(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<TransformDescription>, AdminError> {
        let request = Request::DescribeTransforms(wire::DescribeTransformsRequest { names });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeTransforms(response) => response,
            other => return Err(unexpected(ApiKey::DescribeTransforms, &other).into()),
        };
        let own: BTreeMap<String, Vec<wire::TransformPartitionStatus>> = response
            .transforms
            .iter()
            .map(|transform| (transform.name.clone(), transform.partitions.clone()))
            .collect();
        let mut described = response
            .transforms
            .into_iter()
            .map(transform_description)
            .collect::<Result<Vec<_>, _>>()?;
        self.locate_transform_partitions(&mut described, own)
            .await?;
        Ok(described)
    }

    /// Pauses a transform: it stops before its next batch and keeps its positions.
    pub async fn pause_transform(&self, name: &str) -> Result<(), AdminError> {
        self.alter_transform(name, "pause").await
    }

    /// Resumes a paused or stopped transform where it left off.
    pub async fn resume_transform(&self, name: &str) -> Result<(), AdminError> {
        self.alter_transform(name, "resume").await
    }

    /// Removes a transform and its positions. Its output and dead-letter topics stay.
    pub async fn remove_transform(&self, name: &str) -> Result<(), AdminError> {
        self.alter_transform(name, "remove").await
    }

    async fn alter_transform(&self, name: &str, action: &str) -> Result<(), AdminError> {
        let request = Request::AlterTransform(wire::AlterTransformRequest {
            name: name.to_string(),
            action: action.to_string(),
        });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::AlterTransform(response) => response,
            other => return Err(unexpected(ApiKey::AlterTransform, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Transform {
                name: name.to_string(),
                code: response.error,
                message: response.message,
            });
        }
        Ok(())
    }

    async fn described_group(&self, group_id: &str) -> Result<wire::DescribedGroup, AdminError> {
        let request = Request::DescribeGroups(wire::DescribeGroupsRequest {
            group_ids: vec![group_id.to_string()],
        });
        let response = match self.client.group_request(group_id, &request).await? {
            Response::DescribeGroups(response) => response,
            other => return Err(unexpected(ApiKey::DescribeGroups, &other).into()),
        };
        let Some(group) = response.groups.into_iter().next() else {
            return Err(RequestError::MalformedResponse(format!(
                "DescribeGroups answer lacks group {group_id}"
            ))
            .into());
        };
        if group.error != ErrorCode::None {
            return Err(AdminError::Group {
                group_id: group_id.to_string(),
                code: group.error,
                message: group.message,
            });
        }
        Ok(group)
    }
}

fn commit_to_admin(error: CommitError) -> AdminError {
    match error {
        CommitError::Request(error) => AdminError::Request(error),
        CommitError::Group {
            group_id,
            code,
            message,
        } => AdminError::Group {
            group_id,
            code,
            message,
        },
        CommitError::Partition {
            topic,
            partition,
            code,
        } => AdminError::Topic {
            topic,
            code,
            message: format!("partition {partition}"),
        },
        other => AdminError::InvalidArgument(other.to_string()),
    }
}

/// One described transform, or the node's refusal of its name.
fn transform_description(
    transform: wire::TransformDescription,
) -> Result<TransformDescription, AdminError> {
    if transform.error != ErrorCode::None {
        // The node explains an unknown name in `last_error`.
        return Err(AdminError::Transform {
            name: transform.name,
            code: transform.error,
            message: transform.last_error,
        });
    }
    Ok(TransformDescription {
        kind: transform.kind,
        on_error: transform.on_error,
        state: parse_field(&transform.state, "transform state")?,
        name: transform.name,
        input: transform.input,
        output: transform.output,
        dead_letter_topic: transform.dead_letter_topic,
        module_hash: transform.module_hash,
        params: param_pairs(transform.params),
        version: transform.version,
        last_error: (!transform.last_error.is_empty()).then_some(transform.last_error),
        records_in: transform.records_in,
        records_out: transform.records_out,
        records_dead: transform.records_dead,
        lag: transform.lag,
        busy: Duration::from_micros(transform.busy_us),
        positions: transform
            .positions
            .into_iter()
            .map(|position| (position.partition, position.offset))
            .collect(),
        // Filled from the partitions' leaders (`transform_partitions.rs`).
        partitions: Vec::new(),
        state_partitions: transform.state_partitions,
        state_partitions_ready: transform.state_partitions_ready,
        state_bytes: transform.state_bytes,
        restore_records: transform.restore_records,
        join: (!transform.join_input.is_empty()).then(|| TransformJoinStatus {
            input: transform.join_input,
            table: transform.join_table,
            positions: transform
                .join_positions
                .into_iter()
                .map(|position| (position.partition, position.offset))
                .collect(),
            lag: transform.join_lag,
        }),
        window: transform.window,
        windows_open: transform.windows_open,
        records_late: transform.records_late,
    })
}

/// A name the node sent for a kind, policy or state; one this client does not know means
/// the two disagree on the protocol.
fn parse_field<T: FromStr<Err = String>>(text: &str, what: &str) -> Result<T, AdminError> {
    text.parse().map_err(|error: String| {
        AdminError::Request(RequestError::MalformedResponse(format!("{what}: {error}")))
    })
}

fn plugin_params(params: Vec<(String, String)>) -> Vec<PluginParam> {
    params
        .into_iter()
        .map(|(key, value)| PluginParam { key, value })
        .collect()
}

fn param_pairs(params: Vec<PluginParam>) -> Vec<(String, String)> {
    params
        .into_iter()
        .map(|param| (param.key, param.value))
        .collect()
}

fn config_entries(configs: Vec<(String, String)>) -> Vec<ConfigEntry> {
    configs
        .into_iter()
        .map(|(name, value)| ConfigEntry { name, value })
        .collect()
}

fn first_error(results: Vec<TopicResult>) -> Result<(), AdminError> {
    match results
        .into_iter()
        .find(|result| result.error != ErrorCode::None)
    {
        Some(result) => Err(AdminError::Topic {
            topic: result.name,
            code: result.error,
            message: result.message,
        }),
        None => Ok(()),
    }
}

/// Metadata for `topics` (all when `None`), retried within the request timeout.
pub(crate) async fn metadata(
    client: &Client,
    topics: Option<Vec<String>>,
) -> Result<wire::MetadataResponse, RequestError> {
    let request = Request::Metadata(wire::MetadataRequest { topics });
    match request_with_retry(client, &request).await? {
        Response::Metadata(response) => Ok(response),
        other => Err(unexpected(ApiKey::Metadata, &other)),
    }
}

/// ListOffsets for `specs`, one result per partition asked (a per-partition error as `Err`).
pub(crate) async fn list_offsets(
    client: &Client,
    specs: Vec<(TopicPartition, OffsetSpec)>,
) -> Result<BTreeMap<TopicPartition, Result<ListedOffset, ErrorCode>>, RequestError> {
    let mut listed = BTreeMap::new();
    let mut pending = specs.clone();
    // A new leader answers OffsetNotAvailable until its high watermark reaches its leader
    // epoch (KIP-207; a follower's next fetch moves it): asked again until the request
    // timeout has passed.
    let settle_deadline = clock::now() + client.config().request_timeout;
    // Each partition is asked of its leader. An answer that says the leader moved is asked
    // again after the cluster view is refreshed, a bounded number of times.
    let mut attempt = 0;
    loop {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(LIST_OFFSETS_ROUTING_BACKOFF).await;
        }
        attempt += 1;
        let routing_left = attempt < LIST_OFFSETS_ROUTING_ATTEMPTS;
        let answers = match list_offsets_from_leaders(client, &pending).await {
            // A leader the cluster fenced while it was asked: its routes are dropped, so the
            // next round asks the new leaders.
            Err(RequestError::NodeLost { node }) if routing_left => {
                tracing::debug!(%node, "ListOffsets leader left the cluster; routing again");
                continue;
            }
            answers => answers?,
        };
        pending.clear();
        for (partition, result) in answers {
            if let Err(code) = result {
                client.partition_error(&partition.topic, partition.partition, code);
                let moved = matches!(
                    code,
                    ErrorCode::NotLeaderOrFollower
                        | ErrorCode::FencedLeaderEpoch
                        | ErrorCode::UnknownLeaderEpoch
                );
                let settling =
                    code == ErrorCode::OffsetNotAvailable && clock::now() < settle_deadline;
                if (moved && routing_left) || settling {
                    if let Some(spec) = specs.iter().find(|(known, _)| *known == partition) {
                        pending.push(spec.clone());
                    }
                    continue;
                }
            }
            listed.insert(partition, result);
        }
    }
    for (partition, _) in specs {
        if !listed.contains_key(&partition) {
            return Err(RequestError::MalformedResponse(format!(
                "ListOffsets answer lacks {partition}"
            )));
        }
    }
    Ok(listed)
}

/// How many times [`list_offsets`] asks again for partitions whose leader moved.
const LIST_OFFSETS_ROUTING_ATTEMPTS: u32 = 3;
/// The wait before asking again, so the cluster view can be refreshed.
const LIST_OFFSETS_ROUTING_BACKOFF: Duration = Duration::from_millis(100);

/// One ListOffsets per leader of `specs`' partitions, the answers joined.
async fn list_offsets_from_leaders(
    client: &Client,
    specs: &[(TopicPartition, OffsetSpec)],
) -> Result<Vec<(TopicPartition, Result<ListedOffset, ErrorCode>)>, RequestError> {
    let partitions: Vec<(&str, u32)> = specs
        .iter()
        .map(|(partition, _)| (partition.topic.as_str(), partition.partition))
        .collect();
    let routes = client.routes(&partitions).await;
    let mut by_node: Vec<(std::net::SocketAddr, Vec<wire::ListOffsetsTopic>)> = Vec::new();
    for ((partition, spec), (node, _)) in specs.iter().zip(routes) {
        let entry = wire::ListOffsetsPartition {
            partition: partition.partition,
            spec: *spec,
        };
        let topics = match by_node.iter().position(|(known, _)| *known == node) {
            Some(at) => &mut by_node[at].1,
            None => {
                by_node.push((node, Vec::new()));
                let at = by_node.len() - 1;
                &mut by_node[at].1
            }
        };
        match topics
            .iter_mut()
            .find(|topic| topic.name == partition.topic)
        {
            Some(topic) => topic.partitions.push(entry),
            None => topics.push(wire::ListOffsetsTopic {
                name: partition.topic.clone(),
                partitions: vec![entry],
            }),
        }
    }
    let requests = by_node.into_iter().map(|(node, topics)| async move {
        let request = Request::ListOffsets(wire::ListOffsetsRequest { topics });
        match request_with_retry_to(client, node, &request).await? {
            Response::ListOffsets(response) => Ok(response),
            other => Err(unexpected(ApiKey::ListOffsets, &other)),
        }
    });
    let mut listed = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        for topic in response?.topics {
            for partition in topic.partitions {
                let key = TopicPartition::new(topic.name.clone(), partition.partition);
                let result = if partition.error == ErrorCode::None {
                    Ok(ListedOffset {
                        offset: partition.offset,
                        timestamp: partition.timestamp,
                    })
                } else {
                    Err(partition.error)
                };
                listed.push((key, result));
            }
        }
    }
    Ok(listed)
}

/// Sends a request that changes nothing to the default node, resending after retriable
/// failures (to the next live node when the default is lost) until the client's request
/// timeout has passed.
pub(crate) async fn request_with_retry(
    client: &Client,
    request: &Request,
) -> Result<Response, RequestError> {
    client
        .request_with_failover(RequestKind::Read, request)
        .await
}

/// [`request_with_retry`] to `node` only (a partition's leader, a node asked for the groups it
/// coordinates): resent to the same node after retriable failures, each try given up once
/// the cluster stops listing the node as alive.
async fn request_with_retry_to(
    client: &Client,
    node: std::net::SocketAddr,
    request: &Request,
) -> Result<Response, RequestError> {
    let deadline = clock::now() + client.config().request_timeout;
    let mut wait = Duration::from_millis(50);
    loop {
        let answer = client.request_to_live(node, request, Duration::ZERO).await;
        match answer {
            // Sending to it again is pointless: the caller routes again.
            Err(error @ RequestError::NodeLost { .. }) => return Err(error),
            Err(error) if error.is_retriable() && clock::now() + wait < deadline => {
                tracing::debug!(%error, "retrying {:?}", request.api_key());
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            result => return result,
        }
    }
}

mod operations;
pub mod quotas;
pub mod security;
pub mod snapshot;
pub mod table;
pub use operations::{PreferredLeaderElection, ReassignmentDescription};
mod transform_partitions;
pub use transform_partitions::{TransformPartition, TransformPartitionStatus};

#[cfg(test)]
mod tests;
