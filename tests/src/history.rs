//! What a replication test saw, and the checker that holds the cluster to what it promised.
//!
//! A run records a [`History`]: every record the producers sent (each value unique), the
//! ones acknowledged with their (partition, offset), and every (partition, offset, value) a
//! consumer read. After the run every node is stopped and each replica's partition is
//! dumped (`ledge-repair dump --format json`, parsed by [`ReplicaLog::from_dump_json`]).
//! [`check`] then proves the promises of acks=all replication (issue 13, "Tests"):
//!
//! - every acknowledged record is on at least `copies_min` replicas, at the offset it was
//!   acknowledged with, with its value (`acknowledged-present`, `too-few-copies`);
//! - no value is stored twice in a log, or in a partition it was not sent to
//!   (`exactly-once`): the idempotent producer's retries across failovers never duplicate;
//! - a producer's acknowledged records of one partition have offsets in the order it sent
//!   them (`in-order`);
//! - replicas agree record for record on the committed prefix, which runs at least to the
//!   highest offset acknowledged or read (`replicas-agree`); above it a replica may hold an
//!   uncommitted tail that its next fetch truncates;
//! - every record a consumer read is still there, at that offset with that value
//!   (`consumed-kept`): a consumer never saw an offset that was later lost or changed;
//! - no replica holds damaged bytes after the run (`no-damage`).
//!
//! Pure: no IO, no clock; unit-tested on synthetic histories, one failing case per rule.

use std::collections::BTreeMap;
use std::fmt;

/// A node id, as `cluster-init` numbers them.
pub type NodeId = u32;

/// One record a producer sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Which producer sent it (producers number their sends on their own).
    pub producer: u32,
    /// The producer's send order, from 0.
    pub sequence: u64,
    /// The partition it was sent to.
    pub partition: u32,
    /// Its value, unique in the run.
    pub value: String,
    /// The offset it was acknowledged with, or `None` if it failed or no answer came.
    pub acknowledged_offset: Option<i64>,
}

/// One record a consumer read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    /// The partition.
    pub partition: u32,
    /// Its offset.
    pub offset: i64,
    /// Its value.
    pub value: String,
}

/// Everything a run's clients saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Every send, acknowledged or not.
    pub sent: Vec<Sent>,
    /// Every read.
    pub consumed: Vec<Consumed>,
}

impl History {
    /// The acknowledged sends.
    pub fn acknowledged(&self) -> impl Iterator<Item = (&Sent, i64)> {
        self.sent
            .iter()
            .filter_map(|sent| sent.acknowledged_offset.map(|offset| (sent, offset)))
    }

    /// Merges another history into this one (several producers or consumers).
    pub fn extend(&mut self, other: Self) {
        self.sent.extend(other.sent);
        self.consumed.extend(other.consumed);
    }
}

/// One replica's copy of one partition after the run, as dumped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaLog {
    /// The node that holds it.
    pub node: NodeId,
    /// The partition.
    pub partition: u32,
    /// Its records (offset, value), in log order.
    pub records: Vec<(i64, String)>,
    /// The first damaged batch the dump met (offset, reason); nothing after it was read.
    pub damage: Option<(i64, String)>,
}

impl ReplicaLog {
    /// Parses `ledge-repair dump --format json` of `partition` on `node`. Values are
    /// decoded from hex and read as UTF-8 (lossily: the workload's values are text).
    pub fn from_dump_json(
        node: NodeId,
        partition: u32,
        dump: &serde_json::Value,
    ) -> Result<Self, String> {
        let mut records = Vec::new();
        for batch in dump["batches"]
            .as_array()
            .ok_or_else(|| format!("no batches in the dump: {dump}"))?
        {
            if batch["control"].as_bool() == Some(true) {
                continue;
            }
            for record in batch["records"]
                .as_array()
                .ok_or_else(|| format!("no records in batch {batch}"))?
            {
                let offset = record["offset"]
                    .as_i64()
                    .ok_or_else(|| format!("no offset in {record}"))?;
                let value = match record["value_hex"].as_str() {
                    Some(hex) => String::from_utf8_lossy(&from_hex(hex)?).into_owned(),
                    None => String::new(),
                };
                records.push((offset, value));
            }
        }
        let damage = match &dump["damage"] {
            serde_json::Value::Null => None,
            damage => Some((
                damage["offset"].as_i64().unwrap_or(-1),
                damage["reason"].as_str().unwrap_or_default().to_string(),
            )),
        };
        Ok(Self {
            node,
            partition,
            records,
            damage,
        })
    }

