"""Every message that crosses Kafka, defined once. JSON on the wire (readable with kcat); frames carry
their JPEG as the raw value and their metadata as a JSON header.

Each record validates itself on construction, so a malformed message fails at the edge of the
process that reads it, with a reason that goes to the dead-letter topic.
"""
from __future__ import annotations

import math
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from itertools import chain
from typing import Any

import numpy as np
import orjson

from rehab.coco import N_KEYPOINTS

MAX_ID_LEN = 64
FRAME_META_HEADER = "rehab-meta"
# Every integer in a message stays below 2^53: exact as a JSON number in any language (JavaScript's
# Number, float64), inside MySQL's BIGINT, and far from the 64-bit limit of the serialisers (orjson
# refuses integers past 2^64; a seq or timestamp of 2^63 from one client crashed the shared processor)
MAX_INT = (1 << 53) - 1
MAX_IMAGE_SIDE = 16384  # pixels; larger frames are downscaled before they become a record


class MessageError(ValueError):
    """A message that cannot be decoded or fails validation. ``str(err)`` is the reason."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _check_id(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LEN:
        raise MessageError(f"{name} must be a non-empty string of at most {MAX_ID_LEN} characters")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A refused value as a refusal quotes it: at most 40 characters of its repr."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def check_int(name: str, value: Any, minimum: int = 0, optional: bool = False, maximum: int = MAX_INT) -> None:
    if optional and value is None:
        return
    if not _is_int(value) or not minimum <= value <= maximum:
        raise MessageError(f"{name} must be an integer in [{minimum}, {maximum}], got {_shown(value)}")


MAX_CLOCK_SKEW_MS = 86_400_000  # a client's timestamps must be within a day of the receiver's clock


def check_client_ts(name: str, value: Any, now: int | None = None) -> int:
    """A timestamp a client sent (ms since the epoch): an integer within ``MAX_CLOCK_SKEW_MS`` of the
    receiver's clock, else MessageError. Services stamp their own hops; only clients' clocks are
    checked this way (a replayed topic keeps its old stamps)."""
    now = now_ms() if now is None else now
    if not _is_int(value) or abs(value - now) > MAX_CLOCK_SKEW_MS:
        raise MessageError(f"{name} must be an integer time in ms within a day of the server's clock ({now}), "
                           f"got {_shown(value)}")
    return value


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _decode_obj(raw: bytes | str, what: str) -> dict:
    try:
        obj = orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise MessageError(f"{what}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise MessageError(f"{what}: expected a JSON object")
    return obj


def _build(cls, obj: dict, what: str):
    names = {f.name for f in fields(cls)}
    unknown = set(obj) - names
    if unknown:
        raise MessageError(f"{what}: unknown fields {sorted(unknown)}")
    try:
        return cls(**obj)
    except TypeError as exc:  # missing required fields
        raise MessageError(f"{what}: {exc}") from None


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)  # compact; records validate themselves, so no NaN ever reaches here


@dataclass(frozen=True)
class FrameRecord:
    """One camera frame on ``rehab.frames.v1``: JPEG bytes plus the session's metadata."""

    session_id: str
    seq: int
    capture_ts_ms: int
    gateway_ts_ms: int
    width: int
    height: int
    reference_id: str | None
    jpeg: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_id("session_id", self.session_id)
        check_int("seq", self.seq)
        check_int("capture_ts_ms", self.capture_ts_ms)
        check_int("gateway_ts_ms", self.gateway_ts_ms)
        check_int("width", self.width, 1, maximum=MAX_IMAGE_SIDE)
        check_int("height", self.height, 1, maximum=MAX_IMAGE_SIDE)
        if self.reference_id is not None:
            _check_id("reference_id", self.reference_id)
        if not isinstance(self.jpeg, (bytes, bytearray)) or self.jpeg[:2] != b"\xff\xd8":
            raise MessageError("frame value is not a JPEG image")

    def to_kafka(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        meta = {k: v for k, v in asdict(self).items() if k != "jpeg"}
        return self.session_id.encode(), bytes(self.jpeg), [(FRAME_META_HEADER, _dumps(meta))]

    @classmethod
    def from_kafka(cls, value: bytes | None, headers) -> "FrameRecord":
        meta_raw = dict(headers or []).get(FRAME_META_HEADER)
        if meta_raw is None:
            raise MessageError(f"frame has no {FRAME_META_HEADER} header")
        meta = _decode_obj(meta_raw, "frame metadata")
        meta.pop("jpeg", None)
        return _build(cls, {**meta, "jpeg": value or b""}, "frame metadata")


Keypoints = list[list[float]]  # 17 x [x, y, confidence] in pixels


_NUMBER_TYPES = (int, float)  # exact types: a JSON true/false (bool) is not a coordinate
_NUMBER_SET = frozenset(_NUMBER_TYPES)


def validate_keypoints(kps: Any, width: int | None = None, height: int | None = None) -> None:
    """17 rows of finite [x, y, confidence], confidence in [0, 1], points near the image.

    One pass of plain comparisons per row (the processor decodes tens of thousands of frames a
    second; ~4 us a frame); a row that fails is examined again by ``_reject`` for a precise message."""
    if type(kps) is not list or len(kps) != N_KEYPOINTS:
        raise MessageError(f"keypoints must be a list of {N_KEYPOINTS} [x, y, confidence] rows")
    # allow a margin: models extrapolate joints just outside the frame
    lo_x, hi_x, lo_y, hi_y = (-width, 2 * width, -height, 2 * height) if width and height else \
        (-math.inf, math.inf, -math.inf, math.inf)
    for i, row in enumerate(kps):
        if type(row) is not list or len(row) != 3:
            _reject(i, row, width, height)
        x, y, c = row
        if type(x) not in _NUMBER_TYPES or type(y) not in _NUMBER_TYPES or type(c) not in _NUMBER_TYPES \
                or not (0.0 <= c <= 1.0 and lo_x <= x <= hi_x and lo_y <= y <= hi_y) or x - x or y - y:
            _reject(i, row, width, height)  # (x - x is NaN, so true, for an infinite x)


def _reject(i: int, row: Any, width: int | None, height: int | None) -> None:
    if not isinstance(row, list) or len(row) != 3 or not all(_finite(v) for v in row):
        raise MessageError(f"keypoint {i} must be [x, y, confidence] of finite numbers")
    if not 0.0 <= row[2] <= 1.0:
        raise MessageError(f"keypoint {i} confidence {row[2]} outside [0, 1]")
    raise MessageError(f"keypoint {i} at ({row[0]}, {row[1]}) is far outside the image")


@dataclass(frozen=True)
class KeypointFrame:
    """The tracked subject's COCO-17 keypoints for one frame, on ``rehab.keypoints.v1``."""

    session_id: str
    seq: int
    capture_ts_ms: int
    gateway_ts_ms: int
    infer_ts_ms: int
    model: str
    model_version: str
    width: int
    height: int
    keypoints: Keypoints | None  # None: nobody visible
    box: list[float] | None = None  # [x1, y1, x2, y2] pixels
    reference_id: str | None = None
    schema: str = "keypoint_frame.v1"

    def __post_init__(self) -> None:
        self._validate(keypoints=True)

    def _validate(self, keypoints: bool) -> None:
        """The checks, in order; ``keypoints`` False: all but the keypoints (``decode_keypoint_frames``
        checks a batch's keypoints together, then these for each frame)."""
        _check_id("session_id", self.session_id)
        for name in ("seq", "capture_ts_ms", "gateway_ts_ms", "infer_ts_ms"):
            check_int(name, getattr(self, name))
        check_int("width", self.width, 1, maximum=MAX_IMAGE_SIDE)
        check_int("height", self.height, 1, maximum=MAX_IMAGE_SIDE)
        if not isinstance(self.model, str) or not isinstance(self.model_version, str):
            raise MessageError("model and model_version must be strings")
        if keypoints and self.keypoints is not None:
            validate_keypoints(self.keypoints, self.width, self.height)
        if self.box is not None and (
            not isinstance(self.box, list) or len(self.box) != 4 or not all(_finite(v) for v in self.box)
        ):
            raise MessageError("box must be [x1, y1, x2, y2] of finite numbers")
        if self.reference_id is not None:
            _check_id("reference_id", self.reference_id)
        if self.schema != "keypoint_frame.v1":
            raise MessageError(f"unsupported schema {self.schema!r}")

    def to_json(self) -> bytes:
        return _dumps(self)  # orjson writes a dataclass's fields in order (40x faster than asdict)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "KeypointFrame":
        return _build(cls, _decode_obj(raw, "keypoint frame"), "keypoint frame")


_KF_DEFAULTS = {f.name: f.default for f in fields(KeypointFrame) if f.default is not MISSING}
_KF_NAMES = tuple(f.name for f in fields(KeypointFrame))
_KF_FIELDS = frozenset(_KF_NAMES)
_KF_REQUIRED = _KF_FIELDS - _KF_DEFAULTS.keys()
_KF_ORDER = tuple((name, _KF_DEFAULTS.get(name)) for name in _KF_NAMES)
_LIST, _KP_ROWS, _XYC = {list}, {N_KEYPOINTS}, {3}


def decode_keypoint_frames(raws: list[bytes]) -> list[KeypointFrame | MessageError]:
    """``KeypointFrame.from_json`` for a batch of messages: each a frame, or the MessageError that
    ``from_json`` raises for it (same frames, same refusals, same reasons).

    The stream processor decodes ~10,000 frames a second, and per message ``from_json`` spends most of
    its ~10 us in the frozen dataclass's constructor and in checking 51 keypoint values one by one.
    Here the frames of a batch are built without the constructor (the same checks but the keypoints'),
    and the keypoints of all of them checked together: their shape and the exact types of their values
    in a few passes over the batch (every value an int or a float), then the bounds in numpy. What is
    not plainly well-formed (a missing or unknown field, a value that is not a number or a row that is
    not 3 of them anywhere in the batch, a point out of bounds) goes through ``from_json`` for the
    frames concerned, which gives the exact reason."""
    out: list = [None] * len(raws)
    fast: list[tuple[int, KeypointFrame]] = []
    new, put = object.__new__, object.__setattr__
    for i, raw in enumerate(raws):
        try:
            obj = orjson.loads(raw)
            if type(obj) is not dict:
                raise MessageError("not an object")
            if tuple(obj) != _KF_NAMES:  # (as ``to_json`` writes them: all fields, in order)
                if not obj.keys() <= _KF_FIELDS or not _KF_REQUIRED <= obj.keys():
                    raise MessageError("fields")
                obj = {name: obj.get(name, default) for name, default in _KF_ORDER}  # a dataclass's order
            f = new(KeypointFrame)
            put(f, "__dict__", obj)
            f._validate(keypoints=False)
        except (MessageError, orjson.JSONDecodeError, TypeError):
            out[i] = _decoded_or_refused(raw)
            continue
        out[i] = f
        if f.keypoints is not None:
            fast.append((i, f))
    if fast:
        kps = [f.keypoints for _, f in fast]
        rows = list(chain.from_iterable(kps)) if set(map(type, kps)) == _LIST and set(map(len, kps)) == _KP_ROWS else ()
        values = list(chain.from_iterable(rows)) if set(map(type, rows)) == _LIST and set(map(len, rows)) == _XYC else ()
        if len(values) != len(fast) * N_KEYPOINTS * 3 or not set(map(type, values)) <= _NUMBER_SET:
            for i, _ in fast:  # not 17 rows of 3 numbers somewhere in the batch: each frame alone
                out[i] = _decoded_or_refused(raws[i])
            return out
        values = np.fromiter(values, np.float64, count=len(values)).reshape(len(fast), N_KEYPOINTS, 3)
        size = np.array([(f.width, f.height) for _, f in fast], np.float64)[:, None, :]
        xy, c = values[..., :2], values[..., 2]
        # the bounds of ``validate_keypoints`` (NaN cannot come from JSON; it would fail them too)
        ok = ((xy >= -size) & (xy <= 2 * size)).all(axis=(1, 2)) & ((c >= 0.0) & (c <= 1.0)).all(axis=1)
        for k in np.flatnonzero(~ok).tolist():
            i = fast[k][0]
            out[i] = _decoded_or_refused(raws[i])
    return out


def _decoded_or_refused(raw: bytes) -> KeypointFrame | MessageError:
    try:
        return KeypointFrame.from_json(raw)
    except MessageError as exc:
        return exc


@dataclass(frozen=True)
class Correction:
    joint: str
    direction: str
    message: str


# The pipeline's hops, one vocabulary: a score's ``latency_ms`` keys and the metrics'
# ``rehab_hop_latency_ms{hop}`` labels (rehab/adapters/metrics.py refuses any other name).
CAPTURE_TO_GATEWAY = "capture_to_gateway"
GATEWAY_TO_INFERRED = "gateway_to_inferred"
INFERRED_TO_SCORED = "inferred_to_scored"
CAPTURE_TO_SCORED = "capture_to_scored"
SCORED_TO_PUSHED = "scored_to_pushed"  # (the gateway's fan-out: not in a score, which is pushed after)
HOPS = (CAPTURE_TO_GATEWAY, GATEWAY_TO_INFERRED, INFERRED_TO_SCORED, CAPTURE_TO_SCORED, SCORED_TO_PUSHED)


@dataclass(frozen=True)
class Score:
    """The similarity of one window of a session to its reference, on ``rehab.scores.v1``."""

    session_id: str
    window_start_seq: int
    window_end_seq: int
    window_start_ts_ms: int
    window_end_ts_ms: int  # capture time of the window's last frame
    similarity: float  # [0, 1]
    joints: dict[str, float]  # per-joint similarity [0, 1]
    corrections: list[dict]  # Correction as dicts, worst first
    phase: float  # 0..1 reached in the reference
    reps: int
    scorer_version: str
    gateway_ts_ms: int
    infer_ts_ms: int
    score_ts_ms: int
    reference_id: str | None = None
    session_similarity: float = 0.0  # the session's window similarities so far, weighted (scorer.session_weight)
    schema: str = "score.v1"

    def __post_init__(self) -> None:
        _check_id("session_id", self.session_id)
        check_int("window_start_seq", self.window_start_seq)
        check_int("window_end_seq", self.window_end_seq, self.window_start_seq)
        for name in ("window_start_ts_ms", "window_end_ts_ms", "gateway_ts_ms", "infer_ts_ms", "score_ts_ms"):
            check_int(name, getattr(self, name))
        check_int("reps", self.reps)
        for name in ("similarity", "phase", "session_similarity"):
            v = getattr(self, name)
            if not _finite(v) or not 0.0 <= v <= 1.0:
                raise MessageError(f"{name} must be in [0, 1], got {v!r}")
        if not isinstance(self.joints, dict) or not all(
            _finite(v) and 0.0 <= v <= 1.0 for v in self.joints.values()
        ):
            raise MessageError("joints must map joint names to similarities in [0, 1]")
        if self.schema != "score.v1":
            raise MessageError(f"unsupported schema {self.schema!r}")

    @property
    def latency_ms(self) -> dict[str, int]:
        """Per-hop latency of the window's last frame, capture to score."""
        return {
            CAPTURE_TO_GATEWAY: self.gateway_ts_ms - self.window_end_ts_ms,
            GATEWAY_TO_INFERRED: self.infer_ts_ms - self.gateway_ts_ms,
            INFERRED_TO_SCORED: self.score_ts_ms - self.infer_ts_ms,
            CAPTURE_TO_SCORED: self.score_ts_ms - self.window_end_ts_ms,
        }

    def to_json(self) -> bytes:
        return _dumps({**self.__dict__, "latency_ms": self.latency_ms})  # the fields, in order (no deep asdict copy)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Score":
        obj = _decode_obj(raw, "score")
        obj.pop("latency_ms", None)  # derived
        return _build(cls, obj, "score")


@dataclass(frozen=True)
class DeadLetter:
    """A message a service could not use, with the reason; on ``rehab.deadletter.v1``."""

    source_topic: str
    partition: int
    offset: int
    reason: str
    service: str
    key: str | None = None
    value_preview: str = ""  # first bytes, for a human to look at
    ts_ms: int = field(default_factory=now_ms)

    @classmethod
    def of(cls, service: str, topic: str, partition: int, offset: int, key, value, reason: str) -> "DeadLetter":
        k = key.decode("utf-8", "replace") if isinstance(key, (bytes, bytearray)) else key
        v = value if isinstance(value, (bytes, bytearray)) else str(value).encode()
        return cls(topic, partition, offset, reason[:500], service, k, v[:200].decode("utf-8", "replace"))

    def to_json(self) -> bytes:
        return _dumps(self)
