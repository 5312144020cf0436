//! The producer: batches records per partition and sends them, idempotently by default.
//!
//! The flow of a record: [`Producer::send`] looks up the topic's partition count (cached),
//! takes room for the record from `buffer_memory` (waiting up to `max_block`), lets the
//! partitioner choose a partition, and appends it to that partition's open batch in the
//! [`accumulator`]. It returns a [`DeliveryFuture`] at once. A background task (the
//! [`sender`]) takes batches that are full, `linger` old or flushed, numbers them (producer id
//! and per-partition sequence), encodes each exactly once, and sends up to
//! `max_in_flight_per_partition` requests per partition. Acks resolve the futures and give the
//! memory back; retriable failures are resent in sequence order, so the node's duplicate check
//! (last five batches per producer and partition, rebuilt from its log after a restart) makes
//! a resent batch that was already written come back with its first offset instead of being
//! written twice.
//!
//! A topic's batches stay within its `max.message.bytes` (read with DescribeConfigs the first
//! time the producer sends to it), and a batch the node refuses as too large is split and its
//! halves resent ([`sender`]), as Kafka's producer does.
//!
//! Topics with a partitioner module (`partitioner.module`, seen in the topic's metadata) leave
//! the partition of records without an explicit one to the node: those records are batched
//! under the partition number [`NODE_PARTITIONED`], sent without a producer id or sequence
//! (the node refuses an idempotent node-partitioned batch, since it, not the producer, orders
//! the records within each partition), and each record's future resolves with the partition
//! and offset the node's answer routes it to ([`completion::place_records`]).

mod accumulator;
mod completion;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_protocol::wire::{self, Acks, ErrorCode, NODE_PARTITIONED, Request, Response};
use ledge_protocol::{BATCH_HEADER_BYTES, Compression, Header, Record};
use tokio::sync::{Notify, Semaphore};

use crate::clock;
use crate::connection::{Client, unexpected};
use crate::error::{CreateProducerError, ProduceError, RequestError};
use crate::partitioner::{DefaultPartitioner, Partitioner};

pub use completion::{DeliveryFuture, RecordMetadata};

use accumulator::{Accumulator, PartitionKey};

/// A record to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerRecord {
    /// Topic; it must exist.
    pub topic: String,
    /// Partition; `None` lets the partitioner choose (by key, or sticky without one), or the
    /// node when the topic has a partitioner module.
    pub partition: Option<u32>,
    /// Key; records with the same key go to the same partition.
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone for compacted topics.
    pub value: Option<Bytes>,
    /// Headers, in order; keys may repeat.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch; `None` takes the time of `send`.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with `value` and nothing else.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the partition.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Producer settings. Defaults follow Kafka's Java producer where one exists.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerConfig {
    /// Acknowledgement level. Default [`Acks::All`]: synced to disk before the ack.
    pub acks: Acks,
    /// A partition's batch is ready to leave once its records reach this many bytes. Default
    /// 16 KiB.
    pub batch_size: usize,
    /// How far a ready batch keeps growing until the sender takes it (it may not yet: the
    /// partition's in-flight limit, batches queued ahead): records that would wait anyway
    /// join it instead of queueing up as many `batch_size` batches, one request each. Capped
    /// by `max_request_size` (less the batch header), and only for `delivery_timeout / 2`
    /// after a batch's first record; at or below `batch_size`, batches never grow past
    /// `batch_size` (Kafka's behaviour). Batches of a topic also stay within its
    /// `max.message.bytes`, which the producer reads the first time it sends to the topic;
    /// a batch the node refuses as too large all the same (the topic was altered since) is
    /// split in two and resent, in order. Default 512 KiB.
    pub batch_size_max: usize,
    /// Longest a batch waits for more records before it is sent. Default 5 ms.
    pub linger: Duration,
    /// Codec for batches. Default none; gzip, snappy, lz4 and zstd are supported.
    pub compression: Compression,
    /// Resends of a batch after retriable errors (node restarting, timeouts). Default
    /// `u32::MAX`: `delivery_timeout` is the real bound, as in Kafka.
    pub retries: u32,
    /// Wait before the first resend; doubles with each further one. Default 100 ms.
    pub retry_backoff: Duration,
    /// Cap on the wait between resends. Default 1 s.
    pub retry_backoff_max: Duration,
    /// Longest from `send` to an ack, retries included; then the record fails with
    /// [`ProduceError::DeliveryTimeout`]. Default 120 s.
    pub delivery_timeout: Duration,
    /// Number batches with a producer id and sequence so that a resent batch is never written
    /// twice and order is kept. Requires `acks = All` and at most 5 in flight. Default on.
    ///
    /// Records the node partitions (no explicit partition, on a topic with a
    /// `partitioner.module`) are never idempotent, whatever this says: the node refuses a
    /// numbered batch there. They are delivered at least once: a batch resent after a lost
    /// answer, or after the node wrote some of its partitions and failed another, may be
    /// written twice, and with more than one request in flight a resend may land after later
    /// records.
    pub enable_idempotence: bool,
    /// Produce requests per partition waiting for an answer. Default 5 (the node remembers the
    /// last five batches of each producer, so more would defeat the duplicate check).
    pub max_in_flight_per_partition: usize,
    /// Bytes of records waiting to be sent or acknowledged, over all partitions. Default
    /// 32 MiB.
    pub buffer_memory: usize,
    /// Longest `send` waits for room in `buffer_memory` (or for topic metadata). Default 60 s.
    pub max_block: Duration,
    /// Largest record, and the most batch bytes in one produce request. A record must also
    /// fit the topic's `max.message.bytes` ([`ProduceError::RecordTooLargeForTopic`]).
    /// Default 1 MiB.
    pub max_request_size: usize,
}

