use super::*;
use crate::clock::{Clock, ManualClock};

fn base() -> Instant {
    ManualClock::new(0).now()
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[test]
fn the_throttle_time_is_kafkas_on_a_worked_example() {
    // Goal: Kafka's numbers. Quota 1000 B/s, 11 windows of 1 s. 5000 bytes at once are
    // measured over the 10 whole windows Kafka assumes at least (500 B/s: no throttle);
    // 15000 more make 2000 B/s, and (2000 - 1000) / 1000 * 10 s = 10 s of throttle.
    let t0 = base();
    let mut tracker = QuotaTracker::new(QuotaSettings::default());
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 5_000, Some(1_000), t0),
        Duration::ZERO
    );
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 15_000, Some(1_000), t0),
        Duration::from_millis(10_000)
    );
    // The same bytes for fetch are another rate.
    assert_eq!(
        tracker.record("alice", QuotaKind::Fetch, 5_000, Some(1_000), t0),
        Duration::ZERO
    );
    // The formula itself, with a window that is not whole: rounded to milliseconds.
    assert_eq!(
        throttle_time(1_500.0, 1_000.0, Duration::from_millis(10_333), secs(11)),
        Duration::from_millis(5_167)
    );
    assert_eq!(
        throttle_time(1_000.0, 1_000.0, secs(10), secs(11)),
        Duration::ZERO
    );
}

#[test]
fn the_throttle_is_bounded_by_all_the_windows() {
    // Goal: one huge produce waits at most 11 s (every sample has expired by then).
    let mut tracker = QuotaTracker::new(QuotaSettings::default());
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 1_000_000, Some(1), base()),
        secs(11)
    );
}

#[test]
fn windows_roll_and_old_bytes_expire() {
    // Goal: a record a window later opens a new sample and the rate spans both; once all
    // 11 windows have passed since a sample started, its bytes no longer count.
    let t0 = base();
    let mut tracker = QuotaTracker::new(QuotaSettings::default());
    // 10000 bytes over 10 s: exactly the quota.
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 10_000, Some(1_000), t0),
        Duration::ZERO
    );
    // 5 s later, 1000 more: 11000 over 10 s = 1100 B/s, 100 / 1000 * 10 s = 1 s.
    assert_eq!(
        tracker.record(
            "alice",
            QuotaKind::Produce,
            1_000,
            Some(1_000),
            t0 + secs(5)
        ),
        Duration::from_millis(1_000)
    );
    // At 12 s the first sample has expired: 1001 bytes over 10 s, within the quota.
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 1, Some(1_000), t0 + secs(12)),
        Duration::ZERO
    );
}

#[test]
fn a_users_own_quota_wins_over_the_default_and_none_is_unlimited() {
    // Goal: Kafka's precedence for user quotas: /users/<user>, then /users/<default>.
    let mut quotas = ClientQuotas::default();
    assert_eq!(quotas.quota_for("alice", QuotaKind::Produce), None);
    quotas.put(
        QuotaEntity::DefaultUser,
        QuotaValues {
            producer_byte_rate: Some(100),
            consumer_byte_rate: Some(200),
        },
    );
    quotas.put(
        QuotaEntity::User("alice".into()),
        QuotaValues {
            producer_byte_rate: Some(1_000),
            consumer_byte_rate: None,
        },
    );
    assert_eq!(quotas.quota_for("alice", QuotaKind::Produce), Some(1_000));
    // Alice's fetch quota is not set: the default's applies.
    assert_eq!(quotas.quota_for("alice", QuotaKind::Fetch), Some(200));
    assert_eq!(quotas.quota_for("bob", QuotaKind::Produce), Some(100));
    assert_eq!(quotas.len(), 2);
    // Empty values remove the entity.
    quotas.put(QuotaEntity::User("alice".into()), QuotaValues::default());
    assert_eq!(quotas.quota_for("alice", QuotaKind::Produce), Some(100));
    assert_eq!(quotas.len(), 1);
    // Unlimited: nothing is recorded, no throttle however many bytes.
    let mut tracker = QuotaTracker::new(QuotaSettings::default());
    assert_eq!(
        tracker.record("carol", QuotaKind::Produce, u64::MAX / 2, None, base()),
        Duration::ZERO
    );
    assert_eq!(tracker.tracked(), 0);
}

#[test]
fn the_number_of_tracked_rates_is_bounded_and_the_idlest_is_evicted() {
    // Goal: with room for 2 rates a third principal evicts the one idle longest, whose
    // history is then forgotten; the others keep theirs.
    let t0 = base();
    let settings = QuotaSettings {
        principals_tracked_max: 2,
        ..QuotaSettings::default()
    };
    let mut tracker = QuotaTracker::new(settings);
    // Alice bursts to twice her quota.
    assert!(
        !tracker
            .record("alice", QuotaKind::Produce, 20_000, Some(1_000), t0)
            .is_zero()
    );
    assert!(
        !tracker
            .record("bob", QuotaKind::Produce, 20_000, Some(1_000), t0 + secs(1))
            .is_zero()
    );
    tracker.record("carol", QuotaKind::Produce, 1, Some(1_000), t0 + secs(2));
    assert_eq!(tracker.tracked(), 2);
    // Alice was evicted: her burst no longer counts.
    assert_eq!(
        tracker.record("alice", QuotaKind::Produce, 0, Some(1_000), t0 + secs(3)),
        Duration::ZERO
    );
    assert_eq!(tracker.tracked(), 2);
    // Carol (more recent than Bob) is kept; Bob was evicted for Alice.
    assert!(
        !tracker
            .record(
                "carol",
                QuotaKind::Produce,
                20_000,
                Some(1_000),
                t0 + secs(3)
            )
            .is_zero()
    );
}
