//! Joins: the stream-stream join buffer and the stream-table join's table, both kept in the
//! [`StateStore`] so they are committed, restored and counted against the memory limit like
//! any state (pure).
//!
//! Owns: which buffered records a new record pairs with, when a record is late, when a
//! buffered record can no longer pair with anything (expiry), and the table's latest value
//! per key.
//! Does not own: calling the guest's `ledge_join` on the pairs, the watermark's persistence.
//!
//! Stream-stream semantics are Kafka's `JoinWindows` (`ofTimeDifferenceAndGrace(window,
//! grace)`, with `before`/`after` as in `JoinWindows.before/after`): a left record at `tl`
//! and a right record at `tr` with the same key pair when `tl - before <= tr <= tl + after`.
//! Both sides share one watermark (largest timestamp seen on either side minus grace):
//! - a left record is late when `tl + after < watermark`, a right one when
//!   `tr + before < watermark`: every partner it could still have would itself be late;
//!   a late record is counted and dropped, neither buffered nor joined;
//! - a buffered record expires when `t + before + after < watermark`: a partner that is not
//!   late would lie outside its window. So expiry never loses a pair, and the pairs emitted
//!   are exactly the pairs of non-late records within the window, each once, when the second
//!   of the two arrives.
//!
//! Buffered records of one key and timestamp share an entry (window `[t, t]`) whose value is
//! the records in arrival order, each as `u32 length` (big-endian) then bytes, so two
//! records with the same key and timestamp are both kept.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::store::{
    STORE_JOIN_LEFT, STORE_JOIN_RIGHT, STORE_TABLE, StateKey, StateMemoryExceeded, StateStore,
    StoreId, Transaction,
};
use super::window::{Watermark, Window};

/// Which input a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The first input (`orders` in `orders.join(customers, ...)`).
    Left,
    /// The second input.
    Right,
}

impl Side {
    fn store(self) -> StoreId {
        match self {
            Self::Left => STORE_JOIN_LEFT,
            Self::Right => STORE_JOIN_RIGHT,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Left => Self::Right,
            Self::Right => Self::Left,
        }
    }
}

/// A stream-stream join's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinWindow {
    /// `join.before_ms`: how far a right record may precede its left partner.
    pub before_ms: i64,
    /// `join.after_ms`: how far a right record may follow its left partner.
    pub after_ms: i64,
    /// `join.grace_ms`: how long out-of-order records are still accepted.
    pub grace_ms: i64,
}

/// A join setting a deploy refuses.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{setting} must not be negative (got {value})")]
pub struct JoinWindowError {
    /// The deploy setting.
    pub setting: &'static str,
    /// The refused value.
    pub value: i64,
}

impl JoinWindow {
    /// Kafka's `JoinWindows.ofTimeDifferenceAndGrace(window, grace)`: before = after.
    #[must_use]
    pub fn symmetric(window_ms: i64, grace_ms: i64) -> Self {
        Self {
            before_ms: window_ms,
            after_ms: window_ms,
            grace_ms,
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// The first negative setting, named.
    pub fn validate(&self) -> Result<(), JoinWindowError> {
        for (setting, value) in [
            ("join.before_ms", self.before_ms),
            ("join.after_ms", self.after_ms),
            ("join.grace_ms", self.grace_ms),
        ] {
            if value < 0 {
                return Err(JoinWindowError { setting, value });
            }
        }
        Ok(())
    }

    /// A new watermark for this join's grace.
    #[must_use]
    pub fn watermark(&self) -> Watermark {
        Watermark::new(self.grace_ms)
    }

    /// The partner side's timestamps a record at `t` on `side` pairs with (inclusive).
    fn partner_range(&self, side: Side, t: i64) -> (i64, i64) {
        match side {
            Side::Left => (
                t.saturating_sub(self.before_ms),
                t.saturating_add(self.after_ms),
            ),
            Side::Right => (
                t.saturating_sub(self.after_ms),
                t.saturating_add(self.before_ms),
            ),
        }
    }

    /// Whether a record at `t` on `side` is late at `watermark`.
    fn is_late(&self, side: Side, t: i64, watermark: &Watermark) -> bool {
        let reach = match side {
            Side::Left => self.after_ms,
            Side::Right => self.before_ms,
        };
        watermark
            .value_ms()
            .is_some_and(|mark| t.saturating_add(reach) < mark)
    }
}

/// A join buffer entry that does not decode (a damaged changelog).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JoinError {
    /// The store is full.
    #[error(transparent)]
    StateMemory(#[from] StateMemoryExceeded),
    /// A buffered entry's record list is malformed.
    #[error("join buffer entry for a key at timestamp {timestamp_ms} is malformed")]
    Malformed {
        /// The entry's timestamp.
        timestamp_ms: i64,
    },
}

/// What inserting a record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinInsert {
    /// The record is late: counted and dropped.
    Late,
    /// The record was buffered; these are its partners' records, in timestamp order then
    /// arrival order (each pair goes to the guest's `ledge_join`).
    Buffered {
        /// The other side's records within the window.
        partners: Vec<JoinPartner>,
    },
}

/// A buffered record of the other side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinPartner {
    /// Its timestamp.
    pub timestamp_ms: i64,
    /// The record as buffered.
    pub record: Bytes,
}

