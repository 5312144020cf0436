#!/usr/bin/env python3
"""The ratio table of peers_compare.sh: reads its MODE-SERVER-WORKLOAD-rROUND.json files.

    python3 benches/scripts/peers_summary.py target/bench-runs/peers-<time> [--markdown]

Per durability mode and workload: the median over rounds of each server's records/s (produce,
consume, group) or end-to-end latency p50/p99/p99.9 (e2e), and of its CPU µs per record, with
the ratios Ledge/NATS and Ledge/Redis. For records/s a ratio above 1 means Ledge is faster;
for latency and CPU a ratio below 1 means Ledge is lower.
"""

import json
import pathlib
import re
import statistics
import sys

SERVERS = ("ledge", "nats", "redis")
MODES = ("relaxed", "strict")
WORKLOADS = ("produce", "consume", "group", "e2e")
NAME = re.compile(r"^(relaxed|strict)-(ledge|nats|redis)-(produce|consume|group|e2e)-r(\d+)\.json$")


def load(directory):
    """{(mode, server, workload): [result, ...]} from the run's JSON files."""
    runs = {}
    for path in sorted(pathlib.Path(directory).iterdir()):
        match = NAME.match(path.name)
        if not match:
            continue
        text = path.read_text().strip()
        if not text:
            continue
        mode, server, workload, _ = match.groups()
        runs.setdefault((mode, server, workload), []).append(json.loads(text.splitlines()[-1]))
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def metrics(workload):
    """(label, getter) pairs shown for a workload."""
    shown = []
    if workload == "e2e":
        for quantile in ("p50", "p99", "p99.9"):
            shown.append((f"e2e {quantile} ms",
                          lambda r, q=quantile: r.get("latency_us", {}).get(q, 0) / 1000 or None))
    else:
        shown.append(("records/s", lambda r: r.get("records_per_s")))
        if workload == "produce":
            shown.append(("ack p99 ms", lambda r: r.get("latency_us", {}).get("p99", 0) / 1000 or None))
    shown.append(("server CPU µs/rec", lambda r: r.get("node_cpu_us_per_record")))
    return shown


def rows(runs):
    """Table rows: mode, workload, metric, three medians, two ratios, rounds."""
    table = []
    for mode in MODES:
        for workload in WORKLOADS:
            for label, get in metrics(workload):
                medians = {s: median([get(r) for r in runs.get((mode, s, workload), [])]) for s in SERVERS}
                if all(v is None for v in medians.values()):
                    continue
                ratios = [ratio(medians["ledge"], medians[peer]) for peer in ("nats", "redis")]
                count = min(len(runs.get((mode, s, workload), [])) for s in SERVERS)
                table.append((mode, workload, label, medians, ratios, count))
    return table


def ratio(ours, theirs):
    if ours is None or theirs is None or theirs == 0:
        return None
    return ours / theirs


def figure(value):
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def render(table, markdown):
    header = ["mode", "workload", "metric", "Ledge", "NATS", "Redis", "Ledge/NATS", "Ledge/Redis", "rounds"]
    lines = []
    cells = [[mode, workload, label, figure(m["ledge"]), figure(m["nats"]), figure(m["redis"]),
              figure(r[0]), figure(r[1]), str(count)]
             for mode, workload, label, m, r, count in table]
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in cells)
    else:
        widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h)
                  for i, h in enumerate(header)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells)
    return "\n".join(lines)


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(render(rows(load(argv[1])), "--markdown" in argv[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
