"""Helpers for tests of the processor on the real stack (the processor tests, the fault drills, the
scale-out test): the database, what the offline scorer says, sessions streamed at a camera's pace, and
the guarantees a drill checks for each session."""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import cv2
from kafka import KafkaProducer

from rehab.records import Score, now_ms
from rehab.scoring import LiveScorer, ReferenceModel, replay_scores
from rehab.adapters.storage.repository import Database
from rehab.adapters.kafka_clients import session_partitioner
from rehab.topics import record_key
from tests.kafka_helpers import consume


def db_call(settings, fn):
    """``fn(db)`` on a database connection of its own, run to completion."""
    async def run():
        async with Database.opened(settings) as db:
            return await fn(db)

    return asyncio.run(run())


def offline_scores(settings, reference, frames) -> list[Score]:
    """What the offline scorer scores from a session's keypoint frames (the live processor must agree)."""
    scorer = LiveScorer(ReferenceModel.build(reference), frames[0].session_id,
                        window_ms=settings.processor_window_ms, min_interval_ms=settings.processor_min_interval_ms)
    return replay_scores(scorer, frames)


FPS = 60  # the clips' pace
RESUME_S = 10.0


def attempt(clip_keypoints, session_id: str, seconds: float, fps: int = FPS) -> list:
    """The patient clip's keypoint frames as a session of ``seconds`` at ``fps`` (every nth frame of
    the 60 fps clip), looped; capture times are stamped when sent (``Streams``)."""
    clip = clip_keypoints("pose2sim_single_cam02.mp4")[:: FPS // fps]
    frames = (clip * (int(seconds * fps / len(clip)) + 1))[: int(seconds * fps)]
    return [dataclasses.replace(f, session_id=session_id, reference_id="guide", seq=i, capture_ts_ms=0)
            for i, f in enumerate(frames)]


def video_frames(clip: Path, seconds: float, fps: float) -> list[tuple[int, bytes, int, int]]:
    """A camera's frames for a cloud-mode session: (seq, JPEG, width, height) at ``fps`` for ``seconds``
    (every nth frame of the 60 fps clip, looped)."""
    cap = cv2.VideoCapture(str(clip))
    images = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        images.append(img)
    cap.release()
    step = max(1, round(FPS / fps))
    images = images[::step]
    out = []
    for i in range(int(seconds * fps)):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        out.append((i, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes(), w, h))
    return out


class Streams:
    """Sessions' keypoint frames sent at the clip's pace from a thread, as the gateway publishes an
    edge device's keypoints (stamped when sent); ``at`` starts drill actions, each on a thread of its
    own, at given seconds (the sessions keep streaming meanwhile)."""

    def __init__(self, settings, sessions: dict[str, list], at: dict[float, callable], fps: int = FPS):
        self.settings, self.sessions, self.at, self.fps = settings, sessions, dict(sorted(at.items())), fps
        self.sent: dict[str, list] = {sid: [] for sid in sessions}
        self.marks: dict[str, int] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.actions: list[threading.Thread] = []

    def _act(self, action) -> None:
        def run():
            try:
                action()
            except BaseException as exc:  # surfaced by join()
                self.error = self.error or exc

        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.actions.append(t)

    def mark(self, name: str) -> None:
        self.marks[name] = now_ms()

    def _run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, linger_ms=5, acks="all",
                                     partitioner=session_partitioner,  # as the gateway and the worker
                                     retries=1_000_000, retry_backoff_ms=200, request_timeout_ms=60_000,
                                     max_in_flight_requests_per_connection=1, max_block_ms=120_000)
            n = max(len(f) for f in self.sessions.values())
            start = time.monotonic()
            for i in range(n):
                t = i / self.fps
                while self.at and next(iter(self.at)) <= t:
                    self._act(self.at.pop(next(iter(self.at))))
                time.sleep(max(0.0, start + t - time.monotonic()))
                for sid, frames in self.sessions.items():
                    if i < len(frames):
                        f = dataclasses.replace(frames[i], capture_ts_ms=now_ms())
                        producer.send(self.settings.topics.keypoints, key=record_key(sid, f.seq), value=f.to_json())
                        self.sent[sid].append(f)
            for action in self.at.values():
                self._act(action)
            producer.flush(timeout=120)
            producer.close()
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> "Streams":
        self.thread.start()
        return self

    def join(self) -> None:
        self.thread.join(300)
        for t in self.actions:
            t.join(300)
        if self.error is not None:
            raise self.error