fn decode_list(value: &[u8], timestamp_ms: i64) -> Result<Vec<Bytes>, JoinError> {
    let mut records = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or(JoinError::Malformed { timestamp_ms })?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(JoinError::Malformed { timestamp_ms });
        }
        let (record, tail) = tail.split_at(len);
        records.push(Bytes::copy_from_slice(record));
        rest = tail;
    }
    Ok(records)
}

/// Inserts a record of `side` with `key` at `timestamp_ms` into the buffer: observes the
/// timestamp on the join's watermark, then either refuses it as late or buffers it and
/// returns the other side's records it pairs with.
///
/// # Errors
/// [`JoinError`]: the store is full (the chunk fails) or a buffered entry is damaged.
pub fn insert(
    window: &JoinWindow,
    txn: &mut Transaction<'_>,
    watermark: &mut Watermark,
    side: Side,
    key: &[u8],
    timestamp_ms: i64,
    record: &[u8],
) -> Result<JoinInsert, JoinError> {
    watermark.observe(timestamp_ms);
    if window.is_late(side, timestamp_ms, watermark) {
        return Ok(JoinInsert::Late);
    }
    let (low, high) = window.partner_range(side, timestamp_ms);
    let mut partners = Vec::new();
    for (partner_key, list) in txn.store().windows_of(side.other().store(), key, low, high) {
        let t = partner_key.window.map_or(0, |w| w.start_ms);
        for record in decode_list(list, t)? {
            partners.push(JoinPartner {
                timestamp_ms: t,
                record,
            });
        }
    }
    let entry = StateKey::windowed(
        side.store(),
        Bytes::copy_from_slice(key),
        Window::new(timestamp_ms, timestamp_ms),
    );
    let mut list = BytesMut::new();
    if let Some(existing) = txn.get(&entry) {
        list.put_slice(existing);
    }
    // A record is bounded by the batch limit, far below u32::MAX.
    list.put_u32(u32::try_from(record.len()).unwrap_or(u32::MAX));
    list.put_slice(record);
    txn.put(entry, list.freeze())?;
    Ok(JoinInsert::Buffered { partners })
}

/// Deletes buffered records that can no longer pair (`t + before + after < watermark`);
/// returns how many entries went (each becomes a changelog tombstone).
pub fn expire(window: &JoinWindow, txn: &mut Transaction<'_>, watermark: &Watermark) -> usize {
    let Some(mark) = watermark.value_ms() else {
        return 0;
    };
    let end_max = mark
        .saturating_sub(1)
        .saturating_sub(window.before_ms)
        .saturating_sub(window.after_ms);
    let mut expired = 0;
    for store in [STORE_JOIN_LEFT, STORE_JOIN_RIGHT] {
        for key in txn.store().ending_at_or_before(store, end_max) {
            txn.delete(&key);
            expired += 1;
        }
    }
    expired
}

/// Records buffered for a join (both sides), for `describe`.
#[must_use]
pub fn buffered_entries(store: &StateStore) -> usize {
    store.scan_prefix(STORE_JOIN_LEFT, b"").count()
        + store.scan_prefix(STORE_JOIN_RIGHT, b"").count()
}

