"""Scores (and, for subscribers who ask, the patient's keypoints) from Kafka to every WebSocket
subscriber of the session, with a bounded queue each (a slow subscriber loses its oldest messages,
never slows the others).

The keypoints topic carries every frame of every session (15 a second each), so it is read only while
someone subscribed to keypoints (the browser app in cloud mode draws its skeleton from them): with 100
on-device sessions and nobody asking, reading it anyway cost the gateway ~15 % of its time in fetches."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

import orjson

from rehab.adapters import metrics
from rehab.records import SCORED_TO_PUSHED, now_ms
from rehab.topics import session_of

log = logging.getLogger("rehab.gateway.fanout")


class ScoreFanout:
    """``open_keypoints()``: an async factory of a started consumer of the keypoints topic (at its end),
    called when the first keypoint subscriber arrives; the consumer is stopped ``keypoints_linger_s``
    after the last one leaves (a reloading page does not restart it)."""

    def __init__(self, queue_size: int = 64, open_keypoints=None, keypoints_linger_s: float = 30.0):
        self.queue_size = queue_size
        self.subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self.keypoint_subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self.open_keypoints = open_keypoints
        self.keypoints_linger_s = keypoints_linger_s
        self.keypoint_feed: asyncio.Task | None = None

    def subscribe(self, session_id: str, keypoints: bool = False) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.subscribers[session_id].add(q)
        if keypoints:
            self.keypoint_subscribers[session_id].add(q)
            if self.open_keypoints is not None and (self.keypoint_feed is None or self.keypoint_feed.done()):
                self.keypoint_feed = asyncio.create_task(self._feed_keypoints())
        return q

    def unsubscribe(self, session_id: str, q: asyncio.Queue) -> None:
        for table in (self.subscribers, self.keypoint_subscribers):
            subs = table.get(session_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del table[session_id]

    async def _feed_keypoints(self) -> None:
        try:
            consumer = await self.open_keypoints()
        except Exception:
            log.exception("could not read the keypoints topic; retried with the next keypoint subscriber")
            return
        try:
            idle_since = None
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for msg in records:
                        sid = session_of(msg.key)
                        if sid in self.keypoint_subscribers and msg.value is not None:  # (not a tombstone)
                            self.publish(sid, msg.value.decode("utf-8", "replace"), keypoints=True)
                if self.keypoint_subscribers:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.keypoints_linger_s:
                    return
        except Exception:
            log.exception("keypoint feed failed; it restarts with the next keypoint subscriber")
        finally:
            await consumer.stop()

    async def close(self) -> None:
        if self.keypoint_feed is not None:
            self.keypoint_feed.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.keypoint_feed

    def publish(self, session_id: str, payload: str, keypoints: bool = False) -> int:
        delivered = 0
        table = self.keypoint_subscribers if keypoints else self.subscribers
        for q in list(table.get(session_id, ())):
            if q.full():
                q.get_nowait()
            q.put_nowait(payload)
            delivered += 1
        return delivered

    async def run(self, consumer) -> None:
        """Feeds from a started aiokafka consumer of the scores topic until cancelled; an error (Kafka
        away, a record it cannot use) is logged and the feed goes on, it never ends score fan-out."""
        while True:
            try:
                await self._feed(consumer)
                return  # the consumer was stopped
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.ERRORS.labels("gateway", "score_fanout").inc()
                log.exception("score fan-out failed; resuming in 1 s")
                await asyncio.sleep(1.0)

    async def _feed(self, consumer) -> None:
        async for msg in consumer:
            if msg.key is None or msg.value is None:  # a tombstone or a keyless record: nothing to push
                continue
            sid = session_of(msg.key)
            delivered = self.publish(sid, msg.value.decode("utf-8", "replace"))
            if delivered:
                try:
                    metrics.observe_hop(SCORED_TO_PUSHED, now_ms() - orjson.loads(msg.value)["score_ts_ms"])
                except (ValueError, KeyError, TypeError):
                    pass
