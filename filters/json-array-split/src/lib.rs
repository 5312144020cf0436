//! Flat map: a record whose value is a JSON array becomes one record per element.
//!
//! Each output record keeps the input's key, headers and timestamp; its value is the element
//! as compact JSON (insignificant whitespace removed, everything else, key order and number
//! spelling included, byte for byte). An empty array drops the record. A value that is null,
//! not JSON, or JSON but not an array fails its record.
//!
//! Deploy with `--kind flat_map`; it takes no parameters.

use ledge_wasm_sdk::{OutputRecord, Record, flat_map};
use serde_json::value::RawValue;

/// One record per element of the value's JSON array.
#[flat_map]
pub fn json_array_split(record: &Record<'_>) -> Result<Vec<OutputRecord>, String> {
    let value = record
        .value()
        .ok_or("value is null, expected a JSON array")?;
    let json: &RawValue =
        serde_json::from_slice(value).map_err(|error| format!("value is not JSON: {error}"))?;
    let text = json.get();
    if !text.starts_with('[') {
        return Err(format!(
            "value is a JSON {}, expected an array",
            type_name(text)
        ));
    }
    let elements: Vec<&RawValue> = serde_json::from_str(text)
        .map_err(|error| format!("value is not a JSON array: {error}"))?;
    let template = OutputRecord::from(record).with_null_value();
    Ok(elements
        .iter()
        .map(|element| template.clone().with_value(compact(element.get())))
        .collect())
}

/// The JSON type of a valid JSON text, by its first character (a RawValue has no leading
/// whitespace).
fn type_name(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'{') => "object",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// `json` (valid JSON) without whitespace outside strings.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
