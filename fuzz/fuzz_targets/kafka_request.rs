//! `cargo fuzz run kafka_request --sanitizer none`: see `ledge_fuzz::kafka_request` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::kafka_request::run(data));
