//! The admin listener's socket: hyper's HTTP/1 server (no HTTP/2, no upgrades) with every
//! bound explicit (`[admin]`, docs/OPERATIONS.md):
//! - at most `connections_max` connections; more are accepted and closed at once;
//! - a request head (request line and headers) over `header_bytes_max` is answered 431;
//! - a client that has not sent its head `header_read_timeout` after connecting is cut off;
//! - one request per connection (no keep-alive), and a connection lives at most
//!   `connection_time_max`, its answer written included;
//! - a request with a body is answered 413 without reading it;
//! - with `tls = true`, the TLS handshake too happens within `connection_time_max`.
//!
//! With `tls = true` the listener presents the node's certificate (the one QUIC presents)
//! and asks for client certificates as `[security] client_auth` says, verified against the
//! same CA(s) as on the other listeners; with `authentication = "required"` each request
//! passes `auth.rs`'s [`AdminGuard`] before it is answered.
//!
//! The answers are computed on the blocking pool (`/metrics` reads every partition), so a
//! scrape storm takes at most `connections_max` blocking threads and never a runtime worker
//! the QUIC and Kafka listeners need.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::auth::{AdminGuard, CertificateIdentity};
use super::routes::{self, NodeView, RequestHead};
use super::{AdminAuthentication, AdminSettings};
use crate::clock::Clock;
use crate::transport::client_auth::ClientAuthenticator;
use crate::transport::tls::ServerTls;

/// Why the admin listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminListenError {
    /// Binding the TCP socket failed (most often: the port is in use).
    // The OS error is in the message, not a `source`, so a `{:#}` chain prints it once.
    #[error(
        "cannot listen for admin HTTP on {addr} (TCP): {cause}; choose another address with [admin] listen or --admin-listen, or turn the admin listener off with \"off\""
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// rustls refused the certificate or the client certificate verifier.
    #[error("admin listener TLS: {0}")]
    Certificate(String),
    /// `tls = true` but no certificate was given to the listener (a bug in the node's start).
    #[error("[admin] tls = true but the admin listener was given no certificate")]
    NoCertificate,
    /// `authentication = "required"` but the listener has nothing to check callers with.
    #[error(
        "[admin] authentication = \"required\" but the admin listener was given no credentials to check"
    )]
    NoGuard,
}

/// The admin listener, bound and not yet serving.
pub struct AdminListener {
    listener: std::net::TcpListener,
    settings: AdminSettings,
    tls: Option<TlsAcceptor>,
    client_auth: Option<Arc<ClientAuthenticator>>,
    guard: Option<Arc<AdminGuard>>,
}

impl AdminListener {
    /// Binds `addr` (before the data directory is touched, so a busy port is one error line
    /// and nothing written).
    pub fn bind(addr: SocketAddr, settings: AdminSettings) -> Result<Self, AdminListenError> {
        let bind = || -> std::io::Result<std::net::TcpListener> {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        };
        let listener = bind().map_err(|cause| AdminListenError::Bind { addr, cause })?;
        Ok(Self {
            listener,
            settings,
            tls: None,
            client_auth: None,
            guard: None,
        })
    }

    /// Serves TLS (with `tls = true`; otherwise nothing changes) with `certificate`, asking
    /// for client certificates as `client_auth` says and mapping them to principals with it.
    pub fn present(
        &mut self,
        certificate: ServerTls,
        client_auth: Option<Arc<ClientAuthenticator>>,
    ) -> Result<(), AdminListenError> {
        if !self.settings.tls {
            return Ok(());
        }
        let failed = |error: rustls::Error| AdminListenError::Certificate(error.to_string());
        let verifier = match &client_auth {
            Some(client_auth) => client_auth
                .verifier(None)
                .map_err(|error| AdminListenError::Certificate(error.to_string()))?,
            None => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(failed)?;
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certificate.chain, certificate.key)
            .map_err(failed)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.tls = Some(TlsAcceptor::from(Arc::new(config)));
        self.client_auth = client_auth;
        Ok(())
    }

    /// Checks every request but the probes with `guard` (with `authentication =
    /// "required"`; otherwise nothing changes).
    pub fn guard(&mut self, guard: AdminGuard) {
        if self.settings.authentication == AdminAuthentication::Required {
            self.guard = Some(Arc::new(guard));
        }
    }

    /// Refuses to serve a TLS listener without a certificate or an authenticating one
    /// without a guard: the node checks this before it announces the listener.
    pub fn check(&self) -> Result<(), AdminListenError> {
        if self.settings.tls && self.tls.is_none() {
            return Err(AdminListenError::NoCertificate);
        }
        if self.settings.authentication == AdminAuthentication::Required && self.guard.is_none() {
            return Err(AdminListenError::NoGuard);
        }
        Ok(())
    }

