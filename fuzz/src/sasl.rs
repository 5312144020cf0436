//! `sasl`: the SASL messages an unauthenticated client sends (`ledge_node::security::scram`).
//! The first input byte picks the message (`% 3`) and the SCRAM mechanism (`/ 3 % 2`); the rest
//! is the message:
//!
//! - 0: SCRAM `client-first-message` to a fresh `ScramServer`;
//! - 1: SCRAM `client-final-message` to an exchange that has answered [`CLIENT_FIRST`] with a
//!   real credential;
//! - 2: SASL PLAIN (`parse_plain`).
//!
//! Oracles besides "no panic": an accepted client-first names a user whose escaped form is the
//! message's `n=`, and the exchange goes on (decoy server-first) without ever authenticating; a
//! failed exchange stays failed; no client-final authenticates without the password (the
//! fuzzer cannot forge a proof, so a success is a bypass); an accepted PLAIN message has a
//! non-empty user and password, an authzid empty or equal to the user, and is exactly
//! `authzid NUL user NUL password`.

use ledge_node::security::scram::{
    DecoyCredentials, SASL_MESSAGE_BYTES_MAX_DEFAULT, ScramCredential, ScramError, ScramMechanism,
    ScramServer, escape_saslname, parse_plain,
};

/// The client-first message the client-final inputs answer.
pub const CLIENT_FIRST: &[u8] = b"n,,n=user,r=fuzz";

/// A fixed "random" source: the server nonce is the same in every run, so corpus files keep
/// matching it.
struct FixedRandom;

impl rand::RngCore for FixedRandom {
    fn next_u32(&mut self) -> u32 {
        0x5a5a_5a5a
    }

    fn next_u64(&mut self) -> u64 {
        0x5a5a_5a5a_5a5a_5a5a
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0x5a);
    }
}

fn server(mechanism: ScramMechanism) -> ScramServer {
    ScramServer::new(mechanism, &mut FixedRandom)
}

fn decoys() -> DecoyCredentials {
    DecoyCredentials::new([0x17; 32], 4096).unwrap()
}

/// A real credential, made from a fixed SaltedPassword (no PBKDF2 per input).
fn credential(mechanism: ScramMechanism) -> ScramCredential {
    ScramCredential::from_salted_password(
        mechanism,
        b"fuzz salt".to_vec(),
        &vec![0x42; mechanism.digest_bytes()],
        4096,
    )
    .unwrap()
}

fn split(data: &[u8]) -> Option<(usize, ScramMechanism, &[u8])> {
    let (&selector, message) = data.split_first()?;
    let mechanism = ScramMechanism::ALL[usize::from(selector / 3) % 2];
    Some((usize::from(selector % 3), mechanism, message))
}

/// An exchange awaiting a client-final message for [`CLIENT_FIRST`].
fn awaiting_final(mechanism: ScramMechanism) -> ScramServer {
    let mut server = server(mechanism);
    server.handle_client_first(CLIENT_FIRST).unwrap();
    server
        .server_first(Some(&credential(mechanism)), &decoys())
        .unwrap();
    server
}

/// The server-first message that [`CLIENT_FIRST`] gets (the seeds' nonce comes from it).
pub fn server_first(mechanism: ScramMechanism) -> Vec<u8> {
    let mut server = server(mechanism);
    server.handle_client_first(CLIENT_FIRST).unwrap();
    server
        .server_first(Some(&credential(mechanism)), &decoys())
        .unwrap()
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Some((kind, mechanism, message)) = split(data) else {
        return;
    };
    match kind {
        0 => {
            let mut server = server(mechanism);
            match server.handle_client_first(message) {
                Ok(need) => {
                    assert_eq!(need.mechanism, mechanism);
                    let escaped = format!(",n={},", escape_saslname(&need.username));
                    assert!(
                        message
                            .windows(escaped.len())
                            .any(|w| w == escaped.as_bytes()),
                        "accepted name {escaped} is not in the message"
                    );
                    let first = server.server_first(None, &decoys()).unwrap();
                    assert!(first.starts_with(b"r="));
                    assert!(server.handle_client_final(message).is_err());
                    assert!(!server.is_complete());
                }
                Err(_) => {
                    assert!(server.handle_client_first(CLIENT_FIRST).is_err());
                }
            }
        }
        1 => {
            let mut server = awaiting_final(mechanism);
            assert!(
                server.handle_client_final(message).is_err(),
                "a client-final message authenticated without the password"
            );
            assert!(!server.is_complete());
        }
        _ => {
            if let Ok(plain) = parse_plain(message, SASL_MESSAGE_BYTES_MAX_DEFAULT) {
                assert!(!plain.username.is_empty() && !plain.password.is_empty());
                assert!(plain.authzid.is_empty() || plain.authzid == plain.username);
                let again = [
                    plain.authzid.as_bytes(),
                    b"\0",
                    plain.username.as_bytes(),
                    b"\0",
                    plain.password.as_bytes(),
                ]
                .concat();
                assert_eq!(again, message);
            }
        }
    }
}

/// Whether the decoder `run` picks for `data` parses it (for a client-final: gets as far as the
/// proof check).
pub fn accepted(data: &[u8]) -> bool {
    let Some((kind, mechanism, message)) = split(data) else {
        return false;
    };
    match kind {
        0 => server(mechanism).handle_client_first(message).is_ok(),
        1 => {
            awaiting_final(mechanism).handle_client_final(message)
                == Err(ScramError::InvalidCredentials)
        }
        _ => parse_plain(message, SASL_MESSAGE_BYTES_MAX_DEFAULT).is_ok(),
    }
}
