//! The layouts of the stateful kinds' calls (docs/STREAMS.md "ABI additions", docs/WASM-ABI.md
//! "Stateful kinds"): `aggregate`'s `ledge_aggregate`, `ledge_merge`, `ledge_state_check` and
//! `ledge_state_schema`, and `join`'s `ledge_join`. (`ledge_group` and `ledge_join` answer
//! with the output layout of a batch call, read by [`decode_output`](super::decode_output).)
//!
//! The host writes inputs with the `encode_*_input` functions and reads outputs with the
//! `decode_*_output` ones; the guest SDK does the opposite with the same code. Every count and
//! length is checked against the bytes there before anything is allocated for it, so neither
//! side sizes anything by a number the other made up. Lengths are `u32` little-endian.

use super::{InputHeader, OutputError, OutputReader, TAG_ERROR, garbage};

/// `window_start` and `window_end` of a slot that is not windowed.
pub const WINDOW_NONE: i64 = -1;
/// Status of an application, a state check or a merge that succeeded.
pub const STATUS_OK: u8 = 0;
/// Status of an application, a state check or a merge that failed: followed by
/// `u32 message_len, message` (the batch output's `ERROR` tag).
pub const STATUS_ERROR: u8 = TAG_ERROR;
/// Slot result: the state did not change.
pub const SLOT_UNCHANGED: u8 = 0;
/// Slot result: followed by `u32 state_len, state`, the new state.
pub const SLOT_PUT: u8 = 1;
/// Slot result: the state is deleted.
pub const SLOT_DELETE: u8 = 2;
/// A join pair's `right_index` when the left record has no right record (a left join's miss).
pub const NO_RIGHT: u32 = u32::MAX;
/// Longest `ledge_state_schema` answer the host reads.
pub const STATE_SCHEMA_BYTES_MAX: usize = 1024;

/// Fewest bytes a slot takes in an aggregate input: key length, two window bounds, `present`.
const SLOT_BYTES_MIN: usize = 4 + 8 + 8 + 1;
/// Bytes of an application (`record_index`, `slot_index`) and of a join pair.
const PAIR_BYTES: usize = 4 + 4;

/// An event-time window `[start, end)`, milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after it.
    pub end: i64,
}

/// One piece of state an aggregate call may fold records into: a group key, its window (if
/// windowed) and its stored state (`None`: absent, the fold starts from `Default`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    /// The group key.
    pub key: &'a [u8],
    /// The window; `None` is written as `[-1, -1]`.
    pub window: Option<Window>,
    /// The stored state's bytes, or `None` if there is none yet.
    pub state: Option<&'a [u8]>,
}

/// "Fold record `record_index` of the batch into slot `slot_index`"; applied in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Application {
    /// Index of the record in the call's batch.
    pub record_index: u32,
    /// Index of the slot.
    pub slot_index: u32,
}

/// A decoded `ledge_aggregate` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateInput<'a> {
    /// The slots.
    pub slots: Vec<Slot<'a>>,
    /// The input batch (header and records), as a batch call's input.
    pub batch: &'a [u8],
    /// The folds to apply, in order.
    pub applications: Vec<Application>,
}

/// What an aggregate call did to one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotChange<'a> {
    /// The state did not change.
    Unchanged,
    /// The new state.
    Put(&'a [u8]),
    /// The state is deleted.
    Delete,
}

/// A decoded `ledge_aggregate` output: one result per application (`Err` carries the module's
/// message), then one change per slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateOutput<'a> {
    /// Per application, in input order.
    pub applications: Vec<Result<(), &'a str>>,
    /// Per slot, in input order.
    pub slots: Vec<SlotChange<'a>>,
}

/// A `ledge_join` pair: left record `left_index` with right record `right_index` (`None`: no
/// right record, [`NO_RIGHT`] on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinPair {
    /// Index in the left batch.
    pub left_index: u32,
    /// Index in the right batch, if any.
    pub right_index: Option<u32>,
}

/// A decoded `ledge_join` input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinInput<'a> {
    /// The left batch (header and records).
    pub left: &'a [u8],
    /// The right batch (header and records; zero records when every pair has no right).
    pub right: &'a [u8],
    /// The pairs, each answered by one output entry.
    pub pairs: Vec<JoinPair>,
}

/// An input that breaks the layouts here, or one too large to write (a length past
/// `u32::MAX`). The guest traps on one; the host never writes one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed stateful call input: {0}")]
pub struct InputError(pub String);

