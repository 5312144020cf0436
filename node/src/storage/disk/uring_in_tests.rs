//! Tests of the io_uring backend: run, fail, or skip out loud, never pass silently.
//!
//! With `LEDGE_REQUIRE_IO_URING=1` (`.ci/run` sets it where `node/examples/io_uring_probe.rs`
//! finds io_uring) a test that cannot set up a ring fails. Without it, the test prints
//! "skipped: io_uring unavailable" straight to the terminal (past the test harness's output
//! capture, so the line shows in a passing run) and returns.

use std::io::Write;

use super::UringDisk;

/// The environment variable that makes io_uring tests fail instead of skipping.
pub(crate) const REQUIRE_IO_URING: &str = "LEDGE_REQUIRE_IO_URING";

/// An io_uring disk for `test`, or `None` once the skip is printed; panics if io_uring is
/// required and cannot be set up.
pub(crate) fn uring_disk_or_skip(test: &str) -> Option<UringDisk> {
    match UringDisk::new(8) {
        Ok(disk) => Some(disk),
        Err(error) if required() => {
            panic!("{test}: io_uring cannot be set up ({error}), but {REQUIRE_IO_URING}=1")
        }
        Err(error) => {
            // Straight to stderr: `eprintln!` is captured for passing tests and never shown.
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: io_uring unavailable ({error}); set {REQUIRE_IO_URING}=1 to make this a failure"
            );
            None
        }
    }
}

fn required() -> bool {
    std::env::var(REQUIRE_IO_URING).is_ok_and(|value| value == "1")
}
