//! One Kafka connection: a reader task that frames and decodes requests, and the loop that
//! answers them, writing the responses strictly in request order (Kafka clients match
//! answers by order; the correlation ids go back in the order they came).
//!
//! Produces are pipelined: once a produce is sequenced (its batches queued in their
//! partitions' writers, in order, so no later append can overtake them; see
//! [`sequencing`](crate::broker::sequencing)), the next produce starts while the first
//! waits for its fdatasync, and the produces in flight share the writers' group commits.
//! Every other request is serial, as Kafka's broker serializes a connection: it starts only
//! once every request before it is answered and its answer written, and the request after
//! it only once its own answer is written, so e.g. an OffsetCommit or Fetch after a Produce
//! sees that produce done, and at most one answer that may be large (a Fetch's) is held at
//! a time. The rule is `may_start`; the loop only drives it.
//!
//! Answers are written one at a time, in request order, by a write the loop polls beside
//! the started requests rather than awaits: a client slow to read its answers (or not
//! reading them for a while) holds back only the writes, so the produces started before or
//! during a write still reach their writers' queues, and a produce read meanwhile still
//! starts by `may_start`.
//!
//! Memory: a frame's length is checked against `frame_bytes_max` and reserved from the
//! listener's bytes-in-flight budget before a byte of it is buffered; at most
//! `requests_in_flight_per_connection_max` requests are read and not yet written back
//! (started, waiting their turn, or answered and waiting for the write before them):
//! beyond, the connection is not read until answers go out. A frame that does not decode
//! ends the reading: requests before it are still answered, then the connection closes. A
//! response that cannot be written (the client went away) or encoded ends the answering:
//! the requests already started still run to their end (a produce is appended or refused
//! whole, never cut off mid-way), their answers are dropped, and the connection closes.
//!
//! Quotas (issue 15, KIP-219): with the node's [`ClientQuotaManager`], a Produce's request
//! bytes and a Fetch's response bytes are recorded against the connection's principal
//! once answered; over its quota, the answer carries Kafka's `throttle_time_ms` and the
//! connection is muted (no further request starts) until that time has passed on the
//! node's clock, as Kafka's broker mutes the channel (for every version: older clients
//! that do not back off themselves are held back the same way). An acks=0 produce mutes
//! without an answer. Once the connection's principal is authenticated (a client
//! certificate, or SASL), it takes one of the principal's
//! `security.connections_per_principal_max` slots (super users exempt); a principal at its
//! limit has the connection closed before any request of it is served.
//!
//! Authentication: the connection's [`SaslSession`] sees each request just before it
//! starts (requests start in order, and the SASL ones only alone, so it sees them in the
//! client's order) and says whether to serve it, answer it itself (a step of a SASL
//! exchange), or close the connection (`kafka/sasl.rs`). After a SaslHandshake v0 the reader
//! takes the next frames as raw SASL tokens, not requests, until the exchange ends.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering as AtomicOrdering};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::apis::KafkaRequest;
use super::codec::{self, DecodedRequest, EncodeError};
use super::dispatch::{KafkaService, ListenerKind, Reply};
use super::sasl::{Admission, RawAnswer, SaslSession};
use crate::broker::sequencing::{Sequenced, SequencingHold, sequencing};
use crate::clock::Clock;
use crate::security::identity::ClientIdentity;
use crate::security::quota::{ClientQuotaManager, PrincipalPermit, QuotaKind};
use crate::storage::Disk;
use crate::transport::budget::{ConnectionBudget, Reservation};

/// What the reader hands to the answering loop.
enum Incoming {
    /// A request, with the reservation that covers its frame until it is answered.
    Request(Box<DecodedRequest>, Reservation),
    /// ApiVersions at a version the node does not serve: answer the fallback.
    ApiVersionsFallback { correlation_id: i32 },
    /// A raw SASL token (after SaslHandshake v0), with its frame's reservation.
    SaslToken(Bytes, Reservation),
    /// Answered already (by the SASL session): the frame to write.
    Ready(Result<Bytes, EncodeError>),
}

