//! Checkers of the whole-node simulator: what the clients were promised (the [`Ledger`]),
//! compared with what the node answers and what its logs hold (an [`Audit`]).
//!
//! Each checker is one function returning `Err(message)` on a violation; the simulator
//! wraps the message in a [`Failure`] naming the seed, the step and the checker, so a
//! failure reads as "seed 17 step 4211: acknowledged-records-present: ...", and
//! `LEDGE_SIM_SEED=17` replays it.
//!
//! What counts as promised, and why:
//! - A produce acknowledged with `acks=all` is durable at its offsets.
//! - A produce acknowledged with `acks=1` is durable once an `acks=all` produce to the same
//!   partition is acknowledged at a higher offset by the same incarnation of the node (no
//!   crash between the two answers, so the record was in the log below the synced one: the
//!   sync covers it). Until then a crash may lose it.
//! - Reads within one incarnation see one record per offset; across a crash only durable
//!   records must stay (an unsynced tail may be lost and its offsets reused).
//! - A topic whose creation was acknowledged exists until a deletion is sent for it; a topic
//!   whose deletion was acknowledged never appears again (the workload never reuses names).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use ledge_protocol::wire::{
    ErrorCode, FetchPartition, FetchRequest, FetchTopic, MetadataRequest, MetadataResponse,
    Request, Response, TopicPartitions,
};
use ledge_protocol::{BatchIter, DecodeLimits, decode_batch};

/// A topic partition.
pub type PartitionKey = (String, u32);

/// A group's partition.
pub type GroupPartitionKey = (String, String, u32);

/// A checker's verdict, with everything needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed of the run.
    pub seed: u64,
    /// The simulated millisecond at which the checker failed.
    pub step: u64,
    /// Which checker.
    pub checker: &'static str,
    /// What it found.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "seed {} step {}: {}: {} (replay: LEDGE_SIM_SEED={} cargo test -p ledge-node --lib sim::cluster::tests::seeds -- --nocapture)",
            self.seed, self.step, self.checker, self.message, self.seed
        )
    }
}

/// What the clients were told, kept by the simulator as answers arrive.
#[derive(Default, Debug)]
pub struct Ledger {
    /// Records that must survive any crash: partition -> offset -> (value, incarnation
    /// that acknowledged it; reads of earlier incarnations are not bound by it).
    durable: BTreeMap<PartitionKey, BTreeMap<i64, (Bytes, u64)>>,
    /// `acks=1` records not yet covered by a sync: (offset, value, incarnation).
    leader_only: BTreeMap<PartitionKey, Vec<(i64, Bytes, u64)>>,
    /// What reads returned in the incarnation `seen_incarnation`.
    seen: BTreeMap<PartitionKey, BTreeMap<i64, Bytes>>,
    seen_incarnation: u64,
    /// Acknowledged group commits: (simulated ms of the answer, offset). A read is bound
    /// only by commits acknowledged before it was sent (a concurrent one may or may not
    /// be seen).
    commits_acked: BTreeMap<GroupPartitionKey, Vec<(u64, i64)>>,
    /// Committed offsets read back in `seen_incarnation`: (ms of the answer, offset).
    commits_seen: BTreeMap<GroupPartitionKey, Vec<(u64, i64)>>,
    /// Topics whose creation was acknowledged, with their partition count.
    created: BTreeMap<String, u32>,
    /// Topics a deletion was sent for (they may or may not exist now).
    deletion_sent: BTreeSet<String>,
    /// Topics whose deletion was acknowledged.
    deleted: BTreeSet<String>,
    /// Acknowledged config values: (topic, key) -> value; `None` while an alter of the key
    /// has an unknown outcome (lost answer).
    configs: BTreeMap<(String, String), Option<String>>,
    /// Input topics of acknowledged transform deployments.
    transform_inputs: BTreeSet<String>,
    /// Every value a producer sent (to tell, when a transform's output holds a record its
    /// input does not, whether the record was ever sent).
    produced: BTreeSet<Bytes>,
}