/// Default [`ProducerConfig::batch_size`].
pub const BATCH_SIZE_DEFAULT: usize = 16 * 1024;
/// Default [`ProducerConfig::batch_size_max`]: well inside the node's default batch limit
/// (`max.message.bytes`, 1 MiB), which a batch's estimated size may undercount by its header.
pub const BATCH_SIZE_MAX_DEFAULT: usize = 512 * 1024;
/// Default [`ProducerConfig::buffer_memory`].
pub const BUFFER_MEMORY_DEFAULT: usize = 32 * 1024 * 1024;
/// Default [`ProducerConfig::max_request_size`].
pub const MAX_REQUEST_SIZE_DEFAULT: usize = 1024 * 1024;
/// The most batches per partition the node checks for duplicates, hence the most that can be
/// in flight with idempotence.
pub const IDEMPOTENT_IN_FLIGHT_MAX: usize = 5;

// A default batch must fit in a default request, and a default request in the buffer.
const _: () = assert!(BATCH_SIZE_DEFAULT <= MAX_REQUEST_SIZE_DEFAULT);
const _: () = assert!(BATCH_SIZE_MAX_DEFAULT <= MAX_REQUEST_SIZE_DEFAULT);
const _: () = assert!(MAX_REQUEST_SIZE_DEFAULT <= BUFFER_MEMORY_DEFAULT);

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            batch_size: BATCH_SIZE_DEFAULT,
            batch_size_max: BATCH_SIZE_MAX_DEFAULT,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            retries: u32::MAX,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            delivery_timeout: Duration::from_secs(120),
            enable_idempotence: true,
            max_in_flight_per_partition: IDEMPOTENT_IN_FLIGHT_MAX,
            buffer_memory: BUFFER_MEMORY_DEFAULT,
            max_block: Duration::from_secs(60),
            max_request_size: MAX_REQUEST_SIZE_DEFAULT,
        }
    }
}

impl ProducerConfig {
    /// Checks the settings against each other; the message names the fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if self.max_in_flight_per_partition == 0 {
            return Err("max_in_flight_per_partition must be at least 1".into());
        }
        if self.max_request_size > self.buffer_memory {
            return Err(format!(
                "max_request_size ({}) must not exceed buffer_memory ({}), or a large record \
                 could never get room",
                self.max_request_size, self.buffer_memory
            ));
        }
        if u32::try_from(self.max_request_size).is_err() {
            return Err("max_request_size must be below 4 GiB".into());
        }
        if self.enable_idempotence {
            if self.acks != Acks::All {
                return Err(format!(
                    "enable_idempotence requires acks = all (got acks = {}); turn idempotence \
                     off for acks 0 or 1",
                    self.acks.as_i8()
                ));
            }
            if self.max_in_flight_per_partition > IDEMPOTENT_IN_FLIGHT_MAX {
                return Err(format!(
                    "enable_idempotence allows at most {IDEMPOTENT_IN_FLIGHT_MAX} \
                     max_in_flight_per_partition (got {})",
                    self.max_in_flight_per_partition
                ));
            }
        }
        Ok(())
    }
}

