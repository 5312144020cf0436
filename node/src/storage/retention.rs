//! Retention planning (pure): which whole segments are past `retention.ms` or beyond
//! `retention.bytes`, as Kafka decides it.
//!
//! Only sealed segments are ever deleted, oldest first and as a prefix (a segment is
//! deleted only if every older one is too), so the log stays contiguous. By time: a
//! segment goes when its largest timestamp is older than `now - retention.ms`. By size: the
//! oldest segments go while the partition would still hold at least `retention.bytes`
//! without them. The result is the new log start offset, applied with `delete_before`.
//!
//! Time goes by a segment's largest batch timestamp, as in Kafka. One record cannot pin a
//! segment (and with it every later one, since only a prefix goes) because that timestamp
//! is bounded when the batch is accepted: the broker refuses a create-time batch more than
//! the topic's `message.timestamp.after.max.ms` (default 1 hour) ahead of its clock, so a
//! segment's time is at most that far past its last append. Basing retention on the last
//! append's wall time instead was rejected: segment files carry no append time that
//! survives a restart, and users set `retention.ms` against their records' timestamps.

use std::time::Duration;

/// What the planner needs to know about a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset.
    pub base_offset: i64,
    /// One past its last offset.
    pub end_offset: i64,
    /// File size.
    pub size_bytes: u64,
    /// Largest record timestamp, if any record has one.
    pub max_timestamp_ms: Option<i64>,
    /// The active segment is never deleted.
    pub active: bool,
    /// Rewritten by compaction.
    pub compacted: bool,
}

/// A topic's retention settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// `retention.ms`; `None` keeps forever.
    pub retention: Option<Duration>,
    /// `retention.bytes` per partition; `None` is unlimited.
    pub retention_bytes: Option<u64>,
}

/// Why segments are deleted (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionReason {
    /// Past `retention.ms`.
    Time,
    /// Beyond `retention.bytes`.
    Size,
}

/// The new log start offset if any segment should go, and why.
pub fn plan(
    segments: &[SegmentInfo],
    now_ms: i64,
    policy: &RetentionPolicy,
) -> Option<(i64, RetentionReason)> {
    let mut total: u64 = segments.iter().map(|segment| segment.size_bytes).sum();
    let mut new_start = None;
    for segment in segments {
        if segment.active {
            break;
        }
        let expired = match (policy.retention, segment.max_timestamp_ms) {
            (Some(retention), Some(max_timestamp)) => {
                let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
                max_timestamp < now_ms.saturating_sub(retention_ms)
            }
            _ => false,
        };
        let oversize = policy
            .retention_bytes
            .is_some_and(|limit| total.saturating_sub(segment.size_bytes) >= limit);
        if !(expired || oversize) {
            break;
        }
        total -= segment.size_bytes;
        let reason = if expired {
            RetentionReason::Time
        } else {
            RetentionReason::Size
        };
        new_start = Some((segment.end_offset, reason));
    }
    new_start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: i64, end: i64, size: u64, max_timestamp: i64, active: bool) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            end_offset: end,
            size_bytes: size,
            max_timestamp_ms: Some(max_timestamp),
            active,
            compacted: false,
        }
    }

    #[test]
    fn time_retention_deletes_an_expired_prefix_of_sealed_segments() {
        let segments = [
            segment(0, 10, 100, 1_000, false),
            segment(10, 20, 100, 5_000, false),
            segment(20, 25, 50, 100, true),
        ];
        let policy = RetentionPolicy {
            retention: Some(Duration::from_millis(2_000)),
            retention_bytes: None,
        };
        assert_eq!(
            plan(&segments, 4_000, &policy),
            Some((10, RetentionReason::Time))
        );
        assert_eq!(
            plan(&segments, 8_000, &policy),
            Some((20, RetentionReason::Time)),
            "never the active segment"
        );
        assert_eq!(plan(&segments, 2_500, &policy), None);
        assert_eq!(
            plan(&segments, 1_000_000, &RetentionPolicy::default()),
            None
        );
    }

    #[test]
    fn size_retention_keeps_at_least_the_limit() {
        let segments = [
            segment(0, 10, 100, 0, false),
            segment(10, 20, 100, 0, false),
            segment(20, 30, 100, 0, false),
            segment(30, 31, 10, 0, true),
        ];
        let policy = RetentionPolicy {
            retention: None,
            retention_bytes: Some(150),
        };
        // 310 bytes: dropping the first leaves 210 >= 150, the second 110 < 150.
        assert_eq!(
            plan(&segments, 0, &policy),
            Some((10, RetentionReason::Size))
        );
        let policy = RetentionPolicy {
            retention: None,
            retention_bytes: Some(10),
        };
        assert_eq!(
            plan(&segments, 0, &policy),
            Some((30, RetentionReason::Size))
        );
    }

    #[test]
    fn a_young_segment_stops_the_prefix() {
        let segments = [
            segment(0, 10, 100, 9_000, false),
            segment(10, 20, 100, 1_000, false),
            segment(20, 21, 1, 0, true),
        ];
        let policy = RetentionPolicy {
            retention: Some(Duration::from_millis(2_000)),
            retention_bytes: None,
        };
        assert_eq!(
            plan(&segments, 10_000, &policy),
            None,
            "out-of-order timestamps keep older segments"
        );
    }
}
