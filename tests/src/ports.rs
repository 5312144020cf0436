//! Ports for the nodes tests start.
//!
//! A node binds its QUIC port over UDP and, by default, the same number over TCP for Kafka
//! clients, and binds both again after every restart. A port the kernel hands out for
//! `bind(0)` comes from the ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 by
//! default), the range every outgoing connection on the machine takes its local port from:
//! between a node's kill and its restart, a client's connection may hold that number and the
//! restart fails with "Address already in use". So nodes get ports below that range, where
//! the kernel never assigns one on its own; one counter for the test process keeps two tests
//! from choosing the same one, and a check that UDP and TCP are free now skips ports other
//! programs (a Kafka broker, a second test process) hold.

use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const FIRST_PORT: u32 = 20_000;
/// One past the highest port handed out: the default ephemeral range starts at 32768.
const END_PORT: u32 = 32_000;

/// Where the next search starts (an offset from `FIRST_PORT`); seeded from the process id
/// so two test processes running side by side start apart.
static NEXT_OFFSET: AtomicU32 = AtomicU32::new(u32::MAX);

fn next_offset(count: u32) -> u32 {
    let span = END_PORT - FIRST_PORT;
    let _ = NEXT_OFFSET.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7_919)) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    NEXT_OFFSET.fetch_add(count, Ordering::SeqCst) % span
}

fn free_now(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `count` consecutive ports, free over both UDP and TCP on 127.0.0.1 now and outside the
/// kernel's ephemeral range; returns the first. No other call in this process returns any of
/// them until the counter has gone once around the range (12,000 ports).
pub fn reserve_run(count: u16) -> u16 {
    let span = END_PORT - FIRST_PORT;
    for _ in 0..span {
        let first = FIRST_PORT + next_offset(u32::from(count));
        if first + u32::from(count) > END_PORT {
            continue;
        }
        let all_free =
            (0..u32::from(count)).all(|offset| u16::try_from(first + offset).is_ok_and(free_now));
        if all_free {
            return u16::try_from(first).expect("ports below 32000 fit u16");
        }
    }
    panic!("no run of {count} free ports between {FIRST_PORT} and {END_PORT}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_do_not_overlap_and_stay_below_the_ephemeral_range() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let first = reserve_run(3);
            assert!(u32::from(first) >= FIRST_PORT && u32::from(first) + 3 <= END_PORT);
            for port in first..first + 3 {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
    }

    #[test]
    fn a_port_held_by_someone_else_is_skipped() {
        let first = reserve_run(1);
        // Hold the next candidate over TCP only: it must be skipped.
        let held = std::net::TcpListener::bind(("127.0.0.1", first + 1));
        let next = reserve_run(1);
        if held.is_ok() {
            assert_ne!(next, first + 1);
        }
        assert_ne!(next, first);
    }
}
