"""The processor's outbox (stream_processor/outbox.py) against a fake aiokafka producer: one record batch
per topic partition, records kept in order, a full batch split, records keyed by session partitioned as
every producer of the product partitions them, delivery failures raised or logged."""
import asyncio
import logging

import pytest

from rehab.adapters.kafka_clients import default_partition
from stream_processor.outbox import Outbox


class FakeBatch:
    def __init__(self, capacity: int):
        self.capacity, self.records = capacity, []

    def append(self, *, key, value, timestamp):
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    def __init__(self, capacity=100, partitions=4, fail=False):
        self.capacity, self.partitions, self.fail = capacity, partitions, fail
        self.sent: list[tuple[str, int, list]] = []

    def create_batch(self):
        return FakeBatch(self.capacity)

    async def partitions_for(self, topic):
        return set(range(self.partitions))

    async def send_batch(self, batch, topic, *, partition):
        self.sent.append((topic, partition, batch.records))
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("broker said no"))
        else:
            fut.set_result(None)
        return fut


def test_records_go_out_as_one_batch_per_partition_in_order_and_a_full_batch_is_split():
    producer = FakeProducer(capacity=3)
    box = Outbox(lambda: producer)
    for i in range(5):
        box.add("t", 1, b"k%d" % i, b"v%d" % i)
    box.add("t", 0, b"a", b"x")
    box.add("u", 1, b"b", None)  # a tombstone
    assert len(box) == 7
    asyncio.run(box.deliver())
    assert producer.sent == [
        ("t", 1, [(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")]),
        ("t", 1, [(b"k3", b"v3"), (b"k4", b"v4")]),
        ("t", 0, [(b"a", b"x")]),
        ("u", 1, [(b"b", None)]),
    ]
    assert len(box) == 0  # sent records are not sent again
    asyncio.run(box.deliver())
    assert len(producer.sent) == 4


def test_records_keyed_by_session_land_in_the_sessions_partition():
    producer = FakeProducer(partitions=12)
    box = Outbox(lambda: producer)
    sessions = [f"session-{i}" for i in range(40)]
    for sid in sessions:
        box.add_keyed("scores", f"{sid}/7".encode(), b"{}")
    asyncio.run(box.deliver())
    where = {key.split(b"/")[0].decode(): partition for _, partition, records in producer.sent for key, _ in records}
    assert where == {sid: default_partition(sid, 12) for sid in sessions}
    assert len({p for p in where.values()}) > 1


def test_a_failed_delivery_raises_when_awaited_and_is_logged_when_not(caplog):
    box = Outbox(lambda: FakeProducer(fail=True))
    box.add("t", 0, b"k", b"v")
    with pytest.raises(RuntimeError, match="broker said no"):
        asyncio.run(box.deliver())

    async def unawaited():
        box.add("t", 0, b"k", b"v")
        await box.send_unawaited()
        await asyncio.sleep(0)  # the done callbacks run

    with caplog.at_level(logging.ERROR, logger="rehab.stream_processor"):
        asyncio.run(unawaited())
    assert "not delivered" in caplog.text and "broker said no" in caplog.text
