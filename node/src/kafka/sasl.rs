//! SASL authentication on the Kafka listener, as Kafka's `SaslServerAuthenticator` does it:
//! SaslHandshake (v0-v1) names a mechanism, then the exchange's tokens come either as
//! SaslAuthenticate requests (after a v1 handshake) or as raw length-prefixed tokens with no
//! request header (after a v0 handshake, Kafka 0.10's framing). Mechanisms: SCRAM-SHA-256,
//! SCRAM-SHA-512 (driven by [`ScramServer`](crate::security::scram::ScramServer)) and PLAIN (checked against the stored SCRAM
//! credential by [`authenticate_plain`](crate::security::scram::authenticate_plain)); PLAIN is offered and accepted only on the TLS
//! listener. A completed exchange makes the connection's [`ClientIdentity`]
//! (`User:<name>`).
//!
//! One [`SaslSession`] per connection; pure (no IO): the connection hands it each request
//! before it starts, with the clock's `now`, and does what [`Admission`] says. Rules:
//! - Before authentication, with anonymous clients not allowed, only ApiVersions,
//!   SaslHandshake and SaslAuthenticate are served; any other request closes the connection
//!   without an answer (Kafka: "Unexpected Kafka request of type ... during SASL handshake").
//!   With anonymous clients allowed, a connection that never authenticates is
//!   `User:ANONYMOUS` and is served.
//! - During an exchange (after the handshake, before its last token), any request other than
//!   SaslAuthenticate closes the connection.
//! - A failed exchange is answered (SASL_AUTHENTICATION_FAILED with a message that never
//!   tells an unknown user from a wrong password, nor repeats a secret) and the connection
//!   closes, as Kafka closes it. An unsupported mechanism is answered with
//!   UNSUPPORTED_SASL_MECHANISM and the list offered, then the connection closes.
//! - With SASL off (no mechanisms), or on a connection that proved a client certificate, or
//!   after authentication when re-authentication is not possible, SaslHandshake and
//!   SaslAuthenticate are answered by the service as Kafka's `KafkaApis` answers them
//!   (ILLEGAL_SASL_STATE), and the connection stays.
//! - KIP-368: with `kafka.sasl_session_lifetime_ms` > 0, a completed exchange gives the
//!   session that lifetime (SaslAuthenticate v1+ tells the client); the client re-authenticates
//!   on the same connection with a new SaslHandshake and SaslAuthenticate, with the same
//!   mechanism and as the same principal (else the re-authentication fails and the connection
//!   closes), at most once every [`REAUTHENTICATION_INTERVAL_MIN`]. A request other than a
//!   SaslHandshake after the session expired closes the connection (a client that cannot
//!   re-authenticate, SaslAuthenticate v0 or raw tokens, reconnects).
//!
//! Every failure is logged with the name the client gave, its address and the mechanism;
//! never a password, proof, nonce or key. Each is also one `authentication_failure` event in
//! the audit log ([`SaslSession::with_audit`]; `security/audit.rs`), as is a connection
//! closed for sending other requests before authenticating.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::apis::{KafkaRequest, KafkaResponse};
use super::codec::DecodedRequest;
use crate::security::audit::{AuditEvent, AuditListener, AuditLog};
use crate::security::credentials::CredentialLookup;
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::sasl::{ExchangeStep, SaslExchange, SaslServer};
pub use crate::security::sasl::{SASL_MECHANISMS_ALL, SaslSetupError, mechanism_from_name};
use crate::security::scram::{AuthenticatedUser, SaslMechanism};

/// Shortest time between the starts of two re-authentications of one connection (Kafka's
/// `KafkaChannel.MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`); a SaslHandshake sooner is answered
/// ILLEGAL_SASL_STATE.
pub const REAUTHENTICATION_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// Longest user name, in characters, a failure log line repeats (the rest is cut).
pub const LOGGED_NAME_CHARS_MAX: usize = 128;

/// What a listener allows (from `[security] sasl_mechanisms` and `allow_anonymous`, once
/// wired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSaslSettings {
    /// Mechanisms a client may use, in the order SaslHandshake lists them; empty turns SASL
    /// off. PLAIN is offered only on TLS connections.
    pub mechanisms: Vec<SaslMechanism>,
    /// Whether a connection that proved nothing is served (as `User:ANONYMOUS`).
    pub allow_anonymous: bool,
}

