"""BlazePose (mediapipe 0.10.21, the full model ships in the wheel), mapped to COCO-17 on the CPU.

One ``mp.solutions.pose.Pose`` per session keeps that session's tracking state; idle ones are
evicted. BlazePose follows the most prominent person only.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

import time
from collections import OrderedDict
from typing import Sequence

import cv2
import numpy as np

from edge.backends.base import BackendError, Person, PoseBackend
from edge.backends.blazepose_models import check_complexity

# BlazePose's 33 landmarks -> COCO-17 order.
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


@contextlib.contextmanager
def native_stderr_silenced(active: bool = True):
    """MediaPipe's C++ side writes a page of notes to the process's stderr when a graph starts
    ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires ...": absl logging, which
    neither GLOG_minloglevel nor TF_CPP_MIN_LOG_LEVEL reach). They are not for the user: file
    descriptor 2 points at /dev/null while a graph starts, on the main thread only (another thread's
    real error is never hidden). REHAB_NATIVE_LOGS=1 keeps them."""
    if not active or os.environ.get("REHAB_NATIVE_LOGS") == "1" or threading.current_thread() is not threading.main_thread():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class BlazePoseBackend(PoseBackend):
    name = "blazepose"

    def __init__(self, complexity: int = 1, min_detection_confidence: float = 0.5,
                 max_streams: int = 64, idle_s: float = 120.0):
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise BackendError(f"mediapipe is not installed ({exc}); pip install mediapipe==0.10.21") from None
        check_complexity(complexity)
        self._mp_pose = mp.solutions.pose
        self.version = f"mediapipe-{mp.__version__}-c{complexity}"
        self.complexity = complexity
        self.min_detection_confidence = min_detection_confidence
        self.max_streams, self.idle_s = max_streams, idle_s
        self._trackers: OrderedDict[str | None, tuple[object, float]] = OrderedDict()

    def _tracker(self, stream: str | None):
        now = time.monotonic()
        entry = self._trackers.pop(stream, None)
        if entry is None:
            entry = (self._mp_pose.Pose(
                static_image_mode=stream is None, model_complexity=self.complexity,
                min_detection_confidence=self.min_detection_confidence, min_tracking_confidence=0.5,
            ), now)
        self._trackers[stream] = (entry[0], now)
        while len(self._trackers) > self.max_streams or (
            self._trackers and next(iter(self._trackers.values()))[1] < now - self.idle_s
        ):
            _, (old, _) = self._trackers.popitem(last=False)
            old.close()
        return entry[0]

    def infer(self, images: Sequence[np.ndarray], streams: Sequence[str | None]) -> list[list[Person]]:
        out: list[list[Person]] = []
        for image, stream in zip(images, streams):
            h, w = image.shape[:2]
            fresh = stream not in self._trackers
            with native_stderr_silenced(fresh):  # a new graph's start-up notes (see below)
                result = self._tracker(stream).process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if result.pose_landmarks is None:
                out.append([])
                continue
            lm = result.pose_landmarks.landmark
            kps = np.array(
                [[lm[i].x * w, lm[i].y * h, min(max(lm[i].visibility, 0.0), 1.0)] for i in BLAZEPOSE_TO_COCO],
                dtype=np.float32,
            )
            out.append([Person.from_keypoints(kps, float(kps[:, 2].mean()))])
        return out

    def end_stream(self, stream: str) -> None:
        entry = self._trackers.pop(stream, None)
        if entry is not None:
            entry[0].close()

    def close(self) -> None:
        for tracker, _ in self._trackers.values():
            tracker.close()
        self._trackers.clear()
