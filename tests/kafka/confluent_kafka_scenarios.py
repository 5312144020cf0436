"""confluent-kafka (librdkafka) against Ledge's Kafka listener, unmodified.

Scenarios (docs/KAFKA-COMPAT.md): the admin client creates a topic; an idempotent acks=all
producer writes dense offsets; two consumers of one group split the partitions, one leaves,
the other takes over, every record is consumed once, and a new member starts at the
commits; a manual commit of a chosen offset is read back; seek, from inside a batch and with
a leader epoch (librdkafka validates that position with OffsetForLeaderEpoch, and resets a
position in an epoch the log never had); watermarks;
DeleteRecords moves the log start. Each consumer polls on its own thread, as separate
processes would. Every wait is bounded.

Usage: confluent_kafka_scenarios.py BOOTSTRAP_SERVERS
Prints one line per scenario and "OK" at the end; exits non-zero on the first failure.
"""

import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import scenario_checks
from scenario_checks import check, passed

BOOTSTRAP = sys.argv[1]
TOPIC = "confluent-orders"
GROUP = "confluent-group"
PARTITIONS = 4
WAIT_SECONDS = 60


def wait_for(what, condition):
    scenario_checks.wait_for(what, condition, WAIT_SECONDS)


class Delivered:
    """Delivery reports: (partition, offset) per value, or the error."""

    def __init__(self):
        self.offsets = {}
        self.errors = []

    def __call__(self, error, message):
        if error is not None:
            self.errors.append(error)
        else:
            self.offsets[message.value().decode()] = (message.partition(), message.offset())


def produce(producer, start, count):
    delivered = Delivered()
    for number in range(start, start + count):
        producer.produce(
            TOPIC, value=str(number).encode(), partition=number % PARTITIONS, on_delivery=delivered
        )
        producer.poll(0)
    check(producer.flush(WAIT_SECONDS) == 0, "flush delivered everything")
    check(not delivered.errors, f"delivery errors: {delivered.errors}")
    check(len(delivered.offsets) == count, f"{len(delivered.offsets)} of {count} delivered")
    return delivered.offsets


def consumer_config(**extra):
    config = {
        "bootstrap.servers": BOOTSTRAP,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 30000,
    }
    config.update(extra)
    return config


class Member(threading.Thread):
    """A consumer of the group on its own thread: polls, records what it got, commits it
    synchronously before polling again (what is committed is done)."""

    def __init__(self, name):
        super().__init__(name=name, daemon=True)
        self.consumer = Consumer(consumer_config(**{"group.id": GROUP, "client.id": name}))
        self.values = []
        self.assignment = set()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.error = None

    def run(self):
        try:
            self.consumer.subscribe([TOPIC])
            while not self.stopping.is_set():
                message = self.consumer.poll(0.2)
                assignment = {tp.partition for tp in self.consumer.assignment()}
                got = []
                if message is not None:
                    if message.error():
                        raise KafkaException(message.error())
                    got.append(message.value().decode())
                    self.consumer.commit(message=message, asynchronous=False)
                with self.lock:
                    self.values.extend(got)
                    self.assignment = assignment
            # Leaves the group (LeaveGroup), so the other member takes over at once.
            self.consumer.close()
        except Exception as error:  # reported by the main thread
            self.error = error

    def snapshot(self):
        with self.lock:
            return set(self.assignment), list(self.values)

    def stop(self):
        self.stopping.set()
        self.join(WAIT_SECONDS)
        check(not self.is_alive(), f"{self.name} stopped")
        check(self.error is None, f"{self.name} failed: {self.error!r}")


