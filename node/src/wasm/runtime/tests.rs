//! Host tests on tiny WAT modules that follow (or deliberately break) the ABI.

use super::*;
use bytes::Bytes;
use ledge_protocol::{BATCH_HEADER_BYTES, EncodeOptions, Record, encode_batch};

/// The pieces a test module varies; the rest is a correct ABI skeleton: input at 1024,
/// output right after the input, memory grown to fit.
pub(crate) struct Wat {
    pub(crate) export: &'static str,
    pub(crate) init: &'static str,
    pub(crate) before: &'static str,
    pub(crate) per_record: &'static str,
    pub(crate) result: &'static str,
    pub(crate) extra: &'static str,
}

pub(crate) const KEEP: &str = "(i32.store8 (local.get $w) (i32.const 0)) (local.set $w (i32.add (local.get $w) (i32.const 1)))";
pub(crate) const INIT_OK: &str = "(i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1)";
pub(crate) const RESULT: &str = "(i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.extend_i32_u (i32.sub (local.get $w) (local.get $out))))";

impl Default for Wat {
    fn default() -> Self {
        Self {
            export: "ledge_filter",
            init: INIT_OK,
            before: "",
            per_record: KEEP,
            result: RESULT,
            extra: "",
        }
    }
}

impl Wat {
    pub(crate) fn module(&self) -> Vec<u8> {
        let text = format!(
            r#"(module
  {extra}
  (memory (export "memory") 1)
  (func $ensure (param $bytes i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
        (then unreachable)))))
  (func (export "ledge_abi_version") (result i32) (i32.const 1))
  (func (export "ledge_alloc") (param $len i32) (result i32)
    (call $ensure (i32.add (i32.const 1024) (i32.add (i32.mul (local.get $len) (i32.const 2)) (i32.const 65536))))
    (i32.const 1024))
  (func (export "ledge_init") (param $p i32) (param $l i32) (result i64) {init})
  (func (export "{export}") (param $p i32) (param $l i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32) (local $w i32) (local $k i32)
    (local.set $out (i32.add (local.get $p) (local.get $l)))
    (local.set $n (i32.load (local.get $p)))
    {before}
    (i32.store (local.get $out) (local.get $n))
    (local.set $w (i32.add (local.get $out) (i32.const 4)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      {per_record}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    {result}))"#,
            extra = self.extra,
            init = self.init,
            export = self.export,
            before = self.before,
            per_record = self.per_record,
            result = self.result,
        );
        wat::parse_str(&text).unwrap()
    }
}

/// A filter that traps when any byte of its input is `!`: poison by content, so splitting
/// a batch still finds the record.
pub(crate) const TRAP_ON_BANG: &str = r#"
    (local.set $k (local.get $p))
    (block $clean (loop $scan
      (br_if $clean (i32.ge_u (local.get $k) (local.get $out)))
      (if (i32.eq (i32.load8_u (local.get $k)) (i32.const 33)) (then unreachable))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $scan)))"#;

pub(crate) fn records(values: &[&str]) -> (Bytes, usize) {
    let records: Vec<Record> = values
        .iter()
        .map(|value| Record {
            timestamp: 1000,
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![],
        })
        .collect();
    let batch = encode_batch(&records, &EncodeOptions::default()).unwrap();
    (batch.slice(BATCH_HEADER_BYTES..), values.len())
}

fn engine() -> WasmEngine {
    WasmEngine::new(WasmLimits {
        fuel_per_batch: 20_000_000,
        memory_bytes_max: 4 * 1024 * 1024,
        ..WasmLimits::default()
    })
    .unwrap()
}

fn plugin(engine: &WasmEngine, wat: &Wat, kind: PluginKind) -> Result<Plugin, WasmError> {
    let (module, _) = engine.compile(&wat.module(), kind)?;
    Plugin::new(engine, module, vec![])
}

