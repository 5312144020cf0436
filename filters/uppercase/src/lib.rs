//! Map: uppercases each record's value (Unicode-aware: `straße` becomes `STRASSE`).
//!
//! Keys, headers and timestamps pass through unchanged; a null value (a tombstone) stays
//! null. A value that is not UTF-8 fails its record.
//!
//! Deploy with `--kind map`; it takes no parameters.

use ledge_wasm_sdk::{OutputRecord, Record, map};

/// The record with its value uppercased.
#[map]
pub fn uppercase(record: &Record<'_>) -> Result<OutputRecord, String> {
    let output = OutputRecord::from(record);
    let Some(value) = record.value() else {
        return Ok(output);
    };
    let text =
        std::str::from_utf8(value).map_err(|error| format!("value is not UTF-8: {error}"))?;
    Ok(output.with_value(text.to_uppercase()))
}

#[cfg(test)]
mod tests;
