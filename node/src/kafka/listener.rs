//! The Kafka listener's TCP sockets and accept loop: the plaintext socket (`kafka.listen`,
//! unless `"off"`) and, when configured, the TLS socket (`kafka.tls_listen`, presenting the
//! certificate the QUIC listener presents); at least one of the two. Both share one limit
//! of `kafka.connections_max` connections, one of `kafka.connections_per_address_max` per
//! client IP address ([`crate::transport::address_limit`]), and one bytes-in-flight
//! budget; each connection gets one [`connection`](super::connection) driver. A TLS connection holds its slot during the
//! handshake, which must finish within `kafka.tls_handshake_timeout_ms`, and is closed
//! after `kafka.connections_max_idle_ms` without a request.
//!
//! A graceful shutdown stops accepting, lets requests being answered finish (up to
//! `shutdown_grace`), then closes every connection.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::KafkaSettings;
use super::connection::serve_connection;
use super::dispatch::{KafkaService, ListenerKind};
use super::fetch_sessions::FetchSessionCache;
use super::sasl::KafkaSasl;
use crate::broker::Broker;
use crate::security::audit::{AuditEvent, AuditListener, AuditLog};
use crate::security::identity::ClientIdentity;
use crate::storage::Disk;
use crate::transport::address_limit::{
    AddressLimit, AddressPermit, REFUSAL_LOG_INTERVAL, RefusalLog, address_key,
};
use crate::transport::budget::{ConnectionBudget, InFlightBudget};
use crate::transport::client_auth::ClientAuthenticator;
use crate::transport::tls::ServerTls;

/// Why the Kafka listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaListenError {
    /// Binding the plaintext TCP socket failed (most often: the port is in use).
    // The OS error is in the message, not a `source`, so a `{:#}` chain prints it once.
    #[error(
        "cannot listen for Kafka clients on {addr} (TCP): {cause}; choose another address with [kafka] listen or --kafka-listen, turn the plaintext listener off with listen = \"off\", or turn Kafka off with [kafka] enabled = false"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// Binding the TLS socket failed.
    #[error(
        "cannot listen for Kafka TLS clients on {addr} (TCP): {cause}; choose another address with [kafka] tls_listen or --kafka-tls-listen"
    )]
    BindTls {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
    /// Kafka is on (`kafka.enabled`) with neither listener: the plaintext one is off and
    /// there is no TLS one.
    #[error(
        "Kafka would listen nowhere: [kafka] listen = \"off\" and no [kafka] tls_listen; give tls_listen an address (or --kafka-tls-listen), give listen one, or turn Kafka off with [kafka] enabled = false"
    )]
    NoListener,
    /// `kafka.advertised_listen` is set for a plaintext listener that is off (Kafka refuses
    /// an advertised listener it does not listen on, too).
    #[error(
        "[kafka] advertised_listen ({address}) is set but the plaintext listener is off (listen = \"off\"): remove it, or give listen an address"
    )]
    AdvertisedWithoutListener {
        /// The advertised address.
        address: String,
    },
    /// A TLS socket is bound but no certificate was given to present on it.
    #[error(
        "the Kafka TLS listener on {addr} has no certificate: give the node one (--tls-cert and --tls-key, or a [cluster] certificate), or remove [kafka] tls_listen"
    )]
    NoCertificate {
        /// The TLS socket's address.
        addr: SocketAddr,
    },
    /// The address Metadata would give clients for this node is a wildcard (0.0.0.0 or
    /// `::`), which no client can connect to.
    #[error(
        "the Kafka listener would advertise {address}, which clients cannot reach: set [kafka] {key} to this node's routable host:port (or node.advertised_address, whose host a wildcard listener advertises)"
    )]
    AdvertisedUnspecified {
        /// The key to set (`advertised_listen` or `advertised_tls_listen`).
        key: &'static str,
        /// The unreachable address.
        address: String,
    },
    /// The certificate and key do not make a TLS server configuration.
    #[error("the Kafka TLS listener cannot use the node's certificate: {0}")]
    Certificate(String),
}

/// The TLS socket and, once given, what it presents.
struct TlsSocket {
    listener: std::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
}

