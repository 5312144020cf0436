//! Incremental fetch sessions (KIP-227): the broker-wide session cache, without IO.
//!
//! A consumer with many partitions would send and receive every partition on every fetch.
//! With a session the node remembers what the client asked for each partition and what it
//! last answered, so the client sends only partitions whose request changed (and the ones it
//! stops reading, `forgotten_topics_data`), and the node answers only partitions with
//! records, a moved high watermark or log start offset, an error, or a diverging epoch. The
//! rules are Kafka's (`core/src/main/scala/kafka/server/FetchSession.scala`,
//! `FetchMetadata.java`):
//!
//! - session id 0 and epoch 0: a full fetch; once answered, a session is created if the
//!   cache has room (or can evict one, below) and its id is answered; 0 otherwise.
//! - epoch -1 (FINAL): a sessionless full fetch; a named session is closed.
//! - epoch 0 with a session id: that session is closed and a new one may be created.
//! - a session id and epoch > 0: an incremental fetch. The epoch must be the one the session
//!   expects (1 after creation, then +1 per fetch, wrapping to 1), else
//!   INVALID_FETCH_SESSION_EPOCH; an unknown id is FETCH_SESSION_ID_NOT_FOUND; a session
//!   created with topic ids (Fetch v13+) must go on with them and one created with names
//!   with names, else FETCH_SESSION_TOPIC_ID_ERROR. A session left with no partitions is
//!   closed and the fetch answered without one.
//!
//! Bounds, all in [`FetchSessionLimits`] (`[kafka]` keys in docs/OPERATIONS.md): at most
//! `sessions_max` sessions and `partitions_max` cached partitions over all of them. A session
//! unused for `idle_max` is dropped (Kafka keeps sessions until evicted; an edge box should
//! not hold memory for consumers that went away). When the cache is full a new session may
//! evict, as Kafka's `tryEvict`: the least recently used session if it has been idle longer
//! than `eviction_min`, else the smallest session (in partitions) created more than
//! `eviction_min` ago, if the new one is strictly larger. Kafka's "privileged" follower
//! sessions do not exist here: the node's followers replicate over QUIC, not Kafka's Fetch.
//!
//! The cache is a plain struct: time comes in as `now`, session ids from a seeded PRNG. The
//! Fetch handler (`handlers/fetch.rs`) calls [`FetchSessionCache::handle_request`] before
//! reading and [`FetchSessionCache::handle_answer`] after, holding the lock only inside each.
//! Partitions are keyed by topic name (the node serves Fetch up to v12, where requests name
//! topics); a v13+ handler resolves topic ids to names first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[cfg(test)]
mod tests;

/// Kafka's "no session" id.
pub const NO_SESSION_ID: i32 = 0;
/// The epoch of a full fetch that asks for a new session.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a full fetch that closes its session and asks for none.
pub const FINAL_EPOCH: i32 = -1;

/// Default `[kafka] fetch_sessions_max`: Kafka's `max.incremental.fetch.session.cache.slots`.
pub const FETCH_SESSIONS_MAX_DEFAULT: usize = 1000;
/// Largest `[kafka] fetch_sessions_max`.
pub const FETCH_SESSIONS_MAX_LIMIT: usize = 1_000_000;
/// Default `[kafka] fetch_session_partitions_max`: cached partitions over all sessions. A
/// cached partition takes about 150 bytes plus twice its topic name (the map key and the
/// read order each hold one), so the default bounds the cache near 20 MB for 20-character
/// names; 1000 consumers of 100 partitions each fit.
pub const FETCH_SESSION_PARTITIONS_MAX_DEFAULT: usize = 100_000;
/// Largest `[kafka] fetch_session_partitions_max`.
pub const FETCH_SESSION_PARTITIONS_MAX_LIMIT: usize = 100_000_000;
/// Default `[kafka] fetch_session_idle_max_ms`: a session unused for 5 minutes is dropped.
/// Consumers fetch every `fetch.max.wait.ms` (500 ms) while they read; one that paused longer
/// pays a full fetch when it comes back.
pub const FETCH_SESSION_IDLE_MAX_MS_DEFAULT: u64 = 300_000;
/// Default `[kafka] fetch_session_eviction_min_ms`: Kafka's
/// `MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS` (2 minutes).
pub const FETCH_SESSION_EVICTION_MIN_MS_DEFAULT: u64 = 120_000;
/// Largest `[kafka] fetch_session_idle_max_ms` and `fetch_session_eviction_min_ms`: one day.
pub const FETCH_SESSION_DURATION_MS_LIMIT: u64 = 24 * 60 * 60 * 1000;

