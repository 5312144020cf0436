use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const RFC7677_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC7677_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC7677_SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC7677_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC7677_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn decoys() -> DecoyCredentials {
    DecoyCredentials::new([7; DECOY_SECRET_BYTES], 4096).unwrap()
}

fn rfc_credential() -> ScramCredential {
    let salt = BASE64.decode(RFC7677_SALT_B64).unwrap();
    ScramCredential::new(ScramMechanism::Sha256, "pencil", &salt, 4096).unwrap()
}

/// A SCRAM client computed here with ring directly (not through the module's helpers):
/// returns client-final for the given server-first, and the server signature it expects.
fn client_final(
    mechanism: ScramMechanism,
    password: &str,
    client_first_bare: &str,
    gs2_header: &str,
    server_first: &str,
) -> (String, Vec<u8>) {
    let (hmac_alg, pbkdf2_alg, digest_alg, len) = match mechanism {
        ScramMechanism::Sha256 => (
            hmac::HMAC_SHA256,
            pbkdf2::PBKDF2_HMAC_SHA256,
            &digest::SHA256,
            32,
        ),
        ScramMechanism::Sha512 => (
            hmac::HMAC_SHA512,
            pbkdf2::PBKDF2_HMAC_SHA512,
            &digest::SHA512,
            64,
        ),
    };
    let mut fields = server_first.split(',');
    let nonce = fields.next().unwrap().strip_prefix("r=").unwrap();
    let salt = BASE64
        .decode(fields.next().unwrap().strip_prefix("s=").unwrap())
        .unwrap();
    let iterations: u32 = fields
        .next()
        .unwrap()
        .strip_prefix("i=")
        .unwrap()
        .parse()
        .unwrap();
    let mut salted = vec![0u8; len];
    pbkdf2::derive(
        pbkdf2_alg,
        NonZeroU32::new(iterations).unwrap(),
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let salted_key = hmac::Key::new(hmac_alg, &salted);
    let client_key = hmac::sign(&salted_key, b"Client Key");
    let stored_key = digest::digest(digest_alg, client_key.as_ref());
    let without_proof = format!("c={},r={nonce}", BASE64.encode(gs2_header));
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac::sign(
        &hmac::Key::new(hmac_alg, stored_key.as_ref()),
        auth.as_bytes(),
    );
    let proof: Vec<u8> = client_key
        .as_ref()
        .iter()
        .zip(signature.as_ref())
        .map(|(k, s)| k ^ s)
        .collect();
    let server_key = hmac::sign(&salted_key, b"Server Key");
    let server_signature = hmac::sign(
        &hmac::Key::new(hmac_alg, server_key.as_ref()),
        auth.as_bytes(),
    );
    (
        format!("{without_proof},p={}", BASE64.encode(proof)),
        server_signature.as_ref().to_vec(),
    )
}

/// Runs an exchange up to server-first for `client_first`, with `credential` as the lookup.
fn to_server_first(
    mechanism: ScramMechanism,
    client_first: &str,
    credential: Option<&ScramCredential>,
) -> (ScramServer, String) {
    let mut server = ScramServer::new(mechanism, &mut rng(1));
    server.handle_client_first(client_first.as_bytes()).unwrap();
    let first = server.server_first(credential, &decoys()).unwrap();
    (server, String::from_utf8(first).unwrap())
}

#[test]
fn mechanism_names_and_bounds_are_kafkas() {
    assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
    assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
    assert_eq!(
        ScramMechanism::from_name("SCRAM-SHA-512"),
        Some(ScramMechanism::Sha512)
    );
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::Sha256.kafka_type(), 1);
    assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
    for m in ScramMechanism::ALL {
        assert_eq!(m.iterations_min(), 4096);
        assert_eq!(m.iterations_max(), 16384);
    }
}