impl From<OutputError> for InputError {
    fn from(error: OutputError) -> Self {
        Self(error.0)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize, what: &str) -> Result<(), InputError> {
    let len =
        u32::try_from(len).map_err(|_| InputError(format!("{what} of {len} exceeds u32::MAX")))?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> Result<(), InputError> {
    put_len(out, bytes.len(), what)?;
    out.extend_from_slice(bytes);
    Ok(())
}

/// The record count of a batch, checked as a batch call's input is.
fn batch_records(batch: &[u8], what: &str) -> Result<u32, InputError> {
    InputHeader::read(batch)
        .map(|(header, _)| header.record_count)
        .map_err(|error| InputError(format!("{what}: {error}")))
}

fn reader(bytes: &[u8]) -> OutputReader<'_> {
    OutputReader { bytes, position: 0 }
}

fn finish(reader: &OutputReader<'_>, what: &str) -> Result<(), OutputError> {
    match reader.remaining() {
        0 => Ok(()),
        left => Err(garbage(format!("{left} bytes after the {what}"))),
    }
}

impl<'a> OutputReader<'a> {
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], OutputError> {
        let len = self.len(what)?;
        self.take(len, what)
    }

    /// A count of items at least `item_bytes` each, refused if the bytes left cannot hold it.
    fn count(&mut self, what: &str, item_bytes: usize) -> Result<usize, OutputError> {
        let count = self.len(what)?;
        if count > self.remaining() / item_bytes.max(1) {
            return Err(garbage(format!(
                "{what} {count} cannot fit in {} bytes",
                self.remaining()
            )));
        }
        Ok(count)
    }

    /// `u8 0` or `u8 2, u32 len, message`.
    fn status(&mut self, what: &str) -> Result<Result<(), &'a str>, OutputError> {
        match self.u8(what)? {
            STATUS_OK => Ok(Ok(())),
            STATUS_ERROR => Ok(Err(self.text("error message")?)),
            other => Err(garbage(format!("{what} {other}"))),
        }
    }
}

/// Writes a `ledge_aggregate` input: the slots, the batch, the applications.
pub fn encode_aggregate_input(
    slots: &[Slot<'_>],
    batch: &[u8],
    applications: &[Application],
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    out.clear();
    put_len(out, slots.len(), "slot count")?;
    for slot in slots {
        put_bytes(out, slot.key, "slot key")?;
        let window = slot.window.unwrap_or(Window {
            start: WINDOW_NONE,
            end: WINDOW_NONE,
        });
        out.extend_from_slice(&window.start.to_le_bytes());
        out.extend_from_slice(&window.end.to_le_bytes());
        match slot.state {
            None => out.push(0),
            Some(state) => {
                out.push(1);
                put_bytes(out, state, "slot state")?;
            }
        }
    }
    put_bytes(out, batch, "batch")?;
    put_len(out, applications.len(), "application count")?;
    for application in applications {
        out.extend_from_slice(&application.record_index.to_le_bytes());
        out.extend_from_slice(&application.slot_index.to_le_bytes());
    }
    Ok(())
}

/// Reads a `ledge_aggregate` input, checking every index: a record index below the batch's
/// record count, a slot index below the slot count, `present` 0 or 1, no bytes left over.
pub fn decode_aggregate_input(input: &[u8]) -> Result<AggregateInput<'_>, InputError> {
    let mut reader = reader(input);
    let slot_count = reader.count("slot count", SLOT_BYTES_MIN)?;
    let mut slots = Vec::with_capacity(slot_count);
    for index in 0..slot_count {
        let in_slot = |error: OutputError| InputError(format!("slot {index}: {}", error.0));
        let key = reader.bytes("slot key").map_err(in_slot)?;
        let start = reader.i64("window start").map_err(in_slot)?;
        let end = reader.i64("window end").map_err(in_slot)?;
        let window = (start != WINDOW_NONE || end != WINDOW_NONE).then_some(Window { start, end });
        let state = match reader.u8("present").map_err(in_slot)? {
            0 => None,
            1 => Some(reader.bytes("slot state").map_err(in_slot)?),
            other => return Err(InputError(format!("slot {index}: present is {other}"))),
        };
        slots.push(Slot { key, window, state });
    }
    let batch = reader.bytes("batch")?;
    let record_count = batch_records(batch, "batch")?;
    let application_count = reader.count("application count", PAIR_BYTES)?;
    let mut applications = Vec::with_capacity(application_count);
    for index in 0..application_count {
        let record_index = reader.u32("record index")?;
        let slot_index = reader.u32("slot index")?;
        if record_index >= record_count
            || usize::try_from(slot_index).is_ok_and(|slot| slot >= slot_count)
        {
            return Err(InputError(format!(
                "application {index} folds record {record_index} (of {record_count}) into slot \
                 {slot_index} (of {slot_count})"
            )));
        }
        applications.push(Application {
            record_index,
            slot_index,
        });
    }
    finish(&reader, "applications")?;
    Ok(AggregateInput {
        slots,
        batch,
        applications,
    })
}

