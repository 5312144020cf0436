//! What the admin console (`/` on the admin listener) shows, as `/v1/console`: the topics'
//! partitions held here with offsets and sizes, the consumer groups this node coordinates with
//! their members and lag per partition, and the transforms with their state and counters.
//! Copied out of the broker per request; rates are the page's (differences between polls).

use std::collections::BTreeMap;

use ledge_protocol::wire::{DescribeGroupsRequest, ListGroupsRequest};
use serde::Serialize;

use super::Broker;
use super::observe::Held;
use crate::storage::Disk;

/// `/v1/console`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConsoleView {
    /// When it was taken, milliseconds since the Unix epoch (the node's clock).
    pub time_ms: i64,
    /// Topics with a partition held here, sorted by name.
    pub topics: Vec<ConsoleTopic>,
    /// Groups this node coordinates, sorted by id.
    pub groups: Vec<ConsoleGroup>,
    /// Every transform, sorted by name.
    pub transforms: Vec<ConsoleTransform>,
}

/// A topic in [`ConsoleView`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleTopic {
    /// Its name.
    pub topic: String,
    /// Internal (`__consumer_offsets`, ...): named with two leading underscores.
    pub internal: bool,
    /// Its partitions held here, in order.
    pub partitions: Vec<ConsolePartition>,
}

/// A partition in [`ConsoleTopic`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsolePartition {
    /// Its number.
    pub partition: u32,
    /// First readable offset (`None` while offline).
    pub log_start_offset: Option<i64>,
    /// High watermark (`None` while offline).
    pub end_offset: Option<i64>,
    /// Bytes of its segments.
    pub size_bytes: u64,
    /// Offline here: could not be opened, or damaged.
    pub offline: bool,
    /// Why it is offline.
    pub reason: Option<String>,
}

/// A consumer group in [`ConsoleView`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleGroup {
    /// Its id.
    pub group: String,
    /// `Empty`, `Stable`, `Reconciling`, ...
    pub state: String,
    /// Its active members.
    pub members: Vec<ConsoleMember>,
    /// Records behind, over the partitions whose end is known here.
    pub lag: i64,
    /// Each partition with a committed offset or an owner, sorted.
    pub partitions: Vec<ConsoleGroupPartition>,
}

/// A member in [`ConsoleGroup`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleMember {
    /// Its member id.
    pub member_id: String,
    /// Its client id.
    pub client_id: String,
    /// Partitions it owns now.
    pub partitions: usize,
}

/// A partition in [`ConsoleGroup`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleGroupPartition {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// The partition's end, if held here.
    pub end_offset: Option<i64>,
    /// `end_offset - committed`; `None` without a committed offset or a local end.
    pub lag: Option<i64>,
    /// The member that owns it now.
    pub member: Option<String>,
}

/// A transform in [`ConsoleView`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ConsoleTransform {
    /// Its name.
    pub name: String,
    /// `running`, `paused` or `failed`.
    pub state: String,
    /// Input topic.
    pub input: String,
    /// Output topic.
    pub output: String,
    /// Records of the input not processed yet.
    pub lag: u64,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Records sent to the dead-letter topic (or skipped).
    pub dead_letters: u64,
    /// Why it stopped, or its last record error.
    pub last_error: Option<String>,
}

