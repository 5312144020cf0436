//! `cargo fuzz run plugin_output --sanitizer none`: see `ledge_fuzz::plugin_output` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::plugin_output::run(data));
