"""Records for Kafka, sent as one record batch per topic partition through the Faust app's own producer.

Why not ``topic.send`` / ``table.send_changelog`` per record: each of those goes through Faust's
``FutureMessage``, its sensors and its producer buffer (a task that hands records to aiokafka one by
one), so the sender went out with ~2.4 records a produce request and the processor spent ~18 % of its
time producing (py-spy, ``./dev bench processor_throughput --py-spy 8``). aiokafka's own batch API
(``create_batch`` / ``send_batch``) takes a partition's records in one call. The records go through
the same aiokafka producer as Faust's (so Faust's flush on a rebalance covers them) and keep their
order within a partition.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaProducer

from rehab.adapters.kafka_clients import session_partitioner

log = logging.getLogger("rehab.stream_processor")


def faust_producer(app) -> Callable[[], AIOKafkaProducer]:
    """The aiokafka producer under a started Faust app (Faust exposes no public accessor; this is the
    one place that reaches for it)."""
    return app.producer._ensure_producer


class Outbox:
    """Collects (topic, partition, key, value); ``send`` submits one batch per partition (more when a
    partition's records exceed the producer's batch size) and returns the delivery futures."""

    def __init__(self, producer: Callable[[], AIOKafkaProducer]):
        self._producer = producer
        self._records: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self._session_keyed: dict[str, list[tuple[bytes, bytes]]] = {}

    def __len__(self) -> int:
        return sum(map(len, self._records.values())) + sum(map(len, self._session_keyed.values()))

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._records.setdefault((topic, partition), []).append((key, value))

    def add_keyed(self, topic: str, key: bytes, value: bytes) -> None:
        """A record partitioned as every producer of the product partitions it (by its key's session)."""
        self._session_keyed.setdefault(topic, []).append((key, value))

    async def send(self) -> list[asyncio.Future]:
        producer = self._producer()
        for topic, records in self._session_keyed.items():
            partitions = sorted(await producer.partitions_for(topic))
            for key, value in records:
                self.add(topic, session_partitioner(key, partitions, partitions), key, value)
        self._session_keyed.clear()
        futures = []
        for (topic, partition), records in self._records.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"a record of {len(value or b'')} bytes for {topic} does not fit a batch")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        self._records.clear()
        return futures

    async def deliver(self) -> None:
        """Sends and waits until Kafka has acknowledged every record (raises if it did not)."""
        await asyncio.gather(*await self.send())

    async def send_unawaited(self) -> None:
        """Sends; a delivery that fails later is logged (as Faust's ``send_soon`` did for the tables)."""
        for fut in await self.send():
            fut.add_done_callback(_log_failure)


def _log_failure(fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a batch of state records was not delivered: %r", fut.exception())
