//! `#[aggregate]`: the fold over JSON state, `group_by` (`ledge_group`), `merge`
//! (`ledge_merge`), `schema` (`ledge_state_schema`), `ledge_state_check`, deployment
//! parameters, and errors; driven natively through the ABI bytes with `TestPlugin`, decoded
//! with the host's decoders.

use std::collections::BTreeMap;

use ledge_wasm_sdk::testing::{
    AggregateOutcome, Application, Outcome, Slot, StateChange, TestPlugin, Window,
};
use ledge_wasm_sdk::{OutputRecord, Record, aggregate};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Spend {
    orders: u64,
    total: f64,
}

/// Sums the value (a number) per group; the group is the value's first character, and a
/// value starting with `-` fails to group.
#[aggregate(group_by = first_char, merge = add, schema = "v2")]
fn spend(state: &mut Spend, record: &Record<'_>, scale: f64) -> Result<(), String> {
    let value = record.value_str().ok_or("no value")?;
    let amount: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    state.orders += 1;
    state.total += amount * scale;
    Ok(())
}

fn first_char(record: &Record<'_>) -> Option<String> {
    let value = record.value_str()?;
    value
        .chars()
        .next()
        .filter(|first| *first != '-')
        .map(String::from)
}

fn add(a: Spend, b: Spend) -> Spend {
    Spend {
        orders: a.orders + b.orders,
        total: a.total + b.total,
    }
}

fn value(value: &str) -> OutputRecord {
    OutputRecord::new().with_value(value)
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 state")
}

#[test]
fn group_by_gives_keys_and_drops() {
    let mut plugin = TestPlugin::<spend>::init(&[("scale", "1")]).unwrap();
    assert_eq!(
        plugin.group(&[value("12"), value("-3"), OutputRecord::new()]),
        [Outcome::Key(b"1".to_vec()), Outcome::Drop, Outcome::Drop]
    );
}

#[test]
fn folds_start_from_default_or_the_stored_json_and_report_changes() {
    let mut plugin = TestPlugin::<spend>::init(&[("scale", "2")]).unwrap();
    let stored = br#"{"orders":1,"total":5.0}"#;
    let slots = [
        Slot {
            key: b"a",
            window: None,
            state: None,
        },
        Slot {
            key: b"b",
            window: Some(Window {
                start: 0,
                end: 60_000,
            }),
            state: Some(stored),
        },
        Slot {
            key: b"c",
            window: None,
            state: Some(stored),
        },
    ];
    let applications =
        [(0, 0), (1, 1), (2, 0), (3, 1)].map(|(record_index, slot_index)| Application {
            record_index,
            slot_index,
        });
    let outcome = plugin
        .aggregate(
            &slots,
            &[value("1"), value("2"), value("x"), value("3")],
            &applications,
        )
        .unwrap();
    assert_eq!(
        outcome,
        AggregateOutcome {
            applications: vec![Ok(()), Ok(()), Err("\"x\" is not a number".into()), Ok(())],
            slots: vec![
                StateChange::Put(br#"{"orders":1,"total":2.0}"#.to_vec()),
                StateChange::Put(br#"{"orders":3,"total":15.0}"#.to_vec()),
                // Not applied to: unchanged.
                StateChange::Unchanged,
            ],
        }
    );
    // A stored state this module cannot read fails the records applied to it.
    let broken = [Slot {
        key: b"a",
        window: None,
        state: Some(b"\"text\""),
    }];
    let outcome = plugin
        .aggregate(&broken, &[value("1")], &applications[..1])
        .unwrap();
    assert!(
        matches!(&outcome.applications[0], Err(message) if message.contains("does not parse")),
        "{outcome:?}"
    );
    assert_eq!(outcome.slots, [StateChange::Unchanged]);
}

#[test]
fn fold_into_keeps_a_table_and_schema_merge_and_check_answer() {
    let mut plugin = TestPlugin::<spend>::init(&[("scale", "1")]).unwrap();
    let mut table = BTreeMap::new();
    plugin
        .fold_into(
            &mut table,
            &[value("10"), value("15"), value("-1"), value("20")],
        )
        .unwrap();
    plugin.fold_into(&mut table, &[value("11")]).unwrap();
    let shown: Vec<(&str, &str)> = table.iter().map(|(k, v)| (text(k), text(v))).collect();
    assert_eq!(
        shown,
        [
            ("1", r#"{"orders":3,"total":36.0}"#),
            ("2", r#"{"orders":1,"total":20.0}"#)
        ]
    );
    let error = plugin.fold_into(&mut table, &[value("1"), value("1y")]);
    assert_eq!(error, Err("record 1: \"1y\" is not a number".into()));

    assert_eq!(TestPlugin::<spend>::state_schema(), "Spend;schema=v2");
    let merged = plugin
        .merge(&[
            (
                br#"{"orders":1,"total":1.5}"#,
                br#"{"orders":2,"total":2.0}"#,
            ),
            (b"{}", b"1"),
        ])
        .unwrap();
    assert_eq!(merged[0], Ok(br#"{"orders":3,"total":3.5}"#.to_vec()));
    assert!(merged[1].is_err());
    let checked = plugin
        .check_states(&[br#"{"orders":1,"total":1.0}"#, b"7"])
        .unwrap();
    assert_eq!(checked[0], Ok(()));
    assert!(
        matches!(&checked[1], Err(message) if message.contains("Spend")),
        "{checked:?}"
    );
    assert_eq!(
        TestPlugin::<spend>::init(&[]).err().unwrap(),
        "missing parameter `scale`"
    );
}
