//! Server-side partition assignors (pure): range, round-robin and cooperative-sticky.
//!
//! Input: the members (sorted ids) with the topics each subscribes to, the partition count
//! of every topic, and (for sticky) the previous target. Output: member → partitions.
//! Invariants, asserted and property-tested: every partition of a subscribed topic goes to
//! exactly one member that subscribes to it; nothing else is assigned.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition.
pub type TopicPartition = (String, u32);

/// Which assignor a group uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's RangeAssignor: per topic, contiguous ranges in member order.
    Range,
    /// Kafka's RoundRobinAssignor: all partitions dealt in turn.
    RoundRobin,
    /// Balanced and sticky: members keep what they had; only the excess moves.
    CooperativeSticky,
}

impl Assignor {
    /// Parses an assignor name as clients send it.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Self::Range),
            "round-robin" | "roundrobin" => Some(Self::RoundRobin),
            "cooperative-sticky" | "uniform" => Some(Self::CooperativeSticky),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "round-robin",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// Computes a target assignment.
    pub fn assign(
        self,
        subscriptions: &BTreeMap<String, BTreeSet<String>>,
        partition_counts: &BTreeMap<String, u32>,
        previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
    ) -> BTreeMap<String, BTreeSet<TopicPartition>> {
        let assignment = match self {
            Self::Range => range(subscriptions, partition_counts),
            Self::RoundRobin => round_robin(subscriptions, partition_counts),
            Self::CooperativeSticky => sticky(subscriptions, partition_counts, previous),
        };
        check_assignment(subscriptions, partition_counts, &assignment);
        assignment
    }
}

fn empty_assignment(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    subscriptions
        .keys()
        .map(|member| (member.clone(), BTreeSet::new()))
        .collect()
}

fn subscribers<'a>(
    subscriptions: &'a BTreeMap<String, BTreeSet<String>>,
    topic: &str,
) -> Vec<&'a String> {
    subscriptions
        .iter()
        .filter(|(_, topics)| topics.contains(topic))
        .map(|(member, _)| member)
        .collect()
}

fn range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut assignment = empty_assignment(subscriptions);
    for (topic, &count) in partition_counts {
        let members = subscribers(subscriptions, topic);
        if members.is_empty() {
            continue;
        }
        let per_member = count as usize / members.len();
        let extra = count as usize % members.len();
        let mut next = 0u32;
        for (index, member) in members.iter().enumerate() {
            let take = per_member + usize::from(index < extra);
            let owned = assignment.entry((*member).clone()).or_default();
            for _ in 0..take {
                owned.insert((topic.clone(), next));
                next += 1;
            }
        }
    }
    assignment
}

fn round_robin(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut assignment = empty_assignment(subscriptions);
    let members: Vec<&String> = subscriptions.keys().collect();
    if members.is_empty() {
        return assignment;
    }
    let mut cursor = 0usize;
    for (topic, &count) in partition_counts {
        for partition in 0..count {
            // Deal to the next member (in turn) that subscribes to this topic.
            for step in 0..members.len() {
                let member = members[(cursor + step) % members.len()];
                if subscriptions
                    .get(member)
                    .is_some_and(|topics| topics.contains(topic))
                {
                    assignment
                        .entry(member.clone())
                        .or_default()
                        .insert((topic.clone(), partition));
                    cursor = (cursor + step + 1) % members.len();
                    break;
                }
            }
        }
    }
    assignment
}

