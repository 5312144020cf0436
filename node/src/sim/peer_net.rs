//! The simulated peer network of the multi-node simulator ([`crate::sim::multi`]): every
//! peer request between nodes (Raft messages, registration and heartbeats, topic admin,
//! replica fetches, ISR changes) goes through one [`PeerNet`], which delays, drops,
//! duplicates and partitions it from the seed.
//!
//! A node's [`PeerClient`]s are built over `SimLink`s (`PeerClient::simulated`), so the
//! node's real controller and replication code send through the client as they do over
//! QUIC, with the client's `peer_request_timeout_ms` bounding each request. The cluster
//! moves the network one millisecond at a time ([`PeerNet::due`]) and hands each request
//! due at a running node to that node's `PeerHandlers` (the handlers the real peer service
//! dispatches to); the answer travels back the same way.
//!
//! A lost request or answer is never answered: the requester's timeout fires, as over a
//! network that silently drops packets. A request whose target crashes before answering
//! gets a connection error (the dropped answer channel), as a reset would.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::oneshot;

use crate::cluster::NodeId;
use crate::cluster::peer::client::PeerLink;
use crate::cluster::peer::{PeerRequestError, PeerRequestKind};

/// Where an answer goes.
pub type AnswerSender = oneshot::Sender<Result<Bytes, PeerRequestError>>;

/// What is on the wire.
pub enum Leg {
    /// A request to `to`; `reply` is `None` for a duplicate.
    Request {
        /// The kind.
        kind: PeerRequestKind,
        /// The body.
        body: Bytes,
        /// Where the answer goes.
        reply: Option<AnswerSender>,
    },
    /// An answer to `to`.
    Answer {
        /// The handler's answer.
        result: Result<Bytes, PeerRequestError>,
        /// The requester's channel.
        reply: AnswerSender,
    },
}

/// A message in flight.
pub struct InFlight {
    /// When it arrives (simulated ms).
    pub deliver_at_ms: u64,
    /// The order it was sent in (ties in `deliver_at_ms` keep it).
    pub sequence: u64,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// What it is.
    pub leg: Leg,
}

/// Counts of a run's peer traffic.
#[derive(Clone, Debug, Default)]
pub struct PeerNetStats {
    /// Requests sent.
    pub requests: u64,
    /// Requests or answers dropped at random.
    pub dropped: u64,
    /// Requests duplicated.
    pub duplicated: u64,
    /// Requests or answers lost on a cut link.
    pub cut: u64,
    /// Requests lost because the target was down.
    pub target_down: u64,
}

struct NetState {
    now_ms: u64,
    rng: ChaCha8Rng,
    faults: bool,
    /// Directed links that lose everything (`(from, to)`).
    cut: BTreeSet<(NodeId, NodeId)>,
    in_flight: Vec<InFlight>,
    next_sequence: u64,
    /// Answer channels of lost messages, kept so their requesters time out rather than
    /// seeing a reset.
    lost: Vec<AnswerSender>,
    stats: PeerNetStats,
    /// Digest of every message put on the wire (time, ends, kind, bytes): two runs of a
    /// seed that send one byte differently get different digests.
    wire: DefaultHasher,
    /// Print every message as it is sent (`LEDGE_SIM_TRACE=wire`).
    print: bool,
}

/// The network between the nodes of one run.
#[derive(Clone)]
pub struct PeerNet {
    state: Arc<Mutex<NetState>>,
}

/// Bytes of each message's body `LEDGE_SIM_TRACE=wire` prints.
const WIRE_PRINT_BYTES_MAX: usize = 300;
/// Per mille of messages dropped when faults are on.
const DROP_PER_MILLE: u32 = 10;
/// Per mille of requests delivered twice when faults are on.
const DUPLICATE_PER_MILLE: u32 = 5;
/// Per mille of messages delayed by a spike (up to [`DELAY_SPIKE_MS_MAX`]).
const DELAY_SPIKE_PER_MILLE: u32 = 20;
/// Most ordinary delay of a message, ms.
const DELAY_MS_MAX: u64 = 8;
/// Most delay of a spike, ms.
const DELAY_SPIKE_MS_MAX: u64 = 400;

