//! Storage engine throughput, io_uring against std, with a raw-syscall baseline in the same
//! process (see `benches/RESULTS.md` for numbers and the fio baseline):
//!
//! - `append_synced`: one appender awaiting each ~1 MiB `Synced` append in turn, so the disk
//!   sees exactly "write 1 MiB, fdatasync", like `fio --bs=1M --fdatasync=1`. The
//!   `raw_pwrite_fdatasync` variant makes the same two syscalls with nothing else around
//!   them, as the in-process ceiling.
//! - `append_synced_4_appenders`: four appenders at once, so group commit coalesces them.
//! - `append_written`: `Written` appends with a one-hour flush interval and segments larger
//!   than anything written between resets, so no `fdatasync` happens while timed.
//! - `read`: sequential 1 MiB reads over a 256 MiB log that was just written (page cache hot).
//! - `validate_batch`: the CRC-32C and header checks every append runs on the caller's task;
//!   `group_buffer_copy`: the copy of a batch into a fresh group-commit buffer that the
//!   writer task makes before writing. Both sit on the synced append's critical path.
//!
//! Each benchmark builds its tokio runtime and log once, on first use, and reuses them across
//! criterion's iterations; housekeeping (deleting old segments, replacing a large log) runs
//! outside the timed section.
//!
//! Criterion runs these one after another, so a disk whose speed drifts (as virtual disks do)
//! skews ratios between them; `src/bin/append-breakdown.rs` interleaves the same layers to
//! compare them within seconds.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ledge_benches::{bench_batch, bench_dir};
use ledge_node::clock::{Clock, SystemClock};
use ledge_node::storage::{
    AppendDurability, BackendChoice, LogConfig, PartitionLog, ReadBatches, SystemDisk,
};
use ledge_protocol::{BatchIter, validate_batch};
use tokio::runtime::Runtime;

criterion_group! {
    name = storage;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = append_synced, append_synced_concurrent, append_written, read, validate
}
criterion_main!(storage);

/// Both real backends, named as in the benchmark ids.
const BACKENDS: [(&str, BackendChoice); 2] = [
    ("io_uring", BackendChoice::Uring),
    ("std", BackendChoice::Std),
];

/// Appenders in `append_synced_4_appenders`.
const CONCURRENT_APPENDERS: u64 = 4;

/// Old segments are deleted (untimed) once a synced-append log has more than this many.
const SEGMENTS_KEPT: usize = 4;

/// `append_written` replaces its log (untimed; closing it syncs) before it would grow past
/// this, so dirty pages stay well under the kernel's writeback thresholds.
const WRITTEN_LOG_BYTES_MAX: u64 = 1 << 30;

/// Size of the log `read` scans.
const READ_LOG_BYTES: u64 = 256 << 20;

/// The baseline file is replaced (untimed) once it reaches this size, like fio's `--size=1G`.
const RAW_FILE_BYTES_MAX: u64 = 1 << 30;

fn append_synced(criterion: &mut Criterion) {
    let batch = bench_batch();
    let mut group = throughput_group(criterion, "append_synced", &batch);
    for (name, backend) in BACKENDS {
        let mut bench = None;
        group.bench_function(name, |bencher| {
            let bench = bench.get_or_insert_with(|| {
                LogBench::open(backend, "append-synced", LogConfig::default())
            });
            bencher
                .iter_custom(|iters| bench.append_serial(&batch, iters, AppendDurability::Synced));
        });
        if let Some(bench) = bench {
            bench.close();
        }
    }
    let mut raw = None;
    group.bench_function("raw_pwrite_fdatasync", |bencher| {
        let raw = raw.get_or_insert_with(|| RawFile::new("raw-synced"));
        bencher.iter_custom(|iters| raw.write(&batch, iters, true));
    });
    group.finish();
}

fn append_synced_concurrent(criterion: &mut Criterion) {
    let batch = bench_batch();
    let mut group = throughput_group(criterion, "append_synced_4_appenders", &batch);
    for (name, backend) in BACKENDS {
        let mut bench = None;
        group.bench_function(name, |bencher| {
            let bench = bench.get_or_insert_with(|| {
                LogBench::open(backend, "append-concurrent", LogConfig::default())
            });
            bencher.iter_custom(|iters| bench.append_concurrent(&batch, iters));
        });
        if let Some(bench) = bench {
            bench.close();
        }
    }
    group.finish();
}

