#!/usr/bin/env bash
# Produce and consume throughput with and without security, side by side (issue 15: "produce
# and fetch throughput with mTLS and ACLs on within 5% of the same run without them").
#
#   benches/scripts/security_overhead.sh [ROUNDS] [RECORDS]    # defaults 3, 1000000
#
# Two nodes on loopback, each on its own data directory:
#   open     no client authentication, authorization off (the default on loopback);
#   secured  client_auth = "required" (mTLS), allow_anonymous = false, authorization = true,
#            the bench's principal allowed by ACLs (not a super user, so every request is
#            checked against the ACLs).
# Each round runs `ledge-bench produce` then `consume` against both, the order alternating per
# round, and prints the secured/open ratio of records/s measured within that round (the
# machines are noisy: compare ratios, not absolute numbers). Binaries from $LEDGE_BIN
# (default target/release: `cargo build --release -p ledge-node -p ledge-client -p ledge-benches`).
# Results (one JSON line per run) land in target/bench-runs/security-<time>/.
set -euo pipefail

rounds=${1:-3}
records=${2:-1000000}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LEDGE_BIN:-$workspace/target/release}
out=$workspace/target/bench-runs/security-$(date +%Y%m%d-%H%M%S)
scratch=$(mktemp -d /tmp/ledge-security-bench.XXXXXX)
mkdir -p "$out"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

start_node() { # name, port, [config text]
    local name=$1 port=$2 config=${3:-}
    local dir=$scratch/$name
    mkdir -p "$dir"
    local args=(--data-dir "$dir/data" --listen "127.0.0.1:$port")
    if [ -n "$config" ]; then
        printf '%s\n' "$config" >"$dir/node.toml"
        args+=(--config "$dir/node.toml")
    fi
    "$bin/ledge-node" "${args[@]}" >"$out/$name-node.log" 2>&1 &
    pids+=($!)
    eval "${name}_pid=$!"
    for _ in $(seq 1 100); do
        [ -f "$dir/data/tls/ca.pem" ] && grep -q "listening\|serving" "$out/$name-node.log" && return 0
        sleep 0.1
    done
    echo "node $name did not start; see $out/$name-node.log" >&2
    exit 1
}

start_node open 19781
start_node secured 19782 '[security]
client_auth = "required"
allow_anonymous = false
authorization = true
super_users = ["User:admin"]'
certs=$scratch/certs
mkdir -p "$certs"
for name in admin bench; do
    "$bin/ledge-node" cert issue --data-dir "$scratch/secured/data" --name "$name" --out "$certs" >/dev/null
done
secured_ca=$scratch/secured/data/tls/ca.pem
as_admin=(--server 127.0.0.1:19782 --ca "$secured_ca" --cert "$certs/admin.pem" --key "$certs/admin.key")
# The bench's principal: every operation on its topics (prefixed), as an application would get.
"$bin/ledge" "${as_admin[@]}" acl add --allow-principal User:bench --operation All \
    --topic ledge-bench --resource-pattern-type prefixed >/dev/null
"$bin/ledge" "${as_admin[@]}" acl add --allow-principal User:bench --operation All \
    --group ledge-bench --resource-pattern-type prefixed >/dev/null

bench() { # name, workload args...
    local name=$1
    shift
    local conn=(--server 127.0.0.1:19781 --ca "$scratch/open/data/tls/ca.pem" --node-pid "$open_pid")
    if [ "$name" = secured ]; then
        conn=(--server 127.0.0.1:19782 --ca "$secured_ca" --cert "$certs/bench.pem"
            --key "$certs/bench.key" --node-pid "$secured_pid")
    fi
    "$bin/ledge-bench" "${conn[@]}" --json --quiet "$@"
}

rate() { # the records/s of a JSON result line
    python3 -c 'import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(r["records_per_s"])'
}

printf '%-6s %-8s %14s %14s %8s\n' round workload "open rec/s" "secured rec/s" ratio
for round in $(seq 1 "$rounds"); do
    order=(open secured)
    [ $((round % 2)) -eq 0 ] && order=(secured open)
    declare -A produced=() consumed=()
    for name in "${order[@]}"; do
        topic=ledge-bench-r$round
        produced[$name]=$(bench "$name" produce --topic "$topic" --records "$records" \
            | tee -a "$out/$name-produce.jsonl" | rate)
        consumed[$name]=$(bench "$name" consume --topic "$topic" \
            | tee -a "$out/$name-consume.jsonl" | rate)
    done
    for workload in produce consume; do
        if [ $workload = produce ]; then open=${produced[open]} secured=${produced[secured]}
        else open=${consumed[open]} secured=${consumed[secured]}; fi
        ratio=$(python3 -c "print(f'{$secured / $open:.3f}')")
        printf '%-6s %-8s %14.0f %14.0f %8s\n' "$round" $workload "$open" "$secured" "$ratio"
    done
done
echo "results: $out" >&2
