//! Node identity: the cluster CA, node certificates, and checking that a certificate names a
//! node of a cluster.
//!
//! A node's certificate is signed by the cluster CA and names the node with a DNS
//! subjectAltName `node-<id>.<cluster_id>.ledge.invalid` ([`node_dns_name`]); it also names
//! `localhost`, `127.0.0.1` and `::1` so that clients reach a local node with the same CA.
//! The DNS form (rather than a URI such as `ledge://<cluster_id>/node/<id>`) lets rustls's
//! own verifier do the identity check: webpki matches DNS and IP names and ignores URI
//! names, so a URI would need a hand-written X.509 parser or a new crate. `.invalid` is
//! reserved by RFC 2606, so such a name can never resolve or collide with a real host.
//!
//! Checks (all by rustls/webpki, never by parsing certificates here): the chain leads to the
//! cluster CA, the certificate is valid now and for both server and client use, and it names
//! the expected node of the expected cluster. The node id of a connecting peer is found by
//! asking, for each node of the cluster, whether the certificate names it (clusters are small;
//! done once per connection).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use super::NodeId;

/// The suffix of every node's DNS name (RFC 2606 reserves `.invalid`).
const NAME_SUFFIX: &str = "ledge.invalid";

/// The DNS name a node's certificate carries: `node-<id>.<cluster_id>.ledge.invalid`.
pub fn node_dns_name(cluster_id: &str, node_id: NodeId) -> String {
    format!("node-{node_id}.{cluster_id}.{NAME_SUFFIX}")
}

/// The cluster's TLS material as a node uses it.
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// The cluster CA certificate (the trust anchor for peers).
    pub ca: CertificateDer<'static>,
    /// This node's certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// This node's private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The cluster the certificates belong to.
    pub cluster_id: String,
}

/// Why a certificate or key could not be used, or does not name the expected node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("{key} {path}: {cause}")]
    Read {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{key} {path}: {message}")]
    Pem {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificate does not lead to the cluster CA, has expired, or is not for this use.
    #[error("certificate refused: {0}")]
    Untrusted(String),
    /// The certificate is trusted but names another node or cluster.
    #[error("{0}")]
    WrongIdentity(String),
    /// The key does not belong to the certificate.
    #[error("cluster.key_file does not belong to cluster.cert_file: {0}")]
    KeyMismatch(String),
}

impl ClusterTls {
    /// Reads `ca_file`, `cert_file` and `key_file` (PEM) and checks that the certificate
    /// leads to the CA, holds at `now`, names node `node_id` of `cluster_id`, and that the
    /// key belongs to it.
    pub fn load(
        ca_file: &Path,
        cert_file: &Path,
        key_file: &Path,
        cluster_id: &str,
        node_id: NodeId,
        now: UnixTime,
    ) -> Result<Self, IdentityError> {
        let ca = read_chain("cluster.ca_file", ca_file)?
            .into_iter()
            .next()
            .expect("read_chain never returns an empty chain");
        let chain = read_chain("cluster.cert_file", cert_file)?;
        let key = read_key("cluster.key_file", key_file)?;
        let tls = Self {
            ca,
            chain,
            key: Arc::new(key),
            cluster_id: cluster_id.to_string(),
        };
        let verifier = tls.verifier()?;
        match verifier.identify(&tls.chain, std::iter::once(node_id), now) {
            Ok(_) => {}
            Err(IdentityError::WrongIdentity(presented)) => {
                return Err(IdentityError::WrongIdentity(format!(
                    "cluster.cert_file {} does not name node {node_id} of cluster {cluster_id} (cluster.node_id, cluster.cluster_id): {presented}",
                    cert_file.display()
                )));
            }
            Err(error) => {
                return Err(IdentityError::Untrusted(format!(
                    "cluster.cert_file {} against cluster.ca_file {}: {error}",
                    cert_file.display(),
                    ca_file.display()
                )));
            }
        }
        // rustls compares the key's public half with the certificate's.
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| IdentityError::KeyMismatch(error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(tls.chain.clone(), tls.key.clone_key())
            .map_err(|error| IdentityError::KeyMismatch(error.to_string()))?;
        Ok(tls)
    }

    /// The verifier of peers' certificates for this cluster.
    pub fn verifier(&self) -> Result<PeerVerifier, IdentityError> {
        PeerVerifier::new(self.ca.clone(), &self.cluster_id)
    }
}

/// Checks peers' certificates against the cluster CA and the cluster's node names.
#[derive(Clone, Debug)]
pub struct PeerVerifier {
    roots: Arc<rustls::RootCertStore>,
    server: Arc<rustls::client::WebPkiServerVerifier>,
    cluster_id: String,
}

impl PeerVerifier {
    /// A verifier trusting `ca` for the cluster `cluster_id`.
    pub fn new(ca: CertificateDer<'static>, cluster_id: &str) -> Result<Self, IdentityError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca)
            .map_err(|error| IdentityError::Untrusted(format!("the cluster CA: {error}")))?;
        let roots = Arc::new(roots);
        let server =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|error| IdentityError::Untrusted(format!("the cluster CA: {error}")))?;
        Ok(Self {
            roots,
            server,
            cluster_id: cluster_id.to_string(),
        })
    }

    /// The cluster this verifier accepts nodes of.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The cluster CA as a root store (for rustls configs).
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        Arc::clone(&self.roots)
    }

    /// Which of `candidates` the certificate `chain` (leaf first) names, after checking it
    /// leads to the cluster CA and holds at `now`. A certificate naming none of them, or more
    /// than one, is refused: the id is the certificate's, never what a peer says.
    pub fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        candidates: impl IntoIterator<Item = NodeId>,
        now: UnixTime,
    ) -> Result<NodeId, IdentityError> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(IdentityError::Untrusted("no certificate".into()));
        };
        let mut found = None;
        let mut presented = None;
        for candidate in candidates {
            let name = ServerName::try_from(node_dns_name(&self.cluster_id, candidate))
                .map_err(|error| IdentityError::Untrusted(format!("cluster id: {error}")))?;
            use rustls::client::danger::ServerCertVerifier;
            match self
                .server
                .verify_server_cert(leaf, intermediates, &name, &[], now)
            {
                Ok(_) => match found {
                    None => found = Some(candidate),
                    Some(first) => {
                        return Err(IdentityError::WrongIdentity(format!(
                            "the certificate names both node {first} and node {candidate}"
                        )));
                    }
                },
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext {
                        presented: names, ..
                    },
                )) => presented = Some(names),
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName,
                )) => presented = Some(Vec::new()),
                Err(error) => return Err(IdentityError::Untrusted(error.to_string())),
            }
        }
        match (found, presented) {
            (Some(id), _) => Ok(id),
            (None, names) => Err(IdentityError::WrongIdentity(format!(
                "it names no node of cluster {} (its names: {})",
                self.cluster_id,
                names.map_or_else(|| "none checked".to_string(), |names| names.join(", "))
            ))),
        }
    }
}