impl KafkaSaslSettings {
    /// No SASL, anonymous clients served: the listener before issue 15.
    pub fn off() -> Self {
        Self {
            mechanisms: Vec::new(),
            allow_anonymous: true,
        }
    }
}

/// A listener's SASL configuration, shared by its connections.
pub struct KafkaSasl {
    settings: KafkaSaslSettings,
    /// Mechanisms, credentials and nonces (`security/sasl.rs`); `None` with SASL off.
    server: Option<SaslServer>,
    counts: Counters,
}

/// How many exchanges ended how, over the listener's life.
#[derive(Debug, Default)]
struct Counters {
    authentications: AtomicU64,
    reauthentications: AtomicU64,
    failures: AtomicU64,
}

/// A snapshot of a listener's SASL outcomes (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaslCounts {
    /// Exchanges that authenticated a connection for the first time.
    pub authentications: u64,
    /// Exchanges that re-authenticated a connection (KIP-368).
    pub reauthentications: u64,
    /// Exchanges that failed (wrong password, unknown user, bad message, unsupported
    /// mechanism, another principal on re-authentication).
    pub failures: u64,
}

impl KafkaSasl {
    /// SASL with `settings`, checking passwords against `credentials`.
    pub fn new(
        settings: KafkaSaslSettings,
        credentials: Arc<dyn CredentialLookup>,
    ) -> Result<Self, SaslSetupError> {
        Ok(Self {
            server: Some(SaslServer::new(settings.mechanisms.clone(), credentials)?),
            settings,
            counts: Counters::default(),
        })
    }

    /// SASL off, anonymous clients served ([`KafkaSaslSettings::off`]).
    pub fn off() -> Self {
        Self {
            settings: KafkaSaslSettings::off(),
            server: None,
            counts: Counters::default(),
        }
    }

    /// Anonymous clients not served, SASL off: only a client certificate admits a client.
    /// (The node refuses to start with this and no client certificates required; tests.)
    #[cfg(test)]
    pub(crate) fn anonymous_refused_without_sasl() -> Self {
        Self {
            settings: KafkaSaslSettings {
                mechanisms: Vec::new(),
                allow_anonymous: false,
            },
            ..Self::off()
        }
    }

    /// [`KafkaSasl::new`] with nonces from a fixed seed (tests).
    #[cfg(test)]
    pub(crate) fn with_seed(
        settings: KafkaSaslSettings,
        credentials: Arc<dyn CredentialLookup>,
        seed: u64,
    ) -> Self {
        Self {
            server: Some(SaslServer::with_seed(
                settings.mechanisms.clone(),
                credentials,
                seed,
            )),
            settings,
            counts: Counters::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &KafkaSaslSettings {
        &self.settings
    }

    /// The outcomes of the exchanges so far.
    pub fn counts(&self) -> SaslCounts {
        SaslCounts {
            authentications: self.counts.authentications.load(Ordering::Relaxed),
            reauthentications: self.counts.reauthentications.load(Ordering::Relaxed),
            failures: self.counts.failures.load(Ordering::Relaxed),
        }
    }

    /// The mechanisms offered on a connection (PLAIN only over TLS).
    fn offered(&self, over_tls: bool) -> Vec<SaslMechanism> {
        if self.server.is_none() {
            return Vec::new();
        }
        self.settings
            .mechanisms
            .iter()
            .copied()
            .filter(|mechanism| over_tls || *mechanism != SaslMechanism::Plain)
            .collect()
    }
}

impl std::fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the connection does with a request.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Hand it to the service (for SaslHandshake and SaslAuthenticate outside an exchange,
    /// the service answers ILLEGAL_SASL_STATE as Kafka's `KafkaApis` does).
    Serve,
    /// Answer with this (a step of the exchange).
    Answer(KafkaResponse),
    /// Answer with this, then close the connection (a failed authentication).
    AnswerAndClose(KafkaResponse),
    /// Close the connection without an answer.
    Close,
}

/// What the connection does with a raw token (after a v0 SaslHandshake).
#[derive(Debug, PartialEq)]
pub enum RawAnswer {
    /// Write this frame (the server's token, length prefix included).
    Answer(Bytes),
    /// Close the connection (Kafka sends nothing back on a failed raw exchange).
    Close,
}

/// How the exchange's tokens are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Raw length-prefixed tokens (after SaslHandshake v0).
    Raw,
    /// SaslAuthenticate requests (after SaslHandshake v1).
    Requests,
}

/// An exchange under way.
#[derive(Debug)]
struct Exchange {
    mechanism: SaslMechanism,
    framing: Framing,
    /// Re-authenticating a connection that authenticated before.
    reauthentication: bool,
    /// The mechanism's steps (`security/sasl.rs`).
    steps: SaslExchange,
}

#[derive(Debug)]
enum Step {
    /// No exchange under way.
    Idle,
    /// After a handshake.
    Exchange(Box<Exchange>),
    /// Re-authentication asked for another mechanism than the connection's: the next token
    /// fails with this message (Kafka's `REAUTH_BAD_MECHANISM`).
    BadReauthenticationMechanism {
        mechanism: &'static str,
        message: String,
    },
    /// An exchange failed: nothing more is served (the connection is closing).
    Failed,
}

/// One connection's authentication state.
#[derive(Debug)]
pub struct SaslSession {
    sasl: Arc<KafkaSasl>,
    over_tls: bool,
    session_lifetime: Duration,
    identity: ClientIdentity,
    /// When the SASL session ends; `None`: never (no lifetime, or not SASL-authenticated).
    expires: Option<Instant>,
    /// When the latest re-authentication started.
    reauthentication_started: Option<Instant>,
    step: Step,
    /// Where failures are recorded (`None`: the node's log only).
    audit: Option<Arc<AuditLog>>,
}

/// Why one step of an exchange failed: what the client is told, and what the log says.
struct Failure {
    client: String,
    reason: String,
}

impl SaslSession {
    /// A connection's state, starting from `identity` (anonymous, or a client certificate's
    /// principal); `over_tls` for the TLS listener; `session_lifetime` is
    /// `kafka.sasl_session_lifetime_ms` (zero: sessions never expire).
    pub fn new(
        sasl: Arc<KafkaSasl>,
        over_tls: bool,
        identity: ClientIdentity,
        session_lifetime: Duration,
    ) -> Self {
        Self {
            sasl,
            over_tls,
            session_lifetime,
            identity,
            expires: None,
            reauthentication_started: None,
            step: Step::Idle,
            audit: None,
        }
    }

