//! Compaction throughput and memory: fills a partition with keyed records (many versions
//! per key), seals it into segments, then times `PartitionLog::compact` on the real disk.
//!
//! `cargo run --release -p ledge-benches --bin compaction-bench -- [MiB] [keys]`
//! (defaults: 256 MiB of 1 KiB records over 20,000 keys). Prints input MB/s, the key map
//! size and the process's peak resident memory before and after compaction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::storage::compaction::CompactionPolicy;
use ledge_node::storage::{
    AppendDurability, BackendChoice, Disk, LogConfig, PartitionLog, SystemDisk,
};
use ledge_protocol::{EncodeOptions, Record, encode_batch};

fn peak_resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|kib| kib.parse().ok())
                })
        })
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let mut arguments = std::env::args().skip(1);
    let mebibytes: u64 = arguments.next().map_or(Ok(256), |text| text.parse())?;
    let keys: u64 = arguments.next().map_or(Ok(20_000), |text| text.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let directory = ledge_benches::bench_dir("compaction");
        let disk = SystemDisk::detect(BackendChoice::Auto)?;
        let config = LogConfig { segment_bytes: 16 * 1024 * 1024, ..LogConfig::default() };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let log = PartitionLog::open(disk.clone(), &directory.path().join("state-0"), config, Arc::clone(&clock)).await?;
        let value = Bytes::from(vec![b'x'; 1000]);
        let total_records = mebibytes * 1024;
        let mut written = 0u64;
        while written < total_records {
            let records: Vec<Record> = (0..1000)
                .map(|number| {
                    // A stride coprime to the key count visits every key in turn.
                    let key = ((written + number) * 7919) % keys.max(1);
                    Record { timestamp: clock.wall_time_ms(), key: Some(Bytes::from(format!("key-{key:08}"))), value: Some(value.clone()), headers: Vec::new() }
                })
                .collect();
            log.append(encode_batch(&records, &EncodeOptions::default())?, AppendDurability::Written).await?;
            written += 1000;
        }
        // Roll so everything written is in sealed segments.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (dirty, sealed) = log.compaction_stats();
        let before_kib = peak_resident_kib();
        let policy = CompactionPolicy { delete_retention: Duration::from_secs(86_400), min_compaction_lag: Duration::ZERO, key_map_bytes_max: 64 * 1024 * 1024 };
        let started = clock.now();
        let report = log.compact(clock.wall_time_ms(), &policy).await?;
        let seconds = clock.now().duration_since(started).as_secs_f64();
        let after_kib = peak_resident_kib();
        println!("backend: {}", disk.backend_name());
        println!("input: {written} records, {:.1} MB in sealed segments ({:.1} MB dirty), {keys} keys", sealed as f64 / 1e6, dirty as f64 / 1e6);
        println!(
            "compacted {} segments in {seconds:.2} s: {:.1} MB/s of input, {} records removed, {:.1} MB -> {:.1} MB, {} pass(es)",
            report.segments_rewritten,
            report.bytes_before as f64 / 1e6 / seconds,
            report.records_removed,
            report.bytes_before as f64 / 1e6,
            report.bytes_after as f64 / 1e6,
            report.passes
        );
        println!("key map: about {:.1} MB for {keys} keys (key bytes + 48 each)", (keys * (12 + 48)) as f64 / 1e6);
        println!("peak resident memory: {:.1} MB before compaction, {:.1} MB after", before_kib as f64 / 1024.0, after_kib as f64 / 1024.0);
        log.close().await?;
        anyhow::Ok(())
    })
}
