"""The worker's frame selection on fake records: newest per session, stale frames and frames over a
session's budget dropped and counted, one busy session cannot crowd out another."""
from types import SimpleNamespace

import cv2
import pytest
import numpy as np

from edge.worker import PoseWorker
from rehab.records import FrameRecord, now_ms
from rehab.topics import Topics

JPEG = cv2.imencode(".jpg", np.zeros((36, 64, 3), np.uint8))[1].tobytes()


class Sink:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))

    def flush(self):
        pass


def rec(session, seq, capture_ms, age_ms=0):
    key, value, headers = FrameRecord(session, seq, capture_ms, now_ms() - age_ms, 64, 36, "ref", JPEG).to_kafka()
    return SimpleNamespace(value=value, headers=headers, key=key, topic="f", partition=0, offset=seq)


def worker(**kw) -> PoseWorker:
    return PoseWorker(SimpleNamespace(), Sink(), backend=None, topics=Topics("t"), **kw)


def test_newest_frame_per_session_and_every_session_gets_its_turn():
    w = worker()
    busy = [rec("busy", i, 1000 + 5 * i) for i in range(50)]
    batch = w.select(busy + [rec("quiet", 0, 1000)])
    assert sorted((d.frame.session_id, d.frame.seq) for d in batch) == [("busy", 49), ("quiet", 0)]
    assert w.counters["dropped_superseded"] == 49


def test_stale_frames_are_dropped_and_counted():
    w = worker(max_frame_age_ms=500)
    assert w.select([rec("s", 0, 1000, age_ms=2000)]) == []
    assert w.counters["dropped_stale"] == 1


def test_a_sessions_frame_budget_is_enforced_across_polls():
    w = worker(max_fps_per_session=10)  # one frame per 100 ms of capture time
    assert len(w.select([rec("s", 0, 1000)])) == 1
    assert w.select([rec("s", 1, 1030)]) == [], "30 ms later is over a 10 fps budget"
    assert len(w.select([rec("s", 2, 1100)])) == 1
    assert w.counters["dropped_budget"] == 1


def test_a_frame_that_is_not_a_jpeg_goes_to_the_dead_letter_topic():
    w = worker()
    bad = rec("s", 0, 1000)
    bad.value = b"\xff\xd8 broken"
    assert w.select([bad]) == []
    assert w.counters["dead_letter"] == 1 and w.producer.sent[0][0] == "t.rehab.deadletter.v1"


def test_the_worker_shares_its_capacity_fairly_instead_of_queueing():
    from edge.worker import TARGET_LOAD, fair_interval_ms

    assert fair_interval_ms(15, 2, 10.0) == pytest.approx(1000 / 15), "two sessions fit: the configured cap"
    shared = fair_interval_ms(15, 8, 20.0)  # 8 sessions x 15 fps would need 2.4 s of work per second
    assert shared == pytest.approx(8 * 20.0 / TARGET_LOAD)
    assert 8 * (1000 / shared) * 20.0 / 1000 == pytest.approx(TARGET_LOAD), "the sessions together load it to the target"
    assert fair_interval_ms(15, 8, None) == pytest.approx(1000 / 15), "nothing measured yet: the cap"
    assert fair_interval_ms(30, 1, 60.0) == pytest.approx(1000 / 30), "a session alone on its lane is never held back"
    assert fair_interval_ms(30, 2, 60.0, lanes=2) == pytest.approx(1000 / 30)
    assert fair_interval_ms(30, 3, 60.0, lanes=2) == pytest.approx(3 * 60.0 / TARGET_LOAD)


def test_a_session_quiet_for_a_minute_is_forgotten_and_one_that_came_back_is_kept():
    from edge.worker import ACTIVE_WINDOW_S, FORGET_AFTER_S

    closed = []
    w = worker()
    for sid in ("gone", "back"):
        w.selectors[sid] = SimpleNamespace(close=lambda sid=sid: closed.append(sid))
        w.last_taken_ms[sid] = 1000
    w.interval_ms([rec("gone", 0, 1000), rec("back", 0, 1000)], mono=0.0)
    w.interval_ms([], mono=ACTIVE_WINDOW_S + 1)  # both quiet now
    w.interval_ms([rec("back", 1, 2000)], mono=30.0)  # one comes back
    w.interval_ms([rec("back", 2, 3000)], mono=ACTIVE_WINDOW_S + FORGET_AFTER_S + 2)
    assert closed == ["gone"] and set(w.selectors) == {"back"} and "gone" not in w.last_taken_ms
    assert w.counters["sessions_forgotten"] == 1
