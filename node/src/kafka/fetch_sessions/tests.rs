//! The session cache driven as the Fetch handler drives it, with time passed in: Kafka's
//! rules for creating, continuing and closing sessions, what an incremental answer keeps,
//! and the cache's bounds (sessions, partitions, idle expiry, eviction).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::*;
use crate::clock::{Clock, SystemClock};

/// A starting instant; every later one is an offset from it (no test reads the clock again).
fn start() -> Instant {
    SystemClock.now()
}

fn limits() -> FetchSessionLimits {
    FetchSessionLimits {
        sessions_max: 3,
        partitions_max: 100,
        idle_max: Duration::from_secs(300),
        eviction_min: Duration::from_secs(120),
    }
}

fn key(topic: &str, partition: i32) -> SessionPartition {
    SessionPartition {
        topic: topic.to_owned(),
        partition,
    }
}

fn fetch(offset: i64) -> PartitionFetch {
    PartitionFetch {
        fetch_offset: offset,
        partition_max_bytes: 1 << 20,
        current_leader_epoch: -1,
        log_start_offset: -1,
        last_fetched_epoch: -1,
    }
}

fn outcome(records_bytes: usize, high_watermark: i64) -> PartitionOutcome {
    PartitionOutcome {
        records_bytes,
        high_watermark,
        log_start_offset: 0,
        error_code: 0,
        diverging: false,
    }
}

fn request(
    session_id: i32,
    epoch: i32,
    partitions: &[(&str, i32, i64)],
    forgotten: &[(&str, i32)],
) -> SessionRequest {
    SessionRequest {
        session_id,
        epoch,
        uses_topic_ids: false,
        partitions: partitions
            .iter()
            .map(|(topic, partition, offset)| (key(topic, *partition), fetch(*offset)))
            .collect(),
        forgotten: forgotten
            .iter()
            .map(|(topic, partition)| key(topic, *partition))
            .collect(),
    }
}

/// A full fetch of `partitions`, each answered with `high_watermark` 10 and no records;
/// the session id answered.
fn open(cache: &mut FetchSessionCache, now: Instant, partitions: &[(&str, i32, i64)]) -> i32 {
    let plan = cache
        .handle_request(now, request(0, INITIAL_EPOCH, partitions, &[]))
        .unwrap();
    assert_eq!(
        plan.kind,
        FetchKind::Full {
            uses_topic_ids: false
        }
    );
    let outcomes = vec![outcome(0, 10); plan.partitions.len()];
    let answer = cache.handle_answer(now, &plan, &outcomes);
    assert_eq!(answer.include, vec![true; plan.partitions.len()]);
    answer.session_id
}

fn names(plan: &FetchPlan) -> Vec<(String, i32, i64)> {
    plan.partitions
        .iter()
        .map(|(key, fetch)| (key.topic.clone(), key.partition, fetch.fetch_offset))
        .collect()
}

#[test]
fn a_full_fetch_creates_a_session_and_incremental_fetches_continue_it() {
    // Open with two partitions, then fetch incrementally: the plan reads both, the epoch
    // advances by one per fetch, and a stale or repeated epoch is refused.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0), ("a", 1, 0)]);
    assert!(id > 0);
    assert_eq!((cache.len(), cache.partitions_cached()), (1, 2));

    // Epoch 1: the request lists nothing (nothing changed); both partitions are read.
    let plan = cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    assert_eq!(
        plan.kind,
        FetchKind::Incremental {
            session_id: id,
            next_epoch: 2
        }
    );
    assert_eq!(names(&plan), [("a".into(), 0, 0), ("a".into(), 1, 0)]);
    let answer = cache.handle_answer(now, &plan, &[outcome(0, 10), outcome(0, 10)]);
    // Nothing changed since the full answer: nothing to send.
    assert_eq!(answer.session_id, id);
    assert_eq!(answer.error, None);
    assert_eq!(answer.include, [false, false]);

    // Epoch 1 again (a duplicate) and epoch 3 (a skipped one) are refused; 2 is served.
    for epoch in [1, 3, i32::MAX] {
        assert_eq!(
            cache.handle_request(now, request(id, epoch, &[], &[])),
            Err(FetchSessionError::InvalidEpoch),
            "epoch {epoch}"
        );
    }
    assert!(cache.handle_request(now, request(id, 2, &[], &[])).is_ok());
    assert_eq!(cache.counters().incremental_fetches, 2);
}

