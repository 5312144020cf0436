//! `ClassicGroups`: Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup) for every classic group this node coordinates (sans-IO).
//!
//! Owns: members, their protocols and metadata, generations, the selected protocol, the
//! leader, the assignment the leader handed out, and every deadline (rebalance, session,
//! pending sync, initial delay). Does not own: committed offsets (`offsets.rs`, checked
//! through [`ClassicGroups::validate_offset_commit`]), sockets, time (every input takes
//! `now`), or what the members' metadata and assignments mean: they are opaque bytes, so
//! client-side assignors (the consumer's, Kafka Streams', Connect's) work unchanged.
//!
//! The shape follows Kafka's `GroupMetadata` states: `Empty` → `PreparingRebalance` (members
//! rejoin; JoinGroup answers are held) → `CompletingRebalance` (joins answered, the leader
//! computes the assignment; SyncGroup answers are held) → `Stable` (SyncGroup answered). A
//! JoinGroup or SyncGroup that must wait returns [`Step::Wait`] with the caller's token and
//! is answered later through [`ClassicGroups::poll_completion`]; the driver (`service.rs`)
//! holds one channel per token. `Dead` is never stored: a deleted group is simply gone.
//!
//! Invariants (checked by `check_invariants` in tests after every step):
//! - a member awaits a JoinGroup answer only in `PreparingRebalance`, a SyncGroup answer only
//!   in `CompletingRebalance`;
//! - the leader, when set, is a member; a group with members outside `Empty` has a protocol;
//! - `Empty` has no members.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::coordinator::GroupLimits;

/// A caller's handle on a held JoinGroup or SyncGroup answer.
pub type Token = u64;

/// Kafka's group states for classic groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassicState {
    /// Members rejoined and got their join answer; the leader's SyncGroup is awaited.
    CompletingRebalance,
    /// No members (offsets may still be committed).
    Empty,
    /// Members are (re)joining; join answers are held until all rejoined or the rebalance
    /// timeout passes.
    PreparingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl ClassicState {
    /// The state as Kafka names it (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// Why a classic request was refused; the Kafka handlers map each to its error code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClassicError {
    /// Empty or oversized group id.
    #[error("invalid group id {0:?}: 1 to 255 characters")]
    InvalidGroupId(String),
    /// The group uses another protocol type, or no protocol is shared by every member.
    #[error("{0}")]
    InconsistentGroupProtocol(String),
    /// The session timeout is outside the node's bounds.
    #[error(
        "session timeout of {asked_ms} ms is outside {min_ms}..={max_ms} ms (the node's groups.session_timeout_min_ms and groups.session_timeout_max_ms)"
    )]
    InvalidSessionTimeout {
        /// What the member asked for.
        asked_ms: u128,
        /// Lowest allowed.
        min_ms: u128,
        /// Highest allowed.
        max_ms: u128,
    },
    /// The member is not (or no longer) in the group: rejoin with an empty member id.
    #[error("member {member_id:?} is not in group {group_id:?}; rejoin with an empty member id")]
    UnknownMember {
        /// Group.
        group_id: String,
        /// Member.
        member_id: String,
    },
    /// A new dynamic member must rejoin with the member id it is given (JoinGroup v4+,
    /// KIP-394), so that a member whose first answer is lost does not leave a ghost behind.
    #[error("rejoin with member id {member_id:?}")]
    MemberIdRequired {
        /// The id to rejoin with.
        member_id: String,
    },
    /// The request names a generation other than the group's: rejoin.
    #[error("generation {received} is not group {group_id:?}'s current generation {current}")]
    IllegalGeneration {
        /// Group.
        group_id: String,
        /// The group's generation.
        current: i32,
        /// The request's.
        received: i32,
    },
    /// The group is rebalancing: rejoin.
    #[error("group {0:?} is rebalancing; rejoin")]
    RebalanceInProgress(String),
    /// Another member with this `group.instance.id` replaced this one.
    #[error(
        "group.instance.id {instance_id:?} of group {group_id:?} belongs to another member now"
    )]
    FencedInstanceId {
        /// Group.
        group_id: String,
        /// Static id.
        instance_id: String,
    },
    /// The group is full.
    #[error("group {group_id:?} has reached group_members_max ({limit})")]
    GroupFull {
        /// Group.
        group_id: String,
        /// The limit.
        limit: usize,
    },
    /// Too many groups on this node.
    #[error("the node has reached groups_max ({0})")]
    TooManyGroups(usize),
    /// The group has members; the operation needs it empty.
    #[error("group {0:?} has active members; stop them first")]
    NonEmptyGroup(String),
    /// The group is being deleted or moved: find the coordinator again.
    #[error("group {0:?} was removed while the request waited; retry")]
    GroupRemoved(String),
}

