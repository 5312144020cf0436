//! `CommitQueue` alone, without a runtime or a disk: a seeded swarm of arriving appends,
//! writes, sync completions and failures, readers and time, checked after every step
//! against a model of what the disk holds.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Action, CommitPolicy, CommitQueue, Write};
use crate::clock::{Clock, ManualClock};
use crate::sim;
use crate::storage::log::AppendDurability;

/// A waiter the swarm registered and how it was answered.
struct Waiter {
    last_offset: i64,
    durability: AppendDurability,
    answers: u32,
}

/// The sync the driver runs, as the queue asked.
struct RunningSync {
    covers: i64,
    done_at: Instant,
    fails: bool,
}

struct Swarm {
    rng: ChaCha8Rng,
    queue: CommitQueue<u64>,
    policy: CommitPolicy,
    start: Instant,
    now: Instant,
    written_end: i64,
    /// One past the last offset a successful sync covered.
    durable_end: i64,
    /// Writes not yet covered by a started sync: (end offset, write time).
    unsynced: VecDeque<(i64, Instant)>,
    sync: Option<RunningSync>,
    waiters: BTreeMap<u64, Waiter>,
    next_waiter: u64,
    fenced: bool,
    /// A sync succeeded and no action came after it yet: a checkpoint may be stored now.
    checkpoint_allowed: bool,
    syncs_started: u64,
    checkpoints: u64,
    /// The size of every append that arrived, by its number.
    arrived: Vec<u64>,
    /// The number of the oldest append no write took yet.
    next_unwritten: u64,
    /// The write the queue handed out and the driver has not finished yet.
    write_in_flight: Option<Write>,
    writes: u64,
    /// Appends refused because the log was fenced when their write ran.
    refused: u64,
}

