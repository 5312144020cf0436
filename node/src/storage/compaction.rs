//! Log compaction decisions (pure): the bounded key map and which records survive.
//!
//! Compaction keeps, for every key, only its latest record, so a compacted topic holds the
//! last value of each key. The key map records each key's latest offset within the range
//! of sealed segments it was built from; it holds whole keys (no hashes, so no collisions)
//! and is bounded by bytes: when a range of segments does not fit, compaction runs in
//! several passes, each over the next range that fits. A tombstone (a record with a key
//! and no value) deletes its key: it is kept for `delete.retention.ms` after its timestamp,
//! so consumers that are behind still see the deletion, then removed. Records without a key
//! are kept (Kafka refuses them in compacted topics; Ledge does not lose them).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

/// Per-topic and node settings of compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// `delete.retention.ms`: how long a tombstone is kept after its timestamp.
    pub delete_retention: Duration,
    /// `min.compaction.lag.ms`: segments whose newest record is younger are not compacted.
    pub min_compaction_lag: Duration,
    /// Bytes of keys (plus 8 per key for the offset) the key map may hold.
    pub key_map_bytes_max: usize,
}

/// Default of [`CompactionPolicy::key_map_bytes_max`].
pub const KEY_MAP_BYTES_MAX_DEFAULT: usize = 64 * 1024 * 1024;

/// Bookkeeping cost charged per key on top of its bytes.
const KEY_OVERHEAD_BYTES: usize = 48;

/// Each key's latest offset over a range of segments, bounded by bytes.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    latest: BTreeMap<Bytes, i64>,
    bytes: usize,
}

impl KeyMap {
    /// Bytes this map accounts for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Records `offset` as the latest for `key` (offsets arrive in ascending order).
    pub fn insert(&mut self, key: Bytes, offset: i64) {
        let cost = key.len() + KEY_OVERHEAD_BYTES;
        match self.latest.get_mut(&key) {
            Some(latest) => *latest = (*latest).max(offset),
            None => {
                self.bytes += cost;
                self.latest.insert(key, offset);
            }
        }
    }

    /// Adds every key of `other` (a later range) to this map.
    pub fn merge(&mut self, other: Self) {
        for (key, offset) in other.latest {
            self.insert(key, offset);
        }
    }

    /// The latest offset of `key` in the mapped range.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }
}

/// Whether a record survives compaction with `map`.
pub fn keep_record(
    offset: i64,
    key: Option<&[u8]>,
    is_tombstone: bool,
    timestamp_ms: i64,
    map: &KeyMap,
    now_ms: i64,
    policy: &CompactionPolicy,
) -> bool {
    let Some(key) = key else {
        return true;
    };
    if map.latest(key).is_some_and(|latest| latest > offset) {
        return false;
    }
    if is_tombstone {
        let retention_ms = i64::try_from(policy.delete_retention.as_millis()).unwrap_or(i64::MAX);
        return timestamp_ms >= now_ms.saturating_sub(retention_ms);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CompactionPolicy {
        CompactionPolicy {
            delete_retention: Duration::from_millis(1000),
            min_compaction_lag: Duration::ZERO,
            key_map_bytes_max: 1 << 20,
        }
    }

    #[test]
    fn only_the_latest_record_per_key_survives_and_tombstones_expire() {
        let mut map = KeyMap::default();
        map.insert(Bytes::from_static(b"a"), 1);
        map.insert(Bytes::from_static(b"a"), 5);
        map.insert(Bytes::from_static(b"b"), 3);
        assert_eq!(map.len(), 2);
        assert!(!keep_record(1, Some(b"a"), false, 0, &map, 0, &policy()));
        assert!(keep_record(5, Some(b"a"), false, 0, &map, 0, &policy()));
        assert!(
            keep_record(9, Some(b"c"), false, 0, &map, 0, &policy()),
            "keys outside the map stay"
        );
        assert!(
            keep_record(2, None, false, 0, &map, 0, &policy()),
            "keyless records stay"
        );
        assert!(
            keep_record(3, Some(b"b"), true, 10_000, &map, 10_500, &policy()),
            "a young tombstone stays"
        );
        assert!(
            !keep_record(3, Some(b"b"), true, 10_000, &map, 11_001, &policy()),
            "an old tombstone goes"
        );
    }
}