/// Sends records to the node, batching and retrying in the background.
///
/// ```no_run
/// # async fn example(client: ledge_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use ledge_client::{Producer, ProducerConfig, ProducerRecord};
///
/// let producer = Producer::new(&client, ProducerConfig::default()).await?;
/// // `send` only enqueues: collect the futures to pipeline many records.
/// let delivery = producer
///     .send(ProducerRecord::new("orders", "order 12345").key("customer-67890"))
///     .await?;
/// let metadata = delivery.await?;
/// println!("written to partition {} at offset {:?}", metadata.partition, metadata.offset);
/// producer.close().await;
/// # Ok(())
/// # }
/// ```
///
/// Dropping a producer without [`Producer::close`] still sends what it holds, in the
/// background, for as long as the runtime lives.
///
/// # Topics partitioned by the node
///
/// When a topic has a partitioner module (`partitioner.module`), records without an explicit
/// partition go to the node, which picks each one's partition. They are batched apart from
/// the others and sent **without idempotence** (producer id -1), even by an idempotent
/// producer: see [`ProducerConfig::enable_idempotence`] for what that means on retries. Their
/// [`RecordMetadata`] names the partition and offset the node chose; a record the topic's
/// produce filter dropped fails with [`ProduceError::Dropped`]. A producer reads a topic's
/// partitioner from its metadata the first time it sends to the topic; a partitioner added
/// later is used by producers created after the change.
pub struct Producer {
    shared: Arc<Shared>,
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// What `send` and the sender task share.
struct Shared {
    client: Client,
    config: ProducerConfig,
    state: Mutex<State>,
    /// One permit per byte of `buffer_memory`. tokio's semaphore is fair, so senders waiting
    /// for room are served in the order they asked.
    memory: Semaphore,
    /// Wakes the sender: a batch opened or closed, a flush, or close.
    wake: Notify,
    /// Signalled whenever `unfinished_records` drops to zero.
    idle: Notify,
    unfinished_records: AtomicUsize,
    flushes: AtomicUsize,
    closing: AtomicBool,
}

struct State {
    accumulator: Accumulator,
    partitioner: Box<dyn Partitioner>,
    topics: HashMap<String, TopicInfo>,
}

#[derive(Clone)]
struct TopicInfo {
    name: Arc<str>,
    partition_count: u32,
    /// The topic has a partitioner module: the node partitions records without an explicit
    /// partition.
    node_partitioned: bool,
    /// The topic's `max.message.bytes`: the largest batch, header included, the node accepts
    /// for it. `None` when the node did not say (batches are then split if refused).
    batch_bytes_max: Option<usize>,
    /// When the node said so: the info is looked up again after the client's
    /// `metadata_max_age`, so partitions added since are used (Kafka's producer does the same).
    fetched_at: Instant,
}

impl TopicInfo {
    /// The most estimated record bytes one batch of this topic may hold: within both the
    /// topic's limit and the producer's `batch_size_max`, less the batch header.
    fn records_bytes_max(&self) -> usize {
        self.batch_bytes_max
            .map_or(usize::MAX, |limit| limit.saturating_sub(BATCH_HEADER_BYTES))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can leave `State` half-changed on a panic (a user
        // partitioner panicking leaves the accumulator as it was), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A batch of `records` records holding `memory` bytes is done, one way or the other.
    fn release(&self, records: usize, memory: usize) {
        self.memory.add_permits(memory);
        let before = self.unfinished_records.fetch_sub(records, Ordering::AcqRel);
        debug_assert!(before >= records, "more records finished than were sent");
        if before == records {
            self.idle.notify_waiters();
        }
    }

    fn forget_topic(&self, topic: &str) {
        self.lock().topics.remove(topic);
    }
}

impl Producer {
    /// A producer with Kafka's default partitioner. With idempotence on (the default) this
    /// asks the node for a producer id.
    pub async fn new(client: &Client, config: ProducerConfig) -> Result<Self, CreateProducerError> {
        Self::with_partitioner(client, config, Box::new(DefaultPartitioner::new())).await
    }

    /// A producer with a custom partitioner.
    pub async fn with_partitioner(
        client: &Client,
        config: ProducerConfig,
        partitioner: Box<dyn Partitioner>,
    ) -> Result<Self, CreateProducerError> {
        config
            .validate()
            .map_err(CreateProducerError::InvalidConfig)?;
        let producer_id = if config.enable_idempotence {
            Some(init_producer_id(client, config.max_block).await?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            client: client.clone(),
            state: Mutex::new(State {
                accumulator: Accumulator::new(
                    config.batch_size,
                    // The batch header is not in the records' estimated sizes.
                    config
                        .batch_size_max
                        .min(config.max_request_size.saturating_sub(BATCH_HEADER_BYTES)),
                    config.delivery_timeout / 2,
                    config.linger,
                ),
                partitioner,
                topics: HashMap::new(),
            }),
            memory: Semaphore::new(config.buffer_memory),
            wake: Notify::new(),
            idle: Notify::new(),
            unfinished_records: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            config,
        });
        let sender = tokio::spawn(sender::Sender::new(shared.clone(), producer_id).run());
        Ok(Self {
            shared,
            sender: Mutex::new(Some(sender)),
        })
    }

    /// Enqueues `record` and returns a future that resolves when the node acknowledges it.
    ///
    /// Awaiting `send` waits only for room in `buffer_memory` (up to `max_block`) and, the
    /// first time a topic is used, for its partition count. Records sent from one task are
    /// written in `send` order within each partition.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return Err(ProduceError::Closed);
        }
        let bytes = estimated_size(&record);
        // Alone in its batch, the record still carries the batch header: with the node's
        // default limit (1 MiB + 12 bytes) a record just under 1 MiB would pass here and be
        // refused there.
        if bytes.saturating_add(BATCH_HEADER_BYTES) > shared.config.max_request_size {
            return Err(ProduceError::RecordTooLarge {
                bytes: bytes.saturating_add(BATCH_HEADER_BYTES),
                limit: shared.config.max_request_size,
            });
        }
        let mut topic = self.topic(&record.topic).await?;
        // A partition beyond the cached count may have been added since: ask once more.
        if record.partition.is_some_and(|partition| {
            partition >= topic.partition_count && partition != NODE_PARTITIONED
        }) {
            self.shared.forget_topic(&record.topic);
            topic = self.topic(&record.topic).await?;
        }
        if let Some(limit) = topic.batch_bytes_max
            && bytes.saturating_add(BATCH_HEADER_BYTES) > limit
        {
            return Err(ProduceError::RecordTooLargeForTopic {
                topic: record.topic,
                bytes: bytes.saturating_add(BATCH_HEADER_BYTES),
                limit,
            });
        }
        if let Some(partition) = record.partition
            && partition >= topic.partition_count
        {
            return Err(ProduceError::InvalidPartition {
                topic: record.topic,
                partition,
                partition_count: topic.partition_count,
            });
        }
        // `bytes <= max_request_size`, which `validate` keeps below 4 GiB.
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match tokio::time::timeout(shared.config.max_block, shared.memory.acquire_many(permits))
            .await
        {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_closed)) => return Err(ProduceError::Closed),
            Err(_elapsed) => {
                return Err(ProduceError::BufferFull {
                    waited: shared.config.max_block,
                });
            }
        }
        let timestamp = record.timestamp.unwrap_or_else(clock::wall_time_ms);
        let now = clock::now();
        // Only the partitioner's own (keyless) choices stick to a partition per batch.
        let sticky = record.partition.is_none() && record.key.is_none();
        let appended = {
            let mut state = shared.lock();
            let partition = match record.partition {
                Some(partition) => partition,
                None if topic.node_partitioned => NODE_PARTITIONED,
                None => state.partitioner.partition(
                    &topic.name,
                    record.key.as_deref(),
                    topic.partition_count,
                ),
            };
            if partition >= topic.partition_count && partition != NODE_PARTITIONED {
                drop(state);
                shared.memory.add_permits(bytes);
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic,
                    partition,
                    partition_count: topic.partition_count,
                });
            }
            let key = PartitionKey {
                topic: topic.name.clone(),
                partition,
            };
            let record = Record {
                timestamp,
                key: record.key,
                value: record.value,
                headers: record.headers,
            };
            let appended =
                state
                    .accumulator
                    .append(&key, record, bytes, topic.records_bytes_max(), now);
            if (appended.became_ready || (sticky && appended.joined_ready_batch))
                && partition != NODE_PARTITIONED
            {
                state
                    .partitioner
                    .on_batch_complete(&topic.name, partition, topic.partition_count);
            }
            shared.unfinished_records.fetch_add(1, Ordering::AcqRel);
            (appended, partition)
        };
        let (appended, partition) = appended;
        if appended.opened_batch || appended.became_ready {
            shared.wake.notify_one();
        }
        Ok(DeliveryFuture::new(
            appended.completion,
            appended.index,
            topic.name,
            partition,
            timestamp,
        ))
    }

    /// Sends everything buffered now, without waiting for `linger`, and waits until every
    /// record sent before the call is acknowledged or failed. Records sent concurrently with
    /// the flush may be waited for too.
    pub async fn flush(&self) {
        let shared = &self.shared;
        let _flushing = FlushGuard::new(shared);
        shared.wake.notify_one();
        loop {
            let idle = shared.idle.notified();
            tokio::pin!(idle);
            // Register before checking, so a drop to zero in between is not missed.
            idle.as_mut().enable();
            if shared.unfinished_records.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Refuses further sends, flushes, and stops the background task.
    pub async fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.flush().await;
        self.shared.wake.notify_one();
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(sender) = sender {
            let _ = sender.await;
        }
    }

    /// Records appended and not yet acknowledged or failed.
    pub fn pending_records(&self) -> usize {
        self.shared.unfinished_records.load(Ordering::Acquire)
    }

    /// The topic's partition count, from the cache or the node.
    async fn topic(&self, name: &str) -> Result<TopicInfo, ProduceError> {
        let max_age = self.shared.client.config().metadata_max_age;
        if let Some(info) = self.shared.lock().topics.get(name)
            && clock::now().saturating_duration_since(info.fetched_at) < max_age
        {
            return Ok(info.clone());
        }
        let shared = &self.shared;
        let request = Request::Metadata(wire::MetadataRequest {
            topics: Some(vec![name.to_string()]),
        });
        let deadline = clock::now() + shared.config.max_block;
        let mut attempt = 0u32;
        let response = loop {
            match shared.client.request(&request, Duration::ZERO).await {
                Ok(Response::Metadata(response)) => break response,
                Ok(other) => return Err(unexpected(wire::ApiKey::Metadata, &other).into()),
                Err(error) if error.is_retriable() && clock::now() < deadline => {
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(backoff(&shared.config, attempt)).await;
                }
                Err(error) => return Err(error.into()),
            }
        };
        let Some(topic) = response.topics.into_iter().find(|topic| topic.name == name) else {
            return Err(ProduceError::UnknownTopic {
                topic: name.to_string(),
            });
        };
        if topic.error == ErrorCode::UnknownTopicOrPartition || topic.partitions.is_empty() {
            return Err(ProduceError::UnknownTopic {
                topic: name.to_string(),
            });
        }
        if topic.error != ErrorCode::None {
            return Err(ProduceError::Node {
                topic: name.to_string(),
                partition: 0,
                code: topic.error,
                message: if topic.message.is_empty() {
                    "metadata".into()
                } else {
                    topic.message
                },
            });
        }
        let partition_count = u32::try_from(topic.partitions.len()).unwrap_or(u32::MAX);
        let info = TopicInfo {
            name: Arc::from(name),
            partition_count,
            node_partitioned: !topic.partitioner_module.is_empty(),
            batch_bytes_max: self.topic_batch_bytes_max(name).await,
            fetched_at: clock::now(),
        };
        self.shared
            .lock()
            .topics
            .insert(name.to_string(), info.clone());
        Ok(info)
    }
}

