"""Every person in view with BlazePose's own two models, offline on the CPU.

The ``mediapipe==0.10.21`` wheel ships BlazePose's person detector (``pose_detection.tflite``) and its
landmark models; ``mp.solutions.pose`` keeps only the detector's best box and so follows one person.
Here both models run through the TFLite runtime from PyPI (``ai-edge-litert``) as MediaPipe's pose
graph does, except that **every** candidate box the detector decodes survives non-maximum suppression:

1. ``PersonDetector``: the picture letterboxed to 224x224, values in [-1, 1]; 2,254 SSD anchors
   (strides 8, 16, 32, 32, 32); each anchor's box and four key points decoded; a sigmoid score over
   ``min_score``; weighted non-maximum suppression at IoU 0.3. Key point 0 is the hip centre, 1 a point
   above the head: they give a square region, rotated so the body stands upright, of 2.5 times their
   distance (the graph's ``AlignmentPointsRectsCalculator`` and 1.25 scaling).
2. ``LandmarkModel``: that region warped to 256x256 (values in [0, 1]), 39 landmarks out (33 body
   points and the two the graph uses to place the next frame's region), a presence score.
   Crop-tracking: the next frame's region comes from this frame's landmarks 33 and 34, as in the graph,
   so the detector need not run on every frame.

Why not the wheel's graph: it has no option to keep more than one detection (``num_poses`` exists only
in the Tasks API, whose ``.task`` bundle is not in the wheel), and the selector needs every person.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from edge.backends.base import BackendError, Person, PoseBackend, box_iou
from edge.backends.blazepose import BLAZEPOSE_TO_COCO, native_stderr_silenced
from edge.backends.blazepose_models import check_complexity, modules_dir
from edge.smoothing import OneEuroFilter

LANDMARK_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}
DETECT_SIZE, LANDMARK_SIZE = 224, 256
TILE_MIN_SCORE = 0.7
TO_COCO = np.array(BLAZEPOSE_TO_COCO)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The models' logits as probabilities (clipped as MediaPipe's score_clipping_thresh does)."""
    return 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))


def _interpreter(path: Path, threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendError(f"ai-edge-litert is not installed ({exc}); pip install ai-edge-litert") from None
    if not path.is_file():
        raise BackendError(f"BlazePose model {path} is missing; run: python -m edge.backends.blazepose_models")
    with native_stderr_silenced():  # the runtime's "Created TensorFlow Lite XNNPACK delegate" note
        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    return it


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in [0, 1] (every anchor's size is 1: the graph's fixed_anchor_size)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 2), (32, 6)):  # the three stride-32 layers share one grid
        n = math.ceil(DETECT_SIZE / stride)
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out)


