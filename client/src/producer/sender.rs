//! The producer's background task: numbers, encodes, sends and retries batches.
//!
//! Owns: per-partition producer state (producer id, epoch, next sequence), requests in flight,
//! batches waiting to be resent, and the decision between retrying and failing.
//!
//! Rules that keep "exactly once, in order" with idempotence on:
//!
//! - A batch gets its sequence number and its bytes once, when it first leaves; a resend
//!   sends the same bytes, so the node can recognise it as a duplicate.
//! - At most `max_in_flight_per_partition` requests per partition; one batch per partition
//!   per request.
//! - Once a batch of a partition waits for a resend, nothing new leaves for that partition,
//!   and resends go one at a time, lowest sequence first, only when nothing of the partition
//!   is in flight. The node then sees the sequence in order again.
//! - `OutOfOrderSequenceNumber` for a batch that was sent while a lower one of the same
//!   partition was unacknowledged is not an error: requests on separate QUIC streams can
//!   overtake each other, so the batch arrived early. It is resent after the lower ones
//!   (without using a retry). Sent with nothing lower outstanding, it is a real gap.
//! - The first batch under a producer id goes alone: the node accepts any first sequence
//!   from a producer id it does not know, so an overtaking second batch would become the
//!   start of the sequence.
//! - A batch the node refuses as too large (`MessageTooLarge`, the topic's
//!   `max.message.bytes` is lower than the producer thought) is split in two and its halves
//!   resent, as Kafka's producer does (`RecordAccumulator.splitAndReenqueue`). The node wrote
//!   nothing of it and took none of its sequence numbers, so the halves take the batch's own:
//!   the first half its base sequence, the second the base plus the first half's record count.
//!   The sequence of the partition stays without a gap, batches numbered after it (refused as
//!   out of order meanwhile) follow once the halves are written, and each half keeps the
//!   batch's place in the resend order ([`BatchOrder`]). A single record too large fails.
//! - When a batch fails for good, the later batches of its partition that already have
//!   sequence numbers can never be written (the node would wait for the missing sequence), so
//!   they fail with [`ProduceError::Aborted`]; once nothing of the partition is in flight, the
//!   partition gets a fresh producer id and starts again at sequence 0.
//!
//! Batches for [`NODE_PARTITIONED`] (the node picks each record's partition) follow none of
//! the rules above that need a sequence: they carry no producer id, so the node cannot
//! recognise a resend, and their acknowledgement says where each record went.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_protocol::wire::{
    self, Acks, ErrorCode, NODE_PARTITIONED, ProducePartition, ProducePartitionResponse,
    ProduceRequest, ProduceResponse, ProduceTopic, Request, Response,
};
use ledge_protocol::{
    DecodeLimits, EncodeOptions, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, Record,
    decode_batch, encode_batch,
};
use tokio::task::JoinSet;

use super::accumulator::{PartitionKey, PendingBatch};
use super::completion::{ALL_RECORDS, BatchAck, BatchCompletion, RecordRange, place_records};
use super::{Shared, backoff, estimated_record_size, init_producer_id};
use crate::clock;
use crate::connection::unexpected;
use crate::error::{ConnectError, ProduceError, RequestError};

/// A batch's place among all batches this producer sent for a partition (survives a producer
/// id reset, unlike the sequence): the number of the batch the accumulator built, then the
/// index in it of this batch's first record, which orders the parts of a split batch between
/// the batch before and the batch after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct BatchOrder {
    batch: u64,
    first_record: u32,
}

impl BatchOrder {
    const FIRST: Self = Self {
        batch: 0,
        first_record: 0,
    };

    /// The lowest order after this one.
    fn successor(self) -> Self {
        Self {
            batch: self.batch,
            first_record: self.first_record.saturating_add(1),
        }
    }
}

/// A batch that has left the accumulator: numbered and encoded.
#[derive(Debug)]
struct SentBatch {
    key: PartitionKey,
    order: BatchOrder,
    bytes: Bytes,
    record_count: usize,
    memory: usize,
    completion: Arc<BatchCompletion>,
    /// Which records of `completion` this batch carries: all of them, unless a batch refused
    /// as too large was split.
    records: RecordRange,
    created: Instant,
    attempts: u32,
    retry_at: Instant,
    last_error: Option<ProduceError>,
    /// A lower batch of the partition was unacknowledged when this one was last sent, so this
    /// one may have overtaken it on the way to the node.
    sent_behind_another: bool,
}

