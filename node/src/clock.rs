//! The one place that reads time and waits for it.
//!
//! Code that needs the time takes a [`Clock`] (or a `now` argument), and code that waits
//! (sleeps, timeouts, deadlines) waits on the same clock through [`Clock::sleep_until`],
//! [`sleep`], [`timeout`] and [`timeout_at`]. `clippy.toml` bans `std`'s and tokio's readers
//! of time and tokio's timers everywhere else, so a test can move the node's time and no part
//! of the node runs on a second clock.
//!
//! Three clocks:
//! - [`SystemClock`]: real time, for the node. Its monotonic time is tokio's, which is the
//!   real clock except in a runtime started paused, where it is the runtime's paused clock.
//! - [`SimClock`]: tokio's clock for both monotonic and wall time, so that in a runtime
//!   started with paused time (`#[tokio::test(start_paused = true)]`, the simulator) every
//!   timer, deadline and record timestamp moves together, and moves only when the runtime has
//!   nothing else to do (tokio then jumps to the next timer).
//! - [`ManualClock`]: moves only when [`ManualClock::advance_ms`] is called; sleepers wake
//!   then. For unit tests of logic that must not see time pass on its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A future that completes when a clock reaches a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A source of monotonic and wall-clock time, and of timers on that time.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic time, for timeouts and ages.
    fn now(&self) -> Instant;
    /// Milliseconds since the Unix epoch, for record timestamps and segment ages.
    fn wall_time_ms(&self) -> i64;
    /// Completes once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

/// `deadline` plus `duration`, saturating far in the future instead of overflowing.
pub fn deadline_after(now: Instant, duration: Duration) -> Instant {
    // About 30 years: later than any timer the node sets, early enough not to overflow.
    const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(duration)
        .unwrap_or_else(|| now + FAR_FUTURE.min(duration))
}

/// Completes after `duration` of `clock`'s time.
pub fn sleep(clock: &dyn Clock, duration: Duration) -> Sleep {
    clock.sleep_until(deadline_after(clock.now(), duration))
}

/// A wait that reached its deadline before the work finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `work` until it finishes or `duration` of `clock`'s time has passed.
pub async fn timeout<F: Future>(
    clock: &dyn Clock,
    duration: Duration,
    work: F,
) -> Result<F::Output, Elapsed> {
    timeout_at(clock, deadline_after(clock.now(), duration), work).await
}

/// Runs `work` until it finishes or `clock` reaches `deadline`. Work that is ready at the
/// deadline wins.
pub async fn timeout_at<F: Future>(
    clock: &dyn Clock,
    deadline: Instant,
    work: F,
) -> Result<F::Output, Elapsed> {
    let expired = clock.sleep_until(deadline);
    tokio::select! {
        biased;
        output = work => Ok(output),
        () = expired => Err(Elapsed),
    }
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(clippy::disallowed_methods, reason = "the one real clock")]
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[expect(clippy::disallowed_methods, reason = "the one real clock")]
    fn wall_time_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }

    #[expect(clippy::disallowed_methods, reason = "the one real clock")]
    fn sleep_until(&self, deadline: Instant) -> Sleep {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }
}

/// Tokio's clock for monotonic and wall time alike: simulated time in a runtime started
/// paused, where wall time is `start_wall_ms` plus the paused clock's progress.
#[derive(Clone, Copy, Debug)]
pub struct SimClock {
    start: Instant,
    start_wall_ms: i64,
}

impl SimClock {
    /// A clock whose wall time reads `start_wall_ms` now.
    pub fn new(start_wall_ms: i64) -> Self {
        Self {
            start: SystemClock.now(),
            start_wall_ms,
        }
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        SystemClock.now()
    }

    fn wall_time_ms(&self) -> i64 {
        let elapsed = self.now().saturating_duration_since(self.start);
        self.start_wall_ms
            .saturating_add(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        SystemClock.sleep_until(deadline)
    }
}

/// A clock that moves only when told to: wall time is set by hand, monotonic time is a
/// fixed epoch plus the same offset. Sleepers wake when an advance reaches their deadline.
#[derive(Clone, Debug)]
pub struct ManualClock {
    epoch: Instant,
    epoch_wall_ms: i64,
    offset_ms: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A manual clock starting at wall time `wall_ms`.
    pub fn new(wall_ms: i64) -> Self {
        Self {
            epoch: SystemClock.now(),
            epoch_wall_ms: wall_ms,
            offset_ms: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Moves time forward by `ms` milliseconds, waking the sleepers it passes.
    pub fn advance_ms(&self, ms: i64) {
        self.offset_ms.send_modify(|offset| *offset += ms);
    }

    fn instant_at(epoch: Instant, offset_ms: i64) -> Instant {
        let offset = u64::try_from(offset_ms).unwrap_or(0);
        epoch + Duration::from_millis(offset)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Self::instant_at(self.epoch, *self.offset_ms.borrow())
    }

    fn wall_time_ms(&self) -> i64 {
        self.epoch_wall_ms + *self.offset_ms.borrow()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let epoch = self.epoch;
        let mut offsets = self.offset_ms.subscribe();
        Box::pin(async move {
            loop {
                if Self::instant_at(epoch, *offsets.borrow_and_update()) >= deadline {
                    return;
                }
                // The sender lives as long as the clock; with every clock dropped, time
                // never moves again, so the sleep never ends.
                if offsets.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_only_when_time_is_advanced_past_its_deadline() {
        let clock = ManualClock::new(1_000);
        let mut sleeper = sleep(&clock, Duration::from_millis(50));
        let woke = |sleep: &mut Sleep| {
            let mut context = std::task::Context::from_waker(std::task::Waker::noop());
            sleep.as_mut().poll(&mut context).is_ready()
        };
        assert!(!woke(&mut sleeper));
        clock.advance_ms(49);
        assert!(!woke(&mut sleeper));
        clock.advance_ms(1);
        assert!(woke(&mut sleeper));
        assert_eq!(clock.wall_time_ms(), 1_050);
    }

    #[tokio::test(start_paused = true)]
    async fn sim_clock_wall_time_follows_paused_time() {
        let clock = SimClock::new(5_000);
        let began = clock.now();
        timeout(&clock, Duration::from_secs(3), std::future::pending::<()>())
            .await
            .unwrap_err();
        assert_eq!(clock.now() - began, Duration::from_secs(3));
        assert_eq!(clock.wall_time_ms(), 8_000);
    }

    #[tokio::test(start_paused = true)]
    async fn work_ready_at_the_deadline_wins_the_timeout() {
        let clock = SimClock::new(0);
        assert_eq!(timeout(&clock, Duration::ZERO, async { 7 }).await, Ok(7));
    }
}
