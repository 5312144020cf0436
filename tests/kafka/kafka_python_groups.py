"""The tutorial's consumer group with kafka-python 3, unmodified, against Ledge's Kafka listener.

Two consumers in one group split the partitions; each commits what it consumed; one leaves
and the other takes over its partitions from the committed offsets; every record is consumed
exactly once; the commits survive the consumers (a new consumer of the group starts at them,
the admin client reads them); ListGroups and DescribeGroups show the group. Each consumer
polls on its own thread, as separate processes would (a rebalance waits for every member's
next poll). Every wait is bounded.

Usage: kafka_python_groups.py BOOTSTRAP_SERVERS
"""

import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

BOOTSTRAP = sys.argv[1]
TOPIC = "orders-groups"
GROUP = "tutorial-group"
PARTITIONS = 4
WAIT_SECONDS = 60


def wait_for(what, condition):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def field(value, name, alternative):
    """A field of an admin answer, whether kafka-python gives a dict, a tuple or an object."""
    if isinstance(value, dict):
        return value[name] if name in value else value[alternative]
    if isinstance(alternative, int) and isinstance(value, tuple) and not hasattr(value, name):
        return value[alternative]
    return getattr(value, name, None) if hasattr(value, name) else getattr(value, alternative)


def produce(producer, start, count):
    for number in range(start, start + count):
        producer.send(TOPIC, value=str(number).encode(), partition=number % PARTITIONS).get(30)
    producer.flush()


class Member(threading.Thread):
    """A consumer of the group on its own thread: polls, records what it got, commits."""

    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.consumer = KafkaConsumer(
            TOPIC,
            bootstrap_servers=BOOTSTRAP,
            group_id=GROUP,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=30000,
        )
        self.values = []
        self.assignment = set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                batches = self.consumer.poll(timeout_ms=200)
                got = [record.value.decode() for records in batches.values() for record in records]
                if got:
                    # Commit what was consumed before taking more: what is committed is done.
                    self.consumer.commit()
                with self.lock:
                    self.values.extend(got)
                    self.assignment = {tp.partition for tp in self.consumer.assignment()}
            self.consumer.close()
        except Exception as error:  # reported by the main thread
            self.error = error

    def snapshot(self):
        with self.lock:
            return set(self.assignment), list(self.values)

    def stop(self):
        self.stopping.set()
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), f"{self.name} did not stop"
        assert self.error is None, f"{self.name} failed: {self.error!r}"


def main():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="groups-admin")
    admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    produce(producer, 0, 40)

    first = Member("consumer-1")
    first.start()
    wait_for("consumer-1 to own every partition", lambda: first.snapshot()[0] == set(range(PARTITIONS)))
    second = Member("consumer-2")
    second.start()

    def split():
        mine, theirs = first.snapshot()[0], second.snapshot()[0]
        return mine and theirs and not (mine & theirs) and (mine | theirs) == set(range(PARTITIONS))

    wait_for("the two consumers to split the partitions", split)
    print("split:", sorted(first.snapshot()[0]), sorted(second.snapshot()[0]))
    # Records produced now go to both consumers' partitions.
    produce(producer, 40, 20)
    wait_for(
        "all 60 records consumed",
        lambda: len(first.snapshot()[1]) + len(second.snapshot()[1]) >= 60,
    )
    assert second.snapshot()[1], "consumer-2 consumed nothing"

    listed = admin.list_groups()
    assert GROUP in [field(group, "group_id", 0) for group in listed], listed
    described = admin.describe_groups([GROUP])
    described = described[GROUP] if isinstance(described, dict) else described[0]
    assert field(described, "state", "group_state") == "Stable", described
    assert len(field(described, "members", "members")) == 2, described

    second.stop()
    wait_for("consumer-1 to take over every partition", lambda: first.snapshot()[0] == set(range(PARTITIONS)))
    produce(producer, 60, 20)
    wait_for(
        "all 80 records consumed",
        lambda: len(first.snapshot()[1]) + len(second.snapshot()[1]) >= 80,
    )
    first.stop()

    consumed = first.snapshot()[1] + second.snapshot()[1]
    assert sorted(consumed, key=int) == [str(n) for n in range(80)], (
        f"not exactly once: {len(consumed)} records, duplicates "
        f"{sorted({v for v in consumed if consumed.count(v) > 1}, key=int)}"
    )

    # The commits survive the consumers: the admin client reads them, and a new member of
    # the group starts at them (nothing left to consume).
    committed = admin.list_group_offsets({GROUP: None})
    committed = committed.get(GROUP, committed)
    ends = KafkaConsumer(bootstrap_servers=BOOTSTRAP).end_offsets(
        [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    )
    for partition in range(PARTITIONS):
        tp = TopicPartition(TOPIC, partition)
        offset = committed[tp]
        offset = offset if isinstance(offset, int) else field(offset, "offset", 0)
        assert offset == ends[tp], (partition, committed[tp], ends[tp])
    third = KafkaConsumer(
        TOPIC,
        bootstrap_servers=BOOTSTRAP,
        group_id=GROUP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while not third.assignment() and time.monotonic() < deadline:
        assert not third.poll(timeout_ms=200), "a restarted member re-read committed records"
    assert third.assignment(), "the restarted member got no partitions"
    for partition in range(PARTITIONS):
        tp = TopicPartition(TOPIC, partition)
        assert third.position(tp) == ends[tp], (partition, third.position(tp), ends[tp])
    third.close()
    print("OK")


if __name__ == "__main__":
    main()
