//! The consumer: reads partitions it names itself ([`Consumer::assign`]) or that its group gives
//! it ([`Consumer::subscribe`]; membership, heartbeats and commits are in `group.rs`).
//!
//! Owns: the assignment, each partition's position (the next offset [`Consumer::poll`] hands
//! out) and fetch offset (the next offset to ask the node for), records fetched but not yet
//! handed out, and at most one fetch in flight. Invariant per partition: buffered records
//! have offsets in `position..fetch_offset`, ascending.
//!
//! A fetch returns whole batches, the first one containing the fetch offset, so a batch may
//! start before it: records below the fetch offset are skipped. Every batch's CRC is checked
//! and compressed batches are decompressed here. While the caller works through the records
//! of one fetch, the next one is already on its way (prefetch).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_core::Stream;
use ledge_protocol::wire::{
    ApiKey, ErrorCode, FetchPartition, FetchRequest, FetchResponse, FetchTopic, OffsetSpec,
    Request, Response,
};
use ledge_protocol::{BatchError, BatchIter, DecodeLimits, Header, decode_batch};
use tokio::task::JoinHandle;

use crate::admin::{ListedOffset, list_offsets};
use crate::clock;
use crate::connection::{Client, unexpected};
use crate::error::{CommitError, ConsumeError, RequestError};

mod group;

pub use group::{CommittedOffset, ListenerFuture, OffsetAndMetadata, RebalanceListener};
use group::{GroupSettings, GroupShared, Subscription};
pub(crate) use group::{commit_offsets, fetch_committed, flatten};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.topic, self.partition)
    }
}

/// Where to start reading a partition that has no position yet, or whose position fell out of
/// the log (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start offset: read everything still stored.
    Earliest,
    /// The high watermark: read only records written from now on (Kafka's default).
    #[default]
    Latest,
    /// No default: fail with [`ConsumeError::NoOffsetForPartition`] (or
    /// [`ConsumeError::OffsetOutOfRange`]) until the caller seeks.
    None,
}

/// Consumer settings. Defaults follow Kafka's Java consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Where to start without a position. Default [`OffsetReset::Latest`].
    pub auto_offset_reset: OffsetReset,
    /// The node answers a fetch as soon as this many bytes are available. Default 1.
    pub fetch_min_bytes: u32,
    /// Most bytes in one fetch answer (the node always returns at least one batch). Default
    /// 50 MiB; it must stay below the client's `frame_bytes_max`.
    pub fetch_max_bytes: u32,
    /// Longest the node holds a fetch waiting for `fetch_min_bytes`. Default 500 ms.
    pub fetch_max_wait: Duration,
    /// Most bytes per partition in one fetch answer. Default 1 MiB.
    pub max_partition_fetch_bytes: u32,
    /// Start the next fetch while the caller works through the records of the last one.
    /// Default on.
    pub prefetch: bool,
    /// Bounds on decoding one fetched batch (decompressed size, records, headers).
    pub decode_limits: DecodeLimits,
    /// The consumer group (Kafka's `group.id`): needed by [`Consumer::subscribe`] and by
    /// commits. Default none.
    pub group_id: Option<String>,
    /// Static membership (`group.instance.id`): a member that closes and comes back with the
    /// same id within `session_timeout` gets its partitions back without a rebalance.
    /// Default none.
    pub group_instance_id: Option<String>,
    /// Commit the positions of owned partitions every `auto_commit_interval` (during `poll`),
    /// before partitions are revoked, and on `close`. Default on (Kafka's default).
    pub enable_auto_commit: bool,
    /// How often auto-commit commits. Default 5 s.
    pub auto_commit_interval: Duration,
    /// The node removes a member it has not heard from for this long, and gives its
    /// partitions to the others. The node accepts 1 s to 5 min by default. Default 45 s
    /// (Kafka's).
    pub session_timeout: Duration,
    /// How often the member heartbeats; `None` follows the node (1 s by default). Keep it
    /// well below `session_timeout`. Default none.
    pub heartbeat_interval: Option<Duration>,
    /// Longest time between two polls: past it the member leaves the group (its partitions
    /// move to others) and rejoins on the next poll. Also the time the node allows the member
    /// to give up revoked partitions. Default 5 min (Kafka's).
    pub max_poll_interval: Duration,
    /// How the node spreads partitions over members: `range`, `round-robin` or
    /// `cooperative-sticky` (only partitions that move are revoked). Every member of a group
    /// must use the same. Default [`ASSIGNOR_DEFAULT`].
    pub assignor: String,
    /// A named filter, map or filter_map module the node runs on every record before
    /// sending it (`ledge module upload`): records it drops never cross the network, and
    /// positions still advance past them. Default none.
    pub fetch_plugin: Option<FetchPlugin>,
}

/// A node-side plug-in for fetches: a module name and parameters overriding its defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPlugin {
    /// The module's name on the node.
    pub module: String,
    /// `(name, value)` parameters; the module parses each value into its parameter type.
    pub params: Vec<(String, String)>,
}

impl FetchPlugin {
    /// A plug-in with no parameter overrides.
    pub fn new(module: impl Into<String>) -> Self {
        Self {
            module: module.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }
}

/// Default [`ConsumerConfig::assignor`]: rebalances revoke only the partitions that move.
pub const ASSIGNOR_DEFAULT: &str = "cooperative-sticky";
/// Default [`ConsumerConfig::auto_commit_interval`].
pub const AUTO_COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5);
/// Default [`ConsumerConfig::session_timeout`].
pub const SESSION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(45);
/// Default [`ConsumerConfig::max_poll_interval`].
pub const MAX_POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(300);

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            auto_offset_reset: OffsetReset::Latest,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            prefetch: true,
            decode_limits: DecodeLimits::default(),
            group_id: None,
            group_instance_id: None,
            enable_auto_commit: true,
            auto_commit_interval: AUTO_COMMIT_INTERVAL_DEFAULT,
            session_timeout: SESSION_TIMEOUT_DEFAULT,
            heartbeat_interval: None,
            max_poll_interval: MAX_POLL_INTERVAL_DEFAULT,
            assignor: ASSIGNOR_DEFAULT.to_string(),
            fetch_plugin: None,
        }
    }
}

