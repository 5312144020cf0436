//! One SASL exchange, whatever carries it: the mechanism-level steps shared by the Kafka
//! listener's `SaslAuthenticate` and the QUIC listener's native `SaslAuthenticate`
//! (`transport/sasl.rs`). Pure: no IO, no clock; the server nonce's randomness comes from the
//! [`SaslServer`]'s generator, seeded from the system's random source.
//!
//! SCRAM-SHA-256/512 run [`ScramServer`] (two client messages: client-first, then
//! client-final); PLAIN checks one message against the stored SCRAM credential
//! ([`authenticate_plain`]). Failures carry two texts: what the client is told (never tells an
//! unknown user from a wrong password, never repeats client bytes) and what the log says
//! (the reason; never a secret).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::security::credentials::CredentialLookup;
use crate::security::scram::{
    AuthenticatedUser, PlainError, SASL_MESSAGE_BYTES_MAX_DEFAULT, SaslMechanism, ScramMechanism,
    ScramServer, authenticate_plain, parse_plain,
};

/// Every mechanism Ledge implements, in the order Kafka's documentation lists them.
pub const SASL_MECHANISMS_ALL: [SaslMechanism; 3] = [
    SaslMechanism::Scram(ScramMechanism::Sha256),
    SaslMechanism::Scram(ScramMechanism::Sha512),
    SaslMechanism::Plain,
];

/// The mechanism named `name` (exact, as Kafka compares), if Ledge implements it.
pub fn mechanism_from_name(name: &str) -> Option<SaslMechanism> {
    SASL_MECHANISMS_ALL
        .into_iter()
        .find(|mechanism| mechanism.name() == name)
}

/// Why SASL could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SaslSetupError {
    /// The system's random source failed (SCRAM nonces need it).
    #[error("cannot seed the SASL nonce generator from the system's random source")]
    Random,
}

/// What a listener's exchanges share: the enabled mechanisms, the credentials, and the
/// generator of server nonces.
pub struct SaslServer {
    mechanisms: Vec<SaslMechanism>,
    credentials: Arc<dyn CredentialLookup>,
    /// Server nonces: a CSPRNG seeded from the system's random source.
    random: Mutex<ChaCha20Rng>,
}

impl std::fmt::Debug for SaslServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslServer")
            .field("mechanisms", &self.mechanisms)
            .finish_non_exhaustive()
    }
}

impl SaslServer {
    /// Exchanges with `mechanisms` (`[security] sasl_mechanisms`, in the order a handshake
    /// lists them), checking passwords against `credentials`.
    pub fn new(
        mechanisms: Vec<SaslMechanism>,
        credentials: Arc<dyn CredentialLookup>,
    ) -> Result<Self, SaslSetupError> {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .map_err(|_| SaslSetupError::Random)?;
        Ok(Self {
            mechanisms,
            credentials,
            random: Mutex::new(ChaCha20Rng::from_seed(seed)),
        })
    }

    /// [`SaslServer::new`] with nonces from a fixed seed (tests).
    #[cfg(test)]
    pub(crate) fn with_seed(
        mechanisms: Vec<SaslMechanism>,
        credentials: Arc<dyn CredentialLookup>,
        seed: u64,
    ) -> Self {
        Self {
            mechanisms,
            credentials,
            random: Mutex::new(ChaCha20Rng::seed_from_u64(seed)),
        }
    }

    /// The enabled mechanisms.
    pub fn mechanisms(&self) -> &[SaslMechanism] {
        &self.mechanisms
    }

    /// The credentials exchanges check against.
    pub fn credentials(&self) -> &dyn CredentialLookup {
        &*self.credentials
    }

    /// Starts an exchange with `mechanism` (which the caller checked is enabled).
    pub fn start(&self, mechanism: SaslMechanism) -> SaslExchange {
        let scram = match mechanism {
            SaslMechanism::Scram(scram) => {
                let mut random = self.random.lock().unwrap_or_else(PoisonError::into_inner);
                Some(ScramServer::new(scram, &mut *random))
            }
            SaslMechanism::Plain => None,
        };
        SaslExchange {
            mechanism,
            scram,
            username: None,
        }
    }
}