impl Incoming {
    fn order(&self) -> Order {
        match self {
            Self::Request(request, _) if matches!(request.body, KafkaRequest::Produce(_)) => {
                Order::Pipelined
            }
            Self::Request(..)
            | Self::ApiVersionsFallback { .. }
            | Self::SaslToken(..)
            | Self::Ready(_) => Order::Serial,
        }
    }
}

/// How a request is ordered against the requests around it on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// A produce: starts once every earlier request is sequenced.
    Pipelined,
    /// Anything else: starts once every earlier request is answered.
    Serial,
}

/// Whether the next request, of `order`, may start now, with `unfinished` requests started
/// and not yet answered or their answers not yet written, the latest of which is sequenced
/// if `latest_sequenced` (a serial request counts as sequenced only once answered).
/// Requests start in order, each only after the one before it is sequenced, so the latest
/// being sequenced means every earlier one is. How many may be unfinished at once needs no
/// check here: a request holds one of the reader's `requests_in_flight_per_connection_max`
/// permits from before it is read until its answer is written, so the unfinished ones and
/// the one asking are already within it.
fn may_start(order: Order, unfinished: usize, latest_sequenced: bool) -> bool {
    if unfinished == 0 {
        return true;
    }
    match order {
        Order::Pipelined => latest_sequenced,
        Order::Serial => false,
    }
}

/// A request read and not yet answered, with the permit that counts it against
/// `requests_in_flight_per_connection_max`.
type Read = (Incoming, OwnedSemaphorePermit);

/// A started request's outcome: what to write, and the permit to release once it is
/// written (or dropped).
type Answered = (Frame, OwnedSemaphorePermit);

/// What a started request has the connection write.
enum Frame {
    /// This response frame (or the error it failed to encode with).
    Write(Result<Bytes, EncodeError>),
    /// Nothing: an acks=0 produce.
    Nothing,
    /// Nothing, and close the connection: an acks=0 produce that was denied (Kafka's
    /// answer, as the client reads no response to learn of it).
    Close,
}

/// A started request's outcome and how long its client is throttled (zero: not at all).
type Throttled = (Answered, std::time::Duration);

