"""Differential run: the same Kafka client scenarios against Ledge's Kafka listener and
against a real Apache Kafka 4.x broker (single-node KRaft, loopback only), comparing what
the clients print.

    python3 tests/kafka/differential.py            # after .ci/run's Maven step and a build

It starts a fresh `ledge-node` (target/debug by default) and a fresh Kafka broker from the
jars in target/kafka-java/lib (`kafka-storage format`, then `kafka.Kafka`), runs every
scenario against each (Ledge first, then Kafka; sequentially, so the two do not compete for
the machine's cores), and stops both on every exit path. Each scenario is a list of Java
tool runs (the tools' main classes, `java -cp 'lib/*'`), plus the kafka-python script
tests/kafka/kafka_python_scenarios.py when kafka-python is installed.

Outputs are normalized before comparison (bootstrap addresses, topic and member ids, host
names, throughput figures). Each known difference is a named rewrite in KNOWN_DIFFERENCES,
with its reason and the docs/KAFKA-COMPAT.md gap it belongs to; the run prints which ones
fired. Anything else that differs is printed as a diff and makes the exit status 1.
"""

import argparse
import base64
import difflib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JVM_OPTIONS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
# A tool run still going after this is killed (the tools' own timeouts come first).
TOOL_RUN_MAX_S = 180
# How long each server may take to open its port.
SERVER_START_MAX_S = 120

TOPICS = "org.apache.kafka.tools.TopicCommand"
CONFIGS = "kafka.admin.ConfigCommand"
PRODUCER = "org.apache.kafka.tools.ConsoleProducer"
CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
PERF = "org.apache.kafka.tools.ProducerPerformance"
OFFSETS = "org.apache.kafka.tools.GetOffsetShell"

B = "{bootstrap}"
CONSUME_LINES = [
    "--bootstrap-server", B, "--topic", "lines", "--group", "readers", "--from-beginning",
    "--timeout-ms", "30000", "--property", "print.key=true", "--property",
    "print.offset=true", "--property", "print.partition=true",
]

