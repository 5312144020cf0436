//! `GroupCoordinator`: consumer-group membership and assignment for every group (sans-IO).
//!
//! Owns: members, epochs, subscriptions, target assignments, session and revocation
//! deadlines. Does not own: committed offsets (`offsets.rs`), sockets, time (every input
//! takes `now`), the topic list (passed in as partition counts).
//!
//! The protocol is KIP-848's: every exchange is a heartbeat that reports what the member
//! owns, and the coordinator answers with what it should own now. When membership,
//! subscriptions or partition counts change, the group epoch rises and the assignor
//! computes a new target. A member is given a target partition only once no other member
//! owns it or has been told to own it, so a partition never has two owners; a member told
//! to give partitions up reports them gone in its next heartbeat, which frees them. This
//! makes every assignor incremental: only partitions that move are revoked. A member's
//! epoch moves to the group epoch when its assignment changes; a heartbeat at another epoch
//! is fenced as Kafka fences it (`epoch_is_valid`), so a member that missed an answer either
//! catches up (its previous epoch, owning nothing it should not) or rejoins at epoch 0.
//!
//! A pattern subscription matches only topics the member's [`TopicFilter`] allows (the
//! topics its principal may Describe, judged with the ACLs of its latest heartbeat), so a
//! regex never hands a member partitions of a topic it may not see (issue 15).
//!
//! Invariant (checked by `check_invariants` in tests after every step): no partition is in
//! two members' `owned ∪ assigned` (what it holds, and what it was last told to hold).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::assignor::{Assignor, TopicPartition};

/// Which topics a member's subscription pattern may match; the default allows every topic.
/// The group service makes one per heartbeat from the caller's authorization (Describe on
/// the topic), so the coordinator stays free of ACLs.
#[derive(Clone, Default)]
pub struct TopicFilter(Option<Arc<TopicPredicate>>);

/// Whether a topic (by name) is allowed.
type TopicPredicate = dyn Fn(&str) -> bool + Send + Sync;

impl TopicFilter {
    /// A filter allowing the topics `allows` accepts.
    pub fn new(allows: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(allows)))
    }

    /// Whether a pattern may match `topic`.
    pub fn allows(&self, topic: &str) -> bool {
        self.0.as_ref().is_none_or(|allows| allows(topic))
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(if self.0.is_some() {
            "TopicFilter(restricted)"
        } else {
            "TopicFilter(all)"
        })
    }
}

/// Limits of the coordinator (see docs/OPERATIONS.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    /// Most members in one group.
    pub group_members_max: usize,
    /// Most groups with members.
    pub groups_max: usize,
    /// Shortest session timeout a member may ask for.
    pub session_timeout_min: Duration,
    /// Longest session timeout a member may ask for.
    pub session_timeout_max: Duration,
    /// How often members are told to heartbeat.
    pub heartbeat_interval: Duration,
    /// How often a member whose assignment is still moving (partitions to give up, or
    /// target partitions not yet free) is told to heartbeat, so rebalances finish quickly.
    pub reconciling_heartbeat_interval: Duration,
    /// Longest rebalance (revocation) timeout a member may ask for.
    pub rebalance_timeout_max: Duration,
    /// Largest metadata string a committed offset may carry (Kafka's
    /// `offset.metadata.max.bytes`); at most [`OFFSET_METADATA_BYTES_LIMIT`].
    pub offset_metadata_bytes_max: usize,
    /// How long a classic group that was empty waits for more members before its first
    /// rebalance completes (Kafka's `group.initial.rebalance.delay.ms`), so consumers that
    /// start together share one rebalance; each new member extends it by this much, up to
    /// the rebalance timeout.
    pub initial_rebalance_delay: Duration,
    /// In a cluster: longest a commit waits for the in-sync replicas of its offsets partition
    /// (Kafka's `offsets.commit.timeout.ms`); answered `RequestTimedOut` after it.
    pub offsets_commit_timeout: Duration,
    /// The session timeout of KIP-848 members that join over the Kafka wire, whose
    /// ConsumerGroupHeartbeat carries none (Kafka's `group.consumer.session.timeout.ms`): a
    /// member silent this long is removed. Within `session_timeout_min..=session_timeout_max`.
    pub consumer_session_timeout: Duration,
}

