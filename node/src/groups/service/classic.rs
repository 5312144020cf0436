//! The classic group protocol's requests on the [`GroupService`]: the driver of the sans-IO
//! [`ClassicGroups`] (held JoinGroup/SyncGroup answers routed back to their requests by
//! token), and the one group namespace shared with the KIP-848 coordinator.
//!
//! A group id names one group. A classic member joining a group that has KIP-848 members
//! (QUIC consumers, or Kafka 4 consumers with `group.protocol=consumer`) becomes a member of
//! that KIP-848 group: its JoinGroup is a KIP-848 join, its SyncGroup answer is the
//! assignment the node computed (written in the consumer protocol, so it needs no leader),
//! and its Heartbeat answers `RebalanceInProgress` when that assignment changed, so it
//! rejoins to get the new one. A KIP-848 member joining a classic group that has members is
//! refused (Kafka 4 would convert the group; see docs/ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::time::Duration;

use ledge_protocol::wire::{OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic};

use super::{GroupHost, GroupService, GroupServiceError, lock, transform_group_refusal};
use crate::groups::assignor::{Assignor, TopicPartition};
use crate::groups::classic::{
    ClassicError, ClassicGroups, Completion, JoinInput, JoinReply, LeavingMember, Step, SyncInput,
    SyncReply, Token,
};
use crate::groups::consumer_protocol::{
    CONSUMER_PROTOCOL_TYPE, ConsumerSubscription, decode_subscription, encode_assignment,
};
use crate::groups::coordinator::{
    CommitEpochRule, GroupError, Heartbeat, MemberProtocol, TopicFilter,
};

/// A classic member of a KIP-848 group, as the service remembers it between its requests:
/// what it asked for at its last JoinGroup and what it was given.
#[derive(Clone, Debug)]
pub(super) struct ClassicConsumerMember {
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    topics: Vec<String>,
    /// The protocol (assignor name) its JoinGroup answer named: one it offered.
    protocol_name: String,
    /// Its member epoch, which is its generation on the classic wire.
    epoch: i32,
    /// What it was given at its last JoinGroup (and owns once it synced).
    assignment: BTreeSet<TopicPartition>,
}

/// One partition of a classic OffsetCommit.
#[derive(Clone, Debug)]
pub struct ClassicCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: i64,
    /// The committer's metadata.
    pub metadata: String,
}

/// What DescribeGroups finds under a group id.
#[derive(Clone, Debug)]
pub enum DescribedAnyGroup {
    /// A classic group.
    Classic(crate::groups::classic::ClassicGroupDescription),
    /// A KIP-848 group (its classic members included).
    Consumer(crate::groups::coordinator::GroupDescription),
    /// No members, only committed offsets.
    OffsetsOnly,
}

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedAnyGroup {
    /// Id.
    pub group_id: String,
    /// Kafka's state name.
    pub state: String,
    /// `consumer`, `connect`, ... (empty for a group with only offsets).
    pub protocol_type: String,
    /// `classic` or `consumer` (KIP-848), as Kafka's ListGroups v5.
    pub group_type: String,
    /// Members.
    pub members: usize,
}

impl GroupService {
    /// Answers every held JoinGroup/SyncGroup the state machine has made due. Called with
    /// the classic lock held, after every input, so an answer never waits for the timer.
    pub(super) fn deliver(&self, classic: &mut ClassicGroups) {
        let mut waiters = lock(&self.classic_waiters);
        while let Some(completion) = classic.poll_completion() {
            if let Some(waiter) = waiters.remove(&completion.token()) {
                // The request may be gone (client disconnected): nothing to answer then.
                let _ = waiter.send(completion);
            }
        }
    }

