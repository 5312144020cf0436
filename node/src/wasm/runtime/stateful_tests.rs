//! Host calls of the stateful kinds (aggregate, join; docs/STREAMS.md) on tiny WAT modules
//! that answer fixed bytes, and on the `filters/` examples built for wasm32.

use super::*;
use crate::wasm::abi::{GroupOutcome, SlotChange, Window};
use crate::wasm::runtime::tests::{Wat, records};
use ledge_protocol::wasm_abi::{TAG_DROP, TAG_KEEP, TAG_KEY};

fn engine() -> WasmEngine {
    WasmEngine::new(WasmLimits {
        fuel_per_batch: 20_000_000,
        memory_bytes_max: 4 * 1024 * 1024,
        ..WasmLimits::default()
    })
    .unwrap()
}

fn header() -> InputHeader {
    InputHeader {
        partition: 0,
        partition_count: 1,
        base_offset: 0,
        base_timestamp: 1000,
    }
}

/// `bytes` as a WAT string literal.
fn literal(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("\\{byte:02x}")).collect()
}

/// A module whose every call export answers `output` (at 256) and whose
/// `ledge_state_schema` answers `schema` (at 16); `exports` are the call exports it has,
/// `body` replaces the answer of the calls when set.
pub(crate) struct Fixed<'a> {
    pub(crate) exports: &'a [&'a str],
    pub(crate) schema: &'a [u8],
    pub(crate) output: &'a [u8],
    pub(crate) body: Option<&'a str>,
}

impl Default for Fixed<'_> {
    fn default() -> Self {
        Self {
            exports: &["ledge_aggregate", "ledge_state_check"],
            schema: b"u64",
            output: &[],
            body: None,
        }
    }
}

impl Fixed<'_> {
    pub(crate) fn module(&self) -> Vec<u8> {
        let answer = format!("(i64.const {})", (256u64 << 32) | self.output.len() as u64);
        let body = self.body.unwrap_or(&answer);
        let calls: String = self
            .exports
            .iter()
            .map(|name| format!(r#"(func (export "{name}") (param i32 i32) (result i64) {body})"#))
            .collect();
        // A join has no state schema.
        let schema_export = if self.exports.contains(&"ledge_join") {
            String::new()
        } else {
            format!(
                r#"(func (export "ledge_state_schema") (result i64) (i64.const {}))"#,
                (16u64 << 32) | self.schema.len() as u64
            )
        };
        let text = format!(
            r#"(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{schema}")
  (data (i32.const 256) "{output}")
  (func (export "ledge_abi_version") (result i32) (i32.const 1))
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 8192))
  (func (export "ledge_init") (param i32 i32) (result i64)
    (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
  {schema_export}
  {calls})"#,
            schema = literal(self.schema),
            output = literal(self.output),
        );
        wat::parse_str(&text).unwrap()
    }

    fn plugin(&self, engine: &WasmEngine, kind: PluginKind) -> Result<Plugin, WasmError> {
        let (module, _) = engine.compile(&self.module(), kind)?;
        Plugin::new(engine, module, vec![])
    }
}