#[test]
fn an_incremental_answer_keeps_only_partitions_with_news() {
    // Kafka's rules: records, a moved high watermark or log start offset, or an error put a
    // partition in the answer; after an error the next good answer goes out too.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(
        &mut cache,
        now,
        &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("a", 3, 0)],
    );
    let plan = cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    let moved_start = PartitionOutcome {
        log_start_offset: 5,
        ..outcome(0, 10)
    };
    let failed = PartitionOutcome {
        error_code: 6,
        ..outcome(0, 10)
    };
    let answer = cache.handle_answer(
        now,
        &plan,
        &[outcome(100, 10), outcome(0, 11), moved_start, failed],
    );
    assert_eq!(answer.include, [true, true, true, true]);
    // Same outcomes without records and the error gone: only the formerly failed one (its
    // cached high watermark was reset) goes out; the others are unchanged.
    let plan = cache.handle_request(now, request(id, 2, &[], &[])).unwrap();
    let answer = cache.handle_answer(
        now,
        &plan,
        &plan
            .partitions
            .iter()
            .map(|(key, _)| match key.partition {
                1 => outcome(0, 11),
                2 => moved_start,
                _ => outcome(0, 10),
            })
            .collect::<Vec<_>>(),
    );
    let included: Vec<i32> = plan
        .partitions
        .iter()
        .zip(&answer.include)
        .filter(|(_, include)| **include)
        .map(|((key, _), _)| key.partition)
        .collect();
    assert_eq!(included, [3]);
}

#[test]
fn a_diverging_epoch_is_answered_in_every_incremental_fetch() {
    // Kafka's rule: a partition answered with a diverging epoch (no records, nothing else
    // moved) is always included, so the fetcher learns it must truncate.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 12), ("a", 1, 0)]);
    let diverging = PartitionOutcome {
        diverging: true,
        ..outcome(0, 10)
    };
    for epoch in 1..=2 {
        let plan = cache
            .handle_request(now, request(id, epoch, &[], &[]))
            .unwrap();
        let answer = cache.handle_answer(now, &plan, &[diverging, outcome(0, 10)]);
        let included: Vec<i32> = plan
            .partitions
            .iter()
            .zip(&answer.include)
            .filter(|(_, include)| **include)
            .map(|((key, _), _)| key.partition)
            .collect();
        assert_eq!(included, [0], "epoch {epoch}");
    }
}

#[test]
fn partitions_with_records_move_to_the_back() {
    // Kafka's rotation: a partition that answered records is read last next time, so a
    // fetch whose max_bytes runs out serves the others first.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)]);
    let plan = cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    cache.handle_answer(
        now,
        &plan,
        &[outcome(10, 10), outcome(0, 10), outcome(0, 10)],
    );
    let plan = cache
        .handle_request(now, request(id, 2, &[("a", 0, 3)], &[]))
        .unwrap();
    // a-0 moved behind b-0, and its new offset (a changed request) is remembered.
    assert_eq!(
        names(&plan),
        [("a".into(), 1, 0), ("b".into(), 0, 0), ("a".into(), 0, 3)]
    );
}

#[test]
fn incremental_requests_add_change_and_forget_partitions() {
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0), ("a", 1, 0)]);
    // Add b-0, move a-1's offset, forget a-0 (and a partition the session never had).
    let plan = cache
        .handle_request(
            now,
            request(id, 1, &[("b", 0, 4), ("a", 1, 7)], &[("a", 0), ("z", 9)]),
        )
        .unwrap();
    assert_eq!(names(&plan), [("a".into(), 1, 7), ("b".into(), 0, 4)]);
    assert_eq!(cache.partitions_cached(), 2);
    // A new partition's first answer always goes out (nothing was sent for it yet).
    let answer = cache.handle_answer(now, &plan, &[outcome(0, 10), outcome(0, 10)]);
    assert_eq!(answer.include, [false, true]);
    // The next fetch reads the changed offsets without the client repeating them.
    let plan = cache.handle_request(now, request(id, 2, &[], &[])).unwrap();
    assert_eq!(names(&plan), [("a".into(), 1, 7), ("b".into(), 0, 4)]);
}

