//! The broker's state as `/metrics` exports it, read at scrape time: plain data, so the
//! encoding is tested without a broker (`encode.rs`).

/// One partition this node holds online.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSample {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The high watermark: one past the last record consumers may read.
    pub end_offset: i64,
    /// The first offset readers may see.
    pub log_start_offset: i64,
    /// Bytes of its segments.
    pub size_bytes: u64,
}

/// One topic's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSample {
    /// The topic.
    pub topic: String,
    /// Records produced to it on this node.
    pub produced_records: u64,
    /// Bytes produced to it.
    pub produced_bytes: u64,
    /// Bytes fetched from it.
    pub fetched_bytes: u64,
}

/// A group's lag on one partition: the partition's end offset minus the group's committed
/// offset (never below zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLagSample {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Records behind.
    pub lag: u64,
}

/// A transform running on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransformSample {
    /// Its name.
    pub transform: String,
    /// Records of its input not yet processed, over the partitions it runs here.
    pub lag: u64,
    /// Records it sent to its dead-letter topic since it started here.
    pub dead_letters: u64,
}

/// The node's state at one scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Partitions held online, sorted by topic and partition.
    pub partitions: Vec<PartitionSample>,
    /// Partitions held but offline (could not be opened, or damaged).
    pub partitions_offline: u64,
    /// Topics' counters, sorted by topic.
    pub topics: Vec<TopicSample>,
    /// Lag of every group with a committed offset on a partition held here, sorted.
    pub group_lag: Vec<GroupLagSample>,
    /// Bytes of every partition log.
    pub disk_usage_bytes: u64,
    /// Size of the data directory's filesystem, if statvfs answered.
    pub disk_capacity_bytes: Option<u64>,
    /// Bytes of it available to the node, if statvfs answered.
    pub disk_available_bytes: Option<u64>,
    /// The disk guard refuses produce (`limits.disk_usage_*`).
    pub disk_full: bool,
    /// Partitions this node leads whose ISR is smaller than their replica set.
    pub under_replicated_partitions: u64,
    /// Partitions this node leads whose ISR is smaller than `min.insync.replicas`.
    pub under_min_isr_partitions: u64,
    /// This node is the active controller.
    pub controller_active: bool,
    /// Transforms running here, sorted.
    pub transforms: Vec<TransformSample>,
}
