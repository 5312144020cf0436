//! The one QUIC connection to the node that every producer, consumer and admin call shares.
//!
//! Owns: the quinn endpoint and UDP socket, the TLS trust decision, the current connection,
//! and the request/response exchange (one bidirectional stream per request). Does not own:
//! retries. A request that fails because the connection broke or timed out returns a
//! retriable [`RequestError`] and drops the connection, so the next request reconnects; the
//! producer and consumer decide whether to send again. After [`Client::close`] nothing
//! reconnects: requests fail with [`ConnectError::Closed`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::{self, ApiKey, Request, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::{ClientConfig, Trust};
use crate::error::{ConnectError, RequestError};

/// A handle on the node: cheap to clone, shared by everything built from it.
///
/// [`Client::connect`] makes the first connection eagerly, so a wrong address, CA or server
/// name fails there with a clear error rather than at the first send. Later losses (a node
/// restart) are repaired on the next request.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    server_addr: SocketAddr,
    // A tokio mutex: it is held across the handshake so that concurrent requests after a loss
    // wait for one new connection rather than each making their own.
    connection: tokio::sync::Mutex<ConnectionSlot>,
    /// Set by `close` (with the slot's `closed`), readable without the lock.
    closed: AtomicBool,
    correlation_id: AtomicU32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("server", &self.inner.config.server)
            .field("server_addr", &self.inner.server_addr)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Resolves the server, sets up TLS and connects.
    pub async fn connect(config: ClientConfig) -> Result<Self, ConnectError> {
        let server_addr = resolve(&config.server).await?;
        let client_config = quic_client_config(&config)?;
        let socket = udp_socket(server_addr, config.socket_buffer_bytes)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| ConnectError::Socket("no tokio runtime is running".into()))?;
        let mut endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
                .map_err(|error| ConnectError::Socket(error.to_string()))?;
        endpoint.set_default_client_config(client_config);
        let client = Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                server_addr,
                connection: tokio::sync::Mutex::new(ConnectionSlot::default()),
                closed: AtomicBool::new(false),
                correlation_id: AtomicU32::new(1),
            }),
        };
        client.connection().await?;
        Ok(client)
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The node's resolved address.
    pub fn server_addr(&self) -> SocketAddr {
        self.inner.server_addr
    }

    /// Asks the node which APIs it speaks, its version and its frame limit.
    pub async fn api_versions(&self) -> Result<wire::ApiVersionsResponse, RequestError> {
        let request = Request::ApiVersions(wire::ApiVersionsRequest {
            client_software_name: "ledge-client".into(),
            client_software_version: env!("CARGO_PKG_VERSION").into(),
        });
        match self.request(&request, Duration::ZERO).await? {
            Response::ApiVersions(response) => Ok(response),
            other => Err(unexpected(ApiKey::ApiVersions, &other)),
        }
    }

    /// Closes the connection and the endpoint, waiting briefly for the node to hear it. Every
    /// later request, including one a producer or consumer started just before (a prefetch),
    /// fails with [`ConnectError::Closed`] instead of connecting again.
    pub async fn close(&self) {
        let connection = {
            let mut slot = self.inner.connection.lock().await;
            slot.closed = true;
            self.inner.closed.store(true, Ordering::Release);
            slot.current.take()
        };
        if let Some(connection) = connection {
            connection.close(0u32.into(), b"client closed");
        }
        // Bounded: a dead node cannot acknowledge the close.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }

    /// Whether [`Client::close`] was called: every request fails from then on.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Sends `request` and waits for its answer, allowing `extra_wait` beyond the request
    /// timeout for a wait the request itself asks for (a fetch's long poll).
    pub(crate) async fn request(
        &self,
        request: &Request,
        extra_wait: Duration,
    ) -> Result<Response, RequestError> {
        let api_key = request.api_key();
        let (correlation_id, frame) = self.encode(request)?;
        let timeout = self.inner.config.request_timeout.saturating_add(extra_wait);
        let connection = self.connection().await?;
        let limit = self.inner.config.frame_bytes_max as usize;
        let answer = tokio::time::timeout(timeout, exchange(&connection, frame, limit)).await;
        let bytes = match answer {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) => {
                if error.connection_broken {
                    self.discard(&connection).await;
                }
                return Err(error.error);
            }
            Err(_elapsed) => {
                // An answer this late means the connection is most likely dead (a node that
                // is alive answers its own timeout first); start again on a fresh one.
                self.discard(&connection).await;
                return Err(RequestError::TimedOut(timeout));
            }
        };
        let (header, response) = wire::decode_response(api_key, Bytes::from(bytes))
            .map_err(|error| RequestError::MalformedResponse(format!("{api_key:?}: {error}")))?;
        if header.correlation_id != correlation_id {
            return Err(RequestError::MalformedResponse(format!(
                "{api_key:?}: correlation id {} answers request {correlation_id}",
                header.correlation_id
            )));
        }
        match response {
            Some(response) => Ok(response),
            None => Err(RequestError::Refused {
                code: header.error,
                message: header.message,
            }),
        }
    }

    /// Sends `request` without waiting for an answer (produce with acks=0): returns once the
    /// stream is finished on our side.
    pub(crate) async fn send_only(&self, request: &Request) -> Result<(), RequestError> {
        let (_, mut frame) = self.encode(request)?;
        let timeout = self.inner.config.request_timeout;
        let connection = self.connection().await?;
        let sent = tokio::time::timeout(timeout, async {
            let (mut send, recv) = connection.open_bi().await.map_err(connection_lost)?;
            // The answer is never read; tell the node so it can drop it.
            let mut recv = recv;
            let _ = recv.stop(0u32.into());
            send.write_all_chunks(&mut frame)
                .await
                .map_err(connection_lost)?;
            send.finish().map_err(connection_lost)?;
            // Wait until the node's QUIC stack acknowledged every byte: "sent" must not be
            // data still queued here, which closing the client would throw away. (This is
            // not a produce acknowledgement; acks=0 still never hears of the append.)
            send.stopped()
                .await
                .map_err(|error| RequestError::ConnectionLost(error.to_string()))?;
            Ok::<(), RequestError>(())
        })
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.discard(&connection).await;
                Err(error)
            }
            Err(_) => {
                self.discard(&connection).await;
                Err(RequestError::TimedOut(timeout))
            }
        }
    }

    /// The request as frame chunks: record batches stay the caller's buffers (no copy into
    /// one frame; that copy was ~5% of the producer's CPU in the issue 7 profile).
    fn encode(&self, request: &Request) -> Result<(u32, Vec<Bytes>), RequestError> {
        let correlation_id = self.inner.correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame =
            wire::encode_request_frame(correlation_id, &self.inner.config.client_id, request);
        let limit = self.inner.config.frame_bytes_max;
        if frame.len() > limit as usize {
            return Err(RequestError::FrameTooLarge {
                bytes: frame.len(),
                limit,
            });
        }
        Ok((correlation_id, frame.into_chunks()))
    }

    /// The live connection, or a new one.
    async fn connection(&self) -> Result<quinn::Connection, ConnectError> {
        let mut slot = self.inner.connection.lock().await;
        if slot.closed {
            return Err(ConnectError::Closed);
        }
        if let Some(connection) = slot.current.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let config = &self.inner.config;
        let connecting = self
            .inner
            .endpoint
            .connect(self.inner.server_addr, &config.server_name)
            .map_err(|error| ConnectError::Handshake {
                server: config.server.clone(),
                message: error.to_string(),
            })?;
        let connection = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(quinn::ConnectionError::TimedOut)) | Err(_) => {
                return Err(ConnectError::TimedOut {
                    server: config.server.clone(),
                    timeout: config.connect_timeout,
                });
            }
            Ok(Err(error)) => {
                let mut message = error.to_string();
                if message.contains("UnknownIssuer") {
                    message.push_str(
                        " (the node's certificate is not signed by the trusted CA; trust the \
                         node's own <data-dir>/tls/ca.pem)",
                    );
                }
                return Err(ConnectError::Handshake {
                    server: config.server.clone(),
                    message,
                });
            }
        };
        tracing::debug!(server = %self.inner.server_addr, "connected");
        slot.current = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets `connection` if it is still the current one, so the next request reconnects.
    async fn discard(&self, connection: &quinn::Connection) {
        let mut slot = self.inner.connection.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|known| known.stable_id() == connection.stable_id())
        {
            slot.current = None;
        }
        connection.close(0u32.into(), b"request failed; reconnecting");
    }
}

