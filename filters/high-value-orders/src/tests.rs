//! Through the real ABI bytes with the SDK's `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::high_value_orders;

fn order(value: &str) -> OutputRecord {
    OutputRecord::new().with_key("customer-1").with_value(value)
}

fn plugin(threshold: &str) -> TestPlugin<high_value_orders> {
    TestPlugin::init(&[("threshold", threshold)]).unwrap()
}

// Orders strictly above the threshold pass, the rest are dropped; integers and floats both
// count, and other fields are ignored.
#[test]
fn keeps_orders_above_the_threshold() {
    let outcomes = plugin("1000").run(&[
        order(r#"{"id": 1, "amount": 1250.5}"#),
        order(r#"{"id": 2, "amount": 1000}"#),
        order(r#"{"id": 3, "amount": 999.99, "note": "almost"}"#),
        order(r#"{"amount": 1e6}"#),
        order(r#"{"amount": -5}"#),
    ]);
    use Outcome::{Drop, Keep};
    assert_eq!(outcomes, [Keep, Drop, Drop, Keep, Drop]);
    assert_eq!(plugin("-10").run_one(order(r#"{"amount": -5}"#)), Keep);
}

// Every value that is not an order fails its own record, with a message saying why, and the
// rest of the batch is unaffected.
#[test]
fn values_that_are_not_orders_fail_their_record() {
    let error = |message: &str| Outcome::Error(message.to_owned());
    let outcomes = plugin("10").run(&[
        OutputRecord::new().with_key("k"),
        order("not json"),
        order("[1, 2]"),
        order(r#"{"total": 5}"#),
        order(r#"{"amount": "20"}"#),
        order(r#"{"amount": null}"#),
        order(r#"{"amount": 20}"#),
    ]);
    assert_eq!(
        outcomes,
        [
            error("value is null, expected a JSON object with a numeric `amount`"),
            error("value is not JSON: expected ident at line 1 column 2"),
            error("value is a JSON array, expected an object with a numeric `amount`"),
            error("the order has no `amount`"),
            error("`amount` is a JSON string, expected a number"),
            error("`amount` is a JSON null, expected a number"),
            Outcome::Keep,
        ]
    );
}

// The threshold is required and must be a number; deployment fails otherwise.
#[test]
fn threshold_is_a_required_number() {
    let init = |params: &[(&str, &str)]| TestPlugin::<high_value_orders>::init(params).err();
    assert_eq!(init(&[]), Some("missing parameter `threshold`".to_owned()));
    assert_eq!(
        init(&[("threshold", "a lot")]),
        Some("parameter `threshold`: invalid float literal".to_owned())
    );
    assert_eq!(
        init(&[("threshold", "5"), ("currency", "EUR")]),
        Some("unknown parameter `currency` (this module takes `threshold`)".to_owned())
    );
}
