"""confluent-kafka (librdkafka) on a 3-node cluster: DeleteRecords and leader epochs across
a failover. Run in two phases by the e2e test `kafka_delete_records_and_epochs_survive_a_failover`
(tests/e2e/kafka_confluent_aiokafka.rs), which kills the partition's leader between them.

  before BOOTSTRAP TOPIC: produce 20 records (acks=all, idempotent); a group consumer
      commits offset 15 (with the records' leader epoch); delete_records before 8; one more
      record with acks=all (its acknowledgement needs every ISR follower to have fetched
      past it, and so to have seen the leader's new log start).
  after BOOTSTRAP TOPIC: on the new leader the log starts at 8 and ends at 21, ListOffsets
      answers the new leader epoch, and a new member of the group resumes at the committed
      15: librdkafka validates the old epoch's position with OffsetForLeaderEpoch against the
      new leader's epoch history (a wrong answer would reset it to the earliest offset, 8).

Prints "OK" at the end; exits non-zero on the first failure. Every wait is bounded.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from scenario_checks import check

PHASE, BOOTSTRAP, TOPIC = sys.argv[1], sys.argv[2], sys.argv[3]
GROUP = "failover-group"
WAIT_SECONDS = 60


def produce(count, start):
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True})
    errors = []
    for number in range(start, start + count):
        producer.produce(
            TOPIC, value=str(number).encode(), partition=0,
            on_delivery=lambda error, _message: error and errors.append(error),
        )
    check(producer.flush(WAIT_SECONDS) == 0 and not errors, f"produced: {errors}")


def consumer():
    return Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )


def first_message(reader):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        message = reader.poll(0.2)
        if message is not None and message.error() is None:
            return message
    check(False, "a record")


def before():
    produce(20, 0)
    reader = consumer()
    reader.assign([TopicPartition(TOPIC, 0, 14)])
    message = first_message(reader)
    check(message.offset() == 14 and message.leader_epoch() is not None, f"read 14: {message.offset()}")
    # Commits offset 15 with the record's leader epoch (OffsetCommit v6+).
    reader.commit(message=message, asynchronous=False)
    committed = reader.committed([TopicPartition(TOPIC, 0)], timeout=WAIT_SECONDS)[0]
    check(committed.offset == 15, f"committed {committed}")
    print("epoch before:", message.leader_epoch(), flush=True)
    reader.close()
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    deleted = list(admin.delete_records([TopicPartition(TOPIC, 0, 8)]).values())[0].result(WAIT_SECONDS)
    check(deleted.low_watermark == 8, f"low watermark {deleted.low_watermark}")
    produce(1, 20)
    print("OK", flush=True)


def after():
    reader = consumer()
    # A new leader's high watermark catches up once its followers have fetched in its epoch
    # (the dead leader counts until it leaves the ISR); until then ListOffsets answers
    # OFFSET_NOT_AVAILABLE (KIP-207), which librdkafka's watermark query raises, as against
    # Kafka: asked again until it is caught up. The log start is durable: 8 once answered.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            low, high = reader.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=WAIT_SECONDS)
            check(low == 8, f"log start on the new leader: {low}")
        except KafkaException as error:
            check(error.args[0].code() == KafkaError.OFFSET_NOT_AVAILABLE, f"watermarks: {error}")
            high = None
        if high == 21 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(high == 21, f"high watermark on the new leader: {high}")
    reader.subscribe([TOPIC])
    message = first_message(reader)
    check(message.offset() == 15, f"resumed at the commit, validated: {message.offset()}")
    print("epoch after:", message.leader_epoch(), flush=True)
    reader.close()
    produce(1, 21)
    latest = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "failover-reader"})
    latest.assign([TopicPartition(TOPIC, 0, 21)])
    message = first_message(latest)
    check(message.offset() == 21, f"a record written by the new leader: {message.offset()}")
    print("new leader's epoch:", message.leader_epoch(), flush=True)
    latest.close()
    print("OK", flush=True)


{"before": before, "after": after}[PHASE]()
