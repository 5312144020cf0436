//! The attribute binds every kind of deployment parameter by name (by value, `&str`, `&T`,
//! optional), passes `partition_count` to a partitioner, and turns `Err` into an `ERROR` entry;
//! driven natively through the ABI bytes with `TestPlugin`.

use ledge_wasm_sdk::testing::{Outcome, TestPlugin};
use ledge_wasm_sdk::{OutputRecord, Record, partitioner};

#[partitioner]
fn by_prefix(
    record: &Record<'_>,
    partition_count: u32,
    prefix: &str,
    fixed: Option<u32>,
    label: Option<&str>,
    scale: &u64,
    r#type: String,
) -> Result<u32, String> {
    let key = record.key_str().ok_or("no key")?;
    if let Some(fixed) = fixed {
        return Ok(fixed);
    }
    if r#type == "label" {
        return Err(label.unwrap_or("no label").to_owned());
    }
    if key.starts_with(prefix) {
        Ok(0)
    } else {
        Ok((key.len() as u64 * scale % u64::from(partition_count)) as u32)
    }
}

fn key(key: &str) -> OutputRecord {
    OutputRecord::new().with_key(key)
}

#[test]
fn parameters_bind_by_name_and_kind() {
    let params = [("scale", "3"), ("prefix", "vip-"), ("type", "hash")];
    let mut plugin = TestPlugin::<by_prefix>::init(&params)
        .unwrap()
        .with_partition_count(5);
    assert_eq!(
        plugin.run(&[key("vip-1"), key("abcd"), OutputRecord::new()]),
        [
            Outcome::Partition(0),
            Outcome::Partition(2), // 4 * 3 % 5
            Outcome::Error("no key".into()),
        ]
    );

    let params = [
        ("scale", "1"),
        ("prefix", "x"),
        ("type", "label"),
        ("label", "hi"),
    ];
    let mut plugin = TestPlugin::<by_prefix>::init(&params).unwrap();
    assert_eq!(plugin.run_one(key("a")), Outcome::Error("hi".into()));

    // A partition out of range is an ERROR entry, not garbage output.
    let params = [
        ("scale", "1"),
        ("prefix", "x"),
        ("type", "t"),
        ("fixed", "9"),
    ];
    let mut plugin = TestPlugin::<by_prefix>::init(&params)
        .unwrap()
        .with_partition_count(3);
    assert_eq!(
        plugin.run_one(key("a")),
        Outcome::Error("partition 9 is out of range: the topic has 3 partitions".into())
    );
}

#[test]
fn init_errors_name_the_parameter() {
    let init = |params: &[(&str, &str)]| TestPlugin::<by_prefix>::init(params).err();
    assert_eq!(
        init(&[("prefix", "x"), ("type", "t")]),
        Some("missing parameter `scale`".into())
    );
    assert_eq!(
        init(&[("prefix", "x"), ("type", "t"), ("scale", "-1")]),
        Some("parameter `scale`: invalid digit found in string".into())
    );
    assert_eq!(
        init(&[
            ("prefix", "x"),
            ("type", "t"),
            ("scale", "1"),
            ("partition_count", "3")
        ]),
        Some(
            "unknown parameter `partition_count` (this module takes `prefix`, `fixed`, \
             `label`, `scale`, `type`)"
                .into()
        )
    );
}
