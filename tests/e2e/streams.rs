//! Stateful stream processing through a running node (docs/STREAMS.md): the order-counts
//! aggregate deployed as a transform counts orders per customer into a topic of change
//! records, and `kill -9` at random points while it aggregates neither loses nor repeats a
//! count. Rounds: `LEDGE_STREAMS_CRASH_ROUNDS` (default 5); seed: `LEDGE_E2E_SEED`.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use ledge_client::{
    Consumer, ConsumerConfig, OffsetReset, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use ledge_e2e::{
    NodeOptions, NodeProcess, RawClient, connect, create_topic, filter_module, run_cli, runtime,
};
use ledge_protocol::wire::*;
use rand::{Rng, SeedableRng};

const CUSTOMERS: u64 = 11;
const PARTITIONS: u32 = 3;

fn seed() -> u64 {
    let seed = std::env::var("LEDGE_E2E_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| std::hash::RandomState::new().build_hasher().finish());
    println!("LEDGE_E2E_SEED={seed}");
    seed
}

fn crash_rounds() -> u64 {
    std::env::var("LEDGE_STREAMS_CRASH_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5)
}

async fn deploy_counts(raw: &RawClient) {
    let request = DeployTransformRequest {
        name: "counts".into(),
        kind: "aggregate".parse().expect("a known plug-in kind"),
        module: filter_module("order_counts"),
        input: "orders".into(),
        output: "order-counts".into(),
        ..DeployTransformRequest::default()
    };
    let (header, response) = raw.request(&Request::DeployTransform(request)).await;
    let Some(Response::DeployTransform(response)) = response else {
        panic!("deploy refused: {} {}", header.error, header.message)
    };
    assert_eq!(response.error, ErrorCode::None, "{}", response.message);
}

/// Sends orders `from..from + count` (order n from customer `n % CUSTOMERS`) and waits
/// for every acknowledgement.
async fn send_orders(client: &ledge_client::Client, from: u64, count: u64) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for n in from..from + count {
        let value = format!(
            r#"{{"order_id": {n}, "customer_id": {}, "amount": 10}}"#,
            n % CUSTOMERS
        );
        let record = ProducerRecord::new("orders", value).key(format!("order-{n}"));
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

fn true_counts(total: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for n in 0..total {
        *counts.entry((n % CUSTOMERS).to_string()).or_insert(0) += 1;
    }
    counts
}

/// Reads the output until each key's latest change record is its true count (a bound on
/// polls, not a timing claim); asserts that each key's change records strictly increase
/// (so none is repeated) and returns how many there were.
async fn wait_for_counts(client: &ledge_client::Client, total: u64) -> usize {
    let expected = true_counts(total);
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(
        (0..PARTITIONS)
            .map(|partition| TopicPartition::new("order-counts", partition))
            .collect(),
    );
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut latest = BTreeMap::new();
    for _ in 0..600 {
        for record in consumer
            .poll(Duration::from_millis(200), 10_000)
            .await
            .expect("poll")
        {
            let key = String::from_utf8(record.key.expect("a key").to_vec()).expect("UTF-8");
            let count: u64 = std::str::from_utf8(&record.value.expect("a value"))
                .expect("UTF-8")
                .parse()
                .expect("a count");
            by_key.entry(key).or_default().push(count);
        }
        for (key, counts) in &by_key {
            assert!(
                counts.windows(2).all(|pair| pair[0] < pair[1]),
                "change records of customer {key} repeat or go back: {counts:?}"
            );
        }
        latest = by_key
            .iter()
            .filter_map(|(key, counts)| Some((key.clone(), *counts.last()?)))
            .collect();
        if latest == expected {
            return by_key.values().map(Vec::len).sum();
        }
    }
    panic!("counts never got there: {latest:?}, expected {expected:?}");
}

/// Runs `ledge` against `node`; requires success and returns stdout.
fn ledge(node: &NodeProcess, args: &[&str]) -> String {
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_cli(&full, None);
    assert!(status.success(), "ledge {args:?} failed:\n{stderr}");
    stdout
}

// Goal: `ledge transform deploy --kind aggregate` of filters' order_counts over JSON
// orders makes a topic whose latest value per customer is the true count, with no change
// record repeated; `ledge table get|scan` answer the same counts from the node's state.
#[test]
fn the_order_counts_aggregate_counts_orders_per_customer() {
    let node = NodeProcess::start();
    // Built (if missing) by the harness; the CLI reads it from its path.
    filter_module("order_counts");
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release/order_counts.wasm");
    let module = module.to_string_lossy().into_owned();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", PARTITIONS).await;
    });
    ledge(
        &node,
        &[
            "transform",
            "deploy",
            "counts",
            "--module",
            &module,
            "--kind",
            "aggregate",
            "--input",
            "orders",
            "--output",
            "order-counts",
        ],
    );
    runtime().block_on(async {
        let client = connect(&node).await;
        send_orders(&client, 0, 500).await;
        wait_for_counts(&client, 500).await;
    });
    let expected = true_counts(500);
    let scanned: BTreeMap<String, u64> =
        ledge(&node, &["table", "scan", "counts", "--format", "json"])
            .lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                (
                    entry["key"].as_str().expect("a key").to_string(),
                    entry["value"]
                        .as_str()
                        .expect("a value")
                        .parse()
                        .expect("a count"),
                )
            })
            .collect();
    assert_eq!(scanned, expected);
    assert_eq!(
        ledge(&node, &["table", "get", "counts", "3"]).trim(),
        expected["3"].to_string()
    );
    // A name that is no transform is said so, in one line, with the code that says it.
    let address = node.addr.to_string();
    let ca = node.ca_file.to_string_lossy().into_owned();
    for verb in [
        &["table", "get", "cuonts", "3"][..],
        &["table", "scan", "cuonts"],
    ] {
        let mut full = vec!["--server", address.as_str(), "--ca", ca.as_str()];
        full.extend_from_slice(verb);
        let (status, stdout, stderr) = run_cli(&full, None);
        assert!(!status.success(), "{verb:?}: {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("no transform named \"cuonts\"")
                && stderr.contains("TransformNotFound"),
            "{stderr}"
        );
    }
}

