//! Through the real ABI bytes with the SDK's `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::uppercase;

// The value is uppercased; key, headers and timestamp are carried over.
#[test]
fn uppercases_values_and_keeps_the_rest() {
    let mut plugin = TestPlugin::<uppercase>::init(&[]).unwrap();
    let input = OutputRecord::new()
        .with_key("k")
        .with_value("hello, straße 1")
        .with_header("trace", "abc")
        .with_timestamp(1_700_000_000_000);
    let expected = OutputRecord::new()
        .with_key("k")
        .with_value("HELLO, STRASSE 1")
        .with_header("trace", "abc");
    // `None` is the ABI's "keep the input's timestamp".
    assert_eq!(plugin.run_one(input), Outcome::Records(vec![expected]));
}

// Tombstones stay tombstones; empty stays empty; bytes that are not UTF-8 fail the record.
#[test]
fn null_empty_and_binary_values() {
    let mut plugin = TestPlugin::<uppercase>::init(&[]).unwrap();
    let outcomes = plugin.run(&[
        OutputRecord::new().with_key("gone"),
        OutputRecord::new().with_value(""),
        OutputRecord::new().with_value(vec![b'a', 0xff]),
    ]);
    assert_eq!(
        outcomes,
        [
            Outcome::Records(vec![OutputRecord::new().with_key("gone")]),
            Outcome::Records(vec![OutputRecord::new().with_value("")]),
            Outcome::Error(
                "value is not UTF-8: invalid utf-8 sequence of 1 bytes from index 1".to_owned()
            ),
        ]
    );
}
