//! Where each input partition of a transform runs, and its figures there.
//!
//! In a cluster a transform's task for an input partition runs on that partition's leader,
//! and only that node has its position, lag and counters. The SDK asks: metadata names each
//! partition's leader, and each leader is asked once (a DescribeTransforms to that node, for
//! every transform described) for the partitions it runs. The SDK, not the node, fans out:
//! it already routes requests to leaders, a node would need a peer request kind and its own
//! timeouts for the same thing, and a node that does not answer is then just shown as such
//! in the answer rather than failing or delaying the node asked. On a node alone, its own
//! answer covers every partition.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ledge_protocol::wire::{self, ApiKey, ErrorCode, Request, Response};

use super::{Admin, TransformDescription, TransformState, metadata};
use crate::connection::unexpected;
use crate::error::RequestError;

/// One input partition of a transform, from [`Admin::describe_transforms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformPartition {
    /// The input partition.
    pub partition: u32,
    /// The node that runs it (the partition's leader); `None` while it has no leader.
    pub node: Option<u32>,
    /// What that node says of it.
    pub status: TransformPartitionStatus,
}

/// What the node running a transform's input partition says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransformPartitionStatus {
    /// The node runs it; the counters count since it started running it there.
    Running {
        /// Next input offset to process.
        position: i64,
        /// Records of the partition not processed yet.
        lag: u64,
        /// Records read from it.
        records_in: u64,
        /// Records written to the output from it.
        records_out: u64,
        /// Records of it sent to the dead-letter topic or skipped.
        records_dead: u64,
        /// Time spent inside the module on it.
        busy: Duration,
    },
    /// The node answered but runs no task for it: the transform is paused or failed, or the
    /// leadership has just moved and the task is starting.
    NotRunning,
    /// The node did not answer (down, or unreachable); why.
    Unreachable(String),
    /// The partition has no leader now, so no node runs it.
    NoLeader,
}

impl TransformPartitionStatus {
    /// `running`, `not running`, `unreachable` or `no leader`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Running { .. } => "running",
            Self::NotRunning => "not running",
            Self::Unreachable(_) => "unreachable",
            Self::NoLeader => "no leader",
        }
    }
}

/// What one node reported of a transform: its state and last error there, and the
/// partitions it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeReport {
    state: String,
    last_error: String,
    partitions: Vec<wire::TransformPartitionStatus>,
}

/// What one node reported, by transform name.
type NodeAnswer = Result<BTreeMap<String, NodeReport>, String>;

