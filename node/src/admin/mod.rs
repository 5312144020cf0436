//! The admin HTTP listener (`[admin]`, docs/OPERATIONS.md "Admin listener"): `/metrics`
//! (Prometheus/OpenMetrics text), `/livez`, `/readyz` and `/v1/status` for operators and
//! their monitoring, on its own TCP port (`127.0.0.1:9644` by default).
//!
//! - this file: the `[admin]` settings and their limits, and the start-up rule for a listener
//!   off loopback (without authentication it must be allowed explicitly);
//! - `server.rs`: the listener (hyper's HTTP/1 server over tokio, over TLS with `tls = true`)
//!   with its bounds: header bytes, header read time, connection time, concurrent
//!   connections, no request bodies;
//! - `auth.rs`: with `authentication = "required"`, who the caller is (a client certificate,
//!   or HTTP Basic checked against the SCRAM credentials) and what each path needs of the
//!   ACLs;
//! - `routes.rs`: what each path answers, pure over a [`NodeView`] so it is tested without
//!   sockets; `view.rs`: the broker's [`NodeView`] (readiness and status).
//!
//! The metrics themselves are `crate::metrics`'s: hot-path counters are atomics, state
//! gauges are read from the broker at scrape time.

pub mod auth;
pub mod routes;
pub mod server;
pub mod view;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

pub use routes::{NodeView, Readiness, StatusReport};

/// Default `[admin] listen`: loopback only, so a node started with no config serves its
/// metrics to the machine it runs on and to nobody else.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9644";
/// The `[admin] listen` (and `--admin-listen`) value that turns the admin listener off.
pub const LISTEN_OFF: &str = "off";
/// Default `[admin] connections_max`: open admin connections; more are accepted and closed
/// at once. A Prometheus server or two and an operator's curl need a handful.
pub const CONNECTIONS_MAX_DEFAULT: usize = 16;
/// Largest `[admin] connections_max`.
pub const CONNECTIONS_MAX_LIMIT: usize = 4096;
/// Default `[admin] header_bytes_max`: a request line and headers larger than this are
/// answered 431 and the connection closed. Prometheus sends a few hundred bytes.
pub const HEADER_BYTES_MAX_DEFAULT: usize = 8 * 1024;
/// Smallest `[admin] header_bytes_max`.
pub const HEADER_BYTES_MAX_MIN: usize = 1024;
/// Largest `[admin] header_bytes_max`.
pub const HEADER_BYTES_MAX_LIMIT: usize = 64 * 1024;
/// Default `[admin] header_read_timeout_ms`: a client that has not sent its whole request
/// head this long after connecting is cut off, so a slow client cannot hold a slot.
pub const HEADER_READ_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default `[admin] connection_time_max_ms`: the longest an admin connection lives, its
/// answer written included (one request per connection: keep-alive is off), so a client
/// that never reads its answer cannot hold a slot.
pub const CONNECTION_TIME_MAX_MS_DEFAULT: u64 = 30_000;
/// Largest `[admin] header_read_timeout_ms` and `connection_time_max_ms`: ten minutes.
pub const TIME_MAX_MS_LIMIT: u64 = 10 * 60 * 1000;
/// Default `[admin] metrics_label_sets_max`: the most label sets one metric exports (topic
/// partitions, groups' partitions, plug-ins, transforms); beyond it the rest are left out
/// and `ledge_metrics_label_sets_dropped{metric}` says how many, so a node with a million
/// partitions cannot make a scrape a million lines per metric.
pub const METRICS_LABEL_SETS_MAX_DEFAULT: usize = 10_000;
/// Largest `[admin] metrics_label_sets_max`.
pub const METRICS_LABEL_SETS_MAX_LIMIT: usize = 1_000_000;