#[test]
fn rfc7677_sha256_vector_exactly() {
    let mut server =
        ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC7677_SERVER_NONCE.to_owned());
    let need = server
        .handle_client_first(RFC7677_CLIENT_FIRST.as_bytes())
        .unwrap();
    assert_eq!(need.username, "user");
    assert_eq!(need.mechanism, ScramMechanism::Sha256);
    let first = server
        .server_first(Some(&rfc_credential()), &decoys())
        .unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), RFC7677_SERVER_FIRST);
    let (last, user) = server
        .handle_client_final(RFC7677_CLIENT_FINAL.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(last).unwrap(), RFC7677_SERVER_FINAL);
    assert_eq!(user.username(), "user");
    assert_eq!(
        user.mechanism(),
        SaslMechanism::Scram(ScramMechanism::Sha256)
    );
    assert!(server.is_complete());
    // Done: nothing more is accepted.
    assert_eq!(
        server.handle_client_final(RFC7677_CLIENT_FINAL.as_bytes()),
        Err(ScramError::UnexpectedMessage { state: "COMPLETE" })
    );
}

#[test]
fn independent_client_agrees_with_the_rfc_vector() {
    // The test client itself reproduces RFC 7677's client-final, so the round trips below
    // check the server against a known-good client.
    let (last, signature) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        "n,,",
        RFC7677_SERVER_FIRST,
    );
    assert_eq!(last, RFC7677_CLIENT_FINAL);
    assert_eq!(
        format!("v={}", BASE64.encode(signature)),
        RFC7677_SERVER_FINAL
    );
}

#[test]
fn sha512_round_trip_with_independent_client() {
    let credential =
        ScramCredential::generate(ScramMechanism::Sha512, "s3cret,=é", 4096, &mut rng(2)).unwrap();
    assert_eq!(credential.stored_key().len(), 64);
    assert_eq!(credential.salt().len(), SCRAM_SALT_BYTES);
    let client_first = "n,,n=alice=2Cbob=3D,r=fyko+d2lbbFgONRv9qkxdawL";
    let (mut server, first) =
        to_server_first(ScramMechanism::Sha512, client_first, Some(&credential));
    assert!(first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
    assert!(first.ends_with(",i=4096"));
    let (last, expected_signature) = client_final(
        ScramMechanism::Sha512,
        "s3cret,=é",
        "n=alice=2Cbob=3D,r=fyko+d2lbbFgONRv9qkxdawL",
        "n,,",
        &first,
    );
    let (server_final, user) = server.handle_client_final(last.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8(server_final).unwrap(),
        format!("v={}", BASE64.encode(expected_signature))
    );
    assert_eq!(user.username(), "alice,bob=");
    assert_eq!(user.mechanism().name(), "SCRAM-SHA-512");
}

#[test]
fn gs2_flag_y_and_matching_authzid_round_trip() {
    let credential = rfc_credential();
    let client_first = "y,a=user,n=user,r=abc";
    let (mut server, first) =
        to_server_first(ScramMechanism::Sha256, client_first, Some(&credential));
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=abc",
        "y,a=user,",
        &first,
    );
    let (_, user) = server.handle_client_final(last.as_bytes()).unwrap();
    assert_eq!(user.username(), "user");
}

