//! Where the time of a synced append goes, measured by layers in one process.
//!
//! The disks these benchmarks run on swing by 2x within a minute, so comparing benchmarks
//! run one after another says little about a 10% difference. This program interleaves the
//! layers instead: each round runs a block of appends through every variant in turn
//! (rotating the order), and reports each variant against `raw` both overall and as the
//! median of its per-round ratios, which slow drift of the disk cancels out of.
//!
//! Variants, each writing the same ~1 MiB batch at the end of its own file:
//! - `raw`: `pwrite` + `fdatasync` on the calling thread (what fio does);
//! - `raw+cpu`: the same after the log's own CPU work on the batch (`validate_batch` and the
//!   copy into a group-commit buffer), still on one thread;
//! - `disk/<backend>`: `DiskFile::write_at` + `sync_data` through the backend, awaited from
//!   the runtime (adds the backend's thread hand-offs);
//! - `log/<backend>`: `PartitionLog::append(.., Synced)` with the default config (adds the
//!   writer task, rolls every 128 MiB and recovery checkpoints);
//! - `log-noroll/<backend>`: the same with segments too large to roll during the run;
//! - with `--fio`, `fio/psync` and `fio/psync,fallocate=none`: fio itself, run once per block
//!   (`--size` = one block, a new file each time), timed by fio's own bandwidth figure.
//!
//! Log variants also report the appends that rolled a segment, apart from the others.
//!
//! `--gap-ms N` sleeps N ms before every block. The disks here are rate-limited virtual
//! devices that run faster after an idle moment, and fio's start-up (~0.25 s) is such a
//! moment: without a gap, whatever runs right after a fio block is flattered.
//!
//! With `--written`, nothing syncs: raw and disk variants only write, and log variants use
//! `Written` appends with a one-hour flush interval and no rolls.
//!
//! ```text
//! cargo run --release -p ledge-benches --bin append-breakdown -- [--rounds 40] [--ops 32] [--written] [--fio] [--gap-ms N]
//! ```

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ledge_benches::{bench_batch, bench_dir};
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::storage::disk::SystemFile;
use ledge_node::storage::{
    AppendDurability, BackendChoice, Disk, DiskFile, LogConfig, OpenMode, PartitionLog, SystemDisk,
};
use ledge_protocol::validate_batch;
use tokio::runtime::Runtime;

/// Files of the raw and disk variants are replaced (untimed) before they pass this size.
const FILE_BYTES_MAX: u64 = 1 << 30;
/// Log variants delete old segments (untimed) beyond this many.
const SEGMENTS_KEPT: usize = 4;
/// Segment size of the `log-noroll` variants: the largest the log accepts.
const NO_ROLL_SEGMENT_BYTES: u64 = u32::MAX as u64;