// Goal: an aggregate needs ledge_aggregate, ledge_state_schema and ledge_state_check, may
// have ledge_group and ledge_merge with the ABI's signatures, and no other kind may have
// them; the state schema is read at upload and kept with the module.
#[test]
fn aggregate_exports_are_checked_and_the_schema_is_read_at_upload() {
    let engine = engine();
    let plugin = Fixed::default()
        .plugin(&engine, PluginKind::Aggregate)
        .unwrap();
    assert_eq!(plugin.module().state_schema(), Some("u64"));
    assert!(!plugin.module().exports("ledge_group"));

    let no_check = Fixed {
        exports: &["ledge_aggregate"],
        ..Fixed::default()
    };
    let error = no_check.plugin(&engine, PluginKind::Aggregate).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid module: missing export `ledge_state_check` (is it built with ledge-wasm-sdk?)"
    );
    let with_group = Fixed {
        exports: &[
            "ledge_aggregate",
            "ledge_state_check",
            "ledge_group",
            "ledge_merge",
        ],
        ..Fixed::default()
    };
    let plugin = with_group.plugin(&engine, PluginKind::Aggregate).unwrap();
    assert!(plugin.module().exports("ledge_group"));
    // The same module declared as a join: no ledge_join, and exports of an aggregate.
    let error = with_group.plugin(&engine, PluginKind::Join).unwrap_err();
    assert!(
        error.to_string().contains("no `ledge_join` export"),
        "{error}"
    );
    let join_with_group = Fixed {
        exports: &["ledge_join", "ledge_group"],
        ..Fixed::default()
    };
    let error = join_with_group
        .plugin(&engine, PluginKind::Join)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("exports `ledge_group`, which only an aggregate has"),
        "{error}"
    );
    let join = Fixed {
        exports: &["ledge_join"],
        ..Fixed::default()
    };
    let plugin = join.plugin(&engine, PluginKind::Join).unwrap();
    // Only an aggregate has a schema.
    assert_eq!(plugin.module().state_schema(), None);
    // A filter may not carry an aggregate's exports either.
    let filter = Wat {
        extra: r#"(func (export "ledge_merge") (param i32 i32) (result i64) (i64.const 0))"#,
        ..Wat::default()
    };
    let error = engine
        .compile(&filter.module(), PluginKind::Filter)
        .unwrap_err();
    assert!(error.to_string().contains("`ledge_merge`"), "{error}");
    // A group export with the wrong signature.
    let wrong = wat::parse_str(
        r#"(module (memory (export "memory") 1)
            (func (export "ledge_abi_version") (result i32) (i32.const 1))
            (func (export "ledge_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "ledge_init") (param i32 i32) (result i64) (i64.const 0))
            (func (export "ledge_aggregate") (param i32 i32) (result i64) (i64.const 0))
            (func (export "ledge_state_check") (param i32 i32) (result i64) (i64.const 0))
            (func (export "ledge_state_schema") (result i64) (i64.const 0))
            (func (export "ledge_group") (param i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    let error = engine.compile(&wrong, PluginKind::Aggregate).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`ledge_group` has the wrong signature"),
        "{error}"
    );
    // Schemas must be 1..=1024 bytes of UTF-8.
    for schema in [&b""[..], &[0xff, 0xfe], &[b'x'; 1025]] {
        let bad = Fixed {
            schema,
            ..Fixed::default()
        };
        let error = bad.plugin(&engine, PluginKind::Aggregate).unwrap_err();
        assert!(error.to_string().contains("ledge_state_schema"), "{error}");
    }
}

// Goal: ledge_aggregate's output is decoded with the counts the host asked for; garbage,
// traps and running out of fuel are errors that discard the instance, and a good call
// gives it back. Calls of another kind are refused without running anything.
#[test]
fn aggregate_calls_are_bounded_and_garbage_discards_the_instance() {
    let engine = engine();
    // One application OK, one slot put "7".
    let output = [0, 1, 1, 0, 0, 0, b'7'];
    let plugin = Fixed {
        output: &output,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let (region, count) = records(&["a"]);
    let slots = [Slot {
        key: b"alice",
        window: Some(Window {
            start: 0,
            end: 60_000,
        }),
        state: Some(b"6"),
    }];
    let one = [Application {
        record_index: 0,
        slot_index: 0,
    }];
    let run = plugin
        .aggregate(&slots, &header(), &region, count, &one)
        .unwrap();
    assert_eq!(run.output.applications, vec![Ok(())]);
    assert_eq!(
        run.output.slots,
        vec![SlotChange::Put(Bytes::from_static(b"7"))]
    );
    assert!(run.fuel_used > 0);
    assert_eq!(plugin.idle_instances(), 1);
    // The same answer for two applications is cut short: garbage, and the instance goes.
    let two = [one[0], one[0]];
    let error = plugin
        .aggregate(&slots, &header(), &region, count, &two)
        .unwrap_err();
    assert!(
        matches!(&error, WasmError::Garbage(message) if message.contains("application 1")),
        "{error}"
    );
    assert_eq!(plugin.idle_instances(), 0);
    // Record by record, group (no ledge_group), join: not this module's calls.
    let error = plugin.run(&header(), &region, count).unwrap_err();
    assert!(
        error.to_string().contains("not run record by record"),
        "{error}"
    );
    let error = plugin.group(&header(), &region, count).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the module does not export `ledge_group`"
    );
    let error = plugin
        .join((&header(), &region, count), (&header(), &[], 0), &[])
        .unwrap_err();
    assert!(matches!(error, WasmError::WrongCall(_)), "{error}");

    let trapping = Fixed {
        body: Some("unreachable"),
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let error = trapping
        .aggregate(&slots, &header(), &region, count, &one)
        .unwrap_err();
    assert!(matches!(error, WasmError::Trap(_)), "{error}");
    let looping = Fixed {
        body: Some("(loop $forever (br $forever)) (i64.const 0)"),
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let error = looping.check_states(&[b"1"]).unwrap_err();
    assert!(matches!(error, WasmError::OutOfFuel(_)), "{error}");
    let wild = Fixed {
        body: Some("(i64.const -1)"),
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let error = wild
        .aggregate(&slots, &header(), &region, count, &one)
        .unwrap_err();
    assert!(matches!(error, WasmError::Garbage(_)), "{error}");
    assert_eq!(wild.idle_instances(), 0);
}

// Goal: ledge_group, ledge_merge and ledge_state_check answers decode with their layouts.
#[test]
fn group_merge_and_state_check_answers_decode() {
    let engine = engine();
    let exports = [
        "ledge_aggregate",
        "ledge_state_check",
        "ledge_group",
        "ledge_merge",
    ];
    let mut group = 3u32.to_le_bytes().to_vec();
    group.extend_from_slice(&[TAG_KEY, 2, 0, 0, 0, b'4', b'2', TAG_KEEP, TAG_DROP]);
    let plugin = Fixed {
        exports: &exports,
        output: &group,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let (region, count) = records(&["a", "b", "c"]);
    let run = plugin.group(&header(), &region, count).unwrap();
    assert_eq!(
        run.output,
        vec![
            GroupOutcome::Key(Bytes::from_static(b"42")),
            GroupOutcome::Keep,
            GroupOutcome::Drop
        ]
    );
    let (two, two_count) = records(&["a", "b"]);
    assert!(plugin.group(&header(), &two, two_count).is_err());

    // Merge: one state "3"; state check: the same bytes read as "ok" then garbage.
    let merged = [0, 1, 0, 0, 0, b'3'];
    let plugin = Fixed {
        exports: &exports,
        output: &merged,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let run = plugin.merge(&[(b"1", b"2")]).unwrap();
    assert_eq!(run.output, vec![Ok(Bytes::from_static(b"3"))]);
    let error = plugin.check_states(&[b"1"]).unwrap_err();
    assert!(matches!(error, WasmError::Garbage(_)), "{error}");

    let checks = [0, 2, 3, 0, 0, 0, b'b', b'a', b'd'];
    let plugin = Fixed {
        exports: &exports,
        output: &checks,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Aggregate)
    .unwrap();
    let run = plugin.check_states(&[b"1", b"x"]).unwrap();
    assert_eq!(run.output, vec![Ok(()), Err("bad".to_string())]);
}

// Goal: ledge_join answers one flat_map-like entry per pair; KEEP (no single input record)
// is garbage.
#[test]
fn join_answers_one_entry_per_pair() {
    let engine = engine();
    let mut dropped = 2u32.to_le_bytes().to_vec();
    dropped.extend_from_slice(&[TAG_DROP, TAG_DROP]);
    let plugin = Fixed {
        exports: &["ledge_join"],
        output: &dropped,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Join)
    .unwrap();
    let (left, left_count) = records(&["order 1", "order 2"]);
    let (right, right_count) = records(&["customer"]);
    let pairs = [
        JoinPair {
            left_index: 0,
            right_index: Some(0),
        },
        JoinPair {
            left_index: 1,
            right_index: None,
        },
    ];
    let run = plugin
        .join(
            (&header(), &left, left_count),
            (&header(), &right, right_count),
            &pairs,
        )
        .unwrap();
    assert_eq!(run.output, vec![Outcome::Drop, Outcome::Drop]);
    let error = plugin.merge(&[]).unwrap_err();
    assert!(matches!(error, WasmError::WrongCall(_)), "{error}");

    let mut kept = 1u32.to_le_bytes().to_vec();
    kept.push(TAG_KEEP);
    let keeping = Fixed {
        exports: &["ledge_join"],
        output: &kept,
        ..Fixed::default()
    }
    .plugin(&engine, PluginKind::Join)
    .unwrap();
    let error = keeping
        .join(
            (&header(), &left, left_count),
            (&header(), &right, right_count),
            &pairs[..1],
        )
        .unwrap_err();
    assert!(
        error.to_string().contains("a join may not return KEEP"),
        "{error}"
    );
}

/// An example of `filters/`, built for wasm32 (`.ci/run` builds them before the tests).
pub(crate) fn example(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; build the examples with `cargo build --manifest-path filters/Cargo.toml \
             --release --target wasm32-unknown-unknown`",
            path.display()
        )
    })
}

/// `(key, value)` records with timestamps 1000.
fn keyed(pairs: &[(&str, &str)]) -> (Bytes, usize) {
    let records: Vec<ledge_protocol::Record> = pairs
        .iter()
        .map(|(key, value)| ledge_protocol::Record {
            timestamp: 1000,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![],
        })
        .collect();
    let batch =
        ledge_protocol::encode_batch(&records, &ledge_protocol::EncodeOptions::default()).unwrap();
    (
        batch.slice(ledge_protocol::BATCH_HEADER_BYTES..),
        pairs.len(),
    )
}

// Goal: the order-counts example, built with the SDK for wasm32, passes the upload checks
// (schema `u64`, a `ledge_group`), groups orders by customer_id through the host, and counts
// them into the host's slots: a stored count goes up, a new key starts from 0; a stored
// state it cannot read is reported by ledge_state_check.
#[test]
fn the_order_counts_example_counts_orders_per_customer_through_the_host() {
    let engine = WasmEngine::new(WasmLimits::default()).unwrap();
    let (module, _) = engine
        .compile(&example("order_counts"), PluginKind::Aggregate)
        .unwrap();
    assert_eq!(module.state_schema(), Some("u64"));
    assert!(module.exports("ledge_group"));
    assert!(!module.exports("ledge_merge"));
    let plugin = Plugin::new(&engine, module, vec![]).unwrap();
    let (region, count) = records(&[
        r#"{"order_id": 1, "customer_id": 42, "amount": 10}"#,
        r#"{"order_id": 2, "customer_id": "7", "amount": 5}"#,
        r#"{"order_id": 3, "customer_id": 42, "amount": 1}"#,
        r#"{"order_id": 4}"#,
    ]);
    let grouped = plugin.group(&header(), &region, count).unwrap().output;
    assert_eq!(
        grouped[..3],
        [
            GroupOutcome::Key(Bytes::from_static(b"42")),
            GroupOutcome::Key(Bytes::from_static(b"7")),
            GroupOutcome::Key(Bytes::from_static(b"42")),
        ]
    );
    assert_eq!(
        grouped[3],
        GroupOutcome::Error("the order has no `customer_id`".into())
    );
    // The host's part: one slot per key, an application per grouped record.
    let slots = [
        Slot {
            key: b"42",
            window: None,
            state: Some(b"5"),
        },
        Slot {
            key: b"7",
            window: None,
            state: None,
        },
    ];
    let applications = [(0, 0), (1, 1), (2, 0)].map(|(record_index, slot_index)| Application {
        record_index,
        slot_index,
    });
    let run = plugin
        .aggregate(&slots, &header(), &region, count, &applications)
        .unwrap();
    assert_eq!(run.output.applications, vec![Ok(()); 3]);
    assert_eq!(
        run.output.slots,
        vec![
            SlotChange::Put(Bytes::from_static(b"7")),
            SlotChange::Put(Bytes::from_static(b"1")),
        ]
    );
    let checked = plugin.check_states(&[b"12", b"\"x\""]).unwrap().output;
    assert_eq!(checked[0], Ok(()));
    assert!(
        matches!(&checked[1], Err(message) if message.contains("does not parse as u64")),
        "{checked:?}"
    );
    let error = plugin.merge(&[(b"1", b"2")]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the module does not export `ledge_merge`"
    );
    // Declared as anything else, it is refused at upload.
    let error = engine
        .compile(&example("order_counts"), PluginKind::Filter)
        .unwrap_err();
    assert!(
        error.to_string().contains("no `ledge_filter` export"),
        "{error}"
    );
}

// Goal: the enrich-orders example joins through the host: a known customer is appended, an
// unknown one leaves the order as it was (a left join).
#[test]
fn the_enrich_orders_example_joins_through_the_host() {
    let engine = WasmEngine::new(WasmLimits::default()).unwrap();
    let (module, _) = engine
        .compile(&example("enrich_orders"), PluginKind::Join)
        .unwrap();
    let plugin = Plugin::new(&engine, module, vec![]).unwrap();
    let (orders, order_count) = keyed(&[("42", r#"{"order_id":1}"#), ("9", r#"{"order_id":2}"#)]);
    let (customers, customer_count) = keyed(&[("42", r#"{"name":"Ada"}"#)]);
    let pairs = [
        JoinPair {
            left_index: 0,
            right_index: Some(0),
        },
        JoinPair {
            left_index: 1,
            right_index: None,
        },
    ];
    let run = plugin
        .join(
            (&header(), &orders, order_count),
            (&header(), &customers, customer_count),
            &pairs,
        )
        .unwrap();
    let values: Vec<Option<Bytes>> = run
        .output
        .iter()
        .map(|outcome| match outcome {
            Outcome::Records(records) if records.len() == 1 => records[0].value.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [
            Some(Bytes::from_static(
                br#"{"order_id":1,"customer":{"name":"Ada"}}"#
            )),
            Some(Bytes::from_static(br#"{"order_id":2}"#)),
        ]
    );
}