/// Keeps every member's previous partitions that it still may own, then gives unowned
/// partitions to the least loaded eligible member, then moves partitions from members
/// above the balanced count to eligible members below it.
fn sticky(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut assignment = empty_assignment(subscriptions);
    let mut taken = BTreeSet::new();
    for (member, partitions) in previous {
        let Some(topics) = subscriptions.get(member) else {
            continue;
        };
        for (topic, partition) in partitions {
            let exists = partition_counts
                .get(topic)
                .is_some_and(|count| partition < count);
            if exists && topics.contains(topic) && taken.insert((topic.clone(), *partition)) {
                assignment
                    .entry(member.clone())
                    .or_default()
                    .insert((topic.clone(), *partition));
            }
        }
    }
    for (topic, &count) in partition_counts {
        for partition in 0..count {
            let key = (topic.clone(), partition);
            if taken.contains(&key) {
                continue;
            }
            let least = subscribers(subscriptions, topic)
                .into_iter()
                .min_by_key(|member| {
                    (
                        assignment.get(*member).map_or(0, BTreeSet::len),
                        (*member).clone(),
                    )
                });
            if let Some(member) = least {
                assignment
                    .entry(member.clone())
                    .or_default()
                    .insert(key.clone());
                taken.insert(key);
            }
        }
    }
    // Balance: move one partition at a time from the most to the least loaded member that
    // may take it, while that narrows the spread.
    let bound = partition_counts
        .values()
        .map(|count| *count as usize)
        .sum::<usize>()
        + 1;
    for _ in 0..bound {
        let mut moved = false;
        let loads: Vec<(String, usize)> = assignment
            .iter()
            .map(|(member, partitions)| (member.clone(), partitions.len()))
            .collect();
        let Some((heavy, heavy_load)) = loads
            .iter()
            .max_by_key(|(member, load)| (*load, std::cmp::Reverse(member.clone())))
            .cloned()
        else {
            break;
        };
        let mut receivers: Vec<&(String, usize)> = loads
            .iter()
            .filter(|(_, load)| *load + 1 < heavy_load)
            .collect();
        receivers.sort_by_key(|(member, load)| (*load, member.clone()));
        'search: for (receiver, _) in receivers {
            let candidates: Vec<TopicPartition> = assignment
                .get(&heavy)
                .map(|partitions| partitions.iter().cloned().collect())
                .unwrap_or_default();
            for candidate in candidates.into_iter().rev() {
                if subscriptions
                    .get(receiver)
                    .is_some_and(|topics| topics.contains(&candidate.0))
                {
                    if let Some(partitions) = assignment.get_mut(&heavy) {
                        partitions.remove(&candidate);
                    }
                    assignment
                        .entry(receiver.clone())
                        .or_default()
                        .insert(candidate);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            break;
        }
    }
    assignment
}

/// Asserts the assignor invariants (a broken one is a bug, not an input error).
fn check_assignment(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    partition_counts: &BTreeMap<String, u32>,
    assignment: &BTreeMap<String, BTreeSet<TopicPartition>>,
) {
    let mut seen = BTreeSet::new();
    for (member, partitions) in assignment {
        let topics = subscriptions
            .get(member)
            .expect("assignments go to members only");
        for partition in partitions {
            assert!(
                topics.contains(&partition.0),
                "{member} got {partition:?} without subscribing"
            );
            assert!(
                seen.insert(partition.clone()),
                "{partition:?} assigned twice"
            );
        }
    }
    for (topic, &count) in partition_counts {
        if subscriptions.values().any(|topics| topics.contains(topic)) {
            for partition in 0..count {
                assert!(
                    seen.contains(&(topic.clone(), partition)),
                    "{topic}-{partition} left unassigned"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn setup(
        members: usize,
        topics: &[(&str, u32)],
        all: bool,
    ) -> (BTreeMap<String, BTreeSet<String>>, BTreeMap<String, u32>) {
        let counts: BTreeMap<String, u32> = topics
            .iter()
            .map(|(name, count)| (name.to_string(), *count))
            .collect();
        let subscriptions = (0..members)
            .map(|member| {
                let subscribed = topics
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| all || (member + index) % 2 == 0)
                    .map(|(_, (name, _))| name.to_string())
                    .collect();
                (format!("member-{member:02}"), subscribed)
            })
            .collect();
        (subscriptions, counts)
    }

    #[test]
    fn range_matches_kafka() {
        let (subscriptions, counts) = setup(2, &[("t", 5)], true);
        let assignment = Assignor::Range.assign(&subscriptions, &counts, &BTreeMap::new());
        let first: Vec<u32> = assignment["member-00"]
            .iter()
            .map(|(_, partition)| *partition)
            .collect();
        assert_eq!(first, [0, 1, 2]);
    }

    #[test]
    fn sticky_moves_only_what_balance_requires() {
        let (mut subscriptions, counts) = setup(2, &[("t", 6)], true);
        let before = Assignor::CooperativeSticky.assign(&subscriptions, &counts, &BTreeMap::new());
        subscriptions.insert("member-02".into(), BTreeSet::from(["t".to_string()]));
        let after = Assignor::CooperativeSticky.assign(&subscriptions, &counts, &before);
        assert_eq!(
            after.values().map(BTreeSet::len).collect::<Vec<_>>(),
            [2, 2, 2]
        );
        for member in ["member-00", "member-01"] {
            assert!(
                after[member].is_subset(&before[member]),
                "{member} kept its partitions"
            );
        }
    }

    proptest! {
        // Goal: for any members, subscriptions and partition counts, every assignor assigns
        // each subscribed partition exactly once (the invariant check inside `assign`
        // panics otherwise), and with equal subscriptions the load differs by at most one.
        #[test]
        fn every_partition_exactly_once(
            members in 1usize..12,
            topics in prop::collection::vec(1u32..20, 1..5),
            all in any::<bool>(),
            churn in 0usize..12,
        ) {
            let names: Vec<String> = (0..topics.len()).map(|index| format!("topic-{index}")).collect();
            let spec: Vec<(&str, u32)> = names.iter().map(String::as_str).zip(topics.iter().copied()).collect();
            let (subscriptions, counts) = setup(members, &spec, all);
            for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::CooperativeSticky] {
                let first = assignor.assign(&subscriptions, &counts, &BTreeMap::new());
                let mut changed = subscriptions.clone();
                changed.remove(&format!("member-{:02}", churn % members));
                changed.insert("member-new".into(), names.iter().cloned().collect());
                let second = assignor.assign(&changed, &counts, &first);
                if all && assignor != Assignor::Range {
                    let loads: Vec<usize> = second.values().map(BTreeSet::len).collect();
                    let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
                    prop_assert!(spread <= 1, "{assignor:?} unbalanced: {loads:?}");
                }
            }
        }
    }
}
