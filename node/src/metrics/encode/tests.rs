use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::encode_node;
use crate::metrics::snapshot::{
    GroupLagSample, NodeSnapshot, PartitionSample, TopicSample, TransformSample,
};
use crate::metrics::{NodeMetrics, Outcome, PluginRecordOutcome};

#[derive(Debug)]
struct Fixed {
    snapshot: NodeSnapshot,
    metrics: &'static NodeMetrics,
    label_sets_max: usize,
}

impl Collector for Fixed {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_node(encoder, &self.snapshot, self.metrics, self.label_sets_max)
    }
}

fn exposition(snapshot: NodeSnapshot, metrics: &'static NodeMetrics, max: usize) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Fixed {
        snapshot,
        metrics,
        label_sets_max: max,
    }));
    crate::metrics::collector::encode_text(&registry).unwrap()
}

/// Parses OpenMetrics sample lines into `name{labels} -> value`, labels sorted by name;
/// checks every metric has its TYPE line and the exposition ends in `# EOF`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut types = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            types.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => {
                let mut pairs: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                pairs.sort_unstable();
                (name, format!("{{{}}}", pairs.join(",")))
            }
            None => (series, String::new()),
        };
        assert!(
            types.iter().any(|family| name.starts_with(family.as_str())),
            "{name} has no TYPE line"
        );
        let value: f64 = if value == "+Inf" {
            f64::INFINITY
        } else {
            value.parse().unwrap()
        };
        samples.insert(format!("{name}{labels}"), value);
    }
    samples
}

fn snapshot() -> NodeSnapshot {
    NodeSnapshot {
        partitions: vec![
            PartitionSample {
                topic: "orders".into(),
                partition: 0,
                end_offset: 150,
                log_start_offset: 10,
                size_bytes: 4096,
            },
            PartitionSample {
                topic: "orders".into(),
                partition: 1,
                end_offset: 20,
                log_start_offset: 0,
                size_bytes: 512,
            },
        ],
        partitions_offline: 1,
        topics: vec![TopicSample {
            topic: "orders".into(),
            produced_records: 170,
            produced_bytes: 9000,
            fetched_bytes: 300,
        }],
        group_lag: vec![
            GroupLagSample {
                group: "billing".into(),
                topic: "orders".into(),
                partition: 0,
                lag: 100,
            },
            GroupLagSample {
                group: "billing".into(),
                topic: "orders".into(),
                partition: 1,
                lag: 5,
            },
        ],
        disk_usage_bytes: 4608,
        disk_full: true,
        under_replicated_partitions: 2,
        under_min_isr_partitions: 1,
        controller_active: true,
        transforms: vec![TransformSample {
            transform: "mask".into(),
            lag: 7,
            dead_letters: 3,
        }],
    }
}

