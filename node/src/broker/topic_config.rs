//! Topic configs: Kafka's keys, typed, validated, with documented defaults (pure).
//!
//! A topic stores only its overrides (key → text, as the user wrote them); the effective
//! config is the node's defaults with those applied. Unknown keys and bad values are
//! refused with a message naming the key, the value and what is allowed.

use std::collections::BTreeMap;
use std::time::Duration;

use ledge_protocol::{BatchHeader, Compression, NO_TIMESTAMP};

use crate::storage::LogConfig;

/// Every topic config key Ledge knows, sorted.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "index.interval.bytes",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "partitioner.module",
    "produce.filter.module",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
];

/// `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Delete old segments by retention.
    Delete,
    /// Keep the last record per key.
    Compact,
    /// Both.
    CompactAndDelete,
}

/// `compression.type`: what the broker stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicCompression {
    /// Keep the producer's codec (no recompression).
    Producer,
    /// Recompress batches that use another codec to this one.
    Codec(Compression),
}

/// `message.timestamp.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    CreateTime,
    /// The broker stamps its wall clock at append.
    LogAppendTime,
}

/// The effective configuration of a topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicConfig {
    /// `delete.retention.ms` (default 1 day): how long compaction keeps tombstones.
    pub delete_retention: Duration,
    /// `max.compaction.lag.ms` (default none): a dirty segment older than this is compacted
    /// whatever the dirty ratio.
    pub max_compaction_lag: Option<Duration>,
    /// `min.cleanable.dirty.ratio` (default 0.5): compact when this share of the sealed
    /// bytes is not yet compacted.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (default 0): segments with records younger than this are not
    /// compacted yet.
    pub min_compaction_lag: Duration,
    /// `cleanup.policy` (default `delete`).
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type` (default `producer`).
    pub compression: TopicCompression,
    /// `index.interval.bytes` (default 4096).
    pub index_interval_bytes: u32,
    /// `max.message.bytes` (default 1,048,588): the largest batch.
    pub max_message_bytes: u64,
    /// `message.timestamp.type` (default `CreateTime`).
    pub timestamp_type: TimestampType,
    /// `message.timestamp.after.max.ms` (default 1 hour, Kafka 4's default; `None`:
    /// unlimited, written as 9223372036854775807): how far past the node's clock a create-time
    /// batch's largest timestamp may be. It bounds how long one record can keep a segment
    /// from time retention (see `storage::retention`).
    pub timestamp_after_max: Option<Duration>,
    /// `message.timestamp.before.max.ms` (default unlimited, as Kafka): how far before the
    /// node's clock a create-time batch's first timestamp may be.
    pub timestamp_before_max: Option<Duration>,
    /// `min.insync.replicas` (default 1; a single node has one replica).
    pub min_insync_replicas: u32,
    /// `retention.bytes` per partition (default -1: unlimited); enforced by retention.
    pub retention_bytes: Option<u64>,
    /// `retention.ms` (default 7 days; -1: unlimited); enforced by retention.
    pub retention: Option<Duration>,
    /// `segment.bytes` (default 128 MiB).
    pub segment_bytes: u64,
    /// `segment.ms` (default 7 days).
    pub segment_age: Duration,
    /// `partitioner.module` (default none): a named partitioner module; producers that
    /// leave the partition to the node send records to `NODE_PARTITIONED`.
    pub partitioner_module: Option<String>,
    /// `produce.filter.module` (default none): a named filter, map or filter_map module
    /// every produced batch runs through before it is appended; a record it fails refuses
    /// the batch with `InvalidRecord`.
    pub produce_filter_module: Option<String>,
    /// The overrides this was built from.
    pub overrides: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            delete_retention: Duration::from_millis(86_400_000),
            max_compaction_lag: None,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag: Duration::ZERO,
            cleanup_policy: CleanupPolicy::Delete,
            compression: TopicCompression::Producer,
            index_interval_bytes: log.index_interval_bytes,
            max_message_bytes: log.batch_bytes_max,
            timestamp_type: TimestampType::CreateTime,
            timestamp_after_max: Some(TIMESTAMP_AFTER_MAX_DEFAULT),
            timestamp_before_max: None,
            min_insync_replicas: 1,
            retention_bytes: None,
            retention: Some(Duration::from_millis(604_800_000)),
            segment_bytes: log.segment_bytes,
            segment_age: log.segment_age,
            partitioner_module: None,
            produce_filter_module: None,
            overrides: BTreeMap::new(),
        }
    }
}

/// Default of `message.timestamp.after.max.ms`: Kafka 4's (KIP-1030).
pub const TIMESTAMP_AFTER_MAX_DEFAULT: Duration = Duration::from_millis(3_600_000);

/// Why a topic config key or value is refused; the message names the key and the value.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TopicConfigError {
    /// Not one of [`KEYS`].
    #[error("unknown topic config {key:?}; known keys: {}", KEYS.join(", "))]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// Not an integer.
    #[error("{key}: {value:?} is not an integer")]
    NotInteger {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// Not a number.
    #[error("{key}: {value:?} is not a number")]
    NotNumber {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// An integer outside the key's range.
    #[error("{key}: {number} is outside {minimum}..={maximum}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value given.
        number: i64,
        /// Smallest allowed.
        minimum: i64,
        /// Largest allowed.
        maximum: i64,
    },
    /// A ratio outside 0..=1.
    #[error("{key}: {ratio} is outside 0..=1")]
    RatioOutOfRange {
        /// The key.
        key: String,
        /// The value given.
        ratio: f64,
    },
    /// Neither -1 (unlimited) nor a count.
    #[error("{key}: {number} must be -1 (unlimited) or at least 0")]
    NotUnlimitedOrCount {
        /// The key.
        key: String,
        /// The value given.
        number: i64,
    },
    /// Not one of the key's words.
    #[error("{key}: {value:?} must be {allowed}")]
    NotAChoice {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is allowed, in words.
        allowed: &'static str,
    },
    /// `min.insync.replicas` not from 1 to 65535 (its bound by the replication factor is
    /// checked with the factor).
    #[error("{key}: {value:?}: must be a number from 1 to 65535")]
    MinInsyncReplicas {
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// A module key naming an invalid module name.
    #[error("{key}: {source}")]
    ModuleName {
        /// The key.
        key: String,
        /// Why the name is invalid.
        source: ModuleNameError,
    },
    /// The keys together make a partition log configuration the log refuses (a batch must
    /// fit in a segment, ...).
    #[error(transparent)]
    Relation(crate::storage::log::LogConfigError),
}

/// A `*.max.ms` value where Kafka's `Long.MAX_VALUE` means unlimited.
fn parse_millis_or_unlimited(key: &str, value: &str) -> Result<Option<Duration>, TopicConfigError> {
    let millis = parse_positive(key, value, 0, i64::MAX)?;
    Ok((millis < i64::MAX).then(|| Duration::from_millis(millis as u64)))
}

fn millis_or_unlimited(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || i64::MAX.to_string(),
        |duration| duration.as_millis().to_string(),
    )
}

fn parse_i64(key: &str, value: &str) -> Result<i64, TopicConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| TopicConfigError::NotInteger {
            key: key.to_string(),
            value: value.to_string(),
        })
}

fn parse_positive(
    key: &str,
    value: &str,
    minimum: i64,
    maximum: i64,
) -> Result<i64, TopicConfigError> {
    let number = parse_i64(key, value)?;
    if number < minimum || number > maximum {
        return Err(TopicConfigError::OutOfRange {
            key: key.to_string(),
            number,
            minimum,
            maximum,
        });
    }
    Ok(number)
}

fn parse_unlimited(key: &str, value: &str) -> Result<Option<i64>, TopicConfigError> {
    match parse_i64(key, value)? {
        -1 => Ok(None),
        number if number >= 0 => Ok(Some(number)),
        number => Err(TopicConfigError::NotUnlimitedOrCount {
            key: key.to_string(),
            number,
        }),
    }
}

fn not_a_choice(key: &str, value: &str, allowed: &'static str) -> TopicConfigError {
    TopicConfigError::NotAChoice {
        key: key.to_string(),
        value: value.to_string(),
        allowed,
    }
}

impl TopicConfig {
    /// `base` with `overrides` applied; the error names the first bad key and value.
    pub fn with_overrides(
        base: &Self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TopicConfigError> {
        let mut config = base.clone();
        for (key, value) in overrides {
            config.set(key, value)?;
        }
        config.overrides = base.overrides.clone();
        config.overrides.extend(
            overrides
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        config.validate()?;
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), TopicConfigError> {
        match key {
            "partitioner.module" | "produce.filter.module" => {
                let name = value.trim();
                let module = if name.is_empty() {
                    None
                } else {
                    validate_module_name(name).map_err(|source| TopicConfigError::ModuleName {
                        key: key.to_string(),
                        source,
                    })?;
                    Some(name.to_string())
                };
                if key == "partitioner.module" {
                    self.partitioner_module = module;
                } else {
                    self.produce_filter_module = module;
                }
            }
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                parts.sort_unstable();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactAndDelete,
                    _ => {
                        return Err(not_a_choice(
                            key,
                            value,
                            "delete, compact or compact,delete",
                        ));
                    }
                };
            }
            "compression.type" => {
                self.compression = match value.trim() {
                    "producer" => TopicCompression::Producer,
                    "none" | "uncompressed" => TopicCompression::Codec(Compression::None),
                    "gzip" => TopicCompression::Codec(Compression::Gzip),
                    "snappy" => TopicCompression::Codec(Compression::Snappy),
                    "lz4" => TopicCompression::Codec(Compression::Lz4),
                    "zstd" => TopicCompression::Codec(Compression::Zstd),
                    _ => {
                        return Err(not_a_choice(
                            key,
                            value,
                            "producer, none, gzip, snappy, lz4 or zstd",
                        ));
                    }
                };
            }
            "delete.retention.ms" => {
                self.delete_retention =
                    Duration::from_millis(parse_positive(key, value, 0, i64::MAX)? as u64);
            }
            "max.compaction.lag.ms" => {
                let lag = parse_positive(key, value, 1, i64::MAX)?;
                self.max_compaction_lag =
                    (lag < i64::MAX).then(|| Duration::from_millis(lag as u64));
            }
            "min.cleanable.dirty.ratio" => {
                let ratio: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| TopicConfigError::NotNumber {
                        key: key.to_string(),
                        value: value.to_string(),
                    })?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(TopicConfigError::RatioOutOfRange {
                        key: key.to_string(),
                        ratio,
                    });
                }
                self.min_cleanable_dirty_ratio = ratio;
            }
            "min.compaction.lag.ms" => {
                self.min_compaction_lag =
                    Duration::from_millis(parse_positive(key, value, 0, i64::MAX)? as u64);
            }
            "index.interval.bytes" => {
                self.index_interval_bytes =
                    parse_positive(key, value, 1, i64::from(i32::MAX))? as u32;
            }
            "max.message.bytes" => {
                self.max_message_bytes =
                    parse_positive(key, value, 61, i64::from(i32::MAX))? as u64;
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(not_a_choice(key, value, "CreateTime or LogAppendTime")),
                };
            }
            "message.timestamp.after.max.ms" => {
                self.timestamp_after_max = parse_millis_or_unlimited(key, value)?;
            }
            "message.timestamp.before.max.ms" => {
                self.timestamp_before_max = parse_millis_or_unlimited(key, value)?;
            }
            "min.insync.replicas" => {
                self.min_insync_replicas = parse_positive(key, value, 1, i64::from(u16::MAX))
                    .map_err(|_| TopicConfigError::MinInsyncReplicas {
                        key: key.to_string(),
                        value: value.to_string(),
                    })? as u32;
            }
            "retention.bytes" => {
                self.retention_bytes = parse_unlimited(key, value)?.map(|bytes| bytes as u64)
            }
            "retention.ms" => {
                self.retention =
                    parse_unlimited(key, value)?.map(|ms| Duration::from_millis(ms as u64));
            }
            "segment.bytes" => {
                self.segment_bytes = parse_positive(key, value, 1024, i64::from(u32::MAX))? as u64;
            }
            "segment.ms" => {
                self.segment_age =
                    Duration::from_millis(parse_positive(key, value, 1, i64::MAX)? as u64);
            }
            _ => {
                return Err(TopicConfigError::UnknownKey {
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a create-time batch whose timestamps lie outside the topic's window around
    /// the node's clock `now_ms` (`message.timestamp.after.max.ms` and `.before.max.ms`), as
    /// Kafka does with INVALID_TIMESTAMP. It judges the header's first and largest
    /// timestamps, which are what the node indexes and retains by; the append's record walk
    /// (`validate_batch_records`) refuses a record stamped after the header's max, so the
    /// upper bound covers every record (compaction recomputes max_timestamp from records,
    /// so an unchecked record could pin retention later). Kafka also checks each record
    /// against `before.max.ms`; here only the header's first timestamp is, since a record
    /// before it (legal: later deltas may be negative) cannot pin retention.
    /// Log-append-time topics are stamped with the node's clock, so nothing is checked.
    pub fn check_timestamps(
        &self,
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), TimestampError> {
        if self.timestamp_type == TimestampType::LogAppendTime {
            return Ok(());
        }
        let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        if let Some(after) = self.timestamp_after_max {
            let latest = now_ms.saturating_add(millis(after));
            if header.max_timestamp != NO_TIMESTAMP && header.max_timestamp > latest {
                return Err(TimestampError::TooFarAhead {
                    timestamp: header.max_timestamp,
                    now_ms,
                    after_max_ms: millis(after),
                });
            }
        }
        if let Some(before) = self.timestamp_before_max {
            let earliest = now_ms.saturating_sub(millis(before));
            let first = header.base_timestamp.min(header.max_timestamp);
            if first != NO_TIMESTAMP && first < earliest {
                return Err(TimestampError::TooFarBehind {
                    timestamp: first,
                    now_ms,
                    before_max_ms: millis(before),
                });
            }
        }
        Ok(())
    }

    /// Checks relations between keys.
    pub fn validate(&self) -> Result<(), TopicConfigError> {
        self.log_config(&LogConfig::default())
            .validate()
            .map_err(TopicConfigError::Relation)
    }

    /// The partition log configuration for this topic, on top of the node's log settings.
    pub fn log_config(&self, node: &LogConfig) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_age: self.segment_age,
            index_interval_bytes: self.index_interval_bytes,
            batch_bytes_max: self.max_message_bytes,
            commit_bytes_max: node.commit_bytes_max.max(self.max_message_bytes),
            ..node.clone()
        }
    }

    /// Every key with its effective value and whether it is the default.
    pub fn describe(&self) -> Vec<(String, String, bool)> {
        KEYS.iter()
            .map(|key| {
                let value = self.value(key);
                (key.to_string(), value, !self.overrides.contains_key(*key))
            })
            .collect()
    }

    fn value(&self, key: &str) -> String {
        match key {
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".into(),
                CleanupPolicy::Compact => "compact".into(),
                CleanupPolicy::CompactAndDelete => "compact,delete".into(),
            },
            "compression.type" => match self.compression {
                TopicCompression::Producer => "producer".into(),
                TopicCompression::Codec(Compression::None) => "none".into(),
                TopicCompression::Codec(Compression::Gzip) => "gzip".into(),
                TopicCompression::Codec(Compression::Snappy) => "snappy".into(),
                TopicCompression::Codec(Compression::Lz4) => "lz4".into(),
                TopicCompression::Codec(Compression::Zstd) => "zstd".into(),
            },
            "delete.retention.ms" => self.delete_retention.as_millis().to_string(),
            "max.compaction.lag.ms" => self
                .max_compaction_lag
                .map_or_else(|| i64::MAX.to_string(), |lag| lag.as_millis().to_string()),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag.as_millis().to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.after.max.ms" => millis_or_unlimited(self.timestamp_after_max),
            "message.timestamp.before.max.ms" => millis_or_unlimited(self.timestamp_before_max),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "retention.bytes" => self
                .retention_bytes
                .map_or_else(|| "-1".into(), |bytes| bytes.to_string()),
            "retention.ms" => self.retention.map_or_else(
                || "-1".into(),
                |retention| retention.as_millis().to_string(),
            ),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_age.as_millis().to_string(),
            "partitioner.module" => self.partitioner_module.clone().unwrap_or_default(),
            "produce.filter.module" => self.produce_filter_module.clone().unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// A batch timestamp outside the window a create-time topic accepts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Later than `message.timestamp.after.max.ms` past the node's clock.
    #[error(
        "batch timestamp {timestamp} is {} ms ahead of the node's clock ({now_ms}), more than \
         message.timestamp.after.max.ms ({after_max_ms})",
        timestamp.saturating_sub(*now_ms)
    )]
    TooFarAhead {
        /// The batch's largest timestamp.
        timestamp: i64,
        /// The node's clock.
        now_ms: i64,
        /// The limit.
        after_max_ms: i64,
    },
    /// Earlier than `message.timestamp.before.max.ms` before the node's clock.
    #[error(
        "batch timestamp {timestamp} is {} ms behind the node's clock ({now_ms}), more \
         than message.timestamp.before.max.ms ({before_max_ms})",
        now_ms.saturating_sub(*timestamp)
    )]
    TooFarBehind {
        /// The batch's first timestamp.
        timestamp: i64,
        /// The node's clock.
        now_ms: i64,
        /// The limit.
        before_max_ms: i64,
    },
}

/// The longest topic name, in bytes (Kafka's).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Why a topic name is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    /// The empty name.
    #[error("topic name is empty")]
    Empty,
    /// Longer than [`TOPIC_NAME_BYTES_MAX`].
    #[error("topic name is {length} characters; the limit is {TOPIC_NAME_BYTES_MAX}")]
    TooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// `.` or `..`.
    #[error("topic name {name:?} is not allowed")]
    Dots {
        /// The name.
        name: String,
    },
    /// A character outside `[a-zA-Z0-9._-]`.
    #[error(
        "topic name {name:?} contains {character:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
    )]
    Character {
        /// The name.
        name: String,
        /// The first character not allowed.
        character: char,
    },
}

/// The longest module or transform name, in bytes.
pub const MODULE_NAME_BYTES_MAX: usize = 128;

/// A module or transform name that is not 1-128 of `[a-zA-Z0-9._-]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a valid name: use 1-128 of a-z, A-Z, 0-9, '.', '_' and '-'")]
pub struct ModuleNameError {
    /// The name.
    pub name: String,
}