    /// The offset after its last record (0 if empty).
    pub fn end_offset(&self) -> i64 {
        self.records.last().map_or(0, |(offset, _)| offset + 1)
    }

    fn value_at(&self, offset: i64) -> Option<&str> {
        self.records
            .binary_search_by_key(&offset, |(at, _)| *at)
            .ok()
            .and_then(|index| self.records.get(index))
            .map(|(_, value)| value.as_str())
    }
}

fn from_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|at| {
            text.get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("bad hex {text:?}"))
        })
        .collect()
}

/// One broken promise, named by its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The rule (see the module documentation).
    pub rule: &'static str,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.rule, self.detail)
    }
}

/// What a passing check counted, for the test's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Records sent.
    pub sent: usize,
    /// Records acknowledged.
    pub acknowledged: usize,
    /// Records read by consumers.
    pub consumed: usize,
    /// Replica logs compared.
    pub replicas: usize,
    /// Records compared across replicas (the committed prefixes).
    pub compared: usize,
}

/// Violations found; at most this many are listed (the first ones tell the story).
pub const VIOLATIONS_LISTED_MAX: usize = 20;

/// Checks `history` against the replicas' logs `replicas`; each acknowledged record must be
/// on at least `copies_min` of its partition's replicas. Returns what was checked, or every
/// violation (the first [`VIOLATIONS_LISTED_MAX`]).
pub fn check(
    history: &History,
    replicas: &[ReplicaLog],
    copies_min: usize,
) -> Result<CheckSummary, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut violation = |rule: &'static str, detail: String| {
        if violations.len() < VIOLATIONS_LISTED_MAX {
            violations.push(Violation { rule, detail });
        }
    };
    let mut by_partition: BTreeMap<u32, Vec<&ReplicaLog>> = BTreeMap::new();
    for replica in replicas {
        by_partition
            .entry(replica.partition)
            .or_default()
            .push(replica);
        if let Some((offset, reason)) = &replica.damage {
            violation(
                "no-damage",
                format!(
                    "node {} partition {}: damaged batch at offset {offset}: {reason}",
                    replica.node, replica.partition
                ),
            );
        }
    }

    // exactly-once: a value at most once per log, and only in the partition it was sent to.
    let sent_partition: BTreeMap<&str, u32> = history
        .sent
        .iter()
        .map(|sent| (sent.value.as_str(), sent.partition))
        .collect();
    for replica in replicas {
        let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
        for (offset, value) in &replica.records {
            if let Some(first) = seen.insert(value, *offset) {
                violation(
                    "exactly-once",
                    format!(
                        "node {} partition {}: value {value:?} at offsets {first} and {offset}",
                        replica.node, replica.partition
                    ),
                );
            }
            if let Some(partition) = sent_partition.get(value.as_str())
                && *partition != replica.partition
            {
                violation(
                    "exactly-once",
                    format!(
                        "node {} partition {}: value {value:?} at offset {offset} was sent to partition {partition}",
                        replica.node, replica.partition
                    ),
                );
            }
        }
    }

    // The committed prefix of each partition runs at least past every offset acknowledged
    // or read: both happen only below the high watermark.
    let mut committed_end: BTreeMap<u32, i64> = BTreeMap::new();
    for (sent, offset) in history.acknowledged() {
        let end = committed_end.entry(sent.partition).or_default();
        *end = (*end).max(offset + 1);
    }
    for consumed in &history.consumed {
        let end = committed_end.entry(consumed.partition).or_default();
        *end = (*end).max(consumed.offset + 1);
    }

    // Where each value is stored, to say where a misplaced record went.
    let mut stored_at: BTreeMap<&str, Vec<(NodeId, i64)>> = BTreeMap::new();
    for replica in replicas {
        for (offset, value) in &replica.records {
            stored_at
                .entry(value.as_str())
                .or_default()
                .push((replica.node, *offset));
        }
    }
    let whereabouts = |value: &str| match stored_at.get(value) {
        None => "stored nowhere".to_string(),
        Some(places) => format!(
            "stored at {}",
            places
                .iter()
                .map(|(node, offset)| format!("offset {offset} on node {node}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };

    // acknowledged-present and too-few-copies.
    for (sent, offset) in history.acknowledged() {
        let logs = by_partition
            .get(&sent.partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut copies = 0;
        for log in logs {
            match log.value_at(offset) {
                Some(value) if value == sent.value => copies += 1,
                Some(value) => violation(
                    "acknowledged-present",
                    format!(
                        "node {} partition {}: offset {offset} holds {value:?}, but {:?} was acknowledged there",
                        log.node, sent.partition, sent.value
                    ),
                ),
                None if offset < log.end_offset() => violation(
                    "acknowledged-present",
                    format!(
                        "node {} partition {}: no record at offset {offset}, where {:?} was acknowledged (the log runs to {})",
                        log.node,
                        sent.partition,
                        sent.value,
                        log.end_offset()
                    ),
                ),
                None => {}
            }
        }
        if copies < copies_min {
            violation(
                "too-few-copies",
                format!(
                    "partition {}: {:?} acknowledged at offset {offset} is on {copies} replica(s), fewer than {copies_min} ({})",
                    sent.partition,
                    sent.value,
                    whereabouts(&sent.value)
                ),
            );
        }
    }

    // in-order: per producer and partition, offsets follow send order.
    // (producer, partition) -> (send order, offset, value) of each acknowledgement.
    type Acknowledgements<'a> = BTreeMap<(u32, u32), Vec<(u64, i64, &'a str)>>;
    let mut sends: Acknowledgements<'_> = BTreeMap::new();
    for (sent, offset) in history.acknowledged() {
        sends
            .entry((sent.producer, sent.partition))
            .or_default()
            .push((sent.sequence, offset, &sent.value));
    }
    for ((producer, partition), mut acknowledged) in sends {
        acknowledged.sort_unstable();
        for pair in acknowledged.windows(2) {
            if let [(_, before, first), (_, after, second)] = pair
                && after <= before
            {
                violation(
                    "in-order",
                    format!(
                        "producer {producer} partition {partition}: {first:?} (sent first) is at offset {before}, {second:?} at {after}"
                    ),
                );
            }
        }
    }

    // replicas-agree on the committed prefix, each as far as its log runs.
    let mut compared = 0;
    for (partition, logs) in &by_partition {
        let end = committed_end.get(partition).copied().unwrap_or(0);
        let Some((reference, others)) = logs.split_first() else {
            continue;
        };
        for other in others {
            let upto = end.min(reference.end_offset()).min(other.end_offset());
            let left = reference.records.iter().take_while(|(at, _)| *at < upto);
            let right = other.records.iter().take_while(|(at, _)| *at < upto);
            for pair in left.zip(right) {
                compared += 1;
                if pair.0 != pair.1 {
                    violation(
                        "replicas-agree",
                        format!(
                            "partition {partition}, below the committed end {end}: node {} has {:?}, node {} has {:?}",
                            reference.node, pair.0, other.node, pair.1
                        ),
                    );
                    break;
                }
            }
            let count = |log: &ReplicaLog| log.records.iter().filter(|(at, _)| *at < upto).count();
            if count(reference) != count(other) {
                violation(
                    "replicas-agree",
                    format!(
                        "partition {partition}, below offset {upto}: node {} holds {} records, node {} holds {}",
                        reference.node,
                        count(reference),
                        other.node,
                        count(other)
                    ),
                );
            }
        }
    }

    // consumed-kept: what a consumer read is still there, unchanged.
    for consumed in &history.consumed {
        let logs = by_partition
            .get(&consumed.partition)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut copies = 0;
        for log in logs {
            match log.value_at(consumed.offset) {
                Some(value) if value == consumed.value => copies += 1,
                Some(value) => violation(
                    "consumed-kept",
                    format!(
                        "node {} partition {}: offset {} holds {value:?}, but a consumer read {:?} there",
                        log.node, consumed.partition, consumed.offset, consumed.value
                    ),
                ),
                None => {}
            }
        }
        if copies == 0 {
            violation(
                "consumed-kept",
                format!(
                    "partition {}: a consumer read {:?} at offset {}, which no replica holds",
                    consumed.partition, consumed.value, consumed.offset
                ),
            );
        }
    }

    if violations.is_empty() {
        Ok(CheckSummary {
            sent: history.sent.len(),
            acknowledged: history.acknowledged().count(),
            consumed: history.consumed.len(),
            replicas: replicas.len(),
            compared,
        })
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(
        producer: u32,
        sequence: u64,
        partition: u32,
        value: &str,
        offset: Option<i64>,
    ) -> Sent {
        Sent {
            producer,
            sequence,
            partition,
            value: value.to_string(),
            acknowledged_offset: offset,
        }
    }

    fn log(node: NodeId, partition: u32, values: &[&str]) -> ReplicaLog {
        ReplicaLog {
            node,
            partition,
            records: values
                .iter()
                .enumerate()
                .map(|(offset, value)| (offset as i64, value.to_string()))
                .collect(),
            damage: None,
        }
    }

    /// Three replicas of partition 0 holding a, b, c; a and b acknowledged, b read.
    fn healthy() -> (History, Vec<ReplicaLog>) {
        let history = History {
            sent: vec![
                sent(0, 0, 0, "a", Some(0)),
                sent(0, 1, 0, "b", Some(1)),
                sent(0, 2, 0, "c", None),
            ],
            consumed: vec![Consumed {
                partition: 0,
                offset: 1,
                value: "b".into(),
            }],
        };
        let logs = vec![
            log(1, 0, &["a", "b", "c"]),
            log(2, 0, &["a", "b", "c"]),
            log(3, 0, &["a", "b"]),
        ];
        (history, logs)
    }

    fn rules(result: Result<CheckSummary, Vec<Violation>>) -> Vec<&'static str> {
        let mut rules: Vec<&'static str> = result
            .expect_err("a violation")
            .iter()
            .map(|violation| violation.rule)
            .collect();
        rules.dedup();
        rules
    }

    // Goal: a clean run passes, counting what it compared; a replica's uncommitted tail
    // that differs from another's above the committed end (a deposed leader's unacknowledged
    // records) is allowed, as is an unacknowledged record present or absent.
    #[test]
    fn a_clean_history_passes_and_uncommitted_tails_may_differ() {
        let (history, mut logs) = healthy();
        let summary = check(&history, &logs, 3).unwrap();
        assert_eq!(
            summary,
            CheckSummary {
                sent: 3,
                acknowledged: 2,
                consumed: 1,
                replicas: 3,
                compared: 4
            }
        );
        logs[1] = log(2, 0, &["a", "b", "x-unacknowledged"]);
        check(&history, &logs, 3).unwrap();
    }

    // Goal (acknowledged-present, too-few-copies): an acknowledged record missing from a
    // replica whose log runs past it, or changed there, fails; one missing from every
    // replica fails for too few copies; a lagging replica that ends before it only counts
    // against the copies.
    #[test]
    fn a_lost_or_changed_acknowledged_record_fails() {
        let (history, mut logs) = healthy();
        logs[0].records.remove(1);
        assert!(rules(check(&history, &logs, 2)).contains(&"acknowledged-present"));

        let (history, mut logs) = healthy();
        logs[0].records[0].1 = "z".into();
        assert!(rules(check(&history, &logs, 2)).contains(&"acknowledged-present"));

        let (history, mut logs) = healthy();
        for log in &mut logs {
            log.records.truncate(1);
        }
        assert_eq!(
            rules(check(&history, &logs, 1))
                .into_iter()
                .filter(|rule| *rule == "too-few-copies")
                .count(),
            1
        );

        let (history, mut logs) = healthy();
        logs[2].records.truncate(1);
        check(&history, &logs, 2).unwrap();
        assert_eq!(rules(check(&history, &logs, 3)), vec!["too-few-copies"]);
    }

    // Goal (exactly-once): a value stored twice in one log (a resend written again), or in
    // a partition it was not sent to, fails.
    #[test]
    fn a_duplicate_or_misplaced_value_fails() {
        let (history, mut logs) = healthy();
        for log in &mut logs {
            log.records.push((3, "a".into()));
        }
        assert_eq!(rules(check(&history, &logs, 3)), vec!["exactly-once"]);

        let (history, mut logs) = healthy();
        logs.push(log(1, 1, &["c"]));
        assert_eq!(rules(check(&history, &logs, 3)), vec!["exactly-once"]);
    }

    // Goal (in-order): a producer's later send acknowledged at a lower offset fails.
    #[test]
    fn acknowledgements_out_of_send_order_fail() {
        let history = History {
            sent: vec![sent(0, 0, 0, "b", Some(1)), sent(0, 1, 0, "a", Some(0))],
            consumed: Vec::new(),
        };
        let logs = vec![log(1, 0, &["a", "b"]), log(2, 0, &["a", "b"])];
        assert_eq!(rules(check(&history, &logs, 2)), vec!["in-order"]);
        // Two producers interleaving is not disorder.
        let history = History {
            sent: vec![sent(0, 0, 0, "b", Some(1)), sent(1, 0, 0, "a", Some(0))],
            consumed: Vec::new(),
        };
        check(&history, &logs, 2).unwrap();
    }

    // Goal (replicas-agree): replicas that differ below the committed end fail, even where
    // no acknowledged record sits (an unacknowledged record committed on one and not the
    // other), and so does a replica with a hole there.
    #[test]
    fn replicas_that_differ_below_the_committed_end_fail() {
        let history = History {
            sent: vec![sent(0, 0, 0, "a", None), sent(0, 1, 0, "b", Some(1))],
            consumed: Vec::new(),
        };
        let logs = vec![log(1, 0, &["a", "b"]), log(2, 0, &["q", "b"])];
        assert_eq!(rules(check(&history, &logs, 2)), vec!["replicas-agree"]);
        let holed = ReplicaLog {
            records: vec![(1, "b".into())],
            ..log(2, 0, &[])
        };
        let logs = vec![log(1, 0, &["a", "b"]), holed];
        assert_eq!(rules(check(&history, &logs, 2)), vec!["replicas-agree"]);
    }

    // Goal (consumed-kept): a record a consumer read that no replica holds any more (lost
    // after it was served), or that was replaced, fails.
    #[test]
    fn a_consumed_record_lost_or_changed_later_fails() {
        let history = History {
            sent: vec![sent(0, 0, 0, "a", None), sent(0, 1, 0, "b", None)],
            consumed: vec![Consumed {
                partition: 0,
                offset: 1,
                value: "b".into(),
            }],
        };
        let logs = vec![log(1, 0, &["a"]), log(2, 0, &["a"])];
        assert_eq!(rules(check(&history, &logs, 2)), vec!["consumed-kept"]);
        let logs = vec![log(1, 0, &["a", "c"]), log(2, 0, &["a", "c"])];
        assert_eq!(rules(check(&history, &logs, 2)), vec!["consumed-kept"]);
    }

    // Goal (no-damage): a replica whose dump stopped at a damaged batch fails; the dump's
    // JSON is parsed into the same records and damage.
    #[test]
    fn a_damaged_replica_fails_and_dumps_parse() {
        let dump = serde_json::json!({
            "batches": [
                {"control": false, "records": [
                    {"offset": 0, "value_hex": "61"},
                    {"offset": 1, "value_hex": "62"},
                ]},
            ],
            "damage": {"offset": 2, "reason": "CRC mismatch"},
        });
        let parsed = ReplicaLog::from_dump_json(3, 0, &dump).unwrap();
        assert_eq!(
            parsed.records,
            vec![(0, "a".to_string()), (1, "b".to_string())]
        );
        assert_eq!(parsed.damage, Some((2, "CRC mismatch".to_string())));
        let (history, mut logs) = healthy();
        logs[2] = parsed;
        assert_eq!(rules(check(&history, &logs, 2)), vec!["no-damage"]);
        assert!(ReplicaLog::from_dump_json(1, 0, &serde_json::json!({})).is_err());
        let bad_hex =
            serde_json::json!({"batches": [{"records": [{"offset": 0, "value_hex": "6"}]}]});
        assert!(ReplicaLog::from_dump_json(1, 0, &bad_hex).is_err());
    }
}
