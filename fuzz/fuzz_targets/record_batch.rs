//! `cargo fuzz run record_batch --sanitizer none`: see `ledge_fuzz::record_batch` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::record_batch::run(data));
