"""Which person is the patient, frame after frame (documented in docs/pose.md).

1. **Everyone is tracked.** A search (the backend's ``infer``: every person in the picture) runs at the
   start, every ``search_every`` frames and whenever the patient is not found; in between, a backend
   that can (BlazePose) crop-tracks each person from their previous landmarks, which costs one landmark
   pass per person and no detector. People are matched to tracks by box overlap; a track not seen for
   ``TRACK_TTL_MS`` ends.
2. **The patient is the person performing the guide's exercise.** With the session's reference, each
   track's last ``HISTORY_MS`` of movement is scored against it by the product's own scorer (every
   ``MATCH_EVERY`` frames, once ``JUDGE_MS`` of it is known); the best match over ``MIN_MATCH`` leads.
   Not the largest, nearest or most-moving person: a relative waving their arms in front scores low
   against a lunge. Before anyone can be judged (and without a reference) the leader is the one who
   moves most (then the most prominent), and is reported only if moving or alone.
3. **Lock.** The leader is locked once judged a clear match (``MATCH_MARGIN`` above everyone else
   judged) or at the end of the acquisition window (``acquire_ms``). While locked only the patient is
   crop-tracked every frame; the periodic search keeps everyone else's track, so a crossing bystander
   is matched to their own track and not to the patient's.
4. **Hidden.** When the locked patient is not found while someone else's box covers theirs (a crossing),
   their keypoints are followed by optical flow for at most ``COAST_MS`` (``follow_points``).
5. **Lost.** When the patient is not found for ``lost_after`` frames, nobody is reported (never
   someone else) and acquisition starts again; after a loss only someone who matches the reference
   (or, without one, someone moving) is taken: the patient coming back, not the bystander.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from edge.appearance import distance as look_distance
from edge.appearance import torso_histogram
from edge.backends.base import Person, PoseBackend, box_area, box_intersection
from edge.backends.base import box_iou as iou
from edge.smoothing import OneEuroFilter
from edge.tracks import MATCH_EVERY, MIN_MOTION, Track

EARLY_LOCK_FRAMES = 6  # without a reference: one moving person alone, seen this often, is locked at once
JUDGE_MS = 800.0  # movement needed before a track is compared with the reference
MATCH_MARGIN = 0.12  # a lock on the match needs this lead over everyone else judged
TRACK_TTL_MS = 700.0
MIN_IOU = 0.2
KNOWN_LOOK = 0.4  # a new track this close in colours to a bystander seen before is that bystander
COAST_MS = 500.0  # the locked patient hidden by someone else: followed by optical flow for at most this long
OCCLUDED = 0.2  # someone else's box covers this share of the patient's: the patient may be behind or in front

Matcher = Callable[[np.ndarray, np.ndarray], float]  # (timestamps ms, keypoints (T, 17, 3)) -> similarity


def follow_points(prev: np.ndarray, image: np.ndarray, kps: np.ndarray, min_conf: float = 0.3,
                  min_share: float = 0.5) -> np.ndarray | None:
    """Keypoints (17, 3) of ``prev`` moved into ``image`` by optical flow (OpenCV's pyramidal
    Lucas-Kanade), each point flowed back too: those that do not return within 1 % of the picture's
    height (or 1 px) keep their place with confidence 0. None when fewer than ``min_share`` of the
    points with confidence >= ``min_conf`` flow well (or none has it)."""
    conf = kps[:, 2] >= min_conf
    if not conf.any():
        return None
    g0 = cv2.cvtColor(prev, cv2.COLOR_BGR2GRAY) if prev.ndim == 3 else prev
    g1 = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    p0 = np.ascontiguousarray(kps[conf, :2], dtype=np.float32).reshape(-1, 1, 2)
    lk = {"winSize": (21, 21), "maxLevel": 3,
          "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    p1, st1, _ = cv2.calcOpticalFlowPyrLK(g0, g1, p0, None, **lk)
    back, st2, _ = cv2.calcOpticalFlowPyrLK(g1, g0, p1, None, **lk)
    err = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
    good = (st1.ravel() == 1) & (st2.ravel() == 1) & (err <= max(1.0, 0.01 * g0.shape[0]))
    if good.sum() < min_share * len(good):
        return None
    out = np.array(kps, dtype=np.float32, copy=True)
    idx = np.flatnonzero(conf)
    out[idx[good], :2] = p1.reshape(-1, 2)[good]
    out[idx[~good], 2] = 0.0
    out[~conf, 2] = 0.0
    return out


def contained(a: tuple[float, ...], b: tuple[float, ...], share: float = 0.7) -> bool:
    """Most of box ``a`` (or of ``b``, the smaller one) lies inside the other: one body seen twice (a
    second detection on part of someone, or two crops that slid onto the same person)."""
    small = min(box_area(a), box_area(b))
    return small > 0 and box_intersection(a, b) / small > share


def reference_matcher(model) -> Matcher:
    """How well a stretch of someone's movement matches a guide (``rehab.scoring.ReferenceModel``):
    the scorer's own window similarity, so "the patient" means what the score means."""
    from rehab.scoring.pose import resample
    from rehab.scoring.model import RATE_HZ
    from rehab.scoring.scorer import Rows, score_windows

    def match(ts: np.ndarray, kps: np.ndarray) -> float:
        rows = Rows.compute(resample(ts, kps.astype(np.float64), RATE_HZ, ts[0], ts[-1]), model)
        return float(score_windows(model, [rows], [None])[0].similarity)

    return match


