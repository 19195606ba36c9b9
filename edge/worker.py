"""The pose worker: a consumer group on the frames topic, publishing the subject's keypoints.

Per poll it keeps only the newest frame of each session (older ones are superseded), drops frames
older than the freshness deadline, runs the backend once on the batch, and publishes one
``KeypointFrame`` per frame. Malformed frames go to the dead-letter topic; nothing stops the loop.

Each session gets at most ``max_fps_per_session`` frames a second, and never more than its fair share
of what the worker can actually infer (measured as it runs): with more sessions than the worker can
serve at full rate, every session gets fresh frames less often, instead of all of them waiting in a
queue (latency stays flat; the scores per second per session go down).
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from edge.backends.base import PoseBackend, publishable_box, publishable_keypoints
from edge.guides import Guides, mysql_loader
from edge.subject import SubjectSelector
from rehab.adapters import metrics
from rehab.records import GATEWAY_TO_INFERRED, DeadLetter, FrameRecord, KeypointFrame, MessageError, now_ms
from rehab.adapters import kafka_clients
from rehab.topics import Topics, dead_letter_key, record_key

log = logging.getLogger("rehab.edge.worker")


TARGET_LOAD = 0.8  # the share of the worker's measured capacity handed out: queues stay short
FORGET_AFTER_S = 60.0  # a session quiet this long (after ACTIVE_WINDOW_S) loses its tracker and policy
ACTIVE_WINDOW_S = 2.0  # a session that sent a frame this recently shares the worker


def fair_interval_ms(max_fps: float, active_sessions: int, frame_ms: float | None,
                     target_load: float = TARGET_LOAD, lanes: int = 1) -> float:
    """The shortest time between two inferred frames of one session: the configured cap, or, when the
    sessions together would ask for more than ``target_load`` of the worker's capacity (one frame per
    ``frame_ms``), an equal share of that capacity. Sessions that each have a lane to themselves are
    never held back: nobody waits behind them, and the newest-frame rule already keeps them fresh."""
    cap = 1000.0 / max_fps
    if not frame_ms or active_sessions <= lanes:
        return cap
    return max(cap, active_sessions * frame_ms / target_load)


@dataclass
class Decoded:
    frame: FrameRecord
    image: np.ndarray


class PoseWorker:
    """Takes ready parts: a kafka-python consumer (subscribed) and producer, and a backend."""

    def __init__(self, consumer, producer, backend: PoseBackend, topics: Topics,
                 max_frame_age_ms: int = 500, max_batch: int = 16, smoothing: float = 0.0,
                 max_fps_per_session: float = 30.0, extra_backends: list[PoseBackend] | None = None,
                 guides: Guides | None = None):
        """``extra_backends``: more instances of a single-person backend, each on a thread of its own
        (MediaPipe releases the GIL: two lanes ran 1.85x the frames of one on 2 cores). A session always
        runs on the same lane, so its tracker and subject policy stay with one model instance."""
        self.consumer, self.producer, self.backend, self.topics = consumer, producer, backend, topics
        self.guides = guides  # the sessions' guide recordings, for the subject policy (edge/guides.py)
        self.batched = getattr(backend, "batched", False)
        self.lanes = [backend] + (list(extra_backends or []) if not self.batched else [])
        self.pool = ThreadPoolExecutor(len(self.lanes) - 1, thread_name_prefix="pose-lane") \
            if len(self.lanes) > 1 else None
        self.max_frame_age_ms, self.max_batch = max_frame_age_ms, max_batch
        self.smoothing = smoothing
        self.min_interval_ms = 1000.0 / max_fps_per_session
        self.selectors: dict[str, SubjectSelector] = {}
        self.last_taken_ms: dict[str, int] = {}
        self.seen_at: dict[str, float] = {}  # session -> monotonic time of its newest frame
        self.quiet_since: dict[str, float] = {}  # sessions no longer active -> since when
        self.frame_ms: float | None = None  # wall time per inferred frame, all lanes together (EWMA)
        self.counters: Counter[str] = Counter()
        self.stopping = threading.Event()

    def count(self, name: str, n: int = 1) -> None:
        """The worker's own counters, mirrored to Prometheus (drops by reason, the rest as messages)."""
        self.counters[name] += n
        if name.startswith("dropped_"):
            metrics.DROPPED.labels("worker", name[len("dropped_"):]).inc(n)
        elif name in ("frames_in", "frames_out", "dead_letter"):
            metrics.MESSAGES.labels("worker", name).inc(n)

    def _dead_letter(self, record, reason: str) -> None:
        self.count("dead_letter")
        letter = DeadLetter.of("pose-worker", record.topic, record.partition, record.offset,
                               record.key, record.value, reason)
        self.producer.send(self.topics.dead_letter, value=letter.to_json(),
                           key=dead_letter_key(record.key, record.topic, record.partition, record.offset))

    def select(self, records) -> list[Decoded]:
        """Newest decodable, fresh frame per session, from one poll's records."""
        newest: dict[str, tuple[FrameRecord, object]] = {}
        now, mono = now_ms(), time.monotonic()
        interval = self.interval_ms(records, mono)
        for record in records:
            self.count("frames_in")
            try:
                frame = FrameRecord.from_kafka(record.value, record.headers)
            except MessageError as exc:
                self._dead_letter(record, str(exc))
                continue
            if now - frame.gateway_ts_ms > self.max_frame_age_ms:
                self.count("dropped_stale")
                continue
            # (0.75: capture times are whole milliseconds; 30 fps arrives 33 or 34 ms apart)
            if frame.capture_ts_ms - self.last_taken_ms.get(frame.session_id, -10**12) < 0.75 * interval:
                self.count("dropped_budget")  # the session's frame budget: no starving the others
                continue
            prev = newest.get(frame.session_id)
            if prev is not None:
                self.count("dropped_superseded")
                if prev[0].seq > frame.seq:
                    continue
            newest[frame.session_id] = (frame, record)
        batch = []
        for frame, record in newest.values():
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                self._dead_letter(record, "JPEG could not be decoded")
                continue
            batch.append(Decoded(frame, image))
            self.last_taken_ms[frame.session_id] = frame.capture_ts_ms
        return batch

    def forget_quiet(self, mono: float) -> None:
        """Releases what the worker holds for sessions that sent nothing for ``FORGET_AFTER_S`` (their
        tracker, subject policy, budget): state must not grow by one entry per session forever. A
        session that comes back later is acquired afresh."""
        for sid in [s for s, t in self.quiet_since.items() if mono - t > FORGET_AFTER_S]:
            del self.quiet_since[sid]
            self.last_taken_ms.pop(sid, None)
            selector = self.selectors.pop(sid, None)
            if selector is not None:
                selector.close()
            self.count("sessions_forgotten")

    def interval_ms(self, records, mono: float) -> float:
        """This poll's per-session frame interval (``fair_interval_ms``) over the sessions active now."""
        for record in records:
            if record.key:
                sid = record.key.decode("utf-8", "replace")
                self.seen_at[sid] = mono
                self.quiet_since.pop(sid, None)  # active again
        for sid in [s for s, t in self.seen_at.items() if mono - t > ACTIVE_WINDOW_S]:
            del self.seen_at[sid]
            self.quiet_since[sid] = mono
        self.forget_quiet(mono)
        interval = fair_interval_ms(1000.0 / self.min_interval_ms, len(self.seen_at), self.frame_ms,
                                    lanes=len(self.lanes))
        metrics.WORKER_FPS_BUDGET.set(round(1000.0 / interval, 2))
        return interval

    def process(self, batch: list[Decoded]) -> list[KeypointFrame]:
        if not batch:
            return []
        t0 = time.perf_counter()
        people: list = [None] * len(batch)
        if self.batched:  # one batched call across sessions; the selectors choose from it
            people = self.backend.infer([d.image for d in batch], [d.frame.session_id for d in batch])
        chosen: list = [None] * len(batch)

        lane_ms: list[float] = []

        def run_lane(lane: int) -> None:
            for i, (d, found) in enumerate(zip(batch, people)):
                if self._lane(d.frame.session_id) == lane:
                    t = time.perf_counter()
                    chosen[i] = self._selector(d.frame.session_id, d.frame.reference_id).step(
                        d.image, d.frame.capture_ts_ms, found)
                    lane_ms.append((time.perf_counter() - t) * 1000)

        others = [self.pool.submit(run_lane, lane) for lane in range(1, len(self.lanes))] if self.pool else []
        run_lane(0)
        for f in others:
            f.result()
        wall_ms = (time.perf_counter() - t0) * 1000
        # the worker's cost of a frame: a lane's time per frame, shared by the lanes running side by side
        # (measured per frame, so a poll that brought one frame does not look like a slow worker)
        # (a batched backend infers the whole batch in one call: its cost is the batch's time per frame)
        per_frame = wall_ms / len(batch) if self.batched or not lane_ms else \
            sum(lane_ms) / len(lane_ms) / len(self.lanes)
        self.frame_ms = per_frame if self.frame_ms is None else 0.9 * self.frame_ms + 0.1 * per_frame
        self.counters["infer_ms_total"] += int(wall_ms)
        self.counters["batches"] += 1
        self.counters["batch_frames"] += len(batch)
        out = []
        for d, person in zip(batch, chosen):
            f = d.frame
            h, w = d.image.shape[:2]
            try:
                kf = KeypointFrame(
                    session_id=f.session_id, seq=f.seq, capture_ts_ms=f.capture_ts_ms, gateway_ts_ms=f.gateway_ts_ms,
                    infer_ts_ms=now_ms(), model=self.backend.name, model_version=self.backend.version,
                    width=w, height=h,
                    keypoints=None if person is None else publishable_keypoints(person.keypoints, w, h),
                    box=None if person is None else publishable_box(person.box),
                    reference_id=f.reference_id,
                )
            except MessageError as exc:  # a bug in a backend must cost one frame, never the worker
                self.count("frames_unpublishable")
                log.warning("session %s frame %d: keypoints not publishable: %s", f.session_id, f.seq, exc)
                continue
            self.producer.send(self.topics.keypoints, key=record_key(f.session_id, kf.seq), value=kf.to_json())
            metrics.observe_hop(GATEWAY_TO_INFERRED, kf.infer_ts_ms - f.gateway_ts_ms)
            out.append(kf)
        self.count("frames_out", len(out))
        metrics.SESSIONS.labels("worker").set(len(self.selectors))
        self.producer.flush()
        return out

    def _lane(self, session_id: str) -> int:
        return zlib.crc32(session_id.encode()) % len(self.lanes)

    def _selector(self, session_id: str, reference_id: str | None = None) -> SubjectSelector:
        selector = self.selectors.get(session_id)
        if selector is None:
            selector = self.selectors[session_id] = SubjectSelector(self.lanes[self._lane(session_id)], session_id,
                                                                    smoothing=self.smoothing)
        if selector.matcher is None and self.guides is not None:
            selector.matcher = self.guides.get(reference_id)  # None until loaded: the policy waits for nobody
        return selector

    def run_once(self, timeout_ms: int = 100) -> list[KeypointFrame]:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=256)
        records = [r for part in polled.values() for r in part]
        batch = self.select(records)
        out: list[KeypointFrame] = []
        for i in range(0, len(batch), self.max_batch):
            out += self.process(batch[i:i + self.max_batch])
        return out

    def warm_up(self) -> None:
        """One inference on a blank frame, so the first patient frame does not pay for model set-up."""
        from rehab.scoring import kernels

        kernels.warm_up()  # the patient lock scores movement with the scorer's kernels
        blank = np.zeros((640, 360, 3), np.uint8)
        for backend in self.lanes:
            backend.infer([blank], ["warm-up"])
            backend.end_stream("warm-up")

    def run(self) -> None:
        log.info("pose worker running: backend=%s %s", self.backend.name, self.backend.version)
        last_report = time.monotonic()
        while not self.stopping.is_set():
            self.run_once()
            if time.monotonic() - last_report > 10:
                log.info("counters %s", dict(self.counters))
                last_report = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()

    def close_backends(self) -> None:
        if self.guides is not None:
            self.guides.close()
        if self.pool is not None:
            self.pool.shutdown()
        for backend in self.lanes:
            backend.close()