impl Admin {
    /// Fills each transform's `partitions` from the leaders of its input partitions, and in
    /// a cluster its totals as their sums. `own` holds the partitions the node first asked
    /// reported, used as they are on a node alone.
    pub(super) async fn locate_transform_partitions(
        &self,
        described: &mut [TransformDescription],
        own: BTreeMap<String, Vec<wire::TransformPartitionStatus>>,
    ) -> Result<(), RequestError> {
        let mut inputs: Vec<String> = described
            .iter()
            .map(|transform| transform.input.clone())
            .collect();
        inputs.sort();
        inputs.dedup();
        if inputs.is_empty() {
            return Ok(());
        }
        let metadata = metadata(&self.client, Some(inputs)).await?;
        let alone = metadata.nodes.len() <= 1;
        let leaders: BTreeMap<&str, Vec<Option<u32>>> = metadata
            .topics
            .iter()
            .filter(|topic| topic.error == ErrorCode::None)
            .map(|topic| {
                let mut leaders = vec![None; topic.partitions.len()];
                for partition in &topic.partitions {
                    if let Some(slot) = usize::try_from(partition.partition)
                        .ok()
                        .and_then(|index| leaders.get_mut(index))
                    {
                        *slot = if alone {
                            Some(metadata.node_id)
                        } else {
                            partition.leader
                        };
                    }
                }
                (topic.name.as_str(), leaders)
            })
            .collect();
        let mut answers: BTreeMap<u32, NodeAnswer> = BTreeMap::new();
        if alone {
            let own = own
                .into_iter()
                .map(|(name, partitions)| {
                    let report = NodeReport {
                        state: String::new(),
                        last_error: String::new(),
                        partitions,
                    };
                    (name, report)
                })
                .collect();
            answers.insert(metadata.node_id, Ok(own));
        } else {
            let names: Vec<String> = described
                .iter()
                .map(|transform| transform.name.clone())
                .collect();
            let asked: Vec<u32> = {
                let mut asked: Vec<u32> = leaders.values().flatten().flatten().copied().collect();
                asked.sort_unstable();
                asked.dedup();
                asked
            };
            let addresses: BTreeMap<u32, &str> = metadata
                .nodes
                .iter()
                .map(|node| (node.node_id, node.address.as_str()))
                .collect();
            let requests = asked.into_iter().map(|node_id| {
                let address = addresses.get(&node_id).copied();
                let names = names.clone();
                async move { (node_id, self.node_transforms(node_id, address, names).await) }
            });
            answers.extend(futures_util::future::join_all(requests).await);
        }
        for transform in described.iter_mut() {
            let Some(leaders) = leaders.get(transform.input.as_str()) else {
                continue;
            };
            transform.partitions = leaders
                .iter()
                .enumerate()
                .map(|(partition, leader)| {
                    let partition = u32::try_from(partition).unwrap_or(u32::MAX);
                    let status = match leader.map(|node| (node, answers.get(&node))) {
                        None => TransformPartitionStatus::NoLeader,
                        Some((node, None)) => TransformPartitionStatus::Unreachable(format!(
                            "node {node} was not asked"
                        )),
                        Some((_, Some(Err(error)))) => {
                            TransformPartitionStatus::Unreachable(error.clone())
                        }
                        Some((_, Some(Ok(reported)))) => reported
                            .get(&transform.name)
                            .and_then(|report| {
                                report
                                    .partitions
                                    .iter()
                                    .find(|entry| entry.partition == partition)
                            })
                            .map_or(TransformPartitionStatus::NotRunning, |entry| {
                                TransformPartitionStatus::Running {
                                    position: entry.position,
                                    lag: entry.lag,
                                    records_in: entry.records_in,
                                    records_out: entry.records_out,
                                    records_dead: entry.records_dead,
                                    busy: Duration::from_micros(entry.busy_us),
                                }
                            }),
                    };
                    TransformPartition {
                        partition,
                        node: *leader,
                        status,
                    }
                })
                .collect();
            if !alone {
                sum_over_partitions(transform);
                let mut running_on: Vec<u32> = leaders.iter().flatten().copied().collect();
                running_on.sort_unstable();
                running_on.dedup();
                let reports: Vec<(u32, &NodeReport)> = running_on
                    .into_iter()
                    .filter_map(|node| {
                        let report = answers.get(&node)?.as_ref().ok()?.get(&transform.name)?;
                        Some((node, report))
                    })
                    .collect();
                merge_node_states(transform, &reports);
            }
        }
        Ok(())
    }

    /// The partitions node `node_id` (at `address`) runs, per transform; an error text if
    /// it cannot be asked or does not answer.
    async fn node_transforms(
        &self,
        node_id: u32,
        address: Option<&str>,
        names: Vec<String>,
    ) -> NodeAnswer {
        let Some(address) = address else {
            return Err(format!(
                "node {node_id} is not alive (not among the cluster's live nodes)"
            ));
        };
        let node: SocketAddr = address
            .parse()
            .map_err(|_| format!("node {node_id}'s address {address:?} is not host:port"))?;
        let request = Request::DescribeTransforms(wire::DescribeTransformsRequest { names });
        match self.client.request_to(node, &request, Duration::ZERO).await {
            Ok(Response::DescribeTransforms(response)) => Ok(response
                .transforms
                .into_iter()
                .map(|transform| {
                    let report = NodeReport {
                        state: transform.state,
                        last_error: transform.last_error,
                        partitions: transform.partitions,
                    };
                    (transform.name, report)
                })
                .collect()),
            Ok(other) => Err(unexpected(ApiKey::DescribeTransforms, &other).to_string()),
            Err(error) => Err(format!("node {node_id} did not answer: {error}")),
        }
    }
}