impl Ledger {
    /// A new incarnation of the node has started: reads of the last one that were not
    /// durable may be gone, and `acks=1` records that no sync covered may be lost.
    pub fn node_restarted(&mut self, incarnation: u64) {
        self.seen.clear();
        self.commits_seen.clear();
        self.leader_only.clear();
        self.seen_incarnation = incarnation;
    }

    /// A produce was acknowledged: `values` at `base_offset..`, `all` for `acks=all`.
    pub fn produce_acknowledged(
        &mut self,
        key: &PartitionKey,
        base_offset: i64,
        values: &[Bytes],
        all: bool,
        incarnation: u64,
    ) -> Result<(), String> {
        if self.deletion_sent.contains(&key.0) {
            return Ok(());
        }
        if !all {
            if incarnation == self.seen_incarnation {
                let pending = self.leader_only.entry(key.clone()).or_default();
                for (index, value) in values.iter().enumerate() {
                    pending.push((base_offset + index as i64, value.clone(), incarnation));
                }
            }
            return Ok(());
        }
        let mut covered: Vec<(i64, Bytes)> = Vec::new();
        if let Some(pending) = self.leader_only.get_mut(key) {
            pending.retain(|(offset, value, at)| {
                let is_covered = *at == incarnation && *offset < base_offset;
                if is_covered {
                    covered.push((*offset, value.clone()));
                }
                !is_covered && *at == incarnation
            });
        }
        covered.extend(
            values
                .iter()
                .enumerate()
                .map(|(index, value)| (base_offset + index as i64, value.clone())),
        );
        let durable = self.durable.entry(key.clone()).or_default();
        for (offset, value) in covered {
            check_one_record_per_offset(
                key,
                offset,
                durable.get(&offset).map(|(value, _)| value),
                &value,
            )?;
            durable.entry(offset).or_insert((value, incarnation));
        }
        Ok(())
    }

    /// A read returned `value` at `offset`, from the node's incarnation `incarnation`.
    pub fn record_read(
        &mut self,
        key: &PartitionKey,
        offset: i64,
        value: &Bytes,
        incarnation: u64,
    ) -> Result<(), String> {
        check_reads_agree(self, key, offset, value, incarnation)?;
        if incarnation == self.seen_incarnation {
            self.seen
                .entry(key.clone())
                .or_default()
                .insert(offset, value.clone());
        }
        Ok(())
    }

    /// A group commit of `offset` was acknowledged at `now_ms`.
    pub fn commit_acknowledged(&mut self, key: GroupPartitionKey, offset: i64, now_ms: u64) {
        self.commits_acked
            .entry(key)
            .or_default()
            .push((now_ms, offset));
    }

    /// An offset fetch sent at `sent_ms` and answered at `now_ms` by `incarnation` read
    /// `offset` (or nothing) for a group's partition.
    pub fn commit_read(
        &mut self,
        key: GroupPartitionKey,
        offset: Option<i64>,
        incarnation: u64,
        sent_ms: u64,
        now_ms: u64,
    ) -> Result<(), String> {
        check_commits_never_go_backwards(self, &key, offset, incarnation, sent_ms)?;
        if let Some(offset) = offset
            && incarnation == self.seen_incarnation
        {
            self.commits_seen
                .entry(key)
                .or_default()
                .push((now_ms, offset));
        }
        Ok(())
    }

    /// A topic's creation was acknowledged (or answered "already exists" to a retry).
    pub fn topic_created(&mut self, name: &str, partitions: u32) {
        self.created.insert(name.to_string(), partitions);
    }

    /// A deletion was sent for a topic: from now on its records are not promised.
    pub fn topic_deletion_sent(&mut self, name: &str) {
        self.deletion_sent.insert(name.to_string());
        self.durable.retain(|key, _| key.0 != name);
        self.leader_only.retain(|key, _| key.0 != name);
    }

    /// A topic's deletion was acknowledged.
    pub fn topic_deleted(&mut self, name: &str) {
        self.deleted.insert(name.to_string());
    }

    /// A producer sent these values.
    pub fn values_sent(&mut self, values: &[Bytes]) {
        self.produced.extend(values.iter().cloned());
    }

    /// A transform of `input` was deployed.
    pub fn transform_deployed(&mut self, input: &str) {
        self.transform_inputs.insert(input.to_string());
    }