/// One exchange under way.
#[derive(Debug)]
pub struct SaslExchange {
    mechanism: SaslMechanism,
    /// The SCRAM server, for SCRAM; `None` for PLAIN.
    scram: Option<ScramServer>,
    /// The name the client gave, once it gave one (for the logs).
    username: Option<String>,
}

/// What one client message led to.
#[derive(Debug)]
pub enum ExchangeStep {
    /// Send this to the client and wait for its next message (SCRAM server-first).
    Continue(Bytes),
    /// The exchange proved `user`; send `reply` (SCRAM server-final; empty for PLAIN).
    Complete {
        /// The server's last message.
        reply: Bytes,
        /// Who the client is.
        user: AuthenticatedUser,
    },
}

/// Why an exchange failed.
#[derive(Debug)]
pub struct ExchangeFailure {
    /// What the client is told.
    pub client: String,
    /// What the log says (never a secret).
    pub reason: String,
}

impl SaslExchange {
    /// The mechanism.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }

    /// The name the client gave, once it gave one (the client's words: log them escaped).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Feeds one client message. `generic` is what the client is told when the credentials
    /// do not check out (the same text for an unknown user and a wrong password). After a
    /// failure the exchange is over: every later message fails too.
    pub fn step(
        &mut self,
        token: &[u8],
        credentials: &dyn CredentialLookup,
        generic: &str,
    ) -> Result<ExchangeStep, ExchangeFailure> {
        let fail = |reason: String| ExchangeFailure {
            client: generic.to_owned(),
            reason,
        };
        match (&mut self.scram, self.mechanism) {
            (Some(scram), SaslMechanism::Scram(scram_mechanism)) => {
                if self.username.is_none() {
                    let need = scram
                        .handle_client_first(token)
                        .map_err(|error| fail(error.to_string()))?;
                    let credential = credentials.scram_credential(&need.username, scram_mechanism);
                    self.username = Some(need.username);
                    scram
                        .server_first(credential.as_ref(), &credentials.decoys())
                        .map(|first| ExchangeStep::Continue(Bytes::from(first)))
                        .map_err(|error| fail(error.to_string()))
                } else {
                    scram
                        .handle_client_final(token)
                        .map(|(last, user)| ExchangeStep::Complete {
                            reply: Bytes::from(last),
                            user,
                        })
                        .map_err(|error| fail(error.to_string()))
                }
            }
            _ => {
                let plain_failure = |error: PlainError| ExchangeFailure {
                    client: plain_client_message(&error, generic),
                    reason: error.to_string(),
                };
                let message =
                    parse_plain(token, SASL_MESSAGE_BYTES_MAX_DEFAULT).map_err(plain_failure)?;
                self.username = Some(message.username.clone());
                // PLAIN checks the password against the SCRAM-SHA-256 credential, or the
                // SCRAM-SHA-512 one if the user has only that; one PBKDF2 either way, a
                // decoy's for an unknown user.
                let credential = credentials
                    .scram_credential(&message.username, ScramMechanism::Sha256)
                    .or_else(|| {
                        credentials.scram_credential(&message.username, ScramMechanism::Sha512)
                    });
                authenticate_plain(
                    &message,
                    credential.as_ref(),
                    ScramMechanism::Sha256,
                    &credentials.decoys(),
                )
                .map(|user| ExchangeStep::Complete {
                    reply: Bytes::new(),
                    user,
                })
                .map_err(plain_failure)
            }
        }
    }
}

/// What a client is told when PLAIN fails: Kafka's `PlainSaslServer` messages for a missing
/// or wrong username or password (the same for an unknown user and a wrong password), the
/// generic one for a malformed message (Kafka's `SaslException` case).
pub fn plain_client_message(error: &PlainError, generic: &str) -> String {
    match error {
        PlainError::MessageTooLarge { .. } | PlainError::Tokens { .. } | PlainError::NotUtf8 => {
            generic.to_owned()
        }
        PlainError::UsernameMissing
        | PlainError::PasswordMissing
        | PlainError::AuthorizationIdMismatch
        | PlainError::InvalidCredentials => error.to_string(),
    }
}
