//! Core module (ptr/len batch ABI) vs WIT components, and fuel vs epoch deadlines, for a
//! filter over 64-byte records in batches of 1024. See README.md here for how to run it.
//!
//! Every variant starts from the same encoded input batches (what the broker holds after
//! decompression) and ends with the host holding the validated tags, so the host-side cost
//! of getting a batch in and the output out counts for every variant:
//! - native: parses the batch in place (the same `logic::filter_batch` the guests run);
//! - core: `ledge_alloc`, copies the batch into linear memory, `ledge_filter`, reads the
//!   output entries in place;
//! - comp-bytes: `filter(list<u8>)`, the canonical ABI copies the batch in and the output out;
//! - comp-typed: parses the batch on the host, builds `list<rec>` (owned `Vec<u8>` keys and
//!   values, as `bindgen!` generates them) and calls `filter`;
//! - comp-typed-ref: the same `list<rec>` lowered from borrowed slices of the batch (a
//!   hand-derived `Lower` type: no host allocation per record), the cheapest typed host.

use anyhow::{Context, Result, bail, ensure};
use logic::{Batch, Check};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{self, Component, ComponentType, Lower};
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, TypedFunc};

mod typed {
    wasmtime::component::bindgen!({ path: "../wit", world: "typed-filter" });
}

/// `rec` lowered from borrowed slices of the input batch.
#[derive(ComponentType, Lower)]
#[component(record)]
struct RecRef<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    timestamp: i64,
    offset: i64,
}

const FUEL_PER_BATCH: u64 = 1_000_000_000;
/// Ticks of the epoch ticker (1 ms each) a batch may run for.
const EPOCH_DEADLINE_TICKS: u64 = 1_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Limit {
    None,
    Fuel,
    Epoch,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::None => "none",
            Limit::Fuel => "fuel",
            Limit::Epoch => "epoch",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Abi {
    Native,
    Core,
    CompBytes,
    CompTyped,
    CompTypedRef,
}

impl Abi {
    fn name(self) -> &'static str {
        match self {
            Abi::Native => "native",
            Abi::Core => "core",
            Abi::CompBytes => "comp-bytes",
            Abi::CompTyped => "comp-typed",
            Abi::CompTypedRef => "comp-typed-ref",
        }
    }
}

trait Runner {
    /// Runs one batch and returns how many records were kept.
    fn run(&mut self, batch: &[u8]) -> Result<u32>;
}

fn count_tags(tags: &[u8], n: usize) -> Result<u32> {
    ensure!(tags.len() == n, "{} tags for {n} records", tags.len());
    let mut keep = 0u32;
    for &t in tags {
        match t {
            logic::KEEP => keep += 1,
            logic::DROP => {}
            t => bail!("bad tag {t}"),
        }
    }
    Ok(keep)
}

/// Validates `u32 count, count x u8 tag` against the input's record count.
fn check_output(out: &[u8], batch: &[u8]) -> Result<u32> {
    let n = u32::from_le_bytes(batch[..4].try_into()?) as usize;
    ensure!(out.len() >= 4, "short output");
    let count = u32::from_le_bytes(out[..4].try_into()?) as usize;
    ensure!(count == n, "entry_count {count} != record_count {n}");
    count_tags(&out[4..], n)
}

struct Native {
    check: Check,
    out: Vec<u8>,
}

impl Runner for Native {
    fn run(&mut self, batch: &[u8]) -> Result<u32> {
        self.out.clear();
        logic::filter_batch(self.check, batch, &mut self.out).map_err(anyhow::Error::msg)?;
        check_output(&self.out, batch)
    }
}

fn prepare(store: &mut Store<()>, limit: Limit) -> Result<()> {
    match limit {
        Limit::None => {}
        Limit::Fuel => store.set_fuel(FUEL_PER_BATCH)?,
        Limit::Epoch => store.set_epoch_deadline(EPOCH_DEADLINE_TICKS),
    }
    Ok(())
}

fn new_store(engine: &Engine, limit: Limit) -> Result<Store<()>> {
    let mut store = Store::new(engine, ());
    prepare(&mut store, limit)?;
    if limit == Limit::Epoch {
        store.epoch_deadline_trap();
    }
    Ok(store)
}

struct Core {
    store: Store<()>,
    limit: Limit,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    filter: TypedFunc<(i32, i32), i64>,
}

fn unpack(r: i64, mem_len: usize) -> Result<std::ops::Range<usize>> {
    let (ptr, len) = (
        ((r as u64) >> 32) as usize,
        (r as u64 & 0xffff_ffff) as usize,
    );
    ensure!(
        ptr.checked_add(len).is_some_and(|e| e <= mem_len),
        "result out of bounds"
    );
    Ok(ptr..ptr + len)
}

