//! The Kafka listener: Kafka's wire protocol on TCP, in front of the same broker the QUIC
//! listener serves (topics, produce filters and partitioners, idempotence, replication).
//!
//! How a request flows:
//! 1. [`listener`] accepts a TCP connection (at most `kafka.connections_max`) and runs one
//!    [`connection`] driver for it.
//! 2. The driver reads a length-prefixed frame, refusing a length over
//!    `kafka.frame_bytes_max` before allocating anything, and decodes it with [`codec`]
//!    (the `kafka-protocol` crate, generated from Kafka's schemas): the request header v1 or
//!    v2 by the (API, version) pair, then the body. Which APIs and versions are served is the
//!    one table in [`apis`].
//! 3. [`dispatch`] answers the request: each API's handler translates it into the node's
//!    own request, asks the [`Broker`](crate::broker::Broker), and translates the answer
//!    back ([`handlers`]); the node's error codes become Kafka's in [`errors`] and nowhere
//!    else.
//! 4. The driver writes responses in request order (Kafka clients pipeline and rely on it).
//!    Requests of one connection are processed one at a time, as Kafka's own broker does, so
//!    an idempotent producer's batches are appended in the order it sent them.
//!
//! A frame that does not decode closes the connection, as Kafka does; other connections are
//! not affected. ApiVersions at a version the node does not serve is answered (version 0,
//! UNSUPPORTED_VERSION and the served ranges) so the client can pick one (KIP-511).

pub mod apis;
pub mod authorize;
pub mod codec;
pub mod connection;
pub mod consumer_groups;
pub mod dispatch;
pub mod errors;
pub mod fetch_sessions;
pub mod groups;
pub mod handlers;
pub mod listener;
pub mod sasl;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use fetch_sessions::FetchSessionLimits;