/// Session ids drawn before a creation gives up. The cache holds at most
/// [`FETCH_SESSIONS_MAX_LIMIT`] of 2^31 - 1 ids, so a draw collides with odds under 1/2000
/// and 16 collisions in a row never happen in practice.
const SESSION_ID_DRAWS_MAX: usize = 16;

// A full cache must leave most ids free, or drawing a fresh one could take many tries.
const _: () = assert!(FETCH_SESSIONS_MAX_LIMIT < (i32::MAX as usize) / 1000);

/// The cache's bounds (`[kafka] fetch_sessions_max`, `fetch_session_partitions_max`,
/// `fetch_session_idle_max_ms`, `fetch_session_eviction_min_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchSessionLimits {
    /// Most sessions at once; 0 turns sessions off (every fetch is a full fetch).
    pub sessions_max: usize,
    /// Most cached partitions over all sessions.
    pub partitions_max: usize,
    /// A session unused this long is dropped.
    pub idle_max: Duration,
    /// A session may be evicted for a new one only once it is this old, or idle this long.
    pub eviction_min: Duration,
}

impl Default for FetchSessionLimits {
    fn default() -> Self {
        Self {
            sessions_max: FETCH_SESSIONS_MAX_DEFAULT,
            partitions_max: FETCH_SESSION_PARTITIONS_MAX_DEFAULT,
            idle_max: Duration::from_millis(FETCH_SESSION_IDLE_MAX_MS_DEFAULT),
            eviction_min: Duration::from_millis(FETCH_SESSION_EVICTION_MIN_MS_DEFAULT),
        }
    }
}

/// One partition of a fetch: topic name and partition index, as the client sent them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionPartition {
    /// Topic name (an owned copy: a name sliced from the request would pin its whole frame).
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// What a client asks of one partition; a session remembers the last one per partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionFetch {
    /// First offset wanted.
    pub fetch_offset: i64,
    /// Most bytes for this partition.
    pub partition_max_bytes: i32,
    /// The leader epoch the client knows (-1: no check).
    pub current_leader_epoch: i32,
    /// The fetcher's own log start offset (followers; -1 for consumers).
    pub log_start_offset: i64,
    /// The epoch of the last batch the client fetched (-1: unknown).
    pub last_fetched_epoch: i32,
}

/// What an answer says of one partition, as far as a session cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionOutcome {
    /// Bytes of records answered.
    pub records_bytes: usize,
    /// The high watermark answered.
    pub high_watermark: i64,
    /// The log start offset answered.
    pub log_start_offset: i64,
    /// The partition's error code (0: none).
    pub error_code: i16,
    /// The answer is a diverging epoch (Fetch v12+): the fetcher must truncate.
    pub diverging: bool,
}

/// A fetch request's session fields and partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    /// `session_id`.
    pub session_id: i32,
    /// `session_epoch`.
    pub epoch: i32,
    /// The request names topics by id (Fetch v13+).
    pub uses_topic_ids: bool,
    /// The partitions listed, in request order.
    pub partitions: Vec<(SessionPartition, PartitionFetch)>,
    /// `forgotten_topics_data`: partitions to drop from the session.
    pub forgotten: Vec<SessionPartition>,
}

/// Why a fetch was refused for its session fields (Kafka's top-level fetch errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchSessionError {
    /// The epoch is not the one the session expects (a duplicate or lost request); the
    /// client starts over with a full fetch.
    #[error("the session expects another epoch")]
    InvalidEpoch,
    /// No such session (closed, evicted or expired); the client starts over.
    #[error("no such fetch session")]
    SessionIdNotFound,
    /// The session was created with topic ids and the request names topics, or the other
    /// way round.
    #[error("the request and the session disagree on topic ids")]
    TopicIdMismatch,
}

/// How to answer a fetch: which partitions to read, in order, and what the answer closes
/// or continues. Pass it back to [`FetchSessionCache::handle_answer`] with the outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    /// What kind of fetch this is.
    pub kind: FetchKind,
    /// The partitions to read and answer, in order (duplicates kept for sessionless and
    /// full fetches, as the client listed them).
    pub partitions: Vec<(SessionPartition, PartitionFetch)>,
    /// A session this request closed, for the log.
    pub closed: Option<SessionSummary>,
}

