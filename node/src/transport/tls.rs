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

use crate::storage::disk::durable::{create_dir_all_durable, write_file_durable};

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

impl ServerTls {
    /// A copy, for a second listener presenting the same certificate (the Kafka TLS
    /// listener beside QUIC).
    pub fn duplicate(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            dev_ca: self.dev_ca.clone(),
        }
    }
}

/// Why TLS material could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    // The OS error is part of the message and deliberately not a `source`: printed as a
    // chain (`{:#}`), it would otherwise appear twice.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// Writing the generated files failed.
    #[error(transparent)]
    Write(#[from] crate::storage::DiskError),
    /// The generated dev set in `<data-dir>/tls/` is incomplete or unreadable (for example
    /// emptied by a crash before its files were written durably).
    #[error(
        "the development TLS files in {} are damaged ({problems}); move that directory away (or delete it) and restart to generate a new development CA, then give clients the new {}/ca.pem",
        directory.display(),
        directory.display()
    )]
    DevSetDamaged {
        /// `<data-dir>/tls`.
        directory: PathBuf,
        /// Each damaged file and what is wrong with it, `; `-separated.
        problems: String,
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
    /// A private key file others than its owner can read.
    #[error(transparent)]
    KeyReadable(#[from] KeyFileError),
}

/// A private key file that the group or other users can read: the node refuses it, as ssh
/// does, rather than serve with a key others may have copied.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The mode lets the group or others read it.
    #[error(
        "{}: private key file is readable by its group or by others (mode {mode:04o}); restrict it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Readable {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Its metadata could not be read.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
}

/// Refuses a private key file that its group or other users can read (mode bits `0o044`).
pub fn check_private_key_file(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|cause| KeyFileError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o044 != 0 {
        return Err(KeyFileError::Readable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |cause| TlsError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// Where the listener's certificate comes from, decided from the flags alone (no disk).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// The operator's PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// The generated development CA under `<data-dir>/tls/`.
    DevCa,
}

impl TlsSource {
    /// Both files, or neither; one alone is refused.
    pub fn from_flags(cert: Option<&Path>, key: Option<&Path>) -> Result<Self, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Self::Files {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            (None, None) => Ok(Self::DevCa),
            _ => Err(TlsError::Incomplete),
        }
    }
}

/// Loads `cert`/`key` if given, else the dev CA material under `<data_dir>/tls/`,
/// generating it on first start.
pub fn load_or_generate(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<ServerTls, TlsError> {
    match TlsSource::from_flags(cert, key)? {
        TlsSource::Files { cert, key } => load(&cert, &key, None),
        TlsSource::DevCa => load_or_generate_dev(data_dir),
    }
}

/// The dev CA material under `<data_dir>/tls/`, generated on first start.
///
/// The set is generated when `ca.pem` is missing: it is written last, so without it no
/// client can have been given this CA and a new one is safe. Once `ca.pem` exists, the set
/// is never replaced silently (clients trust that CA): a missing, empty or unparsable file
/// is reported as [`TlsError::DevSetDamaged`], naming every damaged file and the way out.
pub fn load_or_generate_dev(data_dir: &Path) -> Result<ServerTls, TlsError> {
    let directory = data_dir.join("tls");
    let (ca, cert, key) = (
        directory.join("ca.pem"),
        directory.join("server.pem"),
        directory.join("server.key"),
    );
    if !ca.exists() {
        generate(&directory)?;
    }
    let mut problems = Vec::new();
    let mut note = |path: &Path, problem: String| {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        problems.push(format!("{name}: {problem}"));
    };
    let ca_problem = match std::fs::read(&ca) {
        Ok(bytes) => parse_chain(&bytes).err(),
        Err(error) => Some(error.to_string()),
    };
    if let Some(problem) = ca_problem {
        note(&ca, problem);
    }
    let chain = match std::fs::read(&cert) {
        Ok(bytes) => parse_chain(&bytes)
            .map_err(|problem| note(&cert, problem))
            .ok(),
        Err(error) => {
            note(&cert, error.to_string());
            None
        }
    };
    check_private_key_file(&key).or_else(|error| match error {
        // A missing or unreadable key is reported with the rest of the damaged set.
        KeyFileError::Io { .. } => Ok(()),
        readable => Err(readable),
    })?;
    let private_key = match std::fs::read(&key) {
        Ok(bytes) => parse_key(&bytes)
            .map_err(|problem| note(&key, problem))
            .ok(),
        Err(error) => {
            note(&key, error.to_string());
            None
        }
    };
    match (chain, private_key) {
        (Some(chain), Some(key)) if problems.is_empty() => Ok(ServerTls {
            chain,
            key,
            dev_ca: Some(ca),
        }),
        _ => Err(TlsError::DevSetDamaged {
            directory,
            problems: problems.join("; "),
        }),
    }
}

/// Parses a PEM certificate chain; the error says what is wrong (empty, no block, bad PEM).
fn parse_chain(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|error| error.to_string())?;
    if chain.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(chain)
}

/// Parses a PEM private key.
fn parse_key(bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    PrivateKeyDer::from_pem_slice(bytes).map_err(|error| format!("no usable private key: {error}"))
}

/// Loads an operator's certificate chain and key (PEM). `dev_ca` is recorded as is.
pub fn load(cert: &Path, key: &Path, dev_ca: Option<PathBuf>) -> Result<ServerTls, TlsError> {
    // A key others can read is refused whatever the files hold.
    check_private_key_file(key).map_err(|error| match error {
        KeyFileError::Io { path, cause } => TlsError::Io { path, cause },
        readable => TlsError::KeyReadable(readable),
    })?;
    let cert_bytes = std::fs::read(cert).map_err(io_error(cert))?;
    let chain = parse_chain(&cert_bytes).map_err(|message| TlsError::Pem {
        path: cert.to_path_buf(),
        message,
    })?;
    let key_bytes = std::fs::read(key).map_err(io_error(key))?;
    let key = parse_key(&key_bytes).map_err(|message| TlsError::Pem {
        path: key.to_path_buf(),
        message,
    })?;
    Ok(ServerTls { chain, key, dev_ca })
}

/// The development CA's subject common name.
pub const DEV_CA_COMMON_NAME: &str = "Ledge development CA";

/// The development CA's certificate parameters: what [`generate`] signs it with, and what an
/// issuer of client certificates must repeat (its subject and key identifier method), since
/// rcgen cannot read them back from `ca.pem`.
pub(crate) fn dev_ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, DEV_CA_COMMON_NAME);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(ca_params)
}

