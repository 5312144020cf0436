//! Who may read what on the admin listener when `[admin] authentication = "required"`
//! (docs/OPERATIONS.md "Metrics and health", docs/SECURITY.md):
//!
//! | path                                        | needs                                  |
//! |---------------------------------------------|----------------------------------------|
//! | `/livez`, `/readyz`                         | nothing: probes from the orchestrator |
//! | `/`, `/metrics`, `/v1/status`, `/v1/console`, anything else | an authenticated principal, and with authorization on, `Describe` on `Cluster:kafka-cluster` |
//!
//! A caller proves its principal with the client certificate its TLS handshake verified
//! (mapped by `[security] principal_mapping_rules`, as on QUIC and the Kafka TLS listener),
//! or with HTTP Basic credentials of a SCRAM user: the password is checked as SASL PLAIN
//! checks it (PBKDF2 with the stored salt and iterations, `StoredKey` compared in constant
//! time; a decoy credential for an unknown name, so both cost the same). A certificate
//! wins over a Basic header. No credentials, or wrong ones, is 401 with
//! `WWW-Authenticate: Basic`; wrong ones are an `authentication_failure` audit line. A
//! principal the ACLs refuse is 403 naming principal and operation, and an
//! `authorization_denied` audit line (`security/access.rs`). The password is never logged.
//!
//! Pure but for the PBKDF2 (no sockets, no clock): the server runs it on the blocking pool.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;

use super::routes::Answer;
use crate::security::access::Access;
use crate::security::acl::{AclOperation, CLUSTER_NAME, ResourceType};
use crate::security::audit::{AuditEvent, AuditListener, AuditLog};
use crate::security::credentials::CredentialLookup;
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::scram::{ScramMechanism, verify_plain_password};

/// The `WWW-Authenticate` value of a 401 (RFC 7617).
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"ledge-admin\", charset=\"UTF-8\"";

/// The ACL check a path needs: `None` for the probes, served to anyone.
pub fn required_access(path: &str) -> Option<(AclOperation, ResourceType, &'static str)> {
    match path {
        "/livez" | "/readyz" => None,
        _ => Some((AclOperation::Describe, ResourceType::Cluster, CLUSTER_NAME)),
    }
}

/// What the TLS handshake proved about the caller.
#[derive(Clone, Debug)]
pub enum CertificateIdentity {
    /// No certificate (or plain HTTP).
    None,
    /// A verified certificate mapped to this identity.
    Verified(ClientIdentity),
    /// A verified certificate whose subject maps to no principal: why.
    Unmapped(String),
}

/// Why HTTP Basic credentials were refused (never holds the password).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    /// The `Authorization` header is not `Basic <base64 of user:password>`.
    #[error("the Authorization header is not HTTP Basic credentials (Basic base64(user:password))")]
    Malformed,
    /// The user does not exist or the password is wrong (one error for both, as SASL says).
    #[error("invalid username or password")]
    InvalidCredentials,
}

/// Credentials parsed from an `Authorization: Basic ...` value.
struct BasicCredentials {
    username: String,
    password: String,
}

