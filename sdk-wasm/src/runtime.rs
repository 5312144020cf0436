//! The runtime behind the generated exports: instance state, batch processing and the panic
//! hook. Reached by the macros through [`crate::__private`]; not a public API.
//!
//! A module is one instance at a time on one thread (wasm32-unknown-unknown has no threads),
//! so the instance state lives in `thread_local!`s, which on that target are plain statics and
//! natively keep parallel tests apart. The input and output buffers are kept between calls and
//! only grow: once warm, a batch call allocates nothing but what the plug-in itself does.
//!
//! [`init_plugin`] and [`process_batch`] are the byte-level core, shared by the exports and by
//! [`crate::testing`], so a native test runs exactly the decode and encode code a module runs.

use std::any::Any;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::panic::PanicHookInfo;
use std::sync::Once;

use ledge_protocol::wasm_abi::{
    ABI_VERSION, InputBatchError, InputHeader, InputRecords, PluginKind,
};

use crate::encode::{Entries, write_init_result};
use crate::params::{InitError, Params};
use crate::record::Record;

/// A plug-in: what the attribute macros implement for a type named after the function.
pub trait Plugin: 'static {
    /// The plug-in's kind, which decides its export and the output tags it may use.
    const KIND: PluginKind;
    /// The deployment parameters the function takes, by name, for error messages.
    const PARAMETERS: &'static [&'static str];
    /// The parsed parameters, kept for the instance's life.
    type State: 'static;

    /// Binds and parses the parameters (the runtime refuses unknown ones afterwards).
    fn init(params: &mut Params<'_>) -> Result<Self::State, InitError>;

    /// Runs the function on one record and appends its output entry.
    fn process(
        state: &Self::State,
        record: &Record<'_>,
        partition_count: u32,
        entries: &mut Entries<'_>,
    );
}

/// `ledge_abi_version`.
pub fn abi_version() -> i32 {
    ABI_VERSION
}

/// `ledge_alloc`: the input buffer, grown to at least `len` bytes; `0` if memory ran out.
pub fn alloc(len: i32) -> i32 {
    install_panic_hook();
    let Ok(len) = usize::try_from(len) else {
        return 0;
    };
    INSTANCE.with_borrow_mut(|instance| {
        let input = &mut instance.input;
        if input.len() < len {
            if input.try_reserve(len - input.len()).is_err() {
                return 0;
            }
            input.resize(len, 0);
        }
        address(input.as_ptr()) as i32
    })
}

/// `ledge_init`: parses the parameter block the host wrote at `ptr` and keeps the bound
/// parameters; returns a result pointer to the init result.
pub fn init<P: Plugin>(ptr: i32, len: i32) -> i64 {
    install_panic_hook();
    INSTANCE.with_borrow_mut(|instance| {
        let Instance {
            input,
            output,
            state,
        } = instance;
        let block = input_slice(input, ptr, len);
        *state = init_plugin::<P>(block, output).map(|state| Box::new(state) as Box<dyn Any>);
        result_pointer(output)
    })
}

/// `ledge_<kind>`: processes the batch the host wrote at `ptr`; returns a result pointer to
/// the output. Traps (panics) if `ledge_init` has not succeeded, or if the batch header is
/// unusable; a malformed record gives `ERROR` entries instead.
pub fn run<P: Plugin>(ptr: i32, len: i32) -> i64 {
    install_panic_hook();
    INSTANCE.with_borrow_mut(|instance| {
        let Instance {
            input,
            output,
            state,
        } = instance;
        let state = state
            .as_ref()
            .and_then(|state| state.downcast_ref::<P::State>())
            .expect("a batch call needs a successful ledge_init first (docs/WASM-ABI.md)");
        let batch = input_slice(input, ptr, len);
        if let Err(error) = process_batch::<P>(state, batch, output) {
            panic!("{error}");
        }
        result_pointer(output)
    })
}

/// A stateful call (`ledge_aggregate`, `ledge_join`, ...): runs `call` on the bound
/// parameters and the input the host wrote at `ptr`, and returns a result pointer to what
/// it wrote. Traps (panics) if `ledge_init` has not succeeded, or with `call`'s error (an
/// input that breaks the layout).
pub(crate) fn with_call<P: Plugin>(
    ptr: i32,
    len: i32,
    call: impl FnOnce(&P::State, &[u8], &mut Vec<u8>) -> Result<(), String>,
) -> i64 {
    install_panic_hook();
    INSTANCE.with_borrow_mut(|instance| {
        let Instance {
            input,
            output,
            state,
        } = instance;
        let state = state
            .as_ref()
            .and_then(|state| state.downcast_ref::<P::State>())
            .expect("a call needs a successful ledge_init first (docs/WASM-ABI.md)");
        let bytes = input_slice(input, ptr, len);
        if let Err(error) = call(state, bytes, output) {
            panic!("{error}");
        }
        result_pointer(output)
    })
}

/// `ledge_panic_message`: a result pointer to the last panic's message, or `0` if none.
pub fn panic_message() -> i64 {
    PANIC_MESSAGE.with_borrow(|message| {
        if message.is_empty() {
            0
        } else {
            result_pointer(message.as_bytes())
        }
    })
}

