//! Aggregate: orders per customer, the tutorial's Faust table
//! (`order_counts[order.customer_id] += 1`) or Kafka Streams' `groupBy(customerId).count()`.
//!
//! A value must be a JSON order with a `customer_id` that is an integer or a string
//! (`{"order_id": 1, "customer_id": 42, "amount": 12.5}`); the group key is the `customer_id`
//! as text (`42`), and the state is the count, so the table holds `"42" -> 3`. A value that is
//! not such an order fails that record, with a message saying why, for the deployment's
//! error policy.
//!
//! Deploy with `--kind aggregate` (a plain table; a windowed table is a deployment setting).

use ledge_wasm_sdk::{Record, aggregate};
use serde::Deserialize;
use serde_json::Value;

/// Counts the orders of one customer.
#[aggregate(group_by = customer_id)]
pub fn order_counts(count: &mut u64, _order: &Record<'_>) {
    *count += 1;
}

/// Only `customer_id`; the other fields are skipped.
#[derive(Deserialize)]
struct Order {
    customer_id: Option<Value>,
}

/// The order's `customer_id` as text: an integer in decimal, a string as it is.
pub fn customer_id(order: &Record<'_>) -> Result<String, String> {
    let value = order
        .value()
        .ok_or("value is null, expected a JSON order with a `customer_id`")?;
    let order: Order = serde_json::from_slice(value)
        .map_err(|error| format!("value is not a JSON order: {error}"))?;
    match order.customer_id {
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
