//! `cargo fuzz run storage_files --sanitizer none`: see `ledge_fuzz::storage_files` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::storage_files::run(data));