/// In a cluster a transform stops on the node whose task failed (`on_error = stop`), not on
/// the node asked: the state shown is the worst the leaders of its input partitions report
/// (failed, then paused, then running), and its last error theirs, naming the node. A
/// leader that did not answer changes nothing; the node asked's word stays when no leader
/// reports worse.
fn merge_node_states(transform: &mut TransformDescription, reports: &[(u32, &NodeReport)]) {
    let severity = |state: TransformState| match state {
        TransformState::Failed => 2,
        TransformState::Paused => 1,
        TransformState::Running => 0,
    };
    let worst = reports
        .iter()
        .filter_map(|(node, report)| {
            let state: TransformState = report.state.parse().ok()?;
            Some((severity(state), *node, state, report))
        })
        .max_by_key(|(severity, node, ..)| (*severity, std::cmp::Reverse(*node)));
    let Some((worst_severity, node, state, report)) = worst else {
        return;
    };
    if worst_severity > severity(transform.state) {
        transform.state = state;
        transform.last_error =
            (!report.last_error.is_empty()).then(|| format!("node {node}: {}", report.last_error));
    } else if worst_severity == severity(transform.state)
        && transform.last_error.is_none()
        && !report.last_error.is_empty()
    {
        transform.last_error = Some(format!("node {node}: {}", report.last_error));
    }
}

