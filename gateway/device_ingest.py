"""On-device mode (``mode: "device"``; the API's older name for it, ``"edge"``, is still accepted): the
phone or browser runs the pose model and sends keypoints over a WebRTC data channel
(label ``keypoints``); no video reaches the server and no cloud inference is spent.

A message from the device (JSON text, at most ``MAX_MESSAGE_BYTES``)::

    {"type": "keypoints", "seq": 12, "capture_ts_ms": 1732400000123, "width": 640, "height": 480,
     "keypoints": [[x, y, confidence] x 17] or null, "model": "blazepose-web", "model_version": "0.5"}

Each is validated (JSON, fields, COCO-17 shape, finite numbers, confidence in [0, 1], points near the
image, ``seq`` increasing, at most ``max_fps`` a second with a small burst) and published to the
keypoints topic as a ``KeypointFrame``. A bad message is answered on the channel with
``{"type": "error", "seq": ..., "reason": ...}`` and dropped; the session goes on. Scores come back on
the same channel as ``{"type": "score", ...}`` (the lowest-latency path), as well as on the WebSocket.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque

import orjson
from aiokafka.errors import KafkaTimeoutError

from rehab.adapters import metrics
from rehab.topics import record_key
from rehab.records import (CAPTURE_TO_GATEWAY, MAX_INT, KeypointFrame, MessageError, check_client_ts, check_int,
                           now_ms)

log = logging.getLogger("rehab.gateway.device")
MODE_ALIASES = {"edge": "device"}  # the API's older name for on-device mode (before it could be confused
# with the edge/ pose workers): accepted, and stored and reported as "device"
MAX_MESSAGE_BYTES = 8 * 1024
MAX_QUEUED = 50_000  # accepted frames waiting for Kafka (~16 s of 200 sessions at 15 fps, ~75 MB)
# A device's frame numbers: room for a 30 fps session to run for years, and for the gateway's offset
# after a reconnect (``first_seq``) on top, within records.MAX_INT
MAX_DEVICE_SEQ = (1 << 52) - 1
FIELDS = {"type", "seq", "capture_ts_ms", "width", "height", "keypoints", "model", "model_version", "box"}


class DeviceMessageError(ValueError):
    pass


class TokenBucket:
    """``rate`` events a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.at = burst, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def parse_message(raw, session_id: str, reference_id: str) -> KeypointFrame:
    """The device's message as a KeypointFrame; DeviceMessageError says what is wrong with it."""
    if isinstance(raw, bytes):
        raise DeviceMessageError("binary messages are not accepted: send JSON text")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise DeviceMessageError(f"message of {len(raw)} bytes is larger than {MAX_MESSAGE_BYTES}")
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "NaN" in raw or "Infinity" in raw:
            raise DeviceMessageError("not JSON: NaN and Infinity are not JSON numbers (keypoints must be finite)") from None
        raise DeviceMessageError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") != "keypoints":
        raise DeviceMessageError('expected a JSON object with "type": "keypoints"')
    unknown = set(msg) - FIELDS
    if unknown:
        raise DeviceMessageError(f"unknown fields {sorted(unknown)}")
    missing = {"seq", "capture_ts_ms", "width", "height", "keypoints"} - set(msg)
    if missing:
        raise DeviceMessageError(f"missing fields {sorted(missing)}")
    model = msg.get("model", "device")
    if not isinstance(model, str) or len(model) > 64:
        raise DeviceMessageError("model must be a string of at most 64 characters")
    if isinstance(msg["width"], int) and isinstance(msg["height"], int) and \
            not (16 <= msg["width"] <= 4096 and 16 <= msg["height"] <= 4096):
        raise DeviceMessageError("width and height must be between 16 and 4096 pixels")
    seq = msg["seq"]
    try:
        check_int("seq", seq, maximum=MAX_DEVICE_SEQ)
        received = now_ms()
        check_client_ts("capture_ts_ms", msg["capture_ts_ms"], received)
        return KeypointFrame(
            session_id=session_id, seq=seq, capture_ts_ms=msg["capture_ts_ms"], gateway_ts_ms=received,
            infer_ts_ms=msg["capture_ts_ms"],
            model=f"device:{model}", model_version=str(msg.get("model_version", "")),
            width=msg["width"], height=msg["height"], keypoints=msg["keypoints"], box=msg.get("box"),
            reference_id=reference_id,
        )
    except MessageError as exc:
        raise DeviceMessageError(str(exc)) from None