/// What the `__consumer_offsets` value format can hold in its `u16` metadata length.
pub const OFFSET_METADATA_BYTES_LIMIT: usize = u16::MAX as usize;

/// Longest member id a client may choose (KIP-1082: Kafka 4 consumers generate their own, a
/// 22-character UUID); longer ones are refused so a client cannot make the node keep
/// arbitrarily long keys.
pub const CLIENT_MEMBER_ID_BYTES_MAX: usize = 255;

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            group_members_max: 1000,
            groups_max: 10_000,
            session_timeout_min: Duration::from_secs(1),
            session_timeout_max: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(1),
            reconciling_heartbeat_interval: Duration::from_millis(100),
            rebalance_timeout_max: Duration::from_secs(300),
            // Kafka's default.
            offset_metadata_bytes_max: 4096,
            // Kafka's default.
            initial_rebalance_delay: Duration::from_secs(3),
            // Kafka's default.
            offsets_commit_timeout: Duration::from_secs(5),
            // Kafka's default.
            consumer_session_timeout: Duration::from_secs(45),
        }
    }
}

/// A heartbeat as the coordinator sees it.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat {
    /// The group.
    pub group_id: String,
    /// Empty to join (the coordinator names the member), or the client's own id.
    pub member_id: String,
    /// The client chose `member_id` itself (KIP-1082, ConsumerGroupHeartbeat v1): epoch 0
    /// with an id the group does not know joins under that id instead of being refused.
    pub member_id_from_client: bool,
    /// 0 join, -1 leave, -2 static leave, else the member's epoch.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The client's id, for describe.
    pub client_id: String,
    /// Revocation timeout asked for.
    pub rebalance_timeout: Duration,
    /// Session timeout asked for.
    pub session_timeout: Duration,
    /// Topics by name.
    pub subscribed_topics: Vec<String>,
    /// Topics by pattern.
    pub subscribed_pattern: Option<String>,
    /// Which topics the pattern may match (those the member's principal may Describe).
    pub pattern_filter: TopicFilter,
    /// Assignor name.
    pub assignor: String,
    /// What the member owns now.
    pub owned: BTreeSet<TopicPartition>,
    /// The client left its owned partitions out (Kafka's null: "unchanged since my last
    /// heartbeat"); `owned` is then the coordinator's own record. Such a heartbeat at the
    /// member's previous epoch is fenced, as Kafka fences it.
    pub owned_omitted: bool,
    /// Which protocol the member speaks, which decides how its epoch is checked.
    pub protocol: MemberProtocol,
}

/// The protocol a member speaks to the coordinator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberProtocol {
    /// KIP-848 heartbeats (QUIC members, Kafka's ConsumerGroupHeartbeat): the epoch is
    /// checked as Kafka's `throwIfConsumerGroupMemberEpochIsInvalid` checks it.
    #[default]
    Consumer,
    /// A classic member (JoinGroup, SyncGroup, Heartbeat) of a KIP-848 group: the service
    /// checks its generation against what it was last told, so the coordinator does not
    /// check the epoch (Kafka skips the check for classic members too).
    Classic,
}

/// How a commit's member epoch is checked against the member's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitEpochRule {
    /// Kafka's rule for KIP-848 members (`ConsumerGroup.validateOffsetCommit`): the epoch
    /// must be the member's current one, else [`GroupError::StaleEpoch`].
    Current,
    /// The native rule: any epoch up to the member's current one, since every partition
    /// is then checked to be held by the member (a newer epoch is
    /// [`GroupError::FencedEpoch`]). The SDK commits with the epoch of the latest answer it
    /// had, which a heartbeat may have moved on while the commit travelled.
    NotNewer,
}

/// The answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member's id.
    pub member_id: String,
    /// Its epoch.
    pub member_epoch: i32,
    /// Every partition it should own now.
    pub assignment: BTreeSet<TopicPartition>,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
}

