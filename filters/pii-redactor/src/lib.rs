//! Map: masks e-mail addresses and payment card numbers in each record's value.
//!
//! - An e-mail address (`local@domain.tld`) becomes `[redacted email]`.
//! - A card number, 13 to 19 digits that pass the Luhn check, optionally grouped by single
//!   spaces or dashes, keeps its last four digits and its separators; the other digits become
//!   `*` (`4111 1111 1111 1111` becomes `**** **** **** 1111`, as PCI DSS allows to show).
//!
//! A JSON value is walked: only string values are redacted (not object keys, not numbers),
//! and everything else, key order and whitespace included, is left byte for byte. Any other
//! value is redacted as raw bytes, so binary values are fine too. Keys, headers and timestamps
//! pass through; a null value stays null.
//!
//! Deploy with `--kind map`; it takes no parameters.

use ledge_wasm_sdk::{OutputRecord, Record, map};
use serde_json::value::RawValue;

mod redact;

pub use redact::{EMAIL_MASK, redact_json, redact_text};

/// The record with e-mail addresses and card numbers masked in its value.
#[map]
pub fn pii_redactor(record: &Record<'_>) -> Result<OutputRecord, String> {
    let output = OutputRecord::from(record);
    let Some(value) = record.value() else {
        return Ok(output);
    };
    // Validating as JSON without building a tree: a RawValue only checks the syntax.
    let redacted = match serde_json::from_slice::<&RawValue>(value) {
        Ok(json) => redact_json(json.get())?.map(String::into_bytes),
        Err(_) => redact_text(value),
    };
    Ok(match redacted {
        Some(redacted) => output.with_value(redacted),
        None => output,
    })
}

#[cfg(test)]
mod tests;
