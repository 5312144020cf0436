//! `cargo fuzz run sasl --sanitizer none`: see `ledge_fuzz::sasl` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::sasl::run(data));
