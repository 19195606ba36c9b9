"""Edge-inference mode: the device runs the pose model and sends keypoints over a WebRTC data channel
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

import dataclasses
import orjson
import time
from collections import Counter

from rehab import metrics
from rehab.records import KeypointFrame, MessageError, now_ms

MAX_MESSAGE_BYTES = 8 * 1024
FIELDS = {"type", "seq", "capture_ts_ms", "width", "height", "keypoints", "model", "model_version", "box"}


class EdgeMessageError(ValueError):
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
    """The device's message as a KeypointFrame; EdgeMessageError says what is wrong with it."""
    if isinstance(raw, bytes):
        raise EdgeMessageError("binary messages are not accepted: send JSON text")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise EdgeMessageError(f"message of {len(raw)} bytes is larger than {MAX_MESSAGE_BYTES}")
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "NaN" in raw or "Infinity" in raw:
            raise EdgeMessageError("not JSON: NaN and Infinity are not JSON numbers (keypoints must be finite)") from None
        raise EdgeMessageError(f"not JSON: {exc}") from None
    if not isinstance(msg, dict) or msg.get("type") != "keypoints":
        raise EdgeMessageError('expected a JSON object with "type": "keypoints"')
    unknown = set(msg) - FIELDS
    if unknown:
        raise EdgeMessageError(f"unknown fields {sorted(unknown)}")
    missing = {"seq", "capture_ts_ms", "width", "height", "keypoints"} - set(msg)
    if missing:
        raise EdgeMessageError(f"missing fields {sorted(missing)}")
    model = msg.get("model", "edge")
    if not isinstance(model, str) or len(model) > 64:
        raise EdgeMessageError("model must be a string of at most 64 characters")
    if isinstance(msg["width"], int) and isinstance(msg["height"], int) and \
            not (16 <= msg["width"] <= 4096 and 16 <= msg["height"] <= 4096):
        raise EdgeMessageError("width and height must be between 16 and 4096 pixels")
    try:
        return KeypointFrame(
            session_id=session_id, seq=msg["seq"], capture_ts_ms=msg["capture_ts_ms"], gateway_ts_ms=now_ms(),
            infer_ts_ms=msg["capture_ts_ms"] if isinstance(msg["capture_ts_ms"], int) else 0,
            model=f"edge:{model}", model_version=str(msg.get("model_version", "")),
            width=msg["width"], height=msg["height"], keypoints=msg["keypoints"], box=msg.get("box"),
            reference_id=reference_id,
        )
    except MessageError as exc:
        raise EdgeMessageError(str(exc)) from None


class EdgeIngest:
    """One edge session's keypoint channel: validate, rate-limit, publish."""

    def __init__(self, session_id: str, reference_id: str, producer, topic: str, max_fps: float = 30.0,
                 first_seq: int = 0):
        """``first_seq``: after a reconnect the device may count from 0 again; the published frame
        numbers go on from the old connection's (device seq + offset)."""
        self.session_id, self.reference_id = session_id, reference_id
        self.seq_offset = first_seq
        self.next_seq = first_seq
        self.producer, self.topic = producer, topic
        self.bucket = TokenBucket(max_fps, burst=max(2.0, max_fps / 2))
        self.last_seq = -1
        self.counters: Counter[str] = Counter()

    def accept(self, raw) -> KeypointFrame:
        """Validates one message (raises EdgeMessageError); does not publish."""
        self.counters["messages"] += 1
        frame = parse_message(raw, self.session_id, self.reference_id)
        if frame.seq <= self.last_seq:
            raise EdgeMessageError(f"seq {frame.seq} is not after {self.last_seq}")
        if not self.bucket.take():
            self.counters["dropped_rate"] += 1
            raise EdgeMessageError("more keypoint messages than the session's fps budget: dropped")
        self.last_seq = frame.seq
        return frame

    async def publish(self, frame: KeypointFrame) -> None:
        if self.seq_offset:
            frame = dataclasses.replace(frame, seq=frame.seq + self.seq_offset)
        self.next_seq = max(self.next_seq, frame.seq + 1)
        await self.producer.send(self.topic, key=self.session_id.encode(), value=frame.to_json())
        self.counters["frames_published"] += 1
        metrics.MESSAGES.labels("gateway", "edge_keypoints").inc()
        metrics.observe_hop("capture_to_gateway", frame.gateway_ts_ms - frame.capture_ts_ms)