    fn next_token(&self) -> Token {
        self.classic_next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a classic request for `member_id` of `group_id` belongs to the KIP-848 group:
    /// a known classic member of it, or a new member while the KIP-848 group has members and
    /// no classic group of that id does.
    fn in_consumer_group(&self, group_id: &str, member_id: &str) -> bool {
        if !member_id.is_empty() {
            return lock(&self.classic_in_consumer)
                .contains_key(&(group_id.to_string(), member_id.to_string()));
        }
        lock(&self.coordinator).has_members(group_id) && !lock(&self.classic).has_members(group_id)
    }

    /// Refuses a KIP-848 join of a group that is classic with members.
    pub(super) fn check_not_classic(&self, group_id: &str) -> Result<(), GroupServiceError> {
        let classic = lock(&self.classic);
        if classic.has_members(group_id) {
            let members = classic
                .describe(group_id)
                .map_or(0, |group| group.members.len());
            return Err(GroupServiceError::ClassicGroupInUse {
                group_id: group_id.to_string(),
                members,
            });
        }
        Ok(())
    }

    /// JoinGroup.
    pub async fn classic_join(
        &self,
        host: &impl GroupHost,
        join: JoinInput,
    ) -> Result<JoinReply, GroupServiceError> {
        if let Some(refusal) = transform_group_refusal(&join.group_id) {
            return Err(refusal);
        }
        if self.in_consumer_group(&join.group_id, &join.member_id) {
            return self.join_consumer_group(host, join);
        }
        let token = self.next_token();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let step = {
            let mut classic = lock(&self.classic);
            let now = self.clock.now();
            classic.handle_timeout(now);
            let step = classic.handle_join(now, join, token);
            if matches!(step, Ok(Step::Wait(_))) {
                lock(&self.classic_waiters).insert(token, sender);
            }
            self.deliver(&mut classic);
            step
        };
        self.timer_wake.notify_one();
        match step? {
            Step::Done(reply) => Ok(reply),
            Step::Wait(_) => match receiver.await {
                Ok(Completion::Join(_, result)) => Ok(result?),
                _ => Err(ClassicError::GroupRemoved(String::new()).into()),
            },
        }
    }

    /// SyncGroup.
    pub async fn classic_sync(&self, sync: SyncInput) -> Result<SyncReply, GroupServiceError> {
        if self.in_consumer_group(&sync.group_id, &sync.member_id) {
            return self.sync_consumer_group(&sync);
        }
        let token = self.next_token();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let step = {
            let mut classic = lock(&self.classic);
            let now = self.clock.now();
            classic.handle_timeout(now);
            let step = classic.handle_sync(now, sync, token);
            if matches!(step, Ok(Step::Wait(_))) {
                lock(&self.classic_waiters).insert(token, sender);
            }
            self.deliver(&mut classic);
            step
        };
        self.timer_wake.notify_one();
        match step? {
            Step::Done(reply) => Ok(reply),
            Step::Wait(_) => match receiver.await {
                Ok(Completion::Sync(_, result)) => Ok(result?),
                _ => Err(ClassicError::GroupRemoved(String::new()).into()),
            },
        }
    }

    /// Heartbeat.
    pub fn classic_heartbeat(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupServiceError> {
        if self.in_consumer_group(group_id, member_id) {
            return self.heartbeat_consumer_group(host, group_id, generation, member_id);
        }
        let mut classic = lock(&self.classic);
        let now = self.clock.now();
        classic.handle_timeout(now);
        let result = classic.handle_heartbeat(now, group_id, generation, member_id, instance_id);
        self.deliver(&mut classic);
        drop(classic);
        self.timer_wake.notify_one();
        Ok(result?)
    }

    /// LeaveGroup: per member, its id or why it could not leave.
    pub fn classic_leave(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> Result<Vec<Result<String, GroupServiceError>>, GroupServiceError> {
        let (consumer, classic_members): (Vec<&LeavingMember>, Vec<&LeavingMember>) = leaving
            .iter()
            .partition(|member| self.in_consumer_group_by_leave(group_id, member));
        let mut results: Vec<(usize, Result<String, GroupServiceError>)> = Vec::new();
        for member in consumer {
            results.push((
                index_of(leaving, member),
                self.leave_consumer_group(host, group_id, &member.member_id),
            ));
        }
        if !classic_members.is_empty() || results.is_empty() {
            let batch: Vec<LeavingMember> = classic_members.iter().map(|m| (*m).clone()).collect();
            let mut classic = lock(&self.classic);
            let now = self.clock.now();
            let answered = classic.handle_leave(now, group_id, &batch);
            self.deliver(&mut classic);
            drop(classic);
            self.timer_wake.notify_one();
            match answered {
                Ok(answers) => {
                    for (member, answer) in classic_members.iter().zip(answers) {
                        results.push((index_of(leaving, member), answer.map_err(Into::into)));
                    }
                }
                Err(error) if results.is_empty() => return Err(error.into()),
                Err(error) => {
                    for member in &classic_members {
                        results.push((index_of(leaving, member), Err(error.clone().into())));
                    }
                }
            }
        }
        results.sort_by_key(|(index, _)| *index);
        Ok(results.into_iter().map(|(_, result)| result).collect())
    }

    fn in_consumer_group_by_leave(&self, group_id: &str, member: &LeavingMember) -> bool {
        !member.member_id.is_empty() && self.in_consumer_group(group_id, &member.member_id)
    }

    /// OffsetCommit from a Kafka client: the classic generation checks (or, for a classic
    /// member of a KIP-848 group, its epoch and assignment), then the commit as any other.
    /// Returns each partition's code in request order.
    pub async fn classic_offset_commit(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        commits: Vec<ClassicCommit>,
    ) -> Result<Vec<ledge_protocol::wire::ErrorCode>, GroupServiceError> {
        let request = commit_request(group_id, member_id, generation, commits);
        let classic_member = (!member_id.is_empty())
            .then(|| {
                lock(&self.classic_in_consumer)
                    .get(&(group_id.to_string(), member_id.to_string()))
                    .map(|member| member.epoch)
            })
            .flatten();
        if let Some(epoch) = classic_member {
            // A classic member of a KIP-848 group: its generation is the epoch its last
            // JoinGroup answered (Kafka's ILLEGAL_GENERATION otherwise); the coordinator then
            // checks that it holds each partition.
            if generation != epoch {
                return Err(ClassicError::IllegalGeneration {
                    group_id: group_id.to_string(),
                    current: epoch,
                    received: generation,
                }
                .into());
            }
            return self
                .try_offset_commit(host, &request, Some(CommitEpochRule::NotNewer))
                .await;
        }
        if lock(&self.coordinator).has_members(group_id) {
            // A KIP-848 member over the Kafka wire, or a commit from outside the group (a
            // simple consumer, or a stale member): Kafka's KIP-848 rules answer it, the
            // member's current epoch and no other (STALE_MEMBER_EPOCH), and a commit without
            // a member only while the group is empty.
            return self
                .try_offset_commit(host, &request, Some(CommitEpochRule::Current))
                .await;
        }
        lock(&self.classic).validate_offset_commit(group_id, member_id, instance_id, generation)?;
        self.try_offset_commit(host, &request, None).await
    }

    /// Every group with members or committed offsets, of both kinds.
    pub fn list_any_groups(&self) -> Vec<ListedAnyGroup> {
        let mut groups: std::collections::BTreeMap<String, ListedAnyGroup> = lock(&self.offsets)
            .group_ids()
            .map(|group_id| {
                (
                    group_id.clone(),
                    ListedAnyGroup {
                        group_id: group_id.clone(),
                        state: "Empty".into(),
                        protocol_type: String::new(),
                        group_type: "classic".into(),
                        members: 0,
                    },
                )
            })
            .collect();
        for (group_id, state, protocol_type, members) in lock(&self.classic).list() {
            groups.insert(
                group_id.clone(),
                ListedAnyGroup {
                    group_id,
                    state: state.name().into(),
                    protocol_type,
                    group_type: "classic".into(),
                    members,
                },
            );
        }
        for (group_id, state, members) in lock(&self.coordinator).list() {
            groups.insert(
                group_id.clone(),
                ListedAnyGroup {
                    group_id,
                    state: state.into(),
                    protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                    group_type: "consumer".into(),
                    members,
                },
            );
        }
        groups.into_values().collect()
    }

    /// What `group_id` is, if anything.
    pub fn describe_any_group(&self, group_id: &str) -> Option<DescribedAnyGroup> {
        let consumer = lock(&self.coordinator).describe(group_id);
        if let Some(consumer) = consumer.filter(|group| !group.members.is_empty()) {
            return Some(DescribedAnyGroup::Consumer(consumer));
        }
        if let Some(classic) = lock(&self.classic).describe(group_id) {
            return Some(DescribedAnyGroup::Classic(classic));
        }
        if let Some(consumer) = lock(&self.coordinator).describe(group_id) {
            return Some(DescribedAnyGroup::Consumer(consumer));
        }
        lock(&self.offsets)
            .group(group_id)
            .map(|_| DescribedAnyGroup::OffsetsOnly)
    }

    /// Topics the group's active members subscribe to (OffsetDelete refuses their
    /// partitions): read from consumer-protocol metadata for classic groups.
    pub fn subscribed_topics(&self, group_id: &str) -> BTreeSet<String> {
        let mut topics = BTreeSet::new();
        if let Some(group) = lock(&self.coordinator).describe(group_id) {
            for member in group.members {
                topics.extend(member.subscribed_topics);
            }
        }
        let classic = lock(&self.classic);
        if classic
            .describe(group_id)
            .is_some_and(|group| group.protocol_type == CONSUMER_PROTOCOL_TYPE)
        {
            for metadata in classic.member_metadata(group_id) {
                if let Ok(subscription) = decode_subscription(&metadata) {
                    topics.extend(subscription.topics);
                }
            }
        }
        topics
    }

    /// A classic JoinGroup into a KIP-848 group: a KIP-848 join (or rejoin), answered with
    /// the member's epoch as its generation and no leader, so the client computes nothing.
    fn join_consumer_group(
        &self,
        host: &impl GroupHost,
        join: JoinInput,
    ) -> Result<JoinReply, GroupServiceError> {
        if join.protocol_type != CONSUMER_PROTOCOL_TYPE {
            return Err(ClassicError::InconsistentGroupProtocol(format!(
                "group {:?} is a consumer group; protocol type {:?} cannot join it",
                join.group_id, join.protocol_type
            ))
            .into());
        }
        let subscription = join
            .protocols
            .first()
            .map(|(_, metadata)| decode_subscription(metadata))
            .transpose()
            .map_err(|error| ClassicError::InconsistentGroupProtocol(error.to_string()))?
            .unwrap_or_default();
        let counts = host.partition_counts();
        let now = self.clock.now();
        let key = (join.group_id.clone(), join.member_id.clone());
        let previous = lock(&self.classic_in_consumer).get(&key).cloned();
        let mut coordinator = lock(&self.coordinator);
        let group_assignor = coordinator
            .describe(&join.group_id)
            .map(|group| group.assignor)
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| Assignor::CooperativeSticky.name().to_string());
        // The answer must name a protocol the member offered (its client looks the assignor
        // up by that name), preferably the one the group really uses.
        let protocol_name = join
            .protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| {
                Assignor::from_name(name)
                    .is_some_and(|assignor| Some(assignor) == Assignor::from_name(&group_assignor))
            })
            .or_else(|| join.protocols.first().map(|(name, _)| name))
            .cloned()
            .unwrap_or_default();
        let ConsumerSubscription { topics, owned } = subscription;
        let heartbeat = Heartbeat {
            group_id: join.group_id.clone(),
            member_id: join.member_id.clone(),
            member_id_from_client: false,
            member_epoch: previous.as_ref().map_or(0, |member| member.epoch),
            instance_id: join.instance_id.clone(),
            client_id: join.client_id.clone(),
            rebalance_timeout: join.rebalance_timeout,
            session_timeout: join.session_timeout,
            subscribed_topics: topics.clone(),
            subscribed_pattern: None,
            pattern_filter: TopicFilter::default(),
            assignor: group_assignor,
            owned,
            owned_omitted: false,
            protocol: MemberProtocol::Classic,
        };
        coordinator.handle_timeout(now, &counts);
        let reply = match coordinator.handle_heartbeat(now, heartbeat, &counts) {
            Ok(reply) => reply,
            Err(error) => {
                drop(coordinator);
                self.forget_consumer_member(&join.group_id, &join.member_id, &error);
                return Err(error.into());
            }
        };
        drop(coordinator);
        lock(&self.classic_in_consumer).insert(
            (join.group_id.clone(), reply.member_id.clone()),
            ClassicConsumerMember {
                instance_id: join.instance_id,
                client_id: join.client_id,
                session_timeout: join.session_timeout,
                rebalance_timeout: join.rebalance_timeout,
                topics,
                protocol_name: protocol_name.clone(),
                epoch: reply.member_epoch,
                assignment: reply.assignment,
            },
        );
        Ok(JoinReply {
            generation: reply.member_epoch,
            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
            protocol_name,
            // No member leads: the node computed the assignment, handed out at SyncGroup.
            leader: String::new(),
            member_id: reply.member_id,
            members: Vec::new(),
        })
    }

    fn sync_consumer_group(&self, sync: &SyncInput) -> Result<SyncReply, GroupServiceError> {
        let key = (sync.group_id.clone(), sync.member_id.clone());
        let Some(member) = lock(&self.classic_in_consumer).get(&key).cloned() else {
            return Err(ClassicError::UnknownMember {
                group_id: sync.group_id.clone(),
                member_id: sync.member_id.clone(),
            }
            .into());
        };
        if sync.generation != member.epoch {
            return Err(ClassicError::IllegalGeneration {
                group_id: sync.group_id.clone(),
                current: member.epoch,
                received: sync.generation,
            }
            .into());
        }
        Ok(SyncReply {
            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
            protocol_name: member.protocol_name,
            assignment: encode_assignment(&member.assignment),
        })
    }

    /// A classic Heartbeat of a KIP-848 group's member: a KIP-848 heartbeat reporting what it
    /// was given; `RebalanceInProgress` when the node's answer differs, so it rejoins.
    fn heartbeat_consumer_group(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupServiceError> {
        let key = (group_id.to_string(), member_id.to_string());
        let Some(member) = lock(&self.classic_in_consumer).get(&key).cloned() else {
            return Err(ClassicError::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            }
            .into());
        };
        if generation != member.epoch {
            return Err(ClassicError::IllegalGeneration {
                group_id: group_id.to_string(),
                current: member.epoch,
                received: generation,
            }
            .into());
        }
        let counts = host.partition_counts();
        let now = self.clock.now();
        let mut coordinator = lock(&self.coordinator);
        let assignor = coordinator
            .describe(group_id)
            .map(|group| group.assignor)
            .unwrap_or_default();
        coordinator.handle_timeout(now, &counts);
        let result = coordinator.handle_heartbeat(
            now,
            Heartbeat {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
                member_id_from_client: false,
                member_epoch: member.epoch,
                instance_id: member.instance_id.clone(),
                client_id: member.client_id.clone(),
                rebalance_timeout: member.rebalance_timeout,
                session_timeout: member.session_timeout,
                subscribed_topics: member.topics.clone(),
                subscribed_pattern: None,
                pattern_filter: TopicFilter::default(),
                assignor,
                owned: member.assignment.clone(),
                owned_omitted: false,
                protocol: MemberProtocol::Classic,
            },
            &counts,
        );
        drop(coordinator);
        match result {
            Ok(reply) if reply.assignment == member.assignment => Ok(()),
            Ok(_) => Err(ClassicError::RebalanceInProgress(group_id.to_string()).into()),
            Err(error) => {
                self.forget_consumer_member(group_id, member_id, &error);
                Err(error.into())
            }
        }
    }

    fn leave_consumer_group(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        member_id: &str,
    ) -> Result<String, GroupServiceError> {
        let counts = host.partition_counts();
        let now = self.clock.now();
        lock(&self.classic_in_consumer).remove(&(group_id.to_string(), member_id.to_string()));
        lock(&self.coordinator)
            .handle_heartbeat(
                now,
                Heartbeat {
                    group_id: group_id.to_string(),
                    member_id: member_id.to_string(),
                    member_epoch: -1,
                    ..Heartbeat::default()
                },
                &counts,
            )
            .map(|_| member_id.to_string())
            .map_err(Into::into)
    }

    /// Drops the memory of a classic member the KIP-848 coordinator no longer knows.
    fn forget_consumer_member(&self, group_id: &str, member_id: &str, error: &GroupError) {
        if matches!(error, GroupError::UnknownMember { .. }) {
            lock(&self.classic_in_consumer).remove(&(group_id.to_string(), member_id.to_string()));
        }
    }

    /// Forgets classic members of KIP-848 groups the coordinator expired.
    pub(super) fn forget_expired_consumer_members(&self, removed: &[(String, String)]) {
        if removed.is_empty() {
            return;
        }
        let mut members = lock(&self.classic_in_consumer);
        for key in removed {
            members.remove(key);
        }
    }
}

/// Why OffsetDelete kept one partition's committed offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetDeleteRefusal {
    /// An active member subscribes to its topic (Kafka's GROUP_SUBSCRIBED_TO_TOPIC).
    Subscribed,
    /// The topic has no such partition.
    UnknownPartition,
}