#[test]
fn forgetting_every_partition_closes_the_session() {
    // Kafka: a session left empty is closed and the fetch answered without a session.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0)]);
    let plan = cache
        .handle_request(now, request(id, 1, &[], &[("a", 0)]))
        .unwrap();
    assert_eq!(plan.kind, FetchKind::Sessionless);
    assert!(plan.partitions.is_empty());
    assert_eq!(
        plan.closed.map(|closed| (closed.session_id, closed.reason)),
        Some((id, CloseReason::Emptied))
    );
    assert_eq!(
        cache.handle_answer(now, &plan, &[]).session_id,
        NO_SESSION_ID
    );
    assert_eq!((cache.len(), cache.partitions_cached()), (0, 0));
    assert_eq!(
        cache.handle_request(now, request(id, 2, &[], &[])),
        Err(FetchSessionError::SessionIdNotFound)
    );
}

#[test]
fn final_and_initial_epochs_close_the_named_session() {
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0), ("a", 1, 0)]);
    cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    // FINAL (what the Java consumer sends on close): closed, sessionless, no new session.
    let plan = cache
        .handle_request(now, request(id, FINAL_EPOCH, &[], &[]))
        .unwrap();
    assert_eq!(plan.kind, FetchKind::Sessionless);
    assert_eq!(
        plan.closed,
        Some(SessionSummary {
            session_id: id,
            partitions: 2,
            incremental_fetches: 1,
            reason: CloseReason::Final,
        })
    );
    assert_eq!(
        cache.handle_answer(now, &plan, &[]).session_id,
        NO_SESSION_ID
    );
    assert!(cache.is_empty());

    // INITIAL with a session id: the old session is closed and a new one created.
    let id = open(&mut cache, now, &[("a", 0, 0)]);
    let plan = cache
        .handle_request(now, request(id, INITIAL_EPOCH, &[("a", 0, 5)], &[]))
        .unwrap();
    assert_eq!(
        plan.closed.map(|closed| (closed.session_id, closed.reason)),
        Some((id, CloseReason::Reopened))
    );
    let answer = cache.handle_answer(now, &plan, &[outcome(0, 10)]);
    assert_ne!(answer.session_id, NO_SESSION_ID);
    assert_ne!(answer.session_id, id);
    assert_eq!((cache.len(), cache.partitions_cached()), (1, 1));
    // An unknown id with FINAL is simply sessionless.
    let plan = cache
        .handle_request(now, request(12345, FINAL_EPOCH, &[("a", 0, 0)], &[]))
        .unwrap();
    assert_eq!((plan.kind, plan.closed), (FetchKind::Sessionless, None));
    assert_eq!(cache.len(), 1);
}

#[test]
fn unknown_sessions_and_topic_id_switches_are_refused() {
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    assert_eq!(
        cache.handle_request(now, request(99, 1, &[], &[])),
        Err(FetchSessionError::SessionIdNotFound)
    );
    // A negative epoch other than FINAL names no session Kafka could have.
    let id = open(&mut cache, now, &[("a", 0, 0)]);
    assert_eq!(
        cache.handle_request(now, request(id, -7, &[], &[])),
        Err(FetchSessionError::InvalidEpoch)
    );
    // Created by names; an incremental request by topic ids (v13+) is refused.
    let mut by_ids = request(id, 1, &[], &[]);
    by_ids.uses_topic_ids = true;
    assert_eq!(
        cache.handle_request(now, by_ids),
        Err(FetchSessionError::TopicIdMismatch)
    );
    // The refusals left the session as it was: epoch 1 is still the one expected.
    assert!(cache.handle_request(now, request(id, 1, &[], &[])).is_ok());
}

