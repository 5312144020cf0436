//! Ledge client SDK: a Kafka-shaped producer, consumer and admin client over QUIC.
//!
//! The important types, in the order a program meets them:
//!
//! - [`Client`]: the one QUIC connection (TLS always on, ALPN `ledge/1`) that everything
//!   built from it shares. [`ClientConfig`] says where the node is and how to trust it
//!   ([`Trust::CaFile`] with the node's `<data-dir>/tls/ca.pem`). A lost connection (a node
//!   restart) is made again on the next request.
//! - [`Producer`]: [`Producer::send`] enqueues a [`ProducerRecord`] and hands back a
//!   [`DeliveryFuture`] that resolves to [`RecordMetadata`] once the node acknowledges it.
//!   Records are batched per partition (`batch_size`, `linger`), optionally compressed, and
//!   sent idempotently by default: a resent batch is never written twice, and order within a
//!   partition is kept across retries and node restarts. Keys are partitioned exactly as
//!   Kafka's Java client does ([`partitioner::murmur2`]).
//! - [`Consumer`]: [`Consumer::assign`] partitions, then [`Consumer::poll`] or
//!   [`Consumer::stream`]; [`Consumer::seek`], [`Consumer::offsets_for_times`] and
//!   [`OffsetReset`] place the position.
//! - [`Admin`]: topics and their configs.
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

#![warn(missing_docs)]

mod admin;
mod clock;
mod config;
mod connection;
mod consumer;
mod error;
pub mod partitioner;
mod producer;

pub use admin::{
    Admin, ConfigValue, ListedOffset, NewTopic, PartitionDescription, TopicDescription,
    TopicListing,
};
pub use config::{
    CONNECT_TIMEOUT_DEFAULT, ClientConfig, IDLE_TIMEOUT_DEFAULT, REQUEST_TIMEOUT_DEFAULT,
    SERVER_DEFAULT, SOCKET_BUFFER_BYTES_DEFAULT, Trust,
};
pub use connection::Client;
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, OffsetAndTimestamp, OffsetReset, TopicPartition,
};
pub use error::{
    AdminError, ConnectError, ConsumeError, CreateProducerError, ProduceError, RequestError,
};
pub use partitioner::{DefaultPartitioner, Partitioner};
pub use producer::{
    BATCH_SIZE_DEFAULT, BUFFER_MEMORY_DEFAULT, DeliveryFuture, IDEMPOTENT_IN_FLIGHT_MAX,
    MAX_REQUEST_SIZE_DEFAULT, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
};

/// The trait of [`Consumer::stream`]'s return value (from `futures-core`), re-exported so
/// callers can name and poll it without depending on `futures` themselves.
pub use futures_core::Stream;

/// Types from `ledge-protocol` that appear in this crate's API.
pub use ledge_protocol::wire::{Acks, ErrorCode, OffsetSpec};
pub use ledge_protocol::{Compression, Header};
