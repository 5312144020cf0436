"""Faust's recovery race, tallied on Ledge and on Kafka's broker: runs
`faust_scenarios.py ... restart-backlog` (the second run's orders sent while the worker is
stopped) against a fresh ledge-node and a fresh Apache Kafka 4.1.1 broker (single-node
KRaft, started as tests/kafka/differential.py starts it), alternating, and prints per run
whether it passed and which orders the repartition topic held twice or never. The evidence
for docs/KAFKA-COMPAT.md, "Faust": the failures are Faust's, not the broker's.

    python3 tests/kafka/faust_restart_race.py RUNS [--targets ledge,kafka] [--keep]

With `--keep` the workers' logs stay (their directory is printed); with
`LEDGE_FAUST_LOG_LEVEL=debug` they hold aiokafka's requests and answers.

Not run in CI (a run is 30-75 s per broker); the CI test runs `restart`, which avoids the
race. Needs the venv of .ci/run (Faust, kafka-python) and the jars in target/kafka-java/lib.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import differential

ROOT = differential.ROOT
SCENARIOS = os.path.join(ROOT, "tests/kafka/faust_scenarios.py")
# A scenario run that waits out every one of its 60 s waits still ends well before this.
RUN_MAX_S = 400


def run_once(args, target, work_dir):
    """One restart-backlog run against a fresh server: (passed, the failure line, the
    orders forwarded twice, the orders never forwarded)."""
    # The servers' own directories go either way (`--keep` keeps the workers' logs).
    servers = differential.Servers(argparse.Namespace(**{**vars(args), "keep": False}))
    try:
        bootstrap = servers.start_kafka() if target == "kafka" else servers.start_ledge()
        result = subprocess.run(
            [args.python, SCENARIOS, bootstrap, work_dir, "restart-backlog"],
            capture_output=True, text=True, timeout=RUN_MAX_S)
    finally:
        servers.remove()
    lines = result.stdout.splitlines()
    passed = result.returncode == 0 and "OK" in lines
    failure = next((line for line in lines if line.startswith("FAIL:")), "")
    twice, never = "", ""
    for line in lines:
        found = re.match(r"orders in the repartition topic twice: (\[.*\]); never: (\[.*\])", line)
        if found:
            twice, never = found.groups()
    return passed, failure, twice, never


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=int, help="runs per broker")
    parser.add_argument("--targets", default="ledge,kafka")
    parser.add_argument("--python", default=os.path.join(ROOT, "target/kafka-venv/bin/python"))
    parser.add_argument("--ledge-node", default=os.path.join(ROOT, "target/debug/ledge-node"))
    parser.add_argument("--lib", default=os.path.join(ROOT, "target/kafka-java/lib"))
    parser.add_argument("--java", default="java")
    parser.add_argument("--keep", action="store_true", help="keep the workers' logs")
    args = parser.parse_args()
    targets = args.targets.split(",")
    failed = {target: 0 for target in targets}
    directory = tempfile.mkdtemp(prefix="faust-race-")
    try:
        for run in range(1, args.runs + 1):
            for target in targets:
                started = time.monotonic()
                work_dir = os.path.join(directory, f"{target}-{run}")
                passed, failure, twice, never = run_once(args, target, work_dir)
                failed[target] += not passed
                outcome = "pass" if passed else f"{failure} twice: {twice} never: {never}"
                print(f"{target} run {run}: {time.monotonic() - started:.0f} s {outcome}",
                      flush=True)
    finally:
        if args.keep:
            print(f"workers' logs in {directory}", flush=True)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    for target in targets:
        print(f"{target}: {failed[target]} of {args.runs} runs failed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
