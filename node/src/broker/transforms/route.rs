//! Where a transform's outcomes go (pure): one batch's module outcomes become output records
//! by output partition, dead letters, counts, the last error and, under `on_error = stop`,
//! the reason to stop; and the circuit breaker's window. No IO, no wasmtime: unit-tested
//! with hand-made outcomes.

use std::collections::BTreeMap;

use bytes::Bytes;
use ledge_protocol::{DecodedRecord, Header, Record};

use super::TransformLimits;
use crate::broker::metadata::OnError;
use crate::wasm::Outcome;
use crate::wasm::batch::output_record;

/// What one iteration (one or more input batches) produced before it was written.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct IterationOutput {
    /// Output records by output partition.
    pub(super) outputs: BTreeMap<u32, Vec<Record>>,
    /// Records for the dead-letter topic.
    pub(super) dead: Vec<Record>,
    pub(super) records_in: u64,
    pub(super) records_out: u64,
    pub(super) failed: u64,
    pub(super) last_error: Option<String>,
}

impl IterationOutput {
    /// Adds a later batch's output to this one (its error, if any, is the last one).
    pub(super) fn absorb(&mut self, later: Self) {
        self.records_in += later.records_in;
        self.records_out += later.records_out;
        self.failed += later.failed;
        self.last_error = later.last_error.or_else(|| self.last_error.take());
        self.dead.extend(later.dead);
        for (partition, records) in later.outputs {
            self.outputs.entry(partition).or_default().extend(records);
        }
    }
}

/// Which transform, input partition and policy a batch's outcomes are routed for.
pub(super) struct Route<'a> {
    /// The transform's name (a dead letter's `ledge.transform` header).
    pub(super) transform: &'a str,
    /// The input topic.
    pub(super) input: &'a str,
    /// The input partition.
    pub(super) partition: u32,
    /// The output topic's partition count (at least 1).
    pub(super) output_partitions: u32,
    /// What a failed record does.
    pub(super) on_error: OnError,
}

/// One batch routed: its output, or why the transform stops before it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Routed {
    /// Write this.
    Output(IterationOutput),
    /// `on_error = stop` and a record failed: nothing of the batch is written, and the
    /// transform stops before it.
    Stop(String),
}

impl Route<'_> {
    /// Routes `outcomes` (one per record of `records`, in order). A record without an
    /// outcome (a short answer) is not counted.
    pub(super) fn batch(&self, records: &[DecodedRecord], outcomes: Vec<Outcome>) -> Routed {
        let mut output = IterationOutput::default();
        // The same partition number in the output, modulo its partition count.
        let target = self.partition % self.output_partitions.max(1);
        for (record, outcome) in records.iter().zip(outcomes) {
            output.records_in += 1;
            match outcome {
                Outcome::Keep => {
                    output.records_out += 1;
                    output
                        .outputs
                        .entry(target)
                        .or_default()
                        .push(record.clone().into_record());
                }
                Outcome::Drop => {}
                Outcome::Records(records_out) => {
                    output.records_out += records_out.len() as u64;
                    let entry = output.outputs.entry(target).or_default();
                    entry.extend(
                        records_out
                            .into_iter()
                            .map(|out| output_record(out, record.timestamp)),
                    );
                }
                Outcome::Partition(partition) => {
                    output.records_out += 1;
                    output
                        .outputs
                        .entry(partition)
                        .or_default()
                        .push(record.clone().into_record());
                }
                Outcome::Error(message) => {
                    output.failed += 1;
                    if self.on_error == OnError::Stop {
                        return Routed::Stop(format!(
                            "partition {} offset {} failed: {message}",
                            self.partition, record.offset
                        ));
                    }
                    if self.on_error == OnError::DeadLetter {
                        output.dead.push(self.dead_letter(
                            record.clone().into_record(),
                            record.offset,
                            &message,
                        ));
                    }
                    output.last_error = Some(format!(
                        "partition {} offset {}: {message}",
                        self.partition, record.offset
                    ));
                }
            }
        }
        Routed::Output(output)
    }

    /// A failed record for the dead-letter topic, with headers naming the transform, its
    /// source and the error.
    fn dead_letter(&self, mut record: Record, offset: i64, error: &str) -> Record {
        let header = |key: &str, value: String| Header {
            key: key.into(),
            value: Some(Bytes::from(value)),
        };
        record.headers.extend([
            header("ledge.transform", self.transform.to_string()),
            header("ledge.source.topic", self.input.to_string()),
            header("ledge.source.partition", self.partition.to_string()),
            header("ledge.source.offset", offset.to_string()),
            header("ledge.error", error.to_string()),
        ]);
        record
    }
}

/// The circuit breaker's window: records seen and failed, halved whenever it fills so old
/// history fades.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct BreakerWindow {
    seen: u64,
    failed: u64,
}

