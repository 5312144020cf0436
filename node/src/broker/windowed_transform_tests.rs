//! Windowed aggregate transforms on one node (docs/STREAMS.md, "Windows"): exact per-window
//! totals against a reference computed here (out-of-order timestamps, late records past the
//! grace, a record too far in the future), suppression emitting one final result per
//! window, expiry of windowed state, session merges, and power loss mid-stream.

use super::stateful_transform_tests::{read_all, runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_protocol::wire::*;
use ledge_protocol::{DecodedRecord, EncodeOptions, Record, encode_batch};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::metadata::StatefulSpec;
use super::topic_config::CleanupPolicy;
use super::*;
use crate::clock::SimClock;
use crate::sim::SimDisk;
use crate::streams::window::{WINDOW_END_HEADER, WINDOW_START_HEADER, WindowSettings};

const DATA: &str = "/data";
/// The node's clock starts here (ms since the epoch); timestamps stay below it plus
/// `transforms.future_timestamp_ms_max` except the one meant to be refused.
const CLOCK_START_MS: i64 = 10_000_000;
const MINUTE: i64 = 60_000;
const OUTPUT: &str = "totals";

fn config() -> BrokerConfig {
    let mut config = BrokerConfig::default();
    config.transforms.idle_wait = Duration::from_millis(20);
    config.transforms.retry_backoff = Duration::from_millis(20);
    config.wasm.fuel_per_batch = 50_000_000;
    // Below the topics' message.timestamp.after.max.ms (1 hour), so the node takes a record
    // the transform then refuses.
    config.transforms.future_timestamp_ms_max = 30 * MINUTE;
    config
}

async fn open(disk: &SimDisk) -> Arc<Broker<SimDisk>> {
    let broker = Broker::open(
        disk.clone(),
        Path::new(DATA),
        config(),
        Arc::new(SimClock::new(CLOCK_START_MS)),
    )
    .await
    .unwrap();
    let broker = Arc::new(broker);
    broker.transforms().start().await;
    broker
}

/// order-totals-per-minute deployed with `window`.
fn totals(window: WindowSettings) -> transforms::DeclaredTransform {
    transforms::DeclaredTransform {
        name: "per-minute".into(),
        kind: crate::wasm::PluginKind::Aggregate,
        module: Bytes::from(crate::wasm::runtime::stateful_tests::example(
            "order_totals_per_minute",
        )),
        input: "orders".into(),
        output: OUTPUT.into(),
        params: BTreeMap::new(),
        on_error: transforms::OnError::DeadLetter,
        dead_letter_topic: String::new(),
        window: Some(window),
        join: None,
    }
}

fn tumbling(grace_ms: i64, retention_ms: i64, emit: &str) -> WindowSettings {
    WindowSettings {
        kind: Some("tumbling".into()),
        size_ms: Some(MINUTE),
        grace_ms: Some(grace_ms),
        retention_ms: Some(retention_ms),
        emit: Some(emit.into()),
        ..WindowSettings::default()
    }
}

/// One order: customer, amount (whole, so sums are exact), timestamp.
#[derive(Clone, Copy, Debug)]
struct Order {
    customer: u64,
    amount: u64,
    timestamp: i64,
}

fn encode(orders: &[Order]) -> Bytes {
    let records: Vec<Record> = orders
        .iter()
        .map(|order| Record {
            timestamp: order.timestamp,
            key: None,
            value: Some(Bytes::from(format!(
                r#"{{"customer_id": {}, "amount": {}}}"#,
                order.customer, order.amount
            ))),
            headers: Vec::new(),
        })
        .collect();
    encode_batch(&records, &EncodeOptions::default()).unwrap()
}

/// Random orders of 5 customers over 20 minutes from `start_ms`, mostly in order, some up to
/// three minutes early (late beyond a small grace).
fn random_orders(rng: &mut ChaCha8Rng, start_ms: i64, count: usize) -> Vec<Order> {
    let mut now = start_ms;
    (0..count)
        .map(|_| {
            now += rng.random_range(0..4_000);
            let back = if rng.random_range(0..5) == 0 {
                rng.random_range(0..3 * MINUTE)
            } else {
                0
            };
            Order {
                customer: rng.random_range(0..5),
                amount: rng.random_range(1..100),
                timestamp: now - back,
            }
        })
        .collect()
}

/// The reference: tumbling one-minute windows, records in order, the watermark the largest
/// timestamp seen minus `grace_ms`; a record whose window closed (end <= watermark) is late.
#[derive(Default)]
struct Reference {
    grace_ms: i64,
    max_ms: Option<i64>,
    late: u64,
    totals: BTreeMap<(String, i64), u64>,
}

impl Reference {
    fn watermark(&self) -> Option<i64> {
        self.max_ms.map(|max| max - self.grace_ms)
    }

    fn apply(&mut self, orders: &[Order]) {
        for order in orders {
            self.max_ms = Some(
                self.max_ms
                    .map_or(order.timestamp, |m| m.max(order.timestamp)),
            );
            let start = order.timestamp.div_euclid(MINUTE) * MINUTE;
            if self.watermark().is_some_and(|mark| start + MINUTE <= mark) {
                self.late += 1;
                continue;
            }
            *self
                .totals
                .entry((order.customer.to_string(), start))
                .or_insert(0) += order.amount;
        }
    }

    /// Windows whose state has not expired at the watermark.
    fn retained(&self, retention_ms: i64) -> BTreeMap<(String, i64), u64> {
        let mark = self.watermark().unwrap_or(i64::MIN);
        self.totals
            .iter()
            .filter(|((_, start), _)| start + MINUTE + retention_ms > mark)
            .map(|(key, total)| (key.clone(), *total))
            .collect()
    }
}

async fn produce(broker: &Broker<SimDisk>, orders: &[Order]) {
    let response = tests::produce(broker, "orders", 0, encode(orders), Acks::All).await;
    assert_eq!(response.error, ErrorCode::None, "{}", response.message);
}

fn header(record: &DecodedRecord, name: &str) -> i64 {
    let value = record
        .headers
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| header.value.as_ref())
        .unwrap_or_else(|| panic!("no {name} header: {record:?}"));
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

fn total(value: &[u8]) -> u64 {
    let total: f64 = std::str::from_utf8(value).unwrap().parse().unwrap();
    assert_eq!(total.fract(), 0.0, "{total}");
    total as u64
}

/// The output's change records per (customer, window start), in log order; checks each
/// carries its window's bounds as headers.
async fn changes(broker: &Broker<SimDisk>) -> BTreeMap<(String, i64), Vec<u64>> {
    let mut by_window: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
    for partition in 0..broker.registry.partition_count(OUTPUT) {
        for record in read_all(broker, OUTPUT, partition).await {
            let key = String::from_utf8(record.key.clone().unwrap().to_vec()).unwrap();
            let start = header(&record, WINDOW_START_HEADER);
            assert_eq!(header(&record, WINDOW_END_HEADER), start + MINUTE);
            let value = record
                .value
                .as_deref()
                .expect("a window's change is not null");
            by_window
                .entry((key, start))
                .or_default()
                .push(total(value));
        }
    }
    by_window
}

/// Latest total per window; each window's change records strictly increase (amounts are
/// positive), so none is repeated.
fn checked_latest(changes: &BTreeMap<(String, i64), Vec<u64>>) -> BTreeMap<(String, i64), u64> {
    for (window, values) in changes {
        assert!(
            values.windows(2).all(|pair| pair[0] < pair[1]),
            "change records of {window:?} repeat or go back: {values:?}"
        );
    }
    changes
        .iter()
        .map(|(window, values)| (window.clone(), *values.last().unwrap()))
        .collect()
}

async fn scan(broker: &Broker<SimDisk>) -> BTreeMap<(String, i64), u64> {
    let scan = broker
        .transforms
        .table_scan(TableScanRequest {
            name: "per-minute".into(),
            prefix: Bytes::new(),
            limit: 0,
        })
        .await;
    assert_eq!(scan.error, ErrorCode::None, "{}", scan.message);
    scan.entries
        .iter()
        .map(|entry| {
            let window = entry.window.clone().expect("a windowed entry");
            assert_eq!(window.end_ms, window.start_ms + MINUTE);
            (
                (
                    String::from_utf8(entry.key.to_vec()).unwrap(),
                    window.start_ms,
                ),
                total(&entry.value),
            )
        })
        .collect()
}

async fn describe(broker: &Broker<SimDisk>) -> TransformDescription {
    broker
        .describe_transforms(DescribeTransformsRequest {
            names: vec!["per-minute".into()],
        })
        .await
        .transforms
        .remove(0)
}

/// Waits (a bound on the paused clock's steps, not a timing claim) until `done` holds.
async fn wait_until<F, Fut>(broker: &Broker<SimDisk>, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..6000 {
        if done().await {
            return;
        }
        crate::clock::sleep(&*broker.clock, Duration::from_millis(10)).await;
    }
    panic!("{what} never happened: {:?}", describe(broker).await);
}

// Goal: a tumbling one-minute aggregate over random orders (out of order, some late beyond
// the grace) gives exactly the reference's per-window totals in its change records (each
// with its window's headers) and table; late records are counted and dropped; a record too
// far ahead of the clock fails to the dead-letter topic without moving the watermark;
// windows past their retention leave the table; the changelog deletes as well as compacts.
#[test]
fn tumbling_totals_match_a_reference_with_late_records_and_expiry() {
    runtime().block_on(async {
        let disk = SimDisk::new(7);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 1, &BTreeMap::new())
            .await
            .unwrap();
        let grace_ms = 10_000;
        let retention_ms = 5 * MINUTE;
        broker
            .transforms
            .deploy(totals(tumbling(grace_ms, retention_ms, "changes")))
            .await
            .unwrap();
        let changelog = broker
            .registry
            .topic(&StatefulSpec::changelog_topic("per-minute"))
            .unwrap();
        assert_eq!(
            changelog.config().cleanup_policy,
            CleanupPolicy::CompactAndDelete
        );
        assert!(
            changelog
                .config()
                .retention
                .is_some_and(|retention| retention.as_millis() > retention_ms as u128)
        );

        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut reference = Reference {
            grace_ms,
            ..Reference::default()
        };
        let orders = random_orders(&mut rng, 0, 400);
        for chunk in orders.chunks(37) {
            produce(&broker, chunk).await;
            reference.apply(chunk);
        }
        assert!(reference.late > 0, "the orders include late ones");
        // Far ahead of the node's clock: refused by transforms.future_timestamp_ms_max.
        produce(
            &broker,
            &[Order {
                customer: 1,
                amount: 1,
                timestamp: CLOCK_START_MS + 45 * MINUTE,
            }],
        )
        .await;
        let expected = reference.totals.clone();
        wait_until(&broker, "the reference totals", || async {
            checked_latest(&changes(&broker).await) == expected
                && read_all(&broker, "per-minute.dead-letter", 0).await.len() == 1
        })
        .await;
        assert_eq!(scan(&broker).await, reference.retained(retention_ms));
        assert!(
            reference.retained(retention_ms).len() < reference.totals.len(),
            "some windows expired"
        );
        let description = describe(&broker).await;
        assert_eq!(description.records_late, reference.late, "{description:?}");
        let mark = reference.watermark().unwrap();
        let open_windows = reference
            .totals
            .keys()
            .filter(|(_, start)| start + MINUTE > mark)
            .count();
        assert_eq!(
            description.windows_open, open_windows as u64,
            "{description:?}"
        );
        let window = description.window.expect("described with its window");
        assert_eq!(
            (window.kind.as_str(), window.size_ms, window.grace_ms),
            ("tumbling", Some(MINUTE), Some(grace_ms))
        );

        // One key's windows, in window order.
        let got = broker
            .transforms
            .table_get(TableGetRequest {
                name: "per-minute".into(),
                key: Bytes::from_static(b"3"),
            })
            .await;
        assert_eq!(got.error, ErrorCode::None, "{}", got.message);
        let windows: Vec<(i64, u64)> = got
            .windows
            .iter()
            .map(|entry| (entry.window.clone().unwrap().start_ms, total(&entry.value)))
            .collect();
        let expected_windows: Vec<(i64, u64)> = reference
            .retained(retention_ms)
            .iter()
            .filter(|((customer, _), _)| customer == "3")
            .map(|((_, start), total)| (*start, *total))
            .collect();
        assert_eq!(windows, expected_windows);

        // Across a restart: restored windows and watermark, exact totals going on.
        broker.close().await;
        drop(broker);
        let broker = open(&disk).await;
        let more = random_orders(&mut rng, reference.max_ms.unwrap(), 100);
        produce(&broker, &more).await;
        reference.apply(&more);
        let expected = reference.totals.clone();
        wait_until(&broker, "the totals after a restart", || async {
            checked_latest(&changes(&broker).await) == expected
        })
        .await;
        assert_eq!(scan(&broker).await, reference.retained(retention_ms));
        broker.close().await;
    });
}