#[test]
fn a_session_moved_on_meanwhile_refuses_the_answer() {
    // Two requests with the same epoch read concurrently (two connections): the second is
    // refused at once; the first settles. If the session expired meanwhile the records go
    // out without a session.
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 0)]);
    let first = cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    let second = cache.handle_request(now, request(id, 2, &[], &[])).unwrap();
    let stale = cache.handle_answer(now, &first, &[outcome(5, 10)]);
    assert_eq!(stale.error, Some(FetchSessionError::InvalidEpoch));
    assert_eq!(stale.include, [false]);
    let later = now + Duration::from_secs(301);
    let answer = cache.handle_answer(later, &second, &[outcome(5, 10)]);
    assert_eq!((answer.session_id, answer.error), (NO_SESSION_ID, None));
    assert_eq!(answer.include, [true]);
}

#[test]
fn idle_sessions_expire() {
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let idle = open(&mut cache, now, &[("a", 0, 0)]);
    let busy = open(&mut cache, now, &[("b", 0, 0)]);
    let mut epoch = 1;
    for second in [100, 200, 299] {
        let at = now + Duration::from_secs(second);
        cache
            .handle_request(at, request(busy, epoch, &[], &[]))
            .unwrap();
        epoch += 1;
    }
    // 300 s after its last use the idle one is gone; the busy one stays.
    let at = now + Duration::from_secs(300);
    assert_eq!(
        cache.handle_request(at, request(idle, 1, &[], &[])),
        Err(FetchSessionError::SessionIdNotFound)
    );
    assert!(
        cache
            .handle_request(at, request(busy, epoch, &[], &[]))
            .is_ok()
    );
    assert_eq!((cache.len(), cache.partitions_cached()), (1, 1));
    assert_eq!(cache.counters().expired, 1);
}

#[test]
fn a_full_cache_evicts_as_kafka_does() {
    let start = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let small = open(&mut cache, start, &[("a", 0, 0)]);
    let medium = open(&mut cache, start, &[("b", 0, 0), ("b", 1, 0)]);
    let large = open(&mut cache, start, &[("c", 0, 0), ("c", 1, 0), ("c", 2, 0)]);
    assert!(small > 0 && medium > 0 && large > 0);

    // Full, and every session younger than eviction_min: no room, even for a large one.
    let at = start + Duration::from_secs(60);
    let five: Vec<(&str, i32, i64)> = (0..5).map(|partition| ("d", partition, 0)).collect();
    assert_eq!(open(&mut cache, at, &five), NO_SESSION_ID);
    assert_eq!(cache.counters().refused, 1);

    // Keep all three in use, so none is stale; past eviction_min since creation, a larger
    // session evicts the smallest; one no larger than the smallest evicts nothing.
    let at = start + Duration::from_secs(130);
    for id in [small, medium, large] {
        cache.handle_request(at, request(id, 1, &[], &[])).unwrap();
    }
    assert_eq!(open(&mut cache, at, &[("e", 0, 0)]), NO_SESSION_ID);
    let newcomer = open(&mut cache, at, &five);
    assert_ne!(newcomer, NO_SESSION_ID);
    assert_eq!(
        cache.handle_request(at, request(small, 2, &[], &[])),
        Err(FetchSessionError::SessionIdNotFound)
    );
    assert_eq!((cache.len(), cache.partitions_cached()), (3, 10));
    assert_eq!(cache.counters().evicted, 1);

    // A session idle longer than eviction_min is stale: any new session evicts it first,
    // whatever its size.
    let at = start + Duration::from_secs(260);
    for (id, epoch) in [(medium, 2), (newcomer, 1)] {
        cache
            .handle_request(at, request(id, epoch, &[], &[]))
            .unwrap();
    }
    assert_ne!(open(&mut cache, at, &[("f", 0, 0)]), NO_SESSION_ID);
    assert_eq!(
        cache.handle_request(at, request(large, 2, &[], &[])),
        Err(FetchSessionError::SessionIdNotFound)
    );
    assert_eq!(cache.counters().evicted, 2);
}

