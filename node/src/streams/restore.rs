//! Rebuilding a task from its changelog partition (pure: the caller reads the records).
//!
//! Owns: the rule for turning the changelog, read from its start in offset order, into the
//! store, the last commit position and the pending outbox.
//! Does not own: reading the partition, forwarding the pending outbox, reading input.
//!
//! The rule:
//! - every record is applied in offset order: a state put or tombstone to the store, an
//!   outbox entry to the pending set, an outbox tombstone removes it, a position replaces
//!   the last one (the last position wins);
//! - compaction keeps the latest record per key and never reorders, so a compacted log
//!   restores the same result as the full one: each key's last record is the one that
//!   counts, and the position (one key) survives as the last one written;
//! - a [`CommitBatch`](super::changelog::CommitBatch) always ends with its position, so in
//!   a log written by it, every record comes before the last position. Records after the
//!   last position (or records without any position) would be changes no position commits:
//!   applying them could count the input they came from twice (the position's input offsets
//!   predate them), and dropping them could lose what some other writer meant. Restore
//!   refuses with [`RestoreError::UncommittedTail`] naming the first such offset, rather than
//!   guess; holding an undo log to drop them exactly would cost a second copy of every key
//!   in a compacted log (where the only position is at the end) for a case that does not
//!   occur;
//! - memory: the store's limit holds at each position (a commit point; a lowered
//!   `transforms.state_memory_bytes_max` below the committed state fails the restore, naming
//!   the limit), and between positions the store may exceed it by what one commit batch
//!   (`transforms.commit_batch_bytes_max`) can add, since a batch lists its changes in key
//!   order, not the order that kept the live store under its limit. In a compacted log the
//!   store after any prefix is a subset of the state committed at the next position, so the
//!   same bound holds.

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use super::changelog::{
    ChangelogEntry, ChangelogError, CommitPosition, OutboxEntry, RECORD_OVERHEAD_BYTES_MAX,
    STATE_KEY_HEADER_BYTES,
};
use super::store::{ENTRY_OVERHEAD_BYTES, StateMemoryExceeded, StateStore};

/// How many times a commit batch's counted bytes its state puts can grow the store: a put
/// counts `RECORD_OVERHEAD_BYTES_MAX + STATE_KEY_HEADER_BYTES` (55) plus key and value in
/// the batch and `ENTRY_OVERHEAD_BYTES` (160) plus key and value in the store.
pub const RESTORE_SLACK_FACTOR: u64 = 3;

const _: () = assert!(
    ENTRY_OVERHEAD_BYTES
        <= RESTORE_SLACK_FACTOR * (RECORD_OVERHEAD_BYTES_MAX + STATE_KEY_HEADER_BYTES as u64)
);

/// A restore that cannot finish.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RestoreError {
    /// A record that does not decode.
    #[error("changelog record at offset {offset}: {source}")]
    Decode {
        /// Its offset.
        offset: i64,
        /// Why.
        source: ChangelogError,
    },
    /// Records fed out of offset order (a caller bug).
    #[error("changelog record at offset {offset} fed after offset {previous}")]
    OutOfOrder {
        /// The record's offset.
        offset: i64,
        /// The previous record's.
        previous: i64,
    },
    /// The restored state does not fit `transforms.state_memory_bytes_max`.
    #[error("restoring the changelog at offset {offset}: {source}")]
    StateMemory {
        /// Where it passed the limit.
        offset: i64,
        /// The limit and size.
        source: StateMemoryExceeded,
    },
    /// Records no commit position covers.
    #[error(
        "{records} changelog records from offset {first_offset} on follow the last commit \
         position: no commit covers them, so restore will not guess whether to apply them"
    )]
    UncommittedTail {
        /// The first of them.
        first_offset: i64,
        /// How many.
        records: u64,
    },
}

/// What a restore yields.
#[derive(Debug)]
pub struct Restored {
    /// The state as of the last commit.
    pub store: StateStore,
    /// The last commit position (`None`: an empty changelog; start from the beginning).
    pub position: Option<CommitPosition>,
    /// Outbox entries not yet known forwarded, in seq order: forward these first.
    pub pending: Vec<(u64, OutboxEntry)>,
    /// Records read (restore progress for `describe`).
    pub records: u64,
}

