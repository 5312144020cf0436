#!/usr/bin/env bash
# The node CPU that mTLS + authorization cost, per record (issue 15: "produce and fetch
# throughput with mTLS and ACLs on within 5% of the same run without them").
#
#   benches/scripts/security_cpu.sh [ROUNDS] [RECORDS]    # defaults 7, 500000
#
# Throughput on a shared 2-core machine swings ±20% between identical runs, so this script
# measures what the security work would take away from throughput: the node process's CPU
# time (utime + stime from /proc/PID/stat, 10 ms ticks) per million records, which other
# load on the machine changes far less than it changes records/s.
#
# Two release nodes side by side on loopback, data directories on tmpfs (/dev/shm: no disk
# in the picture, fsync is free):
#   open     no client authentication, authorization off (the loopback default);
#   secured  client_auth = "required" (mTLS), allow_anonymous = false, authorization = true,
#            100 ACLs: the bench's principal allowed All on its topics and group (prefixed,
#            not a super user, so every request is checked), plus 98 ACLs of other
#            principals (literal and prefixed) so the authorizer has bindings to look past.
# Each round runs `ledge-bench produce --records RECORDS` (1 KiB, acks=all, idempotent) and
# then `consume` of that topic against each node, the order alternating (open secured,
# secured open, ...), reads the node's CPU before and after each, deletes the topic and
# restarts the node on the same data directory (a deleted topic's segment files stay open
# in the node until it restarts, so on tmpfs they would keep holding RAM: found with this
# script), and prints node CPU seconds per million records and the secured/open ratio for
# the round. At the end: the median ratio and its spread, per workload and for both.
#
# Binaries from $LEDGE_BIN (default target/release: `cargo build --release -p ledge-node
# -p ledge-client -p ledge-benches --bins`). Per-run JSON lines of ledge-bench (with its own
# --node-pid CPU figures for the measured part) land in target/bench-runs/security-cpu-<time>/.
set -euo pipefail

rounds=${1:-7}
records=${2:-500000}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LEDGE_BIN:-$workspace/target/release}
out=$workspace/target/bench-runs/security-cpu-$(date +%Y%m%d-%H%M%S)
scratch=$(mktemp -d /dev/shm/ledge-security-cpu.XXXXXX)
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
    # Field 2 (comm) is in parentheses and may hold spaces: split after its closing one.
    local stat
    stat=$(cat "/proc/$1/stat")
    stat=${stat##*) }
    # After comm: state is field 3, so utime (14) and stime (15) are the 12th and 13th here.
    awk '{print $12 + $13}' <<<"$stat"
}

start_node() { # name, port, [config text]
    local name=$1 port=$2 config=${3:-}
    local dir=$scratch/$name
    mkdir -p "$dir"
    local args=(--data-dir "$dir/data" --listen "127.0.0.1:$port")
    if [ -n "$config" ]; then
        printf '%s\n' "$config" >"$dir/node.toml"
    fi
    if [ -f "$dir/node.toml" ]; then
        args+=(--config "$dir/node.toml")
    fi
    echo "$port" >"$dir/port"
    : >"$out/$name-node.log.now"
    "$bin/ledge-node" "${args[@]}" >"$out/$name-node.log.now" 2>&1 &
    pids+=($!)
    eval "${name}_pid=$!"
    for _ in $(seq 1 100); do
        if [ -f "$dir/data/tls/ca.pem" ] && grep -q "listening\|serving" "$out/$name-node.log.now"; then
            cat "$out/$name-node.log.now" >>"$out/$name-node.log"
            return 0
        fi
        sleep 0.1
    done
    echo "node $name did not start; see $out/$name-node.log" >&2
    exit 1
}

start_node open 19791
start_node secured 19792 '[security]
client_auth = "required"
allow_anonymous = false
authorization = true
super_users = ["User:admin"]'
certs=$scratch/certs
mkdir -p "$certs"
for name in admin bench; do
    "$bin/ledge-node" cert issue --data-dir "$scratch/secured/data" --name "$name" --out "$certs" >/dev/null
done
open_conn=(--server 127.0.0.1:19791 --ca "$scratch/open/data/tls/ca.pem")
secured_ca=$scratch/secured/data/tls/ca.pem
as_admin=(--server 127.0.0.1:19792 --ca "$secured_ca" --cert "$certs/admin.pem" --key "$certs/admin.key")
# The bench's principal: every operation on its topics and group (prefixed), as an
# application would get.
"$bin/ledge" "${as_admin[@]}" acl add --allow-principal User:bench --operation All \
    --topic ledge-bench --resource-pattern-type prefixed >/dev/null
