//! SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, and SASL PLAIN
//! (RFC 4616) message parsing, as Apache Kafka's broker implements them (`ScramSaslServer`,
//! `ScramFormatter`, `ScramMessages`, `PlainSaslServer`). Pure: no IO, no clock; randomness is
//! an input.
//!
//! The exchange, driven by the caller (the Kafka listener or the QUIC handshake):
//!
//! 1. [`ScramServer::new`] draws the server's nonce from the caller's random source.
//! 2. [`ScramServer::handle_client_first`] parses `client-first-message` and names the user
//!    ([`NeedCredential`]); the caller looks the credential up.
//! 3. [`ScramServer::server_first`] takes the credential, or `None` for an unknown user, in which
//!    case a decoy credential derived from a node secret ([`DecoyCredentials`]) stands in, so the
//!    exchange looks the same (same messages, a salt that is stable per name, the same work) and
//!    fails only at the proof: no user enumeration.
//! 4. [`ScramServer::handle_client_final`] checks channel binding, nonce and the `ClientProof`
//!    (in constant time) and only then returns `server-final-message` with the
//!    [`AuthenticatedUser`]. A failed exchange has no way to produce an identity: the type has
//!    no public constructor and every error moves the exchange to a failed state.
//!
//! Where Ledge is stricter than Kafka, on purpose (each is a test in `scram/tests.rs`):
//! - An unknown user is not refused at the first message (Kafka answers "Invalid user
//!   credentials" there, which tells a client which names exist).
//! - The final nonce must equal the combined nonce (Kafka only checks that it ends with it),
//!   and the channel binding `c=` must be the base64 of the client's own gs2 header (Kafka does
//!   not check it).
//! - The reserved mandatory-extension attribute `m=` fails the exchange (RFC 5802 §5.1 "MUST
//!   cause authentication failure"; Kafka's grammar skips it).
//! - An authzid is unescaped (`=2C`, `=3D`) before it is compared with the username.
//! - Gs2 flag `y` is accepted as well as `n` (RFC 5802 §6: the client supports channel binding
//!   but thinks the server does not, which is true); `p=` is refused.
//! - The `tokenauth` extension set to true (Kafka's delegation tokens) is refused: Ledge has no
//!   delegation tokens, and treating a token id as a user name would be wrong.
//! - No error message repeats client bytes (Kafka echoes the whole message, proof included).
//!
//! Usernames follow Kafka's grammar: 7-bit ASCII (`0x01..=0x7F`), `,` and `=` escaped as `=2C`
//! and `=3D`. SASLprep (RFC 4013) of an ASCII string is the identity except that it prohibits
//! control characters, so those are refused. Passwords are hashed as their UTF-8 bytes with no
//! normalization, as Kafka's `ScramFormatter.normalize` and its clients do, so credentials agree
//! with Kafka clients byte for byte.

use std::fmt;
use std::num::NonZeroU32;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;

#[cfg(test)]
mod tests;

/// Fewest PBKDF2 iterations a credential may have (Kafka's `ScramMechanism.minIterations`).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;
/// Most PBKDF2 iterations a credential may have (Kafka's `ScramMechanism.maxIterations`): bounds
/// the CPU one authentication costs.
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;
/// Default size limit, in bytes, of one SASL message from a client (SCRAM client-first,
/// client-final, PLAIN). A real client-first is a gs2 header, a name, a nonce and perhaps
/// `tokenauth`: well under 1 KiB. Change with [`ScramServer::with_message_bytes_max`] and the
/// `message_bytes_max` argument of [`parse_plain`].
pub const SASL_MESSAGE_BYTES_MAX_DEFAULT: usize = 4096;
/// Length in bytes of salts made by [`ScramCredential::generate`] and by [`DecoyCredentials`]
/// (RFC 7677's example uses 16).
pub const SCRAM_SALT_BYTES: usize = 16;
/// Longest salt, in bytes, a credential may carry (Kafka's own are about 26).
pub const SCRAM_SALT_BYTES_MAX: usize = 256;
/// Random bytes in the server's part of the nonce (sent as 32 base64 characters); Kafka uses
/// 130 random bits.
pub const SCRAM_SERVER_NONCE_RANDOM_BYTES: usize = 24;
/// Length in bytes of the secret behind [`DecoyCredentials`].
pub const DECOY_SECRET_BYTES: usize = 32;
/// Kafka's SCRAM extension for delegation-token authentication (`ScramLoginModule.TOKEN_AUTH_CONFIG`).
pub const TOKEN_AUTH_EXTENSION: &str = "tokenauth";

