#!/usr/bin/env bash
# What recording the event metrics costs (issue 16: "throughput with metrics on is within 2%
# of off"): the same release node with `[admin] metrics_recording = true` (the default) and
# `= false`, side by side.
#
#   benches/scripts/metrics_overhead.sh [ROUNDS] [RECORDS]    # defaults 9, 300000
#
# Throughput on the shared 2-core machine swings ±20% between identical runs, so besides
# records/s this script measures the node process's CPU time (utime + stime from
# /proc/PID/stat, 10 ms ticks) per million records, which other load on the machine changes
# far less (the pattern of security_cpu.sh).
#
# Two release nodes on loopback, data directories on tmpfs (/dev/shm: fsync is free, so the
# node's own CPU is what is measured), each with its admin listener up:
#   on   [admin] metrics_recording = true  (the default: every request, fsync, produced and
#        fetched byte counted);
#   off  [admin] metrics_recording = false (nothing recorded).
# Each round runs `ledge-bench produce --records RECORDS` (1 KiB, acks=all, idempotent) and
# then `consume` of that topic against each node, the order alternating (on off, off on, ...),
# reads the node's CPU before and after each, then stops the node, empties its data directory
# (tmpfs holds the log in RAM) and starts it again. Printed per round: node CPU seconds per
# million records and records/s of both; at the end the medians and the per-round off/on
# ratios.
#
# Binaries from $LEDGE_BIN (default target/release: `cargo build --release -p ledge-node
# -p ledge-benches --bin ledge-node --bin ledge-bench`). ledge-bench's JSON lines land in
# target/bench-runs/metrics-overhead-<time>/.
set -euo pipefail

rounds=${1:-9}
records=${2:-300000}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LEDGE_BIN:-$workspace/target/release}
out=$workspace/target/bench-runs/metrics-overhead-$(date +%Y%m%d-%H%M%S)
scratch=$(mktemp -d /dev/shm/ledge-metrics-overhead.XXXXXX)
mkdir -p "$out"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of a process, in clock ticks
    local stat
    stat=$(cat "/proc/$1/stat")
    stat=${stat##*) }
    awk '{print $12 + $13}' <<<"$stat"
}

declare -A port admin recording
port[on]=19795 admin[on]=127.0.0.1:19895 recording[on]=true
port[off]=19796 admin[off]=127.0.0.1:19896 recording[off]=false

start_node() { # name
    local name=$1
    local dir=$scratch/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '[admin]\nlisten = "%s"\nmetrics_recording = %s\n' "${admin[$name]}" \
        "${recording[$name]}" >"$dir/node.toml"
    : >"$out/$name-node.log.now"
    "$bin/ledge-node" --data-dir "$dir/data" --listen "127.0.0.1:${port[$name]}" \
        --config "$dir/node.toml" >"$out/$name-node.log.now" 2>&1 &
    pids+=($!)
    eval "${name}_pid=$!"
    for _ in $(seq 1 100); do
        if [ -f "$dir/data/tls/ca.pem" ] && grep -q "listening\|serving" "$out/$name-node.log.now"; then
            cat "$out/$name-node.log.now" >>"$out/$name-node.log"
            return 0
        fi
        sleep 0.1
    done
    echo "node $name did not start; see $out/$name-node.log.now" >&2
    exit 1
}

bench() { # name, workload args...
    local name=$1
    shift
    local pid_var=${name}_pid
    "$bin/ledge-bench" --server "127.0.0.1:${port[$name]}" --ca "$scratch/$name/data/tls/ca.pem" \
        --node-pid "${!pid_var}" --json --quiet "$@"
}

start_node on
start_node off
# The switch took: the off node's /metrics has no request counted after a request.
"$bin/ledge-bench" --server "127.0.0.1:${port[off]}" --ca "$scratch/off/data/tls/ca.pem" \
    --json --quiet produce --topic warm-up --records 1000 >/dev/null