impl PeerNet {
    /// A network seeded with `seed`; `faults` turns on drops, duplicates and delay spikes.
    pub fn new(seed: u64, faults: bool) -> Self {
        Self {
            state: Arc::new(Mutex::new(NetState {
                now_ms: 0,
                rng: ChaCha8Rng::seed_from_u64(seed ^ 0x7065_6572_6e65_7400),
                faults,
                cut: BTreeSet::new(),
                in_flight: Vec::new(),
                next_sequence: 0,
                lost: Vec::new(),
                stats: PeerNetStats::default(),
                wire: DefaultHasher::new(),
                print: std::env::var("LEDGE_SIM_TRACE").is_ok_and(|value| value == "wire"),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The link from `from` to `to`, for `from`'s peer client of `to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> Arc<dyn PeerLink> {
        Arc::new(SimLink {
            from,
            to,
            net: self.clone(),
        })
    }

    /// Moves the network's clock to `now_ms`.
    pub fn set_now(&self, now_ms: u64) {
        self.lock().now_ms = now_ms;
    }

    /// Turns random drops, duplicates and spikes on or off (off for the final settle).
    pub fn set_faults(&self, faults: bool) {
        self.lock().faults = faults;
    }

    /// Cuts the directed link `from` → `to`.
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.lock().cut.insert((from, to));
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// The cut links.
    pub fn cuts(&self) -> BTreeSet<(NodeId, NodeId)> {
        self.lock().cut.clone()
    }

    /// The digest of every message sent so far (see `NetState::wire`).
    pub fn wire_digest(&self) -> u64 {
        self.lock().wire.finish()
    }

    /// The counts so far.
    pub fn stats(&self) -> PeerNetStats {
        self.lock().stats.clone()
    }

    /// Puts an answer on the wire from `from` (the answering node) to `to`.
    pub fn answer(
        &self,
        from: NodeId,
        to: NodeId,
        result: Result<Bytes, PeerRequestError>,
        reply: AnswerSender,
    ) {
        let mut state = self.lock();
        state.send(from, to, Leg::Answer { result, reply });
    }

    /// Takes the messages due now, in the order they arrive. Messages on cut links are
    /// lost here (the cut applies when the message would arrive).
    pub fn due(&self) -> Vec<InFlight> {
        let mut state = self.lock();
        let now = state.now_ms;
        let (mut due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.in_flight)
            .into_iter()
            .partition(|message| message.deliver_at_ms <= now);
        state.in_flight = rest;
        due.sort_by_key(|message| (message.deliver_at_ms, message.sequence));
        let mut arriving = Vec::with_capacity(due.len());
        for message in due {
            if state.cut.contains(&(message.from, message.to)) {
                state.stats.cut += 1;
                state.lose(message.leg);
            } else {
                arriving.push(message);
            }
        }
        arriving
    }

    /// A request arrived at a node that is down: lost.
    pub fn lost_at_down_node(&self, leg: Leg) {
        let mut state = self.lock();
        state.stats.target_down += 1;
        state.lose(leg);
    }
}

impl NetState {
    fn delay(&mut self) -> u64 {
        if self.faults && self.rng.random_ratio(DELAY_SPIKE_PER_MILLE, 1000) {
            self.rng.random_range(DELAY_MS_MAX..=DELAY_SPIKE_MS_MAX)
        } else {
            self.rng.random_range(1..=DELAY_MS_MAX)
        }
    }

    fn lose(&mut self, leg: Leg) {
        match leg {
            Leg::Request {
                reply: Some(reply), ..
            }
            | Leg::Answer { reply, .. } => self.lost.push(reply),
            Leg::Request { reply: None, .. } => {}
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, leg: Leg) {
        if self.faults && self.rng.random_ratio(DROP_PER_MILLE, 1000) {
            self.stats.dropped += 1;
            self.lose(leg);
            return;
        }
        if let Leg::Request { kind, body, .. } = &leg
            && self.faults
            && self.rng.random_ratio(DUPLICATE_PER_MILLE, 1000)
        {
            self.stats.duplicated += 1;
            let copy = Leg::Request {
                kind: *kind,
                body: body.clone(),
                reply: None,
            };
            self.push(from, to, copy);
        }
        self.push(from, to, leg);
    }

    fn push(&mut self, from: NodeId, to: NodeId, leg: Leg) {
        let deliver_at_ms = self.now_ms + self.delay();
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        (self.now_ms, deliver_at_ms, from, to).hash(&mut self.wire);
        let described = match &leg {
            Leg::Request { kind, body, .. } => {
                format!("{kind:?} {} bytes {:016x}", body.len(), bytes_digest(body))
            }
            Leg::Answer {
                result: Ok(body), ..
            } => {
                format!("answer {} bytes {:016x}", body.len(), bytes_digest(body))
            }
            Leg::Answer {
                result: Err(error), ..
            } => format!("answer error {error}"),
        };
        described.hash(&mut self.wire);
        if self.print {
            // Peer bodies are JSON: their start says what the message is about.
            let start = match &leg {
                Leg::Request { body, .. }
                | Leg::Answer {
                    result: Ok(body), ..
                } => String::from_utf8_lossy(&body[..body.len().min(WIRE_PRINT_BYTES_MAX)])
                    .into_owned(),
                Leg::Answer { result: Err(_), .. } => String::new(),
            };
            eprintln!(
                "{:>7} ms   wire {from} → {to} #{sequence} at {deliver_at_ms}: {described} {start}",
                self.now_ms
            );
        }
        self.in_flight.push(InFlight {
            deliver_at_ms,
            sequence,
            from,
            to,
            leg,
        });
    }
}

fn bytes_digest(bytes: &Bytes) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// One node's link to one peer.
struct SimLink {
    from: NodeId,
    to: NodeId,
    net: PeerNet,
}

impl PeerLink for SimLink {
    fn exchange(
        &self,
        kind: PeerRequestKind,
        body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, PeerRequestError>> {
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.net.lock();
            state.stats.requests += 1;
            state.send(
                self.from,
                self.to,
                Leg::Request {
                    kind,
                    body,
                    reply: Some(reply),
                },
            );
        }
        let node = self.to;
        Box::pin(async move {
            answer.await.unwrap_or_else(|_| {
                Err(PeerRequestError::Connection {
                    node,
                    reason: "the peer restarted before answering (connection reset)".to_owned(),
                })
            })
        })
    }
}