/// Default `[kafka] frame_bytes_max`: 16 MiB. Kafka's own `socket.request.max.bytes` is 100
/// MiB, far more than an edge box should buffer per request; producers send at most
/// `max.request.size` (1 MiB by default) and Ledge's `max.message.bytes` defaults below this,
/// so 16 MiB leaves room for large batches and many partitions in one produce.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 16 * 1024 * 1024;
/// Default `[kafka] connections_max`.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1024;
/// Default `[kafka] requests_in_flight_per_connection_max`: requests of one connection read
/// and not yet answered, whether started (produces pipelined behind one another) or waiting
/// their turn. Clients pipeline (Kafka's Java producer up to 5, librdkafka many more);
/// beyond this the node stops reading the connection until answers go out. 5, the Java
/// producer's window, because measured side by side (benches/RESULTS.md, issue 14) it is as
/// fast as 32 for the Java producer and 1.5x faster for librdkafka without idempotence, which
/// otherwise spreads its data over many more, smaller requests.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT: usize = 5;
/// Default `[kafka] in_flight_bytes_max`: request frames read and not yet answered, over
/// all Kafka connections.
pub const IN_FLIGHT_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;
/// Default `[kafka] in_flight_bytes_per_connection_max`.
pub const IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default `[kafka] tls_handshake_timeout_ms`: a TLS client that has not finished its
/// handshake 10 s after connecting is cut off, so a peer that opens TCP and sends nothing
/// (or trickles) cannot hold one of `kafka.connections_max` slots. A handshake on loopback
/// takes about a millisecond, across a continent a few round trips.
pub const TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default `[kafka] connections_max_idle_ms`: Kafka's `connections.max.idle.ms` (10 min).
/// Clients reconnect on demand, so closing an idle connection costs a reconnect; keeping
/// it costs a slot of `kafka.connections_max` and a socket.
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// Largest `[kafka] connections_max_idle_ms`: one day.
pub const CONNECTIONS_MAX_IDLE_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Default `[kafka] sasl_session_lifetime_ms`: 0, sessions never expire (Kafka's
/// `connections.max.reauth.ms` default). Set it to bound how long a connection keeps a
/// principal whose password changed or whose user was deleted: clients that support KIP-368
/// (SaslAuthenticate v1+) re-authenticate on the same connection before it runs out, others
/// are disconnected at their next request after it and reconnect.
pub const SASL_SESSION_LIFETIME_MS_DEFAULT: u64 = 0;
/// Default `[kafka] sasl_receive_bytes_max`: Kafka's `sasl.server.max.receive.size` (512
/// KiB). A SASL message is well under 4 KiB and ApiVersions a few hundred bytes, so a client
/// that has not authenticated cannot make the node buffer more than this per request.
pub const SASL_RECEIVE_BYTES_MAX_DEFAULT: u32 = 512 * 1024;
/// Smallest `[kafka] sasl_receive_bytes_max`: room for a SASL message of
/// `SASL_MESSAGE_BYTES_MAX_DEFAULT` (4 KiB) and its request header.
pub const SASL_RECEIVE_BYTES_MAX_MIN: u32 = 8 * 1024;
/// Largest `[kafka] sasl_session_lifetime_ms`: 30 days.
pub const SASL_SESSION_LIFETIME_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;
/// Largest `[kafka] tls_handshake_timeout_ms`: five minutes.
pub const TLS_HANDSHAKE_TIMEOUT_MS_MAX: u64 = 5 * 60 * 1000;

/// The `[kafka]` section (docs/OPERATIONS.md, "Kafka listener").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Serve Kafka clients at all (`[kafka] enabled`): the master switch of both listeners.
    pub enabled: bool,
    /// Where the plaintext listener listens, or that there is none (`[kafka] listen`).
    pub listen: PlaintextListen,
    /// `host:port` Metadata gives clients for this node; `None`: the bound address.
    pub advertised_listen: Option<String>,
    /// TCP address of the TLS listener (`[kafka] tls_listen`); `None`: no TLS listener.
    /// It presents the certificate the QUIC listener presents.
    pub tls_listen: Option<SocketAddr>,
    /// `host:port` Metadata gives clients of the TLS listener for this node; `None`: the
    /// bound TLS address.
    pub advertised_tls_listen: Option<String>,
    /// How long a TLS client has to finish its handshake after connecting.
    pub tls_handshake_timeout: Duration,
    /// Most open Kafka connections; more are accepted and closed at once.
    pub connections_max: usize,
    /// Most open Kafka connections from one IP address, plaintext and TLS together
    /// (`kafka.connections_per_address_max`, Kafka's `max.connections.per.ip`).
    pub connections_per_address_max: usize,
    /// A connection that sends no request for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// Largest request frame (its 4-byte length prefix excluded).
    pub frame_bytes_max: u32,
    /// Requests of one connection read and not yet answered (started, as pipelined
    /// produces are, or waiting their turn); beyond, the connection is not read.
    pub requests_in_flight_per_connection_max: usize,
    /// Bytes of request frames held over all Kafka connections.
    pub in_flight_bytes_max: u64,
    /// Bytes of request frames one connection may hold.
    pub in_flight_bytes_per_connection_max: u64,
    /// How long a graceful shutdown waits for requests being answered.
    pub shutdown_grace: Duration,
    /// Create a missing topic a Metadata request names, if the request allows it (Kafka's
    /// `auto.create.topics.enable`, `[kafka] auto_create_topics`).
    pub auto_create_topics: bool,
    /// Partitions of a topic created that way (Kafka's `num.partitions`).
    pub auto_create_topic_partitions: u32,
    /// Bounds of the fetch session cache (`fetch_sessions_max`, `fetch_session_*`).
    pub fetch_sessions: FetchSessionLimits,
    /// How long a SASL authentication holds before the client must re-authenticate (KIP-368,
    /// Kafka's `connections.max.reauth.ms`); zero: forever.
    pub sasl_session_lifetime: Duration,
    /// Largest request frame before authentication, when anonymous clients are not allowed,
    /// and during a first SASL exchange (Kafka's `sasl.server.max.receive.size`).
    pub sasl_receive_bytes_max: u32,
}

