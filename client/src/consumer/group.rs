//! Consumer-group membership: the heartbeat task, the state it shares with the consumer, the
//! rebalance listener, and the offset commit and fetch requests.
//!
//! The work is split in two so that the user's listener runs with the consumer in hand:
//!
//! - The heartbeat task (spawned by the first `poll` after `subscribe`) only talks to the
//!   node. It joins, heartbeats every interval with the partitions the consumer owns, and
//!   records the node's answer (the target assignment). It keeps the member alive while the
//!   user processes a batch, and leaves the group when the user has not polled within
//!   `max_poll_interval`. It never touches partitions or calls the user.
//! - `Consumer::poll` (on the user's task) compares what it owns with the target: it calls
//!   `on_partitions_revoked`, stops reading the revoked partitions, then wakes the heartbeat
//!   task so the node hears at once that they are free; then it takes the new partitions,
//!   calls `on_partitions_assigned` and starts them at their committed offsets. A partition is
//!   thus reported gone only after its records stopped flowing, so no two members read it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ledge_protocol::wire::{
    ApiKey, ConsumerGroupHeartbeatRequest, ErrorCode, OffsetCommitPartition, OffsetCommitRequest,
    OffsetCommitTopic, OffsetFetchRequest, Request, Response, TopicPartitions,
};
use tokio::sync::Notify;

use super::{Consumer, TopicPartition};
use crate::clock;
use crate::connection::{Client, unexpected};
use crate::error::{CommitError, ConsumeError, RequestError};

/// What a [`RebalanceListener`] method returns: a boxed future, so the listener can be a trait
/// object and still `await` (a commit, say).
pub type ListenerFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Told when the group moves partitions to or from this consumer (Kafka's
/// `ConsumerRebalanceListener`). Every method runs inside [`Consumer::poll`] (or
/// [`Consumer::close`]) with the consumer at hand, so it may commit, seek or read positions.
///
/// ```no_run
/// use ledge_client::{Consumer, ListenerFuture, RebalanceListener, TopicPartition};
///
/// struct CommitOnRevoke;
///
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_partitions_revoked<'a>(
///         &'a mut self,
///         consumer: &'a mut Consumer,
///         revoked: &'a [TopicPartition],
///     ) -> ListenerFuture<'a> {
///         Box::pin(async move {
///             println!("partitions revoked: {revoked:?}");
///             // Commit before the partitions move, so their next owner starts here.
///             if let Err(error) = consumer.commit().await {
///                 eprintln!("commit failed: {error}");
///             }
///         })
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync {
    /// Called before `revoked` are taken away (a member joined, or the subscription changed),
    /// while the consumer still owns them: commit here so their next owner starts where this
    /// one stopped. Their records stop flowing when this returns. Default: nothing.
    fn on_partitions_revoked<'a>(
        &'a mut self,
        consumer: &'a mut Consumer,
        revoked: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        let _ = (consumer, revoked);
        Box::pin(async {})
    }

    /// Called after `assigned` were added, before any of their records is returned: set up
    /// state, or `seek` to override the committed offset. Default: nothing.
    fn on_partitions_assigned<'a>(
        &'a mut self,
        consumer: &'a mut Consumer,
        assigned: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        let _ = (consumer, assigned);
        Box::pin(async {})
    }

    /// Called when `lost` were already taken away without a revocation: the member was
    /// removed (session timeout, `max_poll_interval`, a fenced epoch). Another member may
    /// already read them, so a commit here fails. Default: `on_partitions_revoked`, as in
    /// Kafka.
    fn on_partitions_lost<'a>(
        &'a mut self,
        consumer: &'a mut Consumer,
        lost: &'a [TopicPartition],
    ) -> ListenerFuture<'a> {
        self.on_partitions_revoked(consumer, lost)
    }
}

/// An offset to commit, with metadata stored beside it (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset to consume (one past the last processed record).
    pub offset: i64,
    /// Free-form text stored with the offset.
    pub metadata: String,
}

impl OffsetAndMetadata {
    /// `offset` with empty metadata.
    pub fn new(offset: i64) -> Self {
        Self {
            offset,
            metadata: String::new(),
        }
    }

    /// `offset` with `metadata`.
    pub fn with_metadata(offset: i64, metadata: impl Into<String>) -> Self {
        Self {
            offset,
            metadata: metadata.into(),
        }
    }
}

/// A committed offset as read back from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Metadata committed with it.
    pub metadata: String,
    /// When it was committed, milliseconds since the Unix epoch.
    pub commit_time_ms: i64,
}

/// What a member subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscription {
    Topics(Vec<String>),
    Pattern(String),
}

