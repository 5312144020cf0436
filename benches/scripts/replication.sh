#!/usr/bin/env bash
# Replication's cost and failover (issue 13), side by side in one run on release builds.
#
#   benches/scripts/replication.sh                      # build (release), measure, summarize
#   LEDGE_REPL_QUICK=1 benches/scripts/replication.sh   # one repetition, short runs (smoke)
#
# A single node (one partition, acks=all) and a 3-node cluster from `ledge-node cluster-init`
# (RF=3, min.insync.replicas=2, acks=all), both on this machine and filesystem, both running
# for the whole comparison; each repetition measures them in turn on fresh topics:
#   1. throughput: ledge-bench produce, closed loop, 1 KiB records, one producer;
#   2. end-to-end latency: ledge-bench e2e at 1,000 records/s (p99 produce → consume);
# then, on the cluster only:
#   3. failover: ledge-bench failover at 1,000 records/s, the partition's leader kill -9'd
#      after 5 s; the killed node is restarted and seen alive before the next repetition.
#      With every default (node and client) twice per repetition: the leader placed on the
#      active controller's node (`--leader-on controller`), then on another node; then on a
#      fresh cluster whose session
#      settings are lowered ($fast_settings below), with the client's defaults and with its
#      idle and connect timeouts lowered ($fast_client): what bounds the default figure.
#
# Environment:
#   LEDGE_BENCH_DIR   scratch directory (node data) [default: <workspace>/target]
#   CARGO_TARGET_DIR  where the release binaries are built [default: <workspace>/target]
#   LEDGE_REPL_SKIP_BUILD=1   use the binaries already built
#   LEDGE_REPL_REPS   repetitions of produce and e2e [default 3]
#   LEDGE_REPL_FAILOVERS   failovers per configuration [default 3]
#   LEDGE_REPL_RECORDS   records per produce run [default 200000]
#   LEDGE_REPL_E2E_SECONDS   measured seconds per e2e run [default 20]
#   LEDGE_REPL_AFTER_KILL   seconds produced after the kill [default 15; records still
#                     unacknowledged then are waited for, so a longer failover is measured]
# Results: target/replication-runs/<time>/ (ledge-bench JSON lines, node logs, summary.md).
set -euo pipefail

workspace=$(cd "$(dirname "$0")/../.." && pwd)
scratch=${LEDGE_BENCH_DIR:-$workspace/target}
target_dir=${CARGO_TARGET_DIR:-$workspace/target}
bin=$target_dir/release
out=$workspace/target/replication-runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out" "$scratch"
single_dir=$scratch/replication-single
cluster_dir=$scratch/replication-cluster
single_port=19790
cluster_base_port=19800

if [[ -n ${LEDGE_REPL_QUICK:-} ]]; then
    reps=1 failovers=1 records=20000 e2e_seconds=5 after_kill=12
else
    reps=${LEDGE_REPL_REPS:-3} failovers=${LEDGE_REPL_FAILOVERS:-3}
    records=${LEDGE_REPL_RECORDS:-200000} e2e_seconds=${LEDGE_REPL_E2E_SECONDS:-20}
    after_kill=${LEDGE_REPL_AFTER_KILL:-15}
fi
# Lowered session settings: heartbeats every 100 ms (default 200), a node fenced after 1 s of
# silence (default 1.2 s); the peer request timeout must stay below the session, the fetch
# wait below both. Since the fifth session's defaults these differ little from them.
fast_settings='node_heartbeat_interval_ms = 100
node_session_timeout_ms = 1000
peer_request_timeout_ms = 800
replica_fetch_wait_max_ms = 500'
# Lowered client timeouts. The SDK no longer waits for its QUIC idle timeout (10 s) to leave a
# kill -9'd leader (it re-checks metadata every 100 ms while a produce waits); these only
# shorten what still waits on idle (admin requests).
fast_client='--idle-timeout-ms 1000 --connect-timeout-ms 1000'

log() { echo "== $*" >&2; }

# Only the processes this script started, by pid.
declare -A cluster_pids=()
single_pid=
stop_all() {
    for pid in "${cluster_pids[@]}" $single_pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${cluster_pids[@]}" $single_pid; do
        wait "$pid" 2>/dev/null || true
    done
    cluster_pids=()
    single_pid=
}
trap stop_all EXIT

