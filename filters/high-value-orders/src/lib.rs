//! Filter: keeps orders whose `amount` is above the `threshold` parameter.
//!
//! A value must be a JSON object with a numeric `amount` (`{"id": 7, "amount": 1250.5}`);
//! anything else (null, not JSON, another JSON type, no `amount`, a non-numeric `amount`)
//! fails that record with a message saying which, for the deployment's error policy.
//!
//! Deploy with `--kind filter --param threshold=1000`.

use ledge_wasm_sdk::{Record, filter};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// Only `amount`, borrowed as raw JSON text: the other fields are skipped without building
/// strings or maps, which is most of the cost of a filter (and allocation is dearer in WASM).
#[derive(Deserialize)]
struct Order<'a> {
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
}

/// `true` if the order's `amount` is strictly above `threshold`.
#[filter]
pub fn high_value_orders(record: &Record<'_>, threshold: f64) -> Result<bool, String> {
    let value = record
        .value()
        .ok_or("value is null, expected a JSON object with a numeric `amount`")?;
    // Fast path: an object with a numeric amount. Anything else takes the slow path below,
    // which exists to say precisely what is wrong.
    let is_object = value
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'{');
    if is_object
        && let Ok(Order {
            amount: Some(amount),
        }) = serde_json::from_slice::<Order<'_>>(value)
        && let Ok(amount) = serde_json::from_str::<f64>(amount.get())
    {
        return Ok(amount > threshold);
    }
    slow_path(value, threshold)
}

/// The whole value as a JSON tree: says precisely why a value is not an order, and answers
/// the rare orders the fast path declines (a repeated `amount`, say).
fn slow_path(value: &[u8], threshold: f64) -> Result<bool, String> {
    let order: Value =
        serde_json::from_slice(value).map_err(|error| format!("value is not JSON: {error}"))?;
    let Value::Object(fields) = &order else {
        return Err(format!(
            "value is a JSON {}, expected an object with a numeric `amount`",
            type_name(&order)
        ));
    };
    let amount = match fields.get("amount") {
        Some(Value::Number(amount)) => amount.as_f64(),
        Some(other) => {
            return Err(format!(
                "`amount` is a JSON {}, expected a number",
                type_name(other)
            ));
        }
        None => return Err("the order has no `amount`".to_owned()),
    };
    // Without serde_json's arbitrary_precision feature every number has an f64 form.
    let amount = amount.ok_or("`amount` is not representable as a float")?;
    Ok(amount > threshold)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
