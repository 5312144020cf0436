//! Running under a service manager: systemd's readiness protocol and config reload.
//!
//! [`Notifier`] speaks `sd_notify(3)`: one datagram of `KEY=VALUE` lines to the Unix socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). The protocol is
//! that datagram and nothing else, so it is written here over `std`'s `UnixDatagram` instead
//! of taking a crate for it (the `sd-notify` crate is the same few lines). Without
//! `NOTIFY_SOCKET` (not started by systemd with `Type=notify`) there is no notifier and
//! nothing is sent.
//!
//! [`restart_needed`] compares the config the node started with to one re-read on `SIGHUP`:
//! a reload applies declared topics, modules and transforms, and names everything else that
//! changed as waiting for a restart.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::config::NodeConfig;

/// The environment variable systemd sets to the notification socket's address.
pub const NOTIFY_SOCKET_VARIABLE: &str = "NOTIFY_SOCKET";

/// Why the notification socket could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is not a path nor an `@abstract` name.
    #[error("NOTIFY_SOCKET={0:?} is not an absolute path or an @abstract socket name")]
    Address(String),
    /// The socket could not be made or addressed.
    #[error("NOTIFY_SOCKET={address:?}: {source}")]
    Socket {
        /// The variable's value.
        address: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    /// The variable's value, for messages.
    name: String,
}