/// A SCRAM mechanism: the hash behind HMAC, PBKDF2 and `H()`. Stored (`security.json`, the
/// metadata log) by its SASL name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256` (RFC 7677).
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    /// `SCRAM-SHA-512`.
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Every mechanism, in Kafka's type order (1, 2).
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism with this SASL name (exact, as Kafka's `forMechanismName`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's type byte for this mechanism (`UserScramCredentialRecord`, the admin APIs).
    pub fn kafka_type(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// Fewest iterations accepted for this mechanism.
    pub fn iterations_min(self) -> u32 {
        SCRAM_ITERATIONS_MIN
    }

    /// Most iterations accepted for this mechanism.
    pub fn iterations_max(self) -> u32 {
        SCRAM_ITERATIONS_MAX
    }

    /// Output length in bytes of the hash (and so of keys, proofs and signatures).
    pub fn digest_bytes(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_algorithm(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// `HMAC(key, data)`.
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    /// `H(data)`.
    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_algorithm(), data)
            .as_ref()
            .to_vec()
    }

    /// `SaltedPassword := Hi(Normalize(password), salt, i)`, `Hi` being PBKDF2 with this HMAC.
    fn salted_password(self, password: &str, salt: &[u8], iterations: NonZeroU32) -> Vec<u8> {
        let mut out = vec![0u8; self.digest_bytes()];
        pbkdf2::derive(
            self.pbkdf2_algorithm(),
            iterations,
            salt,
            password.as_bytes(),
            &mut out,
        );
        out
    }

    fn check_iterations(self, iterations: u32) -> Result<NonZeroU32, CredentialError> {
        NonZeroU32::new(iterations)
            .filter(|_| (self.iterations_min()..=self.iterations_max()).contains(&iterations))
            .ok_or_else(|| CredentialError::IterationsOutOfRange {
                mechanism: self.name(),
                iterations,
                min: self.iterations_min(),
                max: self.iterations_max(),
            })
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mechanism a client authenticated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// SASL PLAIN (RFC 4616), checked against a stored SCRAM credential.
    Plain,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    Scram(ScramMechanism),
}

impl SaslMechanism {
    /// The SASL mechanism name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Scram(m) => m.name(),
        }
    }
}

/// Why a credential could not be made or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The iteration count is outside the mechanism's bounds.
    #[error("Iterations {iterations} is outside {min}..={max} for {mechanism}")]
    IterationsOutOfRange {
        /// The mechanism's name.
        mechanism: &'static str,
        /// The refused count.
        iterations: u32,
        /// Lowest accepted.
        min: u32,
        /// Highest accepted.
        max: u32,
    },
    /// The salt is empty or longer than [`SCRAM_SALT_BYTES_MAX`].
    #[error("a SCRAM salt must be 1..={max} bytes, not {bytes}")]
    SaltLength {
        /// The refused length.
        bytes: usize,
        /// [`SCRAM_SALT_BYTES_MAX`].
        max: usize,
    },
    /// A stored or server key does not have the mechanism's digest length.
    #[error("a {mechanism} key must be {expected} bytes, not {actual}")]
    KeyLength {
        /// The mechanism's name.
        mechanism: &'static str,
        /// The digest length.
        expected: usize,
        /// The length given.
        actual: usize,
    },
}

/// What a node stores for one user and one mechanism (RFC 5802 §3): the salt, `StoredKey`,
/// `ServerKey` and the iteration count. Never the password, nor `SaltedPassword` or `ClientKey`.
///
/// Invariants (checked by every constructor): iterations within the mechanism's bounds, salt
/// 1..=[`SCRAM_SALT_BYTES_MAX`] bytes, keys of the digest's length.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    mechanism: ScramMechanism,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
    iterations: u32,
}