// Goal: with emit = suppress, each window yields exactly one change record, its final
// total, once the watermark closes it, and none while it is open.
#[test]
fn suppress_emits_one_final_result_per_window() {
    runtime().block_on(async {
        let disk = SimDisk::new(11);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 1, &BTreeMap::new())
            .await
            .unwrap();
        let grace_ms = 20_000;
        broker
            .transforms
            .deploy(totals(tumbling(grace_ms, 60 * MINUTE, "suppress")))
            .await
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut reference = Reference {
            grace_ms,
            ..Reference::default()
        };
        let orders = random_orders(&mut rng, 0, 300);
        for chunk in orders.chunks(23) {
            produce(&broker, chunk).await;
            reference.apply(chunk);
        }
        let closed = |reference: &Reference| -> BTreeMap<(String, i64), Vec<u64>> {
            let mark = reference.watermark().unwrap();
            reference
                .totals
                .iter()
                .filter(|((_, start), _)| start + MINUTE <= mark)
                .map(|(window, total)| (window.clone(), vec![*total]))
                .collect()
        };
        let expected = closed(&reference);
        wait_until(&broker, "the closed windows' results", || async {
            changes(&broker).await == expected
                && describe(&broker).await.windows_open
                    == (reference.totals.len() - expected.len()) as u64
        })
        .await;
        // A later order closes the rest; each is emitted once, with its final total.
        let last = Order {
            customer: 0,
            amount: 1,
            timestamp: reference.max_ms.unwrap() + 10 * MINUTE,
        };
        produce(&broker, &[last]).await;
        reference.apply(&[last]);
        let expected = closed(&reference);
        assert!(expected.len() > 5);
        wait_until(&broker, "every closed window's result", || async {
            changes(&broker).await == expected
        })
        .await;
        broker.close().await;
    });
}