    /// Transforms deployed (for the summary).
    pub fn transforms_deployed(&self) -> usize {
        self.transform_inputs.len()
    }

    /// An alter of a topic config was sent; its outcome is unknown until answered.
    pub fn config_alter_sent(&mut self, topic: &str, key: &str) {
        self.configs
            .insert((topic.to_string(), key.to_string()), None);
    }

    /// An alter of a topic config was acknowledged.
    pub fn config_altered(&mut self, topic: &str, key: &str, value: &str) {
        self.configs.insert(
            (topic.to_string(), key.to_string()),
            Some(value.to_string()),
        );
    }

    /// How many records are promised durable (for the run summary).
    pub fn durable_records(&self) -> usize {
        self.durable.values().map(BTreeMap::len).sum()
    }

    /// The highest commit acknowledged before `before_ms`.
    fn commit_acknowledged_before(&self, key: &GroupPartitionKey, before_ms: u64) -> Option<i64> {
        self.commits_acked
            .get(key)?
            .iter()
            .filter(|(at, _)| *at < before_ms)
            .map(|(_, offset)| *offset)
            .max()
    }

    /// The highest commit read (in this incarnation) by an answer before `before_ms`.
    fn commit_seen_before(&self, key: &GroupPartitionKey, before_ms: u64) -> Option<i64> {
        self.commits_seen
            .get(key)?
            .iter()
            .filter(|(at, _)| *at < before_ms)
            .map(|(_, offset)| *offset)
            .max()
    }

    /// Topics whose deletion was acknowledged.
    pub fn deleted_topics(&self) -> &BTreeSet<String> {
        &self.deleted
    }

    /// Groups with acknowledged commits, and their partitions.
    pub fn committed_groups(&self) -> BTreeMap<String, Vec<(String, u32)>> {
        let mut groups: BTreeMap<String, Vec<(String, u32)>> = BTreeMap::new();
        for (group, topic, partition) in self.commits_acked.keys() {
            groups
                .entry(group.clone())
                .or_default()
                .push((topic.clone(), *partition));
        }
        groups
    }
}

/// One offset holds one record: two acknowledgements at one offset must name one value.
pub fn check_one_record_per_offset(
    key: &PartitionKey,
    offset: i64,
    before: Option<&Bytes>,
    value: &Bytes,
) -> Result<(), String> {
    match before {
        Some(before) if before != value => Err(format!(
            "{}/{} offset {offset} was acknowledged for {:?} and later for {:?}",
            key.0, key.1, before, value
        )),
        _ => Ok(()),
    }
}

/// The same offset always reads the same record: within an incarnation any record, and
/// across incarnations every durable one.
pub fn check_reads_agree(
    ledger: &Ledger,
    key: &PartitionKey,
    offset: i64,
    value: &Bytes,
    incarnation: u64,
) -> Result<(), String> {
    if let Some((durable, acknowledged_by)) =
        ledger.durable.get(key).and_then(|log| log.get(&offset))
        && incarnation >= *acknowledged_by
        && durable != value
    {
        return Err(format!(
            "{}/{} offset {offset} read {:?}, but {:?} was acknowledged there",
            key.0, key.1, value, durable
        ));
    }
    if incarnation == ledger.seen_incarnation
        && let Some(seen) = ledger.seen.get(key).and_then(|log| log.get(&offset))
        && seen != value
    {
        return Err(format!(
            "{}/{} offset {offset} read {:?}, and earlier {:?} in the same incarnation ({incarnation})",
            key.0, key.1, value, seen
        ));
    }
    Ok(())
}

