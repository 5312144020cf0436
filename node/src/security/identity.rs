//! Who is on the other end of one connection, once the listener has authenticated it: the
//! one value every authorization check and audit line reads.
//!
//! The QUIC listener and the Kafka listener each make one per connection (from the client
//! certificate, a SASL exchange, or neither) and replace it on Kafka re-authentication
//! (KIP-368); handlers receive it with each request. The admin HTTP listener makes one per
//! request when it authenticates (a client certificate or HTTP Basic, `admin/auth.rs`).

use std::net::IpAddr;

use crate::security::principal::KafkaPrincipal;
use crate::security::scram::ScramMechanism;

/// How a connection proved its principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// It did not: `User:ANONYMOUS` (no client certificate, no SASL).
    Anonymous,
    /// A client certificate verified against `[security] client_ca`, its subject mapped by
    /// `[security] principal_mapping_rules`.
    Certificate,
    /// SASL PLAIN, checked against the stored SCRAM credentials.
    SaslPlain,
    /// A SCRAM exchange (RFC 5802) with the given hash.
    SaslScram(ScramMechanism),
    /// HTTP Basic on the admin listener (over TLS), the password checked against the
    /// stored SCRAM credentials as for PLAIN.
    HttpBasic,
}

/// An authenticated (or anonymous) client connection's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The principal ACLs name (`User:alice`).
    pub principal: KafkaPrincipal,
    /// The client's address, as ACL host patterns match it (never the advertised one).
    pub host: IpAddr,
    /// How the principal was proven.
    pub method: AuthMethod,
}

impl ClientIdentity {
    /// A connection from `host` that did not authenticate.
    pub fn anonymous(host: IpAddr) -> Self {
        Self {
            principal: KafkaPrincipal::ANONYMOUS,
            host,
            method: AuthMethod::Anonymous,
        }
    }

    /// Whether the connection proved a principal (by certificate or SASL).
    pub fn is_authenticated(&self) -> bool {
        self.method != AuthMethod::Anonymous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anonymous_identity_is_user_anonymous_and_not_authenticated() {
        let identity = ClientIdentity::anonymous(IpAddr::from([127, 0, 0, 1]));
        assert_eq!(identity.principal.to_string(), "User:ANONYMOUS");
        assert!(!identity.is_authenticated());
        let proven = ClientIdentity {
            method: AuthMethod::Certificate,
            ..identity
        };
        assert!(proven.is_authenticated());
    }
}
