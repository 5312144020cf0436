"""confluent-kafka (librdkafka) with SASL SCRAM against Ledge's Kafka listener. Run by the
in-process tests in node/src/kafka/listener/tests/sasl_clients.rs with one JSON argument:
bootstrap, protocol, mechanism, user, password, topic, records, cafile (SASL_SSL), expect
("ok" or "auth-failure"). Prints one line per step, exits non-zero on the first failure."""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

args = json.loads(sys.argv[1])
common = {
    "bootstrap.servers": args["bootstrap"],
    "security.protocol": args["protocol"],
    "sasl.mechanisms": args["mechanism"],
    "sasl.username": args["user"],
    "sasl.password": args["password"],
}
if args.get("cafile"):
    common["ssl.ca.location"] = args["cafile"]


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


if args["expect"] == "auth-failure":
    errors = []
    producer = Producer({**common, "error_cb": lambda error: errors.append(error)})
    producer.produce(args["topic"], b"never")
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    if not errors:
        fail("no error reported for a wrong password")
    text = "; ".join(str(error) for error in errors)
    print(f"refused: {text}", flush=True)
    if args["password"] in text:
        fail("the error repeats the password")
    if "SASL authentication error" not in text and "Authentication failed" not in text:
        fail(f"not an authentication error: {text}")
    sys.exit(0)

records = args["records"]
delivered = []
producer = Producer({**common, "acks": "all"})
for number in range(records):
    producer.produce(
        args["topic"],
        key=b"k",
        value=f"value-{number}".encode(),
        partition=0,
        on_delivery=lambda error, message: delivered.append(error),
    )
producer.flush(30)
if len(delivered) != records or any(error is not None for error in delivered):
    fail(f"delivery reports: {delivered[:3]}... of {len(delivered)}")
print(f"produced {records}", flush=True)

consumer = Consumer({**common, "group.id": "sasl-test", "enable.auto.commit": False})
consumer.assign([TopicPartition(args["topic"], 0, 0)])
values = []
deadline = time.monotonic() + 30
while len(values) < records and time.monotonic() < deadline:
    message = consumer.poll(0.5)
    if message is None:
        continue
    if message.error():
        raise KafkaException(message.error())
    values.append(message.value().decode())
consumer.close()
expected = [f"value-{number}" for number in range(records)]
if values != expected:
    fail(f"consumed {len(values)} records, not the {records} produced in order")
print(f"consumed {records}", flush=True)