fn parse_basic(header: &[u8]) -> Result<BasicCredentials, BasicError> {
    let header = std::str::from_utf8(header).map_err(|_| BasicError::Malformed)?;
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(BasicError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BasicError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| BasicError::Malformed)?;
    let decoded = String::from_utf8(decoded).map_err(|_| BasicError::Malformed)?;
    let (username, password) = decoded.split_once(':').ok_or(BasicError::Malformed)?;
    if username.is_empty() {
        return Err(BasicError::Malformed);
    }
    Ok(BasicCredentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Checks `header` (an `Authorization` value) against `credentials`: the SCRAM-SHA-256
/// credential, or the SCRAM-SHA-512 one if the user has only that, as PLAIN does; one
/// PBKDF2 either way, a decoy's for an unknown user. `Err` carries the name claimed, if any.
pub fn authenticate_basic(
    header: &[u8],
    host: IpAddr,
    credentials: &dyn CredentialLookup,
) -> Result<ClientIdentity, (Option<String>, BasicError)> {
    let basic = parse_basic(header).map_err(|error| (None, error))?;
    let stored = credentials
        .scram_credential(&basic.username, ScramMechanism::Sha256)
        .or_else(|| credentials.scram_credential(&basic.username, ScramMechanism::Sha512));
    let (credential, known) = match stored {
        Some(credential) => (credential, true),
        None => (
            credentials
                .decoys()
                .credential_for(ScramMechanism::Sha256, &basic.username),
            false,
        ),
    };
    if verify_plain_password(&credential, &basic.password) && known {
        Ok(ClientIdentity {
            principal: KafkaPrincipal::user(basic.username),
            host,
            method: AuthMethod::HttpBasic,
        })
    } else {
        Err((Some(basic.username), BasicError::InvalidCredentials))
    }
}

/// What the guard needs of the node: credentials, the ACLs (as an [`Access`] per caller)
/// and the audit log.
pub struct AdminGuard {
    credentials: Arc<dyn CredentialLookup>,
    access: Arc<dyn Fn(&ClientIdentity) -> Access + Send + Sync>,
    audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for AdminGuard {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AdminGuard").finish_non_exhaustive()
    }
}

impl AdminGuard {
    /// A guard checking passwords against `credentials`, asking `access` what a caller may
    /// do (the broker's `access`: unrestricted while authorization is off), recording
    /// authentication failures in `audit`.
    pub fn new(
        credentials: Arc<dyn CredentialLookup>,
        access: Arc<dyn Fn(&ClientIdentity) -> Access + Send + Sync>,
        audit: Option<Arc<AuditLog>>,
    ) -> Self {
        Self {
            credentials,
            access,
            audit,
        }
    }

    /// Whether a request for `path` from `host` may be answered: `Ok` (with the caller, if
    /// the path needed one), or the 401/403 answer to send instead.
    pub fn admit(
        &self,
        path: &str,
        authorization: Option<&[u8]>,
        certificate: &CertificateIdentity,
        host: IpAddr,
    ) -> Result<Option<ClientIdentity>, Answer> {
        let Some((operation, resource_type, resource_name)) = required_access(path) else {
            return Ok(None);
        };
        let identity = match (certificate, authorization) {
            (CertificateIdentity::Verified(identity), _) => identity.clone(),
            (_, Some(header)) => match authenticate_basic(header, host, &*self.credentials) {
                Ok(identity) => identity,
                Err((claimed, error)) => {
                    crate::security::audit::record(
                        self.audit.as_deref(),
                        &AuditEvent::authentication_failure(
                            AuditListener::Admin,
                            host,
                            claimed.as_deref(),
                            "http-basic",
                            &error.to_string(),
                        ),
                    );
                    return Err(unauthorized(&format!("{error}\n")));
                }
            },
            (CertificateIdentity::Unmapped(reason), None) => {
                crate::security::audit::record(
                    self.audit.as_deref(),
                    &AuditEvent::authentication_failure(
                        AuditListener::Admin,
                        host,
                        None,
                        "certificate",
                        reason,
                    ),
                );
                return Err(unauthorized(
                    "the client certificate maps to no principal; present another, or HTTP Basic credentials\n",
                ));
            }
            (CertificateIdentity::None, None) => {
                return Err(unauthorized(
                    "authentication required: present a client certificate, or HTTP Basic credentials of a SCRAM user\n",
                ));
            }
        };
        (self.access)(&identity)
            .check(operation, resource_type, resource_name)
            .map_err(|denied| Answer {
                status: 403,
                content_type: "text/plain; charset=utf-8",
                body: format!("{denied}\n"),
            })?;
        Ok(Some(identity))
    }
}

fn unauthorized(body: &str) -> Answer {
    Answer {
        status: 401,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::{AclBinding, AclPermission, Authorizer, AuthorizerConfig};
    use crate::security::credentials::fixture::MapCredentials;

    fn basic(user: &str, password: &str) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .into_bytes()
    }

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));

    /// alice may Describe the cluster; bob exists but may not; authorization on.
    fn guard() -> (AdminGuard, crate::security::audit::AuditQueue) {
        let credentials = MapCredentials::new()
            .with_user("alice", "alice-secret", ScramMechanism::Sha256)
            .with_user("bob", "bob-secret", ScramMechanism::Sha512);
        let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
        authorizer
            .add(
                AclBinding::new(
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                    crate::security::acl::PatternType::Literal,
                    "User:alice",
                    "*",
                    AclOperation::Describe,
                    AclPermission::Allow,
                )
                .unwrap(),
            )
            .unwrap();
        let authorizer = Arc::new(authorizer);
        let (audit, queue) = AuditLog::with_queue(
            &crate::security::audit::AuditSettings::default(),
            Arc::new(crate::clock::ManualClock::new(1_000_000)),
        );
        let audit = Arc::new(audit);
        let access_audit = Arc::clone(&audit);
        let guard = AdminGuard::new(
            Arc::new(credentials),
            Arc::new(move |identity: &ClientIdentity| {
                Access::enforced(identity.clone(), Arc::clone(&authorizer))
                    .with_audit(Some(Arc::clone(&access_audit)))
            }),
            Some(audit),
        );
        (guard, queue)
    }

    #[test]
    fn probes_need_nothing_and_the_rest_a_principal() {
        let (guard, _) = guard();
        for probe in ["/livez", "/readyz"] {
            assert_eq!(
                guard.admit(probe, None, &CertificateIdentity::None, HOST),
                Ok(None)
            );
        }
        for path in ["/metrics", "/v1/status", "/v1/console", "/", "/nope"] {
            let answer = guard
                .admit(path, None, &CertificateIdentity::None, HOST)
                .unwrap_err();
            assert_eq!(answer.status, 401, "{path}");
        }
    }

    #[test]
    fn basic_credentials_are_checked_against_the_scram_credentials() {
        let (guard, audit) = guard();
        let admitted = guard
            .admit(
                "/metrics",
                Some(&basic("alice", "alice-secret")),
                &CertificateIdentity::None,
                HOST,
            )
            .unwrap()
            .unwrap();
        assert_eq!(admitted.principal.to_string(), "User:alice");
        assert_eq!(admitted.method, AuthMethod::HttpBasic);
        for (header, user) in [
            (basic("alice", "wrong"), Some("alice")),
            (basic("carol", "alice-secret"), Some("carol")),
            (b"Bearer abc".to_vec(), None),
            (b"Basic !!!".to_vec(), None),
        ] {
            let answer = guard
                .admit("/metrics", Some(&header), &CertificateIdentity::None, HOST)
                .unwrap_err();
            assert_eq!(answer.status, 401);
            let lines = audit.drain();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("authentication_failure"), "{}", lines[0]);
            assert!(lines[0].contains("\"admin\""), "{}", lines[0]);
            // The password is never in the audit line.
            assert!(!lines[0].contains("alice-secret") && !lines[0].contains("wrong"));
            if let Some(user) = user {
                assert!(lines[0].contains(&format!("User:{user}")), "{}", lines[0]);
            }
        }
    }

    #[test]
    fn a_principal_the_acls_refuse_is_403_and_audited() {
        let (guard, audit) = guard();
        // bob authenticates (his SCRAM-SHA-512 credential) but may not Describe the cluster.
        let answer = guard
            .admit(
                "/v1/status",
                Some(&basic("bob", "bob-secret")),
                &CertificateIdentity::None,
                HOST,
            )
            .unwrap_err();
        assert_eq!(answer.status, 403);
        assert_eq!(
            answer.body,
            "User:bob may not Describe Cluster:kafka-cluster\n"
        );
        let lines = audit.drain();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("authorization_denied") && line.contains("User:bob")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_certificate_principal_wins_over_basic() {
        let (guard, _) = guard();
        let alice = ClientIdentity {
            principal: KafkaPrincipal::user("alice"),
            host: HOST,
            method: AuthMethod::Certificate,
        };
        let admitted = guard
            .admit(
                "/metrics",
                Some(&basic("bob", "bob-secret")),
                &CertificateIdentity::Verified(alice),
                HOST,
            )
            .unwrap()
            .unwrap();
        assert_eq!(admitted.method, AuthMethod::Certificate);
        let unmapped = guard
            .admit(
                "/metrics",
                None,
                &CertificateIdentity::Unmapped("no rule".into()),
                HOST,
            )
            .unwrap_err();
        assert_eq!(unmapped.status, 401);
    }
}