class KeypointPublisher:
    """Publishes the accepted frames of every on-device session, in arrival order, from one task.

    One sender, not a task per frame: when Kafka falls behind and the producer's batch fills, aiokafka
    makes every waiting ``send`` re-wait (with a timer each) each time the batch drains; with a task per
    frame, 170 on-device sessions on a busy machine turned that into a stall the gateway did not recover
    from (py-spy: half its time in ``wait_drain`` timers). A frame once accepted stays queued here until
    Kafka has it, even if its session closes or reconnects; when ``MAX_QUEUED`` frames wait (Kafka
    unreachable for long), new ones are refused at the door, with a reason sent to the device."""

    def __init__(self, producer, topic: str, max_queued: int = MAX_QUEUED):
        self.producer, self.topic, self.max_queued = producer, topic, max_queued
        self.queue: deque = deque()
        self.ready = asyncio.Event()

    def full(self) -> bool:
        return len(self.queue) >= self.max_queued

    def submit(self, key: bytes, value: bytes, on_sent=None) -> None:
        self.queue.append((key, value, on_sent))
        self.ready.set()

    async def run(self) -> None:
        while True:
            if not self.queue:
                self.ready.clear()
                await self.ready.wait()
                continue
            key, value, on_sent = self.queue[0]
            try:
                await self.producer.send(self.topic, key=key, value=value)  # into the batch, not acked yet
            except KafkaTimeoutError:  # the batch stayed full for the request timeout: Kafka is away
                log.warning("Kafka is not taking keypoint frames; %d queued, retrying", len(self.queue))
                await asyncio.sleep(0.5)
                continue
            except Exception:  # a frame Kafka will never take (it was validated, so a bug): not retried
                metrics.DROPPED.labels("gateway", "edge_publish_failed").inc()
                log.exception("could not publish an on-device keypoint frame")
            self.queue.popleft()
            if on_sent is not None:
                on_sent()

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Waits (at shutdown) until the queued frames are handed to the producer."""
        deadline = time.monotonic() + timeout_s
        while self.queue and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


class DeviceIngest:
    """One on-device session's keypoint channel: validate, rate-limit, publish (through the gateway's
    ``KeypointPublisher``)."""

    def __init__(self, session_id: str, reference_id: str, publisher: KeypointPublisher, max_fps: float = 30.0,
                 first_seq: int = 0):
        """``first_seq``: after a reconnect the device may count from 0 again; the published frame
        numbers go on from the old connection's (device seq + offset)."""
        self.session_id, self.reference_id = session_id, reference_id
        self.seq_offset = first_seq
        self.next_seq = first_seq
        self.publisher = publisher
        self.bucket = TokenBucket(max_fps, burst=max(2.0, max_fps / 2))
        self.last_seq = -1
        self.counters: Counter[str] = Counter()

    def accept(self, raw) -> KeypointFrame:
        """Validates one message (raises DeviceMessageError); does not publish."""
        self.counters["messages"] += 1
        frame = parse_message(raw, self.session_id, self.reference_id)
        if frame.seq <= self.last_seq:
            raise DeviceMessageError(f"seq {frame.seq} is not after {self.last_seq}")
        if frame.seq + self.seq_offset > MAX_INT:
            raise DeviceMessageError("this session has used up its frame numbers: start a new session")
        if not self.bucket.take():
            self.counters["dropped_rate"] += 1
            raise DeviceMessageError("more keypoint messages than the session's fps budget: dropped")
        if self.publisher.full():
            self.counters["refused_busy"] += 1
            raise DeviceMessageError("the server cannot store frames right now: frame not accepted, send the next")
        self.last_seq = frame.seq
        return frame

    def publish(self, frame: KeypointFrame) -> None:
        """Queues an accepted frame for Kafka (it is published even if the session closes first)."""
        if self.seq_offset:
            frame = dataclasses.replace(frame, seq=frame.seq + self.seq_offset)
        self.next_seq = max(self.next_seq, frame.seq + 1)
        self.publisher.submit(record_key(self.session_id, frame.seq), frame.to_json(), self._sent)
        metrics.observe_hop(CAPTURE_TO_GATEWAY, frame.gateway_ts_ms - frame.capture_ts_ms)

    def _sent(self) -> None:
        self.counters["frames_published"] += 1
        PUBLISHED.inc()


PUBLISHED = metrics.MESSAGES.labels("gateway", "edge_keypoints")