fn append_written(criterion: &mut Criterion) {
    let batch = bench_batch();
    let mut group = throughput_group(criterion, "append_written", &batch);
    group.measurement_time(Duration::from_secs(3));
    let config = LogConfig {
        // Larger than anything written before the log is replaced: a roll would sync.
        segment_bytes: 2 * WRITTEN_LOG_BYTES_MAX,
        flush_interval: Duration::from_secs(3600),
        ..LogConfig::default()
    };
    for (name, backend) in BACKENDS {
        let mut bench = None;
        group.bench_function(name, |bencher| {
            let bench = bench
                .get_or_insert_with(|| LogBench::open(backend, "append-written", config.clone()));
            bencher.iter_custom(|iters| {
                bench.replace_if_over(WRITTEN_LOG_BYTES_MAX, iters * batch.len() as u64);
                bench.append_serial(&batch, iters, AppendDurability::Written)
            });
        });
        if let Some(bench) = bench {
            bench.close();
        }
    }
    let mut raw = None;
    group.bench_function("raw_pwrite", |bencher| {
        let raw = raw.get_or_insert_with(|| RawFile::new("raw-written"));
        bencher.iter_custom(|iters| raw.write(&batch, iters, false));
    });
    group.finish();
}

fn read(criterion: &mut Criterion) {
    let batch = bench_batch();
    let mut group = throughput_group(criterion, "read", &batch);
    group.measurement_time(Duration::from_secs(3));
    for (name, backend) in BACKENDS {
        let mut bench = None;
        group.bench_function(name, |bencher| {
            let bench = bench.get_or_insert_with(|| {
                let bench = LogBench::open(backend, "read", LogConfig::default());
                bench.fill(&batch, READ_LOG_BYTES);
                bench
            });
            bencher.iter_custom(|iters| bench.read_serial(batch.len(), iters));
        });
        if let Some(bench) = bench {
            bench.close();
        }
    }
    group.finish();
}

fn validate(criterion: &mut Criterion) {
    let batch = bench_batch();
    let mut group = criterion.benchmark_group("validate_batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("1MiB", |bencher| {
        bencher.iter(|| validate_batch(black_box(&batch)).expect("the bench batch is valid"));
    });
    group.finish();

    // What the writer does with each batch of a group before the write: a fresh buffer of
    // the group's size, the batch copied in (then stamped in place, which is negligible).
    let mut group = criterion.benchmark_group("group_buffer_copy");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("1MiB", |bencher| {
        bencher.iter(|| {
            let mut buffer = BytesMut::with_capacity(batch.len());
            buffer.extend_from_slice(black_box(&batch));
            buffer.freeze()
        });
    });
    group.finish();
}

/// A group measuring bytes per second of `batch`-sized iterations, sampled flat: every
/// iteration takes milliseconds, so criterion's linear ramp would run for minutes.
fn throughput_group<'a>(
    criterion: &'a mut Criterion,
    name: &str,
    batch: &Bytes,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = criterion.benchmark_group(name);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    group
}

/// A partition log in a scratch directory, with the runtime that drives it.
struct LogBench {
    runtime: Runtime,
    backend: BackendChoice,
    config: LogConfig,
    scratch: tempfile::TempDir,
    /// Incremented each time the log is replaced, naming its directory.
    generation: u32,
    log: PartitionLog<SystemDisk>,
    /// Bytes appended to the current log.
    appended_bytes: u64,
    /// Where `read_serial` continues.
    read_offset: i64,
}

impl LogBench {
    fn open(backend: BackendChoice, prefix: &str, config: LogConfig) -> Self {
        // Multi-threaded like the node: the writer task and the appenders may run in parallel.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let scratch = bench_dir(prefix);
        let log = open_log(&runtime, backend, &scratch.path().join("p0"), &config);
        Self {
            runtime,
            backend,
            config,
            scratch,
            generation: 0,
            log,
            appended_bytes: 0,
            read_offset: 0,
        }
    }

    /// Appends `batch` `iters` times, each awaited before the next; returns the time taken.
    fn append_serial(
        &mut self,
        batch: &Bytes,
        iters: u64,
        durability: AppendDurability,
    ) -> Duration {
        let log = &self.log;
        let elapsed = self.runtime.block_on(async {
            let start = SystemClock.now();
            for _ in 0..iters {
                log.append(batch.clone(), durability)
                    .await
                    .expect("benchmark append");
            }
            SystemClock.now().duration_since(start)
        });
        self.appended_bytes += iters * batch.len() as u64;
        self.trim();
        elapsed
    }