def build_worker(settings) -> PoseWorker:
    """The composition root for a worker process: Kafka clients and backend from settings."""
    from edge.backends import backend_from_settings

    topics = settings.topics
    consumer = kafka_clients.group_consumer(
        topics.frames, settings.kafka_bootstrap, settings.worker_group,
        # (the broker answers a fetch as soon as a frame arrives; the wait only bounds how often an idle
        # worker asks: 20 ms cost ~0.06 of a core with no session)
        auto_offset_reset="latest", enable_auto_commit=True, fetch_max_wait_ms=500,
        # a crashed worker's partitions move to the others (or to its restart) after 10 s, not
        # kafka-python's 45 s (the fault drill in tests/integration/test_fault_drills.py found it)
        session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    producer = kafka_clients.producer(settings.kafka_bootstrap, linger_ms=0, acks=1)

    def make():
        return backend_from_settings(settings)

    backend = make()
    extra = [make() for _ in range(settings.worker_threads - 1)] if not backend.batched else []
    return PoseWorker(consumer, producer, backend, topics, max_frame_age_ms=settings.worker_max_frame_age_ms,
                      smoothing=settings.pose_smoothing, max_fps_per_session=settings.worker_max_fps,
                      extra_backends=extra, guides=Guides(mysql_loader(settings)))