fn header(partition_count: u32) -> InputHeader {
    InputHeader {
        partition: 0,
        partition_count,
        base_offset: 0,
        base_timestamp: 1000,
    }
}

#[test]
fn a_keep_all_filter_keeps_every_record_and_reuses_its_instance() {
    let engine = engine();
    let plugin = plugin(&engine, &Wat::default(), PluginKind::Filter).unwrap();
    let (region, count) = records(&["a", "b", "c"]);
    for _ in 0..3 {
        let run = plugin.run(&header(1), &region, count).unwrap();
        assert_eq!(run.outcomes, vec![Outcome::Keep; 3]);
        assert!(run.fuel_used > 0);
    }
    assert_eq!(plugin.idle.lock().unwrap().len(), 1);
}

#[test]
fn a_partitioner_spreads_records_and_out_of_range_partitions_are_garbage() {
    let engine = engine();
    let wat = Wat {
        export: "ledge_partitioner",
        per_record: "(i32.store8 (local.get $w) (i32.const 4))
            (i32.store (i32.add (local.get $w) (i32.const 1)) (i32.rem_u (local.get $i) (i32.load (i32.add (local.get $p) (i32.const 8)))))
            (local.set $w (i32.add (local.get $w) (i32.const 5)))",
        ..Wat::default()
    };
    let plugin = plugin(&engine, &wat, PluginKind::Partitioner).unwrap();
    let (region, count) = records(&["a", "b", "c", "d"]);
    let run = plugin.run(&header(3), &region, count).unwrap();
    assert_eq!(run.outcomes, [0, 1, 2, 0].map(Outcome::Partition).to_vec());
    // Claims 3 partitions while the topic has 2 in the header it reads... it reads the
    // header, so lie to it with a header of 2 and a module that ignores it.
    let liar = Wat {
        export: "ledge_partitioner",
        per_record: "(i32.store8 (local.get $w) (i32.const 4))
            (i32.store (i32.add (local.get $w) (i32.const 1)) (i32.const 7))
            (local.set $w (i32.add (local.get $w) (i32.const 5)))",
        ..Wat::default()
    };
    let liar = self::plugin(&engine, &liar, PluginKind::Partitioner).unwrap();
    let error = liar.run(&header(2), &region, count).unwrap_err();
    assert!(
        matches!(&error, WasmError::Garbage(m) if m.contains("partition 7 out of range")),
        "{error}"
    );
}

