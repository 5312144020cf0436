//! SASL authentication of a QUIC connection, client side: SCRAM-SHA-256 and SCRAM-SHA-512
//! (RFC 5802, RFC 7677) and PLAIN (RFC 4616), as Kafka's clients speak them. The connection
//! runs the exchange ([`SaslCredentials`] in [`crate::ClientConfig::sasl`]) on every new
//! connection before its first request: SaslHandshake, then one SaslAuthenticate per client
//! message.
//!
//! The client is pure (no IO); the nonce is an input so tests can fix it. It checks what a
//! node could abuse: the server nonce must extend the client's, the iteration count must be
//! in Kafka's range 4096..=16384 (a smaller one would weaken the proof sent, a larger one
//! would make the client burn CPU), and the server's signature must verify (constant time),
//! so a node that does not hold the user's credential is not believed.
//!
//! The password is held only in [`SaslCredentials`], whose `Debug` prints `<redacted>`, and
//! never appears in an error.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::{digest, hmac, pbkdf2};

/// Fewest PBKDF2 iterations the client accepts from a node (Kafka's minimum).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations the client accepts from a node (Kafka's maximum): bounds the CPU
/// one authentication costs the client.
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;
/// Random bytes in the client's nonce (sent as 32 base64 characters).
pub const CLIENT_NONCE_RANDOM_BYTES: usize = 24;
/// Largest server message the client parses, in bytes.
pub const SERVER_MESSAGE_BYTES_MAX: usize = 4096;

/// A SASL mechanism the client can use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`: the default (the stronger hash; a node offers both by default).
    #[default]
    ScramSha512,
    /// `PLAIN`: the password itself goes to the node (inside TLS, which QUIC always is). Use it
    /// only when the node has no SCRAM credential of the mechanism you would pick.
    Plain,
}

impl SaslMechanism {
    /// Every mechanism.
    pub const ALL: [Self; 3] = [Self::ScramSha256, Self::ScramSha512, Self::Plain];

    /// The SASL name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::Plain => "PLAIN",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "unknown SASL mechanism {name:?}: use SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
                )
            })
    }
}

/// A user name and password to authenticate with (`ledge --user NAME`). `Debug` never shows
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The user (principal `User:<user>`).
    pub user: String,
    password: String,
    /// The mechanism. Default [`SaslMechanism::ScramSha512`].
    pub mechanism: SaslMechanism,
}

impl SaslCredentials {
    /// `user` with `password`, by SCRAM-SHA-512.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
            mechanism: SaslMechanism::default(),
        }
    }

    /// The same credentials with another mechanism.
    pub fn with_mechanism(mut self, mechanism: SaslMechanism) -> Self {
        self.mechanism = mechanism;
        self
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// Why the client side of an exchange failed. Never carries the password or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslClientError {
    /// The node's message does not parse as the mechanism's next message.
    #[error("malformed SCRAM message from the node: {0}")]
    Malformed(&'static str),
    /// The node's nonce does not extend the client's.
    #[error("the node's SCRAM nonce does not extend the client's")]
    NonceMismatch,
    /// The node asks for an iteration count outside 4096..=16384.
    #[error(
        "the node asks for {0} SCRAM iterations (accepted: {SCRAM_ITERATIONS_MIN}..={SCRAM_ITERATIONS_MAX})"
    )]
    Iterations(u64),
    /// The node's final signature does not verify: it does not hold this user's credential.
    #[error("the node's SCRAM signature does not verify: it does not know this user's credential")]
    ServerSignature,
    /// The node reported an error in its final message.
    #[error("the node ended the SCRAM exchange with error {0:?}")]
    ServerError(String),
    /// A message arrived when the exchange expected none.
    #[error("unexpected SASL message at this point of the exchange")]
    OutOfOrder,
    /// The user name has a character SCRAM cannot carry (a control character or non-ASCII).
    #[error("user names must be printable ASCII for SCRAM")]
    UserName,
}

#[derive(Debug)]
enum State {
    /// client-first sent.
    First,
    /// client-final sent; the server signature expected.
    Final { server_signature: hmac::Tag },
    /// Done or failed.
    Over,
}