#[test]
fn every_named_metric_is_exported_with_its_labels_and_value() {
    let metrics: &'static NodeMetrics = Box::leak(Box::new(NodeMetrics::new()));
    metrics.requests.record_native(
        ledge_protocol::wire::ApiKey::Produce,
        Outcome::Ok,
        Duration::from_micros(300),
    );
    metrics.requests.record_kafka(
        kafka_protocol::messages::ApiKey::Fetch,
        Outcome::Refused,
        Duration::from_millis(20),
    );
    metrics.fsync.observe(Duration::from_micros(800));
    let plugin = metrics.plugin("filter/0123456789ab");
    plugin.count(PluginRecordOutcome::Drop, 4);
    plugin.observe_call(Duration::from_micros(40));
    let _quic = crate::metrics::ConnectionCount::open(
        // A leaked gauge of this registry, not the process's.
        &metrics.connections.quic,
    );
    let text = exposition(snapshot(), metrics, 100);
    let samples = samples(&text);
    let expect = [
        ("ledge_partition_end_offset{partition=\"0\",topic=\"orders\"}", 150.0),
        ("ledge_partition_log_start_offset{partition=\"0\",topic=\"orders\"}", 10.0),
        ("ledge_partition_size_bytes{partition=\"1\",topic=\"orders\"}", 512.0),
        (
            "ledge_consumer_group_lag{group=\"billing\",partition=\"0\",topic=\"orders\"}",
            100.0,
        ),
        ("ledge_consumer_group_lag_sum{group=\"billing\"}", 105.0),
        ("ledge_produced_records_total{topic=\"orders\"}", 170.0),
        ("ledge_produced_bytes_total{topic=\"orders\"}", 9000.0),
        ("ledge_fetched_bytes_total{topic=\"orders\"}", 300.0),
        ("ledge_requests_total{api=\"Produce\",outcome=\"ok\"}", 1.0),
        ("ledge_requests_total{api=\"Fetch\",outcome=\"refused\"}", 1.0),
        ("ledge_request_duration_seconds_count{api=\"Produce\"}", 1.0),
        ("ledge_request_duration_seconds_bucket{api=\"Produce\",le=\"0.0005\"}", 1.0),
        ("ledge_request_duration_seconds_bucket{api=\"Produce\",le=\"0.00025\"}", 0.0),
        ("ledge_request_duration_seconds_bucket{api=\"Fetch\",le=\"+Inf\"}", 1.0),
        ("ledge_fsync_duration_seconds_count", 1.0),
        ("ledge_fsync_duration_seconds_bucket{le=\"0.001\"}", 1.0),
        ("ledge_connections{listener=\"quic\"}", 1.0),
        ("ledge_connections{listener=\"admin\"}", 0.0),
        ("ledge_disk_usage_bytes", 4608.0),
        ("ledge_disk_full", 1.0),
        ("ledge_partitions_offline", 1.0),
        ("ledge_under_replicated_partitions", 2.0),
        ("ledge_under_min_isr_partitions", 1.0),
        ("ledge_controller_active", 1.0),
        (
            "ledge_wasm_records_total{outcome=\"drop\",plugin=\"filter/0123456789ab\"}",
            4.0,
        ),
        ("ledge_wasm_duration_seconds_count{plugin=\"filter/0123456789ab\"}", 1.0),
        ("ledge_transform_lag{transform=\"mask\"}", 7.0),
        ("ledge_transform_dead_letters_total{transform=\"mask\"}", 3.0),
        (
            "ledge_metrics_label_sets_dropped{metric=\"ledge_partition_end_offset\"}",
            0.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
    }
    // Real histograms: TYPE histogram with the fixed buckets.
    assert!(text.contains("# TYPE ledge_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE ledge_fsync_duration_seconds histogram"));
    assert!(text.contains("# TYPE ledge_wasm_duration_seconds histogram"));
    assert!(text.contains("# TYPE ledge_requests counter"));
    let fsync_buckets = samples
        .keys()
        .filter(|series| series.starts_with("ledge_fsync_duration_seconds_bucket"))
        .count();
    assert_eq!(
        fsync_buckets,
        crate::metrics::histogram::LATENCY_BUCKETS_SECONDS.len() + 1
    );
}

#[test]
fn label_sets_over_the_cap_are_left_out_and_counted() {
    let metrics: &'static NodeMetrics = Box::leak(Box::new(NodeMetrics::new()));
    let mut many = snapshot();
    many.partitions = (0..5)
        .map(|partition| PartitionSample {
            topic: "wide".into(),
            partition,
            end_offset: 1,
            log_start_offset: 0,
            size_bytes: 1,
        })
        .collect();
    many.group_lag = (0..5)
        .map(|partition| GroupLagSample {
            group: "g".into(),
            topic: "wide".into(),
            partition,
            lag: 10,
        })
        .collect();
    let samples = samples(&exposition(many, metrics, 2));
    let exported = samples
        .keys()
        .filter(|series| series.starts_with("ledge_partition_end_offset{"))
        .count();
    assert_eq!(exported, 2);
    assert_eq!(
        samples.get("ledge_metrics_label_sets_dropped{metric=\"ledge_partition_end_offset\"}"),
        Some(&3.0)
    );
    assert_eq!(
        samples.get("ledge_metrics_label_sets_dropped{metric=\"ledge_consumer_group_lag\"}"),
        Some(&3.0)
    );
    // The group's sum still covers every partition.
    assert_eq!(
        samples.get("ledge_consumer_group_lag_sum{group=\"g\"}"),
        Some(&50.0)
    );
}