impl ScramCredential {
    /// Derives a credential from a password: `SaltedPassword = Hi(password, salt, i)`,
    /// `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = H(ClientKey)`,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub fn new(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        let rounds = mechanism.check_iterations(iterations)?;
        check_salt(salt)?;
        let salted = mechanism.salted_password(password, salt, rounds);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Ok(Self {
            mechanism,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
            iterations,
        })
    }

    /// [`ScramCredential::new`] with a fresh [`SCRAM_SALT_BYTES`]-byte salt from `random`
    /// (a cryptographically secure generator in production).
    pub fn generate(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
        random: &mut dyn RngCore,
    ) -> Result<Self, CredentialError> {
        let mut salt = [0u8; SCRAM_SALT_BYTES];
        random.fill_bytes(&mut salt);
        Self::new(mechanism, password, &salt, iterations)
    }

    /// A credential loaded from storage (or from Kafka's `AlterUserScramCredentials`, which
    /// carries a salted password: see [`ScramCredential::from_salted_password`]).
    pub fn from_parts(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        mechanism.check_iterations(iterations)?;
        check_salt(&salt)?;
        for key in [&stored_key, &server_key] {
            if key.len() != mechanism.digest_bytes() {
                return Err(CredentialError::KeyLength {
                    mechanism: mechanism.name(),
                    expected: mechanism.digest_bytes(),
                    actual: key.len(),
                });
            }
        }
        Ok(Self {
            mechanism,
            salt,
            stored_key,
            server_key,
            iterations,
        })
    }

    /// A credential from `SaltedPassword` (what Kafka's `AlterUserScramCredentials` sends, so
    /// the password never reaches the broker), as Kafka's `ScramFormatter.generateCredential`.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salt: Vec<u8>,
        salted_password: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        if salted_password.len() != mechanism.digest_bytes() {
            return Err(CredentialError::KeyLength {
                mechanism: mechanism.name(),
                expected: mechanism.digest_bytes(),
                actual: salted_password.len(),
            });
        }
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        let stored_key = mechanism.hash(&client_key);
        let server_key = mechanism.hmac(salted_password, b"Server Key");
        Self::from_parts(mechanism, salt, stored_key, server_key, iterations)
    }

    /// The mechanism this credential is for.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The salt.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// `StoredKey = H(ClientKey)`.
    pub fn stored_key(&self) -> &[u8] {
        &self.stored_key
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub fn server_key(&self) -> &[u8] {
        &self.server_key
    }

    /// The PBKDF2 iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

/// Keys are secret-equivalent (`ServerKey` impersonates the server; `StoredKey` with one
/// observed exchange yields `ClientKey`): never printed.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("salt_bytes", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn check_salt(salt: &[u8]) -> Result<(), CredentialError> {
    if salt.is_empty() || salt.len() > SCRAM_SALT_BYTES_MAX {
        return Err(CredentialError::SaltLength {
            bytes: salt.len(),
            max: SCRAM_SALT_BYTES_MAX,
        });
    }
    Ok(())
}

/// Stand-in credentials for names that have none, so that an exchange for an unknown user runs
/// the same steps as one for a known user and fails only at the proof.
///
/// Each decoy is derived from a node secret and the name (HMAC-SHA-512), so asking twice for
/// the same unknown name gives the same salt, as a real user's would. Keep the secret for the
/// node's life (persisting it also keeps decoys stable across restarts). Its iteration count
/// should be the one the node's real credentials use.
pub struct DecoyCredentials {
    key: hmac::Key,
    iterations: u32,
}

impl DecoyCredentials {
    /// Decoys derived from `secret`, with `iterations` (which must suit every mechanism).
    pub fn new(secret: [u8; DECOY_SECRET_BYTES], iterations: u32) -> Result<Self, CredentialError> {
        for mechanism in ScramMechanism::ALL {
            mechanism.check_iterations(iterations)?;
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA512, &secret),
            iterations,
        })
    }

    /// Decoys from a fresh secret drawn from `random`.
    pub fn generate(random: &mut dyn RngCore, iterations: u32) -> Result<Self, CredentialError> {
        let mut secret = [0u8; DECOY_SECRET_BYTES];
        random.fill_bytes(&mut secret);
        Self::new(secret, iterations)
    }

    /// The decoy credential for `username` under `mechanism`. No password derives its keys, so
    /// no proof matches it (and [`ScramServer`] refuses a decoy even if one did).
    pub fn credential_for(&self, mechanism: ScramMechanism, username: &str) -> ScramCredential {
        let derive = |label: &[u8], len: usize| {
            let mut ctx = hmac::Context::with_key(&self.key);
            ctx.update(label);
            ctx.update(&[0]);
            ctx.update(mechanism.name().as_bytes());
            ctx.update(&[0]);
            ctx.update(username.as_bytes());
            let tag = ctx.sign();
            tag.as_ref()[..len].to_vec()
        };
        ScramCredential {
            mechanism,
            salt: derive(b"ledge scram decoy salt", SCRAM_SALT_BYTES),
            stored_key: derive(b"ledge scram decoy stored key", mechanism.digest_bytes()),
            server_key: derive(b"ledge scram decoy server key", mechanism.digest_bytes()),
            iterations: self.iterations,
        }
    }
}