fn main() {
    let options = Options::parse();
    let batch = bench_batch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scratch = bench_dir("append-breakdown");
    let (names, mut variants): (Vec<String>, Vec<Variant>) =
        variants(&runtime, scratch.path(), &options)
            .into_iter()
            .unzip();

    // One untimed round first: files created, page cache and allocator warm.
    for variant in &mut variants {
        variant.run(&runtime, &batch, options.ops, options.written);
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for round in 0..options.rounds {
        for step in 0..variants.len() {
            let index = (round + step) % variants.len();
            std::thread::sleep(options.gap);
            let block = variants[index].run(&runtime, &batch, options.ops, options.written);
            samples[index].extend(block.into_iter().map(|(latency, rolled)| Sample {
                round,
                latency,
                rolled,
            }));
        }
    }
    for variant in variants {
        variant.close(&runtime);
    }
    print_report(&options, &batch, &names, &samples);
}

/// One timed append.
#[derive(Clone, Copy)]
struct Sample {
    round: usize,
    latency: Duration,
    /// The append rolled a segment (log variants only).
    rolled: bool,
}

fn variants(runtime: &Runtime, scratch: &Path, options: &Options) -> Vec<(String, Variant)> {
    let uring = || SystemDisk::detect(BackendChoice::Uring).expect("io_uring available");
    let std = || SystemDisk::detect(BackendChoice::Std).expect("std backend");
    let no_roll = LogConfig {
        segment_bytes: NO_ROLL_SEGMENT_BYTES,
        flush_interval: Duration::from_secs(3600),
        ..LogConfig::default()
    };
    let mut variants = vec![
        ("raw".into(), Variant::raw(scratch.join("raw"), false)),
        (
            "raw+cpu".into(),
            Variant::raw(scratch.join("raw-cpu"), true),
        ),
        (
            "disk/io_uring".into(),
            Variant::disk(runtime, uring(), scratch.join("disk-uring")),
        ),
        (
            "disk/std".into(),
            Variant::disk(runtime, std(), scratch.join("disk-std")),
        ),
    ];
    if !options.written {
        // With --written a rolling log would sync at every roll, so only no-roll logs run.
        variants.push((
            "log/io_uring".into(),
            Variant::log(
                runtime,
                uring(),
                scratch.join("log-uring"),
                &LogConfig::default(),
            ),
        ));
        variants.push((
            "log/std".into(),
            Variant::log(
                runtime,
                std(),
                scratch.join("log-std"),
                &LogConfig::default(),
            ),
        ));
    }
    variants.push((
        "log-noroll/io_uring".into(),
        Variant::log(runtime, uring(), scratch.join("log-noroll-uring"), &no_roll),
    ));
    variants.push((
        "log-noroll/std".into(),
        Variant::log(runtime, std(), scratch.join("log-noroll-std"), &no_roll),
    ));
    if options.fio {
        for fallocate in ["native", "none"] {
            let name = match fallocate {
                "native" => "fio/psync".to_string(),
                other => format!("fio/psync,fallocate={other}"),
            };
            let directory = scratch.join(format!("fio-{fallocate}"));
            std::fs::create_dir_all(&directory).expect("create the fio directory");
            variants.push((
                name,
                Variant::Fio {
                    directory,
                    fallocate,
                },
            ));
        }
    }
    variants
}

struct Options {
    rounds: usize,
    ops: usize,
    written: bool,
    fio: bool,
    gap: Duration,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            rounds: 40,
            ops: 32,
            written: false,
            fio: false,
            gap: Duration::ZERO,
        };
        let mut arguments = std::env::args().skip(1);
        while let Some(argument) = arguments.next() {
            let mut number = |name: &str| -> usize {
                arguments
                    .next()
                    .and_then(|value| value.parse().ok())
                    .filter(|value| *value > 0)
                    .unwrap_or_else(|| panic!("{name} takes a positive number"))
            };
            match argument.as_str() {
                "--rounds" => options.rounds = number("--rounds"),
                "--ops" => options.ops = number("--ops"),
                "--written" => options.written = true,
                "--fio" => options.fio = true,
                "--gap-ms" => options.gap = Duration::from_millis(number("--gap-ms") as u64),
                other => panic!(
                    "unknown argument {other:?}: expected --rounds N, --ops N, --written, --fio, --gap-ms N"
                ),
            }
        }
        options
    }
}

enum Variant {
    Raw {
        path: PathBuf,
        file: std::fs::File,
        position: u64,
        cpu: bool,
    },
    Disk {
        disk: SystemDisk,
        path: PathBuf,
        file: SystemFile,
        position: u64,
    },
    Log {
        disk: SystemDisk,
        directory: PathBuf,
        config: LogConfig,
        generation: u32,
        log: PartitionLog<SystemDisk>,
        appended: u64,
    },
    Fio {
        directory: PathBuf,
        fallocate: &'static str,
    },
}

impl Variant {
    fn raw(path: PathBuf, cpu: bool) -> Self {
        let file = create_std(&path);
        Self::Raw {
            path,
            file,
            position: 0,
            cpu,
        }
    }

    fn disk(runtime: &Runtime, disk: SystemDisk, path: PathBuf) -> Self {
        let file = runtime
            .block_on(disk.open(&path, OpenMode::CreateNew))
            .expect("create the disk variant's file");
        Self::Disk {
            disk,
            path,
            file,
            position: 0,
        }
    }

    fn log(runtime: &Runtime, disk: SystemDisk, directory: PathBuf, config: &LogConfig) -> Self {
        let log = open_log(runtime, &disk, &directory.join("0"), config);
        Self::Log {
            disk,
            directory,
            config: config.clone(),
            generation: 0,
            log,
            appended: 0,
        }
    }