/// `[admin] authentication`: whether requests must prove a principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAuthentication {
    /// Nobody is asked who they are and no ACL is checked: where the listener listens is
    /// the access control (loopback, or `[security] allow_anonymous = true` off it).
    None,
    /// Every request but `/livez` and `/readyz` needs a verified client certificate or HTTP
    /// Basic credentials of a SCRAM user (TLS only), and, with authorization on, the ACLs'
    /// leave (`auth.rs`).
    Required,
}

impl AdminAuthentication {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Required => "required",
        }
    }
}

/// `[admin] listen` / `--admin-listen`: where the admin listener listens, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminListen {
    /// This TCP address.
    At(SocketAddr),
    /// No admin listener (`"off"`).
    Off,
}

impl Default for AdminListen {
    fn default() -> Self {
        Self::At(
            LISTEN_DEFAULT
                .parse()
                .expect("the default admin address parses"),
        )
    }
}

/// An `[admin] listen` / `--admin-listen` value that is neither an address nor `"off"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address like 127.0.0.1:9644, or \"off\" for no admin listener")]
pub struct AdminListenError(String);

impl FromStr for AdminListen {
    type Err = AdminListenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == LISTEN_OFF {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::At)
            .map_err(|_| AdminListenError(text.to_owned()))
    }
}

/// The `[admin]` section, checked (docs/OPERATIONS.md, "Admin listener").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the listener listens, or off.
    pub listen: AdminListen,
    /// Most open admin connections.
    pub connections_max: usize,
    /// Largest request head (request line and headers), in bytes.
    pub header_bytes_max: usize,
    /// How long a client has to send its request head.
    pub header_read_timeout: Duration,
    /// The longest an admin connection lives.
    pub connection_time_max: Duration,
    /// Most label sets one metric exports.
    pub metrics_label_sets_max: usize,
    /// Serve HTTPS with the node's certificate.
    pub tls: bool,
    /// Whether requests must authenticate.
    pub authentication: AdminAuthentication,
    /// Whether the event metrics are recorded (`crate::metrics::set_recording`).
    pub metrics_recording: bool,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: AdminListen::default(),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_bytes_max: HEADER_BYTES_MAX_DEFAULT,
            header_read_timeout: Duration::from_millis(HEADER_READ_TIMEOUT_MS_DEFAULT),
            connection_time_max: Duration::from_millis(CONNECTION_TIME_MAX_MS_DEFAULT),
            metrics_label_sets_max: METRICS_LABEL_SETS_MAX_DEFAULT,
            tls: false,
            authentication: AdminAuthentication::None,
            metrics_recording: true,
        }
    }
}

/// The `[admin]` section as written in the config file.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    listen: Option<String>,
    connections_max: Option<usize>,
    header_bytes_max: Option<usize>,
    header_read_timeout_ms: Option<u64>,
    connection_time_max_ms: Option<u64>,
    metrics_label_sets_max: Option<usize>,
    tls: Option<bool>,
    authentication: Option<String>,
    metrics_recording: Option<bool>,
}