"$bin/ledge" "${as_admin[@]}" acl add --allow-principal User:bench --operation All \
    --group ledge-bench --resource-pattern-type prefixed >/dev/null
# 98 more for other principals: literal Read/Write on their own topics, some prefixed.
for i in $(seq 1 49); do
    "$bin/ledge" "${as_admin[@]}" acl add --allow-principal "User:app$i" --operation Write \
        --topic "app$i-orders" >/dev/null
    "$bin/ledge" "${as_admin[@]}" acl add --allow-principal "User:app$i" --operation Read \
        --topic "app$i-" --resource-pattern-type prefixed >/dev/null
done
acls=$("$bin/ledge" "${as_admin[@]}" acl list | grep -c "User:" || true)
echo "secured node: $acls ACL lines listed" >&2

bench() { # name, workload args...
    local name=$1
    shift
    local conn=("${open_conn[@]}" --node-pid "$open_pid")
    if [ "$name" = secured ]; then
        conn=(--server 127.0.0.1:19792 --ca "$secured_ca" --cert "$certs/bench.pem"
            --key "$certs/bench.key" --node-pid "$secured_pid")
    fi
    "$bin/ledge-bench" "${conn[@]}" --json --quiet "$@"
}

delete_topic() { # name, topic
    if [ "$1" = secured ]; then
        "$bin/ledge" "${as_admin[@]}" topic delete "$2" >/dev/null
    else
        "$bin/ledge" "${open_conn[@]}" topic delete "$2" >/dev/null
    fi
}

results=$out/cpu.tsv
printf 'round\tnode\tworkload\tcpu_ticks\trecords\n' >"$results"
printf '%-6s %-8s %14s %14s %8s\n' round workload "open s/Mrec" "secured s/Mrec" ratio
for round in $(seq 1 "$rounds"); do
    order=(open secured)
    [ $((round % 2)) -eq 0 ] && order=(secured open)
    for name in "${order[@]}"; do
        pid_var=${name}_pid
        pid=${!pid_var}
        topic=ledge-bench-r$round
        before=$(cpu_ticks "$pid")
        bench "$name" produce --topic "$topic" --records "$records" >>"$out/$name-produce.jsonl"
        middle=$(cpu_ticks "$pid")
        bench "$name" consume --topic "$topic" >>"$out/$name-consume.jsonl"
        after=$(cpu_ticks "$pid")
        printf '%s\t%s\tproduce\t%s\t%s\n' "$round" "$name" $((middle - before)) "$records" >>"$results"
        printf '%s\t%s\tconsume\t%s\t%s\n' "$round" "$name" $((after - middle)) "$records" >>"$results"
        delete_topic "$name" "$topic"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        start_node "$name" "$(cat "$scratch/$name/port")"
    done
    python3 - "$results" "$round" "$ticks_per_s" <<'EOF'
import csv, sys
path, round_, hz = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [r for r in csv.DictReader(open(path), delimiter="\t") if r["round"] == round_]
per = {(r["node"], r["workload"]): int(r["cpu_ticks"]) / hz / (int(r["records"]) / 1e6) for r in rows}
for workload in ("produce", "consume"):
    o, s = per[("open", workload)], per[("secured", workload)]
    print(f"{round_:<6} {workload:<8} {o:14.3f} {s:14.3f} {s / o:8.3f}")
EOF
done

python3 - "$results" "$ticks_per_s" <<'EOF'
import csv, statistics, sys
path, hz = sys.argv[1], float(sys.argv[2])
rows = list(csv.DictReader(open(path), delimiter="\t"))
cpu = {}
for r in rows:
    cpu[(r["round"], r["node"], r["workload"])] = int(r["cpu_ticks"]) / hz / (int(r["records"]) / 1e6)
rounds = sorted({r["round"] for r in rows}, key=int)
print()
for workload in ("produce", "consume", "both"):
    def of(round_, node):
        if workload == "both":
            return cpu[(round_, node, "produce")] + cpu[(round_, node, "consume")]
        return cpu[(round_, node, workload)]
    ratios = [of(r, "secured") / of(r, "open") for r in rounds]
    opens = [of(r, "open") for r in rounds]
    secureds = [of(r, "secured") for r in rounds]
    print(f"{workload:<8} node CPU s per million records: open median {statistics.median(opens):.3f} "
          f"({min(opens):.3f}-{max(opens):.3f}), secured median {statistics.median(secureds):.3f} "
          f"({min(secureds):.3f}-{max(secureds):.3f}); secured/open per round median "
          f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
EOF
echo "results: $out" >&2
