//! A UDP fault proxy for multi-process tests: it stands in front of one node's QUIC
//! listener and forwards datagrams both ways, dropping, delaying or blocking them as the test
//! says, at run time.
//!
//! Clients (or other nodes) send to [`FaultProxy::addr`]; for each sender address (one per
//! client 4-tuple, since the proxy's own address is fixed) the proxy opens one upstream UDP
//! socket connected to the node, so the node sees one peer per client and its answers find
//! their way back. Faults are set per [`Direction`] (client to node, node to client), either
//! for every peer or for one peer address, so a test can make one-way partitions; with one
//! proxy in front of each node, [`block_one_way`] cuts "everything node A sends to node B"
//! whichever node opened the connection.
//!
//! Drops are drawn from a seeded generator (one per proxy), so a test's fault pattern is the
//! same for the same sequence of datagrams. Delay is fixed plus uniform jitter; jittered
//! datagrams may overtake each other, as on a real network. Counters of forwarded and
//! dropped datagrams per direction let a test show that its faults were applied.
//!
//! Real time, real sockets (tokio): this is test harness code outside the node, whose one
//! clock rule does not apply here (`tests/clippy.toml`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Largest datagram forwarded. QUIC datagrams are at most 65,527 bytes of UDP payload.
pub const DATAGRAM_BYTES_MAX: usize = 65_536;

/// Peers (client addresses) a proxy keeps an upstream socket for; datagrams from further
/// peers are dropped and counted, so a runaway test cannot open sockets without end.
pub const PEERS_MAX_DEFAULT: usize = 256;

/// Which way a datagram travels through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// From the node back to the peer (client or other node).
    FromNode,
    /// From a peer (client or other node) to the node.
    ToNode,
}

/// What happens to datagrams travelling one way.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinkFaults {
    /// Every datagram is dropped (a partition in this direction).
    pub blocked: bool,
    /// Probability, 0.0 to 1.0, that a datagram is dropped.
    pub drop_probability: f64,
    /// Added to every datagram's trip.
    pub delay: Duration,
    /// A further delay drawn uniformly from zero to this, per datagram.
    pub jitter: Duration,
}

impl LinkFaults {
    /// Datagrams pass untouched.
    pub fn pass() -> Self {
        Self::default()
    }

    /// Every datagram is dropped.
    pub fn block() -> Self {
        Self {
            blocked: true,
            ..Self::default()
        }
    }

    /// Datagrams are dropped with `probability` and the rest delayed by `delay` plus up to
    /// `jitter`.
    pub fn lossy(probability: f64, delay: Duration, jitter: Duration) -> Self {
        Self {
            blocked: false,
            drop_probability: probability,
            delay,
            jitter,
        }
    }
}

/// Which peers a rule covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// Every peer without a rule of its own.
    Any,
    /// The peer whose datagrams come from this address (a client's socket, or another
    /// node's QUIC socket).
    Address(SocketAddr),
}

/// Datagram counts of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    /// Datagrams passed on (after any delay).
    pub forwarded: u64,
    /// Datagrams dropped (blocked, lost by the drop probability, or over the peer limit).
    pub dropped: u64,
}

/// Datagram counts of both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// Peer to node.
    pub to_node: DirectionCounts,
    /// Node to peer.
    pub from_node: DirectionCounts,
}

