//! Through the real ABI bytes with the SDK's `TestPlugin`: `ledge_group`, then
//! `ledge_aggregate` into a table, as the node calls them.

use std::collections::BTreeMap;

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::order_counts;

fn order(value: &str) -> OutputRecord {
    OutputRecord::new().with_value(value)
}

fn table(plugin: &mut TestPlugin<order_counts>, orders: &[&str]) -> Vec<(String, String)> {
    let mut table = BTreeMap::new();
    let orders: Vec<OutputRecord> = orders.iter().map(|value| order(value)).collect();
    plugin.fold_into(&mut table, &orders).unwrap();
    table
        .into_iter()
        .map(|(key, value)| {
            (
                String::from_utf8(key).unwrap(),
                String::from_utf8(value).unwrap(),
            )
        })
        .collect()
}

// Each customer's orders are counted; numeric and string ids group as the same text.
#[test]
fn counts_orders_per_customer() {
    let mut plugin = TestPlugin::<order_counts>::init(&[]).unwrap();
    let counts = table(
        &mut plugin,
        &[
            r#"{"order_id": 1, "customer_id": 42, "amount": 10}"#,
            r#"{"order_id": 2, "customer_id": 7, "amount": 5}"#,
            r#"{"order_id": 3, "customer_id": "42", "amount": 1}"#,
            r#"{"order_id": 4, "customer_id": 42}"#,
        ],
    );
    assert_eq!(
        counts,
        [("42".into(), "3".into()), ("7".into(), "1".into())]
    );
    assert_eq!(TestPlugin::<order_counts>::state_schema(), "u64");
}

// Values that are not orders with a usable customer_id fail that record, saying why.
#[test]
fn records_without_a_customer_fail_with_the_reason() {
    let mut plugin = TestPlugin::<order_counts>::init(&[]).unwrap();
    let outcomes = plugin.group(&[
        order(r#"{"customer_id": 1.5}"#),
        order(r#"{"amount": 3}"#),
        order("not json"),
        OutputRecord::new(),
        order(r#"{"customer_id": 9}"#),
    ]);
    let Outcome::Error(fractional) = &outcomes[0] else {
        panic!("{outcomes:?}");
    };
    assert!(fractional.contains("`customer_id` is 1.5"), "{fractional}");
    assert_eq!(
        outcomes[1],
        Outcome::Error("the order has no `customer_id`".into())
    );
    assert!(
        matches!(&outcomes[2], Outcome::Error(m) if m.starts_with("value is not a JSON order"))
    );
    assert!(matches!(&outcomes[3], Outcome::Error(m) if m.starts_with("value is null")));
    assert_eq!(outcomes[4], Outcome::Key(b"9".to_vec()));
}