/// The kind of a planned fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchKind {
    /// A full fetch that may open a session once answered.
    Full {
        /// The session would key topics by id.
        uses_topic_ids: bool,
    },
    /// An incremental fetch: every partition of the session is read, and the answer keeps
    /// only those with news.
    Incremental {
        /// The session.
        session_id: i32,
        /// The epoch the session expects next (the request's, plus one).
        next_epoch: i32,
    },
    /// A full fetch answered without a session.
    Sessionless,
}

/// A closed session's story, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    /// Its id.
    pub session_id: i32,
    /// Partitions it held.
    pub partitions: usize,
    /// Incremental fetches it served.
    pub incremental_fetches: u64,
    /// Why it was closed.
    pub reason: CloseReason,
}

/// Why a request closed its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// An incremental request forgot its last partition.
    Emptied,
    /// A full fetch with the FINAL epoch (a client closing, as Java's consumer does).
    Final,
    /// An incremental request grew it past `partitions_max`.
    OverPartitionBudget,
    /// A full fetch with epoch 0 named it (the client starts over, after an error).
    Reopened,
}

/// How to answer: the session id to send, and which of the plan's partitions to include.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionAnswer {
    /// `session_id` of the response (0: none).
    pub session_id: i32,
    /// A refusal of the whole fetch (the session moved on meanwhile).
    pub error: Option<FetchSessionError>,
    /// One per planned partition: include it in the response.
    pub include: Vec<bool>,
}

/// The broker-wide session cache (one per node, shared by its Kafka listeners).
#[derive(Debug)]
pub struct FetchSessionCache {
    limits: FetchSessionLimits,
    sessions: HashMap<i32, FetchSession>,
    /// (last used, id) of every session: the idle ones first.
    by_last_used: BTreeSet<(Instant, i32)>,
    /// (partitions, id) of every session: the smallest first.
    by_size: BTreeSet<(usize, i32)>,
    /// Cached partitions over all sessions.
    partitions_cached: usize,
    ids: ChaCha8Rng,
    counters: SessionCounters,
}

/// What the cache has done since it started (for tests and logs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Sessions created.
    pub created: u64,
    /// Full fetches that found no room for a session.
    pub refused: u64,
    /// Sessions evicted for a new one.
    pub evicted: u64,
    /// Sessions dropped after `idle_max` unused.
    pub expired: u64,
    /// Incremental fetches served.
    pub incremental_fetches: u64,
}

#[derive(Debug)]
struct FetchSession {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    uses_topic_ids: bool,
    created_at: Instant,
    last_used: Instant,
    /// Its size in `by_size` and `partitions_cached` (Kafka's `cachedSize`): the size at its
    /// last touch.
    indexed_size: usize,
    /// Cached partitions with their place in `order`.
    partitions: HashMap<SessionPartition, (u64, CachedPartition)>,
    /// Read order: partitions that answered records move to the back, so a fetch whose
    /// `max_bytes` runs out before the end serves the others first next time (Kafka's
    /// rotation).
    order: BTreeMap<u64, SessionPartition>,
    next_place: u64,
    incremental_fetches: u64,
}

#[derive(Clone, Copy, Debug)]
struct CachedPartition {
    request: PartitionFetch,
    /// The high watermark last answered; -1 after an error, so the partition is answered
    /// again once the error is gone.
    high_watermark: i64,
    /// The log start offset last answered.
    log_start_offset: i64,
}

