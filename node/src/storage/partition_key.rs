//! Partition identity and its directory name (`<topic>-<partition>`, as Kafka names it).
//! The broker's topic registry owns the map from partition to log (`broker/registry/`).

/// A partition: topic name and partition number. Its directory is `<topic>-<partition>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The topic.
    pub topic: String,
    /// The partition number within the topic.
    pub partition: u32,
}

impl PartitionKey {
    /// The directory name, `<topic>-<partition>` as in Kafka.
    pub fn directory_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; `None` if it is not `<topic>-<partition>`.
    pub fn from_directory_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty() {
            return None;
        }
        Some(Self {
            topic: topic.to_string(),
            partition: partition.parse().ok()?,
        })
    }
}

impl std::fmt::Display for PartitionKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}