fn put_status(out: &mut Vec<u8>, status: Result<(), &str>) -> Result<(), InputError> {
    match status {
        Ok(()) => out.push(STATUS_OK),
        Err(message) => {
            out.push(STATUS_ERROR);
            put_bytes(out, message.as_bytes(), "error message")?;
        }
    }
    Ok(())
}

/// Writes a `ledge_aggregate` output: one status per application, one change per slot.
pub fn encode_aggregate_output(
    applications: &[Result<(), &str>],
    slots: &[SlotChange<'_>],
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    out.clear();
    for status in applications {
        put_status(out, *status)?;
    }
    for slot in slots {
        match slot {
            SlotChange::Unchanged => out.push(SLOT_UNCHANGED),
            SlotChange::Put(state) => {
                out.push(SLOT_PUT);
                put_bytes(out, state, "state")?;
            }
            SlotChange::Delete => out.push(SLOT_DELETE),
        }
    }
    Ok(())
}

/// Reads a `ledge_aggregate` output with the host's checks: exactly `application_count`
/// statuses and `slot_count` slot changes, lengths within the bytes, UTF-8 messages, no
/// bytes left over.
pub fn decode_aggregate_output(
    output: &[u8],
    application_count: usize,
    slot_count: usize,
) -> Result<AggregateOutput<'_>, OutputError> {
    let mut reader = reader(output);
    let mut applications = Vec::with_capacity(application_count.min(reader.remaining()));
    for index in 0..application_count {
        let status = reader
            .status("application status")
            .map_err(|error| garbage(format!("application {index}: {}", error.0)))?;
        applications.push(status);
    }
    let mut slots = Vec::with_capacity(slot_count.min(reader.remaining()));
    for index in 0..slot_count {
        let in_slot = |error: OutputError| garbage(format!("slot {index}: {}", error.0));
        let change = match reader.u8("slot result").map_err(in_slot)? {
            SLOT_UNCHANGED => SlotChange::Unchanged,
            SLOT_PUT => SlotChange::Put(reader.bytes("state").map_err(in_slot)?),
            SLOT_DELETE => SlotChange::Delete,
            other => return Err(garbage(format!("slot {index}: slot result {other}"))),
        };
        slots.push(change);
    }
    finish(&reader, "last slot")?;
    Ok(AggregateOutput {
        applications,
        slots,
    })
}

/// Writes a `ledge_state_check` input: `u32 n`, then each state as `u32 len, bytes`.
pub fn encode_states(states: &[&[u8]], out: &mut Vec<u8>) -> Result<(), InputError> {
    out.clear();
    put_len(out, states.len(), "state count")?;
    for state in states {
        put_bytes(out, state, "state")?;
    }
    Ok(())
}

/// Reads a `ledge_state_check` input.
pub fn decode_states(input: &[u8]) -> Result<Vec<&[u8]>, InputError> {
    let mut reader = reader(input);
    let count = reader.count("state count", 4)?;
    let mut states = Vec::with_capacity(count);
    for _ in 0..count {
        states.push(reader.bytes("state")?);
    }
    finish(&reader, "last state")?;
    Ok(states)
}

/// Writes a `ledge_state_check` output: one status per state (`Err`: why this module cannot
/// read it).
pub fn encode_state_check_output(
    results: &[Result<(), &str>],
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    out.clear();
    for status in results {
        put_status(out, *status)?;
    }
    Ok(())
}

/// Reads a `ledge_state_check` output: exactly `state_count` statuses, nothing after.
pub fn decode_state_check_output(
    output: &[u8],
    state_count: usize,
) -> Result<Vec<Result<(), &str>>, OutputError> {
    let mut reader = reader(output);
    let mut results = Vec::with_capacity(state_count.min(reader.remaining()));
    for index in 0..state_count {
        let status = reader
            .status("state status")
            .map_err(|error| garbage(format!("state {index}: {}", error.0)))?;
        results.push(status);
    }
    finish(&reader, "last status")?;
    Ok(results)
}

