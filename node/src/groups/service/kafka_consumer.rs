//! KIP-848 members over the Kafka wire (ConsumerGroupHeartbeat, ConsumerGroupDescribe) on the
//! [`GroupService`]: the same [`GroupCoordinator`](crate::groups::coordinator::GroupCoordinator)
//! groups native QUIC members join, so both kinds of member can share one group.
//!
//! Kafka's heartbeat differs from the native one in what it leaves out: a field that did not
//! change since the member's last heartbeat is null (subscription, rebalance timeout,
//! assignor, owned partitions), and carries no session timeout (the coordinator's
//! `groups.consumer_session_timeout_ms` applies, as Kafka's `group.consumer.session.timeout.ms`
//! does). The coordinator keeps what each member last declared, so a null is read back from it
//! ([`GroupCoordinator::member_state`](crate::groups::coordinator::GroupCoordinator::member_state))
//! and the coordinator always sees a whole heartbeat. Kafka 4 clients choose their own member
//! id (KIP-1082); the coordinator joins them under it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{GroupHost, GroupService, GroupServiceError, lock, transform_group_refusal};
use crate::groups::assignor::{Assignor, TopicPartition};
use crate::groups::coordinator::{GroupDescription, Heartbeat, MemberProtocol, TopicFilter};

/// The assignor of a group whose first member names none: Kafka's default server assignor
/// (`group.consumer.assignors` starts with `uniform`), the node's cooperative-sticky one.
pub const DEFAULT_SERVER_ASSIGNOR: &str = "uniform";

/// A ConsumerGroupHeartbeat as a Kafka client sends it: `None` is "unchanged since my last
/// heartbeat".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaConsumerHeartbeat {
    /// The group.
    pub group_id: String,
    /// The member's id: its own (v1), or empty to have the coordinator name it (v0).
    pub member_id: String,
    /// 0 join, -1 leave, -2 static leave, else the member's epoch.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The client's id (from the request header).
    pub client_id: String,
    /// Revocation timeout.
    pub rebalance_timeout: Option<Duration>,
    /// Topics by name.
    pub subscribed_topics: Option<Vec<String>>,
    /// Topics by pattern (an empty pattern is no pattern).
    pub subscribed_pattern: Option<String>,
    /// The server assignor asked for.
    pub assignor: Option<String>,
    /// What the member owns now.
    pub owned: Option<BTreeSet<TopicPartition>>,
}

/// The answer to a [`KafkaConsumerHeartbeat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaConsumerReply {
    /// The member's id.
    pub member_id: String,
    /// Its epoch (-1 or -2 after a leave).
    pub member_epoch: i32,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// Every partition it should own now, when Kafka would send it: on a join, in answer to
    /// a full heartbeat, and whenever it changed; `None` otherwise (the client keeps its own).
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

/// A KIP-848 group as ConsumerGroupDescribe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupView {
    /// The coordinator's description.
    pub group: GroupDescription,
    /// Its members that joined with the classic protocol (JoinGroup).
    pub classic_members: BTreeSet<String>,
}

impl GroupService {
    /// A Kafka client's ConsumerGroupHeartbeat: join, stay, report owned partitions, leave.
    pub fn kafka_consumer_heartbeat(
        &self,
        host: &impl GroupHost,
        request: KafkaConsumerHeartbeat,
        pattern_filter: TopicFilter,
    ) -> Result<KafkaConsumerReply, GroupServiceError> {
        // As the native heartbeat: no consumer may join a transform's position group.
        if let Some(refusal) = transform_group_refusal(&request.group_id) {
            return Err(refusal);
        }
        let counts = host.partition_counts();
        let now = self.clock.now();
        let leaving = request.member_epoch < 0;
        let known = lock(&self.coordinator).member_state(&request.group_id, &request.member_id);
        if !leaving && known.is_none() && request.member_epoch == 0 {
            self.check_not_classic(&request.group_id)?;
        }
        let mut coordinator = lock(&self.coordinator);
        let removed = coordinator.handle_timeout(now, &counts);
        // The expiry may have removed this very member: look again.
        let known =
            known.and_then(|_| coordinator.member_state(&request.group_id, &request.member_id));
        let full_request = request.rebalance_timeout.is_some()
            && (request.subscribed_topics.is_some() || request.subscribed_pattern.is_some())
            && request.owned.is_some();
        let assignor = match &request.assignor {
            Some(name) => name.clone(),
            None => coordinator
                .group_assignor(&request.group_id)
                .map_or(DEFAULT_SERVER_ASSIGNOR, Assignor::name)
                .to_string(),
        };
        let subscribed_pattern = match request.subscribed_pattern {
            Some(pattern) => (!pattern.is_empty()).then_some(pattern),
            None => known
                .as_ref()
                .and_then(|member| member.subscribed_pattern.clone()),
        };
        let heartbeat = Heartbeat {
            group_id: request.group_id.clone(),
            member_id: request.member_id.clone(),
            member_id_from_client: true,
            member_epoch: request.member_epoch,
            instance_id: request
                .instance_id
                .or_else(|| known.as_ref().and_then(|member| member.instance_id.clone())),
            client_id: request.client_id,
            rebalance_timeout: request
                .rebalance_timeout
                .or_else(|| known.as_ref().map(|member| member.rebalance_timeout))
                .unwrap_or_default(),
            session_timeout: coordinator.limits().consumer_session_timeout,
            subscribed_topics: request
                .subscribed_topics
                .or_else(|| {
                    known
                        .as_ref()
                        .map(|member| member.subscribed_topics.clone())
                })
                .unwrap_or_default(),
            subscribed_pattern,
            pattern_filter,
            assignor,
            owned_omitted: request.owned.is_none(),
            owned: request
                .owned
                .or_else(|| known.as_ref().map(|member| member.owned.clone()))
                .unwrap_or_default(),
            protocol: MemberProtocol::Consumer,
        };
        let result = coordinator.handle_heartbeat(now, heartbeat, &counts);
        drop(coordinator);
        self.forget_expired_consumer_members(&removed);
        let reply = result?;
        let changed = known
            .as_ref()
            .is_none_or(|member| member.assigned != reply.assignment);
        let send_assignment = !leaving && (request.member_epoch == 0 || full_request || changed);
        Ok(KafkaConsumerReply {
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval: reply.heartbeat_interval,
            assignment: send_assignment.then_some(reply.assignment),
        })
    }

    /// A KIP-848 group with its classic members named; `None` when `group_id` is not one (a
    /// classic group, one with only committed offsets, or none): Kafka's GROUP_ID_NOT_FOUND.
    pub fn consumer_group_view(&self, group_id: &str) -> Option<ConsumerGroupView> {
        let Some(super::DescribedAnyGroup::Consumer(group)) = self.describe_any_group(group_id)
        else {
            return None;
        };
        let classic_members = lock(&self.classic_in_consumer)
            .keys()
            .filter(|(group, _)| group == group_id)
            .map(|(_, member)| member.clone())
            .collect();
        Some(ConsumerGroupView {
            group,
            classic_members,
        })
    }
}
