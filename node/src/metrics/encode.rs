//! Encodes a [`NodeSnapshot`] and the process's [`NodeMetrics`] as OpenMetrics, through
//! prometheus-client's encoder (names, HELP, TYPE, escaping and the `_total` suffix are
//! its). Every metric with per-topic, per-partition, per-group, per-plug-in or
//! per-transform labels exports at most `label_sets_max` label sets; the number left out is
//! `ledge_metrics_label_sets_dropped{metric}`.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::snapshot::NodeSnapshot;
use super::{HistogramSnapshot, NodeMetrics, Outcome, PluginRecordOutcome};

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A metric with no labels of its own, for the encoder's `EncodeMetric` entry point.
struct Plain<F: Fn(&mut prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result> {
    kind: MetricType,
    encode: F,
}

impl<F: Fn(&mut prometheus_client::encoding::MetricEncoder<'_>) -> std::fmt::Result> EncodeMetric
    for Plain<F>
{
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ) -> std::fmt::Result {
        (self.encode)(&mut encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// What one labelled series carries.
enum Value<'a> {
    Gauge(i64),
    Counter(u64),
    Histogram(&'a HistogramSnapshot),
}

fn encode_value(
    encoder: &mut prometheus_client::encoding::MetricEncoder<'_>,
    value: &Value<'_>,
) -> std::fmt::Result {
    match value {
        Value::Gauge(value) => encoder.encode_gauge(value),
        Value::Counter(value) => encoder.encode_counter::<NoLabelSet, u64, u64>(value, None),
        Value::Histogram(histogram) => encoder.encode_histogram::<NoLabelSet>(
            histogram.sum_seconds,
            histogram.count,
            &histogram.buckets,
            None,
        ),
    }
}

/// Encodes metrics into one exposition, keeping count of label sets left out.
struct Writer<'e> {
    encoder: DescriptorEncoder<'e>,
    label_sets_max: usize,
    dropped: Vec<(&'static str, u64)>,
}

impl Writer<'_> {
    /// One metric with label sets: at most `label_sets_max` of `series` are written.
    fn family<'a>(
        &mut self,
        name: &'static str,
        help: &str,
        kind: MetricType,
        series: impl Iterator<Item = (Labels<'a>, Value<'a>)>,
        bounded: bool,
    ) -> std::fmt::Result {
        let mut metric = self.encoder.encode_descriptor(name, help, None, kind)?;
        let mut written = 0usize;
        let mut dropped = 0u64;
        for (labels, value) in series {
            if bounded && written >= self.label_sets_max {
                dropped += 1;
                continue;
            }
            written += 1;
            let mut series = metric.encode_family(&labels)?;
            encode_value(&mut series, &value)?;
        }
        if bounded {
            self.dropped.push((name, dropped));
        }
        Ok(())
    }

    /// One metric without labels.
    fn single(
        &mut self,
        name: &'static str,
        help: &str,
        kind: MetricType,
        value: Value<'_>,
    ) -> std::fmt::Result {
        let metric = Plain {
            kind,
            encode: |encoder: &mut prometheus_client::encoding::MetricEncoder<'_>| {
                encode_value(encoder, &value)
            },
        };
        let encoder = self.encoder.encode_descriptor(name, help, None, kind)?;
        metric.encode(encoder)
    }
}

fn gauge(value: u64) -> Value<'static> {
    Value::Gauge(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Writes every Ledge metric into `encoder` (a prometheus-client `Collector`'s).
pub fn encode_node(
    encoder: DescriptorEncoder<'_>,
    snapshot: &NodeSnapshot,
    metrics: &NodeMetrics,
    label_sets_max: usize,
) -> std::fmt::Result {
    let mut writer = Writer {
        encoder,
        label_sets_max,
        dropped: Vec::new(),
    };
    let partition_numbers: Vec<String> = snapshot
        .partitions
        .iter()
        .map(|sample| sample.partition.to_string())
        .collect();
    let partition_labels = || {
        snapshot
            .partitions
            .iter()
            .zip(&partition_numbers)
            .map(|(sample, number)| {
                (
                    vec![("topic", sample.topic.as_str()), ("partition", number.as_str())],
                    sample,
                )
            })
    };
    writer.family(
        "ledge_partition_end_offset",
        "The partition's high watermark: one past the last record consumers may read.",
        MetricType::Gauge,
        partition_labels().map(|(labels, sample)| (labels, Value::Gauge(sample.end_offset))),
        true,
    )?;
    writer.family(
        "ledge_partition_log_start_offset",
        "The first offset of the partition readers may see (retention and deletes move it).",
        MetricType::Gauge,
        partition_labels().map(|(labels, sample)| (labels, Value::Gauge(sample.log_start_offset))),
        true,
    )?;
    writer.family(
        "ledge_partition_size_bytes",
        "Bytes of the partition's log segments on this node.",
        MetricType::Gauge,
        partition_labels().map(|(labels, sample)| (labels, gauge(sample.size_bytes))),
        true,
    )?;
    let lag_numbers: Vec<String> = snapshot
        .group_lag
        .iter()
        .map(|sample| sample.partition.to_string())
        .collect();
    writer.family(
        "ledge_consumer_group_lag",
        "Records between the partition's end offset and the offset the group committed.",
        MetricType::Gauge,
        snapshot
            .group_lag
            .iter()
            .zip(&lag_numbers)
            .map(|(sample, number)| {
                (
                    vec![
                        ("group", sample.group.as_str()),
                        ("topic", sample.topic.as_str()),
                        ("partition", number.as_str()),
                    ],
                    gauge(sample.lag),
                )
            }),
        true,
    )?;
    // Sums over every partition, those left out of the per-partition metric included.
    let mut sums: Vec<(&str, u64)> = Vec::new();
    for sample in &snapshot.group_lag {
        match sums.last_mut() {
            Some((group, sum)) if *group == sample.group => *sum = sum.saturating_add(sample.lag),
            _ => sums.push((&sample.group, sample.lag)),
        }
    }
    writer.family(
        "ledge_consumer_group_lag_sum",
        "The group's lag summed over the partitions held on this node.",
        MetricType::Gauge,
        sums.iter()
            .map(|(group, sum)| (vec![("group", *group)], gauge(*sum))),
        true,
    )?;
    for (name, help, pick) in [
        (
            "ledge_produced_records",
            "Records appended by produce requests, by topic.",
            (|sample: &super::snapshot::TopicSample| sample.produced_records)
                as fn(&super::snapshot::TopicSample) -> u64,
        ),
        (
            "ledge_produced_bytes",
            "Bytes of record batches appended by produce requests, by topic.",
            |sample| sample.produced_bytes,
        ),
        (
            "ledge_fetched_bytes",
            "Bytes of record batches answered to fetch requests (consumers, replicas and transforms excluded), by topic.",
            |sample| sample.fetched_bytes,
        ),
    ] {
        writer.family(
            name,
            help,
            MetricType::Counter,
            snapshot
                .topics
                .iter()
                .map(|sample| (vec![("topic", sample.topic.as_str())], Value::Counter(pick(sample)))),
            true,
        )?;
    }
    let apis = metrics.requests.apis();
    let durations: Vec<HistogramSnapshot> = apis
        .iter()
        .map(|api| api.duration().snapshot())
        .collect();
    writer.family(
        "ledge_request_duration_seconds",
        "Time from a request read to its answer made, by API (QUIC and Kafka listeners).",
        MetricType::Histogram,
        apis.iter()
            .zip(&durations)
            .filter(|(_, duration)| duration.count > 0)
            .map(|(api, duration)| (vec![("api", api.name)], Value::Histogram(duration))),
        false,
    )?;
    writer.family(
        "ledge_requests",
        "Requests by API and outcome (ok: answered by its handler; refused: refused as a whole).",
        MetricType::Counter,
        apis.iter()
            .flat_map(|api| {
                Outcome::ALL
                    .into_iter()
                    .map(move |outcome| (api, outcome, api.count(outcome)))
            })
            .filter(|(_, _, count)| *count > 0)
            .map(|(api, outcome, count)| {
                (
                    vec![("api", api.name), ("outcome", outcome.label())],
                    Value::Counter(count),
                )
            }),
        false,
    )?;
    let fsync = metrics.fsync.snapshot();
    writer.single(
        "ledge_fsync_duration_seconds",
        "Time of each partition log fdatasync.",
        MetricType::Histogram,
        Value::Histogram(&fsync),
    )?;
    writer.family(
        "ledge_connections",
        "Open connections by listener (quic, kafka, kafka_tls, admin).",
        MetricType::Gauge,
        metrics
            .connections
            .values()
            .into_iter()
            .map(|(listener, open)| (vec![("listener", listener)], Value::Gauge(open))),
        false,
    )?;
    writer.single(
        "ledge_disk_usage_bytes",
        "Bytes of every partition log on this node.",
        MetricType::Gauge,
        gauge(snapshot.disk_usage_bytes),
    )?;
    writer.single(
        "ledge_disk_full",
        "1 while the disk guard refuses produce (limits.disk_usage_bytes_max or disk_usage_percent_max), else 0.",
        MetricType::Gauge,
        Value::Gauge(i64::from(snapshot.disk_full)),
    )?;
    writer.single(
        "ledge_partitions_offline",
        "Partitions held on this node that are offline (could not be opened, or damaged).",
        MetricType::Gauge,
        gauge(snapshot.partitions_offline),
    )?;
    writer.single(
        "ledge_under_replicated_partitions",
        "Partitions this node leads whose in-sync replicas are fewer than their replicas.",
        MetricType::Gauge,
        gauge(snapshot.under_replicated_partitions),
    )?;
    writer.single(
        "ledge_under_min_isr_partitions",
        "Partitions this node leads whose in-sync replicas are fewer than min.insync.replicas.",
        MetricType::Gauge,
        gauge(snapshot.under_min_isr_partitions),
    )?;
    writer.single(
        "ledge_controller_active",
        "1 if this node is the active controller (a node without [cluster] controls itself), else 0.",
        MetricType::Gauge,
        Value::Gauge(i64::from(snapshot.controller_active)),
    )?;
    let plugins = metrics.plugins();
    writer.family(
        "ledge_wasm_records",
        "Records through WASM plug-ins by plug-in (kind/module hash prefix) and outcome.",
        MetricType::Counter,
        plugins
            .iter()
            .flat_map(|(label, plugin)| {
                PluginRecordOutcome::ALL
                    .into_iter()
                    .map(move |outcome| (label, outcome, plugin.records(outcome)))
            })
            .filter(|(_, _, count)| *count > 0)
            .map(|(label, outcome, count)| {
                (
                    vec![("plugin", label.as_str()), ("outcome", outcome.label())],
                    Value::Counter(count),
                )
            }),
        true,
    )?;
    let plugin_durations: Vec<HistogramSnapshot> = plugins
        .iter()
        .map(|(_, plugin)| plugin.duration().snapshot())
        .collect();
    writer.family(
        "ledge_wasm_duration_seconds",
        "Time of each WASM plug-in call (one call per batch), by plug-in.",
        MetricType::Histogram,
        plugins
            .iter()
            .zip(&plugin_durations)
            .filter(|(_, duration)| duration.count > 0)
            .map(|((label, _), duration)| {
                (vec![("plugin", label.as_str())], Value::Histogram(duration))
            }),
        true,
    )?;
    writer.family(
        "ledge_transform_lag",
        "Records of the transform's input not yet processed, over the partitions it runs on this node.",
        MetricType::Gauge,
        snapshot.transforms.iter().map(|sample| {
            (
                vec![("transform", sample.transform.as_str())],
                gauge(sample.lag),
            )
        }),
        true,
    )?;
    writer.family(
        "ledge_transform_dead_letters",
        "Records the transform sent to its dead-letter topic on this node.",
        MetricType::Counter,
        snapshot.transforms.iter().map(|sample| {
            (
                vec![("transform", sample.transform.as_str())],
                Value::Counter(sample.dead_letters),
            )
        }),
        true,
    )?;
    let dropped = std::mem::take(&mut writer.dropped);
    writer.family(
        "ledge_metrics_label_sets_dropped",
        "Label sets left out of a metric at this scrape: over admin.metrics_label_sets_max.",
        MetricType::Gauge,
        dropped
            .iter()
            .map(|(metric, count)| (vec![("metric", *metric)], gauge(*count))),
        false,
    )
}

#[cfg(test)]
mod tests;
