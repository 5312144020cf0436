//! Fuel budgets for fetch plug-ins: how much guest CPU fetches may spend, per second, over
//! the whole node (`wasm.fetch_fuel_per_second`) and per principal
//! (`wasm.fetch_fuel_per_principal_per_second`). Issue 15: 8 fetches naming a looping
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
//! The per-principal bucket is found by [`FuelOwner`]: an authenticated principal's bucket
//! is shared by all its connections (on QUIC; Kafka fetches run no plug-in), so opening more
//! connections does not multiply its budget; a connection that did not authenticate
//! (`User:ANONYMOUS`) draws on its source address's bucket. The table of buckets
//! ([`FetchFuel`]) keeps at most `wasm.fetch_fuel_principals_tracked_max`: a new owner
//! beyond that first forgets every bucket that has refilled to full (forgetting one loses
//! nothing: a new bucket starts full), then, if none had, the one untouched longest (whose
//! debt is forgotten with it: only a client with that many owners in debt at once gains).
//!
//! Pure: the time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::security::identity::ClientIdentity;
use crate::security::principal::KafkaPrincipal;

/// Default `wasm.fetch_fuel_per_second`: one `fuel_per_batch` (about a CPU-second of a
/// runaway loop) per second over every fetch, so fetch plug-ins take about one core of the
/// node at most and requests keep the rest.
pub const FETCH_FUEL_PER_SECOND_DEFAULT: u64 = 1_000_000_000;
/// Default `wasm.fetch_fuel_per_principal_per_second`: half the node's, so one principal
/// cannot take it all. A real filter burns well under 1% of `fuel_per_batch` per 1024
/// records, so this still runs it over tens of thousands of records a second.
pub const FETCH_FUEL_PER_PRINCIPAL_PER_SECOND_DEFAULT: u64 = 500_000_000;
/// Largest fuel rate accepted (a million times the default: effectively off).
pub const FETCH_FUEL_PER_SECOND_LIMIT: u64 = 1_000_000_000_000_000;
/// Default `wasm.fetch_fuel_principals_tracked_max`: principal (or anonymous address)
/// buckets kept at once, about 100 bytes each.
pub const FETCH_FUEL_PRINCIPALS_TRACKED_MAX_DEFAULT: usize = 10_000;
/// Most `wasm.fetch_fuel_principals_tracked_max` accepted.
pub const FETCH_FUEL_PRINCIPALS_TRACKED_MAX_LIMIT: usize = 10_000_000;

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

    /// The level at `now`, refilled since `updated`, without bringing it up to date.
    fn level_at(&self, now: Instant) -> i128 {
        match self.updated {
            Some(updated) => {
                let elapsed = now.saturating_duration_since(updated);
                let added = elapsed.as_nanos() * u128::from(self.rate_per_second) / 1_000_000_000;
                let added = i128::try_from(added).unwrap_or(i128::MAX);
                self.level
                    .saturating_add(added)
                    .min(i128::from(self.rate_per_second))
            }
            None => self.level,
        }
    }

    fn refill(&mut self, now: Instant) {
        self.level = self.level_at(now);
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

    /// Whether the bucket holds one second's worth at `now`: a new bucket would be the same.
    /// Looking does not count as a use: `updated` stays the last admit or charge, which is
    /// what evicting the bucket "untouched longest" orders by (refilling here made every
    /// bucket look touched at `now`, and the tie was broken by hash order).
    fn is_full(&self, now: Instant) -> bool {
        self.level_at(now) >= i128::from(self.rate_per_second)
    }
}

/// Whose per-principal bucket a fetch draws on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FuelOwner {
    /// An authenticated principal (all its connections).
    Principal(KafkaPrincipal),
    /// The connections from one address that did not authenticate.
    Anonymous(IpAddr),
}

impl FuelOwner {
    /// The owner of `identity`'s fetches: its principal once authenticated, else its address.
    pub fn of(identity: &ClientIdentity) -> Self {
        if identity.is_authenticated() {
            Self::Principal(identity.principal.clone())
        } else {
            Self::Anonymous(identity.host)
        }
    }
}

