"""aiokafka 0.14 against Ledge's Kafka listener, unmodified.

Scenarios (docs/KAFKA-COMPAT.md): the admin client creates a topic; an idempotent acks=all
producer writes dense offsets; two consumers of one group split the partitions, one leaves,
the other takes over, every record is consumed once, and a new member starts at the
commits; a manual commit of a chosen offset is read back; seek; a retried duplicate batch
(same producer id, epoch and sequence, sent again as a producer retry would) is answered
with the original offsets and stored once; DeleteRecords moves the log start. Every wait is
bounded.

Usage: aiokafka_scenarios.py BOOTSTRAP_SERVERS
Prints one line per scenario and "OK" at the end; exits non-zero on the first failure.
"""

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from scenario_checks import check, passed, wait_for_async

BOOTSTRAP = sys.argv[1]
TOPIC = "aio-orders"
GROUP = "aio-group"
PARTITIONS = 4
WAIT_SECONDS = 60


async def wait_for(what, condition):
    await wait_for_async(what, condition, WAIT_SECONDS)


async def produce(producer, start, count):
    offsets = {}
    for number in range(start, start + count):
        metadata = await producer.send_and_wait(
            TOPIC, str(number).encode(), partition=number % PARTITIONS
        )
        offsets[number] = (metadata.partition, metadata.offset)
    return offsets


def consumer(**extra):
    config = dict(
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=30000,
    )
    config.update(extra)
    return AIOKafkaConsumer(**config)


class Member:
    """A consumer of the group in its own task: reads, records what it got, commits it
    before reading more (what is committed is done)."""

    def __init__(self, name):
        self.name = name
        self.consumer = consumer(group_id=GROUP, client_id=name)
        self.values = []
        self.stopping = asyncio.Event()
        self.task = None

    async def start(self):
        self.consumer.subscribe([TOPIC])
        await self.consumer.start()
        self.task = asyncio.create_task(self.run())

    async def run(self):
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200)
            got = [record.value.decode() for records in batches.values() for record in records]
            if got:
                await self.consumer.commit()
                self.values.extend(got)
        # Leaves the group (LeaveGroup), so the other member takes over at once.
        await self.consumer.stop()

    def assignment(self):
        return {tp.partition for tp in self.consumer.assignment()}

    async def stop(self):
        self.stopping.set()
        await asyncio.wait_for(self.task, WAIT_SECONDS)


async def duplicate_is_deduplicated(client):
    """A batch sent twice with the same producer id, epoch and sequence (a producer's retry
    after a lost answer): the second answer gives the first one's offset, and the partition
    holds the batch once."""
    node_id = client.cluster.leader_for_partition(TopicPartition(TOPIC, 0))
    answer = await client.send(node_id, InitProducerIdRequest(None, 60000))
    check(answer.error_code == 0, f"InitProducerId: {answer}")
    producer_id, producer_epoch = answer.producer_id, answer.producer_epoch
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=0,
        batch_size=1 << 16,
    )
    for index in range(3):
        builder.append(index, timestamp=None, key=None, value=f"dup-{index}".encode(), headers=[])
    batch = bytes(builder.build())
    request = ProduceRequest(None, -1, 30000, [(TOPIC, [(0, batch)])])
    first = await client.send(node_id, request)
    retried = await client.send(node_id, request)
    (_, [(_, first_error, first_offset, *_)]) = first.topics[0][:2]
    (_, [(_, retried_error, retried_offset, *_)]) = retried.topics[0][:2]
    check(first_error == 0, f"first send: error {first_error}")
    check(retried_error == 0, f"retried send: error {retried_error} (Kafka answers it as a success)")
    check(retried_offset == first_offset, f"retry answered with the original offset: {first_offset} {retried_offset}")
    return first_offset