impl fmt::Debug for DecoyCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecoyCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A client that proved it knows the password. Only a successful
/// [`ScramServer::handle_client_final`] or [`authenticate_plain`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    username: String,
    mechanism: SaslMechanism,
}

impl AuthenticatedUser {
    /// The authenticated name (unescaped); the principal is `User:<username>`.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The mechanism that authenticated it.
    pub fn mechanism(&self) -> SaslMechanism {
        self.mechanism
    }
}

/// Why a SCRAM exchange failed. Messages follow Kafka's where Kafka has one, and never repeat
/// client bytes (a proof, a nonce or a name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message over the size limit.
    #[error("SCRAM message of {bytes} bytes is over the limit of {max} bytes")]
    MessageTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// `client-first-message` does not follow the grammar.
    #[error("Invalid SCRAM client first message format: {0}")]
    ClientFirstFormat(&'static str),
    /// `client-final-message` does not follow the grammar.
    #[error("Invalid SCRAM client final message format: {0}")]
    ClientFinalFormat(&'static str),
    /// The client asked for channel binding (gs2 flag `p=`); Kafka and Ledge have none.
    #[error("Channel binding is not supported")]
    ChannelBindingNotSupported,
    /// The reserved mandatory extension `m=` (RFC 5802 §5.1).
    #[error("Invalid SCRAM client first message format: mandatory extension 'm' is not supported")]
    MandatoryExtensionNotSupported,
    /// A name whose escaping or characters are invalid.
    #[error("Invalid username: {0}")]
    InvalidUsername(&'static str),
    /// An authzid that is not the username.
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthorizationIdMismatch,
    /// `tokenauth=true`: Kafka's delegation tokens, which Ledge does not have.
    #[error("Token Authentication failed: delegation tokens are not supported")]
    TokenAuthNotSupported,
    /// The caller passed a credential for another mechanism (a lookup bug).
    #[error("credential is for {actual}, the exchange is {expected}")]
    CredentialMechanismMismatch {
        /// The exchange's mechanism.
        expected: &'static str,
        /// The credential's.
        actual: &'static str,
    },
    /// `c=` is not the base64 of the client's gs2 header.
    #[error("Invalid channel binding in the final client message.")]
    ChannelBindingMismatch,
    /// `r=` in the final message is not the nonce of the server's first message.
    #[error("Invalid client nonce in the final client message.")]
    NonceMismatch,
    /// The proof is wrong (wrong password, or no such user).
    #[error("Invalid client credentials")]
    InvalidCredentials,
    /// A message that does not fit the exchange's state (after it completed or failed, or out
    /// of order).
    #[error("Unexpected challenge in Sasl server state {state}")]
    UnexpectedMessage {
        /// The state the exchange was in.
        state: &'static str,
    },
}

/// What [`ScramServer::handle_client_first`] asks the caller for: the credential of this user
/// for the exchange's mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeedCredential {
    /// The username, unescaped (`=2C` → `,`, `=3D` → `=`).
    pub username: String,
    /// The exchange's mechanism.
    pub mechanism: ScramMechanism,
}

/// The parts of `client-first-message` the exchange keeps.
#[derive(Debug)]
struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    client_nonce: String,
}

/// Everything the final check needs.
#[derive(Debug)]
struct AwaitingFinal {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    username: String,
    credential: ScramCredential,
    decoy: bool,
}

#[derive(Debug)]
enum State {
    ClientFirst,
    Credential(ClientFirst),
    ClientFinal(AwaitingFinal),
    Complete,
    Failed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::ClientFirst => "RECEIVE_CLIENT_FIRST_MESSAGE",
            Self::Credential(_) => "AWAIT_CREDENTIAL",
            Self::ClientFinal(_) => "RECEIVE_CLIENT_FINAL_MESSAGE",
            Self::Complete => "COMPLETE",
            Self::Failed => "FAILED",
        }
    }
}

