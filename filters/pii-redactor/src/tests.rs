//! Through the real ABI bytes with the SDK's `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::pii_redactor;

fn redacted(value: impl Into<Vec<u8>>) -> Outcome {
    let mut plugin = TestPlugin::<pii_redactor>::init(&[]).unwrap();
    plugin.run_one(
        OutputRecord::new()
            .with_key("k")
            .with_header("h", "v")
            .with_value(value),
    )
}

fn value(value: impl Into<Vec<u8>>) -> Outcome {
    Outcome::Records(vec![
        OutputRecord::new()
            .with_key("k")
            .with_header("h", "v")
            .with_value(value),
    ])
}

// In JSON, string values are redacted and everything else (keys, numbers, layout, key order)
// stays byte for byte.
#[test]
fn redacts_json_string_values_only() {
    let input = r#"{"z_email": "Write to jane.doe+news@example.co.uk.", "card": "4111 1111 1111 1111",
  "jane@example.com": 4111111111111111, "nested": [{"note": "paid with 5500-0000-0000-0004"}]}"#;
    let expected = r#"{"z_email": "Write to [redacted email].", "card": "**** **** **** 1111",
  "jane@example.com": 4111111111111111, "nested": [{"note": "paid with ****-****-****-0004"}]}"#;
    assert_eq!(redacted(input), value(expected));
}

// Escapes inside JSON strings are decoded before scanning; a changed string is re-encoded,
// an unchanged one keeps its original spelling.
#[test]
fn json_escapes_survive() {
    // The second string is "1111111111111111" (16 ones), which fails the Luhn check.
    let input = r#"["caf\u00e9 \"bob@example.org\"\n", "\u0031111111111111111"]"#;
    let expected = r#"["café \"[redacted email]\"\n", "\u0031111111111111111"]"#;
    assert_eq!(redacted(input), value(expected));
}

// Values that are not JSON are redacted as raw text, even when they are not UTF-8.
#[test]
fn redacts_raw_text_and_bytes() {
    assert_eq!(
        redacted("contact: ops@ledge.dev, card 378282246310005 (amex)"),
        value("contact: [redacted email], card ***********0005 (amex)")
    );
    let mut binary = vec![0xff, 0x00];
    binary.extend_from_slice(b"x@y.io");
    let mut expected = vec![0xff, 0x00];
    expected.extend_from_slice(b"[redacted email]");
    assert_eq!(redacted(binary), value(expected));
}

// Look-alikes are left alone: numbers that fail Luhn or have the wrong length, addresses
// without a proper domain.
#[test]
fn leaves_look_alikes_alone() {
    for text in [
        "order 4111111111111112 failed",
        "id 411111111111",
        "phone +1 555-123-4567, date 2024-01-15",
        "user@localhost, @handle, name@, a@b.c, x@-y.com",
        "12345678901234567890123",
    ] {
        assert_eq!(redacted(text), value(text), "{text}");
    }
}

// A number next to a card in the same digit run does not hide it.
#[test]
fn finds_cards_inside_longer_digit_runs() {
    assert_eq!(
        redacted("qty 12 4111 1111 1111 1111"),
        value("qty 12 **** **** **** 1111")
    );
    assert_eq!(
        redacted("4111111111111111 and 6011111111111117"),
        value("************1111 and ************1117")
    );
}

// Tombstones stay tombstones.
#[test]
fn null_values_pass() {
    let mut plugin = TestPlugin::<pii_redactor>::init(&[]).unwrap();
    assert_eq!(
        plugin.run_one(OutputRecord::new().with_key("k")),
        Outcome::Records(vec![OutputRecord::new().with_key("k")])
    );
}
