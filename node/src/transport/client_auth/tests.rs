//! Client-certificate verification and mapping, negative cases first: no certificate, a
//! certificate from another CA, an expired one, a revoked one; then `User:alice`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime};

use super::*;
use crate::config::security::AnonymousAccess;

/// A test CA: its key, parameters and certificate.
pub(crate) struct TestCa {
    key: rcgen::KeyPair,
    params: rcgen::CertificateParams,
    pub(crate) certificate: rcgen::Certificate,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Self {
            key,
            params,
            certificate,
        }
    }

    /// A client certificate `subject` (`CN=...` parts), serial `serial`, valid
    /// 2020..`until_year`; returns the certificate and its key.
    pub(crate) fn issue(
        &self,
        common_name: &str,
        organization: Option<&str>,
        serial: u8,
        until_year: i32,
    ) -> (CertificateDer<'static>, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        if let Some(organization) = organization {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, organization);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(until_year, 1, 1);
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[serial]));
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer).unwrap();
        (certificate.der().clone(), key)
    }

    /// A CRL revoking `serials`, valid from 2020 to 2099.
    pub(crate) fn crl_pem(&self, serials: &[u8]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&[*serial]),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        params.signed_by(&issuer).unwrap().pem().unwrap()
    }

    pub(crate) fn write(&self, path: &Path) {
        std::fs::write(path, self.certificate.pem()).unwrap();
    }
}

fn now() -> UnixTime {
    // 2026-12-07.
    UnixTime::since_unix_epoch(Duration::from_secs(1_796_601_600))
}

const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn authenticator(
    directory: &Path,
    mode: ClientAuth,
    crls: &[String],
    rules: Option<&str>,
) -> ClientAuthenticator {
    let mut security = SecurityConfig {
        client_auth: mode,
        ..SecurityConfig::default()
    };
    for (index, crl) in crls.iter().enumerate() {
        let path = directory.join(format!("{index}.crl"));
        std::fs::write(&path, crl).unwrap();
        security.client_crls.push(path);
    }
    if let Some(rules) = rules {
        security.principal_mapping_rules = PrincipalMappingRules::parse(rules).unwrap();
    }
    ClientAuthenticator::load(
        &security,
        Some(&directory.join("ca.pem")),
        AnonymousAccess::Never,
    )
    .unwrap()
}

#[test]
fn required_client_certificates_refuse_missing_foreign_expired_and_revoked_ones() {
    let directory = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Clients CA");
    ca.write(&directory.path().join("ca.pem"));
    let other = TestCa::new("Another CA");
    let auth = authenticator(
        directory.path(),
        ClientAuth::Required,
        &[ca.crl_pem(&[66])],
        None,
    );
    let verifier = auth.verifier(None).unwrap().unwrap();
    // No certificate: rustls refuses the handshake itself when the verifier says so.
    assert!(verifier.client_auth_mandatory());
    let (good, _) = ca.issue("alice", None, 1, 2099);
    verifier.verify_client_cert(&good, &[], now()).unwrap();
    let (foreign, _) = other.issue("alice", None, 1, 2099);
    let error = verifier
        .verify_client_cert(&foreign, &[], now())
        .unwrap_err();
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let (expired, _) = ca.issue("alice", None, 2, 2021);
    let error = verifier
        .verify_client_cert(&expired, &[], now())
        .unwrap_err();
    assert!(error.to_string().contains("certificate expired"), "{error}");
    let (revoked, _) = ca.issue("mallory", None, 66, 2099);
    let error = verifier
        .verify_client_cert(&revoked, &[], now())
        .unwrap_err();
    assert!(error.to_string().contains("Revoked"), "{error}");
}

#[test]
fn optional_client_certificates_let_clients_without_one_through_as_anonymous() {
    let directory = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Clients CA");
    ca.write(&directory.path().join("ca.pem"));
    let auth = authenticator(directory.path(), ClientAuth::Optional, &[], None);
    let verifier = auth.verifier(None).unwrap().unwrap();
    assert!(!verifier.client_auth_mandatory());
    // A certificate that is presented must still verify.
    let (foreign, _) = TestCa::new("Another CA").issue("alice", None, 1, 2099);
    assert!(verifier.verify_client_cert(&foreign, &[], now()).is_err());
    let identity = auth.identify(None, HOST).unwrap();
    assert_eq!(identity, ClientIdentity::anonymous(HOST));
    assert!(!auth.anonymous_allowed());
}

#[test]
fn a_verified_subject_becomes_the_connections_principal() {
    let directory = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Clients CA");
    ca.write(&directory.path().join("ca.pem"));
    let auth = authenticator(directory.path(), ClientAuth::Required, &[], None);
    let (alice, _) = ca.issue("alice", None, 1, 2099);
    let identity = auth.identify(Some(&[alice]), HOST).unwrap();
    assert_eq!(identity.principal.to_string(), "User:alice");
    assert_eq!(identity.method, AuthMethod::Certificate);
    assert_eq!(identity.host, HOST);
    // Any other subject: the full distinguished name (Kafka's DEFAULT).
    let (bob, _) = ca.issue("bob", Some("Acme"), 2, 2099);
    let identity = auth
        .identify(Some(std::slice::from_ref(&bob)), HOST)
        .unwrap();
    assert_eq!(identity.principal.to_string(), "User:O=Acme,CN=bob");
    // No rule matching: an error naming the subject.
    let strict = authenticator(
        directory.path(),
        ClientAuth::Required,
        &[],
        Some("RULE:^O=Other,CN=(.*)$/$1/"),
    );
    let error = strict.identify(Some(&[bob]), HOST).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("\"O=Acme,CN=bob\" maps to no principal"),
        "{error}"
    );
    // With client_auth = "none" a certificate (a cluster peer's) is not mapped.
    let none = authenticator(directory.path(), ClientAuth::None, &[], None);
    let (alice, _) = ca.issue("alice", None, 1, 2099);
    assert_eq!(
        none.identify(Some(&[alice]), HOST).unwrap(),
        ClientIdentity::anonymous(HOST)
    );
    assert!(none.verifier(None).unwrap().is_none());
}

#[test]
fn missing_or_bad_ca_and_crl_files_are_named() {
    let directory = tempfile::tempdir().unwrap();
    let required = SecurityConfig {
        client_auth: ClientAuth::Required,
        ..SecurityConfig::default()
    };
    let error = ClientAuthenticator::load(&required, None, AnonymousAccess::Never)
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs security.client_ca"), "{error}");
    let missing = directory.path().join("missing.pem");
    let error = ClientAuthenticator::load(&required, Some(&missing), AnonymousAccess::Never)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("security.client_ca") && error.contains("missing.pem"),
        "{error}"
    );
    let empty = directory.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let error = ClientAuthenticator::load(&required, Some(&empty), AnonymousAccess::Never)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no CERTIFICATE block"), "{error}");
    let ca = TestCa::new("Clients CA");
    ca.write(&directory.path().join("ca.pem"));
    let with_crl = SecurityConfig {
        client_crls: vec![empty.clone()],
        ..required
    };
    let error = ClientAuthenticator::load(
        &with_crl,
        Some(&directory.path().join("ca.pem")),
        AnonymousAccess::Never,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("security.client_crls") && error.contains("no X509 CRL block"),
        "{error}"
    );
}