impl Producer {
    /// The topic's `max.message.bytes`, asked once per topic (and again after the node
    /// refused a batch as too large: the topic may have been altered). Without an answer the
    /// producer goes on without it: batches the node refuses as too large are split.
    async fn topic_batch_bytes_max(&self, name: &str) -> Option<usize> {
        let request = Request::DescribeConfigs(wire::DescribeConfigsRequest {
            topics: vec![name.to_string()],
        });
        let response = match self.shared.client.request(&request, Duration::ZERO).await {
            Ok(Response::DescribeConfigs(response)) => response,
            Ok(other) => {
                tracing::debug!(topic = name, ?other, "unexpected answer to DescribeConfigs");
                return None;
            }
            Err(error) => {
                tracing::debug!(topic = name, %error, "cannot read the topic's max.message.bytes");
                return None;
            }
        };
        let configs = response
            .topics
            .into_iter()
            .find(|topic| topic.name == name && topic.error == ErrorCode::None)?;
        configs
            .configs
            .iter()
            .find(|config| config.name == TOPIC_BATCH_BYTES_MAX_KEY)
            .and_then(|config| config.value.parse::<usize>().ok())
    }
}

/// The topic config that bounds a batch's size, header included (Kafka's name).
const TOPIC_BATCH_BYTES_MAX_KEY: &str = "max.message.bytes";

