"""Scores from Kafka to every WebSocket subscriber of the session, with a bounded queue each
(a slow subscriber loses its oldest scores, never slows the others)."""
from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

log = logging.getLogger("rehab.gateway.fanout")


class ScoreFanout:
    def __init__(self, queue_size: int = 64):
        self.queue_size = queue_size
        self.subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)

    def subscribe(self, session_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(self.queue_size)
        self.subscribers[session_id].add(q)
        return q

    def unsubscribe(self, session_id: str, q: asyncio.Queue) -> None:
        subs = self.subscribers.get(session_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self.subscribers[session_id]

    def publish(self, session_id: str, payload: str) -> int:
        delivered = 0
        for q in list(self.subscribers.get(session_id, ())):
            if q.full():
                q.get_nowait()
            q.put_nowait(payload)
            delivered += 1
        return delivered

    async def run(self, consumer) -> None:
        """Feeds from a started aiokafka consumer of the scores topic until cancelled."""
        async for msg in consumer:
            if msg.key is None:
                continue
            self.publish(msg.key.decode("utf-8", "replace"), msg.value.decode("utf-8", "replace"))