/// A record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic (shared by every record of the topic; no allocation per record).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch: the producer's time, or the node's append time for
    /// topics that use log-append time.
    pub timestamp: i64,
    /// Key; `None` is null.
    pub key: Option<Bytes>,
    /// Value; `None` is null (a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order; keys may repeat.
    pub headers: Vec<Header>,
}

/// An offset and the timestamp of the record there, from [`Consumer::offsets_for_times`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The first offset whose timestamp is at or after the one asked for.
    pub offset: i64,
    /// That record's timestamp.
    pub timestamp: i64,
}

/// Reads records from partitions it is assigned by hand ([`Consumer::assign`]) or by its
/// group ([`Consumer::subscribe`]).
///
/// In a group, heartbeats run in a background task, so the member stays in the group while
/// the caller works through a batch (up to `max_poll_interval`); partitions move only inside
/// [`Consumer::poll`], where the [`RebalanceListener`] is called. Call [`Consumer::close`] when
/// done: it commits (with auto-commit) and leaves at once, so the partitions move without
/// waiting for the session timeout. A consumer dropped without `close` stops heartbeating and
/// is removed after its session timeout.
///
/// ```no_run
/// # async fn example(client: ledge_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ledge_client::{Consumer, ConsumerConfig, OffsetReset, TopicPartition};
///
/// let mut config = ConsumerConfig::default();
/// config.auto_offset_reset = OffsetReset::Earliest;
/// let mut consumer = Consumer::new(&client, config);
/// consumer.assign(vec![TopicPartition::new("orders", 0)]);
/// for record in consumer.poll(Duration::from_secs(1), 100).await? {
///     println!("{}: {:?}", record.offset, record.value);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    topic_names: HashMap<String, Arc<str>>,
    fetch: Option<InFlightFetch>,
    /// Where the next `poll` starts handing out records, so no partition starves.
    next_partition: usize,
    /// Set by `subscribe`.
    group: Option<GroupMember>,
    /// Partitions named by `assign` (which `subscribe` then refuses).
    manually_assigned: bool,
    /// A misuse found by a call that cannot fail (`assign` while subscribed), reported by the
    /// next `poll`.
    misuse: Option<ConsumeError>,
    listener: Option<Box<dyn RebalanceListener>>,
    /// The latest `commit_async`; the next commit waits for it so commits land in order.
    async_commit: Option<JoinHandle<()>>,
    last_auto_commit: Instant,
    /// The throttle time of the last fetch answer absorbed (the longest of its nodes').
    fetch_throttle_time: Duration,
}

/// The group side of a subscribed consumer.
struct GroupMember {
    settings: GroupSettings,
    shared: Arc<GroupShared>,
    /// The heartbeat task; started by the first poll.
    heartbeats: Option<JoinHandle<()>>,
}

/// Which listener method to call.
#[derive(Clone, Copy)]
enum RebalanceEvent {
    Revoked,
    Assigned,
    Lost,
}

/// A [`Consumer::commit_async`] in flight: await it for the outcome, or drop it (the commit
/// still happens).
#[derive(Debug)]
pub struct PendingCommit {
    receiver: tokio::sync::oneshot::Receiver<Result<(), CommitError>>,
}

