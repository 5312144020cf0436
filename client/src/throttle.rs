//! Client quota throttles (KIP-219): a node over whose `producer_byte_rate` or
//! `consumer_byte_rate` quota a client went answers its Produce or Fetch at once with
//! `throttle_time_ms`, and holds the connection's next request of that kind until the time
//! has passed. A well-behaved client waits it out itself before sending that next request,
//! as Kafka's clients do, instead of having it sit in the node.
//!
//! [`Throttles`] is one node's record of until when each kind is throttled; pure, time is
//! passed in. The connection code (`connection.rs`) keeps one per node and waits before
//! sending a Produce or Fetch there.

use std::time::{Duration, Instant};

use ledge_protocol::wire::{ApiKey, Response};

/// Which quota a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ThrottleKind {
    /// Produce (`producer_byte_rate`).
    Produce,
    /// Fetch (`consumer_byte_rate`).
    Fetch,
}

impl ThrottleKind {
    /// The kind of requests of `api_key`; `None` for the APIs no quota limits.
    pub(crate) fn of(api_key: ApiKey) -> Option<Self> {
        match api_key {
            ApiKey::Produce => Some(Self::Produce),
            ApiKey::Fetch => Some(Self::Fetch),
            _ => None,
        }
    }
}

/// The throttle time a node's answer carries: a Produce's or Fetch's `throttle_time_ms`;
/// zero for every other answer.
pub(crate) fn throttle_time(response: &Response) -> Duration {
    let millis = match response {
        Response::Produce(produce) => produce.throttle_time_ms,
        Response::Fetch(fetch) => fetch.throttle_time_ms,
        _ => 0,
    };
    Duration::from_millis(u64::from(millis))
}

/// Until when one node throttles this client's produces and fetches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Throttles {
    produce_until: Option<Instant>,
    fetch_until: Option<Instant>,
}

impl Throttles {
    fn until(&mut self, kind: ThrottleKind) -> &mut Option<Instant> {
        match kind {
            ThrottleKind::Produce => &mut self.produce_until,
            ThrottleKind::Fetch => &mut self.fetch_until,
        }
    }

    /// Notes an answer of `kind` received at `now` that says the client is throttled for
    /// `throttle` (zero: not at all, nothing changes). A later end never moves earlier.
    pub(crate) fn throttled(&mut self, kind: ThrottleKind, throttle: Duration, now: Instant) {
        if throttle.is_zero() {
            return;
        }
        let end = now.checked_add(throttle).unwrap_or(now);
        let until = self.until(kind);
        *until = Some(until.map_or(end, |known| known.max(end)));
    }

    /// How long a request of `kind` must wait at `now` before it is sent (zero: none).
    /// Forgets a throttle that has passed.
    pub(crate) fn wait(&mut self, kind: ThrottleKind, now: Instant) -> Duration {
        let until = self.until(kind);
        match *until {
            Some(end) if end > now => end - now,
            Some(_) => {
                *until = None;
                Duration::ZERO
            }
            None => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledge_protocol::wire::{FetchResponse, MetadataResponse, ProduceResponse};

    // Goal: a throttle makes the next request of its kind wait the rest of the time, and only
    // of its kind; once passed it is forgotten; a shorter later throttle does not shorten it.
    #[test]
    fn a_throttle_delays_the_next_request_of_its_kind_only() {
        let start = crate::clock::now();
        let mut throttles = Throttles::default();
        assert_eq!(throttles.wait(ThrottleKind::Produce, start), Duration::ZERO);
        throttles.throttled(ThrottleKind::Produce, Duration::from_millis(1_500), start);
        throttles.throttled(ThrottleKind::Fetch, Duration::ZERO, start);
        let later = start + Duration::from_millis(500);
        assert_eq!(
            throttles.wait(ThrottleKind::Produce, later),
            Duration::from_millis(1_000)
        );
        assert_eq!(throttles.wait(ThrottleKind::Fetch, later), Duration::ZERO);
        throttles.throttled(ThrottleKind::Produce, Duration::from_millis(100), later);
        assert_eq!(
            throttles.wait(ThrottleKind::Produce, later),
            Duration::from_millis(1_000)
        );
        let passed = start + Duration::from_millis(1_500);
        assert_eq!(
            throttles.wait(ThrottleKind::Produce, passed),
            Duration::ZERO
        );
        assert_eq!(throttles, Throttles::default());
    }

    // Goal: the throttle time is read from Produce and Fetch answers, in milliseconds, and is
    // zero for other APIs.
    #[test]
    fn throttle_times_come_from_produce_and_fetch_answers() {
        let produce = Response::Produce(ProduceResponse {
            throttle_time_ms: 250,
            topics: Vec::new(),
        });
        assert_eq!(throttle_time(&produce), Duration::from_millis(250));
        let fetch = Response::Fetch(FetchResponse {
            throttle_time_ms: 11_000,
            ..FetchResponse::default()
        });
        assert_eq!(throttle_time(&fetch), Duration::from_secs(11));
        let metadata = Response::Metadata(MetadataResponse::default());
        assert_eq!(throttle_time(&metadata), Duration::ZERO);
        assert_eq!(
            ThrottleKind::of(ApiKey::Produce),
            Some(ThrottleKind::Produce)
        );
        assert_eq!(ThrottleKind::of(ApiKey::Fetch), Some(ThrottleKind::Fetch));
        assert_eq!(ThrottleKind::of(ApiKey::ListOffsets), None);
    }
}
