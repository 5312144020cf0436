#!/usr/bin/env bash
# Runs the fio baseline and the criterion storage benchmarks back to back, ROUNDS times, and
# prints one table per round with ratios taken within that round (the machines are noisy).
#
#   benches/scripts/compare-fio.sh [ROUNDS]        # default 3
#
# Scratch files go under $LEDGE_BENCH_DIR (default: the workspace's target/), on the same
# filesystem the criterion benchmarks use. Results land in target/bench-runs/<time>/.
set -euo pipefail

rounds=${1:-3}
workspace=$(cd "$(dirname "$0")/../.." && pwd)
scratch_root=${LEDGE_BENCH_DIR:-$workspace/target}
fio_dir=$scratch_root/fio-bench
out=$workspace/target/bench-runs/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

fio_run() { # name, extra fio arguments...
    local name=$1
    shift
    rm -rf "$fio_dir" && mkdir -p "$fio_dir"
    fio --name="$name" --directory="$fio_dir" --rw=write --bs=1M --size=1G --unlink=1 \
        --output-format=json "$@" >"$round_dir/fio-$name.json"
}

cd "$workspace"
cargo bench -p ledge-benches --bench storage --no-run
for round in $(seq 1 "$rounds"); do
    round_dir=$out/round-$round
    mkdir -p "$round_dir"
    echo "== round $round: fio" >&2
    fio_run seqsync-psync --fdatasync=1 --ioengine=psync
    fio_run seqsync-io_uring --fdatasync=1 --ioengine=io_uring
    fio_run seqsync-psync-nofallocate --fdatasync=1 --ioengine=psync --fallocate=none
    fio_run seqsync4m-psync --fdatasync=1 --ioengine=psync --bs=4M
    fio_run write-endfsync-psync --fdatasync=0 --end_fsync=1 --ioengine=psync
    fio_run write-endfsync-io_uring --fdatasync=0 --end_fsync=1 --ioengine=io_uring
    fio_run write-nosync-psync --fdatasync=0 --end_fsync=0 --ioengine=psync
    echo "== round $round: criterion" >&2
    rm -rf target/criterion
    cargo bench -p ledge-benches --bench storage >"$round_dir/criterion.txt" 2>&1
    cp -r target/criterion "$round_dir/criterion"
    echo "== round $round: fio after" >&2
    fio_run seqsync-psync-after --fdatasync=1 --ioengine=psync
    python3 "$workspace/benches/scripts/summarize.py" "$round_dir" | tee "$round_dir/summary.md"
done
rm -rf "$fio_dir"
echo "results: $out" >&2
