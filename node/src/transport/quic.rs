//! The QUIC listener: quinn + rustls (ring), ALPN `ledge/1`, one request per bidirectional
//! stream.
//!
//! Limits, all configurable: connections (beyond it a connection attempt is refused),
//! requests in flight per connection (QUIC's stream limit, so a client that opens thousands
//! of streams is held back by flow control rather than served out of memory), and frame
//! size (a larger request is answered `FrameTooLarge` and its stream stopped). A frame that
//! does not decode is answered `InvalidRequest` (or `UnknownApiKey`, `UnsupportedVersion`)
//! on its own stream; the connection and every other client carry on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{self, ErrorCode, Response};
use tokio::sync::{Semaphore, watch};

use super::tls::ServerTls;
use crate::broker::Broker;
use crate::storage::Disk;

/// Transport limits (see docs/OPERATIONS.md).
#[derive(Clone, Debug)]
pub struct TransportLimits {
    /// Most open connections.
    pub connections_max: usize,
    /// Most requests (streams) in flight per connection.
    pub requests_in_flight_per_connection_max: u32,
    /// Largest request frame.
    pub frame_bytes_max: u32,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// UDP socket send and receive buffer size.
    pub udp_buffer_bytes: usize,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        Self {
            connections_max: 1024,
            requests_in_flight_per_connection_max: 256,
            frame_bytes_max: wire::FRAME_BYTES_MAX_DEFAULT,
            idle_timeout: Duration::from_secs(60),
            udp_buffer_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Binding or configuring the UDP socket failed.
    // The OS error is part of the message and deliberately not a `source`: printed as a
    // chain (`{:#}`), it would otherwise appear twice.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// A bound QUIC listener.
pub struct QuicServer {
    endpoint: quinn::Endpoint,
    limits: TransportLimits,
}

impl QuicServer {
    /// Binds the UDP socket and sets up TLS 1.3 with ALPN `ledge/1`: [`bind_socket`],
    /// [`server_config`] and [`QuicServer::new`] in one call.
    ///
    /// `reset_key` must stay the same across restarts (see [`load_or_create_reset_key`]): a
    /// restarted node can then reset clients' old connections at once instead of leaving
    /// them to their idle timeout.
    pub fn bind(
        addr: SocketAddr,
        tls: ServerTls,
        limits: TransportLimits,
        reset_key: [u8; 32],
    ) -> Result<Self, TransportError> {
        let socket = bind_socket(addr, &limits)?;
        let config = server_config(tls, &limits)?;
        Self::new(socket, config, limits, reset_key)
    }

    /// Starts QUIC on a socket from [`bind_socket`] with a config from [`server_config`].
    /// The node binds first and opens its data directory after, so a busy port is reported
    /// before anything is written there (issue 11, bug 2).
    pub fn new(
        socket: std::net::UdpSocket,
        config: quinn::ServerConfig,
        limits: TransportLimits,
        reset_key: [u8; 32],
    ) -> Result<Self, TransportError> {
        let addr = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_key);
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::new(Arc::new(reset_key)),
            Some(config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|cause| TransportError::Bind { addr, cause })?;
        Ok(Self { endpoint, limits })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Serves until `shutdown` turns true, then stops accepting, waits up to the grace
    /// period for requests in flight, and closes every connection.
    pub async fn serve<D: Disk>(self, broker: Arc<Broker<D>>, mut shutdown: watch::Receiver<bool>) {
        let connections = Arc::new(Semaphore::new(self.limits.connections_max));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let limits = Arc::new(self.limits.clone());
        loop {
            let incoming = tokio::select! {
                incoming = self.endpoint.accept() => incoming,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let Some(incoming) = incoming else { break };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                tracing::warn!(remote = %incoming.remote_address(), limit = self.limits.connections_max, "connection refused: connections.max reached");
                incoming.refuse();
                continue;
            };
            let broker = Arc::clone(&broker);
            let in_flight = Arc::clone(&in_flight);
            let limits = Arc::clone(&limits);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::debug!(%error, "handshake failed");
                        return;
                    }
                };
                serve_connection(connection, broker, in_flight, limits, shutdown).await;
            });
        }
        // Graceful: no new connections or streams; let requests in flight finish.
        self.endpoint.set_server_config(None);
        let clock = broker.clock();
        let deadline = crate::clock::deadline_after(clock.now(), self.limits.shutdown_grace);
        while in_flight.load(Ordering::SeqCst) > 0 && clock.now() < deadline {
            crate::clock::sleep(&*clock, Duration::from_millis(10)).await;
        }
        self.endpoint.close(0u32.into(), b"node shutting down");
        let _ =
            crate::clock::timeout(&*clock, Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// Binds the listener's UDP socket (with enlarged buffers: loopback drops datagrams at full
/// rate with the defaults). Needs no disk, so the node does it before touching its data
/// directory.
pub fn bind_socket(
    addr: SocketAddr,
    limits: &TransportLimits,
) -> Result<std::net::UdpSocket, TransportError> {
    let bind_error = |cause| TransportError::Bind { addr, cause };
    let domain = if addr.is_ipv6() {
        socket2::Domain::IPV6
    } else {
        socket2::Domain::IPV4
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(bind_error)?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = socket.set_recv_buffer_size(limits.udp_buffer_bytes);
    let _ = socket.set_send_buffer_size(limits.udp_buffer_bytes);
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    Ok(socket.into())
}

/// The QUIC server config: TLS 1.3 only, ALPN `ledge/1`, the transport limits. Refuses a
/// key that does not fit the certificate, before the node touches its data directory.
pub fn server_config(
    tls: ServerTls,
    limits: &TransportLimits,
) -> Result<quinn::ServerConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|error| TransportError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(tls.chain, tls.key)
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    crypto.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|error| TransportError::Tls(error.to_string()))?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(limits.requests_in_flight_per_connection_max.into())
        .max_concurrent_uni_streams(0u8.into())
        .max_idle_timeout(limits.idle_timeout.try_into().ok())
        .stream_receive_window((8u32 * 1024 * 1024).into())
        .receive_window((32u32 * 1024 * 1024).into())
        .send_window(32 * 1024 * 1024);
    server_config.transport_config(Arc::new(transport));
    Ok(server_config)
}