    /// Records authentication failures in `audit` (an `authentication_failure` event each;
    /// rate limited) besides the node's log.
    pub fn with_audit(mut self, audit: Option<Arc<AuditLog>>) -> Self {
        self.audit = audit;
        self
    }

    /// Records one authentication failure in the audit log: `principal` the name the client
    /// claimed (none: it claimed none), `method` the mechanism as logged.
    fn audit_failure(&self, principal: Option<&str>, method: &str, reason: &str) {
        let listener = if self.over_tls {
            AuditListener::KafkaTls
        } else {
            AuditListener::Kafka
        };
        crate::security::audit::record(
            self.audit.as_deref(),
            &AuditEvent::authentication_failure(
                listener,
                self.identity.host,
                principal,
                method,
                reason,
            ),
        );
    }

    /// Who the connection is now.
    pub fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    /// Whether the next frame is a raw token (an exchange after SaslHandshake v0).
    pub fn expects_raw_tokens(&self) -> bool {
        matches!(
            &self.step,
            Step::Exchange(exchange) if exchange.framing == Framing::Raw
        )
    }

    /// Whether the pre-authentication receive limit (`kafka.sasl_receive_bytes_max`) applies
    /// to the next frame: during a first exchange, and before authentication when anonymous
    /// clients are not allowed (Kafka's `sasl.server.max.receive.size`: before and during the
    /// initial authentication).
    pub fn receive_limited(&self) -> bool {
        match &self.step {
            Step::Exchange(exchange) => !exchange.reauthentication,
            Step::Idle => !self.identity.is_authenticated() && !self.sasl.settings.allow_anonymous,
            Step::BadReauthenticationMechanism { .. } => false,
            Step::Failed => true,
        }
    }

    /// Decides about a request about to start, at `now`.
    pub fn admit(&mut self, request: &DecodedRequest, now: Instant) -> Admission {
        match &request.body {
            KafkaRequest::SaslHandshake(handshake) => {
                self.handshake(request.version, handshake.mechanism.as_str(), now)
            }
            KafkaRequest::SaslAuthenticate(authenticate) => {
                self.authenticate(request.version, &authenticate.auth_bytes, now)
            }
            _ => {
                if self.may_serve(request.api, now) {
                    Admission::Serve
                } else {
                    Admission::Close
                }
            }
        }
    }

