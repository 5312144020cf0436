//! `ledge top`: a live view of a node or cluster in the terminal (the admin console's view,
//! over the client protocol): health, topics with their produce rate, groups with their lag
//! per partition and a lag trend, transforms with their rates and dead letters.
//!
//! Each frame is one [`Snapshot`] taken with the admin API; rates are the difference between
//! two snapshots over the time between them, so the first frame has none.

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledge_client::{
    Admin, AdminError, Client, ClusterDescription, ErrorCode, GroupDescription, TopicDescription,
    TransformDescription,
};
use serde_json::json;

use crate::args::{Format, TopArgs};
use crate::output::{human_bytes, print, table};

/// How many frames of lag each group's trend shows.
const TREND_FRAMES: usize = 20;

/// What the node reported at one instant.
pub(crate) struct Snapshot {
    pub(crate) taken: Instant,
    pub(crate) time_ms: i64,
    pub(crate) cluster: ClusterDescription,
    pub(crate) topics: Vec<TopicDescription>,
    pub(crate) groups: Vec<GroupDescription>,
    pub(crate) transforms: Vec<TransformDescription>,
}

/// Lag sums of each group over the last [`TREND_FRAMES`] frames.
#[derive(Default)]
pub(crate) struct Trends {
    lag: BTreeMap<String, VecDeque<i64>>,
}

impl Trends {
    fn record(&mut self, snapshot: &Snapshot) {
        self.lag
            .retain(|group, _| snapshot.groups.iter().any(|g| &g.group_id == group));
        for group in &snapshot.groups {
            let history = self.lag.entry(group.group_id.clone()).or_default();
            if history.len() == TREND_FRAMES {
                history.pop_front();
            }
            history.push_back(group_lag(group));
        }
    }

    fn sparkline(&self, group: &str) -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let Some(history) = self.lag.get(group) else {
            return String::new();
        };
        let max = history.iter().copied().max().unwrap_or(0).max(1);
        history
            .iter()
            .map(|&lag| {
                let step = (lag.max(0) * (BARS.len() as i64 - 1) + max / 2) / max;
                BARS[usize::try_from(step).unwrap_or(0).min(BARS.len() - 1)]
            })
            .collect()
    }
}

pub(crate) async fn run(client: &Client, arguments: TopArgs) -> anyhow::Result<()> {
    let admin = Admin::new(client);
    let interval = Duration::from_millis(arguments.interval_ms);
    let frames = if arguments.once {
        Some(1)
    } else {
        arguments.iterations
    };
    let clear = arguments.format == Format::Table && std::io::stdout().is_terminal();
    let mut trends = Trends::default();
    let mut previous: Option<Snapshot> = None;
    let mut shown = 0u64;
    loop {
        let snapshot = take(&admin).await?;
        trends.record(&snapshot);
        let frame = match arguments.format {
            Format::Json => serde_json::to_string(&frame_json(previous.as_ref(), &snapshot))?,
            Format::Table => {
                let text = frame_text(previous.as_ref(), &snapshot, &trends, interval);
                if clear {
                    // Home and clear: the frame replaces the last one, as top(1) does.
                    format!("\x1b[H\x1b[2J{text}")
                } else {
                    text
                }
            }
        };
        print(&frame)?;
        shown += 1;
        if frames.is_some_and(|frames| shown >= frames) {
            return Ok(());
        }
        previous = Some(snapshot);
        tokio::time::sleep(interval).await;
    }
}

async fn take(admin: &Admin) -> anyhow::Result<Snapshot> {
    let cluster = admin
        .describe_cluster()
        .await
        .context("cannot describe the cluster")?;
    let topics = admin
        .describe_all_topics()
        .await
        .context("cannot describe topics")?;
    let listings = admin.list_groups().await.context("cannot list groups")?;
    let mut groups = Vec::with_capacity(listings.len());
    for listing in listings {
        match admin.describe_group(&listing.group_id).await {
            Ok(group) => groups.push(group),
            // Deleted between the listing and the description: gone from this frame.
            Err(AdminError::Group {
                code: ErrorCode::GroupIdNotFound,
                ..
            }) => {}
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot describe group {}", listing.group_id));
            }
        }
    }
    let transforms = admin
        .describe_transforms(Vec::new())
        .await
        .context("cannot list transforms")?;
    Ok(Snapshot {
        taken: crate::now(),
        time_ms: crate::wall_time_ms(),
        cluster,
        topics,
        groups,
        transforms,
    })
}