#[test]
fn bad_proof_fails_and_yields_no_identity() {
    let credential = rfc_credential();
    let (mut server, first) =
        to_server_first(ScramMechanism::Sha256, "n,,n=user,r=abc", Some(&credential));
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil!",
        "n=user,r=abc",
        "n,,",
        &first,
    );
    assert_eq!(
        server.handle_client_final(last.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
    assert!(!server.is_complete());
    // The failed exchange is over: the right proof now gets nothing either.
    let (good, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=abc",
        "n,,",
        &first,
    );
    assert_eq!(
        server.handle_client_final(good.as_bytes()),
        Err(ScramError::UnexpectedMessage { state: "FAILED" })
    );
    assert!(!server.is_complete());
}

#[test]
fn flipped_proof_bit_fails() {
    let mut server =
        ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC7677_SERVER_NONCE.to_owned());
    server
        .handle_client_first(RFC7677_CLIENT_FIRST.as_bytes())
        .unwrap();
    server
        .server_first(Some(&rfc_credential()), &decoys())
        .unwrap();
    let (head, proof) = RFC7677_CLIENT_FINAL.rsplit_once(",p=").unwrap();
    let mut proof = BASE64.decode(proof).unwrap();
    proof[31] ^= 1;
    let message = format!("{head},p={}", BASE64.encode(proof));
    assert_eq!(
        server.handle_client_final(message.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
}

#[test]
fn wrong_nonce_fails() {
    let credential = rfc_credential();
    let (mut server, first) =
        to_server_first(ScramMechanism::Sha256, "n,,n=user,r=abc", Some(&credential));
    // A correct proof over a final message whose nonce is not the combined one.
    let tampered = first.replacen("r=abc", "r=abcX", 1);
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=abc",
        "n,,",
        &tampered,
    );
    assert_eq!(
        server.handle_client_final(last.as_bytes()),
        Err(ScramError::NonceMismatch)
    );

    // Kafka only checks that the final nonce ends with the server-first nonce; we want equality.
    let (mut server, first) =
        to_server_first(ScramMechanism::Sha256, "n,,n=user,r=abc", Some(&credential));
    let longer = first.replacen("r=abc", "r=Xabc", 1);
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=abc",
        "n,,",
        &longer,
    );
    assert_eq!(
        server.handle_client_final(last.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
}

#[test]
fn wrong_channel_binding_fails() {
    let credential = rfc_credential();
    for (client_first, gs2_sent) in [
        ("n,,n=user,r=abc", "y,,"),
        ("y,,n=user,r=abc", "n,,"),
        ("n,a=user,n=user,r=abc", "n,,"),
    ] {
        let (mut server, first) =
            to_server_first(ScramMechanism::Sha256, client_first, Some(&credential));
        let (last, _) = client_final(
            ScramMechanism::Sha256,
            "pencil",
            "n=user,r=abc",
            gs2_sent,
            &first,
        );
        assert_eq!(
            server.handle_client_final(last.as_bytes()),
            Err(ScramError::ChannelBindingMismatch),
            "{client_first} / {gs2_sent}"
        );
    }
}

#[test]
fn channel_binding_p_is_refused() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(3));
    assert_eq!(
        server.handle_client_first(b"p=tls-unique,,n=user,r=abc"),
        Err(ScramError::ChannelBindingNotSupported)
    );
}

#[test]
fn unknown_user_fails_at_the_proof_not_earlier() {
    let decoys = decoys();
    // Same shape of server-first for a known and an unknown name.
    let (_, known) = to_server_first(
        ScramMechanism::Sha256,
        "n,,n=user,r=abc",
        Some(&rfc_credential()),
    );
    let (mut server, unknown) = to_server_first(ScramMechanism::Sha256, "n,,n=nobody,r=abc", None);
    let shape = |m: &str| {
        let parts: Vec<&str> = m.split(',').collect();
        (
            parts.len(),
            parts[0].len(),
            parts[1].len(),
            parts[2].to_owned(),
        )
    };
    assert_eq!(shape(&known), shape(&unknown));
    // The decoy salt is stable per name (a fresh one each time would tell it apart).
    let (_, again) = to_server_first(ScramMechanism::Sha256, "n,,n=nobody,r=abc", None);
    assert_eq!(unknown, again);
    let (_, other) = to_server_first(ScramMechanism::Sha256, "n,,n=somebody,r=abc", None);
    assert_ne!(unknown.split(',').nth(1), other.split(',').nth(1));
    // Any password fails at the proof, with the same error a wrong password gets.
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=nobody,r=abc",
        "n,,",
        &unknown,
    );
    assert_eq!(
        server.handle_client_final(last.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
    // The decoy is what the server sent.
    let decoy = decoys.credential_for(ScramMechanism::Sha256, "nobody");
    assert_eq!(decoy.iterations(), 4096);
    assert!(unknown.contains(&format!(",s={},", BASE64.encode(decoy.salt()))));
}

#[test]
fn decoy_is_refused_even_when_the_proof_matches() {
    // Build decoy-like credentials from a real password, then run the exchange through the
    // unknown-user path with those very keys: the proof matches, the decoy flag still refuses.
    let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, "srv".to_owned());
    server.handle_client_first(b"n,,n=user,r=abc").unwrap();
    server.server_first(None, &decoys()).unwrap();
    let State::ClientFinal(exchange) = &mut server.state else {
        panic!("not awaiting the final message");
    };
    exchange.credential = rfc_credential();
    let first = exchange.server_first.replace(
        &exchange.server_first[exchange.server_first.find(",s=").unwrap()..],
        &format!(",s={RFC7677_SALT_B64},i=4096"),
    );
    exchange.server_first = first.clone();
    let (last, _) = client_final(
        ScramMechanism::Sha256,
        "pencil",
        "n=user,r=abc",
        "n,,",
        &first,
    );
    assert_eq!(
        server.handle_client_final(last.as_bytes()),
        Err(ScramError::InvalidCredentials)
    );
}

