#!/usr/bin/env python3
"""Ledge's Kafka listener against Apache Kafka's own broker, side by side in one run (issue 14).

    cargo build --release -p ledge-node -p ledge-benches --bin ledge-node --bin ledge-bench
    target/kafka-venv/bin/python benches/scripts/kafka_compare.py          # 3 repetitions
    target/kafka-venv/bin/python benches/scripts/kafka_compare.py --quick  # smoke run

Needs what `.ci/run` installs: the Kafka 4.x jars in target/kafka-java/lib (broker and tools,
tests/kafka/java/pom.xml) and confluent-kafka (librdkafka) in target/kafka-venv.

Three servers run for the whole comparison, on this machine and on the same filesystem
(under target/kafka-compare-runs/<time>/, not /tmp, which may be memory):
  - `ledge`: a release `ledge-node` with its built-in defaults (every acknowledged batch is
    fdatasync'd first); clients reach its Kafka listener;
  - `kafka`: a single-node KRaft Kafka broker with its defaults (acks=all is acknowledged
    from the page cache; the log is flushed by the OS, not per batch);
  - `kafka-fsync`: the same broker with `log.flush.interval.messages=1`, so every appended
    batch is fsync'd before it is acknowledged, as Ledge does.
Each repetition measures every server in turn, on fresh single-partition topics:
  1. produce: Kafka's `kafka-producer-perf-test` (ProducerPerformance), acks=all, the Java
     client's defaults otherwise (idempotence on, linger 5 ms, 16 KiB batches), closed loop;
  2. consume: Kafka's `kafka-consumer-perf-test` (ConsumerPerformance) reading those
     records back (fetch rate, excluding the group join);
  3. librdkafka produce: confluent-kafka (librdkafka) producing the same count, acks=all,
     librdkafka's defaults otherwise;
  4. end-to-end: librdkafka producer at 5,000 records/s open loop, acks=all, linger 0, and a
     librdkafka consumer on the partition's end in the same process: produce → consume
     latency percentiles.
and on `ledge` only, Ledge's native QUIC path with `ledge-bench` (same record size, acks=all):
  5. produce (closed loop, one producer) and e2e at 5,000 records/s (linger 0),
so the Kafka listener can be compared with the QUIC path in the same repetition.
With `--ledge-serial`, a fourth server, `ledge-serial`: the same build with
`[kafka] requests_in_flight_per_connection_max = 1`, so a connection's produces are answered one
at a time (no pipelining, as before issue 14's pipelining); measured for both producers
(1 and 3), to show what pipelining is worth in the same repetition.

Results: results.jsonl (one line per measurement), summary.md (medians and ratios of the
same repetition), the servers' logs, machine.txt.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The differential run's helpers: children that die with this script, a free loopback port.
sys.path.insert(0, os.path.join(ROOT, "tests", "kafka"))
from differential import die_with_parent, free_port  # noqa: E402
# `--ledge-serial`: a Kafka connection reads its next request only once the previous one is
# answered, as before produce pipelining; the same node and build otherwise.
SERIAL_CONFIG = "[kafka]\nrequests_in_flight_per_connection_max = 1\n"
# A tool run still going after this is killed (the tools' own timeouts come first).
TOOL_RUN_MAX_S = 600
SERVER_START_MAX_S = 120
# The JVM options of the tools (they are clients; a short start matters more than peak JIT
# for the admin calls, but the perf tools run long enough to JIT fully, so no tier limit).
TOOL_JVM = ["-Xmx512m"]
# What kafka-server-start.sh gives the broker.
BROKER_JVM = ["-Xmx1g", "-Xms1g"]
E2E_RATE = 5000


def log(message):
    print(f"== {message}", file=sys.stderr, flush=True)


def wait_for_port(port, process, log_path):
    deadline = time.monotonic() + SERVER_START_MAX_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"a server exited with {process.returncode}; see {log_path}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"no server on port {port} after {SERVER_START_MAX_S} s; see {log_path}")


class Servers:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.processes = []

    def classpath(self):
        return os.path.join(self.args.lib, "*")

    def start_ledge(self, name="ledge", config=None):
        port = free_port()
        data = os.path.join(self.out, f"{name}-data")
        log_path = os.path.join(self.out, f"{name}.log")
        command = [self.args.ledge_node, "--data-dir", data, "--listen", f"127.0.0.1:{port}"]
        if config is not None:
            config_path = os.path.join(self.out, f"{name}.toml")
            with open(config_path, "w") as out:
                out.write(config)
            command += ["--config", config_path]
        process = subprocess.Popen(
            command,
            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        self.processes.append(process)
        wait_for_port(port, process, log_path)
        return {"bootstrap": f"127.0.0.1:{port}", "quic": f"127.0.0.1:{port}",
                "ca": os.path.join(data, "tls", "ca.pem"), "pid": process.pid}

    def start_kafka(self, name, extra):
        port, controller = free_port(), free_port()
        directory = os.path.join(self.out, name)
        os.makedirs(directory)
        properties = os.path.join(directory, "server.properties")
        with open(properties, "w") as out:
            out.write("\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={os.path.join(directory, 'logs')}",
                # One node: the internal topics must fit on it.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                *extra,
                "",
            ]))
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [self.args.java, *TOOL_JVM, "-cp", self.classpath(), "kafka.tools.StorageTool",
             "format", "-t", cluster_id, "-c", properties],
            check=True, stdout=subprocess.DEVNULL, timeout=TOOL_RUN_MAX_S)
        log_path = os.path.join(directory, "kafka.log")
        process = subprocess.Popen(
            [self.args.java, *BROKER_JVM, "-cp", self.classpath(), "kafka.Kafka", properties],
            stdout=open(log_path, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        self.processes.append(process)
        wait_for_port(port, process, log_path)
        return {"bootstrap": f"127.0.0.1:{port}", "pid": process.pid}

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def create_topic(bootstrap, topic):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                  operation_timeout=30)
    futures[topic].result(timeout=60)
    # The partition must have a leader before the tools start.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        if partitions and all(p.leader >= 0 and p.error is None for p in partitions.values()):
            return
        time.sleep(0.2)
    sys.exit(f"{topic} has no leader on {bootstrap}")


def run_java(args, tool, arguments):
    result = subprocess.run(
        [args.java, *TOOL_JVM, "-cp", os.path.join(args.lib, "*"), tool, *arguments],
        capture_output=True, text=True, timeout=TOOL_RUN_MAX_S)
    if result.returncode != 0:
        sys.exit(f"{tool} failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
                 f"{result.stderr[-2000:]}")
    return result.stdout


PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def java_produce(args, bootstrap, topic):
    output = run_java(args, "org.apache.kafka.tools.ProducerPerformance", [
        "--topic", topic, "--num-records", str(args.records),
        "--record-size", str(args.record_bytes), "--throughput", "-1",
        "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all"])
    match = None
    for match in PERF_LINE.finditer(output):
        pass
    if match is None:
        sys.exit(f"no summary line from ProducerPerformance:\n{output[-2000:]}")
    return {"records_per_s": float(match[2]), "mb_per_s": float(match[3]),
            "latency_ms": {"avg": float(match[4]), "p50": int(match[6]), "p99": int(match[8])}}


def java_consume(args, bootstrap, topic):
    output = run_java(args, "org.apache.kafka.tools.ConsumerPerformance", [
        "--bootstrap-server", bootstrap, "--topic", topic, "--messages", str(args.records),
        "--timeout", "60000", "--group", f"perf-{topic}"])
    lines = [line for line in output.splitlines() if line.strip()]
    header = [name.strip() for name in lines[-2].split(",")]
    values = [value.strip() for value in lines[-1].split(",")]
    row = dict(zip(header, values))
    consumed = int(row["data.consumed.in.nMsg"])
    if consumed < args.records:
        sys.exit(f"ConsumerPerformance read {consumed} of {args.records} records:\n{output}")
    return {"records_per_s": float(row["fetch.nMsg.sec"]), "mb_per_s": float(row["fetch.MB.sec"]),
            "records": consumed}


def rdkafka_produce(args, bootstrap, topic):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    payload = os.urandom(args.record_bytes)
    failed = []
    delivered = [0]

    def on_delivery(error, _message):
        if error is not None:
            failed.append(str(error))
        else:
            delivered[0] += 1

    started = time.perf_counter()
    for _ in range(args.records):
        while True:
            try:
                producer.produce(topic, payload, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(120)
    elapsed = time.perf_counter() - started
    if failed or delivered[0] != args.records:
        sys.exit(f"librdkafka produce: {delivered[0]} delivered, failures {failed[:3]}")
    return {"records_per_s": args.records / elapsed,
            "mb_per_s": args.records * args.record_bytes / elapsed / 1e6}


def rdkafka_e2e(args, bootstrap, topic):
    """Open-loop producer at E2E_RATE records/s for warm-up + measured seconds; a consumer
    assigned to the partition's end in another thread stamps each record's arrival."""
    from confluent_kafka import Consumer, OFFSET_END, Producer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{topic}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 500})
    consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    # The assignment takes effect on the first poll: wait until the position is known.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        consumer.poll(0.1)
        position = consumer.position([TopicPartition(topic, 0)])[0].offset
        if position >= 0:
            break
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                         "enable.idempotence": True})
    total = E2E_RATE * (args.e2e_warmup + args.e2e_seconds)
    warm = E2E_RATE * args.e2e_warmup
    latencies = []
    received = [0]
    done = threading.Event()

    def consume():
        while received[0] < total and not done.is_set():
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            now = time.perf_counter_ns()
            index, sent = int.from_bytes(message.value()[:8], "big"), \
                int.from_bytes(message.value()[8:16], "big")
            if index >= warm:
                latencies.append((now - sent) / 1e6)
            received[0] += 1

    reader = threading.Thread(target=consume)
    reader.start()
    padding = os.urandom(max(0, args.record_bytes - 16))
    started = time.perf_counter()
    for index in range(total):
        due = started + index / E2E_RATE
        delay = due - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        value = index.to_bytes(8, "big") + time.perf_counter_ns().to_bytes(8, "big") + padding
        while True:
            try:
                producer.produce(topic, value, partition=0)
                break
            except BufferError:
                producer.poll(0.001)
        producer.poll(0)
    producer.flush(60)
    reader.join(timeout=60)
    done.set()
    reader.join()
    consumer.close()
    measured = total - warm
    if len(latencies) < measured:
        sys.exit(f"e2e: {len(latencies)} of {measured} measured records arrived")
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))]
    return {"rate": E2E_RATE, "records": len(latencies),
            "latency_ms": {"p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999),
                           "max": latencies[-1]}}


def ledge_bench(args, ledge, workload, topic, extra):
    output = subprocess.run(
        [args.ledge_bench, "--server", ledge["quic"], "--ca", ledge["ca"], "--quiet", "--json",
         workload, "--topic", topic, *extra],
        capture_output=True, text=True, timeout=TOOL_RUN_MAX_S)
    if output.returncode != 0:
        sys.exit(f"ledge-bench {workload} failed:\n{output.stdout[-2000:]}\n{output.stderr[-2000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def summarize(out, rows):
    by = {}
    for row in rows:
        by.setdefault((row["server"], row["measure"]), []).append(row)
    lines = [open(os.path.join(out, "machine.txt")).read()]

    def series(server, measure, key):
        values = []
        for row in by.get((server, measure), []):
            value = row
            for part in key.split("."):
                value = value[part]
            values.append(value)
        return values

    def fmt(values, digits=0):
        return ", ".join(f"{v:,.{digits}f}" for v in values)

    for measure, key, unit, digits in [
        ("java-produce", "records_per_s", "records/s", 0),
        ("java-consume", "records_per_s", "records/s", 0),
        ("rdkafka-produce", "records_per_s", "records/s", 0),
        ("rdkafka-e2e", "latency_ms.p99", "ms p99", 2),
    ]:
        lines.append(f"\n| {measure} ({unit}) | per repetition | median |")
        lines.append("|---|---|---|")
        for server in ("ledge", "ledge-serial", "kafka", "kafka-fsync"):
            values = series(server, measure, key)
            if values:
                lines.append(f"| {server} | {fmt(values, digits)} | "
                             f"{statistics.median(values):,.{digits}f} |")
        ledge = series("ledge", measure, key)
        for other in ("kafka", "kafka-fsync", "ledge-serial"):
            theirs = series(other, measure, key)
            if ledge and len(theirs) == len(ledge):
                ratios = [a / b for a, b in zip(ledge, theirs)]
                lines.append(f"| ratio ledge / {other} | {fmt(ratios, 2)} | "
                             f"{statistics.median(ratios):.2f} |")
    quic_produce = series("ledge", "quic-produce", "records_per_s")
    kafka_produce = series("ledge", "java-produce", "records_per_s")
    rdkafka_produce = series("ledge", "rdkafka-produce", "records_per_s")
    if quic_produce:
        lines.append("\n| Ledge, Kafka listener vs QUIC | per repetition | median |")
        lines.append("|---|---|---|")
        lines.append(f"| QUIC produce (ledge-bench), records/s | {fmt(quic_produce)} | "
                     f"{statistics.median(quic_produce):,.0f} |")
        for name, values in (("Java producer", kafka_produce), ("librdkafka", rdkafka_produce)):
            if len(values) == len(quic_produce):
                ratios = [a / b for a, b in zip(values, quic_produce)]
                lines.append(f"| ratio {name} on the listener / QUIC | {fmt(ratios, 2)} | "
                             f"{statistics.median(ratios):.2f} |")
        quic_e2e = series("ledge", "quic-e2e", "latency_us.p99")
        if quic_e2e:
            lines.append(f"| QUIC e2e p99 at {E2E_RATE}/s, ms | "
                         f"{fmt([v / 1000 for v in quic_e2e], 2)} | "
                         f"{statistics.median(quic_e2e) / 1000:.2f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--e2e-seconds", type=int, default=10)
    parser.add_argument("--e2e-warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 repetition, short runs")
    parser.add_argument("--ledge-serial", action="store_true",
                        help="also a Ledge node answering one request per connection at a "
                             "time (requests_in_flight_per_connection_max = 1: no produce "
                             "pipelining), for both producers")
    parser.add_argument("--ledge-node", default=os.path.join(ROOT, "target/release/ledge-node"))
    parser.add_argument("--ledge-bench", default=os.path.join(ROOT, "target/release/ledge-bench"))
    parser.add_argument("--lib", default=os.path.join(ROOT, "target/kafka-java/lib"))
    parser.add_argument("--java", default="java")
    parser.add_argument("--out", default=os.path.join(
        ROOT, "target/kafka-compare-runs", time.strftime("%Y%m%d-%H%M%S")))
    args = parser.parse_args()
    if args.quick:
        args.reps, args.records, args.e2e_seconds, args.e2e_warmup = 1, 50_000, 3, 1
    for path in (args.ledge_node, args.ledge_bench):
        if not os.access(path, os.X_OK):
            sys.exit(f"{path} is missing: build it first (see this script's help)")
    if not os.path.isdir(args.lib):
        sys.exit(f"{args.lib} is missing: run .ci/run's Maven step first")
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        sys.exit("confluent-kafka is missing: run this with target/kafka-venv/bin/python")
    os.makedirs(args.out)
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
                      f"e2e_rate={E2E_RATE} e2e_seconds={args.e2e_seconds}\n")
    servers = Servers(args, args.out)
    rows = []
    results = open(os.path.join(args.out, "results.jsonl"), "w")

    def record(server, measure, rep, result):
        # After the result: ledge-bench's JSON has a "server" of its own (the address).
        row = {**result, "server": server, "measure": measure, "rep": rep}
        rows.append(row)
        results.write(json.dumps(row) + "\n")
        results.flush()
        print(json.dumps(row), file=sys.stderr, flush=True)

    try:
        log("starting ledge, kafka (defaults) and kafka-fsync (log.flush.interval.messages=1)")
        targets = {
            "ledge": servers.start_ledge(),
            "kafka": servers.start_kafka("kafka", []),
            "kafka-fsync": servers.start_kafka("kafka-fsync", ["log.flush.interval.messages=1"]),
        }
        if args.ledge_serial:
            log("starting ledge-serial ([kafka] requests_in_flight_per_connection_max = 1)")
            targets["ledge-serial"] = servers.start_ledge("ledge-serial", SERIAL_CONFIG)
        for rep in range(1, args.reps + 1):
            for name, target in targets.items():
                bootstrap = target["bootstrap"]
                log(f"repetition {rep}: {name}")
                topic = f"java-{rep}"
                create_topic(bootstrap, topic)
                record(name, "java-produce", rep, java_produce(args, bootstrap, topic))
                if name == "ledge-serial":
                    # Only the produce paths differ (pipelining); the rest would repeat ledge.
                    topic = f"rdkafka-{rep}"
                    create_topic(bootstrap, topic)
                    record(name, "rdkafka-produce", rep, rdkafka_produce(args, bootstrap, topic))
                    continue
                record(name, "java-consume", rep, java_consume(args, bootstrap, topic))
                topic = f"rdkafka-{rep}"
                create_topic(bootstrap, topic)
                record(name, "rdkafka-produce", rep, rdkafka_produce(args, bootstrap, topic))
                topic = f"e2e-{rep}"
                create_topic(bootstrap, topic)
                record(name, "rdkafka-e2e", rep, rdkafka_e2e(args, bootstrap, topic))
                if name == "ledge":
                    record(name, "quic-produce", rep, ledge_bench(
                        args, target, "produce", f"quic-{rep}",
                        ["--records", str(args.records),
                         "--record-bytes", str(args.record_bytes)]))
                    record(name, "quic-e2e", rep, ledge_bench(
                        args, target, "e2e", f"quic-e2e-{rep}",
                        ["--rate", str(E2E_RATE), "--duration", str(args.e2e_seconds),
                         "--warmup", str(args.e2e_warmup),
                         "--record-bytes", str(args.record_bytes)]))
    finally:
        servers.stop()
        results.close()
    with open(os.path.join(args.out, "machine.txt"), "a") as machine:
        machine.write(f"loadavg_end={open('/proc/loadavg').read().split()[:3]}\n")
    summary = summarize(args.out, rows)
    open(os.path.join(args.out, "summary.md"), "w").write(summary)
    print(summary)
    log(f"results in {args.out}")
    # The servers' data is large and of no further use.
    for name in ("ledge-data", "ledge-serial-data", "kafka/logs", "kafka-fsync/logs"):
        shutil.rmtree(os.path.join(args.out, name), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