#[derive(Default)]
struct Counter {
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Counter {
    fn read(&self) -> DirectionCounts {
        DirectionCounts {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The rules and the drop generators, shared by the proxy's tasks and the test.
struct Rules {
    faults: BTreeMap<(Peer, Direction), LinkFaults>,
    /// One generator per direction, so which datagrams of a direction are dropped depends
    /// only on how many went that way, not on how the two directions interleave.
    rng_to_node: ChaCha8Rng,
    rng_from_node: ChaCha8Rng,
}

/// What to do with one datagram.
enum Verdict {
    Drop,
    Forward(Duration),
}

impl Rules {
    fn judge(&mut self, peer: SocketAddr, direction: Direction) -> Verdict {
        let faults = self
            .faults
            .get(&(Peer::Address(peer), direction))
            .or_else(|| self.faults.get(&(Peer::Any, direction)))
            .copied()
            .unwrap_or_default();
        if faults.blocked {
            return Verdict::Drop;
        }
        let rng = match direction {
            Direction::FromNode => &mut self.rng_from_node,
            Direction::ToNode => &mut self.rng_to_node,
        };
        if faults.drop_probability > 0.0 && rng.random_bool(faults.drop_probability.clamp(0.0, 1.0))
        {
            return Verdict::Drop;
        }
        let jitter = if faults.jitter.is_zero() {
            Duration::ZERO
        } else {
            rng.random_range(Duration::ZERO..=faults.jitter)
        };
        Verdict::Forward(faults.delay + jitter)
    }
}

struct Shared {
    rules: Mutex<Rules>,
    /// The node's address; datagrams that arrive before it is known are dropped.
    upstream: Mutex<Option<SocketAddr>>,
    to_node: Counter,
    from_node: Counter,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn rules(&self) -> MutexGuard<'_, Rules> {
        // A panic while holding the lock is already a failed test; keep the rules usable so
        // that failure, not a poison error, is what the test reports.
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn counter(&self, direction: Direction) -> &Counter {
        match direction {
            Direction::FromNode => &self.from_node,
            Direction::ToNode => &self.to_node,
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }
}

/// A UDP proxy in front of one node; see the module documentation. Dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of the node at `upstream`, passing everything
    /// until told otherwise; `seed` drives its drops and jitter. Must be called inside a
    /// tokio runtime, which then runs the proxy.
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<Self> {
        let proxy = Self::start_with_peers_max(seed, PEERS_MAX_DEFAULT).await?;
        proxy.set_upstream(upstream);
        Ok(proxy)
    }

    /// Starts a proxy whose node is not known yet (so the node can be told to advertise
    /// the proxy's address, `node.advertised_address`); datagrams are dropped until
    /// [`FaultProxy::set_upstream`].
    pub async fn start_before_node(seed: u64) -> std::io::Result<Self> {
        Self::start_with_peers_max(seed, PEERS_MAX_DEFAULT).await
    }

    /// The node the proxy forwards to, for peers that send from now on.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstream);
    }

    /// A proxy with no node yet that keeps upstream sockets for at most `peers_max` peers.
    pub async fn start_with_peers_max(seed: u64, peers_max: usize) -> std::io::Result<Self> {
        let downstream = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let addr = downstream.local_addr()?;
        let shared = Arc::new(Shared {
            rules: Mutex::new(Rules {
                faults: BTreeMap::new(),
                rng_to_node: ChaCha8Rng::seed_from_u64(seed),
                rng_from_node: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            }),
            upstream: Mutex::new(None),
            to_node: Counter::default(),
            from_node: Counter::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let task_shared = Arc::clone(&shared);
        shared.spawn(serve_downstream(downstream, task_shared, peers_max));
        Ok(Self { addr, shared })
    }

    /// The address peers send to instead of the node's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's address, where datagrams go on to, once known.
    pub fn upstream(&self) -> Option<SocketAddr> {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets what happens to datagrams of `peer` travelling `direction`, from the next
    /// datagram on. A rule for one address takes precedence over [`Peer::Any`].
    pub fn set(&self, peer: Peer, direction: Direction, faults: LinkFaults) {
        self.shared.rules().faults.insert((peer, direction), faults);
    }

    /// Sets the same faults for every peer in both directions, dropping per-peer rules.
    pub fn set_all(&self, faults: LinkFaults) {
        let mut rules = self.shared.rules();
        rules.faults.clear();
        rules
            .faults
            .insert((Peer::Any, Direction::FromNode), faults);
        rules.faults.insert((Peer::Any, Direction::ToNode), faults);
    }

    /// Blocks everything both ways (a full partition of the node).
    pub fn block_all(&self) {
        self.set_all(LinkFaults::block());
    }

    /// Lets everything pass again, every rule removed (heals every partition).
    pub fn heal(&self) {
        self.shared.rules().faults.clear();
    }

    /// Datagram counts so far.
    pub fn counts(&self) -> ProxyCounts {
        ProxyCounts {
            to_node: self.shared.to_node.read(),
            from_node: self.shared.from_node.read(),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let tasks = std::mem::take(
            &mut *self
                .shared
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
    }
}

/// One node behind its proxy, as other nodes' proxies see it.
#[derive(Clone, Copy)]
pub struct ProxiedNode<'a> {
    /// The proxy in front of the node.
    pub proxy: &'a FaultProxy,
    /// The address the node's own QUIC socket sends from (its listen address, if it dials
    /// peers from the endpoint it listens on).
    pub source: SocketAddr,
}

/// Sets what happens to everything node `from` sends to node `to`, whichever of them opened
/// the connection: on `to`'s proxy, datagrams arriving from `from`; on `from`'s proxy,
/// answers its node sends back to `to`. `block_one_way(a, b, LinkFaults::block())` is
/// "between A and B, drop everything from A to B"; call it both ways for a full cut.
pub fn block_one_way(from: ProxiedNode<'_>, to: ProxiedNode<'_>, faults: LinkFaults) {
    to.proxy
        .set(Peer::Address(from.source), Direction::ToNode, faults);
    from.proxy
        .set(Peer::Address(to.source), Direction::FromNode, faults);
}

/// Reads datagrams from peers and passes them on through each peer's upstream socket,
/// opening one (and its return task) for each new peer.
async fn serve_downstream(downstream: Arc<UdpSocket>, shared: Arc<Shared>, peers_max: usize) {
    let mut peers: BTreeMap<SocketAddr, Arc<UdpSocket>> = BTreeMap::new();
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let Ok((length, peer)) = downstream.recv_from(&mut buffer).await else {
            // ICMP errors (a peer gone) surface here on Linux; the socket stays usable.
            continue;
        };
        let datagram = buffer.get(..length).unwrap_or_default().to_vec();
        let socket = match peers.get(&peer) {
            Some(socket) => Arc::clone(socket),
            None => {
                let upstream = *shared
                    .upstream
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let Some(upstream) = upstream.filter(|_| peers.len() < peers_max) else {
                    shared.to_node.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Ok(socket) = connect_upstream(upstream).await else {
                    shared.to_node.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let socket = Arc::new(socket);
                peers.insert(peer, Arc::clone(&socket));
                shared.spawn(serve_upstream(
                    Arc::clone(&socket),
                    Arc::clone(&downstream),
                    peer,
                    Arc::clone(&shared),
                ));
                socket
            }
        };
        let verdict = shared.rules().judge(peer, Direction::ToNode);
        forward(
            &shared,
            verdict,
            Direction::ToNode,
            datagram,
            Target::Upstream(socket),
        )
        .await;
    }
}

async fn connect_upstream(upstream: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(upstream).await?;
    Ok(socket)
}

/// Reads the node's datagrams for one peer and sends them back to it.
async fn serve_upstream(
    socket: Arc<UdpSocket>,
    downstream: Arc<UdpSocket>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let Ok(length) = socket.recv(&mut buffer).await else {
            continue;
        };
        let datagram = buffer.get(..length).unwrap_or_default().to_vec();
        let verdict = shared.rules().judge(peer, Direction::FromNode);
        forward(
            &shared,
            verdict,
            Direction::FromNode,
            datagram,
            Target::Downstream(Arc::clone(&downstream), peer),
        )
        .await;
    }
}

/// Where a datagram goes next.
enum Target {
    /// To the node, through the peer's upstream socket.
    Upstream(Arc<UdpSocket>),
    /// Back to the peer, from the proxy's address.
    Downstream(Arc<UdpSocket>, SocketAddr),
}

impl Target {
    async fn send(&self, datagram: &[u8]) {
        // A failed send is a lost datagram, which QUIC survives; nothing to report.
        let _ = match self {
            Self::Upstream(socket) => socket.send(datagram).await,
            Self::Downstream(socket, peer) => socket.send_to(datagram, *peer).await,
        };
    }
}

async fn forward(
    shared: &Arc<Shared>,
    verdict: Verdict,
    direction: Direction,
    datagram: Vec<u8>,
    target: Target,
) {
    let counter = shared.counter(direction);
    match verdict {
        Verdict::Drop => {
            counter.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Forward(delay) if delay.is_zero() => {
            target.send(&datagram).await;
            counter.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Forward(delay) => {
            let task_shared = Arc::clone(shared);
            shared.spawn(async move {
                tokio::time::sleep(delay).await;
                target.send(&datagram).await;
                task_shared
                    .counter(direction)
                    .forwarded
                    .fetch_add(1, Ordering::Relaxed);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Longest wait for a datagram or a counter that must come (a loaded machine).
    const WAIT: Duration = Duration::from_secs(30);

    async fn socket() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.unwrap()
    }

    /// A stand-in for a node: answers every datagram with "echo:" and its bytes.
    async fn echo_node() -> (SocketAddr, JoinHandle<()>) {
        let node = socket().await;
        let addr = node.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
            while let Ok((length, peer)) = node.recv_from(&mut buffer).await {
                let mut answer = b"echo:".to_vec();
                answer.extend_from_slice(buffer.get(..length).unwrap_or_default());
                let _ = node.send_to(&answer, peer).await;
            }
        });
        (addr, task)
    }

    async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buffer = vec![0u8; DATAGRAM_BYTES_MAX];
        let (length, from) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
            .await
            .expect("a datagram within the wait")
            .unwrap();
        buffer.truncate(length);
        (buffer, from)
    }

    /// Waits until `proxy`'s counts satisfy `condition`.
    async fn wait_for_counts(proxy: &FaultProxy, condition: impl Fn(&ProxyCounts) -> bool) {
        tokio::time::timeout(WAIT, async {
            while !condition(&proxy.counts()) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("counts never matched: {:?}", proxy.counts()));
    }

    // Goal: a rule for one peer and one direction touches only that peer and direction:
    // with client 1's requests blocked and client 2's answers blocked, the node sees client
    // 2's request but not client 1's, no answer comes back to either, and after healing
    // both get answers, which come from the proxy's address.
    #[tokio::test]
    async fn per_peer_rules_apply_to_one_peer_and_one_direction() {
        let (node, _node_task) = echo_node().await;
        let proxy = FaultProxy::start(node, 1).await.unwrap();
        let first = socket().await;
        let second = socket().await;
        proxy.set(
            Peer::Address(first.local_addr().unwrap()),
            Direction::ToNode,
            LinkFaults::block(),
        );
        proxy.set(
            Peer::Address(second.local_addr().unwrap()),
            Direction::FromNode,
            LinkFaults::block(),
        );
        first.send_to(b"one", proxy.addr()).await.unwrap();
        second.send_to(b"two", proxy.addr()).await.unwrap();
        wait_for_counts(&proxy, |counts| {
            counts.to_node.dropped == 1 && counts.from_node.dropped == 1
        })
        .await;
        assert_eq!(
            proxy.counts(),
            ProxyCounts {
                to_node: DirectionCounts {
                    forwarded: 1,
                    dropped: 1
                },
                from_node: DirectionCounts {
                    forwarded: 0,
                    dropped: 1
                },
            }
        );

        proxy.heal();
        first.send_to(b"three", proxy.addr()).await.unwrap();
        assert_eq!(
            receive(&first).await,
            (b"echo:three".to_vec(), proxy.addr())
        );
        second.send_to(b"four", proxy.addr()).await.unwrap();
        assert_eq!(
            receive(&second).await,
            (b"echo:four".to_vec(), proxy.addr())
        );
    }

    // Goal: with a proxy in front of each of two nodes, `block_one_way(a, b)` drops what A
    // sends to B whichever side opened the exchange, and lets B -> A through: A's request
    // to B is dropped at B's proxy, B's request to A arrives at A but A's answer is dropped
    // at A's proxy.
    #[tokio::test]
    async fn block_one_way_cuts_one_direction_between_two_nodes() {
        let node_a = socket().await;
        let node_b = socket().await;
        let proxy_a = FaultProxy::start(node_a.local_addr().unwrap(), 2)
            .await
            .unwrap();
        let proxy_b = FaultProxy::start(node_b.local_addr().unwrap(), 3)
            .await
            .unwrap();
        let a = ProxiedNode {
            proxy: &proxy_a,
            source: node_a.local_addr().unwrap(),
        };
        let b = ProxiedNode {
            proxy: &proxy_b,
            source: node_b.local_addr().unwrap(),
        };
        block_one_way(a, b, LinkFaults::block());

        // A opens: its request to B never reaches B.
        node_a.send_to(b"a-asks", proxy_b.addr()).await.unwrap();
        wait_for_counts(&proxy_b, |counts| counts.to_node.dropped == 1).await;

        // B opens: its request reaches A (B -> A is open), A's answer is dropped.
        node_b.send_to(b"b-asks", proxy_a.addr()).await.unwrap();
        let (request, via) = receive(&node_a).await;
        assert_eq!(request, b"b-asks");
        node_a.send_to(b"a-answers", via).await.unwrap();
        wait_for_counts(&proxy_a, |counts| counts.from_node.dropped == 1).await;

        // Healed, A's request arrives.
        proxy_a.heal();
        proxy_b.heal();
        node_a
            .send_to(b"a-asks-again", proxy_b.addr())
            .await
            .unwrap();
        assert_eq!(receive(&node_b).await.0, b"a-asks-again");
    }

    // Goal: delayed datagrams still arrive, and a drop probability of 1 drops everything
    // (the counters say so); the generator is seeded per direction.
    #[tokio::test]
    async fn delay_forwards_and_certain_loss_drops() {
        let (node, _node_task) = echo_node().await;
        let proxy = FaultProxy::start(node, 4).await.unwrap();
        let client = socket().await;
        proxy.set_all(LinkFaults::lossy(
            0.0,
            Duration::from_millis(20),
            Duration::from_millis(10),
        ));
        client.send_to(b"slow", proxy.addr()).await.unwrap();
        assert_eq!(receive(&client).await.0, b"echo:slow");
        proxy.set(
            Peer::Any,
            Direction::ToNode,
            LinkFaults::lossy(1.0, Duration::ZERO, Duration::ZERO),
        );
        for _ in 0..10 {
            client.send_to(b"lost", proxy.addr()).await.unwrap();
        }
        wait_for_counts(&proxy, |counts| counts.to_node.dropped == 10).await;
        assert_eq!(proxy.counts().to_node.forwarded, 1);
    }
}
