"""Hostile input at the edges of the services, pure logic (issue 12): every integer and timestamp a
client sends is bounded, a backend's wild keypoints cannot take a worker down, a token that is not
ASCII is a 401, one session's failure stays its own in the processor."""
from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest

from gateway.http import json_depth_ok
from gateway.auth import AuthError, TokenSigner
from gateway.device_ingest import DeviceIngest, DeviceMessageError, KeypointPublisher, parse_message
from gateway.ingest import downscaled_size
from edge.backends.base import publishable_box, publishable_keypoints
from rehab.records import MAX_INT, KeypointFrame, MessageError, Score, check_client_ts, now_ms
from stream_processor.processor import ScoringState
from tests.conftest import eventually
from tests.unit.rehab.test_records import keypoint_frame

KPS = [[100.0 + i, 50.0 + 5 * i, 0.9] for i in range(17)]


def edge_message(**over) -> str:
    msg = {"type": "keypoints", "seq": 1, "capture_ts_ms": now_ms(), "width": 640, "height": 480, "keypoints": KPS}
    msg.update(over)
    return orjson.dumps(msg).decode()


@pytest.mark.parametrize("field, value", [
    ("seq", 2 ** 63), ("seq", 2 ** 53), ("capture_ts_ms", 18_000_000_000_000_000_000),
    ("gateway_ts_ms", 2 ** 64), ("infer_ts_ms", 2 ** 53),
])
def test_integers_past_2_pow_53_are_refused_by_every_record(field, value):
    with pytest.raises(MessageError, match=field):
        keypoint_frame(**{field: value})
    raw = keypoint_frame().to_json().replace(f'"{field}":'.encode() + str(getattr(keypoint_frame(), field)).encode(),
                                             f'"{field}":{value}'.encode())
    with pytest.raises(MessageError, match=field):
        KeypointFrame.from_json(raw)


def test_the_largest_allowed_integer_still_serialises():
    # what the processor crashed on: orjson refuses integers past 64 bits; everything a record holds fits
    frame = keypoint_frame(seq=MAX_INT, capture_ts_ms=MAX_INT, gateway_ts_ms=MAX_INT, infer_ts_ms=MAX_INT)
    assert KeypointFrame.from_json(frame.to_json()).seq == MAX_INT
    score = Score("s", 0, MAX_INT, 0, MAX_INT, 0.5, {}, [], 0.0, 0, "v", MAX_INT, MAX_INT, MAX_INT)
    assert Score.from_json(score.to_json()).window_end_seq == MAX_INT
    with pytest.raises(MessageError, match="window_end_seq"):
        Score("s", 0, MAX_INT + 1, 0, 0, 0.5, {}, [], 0.0, 0, "v", 0, 0, 0)


@pytest.mark.parametrize("value", [True, 1.5, "1", None, 2 ** 80, -1])
def test_client_timestamps_must_be_integers_within_a_day(value):
    with pytest.raises(MessageError, match="within a day"):
        check_client_ts("capture_ts_ms", value, now=1_700_000_000_000)
    now = 1_700_000_000_000
    assert check_client_ts("t", now - 86_400_000, now=now) == now - 86_400_000
    with pytest.raises(MessageError):
        check_client_ts("t", now + 86_400_001, now=now)


@pytest.mark.parametrize("over, reason", [
    ({"seq": 2 ** 63}, "seq"), ({"seq": 2 ** 53}, "seq"), ({"seq": -5}, "seq"),
    ({"capture_ts_ms": 18_000_000_000_000_000_000}, "capture_ts_ms"),
    ({"capture_ts_ms": 0}, "within a day"), ({"capture_ts_ms": 1.5e12}, "capture_ts_ms"),
    ({"width": 10 ** 12}, "width"), ({"keypoints": [[1e300, 1.0, 0.5]] * 17}, "outside the image"),
])
def test_an_edge_device_cannot_send_unbounded_numbers(over, reason):
    with pytest.raises(DeviceMessageError, match=reason):
        parse_message(edge_message(**over), "s1", "ref")