/// Producer state of one partition.
#[derive(Debug)]
struct PartitionState {
    producer_id: i64,
    producer_epoch: i16,
    next_sequence: i32,
    next_order: u64,
    in_flight: usize,
    /// Orders of batches sent and not yet acknowledged or failed.
    unacknowledged: BTreeSet<BatchOrder>,
    /// Batches waiting to be resent, by order.
    retries: BTreeMap<BatchOrder, SentBatch>,
    /// Set when a numbered batch failed for good: its order, and why (for the batches after
    /// it, which are given up).
    failure: Option<(BatchOrder, String)>,
    /// A new producer id has been asked for.
    resetting: bool,
    /// The node has acknowledged a batch under the current producer id. Until then only one
    /// batch is in flight: the node accepts any first sequence from a producer id it does not
    /// know, so a second batch overtaking the first would become the start of the sequence
    /// and the first could never be written.
    established: bool,
}

impl PartitionState {
    fn new(producer: Option<(i64, i16)>) -> Self {
        let (producer_id, producer_epoch) = producer.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
        Self {
            producer_id,
            producer_epoch,
            next_sequence: 0,
            next_order: 0,
            in_flight: 0,
            unacknowledged: BTreeSet::new(),
            retries: BTreeMap::new(),
            failure: None,
            resetting: false,
            established: false,
        }
    }

    /// Whether a new batch may leave now.
    fn accepts_new(&self, in_flight_max: usize) -> bool {
        let in_flight_max = if self.established { in_flight_max } else { 1 };
        self.in_flight < in_flight_max
            && self.retries.is_empty()
            && self.failure.is_none()
            && !self.resetting
    }
}

enum TaskOutcome {
    /// The answers of one send split by partition leader.
    Routed(Vec<Self>),
    Produce {
        batches: Vec<SentBatch>,
        result: Result<Option<ProduceResponse>, RequestError>,
    },
    ProducerId {
        key: PartitionKey,
        result: Option<(i64, i16)>,
    },
}

pub(super) struct Sender {
    shared: Arc<Shared>,
    producer: Option<(i64, i16)>,
    partitions: HashMap<PartitionKey, PartitionState>,
    tasks: JoinSet<TaskOutcome>,
}

