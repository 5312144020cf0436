//! The consumer: reads assigned partitions from positions it keeps itself (no groups yet).
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

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
use crate::error::{ConsumeError, RequestError};

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
}

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

/// Reads records from assigned partitions.
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
        }
    }

    /// Reads exactly these partitions from now on. Partitions kept from the last assignment
    /// keep their positions; new ones start per `auto_offset_reset` unless sought.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) {
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
    pub async fn poll(
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
        let request = Request::Fetch(FetchRequest {
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: self.config.fetch_min_bytes,
            max_bytes: self.config.fetch_max_bytes,
            topics,
        });
        let client = self.client.clone();
        let handle = tokio::spawn(async move {
            match client.request(&request, max_wait).await? {
                Response::Fetch(response) => Ok(response),
                other => Err(unexpected(ApiKey::Fetch, &other)),
            }
        });
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
                        tracing::debug!(%partition, %code, "fetch partition error; retrying");
                    }
                    code => return Err(partition_error(&partition, code)),
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
    for item in BatchIter::new(records) {
        let (header, slice) = match item {
            Ok(item) => item,
            // A cut batch at the end of an answer is read whole by the next fetch.
            Err(BatchError::Truncated { .. }) => break,
            Err(error) => return Err(corrupt(next, error.to_string())),
        };
        let last_offset = header.last_offset();
        if last_offset < next {
            continue;
        }
        if !header.is_control() {
            let batch = records.slice_ref(slice);
            let decoded =
                decode_batch(&batch, limits).map_err(|error| corrupt(next, error.to_string()))?;
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
    state.fetch_offset = next;
    if state.buffered.is_empty() {
        state.position = Some(next);
    }
    Ok(())
}

/// Sleeps the current backoff (doubling it) unless that would pass `deadline`.
async fn pause(deadline: std::time::Instant, wait: &mut Duration) -> bool {
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