def scores_by_session(settings, last: dict[str, int], timeout: float = 90.0) -> dict[str, list[Score]]:
    """Every score of the topic, by session, once each session's last frame is scored."""
    def done(msgs):
        ends = {}
        for m in msgs:
            if m.value is not None:
                s = Score.from_json(m.value)
                ends[s.session_id] = max(ends.get(s.session_id, -1), s.window_end_seq)
        return all(ends.get(sid, -1) >= seq for sid, seq in last.items())

    out: dict[str, list[Score]] = {sid: [] for sid in last}
    for m in consume(settings, settings.topics.scores, done, timeout):
        if m.value is not None:
            s = Score.from_json(m.value)
            if s.session_id in out:
                out[s.session_id].append(s)
    return out


def check_session(settings, reference, frames, live: list[Score], *, recovered_ms: int | None = None,
                  refill_after_ms: int | None = None, fps: int = FPS) -> dict:
    """The drill's guarantees for one session; returns its figures for the failure messages."""
    sid = frames[0].session_id
    assert live, f"{sid}: no score at all"
    offline = offline_scores(settings, reference, frames)
    ends_live, ends_off = {x.window_end_seq for x in live}, {x.window_end_seq for x in offline}
    missing = sorted(ends_off - ends_live)
    if refill_after_ms is None:
        assert not missing, f"{sid}: windows the offline scorer scores were not scored live: {missing[:20]}"
    else:  # one refill: windows after the last one scored before the crash, and ending within a window's
        # length of the first frame captured after it. (Where the processor was when it was killed, not
        # where the cameras were: on a loaded machine it scores a second or more behind capture.)
        first_after = min((f.seq for f in frames if f.capture_ts_ms >= refill_after_ms), default=frames[-1].seq)
        refill_end = first_after + round(settings.processor_window_ms * fps / 1000) + 1
        scored_before = max((x.window_end_seq for x in live if x.score_ts_ms < refill_after_ms), default=-1)
        stray = [e for e in missing if not scored_before < e <= refill_end]
        assert not stray, (f"{sid}: windows lost outside the one refill after the crash: {stray[:20]} (the last "
                           f"window scored before it ended at frame {scored_before}, the first frame captured "
                           f"after it is {first_after}, the refill ends at {refill_end})")
    assert max(ends_live) == frames[-1].seq, f"{sid}: the last frame was not scored"
    final = max(live, key=lambda x: (x.window_end_seq, x.score_ts_ms))
    assert final.reps == offline[-1].reps, f"{sid}: counted {final.reps} repetitions, offline {offline[-1].reps}"
    rows = db_call(settings, lambda db: db.wait_for_scores(sid, len(ends_live), timeout_s=30))
    assert rows == len(ends_live), f"{sid}: {rows} rows for {len(ends_live)} scored windows"
    figures = {"windows": len(ends_live), "missing": len(missing), "reps": final.reps, "rows": rows}
    if recovered_ms is not None:
        after = [x.score_ts_ms for x in live if x.score_ts_ms >= recovered_ms]
        assert after, f"{sid}: no score after the recovery"
        figures["resumed_s"] = (min(after) - recovered_ms) / 1000
        assert figures["resumed_s"] <= RESUME_S, f"{sid}: scores resumed {figures['resumed_s']:.1f} s after recovery"
    return figures


def max_gap_s(live: list[Score], start_ms: int, end_ms: int) -> float:
    ts = sorted(x.score_ts_ms for x in live if start_ms <= x.score_ts_ms <= end_ms)
    assert ts, "no score in the interval"
    edges = [start_ms, *ts, end_ms]
    return max(b - a for a, b in zip(edges, edges[1:])) / 1000