/// `[kafka] auto_create_topics` default: on, as Kafka's `auto.create.topics.enable`, so a
/// Kafka producer to a topic nobody created works as against Kafka.
pub const AUTO_CREATE_TOPICS_DEFAULT: bool = true;
/// `[kafka] auto_create_topic_partitions` default: Kafka's `num.partitions` default.
pub const AUTO_CREATE_TOPIC_PARTITIONS_DEFAULT: u32 = 1;

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: PlaintextListen::QuicAddress,
            advertised_listen: None,
            tls_listen: None,
            advertised_tls_listen: None,
            tls_handshake_timeout: Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            connections_per_address_max:
                crate::transport::address_limit::KAFKA_CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
            connections_max_idle: Duration::from_millis(CONNECTIONS_MAX_IDLE_MS_DEFAULT),
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            requests_in_flight_per_connection_max: REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX_DEFAULT,
            in_flight_bytes_max: IN_FLIGHT_BYTES_MAX_DEFAULT,
            in_flight_bytes_per_connection_max: IN_FLIGHT_BYTES_PER_CONNECTION_MAX_DEFAULT,
            shutdown_grace: Duration::from_secs(10),
            auto_create_topics: AUTO_CREATE_TOPICS_DEFAULT,
            auto_create_topic_partitions: AUTO_CREATE_TOPIC_PARTITIONS_DEFAULT,
            fetch_sessions: FetchSessionLimits::default(),
            sasl_session_lifetime: Duration::from_millis(SASL_SESSION_LIFETIME_MS_DEFAULT),
            sasl_receive_bytes_max: SASL_RECEIVE_BYTES_MAX_DEFAULT,
        }
    }
}

/// The `[kafka] listen` (and `--kafka-listen`) value that turns the plaintext listener off.
pub const LISTEN_OFF: &str = "off";

/// `[kafka] listen` / `--kafka-listen`: where the plaintext Kafka listener listens. Kafka
/// lists its listeners (`listeners=SSL://:9093` has no plaintext one); Ledge has at most
/// one of each kind, the plaintext one on unless `"off"`, the TLS one off unless
/// `tls_listen` names an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlaintextListen {
    /// The node's QUIC listen address, on TCP (TCP and UDP ports are separate spaces, so
    /// both can be 9092): the default.
    #[default]
    QuicAddress,
    /// This TCP address.
    At(SocketAddr),
    /// No plaintext listener (`"off"`): Kafka clients connect to the TLS one.
    Off,
}

/// A `[kafka] listen` / `--kafka-listen` value that is neither an address nor `"off"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address like 127.0.0.1:9092, or \"off\" for no plaintext listener")]
pub struct PlaintextListenError(String);

impl FromStr for PlaintextListen {
    type Err = PlaintextListenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == LISTEN_OFF {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::At)
            .map_err(|_| PlaintextListenError(text.to_owned()))
    }
}

/// Smallest `[kafka] frame_bytes_max`: a Metadata or ApiVersions request must fit.
pub const FRAME_BYTES_MAX_MIN: u32 = 64 * 1024;
/// Largest `[kafka] frame_bytes_max`: 1 GiB, as Kafka's own cap on a request.
pub const FRAME_BYTES_MAX_LIMIT: u32 = 1024 * 1024 * 1024;
/// Largest `[kafka] connections_max`.
pub const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;
/// Largest `[kafka] requests_in_flight_per_connection_max`.
pub const REQUESTS_IN_FLIGHT_PER_CONNECTION_LIMIT: usize = 4096;
/// Largest `[kafka] shutdown_grace_ms`: ten minutes.
pub const SHUTDOWN_GRACE_MS_MAX: u64 = 10 * 60 * 1000;

/// The `[kafka]` section as written in the config file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    enabled: Option<bool>,
    listen: Option<String>,
    advertised_listen: Option<String>,
    tls_listen: Option<String>,
    advertised_tls_listen: Option<String>,
    tls_handshake_timeout_ms: Option<u64>,
    connections_max: Option<usize>,
    connections_per_address_max: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    frame_bytes_max: Option<u32>,
    requests_in_flight_per_connection_max: Option<usize>,
    in_flight_bytes_max: Option<u64>,
    in_flight_bytes_per_connection_max: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    auto_create_topics: Option<bool>,
    auto_create_topic_partitions: Option<u32>,
    fetch_sessions_max: Option<usize>,
    fetch_session_partitions_max: Option<usize>,
    fetch_session_idle_max_ms: Option<u64>,
    fetch_session_eviction_min_ms: Option<u64>,
    sasl_session_lifetime_ms: Option<u64>,
    sasl_receive_bytes_max: Option<u32>,
}

