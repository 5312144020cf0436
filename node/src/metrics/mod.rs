//! The node's metrics (docs/OPERATIONS.md, "Metrics"): what `/metrics` on the admin
//! listener exports, in OpenMetrics text through the `prometheus-client` crate.
//!
//! Two kinds, kept apart so the hot path never waits on a scrape:
//! - **Counters and histograms** updated where things happen (requests, fsyncs,
//!   connections, produced and fetched bytes, plug-in calls). Each is an atomic: requests by
//!   API sit in a table fixed at start ([`RequestMetrics`]), per-topic counters live in the
//!   registry's topic entry the produce and fetch paths look up anyway ([`TopicCounters`]),
//!   per-plug-in ones in the plug-in ([`PluginMetrics`]). None takes a lock to count.
//! - **Gauges that describe state** (offsets, sizes, lag, disk, replication) are not kept at
//!   all: they are read from the broker when scraped (`collector.rs`), into a
//!   [`snapshot::NodeSnapshot`], and encoded from it (`encode.rs`, pure and unit tested).
//!
//! Label cardinality is bounded: each metric exports at most `admin.metrics_label_sets_max`
//! label sets; the rest are left out and `ledge_metrics_label_sets_dropped{metric}` counts
//! them. To add a metric: a field in the snapshot (state) or in [`NodeMetrics`] (events),
//! and its lines in `encode.rs` (with its row in docs/OPERATIONS.md).
//!
//! `[admin] metrics_recording = false` turns the event metrics off ([`set_recording`]):
//! request counts and latencies, fsync latencies, produced and fetched counts per topic and
//! plug-in counts and latencies are then not recorded at all (each stays zero); the state
//! gauges and the open connections are still exported. What it saves is measured in
//! benches/RESULTS.md ("Metrics on and off").

pub mod collector;
pub mod encode;
pub mod histogram;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub use histogram::{AtomicHistogram, HistogramSnapshot};

/// Whether the event metrics are recorded (`[admin] metrics_recording`, default on).
static RECORDING: AtomicBool = AtomicBool::new(true);

/// Turns recording of the event metrics on or off for the whole process (set once at start
/// from `[admin] metrics_recording`). Off, every counter and histogram of this module keeps
/// its value: requests, fsyncs, per-topic produced and fetched counts, plug-in calls.
pub fn set_recording(on: bool) {
    RECORDING.store(on, Ordering::Relaxed);
}

/// Whether the event metrics are recorded ([`set_recording`]).
pub fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// How a request ended, the `outcome` label of `ledge_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered by its handler (per-partition errors inside the answer included).
    Ok,
    /// Refused as a whole before or instead of its handler: authentication,
    /// authorization, bytes in flight, a closed connection.
    Refused,
}

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
        }
    }

    const ALL: [Self; 2] = [Self::Ok, Self::Refused];

    fn index(self) -> usize {
        self as usize
    }
}

/// One API's request counters and latency.
#[derive(Debug)]
pub struct ApiMetrics {
    /// The `api` label: the API's name, the same on QUIC and Kafka (`Produce`, `Fetch`).
    pub name: &'static str,
    outcomes: [AtomicU64; 2],
    duration: AtomicHistogram,
}

impl ApiMetrics {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            outcomes: [AtomicU64::new(0), AtomicU64::new(0)],
            duration: AtomicHistogram::new(histogram::LATENCY_BUCKETS_SECONDS),
        }
    }

    /// Requests so far that ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].load(Ordering::Relaxed)
    }

    /// The latency histogram.
    pub fn duration(&self) -> &AtomicHistogram {
        &self.duration
    }
}

/// Requests by API, over both client listeners: one slot per API name, found by an index
/// into tables made at start (no map, no lock on the request path).
#[derive(Debug)]
pub struct RequestMetrics {
    apis: Vec<ApiMetrics>,
    /// Slot of each native API key.
    native: Vec<Option<usize>>,
    /// Slot of each Kafka API key.
    kafka: Vec<Option<usize>>,
}