impl Swarm {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let policy = CommitPolicy {
            flush_interval: Duration::from_millis(rng.random_range(1..50)),
            checkpoint_interval: Duration::from_millis(rng.random_range(0..100)),
            sync_for_readers: rng.random_bool(0.5),
            commit_bytes_max: rng.random_range(64..4096),
        };
        let start = ManualClock::new(0).now();
        Self {
            rng,
            queue: CommitQueue::new(policy, 0, 0),
            policy,
            start,
            now: start,
            written_end: 0,
            durable_end: 0,
            unsynced: VecDeque::new(),
            sync: None,
            waiters: BTreeMap::new(),
            next_waiter: 0,
            fenced: false,
            checkpoint_allowed: false,
            syncs_started: 0,
            checkpoints: 0,
            arrived: Vec::new(),
            next_unwritten: 0,
            write_in_flight: None,
            writes: 0,
            refused: 0,
        }
    }

    fn register(&mut self, last_offset: i64, durability: AppendDurability) {
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(
            id,
            Waiter {
                last_offset,
                durability,
                answers: 0,
            },
        );
        self.queue.handle_stamped(id, last_offset, durability);
    }

    /// An append arrives: mostly smaller than a write may be, now and then larger.
    fn arrive(&mut self) {
        let max = self.policy.commit_bytes_max;
        let bytes = if self.rng.random_bool(0.05) {
            self.rng.random_range(max + 1..max * 2)
        } else {
            self.rng.random_range(1..max / 2)
        };
        let id = self.queue.handle_append(bytes);
        assert_eq!(
            id,
            self.arrived.len() as u64,
            "appends numbered in arrival order"
        );
        self.arrived.push(bytes);
        assert_eq!(
            self.queue.wants_appends(),
            self.arrived[usize::try_from(self.next_unwritten).expect("small")..]
                .iter()
                .sum::<u64>()
                < max,
            "wants more appends exactly while less than a write is queued"
        );
    }

    /// The driver asks for the next write and checks it against what arrived.
    fn start_write(&mut self) {
        let Some(write) = self.queue.poll_write() else {
            assert!(
                self.write_in_flight.is_some() || self.next_unwritten == self.arrived.len() as u64,
                "no write handed out while appends wait and none is in flight"
            );
            return;
        };
        assert!(
            self.write_in_flight.is_none(),
            "a second write handed out while {:?} is in flight",
            self.write_in_flight
        );
        let Write { appends, bytes } = &write;
        assert_eq!(
            appends.start, self.next_unwritten,
            "a write must take the oldest unwritten append: none twice, none skipped"
        );
        assert!(
            !appends.is_empty() && appends.end <= self.arrived.len() as u64,
            "write {write:?} of appends that did not arrive ({} did)",
            self.arrived.len()
        );
        let index = |id: u64| usize::try_from(id).expect("small");
        let sizes = &self.arrived[index(appends.start)..index(appends.end)];
        assert_eq!(*bytes, sizes.iter().sum::<u64>(), "the write's bytes");
        let max = self.policy.commit_bytes_max;
        assert!(
            *bytes <= max || sizes.len() == 1,
            "write {write:?} larger than {max} with more than one append"
        );
        if let Some(next) = self.arrived.get(index(appends.end)) {
            assert!(
                bytes + next > max,
                "write {write:?} left out append {} that fits ({next} bytes, max {max})",
                appends.end
            );
        }
        self.next_unwritten = appends.end;
        self.writes += 1;
        self.write_in_flight = Some(write);
    }

    /// The write in flight ends: each of its appends is one written batch group (new
    /// batches, acks=all or acks=1/0, which the log handles alike as `Written`, and retried
    /// duplicates of batches written before), or refused if the log is fenced.
    fn finish_write(&mut self) {
        let Some(write) = self.write_in_flight.take() else {
            return;
        };
        assert!(
            self.queue.poll_write().is_none(),
            "a write handed out while one runs"
        );
        if self.fenced {
            // The writer refuses appends to a fenced log; they never reach the sync queue.
            self.refused += write.appends.end - write.appends.start;
        } else {
            for _ in write.appends {
                self.append_group();
            }
        }
        self.queue.handle_write_done();
    }

    fn append_group(&mut self) {
        let mut batches = Vec::new();
        let mut wrote = false;
        for _ in 0..self.rng.random_range(1..5) {
            let durability = if self.rng.random_bool(0.5) {
                AppendDurability::Synced
            } else {
                AppendDurability::Written
            };
            if self.written_end > 0 && self.rng.random_bool(0.1) {
                let last_offset = self.rng.random_range(0..self.written_end);
                batches.push((last_offset, durability));
                continue;
            }
            let records: i64 = self.rng.random_range(1..4);
            self.written_end += records;
            wrote = true;
            batches.push((self.written_end - 1, durability));
        }
        if wrote {
            self.unsynced.push_back((self.written_end, self.now));
        }
        self.queue.handle_written(self.now, self.written_end, wrote);
        for (last_offset, durability) in batches {
            self.register(last_offset, durability);
        }
    }

    /// Takes every action the queue has and checks each against the model.
    fn drain(&mut self) {
        while let Some(action) = self.queue.poll_action() {
            match action {
                Action::StartSync => {
                    assert!(self.sync.is_none(), "a second sync started while one runs");
                    assert!(!self.fenced, "a sync started on a fenced log");
                    let latency = Duration::from_millis(self.rng.random_range(0..40));
                    self.sync = Some(RunningSync {
                        covers: self.written_end,
                        done_at: self.now + latency,
                        fails: self.rng.random_bool(0.002),
                    });
                    self.syncs_started += 1;
                    self.unsynced.clear();
                    self.checkpoint_allowed = false;
                }
                Action::StoreCheckpoint => {
                    assert!(
                        self.checkpoint_allowed,
                        "a checkpoint asked for without a successful sync before it"
                    );
                    self.checkpoint_allowed = false;
                    self.checkpoints += 1;
                    if self.rng.random_bool(0.002) {
                        self.fenced = true;
                        self.queue
                            .handle_fence("checkpoint write failed".to_string());
                    }
                }
                Action::Acknowledge(id) => {
                    assert!(!self.fenced, "waiter {id} acknowledged after the fence");
                    self.checkpoint_allowed = false;
                    let durable_end = self.durable_end;
                    let waiter = self.waiters.get_mut(&id).expect("a registered waiter");
                    waiter.answers += 1;
                    assert_eq!(waiter.answers, 1, "waiter {id} answered twice");
                    if waiter.durability == AppendDurability::Synced {
                        assert!(
                            waiter.last_offset < durable_end,
                            "waiter {id} acknowledged at {} above the durable end {durable_end}",
                            waiter.last_offset
                        );
                    }
                }
                Action::Fail { waiter: id, .. } => {
                    assert!(self.fenced, "waiter {id} failed without a fence");
                    let waiter = self.waiters.get_mut(&id).expect("a registered waiter");
                    waiter.answers += 1;
                    assert_eq!(waiter.answers, 1, "waiter {id} answered twice");
                }
            }
        }
    }

    /// Delivers every event due at `now` (a finished sync, the flush timer) until none is.
    fn deliver_due(&mut self) {
        loop {
            self.drain();
            if let Some(sync) = self.sync.take_if(|sync| sync.done_at <= self.now) {
                if sync.fails {
                    self.fenced = true;
                    self.queue
                        .handle_sync_done(self.now, Err("fdatasync failed".to_string()));
                } else {
                    self.durable_end = self.durable_end.max(sync.covers);
                    self.checkpoint_allowed = true;
                    self.queue.handle_sync_done(self.now, Ok(()));
                }
                continue;
            }
            if let Some(deadline) = self.queue.poll_timeout()
                && deadline <= self.now
            {
                self.queue.handle_timeout(self.now);
                self.drain();
                assert!(
                    self.queue.poll_timeout().is_none_or(|next| next > self.now),
                    "the flush timer fired without effect"
                );
                continue;
            }
            break;
        }
        self.check_flush_interval();
    }

    /// acks=1 data is covered by a started sync within `flush_interval` of its write,
    /// unless a sync already running (or a fence) holds it back.
    fn check_flush_interval(&self) {
        if self.fenced || self.sync.is_some() {
            return;
        }
        if let Some((_, written_at)) = self.unsynced.front() {
            assert!(
                self.now < *written_at + self.policy.flush_interval,
                "data written at +{:?} unsynced at +{:?} (flush interval {:?})",
                *written_at - self.start,
                self.now - self.start,
                self.policy.flush_interval
            );
        }
    }

    /// Moves time forward by up to `by`, stopping at every event on the way.
    fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        loop {
            let next_event = [
                self.sync.as_ref().map(|sync| sync.done_at),
                self.queue.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .filter(|at| *at <= target)
            .min();
            match next_event {
                Some(at) => {
                    self.now = self.now.max(at);
                    self.deliver_due();
                }
                None => break,
            }
        }
        self.now = target;
        self.deliver_due();
    }

    fn step(&mut self) {
        match self.rng.random_range(0..10) {
            0..=2 => self.arrive(),
            3 => self.start_write(),
            4 => self.finish_write(),
            5 | 6 => {
                let by = Duration::from_millis(self.rng.random_range(0..20));
                self.advance(by);
            }
            7 | 8 => {
                let waiting = self.rng.random_bool(0.5);
                self.queue.handle_reader_waiting(waiting);
            }
            _ => {
                if self.rng.random_bool(0.005) {
                    // A write or roll failure fences the log from the driver's side.
                    self.fenced = true;
                    self.queue.handle_fence("write failed".to_string());
                }
            }
        }
        self.deliver_due();
    }

    /// No more appends: time runs until nothing is left to do, then every waiter must have
    /// its one answer (acknowledged, or failed by a fence).
    fn finish(&mut self) {
        // Every append that arrived is written (or refused on a fenced log), exactly once.
        self.finish_write();
        loop {
            self.start_write();
            if self.write_in_flight.is_none() {
                break;
            }
            self.finish_write();
            self.deliver_due();
        }
        assert_eq!(
            self.next_unwritten,
            self.arrived.len() as u64,
            "appends left unwritten"
        );
        for _ in 0..1000 {
            if self.sync.is_none() && self.queue.poll_timeout().is_none() {
                break;
            }
            self.advance(Duration::from_millis(10));
        }
        assert!(self.sync.is_none(), "a sync still runs at the end");
        for (id, waiter) in &self.waiters {
            assert_eq!(
                waiter.answers, 1,
                "waiter {id} answered {} times",
                waiter.answers
            );
        }
        if !self.fenced {
            assert_eq!(
                self.durable_end, self.written_end,
                "written data left unsynced"
            );
            assert_eq!(self.queue.durable_end(), self.durable_end);
        }
    }
}

