//! The durable security data of a node or cluster (issue 15): SCRAM credentials per user and
//! mechanism, ACL bindings and the decoy secret, with the records that change them and the
//! pure decisions that turn an admin request into records.
//!
//! One shape serves both modes: a one-node node keeps [`SecurityData`] in
//! `<data-dir>/security.json` (`security/store.rs`), a `[cluster]` keeps it in the
//! controller's metadata image (`MetadataImage::security`), changed only by
//! `MetadataRecord::Security` records. Either way a change is decided here
//! ([`decide_user_alteration`], [`decide_create_acls`], [`decide_delete_acls`],
//! [`decide_decoy_secret`]) and applied with [`SecurityData::apply`], so the two modes
//! cannot drift apart.
//!
//! Secrets: [`StoredCredential`] holds a salt, `StoredKey` and `ServerKey` (never a password
//! or salted password); its `Debug` prints neither key, and neither does [`DecoySecret`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::acl::{AclBinding, AclError};
use super::quota::{ClientQuotas, QuotaEntity, QuotaKind, QuotaValues};
use super::scram::{CredentialError, DECOY_SECRET_BYTES, ScramCredential, ScramMechanism};

/// Longest user name, in bytes. Kafka sets no limit; a SCRAM `client-first-message` must fit
/// in `SASL_MESSAGE_BYTES_MAX_DEFAULT` (4096 bytes) with its nonce, so longer names could
/// never authenticate anyway.
pub const USER_NAME_BYTES_MAX: usize = 256;
/// Default most users (names with at least one credential) a node or cluster holds: bounds
/// the store's memory and the size of `security.json`.
pub const USERS_MAX_DEFAULT: usize = 10_000;

/// Bytes as base64 text in JSON.
mod base64_bytes {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("not base64"))
    }
}

/// What is stored for one user and one mechanism: salt, `StoredKey`, `ServerKey`, iterations
/// (Kafka's `UserScramCredentialRecord`). Checked when turned into a [`ScramCredential`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// The salt.
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    /// `StoredKey = H(ClientKey)`.
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
}

impl StoredCredential {
    /// The stored form of `credential`.
    pub fn of(credential: &ScramCredential) -> Self {
        Self {
            salt: credential.salt().to_vec(),
            stored_key: credential.stored_key().to_vec(),
            server_key: credential.server_key().to_vec(),
            iterations: credential.iterations(),
        }
    }

    /// The credential for `mechanism`, checked (iterations, salt and key lengths).
    pub fn credential(
        &self,
        mechanism: ScramMechanism,
    ) -> Result<ScramCredential, CredentialError> {
        ScramCredential::from_parts(
            mechanism,
            self.salt.clone(),
            self.stored_key.clone(),
            self.server_key.clone(),
            self.iterations,
        )
    }
}

/// Keys are secret-equivalent: never printed.
impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("salt_bytes", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The secret behind the decoy credentials of unknown users (`DecoyCredentials`): stored so
/// an unknown name's decoy salt is the same after a restart and, in a cluster, on every node
/// (a salt that differed between nodes or starts would tell a client the name is unknown).
#[derive(Clone, PartialEq, Eq)]
pub struct DecoySecret(pub [u8; DECOY_SECRET_BYTES]);

impl fmt::Debug for DecoySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecoySecret(..)")
    }
}

impl Serialize for DecoySecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(self.0))
    }
}

impl<'de> Deserialize<'de> for DecoySecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = base64_bytes::deserialize(deserializer)?;
        let secret = <[u8; DECOY_SECRET_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
            serde::de::Error::custom(format!(
                "a decoy secret is {DECOY_SECRET_BYTES} bytes, not {}",
                bytes.len()
            ))
        })?;
        Ok(Self(secret))
    }
}

/// Every user's credentials, every ACL binding and the decoy secret: the contents of
/// `security.json` and of `MetadataImage::security`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityData {
    /// Credentials by user name, then mechanism.
    #[serde(default)]
    pub users: BTreeMap<String, BTreeMap<ScramMechanism, StoredCredential>>,
    /// ACL bindings.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// The decoy secret (`None` until one is set: a cluster's first node sets it).
    #[serde(default)]
    pub decoy_secret: Option<DecoySecret>,
    /// Client quotas: produce/fetch bytes per second per user and for the default user
    /// (`security/quota.rs`).
    #[serde(default, skip_serializing_if = "ClientQuotas::is_empty")]
    pub quotas: ClientQuotas,
    /// How many records were applied: a cheap "did anything change" for readers that follow
    /// the metadata image.
    #[serde(default)]
    pub changes: u64,
}

