//! `GroupService`: the consumer-group requests over the sans-IO [`GroupCoordinator`] and the
//! [`OffsetStore`], and the driver of the coordinator's timer.
//!
//! Owns: the coordinator and the committed-offset store (each behind its own lock, never
//! held across an await), the clock the timer waits on. Does not own: the
//! `__consumer_offsets` log, the topic list or the transforms; it reaches them through the
//! narrow [`GroupHost`] handle passed to each call (the broker implements it), so the service
//! holds no reference back to the broker.
//!
//! A commit is appended to `__consumer_offsets` first and applied to the store only once the
//! append succeeded, so the store never serves an offset a restart would not replay.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup,
    DescribedMember, ErrorCode, GroupResult, ListGroupsRequest, ListGroupsResponse, ListedGroup,
    OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopicResponse, OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopic, TopicPartitions,
};
use ledge_protocol::{BatchIter, EncodeOptions, Record, decode_batch, encode_batch};

use super::assignor::TopicPartition;
use super::classic::{ClassicError, ClassicGroups, Completion, Token};
use super::coordinator::{
    CommitEpochRule, CommitRefusal, GroupCoordinator, GroupError, GroupLimits, Heartbeat,
    MemberProtocol, TopicFilter,
};
use super::offsets::{OFFSETS_TOPIC, OffsetKey, OffsetStore, encode_value};
use crate::clock::Clock;
use crate::storage::{AppendDurability, AppendError, Disk, PartitionLog};

/// The prefix of the groups under which transforms' positions are committed.
pub const POSITION_GROUP_PREFIX: &str = "__transform.";

/// Longest the group timer sleeps between two expiry checks, even with no deadline due:
/// a heartbeat that arrives in between may add one.
const GROUP_TIMER_WAIT_MAX: Duration = Duration::from_secs(1);
/// Slack added to a due deadline before expiring, so a member is checked just after its
/// deadline rather than a hair before it.
const GROUP_TIMER_SLACK: Duration = Duration::from_millis(5);
/// Bytes of `__consumer_offsets` read per step of the replay at start.
const OFFSETS_REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// What the group service needs from the rest of the node: the topics groups may subscribe
/// to, the `__consumer_offsets` log, and which transforms exist. The broker implements it.
pub trait GroupHost: Send + Sync {
    /// Partition counts of the topics groups may subscribe to (user topics).
    fn partition_counts(&self) -> BTreeMap<String, u32>;

    /// Whether `topic` has a partition `partition` (a commit to anything else is refused).
    fn has_partition(&self, topic: &str, partition: u32) -> bool;

    /// Whether a transform named `name` exists (its position group is then its own).
    fn transform_exists(&self, name: &str) -> impl Future<Output = bool> + Send;

    /// The `__consumer_offsets` partition holding `group_id`'s commits (0 on a node without
    /// `[cluster]`, whose topic has one partition; `groups::placement` in a cluster).
    fn offsets_partition(&self, group_id: &str) -> u32;

    /// Appends one encoded batch to partition `partition` of `__consumer_offsets`; returns
    /// its base offset.
    fn append_offsets_batch(
        &self,
        partition: u32,
        batch: Bytes,
        durability: AppendDurability,
    ) -> impl Future<Output = Result<i64, OffsetsLogError>> + Send;
}

/// Why `__consumer_offsets` could not take a commit.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsLogError {
    /// The topic does not exist (a read-only data directory, or its creation failed).
    #[error("{OFFSETS_TOPIC} does not exist")]
    Missing,
    /// Its partition is offline.
    #[error("{OFFSETS_TOPIC} is offline: {reason}")]
    Offline {
        /// Why.
        reason: String,
    },
    /// The append failed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The commit records could not be encoded.
    #[error("encoding the commit records: {0}")]
    Encode(String),
    /// In a cluster: this node does not lead the group's offsets partition (any more).
    #[error(
        "this node does not lead the group's {OFFSETS_TOPIC} partition: find the coordinator again"
    )]
    NotLeader,
    /// In a cluster: the in-sync replicas of the group's offsets partition did not confirm
    /// the commit (too few in sync, or not in time); it may or may not survive a failover.
    #[error("the commit was not confirmed by the in-sync replicas of {OFFSETS_TOPIC}: {0}")]
    NotReplicated(#[from] crate::replication::leader::AcksAllError),
}