/// Why a group request was refused; maps to a wire error code at the edge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// Empty or oversized group id.
    #[error("invalid group id {0:?}: 1 to 255 characters")]
    InvalidGroupId(String),
    /// A member id the client chose is longer than [`CLIENT_MEMBER_ID_BYTES_MAX`].
    #[error("member id {0:?} is longer than {CLIENT_MEMBER_ID_BYTES_MAX} bytes")]
    InvalidMemberId(String),
    /// The member is not in the group (expired, left, replaced): rejoin.
    #[error("member {member_id:?} is not in group {group_id:?}; rejoin with an empty member id")]
    UnknownMember {
        /// Group.
        group_id: String,
        /// Member.
        member_id: String,
    },
    /// The assignor is unknown or differs from the group's.
    #[error("{0}")]
    InconsistentAssignor(String),
    /// The group is full.
    #[error("group {group_id:?} has reached group_members_max ({limit})")]
    GroupFull {
        /// Group.
        group_id: String,
        /// The limit.
        limit: usize,
    },
    /// Too many groups.
    #[error("the node has reached groups_max ({0})")]
    TooManyGroups(usize),
    /// A bad subscription pattern.
    #[error("invalid subscription pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A session or rebalance timeout outside the allowed range.
    #[error("{0}")]
    InvalidTimeout(String),
    /// The group has members; the operation needs it empty.
    #[error("group {0:?} has active members; stop them first")]
    NonEmptyGroup(String),
    /// The group does not exist.
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    /// The member's epoch is newer than the coordinator's, or older and neither its
    /// previous one nor with owned partitions within its assignment: it must give up its
    /// partitions and rejoin at epoch 0.
    #[error(
        "member epoch {received} is fenced for {member_id:?} (current {current}); give up \
         the partitions and rejoin"
    )]
    FencedEpoch {
        /// Member.
        member_id: String,
        /// Current epoch.
        current: i32,
        /// Epoch received.
        received: i32,
    },
    /// A commit under [`CommitEpochRule::Current`] names an epoch other than the member's
    /// (Kafka's STALE_MEMBER_EPOCH): retry with the epoch of the latest heartbeat answer.
    #[error("member epoch {received} of {member_id:?} is stale (current {current})")]
    StaleEpoch {
        /// Member.
        member_id: String,
        /// Current epoch.
        current: i32,
        /// Epoch received.
        received: i32,
    },
}

/// Why one partition of a commit was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitRefusal {
    /// The member does not hold the partition.
    NotAssigned,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    subscribed_topics: BTreeSet<String>,
    pattern: Option<(String, regex::Regex)>,
    /// Which topics `pattern` may match, as of the member's latest heartbeat.
    pattern_filter: TopicFilter,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    last_seen: Instant,
    /// Static member that left temporarily: kept (with its partitions) until its session
    /// timeout, for a restart with the same instance id.
    departed: bool,
    owned: BTreeSet<TopicPartition>,
    assigned: BTreeSet<TopicPartition>,
    member_epoch: i32,
    /// The epoch before the latest bump (Kafka's `previousMemberEpoch`): a heartbeat at it
    /// is taken when what it reports owning is within `assigned`, since the answer that
    /// carried the bump may have been lost.
    previous_epoch: i32,
    revoke_deadline: Option<Instant>,
}

struct Group {
    assignor: Option<Assignor>,
    group_epoch: i32,
    target_epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// Partition counts of subscribed topics when the target was computed.
    topics_seen: BTreeMap<String, u32>,
}

/// Group states as Kafka names them.
pub fn state_name(members: usize, reconciling: bool) -> &'static str {
    match (members, reconciling) {
        (0, _) => "Empty",
        (_, true) => "Reconciling",
        _ => "Stable",
    }
}

/// A member as describe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    /// Id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Epoch.
    pub member_epoch: i32,
    /// Resolved subscription.
    pub subscribed_topics: Vec<String>,
    /// The subscription pattern, if it subscribes by one.
    pub subscribed_pattern: Option<String>,
    /// Current assignment.
    pub assignment: BTreeSet<TopicPartition>,
    /// What the assignor wants it to own once reconciliation is done.
    pub target: BTreeSet<TopicPartition>,
}

