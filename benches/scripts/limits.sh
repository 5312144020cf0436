#!/usr/bin/env bash
# The machine's physical limits beside Ledge's figures, measured in the same run (issue 7).
#
#   benches/scripts/limits.sh              # build (release), measure, print the ratio table
#   LEDGE_LIMITS_QUICK=1 benches/scripts/limits.sh     # smaller sizes, shorter e2e (a smoke run)
#
# Limits: fio sequential 1 MiB writes with an fdatasync after each and without (one
# fdatasync at the end); fio's fdatasync latency of 4 KiB writes; loopback UDP with iperf3
# (skipped with a note when it is not installed); one bare quinn stream each way
# (quinn-stream). Ledge: a release ledge-node this script starts on a fresh data directory
# on the same filesystem as the fio files, driven by ledge-bench, with the node's CPU time
# read from /proc/<pid>/stat around each run; its idle memory; its startup time with 100
# topics x 4 partitions on disk. Everything runs one at a time (2-core machines).
#
# Environment:
#   LEDGE_BENCH_DIR   scratch directory (fio files, node data) [default: <workspace>/target]
#   CARGO_TARGET_DIR  where the release binaries are built [default: <workspace>/target]
#   LEDGE_LIMITS_SKIP_BUILD=1   use the binaries already built
# Results: target/limits-runs/<time>/ (raw JSON of every tool, node logs, summary.md).
set -euo pipefail

workspace=$(cd "$(dirname "$0")/../.." && pwd)
scratch=${LEDGE_BENCH_DIR:-$workspace/target}
target_dir=${CARGO_TARGET_DIR:-$workspace/target}
bin=$target_dir/release
out=$workspace/target/limits-runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out" "$scratch"
fio_dir=$scratch/limits-fio
data=$scratch/limits-node

if [[ -n ${LEDGE_LIMITS_QUICK:-} ]]; then
    fio_size=256M records=100000 e2e_seconds=5 quinn_bytes=268435456 startup_rounds=2
else
    fio_size=1G records=500000 e2e_seconds=30 quinn_bytes=1073741824 startup_rounds=5
fi

log() { echo "== $*" >&2; }

node_pid=
stop_node() {
    if [[ -n $node_pid ]]; then
        kill -TERM "$node_pid" 2>/dev/null || true
        wait "$node_pid" 2>/dev/null || true
        node_pid=
    fi
}
trap stop_node EXIT