// Goal: the group-commit policy keeps its promises under any order and timing of appends,
// writes, sync completions and failures, readers and time: appends written in arrival
// order, each once, one write at a time, none larger than commit_bytes_max unless one
// append alone is, every append written (or refused when fenced); never an acks=all answer
// above what a finished sync covers, one sync at a time, acks=1 data synced within the
// flush interval, every append answered exactly once, nothing acknowledged after a fence.
#[test]
fn commit_queue_swarm() {
    let mut totals = (0u64, 0u64, 0u64, 0u64);
    let (mut writes, mut oversized, mut refused) = (0u64, 0u64, 0u64);
    for seed in sim::seeds(1, 500) {
        let mut swarm = Swarm::new(seed);
        for _ in 0..600 {
            swarm.step();
        }
        swarm.finish();
        totals.0 += swarm.next_waiter;
        totals.1 += swarm.syncs_started;
        totals.2 += swarm.checkpoints;
        totals.3 += u64::from(swarm.fenced);
        writes += swarm.writes;
        let max = swarm.policy.commit_bytes_max;
        oversized += swarm.arrived.iter().filter(|bytes| **bytes > max).count() as u64;
        refused += swarm.refused;
    }
    // The swarm reaches what it is meant to test (if these fail, it stopped testing).
    let (waiters, syncs, checkpoints, fenced) = totals;
    if std::env::var("LEDGE_SIM_SEED").is_err() {
        assert!(waiters > 100_000, "{waiters} appends");
        assert!(syncs > 10_000, "{syncs} syncs");
        assert!(checkpoints > 1_000, "{checkpoints} checkpoints");
        assert!(fenced > 10 && fenced < 490, "{fenced} of 500 runs fenced");
        assert!(writes > 10_000, "{writes} writes");
        assert!(oversized > 1_000, "{oversized} appends larger than a write");
        assert!(refused > 100, "{refused} appends refused on a fenced log");
    }
}

