//! Shared helpers for Ledge benchmarks.
//!
//! The criterion benchmarks in `benches/` (run with `cargo bench -p ledge-benches`) build
//! their batches and scratch directories here; `RESULTS.md` records what they measured, with
//! the fio baseline taken in the same run.

use std::path::PathBuf;

use bytes::Bytes;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

/// Bytes in the value of each record of [`bench_batch`].
pub const RECORD_VALUE_BYTES: usize = 1024;

/// Records in [`bench_batch`]: 1000 records of 1 KiB make a batch of about 1 MiB, the size of
/// one fio block in the baseline.
pub const RECORDS_PER_BATCH: usize = 1000;

/// The batch the storage benchmarks append: [`RECORDS_PER_BATCH`] records with a
/// [`RECORD_VALUE_BYTES`]-byte value each, uncompressed (1,034,000 bytes encoded).
pub fn bench_batch() -> Bytes {
    record_batch(RECORDS_PER_BATCH, RECORD_VALUE_BYTES)
}

/// An uncompressed RecordBatch v2 of `records` records with no key and a `value_bytes`-byte
/// value each. Values are pseudo-random (a fixed xorshift sequence), so that nothing on the
/// way to the disk can gain by compressing them, and the same on every run.
///
/// # Panics
///
/// If `records` is 0 or the batch cannot be encoded (more than `i32::MAX` records).
pub fn record_batch(records: usize, value_bytes: usize) -> Bytes {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let records: Vec<Record> = (0..records)
        .map(|index| {
            let value: Vec<u8> = (0..value_bytes)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            Record {
                timestamp: 1_700_000_000_000 + i64::try_from(index).unwrap_or(i64::MAX),
                key: None,
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
            }
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).expect("benchmark records encode")
}

/// Where benchmarks create their scratch directories: `$LEDGE_BENCH_DIR` if set, otherwise
/// the workspace's `target/` directory.
///
/// Not the system temporary directory: `/tmp` is a tmpfs on many machines, where
/// `fdatasync` costs nothing and the numbers would say nothing about a disk.
pub fn bench_root() -> PathBuf {
    match std::env::var_os("LEDGE_BENCH_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

/// A fresh scratch directory under [`bench_root`], removed when dropped.
///
/// # Panics
///
/// If the directory cannot be created (benchmarks have no better way to report it).
pub fn bench_dir(prefix: &str) -> tempfile::TempDir {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("create the benchmark root directory");
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&root)
        .expect("create a benchmark scratch directory")
}

/// Inputs shared by the WASM benchmarks (`benches/wasm.rs`, `bin/wasm-vs-native.rs`).
pub mod wasm_bench {
    use std::path::Path;

    use bytes::Bytes;
    use ledge_node::wasm::InputHeader;
    use ledge_protocol::{BATCH_HEADER_BYTES, EncodeOptions, Record, encode_batch};

    pub const RECORDS: usize = 1024;

    /// Keeps every record without reading them: writes the count and 1024 zero tags.
    const KEEP_ALL: &str = r#"(module
      (memory (export "memory") 40)
      (func (export "ledge_abi_version") (result i32) (i32.const 1))
      (func (export "ledge_alloc") (param i32) (result i32) (i32.const 65536))
      (func (export "ledge_init") (param i32 i32) (result i64)
        (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
      (func (export "ledge_filter") (param $p i32) (param $l i32) (result i64)
        (local $n i32)
        (local.set $n (i32.load (local.get $p)))
        (i32.store (i32.const 16) (local.get $n))
        (memory.fill (i32.const 20) (i32.const 0) (local.get $n))
        (i64.or (i64.shl (i64.const 16) (i64.const 32))
                (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4))))))"#;

    /// JSON orders numbered `ids`, each value `size` bytes (amounts alternate below and
    /// above 1000, so the high-value filter keeps every other one).
    pub fn order_records(ids: std::ops::Range<usize>, size: usize) -> Vec<Record> {
        ids.map(|n| {
            let amount = if n % 2 == 0 { 250.5 } else { 1750.25 };
            let mut value = format!(r#"{{"id":{n},"amount":{amount},"note":""#);
            let padding = size.saturating_sub(value.len() + 2);
            value.push_str(&"x".repeat(padding));
            value.push_str("\"}");
            Record {
                timestamp: 1_700_000_000_000,
                key: Some(Bytes::from(format!("customer-{}", n % 97))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
            }
        })
        .collect()
    }

    /// A batch of [`RECORDS`] JSON orders of `size` bytes each, as the guest sees it.
    pub fn orders(size: usize) -> (Bytes, InputHeader) {
        let records = order_records(0..RECORDS, size);
        let batch = encode_batch(&records, &EncodeOptions::default()).expect("batch");
        let header = InputHeader {
            partition: 0,
            partition_count: 1,
            base_offset: 0,
            base_timestamp: 1_700_000_000_000,
        };
        (batch.slice(BATCH_HEADER_BYTES..), header)
    }

    /// The high-value orders example built for wasm32.
    ///
    /// # Errors
    /// If it is not built yet (the message says how).
    pub fn high_value_module() -> anyhow::Result<Vec<u8>> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../filters/target/wasm32-unknown-unknown/release/high_value_orders.wasm");
        std::fs::read(&path).map_err(|error| {
            anyhow::anyhow!(
                "{}: {error}; build it with `cargo build --release --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml`",
                path.display()
            )
        })
    }

    /// A module that keeps every record without reading it: the host's own cost per call.
    ///
    /// # Panics
    /// Never (the text is a constant).
    pub fn keep_all_module() -> Vec<u8> {
        wat::parse_str(KEEP_ALL).expect("valid WAT")
    }
}