#[test]
fn the_partition_budget_bounds_creation_and_growth() {
    let now = start();
    let mut cache = FetchSessionCache::new(
        FetchSessionLimits {
            partitions_max: 4,
            ..limits()
        },
        7,
    );
    let five: Vec<(&str, i32, i64)> = (0..5).map(|partition| ("a", partition, 0)).collect();
    assert_eq!(open(&mut cache, now, &five), NO_SESSION_ID);
    let id = open(&mut cache, now, &five[..3]);
    assert_ne!(id, NO_SESSION_ID);
    // Growing to five: the session is closed and all its partitions are answered without
    // one, the added ones included.
    let plan = cache
        .handle_request(now, request(id, 1, &[("a", 3, 0), ("a", 4, 0)], &[]))
        .unwrap();
    assert_eq!(plan.kind, FetchKind::Sessionless);
    assert_eq!(plan.partitions.len(), 5);
    assert_eq!(
        plan.closed.map(|closed| closed.reason),
        Some(CloseReason::OverPartitionBudget)
    );
    assert_eq!((cache.len(), cache.partitions_cached()), (0, 0));
}

#[test]
fn no_session_when_sessions_are_off_or_the_fetch_is_empty() {
    let now = start();
    let mut off = FetchSessionCache::new(
        FetchSessionLimits {
            sessions_max: 0,
            ..limits()
        },
        7,
    );
    assert_eq!(open(&mut off, now, &[("a", 0, 0)]), NO_SESSION_ID);
    let mut cache = FetchSessionCache::new(limits(), 7);
    assert_eq!(open(&mut cache, now, &[]), NO_SESSION_ID);
    assert!(cache.is_empty());
}

#[test]
fn a_partition_listed_twice_is_cached_once() {
    let now = start();
    let mut cache = FetchSessionCache::new(limits(), 7);
    let id = open(&mut cache, now, &[("a", 0, 1), ("a", 0, 9)]);
    assert_eq!(cache.partitions_cached(), 1);
    let plan = cache.handle_request(now, request(id, 1, &[], &[])).unwrap();
    assert_eq!(names(&plan), [("a".into(), 0, 9)]);
}

#[test]
fn epochs_wrap_as_kafkas() {
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(41), 42);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(FINAL_EPOCH), FINAL_EPOCH);
}

#[test]
fn session_ids_are_positive_and_distinct() {
    let now = start();
    let mut cache = FetchSessionCache::new(
        FetchSessionLimits {
            sessions_max: 500,
            partitions_max: 1000,
            ..limits()
        },
        3,
    );
    let ids: BTreeSet<i32> = (0..500)
        .map(|partition| open(&mut cache, now, &[("a", partition, 0)]))
        .collect();
    assert_eq!(ids.len(), 500);
    assert!(ids.iter().all(|id| *id > 0));
}

/// A client's model of its session: id, the epoch it sends next, the partitions it holds.
type ClientView = (i32, i32, BTreeSet<(String, i32)>);

/// One step a client (or time) can take against the cache.
#[derive(Clone, Debug)]
enum Step {
    /// A full fetch (epoch 0 or FINAL) naming one of the known sessions or none.
    Full {
        session: usize,
        fin: bool,
        partitions: Vec<(u8, i32)>,
    },
    /// An incremental fetch of a known session with its expected epoch or a wrong one.
    Incremental {
        session: usize,
        right_epoch: bool,
        added: Vec<(u8, i32)>,
        forgotten: Vec<(u8, i32)>,
        records: bool,
    },
    /// Time passes.
    Wait { seconds: u64 },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let partitions = || proptest::collection::vec((0u8..3, 0i32..4), 0..6);
    prop_oneof![
        (0usize..4, any::<bool>(), partitions()).prop_map(|(session, fin, partitions)| {
            Step::Full {
                session,
                fin,
                partitions,
            }
        }),
        (
            0usize..4,
            any::<bool>(),
            partitions(),
            partitions(),
            any::<bool>()
        )
            .prop_map(|(session, right_epoch, added, forgotten, records)| {
                Step::Incremental {
                    session,
                    right_epoch,
                    added,
                    forgotten,
                    records,
                }
            }),
        (0u64..200).prop_map(|seconds| Step::Wait { seconds }),
    ]
}