impl AdminSection {
    /// Checks the section; errors name the key (`origin: admin.<key>: ...`).
    pub fn settings(self, origin: &str) -> Result<AdminSettings, String> {
        let mut settings = AdminSettings::default();
        let range = |key: &str, value: u64, min: u64, max: u64| {
            crate::config::in_range(origin, "admin", key, value, min, max)
        };
        if let Some(listen) = self.listen {
            settings.listen = listen
                .parse()
                .map_err(|error| format!("{origin}: admin.listen: {error}"))?;
        }
        if let Some(value) = self.connections_max {
            settings.connections_max = range(
                "connections_max",
                value as u64,
                1,
                CONNECTIONS_MAX_LIMIT as u64,
            )? as usize;
        }
        if let Some(value) = self.header_bytes_max {
            settings.header_bytes_max = range(
                "header_bytes_max",
                value as u64,
                HEADER_BYTES_MAX_MIN as u64,
                HEADER_BYTES_MAX_LIMIT as u64,
            )? as usize;
        }
        if let Some(value) = self.header_read_timeout_ms {
            settings.header_read_timeout = Duration::from_millis(range(
                "header_read_timeout_ms",
                value,
                1,
                TIME_MAX_MS_LIMIT,
            )?);
        }
        if let Some(value) = self.connection_time_max_ms {
            settings.connection_time_max = Duration::from_millis(range(
                "connection_time_max_ms",
                value,
                1,
                TIME_MAX_MS_LIMIT,
            )?);
        }
        if let Some(value) = self.metrics_label_sets_max {
            settings.metrics_label_sets_max = range(
                "metrics_label_sets_max",
                value as u64,
                1,
                METRICS_LABEL_SETS_MAX_LIMIT as u64,
            )? as usize;
        }
        settings.tls = self.tls.unwrap_or(false);
        // Unset: required exactly when TLS is on (a password or a certificate then travels
        // encrypted); over plain HTTP there is nothing safe to authenticate with.
        settings.authentication = match self.authentication.as_deref() {
            None if settings.tls => AdminAuthentication::Required,
            None | Some("none") => AdminAuthentication::None,
            Some("required") if settings.tls => AdminAuthentication::Required,
            Some("required") => {
                return Err(format!(
                    "{origin}: admin.authentication: \"required\" needs admin.tls = true: HTTP Basic over plain HTTP would send passwords in clear, and client certificates need TLS"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "{origin}: admin.authentication: {other:?} is not \"none\" or \"required\""
                ));
            }
        };
        if let Some(on) = self.metrics_recording {
            settings.metrics_recording = on;
        }
        Ok(settings)
    }
}

/// The node must not start: the admin listener is off loopback without authentication and
/// anonymous admin access was not allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to start: the admin HTTP listener on {address} is not on a loopback address and it serves metrics and status without authentication ({}), so anyone who can reach it could read them; either set [admin] tls = true (HTTPS with the node's certificate; callers then authenticate with a client certificate or HTTP Basic as a SCRAM user), or set [security] allow_anonymous = true to allow anonymous access explicitly, or set [admin] listen to a loopback address (127.0.0.1:9644) or \"off\"",
    if *tls { "admin.authentication = \"none\"" } else { "plain HTTP" }
)]
pub struct AdminExposed {
    /// Where it would listen.
    pub address: SocketAddr,
    /// Whether it would serve TLS.
    pub tls: bool,
}