impl std::fmt::Display for FuelOwner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Principal(principal) => write!(formatter, "{principal}"),
            Self::Anonymous(host) => write!(formatter, "anonymous clients from {host}"),
        }
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
    /// The owner (`User:alice`, `anonymous clients from 10.0.0.7`) or "the whole node".
    pub whose: String,
    /// When it admits a call again.
    pub retry_after_ms: u64,
}

/// The per-principal buckets, bounded in number.
#[derive(Debug)]
struct OwnerBuckets {
    per_second: u64,
    tracked_max: usize,
    buckets: HashMap<FuelOwner, Arc<Mutex<FuelBucket>>>,
}

impl OwnerBuckets {
    /// Makes room for one more bucket at `now` (see the module documentation).
    fn make_room(&mut self, now: Instant) {
        let max = self.tracked_max.max(1);
        if self.buckets.len() < max {
            return;
        }
        fn lock(bucket: &Mutex<FuelBucket>) -> std::sync::MutexGuard<'_, FuelBucket> {
            bucket.lock().unwrap_or_else(PoisonError::into_inner)
        }
        self.buckets.retain(|_, bucket| !lock(bucket).is_full(now));
        while self.buckets.len() >= max {
            let idlest = self
                .buckets
                .iter()
                .min_by_key(|(_, bucket)| lock(bucket).updated)
                .map(|(owner, _)| owner.clone());
            match idlest {
                Some(owner) => {
                    self.buckets.remove(&owner);
                }
                None => return,
            }
        }
    }
}

/// The node-wide fetch fuel budget and the per-principal buckets; hands out one
/// [`FuelAccount`] per fetch.
#[derive(Clone, Debug)]
pub struct FetchFuel {
    node: Arc<Mutex<FuelBucket>>,
    owners: Arc<Mutex<OwnerBuckets>>,
}

impl FetchFuel {
    /// A budget of `per_second` fuel for the node and `per_principal_per_second` for each
    /// owner, keeping at most `principals_tracked_max` owners' buckets.
    pub fn new(
        per_second: u64,
        per_principal_per_second: u64,
        principals_tracked_max: usize,
    ) -> Self {
        Self {
            node: Arc::new(Mutex::new(FuelBucket::new(per_second))),
            owners: Arc::new(Mutex::new(OwnerBuckets {
                per_second: per_principal_per_second,
                tracked_max: principals_tracked_max,
                buckets: HashMap::new(),
            })),
        }
    }

