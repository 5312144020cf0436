//! The admin listener's socket: hyper's HTTP/1 server (no HTTP/2, no upgrades) with every
//! bound explicit (`[admin]`, docs/OPERATIONS.md):
//! - at most `connections_max` connections; more are accepted and closed at once;
//! - a request head (request line and headers) over `header_bytes_max` is answered 431;
//! - a client that has not sent its head `header_read_timeout` after connecting is cut off;
//! - one request per connection (no keep-alive), and a connection lives at most
//!   `connection_time_max`, its answer written included;
//! - a request with a body is answered 413 without reading it.
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
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::AdminSettings;
use super::routes::{self, NodeView, RequestHead};
use crate::clock::Clock;

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
}

/// The admin listener, bound and not yet serving.
pub struct AdminListener {
    listener: std::net::TcpListener,
    settings: AdminSettings,
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
        Ok(Self { listener, settings })
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
            tokio::spawn(async move {
                let _count = crate::metrics::ConnectionCount::open(
                    &crate::metrics::node().connections.admin,
                );
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let view = Arc::clone(&view);
                    async move { Ok::<_, Infallible>(respond(request, view).await) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .keep_alive(false)
                    .max_header_size(settings.header_bytes_max)
                    .header_read_timeout(settings.header_read_timeout);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                match crate::clock::timeout(&*clock, settings.connection_time_max, connection)
                    .await
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

/// Answers one request on the blocking pool.
async fn respond(request: Request<Incoming>, view: Arc<dyn NodeView>) -> Response<Full<Bytes>> {
    let has_body = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0")
        || request
            .headers()
            .contains_key(hyper::header::TRANSFER_ENCODING);
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let answered = tokio::task::spawn_blocking(move || {
        routes::answer(
            RequestHead {
                method: &method,
                path: &path,
                has_body,
            },
            &*view,
        )
    })
    .await;
    let answer = answered.unwrap_or_else(|error| routes::Answer {
        status: 500,
        content_type: "text/plain; charset=utf-8",
        body: format!("the answer failed: {error}\n"),
    });
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(answer.content_type),
    );
    response
}