#[test]
fn iterations_out_of_range_are_refused() {
    for m in ScramMechanism::ALL {
        for bad in [0, 1, 4095, 16385, u32::MAX] {
            assert!(matches!(
                ScramCredential::new(m, "p", b"salt", bad),
                Err(CredentialError::IterationsOutOfRange { iterations, min: 4096, max: 16384, .. })
                    if iterations == bad
            ));
            assert!(
                ScramCredential::from_parts(
                    m,
                    b"s".to_vec(),
                    vec![0; m.digest_bytes()],
                    vec![0; m.digest_bytes()],
                    bad
                )
                .is_err()
            );
        }
        assert!(ScramCredential::new(m, "p", b"salt", 4096).is_ok());
        assert!(ScramCredential::new(m, "p", b"salt", 16384).is_ok());
    }
    assert!(DecoyCredentials::new([0; DECOY_SECRET_BYTES], 4095).is_err());
    assert!(DecoyCredentials::new([0; DECOY_SECRET_BYTES], 16385).is_err());
}

#[test]
fn credential_parts_are_checked() {
    let m = ScramMechanism::Sha256;
    assert_eq!(
        ScramCredential::new(m, "p", b"", 4096),
        Err(CredentialError::SaltLength {
            bytes: 0,
            max: SCRAM_SALT_BYTES_MAX
        })
    );
    assert!(ScramCredential::new(m, "p", &[1; SCRAM_SALT_BYTES_MAX + 1], 4096).is_err());
    assert_eq!(
        ScramCredential::from_parts(m, b"s".to_vec(), vec![0; 64], vec![0; 32], 4096),
        Err(CredentialError::KeyLength {
            mechanism: "SCRAM-SHA-256",
            expected: 32,
            actual: 64
        })
    );
    let c = rfc_credential();
    let loaded = ScramCredential::from_parts(
        m,
        c.salt().to_vec(),
        c.stored_key().to_vec(),
        c.server_key().to_vec(),
        c.iterations(),
    )
    .unwrap();
    assert_eq!(loaded, c);
    // Kafka's AlterUserScramCredentials carries SaltedPassword.
    let mut salted = vec![0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(4096).unwrap(),
        c.salt(),
        b"pencil",
        &mut salted,
    );
    assert_eq!(
        ScramCredential::from_salted_password(m, c.salt().to_vec(), &salted, 4096).unwrap(),
        c
    );
    // Debug never shows the keys.
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("stored_key") && !shown.contains("server_key"),
        "{shown}"
    );
}

#[test]
fn credential_mechanism_must_match_the_exchange() {
    let mut server = ScramServer::new(ScramMechanism::Sha512, &mut rng(4));
    server.handle_client_first(b"n,,n=user,r=abc").unwrap();
    assert_eq!(
        server.server_first(Some(&rfc_credential()), &decoys()),
        Err(ScramError::CredentialMechanismMismatch {
            expected: "SCRAM-SHA-512",
            actual: "SCRAM-SHA-256"
        })
    );
}

#[test]
fn saslname_escaping() {
    assert_eq!(unescape_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
    assert_eq!(unescape_saslname("=3D2C").unwrap(), "=2C");
    assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
    assert_eq!(escape_saslname("=2C"), "=3D2C");
    for bad in [
        "", "a=", "a=2", "a=2c", "a=3d", "a=41", "a,b", "a\u{1}b", "a\u{7f}", "é", "a\u{0}",
    ] {
        assert!(unescape_saslname(bad).is_err(), "{bad:?}");
    }
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(5));
    assert_eq!(
        server
            .handle_client_first(b"n,,n=a=2Cb=3D,r=x")
            .unwrap()
            .username,
        "a,b="
    );
}

proptest! {
    #[test]
    fn escaping_round_trips(name in "[\\x20-\\x7e]{1,40}") {
        let escaped = escape_saslname(&name);
        prop_assert!(!escaped.contains(','));
        prop_assert_eq!(unescape_saslname(&escaped).unwrap(), name);
    }
}

