//! The client's one real clock (STYLE B.6): every other module takes `now` as an argument, so
//! the batching and retry logic can be tested with made-up times.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The monotonic time now.
#[expect(clippy::disallowed_methods, reason = "the client's one real clock")]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Milliseconds since the Unix epoch: the default record timestamp (Kafka's `CreateTime`).
#[expect(clippy::disallowed_methods, reason = "the client's one wall clock")]
pub(crate) fn wall_time_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// A seed that differs between producers: wall-clock nanoseconds mixed with the process id.
#[expect(clippy::disallowed_methods, reason = "seeding, not timing")]
pub(crate) fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