/// Why a group request failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupServiceError {
    /// The coordinator refused it.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The group holds a transform's input positions; only the transform changes it.
    #[error(
        "group {group_id:?} holds the input positions of transform {transform:?} and is changed only through it: use `ledge transform` (pause, resume, remove, deploy) instead of `ledge group`"
    )]
    TransformGroup {
        /// The group.
        group_id: String,
        /// The transform whose positions it holds.
        transform: String,
    },
    /// A committed offset's metadata is longer than the stored value can keep.
    #[error(
        "the metadata of {topic}/{partition} is {bytes} bytes, more than groups.offset_metadata_bytes_max ({limit})"
    )]
    MetadataTooLong {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Its metadata's length.
        bytes: usize,
        /// `groups.offset_metadata_bytes_max`.
        limit: usize,
    },
    /// The group does not exist (no members, no committed offsets).
    #[error("group {0:?} does not exist")]
    NotFound(String),
    /// `__consumer_offsets` did not take the commit.
    #[error(transparent)]
    OffsetsLog(#[from] OffsetsLogError),
    /// The classic group protocol refused it.
    #[error(transparent)]
    Classic(#[from] ClassicError),
    /// A KIP-848 member asked to join a classic group that has members.
    #[error(
        "group {group_id:?} is a classic group with {members} Kafka (JoinGroup) members; a KIP-848 member can join it once they have left, or use another group id"
    )]
    ClassicGroupInUse {
        /// The group.
        group_id: String,
        /// Its classic members.
        members: usize,
    },
}

/// Consumer groups: membership, committed offsets and the timer that expires members.
pub struct GroupService {
    coordinator: Mutex<GroupCoordinator>,
    /// Classic (JoinGroup) groups; never locked while `coordinator` is held by the same
    /// thread, except in the order classic → coordinator.
    classic: Mutex<ClassicGroups>,
    /// The held JoinGroup/SyncGroup requests, by token; at most two per classic member.
    classic_waiters:
        Mutex<std::collections::HashMap<Token, tokio::sync::oneshot::Sender<Completion>>>,
    classic_next_token: std::sync::atomic::AtomicU64,
    /// Classic members of KIP-848 groups, by (group, member).
    classic_in_consumer: Mutex<BTreeMap<(String, String), classic::ClassicConsumerMember>>,
    /// Wakes the group timer when a request may have added an earlier deadline.
    timer_wake: tokio::sync::Notify,
    offsets: Mutex<OffsetStore>,
    /// In a cluster: the `__consumer_offsets` partitions loaded here (led by this node as of
    /// the last image the loader acted on). A node without `[cluster]` never sets it.
    coordinated: Mutex<BTreeSet<u32>>,
    /// Set once a `[cluster]` node's offsets loader starts: from then on offsets are
    /// appended only to the partitions in `coordinated` (never to a follower's copy).
    in_cluster: std::sync::atomic::AtomicBool,
    clock: Arc<dyn Clock>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await; poisoning means a panic already reported.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn grouped(partitions: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<&String, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| TopicPartitions {
            topic: topic.clone(),
            partitions,
        })
        .collect()
}

/// The refusal of a client's change to a transform's position group, if `group_id` is one.
fn transform_group_refusal(group_id: &str) -> Option<GroupServiceError> {
    group_id
        .strip_prefix(POSITION_GROUP_PREFIX)
        .map(|transform| GroupServiceError::TransformGroup {
            group_id: group_id.to_string(),
            transform: transform.to_string(),
        })
}