def main():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    futures = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    futures[TOPIC].result(WAIT_SECONDS)
    metadata = admin.list_topics(timeout=WAIT_SECONDS)
    check(len(metadata.topics[TOPIC].partitions) == PARTITIONS, "the topic has its partitions")
    passed("admin create_topics, list_topics")

    # Idempotent producer, acks=all: every record delivered once, offsets dense per partition.
    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    offsets = produce(producer, 0, 40)
    for partition in range(PARTITIONS):
        got = sorted(offset for (p, offset) in offsets.values() if p == partition)
        check(got == list(range(10)), f"partition {partition} offsets dense from 0: {got}")
    passed("producer acks=all + enable.idempotence, dense offsets")

    # The group: two members split the partitions, one leaves, the other takes over.
    first = Member("consumer-1")
    first.start()
    wait_for("consumer-1 to own every partition", lambda: first.snapshot()[0] == set(range(PARTITIONS)))
    second = Member("consumer-2")
    second.start()

    def split():
        mine, theirs = first.snapshot()[0], second.snapshot()[0]
        return mine and theirs and not (mine & theirs) and (mine | theirs) == set(range(PARTITIONS))

    wait_for("the two consumers to split the partitions", split)
    print("split:", sorted(first.snapshot()[0]), sorted(second.snapshot()[0]), flush=True)
    produce(producer, 40, 20)
    wait_for("all 60 records consumed", lambda: len(first.snapshot()[1]) + len(second.snapshot()[1]) >= 60)
    check(second.snapshot()[1], "consumer-2 consumed something")
    second.stop()
    wait_for("consumer-1 to take over every partition", lambda: first.snapshot()[0] == set(range(PARTITIONS)))
    produce(producer, 60, 20)
    wait_for("all 80 records consumed", lambda: len(first.snapshot()[1]) + len(second.snapshot()[1]) >= 80)
    first.stop()
    consumed = first.snapshot()[1] + second.snapshot()[1]
    check(
        sorted(consumed, key=int) == [str(n) for n in range(80)],
        f"exactly once: {len(consumed)} records, duplicates "
        f"{sorted({v for v in consumed if consumed.count(v) > 1}, key=int)}",
    )
    passed("group: split, leave, takeover, every record once")

    # The commits survive: a new member reads them (they carry the records' leader epoch,
    # which librdkafka validates with OffsetForLeaderEpoch) and starts there.
    third = Consumer(consumer_config(**{"group.id": GROUP}))
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    committed = third.committed(partitions, timeout=WAIT_SECONDS)
    ends = [third.get_watermark_offsets(tp, timeout=WAIT_SECONDS)[1] for tp in partitions]
    check([tp.offset for tp in committed] == ends, f"committed {committed} == ends {ends}")
    check(ends == [20] * PARTITIONS, f"high watermarks {ends}")
    third.subscribe([TOPIC])
    deadline = time.monotonic() + WAIT_SECONDS
    while not third.assignment() and time.monotonic() < deadline:
        message = third.poll(0.2)
        check(message is None or message.error() is not None, "a new member re-read a committed record")
    check(third.assignment(), "the new member got partitions")
    # Positions settle once the committed offsets are fetched and validated.
    produce(producer, 80, PARTITIONS)
    got = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(got) < PARTITIONS and time.monotonic() < deadline:
        message = third.poll(0.2)
        if message is not None:
            check(message.error() is None, f"new member: {message.error()}")
            got.append(message.value().decode())
    check(sorted(got, key=int) == [str(n) for n in range(80, 80 + PARTITIONS)], f"new member read {got}")
    third.close()
    passed("commits seen by a new member of the group")

    # A manual commit of a chosen offset, read back; then the group resumes there.
    manual = Consumer(consumer_config(**{"group.id": "confluent-manual"}))
    manual.commit(offsets=[TopicPartition(TOPIC, 1, 7)], asynchronous=False)
    read_back = manual.committed([TopicPartition(TOPIC, 1)], timeout=WAIT_SECONDS)
    check(read_back[0].offset == 7, f"committed offset read back: {read_back}")
    manual.assign([TopicPartition(TOPIC, 1, 7)])
    message = None
    deadline = time.monotonic() + WAIT_SECONDS
    while message is None and time.monotonic() < deadline:
        message = manual.poll(0.2)
    check(message is not None and message.error() is None, f"read from the commit: {message}")
    check(message.offset() == 7 and message.value() == b"29", f"offset 7 of partition 1: {message.value()}")
    leader_epoch = message.leader_epoch()
    check(leader_epoch is not None and leader_epoch >= 0, f"records carry a leader epoch: {leader_epoch}")
    manual.close()
    passed("manual commit of an offset, read back and resumed from")

    # Seek without a group: into the middle of the producer's batch, then with the leader
    # epoch of the records (librdkafka validates such a position with OffsetForLeaderEpoch
    # before fetching from it).
    reader = Consumer(consumer_config(**{"group.id": "confluent-seek"}))
    reader.assign([TopicPartition(TOPIC, 2, 0)])

    def next_message():
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            message = reader.poll(0.2)
            if message is not None:
                check(message.error() is None, f"seek reader: {message.error()}")
                return message
        check(False, "a record after the seek")

    check(next_message().offset() == 0, "assign from 0")
    reader.seek(TopicPartition(TOPIC, 2, 5))
    message = next_message()
    check(message.offset() == 5 and message.value() == b"22", f"seek to 5: {message.offset()}")
    reader.seek(TopicPartition(TOPIC, 2, 3, leader_epoch=leader_epoch))
    message = next_message()
    check(message.offset() == 3 and message.value() == b"14", f"seek with an epoch: {message.offset()}")
    # A position in an epoch the log never had: OffsetForLeaderEpoch answers it undefined,
    # librdkafka detects a truncation and resets by auto.offset.reset (earliest) instead of
    # fetching from 15 (which it would do unvalidated if the API were not served).
    reader.seek(TopicPartition(TOPIC, 2, 15, leader_epoch=leader_epoch + 5))
    message = next_message()
    check(message.offset() == 0, f"truncation detected and reset to earliest: {message.offset()}")
    passed("seek into a batch, seek with a leader epoch (validated: OffsetForLeaderEpoch)")

    # Timestamps: the first record at or after a time before everything is offset 0.
    found = reader.offsets_for_times([TopicPartition(TOPIC, 0, 0)], timeout=WAIT_SECONDS)
    check(found[0].offset == 0, f"offsets_for_times(0): {found}")
    reader.close()
    passed("offsets_for_times, watermarks")

    # DeleteRecords: the log start moves; the low watermark follows; reading before it is
    # out of range and resets to the new start.
    deleted = admin.delete_records([TopicPartition(TOPIC, 3, 4)])
    result = list(deleted.values())[0].result(WAIT_SECONDS)
    check(result.low_watermark == 4, f"delete_records low watermark: {result.low_watermark}")
    watcher = Consumer(consumer_config(**{"group.id": "confluent-deleted"}))
    low, high = watcher.get_watermark_offsets(TopicPartition(TOPIC, 3), timeout=WAIT_SECONDS)
    check((low, high) == (4, 21), f"watermarks after delete_records: {(low, high)}")
    watcher.assign([TopicPartition(TOPIC, 3, 0)])
    deadline = time.monotonic() + WAIT_SECONDS
    message = None
    while time.monotonic() < deadline:
        message = watcher.poll(0.2)
        if message is not None and message.error() is None:
            break
    check(message is not None and message.error() is None, f"read after the log start: {message}")
    check(message.offset() == 4, f"reset to the new log start: {message.offset()}")
    watcher.close()
    passed("delete_records")
    print("OK", flush=True)


if __name__ == "__main__":
    main()