impl Sender {
    pub(super) fn new(shared: Arc<Shared>, producer: Option<(i64, i16)>) -> Self {
        Self {
            shared,
            producer,
            partitions: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let now = clock::now();
            self.expire(now);
            if self.shared.client.is_closed() {
                self.fail_waiting(&ProduceError::Request(RequestError::Connect(
                    ConnectError::Closed,
                )));
            }
            while self.send_ready(now) {}
            if self.finished() {
                return;
            }
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(deadline) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    match joined {
                        Ok(outcome) => self.handle(outcome, clock::now()),
                        // The tasks only await requests; a panic there is a bug, and its
                        // batches' futures would never resolve, so make it loud.
                        Err(error) => panic!("producer request task failed: {error}"),
                    }
                }
                () = self.shared.wake.notified() => {}
                () = sleep => {}
            }
        }
    }

    fn config(&self) -> &super::ProducerConfig {
        &self.shared.config
    }

    /// Whether batches of `key` carry a producer id and sequence. Never for
    /// [`NODE_PARTITIONED`]: the node refuses them there.
    fn idempotent(&self, key: &PartitionKey) -> bool {
        self.config().enable_idempotence && key.partition != NODE_PARTITIONED
    }

    fn finished(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
            && self.tasks.is_empty()
            && self.shared.lock().accumulator.is_empty()
            && self
                .partitions
                .values()
                .all(|state| state.retries.is_empty())
    }

    /// Builds and sends one produce request from resends and ready batches. Returns whether it
    /// sent one (the caller loops: more may be ready).
    fn send_ready(&mut self, now: Instant) -> bool {
        let in_flight_max = self.config().max_in_flight_per_partition;
        let request_bytes_max = self.config().max_request_size;
        let mut batches: Vec<SentBatch> = Vec::new();
        let mut request_bytes = 0usize;

        // Resends first: one per partition, only when nothing of it is in flight.
        for state in self.partitions.values_mut() {
            if state.in_flight > 0 || state.resetting {
                continue;
            }
            let Some((&order, batch)) = state.retries.first_key_value() else {
                continue;
            };
            if batch.retry_at > now {
                continue;
            }
            if !batches.is_empty() && request_bytes + batch.bytes.len() > request_bytes_max {
                continue;
            }
            if let Some(mut batch) = state.retries.remove(&order) {
                batch.sent_behind_another = state.unacknowledged.range(..order).next().is_some();
                request_bytes += batch.bytes.len();
                state.in_flight += 1;
                batches.push(batch);
            }
        }

        // Then new batches, at most one per partition per request.
        let flush = self.shared.flushes.load(Ordering::Acquire) > 0
            || self.shared.closing.load(Ordering::Acquire);
        let mut taken: Vec<(PartitionKey, PendingBatch)> = Vec::new();
        {
            let mut guard = self.shared.lock();
            let state = &mut *guard;
            for key in state.accumulator.ready(now, flush) {
                if batches.iter().any(|batch| batch.key == key) {
                    continue;
                }
                let producer = if key.partition == NODE_PARTITIONED {
                    None
                } else {
                    self.producer
                };
                let partition = self
                    .partitions
                    .entry(key.clone())
                    .or_insert_with(|| PartitionState::new(producer));
                if !partition.accepts_new(in_flight_max) {
                    continue;
                }
                if !(batches.is_empty() && taken.is_empty()) {
                    let next_bytes = state
                        .accumulator
                        .front_bytes(&key)
                        .unwrap_or(request_bytes_max);
                    if request_bytes + next_bytes > request_bytes_max {
                        continue;
                    }
                }
                if let Some(batch) = state.accumulator.take(&key) {
                    request_bytes += batch.bytes;
                    if key.partition == NODE_PARTITIONED {
                        taken.push((key, batch));
                        continue;
                    }
                    // Sticky partitioning moves on once a batch of its partition leaves.
                    let partition_count = state
                        .topics
                        .get(&*key.topic)
                        .map_or(key.partition + 1, |topic| topic.partition_count);
                    state
                        .partitioner
                        .on_batch_complete(&key.topic, key.partition, partition_count);
                    taken.push((key, batch));
                }
            }
        }
        for (key, pending) in taken {
            if let Some(batch) = self.number_and_encode(key, pending, now) {
                batches.push(batch);
            }
        }
        if batches.is_empty() {
            return false;
        }
        self.spawn_produce(batches);
        true
    }

    /// Gives `pending` its sequence number and bytes. An encoding failure fails the batch.
    fn number_and_encode(
        &mut self,
        key: PartitionKey,
        pending: PendingBatch,
        now: Instant,
    ) -> Option<SentBatch> {
        let idempotent = self.idempotent(&key);
        let compression = self.config().compression;
        let state = self
            .partitions
            .get_mut(&key)
            .expect("send_ready creates the partition state before taking a batch");
        let record_count = pending.records.len();
        let options = EncodeOptions {
            compression,
            producer_id: state.producer_id,
            producer_epoch: state.producer_epoch,
            base_sequence: if idempotent {
                state.next_sequence
            } else {
                NO_SEQUENCE
            },
            ..EncodeOptions::default()
        };
        let bytes = match encode_batch(&pending.records, &options) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.fail_unsent(pending, ProduceError::Encode(error.to_string()));
                return None;
            }
        };
        if idempotent {
            // Kafka's sequences wrap at i32::MAX back to 0; record counts are below i32::MAX.
            let count = i32::try_from(record_count).unwrap_or(i32::MAX);
            state.next_sequence = next_sequence(state.next_sequence, count);
        }
        let order = BatchOrder {
            batch: state.next_order,
            first_record: 0,
        };
        state.next_order += 1;
        // Every unacknowledged batch has a lower order than this new one.
        let sent_behind_another = !state.unacknowledged.is_empty();
        state.unacknowledged.insert(order);
        state.in_flight += 1;
        Some(SentBatch {
            key,
            order,
            bytes,
            record_count,
            memory: pending.bytes,
            completion: pending.completion,
            records: ALL_RECORDS,
            created: pending.created,
            attempts: 0,
            retry_at: now,
            last_error: None,
            sent_behind_another,
        })
    }

    /// Sends `batches` to their partitions' leaders: one request per leader, each partition
    /// carrying the leader epoch the client's metadata names (KIP-320), so a stale leader or
    /// stale metadata is refused rather than obeyed.
    fn spawn_produce(&mut self, batches: Vec<SentBatch>) {
        let acks = self.config().acks;
        let timeout_ms = u32::try_from(self.shared.client.config().request_timeout.as_millis())
            .unwrap_or(u32::MAX);
        let client = self.shared.client.clone();
        self.tasks.spawn(async move {
            let partitions: Vec<(&str, u32)> = batches
                .iter()
                .map(|batch| (&*batch.key.topic, batch.key.partition))
                .collect();
            let routes = client.routes(&partitions).await;
            let mut by_node: Vec<(SocketAddr, Vec<RoutedBatch>)> = Vec::new();
            for (batch, (node, leader_epoch)) in batches.into_iter().zip(routes) {
                match by_node.iter_mut().find(|(known, _)| *known == node) {
                    Some((_, group)) => group.push((batch, leader_epoch)),
                    None => by_node.push((node, vec![(batch, leader_epoch)])),
                }
            }
            let sends = by_node.into_iter().map(|(node, group)| {
                let client = client.clone();
                async move {
                    let request = produce_request(acks, timeout_ms, &group);
                    let (batches, leader_epochs): (Vec<SentBatch>, Vec<Option<i32>>) =
                        group.into_iter().unzip();
                    let result = if acks == Acks::None {
                        client.send_only(node, &request).await.map(|()| None)
                    } else {
                        let led: Vec<(&str, u32, Option<i32>)> = batches
                            .iter()
                            .zip(&leader_epochs)
                            .map(|(batch, epoch)| (&*batch.key.topic, batch.key.partition, *epoch))
                            .collect();
                        // A dead leader never answers, and QUIC notices only at the idle
                        // timeout: give up on it as soon as the cluster names another.
                        let answer = tokio::select! {
                            biased;
                            answer = client.request_to(node, &request, Duration::ZERO) => answer,
                            () = client.leader_moved_away(node, &led, Duration::ZERO) => {
                                Err(RequestError::LeaderMoved { node: node.to_string() })
                            }
                        };
                        match answer {
                            Ok(Response::Produce(response)) => Ok(Some(response)),
                            Ok(other) => Err(unexpected(wire::ApiKey::Produce, &other)),
                            Err(error) => Err(error),
                        }
                    };
                    TaskOutcome::Produce { batches, result }
                }
            });
            TaskOutcome::Routed(futures_util::future::join_all(sends).await)
        });
    }

    fn handle(&mut self, outcome: TaskOutcome, now: Instant) {
        match outcome {
            TaskOutcome::Routed(outcomes) => {
                for outcome in outcomes {
                    self.handle(outcome, now);
                }
            }
            TaskOutcome::Produce { batches, result } => match result {
                Err(error) => {
                    for batch in batches {
                        self.failed(batch, ProduceError::Request(error.clone()), now);
                    }
                }
                Ok(None) => {
                    for batch in batches {
                        self.acknowledged(
                            batch,
                            BatchAck {
                                base_offset: None,
                                log_append_time: None,
                                placements: None,
                                throttle_time: Duration::ZERO,
                            },
                        );
                    }
                }
                Ok(Some(response)) => self.handle_response(batches, response, now),
            },
            TaskOutcome::ProducerId { key, result } => {
                let Some(state) = self.partitions.get_mut(&key) else {
                    return;
                };
                state.resetting = false;
                if let Some((producer_id, producer_epoch)) = result {
                    tracing::debug!(
                        topic = %key.topic,
                        partition = key.partition,
                        producer_id,
                        "partition restarts with a fresh producer id"
                    );
                    state.producer_id = producer_id;
                    state.producer_epoch = producer_epoch;
                    state.next_sequence = 0;
                    state.failure = None;
                    state.established = false;
                }
                // On failure `failure` stays set and the next `settle` asks again.
                self.settle(&key);
            }
        }
    }

    fn handle_response(
        &mut self,
        batches: Vec<SentBatch>,
        response: ProduceResponse,
        now: Instant,
    ) {
        for batch in batches {
            let answer = response
                .topics
                .iter()
                .find(|topic| *topic.name == *batch.key.topic)
                .and_then(|topic| {
                    topic
                        .partitions
                        .iter()
                        .find(|partition| partition.partition == batch.key.partition)
                });
            match answer {
                None => {
                    let error = RequestError::MalformedResponse(format!(
                        "produce response has no answer for {}/{}",
                        batch.key.topic, batch.key.partition
                    ));
                    self.failed(batch, ProduceError::Request(error), now);
                }
                Some(answer) if answer.error == ErrorCode::None => {
                    match batch_ack(answer, &batch.key, batch.record_count) {
                        Ok(mut ack) => {
                            ack.throttle_time =
                                Duration::from_millis(u64::from(response.throttle_time_ms));
                            self.acknowledged(batch, ack);
                        }
                        Err(message) => {
                            let error = RequestError::MalformedResponse(message);
                            self.failed(batch, ProduceError::Request(error), now);
                        }
                    }
                }
                Some(answer) => {
                    // NotLeaderOrFollower and the like: the next send looks the leader up again.
                    self.shared.client.partition_error(
                        &batch.key.topic,
                        batch.key.partition,
                        answer.error,
                    );
                    let error = ProduceError::Node {
                        topic: batch.key.topic.to_string(),
                        partition: batch.key.partition,
                        code: answer.error,
                        message: answer.message.clone(),
                    };
                    self.failed(batch, error, now);
                }
            }
        }
    }

    fn acknowledged(&mut self, batch: SentBatch, ack: BatchAck) {
        if let Some(state) = self.partitions.get_mut(&batch.key) {
            state.established = true;
            state.in_flight = state.in_flight.saturating_sub(1);
            state.unacknowledged.remove(&batch.order);
        }
        let key = batch.key.clone();
        self.finish(batch, Ok(ack));
        self.settle(&key);
    }

    fn failed(&mut self, mut batch: SentBatch, error: ProduceError, now: Instant) {
        let idempotent = self.idempotent(&batch.key);
        let retries_max = self.config().retries;
        let delivery_timeout = self.config().delivery_timeout;
        let backoff_wait = backoff(self.config(), batch.attempts.saturating_add(1));
        let compression = self.config().compression;
        let key = batch.key.clone();
        let too_large = error.code() == Some(ErrorCode::MessageTooLarge);
        if too_large
            || error.code() == Some(ErrorCode::UnknownTopicOrPartition)
            || (key.partition == NODE_PARTITIONED
                && error.code() == Some(ErrorCode::InvalidRequest))
        {
            // The topic may have been deleted or shrunk, lost its partitioner module, or had
            // its `max.message.bytes` lowered: look it up again on the next send.
            self.shared.forget_topic(&key.topic);
        }
        let Some(state) = self.partitions.get_mut(&key) else {
            self.finish(batch, Err(error));
            return;
        };
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some((_, cause)) = state
            .failure
            .as_ref()
            .filter(|(failed_order, _)| batch.order > *failed_order)
        {
            let aborted = ProduceError::Aborted {
                topic: key.topic.to_string(),
                partition: key.partition,
                cause: cause.clone(),
            };
            state.unacknowledged.remove(&batch.order);
            self.finish(batch, Err(aborted));
            self.settle(&key);
            return;
        }
        let expired = now >= batch.created + delivery_timeout;
        if too_large && batch.record_count > 1 && !expired {
            let order = batch.order;
            match split(&batch, compression, &error) {
                Ok(halves) => {
                    tracing::debug!(
                        topic = %key.topic,
                        partition = key.partition,
                        "batch refused as too large: resending it in two halves"
                    );
                    state.unacknowledged.remove(&order);
                    for mut half in halves {
                        half.retry_at = now;
                        state.unacknowledged.insert(half.order);
                        state.retries.insert(half.order, half);
                    }
                }
                Err(error) => self.fail_for_good(batch, error),
            }
            return;
        }
        // Acknowledgements can come back in another order than the node processed the
        // requests, so what counts is whether a lower batch was out when this one was sent.
        let overtaken = idempotent
            && error.code() == Some(ErrorCode::OutOfOrderSequenceNumber)
            && (batch.sent_behind_another
                || state.unacknowledged.range(..batch.order).next().is_some());
        let retriable = overtaken || is_retriable(&error);
        if !overtaken {
            batch.attempts = batch.attempts.saturating_add(1);
        }
        if retriable && batch.attempts <= retries_max && !expired {
            tracing::debug!(
                topic = %key.topic,
                partition = key.partition,
                attempts = batch.attempts,
                %error,
                "resending batch"
            );
            batch.retry_at = resend_at(&error, overtaken, now, backoff_wait);
            batch.last_error = Some(error);
            state.retries.insert(batch.order, batch);
            return;
        }
        let error = if retriable && expired {
            ProduceError::DeliveryTimeout {
                timeout: delivery_timeout,
                last_error: error.to_string(),
            }
        } else {
            error
        };
        self.fail_for_good(batch, error);
    }

    /// Fails `batch` and, with idempotence, every later numbered batch of its partition.
    fn fail_for_good(&mut self, batch: SentBatch, error: ProduceError) {
        let key = batch.key.clone();
        let idempotent = self.idempotent(&key);
        let mut aborted = Vec::new();
        if let Some(state) = self.partitions.get_mut(&key) {
            state.unacknowledged.remove(&batch.order);
            if idempotent {
                // Only batches after the failed one are doomed; earlier ones waiting for a
                // resend may still be written, and go on.
                let failed_order = state
                    .failure
                    .as_ref()
                    .map_or(batch.order, |(order, _)| (*order).min(batch.order));
                state.failure = Some((failed_order, error.to_string()));
                let later = state.retries.split_off(&batch.order.successor());
                for (order, later) in later {
                    state.unacknowledged.remove(&order);
                    aborted.push(later);
                }
            }
        }
        let cause = error.to_string();
        self.finish(batch, Err(error));
        for later in aborted {
            let error = ProduceError::Aborted {
                topic: key.topic.to_string(),
                partition: key.partition,
                cause: cause.clone(),
            };
            self.finish(later, Err(error));
        }
        self.settle(&key);
    }

    /// Once a failed partition has nothing in flight, asks for a fresh producer id for it.
    fn settle(&mut self, key: &PartitionKey) {
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        if state.failure.is_none()
            || self.shared.client.is_closed()
            || state.resetting
            || state.in_flight > 0
            || !state.retries.is_empty()
        {
            return;
        }
        state.resetting = true;
        let client = self.shared.client.clone();
        let patience = self.shared.config.delivery_timeout;
        let pause = self.shared.config.retry_backoff_max;
        let key = key.clone();
        self.tasks.spawn(async move {
            let result = match init_producer_id(&client, patience).await {
                Ok(producer) => Some(producer),
                Err(error) => {
                    tracing::warn!(%error, "cannot get a fresh producer id; trying again");
                    tokio::time::sleep(pause).await;
                    None
                }
            };
            TaskOutcome::ProducerId { key, result }
        });
    }

    /// Fails every batch not in flight (never sent, or waiting for a resend) with `error`, and
    /// stops asking for fresh producer ids: nothing can be sent any more (the client was
    /// closed), and `Producer::close` must not wait for what will never leave.
    fn fail_waiting(&mut self, error: &ProduceError) {
        let waiting = self.shared.lock().accumulator.take_all();
        for (_, batch) in waiting {
            self.fail_unsent(batch, error.clone());
        }
        let mut retries = Vec::new();
        for state in self.partitions.values_mut() {
            state
                .failure
                .get_or_insert_with(|| (BatchOrder::FIRST, error.to_string()));
            for (order, batch) in std::mem::take(&mut state.retries) {
                state.unacknowledged.remove(&order);
                retries.push(batch);
            }
        }
        for batch in retries {
            self.finish(batch, Err(error.clone()));
        }
    }

    fn finish(&self, batch: SentBatch, outcome: Result<BatchAck, ProduceError>) {
        batch.completion.complete(batch.records.clone(), outcome);
        self.shared.release(batch.record_count, batch.memory);
    }

    /// Fails a batch that never left the accumulator (or could not be encoded).
    fn fail_unsent(&self, batch: PendingBatch, error: ProduceError) {
        batch.completion.complete(ALL_RECORDS, Err(error));
        self.shared.release(batch.records.len(), batch.bytes);
    }

    /// Fails batches older than `delivery_timeout`: those that never left, and resends.
    fn expire(&mut self, now: Instant) {
        let timeout = self.config().delivery_timeout;
        let expired = self.shared.lock().accumulator.take_expired(now, timeout);
        for (_, batch) in expired {
            let error = ProduceError::DeliveryTimeout {
                timeout,
                last_error: "none: the batch was never sent".into(),
            };
            self.fail_unsent(batch, error);
        }
        let mut due = Vec::new();
        for state in self.partitions.values_mut() {
            let first = state
                .retries
                .first_key_value()
                .map(|(&order, batch)| (order, batch.created));
            if let Some((order, created)) = first
                && now >= created + timeout
                && let Some(batch) = state.retries.remove(&order)
            {
                due.push(batch);
            }
        }
        for batch in due {
            let last_error = batch
                .last_error
                .as_ref()
                .map_or_else(|| "none".to_string(), ToString::to_string);
            self.fail_for_good(
                batch,
                ProduceError::DeliveryTimeout {
                    timeout,
                    last_error,
                },
            );
        }
    }

    /// The next time something becomes due without a wake-up: a linger running out for a
    /// partition that may send, a resend's backoff, or an expiry.
    fn next_deadline(&self) -> Option<Instant> {
        let in_flight_max = self.config().max_in_flight_per_partition;
        let timeout = self.config().delivery_timeout;
        let state = self.shared.lock();
        let mut deadline = state.accumulator.next_expiry(timeout);
        let mut consider = |candidate: Instant| {
            deadline = Some(deadline.map_or(candidate, |current| current.min(candidate)));
        };
        for (key, created) in state.accumulator.open_fronts() {
            let may_send = self
                .partitions
                .get(key)
                .is_none_or(|partition| partition.accepts_new(in_flight_max));
            if may_send {
                consider(created + state.accumulator.linger());
            }
        }
        for partition in self.partitions.values() {
            if let Some((_, batch)) = partition.retries.first_key_value() {
                consider(batch.created + timeout);
                if partition.in_flight == 0 && !partition.resetting {
                    consider(batch.retry_at);
                }
            }
        }
        deadline
    }
}