#[test]
fn malformed_client_first_messages_are_typed_errors() {
    use ScramError::*;
    let cases: &[(&[u8], ScramError)] = &[
        (b"", ClientFirstFormat("no gs2 header")),
        (b"n", ClientFirstFormat("no gs2 header")),
        (
            b"x,,n=user,r=abc",
            ClientFirstFormat("gs2 flag is not 'n' or 'y'"),
        ),
        (b"n,n=user,r=abc", ClientFirstFormat("authzid is not 'a='")),
        (b"n,,", ClientFirstFormat("no username")),
        (b"n,,r=abc,n=user", ClientFirstFormat("no username")),
        (b"n,,n=user", ClientFirstFormat("no nonce")),
        (
            b"n,,n=user,r=",
            ClientFirstFormat("nonce is empty or not printable"),
        ),
        (
            b"n,,n=user,r=a b",
            ClientFirstFormat("nonce is empty or not printable"),
        ),
        (
            b"n,,n=user,r=abc,",
            ClientFirstFormat("extension without '='"),
        ),
        (
            b"n,,n=user,r=abc,1=x",
            ClientFirstFormat("extension name is not alphabetic"),
        ),
        (
            b"n,,n=user,r=abc,x=",
            ClientFirstFormat("empty extension value"),
        ),
        (
            b"n,,n=us\xc3\xa9r,r=abc",
            ClientFirstFormat("not 7-bit ASCII without NUL"),
        ),
        (
            b"n,,n=user\0,r=abc",
            ClientFirstFormat("not 7-bit ASCII without NUL"),
        ),
        (b"n,,m=ext,n=user,r=abc", MandatoryExtensionNotSupported),
        (b"n,,n=,r=abc", InvalidUsername("empty")),
        (
            b"n,,n=us=er,r=abc",
            InvalidUsername("'=' not followed by 2C or 3D"),
        ),
        (
            b"n,,n=us\ter,r=abc",
            InvalidUsername("control character (prohibited by SASLprep)"),
        ),
        (b"n,a=other,n=user,r=abc", AuthorizationIdMismatch),
        (b"n,a=,n=user,r=abc", InvalidUsername("empty")),
        (b"n,,n=user,r=abc,tokenauth=true", TokenAuthNotSupported),
        (b"n,,n=user,r=abc,tokenauth=TRUE", TokenAuthNotSupported),
        (
            b"n,,n=user,r=abc,tokenauth=false,tokenauth=true",
            TokenAuthNotSupported,
        ),
    ];
    for (message, expected) in cases {
        let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(6));
        assert_eq!(
            server.handle_client_first(message).as_ref(),
            Err(expected),
            "{}",
            String::from_utf8_lossy(message)
        );
        // Failed for good.
        assert_eq!(
            server.handle_client_first(b"n,,n=user,r=abc"),
            Err(UnexpectedMessage { state: "FAILED" })
        );
    }
    // Accepted: escaped authzid equal to the name, unknown extensions ignored, tokenauth false.
    for message in [
        &b"n,a=a=2Cb,n=a=2Cb,r=abc"[..],
        b"n,,n=user,r=abc,foo=bar=baz",
        b"n,,n=user,r=abc,tokenauth=false",
    ] {
        let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(6));
        assert!(
            server.handle_client_first(message).is_ok(),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn error_messages_never_repeat_client_bytes() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(7));
    let err = server
        .handle_client_first(b"n,,n=secretname=,r=SECRETNONCE")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        !text.contains("secretname") && !text.contains("SECRETNONCE"),
        "{text}"
    );
}

