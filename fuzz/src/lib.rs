//! Coverage-guided fuzz targets for the decoders that read bytes Ledge does not control: Kafka
//! request frames, record batches, native protocol frames, the Kafka consumer protocol, the
//! files a node reads when it starts, and SASL (SCRAM, PLAIN) messages.
//!
//! Each target is a function `run(&[u8])` in its module that feeds the bytes to the real
//! decoder and checks an oracle when it accepts them (a re-encode that decodes to the same
//! value, a second decoder that must agree), panicking when the oracle fails. The binaries in
//! `fuzz_targets/` are one-line `fuzz_target!`s over these functions, built and instrumented by
//! `cargo fuzz` (docs/FUZZING.md). The replay test (`replay_tests`) runs every function over
//! every checked-in corpus file and over seeded pseudo-random inputs in `cargo test`, so the
//! oracles are checked in CI without an instrumented build.
//!
//! [`seeds`] builds the valid inputs the corpora start from; `cargo run -p ledge-fuzz --example
//! write_seeds` writes them to `fuzz/corpus/<target>/`.

// A fuzz target states its oracle with `assert!`/`expect`: a failure is the finding.
#![allow(clippy::unwrap_used)]

#[cfg(feature = "node")]
pub mod config_toml;
#[cfg(feature = "node")]
pub mod consumer_protocol;
#[cfg(feature = "node")]
pub mod kafka_request;
pub mod native_frame;
pub mod plugin_output;
pub mod record_batch;
#[cfg(feature = "node")]
pub mod sasl;
pub mod seeds;
#[cfg(feature = "node")]
pub mod storage_files;

/// A fuzz target: its name (the `fuzz_targets/<name>.rs` binary and `corpus/<name>/`) and the
/// function it runs on one input.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input; panics when an oracle fails.
    pub run: fn(&[u8]),
    /// The valid inputs its corpus starts from.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target, in the order the replay test runs them.
pub const TARGETS: &[Target] = &[
    #[cfg(feature = "node")]
    Target {
        name: "kafka_request",
        run: kafka_request::run,
        seeds: seeds::kafka_requests,
    },
    Target {
        name: "record_batch",
        run: record_batch::run,
        seeds: seeds::record_batches,
    },
    Target {
        name: "native_frame",
        run: native_frame::run,
        seeds: seeds::native_frames,
    },
    #[cfg(feature = "node")]
    Target {
        name: "consumer_protocol",
        run: consumer_protocol::run,
        seeds: seeds::consumer_protocol,
    },
    #[cfg(feature = "node")]
    Target {
        name: "storage_files",
        run: storage_files::run,
        seeds: seeds::storage_files,
    },
    #[cfg(feature = "node")]
    Target {
        name: "sasl",
        run: sasl::run,
        seeds: seeds::sasl,
    },
    Target {
        name: "plugin_output",
        run: plugin_output::run,
        seeds: seeds::plugin_outputs,
    },
    #[cfg(feature = "node")]
    Target {
        name: "config_toml",
        run: config_toml::run,
        seeds: config_toml::seeds,
    },
];

#[cfg(all(test, feature = "node"))]
mod replay_tests;
