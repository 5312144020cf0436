//! The node's TOML config file: node settings, limits, topic defaults and declared topics.
//!
//! Unknown keys are errors (a typo must not silently keep a default). Syntax and type
//! errors come from the TOML parser with line, column and key; errors in values found
//! after parsing (a bad topic config, an invalid topic name) name the file, the line of the
//! `[[topic]]` table and the key. Topic config keys are Kafka's dotted names, written bare
//! (`retention.ms = 86400000`): TOML reads them as nested tables, which are flattened back.
//! See configs/ for examples and docs/OPERATIONS.md for every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::broker::topic_config::{TopicConfig, validate_module_name, validate_topic_name};
use crate::broker::transforms::OnError;
use crate::broker::{BrokerConfig, DeclaredTopic};
use crate::cluster::config::{ClusterConfig, ClusterSection};
use crate::storage::BackendChoice;
use crate::transport::budget::IN_FLIGHT_BYTES_LIMIT;
use crate::transport::quic::TransportLimits;
use crate::wasm::PluginKind;

pub mod quota;
pub mod security;

pub use security::{ClientAuth, SaslMechanism, SecurityConfig};

/// Default listen address (UDP).
pub const LISTEN_DEFAULT: &str = "127.0.0.1:9092";
/// Default data directory, relative to the working directory.
pub const DATA_DIR_DEFAULT: &str = "ledge-data";

/// Everything the node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Where data, metadata and dev TLS material live.
    pub data_dir: PathBuf,
    /// UDP address of the QUIC listener.
    pub listen: SocketAddr,
    /// The address Metadata gives clients for this node, when they must reach it through
    /// something in between (a NAT, a UDP proxy in tests); `None`: the bound listen address.
    pub advertised_address: Option<SocketAddr>,
    /// Operator-supplied certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Operator-supplied private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Disk backend choice.
    pub disk_backend: BackendChoice,
    /// Transport limits.
    pub transport: TransportLimits,
    /// Broker settings and limits.
    pub broker: BrokerConfig,
    /// Topics to reconcile at start.
    pub topics: Vec<DeclaredTopic>,
    /// Named WASM modules to upload at start (`[[module]]`).
    pub modules: Vec<DeclaredModuleFile>,
    /// Topic transforms to deploy at start (`[[transform]]`).
    pub transforms: Vec<DeclaredTransformFile>,
    /// Process-wide cap on sealed segment files kept open for reads
    /// (`[log] sealed_segment_files_open_max`).
    pub sealed_segment_files_open_max: u64,
    /// The `[cluster]` section; `None` is a one-node cluster (node 1), as before clusters.
    pub cluster: Option<ClusterConfig>,
    /// The Kafka listener (`[kafka]`).
    pub kafka: crate::kafka::KafkaSettings,
    /// Authentication and authorization (`[security]`).
    pub security: SecurityConfig,
    /// How client byte-rate quotas are measured (`[quota]`).
    pub quota: crate::security::quota::QuotaSettings,
    /// The admin HTTP listener (`[admin]`).
    pub admin: crate::admin::AdminSettings,
    /// The log line format (`[logging] format`); `None`: not set, text unless
    /// `--log-format` says otherwise.
    pub log_format: Option<crate::logging::LogFormat>,
}

/// A `[[module]]` table: a named module read from a file at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredModuleFile {
    /// The name topics and fetches use.
    pub name: String,
    /// Its kind.
    pub kind: PluginKind,
    /// The `.wasm` file (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Default parameters.
    pub params: BTreeMap<String, String>,
    /// Where it was declared, for errors.
    pub origin: String,
}

/// A `[[transform]]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredTransformFile {
    /// Name.
    pub name: String,
    /// Module kind.
    pub kind: PluginKind,
    /// The `.wasm` file (relative paths are relative to the config file).
    pub path: PathBuf,
    /// Input topic.
    pub input: String,
    /// Output topic (empty: `<input>.<name>`).
    pub output: String,
    /// Parameters.
    pub params: BTreeMap<String, String>,
    /// Error policy.
    pub on_error: OnError,
    /// Dead-letter topic (empty: `<name>.dead-letter`).
    pub dead_letter_topic: String,
    /// A join's second input (`join.table` or `join.with` with its window).
    pub join: Option<crate::broker::metadata::JoinSpec>,
    /// An aggregate's `window.*` settings (checked at load; `None`: not windowed).
    pub window: Option<crate::streams::window::WindowSettings>,
    /// Where it was declared, for errors.
    pub origin: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DATA_DIR_DEFAULT),
            listen: LISTEN_DEFAULT
                .parse()
                .expect("the default listen address parses"),
            advertised_address: None,
            tls_cert: None,
            tls_key: None,
            disk_backend: BackendChoice::Auto,
            transport: TransportLimits::default(),
            broker: BrokerConfig::default(),
            topics: Vec::new(),
            modules: Vec::new(),
            transforms: Vec::new(),
            sealed_segment_files_open_max:
                crate::storage::disk::descriptors::SEALED_SEGMENT_FILES_OPEN_MAX_DEFAULT,
            cluster: None,
            kafka: crate::kafka::KafkaSettings::default(),
            security: SecurityConfig::default(),
            quota: crate::security::quota::QuotaSettings::default(),
            admin: crate::admin::AdminSettings::default(),
            log_format: None,
        }
    }
}

/// A config file error, ready to print.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: Option<NodeSection>,
    tls: Option<TlsSection>,
    limits: Option<LimitsSection>,
    log: Option<LogSection>,
    groups: Option<GroupsSection>,
    topic_defaults: Option<toml::Table>,
    #[serde(default)]
    topic: Vec<toml::Spanned<TopicSection>>,
    wasm: Option<WasmSection>,
    transforms: Option<TransformsSection>,
    #[serde(default)]
    module: Vec<toml::Spanned<ModuleSection>>,
    #[serde(default)]
    transform: Vec<toml::Spanned<TransformSection>>,
    cluster: Option<ClusterSection>,
    kafka: Option<crate::kafka::KafkaSection>,
    security: Option<security::SecuritySection>,
    quota: Option<quota::QuotaSection>,
    admin: Option<crate::admin::AdminSection>,
    logging: Option<LoggingSection>,
}