/// A group as describe shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// `Empty`, `Stable` or `Reconciling`.
    pub state: &'static str,
    /// Assignor name, empty if none yet.
    pub assignor: String,
    /// Group epoch.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub assignment_epoch: i32,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A member's own declarations and holdings, as [`GroupCoordinator::member_state`] gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// The topics it subscribes to by name, as it sent them.
    pub subscribed_topics: Vec<String>,
    /// Its subscription pattern.
    pub subscribed_pattern: Option<String>,
    /// Its rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Its static id.
    pub instance_id: Option<String>,
    /// What it reported owning.
    pub owned: BTreeSet<TopicPartition>,
    /// What it was last told to own.
    pub assigned: BTreeSet<TopicPartition>,
    /// Its epoch.
    pub member_epoch: i32,
}

/// Every consumer group this node coordinates.
pub struct GroupCoordinator {
    groups: BTreeMap<String, Group>,
    limits: GroupLimits,
    member_counter: u64,
    member_salt: u64,
}

impl GroupCoordinator {
    /// An empty coordinator; `member_salt` makes member ids unique across restarts.
    pub fn new(limits: GroupLimits, member_salt: u64) -> Self {
        Self {
            groups: BTreeMap::new(),
            limits,
            member_counter: 0,
            member_salt,
        }
    }

    fn new_member_id(&mut self) -> String {
        self.member_counter += 1;
        format!(
            "member-{:016x}-{:06}",
            self.member_salt, self.member_counter
        )
    }

