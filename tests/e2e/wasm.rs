//! WASM plug-ins through a running node: every example of `filters/` in the place it is
//! made for (topic transform, fetch plug-in, produce filter, node partitioner), hostile
//! modules contained while another topic flows, and a transform that survives `kill -9`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use ledge_client::{
    Consumer, ConsumerConfig, ConsumerRecord, FetchPlugin, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, TopicPartition,
};
use ledge_e2e::{NodeProcess, RawClient, connect, create_topic, filter_module, runtime};
use ledge_protocol::wire::*;
use ledge_protocol::{EncodeOptions, Record, encode_batch};

async fn call(raw: &RawClient, request: Request) -> Response {
    match raw.request(&request).await {
        (_, Some(response)) => response,
        (header, None) => panic!(
            "{:?} refused: {} {}",
            request.api_key(),
            header.error,
            header.message
        ),
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<PluginParam> {
    pairs
        .iter()
        .map(|(key, value)| PluginParam {
            key: key.to_string(),
            value: value.to_string(),
        })
        .collect()
}

async fn upload(raw: &RawClient, name: &str, kind: &str, module: Bytes, defaults: &[(&str, &str)]) {
    let Response::UploadModule(response) = call(
        raw,
        Request::UploadModule(UploadModuleRequest {
            name: name.into(),
            kind: kind.parse().expect("a known plug-in kind"),
            module,
            params: params(defaults),
        }),
    )
    .await
    else {
        panic!("wrong response")
    };
    assert_eq!(response.error, ErrorCode::None, "{}", response.message);
}

async fn deploy(raw: &RawClient, request: DeployTransformRequest) -> DeployTransformResponse {
    let Response::DeployTransform(response) = call(raw, Request::DeployTransform(request)).await
    else {
        panic!("wrong response")
    };
    response
}

fn transform(name: &str, kind: &str, module: Bytes, input: &str) -> DeployTransformRequest {
    DeployTransformRequest {
        name: name.into(),
        kind: kind.parse().expect("a known plug-in kind"),
        module,
        input: input.into(),
        ..DeployTransformRequest::default()
    }
}

async fn describe(raw: &RawClient, name: &str) -> TransformDescription {
    let Response::DescribeTransforms(response) = call(
        raw,
        Request::DescribeTransforms(DescribeTransformsRequest {
            names: vec![name.into()],
        }),
    )
    .await
    else {
        panic!("wrong response")
    };
    response
        .transforms
        .into_iter()
        .next()
        .expect("one transform")
}

async fn wait_for(
    raw: &RawClient,
    name: &str,
    done: impl Fn(&TransformDescription) -> bool,
) -> TransformDescription {
    let mut last = describe(raw, name).await;
    for _ in 0..600 {
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = describe(raw, name).await;
    }
    panic!("transform {name} never got there: {last:#?}");
}

async fn send_values(client: &ledge_client::Client, topic: &str, values: &[(&str, String)]) {
    let producer = Producer::new(client, ProducerConfig::default())
        .await
        .expect("producer");
    let mut deliveries = Vec::new();
    for (key, value) in values {
        let record = ProducerRecord::new(topic, value.clone()).key(key.to_string());
        deliveries.push(producer.send(record).await.expect("send"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
    producer.close().await;
}

/// Reads every record of `topic` (all `partitions`) until `expected` arrived or 10 s pass.
async fn read_topic(
    client: &ledge_client::Client,
    topic: &str,
    partitions: u32,
    expected: usize,
    plugin: Option<FetchPlugin>,
) -> Result<Vec<ConsumerRecord>, ledge_client::ConsumeError> {
    let mut config = ConsumerConfig::default();
    config.auto_offset_reset = OffsetReset::Earliest;
    config.fetch_plugin = plugin;
    let mut consumer = Consumer::new(client, config);
    consumer.assign(
        (0..partitions)
            .map(|p| TopicPartition::new(topic, p))
            .collect(),
    );
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while records.len() < expected && tokio::time::Instant::now() < deadline {
        records.extend(consumer.poll(Duration::from_millis(200), 10_000).await?);
    }
    Ok(records)
}

fn text(value: &Option<Bytes>) -> String {
    String::from_utf8(value.as_ref().expect("a value").to_vec()).expect("UTF-8")
}

fn header(record: &ConsumerRecord, key: &str) -> String {
    let header = record
        .headers
        .iter()
        .find(|header| header.key == key)
        .unwrap_or_else(|| panic!("no header {key}"));
    text(&header.value)
}

#[test]
fn every_example_module_works_where_it_is_meant_to_run() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;

        // The seed's high-value orders filter as a topic transform, with a dead-letter topic.
        create_topic(&client, "orders", 2).await;
        let mut request = transform(
            "high-value",
            "filter",
            filter_module("high_value_orders"),
            "orders",
        );
        request.params = params(&[("threshold", "1000")]);
        let response = deploy(&raw, request).await;
        assert_eq!(
            (response.error, response.version),
            (ErrorCode::None, 1),
            "{}",
            response.message
        );
        let mut orders: Vec<(&str, String)> = (0..40)
            .map(|n| {
                (
                    "customer",
                    format!(
                        r#"{{"id":{n},"amount":{}}}"#,
                        if n % 2 == 0 { 500 } else { 1500 }
                    ),
                )
            })
            .collect();
        orders.push(("customer", "not json".to_string()));
        send_values(&client, "orders", &orders).await;
        let status = wait_for(&raw, "high-value", |d| d.records_in == 41 && d.lag == 0).await;
        assert_eq!(
            (status.records_out, status.records_dead),
            (20, 1),
            "{status:#?}"
        );
        // Time spent in the plug-in, on the node's clock: real time in a real node (the
        // in-process tests run on paused time, where a plug-in call takes none).
        assert!(status.busy_us > 0, "{status:#?}");
        let high = read_topic(&client, "orders.high-value", 2, 20, None)
            .await
            .expect("read");
        assert_eq!(high.len(), 20);
        assert!(
            high.iter()
                .all(|record| text(&record.value).contains("1500"))
        );
        let dead = read_topic(&client, "high-value.dead-letter", 1, 1, None)
            .await
            .expect("read");
        assert_eq!(dead.len(), 1);
        assert_eq!(text(&dead[0].value), "not json");
        assert_eq!(header(&dead[0], "ledge.source.topic"), "orders");
        assert!(!header(&dead[0], "ledge.error").is_empty());

        // A bad parameter is refused at deploy time, with the module's own message.
        let mut bad = transform(
            "bad-param",
            "filter",
            filter_module("high_value_orders"),
            "orders",
        );
        bad.params = params(&[("threshold", "lots")]);
        let response = deploy(&raw, bad).await;
        assert_eq!(response.error, ErrorCode::InvalidModule);
        assert!(
            response.message.contains("threshold"),
            "{}",
            response.message
        );

        // The same filter and an uppercase map on fetch: the node drops and maps before sending.
        upload(
            &raw,
            "high-value",
            "filter",
            filter_module("high_value_orders"),
            &[("threshold", "1000")],
        )
        .await;
        upload(&raw, "upper", "map", filter_module("uppercase"), &[]).await;
        let plain: Vec<(&str, String)> = vec![("a", "hello".into()), ("b", "edge".into())];
        create_topic(&client, "words", 1).await;
        send_values(&client, "words", &plain).await;
        let upper = read_topic(&client, "words", 1, 2, Some(FetchPlugin::new("upper")))
            .await
            .expect("read");
        let values: Vec<String> = upper.iter().map(|record| text(&record.value)).collect();
        assert_eq!(values, ["HELLO", "EDGE"]);
        assert_eq!(upper[1].offset, 1);
        let filtered = read_topic(
            &client,
            "orders",
            2,
            20,
            Some(FetchPlugin::new("high-value").param("threshold", "100")),
        )
        .await;
        // `not json` fails the filter: the consumer gets the module's error, naming the offset.
        let error = filtered.expect_err("the non-JSON record fails the fetch filter");
        assert!(error.to_string().contains("offset"), "{error}");

        // The PII redactor as the produce filter of a topic: raw data never reaches the disk.
        upload(&raw, "pii", "map", filter_module("pii_redactor"), &[]).await;
        let Response::CreateTopics(created) = call(
            &raw,
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: "signups".into(),
                    partitions: 1,
                    configs: vec![ConfigEntry {
                        name: "produce.filter.module".into(),
                        value: "pii".into(),
                    }],
                }],
                validate_only: false,
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(
            created.topics[0].error,
            ErrorCode::None,
            "{}",
            created.topics[0].message
        );
        send_values(
            &client,
            "signups",
            &[(
                "u1",
                r#"{"email":"ann@example.com","card":"4111 1111 1111 1111","plan":"pro"}"#
                    .to_string(),
            )],
        )
        .await;
        let stored = read_topic(&client, "signups", 1, 1, None)
            .await
            .expect("read");
        let value = text(&stored[0].value);
        assert!(
            !value.contains("ann@example.com") && !value.contains("4111 1111 1111 1111"),
            "{value}"
        );
        assert!(value.contains("\"plan\":\"pro\""), "{value}");

        // The seed's VIP partitioner on the node: `vip-` keys to partition 0, the rest by hash.
        upload(
            &raw,
            "vip",
            "partitioner",
            filter_module("vip_partitioner"),
            &[],
        )
        .await;
        let Response::CreateTopics(created) = call(
            &raw,
            Request::CreateTopics(CreateTopicsRequest {
                topics: vec![CreatableTopic {
                    replication_factor: None,
                    name: "customers".into(),
                    partitions: 4,
                    configs: vec![ConfigEntry {
                        name: "partitioner.module".into(),
                        value: "vip".into(),
                    }],
                }],
                validate_only: false,
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        assert_eq!(created.topics[0].error, ErrorCode::None);
        let keys = ["vip-ann", "bob", "vip-zoe", "carol", "dave", "erin"];
        let records: Vec<Record> = keys
            .iter()
            .map(|key| Record {
                timestamp: 1,
                key: Some(Bytes::from(key.to_string())),
                value: Some(Bytes::from_static(b"{}")),
                headers: Vec::new(),
            })
            .collect();
        let Response::Produce(produced) = call(
            &raw,
            Request::Produce(ProduceRequest {
                acks: Acks::All,
                timeout_ms: 10_000,
                topics: vec![ProduceTopic {
                    name: "customers".into(),
                    partitions: vec![ProducePartition {
                        current_leader_epoch: None,
                        partition: NODE_PARTITIONED,
                        records: encode_batch(&records, &EncodeOptions::default()).expect("batch"),
                    }],
                }],
            }),
        )
        .await
        else {
            panic!("wrong response")
        };
        let answer = &produced.topics[0].partitions[0];
        assert_eq!(answer.error, ErrorCode::None, "{}", answer.message);
        let routed = answer.routed.clone().expect("routing");
        for (key, partition) in keys.iter().zip(&routed.record_partitions) {
            let expected = if key.starts_with("vip-") {
                0
            } else {
                ledge_client::partitioner::partition_for_key(key.as_bytes(), 4)
            };
            assert_eq!(*partition, expected, "{key}");
        }

        // A JSON array split into one record per element, as a flat_map transform.
        create_topic(&client, "baskets", 1).await;
        let mut split = transform(
            "split",
            "flat_map",
            filter_module("json_array_split"),
            "baskets",
        );
        split.output = "items".into();
        assert_eq!(deploy(&raw, split).await.error, ErrorCode::None);
        send_values(
            &client,
            "baskets",
            &[("b1", r#"[{"sku":"a"}, {"sku":"b"}, 3]"#.to_string())],
        )
        .await;
        let items = read_topic(&client, "items", 1, 3, None)
            .await
            .expect("read");
        let values: Vec<String> = items.iter().map(|record| text(&record.value)).collect();
        assert_eq!(values, [r#"{"sku":"a"}"#, r#"{"sku":"b"}"#, "3"]);
        assert!(
            items
                .iter()
                .all(|record| record.key.as_deref() == Some(&b"b1"[..]))
        );
    });
}

/// Tiny WAT modules that misbehave on purpose (the `wat` text keeps them readable).
fn hostile(body: &str) -> Bytes {
    let text = format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "ledge_abi_version") (result i32) (i32.const 1))
  (func (export "ledge_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "ledge_init") (param i32 i32) (result i64)
    (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
  (func (export "ledge_filter") (param $p i32) (param $l i32) (result i64) {body}))"#
    );
    Bytes::from(ledge_e2e::wat_to_wasm(&text))
}

#[test]
fn hostile_modules_are_contained_while_another_topic_keeps_flowing() {
    let node = NodeProcess::start_with(ledge_e2e::NodeOptions {
        config: Some("[wasm]\nfuel_per_batch = 20000000\nmemory_bytes_max = 8388608\n".into()),
        ..Default::default()
    });
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;
        create_topic(&client, "input", 1).await;
        create_topic(&client, "healthy", 1).await;
        let cases = [
            ("spin", "(loop $forever (br $forever)) (i64.const 0)", "out of fuel"),
            (
                "bomb",
                "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
                "memory limit",
            ),
            ("trap", "unreachable", "unreachable"),
            ("huge", "(i64.const 0x00000400ffffffff)", "more than the limit"),
        ];
        for (name, body, _) in &cases {
            let mut request = transform(name, "filter", hostile(body), "input");
            request.on_error = ledge_protocol::OnError::Skip;
            let response = deploy(&raw, request).await;
            assert_eq!(response.error, ErrorCode::None, "{name}: {}", response.message);
        }
        // Wrong exports and random bytes are refused at upload with the reason.
        let response = deploy(&raw, transform("wrong", "map", hostile("(i64.const 0)"), "input")).await;
        assert_eq!(response.error, ErrorCode::InvalidModule);
        assert!(response.message.contains("no `ledge_map` export"), "{}", response.message);
        let random: Vec<u8> = (0..2048u32).map(|n| (n.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let response = deploy(&raw, transform("random", "filter", Bytes::from(random), "input")).await;
        assert_eq!(response.error, ErrorCode::InvalidModule, "{}", response.message);

        let work: Vec<(&str, String)> = (0..200).map(|n| ("k", format!("r{n}"))).collect();
        send_values(&client, "input", &work).await;
        // Meanwhile a healthy topic is produced and consumed as usual.
        for round in 0..5 {
            let batch: Vec<(&str, String)> = (0..20).map(|n| ("k", format!("h{round}-{n}"))).collect();
            send_values(&client, "healthy", &batch).await;
        }
        let healthy = read_topic(&client, "healthy", 1, 100, None).await.expect("read");
        assert_eq!(healthy.len(), 100);
        for (name, _, reason) in &cases {
            let status = wait_for(&raw, name, |d| d.state == "paused").await;
            assert!(status.last_error.contains("circuit breaker"), "{name}: {}", status.last_error);
            assert!(status.last_error.contains(reason), "{name}: {}", status.last_error);
        }
        assert!(node.log().contains("transform paused"));
        // The node is still healthy after all of it.
        send_values(&client, "healthy", &[("k", "after".to_string())]).await;
        assert_eq!(read_topic(&client, "healthy", 1, 101, None).await.expect("read").len(), 101);
    });
}

/// A filter that keeps every record but traps on any input containing `on!` (a poison
/// record found by its content, so it is still found when the batch is split; three bytes,
/// because a single byte also turns up in timestamps and lengths).
pub(crate) const KEEP_UNLESS_BANG: &str = r#"(module
  (memory (export "memory") 1)
  (func $ensure (param $bytes i32)
    (local $need i32)
    (local.set $need (i32.shr_u (i32.add (local.get $bytes) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (drop (memory.grow (i32.sub (local.get $need) (memory.size)))))))
  (func (export "ledge_abi_version") (result i32) (i32.const 1))
  (func (export "ledge_alloc") (param $len i32) (result i32)
    (call $ensure (i32.add (i32.const 1024) (i32.add (i32.mul (local.get $len) (i32.const 2)) (i32.const 65536))))
    (i32.const 1024))
  (func (export "ledge_init") (param i32 i32) (result i64)
    (i32.store8 (i32.const 0) (i32.const 0)) (i64.const 1))
  (func (export "ledge_filter") (param $p i32) (param $l i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32) (local $k i32)
    (local.set $out (i32.add (local.get $p) (local.get $l)))
    (local.set $k (i32.add (local.get $p) (i32.const 28)))
    (block $clean (loop $scan
      (br_if $clean (i32.ge_u (i32.add (local.get $k) (i32.const 2)) (local.get $out)))
      (if (i32.and
            (i32.eq (i32.load16_u (local.get $k)) (i32.const 0x6e6f))
            (i32.eq (i32.load8_u (i32.add (local.get $k) (i32.const 2))) (i32.const 33)))
        (then unreachable))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br $scan)))
    (local.set $n (i32.load (local.get $p)))
    (i32.store (local.get $out) (local.get $n))
    (memory.fill (i32.add (local.get $out) (i32.const 4)) (i32.const 0) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
            (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4))))))"#;

#[test]
fn a_trap_on_the_500th_record_sends_only_that_record_to_the_dead_letter_topic() {
    let node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;
        create_topic(&client, "stream", 1).await;
        let module = Bytes::from(ledge_e2e::wat_to_wasm(KEEP_UNLESS_BANG));
        let response = deploy(&raw, transform("guard", "filter", module, "stream")).await;
        assert_eq!(response.error, ErrorCode::None, "{}", response.message);
        let values: Vec<(&str, String)> = (0..1000)
            .map(|n| {
                (
                    "k",
                    if n == 499 {
                        "poison!".to_string()
                    } else {
                        format!("ok-{n}")
                    },
                )
            })
            .collect();
        send_values(&client, "stream", &values).await;
        let status = wait_for(&raw, "guard", |d| d.lag == 0 && d.records_in == 1000).await;
        assert_eq!(
            (status.records_out, status.records_dead),
            (999, 1),
            "{status:#?}"
        );
        assert_eq!(status.state, "running");
        let out = read_topic(&client, "stream.guard", 1, 999, None)
            .await
            .expect("read");
        assert_eq!(out.len(), 999);
        let dead = read_topic(&client, "guard.dead-letter", 1, 1, None)
            .await
            .expect("read");
        assert_eq!(dead.len(), 1);
        assert_eq!(text(&dead[0].value), "poison!");
        assert_eq!(header(&dead[0], "ledge.source.offset"), "499");
        assert!(header(&dead[0], "ledge.error").contains("unreachable"));
    });
}

#[test]
fn a_transform_resumes_from_its_stored_position_after_kill_9() {
    let mut node = NodeProcess::start();
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;
        create_topic(&client, "raw", 1).await;
        let mut request = transform("shout", "map", filter_module("uppercase"), "raw");
        request.output = "loud".into();
        assert_eq!(deploy(&raw, request).await.error, ErrorCode::None);
        let first: Vec<(&str, String)> = (0..3000).map(|n| ("k", format!("msg-{n}"))).collect();
        send_values(&client, "raw", &first).await;
        // Kill it while the transform is (probably) in the middle of the input.
        tokio::time::sleep(Duration::from_millis(30)).await;
    });
    node.kill9();
    node.restart();
    runtime().block_on(async {
        let client = connect(&node).await;
        let raw = RawClient::connect(&node).await;
        let second: Vec<(&str, String)> = (3000..4000).map(|n| ("k", format!("msg-{n}"))).collect();
        send_values(&client, "raw", &second).await;
        let status = wait_for(&raw, "shout", |d| {
            d.lag == 0 && d.positions[0].offset == 4000
        })
        .await;
        assert_eq!(status.state, "running");
        let out = read_topic(&client, "loud", 1, 4000, None)
            .await
            .expect("read");
        // At-least-once: every input is there, in order; a batch in flight at the kill may
        // appear twice, never missing.
        let mut seen = BTreeMap::new();
        for record in &out {
            *seen.entry(text(&record.value)).or_insert(0) += 1;
        }
        for n in 0..4000 {
            assert!(seen.contains_key(&format!("MSG-{n}")), "MSG-{n} missing");
        }
        let duplicates = out.len() - 4000;
        assert!(duplicates <= 3000, "{duplicates}");
    });
}
