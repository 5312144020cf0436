//! Through the real ABI bytes with the SDK's `TestPlugin`.

use std::collections::BTreeMap;

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Application, Slot, StateChange, TestPlugin, Window};

use super::order_totals_per_minute;

fn order(value: &str) -> OutputRecord {
    OutputRecord::new().with_value(value)
}

// Amounts add up per customer, across calls (the state is the stored JSON number).
#[test]
fn sums_amounts_per_customer() {
    let mut plugin = TestPlugin::<order_totals_per_minute>::init(&[]).unwrap();
    let mut table = BTreeMap::new();
    plugin
        .fold_into(
            &mut table,
            &[
                order(r#"{"order_id": 1, "customer_id": 42, "amount": 12.5}"#),
                order(r#"{"order_id": 2, "customer_id": "7", "amount": 3}"#),
                order(r#"{"order_id": 3, "customer_id": 42, "amount": 25}"#),
            ],
        )
        .unwrap();
    plugin
        .fold_into(&mut table, &[order(r#"{"customer_id": 7, "amount": 0.5}"#)])
        .unwrap();
    assert_eq!(table.get(&b"42"[..]).map(Vec::as_slice), Some(&b"37.5"[..]));
    assert_eq!(table.get(&b"7"[..]).map(Vec::as_slice), Some(&b"3.5"[..]));
    // A bad amount fails its record, and the table is left as it was.
    let error = plugin.fold_into(&mut table, &[order(r#"{"customer_id": 7, "amount": "x"}"#)]);
    assert_eq!(
        error,
        Err(r#"record 0: `amount` is "x", expected a number"#.into())
    );
    assert_eq!(table.get(&b"7"[..]).map(Vec::as_slice), Some(&b"3.5"[..]));
}

// A window is the host's business: the same fold, per (key, window) slot.
#[test]
fn each_window_is_its_own_slot() {
    let mut plugin = TestPlugin::<order_totals_per_minute>::init(&[]).unwrap();
    let minute = |start: i64| {
        Some(Window {
            start,
            end: start + 60_000,
        })
    };
    let slots = [
        Slot {
            key: b"42",
            window: minute(0),
            state: Some(b"10"),
        },
        Slot {
            key: b"42",
            window: minute(60_000),
            state: None,
        },
    ];
    let applications = [(0, 0), (1, 1)].map(|(record_index, slot_index)| Application {
        record_index,
        slot_index,
    });
    let outcome = plugin
        .aggregate(
            &slots,
            &[
                order(r#"{"customer_id": 42, "amount": 1}"#),
                order(r#"{"customer_id": 42, "amount": 2}"#),
            ],
            &applications,
        )
        .unwrap();
    assert_eq!(outcome.applications, [Ok(()), Ok(())]);
    assert_eq!(
        outcome.slots,
        [
            StateChange::Put(b"11.0".to_vec()),
            StateChange::Put(b"2.0".to_vec())
        ]
    );
}

// Two sessions' totals merge into their sum.
#[test]
fn totals_merge_by_adding() {
    assert_eq!(super::merge_totals(12.5, 3.0), 15.5);
}