if command -v curl >/dev/null 2>&1; then
    counted=$(curl -s "http://${admin[off]}/metrics" | grep -c '^ledge_requests_total{.*} [1-9]' || true)
    echo "off node: $counted request counters above zero (expected 0)" >&2
fi

results=$out/runs.tsv
printf 'round\tnode\tworkload\tcpu_ticks\trecords\trecords_per_s\n' >"$results"
printf '%-6s %-8s %12s %12s %8s %12s %12s %8s\n' round workload "on s/Mrec" "off s/Mrec" "on/off" \
    "on rec/s" "off rec/s" "on/off"
for round in $(seq 1 "$rounds"); do
    order=(on off)
    [ $((round % 2)) -eq 0 ] && order=(off on)
    for name in "${order[@]}"; do
        pid_var=${name}_pid
        pid=${!pid_var}
        topic=ledge-bench-r$round
        before=$(cpu_ticks "$pid")
        produced=$(bench "$name" produce --topic "$topic" --records "$records")
        middle=$(cpu_ticks "$pid")
        consumed=$(bench "$name" consume --topic "$topic")
        after=$(cpu_ticks "$pid")
        echo "$produced" >>"$out/$name-produce.jsonl"
        echo "$consumed" >>"$out/$name-consume.jsonl"
        rate() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["records_per_s"])'; }
        printf '%s\t%s\tproduce\t%s\t%s\t%s\n' "$round" "$name" $((middle - before)) "$records" \
            "$(rate <<<"$produced")" >>"$results"
        printf '%s\t%s\tconsume\t%s\t%s\t%s\n' "$round" "$name" $((after - middle)) "$records" \
            "$(rate <<<"$consumed")" >>"$results"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        start_node "$name"
    done
    python3 - "$results" "$round" "$ticks_per_s" <<'PY'
import csv, sys
path, round_, hz = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [r for r in csv.DictReader(open(path), delimiter="\t") if r["round"] == round_]
cpu = {(r["node"], r["workload"]): int(r["cpu_ticks"]) / hz / (int(r["records"]) / 1e6) for r in rows}
rate = {(r["node"], r["workload"]): float(r["records_per_s"]) for r in rows}
for w in ("produce", "consume"):
    print(f"{round_:<6} {w:<8} {cpu[('on', w)]:12.3f} {cpu[('off', w)]:12.3f} "
          f"{cpu[('on', w)] / cpu[('off', w)]:8.3f} {rate[('on', w)]:12.0f} {rate[('off', w)]:12.0f} "
          f"{rate[('on', w)] / rate[('off', w)]:8.3f}")
PY
done

python3 - "$results" "$ticks_per_s" <<'PY'
import csv, statistics, sys
path, hz = sys.argv[1], float(sys.argv[2])
rows = list(csv.DictReader(open(path), delimiter="\t"))
cpu, rate = {}, {}
for r in rows:
    key = (r["round"], r["node"], r["workload"])
    cpu[key] = int(r["cpu_ticks"]) / hz / (int(r["records"]) / 1e6)
    rate[key] = float(r["records_per_s"])
rounds = sorted({r["round"] for r in rows}, key=int)
def span(values):
    return f"median {statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"
print()
for w in ("produce", "consume"):
    on = [cpu[(r, "on", w)] for r in rounds]
    off = [cpu[(r, "off", w)] for r in rounds]
    ratio = [cpu[(r, "on", w)] / cpu[(r, "off", w)] for r in rounds]
    print(f"{w:<8} node CPU s per million records: on {span(on)}, off {span(off)}; on/off per round {span(ratio)}")
    on = [rate[(r, "on", w)] for r in rounds]
    off = [rate[(r, "off", w)] for r in rounds]
    ratio = [rate[(r, "on", w)] / rate[(r, "off", w)] for r in rounds]
    print(f"{w:<8} records/s: on median {statistics.median(on):.0f} ({min(on):.0f}-{max(on):.0f}), "
          f"off median {statistics.median(off):.0f} ({min(off):.0f}-{max(off):.0f}); on/off per round {span(ratio)}")
PY
echo "results: $out" >&2