/// A committed group offset never goes backwards: a read returns at least the highest
/// commit acknowledged before the read was sent, and within an incarnation never less than
/// a read answered before it was sent.
pub fn check_commits_never_go_backwards(
    ledger: &Ledger,
    key: &GroupPartitionKey,
    read: Option<i64>,
    incarnation: u64,
    sent_ms: u64,
) -> Result<(), String> {
    let (group, topic, partition) = key;
    if ledger.deletion_sent.contains(topic) {
        return Ok(());
    }
    if let Some(acked) = ledger.commit_acknowledged_before(key, sent_ms)
        && read.is_none_or(|read| read < acked)
    {
        return Err(format!(
            "group {group} {topic}/{partition}: offset fetch sent at {sent_ms} ms read {read:?}, but a commit of {acked} was acknowledged before"
        ));
    }
    if incarnation == ledger.seen_incarnation
        && let Some(seen) = ledger.commit_seen_before(key, sent_ms)
        && read.is_none_or(|read| read < seen)
    {
        return Err(format!(
            "group {group} {topic}/{partition}: offset fetch sent at {sent_ms} ms read {read:?}, after a read of {seen} in the same incarnation ({incarnation})"
        ));
    }
    Ok(())
}

/// What the node holds, read off the network after a restart or at the end of a run.
#[derive(Debug, Default)]
pub struct Audit {
    /// The Metadata answer for all topics.
    pub metadata: MetadataResponse,
    /// Every record of every partition of every non-internal topic: (offset, value).
    pub logs: BTreeMap<PartitionKey, Vec<(i64, Bytes)>>,
    /// Partitions that could not be read to their high watermark, and why.
    pub unreadable: BTreeMap<PartitionKey, String>,
    /// DescribeConfigs of every listed non-internal topic: (topic, key) -> value.
    pub configs: BTreeMap<(String, String), String>,
    /// DescribeTransforms of every transform.
    pub transforms: Vec<ledge_protocol::wire::TransformDescription>,
    /// Partitions left out of this audit (offline after a disk error).
    pub forgiven: BTreeSet<PartitionKey>,
}

impl Audit {
    /// Reads everything through `call` (the node's request handler, off the network).
    pub fn take(mut call: impl FnMut(Request) -> Option<Response>) -> Result<Self, String> {
        let Some(Response::Metadata(metadata)) =
            call(Request::Metadata(MetadataRequest { topics: None }))
        else {
            return Err("the node did not answer Metadata".into());
        };
        let mut audit = Self {
            metadata,
            ..Self::default()
        };
        let topics: Vec<_> = audit
            .metadata
            .topics
            .iter()
            .filter(|topic| !topic.internal && topic.error == ErrorCode::None)
            .cloned()
            .collect();
        for topic in &topics {
            for partition in &topic.partitions {
                let key = (topic.name.clone(), partition.partition);
                if partition.error != ErrorCode::None {
                    audit.unreadable.insert(
                        key,
                        format!(
                            "Metadata reports {:?}: {}",
                            partition.error, partition.damage
                        ),
                    );
                    continue;
                }
                match read_partition(
                    &mut call,
                    &key,
                    partition.log_start_offset,
                    partition.high_watermark,
                ) {
                    Ok(records) => {
                        audit.logs.insert(key, records);
                    }
                    Err(error) => {
                        audit.unreadable.insert(key, error);
                    }
                }
            }
        }
        let names: Vec<String> = topics.iter().map(|topic| topic.name.clone()).collect();
        if !names.is_empty() {
            let Some(Response::DescribeConfigs(described)) = call(Request::DescribeConfigs(
                ledge_protocol::wire::DescribeConfigsRequest { topics: names },
            )) else {
                return Err("the node did not answer DescribeConfigs".into());
            };
            for topic in described.topics {
                for config in topic.configs {
                    audit
                        .configs
                        .insert((topic.name.clone(), config.name), config.value);
                }
            }
        }
        let Some(Response::DescribeTransforms(described)) = call(Request::DescribeTransforms(
            ledge_protocol::wire::DescribeTransformsRequest { names: Vec::new() },
        )) else {
            return Err("the node did not answer DescribeTransforms".into());
        };
        audit.transforms = described.transforms;
        Ok(audit)
    }