# (scenario, [(tool class, arguments, stdin)]). Error paths are here on purpose: they are
# where a broker's answers differ most.
SCENARIOS = [
    ("topics", [
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "compacted",
                  "--partitions", "3", "--replication-factor", "1",
                  "--config", "cleanup.policy=compact"], ""),
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "compacted",
                  "--partitions", "3"], ""),
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "compacted",
                  "--partitions", "3", "--if-not-exists"], ""),
        (TOPICS, ["--bootstrap-server", B, "--describe", "--topic", "compacted"], ""),
        (TOPICS, ["--bootstrap-server", B, "--describe", "--topic", "missing"], ""),
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "bad-config",
                  "--partitions", "1", "--config", "cleanup.policy=sideways"], ""),
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "bad-name!",
                  "--partitions", "1"], ""),
        (TOPICS, ["--bootstrap-server", B, "--alter", "--topic", "compacted",
                  "--partitions", "4"], ""),
        (TOPICS, ["--bootstrap-server", B, "--alter", "--topic", "compacted",
                  "--partitions", "2"], ""),
        (TOPICS, ["--bootstrap-server", B, "--describe", "--topic", "compacted"], ""),
        (TOPICS, ["--bootstrap-server", B, "--list", "--exclude-internal"], ""),
    ]),
    ("configs", [
        (CONFIGS, ["--bootstrap-server", B, "--alter", "--entity-type", "topics",
                   "--entity-name", "compacted", "--add-config",
                   "retention.ms=3600000,min.cleanable.dirty.ratio=0.2"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--describe", "--entity-type", "topics",
                   "--entity-name", "compacted"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--alter", "--entity-type", "topics",
                   "--entity-name", "compacted", "--delete-config", "retention.ms"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--describe", "--entity-type", "topics",
                   "--entity-name", "compacted"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--alter", "--entity-type", "topics",
                   "--entity-name", "compacted", "--add-config", "no.such.key=1"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--alter", "--entity-type", "topics",
                   "--entity-name", "compacted", "--add-config", "retention.ms=soon"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--alter", "--entity-type", "topics",
                   "--entity-name", "missing", "--add-config", "retention.ms=1000"], ""),
        (CONFIGS, ["--bootstrap-server", B, "--describe", "--entity-type", "topics",
                   "--entity-name", "missing"], ""),
        (TOPICS, ["--bootstrap-server", B, "--delete", "--topic", "compacted"], ""),
        (TOPICS, ["--bootstrap-server", B, "--delete", "--topic", "compacted"], ""),
    ]),
    ("console and groups", [
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "lines",
                  "--partitions", "1"], ""),
        (PRODUCER, ["--bootstrap-server", B, "--topic", "lines", "--property",
                    "parse.key=true", "--property", "key.separator=:",
                    "--producer-property", "acks=all"], "k1:one\nk2:two\nk3:three\n"),
        (CONSUMER, CONSUME_LINES + ["--max-messages", "3"], ""),
        (GROUPS, ["--bootstrap-server", B, "--list"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers", "--state"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers",
                  "--members"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "nobody"], ""),
        (GROUPS, ["--bootstrap-server", B, "--reset-offsets", "--group", "readers",
                  "--topic", "lines", "--to-offset", "1", "--execute"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers"], ""),
        (CONSUMER, CONSUME_LINES + ["--max-messages", "2"], ""),
        (GROUPS, ["--bootstrap-server", B, "--reset-offsets", "--group", "readers",
                  "--topic", "lines", "--to-offset", "99", "--execute"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers"], ""),
        (GROUPS, ["--bootstrap-server", B, "--reset-offsets", "--group", "readers",
                  "--all-topics", "--to-earliest", "--dry-run"], ""),
        (GROUPS, ["--bootstrap-server", B, "--reset-offsets", "--group", "readers",
                  "--topic", "lines", "--shift-by", "-1", "--execute"], ""),
        (GROUPS, ["--bootstrap-server", B, "--delete-offsets", "--group", "readers",
                  "--topic", "lines"], ""),
        (GROUPS, ["--bootstrap-server", B, "--describe", "--group", "readers"], ""),
        (GROUPS, ["--bootstrap-server", B, "--delete", "--group", "readers"], ""),
        (GROUPS, ["--bootstrap-server", B, "--list"], ""),
        (CONSUMER, ["--bootstrap-server", B, "--topic", "lines", "--partition", "0",
                    "--offset", "1", "--max-messages", "2", "--timeout-ms", "30000"], ""),
    ]),
    ("producer perf test", [
        (TOPICS, ["--bootstrap-server", B, "--create", "--topic", "perf",
                  "--partitions", "2"], ""),
        (PERF, ["--topic", "perf", "--num-records", "2000", "--record-size", "100",
                "--throughput", "-1", "--producer-props", "bootstrap.servers=" + B,
                "acks=all"], ""),
        (OFFSETS, ["--bootstrap-server", B, "--topic", "perf", "--time", "-1"], ""),
        (OFFSETS, ["--bootstrap-server", B, "--topic", "perf", "--time", "-2"], ""),
    ]),
    ("auto-created topic", [
        (PERF, ["--topic", "auto", "--num-records", "1", "--record-size", "10",
                "--throughput", "-1", "--producer-props", "bootstrap.servers=" + B,
                "max.block.ms=10000"], ""),
        # Created by the producer's Metadata with the default partition count (1).
        (TOPICS, ["--bootstrap-server", B, "--describe", "--topic", "auto"], ""),
        (OFFSETS, ["--bootstrap-server", B, "--topic", "auto", "--time", "-1"], ""),
    ]),
]

# The scenarios `--short` runs (about a minute for both servers; the e2e test
# `kafka_java_differential_short` runs it in CI).
SHORT = ("topics", "configs", "producer perf test", "auto-created topic")

# Known differences: (name, reason, rewrite(target, scenario, text) -> text). Each rewrite
# removes one difference that docs/KAFKA-COMPAT.md lists, so that any other difference
# still shows.
KNOWN_DIFFERENCES = []


def known(name, reason):
    def register(rewrite):
        KNOWN_DIFFERENCES.append((name, reason, rewrite))
        return rewrite
    return register


@known("error wording", "the broker's error messages are Ledge's own words; the exception "
       "class (the error code) is compared")
def _(target, scenario, text):
    text = re.sub(r"(Exception|Error):( .*)?$", r"\1: <message>", text, flags=re.MULTILINE)
    return re.sub(r"(Error while executing topic command :).*", r"\1 <message>", text)


@known("min.insync.replicas on new topics", "Kafka 4.1 stores min.insync.replicas=1 on every "
       "topic it creates (eligible leader replicas, KIP-966); Ledge keeps only what was set")
def _(target, scenario, text):
    if target != "kafka":
        return text
    # First among others ("...=1,"), or last (alone after "Configs:", or after a comma).
    text = text.replace("min.insync.replicas=1,", "")
    return re.sub(r",?\s*min\.insync\.replicas=1$", "", text, flags=re.MULTILINE)


@known("no broker default synonyms", "Kafka lists the broker-level default (log.*) as a second "
       "config synonym; Ledge's topic defaults are built in, not broker settings")
def _(target, scenario, text):
    return re.sub(r", DEFAULT_CONFIG:[^,}]*", "", text) if target == "kafka" else text


def die_with_parent():
    """In the child before exec: SIGKILL when this script dies, however it dies, so no
    server outlives a killed run (Linux's PR_SET_PDEATHSIG)."""
    import ctypes
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, log_path):
    deadline = time.monotonic() + SERVER_START_MAX_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}; log: {log_path}\n"
                     + open(log_path, errors="replace").read()[-3000:])
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"no server on port {port} after {SERVER_START_MAX_S} s; log: {log_path}")


