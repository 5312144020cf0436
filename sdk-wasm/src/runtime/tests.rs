use super::*;
use crate::output::OutputRecord;
use crate::testing::{BatchInfo, Outcome, TestPlugin, decode_output, encode_batch, encode_params};

/// A flat_map written by hand (what the macro generates): each record `copies` times.
struct Copies;

impl Plugin for Copies {
    const KIND: PluginKind = PluginKind::FlatMap;
    const PARAMETERS: &'static [&'static str] = &["copies"];
    type State = usize;

    fn init(params: &mut Params<'_>) -> Result<usize, InitError> {
        params.required("copies")
    }

    fn process(state: &usize, record: &Record<'_>, _: u32, entries: &mut Entries<'_>) {
        entries.flat_map(vec![OutputRecord::from(record); *state]);
    }
}

fn run_raw(batch: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    process_batch::<Copies>(&2, batch, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

// Init writes the init result and keeps the bound state; unknown parameters are refused after
// the plug-in bound its own.
#[test]
fn init_binds_and_reports() {
    let mut out = Vec::new();
    assert_eq!(
        init_plugin::<Copies>(&encode_params(&[("copies", "3")]), &mut out),
        Some(3)
    );
    assert_eq!(out, [0]);
    assert_eq!(
        init_plugin::<Copies>(&encode_params(&[("copies", "3"), ("x", "1")]), &mut out),
        None
    );
    assert_eq!(out[0], 1);
    assert_eq!(
        std::str::from_utf8(&out[5..]).unwrap(),
        "unknown parameter `x` (this module takes `copies`)"
    );
}

// One entry per record, in order, with the record's fields carried through.
#[test]
fn processes_every_record_in_order() {
    let records = [
        OutputRecord::new().with_key("a").with_value("1"),
        OutputRecord::new().with_key("b").with_header("h", "v"),
    ];
    let out = run_raw(&encode_batch(&BatchInfo::default(), &records)).unwrap();
    let outcomes = decode_output(PluginKind::FlatMap, &out, 2, 1).unwrap();
    assert_eq!(
        outcomes,
        [
            Outcome::Records(vec![records[0].clone(), records[0].clone()]),
            Outcome::Records(vec![records[1].clone(), records[1].clone()]),
        ]
    );
}

// A record that cannot be decoded turns every entry of the batch into an ERROR naming it, even
// entries already written for earlier records; bytes after the last record do the same.
#[test]
fn a_malformed_record_fails_every_entry() {
    let records = [
        OutputRecord::new().with_value("fine"),
        OutputRecord::new().with_value("cut"),
    ];
    let batch = encode_batch(&BatchInfo::default(), &records);
    let out = run_raw(&batch[..batch.len() - 1]).unwrap();
    let error =
        "malformed input batch: record 1: record length of 9 bytes overruns the 8 bytes left";
    assert_eq!(
        decode_output(PluginKind::FlatMap, &out, 2, 1).unwrap(),
        [Outcome::Error(error.into()), Outcome::Error(error.into())]
    );

    let mut trailing = batch.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    let out = run_raw(&trailing).unwrap();
    let error = "malformed input batch: 3 bytes after the last of 2 records";
    assert_eq!(
        decode_output(PluginKind::FlatMap, &out, 2, 1).unwrap(),
        [Outcome::Error(error.into()), Outcome::Error(error.into())]
    );
}

// Without a usable header there is no record count to answer, so the call fails (traps).
#[test]
fn an_unusable_header_fails_the_call() {
    assert_eq!(
        run_raw(&[0; 10]).unwrap_err(),
        "malformed input batch: 10 bytes, shorter than the 28-byte batch header"
    );
    let mut claims_many = encode_batch(&BatchInfo::default(), &[OutputRecord::new()]);
    claims_many[..4].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        run_raw(&claims_many).unwrap_err(),
        "malformed input batch: 1000 records cannot fit in 7 bytes"
    );
}

// Output buffers are reused: a second batch of the same shape does not reallocate.
#[test]
fn output_buffer_is_reused() {
    let batch = encode_batch(
        &BatchInfo::default(),
        &[OutputRecord::new().with_value("v")],
    );
    let mut out = Vec::new();
    process_batch::<Copies>(&2, &batch, &mut out).unwrap();
    let (pointer, capacity) = (out.as_ptr(), out.capacity());
    process_batch::<Copies>(&2, &batch, &mut out).unwrap();
    assert_eq!((out.as_ptr(), out.capacity()), (pointer, capacity));
}

// The hook keeps the panic message (location included) for `ledge_panic_message`.
#[test]
fn the_panic_hook_records_the_message() {
    install_panic_hook();
    let result = std::panic::catch_unwind(|| panic!("plug-in bug {}", 42));
    assert!(result.is_err());
    let message = PANIC_MESSAGE.with_borrow(Clone::clone);
    assert!(message.contains("plug-in bug 42"), "{message}");
    assert!(message.contains("runtime/tests.rs"), "{message}");
}

// Panic messages are cut at the limit, on a character boundary.
#[test]
fn panic_messages_are_bounded() {
    let mut message = String::new();
    let long = "ü".repeat(PANIC_MESSAGE_BYTES_MAX);
    assert!(write!(Bounded(&mut message), "x{long}").is_err());
    assert_eq!(message.len(), PANIC_MESSAGE_BYTES_MAX - 1);
}

// The test helper and the runtime agree: TestPlugin drives the same code.
#[test]
fn test_plugin_runs_the_runtime() {
    let mut plugin = TestPlugin::<Copies>::init(&[("copies", "0")]).unwrap();
    assert_eq!(plugin.run_one(OutputRecord::new()), Outcome::Drop);
    assert_eq!(
        TestPlugin::<Copies>::init(&[("copies", "many")])
            .err()
            .unwrap(),
        "parameter `copies`: invalid digit found in string"
    );
}
