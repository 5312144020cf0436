//! The admin listener over real sockets with `tls = true` and `authentication =
//! "required"`: a TLS handshake with the node's (development) certificate, HTTP Basic as a
//! SCRAM user accepted, a wrong password and no credentials 401 with `WWW-Authenticate`,
//! a client certificate's principal, a principal the ACLs refuse 403, the probes open.
//! Method: tokio-rustls clients sending raw HTTP/1.1 requests to the real listener.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::admin::routes::{Readiness, StatusDisk, StatusListeners, StatusReport};
use crate::admin::{AdminAuthentication, AdminListen};
use crate::security::access::Access;
use crate::security::acl::{
    AclBinding, AclOperation, AclPermission, Authorizer, AuthorizerConfig, CLUSTER_NAME,
    PatternType, ResourceType,
};
use crate::security::audit::{AuditLog, AuditQueue, AuditSettings};
use crate::security::credentials::fixture::MapCredentials;
use crate::security::identity::ClientIdentity;
use crate::security::scram::ScramMechanism;

struct Fixed;

impl NodeView for Fixed {
    fn readiness(&self) -> Readiness {
        Readiness::from_reasons(vec![])
    }
    fn status(&self) -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            node_id: 7,
            cluster_id: None,
            listeners: StatusListeners::default(),
            data_dir: "d".into(),
            read_only: false,
            disk: StatusDisk::default(),
            topics: 0,
            partitions: 0,
            partitions_offline: 0,
            health: self.readiness(),
        }
    }
    fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        Ok("ledge_test_metric 1\n# EOF\n".into())
    }
    fn console(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

/// A running TLS admin listener: the development CA and `alice.pem` in `directory`.
struct Running {
    address: SocketAddr,
    roots: rustls::RootCertStore,
    directory: tempfile::TempDir,
    audit: AuditQueue,
    stop: watch::Sender<bool>,
}

/// alice (password and certificate) may Describe the cluster; bob (password) may not.
async fn start() -> Running {
    let directory = tempfile::tempdir().unwrap();
    let certificate = crate::transport::tls::load_or_generate_dev(directory.path()).unwrap();
    let ca_path = directory.path().join("tls/ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    for certificate in
        rustls::pki_types::CertificateDer::pem_slice_iter(&std::fs::read(&ca_path).unwrap())
    {
        roots.add(certificate.unwrap()).unwrap();
    }
    // rustls checks the certificate against the real time in the handshake.
    let now = Clock::wall_time_ms(&crate::clock::SystemClock) / 1000;
    crate::transport::issue::issue_client_certificate(
        directory.path(),
        "alice",
        directory.path(),
        1,
        now,
    )
    .unwrap();
    let security = crate::config::SecurityConfig {
        client_auth: crate::config::ClientAuth::Optional,
        ..crate::config::SecurityConfig::default()
    };
    let client_auth = Arc::new(
        ClientAuthenticator::load(
            &security,
            Some(&ca_path),
            crate::config::security::AnonymousAccess::LoopbackOnly,
        )
        .unwrap(),
    );
    let settings = AdminSettings {
        listen: AdminListen::At("127.0.0.1:0".parse().unwrap()),
        tls: true,
        authentication: AdminAuthentication::Required,
        ..AdminSettings::default()
    };
    let mut listener = AdminListener::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    assert!(
        matches!(listener.check(), Err(AdminListenError::NoCertificate)),
        "a TLS listener without a certificate must not serve"
    );
    listener.present(certificate, Some(client_auth)).unwrap();
    assert!(matches!(listener.check(), Err(AdminListenError::NoGuard)));
    let credentials = MapCredentials::new()
        .with_user("alice", "alice-secret", ScramMechanism::Sha256)
        .with_user("bob", "bob-secret", ScramMechanism::Sha256);
    let mut authorizer = Authorizer::new(AuthorizerConfig::default()).unwrap();
    authorizer
        .add(
            AclBinding::new(
                ResourceType::Cluster,
                CLUSTER_NAME,
                PatternType::Literal,
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
        &AuditSettings::default(),
        Arc::new(crate::clock::ManualClock::new(1_000_000)),
    );
    let audit = Arc::new(audit);
    let access_audit = Arc::clone(&audit);
    listener.guard(AdminGuard::new(
        Arc::new(credentials),
        Arc::new(move |identity: &ClientIdentity| {
            Access::enforced(identity.clone(), Arc::clone(&authorizer))
                .with_audit(Some(Arc::clone(&access_audit)))
        }),
        Some(audit),
    ));
    listener.check().unwrap();
    assert_eq!(listener.scheme(), "https");
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(listener.serve(
        Arc::new(Fixed),
        Arc::new(crate::clock::SystemClock),
        stopped,
    ));
    Running {
        address,
        roots,
        directory,
        audit: queue,
        stop,
    }
}

/// An answer's status line's code, `WWW-Authenticate` header and body.
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

impl Running {
    /// `GET path` over TLS, presenting alice's certificate if `as_alice`, with
    /// `Authorization: Basic` for `basic`.
    async fn get(&self, path: &str, as_alice: bool, basic: Option<(&str, &str)>) -> Reply {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots.clone());
        let client = if as_alice {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(
                self.directory.path().join("alice.pem"),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(
                self.directory.path().join("alice.key"),
            )
            .unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let tcp = TcpStream::connect(self.address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .unwrap();
        let authorization = basic.map_or_else(String::new, |(user, password)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        // The server closes without close_notify on some paths; what arrived is the answer.
        let _ = stream.read_to_end(&mut answer).await;
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {answer:?}"));
        let challenge = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_owned())
        });
        Reply {
            status,
            challenge,
            body: body.to_owned(),
        }
    }
}

// Goal: HTTP Basic over TLS as a SCRAM user reads /metrics; a wrong password and no
// credentials are 401 with a Basic challenge (the wrong password an audit line without the
// password); the probes answer without credentials.
#[tokio::test]
async fn basic_over_tls_is_checked_and_probes_stay_open() {
    let running = start().await;
    let metrics = running
        .get("/metrics", false, Some(("alice", "alice-secret")))
        .await;
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    assert!(
        metrics.body.contains("ledge_test_metric 1"),
        "{}",
        metrics.body
    );
    let wrong = running
        .get("/metrics", false, Some(("alice", "not-her-password")))
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.challenge.as_deref(),
        Some(crate::admin::auth::WWW_AUTHENTICATE)
    );
    assert!(!wrong.body.contains("ledge_test_metric"));
    let lines = running.audit.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(event["event"], "authentication_failure");
    assert_eq!(event["listener"], "admin");
    assert_eq!(event["principal"], "User:alice");
    assert!(!lines[0].contains("not-her-password"));
    let anonymous = running.get("/v1/status", false, None).await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.challenge.is_some());
    for probe in ["/livez", "/readyz"] {
        assert_eq!(running.get(probe, false, None).await.status, 200, "{probe}");
    }
    let _ = running.stop.send(true);
}

// Goal: a client certificate from the node's CA is the principal (User:alice, no password
// needed), and a principal the ACLs refuse is 403 naming principal and operation, with an
// authorization_denied audit line.
#[tokio::test]
async fn a_certificate_principal_is_served_and_an_acl_denial_is_403() {
    let running = start().await;
    let status = running.get("/v1/status", true, None).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let body: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(body["node_id"], 7);
    let denied = running
        .get("/v1/status", false, Some(("bob", "bob-secret")))
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body,
        "User:bob may not Describe Cluster:kafka-cluster\n"
    );
    let lines = running.audit.drain();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("authorization_denied") && line.contains("User:bob")),
        "{lines:?}"
    );
    let _ = running.stop.send(true);
}

// Goal: a TLS listener does not answer plain HTTP.
#[tokio::test]
async fn plain_http_to_a_tls_listener_gets_no_answer() {
    let running = start().await;
    let mut tcp = TcpStream::connect(running.address).await.unwrap();
    tcp.write_all(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    let _ = running.stop.send(true);
}
