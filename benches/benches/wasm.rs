//! The seed's high-value orders filter as a WASM plug-in (through the node's host: copy in,
//! guest call with fuel, copy out, output checks) against the same Rust function compiled
//! natively and run through the same batch ABI in process (`ledge_wasm_sdk::testing`), on
//! identical input batches of 1024 JSON orders of 64 bytes and of 1 KiB. Half the orders
//! pass the threshold. Needs the module built:
//! `cargo build --release --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml`.
//! Results and the ratio: `benches/RESULTS.md`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledge_node::wasm::abi::encode_input;
use ledge_node::wasm::{InputHeader, Plugin, PluginKind, WasmEngine, WasmLimits};
use ledge_protocol::{BATCH_HEADER_BYTES, EncodeOptions, Record, encode_batch};
use ledge_wasm_sdk::testing::TestPlugin;

const RECORDS: usize = 1024;

/// A batch of JSON orders of `size` bytes each (amounts alternate below and above 1000).
fn orders(size: usize) -> (Bytes, InputHeader) {
    let records: Vec<Record> = (0..RECORDS)
        .map(|n| {
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
        .collect();
    let batch = encode_batch(&records, &EncodeOptions::default()).expect("batch");
    let header = InputHeader {
        partition: 0,
        partition_count: 1,
        base_offset: 0,
        base_timestamp: 1_700_000_000_000,
    };
    (batch.slice(BATCH_HEADER_BYTES..), header)
}

fn module() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release/high_value_orders.wasm");
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; build it with `cargo build --release --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml`",
            path.display()
        )
    })
}

fn high_value_filter(c: &mut Criterion) {
    let engine = WasmEngine::new(WasmLimits::default()).expect("engine");
    let (module, _) = engine
        .compile(&module(), PluginKind::Filter)
        .expect("module");
    let params = vec![("threshold".to_string(), "1000".to_string())];
    let plugin = Arc::new(Plugin::new(&engine, module, params).expect("plugin"));
    let mut native =
        TestPlugin::<high_value_orders::high_value_orders>::init(&[("threshold", "1000")])
            .expect("native plug-in");
    for size in [64usize, 1024] {
        let (region, header) = orders(size);
        let mut input = Vec::new();
        encode_input(&header, RECORDS as u32, &region, &mut input);
        // Same answers before timing anything.
        let wasm_kept = plugin
            .run(&header, &region, RECORDS)
            .expect("wasm run")
            .outcomes
            .iter()
            .filter(|outcome| **outcome == ledge_node::wasm::Outcome::Keep)
            .count();
        let native_kept = native
            .run_batch(&input)
            .expect("native run")
            .iter()
            .filter(|outcome| matches!(outcome, ledge_wasm_sdk::testing::Outcome::Keep))
            .count();
        assert_eq!((wasm_kept, native_kept), (RECORDS / 2, RECORDS / 2));

        let mut group = c.benchmark_group(format!("high_value_filter/{size}B"));
        group.throughput(Throughput::Elements(RECORDS as u64));
        group.bench_function("native", |b| {
            b.iter(|| black_box(native.run_batch(black_box(&input)).expect("native")))
        });
        group.bench_function("wasm", |b| {
            b.iter(|| {
                black_box(
                    plugin
                        .run(&header, black_box(&region), RECORDS)
                        .expect("wasm"),
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, high_value_filter);
criterion_main!(benches);