/// The current connection, if any, and whether [`Client::close`] was called.
#[derive(Default)]
struct ConnectionSlot {
    current: Option<quinn::Connection>,
    closed: bool,
}

/// A failed exchange, and whether the connection itself is to blame.
struct ExchangeError {
    error: RequestError,
    connection_broken: bool,
}

async fn exchange(
    connection: &quinn::Connection,
    mut frame: Vec<Bytes>,
    limit: usize,
) -> Result<Vec<u8>, ExchangeError> {
    let broken = |error: RequestError| ExchangeError {
        error,
        connection_broken: true,
    };
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|error| broken(connection_lost(error)))?;
    send.write_all_chunks(&mut frame)
        .await
        .map_err(|error| broken(connection_lost(error)))?;
    send.finish()
        .map_err(|error| broken(connection_lost(error)))?;
    recv.read_to_end(limit).await.map_err(|error| match error {
        quinn::ReadToEndError::TooLong => ExchangeError {
            error: RequestError::MalformedResponse(format!(
                "response exceeds the frame limit of {limit} bytes"
            )),
            // The node keeps sending into a stream we stopped reading; the connection is fine.
            connection_broken: false,
        },
        quinn::ReadToEndError::Read(quinn::ReadError::Reset(code)) => ExchangeError {
            // The node reset this one stream (it refused the request); others are unaffected.
            error: RequestError::ConnectionLost(format!("node reset the stream (code {code})")),
            connection_broken: false,
        },
        other => broken(connection_lost(other)),
    })
}