impl RequestMetrics {
    fn new() -> Self {
        let mut names: Vec<&'static str> = Vec::new();
        let native_names: Vec<(usize, &'static str)> = ledge_protocol::wire::ApiKey::ALL
            .iter()
            .map(|key| (*key as usize, native_api_name(*key)))
            .collect();
        let kafka_names: Vec<(usize, &'static str)> = kafka_protocol::messages::ApiKey::iter()
            .map(|key| (key as i16 as usize, kafka_api_name(key)))
            .collect();
        for (_, name) in native_names.iter().chain(&kafka_names) {
            if !names.contains(name) {
                names.push(name);
            }
        }
        names.sort_unstable();
        let table = |keys: &[(usize, &'static str)]| {
            let size = keys.iter().map(|(key, _)| key + 1).max().unwrap_or(0);
            let mut slots = vec![None; size];
            for (key, name) in keys {
                slots[*key] = names.iter().position(|known| known == name);
            }
            slots
        };
        let native = table(&native_names);
        let kafka = table(&kafka_names);
        Self {
            apis: names.into_iter().map(ApiMetrics::new).collect(),
            native,
            kafka,
        }
    }

    fn record(&self, slot: Option<usize>, outcome: Outcome, elapsed: Duration) {
        if !recording() {
            return;
        }
        if let Some(api) = slot.and_then(|slot| self.apis.get(slot)) {
            api.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
            api.duration.observe(elapsed);
        }
    }

    /// Counts a native (QUIC) request.
    pub fn record_native(
        &self,
        api: ledge_protocol::wire::ApiKey,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        self.record(
            self.native.get(api as usize).copied().flatten(),
            outcome,
            elapsed,
        );
    }

    /// Counts a Kafka request.
    pub fn record_kafka(
        &self,
        api: kafka_protocol::messages::ApiKey,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        self.record(
            self.kafka.get(api as i16 as usize).copied().flatten(),
            outcome,
            elapsed,
        );
    }

    /// Every API's slot.
    pub fn apis(&self) -> &[ApiMetrics] {
        &self.apis
    }

    /// The slot named `name`.
    pub fn api(&self, name: &str) -> Option<&ApiMetrics> {
        self.apis.iter().find(|api| api.name == name)
    }
}

fn native_api_name(key: ledge_protocol::wire::ApiKey) -> &'static str {
    // The enum's variant names are the API names; leaked once per API at start.
    Box::leak(format!("{key:?}").into_boxed_str())
}

fn kafka_api_name(key: kafka_protocol::messages::ApiKey) -> &'static str {
    Box::leak(format!("{key:?}").into_boxed_str())
}

/// Open connections by listener (`ledge_connections{listener}`).
#[derive(Debug, Default)]
pub struct ConnectionGauges {
    /// QUIC client connections.
    pub quic: AtomicI64,
    /// Kafka plaintext connections.
    pub kafka: AtomicI64,
    /// Kafka TLS connections.
    pub kafka_tls: AtomicI64,
    /// Admin HTTP connections.
    pub admin: AtomicI64,
}

impl ConnectionGauges {
    /// (label, open connections) of each listener.
    pub fn values(&self) -> [(&'static str, i64); 4] {
        [
            ("quic", self.quic.load(Ordering::Relaxed)),
            ("kafka", self.kafka.load(Ordering::Relaxed)),
            ("kafka_tls", self.kafka_tls.load(Ordering::Relaxed)),
            ("admin", self.admin.load(Ordering::Relaxed)),
        ]
    }
}

/// Counts one open connection on `gauge` until dropped.
#[derive(Debug)]
pub struct ConnectionCount(&'static AtomicI64);

impl ConnectionCount {
    /// Counts a connection on `gauge` (one of [`node`]'s `connections`).
    pub fn open(gauge: &'static AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a plug-in did with the records of its calls (`ledge_wasm_records_total{outcome}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginRecordOutcome {
    /// Kept unchanged.
    Keep,
    /// Dropped.
    Drop,
    /// Replaced by the plug-in's records.
    Transformed,
    /// Routed to a partition (partitioners).
    Routed,
    /// The plug-in reported an error for the record.
    Error,
    /// The call failed (trap, fuel, bad output): every record of it.
    Failed,
}

impl PluginRecordOutcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 6] = [
        Self::Keep,
        Self::Drop,
        Self::Transformed,
        Self::Routed,
        Self::Error,
        Self::Failed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Drop => "drop",
            Self::Transformed => "transformed",
            Self::Routed => "routed",
            Self::Error => "error",
            Self::Failed => "failed",
        }
    }
}

/// One plug-in's counters: records by outcome and call latency. Held by the plug-in
/// itself (the call path touches only its atomics) and by [`NodeMetrics`]' list of
/// plug-ins, looked up once when a plug-in is made.
#[derive(Debug)]
pub struct PluginMetrics {
    records: [AtomicU64; 6],
    duration: AtomicHistogram,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        Self {
            records: Default::default(),
            duration: AtomicHistogram::new(histogram::WASM_BUCKETS_SECONDS),
        }
    }
}

impl PluginMetrics {
    /// Counts `count` records that ended with `outcome`.
    pub fn count(&self, outcome: PluginRecordOutcome, count: u64) {
        if !recording() {
            return;
        }
        self.records[outcome as usize].fetch_add(count, Ordering::Relaxed);
    }

    /// Records one call's duration.
    pub fn observe_call(&self, elapsed: Duration) {
        if !recording() {
            return;
        }
        self.duration.observe(elapsed);
    }

