"""kafka-python with SASL against Ledge's Kafka listener: the tutorial's producer and consumer
settings (`security_protocol="SASL_PLAINTEXT"` or `"SASL_SSL"`, `sasl_mechanism`,
`sasl_plain_username`/`sasl_plain_password`). Run by the in-process tests in
node/src/kafka/listener/tests/sasl_clients.rs with one JSON argument:
  bootstrap, protocol, mechanism, user, password, topic, records, cafile (SASL_SSL),
  expect ("ok": produce and consume `records` records; "auth-failure": the producer must
  fail to authenticate), pause_s (seconds to wait between two halves of the produce, to
  outlive a short session and make the client re-authenticate).
Prints one line per step and exits non-zero on the first failure."""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

args = json.loads(sys.argv[1])
common = dict(
    bootstrap_servers=args["bootstrap"],
    security_protocol=args["protocol"],
    sasl_mechanism=args["mechanism"],
    sasl_plain_username=args["user"],
    sasl_plain_password=args["password"],
    request_timeout_ms=15000,
)
if args.get("cafile"):
    common["ssl_cafile"] = args["cafile"]


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


if args["expect"] == "auth-failure":
    try:
        producer = KafkaProducer(max_block_ms=5000, **common)
        producer.send(args["topic"], b"never").get(timeout=10)
        fail("a wrong password was accepted")
    except KafkaError as error:
        print(f"refused: {type(error).__name__}: {error}", flush=True)
        if args["password"] in str(error):
            fail("the error repeats the password")
    sys.exit(0)

records = args["records"]
half = records // 2
producer = KafkaProducer(acks="all", **common)
for number in range(half):
    producer.send(args["topic"], key=b"k", value=f"value-{number}".encode())
producer.flush(timeout=30)
print(f"produced {half}", flush=True)
if args.get("pause_s"):
    time.sleep(args["pause_s"])
for number in range(half, records):
    producer.send(args["topic"], key=b"k", value=f"value-{number}".encode())
producer.flush(timeout=30)
producer.close()
print(f"produced {records}", flush=True)

consumer = KafkaConsumer(enable_auto_commit=False, **common)
partition = TopicPartition(args["topic"], 0)
consumer.assign([partition])
consumer.seek_to_beginning(partition)
values = []
deadline = time.monotonic() + 30
while len(values) < records and time.monotonic() < deadline:
    for batch in consumer.poll(timeout_ms=500).values():
        values.extend(record.value.decode() for record in batch)
consumer.close()
expected = [f"value-{number}" for number in range(records)]
if values != expected:
    fail(f"consumed {len(values)} records, not the {records} produced in order")
print(f"consumed {records}", flush=True)
