//! The seed's high-value orders filter as a WASM plug-in (through the node's host: copy in,
//! guest call with fuel, copy out, output checks) against the same Rust function compiled
//! natively and run through the same batch ABI in process (`ledge_wasm_sdk::testing`), on
//! identical input batches of 1024 JSON orders of 64 bytes and of 1 KiB. Half the orders
//! pass the threshold. Needs the module built:
//! `cargo build --release --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml`.
//! Results and the ratio: `benches/RESULTS.md`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ledge_benches::wasm_bench::{RECORDS, high_value_module, keep_all_module, orders};
use ledge_node::wasm::abi::encode_input;
use ledge_node::wasm::{Plugin, PluginKind, WasmEngine, WasmLimits};
use ledge_wasm_sdk::testing::TestPlugin;

fn high_value_filter(c: &mut Criterion) {
    let engine = WasmEngine::new(WasmLimits::default()).expect("engine");
    let (module, _) = engine
        .compile(&high_value_module().expect("module"), PluginKind::Filter)
        .expect("module");
    let params = vec![("threshold".to_string(), "1000".to_string())];
    let plugin = Arc::new(Plugin::new(&engine, module, params).expect("plugin"));
    let (keep_all, _) = engine
        .compile(&keep_all_module(), PluginKind::Filter)
        .expect("keep-all module");
    let keep_all = Arc::new(Plugin::new(&engine, keep_all, Vec::new()).expect("plugin"));
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
        // The host's share: the same call into a module that keeps every record without
        // reading it (copy in, call, fuel, copy out, output checks).
        group.bench_function("wasm_keep_all_floor", |b| {
            b.iter(|| {
                black_box(
                    keep_all
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
