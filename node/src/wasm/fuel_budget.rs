//! Fuel budgets for fetch plug-ins: how much guest CPU fetches may spend, per second, over
//! the whole node (`wasm.fetch_fuel_per_second`) and per connection
//! (`wasm.fetch_fuel_per_connection_per_second`). Issue 15: 8 fetches naming a looping
//! plug-in burned 6.3 CPU-seconds in 4.9 s; each call is bounded by `wasm.fuel_per_batch`,
//! but nothing bounded how many calls a client could ask for.
//!
//! Each budget is a token bucket of fuel ([`FuelBucket`]) that refills at its rate up to one
//! second's worth. A plug-in call is admitted while both buckets it draws on hold fuel, and
//! charged what it burned once it ends (a call's cost is only known then; it is at most
//! `fuel_per_batch`), so a bucket may go into debt by one call per concurrent caller and
//! admits nothing until it has refilled. A fetch refused this way is answered
//! `TooManyRequests` (retriable) naming the key and when fuel will be back.
//!
//! The per-connection bucket belongs to a [`FuelAccount`] the listener makes per
//! connection; with authentication, the listener will hand out one account per principal
//! instead (the same type, shared by the principal's connections), and nothing here changes.
//!
//! Pure: the time is passed in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default `wasm.fetch_fuel_per_second`: one `fuel_per_batch` (about a CPU-second of a
/// runaway loop) per second over every fetch, so fetch plug-ins take about one core of the
/// node at most and requests keep the rest.
pub const FETCH_FUEL_PER_SECOND_DEFAULT: u64 = 1_000_000_000;
/// Default `wasm.fetch_fuel_per_connection_per_second`: half the node's, so one connection
/// cannot take it all. A real filter burns well under 1% of `fuel_per_batch` per 1024
/// records, so this still runs it over tens of thousands of records a second.
pub const FETCH_FUEL_PER_CONNECTION_PER_SECOND_DEFAULT: u64 = 500_000_000;
/// Largest fuel rate accepted (a million times the default: effectively off).
pub const FETCH_FUEL_PER_SECOND_LIMIT: u64 = 1_000_000_000_000_000;

/// A bucket of fuel that refills at `rate_per_second` up to one second's worth, and may go
/// into debt by what an admitted call burns.
#[derive(Debug)]
pub struct FuelBucket {
    rate_per_second: u64,
    /// Fuel available now (negative: owed).
    level: i128,
    /// When `level` was last brought up to date.
    updated: Option<Instant>,
}

impl FuelBucket {
    /// A full bucket refilling at `rate_per_second` (at least 1).
    pub fn new(rate_per_second: u64) -> Self {
        let rate_per_second = rate_per_second.max(1);
        Self {
            rate_per_second,
            level: i128::from(rate_per_second),
            updated: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(updated) = self.updated {
            let elapsed = now.saturating_duration_since(updated);
            let added = elapsed.as_nanos() * u128::from(self.rate_per_second) / 1_000_000_000;
            let added = i128::try_from(added).unwrap_or(i128::MAX);
            self.level = self
                .level
                .saturating_add(added)
                .min(i128::from(self.rate_per_second));
        }
        self.updated = Some(now);
    }

    /// Whether a call may start at `now`; if not, how long until it may.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.level > 0 {
            return Ok(());
        }
        let owed = u128::try_from(1 - self.level).unwrap_or(u128::MAX);
        let nanos = owed.saturating_mul(1_000_000_000) / u128::from(self.rate_per_second);
        Err(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Takes `fuel` burned at `now`.
    pub fn charge(&mut self, now: Instant, fuel: u64) {
        self.refill(now);
        self.level = self.level.saturating_sub(i128::from(fuel));
    }

    /// The refill rate.
    pub fn rate_per_second(&self) -> u64 {
        self.rate_per_second
    }
}

/// A fetch was refused: a fuel budget is spent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "fetch plug-ins spent {key} ({rate} fuel a second) on {whose}; retry in {retry_after_ms} ms"
)]
pub struct FuelExhausted {
    /// The key of the budget that is spent.
    pub key: &'static str,
    /// Its rate.
    pub rate: u64,
    /// "this connection" or "the whole node".
    pub whose: &'static str,
    /// When it admits a call again.
    pub retry_after_ms: u64,
}

