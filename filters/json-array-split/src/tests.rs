//! Through the real ABI bytes with the SDK's `TestPlugin`.

use ledge_wasm_sdk::OutputRecord;
use ledge_wasm_sdk::testing::{Outcome, TestPlugin};

use super::*;

fn plugin() -> TestPlugin<json_array_split> {
    TestPlugin::init(&[]).unwrap()
}

// Each element becomes a record with the input's key and headers, as compact JSON that keeps
// key order, number spelling and string contents (spaces inside strings included).
#[test]
fn splits_an_array_into_records() {
    let input = OutputRecord::new()
        .with_key("batch-7")
        .with_header("source", "api")
        .with_value(
            "[\n  {\"b\": 1, \"a\": [1, 2]},\n  \"two words\",\n  1.50,\n  null, true,\n  \
             {\"quote\": \"say \\\"hi\\\" \"}\n]",
        );
    let element = |value: &str| {
        OutputRecord::new()
            .with_key("batch-7")
            .with_header("source", "api")
            .with_value(value)
    };
    assert_eq!(
        plugin().run_one(input),
        Outcome::Records(vec![
            element(r#"{"b":1,"a":[1,2]}"#),
            element(r#""two words""#),
            element("1.50"),
            element("null"),
            element("true"),
            element(r#"{"quote":"say \"hi\" "}"#),
        ])
    );
}

// An empty array removes the record; anything but an array fails it with a message.
#[test]
fn empty_arrays_drop_and_non_arrays_fail() {
    let value = |v: &str| OutputRecord::new().with_value(v);
    let error = |message: &str| Outcome::Error(message.to_owned());
    assert_eq!(
        plugin().run(&[
            value("[]"),
            value(r#"{"a": 1}"#),
            value(" \"text\" "),
            value("42"),
            value("[1,"),
            OutputRecord::new(),
        ]),
        [
            Outcome::Drop,
            error("value is a JSON object, expected an array"),
            error("value is a JSON string, expected an array"),
            error("value is a JSON number, expected an array"),
            error("value is not JSON: EOF while parsing a value at line 1 column 3"),
            error("value is null, expected a JSON array"),
        ]
    );
}

#[test]
fn compact_removes_only_whitespace_outside_strings() {
    assert_eq!(compact("{ \"a b\" : [ 1 ,\t2 ]\r\n}"), r#"{"a b":[1,2]}"#);
    assert_eq!(compact(r#""\\" "#), r#""\\""#);
    assert_eq!(compact(r#"" \" ""#), r#"" \" ""#);
}
