//! The local state of one transform partition: an ordered in-memory map with exact byte
//! accounting against a limit, and the transaction a chunk's changes go through (pure).
//!
//! Owns: the entries (store id, user key, window) -> state bytes, their byte count, the
//! window-end index that expiry scans, and the undo log that makes a chunk all-or-nothing.
//! Does not own: the changelog (the caller turns a committed transaction's changes into a
//! `CommitBatch`), what the bytes mean (the guest's JSON state, join buffers' records).
//!
//! Entries are ordered by (store, user key, window), key-major: a query's `scan --prefix`
//! and the lookup of one key's windows or sessions are ranges. Windowed entries are also
//! indexed by (store, window end) so expiry and suppression read only what closed. (The
//! changelog key puts the window before the user key; order there does not matter, since
//! compaction matches keys by equality.)
//!
//! A chunk runs in a [`Transaction`]: changes apply to the map at once (reads see them), the
//! first old value of each touched entry goes to an undo log, and dropping the transaction
//! without `commit` restores those values. The limit holds at every step: a `put` that would
//! take the store past it is refused, so memory never exceeds the limit even inside a failed
//! chunk, and the caller fails the chunk by the transform's error policy.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;
use thiserror::Error;

use super::window::Window;

/// Default for `transforms.state_memory_bytes_max`: 256 MiB of state per transform
/// partition, a quarter of a small edge host's memory for a handful of stateful partitions.
pub const STATE_MEMORY_BYTES_MAX_DEFAULT: u64 = 256 * 1024 * 1024;

/// Bytes counted per entry on top of its key and value: the map's slot (a `StateKey` of 64
/// bytes and a `Bytes` of 32), the index slot of a windowed entry, the two buffers' headers
/// and the tree's node overhead, rounded up. It is a fixed estimate, not the allocator's
/// count, so the accounting is the same number live, after restore and in every test.
pub const ENTRY_OVERHEAD_BYTES: u64 = 160;

/// Which store of a transform an entry belongs to (first byte of the changelog's state key).
pub type StoreId = u8;

/// The aggregate's folded states.
pub const STORE_AGGREGATE: StoreId = 0;
/// A stream-stream join's buffered left records.
pub const STORE_JOIN_LEFT: StoreId = 1;
/// A stream-stream join's buffered right records.
pub const STORE_JOIN_RIGHT: StoreId = 2;
/// A stream-table join's table (latest value per key).
pub const STORE_TABLE: StoreId = 3;

/// An entry's identity: store, user key, window (`None` when not windowed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateKey {
    /// The store.
    pub store: StoreId,
    /// The user's (group) key.
    pub key: Bytes,
    /// The window, for windowed state.
    pub window: Option<Window>,
}

impl StateKey {
    /// A key without a window.
    #[must_use]
    pub fn plain(store: StoreId, key: impl Into<Bytes>) -> Self {
        Self {
            store,
            key: key.into(),
            window: None,
        }
    }

    /// A windowed key.
    #[must_use]
    pub fn windowed(store: StoreId, key: impl Into<Bytes>, window: Window) -> Self {
        Self {
            store,
            key: key.into(),
            window: Some(window),
        }
    }

    /// Bytes this entry counts with `value_len` bytes of value.
    #[must_use]
    pub fn entry_bytes(&self, value_len: usize) -> u64 {
        ENTRY_OVERHEAD_BYTES + self.key.len() as u64 + value_len as u64
    }
}

/// A change to one entry: the new value, or `None` for deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The entry.
    pub key: StateKey,
    /// The new state (`None`: deleted; the changelog writes a tombstone).
    pub value: Option<Bytes>,
}

/// The store would grow past its limit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "state would grow to {would_be} bytes, over the limit of {limit} bytes \
     (transforms.state_memory_bytes_max)"
)]
pub struct StateMemoryExceeded {
    /// `transforms.state_memory_bytes_max`.
    pub limit: u64,
    /// The store's bytes had the change applied.
    pub would_be: u64,
}