impl GroupService {
    /// OffsetDelete: tombstones for the committed offsets of `partitions`, except those of
    /// topics the group's members subscribe to. Per partition, in order, why it was kept.
    pub async fn delete_offsets(
        &self,
        host: &impl GroupHost,
        group_id: &str,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Option<OffsetDeleteRefusal>>, GroupServiceError> {
        self.check_not_transform_group(host, group_id).await?;
        let committed: BTreeSet<(String, u32)> = match lock(&self.offsets).group(group_id) {
            Some(offsets) => offsets.keys().cloned().collect(),
            None if lock(&self.classic).contains(group_id)
                || lock(&self.coordinator).describe(group_id).is_some() =>
            {
                BTreeSet::new()
            }
            None => return Err(GroupServiceError::NotFound(group_id.to_string())),
        };
        let subscribed = self.subscribed_topics(group_id);
        let now_ms = self.clock.wall_time_ms();
        let mut refusals = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                refusals.push(Some(OffsetDeleteRefusal::Subscribed));
            } else if !host.has_partition(topic, *partition) {
                refusals.push(Some(OffsetDeleteRefusal::UnknownPartition));
            } else {
                refusals.push(None);
                if committed.contains(&(topic.clone(), *partition)) {
                    tombstones.push(ledge_protocol::Record {
                        timestamp: now_ms,
                        key: Some(
                            crate::groups::offsets::OffsetKey {
                                group: group_id.to_string(),
                                topic: topic.clone(),
                                partition: *partition,
                            }
                            .encode(),
                        ),
                        value: None,
                        headers: Vec::new(),
                    });
                }
            }
        }
        if !tombstones.is_empty() {
            self.append_offsets(
                host,
                group_id,
                &tombstones,
                crate::storage::AppendDurability::Synced,
            )
            .await?;
        }
        Ok(refusals)
    }

    /// DeleteGroups for one group: refused for a transform's position group while the
    /// transform exists, and for a group with members.
    pub async fn delete_group_checked(
        &self,
        host: &impl GroupHost,
        group_id: &str,
    ) -> Result<(), GroupServiceError> {
        self.check_not_transform_group(host, group_id).await?;
        self.delete_group(host, group_id).await
    }
}

fn index_of(all: &[LeavingMember], member: &LeavingMember) -> usize {
    all.iter()
        .position(|candidate| std::ptr::eq(candidate, member))
        .unwrap_or(usize::MAX)
}

fn commit_request(
    group_id: &str,
    member_id: &str,
    generation: i32,
    commits: Vec<ClassicCommit>,
) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitTopic> = Vec::new();
    for commit in commits {
        let partition = OffsetCommitPartition {
            partition: commit.partition,
            offset: commit.offset,
            metadata: commit.metadata,
        };
        match topics.last_mut() {
            Some(topic) if topic.name == commit.topic => topic.partitions.push(partition),
            _ => topics.push(OffsetCommitTopic {
                name: commit.topic,
                partitions: vec![partition],
            }),
        }
    }
    OffsetCommitRequest {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
        member_epoch: generation,
        topics,
    }
}