    /// Records so far that ended with `outcome`.
    pub fn records(&self, outcome: PluginRecordOutcome) -> u64 {
        self.records[outcome as usize].load(Ordering::Relaxed)
    }

    /// The call latency histogram.
    pub fn duration(&self) -> &AtomicHistogram {
        &self.duration
    }
}

/// Per-topic counters, held in the registry's topic entry: produce and fetch add to them
/// on the entry they looked up anyway.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Records appended by produce.
    pub produced_records: AtomicU64,
    /// Bytes of the batches appended by produce.
    pub produced_bytes: AtomicU64,
    /// Bytes of record batches answered to fetches.
    pub fetched_bytes: AtomicU64,
}

impl TopicCounters {
    /// Counts a produce of `records` records in `bytes` bytes.
    pub fn produced(&self, records: u64, bytes: u64) {
        if !recording() {
            return;
        }
        self.produced_records.fetch_add(records, Ordering::Relaxed);
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `bytes` fetched.
    pub fn fetched(&self, bytes: u64) {
        if !recording() {
            return;
        }
        self.fetched_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The process's event metrics: requests, fsyncs, connections and plug-ins. One per
/// process ([`node`]); the simulator's nodes share it, which only its scrapes (none) would
/// notice.
#[derive(Debug)]
pub struct NodeMetrics {
    /// Requests by API.
    pub requests: RequestMetrics,
    /// Partition log fsyncs (`fdatasync`).
    pub fsync: AtomicHistogram,
    /// Open connections by listener.
    pub connections: ConnectionGauges,
    /// Plug-ins by label, registered when made (not on the call path).
    plugins: Mutex<BTreeMap<String, Arc<PluginMetrics>>>,
}

impl NodeMetrics {
    fn new() -> Self {
        Self {
            requests: RequestMetrics::new(),
            fsync: AtomicHistogram::new(histogram::LATENCY_BUCKETS_SECONDS),
            connections: ConnectionGauges::default(),
            plugins: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one partition log fsync's duration (`ledge_fsync_duration_seconds`).
    pub fn observe_fsync(&self, elapsed: Duration) {
        if !recording() {
            return;
        }
        self.fsync.observe(elapsed);
    }

    /// The counters of the plug-in labelled `label` (made on first use): plug-ins made
    /// again from the same module keep counting where the last one stopped.
    pub fn plugin(&self, label: &str) -> Arc<PluginMetrics> {
        let mut plugins = self
            .plugins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(plugins.entry(label.to_owned()).or_default())
    }

    /// Every plug-in's counters, by label.
    pub fn plugins(&self) -> Vec<(String, Arc<PluginMetrics>)> {
        self.plugins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(label, metrics)| (label.clone(), Arc::clone(metrics)))
            .collect()
    }
}

static NODE: LazyLock<NodeMetrics> = LazyLock::new(NodeMetrics::new);

/// The process's event metrics.
pub fn node() -> &'static NodeMetrics {
    &NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_and_kafka_requests_of_one_api_share_its_slot() {
        let metrics = RequestMetrics::new();
        metrics.record_native(
            ledge_protocol::wire::ApiKey::Produce,
            Outcome::Ok,
            Duration::from_millis(1),
        );
        metrics.record_kafka(
            kafka_protocol::messages::ApiKey::Produce,
            Outcome::Refused,
            Duration::from_millis(2),
        );
        metrics.record_kafka(
            kafka_protocol::messages::ApiKey::SaslHandshake,
            Outcome::Ok,
            Duration::from_millis(2),
        );
        let produce = metrics.api("Produce").unwrap();
        assert_eq!(produce.count(Outcome::Ok), 1);
        assert_eq!(produce.count(Outcome::Refused), 1);
        assert_eq!(produce.duration().snapshot().count, 2);
        assert_eq!(metrics.api("SaslHandshake").unwrap().count(Outcome::Ok), 1);
        assert_eq!(metrics.api("Fetch").unwrap().count(Outcome::Ok), 0);
        // One slot per name, names sorted and unique.
        let names: Vec<&str> = metrics.apis().iter().map(|api| api.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn connection_counts_follow_their_guards() {
        static GAUGE: AtomicI64 = AtomicI64::new(0);
        let first = ConnectionCount::open(&GAUGE);
        let second = ConnectionCount::open(&GAUGE);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(GAUGE.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn plugin_counters_are_kept_by_label() {
        let metrics = NodeMetrics::new();
        metrics
            .plugin("filter/abc")
            .count(PluginRecordOutcome::Drop, 3);
        metrics
            .plugin("filter/abc")
            .count(PluginRecordOutcome::Keep, 2);
        let plugins = metrics.plugins();
        assert_eq!(plugins.len(), 1);
        assert_eq!(plugins[0].1.records(PluginRecordOutcome::Drop), 3);
        assert_eq!(plugins[0].1.records(PluginRecordOutcome::Keep), 2);
    }
}