// Goal: one sync covers a whole group of acks=all appends, and they are answered only when
// it finishes; data written during the sync waits for the next one.
#[test]
fn one_sync_covers_a_group_and_later_writes_wait() {
    let now = ManualClock::new(0).now();
    let policy = CommitPolicy {
        flush_interval: Duration::from_millis(100),
        checkpoint_interval: Duration::from_secs(5),
        sync_for_readers: false,
        commit_bytes_max: 4096,
    };
    let mut queue = CommitQueue::new(policy, 0, 0);
    queue.handle_written(now, 3, true);
    for (id, last) in [(0, 0), (1, 1), (2, 2)] {
        queue.handle_stamped(id, last, AppendDurability::Synced);
    }
    assert_eq!(queue.poll_action(), Some(Action::StartSync));
    assert_eq!(queue.poll_action(), None);
    queue.handle_written(now, 4, true);
    queue.handle_stamped(3, 3, AppendDurability::Synced);
    assert_eq!(queue.poll_action(), None, "one sync at a time");
    queue.handle_sync_done(now, Ok(()));
    assert_eq!(queue.poll_action(), Some(Action::StoreCheckpoint));
    for id in 0..3 {
        assert_eq!(queue.poll_action(), Some(Action::Acknowledge(id)));
    }
    assert_eq!(queue.poll_action(), Some(Action::StartSync));
    queue.handle_sync_done(now, Ok(()));
    // Within the checkpoint interval: no second checkpoint.
    assert_eq!(queue.poll_action(), Some(Action::Acknowledge(3)));
    assert_eq!(queue.poll_action(), None);
    assert_eq!(queue.durable_end(), 4);
}

