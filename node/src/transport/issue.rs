//! `ledge-node cert issue`: client certificates signed by the node's development CA, for
//! development and small sites (issue 15).
//!
//! The certificate's subject is `CN=<name>` (principal `User:<name>` under the default
//! `principal_mapping_rules`), its key purpose clientAuth, its serial number random (so a
//! CRL can name it). The key is written first, mode 0600, then the certificate; neither may
//! exist already. Before anything is written the certificate is verified against `ca.pem`
//! as the node will verify it, so a `ca.key` that does not belong to `ca.pem` is refused.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};

use super::tls::{KeyFileError, check_private_key_file, dev_ca_params};

/// Default validity of an issued certificate, in days (`--days`).
pub const CLIENT_CERTIFICATE_DAYS_DEFAULT: u32 = 365;
/// Longest validity `--days` accepts: ten years.
pub const CLIENT_CERTIFICATE_DAYS_MAX: u32 = 3650;
/// Longest name accepted, in bytes (X.520's upper bound for a common name).
pub const CLIENT_NAME_BYTES_MAX: usize = 64;

/// Why no certificate was issued. Nothing was written unless the message says so.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The name cannot be a file name and a plain common name.
    #[error(
        "--name {name:?}: {reason}; use 1..={CLIENT_NAME_BYTES_MAX} letters, digits, '.', '_', '-' or '@', not starting with '.' or '-'"
    )]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `--days` out of range.
    #[error("--days {days}: must be 1..={CLIENT_CERTIFICATE_DAYS_MAX}")]
    BadDays {
        /// The value given.
        days: u32,
    },
    /// The data directory has no development CA.
    #[error(
        "{} has no development CA ({} is missing): start `ledge-node --data-dir {}` once to create one. A node that presents operator certificates (--tls-cert/--tls-key) or a [cluster] certificate has no CA of its own here: issue client certificates with your own CA and set [security] client_ca to its certificate",
        data_dir.display(),
        missing.display(),
        data_dir.display()
    )]
    NoCa {
        /// `--data-dir`.
        data_dir: PathBuf,
        /// The file not found.
        missing: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The CA key file is readable by others.
    #[error(transparent)]
    KeyReadable(#[from] KeyFileError),
    /// An output file exists.
    #[error(
        "{} exists; not overwritten (remove it, or choose another --name or --out)",
        path.display()
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The CA files cannot sign, or what they sign does not verify against `ca.pem`.
    #[error("the development CA in {}: {message}", directory.display())]
    Ca {
        /// `<data-dir>/tls`.
        directory: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The clock is outside the years a certificate can name.
    #[error("the system clock ({now_unix_seconds} s since 1970) is outside 1970..=9999")]
    Clock {
        /// The time read.
        now_unix_seconds: i64,
    },
}

/// What `cert issue` wrote.
#[derive(Debug)]
pub struct Issued {
    /// `OUT/<name>.pem`.
    pub certificate: PathBuf,
    /// `OUT/<name>.key` (mode 0600).
    pub key: PathBuf,
}

/// Issues `out/<name>.pem` and `out/<name>.key` signed by the development CA in
/// `<data_dir>/tls/`, valid from the start of the current UTC day for `days` days.
pub fn issue_client_certificate(
    data_dir: &Path,
    name: &str,
    out: &Path,
    days: u32,
    now_unix_seconds: i64,
) -> Result<Issued, IssueError> {
    validate_name(name)?;
    if days == 0 || days > CLIENT_CERTIFICATE_DAYS_MAX {
        return Err(IssueError::BadDays { days });
    }
    let directory = data_dir.join("tls");
    let (ca_pem, ca_key) = (directory.join("ca.pem"), directory.join("ca.key"));
    for file in [&ca_pem, &ca_key] {
        if !file.exists() {
            return Err(IssueError::NoCa {
                data_dir: data_dir.to_path_buf(),
                missing: file.clone(),
            });
        }
    }
    let issued = Issued {
        certificate: out.join(format!("{name}.pem")),
        key: out.join(format!("{name}.key")),
    };
    for path in [&issued.certificate, &issued.key] {
        if path.exists() {
            return Err(IssueError::Exists { path: path.clone() });
        }
    }
    check_private_key_file(&ca_key)?;
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|cause| IssueError::Io {
            path: path.to_path_buf(),
            cause,
        })
    };
    let ca_error = |message: String| IssueError::Ca {
        directory: directory.clone(),
        message,
    };
    let ca_key_pair = rcgen::KeyPair::from_pem(&read(&ca_key)?)
        .map_err(|error| ca_error(format!("ca.key: {error}")))?;
    let ca_certificate = CertificateDer::from_pem_slice(read(&ca_pem)?.as_bytes())
        .map_err(|error| ca_error(format!("ca.pem: {error}")))?;
    let ca_params = dev_ca_params().map_err(|error| ca_error(error.to_string()))?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key_pair);

    let days_now = now_unix_seconds.div_euclid(86_400);
    let (start, end) = (
        civil_from_days(days_now),
        civil_from_days(days_now + i64::from(days)),
    );
    if !(1970..=9999).contains(&start.0) || !(1970..=9999).contains(&end.0) {
        return Err(IssueError::Clock { now_unix_seconds });
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|error| ca_error(error.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(start.0, start.1, start.2);
    params.not_after = rcgen::date_time_ymd(end.0, end.1, end.2);
    params.serial_number = Some(random_serial().map_err(|()| {
        ca_error("the system random generator failed drawing a serial number".into())
    })?);
    let key = rcgen::KeyPair::generate().map_err(|error| ca_error(error.to_string()))?;
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(|error| ca_error(error.to_string()))?;
    verify_against(&ca_certificate, certificate.der(), now_unix_seconds).map_err(|message| {
        ca_error(format!(
            "a certificate it signs does not verify against ca.pem ({message}); is ca.key the key of ca.pem?"
        ))
    })?;
    write_new(&issued.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&issued.certificate, certificate.pem().as_bytes(), 0o644)?;
    Ok(issued)
}

fn validate_name(name: &str) -> Result<(), IssueError> {
    let bad = |reason| IssueError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || name.len() > CLIENT_NAME_BYTES_MAX {
        return Err(bad("wrong length"));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err(bad("starts with '.' or '-'"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(bad("holds a character other than those allowed"));
    }
    Ok(())
}

/// A positive 16-byte serial number (RFC 5280 allows up to 20).
fn random_serial() -> Result<rcgen::SerialNumber, ()> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| ())?;
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// Verifies `leaf` as a client certificate against `ca` at `now_unix_seconds`, as the node
/// will.
fn verify_against(
    ca: &CertificateDer<'_>,
    leaf: &CertificateDer<'_>,
    now_unix_seconds: i64,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(|error| error.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|error| error.to_string())?;
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now_unix_seconds).unwrap_or(0),
    ));
    verifier
        .verify_client_cert(leaf, &[], now)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Writes a file that must not exist, with `mode`, and syncs it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IssueError> {
    let io = |cause| IssueError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|cause: std::io::Error| {
            if cause.kind() == std::io::ErrorKind::AlreadyExists {
                IssueError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(cause)
            }
        })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(i32::MAX),
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_map_to_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_794), (2026, 12, 7));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }

    #[test]
    fn names_are_plain_common_names() {
        for good in ["alice", "svc.orders-1", "bob@example", "A_1"] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "a,O=x",
            "a b",
            "ä",
            &"x".repeat(65),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    const NOW: i64 = 1_796_601_600; // 2026-12-07

    #[test]
    fn an_issued_certificate_verifies_and_nothing_is_overwritten() {
        let data_dir = tempfile::tempdir().unwrap();
        crate::transport::tls::load_or_generate_dev(data_dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let issued =
            issue_client_certificate(data_dir.path(), "alice", out.path(), 30, NOW).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&issued.key), 0o600);
        let pem = std::fs::read(&issued.certificate).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            crate::security::principal::subject_dn_rfc2253(&der).unwrap(),
            "CN=alice"
        );
        // Valid 30 days from today, not 31.
        let ca = CertificateDer::from_pem_slice(
            &std::fs::read(data_dir.path().join("tls/ca.pem")).unwrap(),
        )
        .unwrap();
        verify_against(&ca, &der, NOW + 29 * 86_400).unwrap();
        let expired = verify_against(&ca, &der, NOW + 31 * 86_400).unwrap_err();
        assert!(expired.contains("certificate expired"), "{expired}");
        // A second issue of the same name refuses, and the files are unchanged.
        let key_before = std::fs::read(&issued.key).unwrap();
        let error = issue_client_certificate(data_dir.path(), "alice", out.path(), 30, NOW)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("alice.pem exists; not overwritten"),
            "{error}"
        );
        assert_eq!(std::fs::read(&issued.key).unwrap(), key_before);
    }

    #[test]
    fn a_directory_without_a_development_ca_says_so() {
        let data_dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let error = issue_client_certificate(data_dir.path(), "alice", out.path(), 30, NOW)
            .unwrap_err()
            .to_string();
        assert!(error.contains("has no development CA"), "{error}");
        assert!(error.contains("operator certificates"), "{error}");
        assert!(std::fs::read_dir(out.path()).unwrap().next().is_none());
        // A CA key others can read is refused.
        crate::transport::tls::load_or_generate_dev(data_dir.path()).unwrap();
        let ca_key = data_dir.path().join("tls/ca.key");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = issue_client_certificate(data_dir.path(), "alice", out.path(), 30, NOW)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("readable by its group or by others (mode 0640)"),
            "{error}"
        );
        // A CA key that is not ca.pem's key signs nothing that verifies: refused, nothing
        // written.
        std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&ca_key, other.serialize_pem()).unwrap();
        let error = issue_client_certificate(data_dir.path(), "alice", out.path(), 30, NOW)
            .unwrap_err()
            .to_string();
        assert!(error.contains("is ca.key the key of ca.pem?"), "{error}");
        assert!(std::fs::read_dir(out.path()).unwrap().next().is_none());
        assert!(
            issue_client_certificate(data_dir.path(), "alice", out.path(), 0, NOW)
                .unwrap_err()
                .to_string()
                .contains("--days 0")
        );
    }
}
