//! Model-based tests of the streams core: random streams through the real pieces against
//! references computed naively here (docs/STREAMS.md, issue 17's "Tests").

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::changelog::{
    COMMIT_BATCH_BYTES_MAX_DEFAULT, ChangelogRecord, CommitBatch, CommitPosition, OutboxEntry,
    OutputRecord,
};
use super::join::{self, JoinInsert, JoinWindow, Side};
use super::restore::restore_all;
use super::store::{STATE_MEMORY_BYTES_MAX_DEFAULT, STORE_AGGREGATE, StateKey, StateStore};
use super::window::{Window, WindowKind, WindowSpec, assign};

fn count_of(value: Option<&Bytes>) -> u64 {
    value.map_or(0, |v| u64::from_be_bytes(v[..].try_into().unwrap()))
}

/// Windows holding `t`, by brute force over starts (the reference for `windows_for`).
fn naive_windows(t: i64, size: i64, advance: i64) -> Vec<Window> {
    let first = (t - size) / advance - 2;
    let last = t / advance + 2;
    (first..=last)
        .map(|k| Window::new(k * advance, k * advance + size))
        .filter(|w| w.start_ms <= t && t < w.end_ms)
        .collect()
}

struct WindowedRun {
    /// What suppression emitted, in emission order: (key, window, final count).
    emitted: Vec<(u8, Window, u64)>,
    /// The store at the end: (key, window) -> count.
    store: BTreeMap<(u8, Window), u64>,
    late: u64,
}