// Goal: session windows (gap 20 s) merge the sessions a record bridges through the module's
// ledge_merge: a record between two sessions of a key leaves one session with the sum, and
// the table shows it with its bounds; a module without ledge_merge is refused for sessions.
#[test]
fn a_record_bridging_two_sessions_merges_them() {
    runtime().block_on(async {
        let disk = SimDisk::new(13);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 1, &BTreeMap::new())
            .await
            .unwrap();
        let session = WindowSettings {
            gap_ms: Some(20_000),
            grace_ms: Some(60 * MINUTE),
            ..WindowSettings::default()
        };
        let mut counts = totals(session.clone());
        counts.module = Bytes::from(crate::wasm::runtime::stateful_tests::example(
            "order_counts",
        ));
        let refused = broker.transforms.deploy(counts).await.unwrap_err();
        assert!(
            matches!(
                refused,
                transforms::DeployTransformError::SessionWithoutMerge
            ),
            "{refused}"
        );
        broker.transforms.deploy(totals(session)).await.unwrap();
        let at = |customer, amount, timestamp| Order {
            customer,
            amount,
            timestamp,
        };
        produce(
            &broker,
            &[at(1, 1, 100_000), at(1, 2, 140_000), at(2, 5, 150_000)],
        )
        .await;
        produce(&broker, &[at(1, 4, 120_000)]).await;
        let expected: BTreeSet<(String, i64, i64, u64)> = [
            ("1".to_string(), 100_000, 140_000, 7),
            ("2".to_string(), 150_000, 150_000, 5),
        ]
        .into();
        wait_until(&broker, "the merged session", || async {
            let scan = broker
                .transforms
                .table_scan(TableScanRequest {
                    name: "per-minute".into(),
                    prefix: Bytes::new(),
                    limit: 0,
                })
                .await;
            let got: BTreeSet<(String, i64, i64, u64)> = scan
                .entries
                .iter()
                .map(|entry| {
                    let window = entry.window.clone().unwrap();
                    (
                        String::from_utf8(entry.key.to_vec()).unwrap(),
                        window.start_ms,
                        window.end_ms,
                        total(&entry.value),
                    )
                })
                .collect();
            got == expected
        })
        .await;
        broker.close().await;
    });
}