fn connection_lost(error: impl std::fmt::Display) -> RequestError {
    RequestError::ConnectionLost(error.to_string())
}

pub(crate) fn unexpected(api_key: ApiKey, response: &Response) -> RequestError {
    RequestError::MalformedResponse(format!(
        "{api_key:?} request answered with a {:?} response",
        response.api_key()
    ))
}

async fn resolve(server: &str) -> Result<SocketAddr, ConnectError> {
    let resolve_error = |message: String| ConnectError::Resolve {
        server: server.to_string(),
        message,
    };
    let mut addresses = tokio::net::lookup_host(server)
        .await
        .map_err(|error| resolve_error(error.to_string()))?;
    addresses
        .next()
        .ok_or_else(|| resolve_error("no addresses".into()))
}

fn udp_socket(
    server: SocketAddr,
    buffer_bytes: usize,
) -> Result<std::net::UdpSocket, ConnectError> {
    let socket_error = |error: std::io::Error| ConnectError::Socket(error.to_string());
    let (domain, local) = match server {
        SocketAddr::V4(_) => (
            socket2::Domain::IPV4,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        ),
        SocketAddr::V6(_) => (
            socket2::Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        ),
    };
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(socket_error)?;
    // The kernel may cap these (net.core.rmem_max); a smaller buffer still works, only with
    // more drops under bursts, so a refusal is not an error.
    if let Err(error) = socket.set_recv_buffer_size(buffer_bytes) {
        tracing::debug!(%error, "cannot set the UDP receive buffer size");
    }
    if let Err(error) = socket.set_send_buffer_size(buffer_bytes) {
        tracing::debug!(%error, "cannot set the UDP send buffer size");
    }
    socket.bind(&local.into()).map_err(socket_error)?;
    Ok(socket.into())
}

fn quic_client_config(config: &ClientConfig) -> Result<quinn::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_error = |error: rustls::Error| ConnectError::Tls(error.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?;
    let mut crypto = match &config.trust {
        Trust::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|error| ConnectError::CaFile {
                path: path.clone(),
                message: error.to_string(),
            })?;
            let roots = root_store(&pem).map_err(|message| match message {
                Some(message) => ConnectError::CaFile {
                    path: path.clone(),
                    message,
                },
                None => ConnectError::NoCertificate { path: path.clone() },
            })?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaPem(pem) => {
            let roots = root_store(pem).map_err(|message| {
                ConnectError::Tls(message.unwrap_or_else(|| "CA PEM holds no certificate".into()))
            })?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
    };
    crypto.alpn_protocols = vec![wire::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|error| ConnectError::Tls(error.to_string()))?;
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|error| ConnectError::Tls(format!("idle_timeout: {error}")))?;
    transport.max_idle_timeout(Some(idle));
    transport.keep_alive_interval(Some(config.idle_timeout / 4));
    let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
    client_config.transport_config(Arc::new(transport));
    Ok(client_config)
}

/// The certificates in `pem`; `Err(None)` when there are none.
fn root_store(pem: &[u8]) -> Result<rustls::RootCertStore, Option<String>> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|error| Some(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| Some(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(None);
    }
    Ok(roots)
}

/// The verifier behind [`Trust::Insecure`]: any certificate chain is accepted. The handshake
/// signature is still checked against the presented key, so the session is encrypted to
/// whoever holds that key, but nothing ties the key to the node.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