/// Fed a changelog partition's records in offset order; see the module docs for the rule.
#[derive(Debug)]
pub struct Restorer {
    store: StateStore,
    position: Option<CommitPosition>,
    pending: BTreeMap<u64, OutboxEntry>,
    records: u64,
    last_offset: Option<i64>,
    /// First offset after the last position, and how many records since.
    tail: Option<(i64, u64)>,
    slack_bytes: u64,
}

impl Restorer {
    /// A restore into a store bounded by `state_memory_bytes_max`, allowing what one batch
    /// of `commit_batch_bytes_max` can add ([`RESTORE_SLACK_FACTOR`] times it) between
    /// positions.
    #[must_use]
    pub fn new(state_memory_bytes_max: u64, commit_batch_bytes_max: u64) -> Self {
        Self {
            store: StateStore::new(state_memory_bytes_max),
            position: None,
            pending: BTreeMap::new(),
            records: 0,
            last_offset: None,
            tail: None,
            slack_bytes: commit_batch_bytes_max.saturating_mul(RESTORE_SLACK_FACTOR),
        }
    }

    /// Records read so far.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Applies the record at `offset` (`value` `None`: a tombstone).
    ///
    /// # Errors
    /// [`RestoreError`]; the restore cannot continue.
    pub fn feed(
        &mut self,
        offset: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RestoreError> {
        if let Some(previous) = self.last_offset
            && offset <= previous
        {
            return Err(RestoreError::OutOfOrder { offset, previous });
        }
        self.last_offset = Some(offset);
        self.records += 1;
        let entry = ChangelogEntry::decode(key, value)
            .map_err(|source| RestoreError::Decode { offset, source })?;
        let limit = self.store.limit_bytes();
        match entry {
            ChangelogEntry::State(change) => {
                match change.value {
                    Some(value) => self.store.restore_put(change.key, value),
                    None => {
                        self.store.delete(&change.key);
                    }
                }
                let slack_limit = limit.saturating_add(self.slack_bytes);
                if self.store.memory_bytes() > slack_limit {
                    return Err(RestoreError::StateMemory {
                        offset,
                        source: StateMemoryExceeded {
                            limit,
                            would_be: self.store.memory_bytes(),
                        },
                    });
                }
                self.note_tail(offset);
            }
            ChangelogEntry::Outbox { seq, entry } => {
                match entry {
                    Some(entry) => {
                        self.pending.insert(seq, entry);
                    }
                    None => {
                        self.pending.remove(&seq);
                    }
                }
                self.note_tail(offset);
            }
            ChangelogEntry::Position(position) => {
                if self.store.memory_bytes() > limit {
                    return Err(RestoreError::StateMemory {
                        offset,
                        source: StateMemoryExceeded {
                            limit,
                            would_be: self.store.memory_bytes(),
                        },
                    });
                }
                self.position = Some(position);
                self.tail = None;
            }
        }
        Ok(())
    }

    fn note_tail(&mut self, offset: i64) {
        match &mut self.tail {
            Some((_, count)) => *count += 1,
            None => self.tail = Some((offset, 1)),
        }
    }

    /// Ends the restore.
    ///
    /// # Errors
    /// [`RestoreError::UncommittedTail`] when records follow the last position.
    pub fn finish(self) -> Result<Restored, RestoreError> {
        if let Some((first_offset, records)) = self.tail {
            return Err(RestoreError::UncommittedTail {
                first_offset,
                records,
            });
        }
        Ok(Restored {
            store: self.store,
            position: self.position,
            pending: self.pending.into_iter().collect(),
            records: self.records,
        })
    }
}

/// Feeds `(offset, key, value)` records to a new [`Restorer`] and finishes it.
///
/// # Errors
/// The first [`RestoreError`].
pub fn restore_all<'r>(
    records: impl IntoIterator<Item = (i64, &'r Bytes, Option<&'r Bytes>)>,
    state_memory_bytes_max: u64,
    commit_batch_bytes_max: u64,
) -> Result<Restored, RestoreError> {
    let mut restorer = Restorer::new(state_memory_bytes_max, commit_batch_bytes_max);
    for (offset, key, value) in records {
        restorer.feed(offset, key, value.map(|v| &v[..]))?;
    }
    restorer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::changelog::{
        COMMIT_BATCH_BYTES_MAX_DEFAULT, ChangelogRecord, CommitBatch, OutputRecord,
    };
    use crate::streams::store::{
        ENTRY_OVERHEAD_BYTES, STATE_MEMORY_BYTES_MAX_DEFAULT, StateChange, StateKey,
    };

    fn put(key: &str, value: &str) -> StateChange {
        StateChange {
            key: StateKey::plain(0, Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        }
    }

    fn outbox(n: u8) -> OutboxEntry {
        OutboxEntry {
            output_index: 0,
            partition: 0,
            producer_sequence: i32::from(n),
            record: OutputRecord {
                key: None,
                value: Some(Bytes::from(vec![n])),
                headers: vec![],
                timestamp_ms: 0,
            },
        }
    }

    fn position(offset: i64) -> CommitPosition {
        CommitPosition {
            input_offsets: [(0, offset)].into_iter().collect(),
            ..CommitPosition::default()
        }
    }

    fn offsets(batches: Vec<Vec<ChangelogRecord>>) -> Vec<(i64, ChangelogRecord)> {
        batches
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| (i as i64, r))
            .collect()
    }

    fn run(log: &[(i64, ChangelogRecord)], limit: u64) -> Result<Restored, RestoreError> {
        restore_all(
            log.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
            limit,
            COMMIT_BATCH_BYTES_MAX_DEFAULT,
        )
    }

    fn commit(
        changes: &[StateChange],
        new: &[(u64, OutboxEntry)],
        forwarded: &[u64],
        pos: &CommitPosition,
    ) -> Vec<ChangelogRecord> {
        let mut batch = CommitBatch::new(COMMIT_BATCH_BYTES_MAX_DEFAULT);
        for c in changes {
            batch.state(c).unwrap();
        }
        for (seq, e) in new {
            batch.outbox(*seq, e).unwrap();
        }
        for seq in forwarded {
            batch.forwarded(*seq).unwrap();
        }
        batch.finish(pos).unwrap()
    }

    proptest::proptest! {
        /// Arbitrary records (keys starting with any entry type, any values) make restore
        /// fail or finish, never panic.
        #[test]
        fn arbitrary_records_never_panic(
            records in proptest::collection::vec(
                (
                    0u8..5,
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                    proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                ),
                0..20,
            ),
        ) {
            let mut restorer = Restorer::new(ENTRY_OVERHEAD_BYTES * 4, 0);
            for (offset, (kind, mut key, value)) in records.into_iter().enumerate() {
                key.insert(0, kind);
                if restorer.feed(offset as i64, &key, value.as_deref()).is_err() {
                    break;
                }
            }
            let _ = restorer.finish();
        }
    }

    #[test]
    fn the_last_position_wins_and_forwarded_outbox_entries_are_not_pending() {
        let log = offsets(vec![
            commit(
                &[put("a", "1")],
                &[(0, outbox(0)), (1, outbox(1))],
                &[],
                &position(5),
            ),
            commit(
                &[put("a", "2"), put("b", "1")],
                &[(2, outbox(2))],
                &[0],
                &position(9),
            ),
        ]);
        let restored = run(&log, STATE_MEMORY_BYTES_MAX_DEFAULT).unwrap();
        assert_eq!(restored.position, Some(position(9)));
        assert_eq!(restored.pending, vec![(1, outbox(1)), (2, outbox(2))]);
        assert_eq!(restored.records, log.len() as u64);
        assert_eq!(restored.store.len(), 2);
        assert_eq!(
            restored.store.get(&put("a", "").key),
            Some(&Bytes::from_static(b"2"))
        );
    }

    #[test]
    fn an_empty_changelog_restores_nothing() {
        let restored = run(&[], STATE_MEMORY_BYTES_MAX_DEFAULT).unwrap();
        assert_eq!(restored.position, None);
        assert!(restored.store.is_empty() && restored.pending.is_empty());
    }

    #[test]
    fn records_after_the_last_position_are_refused_with_their_offset() {
        let mut log = offsets(vec![commit(&[put("a", "1")], &[], &[], &position(1))]);
        log.push((10, ChangelogEntry::State(put("b", "1")).encode()));
        log.push((
            11,
            ChangelogEntry::Outbox {
                seq: 0,
                entry: None,
            }
            .encode(),
        ));
        assert_eq!(
            run(&log, STATE_MEMORY_BYTES_MAX_DEFAULT).unwrap_err(),
            RestoreError::UncommittedTail {
                first_offset: 10,
                records: 2
            }
        );
        // A position after them commits them.
        log.push((12, ChangelogEntry::Position(position(2)).encode()));
        assert_eq!(
            run(&log, STATE_MEMORY_BYTES_MAX_DEFAULT)
                .unwrap()
                .store
                .len(),
            2
        );
        // Records and no position at all.
        let orphan = vec![(0, ChangelogEntry::State(put("a", "1")).encode())];
        let error = run(&orphan, STATE_MEMORY_BYTES_MAX_DEFAULT).unwrap_err();
        assert!(error.to_string().contains("from offset 0"), "{error}");
    }

    #[test]
    fn bad_records_and_bad_order_are_refused() {
        let mut restorer = Restorer::new(STATE_MEMORY_BYTES_MAX_DEFAULT, 0);
        assert_eq!(
            restorer.feed(3, &[0x7f], None).unwrap_err(),
            RestoreError::Decode {
                offset: 3,
                source: ChangelogError::UnknownEntryType(0x7f)
            }
        );
        let mut restorer = Restorer::new(STATE_MEMORY_BYTES_MAX_DEFAULT, 0);
        let record = ChangelogEntry::Position(position(0)).encode();
        restorer
            .feed(5, &record.key, record.value.as_deref())
            .unwrap();
        assert_eq!(
            restorer
                .feed(5, &record.key, record.value.as_deref())
                .unwrap_err(),
            RestoreError::OutOfOrder {
                offset: 5,
                previous: 5
            }
        );
    }

    #[test]
    fn a_batch_of_small_puts_may_pass_the_limit_within_the_slack() {
        // Commit 1 holds b00..b49; commit 2 replaces them with a00..a49, which sort first:
        // restore holds both sets until the deletes, twice the limit, within one batch.
        let n = 50;
        let old: Vec<_> = (0..n).map(|i| put(&format!("b{i:02}"), "1")).collect();
        let mut second: Vec<_> = (0..n).map(|i| put(&format!("a{i:02}"), "1")).collect();
        second.extend(old.iter().map(|c| StateChange {
            key: c.key.clone(),
            value: None,
        }));
        let first = commit(&old, &[], &[], &position(0));
        let second = commit(&second, &[], &[], &position(1));
        let batch_bytes: u64 = crate::streams::changelog::BATCH_HEADER_BYTES
            + second
                .iter()
                .map(ChangelogRecord::counted_bytes)
                .sum::<u64>();
        let log = offsets(vec![first, second]);
        let limit = n as u64 * (ENTRY_OVERHEAD_BYTES + 4);
        let restore = |batch_max| {
            restore_all(
                log.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
                limit,
                batch_max,
            )
        };
        assert_eq!(restore(batch_bytes).unwrap().store.memory_bytes(), limit);
        assert!(matches!(
            restore(batch_bytes / RESTORE_SLACK_FACTOR / 2),
            Err(RestoreError::StateMemory { .. })
        ));
    }

    #[test]
    fn state_over_the_limit_at_a_commit_fails_the_restore() {
        let log = offsets(vec![commit(
            &[put("a", "1"), put("b", "1")],
            &[],
            &[],
            &position(0),
        )]);
        let one_entry = ENTRY_OVERHEAD_BYTES + 2;
        let error = restore_all(
            log.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
            one_entry,
            1_000_000,
        )
        .unwrap_err();
        assert_eq!(
            error,
            RestoreError::StateMemory {
                offset: 2,
                source: StateMemoryExceeded {
                    limit: one_entry,
                    would_be: 2 * one_entry
                }
            }
        );
        assert!(
            error
                .to_string()
                .contains("transforms.state_memory_bytes_max")
        );
        // Without slack it fails at the record that passed the limit.
        let error = restore_all(
            log.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
            one_entry,
            0,
        )
        .unwrap_err();
        assert!(matches!(error, RestoreError::StateMemory { offset: 1, .. }));
        // A batch may pass the limit in key order and end under it.
        let shrink = offsets(vec![
            commit(&[put("b", "1")], &[], &[], &position(0)),
            commit(
                &[
                    put("a", "1"),
                    StateChange {
                        key: put("b", "").key,
                        value: None,
                    },
                ],
                &[],
                &[],
                &position(1),
            ),
        ]);
        let restored = restore_all(
            shrink.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
            one_entry,
            COMMIT_BATCH_BYTES_MAX_DEFAULT,
        )
        .unwrap();
        assert_eq!(restored.store.memory_bytes(), one_entry);
    }
}
