//! Simulated IO for deterministic tests: everything here is seeded and replayable.
//!
//! `LEDGE_SIM_SEED=<n>` replays one seed of a randomized simulation test.
//!
//! - [`disk`]: `SimDisk`, a disk with power loss and faults.
//! - [`net`], [`node`], [`workload`], [`checkers`], [`cluster`]: the whole-node simulator
//!   (real broker on `SimDisk`, simulated network and clients, crashes, checkers).
//! - [`multi`], [`peer_net`]: the multi-node simulator (3-5 real nodes with controller and
//!   replication over a simulated peer network that partitions, crashes, checkers).

pub mod checkers;
pub mod cluster;
pub mod disk;
pub mod multi;
pub mod net;
pub mod node;
pub mod peer_net;
pub mod workload;

pub use disk::SimDisk;

/// The seeds a randomized simulation test runs: the one in `LEDGE_SIM_SEED` if set (to
/// replay a failure), otherwise `count` seeds (or `LEDGE_SIM_SEED_COUNT`, for a longer
/// campaign) starting from `first`.
pub fn seeds(first: u64, count: u64) -> Vec<u64> {
    match std::env::var("LEDGE_SIM_SEED") {
        Ok(text) => match text.trim().parse() {
            Ok(seed) => vec![seed],
            Err(_) => panic!("LEDGE_SIM_SEED must be an unsigned integer, got {text:?}"),
        },
        Err(_) => {
            let count = std::env::var("LEDGE_SIM_SEED_COUNT")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(count);
            (first..first + count).collect()
        }
    }
}
