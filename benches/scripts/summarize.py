#!/usr/bin/env python3
"""Summarises one round of benches/scripts/compare-fio.sh as a Markdown table.

Throughputs are decimal MB/s (10^6 bytes per second). Criterion figures use the mean time
per iteration (samples are flat, so this is total bytes over total time, as fio reports);
the 95% interval of the mean is shown alongside. fio figures are the job's aggregate
bandwidth.
"""
import json
import pathlib
import sys

round_dir = pathlib.Path(sys.argv[1])


def fio(name):
    path = round_dir / f"fio-{name}.json"
    job = json.loads(path.read_text())["jobs"][0]
    return job["write"]["bw_bytes"] / 1e6


def criterion(bench_id):
    base = round_dir / "criterion" / bench_id / "new"
    size = json.loads((base / "benchmark.json").read_text())["throughput"]["Bytes"]
    mean = json.loads((base / "estimates.json").read_text())["mean"]
    rate = lambda ns: size / ns * 1e3  # bytes per ns -> MB/s
    interval = mean["confidence_interval"]
    return rate(mean["point_estimate"]), rate(interval["upper_bound"]), rate(interval["lower_bound"])


def cell(value):
    mean, low, high = value
    return f"{mean:,.0f} ({low:,.0f}-{high:,.0f})"


fio_sync = fio("seqsync-psync")
fio_sync_after = fio("seqsync-psync-after")
fio_uring = fio("seqsync-io_uring")
fio_nofalloc = fio("seqsync-psync-nofallocate")
fio_4m = fio("seqsync4m-psync")
fio_end = fio("write-endfsync-psync")
fio_end_uring = fio("write-endfsync-io_uring")
fio_nosync = fio("write-nosync-psync")
fio_sync_pair = (fio_sync + fio_sync_after) / 2

rows = []


def row(name, value, baseline_name, baseline):
    ratio = f"{value[0] / baseline:.2f}" if baseline else ""
    rows.append(f"| {name} | {cell(value)} | {baseline_name} | {ratio} |")


raw_sync = criterion("append_synced/raw_pwrite_fdatasync")
raw_write = criterion("append_written/raw_pwrite")
for backend in ["io_uring", "std"]:
    value = criterion(f"append_synced/{backend}")
    row(f"append_synced/{backend}", value, "fio psync 1M fdatasync (mean of before/after)", fio_sync_pair)
    row(f"append_synced/{backend}", value, "raw_pwrite_fdatasync (same process)", raw_sync[0])
    if backend == "io_uring":
        row(f"append_synced/{backend}", value, "fio io_uring 1M fdatasync", fio_uring)
row("append_synced/raw_pwrite_fdatasync", raw_sync, "fio psync 1M fdatasync (mean of before/after)", fio_sync_pair)
for backend in ["io_uring", "std"]:
    value = criterion(f"append_synced_4_appenders/{backend}")
    row(f"append_synced_4_appenders/{backend}", value, "fio psync 4M fdatasync", fio_4m)
    row(f"append_synced_4_appenders/{backend}", value, "append_synced (1 appender, same backend)",
        criterion(f"append_synced/{backend}")[0])
for backend in ["io_uring", "std"]:
    value = criterion(f"append_written/{backend}")
    row(f"append_written/{backend}", value, "raw_pwrite (same process)", raw_write[0])
    row(f"append_written/{backend}", value, "fio psync 1M, no sync at all", fio_nosync)
row("append_written/raw_pwrite", raw_write, "fio psync 1M, no sync at all", fio_nosync)
for backend in ["io_uring", "std"]:
    row(f"read/{backend}", criterion(f"read/{backend}"), "", 0)
row("validate_batch/1MiB", criterion("validate_batch/1MiB"), "", 0)
row("group_buffer_copy/1MiB", criterion("group_buffer_copy/1MiB"), "", 0)

print(f"### {round_dir.name}\n")
print("fio (MB/s):\n")
print("| fio job | MB/s |")
print("|---|---|")
for name, value in [
    ("psync, 1M, fdatasync=1 (before criterion)", fio_sync),
    ("psync, 1M, fdatasync=1 (after criterion)", fio_sync_after),
    ("io_uring, 1M, fdatasync=1", fio_uring),
    ("psync, 1M, fdatasync=1, fallocate=none", fio_nofalloc),
    ("psync, 4M, fdatasync=1", fio_4m),
    ("psync, 1M, fdatasync=0, end_fsync=1", fio_end),
    ("io_uring, 1M, fdatasync=0, end_fsync=1", fio_end_uring),
    ("psync, 1M, fdatasync=0, end_fsync=0", fio_nosync),
]:
    print(f"| {name} | {value:,.0f} |")
print("\ncriterion (MB/s, mean and 95% interval) and ratios within this round:\n")
print("| benchmark | MB/s | against | ratio |")
print("|---|---|---|---|")
print("\n".join(rows))
