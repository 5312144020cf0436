"""franz-go's client integration test suite (github.com/twmb/franz-go/pkg/kgo, pinned in
tests/kafka/franz-go/go.mod) against a Ledge node's Kafka listener, judged by the allow-list
tests/kafka/franz-go-allow.txt, as Kafka-compatible brokers run it (franz-go's own CI runs
the same tests against Kafka, Redpanda and kfake with KGO_SEEDS and KGO_TEST_RF=1).

Usage: franz_go_suite.py BOOTSTRAP_SERVERS short|full

  short  the allowed tests not marked `slow`, with KGO_TEST_RECORDS=2000 (CI)
  full   every test of the package with KGO_TEST_RECORDS=20000: also says which tests the
         allow-list marks as known failures now pass

The test binary is built by .ci/run (`go test -c`, from the Go module proxy) into
target/franz-go/kgo.test (or LEDGE_FRANZ_GO_TEST_BINARY); this script downloads nothing.
It runs the binary in the package's source directory (some tests read their sources) and
fails when an allowed test fails, is skipped or does not report; the last line is "OK"
otherwise.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from scenario_checks import check

WORKSPACE = Path(__file__).resolve().parents[2]
SUITE_MODULE = WORKSPACE / "tests/kafka/franz-go"
ALLOW_LIST = WORKSPACE / "tests/kafka/franz-go-allow.txt"
PACKAGE = "github.com/twmb/franz-go/pkg/kgo"
BINARY = Path(
    os.environ.get("LEDGE_FRANZ_GO_TEST_BINARY", WORKSPACE / "target/franz-go/kgo.test")
)
# Records per ETL chain (franz-go's default is 500,000, for a release broker with time to
# spare): enough for several fetches and rebalances per group, bounded for a debug node.
RECORDS = {"short": 2000, "full": 20000}
# The whole run's timeout (Go's -test.timeout: on expiry it names the tests still running).
# The short run takes about 1 min on the shared 2-core CI machine; the full run waits this
# long for TestTxnEtl, which hangs without transactions (see the allow-list).
TIMEOUT = {"short": "4m", "full": "6m"}
OUTPUT_TAIL_CHARS = 30000

RESULT = re.compile(r"^--- (PASS|FAIL|SKIP): (\S+) ")
TIMED_OUT_RUNNING = re.compile(r"^\s+(Test\S+) \(")


def read_allow_list():
    """(allowed: name -> slow?, known failures: name -> reason)."""
    allowed, known = {}, {}
    for number, raw in enumerate(ALLOW_LIST.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("!"):
            name, _, reason = line[1:].partition(" ")
            check(reason.strip() != "", f"{ALLOW_LIST.name}:{number}: a known failure needs a reason")
            known[name] = reason.strip()
            continue
        words = line.split()
        check(
            len(words) == 1 or (len(words) == 2 and words[1] == "slow"),
            f"{ALLOW_LIST.name}:{number}: expected 'TestName' or 'TestName slow': {raw!r}",
        )
        allowed[words[0]] = len(words) == 2
    check(not set(allowed) & set(known), f"tests both allowed and known to fail: {set(allowed) & set(known)}")
    return allowed, known


def package_dir():
    """The pinned franz-go's pkg/kgo sources in the module cache (no download: GOPROXY=off)."""
    env = dict(os.environ, GOFLAGS="-mod=readonly", GOPROXY="off")
    listed = subprocess.run(
        ["go", "list", "-f", "{{.Dir}}", PACKAGE],
        cwd=SUITE_MODULE,
        env=env,
        capture_output=True,
        text=True,
    )
    check(
        listed.returncode == 0 and listed.stdout.strip() != "",
        f"the pinned franz-go is not in the Go module cache (.ci/run downloads it): {listed.stderr.strip()}",
    )
    return listed.stdout.strip()


def parse(output):
    """Top-level results: name -> PASS/FAIL/SKIP, and the tests a timeout cut short."""
    results, timed_out, in_timeout = {}, [], False
    for line in output.splitlines():
        match = RESULT.match(line)
        if match:
            results[match.group(2)] = match.group(1)
        if line.startswith("panic: test timed out"):
            in_timeout = True
        elif in_timeout:
            running = TIMED_OUT_RUNNING.match(line)
            if running and "/" not in running.group(1):
                timed_out.append(running.group(1))
    return results, timed_out


def main():
    bootstrap, mode = sys.argv[1], sys.argv[2]
    check(mode in RECORDS, f"mode is short or full, not {mode!r}")
    check(BINARY.is_file(), f"no franz-go test binary at {BINARY} (.ci/run builds it)")
    allowed, known = read_allow_list()
    command = [str(BINARY), "-test.v", "-test.timeout", TIMEOUT[mode], "-test.count", "1"]
    if mode == "short":
        names = sorted(name for name, slow in allowed.items() if not slow)
        command += ["-test.run", "^(" + "|".join(names) + ")$"]
    env = dict(
        os.environ,
        KGO_SEEDS=bootstrap,
        KGO_TEST_RF="1",
        KGO_TEST_RECORDS=str(RECORDS[mode]),
        KGO_LOG_LEVEL="none",
    )
    print(f"running: {' '.join(command)}", flush=True)
    run = subprocess.run(
        command, cwd=package_dir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = run.stdout
    results, timed_out = parse(output)

    expected = [name for name, slow in allowed.items() if mode == "full" or not slow]
    bad = []
    for name in sorted(expected):
        result = results.get(name)
        if result is None:
            result = "TIMED OUT" if name in timed_out else "NO RESULT"
        print(f"allowed  {result:9} {name}", flush=True)
        if result != "PASS":
            bad.append(f"{name}: {result}")
    if mode == "full":
        for name in sorted(known):
            result = results.get(name) or ("TIMED OUT" if name in timed_out else "NO RESULT")
            note = "  <- passes now: make it an allowed line" if result == "PASS" else ""
            print(f"known    {result:9} {name}: {known[name]}{note}", flush=True)
        unlisted = {name: result for name, result in results.items() if name not in allowed and name not in known}
        unlisted_passed = sorted(name for name, result in unlisted.items() if result == "PASS")
        unlisted_other = sorted(f"{name} ({result})" for name, result in unlisted.items() if result != "PASS")
        print(f"unlisted (franz-go's unit tests, no broker): {len(unlisted_passed)} passed", flush=True)
        if unlisted_other:
            print(f"unlisted, not passing: {', '.join(unlisted_other)}", flush=True)
    if bad:
        print(output[-OUTPUT_TAIL_CHARS:], flush=True)
    check(not bad, f"allowed franz-go tests did not pass: {'; '.join(bad)}")
    print("OK", flush=True)


main()