/// Membership settings, fixed at subscribe time (from `ConsumerConfig`).
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub(crate) group_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) assignor: String,
    pub(crate) session_timeout: Duration,
    pub(crate) max_poll_interval: Duration,
    pub(crate) heartbeat_interval: Option<Duration>,
}

/// State shared by the consumer and its heartbeat task, under one short-held lock.
#[derive(Debug)]
pub(crate) struct Membership {
    pub(crate) subscription: Subscription,
    /// Empty until the node gave one (and again after the member was removed).
    pub(crate) member_id: String,
    /// The epoch of the latest assignment the node sent.
    pub(crate) member_epoch: i32,
    /// The id and epoch the member had when it was removed, until it rejoins: commits carry
    /// them so the node refuses them (`UnknownMemberId`). With an empty member id they would be
    /// administrative commits, which the node takes while the group is empty.
    pub(crate) removed_as: Option<(String, i32)>,
    /// The node's latest answer: every partition this member should own.
    pub(crate) target: BTreeSet<TopicPartition>,
    /// What the consumer owns now (what the next heartbeat reports).
    pub(crate) owned: BTreeSet<TopicPartition>,
    /// The member was removed: the consumer must drop everything it owns (`on_partitions_lost`).
    pub(crate) lost: bool,
    /// A refusal retrying will not fix; every poll returns it until `subscribe` again.
    pub(crate) failure: Option<ConsumeError>,
    /// When the user last polled (for `max_poll_interval`).
    pub(crate) last_poll: Instant,
    /// The task left the group because the user did not poll in time; it rejoins once the
    /// consumer handled the loss.
    pub(crate) left_for_poll_timeout: bool,
    /// Set by `close`: the task stops after its current exchange.
    pub(crate) closing: bool,
    /// The interval the node asked for.
    pub(crate) heartbeat_interval: Duration,
}

/// The membership and the two wake-ups around it.
#[derive(Debug)]
pub(crate) struct GroupShared {
    state: Mutex<Membership>,
    /// Wakes the heartbeat task early (a revocation finished, a poll after a poll timeout,
    /// close).
    pub(crate) wake_heartbeat: Notify,
    /// Wakes a waiting `poll` when the target, the loss flag or the failure changed.
    pub(crate) changed: Notify,
}

impl GroupShared {
    pub(crate) fn new(subscription: Subscription) -> Self {
        Self {
            state: Mutex::new(Membership {
                subscription,
                member_id: String::new(),
                member_epoch: 0,
                removed_as: None,
                target: BTreeSet::new(),
                owned: BTreeSet::new(),
                lost: false,
                failure: None,
                last_poll: clock::now(),
                left_for_poll_timeout: false,
                closing: false,
                heartbeat_interval: HEARTBEAT_INTERVAL_FALLBACK,
            }),
            wake_heartbeat: Notify::new(),
            changed: Notify::new(),
        }
    }

    /// The state; a panic elsewhere while holding the lock cannot leave it half-written (every
    /// writer sets whole fields), so a poisoned lock is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Membership> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Interval until the node's first answer says otherwise (the node's default).
const HEARTBEAT_INTERVAL_FALLBACK: Duration = Duration::from_secs(1);
/// First wait after a retriable heartbeat failure; doubles up to the heartbeat interval.
const HEARTBEAT_RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);

