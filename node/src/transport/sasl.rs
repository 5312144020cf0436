//! SASL on the QUIC protocol: one [`ConnectionAuth`] per client connection decides about
//! every request before it is served, and answers the native SaslHandshake and
//! SaslAuthenticate requests itself (they change the connection's identity, which only the
//! listener holds). Pure: no IO, no clock; the listener does what [`Admission`] says.
//!
//! Rules (docs/PROTOCOL.md, "Authentication"):
//! - A connection starts with the identity the TLS handshake gave it: a verified client
//!   certificate's principal, or `User:ANONYMOUS`.
//! - An anonymous connection may authenticate once: SaslHandshake names a mechanism
//!   (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, as `[security] sasl_mechanisms` enables them;
//!   QUIC is always TLS, so PLAIN is allowed), then SaslAuthenticate requests carry the
//!   exchange (two for SCRAM, one for PLAIN). The completed exchange makes the connection
//!   `User:<name>` for the rest of its life: no re-authentication, session lifetime 0.
//! - Before authentication, with anonymous clients not allowed, only ApiVersions and the
//!   SASL requests are answered; every other request is refused with
//!   `AuthenticationRequired` (a frame-level error; the connection stays, so a client may
//!   still authenticate). During an exchange every other request is refused the same way,
//!   anonymous clients allowed or not: a request never runs with an identity that is about
//!   to change. Requests on streams opened concurrently are admitted one at a time, in the
//!   order their frames complete, against the state at that moment.
//! - A failed exchange (a wrong password or an unknown user, indistinguishable; a malformed
//!   message; an unsupported mechanism; a SaslHandshake during an exchange) is answered and
//!   then the connection is closed; every request admitted after the failure is refused.
//! - A SaslHandshake on a connection that already authenticated (certificate or SASL), or a
//!   SaslAuthenticate without an exchange, is answered `IllegalSaslState`; the connection
//!   stays.
//!
//! Failures are logged with the name the client gave (cut at [`LOGGED_NAME_CHARS_MAX`]),
//! its address and the mechanism; never a password, proof, nonce or key. Each is also one
//! `authentication_failure` event in the audit log ([`ConnectionAuth::with_audit`];
//! `security/audit.rs`), as is each request refused `AuthenticationRequired`.

use std::sync::Arc;

use bytes::Bytes;
use ledge_protocol::wire::{
    ErrorCode, Request, Response, SaslAuthenticateResponse, SaslHandshakeResponse,
};

use crate::security::audit::{AuditEvent, AuditListener, AuditLog};
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::sasl::{ExchangeStep, SaslExchange, SaslServer, mechanism_from_name};
use crate::security::scram::SaslMechanism;

/// Longest user name, in characters, a failure log line repeats (the rest is cut).
pub const LOGGED_NAME_CHARS_MAX: usize = 128;

/// What the listener does with a request.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Serve it as this identity.
    Serve(Arc<ClientIdentity>),
    /// Answer with this (a step of the exchange, or a SASL request out of order).
    Answer(Response),
    /// Answer with this, then close the connection (a failed authentication).
    AnswerAndClose(Response),
    /// Refuse it with a frame-level error; the connection stays.
    Refuse {
        /// The code.
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
}

#[derive(Debug)]
enum Step {
    /// No exchange under way.
    Idle,
    /// After a SaslHandshake, before the exchange completed.
    Exchange(Box<SaslExchange>),
    /// An exchange failed: the connection is closing.
    Failed,
}

/// One QUIC connection's authentication state.
#[derive(Debug)]
pub struct ConnectionAuth {
    sasl: Option<Arc<SaslServer>>,
    anonymous_allowed: bool,
    identity: Arc<ClientIdentity>,
    step: Step,
    /// Where failures are recorded (`None`: the node's log only).
    audit: Option<Arc<AuditLog>>,
}

/// What an anonymous client is told when anonymous clients are not allowed.
const AUTHENTICATION_REQUIRED: &str = "authentication required: this node accepts no anonymous clients; authenticate with SASL (--user NAME with LEDGE_PASSWORD or --password-stdin) or a client certificate (--cert FILE --key FILE)";