/// `[logging]`: the node's own log lines (`[log]` is the partition logs' section).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoggingSection {
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WasmSection {
    module_bytes_max: Option<usize>,
    memory_bytes_max: Option<usize>,
    fuel_per_batch: Option<u64>,
    output_bytes_max: Option<usize>,
    batch_records_max: Option<usize>,
    idle_instances_max: Option<usize>,
    modules_max: Option<usize>,
    compiles_concurrent_max: Option<usize>,
    idle_instance_bytes_max: Option<usize>,
    calls_concurrent_max: Option<usize>,
    fetch_fuel_per_second: Option<u64>,
    fetch_fuel_per_principal_per_second: Option<u64>,
    fetch_fuel_principals_tracked_max: Option<usize>,
    module_params_bytes_max: Option<usize>,
    opened_batch_bytes_max: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TransformsSection {
    read_bytes_max: Option<usize>,
    output_batch_bytes: Option<usize>,
    idle_wait_ms: Option<u64>,
    retry_backoff_ms: Option<u64>,
    breaker_window_records: Option<u64>,
    breaker_error_ratio: Option<f64>,
    breaker_records_min: Option<u64>,
    transforms_max: Option<usize>,
    state_memory_bytes_max: Option<u64>,
    commit_batch_bytes_max: Option<u64>,
    table_scan_entries_max: Option<usize>,
    repartition_purge_interval_ms: Option<u64>,
    windows_per_record_max: Option<u32>,
    future_timestamp_ms_max: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleSection {
    name: String,
    kind: String,
    path: PathBuf,
    #[serde(default)]
    params: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformSection {
    name: String,
    kind: String,
    module: PathBuf,
    input: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    on_error: String,
    #[serde(default)]
    dead_letter_topic: String,
    #[serde(default)]
    window: Option<WindowSection>,
    join: Option<JoinSection>,
}

/// `join.*` of a `[[transform]]` (docs/STREAMS.md, "Joins").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinSection {
    table: Option<String>,
    with: Option<String>,
    window_ms: Option<i64>,
    before_ms: Option<i64>,
    after_ms: Option<i64>,
    grace_ms: Option<i64>,
}

impl JoinSection {
    /// The join these keys declare; errors name the key. `window_ms` is both `before_ms`
    /// and `after_ms` unless they are given; `grace_ms` defaults to 0.
    fn spec(&self) -> Result<crate::broker::metadata::JoinSpec, String> {
        use crate::broker::metadata::{JoinKind, JoinSpec};
        let windowed = self.window_ms.is_some()
            || self.before_ms.is_some()
            || self.after_ms.is_some()
            || self.grace_ms.is_some();
        match (&self.table, &self.with) {
            (Some(_), Some(_)) => Err("join.table and join.with are exclusive: a join has one \
                 second input"
                .to_string()),
            (None, None) => {
                Err("join: name the second input with join.table or join.with".to_string())
            }
            (Some(_), None) if windowed => {
                Err("join.window_ms, join.before_ms, join.after_ms and \
                 join.grace_ms are for join.with; a join.table has no window"
                    .to_string())
            }
            (Some(table), None) => Ok(JoinSpec {
                right: table.clone(),
                kind: JoinKind::Table,
            }),
            (None, Some(with)) => {
                let (Some(before_ms), Some(after_ms)) = (
                    self.before_ms.or(self.window_ms),
                    self.after_ms.or(self.window_ms),
                ) else {
                    return Err(
                        "join.with needs join.window_ms (or both join.before_ms and \
                         join.after_ms)"
                            .to_string(),
                    );
                };
                let spec = JoinSpec {
                    right: with.clone(),
                    kind: JoinKind::Stream {
                        before_ms,
                        after_ms,
                        grace_ms: self.grace_ms.unwrap_or(0),
                    },
                };
                if let Some(window) = spec.kind.window() {
                    window.validate().map_err(|error| error.to_string())?;
                }
                Ok(spec)
            }
        }
    }
}

/// `window.*` of a `[[transform]]` (docs/STREAMS.md, "Windows").
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WindowSection {
    kind: Option<String>,
    size_ms: Option<i64>,
    advance_ms: Option<i64>,
    gap_ms: Option<i64>,
    grace_ms: Option<i64>,
    retention_ms: Option<i64>,
    emit: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NodeSection {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    advertised_address: Option<String>,
    node_id: Option<u32>,
    disk_backend: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsSection {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    connections_max: Option<usize>,
    connections_per_address_max: Option<usize>,
    requests_in_flight_per_connection_max: Option<u32>,
    frame_bytes_max: Option<u32>,
    idle_timeout_ms: Option<u64>,
    udp_buffer_bytes: Option<usize>,
    shutdown_grace_ms: Option<u64>,
    in_flight_bytes_max: Option<u64>,
    in_flight_bytes_per_connection_max: Option<u64>,
    quic_stream_receive_window_bytes: Option<u32>,
    quic_connection_receive_window_bytes: Option<u32>,
    quic_send_window_bytes: Option<u32>,
    fetch_wait_max_ms: Option<u64>,
    fetch_bytes_max: Option<u32>,
    produce_timeout_max_ms: Option<u64>,
    delete_records_timeout_max_ms: Option<u64>,
    topic_partitions_max: Option<u32>,
    partitions_max: Option<u32>,
    disk_usage_bytes_max: Option<u64>,
    disk_usage_percent_max: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSection {
    flush_interval_ms: Option<u64>,
    sync_for_readers: Option<bool>,
    visible_at_write: Option<bool>,
    recovery_checkpoint_interval_ms: Option<u64>,
    commit_bytes_max: Option<u64>,
    append_queue_depth: Option<usize>,
    producers_max: Option<usize>,
    recovery_read_bytes: Option<usize>,
    retention_check_interval_ms: Option<u64>,
    compaction_key_map_bytes_max: Option<usize>,
    sealed_segment_files_open_max: Option<u64>,
    verify_bytes_per_second: Option<u64>,
    append_decompressed_bytes_max: Option<usize>,
    append_records_max: Option<usize>,
    append_headers_max: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GroupsSection {
    group_members_max: Option<usize>,
    groups_max: Option<usize>,
    session_timeout_min_ms: Option<u64>,
    session_timeout_max_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    reconciling_heartbeat_interval_ms: Option<u64>,
    rebalance_timeout_max_ms: Option<u64>,
    offset_metadata_bytes_max: Option<usize>,
    offsets_commit_timeout_ms: Option<u64>,
    initial_rebalance_delay_ms: Option<u64>,
    consumer_session_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicSection {
    name: String,
    partitions: u32,
    #[serde(default)]
    config: toml::Table,
}

/// A TOML value a topic config or module parameter cannot be (an array, a date).
#[derive(Debug, thiserror::Error)]
#[error("key {key}: unsupported value {value}; use a string or an integer")]
struct UnsupportedValue {
    /// The flattened key.
    key: String,
    /// The value found.
    value: toml::Value,
}

/// Flattens TOML's nested reading of dotted keys (`retention.ms = 1` is `{retention: {ms: 1}}`)
/// back into Kafka names, with values as text.
fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), UnsupportedValue> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(inner, &name, out)?,
            toml::Value::String(text) => {
                out.insert(name, text.clone());
            }
            toml::Value::Integer(number) => {
                out.insert(name, number.to_string());
            }
            toml::Value::Boolean(flag) => {
                out.insert(name, flag.to_string());
            }
            toml::Value::Float(number) => {
                out.insert(name, number.to_string());
            }
            other => {
                return Err(UnsupportedValue {
                    key: name,
                    value: other.clone(),
                });
            }
        }
    }
    Ok(())
}

fn line_of(text: &str, byte: usize) -> usize {
    text.get(..byte)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

impl NodeConfig {
    /// Reads a config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError(format!("{}: {error}", path.display())))?;
        let mut config = Self::from_toml(&text, &path.display().to_string())?;
        // Module files are named relative to the config file, wherever the node starts.
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        for module in &mut config.modules {
            module.path = base.join(&module.path);
        }
        for transform in &mut config.transforms {
            transform.path = base.join(&transform.path);
        }
        if let Some(cluster) = &mut config.cluster {
            cluster.resolve_paths(base);
        }
        config.security.resolve_paths(base);
        Ok(config)
    }

    /// Parses config text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: FileConfig =
            toml::from_str(text).map_err(|error| ConfigError(format!("{origin}: {error}")))?;
        let mut config = Self::default();
        let node = file.node.unwrap_or_default();
        if let Some(format) = file.logging.and_then(|logging| logging.format) {
            config.log_format = Some(
                format
                    .parse()
                    .map_err(|error| ConfigError(format!("{origin}: logging.format: {error}")))?,
            );
        }
        if let Some(data_dir) = node.data_dir {
            if data_dir.as_os_str().is_empty() {
                return Err(ConfigError(format!(
                    "{origin}: node.data_dir must not be empty"
                )));
            }
            config.data_dir = data_dir;
        }
        let listen_given = node.listen.is_some();
        if let Some(listen) = node.listen {
            config.listen = listen.parse().map_err(|_| {
                ConfigError(format!(
                    "{origin}: node.listen: {listen:?} is not an address like 127.0.0.1:9092"
                ))
            })?;
        }
        if let Some(advertised) = node.advertised_address {
            config.advertised_address = Some(advertised.parse().map_err(|_| {
                ConfigError(format!(
                    "{origin}: node.advertised_address: {advertised:?} is not an address like 127.0.0.1:9092"
                ))
            })?);
        }
        if let Some(node_id) = node.node_id {
            config.broker.node_id = node_id;
        }
        if let Some(section) = file.cluster {
            let cluster = ClusterConfig::from_section(section, origin)?;
            if let Some(node_id) = node.node_id
                && node_id != cluster.node_id
            {
                return Err(ConfigError(format!(
                    "{origin}: node.node_id ({node_id}) disagrees with cluster.node_id ({}); set it in [cluster] only",
                    cluster.node_id
                )));
            }
            config.broker.node_id = cluster.node_id;
            let own = cluster.own_address();
            // Peers dial the address in `cluster.peers`; a node listening elsewhere would be
            // unreachable to them. An unspecified IP (0.0.0.0) listens on every address, so
            // only its port must agree. A node that advertises its peers address
            // (`node.advertised_address`) says something in front of it (a NAT, a proxy)
            // forwards that address to wherever it listens.
            if !listen_reaches(config.listen, own, config.advertised_address) {
                if listen_given {
                    return Err(ConfigError(format!(
                        "{origin}: node.listen ({}) disagrees with this node's address in cluster.peers ({own}, node {}); peers dial that address (set node.advertised_address to it if something in front of the node forwards it here)",
                        config.listen, cluster.node_id
                    )));
                }
                config.listen = own;
            }
            if file
                .tls
                .as_ref()
                .is_some_and(|tls| tls.cert.is_some() || tls.key.is_some())
            {
                return Err(ConfigError(format!(
                    "{origin}: [tls] cert/key cannot be combined with [cluster]: the node presents its cluster certificate (cluster.cert_file) to clients and peers alike"
                )));
            }
            config.cluster = Some(cluster);
        }
        if let Some(backend) = node.disk_backend {
            config.disk_backend = backend
                .parse()
                .map_err(|error| ConfigError(format!("{origin}: node.disk_backend: {error}")))?;
        }
        if let Some(section) = file.admin {
            config.admin = section.settings(origin).map_err(ConfigError)?;
        }
        if let Some(section) = file.kafka {
            config.kafka = section.settings(origin).map_err(ConfigError)?;
        }
        if let Some(section) = file.security {
            config.security = section.settings(origin)?;
        }
        if let Some(section) = file.quota {
            config.quota = section.settings(origin)?;
        }
        let tls = file.tls.unwrap_or_default();
        config.tls_cert = tls.cert;
        config.tls_key = tls.key;
        let limits = file.limits.unwrap_or_default();
        let transport = &mut config.transport;
        if let Some(value) = limits.connections_max {
            if value == 0 || value > CONNECTIONS_MAX_LIMIT {
                return Err(ConfigError(format!(
                    "{origin}: limits.connections_max must be 1..={CONNECTIONS_MAX_LIMIT}, got {value}"
                )));
            }
            transport.connections_max = value;
        }
        if let Some(value) = limits.connections_per_address_max {
            let limit = crate::transport::address_limit::CONNECTIONS_PER_ADDRESS_MAX_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: limits.connections_per_address_max must be 1..={limit}, got {value}"
                )));
            }
            transport.connections_per_address_max = value;
        }
        if let Some(value) = limits.requests_in_flight_per_connection_max {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{origin}: limits.requests_in_flight_per_connection_max must be positive"
                )));
            }
            transport.requests_in_flight_per_connection_max = value;
        }
        if let Some(value) = limits.frame_bytes_max {
            transport.frame_bytes_max = value;
        }
        if let Some(value) = limits.idle_timeout_ms {
            // 0 would turn QUIC's idle timeout off: dead clients would hold connections.
            if value == 0 {
                return Err(ConfigError(format!(
                    "{origin}: limits.idle_timeout_ms must be positive"
                )));
            }
            transport.idle_timeout = duration_ms(origin, "limits.idle_timeout_ms", value)?;
        }
        if let Some(value) = limits.udp_buffer_bytes {
            transport.udp_buffer_bytes = value;
        }
        if let Some(value) = limits.shutdown_grace_ms {
            transport.shutdown_grace = duration_ms(origin, "limits.shutdown_grace_ms", value)?;
        }
        let in_flight_bytes = |key: &str, value: u64| {
            if value == 0 || value > IN_FLIGHT_BYTES_LIMIT {
                return Err(ConfigError(format!(
                    "{origin}: {key} must be 1..={IN_FLIGHT_BYTES_LIMIT}, got {value}"
                )));
            }
            Ok(value)
        };
        if let Some(value) = limits.in_flight_bytes_max {
            transport.in_flight_bytes_max = in_flight_bytes("limits.in_flight_bytes_max", value)?;
        }
        if let Some(value) = limits.in_flight_bytes_per_connection_max {
            transport.in_flight_bytes_per_connection_max =
                in_flight_bytes("limits.in_flight_bytes_per_connection_max", value)?;
        }
        // A connection's share is taken from the node's budget; a larger one would only
        // mislead (the node's limit would cap it).
        if transport.in_flight_bytes_per_connection_max > transport.in_flight_bytes_max {
            return Err(ConfigError(format!(
                "{origin}: limits.in_flight_bytes_per_connection_max ({}) must not exceed limits.in_flight_bytes_max ({})",
                transport.in_flight_bytes_per_connection_max, transport.in_flight_bytes_max
            )));
        }
        // A zero window would stall every stream (QUIC flow control never opens).
        let window = |key: &str, value: u32| {
            if value == 0 {
                return Err(ConfigError(format!("{origin}: {key} must be positive")));
            }
            Ok(value)
        };
        if let Some(value) = limits.quic_stream_receive_window_bytes {
            transport.quic_stream_receive_window_bytes =
                window("limits.quic_stream_receive_window_bytes", value)?;
        }
        if let Some(value) = limits.quic_connection_receive_window_bytes {
            transport.quic_connection_receive_window_bytes =
                window("limits.quic_connection_receive_window_bytes", value)?;
        }
        if let Some(value) = limits.quic_send_window_bytes {
            transport.quic_send_window_bytes = window("limits.quic_send_window_bytes", value)?;
        }
        let broker = &mut config.broker;
        if let Some(value) = limits.fetch_wait_max_ms {
            broker.fetch_wait_max = duration_ms(origin, "limits.fetch_wait_max_ms", value)?;
        }
        if let Some(value) = limits.fetch_bytes_max {
            broker.fetch_bytes_max = value;
        }
        if let Some(value) = limits.produce_timeout_max_ms {
            broker.produce_timeout_max =
                duration_ms(origin, "limits.produce_timeout_max_ms", value)?;
        }
        if let Some(value) = limits.delete_records_timeout_max_ms {
            broker.delete_records_timeout_max =
                duration_ms(origin, "limits.delete_records_timeout_max_ms", value)?;
        }
        if let Some(value) = limits.topic_partitions_max {
            broker.topic_partitions_max = value;
        }
        if let Some(value) = limits.partitions_max {
            broker.partitions_max = value;
        }
        if let Some(value) = limits.disk_usage_bytes_max {
            broker.disk_usage_bytes_max = Some(value);
        }
        if let Some(value) = limits.disk_usage_percent_max {
            if value == 0 || value > 100 {
                return Err(ConfigError(format!(
                    "{origin}: limits.disk_usage_percent_max must be 1..=100, got {value}"
                )));
            }
            // 100 turns the percentage guard off (ENOSPC is still handled).
            broker.disk_usage_percent_max = (value < 100).then_some(value);
        }
        let log = file.log.unwrap_or_default();
        if let Some(value) = log.flush_interval_ms {
            broker.log.flush_interval = duration_ms(origin, "log.flush_interval_ms", value)?;
        }
        if let Some(value) = log.sync_for_readers {
            broker.log.sync_for_readers = value;
        }
        if let Some(value) = log.visible_at_write {
            broker.log.visible_at_write = value;
        }
        if let Some(value) = log.recovery_checkpoint_interval_ms {
            broker.log.recovery_checkpoint_interval =
                duration_ms(origin, "log.recovery_checkpoint_interval_ms", value)?;
        }
        if let Some(value) = log.commit_bytes_max {
            broker.log.commit_bytes_max = value;
        }
        if let Some(value) = log.append_queue_depth {
            // tokio's bounded channel panics above its permit limit, at every partition open.
            broker.log.append_queue_depth = at_most(
                origin,
                "log.append_queue_depth",
                value,
                APPEND_QUEUE_DEPTH_LIMIT,
            )?;
        }
        if let Some(value) = log.producers_max {
            broker.log.producers_max = value;
        }
        if let Some(value) = log.recovery_read_bytes {
            broker.log.recovery_read_bytes = value;
        }
        if let Some(value) = log.retention_check_interval_ms {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{origin}: log.retention_check_interval_ms must be positive"
                )));
            }
            broker.retention_check_interval =
                duration_ms(origin, "log.retention_check_interval_ms", value)?;
        }
        if let Some(value) = log.compaction_key_map_bytes_max {
            broker.compaction_key_map_bytes_max = value;
        }
        if let Some(value) = log.sealed_segment_files_open_max {
            if value == 0 {
                return Err(ConfigError(format!(
                    "{origin}: log.sealed_segment_files_open_max must be positive"
                )));
            }
            config.sealed_segment_files_open_max = value;
        }
        if let Some(value) = log.verify_bytes_per_second {
            broker.verify_bytes_per_second = value;
        }
        // Ranges are checked with the rest of the log settings (`LogConfig::validate`).
        let append_limits = &mut broker.log.append_decode_limits;
        if let Some(value) = log.append_decompressed_bytes_max {
            append_limits.decompressed_bytes_max = value;
        }
        if let Some(value) = log.append_records_max {
            append_limits.records_max = value;
        }
        if let Some(value) = log.append_headers_max {
            append_limits.headers_max = value;
        }
        let groups = file.groups.unwrap_or_default();
        let limits = &mut broker.groups;
        if let Some(value) = groups.group_members_max {
            limits.group_members_max = value;
        }
        if let Some(value) = groups.groups_max {
            limits.groups_max = value;
        }
        if let Some(value) = groups.session_timeout_min_ms {
            limits.session_timeout_min =
                duration_ms(origin, "groups.session_timeout_min_ms", value)?;
        }
        if let Some(value) = groups.session_timeout_max_ms {
            limits.session_timeout_max =
                duration_ms(origin, "groups.session_timeout_max_ms", value)?;
        }
        if let Some(value) = groups.heartbeat_interval_ms {
            limits.heartbeat_interval = duration_ms(origin, "groups.heartbeat_interval_ms", value)?;
        }
        if let Some(value) = groups.reconciling_heartbeat_interval_ms {
            limits.reconciling_heartbeat_interval =
                duration_ms(origin, "groups.reconciling_heartbeat_interval_ms", value)?;
        }
        if let Some(value) = groups.rebalance_timeout_max_ms {
            limits.rebalance_timeout_max =
                duration_ms(origin, "groups.rebalance_timeout_max_ms", value)?;
        }
        if let Some(value) = groups.offset_metadata_bytes_max {
            let limit = crate::groups::coordinator::OFFSET_METADATA_BYTES_LIMIT;
            if value > limit {
                return Err(ConfigError(format!(
                    "groups.offset_metadata_bytes_max = {value}: at most {limit} (the stored length is 16 bits)"
                )));
            }
            limits.offset_metadata_bytes_max = value;
        }
        if let Some(value) = groups.offsets_commit_timeout_ms {
            limits.offsets_commit_timeout =
                duration_ms(origin, "groups.offsets_commit_timeout_ms", value)?;
        }
        if let Some(value) = groups.initial_rebalance_delay_ms {
            limits.initial_rebalance_delay =
                duration_ms(origin, "groups.initial_rebalance_delay_ms", value)?;
        }
        if limits.session_timeout_min > limits.session_timeout_max {
            return Err(ConfigError(format!(
                "{origin}: groups.session_timeout_min_ms must not exceed groups.session_timeout_max_ms"
            )));
        }
        if let Some(value) = groups.consumer_session_timeout_ms {
            limits.consumer_session_timeout =
                duration_ms(origin, "groups.consumer_session_timeout_ms", value)?;
        }
        if limits.consumer_session_timeout < limits.session_timeout_min
            || limits.consumer_session_timeout > limits.session_timeout_max
        {
            return Err(ConfigError(format!(
                "{origin}: groups.consumer_session_timeout_ms ({} ms) must be within groups.session_timeout_min_ms..=groups.session_timeout_max_ms",
                limits.consumer_session_timeout.as_millis()
            )));
        }
        if let Some(defaults) = file.topic_defaults {
            let mut overrides = BTreeMap::new();
            flatten(&defaults, "", &mut overrides)
                .map_err(|error| ConfigError(format!("{origin}: [topic_defaults] {error}")))?;
            broker.topic_defaults =
                TopicConfig::with_overrides(&TopicConfig::default(), &overrides)
                    .map_err(|error| ConfigError(format!("{origin}: [topic_defaults] {error}")))?;
            broker.topic_defaults.overrides.clear();
        }
        if broker.fetch_bytes_max > transport_frame_room(config.transport.frame_bytes_max) {
            return Err(ConfigError(format!(
                "{origin}: limits.fetch_bytes_max ({}) must leave room for headers within limits.frame_bytes_max ({})",
                broker.fetch_bytes_max, config.transport.frame_bytes_max
            )));
        }
        let mut seen = BTreeMap::new();
        for (number, spanned) in file.topic.iter().enumerate() {
            let line = line_of(text, spanned.span().start);
            let topic = spanned.get_ref();
            let place = format!("{origin} line {line}, topic[{number}] ({:?})", topic.name);
            validate_topic_name(&topic.name)
                .map_err(|error| ConfigError(format!("{place}: name: {error}")))?;
            if let Some(previous) = seen.insert(topic.name.clone(), line) {
                return Err(ConfigError(format!(
                    "{place}: topic declared twice (also at line {previous})"
                )));
            }
            if topic.partitions == 0 {
                return Err(ConfigError(format!(
                    "{place}: partitions: must be at least 1"
                )));
            }
            let mut configs = BTreeMap::new();
            flatten(&topic.config, "", &mut configs)
                .map_err(|error| ConfigError(format!("{place}: config: {error}")))?;
            TopicConfig::with_overrides(&config.broker.topic_defaults, &configs)
                .map_err(|error| ConfigError(format!("{place}: config: {error}")))?;
            config.topics.push(DeclaredTopic {
                name: topic.name.clone(),
                partitions: topic.partitions,
                configs,
                origin: place,
            });
        }
        let wasm = file.wasm.unwrap_or_default();
        let limits = &mut config.broker.wasm;
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError(format!(
                    "{origin}: wasm.{key} must be positive"
                )))
            } else {
                Ok(value)
            }
        };
        if let Some(value) = wasm.module_bytes_max {
            limits.module_bytes_max = positive("module_bytes_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.memory_bytes_max {
            limits.memory_bytes_max = positive("memory_bytes_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.fuel_per_batch {
            limits.fuel_per_batch = positive("fuel_per_batch", value)?;
        }
        if let Some(value) = wasm.output_bytes_max {
            limits.output_bytes_max = positive("output_bytes_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.batch_records_max {
            limits.batch_records_max = positive("batch_records_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.idle_instances_max {
            limits.idle_instances_max = value;
        }
        if let Some(value) = wasm.modules_max {
            limits.modules_max = positive("modules_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.compiles_concurrent_max {
            let limit = crate::wasm::runtime::COMPILES_CONCURRENT_MAX_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: wasm.compiles_concurrent_max must be 1..={limit}, got {value}"
                )));
            }
            limits.compiles_concurrent_max = value;
        }
        if let Some(value) = wasm.calls_concurrent_max {
            let limit = crate::wasm::runtime::CALLS_CONCURRENT_MAX_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: wasm.calls_concurrent_max must be 1..={limit}, got {value}"
                )));
            }
            limits.calls_concurrent_max = value;
        }
        let fuel_rate = |key: &str, value: u64| {
            let limit = crate::wasm::fuel_budget::FETCH_FUEL_PER_SECOND_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: wasm.{key} must be 1..={limit}, got {value}"
                )));
            }
            Ok(value)
        };
        if let Some(value) = wasm.fetch_fuel_per_second {
            limits.fetch_fuel_per_second = fuel_rate("fetch_fuel_per_second", value)?;
        }
        if let Some(value) = wasm.fetch_fuel_per_principal_per_second {
            limits.fetch_fuel_per_principal_per_second =
                fuel_rate("fetch_fuel_per_principal_per_second", value)?;
        }
        if let Some(value) = wasm.fetch_fuel_principals_tracked_max {
            let limit = crate::wasm::fuel_budget::FETCH_FUEL_PRINCIPALS_TRACKED_MAX_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: wasm.fetch_fuel_principals_tracked_max must be 1..={limit}, got {value}"
                )));
            }
            limits.fetch_fuel_principals_tracked_max = value;
        }
        if let Some(value) = wasm.idle_instance_bytes_max {
            // 0 keeps no instance warm: every call instantiates afresh.
            limits.idle_instance_bytes_max = value;
        }
        if let Some(value) = wasm.module_params_bytes_max {
            limits.module_params_bytes_max =
                positive("module_params_bytes_max", value as u64)? as usize;
        }
        if let Some(value) = wasm.opened_batch_bytes_max {
            let limit = crate::wasm::OPENED_BATCH_BYTES_MAX_LIMIT;
            if value == 0 || value > limit {
                return Err(ConfigError(format!(
                    "{origin}: wasm.opened_batch_bytes_max must be 1..={limit}, got {value}"
                )));
            }
            limits.opened_batch_bytes_max = value;
        }
        let transforms = file.transforms.unwrap_or_default();
        let limits = &mut config.broker.transforms;
        if let Some(value) = transforms.read_bytes_max {
            limits.read_bytes_max = positive("read_bytes_max", value as u64)? as usize;
        }
        if let Some(value) = transforms.output_batch_bytes {
            limits.output_batch_bytes = positive("output_batch_bytes", value as u64)? as usize;
        }
        if let Some(value) = transforms.idle_wait_ms {
            limits.idle_wait = duration_ms(
                origin,
                "transforms.idle_wait_ms",
                positive("idle_wait_ms", value)?,
            )?;
        }
        if let Some(value) = transforms.retry_backoff_ms {
            limits.retry_backoff = duration_ms(
                origin,
                "transforms.retry_backoff_ms",
                positive("retry_backoff_ms", value)?,
            )?;
        }
        if let Some(value) = transforms.breaker_window_records {
            limits.breaker_window_records = positive("breaker_window_records", value)?;
        }
        if let Some(value) = transforms.breaker_error_ratio {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError(format!(
                    "{origin}: transforms.breaker_error_ratio must be within 0..=1 (1 turns the breaker off), got {value}"
                )));
            }
            limits.breaker_error_ratio = value;
        }
        if let Some(value) = transforms.breaker_records_min {
            limits.breaker_records_min = value;
        }
        if let Some(value) = transforms.transforms_max {
            limits.transforms_max = value;
        }
        if let Some(value) = transforms.state_memory_bytes_max {
            limits.state_memory_bytes_max = positive("state_memory_bytes_max", value)?;
        }
        if let Some(value) = transforms.commit_batch_bytes_max {
            // At least a position's and a few entries' worth; at most what one appended
            // batch may be (the changelog's max.message.bytes default).
            if !(4096..=1024 * 1024).contains(&value) {
                return Err(ConfigError(format!(
                    "{origin}: transforms.commit_batch_bytes_max must be within 4096..=1048576, got {value}"
                )));
            }
            limits.commit_batch_bytes_max = value;
        }
        if let Some(value) = transforms.table_scan_entries_max {
            limits.table_scan_entries_max =
                positive("table_scan_entries_max", value as u64)? as usize;
        }
        if let Some(value) = transforms.repartition_purge_interval_ms {
            // 0: after every input read (a durable write each time).
            limits.repartition_purge_interval = Duration::from_millis(value);
        }
        if let Some(value) = transforms.windows_per_record_max {
            limits.windows_per_record_max =
                positive("windows_per_record_max", u64::from(value))? as u32;
        }
        if let Some(value) = transforms.future_timestamp_ms_max {
            if value < 0 {
                return Err(ConfigError(format!(
                    "{origin}: transforms.future_timestamp_ms_max must not be negative, got {value}"
                )));
            }
            limits.future_timestamp_ms_max = value;
        }
        let mut names = BTreeMap::new();
        for spanned in &file.module {
            let line = line_of(text, spanned.span().start);
            let module = spanned.get_ref();
            let place = format!("{origin} line {line}, module {:?}", module.name);
            validate_module_name(&module.name)
                .map_err(|error| ConfigError(format!("{place}: name: {error}")))?;
            if let Some(previous) = names.insert(module.name.clone(), line) {
                return Err(ConfigError(format!(
                    "{place}: module declared twice (also at line {previous})"
                )));
            }
            let kind = module
                .kind
                .parse()
                .map_err(|error| ConfigError(format!("{place}: kind: {error}")))?;
            let mut params = BTreeMap::new();
            flatten(&module.params, "", &mut params)
                .map_err(|error| ConfigError(format!("{place}: params: {error}")))?;
            config.modules.push(DeclaredModuleFile {
                name: module.name.clone(),
                kind,
                path: module.path.clone(),
                params,
                origin: place,
            });
        }
        let mut names = BTreeMap::new();
        for spanned in &file.transform {
            let line = line_of(text, spanned.span().start);
            let transform = spanned.get_ref();
            let place = format!("{origin} line {line}, transform {:?}", transform.name);
            validate_module_name(&transform.name)
                .map_err(|error| ConfigError(format!("{place}: name: {error}")))?;
            if let Some(previous) = names.insert(transform.name.clone(), line) {
                return Err(ConfigError(format!(
                    "{place}: transform declared twice (also at line {previous})"
                )));
            }
            let kind = transform
                .kind
                .parse()
                .map_err(|error| ConfigError(format!("{place}: kind: {error}")))?;
            // Left out, the key means the default policy (dead-letter).
            let on_error = match transform.on_error.as_str() {
                "" => OnError::default(),
                name => name
                    .parse()
                    .map_err(|error| ConfigError(format!("{place}: {error}")))?,
            };
            validate_topic_name(&transform.input)
                .map_err(|error| ConfigError(format!("{place}: input: {error}")))?;
            let mut params = BTreeMap::new();
            flatten(&transform.params, "", &mut params)
                .map_err(|error| ConfigError(format!("{place}: params: {error}")))?;
            let join = match &transform.join {
                Some(join) => Some(
                    join.spec()
                        .map_err(|error| ConfigError(format!("{place}: {error}")))?,
                ),
                None => None,
            };
            let window =
                transform
                    .window
                    .as_ref()
                    .map(|window| crate::streams::window::WindowSettings {
                        kind: window.kind.clone(),
                        size_ms: window.size_ms,
                        advance_ms: window.advance_ms,
                        gap_ms: window.gap_ms,
                        grace_ms: window.grace_ms,
                        retention_ms: window.retention_ms,
                        emit: window.emit.clone(),
                    });
            if let Some(window) = &window {
                window
                    .resolve(config.broker.transforms.windows_per_record_max)
                    .map_err(|error| ConfigError(format!("{place}: {error}")))?;
            }
            config.transforms.push(DeclaredTransformFile {
                name: transform.name.clone(),
                kind,
                path: transform.module.clone(),
                input: transform.input.clone(),
                output: transform.output.clone(),
                params,
                on_error,
                dead_letter_topic: transform.dead_letter_topic.clone(),
                join,
                window,
                origin: place,
            });
        }
        config
            .broker
            .log
            .validate()
            .map_err(|error| ConfigError(format!("{origin}: [log] {error}")))?;
        // Every auto-created topic would be refused otherwise.
        if config.kafka.auto_create_topic_partitions > config.broker.topic_partitions_max {
            return Err(ConfigError(format!(
                "{origin}: kafka.auto_create_topic_partitions ({}) exceeds limits.topic_partitions_max ({})",
                config.kafka.auto_create_topic_partitions, config.broker.topic_partitions_max
            )));
        }
        Ok(config)
    }
}