class Servers:
    """The two servers, stopped (and their directories removed) on every exit path."""

    def __init__(self, args):
        self.args = args
        self.directory = tempfile.mkdtemp(prefix="ledge-differential-")
        self.processes = []

    def start_ledge(self):
        port = free_port()
        log = os.path.join(self.directory, "ledge.log")
        process = subprocess.Popen(
            [self.args.ledge_node, "--data-dir", os.path.join(self.directory, "ledge-data"),
             "--listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        self.processes.append(process)
        wait_for_port(port, process, log)
        return f"127.0.0.1:{port}"

    def start_kafka(self):
        port, controller = free_port(), free_port()
        logs = os.path.join(self.directory, "kafka-logs")
        properties = os.path.join(self.directory, "server.properties")
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
                f"log.dirs={logs}",
                # One node: the internal topics must fit on it.
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # Ledge's default (`groups.initial_rebalance_delay_ms`) and Kafka's own.
                "group.initial.rebalance.delay.ms=3000",
                "",
            ]))
        # Kafka's own Uuid.randomUuid() redraws an id whose text starts with '-':
        # the storage tool's argument parser would read it as an option.
        cluster_id = "-"
        while cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            [self.args.java, *JVM_OPTIONS, "-cp", self.classpath(), "kafka.tools.StorageTool",
             "format", "-t", cluster_id, "-c", properties],
            check=True, stdout=subprocess.DEVNULL, timeout=TOOL_RUN_MAX_S)
        log = os.path.join(self.directory, "kafka.log")
        process = subprocess.Popen(
            [self.args.java, "-Xmx512m", "-XX:+UseSerialGC", "-cp", self.classpath(),
             "kafka.Kafka", properties],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        self.processes.append(process)
        wait_for_port(port, process, log)
        return f"127.0.0.1:{port}"

    def classpath(self):
        return os.path.join(self.args.lib, "*")

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def remove(self):
        self.stop()
        if not self.args.keep:
            shutil.rmtree(self.directory, ignore_errors=True)


def run_tool(args, bootstrap, tool, arguments, stdin):
    command = [args.java, *JVM_OPTIONS, "-cp", os.path.join(args.lib, "*"), tool,
               *[argument.replace(B, bootstrap) for argument in arguments]]
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True,
                              timeout=TOOL_RUN_MAX_S)
        status, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as timeout:
        status, out, err = "killed after timeout", timeout.stdout or "", timeout.stderr or ""
        out = out.decode() if isinstance(out, bytes) else out
        err = err.decode() if isinstance(err, bytes) else err
    # The tools print their errors to stdout or stderr, and stack traces below them; the
    # first line of an error and the exit status are what a user sees.
    lines = [f"exit: {status if status == 0 else 'non-zero'}"]
    lines += out.splitlines() + err.splitlines()
    stack = re.compile(r"^\s*(at [\w$.<>/]+\(|\.\.\. \d+ more)")
    return "\n".join(line for line in lines if line.strip() and not stack.match(line))


def run_kafka_python(args, bootstrap):
    done = subprocess.run(
        [args.python, os.path.join(ROOT, "tests/kafka/kafka_python_scenarios.py"), bootstrap],
        capture_output=True, text=True, timeout=600)
    lines = [f"exit: {done.returncode}"] + done.stdout.splitlines()
    lines += [line for line in done.stderr.splitlines() if "Error" in line]
    return "\n".join(lines)