/// One SCRAM exchange, server side. Every error leaves it failed: later calls return
/// [`ScramError::UnexpectedMessage`].
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    message_bytes_max: usize,
    server_nonce: String,
    state: State,
}

impl ScramServer {
    /// A new exchange; the server's nonce part is [`SCRAM_SERVER_NONCE_RANDOM_BYTES`] from
    /// `random` (a cryptographically secure generator in production), base64-encoded.
    pub fn new(mechanism: ScramMechanism, random: &mut dyn RngCore) -> Self {
        let mut bytes = [0u8; SCRAM_SERVER_NONCE_RANDOM_BYTES];
        random.fill_bytes(&mut bytes);
        Self::with_server_nonce(mechanism, BASE64.encode(bytes))
    }

    /// The RFC's test vectors fix the server nonce (printable, no comma).
    fn with_server_nonce(mechanism: ScramMechanism, server_nonce: String) -> Self {
        debug_assert!(server_nonce.bytes().all(is_printable));
        Self {
            mechanism,
            message_bytes_max: SASL_MESSAGE_BYTES_MAX_DEFAULT,
            server_nonce,
            state: State::ClientFirst,
        }
    }

    /// Sets the size limit of a client message (default [`SASL_MESSAGE_BYTES_MAX_DEFAULT`]).
    pub fn with_message_bytes_max(mut self, message_bytes_max: usize) -> Self {
        self.message_bytes_max = message_bytes_max;
        self
    }