impl FetchSessionCache {
    /// An empty cache; session ids come from `seed`.
    pub fn new(limits: FetchSessionLimits, seed: u64) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            by_last_used: BTreeSet::new(),
            by_size: BTreeSet::new(),
            partitions_cached: 0,
            ids: ChaCha8Rng::seed_from_u64(seed),
            counters: SessionCounters::default(),
        }
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Cached partitions over all sessions.
    pub fn partitions_cached(&self) -> usize {
        self.partitions_cached
    }

    /// What the cache has done so far.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Plans a fetch from its session fields (Kafka's `FetchManager.newContext`). For an
    /// incremental fetch this updates the session (added, changed and forgotten partitions)
    /// and moves its epoch on.
    pub fn handle_request(
        &mut self,
        now: Instant,
        request: SessionRequest,
    ) -> Result<FetchPlan, FetchSessionError> {
        self.expire(now);
        let SessionRequest {
            session_id,
            epoch,
            uses_topic_ids,
            partitions,
            forgotten,
        } = request;
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // Any session named by a full fetch is closed.
            let closed = self.remove(session_id).map(|session| SessionSummary {
                session_id,
                partitions: session.partitions.len(),
                incremental_fetches: session.incremental_fetches,
                reason: if epoch == FINAL_EPOCH {
                    CloseReason::Final
                } else {
                    CloseReason::Reopened
                },
            });
            let kind = if epoch == FINAL_EPOCH {
                FetchKind::Sessionless
            } else {
                FetchKind::Full { uses_topic_ids }
            };
            return Ok(FetchPlan {
                kind,
                partitions,
                closed,
            });
        }
        // Other negative epochs: Kafka finds no session for them either (its epochs are
        // never negative), or the epoch does not match.
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return Err(FetchSessionError::SessionIdNotFound);
        };
        if session.epoch != epoch {
            return Err(FetchSessionError::InvalidEpoch);
        }
        if session.uses_topic_ids != uses_topic_ids {
            return Err(FetchSessionError::TopicIdMismatch);
        }
        let size_before = session.indexed_size;
        for (key, fetch) in &partitions {
            session.upsert(key, *fetch);
        }
        for key in &forgotten {
            session.forget(key);
        }
        let size_after = session.partitions.len();
        if size_after == 0 {
            // Nothing left to read: close it and answer what was asked without a session.
            let summary = SessionSummary {
                session_id,
                partitions: 0,
                incremental_fetches: session.incremental_fetches,
                reason: CloseReason::Emptied,
            };
            self.remove(session_id);
            return Ok(FetchPlan {
                kind: FetchKind::Sessionless,
                partitions,
                closed: Some(summary),
            });
        }
        let over_budget =
            self.partitions_cached - size_before + size_after > self.limits.partitions_max;
        if over_budget {
            // The session grew past the cache's partition budget: answer every partition it
            // holds without a session. The client sees an incremental answer closing its
            // session (session id 0) and starts over with a full fetch.
            let Some(session) = self.remove(session_id) else {
                return Err(FetchSessionError::SessionIdNotFound);
            };
            let summary = SessionSummary {
                session_id,
                partitions: session.partitions.len(),
                incremental_fetches: session.incremental_fetches,
                reason: CloseReason::OverPartitionBudget,
            };
            return Ok(FetchPlan {
                kind: FetchKind::Sessionless,
                partitions: session.in_order(),
                closed: Some(summary),
            });
        }
        let next_epoch = next_epoch(epoch);
        session.epoch = next_epoch;
        session.incremental_fetches += 1;
        let ordered = session.in_order();
        self.counters.incremental_fetches += 1;
        self.touch(session_id, now);
        Ok(FetchPlan {
            kind: FetchKind::Incremental {
                session_id,
                next_epoch,
            },
            partitions: ordered,
            closed: None,
        })
    }

    /// Settles a fetch once read: `outcomes` are the plan's partitions' answers, in plan
    /// order. A full fetch may create a session here; an incremental one keeps only the
    /// partitions with news (Kafka's `maybeUpdateResponseData`) and remembers what it sent.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        plan: &FetchPlan,
        outcomes: &[PartitionOutcome],
    ) -> SessionAnswer {
        self.expire(now);
        let every = vec![true; plan.partitions.len()];
        match plan.kind {
            FetchKind::Sessionless => SessionAnswer {
                session_id: NO_SESSION_ID,
                error: None,
                include: every,
            },
            FetchKind::Full { uses_topic_ids } => SessionAnswer {
                session_id: self.create(now, uses_topic_ids, &plan.partitions, outcomes),
                error: None,
                include: every,
            },
            FetchKind::Incremental {
                session_id,
                next_epoch,
            } => {
                let Some(session) = self.sessions.get_mut(&session_id) else {
                    // Closed, evicted or expired while the fetch was read: the records are
                    // still good; answer them all and no session (the client starts over).
                    return SessionAnswer {
                        session_id: NO_SESSION_ID,
                        error: None,
                        include: every,
                    };
                };
                if session.epoch != next_epoch {
                    // Another request with this epoch came in meanwhile (Kafka: "possible
                    // duplicate request").
                    return SessionAnswer {
                        session_id,
                        error: Some(FetchSessionError::InvalidEpoch),
                        include: vec![false; plan.partitions.len()],
                    };
                }
                let include = plan
                    .partitions
                    .iter()
                    .zip(outcomes)
                    .map(|((key, _), outcome)| session.settle(key, outcome))
                    .collect();
                SessionAnswer {
                    session_id,
                    error: None,
                    include,
                }
            }
        }
    }

    /// Creates a session for a full fetch's partitions if there is room; its id, or
    /// [`NO_SESSION_ID`].
    fn create(
        &mut self,
        now: Instant,
        uses_topic_ids: bool,
        partitions: &[(SessionPartition, PartitionFetch)],
        outcomes: &[PartitionOutcome],
    ) -> i32 {
        let mut session = FetchSession {
            epoch: next_epoch(INITIAL_EPOCH),
            uses_topic_ids,
            created_at: now,
            last_used: now,
            indexed_size: 0,
            partitions: HashMap::new(),
            order: BTreeMap::new(),
            next_place: 0,
            incremental_fetches: 0,
        };
        for ((key, fetch), outcome) in partitions.iter().zip(outcomes) {
            // A partition listed twice keeps its last request, as Kafka's map does.
            session.upsert(key, *fetch);
            if let Some((_, cached)) = session.partitions.get_mut(key) {
                cached.high_watermark = outcome.high_watermark;
                cached.log_start_offset = outcome.log_start_offset;
            }
        }
        let size = session.partitions.len();
        // An empty session could never be fetched incrementally (Kafka creates it and closes
        // it on the next fetch; this skips the round).
        if self.limits.sessions_max == 0 || size == 0 {
            return NO_SESSION_ID;
        }
        let room = |cache: &Self| {
            cache.sessions.len() < cache.limits.sessions_max
                && cache.partitions_cached + size <= cache.limits.partitions_max
        };
        let has_room = room(self) || (self.try_evict(now, size) && room(self));
        if !has_room {
            self.counters.refused += 1;
            return NO_SESSION_ID;
        }
        let Some(session_id) = self.fresh_id() else {
            self.counters.refused += 1;
            return NO_SESSION_ID;
        };
        session.indexed_size = size;
        self.sessions.insert(session_id, session);
        self.by_last_used.insert((now, session_id));
        self.by_size.insert((size, session_id));
        self.partitions_cached += size;
        self.counters.created += 1;
        session_id
    }

    /// Kafka's `tryEvict` for a new session of `size` partitions: the least recently used
    /// session if idle longer than `eviction_min`, else the smallest session created more
    /// than `eviction_min` ago if it is smaller than the new one. True if one was evicted.
    fn try_evict(&mut self, now: Instant, size: usize) -> bool {
        let old_enough =
            |since: Instant| now.saturating_duration_since(since) > self.limits.eviction_min;
        let stale = self
            .by_last_used
            .first()
            .filter(|(last_used, _)| old_enough(*last_used))
            .map(|(_, id)| *id);
        // By size, smallest first: the first one old enough is the candidate; the scan stops
        // at the first session not smaller than the new one.
        let smaller = || {
            self.by_size
                .iter()
                .take_while(|(cached, _)| *cached < size)
                .find(|(_, id)| {
                    self.sessions
                        .get(id)
                        .is_some_and(|session| old_enough(session.created_at))
                })
                .map(|(_, id)| *id)
        };
        match stale.or_else(smaller) {
            Some(victim) => {
                self.remove(victim);
                self.counters.evicted += 1;
                true
            }
            None => false,
        }
    }

    /// Drops sessions unused for `idle_max`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(last_used, id)) = self.by_last_used.first() {
            if now.saturating_duration_since(last_used) < self.limits.idle_max {
                break;
            }
            self.remove(id);
            self.counters.expired += 1;
        }
    }

    /// Removes session `id` and its index entries.
    fn remove(&mut self, id: i32) -> Option<FetchSession> {
        let session = self.sessions.remove(&id)?;
        self.by_last_used.remove(&(session.last_used, id));
        self.by_size.remove(&(session.indexed_size, id));
        self.partitions_cached -= session.indexed_size;
        Some(session)
    }

    /// Records that session `id` was used now, and indexes its current size.
    fn touch(&mut self, id: i32, now: Instant) {
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        self.by_last_used.remove(&(session.last_used, id));
        session.last_used = now;
        self.by_last_used.insert((now, id));
        let size = session.partitions.len();
        self.by_size.remove(&(session.indexed_size, id));
        self.by_size.insert((size, id));
        self.partitions_cached = self.partitions_cached - session.indexed_size + size;
        session.indexed_size = size;
    }

    /// A session id not in use, or `None` after [`SESSION_ID_DRAWS_MAX`] collisions.
    fn fresh_id(&mut self) -> Option<i32> {
        (0..SESSION_ID_DRAWS_MAX)
            .map(|_| self.ids.random_range(1..=i32::MAX))
            .find(|id| !self.sessions.contains_key(id))
    }
}