impl Core {
    fn new(engine: &Engine, module: &Module, limit: Limit, check: Check) -> Result<Self> {
        let mut store = new_store(engine, limit)?;
        let inst = Instance::new(&mut store, module, &[])?;
        let memory = inst.get_memory(&mut store, "memory").context("memory")?;
        let version = inst.get_typed_func::<(), i32>(&mut store, "ledge_abi_version")?;
        ensure!(version.call(&mut store, ())? == 1);
        let alloc = inst.get_typed_func::<i32, i32>(&mut store, "ledge_alloc")?;
        let init = inst.get_typed_func::<(i32, i32), i64>(&mut store, "ledge_init")?;
        let filter = inst.get_typed_func::<(i32, i32), i64>(&mut store, "ledge_filter")?;
        let params = logic::param_block(&[("check", check.name())]);
        let p = alloc.call(&mut store, params.len() as i32)? as u32 as usize;
        memory.data_mut(&mut store)[p..p + params.len()].copy_from_slice(&params);
        let r = init.call(&mut store, (p as i32, params.len() as i32))?;
        let range = unpack(r, memory.data_size(&store))?;
        ensure!(memory.data(&store)[range] == [0], "init failed");
        Ok(Core {
            store,
            limit,
            memory,
            alloc,
            filter,
        })
    }
}

impl Runner for Core {
    fn run(&mut self, batch: &[u8]) -> Result<u32> {
        prepare(&mut self.store, self.limit)?;
        let len = batch.len();
        let p = self.alloc.call(&mut self.store, len as i32)? as u32 as usize;
        ensure!(p != 0, "guest out of memory");
        let mem = self.memory.data_mut(&mut self.store);
        mem.get_mut(p..p + len)
            .context("alloc out of bounds")?
            .copy_from_slice(batch);
        let r = self.filter.call(&mut self.store, (p as i32, len as i32))?;
        let range = unpack(r, self.memory.data_size(&self.store))?;
        check_output(&self.memory.data(&self.store)[range], batch)
    }
}

struct CompBytes {
    store: Store<()>,
    limit: Limit,
    filter: component::Func,
}

fn comp_init(store: &mut Store<()>, inst: &component::Instance, check: Check) -> Result<()> {
    let init = inst
        .get_typed_func::<(Vec<(String, String)>,), (Result<(), String>,)>(&mut *store, "init")?;
    let (r,) = init.call(
        &mut *store,
        (vec![("check".to_string(), check.name().to_string())],),
    )?;
    r.map_err(anyhow::Error::msg)
}

impl CompBytes {
    fn new(engine: &Engine, comp: &Component, limit: Limit, check: Check) -> Result<Self> {
        let mut store = new_store(engine, limit)?;
        let linker = component::Linker::new(engine);
        let inst = linker.instantiate(&mut store, comp)?;
        comp_init(&mut store, &inst, check)?;
        let filter = inst.get_func(&mut store, "filter").context("filter")?;
        // Type-check once here; `run` re-wraps it for the batch's lifetime (no lookup).
        filter.typed::<(&[u8],), (Vec<u8>,)>(&store)?;
        Ok(CompBytes {
            store,
            limit,
            filter,
        })
    }
}

impl Runner for CompBytes {
    fn run(&mut self, batch: &[u8]) -> Result<u32> {
        prepare(&mut self.store, self.limit)?;
        // SAFETY: the type was checked in `new`; only the lifetime differs.
        let f = unsafe { component::TypedFunc::<(&[u8],), (Vec<u8>,)>::new_unchecked(self.filter) };
        let (out,) = f.call(&mut self.store, (batch,))?;
        check_output(&out, batch)
    }
}

struct CompTyped {
    store: Store<()>,
    limit: Limit,
    bindings: typed::TypedFilter,
    recs: Vec<typed::Rec>,
}

impl CompTyped {
    fn new(engine: &Engine, comp: &Component, limit: Limit, check: Check) -> Result<Self> {
        let mut store = new_store(engine, limit)?;
        let linker = component::Linker::new(engine);
        let bindings = typed::TypedFilter::instantiate(&mut store, comp, &linker)?;
        let params = vec![("check".to_string(), check.name().to_string())];
        bindings
            .call_init(&mut store, &params)?
            .map_err(anyhow::Error::msg)?;
        Ok(CompTyped {
            store,
            limit,
            bindings,
            recs: Vec::with_capacity(1024),
        })
    }
}

