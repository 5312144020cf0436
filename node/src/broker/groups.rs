//! The consumer-group driver: wires the sans-IO `GroupCoordinator` and `OffsetStore` to the
//! broker's logs and the wire protocol. The only group code that touches IO or time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ledge_protocol::wire::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup,
    DescribedMember, ErrorCode, GroupResult, ListGroupsRequest, ListGroupsResponse, ListedGroup,
    OffsetCommitPartitionResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetCommitTopicResponse, OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse,
    OffsetFetchTopic, TopicPartitions,
};
use ledge_protocol::{BatchIter, EncodeOptions, Record, decode_batch, encode_batch};

use super::transforms::POSITION_GROUP_PREFIX;
use super::{Broker, read};
use crate::groups::assignor::TopicPartition;
use crate::groups::coordinator::{CommitRefusal, GroupError, Heartbeat};
use crate::groups::offsets::{OFFSETS_TOPIC, OffsetKey, encode_value};
use crate::storage::{AppendDurability, Disk};

fn error_code(error: &GroupError) -> ErrorCode {
    match error {
        GroupError::InvalidGroupId(_) => ErrorCode::InvalidGroupId,
        GroupError::UnknownMember { .. } => ErrorCode::UnknownMemberId,
        GroupError::InconsistentAssignor(_) => ErrorCode::InconsistentGroupProtocol,
        GroupError::GroupFull { .. } | GroupError::TooManyGroups(_) => {
            ErrorCode::GroupMaxSizeReached
        }
        GroupError::InvalidPattern { .. } => ErrorCode::InvalidRegularExpression,
        GroupError::InvalidTimeout(_) => ErrorCode::InvalidRequest,
        GroupError::NonEmptyGroup(_) => ErrorCode::NonEmptyGroup,
        GroupError::UnknownGroup(_) => ErrorCode::GroupIdNotFound,
        GroupError::FencedEpoch { .. } => ErrorCode::FencedMemberEpoch,
    }
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

/// Why a client may not join, commit to or delete `group_id`: a transform's position group
/// is written only by its transform. A reset or deletion through the group APIs would make the
/// transform reprocess its input (duplicated output), and a consumer joining it would commit
/// over the transform's positions.
fn transform_group_refusal(group_id: &str, transform: &str) -> (ErrorCode, String) {
    (
        ErrorCode::InvalidGroupId,
        format!(
            "group {group_id:?} holds the input positions of transform {transform:?} and is changed only through it: use `ledge transform` (pause, resume, remove, deploy) instead of `ledge group`"
        ),
    )
}

impl<D: Disk> Broker<D> {
    /// Refuses a client's change to a transform's position group while the transform exists
    /// (once it is removed, a leftover group is an ordinary one that may be deleted).
    async fn check_not_transform_group(&self, group_id: &str) -> Result<(), (ErrorCode, String)> {
        let Some(transform) = group_id.strip_prefix(POSITION_GROUP_PREFIX) else {
            return Ok(());
        };
        if self
            .admin
            .lock()
            .await
            .current()
            .transforms
            .contains_key(transform)
        {
            return Err(transform_group_refusal(group_id, transform));
        }
        Ok(())
    }

    /// Partition counts of user topics (what groups can subscribe to).
    pub(super) fn partition_counts(&self) -> BTreeMap<String, u32> {
        read(&self.topics)
            .iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(name, topic)| (name.clone(), read(&topic.partitions).len() as u32))
            .collect()
    }

    /// Replays `__consumer_offsets` into the offset store (at start).
    pub(super) async fn load_offsets(&self) {
        let Ok(log) = self
            .partition(OFFSETS_TOPIC, 0)
            .and_then(|partition| partition.log())
        else {
            tracing::error!("{OFFSETS_TOPIC} is offline: committed offsets are unavailable");
            return;
        };
        let mut offset = log.log_start_offset();
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        while offset < log.high_watermark() {
            let read = match log.read(offset, 4 * 1024 * 1024).await {
                Ok(read) if !read.bytes.is_empty() => read,
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "reading {OFFSETS_TOPIC} failed; offsets after {offset} are not loaded");
                    break;
                }
            };
            let read_from = offset;
            let mut store = self
                .offsets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    /// Expires silent members (also run on every heartbeat, and by [`Broker::run_group_timer`]).
    pub fn expire_group_members(&self) {
        let counts = self.partition_counts();
        let now = self.clock.now();
        let removed = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .handle_timeout(now, &counts);
        for (group, member) in removed {
            tracing::info!(
                group,
                member,
                "member expired (session or rebalance timeout)"
            );
        }
    }

    /// Expires group members on time, for as long as the broker lives.
    pub async fn run_group_timer(self: Arc<Self>) {
        loop {
            let wait = {
                let coordinator = self
                    .groups
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                coordinator
                    .poll_timeout()
                    .map_or(Duration::from_secs(1), |deadline| {
                        deadline.saturating_duration_since(self.clock.now())
                    })
                    .min(Duration::from_secs(1))
            };
            crate::clock::sleep(&*self.clock, wait + Duration::from_millis(5)).await;
            self.expire_group_members();
        }
    }

    pub(super) fn heartbeat(
        &self,
        request: ConsumerGroupHeartbeatRequest,
        client_id: &str,
    ) -> ConsumerGroupHeartbeatResponse {
        // No consumer may ever join a transform's position group: its commits would move
        // the transform's positions. Refused by name, whether or not the transform exists.
        if let Some(transform) = request.group_id.strip_prefix(POSITION_GROUP_PREFIX) {
            let (error, message) = transform_group_refusal(&request.group_id, transform);
            return ConsumerGroupHeartbeatResponse {
                error,
                message,
                ..ConsumerGroupHeartbeatResponse::default()
            };
        }
        let counts = self.partition_counts();
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
            member_epoch: request.member_epoch,
            instance_id: request.instance_id,
            client_id: client_id.to_string(),
            rebalance_timeout: Duration::from_millis(u64::from(request.rebalance_timeout_ms)),
            session_timeout: Duration::from_millis(u64::from(request.session_timeout_ms)),
            subscribed_topics: request.subscribed_topics,
            subscribed_pattern: request.subscribed_pattern,
            assignor: request.assignor,
            owned,
        };
        let mut coordinator = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                error: error_code(&error),
                message: error.to_string(),
                ..ConsumerGroupHeartbeatResponse::default()
            },
        }
    }

    pub(super) async fn offset_commit(&self, request: OffsetCommitRequest) -> OffsetCommitResponse {
        if let Err((error, message)) = self.check_not_transform_group(&request.group_id).await {
            return OffsetCommitResponse {
                error,
                message,
                topics: Vec::new(),
            };
        }
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
        let verdicts = {
            let coordinator = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The stored value keeps at most a 16-bit length: longer metadata would be cut
            // (possibly inside a character, making the commit unreadable at the next start).
            let metadata_max = coordinator.limits().offset_metadata_bytes_max;
            if let Some((topic, partition)) = request.topics.iter().find_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .find(|partition| partition.metadata.len() > metadata_max)
                    .map(|partition| (topic, partition))
            }) {
                return OffsetCommitResponse {
                    error: ErrorCode::InvalidRequest,
                    message: format!(
                        "the metadata of {}/{} is {} bytes, more than groups.offset_metadata_bytes_max ({metadata_max})",
                        topic.name,
                        partition.partition,
                        partition.metadata.len()
                    ),
                    topics: Vec::new(),
                };
            }
            coordinator.validate_commit(
                &request.group_id,
                &request.member_id,
                request.member_epoch,
                &partitions,
            )
        };
        let verdicts = match verdicts {
            Ok(verdicts) => verdicts,
            Err(error) => {
                return OffsetCommitResponse {
                    error: error_code(&error),
                    message: error.to_string(),
                    topics: Vec::new(),
                };
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
                } else if self.partition(&topic.name, partition.partition).is_err() {
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
        if !records.is_empty()
            && let Err((code, message)) = self.append_offsets(&records).await
        {
            return OffsetCommitResponse {
                error: code,
                message,
                topics: Vec::new(),
            };
        }
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

    /// Appends commit (or tombstone) records durably, then applies them to the store.
    pub(super) async fn append_offsets(
        &self,
        records: &[Record],
    ) -> Result<(), (ErrorCode, String)> {
        self.append_offsets_with(records, AppendDurability::Synced)
            .await
    }

    /// [`append_offsets`](Self::append_offsets) with a chosen durability: transforms commit
    /// positions `Written` (synced within `flush.interval`), since losing one only repeats
    /// work that is already durable in the output.
    pub(super) async fn append_offsets_with(
        &self,
        records: &[Record],
        durability: AppendDurability,
    ) -> Result<(), (ErrorCode, String)> {
        let log = self
            .partition(OFFSETS_TOPIC, 0)
            .and_then(|partition| partition.log())?;
        let batch = encode_batch(records, &EncodeOptions::default())
            .map_err(|error| (ErrorCode::UnknownServerError, error.to_string()))?;
        let outcome = log.append(batch, durability).await.map_err(|error| {
            let partition = self.partition(OFFSETS_TOPIC, 0).ok();
            match partition {
                Some(partition) => self.append_failed(&partition, error),
                None => (ErrorCode::StorageError, error.to_string()),
            }
        })?;
        let mut store = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (number, record) in records.iter().enumerate() {
            store.apply(
                outcome.base_offset + number as i64,
                record.key.as_deref(),
                record.value.as_deref(),
            );
        }
        Ok(())
    }

    pub(super) fn offset_fetch(&self, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let store = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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

    pub(super) fn list_groups(&self, request: ListGroupsRequest) -> ListGroupsResponse {
        let mut groups: BTreeMap<String, ListedGroup> = BTreeMap::new();
        for group_id in self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .group_ids()
        {
            groups.insert(
                group_id.clone(),
                ListedGroup {
                    group_id: group_id.clone(),
                    state: "Empty".into(),
                    members: 0,
                },
            );
        }
        for (group_id, state, members) in self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .list()
        {
            groups.insert(
                group_id.clone(),
                ListedGroup {
                    group_id,
                    state: state.into(),
                    members: members as u32,
                },
            );
        }
        ListGroupsResponse {
            groups: groups
                .into_values()
                .filter(|group| {
                    request.states.is_empty()
                        || request
                            .states
                            .iter()
                            .any(|state| state.eq_ignore_ascii_case(&group.state))
                })
                .collect(),
        }
    }

    pub(super) fn describe_groups(&self, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let coordinator = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let store = self
            .offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let groups = request
            .group_ids
            .into_iter()
            .map(|group_id| match coordinator.describe(&group_id) {
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
                None => DescribedGroup {
                    message: format!("group {group_id:?} does not exist"),
                    group_id,
                    error: ErrorCode::GroupIdNotFound,
                    ..DescribedGroup::default()
                },
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    pub(super) async fn delete_groups(&self, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::new();
        for group_id in request.group_ids {
            let outcome = match self.check_not_transform_group(&group_id).await {
                Ok(()) => self.delete_group(&group_id).await,
                Err(refusal) => Err(refusal),
            };
            results.push(match outcome {
                Ok(()) => GroupResult {
                    group_id,
                    error: ErrorCode::None,
                    message: String::new(),
                },
                Err((error, message)) => GroupResult {
                    group_id,
                    error,
                    message,
                },
            });
        }
        DeleteGroupsResponse { groups: results }
    }

    pub(super) async fn delete_group(&self, group_id: &str) -> Result<(), (ErrorCode, String)> {
        let keys: Vec<(String, u32)> = {
            let coordinator = self
                .groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if coordinator.has_members(group_id) {
                let error = GroupError::NonEmptyGroup(group_id.to_string());
                return Err((error_code(&error), error.to_string()));
            }
            let store = self
                .offsets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match store.group(group_id) {
                Some(offsets) => offsets.keys().cloned().collect(),
                None if coordinator.describe(group_id).is_some() => Vec::new(),
                None => {
                    return Err((
                        ErrorCode::GroupIdNotFound,
                        format!("group {group_id:?} does not exist"),
                    ));
                }
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
            self.append_offsets(&tombstones).await?;
        }
        let mut coordinator = self
            .groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        coordinator
            .delete(group_id)
            .map_err(|error| (error_code(&error), error.to_string()))?;
        self.offsets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove_group(group_id);
        Ok(())
    }
}
