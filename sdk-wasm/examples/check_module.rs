//! Checks built plug-in modules against the ABI's exports, as the node does at upload:
//!
//! ```text
//! cargo run -p ledge-wasm-sdk --example check_module -- filters/target/wasm32-unknown-unknown/release/*.wasm
//! ```
//!
//! Prints each module's kind and size; exits with status 1 if any module fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: check_module <module.wasm>...");
        return ExitCode::FAILURE;
    }
    for path in paths {
        let result = std::fs::read(&path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                ledge_wasm_sdk::testing::check_module(&bytes).map(|kind| (kind, bytes.len()))
            });
        match result {
            Ok((kind, bytes)) => {
                println!(
                    "{path}: {} module, {bytes} bytes, exports ok",
                    kind.as_str()
                )
            }
            Err(error) => {
                eprintln!("{path}: {error}");
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
