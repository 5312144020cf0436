//! The QUIC connections to the cluster's nodes that every producer, consumer and admin call
//! shares, and the routing of partition requests to their leaders.
//!
//! Owns: the quinn endpoint and UDP socket, the TLS trust decision, one connection per node
//! (opened lazily, on the first request for that node), the request/response exchange (one
//! bidirectional stream per request), and the cluster view ([`ClusterMetadata`]) that says
//! which node leads each partition. [`Client::connect`] bootstraps from the configured list,
//! hedged: the next node is tried too when one has not answered within a short delay or
//! failed, each within the connect timeout. Requests that are not about a partition (admin,
//! FindCoordinator) go to the node that answered first (the default node), and to the next
//! known one after it is lost: it does not answer, or the cluster stops listing it as alive
//! while a request waits on it ([`Client::request_to_live`]); group requests go to the
//! group's coordinator (`coordinator.rs`) under the same rule.
//! The client's own metadata refreshes ask any live known node, hedged
//! ([`Client::refresh_metadata`]), and the one that answers becomes the default node. Every
//! Metadata answer updates the cluster view, whoever asked for it; every node that cannot be
//! reached is reported to it. A produce or fetch waiting on a leader also watches for the
//! leader to move ([`Client::leader_moved_away`]).
//!
//! Does not own: retries of produce and fetch. A request that fails because the connection
//! broke or timed out returns a retriable [`RequestError`] and drops the connection, so the
//! next request reconnects; the producer and consumer decide whether to send again. Admin
//! and group requests are sent again here ([`Client::request_with_failover`],
//! `coordinator.rs`), under the pure rules of `cluster/failover.rs`. After
//! [`Client::close`] nothing reconnects: requests fail with [`ConnectError::Closed`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::clock;
use crate::cluster::failover::{Attempt, Decision, RequestKind, Retries};
use crate::cluster::{ClusterMetadata, Route};
use crate::config::{ClientCertificate, ClientConfig, Trust};
use crate::error::{ConnectError, RequestError};
use crate::sasl::{self, SaslCredentials, SaslMechanism, ScramClient};
use crate::throttle::{ThrottleKind, Throttles};

/// Least time between two metadata refreshes that errors asked for, so a burst of
/// `NotLeaderOrFollower` answers costs one refresh (Kafka's `retry.backoff.ms` default).
const METADATA_REFRESH_BACKOFF: Duration = Duration::from_millis(100);

/// How long a metadata request may go unanswered before the next node is asked too. A live
/// node answers from memory in a few milliseconds even on a loaded machine; a dead one never
/// does, and waiting for the connect or request timeout would stall every send behind it.
const METADATA_HEDGE_DELAY: Duration = Duration::from_millis(200);

/// Least time [`Client::close`] gives the endpoint to send its close frames.
const CLOSE_WAIT_MIN: Duration = Duration::from_millis(50);
/// Most time [`Client::close`] waits for the nodes to hear it: a dead node never answers.
const CLOSE_WAIT_MAX: Duration = Duration::from_secs(1);

/// A handle on the cluster: cheap to clone, shared by everything built from it.
///
/// [`Client::connect`] makes the first connection eagerly, so a wrong address, CA or server
/// name fails there with a clear error rather than at the first send. Later losses (a node
/// restart) are repaired on the next request.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    /// The bootstrap list, resolved, in the configured order.
    bootstrap: Vec<SocketAddr>,
    /// Where requests that are not about one partition go: the node that answered the
    /// bootstrap, then the next one that answers after a loss.
    default_node: Mutex<SocketAddr>,
    /// One connection slot per node, made on first use.
    nodes: Mutex<HashMap<SocketAddr, Arc<NodeSlot>>>,
    cluster: Mutex<ClusterMetadata>,
    /// Each group's coordinator as FindCoordinator last named it (`coordinator.rs`).
    coordinators: Mutex<HashMap<String, SocketAddr>>,
    /// Held while a metadata refresh is in flight, so concurrent callers wait for one.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
    /// Set by `close`, readable without a lock.
    closed: AtomicBool,
    correlation_id: AtomicU32,
}