/// Stream-table join, table side: the latest value per key; `None` (a tombstone) deletes.
///
/// # Errors
/// [`StateMemoryExceeded`]: the chunk fails.
pub fn table_update(
    txn: &mut Transaction<'_>,
    key: &[u8],
    value: Option<Bytes>,
) -> Result<(), StateMemoryExceeded> {
    let entry = StateKey::plain(STORE_TABLE, Bytes::copy_from_slice(key));
    match value {
        Some(value) => txn.put(entry, value),
        None => {
            txn.delete(&entry);
            Ok(())
        }
    }
}

/// Stream-table join, stream side: the table's current value for `key` (`None`: a left join
/// passes no right record; the guest drops it for an inner join).
#[must_use]
pub fn table_lookup<'s>(store: &'s StateStore, key: &[u8]) -> Option<&'s Bytes> {
    store.get(&StateKey::plain(STORE_TABLE, Bytes::copy_from_slice(key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::store::STATE_MEMORY_BYTES_MAX_DEFAULT;

    fn partners(result: JoinInsert) -> Vec<(i64, Vec<u8>)> {
        match result {
            JoinInsert::Buffered { partners } => partners
                .into_iter()
                .map(|p| (p.timestamp_ms, p.record.to_vec()))
                .collect(),
            JoinInsert::Late => panic!("late"),
        }
    }

    #[test]
    fn records_pair_within_before_and_after_only() {
        let window = JoinWindow {
            before_ms: 5,
            after_ms: 10,
            grace_ms: 1_000,
        };
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut txn = store.begin();
        let mut mark = window.watermark();
        for (t, r) in [(94, b"r94"), (95, b"r95"), (110, b"r10"), (111, b"r11")] {
            assert_eq!(
                partners(insert(&window, &mut txn, &mut mark, Side::Right, b"k", t, r).unwrap()),
                vec![]
            );
        }
        insert(
            &window,
            &mut txn,
            &mut mark,
            Side::Right,
            b"other",
            100,
            b"x",
        )
        .unwrap();
        let found =
            partners(insert(&window, &mut txn, &mut mark, Side::Left, b"k", 100, b"l").unwrap());
        assert_eq!(found, vec![(95, b"r95".to_vec()), (110, b"r10".to_vec())]);
        // A right record pairs with lefts at tr - after ..= tr + before.
        let found =
            partners(insert(&window, &mut txn, &mut mark, Side::Right, b"k", 95, b"r").unwrap());
        assert_eq!(found, vec![(100, b"l".to_vec())]);
        let found =
            partners(insert(&window, &mut txn, &mut mark, Side::Right, b"k", 94, b"r").unwrap());
        assert!(found.is_empty());
    }

    #[test]
    fn records_with_one_key_and_timestamp_are_all_kept() {
        let window = JoinWindow::symmetric(0, 100);
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut txn = store.begin();
        let mut mark = window.watermark();
        insert(&window, &mut txn, &mut mark, Side::Left, b"k", 7, b"a").unwrap();
        insert(&window, &mut txn, &mut mark, Side::Left, b"k", 7, b"").unwrap();
        let found =
            partners(insert(&window, &mut txn, &mut mark, Side::Right, b"k", 7, b"r").unwrap());
        assert_eq!(found, vec![(7, b"a".to_vec()), (7, vec![])]);
        assert_eq!(buffered_entries(txn.store()), 2);
    }

    #[test]
    fn late_records_are_dropped_and_expired_records_deleted() {
        let window = JoinWindow::symmetric(10, 5);
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut txn = store.begin();
        let mut mark = window.watermark();
        insert(&window, &mut txn, &mut mark, Side::Left, b"k", 100, b"l").unwrap();
        // Watermark 120 - 5 = 115: the left at 100 still pairs with rights >= 105 - 10... it
        // expires once 100 + 20 < watermark.
        insert(&window, &mut txn, &mut mark, Side::Right, b"z", 120, b"z").unwrap();
        assert_eq!(expire(&window, &mut txn, &mark), 0);
        // A right at 104 is late (104 + 10 < 115); one at 105 is not and pairs.
        assert_eq!(
            insert(&window, &mut txn, &mut mark, Side::Right, b"k", 104, b"r").unwrap(),
            JoinInsert::Late
        );
        assert_eq!(
            partners(insert(&window, &mut txn, &mut mark, Side::Right, b"k", 105, b"r").unwrap())
                .len(),
            1
        );
        insert(&window, &mut txn, &mut mark, Side::Left, b"y", 126, b"y").unwrap();
        assert_eq!(mark.value_ms(), Some(121));
        // 100 + 20 < 121: the left at 100 goes; the right at 105 (105 + 20 >= 121) stays.
        assert_eq!(expire(&window, &mut txn, &mark), 1);
        assert!(
            txn.store()
                .windows_of(STORE_JOIN_LEFT, b"k", i64::MIN, i64::MAX)
                .next()
                .is_none()
        );
        assert_eq!(
            txn.store()
                .windows_of(STORE_JOIN_RIGHT, b"k", i64::MIN, i64::MAX)
                .count(),
            1
        );
        assert_eq!(expire(&window, &mut txn, &Watermark::new(0)), 0);
    }

    #[test]
    fn a_full_store_fails_the_insert_and_a_damaged_entry_is_named() {
        let window = JoinWindow::symmetric(10, 0);
        let mut store = StateStore::new(10);
        let mut txn = store.begin();
        let mut mark = window.watermark();
        let error = insert(&window, &mut txn, &mut mark, Side::Left, b"k", 0, b"l").unwrap_err();
        assert!(matches!(error, JoinError::StateMemory(_)));
        assert!(
            error
                .to_string()
                .contains("transforms.state_memory_bytes_max")
        );
        drop(txn);
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        store
            .put(
                StateKey::windowed(
                    STORE_JOIN_RIGHT,
                    Bytes::from_static(b"k"),
                    Window::new(3, 3),
                ),
                Bytes::from_static(&[0, 0, 0, 9, 1]),
            )
            .unwrap();
        let mut txn = store.begin();
        let error = insert(&window, &mut txn, &mut mark, Side::Left, b"k", 0, b"l").unwrap_err();
        assert_eq!(error, JoinError::Malformed { timestamp_ms: 3 });
        assert!(decode_list(&[0, 0], 1).is_err());
    }

    proptest::proptest! {
        /// A damaged buffer entry fails the decode; it never panics, and a valid list
        /// decodes to its records.
        #[test]
        fn buffer_entries_decode_with_bounds(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            records in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8), 0..5),
        ) {
            let _ = decode_list(&bytes, 0);
            let mut list = Vec::new();
            for r in &records {
                list.extend((r.len() as u32).to_be_bytes());
                list.extend(r);
            }
            let decoded: Vec<Vec<u8>> = decode_list(&list, 0).unwrap().into_iter().map(|b| b.to_vec()).collect();
            proptest::prop_assert_eq!(decoded, records);
        }
    }

    #[test]
    fn negative_settings_are_refused_by_name() {
        assert!(JoinWindow::symmetric(300_000, 0).validate().is_ok());
        for (w, setting) in [
            (
                JoinWindow {
                    before_ms: -1,
                    after_ms: 0,
                    grace_ms: 0,
                },
                "join.before_ms",
            ),
            (
                JoinWindow {
                    before_ms: 0,
                    after_ms: -1,
                    grace_ms: 0,
                },
                "join.after_ms",
            ),
            (
                JoinWindow {
                    before_ms: 0,
                    after_ms: 0,
                    grace_ms: -1,
                },
                "join.grace_ms",
            ),
        ] {
            let error = w.validate().unwrap_err();
            assert_eq!(error.setting, setting);
            assert!(error.to_string().contains(setting));
        }
    }

    #[test]
    fn the_table_keeps_the_latest_value_and_a_tombstone_deletes() {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut txn = store.begin();
        table_update(&mut txn, b"c1", Some(Bytes::from_static(b"alice"))).unwrap();
        table_update(&mut txn, b"c1", Some(Bytes::from_static(b"alice2"))).unwrap();
        table_update(&mut txn, b"c2", Some(Bytes::from_static(b"bob"))).unwrap();
        table_update(&mut txn, b"c2", None).unwrap();
        let changes = txn.commit();
        assert_eq!(changes.len(), 1);
        assert_eq!(
            table_lookup(&store, b"c1"),
            Some(&Bytes::from_static(b"alice2"))
        );
        assert_eq!(table_lookup(&store, b"c2"), None);
        let mut tiny = StateStore::new(0);
        let mut txn = tiny.begin();
        assert!(table_update(&mut txn, b"c1", Some(Bytes::new())).is_err());
    }
}
