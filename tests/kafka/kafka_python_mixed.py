"""A kafka-python 3 consumer joins a group whose other member is a QUIC consumer (`ledge
consume --group`): it gets a share of the partitions (the node assigns them: the group is a
KIP-848 group), prints SHARED, and once the QUIC member is gone (killed by the test) it gets
every partition (a heartbeat answers REBALANCE_IN_PROGRESS, it rejoins) and prints ALL.
Every wait is bounded.

Usage: kafka_python_mixed.py BOOTSTRAP_SERVERS TOPIC PARTITIONS GROUP
"""

import sys
import time

from kafka import KafkaConsumer

BOOTSTRAP, TOPIC, PARTITIONS, GROUP = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
WAIT_SECONDS = 60

consumer = KafkaConsumer(
    TOPIC,
    bootstrap_servers=BOOTSTRAP,
    group_id=GROUP,
    client_id="kafka-member",
    auto_offset_reset="earliest",
    enable_auto_commit=False,
    session_timeout_ms=10000,
    heartbeat_interval_ms=500,
)


def wait_for(what, condition):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        if condition():
            return sorted(tp.partition for tp in consumer.assignment())
    raise AssertionError(f"timed out waiting for {what}; assignment {consumer.assignment()}")


shared = wait_for("a share of the partitions", lambda: 0 < len(consumer.assignment()) < PARTITIONS)
print("SHARED", shared, flush=True)
everything = wait_for("every partition", lambda: len(consumer.assignment()) == PARTITIONS)
print("ALL", everything, flush=True)
consumer.commit()
consumer.close()
