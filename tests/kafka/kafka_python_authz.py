"""kafka-python against Ledge's Kafka listener with authorization on: one step per run, one
JSON argument: bootstrap, user, password, step, topic, group (for "consume").
  "produce": send one record to `topic` and wait for it;
  "consume": consume `topic` in consumer group `group`.
Prints "ok" when the step succeeds, else "error <ExceptionClassName>: <text>", and exits 0
either way (the test reads the line); exits non-zero only if the script itself breaks."""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

args = json.loads(sys.argv[1])
common = dict(
    bootstrap_servers=args["bootstrap"],
    security_protocol="SASL_PLAINTEXT",
    sasl_mechanism="SCRAM-SHA-256",
    sasl_plain_username=args["user"],
    sasl_plain_password=args["password"],
    request_timeout_ms=10000,
)

try:
    if args["step"] == "produce":
        producer = KafkaProducer(acks="all", max_block_ms=10000, **common)
        producer.send(args["topic"], key=b"k", value=b"authorized").get(timeout=15)
        producer.close()
    elif args["step"] == "consume":
        consumer = KafkaConsumer(
            group_id=args["group"],
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **common,
        )
        consumer.subscribe([args["topic"]])
        deadline = time.monotonic() + 15
        records = 0
        while records == 0 and time.monotonic() < deadline:
            records += sum(len(batch) for batch in consumer.poll(timeout_ms=500).values())
        consumer.close()
        if records == 0:
            print("error Timeout: no record consumed", flush=True)
            sys.exit(0)
    else:
        raise ValueError(f"unknown step {args['step']}")
except KafkaError as error:
    print(f"error {type(error).__name__}: {error}", flush=True)
    sys.exit(0)
print("ok", flush=True)
