//! SASL on QUIC connections: the pure per-connection rules (with the SDK's SCRAM client as
//! the other side), then the listener over real QUIC on loopback with the SDK and with raw
//! streams. Real time for the QUIC part: no assertion depends on how long anything takes.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use ledge_client::sasl::{SaslCredentials, SaslMechanism as ClientMechanism, ScramClient};
use ledge_protocol::wire::{
    ApiVersionsRequest, ErrorCode, MetadataRequest, Request, Response, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::{Admission, ConnectionAuth};
use crate::security::credentials::fixture::MapCredentials;
use crate::security::identity::{AuthMethod, ClientIdentity};
use crate::security::principal::KafkaPrincipal;
use crate::security::sasl::{SASL_MECHANISMS_ALL, SaslServer};
use crate::security::scram::{SaslMechanism, ScramMechanism};

const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn sasl_server(mechanisms: &[SaslMechanism]) -> Arc<SaslServer> {
    let credentials = MapCredentials::new()
        .with_user("alice", "alice-secret", ScramMechanism::Sha256)
        .with_user("alice", "alice-secret", ScramMechanism::Sha512)
        .with_user("bob", "bob-secret", ScramMechanism::Sha512);
    Arc::new(SaslServer::with_seed(
        mechanisms.to_vec(),
        Arc::new(credentials),
        7,
    ))
}

/// A connection that starts anonymous, anonymous clients not allowed, every mechanism on.
fn closed_node_connection() -> ConnectionAuth {
    ConnectionAuth::new(
        ClientIdentity::anonymous(HOST),
        false,
        Some(sasl_server(&SASL_MECHANISMS_ALL)),
    )
}

fn metadata() -> Request {
    Request::Metadata(MetadataRequest { topics: None })
}

fn handshake(mechanism: &str) -> Request {
    Request::SaslHandshake(SaslHandshakeRequest {
        mechanism: mechanism.into(),
    })
}

fn authenticate(bytes: Vec<u8>) -> Request {
    Request::SaslAuthenticate(SaslAuthenticateRequest {
        auth_bytes: Bytes::from(bytes),
    })
}

fn answered_authenticate(admission: Admission) -> SaslAuthenticateResponse {
    match admission {
        Admission::Answer(Response::SaslAuthenticate(answer)) => answer,
        other => panic!("expected a SaslAuthenticate answer, got {other:?}"),
    }
}

fn answered_handshake(admission: Admission) -> SaslHandshakeResponse {
    match admission {
        Admission::Answer(Response::SaslHandshake(answer)) => answer,
        other => panic!("expected a SaslHandshake answer, got {other:?}"),
    }
}

fn client_mechanism(mechanism: SaslMechanism) -> ClientMechanism {
    match mechanism {
        SaslMechanism::Scram(ScramMechanism::Sha256) => ClientMechanism::ScramSha256,
        SaslMechanism::Scram(ScramMechanism::Sha512) => ClientMechanism::ScramSha512,
        SaslMechanism::Plain => ClientMechanism::Plain,
    }
}

/// Runs a whole exchange with the SDK's client; returns the last admission.
fn run_exchange(
    connection: &mut ConnectionAuth,
    mechanism: SaslMechanism,
    user: &str,
    password: &str,
) -> Admission {
    let credentials =
        SaslCredentials::new(user, password).with_mechanism(client_mechanism(mechanism));
    let answer = answered_handshake(connection.admit(&handshake(mechanism.name())));
    assert_eq!(answer.error, ErrorCode::None, "{answer:?}");
    if mechanism == SaslMechanism::Plain {
        return connection.admit(&authenticate(ledge_client::sasl::plain_message(
            &credentials,
        )));
    }
    let (mut client, first) = ScramClient::start(&credentials, "client-nonce-1".into()).unwrap();
    let server_first = answered_authenticate(connection.admit(&authenticate(first)));
    assert_eq!(server_first.error, ErrorCode::None);
    let last = client
        .handle_server_first(&server_first.auth_bytes)
        .unwrap();
    let admission = connection.admit(&authenticate(last));
    if let Admission::Answer(Response::SaslAuthenticate(answer)) = &admission {
        // The node proved it holds the credential: the SDK checks its signature.
        client.handle_server_final(&answer.auth_bytes).unwrap();
    }
    admission
}

// Goal: the failure cases first. A wrong password and an unknown user end the same way: the
// same code and message, the connection closed, its identity still anonymous, and every
// later request refused, for each mechanism.
#[test]
fn wrong_password_and_unknown_user_fail_alike_and_close() {
    for mechanism in SASL_MECHANISMS_ALL {
        let mut outcomes = Vec::new();
        for (user, password) in [("alice", "wrong"), ("mallory", "alice-secret")] {
            let mut connection = closed_node_connection();
            let admission = run_exchange(&mut connection, mechanism, user, password);
            let Admission::AnswerAndClose(Response::SaslAuthenticate(answer)) = admission else {
                panic!("{mechanism:?} {user}: expected a failure, got {admission:?}");
            };
            assert_eq!(answer.error, ErrorCode::SaslAuthenticationFailed);
            assert!(!answer.message.contains(password), "{}", answer.message);
            assert!(!connection.identity().is_authenticated());
            assert!(matches!(
                connection.admit(&metadata()),
                Admission::Refuse {
                    code: ErrorCode::SaslAuthenticationFailed,
                    ..
                }
            ));
            // No second try on a failed connection.
            assert!(matches!(
                connection.admit(&handshake(mechanism.name())),
                Admission::Refuse { .. }
            ));
            outcomes.push((answer.error, answer.message));
        }
        assert_eq!(outcomes[0], outcomes[1], "{mechanism:?}");
    }
}

// Goal: before authentication, with anonymous clients not allowed, only ApiVersions and the
// SASL requests are served; during an exchange other requests are refused even where
// anonymous clients are allowed (they would otherwise run as an identity about to change).
#[test]
fn requests_before_and_during_authentication_are_refused() {
    let mut connection = closed_node_connection();
    assert_eq!(
        connection.admit(&metadata()),
        Admission::Refuse {
            code: ErrorCode::AuthenticationRequired,
            message: super::AUTHENTICATION_REQUIRED.into(),
        }
    );
    let api_versions = Request::ApiVersions(ApiVersionsRequest {
        client_software_name: "test".into(),
        client_software_version: "0".into(),
    });
    assert!(matches!(
        connection.admit(&api_versions),
        Admission::Serve(identity) if !identity.is_authenticated()
    ));
    for anonymous_allowed in [false, true] {
        let mut connection = ConnectionAuth::new(
            ClientIdentity::anonymous(HOST),
            anonymous_allowed,
            Some(sasl_server(&SASL_MECHANISMS_ALL)),
        );
        answered_handshake(connection.admit(&handshake("SCRAM-SHA-256")));
        assert!(matches!(
            connection.admit(&metadata()),
            Admission::Refuse {
                code: ErrorCode::AuthenticationRequired,
                ..
            }
        ));
    }
}

// Goal: each mechanism authenticates the connection once as User:<name>, with the method
// recorded; requests are then served as that identity. A second SaslHandshake is answered
// IllegalSaslState and changes nothing (QUIC connections authenticate once).
#[test]
fn each_mechanism_authenticates_once() {
    for mechanism in SASL_MECHANISMS_ALL {
        let mut connection = closed_node_connection();
        let admission = run_exchange(&mut connection, mechanism, "alice", "alice-secret");
        let answer = answered_authenticate(admission);
        assert_eq!(answer.error, ErrorCode::None);
        assert_eq!(answer.session_lifetime_ms, 0);
        let expected = ClientIdentity {
            principal: KafkaPrincipal::user("alice"),
            host: HOST,
            method: match mechanism {
                SaslMechanism::Plain => AuthMethod::SaslPlain,
                SaslMechanism::Scram(scram) => AuthMethod::SaslScram(scram),
            },
        };
        assert_eq!(**connection.identity(), expected);
        assert!(matches!(
            connection.admit(&metadata()),
            Admission::Serve(identity) if *identity == expected
        ));
        let again = answered_handshake(connection.admit(&handshake("SCRAM-SHA-512")));
        assert_eq!(again.error, ErrorCode::IllegalSaslState);
        assert_eq!(**connection.identity(), expected);
        let stray = answered_authenticate(connection.admit(&authenticate(b"n,,n=bob".to_vec())));
        assert_eq!(stray.error, ErrorCode::IllegalSaslState);
        assert_eq!(**connection.identity(), expected);
    }
}

// Goal: a client certificate's principal stays: SASL cannot replace it.
#[test]
fn a_certificate_connection_does_not_authenticate_again() {
    let certificate = ClientIdentity {
        principal: KafkaPrincipal::user("carol"),
        host: HOST,
        method: AuthMethod::Certificate,
    };
    let mut connection = ConnectionAuth::new(
        certificate.clone(),
        false,
        Some(sasl_server(&SASL_MECHANISMS_ALL)),
    );
    let answer = answered_handshake(connection.admit(&handshake("PLAIN")));
    assert_eq!(answer.error, ErrorCode::IllegalSaslState);
    assert!(answer.message.contains("User:carol"), "{}", answer.message);
    assert!(matches!(
        connection.admit(&metadata()),
        Admission::Serve(identity) if *identity == certificate
    ));
}

// Goal: a mechanism that is not enabled (or SASL off) is answered with the enabled list and
// closes the connection; SaslAuthenticate before SaslHandshake and a second SaslHandshake
// during an exchange are protocol errors (the latter closes).
#[test]
fn out_of_order_and_unsupported_requests() {
    let scram_only = [SaslMechanism::Scram(ScramMechanism::Sha256)];
    let mut connection = ConnectionAuth::new(
        ClientIdentity::anonymous(HOST),
        false,
        Some(sasl_server(&scram_only)),
    );
    let Admission::AnswerAndClose(Response::SaslHandshake(answer)) =
        connection.admit(&handshake("PLAIN"))
    else {
        panic!("PLAIN is not enabled");
    };
    assert_eq!(answer.error, ErrorCode::UnsupportedSaslMechanism);
    assert_eq!(answer.mechanisms, vec!["SCRAM-SHA-256".to_owned()]);

    let mut off = ConnectionAuth::new(ClientIdentity::anonymous(HOST), true, None);
    assert!(matches!(
        off.admit(&handshake("SCRAM-SHA-256")),
        Admission::AnswerAndClose(Response::SaslHandshake(SaslHandshakeResponse {
            error: ErrorCode::UnsupportedSaslMechanism,
            ..
        }))
    ));

    let mut connection = closed_node_connection();
    let early = answered_authenticate(connection.admit(&authenticate(b"n,,n=alice,r=x".to_vec())));
    assert_eq!(early.error, ErrorCode::IllegalSaslState);
    answered_handshake(connection.admit(&handshake("SCRAM-SHA-256")));
    assert!(matches!(
        connection.admit(&handshake("SCRAM-SHA-256")),
        Admission::AnswerAndClose(Response::SaslHandshake(SaslHandshakeResponse {
            error: ErrorCode::IllegalSaslState,
            ..
        }))
    ));
    assert!(matches!(
        connection.admit(&metadata()),
        Admission::Refuse { .. }
    ));
}

// Goal: which connections the listener keeps at all: anonymous ones only where anonymous
// clients are allowed or SASL is on.
#[test]
fn anonymous_connections_go_on_only_when_they_may_authenticate() {
    let anonymous = ClientIdentity::anonymous(HOST);
    let sasl = sasl_server(&SASL_MECHANISMS_ALL);
    let off = sasl_server(&[]);
    assert!(ConnectionAuth::may_start(&anonymous, true, None));
    assert!(ConnectionAuth::may_start(&anonymous, false, Some(&sasl)));
    assert!(!ConnectionAuth::may_start(&anonymous, false, Some(&off)));
    assert!(!ConnectionAuth::may_start(&anonymous, false, None));
}

mod quic;

/// An audit log on a manual clock whose lines a test reads.
fn audit() -> (
    Arc<crate::security::audit::AuditLog>,
    crate::security::audit::AuditQueue,
) {
    let (log, queue) = crate::security::audit::AuditLog::with_queue(
        &crate::security::audit::AuditSettings::default(),
        Arc::new(crate::clock::ManualClock::new(1_796_655_267_000)),
    );
    (Arc::new(log), queue)
}

// Goal: a wrong password on QUIC is exactly one `authentication_failure` line in the audit
// log, naming the claimed user, the host, the listener and the mechanism, and holding
// neither the password nor the exchange's nonce or proof; requests refused afterwards on
// the failed connection add nothing; a request before authentication on a node that
// refuses anonymous clients is one line too.
#[test]
fn a_wrong_password_is_one_audit_event_without_the_password() {
    for mechanism in SASL_MECHANISMS_ALL {
        let (log, queue) = audit();
        let mut connection = closed_node_connection().with_audit(Some(Arc::clone(&log)));
        let admission = run_exchange(&mut connection, mechanism, "alice", "wrong-password-9");
        assert!(
            matches!(admission, Admission::AnswerAndClose(_)),
            "{admission:?}"
        );
        connection.admit(&metadata());
        let lines = queue.drain();
        assert_eq!(lines.len(), 1, "{mechanism:?}: {lines:?}");
        let line = &lines[0];
        let fields: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(fields["event"], "authentication_failure");
        assert_eq!(fields["principal"], "User:alice");
        assert_eq!(fields["host"], "192.0.2.7");
        assert_eq!(fields["listener"], "quic");
        assert_eq!(fields["method"], mechanism.name());
        assert_eq!(fields["outcome"], "failed");
        for secret in ["wrong-password-9", "alice-secret", "client-nonce-1", "p="] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }
    let (log, queue) = audit();
    let mut connection = closed_node_connection().with_audit(Some(log));
    connection.admit(&metadata());
    let lines = queue.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"principal\":null"), "{}", lines[0]);
}
