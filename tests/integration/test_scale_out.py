"""Scale-out is correct: three stream processors in one Faust group and two pose workers in theirs share
12 partitions (REHAB_PARTITIONS=12) while 30 sessions stream keypoints at 15 fps (edge mode) and 2
stream video at 8 fps (cloud mode: frames -> a worker -> keypoints); one processor is SIGKILLed mid-run
and not replaced, so the other two take its partitions over (after its 10 s group session) and rebuild
its sessions' state from the changelogs. For every session: every window the offline scorer scores
(from the keypoints the session or the workers published) is scored (except, for the killed
processor's sessions, the windows of one window refill after the kill), one row per scored window in
MySQL (none twice), the repetition count goes on to the offline count, and scores come again within
10 s of the takeover; each worker inferred its share of the video (the two video sessions' frames
partitions are one odd and one even, one in each half, so both of kafka-python's assignors, range and
round robin, give one to each worker)."""
from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from kafka import KafkaProducer

from rehab.records import FrameRecord, KeypointFrame, now_ms
from rehab.stack.services import Services
from rehab.adapters.kafka_clients import default_partition
from tests.conftest import DATA, free_port, isolated
from tests.kafka_helpers import consume
from tests.processor_helpers import Streams, attempt, check_session, db_call, scores_by_session, video_frames

SESSIONS, FPS, SECONDS, PROCESSORS, PARTITIONS = 30, 15, 30.0, 3, 12
WORKERS, VIDEO_FPS = 2, 8
VIDEO_SESSIONS = ("video-0", "video-3")  # frames partitions 5 and 8 of 12 (asserted below)


@pytest.fixture
def twelve_partitions(guide_reference):
    with isolated(partitions=PARTITIONS, processor_coalesce_after=0, worker_max_fps=VIDEO_FPS) as settings:
        db_call(settings, lambda db: db.save_reference(guide_reference))
        yield settings


def _worker_frames_out(port: int) -> float:
    """What a worker's /metrics says it published (keypoint frames)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rehab_messages_total{") and 'kind="frames_out"' in line)


def test_three_processors_and_two_workers_share_the_sessions_and_one_processor_killed_loses_nothing(
        twelve_partitions, guide_reference, clip_keypoints, tmp_path):
    s = twelve_partitions
    sessions = {f"s{i:02d}": attempt(clip_keypoints, f"s{i:02d}", SECONDS, fps=FPS) for i in range(SESSIONS)}
    assert len({default_partition(sid, PARTITIONS) for sid in sessions}) >= 8, "sessions spread over the partitions"
    video_partitions = sorted(default_partition(sid, PARTITIONS) for sid in VIDEO_SESSIONS)
    assert video_partitions[0] < PARTITIONS // 2 <= video_partitions[1] and sum(video_partitions) % 2 == 1, \
        video_partitions
    video = video_frames(DATA / "pose2sim_single_cam02.mp4", SECONDS, VIDEO_FPS)
    processors = [Services(s.with_(processor_metrics_port=free_port(), state_dir=tmp_path / f"p{i}"),
                           tmp_path / f"p{i}", names=("processor",)) for i in range(PROCESSORS)]
    worker_ports = [free_port() for _ in range(WORKERS)]
    workers = [Services(s.with_(worker_metrics_port=port), tmp_path / f"w{i}", names=("worker",))
               for i, port in enumerate(worker_ports)]
    marks: dict[str, int] = {}

    def kill_one():
        marks["killed"] = now_ms()
        processors[0].kill("processor")

    def cameras():
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0)
        start = time.monotonic()
        for seq, jpeg, w, h in video:
            time.sleep(max(0.0, start + seq / VIDEO_FPS - time.monotonic()))
            for sid in VIDEO_SESSIONS:
                t = now_ms()
                key, value, headers = FrameRecord(sid, seq, t, t, w, h, "guide", jpeg).to_kafka()
                producer.send(s.topics.frames, key=key, value=value, headers=headers)
        producer.flush()
        producer.close()

    try:
        for group in (processors, workers):
            started = [threading.Thread(target=p.start) for p in group]  # a group's members join together
            for t in started:
                t.start()
            for t in started:
                t.join(180)
        cam = threading.Thread(target=cameras, daemon=True)
        cam.start()
        drill = Streams(s, sessions, {10.0: kill_one}, fps=FPS).start()
        drill.join()
        cam.join(120)
        # the video sessions' keypoints as the workers published them: what the processors must score
        by_video: dict[str, list] = {}
        seen = {"n": -1, "at": time.monotonic()}

        def video_keypoints(msgs):  # all of them: the last frame's, or the topic quiet for 3 s (the
            if len(msgs) != seen["n"]:  # worker drops a frame gone stale, which may be the last one)
                seen["n"], seen["at"] = len(msgs), time.monotonic()
                by_video.clear()
                for m in msgs:
                    k = KeypointFrame.from_json(m.value)
                    if k.session_id in VIDEO_SESSIONS:
                        by_video.setdefault(k.session_id, []).append(k)
            complete = all(by_video.get(sid) and by_video[sid][-1].seq == video[-1][0] for sid in VIDEO_SESSIONS)
            return complete or (set(by_video) == set(VIDEO_SESSIONS) and time.monotonic() - seen["at"] > 3.0)

        consume(s, s.topics.keypoints, video_keypoints, timeout=60)
        assert set(by_video) == set(VIDEO_SESSIONS), f"the workers published keypoints for {sorted(by_video)}"
        out = [_worker_frames_out(port) for port in worker_ports]
        assert all(n > 0 for n in out), f"each worker infers its share of the video: frames_out {out}"
        last = {sid: f[-1].seq for sid, f in sessions.items()} | {sid: k[-1].seq for sid, k in by_video.items()}
        live = scores_by_session(s, last, timeout=120)
        takeover_ms = marks["killed"] + 10_000  # the killed member's group session
        figures = {sid: check_session(s, guide_reference, drill.sent[sid], live[sid], fps=FPS,
                                      refill_after_ms=marks["killed"]) for sid in sessions}
        figures |= {sid: check_session(s, guide_reference, by_video[sid], live[sid], fps=VIDEO_FPS,
                                       refill_after_ms=marks["killed"]) for sid in VIDEO_SESSIONS}
        # sessions that had no score between the kill and the takeover were the killed processor's
        moved = [sid for sid in sessions
                 if not any(marks["killed"] + 1000 <= x.score_ts_ms <= takeover_ms - 1000 for x in live[sid])]
        for sid in moved:
            after = [x.score_ts_ms for x in live[sid] if x.score_ts_ms > marks["killed"] + 1000]
            figures[sid]["resumed_s"] = round((min(after) - takeover_ms) / 1000, 2)
            assert figures[sid]["resumed_s"] <= 10.0, f"{sid} resumed {figures[sid]['resumed_s']} s after the takeover"
    finally:
        for p in processors + workers:
            p.stop()
    assert moved and len(moved) < SESSIONS, f"the kill should move some sessions, not all: {len(moved)}"
    summary = {"sessions": SESSIONS + len(VIDEO_SESSIONS), "moved": len(moved),
               "windows": sum(f["windows"] for f in figures.values()),
               "missing": sum(f["missing"] for f in figures.values()),
               "rows": sum(f["rows"] for f in figures.values()),
               "max_resumed_s": max(figures[sid]["resumed_s"] for sid in moved),
               "video_windows": sum(figures[sid]["windows"] for sid in VIDEO_SESSIONS), "worker_frames_out": out}
    print("scale-out drill:", summary)
