"""Camera frames in, JPEG frames on Kafka out, per session, latest frame only.

The track reader overwrites a one-frame slot at camera pace; the publisher takes whatever is newest
when it is free (and within the session's fps budget). When the pipeline is slower than the camera,
frames are dropped, never queued, so latency cannot grow with time.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np

from rehab.adapters import metrics
from rehab.records import CAPTURE_TO_GATEWAY, FrameRecord, MessageError, check_client_ts, now_ms

log = logging.getLogger("rehab.gateway.ingest")


@dataclass
class Pending:
    frame: object  # av.VideoFrame (converted only if published)
    seq: int
    capture_ts_ms: int


class LatestSlot:
    """Holds one item; ``put`` replaces it (counting the drop), ``take`` waits for a new one."""

    def __init__(self) -> None:
        self._item: Pending | None = None
        self._event = asyncio.Event()
        self.dropped = 0

    def put(self, item: Pending) -> None:
        if self._item is not None:
            self.dropped += 1
            metrics.DROPPED.labels("gateway", "superseded").inc()
        self._item = item
        self._event.set()

    @property
    def has_new(self) -> bool:
        return self._event.is_set()

    async def take(self) -> Pending:
        await self._event.wait()
        self._event.clear()
        item, self._item = self._item, None
        return item


def encode_jpeg(image: np.ndarray, max_side: int, quality: int) -> tuple[bytes, int, int]:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), image.shape[1], image.shape[0]


def downscaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The frame's size with its long side at most ``max_side`` (even sizes, as YUV 4:2:0 wants)."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def frame_to_jpeg(frame, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """A decoded video frame (av.VideoFrame) as JPEG, downscaled *while* it is converted to BGR
    (libswscale does both in one pass), so an 8k track never becomes an 8k BGR array. Runs on a
    worker thread, never on the event loop."""
    w, h = downscaled_size(frame.width, frame.height, max_side)
    image = frame.to_ndarray(width=w, height=h, format="bgr24") if (w, h) != (frame.width, frame.height) \
        else frame.to_ndarray(format="bgr24")
    return encode_jpeg(image, max_side, quality)


class VideoIngest:
    """One session's video: ``read_track`` and ``publish`` run as two tasks."""

    def __init__(self, session_id: str, reference_id: str, producer, topic: str,
                 max_side: int = 640, quality: int = 80, max_fps: float = 30.0, first_seq: int = 0):
        """``first_seq``: after a reconnect the session's frame numbers go on from the old connection's."""
        self.session_id, self.reference_id = session_id, reference_id
        self.producer, self.topic = producer, topic
        self.max_side, self.quality, self.min_interval = max_side, quality, 1.0 / max_fps
        self.slot = LatestSlot()
        self.clock_t0_ms: int | None = None  # the client's capture time of pts 0, from the data channel
        self.counters: Counter[str] = Counter()
        self.next_seq = first_seq

    def capture_ts(self, frame) -> int:
        now = now_ms()
        if self.clock_t0_ms is not None and frame.pts is not None and frame.time_base is not None:
            ts = self.clock_t0_ms + round(float(frame.pts * frame.time_base) * 1000)
            try:  # (t0_ms is checked on arrival; the pts added to it comes from RTP)
                return check_client_ts("capture_ts", ts, now)
            except MessageError:
                self.counters["capture_ts_out_of_range"] += 1
        return now  # no (usable) client clock: the time the frame reached us

    async def read_track(self, track, on_frame=None) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.counters["frames_received"] += 1
            if on_frame is not None:
                on_frame()
            self.slot.put(Pending(frame, self.next_seq, self.capture_ts(frame)))
            self.next_seq += 1

    def over_budget(self, capture_ts_ms: int, last_ts_ms: int | None) -> bool:
        """The fps budget, on the frames' capture times: a frame closer than 3/4 of the interval to the
        last one published is dropped; none is ever held back. (The first version waited until the
        interval had passed on our clock: its wake-up lag added up frame after frame until frames waited
        most of an interval, 42 ms at 15 fps for one session.)"""
        # (a clock that went back, a client's new capture clock after a reconnect, starts afresh)
        return last_ts_ms is not None and 0 <= capture_ts_ms - last_ts_ms < 0.75 * self.min_interval * 1000

    async def publish(self) -> None:
        """Publishes the newest frame whenever it is free, for as long as the session lives. A frame
        that cannot be published (Kafka away, a frame that cannot be encoded) is dropped and counted,
        and the next one is tried: the session is not ended by an outage (the newest frame is what
        matters for live feedback, so nothing is queued while Kafka is away)."""
        loop = asyncio.get_running_loop()
        last_ts: int | None = None
        while True:
            item = await self.slot.take()
            if self.over_budget(item.capture_ts_ms, last_ts):
                self.counters["dropped_budget"] += 1
                metrics.DROPPED.labels("gateway", "budget").inc()
                continue
            last_ts = item.capture_ts_ms
            try:
                jpeg, w, h = await loop.run_in_executor(None, frame_to_jpeg, item.frame, self.max_side, self.quality)
                record = FrameRecord(self.session_id, item.seq, item.capture_ts_ms, now_ms(), w, h,
                                     self.reference_id, jpeg)
            except (ValueError, MessageError) as exc:  # MessageError is a ValueError; named for the reader
                self.counters["dropped_bad_frame"] += 1
                metrics.DROPPED.labels("gateway", "bad_frame").inc()
                log.warning("session %s: frame %d not published: %s", self.session_id, item.seq, exc)
                continue
            key, value, headers = record.to_kafka()
            try:
                await self.producer.send_and_wait(self.topic, value=value, key=key, headers=headers)
            except Exception as exc:  # aiokafka's KafkaError & co.: Kafka away or refusing; keep the session
                self.counters["dropped_publish_failed"] += 1
                metrics.DROPPED.labels("gateway", "publish_failed").inc()
                if self.counters["dropped_publish_failed"] % 50 == 1:
                    log.warning("session %s: Kafka did not take a frame (%s: %s); dropped %d so far",
                                self.session_id, type(exc).__name__, exc, self.counters["dropped_publish_failed"])
                await asyncio.sleep(0.2)  # do not spin while Kafka is away
                continue
            self.counters["frames_published"] += 1
            metrics.MESSAGES.labels("gateway", "frames_published").inc()
            metrics.observe_hop(CAPTURE_TO_GATEWAY, record.gateway_ts_ms - record.capture_ts_ms)