    /// The exchange's mechanism.
    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Parses `client-first-message` and returns the name whose credential the caller must
    /// look up and pass to [`ScramServer::server_first`].
    pub fn handle_client_first(&mut self, message: &[u8]) -> Result<NeedCredential, ScramError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::ClientFirst => {}
            other => {
                return Err(ScramError::UnexpectedMessage {
                    state: other.name(),
                });
            }
        }
        let first = parse_client_first(message, self.message_bytes_max)?;
        let need = NeedCredential {
            username: first.username.clone(),
            mechanism: self.mechanism,
        };
        self.state = State::Credential(first);
        Ok(need)
    }

    /// Builds `server-first-message` (`r=<client nonce><server nonce>,s=<salt>,i=<count>`) from
    /// the user's credential, or from the decoy for this name when `credential` is `None`.
    pub fn server_first(
        &mut self,
        credential: Option<&ScramCredential>,
        decoys: &DecoyCredentials,
    ) -> Result<Vec<u8>, ScramError> {
        let first = match std::mem::replace(&mut self.state, State::Failed) {
            State::Credential(first) => first,
            other => {
                return Err(ScramError::UnexpectedMessage {
                    state: other.name(),
                });
            }
        };
        let (credential, decoy) = match credential {
            Some(c) if c.mechanism == self.mechanism => (c.clone(), false),
            Some(c) => {
                return Err(ScramError::CredentialMechanismMismatch {
                    expected: self.mechanism.name(),
                    actual: c.mechanism.name(),
                });
            }
            None => (decoys.credential_for(self.mechanism, &first.username), true),
        };
        let nonce = format!("{}{}", first.client_nonce, self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let bytes = server_first.clone().into_bytes();
        self.state = State::ClientFinal(AwaitingFinal {
            gs2_header: first.gs2_header,
            client_first_bare: first.bare,
            server_first,
            nonce,
            username: first.username,
            credential,
            decoy,
        });
        Ok(bytes)
    }

    /// Checks `client-final-message` and, only if the proof is right, returns
    /// `server-final-message` (`v=<ServerSignature>`) and the authenticated user.
    pub fn handle_client_final(
        &mut self,
        message: &[u8],
    ) -> Result<(Vec<u8>, AuthenticatedUser), ScramError> {
        let exchange = match std::mem::replace(&mut self.state, State::Failed) {
            State::ClientFinal(exchange) => exchange,
            other => {
                return Err(ScramError::UnexpectedMessage {
                    state: other.name(),
                });
            }
        };
        let mechanism = self.mechanism;
        let last = parse_client_final(message, self.message_bytes_max, mechanism)?;
        if last.channel_binding != exchange.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        if last.nonce != exchange.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let auth_message = format!(
            "{},{},{}",
            exchange.client_first_bare, exchange.server_first, last.without_proof
        );
        let credential = &exchange.credential;
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof is right iff
        // H(ClientKey) = StoredKey. Compared in constant time; a decoy never matches.
        let client_signature = mechanism.hmac(&credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = last
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let computed_stored_key = mechanism.hash(&client_key);
        let proof_matches = computed_stored_key.ct_eq(&credential.stored_key);
        let accepted = proof_matches & subtle::Choice::from(u8::from(!exchange.decoy));
        // Computed either way, so a failure costs what a success does.
        let server_signature = mechanism.hmac(&credential.server_key, auth_message.as_bytes());
        if !bool::from(accepted) {
            return Err(ScramError::InvalidCredentials);
        }
        self.state = State::Complete;
        let server_final = format!("v={}", BASE64.encode(server_signature)).into_bytes();
        Ok((
            server_final,
            AuthenticatedUser {
                username: exchange.username,
                mechanism: SaslMechanism::Scram(mechanism),
            },
        ))
    }

    /// Whether the exchange completed with a valid proof.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }
}

/// `printable = %x21-2B / %x2D-7E` (RFC 5802 §7, Kafka's `PRINTABLE`).
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

/// `value-char` (Kafka's `VALUE`: `0x01..=0x7F` but `,`).
fn is_value_char(b: u8) -> bool {
    (0x01..=0x7f).contains(&b) && b != b','
}

/// Unescapes a `saslname` (RFC 5802 §5.1): `=2C` is `,`, `=3D` is `=`, any other `=` is an
/// error; characters are `0x01..=0x7F` (Kafka's grammar) and SASLprep prohibits the control
/// characters among them (RFC 4013 §2.3, RFC 3454 C.2.1).
pub fn unescape_saslname(saslname: &str) -> Result<String, ScramError> {
    if saslname.is_empty() {
        return Err(ScramError::InvalidUsername("empty"));
    }
    let bytes = saslname.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'=' => {
                match bytes.get(i + 1..i + 3) {
                    Some(b"2C") => out.push(','),
                    Some(b"3D") => out.push('='),
                    _ => return Err(ScramError::InvalidUsername("'=' not followed by 2C or 3D")),
                }
                i += 3;
            }
            b',' => return Err(ScramError::InvalidUsername("unescaped ','")),
            0x00 | 0x80..=0xff => {
                return Err(ScramError::InvalidUsername("not 7-bit ASCII"));
            }
            b if b < 0x20 || b == 0x7f => {
                return Err(ScramError::InvalidUsername(
                    "control character (prohibited by SASLprep)",
                ));
            }
            b => {
                out.push(char::from(b));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Escapes a username as a `saslname` (`,` → `=2C`, `=` → `=3D`), as Kafka's
/// `ScramFormatter.saslName`.
pub fn escape_saslname(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

fn check_message(message: &[u8]) -> Result<&str, &'static str> {
    // Kafka's grammar is 7-bit ASCII without NUL throughout.
    if !message.iter().all(|&b| (0x01..=0x7f).contains(&b)) {
        return Err("not 7-bit ASCII without NUL");
    }
    std::str::from_utf8(message).map_err(|_| "not 7-bit ASCII without NUL")
}

/// Checks `ALPHA "=" 1*value-char` extensions (Kafka's `EXTENSIONS`); returns whether
/// `tokenauth` is true (Java's `Boolean.parseBoolean`: case-insensitive "true"; the last
/// occurrence wins, as in Kafka's map).
fn parse_extensions<'a>(attributes: impl Iterator<Item = &'a str>) -> Result<bool, &'static str> {
    let mut token_auth = false;
    for attribute in attributes {
        let Some((key, value)) = attribute.split_once('=') else {
            return Err("extension without '='");
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("extension name is not alphabetic");
        }
        if value.is_empty() || !value.bytes().all(is_value_char) {
            return Err("empty extension value");
        }
        if key == TOKEN_AUTH_EXTENSION {
            token_auth = value.eq_ignore_ascii_case("true");
        }
    }
    Ok(token_auth)
}

/// `client-first-message = gs2-header client-first-message-bare`, where
/// `gs2-header = gs2-cbind-flag "," [ authzid ] ","` and
/// `client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]`.
fn parse_client_first(message: &[u8], max: usize) -> Result<ClientFirst, ScramError> {
    if message.len() > max {
        return Err(ScramError::MessageTooLarge {
            bytes: message.len(),
            max,
        });
    }
    let text = check_message(message).map_err(ScramError::ClientFirstFormat)?;
    let Some((flag, rest)) = text.split_once(',') else {
        return Err(ScramError::ClientFirstFormat("no gs2 header"));
    };
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
        _ => return Err(ScramError::ClientFirstFormat("gs2 flag is not 'n' or 'y'")),
    }
    let Some((authzid, bare)) = rest.split_once(',') else {
        return Err(ScramError::ClientFirstFormat(
            "gs2 header has no second ','",
        ));
    };
    let authzid = match authzid {
        "" => None,
        _ => match authzid.strip_prefix("a=") {
            Some(name) => Some(unescape_saslname(name)?),
            None => return Err(ScramError::ClientFirstFormat("authzid is not 'a='")),
        },
    };
    let gs2_header = &text[..text.len() - bare.len()];
    let mut attributes = bare.split(',');
    let mut next = attributes.next().unwrap_or_default();
    if next.starts_with("m=") {
        return Err(ScramError::MandatoryExtensionNotSupported);
    }
    let Some(saslname) = next.strip_prefix("n=") else {
        return Err(ScramError::ClientFirstFormat("no username"));
    };
    let username = unescape_saslname(saslname)?;
    next = attributes.next().unwrap_or_default();
    let Some(client_nonce) = next.strip_prefix("r=") else {
        return Err(ScramError::ClientFirstFormat("no nonce"));
    };
    if client_nonce.is_empty() || !client_nonce.bytes().all(is_printable) {
        return Err(ScramError::ClientFirstFormat(
            "nonce is empty or not printable",
        ));
    }
    if parse_extensions(attributes).map_err(ScramError::ClientFirstFormat)? {
        return Err(ScramError::TokenAuthNotSupported);
    }
    if authzid.is_some_and(|a| a != username) {
        return Err(ScramError::AuthorizationIdMismatch);
    }
    Ok(ClientFirst {
        gs2_header: gs2_header.to_owned(),
        bare: bare.to_owned(),
        username,
        client_nonce: client_nonce.to_owned(),
    })
}