    /// Appends `batch` `iters` times in all, spread over [`CONCURRENT_APPENDERS`] tasks that
    /// each await their appends in turn; returns the time until the last one is synced.
    fn append_concurrent(&mut self, batch: &Bytes, iters: u64) -> Duration {
        let elapsed = self.runtime.block_on(async {
            let start = SystemClock.now();
            let tasks: Vec<_> = (0..CONCURRENT_APPENDERS)
                .map(|appender| {
                    let share = iters / CONCURRENT_APPENDERS
                        + u64::from(appender < iters % CONCURRENT_APPENDERS);
                    let log = self.log.clone();
                    let batch = batch.clone();
                    tokio::spawn(async move {
                        for _ in 0..share {
                            log.append(batch.clone(), AppendDurability::Synced)
                                .await
                                .expect("benchmark append");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("appender task");
            }
            SystemClock.now().duration_since(start)
        });
        self.appended_bytes += iters * batch.len() as u64;
        self.trim();
        elapsed
    }

    /// Reads the log front to back, one `max_bytes` = 1 MiB read per iteration, wrapping
    /// around at the end; each read returns exactly one `batch_bytes` batch.
    fn read_serial(&mut self, batch_bytes: usize, iters: u64) -> Duration {
        let log = &self.log;
        let mut offset = self.read_offset;
        let elapsed = self.runtime.block_on(async {
            let start = SystemClock.now();
            for _ in 0..iters {
                let mut read = read_1mib(log, offset).await;
                if read.bytes.is_empty() {
                    offset = read.log_start_offset;
                    read = read_1mib(log, offset).await;
                }
                assert_eq!(read.bytes.len(), batch_bytes, "one whole batch per read");
                offset = next_offset(&read.bytes);
            }
            SystemClock.now().duration_since(start)
        });
        self.read_offset = offset;
        elapsed
    }

    /// Fills the log with about `bytes` of `batch` (written, then one synced append so that
    /// everything is visible to readers).
    fn fill(&self, batch: &Bytes, bytes: u64) {
        let count = bytes.div_ceil(batch.len() as u64);
        self.runtime.block_on(async {
            for index in 0..count {
                let durability = if index + 1 == count {
                    AppendDurability::Synced
                } else {
                    AppendDurability::Written
                };
                self.log
                    .append(batch.clone(), durability)
                    .await
                    .expect("fill append");
            }
        });
    }

    /// Untimed: deletes sealed segments beyond [`SEGMENTS_KEPT`], bounding disk use.
    fn trim(&self) {
        if self.log.segment_count() > SEGMENTS_KEPT {
            self.runtime
                .block_on(self.log.delete_before(self.log.high_watermark()))
                .expect("delete old segments");
        }
    }

    /// Untimed: if appending `planned` more bytes would take the log past `limit`, closes it
    /// (which syncs), deletes it and starts an empty one.
    fn replace_if_over(&mut self, limit: u64, planned: u64) {
        if self.appended_bytes == 0 || self.appended_bytes + planned <= limit {
            return;
        }
        let old = self.log.directory().to_path_buf();
        self.runtime
            .block_on(self.log.close())
            .expect("close the log");
        std::fs::remove_dir_all(&old).expect("remove the old log");
        self.generation += 1;
        let directory = self.scratch.path().join(format!("p{}", self.generation));
        self.log = open_log(&self.runtime, self.backend, &directory, &self.config);
        self.appended_bytes = 0;
    }

    /// Closes the log and removes its directory (when `scratch` drops).
    fn close(self) {
        self.runtime
            .block_on(self.log.close())
            .expect("close the log");
    }
}

fn open_log(
    runtime: &Runtime,
    backend: BackendChoice,
    directory: &Path,
    config: &LogConfig,
) -> PartitionLog<SystemDisk> {
    runtime.block_on(async {
        let disk = SystemDisk::detect(backend).expect("the disk backend is available");
        PartitionLog::open(disk, directory, config.clone(), Arc::new(SystemClock))
            .await
            .expect("open the benchmark log")
    })
}

async fn read_1mib(log: &PartitionLog<SystemDisk>, offset: i64) -> ReadBatches {
    log.read(offset, 1 << 20).await.expect("benchmark read")
}

/// The offset after the last batch in `bytes`.
fn next_offset(bytes: &[u8]) -> i64 {
    BatchIter::new(bytes)
        .map(|batch| batch.expect("whole batches").0.last_offset() + 1)
        .last()
        .expect("at least one batch")
}

/// The baseline: `pwrite` of the same bytes at the end of a plain file, optionally followed
/// by `fdatasync`, with no log around it.
struct RawFile {
    /// Holds the scratch directory until the benchmark ends.
    _directory: tempfile::TempDir,
    path: PathBuf,
    file: std::fs::File,
    position: u64,
}

impl RawFile {
    fn new(prefix: &str) -> Self {
        let directory = bench_dir(prefix);
        let path = directory.path().join("raw");
        let file = create_raw(&path);
        Self {
            _directory: directory,
            path,
            file,
            position: 0,
        }
    }

    fn write(&mut self, batch: &Bytes, iters: u64, sync: bool) -> Duration {
        use std::os::unix::fs::FileExt;
        if self.position + iters * batch.len() as u64 > RAW_FILE_BYTES_MAX && self.position > 0 {
            // Untimed: a new file, so every timed write extends a file as the log's do.
            self.file.sync_data().expect("sync the baseline file");
            std::fs::remove_file(&self.path).expect("remove the baseline file");
            self.file = create_raw(&self.path);
            self.position = 0;
        }
        let start = SystemClock.now();
        for _ in 0..iters {
            self.file
                .write_all_at(batch, self.position)
                .expect("baseline write");
            if sync {
                self.file.sync_data().expect("baseline fdatasync");
            }
            self.position += batch.len() as u64;
        }
        SystemClock.now().duration_since(start)
    }
}

fn create_raw(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .expect("create the baseline file")
}