fn generate(directory: &Path) -> Result<(), TlsError> {
    use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
    let failed = |error: rcgen::Error| TlsError::Generate(error.to_string());
    create_dir_all_durable(directory)?;
    let ca_params = dev_ca_params().map_err(failed)?;
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
    // Each file is written durably (temporary name, fsync, rename, directory fsync): a
    // crash soon after first start used to leave 0-byte files (issue 11, data item 7).
    let ca_pem = directory.join("ca.pem");
    write_file_durable(
        &directory.join("ca.key"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file_durable(
        &directory.join("server.key"),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file_durable(
        &directory.join("server.pem"),
        server_cert.pem().as_bytes(),
        0o644,
    )?;
    write_file_durable(&ca_pem, ca_cert.pem().as_bytes(), 0o644)?;
    tracing::info!(ca = %ca_pem.display(), "generated a development CA and server certificate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dev_files_are_reported_by_name_with_the_way_out() {
        // Goal (issue 11, data item 7): 0-byte files left by a crash are reported as a
        // damaged set naming each file, never replaced silently (clients trust ca.pem) and
        // never reported as a bare PEM parse error.
        let data_dir = tempfile::tempdir().unwrap();
        let first = load_or_generate_dev(data_dir.path()).unwrap();
        assert!(first.dev_ca.is_some());
        let tls = data_dir.path().join("tls");
        let ca_before = std::fs::read(tls.join("ca.pem")).unwrap();
        std::fs::write(tls.join("server.pem"), b"").unwrap();
        std::fs::write(tls.join("server.key"), b"").unwrap();
        let error = load_or_generate_dev(data_dir.path()).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, TlsError::DevSetDamaged { .. }), "{text}");
        assert!(text.contains("server.pem: empty file"), "{text}");
        assert!(text.contains("server.key: empty file"), "{text}");
        assert!(text.contains("move that directory away"), "{text}");
        assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca_before);
        // An empty CA is damage too (it is the file clients were given).
        std::fs::write(tls.join("ca.pem"), b"").unwrap();
        let text = load_or_generate_dev(data_dir.path())
            .unwrap_err()
            .to_string();
        assert!(text.contains("ca.pem: empty file"), "{text}");
        // Without ca.pem (written last) the set was never complete: a new one is made.
        std::fs::remove_file(tls.join("ca.pem")).unwrap();
        load_or_generate_dev(data_dir.path()).unwrap();
        let names: Vec<_> = std::fs::read_dir(&tls)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            !names.iter().any(|name| name.ends_with(".tmp")),
            "{names:?}"
        );
    }

    #[test]
    fn a_lone_certificate_or_key_flag_is_refused() {
        let path = Path::new("x.pem");
        assert!(matches!(
            TlsSource::from_flags(Some(path), None),
            Err(TlsError::Incomplete)
        ));
        assert!(matches!(
            TlsSource::from_flags(None, Some(path)),
            Err(TlsError::Incomplete)
        ));
        assert_eq!(TlsSource::from_flags(None, None).unwrap(), TlsSource::DevCa);
    }
}