struct ClientFinal<'a> {
    channel_binding: Vec<u8>,
    nonce: &'a str,
    without_proof: &'a str,
    proof: Vec<u8>,
}

/// `client-final-message = channel-binding "," nonce ["," extensions] "," proof`.
fn parse_client_final(
    message: &[u8],
    max: usize,
    mechanism: ScramMechanism,
) -> Result<ClientFinal<'_>, ScramError> {
    if message.len() > max {
        return Err(ScramError::MessageTooLarge {
            bytes: message.len(),
            max,
        });
    }
    let text = check_message(message).map_err(ScramError::ClientFinalFormat)?;
    let Some((without_proof, proof)) = text.rsplit_once(',') else {
        return Err(ScramError::ClientFinalFormat("no proof"));
    };
    let Some(proof) = proof.strip_prefix("p=") else {
        return Err(ScramError::ClientFinalFormat("last attribute is not 'p='"));
    };
    let mut attributes = without_proof.split(',');
    let Some(channel_binding) = attributes.next().unwrap_or_default().strip_prefix("c=") else {
        return Err(ScramError::ClientFinalFormat("no channel binding"));
    };
    let Some(nonce) = attributes.next().and_then(|a| a.strip_prefix("r=")) else {
        return Err(ScramError::ClientFinalFormat("no nonce"));
    };
    if nonce.is_empty() || !nonce.bytes().all(is_printable) {
        return Err(ScramError::ClientFinalFormat(
            "nonce is empty or not printable",
        ));
    }
    // Extensions here are ignored (Kafka: "Extensions are ignored"), but must be well formed.
    parse_extensions(attributes).map_err(ScramError::ClientFinalFormat)?;
    let channel_binding = BASE64
        .decode(channel_binding)
        .map_err(|_| ScramError::ClientFinalFormat("channel binding is not base64"))?;
    let proof = BASE64
        .decode(proof)
        .map_err(|_| ScramError::ClientFinalFormat("proof is not base64"))?;
    if proof.len() != mechanism.digest_bytes() {
        return Err(ScramError::ClientFinalFormat("proof has the wrong length"));
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Why a SASL PLAIN message was refused, or its password did not verify. Messages are
/// Kafka's `PlainSaslServer` ones; none repeats the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// A message over the size limit.
    #[error("SASL/PLAIN message of {bytes} bytes is over the limit of {max} bytes")]
    MessageTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Not `authzid NUL authcid NUL passwd`.
    #[error("Invalid SASL/PLAIN response: expected 3 tokens, got {tokens}")]
    Tokens {
        /// How many NUL-separated tokens there were (up to 4, as Kafka counts).
        tokens: usize,
    },
    /// A token that is not UTF-8 (RFC 4616 `SAFE`).
    #[error("Invalid SASL/PLAIN response: not UTF-8")]
    NotUtf8,
    /// Empty authcid.
    #[error("Authentication failed: username not specified")]
    UsernameMissing,
    /// Empty password.
    #[error("Authentication failed: password not specified")]
    PasswordMissing,
    /// An authzid that is not the username.
    #[error(
        "Authentication failed: Client requested an authorization id that is different from username"
    )]
    AuthorizationIdMismatch,
    /// Wrong password, or no such user.
    #[error("Authentication failed: Invalid username or password")]
    InvalidCredentials,
}

