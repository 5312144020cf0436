//! Through the real ABI bytes with the SDK's `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{JoinPair, Outcome, TestPlugin};

use super::enrich_orders;

fn record(key: &str, value: &str) -> OutputRecord {
    OutputRecord::new().with_key(key).with_value(value)
}

fn plugin() -> TestPlugin<enrich_orders> {
    TestPlugin::init(&[]).unwrap()
}

// A known customer's record is appended as `customer`; the order's own text is kept.
#[test]
fn orders_get_their_customer() {
    let order = record(
        "42",
        r#"{"order_id": 1, "customer_id": 42, "amount": 12.5}"#,
    );
    let customer = record("42", r#"{"name":"Ada","tier":"vip"}"#);
    assert_eq!(
        plugin().join_one(order.clone(), Some(customer)),
        Outcome::Records(vec![record(
            "42",
            r#"{"order_id": 1, "customer_id": 42, "amount": 12.5,"customer":{"name":"Ada","tier":"vip"}}"#
        )])
    );
    assert_eq!(
        plugin().join_one(record("1", " { } "), Some(record("1", "7"))),
        Outcome::Records(vec![record("1", r#" {"customer":7}"#)])
    );
}

// Left join: an order without a customer (none, or a deleted one) passes unchanged.
#[test]
fn orders_without_a_customer_are_kept_as_they_are() {
    let order = record("9", r#"{"order_id": 2, "customer_id": 9}"#);
    let mut plugin = plugin();
    let outcomes = plugin
        .join(
            std::slice::from_ref(&order),
            &[OutputRecord::new().with_key("9")],
            &[
                JoinPair {
                    left_index: 0,
                    right_index: None,
                },
                JoinPair {
                    left_index: 0,
                    right_index: Some(0),
                },
            ],
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Records(vec![order.clone()]),
            Outcome::Records(vec![order])
        ]
    );
}

// Values that cannot be enriched fail that record, saying why.
#[test]
fn bad_orders_and_customers_fail_with_the_reason() {
    let customer = Some(record("1", "{}"));
    let cases = [
        (
            record("1", "[1]"),
            customer.clone(),
            "the order is not a JSON object",
        ),
        (
            OutputRecord::new(),
            customer.clone(),
            "the order's value is null",
        ),
        (
            record("1", r#"{"customer": 1}"#),
            customer,
            "the order already has a `customer` field",
        ),
        (
            record("1", "{}"),
            Some(record("1", "nope")),
            "the customer's value is not JSON",
        ),
    ];
    for (order, customer, message) in cases {
        let outcome = plugin().join_one(order, customer);
        assert!(
            matches!(&outcome, Outcome::Error(text) if text.starts_with(message)),
            "{outcome:?}"
        );
    }
}