    /// Handles one heartbeat (join, stay, leave) given the node's topics.
    pub fn handle_heartbeat(
        &mut self,
        now: Instant,
        heartbeat: Heartbeat,
        partition_counts: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatReply, GroupError> {
        let group_id = heartbeat.group_id.clone();
        if group_id.is_empty() || group_id.len() > 255 {
            return Err(GroupError::InvalidGroupId(group_id));
        }
        let limits = self.limits.clone();
        if heartbeat.member_epoch == -1 || heartbeat.member_epoch == -2 {
            return self.leave(
                now,
                &group_id,
                &heartbeat.member_id,
                heartbeat.member_epoch == -2,
                partition_counts,
            );
        }
        let assignor = Assignor::from_name(&heartbeat.assignor).ok_or_else(|| {
            GroupError::InconsistentAssignor(format!(
                "unknown assignor {:?}: use range, round-robin or cooperative-sticky",
                heartbeat.assignor
            ))
        })?;
        check_timeout(
            "session timeout",
            heartbeat.session_timeout,
            limits.session_timeout_min,
            limits.session_timeout_max,
            "groups.session_timeout_min_ms and groups.session_timeout_max_ms",
        )?;
        check_timeout(
            "rebalance timeout",
            heartbeat.rebalance_timeout,
            Duration::ZERO,
            limits.rebalance_timeout_max,
            "groups.rebalance_timeout_max_ms",
        )?;
        let pattern = match &heartbeat.subscribed_pattern {
            Some(text) => Some((
                text.clone(),
                regex::Regex::new(&format!("^(?:{text})$")).map_err(|error| {
                    GroupError::InvalidPattern {
                        pattern: text.clone(),
                        reason: error.to_string(),
                    }
                })?,
            )),
            None => None,
        };
        if !self.groups.contains_key(&group_id) && self.active_groups() >= limits.groups_max {
            return Err(GroupError::TooManyGroups(limits.groups_max));
        }
        // A client-chosen id joins when the group does not know it; a known one at epoch 0
        // is that member rejoining (it gave up what it owned).
        let client_id_joins = heartbeat.member_id_from_client
            && heartbeat.member_epoch == 0
            && !heartbeat.member_id.is_empty()
            && self
                .groups
                .get(&group_id)
                .is_none_or(|group| !group.members.contains_key(&heartbeat.member_id));
        if client_id_joins && heartbeat.member_id.len() > CLIENT_MEMBER_ID_BYTES_MAX {
            return Err(GroupError::InvalidMemberId(heartbeat.member_id.clone()));
        }
        let joining = heartbeat.member_id.is_empty() || client_id_joins;
        let fresh_id = if client_id_joins {
            Some(heartbeat.member_id.clone())
        } else {
            heartbeat.member_id.is_empty().then(|| self.new_member_id())
        };
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group {
                assignor: None,
                group_epoch: 0,
                target_epoch: 0,
                members: BTreeMap::new(),
                target: BTreeMap::new(),
                topics_seen: BTreeMap::new(),
            });
        match group.assignor {
            Some(existing) if existing != assignor && !group.members.is_empty() => {
                return Err(GroupError::InconsistentAssignor(format!(
                    "group {group_id:?} uses assignor {}, this member asked for {}",
                    existing.name(),
                    assignor.name()
                )));
            }
            _ => group.assignor = Some(assignor),
        }
        let subscribed_topics: BTreeSet<String> =
            heartbeat.subscribed_topics.iter().cloned().collect();
        let member_id = if let Some(new_id) = fresh_id {
            // A static member restarting takes over its previous entry: same assignment,
            // no rebalance; the old id is fenced.
            let previous = heartbeat.instance_id.as_ref().and_then(|instance| {
                group
                    .members
                    .iter()
                    .find(|(_, member)| member.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone())
            });
            match previous
                .and_then(|old_id| group.members.remove(&old_id).map(|member| (old_id, member)))
            {
                Some((old_id, mut member)) => {
                    member.departed = false;
                    member.owned.clear();
                    member.last_seen = now;
                    if let Some(target) = group.target.remove(&old_id) {
                        group.target.insert(new_id.clone(), target);
                    }
                    group.members.insert(new_id.clone(), member);
                }
                None => {
                    if group.members.len() >= limits.group_members_max {
                        return Err(GroupError::GroupFull {
                            group_id,
                            limit: limits.group_members_max,
                        });
                    }
                    group.members.insert(
                        new_id.clone(),
                        Member {
                            instance_id: heartbeat.instance_id.clone(),
                            client_id: heartbeat.client_id.clone(),
                            subscribed_topics: subscribed_topics.clone(),
                            pattern: pattern.clone(),
                            pattern_filter: heartbeat.pattern_filter.clone(),
                            session_timeout: heartbeat.session_timeout,
                            rebalance_timeout: heartbeat.rebalance_timeout,
                            last_seen: now,
                            departed: false,
                            owned: BTreeSet::new(),
                            assigned: BTreeSet::new(),
                            member_epoch: 0,
                            previous_epoch: 0,
                            revoke_deadline: None,
                        },
                    );
                    group.group_epoch += 1;
                }
            }
            new_id
        } else {
            heartbeat.member_id.clone()
        };
        let Some(member) = group.members.get_mut(&member_id) else {
            return Err(GroupError::UnknownMember {
                group_id,
                member_id,
            });
        };
        if !joining && heartbeat.protocol == MemberProtocol::Consumer {
            let owned = (!heartbeat.owned_omitted).then_some(&heartbeat.owned);
            if !epoch_is_valid(member, heartbeat.member_epoch, owned) {
                return Err(GroupError::FencedEpoch {
                    member_id,
                    current: member.member_epoch,
                    received: heartbeat.member_epoch,
                });
            }
        }
        member.last_seen = now;
        member.session_timeout = heartbeat.session_timeout;
        member.rebalance_timeout = heartbeat.rebalance_timeout;
        member.client_id = heartbeat.client_id;
        if !joining {
            // A member can only hold what it was given; anything else it reports is ignored
            // so a confused or hostile client cannot claim another member's partitions.
            let legitimate: BTreeSet<TopicPartition> =
                member.assigned.union(&member.owned).cloned().collect();
            member.owned = heartbeat.owned.intersection(&legitimate).cloned().collect();
        }
        let pattern_text = |pattern: &Option<(String, regex::Regex)>| {
            pattern.as_ref().map(|(text, _)| text.clone())
        };
        // What the member's pattern resolves to may change with its subscription, and with
        // its filter (ACLs changed since its last heartbeat).
        let resolved_before = group_subscription(member, partition_counts);
        member.pattern_filter = heartbeat.pattern_filter;
        let subscription_changed = member.subscribed_topics != subscribed_topics
            || pattern_text(&member.pattern) != pattern_text(&pattern);
        if subscription_changed {
            member.subscribed_topics = subscribed_topics;
            member.pattern = pattern;
        }
        if subscription_changed || group_subscription(member, partition_counts) != resolved_before {
            group.group_epoch += 1;
        }
        refresh_target(group, partition_counts);
        let mut reply = reconcile_member(group, &member_id, now, limits.heartbeat_interval);
        let desired = group.target.get(&member_id).cloned().unwrap_or_default();
        let settled = group
            .members
            .get(&member_id)
            .is_some_and(|member| member.owned == desired && member.assigned == desired);
        if !settled {
            reply.heartbeat_interval = limits
                .reconciling_heartbeat_interval
                .min(limits.heartbeat_interval);
        }
        Ok(reply)
    }

