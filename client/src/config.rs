//! Connection settings shared by the producer, consumer and admin client.

use std::path::PathBuf;
use std::time::Duration;

use ledge_protocol::wire::FRAME_BYTES_MAX_DEFAULT;

use crate::sasl::SaslCredentials;

/// Default node address.
pub const SERVER_DEFAULT: &str = "127.0.0.1:9092";

/// How the client decides to trust the node's certificate. TLS is always on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Trust only certificates signed by the CA in this PEM file (the node writes its dev CA
    /// to `<data-dir>/tls/ca.pem`). The platform's trust store is not consulted.
    CaFile(PathBuf),
    /// Trust only certificates signed by this PEM-encoded CA.
    CaPem(Vec<u8>),
    /// **Accept any certificate.** The connection is still encrypted, but anyone who can
    /// intercept the traffic can impersonate the node, read every record and inject their own.
    /// Use it only against a throwaway node on a trusted network, never in production; prefer
    /// [`Trust::CaFile`] with the node's `ca.pem`.
    Insecure,
}

/// A client certificate the client presents to the node (mTLS), for nodes with
/// `[security] client_auth = "optional"` or `"required"`: `ledge-node cert issue` writes
/// one. The key file must not be readable by its group or others (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// Where the node is and how to talk to it.
///
/// Build one with [`ClientConfig::new`] and change fields as needed; every limit has a
/// documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` of the node's UDP listener, or a comma-separated bootstrap list of nodes
    /// of one cluster (`a:9092,b:9092,c:9092`, Kafka's `bootstrap.servers`): the client
    /// connects to the first that answers within [`ClientConfig::connect_timeout`] and learns
    /// the rest of the cluster from it. Default [`SERVER_DEFAULT`].
    pub server: String,
    /// The name the node's certificate must carry. Default `localhost` (what the dev
    /// certificate is issued for).
    pub server_name: String,
    /// How to verify the node's certificate.
    pub trust: Trust,
    /// The client certificate to present, if any. Default `None`.
    pub client_certificate: Option<ClientCertificate>,
    /// A user and password to authenticate every connection with, by SASL (SCRAM-SHA-512
    /// unless [`SaslCredentials::with_mechanism`] says otherwise), before its first request
    /// and again on every reconnect. Default `None`: the connection is anonymous, or its
    /// client certificate's principal. Its `Debug` never shows the password.
    pub sasl: Option<SaslCredentials>,
    /// Sent with every request, for the node's logs. Default `ledge-client`.
    pub client_id: String,
    /// Longest wait for one answer, on top of any wait the request asks the node for (a
    /// fetch's long poll). The node is also told this timeout for acks=all produces. Admin
    /// and group requests, which are sent again to another node when one does not answer,
    /// start no new try after this long from the first (Kafka's `default.api.timeout.ms`
    /// plays that part there). Default 30 s (Kafka's `request.timeout.ms`).
    pub request_timeout: Duration,
    /// Longest wait for a QUIC handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// A connection that hears nothing from the node for this long is considered lost and
    /// made again; keep-alives go out at a quarter of it. A `kill -9`ed or stopped node is
    /// noticed sooner in a cluster: produce and fetch move to a new leader, and admin and
    /// group requests to another node, once the cluster fences it
    /// ([`ClientConfig::leader_check_interval`]); this timeout is what is left for a node the
    /// cluster still lists as alive but this client cannot reach, and for a single node.
    /// Default 10 s.
    pub idle_timeout: Duration,
    /// Largest response frame accepted, and largest request sent. Default 64 MiB
    /// (`wire::FRAME_BYTES_MAX_DEFAULT`, the node's default too).
    pub frame_bytes_max: u32,
    /// The cluster view (which node leads each partition) is refreshed at least this often,
    /// and at once after an answer that says it is stale. Default 5 minutes (Kafka's
    /// `metadata.max.age.ms`, 300000).
    pub metadata_max_age: Duration,
    /// While a produce waits for its answer (a fetch: once its long poll is over), the client
    /// asks another node for metadata this often; once a partition of the request has a new
    /// leader (the old one died or was deposed), the request is given up and sent to the new
    /// leader. This bounds how long a dead leader holds a send up after the cluster elected
    /// another, independently of [`ClientConfig::idle_timeout`]: QUIC hears nothing from a
    /// kill -9ed node. The refreshes are shared by every waiting request, so a slow cluster
    /// costs at most one metadata request per interval. Admin and group requests (and any
    /// request to the default node) are watched the same way: once another node's metadata
    /// no longer lists the node they wait on as alive (the controller fenced it), they are
    /// given up and sent to another node. Default 100 ms.
    pub leader_check_interval: Duration,
    /// Kernel send and receive buffer for the UDP socket. Loopback drops datagrams with the
    /// usual small default under bursts. Default 4 MiB.
    pub socket_buffer_bytes: usize,
}

/// Default [`ClientConfig::request_timeout`].
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::connect_timeout`].
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::idle_timeout`].
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::metadata_max_age`].
pub const METADATA_MAX_AGE_DEFAULT: Duration = Duration::from_secs(300);
/// Default [`ClientConfig::leader_check_interval`].
pub const LEADER_CHECK_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// Default [`ClientConfig::socket_buffer_bytes`].
pub const SOCKET_BUFFER_BYTES_DEFAULT: usize = 4 * 1024 * 1024;

impl ClientConfig {
    /// Settings for the node at `server` (`host:port`), trusted as `trust`, with defaults for
    /// everything else.
    pub fn new(server: impl Into<String>, trust: Trust) -> Self {
        Self {
            server: server.into(),
            server_name: "localhost".into(),
            trust,
            client_certificate: None,
            sasl: None,
            client_id: "ledge-client".into(),
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            metadata_max_age: METADATA_MAX_AGE_DEFAULT,
            leader_check_interval: LEADER_CHECK_INTERVAL_DEFAULT,
            socket_buffer_bytes: SOCKET_BUFFER_BYTES_DEFAULT,
        }
    }
}

impl ClientConfig {
    /// The bootstrap servers: [`ClientConfig::server`] split at commas, blanks dropped.
    pub fn bootstrap_servers(&self) -> Vec<String> {
        self.server
            .split(',')
            .map(str::trim)
            .filter(|server| !server.is_empty())
            .map(str::to_string)
            .collect()
    }
}