impl ConnectionAuth {
    /// A connection that starts as `identity` (anonymous, or a client certificate's
    /// principal); `anonymous_allowed` is `[security] allow_anonymous` as decided at start;
    /// `sasl` the listener's SASL (`None`: SASL off).
    pub fn new(
        identity: ClientIdentity,
        anonymous_allowed: bool,
        sasl: Option<Arc<SaslServer>>,
    ) -> Self {
        Self {
            sasl,
            anonymous_allowed,
            identity: Arc::new(identity),
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

    fn audit_failure(&self, principal: Option<&str>, method: &str, reason: &str) {
        crate::security::audit::record(
            self.audit.as_deref(),
            &AuditEvent::authentication_failure(
                AuditListener::Quic,
                self.identity.host,
                principal,
                method,
                reason,
            ),
        );
    }

    /// Whether a connection that starts as `identity` may go on at all: it proved a
    /// principal, anonymous clients are allowed, or it may still authenticate with SASL.
    pub fn may_start(
        identity: &ClientIdentity,
        anonymous_allowed: bool,
        sasl: Option<&SaslServer>,
    ) -> bool {
        identity.is_authenticated()
            || anonymous_allowed
            || sasl.is_some_and(|sasl| !sasl.mechanisms().is_empty())
    }

    /// Who the connection is now.
    pub fn identity(&self) -> &Arc<ClientIdentity> {
        &self.identity
    }

    /// Decides about a request whose frame just completed.
    pub fn admit(&mut self, request: &Request) -> Admission {
        if matches!(self.step, Step::Failed) {
            return Admission::Refuse {
                code: ErrorCode::SaslAuthenticationFailed,
                message: "SASL authentication failed on this connection; it is closing".into(),
            };
        }
        match request {
            Request::SaslHandshake(handshake) => self.handshake(&handshake.mechanism),
            Request::SaslAuthenticate(authenticate) => self.authenticate(&authenticate.auth_bytes),
            Request::ApiVersions(_) => Admission::Serve(Arc::clone(&self.identity)),
            _ if matches!(self.step, Step::Exchange(_)) => Admission::Refuse {
                code: ErrorCode::AuthenticationRequired,
                message: "SASL authentication is under way on this connection: send other requests once it completed".into(),
            },
            _ if self.identity.is_authenticated() || self.anonymous_allowed => {
                Admission::Serve(Arc::clone(&self.identity))
            }
            _ => {
                self.audit_failure(
                    None,
                    "none",
                    "a request before authentication, and anonymous clients are not allowed",
                );
                Admission::Refuse {
                    code: ErrorCode::AuthenticationRequired,
                    message: AUTHENTICATION_REQUIRED.into(),
                }
            }
        }
    }

    fn enabled(&self) -> &[SaslMechanism] {
        self.sasl.as_deref().map_or(&[], SaslServer::mechanisms)
    }

    fn enabled_names(&self) -> Vec<String> {
        self.enabled()
            .iter()
            .map(|mechanism| mechanism.name().to_owned())
            .collect()
    }

    fn handshake(&mut self, requested: &str) -> Admission {
        let answer = |error: ErrorCode, message: String, mechanisms: Vec<String>| {
            Response::SaslHandshake(SaslHandshakeResponse {
                error,
                message,
                mechanisms,
            })
        };
        if matches!(self.step, Step::Exchange(_)) {
            self.fail(requested, None, "SaslHandshake during SASL authentication");
            return Admission::AnswerAndClose(answer(
                ErrorCode::IllegalSaslState,
                "SaslHandshake during SASL authentication".into(),
                self.enabled_names(),
            ));
        }
        if self.identity.is_authenticated() {
            let how = match self.identity.method {
                AuthMethod::Certificate => "by its client certificate",
                _ => "with SASL",
            };
            return Admission::Answer(answer(
                ErrorCode::IllegalSaslState,
                format!(
                    "this connection is authenticated already ({} {how}); QUIC connections authenticate once",
                    self.identity.principal
                ),
                self.enabled_names(),
            ));
        }
        let chosen = self
            .enabled()
            .iter()
            .copied()
            .find(|mechanism| mechanism.name() == requested);
        let (Some(mechanism), Some(sasl)) = (chosen, self.sasl.as_ref()) else {
            let message = if self.enabled().is_empty() {
                "SASL is not enabled on this node ([security] sasl_mechanisms is empty, or no user store)".to_owned()
            } else {
                format!(
                    "SASL mechanism {} is not enabled on this node (enabled: {})",
                    shown_mechanism(requested),
                    self.enabled_names().join(", ")
                )
            };
            self.fail(requested, None, "mechanism not enabled on this listener");
            return Admission::AnswerAndClose(answer(
                ErrorCode::UnsupportedSaslMechanism,
                message,
                self.enabled_names(),
            ));
        };
        self.step = Step::Exchange(Box::new(sasl.start(mechanism)));
        Admission::Answer(answer(ErrorCode::None, String::new(), self.enabled_names()))
    }

    fn authenticate(&mut self, token: &[u8]) -> Admission {
        let answer = |error: ErrorCode, message: String, auth_bytes: Bytes| {
            Response::SaslAuthenticate(SaslAuthenticateResponse {
                error,
                message,
                auth_bytes,
                session_lifetime_ms: 0,
            })
        };
        let (Step::Exchange(exchange), Some(sasl)) = (&mut self.step, self.sasl.as_ref()) else {
            let message = if self.identity.is_authenticated() {
                "SaslAuthenticate on a connection that is authenticated already"
            } else {
                "SaslAuthenticate without a SaslHandshake"
            };
            return Admission::Answer(answer(
                ErrorCode::IllegalSaslState,
                message.into(),
                Bytes::new(),
            ));
        };
        let mechanism = exchange.mechanism();
        let generic = format!(
            "Authentication failed due to invalid credentials with SASL mechanism {}",
            mechanism.name()
        );
        match exchange.step(token, sasl.credentials(), &generic) {
            Ok(ExchangeStep::Continue(reply)) => {
                Admission::Answer(answer(ErrorCode::None, String::new(), reply))
            }
            Ok(ExchangeStep::Complete { reply, user }) => {
                let principal = KafkaPrincipal::user(user.username());
                let method = match user.mechanism() {
                    SaslMechanism::Plain => AuthMethod::SaslPlain,
                    SaslMechanism::Scram(scram) => AuthMethod::SaslScram(scram),
                };
                tracing::info!(
                    principal = %principal,
                    client = %self.identity.host,
                    mechanism = mechanism.name(),
                    "quic SASL authentication succeeded"
                );
                self.identity = Arc::new(ClientIdentity {
                    principal,
                    host: self.identity.host,
                    method,
                });
                self.step = Step::Idle;
                Admission::Answer(answer(ErrorCode::None, String::new(), reply))
            }
            Err(failure) => {
                let username = exchange.username().map(str::to_owned);
                self.fail(mechanism.name(), username.as_deref(), &failure.reason);
                Admission::AnswerAndClose(answer(
                    ErrorCode::SaslAuthenticationFailed,
                    failure.client,
                    Bytes::new(),
                ))
            }
        }
    }

    /// Logs a failed exchange and ends it. `mechanism` and `username` are the client's words.
    fn fail(&mut self, mechanism: &str, username: Option<&str>, reason: &str) {
        self.step = Step::Failed;
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
        let mechanism = shown_mechanism(mechanism);
        tracing::warn!(
            principal,
            client = %self.identity.host,
            mechanism,
            reason,
            "quic SASL authentication failed"
        );
        self.audit_failure(username, &mechanism, reason);
    }
}

/// A mechanism name from a client: its name if Ledge knows it, else only its length.
fn shown_mechanism(name: &str) -> String {
    match mechanism_from_name(name) {
        Some(known) => known.name().to_owned(),
        None => format!("(unknown, {} bytes)", name.len()),
    }
}

#[cfg(test)]
mod tests;
