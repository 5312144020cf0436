//! The runtime behind `#[aggregate]` and `#[join]` (docs/STREAMS.md "ABI additions"): the
//! exports `ledge_aggregate`, `ledge_merge`, `ledge_state_check`, `ledge_state_schema` and
//! `ledge_join`, over the layouts of `ledge_protocol::wasm_abi::stateful` (the host decodes
//! with the same code). `ledge_group` is a batch call like a stateless kind's
//! ([`crate::runtime::run`] with the group function as the plug-in's `process`).
//!
//! State is JSON (`serde_json`): the host stores the bytes and never reads them, but people
//! do (`ledge table get`, the changes topic). A slot's state is parsed on its first
//! application and written back once, after the last; an unchanged state (the same JSON) is
//! answered "unchanged" so the host writes nothing for it.
//!
//! Like [`crate::runtime`], the `*_call` functions are the byte-level core shared by the
//! exports and by [`crate::testing`].

use ledge_protocol::wasm_abi::stateful::{
    SlotChange, decode_aggregate_input, decode_join_input, decode_merge_input, decode_states,
    encode_aggregate_output, encode_merge_output, encode_state_check_output,
};
use ledge_protocol::wasm_abi::{InputHeader, InputRecords};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::encode::{Entries, cut_message};
use crate::record::Record;
use crate::runtime::{Plugin, with_call};

/// An aggregate: what `#[aggregate]` implements beside [`Plugin`] (whose `process` is the
/// `group_by` function, exported as `ledge_group` when there is one).
pub trait AggregatePlugin: Plugin {
    /// The state of one key (and window): JSON through `serde`, `Default` for a new key.
    type Acc: Serialize + DeserializeOwned + Default;
    /// `ledge_state_schema`: the state type's name, and `;schema=` the attribute's
    /// `schema = "..."` when given.
    const SCHEMA: &'static str;
    /// Whether the attribute names a `group_by` function (exported as `ledge_group`).
    const GROUPS: bool;

