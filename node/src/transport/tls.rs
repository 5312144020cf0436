//! TLS material for the QUIC listener: the operator's certificate, or a dev CA generated
//! on first start.
//!
//! Without `--tls-cert`/`--tls-key`, the node keeps a development CA and a server
//! certificate signed by it under `<data-dir>/tls/` (created once, reused after), so a
//! client can verify the node with `--ca <data-dir>/tls/ca.pem` instead of turning
//! verification off. The server certificate names `localhost`, `127.0.0.1` and `::1`.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Certificate chain and key the listener presents.
#[derive(Debug)]
pub struct ServerTls {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Where the CA that clients should trust lives, when the node generated it.
    pub dev_ca: Option<PathBuf>,
}

/// Why TLS material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Generating the dev certificates failed.
    #[error("generating the dev certificates failed: {0}")]
    Generate(String),
    /// Only one of certificate and key was given.
    #[error("--tls-cert and --tls-key must be given together")]
    Incomplete,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads `cert`/`key` if given, else the dev CA material under `<data_dir>/tls/`,
/// generating it on first start.
pub fn load_or_generate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ServerTls, TlsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => load(cert, key, None),
        (None, None) => {
            let directory = data_dir.join("tls");
            let (ca, cert, key) = (
                directory.join("ca.pem"),
                directory.join("server.pem"),
                directory.join("server.key"),
            );
            if !(ca.exists() && cert.exists() && key.exists()) {
                generate(&directory)?;
            }
            load(&cert, &key, Some(ca))
        }
        _ => Err(TlsError::Incomplete),
    }
}

fn load(cert: &Path, key: &Path, dev_ca: Option<PathBuf>) -> Result<ServerTls, TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(io_error(cert))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| TlsError::Pem {
            path: cert.to_path_buf(),
            message: error.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let key_bytes = std::fs::read(key).map_err(io_error(key))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|error| TlsError::Pem {
        path: key.to_path_buf(),
        message: format!("no usable private key: {error}"),
    })?;
    Ok(ServerTls { chain, key, dev_ca })
}

fn generate(directory: &Path) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let failed = |error: rcgen::Error| TlsError::Generate(error.to_string());
    std::fs::create_dir_all(directory).map_err(io_error(directory))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Ledge development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(failed)?;
    let mut server_params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(failed)?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "ledge-node");
    let server_key = KeyPair::generate().map_err(failed)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(failed)?;
    // Keys first and private; the CA file last, so its presence means the set is complete.
    write_private(&directory.join("ca.key"), &ca_key.serialize_pem())?;
    write_private(&directory.join("server.key"), &server_key.serialize_pem())?;
    let server_pem = directory.join("server.pem");
    std::fs::write(&server_pem, server_cert.pem()).map_err(io_error(&server_pem))?;
    let ca_pem = directory.join("ca.pem");
    std::fs::write(&ca_pem, ca_cert.pem()).map_err(io_error(&ca_pem))?;
    tracing::info!(ca = %ca_pem.display(), "generated a development CA and server certificate");
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(contents.as_bytes()).map_err(io_error(path))
}
