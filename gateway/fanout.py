"""Scores (and, for subscribers who ask, the patient's keypoints) from Kafka to every WebSocket
subscriber of the session, with a bounded queue each (a slow subscriber loses its oldest messages,
never slows the others)."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import orjson

from rehab import metrics
from rehab.records import now_ms

log = logging.getLogger("rehab.gateway.fanout")


class ScoreFanout:
    def __init__(self, queue_size: int = 64):
        self.queue_size = queue_size
        self.subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)
        self.keypoint_subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)

    def subscribe(self, session_id: str, keypoints: bool = False) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.subscribers[session_id].add(q)
        if keypoints:
            self.keypoint_subscribers[session_id].add(q)
        return q

    def unsubscribe(self, session_id: str, q: asyncio.Queue) -> None:
        for table in (self.subscribers, self.keypoint_subscribers):
            subs = table.get(session_id)
            if subs is not None:
                subs.discard(q)
                if not subs:
                    del table[session_id]

    def publish(self, session_id: str, payload: str, keypoints: bool = False) -> int:
        delivered = 0
        table = self.keypoint_subscribers if keypoints else self.subscribers
        for q in list(table.get(session_id, ())):
            if q.full():
                q.get_nowait()
            q.put_nowait(payload)
            delivered += 1
        return delivered

    async def run(self, consumer, keypoints_topic: str | None = None) -> None:
        """Feeds from a started aiokafka consumer of the scores (and keypoints) topic until cancelled."""
        async for msg in consumer:
            if msg.key is None:
                continue
            sid = msg.key.decode("utf-8", "replace")
            if msg.topic == keypoints_topic:
                if sid in self.keypoint_subscribers:
                    self.publish(sid, msg.value.decode("utf-8", "replace"), keypoints=True)
                continue
            delivered = self.publish(sid, msg.value.decode("utf-8", "replace"))
            if delivered:
                try:
                    metrics.observe_hop("scored_to_pushed", now_ms() - orjson.loads(msg.value)["score_ts_ms"])
                except (ValueError, KeyError, TypeError):
                    pass