/// A JoinGroup as the state machine sees it.
#[derive(Clone, Debug, Default)]
pub struct JoinInput {
    /// The group.
    pub group_id: String,
    /// Empty on a first join.
    pub member_id: String,
    /// `group.instance.id` (static membership, KIP-345).
    pub instance_id: Option<String>,
    /// The client's id (for member ids and describe).
    pub client_id: String,
    /// The client's address (for describe).
    pub client_host: String,
    /// Session timeout asked for.
    pub session_timeout: Duration,
    /// Rebalance timeout asked for (JoinGroup v0 has none: the session timeout).
    pub rebalance_timeout: Duration,
    /// `consumer`, `connect`, or any other string, as Kafka.
    pub protocol_type: String,
    /// Protocols in the member's order of preference, each with its metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member is answered `MemberIdRequired` first.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinReply {
    /// The new generation.
    pub generation: i32,
    /// The group's protocol type.
    pub protocol_type: String,
    /// The protocol selected for this generation.
    pub protocol_name: String,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// For the leader only: every member's (id, instance id, metadata of the selected
    /// protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

/// A SyncGroup as the state machine sees it.
#[derive(Clone, Debug, Default)]
pub struct SyncInput {
    /// The group.
    pub group_id: String,
    /// The generation the member joined.
    pub generation: i32,
    /// The member.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    /// v5+: checked against the group's when present.
    pub protocol_name: Option<String>,
    /// From the leader: each member's assignment.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncReply {
    /// The group's protocol type.
    pub protocol_type: String,
    /// The selected protocol.
    pub protocol_name: String,
    /// This member's assignment (opaque: the leader's assignor wrote it).
    pub assignment: Bytes,
}

/// What a JoinGroup or SyncGroup does now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// Answered at once.
    Done(T),
    /// Answered later through [`ClassicGroups::poll_completion`] with this token.
    Wait(Token),
}

/// A held answer, now due.
#[derive(Debug, PartialEq, Eq)]
pub enum Completion {
    /// A JoinGroup's.
    Join(Token, Result<JoinReply, ClassicError>),
    /// A SyncGroup's.
    Sync(Token, Result<SyncReply, ClassicError>),
}

impl Completion {
    /// The token of the request it answers.
    pub fn token(&self) -> Token {
        match self {
            Self::Join(token, _) | Self::Sync(token, _) => *token,
        }
    }
}

/// One member of a LeaveGroup (v3+ carries a batch).
#[derive(Clone, Debug, Default)]
pub struct LeavingMember {
    /// Member id (may be empty when the instance id names the member).
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicMemberDescription {
    /// Id.
    pub member_id: String,
    /// Static id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the selected protocol (empty before one is selected).
    pub metadata: Bytes,
    /// The assignment handed to it (empty until the leader synced).
    pub assignment: Bytes,
}

/// A classic group as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassicGroupDescription {
    /// Kafka's state.
    pub state: ClassicState,
    /// Protocol type (empty if none yet).
    pub protocol_type: String,
    /// Selected protocol (empty outside a generation).
    pub protocol_name: String,
    /// Generation.
    pub generation: i32,
    /// Members.
    pub members: Vec<ClassicMemberDescription>,
}

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    last_heartbeat: Instant,
}

impl Member {
    fn protocol_names(&self) -> BTreeSet<&str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .collect()
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Kafka's `shouldKeepAlive`: a member waiting on a held answer is not expired (its
    /// client is blocked on us, not silent); otherwise its session timeout applies.
    fn session_deadline(&self) -> Option<Instant> {
        (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
            .then(|| self.last_heartbeat + self.session_timeout)
    }
}

struct Group {
    state: ClassicState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with `MemberIdRequired`, until their second join (or their
    /// session timeout).
    pending_members: BTreeMap<String, Instant>,
    /// `PreparingRebalance`: when the join phase ends even if members are missing.
    rebalance_deadline: Option<Instant>,
    /// `PreparingRebalance` of an empty group: the join phase does not end early before
    /// this (Kafka's `group.initial.rebalance.delay.ms`), so a group starting with several
    /// consumers does not rebalance once per consumer.
    initial_delay_until: Option<Instant>,
    /// When the initial delay may extend to at most (the rebalance timeout of the join that
    /// started it).
    initial_delay_cap: Option<Instant>,
    /// `CompletingRebalance`: members that got their join answer but did not sync yet, and
    /// when they are dropped for it (Kafka's pending-sync timeout: the rebalance timeout).
    pending_sync: BTreeSet<String>,
    sync_deadline: Option<Instant>,
}

impl Group {
    fn new() -> Self {
        Self {
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            initial_delay_cap: None,
            pending_sync: BTreeSet::new(),
            sync_deadline: None,
        }
    }

    fn member_by_instance(&self, instance_id: &str) -> Option<&String> {
        self.members
            .iter()
            .find(|(_, member)| member.instance_id.as_deref() == Some(instance_id))
            .map(|(id, _)| id)
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> BTreeSet<&str> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut candidates = first.protocol_names();
        for member in members {
            let names = member.protocol_names();
            candidates.retain(|name| names.contains(name));
        }
        candidates
    }

    /// Whether a member offering `protocols` could join: some protocol all members share
    /// must be among them (Kafka's `supportsProtocols`).
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            // An empty group takes the protocol type of its next first member, as Kafka's.
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols
            .iter()
            .any(|(name, _)| candidates.contains(name.as_str()))
    }