#[test]
fn malformed_client_final_messages_are_typed_errors() {
    let nonce = format!("abc{RFC7677_SERVER_NONCE}");
    let proof = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let cases: Vec<(String, ScramError)> = vec![
        (String::new(), ScramError::ClientFinalFormat("no proof")),
        (
            format!("c=biws,r={nonce}"),
            ScramError::ClientFinalFormat("last attribute is not 'p='"),
        ),
        (
            format!("r={nonce},p={proof}"),
            ScramError::ClientFinalFormat("no channel binding"),
        ),
        (
            format!("c=biws,p={proof}"),
            ScramError::ClientFinalFormat("no nonce"),
        ),
        (
            format!("c=biws,r=,p={proof}"),
            ScramError::ClientFinalFormat("nonce is empty or not printable"),
        ),
        (
            format!("c=biws,r={nonce},9=x,p={proof}"),
            ScramError::ClientFinalFormat("extension name is not alphabetic"),
        ),
        (
            format!("c=b!ws,r={nonce},p={proof}"),
            ScramError::ClientFinalFormat("channel binding is not base64"),
        ),
        (
            format!("c=biws,r={nonce},p=%%%%"),
            ScramError::ClientFinalFormat("proof is not base64"),
        ),
        (
            format!("c=biws,r={nonce},p=AAAA"),
            ScramError::ClientFinalFormat("proof has the wrong length"),
        ),
        (
            format!("c=biws,r={nonce},p={proof}\u{80}"),
            ScramError::ClientFinalFormat("not 7-bit ASCII without NUL"),
        ),
    ];
    for (message, expected) in cases {
        let mut server =
            ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC7677_SERVER_NONCE.to_owned());
        server.handle_client_first(b"n,,n=user,r=abc").unwrap();
        server
            .server_first(Some(&rfc_credential()), &decoys())
            .unwrap();
        assert_eq!(
            server.handle_client_final(message.as_bytes()),
            Err(expected),
            "{message}"
        );
        assert!(!server.is_complete());
    }
}

#[test]
fn out_of_order_calls_fail() {
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(8));
    assert_eq!(
        server.handle_client_final(RFC7677_CLIENT_FINAL.as_bytes()),
        Err(ScramError::UnexpectedMessage {
            state: "RECEIVE_CLIENT_FIRST_MESSAGE"
        })
    );
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(8));
    assert_eq!(
        server.server_first(None, &decoys()),
        Err(ScramError::UnexpectedMessage {
            state: "RECEIVE_CLIENT_FIRST_MESSAGE"
        })
    );
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(8));
    server.handle_client_first(b"n,,n=user,r=abc").unwrap();
    assert_eq!(
        server.handle_client_first(b"n,,n=user,r=abc"),
        Err(ScramError::UnexpectedMessage {
            state: "AWAIT_CREDENTIAL"
        })
    );
}

#[test]
fn message_size_is_bounded() {
    let long = format!("n,,n=user,r={}", "a".repeat(SASL_MESSAGE_BYTES_MAX_DEFAULT));
    let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(9));
    assert_eq!(
        server.handle_client_first(long.as_bytes()),
        Err(ScramError::MessageTooLarge {
            bytes: long.len(),
            max: SASL_MESSAGE_BYTES_MAX_DEFAULT
        })
    );
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, &mut rng(9)).with_message_bytes_max(10);
    assert_eq!(
        server.handle_client_first(b"n,,n=user,r=abc"),
        Err(ScramError::MessageTooLarge { bytes: 15, max: 10 })
    );
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, &mut rng(9)).with_message_bytes_max(20);
    server.handle_client_first(b"n,,n=user,r=abc").unwrap();
    server
        .server_first(Some(&rfc_credential()), &decoys())
        .unwrap();
    assert!(matches!(
        server.handle_client_final(RFC7677_CLIENT_FINAL.as_bytes()),
        Err(ScramError::MessageTooLarge { max: 20, .. })
    ));
}

#[test]
fn server_nonce_comes_from_the_random_source() {
    let nonce_of = |seed| {
        let (_, first) = {
            let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(seed));
            server.handle_client_first(b"n,,n=user,r=abc").unwrap();
            let first = server
                .server_first(Some(&rfc_credential()), &decoys())
                .unwrap();
            (server, String::from_utf8(first).unwrap())
        };
        first.split(',').next().unwrap().to_owned()
    };
    assert_eq!(nonce_of(1), nonce_of(1));
    assert_ne!(nonce_of(1), nonce_of(2));
    let nonce = nonce_of(1);
    let server_part = nonce.strip_prefix("r=abc").unwrap();
    assert_eq!(server_part.len(), 32);
    assert!(server_part.bytes().all(is_printable));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_first_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(10));
        let _ = server.handle_client_first(&bytes);
    }

    #[test]
    fn client_first_grammar_like_never_panics(text in "[ny p=a,=2C3D]{0,12}(n=|r=|m=|a=|,|=|[a-z]){0,16}") {
        let mut server = ScramServer::new(ScramMechanism::Sha256, &mut rng(10));
        if server.handle_client_first(text.as_bytes()).is_ok() {
            prop_assert!(server.server_first(None, &decoys()).is_ok());
        }
    }

    #[test]
    fn client_final_never_panics_nor_authenticates(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        tail in "[a-zA-Z0-9+/=,]{0,120}",
    ) {
        for message in [bytes.clone(), format!("c=biws,r=abc{RFC7677_SERVER_NONCE},{tail}").into_bytes()] {
            let mut server = ScramServer::with_server_nonce(ScramMechanism::Sha256, RFC7677_SERVER_NONCE.to_owned());
            server.handle_client_first(b"n,,n=user,r=abc").unwrap();
            server.server_first(Some(&rfc_credential()), &decoys()).unwrap();
            prop_assert!(server.handle_client_final(&message).is_err());
            prop_assert!(!server.is_complete());
        }
    }

    #[test]
    fn plain_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_plain(&bytes, SASL_MESSAGE_BYTES_MAX_DEFAULT);
    }
}

