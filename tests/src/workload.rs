//! The load a replication scenario runs under: idempotent acks=all producers that record
//! every send and acknowledgement, and a consumer that records every record it read, into
//! a [`History`] for [`crate::history::check`].
//!
//! Each producer sends unique values (`p<producer>-<sequence>`) round-robin over the
//! partitions, with explicit partitions (so a value's partition is known without the
//! partitioner), keeping a window of sends in flight. A send that fails or times out is
//! recorded unacknowledged: the checker allows it to be present once or absent. The
//! consumer reads every partition from offset 0 and keeps going through errors (a leader
//! lost mid-fetch), recording what it got.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ledge_client::{
    Client, Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord,
    TopicPartition,
};
use tokio::task::JoinHandle;

use crate::cluster_harness::{CONDITION_TIMEOUT, poll_until};
use crate::history::{Consumed, History, Sent};

/// What a [`Workload`] runs.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// The topic (created by the test).
    pub topic: String,
    /// Its partitions, all written and read.
    pub partitions: u32,
    /// Idempotent producers, each with its own producer id.
    pub producers: u32,
    /// Sends each producer keeps waiting for an acknowledgement.
    pub in_flight_max: usize,
    /// How long a send may take, retries through failovers included.
    pub delivery_timeout: Duration,
}

impl WorkloadOptions {
    /// Two producers, 20 sends in flight each, 60 s delivery timeout, over `partitions` of
    /// `topic`.
    pub fn new(topic: &str, partitions: u32) -> Self {
        Self {
            topic: topic.to_string(),
            partitions,
            producers: 2,
            in_flight_max: 20,
            delivery_timeout: Duration::from_secs(60),
        }
    }
}

/// A running workload; [`Workload::finish`] stops it and returns what it saw.
pub struct Workload {
    stop: Arc<AtomicBool>,
    /// Acknowledgements per partition.
    acknowledged: Arc<Vec<AtomicU64>>,
    failed: Arc<AtomicU64>,
    /// The first distinct reasons sends failed for.
    errors: Arc<Mutex<Vec<String>>>,
    producers: Vec<JoinHandle<History>>,
    consumer: JoinHandle<History>,
}

impl Workload {
    /// Starts the producers and the consumer on `runtime`, with `client`'s connections.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        client: &Client,
        options: WorkloadOptions,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(
            (0..options.partitions)
                .map(|_| AtomicU64::new(0))
                .collect::<Vec<_>>(),
        );
        let failed = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let producers = (0..options.producers)
            .map(|producer| {
                runtime.spawn(produce(
                    client.clone(),
                    options.clone(),
                    producer,
                    Arc::clone(&stop),
                    Arc::clone(&acknowledged),
                    Arc::clone(&failed),
                    Arc::clone(&errors),
                ))
            })
            .collect();
        let consumer = runtime.spawn(consume(client.clone(), options, Arc::clone(&stop)));
        Self {
            stop,
            acknowledged,
            failed,
            errors,
            producers,
            consumer,
        }
    }

    /// Sends acknowledged so far, over all partitions.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged_per_partition().iter().sum()
    }

    /// Sends acknowledged so far, per partition.
    pub fn acknowledged_per_partition(&self) -> Vec<u64> {
        self.acknowledged
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    }

    /// Sends that failed so far (timed out or refused for good).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Waits (on the calling thread) until every partition has `more` acknowledgements
    /// beyond those it has now: the cluster makes progress everywhere, not only on the
    /// partitions a fault spared.
    pub fn wait_for_progress(&self, what: &str, more: u64) {
        self.wait_for_progress_explained(what, more, String::new);
    }

    /// As [`Workload::wait_for_progress`], adding what `explain` says (the cluster's state,
    /// its nodes' logs) to the failure.
    pub fn wait_for_progress_explained(&self, what: &str, more: u64, explain: impl Fn() -> String) {
        let targets: Vec<u64> = self
            .acknowledged_per_partition()
            .iter()
            .map(|count| count + more)
            .collect();
        poll_until(
            &format!("{more} more acknowledgements on every partition {what}"),
            CONDITION_TIMEOUT,
            || {
                self.acknowledged_per_partition()
                    .iter()
                    .zip(&targets)
                    .all(|(count, target)| count >= target)
                    .then_some(())
            },
            || {
                format!(
                    "acknowledged per partition {:?} (targets {targets:?}), {} failed ({:?})\n{}",
                    self.acknowledged_per_partition(),
                    self.failed(),
                    self.errors.lock().unwrap_or_else(PoisonError::into_inner),
                    explain()
                )
            },
        );
    }

    /// Stops sending, waits for every send in flight to be answered (or time out), stops
    /// the consumer, and returns everything seen.
    pub fn finish(self, runtime: &tokio::runtime::Runtime) -> History {
        self.stop.store(true, Ordering::Relaxed);
        runtime.block_on(async {
            let mut history = History::default();
            for producer in self.producers {
                history.extend(producer.await.expect("producer task"));
            }
            history.extend(self.consumer.await.expect("consumer task"));
            history
        })
    }
}