impl BreakerWindow {
    /// Adds a chunk's counts; the reason to pause the transform when the failure ratio is
    /// over `transforms.breaker_error_ratio` (after at least `breaker_records_min` records).
    pub(super) fn record(
        &mut self,
        records: u64,
        failed: u64,
        limits: &TransformLimits,
    ) -> Option<String> {
        self.seen = self.seen.saturating_add(records);
        self.failed = self.failed.saturating_add(failed);
        let (seen, bad) = (self.seen, self.failed);
        let tripped = seen >= limits.breaker_records_min
            && (bad as f64) > limits.breaker_error_ratio * seen as f64;
        if seen >= limits.breaker_window_records {
            // Decay: the window keeps half its weight, so old history fades.
            self.seen /= 2;
            self.failed /= 2;
        }
        tripped.then(|| format!("circuit breaker: {bad} of the last {seen} records failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::OutputRecord;

    fn records(count: i64) -> Vec<DecodedRecord> {
        (0..count)
            .map(|offset| DecodedRecord {
                offset: 10 + offset,
                timestamp: 1000 + offset,
                key: None,
                value: Some(Bytes::from(format!("v{offset}"))),
                headers: Vec::new(),
            })
            .collect()
    }

    fn route(on_error: OnError) -> Route<'static> {
        Route {
            transform: "t",
            input: "in",
            partition: 3,
            output_partitions: 2,
            on_error,
        }
    }

    fn values(records: &[Record]) -> Vec<&[u8]> {
        records
            .iter()
            .map(|record| record.value.as_deref().unwrap_or_default())
            .collect()
    }

    fn output(routed: Routed) -> IterationOutput {
        match routed {
            Routed::Output(output) => output,
            Routed::Stop(reason) => panic!("stopped: {reason}"),
        }
    }

    #[test]
    fn kept_and_mapped_records_go_to_the_same_partition_modulo_the_output() {
        let mapped = OutputRecord {
            timestamp: None,
            key: None,
            value: Some(Bytes::from_static(b"m")),
            headers: Vec::new(),
        };
        let routed = route(OnError::Skip).batch(
            &records(4),
            vec![
                Outcome::Keep,
                Outcome::Drop,
                Outcome::Records(vec![mapped.clone(), mapped]),
                Outcome::Partition(0),
            ],
        );
        let output = output(routed);
        assert_eq!(output.records_in, 4);
        assert_eq!(output.records_out, 4);
        assert_eq!(output.failed, 0);
        // Partition 3 of the input goes to 3 % 2 = 1; the partitioner's pick to 0.
        assert_eq!(values(&output.outputs[&1]), [&b"v0"[..], b"m", b"m"]);
        assert_eq!(values(&output.outputs[&0]), [&b"v3"[..]]);
        // A mapped record without a timestamp takes its input's.
        assert_eq!(output.outputs[&1][1].timestamp, 1002);
        assert!(output.dead.is_empty());
        assert_eq!(output.last_error, None);
    }

    #[test]
    fn a_failed_record_is_skipped_dead_lettered_or_stops_the_batch() {
        let outcomes = || vec![Outcome::Keep, Outcome::Error("bad".into()), Outcome::Keep];

        let skipped = output(route(OnError::Skip).batch(&records(3), outcomes()));
        assert_eq!((skipped.records_in, skipped.failed), (3, 1));
        assert_eq!(values(&skipped.outputs[&1]), [&b"v0"[..], b"v2"]);
        assert!(skipped.dead.is_empty());
        assert_eq!(
            skipped.last_error.as_deref(),
            Some("partition 3 offset 11: bad")
        );

        let dead = output(route(OnError::DeadLetter).batch(&records(3), outcomes()));
        assert_eq!(values(&dead.dead), [&b"v1"[..]]);
        let headers: Vec<(&str, &[u8])> = dead.dead[0]
            .headers
            .iter()
            .map(|header| {
                (
                    header.key.as_str(),
                    header.value.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            headers,
            [
                ("ledge.transform", &b"t"[..]),
                ("ledge.source.topic", b"in"),
                ("ledge.source.partition", b"3"),
                ("ledge.source.offset", b"11"),
                ("ledge.error", b"bad"),
            ]
        );

        assert_eq!(
            route(OnError::Stop).batch(&records(3), outcomes()),
            Routed::Stop("partition 3 offset 11 failed: bad".into())
        );
    }

    #[test]
    fn absorbing_keeps_the_order_and_the_last_error() {
        let mut first = output(route(OnError::Skip).batch(
            &records(2),
            vec![Outcome::Error("one".into()), Outcome::Keep],
        ));
        let second = output(route(OnError::Skip).batch(&records(1), vec![Outcome::Keep]));
        first.absorb(second);
        assert_eq!(
            (first.records_in, first.records_out, first.failed),
            (3, 2, 1)
        );
        assert_eq!(values(&first.outputs[&1]), [&b"v1"[..], b"v0"]);
        // A later batch without an error keeps the earlier one's.
        assert_eq!(
            first.last_error.as_deref(),
            Some("partition 3 offset 10: one")
        );
    }

    #[test]
    fn the_breaker_trips_over_the_ratio_after_the_minimum_and_forgets_old_history() {
        let limits = TransformLimits {
            breaker_records_min: 10,
            breaker_error_ratio: 0.5,
            breaker_window_records: 100,
            ..TransformLimits::default()
        };
        let mut window = BreakerWindow::default();
        // All failed, but below the minimum: no trip.
        assert_eq!(window.record(9, 9, &limits), None);
        assert_eq!(
            window.record(1, 1, &limits).as_deref(),
            Some("circuit breaker: 10 of the last 10 records failed")
        );
        let mut window = BreakerWindow::default();
        assert_eq!(
            window.record(50, 25, &limits),
            None,
            "at the ratio is not over it"
        );
        // The window fills at 100 and halves: 60 bad of 100, then 30 of 50 kept.
        assert!(window.record(50, 35, &limits).is_some());
        assert_eq!(
            window,
            BreakerWindow {
                seen: 50,
                failed: 30
            }
        );
        assert_eq!(window.record(50, 0, &limits), None);
    }
}
