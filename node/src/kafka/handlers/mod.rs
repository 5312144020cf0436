//! Per-API handlers: each translates a Kafka request into the node's own request, has the
//! [`Broker`](crate::broker::Broker) answer it (so produce filters, partitioners,
//! idempotence, acks and replication apply exactly as on QUIC), and translates the answer
//! back. The translations are plain functions over values.

pub mod cluster;
pub mod configs;
pub mod fetch;
pub mod log_edges;
pub mod produce;
pub mod producers;
pub mod quotas;
pub mod security;
pub mod topics;

use std::collections::BTreeMap;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::controller::records::KafkaListeners;
use crate::kafka::dispatch::ListenerKind;

/// Where Kafka clients reach the nodes.
#[derive(Clone, Copy, Debug)]
pub struct NodeAddresses<'a> {
    /// This node's advertised Kafka address, `host:port`.
    pub own: &'a str,
    /// The socket the request came in on.
    pub kind: ListenerKind,
    /// The other nodes' Kafka listeners, as they registered them with the controller.
    pub registered: &'a BTreeMap<u32, Option<KafkaListeners>>,
}

impl NodeAddresses<'_> {
    /// The Kafka `(host, port)` of `node_id`, whose native (QUIC) address is `address`, on
    /// the listener kind the request came in on; `None` when that node has no such
    /// listener (Kafka leaves a broker without the client's listener out of Metadata).
    /// A node registered without its Kafka listeners (built before nodes said so) is
    /// taken to listen for plaintext Kafka at its QUIC address and port on TCP, the
    /// default `[kafka] listen`.
    pub fn kafka_address(
        &self,
        own_id: u32,
        node_id: u32,
        address: &str,
    ) -> Option<(StrBytes, i32)> {
        if node_id == own_id {
            return Some(split_host_port(self.own));
        }
        let registered = self.registered.get(&node_id).cloned().flatten();
        let listener = match (registered, self.kind) {
            (Some(listeners), ListenerKind::Plaintext) => listeners.plaintext,
            (Some(listeners), ListenerKind::Tls) => listeners.tls,
            (None, ListenerKind::Plaintext) => Some(address.to_owned()),
            (None, ListenerKind::Tls) => None,
        };
        listener.map(|listener| split_host_port(&listener))
    }
}

/// `host:port` (`[v6]:port` too) as Kafka's separate host and port; port -1 if missing.
pub fn split_host_port(address: &str) -> (StrBytes, i32) {
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(-1)),
        None => (address, -1),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (StrBytes::from_string(host.to_owned()), port)
}

/// A node id as Kafka's `i32` (ids above `i32::MAX` do not occur: the cluster config bounds
/// them; -1 would be read as "none").
pub fn broker_id(node_id: u32) -> i32 {
    i32::try_from(node_id).unwrap_or(-1)
}

/// A topic name as text.
pub fn topic_name(name: &TopicName) -> String {
    name.0.as_str().to_owned()
}

/// A `String` as Kafka's.
pub fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// An error message, `None` when empty.
pub fn message(value: &str) -> Option<StrBytes> {
    (!value.is_empty()).then(|| text(value))
}

/// A topic id in the node's text form (32 hex digits, KIP-516) as Kafka's UUID; nil if none.
pub fn topic_uuid(topic_id: &str) -> uuid::Uuid {
    u128::from_str_radix(topic_id, 16)
        .ok()
        .filter(|_| topic_id.len() == 32)
        .map_or(uuid::Uuid::nil(), uuid::Uuid::from_u128)
}

/// The topic id Kafka clients see for topic `name` whose node id is `topic_id`: the
/// controller's id in a cluster, the node's own (drawn at creation) on a node without
/// `[cluster]`. Kafka 4 clients need one: KIP-848 assignments name topics only by id, and
/// the Java consumer resolves them through Metadata. A topic the broker names without an id
/// (none it lists; a topic left in an assignment after its deletion) gets the id builds
/// before 2026-12 derived from its name, which no Metadata answer gives any more, so
/// clients find it unknown.
pub fn kafka_topic_id(topic_id: &str, name: &str) -> uuid::Uuid {
    if topic_id.is_empty() {
        return topic_uuid(&crate::broker::metadata::legacy_topic_id(name));
    }
    topic_uuid(topic_id)
}

/// Asks the broker and takes the answer of the same API; `Err` carries the API of an answer
/// of another kind (which `Broker::handle_from` never gives).
macro_rules! ask {
    ($broker:expr, $client_id:expr, $kind:ident($request:expr)) => {
        match $broker
            .handle_from($client_id, ledge_protocol::wire::Request::$kind($request))
            .await
        {
            ledge_protocol::wire::Response::$kind(response) => Ok(response),
            other => Err(other.api_key()),
        }
    };
}
pub(crate) use ask;

/// Topic names by Kafka topic id and back, for the topics clients can see: what requests
/// that name topics by id (KIP-516) are resolved with.
pub struct TopicIds {
    /// Each listed topic's id.
    pub by_name: BTreeMap<String, uuid::Uuid>,
    /// Each listed topic by its id.
    pub by_id: BTreeMap<uuid::Uuid, String>,
}

impl TopicIds {
    /// The ids of every topic the broker's Metadata lists now.
    pub async fn of<D: crate::storage::Disk>(broker: &crate::broker::Broker<D>) -> Self {
        let topics = match ask!(
            broker,
            "",
            Metadata(ledge_protocol::wire::MetadataRequest { topics: None })
        ) {
            Ok(native) => native.topics,
            Err(api) => {
                tracing::error!(?api, "kafka topic ids: the broker answered another API");
                Vec::new()
            }
        };
        let by_name: BTreeMap<String, uuid::Uuid> = topics
            .into_iter()
            .filter(|topic| topic.error == ledge_protocol::wire::ErrorCode::None)
            .map(|topic| {
                let id = kafka_topic_id(&topic.topic_id, &topic.name);
                (topic.name, id)
            })
            .collect();
        let by_id = by_name
            .iter()
            .map(|(name, id)| (*id, name.clone()))
            .collect();
        Self { by_name, by_id }
    }

    /// The name of the topic with id `id`, if one has it.
    pub fn name_of(&self, id: &uuid::Uuid) -> Option<&str> {
        self.by_id.get(id).map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