async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
    check(TOPIC in await admin.list_topics(), "list_topics shows the topic")
    passed("admin create_topics, list_topics")

    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    offsets = await produce(producer, 0, 40)
    for partition in range(PARTITIONS):
        got = sorted(offset for (p, offset) in offsets.values() if p == partition)
        check(got == list(range(10)), f"partition {partition} offsets dense from 0: {got}")
    # send() without waiting, then flush: callbacks run, every future done.
    delivered = []
    futures = [await producer.send(TOPIC, b"x", partition=3) for _ in range(5)]
    for future in futures:
        future.add_done_callback(lambda done: delivered.append(done.result().offset))
    await producer.flush()
    await asyncio.sleep(0)
    check(sorted(delivered) == list(range(10, 15)), f"send + flush offsets: {delivered}")
    passed("producer acks=all + enable_idempotence, send_and_wait, send + flush")

    # The group: two members split the partitions, one leaves, the other takes over. The
    # five "x" records in partition 3 are consumed too.
    first = Member("consumer-1")
    await first.start()
    await wait_for("consumer-1 to own every partition", lambda: first.assignment() == set(range(PARTITIONS)))
    second = Member("consumer-2")
    await second.start()

    def split():
        mine, theirs = first.assignment(), second.assignment()
        return mine and theirs and not (mine & theirs) and (mine | theirs) == set(range(PARTITIONS))

    await wait_for("the two consumers to split the partitions", split)
    print("split:", sorted(first.assignment()), sorted(second.assignment()), flush=True)
    await produce(producer, 40, 20)
    await wait_for("all 65 records consumed", lambda: len(first.values) + len(second.values) >= 65)
    check(second.values, "consumer-2 consumed something")
    await second.stop()
    await wait_for("consumer-1 to take over every partition", lambda: first.assignment() == set(range(PARTITIONS)))
    await produce(producer, 60, 20)
    await wait_for("all 85 records consumed", lambda: len(first.values) + len(second.values) >= 85)
    await first.stop()
    consumed = [value for value in first.values + second.values if value != "x"]
    check(
        sorted(consumed, key=int) == [str(n) for n in range(80)]
        and len(first.values + second.values) == 85,
        f"exactly once: {len(consumed)} records, duplicates "
        f"{sorted({v for v in consumed if consumed.count(v) > 1}, key=int)}",
    )
    passed("group: split, leave, takeover, every record once")

    # The commits survive: a new member reads them and starts there.
    third = consumer(group_id=GROUP)
    third.subscribe([TOPIC])
    await third.start()
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    ends = await third.end_offsets(partitions)
    check([ends[tp] for tp in partitions] == [20, 20, 20, 25], f"end offsets {ends}")
    for tp in partitions:
        committed = await third.committed(tp)
        check(committed == ends[tp], f"{tp} committed {committed}, end {ends[tp]}")
    batches = await third.getmany(timeout_ms=2000)
    check(not any(batches.values()), f"a new member re-read committed records: {batches}")
    await wait_for("the new member's assignment", lambda: len(third.assignment()) == PARTITIONS)
    for tp in partitions:
        check(await third.position(tp) == ends[tp], f"{tp} position")
    await third.stop()
    group_offsets = await admin.list_consumer_group_offsets(GROUP)
    check({tp: meta.offset for tp, meta in group_offsets.items()} == ends, f"admin offsets {group_offsets}")
    passed("commits seen by a new member of the group and the admin client")

    # A manual commit of a chosen offset, read back; a member of that group starts there.
    manual = consumer(group_id="aio-manual")
    manual.subscribe([TOPIC])
    await manual.start()
    await wait_for("aio-manual's assignment", lambda: len(manual.assignment()) == PARTITIONS)
    await manual.commit({TopicPartition(TOPIC, 1): 7})
    check(await manual.committed(TopicPartition(TOPIC, 1)) == 7, "committed offset read back")
    manual.seek(TopicPartition(TOPIC, 1), 7)
    record = await asyncio.wait_for(manual.getone(TopicPartition(TOPIC, 1)), WAIT_SECONDS)
    check(record.offset == 7 and record.value == b"29", f"offset 7 of partition 1: {record}")
    await manual.stop()
    passed("manual commit of an offset, read back")

    # Seek without a group: into the middle of a batch, to the beginning, to the end.
    reader = consumer()
    await reader.start()
    tp = TopicPartition(TOPIC, 2)
    reader.assign([tp])
    reader.seek(tp, 5)
    record = await asyncio.wait_for(reader.getone(), WAIT_SECONDS)
    check(record.offset == 5 and record.value == b"22", f"seek to 5: {record}")
    await reader.seek_to_beginning(tp)
    record = await asyncio.wait_for(reader.getone(), WAIT_SECONDS)
    check(record.offset == 0 and record.value == b"2", f"seek_to_beginning: {record}")
    await reader.seek_to_end(tp)
    check(await reader.position(tp) == 20, "seek_to_end")
    found = await reader.offsets_for_times({tp: 0})
    check(found[tp].offset == 0, f"offsets_for_times(0): {found}")
    passed("seek, seek_to_beginning, seek_to_end, offsets_for_times")

    # A retried duplicate is deduplicated: the partition grows by the batch once.
    before = (await reader.end_offsets([TopicPartition(TOPIC, 0)]))[TopicPartition(TOPIC, 0)]
    base = await duplicate_is_deduplicated(producer.client)
    after = (await reader.end_offsets([TopicPartition(TOPIC, 0)]))[TopicPartition(TOPIC, 0)]
    check(base == before and after == before + 3, f"stored once: {before} -> {after}, base {base}")
    passed("a retried duplicate batch answered with its original offset, stored once")

    # DeleteRecords: the log start moves; reading from before it resets to the new start.
    deleted = await admin.delete_records({TopicPartition(TOPIC, 2): RecordsToDelete(4)})
    check(deleted[TopicPartition(TOPIC, 2)] == 4, f"delete_records low watermark: {deleted}")
    starts = await reader.beginning_offsets([tp])
    check(starts[tp] == 4, f"beginning offset after delete_records: {starts}")
    await reader.seek_to_beginning(tp)
    record = await asyncio.wait_for(reader.getone(), WAIT_SECONDS)
    check(record.offset == 4, f"first record after delete_records: {record.offset}")
    await reader.stop()
    passed("delete_records")

    await producer.stop()
    await admin.close()
    print("OK", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
