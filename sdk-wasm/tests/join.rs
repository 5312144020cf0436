//! `#[join]`, stream-table (a left join: `Option<&Record>`): one outcome per pair, `None`
//! for a miss, errors per pair; driven natively with `TestPlugin`.

use ledge_wasm_sdk::testing::{JoinPair, Outcome, TestPlugin};
use ledge_wasm_sdk::{OutputRecord, Record, join};

/// Appends the right value to the left one; without a right record, the left one passes
/// unless `strict` (an inner join).
#[join]
fn append(
    left: &Record<'_>,
    right: Option<&Record<'_>>,
    strict: Option<bool>,
) -> Result<Option<OutputRecord>, String> {
    let left_value = left.value_str().ok_or("left value is not text")?;
    match right {
        Some(right) => {
            let right_value = right.value_str().ok_or("right value is not text")?;
            Ok(Some(
                OutputRecord::from(left).with_value(format!("{left_value}+{right_value}")),
            ))
        }
        None if strict == Some(true) => Ok(None),
        None => Ok(Some(OutputRecord::from(left))),
    }
}

fn value(value: &str) -> OutputRecord {
    OutputRecord::new().with_value(value)
}

#[test]
fn pairs_are_joined_in_order_and_misses_follow_the_function() {
    let mut plugin = TestPlugin::<append>::init(&[]).unwrap();
    let pairs = [(0, Some(1)), (1, None), (0, Some(0))].map(|(left_index, right_index)| JoinPair {
        left_index,
        right_index,
    });
    let outcomes = plugin
        .join(
            &[value("o1"), value("o2")],
            &[value("c1"), value("c2")],
            &pairs,
        )
        .unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Records(vec![value("o1+c2")]),
            Outcome::Records(vec![value("o2")]),
            Outcome::Records(vec![value("o1+c1")]),
        ]
    );
    let mut strict = TestPlugin::<append>::init(&[("strict", "true")]).unwrap();
    assert_eq!(strict.join_one(value("o"), None), Outcome::Drop);
    assert_eq!(
        strict.join_one(value("o"), Some(OutputRecord::new())),
        Outcome::Error("right value is not text".into())
    );
}