// Goal: acks=1 data is synced when the flush interval after its write has passed, not
// before (unless a reader waits and `sync_for_readers` is on).
#[test]
fn written_data_is_synced_at_the_flush_interval_or_for_a_reader() {
    let start = ManualClock::new(0).now();
    let policy = CommitPolicy {
        flush_interval: Duration::from_millis(100),
        checkpoint_interval: Duration::from_secs(5),
        sync_for_readers: true,
        commit_bytes_max: 4096,
    };
    let mut queue = CommitQueue::new(policy, 0, 0);
    queue.handle_written(start, 1, true);
    queue.handle_stamped(0, 0, AppendDurability::Written);
    assert_eq!(queue.poll_action(), Some(Action::Acknowledge(0)));
    assert_eq!(queue.poll_action(), None);
    let deadline = start + Duration::from_millis(100);
    assert_eq!(queue.poll_timeout(), Some(deadline));
    queue.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(queue.poll_action(), None, "not before the interval");
    queue.handle_timeout(deadline);
    assert_eq!(queue.poll_action(), Some(Action::StartSync));
    assert_eq!(queue.poll_timeout(), None, "no timer while a sync runs");
    queue.handle_sync_done(deadline, Ok(()));
    assert_eq!(queue.poll_action(), Some(Action::StoreCheckpoint));
    assert_eq!(queue.poll_action(), None);

    queue.handle_written(deadline, 2, true);
    assert_eq!(queue.poll_action(), None);
    queue.handle_reader_waiting(true);
    assert_eq!(
        queue.poll_action(),
        Some(Action::StartSync),
        "a reader waits"
    );
}

// Goal: a failed sync fences: the appends waiting for it fail, none is acknowledged, no
// sync starts again and no timer is left running.
#[test]
fn a_failed_sync_fails_the_waiting_appends_and_stops_everything() {
    let now = ManualClock::new(0).now();
    let policy = CommitPolicy {
        flush_interval: Duration::from_millis(100),
        checkpoint_interval: Duration::ZERO,
        sync_for_readers: true,
        commit_bytes_max: 4096,
    };
    let mut queue = CommitQueue::new(policy, 0, 0);
    queue.handle_written(now, 2, true);
    queue.handle_stamped(0, 1, AppendDurability::Synced);
    assert_eq!(queue.poll_action(), Some(Action::StartSync));
    queue.handle_written(now, 3, true);
    queue.handle_stamped(1, 2, AppendDurability::Synced);
    queue.handle_sync_done(now, Err("EIO".to_string()));
    for id in 0..2 {
        assert_eq!(
            queue.poll_action(),
            Some(Action::Fail {
                waiter: id,
                reason: "EIO".to_string()
            })
        );
    }
    queue.handle_reader_waiting(true);
    queue.request_sync();
    assert_eq!(queue.poll_action(), None);
    assert_eq!(queue.poll_timeout(), None);
    assert_eq!(queue.durable_end(), 0);
}

// Goal: a write takes the oldest queued appends, in arrival order, as many as fit
// commit_bytes_max together; one larger append goes alone; the next write waits for the
// end of the one in flight.
#[test]
fn writes_take_queued_appends_in_order_up_to_commit_bytes_max() {
    let policy = CommitPolicy {
        flush_interval: Duration::from_millis(100),
        checkpoint_interval: Duration::from_secs(5),
        sync_for_readers: false,
        commit_bytes_max: 100,
    };
    let mut queue = CommitQueue::<u64>::new(policy, 0, 0);
    assert_eq!(queue.poll_write(), None, "nothing queued");
    for bytes in [40, 50, 20, 150, 30] {
        queue.handle_append(bytes);
    }
    assert!(!queue.wants_appends(), "more than one write is queued");
    assert_eq!(
        queue.poll_write(),
        Some(Write {
            appends: 0..2,
            bytes: 90
        })
    );
    assert_eq!(queue.poll_write(), None, "one write at a time");
    queue.handle_write_done();
    assert_eq!(
        queue.poll_write(),
        Some(Write {
            appends: 2..3,
            bytes: 20
        }),
        "the 150-byte append does not fit after it"
    );
    queue.handle_write_done();
    assert_eq!(
        queue.poll_write(),
        Some(Write {
            appends: 3..4,
            bytes: 150
        }),
        "an append larger than a write goes alone"
    );
    queue.handle_write_done();
    assert!(queue.wants_appends());
    assert_eq!(
        queue.poll_write(),
        Some(Write {
            appends: 4..5,
            bytes: 30
        })
    );
    queue.handle_write_done();
    assert_eq!(queue.poll_write(), None);
}
