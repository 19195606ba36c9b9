"""Property-based tests of the records every service exchanges (issue 12): whatever a client or a topic
delivers, decoding gives a valid record or a MessageError with a reason, never another exception; every
valid record survives its own encoding; and what a record accepts stays inside the bounds the rest of
the system relies on (integers below 2^53, keypoints finite and near the image, confidence in [0, 1]).

Derandomised (the same examples on every machine and run) and without Hypothesis's example database,
so a fresh clone runs exactly what CI runs (Hypothesis still keeps a small cache in `.hypothesis/`,
which it marks git-ignored itself).
"""
import json
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.backends.base import publishable_keypoints
from rehab.records import (
    MAX_INT, FRAME_META_HEADER, FrameRecord, KeypointFrame, MessageError, Score, check_int, decode_keypoint_frames,
)

SETTINGS = settings(max_examples=300, deadline=None, database=None, derandomize=True)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)

# integers where the bounds are (a JSON number, BIGINT, the serialisers' 64 bits), beside any JSON
EDGES = st.sampled_from([-1, 0, MAX_INT, MAX_INT + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -(2 ** 63) - 1,
                         1.8e19, 1e308, -0.0])
VALUES = EDGES | JSON


def valid_frame() -> dict:
    return dict(session_id="s1", seq=3, capture_ts_ms=1000, gateway_ts_ms=1010, infer_ts_ms=1040,
                model="blazepose", model_version="x", width=640, height=360,
                keypoints=[[10.0 + i, 20.0 + i, 0.9] for i in range(17)], box=[1.0, 2.0, 30.0, 40.0],
                reference_id="ref")


def _decodes_or_refuses(decode, raw):
    try:
        return decode(raw)
    except MessageError as exc:
        assert str(exc), "a refusal says why"
        return None


def _bounded(obj) -> None:
    """Every number a record holds is one JSON, MySQL and the serialisers keep exactly."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int):
        assert -MAX_INT <= obj <= MAX_INT, obj
    elif isinstance(obj, float):
        assert math.isfinite(obj), obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _bounded(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            _bounded(v)


@SETTINGS
@given(st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_or_json_decode_to_a_record_or_a_refusal(raw):
    for decode in (KeypointFrame.from_json, Score.from_json):
        _decodes_or_refuses(decode, raw)
    _decodes_or_refuses(lambda r: FrameRecord.from_kafka(b"\xff\xd8jpeg", [(FRAME_META_HEADER, r)]), raw)


@SETTINGS
@given(st.sampled_from(sorted(valid_frame())), VALUES)
def test_a_keypoint_frame_with_any_one_field_replaced_is_valid_and_bounded_or_refused(field, value):
    obj = valid_frame()
    obj[field] = value
    frame = _decodes_or_refuses(KeypointFrame.from_json, json.dumps(obj).encode())
    if frame is not None:
        _bounded(orjson.loads(frame.to_json()))
        assert KeypointFrame.from_json(frame.to_json()) == frame


coordinate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@SETTINGS
@given(st.integers(min_value=0, max_value=MAX_INT), st.integers(min_value=1, max_value=16384),
       st.integers(min_value=1, max_value=16384),
       st.lists(st.tuples(coordinate, coordinate, st.floats(min_value=0.0, max_value=1.0)), min_size=17, max_size=17))
def test_valid_keypoint_frames_survive_their_encoding(seq, width, height, rows):
    """Any backend output made publishable (the worker's and extract's path) is a frame that decodes to
    itself: the worker never publishes what the processor would refuse."""
    kps = publishable_keypoints([list(r) for r in rows], width, height)
    frame = KeypointFrame("s1", seq, seq, seq, seq, "m", "v", width, height, kps)
    assert KeypointFrame.from_json(frame.to_json()) == frame


@SETTINGS
@given(st.integers(min_value=-(2 ** 70), max_value=2 ** 70))
def test_integers_are_accepted_exactly_in_range(value):
    try:
        check_int("seq", value)
        accepted = True
    except MessageError:
        accepted = False
    assert accepted == (0 <= value <= MAX_INT)


def _one_by_one(raw):
    try:
        return KeypointFrame.from_json(raw)
    except MessageError as exc:
        return exc


def _same(batch, single) -> None:
    if isinstance(single, MessageError):
        assert isinstance(batch, MessageError) and str(batch) == str(single)
    else:
        assert batch == single and batch.to_json() == single.to_json()


# messages a batch may hold: good frames, frames with one field, one keypoint row or one keypoint value
# replaced by anything, fields missing or reordered, and bytes that are not a frame at all
FIELD_REPLACED = st.tuples(st.sampled_from(sorted(valid_frame())), VALUES).map(
    lambda fv: {**valid_frame(), fv[0]: fv[1]})
ROW_REPLACED = st.tuples(st.integers(0, 16), VALUES).map(
    lambda iv: {**valid_frame(), "keypoints": [iv[1] if k == iv[0] else r for k, r in enumerate(valid_frame()["keypoints"])]})
VALUE_REPLACED = st.tuples(st.integers(0, 16), st.integers(0, 2), VALUES | coordinate).map(
    lambda ijv: {**valid_frame(), "keypoints": [[ijv[2] if (k, c) == ijv[:2] else x for c, x in enumerate(r)]
                                                 for k, r in enumerate(valid_frame()["keypoints"])]})
FIELD_DROPPED = st.sampled_from(sorted(valid_frame())).map(
    lambda name: {k: v for k, v in valid_frame().items() if k != name})
REORDERED = st.permutations(sorted(valid_frame())).map(lambda names: {n: valid_frame()[n] for n in names})
NOBODY = st.just({**valid_frame(), "keypoints": None})
MESSAGE = (st.just(valid_frame()) | FIELD_REPLACED | ROW_REPLACED | VALUE_REPLACED | FIELD_DROPPED | REORDERED
           | NOBODY).map(lambda obj: json.dumps(obj).encode()) | st.binary(max_size=60)


@SETTINGS
@given(st.lists(MESSAGE, max_size=12))
def test_a_batch_decodes_as_each_message_alone(raws):
    """The processor decodes a batch together (``decode_keypoint_frames``): every message gives the same
    frame, or the same refusal with the same reason, as ``from_json`` on it alone, whatever its
    neighbours in the batch are."""
    decoded = decode_keypoint_frames(raws)
    assert len(decoded) == len(raws)
    for raw, batch in zip(raws, decoded):
        _same(batch, _one_by_one(raw))


def test_a_batch_of_good_frames_is_decoded_without_the_one_by_one_path(monkeypatch):
    """Well-formed frames, in order or not, with someone in view or nobody, take the batch path: the
    one-by-one decoder is not called for them (it is, for the one that is out of bounds)."""
    from rehab import records

    called = []
    monkeypatch.setattr(records, "_decoded_or_refused", lambda raw: called.append(raw) or _one_by_one(raw))
    far = {**valid_frame(), "keypoints": [[5000.0, 1.0, 0.5]] * 17}
    objs = [valid_frame(), {**valid_frame(), "keypoints": None}, dict(reversed(valid_frame().items())), far]
    raws = [KeypointFrame(**objs[0]).to_json()] + [json.dumps(o).encode() for o in objs[1:]]
    decoded = records.decode_keypoint_frames(raws)
    assert called == [raws[3]]
    for raw, batch in zip(raws, decoded):
        _same(batch, _one_by_one(raw))
    assert "far outside the image" in str(decoded[3])