impl Runner for CompTyped {
    fn run(&mut self, batch: &[u8]) -> Result<u32> {
        prepare(&mut self.store, self.limit)?;
        self.recs.clear();
        let mut b = Batch::parse(batch).map_err(anyhow::Error::msg)?;
        while let Some(r) = b.next_record().map_err(anyhow::Error::msg)? {
            self.recs.push(typed::Rec {
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r
                    .headers()
                    .map(|(k, v)| Ok((std::str::from_utf8(k)?.to_string(), v.map(<[u8]>::to_vec))))
                    .collect::<Result<_>>()?,
                timestamp: r.timestamp,
                offset: r.offset,
            });
        }
        let tags = self.bindings.call_filter(&mut self.store, &self.recs)?;
        count_tags(&tags, self.recs.len())
    }
}

struct CompTypedRef {
    store: Store<()>,
    limit: Limit,
    filter: component::Func,
}

impl CompTypedRef {
    fn new(engine: &Engine, comp: &Component, limit: Limit, check: Check) -> Result<Self> {
        let mut store = new_store(engine, limit)?;
        let linker = component::Linker::new(engine);
        let inst = linker.instantiate(&mut store, comp)?;
        comp_init(&mut store, &inst, check)?;
        let filter = inst.get_func(&mut store, "filter").context("filter")?;
        // Type-check once here; `run` re-wraps it for the batch's lifetime (no lookup).
        filter.typed::<(&[RecRef<'_>],), (Vec<u8>,)>(&store)?;
        Ok(CompTypedRef {
            store,
            limit,
            filter,
        })
    }
}

impl Runner for CompTypedRef {
    fn run(&mut self, batch: &[u8]) -> Result<u32> {
        prepare(&mut self.store, self.limit)?;
        let mut recs: Vec<RecRef<'_>> = Vec::with_capacity(1024);
        let mut b = Batch::parse(batch).map_err(anyhow::Error::msg)?;
        while let Some(r) = b.next_record().map_err(anyhow::Error::msg)? {
            recs.push(RecRef {
                key: r.key,
                value: r.value,
                headers: r
                    .headers()
                    .map(|(k, v)| Ok((std::str::from_utf8(k)?, v)))
                    .collect::<Result<_>>()?,
                timestamp: r.timestamp,
                offset: r.offset,
            });
        }
        // SAFETY: the type was checked in `new`; only the lifetime differs.
        let f = unsafe {
            component::TypedFunc::<(&[RecRef<'_>],), (Vec<u8>,)>::new_unchecked(self.filter)
        };
        let (tags,) = f.call(&mut self.store, (&recs,))?;
        count_tags(&tags, recs.len())
    }
}

struct Engines {
    none: Engine,
    fuel: Engine,
    epoch: Engine,
}

impl Engines {
    fn new() -> Result<Self> {
        let mk = |limit: Limit| -> Result<Engine> {
            let mut c = Config::new();
            c.wasm_component_model(true);
            c.consume_fuel(limit == Limit::Fuel);
            c.epoch_interruption(limit == Limit::Epoch);
            Ok(Engine::new(&c)?)
        };
        Ok(Engines {
            none: mk(Limit::None)?,
            fuel: mk(Limit::Fuel)?,
            epoch: mk(Limit::Epoch)?,
        })
    }
    fn get(&self, l: Limit) -> &Engine {
        match l {
            Limit::None => &self.none,
            Limit::Fuel => &self.fuel,
            Limit::Epoch => &self.epoch,
        }
    }
}

struct Guests {
    core: Vec<u8>,
    bytes: Vec<u8>,
    typed: Vec<u8>,
}

fn componentize(core: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(core)?
        .validate(true)
        .encode()
}

fn load_guests(dir: &std::path::Path) -> Result<Guests> {
    let read = |n: &str| {
        std::fs::read(dir.join(n))
            .with_context(|| format!("{}/{n} (build the guests first)", dir.display()))
    };
    Ok(Guests {
        core: read("guest_core.wasm")?,
        bytes: componentize(&read("guest_bytes.wasm")?)?,
        typed: componentize(&read("guest_typed.wasm")?)?,
    })
}

struct Variant {
    abi: Abi,
    limit: Limit,
    check: Check,
    runner: Box<dyn Runner>,
}

impl Variant {
    fn name(&self) -> String {
        if self.abi == Abi::Native {
            format!("{}/{}", self.check.name(), self.abi.name())
        } else {
            format!(
                "{}/{}/{}",
                self.check.name(),
                self.abi.name(),
                self.limit.name()
            )
        }
    }
}

/// This thread's CPU time in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_THREAD_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<()> {
    let mut batches_n = 2000usize;
    let mut rounds = 5usize;
    let mut warmup = 200usize;
    let mut chunk = 50usize;
    let mut filter: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().context("missing value");
        match a.as_str() {
            "--batches" => batches_n = val()?.parse()?,
            "--rounds" => rounds = val()?.parse()?,
            "--warmup" => warmup = val()?.parse()?,
            "--chunk" => chunk = val()?.parse()?,
            "--only" => filter = Some(val()?),
            _ => bail!(
                "usage: wasm-abi-bench [--batches N] [--rounds N] [--warmup N] [--chunk N] [--only SUBSTRING]"
            ),
        }
    }
    let wasm_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-unknown-unknown/release");
    let t = Instant::now();
    let guests = load_guests(&wasm_dir)?;
    eprintln!(
        "guests: core {} B, bytes component {} B, typed component {} B (componentized in {:?})",
        guests.core.len(),
        guests.bytes.len(),
        guests.typed.len(),
        t.elapsed()
    );

    // Distinct batches, reused cyclically (2,000 x 1024 records = 2,048,000 records a pass).
    const BATCH_RECORDS: u32 = 1024;
    let distinct = batches_n.min(256);
    let mut rng = logic::Rng::new(0x1ed9e);
    let inputs: Vec<Vec<u8>> = (0..distinct)
        .map(|i| logic::gen_batch(&mut rng, i as i64 * 1024, BATCH_RECORDS, 64))
        .collect();
    eprintln!(
        "input batch: {} B for {BATCH_RECORDS} records ({} distinct batches)",
        inputs[0].len(),
        distinct
    );

    let engines = Engines::new()?;
    let ticker_stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let e = engines.epoch.clone();
        let stop = ticker_stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                e.increment_epoch();
            }
        })
    };

    let mut variants = Vec::new();
    for check in [Check::Even, Check::Vip] {
        variants.push(Variant {
            abi: Abi::Native,
            limit: Limit::None,
            check,
            runner: Box::new(Native {
                check,
                out: Vec::new(),
            }),
        });
        for limit in [Limit::None, Limit::Fuel, Limit::Epoch] {
            let engine = engines.get(limit);
            let module = Module::new(engine, &guests.core)?;
            let bytes = Component::new(engine, &guests.bytes)?;
            let typed = Component::new(engine, &guests.typed)?;
            variants.push(Variant {
                abi: Abi::Core,
                limit,
                check,
                runner: Box::new(Core::new(engine, &module, limit, check)?),
            });
            variants.push(Variant {
                abi: Abi::CompBytes,
                limit,
                check,
                runner: Box::new(CompBytes::new(engine, &bytes, limit, check)?),
            });
            variants.push(Variant {
                abi: Abi::CompTyped,
                limit,
                check,
                runner: Box::new(CompTyped::new(engine, &typed, limit, check)?),
            });
            variants.push(Variant {
                abi: Abi::CompTypedRef,
                limit,
                check,
                runner: Box::new(CompTypedRef::new(engine, &typed, limit, check)?),
            });
        }
    }
    if let Some(f) = &filter {
        variants.retain(|v| v.name().contains(f.as_str()));
    }

    // Correctness: every variant keeps the same records as native.
    for check in [Check::Even, Check::Vip] {
        let mut native = Native {
            check,
            out: Vec::new(),
        };
        let want: Vec<u32> = inputs
            .iter()
            .map(|b| native.run(b))
            .collect::<Result<_>>()?;
        for v in variants.iter_mut().filter(|v| v.check == check) {
            let got: Vec<u32> = inputs
                .iter()
                .map(|b| v.runner.run(b))
                .collect::<Result<_>>()?;
            ensure!(got == want, "{} disagrees with native", v.name());
        }
        let kept: u64 = want.iter().map(|&k| u64::from(k)).sum();
        eprintln!(
            "{}: keeps {kept} of {} records",
            check.name(),
            inputs.len() as u64 * u64::from(BATCH_RECORDS)
        );
    }

    let chunks = batches_n.div_ceil(chunk).max(1);
    let batches_n = chunks * chunk;
    let records = batches_n as f64 * f64::from(BATCH_RECORDS);
    let n = variants.len();
    // rates[i] = one records/s figure per round, from thread CPU time and from wall time.
    let mut cpu_rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut wall_rates: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut next = 0usize;
    for round in 0..rounds {
        for v in variants.iter_mut() {
            for j in 0..if round == 0 { warmup } else { warmup / 10 } {
                v.runner.run(&inputs[j % inputs.len()])?;
            }
        }
        // Finely interleaved: `chunk` batches of each variant in turn, in a rotating order,
        // so load from other work on the machine falls on all variants alike.
        let mut cpu = vec![0f64; n];
        let mut wall = vec![0f64; n];
        for c in 0..chunks {
            for k in 0..n {
                let i = (k + c + round) % n;
                let v = &mut variants[i];
                let (t, tc) = (Instant::now(), thread_cpu());
                let mut kept = 0u64;
                for _ in 0..chunk {
                    kept += u64::from(v.runner.run(&inputs[next % inputs.len()])?);
                    next += 1;
                }
                cpu[i] += thread_cpu() - tc;
                wall[i] += t.elapsed().as_secs_f64();
                std::hint::black_box(kept);
            }
        }
        for i in 0..n {
            cpu_rates[i].push(records / cpu[i]);
            wall_rates[i].push(records / wall[i]);
        }
        eprintln!("round {} done", round + 1);
    }
    ticker_stop.store(true, Ordering::Relaxed);
    ticker.join().ok();

    // Per round: ratio to the core module with the same check and limit.
    println!(
        "rates from thread CPU time; \"vs core\": median over rounds of (variant / core module with the same check and limit) in that round"
    );
    println!(
        "{:<28} {:>11} {:>11} {:>11} {:>8} {:>10} {:>11} {:>9}",
        "variant",
        "rec/s med",
        "rec/s min",
        "rec/s max",
        "vs core",
        "(min-max)",
        "wall med",
        "wall vs"
    );
    for (i, v) in variants.iter().enumerate() {
        let core = variants.iter().position(|c| {
            c.abi == Abi::Core
                && c.check == v.check
                && c.limit
                    == if v.abi == Abi::Native {
                        Limit::None
                    } else {
                        v.limit
                    }
        });
        let mut r = cpu_rates[i].clone();
        let (mn, mx) = (
            r.iter().copied().fold(f64::MAX, f64::min),
            r.iter().copied().fold(0.0, f64::max),
        );
        let med = median(&mut r);
        let ratio = core.map(|c| {
            let mut per_round: Vec<f64> = cpu_rates[i]
                .iter()
                .zip(&cpu_rates[c])
                .map(|(a, b)| a / b)
                .collect();
            let (lo, hi) = (
                per_round.iter().copied().fold(f64::MAX, f64::min),
                per_round.iter().copied().fold(0.0, f64::max),
            );
            (median(&mut per_round), lo, hi)
        });
        let (rs, range) = match ratio {
            Some((m, lo, hi)) => (format!("{m:.2}"), format!("{lo:.2}-{hi:.2}")),
            None => ("-".into(), "".into()),
        };
        let mut w = wall_rates[i].clone();
        let wall_ratio = core.map_or("-".into(), |c| {
            let mut pr: Vec<f64> = wall_rates[i]
                .iter()
                .zip(&wall_rates[c])
                .map(|(a, b)| a / b)
                .collect();
            format!("{:.2}", median(&mut pr))
        });
        println!(
            "{:<28} {:>11.0} {:>11.0} {:>11.0} {:>8} {:>10} {:>11.0} {:>9}",
            v.name(),
            med,
            mn,
            mx,
            rs,
            range,
            median(&mut w),
            wall_ratio
        );
    }
    // Limits vs no limits, core module, same round.
    for check in [Check::Even, Check::Vip] {
        let idx = |l| {
            variants
                .iter()
                .position(|v| v.abi == Abi::Core && v.check == check && v.limit == l)
        };
        if let (Some(n), Some(f), Some(e)) = (idx(Limit::None), idx(Limit::Fuel), idx(Limit::Epoch))
        {
            let mut fr: Vec<f64> = cpu_rates[n]
                .iter()
                .zip(&cpu_rates[f])
                .map(|(a, b)| a / b)
                .collect();
            let mut er: Vec<f64> = cpu_rates[n]
                .iter()
                .zip(&cpu_rates[e])
                .map(|(a, b)| a / b)
                .collect();
            let mut fe: Vec<f64> = cpu_rates[e]
                .iter()
                .zip(&cpu_rates[f])
                .map(|(a, b)| a / b)
                .collect();
            let (lo, hi) = (
                fe.iter().copied().fold(f64::MAX, f64::min),
                fe.iter().copied().fold(0.0, f64::max),
            );
            println!(
                "{}: core module time with fuel {:.2}x, with epoch {:.2}x of no limits; fuel time / epoch time {:.3} ({lo:.3}-{hi:.3}) (medians of per-round ratios)",
                check.name(),
                median(&mut fr),
                median(&mut er),
                median(&mut fe)
            );
        }
    }
    Ok(())
}
