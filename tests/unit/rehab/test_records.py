import json

import pytest

from rehab.records import DeadLetter, FrameRecord, KeypointFrame, MessageError, Score

KPS = [[10.0 + i, 20.0 + i, 0.9] for i in range(17)]


def keypoint_frame(**over) -> KeypointFrame:
    base = dict(session_id="s1", seq=3, capture_ts_ms=1000, gateway_ts_ms=1010, infer_ts_ms=1040,
                model="blazepose", model_version="x", width=640, height=360, keypoints=KPS,
                box=[1.0, 2.0, 30.0, 40.0], reference_id="ref")
    base.update(over)
    return KeypointFrame(**base)


def test_keypoint_frame_round_trips_through_json():
    frame = keypoint_frame()
    assert KeypointFrame.from_json(frame.to_json()) == frame


def test_keypoint_frame_allows_nobody_visible():
    frame = keypoint_frame(keypoints=None, box=None)
    assert KeypointFrame.from_json(frame.to_json()).keypoints is None


@pytest.mark.parametrize("raw, reason", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"session_id": "s"}).encode(), "missing"),
    (keypoint_frame().to_json().replace(b'"seq":3', b'"seq":-1'), "seq"),
    (keypoint_frame().to_json().replace(b'"model":"blazepose"', b'"model":"b","extra":1'), "unknown fields"),
])
def test_malformed_keypoint_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(MessageError) as err:
        KeypointFrame.from_json(raw)
    assert reason in str(err.value), f"reason {str(err.value)!r} should mention {reason!r}"


@pytest.mark.parametrize("kps, reason", [
    (KPS[:16], "17"),
    ([[1.0, 2.0]] * 17, "[x, y, confidence]"),
    ([[1.0, 2.0, 1.5]] * 17, "confidence"),
    ([[1e9, 2.0, 0.5]] * 17, "outside the image"),
])
def test_keypoints_are_validated(kps, reason):
    with pytest.raises(MessageError) as err:
        keypoint_frame(keypoints=kps)
    assert reason in str(err.value)


def test_nan_keypoints_are_rejected():
    with pytest.raises(MessageError):
        keypoint_frame(keypoints=[[float("nan"), 1.0, 0.5]] * 17)


def test_frame_record_travels_as_jpeg_value_and_json_header():
    rec = FrameRecord("s1", 7, 1000, 1005, 640, 360, "ref", b"\xff\xd8\xff\xe0jpegdata")
    key, value, headers = rec.to_kafka()
    assert key == b"s1" and value.startswith(b"\xff\xd8")
    meta = json.loads(dict(headers)["rehab-meta"])
    assert meta["seq"] == 7 and "jpeg" not in meta
    assert FrameRecord.from_kafka(value, headers) == rec


def test_frame_record_rejects_a_value_that_is_not_jpeg():
    rec = FrameRecord("s1", 7, 1000, 1005, 640, 360, None, b"\xff\xd8x")
    _, _, headers = rec.to_kafka()
    with pytest.raises(MessageError, match="JPEG"):
        FrameRecord.from_kafka(b"PNG....", headers)
    with pytest.raises(MessageError, match="header"):
        FrameRecord.from_kafka(b"\xff\xd8", [])


def score(**over) -> Score:
    base = dict(session_id="s1", window_start_seq=0, window_end_seq=10, window_start_ts_ms=1000,
                window_end_ts_ms=1500, similarity=0.8, joints={"left_knee": 0.7}, corrections=[],
                phase=0.5, reps=1, scorer_version="v", gateway_ts_ms=1520, infer_ts_ms=1560, score_ts_ms=1570)
    base.update(over)
    return Score(**base)


def test_score_round_trips_and_reports_per_hop_latency():
    s = score()
    decoded = json.loads(s.to_json())
    assert decoded["latency_ms"] == {"capture_to_gateway": 20, "gateway_to_inferred": 40, "inferred_to_scored": 10,
                                     "capture_to_scored": 70}
    assert Score.from_json(s.to_json()) == s


@pytest.mark.parametrize("over", [{"similarity": 1.2}, {"phase": -0.1}, {"window_end_seq": -1},
                                  {"joints": {"x": 2.0}}, {"reps": -1}])
def test_score_rejects_out_of_range_values(over):
    with pytest.raises(MessageError):
        score(**over)


def test_dead_letter_keeps_reason_and_a_preview():
    letter = DeadLetter.of("svc", "topic", 1, 42, b"key", b"x" * 1000, "bad")
    body = json.loads(letter.to_json())
    assert body["reason"] == "bad" and body["offset"] == 42 and len(body["value_preview"]) == 200


def test_one_hop_vocabulary_for_scores_and_metrics():
    """A score's latency_ms keys are metrics hop labels, and the metrics take no other name."""
    from rehab.adapters import metrics
    from rehab.records import HOPS

    assert set(json.loads(score().to_json())["latency_ms"]) <= set(HOPS)
    with pytest.raises(ValueError, match="unknown hop"):
        metrics.observe_hop("gateway_to_infer", 1.0)
    metrics.observe_hop("gateway_to_inferred", 1.0)
