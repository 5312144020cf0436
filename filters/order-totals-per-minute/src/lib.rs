//! Aggregate: the sum of order amounts per customer. Deployed with a one-minute tumbling
//! window (a deployment setting, not code: `--window tumbling --window-size 1m`), it is the
//! tutorial's "spend per customer per minute"; without one, a running total. Two totals
//! merge by adding them, so session windows (`--window session --window-gap 5m`) work too.
//!
//! A value must be a JSON order with a `customer_id` (an integer or a string: the group key,
//! as text) and a numeric `amount` (`{"order_id": 1, "customer_id": 42, "amount": 12.5}`).
//! The state is the sum as a JSON number (an `f64`: `37.5`; sums of decimal fractions carry
//! binary rounding, as any `double` does). Anything else fails that record, saying why.

use ledge_wasm_sdk::{Record, aggregate};
use serde::Deserialize;
use serde_json::Value;

/// Adds the order's amount to its customer's total.
#[aggregate(group_by = customer_id, merge = merge_totals)]
pub fn order_totals_per_minute(total: &mut f64, order: &Record<'_>) -> Result<(), String> {
    let order = parse(order)?;
    match order.amount {
        Some(Value::Number(amount)) => {
            *total += amount.as_f64().ok_or("`amount` is not a finite number")?;
            Ok(())
        }
        Some(other) => Err(format!("`amount` is {other}, expected a number")),
        None => Err("the order has no `amount`".to_owned()),
    }
}

/// Two sessions' totals a record bridges: their sum.
pub fn merge_totals(a: f64, b: f64) -> f64 {
    a + b
}

/// The fields read; the others are skipped.
#[derive(Deserialize)]
struct Order {
    customer_id: Option<Value>,
    amount: Option<Value>,
}

fn parse(order: &Record<'_>) -> Result<Order, String> {
    let value = order
        .value()
        .ok_or("value is null, expected a JSON order with `customer_id` and `amount`")?;
    serde_json::from_slice(value).map_err(|error| format!("value is not a JSON order: {error}"))
}

/// The order's `customer_id` as text: an integer in decimal, a string as it is.
pub fn customer_id(order: &Record<'_>) -> Result<String, String> {
    match parse(order)?.customer_id {
        Some(Value::String(id)) => Ok(id),
        Some(Value::Number(id)) if id.is_i64() || id.is_u64() => Ok(id.to_string()),
        Some(other) => Err(format!(
            "`customer_id` is {other}, expected an integer or a string"
        )),
        None => Err("the order has no `customer_id`".to_owned()),
    }
}

#[cfg(test)]
mod tests;