#[test]
fn plain_parsing_follows_kafka() {
    let ok = parse_plain(b"\0alice\0pw", SASL_MESSAGE_BYTES_MAX_DEFAULT).unwrap();
    assert_eq!(
        (
            ok.authzid.as_str(),
            ok.username.as_str(),
            ok.password.as_str()
        ),
        ("", "alice", "pw")
    );
    let ok = parse_plain(
        "alice\0alice\0pé".as_bytes(),
        SASL_MESSAGE_BYTES_MAX_DEFAULT,
    )
    .unwrap();
    assert_eq!(ok.password, "pé");
    assert!(!format!("{ok:?}").contains("pé"));
    let cases: &[(&[u8], PlainError)] = &[
        (b"", PlainError::Tokens { tokens: 1 }),
        (b"alice\0pw", PlainError::Tokens { tokens: 2 }),
        (b"\0alice\0pw\0", PlainError::Tokens { tokens: 4 }),
        (b"\0alice\0p\0w\0x", PlainError::Tokens { tokens: 4 }),
        (b"\0\0pw", PlainError::UsernameMissing),
        (b"\0alice\0", PlainError::PasswordMissing),
        (b"bob\0alice\0pw", PlainError::AuthorizationIdMismatch),
        (b"\0al\xffice\0pw", PlainError::NotUtf8),
    ];
    for (message, expected) in cases {
        assert_eq!(
            parse_plain(message, SASL_MESSAGE_BYTES_MAX_DEFAULT).as_ref(),
            Err(expected),
            "{message:?}"
        );
    }
    assert_eq!(
        parse_plain(b"\0alice\0pw", 8),
        Err(PlainError::MessageTooLarge { bytes: 9, max: 8 })
    );
    let err = parse_plain(b"\0alice\0", 100).unwrap_err().to_string();
    assert_eq!(err, "Authentication failed: password not specified");
}

#[test]
fn plain_password_verifies_against_scram_credentials() {
    for m in ScramMechanism::ALL {
        let credential = ScramCredential::generate(m, "pencil", 4096, &mut rng(11)).unwrap();
        assert!(verify_plain_password(&credential, "pencil"));
        assert!(!verify_plain_password(&credential, "pencil "));
        assert!(!verify_plain_password(&credential, ""));
    }
    assert!(verify_plain_password(&rfc_credential(), "pencil"));

    let decoys = decoys();
    let message = parse_plain(b"\0user\0pencil", 100).unwrap();
    let user = authenticate_plain(
        &message,
        Some(&rfc_credential()),
        ScramMechanism::Sha256,
        &decoys,
    )
    .unwrap();
    assert_eq!(user.username(), "user");
    assert_eq!(user.mechanism(), SaslMechanism::Plain);
    let wrong = parse_plain(b"\0user\0pencils", 100).unwrap();
    assert_eq!(
        authenticate_plain(
            &wrong,
            Some(&rfc_credential()),
            ScramMechanism::Sha256,
            &decoys
        ),
        Err(PlainError::InvalidCredentials)
    );
    // Unknown user: the same error, after the same work.
    assert_eq!(
        authenticate_plain(&message, None, ScramMechanism::Sha256, &decoys),
        Err(PlainError::InvalidCredentials)
    );
}