def normalize(text, bootstrap):
    text = text.replace(bootstrap, "BOOTSTRAP")
    # Log lines' time of day.
    text = re.sub(r"^\d\d:\d\d:\d\d\.\d{3} ", "", text, flags=re.MULTILINE)
    # kafka-get-offsets: how the sticky partitioner spread records differs run to run; the
    # total per topic does not.
    totals = {}
    for topic, offset in re.findall(r"^([\w.-]+):\d+:(\d+)$", text, flags=re.MULTILINE):
        totals[topic] = totals.get(topic, 0) + int(offset)
    text = re.sub(r"^[\w.-]+:\d+:\d+$\n?", "", text, flags=re.MULTILINE)
    text += "".join(f"\n{topic}: {total} in all" for topic, total in sorted(totals.items()))
    text = re.sub(r"TopicId: [A-Za-z0-9_-]{22}", "TopicId: <id>", text)
    text = re.sub(r"(console-consumer|consumer-readers|perf-producer|producer)-[0-9a-f-]{36}",
                  r"\1-<member>", text)
    text = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                  "<uuid>", text)
    text = re.sub(r"/127\.0\.0\.1\b", "/<host>", text)
    # Throughput and latency figures, which no two runs share.
    text = re.sub(r"(\d+ records sent), .*", r"\1, <figures>", text)
    text = re.sub(r"^\d+ records sent, [\d.]+ records/sec.*$", "<progress>", text,
                  flags=re.MULTILINE)
    text = re.sub(r"(Processed a total of \d+ messages)", r"\1", text)
    # Column padding of the tools' tables depends on the widest cell.
    text = "\n".join(re.sub(r"[ \t]+", " ", line).rstrip() for line in text.splitlines())
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", default=os.path.join(ROOT, "target/kafka-java/lib"))
    parser.add_argument("--ledge-node", default=os.path.join(ROOT, "target/debug/ledge-node"))
    parser.add_argument("--python", default=os.path.join(ROOT, "target/kafka-venv/bin/python"))
    parser.add_argument("--java", default="java")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--short", action="store_true",
                        help=f"run only {', '.join(SHORT)} (no kafka-python)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories")
    args = parser.parse_args()
    if not os.path.isdir(args.lib):
        sys.exit(f"no jars in {args.lib}: run .ci/run's Maven step (tests/kafka/java/pom.xml)")

    scenarios = [(name, steps) for name, steps in SCENARIOS
                 if (not args.only or args.only in name) and (not args.short or name in SHORT)]
    servers = Servers(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    observed, seconds = {}, {}
    try:
        for target, start in (("ledge", servers.start_ledge), ("kafka", servers.start_kafka)):
            started = time.monotonic()
            bootstrap = start()
            print(f"== {target} on {bootstrap} (up in {time.monotonic() - started:.1f} s)",
                  flush=True)
            for name, steps in scenarios:
                scenario_started = time.monotonic()
                for index, (tool, arguments, stdin) in enumerate(steps):
                    step_started = time.monotonic()
                    text = run_tool(args, bootstrap, tool, arguments, stdin)
                    seconds[(target, name, index)] = time.monotonic() - step_started
                    observed[(target, name, index)] = normalize(text, bootstrap)
                print(f"   {name}: {len(steps)} tool runs in "
                      f"{time.monotonic() - scenario_started:.0f} s", flush=True)
            if not args.only and not args.short and os.access(args.python, os.X_OK):
                observed[(target, "kafka-python", 0)] = normalize(
                    run_kafka_python(args, bootstrap), bootstrap)
                print("   kafka-python scenarios", flush=True)
            servers.stop()
    finally:
        servers.remove()

    steps = sorted({key[1:] for key in observed}, key=lambda key: (
        [name for name, _ in scenarios + [("kafka-python", [])]].index(key[0]), key[1]))
    fired, unexplained = set(), 0
    for name, index in steps:
        ledge = observed.get(("ledge", name, index), "")
        kafka = observed.get(("kafka", name, index), "")
        for known_name, _, rewrite in KNOWN_DIFFERENCES:
            ledge_after = rewrite("ledge", name, ledge)
            kafka_after = rewrite("kafka", name, kafka)
            # Counted only where it explains a difference, not where it rewrote equal texts.
            if ledge != kafka and (ledge_after, kafka_after) != (ledge, kafka):
                fired.add(known_name)
            ledge, kafka = ledge_after, kafka_after
        command = describe_step(name, index)
        if ledge == kafka:
            print(f"same: {name} #{index} {command}")
            continue
        unexplained += 1
        print(f"DIFFERENT: {name} #{index} {command}")
        for line in difflib.unified_diff(kafka.splitlines(), ledge.splitlines(), "kafka",
                                         "ledge", lineterm="", n=1):
            print("    " + line)
    # Not compared (the machine is shared), but a step far slower on one server is a lead:
    # a client waiting out a timeout there.
    for name, index in steps:
        ledge_s = seconds.get(("ledge", name, index), 0)
        kafka_s = seconds.get(("kafka", name, index), 0)
        if max(ledge_s, kafka_s) > 2 * min(ledge_s, kafka_s) + 5:
            print(f"slower: {name} #{index} {describe_step(name, index)}: "
                  f"ledge {ledge_s:.1f} s, kafka {kafka_s:.1f} s")
    for known_name, reason, _ in KNOWN_DIFFERENCES:
        if known_name in fired:
            print(f"known difference: {known_name}: {reason}")
    print(f"{len(steps) - unexplained} same, {unexplained} different")
    return 1 if unexplained else 0


def describe_step(name, index):
    for scenario, steps in SCENARIOS:
        if scenario == name:
            tool, arguments, _ = steps[index]
            return tool.rsplit(".", 1)[-1] + " " + " ".join(
                argument for argument in arguments if argument not in ("--bootstrap-server", B))
    return "tests/kafka/kafka_python_scenarios.py"


if __name__ == "__main__":
    sys.exit(main())