/// A bound Kafka listener: the plaintext socket unless it is off, and the TLS socket if
/// configured (at least one of them).
pub struct KafkaListener {
    listener: Option<std::net::TcpListener>,
    tls: Option<TlsSocket>,
    settings: KafkaSettings,
    /// Client certificates on the TLS socket and anonymous access; `None`: every client is
    /// anonymous and allowed (tests).
    client_auth: Option<Arc<ClientAuthenticator>>,
    /// SASL on both sockets (PLAIN only on the TLS one); off unless [`KafkaListener::sasl`].
    sasl: Arc<KafkaSasl>,
    /// The node's client quotas (shared with QUIC); `None`: none enforced.
    quotas: Option<Arc<crate::security::quota::ClientQuotaManager>>,
}

impl KafkaListener {
    /// Binds the plaintext socket at `addr` (`None`: the plaintext listener is off) and,
    /// with `settings.tls_listen`, the TLS socket; neither is [`KafkaListenError::NoListener`].
    /// Needs no runtime and no disk, so the node does it before it touches its data
    /// directory: a busy port (or no listener at all) is one clear error at start.
    pub fn bind(
        addr: Option<SocketAddr>,
        settings: KafkaSettings,
    ) -> Result<Self, KafkaListenError> {
        if addr.is_none() {
            if settings.tls_listen.is_none() {
                return Err(KafkaListenError::NoListener);
            }
            if let Some(address) = &settings.advertised_listen {
                return Err(KafkaListenError::AdvertisedWithoutListener {
                    address: address.clone(),
                });
            }
        }
        let listener = match addr {
            None => None,
            Some(addr) => {
                Some(bind_socket(addr).map_err(|cause| KafkaListenError::Bind { addr, cause })?)
            }
        };
        let tls = match settings.tls_listen {
            None => None,
            Some(addr) => Some(TlsSocket {
                listener: bind_socket(addr)
                    .map_err(|cause| KafkaListenError::BindTls { addr, cause })?,
                acceptor: None,
            }),
        };
        Ok(Self {
            listener,
            tls,
            settings,
            client_auth: None,
            sasl: Arc::new(KafkaSasl::off()),
            quotas: None,
        })
    }

