//! Can a topic transform keep up with a producer at full speed? In one process on the real
//! disk (no network): producers append JSON orders of 1 KiB to `orders` as fast as the node
//! takes them (acks=all, several appends in flight so group commit works), while the seed's
//! high-value filter runs as a transform `orders -> orders.high-value`. Reports the produce
//! rate, the transform's rate over the same records, how far behind it was when the
//! producers finished, and how long it took to catch up; then the produce rate alone
//! (no transform) as the denominator, and the transform alone over a topic already full
//! (its own ceiling), in the same run.
//!
//! `cargo run --release -p ledge-benches --bin transform-bench -- [records] [partitions]`
//! (defaults 200,000 records, 1 partition). Needs
//! `cargo build --release --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use ledge_benches::wasm_bench;
use ledge_node::broker::transforms::{DeclaredTransform, OnError};
use ledge_node::broker::{Broker, BrokerConfig};
use ledge_node::clock::SystemClock;
use ledge_node::storage::{BackendChoice, SystemDisk};
use ledge_node::wasm::PluginKind;
use ledge_protocol::wire::{
    Acks, CreatableTopic, CreateTopicsRequest, DescribeTransformsRequest, ErrorCode,
    ProducePartition, ProduceRequest, ProduceTopic, Request, Response,
};
use ledge_protocol::{EncodeOptions, encode_batch};

const RECORDS_PER_BATCH: usize = 500;
const IN_FLIGHT: usize = 4;

fn batch(first: usize) -> Bytes {
    let records = wasm_bench::order_records(first..first + RECORDS_PER_BATCH, 1024);
    encode_batch(&records, &EncodeOptions::default()).expect("batch")
}

async fn create(broker: &Broker<SystemDisk>, name: &str, partitions: u32) -> anyhow::Result<()> {
    let request = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            replication_factor: None,
            name: name.into(),
            partitions,
            configs: Vec::new(),
        }],
        validate_only: false,
    };
    match broker.handle(Request::CreateTopics(request)).await {
        Response::CreateTopics(response) if response.topics[0].error == ErrorCode::None => Ok(()),
        other => anyhow::bail!("create {name}: {other:?}"),
    }
}

/// Produces `total` records to `topic` with `IN_FLIGHT` appends at once; returns the time.
async fn produce(
    broker: &Arc<Broker<SystemDisk>>,
    topic: &str,
    partitions: u32,
    total: usize,
    batches: &[Bytes],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..IN_FLIGHT {
        let broker = Arc::clone(broker);
        let topic = topic.to_string();
        let batches = batches.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut sent = lane;
            while sent * RECORDS_PER_BATCH < total {
                let request = ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 60_000,
                    topics: vec![ProduceTopic {
                        name: topic.clone(),
                        partitions: vec![ProducePartition {
                            current_leader_epoch: None,
                            partition: (sent as u32) % partitions,
                            records: batches[sent % batches.len()].clone(),
                        }],
                    }],
                };
                match broker.handle(Request::Produce(request)).await {
                    Response::Produce(response)
                        if response.topics[0].partitions[0].error == ErrorCode::None => {}
                    other => anyhow::bail!("produce: {other:?}"),
                }
                sent += IN_FLIGHT;
            }
            Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

async fn transform_status(broker: &Broker<SystemDisk>, name: &str) -> (u64, u64) {
    let Response::DescribeTransforms(response) = broker
        .handle(Request::DescribeTransforms(DescribeTransformsRequest {
            names: vec![name.into()],
        }))
        .await
    else {
        return (0, u64::MAX);
    };
    let status = &response.transforms[0];
    (status.records_in, status.lag)
}

/// Deploys the high-value filter as transform `name` reading `input`.
async fn deploy_high_value(
    broker: &Broker<SystemDisk>,
    name: &str,
    input: &str,
    module: &[u8],
) -> anyhow::Result<()> {
    broker
        .transforms()
        .deploy(DeclaredTransform {
            name: name.into(),
            kind: PluginKind::Filter,
            module: Bytes::copy_from_slice(module),
            input: input.into(),
            output: String::new(),
            params: BTreeMap::from([("threshold".to_string(), "1000".to_string())]),
            on_error: OnError::DeadLetter,
            dead_letter_topic: String::new(),
            window: None,
        })
        .await
        .map(|_| ())
        .map_err(|error| {
            let code = ErrorCode::from(&error);
            anyhow::anyhow!("deploy {name}: {code}: {error}")
        })
}

/// Waits until transform `name` has read `total` records and has no lag.
async fn wait_caught_up(broker: &Broker<SystemDisk>, name: &str, total: usize) {
    loop {
        let (records_in, lag) = transform_status(broker, name).await;
        if lag == 0 && records_in as usize >= total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let total: usize = arguments.next().map_or(Ok(200_000), |text| text.parse())?;
    let partitions: u32 = arguments.next().map_or(Ok(1), |text| text.parse())?;
    let module_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/target/wasm32-unknown-unknown/release/high_value_orders.wasm");
    let module_bytes = std::fs::read(&module_path).map_err(|error| {
        anyhow::anyhow!(
            "{}: {error}; build filters/ for wasm32 first",
            module_path.display()
        )
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let directory = ledge_benches::bench_dir("transform");
        let disk = SystemDisk::detect(BackendChoice::Auto)?;
        let broker = Broker::open(
            disk,
            directory.path(),
            BrokerConfig::default(),
            Arc::new(SystemClock),
        )
        .await?;
        let broker = Arc::new(broker);
        broker.transforms().start().await;
        let batches: Vec<Bytes> = (0..16).map(|n| batch(n * RECORDS_PER_BATCH)).collect();

        create(&broker, "baseline", partitions).await?;
        let alone = produce(&broker, "baseline", partitions, total, &batches).await?;

        create(&broker, "orders", partitions).await?;
        deploy_high_value(&broker, "high-value", "orders", &module_bytes).await?;
        let started = Instant::now();
        let produced = produce(&broker, "orders", partitions, total, &batches).await?;
        let (done_at_end, lag_at_end) = transform_status(&broker, "high-value").await;
        wait_caught_up(&broker, "high-value", total).await;
        let caught_up = started.elapsed();
        // The transform alone over a full topic: its own ceiling on this machine.
        deploy_high_value(&broker, "catch-up", "baseline", &module_bytes).await?;
        let catch_up_started = Instant::now();
        wait_caught_up(&broker, "catch-up", total).await;
        let catch_up = catch_up_started.elapsed();
        let rate = |records: usize, time: Duration| records as f64 / time.as_secs_f64();
        let produce_alone = rate(total, alone);
        let produce_with = rate(total, produced);
        let transform = rate(total, caught_up);
        println!(
            "records {total} of 1 KiB, {partitions} partition(s), batches of {RECORDS_PER_BATCH}, {IN_FLIGHT} appends in flight, acks=all"
        );
        println!("produce alone            {produce_alone:>12.0} records/s");
        println!("produce with transform   {produce_with:>12.0} records/s");
        println!(
            "transform (input->output){transform:>12.0} records/s  = {:.2} x produce alone",
            transform / produce_alone
        );
        println!(
            "when producers finished: transform had done {done_at_end} records, lag {lag_at_end}; caught up {:.0} ms later",
            (caught_up.saturating_sub(produced)).as_secs_f64() * 1000.0
        );
        let alone = rate(total, catch_up);
        println!(
            "transform alone (a full topic) {alone:>7.0} records/s  = {:.2} x produce alone",
            alone / produce_alone
        );
        broker.close().await;
        Ok(())
    })
}
