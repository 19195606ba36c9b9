"""Which person is the patient, frame after frame.

Policy (documented in the README):
1. **Acquire** (the first ``acquire_ms`` of a session, and again after the patient was lost): find
   everyone in view, follow each candidate by box overlap, and measure how much each one moves (how
   far its joints travel, in body heights, over the last 30 frames). The patient is the one performing the exercise: the
   candidate that moves most, not the largest or nearest (a relative or therapist often stands closer
   to the camera). Until the window is over, with several candidates the leader is reported only if
   it moves (>= 0.12 body heights; a still person's keypoints wander ~0.02-0.08): nobody rather than
   perhaps the wrong person; a lone candidate is reported at the start of a session (a guide
   recording keeps its first frames), but after the patient was lost only someone moving is.
   A lone moving candidate seen in 6 frames is locked at once; at the end of the window the leader is
   locked even if nobody moved (then the most prominent person).
   Limit: a person too small for the backend's detector (BlazePose: under ~120 px) may be found late.
2. **Lock**: follow that person only. A backend that sees one person at a time (BlazePose) runs on a
   crop around the patient's last box, so a bystander elsewhere in the picture cannot take over; a
   backend that sees everyone (Keypoint R-CNN) picks the detection overlapping the last box most.
3. **Lost**: when the patient is not found for ``lost_after`` frames, report nobody (never someone
   else) and acquire again; the patient is re-acquired when they return.

Finding everyone with a single-person backend: run it on the whole picture, grey out the person found,
run it again, up to ``max_people`` times.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.backends.base import Person, PoseBackend
from edge.smoothing import OneEuroFilter

MIN_CONF = 0.5
EARLY_LOCK_FRAMES = 6  # one moving candidate only, seen this often: nobody else to choose from, lock now
ROI_MARGIN = 0.08  # the crop moves when the patient's box comes this close (fraction) to its edge
MIN_MOTION = 0.12  # body heights: a still person's keypoints wander ~0.02-0.08, an exercise 0.2 or more
HISTORY = 30  # frames of a candidate kept to judge its motion
MIN_RELATIVE_HEIGHT = 0.25


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def expand(box: tuple[float, ...], factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * factor / 2
    return (max(0, int(cx - half)), max(0, int(cy - half)), min(width, int(cx + half)), min(height, int(cy + half)))


def inside(box: tuple[float, ...], roi: tuple[int, ...], margin: float) -> bool:
    mx, my = (roi[2] - roi[0]) * margin, (roi[3] - roi[1]) * margin
    return box[0] >= roi[0] + mx and box[1] >= roi[1] + my and box[2] <= roi[2] - mx and box[3] <= roi[3] - my


def shifted(p: Person, dx: int, dy: int) -> Person:
    kps = p.keypoints.copy()
    kps[:, 0] += dx
    kps[:, 1] += dy
    b = p.box
    return Person(kps, (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy), p.score)


def body_scale(p: Person) -> float:
    return max(p.box[3] - p.box[1], p.box[2] - p.box[0], 1.0)


@dataclass
class Candidate:
    last: Person
    last_ts_ms: float
    history: list = field(default_factory=list)  # keypoints seen, newest last (at most HISTORY)

    def __post_init__(self) -> None:
        self.history.append(self.last.keypoints)

    def observe(self, p: Person, ts_ms: float) -> None:
        self.last, self.last_ts_ms = p, ts_ms
        self.history = (self.history + [p.keypoints])[-HISTORY:]

    @property
    def seen(self) -> int:
        return len(self.history)

    @property
    def motion(self) -> float:
        """How far the confident joints travelled, in body heights: the extent (bounding-box diagonal)
        of each joint's positions, 90th percentile over joints. Jitter stays small however many frames
        there are, unlike a sum of frame-to-frame steps; a performed movement does not."""
        if self.seen < 2:
            return 0.0
        kps = np.stack(self.history)
        conf = (kps[:, :, 2] >= MIN_CONF).all(axis=0)
        if not conf.any():
            return 0.0
        xy = kps[:, conf, :2]
        extent = np.hypot(*(xy.max(axis=0) - xy.min(axis=0)).T)
        # the 90th percentile: an exercise may move only the arms (4 of 17 joints)
        return float(np.percentile(extent, 90)) / body_scale(self.last)

    @property
    def prominence(self) -> float:
        b = self.last.box
        return (b[2] - b[0]) * (b[3] - b[1]) * self.last.score

    def height(self) -> float:
        return self.last.box[3] - self.last.box[1]

    def rank(self, tallest: float) -> tuple:
        """Moving people first (most motion first), then the most prominent. Someone under a quarter
        of the tallest candidate's height, or seen in fewer than 3 frames, does not count as moving: a
        tiny background figure's keypoints jump about and would look like motion."""
        reliable = self.seen >= 3 and self.height() >= MIN_RELATIVE_HEIGHT * tallest
        moving = reliable and self.motion >= MIN_MOTION
        return (moving, self.motion if moving else 0.0, self.prominence)