proptest::proptest! {
    /// Any sequence of full and incremental fetches, right and wrong epochs, and waits keeps
    /// the cache's indexes consistent and its bounds held, and a served incremental fetch
    /// reads exactly the partitions the client's own model of its session holds.
    #[test]
    fn random_fetches_keep_the_cache_consistent(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let topics = ["a", "b", "c"];
        let mut now = start();
        let mut cache = FetchSessionCache::new(
            FetchSessionLimits {
                sessions_max: 3,
                partitions_max: 20,
                idle_max: Duration::from_secs(300),
                eviction_min: Duration::from_secs(120),
            },
            11,
        );
        // The clients' view: per slot, (session id, next epoch, partitions it holds).
        let mut clients: Vec<Option<ClientView>> = vec![None; 4];
        for step in steps {
            match step {
                Step::Wait { seconds } => now += Duration::from_secs(seconds),
                Step::Full { session, fin, partitions } => {
                    let id = clients[session].as_ref().map_or(0, |client| client.0);
                    let listed: Vec<(&str, i32, i64)> = partitions
                        .iter()
                        .map(|(topic, partition)| (topics[usize::from(*topic)], *partition, 0))
                        .collect();
                    let epoch = if fin { FINAL_EPOCH } else { INITIAL_EPOCH };
                    let plan = cache.handle_request(now, request(id, epoch, &listed, &[])).unwrap();
                    let outcomes = vec![outcome(0, 10); plan.partitions.len()];
                    let answer = cache.handle_answer(now, &plan, &outcomes);
                    clients[session] = (answer.session_id != NO_SESSION_ID).then(|| {
                        let held = listed.iter().map(|(topic, partition, _)| ((*topic).to_owned(), *partition)).collect();
                        (answer.session_id, 1, held)
                    });
                }
                Step::Incremental { session, right_epoch, added, forgotten, records } => {
                    let Some((id, epoch, held)) = clients[session].clone() else {
                        continue;
                    };
                    let sent_epoch = if right_epoch { epoch } else { next_epoch(epoch) };
                    let added: Vec<(&str, i32, i64)> = added
                        .iter()
                        .map(|(topic, partition)| (topics[usize::from(*topic)], *partition, 0))
                        .collect();
                    let forgotten: Vec<(&str, i32)> = forgotten
                        .iter()
                        .map(|(topic, partition)| (topics[usize::from(*topic)], *partition))
                        .collect();
                    match cache.handle_request(now, request(id, sent_epoch, &added, &forgotten)) {
                        Err(_) => clients[session] = None,
                        Ok(plan) => {
                            proptest::prop_assert!(right_epoch);
                            let mut expected = held.clone();
                            for (topic, partition, _) in &added {
                                expected.insert(((*topic).to_owned(), *partition));
                            }
                            for (topic, partition) in &forgotten {
                                expected.remove(&((*topic).to_owned(), *partition));
                            }
                            let read: BTreeSet<(String, i32)> = plan
                                .partitions
                                .iter()
                                .map(|(key, _)| (key.topic.clone(), key.partition))
                                .collect();
                            if let FetchKind::Incremental { .. } = plan.kind {
                                proptest::prop_assert_eq!(&read, &expected);
                            }
                            let size = if records { 10 } else { 0 };
                            let outcomes = vec![outcome(size, 10); plan.partitions.len()];
                            let answer = cache.handle_answer(now, &plan, &outcomes);
                            clients[session] = (answer.session_id != NO_SESSION_ID)
                                .then(|| (id, next_epoch(sent_epoch), expected));
                        }
                    }
                }
            }
            cache.check_invariants();
        }
    }
}