    /// Kafka's vote: each member votes for its most preferred protocol among those all
    /// members support; most votes wins, ties to the protocol the leader prefers most (Kafka
    /// leaves ties to hash order; a fixed rule keeps the simulator deterministic).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let most = votes.values().copied().max()?;
        let preference = self
            .leader
            .as_ref()
            .and_then(|leader| self.members.get(leader))
            .or_else(|| self.members.values().next())?;
        preference
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| votes.get(name) == Some(&most))
            .map(str::to_string)
    }

    /// Whether the join phase may end now: every member rejoined and no member id handed
    /// out with `MemberIdRequired` is still expected, and the initial delay has passed.
    fn all_joined(&self, now: Instant) -> bool {
        self.initial_delay_until.is_none_or(|until| now >= until)
            && self.pending_members.is_empty()
            && self
                .members
                .values()
                .all(|member| member.awaiting_join.is_some())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }
}

/// Every classic group this node coordinates.
pub struct ClassicGroups {
    groups: BTreeMap<String, Group>,
    limits: GroupLimits,
    completions: VecDeque<Completion>,
    member_counter: u64,
    member_salt: u64,
}

/// Longest group id, as the node's other group APIs.
const GROUP_ID_BYTES_MAX: usize = 255;

impl ClassicGroups {
    /// No groups; `member_salt` makes member ids unique across restarts.
    pub fn new(limits: GroupLimits, member_salt: u64) -> Self {
        Self {
            groups: BTreeMap::new(),
            limits,
            completions: VecDeque::new(),
            member_counter: 0,
            member_salt,
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_counter += 1;
        // Kafka's shape, `<client id>-<unique suffix>`; the client id is cut so a long one
        // cannot make ids unbounded.
        let prefix: String = client_id.chars().take(64).collect();
        format!(
            "{prefix}-{:016x}-{:06}",
            self.member_salt, self.member_counter
        )
    }

    /// Handles a JoinGroup (Kafka's `classicGroupJoin`).
    pub fn handle_join(
        &mut self,
        now: Instant,
        join: JoinInput,
        token: Token,
    ) -> Result<Step<JoinReply>, ClassicError> {
        let group_id = join.group_id.clone();
        check_group_id(&group_id)?;
        let limits = self.limits.clone();
        if join.session_timeout < limits.session_timeout_min
            || join.session_timeout > limits.session_timeout_max
        {
            return Err(ClassicError::InvalidSessionTimeout {
                asked_ms: join.session_timeout.as_millis(),
                min_ms: limits.session_timeout_min.as_millis(),
                max_ms: limits.session_timeout_max.as_millis(),
            });
        }
        // A rebalance timeout above the node's bound is lowered rather than refused: Kafka
        // has no bound, and clients send max.poll.interval.ms (5 minutes by default).
        let rebalance_timeout = join.rebalance_timeout.min(limits.rebalance_timeout_max);
        if !self.groups.contains_key(&group_id) {
            if !join.member_id.is_empty() {
                return Err(unknown_member(&group_id, &join.member_id));
            }
            if self.active_groups() >= limits.groups_max {
                return Err(ClassicError::TooManyGroups(limits.groups_max));
            }
        }
        let fresh_id = join
            .member_id
            .is_empty()
            .then(|| self.new_member_id(&join.client_id));
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(Group::new);
        if !group.supports(&join.protocol_type, &join.protocols) {
            let error = ClassicError::InconsistentGroupProtocol(format!(
                "group {group_id:?} (protocol type {:?}) shares no protocol with this member's {:?} of type {:?}",
                group.protocol_type.as_deref().unwrap_or(""),
                join.protocols
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
                join.protocol_type
            ));
            self.drop_if_unused(&group_id);
            return Err(error);
        }
        let member = Member {
            instance_id: join.instance_id.clone(),
            client_id: join.client_id.clone(),
            client_host: join.client_host.clone(),
            session_timeout: join.session_timeout,
            rebalance_timeout,
            protocol_type: join.protocol_type.clone(),
            protocols: join.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: None,
            awaiting_sync: None,
            last_heartbeat: now,
        };
        let step = match fresh_id {
            Some(new_id) => self.join_unknown_member(now, &group_id, new_id, member, &join, token),
            None => self.join_known_member(now, &group_id, member, &join, token),
        };
        if step.is_err() {
            self.drop_if_unused(&group_id);
        }
        step
    }

    fn join_unknown_member(
        &mut self,
        now: Instant,
        group_id: &str,
        new_id: String,
        member: Member,
        join: &JoinInput,
        token: Token,
    ) -> Result<Step<JoinReply>, ClassicError> {
        let limit = self.limits.group_members_max;
        let group = self.group_mut(group_id);
        if let Some(instance_id) = &join.instance_id
            && let Some(old_id) = group.member_by_instance(instance_id).cloned()
        {
            return self.replace_static_member(now, group_id, old_id, new_id, member, token);
        }
        if group.members.len() + group.pending_members.len() >= limit {
            return Err(ClassicError::GroupFull {
                group_id: group_id.to_string(),
                limit,
            });
        }
        if join.require_known_member_id && join.instance_id.is_none() {
            // KIP-394: the member learns its id first and joins with it, so a join whose
            // answer is lost (client timeout) leaves no member behind.
            group
                .pending_members
                .insert(new_id.clone(), now + join.session_timeout);
            return Err(ClassicError::MemberIdRequired { member_id: new_id });
        }
        self.add_member_and_rebalance(now, group_id, new_id, member, token)
    }

    fn join_known_member(
        &mut self,
        now: Instant,
        group_id: &str,
        member: Member,
        join: &JoinInput,
        token: Token,
    ) -> Result<Step<JoinReply>, ClassicError> {
        let member_id = join.member_id.clone();
        let group = self.group_mut(group_id);
        if group.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(now, group_id, member_id, member, token);
        }
        check_member(group_id, group, &member_id, join.instance_id.as_deref())?;
        let existing = group
            .members
            .get(&member_id)
            .expect("check_member found the member");
        let same_protocols = existing.protocols == member.protocols;
        let is_leader = group.leader.as_deref() == Some(member_id.as_str());
        match group.state {
            ClassicState::PreparingRebalance => {
                self.update_member_awaiting_join(now, group_id, &member_id, member, token);
                self.maybe_complete_join(now, group_id);
                Ok(Step::Wait(token))
            }
            ClassicState::CompletingRebalance if same_protocols => {
                // The join answer was lost: answer it again with the current generation.
                let group = self.group_mut(group_id);
                if let Some(existing) = group.members.get_mut(&member_id) {
                    existing.last_heartbeat = now;
                }
                Ok(Step::Done(join_reply(group, &member_id)))
            }
            ClassicState::Stable if same_protocols && !is_leader => {
                // A follower rejoining without changes gets the current generation; only the
                // leader (or a change of protocols) starts a new rebalance.
                let group = self.group_mut(group_id);
                if let Some(existing) = group.members.get_mut(&member_id) {
                    existing.last_heartbeat = now;
                }
                Ok(Step::Done(join_reply(group, &member_id)))
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.update_member_awaiting_join(now, group_id, &member_id, member, token);
                self.prepare_rebalance(now, group_id);
                self.maybe_complete_join(now, group_id);
                Ok(Step::Wait(token))
            }
            ClassicState::Empty => Err(unknown_member(group_id, &member_id)),
        }
    }

