//! `cargo fuzz run native_frame --sanitizer none`: see `ledge_fuzz::native_frame` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::native_frame::run(data));