/// The node-wide fetch fuel budget; hands out one [`FuelAccount`] per connection.
#[derive(Clone, Debug)]
pub struct FetchFuel {
    node: Arc<Mutex<FuelBucket>>,
    per_connection_per_second: u64,
}

impl FetchFuel {
    /// A budget of `per_second` fuel for the node and `per_connection_per_second` for each
    /// account.
    pub fn new(per_second: u64, per_connection_per_second: u64) -> Self {
        Self {
            node: Arc::new(Mutex::new(FuelBucket::new(per_second))),
            per_connection_per_second,
        }
    }

    /// An account with its own bucket, drawing on the node's too (one per connection).
    pub fn account(&self) -> FuelAccount {
        FuelAccount {
            own: Some(Mutex::new(FuelBucket::new(self.per_connection_per_second))),
            node: Arc::clone(&self.node),
        }
    }

    /// An account with no bucket of its own: only the node's (fetches not made over a
    /// client connection).
    pub fn node_only(&self) -> FuelAccount {
        FuelAccount {
            own: None,
            node: Arc::clone(&self.node),
        }
    }
}

/// What one connection (later: one principal) may spend on fetch plug-ins.
#[derive(Debug)]
pub struct FuelAccount {
    own: Option<Mutex<FuelBucket>>,
    node: Arc<Mutex<FuelBucket>>,
}

impl FuelAccount {
    /// Whether a plug-in call may start at `now`: both this account's bucket and the
    /// node's hold fuel.
    pub fn admit(&self, now: Instant) -> Result<(), FuelExhausted> {
        let refused = |bucket: &FuelBucket, wait: Duration, key, whose| FuelExhausted {
            key,
            rate: bucket.rate_per_second(),
            whose,
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        };
        if let Some(own) = &self.own {
            let mut own = own.lock().unwrap_or_else(PoisonError::into_inner);
            own.admit(now).map_err(|wait| {
                refused(
                    &own,
                    wait,
                    "wasm.fetch_fuel_per_connection_per_second",
                    "this connection",
                )
            })?;
        }
        let mut node = self.node.lock().unwrap_or_else(PoisonError::into_inner);
        node.admit(now)
            .map_err(|wait| refused(&node, wait, "wasm.fetch_fuel_per_second", "the whole node"))
    }

    /// Takes `fuel` a call burned from this account's bucket and the node's.
    pub fn charge(&self, now: Instant, fuel: u64) {
        if let Some(own) = &self.own {
            own.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .charge(now, fuel);
        }
        self.node
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .charge(now, fuel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    // Goal: a bucket admits while it holds fuel, goes into debt by what a call burned, says
    // how long until it admits again, and refills at its rate up to one second's worth.
    #[test]
    fn a_bucket_admits_while_it_holds_fuel_and_refills_at_its_rate() {
        let clock = ManualClock::new(0);
        let start = clock.now();
        let mut bucket = FuelBucket::new(1000);
        assert_eq!(bucket.admit(start), Ok(()));
        bucket.charge(start, 3000);
        // 2000 owed, plus one to be positive: 2.001 s at 1000 a second.
        assert_eq!(bucket.admit(start), Err(Duration::from_millis(2001)));
        let later = start + Duration::from_millis(2001);
        assert_eq!(bucket.admit(later), Ok(()));
        // A long pause refills one second's worth, no more.
        let much_later = later + Duration::from_secs(3600);
        bucket.charge(much_later, 1000);
        assert!(bucket.admit(much_later).is_err());
    }

    // Goal: an account is refused when its own bucket is spent while another account goes
    // on, and every account is refused when the node's is spent; the refusal names the key.
    #[test]
    fn an_account_spends_its_own_share_and_the_node_bounds_them_all() {
        let clock = ManualClock::new(0);
        let now = clock.now();
        let fuel = FetchFuel::new(10_000, 4_000);
        let greedy = fuel.account();
        let other = fuel.account();
        greedy.charge(now, 4_000);
        let refused = greedy.admit(now).unwrap_err();
        assert_eq!(refused.key, "wasm.fetch_fuel_per_connection_per_second");
        assert!(refused.to_string().contains("retry in"), "{refused}");
        assert_eq!(other.admit(now), Ok(()));
        other.charge(now, 4_000);
        fuel.node_only().charge(now, 2_000);
        let third = fuel.account();
        assert_eq!(
            third.admit(now).unwrap_err().key,
            "wasm.fetch_fuel_per_second"
        );
    }
}