/// A node's connection. A tokio mutex: it is held across the handshake so that concurrent
/// requests after a loss wait for one new connection rather than each making their own.
#[derive(Default)]
struct NodeSlot {
    connection: tokio::sync::Mutex<Option<quinn::Connection>>,
    /// Until when the node throttles this client's produces and fetches (its quotas,
    /// `throttle.rs`). Kept across reconnections: the quota is the principal's, not the
    /// connection's.
    throttles: Mutex<Throttles>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("server", &self.inner.config.server)
            .field("server_addr", &self.server_addr())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Resolves the bootstrap servers, sets up TLS and connects to the first that answers
    /// (each within [`ClientConfig::connect_timeout`]).
    pub async fn connect(config: ClientConfig) -> Result<Self, ConnectError> {
        let servers = config.bootstrap_servers();
        let mut failures: Vec<(String, ConnectError)> = Vec::new();
        let mut bootstrap = Vec::new();
        for server in &servers {
            match resolve(server).await {
                Ok(address) => bootstrap.push((server.clone(), address)),
                Err(error) => failures.push((server.clone(), error)),
            }
        }
        let Some(&(_, first)) = bootstrap.first() else {
            return Err(bootstrap_error(&config.server, failures));
        };
        let client_config = quic_client_config(&config)?;
        let socket = udp_socket(first, config.socket_buffer_bytes)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| ConnectError::Socket("no tokio runtime is running".into()))?;
        let mut endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
                .map_err(|error| ConnectError::Socket(error.to_string()))?;
        endpoint.set_default_client_config(client_config);
        let metadata_max_age = config.metadata_max_age;
        let client = Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                bootstrap: bootstrap.iter().map(|(_, address)| *address).collect(),
                default_node: Mutex::new(first),
                nodes: Mutex::new(HashMap::new()),
                cluster: Mutex::new(ClusterMetadata::new(metadata_max_age)),
                coordinators: Mutex::new(HashMap::new()),
                refreshing: tokio::sync::Mutex::new(None),
                closed: AtomicBool::new(false),
                correlation_id: AtomicU32::new(1),
            }),
        };
        // Hedged, as metadata refreshes are: a bootstrap server that is down (kill -9ed,
        // stopped) answers nothing, and waiting for its handshake to time out would stall
        // every command behind the first dead name in the list.
        let mut servers = bootstrap.into_iter();
        let mut attempts = futures_util::stream::FuturesUnordered::new();
        let attempt = |(server, address): (String, SocketAddr)| {
            let client = &client;
            async move {
                let connected = client.connection_to(address, &server).await;
                (server, address, connected)
            }
        };
        if let Some(first) = servers.next() {
            attempts.push(attempt(first));
        }
        while !attempts.is_empty() {
            tokio::select! {
                Some((server, address, connected)) = futures_util::StreamExt::next(&mut attempts) => {
                    match connected {
                        Ok(_) => {
                            *lock(&client.inner.default_node) = address;
                            drop(attempts);
                            return Ok(client);
                        }
                        Err(error) => {
                            tracing::debug!(%server, %error, "bootstrap server did not answer");
                            failures.push((server, error));
                            if let Some(next) = servers.next() {
                                attempts.push(attempt(next));
                            }
                        }
                    }
                }
                () = tokio::time::sleep(METADATA_HEDGE_DELAY), if !servers.as_slice().is_empty() => {
                    if let Some(next) = servers.next() {
                        attempts.push(attempt(next));
                    }
                }
            }
        }
        drop(attempts);
        client
            .inner
            .endpoint
            .close(0u32.into(), b"no server answered");
        Err(bootstrap_error(&client.inner.config.server, failures))
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The address of the node that requests not about one partition go to (the bootstrap
    /// node that answered, or the one that took over after it was lost).
    pub fn server_addr(&self) -> SocketAddr {
        *lock(&self.inner.default_node)
    }

    /// Asks the node which APIs it speaks, its version and its frame limit.
    pub async fn api_versions(&self) -> Result<wire::ApiVersionsResponse, RequestError> {
        let request = Request::ApiVersions(wire::ApiVersionsRequest {
            client_software_name: "ledge-client".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
        });
        match self.request(&request, Duration::ZERO).await? {
            Response::ApiVersions(response) => Ok(response),
            other => Err(unexpected(ApiKey::ApiVersions, &other)),
        }
    }

    /// Closes every connection, waiting briefly (three round trips, 50 ms to 1 s) for the
    /// nodes to hear it.
    /// Every later request, including one a producer or consumer started just before (a
    /// prefetch), fails with [`ConnectError::Closed`] instead of connecting again.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let slots: Vec<Arc<NodeSlot>> = lock(&self.inner.nodes).values().cloned().collect();
        let mut round_trip_max = Duration::ZERO;
        for slot in slots {
            if let Some(connection) = slot.connection.lock().await.take() {
                round_trip_max = round_trip_max.max(connection.rtt());
                connection.close(0u32.into(), b"client closed");
            }
        }
        // The close frames leave with the endpoint's next transmission; a few round trips of
        // the closed connections also cover a resend when a node's packets cross them. The
        // endpoint going idle is not waited for beyond that: it also waits out the closing
        // period of handshakes given up (a dead bootstrap server the hedged connect left
        // behind, three probe timeouts at the initial RTT, seconds), which no node hears.
        let wait = round_trip_max
            .saturating_mul(3)
            .clamp(CLOSE_WAIT_MIN, CLOSE_WAIT_MAX);
        let _ = tokio::time::timeout(wait, self.inner.endpoint.wait_idle()).await;
    }

    /// Whether [`Client::close`] was called: every request fails from then on.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Sends `request` to the default node and waits for its answer, allowing `extra_wait`
    /// beyond the request timeout for a wait the request itself asks for (a fetch's long
    /// poll). A node that does not answer, or that the cluster stops listing as alive while
    /// the request waits ([`Client::request_to_live`]), moves the default to the next known
    /// node. One try: see [`Client::request_with_failover`] for a request sent again there.
    pub(crate) async fn request(
        &self,
        request: &Request,
        extra_wait: Duration,
    ) -> Result<Response, RequestError> {
        let node = self.server_addr();
        let answer = self.request_to_live(node, request, extra_wait).await;
        if let Err(error) = &answer
            && error.is_no_answer()
        {
            self.next_default_node(node);
        }
        answer
    }

    /// Sends `request` to the default node and, when no answer comes or the answer says to
    /// ask elsewhere or again, sends it again (to the next node when the default is lost),
    /// within the request timeout: the rules of `cluster/failover.rs`, which also say what
    /// a resent write may answer. The last outcome is returned when the budget runs out.
    pub(crate) async fn request_with_failover(
        &self,
        kind: RequestKind,
        request: &Request,
    ) -> Result<Response, RequestError> {
        let mut retries = Retries::new(kind, clock::now(), self.inner.config.request_timeout);
        loop {
            let node = self.server_addr();
            let answer = self.request_to_live(node, request, Duration::ZERO).await;
            let attempt = match &answer {
                Ok(_) => Attempt::Final,
                Err(RequestError::Refused { code, .. }) => Attempt::answered(*code),
                Err(error) if error.is_no_answer() => Attempt::NoAnswer,
                Err(_) => Attempt::Final,
            };
            match retries.handle_attempt(attempt, clock::now()) {
                Decision::GiveUp => {
                    if attempt == Attempt::NoAnswer {
                        self.next_default_node(node);
                    }
                    return answer;
                }
                Decision::RetryAfter { wait, move_on } => {
                    if move_on {
                        self.next_default_node(node);
                    }
                    if let Err(error) = &answer {
                        tracing::debug!(
                            %node,
                            %error,
                            tries = retries.tries(),
                            "sending {:?} again",
                            request.api_key()
                        );
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// [`Client::request_to`], given up with [`RequestError::NodeLost`] as soon as the
    /// cluster stops listing `node` as alive while the request waits (checked every
    /// [`ClientConfig::leader_check_interval`] after `extra_wait`, with a metadata refresh
    /// that asks `node` last). A node that was kill -9ed or stopped sends nothing that would
    /// end the connection, so without this the request would wait for QUIC's idle timeout;
    /// the controller fences such a node within its session timeout. The connection is
    /// dropped and the node backed off, as for any node that cannot be reached.
    pub(crate) async fn request_to_live(
        &self,
        node: SocketAddr,
        request: &Request,
        extra_wait: Duration,
    ) -> Result<Response, RequestError> {
        let answer = tokio::select! {
            answer = self.request_to(node, request, extra_wait) => Some(answer),
            () = self.node_left(node, extra_wait) => None,
        };
        match answer {
            Some(answer) => answer,
            None => {
                tracing::debug!(%node, "node left the cluster while a request waited on it");
                self.abandon(node).await;
                Err(RequestError::NodeLost {
                    node: node.to_string(),
                })
            }
        }
    }

    /// Sends `request` to the node at `node` and waits for its answer (see
    /// [`Client::request`]). Every Metadata answer updates the cluster view.
    pub(crate) async fn request_to(
        &self,
        node: SocketAddr,
        request: &Request,
        extra_wait: Duration,
    ) -> Result<Response, RequestError> {
        let api_key = request.api_key();
        let throttle_kind = ThrottleKind::of(api_key);
        if let Some(kind) = throttle_kind {
            self.wait_out_throttle(node, kind).await;
        }
        let (correlation_id, frame) = self.encode(request)?;
        let timeout = self.inner.config.request_timeout.saturating_add(extra_wait);
        let connection = self.connection_for_request(node).await?;
        let limit = self.inner.config.frame_bytes_max as usize;
        let answer = tokio::time::timeout(timeout, exchange(&connection, frame, limit)).await;
        let bytes = match answer {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                if error.connection_broken {
                    self.discard(node, &connection).await;
                }
                return Err(error.error);
            }
            Err(_elapsed) => {
                // An answer this late means the connection is most likely dead (a node that
                // is alive answers its own timeout first); start again on a fresh one.
                self.discard(node, &connection).await;
                return Err(RequestError::TimedOut(timeout));
            }
        };
        lock(&self.inner.cluster).handle_node_answered(&node.to_string());
        let (header, response) = wire::decode_response(api_key, Bytes::from(bytes))
            .map_err(|error| RequestError::MalformedResponse(format!("{api_key:?}: {error}")))?;
        if header.correlation_id != correlation_id {
            return Err(RequestError::MalformedResponse(format!(
                "{api_key:?}: correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        match response {
            Some(response) => {
                if let Response::Metadata(metadata) = &response {
                    lock(&self.inner.cluster).handle_metadata(metadata, clock::now());
                }
                if let Some(kind) = throttle_kind {
                    let throttle = crate::throttle::throttle_time(&response);
                    if !throttle.is_zero() {
                        tracing::debug!(%node, ?kind, throttle_ms = throttle.as_millis(), "throttled by the node: over a byte-rate quota");
                        self.throttled(node, kind, throttle);
                    }
                }
                Ok(response)
            }
            None => Err(RequestError::Refused {
                code: header.error,
                message: header.message,
            }),
        }
    }

    /// Where each of `partitions` goes: its leader and the epoch to send, or `None` when no
    /// leader is known even after a refresh (the caller sends to the default node, whose
    /// answer says what to do). Refreshes the cluster view first when it is due: stale,
    /// asked for by an error, older than `metadata_max_age`, or missing one of them.
    pub(crate) async fn routes(
        &self,
        partitions: &[(&str, u32)],
    ) -> Vec<(SocketAddr, Option<i32>)> {
        let missing = {
            let mut cluster = lock(&self.inner.cluster);
            for (topic, _) in partitions {
                cluster.track(topic);
            }
            // A node-partitioned produce has no partition to route until the node picks one.
            cluster.needs_refresh(clock::now())
                || partitions.iter().any(|(topic, partition)| {
                    *partition != wire::NODE_PARTITIONED
                        && cluster.route(topic, *partition).is_none()
                })
        };
        if missing {
            self.refresh_metadata(None).await;
        }
        let known: Vec<Option<Route>> = {
            let cluster = lock(&self.inner.cluster);
            partitions
                .iter()
                .map(|(topic, partition)| cluster.route(topic, *partition))
                .collect()
        };
        let mut routes = Vec::with_capacity(known.len());
        for route in known {
            let resolved = match route {
                // Nodes list their addresses as `ip:port`: parsed without a lookup.
                Some(route) => match route.address.parse::<SocketAddr>() {
                    Ok(address) => Some(address),
                    Err(_) => resolve(&route.address).await.ok(),
                }
                .map(|address| (address, Some(route.leader_epoch))),
                None => None,
            };
            routes.push(resolved.unwrap_or_else(|| (self.server_addr(), None)));
        }
        routes
    }

    /// The cached coordinator of `group_id`, if any.
    pub(crate) fn cached_coordinator(&self, group_id: &str) -> Option<SocketAddr> {
        lock(&self.inner.coordinators).get(group_id).copied()
    }

    /// Remembers `node` as `group_id`'s coordinator.
    pub(crate) fn cache_coordinator(&self, group_id: &str, node: SocketAddr) {
        lock(&self.inner.coordinators).insert(group_id.to_string(), node);
    }

    /// Forgets `node` as `group_id`'s coordinator (a newer answer may have replaced it).
    pub(crate) fn forget_coordinator(&self, group_id: &str, node: SocketAddr) {
        let mut coordinators = lock(&self.inner.coordinators);
        if coordinators.get(group_id) == Some(&node) {
            coordinators.remove(group_id);
        }
    }

    /// Tells the cluster view about a partition's error in a produce or fetch answer
    /// (`NotLeaderOrFollower`, `FencedLeaderEpoch`, ... make it due for a refresh).
    pub(crate) fn partition_error(&self, topic: &str, partition: u32, code: ErrorCode) {
        lock(&self.inner.cluster).handle_partition_error(topic, partition, code);
    }

    /// Asks for metadata of the tracked topics, at most once per
    /// [`METADATA_REFRESH_BACKOFF`]; concurrent callers share one refresh. The nodes are asked
    /// in [`ClusterMetadata::metadata_nodes`]' order (live nodes first, `avoid` last), hedged:
    /// when one has not answered within [`METADATA_HEDGE_DELAY`] or failed, the next is asked
    /// too, and the first answer wins and becomes the default node. A dead node thus costs
    /// that delay, not a connect or request timeout. Failures are left for the requests that
    /// follow: they go to the default node and fail or succeed on their own.
    async fn refresh_metadata(&self, avoid: Option<SocketAddr>) {
        let mut last = self.inner.refreshing.lock().await;
        // Another caller refreshed while this one waited for the lock, or one failed just now.
        if last.is_some_and(|last| {
            clock::now().saturating_duration_since(last) < METADATA_REFRESH_BACKOFF
        }) {
            return;
        }
        let topics = lock(&self.inner.cluster).tracked_topics();
        let request = Request::Metadata(wire::MetadataRequest {
            topics: Some(topics),
        });
        let candidates = self.metadata_nodes(avoid).await;
        let mut candidates = candidates.into_iter();
        let mut attempts = futures_util::stream::FuturesUnordered::new();
        let attempt = |node: SocketAddr| {
            let request = &request;
            async move { (node, self.request_to(node, request, Duration::ZERO).await) }
        };
        if let Some(node) = candidates.next() {
            attempts.push(attempt(node));
        }
        while !attempts.is_empty() {
            tokio::select! {
                Some((node, answer)) = futures_util::StreamExt::next(&mut attempts) => {
                    match answer {
                        Ok(_) => {
                            *lock(&self.inner.default_node) = node;
                            break;
                        }
                        Err(error) => {
                            tracing::debug!(%node, %error, "metadata refresh failed");
                            if let Some(next) = candidates.next() {
                                attempts.push(attempt(next));
                            }
                        }
                    }
                }
                () = tokio::time::sleep(METADATA_HEDGE_DELAY), if !candidates.as_slice().is_empty() => {
                    if let Some(next) = candidates.next() {
                        attempts.push(attempt(next));
                    }
                }
            }
        }
        *last = Some(clock::now());
    }

    /// Where to ask for metadata, best first (see [`ClusterMetadata::metadata_nodes`]).
    async fn metadata_nodes(&self, avoid: Option<SocketAddr>) -> Vec<SocketAddr> {
        let preferred = self.server_addr().to_string();
        let bootstrap: Vec<String> = self
            .inner
            .bootstrap
            .iter()
            .map(ToString::to_string)
            .collect();
        let avoid = avoid.map(|node| node.to_string());
        let ordered = lock(&self.inner.cluster).metadata_nodes(
            clock::now(),
            &preferred,
            &bootstrap,
            avoid.as_deref(),
        );
        let mut nodes = Vec::with_capacity(ordered.len());
        for address in ordered {
            // Nodes list their addresses as `ip:port`: parsed without a lookup.
            let resolved = match address.parse::<SocketAddr>() {
                Ok(address) => Some(address),
                Err(_) => resolve(&address).await.ok(),
            };
            if let Some(resolved) = resolved
                && !nodes.contains(&resolved)
            {
                nodes.push(resolved);
            }
        }
        nodes
    }

    /// Returns once one of `partitions` (topic, partition, the leader epoch its request
    /// carried) has a leader other than `node`, checking every
    /// [`ClientConfig::leader_check_interval`] after `expected_wait` (the wait the request
    /// itself asks the node for: a fetch's long poll) with a metadata refresh that asks `node`
    /// last. Raced against a request to `node`, this is how a dead leader is left behind as
    /// soon as the cluster has elected another, without waiting for QUIC's idle timeout: a
    /// node that was kill -9ed sends nothing that would end the connection.
    pub(crate) async fn leader_moved_away(
        &self,
        node: SocketAddr,
        partitions: &[(&str, u32, Option<i32>)],
        expected_wait: Duration,
    ) {
        let interval = self.inner.config.leader_check_interval;
        tokio::time::sleep(expected_wait).await;
        loop {
            tokio::time::sleep(interval).await;
            self.refresh_metadata(Some(node)).await;
            let cluster = lock(&self.inner.cluster);
            if partitions.iter().any(|(topic, partition, leader_epoch)| {
                cluster.leader_moved(topic, *partition, node, *leader_epoch)
            }) {
                return;
            }
        }
    }

    /// Returns once the cluster no longer lists `node` as alive
    /// ([`ClusterMetadata::node_left`]), checking every
    /// [`ClientConfig::leader_check_interval`] after `expected_wait` with a metadata refresh
    /// that asks `node` last. Never returns while it is listed: raced against a request.
    async fn node_left(&self, node: SocketAddr, expected_wait: Duration) {
        let interval = self.inner.config.leader_check_interval;
        tokio::time::sleep(expected_wait).await;
        loop {
            tokio::time::sleep(interval).await;
            self.refresh_metadata(Some(node)).await;
            if lock(&self.inner.cluster).node_left(node) {
                return;
            }
        }
    }

    /// Gives up on `node`: closes its connection, so the next request to it connects anew,
    /// and reports it unreachable to the cluster view (its routes are dropped and it backs
    /// off as a metadata source).
    async fn abandon(&self, node: SocketAddr) {
        let slot = lock(&self.inner.nodes).get(&node).cloned();
        if let Some(slot) = slot
            && let Some(connection) = slot.connection.lock().await.take()
        {
            connection.close(0u32.into(), b"node left the cluster");
        }
        lock(&self.inner.cluster).handle_node_unreachable(&node.to_string(), clock::now());
    }

    /// Moves the default node on from `failed` (if it still is the default) to the best other
    /// candidate (see [`ClusterMetadata::metadata_nodes`]).
    pub(crate) fn next_default_node(&self, failed: SocketAddr) {
        let bootstrap: Vec<String> = self
            .inner
            .bootstrap
            .iter()
            .map(ToString::to_string)
            .collect();
        let failed_name = failed.to_string();
        let candidates = lock(&self.inner.cluster).metadata_nodes(
            clock::now(),
            &failed_name,
            &bootstrap,
            Some(&failed_name),
        );
        let next = candidates
            .iter()
            .filter_map(|candidate| candidate.parse::<SocketAddr>().ok())
            .find(|candidate| *candidate != failed);
        let mut default = lock(&self.inner.default_node);
        if *default != failed {
            return;
        }
        if let Some(next) = next {
            tracing::debug!(%failed, %next, "default node lost; trying the next");
            *default = next;
        }
    }

    /// Sends `request` without waiting for an answer (produce with acks=0): returns once the
    /// stream is finished on our side.
    pub(crate) async fn send_only(
        &self,
        node: SocketAddr,
        request: &Request,
    ) -> Result<(), RequestError> {
        if let Some(kind) = ThrottleKind::of(request.api_key()) {
            self.wait_out_throttle(node, kind).await;
        }
        let (_, mut frame) = self.encode(request)?;
        let timeout = self.inner.config.request_timeout;
        let connection = self.connection_for_request(node).await?;
        let sent = tokio::time::timeout(timeout, async {
            let (mut send, recv) = connection.open_bi().await.map_err(connection_lost)?;
            // The answer is never read; tell the node so it can drop it.
            let mut recv = recv;
            let _ = recv.stop(0u32.into());
            send.write_all_chunks(&mut frame)
                .await
                .map_err(connection_lost)?;
            send.finish().map_err(connection_lost)?;
            // Wait until the node's QUIC stack acknowledged every byte: "sent" must not be
            // data still queued here, which closing the client would throw away. (This is
            // not a produce acknowledgement; acks=0 still never hears of the append.)
            send.stopped()
                .await
                .map_err(|error| RequestError::ConnectionLost(error.to_string()))?;
            Ok::<(), RequestError>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.discard(node, &connection).await;
                Err(error)
            }
            Err(_) => {
                self.discard(node, &connection).await;
                Err(RequestError::TimedOut(timeout))
            }
        }
    }

    /// The node's slot (made on first use).
    fn slot(&self, node: SocketAddr) -> Arc<NodeSlot> {
        Arc::clone(lock(&self.inner.nodes).entry(node).or_default())
    }

    /// Notes that `node` throttles this client's requests of `kind` for `throttle` from now.
    fn throttled(&self, node: SocketAddr, kind: ThrottleKind, throttle: Duration) {
        lock(&self.slot(node).throttles).throttled(kind, throttle, clock::now());
    }

    /// How long a request of `kind` to `node` would wait now for the node's throttle to pass
    /// (zero: none).
    pub(crate) fn throttle_remaining(&self, node: SocketAddr, kind: ThrottleKind) -> Duration {
        lock(&self.slot(node).throttles).wait(kind, clock::now())
    }

    /// Waits until `node` no longer throttles requests of `kind` (KIP-219: the client waits
    /// out the throttle time its last answer carried rather than have the node hold the
    /// request). Waits again if another answer extended the throttle meanwhile.
    async fn wait_out_throttle(&self, node: SocketAddr, kind: ThrottleKind) {
        loop {
            let wait = self.throttle_remaining(node, kind);
            if wait.is_zero() {
                return;
            }
            tracing::debug!(%node, ?kind, wait_ms = wait.as_millis(), "waiting out the node's throttle");
            tokio::time::sleep(wait).await;
        }
    }

    /// The request as frame chunks: record batches stay the caller's buffers (no copy into
    /// one frame; that copy was ~5% of the producer's CPU in the issue 7 profile).
    fn encode(&self, request: &Request) -> Result<(u32, Vec<Bytes>), RequestError> {
        let correlation_id = self.inner.correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame =
            wire::encode_request_frame(correlation_id, &self.inner.config.client_id, request);
        let limit = self.inner.config.frame_bytes_max;
        if frame.len() > limit as usize {
            return Err(RequestError::FrameTooLarge {
                bytes: frame.len(),
                limit,
            });
        }
        Ok((correlation_id, frame.into_chunks()))
    }

    /// The connection for a request to `node`; a node that cannot be reached is reported to
    /// the cluster view (its leaderships are in doubt, and it backs off as a metadata source).
    async fn connection_for_request(
        &self,
        node: SocketAddr,
    ) -> Result<quinn::Connection, ConnectError> {
        let connected = self.connection_to(node, &node.to_string()).await;
        if let Err(error) = &connected
            && !matches!(error, ConnectError::Closed)
        {
            lock(&self.inner.cluster).handle_node_unreachable(&node.to_string(), clock::now());
        }
        connected
    }

    /// The live connection to `node`, or a new one; `server` names it in errors.
    async fn connection_to(
        &self,
        node: SocketAddr,
        server: &str,
    ) -> Result<quinn::Connection, ConnectError> {
        if self.is_closed() {
            return Err(ConnectError::Closed);
        }
        let slot = self.slot(node);
        let mut current = slot.connection.lock().await;
        if self.is_closed() {
            return Err(ConnectError::Closed);
        }
        if let Some(connection) = current.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let config = &self.inner.config;
        let connecting = self
            .inner
            .endpoint
            .connect(node, &config.server_name)
            .map_err(|error| ConnectError::Handshake {
                server: server.to_string(),
                message: error.to_string(),
            })?;
        let connection = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => {
                return Err(ConnectError::TimedOut {
                    server: server.to_string(),
                    timeout: config.connect_timeout,
                });
            }
            Ok(Err(error)) => {
                let mut message = explain_client_certificate_alert(error.to_string());
                if message.contains("UnknownIssuer") {
                    message.push_str(
                        " (the node's certificate is not signed by the trusted CA; trust the \
                         node's own <data-dir>/tls/ca.pem)",
                    );
                }
                return Err(ConnectError::Handshake {
                    server: server.to_string(),
                    message,
                });
            }
        };
        tracing::debug!(server = %node, "connected");
        if let Some(credentials) = &config.sasl {
            // Before the connection is shared: no request goes out on it unauthenticated.
            let authenticated = tokio::time::timeout(
                config.request_timeout,
                self.authenticate(&connection, credentials),
            )
            .await;
            let failure = match authenticated {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(_) => Some(format!(
                    "no answer within the request timeout ({:?})",
                    config.request_timeout
                )),
            };
            if let Some(message) = failure {
                connection.close(0u32.into(), b"SASL authentication failed");
                return Err(ConnectError::Authentication {
                    server: server.to_string(),
                    user: credentials.user.clone(),
                    mechanism: credentials.mechanism.name().to_owned(),
                    message,
                });
            }
            tracing::debug!(server = %node, user = %credentials.user, mechanism = %credentials.mechanism, "authenticated");
        }
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Runs the SASL exchange for `credentials` on a new connection: SaslHandshake, then one
    /// SaslAuthenticate per client message. The error is a message for
    /// [`ConnectError::Authentication`] (never the password).
    async fn authenticate(
        &self,
        connection: &quinn::Connection,
        credentials: &SaslCredentials,
    ) -> Result<(), String> {
        let mechanism = credentials.mechanism;
        let handshake = Request::SaslHandshake(wire::SaslHandshakeRequest {
            mechanism: mechanism.name().to_owned(),
        });
        match self.sasl_request(connection, &handshake).await? {
            Response::SaslHandshake(answer) if answer.error == ErrorCode::None => {}
            Response::SaslHandshake(answer) => {
                return Err(format!(
                    "{}: {} (the node enables: {})",
                    answer.error,
                    answer.message,
                    answer.mechanisms.join(", ")
                ));
            }
            other => return Err(unexpected(ApiKey::SaslHandshake, &other).to_string()),
        }
        let (mut scram, first) = match mechanism {
            SaslMechanism::Plain => (None, sasl::plain_message(credentials)),
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let nonce = ScramClient::random_nonce().map_err(|error| error.to_string())?;
                let (client, first) =
                    ScramClient::start(credentials, nonce).map_err(|error| error.to_string())?;
                (Some(client), first)
            }
        };
        let mut message = first;
        // SCRAM: client-first, client-final; PLAIN: one message.
        for step in 0.. {
            let request = Request::SaslAuthenticate(wire::SaslAuthenticateRequest {
                auth_bytes: Bytes::from(std::mem::take(&mut message)),
            });
            let answer = match self.sasl_request(connection, &request).await? {
                Response::SaslAuthenticate(answer) => answer,
                other => return Err(unexpected(ApiKey::SaslAuthenticate, &other).to_string()),
            };
            if answer.error != ErrorCode::None {
                return Err(format!("{}: {}", answer.error, answer.message));
            }
            let Some(client) = scram.as_mut() else {
                return Ok(());
            };
            if step == 0 {
                message = client
                    .handle_server_first(&answer.auth_bytes)
                    .map_err(|error| error.to_string())?;
            } else {
                return client
                    .handle_server_final(&answer.auth_bytes)
                    .map_err(|error| error.to_string());
            }
        }
        Ok(())
    }

    /// One request of the SASL exchange on `connection`.
    async fn sasl_request(
        &self,
        connection: &quinn::Connection,
        request: &Request,
    ) -> Result<Response, String> {
        let api_key = request.api_key();
        let (correlation_id, frame) = self.encode(request).map_err(|error| error.to_string())?;
        let limit = self.inner.config.frame_bytes_max as usize;
        let bytes = exchange(connection, frame, limit)
            .await
            .map_err(|error| error.error.to_string())?;
        let (header, response) = wire::decode_response(api_key, Bytes::from(bytes))
            .map_err(|error| format!("malformed {api_key:?} answer: {error}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "{api_key:?}: correlation id {} answers request {correlation_id}",
                header.correlation_id
            ));
        }
        response.ok_or_else(|| format!("{}: {}", header.error, header.message))
    }

    /// Forgets `connection` to `node` if it is still the current one, so the next request
    /// reconnects, and tells the cluster view the node's leaderships are in doubt.
    async fn discard(&self, node: SocketAddr, connection: &quinn::Connection) {
        let slot = lock(&self.inner.nodes).get(&node).cloned();
        if let Some(slot) = slot {
            let mut current = slot.connection.lock().await;
            if current
                .as_ref()
                .is_some_and(|known| known.stable_id() == connection.stable_id())
            {
                *current = None;
            }
        }
        connection.close(0u32.into(), b"request failed; reconnecting");
        lock(&self.inner.cluster).handle_node_unreachable(&node.to_string(), clock::now());
    }
}

/// Locks a std mutex; a panic elsewhere while it was held leaves data that is still usable
/// (every critical section here is a few assignments).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The error of a bootstrap where no server answered: the only server's own error, or one
/// that names every server and why it failed.
fn bootstrap_error(servers: &str, mut failures: Vec<(String, ConnectError)>) -> ConnectError {
    if failures.len() == 1
        && let Some((_, error)) = failures.pop()
    {
        return error;
    }
    if failures.is_empty() {
        return ConnectError::Resolve {
            server: servers.to_string(),
            message: "no server address given".into(),
        };
    }
    ConnectError::NoServerReachable {
        servers: servers.to_string(),
        reasons: failures
            .iter()
            .map(|(_, error)| error.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A failed exchange, and whether the connection itself is to blame.
struct ExchangeError {
    error: RequestError,
    connection_broken: bool,
}

async fn exchange(
    connection: &quinn::Connection,
    mut frame: Vec<Bytes>,
    limit: usize,
) -> Result<Vec<u8>, ExchangeError> {
    let broken = |error: RequestError| ExchangeError {
        error,
        connection_broken: true,
    };
    // A stream error says only "connection lost"; the connection's close reason says why
    // (a TLS alert about the client certificate, the node's reason for closing).
    let connection_lost = |error: &dyn std::fmt::Display| match connection.close_reason() {
        Some(reason) => connection_lost(reason),
        None => connection_lost(error),
    };
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|error| broken(connection_lost(&error)))?;
    send.write_all_chunks(&mut frame)
        .await
        .map_err(|error| broken(connection_lost(&error)))?;
    send.finish()
        .map_err(|error| broken(connection_lost(&error)))?;
    recv.read_to_end(limit).await.map_err(|error| match error {
        quinn::ReadToEndError::TooLong => ExchangeError {
            error: RequestError::MalformedResponse(format!(
                "response exceeds the frame limit of {limit} bytes"
            )),
            // The node keeps sending into a stream we stopped reading; the connection is fine.
            connection_broken: false,
        },
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => ExchangeError {
            // The node reset this one stream (it refused the request); others are unaffected.
            error: RequestError::ConnectionLost(format!("node reset the stream (code {code})")),
            connection_broken: false,
        },
        other => broken(connection_lost(&other)),
    })
}

fn connection_lost(error: impl std::fmt::Display) -> RequestError {
    RequestError::ConnectionLost(explain_client_certificate_alert(error.to_string()))
}

/// Adds what to do to a TLS alert about the client's certificate. With TLS 1.3 the client
/// finishes its handshake before the node checks its certificate, so the node's refusal
/// arrives as a lost connection on the first request: alert 116 (certificate_required) when
/// none was given; when the one given was refused, bad_certificate (42),
/// unsupported_certificate (43), certificate_revoked (44), certificate_expired (45),
/// certificate_unknown (46), unknown_ca (48), access_denied (49) or decrypt_error (51: a
/// signature that does not verify, e.g. another CA of the same name).
fn explain_client_certificate_alert(mut message: String) -> String {
    let hint = if message.contains("error 116") {
        Some(
            "the node requires a client certificate: pass --cert FILE --key FILE (ClientConfig::client_certificate)",
        )
    } else if [42, 43, 44, 45, 46, 48, 49, 51]
        .iter()
        .any(|alert| message.contains(&format!("error {alert}:")))
    {
        Some(
            "the node refused the client certificate: it must be signed by the node's client CA ([security] client_ca), unexpired and not revoked",
        )
    } else {
        None
    };
    if let Some(hint) = hint {
        message.push_str(" (");
        message.push_str(hint);
        message.push(')');
    }
    message
}

pub(crate) fn unexpected(api_key: ApiKey, response: &Response) -> RequestError {
    RequestError::MalformedResponse(format!(
        "{api_key:?} request answered with a {:?} response",
        response.api_key()
    ))
}

pub(crate) async fn resolve(server: &str) -> Result<SocketAddr, ConnectError> {
    let resolve_error = |message: String| ConnectError::Resolve {
        server: server.to_string(),
        message,
    };
    let mut addresses = tokio::net::lookup_host(server)
        .await
        .map_err(|error| resolve_error(error.to_string()))?;
    addresses
        .next()
        .ok_or_else(|| resolve_error("no addresses".into()))
}

fn udp_socket(
    server: SocketAddr,
    buffer_bytes: usize,
) -> Result<std::net::UdpSocket, ConnectError> {
    let socket_error = |error: std::io::Error| ConnectError::Socket(error.to_string());
    let (domain, local) = match server {
        SocketAddr::V4(_) => (
            socket2::Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        ),
        SocketAddr::V6(_) => (
            socket2::Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        ),
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(socket_error)?;
    // The kernel may cap these (net.core.rmem_max); a smaller buffer still works, only with
    // more drops under bursts, so a refusal is not an error.
    if let Err(error) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::debug!(%error, "cannot set the UDP receive buffer size");
    }
    if let Err(error) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::debug!(%error, "cannot set the UDP send buffer size");
    }
    socket.bind(&local.into()).map_err(socket_error)?;
    Ok(socket.into())
}

fn quic_client_config(config: &ClientConfig) -> Result<quinn::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |error: rustls::Error| ConnectError::Tls(error.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?;
    let client_certificate = config
        .client_certificate
        .as_ref()
        .map(load_client_certificate)
        .transpose()?;
    let with_client_auth = |builder: rustls::ConfigBuilder<
        rustls::ClientConfig,
        rustls::client::WantsClientCert,
    >| match client_certificate {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|error| ConnectError::Tls(format!("client certificate: {error}"))),
    };
    let mut crypto = match &config.trust {
        Trust::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|error| ConnectError::CaFile {
                path: path.clone(),
                message: error.to_string(),
            })?;
            let roots = root_store(&pem).map_err(|message| match message {
                Some(message) => ConnectError::CaFile {
                    path: path.clone(),
                    message,
                },
                None => ConnectError::NoCertificate { path: path.clone() },
            })?;
            with_client_auth(builder.with_root_certificates(roots))?
        }
        Trust::CaPem(pem) => {
            let roots = root_store(pem).map_err(|message| {
                ConnectError::Tls(message.unwrap_or_else(|| "CA PEM holds no certificate".into()))
            })?;
            with_client_auth(builder.with_root_certificates(roots))?
        }
        Trust::Insecure => with_client_auth(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider })),
        )?,
    };
    crypto.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|error| ConnectError::Tls(error.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|error| ConnectError::Tls(format!("idle_timeout: {error}")))?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(config.idle_timeout / 4));
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(Arc::new(transport));
    Ok(client_config)
}