    /// Folds one record into `acc` (the attributed function); `Err` fails the record.
    fn fold(state: &Self::State, acc: &mut Self::Acc, record: &Record<'_>) -> Result<(), String>;

    /// Merges two states (`merge = fn`; session windows). Only called when the attribute
    /// names a merge function, which also exports `ledge_merge`.
    fn merge(a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// A join: what `#[join]` implements beside [`Plugin`].
pub trait JoinPlugin: Plugin {
    /// Answers one pair with one output entry (`RECORDS`, `DROP` or `ERROR`).
    fn join(
        state: &Self::State,
        left: &Record<'_>,
        right: Option<&Record<'_>>,
        entries: &mut Entries<'_>,
    );
}

/// `ledge_aggregate`.
pub fn aggregate<P: AggregatePlugin>(ptr: i32, len: i32) -> i64 {
    with_call::<P>(ptr, len, aggregate_call::<P>)
}

/// `ledge_merge`.
pub fn merge<P: AggregatePlugin>(ptr: i32, len: i32) -> i64 {
    with_call::<P>(ptr, len, |_, input, out| merge_call::<P>(input, out))
}

/// `ledge_state_check`.
pub fn state_check<P: AggregatePlugin>(ptr: i32, len: i32) -> i64 {
    with_call::<P>(ptr, len, |_, input, out| state_check_call::<P>(input, out))
}

/// `ledge_state_schema`: a result pointer to [`AggregatePlugin::SCHEMA`].
pub fn state_schema<P: AggregatePlugin>() -> i64 {
    crate::runtime::result_pointer(P::SCHEMA.as_bytes())
}

/// `ledge_join`.
pub fn join<P: JoinPlugin>(ptr: i32, len: i32) -> i64 {
    with_call::<P>(ptr, len, join_call::<P>)
}

/// The records of a batch, each checked whole; an `Err` names the bad one.
fn read_batch(batch: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let (header, region) = InputHeader::read(batch).map_err(|error| error.to_string())?;
    let mut reader = InputRecords::new(header, region);
    let count = usize::try_from(header.record_count).map_err(|error| error.to_string())?;
    let mut records = Vec::with_capacity(count);
    for index in 0..count {
        let view = reader
            .next_record()
            .map_err(|error| format!("malformed input batch: record {index}: {error}"))?;
        records.push(Record::new(view, header.partition));
    }
    if reader.remaining_bytes() != 0 {
        return Err(format!(
            "malformed input batch: {} bytes after the last of {count} records",
            reader.remaining_bytes()
        ));
    }
    Ok(records)
}

/// A slot's state while a call runs.
enum Held<S> {
    /// Not applied to yet.
    Untouched,
    /// Parsed (or started from `Default`) and maybe folded into.
    Ready(S),
    /// The stored bytes do not parse: every application to it fails with this.
    Unreadable(String),
}

/// Runs a `ledge_aggregate` input, writing its output to `out`. `Err` (the caller traps) only
/// for an input that breaks the layout.
pub(crate) fn aggregate_call<P: AggregatePlugin>(
    state: &P::State,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let input = decode_aggregate_input(input).map_err(|error| error.to_string())?;
    let records = read_batch(input.batch)?;
    let mut held: Vec<Held<P::Acc>> = input.slots.iter().map(|_| Held::Untouched).collect();
    let mut last_application: Vec<Option<usize>> = vec![None; input.slots.len()];
    let mut statuses: Vec<Result<(), String>> = Vec::with_capacity(input.applications.len());
    for (index, application) in input.applications.iter().enumerate() {
        // The decoder checked both indices against the counts.
        let slot_index = application.slot_index as usize;
        let (Some(slot), Some(holding), Some(record)) = (
            input.slots.get(slot_index),
            held.get_mut(slot_index),
            records.get(application.record_index as usize),
        ) else {
            return Err(format!("application {index} is out of range"));
        };
        if let Held::Untouched = holding {
            *holding = match slot.state {
                None => Held::Ready(P::Acc::default()),
                Some(bytes) => match serde_json::from_slice(bytes) {
                    Ok(acc) => Held::Ready(acc),
                    Err(error) => Held::Unreadable(format!(
                        "the stored state does not parse as {}: {error}",
                        P::SCHEMA
                    )),
                },
            };
        }
        let status = match holding {
            Held::Ready(acc) => P::fold(state, acc, record),
            Held::Unreadable(message) => Err(message.clone()),
            Held::Untouched => Err("unreachable: the slot was just read".to_owned()),
        };
        statuses.push(status);
        if let Some(last) = last_application.get_mut(slot_index) {
            *last = Some(index);
        }
    }
    let mut written: Vec<Option<Vec<u8>>> = Vec::with_capacity(input.slots.len());
    for (slot_index, (slot, holding)) in input.slots.iter().zip(&held).enumerate() {
        let Held::Ready(acc) = holding else {
            written.push(None);
            continue;
        };
        match serde_json::to_vec(acc) {
            Ok(bytes) if slot.state == Some(&bytes[..]) => written.push(None),
            Ok(bytes) => written.push(Some(bytes)),
            Err(error) => {
                written.push(None);
                let last = last_application.get(slot_index).copied().flatten();
                if let Some(status) = last.and_then(|index| statuses.get_mut(index)) {
                    *status = Err(format!("the state does not serialize as JSON: {error}"));
                }
            }
        }
    }
    let statuses: Vec<Result<(), &str>> = statuses
        .iter()
        .map(|status| {
            status
                .as_ref()
                .map(|_| ())
                .map_err(|message| cut_message(message))
        })
        .collect();
    let changes: Vec<SlotChange<'_>> = written
        .iter()
        .map(|bytes| match bytes {
            Some(bytes) => SlotChange::Put(bytes),
            None => SlotChange::Unchanged,
        })
        .collect();
    encode_aggregate_output(&statuses, &changes, out).map_err(|error| error.to_string())
}

fn parse_state<P: AggregatePlugin>(bytes: &[u8]) -> Result<P::Acc, String> {
    serde_json::from_slice(bytes)
        .map_err(|error| format!("the state does not parse as {}: {error}", P::SCHEMA))
}

/// Runs a `ledge_merge` input.
pub(crate) fn merge_call<P: AggregatePlugin>(
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let pairs = decode_merge_input(input).map_err(|error| error.to_string())?;
    let merged: Vec<Result<Vec<u8>, String>> = pairs
        .iter()
        .map(|(a, b)| {
            let merged = P::merge(parse_state::<P>(a)?, parse_state::<P>(b)?);
            serde_json::to_vec(&merged)
                .map_err(|error| format!("the state does not serialize as JSON: {error}"))
        })
        .collect();
    let results: Vec<Result<&[u8], &str>> = merged
        .iter()
        .map(|result| match result {
            Ok(bytes) => Ok(&bytes[..]),
            Err(message) => Err(cut_message(message)),
        })
        .collect();
    encode_merge_output(&results, out).map_err(|error| error.to_string())
}

/// Runs a `ledge_state_check` input: each state must parse as the state type.
pub(crate) fn state_check_call<P: AggregatePlugin>(
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let states = decode_states(input).map_err(|error| error.to_string())?;
    let checked: Vec<Result<(), String>> = states
        .iter()
        .map(|bytes| parse_state::<P>(bytes).map(drop))
        .collect();
    let results: Vec<Result<(), &str>> = checked
        .iter()
        .map(|status| {
            status
                .as_ref()
                .map(|_| ())
                .map_err(|message| cut_message(message))
        })
        .collect();
    encode_state_check_output(&results, out).map_err(|error| error.to_string())
}

/// Runs a `ledge_join` input: the batch output layout, one entry per pair.
pub(crate) fn join_call<P: JoinPlugin>(
    state: &P::State,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let input = decode_join_input(input).map_err(|error| error.to_string())?;
    let left = read_batch(input.left)?;
    let right = read_batch(input.right)?;
    out.clear();
    let count = u32::try_from(input.pairs.len()).map_err(|error| error.to_string())?;
    out.extend_from_slice(&count.to_le_bytes());
    let mut entries = Entries::new(out, 0);
    for (index, pair) in input.pairs.iter().enumerate() {
        let right_record = match pair.right_index {
            None => None,
            Some(right_index) => Some(
                right
                    .get(right_index as usize)
                    .ok_or_else(|| format!("pair {index} is out of range"))?,
            ),
        };
        let left_record = left
            .get(pair.left_index as usize)
            .ok_or_else(|| format!("pair {index} is out of range"))?;
        P::join(state, left_record, right_record, &mut entries);
    }
    Ok(())
}
