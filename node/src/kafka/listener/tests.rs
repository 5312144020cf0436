//! The listener on real TCP sockets: responses in request order, bad frames close only their
//! own connection, the connection limit, and a busy port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;
use crate::broker::BrokerConfig;
use crate::clock::SimClock;
use crate::kafka::codec::tests::{default_request, request_frame, split_response};
use crate::sim::SimDisk;

struct Running {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    serving: tokio::task::JoinHandle<()>,
}

async fn start(settings: KafkaSettings) -> Running {
    let broker = Broker::open(
        SimDisk::new(7),
        Path::new("/data"),
        BrokerConfig::default(),
        Arc::new(SimClock::new(1_000_000)),
    )
    .await
    .unwrap();
    let listener = KafkaListener::bind("127.0.0.1:0".parse().unwrap(), settings).unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = watch::channel(false);
    let serving = tokio::spawn(listener.serve(Arc::new(broker), stopped));
    Running {
        address,
        stop,
        serving,
    }
}

/// A request with its length prefix.
fn prefixed(api: ApiKey, version: i16, correlation_id: i32) -> Bytes {
    let frame = request_frame(api, version, correlation_id, &default_request(api));
    let mut out = BytesMut::new();
    out.put_i32(frame.len() as i32);
    out.put_slice(&frame);
    out.freeze()
}

/// Reads one response frame, length prefix included; `None` at the end of the stream.
async fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(length) as usize];
    stream.read_exact(&mut body).await.ok()?;
    let mut frame = BytesMut::from(&length[..]);
    frame.put_slice(&body);
    Some(frame.freeze())
}

/// Whether the node closed the connection: the next read finds its end.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let running = start(KafkaSettings::default()).await;
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    // Three requests in one write, the slow one (Metadata) in the middle.
    let mut batch = BytesMut::new();
    batch.put_slice(&prefixed(ApiKey::ApiVersions, 3, 1));
    batch.put_slice(&prefixed(ApiKey::Metadata, 12, 2));
    batch.put_slice(&prefixed(ApiKey::ApiVersions, 0, 3));
    stream.write_all(&batch).await.unwrap();
    let first = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::ApiVersions, 3, &first);
    assert_eq!(correlation, 1);
    ApiVersionsResponse::decode(&mut body, 3).unwrap();
    let second = read_response(&mut stream).await.unwrap();
    let (correlation, mut body) = split_response(ApiKey::Metadata, 12, &second);
    assert_eq!(correlation, 2);
    let metadata = MetadataResponse::decode(&mut body, 12).unwrap();
    assert_eq!(metadata.brokers[0].port, i32::from(running.address.port()));
    let third = read_response(&mut stream).await.unwrap();
    assert_eq!(split_response(ApiKey::ApiVersions, 0, &third).0, 3);
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn bad_frames_close_their_connection_only() {
    let settings = KafkaSettings {
        frame_bytes_max: 64 * 1024,
        ..KafkaSettings::default()
    };
    let running = start(settings).await;
    let mut healthy = TcpStream::connect(running.address).await.unwrap();
    let bad_frames: Vec<Vec<u8>> = vec![
        // A negative length.
        (-1i32).to_be_bytes().to_vec(),
        // A length over frame_bytes_max: refused before anything is allocated or read.
        (i32::MAX).to_be_bytes().to_vec(),
        [&(64 * 1024 + 1i32).to_be_bytes()[..], &[0; 16]].concat(),
        // An unknown API key.
        [&8i32.to_be_bytes()[..], &[0x27, 0x0f, 0, 0, 0, 0, 0, 1]].concat(),
        // Produce at version 0 (served from 3).
        [&8i32.to_be_bytes()[..], &[0, 0, 0, 0, 0, 0, 0, 1]].concat(),
        // Metadata claiming two billion topics.
        {
            let mut frame = BytesMut::new();
            frame.put_i16(ApiKey::Metadata as i16);
            frame.put_i16(1);
            frame.put_i32(1);
            frame.put_i16(-1);
            frame.put_i32(i32::MAX);
            let mut out = (frame.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&frame);
            out
        },
    ];
    for (index, bytes) in bad_frames.iter().enumerate() {
        let mut stream = TcpStream::connect(running.address).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        assert!(closed(&mut stream).await, "bad frame {index}: still open");
        // The other connection is still served.
        healthy
            .write_all(&prefixed(ApiKey::ApiVersions, 3, index as i32))
            .await
            .unwrap();
        let answer = read_response(&mut healthy).await.unwrap();
        assert_eq!(
            split_response(ApiKey::ApiVersions, 3, &answer).0,
            index as i32
        );
    }
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn requests_before_a_bad_frame_are_answered() {
    let running = start(KafkaSettings::default()).await;
    let mut stream = TcpStream::connect(running.address).await.unwrap();
    let mut bytes = BytesMut::new();
    bytes.put_slice(&prefixed(ApiKey::ApiVersions, 3, 11));
    bytes.put_i32(-5);
    stream.write_all(&bytes).await.unwrap();
    let answer = read_response(&mut stream).await.unwrap();
    assert_eq!(split_response(ApiKey::ApiVersions, 3, &answer).0, 11);
    assert!(closed(&mut stream).await);
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let settings = KafkaSettings {
        connections_max: 1,
        ..KafkaSettings::default()
    };
    let running = start(settings).await;
    let mut first = TcpStream::connect(running.address).await.unwrap();
    first
        .write_all(&prefixed(ApiKey::ApiVersions, 3, 1))
        .await
        .unwrap();
    read_response(&mut first).await.unwrap();
    let mut second = TcpStream::connect(running.address).await.unwrap();
    assert!(closed(&mut second).await, "over the limit");
    // Once the first is gone, a new connection is served.
    drop(first);
    let mut served = None;
    for attempt in 0..50 {
        let mut third = TcpStream::connect(running.address).await.unwrap();
        let _ = third
            .write_all(&prefixed(ApiKey::ApiVersions, 3, attempt))
            .await;
        if let Some(answer) = read_response(&mut third).await {
            served = Some(answer);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        served.is_some(),
        "a connection is served after the first closed"
    );
    let _ = running.stop.send(true);
    running.serving.await.unwrap();
}

#[test]
fn a_busy_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let Err(error) = KafkaListener::bind(address, KafkaSettings::default()) else {
        panic!("bound a busy port");
    };
    let message = error.to_string();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(message.contains("[kafka] listen"), "{message}");
    assert!(message.contains("enabled = false"), "{message}");
}