impl<D: Disk> Broker<D> {
    /// The console's view of this node now.
    pub async fn console_view(&self) -> ConsoleView {
        let mut topics: BTreeMap<String, ConsoleTopic> = BTreeMap::new();
        let mut ends: BTreeMap<(String, u32), (i64, i64)> = BTreeMap::new();
        for (topic, partition, state, log) in self.held_partitions() {
            let entry = topics.entry(topic.clone()).or_insert_with(|| ConsoleTopic {
                internal: topic.starts_with("__"),
                topic: topic.clone(),
                partitions: Vec::new(),
            });
            let described = match (state, log) {
                (Held::Online, Some(log)) => {
                    let (start, end) = (log.log_start_offset(), log.high_watermark());
                    ends.insert((topic, partition), (start, end));
                    ConsolePartition {
                        partition,
                        log_start_offset: Some(start),
                        end_offset: Some(end),
                        size_bytes: log.size_bytes(),
                        offline: false,
                        reason: None,
                    }
                }
                (Held::Offline(reason), _) => ConsolePartition {
                    partition,
                    offline: true,
                    reason: Some(reason),
                    ..ConsolePartition::default()
                },
                (Held::Online, None) => ConsolePartition {
                    partition,
                    offline: true,
                    ..ConsolePartition::default()
                },
            };
            entry.partitions.push(described);
        }
        for topic in topics.values_mut() {
            topic.partitions.sort_by_key(|p| p.partition);
        }

        let listed = self
            .groups
            .list_groups(ListGroupsRequest { states: Vec::new() });
        let ids: Vec<String> = listed.groups.into_iter().map(|g| g.group_id).collect();
        let described = self.groups.describe_groups(DescribeGroupsRequest {
            group_ids: ids.clone(),
        });
        let mut committed: BTreeMap<String, BTreeMap<(String, u32), i64>> = BTreeMap::new();
        for (group, topic, partition, offset) in self.groups.all_committed_offsets() {
            committed
                .entry(group)
                .or_default()
                .insert((topic, partition), offset);
        }
        let mut groups = Vec::with_capacity(described.groups.len());
        for group in described.groups {
            if group.error != ledge_protocol::wire::ErrorCode::None {
                continue;
            }
            let mut owners: BTreeMap<(String, u32), String> = BTreeMap::new();
            let members = group
                .members
                .iter()
                .map(|member| {
                    let mut owned = 0;
                    for assigned in &member.assignment {
                        for &partition in &assigned.partitions {
                            owned += 1;
                            owners.insert(
                                (assigned.topic.clone(), partition),
                                member.member_id.clone(),
                            );
                        }
                    }
                    ConsoleMember {
                        member_id: member.member_id.clone(),
                        client_id: member.client_id.clone(),
                        partitions: owned,
                    }
                })
                .collect();
            let offsets = committed.remove(&group.group_id).unwrap_or_default();
            let mut keys: Vec<(String, u32)> = offsets.keys().cloned().collect();
            keys.extend(owners.keys().cloned());
            keys.sort();
            keys.dedup();
            let partitions: Vec<ConsoleGroupPartition> = keys
                .into_iter()
                .map(|key| {
                    let committed = offsets.get(&key).copied();
                    let bounds = ends.get(&key).copied();
                    // Kafka's lag: unknown without a committed offset; an offset below the
                    // log start counts from the start.
                    let lag = bounds.zip(committed).map(|((start, end), committed)| {
                        end.saturating_sub(committed.max(start)).max(0)
                    });
                    ConsoleGroupPartition {
                        member: owners.get(&key).cloned(),
                        topic: key.0,
                        partition: key.1,
                        committed,
                        end_offset: bounds.map(|(_, end)| end),
                        lag,
                    }
                })
                .collect();
            groups.push(ConsoleGroup {
                lag: partitions.iter().filter_map(|p| p.lag).sum(),
                group: group.group_id,
                state: group.state,
                members,
                partitions,
            });
        }

        let transforms = self
            .transforms
            .describe(Vec::new())
            .await
            .into_iter()
            .flatten()
            .map(|transform| ConsoleTransform {
                name: transform.name,
                state: transform.state,
                input: transform.input,
                output: transform.output,
                lag: transform.lag,
                records_in: transform.records_in,
                records_out: transform.records_out,
                dead_letters: transform.records_dead,
                last_error: (!transform.last_error.is_empty()).then_some(transform.last_error),
            })
            .collect();

        ConsoleView {
            time_ms: self.clock.wall_time_ms(),
            topics: topics.into_values().collect(),
            groups,
            transforms,
        }
    }
}