impl KafkaSection {
    /// Checks the section; errors name the key (`origin: kafka.<key>: ...`).
    pub fn settings(self, origin: &str) -> Result<KafkaSettings, String> {
        let mut settings = KafkaSettings::default();
        let range = |key: &str, value: u64, min: u64, max: u64| {
            crate::config::in_range(origin, "kafka", key, value, min, max)
        };
        if let Some(enabled) = self.enabled {
            settings.enabled = enabled;
        }
        if let Some(listen) = self.listen {
            settings.listen = listen.parse().map_err(|error| {
                format!(
                    "{origin}: kafka.listen: {error} (turn Kafka off altogether with kafka.enabled = false)"
                )
            })?;
        }
        if let Some(advertised) = self.advertised_listen {
            settings.advertised_listen = Some(host_port(origin, "advertised_listen", advertised)?);
        }
        if let Some(listen) = self.tls_listen {
            settings.tls_listen = Some(listen.parse().map_err(|_| {
                format!(
                    "{origin}: kafka.tls_listen: {listen:?} is not an address like 127.0.0.1:9093"
                )
            })?);
        }
        if let Some(advertised) = self.advertised_tls_listen {
            settings.advertised_tls_listen =
                Some(host_port(origin, "advertised_tls_listen", advertised)?);
        }
        if let Some(value) = self.tls_handshake_timeout_ms {
            settings.tls_handshake_timeout = Duration::from_millis(range(
                "tls_handshake_timeout_ms",
                value,
                1,
                TLS_HANDSHAKE_TIMEOUT_MS_MAX,
            )?);
        }
        if let Some(value) = self.connections_max {
            settings.connections_max = range(
                "connections_max",
                value as u64,
                1,
                CONNECTIONS_MAX_LIMIT as u64,
            )? as usize;
        }
        if let Some(value) = self.connections_per_address_max {
            settings.connections_per_address_max = range(
                "connections_per_address_max",
                value as u64,
                1,
                crate::transport::address_limit::CONNECTIONS_PER_ADDRESS_MAX_LIMIT as u64,
            )? as usize;
        }
        if let Some(value) = self.connections_max_idle_ms {
            settings.connections_max_idle = Duration::from_millis(range(
                "connections_max_idle_ms",
                value,
                1,
                CONNECTIONS_MAX_IDLE_MS_MAX,
            )?);
        }
        if let Some(value) = self.frame_bytes_max {
            settings.frame_bytes_max = range(
                "frame_bytes_max",
                value.into(),
                FRAME_BYTES_MAX_MIN.into(),
                FRAME_BYTES_MAX_LIMIT.into(),
            )? as u32;
        }
        if let Some(value) = self.requests_in_flight_per_connection_max {
            settings.requests_in_flight_per_connection_max = range(
                "requests_in_flight_per_connection_max",
                value as u64,
                1,
                REQUESTS_IN_FLIGHT_PER_CONNECTION_LIMIT as u64,
            )? as usize;
        }
        let limit = crate::transport::budget::IN_FLIGHT_BYTES_LIMIT;
        if let Some(value) = self.in_flight_bytes_max {
            settings.in_flight_bytes_max = range("in_flight_bytes_max", value, 1, limit)?;
        }
        if let Some(value) = self.in_flight_bytes_per_connection_max {
            settings.in_flight_bytes_per_connection_max =
                range("in_flight_bytes_per_connection_max", value, 1, limit)?;
        }
        if let Some(value) = self.shutdown_grace_ms {
            settings.shutdown_grace =
                Duration::from_millis(range("shutdown_grace_ms", value, 0, SHUTDOWN_GRACE_MS_MAX)?);
        }
        if let Some(enabled) = self.auto_create_topics {
            settings.auto_create_topics = enabled;
        }
        if let Some(value) = self.auto_create_topic_partitions {
            // The upper bound is `limits.topic_partitions_max`, checked with the whole file.
            settings.auto_create_topic_partitions = range(
                "auto_create_topic_partitions",
                value.into(),
                1,
                u32::MAX.into(),
            )? as u32;
        }
        let sessions = &mut settings.fetch_sessions;
        if let Some(value) = self.fetch_sessions_max {
            sessions.sessions_max = range(
                "fetch_sessions_max",
                value as u64,
                0,
                fetch_sessions::FETCH_SESSIONS_MAX_LIMIT as u64,
            )? as usize;
        }
        if let Some(value) = self.fetch_session_partitions_max {
            sessions.partitions_max = range(
                "fetch_session_partitions_max",
                value as u64,
                1,
                fetch_sessions::FETCH_SESSION_PARTITIONS_MAX_LIMIT as u64,
            )? as usize;
        }
        let duration_limit = fetch_sessions::FETCH_SESSION_DURATION_MS_LIMIT;
        if let Some(value) = self.fetch_session_idle_max_ms {
            sessions.idle_max = Duration::from_millis(range(
                "fetch_session_idle_max_ms",
                value,
                1,
                duration_limit,
            )?);
        }
        if let Some(value) = self.fetch_session_eviction_min_ms {
            sessions.eviction_min = Duration::from_millis(range(
                "fetch_session_eviction_min_ms",
                value,
                0,
                duration_limit,
            )?);
        }
        if let Some(value) = self.sasl_session_lifetime_ms {
            settings.sasl_session_lifetime = Duration::from_millis(range(
                "sasl_session_lifetime_ms",
                value,
                0,
                SASL_SESSION_LIFETIME_MS_MAX,
            )?);
        }
        if let Some(value) = self.sasl_receive_bytes_max {
            settings.sasl_receive_bytes_max = range(
                "sasl_receive_bytes_max",
                value.into(),
                SASL_RECEIVE_BYTES_MAX_MIN.into(),
                FRAME_BYTES_MAX_LIMIT.into(),
            )? as u32;
        }
        if settings.in_flight_bytes_per_connection_max > settings.in_flight_bytes_max {
            return Err(format!(
                "{origin}: kafka.in_flight_bytes_per_connection_max ({}) exceeds kafka.in_flight_bytes_max ({})",
                settings.in_flight_bytes_per_connection_max, settings.in_flight_bytes_max
            ));
        }
        // A frame that can never be reserved would close every connection that sends one.
        if u64::from(settings.frame_bytes_max) > settings.in_flight_bytes_per_connection_max {
            return Err(format!(
                "{origin}: kafka.frame_bytes_max ({}) exceeds kafka.in_flight_bytes_per_connection_max ({}): such a request could never be read",
                settings.frame_bytes_max, settings.in_flight_bytes_per_connection_max
            ));
        }
        Ok(settings)
    }
}