# Starts ledge-node on DATA_DIR at an ephemeral port; sets node_pid and node_addr.
start_node() { # data_dir log_name
    "$bin/ledge-node" --data-dir "$1" --listen 127.0.0.1:0 >"$out/$2.out" 2>"$out/$2.err" &
    node_pid=$!
    for _ in $(seq 1 300); do
        if node_addr=$(grep -m1 -o 'listening on .*' "$out/$2.out" 2>/dev/null); then
            node_addr=${node_addr#listening on }
            return 0
        fi
        sleep 0.1
    done
    echo "ledge-node did not start; see $out/$2.err" >&2
    exit 1
}

fio_job() { # name, extra fio arguments...
    local name=$1
    shift
    rm -rf "$fio_dir" && mkdir -p "$fio_dir"
    fio --name="$name" --directory="$fio_dir" --rw=write --ioengine=psync --unlink=1 \
        --output-format=json "$@" >"$out/fio-$name.json"
    rm -rf "$fio_dir"
}

bench() { # result name, ledge-bench arguments...
    local name=$1
    shift
    "$bin/ledge-bench" --server "$node_addr" --ca "$data/tls/ca.pem" --quiet --json \
        --node-pid "$node_pid" "$@" | tee "$out/ledge-$name.json" >&2
}

cd "$workspace"
if [[ -z ${LEDGE_LIMITS_SKIP_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release -p ledge-node -p ledge-benches -p ledge-client \
        --bin ledge-node --bin ledge-bench --bin quinn-stream --bin ledge >&2
fi

{
    echo "commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- node protocol client benches || echo '+dirty')"
    echo "cpus=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "kernel=$(uname -r)"
    echo "filesystem=$(df -T "$scratch" | awk 'NR==2 {print $2 " on " $1}')"
    echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

# --- limits: network ------------------------------------------------------------------------

if command -v iperf3 >/dev/null; then
    log "iperf3: loopback UDP, unlimited rate, 1472-byte and 65000-byte datagrams"
    for length in 1472 65000; do
        iperf3 -s -1 -p 5299 >/dev/null 2>&1 &
        iperf_server=$!
        sleep 0.5
        iperf3 -c 127.0.0.1 -p 5299 -u -b 0 -l "$length" -w 4M -t 5 -J \
            >"$out/iperf3-udp-$length.json" || true
        wait "$iperf_server" 2>/dev/null || true
    done
else
    log "iperf3 not installed: loopback UDP skipped (Debian: apt-get install iperf3)"
fi

log "quinn-stream: one bare QUIC stream each way"
"$bin/quinn-stream" --json --rounds 3 --bytes "$quinn_bytes" | tee "$out/quinn-stream.json" >&2

# --- limits: disk, and Ledge's produce against it ------------------------------------------

log "fio: 1 MiB writes with fdatasync after each (before Ledge)"
fio_job seqsync-before --bs=1M --size="$fio_size" --fdatasync=1
log "fio: 1 MiB writes, one fdatasync at the end"
fio_job seqnosync --bs=1M --size="$fio_size" --end_fsync=1
log "fio: fdatasync latency of 4 KiB writes (10 s)"
fio_job sync4k --bs=4k --size=256M --fdatasync=1 --runtime=10 --time_based

rm -rf "$data"
start_node "$data" node
sleep 2
grep -E 'VmRSS|VmHWM' "/proc/$node_pid/status" >"$out/rss-idle-fresh.txt"

log "ledge: produce, 1 KiB records, 1 partition, acks=all, ~1000-record (1 MiB) batches"
bench produce-all produce --topic all --records "$records" --batch-bytes 1035000 --acks all
log "ledge: produce, acks=all, the SDK's default batching (ready at 16 KiB, grows to 512 KiB)"
bench produce-all-default produce --topic all-default --records "$records" --acks all
log "fio: 1 MiB writes with fdatasync after each (after Ledge)"
fio_job seqsync-after --bs=1M --size="$fio_size" --fdatasync=1
log "ledge: produce, acks=1, same batches"
bench produce-one produce --topic one --records "$records" --batch-bytes 1035000 --acks 1
log "ledge: produce, acks=1, the SDK's default batching"
bench produce-one-default produce --topic one-default --records "$records" --acks 1
log "ledge: consume the acks=all topic from the beginning"
bench consume consume --topic all
log "ledge: e2e at 5,000 records/s of 1 KiB, acks=1, ${e2e_seconds} s"
bench e2e-one e2e --topic e2e-one --rate 5000 --duration "$e2e_seconds" --acks 1
log "ledge: e2e at 5,000 records/s of 1 KiB, acks=all, ${e2e_seconds} s"
bench e2e-all e2e --topic e2e-all --rate 5000 --duration "$e2e_seconds" --acks all
log "fio: fdatasync latency of 4 KiB writes, after the e2e runs (10 s)"
fio_job sync4k-after --bs=4k --size=256M --fdatasync=1 --runtime=10 --time_based
sleep 2
grep -E 'VmRSS|VmHWM' "/proc/$node_pid/status" >"$out/rss-idle-after-load.txt"
stop_node

# --- startup with 100 topics x 4 partitions on disk ----------------------------------------

log "startup: 100 topics x 4 partitions"
rm -rf "$data"
start_node "$data" node-topics
for topic in $(seq -f 'topic-%03g' 1 100); do
    "$bin/ledge" --server "$node_addr" --ca "$data/tls/ca.pem" topic create "$topic" \
        --partitions 4 >/dev/null
done
stop_node
python3 "$workspace/benches/scripts/limits.py" startup "$bin/ledge-node" "$data" \
    "$startup_rounds" >"$out/startup.json"
rm -rf "$data"

echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
python3 "$workspace/benches/scripts/limits.py" summary "$out" | tee "$out/summary.md"
echo "results: $out" >&2