    /// Whether a request of `api` (not a SASL one) may be served at `now`; logs why not.
    pub fn may_serve(&mut self, api: ApiKey, now: Instant) -> bool {
        let refusal = if !matches!(self.step, Step::Idle) {
            Some("a request other than SaslAuthenticate during SASL authentication")
        } else if self.expires.is_some_and(|expires| now > expires) {
            Some(
                "the SASL session expired (kafka.sasl_session_lifetime_ms) and the client did not re-authenticate",
            )
        } else if !self.identity.is_authenticated()
            && !self.sasl.settings.allow_anonymous
            && api != ApiKey::ApiVersions
        {
            Some("a request before authentication, and anonymous clients are not allowed")
        } else {
            None
        };
        let Some(reason) = refusal else {
            return true;
        };
        if self.expires.is_some_and(|expires| now > expires) {
            // Routine for a client that cannot re-authenticate: it reconnects.
            tracing::info!(
                principal = %self.identity.principal,
                client = %self.identity.host,
                api = ?api,
                reason,
                "kafka connection closed"
            );
        } else {
            tracing::warn!(
                principal = %self.identity.principal,
                client = %self.identity.host,
                api = ?api,
                reason,
                "kafka connection closed"
            );
            // After a failed exchange, the failure was recorded already.
            if !self.identity.is_authenticated() && !matches!(self.step, Step::Failed) {
                self.audit_failure(None, "none", reason);
            }
        }
        self.step = Step::Failed;
        false
    }

    fn handshake(&mut self, version: i16, requested: &str, now: Instant) -> Admission {
        let offered = self.sasl.offered(self.over_tls);
        if !matches!(self.step, Step::Idle) {
            self.log_failure(requested, None, "SaslHandshake during SASL authentication");
            self.step = Step::Failed;
            return Admission::AnswerAndClose(handshake_response(
                ResponseError::IllegalSaslState,
                &offered,
            ));
        }
        if self.sasl.settings.mechanisms.is_empty() {
            // SASL off: Kafka's non-SASL listener answers ILLEGAL_SASL_STATE.
            return Admission::Serve;
        }
        let previous = match self.identity.method {
            AuthMethod::Anonymous => None,
            AuthMethod::SaslPlain => Some(SaslMechanism::Plain),
            AuthMethod::SaslScram(mechanism) => Some(SaslMechanism::Scram(mechanism)),
            // A certificate's principal stays; as on Kafka's SSL listener, ILLEGAL_SASL_STATE.
            // (HTTP Basic is the admin listener's; no Kafka connection has it.)
            AuthMethod::Certificate | AuthMethod::HttpBasic => return Admission::Serve,
        };
        if previous.is_some() {
            // Kafka re-authenticates only connections whose sessions expire, at most once a
            // second; otherwise the handshake reaches `KafkaApis`: ILLEGAL_SASL_STATE.
            let too_soon = self.reauthentication_started.is_some_and(|started| {
                now.saturating_duration_since(started) < REAUTHENTICATION_INTERVAL_MIN
            });
            if self.session_lifetime.is_zero() || too_soon {
                return Admission::Serve;
            }
            self.reauthentication_started = Some(now);
        }
        let Some(mechanism) = offered
            .iter()
            .copied()
            .find(|mechanism| mechanism.name() == requested)
        else {
            self.log_failure(requested, None, "mechanism not enabled on this listener");
            self.step = Step::Failed;
            return Admission::AnswerAndClose(handshake_response(
                ResponseError::UnsupportedSaslMechanism,
                &offered,
            ));
        };
        let framing = if version >= 1 {
            Framing::Requests
        } else {
            Framing::Raw
        };
        if let Some(previous) = previous
            && previous != mechanism
        {
            self.step = Step::BadReauthenticationMechanism {
                mechanism: mechanism.name(),
                message: format!(
                    "SASL mechanism '{}' requested by client is not supported for re-authentication of mechanism '{}'",
                    mechanism.name(),
                    previous.name()
                ),
            };
            return Admission::Answer(handshake_response_ok(&offered));
        }
        // Nothing is offered without a server, so a chosen mechanism always has one.
        let Some(server) = self.sasl.server.as_ref() else {
            self.step = Step::Failed;
            return Admission::AnswerAndClose(handshake_response(
                ResponseError::UnsupportedSaslMechanism,
                &offered,
            ));
        };
        self.step = Step::Exchange(Box::new(Exchange {
            mechanism,
            framing,
            reauthentication: previous.is_some(),
            steps: server.start(mechanism),
        }));
        Admission::Answer(handshake_response_ok(&offered))
    }

