//! Tells `.ci/run` whether this machine offers io_uring, so that the io_uring tests are
//! required (`LEDGE_REQUIRE_IO_URING=1`) wherever they can run instead of skipping.
//!
//! Exit status: 0 when the node's io_uring backend sets up; 1 when the kernel or a sandbox
//! refuses io_uring itself (no such system call, `kernel.io_uring_disabled`, seccomp,
//! a memlock limit on old kernels); 2 when a ring is granted but the backend still fails,
//! which is a bug to look at, not a machine without io_uring.

use std::process::ExitCode;

fn main() -> ExitCode {
    if let Err(error) = io_uring::IoUring::new(8) {
        let refused = matches!(
            error.raw_os_error(),
            Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::ENOMEM)
        );
        println!("io_uring unavailable: {error}");
        return if refused {
            ExitCode::from(1)
        } else {
            ExitCode::from(2)
        };
    }
    match ledge_node::storage::disk::UringDisk::new(8) {
        Ok(_) => {
            println!("io_uring available");
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("io_uring granted a ring but the backend failed: {error}");
            ExitCode::from(2)
        }
    }
}