/// Serves one connection (plaintext TCP or TLS over it) until the client closes it, a
/// frame does not decode, or the node shuts down (the requests started are finished and
/// answered first), or it sends no request for `kafka.connections_max_idle_ms` of `clock`'s
/// time. `remote` is the client's address, for the logs; `identity` is who the listener
/// found the client to be (a verified client certificate's principal, or anonymous).
pub(crate) async fn serve_connection<D: Disk, S>(
    stream: S,
    remote: Option<SocketAddr>,
    identity: ClientIdentity,
    clock: Arc<dyn Clock>,
    service: Arc<KafkaService<D>>,
    budget: ConnectionBudget,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    tracing::debug!(?remote, principal = %identity.principal, method = ?identity.method, "kafka connection identified");
    let connections = &crate::metrics::node().connections;
    let _count = crate::metrics::ConnectionCount::open(match service.kind() {
        ListenerKind::Plaintext => &connections.kafka,
        ListenerKind::Tls => &connections.kafka_tls,
    });
    let (reader, writer) = tokio::io::split(stream);
    let settings = service.settings();
    let requests_max = settings.requests_in_flight_per_connection_max.max(1);
    let (incoming, mut requests) = mpsc::channel(requests_max);
    let mut sasl = SaslSession::new(
        Arc::clone(service.sasl()),
        service.kind() == ListenerKind::Tls,
        identity,
        settings.sasl_session_lifetime,
    )
    .with_audit(service.audit_log());
    let framing = Arc::new(Framing {
        raw_tokens: AtomicBool::new(false),
        frame_bytes_max: AtomicU32::new(0),
    });
    framing.follow(&sasl, settings);
    let reading = tokio::spawn(read_requests(
        reader,
        remote,
        incoming,
        Arc::new(Semaphore::new(requests_max)),
        budget,
        Arc::clone(&framing),
    ));
    let idle_max = settings.connections_max_idle;
    // Started and not yet answered, in request order.
    let mut started = FuturesOrdered::new();
    // The latest started request's sequencing, until it completes.
    let mut latest: Option<Sequenced> = None;
    // Read, waiting for its turn to start.
    let mut waiting: Option<Read> = None;
    let mut reading_open = true;
    // Answered, waiting to be written, in request order.
    let mut answers = Answers::new(writer, remote);
    // Shutting down, or the answers cannot go out: start nothing more.
    let mut stopping = false;
    // Throttled (KIP-219): no request starts before this time of `clock`'s.
    let mut muted_until: Option<std::time::Instant> = None;
    // The authenticated principal's connection slot (`None` inside: not counted).
    let mut principal_slot: Option<(ClientIdentity, Option<PrincipalPermit>)> = None;
    loop {
        if muted_until.is_some_and(|until| clock.now() >= until) {
            muted_until = None;
        }
        if let Some((next, permit)) = waiting.take() {
            let unfinished = started.len() + answers.len();
            if !stopping
                && muted_until.is_none()
                && may_start(next.order(), unfinished, latest.is_none())
            {
                let (admitted, close) = admit(&mut sasl, next, clock.now());
                // Before the answer goes out: the client sends its next frame only after.
                framing.follow(&sasl, settings);
                let over_limit = !principal_admitted(
                    service.quotas(),
                    sasl.identity(),
                    &mut principal_slot,
                    remote,
                );
                if let Some(next) = admitted.filter(|_| !over_limit) {
                    let (hold, sequenced) = sequencing();
                    latest = Some(sequenced);
                    // Who the request is from, as of its start (after any re-authentication
                    // it follows), and what that principal may do.
                    let access = service.access(sasl.identity());
                    started.push_back(answer(
                        &service,
                        next,
                        access,
                        Arc::clone(&clock),
                        permit,
                        hold,
                    ));
                }
                // Closing: what is started is answered, nothing more is read or started.
                stopping |= close || over_limit;
            } else if !stopping {
                waiting = Some((next, permit));
            }
        }
        // Nothing started and every answer written.
        let quiet = started.is_empty() && answers.is_empty();
        if quiet && (stopping || (waiting.is_none() && !reading_open)) {
            break;
        }
        if let Some(until) = muted_until.filter(|_| quiet && waiting.is_some()) {
            // Throttled with the next request read: wait out the throttle.
            tokio::select! {
                () = clock.sleep_until(until) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
            continue;
        }
        if quiet {
            // Idle: no request read since the last one was answered (Kafka's
            // `connections.max.idle.ms`); a client that still wants the connection sends one.
            let next = tokio::select! {
                next = crate::clock::timeout(&*clock, idle_max, requests.recv()) => next,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Ok(next) = next else {
                tracing::debug!(
                    ?remote,
                    idle_ms = idle_max.as_millis(),
                    "kafka connection closed: idle for kafka.connections_max_idle_ms"
                );
                break;
            };
            match next {
                Some(next) => waiting = Some(next),
                None => reading_open = false,
            }
            continue;
        }
        // Not quiet: a request is started or an answer is being written, so at least one of
        // the two branches below is enabled.
        let event = tokio::select! {
            biased;
            () = stop_requested(&mut shutdown), if !stopping => Event::Stop,
            Some(answered) = started.next(), if !started.is_empty() => Event::Answered(answered),
            written = answers.written(), if !answers.is_empty() => Event::Written(written),
            () = sequenced(&mut latest), if latest.is_some() => Event::Sequenced,
            next = requests.recv(), if waiting.is_none() && reading_open && !stopping => {
                Event::Read(next)
            }
            () = unmuted(&*clock, muted_until), if muted_until.is_some() && waiting.is_some() => {
                Event::Unmuted
            }
        };
        match event {
            Event::Stop => stopping = true,
            Event::Answered((answered, throttle)) => {
                if !throttle.is_zero() {
                    let until = crate::clock::deadline_after(clock.now(), throttle);
                    muted_until = Some(muted_until.map_or(until, |muted| muted.max(until)));
                }
                answers.push(answered);
            }
            Event::Unmuted => {}
            Event::Written(true) => {}
            Event::Written(false) => stopping = true,
            Event::Sequenced => latest = None,
            Event::Read(Some(next)) => waiting = Some(next),
            Event::Read(None) => reading_open = false,
        }
    }
    reading.abort();
    if let Some(mut writer) = answers.writer.take() {
        let _ = writer.shutdown().await;
    }
}

/// How the reader reads the next frame, as the connection's SASL state says; the answering
/// loop updates it after each request it starts, before that request's answer goes out.
struct Framing {
    /// The next frames are raw SASL tokens (an exchange after SaslHandshake v0).
    raw_tokens: AtomicBool,
    /// Largest frame: `kafka.frame_bytes_max`, or at most `kafka.sasl_receive_bytes_max`
    /// before authentication (Kafka's `sasl.server.max.receive.size`).
    frame_bytes_max: AtomicU32,
}

impl Framing {
    fn follow(&self, sasl: &SaslSession, settings: &super::KafkaSettings) {
        self.raw_tokens
            .store(sasl.expects_raw_tokens(), AtomicOrdering::Release);
        let limit = if sasl.receive_limited() {
            settings
                .frame_bytes_max
                .min(settings.sasl_receive_bytes_max)
        } else {
            settings.frame_bytes_max
        };
        self.frame_bytes_max.store(limit, AtomicOrdering::Release);
    }
}

/// Puts a request to the connection's SASL session before it starts: the request to start
/// (the request itself, or its answer when the session gave one), `None` to drop it, and
/// whether to close the connection after it.
fn admit(
    sasl: &mut SaslSession,
    incoming: Incoming,
    now: std::time::Instant,
) -> (Option<Incoming>, bool) {
    match incoming {
        Incoming::Request(request, reservation) => {
            let answered = |response| {
                Incoming::Ready(codec::encode_response(
                    request.header.correlation_id,
                    request.version,
                    &response,
                ))
            };
            // Only a SASL token may cost CPU; every other request is decided at once.
            let admission = if matches!(request.body, KafkaRequest::SaslAuthenticate(_)) {
                costly(|| sasl.admit(&request, now))
            } else {
                sasl.admit(&request, now)
            };
            match admission {
                Admission::Serve => (Some(Incoming::Request(request, reservation)), false),
                Admission::Answer(response) => (Some(answered(response)), false),
                Admission::AnswerAndClose(response) => (Some(answered(response)), true),
                Admission::Close => (None, true),
            }
        }
        Incoming::ApiVersionsFallback { .. } => {
            let serve = sasl.may_serve(kafka_protocol::messages::ApiKey::ApiVersions, now);
            (serve.then_some(incoming), !serve)
        }
        Incoming::SaslToken(token, _reservation) => match costly(|| sasl.raw_token(&token, now)) {
            RawAnswer::Answer(frame) => (Some(Incoming::Ready(Ok(frame))), false),
            RawAnswer::Close => (None, true),
        },
        Incoming::Ready(_) => (Some(incoming), false),
    }
}

/// Runs `work`, which may take milliseconds of CPU (a SASL PLAIN password is one PBKDF2 of up
/// to 16,384 iterations), telling a multi-threaded runtime so that it moves this worker's
/// other tasks elsewhere meanwhile (the node's runtime is one); on another runtime (tests)
/// it just runs it.
pub(crate) fn costly<T>(work: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// What woke the answering loop while requests are started or answers are being written.
enum Event {
    /// The node is shutting down.
    Stop,
    /// The earliest started request is answered, with its throttle time.
    Answered(Throttled),
    /// The throttle time is over.
    Unmuted,
    /// The answer being written went out (true), or could not (false: the client went
    /// away, or it did not encode).
    Written(bool),
    /// The latest started request is sequenced.
    Sequenced,
    /// The reader's next request; `None` once it stopped reading.
    Read(Option<Read>),
}

/// Completes once the node shuts down (or can no longer say it will).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Completes once `clock` reaches `until`; never without one.
async fn unmuted(clock: &dyn Clock, until: Option<std::time::Instant>) {
    match until {
        Some(until) => clock.sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Whether the connection may go on as `identity`: takes the principal's connection slot
/// the first time it is authenticated (and again if re-authentication changed it); false,
/// with a log line, when the principal holds its `security.connections_per_principal_max`
/// connections already.
fn principal_admitted(
    quotas: Option<&Arc<ClientQuotaManager>>,
    identity: &ClientIdentity,
    slot: &mut Option<(ClientIdentity, Option<PrincipalPermit>)>,
    remote: Option<SocketAddr>,
) -> bool {
    let Some(quotas) = quotas else {
        return true;
    };
    if !identity.is_authenticated()
        || slot
            .as_ref()
            .is_some_and(|(held, _)| held.principal == identity.principal)
    {
        return true;
    }
    // Re-authenticated as another principal: the old slot goes first.
    *slot = None;
    match quotas.connect(identity) {
        Ok(permit) => {
            *slot = Some((identity.clone(), permit));
            true
        }
        Err(reached) => {
            tracing::warn!(?remote, %reached, "kafka connection closed: security.connections_per_principal_max reached for this principal");
            false
        }
    }
}

/// Records a Produce's request bytes or a Fetch's response bytes against `identity`'s
/// quota and sets the throttle time in the response; returns the frame to write and the
/// throttle time. The response is encoded again only when throttled.
fn throttled(
    quotas: &ClientQuotaManager,
    identity: &ClientIdentity,
    now: std::time::Instant,
    correlation_id: i32,
    version: i16,
    request_bytes: usize,
    response: Option<super::apis::KafkaResponse>,
) -> (Option<Result<Bytes, EncodeError>>, std::time::Duration) {
    use super::apis::KafkaResponse;
    let Some(mut response) = response else {
        // acks=0: the request's bytes still count, and the connection is still muted.
        let throttle = quotas.record(identity, QuotaKind::Produce, request_bytes as u64, now);
        return (None, throttle);
    };
    let frame = codec::encode_response(correlation_id, version, &response);
    let (kind, bytes) = match (&response, &frame) {
        (KafkaResponse::Produce(_), _) => (QuotaKind::Produce, request_bytes),
        (KafkaResponse::Fetch(_), Ok(frame)) => (QuotaKind::Fetch, frame.len()),
        _ => return (Some(frame), std::time::Duration::ZERO),
    };
    let throttle = quotas.record(identity, kind, bytes as u64, now);
    if throttle.is_zero() {
        return (Some(frame), throttle);
    }
    let throttle_ms = i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX);
    match &mut response {
        KafkaResponse::Produce(produce) => {
            produce.throttle_time_ms = produce.throttle_time_ms.max(throttle_ms);
        }
        KafkaResponse::Fetch(fetch) => {
            fetch.throttle_time_ms = fetch.throttle_time_ms.max(throttle_ms);
        }
        _ => {}
    }
    tracing::debug!(principal = %identity.principal, ?kind, throttle_ms, "kafka client throttled: over its byte-rate quota");
    (
        Some(codec::encode_response(correlation_id, version, &response)),
        throttle,
    )
}

/// Answers one request from the caller `access` describes; the hold is dropped when it is
/// sequenced (`KafkaService::handle`).
async fn answer<D: Disk>(
    service: &KafkaService<D>,
    incoming: Incoming,
    access: crate::security::access::Access,
    clock: Arc<dyn Clock>,
    permit: OwnedSemaphorePermit,
    sequencing: SequencingHold,
) -> Throttled {
    let mut throttle = std::time::Duration::ZERO;
    let frame = match incoming {
        Incoming::Request(request, reservation) => {
            let correlation_id = request.header.correlation_id;
            let version = request.version;
            let request_bytes = reservation.bytes();
            let quota_counted = matches!(
                request.body,
                KafkaRequest::Produce(_) | KafkaRequest::Fetch(_)
            );
            let api = request.api;
            let started = clock.now();
            // Every log line of the request names its principal (see `crate::logging`).
            let span = crate::logging::request_span(&access.identity().principal, &request.api);
            let reply = tracing::Instrument::instrument(
                service.handle(*request, &access, sequencing),
                span,
            )
            .await;
            crate::metrics::node().requests.record_kafka(
                api,
                if matches!(reply, Reply::Close) {
                    crate::metrics::Outcome::Refused
                } else {
                    crate::metrics::Outcome::Ok
                },
                clock.now().saturating_duration_since(started),
            );
            drop(reservation);
            let response = match reply {
                Reply::Answer(response) => Some(response),
                // acks=0 produce: Kafka sends nothing back.
                Reply::Nothing => None,
                Reply::Close => return ((Frame::Close, permit), throttle),
            };
            let frame = match service.quotas().filter(|_| quota_counted) {
                Some(quotas) => {
                    let (frame, throttled_for) = throttled(
                        quotas,
                        access.identity(),
                        clock.now(),
                        correlation_id,
                        version,
                        request_bytes,
                        response,
                    );
                    throttle = throttled_for;
                    frame
                }
                None => response
                    .map(|response| codec::encode_response(correlation_id, version, &response)),
            };
            match frame {
                Some(frame) => Frame::Write(frame),
                None => Frame::Nothing,
            }
        }
        Incoming::ApiVersionsFallback { correlation_id } => {
            Frame::Write(codec::api_versions_fallback(correlation_id))
        }
        Incoming::Ready(frame) => Frame::Write(frame),
        // Never: the SASL session answers raw tokens before they start.
        Incoming::SaslToken(..) => Frame::Nothing,
    };
    ((frame, permit), throttle)
}

/// A write under way: it gives the writer back, and whether the answer went out.
type Writing<S> = Pin<Box<dyn Future<Output = (WriteHalf<S>, bool)> + Send>>;

/// The answers ready and not yet written, in request order, and the one write under way.
/// The write is a future of its own, so the loop keeps driving the started requests while
/// a client is slow to read. Each answer keeps its permit until written, so there are at
/// most `requests_in_flight_per_connection_max` of them.
struct Answers<S> {
    /// The writer, while no write is under way.
    writer: Option<WriteHalf<S>>,
    /// The write under way, if any; it owns the writer meanwhile.
    writing: Option<Writing<S>>,
    /// Ready, behind the write under way.
    queued: VecDeque<Answered>,
    /// False once a write failed or an answer did not encode: later answers are dropped,
    /// as no answer may go out in another's place.
    writable: bool,
    remote: Option<SocketAddr>,
}

impl<S: AsyncWrite + Send + 'static> Answers<S> {
    fn new(writer: WriteHalf<S>, remote: Option<SocketAddr>) -> Self {
        Self {
            writer: Some(writer),
            writing: None,
            queued: VecDeque::new(),
            writable: true,
            remote,
        }
    }

    /// Whether every answer given is written (or dropped) and no write is under way.
    fn is_empty(&self) -> bool {
        self.writing.is_none() && self.queued.is_empty()
    }

    /// Answers given and not yet written (or dropped), the one being written included.
    fn len(&self) -> usize {
        self.queued.len() + usize::from(self.writing.is_some())
    }

    /// Queues the next answer in request order, and starts writing it if nothing is being
    /// written; after a failed write it is dropped, releasing its permit.
    fn push(&mut self, answered: Answered) {
        if self.writable {
            self.queued.push_back(answered);
            self.write_next();
        }
    }

    /// Starts writing the first queued answer, unless a write is under way.
    fn write_next(&mut self) {
        if self.writing.is_some() {
            return;
        }
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let Some((frame, permit)) = self.queued.pop_front() else {
            self.writer = Some(writer);
            return;
        };
        let remote = self.remote;
        self.writing = Some(Box::pin(async move {
            let written = write_answer(&mut writer, remote, frame).await;
            drop(permit);
            (writer, written)
        }));
    }

    /// Completes when the write under way ends, true if its answer went out, and starts the
    /// next; never, if none is under way. Cancel-safe: the write stays where it is.
    async fn written(&mut self) -> bool {
        let Some(writing) = self.writing.as_mut() else {
            return std::future::pending().await;
        };
        let (writer, written) = writing.await;
        self.writing = None;
        self.writer = Some(writer);
        if written {
            self.write_next();
        } else {
            self.writable = false;
            self.queued.clear();
        }
        written
    }
}

/// Writes one answer; false if the connection cannot take more (the write failed, the
/// response did not encode, so no later answer may go out in its place, or the request
/// closes the connection).
async fn write_answer<W: AsyncWrite + Unpin>(
    writer: &mut W,
    remote: Option<SocketAddr>,
    frame: Frame,
) -> bool {
    match frame {
        Frame::Nothing => true,
        Frame::Close => {
            tracing::debug!(
                ?remote,
                "kafka connection closed: a produce with acks=0 was denied"
            );
            false
        }
        Frame::Write(Ok(frame)) => match writer.write_all(&frame).await {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(?remote, %error, "kafka connection: write failed");
                false
            }
        },
        Frame::Write(Err(error)) => {
            tracing::error!(?remote, %error, "kafka connection closed: response did not encode");
            false
        }
    }
}

/// Completes when the latest started request is sequenced; never, if there is none.
async fn sequenced(latest: &mut Option<Sequenced>) {
    match latest {
        Some(sequenced) => sequenced.wait().await,
        None => std::future::pending().await,
    }
}

/// Reads and decodes frames until the stream ends or a frame is refused.
async fn read_requests<S: AsyncRead>(
    mut reader: ReadHalf<S>,
    remote: Option<SocketAddr>,
    incoming: mpsc::Sender<Read>,
    requests: Arc<Semaphore>,
    budget: ConnectionBudget,
    framing: Arc<Framing>,
) {
    loop {
        // One of `requests_in_flight_per_connection_max` before the next frame is read;
        // the answering loop releases it once the request is answered.
        let Ok(permit) = Arc::clone(&requests).acquire_owned().await else {
            return;
        };
        // An error: the client closed the connection (or it broke), nothing more to read.
        let Ok(length) = reader.read_i32().await else {
            return;
        };
        let frame_bytes_max = framing.frame_bytes_max.load(AtomicOrdering::Acquire);
        let Some(bytes) = frame_bytes(length, frame_bytes_max) else {
            tracing::warn!(
                ?remote,
                length,
                frame_bytes_max,
                "kafka connection closed: request frame length outside 0..=kafka.frame_bytes_max (kafka.sasl_receive_bytes_max before authentication)"
            );
            return;
        };
        let reservation = match budget.reserve(bytes).await {
            Ok(reservation) => reservation,
            Err(error) => {
                tracing::warn!(?remote, %error, "kafka connection closed: request frame refused");
                return;
            }
        };
        let mut frame = BytesMut::zeroed(bytes);
        if reader.read_exact(&mut frame).await.is_err() {
            return;
        }
        let frame = Bytes::from(frame);
        if framing.raw_tokens.load(AtomicOrdering::Acquire) {
            if incoming
                .send((Incoming::SaslToken(frame, reservation), permit))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let next = match codec::decode_request(frame) {
            Ok(request) => Incoming::Request(Box::new(request), reservation),
            Err(error) => match error.api_versions_fallback() {
                Some(correlation_id) => Incoming::ApiVersionsFallback { correlation_id },
                None => {
                    tracing::info!(?remote, %error, "kafka connection closed: request refused");
                    return;
                }
            },
        };
        if incoming.send((next, permit)).await.is_err() {
            return;
        }
    }
}

/// The frame's length in bytes, if it is one the node reads.
fn frame_bytes(length: i32, frame_bytes_max: u32) -> Option<usize> {
    let length = u32::try_from(length).ok()?;
    (length <= frame_bytes_max).then_some(length as usize)
}

#[cfg(test)]
mod tests;