fn group_lag(group: &GroupDescription) -> i64 {
    group.partitions.iter().filter_map(|p| p.lag).sum()
}

fn topic_end_offsets(topic: &TopicDescription) -> i64 {
    topic.partitions.iter().map(|p| p.high_watermark).sum()
}

fn topic_size(topic: &TopicDescription) -> u64 {
    topic.partitions.iter().map(|p| p.size_bytes).sum()
}

/// Records per second between two snapshots, `None` on the first frame, for a new topic or
/// when the count went down (records deleted, topic recreated).
fn rate(previous: Option<(&Snapshot, i64)>, now: &Snapshot, count: i64) -> Option<f64> {
    let (before, old) = previous?;
    let seconds = now.taken.duration_since(before.taken).as_secs_f64();
    (seconds > 0.0 && count >= old).then(|| (count - old) as f64 / seconds)
}

fn topic_rate(
    previous: Option<&Snapshot>,
    now: &Snapshot,
    topic: &TopicDescription,
) -> Option<f64> {
    let before = previous.and_then(|snapshot| {
        let old = snapshot.topics.iter().find(|t| t.name == topic.name)?;
        Some((snapshot, topic_end_offsets(old)))
    });
    rate(before, now, topic_end_offsets(topic))
}

fn transform_rates(
    previous: Option<&Snapshot>,
    now: &Snapshot,
    transform: &TransformDescription,
) -> (Option<f64>, Option<f64>) {
    let old = previous.and_then(|snapshot| {
        let old = snapshot
            .transforms
            .iter()
            .find(|t| t.name == transform.name)?;
        Some((snapshot, old))
    });
    let count = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    (
        rate(
            old.map(|(s, t)| (s, count(t.records_in))),
            now,
            count(transform.records_in),
        ),
        rate(
            old.map(|(s, t)| (s, count(t.records_out))),
            now,
            count(transform.records_out),
        ),
    )
}

fn per_second(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |rate| format!("{rate:.1}"))
}