    /// `https` with `tls = true`, else `http`: for the start-up line.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `view` until `shutdown` turns true.
    pub async fn serve(
        self,
        view: Arc<dyn NodeView>,
        clock: Arc<dyn Clock>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "admin listener cannot start");
                return;
            }
        };
        let settings = Arc::new(self.settings);
        let tls = self.tls;
        let client_auth = self.client_auth;
        let guard = self.guard;
        let slots = Arc::new(Semaphore::new(settings.connections_max));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and the like: the next accept may work once descriptors free.
                    tracing::debug!(%error, "admin accept failed");
                    crate::clock::sleep(&*clock, std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::debug!(%remote, connections_max = settings.connections_max, "admin connection closed: admin.connections_max reached");
                drop(stream);
                continue;
            };
            let view = Arc::clone(&view);
            let clock = Arc::clone(&clock);
            let settings = Arc::clone(&settings);
            let tls = tls.clone();
            let client_auth = client_auth.clone();
            let guard = guard.clone();
            tokio::spawn(async move {
                let _count = crate::metrics::ConnectionCount::open(
                    &crate::metrics::node().connections.admin,
                );
                let caller = Caller {
                    view,
                    guard,
                    host: remote.ip(),
                    certificate: Arc::new(CertificateIdentity::None),
                };
                let connection = async {
                    match tls {
                        None => serve_http(TokioIo::new(stream), caller, &settings)
                            .await
                            .map_err(|error| error.to_string()),
                        Some(acceptor) => {
                            let stream = acceptor
                                .accept(stream)
                                .await
                                .map_err(|error| format!("TLS handshake: {error}"))?;
                            let certificate =
                                certificate_identity(&stream, client_auth.as_deref(), remote);
                            let caller = Caller {
                                certificate: Arc::new(certificate),
                                ..caller
                            };
                            serve_http(TokioIo::new(stream), caller, &settings)
                                .await
                                .map_err(|error| error.to_string())
                        }
                    }
                };
                match crate::clock::timeout(&*clock, settings.connection_time_max, connection).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%remote, %error, "admin connection ended"),
                    Err(_) => {
                        tracing::debug!(%remote, "admin connection closed: admin.connection_time_max_ms reached");
                    }
                }
                drop(slot);
            });
        }
    }
}

/// Who is asking, for every request of one connection.
#[derive(Clone)]
struct Caller {
    view: Arc<dyn NodeView>,
    guard: Option<Arc<AdminGuard>>,
    host: std::net::IpAddr,
    certificate: Arc<CertificateIdentity>,
}

/// The principal of the client certificate a TLS handshake verified, if any.
fn certificate_identity(
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    client_auth: Option<&ClientAuthenticator>,
    remote: SocketAddr,
) -> CertificateIdentity {
    let (_, connection) = stream.get_ref();
    let Some(client_auth) = client_auth else {
        return CertificateIdentity::None;
    };
    match client_auth.identify(connection.peer_certificates(), remote.ip()) {
        Ok(identity) if identity.is_authenticated() => CertificateIdentity::Verified(identity),
        Ok(_) => CertificateIdentity::None,
        Err(error) => CertificateIdentity::Unmapped(error.to_string()),
    }
}

/// Serves one HTTP/1 connection (one request: keep-alive is off) on `io`.
async fn serve_http<IO>(
    io: TokioIo<IO>,
    caller: Caller,
    settings: &AdminSettings,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let caller = caller.clone();
        async move { Ok::<_, Infallible>(respond(request, caller).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(false)
        .max_header_size(settings.header_bytes_max)
        .header_read_timeout(settings.header_read_timeout);
    builder.serve_connection(io, service).await
}

/// Answers one request on the blocking pool.
async fn respond(request: Request<Incoming>, caller: Caller) -> Response<Full<Bytes>> {
    let has_body = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0")
        || request
            .headers()
            .contains_key(hyper::header::TRANSFER_ENCODING);
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|value| value.as_bytes().to_vec());
    // The guard's PBKDF2 runs on the blocking pool too.
    let answered = tokio::task::spawn_blocking(move || {
        if let Some(guard) = &caller.guard
            && let Err(refused) = guard.admit(
                &path,
                authorization.as_deref(),
                &caller.certificate,
                caller.host,
            )
        {
            return refused;
        }
        routes::answer(
            RequestHead {
                method: &method,
                path: &path,
                has_body,
            },
            &*caller.view,
        )
    })
    .await;
    let answer = answered.unwrap_or_else(|error| routes::Answer {
        status: 500,
        content_type: "text/plain; charset=utf-8",
        body: format!("the answer failed: {error}\n"),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(answer.content_type),
    );
    if answer.status == 401 {
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static(super::auth::WWW_AUTHENTICATE),
        );
    }
    response
}

#[cfg(test)]
mod tests;