impl AdminSettings {
    /// The start-up rule for the admin listener, as the QUIC and Kafka listeners have theirs
    /// (`config/security.rs`): off loopback it must authenticate (`tls = true`, which makes
    /// `authentication = "required"` the default), or `[security] allow_anonymous = true`
    /// must allow anonymous access, whatever the other listeners require.
    pub fn check_exposure(&self, allow_anonymous: Option<bool>) -> Result<(), AdminExposed> {
        match self.listen {
            AdminListen::At(address)
                if !address.ip().is_loopback()
                    && self.authentication == AdminAuthentication::None
                    && allow_anonymous != Some(true) =>
            {
                Err(AdminExposed {
                    address,
                    tls: self.tls,
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    fn parse(text: &str) -> Result<AdminSettings, String> {
        NodeConfig::from_toml(text, "t.toml")
            .map(|config| config.admin)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = parse("").unwrap();
        assert_eq!(
            settings.listen,
            AdminListen::At("127.0.0.1:9644".parse().unwrap())
        );
        assert_eq!(settings.connections_max, 16);
        assert_eq!(settings.header_bytes_max, 8192);
        assert_eq!(settings.header_read_timeout, Duration::from_secs(5));
        assert_eq!(settings.connection_time_max, Duration::from_secs(30));
        assert_eq!(settings.metrics_label_sets_max, 10_000);
        assert!(!settings.tls);
        assert_eq!(settings.authentication, AdminAuthentication::None);
        assert!(settings.metrics_recording);
    }

    #[test]
    fn tls_makes_authentication_required_unless_turned_off() {
        let tls = parse("[admin]\ntls = true\n").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.authentication, AdminAuthentication::Required);
        let open = parse("[admin]\ntls = true\nauthentication = \"none\"\n").unwrap();
        assert_eq!(open.authentication, AdminAuthentication::None);
        let error = parse("[admin]\nauthentication = \"required\"\n").unwrap_err();
        assert!(error.contains("admin.authentication") && error.contains("admin.tls = true"));
        let error = parse("[admin]\ntls = true\nauthentication = \"basic\"\n").unwrap_err();
        assert!(error.contains("admin.authentication"), "{error}");
    }

    #[test]
    fn keys_parse_and_are_range_checked() {
        let settings = parse(
            "[admin]\nlisten = \"127.0.0.1:0\"\nconnections_max = 3\nheader_bytes_max = 2048\nheader_read_timeout_ms = 100\nconnection_time_max_ms = 200\nmetrics_label_sets_max = 7\nmetrics_recording = false\n",
        )
        .unwrap();
        assert_eq!(
            settings.listen,
            AdminListen::At("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(settings.connections_max, 3);
        assert_eq!(settings.header_bytes_max, 2048);
        assert_eq!(settings.header_read_timeout, Duration::from_millis(100));
        assert_eq!(settings.connection_time_max, Duration::from_millis(200));
        assert_eq!(settings.metrics_label_sets_max, 7);
        assert!(!settings.metrics_recording);
        assert_eq!(
            parse("[admin]\nlisten = \"off\"\n").unwrap().listen,
            AdminListen::Off
        );
        for (text, key) in [
            ("[admin]\nlisten = \"nowhere\"\n", "admin.listen"),
            ("[admin]\nconnections_max = 0\n", "admin.connections_max"),
            (
                "[admin]\nheader_bytes_max = 100\n",
                "admin.header_bytes_max",
            ),
            (
                "[admin]\nheader_read_timeout_ms = 0\n",
                "admin.header_read_timeout_ms",
            ),
            (
                "[admin]\nmetrics_label_sets_max = 0\n",
                "admin.metrics_label_sets_max",
            ),
            ("[admin]\nport = 1\n", "unknown field"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn off_loopback_needs_anonymous_access_allowed() {
        let loopback = AdminSettings::default();
        assert_eq!(loopback.check_exposure(None), Ok(()));
        assert_eq!(loopback.check_exposure(Some(false)), Ok(()));
        let exposed = AdminSettings {
            listen: AdminListen::At("0.0.0.0:9644".parse().unwrap()),
            ..AdminSettings::default()
        };
        for refused in [None, Some(false)] {
            let error = exposed.check_exposure(refused).unwrap_err().to_string();
            assert!(error.contains("allow_anonymous = true"), "{error}");
            assert!(error.contains("plain HTTP"), "{error}");
            assert!(error.contains("[admin] tls = true"), "{error}");
        }
        assert_eq!(exposed.check_exposure(Some(true)), Ok(()));
        // TLS with authentication (the default once TLS is on) may listen anywhere.
        let authenticated = AdminSettings {
            tls: true,
            authentication: AdminAuthentication::Required,
            ..exposed.clone()
        };
        assert_eq!(authenticated.check_exposure(None), Ok(()));
        assert_eq!(authenticated.check_exposure(Some(false)), Ok(()));
        // TLS alone, authentication turned off, is still anonymous.
        let encrypted_only = AdminSettings {
            tls: true,
            ..exposed.clone()
        };
        let error = encrypted_only.check_exposure(None).unwrap_err().to_string();
        assert!(error.contains("admin.authentication = \"none\""), "{error}");
        let off = AdminSettings {
            listen: AdminListen::Off,
            ..AdminSettings::default()
        };
        assert_eq!(off.check_exposure(None), Ok(()));
    }
}
