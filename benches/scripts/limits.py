#!/usr/bin/env python3
"""Helpers of benches/scripts/limits.sh.

    limits.py startup NODE_BIN DATA_DIR ROUNDS   time spawn -> readiness line, idle RSS (JSON)
    limits.py summary OUT_DIR                     the limits and Ledge's ratios (Markdown)

Throughputs are decimal MB/s (10^6 bytes/s). Ledge's MB/s counts record values only; on the
wire each 1 KiB record carries ~11 bytes of record framing and each batch 61, so the QUIC
ratios understate Ledge by about 1%.
"""
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import time


def startup(node_bin, data_dir, rounds):
    """Starts the node ROUNDS times on DATA_DIR; each time measures spawn -> the line
    `ledge-node listening on ADDR` (the node prints it once every listener is up), then
    reads its resident memory after 2 s idle and stops it with SIGTERM."""
    results = []
    for _ in range(int(rounds)):
        started = time.monotonic()
        node = subprocess.Popen(
            [node_bin, "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = node.stdout.readline()
        ready = time.monotonic()
        if "listening on" not in line:
            node.kill()
            sys.exit(f"ledge-node did not print its readiness line: {line!r}")
        time.sleep(2)
        status = pathlib.Path(f"/proc/{node.pid}/status").read_text()
        memory = {
            key: int(value.split()[0])
            for key, value in (row.split(":", 1) for row in status.splitlines())
            if key in ("VmRSS", "VmHWM")
        }
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=30)
        results.append({"startup_ms": (ready - started) * 1e3, "rss_kb": memory["VmRSS"],
                        "hwm_kb": memory["VmHWM"]})
    partitions = sum(1 for _ in pathlib.Path(data_dir).glob("logs/*"))
    print(json.dumps({"rounds": results, "partition_dirs": partitions}))


def load(path):
    path = pathlib.Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def lines(path):
    path = pathlib.Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def rss_mb(path):
    path = pathlib.Path(path)
    if not path.exists():
        return None
    for row in path.read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return None


def summary(out):
    out = pathlib.Path(out)
    machine = dict(row.split("=", 1) for row in (out / "machine.txt").read_text().splitlines())

    def fio_bw(name):
        job = load(out / f"fio-{name}.json")
        return job["jobs"][0]["write"]["bw_bytes"] / 1e6 if job else None

    def fio_sync_us(name):
        job = load(out / f"fio-{name}.json")
        if not job:
            return None
        percentiles = job["jobs"][0]["sync"]["lat_ns"]["percentile"]
        return {p: percentiles[key] / 1e3 for p, key in
                (("p50", "50.000000"), ("p99", "99.000000"), ("p99.9", "99.900000"))}

    def iperf(length):
        result = load(out / f"iperf3-udp-{length}.json")
        if not result or "end" not in result:
            return None
        received = result["end"]["sum_received"]
        return received["bits_per_second"] / 8e6, result["end"]["sum"]["lost_percent"]

    quinn = {row["direction"]: row for row in lines(out / "quinn-stream.json")}
    ledge = {name: (lines(out / f"ledge-{name}.json") or [None])[0] for name in
             ("produce-all", "produce-all-default", "produce-one", "produce-one-default", "consume",
              "e2e-one", "e2e-all")}
    startup_runs = load(out / "startup.json")

    sync_before, sync_after = fio_bw("seqsync-before"), fio_bw("seqsync-after")
    sync_mean = statistics.mean(v for v in (sync_before, sync_after) if v) if (
        sync_before or sync_after) else None
    small_before, small_after = fio_sync_us("sync4k"), fio_sync_us("sync4k-after")
    small_p99 = statistics.mean(v["p99"] for v in (small_before, small_after) if v) if (
        small_before or small_after) else None
    up = quinn.get("up", {}).get("mb_per_s_median")
    down = quinn.get("down", {}).get("mb_per_s_median")

    print(f"# Limits and Ledge, one run ({machine.get('date')})\n")
    print(f"Commit {machine.get('commit')}; {machine.get('cpus')} CPUs ({machine.get('cpu')}); "
          f"kernel {machine.get('kernel')}; scratch filesystem {machine.get('filesystem')}; "
          f"load average {machine.get('loadavg_start')} at the start, "
          f"{machine.get('loadavg_end')} at the end.\n")
    print("## Limits\n")
    print("| limit | measured |")
    print("|---|---|")

    def fmt(value, spec=".0f", unit=""):
        return "—" if value is None else f"{value:{spec}}{unit}"

    print(f"| fio 1 MiB writes + fdatasync each, before / after Ledge (mean) | "
          f"{fmt(sync_before)} / {fmt(sync_after)} ({fmt(sync_mean)}) MB/s |")
    print(f"| fio 1 MiB writes, one fdatasync at the end | {fmt(fio_bw('seqnosync'))} MB/s |")
    for label, value in (("before", small_before), ("after the e2e runs", small_after)):
        if value:
            print(f"| fio 4 KiB write + fdatasync latency, {label}: p50 / p99 / p99.9 | "
                  f"{value['p50']:.0f} / {value['p99']:.0f} / {value['p99.9']:.0f} µs |")
    for length in (1472, 65000):
        result = iperf(length)
        if result:
            print(f"| iperf3 loopback UDP, {length}-byte datagrams, received | "
                  f"{result[0]:.0f} MB/s ({result[1]:.0f}% lost) |")
        elif length == 1472:
            print("| iperf3 loopback UDP | not measured (iperf3 not installed) |")
    for direction, label in (("up", "client → server"), ("down", "server → client")):
        row = quinn.get(direction)
        if row:
            print(f"| bare quinn stream, {label}: median (best) of {row['rounds']} | "
                  f"{row['mb_per_s_median']:.0f} ({row['mb_per_s_best']:.0f}) MB/s |")

    print("\n## Ledge against the limits\n")
    print("| figure | target | Ledge | limit | ratio | met? |")
    print("|---|---|---|---|---|---|")

    def ratio_row(label, target_text, measured, limit, floor, unit="MB/s", context=False):
        ratio = measured / limit if measured and limit else None
        met = "—" if ratio is None or context else (
            "yes" if ratio >= floor else f"**no** ({floor / ratio:.1f}x short)")
        print(f"| {label} | {target_text} | {fmt(measured)} {unit} | {fmt(limit)} {unit} | "
              f"{fmt(ratio, '.2f')} | {met} |")

    def mb(name):
        row = ledge.get(name)
        return row["mb_per_s"] if row else None

    ratio_row("produce 1 KiB, 1 partition, acks=all (SDK default batching)",
              "≥ 0.85 × fio 1 MiB + fdatasync", mb("produce-all-default"), sync_mean, 0.85)
    ratio_row("produce acks=all, fixed ~1000-record (1 MiB) batches", "(context)",
              mb("produce-all"), sync_mean, 0.85, context=True)
    ratio_row("produce acks=1 (SDK default batching)", "≥ 0.70 × quinn up",
              mb("produce-one-default"), up, 0.70)
    ratio_row("produce acks=1, fixed ~1000-record (1 MiB) batches", "(context)",
              mb("produce-one"), up, 0.70, context=True)
    ratio_row("consume from the beginning", "≥ 0.80 × quinn down", mb("consume"), down, 0.80)

    for name, label, target in (
            ("produce-one", "acks=1, ~1000-record batches", True),
            ("produce-all", "acks=all, ~1000-record batches", True),
            ("produce-one-default", "acks=1, SDK default batching", False),
            ("produce-all-default", "acks=all, SDK default batching", False)):
        row = ledge.get(name)
        if row and "node_cpu_us_per_record" in row:
            cpu = row["node_cpu_us_per_record"]
            met = ("yes" if cpu <= 3 else f"**no** ({cpu / 3:.1f}x)") if target else "—"
            print(f"| node CPU per 1 KiB record produced, {label} | "
                  f"{'≤ 3 µs' if target else '(context)'} | {cpu:.2f} µs | — | — | {met} |")
    row = ledge.get("consume")
    if row and "node_cpu_us_per_record" in row:
        print(f"| node CPU per 1 KiB record consumed | (context) | "
              f"{row['node_cpu_us_per_record']:.2f} µs | — | — | — |")

    e2e_one = ledge.get("e2e-one")
    if e2e_one:
        latency = e2e_one["latency_us"]
        for key, limit_ms in (("p99", 2), ("p99.9", 5)):
            value_ms = latency[key] / 1e3
            met = "yes" if value_ms < limit_ms else f"**no** ({value_ms / limit_ms:.0f}x)"
            print(f"| e2e 5,000 rec/s acks=1, {key} | < {limit_ms} ms | {value_ms:.2f} ms | — | "
                  f"— | {met} |")
    e2e_all = ledge.get("e2e-all")
    if e2e_all:
        value_us = e2e_all["latency_us"]["p99"]
        ratio = value_us / small_p99 if small_p99 else None
        met = "—" if ratio is None else ("yes" if ratio <= 3 else f"**no** ({ratio / 3:.1f}x)")
        print(f"| e2e 5,000 rec/s acks=all, p99 | ≤ 3 × fio fdatasync p99 | "
              f"{value_us / 1e3:.2f} ms | {fmt(small_p99 and small_p99 / 1e3, '.2f')} ms | "
              f"{fmt(ratio, '.2f')} | {met} |")

    fresh = rss_mb(out / "rss-idle-fresh.txt")
    if fresh is not None:
        met = "yes" if fresh < 20 else f"**no** ({fresh / 20:.1f}x)"
        print(f"| idle RSS, empty data directory | < 20 MB | {fresh:.1f} MiB | — | — | {met} |")
    after = rss_mb(out / "rss-idle-after-load.txt")
    if after is not None:
        print(f"| idle RSS after the runs above | (context) | {after:.1f} MiB | — | — | — |")
    if startup_runs:
        rounds = startup_runs["rounds"]
        times = sorted(r["startup_ms"] for r in rounds)
        median = statistics.median(times)
        met = "yes" if max(times) < 100 else (
            f"**no** ({median / 100:.1f}x)" if median >= 100 else "median only")
        print(f"| startup to serving, 100 topics × 4 partitions | < 100 ms | "
              f"{median:.0f} ms median, {times[-1]:.0f} max ({len(times)} starts) | — | — | "
              f"{met} |")
        rss = statistics.median(r["rss_kb"] for r in rounds) / 1024
        met = "yes" if rss < 20 else f"**no** ({rss / 20:.1f}x)"
        print(f"| idle RSS, 100 topics × 4 partitions | < 20 MB | {rss:.1f} MiB | — | — | {met} |")

    print("\n## CPU per MB moved (both processes: node + ledge-bench, or quinn's two ends)\n")
    print("On a 2-core machine a path that keeps both cores busy is bound by its CPU cost: "
          "2 cores / (CPU per MB) is its ceiling.\n")
    print("| path | MB/s | CPU µs per MB | ceiling on 2 cores |")
    print("|---|---|---|---|")
    cpus = int(machine.get("cpus", "2"))

    def cpu_row(label, rate, cpu_per_mb):
        if rate is None or cpu_per_mb is None:
            return
        print(f"| {label} | {rate:.0f} | {cpu_per_mb:.0f} | {cpus * 1e6 / cpu_per_mb:.0f} MB/s |")

    for direction, label in (("up", "bare quinn stream, client → server"),
                             ("down", "bare quinn stream, server → client")):
        row = quinn.get(direction)
        if row:
            cpu_row(label, row["mb_per_s_median"], row.get("cpu_us_per_mb_median"))
    for name, label in (("produce-all", "Ledge produce acks=all, 1 MiB batches"),
                        ("produce-all-default", "Ledge produce acks=all, SDK default batching"),
                        ("produce-one", "Ledge produce acks=1, 1 MiB batches"),
                        ("produce-one-default", "Ledge produce acks=1, SDK default batching"),
                        ("consume", "Ledge consume")):
        row = ledge.get(name)
        if row and "node_cpu_s" in row and "bench_cpu_s" in row and row["bytes"]:
            megabytes = row["bytes"] / 1e6
            cpu_row(label + " (node + bench)", row["mb_per_s"],
                    (row["node_cpu_s"] + row["bench_cpu_s"]) * 1e6 / megabytes)
            cpu_row(label + " (node alone)", row["mb_per_s"], row["node_cpu_s"] * 1e6 / megabytes)

    print("\n## e2e latency (ms)\n")
    print("| run | e2e p50 / p99 / p99.9 / max | ack p50 / p99 / p99.9 / max | "
          "sender lag p99 / max | CPU µs per record: node / bench |")
    print("|---|---|---|---|---|")
    for name, row in (("acks=1", e2e_one), ("acks=all", e2e_all)):
        if not row:
            continue
        cells = []
        for key in ("latency_us", "ack_latency_us"):
            values = row[key]
            cells.append(" / ".join(f"{values[p] / 1e3:.2f}" for p in
                                    ("p50", "p99", "p99.9", "max")))
        lag = row["send_lag_us"]
        cells.append(f"{lag['p99'] / 1e3:.2f} / {lag['max'] / 1e3:.2f}")
        cells.append(f"{row.get('node_cpu_us_per_record', float('nan')):.0f} / "
                     f"{row.get('bench_cpu_us_per_record', float('nan')):.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "startup" and len(sys.argv) == 5:
        startup(*sys.argv[2:])
    elif command == "summary" and len(sys.argv) == 3:
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)