impl Notifier {
    /// The notifier `NOTIFY_SOCKET` names, or `None` when it is unset or empty (not run by a
    /// service manager that waits for readiness).
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var_os(NOTIFY_SOCKET_VARIABLE) {
            Some(value) if !value.is_empty() => {
                Self::for_address(&value.to_string_lossy()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A notifier for `address` as `NOTIFY_SOCKET` spells it.
    pub fn for_address(address: &str) -> Result<Self, NotifyError> {
        let socket_error = |source| NotifyError::Socket {
            address: address.to_string(),
            source,
        };
        let parsed = if let Some(name) = address.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(socket_error)?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(socket_error)?
        } else {
            return Err(NotifyError::Address(address.to_string()));
        };
        let socket = UnixDatagram::unbound().map_err(socket_error)?;
        Ok(Self {
            socket,
            address: parsed,
            name: address.to_string(),
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments) in one datagram. A failure
    /// is logged, never fatal: the node serves whether or not its manager heard.
    pub fn notify(&self, state: &str) {
        if let Err(error) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::warn!(socket = %self.name, %error, "cannot notify the service manager");
        }
    }

    /// `READY=1`: listeners bound, partitions open, serving.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1`, stamped with `CLOCK_MONOTONIC` in microseconds as `sd_notify(3)` asks
    /// (the manager matches it with the reload it started); `READY=1` follows when done.
    pub fn reloading(&self, monotonic_us: u64) {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={monotonic_us}"));
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=shutting down");
    }
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it (systemd compares it to
/// its own reading of the same clock, so the node's clock abstraction does not apply).
pub fn monotonic_us() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one timespec we own.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    if status != 0 {
        return 0;
    }
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000)
}

/// The settings that differ between `running` (the file the node started with) and
/// `reloaded` (the file re-read on `SIGHUP`) and that a reload cannot apply: bound sockets,
/// the data directory, TLS, limits, security and cluster settings are read once at start.
/// Declared topics, modules and transforms are not listed: a reload applies them.
pub fn restart_needed(running: &NodeConfig, reloaded: &NodeConfig) -> Vec<&'static str> {
    // Every field of `NodeConfig` but the three a reload applies, compared by value. The
    // config types carry no hash maps, so their `Debug` text is a faithful comparison; a
    // field added to `NodeConfig` fails to compile here until it is listed (the destructuring
    // below is exhaustive).
    let NodeConfig {
        data_dir,
        listen,
        advertised_address,
        tls_cert,
        tls_key,
        disk_backend,
        transport,
        broker,
        topics: _,
        modules: _,
        transforms: _,
        sealed_segment_files_open_max,
        cluster,
        kafka,
        security,
        quota,
        admin,
        log_format,
    } = running;
    let differs = |old: &dyn std::fmt::Debug, new: &dyn std::fmt::Debug| {
        format!("{old:?}") != format!("{new:?}")
    };
    let checks: [(&'static str, bool); 15] = [
        ("node.data_dir", differs(data_dir, &reloaded.data_dir)),
        ("node.listen", differs(listen, &reloaded.listen)),
        (
            "node.advertised_address",
            differs(advertised_address, &reloaded.advertised_address),
        ),
        ("tls.cert", differs(tls_cert, &reloaded.tls_cert)),
        ("tls.key", differs(tls_key, &reloaded.tls_key)),
        (
            "node.disk_backend",
            differs(disk_backend, &reloaded.disk_backend),
        ),
        (
            "[limits] (connections and QUIC)",
            differs(transport, &reloaded.transport),
        ),
        (
            "broker settings ([limits], [log], [groups], [topic_defaults], [transforms])",
            differs(broker, &reloaded.broker),
        ),
        (
            "log.sealed_segment_files_open_max",
            differs(
                sealed_segment_files_open_max,
                &reloaded.sealed_segment_files_open_max,
            ),
        ),
        ("[cluster]", differs(cluster, &reloaded.cluster)),
        ("[kafka]", differs(kafka, &reloaded.kafka)),
        ("[security]", differs(security, &reloaded.security)),
        ("[quota]", differs(quota, &reloaded.quota)),
        ("[admin]", differs(admin, &reloaded.admin)),
        ("logging.format", differs(log_format, &reloaded.log_format)),
    ];
    checks
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_notification_is_one_datagram_on_the_named_socket() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::for_address(&path.display().to_string()).unwrap();
        notifier.ready("serving");
        notifier.reloading(42);
        notifier.stopping();
        let mut buffer = [0u8; 256];
        let mut received = Vec::new();
        for _ in 0..3 {
            let length = listener.recv(&mut buffer).unwrap();
            received.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        assert_eq!(
            received,
            [
                "READY=1\nSTATUS=serving",
                "RELOADING=1\nMONOTONIC_USEC=42",
                "STOPPING=1\nSTATUS=shutting down"
            ]
        );
    }

    #[test]
    fn an_abstract_socket_name_is_reached_by_its_at_sign_spelling() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ledge-notify-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::for_address(&format!("@{name}"))
            .unwrap()
            .ready("up");
        let mut buffer = [0u8; 64];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=up");
    }

    #[test]
    fn a_relative_notify_socket_is_refused() {
        assert!(matches!(
            Notifier::for_address("run/notify"),
            Err(NotifyError::Address(_))
        ));
    }

    #[test]
    fn the_monotonic_clock_reads_a_positive_time() {
        assert!(monotonic_us() > 0);
    }

    fn parse(text: &str) -> NodeConfig {
        NodeConfig::from_toml(text, "test.toml").unwrap()
    }

    #[test]
    fn declared_topics_modules_and_transforms_need_no_restart() {
        let running = parse("[node]\ndata_dir = \"/var/lib/ledge\"\n");
        let reloaded = parse(
            "[node]\ndata_dir = \"/var/lib/ledge\"\n[[topic]]\nname = \"added\"\npartitions = 2\n",
        );
        assert_eq!(reloaded.topics.len(), 1);
        assert!(restart_needed(&running, &reloaded).is_empty());
        assert!(restart_needed(&running, &running.clone()).is_empty());
    }

    #[test]
    fn listeners_data_dir_and_limits_are_named_as_needing_a_restart() {
        let running = parse("[node]\ndata_dir = \"/var/lib/ledge\"\n");
        let reloaded = parse(
            "[node]\ndata_dir = \"/srv/ledge\"\nlisten = \"0.0.0.0:9092\"\n[limits]\nconnections_max = 10\n[kafka]\nenabled = false\n[security]\nallow_anonymous = true\n",
        );
        assert_eq!(
            restart_needed(&running, &reloaded),
            [
                "node.data_dir",
                "node.listen",
                "[limits] (connections and QUIC)",
                "[kafka]",
                "[security]"
            ]
        );
    }

    #[test]
    fn the_packaged_config_is_the_built_in_defaults_with_data_in_var_lib_ledge() {
        // The .deb's /etc/ledge/ledge.toml (deploy/deb/build.sh) must not drift from the
        // node's defaults: an operator reading it sees what the node does.
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/deb/ledge.toml");
        let packaged = NodeConfig::from_file(&path).unwrap();
        let expected = NodeConfig {
            data_dir: "/var/lib/ledge".into(),
            ..NodeConfig::default()
        };
        assert_eq!(format!("{packaged:?}"), format!("{expected:?}"));
        assert!(restart_needed(&expected, &packaged).is_empty());
    }
}