/// The client side of one SCRAM exchange.
pub struct ScramClient {
    algorithm: (
        pbkdf2::Algorithm,
        hmac::Algorithm,
        &'static digest::Algorithm,
        usize,
    ),
    password: String,
    nonce: String,
    client_first_bare: String,
    state: State,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient").finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange for `credentials` (a SCRAM mechanism; PLAIN has no exchange: see
    /// [`plain_message`]) with `nonce` (printable, no comma: base64 of random bytes).
    /// Returns the client and its first message.
    pub fn start(
        credentials: &SaslCredentials,
        nonce: String,
    ) -> Result<(Self, Vec<u8>), SaslClientError> {
        let algorithm = match credentials.mechanism {
            SaslMechanism::ScramSha512 => (
                pbkdf2::PBKDF2_HMAC_SHA512,
                hmac::HMAC_SHA512,
                &digest::SHA512,
                64,
            ),
            _ => (
                pbkdf2::PBKDF2_HMAC_SHA256,
                hmac::HMAC_SHA256,
                &digest::SHA256,
                32,
            ),
        };
        if credentials.user.is_empty()
            || !credentials
                .user
                .chars()
                .all(|c| c.is_ascii() && !c.is_ascii_control())
        {
            return Err(SaslClientError::UserName);
        }
        let client_first_bare = format!("n={},r={nonce}", escape_saslname(&credentials.user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        Ok((
            Self {
                algorithm,
                password: credentials.password().to_owned(),
                nonce,
                client_first_bare,
                state: State::First,
            },
            first,
        ))
    }

    /// A fresh nonce from the system's secure generator.
    pub fn random_nonce() -> Result<String, SaslClientError> {
        let mut bytes = [0u8; CLIENT_NONCE_RANDOM_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| SaslClientError::Malformed("the system random generator failed"))?;
        Ok(BASE64.encode(bytes))
    }

    /// Takes server-first; returns client-final.
    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, SaslClientError> {
        if !matches!(self.state, State::First) {
            return Err(SaslClientError::OutOfOrder);
        }
        self.state = State::Over;
        if message.len() > SERVER_MESSAGE_BYTES_MAX {
            return Err(SaslClientError::Malformed("server-first too large"));
        }
        let server_first =
            std::str::from_utf8(message).map_err(|_| SaslClientError::Malformed("not UTF-8"))?;
        let mut attributes = server_first.split(',');
        let nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslClientError::Malformed("server-first without r="))?;
        let salt = attributes
            .next()
            .and_then(|a| a.strip_prefix("s="))
            .ok_or(SaslClientError::Malformed("server-first without s="))?;
        let iterations = attributes
            .next()
            .and_then(|a| a.strip_prefix("i="))
            .ok_or(SaslClientError::Malformed("server-first without i="))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(SaslClientError::NonceMismatch);
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| SaslClientError::Malformed("salt is not base64"))?;
        let iterations: u64 = iterations
            .parse()
            .map_err(|_| SaslClientError::Malformed("iterations is not a number"))?;
        if !(u64::from(SCRAM_ITERATIONS_MIN)..=u64::from(SCRAM_ITERATIONS_MAX))
            .contains(&iterations)
        {
            return Err(SaslClientError::Iterations(iterations));
        }
        let rounds = u32::try_from(iterations)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or(SaslClientError::Iterations(iterations))?;
        let (pbkdf2_algorithm, hmac_algorithm, digest_algorithm, bytes) = self.algorithm;
        let mut salted = vec![0u8; bytes];
        pbkdf2::derive(
            pbkdf2_algorithm,
            rounds,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac_algorithm, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(digest_algorithm, client_key.as_ref());
        // "biws" is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(key, signature)| key ^ signature)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac_algorithm, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.state = State::Final { server_signature };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Takes server-final: `Ok` once the node proved it holds the user's credential.
    pub fn handle_server_final(&mut self, message: &[u8]) -> Result<(), SaslClientError> {
        let State::Final { server_signature } = std::mem::replace(&mut self.state, State::Over)
        else {
            return Err(SaslClientError::OutOfOrder);
        };
        if message.len() > SERVER_MESSAGE_BYTES_MAX {
            return Err(SaslClientError::Malformed("server-final too large"));
        }
        let text =
            std::str::from_utf8(message).map_err(|_| SaslClientError::Malformed("not UTF-8"))?;
        if let Some(error) = text.strip_prefix("e=") {
            return Err(SaslClientError::ServerError(
                error.chars().take(128).collect(),
            ));
        }
        let verifier = text
            .split(',')
            .next()
            .and_then(|a| a.strip_prefix("v="))
            .ok_or(SaslClientError::Malformed("server-final without v="))?;
        let verifier = BASE64
            .decode(verifier)
            .map_err(|_| SaslClientError::Malformed("verifier is not base64"))?;
        // Constant time: compare as HMAC tags of the same key would be.
        let expected = server_signature.as_ref();
        let matches = expected.len() == verifier.len()
            && expected
                .iter()
                .zip(&verifier)
                .fold(0u8, |difference, (a, b)| difference | (a ^ b))
                == 0;
        if matches {
            Ok(())
        } else {
            Err(SaslClientError::ServerSignature)
        }
    }
}

/// PLAIN's one message (RFC 4616): no authorization id, the user, the password.
pub fn plain_message(credentials: &SaslCredentials) -> Vec<u8> {
    let mut message = Vec::with_capacity(2 + credentials.user.len() + credentials.password.len());
    message.push(0);
    message.extend_from_slice(credentials.user.as_bytes());
    message.push(0);
    message.extend_from_slice(credentials.password.as_bytes());
    message
}

/// A user name as SCRAM carries it: `,` and `=` as `=2C` and `=3D`.
fn escape_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests;
