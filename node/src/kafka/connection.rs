//! One Kafka connection: a reader task that frames and decodes requests, and the loop that
//! answers them one at a time, in order, writing each response before taking the next
//! request (Kafka's broker does the same: clients pipeline and match answers by order).
//!
//! Memory: a frame's length is checked against `frame_bytes_max` and reserved from the
//! listener's bytes-in-flight budget before a byte of it is buffered; at most
//! `requests_in_flight_per_connection_max` decoded requests wait behind the one being
//! answered. A frame that does not decode ends the reading: requests before it are still
//! answered, then the connection closes.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::{mpsc, watch};

use super::codec::{self, DecodedRequest};
use super::dispatch::KafkaService;
use crate::clock::Clock;
use crate::storage::Disk;
use crate::transport::budget::{ConnectionBudget, Reservation};

/// What the reader hands to the answering loop.
enum Incoming {
    /// A request, with the reservation that covers its frame until it is answered.
    Request(Box<DecodedRequest>, Reservation),
    /// ApiVersions at a version the node does not serve: answer the fallback.
    ApiVersionsFallback { correlation_id: i32 },
}

/// Serves one connection (plaintext TCP or TLS over it) until the client closes it, a
/// frame does not decode, or the node shuts down (the request being answered is finished
/// first), or it sends no request for `kafka.connections_max_idle_ms` of `clock`'s time.
/// `remote` is the client's address, for the logs.
pub(crate) async fn serve_connection<D: Disk, S>(
    stream: S,
    remote: Option<SocketAddr>,
    clock: Arc<dyn Clock>,
    service: Arc<KafkaService<D>>,
    budget: ConnectionBudget,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let settings = service.settings();
    let (incoming, mut requests) =
        mpsc::channel(settings.requests_in_flight_per_connection_max.max(1));
    let reading = tokio::spawn(read_requests(
        reader,
        remote,
        incoming,
        settings.frame_bytes_max,
        budget,
    ));
    let idle_max = settings.connections_max_idle;
    loop {
        // Idle: no request read since the last one was answered (Kafka's
        // `connections.max.idle.ms`); a client that still wants the connection sends one.
        let next = tokio::select! {
            next = crate::clock::timeout(&*clock, idle_max, requests.recv()) => next,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let Ok(next) = next else {
            tracing::debug!(
                ?remote,
                idle_ms = idle_max.as_millis(),
                "kafka connection closed: idle for kafka.connections_max_idle_ms"
            );
            break;
        };
        let Some(next) = next else { break };
        let frame = match next {
            Incoming::Request(request, reservation) => {
                let correlation_id = request.header.correlation_id;
                let version = request.version;
                let answer = service.handle(*request).await;
                drop(reservation);
                match answer {
                    // acks=0 produce: Kafka sends nothing back.
                    None => continue,
                    Some(response) => codec::encode_response(correlation_id, version, &response),
                }
            }
            Incoming::ApiVersionsFallback { correlation_id } => {
                codec::api_versions_fallback(correlation_id)
            }
        };
        match frame {
            Ok(frame) => {
                if let Err(error) = writer.write_all(&frame).await {
                    tracing::debug!(?remote, %error, "kafka connection: write failed");
                    break;
                }
            }
            Err(error) => {
                tracing::error!(?remote, %error, "kafka connection closed: response did not encode");
                break;
            }
        }
    }
    reading.abort();
    let _ = writer.shutdown().await;
}

/// Reads and decodes frames until the stream ends or a frame is refused.
async fn read_requests<S: AsyncRead>(
    mut reader: ReadHalf<S>,
    remote: Option<SocketAddr>,
    incoming: mpsc::Sender<Incoming>,
    frame_bytes_max: u32,
    budget: ConnectionBudget,
) {
    loop {
        // An error: the client closed the connection (or it broke), nothing more to read.
        let Ok(length) = reader.read_i32().await else {
            return;
        };
        let Some(bytes) = frame_bytes(length, frame_bytes_max) else {
            tracing::warn!(
                ?remote,
                length,
                frame_bytes_max,
                "kafka connection closed: request frame length outside 0..=kafka.frame_bytes_max"
            );
            return;
        };
        let reservation = match budget.reserve(bytes).await {
            Ok(reservation) => reservation,
            Err(error) => {
                tracing::warn!(?remote, %error, "kafka connection closed: request frame refused");
                return;
            }
        };
        let mut frame = BytesMut::zeroed(bytes);
        if reader.read_exact(&mut frame).await.is_err() {
            return;
        }
        let next = match codec::decode_request(Bytes::from(frame)) {
            Ok(request) => Incoming::Request(Box::new(request), reservation),
            Err(error) => match error.api_versions_fallback() {
                Some(correlation_id) => Incoming::ApiVersionsFallback { correlation_id },
                None => {
                    tracing::info!(?remote, %error, "kafka connection closed: request refused");
                    return;
                }
            },
        };
        if incoming.send(next).await.is_err() {
            return;
        }
    }
}

/// The frame's length in bytes, if it is one the node reads.
fn frame_bytes(length: i32, frame_bytes_max: u32) -> Option<usize> {
    let length = u32::try_from(length).ok()?;
    (length <= frame_bytes_max).then_some(length as usize)
}

#[cfg(test)]
mod tests {
    use super::frame_bytes;

    #[test]
    fn frame_lengths_are_checked_before_allocation() {
        assert_eq!(frame_bytes(-1, 100), None);
        assert_eq!(frame_bytes(i32::MIN, 100), None);
        assert_eq!(frame_bytes(101, 100), None);
        assert_eq!(frame_bytes(100, 100), Some(100));
        assert_eq!(frame_bytes(0, 100), Some(0));
    }
}