/// The longest any `*_ms` key accepts: one year. A longer value means "never" to a person,
/// but clock arithmetic on it overflows (an `Instant` plus `u64::MAX` ms panics), so it is
/// refused here rather than crashing a writer task or the shutdown later.
pub const DURATION_MS_MAX: u64 = 365 * 24 * 3600 * 1000;

/// Most connections `limits.connections_max` accepts (tokio's semaphore caps permits far
/// above this; no edge box holds a million QUIC connections).
pub const CONNECTIONS_MAX_LIMIT: usize = 1_000_000;

/// Most entries `log.append_queue_depth` accepts.
pub const APPEND_QUEUE_DEPTH_LIMIT: usize = 1 << 20;

/// `value`, refused above `limit`, naming the key.
fn at_most(origin: &str, key: &str, value: usize, limit: usize) -> Result<usize, ConfigError> {
    if value > limit {
        return Err(ConfigError(format!(
            "{origin}: {key} ({value}) exceeds the maximum {limit}"
        )));
    }
    Ok(value)
}

/// A `*_ms` key's value as a duration, refused beyond [`DURATION_MS_MAX`].
fn duration_ms(origin: &str, key: &str, value: u64) -> Result<Duration, ConfigError> {
    if value > DURATION_MS_MAX {
        return Err(ConfigError(format!(
            "{origin}: {key} ({value}) exceeds the maximum {DURATION_MS_MAX} (one year)"
        )));
    }
    Ok(Duration::from_millis(value))
}

