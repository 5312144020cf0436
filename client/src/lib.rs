//! Ledge client SDK: a Kafka-shaped producer, consumer and admin client over QUIC.
//!
//! The important types, in the order a program meets them:
//!
//! - [`Client`]: the one QUIC connection (TLS always on, ALPN `ledge/1`) that everything
//!   built from it shares. [`ClientConfig`] says where the node is and how to trust it
//!   ([`Trust::CaFile`] with the node's `<data-dir>/tls/ca.pem`). A lost connection (a node
//!   restart) is made again on the next request; after [`Client::close`] nothing is.
//! - [`Producer`]: [`Producer::send`] enqueues a [`ProducerRecord`] and hands back a
//!   [`DeliveryFuture`] that resolves to [`RecordMetadata`] once the node acknowledges it.
//!   Records are batched per partition (ready at `batch_size` or after `linger`; a ready
//!   batch keeps growing up to `batch_size_max` until it can leave), optionally compressed, and
//!   sent idempotently by default: a resent batch is never written twice, and order within a
//!   partition is kept across retries and node restarts. Keys are partitioned exactly as
//!   Kafka's Java client does ([`partitioner::murmur2`]).
//! - [`Consumer`]: [`Consumer::assign`] partitions, then [`Consumer::poll`] or
//!   [`Consumer::stream`]; [`Consumer::seek`], [`Consumer::offsets_for_times`] and
//!   [`OffsetReset`] place the position.
//! - [`Consumer::subscribe`] with [`ConsumerConfig::group_id`]: a member of a consumer group;
//!   the node spreads the partitions over the members and moves them as members come and go
//!   ([`RebalanceListener`]); [`Consumer::commit`] stores progress durably in the group.
//! - [`Admin`]: topics, their configs and added partitions ([`Admin::create_partitions`]);
//!   groups, their lag, offset resets; WASM plug-ins: named modules
//!   ([`Admin::upload_module`]) for fetches ([`FetchPlugin`]) and topic configs
//!   (`partitioner.module`, `produce.filter.module`), and topic transforms
//!   ([`Admin::deploy_transform`]) the node runs from one topic to another.
//!
//! Each operation has its own error type ([`ProduceError`], [`ConsumeError`], [`AdminError`],
//! ...); those from the node carry its [`wire::ErrorCode`](ledge_protocol::wire::ErrorCode).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ledge_client::{
//!     Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
//!     ProducerConfig, ProducerRecord, TopicPartition, Trust,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClientConfig::new("127.0.0.1:9092", Trust::CaFile("ledge-data/tls/ca.pem".into()));
//! let client = Client::connect(config).await?;
//!
//! Admin::new(&client)
//!     .create_topics(vec![NewTopic::new("orders", 3)], false)
//!     .await?;
//!
//! let producer = Producer::new(&client, ProducerConfig::default()).await?;
//! let mut deliveries = Vec::new();
//! for id in 0..1000 {
//!     let record = ProducerRecord::new("orders", format!("order {id}"))
//!         .key(format!("customer-{}", id % 10))
//!         .header("source", "example");
//!     deliveries.push(producer.send(record).await?);
//! }
//! for delivery in deliveries {
//!     let metadata = delivery.await?;
//!     assert!(metadata.offset.is_some());
//! }
//! producer.close().await;
//!
//! let mut config = ConsumerConfig::default();
//! config.auto_offset_reset = OffsetReset::Earliest;
//! let mut consumer = Consumer::new(&client, config);
//! consumer.assign((0..3).map(|partition| TopicPartition::new("orders", partition)).collect());
//! let records = consumer.poll(Duration::from_secs(1), 500).await?;
//! println!("read {} records", records.len());
//! # Ok(())
//! # }
//! ```
//!
//! # Consumer groups
//!
//! The seed's Python `KafkaConsumer`, line for line (`group_id`, `auto_offset_reset`,
//! `enable_auto_commit`, `auto_commit_interval_ms`, `session_timeout_ms`,
//! `heartbeat_interval_ms`, `max_poll_interval_ms` and `max_poll_records` are
//! [`ConsumerConfig`] fields or `poll` arguments):
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! use ledge_client::{
//!     Client, Consumer, ConsumerConfig, ListenerFuture, OffsetAndMetadata, OffsetReset,
//!     RebalanceListener, TopicPartition,
//! };
//!
//! struct MyRebalanceListener;
//!
//! impl RebalanceListener for MyRebalanceListener {
//!     fn on_partitions_revoked<'a>(
//!         &'a mut self,
//!         consumer: &'a mut Consumer,
//!         revoked: &'a [TopicPartition],
//!     ) -> ListenerFuture<'a> {
//!         Box::pin(async move {
//!             println!("Partitions revoked: {revoked:?}");
//!             // Commit before losing the partitions.
//!             let _ = consumer.commit().await;
//!         })
//!     }
//!
//!     fn on_partitions_assigned<'a>(
//!         &'a mut self,
//!         _consumer: &'a mut Consumer,
//!         assigned: &'a [TopicPartition],
//!     ) -> ListenerFuture<'a> {
//!         Box::pin(async move { println!("Partitions assigned: {assigned:?}") })
//!     }
//! }
//!
//! # async fn example(client: Client) -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ConsumerConfig::default();
//! config.group_id = Some("my-group".into());
//! config.auto_offset_reset = OffsetReset::Earliest;
//! config.session_timeout = Duration::from_secs(10);
//! config.heartbeat_interval = Some(Duration::from_secs(3));
//! config.max_poll_interval = Duration::from_secs(300);
//! config.enable_auto_commit = false;
//! let mut consumer = Consumer::new(&client, config);
//! consumer.set_rebalance_listener(Box::new(MyRebalanceListener));
//! consumer.subscribe(vec!["orders".into()])?;
//!
//! // messages = consumer.poll(timeout_ms=1000, max_records=100)
//! for record in consumer.poll(Duration::from_secs(1), 100).await? {
//!     println!("{}/{} @ {}: {:?}", record.topic, record.partition, record.offset, record.value);
//! }
//! consumer.commit().await?; // Commit all
//! let _pending = consumer.commit_async(); // Non-blocking commit
//! let offsets = BTreeMap::from([(
//!     TopicPartition::new("orders", 0),
//!     OffsetAndMetadata::new(100),
//! )]);
//! consumer.commit_offsets(offsets).await?; // Commit a specific offset
//! consumer.close().await?; // Commits (with auto-commit) and leaves the group at once
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod admin;
mod clock;
mod cluster;
mod config;
mod connection;
mod consumer;
mod coordinator;
mod error;
pub mod partitioner;
mod producer;
pub mod sasl;
mod throttle;

/// SASL users and ACLs: [`Admin::create_user`], [`Admin::create_acls`] and their kin.
pub use admin::quotas;
pub use admin::security;
pub use admin::snapshot;
pub use admin::table;
pub use admin::{
    Admin, ClusterDescription, ClusterNodeDescription, ClusterPartitionDescription, ConfigValue,
    GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionOffsets, ListedOffset,
    ModuleDescription, NewPartitions, NewTopic, OffsetResetSpec, OnError, PartitionDescription,
    PlannedOffset, PluginKind, PreferredLeaderElection, ReassignmentDescription, TopicDescription,
    TopicListing, TransformDescription, TransformJoin, TransformJoinStatus, TransformPartition,
    TransformPartitionStatus, TransformSpec, TransformState, TransformWindow,
};
pub use config::{
    CONNECT_TIMEOUT_DEFAULT, ClientCertificate, ClientConfig, IDLE_TIMEOUT_DEFAULT,
    LEADER_CHECK_INTERVAL_DEFAULT, METADATA_MAX_AGE_DEFAULT, REQUEST_TIMEOUT_DEFAULT,
    SERVER_DEFAULT, SOCKET_BUFFER_BYTES_DEFAULT, Trust,
};
pub use connection::Client;
pub use consumer::{
    ASSIGNOR_DEFAULT, AUTO_COMMIT_INTERVAL_DEFAULT, CommittedOffset, Consumer, ConsumerConfig,
    ConsumerRecord, FetchPlugin, ListenerFuture, MAX_POLL_INTERVAL_DEFAULT, OffsetAndMetadata,
    OffsetAndTimestamp, OffsetReset, PendingCommit, RebalanceListener, SESSION_TIMEOUT_DEFAULT,
    TopicPartition,
};
pub use error::{
    AdminError, CommitError, ConnectError, ConsumeError, CreateProducerError, ProduceError,
    RequestError,
};
pub use partitioner::{DefaultPartitioner, Partitioner};
pub use producer::{
    BATCH_SIZE_DEFAULT, BATCH_SIZE_MAX_DEFAULT, BUFFER_MEMORY_DEFAULT, DeliveryFuture,
    IDEMPOTENT_IN_FLIGHT_MAX, MAX_REQUEST_SIZE_DEFAULT, Producer, ProducerConfig, ProducerRecord,
    RecordMetadata,
};
pub use sasl::{SaslCredentials, SaslMechanism};

/// The trait of [`Consumer::stream`]'s return value (from `futures-core`), re-exported so
/// callers can name and poll it without depending on `futures` themselves.
pub use futures_core::Stream;

/// Types from `ledge-protocol` that appear in this crate's API.
pub use ledge_protocol::wire::{Acks, ErrorCode, OffsetSpec};
pub use ledge_protocol::{Compression, Header};
