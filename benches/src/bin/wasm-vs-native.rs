//! The WASM/native ratio of the high-value filter, interleaved: each round times native and
//! WASM (and the host's floor, a module that reads nothing) over the same batches one right
//! after the other, and the ratio is taken within the round, so a machine whose speed drifts
//! (these do) does not skew it. Reports the median and range of the per-round ratios.
//! The criterion version with absolute figures is `benches/wasm.rs`.
//!
//! `cargo run --release -p ledge-benches --bin wasm-vs-native -- [rounds] [batches per round]`
//! (defaults 15 and 40). Needs the filters/ modules built for wasm32.

use std::hint::black_box;
use std::sync::Arc;

use ledge_benches::wasm_bench::{RECORDS, high_value_module, keep_all_module, orders};
use ledge_node::wasm::abi::encode_input;
use ledge_node::wasm::{Plugin, PluginKind, WasmEngine, WasmLimits};
use ledge_wasm_sdk::testing::TestPlugin;
use tokio::time::Instant;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let rounds: usize = arguments.next().map_or(Ok(15), |text| text.parse())?;
    let batches: usize = arguments.next().map_or(Ok(40), |text| text.parse())?;
    let engine = WasmEngine::new(WasmLimits::default())?;
    let (module, _) = engine.compile(&high_value_module()?, PluginKind::Filter)?;
    let params = vec![("threshold".to_string(), "1000".to_string())];
    let plugin = Arc::new(Plugin::new(&engine, module, params)?);
    let (floor, _) = engine.compile(&keep_all_module(), PluginKind::Filter)?;
    let floor = Arc::new(Plugin::new(&engine, floor, Vec::new())?);
    let mut native =
        TestPlugin::<high_value_orders::high_value_orders>::init(&[("threshold", "1000")])
            .map_err(anyhow::Error::msg)?;
    println!(
        "high-value filter, batches of {RECORDS} JSON orders, {rounds} rounds x {batches} batches per variant"
    );
    println!(
        "{:>7}  {:>14}  {:>14}  {:>14}  {:>22}",
        "record", "native rec/s", "wasm rec/s", "floor rec/s", "wasm/native median [min-max]"
    );
    for size in [64usize, 1024] {
        let (region, header) = orders(size);
        let mut input = Vec::new();
        encode_input(&header, RECORDS as u32, &region, &mut input);
        let mut ratios = Vec::new();
        let (mut native_rates, mut wasm_rates, mut floor_rates) =
            (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            for _ in 0..batches {
                black_box(
                    native
                        .run_batch(black_box(&input))
                        .map_err(anyhow::Error::msg)?,
                );
            }
            let native_time = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for _ in 0..batches {
                black_box(plugin.run(&header, black_box(&region), RECORDS)?);
            }
            let wasm_time = started.elapsed().as_secs_f64();
            let started = Instant::now();
            for _ in 0..batches {
                black_box(floor.run(&header, black_box(&region), RECORDS)?);
            }
            let floor_time = started.elapsed().as_secs_f64();
            let records = (batches * RECORDS) as f64;
            native_rates.push(records / native_time);
            wasm_rates.push(records / wasm_time);
            floor_rates.push(records / floor_time);
            ratios.push(native_time / wasm_time);
        }
        let (low, high) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(low, high), ratio| {
                (low.min(*ratio), high.max(*ratio))
            });
        println!(
            "{:>6}B  {:>14.0}  {:>14.0}  {:>14.0}  {:>10.2} [{low:.2}-{high:.2}]",
            size,
            median(&mut native_rates),
            median(&mut wasm_rates),
            median(&mut floor_rates),
            median(&mut ratios),
        );
    }
    Ok(())
}