// Goal: kill -9 at random points while the aggregate runs, then restart: the final counts
// equal the true counts, and no change record is duplicated (each key's counts strictly
// increase in the output).
#[test]
fn kill_9_while_aggregating_neither_loses_nor_repeats_a_count() {
    let mut random = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let mut node = NodeProcess::start();
    let mut total = 0;
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;
        create_topic(&client, "orders", PARTITIONS).await;
        deploy_counts(&raw).await;
    });
    for round in 0..crash_rounds() {
        let count = random.random_range(100..600);
        let pause_ms = random.random_range(0..150);
        runtime().block_on(async {
            let client = connect(&node).await;
            send_orders(&client, total, count).await;
            // The kill lands while the transform works through the orders (or after).
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        });
        total += count;
        println!("round {round}: {count} orders, kill -9 after {pause_ms} ms");
        node.kill9();
        node.restart();
    }
    runtime().block_on(async {
        let client = connect(&node).await;
        let records = wait_for_counts(&client, total).await;
        println!("{total} orders, {records} change records");
    });
}

/// Sends `(topic, key, value)` records (keyed: the partition murmur2 gives the key) and
/// waits for every acknowledgement, in order.
async fn send_keyed(client: &ledge_client::Client, records: &[(&str, String, Option<String>)]) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for (topic, key, value) in records {
        let record = match value {
            Some(value) => ProducerRecord::new(*topic, value.clone()),
            None => ProducerRecord {
                topic: (*topic).to_string(),
                ..ProducerRecord::default()
            },
        }
        .key(key.clone());
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

/// Reads `count` records of `topic` from the start (a bound on polls, not a timing claim),
/// as JSON values.
async fn read_json(
    client: &ledge_client::Client,
    topic: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(
        (0..PARTITIONS)
            .map(|partition| TopicPartition::new(topic, partition))
            .collect(),
    );
    let mut values = Vec::new();
    for _ in 0..600 {
        for record in consumer
            .poll(Duration::from_millis(200), 10_000)
            .await
            .expect("poll")
        {
            let value = record.value.expect("a value");
            values.push(serde_json::from_slice(&value).expect("JSON"));
        }
        if values.len() >= count {
            return values;
        }
    }
    panic!(
        "only {} of {count} records arrived: {values:?}",
        values.len()
    );
}

// Goal: `ledge transform deploy --kind join --table customers` of filters' enrich_orders
// (real processes) enriches each order with the latest record of its customer: orders
// produced after a customer update carry the update, orders of a deleted or unknown
// customer pass un-enriched, each order once; describe shows the table input.
#[test]
fn the_enrich_orders_join_enriches_orders_with_the_latest_customer() {
    let node = NodeProcess::start();
    filter_module("enrich_orders");
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release/enrich_orders.wasm");
    let module = module.to_string_lossy().into_owned();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", PARTITIONS).await;
        create_topic(&client, "customers", PARTITIONS).await;
    });
    ledge(
        &node,
        &[
            "transform",
            "deploy",
            "enrich",
            "--module",
            &module,
            "--kind",
            "join",
            "--input",
            "orders",
            "--table",
            "customers",
            "--output",
            "orders.enriched",
        ],
    );
    let customer = |id: u64, tier: &str| {
        (
            "customers",
            id.to_string(),
            Some(format!(r#"{{"name":"c{id}","tier":"{tier}"}}"#)),
        )
    };
    let order = |n: u64| {
        let customer_id = n % CUSTOMERS;
        (
            "orders",
            customer_id.to_string(),
            Some(format!(
                r#"{{"order_id": {n}, "customer_id": {customer_id}, "amount": 10}}"#
            )),
        )
    };
    runtime().block_on(async {
        let client = connect(&node).await;
        // Customers 0..10 (customer 10 never exists), then the first orders.
        send_keyed(
            &client,
            &(0..10).map(|id| customer(id, "basic")).collect::<Vec<_>>(),
        )
        .await;
        send_keyed(&client, &(0..100).map(order).collect::<Vec<_>>()).await;
        read_json(&client, "orders.enriched", 100).await;
        // Customer 3 upgraded, customer 4 deleted; then more orders.
        send_keyed(
            &client,
            &[customer(3, "vip"), ("customers", "4".to_string(), None)],
        )
        .await;
        send_keyed(&client, &(100..200).map(order).collect::<Vec<_>>()).await;
        let values = read_json(&client, "orders.enriched", 200).await;
        let mut by_order = BTreeMap::new();
        for value in &values {
            let id = value["order_id"].as_u64().expect("an order id");
            assert!(
                by_order
                    .insert(id, value.get("customer").cloned())
                    .is_none(),
                "order {id} output twice"
            );
        }
        assert_eq!(by_order.len(), 200);
        for (id, customer) in &by_order {
            let customer_id = id % CUSTOMERS;
            let tier = customer
                .as_ref()
                .map(|c| c["tier"].as_str().expect("a tier"));
            let expected = match (customer_id, *id >= 100) {
                (10, _) | (4, true) => None,
                (3, true) => Some("vip"),
                _ => Some("basic"),
            };
            assert_eq!(tier, expected, "order {id}: {customer:?}");
        }
    });
    let described: serde_json::Value = serde_json::from_str(&ledge(
        &node,
        &["transform", "describe", "enrich", "--format", "json"],
    ))
    .expect("JSON");
    assert_eq!(described["kind"], "join");
    assert_eq!(described["join"]["input"], "customers");
    assert_eq!(described["join"]["table"], true);
    assert_eq!(described["records_out"], 200);
}

/// One order of the per-minute test: customer, amount, minute after the base and second.
struct TimedOrder {
    customer: u64,
    amount: u64,
    at_ms: i64,
}

// Goal: `ledge transform deploy --window tumbling --window-size 1m --grace 10s` of filters'
// order_totals_per_minute gives, for orders with chosen timestamps (out of order, one late
// beyond the grace), the exact total per customer and minute: in the output topic's change
// records (each with its window's `ledge.window.start`/`end` headers), in
// `ledge table scan --format json` (window_start, window_end), and `describe` counts the
// late record.
#[test]
fn order_totals_per_minute_sums_each_customers_minute() {
    let node = NodeProcess::start();
    filter_module("order_totals_per_minute");
    let module = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release/order_totals_per_minute.wasm");
    let module = module.to_string_lossy().into_owned();
    runtime().block_on(async {
        let client = connect(&node).await;
        create_topic(&client, "orders", 1).await;
    });
    let deployed = ledge(
        &node,
        &[
            "transform",
            "deploy",
            "per-minute",
            "--module",
            &module,
            "--kind",
            "aggregate",
            "--input",
            "orders",
            "--output",
            "totals",
            "--window",
            "tumbling",
            "--window-size",
            "1m",
            "--grace",
            "10s",
            "--retention",
            "1h",
        ],
    );
    assert!(deployed.contains("per-minute"), "{deployed}");
    // Ten minutes ago, on a minute boundary: every window is within the node's timestamp
    // limits and none has expired.
    #[expect(
        clippy::disallowed_methods,
        reason = "the orders are stamped against the real node's wall clock"
    )]
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms fit");
    let base = (now_ms / 60_000 - 10) * 60_000;
    let minute = 60_000;
    let at = |customer, amount, at_ms| TimedOrder {
        customer,
        amount,
        at_ms,
    };
    let orders = [
        at(1, 10, 5_000),
        at(2, 7, 20_000),
        at(1, 5, minute + 1_000),
        // Out of order, within the grace: still counts for the first minute.
        at(1, 3, 59_000),
        at(2, 4, minute + 30_000),
        at(1, 20, 2 * minute + 30_000),
        // The watermark is now 2m20s: the first minute closed, so this one is late.
        at(2, 100, 10_000),
        at(2, 1, 2 * minute + 1_000),
    ];
    let expected: BTreeMap<(String, i64), u64> = [
        (("1".to_string(), 0), 13),
        (("2".to_string(), 0), 7),
        (("1".to_string(), minute), 5),
        (("2".to_string(), minute), 4),
        (("1".to_string(), 2 * minute), 20),
        (("2".to_string(), 2 * minute), 1),
    ]
    .into_iter()
    .map(|((customer, start), total)| ((customer, base + start), total))
    .collect();
    runtime().block_on(async {
        let client = connect(&node).await;
        let producer = Producer::new(&client, ProducerConfig::default())
            .await
            .expect("producer");
        // One at a time: the order the node sees is the order above.
        for order in &orders {
            let value = format!(
                r#"{{"customer_id": {}, "amount": {}}}"#,
                order.customer, order.amount
            );
            let record = ProducerRecord::new("orders", value).timestamp(base + order.at_ms);
            producer
                .send(record)
                .await
                .expect("send")
                .await
                .expect("delivered");
        }
        producer.close().await;

        // The output: each window's latest change record is its total.
        let mut config = ConsumerConfig::default();
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut consumer = Consumer::new(&client, config);
        consumer.assign(vec![TopicPartition::new("totals", 0)]);
        let mut latest: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for _ in 0..300 {
            for record in consumer
                .poll(Duration::from_millis(200), 10_000)
                .await
                .expect("poll")
            {
                let header = |name: &str| -> i64 {
                    let header = record
                        .headers
                        .iter()
                        .find(|header| header.key == name)
                        .unwrap_or_else(|| panic!("no {name} header"));
                    std::str::from_utf8(header.value.as_deref().expect("a value"))
                        .expect("UTF-8")
                        .parse()
                        .expect("ms")
                };
                let start = header("ledge.window.start");
                assert_eq!(header("ledge.window.end"), start + minute);
                let key =
                    String::from_utf8(record.key.clone().expect("a key").to_vec()).expect("UTF-8");
                let total: f64 = std::str::from_utf8(&record.value.clone().expect("a value"))
                    .expect("UTF-8")
                    .parse()
                    .expect("a total");
                latest.insert((key, start), total as u64);
            }
            if latest == expected {
                break;
            }
        }
        assert_eq!(latest, expected);
    });
    let scanned: BTreeMap<(String, i64), u64> =
        ledge(&node, &["table", "scan", "per-minute", "--format", "json"])
            .lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                let start = entry["window_start"].as_i64().expect("window_start");
                assert_eq!(entry["window_end"].as_i64(), Some(start + minute));
                let total: f64 = entry["value"]
                    .as_str()
                    .expect("a value")
                    .parse()
                    .expect("a total");
                (
                    (entry["key"].as_str().expect("a key").to_string(), start),
                    total as u64,
                )
            })
            .collect();
    assert_eq!(scanned, expected);
    let described: serde_json::Value = serde_json::from_str(&ledge(
        &node,
        &["transform", "describe", "per-minute", "--format", "json"],
    ))
    .expect("JSON");
    assert_eq!(described["records_late"], 1, "{described}");
    assert_eq!(described["window"]["kind"], "tumbling", "{described}");
    assert_eq!(described["window"]["size_ms"], minute, "{described}");
}