/// In a cluster the node asked first knows only its own tasks: the counters become the sums
/// over the partitions whose leader runs them, and each such partition's position is its
/// leader's. The lag is the sum too when every partition runs; otherwise the node asked
/// keeps its own count (from its copies of the partitions), which covers the ones not
/// running. With no partition running (a paused transform), the node asked's figures stay.
fn sum_over_partitions(transform: &mut TransformDescription) {
    let mut records_in = 0u64;
    let mut records_out = 0u64;
    let mut records_dead = 0u64;
    let mut lag = 0u64;
    let mut busy = Duration::ZERO;
    let mut running = 0usize;
    for entry in &transform.partitions {
        if let TransformPartitionStatus::Running {
            position,
            lag: partition_lag,
            records_in: partition_in,
            records_out: partition_out,
            records_dead: partition_dead,
            busy: partition_busy,
        } = &entry.status
        {
            running += 1;
            records_in = records_in.saturating_add(*partition_in);
            records_out = records_out.saturating_add(*partition_out);
            records_dead = records_dead.saturating_add(*partition_dead);
            lag = lag.saturating_add(*partition_lag);
            busy = busy.saturating_add(*partition_busy);
            transform.positions.insert(entry.partition, *position);
        }
    }
    if running == 0 {
        return;
    }
    transform.records_in = records_in;
    transform.records_out = records_out;
    transform.records_dead = records_dead;
    transform.busy = busy;
    if running == transform.partitions.len() {
        transform.lag = lag;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{OnError, PluginKind};

    fn transform(partitions: Vec<TransformPartitionStatus>) -> TransformDescription {
        TransformDescription {
            name: "keep".into(),
            kind: PluginKind::Filter,
            input: "raw".into(),
            output: "kept".into(),
            dead_letter_topic: String::new(),
            on_error: OnError::Skip,
            module_hash: String::new(),
            params: Vec::new(),
            version: 1,
            state: TransformState::Running,
            last_error: None,
            records_in: 100,
            records_out: 90,
            records_dead: 10,
            lag: 50,
            busy: Duration::from_micros(7),
            positions: BTreeMap::from([(0, 1), (1, 1)]),
            partitions: partitions
                .into_iter()
                .enumerate()
                .map(|(partition, status)| TransformPartition {
                    partition: partition as u32,
                    node: Some(partition as u32 + 1),
                    status,
                })
                .collect(),
            state_partitions: 0,
            state_partitions_ready: 0,
            state_bytes: 0,
            restore_records: 0,
            join: None,
            window: None,
            windows_open: 0,
            records_late: 0,
        }
    }

    fn running(position: i64, lag: u64, records_in: u64) -> TransformPartitionStatus {
        TransformPartitionStatus::Running {
            position,
            lag,
            records_in,
            records_out: records_in,
            records_dead: 0,
            busy: Duration::from_micros(records_in),
        }
    }

    /// Goal: with every partition running, the totals are the sums over the leaders and
    /// the positions theirs; with one unreachable, the counters are the sums over those
    /// that answered and the lag stays the node asked's; with none running (paused), the
    /// node asked's figures stay whole.
    #[test]
    fn totals_are_the_sums_over_the_partitions_that_answer() {
        let mut all = transform(vec![running(5, 2, 3), running(8, 1, 4)]);
        sum_over_partitions(&mut all);
        assert_eq!((all.records_in, all.records_out, all.lag), (7, 7, 3));
        assert_eq!(all.busy, Duration::from_micros(7));
        assert_eq!(all.positions, BTreeMap::from([(0, 5), (1, 8)]));

        let mut one_down = transform(vec![
            running(5, 2, 3),
            TransformPartitionStatus::Unreachable("down".into()),
        ]);
        sum_over_partitions(&mut one_down);
        assert_eq!((one_down.records_in, one_down.lag), (3, 50));
        assert_eq!(one_down.positions, BTreeMap::from([(0, 5), (1, 1)]));

        let mut paused = transform(vec![
            TransformPartitionStatus::NotRunning,
            TransformPartitionStatus::NotRunning,
        ]);
        sum_over_partitions(&mut paused);
        assert_eq!((paused.records_in, paused.lag), (100, 50));
    }

    fn report(state: &str, last_error: &str) -> NodeReport {
        NodeReport {
            state: state.into(),
            last_error: last_error.into(),
            partitions: Vec::new(),
        }
    }

    /// Goal: in a cluster the state shown is the worst any leader of the input reports,
    /// with that node's error named; the node asked's word stays when no leader reports
    /// worse, and an unknown state changes nothing.
    #[test]
    fn the_state_shown_is_the_worst_a_leader_reports() {
        let failed = report("failed", "module trapped at offset 7");
        let paused = report("paused", "paused by an operator");
        let running = report("running", "");
        let mut one_failed = transform(Vec::new());
        merge_node_states(
            &mut one_failed,
            &[(1, &running), (3, &failed), (2, &paused)],
        );
        assert_eq!(one_failed.state, TransformState::Failed);
        assert_eq!(
            one_failed.last_error.as_deref(),
            Some("node 3: module trapped at offset 7")
        );

        let mut all_running = transform(Vec::new());
        merge_node_states(&mut all_running, &[(1, &running), (2, &running)]);
        assert_eq!(
            (all_running.state, all_running.last_error),
            (TransformState::Running, None)
        );

        let mut asked_paused = transform(Vec::new());
        asked_paused.state = TransformState::Paused;
        asked_paused.last_error = Some("paused by an operator".into());
        merge_node_states(
            &mut asked_paused,
            &[(1, &running), (2, &report("bogus", "x"))],
        );
        assert_eq!(asked_paused.state, TransformState::Paused);
        assert_eq!(
            asked_paused.last_error.as_deref(),
            Some("paused by an operator")
        );

        let mut record_error = transform(Vec::new());
        merge_node_states(
            &mut record_error,
            &[(2, &report("running", "bad record at 9"))],
        );
        assert_eq!(
            (record_error.state, record_error.last_error.as_deref()),
            (TransformState::Running, Some("node 2: bad record at 9"))
        );
    }
}