/// Checks that `address` is `host:port`; the error names `kafka.<key>`.
fn host_port(origin: &str, key: &str, address: String) -> Result<String, String> {
    let port = address
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|port| port.parse::<u16>().ok());
    match port {
        Some(_) if listener::advertises_a_wildcard(&address) => Err(format!(
            "{origin}: kafka.{key}: {address:?} is a wildcard address clients cannot connect to; give this node's routable host:port"
        )),
        Some(_) => Ok(address),
        None => Err(format!(
            "{origin}: kafka.{key}: {address:?} is not host:port"
        )),
    }
}

impl KafkaSettings {
    /// The TCP address of the plaintext listener, given the node's QUIC listen address;
    /// `None` when it is off.
    pub fn listen_address(&self, quic_listen: SocketAddr) -> Option<SocketAddr> {
        match self.listen {
            PlaintextListen::QuicAddress => Some(quic_listen),
            PlaintextListen::At(address) => Some(address),
            PlaintextListen::Off => None,
        }
    }
}

#[cfg(test)]
mod settings_tests {
    use crate::config::NodeConfig;

    fn parse(text: &str) -> Result<NodeConfig, String> {
        NodeConfig::from_toml(text, "node.toml").map_err(|error| error.0)
    }

    #[test]
    fn defaults_listen_beside_quic() {
        let config = parse("").unwrap();
        assert!(config.kafka.enabled);
        let quic = "127.0.0.1:9092".parse().unwrap();
        assert_eq!(config.kafka.listen_address(quic), Some(quic));
        assert_eq!(config.kafka.frame_bytes_max, super::FRAME_BYTES_MAX_DEFAULT);
    }