wait_listening() { # log file, pid
    for _ in $(seq 1 600); do
        if grep -q 'listening on' "$1" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$2" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "ledge-node did not start; see ${1%.out}.err" >&2
    exit 1
}

start_single() {
    rm -rf "$single_dir"
    "$bin/ledge-node" --data-dir "$single_dir" --listen "127.0.0.1:$single_port" \
        >"$out/single.out" 2>"$out/single.err" &
    single_pid=$!
    wait_listening "$out/single.out" "$single_pid"
}

start_cluster_node() { # id
    local id=$1
    "$bin/ledge-node" --config "$cluster_dir/node-$id.toml" \
        >>"$out/$cluster_name-node-$id.out" 2>>"$out/$cluster_name-node-$id.err" &
    cluster_pids[$id]=$!
    wait_listening "$out/$cluster_name-node-$id.out" "${cluster_pids[$id]}"
}

cluster_servers=127.0.0.1:$((cluster_base_port + 1)),127.0.0.1:$((cluster_base_port + 2)),127.0.0.1:$((cluster_base_port + 3))

# Waits until the cluster lists 3 alive nodes, a controller and no under-replicated partition.
wait_cluster_healthy() {
    for _ in $(seq 1 600); do
        if "$bin/ledge" --server "$cluster_servers" --ca "$cluster_dir/tls/ca.pem" \
            cluster describe --format json 2>/dev/null | python3 -c '
import json, sys
c = json.load(sys.stdin)
ok = (c["controller"] is not None and sum(n["alive"] for n in c["nodes"]) == 3
      and not c["under_replicated_partitions"] and not c["offline_partitions"])
sys.exit(0 if ok else 1)'; then
            return 0
        fi
        sleep 0.2
    done
    echo "the cluster did not become healthy; see $out/$cluster_name-node-*.err" >&2
    exit 1
}

start_cluster() { # name, extra [cluster] settings
    cluster_name=$1
    rm -rf "$cluster_dir"
    "$bin/ledge-node" cluster-init --nodes 3 --dir "$cluster_dir" \
        --base-port "$cluster_base_port" >"$out/$cluster_name-init.txt"
    if [[ -n $2 ]]; then
        # [cluster] is the last table cluster-init writes.
        for id in 1 2 3; do
            printf '%s\n' "$2" >>"$cluster_dir/node-$id.toml"
        done
    fi
    for id in 1 2 3; do
        start_cluster_node "$id"
    done
    wait_cluster_healthy
}

stop_cluster() {
    for pid in "${cluster_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    cluster_pids=()
}

bench_single() { # label, ledge-bench arguments...
    local label=$1
    shift
    "$bin/ledge-bench" --server "127.0.0.1:$single_port" --ca "$single_dir/tls/ca.pem" \
        --quiet --json --node-pid "$single_pid" "$@" |
        sed "s/^{/{\"label\":\"$label\",/" | tee -a "$out/results.jsonl" >&2
}

bench_cluster() { # label, ledge-bench arguments...
    local label=$1
    shift
    "$bin/ledge-bench" --server "$cluster_servers" --ca "$cluster_dir/tls/ca.pem" \
        --quiet --json --replication-factor 3 --min-insync-replicas 2 "$@" |
        sed "s/^{/{\"label\":\"$label\",/" | tee -a "$out/results.jsonl" >&2
}