/// The heartbeat task: joins, keeps the member alive, records assignments, leaves on a poll
/// timeout. Ends when the consumer closes or on a failure retrying will not fix.
pub(crate) async fn run_heartbeats(
    client: Client,
    settings: GroupSettings,
    shared: Arc<GroupShared>,
) {
    let mut backoff = HEARTBEAT_RETRY_BACKOFF_MIN;
    loop {
        let next = {
            let mut state = shared.lock();
            if state.closing {
                return;
            }
            if state.left_for_poll_timeout {
                None
            } else {
                Some(next_request(&settings, &mut state))
            }
        };
        let Some((request, leaving_for_poll_timeout)) = next else {
            // Out of the group until the user polls again.
            shared.wake_heartbeat.notified().await;
            continue;
        };
        let result = match client.group_request(&settings.group_id, &request).await {
            Ok(Response::ConsumerGroupHeartbeat(response)) => Ok(response),
            Ok(other) => Err(unexpected(ApiKey::ConsumerGroupHeartbeat, &other)),
            Err(error) => Err(error),
        };
        if leaving_for_poll_timeout {
            // Whatever the answer, the partitions are no longer this member's to read.
            let mut state = shared.lock();
            forget_membership(&mut state);
            drop(state);
            shared.changed.notify_one();
            continue;
        }
        let wait = match result {
            Ok(response) if response.error == ErrorCode::None => {
                backoff = HEARTBEAT_RETRY_BACKOFF_MIN;
                let target = flatten(&response.assignment);
                let mut state = shared.lock();
                if state.closing {
                    return;
                }
                let joined = state.member_id != response.member_id;
                state.member_id = response.member_id;
                state.member_epoch = response.member_epoch;
                state.heartbeat_interval =
                    Duration::from_millis(u64::from(response.heartbeat_interval_ms.max(1)));
                let changed = joined || state.target != target;
                state.target = target;
                let interval = settings
                    .heartbeat_interval
                    .unwrap_or(state.heartbeat_interval);
                drop(state);
                if changed {
                    shared.changed.notify_one();
                }
                interval
            }
            Ok(response)
                if matches!(
                    response.error,
                    ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch
                ) =>
            {
                tracing::info!(
                    group_id = %settings.group_id,
                    code = %response.error,
                    message = %response.message,
                    "member removed from the group or fenced; rejoining"
                );
                let mut state = shared.lock();
                handle_refused_membership(&mut state, response.error);
                drop(state);
                shared.changed.notify_one();
                Duration::ZERO
            }
            Ok(response) if response.error.is_retriable() => {
                tracing::debug!(code = %response.error, "heartbeat refused; retrying");
                next_backoff(&mut backoff)
            }
            Ok(response) => {
                fail(
                    &shared,
                    ConsumeError::Group {
                        group_id: settings.group_id.clone(),
                        code: response.error,
                        message: response.message,
                    },
                );
                return;
            }
            Err(error) if error.is_retriable() => {
                tracing::debug!(%error, "heartbeat failed; retrying");
                next_backoff(&mut backoff)
            }
            Err(error) => {
                fail(&shared, ConsumeError::Request(error));
                return;
            }
        };
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shared.wake_heartbeat.notified() => {}
            }
        }
    }
}

/// The next heartbeat, or a leave when the user has not polled within `max_poll_interval`
/// (then `true`).
fn next_request(settings: &GroupSettings, state: &mut Membership) -> (Request, bool) {
    let overdue =
        clock::now().saturating_duration_since(state.last_poll) > settings.max_poll_interval;
    if overdue && !state.member_id.is_empty() {
        tracing::warn!(
            group_id = %settings.group_id,
            max_poll_interval = ?settings.max_poll_interval,
            "no poll within max_poll_interval; leaving the group so its partitions move \
             (the next poll rejoins)"
        );
        state.left_for_poll_timeout = true;
        (heartbeat_request(settings, state, LEAVE_EPOCH), true)
    } else {
        let epoch = state.member_epoch;
        (heartbeat_request(settings, state, epoch), false)
    }
}

/// The leave epoch: the member is removed and its partitions move at once.
pub(crate) const LEAVE_EPOCH: i32 = -1;
/// The static leave epoch: a member with a `group_instance_id` keeps its partitions for its
/// session timeout, and a restart with the same instance id takes them back without a
/// rebalance.
pub(crate) const LEAVE_STATIC_EPOCH: i32 = -2;

pub(crate) fn heartbeat_request(
    settings: &GroupSettings,
    state: &Membership,
    member_epoch: i32,
) -> Request {
    let (subscribed_topics, subscribed_pattern) = match &state.subscription {
        Subscription::Topics(topics) => (topics.clone(), None),
        Subscription::Pattern(pattern) => (Vec::new(), Some(pattern.clone())),
    };
    Request::ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest {
        group_id: settings.group_id.clone(),
        member_id: state.member_id.clone(),
        member_epoch,
        instance_id: settings.instance_id.clone(),
        rebalance_timeout_ms: millis(settings.max_poll_interval),
        session_timeout_ms: millis(settings.session_timeout),
        subscribed_topics,
        subscribed_pattern,
        assignor: settings.assignor.clone(),
        owned_partitions: grouped(&state.owned),
    })
}

impl Membership {
    /// The member id and epoch to commit with: the current ones, or those the member had when
    /// it was removed (so the node refuses the commit); empty before the first join.
    pub(crate) fn commit_identity(&self) -> (String, i32) {
        match &self.removed_as {
            Some((member_id, member_epoch)) if self.member_id.is_empty() => {
                (member_id.clone(), *member_epoch)
            }
            _ => (self.member_id.clone(), self.member_epoch),
        }
    }
}

/// The node refused the member's heartbeat: `UnknownMemberId` (it is gone) or
/// `FencedMemberEpoch` (its epoch is not the node's: newer, or older than its previous one, or
/// its previous one while it owns more than it is assigned). Either way what it owns is lost.
/// A fenced member is still known to the node, so it rejoins under the same id at epoch 0 as
/// Kafka's consumer does: the node takes it back at once (a new member would wait while the
/// old place held its partitions until its session timeout). A gone member joins afresh.
pub(crate) fn handle_refused_membership(state: &mut Membership, code: ErrorCode) {
    if code == ErrorCode::FencedMemberEpoch && !state.member_id.is_empty() {
        state.member_epoch = 0;
        state.target.clear();
        state.lost = true;
    } else {
        forget_membership(state);
    }
}