/// The crypto provider every cluster TLS config uses (ring, as the client listener does).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain; refuses an empty file or one without a certificate.
pub fn read_chain(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let bytes = std::fs::read(path).map_err(|cause| IdentityError::Read {
        key,
        path: path.to_path_buf(),
        cause,
    })?;
    let pem = |message: String| IdentityError::Pem {
        key,
        path: path.to_path_buf(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| pem(error.to_string()))?;
    if chain.is_empty() {
        return Err(pem("no CERTIFICATE block found".into()));
    }
    Ok(chain)
}

/// Reads a PEM private key.
pub fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let bytes = std::fs::read(path).map_err(|cause| IdentityError::Read {
        key,
        path: path.to_path_buf(),
        cause,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| IdentityError::Pem {
        key,
        path: path.to_path_buf(),
        message: format!("no usable private key: {error}"),
    })
}

/// A freshly generated cluster CA (certificate and key, PEM).
pub struct GeneratedCa {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PEM.
    pub key_pem: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

/// A node certificate and key, PEM.
pub struct GeneratedNode {
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// Why certificates could not be generated.
#[derive(Debug, thiserror::Error)]
#[error("generating the cluster certificates failed: {0}")]
pub struct GenerateError(String);

impl From<rcgen::Error> for GenerateError {
    fn from(error: rcgen::Error) -> Self {
        Self(error.to_string())
    }
}

impl GeneratedCa {
    /// A new CA for `cluster_id`.
    pub fn generate(cluster_id: &str) -> Result<Self, GenerateError> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Ledge cluster {cluster_id} CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            params,
            key,
        })
    }

    /// A certificate for node `node_id` of `cluster_id`, signed by this CA, usable as a
    /// server (to clients and dialing peers) and as a client (when dialing peers).
    pub fn node(&self, cluster_id: &str, node_id: NodeId) -> Result<GeneratedNode, GenerateError> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
        let mut params = CertificateParams::new(vec![
            node_dns_name(cluster_id, node_id),
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Ledge node {node_id} of cluster {cluster_id}"),
        );
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(GeneratedNode {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests;