/// Checks a topic name as Kafka does: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(TopicNameError::TooLong { length: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Dots {
            name: name.to_string(),
        });
    }
    if let Some(bad) = name.chars().find(|character| {
        !(character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-'))
    }) {
        return Err(TopicNameError::Character {
            name: name.to_string(),
            character: bad,
        });
    }
    Ok(())
}

/// Module and transform names: 1-128 of `[a-zA-Z0-9._-]`.
pub fn validate_module_name(name: &str) -> Result<(), ModuleNameError> {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() || name.len() > MODULE_NAME_BYTES_MAX || !valid_chars {
        return Err(ModuleNameError {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    fn header(base_timestamp: i64, max_timestamp: i64) -> BatchHeader {
        let records = [ledge_protocol::Record {
            timestamp: base_timestamp,
            key: None,
            value: None,
            headers: Vec::new(),
        }];
        let bytes = ledge_protocol::encode_batch(&records, &Default::default()).unwrap();
        BatchHeader {
            max_timestamp,
            ..BatchHeader::parse(&bytes).unwrap()
        }
    }

    // Goal: create-time timestamps are bounded as Kafka 4 bounds them: at most an hour ahead
    // by default, any age by default, both configurable (Long.MAX_VALUE is unlimited), and
    // log-append-time topics are not checked.
    #[test]
    fn timestamps_outside_the_window_are_refused() {
        let now = 1_700_000_000_000;
        let hour = 3_600_000;
        let defaults = TopicConfig::default();
        assert!(
            defaults
                .check_timestamps(&header(now, now + hour), now)
                .is_ok()
        );
        let error = defaults
            .check_timestamps(&header(now, now + hour + 1), now)
            .unwrap_err();
        assert!(
            error.to_string().contains("message.timestamp.after.max.ms"),
            "{error}"
        );
        assert!(defaults.check_timestamps(&header(0, 0), now).is_ok());
        assert!(defaults.check_timestamps(&header(-1, -1), now).is_ok());
        let strict = TopicConfig::with_overrides(
            &defaults,
            &overrides(&[
                ("message.timestamp.after.max.ms", "0"),
                ("message.timestamp.before.max.ms", "1000"),
            ]),
        )
        .unwrap();
        assert!(
            strict
                .check_timestamps(&header(now - 1000, now), now)
                .is_ok()
        );
        let error = strict
            .check_timestamps(&header(now - 1001, now), now)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("message.timestamp.before.max.ms"),
            "{error}"
        );
        assert!(strict.check_timestamps(&header(now, now + 1), now).is_err());
        let unlimited = TopicConfig::with_overrides(
            &defaults,
            &overrides(&[
                ("message.timestamp.after.max.ms", "9223372036854775807"),
                ("message.timestamp.type", "LogAppendTime"),
            ]),
        )
        .unwrap();
        assert_eq!(unlimited.timestamp_after_max, None);
        assert!(
            unlimited
                .check_timestamps(&header(now, i64::MAX), now)
                .is_ok()
        );
        let described = unlimited.describe();
        assert!(described.contains(&(
            "message.timestamp.after.max.ms".into(),
            "9223372036854775807".into(),
            false
        )));
        assert!(described.contains(&(
            "message.timestamp.before.max.ms".into(),
            "9223372036854775807".into(),
            true
        )));
        assert!(
            TopicConfig::with_overrides(
                &defaults,
                &overrides(&[("message.timestamp.after.max.ms", "-1")])
            )
            .is_err()
        );
    }

    #[test]
    fn overrides_apply_and_describe_marks_defaults() {
        let config = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &overrides(&[
                ("retention.ms", "-1"),
                ("cleanup.policy", "delete, compact"),
                ("compression.type", "zstd"),
            ]),
        )
        .unwrap();
        assert_eq!(config.retention, None);
        assert_eq!(config.cleanup_policy, CleanupPolicy::CompactAndDelete);
        assert_eq!(
            config.compression,
            TopicCompression::Codec(Compression::Zstd)
        );
        let described = config.describe();
        assert_eq!(described.len(), KEYS.len());
        assert!(described.contains(&("retention.ms".into(), "-1".into(), false)));
        assert!(described.contains(&("segment.bytes".into(), "134217728".into(), true)));
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        for (key, value, expected) in [
            (
                "retention.mss",
                "1",
                "unknown topic config \"retention.mss\"",
            ),
            (
                "retention.ms",
                "soon",
                "retention.ms: \"soon\" is not an integer",
            ),
            ("retention.ms", "-5", "must be -1 (unlimited)"),
            ("cleanup.policy", "keep", "must be delete, compact"),
            ("segment.bytes", "10", "segment.bytes: 10 is outside"),
            (
                "min.insync.replicas",
                "0",
                "must be a number from 1 to 65535",
            ),
        ] {
            let error =
                TopicConfig::with_overrides(&TopicConfig::default(), &overrides(&[(key, value)]))
                    .unwrap_err()
                    .to_string();
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
        // A relation between keys: a batch must fit in a segment.
        let error = TopicConfig::with_overrides(
            &TopicConfig::default(),
            &overrides(&[("segment.bytes", "2048"), ("max.message.bytes", "4096")]),
        )
        .unwrap_err();
        assert!(matches!(error, TopicConfigError::Relation(_)), "{error:?}");
        let error = error.to_string();
        assert!(
            error.contains("max.message.bytes") && error.contains("segment.bytes"),
            "{error}"
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v2_eu-1").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        assert!(
            validate_topic_name("a/b")
                .unwrap_err()
                .to_string()
                .contains("'/'")
        );
        assert!(validate_topic_name("héllo").is_err());
    }
}