/// Index key for windowed entries: (store, window end, window start, user key).
type EndIndexKey = (StoreId, i64, i64, Bytes);

/// The state of one transform partition. See the module docs.
#[derive(Debug)]
pub struct StateStore {
    entries: BTreeMap<StateKey, Bytes>,
    by_end: BTreeSet<EndIndexKey>,
    bytes: u64,
    limit_bytes: u64,
}

impl StateStore {
    /// An empty store bounded by `limit_bytes` (`transforms.state_memory_bytes_max`).
    #[must_use]
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            entries: BTreeMap::new(),
            by_end: BTreeSet::new(),
            bytes: 0,
            limit_bytes,
        }
    }

    /// Bytes counted (keys, values and [`ENTRY_OVERHEAD_BYTES`] per entry).
    #[must_use]
    pub fn memory_bytes(&self) -> u64 {
        self.bytes
    }

    /// The limit.
    #[must_use]
    pub fn limit_bytes(&self) -> u64 {
        self.limit_bytes
    }

    /// Changes the limit (a config reload). A store already over a lowered limit keeps its
    /// entries; puts that would grow it are refused until it is under again.
    pub fn set_limit_bytes(&mut self, limit_bytes: u64) {
        self.limit_bytes = limit_bytes;
    }

    /// Entries held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One entry's state.
    #[must_use]
    pub fn get(&self, key: &StateKey) -> Option<&Bytes> {
        self.entries.get(key)
    }

    /// Every entry in order.
    pub fn iter(&self) -> impl Iterator<Item = (&StateKey, &Bytes)> {
        self.entries.iter()
    }

    /// Entries of `store` whose user key starts with `prefix`, in key order (then window).
    pub fn scan_prefix<'s>(
        &'s self,
        store: StoreId,
        prefix: &'s [u8],
    ) -> impl Iterator<Item = (&'s StateKey, &'s Bytes)> + 's {
        let from = StateKey::plain(store, Bytes::copy_from_slice(prefix));
        self.entries
            .range(from..)
            .take_while(move |(k, _)| k.store == store && k.key.starts_with(prefix))
    }

    /// Windowed entries of one user key whose window starts in `[start_min, start_max]`, in
    /// window order.
    pub fn windows_of<'s>(
        &'s self,
        store: StoreId,
        key: &[u8],
        start_min: i64,
        start_max: i64,
    ) -> impl Iterator<Item = (&'s StateKey, &'s Bytes)> + 's {
        let key = Bytes::copy_from_slice(key);
        let from = StateKey::windowed(store, key.clone(), Window::new(start_min, i64::MIN));
        let to = StateKey::windowed(store, key, Window::new(start_max, i64::MAX));
        let range = if start_min <= start_max {
            Some(self.entries.range(from..=to))
        } else {
            None
        };
        range.into_iter().flatten()
    }

    /// Windowed entries of `store` whose window ends at or before `end_max`, in end order
    /// (then start, then key): what expires or closes at a watermark.
    #[must_use]
    pub fn ending_at_or_before(&self, store: StoreId, end_max: i64) -> Vec<StateKey> {
        let from = (store, i64::MIN, i64::MIN, Bytes::new());
        self.by_end
            .range((Bound::Included(from), Bound::Unbounded))
            .take_while(|(s, end, _, _)| *s == store && *end <= end_max)
            .map(|(s, end, start, key)| {
                StateKey::windowed(*s, key.clone(), Window::new(*start, *end))
            })
            .collect()
    }

    /// Windows of `store` ending in `(end_after, end_max]` (`end_after = None`: no lower
    /// bound), in end order: the windows a watermark move closed, for suppression.
    #[must_use]
    pub fn ending_between(
        &self,
        store: StoreId,
        end_after: Option<i64>,
        end_max: i64,
    ) -> Vec<StateKey> {
        let lower = match end_after {
            Some(after) => Bound::Excluded((store, after, i64::MAX, Bytes::new())),
            None => Bound::Included((store, i64::MIN, i64::MIN, Bytes::new())),
        };
        if end_after.is_some_and(|after| after >= end_max) {
            return Vec::new();
        }
        self.by_end
            .range((lower, Bound::Unbounded))
            .filter(|(_, end, _, _)| end_after.is_none_or(|after| *end > after))
            .take_while(|(s, end, _, _)| *s == store && *end <= end_max)
            .map(|(s, end, start, key)| {
                StateKey::windowed(*s, key.clone(), Window::new(*start, *end))
            })
            .collect()
    }

    /// How many windowed entries of `store` end after `end_after` (all when `None`): the
    /// windows not closed yet at a watermark.
    #[must_use]
    pub fn count_ending_after(&self, store: StoreId, end_after: Option<i64>) -> usize {
        let lower = match end_after {
            Some(after) => Bound::Excluded((store, after, i64::MAX, Bytes::new())),
            None => Bound::Included((store, i64::MIN, i64::MIN, Bytes::new())),
        };
        self.by_end
            .range((lower, Bound::Unbounded))
            .filter(|(_, end, _, _)| end_after.is_none_or(|after| *end > after))
            .take_while(|(s, _, _, _)| *s == store)
            .count()
    }

    /// Starts a chunk's changes.
    pub fn begin(&mut self) -> Transaction<'_> {
        Transaction {
            store: self,
            undo: BTreeMap::new(),
        }
    }

    /// Puts `value` at `key` outside a transaction (restore), within the limit.
    ///
    /// # Errors
    /// [`StateMemoryExceeded`]; the store is unchanged.
    pub fn put(
        &mut self,
        key: StateKey,
        value: Bytes,
    ) -> Result<Option<Bytes>, StateMemoryExceeded> {
        let old_bytes = self
            .entries
            .get(&key)
            .map_or(0, |v| key.entry_bytes(v.len()));
        let would_be = self.bytes - old_bytes + key.entry_bytes(value.len());
        if would_be > self.limit_bytes && would_be > self.bytes {
            return Err(StateMemoryExceeded {
                limit: self.limit_bytes,
                would_be,
            });
        }
        self.bytes = would_be;
        if let Some(window) = key.window {
            self.by_end
                .insert((key.store, window.end_ms, window.start_ms, key.key.clone()));
        }
        Ok(self.entries.insert(key, value))
    }

    /// Puts `value` at `key` without checking the limit: restore checks it at commit
    /// points (see `restore`), since a batch lists its changes in key order.
    pub fn restore_put(&mut self, key: StateKey, value: Bytes) {
        self.restore(key, Some(value));
    }

    /// Removes `key` outside a transaction (restore); returns the old value.
    pub fn delete(&mut self, key: &StateKey) -> Option<Bytes> {
        let old = self.entries.remove(key)?;
        self.bytes -= key.entry_bytes(old.len());
        if let Some(window) = key.window {
            self.by_end
                .remove(&(key.store, window.end_ms, window.start_ms, key.key.clone()));
        }
        Some(old)
    }

    /// Sets `key` to `value` (`None`: absent) without a limit check: undoing restores sizes
    /// the store already held.
    fn restore(&mut self, key: StateKey, value: Option<Bytes>) {
        self.delete(&key);
        if let Some(value) = value {
            self.bytes += key.entry_bytes(value.len());
            if let Some(window) = key.window {
                self.by_end
                    .insert((key.store, window.end_ms, window.start_ms, key.key.clone()));
            }
            self.entries.insert(key, value);
        }
    }
}