@dataclass
class SubjectSelector:
    backend: PoseBackend
    stream: str
    acquire_ms: float = 1000.0
    max_people: int = 3
    lost_after: int = 8
    crop_factor: float = 1.6
    min_iou: float = 0.1
    smoothing: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)
    locked: Person | None = None
    acquire_since: float | None = None
    missed: int = 0
    was_locked: bool = False
    roi: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        self.filter = OneEuroFilter(self.smoothing)

    # -- finding people ---------------------------------------------------------------------
    def find_people(self, image: np.ndarray) -> list[Person]:
        if self.backend.multi_person:
            return self.backend.infer([image], [None])[0]
        found: list[Person] = []
        work = image.copy()
        h, w = image.shape[:2]
        fill = tuple(int(v) for v in image.reshape(-1, 3).mean(axis=0))
        for _ in range(self.max_people):
            people = self.backend.infer([work], [None])[0]
            if not people or any(iou(people[0].box, f.box) > 0.3 for f in found):
                break
            found.append(people[0])
            x1, y1, x2, y2 = expand(people[0].box, 1.25, w, h)
            work[y1:y2, x1:x2] = fill
        return found

    def _follow(self, image: np.ndarray, people: list[Person] | None) -> Person | None:
        """The locked patient in this frame, or None."""
        last = self.locked
        if people is None and not self.backend.multi_person:
            h, w = image.shape[:2]
            if self.roi is None or not inside(last.box, self.roi, ROI_MARGIN):
                # a crop that moves every frame would defeat the backend's own tracking: move it only
                # when the patient nears its edge
                self.roi = expand(last.box, self.crop_factor, w, h)
                self.backend.end_stream(f"{self.stream}#roi")
            x1, y1, x2, y2 = self.roi
            found = self.backend.infer([image[y1:y2, x1:x2]], [f"{self.stream}#roi"])[0]
            people = [shifted(p, x1, y1) for p in found]
        elif people is None:
            people = self.backend.infer([image], [None])[0]
        best = max(people, key=lambda p: iou(p.box, last.box), default=None)
        return best if best is not None and iou(best.box, last.box) >= self.min_iou else None

    # -- the policy ---------------------------------------------------------------------------
    def step(self, image: np.ndarray, ts_ms: float, people: list[Person] | None = None) -> Person | None:
        """The patient in ``image`` (pixels of ``image``), or None. ``people``: everyone detected, when
        the caller already ran a multi-person backend on a batch."""
        if self.locked is not None:
            person = self._follow(image, people)
            if person is None:
                self.missed += 1
                if self.missed >= self.lost_after:
                    self._reset()
                return None
            self.locked, self.missed = person, 0
            return self._smooth(person, ts_ms)
        return self._acquire(image, ts_ms, people)

    def _acquire(self, image: np.ndarray, ts_ms: float, people: list[Person] | None) -> Person | None:
        if self.acquire_since is None:
            self.acquire_since = ts_ms
        found = self.find_people(image) if people is None or not self.backend.multi_person else people
        for p in found:
            match = max(self.candidates, key=lambda c: iou(c.last.box, p.box), default=None)
            if match is not None and iou(match.last.box, p.box) >= self.min_iou:
                match.observe(p, ts_ms)
            else:
                self.candidates.append(Candidate(p, ts_ms))
        self.candidates = [c for c in self.candidates if ts_ms - c.last_ts_ms <= 500]
        if not self.candidates:
            return None
        tallest = max(c.height() for c in self.candidates)
        leader = max(self.candidates, key=lambda c: c.rank(tallest))
        moving = leader.rank(tallest)[0]
        done = ts_ms - self.acquire_since >= self.acquire_ms
        rivals = [c for c in self.candidates if c.height() >= MIN_RELATIVE_HEIGHT * tallest]
        alone = len(rivals) == 1  # tiny background figures are no rivals
        lone_at_start = alone and not self.was_locked  # after a loss, a lone still person is not the patient
        if leader.last_ts_ms != ts_ms or not (moving or done or lone_at_start):
            return None  # the leader is not in this frame, or several people and nobody moves yet
        if done and self.was_locked and not moving:
            self.acquire_since = ts_ms  # re-acquiring: wait for someone who moves
            return None
        if done or (alone and moving and leader.seen >= EARLY_LOCK_FRAMES):
            self.locked, self.candidates, self.acquire_since, self.was_locked = leader.last, [], None, True
            self.backend.end_stream(f"{self.stream}#roi")
        return self._smooth(leader.last, ts_ms)

    def _smooth(self, p: Person, ts_ms: float) -> Person:
        if self.smoothing == 0.0:
            return p
        return Person(self.filter(p.keypoints, ts_ms), p.box, p.score)

    def _reset(self) -> None:
        self.locked, self.missed, self.candidates, self.acquire_since, self.roi = None, 0, [], None, None
        self.filter.reset()
        self.backend.end_stream(f"{self.stream}#roi")

    def close(self) -> None:
        self.backend.end_stream(f"{self.stream}#roi")