    // Goal: `listen = "off"` turns the plaintext listener off and leaves Kafka (the TLS
    // listener) on; the same words parse for `--kafka-listen`; anything else is refused
    // with a message that names both forms.
    #[test]
    fn the_plaintext_listener_can_be_turned_off() {
        use super::PlaintextListen;
        let config =
            parse("[kafka]\nlisten = \"off\"\ntls_listen = \"127.0.0.1:19093\"\n").unwrap();
        assert!(config.kafka.enabled);
        assert_eq!(config.kafka.listen, PlaintextListen::Off);
        let quic = "127.0.0.1:9092".parse().unwrap();
        assert_eq!(config.kafka.listen_address(quic), None);
        assert_eq!(
            config.kafka.tls_listen,
            Some("127.0.0.1:19093".parse().unwrap())
        );
        // The command line's parser is the same `FromStr`.
        assert_eq!("off".parse::<PlaintextListen>(), Ok(PlaintextListen::Off));
        assert_eq!(
            "127.0.0.1:19092".parse::<PlaintextListen>(),
            Ok(PlaintextListen::At("127.0.0.1:19092".parse().unwrap()))
        );
        for wrong in ["Off", "none", "false", ""] {
            let error = wrong.parse::<PlaintextListen>().unwrap_err().to_string();
            assert!(error.contains("\"off\""), "{wrong}: {error}");
        }
        let error = parse("[kafka]\nlisten = \"no\"\n").unwrap_err();
        assert!(error.contains("kafka.listen"), "{error}");
        assert!(error.contains("\"off\""), "{error}");
    }

