#!/usr/bin/env python3
"""Issue 17's stateful benchmark: Ledge's aggregate transform against its stateless filter and
against Kafka Streams on Apache Kafka, side by side in one run; then a state of 1,000,000 keys
restored at a node start (keys/s) and its memory.

    cargo build --release -p ledge-node -p ledge-client -p ledge-benches \\
        --bin ledge-node --bin ledge --bin ledge-bench
    cargo build --manifest-path filters/Cargo.toml --release --target wasm32-unknown-unknown
    target/kafka-venv/bin/python benches/scripts/streams_compare.py          # about 5 min
    target/kafka-venv/bin/python benches/scripts/streams_compare.py --quick  # smoke, ~2 min

Needs what `.ci/run` installs: the Kafka 4.x jars (broker, clients, Kafka Streams) in
target/kafka-java/lib, confluent-kafka in target/kafka-venv, and javac (StreamsBench.java is
compiled into the run's directory).

Throughput (part 1 and 2). Two servers run for the whole comparison, on this machine and on
the same filesystem (target/streams-compare-runs/<time>/): `ledge`, a release ledge-node with
its defaults (every commit fdatasync'd), and `kafka`, a single-node KRaft broker with its
defaults (acks=all from the page cache) plus group.initial.rebalance.delay.ms=0. The input,
`--records` JSON orders `{"order_id":n,"customer_id":n % customers,"amount":..,"note":"x.."}`
of 1 KiB (every other one above the filter's threshold of 1000), keyed by the order id, one
partition, is written to both first by the same librdkafka producer (acks=all; through Ledge's
Kafka listener), and each repetition then times, over that input already written:
  - ledge filter: filters/high-value-orders as a stateless transform (ledge-bench
    `transform --until lag`: input position at the end, outputs written);
  - ledge count: filters/order-counts as an aggregate transform (`--kind aggregate`; re-keyed
    by customer through its repartition topic; `--until table-sum`: its table's counts add up
    to the record count, i.e. every record folded and committed);
  - ks filter: Kafka Streams `stream.filter(amount > 1000).to(..)`, done when its committed
    input offset is at the end;
  - ks count: Kafka Streams `groupBy(customerId).count()` into a KTable, done when its
    committed input offset is at the end and the KTable's counts add up to the record count.
Throughput is input records / (done - the first progress seen), which leaves out each one's
start (module compilation and task start; the JVM, the group join and the topology start);
the time from the start is reported beside it. Measured on input already written (not while
producing) so all four read the same bytes at their own pace, none is held to a producer's
rate, and the producer's CPU does not compete with them on this 2-core machine. The CPU time
of the node, of the Kafka broker and of the Streams JVM over each measurement is reported too.

Restore (part 3), Ledge only, on a node of its own: the aggregate is deployed on an empty
topic (RSS read), `--restore-keys` orders of distinct customers are written and counted (RSS
read again; the node's `state_bytes`), the node is stopped and started, and ledge-bench
`restore` waits until the state partition is restored (from the node's start) and checks a
sample of 1,000 keys; RSS read a third time. RSS is VmRSS and RssAnon of /proc/<pid>/status.

Results: results.jsonl (one line per measurement), summary.md (medians and the ratios of the
same repetition), the servers' logs, machine.txt.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_compare  # noqa: E402  (its Servers start ledge-node and the Kafka broker)
from kafka_compare import Servers, create_topic, log, wait_for_port  # noqa: E402
from differential import die_with_parent  # noqa: E402  (on the path kafka_compare set)

MODULES = os.path.join(ROOT, "filters/target/wasm32-unknown-unknown/release")
THRESHOLD = 1000
# A measurement still going after this is killed (the tools' own timeouts come first).
RUN_MAX_S = 900
STREAMS_JVM = ["-Xmx1g"]
KAFKA_EXTRA = ["group.initial.rebalance.delay.ms=0"]


def order_value(n, customers, size):
    amount = 250.5 if n % 2 == 0 else 1750.25
    head = f'{{"order_id":{n},"customer_id":{n % customers},"amount":{amount},"note":"'
    return (head + "x" * max(0, size - len(head) - 2) + '"}').encode()


def produce_orders(bootstrap, topic, count, customers, size):
    """`count` orders to partition 0 of `topic`, acks=all; returns records/s."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "batch.size": 1_000_000, "enable.idempotence": True})
    failed = []

    def on_delivery(error, _message):
        if error is not None:
            failed.append(str(error))

    started = time.perf_counter()
    for n in range(count):
        value = order_value(n, customers, size)
        while True:
            try:
                producer.produce(topic, value, key=str(n).encode(), partition=0,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(300)
    if failed:
        sys.exit(f"producing {topic}: {failed[:3]}")
    return count / (time.perf_counter() - started)


def high_watermark(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "streams-compare-watch"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in metadata.partitions)
    finally:
        consumer.close()


def cpu_seconds(pid):
    """utime + stime of a live process, seconds (proc_pid_stat(5) fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss(pid):
    """VmRSS and RssAnon of a process, bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def run_json(command, what):
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_MAX_S)
    if result.returncode != 0:
        sys.exit(f"{what} failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
                 f"{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def ledge_bench(args, ledge, arguments):
    return run_json([args.ledge_bench, "--server", ledge["quic"], "--ca", ledge["ca"], "--quiet",
                     "--json", *arguments], f"ledge-bench {arguments[0]}")


def ledge_cli(args, ledge, arguments):
    result = subprocess.run([args.ledge, "--server", ledge["quic"], "--ca", ledge["ca"],
                             *arguments], capture_output=True, text=True, timeout=RUN_MAX_S)
    if result.returncode != 0:
        sys.exit(f"ledge {' '.join(arguments)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def measured(processes, run):
    """Runs `run()`; adds the CPU seconds of `processes` (name -> pid) and of this script's
    children (the Streams JVM) over it to its result."""
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    children = children_cpu_seconds()
    result = run()
    for name, pid in processes.items():
        result[f"{name}_cpu_s"] = round(cpu_seconds(pid) - before[name], 3)
    result["children_cpu_s"] = round(children_cpu_seconds() - children, 3)
    return result


def ledge_transform(args, ledge, rep, kind):
    module, name, extra = {
        "filter": ("high_value_orders.wasm", f"hv-{rep}",
                   ["--kind", "filter", "--param", f"threshold={THRESHOLD}", "--until", "lag"]),
        "count": ("order_counts.wasm", f"counts-{rep}",
                  ["--kind", "aggregate", "--until", "table-sum"]),
    }[kind]
    return measured({"node": ledge["pid"]}, lambda: ledge_bench(args, ledge, [
        "transform", "--name", name, "--module", os.path.join(MODULES, module),
        "--input", "orders", "--output", f"{name}-out", "--remove", *extra]))


def streams_app(args, kafka, rep, kind):
    state = os.path.join(args.out, f"streams-state-{kind}-{rep}")
    command = [args.java, *STREAMS_JVM, "-cp",
               os.pathsep.join([args.classes, os.path.join(args.lib, "*")]), "StreamsBench",
               kafka["bootstrap"], kind, "orders", f"ks-{kind}-{rep}-out", str(args.records),
               state, args.guarantee]
    result = measured({"broker": kafka["pid"]},
                      lambda: run_json(command, f"Kafka Streams {kind}"))
    shutil.rmtree(state, ignore_errors=True)
    return result


def restore_phase(args, servers, record):
    """A node of its own: RSS with the aggregate deployed and no state, after counting
    `--restore-keys` distinct customers, and after a restart restored them."""
    keys = args.restore_keys
    ledge = servers.start_ledge("ledge-restore")
    ledge_cli(args, ledge, ["topic", "create", "restore-orders", "--partitions", "1"])
    ledge_cli(args, ledge, ["transform", "deploy", "counts", "--module",
                            os.path.join(MODULES, "order_counts.wasm"), "--kind", "aggregate",
                            "--input", "restore-orders", "--output", "restore-counts"])
    time.sleep(2)
    empty = rss(ledge["pid"])
    log(f"restore: writing {keys:,} orders of distinct customers")
    produce_orders(ledge["bootstrap"], "restore-orders", keys, keys, 0)
    started = time.monotonic()
    while high_watermark(ledge["bootstrap"], "restore-counts") < keys:
        if time.monotonic() - started > RUN_MAX_S:
            sys.exit("restore: the aggregate never counted every order")
        time.sleep(0.5)
    build_s = time.monotonic() - started
    live = rss(ledge["pid"])
    description = json.loads(ledge_cli(args, ledge, ["transform", "describe", "counts",
                                                     "--format", "json"]))
    log("restore: restarting the node")
    process = next(p for p in servers.processes if p.pid == ledge["pid"])
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    port = int(ledge["quic"].rsplit(":", 1)[1])
    data = os.path.join(args.out, "ledge-restore-data")
    started_at_ms = int(time.time() * 1000)
    process = subprocess.Popen(
        [args.ledge_node, "--data-dir", data, "--listen", f"127.0.0.1:{port}"],
        stdout=open(os.path.join(args.out, "ledge-restore-2.log"), "w"),
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    servers.processes.append(process)
    result = ledge_bench(args, ledge, [
        "restore", "--name", "counts", "--keys", str(keys), "--started-at-ms",
        str(started_at_ms), "--sample", "1000", "--expect-value", "1"])
    wait_for_port(port, process, "ledge-restore-2.log")
    restored = rss(process.pid)
    row = {
        **result,
        "keys": keys,
        "build_s": round(build_s, 3),
        "state_bytes_live": description.get("state_bytes"),
        "rss_empty": empty, "rss_live": live, "rss_restored": restored,
        "rss_per_1m_keys_restored": round((restored["VmRSS"] - empty["VmRSS"]) * 1e6 / keys),
        "rss_anon_per_1m_keys_restored":
            round((restored["RssAnon"] - empty["RssAnon"]) * 1e6 / keys),
        "rss_per_1m_keys_live": round((live["VmRSS"] - empty["VmRSS"]) * 1e6 / keys),
        "state_bytes_per_1m_keys": round(result["state_bytes"] * 1e6 / keys),
    }
    record("ledge", "restore", 1, row)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)


def summarize(out, rows):
    lines = [open(os.path.join(out, "machine.txt")).read()]
    by = {}
    for row in rows:
        by.setdefault(row["measure"], []).append(row)

    def series(measure, key="records_per_s_after_first"):
        return [row[key] for row in sorted(by.get(measure, []), key=lambda r: r["rep"])]

    def fmt(values, digits=0):
        return ", ".join(f"{v:,.{digits}f}" for v in values)

    lines.append("| input records/s (from the first progress) | per repetition | median |")
    lines.append("|---|---|---|")
    for measure in ("ledge-filter", "ledge-count", "ks-filter", "ks-count"):
        values = series(measure)
        if values:
            lines.append(f"| {measure} | {fmt(values)} | {statistics.median(values):,.0f} |")
    for measure in ("ledge-filter", "ledge-count", "ks-filter", "ks-count"):
        values = series(measure, "records_per_s")
        if values:
            lines.append(f"| {measure}, from its start | {fmt(values)} | "
                         f"{statistics.median(values):,.0f} |")
    for top, bottom in (("ledge-count", "ledge-filter"), ("ks-count", "ks-filter"),
                        ("ledge-count", "ks-count"), ("ledge-filter", "ks-filter")):
        a, b = series(top), series(bottom)
        if a and len(a) == len(b):
            ratios = [x / y for x, y in zip(a, b)]
            lines.append(f"| ratio {top} / {bottom} | {fmt(ratios, 2)} | "
                         f"{statistics.median(ratios):.2f} |")
    lines.append("\n| CPU µs per input record | per repetition | median |")
    lines.append("|---|---|---|")
    for measure, keys in (("ledge-filter", ["node_cpu_s"]), ("ledge-count", ["node_cpu_s"]),
                          ("ks-filter", ["children_cpu_s", "broker_cpu_s"]),
                          ("ks-count", ["children_cpu_s", "broker_cpu_s"])):
        values = [sum(row[k] for k in keys) * 1e6 / row["records"]
                  for row in sorted(by.get(measure, []), key=lambda r: r["rep"])]
        if values:
            label = "node" if keys == ["node_cpu_s"] else "Streams JVM + broker"
            lines.append(f"| {measure} ({label}) | {fmt(values, 1)} | "
                         f"{statistics.median(values):,.1f} |")
    for row in by.get("restore", []):
        mib = 1024 * 1024
        lines.append("\n| restore (Ledge) | value |")
        lines.append("|---|---|")
        lines.append(f"| keys | {row['keys']:,} |")
        lines.append(f"| restore time from node start | {row['elapsed_s']:.2f} s |")
        lines.append(f"| restore rate | {row['records_per_s']:,.0f} keys/s |")
        lines.append(f"| changelog records read | {row['restore_records']:,} "
                     f"({row['restore_records_per_s']:,.0f}/s) |")
        lines.append(f"| state bytes (node's accounting) per 1M keys | "
                     f"{row['state_bytes_per_1m_keys'] / mib:,.1f} MiB |")
        lines.append(f"| RSS after restore minus RSS with empty state, per 1M keys | "
                     f"{row['rss_per_1m_keys_restored'] / mib:,.1f} MiB (anon "
                     f"{row['rss_anon_per_1m_keys_restored'] / mib:,.1f} MiB) |")
        lines.append(f"| same, live after counting (before the restart) | "
                     f"{row['rss_per_1m_keys_live'] / mib:,.1f} MiB |")
        lines.append(f"| RSS: empty / live / restored | {row['rss_empty']['VmRSS'] / mib:,.0f}"
                     f" / {row['rss_live']['VmRSS'] / mib:,.0f} / "
                     f"{row['rss_restored']['VmRSS'] / mib:,.0f} MiB |")
        lines.append(f"| counting them (build) | {row['build_s']:.1f} s |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--customers", type=int, default=1000,
                        help="distinct customer ids in the throughput input")
    parser.add_argument("--restore-keys", type=int, default=1_000_000)
    parser.add_argument("--guarantee", default="at_least_once",
                        choices=["at_least_once", "exactly_once_v2"],
                        help="Kafka Streams' processing.guarantee")
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="1 repetition of 50,000 records, a restore of 100,000 keys")
    parser.add_argument("--ledge-node", default=os.path.join(ROOT, "target/release/ledge-node"))
    parser.add_argument("--ledge", default=os.path.join(ROOT, "target/release/ledge"))
    parser.add_argument("--ledge-bench", default=os.path.join(ROOT, "target/release/ledge-bench"))
    parser.add_argument("--lib", default=os.path.join(ROOT, "target/kafka-java/lib"))
    parser.add_argument("--java", default="java")
    parser.add_argument("--javac", default="javac")
    parser.add_argument("--out", default=os.path.join(
        ROOT, "target/streams-compare-runs", time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    if args.quick:
        args.reps, args.records, args.restore_keys = 1, 50_000, 100_000
    for path in (args.ledge_node, args.ledge, args.ledge_bench,
                 os.path.join(MODULES, "order_counts.wasm"),
                 os.path.join(MODULES, "high_value_orders.wasm")):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: build it first (see this script's help)")
    if not os.path.isdir(args.lib):
        sys.exit(f"{args.lib} is missing: run .ci/run's Maven step first")
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        sys.exit("confluent-kafka is missing: run this with target/kafka-venv/bin/python")
    os.makedirs(args.out)
    args.classes = os.path.join(args.out, "java-classes")
    subprocess.run([args.javac, "-d", args.classes, "-cp", os.path.join(args.lib, "*"),
                    os.path.join(ROOT, "benches/java/StreamsBench.java")], check=True)
    with open(os.path.join(args.out, "machine.txt"), "w") as machine:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), "?")
        filesystem = subprocess.run(["df", "-T", args.out], capture_output=True,
                                    text=True).stdout.splitlines()[-1].split()
        machine.write(f"commit={commit}\ncpus={os.cpu_count()}\ncpu={cpu}\n"
                      f"filesystem={filesystem[1]} on {filesystem[0]}\n"
                      f"date={time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}\n"
                      f"loadavg_start={open('/proc/loadavg').read().split()[:3]}\n"
                      f"records={args.records} record_bytes={args.record_bytes} "
                      f"customers={args.customers} restore_keys={args.restore_keys} "
                      f"streams_guarantee={args.guarantee}\n")
    servers = Servers(args, args.out)
    rows = []
    results = open(os.path.join(args.out, "results.jsonl"), "w")

    def record(server, measure, rep, result):
        row = {**result, "server": server, "measure": measure, "rep": rep}
        rows.append(row)
        results.write(json.dumps(row) + "\n")
        results.flush()
        print(json.dumps(row), file=sys.stderr, flush=True)

    try:
        if not args.skip_throughput:
            log("starting ledge and kafka")
            ledge = servers.start_ledge()
            kafka = servers.start_kafka("kafka", KAFKA_EXTRA)
            for name, target in (("ledge", ledge), ("kafka", kafka)):
                create_topic(target["bootstrap"], "orders")
                log(f"writing {args.records:,} orders of {args.record_bytes} B to {name}")
                rate = produce_orders(target["bootstrap"], "orders", args.records,
                                      args.customers, args.record_bytes)
                record(name, "write-input", 0, {"records_per_s": rate})
            for rep in range(1, args.reps + 1):
                for kind in ("filter", "count"):
                    log(f"repetition {rep}: ledge {kind}")
                    record("ledge", f"ledge-{kind}", rep, ledge_transform(args, ledge, rep, kind))
                    log(f"repetition {rep}: Kafka Streams {kind}")
                    record("kafka", f"ks-{kind}", rep, streams_app(args, kafka, rep, kind))
            servers.stop()
            servers.processes.clear()
        if not args.skip_restore:
            restore_phase(args, servers, record)
    finally:
        servers.stop()
        results.close()
    with open(os.path.join(args.out, "machine.txt"), "a") as machine:
        machine.write(f"loadavg_end={open('/proc/loadavg').read().split()[:3]}\n")
    summary = summarize(args.out, rows)
    open(os.path.join(args.out, "summary.md"), "w").write(summary)
    print(summary)
    log(f"results in {args.out}")
    for name in ("ledge-data", "ledge-restore-data", "kafka/logs"):
        shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)


if __name__ == "__main__":
    kafka_compare.TOOL_RUN_MAX_S = RUN_MAX_S
    sys.exit(main())