    /// The account of `owner` at `now`: its bucket (shared with every other account of the
    /// same owner), drawing on the node's too.
    pub fn account(&self, owner: FuelOwner, now: Instant) -> FuelAccount {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let own = match owners.buckets.get(&owner) {
            Some(bucket) => Arc::clone(bucket),
            None => {
                owners.make_room(now);
                let bucket = Arc::new(Mutex::new(FuelBucket::new(owners.per_second)));
                owners.buckets.insert(owner.clone(), Arc::clone(&bucket));
                bucket
            }
        };
        FuelAccount {
            own: Some((owner, own)),
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

    /// How many owners' buckets are kept.
    pub fn tracked(&self) -> usize {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }
}

/// What one fetch may spend on plug-ins: its owner's bucket and the node's.
#[derive(Debug)]
pub struct FuelAccount {
    own: Option<(FuelOwner, Arc<Mutex<FuelBucket>>)>,
    node: Arc<Mutex<FuelBucket>>,
}

impl FuelAccount {
    /// Whether a plug-in call may start at `now`: both the owner's bucket and the node's
    /// hold fuel.
    pub fn admit(&self, now: Instant) -> Result<(), FuelExhausted> {
        let refused = |bucket: &FuelBucket, wait: Duration, key, whose| FuelExhausted {
            key,
            rate: bucket.rate_per_second(),
            whose,
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        };
        if let Some((owner, own)) = &self.own {
            let mut own = own.lock().unwrap_or_else(PoisonError::into_inner);
            own.admit(now).map_err(|wait| {
                refused(
                    &own,
                    wait,
                    "wasm.fetch_fuel_per_principal_per_second",
                    owner.to_string(),
                )
            })?;
        }
        let mut node = self.node.lock().unwrap_or_else(PoisonError::into_inner);
        node.admit(now).map_err(|wait| {
            refused(
                &node,
                wait,
                "wasm.fetch_fuel_per_second",
                "the whole node".to_owned(),
            )
        })
    }

    /// Takes `fuel` a call burned from the owner's bucket and the node's.
    pub fn charge(&self, now: Instant, fuel: u64) {
        if let Some((_, own)) = &self.own {
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

    fn user(name: &str) -> FuelOwner {
        FuelOwner::Principal(KafkaPrincipal::user(name))
    }

    // Goal: accounts of one owner share one bucket (a principal's second connection is
    // refused once the first spent it), another owner has its own, anonymous clients are
    // told apart by address, and every account is refused when the node's is spent; the
    // refusal names the key and the owner.
    #[test]
    fn accounts_of_one_owner_share_its_bucket_and_the_node_bounds_them_all() {
        let clock = ManualClock::new(0);
        let now = clock.now();
        let fuel = FetchFuel::new(10_000, 4_000, 100);
        let first = fuel.account(user("alice"), now);
        let second = fuel.account(user("alice"), now);
        let other = fuel.account(user("bob"), now);
        first.charge(now, 4_000);
        let refused = second.admit(now).unwrap_err();
        assert_eq!(refused.key, "wasm.fetch_fuel_per_principal_per_second");
        assert_eq!(refused.whose, "User:alice");
        assert!(refused.to_string().contains("retry in"), "{refused}");
        assert_eq!(other.admit(now), Ok(()));
        let anonymous = |host: [u8; 4]| FuelOwner::Anonymous(IpAddr::from(host));
        fuel.account(anonymous([10, 0, 0, 1]), now)
            .charge(now, 4_000);
        let refused = fuel
            .account(anonymous([10, 0, 0, 1]), now)
            .admit(now)
            .unwrap_err();
        assert_eq!(refused.whose, "anonymous clients from 10.0.0.1");
        assert_eq!(
            fuel.account(anonymous([10, 0, 0, 2]), now).admit(now),
            Ok(())
        );
        // The node's 10,000: 8,000 spent, then 2,000 more.
        fuel.node_only().charge(now, 2_000);
        assert_eq!(
            other.admit(now).unwrap_err().key,
            "wasm.fetch_fuel_per_second"
        );
    }

    // Goal: the table keeps at most `principals_tracked_max` buckets; making room forgets
    // full buckets first (nothing lost) and keeps one in debt while a full one can go; with
    // every bucket in debt, the one untouched longest goes.
    #[test]
    fn the_bucket_table_is_bounded_and_forgets_full_buckets_first() {
        let clock = ManualClock::new(0);
        let start = clock.now();
        let fuel = FetchFuel::new(1_000_000, 1_000, 2);
        // alice in debt, bob full (untouched since alice's charge: older).
        let bob = fuel.account(user("bob"), start);
        drop(bob);
        let later = start + Duration::from_millis(10);
        fuel.account(user("alice"), later).charge(later, 5_000);
        fuel.account(user("carol"), later);
        assert_eq!(fuel.tracked(), 2);
        assert!(
            fuel.account(user("alice"), later).admit(later).is_err(),
            "alice's debt was forgotten"
        );
        // carol spends too: both in debt; dave evicts the one untouched longest (alice).
        let then = later + Duration::from_millis(10);
        fuel.account(user("carol"), then).charge(then, 5_000);
        fuel.account(user("dave"), then);
        assert_eq!(fuel.tracked(), 2);
        assert!(fuel.account(user("carol"), then).admit(then).is_err());
        for name in ["eve", "frank", "grace"] {
            fuel.account(user(name), then);
            assert!(fuel.tracked() <= 2);
        }
    }
}