/// Writes a `ledge_merge` input: `u32 n`, then per pair both states as `u32 len, bytes`.
pub fn encode_merge_input(pairs: &[StatePair<'_>], out: &mut Vec<u8>) -> Result<(), InputError> {
    out.clear();
    put_len(out, pairs.len(), "pair count")?;
    for (a, b) in pairs {
        put_bytes(out, a, "state")?;
        put_bytes(out, b, "state")?;
    }
    Ok(())
}

/// Two states to merge, in a `ledge_merge` input.
pub type StatePair<'a> = (&'a [u8], &'a [u8]);

/// Reads a `ledge_merge` input.
pub fn decode_merge_input(input: &[u8]) -> Result<Vec<StatePair<'_>>, InputError> {
    let mut reader = reader(input);
    let count = reader.count("pair count", 8)?;
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let a = reader.bytes("state")?;
        let b = reader.bytes("state")?;
        pairs.push((a, b));
    }
    finish(&reader, "last pair")?;
    Ok(pairs)
}

/// Writes a `ledge_merge` output: per pair `u8 0, u32 len, state` or `u8 2, u32 len, message`.
pub fn encode_merge_output(
    results: &[Result<&[u8], &str>],
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    out.clear();
    for result in results {
        match result {
            Ok(state) => {
                out.push(STATUS_OK);
                put_bytes(out, state, "state")?;
            }
            Err(message) => put_status(out, Err(message))?,
        }
    }
    Ok(())
}

/// Reads a `ledge_merge` output: exactly `pair_count` results, nothing after.
pub fn decode_merge_output(
    output: &[u8],
    pair_count: usize,
) -> Result<Vec<Result<&[u8], &str>>, OutputError> {
    let mut reader = reader(output);
    let mut results = Vec::with_capacity(pair_count.min(reader.remaining()));
    for index in 0..pair_count {
        let in_pair = |error: OutputError| garbage(format!("pair {index}: {}", error.0));
        let result = match reader.u8("merge status").map_err(in_pair)? {
            STATUS_OK => Ok(reader.bytes("state").map_err(in_pair)?),
            STATUS_ERROR => Err(reader.text("error message").map_err(in_pair)?),
            other => return Err(garbage(format!("pair {index}: merge status {other}"))),
        };
        results.push(result);
    }
    finish(&reader, "last result")?;
    Ok(results)
}

/// Writes a `ledge_join` input: both batches, then the pairs.
pub fn encode_join_input(
    left: &[u8],
    right: &[u8],
    pairs: &[JoinPair],
    out: &mut Vec<u8>,
) -> Result<(), InputError> {
    out.clear();
    put_bytes(out, left, "left batch")?;
    put_bytes(out, right, "right batch")?;
    put_len(out, pairs.len(), "pair count")?;
    for pair in pairs {
        out.extend_from_slice(&pair.left_index.to_le_bytes());
        out.extend_from_slice(&pair.right_index.unwrap_or(NO_RIGHT).to_le_bytes());
    }
    Ok(())
}

/// Reads a `ledge_join` input, checking both batch headers and that every index is below its
/// batch's record count (or [`NO_RIGHT`]).
pub fn decode_join_input(input: &[u8]) -> Result<JoinInput<'_>, InputError> {
    let mut reader = reader(input);
    let left = reader.bytes("left batch")?;
    let right = reader.bytes("right batch")?;
    let left_count = batch_records(left, "left batch")?;
    let right_count = batch_records(right, "right batch")?;
    let count = reader.count("pair count", PAIR_BYTES)?;
    let mut pairs = Vec::with_capacity(count);
    for index in 0..count {
        let left_index = reader.u32("left index")?;
        let right_index = match reader.u32("right index")? {
            NO_RIGHT => None,
            right_index => Some(right_index),
        };
        if left_index >= left_count || right_index.is_some_and(|right| right >= right_count) {
            return Err(InputError(format!(
                "pair {index} names left record {left_index} (of {left_count}) and right record \
                 {right_index:?} (of {right_count})"
            )));
        }
        pairs.push(JoinPair {
            left_index,
            right_index,
        });
    }
    finish(&reader, "last pair")?;
    Ok(JoinInput { left, right, pairs })
}

/// Reads `ledge_state_schema`'s answer: non-empty UTF-8 of at most
/// [`STATE_SCHEMA_BYTES_MAX`] bytes.
pub fn decode_state_schema(bytes: &[u8]) -> Result<&str, OutputError> {
    if bytes.is_empty() || bytes.len() > STATE_SCHEMA_BYTES_MAX {
        return Err(garbage(format!(
            "ledge_state_schema returned {} bytes; 1 to {STATE_SCHEMA_BYTES_MAX} are allowed",
            bytes.len()
        )));
    }
    std::str::from_utf8(bytes).map_err(|_| garbage("ledge_state_schema is not UTF-8".to_string()))
}

#[cfg(test)]
mod tests;