@dataclass(frozen=True)
class Region:
    """A square, rotated region of the picture around one person (pixels; rotation in radians)."""

    cx: float
    cy: float
    size: float
    rotation: float

    @classmethod
    def from_points(cls, start: np.ndarray, end: np.ndarray, scale: float = 1.25) -> "Region":
        """The graph's region from a centre point and a point above the head."""
        dx, dy = end[0] - start[0], end[1] - start[1]
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return cls(float(start[0]), float(start[1]), float(2 * math.hypot(dx, dy) * scale), rotation)

    def matrix(self, out: int) -> np.ndarray:
        """The affine map from the ``out`` x ``out`` crop's pixels to the picture's."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        k = self.size / out
        rot = np.array([[c, -s], [s, c]]) * k
        offset = np.array([self.cx, self.cy]) - rot @ np.array([out / 2, out / 2])
        return np.hstack([rot, offset[:, None]])


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, threshold: float) -> list[tuple]:
    """MediaPipe's weighted non-maximum suppression: each kept detection is the score-weighted mean of
    the candidates overlapping it by IoU > ``threshold``. ``boxes`` (N, 4) x1 y1 x2 y2."""
    order = np.argsort(-scores)
    boxes, scores, extra = boxes[order], scores[order], extra[order]
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    alive = np.ones(len(boxes), bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        ix = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = ix * iy
        overlap = alive & (inter / np.maximum(area[i] + area - inter, 1e-9) > threshold)
        overlap[i] = True
        w = scores[overlap][:, None]
        kept.append(((boxes[overlap] * w).sum(0) / w.sum(), float(scores[i]), (extra[overlap] * w).sum(0) / w.sum()))
        alive &= ~overlap
    return kept


class PersonDetector:
    def __init__(self, threads: int = 1, min_score: float = 0.5):
        self.it = _interpreter(modules_dir() / "pose_detection" / "pose_detection.tflite", threads)
        self.input = self.it.get_input_details()[0]["index"]
        outs = sorted(self.it.get_output_details(), key=lambda d: d["shape"][-1], reverse=True)
        self.raw_boxes, self.raw_scores = outs[0]["index"], outs[1]["index"]
        self.anchors = ssd_anchors()
        self.min_score = min_score

    def search(self, image: np.ndarray, tile: float = 0.6,
               thorough: bool = True) -> list[tuple[Region, tuple[float, ...], float]]:
        """Everyone in the picture: the whole picture, then overlapping square tiles of ``tile`` times its
        short side (the detector finds a person by their face and upper body in 224 pixels: a patient
        at half the picture's height beside a nearer bystander, or a street's pedestrians, are found
        in a tile only). Boxes found twice (IoU > 0.5) are kept once."""
        found = self(image)
        if not thorough:
            return found
        h, w = image.shape[:2]
        side = int(min(h, w) * tile)
        step = max(1, int(side * 0.7))
        for y in sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)}):
            for x in sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)}):
                for region, box, score in self(image[y:y + side, x:x + side]):
                    if score < TILE_MIN_SCORE:  # tiles see more clutter up close: a stricter score
                        continue
                    box = (box[0] + x, box[1] + y, box[2] + x, box[3] + y)
                    region = Region(region.cx + x, region.cy + y, region.size, region.rotation)
                    if not any(box_iou(box, b) > 0.5 for _, b, _ in found):
                        found.append((region, box, score))
        return sorted(found, key=lambda d: -d[2])

    def __call__(self, image: np.ndarray) -> list[tuple[Region, tuple[float, float, float, float], float]]:
        """Every person's region, box (pixels) and detection score, best first."""
        h, w = image.shape[:2]
        scale = DETECT_SIZE / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (DETECT_SIZE - nw) // 2, (DETECT_SIZE - nh) // 2
        canvas = np.zeros((DETECT_SIZE, DETECT_SIZE, 3), np.float32)
        rgb = cv2.cvtColor(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        canvas[oy:oy + nh, ox:ox + nw] = rgb.astype(np.float32) / 127.5 - 1.0
        self.it.set_tensor(self.input, canvas[None])
        self.it.invoke()
        raw = self.it.get_tensor(self.raw_boxes)[0]
        scores = _sigmoid(self.it.get_tensor(self.raw_scores)[0, :, 0])
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        centre = raw[:, 0:2] / DETECT_SIZE + anchors
        half = raw[:, 2:4] / DETECT_SIZE / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * DETECT_SIZE
        points = (raw[:, 4:12].reshape(-1, 4, 2) / DETECT_SIZE + anchors[:, None]) * DETECT_SIZE
        out = []
        for box, score, pts in weighted_nms(boxes, scores, points.reshape(-1, 8), 0.3):
            # letterboxed 224 pixels -> picture pixels
            box = (box - [ox, oy, ox, oy]) / scale
            pts = (pts.reshape(4, 2) - [ox, oy]) / scale
            out.append((Region.from_points(pts[0], pts[1]), tuple(float(v) for v in box), score))
        return out


class LandmarkModel:
    def __init__(self, complexity: int = 1, threads: int = 1):
        self.it = _interpreter(modules_dir() / "pose_landmark" / LANDMARK_FILES[complexity], threads)
        self.input = self.it.get_input_details()[0]["index"]
        by_size = {int(np.prod(d["shape"])): d["index"] for d in self.it.get_output_details()}
        self.landmarks, self.presence = by_size[195], by_size[1]

    def __call__(self, image: np.ndarray, region: Region) -> tuple[np.ndarray, float]:
        """39 landmarks ``[x, y, visibility]`` (picture pixels) and the presence score."""
        m = region.matrix(LANDMARK_SIZE)
        crop = cv2.warpAffine(image, m, (LANDMARK_SIZE, LANDMARK_SIZE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
        tensor = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        self.it.set_tensor(self.input, tensor[None])
        self.it.invoke()
        raw = self.it.get_tensor(self.landmarks)[0].reshape(39, 5)
        presence = float(self.it.get_tensor(self.presence)[0, 0])
        xy = raw[:, :2] @ m[:, :2].T + m[:, 2]
        vis = _sigmoid(raw[:, 3])
        return np.concatenate([xy, vis[:, None]], axis=1).astype(np.float32), presence


@dataclass
class Tracked:
    """What a person found by this backend carries to the next frame (``Person.region``): where to look,
    and the One-Euro filter MediaPipe's pose graph puts on the two landmarks that place that region
    (its auxiliary-landmark smoothing: min cutoff 0.01 Hz, beta 10). Without it the region follows the
    landmarks and the landmarks the region: on a still person they jumped by up to ~160 px from frame
    to frame (std 14.6 px; 0.5 px with it), and a frozen patient looked like a moving one (0.63 on the
    frozen-frame variant of ./dev bench scoring_eval, 0.05 with it). The body's landmarks themselves are
    not filtered (no lag; the subject policy measures motion on them)."""

    region: Region
    aux: OneEuroFilter = field(default_factory=lambda: OneEuroFilter(min_cutoff_hz=0.01, beta=10.0))



class BlazePosePeopleBackend(PoseBackend):
    """BlazePose that sees everyone: ``infer`` runs the detector and the landmark model on each person
    found; ``track`` runs the landmark model only, on the regions the people's previous landmarks give
    (crop-tracking between searches, as MediaPipe does for its one person)."""

    name = "blazepose"
    multi_person = True
    can_track = True
    # MediaPipe's pose graph filters the landmarks it reports (min cutoff 0.05 Hz, beta 80, speeds in body
    # sizes): the subject policy applies it to the person it reports
    output_filter = {"min_cutoff_hz": 0.05, "beta": 80.0}

    def __init__(self, complexity: int = 1, min_detection_confidence: float = 0.5, min_presence: float = 0.5,
                 min_visibility: float = 0.4, max_people: int = 6, threads: int = 1, **_ignored):
        check_complexity(complexity)
        import mediapipe as mp

        self.detector = PersonDetector(threads, min_detection_confidence)
        self.landmark = LandmarkModel(complexity, threads)
        self.min_presence, self.max_people = min_presence, max_people
        self.min_visibility = min_visibility
        self.version = f"mediapipe-{mp.__version__}-people-c{complexity}"

    def _person(self, image: np.ndarray, state: Tracked, ts_ms: float | None) -> Person | None:
        lm, presence = self.landmark(image, state.region)
        if presence < self.min_presence:
            return None
        aux = lm[33:35]
        if ts_ms is not None:  # the graph's filter, speeds measured in body sizes (its value scaling)
            seen = lm[:33, :2]
            aux = state.aux(aux, ts_ms, max(float(np.ptp(seen[:, 0]) + np.ptp(seen[:, 1])) / 2, 1.0))
        nxt = Tracked(Region.from_points(aux[0, :2], aux[1, :2]), state.aux)
        kps = lm[TO_COCO]
        score = float(kps[:, 2].mean())
        if score < self.min_visibility:  # a detection on a poster or a patch of floor: few joints seen
            return None
        return Person.from_keypoints(kps, score, region=nxt)

    def infer(self, images: Sequence[np.ndarray], streams: Sequence[str | None],
              thorough: bool = True, ts_ms: float | None = None) -> list[list[Person]]:
        """Everyone in each image; ``thorough=False`` skips the tiles (a search while the patient is
        locked only needs to keep the other people's tracks); ``ts_ms``: the frame's time, which starts
        each person's region smoothing (without it, the next region is unfiltered)."""
        out = []
        for image in images:
            people: list[Person] = []
            for region, _box, _score in self.detector.search(image, thorough=thorough)[: self.max_people]:
                p = self._person(image, Tracked(region), ts_ms)
                if p is not None and not any(_same(p, q) for q in people):
                    people.append(p)
            out.append(people)
        return out

    def track(self, image: np.ndarray, people: Sequence[Person], ts_ms: float) -> list[Person | None]:
        return [self._person(image, p.region, ts_ms) if isinstance(p.region, Tracked) else None for p in people]


def _same(a: Person, b: Person) -> bool:
    """Two detections whose landmarks landed on one body (their boxes overlap by IoU > 0.6)."""
    return box_iou(a.box, b.box) > 0.6
