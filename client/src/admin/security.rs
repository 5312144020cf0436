//! SASL users and ACLs (issue 15): `ledge user ...` and `ledge acl ...` through the native
//! API. Any node answers; in a `[cluster]` it forwards the change to the active controller.
//!
//! Passwords never travel: [`Admin::create_user`] draws a salt and computes
//! `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2 with the mechanism's HMAC, as
//! Kafka's clients compute it for AlterUserScramCredentials) and sends salt and salted
//! password; the node derives and stores `StoredKey`/`ServerKey` only.

use std::num::NonZeroU32;

use bytes::Bytes;
use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};
pub use ledge_protocol::wire::{AclBindingWire as AclBinding, AclFilterWire as AclFilter};

use super::{Admin, request_with_retry, unexpected};
use crate::cluster::failover::RequestKind;
use crate::error::AdminError;

/// Length in bytes of the salt [`Admin::create_user`] draws (Kafka's clients use 16 or more).
pub const USER_SALT_BYTES: usize = 24;
/// Iterations [`Admin::create_user`] uses when none are given (Kafka's
/// `kafka-configs` default).
pub const SCRAM_ITERATIONS_DEFAULT: u32 = 4096;
/// The SCRAM mechanisms, by SASL name.
pub const SCRAM_MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];

/// A SASL user: its name and each mechanism's iteration count (never a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDescription {
    /// The user name.
    pub name: String,
    /// `(mechanism, iterations)`, by mechanism.
    pub credentials: Vec<(String, u32)>,
}

/// Kafka's codes for ACL fields, with names as `kafka-acls` spells them.
pub mod codes {
    /// Filter code for "any value".
    pub const ANY: i8 = 1;
    /// Pattern type code that matches what applies to a named resource (filters only).
    pub const MATCH: i8 = 2;
    /// Resource types: (name, code).
    pub const RESOURCE_TYPES: [(&str, i8); 6] = [
        ("Topic", 2),
        ("Group", 3),
        ("Cluster", 4),
        ("TransactionalId", 5),
        ("Module", 64),
        ("Transform", 65),
    ];
    /// Pattern types: (name, code).
    pub const PATTERN_TYPES: [(&str, i8); 2] = [("Literal", 3), ("Prefixed", 4)];
    /// Operations: (name, code).
    pub const OPERATIONS: [(&str, i8); 11] = [
        ("All", 2),
        ("Read", 3),
        ("Write", 4),
        ("Create", 5),
        ("Delete", 6),
        ("Alter", 7),
        ("Describe", 8),
        ("ClusterAction", 9),
        ("DescribeConfigs", 10),
        ("AlterConfigs", 11),
        ("IdempotentWrite", 12),
    ];
    /// Permissions: (name, code).
    pub const PERMISSIONS: [(&str, i8); 2] = [("Deny", 2), ("Allow", 3)];

