//! `SimNetwork`: a seeded network at the request/response level between simulated clients
//! and nodes, routed by [`Endpoint`].
//!
//! Every packet gets a seeded delay (so packets overtake each other: reorder), may be lost
//! (the sender's timeout and retry must cope), may be delivered twice, and a connection may
//! be reset, which loses every packet of it still in flight. Links can be cut in either
//! direction ([`SimNetwork::cut`]), so a network partition is a set of cut links; the
//! replication work adds node-to-node traffic on the same routes.
//!
//! The network owns no time: the simulator passes the current simulated millisecond in, and
//! packets come out of [`SimNetwork::deliver_due`] in (due time, send order), so one seed
//! gives one delivery order.

use std::collections::{BTreeMap, BTreeSet};

use ledge_protocol::wire::{Request, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// A simulated node is known by its cluster node id (one definition, in `cluster/`).
pub use crate::cluster::NodeId;

/// Where a packet comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A simulated client, by its index.
    Client(u32),
    /// A node, by its id.
    Node(NodeId),
}

/// A connection between a client and a node; a reset ends it and the client opens another.
pub type ConnectionId = u64;

/// What a packet carries.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A request, to a node (boxed: a transform deploy's settings make requests much
    /// larger than responses).
    Request(Box<Request>),
    /// A node's answer.
    Response(Response),
}

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// Sender.
    pub from: Endpoint,
    /// Receiver.
    pub to: Endpoint,
    /// The connection it travels on.
    pub connection: ConnectionId,
    /// Pairs a response with its request (unique per client).
    pub request_id: u64,
    /// The sending node's incarnation (0 from a client): checkers must know whether a
    /// crash came between two answers.
    pub incarnation: u64,
    /// The message.
    pub payload: Payload,
}

/// Fault rates of the network; rates are per mille of packets.
#[derive(Clone, Debug)]
pub struct NetworkFaults {
    /// Longest delay of one packet, in simulated milliseconds (at least 1).
    pub delay_ms_max: u64,
    /// Packets lost.
    pub drop_per_mille: u32,
    /// Packets delivered twice (each copy with its own delay).
    pub duplicate_per_mille: u32,
}

impl NetworkFaults {
    /// A network that delivers everything once, in order of a fixed 1 ms delay.
    pub fn none() -> Self {
        Self {
            delay_ms_max: 1,
            drop_per_mille: 0,
            duplicate_per_mille: 0,
        }
    }

    /// Seeded fault rates, from a calm network to a bad one.
    pub fn random(rng: &mut impl Rng) -> Self {
        Self {
            delay_ms_max: rng.random_range(1..=50),
            drop_per_mille: *[0, 0, 5, 20, 60].get(rng.random_range(0..5)).unwrap_or(&0),
            duplicate_per_mille: *[0, 0, 5, 20, 60].get(rng.random_range(0..5)).unwrap_or(&0),
        }
    }
}

/// Counts of what the network did, for the run summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetworkStats {
    /// Packets handed to the network.
    pub sent: u64,
    /// Packets lost by a fault.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Packets lost on a cut link or a reset connection.
    pub lost_to_cuts_and_resets: u64,
}

/// The network: packets in flight by (due millisecond, send order).
pub struct SimNetwork {
    rng: ChaCha8Rng,
    faults: NetworkFaults,
    in_flight: BTreeMap<(u64, u64), Packet>,
    sent: u64,
    cut: BTreeSet<(Endpoint, Endpoint)>,
    closed: BTreeSet<ConnectionId>,
    next_connection: ConnectionId,
    stats: NetworkStats,
}

