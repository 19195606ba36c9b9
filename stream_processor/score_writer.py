"""The scores topic into MySQL: ``ScoreWriter`` reads the scores in batches with aiokafka's own consumer
and upserts each batch in one statement (``ScoreStore.store``), then commits the batch's offsets.

Why not a Faust agent (it was one until 2026-12-05): Faust delivers every record to an agent one by
one (per record a callback, tasks and an ``asyncio.wait``, ~40 us here), which is the price of
its per-event streams, and the writer does nothing per event: it only writes batches. In the
processor's benchmark the whole agent (delivery, decoding, upserts) cost ~9 us of CPU a keypoint
frame (scores are ~1 in 7.5 frames); ``getmany`` hands over a batch in one call, ~4 us less
(docs/benchmarks.md, issue 15, seventh session).

Guarantees (unchanged): rows are upserted by session and window end, so a batch written twice (a
crash between the upsert and the commit, a rebalance) leaves the same rows; the offsets move only
after MySQL has the rows, so nothing is lost while MySQL is away (the writer waits and retries,
``ScoreStore.until_done``) and the scoring agent goes on publishing live scores meanwhile.

Its consumer group is ``<processor app id>-rows``: one writer per processor process, the scores
topic's partitions shared among them. A group that has no offset for a partition yet (the first
start after the upgrade) starts where the processor's Faust group, which wrote the rows before, had
got to, else at the earliest retained score (re-upserting is harmless).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from rehab.adapters import metrics
from rehab.records import Score
from rehab.settings import Settings

log = logging.getLogger("rehab.stream_processor")
BATCH = 1000
POLL_MS = 1000
FETCH_MIN_BYTES, FETCH_MAX_WAIT_MS = 1 << 16, 200
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # the pause before starting a failed consumer again, doubling


def rows_group(settings: Settings) -> str:
    return f"{settings.processor_app_id}-rows"


class ScoreWriter:
    """``run()`` until cancelled. ``store(scores)`` writes rows (waiting while MySQL is away);
    ``dead_letter(topic, partition, offset, key, value, reason)`` takes a record that is not a score."""

    def __init__(self, settings: Settings, store: Callable[[list[Score]], Awaitable[None]],
                 dead_letter: Callable[..., Awaitable[None]]):
        self.settings, self.store, self.dead_letter = settings, store, dead_letter
        self.rows = 0  # rows written (upserted) by this writer

    def consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, group_id=rows_group(self.settings),
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=BATCH,
            fetch_min_bytes=FETCH_MIN_BYTES, fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            session_timeout_ms=10_000, heartbeat_interval_ms=2_000)  # as the processor's Faust group

    async def run(self) -> None:
        """Writes until cancelled. A consumer that fails (Kafka away at start, a fatal consumer error) is
        logged and started again after a pause: the writer never takes the processor down."""
        delay = RETRY_FIRST_S
        while True:
            started = asyncio.get_running_loop().time()
            try:
                await self._run_once()
            except (KafkaError, OSError) as exc:
                log.warning("the score writer's consumer failed (%r); starting it again in %.0f s", exc, delay)
            except Exception:  # a bug: logged, and the batch is read again (its offsets did not move)
                log.exception("the score writer failed; starting it again in %.0f s", delay)
            if asyncio.get_running_loop().time() - started > 60.0:
                delay = RETRY_FIRST_S  # it had been running: a new failure, not the same one again
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _run_once(self) -> None:
        consumer = self.consumer()
        await consumer.start()
        try:
            consumer.subscribe([self.settings.topics.scores], listener=_StartWhereFaustWas(consumer, self.settings))
            while True:
                await self.write(consumer, await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH))
        finally:
            await consumer.stop()

    async def write(self, consumer, records: dict) -> None:
        """One batch: scores decoded (what is not one goes to the dead letters), rows upserted, offsets
        committed."""
        scores, ends = [], {}
        for tp, messages in records.items():
            for m in messages:
                if m.value is None:  # a tombstone: nothing to store
                    continue
                try:
                    scores.append(Score.from_json(m.value))
                except Exception as exc:  # (MessageError: not ours to store; a reason for the dead letters)
                    await self.dead_letter(m.topic, m.partition, m.offset, m.key, m.value, str(exc))
            if messages:
                ends[tp] = OffsetAndMetadata(messages[-1].offset + 1, "")
        if scores:
            metrics.SCORE_ROWS_PENDING.set(len(scores))
            await self.store(scores)
            metrics.SCORE_ROWS_PENDING.set(0)
            self.rows += len(scores)
        if ends:
            try:
                await consumer.commit(ends)
            except (CommitFailedError, IllegalStateError) as exc:  # the partitions moved meanwhile: their new
                # writer reads these scores again and upserts the same rows
                log.info("score rows written but their offsets not committed (%s): rewritten by the next owner", exc)


class _StartWhereFaustWas(ConsumerRebalanceListener):
    """For a partition this group has no offset for: the offset the processor's Faust app committed
    (its ``write_scores`` agent wrote the rows before), if any."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings):
        self.consumer, self.settings = consumer, settings

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        fresh = []
        for tp in assigned:
            if await self.consumer.committed(tp) is None:
                fresh.append(tp)
        if not fresh:
            return
        try:
            before = await _committed_offsets(self.settings, fresh)
        except KafkaError as exc:
            log.warning("could not read the Faust group's offsets of the scores topic (%s): from the earliest", exc)
            return
        for tp in fresh:
            if tp in before:
                self.consumer.seek(tp, before[tp])


async def _committed_offsets(settings: Settings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The processor's Faust group's committed offsets for ``partitions``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="rehab-score-writer")
    await admin.start()
    try:
        got = await admin.list_consumer_group_offsets(settings.processor_app_id, partitions=partitions)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in got.items() if meta.offset >= 0}