    /// The name of `code` in `table`, or `UNKNOWN(code)`.
    pub fn name(table: &[(&'static str, i8)], code: i8) -> String {
        table.iter().find(|(_, known)| *known == code).map_or_else(
            || format!("UNKNOWN({code})"),
            |(name, _)| (*name).to_owned(),
        )
    }

    /// The code of `name` in `table`, compared without case, `_` or `-`
    /// (`describe-configs`, `DESCRIBE_CONFIGS` and `DescribeConfigs` are the same).
    pub fn code(table: &[(&'static str, i8)], name: &str) -> Option<i8> {
        let fold = |text: &str| -> String {
            text.chars()
                .filter(|c| *c != '_' && *c != '-')
                .flat_map(char::to_lowercase)
                .collect()
        };
        let wanted = fold(name);
        table
            .iter()
            .find(|(known, _)| fold(known) == wanted)
            .map(|(_, code)| *code)
    }
}

/// `Hi(password, salt, iterations)` for `mechanism` (RFC 5802), what the client sends.
pub fn salted_password(
    mechanism: &str,
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> Result<Vec<u8>, AdminError> {
    let (algorithm, bytes) = match mechanism {
        "SCRAM-SHA-256" => (ring::pbkdf2::PBKDF2_HMAC_SHA256, 32),
        "SCRAM-SHA-512" => (ring::pbkdf2::PBKDF2_HMAC_SHA512, 64),
        other => {
            return Err(AdminError::InvalidArgument(format!(
                "unknown mechanism {other:?}: use SCRAM-SHA-256 or SCRAM-SHA-512"
            )));
        }
    };
    let rounds = NonZeroU32::new(iterations)
        .ok_or_else(|| AdminError::InvalidArgument("iterations must be at least 1".to_owned()))?;
    let mut out = vec![0u8; bytes];
    ring::pbkdf2::derive(algorithm, rounds, salt, password.as_bytes(), &mut out);
    Ok(out)
}

fn user_refused(name: &str, code: ErrorCode, message: String) -> AdminError {
    AdminError::Security {
        subject: format!("user {name}"),
        code,
        message,
    }
}

impl Admin {
    /// Creates user `name` (or replaces its credential) for `mechanism` (`SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`) with `iterations` (4096..=16384). The password is salted and hashed
    /// here; it does not leave this process.
    pub async fn create_user(
        &self,
        name: &str,
        mechanism: &str,
        password: &str,
        iterations: u32,
    ) -> Result<(), AdminError> {
        let mut salt = [0u8; USER_SALT_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).map_err(
            |_| AdminError::InvalidArgument("the system random generator failed".to_owned()),
        )?;
        let salted = salted_password(mechanism, password, &salt, iterations)?;
        let request = wire::AlterUserScramCredentialsRequest {
            deletions: Vec::new(),
            upsertions: vec![wire::ScramUpsertion {
                name: name.to_owned(),
                mechanism: mechanism.to_owned(),
                iterations,
                salt: Bytes::copy_from_slice(&salt),
                salted_password: Bytes::from(salted),
            }],
        };
        self.alter_users(name, request).await
    }

    /// Removes user `name`'s credential for `mechanism`, or every credential it has when
    /// `None`. Fails with `ResourceNotFound` when there is nothing to remove.
    pub async fn delete_user(&self, name: &str, mechanism: Option<&str>) -> Result<(), AdminError> {
        let mechanisms: Vec<String> = match mechanism {
            Some(mechanism) => vec![mechanism.to_owned()],
            None => {
                let described = self.describe_users(&[name.to_owned()]).await?;
                let user = described.into_iter().next().ok_or_else(|| {
                    user_refused(name, ErrorCode::ResourceNotFound, "no such user".into())
                })?;
                user.credentials
                    .into_iter()
                    .map(|(mechanism, _)| mechanism)
                    .collect()
            }
        };
        // One change per user per request: one request per mechanism.
        for mechanism in mechanisms {
            let request = wire::AlterUserScramCredentialsRequest {
                deletions: vec![wire::ScramDeletion {
                    name: name.to_owned(),
                    mechanism,
                }],
                upsertions: Vec::new(),
            };
            self.alter_users(name, request).await?;
        }
        Ok(())
    }

    async fn alter_users(
        &self,
        name: &str,
        request: wire::AlterUserScramCredentialsRequest,
    ) -> Result<(), AdminError> {
        let request = Request::AlterUserScramCredentials(request);
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::AlterUserScramCredentials(response) => response,
            other => return Err(unexpected(ApiKey::AlterUserScramCredentials, &other).into()),
        };
        for result in response.results {
            if result.error != ErrorCode::None {
                return Err(user_refused(&result.name, result.error, result.message));
            }
        }
        let _ = name;
        Ok(())
    }

    /// Every user, sorted by name.
    pub async fn list_users(&self) -> Result<Vec<UserDescription>, AdminError> {
        self.describe_users(&[]).await
    }

    /// The named users (all for an empty list). A named user without credentials fails
    /// with `ResourceNotFound`.
    pub async fn describe_users(
        &self,
        names: &[String],
    ) -> Result<Vec<UserDescription>, AdminError> {
        let request =
            Request::DescribeUserScramCredentials(wire::DescribeUserScramCredentialsRequest {
                users: names.to_vec(),
            });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeUserScramCredentials(response) => response,
            other => return Err(unexpected(ApiKey::DescribeUserScramCredentials, &other).into()),
        };
        response
            .users
            .into_iter()
            .map(|user| {
                if user.error != ErrorCode::None {
                    return Err(user_refused(&user.name, user.error, user.message));
                }
                Ok(UserDescription {
                    name: user.name,
                    credentials: user
                        .credentials
                        .into_iter()
                        .map(|info| (info.mechanism, info.iterations))
                        .collect(),
                })
            })
            .collect()
    }

    /// Adds ACL bindings; the first refused binding fails the call (the others may have
    /// been added).
    pub async fn create_acls(&self, bindings: Vec<AclBinding>) -> Result<(), AdminError> {
        let request = Request::CreateAcls(wire::CreateAclsRequest { bindings });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::CreateAcls(response) => response,
            other => return Err(unexpected(ApiKey::CreateAcls, &other).into()),
        };
        for result in response.results {
            if result.error != ErrorCode::None {
                return Err(AdminError::Security {
                    subject: "ACL".to_owned(),
                    code: result.error,
                    message: result.message,
                });
            }
        }
        Ok(())
    }

    /// The bindings `filter` matches.
    pub async fn list_acls(&self, filter: AclFilter) -> Result<Vec<AclBinding>, AdminError> {
        let request = Request::DescribeAcls(wire::DescribeAclsRequest { filter });
        let response = match request_with_retry(&self.client, &request).await? {
            Response::DescribeAcls(response) => response,
            other => return Err(unexpected(ApiKey::DescribeAcls, &other).into()),
        };
        if response.error != ErrorCode::None {
            return Err(AdminError::Security {
                subject: "ACL filter".to_owned(),
                code: response.error,
                message: response.message,
            });
        }
        Ok(response.bindings)
    }

    /// Removes the bindings each filter matches; what was removed.
    pub async fn delete_acls(
        &self,
        filters: Vec<AclFilter>,
    ) -> Result<Vec<AclBinding>, AdminError> {
        let request = Request::DeleteAcls(wire::DeleteAclsRequest { filters });
        let response = match self
            .client
            .request_with_failover(RequestKind::Write, &request)
            .await?
        {
            Response::DeleteAcls(response) => response,
            other => return Err(unexpected(ApiKey::DeleteAcls, &other).into()),
        };
        let mut removed = Vec::new();
        for result in response.results {
            if result.error != ErrorCode::None {
                return Err(AdminError::Security {
                    subject: "ACL filter".to_owned(),
                    code: result.error,
                    message: result.message,
                });
            }
            removed.extend(result.bindings);
        }
        Ok(removed)
    }
}