/// `ledge table scan NAME --format json` as (key, value) lines; waits (a bound on tries, not
/// a timing claim) until `done` holds for them.
fn scan_until(
    node: &NodeProcess,
    name: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    for _ in 0..300 {
        entries = ledge(node, &["table", "scan", name, "--format", "json"])
            .lines()
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).expect("JSON line");
                (
                    entry["key"].as_str().expect("a key").to_string(),
                    entry["value"].as_str().expect("a value").to_string(),
                )
            })
            .collect();
        if done(&entries) {
            return entries;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("table {name} never got there: {entries:?}");
}

// Goal (issue 17): `configs/stream-app.toml`, as shipped, runs the tutorial's whole app in one
// node: the high-value filter, the count per customer, the spend per customer and minute, and
// the enrichment join, each checked against what was produced. Method: the node started on
// the file itself (its modules resolve beside it), customers then orders produced keyed by
// the customer id, as the tutorial's producers do.
#[test]
fn the_stream_app_config_runs_the_tutorials_whole_app() {
    for module in [
        "high_value_orders",
        "order_counts",
        "order_totals_per_minute",
        "enrich_orders",
        "vip_partitioner",
        "pii_redactor",
    ] {
        filter_module(module);
    }
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/stream-app.toml");
    let node = NodeProcess::start_with(NodeOptions {
        args: vec!["--config".into(), config.to_string_lossy().into_owned()],
        // Six modules compiled at start by a debug build on a busy CI machine.
        ready_timeout: Some(Duration::from_secs(300)),
        ..NodeOptions::default()
    });
    const ORDERS: u64 = 30;
    let customer_of = |n: u64| n % 3 + 1;
    let amount_of = |n: u64| if n.is_multiple_of(5) { 1500 } else { 100 + n };
    runtime().block_on(async {
        let client = connect(&node).await;
        let customers: Vec<(&str, String, Option<String>)> = (1..=3)
            .map(|id| {
                (
                    "customers",
                    id.to_string(),
                    Some(format!(r#"{{"name":"c{id}"}}"#)),
                )
            })
            .collect();
        send_keyed(&client, &customers).await;
        let orders: Vec<(&str, String, Option<String>)> = (0..ORDERS)
            .map(|n| {
                (
                    "orders",
                    customer_of(n).to_string(),
                    Some(format!(
                        r#"{{"order_id":{n},"customer_id":{},"amount":{}}}"#,
                        customer_of(n),
                        amount_of(n)
                    )),
                )
            })
            .collect();
        send_keyed(&client, &orders).await;

        let high_value = (0..ORDERS).filter(|n| amount_of(*n) > 1000).count();
        let kept = read_json(&client, "orders.high-value", high_value).await;
        assert_eq!(kept.len(), high_value, "{kept:?}");
        assert!(kept.iter().all(|order| order["amount"] == 1500), "{kept:?}");

        let enriched = read_json(&client, "orders.enriched", ORDERS as usize).await;
        assert_eq!(enriched.len(), ORDERS as usize);
        for order in &enriched {
            let customer = order["customer_id"].as_u64().expect("customer_id");
            assert_eq!(order["customer"]["name"], format!("c{customer}"), "{order}");
        }
    });

    let mut true_counts = BTreeMap::new();
    let mut true_totals = BTreeMap::new();
    for n in 0..ORDERS {
        *true_counts
            .entry(customer_of(n).to_string())
            .or_insert(0u64) += 1;
        *true_totals
            .entry(customer_of(n).to_string())
            .or_insert(0u64) += amount_of(n);
    }
    let counts = |entries: &[(String, String)]| -> BTreeMap<String, u64> {
        entries
            .iter()
            .map(|(key, value)| (key.clone(), value.parse().expect("a count")))
            .collect()
    };
    scan_until(&node, "counts", |entries| counts(entries) == true_counts);
    // Per minute: the windows of a customer add up to its spend (the orders may straddle a
    // minute boundary).
    let totals = |entries: &[(String, String)]| -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for (key, value) in entries {
            let value: f64 = value.parse().expect("a total");
            *totals.entry(key.clone()).or_insert(0u64) += value as u64;
        }
        totals
    };
    scan_until(&node, "per-minute", |entries| {
        totals(entries) == true_totals
    });
}
