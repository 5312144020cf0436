//! SASL on real sockets, frames written by hand: an exchange over SaslAuthenticate and one
//! over raw tokens (the reader switches framing after SaslHandshake v0), a request before
//! authentication closing the connection with no answer, a failed exchange answered then
//! closed, and SASL off answering as Kafka's non-SASL listener.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::*;
use crate::kafka::apis::KafkaRequest;
use crate::kafka::sasl::tests::{ALICE_PASSWORD, ScramClient, sasl_settings};
use crate::security::scram::ScramMechanism;

async fn start_sasl(allow_anonymous: bool) -> Running {
    let mut listener = KafkaListener::bind(any_port(), KafkaSettings::default()).unwrap();
    listener.sasl(Arc::new(sasl_settings(allow_anonymous)));
    start_listener(listener).await
}

fn with_length(frame: Bytes) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(frame.len() as i32);
    out.put_slice(&frame);
    out.freeze()
}

fn handshake_frame(version: i16, correlation_id: i32, mechanism: &str) -> Bytes {
    let mut body = SaslHandshakeRequest::default();
    body.mechanism = StrBytes::from_string(mechanism.to_owned());
    with_length(request_frame(
        ApiKey::SaslHandshake,
        version,
        correlation_id,
        &KafkaRequest::SaslHandshake(body),
    ))
}

fn authenticate_frame(correlation_id: i32, token: &[u8]) -> Bytes {
    let mut body = SaslAuthenticateRequest::default();
    body.auth_bytes = Bytes::copy_from_slice(token);
    with_length(request_frame(
        ApiKey::SaslAuthenticate,
        2,
        correlation_id,
        &KafkaRequest::SaslAuthenticate(body),
    ))
}

async fn handshake_answer(stream: &mut TcpStream, version: i16) -> SaslHandshakeResponse {
    let frame = read_response(stream).await.expect("a handshake answer");
    let (_, mut body) = split_response(ApiKey::SaslHandshake, version, &frame);
    SaslHandshakeResponse::decode(&mut body, version).unwrap()
}

async fn authenticate_answer(stream: &mut TcpStream) -> SaslAuthenticateResponse {
    let frame = read_response(stream).await.expect("an authenticate answer");
    let (_, mut body) = split_response(ApiKey::SaslAuthenticate, 2, &frame);
    SaslAuthenticateResponse::decode(&mut body, 2).unwrap()
}

async fn metadata_served(stream: &mut TcpStream, correlation_id: i32) {
    stream
        .write_all(&prefixed(ApiKey::Metadata, 12, correlation_id))
        .await
        .unwrap();
    let answer = read_response(stream).await.expect("Metadata answered");
    assert_eq!(
        split_response(ApiKey::Metadata, 12, &answer).0,
        correlation_id
    );
}

// Goal: with anonymous clients refused, a request before authentication closes the
// connection without an answer, while ApiVersions is answered; a failed exchange is
// answered with SASL_AUTHENTICATION_FAILED and then the connection closes.
#[tokio::test]
async fn unauthenticated_requests_and_failed_exchanges_close_the_connection() {
    let running = start_sasl(false).await;
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&prefixed(ApiKey::ApiVersions, 3, 1))
        .await
        .unwrap();
    let answer = read_response(&mut stream).await.unwrap();
    let (_, mut body) = split_response(ApiKey::ApiVersions, 3, &answer);
    let versions = ApiVersionsResponse::decode(&mut body, 3).unwrap();
    for (api, max) in [(ApiKey::SaslHandshake, 1), (ApiKey::SaslAuthenticate, 2)] {
        let listed = versions
            .api_keys
            .iter()
            .find(|entry| entry.api_key == api as i16)
            .expect("SASL APIs advertised");
        assert_eq!((listed.min_version, listed.max_version), (0, max));
    }
    stream
        .write_all(&prefixed(ApiKey::Metadata, 12, 2))
        .await
        .unwrap();
    assert!(closed(&mut stream).await, "Metadata before authentication");

    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(1, 1, "SCRAM-SHA-256"))
        .await
        .unwrap();
    assert_eq!(handshake_answer(&mut stream, 1).await.error_code, 0);
    let client = ScramClient::new(ScramMechanism::Sha256, "alice");
    stream
        .write_all(&authenticate_frame(2, &client.first()))
        .await
        .unwrap();
    let first = authenticate_answer(&mut stream).await;
    assert_eq!(first.error_code, 0);
    stream
        .write_all(&authenticate_frame(
            3,
            &client.last(&first.auth_bytes, "wrong"),
        ))
        .await
        .unwrap();
    let last = authenticate_answer(&mut stream).await;
    assert_eq!(last.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert!(closed(&mut stream).await, "closed after a failed exchange");

    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

// Goal: a SCRAM exchange over SaslAuthenticate, then one over raw tokens after a v0
// handshake (the reader takes the frames between as tokens, not requests), each admitting
// the connection's next request.
#[tokio::test]
async fn scram_over_sasl_authenticate_and_over_raw_tokens() {
    let running = start_sasl(false).await;
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(1, 1, "SCRAM-SHA-512"))
        .await
        .unwrap();
    let handshake = handshake_answer(&mut stream, 1).await;
    assert_eq!(handshake.error_code, 0);
    let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(
        offered,
        ["SCRAM-SHA-256", "SCRAM-SHA-512"],
        "no PLAIN on plaintext"
    );
    let client = ScramClient::new(ScramMechanism::Sha512, "alice");
    stream
        .write_all(&authenticate_frame(2, &client.first()))
        .await
        .unwrap();
    let first = authenticate_answer(&mut stream).await;
    stream
        .write_all(&authenticate_frame(
            3,
            &client.last(&first.auth_bytes, ALICE_PASSWORD),
        ))
        .await
        .unwrap();
    let last = authenticate_answer(&mut stream).await;
    assert_eq!(last.error_code, 0, "{last:?}");
    metadata_served(&mut stream, 4).await;

    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(0, 1, "SCRAM-SHA-256"))
        .await
        .unwrap();
    assert_eq!(handshake_answer(&mut stream, 0).await.error_code, 0);
    let client = ScramClient::new(ScramMechanism::Sha256, "alice");
    stream
        .write_all(&with_length(Bytes::from(client.first())))
        .await
        .unwrap();
    let first = read_response(&mut stream).await.expect("raw server-first");
    stream
        .write_all(&with_length(Bytes::from(
            client.last(&first[4..], ALICE_PASSWORD),
        )))
        .await
        .unwrap();
    let last = read_response(&mut stream).await.expect("raw server-final");
    assert!(last[4..].starts_with(b"v="));
    metadata_served(&mut stream, 2).await;

    // A wrong raw exchange closes with no answer.
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(0, 1, "SCRAM-SHA-256"))
        .await
        .unwrap();
    assert_eq!(handshake_answer(&mut stream, 0).await.error_code, 0);
    stream
        .write_all(&with_length(Bytes::from_static(b"not a client-first")))
        .await
        .unwrap();
    assert!(closed(&mut stream).await);

    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

