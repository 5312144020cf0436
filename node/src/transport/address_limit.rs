//! Connections per client address, and a rate limit on the log lines refusals write.
//!
//! A node-wide connection limit alone lets one client address hold every slot (about a
//! thousand held connections locked every other client out, issue 15); each listener
//! therefore also caps the connections one IP address holds (`limits.connections_per_address_max`
//! on QUIC, `kafka.connections_per_address_max` on the Kafka listeners), as Kafka's
//! `max.connections.per.ip`. The address is the peer's IP as the socket reports it (an
//! IPv4-mapped IPv6 address counts as its IPv4 one); IPv6 addresses are counted one by one,
//! not by prefix, so that the hosts of one LAN /64 do not share a budget.
//!
//! When the principal is known (authentication, issue 15), a per-principal limit can key the
//! same counter by principal instead: [`AddressLimit`] is generic over nothing but the key.
//!
//! Pure: a map under a mutex and permits that give their slot back when dropped; no IO, no
//! clock (the log limiter takes the time it is told).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Default `limits.connections_per_address_max` and `kafka.connections_per_address_max`:
/// 64, a sixteenth of the default `connections_max` (1024), so at least 16 addresses are
/// needed to fill a node. One application host rarely needs more: the SDK keeps one
/// connection per node, a Kafka client one per broker plus its coordinator, so 64 leaves
/// room for dozens of client processes on one host. Clients behind one NAT share an
/// address: raise it there.
pub const CONNECTIONS_PER_ADDRESS_MAX_DEFAULT: usize = 64;
/// Largest `connections_per_address_max` (as `connections_max`'s own limit).
pub const CONNECTIONS_PER_ADDRESS_MAX_LIMIT: usize = 1_000_000;
/// A listener logs one refusal of a kind at most this often; the line says how many it left
/// out since the last, so a client hammering the port cannot flood the log.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Counts connections per key (an IP address today, a principal later) under one limit.
#[derive(Clone, Debug)]
pub struct AddressLimit<K: Eq + Hash + Clone = IpAddr> {
    max: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// One connection's slot of its key's share; given back when dropped.
#[derive(Debug)]
pub struct AddressPermit<K: Eq + Hash + Clone = IpAddr> {
    key: K,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// The key already holds its limit of connections.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{held} connections from this address already, its limit of {max}")]
pub struct AddressLimitReached {
    /// Connections the key holds.
    pub held: usize,
    /// The limit.
    pub max: usize,
}

impl<K: Eq + Hash + Clone> AddressLimit<K> {
    /// A limit of `max` connections per key (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a slot for `key`, or says it holds its limit already.
    pub fn try_acquire(&self, key: K) -> Result<AddressPermit<K>, AddressLimitReached> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return Err(AddressLimitReached {
                held: *count,
                max: self.max,
            });
        }
        *count += 1;
        Ok(AddressPermit {
            key,
            held: Arc::clone(&self.held),
        })
    }

    /// Connections `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Keys holding at least one connection (the map never keeps a key at zero).
    pub fn keys(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<K: Eq + Hash + Clone> Drop for AddressPermit<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The address a connection from `remote` counts under: its IP, an IPv4-mapped IPv6
/// address as the IPv4 one (a dual-stack socket reports IPv4 clients that way).
pub fn address_key(remote: std::net::SocketAddr) -> IpAddr {
    remote.ip().to_canonical()
}

/// Lets one log line through per interval and counts the ones it held back.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    state: Mutex<RefusalLogState>,
}

#[derive(Debug, Default)]
struct RefusalLogState {
    /// When the last line was let through.
    last: Option<Instant>,
    /// Lines held back since.
    suppressed: u64,
}

impl RefusalLog {
    /// Lets a line through at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(RefusalLogState::default()),
        }
    }

    /// Whether to write a line at `now`: `Some(lines left out since the last one)`, or
    /// `None` to leave this one out.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a key gets at most `max` slots, others are unaffected, and a slot comes back when
    // its permit is dropped (and the key leaves the map at zero, so it does not grow with
    // every address ever seen).
    #[test]
    fn each_address_gets_its_own_share_and_slots_come_back() {
        let limit = AddressLimit::new(2);
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.try_acquire(one).unwrap();
        let _second = limit.try_acquire(one).unwrap();
        assert_eq!(
            limit.try_acquire(one).unwrap_err(),
            AddressLimitReached { held: 2, max: 2 }
        );
        let other = limit.try_acquire(two).unwrap();
        assert_eq!(limit.held(&two), 1);
        drop(first);
        let _third = limit.try_acquire(one).unwrap();
        drop(other);
        assert_eq!(limit.held(&two), 0);
        assert_eq!(limit.keys(), 1);
    }

    // Goal: an IPv4 client reported as an IPv4-mapped IPv6 address (a dual-stack socket)
    // counts under its IPv4 address.
    #[test]
    fn mapped_addresses_count_as_their_ipv4_one() {
        let mapped: std::net::SocketAddr = "[::ffff:192.0.2.1]:9092".parse().unwrap();
        let plain: std::net::SocketAddr = "192.0.2.1:9093".parse().unwrap();
        assert_eq!(address_key(mapped), address_key(plain));
    }

    // Goal: one line per interval gets through, and it reports how many were left out.
    #[test]
    fn the_log_lets_one_line_through_per_interval() {
        let log = RefusalLog::new(Duration::from_secs(1));
        let start = crate::clock::Clock::now(&crate::clock::ManualClock::new(0));
        assert_eq!(log.admit(start), Some(0));
        assert_eq!(log.admit(start + Duration::from_millis(10)), None);
        assert_eq!(log.admit(start + Duration::from_millis(999)), None);
        assert_eq!(log.admit(start + Duration::from_secs(1)), Some(2));
        assert_eq!(log.admit(start + Duration::from_millis(1500)), None);
        assert_eq!(log.admit(start + Duration::from_secs(3)), Some(1));
    }
}