def test_a_session_that_used_up_its_frame_numbers_is_told_so():
    publisher = KeypointPublisher(producer=None, topic="t")
    ingest = DeviceIngest("s1", "ref", publisher, first_seq=MAX_INT - 5)
    ingest.accept(edge_message(seq=1))
    with pytest.raises(DeviceMessageError, match="used up"):
        ingest.accept(edge_message(seq=10))


def test_non_ascii_and_malformed_tokens_are_401_not_500():
    signer = TokenSigner("secret")
    token, _ = signer.issue("patient", "p1", "s1")
    body = token.split(".")[0]
    for bad in (body + ".sig\u00e9\u4e2d", body + "\u00e9." + token.split(".")[1], "\u00e9.\u00e9",
                "x.\udcff"):
        with pytest.raises(AuthError) as err:
            signer.verify(bad)
        assert err.value.status == 401
    # a correctly signed body that is not a claims object
    import base64
    odd = base64.urlsafe_b64encode(b"[1, 2]").rstrip(b"=").decode()
    with pytest.raises(AuthError) as err:
        signer.verify(f"{odd}.{signer._mac(odd)}")
    assert err.value.status == 401


def test_json_nesting_is_bounded_before_parsing():
    assert json_depth_ok(b'{"a": [1, {"b": [2]}]}')
    assert not json_depth_ok(b"[" * 33 + b"]" * 33)
    assert json_depth_ok(b"[" * 32 + b"]" * 32)
    assert json_depth_ok(b'{"s": "' + b"[" * 1000 + b'"}')  # brackets inside a string do not nest
    assert json_depth_ok(b'{"s": "\\"' + b"[" * 1000 + b'"}')  # nor after an escaped quote


def test_a_huge_video_frame_is_downscaled_in_the_conversion():
    assert downscaled_size(7680, 4320, 640) == (640, 360)
    assert downscaled_size(320, 240, 640) == (320, 240)
    w, h = downscaled_size(16384, 2, 640)
    assert w == 640 and h >= 2


def test_keypoints_far_outside_the_image_are_published_with_no_confidence():
    # a patient close to the camera: the model extrapolates ankles far below the frame
    kps = np.array([[100.0, 100.0, 0.9]] * 17)
    kps[15] = [300.0, 5000.0, 0.8]
    kps[16] = [np.nan, 200.0, 0.7]
    kps[0] = [-50.0, -20.0, 0.95]  # just outside: within the margin, kept as it is
    out = publishable_keypoints(kps, 640, 480)
    frame = keypoint_frame(width=640, height=480, keypoints=out)  # a record accepts it
    assert frame.keypoints[15][2] == 0.0 and frame.keypoints[15][1] == 960.0
    assert frame.keypoints[16][2] == 0.0
    assert frame.keypoints[0] == [-50.0, -20.0, 0.95]
    assert frame.keypoints[1] == [100.0, 100.0, 0.9]
    assert publishable_box([0.0, float("inf"), 3.0, float("nan")]) == [0.0, 0.0, 3.0, 0.0]


def test_one_sessions_failure_does_not_stop_the_others(monkeypatch):
    from tests.unit.rehab.scoring.test_scoring import reference  # the synthetic guide the scoring tests use

    ref = reference()

    async def load(_rid):
        return ref

    state = ScoringState(load, window_ms=1000, min_interval_ms=100)

    def frames(sid):
        return [orjson.dumps({**orjson.loads(keypoint_frame(session_id=sid, seq=i, capture_ts_ms=1000 + 33 * i,
                                                             gateway_ts_ms=now_ms(), infer_ts_ms=now_ms(),
                                                             reference_id=ref.id).to_json())})
                for i in range(40)]

    raws = frames("good") + frames("bad")

    async def run():
        await state.handle_batch(raws[:1] + raws[40:41])  # create both scorers
        bad = state.scorers["bad"]

        def broken(*_a, **_k):
            raise RuntimeError("a bug in one session's state")

        monkeypatch.setattr(bad, "add", broken)
        return await state.handle_batch(raws[1:40] + raws[41:], coalesce_after=0)

    results, failures = asyncio.run(run())
    assert {scorer.session_id for scorer, _ in results} == {"good"}
    assert len(results) >= 3
    assert len(failures) == 39 and all("could not be scored" in str(exc) for _, exc in failures)
    assert all(i >= 39 for i, _ in failures)  # the bad session's messages, by their index in the batch