# One failover repetition: kill the leader, then restart it and wait for a healthy cluster.
failover_round() { # label, topic, --leader-on value, extra ledge-bench arguments...
    local label=$1 topic=$2 leader_on=$3
    shift 3
    local pid_list=
    for id in 1 2 3; do
        pid_list+="${pid_list:+,}$id=${cluster_pids[$id]}"
    done
    # shellcheck disable=SC2068 # the extra arguments are words on purpose
    bench_cluster "$label" $@ failover --topic "$topic" --node-pids "$pid_list" --rate 1000 \
        --leader-on "$leader_on" \
        --kill-after 5 --run-after-kill "$after_kill"
    local killed
    killed=$(tail -n1 "$out/results.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["old_leader"])')
    wait "${cluster_pids[$killed]}" 2>/dev/null || true
    start_cluster_node "$killed"
    wait_cluster_healthy
}

cd "$workspace"
if [[ -z ${LEDGE_REPL_SKIP_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release -p ledge-node -p ledge-benches -p ledge-client \
        --bin ledge-node --bin ledge-bench --bin ledge >&2
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

log "starting a single node and a 3-node cluster (default settings)"
start_single
start_cluster default ""

for rep in $(seq 1 "$reps"); do
    log "repetition $rep: produce, single node then cluster"
    bench_single "single-produce" produce --topic "p-single-$rep" --records "$records"
    bench_cluster "rf3-produce" produce --topic "p-rf3-$rep" --records "$records"
    log "repetition $rep: e2e at 1,000 records/s, single node then cluster"
    bench_single "single-e2e" e2e --topic "e-single-$rep" --rate 1000 --duration "$e2e_seconds"
    bench_cluster "rf3-e2e" e2e --topic "e-rf3-$rep" --rate 1000 --duration "$e2e_seconds"
done
kill -TERM "$single_pid" && wait "$single_pid" 2>/dev/null || true
single_pid=

# Each repetition kills a leader on the active controller's node (the controller dies too)
# and one elsewhere: the two failovers differ by a controller election.
for rep in $(seq 1 "$failovers"); do
    log "failover $rep (default settings, the leader on the controller's node)"
    failover_round "failover-default" "f-default-c-$rep" controller
    log "failover $rep (default settings, the leader on another node)"
    failover_round "failover-default" "f-default-o-$rep" not-controller
done
stop_cluster

log "a fresh cluster with lowered session settings"
start_cluster fast "$fast_settings"
for rep in $(seq 1 "$failovers"); do
    log "failover $rep (lowered session settings, client defaults)"
    failover_round "failover-fast-node" "f-fast-node-$rep" any
    log "failover $rep (lowered session settings and client timeouts)"
    # shellcheck disable=SC2086
    failover_round "failover-fast" "f-fast-$rep" any $fast_client
done
stop_cluster
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"

python3 - "$out" <<'EOF' | tee "$out/summary.md"
import json, sys, statistics
out = sys.argv[1]
rows = [json.loads(line) for line in open(f"{out}/results.jsonl")]
by = {}
for row in rows:
    by.setdefault(row["label"], []).append(row)
print(open(f"{out}/machine.txt").read())

def fmt(values, unit=""):
    return ", ".join(f"{v:,.0f}{unit}" for v in values)

single = by.get("single-produce", [])
rf3 = by.get("rf3-produce", [])
if single and rf3:
    print("| produce, 1 KiB, acks=all, 1 partition | records/s per repetition | median |")
    print("|---|---|---|")
    s = [r["records_per_s"] for r in single]
    c = [r["records_per_s"] for r in rf3]
    print(f"| single node | {fmt(s)} | {statistics.median(s):,.0f} |")
    print(f"| 3 nodes, RF=3, min.insync=2 | {fmt(c)} | {statistics.median(c):,.0f} |")
    ratios = [b / a for a, b in zip(s, c)]
    print(f"| ratio RF=3 / single (same repetition) | {', '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.2f} |")
    print()
for label in ("single-e2e", "rf3-e2e"):
    if label in by:
        p99 = [r["latency_us"]["p99"] / 1000 for r in by[label]]
        p50 = [r["latency_us"]["p50"] / 1000 for r in by[label]]
        ack = [r["ack_latency_us"]["p99"] / 1000 for r in by[label]]
        print(f"{label} at 1,000 records/s: produce→consume p50 ms {', '.join(f'{v:.2f}' for v in p50)}; "
              f"p99 ms {', '.join(f'{v:.2f}' for v in p99)}; ack p99 ms {', '.join(f'{v:.2f}' for v in ack)}")
print()
groups = []
for label in ("failover-default", "failover-fast-node", "failover-fast"):
    runs = by.get(label, [])
    if label == "failover-default":
        groups.append((label + ", leader on the controller's node",
                       [r for r in runs if r["killed_controller"]]))
        groups.append((label + ", leader on another node",
                       [r for r in runs if not r["killed_controller"]]))
    else:
        groups.append((label, runs))
for label, runs in groups:
    if runs:
        failover = ", ".join("%.0f" % r["failover_ms"] for r in runs)
        gap = ", ".join("%.0f" % (r["ack_gap_ms"] or 0) for r in runs)
        controller = ", ".join(str(r["killed_controller"]) for r in runs)
        errors = ", ".join(str(r["errors"]) for r in runs)
        print(f"{label}: failover ms (kill → first ack) {failover}; ack gap ms {gap}; "
              f"killed the controller {controller}; failed records {errors}")
EOF
log "results in $out"