    /// A static member restarting with its `group.instance.id` takes over its old entry
    /// under a new member id (KIP-345); the old id is fenced. A follower of a stable group
    /// gets its old assignment back with no rebalance; otherwise the group rebalances.
    fn replace_static_member(
        &mut self,
        now: Instant,
        group_id: &str,
        old_id: String,
        new_id: String,
        mut member: Member,
        token: Token,
    ) -> Result<Step<JoinReply>, ClassicError> {
        let group = self.group_mut(group_id);
        let old = group
            .members
            .remove(&old_id)
            .expect("the instance's member is in the group");
        let instance_id = old.instance_id.clone().unwrap_or_default();
        let fenced = ClassicError::FencedInstanceId {
            group_id: group_id.to_string(),
            instance_id,
        };
        if let Some(waiting) = old.awaiting_join {
            self.completions
                .push_back(Completion::Join(waiting, Err(fenced.clone())));
        }
        if let Some(waiting) = old.awaiting_sync {
            self.completions
                .push_back(Completion::Sync(waiting, Err(fenced)));
        }
        let group = self.group_mut(group_id);
        let was_leader = group.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            group.leader = Some(new_id.clone());
        }
        if group.pending_sync.remove(&old_id) {
            group.pending_sync.insert(new_id.clone());
        }
        let same_protocols = old.protocols == member.protocols;
        member.assignment = old.assignment;
        if group.state == ClassicState::Stable && same_protocols && !was_leader {
            group.members.insert(new_id.clone(), member);
            return Ok(Step::Done(join_reply(group, &new_id)));
        }
        member.awaiting_join = Some(token);
        group.members.insert(new_id, member);
        if group.state != ClassicState::PreparingRebalance {
            self.prepare_rebalance(now, group_id);
        }
        self.maybe_complete_join(now, group_id);
        Ok(Step::Wait(token))
    }

    fn add_member_and_rebalance(
        &mut self,
        now: Instant,
        group_id: &str,
        member_id: String,
        mut member: Member,
        token: Token,
    ) -> Result<Step<JoinReply>, ClassicError> {
        let initial_delay = self.limits.initial_rebalance_delay;
        let group = self.group_mut(group_id);
        if group.members.is_empty() {
            group.protocol_type = Some(member.protocol_type.clone());
        }
        member.awaiting_join = Some(token);
        let rebalance_timeout = member.rebalance_timeout;
        group.members.insert(member_id, member);
        match group.state {
            ClassicState::PreparingRebalance => {
                // Each member joining during the initial delay extends it, up to the
                // rebalance timeout of the join that started it (Kafka's InitialDelayedJoin).
                if let (Some(until), Some(cap)) =
                    (group.initial_delay_until, group.initial_delay_cap)
                {
                    group.initial_delay_until = Some((now + initial_delay).min(cap).max(until));
                    group.rebalance_deadline = group.initial_delay_until;
                }
            }
            ClassicState::Empty => {
                group.state = ClassicState::PreparingRebalance;
                let cap = now + rebalance_timeout;
                let until = (now + initial_delay).min(cap);
                group.initial_delay_until = Some(until);
                group.initial_delay_cap = Some(cap);
                group.rebalance_deadline = Some(until);
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                self.prepare_rebalance(now, group_id);
            }
        }
        self.maybe_complete_join(now, group_id);
        Ok(Step::Wait(token))
    }

    fn update_member_awaiting_join(
        &mut self,
        now: Instant,
        group_id: &str,
        member_id: &str,
        update: Member,
        token: Token,
    ) {
        let Some(member) = self
            .groups
            .get_mut(group_id)
            .and_then(|group| group.members.get_mut(member_id))
        else {
            return;
        };
        if let Some(previous) = member.awaiting_join.replace(token) {
            // A second JoinGroup while the first is held: the client gave up on the first.
            self.completions.push_back(Completion::Join(
                previous,
                Err(ClassicError::RebalanceInProgress(group_id.to_string())),
            ));
        }
        member.protocols = update.protocols;
        member.session_timeout = update.session_timeout;
        member.rebalance_timeout = update.rebalance_timeout;
        member.client_id = update.client_id;
        member.client_host = update.client_host;
        member.last_heartbeat = now;
    }

    /// Starts a rebalance: assignments are void, held syncs are told to rejoin, and every
    /// member has the longest rebalance timeout of the group to rejoin.
    fn prepare_rebalance(&mut self, now: Instant, group_id: &str) {
        let group = self.group_mut(group_id);
        let mut refused = Vec::new();
        for member in group.members.values_mut() {
            if group.state == ClassicState::CompletingRebalance {
                member.assignment = Bytes::new();
            }
            if let Some(waiting) = member.awaiting_sync.take() {
                refused.push(waiting);
            }
        }
        group.pending_sync.clear();
        group.sync_deadline = None;
        group.state = ClassicState::PreparingRebalance;
        group.initial_delay_until = None;
        group.initial_delay_cap = None;
        group.rebalance_deadline = Some(now + group.max_rebalance_timeout());
        for waiting in refused {
            self.completions.push_back(Completion::Sync(
                waiting,
                Err(ClassicError::RebalanceInProgress(group_id.to_string())),
            ));
        }
    }

    fn maybe_complete_join(&mut self, now: Instant, group_id: &str) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if group.state == ClassicState::PreparingRebalance && group.all_joined(now) {
            self.complete_join(now, group_id);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation rises,
    /// a protocol and a leader are chosen and every held join is answered (the leader with
    /// every member's metadata).
    fn complete_join(&mut self, now: Instant, group_id: &str) {
        let group = self.group_mut(group_id);
        let missing: Vec<String> = group
            .members
            .iter()
            .filter(|(_, member)| member.awaiting_join.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in missing {
            group.members.remove(&member_id);
        }
        group.rebalance_deadline = None;
        group.initial_delay_until = None;
        group.initial_delay_cap = None;
        group.generation += 1;
        if group.members.is_empty() {
            group.state = ClassicState::Empty;
            group.protocol_name = None;
            group.leader = None;
            return;
        }
        if group
            .leader
            .as_ref()
            .is_none_or(|leader| !group.members.contains_key(leader))
        {
            group.leader = group.members.keys().next().cloned();
        }
        group.protocol_name = group.select_protocol();
        group.state = ClassicState::CompletingRebalance;
        group.pending_sync = group.members.keys().cloned().collect();
        group.sync_deadline = Some(now + group.max_rebalance_timeout());
        let mut answers = Vec::new();
        let member_ids: Vec<String> = group.members.keys().cloned().collect();
        for member_id in member_ids {
            let reply = join_reply(group, &member_id);
            if let Some(member) = group.members.get_mut(&member_id) {
                member.last_heartbeat = now;
                if let Some(waiting) = member.awaiting_join.take() {
                    answers.push(Completion::Join(waiting, Ok(reply)));
                }
            }
        }
        self.completions.extend(answers);
    }

    /// Handles a SyncGroup: a follower waits for the leader's; the leader's hands every
    /// member its assignment and makes the group `Stable`.
    pub fn handle_sync(
        &mut self,
        now: Instant,
        sync: SyncInput,
        token: Token,
    ) -> Result<Step<SyncReply>, ClassicError> {
        let group_id = sync.group_id.clone();
        let Some(group) = self.groups.get_mut(&group_id) else {
            return Err(unknown_member(&group_id, &sync.member_id));
        };
        check_member(
            &group_id,
            group,
            &sync.member_id,
            sync.instance_id.as_deref(),
        )?;
        if sync.generation != group.generation {
            return Err(ClassicError::IllegalGeneration {
                group_id,
                current: group.generation,
                received: sync.generation,
            });
        }
        if sync
            .protocol_type
            .as_ref()
            .is_some_and(|asked| Some(asked) != group.protocol_type.as_ref())
            || sync
                .protocol_name
                .as_ref()
                .is_some_and(|asked| Some(asked) != group.protocol_name.as_ref())
        {
            return Err(ClassicError::InconsistentGroupProtocol(format!(
                "group {group_id:?} uses protocol type {:?} and protocol {:?}",
                group.protocol_type.as_deref().unwrap_or(""),
                group.protocol_name.as_deref().unwrap_or("")
            )));
        }
        match group.state {
            ClassicState::Empty => Err(unknown_member(&group_id, &sync.member_id)),
            ClassicState::PreparingRebalance => Err(ClassicError::RebalanceInProgress(group_id)),
            ClassicState::Stable => {
                let member = group
                    .members
                    .get_mut(&sync.member_id)
                    .expect("check_member found the member");
                member.last_heartbeat = now;
                Ok(Step::Done(SyncReply {
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocol_name: group.protocol_name.clone().unwrap_or_default(),
                    assignment: member.assignment.clone(),
                }))
            }
            ClassicState::CompletingRebalance => {
                group.pending_sync.remove(&sync.member_id);
                let member = group
                    .members
                    .get_mut(&sync.member_id)
                    .expect("check_member found the member");
                member.last_heartbeat = now;
                if let Some(previous) = member.awaiting_sync.replace(token) {
                    self.completions.push_back(Completion::Sync(
                        previous,
                        Err(ClassicError::RebalanceInProgress(group_id.clone())),
                    ));
                }
                if group.leader.as_deref() == Some(sync.member_id.as_str()) {
                    self.complete_sync(&group_id, sync.assignments);
                }
                Ok(Step::Wait(token))
            }
        }
    }

    /// The leader's assignment: each member gets its bytes (a member the leader left out
    /// gets an empty assignment, as in Kafka), every held sync is answered, and the group
    /// is `Stable`.
    fn complete_sync(&mut self, group_id: &str, assignments: Vec<(String, Bytes)>) {
        let group = self.group_mut(group_id);
        let mut by_member: BTreeMap<String, Bytes> = assignments.into_iter().collect();
        let protocol_type = group.protocol_type.clone().unwrap_or_default();
        let protocol_name = group.protocol_name.clone().unwrap_or_default();
        let mut answers = Vec::new();
        for (member_id, member) in &mut group.members {
            member.assignment = by_member.remove(member_id).unwrap_or_default();
            if let Some(waiting) = member.awaiting_sync.take() {
                answers.push(Completion::Sync(
                    waiting,
                    Ok(SyncReply {
                        protocol_type: protocol_type.clone(),
                        protocol_name: protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    }),
                ));
            }
        }
        group.state = ClassicState::Stable;
        group.pending_sync.clear();
        group.sync_deadline = None;
        self.completions.extend(answers);
    }

    /// Handles a Heartbeat: keeps the member's session; `RebalanceInProgress` tells it to
    /// rejoin.
    pub fn handle_heartbeat(
        &mut self,
        now: Instant,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ClassicError> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Err(unknown_member(group_id, member_id));
        };
        check_member(group_id, group, member_id, instance_id)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .expect("check_member found the member");
        member.last_heartbeat = now;
        // Kafka's order: a member of a rebalancing group is told to rejoin whatever
        // generation it names (it may be the old one, which is what rejoining fixes).
        if state == ClassicState::PreparingRebalance {
            return Err(ClassicError::RebalanceInProgress(group_id.to_string()));
        }
        if generation != current {
            return Err(ClassicError::IllegalGeneration {
                group_id: group_id.to_string(),
                current,
                received: generation,
            });
        }
        Ok(())
    }

    /// Handles a LeaveGroup for a batch of members (one before v3); answers per member.
    pub fn handle_leave(
        &mut self,
        now: Instant,
        group_id: &str,
        leaving: &[LeavingMember],
    ) -> Result<Vec<Result<String, ClassicError>>, ClassicError> {
        if !self.groups.contains_key(group_id) {
            return Err(unknown_member(
                group_id,
                leaving
                    .first()
                    .map_or("", |member| member.member_id.as_str()),
            ));
        }
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed_any = false;
        for member in leaving {
            let group = self.group_mut(group_id);
            let resolved = match &member.instance_id {
                Some(instance_id) => match group.member_by_instance(instance_id) {
                    Some(found) if member.member_id.is_empty() || *found == member.member_id => {
                        Ok(found.clone())
                    }
                    Some(_) => Err(ClassicError::FencedInstanceId {
                        group_id: group_id.to_string(),
                        instance_id: instance_id.clone(),
                    }),
                    None => Err(unknown_member(group_id, &member.member_id)),
                },
                None if group.pending_members.remove(&member.member_id).is_some() => {
                    results.push(Ok(member.member_id.clone()));
                    removed_any = true;
                    continue;
                }
                None if group.members.contains_key(&member.member_id) => {
                    Ok(member.member_id.clone())
                }
                None => Err(unknown_member(group_id, &member.member_id)),
            };
            if let Ok(member_id) = &resolved {
                self.remove_member(group_id, member_id);
                removed_any = true;
            }
            results.push(resolved);
        }
        if removed_any {
            self.rebalance_after_removal(now, group_id);
        }
        Ok(results)
    }

    /// Removes a member; its held answers are told it is gone.
    fn remove_member(&mut self, group_id: &str, member_id: &str) {
        let group = self.group_mut(group_id);
        let Some(member) = group.members.remove(member_id) else {
            return;
        };
        group.pending_sync.remove(member_id);
        if group.leader.as_deref() == Some(member_id) {
            group.leader = None;
        }
        let gone = unknown_member(group_id, member_id);
        if let Some(waiting) = member.awaiting_join {
            self.completions
                .push_back(Completion::Join(waiting, Err(gone.clone())));
        }
        if let Some(waiting) = member.awaiting_sync {
            self.completions
                .push_back(Completion::Sync(waiting, Err(gone)));
        }
    }

    /// After members left or expired: a settled group rebalances; a rebalancing one may now
    /// have every remaining member rejoined.
    fn rebalance_after_removal(&mut self, now: Instant, group_id: &str) {
        let group = self.group_mut(group_id);
        match group.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                if group.members.is_empty() {
                    // Nobody is left to rejoin: Kafka bumps the generation to an empty one.
                    self.prepare_rebalance(now, group_id);
                    self.complete_join(now, group_id);
                } else {
                    self.prepare_rebalance(now, group_id);
                }
            }
            ClassicState::PreparingRebalance => {
                if group.members.is_empty() && group.pending_members.is_empty() {
                    self.complete_join(now, group_id);
                }
            }
            ClassicState::Empty => {}
        }
        self.maybe_complete_join(now, group_id);
    }

    /// Applies every deadline that has passed: sessions, member ids never used, the end of a
    /// join phase, members that did not sync in time. Returns the (group, member) pairs
    /// removed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(String, String)> {
        let mut removed = Vec::new();
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let group = self.group_mut(&group_id);
            group.pending_members.retain(|_, deadline| now < *deadline);
            let mut expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| member.session_deadline().is_some_and(|at| now >= at))
                .map(|(id, _)| id.clone())
                .collect();
            if group.sync_deadline.is_some_and(|at| now >= at) {
                // Members that got their join answer but never synced: a slow leader or a
                // dead follower must not hold the group in CompletingRebalance forever.
                expired.extend(group.pending_sync.iter().cloned());
                expired.sort();
                expired.dedup();
            }
            let join_phase_over = group.state == ClassicState::PreparingRebalance
                && group.rebalance_deadline.is_some_and(|at| now >= at);
            for member_id in &expired {
                self.remove_member(&group_id, member_id);
                removed.push((group_id.clone(), member_id.clone()));
            }
            if !expired.is_empty() {
                self.rebalance_after_removal(now, &group_id);
            }
            if join_phase_over
                && self.group_mut(&group_id).state == ClassicState::PreparingRebalance
            {
                for member_id in self
                    .group_mut(&group_id)
                    .members
                    .iter()
                    .filter(|(_, member)| member.awaiting_join.is_none())
                    .map(|(id, _)| id.clone())
                {
                    removed.push((group_id.clone(), member_id));
                }
                self.complete_join(now, &group_id);
            }
            self.maybe_complete_join(now, &group_id);
        }
        removed
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|group| {
                group
                    .members
                    .values()
                    .filter_map(Member::session_deadline)
                    .chain(group.pending_members.values().copied())
                    .chain(group.rebalance_deadline)
                    .chain(group.sync_deadline)
            })
            .min()
    }

    /// The next held answer now due, if any.
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }

    /// Kafka's classic `validateOffsetCommit`. A commit with generation < 0 and no member
    /// comes from a client outside group management (a "simple" consumer, or an admin
    /// reset) and is allowed while the group has no members. Otherwise the member must be
    /// in the group with its current generation; during `CompletingRebalance` the member
    /// is told to finish the rebalance first. A commit during `PreparingRebalance` with the
    /// previous generation is allowed: eager consumers commit while giving partitions up.
    pub fn validate_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ClassicError> {
        check_group_id(group_id)?;
        let Some(group) = self.groups.get(group_id) else {
            if generation < 0 && member_id.is_empty() {
                return Ok(());
            }
            return Err(ClassicError::IllegalGeneration {
                group_id: group_id.to_string(),
                current: -1,
                received: generation,
            });
        };
        if generation < 0 && group.state == ClassicState::Empty {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            check_member(group_id, group, member_id, instance_id)?;
            if generation != group.generation {
                return Err(ClassicError::IllegalGeneration {
                    group_id: group_id.to_string(),
                    current: group.generation,
                    received: generation,
                });
            }
        } else if group.state != ClassicState::Empty {
            return Err(unknown_member(group_id, member_id));
        }
        if group.state == ClassicState::CompletingRebalance {
            return Err(ClassicError::RebalanceInProgress(group_id.to_string()));
        }
        Ok(())
    }

    /// Each member's metadata for its most preferred protocol (what a consumer subscribes
    /// to, whether or not a generation has selected a protocol yet).
    pub fn member_metadata(&self, group_id: &str) -> Vec<Bytes> {
        self.groups
            .get(group_id)
            .map(|group| {
                group
                    .members
                    .values()
                    .filter_map(|member| {
                        member
                            .protocols
                            .first()
                            .map(|(_, metadata)| metadata.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the group has members (or member ids handed out and not yet used).
    pub fn has_members(&self, group_id: &str) -> bool {
        self.groups
            .get(group_id)
            .is_some_and(|group| !group.members.is_empty() || !group.pending_members.is_empty())
    }

    /// Whether a classic group of this id exists (with or without members).
    pub fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether `member_id` is a member of classic group `group_id`.
    pub fn is_member(&self, group_id: &str, member_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|group| {
            group.members.contains_key(member_id) || group.pending_members.contains_key(member_id)
        })
    }

    /// Every classic group: (id, state, protocol type, member count).
    pub fn list(&self) -> Vec<(String, ClassicState, String, usize)> {
        self.groups
            .iter()
            .map(|(id, group)| {
                (
                    id.clone(),
                    group.state,
                    group.protocol_type.clone().unwrap_or_default(),
                    group.members.len(),
                )
            })
            .collect()
    }

    /// Describes a group (`None` if there is no classic group of this id).
    pub fn describe(&self, group_id: &str) -> Option<ClassicGroupDescription> {
        let group = self.groups.get(group_id)?;
        let protocol_name = group.protocol_name.clone().unwrap_or_default();
        Some(ClassicGroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: protocol_name.clone(),
            generation: group.generation,
            members: group
                .members
                .iter()
                .map(|(id, member)| ClassicMemberDescription {
                    member_id: id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    metadata: member.metadata(&protocol_name),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Forgets an empty group (its offsets are deleted by the caller).
    pub fn delete(&mut self, group_id: &str) -> Result<(), ClassicError> {
        if self.has_members(group_id) {
            return Err(ClassicError::NonEmptyGroup(group_id.to_string()));
        }
        self.groups.remove(group_id);
        Ok(())
    }

    /// Forgets every group `unloaded` selects (this node no longer coordinates them); held
    /// answers are told to find the coordinator again. Returns how many groups.
    pub fn unload(&mut self, mut unloaded: impl FnMut(&str) -> bool) -> usize {
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|id| unloaded(id))
            .cloned()
            .collect();
        for group_id in &gone {
            if let Some(group) = self.groups.remove(group_id) {
                for member in group.members.into_values() {
                    let error = ClassicError::GroupRemoved(group_id.clone());
                    if let Some(waiting) = member.awaiting_join {
                        self.completions
                            .push_back(Completion::Join(waiting, Err(error.clone())));
                    }
                    if let Some(waiting) = member.awaiting_sync {
                        self.completions
                            .push_back(Completion::Sync(waiting, Err(error)));
                    }
                }
            }
        }
        gone.len()
    }

    fn active_groups(&self) -> usize {
        self.groups
            .values()
            .filter(|group| !group.members.is_empty() || !group.pending_members.is_empty())
            .count()
    }

    fn group_mut(&mut self, group_id: &str) -> &mut Group {
        self.groups
            .get_mut(group_id)
            .expect("callers look the group up before changing it")
    }

    /// A group created by a join that failed before adding anyone is not kept.
    fn drop_if_unused(&mut self, group_id: &str) {
        if self.groups.get(group_id).is_some_and(|group| {
            group.members.is_empty() && group.pending_members.is_empty() && group.generation == 0
        }) {
            self.groups.remove(group_id);
        }
    }

    /// Checks the state machine's invariants; panics naming the broken one (tests).
    pub fn check_invariants(&self) {
        for (group_id, group) in &self.groups {
            if group.state == ClassicState::Empty {
                assert!(group.members.is_empty(), "{group_id}: Empty with members");
            }
            if let Some(leader) = &group.leader {
                assert!(
                    group.members.contains_key(leader),
                    "{group_id}: leader {leader} is not a member"
                );
            }
            for (member_id, member) in &group.members {
                if member.awaiting_join.is_some() {
                    assert_eq!(
                        group.state,
                        ClassicState::PreparingRebalance,
                        "{group_id}: {member_id} awaits a join answer outside PreparingRebalance"
                    );
                }
                if member.awaiting_sync.is_some() {
                    assert_eq!(
                        group.state,
                        ClassicState::CompletingRebalance,
                        "{group_id}: {member_id} awaits a sync answer outside CompletingRebalance"
                    );
                }
            }
            if matches!(
                group.state,
                ClassicState::CompletingRebalance | ClassicState::Stable
            ) {
                assert!(
                    group.protocol_name.is_some(),
                    "{group_id}: a generation without a protocol"
                );
                assert!(
                    group.leader.is_some(),
                    "{group_id}: a generation without a leader"
                );
            }
        }
    }
}

fn check_group_id(group_id: &str) -> Result<(), ClassicError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(ClassicError::InvalidGroupId(group_id.to_string()));
    }
    Ok(())
}

fn unknown_member(group_id: &str, member_id: &str) -> ClassicError {
    ClassicError::UnknownMember {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
    }
}

/// Kafka's `validateMember`: a static member's instance id must still map to this member id;
/// otherwise the member id must be in the group.
fn check_member(
    group_id: &str,
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), ClassicError> {
    if let Some(instance_id) = instance_id {
        match group.member_by_instance(instance_id) {
            Some(current) if current == member_id => return Ok(()),
            Some(_) => {
                return Err(ClassicError::FencedInstanceId {
                    group_id: group_id.to_string(),
                    instance_id: instance_id.to_string(),
                });
            }
            None => return Err(unknown_member(group_id, member_id)),
        }
    }
    if group.members.contains_key(member_id) {
        Ok(())
    } else {
        Err(unknown_member(group_id, member_id))
    }
}

/// The join answer of `member_id` in the group's current generation; the leader's lists
/// every member with its metadata for the selected protocol.
fn join_reply(group: &Group, member_id: &str) -> JoinReply {
    let protocol_name = group.protocol_name.clone().unwrap_or_default();
    let leader = group.leader.clone().unwrap_or_default();
    let members = if leader == member_id {
        group
            .members
            .iter()
            .map(|(id, member)| {
                (
                    id.clone(),
                    member.instance_id.clone(),
                    member.metadata(&protocol_name),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinReply {
        generation: group.generation,
        protocol_type: group.protocol_type.clone().unwrap_or_default(),
        protocol_name,
        leader,
        member_id: member_id.to_string(),
        members,
    }
}

#[cfg(test)]
mod tests;