// Goal: power loss at arbitrary points while a windowed aggregate runs neither loses nor
// repeats an amount in any window: after the last reboot the change records converge to the
// reference's totals (late records dropped by the restored watermark), none repeated.
#[test]
fn power_loss_mid_stream_keeps_window_totals_exact() {
    let disk = SimDisk::new(31);
    let grace_ms = 5_000;
    let mut reference = Reference {
        grace_ms,
        ..Reference::default()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut start = 0;
    for round in 0..10u64 {
        let rt = runtime();
        let orders = random_orders(&mut rng, start, 40);
        start = orders.iter().map(|order| order.timestamp).max().unwrap();
        let broker = rt.block_on(async {
            let broker = open(&disk).await;
            if round == 0 {
                broker
                    .registry
                    .create_topic("orders", 1, &BTreeMap::new())
                    .await
                    .unwrap();
                broker
                    .transforms
                    .deploy(totals(tumbling(grace_ms, 60 * MINUTE, "changes")))
                    .await
                    .unwrap();
            }
            for chunk in orders.chunks(13) {
                produce(&broker, chunk).await;
            }
            // A different number of scheduler steps each round: the crash lands anywhere.
            for _ in 0..(round * 41 % 230) {
                tokio::task::yield_now().await;
            }
            broker
        });
        reference.apply(&orders);
        disk.crash();
        drop(broker);
        rt.shutdown_background();
    }
    let rt = runtime();
    rt.block_on(async {
        let broker = open(&disk).await;
        let expected = reference.totals.clone();
        wait_until(&broker, "the reference totals", || async {
            checked_latest(&changes(&broker).await) == expected
        })
        .await;
        assert_eq!(scan(&broker).await, expected);
        broker.close().await;
    });
}

// Goal: window settings are checked at deploy: on a transform that is not an aggregate,
// with a refused value (named), and a redeploy that changes the window is refused.
#[test]
fn window_deploys_are_checked() {
    runtime().block_on(async {
        let disk = SimDisk::new(19);
        let broker = open(&disk).await;
        broker
            .registry
            .create_topic("orders", 1, &BTreeMap::new())
            .await
            .unwrap();
        let mut filter = totals(tumbling(0, 0, "changes"));
        filter.kind = crate::wasm::PluginKind::Filter;
        let refused = broker.transforms.deploy(filter).await.unwrap_err();
        assert!(
            matches!(
                refused,
                transforms::DeployTransformError::WindowNotAggregate(_)
            ),
            "{refused}"
        );
        let hopping = WindowSettings {
            size_ms: Some(MINUTE),
            advance_ms: Some(0),
            ..WindowSettings::default()
        };
        let refused = broker.transforms.deploy(totals(hopping)).await.unwrap_err();
        assert!(
            refused.to_string().contains("window.advance_ms"),
            "{refused}"
        );
        broker
            .transforms
            .deploy(totals(tumbling(0, MINUTE, "changes")))
            .await
            .unwrap();
        let mut longer = tumbling(0, MINUTE, "changes");
        longer.size_ms = Some(2 * MINUTE);
        let refused = broker.transforms.deploy(totals(longer)).await.unwrap_err();
        assert!(refused.to_string().contains("window changes"), "{refused}");
        // The same window again is a new version keeping the state.
        assert_eq!(
            broker
                .transforms
                .deploy(totals(tumbling(0, MINUTE, "changes")))
                .await
                .unwrap(),
            2
        );
        broker.close().await;
    });
}
