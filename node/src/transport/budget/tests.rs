use futures_util::FutureExt;

use super::*;

// Goal: a connection over its share waits for its own bytes, not the node's; another
// connection is still served. Method: fill one share, then poll a second reservation on the
// same connection and one on another (a first poll is deterministic: a semaphore without
// permits is pending, with enough it is ready).
#[test]
fn a_connection_over_its_share_waits_while_another_is_served() {
    let budget = InFlightBudget::new(100, 60);
    let greedy = budget.connection();
    let other = budget.connection();
    let held = greedy.reserve(60).now_or_never().unwrap().unwrap();
    assert_eq!(held.bytes(), 60);
    assert_eq!(budget.available_bytes(), 40);

    let mut waiting = Box::pin(greedy.reserve(1));
    assert!((&mut waiting).now_or_never().is_none());
    // The waiting request took nothing from the node: the other connection gets the rest.
    let served = other.reserve(40).now_or_never().unwrap().unwrap();
    assert_eq!(budget.available_bytes(), 0);

    drop(held);
    let resumed = waiting.now_or_never().unwrap().unwrap();
    assert_eq!(resumed.bytes(), 1);
    drop((served, resumed));
    assert_eq!(budget.available_bytes(), 100);
}

// Goal: new requests wait when the node's budget is spent, and go on when bytes come back.
#[test]
fn the_node_budget_is_shared_by_every_connection() {
    let budget = InFlightBudget::new(100, 100);
    let first = budget.connection();
    let second = budget.connection();
    let held = first.reserve(100).now_or_never().unwrap().unwrap();
    let mut waiting = Box::pin(second.reserve(10));
    assert!((&mut waiting).now_or_never().is_none());
    drop(held);
    assert_eq!(waiting.now_or_never().unwrap().unwrap().bytes(), 10);
}

// Goal: a request larger than a limit on its own is refused at once with the limit's key,
// never queued (it could never be served).
#[test]
fn a_request_over_a_limit_alone_is_refused_with_the_key() {
    let budget = InFlightBudget::new(100, 60);
    let error = budget
        .connection()
        .reserve(61)
        .now_or_never()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        error,
        BudgetError::TooLarge {
            bytes: 61,
            key: "limits.in_flight_bytes_per_connection_max",
            limit: 60
        }
    );
    // Without a smaller share, the node's key is the one to raise.
    let whole = InFlightBudget::new(100, 100);
    let error = whole.connection().reserve(101).now_or_never().unwrap();
    assert!(
        error
            .unwrap_err()
            .to_string()
            .contains("limits.in_flight_bytes_max (100 bytes)"),
    );
}

// Goal: growing never waits (see the module doc): it takes what is free or is refused and
// leaves the reservation as it was; shrinking gives bytes back to both semaphores.
#[test]
fn resize_grows_without_waiting_or_refuses_and_shrinks() {
    let budget = InFlightBudget::new(100, 80);
    let connection = budget.connection();
    let other = budget.connection();
    let mut reservation = connection.reserve(10).now_or_never().unwrap().unwrap();
    reservation.resize(50).unwrap();
    assert_eq!(reservation.bytes(), 50);
    assert_eq!(connection.available_bytes(), 30);

    // The node has 50 left but the connection only 30.
    assert_eq!(
        reservation.resize(81).unwrap_err(),
        BudgetError::TooLarge {
            bytes: 81,
            key: "limits.in_flight_bytes_per_connection_max",
            limit: 80
        }
    );
    let _elsewhere = other.reserve(45).now_or_never().unwrap().unwrap();
    assert_eq!(
        reservation.resize(60).unwrap_err(),
        BudgetError::Exhausted {
            key: "limits.in_flight_bytes_max",
            limit: 100
        }
    );
    assert_eq!(reservation.bytes(), 50);
    assert_eq!(
        connection.available_bytes(),
        30,
        "a refused growth gives its bytes back"
    );

    reservation.resize(5).unwrap();
    assert_eq!(reservation.bytes(), 5);
    assert_eq!(budget.available_bytes(), 50);
    assert_eq!(connection.available_bytes(), 75);
    reservation.resize(0).unwrap();
    assert_eq!(reservation.bytes(), 0);
    reservation.resize(3).unwrap();
    assert_eq!(reservation.bytes(), 3);
    drop(reservation);
    assert_eq!(connection.available_bytes(), 80);
    assert_eq!(budget.available_bytes(), 55);
}