/// Reads a client certificate chain and its key; refuses a key file its group or others can
/// read, as the node does its own keys.
fn load_client_certificate(
    certificate: &ClientCertificate,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConnectError> {
    use std::os::unix::fs::PermissionsExt;
    let failed = |path: &std::path::Path, message: String| ConnectError::ClientCertificate {
        path: path.to_path_buf(),
        message,
    };
    let pem = std::fs::read(&certificate.cert)
        .map_err(|error| failed(&certificate.cert, error.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|error| failed(&certificate.cert, error.to_string()))?;
    if chain.is_empty() {
        return Err(failed(
            &certificate.cert,
            "contains no PEM certificate".into(),
        ));
    }
    let key = &certificate.key;
    let mode = std::fs::metadata(key)
        .map_err(|error| failed(key, error.to_string()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o044 != 0 {
        return Err(failed(
            key,
            format!(
                "private key file is readable by its group or by others (mode {mode:04o}); restrict it with `chmod 600 {}`",
                key.display()
            ),
        ));
    }
    let bytes = std::fs::read(key).map_err(|error| failed(key, error.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|error| failed(key, format!("no usable private key: {error}")))?;
    Ok((chain, key))
}

/// The certificates in `pem`; `Err(None)` when there are none.
fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, Option<String>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|error| Some(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| Some(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(None);
    }
    Ok(roots)
}

/// The verifier behind [`Trust::Insecure`]: any certificate chain is accepted. The handshake
/// signature is still checked against the presented key, so the session is encrypted to
/// whoever holds that key, but nothing ties the key to the node.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