@dataclass
class SubjectSelector:
    backend: PoseBackend
    stream: str
    matcher: Matcher | None = None  # the session's guide, when known (reference_matcher)
    acquire_ms: float = 1000.0
    lost_after: int = 8
    search_every: int = 30  # frames between two searches for everyone while locked
    acquire_search_every: int = 6  # ... while acquiring
    smoothing: float = 0.0
    tracks: list[Track] = field(default_factory=list)
    patient: Track | None = None
    acquire_since: float | None = None
    missed: int = 0
    was_locked: bool = False
    frame: int = 0
    last_search: int | None = None
    next_id: int = 0
    shown: int | None = None  # the track reported last while acquiring
    bystanders: list = field(default_factory=list)  # torso colours of bystanders whose tracks ended
    prev_image: np.ndarray | None = None  # the last frame while locked (optical flow while the patient is hidden)
    prev_ts: float | None = None
    coasted: Person | None = None  # the patient followed by optical flow into the previous frame

    def __post_init__(self) -> None:
        self.filter = OneEuroFilter(self.smoothing)
        spec = self.backend.output_filter
        self.model_filter = OneEuroFilter(**spec) if spec else None
        self.shown_filtered: int | None = None  # the track the filters follow

    # -- everyone in view ----------------------------------------------------------------------
    def _observe(self, image: np.ndarray, ts_ms: float, people: list[Person] | None) -> None:
        tracking = self.backend.can_track
        if people is not None or not tracking:
            if people is None:
                people = self.backend.infer([image], [self.stream])[0]
            self._associate(image, people, ts_ms)
            return
        due = self.search_every if self.patient is not None else self.acquire_search_every
        if self.tracks and self.last_search is not None:
            # crop-track: the patient alone while locked, everyone while acquiring
            # (not the patient while followed by optical flow: someone covers them, and the crop would see
            # that body or a mix of both, which can pass the colour check; a search finds them again)
            follow = list(self.tracks) if self.patient is None else [self.patient] if self.coasted is None else []
            for t, p in zip(follow, self.backend.track(image, [t.person for t in follow], ts_ms)):
                look = None if p is None else torso_histogram(image, p.keypoints)
                if p is not None and t.same_look(look):  # else the crop slid onto someone else
                    t.observe(p, ts_ms, look)
            lost = self.patient is not None and self.patient.last_ts != ts_ms
            if self.frame - self.last_search < due and not lost:
                self._merge_duplicates()
                return
        # a search: everyone in the picture (the whole picture only while the patient is tracked: that
        # keeps the others' tracks; with tiles when looking for the patient)
        thorough = self.patient is None or self.patient.last_ts != ts_ms
        self.last_search = self.frame
        self._associate(image, self.backend.infer([image], [None], thorough=thorough, ts_ms=ts_ms)[0], ts_ms)

    def _associate(self, image: np.ndarray, people: list[Person], ts_ms: float) -> None:
        """People to tracks: the largest box overlaps first, never across different torso colours."""
        looks = [torso_histogram(image, p.keypoints) for p in people]
        pairs = sorted(((iou(t.person.box, p.box), ti, pi) for ti, t in enumerate(self.tracks)
                        for pi, p in enumerate(people) if t.last_ts != ts_ms and t.same_look(looks[pi])),
                       reverse=True)
        used_t, used_p = set(), set()
        for overlap, ti, pi in pairs:
            if overlap < MIN_IOU or ti in used_t or pi in used_p:
                continue
            self.tracks[ti].observe(people[pi], ts_ms, looks[pi])
            used_t.add(ti)
            used_p.add(pi)
        for pi, p in enumerate(people):
            if pi in used_p or any(t.last_ts == ts_ms and iou(t.person.box, p.box) > 0.6 for t in self.tracks):
                continue
            # a detection on part of someone already tracked (an arm, a torso found in a tile) is no one new
            if any(t.last_ts == ts_ms and contained(p.box, t.person.box) for t in self.tracks):
                continue
            known = looks[pi] is not None and any(look_distance(looks[pi], b) <= KNOWN_LOOK for b in self.bystanders)
            self.tracks.append(Track(self.next_id, p, ts_ms, look=looks[pi],
                                     bystander=self.patient is not None or known))
            self.next_id += 1
        for t in self.tracks:
            if ts_ms - t.last_ts > TRACK_TTL_MS and t.bystander and t.look is not None:
                self.bystanders = (self.bystanders + [t.look])[-8:]  # their colours outlive their track
        self.tracks = [t for t in self.tracks if ts_ms - t.last_ts <= TRACK_TTL_MS]
        self._merge_duplicates()

    def _merge_duplicates(self) -> None:
        """Two tracks that crop-tracking drove onto one body: keep the patient's, else the older."""
        keep: list[Track] = []
        for t in sorted(self.tracks, key=lambda t: (t is not self.patient, t.id)):
            if not any(k.last_ts == t.last_ts and iou(k.person.box, t.person.box) > 0.7 for k in keep):
                keep.append(t)
        self.tracks = sorted(keep, key=lambda t: t.id)

    # -- the policy ------------------------------------------------------------------------------
    def step(self, image: np.ndarray, ts_ms: float, people: list[Person] | None = None) -> Person | None:
        """The patient in ``image`` (pixels of ``image``), or None. ``people``: everyone detected, when
        the caller already ran a batched backend on many sessions' frames."""
        self.frame += 1
        self._observe(image, ts_ms, people)
        try:
            if self.patient is not None:
                if self.patient.last_ts != ts_ms:
                    coasted = self._coast(image, ts_ms)
                    if coasted is not None:  # hidden by someone crossing: followed
                        return self._smooth(self.patient, ts_ms, coasted)
                    self.missed += 1
                    if self.missed >= self.lost_after:
                        self._lose()
                    return None
                self.missed, self.coasted = 0, None
                return self._smooth(self.patient, ts_ms)
            return self._acquire(ts_ms)
        finally:  # (the last frame is kept only while someone is locked: only a locked patient is followed)
            self.prev_image, self.prev_ts = (image, ts_ms) if self.patient is not None else (None, None)

    def _coast(self, image: np.ndarray, ts_ms: float) -> Person | None:
        """The locked patient not found in this frame while someone else's box covers theirs (a crossing:
        the landmark model slides onto the more visible person, whose colours the patient's track refuses):
        their last keypoints followed into this frame by optical flow (``follow_points``), for at most
        ``COAST_MS`` since they were last found. Not when nobody covers them: someone leaving the picture
        is not followed onto the background, nor someone hidden by a person in front of them (their feet
        lower in the picture): flow would follow that person. The track itself is left as last found and
        not crop-tracked meanwhile; the searches go on every frame, so the patient found again takes over."""
        t = self.patient
        followed, self.coasted = self.coasted, None  # (set only by the previous frame's step)
        last = t.person if followed is None else followed
        # the keypoints to follow must be the previous frame's: followed into it, or the patient found in it
        if self.prev_image is None or (followed is None and t.last_ts != self.prev_ts) or ts_ms - t.last_ts > COAST_MS:
            return None
        area = box_area(last.box)
        # covered by someone further back (their feet higher in the picture): the patient in front stays in
        # view and their pixels can be followed; someone in front hides them, and flow would follow that person
        covered = any(o is not t and o.last_ts == ts_ms and area > 0 and o.person.box[3] < last.box[3]
                      and box_intersection(o.person.box, last.box) / area >= OCCLUDED for o in self.tracks)
        moved = follow_points(self.prev_image, image, last.keypoints) if covered else None
        if moved is None:
            return None
        seen = moved[:, 2] > 0  # the box moves with the points that flowed (a median step), keeping its size
        dx, dy = np.median(moved[seen, :2] - last.keypoints[seen, :2], axis=0)
        x1, y1, x2, y2 = last.box
        self.coasted = Person(moved, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), last.score)
        return self.coasted

    def _judge(self) -> None:
        if self.matcher is None:
            return
        for t in self.tracks:
            if t.span_ms >= JUDGE_MS and self.frame - t.judged_at >= MATCH_EVERY:
                t.match, t.judged_at = self.matcher(np.array(t.ts), np.stack(t.kps)), self.frame

    def _acquire(self, ts_ms: float) -> Person | None:
        if self.acquire_since is None:
            self.acquire_since = ts_ms
        self._judge()
        present = [t for t in self.tracks if t.last_ts == ts_ms and not t.bystander]
        if not present:
            return None
        if any(t.id == self.shown and t.last_ts != ts_ms for t in self.tracks):
            return None  # the one reported so far is missing from this frame: nobody (and no lock), not someone else
        shown = next((t for t in present if t.id == self.shown), None)
        tallest = max(t.height() for t in present)
        matched = [t for t in present if t.good_match(tallest)]
        done = ts_ms - self.acquire_since >= self.acquire_ms
        if matched:
            leader = max(matched, key=lambda t: t.match)
            if shown is not None and shown.good_match(tallest) and shown.match > leader.match - MATCH_MARGIN:
                leader = shown  # no flip-flop: someone else must match the guide clearly better
            rivals = [t.match for t in present if t is not leader and t.match is not None]
            clear = all(m <= leader.match - MATCH_MARGIN for m in rivals) and \
                all(t.match is not None for t in present if t.moving(tallest))
            if clear or done:
                self._lock(leader)
            self.shown = leader.id
            return self._smooth(leader, ts_ms)
        movers = self._movers(present, tallest)
        leader = max(present, key=lambda t: (t in movers, t.motion if t in movers else 0.0, t.prominence))
        if shown is not None and leader is not shown and (
                leader not in movers or (shown in movers and leader.motion < 1.5 * shown.motion)):
            leader = shown  # no flip-flop: someone else must move, and clearly more
        moving = leader in movers
        alone = sum(t.counts(tallest) for t in present) == 1
        if self.was_locked and not moving:
            return None  # re-acquiring after a loss: someone new who moves (bystanders are left out)
        # at the start of a session the leader is reported at once (most prominent while nobody moves):
        # the first frames of a session are those of a person standing in front of their camera
        if self.matcher is None and (done or (alone and moving and leader.seen >= EARLY_LOCK_FRAMES)):
            self._lock(leader)
        elif self.matcher is not None and not self.was_locked and ts_ms - self.acquire_since >= 3 * self.acquire_ms \
                and (moving or all(t.match is None for t in present)):
            # nobody matches the guide clearly after three acquisition windows (a poor performance, or too
            # few joints seen to compare): the old rule, so acquisition (everyone tracked) does not go on
            self._lock(leader)
        self.shown = leader.id
        return self._smooth(leader, ts_ms)

    @staticmethod
    def _movers(present: list[Track], tallest: float) -> list[Track]:
        """Who moves: over ``MIN_MOTION``, or, early on, clearly more than anyone else (a third of it
        and three times everyone else's: a patient starting next to a still bystander)."""
        out = []
        for t in present:
            if t.moving(tallest):
                out.append(t)
            elif t.reliable(tallest) and t.motion >= MIN_MOTION / 4:
                if all(t.motion >= 3 * o.motion for o in present if o is not t):
                    out.append(t)
        return out

    def _lock(self, t: Track) -> None:
        self.patient, self.acquire_since, self.was_locked, self.missed = t, None, True, 0
        for other in self.tracks:
            other.bystander = other is not t

    def _lose(self) -> None:
        self.patient, self.missed, self.acquire_since, self.coasted = None, 0, None, None
        for t in self.tracks:
            t.match = None
        self.shown_filtered = None

    def _smooth(self, track: Track, ts_ms: float, person: Person | None = None) -> Person:
        """The reported person's keypoints through the backend's own filter (the temporal filter its
        model needs, e.g. MediaPipe's graph's), then the user's optional smoothing. Only what is reported
        is filtered: the policy judges motion on the raw keypoints. A filter restarts with each person."""
        p = track.person if person is None else person
        if self.shown_filtered != track.id:
            self.shown_filtered = track.id
            self.filter.reset()
            if self.model_filter is not None:
                self.model_filter.reset()
        kps = p.keypoints
        if self.model_filter is not None:
            kps = self.model_filter(kps, ts_ms, ((p.box[2] - p.box[0]) + (p.box[3] - p.box[1])) / 2 or 1.0)
        if self.smoothing != 0.0:
            kps = self.filter(kps, ts_ms)
        return p if kps is p.keypoints else Person(kps, p.box, p.score, p.region)

    def everyone(self, ts_ms: float) -> list[tuple[int, Person]]:
        """Every person seen in the frame at ``ts_ms``: (track id, person), for --all-people."""
        return [(t.id, t.person) for t in self.tracks if t.last_ts == ts_ms]

    def close(self) -> None:
        self.backend.end_stream(self.stream)
