use std::time::Duration;

use tokio::sync::watch;

use super::wait_for_requests;
use crate::clock::{Clock, SimClock};

// Goal: shutdown waits for requests in flight, and no longer than its grace. Method: paused
// time; a request finishes 5 s in; with a 10 s grace the wait ends when it does (none left),
// with a 1 s grace it ends first and reports the request still in flight.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_requests_up_to_its_grace() {
    let clock = SimClock::new(1_000_000);
    for (grace, unfinished) in [(Duration::from_secs(10), 0), (Duration::from_secs(1), 1)] {
        let in_flight = std::sync::Arc::new(watch::Sender::new(1usize));
        let request = tokio::spawn({
            let in_flight = std::sync::Arc::clone(&in_flight);
            async move {
                crate::clock::sleep(&clock, Duration::from_secs(5)).await;
                in_flight.send_modify(|count| *count -= 1);
            }
        });
        let started = clock.now();
        assert_eq!(
            wait_for_requests(&clock, grace, &in_flight).await,
            unfinished
        );
        let waited = clock.now() - started;
        // Simulated time: exact, whatever the machine's load.
        assert_eq!(waited, grace.min(Duration::from_secs(5)));
        request.await.unwrap();
    }
}
