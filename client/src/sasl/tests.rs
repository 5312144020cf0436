use super::*;

const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

fn rfc_client() -> (ScramClient, Vec<u8>) {
    let credentials =
        SaslCredentials::new("user", "pencil").with_mechanism(SaslMechanism::ScramSha256);
    ScramClient::start(&credentials, "rOprNGfwEbeRWgbNEkqO".into()).unwrap()
}

// Goal: the client speaks RFC 7677's SCRAM-SHA-256 example byte for byte, and accepts the
// server's signature from it.
#[test]
fn rfc7677_vector_exactly() {
    let (mut client, first) = rfc_client();
    assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let last = client
        .handle_server_first(RFC7677_SERVER_FIRST.as_bytes())
        .unwrap();
    assert_eq!(
        String::from_utf8(last).unwrap(),
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    );
    client
        .handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        .unwrap();
    // Done: nothing more is taken.
    assert_eq!(
        client.handle_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Err(SaslClientError::OutOfOrder)
    );
}

// Goal: a node that does not hold the credential is not believed: a server signature off by
// one bit, or an error in server-final, fails the exchange.
#[test]
fn a_wrong_server_signature_or_a_server_error_fails() {
    let (mut client, _) = rfc_client();
    client
        .handle_server_first(RFC7677_SERVER_FIRST.as_bytes())
        .unwrap();
    assert_eq!(
        client.handle_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Err(SaslClientError::ServerSignature)
    );
    let (mut client, _) = rfc_client();
    client
        .handle_server_first(RFC7677_SERVER_FIRST.as_bytes())
        .unwrap();
    assert_eq!(
        client.handle_server_final(b"e=invalid-proof"),
        Err(SaslClientError::ServerError("invalid-proof".into()))
    );
}

// Goal: the client refuses what a hostile node could use against it: a nonce that does not
// extend its own (or adds nothing), iterations outside Kafka's range (too few weaken the
// proof, too many burn the client's CPU), garbage.
#[test]
fn hostile_server_first_messages_are_refused() {
    let cases: [(&str, SaslClientError); 6] = [
        (
            "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            SaslClientError::NonceMismatch,
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            SaslClientError::NonceMismatch,
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
            SaslClientError::Iterations(4095),
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
            SaslClientError::Iterations(99_999_999_999),
        ),
        (
            "r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096",
            SaslClientError::Malformed("salt is not base64"),
        ),
        (
            "garbage",
            SaslClientError::Malformed("server-first without r="),
        ),
    ];
    for (message, expected) in cases {
        let (mut client, _) = rfc_client();
        assert_eq!(
            client.handle_server_first(message.as_bytes()),
            Err(expected)
        );
        // A failed exchange takes nothing more.
        assert_eq!(
            client.handle_server_first(RFC7677_SERVER_FIRST.as_bytes()),
            Err(SaslClientError::OutOfOrder)
        );
    }
}

// Goal: user names are escaped as SCRAM's saslname, and control characters are refused
// before anything is sent.
#[test]
fn user_names_are_escaped_or_refused() {
    let credentials = SaslCredentials::new("a,b=c", "p");
    let (_, first) = ScramClient::start(&credentials, "n0nce".into()).unwrap();
    assert_eq!(first, b"n,,n=a=2Cb=3Dc,r=n0nce");
    for bad in ["", "tab\there", "é"] {
        assert_eq!(
            ScramClient::start(&SaslCredentials::new(bad, "p"), "n".into()).unwrap_err(),
            SaslClientError::UserName
        );
    }
}

// Goal: the password never shows in Debug output (configs are logged with {:?}); the
// default mechanism is SCRAM-SHA-512; names parse without case.
#[test]
fn debug_output_never_shows_the_password() {
    let credentials = SaslCredentials::new("alice", "hunter2-secret");
    let shown = format!("{credentials:?}");
    assert!(
        shown.contains("alice") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(credentials.mechanism, SaslMechanism::ScramSha512);
    let (client, _) = ScramClient::start(&credentials, "n".into()).unwrap();
    assert!(!format!("{client:?}").contains("hunter2"));
    assert_eq!(
        "scram-sha-256".parse::<SaslMechanism>(),
        Ok(SaslMechanism::ScramSha256)
    );
    assert!("SCRAM-SHA-1".parse::<SaslMechanism>().is_err());
    assert_eq!(plain_message(&SaslCredentials::new("u", "p")), b"\0u\0p");
}