impl GroupService {
    /// An empty service; `member_salt` keeps member ids unique across restarts.
    pub fn new(limits: GroupLimits, member_salt: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            coordinator: Mutex::new(GroupCoordinator::new(limits.clone(), member_salt)),
            classic: Mutex::new(ClassicGroups::new(limits, member_salt)),
            classic_waiters: Mutex::new(std::collections::HashMap::new()),
            classic_next_token: std::sync::atomic::AtomicU64::new(0),
            classic_in_consumer: Mutex::new(BTreeMap::new()),
            timer_wake: tokio::sync::Notify::new(),
            offsets: Mutex::new(OffsetStore::default()),
            coordinated: Mutex::new(BTreeSet::new()),
            in_cluster: std::sync::atomic::AtomicBool::new(false),
            clock,
        }
    }

    /// Replays `log` (`__consumer_offsets`) into the offset store (at start).
    pub async fn load_offsets<D: Disk>(&self, log: &PartitionLog<D>) {
        let mut offset = log.log_start_offset();
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        while offset < log.high_watermark() {
            let read = match log.read(offset, OFFSETS_REPLAY_READ_BYTES).await {
                Ok(read) if !read.bytes.is_empty() => read,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "reading {OFFSETS_TOPIC} failed; offsets after {offset} are not loaded");
                    break;
                }
            };
            let read_from = offset;
            let mut store = lock(&self.offsets);
            for item in BatchIter::new(&read.bytes) {
                let Ok((header, bytes)) = item else { break };
                offset = header.last_offset().saturating_add(1);
                let Ok(decoded) = decode_batch(&read.bytes.slice_ref(bytes), &Default::default())
                else {
                    skipped += 1;
                    continue;
                };
                for record in decoded.records {
                    if store.apply(
                        record.offset,
                        record.key.as_deref(),
                        record.value.as_deref(),
                    ) {
                        loaded += 1;
                    } else {
                        skipped += 1;
                    }
                }
            }
            if offset <= read_from {
                // The read's first batch does not parse. `PartitionLog::read` refuses damaged
                // batches itself today; this keeps the loop bounded even if a read ever
                // returns bytes that do not parse, since reading them again would never end
                // and the node would never start.
                tracing::error!(
                    offset,
                    "{OFFSETS_TOPIC} has an unreadable batch at offset {offset}; committed offsets after it are not loaded"
                );
                break;
            }
        }
        tracing::info!(
            loaded,
            skipped,
            "committed offsets loaded from {OFFSETS_TOPIC}"
        );
    }

    /// The coordinator's limits.
    pub fn limits(&self) -> GroupLimits {
        lock(&self.coordinator).limits().clone()
    }

    /// The `__consumer_offsets` partitions loaded here (cluster only).
    pub fn coordinated_partitions(&self) -> BTreeSet<u32> {
        lock(&self.coordinated).clone()
    }

    /// Whether `__consumer_offsets` partition `partition` is loaded here (cluster only).
    pub fn coordinates(&self, partition: u32) -> bool {
        lock(&self.coordinated).contains(&partition)
    }

    /// Replays partition `partition` of `__consumer_offsets` (`log`), which this node now
    /// leads, and coordinates its groups from then on (cluster only).
    pub async fn load_partition<D: Disk>(&self, partition: u32, log: &PartitionLog<D>) {
        self.load_offsets(log).await;
        lock(&self.coordinated).insert(partition);
        tracing::info!(
            partition,
            "coordinating the groups of {OFFSETS_TOPIC} partition {partition}"
        );
    }

    /// Stops coordinating the groups `in_partition` selects: their offsets partition is
    /// led elsewhere now (cluster only). Their members and committed offsets are forgotten
    /// here; the new coordinator replays them from its copy of the partition.
    pub fn unload_partition(&self, partition: u32, in_partition: impl Fn(&str) -> bool) {
        lock(&self.coordinated).remove(&partition);
        let members = lock(&self.coordinator).unload(&in_partition);
        let classic_members = {
            let mut classic = lock(&self.classic);
            let count = classic.unload(&in_partition);
            self.deliver(&mut classic);
            count
        };
        lock(&self.classic_in_consumer).retain(|(group_id, _), _| !in_partition(group_id));
        let offsets = lock(&self.offsets).unload(&in_partition);
        tracing::info!(
            partition,
            groups_with_members = members,
            classic_groups = classic_members,
            groups_with_offsets = offsets,
            "no longer coordinating the groups of {OFFSETS_TOPIC} partition {partition}"
        );
    }

    /// Forgets every group and loaded partition: a `[cluster]` node starts coordinating from
    /// the image, not from what its local `__consumer_offsets` held before it joined.
    pub fn unload_all(&self) {
        self.in_cluster
            .store(true, std::sync::atomic::Ordering::Release);
        lock(&self.coordinated).clear();
        lock(&self.coordinator).unload(|_| true);
        {
            let mut classic = lock(&self.classic);
            classic.unload(|_| true);
            self.deliver(&mut classic);
        }
        lock(&self.classic_in_consumer).clear();
        lock(&self.offsets).unload(|_| true);
    }

    /// Expires silent members (also run on every heartbeat, and by [`Self::run_timer`]).
    pub fn expire_members(&self, host: &impl GroupHost) {
        let counts = host.partition_counts();
        let now = self.clock.now();
        let removed = lock(&self.coordinator).handle_timeout(now, &counts);
        self.forget_expired_consumer_members(&removed);
        let classic_removed = {
            let mut classic = lock(&self.classic);
            let removed = classic.handle_timeout(now);
            self.deliver(&mut classic);
            removed
        };
        for (group, member) in removed.into_iter().chain(classic_removed) {
            tracing::info!(
                group,
                member,
                "member expired (session or rebalance timeout)"
            );
        }
    }

    /// Expires group members on time, on the node's clock, for as long as it is polled.
    pub async fn run_timer(&self, host: &impl GroupHost) {
        loop {
            let consumer_deadline = lock(&self.coordinator).poll_timeout();
            let classic_deadline = lock(&self.classic).poll_timeout();
            let wait = consumer_deadline
                .into_iter()
                .chain(classic_deadline)
                .min()
                .map_or(GROUP_TIMER_WAIT_MAX, |deadline| {
                    deadline.saturating_duration_since(self.clock.now())
                })
                .min(GROUP_TIMER_WAIT_MAX);
            // A classic join may add a deadline sooner than the one slept for (the initial
            // rebalance delay): it wakes the timer to recompute.
            tokio::select! {
                () = crate::clock::sleep(&*self.clock, wait + GROUP_TIMER_SLACK) => {}
                () = self.timer_wake.notified() => {}
            }
            self.expire_members(host);
        }
    }

    /// Refuses a client's change to a transform's position group while the transform exists
    /// (once it is removed, a leftover group is an ordinary one that may be deleted). A
    /// reset or deletion through the group APIs would make the transform reprocess its input
    /// (duplicated output), and a consumer joining it would commit over its positions.
    async fn check_not_transform_group(
        &self,
        host: &impl GroupHost,
        group_id: &str,
    ) -> Result<(), GroupServiceError> {
        let Some(refusal) = transform_group_refusal(group_id) else {
            return Ok(());
        };
        let GroupServiceError::TransformGroup { transform, .. } = &refusal else {
            return Ok(());
        };
        if host.transform_exists(transform).await {
            return Err(refusal);
        }
        Ok(())
    }

    /// A member's heartbeat: joins, keeps alive, reports owned partitions, learns its
    /// assignment.
    pub fn heartbeat(
        &self,
        host: &impl GroupHost,
        request: ConsumerGroupHeartbeatRequest,
        client_id: &str,
        pattern_filter: TopicFilter,
    ) -> ConsumerGroupHeartbeatResponse {
        // No consumer may ever join a transform's position group: its commits would move
        // the transform's positions. Refused by name, whether or not the transform exists.
        if let Some(refusal) = transform_group_refusal(&request.group_id) {
            return ConsumerGroupHeartbeatResponse {
                error: ErrorCode::from(&refusal),
                message: crate::broker::client_text::client_text(&refusal),
                ..ConsumerGroupHeartbeatResponse::default()
            };
        }
        if request.member_id.is_empty()
            && request.member_epoch == 0
            && let Err(refusal) = self.check_not_classic(&request.group_id)
        {
            return ConsumerGroupHeartbeatResponse {
                error: ErrorCode::from(&refusal),
                message: crate::broker::client_text::client_text(&refusal),
                ..ConsumerGroupHeartbeatResponse::default()
            };
        }
        let counts = host.partition_counts();
        let now = self.clock.now();
        let owned: BTreeSet<TopicPartition> = request
            .owned_partitions
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.topic.clone(), *partition))
            })
            .collect();
        let heartbeat = Heartbeat {
            group_id: request.group_id,
            member_id: request.member_id,
            member_id_from_client: false,
            member_epoch: request.member_epoch,
            instance_id: request.instance_id,
            client_id: client_id.to_string(),
            rebalance_timeout: Duration::from_millis(u64::from(request.rebalance_timeout_ms)),
            session_timeout: Duration::from_millis(u64::from(request.session_timeout_ms)),
            subscribed_topics: request.subscribed_topics,
            subscribed_pattern: request.subscribed_pattern,
            pattern_filter,
            assignor: request.assignor,
            // The native heartbeat always carries what the member owns.
            owned,
            owned_omitted: false,
            protocol: MemberProtocol::Consumer,
        };
        let mut coordinator = lock(&self.coordinator);
        coordinator.handle_timeout(now, &counts);
        match coordinator.handle_heartbeat(now, heartbeat, &counts) {
            Ok(reply) => ConsumerGroupHeartbeatResponse {
                error: ErrorCode::None,
                message: String::new(),
                member_id: reply.member_id,
                member_epoch: reply.member_epoch,
                heartbeat_interval_ms: u32::try_from(reply.heartbeat_interval.as_millis())
                    .unwrap_or(u32::MAX),
                assignment: grouped(&reply.assignment),
            },
            Err(error) => ConsumerGroupHeartbeatResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                ..ConsumerGroupHeartbeatResponse::default()
            },
        }
    }

    /// Commits a group's offsets (answered per partition).
    pub async fn offset_commit(
        &self,
        host: &impl GroupHost,
        request: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        match self
            .try_offset_commit(host, &request, Some(CommitEpochRule::NotNewer))
            .await
        {
            Ok(codes) => {
                let mut codes = codes.into_iter();
                OffsetCommitResponse {
                    error: ErrorCode::None,
                    message: String::new(),
                    topics: request
                        .topics
                        .iter()
                        .map(|topic| OffsetCommitTopicResponse {
                            name: topic.name.clone(),
                            partitions: topic
                                .partitions
                                .iter()
                                .map(|partition| OffsetCommitPartitionResponse {
                                    partition: partition.partition,
                                    error: codes.next().unwrap_or(ErrorCode::None),
                                })
                                .collect(),
                        })
                        .collect(),
                }
            }
            Err(error) => OffsetCommitResponse {
                error: ErrorCode::from(&error),
                message: crate::broker::client_text::client_text(&error),
                topics: Vec::new(),
            },
        }
    }

    /// Checks and appends a commit; returns each partition's code, in request order.
    /// `consumer_checks`: the member is checked by the KIP-848 coordinator (its epoch by
    /// this rule, and its assignment); `None` when the classic checks already passed.
    async fn try_offset_commit(
        &self,
        host: &impl GroupHost,
        request: &OffsetCommitRequest,
        consumer_checks: Option<CommitEpochRule>,
    ) -> Result<Vec<ErrorCode>, GroupServiceError> {
        self.check_not_transform_group(host, &request.group_id)
            .await?;
        let partitions: Vec<TopicPartition> = request
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| (topic.name.clone(), partition.partition))
            })
            .collect();
        // An administrative commit (no member) is for empty groups only, classic groups
        // included. (Checked before the coordinator is locked: the lock order is classic,
        // then coordinator.)
        let administrative_commit_of_classic_group = consumer_checks.is_some()
            && request.member_id.is_empty()
            && lock(&self.classic).has_members(&request.group_id);
        let verdicts = {
            let coordinator = lock(&self.coordinator);
            // The stored value keeps at most a 16-bit length: longer metadata would be cut
            // (possibly inside a character, making the commit unreadable at the next start).
            let limit = coordinator.limits().offset_metadata_bytes_max;
            if let Some((topic, partition)) = request.topics.iter().find_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .find(|partition| partition.metadata.len() > limit)
                    .map(|partition| (topic, partition))
            }) {
                return Err(GroupServiceError::MetadataTooLong {
                    topic: topic.name.clone(),
                    partition: partition.partition,
                    bytes: partition.metadata.len(),
                    limit,
                });
            }
            match consumer_checks {
                None => vec![None; partitions.len()],
                Some(_) if administrative_commit_of_classic_group => {
                    return Err(GroupError::NonEmptyGroup(request.group_id.clone()).into());
                }
                Some(rule) => coordinator.validate_commit(
                    &request.group_id,
                    &request.member_id,
                    request.member_epoch,
                    rule,
                    &partitions,
                )?,
            }
        };
        let now_ms = self.clock.wall_time_ms();
        let mut records = Vec::new();
        let mut codes = Vec::new();
        let mut verdicts = verdicts.into_iter();
        for topic in &request.topics {
            for partition in &topic.partitions {
                let verdict = verdicts.next().flatten();
                let code = if verdict == Some(CommitRefusal::NotAssigned) {
                    ErrorCode::PartitionNotAssigned
                } else if !host.has_partition(&topic.name, partition.partition) {
                    ErrorCode::UnknownTopicOrPartition
                } else if partition.offset < 0 {
                    ErrorCode::InvalidRequest
                } else {
                    let key = OffsetKey {
                        group: request.group_id.clone(),
                        topic: topic.name.clone(),
                        partition: partition.partition,
                    };
                    records.push(Record {
                        timestamp: now_ms,
                        key: Some(key.encode()),
                        value: Some(encode_value(partition.offset, &partition.metadata, now_ms)),
                        headers: Vec::new(),
                    });
                    ErrorCode::None
                };
                codes.push(code);
            }
        }
        if !records.is_empty() {
            self.append_offsets(host, &request.group_id, &records, AppendDurability::Synced)
                .await?;
        }
        Ok(codes)
    }

    /// Appends commit (or tombstone) records of `group_id` with `durability` to the group's
    /// `__consumer_offsets` partition, then applies them to the store. Transforms commit positions `Written` (synced within `flush.interval`), since
    /// losing one only repeats work that is already durable in the output.
    pub async fn append_offsets(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        records: &[Record],
        durability: AppendDurability,
    ) -> Result<(), OffsetsLogError> {
        let batch = encode_batch(records, &EncodeOptions::default())
            .map_err(|error| OffsetsLogError::Encode(error.to_string()))?;
        let partition = host.offsets_partition(group_id);
        // In a cluster only the partition's leader appends (a transform's positions included:
        // a transform running elsewhere must not write into a follower's copy).
        if self.in_cluster.load(std::sync::atomic::Ordering::Acquire)
            && !self.coordinates(partition)
        {
            return Err(OffsetsLogError::NotLeader);
        }
        let base_offset = host
            .append_offsets_batch(partition, batch, durability)
            .await?;
        let mut store = lock(&self.offsets);
        for (number, record) in records.iter().enumerate() {
            store.apply(
                base_offset + number as i64,
                record.key.as_deref(),
                record.value.as_deref(),
            );
        }
        Ok(())
    }

    /// The offset `group` committed for `topic`/`partition`, if any.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: u32) -> Option<i64> {
        lock(&self.offsets)
            .group(group)
            .and_then(|offsets| offsets.get(&(topic.to_string(), partition)))
            .map(|committed| committed.offset)
    }

    /// Every offset `group` committed for `topic`, by partition.
    pub fn committed_offsets(&self, group: &str, topic: &str) -> BTreeMap<u32, i64> {
        lock(&self.offsets)
            .group(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .filter(|((committed_topic, _), _)| committed_topic == topic)
                    .map(|((_, partition), committed)| (*partition, committed.offset))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every committed offset held here: (group, topic, partition, offset), sorted; for
    /// `/metrics` (lag), copied under the lock and used after it.
    pub fn all_committed_offsets(&self) -> Vec<(String, String, u32, i64)> {
        let store = lock(&self.offsets);
        let mut all = Vec::new();
        for group in store.group_ids() {
            if let Some(offsets) = store.group(group) {
                for ((topic, partition), committed) in offsets {
                    all.push((group.clone(), topic.clone(), *partition, committed.offset));
                }
            }
        }
        all
    }

    /// Forgets the committed offsets of a deleted topic.
    pub fn remove_topic(&self, topic: &str) {
        lock(&self.offsets).remove_topic(topic);
    }

    /// A group's committed offsets.
    pub fn offset_fetch(&self, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let store = lock(&self.offsets);
        let committed = store.group(&request.group_id);
        let topics = match request.topics {
            Some(topics) => topics
                .into_iter()
                .map(|topic| OffsetFetchTopic {
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            match committed
                                .and_then(|offsets| offsets.get(&(topic.topic.clone(), *partition)))
                            {
                                Some(offset) => OffsetFetchPartition {
                                    partition: *partition,
                                    offset: Some(offset.offset),
                                    metadata: offset.metadata.clone(),
                                    commit_time_ms: offset.commit_time_ms,
                                },
                                None => OffsetFetchPartition {
                                    partition: *partition,
                                    offset: None,
                                    metadata: String::new(),
                                    commit_time_ms: -1,
                                },
                            }
                        })
                        .collect(),
                    name: topic.topic,
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<OffsetFetchPartition>> = BTreeMap::new();
                for ((topic, partition), offset) in committed.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push(OffsetFetchPartition {
                            partition: *partition,
                            offset: Some(offset.offset),
                            metadata: offset.metadata.clone(),
                            commit_time_ms: offset.commit_time_ms,
                        });
                }
                by_topic
                    .into_iter()
                    .map(|(name, partitions)| OffsetFetchTopic { name, partitions })
                    .collect()
            }
        };
        OffsetFetchResponse {
            error: ErrorCode::None,
            message: String::new(),
            topics,
        }
    }

    /// Groups with members or committed offsets.
    pub fn list_groups(&self, request: ListGroupsRequest) -> ListGroupsResponse {
        ListGroupsResponse {
            groups: self
                .list_any_groups()
                .into_iter()
                .filter(|group| {
                    request.states.is_empty()
                        || request
                            .states
                            .iter()
                            .any(|state| state.eq_ignore_ascii_case(&group.state))
                })
                .map(|group| ListedGroup {
                    group_id: group.group_id,
                    state: group.state,
                    members: u32::try_from(group.members).unwrap_or(u32::MAX),
                })
                .collect(),
        }
    }

    /// Groups' members and assignments.
    pub fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let classic = lock(&self.classic);
        let coordinator = lock(&self.coordinator);
        let store = lock(&self.offsets);
        let groups = request
            .group_ids
            .into_iter()
            .map(|group_id| match coordinator.describe(&group_id) {
                // A classic group (Kafka clients), unless the KIP-848 group of this id has
                // members: its members' consumer-protocol metadata shows what they hold.
                description
                    if description
                        .as_ref()
                        .is_none_or(|described| described.members.is_empty())
                        && classic.contains(&group_id) =>
                {
                    describe_classic(group_id, &classic)
                }
                Some(description) => DescribedGroup {
                    group_id,
                    error: ErrorCode::None,
                    message: String::new(),
                    state: description.state.into(),
                    assignor: description.assignor,
                    group_epoch: description.group_epoch,
                    members: description
                        .members
                        .into_iter()
                        .map(|member| DescribedMember {
                            member_id: member.member_id,
                            instance_id: member.instance_id,
                            client_id: member.client_id,
                            member_epoch: member.member_epoch,
                            subscribed_topics: member.subscribed_topics,
                            assignment: grouped(&member.assignment),
                        })
                        .collect(),
                },
                None if store.group(&group_id).is_some() => DescribedGroup {
                    group_id,
                    error: ErrorCode::None,
                    message: String::new(),
                    state: "Empty".into(),
                    assignor: String::new(),
                    group_epoch: 0,
                    members: Vec::new(),
                },
                None => {
                    let error = GroupServiceError::NotFound(group_id.clone());
                    DescribedGroup {
                        message: crate::broker::client_text::client_text(&error),
                        group_id,
                        error: ErrorCode::from(&error),
                        ..DescribedGroup::default()
                    }
                }
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// Deletes empty groups and their committed offsets (answered per group).
    pub async fn delete_groups(
        &self,
        host: &impl GroupHost,
        request: DeleteGroupsRequest,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        for group_id in request.group_ids {
            let outcome = match self.check_not_transform_group(host, &group_id).await {
                Ok(()) => self.delete_group(host, &group_id).await,
                Err(refusal) => Err(refusal),
            };
            results.push(match outcome {
                Ok(()) => GroupResult {
                    group_id,
                    error: ErrorCode::None,
                    message: String::new(),
                },
                Err(error) => GroupResult {
                    group_id,
                    error: ErrorCode::from(&error),
                    message: crate::broker::client_text::client_text(&error),
                },
            });
        }
        DeleteGroupsResponse { groups: results }
    }

    /// Deletes an empty group: tombstones for its committed offsets, then its state.
    pub async fn delete_group(
        &self,
        host: &impl GroupHost,
        group_id: &str,
    ) -> Result<(), GroupServiceError> {
        let keys: Vec<(String, u32)> = {
            let classic = lock(&self.classic);
            let coordinator = lock(&self.coordinator);
            if coordinator.has_members(group_id) || classic.has_members(group_id) {
                return Err(GroupError::NonEmptyGroup(group_id.to_string()).into());
            }
            let store = lock(&self.offsets);
            match store.group(group_id) {
                Some(offsets) => offsets.keys().cloned().collect(),
                None if coordinator.describe(group_id).is_some() || classic.contains(group_id) => {
                    Vec::new()
                }
                None => return Err(GroupServiceError::NotFound(group_id.to_string())),
            }
        };
        if !keys.is_empty() {
            let now_ms = self.clock.wall_time_ms();
            let tombstones: Vec<Record> = keys
                .into_iter()
                .map(|(topic, partition)| Record {
                    timestamp: now_ms,
                    key: Some(
                        OffsetKey {
                            group: group_id.to_string(),
                            topic,
                            partition,
                        }
                        .encode(),
                    ),
                    value: None,
                    headers: Vec::new(),
                })
                .collect();
            self.append_offsets(host, group_id, &tombstones, AppendDurability::Synced)
                .await?;
        }
        lock(&self.classic).delete(group_id)?;
        lock(&self.coordinator).delete(group_id)?;
        lock(&self.offsets).remove_group(group_id);
        Ok(())
    }
}

mod classic;
pub use classic::{ClassicCommit, DescribedAnyGroup, ListedAnyGroup, OffsetDeleteRefusal};
mod kafka_consumer;
pub use kafka_consumer::{
    ConsumerGroupView, DEFAULT_SERVER_ASSIGNOR, KafkaConsumerHeartbeat, KafkaConsumerReply,
};

/// A classic group as the QUIC DescribeGroups shows it: its protocol as the assignor, its
/// generation as the epoch, and (for `consumer` groups) what each member subscribes to and
/// was assigned, read from the consumer protocol.
fn describe_classic(group_id: String, classic: &ClassicGroups) -> DescribedGroup {
    let Some(group) = classic.describe(&group_id) else {
        return DescribedGroup {
            group_id,
            ..DescribedGroup::default()
        };
    };
    let consumer = group.protocol_type == super::consumer_protocol::CONSUMER_PROTOCOL_TYPE;
    DescribedGroup {
        group_id,
        error: ErrorCode::None,
        message: String::new(),
        state: group.state.name().into(),
        assignor: group.protocol_name,
        group_epoch: group.generation,
        members: group
            .members
            .into_iter()
            .map(|member| {
                let subscribed_topics = consumer
                    .then(|| super::consumer_protocol::decode_subscription(&member.metadata).ok())
                    .flatten()
                    .map(|subscription| subscription.topics)
                    .unwrap_or_default();
                let assignment = consumer
                    .then(|| super::consumer_protocol::decode_assignment(&member.assignment).ok())
                    .flatten()
                    .unwrap_or_default();
                DescribedMember {
                    member_id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                    member_epoch: group.generation,
                    subscribed_topics,
                    assignment: grouped(&assignment),
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod classic_tests;
#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ledge_protocol::wire::{DescribeGroupsRequest, Request, Response};

    use super::*;
    use crate::broker::{Broker, BrokerConfig, DeclaredTopic};
    use crate::clock::SimClock;
    use crate::sim::SimDisk;

    // Goal (issue 12, one clock): the group timer waits on the node's clock, so on paused
    // time a member that stops heartbeating is expired by the timer alone once its session
    // timeout passes on that clock, and not before.
    #[test]
    fn the_group_timer_expires_a_silent_member_on_the_nodes_clock() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let clock: Arc<dyn Clock> = Arc::new(SimClock::new(1_000_000));
            let broker = Broker::open(
                SimDisk::new(21),
                Path::new("/data"),
                BrokerConfig::default(),
                Arc::clone(&clock),
            )
            .await
            .unwrap();
            let broker = Arc::new(broker);
            broker
                .reconcile(&[DeclaredTopic {
                    name: "t".into(),
                    partitions: 2,
                    configs: BTreeMap::new(),
                    origin: "test".into(),
                }])
                .await
                .unwrap();
            let Response::ConsumerGroupHeartbeat(joined) = broker
                .handle(Request::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatRequest {
                        group_id: "g".into(),
                        member_epoch: 0,
                        rebalance_timeout_ms: 5_000,
                        session_timeout_ms: 10_000,
                        subscribed_topics: vec!["t".into()],
                        assignor: "range".into(),
                        ..ConsumerGroupHeartbeatRequest::default()
                    },
                ))
                .await
            else {
                panic!("wrong response")
            };
            assert_eq!(joined.error, ErrorCode::None, "{}", joined.message);
            let described = || async {
                let Response::DescribeGroups(described) = broker
                    .handle(Request::DescribeGroups(DescribeGroupsRequest {
                        group_ids: vec!["g".into()],
                    }))
                    .await
                else {
                    panic!("wrong response")
                };
                described.groups[0].members.len()
            };
            assert_eq!(described().await, 1);
            let timer = tokio::spawn(Arc::clone(&broker).run_group_timer());
            // Within the session timeout (on the node's clock) the member stays, though the
            // timer has run meanwhile.
            crate::clock::sleep(&*clock, Duration::from_secs(9)).await;
            assert_eq!(described().await, 1);
            // Past it, the timer alone has expired the member.
            crate::clock::sleep(&*clock, Duration::from_secs(2)).await;
            assert_eq!(described().await, 0);
            timer.abort();
        });
    }
}