/// The real pieces: assignment, a count fold in a transaction per chunk, suppression from
/// the store's end index, expiry.
fn run_windowed(spec: &WindowSpec, records: &[(u8, i64)], chunk: usize) -> WindowedRun {
    let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
    let mut mark = super::window::Watermark::new(spec.grace_ms);
    let mut emitted = Vec::new();
    let mut late = 0;
    for records in records.chunks(chunk) {
        let before = mark;
        let mut txn = store.begin();
        for (key, t) in records {
            let assignment = assign(spec, &mut mark, *t);
            if assignment.is_late() {
                late += 1;
            }
            for window in assignment.open {
                let slot = StateKey::windowed(STORE_AGGREGATE, vec![*key], window);
                let count = count_of(txn.get(&slot)) + 1;
                txn.put(slot, Bytes::copy_from_slice(&count.to_be_bytes()))
                    .unwrap();
            }
        }
        if let Some(end_max) = spec.closed_end_max(&mark) {
            for slot in
                txn.store()
                    .ending_between(STORE_AGGREGATE, spec.closed_end_max(&before), end_max)
            {
                let count = count_of(txn.get(&slot));
                emitted.push((slot.key[0], slot.window.unwrap(), count));
            }
        }
        if let Some(end_max) = spec.expired_end_max(&mark) {
            for slot in txn.store().ending_at_or_before(STORE_AGGREGATE, end_max) {
                txn.delete(&slot);
            }
        }
        let _ = txn.commit();
    }
    let store = store
        .iter()
        .map(|(k, v)| ((k.key[0], k.window.unwrap()), count_of(Some(v))))
        .collect();
    WindowedRun {
        emitted,
        store,
        late,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Windows close at the right watermark, suppression emits exactly one final count per
    /// closed window (in end order), late records are counted and not applied, and expired
    /// windows leave the store.
    #[test]
    fn windowed_counts_match_a_naive_reference(
        records in proptest::collection::vec((0u8..3, -50i64..300), 0..80),
        size in 1i64..40,
        advance_pick in 1i64..40,
        hopping in any::<bool>(),
        grace in 0i64..30,
        retention in 0i64..60,
        chunk in 1usize..6,
    ) {
        let advance = if hopping { advance_pick.min(size) } else { size };
        let kind = if hopping {
            WindowKind::Hopping { size_ms: size, advance_ms: advance }
        } else {
            WindowKind::Tumbling { size_ms: size }
        };
        let spec = WindowSpec { kind, grace_ms: grace, retention_ms: retention };
        prop_assert!(spec.validate(1024).is_ok());

        // Reference: per record, the watermark after it, and the windows still open then.
        let mut counts: BTreeMap<(u8, Window), u64> = BTreeMap::new();
        let mut max = i64::MIN;
        let mut late = 0;
        for (key, t) in &records {
            max = max.max(*t);
            let mark = max - grace;
            let windows = naive_windows(*t, size, advance);
            prop_assert_eq!(spec.windows_for(*t), windows.clone());
            let open: Vec<_> = windows.iter().filter(|w| w.end_ms > mark).collect();
            if open.is_empty() && !windows.is_empty() {
                late += 1;
            }
            for w in open {
                *counts.entry((*key, *w)).or_default() += 1;
            }
        }
        let final_mark = if records.is_empty() { None } else { Some(max - grace) };
        let mut expected_finals: Vec<_> = counts
            .iter()
            .filter(|((_, w), _)| final_mark.is_some_and(|m| w.end_ms <= m))
            .map(|((k, w), c)| (*k, *w, *c))
            .collect();
        let expected_store: BTreeMap<_, _> = counts
            .iter()
            .filter(|((_, w), _)| final_mark.is_none_or(|m| w.end_ms + retention > m))
            .map(|(k, c)| (*k, *c))
            .collect();

        let run = run_windowed(&spec, &records, chunk);
        prop_assert_eq!(run.late, late);
        prop_assert_eq!(run.store, expected_store);
        // Emitted in (end, start, key) order, each closed window once, with its final count.
        let order: Vec<_> = run.emitted.iter().map(|(k, w, _)| (w.end_ms, w.start_ms, *k)).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(order, sorted);
        let mut emitted = run.emitted;
        emitted.sort_unstable();
        expected_finals.sort_unstable();
        prop_assert_eq!(emitted, expected_finals);
    }

    /// The join buffer emits exactly the pairs of non-late records within the window, each
    /// once, whatever the arrival order and however often expiry runs.
    #[test]
    fn join_pairs_match_a_naive_reference(
        records in proptest::collection::vec((any::<bool>(), 0u8..3, 0i64..200), 0..70),
        before in 0i64..20,
        after in 0i64..20,
        grace in 0i64..20,
        expire_every in 1usize..5,
    ) {
        let window = JoinWindow { before_ms: before, after_ms: after, grace_ms: grace };
        let side = |left: bool| if left { Side::Left } else { Side::Right };

        // Reference: accepted records (not late on arrival), then every cross pair in window.
        let mut max = i64::MIN;
        let mut accepted = Vec::new();
        for (id, (left, key, t)) in records.iter().enumerate() {
            max = max.max(*t);
            let mark = max - grace;
            let reach = if *left { after } else { before };
            if t + reach >= mark {
                accepted.push((id, *left, *key, *t));
            }
        }
        let mut expected = Vec::new();
        for (l, l_left, l_key, tl) in &accepted {
            for (r, r_left, r_key, tr) in &accepted {
                if *l_left && !*r_left && l_key == r_key && tl - before <= *tr && *tr <= tl + after {
                    expected.push((*l, *r));
                }
            }
        }
        expected.sort_unstable();

        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut mark = window.watermark();
        let mut pairs = Vec::new();
        let mut late = 0;
        for (i, chunk) in records.chunks(expire_every).enumerate() {
            let mut txn = store.begin();
            for (j, (left, key, t)) in chunk.iter().enumerate() {
                let id = i * expire_every + j;
                let payload = (id as u32).to_be_bytes();
                match join::insert(&window, &mut txn, &mut mark, side(*left), &[*key], *t, &payload).unwrap() {
                    JoinInsert::Late => late += 1,
                    JoinInsert::Buffered { partners } => {
                        for p in partners {
                            let other = u32::from_be_bytes(p.record[..].try_into().unwrap()) as usize;
                            pairs.push(if *left { (id, other) } else { (other, id) });
                        }
                    }
                }
            }
            join::expire(&window, &mut txn, &mark);
            let _ = txn.commit();
        }
        pairs.sort_unstable();
        prop_assert_eq!(late, records.len() - accepted.len());
        prop_assert_eq!(pairs, expected);
    }

    /// A random sequence of commits written as CommitBatches, compacted at random the way
    /// Kafka compacts (the head keeps the latest record per key, and may lose tombstones
    /// that are the latest), restores the same store, position and pending outbox as
    /// applying the commits directly.
    #[test]
    fn restore_after_random_compaction_equals_the_commits(
        commits in proptest::collection::vec(
            (
                proptest::collection::vec((0u8..6, proptest::option::of(0u8..4), any::<bool>()), 0..6),
                0usize..3,
                0usize..3,
                any::<i64>(),
            ),
            0..12,
        ),
        cut_pick in any::<prop::sample::Index>(),
        drop_tombstones in any::<bool>(),
    ) {
        let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
        let mut log: Vec<ChangelogRecord> = Vec::new();
        let mut pending: BTreeMap<u64, OutboxEntry> = BTreeMap::new();
        let mut position = CommitPosition::default();
        for (changes, new_outbox, forwarded, offset) in &commits {
            let mut txn = store.begin();
            for (k, value, windowed) in changes {
                let key = if *windowed {
                    StateKey::windowed(STORE_AGGREGATE, vec![*k], Window::new(i64::from(*k), i64::from(*k) + 1))
                } else {
                    StateKey::plain(STORE_AGGREGATE, vec![*k])
                };
                match value {
                    Some(v) => txn.put(key, Bytes::from(vec![*v; usize::from(*v)])).unwrap(),
                    None => txn.delete(&key),
                }
            }
            let state_changes = txn.commit();
            let mut batch = CommitBatch::new(COMMIT_BATCH_BYTES_MAX_DEFAULT);
            for change in &state_changes {
                batch.state(change).unwrap();
            }
            for _ in 0..*new_outbox {
                let seq = position.next_outbox_seq;
                position.next_outbox_seq += 1;
                let entry = OutboxEntry {
                    output_index: 0,
                    partition: (seq % 2) as u32,
                    producer_sequence: seq as i32,
                    record: OutputRecord { key: None, value: Some(Bytes::from(seq.to_string())), headers: vec![], timestamp_ms: 0 },
                };
                batch.outbox(seq, &entry).unwrap();
                pending.insert(seq, entry);
            }
            let done: Vec<u64> = pending.keys().take(*forwarded).copied().collect();
            for seq in done {
                batch.forwarded(seq).unwrap();
                pending.remove(&seq);
                position.forwarded_seq_end = seq + 1;
            }
            position.input_offsets.insert(0, *offset);
            log.extend(batch.finish(&position).unwrap());
        }

        // Compaction: before `cut`, keep only each key's latest record; maybe also drop
        // latest tombstones there (delete.retention.ms passed).
        let cut = if log.is_empty() { 0 } else { cut_pick.index(log.len() + 1) };
        let mut latest: BTreeMap<Bytes, usize> = BTreeMap::new();
        for (i, r) in log.iter().enumerate() {
            latest.insert(r.key.clone(), i);
        }
        let compacted: Vec<(i64, &ChangelogRecord)> = log
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                *i >= cut
                    || (latest[&r.key] == *i && !(drop_tombstones && r.value.is_none()))
            })
            .map(|(i, r)| (i as i64, r))
            .collect();

        let restored = restore_all(
            compacted.iter().map(|(o, r)| (*o, &r.key, r.value.as_ref())),
            STATE_MEMORY_BYTES_MAX_DEFAULT,
            COMMIT_BATCH_BYTES_MAX_DEFAULT,
        )
        .unwrap();
        let direct: Vec<_> = store.iter().collect();
        let from_log: Vec<_> = restored.store.iter().collect();
        prop_assert_eq!(from_log, direct);
        prop_assert_eq!(restored.store.memory_bytes(), store.memory_bytes());
        prop_assert_eq!(restored.position, (!commits.is_empty()).then_some(position));
        prop_assert_eq!(restored.pending, pending.into_iter().collect::<Vec<_>>());
    }
}

