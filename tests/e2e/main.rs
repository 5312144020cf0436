//! End-to-end tests (one binary): real `ledge-node` processes on loopback.
// The whole binary is test code: an unwrap that fails is a failed test.
#![allow(clippy::unwrap_used)]
mod add_partitions;
mod broker_metadata;
mod cli;
mod client_failover;
mod cluster;
mod cluster_client;
mod cluster_groups;
mod cluster_harness;
mod cluster_ops;
mod cluster_partitions;
mod cluster_plugins;
mod cluster_topics;
mod cluster_wiped;
mod damage;
mod fault_proxy;
mod groups;
mod groups_more;
mod in_flight;
mod kafka_clients;
mod kafka_cluster_ports;
mod kafka_confluent_aiokafka;
mod kafka_groups;
mod kafka_java;
mod kafka_tls;
mod node;
mod process;
mod produce_validation;
mod repair_dump;
mod replication;
mod replication_matrix;
mod retention;
mod sdk_produce_consume;
mod wasm;