/// One change to [`SecurityData`] (Kafka's `UserScramCredentialRecord`,
/// `RemoveUserScramCredentialRecord`, `AccessControlEntryRecord`,
/// `RemoveAccessControlEntryRecord`, plus the decoy secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityRecord {
    /// Sets (adds or replaces) `user`'s credential for `mechanism`.
    PutScramCredential {
        /// The user name.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
        /// Salt, keys, iterations.
        credential: StoredCredential,
    },
    /// Removes `user`'s credential for `mechanism` (the user is gone with its last one).
    DeleteScramCredential {
        /// The user name.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
    },
    /// Adds an ACL binding.
    CreateAcl {
        /// The binding.
        binding: AclBinding,
    },
    /// Removes an ACL binding.
    DeleteAcl {
        /// The binding.
        binding: AclBinding,
    },
    /// Sets the decoy secret (only when none is set).
    SetDecoySecret {
        /// The secret.
        secret: DecoySecret,
    },
    /// Sets one entity's client quotas to `values` (empty values remove the entity; Kafka's
    /// `ClientQuotaRecord`).
    SetClientQuota {
        /// The user, or the default user.
        entity: QuotaEntity,
        /// Every value of the entity after the change.
        values: QuotaValues,
    },
}

/// Why a record does not fit the data (a bug or a damaged log; decisions never make one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecurityApplyError {
    /// The credential to delete is not there.
    #[error("user {user:?} has no {mechanism} credential")]
    NoCredential {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
    },
    /// The binding to delete is not there, or the one to add is.
    #[error("ACL {binding}: {reason}")]
    Acl {
        /// The binding, as one line.
        binding: String,
        /// What does not fit.
        reason: String,
    },
    /// A credential that breaks an invariant.
    #[error("user {user:?}: {source}")]
    Credential {
        /// The user.
        user: String,
        /// Why.
        source: CredentialError,
    },
    /// A user name that breaks the rules.
    #[error("{0}")]
    User(UserError),
    /// The decoy secret is set already.
    #[error("the decoy secret is already set")]
    DecoySecretSet,
    /// A quota that breaks the rules.
    #[error("{0}")]
    Quota(QuotaError),
}

impl SecurityData {
    /// Applies one record, checking it first: a refused record changes nothing.
    pub fn apply(&mut self, record: &SecurityRecord) -> Result<(), SecurityApplyError> {
        match record {
            SecurityRecord::PutScramCredential {
                user,
                mechanism,
                credential,
            } => {
                validate_user_name(user).map_err(SecurityApplyError::User)?;
                credential.credential(*mechanism).map_err(|source| {
                    SecurityApplyError::Credential {
                        user: user.clone(),
                        source,
                    }
                })?;
                self.users
                    .entry(user.clone())
                    .or_default()
                    .insert(*mechanism, credential.clone());
            }
            SecurityRecord::DeleteScramCredential { user, mechanism } => {
                let no_credential = || SecurityApplyError::NoCredential {
                    user: user.clone(),
                    mechanism: *mechanism,
                };
                let credentials = self.users.get_mut(user).ok_or_else(no_credential)?;
                credentials.remove(mechanism).ok_or_else(no_credential)?;
                if credentials.is_empty() {
                    self.users.remove(user);
                }
            }
            SecurityRecord::CreateAcl { binding } => {
                binding
                    .validate()
                    .map_err(|error| SecurityApplyError::Acl {
                        binding: binding.to_string(),
                        reason: error.to_string(),
                    })?;
                if !self.acls.insert(binding.clone()) {
                    return Err(SecurityApplyError::Acl {
                        binding: binding.to_string(),
                        reason: "already exists".to_owned(),
                    });
                }
            }
            SecurityRecord::DeleteAcl { binding } => {
                if !self.acls.remove(binding) {
                    return Err(SecurityApplyError::Acl {
                        binding: binding.to_string(),
                        reason: "does not exist".to_owned(),
                    });
                }
            }
            SecurityRecord::SetDecoySecret { secret } => {
                if self.decoy_secret.is_some() {
                    return Err(SecurityApplyError::DecoySecretSet);
                }
                self.decoy_secret = Some(secret.clone());
            }
            SecurityRecord::SetClientQuota { entity, values } => {
                validate_quota_entity(entity).map_err(SecurityApplyError::Quota)?;
                for (kind, value) in values.entries() {
                    validate_quota_value(kind, value).map_err(SecurityApplyError::Quota)?;
                }
                self.quotas.put(entity.clone(), *values);
            }
        }
        self.changes = self.changes.wrapping_add(1);
        Ok(())
    }

