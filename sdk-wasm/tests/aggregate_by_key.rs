//! `#[aggregate]` without `group_by`: records group by their own key, a fold may return `()`,
//! and an unchanged state is answered "unchanged".

use std::collections::BTreeMap;

use ledge_wasm_sdk::testing::{Application, Slot, StateChange, TestPlugin};
use ledge_wasm_sdk::{OutputRecord, Record, aggregate};

/// Counts records with a non-empty value.
#[aggregate]
fn non_empty(count: &mut u64, record: &Record<'_>) {
    if record.value().is_some_and(|value| !value.is_empty()) {
        *count += 1;
    }
}

#[test]
fn groups_by_record_key() {
    let mut plugin = TestPlugin::<non_empty>::init(&[]).unwrap();
    let mut table = BTreeMap::new();
    let record = |key: &str, value: &str| OutputRecord::new().with_key(key).with_value(value);
    plugin
        .fold_into(
            &mut table,
            &[record("a", "x"), record("b", ""), record("a", "y")],
        )
        .unwrap();
    assert_eq!(table.get(&b"a"[..]), Some(&b"2".to_vec()));
    assert_eq!(table.get(&b"b"[..]), Some(&b"0".to_vec()));
    let error = plugin.fold_into(&mut table, &[OutputRecord::new().with_value("x")]);
    assert_eq!(error, Err("record 0 has no key to group by".into()));
    assert_eq!(TestPlugin::<non_empty>::state_schema(), "u64");
    // Folding an empty value into a stored 2 keeps it at 2: unchanged.
    let outcome = plugin
        .aggregate(
            &[Slot {
                key: b"a",
                window: None,
                state: Some(b"2"),
            }],
            &[record("a", "")],
            &[Application {
                record_index: 0,
                slot_index: 0,
            }],
        )
        .unwrap();
    assert_eq!(outcome.slots, [StateChange::Unchanged]);
}