impl Drop for Producer {
    fn drop(&mut self) {
        // The sender finishes what is buffered, then exits.
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

struct FlushGuard<'a>(&'a Shared);

impl<'a> FlushGuard<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.flushes.fetch_add(1, Ordering::AcqRel);
        Self(shared)
    }
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.flushes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Upper bound of a record's encoded size (Kafka's `estimateSizeInBytesUpperBound`): varint
/// fields at their widest, plus the bytes themselves.
fn estimated_size(record: &ProducerRecord) -> usize {
    estimated_record_size(record.key.as_ref(), record.value.as_ref(), &record.headers)
}

/// [`estimated_size`] of a record's parts.
fn estimated_record_size(key: Option<&Bytes>, value: Option<&Bytes>, headers: &[Header]) -> usize {
    // Length (5) + attributes (1) + timestamp delta (10) + offset delta (5), then each
    // nullable field's length varint (5) and the header count (5).
    const RECORD_OVERHEAD_MAX: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    const HEADER_OVERHEAD_MAX: usize = 5 + 5;
    let headers: usize = headers
        .iter()
        .map(|header| {
            HEADER_OVERHEAD_MAX + header.key.len() + header.value.as_ref().map_or(0, Bytes::len)
        })
        .sum();
    RECORD_OVERHEAD_MAX + key.map_or(0, Bytes::len) + value.map_or(0, Bytes::len) + headers
}