    /// The mechanisms and iteration counts of `user`'s credentials (what
    /// DescribeUserScramCredentials shows), or `None` for a user without any.
    pub fn describe_user(&self, user: &str) -> Option<Vec<(ScramMechanism, u32)>> {
        self.users.get(user).map(|credentials| {
            credentials
                .iter()
                .map(|(mechanism, credential)| (*mechanism, credential.iterations))
                .collect()
        })
    }
}

/// The kind of refusal, as Kafka's error codes name them (the Kafka handlers and the native
/// dispatch map these to their codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityRefusal {
    /// UNACCEPTABLE_CREDENTIAL: a user name or credential that cannot be stored.
    UnacceptableCredential,
    /// UNSUPPORTED_SASL_MECHANISM: not a SCRAM mechanism.
    UnsupportedSaslMechanism,
    /// RESOURCE_NOT_FOUND: no such credential.
    ResourceNotFound,
    /// DUPLICATE_RESOURCE: a user altered twice in one request.
    DuplicateResource,
    /// POLICY_VIOLATION: a limit (users, ACLs) would be exceeded.
    LimitExceeded,
    /// INVALID_REQUEST: an ACL binding or filter that cannot be used.
    InvalidRequest,
}

impl SecurityRefusal {
    /// Kafka's name for the error.
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::UnacceptableCredential => "UNACCEPTABLE_CREDENTIAL",
            Self::UnsupportedSaslMechanism => "UNSUPPORTED_SASL_MECHANISM",
            Self::ResourceNotFound => "RESOURCE_NOT_FOUND",
            Self::DuplicateResource => "DUPLICATE_RESOURCE",
            Self::LimitExceeded => "POLICY_VIOLATION",
            Self::InvalidRequest => "INVALID_REQUEST",
        }
    }
}

/// Why a user alteration was refused. Messages follow Kafka's `ScramControlManager` where it
/// has one; none repeats a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// An empty user name.
    #[error("Username must not be empty")]
    EmptyName,
    /// A user name longer than [`USER_NAME_BYTES_MAX`].
    #[error("user name is {bytes} bytes; the limit is {max} bytes")]
    NameTooLong {
        /// Its length.
        bytes: usize,
        /// [`USER_NAME_BYTES_MAX`].
        max: usize,
    },
    /// A user name SCRAM cannot carry: not 7-bit ASCII, or a control character (SASLprep
    /// prohibits them; `security/scram.rs` refuses such names at authentication).
    #[error("user name must be printable 7-bit ASCII (no control characters)")]
    InvalidName,
    /// Not a SCRAM mechanism Ledge knows.
    #[error("Unknown SCRAM mechanism")]
    UnknownMechanism,
    /// Iterations below [`super::scram::SCRAM_ITERATIONS_MIN`].
    #[error("Too few iterations: {iterations} (the minimum is {min})")]
    TooFewIterations {
        /// Given.
        iterations: i64,
        /// The minimum.
        min: u32,
    },
    /// Iterations above [`super::scram::SCRAM_ITERATIONS_MAX`].
    #[error("Too many iterations: {iterations} (the maximum is {max})")]
    TooManyIterations {
        /// Given.
        iterations: i64,
        /// The maximum.
        max: u32,
    },
    /// A salt or salted password of the wrong length.
    #[error("{0}")]
    InvalidCredential(CredentialError),
    /// A deletion of a credential that is not there.
    #[error("Attempt to delete a user credential that does not exist")]
    NotFound,
    /// The same user twice in one request.
    #[error("A user credential cannot be altered twice in the same request")]
    Duplicate,
    /// A new user past the limit.
    #[error("too many users: the limit is {users_max}")]
    TooManyUsers {
        /// The limit.
        users_max: usize,
    },
}

impl UserError {
    /// The refusal this error is.
    pub fn refusal(&self) -> SecurityRefusal {
        match self {
            Self::UnknownMechanism => SecurityRefusal::UnsupportedSaslMechanism,
            Self::NotFound => SecurityRefusal::ResourceNotFound,
            Self::Duplicate => SecurityRefusal::DuplicateResource,
            Self::TooManyUsers { .. } => SecurityRefusal::LimitExceeded,
            Self::EmptyName
            | Self::NameTooLong { .. }
            | Self::InvalidName
            | Self::TooFewIterations { .. }
            | Self::TooManyIterations { .. }
            | Self::InvalidCredential(_) => SecurityRefusal::UnacceptableCredential,
        }
    }
}