/// Splits `batch`, refused by the node with `error` (`MessageTooLarge`), into two batches of
/// about half its records each, in order: the first keeps the batch's base sequence, the
/// second continues from it (see the module docs). Returns the error to fail the batch with
/// if it cannot be split: one record, or bytes that do not decode (they are the
/// producer's own, so that would be a bug in the codec).
fn split(
    batch: &SentBatch,
    compression: ledge_protocol::Compression,
    error: &ProduceError,
) -> Result<[SentBatch; 2], ProduceError> {
    // The batch's estimated size bounds its records' decoded size; its count bounds the rest.
    let limits = DecodeLimits {
        decompressed_bytes_max: batch.memory.saturating_mul(2).max(batch.bytes.len()),
        records_max: batch.record_count,
        headers_max: usize::MAX,
    };
    let decoded = match decode_batch(&batch.bytes, &limits) {
        Ok(decoded) if decoded.records.len() > 1 => decoded,
        Ok(_) => return Err(error.clone()),
        Err(decode) => {
            return Err(ProduceError::Encode(format!(
                "cannot split a refused batch: {decode}"
            )));
        }
    };
    let header = decoded.header;
    let mut records: Vec<Record> = decoded
        .records
        .into_iter()
        .map(ledge_protocol::DecodedRecord::into_record)
        .collect();
    let second_records = records.split_off(records.len() / 2);
    let first_records = records;
    let first_count = first_records.len();
    // Below `record_count`, itself from an `i32` field.
    let first_count_i32 = i32::try_from(first_count).unwrap_or(i32::MAX);
    let first_count_u32 = u32::try_from(first_count).unwrap_or(u32::MAX);
    let first_memory: usize = first_records
        .iter()
        .map(|record| {
            estimated_record_size(record.key.as_ref(), record.value.as_ref(), &record.headers)
        })
        .sum::<usize>()
        .min(batch.memory);
    let second_base_sequence = if header.base_sequence == NO_SEQUENCE {
        NO_SEQUENCE
    } else {
        next_sequence(header.base_sequence, first_count_i32)
    };
    let encode = |records: &[Record], base_sequence: i32| {
        let options = EncodeOptions {
            compression,
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence,
            ..EncodeOptions::default()
        };
        encode_batch(records, &options)
    };
    let (first_bytes, second_bytes) = match (
        encode(&first_records, header.base_sequence),
        encode(&second_records, second_base_sequence),
    ) {
        (Ok(first), Ok(second)) => (first, second),
        (Err(encode), _) | (_, Err(encode)) => {
            return Err(ProduceError::Encode(encode.to_string()));
        }
    };
    let middle = batch.records.start.saturating_add(first_count_u32);
    let part =
        |order: BatchOrder, bytes: Bytes, record_count: usize, memory: usize, records| SentBatch {
            key: batch.key.clone(),
            order,
            bytes,
            record_count,
            memory,
            completion: batch.completion.clone(),
            records,
            created: batch.created,
            attempts: batch.attempts,
            retry_at: batch.retry_at,
            last_error: Some(error.clone()),
            sent_behind_another: false,
        };
    let first = part(
        batch.order,
        first_bytes,
        first_count,
        first_memory,
        batch.records.start..middle,
    );
    let second = part(
        BatchOrder {
            batch: batch.order.batch,
            first_record: batch.order.first_record.saturating_add(first_count_u32),
        },
        second_bytes,
        second_records.len(),
        batch.memory - first_memory,
        middle..batch.records.end,
    );
    Ok([first, second])
}

