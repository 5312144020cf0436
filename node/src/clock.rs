//! The one place that reads real time.
//!
//! Code that needs the time takes a [`Clock`] (or a `now` argument), so that simulation
//! tests can drive time by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for timeouts and ages.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch, for record timestamps and segment ages.
    fn wall_time_ms(&self) -> i64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "the one real clock")]
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[expect(clippy::disallowed_methods, reason = "the one real clock")]
    fn wall_time_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// A clock that moves only when told to: wall time is set by hand, monotonic time is a
/// fixed epoch plus the same offset.
#[derive(Clone, Debug)]
pub struct ManualClock {
    epoch: Instant,
    epoch_wall_ms: i64,
    offset_ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock starting at wall time `wall_ms`.
    pub fn new(wall_ms: i64) -> Self {
        Self {
            epoch: SystemClock.now(),
            epoch_wall_ms: wall_ms,
            offset_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        let offset = u64::try_from(self.offset_ms.load(Ordering::SeqCst)).unwrap_or(0);
        self.epoch + std::time::Duration::from_millis(offset)
    }

    fn wall_time_ms(&self) -> i64 {
        self.epoch_wall_ms + self.offset_ms.load(Ordering::SeqCst)
    }
}