    fn leave(
        &mut self,
        now: Instant,
        group_id: &str,
        member_id: &str,
        temporary: bool,
        partition_counts: &BTreeMap<String, u32>,
    ) -> Result<HeartbeatReply, GroupError> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(GroupError::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            });
        };
        let Some(member) = group.members.get_mut(member_id) else {
            return Err(GroupError::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            });
        };
        let epoch = if temporary && member.instance_id.is_some() {
            // A static member keeps its place (and partitions) for its session timeout.
            member.departed = true;
            member.owned.clear();
            member.last_seen = now;
            -2
        } else {
            group.members.remove(member_id);
            group.group_epoch += 1;
            refresh_target(group, partition_counts);
            -1
        };
        Ok(HeartbeatReply {
            member_id: member_id.to_string(),
            member_epoch: epoch,
            assignment: BTreeSet::new(),
            heartbeat_interval: self.limits.heartbeat_interval,
        })
    }

    /// Expires members whose session timed out and members that did not give up revoked
    /// partitions in time. Returns the (group, member) pairs removed.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        partition_counts: &BTreeMap<String, u32>,
    ) -> Vec<(String, String)> {
        let mut removed = Vec::new();
        for (group_id, group) in &mut self.groups {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| {
                    now.saturating_duration_since(member.last_seen) > member.session_timeout
                        || member
                            .revoke_deadline
                            .is_some_and(|deadline| now > deadline)
                })
                .map(|(id, _)| id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            for member_id in expired {
                group.members.remove(&member_id);
                removed.push((group_id.clone(), member_id));
            }
            group.group_epoch += 1;
            refresh_target(group, partition_counts);
        }
        removed
    }

    /// The next instant a member could expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|group| group.members.values())
            .flat_map(|member| {
                [
                    Some(member.last_seen + member.session_timeout),
                    member.revoke_deadline,
                ]
            })
            .flatten()
            .min()
    }

    /// Checks a member's commit: the member must exist with an epoch `rule` accepts, and
    /// hold each partition (assigned or still owned). An empty member id is an
    /// administrative commit, allowed only when the group has no members.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        rule: CommitEpochRule,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Option<CommitRefusal>>, GroupError> {
        if group_id.is_empty() || group_id.len() > 255 {
            return Err(GroupError::InvalidGroupId(group_id.to_string()));
        }
        let group = self.groups.get(group_id);
        if member_id.is_empty() {
            if group.is_some_and(|group| !group.members.is_empty()) {
                return Err(GroupError::NonEmptyGroup(group_id.to_string()));
            }
            return Ok(vec![None; partitions.len()]);
        }
        let Some(member) = group.and_then(|group| group.members.get(member_id)) else {
            return Err(GroupError::UnknownMember {
                group_id: group_id.to_string(),
                member_id: member_id.to_string(),
            });
        };
        match rule {
            CommitEpochRule::Current if member_epoch != member.member_epoch => {
                return Err(GroupError::StaleEpoch {
                    member_id: member_id.to_string(),
                    current: member.member_epoch,
                    received: member_epoch,
                });
            }
            CommitEpochRule::NotNewer if member_epoch > member.member_epoch || member_epoch < 0 => {
                return Err(GroupError::FencedEpoch {
                    member_id: member_id.to_string(),
                    current: member.member_epoch,
                    received: member_epoch,
                });
            }
            _ => {}
        }
        Ok(partitions
            .iter()
            .map(|partition| {
                (!(member.assigned.contains(partition) || member.owned.contains(partition)))
                    .then_some(CommitRefusal::NotAssigned)
            })
            .collect())
    }

    /// The coordinator's limits.
    pub fn limits(&self) -> &GroupLimits {
        &self.limits
    }

    /// Whether the group has active members.
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|group| !group.members.is_empty())
    }

    /// Groups with members: (id, state, member count).
    pub fn list(&self) -> Vec<(String, &'static str, usize)> {
        self.groups
            .iter()
            .filter(|(_, group)| !group.members.is_empty())
            .map(|(id, group)| {
                (
                    id.clone(),
                    state_name(group.members.len(), is_reconciling(group)),
                    group.members.len(),
                )
            })
            .collect()
    }

    /// Describes a group (`None` if it has never had members on this node run).
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        Some(GroupDescription {
            state: state_name(group.members.len(), is_reconciling(group)),
            assignor: group
                .assignor
                .map(|assignor| assignor.name().to_string())
                .unwrap_or_default(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.target_epoch,
            members: group
                .members
                .iter()
                .map(|(id, member)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    member_epoch: member.member_epoch,
                    subscribed_topics: group_subscription(member, &group.topics_seen)
                        .into_iter()
                        .collect(),
                    subscribed_pattern: member.pattern.as_ref().map(|(text, _)| text.clone()),
                    assignment: member.assigned.clone(),
                    target: group.target.get(id).cloned().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// What a member last declared and holds, for a client that sends only what changed
    /// (Kafka's ConsumerGroupHeartbeat); `None` if the group has no such member.
    pub fn member_state(&self, group_id: &str, member_id: &str) -> Option<MemberState> {
        let group = self.groups.get(group_id)?;
        let member = group.members.get(member_id)?;
        Some(MemberState {
            subscribed_topics: member.subscribed_topics.iter().cloned().collect(),
            subscribed_pattern: member.pattern.as_ref().map(|(text, _)| text.clone()),
            rebalance_timeout: member.rebalance_timeout,
            instance_id: member.instance_id.clone(),
            owned: member.owned.clone(),
            assigned: member.assigned.clone(),
            member_epoch: member.member_epoch,
        })
    }

    /// The assignor a group uses (`None` before its first member named one).
    pub fn group_assignor(&self, group_id: &str) -> Option<Assignor> {
        self.groups.get(group_id).and_then(|group| group.assignor)
    }

    /// Forgets an empty group's membership state (its offsets are deleted by the caller).
    pub fn delete(&mut self, group_id: &str) -> Result<(), GroupError> {
        if self.has_members(group_id) {
            return Err(GroupError::NonEmptyGroup(group_id.to_string()));
        }
        self.groups.remove(group_id);
        Ok(())
    }

    /// Forgets every group `unloaded` selects, members and all: this node no longer
    /// coordinates them (their `__consumer_offsets` partition is led elsewhere now; the new
    /// coordinator rebuilds the membership from the members' next heartbeats). Returns how
    /// many groups were forgotten.
    pub fn unload(&mut self, mut unloaded: impl FnMut(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups.retain(|group_id, _| !unloaded(group_id));
        before - self.groups.len()
    }

    fn active_groups(&self) -> usize {
        self.groups
            .values()
            .filter(|group| !group.members.is_empty())
            .count()
    }

    /// Checks the coordinator's invariants; panics naming the broken one (tests).
    pub fn check_invariants(&self) {
        for (group_id, group) in &self.groups {
            let mut holders: BTreeMap<&TopicPartition, &String> = BTreeMap::new();
            for (member_id, member) in &group.members {
                for partition in member.owned.union(&member.assigned) {
                    if let Some(other) = holders.insert(partition, member_id) {
                        assert_eq!(
                            other, member_id,
                            "group {group_id}: {partition:?} held by {other} and {member_id}"
                        );
                    }
                }
            }
        }
    }
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: an epoch newer than the member's is
/// fenced; an older one is taken only if it is the member's previous epoch and the member
/// reported what it owns (`owned`, `None` when the client left it out) within its current
/// assignment: the answer that moved it on was lost, and it holds nothing it should not.
/// Epoch 0 from a known member is a rejoin after it gave up its partitions (KIP-848; Kafka
/// 4.1 fences it unless its previous epoch is 0, fixed in KAFKA-19233), and is taken.
fn epoch_is_valid(
    member: &Member,
    received: i32,
    owned: Option<&BTreeSet<TopicPartition>>,
) -> bool {
    if received == 0 || received == member.member_epoch {
        return true;
    }
    received < member.member_epoch
        && received == member.previous_epoch
        && owned.is_some_and(|owned| owned.is_subset(&member.assigned))
}

/// `node_keys` names the node's config keys that set the bounds, so the operator knows what
/// to change if the client's value is the right one.
fn check_timeout(
    name: &str,
    value: Duration,
    minimum: Duration,
    maximum: Duration,
    node_keys: &str,
) -> Result<(), GroupError> {
    if value < minimum || value > maximum {
        return Err(GroupError::InvalidTimeout(format!(
            "{name} of {} ms is outside {}..={} ms (the node's {node_keys})",
            value.as_millis(),
            minimum.as_millis(),
            maximum.as_millis()
        )));
    }
    Ok(())
}

fn group_subscription(
    member: &Member,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = member
        .subscribed_topics
        .iter()
        .filter(|topic| partition_counts.contains_key(*topic))
        .cloned()
        .collect();
    if let Some((_, pattern)) = &member.pattern {
        topics.extend(
            partition_counts
                .keys()
                .filter(|topic| {
                    !topic.starts_with("__")
                        && pattern.is_match(topic)
                        && member.pattern_filter.allows(topic)
                })
                .cloned(),
        );
    }
    topics
}

fn is_reconciling(group: &Group) -> bool {
    group.members.iter().any(|(id, member)| {
        group
            .target
            .get(id)
            .is_some_and(|target| *target != member.assigned)
            || member
                .owned
                .iter()
                .any(|partition| !member.assigned.contains(partition))
    })
}

/// Recomputes the target when the group epoch moved or subscribed topics changed size.
fn refresh_target(group: &mut Group, partition_counts: &BTreeMap<String, u32>) {
    let subscriptions: BTreeMap<String, BTreeSet<String>> = group
        .members
        .iter()
        .map(|(id, member)| (id.clone(), group_subscription(member, partition_counts)))
        .collect();
    let relevant: BTreeSet<&String> = subscriptions.values().flatten().collect();
    let topics_seen: BTreeMap<String, u32> = partition_counts
        .iter()
        .filter(|(topic, _)| relevant.contains(topic))
        .map(|(topic, count)| (topic.clone(), *count))
        .collect();
    if topics_seen != group.topics_seen {
        group.topics_seen = topics_seen.clone();
        group.group_epoch += 1;
    }
    if group.target_epoch == group.group_epoch {
        return;
    }
    let assignor = group.assignor.unwrap_or(Assignor::CooperativeSticky);
    group.target = assignor.assign(&subscriptions, &topics_seen, &group.target);
    group.target_epoch = group.group_epoch;
}

/// What a member should own now: its target minus partitions another member still owns
/// or has been told to own; and a revocation deadline while it owns what it should not.
fn reconcile_member(
    group: &mut Group,
    member_id: &str,
    now: Instant,
    heartbeat_interval: Duration,
) -> HeartbeatReply {
    let desired = group.target.get(member_id).cloned().unwrap_or_default();
    let held_elsewhere: BTreeSet<TopicPartition> = group
        .members
        .iter()
        .filter(|(id, _)| id.as_str() != member_id)
        .flat_map(|(_, member)| {
            member
                .owned
                .union(&member.assigned)
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    let group_epoch = group.group_epoch;
    let member = group
        .members
        .get_mut(member_id)
        .expect("reconcile is called for a member of the group");
    let assignment: BTreeSet<TopicPartition> = desired
        .iter()
        .filter(|partition| {
            member.owned.contains(*partition) || !held_elsewhere.contains(*partition)
        })
        .cloned()
        .collect();
    if assignment != member.assigned || member.member_epoch == 0 {
        member.assigned = assignment.clone();
        if member.member_epoch != group_epoch {
            member.previous_epoch = member.member_epoch;
            member.member_epoch = group_epoch;
        }
    }
    if member
        .owned
        .iter()
        .any(|partition| !member.assigned.contains(partition))
    {
        member
            .revoke_deadline
            .get_or_insert(now + member.rebalance_timeout);
    } else {
        member.revoke_deadline = None;
    }
    HeartbeatReply {
        member_id: member_id.to_string(),
        member_epoch: member.member_epoch,
        assignment,
        heartbeat_interval,
    }
}

#[cfg(test)]
mod tests;
