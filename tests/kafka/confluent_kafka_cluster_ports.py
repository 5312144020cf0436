"""confluent-kafka (librdkafka) on a 3-node cluster whose nodes listen for Kafka on ports of
their own (not their QUIC ports): bootstrapped from one node, the client must learn the
other nodes' Kafka addresses from Metadata (each node registers its own with the
controller) and produce to the partition leaders there. Run by the e2e test
`kafka_cluster_nodes_register_their_kafka_ports` (tests/e2e/kafka_cluster_ports.rs).

  BOOTSTRAP TOPIC KAFKA_ADDRESSES (comma-separated, every node's Kafka listener)

Prints "OK" at the end; exits non-zero on the first failure. Every wait is bounded.
"""

import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from scenario_checks import check

BOOTSTRAP, TOPIC, KAFKA_ADDRESSES = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
WAIT_SECONDS = 60
PER_PARTITION = 20

metadata = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(TOPIC, timeout=WAIT_SECONDS)
listed = sorted(f"{broker.host}:{broker.port}" for broker in metadata.brokers.values())
check(listed == sorted(KAFKA_ADDRESSES), f"brokers {listed}, expected {sorted(KAFKA_ADDRESSES)}")
partitions = metadata.topics[TOPIC].partitions
check(len(partitions) == 3, f"partitions: {partitions}")
leaders = {index: partition.leader for index, partition in partitions.items()}
bootstrap_id = [
    broker.id for broker in metadata.brokers.values() if f"{broker.host}:{broker.port}" == BOOTSTRAP
]
check(
    any(leader not in bootstrap_id for leader in leaders.values()),
    f"a partition led by another node than the bootstrap one: {leaders}",
)

producer = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "enable.idempotence": True})
errors = []
delivered = []


def on_delivery(error, message):
    if error is not None:
        errors.append(error)
    else:
        delivered.append((message.partition(), message.offset()))


for partition in partitions:
    for number in range(PER_PARTITION):
        producer.produce(
            TOPIC, value=f"p{partition}-{number}".encode(), partition=partition,
            on_delivery=on_delivery,
        )
check(producer.flush(WAIT_SECONDS) == 0 and not errors, f"produced: {errors}")
for partition in partitions:
    offsets = sorted(offset for index, offset in delivered if index == partition)
    check(offsets == list(range(PER_PARTITION)), f"partition {partition} offsets {offsets}")

reader = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "ports", "enable.auto.commit": False})
for partition in partitions:
    low, high = reader.get_watermark_offsets(
        TopicPartition(TOPIC, partition), timeout=WAIT_SECONDS, cached=False
    )
    check((low, high) == (0, PER_PARTITION), f"partition {partition} watermarks {low}, {high}")
reader.close()
print("OK", flush=True)
