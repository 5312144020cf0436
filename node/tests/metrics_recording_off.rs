//! `[admin] metrics_recording = false` (docs/OPERATIONS.md): with recording off, no event
//! metric moves. Its own test binary, so its own process: recording is a process-wide
//! switch and turning it off here cannot disturb the library's tests that count.

use std::time::Duration;

use ledge_node::metrics::{self, Outcome, PluginRecordOutcome, TopicCounters};

/// Records one of every event metric: requests on both listeners, an fsync, a plug-in
/// call and its records, a produce and a fetch on `topic`.
fn record_everything(topic: &TopicCounters) {
    let node = metrics::node();
    node.requests.record_native(
        ledge_protocol::wire::ApiKey::Produce,
        Outcome::Ok,
        Duration::from_millis(1),
    );
    node.requests.record_kafka(
        kafka_protocol::messages::ApiKey::Fetch,
        Outcome::Refused,
        Duration::from_millis(1),
    );
    node.observe_fsync(Duration::from_micros(500));
    let plugin = node.plugin("filter/recording-test");
    plugin.count(PluginRecordOutcome::Keep, 3);
    plugin.observe_call(Duration::from_micros(40));
    topic.produced(3, 300);
    topic.fetched(300);
}

/// Every event metric `record_everything` touches, summed.
fn recorded(topic: &TopicCounters) -> u64 {
    let node = metrics::node();
    let requests = ["Produce", "Fetch"]
        .iter()
        .filter_map(|name| node.requests.api(name))
        .map(|api| {
            api.count(Outcome::Ok) + api.count(Outcome::Refused) + api.duration().snapshot().count
        })
        .sum::<u64>();
    let plugins = node
        .plugins()
        .iter()
        .map(|(_, plugin)| {
            PluginRecordOutcome::ALL
                .iter()
                .map(|outcome| plugin.records(*outcome))
                .sum::<u64>()
                + plugin.duration().snapshot().count
        })
        .sum::<u64>();
    let load =
        |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
    requests
        + node.fsync.snapshot().count
        + plugins
        + load(&topic.produced_records)
        + load(&topic.produced_bytes)
        + load(&topic.fetched_bytes)
}

#[test]
fn with_recording_off_no_event_metric_moves_and_on_again_they_do() {
    let topic = TopicCounters::default();
    assert!(metrics::recording(), "recording is on by default");

    metrics::set_recording(false);
    record_everything(&topic);
    assert_eq!(recorded(&topic), 0, "recording off");

    metrics::set_recording(true);
    record_everything(&topic);
    // 2 requests counted and timed, 1 fsync, 3 plug-in records and 1 call, 3 records,
    // 300 bytes produced and 300 fetched.
    assert_eq!(recorded(&topic), 2 * 2 + 1 + 3 + 1 + 3 + 300 + 300);
}
