"""One person followed from frame to frame (``Track``): their box and keypoints, the last
``HISTORY_MS`` of movement (judged against the guide by edge/subject.py), how far they move, their
torso colours. The policy that picks the patient among the tracks: edge/subject.py, docs/pose.md."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.appearance import distance as look_distance
from edge.backends.base import Person

MIN_CONF = 0.5
MIN_MOTION = 0.12  # body heights: a still person's keypoints wander ~0.02-0.08, an exercise 0.2 or more
MOTION_FRAMES = 30  # frames of a track judged for motion
MIN_RELATIVE_HEIGHT = 0.25
HISTORY_MS = 3000.0  # movement kept per track to compare with the reference
MATCH_EVERY = 3  # frames between two comparisons of one track
MIN_MATCH = 0.3  # reference similarity (a short window's) from which someone counts as doing the exercise
MAX_LOOK_CHANGE = 0.6  # torso colours (Bhattacharyya distance) further than this from a track's: someone else
LOOK_RATE = 0.1  # how fast a track's colours follow the person (turning, light)


def body_scale(p: Person) -> float:
    return max(p.box[3] - p.box[1], p.box[2] - p.box[0], 1.0)


@dataclass
class Track:
    id: int
    person: Person
    last_ts: float
    ts: list[float] = field(default_factory=list)
    kps: list[np.ndarray] = field(default_factory=list)
    match: float | None = None
    judged_at: int = -MATCH_EVERY
    look: np.ndarray | None = None  # torso colours (edge/appearance.py), following the person slowly
    bystander: bool = False  # seen beside the locked patient: never taken for the patient after a loss

    def __post_init__(self) -> None:
        self.ts.append(self.last_ts)
        self.kps.append(self.person.keypoints)

    def same_look(self, look: np.ndarray | None) -> bool:
        return self.look is None or look is None or look_distance(self.look, look) <= MAX_LOOK_CHANGE

    def observe(self, p: Person, ts_ms: float, look: np.ndarray | None = None) -> None:
        self.person, self.last_ts = p, ts_ms
        if look is not None:
            self.look = look if self.look is None else (1 - LOOK_RATE) * self.look + LOOK_RATE * look
        self.ts.append(ts_ms)
        self.kps.append(p.keypoints)
        while self.ts[0] < ts_ms - HISTORY_MS:
            self.ts.pop(0)
            self.kps.pop(0)

    @property
    def seen(self) -> int:
        return len(self.ts)

    @property
    def span_ms(self) -> float:
        return self.ts[-1] - self.ts[0]

    @property
    def motion(self) -> float:
        """How far the confident joints travelled, in body heights: the extent of each joint's positions
        over the last frames, 90th percentile over joints (an exercise may move only the arms). Jitter
        stays small however many frames there are, unlike a sum of frame-to-frame steps."""
        if self.seen < 2:
            return 0.0
        kps = np.stack(self.kps[-MOTION_FRAMES:])
        conf = (kps[:, :, 2] >= MIN_CONF).all(axis=0)
        if not conf.any():
            return 0.0
        xy = kps[:, conf, :2]
        extent = np.hypot(*(xy.max(axis=0) - xy.min(axis=0)).T)
        return float(np.percentile(extent, 90)) / body_scale(self.person)

    @property
    def prominence(self) -> float:
        b = self.person.box
        return (b[2] - b[0]) * (b[3] - b[1]) * self.person.score

    def height(self) -> float:
        return self.person.box[3] - self.person.box[1]

    def counts(self, tallest: float) -> bool:
        """Not a tiny background figure (under a quarter of the tallest person's height)."""
        return self.height() >= MIN_RELATIVE_HEIGHT * tallest

    def reliable(self, tallest: float) -> bool:
        """Whose motion means something: a tiny background figure's keypoints, or those of someone seen
        in fewer than 3 frames, jump about."""
        return self.seen >= 3 and self.counts(tallest)

    def moving(self, tallest: float) -> bool:
        return self.reliable(tallest) and self.motion >= MIN_MOTION

    def good_match(self, tallest: float) -> bool:
        """Performing the guide: matching it, and moving (a still person can match a guide's first
        pose, standing, better than someone half-way through a lunge matches its first second)."""
        return self.match is not None and self.match >= MIN_MATCH and self.moving(tallest)