    fn authenticate(&mut self, version: i16, token: &[u8], now: Instant) -> Admission {
        match &self.step {
            Step::Exchange(exchange) if exchange.framing == Framing::Requests => {}
            Step::BadReauthenticationMechanism { mechanism, message } => {
                let (mechanism, message) = (*mechanism, message.clone());
                let name = self.identity.principal.name().to_owned();
                self.log_failure(mechanism, Some(&name), &message);
                self.step = Step::Failed;
                return Admission::AnswerAndClose(authenticate_failed(&message));
            }
            Step::Idle => {
                if !self.identity.is_authenticated()
                    && !self.sasl.settings.allow_anonymous
                    && !self.sasl.settings.mechanisms.is_empty()
                {
                    // Kafka's authenticator: "Unexpected Kafka request of type
                    // SASL_AUTHENTICATE during SASL handshake", no answer.
                    tracing::warn!(
                        client = %self.identity.host,
                        "kafka connection closed: SaslAuthenticate before SaslHandshake"
                    );
                    self.audit_failure(None, "none", "SaslAuthenticate before SaslHandshake");
                    self.step = Step::Failed;
                    return Admission::Close;
                }
                return Admission::Serve;
            }
            Step::Exchange(_) | Step::Failed => {
                self.step = Step::Failed;
                return Admission::Close;
            }
        }
        match self.step_exchange(token, now) {
            Ok((reply, complete)) => {
                let mut response = SaslAuthenticateResponse::default();
                response.auth_bytes = reply;
                if complete && version >= 1 {
                    response.session_lifetime_ms =
                        i64::try_from(self.session_lifetime.as_millis()).unwrap_or(i64::MAX);
                }
                Admission::Answer(KafkaResponse::SaslAuthenticate(response))
            }
            Err(failure) => Admission::AnswerAndClose(authenticate_failed(&failure.client)),
        }
    }

    /// A raw token, after SaslHandshake v0.
    pub fn raw_token(&mut self, token: &[u8], now: Instant) -> RawAnswer {
        if !self.expects_raw_tokens() {
            self.step = Step::Failed;
            return RawAnswer::Close;
        }
        match self.step_exchange(token, now) {
            Ok((reply, _)) => {
                let mut frame = BytesMut::with_capacity(4 + reply.len());
                // A reply is at most a few hundred bytes (server-first, server-final).
                frame.put_u32(u32::try_from(reply.len()).unwrap_or(u32::MAX));
                frame.put_slice(&reply);
                RawAnswer::Answer(frame.freeze())
            }
            Err(_) => RawAnswer::Close,
        }
    }

    /// Feeds one client token to the exchange: the server's reply and whether the exchange is
    /// complete, or why it failed (logged here; the step is then `Failed`).
    fn step_exchange(&mut self, token: &[u8], now: Instant) -> Result<(Bytes, bool), Failure> {
        let Step::Exchange(exchange) = &mut self.step else {
            return Err(Failure {
                client: "Unexpected SASL token".to_owned(),
                reason: "no exchange".to_owned(),
            });
        };
        let Some(server) = self.sasl.server.as_ref() else {
            return Err(Failure {
                client: "Unexpected SASL token".to_owned(),
                reason: "no credentials".to_owned(),
            });
        };
        let mechanism = exchange.mechanism;
        let during = if exchange.reauthentication {
            "re-authentication"
        } else {
            "authentication"
        };
        let generic = format!(
            "Authentication failed during {during} due to invalid credentials with SASL mechanism {}",
            mechanism.name()
        );
        let outcome: Result<(Bytes, Option<AuthenticatedUser>), Failure> = exchange
            .steps
            .step(token, server.credentials(), &generic)
            .map(|step| match step {
                ExchangeStep::Continue(reply) => (reply, None),
                ExchangeStep::Complete { reply, user } => (reply, Some(user)),
            })
            .map_err(|failure| Failure {
                client: failure.client,
                reason: failure.reason,
            });
        let reauthentication = exchange.reauthentication;
        let username = exchange.steps.username().map(str::to_owned);
        let result = match outcome {
            Ok((reply, None)) => return Ok((reply, false)),
            Ok((reply, Some(user))) => self
                .complete(&user, reauthentication, now)
                .map(|()| (reply, true)),
            Err(failure) => Err(failure),
        };
        if let Err(failure) = &result {
            self.log_failure(mechanism.name(), username.as_deref(), &failure.reason);
            self.step = Step::Failed;
        }
        result
    }

