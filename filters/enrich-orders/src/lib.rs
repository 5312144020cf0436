//! Join: each order enriched with its customer's record, a stream-table **left** join (the
//! host looks the order's key up in the customers table and passes the customer's latest
//! record, or none).
//!
//! The order's value must be a JSON object; the customer's value is any JSON value. The output
//! is the order with one more field, `"customer": <the customer's value>`, appended as is
//! (the order's own fields keep their text and order). An order whose customer is unknown
//! (no record, or a deleted one: a null value) is **kept un-enriched**, exactly as it came:
//! that is what a left join does, so no order is lost because its customer arrived late. An
//! order that already has a `customer` field, or a value that is not a JSON object, fails that
//! record, saying why.
//!
//! Deploy with `--kind join`, the orders topic on the left and the customers table on the
//! right.

use std::collections::HashMap;

use ledge_wasm_sdk::{OutputRecord, Record, join};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

/// The order, with `"customer": {...}` when its customer is known.
#[join]
pub fn enrich_orders(
    order: &Record<'_>,
    customer: Option<&Record<'_>>,
) -> Result<OutputRecord, String> {
    let value = order
        .value()
        .ok_or("the order's value is null, expected a JSON object")?;
    let fields: HashMap<&str, IgnoredAny> = serde_json::from_slice(value)
        .map_err(|error| format!("the order is not a JSON object: {error}"))?;
    let Some(customer) = customer.and_then(Record::value) else {
        return Ok(OutputRecord::from(order));
    };
    if fields.contains_key("customer") {
        return Err("the order already has a `customer` field".to_owned());
    }
    let customer: &RawValue = serde_json::from_slice(customer)
        .map_err(|error| format!("the customer's value is not JSON: {error}"))?;
    // The object's text up to its closing brace, then the new field: no key is reordered.
    let text = std::str::from_utf8(value).map_err(|error| error.to_string())?;
    let body = text
        .trim_end()
        .strip_suffix('}')
        .ok_or("the order is not a JSON object")?;
    let separator = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    let enriched = format!(
        "{}{separator}\"customer\":{}}}",
        body.trim_end(),
        customer.get()
    );
    Ok(OutputRecord::from(order).with_value(enriched))
}

#[cfg(test)]
mod tests;