#[cfg(test)]
impl FetchSessionCache {
    /// Panics unless the indexes agree with the sessions and the bounds hold.
    pub(crate) fn check_invariants(&self) {
        assert!(self.sessions.len() <= self.limits.sessions_max);
        assert!(self.partitions_cached <= self.limits.partitions_max);
        assert_eq!(self.by_last_used.len(), self.sessions.len());
        assert_eq!(self.by_size.len(), self.sessions.len());
        let mut total = 0;
        for (id, session) in &self.sessions {
            assert!(*id > 0);
            assert!(session.epoch > 0);
            assert_eq!(session.indexed_size, session.partitions.len());
            assert_eq!(session.order.len(), session.partitions.len());
            assert!(self.by_last_used.contains(&(session.last_used, *id)));
            assert!(self.by_size.contains(&(session.indexed_size, *id)));
            for (place, key) in &session.order {
                assert_eq!(session.partitions.get(key).map(|(at, _)| *at), Some(*place));
            }
            total += session.indexed_size;
        }
        assert_eq!(total, self.partitions_cached);
    }
}

impl FetchSession {
    /// Adds `key` at the back, or updates its request in place (Kafka's `update`).
    fn upsert(&mut self, key: &SessionPartition, request: PartitionFetch) {
        match self.partitions.get_mut(key) {
            Some((_, cached)) => cached.request = request,
            None => {
                let place = self.next_place;
                self.next_place += 1;
                self.order.insert(place, key.clone());
                self.partitions.insert(
                    key.clone(),
                    (
                        place,
                        CachedPartition {
                            request,
                            high_watermark: -1,
                            log_start_offset: -1,
                        },
                    ),
                );
            }
        }
    }