impl SimNetwork {
    /// A network with its own seeded randomness.
    pub fn new(seed: u64, faults: NetworkFaults) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            in_flight: BTreeMap::new(),
            sent: 0,
            cut: BTreeSet::new(),
            closed: BTreeSet::new(),
            next_connection: 1,
            stats: NetworkStats::default(),
        }
    }

    /// Replaces the fault rates (the simulator calms the network to let the system settle).
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetworkStats {
        self.stats
    }

    /// A new connection id.
    pub fn connect(&mut self) -> ConnectionId {
        let connection = self.next_connection;
        self.next_connection += 1;
        connection
    }

    /// Ends a connection: its packets in flight are lost, and so is anything sent on it
    /// later (a node's answer to a request it was already handling).
    pub fn reset(&mut self, connection: ConnectionId) {
        self.closed.insert(connection);
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, packet| packet.connection != connection);
        self.stats.lost_to_cuts_and_resets += (before - self.in_flight.len()) as u64;
    }

    /// Cuts the link from `from` to `to` (one direction); packets on it are lost.
    pub fn cut(&mut self, from: Endpoint, to: Endpoint) {
        self.cut.insert((from, to));
    }

    /// Restores the link from `from` to `to`.
    pub fn restore(&mut self, from: Endpoint, to: Endpoint) {
        self.cut.remove(&(from, to));
    }

    /// Restores every cut link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether anything is still in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Sends a packet at `now_ms`: seeded delay, loss and duplication.
    pub fn send(&mut self, now_ms: u64, packet: Packet) {
        self.stats.sent += 1;
        if self.closed.contains(&packet.connection) || self.cut.contains(&(packet.from, packet.to))
        {
            self.stats.lost_to_cuts_and_resets += 1;
            return;
        }
        if self.rng.random_range(0..1000) < self.faults.drop_per_mille {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.rng.random_range(0..1000) < self.faults.duplicate_per_mille {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.random_range(1..=self.faults.delay_ms_max.max(1));
            self.sent += 1;
            self.in_flight
                .insert((now_ms + delay, self.sent), packet.clone());
        }
    }

    /// The packets due at or before `now_ms`, in (due time, send order).
    pub fn deliver_due(&mut self, now_ms: u64) -> Vec<Packet> {
        let later = self.in_flight.split_off(&(now_ms + 1, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        due.into_values()
            .filter(|packet| {
                let lost = self.cut.contains(&(packet.from, packet.to));
                if lost {
                    self.stats.lost_to_cuts_and_resets += 1;
                }
                !lost
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ledge_protocol::wire::ApiVersionsRequest;

    use super::*;

    fn packet(connection: ConnectionId, request_id: u64) -> Packet {
        Packet {
            from: Endpoint::Client(0),
            to: Endpoint::Node(1),
            connection,
            request_id,
            incarnation: 0,
            payload: Payload::Request(Box::new(
                Request::ApiVersions(ApiVersionsRequest::default()),
            )),
        }
    }

    #[test]
    fn delivers_each_packet_once_without_faults_and_in_send_order_for_equal_delays() {
        let mut network = SimNetwork::new(1, NetworkFaults::none());
        for id in 0..5 {
            network.send(0, packet(1, id));
        }
        assert!(network.deliver_due(0).is_empty());
        let ids: Vec<u64> = network
            .deliver_due(1)
            .iter()
            .map(|p| p.request_id)
            .collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        assert!(network.is_idle());
    }

    #[test]
    fn reset_and_cut_lose_packets_and_heal_restores_the_link() {
        let mut network = SimNetwork::new(1, NetworkFaults::none());
        network.send(0, packet(1, 0));
        network.reset(1);
        network.send(0, packet(1, 1));
        assert!(network.deliver_due(10).is_empty());
        network.cut(Endpoint::Client(0), Endpoint::Node(1));
        network.send(10, packet(2, 2));
        assert!(network.deliver_due(20).is_empty());
        network.heal();
        network.send(20, packet(2, 3));
        let ids: Vec<u64> = network
            .deliver_due(30)
            .iter()
            .map(|p| p.request_id)
            .collect();
        assert_eq!(ids, vec![3]);
    }

    #[test]
    fn the_same_seed_gives_the_same_deliveries() {
        let run = |seed| {
            let faults = NetworkFaults {
                delay_ms_max: 20,
                drop_per_mille: 100,
                duplicate_per_mille: 100,
            };
            let mut network = SimNetwork::new(seed, faults);
            for id in 0..200 {
                network.send(id, packet(1, id));
            }
            network
                .deliver_due(1_000)
                .iter()
                .map(|p| p.request_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