/// The refusal an ACL error is.
pub fn acl_refusal(error: &AclError) -> SecurityRefusal {
    match error {
        AclError::TooManyAcls { .. } => SecurityRefusal::LimitExceeded,
        _ => SecurityRefusal::InvalidRequest,
    }
}

/// Checks a user name: non-empty (Kafka's rule), at most [`USER_NAME_BYTES_MAX`] bytes,
/// printable 7-bit ASCII or space (what SCRAM as `security/scram.rs` implements can carry).
pub fn validate_user_name(name: &str) -> Result<(), UserError> {
    if name.is_empty() {
        return Err(UserError::EmptyName);
    }
    if name.len() > USER_NAME_BYTES_MAX {
        return Err(UserError::NameTooLong {
            bytes: name.len(),
            max: USER_NAME_BYTES_MAX,
        });
    }
    if !name.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return Err(UserError::InvalidName);
    }
    Ok(())
}

/// Checks an iteration count from a request (Kafka's `int32`) against the bounds.
pub fn validate_iterations(iterations: i64) -> Result<u32, UserError> {
    use super::scram::{SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};
    if iterations < i64::from(SCRAM_ITERATIONS_MIN) {
        return Err(UserError::TooFewIterations {
            iterations,
            min: SCRAM_ITERATIONS_MIN,
        });
    }
    if iterations > i64::from(SCRAM_ITERATIONS_MAX) {
        return Err(UserError::TooManyIterations {
            iterations,
            max: SCRAM_ITERATIONS_MAX,
        });
    }
    u32::try_from(iterations).map_err(|_| UserError::TooManyIterations {
        iterations,
        max: SCRAM_ITERATIONS_MAX,
    })
}

/// One user's change in an alteration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserAlteration {
    /// Set the credential for a mechanism (the server derived the keys from the client's
    /// salted password).
    Upsert {
        /// The mechanism.
        mechanism: ScramMechanism,
        /// Salt, keys, iterations.
        credential: StoredCredential,
    },
    /// Remove the credential for a mechanism.
    Delete {
        /// The mechanism.
        mechanism: ScramMechanism,
    },
}

/// Limits on the security data (see docs/OPERATIONS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityLimits {
    /// Most users ([`USERS_MAX_DEFAULT`]).
    pub users_max: usize,
    /// Most ACL bindings (`acl::DEFAULT_MAX_ACLS`).
    pub acls_max: usize,
    /// Most entities with a client quota ([`QUOTA_ENTITIES_MAX_DEFAULT`]).
    pub quota_entities_max: usize,
}

impl Default for SecurityLimits {
    fn default() -> Self {
        Self {
            users_max: USERS_MAX_DEFAULT,
            acls_max: super::acl::DEFAULT_MAX_ACLS,
            quota_entities_max: QUOTA_ENTITIES_MAX_DEFAULT,
        }
    }
}

/// The records that make one user's alteration, or why it is refused: a valid name, a
/// credential within bounds, an existing credential to delete, room for a new user.
pub fn decide_user_alteration(
    data: &SecurityData,
    user: &str,
    alteration: &UserAlteration,
    limits: SecurityLimits,
) -> Result<Vec<SecurityRecord>, UserError> {
    validate_user_name(user)?;
    match alteration {
        UserAlteration::Upsert {
            mechanism,
            credential,
        } => {
            validate_iterations(i64::from(credential.iterations))?;
            credential
                .credential(*mechanism)
                .map_err(UserError::InvalidCredential)?;
            if !data.users.contains_key(user) && data.users.len() >= limits.users_max {
                return Err(UserError::TooManyUsers {
                    users_max: limits.users_max,
                });
            }
            Ok(vec![SecurityRecord::PutScramCredential {
                user: user.to_owned(),
                mechanism: *mechanism,
                credential: credential.clone(),
            }])
        }
        UserAlteration::Delete { mechanism } => {
            if !data
                .users
                .get(user)
                .is_some_and(|credentials| credentials.contains_key(mechanism))
            {
                return Err(UserError::NotFound);
            }
            Ok(vec![SecurityRecord::DeleteScramCredential {
                user: user.to_owned(),
                mechanism: *mechanism,
            }])
        }
    }
}

/// The records that add `bindings` (each validated; those already there add nothing, as
/// Kafka's CreateAcls succeeds for them), or the first binding's error. Refused whole when
/// the new ones would exceed `limits.acls_max`.
pub fn decide_create_acls(
    data: &SecurityData,
    bindings: &[AclBinding],
    limits: SecurityLimits,
) -> Result<Vec<SecurityRecord>, AclError> {
    let mut new = BTreeSet::new();
    for binding in bindings {
        binding.validate()?;
        if !data.acls.contains(binding) {
            new.insert(binding.clone());
        }
    }
    if data.acls.len().saturating_add(new.len()) > limits.acls_max {
        return Err(AclError::TooManyAcls {
            max_acls: limits.acls_max,
        });
    }
    Ok(new
        .into_iter()
        .map(|binding| SecurityRecord::CreateAcl { binding })
        .collect())
}

