//! A histogram with fixed buckets updated with atomics only: an observation is two relaxed
//! `fetch_add`s (its bucket and the sum), never a lock, so it can sit on the produce, fetch
//! and fsync paths. (prometheus-client's own `Histogram` takes a lock per observation.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of request and fsync latency buckets: 100 µs to 10 s, roughly
/// 1-2.5-5 per decade (Prometheus's default buckets with the sub-millisecond decade added,
/// where an edge node's requests and syncs mostly fall).
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds (seconds) of WASM call buckets: 10 µs to 1 s (a plug-in call on a batch is
/// usually tens of microseconds; fuel bounds it well under a second).
pub const WASM_BUCKETS_SECONDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug)]
pub struct AtomicHistogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// The same bounds in nanoseconds, for the comparison on the hot path.
    bounds_nanos: Box<[u64]>,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    /// Sum of every observation, in nanoseconds.
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment. Buckets are per bucket, not cumulative: the encoder
/// (prometheus-client's) accumulates them into `le` buckets itself.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
    /// How many observations.
    pub count: u64,
    /// (upper bound, observations above the previous bound and at or below this one),
    /// `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Self {
            bounds,
            bounds_nanos: bounds
                .iter()
                .map(|seconds| (seconds * 1e9) as u64)
                .collect(),
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self
            .bounds_nanos
            .iter()
            .position(|bound| nanos <= *bound)
            .unwrap_or(self.bounds_nanos.len());
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram now, the count being the buckets' total (so the two always agree
    /// even while observations land).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (index, count) in self.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            cumulative = cumulative.saturating_add(count);
            let bound = self.bounds.get(index).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, count));
        }
        HistogramSnapshot {
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative,
            buckets,
        }
    }

    /// Whether nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.counts
            .iter()
            .all(|count| count.load(Ordering::Relaxed) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_accumulate() {
        let histogram = AtomicHistogram::new(&[0.001, 0.01, 0.1]);
        assert!(histogram.is_empty());
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(1));
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(3));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 4);
        assert_eq!(
            snapshot.buckets,
            vec![(0.001, 2), (0.01, 1), (0.1, 0), (f64::INFINITY, 1)]
        );
        assert!((snapshot.sum_seconds - 3.0065).abs() < 1e-9);
    }
}