// Goal: with SASL off, a SaslHandshake is answered ILLEGAL_SASL_STATE with no mechanisms and
// the connection stays, as on Kafka's non-SASL listeners.
#[tokio::test]
async fn with_sasl_off_a_handshake_is_an_illegal_state() {
    let running = start(KafkaSettings::default()).await;
    let mut stream = TcpStream::connect(running.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(1, 1, "SCRAM-SHA-256"))
        .await
        .unwrap();
    let answer = handshake_answer(&mut stream, 1).await;
    assert_eq!(answer.error_code, 34, "ILLEGAL_SASL_STATE");
    assert!(answer.mechanisms.is_empty());
    metadata_served(&mut stream, 2).await;
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

/// ApiVersions v3 whose client software name makes it `bytes` long or more.
fn large_api_versions(correlation_id: i32, bytes: usize) -> Bytes {
    let mut body = kafka_protocol::messages::ApiVersionsRequest::default();
    body.client_software_name = StrBytes::from_string("x".repeat(bytes));
    body.client_software_version = StrBytes::from_static_str("1");
    with_length(request_frame(
        ApiKey::ApiVersions,
        3,
        correlation_id,
        &KafkaRequest::ApiVersions(body),
    ))
}

// Goal: before authentication, when anonymous clients are refused, a frame over
// `kafka.sasl_receive_bytes_max` (512 KiB, Kafka's `sasl.server.max.receive.size`) closes
// the connection before it is buffered; once authenticated, or where anonymous clients are
// served, `kafka.frame_bytes_max` applies. Method: ApiVersions (served before
// authentication) made 600 KiB long by its client software name.
#[tokio::test]
async fn frames_before_authentication_are_bounded_by_sasl_receive_bytes_max() {
    const LARGE: usize = 600 * 1024;
    let refusing = start_sasl(false).await;
    let mut stream = TcpStream::connect(refusing.plain()).await.unwrap();
    stream
        .write_all(&large_api_versions(1, LARGE))
        .await
        .unwrap_or(());
    assert!(
        closed(&mut stream).await,
        "a large frame before authentication"
    );

    let mut stream = TcpStream::connect(refusing.plain()).await.unwrap();
    stream
        .write_all(&handshake_frame(1, 1, "SCRAM-SHA-256"))
        .await
        .unwrap();
    handshake_answer(&mut stream, 1).await;
    let client = ScramClient::new(ScramMechanism::Sha256, "alice");
    stream
        .write_all(&authenticate_frame(2, &client.first()))
        .await
        .unwrap();
    let first = authenticate_answer(&mut stream).await;
    stream
        .write_all(&authenticate_frame(
            3,
            &client.last(&first.auth_bytes, ALICE_PASSWORD),
        ))
        .await
        .unwrap();
    assert_eq!(authenticate_answer(&mut stream).await.error_code, 0);
    stream
        .write_all(&large_api_versions(4, LARGE))
        .await
        .unwrap();
    let answer = read_response(&mut stream)
        .await
        .expect("answered once authenticated");
    assert_eq!(split_response(ApiKey::ApiVersions, 3, &answer).0, 4);
    let _ = refusing.stop.send(true);
    refusing.serving.await.unwrap();

    let allowing = start_sasl(true).await;
    let mut stream = TcpStream::connect(allowing.plain()).await.unwrap();
    stream
        .write_all(&large_api_versions(1, LARGE))
        .await
        .unwrap();
    let answer = read_response(&mut stream)
        .await
        .expect("answered: anonymous allowed");
    assert_eq!(split_response(ApiKey::ApiVersions, 3, &answer).0, 1);
    let _ = allowing.stop.send(true);
    allowing.serving.await.unwrap();
}