    #[test]
    fn the_section_is_read_and_checked() {
        let config = parse(
            "[kafka]\nlisten = \"0.0.0.0:19092\"\nadvertised_listen = \"broker.example:19092\"\nconnections_max = 10\nframe_bytes_max = 1048576\nrequests_in_flight_per_connection_max = 4\nshutdown_grace_ms = 500\n",
        )
        .unwrap();
        assert_eq!(
            config.kafka.listen,
            super::PlaintextListen::At("0.0.0.0:19092".parse().unwrap())
        );
        assert_eq!(
            config.kafka.advertised_listen.as_deref(),
            Some("broker.example:19092")
        );
        assert_eq!(config.kafka.connections_max, 10);
        assert_eq!(
            config.kafka.connections_per_address_max,
            crate::transport::address_limit::KAFKA_CONNECTIONS_PER_ADDRESS_MAX_DEFAULT
        );
        assert_eq!(
            parse("[kafka]\nconnections_per_address_max = 7\n")
                .unwrap()
                .kafka
                .connections_per_address_max,
            7
        );
        assert_eq!(config.kafka.frame_bytes_max, 1_048_576);
        assert_eq!(config.kafka.requests_in_flight_per_connection_max, 4);
        assert_eq!(
            config.kafka.connections_max_idle,
            std::time::Duration::from_millis(super::CONNECTIONS_MAX_IDLE_MS_DEFAULT)
        );
        assert_eq!(
            parse("[kafka]\nconnections_max_idle_ms = 1500\n")
                .unwrap()
                .kafka
                .connections_max_idle,
            std::time::Duration::from_millis(1500)
        );
        // The TLS listener is off unless asked for.
        assert_eq!(config.kafka.tls_listen, None);
        let tls = parse(
            "[kafka]\ntls_listen = \"0.0.0.0:19093\"\nadvertised_tls_listen = \"broker.example:19093\"\ntls_handshake_timeout_ms = 2500\n",
        )
        .unwrap();
        assert_eq!(tls.kafka.tls_listen, Some("0.0.0.0:19093".parse().unwrap()));
        assert_eq!(
            tls.kafka.advertised_tls_listen.as_deref(),
            Some("broker.example:19093")
        );
        assert_eq!(
            tls.kafka.tls_handshake_timeout,
            std::time::Duration::from_millis(2500)
        );
        assert!(!parse("[kafka]\nenabled = false\n").unwrap().kafka.enabled);
        assert_eq!(
            config.kafka.sasl_session_lifetime,
            std::time::Duration::ZERO,
            "no re-authentication by default, as Kafka"
        );
        assert_eq!(
            parse("[kafka]\nsasl_session_lifetime_ms = 3600000\n")
                .unwrap()
                .kafka
                .sasl_session_lifetime,
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(config.kafka.sasl_receive_bytes_max, 512 * 1024);
        assert_eq!(
            parse("[kafka]\nsasl_receive_bytes_max = 65536\n")
                .unwrap()
                .kafka
                .sasl_receive_bytes_max,
            65536
        );
        assert!(config.kafka.auto_create_topics, "on by default, as Kafka");
        assert_eq!(config.kafka.auto_create_topic_partitions, 1);
        let auto = parse("[kafka]\nauto_create_topics = false\nauto_create_topic_partitions = 6\n")
            .unwrap();
        assert!(!auto.kafka.auto_create_topics);
        assert_eq!(auto.kafka.auto_create_topic_partitions, 6);

        assert_eq!(
            config.kafka.fetch_sessions,
            super::FetchSessionLimits::default()
        );
        let sessions = parse(
            "[kafka]\nfetch_sessions_max = 0\nfetch_session_partitions_max = 500\nfetch_session_idle_max_ms = 9000\nfetch_session_eviction_min_ms = 0\n",
        )
        .unwrap()
        .kafka
        .fetch_sessions;
        assert_eq!(
            sessions,
            super::FetchSessionLimits {
                sessions_max: 0,
                partitions_max: 500,
                idle_max: std::time::Duration::from_millis(9000),
                eviction_min: std::time::Duration::ZERO,
            }
        );
        for (text, key) in [
            ("[kafka]\nlisten = \"\"\n", "kafka.listen"),
            ("[kafka]\nlisten = \"nine\"\n", "kafka.listen"),
            (
                "[kafka]\nadvertised_listen = \"host\"\n",
                "kafka.advertised_listen",
            ),
            (
                "[kafka]\nadvertised_listen = \"0.0.0.0:9092\"\n",
                "kafka.advertised_listen",
            ),
            (
                "[kafka]\nadvertised_tls_listen = \"[::]:9093\"\n",
                "kafka.advertised_tls_listen",
            ),
            ("[kafka]\nconnections_max = 0\n", "kafka.connections_max"),
            (
                "[kafka]\nconnections_per_address_max = 0\n",
                "kafka.connections_per_address_max",
            ),
            (
                "[kafka]\nconnections_max_idle_ms = 0\n",
                "kafka.connections_max_idle_ms",
            ),
            ("[kafka]\ntls_listen = \"tls\"\n", "kafka.tls_listen"),
            (
                "[kafka]\nadvertised_tls_listen = \":9093\"\n",
                "kafka.advertised_tls_listen",
            ),
            (
                "[kafka]\ntls_handshake_timeout_ms = 0\n",
                "kafka.tls_handshake_timeout_ms",
            ),
            ("[kafka]\nframe_bytes_max = 10\n", "kafka.frame_bytes_max"),
            (
                "[kafka]\nrequests_in_flight_per_connection_max = 0\n",
                "kafka.requests_in_flight_per_connection_max",
            ),
            (
                "[kafka]\nin_flight_bytes_per_connection_max = 100000\n",
                "kafka.frame_bytes_max",
            ),
            ("[kafka]\nlisten_port = 1\n", "listen_port"),
            (
                "[kafka]\nauto_create_topic_partitions = 0\n",
                "kafka.auto_create_topic_partitions",
            ),
            (
                "[kafka]\nauto_create_topic_partitions = 9\n[limits]\ntopic_partitions_max = 8\n",
                "kafka.auto_create_topic_partitions (9) exceeds limits.topic_partitions_max (8)",
            ),
            (
                "[kafka]\nfetch_sessions_max = 2000000\n",
                "kafka.fetch_sessions_max",
            ),
            (
                "[kafka]\nfetch_session_partitions_max = 0\n",
                "kafka.fetch_session_partitions_max",
            ),
            (
                "[kafka]\nfetch_session_idle_max_ms = 0\n",
                "kafka.fetch_session_idle_max_ms",
            ),
            (
                "[kafka]\nfetch_session_eviction_min_ms = 86400001\n",
                "kafka.fetch_session_eviction_min_ms",
            ),
            (
                "[kafka]\nsasl_session_lifetime_ms = 2592000001\n",
                "kafka.sasl_session_lifetime_ms",
            ),
            (
                "[kafka]\nsasl_receive_bytes_max = 100\n",
                "kafka.sasl_receive_bytes_max",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
    }
}