    /// The bound plaintext address (the real port when asked for port 0), if there is a
    /// plaintext socket.
    pub fn local_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
    }

    /// The bound TLS address, if there is a TLS socket.
    pub fn local_tls_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.tls.as_ref().map(|tls| tls.listener.local_addr())
    }

    /// The `host:port` Metadata gives plaintext clients for this node: `advertised_listen`,
    /// else the bound address; `None` without a plaintext socket.
    pub fn advertised(&self) -> Option<String> {
        let listener = self.listener.as_ref()?;
        Some(match &self.settings.advertised_listen {
            Some(advertised) => advertised.clone(),
            None => listener
                .local_addr()
                .map_or_else(|_| String::new(), |address| address.to_string()),
        })
    }

    /// The `host:port` Metadata gives TLS clients for this node: `advertised_tls_listen`,
    /// else the bound TLS address; `None` without a TLS socket.
    pub fn advertised_tls(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        Some(match &self.settings.advertised_tls_listen {
            Some(advertised) => advertised.clone(),
            None => tls
                .listener
                .local_addr()
                .map_or_else(|_| String::new(), |address| address.to_string()),
        })
    }

    /// Sets the `host:port` Metadata gives plaintext clients for this node.
    pub fn advertise(&mut self, address: String) {
        self.settings.advertised_listen = Some(address);
    }

    /// Sets the `host:port` Metadata gives TLS clients for this node.
    pub fn advertise_tls(&mut self, address: String) {
        self.settings.advertised_tls_listen = Some(address);
    }

    /// Authenticates clients on both sockets as `sasl` says (mechanisms, credentials, whether
    /// anonymous clients are served). Without it SASL is off and every client is served.
    pub fn sasl(&mut self, sasl: Arc<KafkaSasl>) {
        self.sasl = sasl;
    }

    /// Enforces the node's client quotas and per-principal connection limits on both
    /// sockets (`kafka/connection.rs`).
    pub fn quotas(&mut self, quotas: Arc<crate::security::quota::ClientQuotaManager>) {
        self.quotas = Some(quotas);
    }

    /// Gives the TLS socket the certificate chain and key to present (the QUIC listener's).
    /// TLS 1.2 and 1.3, no ALPN and no client certificates, as Kafka's `SSL` listeners by
    /// default. Without a TLS socket it does nothing.
    pub fn present(&mut self, certificate: ServerTls) -> Result<(), KafkaListenError> {
        self.present_with_client_auth(certificate, None)
    }

    /// As [`present`](Self::present), asking for client certificates as `client_auth` says
    /// (`[security] client_auth`: Kafka's `ssl.client.auth`).
    pub fn present_with_client_auth(
        &mut self,
        certificate: ServerTls,
        client_auth: Option<&ClientAuthenticator>,
    ) -> Result<(), KafkaListenError> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let failed = |error: rustls::Error| KafkaListenError::Certificate(error.to_string());
        let verifier = match client_auth {
            Some(client_auth) => client_auth
                .verifier(None)
                .map_err(|error| KafkaListenError::Certificate(error.to_string()))?,
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
        let config = builder
            .with_single_cert(certificate.chain, certificate.key)
            .map_err(failed)?;
        tls.acceptor = Some(TlsAcceptor::from(Arc::new(config)));
        Ok(())
    }

    /// Identifies clients with `client_auth` (a verified certificate's principal on the TLS
    /// socket) and closes anonymous ones that could never authenticate.
    pub fn with_client_auth(mut self, client_auth: Arc<ClientAuthenticator>) -> Self {
        self.client_auth = Some(client_auth);
        self
    }

    /// Refuses a TLS socket without a certificate, and an advertised address no client can
    /// reach (a wildcard host): the node checks this before it announces the listener, so
    /// either mistake is one start-up error.
    pub fn check(&self) -> Result<(), KafkaListenError> {
        let advertised = [
            ("advertised_listen", self.advertised()),
            ("advertised_tls_listen", self.advertised_tls()),
        ];
        for (key, address) in advertised {
            if let Some(address) = address
                && advertises_a_wildcard(&address)
            {
                return Err(KafkaListenError::AdvertisedUnspecified { key, address });
            }
        }
        match &self.tls {
            Some(TlsSocket {
                listener,
                acceptor: None,
            }) => Err(KafkaListenError::NoCertificate {
                addr: listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            }),
            _ => Ok(()),
        }
    }

    /// Serves until `shutdown` turns true. A TLS socket without a certificate
    /// ([`check`](Self::check)) is not served.
    pub async fn serve<D: Disk>(self, broker: Arc<Broker<D>>, mut shutdown: watch::Receiver<bool>) {
        if let Err(error) = self.check() {
            tracing::error!(%error, "kafka TLS listener not started");
        }
        let advertised = self.advertised();
        let advertised_tls = self.advertised_tls();
        let listener = match self.listener {
            Some(listener) => {
                let local = listener.local_addr().ok();
                let Some(listener) = from_std(listener, local) else {
                    return;
                };
                Some(listener)
            }
            None => None,
        };
        let (tls_listener, acceptor) = match self.tls {
            Some(TlsSocket {
                listener,
                acceptor: Some(acceptor),
            }) => {
                let local = listener.local_addr().ok();
                (from_std(listener, local), Some(acceptor))
            }
            _ => (None, None),
        };
        let settings = self.settings;
        let client_auth = self.client_auth;
        let sasl = self.sasl;
        let quotas = self.quotas;
        let with_quotas = |service: KafkaService<D>| match &quotas {
            Some(quotas) => service.with_quotas(Arc::clone(quotas)),
            None => service,
        };
        let connections = Arc::new(Semaphore::new(settings.connections_max));
        let per_address = AddressLimit::new(settings.connections_per_address_max);
        let refused_per_address = RefusalLog::new(REFUSAL_LOG_INTERVAL);
        let refused_node_wide = RefusalLog::new(REFUSAL_LOG_INTERVAL);
        let budget = InFlightBudget::new(
            settings.in_flight_bytes_max,
            settings.in_flight_bytes_per_connection_max,
        );
        let grace = settings.shutdown_grace;
        // Seeded by the start time, so ids differ from one run to the next: a client holding
        // an id from before a restart is told FETCH_SESSION_ID_NOT_FOUND, not handed another
        // client's session. Ids are not secrets (Kafka draws them from a plain PRNG too).
        let seed = broker.clock().wall_time_ms().unsigned_abs();
        let fetch_sessions = Arc::new(Mutex::new(FetchSessionCache::new(
            settings.fetch_sessions,
            seed,
        )));
        let plain_service = advertised.map(|advertised| {
            Arc::new(with_quotas(
                KafkaService::new(
                    Arc::clone(&broker),
                    Arc::clone(&fetch_sessions),
                    settings.clone(),
                    advertised,
                    ListenerKind::Plaintext,
                )
                .with_sasl(Arc::clone(&sasl)),
            ))
        });
        let tls_service = advertised_tls.map(|advertised| {
            Arc::new(with_quotas(
                KafkaService::new(
                    Arc::clone(&broker),
                    Arc::clone(&fetch_sessions),
                    settings.clone(),
                    advertised,
                    ListenerKind::Tls,
                )
                .with_sasl(Arc::clone(&sasl)),
            ))
        });
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let (accepted, over_tls) = tokio::select! {
                accepted = accept(listener.as_ref()) => (accepted, false),
                accepted = accept(tls_listener.as_ref()) => (accepted, true),
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            // Reap finished connections so the set does not grow with every one served.
            while tasks.try_join_next().is_some() {}
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: the next accept may succeed.
                    tracing::warn!(%error, "kafka listener: accept failed");
                    crate::clock::sleep(&*broker.clock(), std::time::Duration::from_millis(50))
                        .await;
                    continue;
                }
            };
            let address_permit = match per_address.try_acquire(address_key(remote)) {
                Ok(permit) => permit,
                Err(reached) => {
                    if let Some(suppressed) = refused_per_address.admit(broker.clock().now()) {
                        tracing::warn!(%remote, limit = reached.max, suppressed, "kafka connection closed: kafka.connections_per_address_max reached for this address");
                    }
                    drop(stream);
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                if let Some(suppressed) = refused_node_wide.admit(broker.clock().now()) {
                    tracing::warn!(%remote, limit = settings.connections_max, suppressed, "kafka connection refused: kafka.connections_max reached");
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let connection = Accepted {
                permit,
                address_permit,
                clock: broker.clock(),
                budget: budget.connection(),
                shutdown: shutdown.clone(),
                remote,
            };
            match (over_tls, &acceptor, &tls_service, &plain_service) {
                (true, Some(acceptor), Some(service), _) => {
                    let acceptor = acceptor.clone();
                    let service = Arc::clone(service);
                    let clock = broker.clock();
                    let client_auth = client_auth.clone();
                    let audit = broker.audit_log().cloned();
                    tasks.spawn(async move {
                        let handshake = settings.tls_handshake_timeout;
                        let stream = match crate::clock::timeout(
                            &*clock,
                            handshake,
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(error)) => {
                                tracing::info!(%remote, %error, "kafka TLS connection closed: handshake failed");
                                if let Some(reason) = refused_certificate(&error) {
                                    crate::security::audit::record(
                                        audit.as_deref(),
                                        &AuditEvent::authentication_failure(
                                            AuditListener::KafkaTls,
                                            remote.ip(),
                                            None,
                                            "certificate",
                                            &reason,
                                        ),
                                    );
                                }
                                return;
                            }
                            Err(_) => {
                                tracing::info!(%remote, timeout_ms = handshake.as_millis(), "kafka TLS connection closed: handshake not finished within kafka.tls_handshake_timeout_ms");
                                return;
                            }
                        };
                        let certificates = stream.get_ref().1.peer_certificates();
                        let Some(identity) = identify(
                            remote,
                            certificates,
                            client_auth.as_deref(),
                            AuditListener::KafkaTls,
                            audit.as_deref(),
                        ) else {
                            return;
                        };
                        connection.serve(stream, identity, service).await;
                    });
                }
                (false, _, _, Some(service)) => {
                    let service = Arc::clone(service);
                    if let Some(identity) = identify(
                        remote,
                        None,
                        client_auth.as_deref(),
                        AuditListener::Kafka,
                        broker.audit_log().map(|audit| &**audit),
                    ) {
                        tasks.spawn(connection.serve(stream, identity, service));
                    }
                }
                // Never: a socket is accepted on only when its service exists.
                _ => drop(stream),
            }
        }
        drop(listener);
        drop(tls_listener);
        // Connections finish the requests they have started (several produces may be in
        // flight on one), write their answers, then close.
        let drained = async { while tasks.join_next().await.is_some() {} };
        if crate::clock::timeout(&*broker.clock(), grace, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "kafka listener: shutdown grace over; closing connections with requests unanswered"
            );
        }
    }
}