/// The key for QUIC stateless resets, kept in `<data-dir>/quic-reset.key` (created once,
/// mode 0600, written durably). On a read-only data directory without one, a key for this
/// run only is used (clients of the previous run then wait for their idle timeout).
pub fn load_or_create_reset_key(
    data_dir: &std::path::Path,
) -> Result<[u8; 32], crate::storage::DiskError> {
    use crate::storage::DiskError;
    let path = data_dir.join("quic-reset.key");
    match std::fs::read(&path) {
        Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(key) => return Ok(key),
            Err(_) => tracing::warn!(
                path = %path.display(),
                bytes = bytes.len(),
                "reset key has the wrong size; replacing it"
            ),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(DiskError::new("read", &path, error)),
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).map_err(|_| {
        DiskError::new(
            "generate",
            &path,
            std::io::Error::other("the system random generator failed"),
        )
    })?;
    match crate::storage::disk::durable::write_file_durable(&path, &key, 0o600) {
        Ok(()) => Ok(key),
        Err(error) if error.cause.raw_os_error() == Some(libc::EROFS) => {
            tracing::warn!(%error, "read-only data directory: using a QUIC reset key for this run only");
            Ok(key)
        }
        Err(error) => Err(error),
    }
}

async fn serve_connection<D: Disk>(
    connection: quinn::Connection,
    broker: Arc<Broker<D>>,
    in_flight: Arc<AtomicUsize>,
    limits: Arc<TransportLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            stream = connection.accept_bi() => stream,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let (send, receive) = match stream {
            Ok(stream) => stream,
            Err(error) => {
                // The path figures explain throughput and latency from outside the process.
                let stats = connection.stats();
                tracing::debug!(
                    remote = %connection.remote_address(),
                    %error,
                    rtt_us = stats.path.rtt.as_micros(),
                    cwnd = stats.path.cwnd,
                    congestion_events = stats.path.congestion_events,
                    lost_packets = stats.path.lost_packets,
                    sent_packets = stats.path.sent_packets,
                    udp_sent_datagrams = stats.udp_tx.datagrams,
                    udp_received_datagrams = stats.udp_rx.datagrams,
                    "connection ended"
                );
                return;
            }
        };
        in_flight.fetch_add(1, Ordering::SeqCst);
        let broker = Arc::clone(&broker);
        let in_flight = Arc::clone(&in_flight);
        let limits = Arc::clone(&limits);
        tokio::spawn(async move {
            serve_stream(send, receive, &broker, &limits).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn serve_stream<D: Disk>(
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
    broker: &Broker<D>,
    limits: &TransportLimits,
) {
    let frame = match receive.read_to_end(limits.frame_bytes_max as usize).await {
        Ok(frame) => Bytes::from(frame),
        Err(quinn::ReadToEndError::TooLong) => {
            let _ = receive.stop(0u32.into());
            let message = format!(
                "request frame exceeds limits.frame_bytes_max ({} bytes)",
                limits.frame_bytes_max
            );
            respond(
                &mut send,
                vec![wire::encode_error_response(
                    0,
                    ErrorCode::FrameTooLarge,
                    &message,
                )],
            )
            .await;
            return;
        }
        Err(error) => {
            tracing::debug!(%error, "request stream failed before its end");
            return;
        }
    };
    let reply = match wire::decode_request(frame) {
        Ok((header, request)) => {
            let response = match broker.handle(request).await {
                Response::ApiVersions(mut versions) => {
                    versions.frame_bytes_max = limits.frame_bytes_max;
                    Response::ApiVersions(versions)
                }
                other => other,
            };
            // Record batches go out as their own chunks, straight from the read buffers.
            wire::encode_response_frame(header.correlation_id, &response).into_chunks()
        }
        Err(error) => {
            tracing::debug!(%error, "refused a request frame");
            let correlation_id = error
                .header
                .as_ref()
                .map_or(0, |header| header.correlation_id);
            vec![wire::encode_error_response(
                correlation_id,
                error.code,
                &error.message,
            )]
        }
    };
    respond(&mut send, reply).await;
}

async fn respond(send: &mut quinn::SendStream, mut reply: Vec<Bytes>) {
    // The client may have gone (acks=0 producers do not read): nothing to do then.
    if send.write_all_chunks(&mut reply).await.is_ok() {
        let _ = send.finish();
    }
}