/// A chunk's changes to a [`StateStore`]: applied at once, undone unless committed. See the
/// module docs.
#[derive(Debug)]
pub struct Transaction<'s> {
    store: &'s mut StateStore,
    /// First old value of each touched entry.
    undo: BTreeMap<StateKey, Option<Bytes>>,
}

impl Transaction<'_> {
    /// The store with this transaction's changes applied so far.
    #[must_use]
    pub fn store(&self) -> &StateStore {
        self.store
    }

    /// One entry's state, as changed so far.
    #[must_use]
    pub fn get(&self, key: &StateKey) -> Option<&Bytes> {
        self.store.get(key)
    }

    /// Puts a state.
    ///
    /// # Errors
    /// [`StateMemoryExceeded`] when the store would pass its limit; the change is not
    /// applied and the transaction is still usable (the caller normally discards it).
    pub fn put(&mut self, key: StateKey, value: Bytes) -> Result<(), StateMemoryExceeded> {
        let undo_key = key.clone();
        let old = self.store.put(key, value)?;
        self.undo.entry(undo_key).or_insert(old);
        Ok(())
    }

    /// Deletes a state (a tombstone in the changelog if it existed at the last commit).
    pub fn delete(&mut self, key: &StateKey) {
        let old = self.store.delete(key);
        if !self.undo.contains_key(key) {
            self.undo.insert(key.clone(), old);
        }
    }

    /// Keeps the changes; returns, in key order, each entry whose value differs from the
    /// last commit (an entry put then deleted in one chunk, or put back to its old value,
    /// is no change).
    #[must_use]
    pub fn commit(mut self) -> Vec<StateChange> {
        let undo = std::mem::take(&mut self.undo);
        undo.into_iter()
            .filter_map(|(key, old)| {
                let now = self.store.get(&key).cloned();
                (now != old).then_some(StateChange { key, value: now })
            })
            .collect()
    }

    /// Undoes every change (as dropping does).
    pub fn discard(self) {}
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        for (key, old) in std::mem::take(&mut self.undo) {
            self.store.restore(key, old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(k: &str) -> StateKey {
        StateKey::plain(STORE_AGGREGATE, Bytes::copy_from_slice(k.as_bytes()))
    }

    fn windowed(k: &str, start: i64, end: i64) -> StateKey {
        StateKey::windowed(
            STORE_AGGREGATE,
            Bytes::copy_from_slice(k.as_bytes()),
            Window::new(start, end),
        )
    }

    #[test]
    fn bytes_count_keys_values_and_the_overhead_exactly() {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        store.put(key("ab"), Bytes::from_static(b"123")).unwrap();
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 5);
        store.put(key("ab"), Bytes::from_static(b"1")).unwrap();
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 3);
        store
            .put(windowed("c", 0, 10), Bytes::from_static(b""))
            .unwrap();
        assert_eq!(store.memory_bytes(), 2 * ENTRY_OVERHEAD_BYTES + 4);
        assert_eq!(store.delete(&key("ab")), Some(Bytes::from_static(b"1")));
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 1);
        assert_eq!(store.delete(&key("ab")), None);
        store.delete(&windowed("c", 0, 10));
        assert_eq!(store.memory_bytes(), 0);
        assert!(
            store
                .ending_at_or_before(STORE_AGGREGATE, i64::MAX)
                .is_empty()
        );
    }

    #[test]
    fn a_put_past_the_limit_is_refused_and_changes_nothing() {
        let limit = 2 * ENTRY_OVERHEAD_BYTES + 10;
        let mut store = StateStore::new(limit);
        store.put(key("a"), Bytes::from_static(b"1234")).unwrap();
        let error = store
            .put(key("b"), Bytes::from_static(b"123456"))
            .unwrap_err();
        assert_eq!(
            error,
            StateMemoryExceeded {
                limit,
                would_be: 2 * ENTRY_OVERHEAD_BYTES + 12
            }
        );
        assert!(
            error
                .to_string()
                .contains("transforms.state_memory_bytes_max")
        );
        assert_eq!(store.len(), 1);
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 5);
        // After the limit is lowered below the store's size, shrinking is still allowed.
        store.set_limit_bytes(1);
        store.put(key("a"), Bytes::from_static(b"1")).unwrap();
        assert!(store.put(key("a"), Bytes::from_static(b"12")).is_err());
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 2);
    }

    #[test]
    fn prefix_scans_and_window_ranges_are_ordered_ranges() {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        for k in ["a", "ab", "abc", "b", "aa"] {
            store.put(key(k), Bytes::from(k.to_string())).unwrap();
        }
        store
            .put(
                StateKey::plain(STORE_TABLE, Bytes::from_static(b"ab")),
                Bytes::new(),
            )
            .unwrap();
        let found: Vec<_> = store
            .scan_prefix(STORE_AGGREGATE, b"ab")
            .map(|(k, _)| k.key.clone())
            .collect();
        assert_eq!(
            found,
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"abc")]
        );
        assert_eq!(store.scan_prefix(STORE_AGGREGATE, b"").count(), 5);
        assert_eq!(store.scan_prefix(STORE_TABLE, b"").count(), 1);

        for start in [0, 10, 20, 30] {
            store
                .put(windowed("w", start, start + 10), Bytes::new())
                .unwrap();
            store
                .put(windowed("x", start, start + 10), Bytes::new())
                .unwrap();
        }
        let starts: Vec<_> = store
            .windows_of(STORE_AGGREGATE, b"w", 10, 20)
            .map(|(k, _)| k.window.unwrap().start_ms)
            .collect();
        assert_eq!(starts, vec![10, 20]);
        assert_eq!(store.windows_of(STORE_AGGREGATE, b"w", 20, 10).count(), 0);
        assert_eq!(
            store
                .windows_of(STORE_AGGREGATE, b"w", i64::MIN, i64::MAX)
                .count(),
            4
        );
        let ends: Vec<_> = store
            .ending_at_or_before(STORE_AGGREGATE, 20)
            .into_iter()
            .map(|k| (k.window.unwrap().end_ms, k.key))
            .collect();
        assert_eq!(
            ends,
            vec![
                (10, Bytes::from_static(b"w")),
                (10, Bytes::from_static(b"x")),
                (20, Bytes::from_static(b"w")),
                (20, Bytes::from_static(b"x")),
            ]
        );
        let closed: Vec<_> = store
            .ending_between(STORE_AGGREGATE, Some(10), 30)
            .into_iter()
            .map(|k| k.window.unwrap().end_ms)
            .collect();
        assert_eq!(closed, vec![20, 20, 30, 30]);
        assert_eq!(store.ending_between(STORE_AGGREGATE, None, 10).len(), 2);
        assert!(
            store
                .ending_between(STORE_AGGREGATE, Some(30), 30)
                .is_empty()
        );
        assert!(
            store
                .ending_at_or_before(STORE_JOIN_LEFT, i64::MAX)
                .is_empty()
        );
    }

    #[test]
    fn a_discarded_transaction_leaves_the_store_at_the_last_commit() {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        store.put(key("a"), Bytes::from_static(b"1")).unwrap();
        store
            .put(windowed("w", 0, 10), Bytes::from_static(b"2"))
            .unwrap();
        let bytes = store.memory_bytes();
        {
            let mut txn = store.begin();
            txn.put(key("a"), Bytes::from_static(b"changed")).unwrap();
            txn.put(key("new"), Bytes::from_static(b"x")).unwrap();
            txn.delete(&windowed("w", 0, 10));
            txn.put(windowed("w", 10, 20), Bytes::from_static(b"3"))
                .unwrap();
            assert_eq!(txn.get(&key("a")), Some(&Bytes::from_static(b"changed")));
            txn.discard();
        }
        assert_eq!(store.memory_bytes(), bytes);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get(&key("a")), Some(&Bytes::from_static(b"1")));
        let ends: Vec<_> = store.ending_at_or_before(STORE_AGGREGATE, i64::MAX);
        assert_eq!(ends, vec![windowed("w", 0, 10)]);
    }

    #[test]
    fn a_committed_transaction_reports_only_real_changes() {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        store.put(key("a"), Bytes::from_static(b"1")).unwrap();
        store.put(key("b"), Bytes::from_static(b"1")).unwrap();
        let mut txn = store.begin();
        txn.put(key("a"), Bytes::from_static(b"2")).unwrap();
        txn.put(key("a"), Bytes::from_static(b"1")).unwrap();
        txn.put(key("tmp"), Bytes::from_static(b"1")).unwrap();
        txn.delete(&key("tmp"));
        txn.delete(&key("b"));
        txn.put(key("c"), Bytes::from_static(b"3")).unwrap();
        let changes = txn.commit();
        assert_eq!(
            changes,
            vec![
                StateChange {
                    key: key("b"),
                    value: None
                },
                StateChange {
                    key: key("c"),
                    value: Some(Bytes::from_static(b"3"))
                },
            ]
        );
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn a_transaction_refuses_the_put_that_passes_the_limit() {
        let mut store = StateStore::new(ENTRY_OVERHEAD_BYTES * 2 + 2);
        store.put(key("a"), Bytes::new()).unwrap();
        let mut txn = store.begin();
        txn.put(key("b"), Bytes::new()).unwrap();
        let error = txn.put(key("c"), Bytes::new()).unwrap_err();
        assert_eq!(error.would_be, ENTRY_OVERHEAD_BYTES * 3 + 3);
        // Deleting first makes room within the same chunk.
        txn.delete(&key("a"));
        txn.put(key("c"), Bytes::new()).unwrap();
        drop(txn);
        assert_eq!(store.len(), 1);
        assert_eq!(store.memory_bytes(), ENTRY_OVERHEAD_BYTES + 1);
    }

    proptest! {
        /// Any sequence of puts and deletes in a discarded transaction restores the store
        /// exactly; in a committed one, the changes replayed on a copy give the same store.
        #[test]
        fn transactions_match_a_model(
            base in proptest::collection::vec((0u8..8, proptest::option::of(0u8..4)), 0..20),
            ops in proptest::collection::vec((0u8..8, proptest::option::of(0u8..4)), 0..40),
            commit in any::<bool>(),
        ) {
            let k = |i: u8| if i.is_multiple_of(2) { key(&i.to_string()) } else { windowed("w", i64::from(i), i64::from(i) * 3) };
            let v = |j: u8| Bytes::from(vec![j; usize::from(j)]);
            let mut store = StateStore::new(ENTRY_OVERHEAD_BYTES * 6 + 20);
            for (i, val) in &base {
                match val {
                    Some(j) => { let _ = store.put(k(*i), v(*j)); }
                    None => { store.delete(&k(*i)); }
                }
            }
            let before: Vec<_> = store.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
            let before_bytes = store.memory_bytes();
            let mut txn = store.begin();
            for (i, val) in &ops {
                match val {
                    Some(j) => { let _ = txn.put(k(*i), v(*j)); }
                    None => txn.delete(&k(*i)),
                }
                prop_assert!(txn.store().memory_bytes() <= txn.store().limit_bytes());
            }
            let after: Vec<_> = txn.store().iter().map(|(a, b)| (a.clone(), b.clone())).collect();
            if commit {
                let changes = txn.commit();
                let mut replay: BTreeMap<StateKey, Bytes> = before.into_iter().collect();
                for change in changes {
                    match change.value {
                        Some(value) => { replay.insert(change.key, value); }
                        None => { replay.remove(&change.key); }
                    }
                }
                prop_assert_eq!(replay.into_iter().collect::<Vec<_>>(), after.clone());
                let bytes: u64 = after.iter().map(|(k, v)| k.entry_bytes(v.len())).sum();
                prop_assert_eq!(store.memory_bytes(), bytes);
            } else {
                txn.discard();
                let now: Vec<_> = store.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
                prop_assert_eq!(now, before);
                prop_assert_eq!(store.memory_bytes(), before_bytes);
            }
            let indexed = store.ending_at_or_before(STORE_AGGREGATE, i64::MAX);
            let windowed_keys: Vec<_> = store.iter().filter(|(k, _)| k.window.is_some()).map(|(k, _)| k.clone()).collect();
            prop_assert_eq!(indexed.len(), windowed_keys.len());
        }
    }
}