    /// The exchange proved `user`: the connection's identity from now on.
    fn complete(
        &mut self,
        user: &AuthenticatedUser,
        reauthentication: bool,
        now: Instant,
    ) -> Result<(), Failure> {
        let principal = KafkaPrincipal::user(user.username());
        if reauthentication && principal != self.identity.principal {
            let message = format!(
                "Cannot change principals during re-authentication from {}.{}: {}.{}",
                self.identity.principal.principal_type(),
                self.identity.principal.name(),
                principal.principal_type(),
                principal.name()
            );
            return Err(Failure {
                client: message.clone(),
                reason: message,
            });
        }
        let method = match user.mechanism() {
            SaslMechanism::Plain => AuthMethod::SaslPlain,
            SaslMechanism::Scram(mechanism) => AuthMethod::SaslScram(mechanism),
        };
        let counter = if reauthentication {
            &self.sasl.counts.reauthentications
        } else {
            &self.sasl.counts.authentications
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            principal = %principal,
            client = %self.identity.host,
            mechanism = user.mechanism().name(),
            reauthentication,
            "kafka SASL authentication succeeded"
        );
        self.identity = ClientIdentity {
            principal,
            host: self.identity.host,
            method,
        };
        self.expires = (!self.session_lifetime.is_zero())
            .then(|| crate::clock::deadline_after(now, self.session_lifetime));
        self.step = Step::Idle;
        Ok(())
    }

    /// Logs a failed exchange. `mechanism` and `username` are the client's words: a
    /// mechanism the listener does not know is logged by its length only, and a name is cut
    /// at [`LOGGED_NAME_CHARS_MAX`] characters (the log quotes and escapes both).
    fn log_failure(&self, mechanism: &str, username: Option<&str>, reason: &str) {
        self.sasl.counts.failures.fetch_add(1, Ordering::Relaxed);
        let mechanism = match mechanism_from_name(mechanism) {
            Some(known) => known.name().to_owned(),
            None => format!("(unknown, {} bytes)", mechanism.len()),
        };
        let principal = username.map_or_else(
            || "(none given)".to_owned(),
            |name| {
                let mut shown: String = name.chars().take(LOGGED_NAME_CHARS_MAX).collect();
                if shown.len() < name.len() {
                    shown.push_str("...");
                }
                format!("User:{shown}")
            },
        );
        tracing::warn!(
            principal,
            client = %self.identity.host,
            mechanism,
            reason,
            "kafka SASL authentication failed"
        );
        self.audit_failure(username, &mechanism, reason);
    }
}

fn mechanism_names(mechanisms: &[SaslMechanism]) -> Vec<StrBytes> {
    mechanisms
        .iter()
        .map(|mechanism| StrBytes::from_static_str(mechanism.name()))
        .collect()
}

fn handshake_response(error: ResponseError, offered: &[SaslMechanism]) -> KafkaResponse {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = error.code();
    response.mechanisms = mechanism_names(offered);
    KafkaResponse::SaslHandshake(response)
}

fn handshake_response_ok(offered: &[SaslMechanism]) -> KafkaResponse {
    let mut response = SaslHandshakeResponse::default();
    response.mechanisms = mechanism_names(offered);
    KafkaResponse::SaslHandshake(response)
}

fn authenticate_failed(message: &str) -> KafkaResponse {
    let mut response = SaslAuthenticateResponse::default();
    response.error_code = ResponseError::SaslAuthenticationFailed.code();
    response.error_message = Some(StrBytes::from_string(message.to_owned()));
    KafkaResponse::SaslAuthenticate(response)
}

/// What the service answers to SaslHandshake outside an exchange (SASL off, a certificate's
/// connection, or after authentication without re-authentication): Kafka's `KafkaApis`.
pub fn handshake_outside_exchange() -> SaslHandshakeResponse {
    let mut response = SaslHandshakeResponse::default();
    response.error_code = ResponseError::IllegalSaslState.code();
    response
}

/// What the service answers to SaslAuthenticate outside an exchange: Kafka's `KafkaApis`.
pub fn authenticate_outside_exchange() -> SaslAuthenticateResponse {
    let mut response = SaslAuthenticateResponse::default();
    response.error_code = ResponseError::IllegalSaslState.code();
    response.error_message = Some(StrBytes::from_static_str(
        "SaslAuthenticate request received after successful authentication",
    ));
    response
}

#[cfg(test)]
pub(crate) mod tests;
