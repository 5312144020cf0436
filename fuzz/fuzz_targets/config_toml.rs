//! `cargo fuzz run config_toml --sanitizer none`: see `ledge_fuzz::config_toml` and docs/FUZZING.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ledge_fuzz::config_toml::run(data));