def test_a_request_body_is_refused_as_soon_as_it_passes_the_limit():
    """Starlette's own Request over an ASGI receive that would deliver 300 MB: reading stops at the limit."""
    from starlette.requests import Request

    from gateway.http import MAX_BODY, BodyTooLarge, read_body

    delivered = []

    async def receive():
        delivered.append(1 << 20)
        return {"type": "http.request", "body": b" " * (1 << 20), "more_body": len(delivered) < 300}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/sessions"}, receive)
    with pytest.raises(BodyTooLarge, match="larger than"):
        asyncio.run(read_body(request))
    assert sum(delivered) <= MAX_BODY + (1 << 20), f"read {sum(delivered)} bytes of a refused body"


def test_per_client_rates_refuse_beyond_the_burst_and_recover_with_time():
    from gateway.limits import ConcurrencyLimit, RateLimit

    now = [0.0]
    limit = RateLimit(60, burst=3, clock=lambda: now[0], max_clients=2)
    assert [limit.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limit.allow("b"), "another client has its own bucket"
    assert limit.retry_after_s("a") >= 1
    now[0] += 1.0  # 60 a minute: one more a second
    assert limit.allow("a") and not limit.allow("a")
    limit.allow("c")
    assert len(limit.buckets) == 2, "at most max_clients buckets are kept"
    assert RateLimit(0).allow("x"), "0 switches the limit off"
    ws = ConcurrencyLimit(2)
    assert ws.acquire("a") and ws.acquire("a") and not ws.acquire("a") and ws.acquire("b")
    ws.release("a")
    assert ws.acquire("a")
    ws.release("a"), ws.release("a"), ws.release("b")
    assert ws.open == {}


class _FakeFrame:
    """What VideoIngest reads of an av.VideoFrame."""

    def __init__(self, w, h):
        self.width, self.height, self.pts, self.time_base = w, h, None, None
        self.converted_to = None

    def to_ndarray(self, width=None, height=None, format="bgr24"):
        self.converted_to = (width or self.width, height or self.height)
        return np.zeros((height or self.height, width or self.width, 3), np.uint8)


class _FlakyProducer:
    """Kafka away for the first ``fail`` sends (aiokafka raises), then back."""

    def __init__(self, fail):
        self.fail, self.sent, self.attempts = fail, [], 0

    async def send_and_wait(self, topic, value, key, headers):
        self.attempts += 1
        if self.fail:
            self.fail -= 1
            from aiokafka.errors import KafkaTimeoutError
            raise KafkaTimeoutError()
        self.sent.append(key)


def test_a_cloud_sessions_publisher_outlives_a_kafka_outage_and_never_converts_full_size():
    from gateway.ingest import Pending, VideoIngest

    async def run():
        producer = _FlakyProducer(fail=3)
        ingest = VideoIngest("s1", "ref", producer, "frames", max_side=640, max_fps=1000)
        task = asyncio.create_task(ingest.publish())
        frames = []
        for i in range(6):
            frame = _FakeFrame(7680, 4320)  # an 8k track
            frames.append(frame)
            ingest.slot.put(Pending(frame, i, now_ms() + i * 10))
            # each frame is tried before the next (the slot keeps only the latest)
            await eventually(lambda: producer.attempts == i + 1, what=f"frame {i} tried")
        task.cancel()
        return producer, ingest, frames

    producer, ingest, frames = asyncio.run(run())
    assert ingest.counters["dropped_publish_failed"] == 3
    assert len(producer.sent) == 3, "after the outage the next frames are published: the session lives on"
    assert all(f.converted_to == (640, 360) for f in frames), "downscaled in the conversion"