/// What a successful answer says about the batch of `record_count` records for `key`: its
/// first offset, or for a node-partitioned batch where each record went. An answer that does
/// not account for every record is an error.
pub(super) fn batch_ack(
    answer: &ProducePartitionResponse,
    key: &PartitionKey,
    record_count: usize,
) -> Result<BatchAck, String> {
    let log_append_time = (answer.log_append_time_ms >= 0).then_some(answer.log_append_time_ms);
    if key.partition != NODE_PARTITIONED {
        return Ok(BatchAck {
            base_offset: Some(answer.base_offset),
            log_append_time,
            placements: None,
            throttle_time: Duration::ZERO,
        });
    }
    let Some(routing) = &answer.routed else {
        return Err(format!(
            "node-partitioned produce to {} answered without routing",
            key.topic
        ));
    };
    let placements = place_records(routing, record_count)
        .map_err(|message| format!("{message} (topic {})", key.topic))?;
    Ok(BatchAck {
        base_offset: None,
        log_append_time,
        placements: Some(placements.into()),
        throttle_time: Duration::ZERO,
    })
}

/// A batch and the leader epoch its partition's leader is known at.
type RoutedBatch = (SentBatch, Option<i32>);

/// One produce request for `group`'s batches, each with its partition's leader epoch.
fn produce_request(acks: Acks, timeout_ms: u32, group: &[RoutedBatch]) -> Request {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for (batch, leader_epoch) in group {
        let partition = ProducePartition {
            partition: batch.key.partition,
            current_leader_epoch: *leader_epoch,
            records: batch.bytes.clone(),
        };
        match topics
            .iter_mut()
            .find(|topic| *topic.name == *batch.key.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(ProduceTopic {
                name: batch.key.topic.to_string(),
                partitions: vec![partition],
            }),
        }
    }
    Request::Produce(ProduceRequest {
        acks,
        timeout_ms,
        topics,
    })
}

/// Retriable by the node's code, or a transport failure worth another try.
fn is_retriable(error: &ProduceError) -> bool {
    match error {
        ProduceError::Node { code, .. } => code.is_retriable(),
        ProduceError::Request(error) => error.is_retriable(),
        _ => false,
    }
}

/// When a batch that failed at `now` with retriable `error` goes again: at once when it was
/// only overtaken, or when it was given up because its partition's leader moved (the new
/// leader is known, that is why); after `backoff_wait` otherwise.
fn resend_at(
    error: &ProduceError,
    overtaken: bool,
    now: Instant,
    backoff_wait: Duration,
) -> Instant {
    let leader_moved = matches!(
        error,
        ProduceError::Request(RequestError::LeaderMoved { .. })
    );
    if overtaken || leader_moved {
        now
    } else {
        now + backoff_wait
    }
}

/// The sequence after `count` records from `sequence`, wrapping past `i32::MAX` to 0 as
/// Kafka's `DefaultRecordBatch.incrementSequence` does.
pub(super) fn next_sequence(sequence: i32, count: i32) -> i32 {
    if sequence > i32::MAX - count {
        count - (i32::MAX - sequence) - 1
    } else {
        sequence + count
    }
}

#[cfg(test)]
mod tests;