    /// Leaves out partitions reported offline (after a disk error the node keeps a
    /// partition offline until it restarts; the audit after the restart reads them).
    pub fn forgive_offline_partitions(&mut self) {
        let offline: BTreeSet<PartitionKey> = self
            .metadata
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .filter(|partition| partition.error == ErrorCode::PartitionOffline)
                    .map(|partition| (topic.name.clone(), partition.partition))
            })
            .collect();
        for topic in &mut self.metadata.topics {
            let name = topic.name.clone();
            topic
                .partitions
                .retain(|partition| !offline.contains(&(name.clone(), partition.partition)));
        }
        self.unreadable.retain(|key, _| !offline.contains(key));
        self.forgiven.extend(offline);
    }

    /// Output and dead-letter topics of transforms: written at least once, so an idempotent
    /// producer's value may appear there twice after a crash.
    fn transform_written_topics(&self) -> BTreeSet<&str> {
        self.transforms
            .iter()
            .flat_map(|transform| {
                [
                    transform.output.as_str(),
                    transform.dead_letter_topic.as_str(),
                ]
            })
            .collect()
    }
}

/// Reads a partition from `start` to `end` (exclusive) with fetches at positions.
fn read_partition(
    call: &mut impl FnMut(Request) -> Option<Response>,
    key: &PartitionKey,
    start: i64,
    end: i64,
) -> Result<Vec<(i64, Bytes)>, String> {
    let mut records = Vec::new();
    let mut position = start;
    while position < end {
        let request = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: key.0.clone(),
                partitions: vec![FetchPartition {
                    current_leader_epoch: None,
                    partition: key.1,
                    fetch_offset: position,
                    partition_max_bytes: 1 << 20,
                }],
            }],
            plugin: None,
        };
        let Some(Response::Fetch(response)) = call(Request::Fetch(request)) else {
            return Err(format!("no Fetch answer at offset {position}"));
        };
        let Some(answer) = response
            .topics
            .into_iter()
            .next()
            .and_then(|topic| topic.partitions.into_iter().next())
        else {
            return Err(format!(
                "empty Fetch answer at offset {position}: {:?} {}",
                response.error, response.message
            ));
        };
        if answer.error != ErrorCode::None {
            return Err(format!(
                "Fetch at offset {position}: {:?} {}",
                answer.error, answer.message
            ));
        }
        let decoded = decode_records(&answer.records)?;
        let before = position;
        for (offset, value) in decoded {
            // A transform may append while the audit reads: the Metadata snapshot's high
            // watermark bounds what is compared with it.
            if offset >= position && offset < end {
                records.push((offset, value));
                position = offset + 1;
            }
        }
        if position == before {
            return Err(format!(
                "Fetch at offset {position} returned nothing below the high watermark {end}"
            ));
        }
    }
    Ok(records)
}

/// The (offset, value) of every record in fetched bytes.
pub fn decode_records(bytes: &Bytes) -> Result<Vec<(i64, Bytes)>, String> {
    let mut records = Vec::new();
    for batch in BatchIter::new(bytes) {
        let raw = match batch {
            Ok((_, raw)) => raw,
            // A fetch may end inside a batch that did not fit; the next fetch reads it.
            Err(ledge_protocol::BatchError::Truncated { .. }) => break,
            Err(error) => return Err(format!("fetched batch: {error}")),
        };
        let batch = bytes.slice_ref(raw);
        let decoded = decode_batch(&batch, &DecodeLimits::default())
            .map_err(|error| format!("fetched batch: {error}"))?;
        for record in decoded.records {
            records.push((record.offset, record.value.unwrap_or_default()));
        }
    }
    Ok(records)
}