async fn produce(
    client: Client,
    options: WorkloadOptions,
    producer_index: u32,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Vec<AtomicU64>>,
    failed: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
) -> History {
    let mut config = ProducerConfig::default();
    config.enable_idempotence = true;
    config.acks = ledge_client::Acks::All;
    config.delivery_timeout = options.delivery_timeout;
    config.max_block = options.delivery_timeout;
    let producer = Producer::new(&client, config)
        .await
        .expect("an idempotent producer");
    let mut history = History::default();
    let mut in_flight = VecDeque::new();
    let mut sequence = 0u64;
    /// Distinct failure reasons kept for a report.
    const ERRORS_KEPT_MAX: usize = 8;
    let settle = |history: &mut History, sent: Sent, result: Result<i64, String>| {
        let counter = match &result {
            Ok(_) => acknowledged.get(usize::try_from(sent.partition).unwrap_or(usize::MAX)),
            Err(error) => {
                let mut errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
                if errors.len() < ERRORS_KEPT_MAX && !errors.contains(error) {
                    errors.push(error.clone());
                }
                Some(&*failed)
            }
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        history.sent.push(Sent {
            acknowledged_offset: result.ok(),
            ..sent
        });
    };
    let offset_of = |answer: Result<ledge_client::RecordMetadata, ledge_client::ProduceError>| {
        answer
            .map_err(|error| error.to_string())
            .and_then(|metadata| metadata.offset.ok_or_else(|| "no offset".to_string()))
    };
    while !stop.load(Ordering::Relaxed) {
        let partition = u32::try_from(sequence % u64::from(options.partitions.max(1)))
            .expect("a partition number");
        let value = format!("p{producer_index}-{sequence}");
        let sent = Sent {
            producer: producer_index,
            sequence,
            partition,
            value: value.clone(),
            acknowledged_offset: None,
        };
        sequence += 1;
        let record = ProducerRecord::new(options.topic.as_str(), value).partition(partition);
        match producer.send(record).await {
            Ok(delivery) => in_flight.push_back((sent, delivery)),
            Err(error) => {
                settle(&mut history, sent, Err(error.to_string()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if in_flight.len() >= options.in_flight_max
            && let Some((sent, delivery)) = in_flight.pop_front()
        {
            settle(&mut history, sent, offset_of(delivery.await));
        }
    }
    while let Some((sent, delivery)) = in_flight.pop_front() {
        settle(&mut history, sent, offset_of(delivery.await));
    }
    producer.close().await;
    history
}

async fn consume(client: Client, options: WorkloadOptions, stop: Arc<AtomicBool>) -> History {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(&client, config);
    let partitions: Vec<TopicPartition> = (0..options.partitions)
        .map(|partition| TopicPartition::new(options.topic.as_str(), partition))
        .collect();
    consumer.assign(partitions.clone());
    for partition in &partitions {
        let _ = consumer.seek(partition, 0);
    }
    let mut history = History::default();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(200), 1_000).await {
            Ok(records) => history.consumed.extend(records.into_iter().map(|record| {
                Consumed {
                    partition: record.partition,
                    offset: record.offset,
                    value: String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
                        .into_owned(),
                }
            })),
            // A leader lost mid-fetch, a partition without a leader for a moment: the
            // consumer retries, as an application would.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    history
}