/// A parsed SASL PLAIN message (RFC 4616). The password is never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainMessage {
    /// The authorization id, empty or equal to `username`.
    pub authzid: String,
    /// The authentication id (non-empty).
    pub username: String,
    /// The password (non-empty).
    pub password: String,
}

impl fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Parses `[authzid] NUL authcid NUL passwd` with Kafka's rules: exactly three tokens, a
/// non-empty username and password, an authzid empty or equal to the username; at most
/// `message_bytes_max` bytes ([`SASL_MESSAGE_BYTES_MAX_DEFAULT`] by default, well above RFC
/// 4616's 255 bytes per token).
pub fn parse_plain(message: &[u8], message_bytes_max: usize) -> Result<PlainMessage, PlainError> {
    if message.len() > message_bytes_max {
        return Err(PlainError::MessageTooLarge {
            bytes: message.len(),
            max: message_bytes_max,
        });
    }
    // Kafka splits at most four times and wants exactly three tokens.
    let tokens: Vec<&[u8]> = message.splitn(4, |&b| b == 0).collect();
    let [authzid, username, password] = tokens.as_slice() else {
        return Err(PlainError::Tokens {
            tokens: tokens.len(),
        });
    };
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).map(str::to_owned);
    let (Ok(authzid), Ok(username), Ok(password)) = (text(authzid), text(username), text(password))
    else {
        return Err(PlainError::NotUtf8);
    };
    if username.is_empty() {
        return Err(PlainError::UsernameMissing);
    }
    if password.is_empty() {
        return Err(PlainError::PasswordMissing);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::AuthorizationIdMismatch);
    }
    Ok(PlainMessage {
        authzid,
        username,
        password,
    })
}

/// Whether `password` is the one `credential` was made from: recomputes `StoredKey` from the
/// stored salt and iteration count and compares in constant time. Lets a node that stores only
/// SCRAM credentials check SASL PLAIN passwords (costs one PBKDF2, as a SCRAM client does).
pub fn verify_plain_password(credential: &ScramCredential, password: &str) -> bool {
    let mechanism = credential.mechanism;
    let Ok(rounds) = mechanism.check_iterations(credential.iterations) else {
        return false;
    };
    let salted = mechanism.salted_password(password, &credential.salt, rounds);
    let client_key = mechanism.hmac(&salted, b"Client Key");
    bool::from(mechanism.hash(&client_key).ct_eq(&credential.stored_key))
}

/// Authenticates a parsed PLAIN message against the user's SCRAM credential, or against the
/// decoy for the name when `credential` is `None` (the same work either way, so the answer does
/// not tell whether the user exists). `mechanism` is the credential kind the node looks up for
/// PLAIN, used for the decoy.
pub fn authenticate_plain(
    message: &PlainMessage,
    credential: Option<&ScramCredential>,
    mechanism: ScramMechanism,
    decoys: &DecoyCredentials,
) -> Result<AuthenticatedUser, PlainError> {
    let (credential, decoy) = match credential {
        Some(c) => (c.clone(), false),
        None => (decoys.credential_for(mechanism, &message.username), true),
    };
    if verify_plain_password(&credential, &message.password) && !decoy {
        Ok(AuthenticatedUser {
            username: message.username.clone(),
            mechanism: SaslMechanism::Plain,
        })
    } else {
        Err(PlainError::InvalidCredentials)
    }
}