/// After the member was removed: nothing is the member's any more; join again from scratch.
pub(crate) fn forget_membership(state: &mut Membership) {
    if !state.member_id.is_empty() {
        state.removed_as = Some((std::mem::take(&mut state.member_id), state.member_epoch));
    }
    state.member_id.clear();
    state.member_epoch = 0;
    state.target.clear();
    state.lost = true;
}

fn fail(shared: &GroupShared, error: ConsumeError) {
    // Debug, not warn: the caller's next poll returns the error, and a warning as well would
    // tell it twice (the CLI printed a refused session timeout twice).
    tracing::debug!(%error, "consumer group membership failed");
    let mut state = shared.lock();
    state.failure = Some(error);
    state.target.clear();
    drop(state);
    shared.changed.notify_one();
}

fn next_backoff(backoff: &mut Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(HEARTBEAT_INTERVAL_FALLBACK);
    wait
}

fn millis(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

pub(crate) fn flatten(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| TopicPartition::new(topic.topic.clone(), *partition))
        })
        .collect()
}

pub(crate) fn grouped<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<TopicPartitions> {
    let mut topics: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        topics
            .entry(partition.topic.as_str())
            .or_default()
            .push(partition.partition);
    }
    topics
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_unstable();
            TopicPartitions {
                topic: topic.to_string(),
                partitions,
            }
        })
        .collect()
}

/// Commits `offsets` for `group_id` as member `member_id` at `member_epoch` (an empty member id
/// is an administrative commit). Sent once: a commit is not repeated behind the caller's back,
/// since a newer one may have been sent meanwhile.
pub(crate) async fn commit_offsets(
    client: &Client,
    group_id: &str,
    member_id: &str,
    member_epoch: i32,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
) -> Result<(), CommitError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut topics: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
    for (partition, offset) in offsets {
        topics
            .entry(partition.topic.as_str())
            .or_default()
            .push(OffsetCommitPartition {
                partition: partition.partition,
                offset: offset.offset,
                metadata: offset.metadata.clone(),
            });
    }
    let request = Request::OffsetCommit(OffsetCommitRequest {
        group_id: group_id.to_string(),
        member_id: member_id.to_string(),
        member_epoch,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| OffsetCommitTopic {
                name: name.to_string(),
                partitions,
            })
            .collect(),
    });
    let response = match client.group_request(group_id, &request).await? {
        Response::OffsetCommit(response) => response,
        other => return Err(unexpected(ApiKey::OffsetCommit, &other).into()),
    };
    if response.error != ErrorCode::None {
        return Err(CommitError::Group {
            group_id: group_id.to_string(),
            code: response.error,
            message: response.message,
        });
    }
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.error != ErrorCode::None {
                return Err(CommitError::Partition {
                    topic: topic.name,
                    partition: partition.partition,
                    code: partition.error,
                });
            }
        }
    }
    Ok(())
}

/// The committed offsets of `group_id` for `partitions` (every committed one when `None`).
/// Partitions without a committed offset are absent from the answer.
pub(crate) async fn fetch_committed(
    client: &Client,
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, CommittedOffset>, CommitError> {
    let request = Request::OffsetFetch(OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics: partitions.map(grouped),
    });
    let response = match client.group_request(group_id, &request).await? {
        Response::OffsetFetch(response) => response,
        other => return Err(unexpected(ApiKey::OffsetFetch, &other).into()),
    };
    if response.error != ErrorCode::None {
        return Err(CommitError::Group {
            group_id: group_id.to_string(),
            code: response.error,
            message: response.message,
        });
    }
    let mut committed = BTreeMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            if let Some(offset) = partition.offset {
                committed.insert(
                    TopicPartition::new(topic.name.clone(), partition.partition),
                    CommittedOffset {
                        offset,
                        metadata: partition.metadata,
                        commit_time_ms: partition.commit_time_ms,
                    },
                );
            }
        }
    }
    Ok(committed)
}

/// Sends one leave heartbeat (`epoch` -1 or -2), bounded by the request timeout.
pub(crate) async fn leave(
    client: &Client,
    group_id: &str,
    request: &Request,
) -> Result<(), RequestError> {
    match client.group_request(group_id, request).await? {
        Response::ConsumerGroupHeartbeat(response) => {
            if response.error != ErrorCode::None && response.error != ErrorCode::UnknownMemberId {
                tracing::debug!(code = %response.error, "leave refused");
            }
            Ok(())
        }
        other => Err(unexpected(ApiKey::ConsumerGroupHeartbeat, &other)),
    }
}