    /// Appends `batch` `ops` times; returns each append's latency and whether it rolled a
    /// segment.
    fn run(
        &mut self,
        runtime: &Runtime,
        batch: &Bytes,
        ops: usize,
        written: bool,
    ) -> Vec<(Duration, bool)> {
        let planned = (ops * batch.len()) as u64;
        match self {
            Self::Raw {
                path,
                file,
                position,
                cpu,
            } => {
                if *position + planned > FILE_BYTES_MAX {
                    file.sync_data().expect("sync the raw file");
                    std::fs::remove_file(&*path).expect("remove the raw file");
                    *file = create_std(path);
                    *position = 0;
                }
                (0..ops)
                    .map(|_| {
                        let start = SystemClock.now();
                        if *cpu {
                            validate_batch(batch).expect("valid batch");
                            let mut buffer = BytesMut::with_capacity(batch.len());
                            buffer.extend_from_slice(batch);
                            file.write_all_at(&buffer, *position).expect("raw write");
                        } else {
                            file.write_all_at(batch, *position).expect("raw write");
                        }
                        if !written {
                            file.sync_data().expect("raw fdatasync");
                        }
                        *position += batch.len() as u64;
                        (SystemClock.now().duration_since(start), false)
                    })
                    .collect()
            }
            Self::Disk {
                disk,
                path,
                file,
                position,
            } => runtime.block_on(async {
                if *position + planned > FILE_BYTES_MAX {
                    file.sync_data().await.expect("sync the disk file");
                    disk.remove_file(path).await.expect("remove the disk file");
                    *file = disk
                        .open(path, OpenMode::CreateNew)
                        .await
                        .expect("create the disk file");
                    *position = 0;
                }
                let mut latencies = Vec::with_capacity(ops);
                for _ in 0..ops {
                    let start = SystemClock.now();
                    file.write_at(*position, batch.clone())
                        .await
                        .expect("disk write");
                    if !written {
                        file.sync_data().await.expect("disk fdatasync");
                    }
                    *position += batch.len() as u64;
                    latencies.push((SystemClock.now().duration_since(start), false));
                }
                latencies
            }),
            Self::Log {
                disk,
                directory,
                config,
                generation,
                log,
                appended,
            } => {
                if *appended + planned > FILE_BYTES_MAX && config.segment_bytes > FILE_BYTES_MAX {
                    // A no-roll log would grow without bound: replace it (closing syncs).
                    runtime.block_on(log.close()).expect("close the log");
                    std::fs::remove_dir_all(directory.join(generation.to_string()))
                        .expect("remove the old log");
                    *generation += 1;
                    *log = open_log(
                        runtime,
                        disk,
                        &directory.join(generation.to_string()),
                        config,
                    );
                    *appended = 0;
                }
                let durability = if written {
                    AppendDurability::Written
                } else {
                    AppendDurability::Synced
                };
                let latencies = runtime.block_on(async {
                    let mut latencies = Vec::with_capacity(ops);
                    for _ in 0..ops {
                        let segments = log.segment_count();
                        let start = SystemClock.now();
                        log.append(batch.clone(), durability)
                            .await
                            .expect("log append");
                        let latency = SystemClock.now().duration_since(start);
                        latencies.push((latency, log.segment_count() != segments));
                    }
                    latencies
                });
                *appended += planned;
                if log.segment_count() > SEGMENTS_KEPT {
                    runtime
                        .block_on(log.delete_before(log.high_watermark()))
                        .expect("delete old segments");
                }
                latencies
            }
            Self::Fio {
                directory,
                fallocate,
            } => {
                let block = run_fio(directory, fallocate, ops, written);
                vec![(block / ops as u32, false); ops]
            }
        }
    }

    fn close(self, runtime: &Runtime) {
        if let Self::Log { log, .. } = self {
            runtime.block_on(log.close()).expect("close the log");
        }
    }
}