/// Parses a parameter block and binds it for `P`, writing the init result to `out`; the state
/// if the parameters were accepted.
pub(crate) fn init_plugin<P: Plugin>(block: &[u8], out: &mut Vec<u8>) -> Option<P::State> {
    out.clear();
    let result = Params::parse(block).and_then(|mut params| {
        let state = P::init(&mut params)?;
        params.finish(P::PARAMETERS)?;
        Ok(state)
    });
    match result {
        Ok(state) => {
            write_init_result(out, Ok(()));
            Some(state)
        }
        Err(error) => {
            write_init_result(out, Err(error.message()));
            None
        }
    }
}

/// Runs `P` over every record of `input` and writes the output (one entry per record) to
/// `out`. A record that cannot be decoded turns every entry into an `ERROR` naming it: the
/// host validated the batch, so a bad record means the whole buffer is suspect. An unusable
/// batch header is an error (the caller traps), since it gives no record count to answer.
pub(crate) fn process_batch<P: Plugin>(
    state: &P::State,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), InputBatchError> {
    out.clear();
    let (header, records) = InputHeader::read(input)?;
    out.extend_from_slice(&header.record_count.to_le_bytes());
    let entries_start = out.len();
    let mut reader = InputRecords::new(header, records);
    let mut failure = None;
    {
        let mut entries = Entries::new(out, header.partition_count);
        for index in 0..header.record_count {
            match reader.next_record() {
                Ok(view) => {
                    let record = Record::new(view, header.partition);
                    P::process(state, &record, header.partition_count, &mut entries);
                }
                Err(error) => {
                    failure = Some(format!("malformed input batch: record {index}: {error}"));
                    break;
                }
            }
        }
    }
    if failure.is_none() && reader.remaining_bytes() != 0 {
        failure = Some(format!(
            "malformed input batch: {} bytes after the last of {} records",
            reader.remaining_bytes(),
            header.record_count
        ));
    }
    if let Some(message) = failure {
        out.truncate(entries_start);
        let mut entries = Entries::new(out, header.partition_count);
        for _ in 0..header.record_count {
            entries.error(&message);
        }
    }
    Ok(())
}

/// Longest panic message kept for `ledge_panic_message`; the rest is cut.
pub const PANIC_MESSAGE_BYTES_MAX: usize = 4096;

struct Instance {
    /// Where the host writes parameter blocks and batches (`ledge_alloc`).
    input: Vec<u8>,
    /// The last init result or batch output; valid until the next call.
    output: Vec<u8>,
    /// The plug-in's bound parameters, after a successful `ledge_init`.
    state: Option<Box<dyn Any>>,
}

thread_local! {
    static INSTANCE: RefCell<Instance> = const {
        RefCell::new(Instance {
            input: Vec::new(),
            output: Vec::new(),
            state: None,
        })
    };
    static PANIC_MESSAGE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records panic messages for `ledge_panic_message`, then runs the previous hook (natively,
/// the one that prints; on wasm32 there is nowhere to print to).
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // Reserve now so that recording a panic does not allocate.
        PANIC_MESSAGE.with_borrow_mut(|message| message.reserve(PANIC_MESSAGE_BYTES_MAX));
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            record_panic(info);
            previous(info);
        }));
    });
}

fn record_panic(info: &PanicHookInfo<'_>) {
    let _ = PANIC_MESSAGE.try_with(|message| {
        // A panic while the message is borrowed (it never is) keeps the earlier message.
        if let Ok(mut message) = message.try_borrow_mut() {
            message.clear();
            let _ = write!(Bounded(&mut message), "{info}");
        }
    });
}

/// A `fmt::Write` into a string that stops at [`PANIC_MESSAGE_BYTES_MAX`].
struct Bounded<'a>(&'a mut String);

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = PANIC_MESSAGE_BYTES_MAX.saturating_sub(self.0.len());
        if text.len() <= room {
            self.0.push_str(text);
            return Ok(());
        }
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&text[..end]);
        Err(fmt::Error)
    }
}

/// The `len` bytes at `ptr`, which must lie inside the buffer `ledge_alloc` returned.
fn input_slice(input: &[u8], ptr: i32, len: i32) -> &[u8] {
    // Both are unsigned 32-bit in the ABI; `as` reinterprets the bits.
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    ptr.checked_sub(input.as_ptr().addr())
        .and_then(|start| input.get(start..start.checked_add(len)?))
        .unwrap_or_else(|| {
            panic!("input at {ptr:#x}+{len} is not inside the buffer ledge_alloc returned")
        })
}

/// `(ptr << 32) | len` for `bytes` in linear memory.
pub(crate) fn result_pointer(bytes: &[u8]) -> i64 {
    let len = u32::try_from(bytes.len()).expect("wasm32 buffers are shorter than 4 GiB");
    ((u64::from(address(bytes.as_ptr())) << 32) | u64::from(len)) as i64
}

fn address(ptr: *const u8) -> u32 {
    // Natively these exports compile but mean nothing: the ABI needs 32-bit addresses.
    u32::try_from(ptr.addr()).expect("the plug-in ABI needs 32-bit addresses (wasm32)")
}

#[cfg(test)]
mod tests;
