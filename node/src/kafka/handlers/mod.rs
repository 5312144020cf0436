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
/// controller's id in a cluster; on a node without `[cluster]`, which has none, an id derived
/// from the name. Kafka 4 clients need one: KIP-848 assignments name topics only by id, and
/// the Java consumer resolves them through Metadata. Derived from the name, it is stable
/// across restarts, but a topic deleted and created again under the same name keeps it
/// (docs/KAFKA-COMPAT.md, "Known gaps").
pub fn kafka_topic_id(topic_id: &str, name: &str) -> uuid::Uuid {
    if !topic_id.is_empty() {
        return topic_uuid(topic_id);
    }
    // Two FNV-1a hashes of the name, from different offset bases, fill the 128 bits; the
    // high half is never 0, so the id is never Kafka's reserved nil (0) or metadata id (1).
    let fnv = |basis: u64| {
        name.bytes().fold(basis, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let high = fnv(0xcbf2_9ce4_8422_2325).max(1);
    let low = fnv(0x8422_2325_cbf2_9ce4);
    uuid::Uuid::from_u128((u128::from(high) << 64) | u128::from(low))
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

#[cfg(test)]
mod tests;
