"""Scale-out is correct: three stream processors in one Faust group share 12 keypoint partitions
(REHAB_PARTITIONS=12) while 30 sessions stream keypoints at 15 fps; one processor is SIGKILLed
mid-run and not replaced, so the other two take its partitions over (after its 10 s group session)
and rebuild its sessions' state from the changelogs. For every session: every window the offline
scorer scores is scored (except, for the killed processor's sessions, the windows of one window
refill after the kill), one row per scored window in MySQL (none twice), the repetition count goes on
to the offline count, and scores come again within 10 s of the takeover.

Not covered here: pose workers scaled out (two BlazePose workers on video would need more than this
2-core machine; the worker drill covers a worker's partitions moving on)."""
from __future__ import annotations


import pytest

from rehab.records import now_ms
from rehab.services import Services
from rehab.topics import default_partition
from tests.conftest import free_port, isolated
from tests.processor_helpers import Streams, attempt, check_session, db_call, scores_by_session

SESSIONS, FPS, SECONDS, PROCESSORS, PARTITIONS = 30, 15, 30.0, 3, 12


@pytest.fixture
def twelve_partitions(guide_reference):
    with isolated(partitions=PARTITIONS, processor_coalesce_after=0) as settings:
        db_call(settings, lambda db: db.save_reference(guide_reference))
        yield settings


def test_three_processors_share_the_sessions_and_one_killed_loses_nothing(twelve_partitions, guide_reference,
                                                                         clip_keypoints, tmp_path):
    s = twelve_partitions
    sessions = {f"s{i:02d}": attempt(clip_keypoints, f"s{i:02d}", SECONDS, fps=FPS) for i in range(SESSIONS)}
    assert len({default_partition(sid, PARTITIONS) for sid in sessions}) >= 8, "sessions spread over the partitions"
    processors = [Services(s.with_(processor_metrics_port=free_port(), state_dir=tmp_path / f"p{i}"),
                           tmp_path / f"p{i}", names=("processor",)) for i in range(PROCESSORS)]
    marks: dict[str, int] = {}

    def kill_one():
        marks["killed"] = now_ms()
        processors[0].kill("processor")

    try:
        for p in processors:
            p.start()
        drill = Streams(s, sessions, {10.0: kill_one}, fps=FPS).start()
        drill.join()
        live = scores_by_session(s, {sid: f[-1].seq for sid, f in sessions.items()}, timeout=120)
        takeover_ms = marks["killed"] + 10_000  # the killed member's group session
        figures = {sid: check_session(s, guide_reference, drill.sent[sid], live[sid], fps=FPS,
                                      refill_after_ms=marks["killed"]) for sid in sessions}
        # sessions that had no score between the kill and the takeover were the killed processor's
        moved = [sid for sid in sessions
                 if not any(marks["killed"] + 1000 <= x.score_ts_ms <= takeover_ms - 1000 for x in live[sid])]
        for sid in moved:
            after = [x.score_ts_ms for x in live[sid] if x.score_ts_ms > marks["killed"] + 1000]
            figures[sid]["resumed_s"] = round((min(after) - takeover_ms) / 1000, 2)
            assert figures[sid]["resumed_s"] <= 10.0, f"{sid} resumed {figures[sid]['resumed_s']} s after the takeover"
    finally:
        for p in processors:
            p.stop()
    assert moved and len(moved) < SESSIONS, f"the kill should move some sessions, not all: {len(moved)}"
    summary = {"sessions": SESSIONS, "moved": len(moved),
               "windows": sum(f["windows"] for f in figures.values()),
               "missing": sum(f["missing"] for f in figures.values()),
               "rows": sum(f["rows"] for f in figures.values()),
               "max_resumed_s": max(figures[sid]["resumed_s"] for sid in moved)}
    print("scale-out drill:", summary)
