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

/// A simulated node's runtime: one thread, time paused (moved only by the simulator), and
/// tokio's own random choices seeded with `seed`.
///
/// Tokio draws from a per-runtime generator wherever it picks among equals: the branch a
/// `tokio::select!` without `biased;` polls first, and the shard of a `watch` channel's
/// waiters a receiver parks on, which orders the wake-ups when a value is sent (a leader's
/// high watermark waking the parked replica fetches). Unseeded, two runs of one seed
/// answer those fetches in different orders and drift apart. `Builder::rng_seed` is
/// behind `tokio_unstable` (set in `.cargo/config.toml`); a build without it runs
/// unseeded, and `sim::multi::tests::one_seed_replays_exactly` is ignored there.
pub fn node_runtime(seed: u64) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    #[cfg(not(tokio_unstable))]
    let _ = seed;
    builder.build()
}

/// `LEDGE_SIM_LOG=<filter>` (a `RUST_LOG`-style filter, e.g. `warn` or
/// `ledge_node::replication=debug`) prints the nodes' own log lines to stderr, between the
/// trace's events: what a node said about the step that went wrong. Off by default.
pub fn init_log() {
    if let Ok(filter) = std::env::var("LEDGE_SIM_LOG") {
        // A second run in the same process finds the subscriber set already: fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .without_time()
            .try_init();
    }
}

/// The seeds a randomized simulation test runs: the one in `LEDGE_SIM_SEED` if set (to
/// replay a failure), otherwise `count` seeds (or `LEDGE_SIM_SEED_COUNT`, for a longer
/// campaign) starting from `first` (or `LEDGE_SIM_SEED_START`, to split a campaign over
/// processes).
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
            let first = std::env::var("LEDGE_SIM_SEED_START")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(first);
            (first..first + count).collect()
        }
    }
}
