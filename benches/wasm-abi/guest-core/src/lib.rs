//! The filter as a core module with the hand-written ptr/len batch ABI of docs/WASM-ABI.md.
//! This is roughly what `ledge-wasm-sdk` would expand to for a filter.

use logic::Check;
use std::cell::UnsafeCell;

struct State {
    input: Vec<u8>,
    output: Vec<u8>,
    check: Check,
}

struct Global(UnsafeCell<State>);
// SAFETY: wasm32-unknown-unknown without threads: one caller at a time.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    input: Vec::new(),
    output: Vec::new(),
    check: Check::Even,
}));

fn state() -> &'static mut State {
    // SAFETY: single-threaded guest, and no export holds the reference across calls.
    unsafe { &mut *STATE.0.get() }
}

fn result_ptr(b: &[u8]) -> i64 {
    (((b.as_ptr() as usize as u64) << 32) | b.len() as u64) as i64
}

#[unsafe(no_mangle)]
pub extern "C" fn ledge_abi_version() -> i32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn ledge_alloc(len: i32) -> i32 {
    let s = state();
    let len = len as u32 as usize;
    s.input.clear();
    s.input.reserve(len);
    s.input.as_mut_ptr() as usize as i32
}

fn input<'a>(ptr: i32, len: i32) -> &'a [u8] {
    let s = state();
    assert!(ptr as usize == s.input.as_ptr() as usize && len as u32 as usize <= s.input.capacity());
    // SAFETY: inside the buffer handed out by ledge_alloc; the host wrote these bytes (u8 has
    // no invalid values).
    unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len as u32 as usize) }
}

#[unsafe(no_mangle)]
pub extern "C" fn ledge_init(ptr: i32, len: i32) -> i64 {
    let s = state();
    let res = logic::check_from_param_block(input(ptr, len));
    s.output.clear();
    match res {
        Ok(c) => {
            s.check = c;
            s.output.push(0);
        }
        Err(e) => {
            s.output.push(1);
            s.output.extend_from_slice(&(e.len() as u32).to_le_bytes());
            s.output.extend_from_slice(e.as_bytes());
        }
    }
    result_ptr(&s.output)
}

#[unsafe(no_mangle)]
pub extern "C" fn ledge_filter(ptr: i32, len: i32) -> i64 {
    let s = state();
    let inp = input(ptr, len);
    s.output.clear();
    if let Err(e) = logic::filter_batch(s.check, inp, &mut s.output) {
        panic!("{e}");
    }
    result_ptr(&s.output)
}
