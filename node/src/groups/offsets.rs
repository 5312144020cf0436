//! Committed offsets: the `__consumer_offsets` record codec and the in-memory view (pure).
//!
//! Each commit is a record keyed by (group, topic, partition) whose value holds the offset,
//! the member's metadata and the commit time; deleting a group writes tombstones (null
//! values). The topic is compacted by key, so the log keeps the latest commit per key. At
//! start the node replays the topic into [`OffsetStore`]; later records win, decided by log
//! offset so concurrent commits need no lock.
//!
//! Key:   version u16 (=1), group (u16 length + UTF-8), topic (u16 length + UTF-8), partition u32
//! Value: version u16 (=1), offset i64, metadata (u16 length + UTF-8), commit time ms i64

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

/// Name of the internal topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;

/// A committed offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// The committer's metadata.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_time_ms: i64,
    /// Position of the record in `__consumer_offsets` (later wins).
    pub log_offset: i64,
}

/// A (group, topic, partition) key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OffsetKey {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
}

fn put_string(out: &mut BytesMut, text: &str) {
    let bytes = text.as_bytes();
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.put_slice(bytes.get(..len).unwrap_or_default());
}

fn take_string(bytes: &[u8], at: &mut usize) -> Option<String> {
    let len = usize::from(u16::from_be_bytes(
        bytes.get(*at..*at + 2)?.try_into().ok()?,
    ));
    let text = std::str::from_utf8(bytes.get(*at + 2..*at + 2 + len)?)
        .ok()?
        .to_string();
    *at += 2 + len;
    Some(text)
}

impl OffsetKey {
    /// The record key.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u16(KEY_VERSION);
        put_string(&mut out, &self.group);
        put_string(&mut out, &self.topic);
        out.put_u32(self.partition);
        out.freeze()
    }

    /// Parses a record key; `None` if it is not one of ours.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?) != KEY_VERSION {
            return None;
        }
        let mut at = 2;
        let group = take_string(bytes, &mut at)?;
        let topic = take_string(bytes, &mut at)?;
        let partition = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        (at + 4 == bytes.len()).then_some(Self {
            group,
            topic,
            partition,
        })
    }
}

/// The record value of a commit.
pub fn encode_value(offset: i64, metadata: &str, commit_time_ms: i64) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u16(VALUE_VERSION);
    out.put_i64(offset);
    put_string(&mut out, metadata);
    out.put_i64(commit_time_ms);
    out.freeze()
}

fn decode_value(bytes: &[u8]) -> Option<(i64, String, i64)> {
    if u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?) != VALUE_VERSION {
        return None;
    }
    let offset = i64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?);
    let mut at = 10;
    let metadata = take_string(bytes, &mut at)?;
    let commit_time_ms = i64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?);
    Some((offset, metadata, commit_time_ms))
}

/// Every group's committed offsets.
#[derive(Clone, Debug, Default)]
pub struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<(String, u32), CommittedOffset>>,
}

impl OffsetStore {
    /// Applies one record of `__consumer_offsets` at `log_offset` (a commit or, with no
    /// value, a deletion). Records that do not parse are skipped and reported.
    pub fn apply(&mut self, log_offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> bool {
        let Some(key) = key.and_then(OffsetKey::decode) else {
            return false;
        };
        let partitions = self.groups.entry(key.group.clone()).or_default();
        let slot = (key.topic, key.partition);
        if partitions
            .get(&slot)
            .is_some_and(|existing| existing.log_offset > log_offset)
        {
            return true;
        }
        match value {
            None => {
                partitions.remove(&slot);
                if partitions.is_empty() {
                    self.groups.remove(&key.group);
                }
                true
            }
            Some(value) => match decode_value(value) {
                Some((offset, metadata, commit_time_ms)) => {
                    partitions.insert(
                        slot,
                        CommittedOffset {
                            offset,
                            metadata,
                            commit_time_ms,
                            log_offset,
                        },
                    );
                    true
                }
                None => false,
            },
        }
    }

    /// A group's committed offsets.
    pub fn group(&self, group: &str) -> Option<&BTreeMap<(String, u32), CommittedOffset>> {
        self.groups.get(group)
    }

    /// Groups with committed offsets.
    pub fn group_ids(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// Forgets a group.
    pub fn remove_group(&mut self, group: &str) {
        self.groups.remove(group);
    }

    /// Forgets every group `unloaded` selects (their offsets partition moved to another
    /// coordinator); returns how many.
    pub fn unload(&mut self, mut unloaded: impl FnMut(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups.retain(|group, _| !unloaded(group));
        before - self.groups.len()
    }

    /// Forgets every offset of a deleted topic.
    pub fn remove_topic(&mut self, topic: &str) {
        for partitions in self.groups.values_mut() {
            partitions.retain(|(name, _), _| name != topic);
        }
        self.groups.retain(|_, partitions| !partitions.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_and_tombstones_apply_in_log_order() {
        let key = OffsetKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(OffsetKey::decode(&key.encode()), Some(key.clone()));
        let mut store = OffsetStore::default();
        assert!(store.apply(
            10,
            Some(&key.encode()),
            Some(&encode_value(42, "meta", 1000))
        ));
        // An older record arriving later does not win.
        assert!(store.apply(5, Some(&key.encode()), Some(&encode_value(7, "", 999))));
        let committed = &store.group("g").unwrap()[&("t".to_string(), 3)];
        assert_eq!(
            (committed.offset, committed.metadata.as_str()),
            (42, "meta")
        );
        assert!(store.apply(11, Some(&key.encode()), None));
        assert!(store.group("g").is_none());
        assert!(!store.apply(12, Some(b"junk"), Some(b"junk")));
        assert!(!store.apply(13, Some(&key.encode()), Some(b"\x00\x01short")));
    }
}
