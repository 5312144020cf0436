//! Client certificates (mTLS) for QUIC and the Kafka TLS listener: the rustls verifier built
//! from `[security] client_auth`, `client_ca` and `client_crls`, and the step from a
//! verified certificate to the connection's [`ClientIdentity`] through
//! `principal_mapping_rules`.
//!
//! rustls checks the chain, validity dates, the clientAuth key purpose and the CRLs during
//! the handshake; a certificate that fails any of them never reaches [`ClientAuthenticator::
//! identify`], which only reads the subject of a certificate already verified. A subject no
//! rule maps is an error the listener turns into a closed connection.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use rustls::server::danger::ClientCertVerifier;

use crate::config::security::AnonymousAccess;
use crate::config::{ClientAuth, SecurityConfig};
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::{
    MappingError, PrincipalMappingRules, SubjectDnError, subject_dn_rfc2253,
};

/// Why client authentication could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// `client_auth` asks for certificates but there is no CA to check them against.
    #[error(
        "[security] client_auth = \"{mode}\" needs security.client_ca: the node presents an operator certificate (--tls-cert/--tls-key), so it has no CA of its own to check client certificates against"
    )]
    NoClientCa {
        /// The `client_auth` value.
        mode: &'static str,
    },
    /// A CA or CRL file could not be read.
    #[error("security.{key} {}: {cause}", path.display())]
    Read {
        /// `client_ca` or `client_crls`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// A CA or CRL file holds nothing usable.
    #[error("security.{key} {}: {message}", path.display())]
    Pem {
        /// `client_ca` or `client_crls`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the verifier (a CRL it cannot parse, no usable root).
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// Why a verified connection has no identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// The certificate's subject could not be read (rustls verified it, so this is rare).
    #[error("client certificate subject unreadable: {0}")]
    Subject(#[from] SubjectDnError),
    /// No principal mapping rule matched the subject.
    #[error("client certificate subject {distinguished_name:?} maps to no principal: {cause}")]
    Mapping {
        /// The subject in RFC 2253 form (not a secret: it is in the certificate).
        distinguished_name: String,
        /// Why.
        cause: MappingError,
    },
}

/// The node's client-authentication settings, loaded once at start and shared by QUIC and
/// the Kafka TLS listener.
#[derive(Debug)]
pub struct ClientAuthenticator {
    mode: ClientAuth,
    /// The CA(s) client certificates must lead to; empty when `mode` is `None`.
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    rules: PrincipalMappingRules,
    anonymous: AnonymousAccess,
    /// `sasl_mechanisms` is not empty: an anonymous Kafka connection may still
    /// authenticate with SASL.
    sasl_enabled: bool,
}

impl ClientAuthenticator {
    /// Loads `client_ca` (`security.client_ca`, else `node_ca`: the node's own CA, `None`
    /// with operator certificates) and `client_crls` when `client_auth` asks for
    /// certificates. `anonymous` is the start-up decision
    /// ([`SecurityConfig::anonymous_access`]).
    pub fn load(
        security: &SecurityConfig,
        node_ca: Option<&Path>,
        anonymous: AnonymousAccess,
    ) -> Result<Self, ClientAuthError> {
        let mut authenticator = Self {
            mode: security.client_auth,
            roots: RootCertStore::empty(),
            crls: Vec::new(),
            rules: security.principal_mapping_rules.clone(),
            anonymous,
            sasl_enabled: !security.sasl_mechanisms.is_empty(),
        };
        if security.client_auth == ClientAuth::None {
            return Ok(authenticator);
        }
        let ca = security
            .client_ca
            .as_deref()
            .or(node_ca)
            .ok_or(ClientAuthError::NoClientCa {
                mode: security.client_auth.as_str(),
            })?;
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|cause| ClientAuthError::Read {
                key,
                path: path.to_path_buf(),
                cause,
            })
        };
        let pem_error = |key: &'static str, path: &Path, message: String| ClientAuthError::Pem {
            key,
            path: path.to_path_buf(),
            message,
        };
        let bytes = read("client_ca", ca)?;
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|error| pem_error("client_ca", ca, error.to_string()))?;
        if certificates.is_empty() {
            return Err(pem_error(
                "client_ca",
                ca,
                "no CERTIFICATE block found".into(),
            ));
        }
        for certificate in certificates {
            authenticator
                .roots
                .add(certificate)
                .map_err(|error| pem_error("client_ca", ca, error.to_string()))?;
        }
        for path in &security.client_crls {
            let bytes = read("client_crls", path)?;
            let crls: Vec<CertificateRevocationListDer<'static>> =
                CertificateRevocationListDer::pem_slice_iter(&bytes)
                    .collect::<Result<_, _>>()
                    .map_err(|error| pem_error("client_crls", path, error.to_string()))?;
            if crls.is_empty() {
                return Err(pem_error(
                    "client_crls",
                    path,
                    "no X509 CRL block found".into(),
                ));
            }
            authenticator.crls.extend(crls);
        }
        // A CRL rustls cannot parse is refused now rather than at the first handshake.
        authenticator.verifier(None)?;
        Ok(authenticator)
    }

    /// Whether client certificates are asked for at all.
    pub fn mode(&self) -> ClientAuth {
        self.mode
    }

    /// Whether a connection that proved nothing may send requests.
    pub fn anonymous_allowed(&self) -> bool {
        self.anonymous.allowed()
    }

    /// Whether an anonymous Kafka connection may go on: anonymous clients are allowed, or
    /// it may still authenticate with SASL (the Kafka connection then refuses every request
    /// but the SASL ones until it does).
    pub fn anonymous_may_authenticate(&self) -> bool {
        self.anonymous.allowed() || self.sasl_enabled
    }

    /// The rustls verifier for a listener; `peer_roots` (the cluster CA, on the QUIC
    /// endpoint that also serves peers) are trusted beside `client_ca`. `None`: ask for no
    /// certificate (`client_auth = "none"` outside a cluster).
    ///
    /// With CRLs, the end entity's revocation status is checked against the CRLs of its
    /// issuer; a certificate whose issuer has no CRL in `client_crls` is not refused for
    /// that (a cluster's peer certificates, a second client CA without a list).
    pub fn verifier(
        &self,
        peer_roots: Option<&RootCertStore>,
    ) -> Result<Option<Arc<dyn ClientCertVerifier>>, ClientAuthError> {
        let mut roots = self.roots.clone();
        if let Some(peer_roots) = peer_roots {
            roots.roots.extend(peer_roots.roots.iter().cloned());
        }
        if roots.is_empty() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut builder =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if !self.crls.is_empty() {
            builder = builder
                .with_crls(self.crls.iter().cloned())
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        // A cluster endpoint lets clients without a certificate through the handshake
        // unless certificates are required: `ledge/1` never needed one.
        if self.mode != ClientAuth::Required {
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder
            .build()
            .map_err(|error| ClientAuthError::Verifier(error.to_string()))?;
        Ok(Some(verifier))
    }

    /// The identity of a connection from `host` whose handshake verified `certificates`
    /// (leaf first; `None` or empty: no certificate presented). With `client_auth = "none"`
    /// a certificate (a peer's, on a cluster endpoint) is not mapped: the connection is
    /// anonymous.
    pub fn identify(
        &self,
        certificates: Option<&[CertificateDer<'_>]>,
        host: IpAddr,
    ) -> Result<ClientIdentity, IdentifyError> {
        let leaf = match certificates.and_then(<[_]>::first) {
            Some(leaf) if self.mode != ClientAuth::None => leaf,
            _ => return Ok(ClientIdentity::anonymous(host)),
        };
        let distinguished_name = subject_dn_rfc2253(leaf)?;
        let principal =
            self.rules
                .principal(&distinguished_name)
                .map_err(|cause| IdentifyError::Mapping {
                    distinguished_name,
                    cause,
                })?;
        Ok(ClientIdentity {
            principal,
            host,
            method: AuthMethod::Certificate,
        })
    }
}

#[cfg(test)]
mod tests;