/// An accepted connection with its share of the listener's limits.
struct Accepted {
    /// One of `kafka.connections_max`, held until the connection ends.
    permit: OwnedSemaphorePermit,
    /// One of `kafka.connections_per_address_max` of its address, held as long.
    address_permit: AddressPermit,
    clock: Arc<dyn crate::clock::Clock>,
    budget: ConnectionBudget,
    shutdown: watch::Receiver<bool>,
    remote: SocketAddr,
}

impl Accepted {
    async fn serve<D: Disk, S>(
        self,
        stream: S,
        identity: ClientIdentity,
        service: Arc<KafkaService<D>>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let _permits = (self.permit, self.address_permit);
        serve_connection(
            stream,
            Some(self.remote),
            identity,
            self.clock,
            service,
            self.budget,
            self.shutdown,
        )
        .await;
    }
}

/// A Kafka connection's identity from its verified client certificate (TLS), or anonymous;
/// `None` (the connection is dropped, with a log line) when the certificate's subject maps
/// to no principal, or the client is anonymous where it may not be and has no SASL to
/// authenticate with.
fn identify(
    remote: SocketAddr,
    certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    client_auth: Option<&ClientAuthenticator>,
    listener: AuditListener,
    audit: Option<&AuditLog>,
) -> Option<ClientIdentity> {
    let Some(client_auth) = client_auth else {
        return Some(ClientIdentity::anonymous(remote.ip()));
    };
    let audit_failure = |method: &str, reason: &str| {
        crate::security::audit::record(
            audit,
            &AuditEvent::authentication_failure(listener, remote.ip(), None, method, reason),
        );
    };
    match client_auth.identify(certificates, remote.ip()) {
        Ok(identity) if identity.is_authenticated() || client_auth.anonymous_may_authenticate() => {
            Some(identity)
        }
        Ok(_) => {
            tracing::info!(%remote, "kafka connection closed: anonymous clients are not allowed ([security] allow_anonymous = false), it presented no client certificate and SASL is off");
            audit_failure(
                "none",
                "no client certificate; anonymous clients are not allowed and SASL is off",
            );
            None
        }
        Err(error) => {
            // The subject is in the certificate, not a secret; it says which rule is missing.
            tracing::warn!(%remote, %error, "kafka connection closed: client certificate maps to no principal");
            audit_failure("certificate", &error.to_string());
            None
        }
    }
}

/// Why the TLS handshake refused the client's certificate, if that is why `error` ended it
/// (rustls's client-certificate verifier: a certificate that does not verify, or none where
/// `security.client_auth = "required"`); `None` for other handshake failures.
fn refused_certificate(error: &std::io::Error) -> Option<String> {
    match error.get_ref()?.downcast_ref::<rustls::Error>()? {
        refused @ rustls::Error::InvalidCertificate(_) => {
            Some(format!("client certificate refused: {refused}"))
        }
        rustls::Error::NoCertificatesPresented => {
            Some("no client certificate, and security.client_auth = \"required\"".to_owned())
        }
        _ => None,
    }
}

/// Whether `host:port` names the wildcard address (`0.0.0.0`, `[::]`).
pub fn advertises_a_wildcard(address: &str) -> bool {
    let host = address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn from_std(listener: std::net::TcpListener, local: Option<SocketAddr>) -> Option<TcpListener> {
    match TcpListener::from_std(listener) {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::error!(?local, %error, "kafka listener cannot start");
            None
        }
    }
}

/// The next connection on `listener`; never, without one.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