/// The wait before resend number `attempt` (1 for the first): `retry_backoff` doubling up to
/// `retry_backoff_max`.
fn backoff(config: &ProducerConfig, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    config
        .retry_backoff
        .saturating_mul(1u32 << exponent)
        .min(config.retry_backoff_max)
}

/// Asks the node for a fresh producer id, retrying retriable failures for up to `patience`.
async fn init_producer_id(
    client: &Client,
    patience: Duration,
) -> Result<(i64, i16), CreateProducerError> {
    let request = Request::InitProducerId(wire::InitProducerIdRequest {
        transactional_id: None,
    });
    let deadline = clock::now() + patience;
    let mut wait = Duration::from_millis(100);
    loop {
        let error = match client.request(&request, Duration::ZERO).await {
            Ok(Response::InitProducerId(response)) if response.error == ErrorCode::None => {
                return Ok((response.producer_id, response.producer_epoch));
            }
            Ok(Response::InitProducerId(response)) if !response.error.is_retriable() => {
                return Err(CreateProducerError::ProducerId(response.error));
            }
            Ok(Response::InitProducerId(response)) => RequestError::Refused {
                code: response.error,
                message: "InitProducerId".into(),
            },
            Ok(other) => return Err(unexpected(wire::ApiKey::InitProducerId, &other).into()),
            Err(error) => error,
        };
        if !error.is_retriable() || clock::now() + wait > deadline {
            return Err(error.into());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests;