/// One frame for people: a health line, then a table per kind of thing.
pub(crate) fn frame_text(
    previous: Option<&Snapshot>,
    now: &Snapshot,
    trends: &Trends,
    interval: Duration,
) -> String {
    let cluster = &now.cluster;
    let alive = cluster.nodes.iter().filter(|node| node.alive).count();
    let partitions: usize = now.topics.iter().map(|t| t.partitions.len()).sum();
    let stored: u64 = now.topics.iter().map(topic_size).sum();
    let controller = cluster
        .controller
        .map_or_else(|| "none".to_string(), |id| id.to_string());
    let mut out = format!(
        "ledge top  {}  every {:.1} s (Ctrl-C to quit)\n\
         nodes {alive} alive of {}  controller {controller}  partitions {partitions}  \
         offline {}  under-replicated {}  stored {}\n",
        crate::output::format_time(now.time_ms),
        interval.as_secs_f64(),
        cluster.nodes.len(),
        cluster.offline.len(),
        cluster.under_replicated.len(),
        human_bytes(stored),
    );
    for partition in cluster.offline.iter().take(5) {
        out.push_str(&format!(
            "  OFFLINE {}-{}\n",
            partition.topic, partition.partition
        ));
    }

    out.push('\n');
    if now.topics.is_empty() {
        out.push_str("No topics.\n");
    } else {
        let mut topics = table(
            &[
                "TOPIC",
                "PARTITIONS",
                "END OFFSETS",
                "LOG START",
                "STORED",
                "RECORDS/S",
            ],
            &[1, 2, 3, 4, 5],
        );
        for topic in &now.topics {
            topics.add_row(vec![
                topic.name.clone(),
                topic.partitions.len().to_string(),
                topic_end_offsets(topic).to_string(),
                topic
                    .partitions
                    .iter()
                    .map(|p| p.log_start_offset)
                    .sum::<i64>()
                    .to_string(),
                human_bytes(topic_size(topic)),
                per_second(topic_rate(previous, now, topic)),
            ]);
        }
        out.push_str(&topics.to_string());
        out.push('\n');
    }

    out.push('\n');
    if now.groups.is_empty() {
        out.push_str("No consumer groups.\n");
    } else {
        let mut groups = table(
            &[
                "GROUP",
                "STATE",
                "MEMBERS",
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "END",
                "LAG",
                "LAG TREND",
            ],
            &[2, 4, 5, 6, 7],
        );
        for group in &now.groups {
            let trend = trends.sparkline(&group.group_id);
            if group.partitions.is_empty() {
                groups.add_row(vec![
                    group.group_id.clone(),
                    group.state.clone(),
                    group.members.len().to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "0".into(),
                    trend,
                ]);
                continue;
            }
            for (index, partition) in group.partitions.iter().enumerate() {
                let first = index == 0;
                let shown = |text: String| if first { text } else { String::new() };
                groups.add_row(vec![
                    shown(group.group_id.clone()),
                    shown(group.state.clone()),
                    shown(group.members.len().to_string()),
                    partition.partition.topic.clone(),
                    partition.partition.partition.to_string(),
                    partition
                        .committed
                        .as_ref()
                        .map_or_else(|| "-".to_string(), |c| c.offset.to_string()),
                    partition
                        .end_offset
                        .map_or_else(|| "-".to_string(), |end| end.to_string()),
                    partition
                        .lag
                        .map_or_else(|| "-".to_string(), |lag| lag.to_string()),
                    shown(trend.clone()),
                ]);
            }
        }
        out.push_str(&groups.to_string());
        out.push('\n');
    }

    out.push('\n');
    if now.transforms.is_empty() {
        out.push_str("No transforms.\n");
    } else {
        let mut transforms = table(
            &[
                "TRANSFORM",
                "STATE",
                "INPUT",
                "OUTPUT",
                "LAG",
                "IN/S",
                "OUT/S",
                "DEAD LETTERS",
                "LAST ERROR",
            ],
            &[4, 5, 6, 7],
        );
        for transform in &now.transforms {
            let (records_in, records_out) = transform_rates(previous, now, transform);
            transforms.add_row(vec![
                transform.name.clone(),
                transform.state.as_str().to_string(),
                transform.input.clone(),
                transform.output.clone(),
                transform.lag.to_string(),
                per_second(records_in),
                per_second(records_out),
                transform.records_dead.to_string(),
                transform.last_error.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&transforms.to_string());
        out.push('\n');
    }
    out
}

/// One frame for scripts: the same figures, one JSON object per frame.
pub(crate) fn frame_json(previous: Option<&Snapshot>, now: &Snapshot) -> serde_json::Value {
    let cluster = &now.cluster;
    let unhealthy = |partitions: &[ledge_client::ClusterPartitionDescription]| {
        partitions
            .iter()
            .map(|p| json!({ "topic": p.topic, "partition": p.partition }))
            .collect::<Vec<_>>()
    };
    json!({
        "time_ms": now.time_ms,
        "controller": cluster.controller,
        "nodes": cluster.nodes.iter().map(|node| json!({
            "node_id": node.node_id,
            "address": node.address,
            "alive": node.alive,
        })).collect::<Vec<_>>(),
        "offline": unhealthy(&cluster.offline),
        "under_replicated": unhealthy(&cluster.under_replicated),
        "topics": now.topics.iter().map(|topic| json!({
            "topic": topic.name,
            "partitions": topic.partitions.iter().map(|p| json!({
                "partition": p.partition,
                "log_start_offset": p.log_start_offset,
                "end_offset": p.high_watermark,
                "size_bytes": p.size_bytes,
            })).collect::<Vec<_>>(),
            "size_bytes": topic_size(topic),
            "records_per_second": topic_rate(previous, now, topic),
        })).collect::<Vec<_>>(),
        "groups": now.groups.iter().map(|group| json!({
            "group": group.group_id,
            "state": group.state,
            "members": group.members.len(),
            "lag": group_lag(group),
            "partitions": group.partitions.iter().map(|p| json!({
                "topic": p.partition.topic,
                "partition": p.partition.partition,
                "committed": p.committed.as_ref().map(|c| c.offset),
                "end_offset": p.end_offset,
                "lag": p.lag,
                "member": p.member_id,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "transforms": now.transforms.iter().map(|transform| {
            let (records_in, records_out) = transform_rates(previous, now, transform);
            json!({
                "transform": transform.name,
                "state": transform.state.as_str(),
                "input": transform.input,
                "output": transform.output,
                "lag": transform.lag,
                "records_in_per_second": records_in,
                "records_out_per_second": records_out,
                "dead_letters": transform.records_dead,
                "last_error": transform.last_error,
            })
        }).collect::<Vec<_>>(),
    })
}