impl Future for PendingCommit {
    type Output = Result<(), CommitError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.receiver)
            .poll(context)
            .map(|result| result.unwrap_or(Err(CommitError::Cancelled)))
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("assignment", &self.partitions.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct PartitionState {
    topic: Arc<str>,
    position: Option<i64>,
    fetch_offset: i64,
    buffered: VecDeque<ConsumerRecord>,
}

struct InFlightFetch {
    handle: JoinHandle<Result<FetchResponse, RequestError>>,
    /// The fetch offset each partition was asked at; answers for partitions that moved since
    /// (a seek) are dropped.
    offsets: BTreeMap<TopicPartition, i64>,
}

/// How long `stream` waits in one poll before polling again.
const STREAM_POLL_INTERVAL: Duration = Duration::from_secs(1);

impl Consumer {
    /// A consumer with no assignment.
    pub fn new(client: &Client, config: ConsumerConfig) -> Self {
        Self {
            client: client.clone(),
            config,
            partitions: BTreeMap::new(),
            topic_names: HashMap::new(),
            fetch: None,
            next_partition: 0,
            group: None,
            manually_assigned: false,
            misuse: None,
            listener: None,
            async_commit: None,
            last_auto_commit: clock::now(),
            fetch_throttle_time: Duration::ZERO,
        }
    }

    /// How long the nodes throttled this consumer for going over its principal's
    /// `consumer_byte_rate` quota, from the last fetch answer `poll` read (the longest of
    /// the nodes it fetched from; Kafka's `fetch-throttle-time` metric); zero within the
    /// quota. The consumer waits this long before its next fetch from a throttling node.
    pub fn fetch_throttle_time(&self) -> Duration {
        self.fetch_throttle_time
    }

    /// Reads exactly these partitions from now on. Partitions kept from the last assignment
    /// keep their positions; new ones start per `auto_offset_reset` unless sought.
    ///
    /// A subscribed consumer cannot also be assigned partitions: the assignment is left as is
    /// and the next `poll` fails with [`ConsumeError::SubscriptionMixed`].
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) {
        if self.group.is_some() {
            self.misuse = Some(ConsumeError::SubscriptionMixed {
                current: "subscribed",
                attempted: "assign partitions",
            });
            return;
        }
        self.manually_assigned = !partitions.is_empty();
        self.set_partitions(partitions);
    }

    /// Joins `config.group_id` reading `topics`: the node assigns this member a share of
    /// their partitions, and moves them as members come and go. Partitions start at the
    /// group's committed offset, or per `auto_offset_reset` where it has none. Calling it again
    /// changes the subscription. Joining happens in the background from the first `poll`.
    pub fn subscribe(&mut self, topics: Vec<String>) -> Result<(), ConsumeError> {
        self.subscribe_to(Subscription::Topics(topics))
    }

    /// Like [`Consumer::subscribe`], for every topic (present or future, internal ones aside)
    /// whose whole name matches the regular expression `pattern` (Rust `regex` syntax).
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<(), ConsumeError> {
        self.subscribe_to(Subscription::Pattern(pattern.to_string()))
    }

    /// Calls `listener` when the group moves partitions to or from this consumer.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// The group member id the node gave this consumer; empty before it joined.
    pub fn member_id(&self) -> String {
        self.group
            .as_ref()
            .map(|group| group.shared.lock().member_id.clone())
            .unwrap_or_default()
    }

    /// Commits the position of every owned partition (the offset after the last record `poll`
    /// returned) and waits for the node to store it durably.
    pub async fn commit(&mut self) -> Result<(), CommitError> {
        let offsets = self.current_offsets(None);
        self.commit_offsets(offsets).await
    }

    /// Like [`Consumer::commit`], without waiting: the commit is sent in the background (after
    /// any earlier one, so commits land in order). Must be called within a tokio runtime.
    pub fn commit_async(&mut self) -> PendingCommit {
        let offsets = self.current_offsets(None);
        self.spawn_commit(offsets, false)
    }

    /// Commits the given offsets (the next offset to read in each partition, with metadata)
    /// and waits for the node to store them durably (Kafka's `commitSync(offsets)`).
    pub async fn commit_offsets(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<(), CommitError> {
        self.wait_async_commits().await;
        let (group_id, member_id, member_epoch) = self.commit_identity()?;
        commit_offsets(&self.client, &group_id, &member_id, member_epoch, &offsets).await
    }

    /// The group's committed offset for each of `partitions` (`None` where nothing is
    /// committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<CommittedOffset>>, CommitError> {
        let group_id = self.config.group_id.clone().ok_or(CommitError::NoGroupId)?;
        let mut found = fetch_committed(&self.client, &group_id, Some(partitions)).await?;
        Ok(partitions
            .iter()
            .map(|partition| (partition.clone(), found.remove(partition)))
            .collect())
    }

    /// Leaves the group at once (after committing, with auto-commit, and calling
    /// `on_partitions_revoked`), so the partitions move to other members without waiting for
    /// the session timeout. A static member (`group_instance_id`) leaves temporarily: its
    /// partitions wait for it for its session timeout. Returns the final commit's outcome;
    /// the leave itself is best effort (bounded by the request timeout).
    pub async fn close(mut self) -> Result<(), CommitError> {
        let mut result = Ok(());
        if self.config.enable_auto_commit && self.config.group_id.is_some() {
            let offsets = self.current_offsets(None);
            result = self.commit_offsets(offsets).await;
        }
        if let Some(mut group) = self.group.take() {
            let owned = self.assignment();
            let member_id = group.shared.lock().member_id.clone();
            if !owned.is_empty() && !member_id.is_empty() {
                // The listener may commit too; it needs the membership, so put it back.
                self.group = Some(group);
                self.call_listener(RebalanceEvent::Revoked, &owned).await;
                let Some(taken) = self.group.take() else {
                    return result;
                };
                group = taken;
            }
            self.wait_async_commits().await;
            self.cancel_fetch();
            group.shared.lock().closing = true;
            group.shared.wake_heartbeat.notify_one();
            if let Some(heartbeats) = group.heartbeats.take() {
                let limit = self.client.config().request_timeout;
                if tokio::time::timeout(limit, heartbeats).await.is_err() {
                    tracing::debug!("heartbeat task did not stop in time");
                }
            }
            let request = {
                let state = group.shared.lock();
                let epoch = if group.settings.instance_id.is_some() {
                    group::LEAVE_STATIC_EPOCH
                } else {
                    group::LEAVE_EPOCH
                };
                (!state.member_id.is_empty())
                    .then(|| group::heartbeat_request(&group.settings, &state, epoch))
            };
            if let Some(request) = request
                && let Err(error) =
                    group::leave(&self.client, &group.settings.group_id, &request).await
            {
                tracing::warn!(%error, "could not tell the node this member left; it is removed after its session timeout");
            }
        } else {
            self.wait_async_commits().await;
        }
        result
    }

    /// Replaces the assignment (manual or the group's).
    fn set_partitions(&mut self, partitions: Vec<TopicPartition>) {
        self.cancel_fetch();
        let mut kept = std::mem::take(&mut self.partitions);
        for partition in partitions {
            let state = kept.remove(&partition).unwrap_or_else(|| {
                let topic = self
                    .topic_names
                    .entry(partition.topic.clone())
                    .or_insert_with(|| Arc::from(partition.topic.as_str()))
                    .clone();
                PartitionState {
                    topic,
                    position: None,
                    fetch_offset: 0,
                    buffered: VecDeque::new(),
                }
            });
            self.partitions.insert(partition, state);
        }
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Reads `partition` from `offset` on the next poll.
    pub fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), ConsumeError> {
        let state = self
            .partitions
            .get_mut(partition)
            .ok_or_else(|| not_assigned(partition))?;
        state.position = Some(offset);
        state.fetch_offset = offset;
        state.buffered.clear();
        Ok(())
    }

    /// Moves each of `partitions` (all assigned ones if empty) to its log start offset.
    pub async fn seek_to_beginning(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), ConsumeError> {
        self.seek_to(partitions, OffsetSpec::Earliest).await
    }

    /// Moves each of `partitions` (all assigned ones if empty) to its high watermark.
    pub async fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), ConsumeError> {
        self.seek_to(partitions, OffsetSpec::Latest).await
    }

    /// The offset of the next record `poll` will return for `partition`, resolving it per
    /// `auto_offset_reset` if it has none yet.
    pub async fn position(&mut self, partition: &TopicPartition) -> Result<i64, ConsumeError> {
        let state = self
            .partitions
            .get(partition)
            .ok_or_else(|| not_assigned(partition))?;
        if let Some(position) = state.position {
            return Ok(position);
        }
        self.resolve_positions().await?;
        self.partitions
            .get(partition)
            .and_then(|state| state.position)
            .ok_or_else(|| not_assigned(partition))
    }

    /// For each partition, the first offset whose timestamp is at or after the given one
    /// (milliseconds since the Unix epoch); `None` when every record is older.
    pub async fn offsets_for_times(
        &self,
        timestamps: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndTimestamp>>, ConsumeError> {
        let specs = timestamps
            .into_iter()
            .map(|(partition, timestamp)| (partition, OffsetSpec::Timestamp(timestamp.max(0))))
            .collect();
        let listed = self.lookup(specs).await?;
        Ok(listed
            .into_iter()
            .map(|(partition, listed)| {
                let found = listed.offset.map(|offset| OffsetAndTimestamp {
                    offset,
                    timestamp: listed.timestamp.unwrap_or(-1),
                });
                (partition, found)
            })
            .collect())
    }

    /// The log start offset of each partition.
    pub async fn beginning_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        self.offsets(partitions, OffsetSpec::Earliest).await
    }

    /// The high watermark of each partition (consumer lag is this minus the position).
    pub async fn end_offsets(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        self.offsets(partitions, OffsetSpec::Latest).await
    }

    /// Returns up to `max_records` records from the assigned partitions, waiting up to
    /// `timeout` for some to arrive; an empty vector when none did. Retriable failures (a node
    /// restart) are retried within `timeout`.
    ///
    /// In a group, this is also where partitions move: revoked ones are given up (after
    /// `on_partitions_revoked`), new ones are taken (`on_partitions_assigned`), and auto-commit
    /// commits every `auto_commit_interval`.
    pub async fn poll(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        if let Some(misuse) = self.misuse.take() {
            return Err(misuse);
        }
        let Some(shared) = self.group.as_ref().map(|group| group.shared.clone()) else {
            self.maybe_auto_commit();
            return self.poll_assigned(timeout, max_records).await;
        };
        let deadline = clock::now() + timeout;
        // A poll longer than max_poll_interval is still polling: wait in slices, so each
        // turn of this loop (through `reconcile`) tells the heartbeat task the user is here.
        let slice_max = (self.config.max_poll_interval / 2).max(Duration::from_millis(10));
        loop {
            self.reconcile().await?;
            self.maybe_auto_commit();
            let remaining = deadline
                .saturating_duration_since(clock::now())
                .min(slice_max);
            if self.partitions.is_empty() {
                if remaining.is_zero() {
                    return Ok(Vec::new());
                }
                // Nothing to read until the node assigns something.
                tokio::select! {
                    () = shared.changed.notified() => {}
                    () = tokio::time::sleep(remaining) => {}
                }
                continue;
            }
            let records = tokio::select! {
                result = self.poll_assigned(remaining, max_records) => result?,
                // The assignment changed: reconcile before reading on.
                () = shared.changed.notified() => continue,
            };
            if !records.is_empty() || clock::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// `poll` over the current assignment, without group work.
    async fn poll_assigned(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        if self.partitions.is_empty() {
            return Err(ConsumeError::NoAssignment);
        }
        let deadline = clock::now() + timeout;
        let mut wait = Duration::from_millis(50);
        loop {
            if self
                .partitions
                .values()
                .any(|state| !state.buffered.is_empty())
            {
                let records = self.take_buffered(max_records.max(1));
                self.start_prefetch();
                return Ok(records);
            }
            if let Err(error) = self.resolve_positions().await {
                match error {
                    ConsumeError::Request(error) if error.is_retriable() => {
                        if !pause(deadline, &mut wait).await {
                            return Ok(Vec::new());
                        }
                        continue;
                    }
                    other => return Err(other),
                }
            }
            let remaining = deadline.saturating_duration_since(clock::now());
            if self.fetch.is_none() {
                self.start_fetch(remaining.min(self.config.fetch_max_wait));
            }
            let Some(fetch) = self.fetch.as_mut() else {
                return Ok(Vec::new());
            };
            let joined = match tokio::time::timeout(remaining, &mut fetch.handle).await {
                Ok(joined) => joined,
                // Keep the fetch for the next poll; its answer is still wanted.
                Err(_elapsed) => return Ok(Vec::new()),
            };
            let Some(fetch) = self.fetch.take() else {
                return Ok(Vec::new());
            };
            // Only an abort or a panic fails the join; the fetch is simply made again.
            let Ok(result) = joined else {
                continue;
            };
            match result {
                Ok(response) => self.absorb(response, &fetch.offsets)?,
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%error, "fetch failed; retrying");
                    if !pause(deadline, &mut wait).await {
                        return Ok(Vec::new());
                    }
                }
                Err(error) => return Err(error.into()),
            }
            if clock::now() >= deadline
                && self
                    .partitions
                    .values()
                    .all(|state| state.buffered.is_empty())
            {
                return Ok(Vec::new());
            }
        }
    }

    /// The records as a stream, one at a time, polling as needed. The stream ends after
    /// yielding an error (retriable failures are retried inside and never show up). Dropping
    /// it loses nothing: the position only moves past records the stream yielded.
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord, ConsumeError>> + '_ {
        futures_util::stream::unfold((self, false), |(consumer, failed)| async move {
            if failed {
                return None;
            }
            loop {
                match consumer.poll(STREAM_POLL_INTERVAL, 1).await {
                    Ok(mut records) => {
                        if let Some(record) = records.pop() {
                            return Some((Ok(record), (consumer, false)));
                        }
                    }
                    Err(error) => return Some((Err(error), (consumer, true))),
                }
            }
        })
    }

    fn subscribe_to(&mut self, subscription: Subscription) -> Result<(), ConsumeError> {
        let group_id = self
            .config
            .group_id
            .clone()
            .ok_or(ConsumeError::NoGroupId)?;
        if self.manually_assigned {
            return Err(ConsumeError::SubscriptionMixed {
                current: "manually assigned",
                attempted: "subscribe",
            });
        }
        if let Some(group) = &mut self.group {
            let mut state = group.shared.lock();
            state.subscription = subscription;
            state.failure = None;
            drop(state);
            // A task that ended on a failure starts again on the next poll.
            if group
                .heartbeats
                .as_ref()
                .is_some_and(JoinHandle::is_finished)
            {
                group.heartbeats = None;
            }
            group.shared.wake_heartbeat.notify_one();
            return Ok(());
        }
        let settings = GroupSettings {
            group_id,
            instance_id: self.config.group_instance_id.clone(),
            assignor: self.config.assignor.clone(),
            session_timeout: self.config.session_timeout,
            max_poll_interval: self.config.max_poll_interval,
            heartbeat_interval: self.config.heartbeat_interval,
        };
        self.group = Some(GroupMember {
            settings,
            shared: Arc::new(GroupShared::new(subscription)),
            heartbeats: None,
        });
        Ok(())
    }

    /// Brings the assignment in line with the group's target: handles a lost membership,
    /// revokes, then adds (see `group.rs` for why this runs here).
    async fn reconcile(&mut self) -> Result<(), ConsumeError> {
        let Some(group) = &mut self.group else {
            return Ok(());
        };
        if group.heartbeats.is_none() {
            group.heartbeats = Some(tokio::spawn(group::run_heartbeats(
                self.client.clone(),
                group.settings.clone(),
                group.shared.clone(),
            )));
        }
        let shared = group.shared.clone();
        let group_id = group.settings.group_id.clone();
        let (target, lost, failure, rejoin) = {
            let mut state = shared.lock();
            state.last_poll = clock::now();
            (
                state.target.clone(),
                std::mem::take(&mut state.lost),
                state.failure.clone(),
                state.left_for_poll_timeout,
            )
        };
        if let Some(failure) = failure {
            return Err(failure);
        }
        if lost {
            let owned = self.assignment();
            if !owned.is_empty() {
                self.drop_partitions(&owned);
                self.call_listener(RebalanceEvent::Lost, &owned).await;
            }
        }
        if rejoin {
            shared.lock().left_for_poll_timeout = false;
            shared.wake_heartbeat.notify_one();
        }
        let owned: BTreeSet<TopicPartition> = self.partitions.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&target).cloned().collect();
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                let offsets = self.current_offsets(Some(&revoked));
                if let Err(error) = self.commit_offsets(offsets).await {
                    tracing::warn!(%error, "auto-commit before revocation failed");
                }
            }
            self.call_listener(RebalanceEvent::Revoked, &revoked).await;
            self.drop_partitions(&revoked);
            // Tell the node now, not at the next interval: another member waits for them.
            shared.wake_heartbeat.notify_one();
        }
        let added: Vec<TopicPartition> = target.difference(&owned).cloned().collect();
        if !added.is_empty() {
            let mut partitions = self.assignment();
            partitions.extend(added.iter().cloned());
            self.set_partitions(partitions);
            shared.lock().owned = self.partitions.keys().cloned().collect();
            shared.wake_heartbeat.notify_one();
            self.call_listener(RebalanceEvent::Assigned, &added).await;
            let unplaced: Vec<TopicPartition> = added
                .into_iter()
                .filter(|partition| {
                    self.partitions
                        .get(partition)
                        .is_some_and(|state| state.position.is_none())
                })
                .collect();
            if !unplaced.is_empty() {
                let committed = fetch_committed(&self.client, &group_id, Some(&unplaced))
                    .await
                    .map_err(|error| match error {
                        CommitError::Request(error) => ConsumeError::Request(error),
                        CommitError::Group { code, message, .. } => ConsumeError::Group {
                            group_id: group_id.clone(),
                            code,
                            message,
                        },
                        other => ConsumeError::Group {
                            group_id: group_id.clone(),
                            code: ErrorCode::None,
                            message: other.to_string(),
                        },
                    })?;
                for (partition, offset) in committed {
                    if self.partitions.contains_key(&partition) {
                        self.seek(&partition, offset.offset)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops reading `partitions` and stops reporting them as owned.
    fn drop_partitions(&mut self, partitions: &[TopicPartition]) {
        let kept: Vec<TopicPartition> = self
            .partitions
            .keys()
            .filter(|partition| !partitions.contains(partition))
            .cloned()
            .collect();
        self.set_partitions(kept);
        if let Some(group) = &self.group {
            group.shared.lock().owned = self.partitions.keys().cloned().collect();
        }
    }

    async fn call_listener(&mut self, event: RebalanceEvent, partitions: &[TopicPartition]) {
        // Taken out for the call so the listener can have the consumer itself.
        let Some(mut listener) = self.listener.take() else {
            return;
        };
        match event {
            RebalanceEvent::Revoked => listener.on_partitions_revoked(self, partitions).await,
            RebalanceEvent::Assigned => listener.on_partitions_assigned(self, partitions).await,
            RebalanceEvent::Lost => listener.on_partitions_lost(self, partitions).await,
        }
        if self.listener.is_none() {
            self.listener = Some(listener);
        }
    }

    /// Positions of owned partitions (of `only` if given) that have one.
    fn current_offsets(
        &self,
        only: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.partitions
            .iter()
            .filter(|(partition, _)| only.is_none_or(|only| only.contains(partition)))
            .filter_map(|(partition, state)| {
                state
                    .position
                    .map(|position| (partition.clone(), OffsetAndMetadata::new(position)))
            })
            .collect()
    }

    /// Group id, member id and epoch to commit with; an unsubscribed consumer commits
    /// administratively (empty member id), which the node accepts while the group is empty. A
    /// member removed from its group commits as the removed member until it rejoins, so the
    /// node refuses (`UnknownMemberId`) rather than taking an administrative commit.
    fn commit_identity(&self) -> Result<(String, String, i32), CommitError> {
        let group_id = self.config.group_id.clone().ok_or(CommitError::NoGroupId)?;
        Ok(match &self.group {
            Some(group) => {
                let (member_id, member_epoch) = group.shared.lock().commit_identity();
                (group_id, member_id, member_epoch)
            }
            None => (group_id, String::new(), 0),
        })
    }

    fn spawn_commit(
        &mut self,
        offsets: BTreeMap<TopicPartition, OffsetAndMetadata>,
        automatic: bool,
    ) -> PendingCommit {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let identity = self.commit_identity();
        let previous = self.async_commit.take();
        let client = self.client.clone();
        self.async_commit = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            let result = match identity {
                Ok((group_id, member_id, member_epoch)) => {
                    commit_offsets(&client, &group_id, &member_id, member_epoch, &offsets).await
                }
                Err(error) => Err(error),
            };
            if automatic && let Err(error) = &result {
                tracing::warn!(%error, "auto-commit failed");
            }
            let _ = sender.send(result);
        }));
        PendingCommit { receiver }
    }

    async fn wait_async_commits(&mut self) {
        if let Some(previous) = self.async_commit.take() {
            let _ = previous.await;
        }
    }

    /// Starts a background commit when auto-commit is on and the interval has passed.
    fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit || self.config.group_id.is_none() {
            return;
        }
        let now = clock::now();
        if now.saturating_duration_since(self.last_auto_commit) < self.config.auto_commit_interval {
            return;
        }
        self.last_auto_commit = now;
        let offsets = self.current_offsets(None);
        if !offsets.is_empty() {
            drop(self.spawn_commit(offsets, true));
        }
    }

    async fn seek_to(
        &mut self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<(), ConsumeError> {
        let partitions = if partitions.is_empty() {
            self.assignment()
        } else {
            partitions.to_vec()
        };
        for partition in &partitions {
            if !self.partitions.contains_key(partition) {
                return Err(not_assigned(partition));
            }
        }
        let offsets = self.offsets(&partitions, spec).await?;
        for (partition, offset) in offsets {
            self.seek(&partition, offset)?;
        }
        Ok(())
    }

    async fn offsets(
        &self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, ConsumeError> {
        let specs = partitions
            .iter()
            .map(|partition| (partition.clone(), spec))
            .collect();
        let listed = self.lookup(specs).await?;
        let mut offsets = BTreeMap::new();
        for (partition, listed) in listed {
            let Some(offset) = listed.offset else {
                return Err(RequestError::MalformedResponse(format!(
                    "ListOffsets gave no offset for {partition}"
                ))
                .into());
            };
            offsets.insert(partition, offset);
        }
        Ok(offsets)
    }

    async fn lookup(
        &self,
        specs: Vec<(TopicPartition, OffsetSpec)>,
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>, ConsumeError> {
        let listed = list_offsets(&self.client, specs).await?;
        let mut found = BTreeMap::new();
        for (partition, result) in listed {
            match result {
                Ok(listed) => {
                    found.insert(partition, listed);
                }
                Err(code) => return Err(partition_error(&partition, code)),
            }
        }
        Ok(found)
    }

    /// Gives every partition without a position one, per `auto_offset_reset`.
    async fn resolve_positions(&mut self) -> Result<(), ConsumeError> {
        let missing: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| state.position.is_none())
            .map(|(partition, _)| partition.clone())
            .collect();
        let Some(first) = missing.first() else {
            return Ok(());
        };
        let spec = match self.config.auto_offset_reset {
            OffsetReset::Earliest => OffsetSpec::Earliest,
            OffsetReset::Latest => OffsetSpec::Latest,
            OffsetReset::None => {
                return Err(ConsumeError::NoOffsetForPartition {
                    topic: first.topic.clone(),
                    partition: first.partition,
                });
            }
        };
        let offsets = self.offsets(&missing, spec).await?;
        for (partition, offset) in offsets {
            self.seek(&partition, offset)?;
        }
        Ok(())
    }

    fn start_prefetch(&mut self) {
        if self.config.prefetch
            && self.fetch.is_none()
            && self
                .partitions
                .values()
                .all(|state| state.position.is_some())
        {
            self.start_fetch(self.config.fetch_max_wait);
        }
    }

    /// Starts a fetch of every partition with a position and nothing buffered.
    fn start_fetch(&mut self, max_wait: Duration) {
        let mut offsets = BTreeMap::new();
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (partition, state) in &self.partitions {
            if state.position.is_none() || !state.buffered.is_empty() {
                continue;
            }
            offsets.insert(partition.clone(), state.fetch_offset);
            let entry = FetchPartition {
                current_leader_epoch: None,
                partition: partition.partition,
                fetch_offset: state.fetch_offset,
                partition_max_bytes: self.config.max_partition_fetch_bytes,
            };
            match topics
                .iter_mut()
                .find(|topic| topic.name == partition.topic)
            {
                Some(topic) => topic.partitions.push(entry),
                None => topics.push(FetchTopic {
                    name: partition.topic.clone(),
                    partitions: vec![entry],
                }),
            }
        }
        if topics.is_empty() {
            return;
        }
        let request = FetchRequest {
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            topics,
            plugin: self.config.fetch_plugin.as_ref().map(|plugin| {
                ledge_protocol::wire::PluginRef {
                    module: plugin.module.clone(),
                    params: plugin
                        .params
                        .iter()
                        .map(|(key, value)| ledge_protocol::wire::PluginParam {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                }
            }),
        };
        let client = self.client.clone();
        let handle =
            tokio::spawn(async move { fetch_from_leaders(&client, request, max_wait).await });
        self.fetch = Some(InFlightFetch { handle, offsets });
    }

    fn cancel_fetch(&mut self) {
        if let Some(fetch) = self.fetch.take() {
            fetch.handle.abort();
        }
    }

    /// Buffers the records of a fetch answer, for partitions that did not move since it was
    /// asked.
    fn absorb(
        &mut self,
        response: FetchResponse,
        asked: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ConsumeError> {
        self.fetch_throttle_time = Duration::from_millis(u64::from(response.throttle_time_ms));
        if response.error != ErrorCode::None {
            return Err(ConsumeError::Plugin {
                code: response.error,
                message: response.message,
            });
        }
        for topic in response.topics {
            for answer in topic.partitions {
                let partition = TopicPartition::new(topic.name.clone(), answer.partition);
                let Some(&asked_offset) = asked.get(&partition) else {
                    continue;
                };
                let limits = &self.config.decode_limits;
                let reset = self.config.auto_offset_reset;
                let Some(state) = self.partitions.get_mut(&partition) else {
                    continue;
                };
                if state.position.is_none()
                    || state.fetch_offset != asked_offset
                    || !state.buffered.is_empty()
                {
                    continue;
                }
                match answer.error {
                    ErrorCode::None => {
                        absorb_batches(state, &partition, &answer.records, limits)?;
                    }
                    ErrorCode::OffsetOutOfRange => {
                        if reset == OffsetReset::None {
                            return Err(ConsumeError::OffsetOutOfRange {
                                topic: partition.topic,
                                partition: partition.partition,
                                offset: asked_offset,
                                log_start_offset: answer.log_start_offset,
                                high_watermark: answer.high_watermark,
                            });
                        }
                        tracing::info!(
                            %partition,
                            offset = asked_offset,
                            "offset out of range; resetting per auto_offset_reset"
                        );
                        state.position = None;
                    }
                    code if code.is_retriable() => {
                        // NotLeaderOrFollower and the like: the next fetch looks the leader up.
                        self.client
                            .partition_error(&partition.topic, partition.partition, code);
                        tracing::debug!(%partition, %code, "fetch partition error; retrying");
                    }
                    ErrorCode::ModuleFailed => {
                        return Err(ConsumeError::Plugin {
                            code: ErrorCode::ModuleFailed,
                            message: format!("{partition}: {}", answer.message),
                        });
                    }
                    code => {
                        self.client
                            .partition_error(&partition.topic, partition.partition, code);
                        return Err(partition_error(&partition, code));
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands out up to `max_records` buffered records, starting at a rotating partition.
    fn take_buffered(&mut self, max_records: usize) -> Vec<ConsumerRecord> {
        let keys: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        let count = keys.len();
        let mut records = Vec::new();
        let start = self.next_partition % count.max(1);
        for index in start..start + count {
            let Some(state) = keys
                .get(index % count)
                .and_then(|key| self.partitions.get_mut(key))
            else {
                continue;
            };
            while records.len() < max_records {
                let Some(record) = state.buffered.pop_front() else {
                    break;
                };
                state.position = Some(record.offset + 1);
                records.push(record);
            }
            if state.buffered.is_empty() && state.position.is_some() {
                // Past compacted gaps and control batches the fetch already stepped over.
                state.position = Some(state.fetch_offset);
            }
            if records.len() >= max_records {
                break;
            }
        }
        self.next_partition = start + 1;
        records
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel_fetch();
        // Without close(), the member stops heartbeating and the node removes it after its
        // session timeout.
        if let Some(heartbeats) = self
            .group
            .as_ref()
            .and_then(|group| group.heartbeats.as_ref())
        {
            heartbeats.abort();
        }
    }
}

/// Decodes the batches of one partition's fetch answer into `state.buffered`.
fn absorb_batches(
    state: &mut PartitionState,
    partition: &TopicPartition,
    records: &Bytes,
    limits: &DecodeLimits,
) -> Result<(), ConsumeError> {
    let corrupt = |offset: i64, message: String| ConsumeError::CorruptBatch {
        topic: partition.topic.clone(),
        partition: partition.partition,
        offset,
        message,
    };
    let mut next = state.fetch_offset;
    let decoded_all = 'decode: {
        for item in BatchIter::new(records) {
            let (header, slice) = match item {
                Ok(item) => item,
                // A cut batch at the end of an answer is read whole by the next fetch.
                Err(BatchError::Truncated { .. }) => break,
                Err(error) => break 'decode Err(corrupt(next, error.to_string())),
            };
            let last_offset = header.last_offset();
            if last_offset < next {
                continue;
            }
            if !header.is_control() {
                let batch = records.slice_ref(slice);
                let decoded = match decode_batch(&batch, limits) {
                    Ok(decoded) => decoded,
                    Err(error) => break 'decode Err(corrupt(next, error.to_string())),
                };
                for record in decoded.records {
                    if record.offset < next {
                        continue;
                    }
                    state.buffered.push_back(ConsumerRecord {
                        topic: state.topic.clone(),
                        partition: partition.partition,
                        offset: record.offset,
                        timestamp: record.timestamp,
                        key: record.key,
                        value: record.value,
                        headers: record.headers,
                    });
                }
            }
            next = last_offset.saturating_add(1);
        }
        Ok(())
    };
    // After a bad batch, `next` is where it starts: records of good batches before it stay
    // buffered and the next fetch asks from the bad batch (not from the answer's start, which
    // would hand them out twice).
    state.fetch_offset = next;
    decoded_all?;
    if state.buffered.is_empty() {
        state.position = Some(next);
    }
    Ok(())
}

/// Sleeps the current backoff (doubling it) unless that would pass `deadline`.
/// Sends `request`'s partitions to their leaders (one fetch per leader, each partition with
/// the leader epoch the client's metadata names) and joins the answers into one. Any failed
/// request fails the whole fetch: the next poll fetches again.
async fn fetch_from_leaders(
    client: &Client,
    request: FetchRequest,
    max_wait: Duration,
) -> Result<FetchResponse, RequestError> {
    let partitions: Vec<(&str, u32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.as_str(), partition.partition))
        })
        .collect();
    let mut routes = client.routes(&partitions).await.into_iter();
    let mut by_node: Vec<(SocketAddr, Vec<FetchTopic>)> = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let Some((node, leader_epoch)) = routes.next() else {
                break;
            };
            let entry = FetchPartition {
                current_leader_epoch: leader_epoch,
                ..partition.clone()
            };
            let topics = match by_node.iter_mut().find(|(known, _)| *known == node) {
                Some((_, topics)) => topics,
                None => {
                    by_node.push((node, Vec::new()));
                    let Some((_, topics)) = by_node.last_mut() else {
                        continue;
                    };
                    topics
                }
            };
            match topics.iter_mut().find(|known| known.name == topic.name) {
                Some(known) => known.partitions.push(entry),
                None => topics.push(FetchTopic {
                    name: topic.name.clone(),
                    partitions: vec![entry],
                }),
            }
        }
    }
    let fetches = by_node.into_iter().map(|(node, topics)| {
        // What the leader check compares: each partition and the epoch its fetch carries.
        let led: Vec<(String, u32, Option<i32>)> = topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|partition| {
                    (
                        topic.name.clone(),
                        partition.partition,
                        partition.current_leader_epoch,
                    )
                })
            })
            .collect();
        let request = Request::Fetch(FetchRequest {
            topics,
            ..request.clone()
        });
        async move {
            let led: Vec<(&str, u32, Option<i32>)> = led
                .iter()
                .map(|(topic, partition, epoch)| (topic.as_str(), *partition, *epoch))
                .collect();
            // A dead leader never answers, and QUIC notices only at the idle timeout: give
            // up on it once the cluster names another (a fetch is safe to send again).
            let answer = tokio::select! {
                biased;
                answer = client.request_to(node, &request, max_wait) => answer?,
                () = client.leader_moved_away(node, &led, max_wait) => {
                    return Err(RequestError::LeaderMoved { node: node.to_string() });
                }
            };
            match answer {
                Response::Fetch(response) => Ok(response),
                other => Err(unexpected(ApiKey::Fetch, &other)),
            }
        }
    });
    let mut joined = FetchResponse::default();
    for answer in futures_util::future::join_all(fetches).await {
        let answer = answer?;
        if joined.error == ErrorCode::None && answer.error != ErrorCode::None {
            joined.error = answer.error;
            joined.message = answer.message;
        }
        joined.throttle_time_ms = joined.throttle_time_ms.max(answer.throttle_time_ms);
        joined.topics.extend(answer.topics);
    }
    Ok(joined)
}

async fn pause(deadline: Instant, wait: &mut Duration) -> bool {
    let remaining = deadline.saturating_duration_since(clock::now());
    if remaining.is_zero() {
        return false;
    }
    tokio::time::sleep((*wait).min(remaining)).await;
    *wait = (*wait * 2).min(Duration::from_secs(1));
    true
}

fn not_assigned(partition: &TopicPartition) -> ConsumeError {
    ConsumeError::NotAssigned {
        topic: partition.topic.clone(),
        partition: partition.partition,
    }
}

fn partition_error(partition: &TopicPartition, code: ErrorCode) -> ConsumeError {
    if code == ErrorCode::UnknownTopicOrPartition {
        return ConsumeError::UnknownTopicOrPartition {
            topic: partition.topic.clone(),
            partition: partition.partition,
        };
    }
    ConsumeError::Partition {
        topic: partition.topic.clone(),
        partition: partition.partition,
        code,
    }
}

#[cfg(test)]
mod tests;