    fn forget(&mut self, key: &SessionPartition) {
        if let Some((place, _)) = self.partitions.remove(key) {
            self.order.remove(&place);
        }
    }

    /// The partitions with their requests, in read order.
    fn in_order(&self) -> Vec<(SessionPartition, PartitionFetch)> {
        self.order
            .values()
            .filter_map(|key| {
                let (_, cached) = self.partitions.get(key)?;
                Some((key.clone(), cached.request))
            })
            .collect()
    }

    /// Whether an incremental answer must carry this partition, remembering what it
    /// carries (Kafka's `CachedPartition.maybeUpdateResponseData`).
    fn settle(&mut self, key: &SessionPartition, outcome: &PartitionOutcome) -> bool {
        let Some((place, cached)) = self.partitions.get_mut(key) else {
            // Forgotten by a later request meanwhile: the client no longer wants it.
            return false;
        };
        let mut include = outcome.records_bytes > 0;
        if cached.high_watermark != outcome.high_watermark {
            include = true;
            cached.high_watermark = outcome.high_watermark;
        }
        if cached.log_start_offset != outcome.log_start_offset {
            include = true;
            cached.log_start_offset = outcome.log_start_offset;
        }
        if outcome.error_code != 0 {
            // Answered every time; -1 makes the first good answer after it go out too.
            include = true;
            cached.high_watermark = -1;
        }
        if outcome.diverging {
            // Answered every time, to trigger the fetcher's truncation (Kafka's rule).
            include = true;
        }
        if outcome.records_bytes > 0 {
            // To the back: partitions that got nothing go first next time.
            let old = *place;
            let new = self.next_place;
            self.next_place += 1;
            *place = new;
            if let Some(moved) = self.order.remove(&old) {
                self.order.insert(new, moved);
            }
        }
        include
    }
}

/// Kafka's `FetchMetadata.nextEpoch`: +1, wrapping from `i32::MAX` to 1.
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}