#[test]
fn exports_must_match_the_declared_kind() {
    let engine = engine();
    let error = plugin(&engine, &Wat::default(), PluginKind::Map).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid module: declared as a map but has no `ledge_map` export (kinds it exports: filter)"
    );
    let two = Wat {
        extra: r#"(func (export "ledge_map") (param i32 i32) (result i64) (i64.const 0))"#,
        ..Wat::default()
    };
    let error = plugin(&engine, &two, PluginKind::Filter).unwrap_err();
    assert!(error.to_string().contains("more than one kind"), "{error}");
    let wrong_signature = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "ledge_abi_version") (result i32) (i32.const 1))
            (func (export "ledge_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "ledge_init") (param i32 i32) (result i64) (i64.const 0))
            (func (export "ledge_filter") (param i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let error = engine
        .compile(&wrong_signature, PluginKind::Filter)
        .unwrap_err();
    assert!(error.to_string().contains("wrong signature"), "{error}");
    let no_memory = wat::parse_str(r#"(module (func (export "ledge_filter")))"#).unwrap();
    let error = engine.compile(&no_memory, PluginKind::Filter).unwrap_err();
    assert!(
        error.to_string().contains("no exported `memory`"),
        "{error}"
    );
}

#[test]
fn imports_random_bytes_and_other_abi_versions_are_refused() {
    let engine = engine();
    let importing = Wat {
        extra: r#"(import "env" "log" (func $log (param i32)))"#,
        ..Wat::default()
    };
    let error = plugin(&engine, &importing, PluginKind::Filter).unwrap_err();
    assert!(error.to_string().contains("imports env::log"), "{error}");

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = Vec::new();
    for _ in 0..4096 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        random.push(seed as u8);
    }
    let error = engine.compile(&random, PluginKind::Filter).unwrap_err();
    assert!(
        error.to_string().contains("not a WebAssembly binary"),
        "{error}"
    );
    let mut truncated = Wat::default().module();
    truncated.truncate(truncated.len() / 2);
    let error = engine.compile(&truncated, PluginKind::Filter).unwrap_err();
    assert!(matches!(error, WasmError::InvalidModule(_)), "{error}");

    let text = String::from_utf8(Wat::default().module()).ok();
    assert!(text.is_none());
    let v2 = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "ledge_abi_version") (result i32) (i32.const 2))
            (func (export "ledge_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "ledge_init") (param i32 i32) (result i64) (i64.const 0))
            (func (export "ledge_filter") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    let error = engine.compile(&v2, PluginKind::Filter).unwrap_err();
    assert!(error.to_string().contains("ABI version 2"), "{error}");

    let small = WasmEngine::new(WasmLimits {
        module_bytes_max: 16,
        ..WasmLimits::default()
    })
    .unwrap();
    let error = small
        .compile(&Wat::default().module(), PluginKind::Filter)
        .unwrap_err();
    assert!(
        matches!(error, WasmError::ModuleTooLarge { limit: 16, .. }),
        "{error}"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_the_plugin_recovers() {
    let engine = engine();
    let wat = Wat {
        // Loops forever only when the batch has more than two records.
        before: "(if (i32.gt_u (local.get $n) (i32.const 2)) (then (loop $forever (br $forever))))",
        ..Wat::default()
    };
    let plugin = plugin(&engine, &wat, PluginKind::Filter).unwrap();
    let (region, count) = records(&["a", "b", "c"]);
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    // Three records of a 1024-record budget: a proportional share.
    assert_eq!(error, WasmError::OutOfFuel(20_000_000 * 3 / 1024));
    // The failed instance was discarded; a fresh one serves the next batch.
    let (region, count) = records(&["a"]);
    assert_eq!(
        plugin.run(&header(1), &region, count).unwrap().outcomes,
        vec![Outcome::Keep]
    );
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let engine = engine();
    let wat = Wat {
        before: "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
        ..Wat::default()
    };
    let plugin = plugin(&engine, &wat, PluginKind::Filter).unwrap();
    let (region, count) = records(&["a"]);
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    assert_eq!(error, WasmError::MemoryLimit(4 * 1024 * 1024));
}

#[test]
fn a_trap_names_the_record_position_and_a_huge_or_wild_output_is_garbage() {
    let engine = engine();
    let trap = Wat {
        per_record: "(if (i32.eq (local.get $i) (i32.const 499)) (then unreachable))
            (i32.store8 (local.get $w) (i32.const 0)) (local.set $w (i32.add (local.get $w) (i32.const 1)))",
        ..Wat::default()
    };
    let plugin = plugin(&engine, &trap, PluginKind::Filter).unwrap();
    let values: Vec<String> = (0..600).map(|i| format!("r{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let (region, count) = records(&values);
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    assert!(
        matches!(&error, WasmError::Trap(m) if m.contains("unreachable")),
        "{error}"
    );
    let (region, count) = records(&values[..400]);
    assert_eq!(
        plugin
            .run(&header(1), &region, count)
            .unwrap()
            .outcomes
            .len(),
        400
    );

    let huge = Wat {
        result: "(i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const 0xfffffff0))",
        ..Wat::default()
    };
    let plugin = self::plugin(&engine, &huge, PluginKind::Filter).unwrap();
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    assert!(
        matches!(&error, WasmError::Garbage(m) if m.contains("more than the limit")),
        "{error}"
    );

    let wild = Wat {
        result: "(i64.const 0x7fff000000000010)",
        ..Wat::default()
    };
    let plugin = self::plugin(&engine, &wild, PluginKind::Filter).unwrap();
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    assert!(
        matches!(&error, WasmError::Garbage(m) if m.contains("outside its")),
        "{error}"
    );

    let short = Wat {
        // Claims one entry fewer than there are records.
        before: "(local.set $n (i32.sub (local.get $n) (i32.const 1)))",
        ..Wat::default()
    };
    let plugin = self::plugin(&engine, &short, PluginKind::Filter).unwrap();
    let error = plugin.run(&header(1), &region, count).unwrap_err();
    assert!(
        matches!(&error, WasmError::Garbage(m) if m.contains("entries for")),
        "{error}"
    );
}

#[test]
fn parameters_are_checked_at_deploy_time() {
    let engine = engine();
    let picky = Wat {
        // Refuses any parameter: status 1, message "unknown parameter".
        init: r#"(if (result i64) (i32.eqz (i32.load (local.get $p)))
            (then (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
            (else
              (i32.store8 (i32.const 0) (i32.const 1))
              (i32.store (i32.const 1) (i32.const 17))
              (memory.init $message (i32.const 5) (i32.const 0) (i32.const 17))
              (i64.const 22)))"#,
        extra: r#"(data $message "unknown parameter")"#,
        ..Wat::default()
    };
    let (module, _) = engine.compile(&picky.module(), PluginKind::Filter).unwrap();
    assert!(Plugin::new(&engine, Arc::clone(&module), vec![]).is_ok());
    let error = Plugin::new(&engine, module, vec![("x".into(), "1".into())]).unwrap_err();
    assert_eq!(error, WasmError::Init("unknown parameter".into()));
}

#[test]
fn compiled_modules_load_back_and_keep_their_kind_checks() {
    let engine = engine();
    let bytes = Wat::default().module();
    let (module, compiled) = engine.compile(&bytes, PluginKind::Filter).unwrap();
    assert_eq!(module.hash(), content_hash(&bytes));
    // SAFETY: `compiled` came from this engine's `compile` just above.
    let loaded =
        unsafe { engine.load_compiled(&compiled, PluginKind::Filter, module.hash().into()) }
            .unwrap();
    let plugin = Plugin::new(&engine, loaded, vec![]).unwrap();
    let (region, count) = records(&["x"]);
    assert_eq!(
        plugin.run(&header(1), &region, count).unwrap().outcomes,
        vec![Outcome::Keep]
    );
    // SAFETY: as above.
    let wrong = unsafe { engine.load_compiled(&compiled, PluginKind::Map, module.hash().into()) };
    assert!(wrong.is_err());
    assert_eq!(engine.compatibility_key(), engine.compatibility_key());
}

// Goal: a compile waits for one of wasm.compiles_concurrent_max slots (issue 15: a 5 MB
// module took 6.9 CPU-seconds to compile and uploads were not limited, so a few uploads
// could take every core), and a module over wasm.module_bytes_max is refused without
// waiting. Method: hold the only slot; the compile stays pending however often it is polled
// (work runs inline, so without the slot it would finish on the first poll); freed, it
// finishes.
#[test]
fn compiles_wait_for_one_of_the_compile_slots() {
    use futures_util::FutureExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = WasmEngine::new(WasmLimits {
            compiles_concurrent_max: 1,
            module_bytes_max: 64 * 1024,
            ..WasmLimits::default()
        })
        .unwrap()
        .with_executor(PluginExecutor::Inline);
        let held = Arc::clone(engine.compile_slots())
            .try_acquire_owned()
            .unwrap();
        let bytes = Bytes::from(Wat::default().module());
        let mut compile = std::pin::pin!(engine.compile_in_turn(bytes, PluginKind::Filter));
        for _ in 0..10 {
            assert!(
                (&mut compile).now_or_never().is_none(),
                "waits for the slot"
            );
            tokio::task::yield_now().await;
        }
        let too_large = Bytes::from(vec![0u8; 64 * 1024 + 1]);
        let refused = engine
            .compile_in_turn(too_large, PluginKind::Filter)
            .now_or_never()
            .expect("refused without waiting for a slot");
        assert!(
            matches!(refused, Err(WasmError::ModuleTooLarge { .. })),
            "{refused:?}"
        );
        drop(held);
        let (module, _) = compile.await.unwrap();
        assert_eq!(module.kind(), PluginKind::Filter);
    });
}

// Goal: idle instances kept warm over all plug-ins hold at most wasm.idle_instance_bytes_max
// of linear memory (issue 15: 16 cached plug-ins added 1 GiB); an instance that does not fit
// is dropped, not kept, and a plug-in dropped from the cache gives its share back.
#[test]
fn idle_instances_fit_in_the_node_wide_byte_budget() {
    let probe = engine();
    let first = plugin(&probe, &Wat::default(), PluginKind::Filter).unwrap();
    // What one idle instance of this module holds after `ledge_init`.
    let one = probe.idle_instance_bytes();
    assert!(one > 0);
    assert_eq!(first.idle_instances(), 1);
    drop(first);
    assert_eq!(
        probe.idle_instance_bytes(),
        0,
        "given back with its plug-in"
    );

    let engine = WasmEngine::new(WasmLimits {
        fuel_per_batch: 20_000_000,
        memory_bytes_max: 4 * 1024 * 1024,
        // Room for one instance, not two.
        idle_instance_bytes_max: one + one / 2,
        ..WasmLimits::default()
    })
    .unwrap();
    let kept = plugin(&engine, &Wat::default(), PluginKind::Filter).unwrap();
    let over = plugin(&engine, &Wat::default(), PluginKind::Filter).unwrap();
    assert_eq!(kept.idle_instances(), 1);
    assert_eq!(over.idle_instances(), 0, "no room: dropped");
    assert_eq!(engine.idle_instance_bytes(), one);
    // It still runs (on a fresh instance), and keeps one once there is room.
    drop(kept);
    let (region, count) = records(&["a"]);
    let run = over.run(&header(1), &region, count).unwrap();
    assert_eq!(run.outcomes, vec![Outcome::Keep]);
    assert_eq!(over.idle_instances(), 1);
    assert!(engine.idle_instance_bytes() <= one + one / 2);
}

// Goal: guest calls wait for one of wasm.calls_concurrent_max slots, so plug-ins hold at most
// that many blocking threads and instances in use at once (CPU and memory), whatever the
// number of produces, fetches and transforms calling them. Method: hold the only slot; a
// call stays pending however often it is polled (work runs inline, so without the slot it
// would finish on the first poll); freed, it finishes.
#[test]
fn calls_wait_for_one_of_the_call_slots() {
    use futures_util::FutureExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = WasmEngine::new(WasmLimits {
            calls_concurrent_max: 1,
            fuel_per_batch: 20_000_000,
            memory_bytes_max: 4 * 1024 * 1024,
            ..WasmLimits::default()
        })
        .unwrap()
        .with_executor(PluginExecutor::Inline);
        let plugin = Arc::new(plugin(&engine, &Wat::default(), PluginKind::Filter).unwrap());
        let held = Arc::clone(engine.call_slots()).try_acquire_owned().unwrap();
        let (region, count) = records(&["a"]);
        let mut call = std::pin::pin!(plugin.run_on_executor(header(1), region, count));
        for _ in 0..10 {
            assert!((&mut call).now_or_never().is_none(), "waits for the slot");
            tokio::task::yield_now().await;
        }
        drop(held);
        let run = call.await.unwrap();
        assert_eq!(run.outcomes, vec![Outcome::Keep]);
    });
}