/// Runs fio for one block of `ops` 1 MiB writes to a new file and returns how long the
/// writes (and syncs) took by fio's own bandwidth figure.
fn run_fio(directory: &Path, fallocate: &str, ops: usize, written: bool) -> Duration {
    let output = Command::new("fio")
        .arg("--name=block")
        .arg(format!("--directory={}", directory.display()))
        .args(["--rw=write", "--bs=1M", "--ioengine=psync", "--unlink=1"])
        .arg(format!("--size={ops}M"))
        .arg(format!("--fdatasync={}", u8::from(!written)))
        .arg(format!("--fallocate={fallocate}"))
        .arg("--output-format=json")
        .output()
        .expect("run fio (is it installed?)");
    assert!(output.status.success(), "fio failed: {output:?}");
    let json = String::from_utf8_lossy(&output.stdout);
    // The job's `"write" : {` section holds `"bw_bytes" : N` (bytes per second); no JSON
    // parser is needed for one number.
    let bytes_per_second: f64 = json
        .split("\"write\" : {")
        .nth(1)
        .and_then(|write| write.split("\"bw_bytes\"").nth(1))
        .and_then(|rest| {
            let digits: String = rest
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .expect("fio reported a write bandwidth");
    Duration::from_secs_f64((ops << 20) as f64 / bytes_per_second)
}

fn create_std(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .expect("create the raw file")
}

fn open_log(
    runtime: &Runtime,
    disk: &SystemDisk,
    directory: &Path,
    config: &LogConfig,
) -> PartitionLog<SystemDisk> {
    runtime
        .block_on(PartitionLog::open(
            disk.clone(),
            directory,
            config.clone(),
            Arc::new(SystemClock),
        ))
        .expect("open the log")
}

fn print_report(options: &Options, batch: &Bytes, names: &[String], samples: &[Vec<Sample>]) {
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let block_totals = |samples: &[Sample]| -> Vec<f64> {
        let mut totals = vec![0.0; options.rounds];
        for sample in samples {
            totals[sample.round] += sample.latency.as_secs_f64();
        }
        totals
    };
    let raw_blocks = block_totals(&samples[0]);
    println!(
        "{} rounds x {} appends of {} bytes per variant (fio: 1 MiB writes), {} ms idle before each block, {}",
        options.rounds,
        options.ops,
        batch.len(),
        options.gap.as_millis(),
        if options.written {
            "no fdatasync"
        } else {
            "fdatasync after each"
        }
    );
    println!();
    println!(
        "| variant | MB/s | mean us | p50 us | p90 us | p99 us | vs raw, total | vs raw, median of rounds |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let raw_rate = rate(&samples[0], batch.len());
    for (name, samples) in names.iter().zip(samples) {
        let mut sorted: Vec<Duration> = samples.iter().map(|sample| sample.latency).collect();
        sorted.sort_unstable();
        let count = sorted.len().max(1);
        let percentile = |p: f64| micros(sorted[((count - 1) as f64 * p) as usize]);
        let mut ratios: Vec<f64> = block_totals(samples)
            .iter()
            .zip(&raw_blocks)
            .map(|(variant, raw)| raw / variant)
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        let median_ratio = ratios[ratios.len() / 2];
        let bytes = if name.starts_with("fio") {
            1 << 20
        } else {
            batch.len()
        };
        let throughput = rate(samples, bytes);
        let per_op = |p: f64| {
            if name.starts_with("fio") {
                "-".to_string()
            } else {
                format!("{:.0}", percentile(p))
            }
        };
        println!(
            "| {name} | {:.0} | {:.0} | {} | {} | {} | {:.2} | {median_ratio:.2} |",
            throughput / 1e6,
            micros(sorted.iter().sum()) / count as f64,
            per_op(0.5),
            per_op(0.9),
            per_op(0.99),
            throughput / raw_rate,
        );
    }
    println!();
    println!("Appends that rolled a segment (log variants):");
    println!();
    println!("| variant | rolls | mean us, rolling appends | mean us, other appends |");
    println!("|---|---|---|---|");
    for (name, samples) in names.iter().zip(samples) {
        let (rolled, other): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().partition(|sample| sample.rolled);
        if rolled.is_empty() {
            continue;
        }
        let mean = |samples: &[&Sample]| {
            samples
                .iter()
                .map(|sample| micros(sample.latency))
                .sum::<f64>()
                / samples.len().max(1) as f64
        };
        println!(
            "| {name} | {} | {:.0} | {:.0} |",
            rolled.len(),
            mean(&rolled),
            mean(&other)
        );
    }
}

/// Bytes per second over all of `samples`, each having written `bytes`.
fn rate(samples: &[Sample], bytes: usize) -> f64 {
    let seconds: f64 = samples
        .iter()
        .map(|sample| sample.latency.as_secs_f64())
        .sum();
    (samples.len() * bytes) as f64 / seconds
}
