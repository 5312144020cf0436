//! A `#[filter_map]` with no parameters: `None` drops, `Some` replaces, `Err` fails the
//! record; the record view's offset, partition and headers reach the function.

use ledge_wasm_sdk::testing::{Outcome, TestPlugin};
use ledge_wasm_sdk::{OutputRecord, Record, filter_map};

#[filter_map]
fn tag_with_offset(record: &Record<'_>) -> Result<Option<OutputRecord>, &'static str> {
    if record.header("skip").is_some() {
        return Ok(None);
    }
    if record.value().is_none() {
        return Err("tombstones are not allowed here");
    }
    let tag = format!("{}@{}", record.partition(), record.offset());
    Ok(Some(OutputRecord::from(record).with_header("at", tag)))
}

#[test]
fn drops_replaces_and_fails() {
    let mut plugin = TestPlugin::<tag_with_offset>::init(&[])
        .unwrap()
        .with_partition(2)
        .with_base_offset(40);
    let kept = OutputRecord::new()
        .with_key("k")
        .with_value("v")
        .with_header("h", "1");
    let outcomes = plugin.run(&[
        kept.clone(),
        OutputRecord::new().with_value("v").with_header("skip", ""),
        OutputRecord::new(),
    ]);
    assert_eq!(
        outcomes,
        [
            Outcome::Records(vec![kept.with_header("at", "2@40")]),
            Outcome::Drop,
            Outcome::Error("tombstones are not allowed here".into()),
        ]
    );
    assert_eq!(
        TestPlugin::<tag_with_offset>::init(&[("x", "1")]).err(),
        Some("unknown parameter `x` (this module takes no parameters)".into())
    );
}