/// No acknowledged record lost: every durable record is in the log at its offset.
pub fn check_acknowledged_records_present(ledger: &Ledger, audit: &Audit) -> Result<(), String> {
    for (key, promised) in &ledger.durable {
        if ledger.deletion_sent.contains(&key.0) || audit.forgiven.contains(key) {
            continue;
        }
        if let Some(reason) = audit.unreadable.get(key) {
            return Err(format!(
                "{}/{} holds {} acknowledged records but cannot be read: {reason}",
                key.0,
                key.1,
                promised.len()
            ));
        }
        let Some(log) = audit.logs.get(key) else {
            return Err(format!(
                "{}/{} holds {} acknowledged records but is not in Metadata",
                key.0,
                key.1,
                promised.len()
            ));
        };
        let held: BTreeMap<i64, &Bytes> =
            log.iter().map(|(offset, value)| (*offset, value)).collect();
        for (offset, (value, _)) in promised {
            match held.get(offset) {
                Some(found) if *found == value => {}
                Some(found) => {
                    return Err(format!(
                        "{}/{} offset {offset}: acknowledged {value:?}, the log holds {found:?}",
                        key.0, key.1
                    ));
                }
                None => {
                    return Err(format!(
                        "{}/{} offset {offset}: acknowledged {value:?} is lost (the log holds offsets {:?}..{:?})",
                        key.0,
                        key.1,
                        log.first().map(|(offset, _)| offset),
                        log.last().map(|(offset, _)| offset)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Values an idempotent producer writes start with this; each must appear at most once.
pub const IDEMPOTENT_PREFIX: &[u8] = b"idem-";

/// No duplicate under idempotence: no value of an idempotent producer appears twice in a
/// partition (its retries carry the same sequence, which the node must recognise).
pub fn check_no_duplicates_under_idempotence(audit: &Audit) -> Result<(), String> {
    let at_least_once = audit.transform_written_topics();
    for (key, log) in &audit.logs {
        if at_least_once.contains(key.0.as_str()) {
            continue;
        }
        let mut first_at: BTreeMap<&Bytes, i64> = BTreeMap::new();
        for (offset, value) in log {
            if !value.starts_with(IDEMPOTENT_PREFIX) {
                continue;
            }
            if let Some(first) = first_at.insert(value, *offset) {
                return Err(format!(
                    "{}/{}: idempotent record {value:?} at offsets {first} and {offset}",
                    key.0, key.1
                ));
            }
        }
    }
    Ok(())
}

/// Offsets dense: the log holds every offset from its start to its high watermark (the
/// workload never compacts).
pub fn check_offsets_dense(audit: &Audit) -> Result<(), String> {
    for topic in &audit.metadata.topics {
        for partition in &topic.partitions {
            let key = (topic.name.clone(), partition.partition);
            let Some(log) = audit.logs.get(&key) else {
                continue;
            };
            let mut expected = partition.log_start_offset;
            for (offset, _) in log {
                if *offset != expected {
                    return Err(format!(
                        "{}/{}: offset {offset} follows {} (a gap or a repeat)",
                        key.0,
                        key.1,
                        expected - 1
                    ));
                }
                expected += 1;
            }
            if expected != partition.high_watermark {
                return Err(format!(
                    "{}/{}: read up to offset {}, but the high watermark is {}",
                    key.0, key.1, expected, partition.high_watermark
                ));
            }
        }
    }
    Ok(())
}

/// Metadata agrees with the logs: every acknowledged topic not being deleted is listed with
/// its partitions, every listed partition is readable, and the reported record count is
/// what a read finds.
pub fn check_metadata_matches_logs(ledger: &Ledger, audit: &Audit) -> Result<(), String> {
    let listed: BTreeMap<&str, &ledge_protocol::wire::TopicMetadata> = audit
        .metadata
        .topics
        .iter()
        .map(|topic| (topic.name.as_str(), topic))
        .collect();
    for (name, &partitions) in &ledger.created {
        if ledger.deletion_sent.contains(name) {
            continue;
        }
        let Some(topic) = listed.get(name.as_str()) else {
            return Err(format!(
                "topic {name}: creation acknowledged, no deletion sent, not in Metadata"
            ));
        };
        let numbers: Vec<u32> = topic.partitions.iter().map(|p| p.partition).collect();
        let expected: Vec<u32> = (0..partitions)
            .filter(|partition| !audit.forgiven.contains(&(name.clone(), *partition)))
            .collect();
        if numbers != expected {
            return Err(format!(
                "topic {name}: created with {partitions} partitions, Metadata lists {numbers:?}"
            ));
        }
    }
    if let Some((key, reason)) = audit.unreadable.iter().next() {
        return Err(format!(
            "{}/{} is listed in Metadata but not readable: {reason}",
            key.0, key.1
        ));
    }
    for topic in audit.metadata.topics.iter().filter(|topic| !topic.internal) {
        for partition in &topic.partitions {
            let key = (topic.name.clone(), partition.partition);
            let read = audit.logs.get(&key).map_or(0, Vec::len) as u64;
            if partition.record_count != read {
                return Err(format!(
                    "{}/{}: Metadata counts {} records, a read from offset {} finds {read}",
                    key.0, key.1, partition.record_count, partition.log_start_offset
                ));
            }
        }
    }
    Ok(())
}

/// A deleted topic never comes back, after any number of restarts.
pub fn check_deleted_topics_stay_deleted(ledger: &Ledger, audit: &Audit) -> Result<(), String> {
    match audit
        .metadata
        .topics
        .iter()
        .find(|topic| ledger.deleted.contains(&topic.name))
    {
        Some(topic) => Err(format!(
            "topic {}: deletion acknowledged, but Metadata lists it with {} partitions",
            topic.name,
            topic.partitions.len()
        )),
        None => Ok(()),
    }
}

/// DescribeConfigs reports every acknowledged config change.
pub fn check_configs_match(ledger: &Ledger, audit: &Audit) -> Result<(), String> {
    for ((topic, key), value) in &ledger.configs {
        let Some(value) = value else { continue };
        if ledger.deletion_sent.contains(topic) {
            continue;
        }
        let described = audit.configs.get(&(topic.clone(), key.clone()));
        if described != Some(value) {
            return Err(format!(
                "topic {topic}: {key} was set to {value:?} (acknowledged), DescribeConfigs says {described:?}"
            ));
        }
    }
    Ok(())
}

/// A transform writes only what its input holds (the filter keeps records as they are), and
/// once the run has settled and it reports no lag, its output holds every input record (at
/// least once). Before settling "no lag" may count a chunk whose output is still being
/// written, so `settled` is false in the audits after restarts.
pub fn check_transform_output(ledger: &Ledger, audit: &Audit, settled: bool) -> Result<(), String> {
    for transform in &audit.transforms {
        let partly_offline = audit
            .forgiven
            .iter()
            .any(|(topic, _)| *topic == transform.input || *topic == transform.output);
        if transform.error != ErrorCode::None || partly_offline {
            // A partition left out of the audit (offline after a disk error) would look
            // like missing records; the audit after the next start compares them.
            continue;
        }
        let values_of = |topic: &str| -> BTreeSet<&Bytes> {
            audit
                .logs
                .iter()
                .filter(|(key, _)| key.0 == topic)
                .flat_map(|(_, log)| log.iter().map(|(_, value)| value))
                .collect()
        };
        let input = values_of(&transform.input);
        let output = values_of(&transform.output);
        if let Some(invented) = output.difference(&input).next() {
            let sent = if ledger.produced.contains(*invented) {
                "a producer sent it, so the input lost it or the transform read it before it was durable"
            } else {
                "no producer sent it"
            };
            return Err(format!(
                "transform {} wrote {invented:?} to {}, which its input {} does not hold ({sent})",
                transform.name, transform.output, transform.input
            ));
        }
        if settled
            && transform.state == "running"
            && transform.lag == 0
            && !ledger.deletion_sent.contains(&transform.input)
            && let Some(missing) = input.difference(&output).next()
        {
            return Err(format!(
                "transform {} reports no lag, but {missing:?} of {} is not in {} ({} of {} input values copied)",
                transform.name,
                transform.input,
                transform.output,
                output.len(),
                input.len()
            ));
        }
    }
    Ok(())
}

/// After settling, every partition of the group's topics is owned by exactly one member.
pub fn check_one_owner_per_partition(
    group: &str,
    assignments: &BTreeMap<String, Vec<TopicPartitions>>,
    partitions: &BTreeSet<PartitionKey>,
) -> Result<(), String> {
    let mut owner: BTreeMap<PartitionKey, &str> = BTreeMap::new();
    for (member, assignment) in assignments {
        for topic in assignment {
            for &partition in &topic.partitions {
                let key = (topic.topic.clone(), partition);
                if let Some(other) = owner.insert(key.clone(), member) {
                    return Err(format!(
                        "group {group}: {}/{} is owned by {other} and by {member}",
                        key.0, key.1
                    ));
                }
            }
        }
    }
    if assignments.is_empty() {
        return Ok(());
    }
    let owned: BTreeSet<PartitionKey> = owner.keys().cloned().collect();
    if &owned != partitions {
        let missing: Vec<_> = partitions.difference(&owned).collect();
        let extra: Vec<_> = owned.difference(partitions).collect();
        return Err(format!(
            "group {group}: after settling, unowned partitions {missing:?}, partitions not subscribed {extra:?} (assignments {assignments:?})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        ("t".into(), 0)
    }

    #[test]
    fn a_leader_ack_becomes_durable_only_under_a_later_sync_in_the_same_incarnation() {
        let mut ledger = Ledger::default();
        ledger.node_restarted(1);
        ledger
            .produce_acknowledged(&key(), 0, &[Bytes::from("a")], false, 1)
            .unwrap();
        assert_eq!(ledger.durable_records(), 0);
        ledger
            .produce_acknowledged(&key(), 1, &[Bytes::from("b")], true, 1)
            .unwrap();
        assert_eq!(ledger.durable_records(), 2);
        ledger
            .produce_acknowledged(&key(), 2, &[Bytes::from("c")], false, 1)
            .unwrap();
        ledger.node_restarted(2);
        ledger
            .produce_acknowledged(&key(), 2, &[Bytes::from("d")], true, 2)
            .unwrap();
        assert_eq!(ledger.durable.get(&key()).unwrap().get(&2).unwrap().0, "d");
    }

    #[test]
    fn reads_that_disagree_fail_with_the_offset() {
        let mut ledger = Ledger::default();
        ledger.node_restarted(1);
        ledger.record_read(&key(), 5, &Bytes::from("x"), 1).unwrap();
        let error = ledger
            .record_read(&key(), 5, &Bytes::from("y"), 1)
            .unwrap_err();
        assert!(error.contains("offset 5"), "{error}");
        // After a crash the unsynced record may be replaced.
        ledger.node_restarted(2);
        ledger.record_read(&key(), 5, &Bytes::from("y"), 2).unwrap();
    }

    #[test]
    fn a_commit_read_below_the_acknowledged_one_fails() {
        let mut ledger = Ledger::default();
        let group_key = ("g".to_string(), "t".to_string(), 0);
        ledger.commit_acknowledged(group_key.clone(), 10, 100);
        // A read sent before the acknowledgement may miss the commit.
        assert!(
            ledger
                .commit_read(group_key.clone(), Some(9), 0, 50, 150)
                .is_ok()
        );
        assert!(
            ledger
                .commit_read(group_key.clone(), Some(10), 0, 101, 150)
                .is_ok()
        );
        assert!(
            ledger
                .commit_read(group_key.clone(), Some(9), 0, 101, 160)
                .is_err()
        );
        assert!(ledger.commit_read(group_key, None, 0, 101, 160).is_err());
    }

    #[test]
    fn duplicates_and_gaps_are_found() {
        let mut audit = Audit::default();
        audit
            .metadata
            .topics
            .push(ledge_protocol::wire::TopicMetadata {
                name: "t".into(),
                partitions: vec![ledge_protocol::wire::PartitionMetadata {
                    partition: 0,
                    high_watermark: 3,
                    ..Default::default()
                }],
                ..Default::default()
            });
        audit.logs.insert(
            key(),
            vec![
                (0, Bytes::from("idem-1")),
                (1, Bytes::from("idem-1")),
                (3, Bytes::from("x")),
            ],
        );
        assert!(check_no_duplicates_under_idempotence(&audit).is_err());
        assert!(check_offsets_dense(&audit).is_err());
    }

    #[test]
    fn two_owners_or_an_unowned_partition_fail() {
        let topic = |partitions: Vec<u32>| TopicPartitions {
            topic: "t".into(),
            partitions,
        };
        let all: BTreeSet<PartitionKey> = [("t".into(), 0), ("t".into(), 1)].into();
        let mut assignments = BTreeMap::new();
        assignments.insert("a".to_string(), vec![topic(vec![0])]);
        assert!(check_one_owner_per_partition("g", &assignments, &all).is_err());
        assignments.insert("b".to_string(), vec![topic(vec![0, 1])]);
        assert!(check_one_owner_per_partition("g", &assignments, &all).is_err());
        assignments.insert("b".to_string(), vec![topic(vec![1])]);
        assert!(check_one_owner_per_partition("g", &assignments, &all).is_ok());
    }
}
