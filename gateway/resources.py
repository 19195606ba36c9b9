"""What the gateway opens at start-up and closes at shutdown: its MySQL pool, its two Kafka producers and
the scores consumer, the on-device keypoint publisher, the upload extractor and folder. One typed object,
owned by the app's lifespan (``open`` / ``close``); the route groups hold it and read its fields once
it is open."""
from __future__ import annotations

import asyncio
import contextlib
import tempfile
from typing import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.device_ingest import KeypointPublisher
from gateway.uploads import Extractor
from rehab.adapters.kafka_clients import async_producer, async_tail
from rehab.settings import Settings
from rehab.adapters.storage.repository import Database

# On-device keypoints wait up to 5 ms to share a produce request with other sessions' (Kafka 4.0 made 5 ms
# the Java producer's default, KIP-1030): with 100 on-device sessions 0.56 -> 0.50 cores of gateway, capture ->
# in Kafka p50 6 -> 8 ms (./dev bench device_capacity). A partition's batch holds ~700 frames (aiokafka's
# 16 KB default held ~10), so a send waits for a full batch only when Kafka is far behind.
KEYPOINTS_LINGER_MS = 5
KEYPOINTS_BATCH_BYTES = 1 << 20
# A consumer's fetch waits at the broker until a record arrives or this long: records are handed over as
# soon as they arrive either way, so it only sets how often an idle gateway asks (20 ms: 50 fetches a
# second per consumer with no session at all).
IDLE_FETCH_WAIT_MS = 500
DB_POOL_SIZE = 10


class Resources:
    db: Database
    producer: AIOKafkaProducer  # camera frames (cloud mode): a few sessions per gateway, each frame sent at once
    keypoint_producer: AIOKafkaProducer  # keypoints (on-device mode): hundreds of sessions per gateway, batched
    keypoints: KeypointPublisher
    scores: AIOKafkaConsumer  # the scores topic, tailed for the WebSockets
    extractor: Extractor
    uploads: tempfile.TemporaryDirectory

    def __init__(self, settings: Settings, make_backend: Callable):
        self._settings, self._make_backend = settings, make_backend
        self._publishing: asyncio.Task | None = None

    @property
    def is_open(self) -> bool:
        return self._publishing is not None

    async def open(self) -> None:
        s = self._settings
        self.db = await Database.connect(s, maxsize=DB_POOL_SIZE)
        self.producer = async_producer(s.kafka_bootstrap, linger_ms=0, max_request_size=8 * 1024 * 1024)
        await self.producer.start()
        self.keypoint_producer = async_producer(s.kafka_bootstrap, linger_ms=KEYPOINTS_LINGER_MS,
                                                max_batch_size=KEYPOINTS_BATCH_BYTES)
        await self.keypoint_producer.start()
        self.keypoints = KeypointPublisher(self.keypoint_producer, s.topics.keypoints)
        self.scores = await self.tail(s.topics.scores)
        self.extractor = Extractor(self._make_backend, s.frame_max_side)
        self.uploads = tempfile.TemporaryDirectory(prefix="rehab-uploads-")
        self._publishing = asyncio.create_task(self.keypoints.run())

    async def tail(self, topic: str) -> AIOKafkaConsumer:
        """A started consumer of what arrives on ``topic`` from now on (the scores; the keypoints while
        someone draws them)."""
        consumer = async_tail(topic, self._settings.kafka_bootstrap, fetch_max_wait_ms=IDLE_FETCH_WAIT_MS)
        await consumer.start()
        return consumer

    async def close(self) -> None:
        """After the sessions and streams that use them are closed: frames accepted from devices reach
        Kafka before the producer stops."""
        await self.scores.stop()
        await self.keypoints.drain()
        self._publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._publishing
        await self.keypoint_producer.stop()
        await self.producer.stop()
        await self.db.close()
        await asyncio.to_thread(self.extractor.close)
        self.uploads.cleanup()

    def device_queue(self) -> int:
        """Keypoint frames accepted from devices, not yet handed to Kafka (a gauge)."""
        return len(self.keypoints.queue) if self.is_open else 0
