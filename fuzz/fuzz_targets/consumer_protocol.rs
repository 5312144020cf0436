//! `cargo fuzz run consumer_protocol --sanitizer none`: see `ledge_fuzz::consumer_protocol` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::consumer_protocol::run(data));