/// The real pieces for session windows: the decision, then the caller's part (a count fold,
/// merge = sum) in the store. Returns the store's sessions and the late count.
fn run_sessions(gap: i64, grace: i64, records: &[(u8, i64)]) -> (BTreeMap<(u8, Window), u64>, u64) {
    use super::window::{SessionDecision, Watermark, session_decision};
    let mut store = StateStore::new(STATE_MEMORY_BYTES_MAX_DEFAULT);
    let mut mark = Watermark::new(grace);
    let mut late = 0;
    let mut txn = store.begin();
    for (key, t) in records {
        mark.observe(*t);
        let sessions: Vec<Window> = txn
            .store()
            .windows_of(
                STORE_AGGREGATE,
                &[*key],
                t.saturating_sub(gap),
                t.saturating_add(gap),
            )
            .filter_map(|(k, _)| k.window)
            .chain(
                // Sessions starting before t - gap may still reach it: the caller widens
                // the start range to everything before; the decision filters by end.
                txn.store()
                    .windows_of(
                        STORE_AGGREGATE,
                        &[*key],
                        i64::MIN,
                        t.saturating_sub(gap).saturating_sub(1),
                    )
                    .filter_map(|(k, _)| k.window),
            )
            .collect();
        let slot = |w: Window| StateKey::windowed(STORE_AGGREGATE, vec![*key], w);
        let (from, to) = match session_decision(&sessions, *t, gap, &mark) {
            SessionDecision::Late(_) => {
                late += 1;
                continue;
            }
            SessionDecision::New(to) => (vec![], to),
            SessionDecision::Extend { from, to } => (vec![from], to),
            SessionDecision::Merge { from, to } => {
                assert!(from.len() >= 2);
                (from, to)
            }
        };
        let mut count = 1;
        for w in from {
            count += count_of(txn.get(&slot(w)));
            txn.delete(&slot(w));
        }
        txn.put(slot(to), Bytes::copy_from_slice(&count.to_be_bytes()))
            .unwrap();
    }
    let _ = txn.commit();
    let sessions = store
        .iter()
        .map(|(k, v)| ((k.key[0], k.window.unwrap()), count_of(Some(v))))
        .collect();
    (sessions, late)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// With no record late, the sessions are each key's timestamps clustered by gap,
    /// whatever the arrival order; with lateness, sessions stay disjoint, more than `gap`
    /// apart, and hold every record not counted late.
    #[test]
    fn session_windows_match_gap_clusters(
        records in proptest::collection::vec((0u8..3, 0i64..300), 0..60),
        gap in 1i64..30,
        grace in 0i64..40,
    ) {
        let (sessions, late) = run_sessions(gap, 1_000, &records);
        prop_assert_eq!(late, 0);
        let mut expected = BTreeMap::new();
        for key in 0u8..3 {
            let mut times: Vec<i64> = records.iter().filter(|(k, _)| *k == key).map(|(_, t)| *t).collect();
            times.sort_unstable();
            let mut current: Option<(i64, i64, u64)> = None;
            for t in times {
                current = match current {
                    Some((start, end, n)) if t - end <= gap => Some((start, t, n + 1)),
                    Some((start, end, n)) => {
                        expected.insert((key, Window::new(start, end)), n);
                        Some((t, t, 1))
                    }
                    None => Some((t, t, 1)),
                };
            }
            if let Some((start, end, n)) = current {
                expected.insert((key, Window::new(start, end)), n);
            }
        }
        prop_assert_eq!(sessions, expected);

        let (sessions, late) = run_sessions(gap, grace, &records);
        let applied: u64 = sessions.values().sum();
        prop_assert_eq!(applied + late, records.len() as u64);
        let mut previous: Option<(u8, Window)> = None;
        for (key, window) in sessions.keys() {
            prop_assert!(window.start_ms <= window.end_ms);
            if let Some((k, w)) = previous && k == *key {
                prop_assert!(window.start_ms - w.end_ms > gap, "{:?} then {:?}", w, window);
            }
            previous = Some((*key, *window));
        }
    }
}
