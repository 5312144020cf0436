"""kafka-python against Ledge's Kafka listener: the producer, consumer (no group: assign and
seek) and admin client scenarios of docs/KAFKA-COMPAT.md. Run by the e2e test
`kafka_python_scenarios` (tests/e2e/kafka_clients.rs) with the bootstrap address as its only
argument; prints one line per scenario and exits non-zero on the first failure."""

import json
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import TopicAlreadyExistsError
from scenario_checks import check, passed

BOOTSTRAP = sys.argv[1]
TOPIC = "orders"
PARTITIONS = 3
RECORDS = 200


def consume_all(consumer, expected, deadline_s=30):
    """Polls until `expected` records arrived (or the deadline, then fails)."""
    records = []
    deadline = time.monotonic() + deadline_s
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    return records


admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="compat-admin")

# Admin: create, create again, list.
admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
try:
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
    check(False, "creating an existing topic must fail")
except TopicAlreadyExistsError:
    pass
check(TOPIC in admin.list_topics(), "list_topics shows the new topic")
passed("admin create_topics, TopicAlreadyExists, list_topics")

# Producer: acks=all with idempotence, JSON values, send().get(), callbacks, flush.
producer = KafkaProducer(
    bootstrap_servers=BOOTSTRAP,
    acks="all",
    enable_idempotence=True,
    retries=5,
    key_serializer=lambda key: key.encode(),
    value_serializer=lambda value: json.dumps(value).encode(),
)
acked = []
futures = []
for number in range(RECORDS):
    future = producer.send(TOPIC, key=f"customer-{number % 7}", value={"order": number})
    future.add_callback(lambda metadata: acked.append(metadata))
    futures.append(future)
first = futures[0].get(timeout=30)
check(first.offset >= 0 and first.topic == TOPIC, f"send().get() metadata {first}")
producer.flush(timeout=30)
check(len(acked) == RECORDS, f"every callback fired ({len(acked)})")
offsets = {}
for metadata in acked:
    offsets.setdefault(metadata.partition, []).append(metadata.offset)
for partition, seen in offsets.items():
    check(sorted(seen) == list(range(len(seen))), f"dense offsets in partition {partition}")
producer.close()
passed("producer acks=all idempotent: send().get(), callbacks, flush, dense offsets")

# acks=1 and acks=0 producers.
for acks in (1, 0):
    plain = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks=acks)
    for number in range(10):
        plain.send(TOPIC, key=b"plain", value=f"acks-{acks}-{number}".encode(), partition=0)
    plain.flush(timeout=30)
    plain.close()
passed("producer acks=1 and acks=0")
TOTAL = RECORDS + 20

# Consumer without a group: assign, seek_to_beginning, poll everything.
partitions = [TopicPartition(TOPIC, partition) for partition in range(PARTITIONS)]
consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP, enable_auto_commit=False)
consumer.assign(partitions)
consumer.seek_to_beginning()
records = consume_all(consumer, TOTAL)
check(len(records) == TOTAL, f"consumed {len(records)} of {TOTAL}")
orders = sorted(
    json.loads(record.value)["order"] for record in records if record.key != b"plain"
)
check(orders == list(range(RECORDS)), "every order consumed once")
passed("consumer assign + seek_to_beginning + poll")

# Seek into the middle of a batch: the next record is the one sought.
partition0 = partitions[0]
end = consumer.end_offsets([partition0])[partition0]
check(end > 5, f"partition 0 has records ({end})")
consumer.seek(partition0, 5)
consumer.pause(*partitions[1:])
sought = consume_all(consumer, 1)
check(sought and sought[0].offset == 5, f"seek(5) gave {sought[:1]}")
consumer.resume(*partitions[1:])
passed("consumer seek into a batch")

# Offsets: end, beginning, by time.
ends = consumer.end_offsets(partitions)
check(sum(ends.values()) == TOTAL, f"end_offsets sum {ends}")
beginnings = consumer.beginning_offsets(partitions)
check(all(offset == 0 for offset in beginnings.values()), f"beginning_offsets {beginnings}")
by_time = consumer.offsets_for_times({partition0: 0})
check(by_time[partition0] is not None and by_time[partition0].offset == 0, f"{by_time}")
future = consumer.offsets_for_times({partition0: int(time.time() * 1000) + 3_600_000})
check(future[partition0] is None, f"no offset after now: {future}")
consumer.seek_to_end(partition0)
check(consumer.position(partition0) == ends[partition0], "seek_to_end")
consumer.close()
passed("end_offsets, beginning_offsets, offsets_for_times, seek_to_end")

# Configs: describe, alter.
resource = ConfigResource(ConfigResourceType.TOPIC, TOPIC, configs={"retention.ms": "3600000"})
admin.alter_configs([resource])
described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
check("3600000" in repr(described), f"retention.ms altered: {described!r:.300}")
passed("admin alter_configs, describe_configs")

# Grow the topic.
admin.create_partitions({TOPIC: NewPartitions(total_count=PARTITIONS + 2)})
described = admin.describe_topics([TOPIC])
check(len(described[0]["partitions"]) == PARTITIONS + 2, f"grown: {described!r:.300}")
passed("admin create_partitions, describe_topics")

# Delete.
admin.delete_topics([TOPIC])
deadline = time.monotonic() + 30
while TOPIC in admin.list_topics() and time.monotonic() < deadline:
    time.sleep(0.1)
check(TOPIC not in admin.list_topics(), "deleted topic gone")
admin.close()
passed("admin delete_topics")
print("all scenarios passed", flush=True)