/// The largest fetch payload that fits in a frame with headers around it.
fn transport_frame_room(frame_bytes_max: u32) -> u32 {
    frame_bytes_max.saturating_sub(1024 * 1024)
}

/// Whether peers dialing `own` (this node's address in `cluster.peers`) reach a node
/// listening on `listen`: the same address, the same port on every address (`0.0.0.0`), or
/// `own` is the node's advertised address, which something in front of it (a NAT, a proxy)
/// forwards to wherever it listens.
pub fn listen_reaches(
    listen: SocketAddr,
    own: SocketAddr,
    advertised_address: Option<SocketAddr>,
) -> bool {
    listen == own
        || (listen.ip().is_unspecified() && listen.port() == own.port())
        || advertised_address == Some(own)
}

/// `value` if it is within `min..=max`, else the error every config section gives for a key
/// out of range: `origin: section.key must be min..=max, got value`.
pub(crate) fn in_range(
    origin: &str,
    section: &str,
    key: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{origin}: {section}.{key} must be {min}..={max}, got {value}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logging_format_is_read_and_checked() {
        let config = NodeConfig::from_toml("[logging]\nformat = \"json\"\n", "t.toml").unwrap();
        assert_eq!(config.log_format, Some(crate::logging::LogFormat::Json));
        let config = NodeConfig::from_toml("", "t.toml").unwrap();
        assert_eq!(config.log_format, None);
        let error = NodeConfig::from_toml("[logging]\nformat = \"xml\"\n", "t.toml").unwrap_err();
        assert!(
            error
                .0
                .contains("t.toml: logging.format: unknown log format \"xml\""),
            "{error}"
        );
        let error = NodeConfig::from_toml("[logging]\nlevel = \"debug\"\n", "t.toml").unwrap_err();
        assert!(error.0.contains("level"), "{error}");
    }

    #[test]
    fn a_full_config_parses() {
        let text = r#"
[node]
data_dir = "/var/lib/ledge"
listen = "0.0.0.0:9093"
disk_backend = "std"

[limits]
connections_max = 10
connections_per_address_max = 3
frame_bytes_max = 16777216
fetch_bytes_max = 8388608
in_flight_bytes_max = 536870912
in_flight_bytes_per_connection_max = 67108864
quic_stream_receive_window_bytes = 1048576
quic_connection_receive_window_bytes = 4194304
quic_send_window_bytes = 2097152

[log]
flush_interval_ms = 200
sync_for_readers = false
visible_at_write = true

[topic_defaults]
retention.ms = 3600000

[[topic]]
name = "orders"
partitions = 3
config.retention.ms = 86400000
config.cleanup.policy = "delete"

[[topic]]
name = "sensors"
partitions = 1
[topic.config]
segment.bytes = 4194304
"#;
        let config = NodeConfig::from_toml(text, "edge.toml").unwrap();
        assert_eq!(config.listen.port(), 9093);
        assert_eq!(config.disk_backend, BackendChoice::Std);
        assert_eq!(config.transport.connections_max, 10);
        assert_eq!(config.transport.connections_per_address_max, 3);
        assert_eq!(config.transport.in_flight_bytes_max, 512 * 1024 * 1024);
        assert_eq!(
            config.transport.in_flight_bytes_per_connection_max,
            64 * 1024 * 1024
        );
        assert_eq!(config.transport.quic_stream_receive_window_bytes, 1 << 20);
        assert_eq!(
            config.transport.quic_connection_receive_window_bytes,
            4 << 20
        );
        assert_eq!(config.transport.quic_send_window_bytes, 2 << 20);
        assert_eq!(config.broker.log.flush_interval, Duration::from_millis(200));
        assert!(!config.broker.log.sync_for_readers);
        assert!(config.broker.log.visible_at_write);
        assert_eq!(
            config.broker.topic_defaults.retention,
            Some(Duration::from_millis(3_600_000))
        );
        assert_eq!(config.topics.len(), 2);
        assert_eq!(
            config.topics[0]
                .configs
                .get("retention.ms")
                .map(String::as_str),
            Some("86400000")
        );
        assert_eq!(
            config.topics[1]
                .configs
                .get("segment.bytes")
                .map(String::as_str),
            Some("4194304")
        );
        assert!(
            config.topics[1].origin.contains("line 32"),
            "{}",
            config.topics[1].origin
        );
    }

    #[test]
    fn the_delete_records_timeout_cap_is_read_with_its_default() {
        // Goal: `limits.delete_records_timeout_max_ms` reaches the broker, and its default is
        // the documented one (docs/OPERATIONS.md).
        let default = NodeConfig::from_toml("", "empty.toml").unwrap();
        assert_eq!(
            default.broker.delete_records_timeout_max,
            Duration::from_secs(300)
        );
        let text = "[limits]\ndelete_records_timeout_max_ms = 45000\n";
        let config = NodeConfig::from_toml(text, "edge.toml").unwrap();
        assert_eq!(
            config.broker.delete_records_timeout_max,
            Duration::from_secs(45)
        );
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let cases = [
            ("[node]\nlisten = \"nowhere\"\n", "node.listen"),
            (
                "[node]\nadvertised_address = \"nowhere\"\n",
                "node.advertised_address",
            ),
            ("[node]\ncolour = \"blue\"\n", "unknown field `colour`"),
            (
                "[[topic]]\nname = \"a\"\npartitions = \"three\"\n",
                "line 3",
            ),
            (
                "\n\n[[topic]]\nname = \"bad/name\"\npartitions = 1\n",
                "line 3, topic[0] (\"bad/name\"): name",
            ),
            (
                "[[topic]]\nname = \"a\"\npartitions = 1\nconfig.retention.ms = \"soon\"\n",
                "line 1, topic[0] (\"a\"): config: retention.ms",
            ),
            (
                "[[topic]]\nname = \"a\"\npartitions = 1\n[[topic]]\nname = \"a\"\npartitions = 2\n",
                "declared twice (also at line 1)",
            ),
            (
                "[topic_defaults]\nsegment.bytes = 5\n",
                "[topic_defaults] segment.bytes",
            ),
            ("[node]\ndisk_backend = \"floppy\"\n", "node.disk_backend"),
            ("[log]\nsync_for_readers = \"yes\"\n", "line 2"),
        ];
        for (text, expected) in cases {
            let error = NodeConfig::from_toml(text, "edge.toml")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected) && error.contains("edge.toml"),
                "expected {expected:?} in: {error}"
            );
        }
    }

    // Goal: `join.*` keys of a `[[transform]]` declare a join's second input (a table, or a
    // stream with its window: window_ms is both before and after unless they are given,
    // grace 0 by default); a missing, doubled or misplaced setting is refused by name.
    #[test]
    fn transform_join_keys_declare_the_second_input() {
        use crate::broker::metadata::{JoinKind, JoinSpec};
        let head = "[[transform]]\nname = \"j\"\nkind = \"join\"\nmodule = \"m.wasm\"\ninput = \"orders\"\n";
        let parse = |keys: &str| NodeConfig::from_toml(&format!("{head}{keys}"), "t.toml");
        let config = parse("join.table = \"customers\"\n").unwrap();
        assert_eq!(
            config.transforms[0].join,
            Some(JoinSpec {
                right: "customers".into(),
                kind: JoinKind::Table
            })
        );
        let config =
            parse("join = { with = \"clicks\", window_ms = 300000, after_ms = 1000 }\n").unwrap();
        assert_eq!(
            config.transforms[0].join,
            Some(JoinSpec {
                right: "clicks".into(),
                kind: JoinKind::Stream {
                    before_ms: 300_000,
                    after_ms: 1000,
                    grace_ms: 0
                }
            })
        );
        assert_eq!(parse("").unwrap().transforms[0].join, None);
        for (keys, expected) in [
            (
                "join.table = \"a\"\njoin.with = \"b\"\n",
                "join.table and join.with are exclusive",
            ),
            ("join.with = \"b\"\n", "join.with needs join.window_ms"),
            (
                "join.table = \"a\"\njoin.grace_ms = 5\n",
                "a join.table has no window",
            ),
            (
                "join.with = \"b\"\njoin.window_ms = 10\njoin.grace_ms = -1\n",
                "join.grace_ms must not be negative",
            ),
            ("join.size_ms = 5\n", "unknown field `size_ms`"),
            ("join = {}\n", "join.table or join.with"),
        ] {
            let error = parse(keys).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
    }

    #[test]
    fn wasm_sections_parse_and_bad_ones_name_the_table() {
        let text = r#"
[wasm]
fuel_per_batch = 5000
batch_records_max = 64
compiles_concurrent_max = 2
calls_concurrent_max = 3
idle_instance_bytes_max = 1048576
fetch_fuel_per_second = 3000000000
fetch_fuel_per_principal_per_second = 1000000000
fetch_fuel_principals_tracked_max = 500

[transforms]
breaker_error_ratio = 0.9
state_memory_bytes_max = 1048576
commit_batch_bytes_max = 65536
table_scan_entries_max = 50
repartition_purge_interval_ms = 5000
windows_per_record_max = 16
future_timestamp_ms_max = 600000

[[module]]
name = "vip"
kind = "partitioner"
path = "vip.wasm"
params = { null_key_partition = "1" }

[[transform]]
name = "high-value"
kind = "filter"
module = "mods/high.wasm"
input = "orders"
params = { threshold = 1000 }
on_error = "skip"

[[transform]]
name = "per-minute"
kind = "aggregate"
module = "mods/totals.wasm"
input = "orders"
window.size_ms = 60000
window.grace_ms = 10000
window.emit = "suppress"
"#;
        let config = NodeConfig::from_toml(text, "t.toml").unwrap();
        assert_eq!(config.broker.wasm.fuel_per_batch, 5000);
        assert_eq!(config.broker.wasm.batch_records_max, 64);
        assert_eq!(config.broker.wasm.compiles_concurrent_max, 2);
        assert_eq!(config.broker.wasm.calls_concurrent_max, 3);
        assert_eq!(config.broker.wasm.idle_instance_bytes_max, 1024 * 1024);
        assert_eq!(config.broker.wasm.fetch_fuel_per_second, 3_000_000_000);
        assert_eq!(
            config.broker.wasm.fetch_fuel_per_principal_per_second,
            1_000_000_000
        );
        assert_eq!(config.broker.wasm.fetch_fuel_principals_tracked_max, 500);
        assert_eq!(config.broker.transforms.breaker_error_ratio, 0.9);
        assert_eq!(config.broker.transforms.state_memory_bytes_max, 1024 * 1024);
        assert_eq!(config.broker.transforms.commit_batch_bytes_max, 65536);
        assert_eq!(config.broker.transforms.table_scan_entries_max, 50);
        assert_eq!(
            config.broker.transforms.repartition_purge_interval,
            Duration::from_secs(5)
        );
        assert_eq!(config.broker.transforms.windows_per_record_max, 16);
        assert_eq!(config.broker.transforms.future_timestamp_ms_max, 600_000);
        assert_eq!(config.transforms[0].window, None);
        let window = config.transforms[1].window.clone().unwrap();
        assert_eq!(
            (window.size_ms, window.grace_ms, window.emit.as_deref()),
            (Some(60_000), Some(10_000), Some("suppress"))
        );
        assert_eq!(config.modules[0].kind, PluginKind::Partitioner);
        assert_eq!(config.modules[0].params["null_key_partition"], "1");
        let transform = &config.transforms[0];
        assert_eq!(transform.params["threshold"], "1000");
        assert_eq!(transform.on_error, OnError::Skip);
        assert_eq!(transform.path, PathBuf::from("mods/high.wasm"));
        // Without `on_error`, the default policy.
        let plain =
            "[[transform]]\nname = \"t\"\nkind = \"map\"\nmodule = \"m.wasm\"\ninput = \"i\"\n";
        let config = NodeConfig::from_toml(plain, "t.toml").unwrap();
        assert_eq!(config.transforms[0].on_error, OnError::DeadLetter);
        for (bad, expected) in [
            (
                "[wasm]\nfuel_per_batch = 0\n",
                "wasm.fuel_per_batch must be positive",
            ),
            ("[wasm]\nfuel = 1\n", "unknown field `fuel`"),
            (
                "[[transform]]\nname = \"t\"\nkind = \"aggregate\"\nmodule = \"m.wasm\"\ninput = \"i\"\nwindow.size_ms = 10\nwindow.advance_ms = 0\n",
                "window.advance_ms must be greater than 0",
            ),
            (
                "[transforms]\nwindows_per_record_max = 0\n",
                "windows_per_record_max",
            ),
            (
                "[wasm]\ncompiles_concurrent_max = 0\n",
                "wasm.compiles_concurrent_max must be 1..=64, got 0",
            ),
            (
                "[wasm]\nfetch_fuel_per_principal_per_second = 0\n",
                "wasm.fetch_fuel_per_principal_per_second must be 1..=",
            ),
            (
                "[wasm]\nfetch_fuel_principals_tracked_max = 0\n",
                "wasm.fetch_fuel_principals_tracked_max must be 1..=",
            ),
            // Renamed before any release: the old key is refused, not ignored.
            (
                "[wasm]\nfetch_fuel_per_connection_per_second = 5\n",
                "unknown field `fetch_fuel_per_connection_per_second`",
            ),
            (
                "[transforms]\nbreaker_error_ratio = 2.0\n",
                "breaker_error_ratio must be within",
            ),
            (
                "[transforms]\nstate_memory_bytes_max = 0\n",
                "state_memory_bytes_max must be positive",
            ),
            (
                "[transforms]\ncommit_batch_bytes_max = 2000000\n",
                "transforms.commit_batch_bytes_max must be within 4096..=1048576, got 2000000",
            ),
            (
                "[[transform]]\nname = \"t\"\nkind = \"reduce\"\nmodule = \"m.wasm\"\ninput = \"i\"\n",
                "line 1, transform \"t\": kind: unknown plug-in kind",
            ),
            (
                "[[transform]]\nname = \"t\"\nkind = \"map\"\nmodule = \"m.wasm\"\ninput = \"i\"\non_error = \"retry\"\n",
                "on_error \"retry\" must be dead-letter, skip or stop",
            ),
            (
                "[[module]]\nname = \"m m\"\nkind = \"map\"\npath = \"m.wasm\"\n",
                "module \"m m\": name:",
            ),
        ] {
            let error = NodeConfig::from_toml(bad, "t.toml")
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
        }
    }

    // Goal (issue 11, "Bad input, in general"): every config value that used to reach code
    // that panics (clock arithmetic on a huge duration, a semaphore over its permit limit)
    // or silently disables a safeguard (an idle timeout of 0, or too large for QUIC) is
    // refused at load time with the key named. Before the audit all of these parsed; a
    // `flush_interval_ms` of u64::MAX then panicked the partition writer on the first
    // acks=1 produce.
    #[test]
    fn values_that_would_overflow_or_disable_a_limit_are_refused_naming_the_key() {
        let huge = u64::MAX;
        for (bad, expected) in [
            (
                format!("[log]\nflush_interval_ms = {huge}\n"),
                "log.flush_interval_ms (18446744073709551615) exceeds the maximum",
            ),
            (
                format!("[limits]\nshutdown_grace_ms = {huge}\n"),
                "limits.shutdown_grace_ms",
            ),
            (
                format!("[limits]\nidle_timeout_ms = {huge}\n"),
                "limits.idle_timeout_ms",
            ),
            (
                "[limits]\nidle_timeout_ms = 0\n".to_string(),
                "limits.idle_timeout_ms must be positive",
            ),
            (
                format!("[limits]\nconnections_max = {}\n", i64::MAX),
                "limits.connections_max must be 1..=1000000",
            ),
            (
                "[limits]\nconnections_max = 0\n".to_string(),
                "limits.connections_max must be 1..=1000000",
            ),
            (
                "[limits]\nconnections_per_address_max = 0\n".to_string(),
                "limits.connections_per_address_max must be 1..=1000000, got 0",
            ),
            (
                "[limits]\nrequests_in_flight_per_connection_max = 0\n".to_string(),
                "requests_in_flight_per_connection_max must be positive",
            ),
            (
                "[limits]\nin_flight_bytes_max = 0\n".to_string(),
                "limits.in_flight_bytes_max must be 1..=1099511627776, got 0",
            ),
            (
                format!(
                    "[limits]\nin_flight_bytes_per_connection_max = {}\n",
                    i64::MAX
                ),
                "limits.in_flight_bytes_per_connection_max must be 1..=1099511627776",
            ),
            (
                "[limits]\nin_flight_bytes_max = 1000\nin_flight_bytes_per_connection_max = 1001\n"
                    .to_string(),
                "limits.in_flight_bytes_per_connection_max (1001) must not exceed limits.in_flight_bytes_max (1000)",
            ),
            (
                "[limits]\nquic_stream_receive_window_bytes = 0\n".to_string(),
                "limits.quic_stream_receive_window_bytes must be positive",
            ),
            (
                format!("[groups]\nsession_timeout_max_ms = {huge}\n"),
                "groups.session_timeout_max_ms",
            ),
            (
                format!("[transforms]\nretry_backoff_ms = {huge}\n"),
                "transforms.retry_backoff_ms",
            ),
            (
                format!("[log]\nrecovery_checkpoint_interval_ms = {huge}\n"),
                "log.recovery_checkpoint_interval_ms",
            ),
            (
                "[node]\ndata_dir = \"\"\n".to_string(),
                "node.data_dir must not be empty",
            ),
            (
                format!("[log]\nappend_queue_depth = {}\n", i64::MAX),
                "log.append_queue_depth (9223372036854775807) exceeds the maximum 1048576",
            ),
            (
                "[log]\nappend_decompressed_bytes_max = 0\n".to_string(),
                "[log] append_decompressed_bytes_max must be 1..=67108864, got 0",
            ),
            (
                "[log]\nappend_decompressed_bytes_max = 67108865\n".to_string(),
                "[log] append_decompressed_bytes_max must be 1..=67108864, got 67108865",
            ),
            (
                format!("[log]\nappend_records_max = {}\n", i64::MAX),
                "[log] append_records_max must be 1..=1048576",
            ),
            (
                "[log]\nappend_headers_max = 0\n".to_string(),
                "[log] append_headers_max must be 1..=1048576, got 0",
            ),
            (
                "[wasm]\nopened_batch_bytes_max = 0\n".to_string(),
                "wasm.opened_batch_bytes_max must be 1..=4294967295, got 0",
            ),
            (
                format!("[wasm]\nopened_batch_bytes_max = {}\n", 1u64 << 32),
                "wasm.opened_batch_bytes_max must be 1..=4294967295, got 4294967296",
            ),
            (
                "[log]\nappend_records_max = -1\n".to_string(),
                "append_records_max = -1",
            ),
        ] {
            let error = NodeConfig::from_toml(&bad, "t.toml")
                .map(|_| ())
                .expect_err(&bad)
                .to_string();
            assert!(
                error.contains(expected),
                "expected {expected:?} in: {error}"
            );
            assert!(error.starts_with("t.toml: "), "{error}");
        }
        // The largest accepted duration still works with clock arithmetic.
        let config = NodeConfig::from_toml(
            &format!("[log]\nflush_interval_ms = {DURATION_MS_MAX}\n"),
            "t.toml",
        )
        .unwrap();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        assert!(now.checked_add(config.broker.log.flush_interval).is_some());
    }

    // Goal: the append decode limits are read from `[log]`, defaulting to the largest
    // (what readers use); the partition log enforces them
    // (storage::log::tests::lowered_append_decode_limits_refuse_batches_over_them).
    #[test]
    fn append_decode_limits_are_read_from_the_log_section() {
        let config = NodeConfig::from_toml(
            "[log]\nappend_decompressed_bytes_max = 1048576\nappend_records_max = 1000\nappend_headers_max = 10\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            config.broker.log.append_decode_limits,
            ledge_protocol::DecodeLimits {
                decompressed_bytes_max: 1048576,
                records_max: 1000,
                headers_max: 10,
            }
        );
        let defaults = NodeConfig::from_toml("", "t.toml").unwrap();
        assert_eq!(
            defaults.broker.log.append_decode_limits,
            crate::storage::log::APPEND_DECODE_LIMITS
        );
    }

    // Goal: the example configs shipped in configs/ always parse.
    #[test]
    fn every_example_config_parses() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut count = 0;
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                NodeConfig::from_file(&path).unwrap_or_else(|error| panic!("{error}"));
                count += 1;
            }
        }
        assert!(
            count >= 2,
            "expected example configs in {}",
            directory.display()
        );
    }
}