/// The records that remove those of `bindings` that are there (another request may have
/// removed some already).
pub fn decide_delete_acls(data: &SecurityData, bindings: &[AclBinding]) -> Vec<SecurityRecord> {
    let present: BTreeSet<&AclBinding> = bindings
        .iter()
        .filter(|binding| data.acls.contains(*binding))
        .collect();
    present
        .into_iter()
        .map(|binding| SecurityRecord::DeleteAcl {
            binding: binding.clone(),
        })
        .collect()
}

/// Default most entities (users, and the default user) with a client quota: bounds the
/// store's memory as [`USERS_MAX_DEFAULT`] does.
pub const QUOTA_ENTITIES_MAX_DEFAULT: usize = 10_000;
/// Largest quota value, bytes per second (Kafka's `Long`, kept within `i64` so every
/// client can read it back).
pub const QUOTA_VALUE_MAX: u64 = i64::MAX as u64;

/// Why a client quota change was refused (Kafka answers each with INVALID_REQUEST, a limit
/// with POLICY_VIOLATION).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// A user name that cannot be stored.
    #[error("quota entity: {0}")]
    Name(UserError),
    /// A value of zero or beyond [`QUOTA_VALUE_MAX`].
    #[error("{key} must be a whole number of bytes per second from 1 to {max}, not {value}")]
    Value {
        /// The key.
        key: &'static str,
        /// Given.
        value: String,
        /// [`QUOTA_VALUE_MAX`].
        max: u64,
    },
    /// A new entity past the limit.
    #[error("too many client quota entities: the limit is {max}")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

impl QuotaError {
    /// The refusal this error is.
    pub fn refusal(&self) -> SecurityRefusal {
        match self {
            Self::TooMany { .. } => SecurityRefusal::LimitExceeded,
            Self::Name(_) | Self::Value { .. } => SecurityRefusal::InvalidRequest,
        }
    }
}

/// Checks a quota entity's user name as a SCRAM user name is checked.
pub fn validate_quota_entity(entity: &QuotaEntity) -> Result<(), QuotaError> {
    match entity {
        QuotaEntity::User(name) => validate_user_name(name).map_err(QuotaError::Name),
        QuotaEntity::DefaultUser => Ok(()),
    }
}

/// Checks a quota value: 1 to [`QUOTA_VALUE_MAX`] bytes per second.
pub fn validate_quota_value(kind: QuotaKind, value: u64) -> Result<(), QuotaError> {
    if value == 0 || value > QUOTA_VALUE_MAX {
        return Err(QuotaError::Value {
            key: kind.key(),
            value: value.to_string(),
            max: QUOTA_VALUE_MAX,
        });
    }
    Ok(())
}

/// The record that applies `changes` (each key set to a value, or removed with `None`) to
/// `entity`'s quotas, none when nothing changes, or why not.
pub fn decide_quota_alteration(
    data: &SecurityData,
    entity: &QuotaEntity,
    changes: &[(QuotaKind, Option<u64>)],
    limits: SecurityLimits,
) -> Result<Vec<SecurityRecord>, QuotaError> {
    validate_quota_entity(entity)?;
    let before = data.quotas.values(entity);
    let mut values = before;
    for (kind, value) in changes {
        if let Some(value) = value {
            validate_quota_value(*kind, *value)?;
        }
        values.set(*kind, *value);
    }
    if values == before {
        return Ok(Vec::new());
    }
    if before.is_empty()
        && matches!(entity, QuotaEntity::User(_))
        && data.quotas.len() >= limits.quota_entities_max
    {
        return Err(QuotaError::TooMany {
            max: limits.quota_entities_max,
        });
    }
    Ok(vec![SecurityRecord::SetClientQuota {
        entity: entity.clone(),
        values,
    }])
}

/// The record that sets the decoy secret, when none is set (the first one offered wins).
pub fn decide_decoy_secret(data: &SecurityData, secret: &DecoySecret) -> Vec<SecurityRecord> {
    if data.decoy_secret.is_some() {
        return Vec::new();
    }
    vec![SecurityRecord::SetDecoySecret {
        secret: secret.clone(),
    }]
}

#[cfg(test)]
mod tests;
