"""What a tracked person looks like: a colour histogram of their torso, to keep identities apart where
boxes overlap (a bystander crossing behind the patient). Hue and saturation only (lighting changes
brightness more than colour), over the quadrilateral between the shoulders and the hips."""
from __future__ import annotations

import cv2
import numpy as np

from rehab.coco import INDEX

TORSO = [INDEX[n] for n in ("left_shoulder", "right_shoulder", "right_hip", "left_hip")]
BINS = (16, 8)


def torso_histogram(image: np.ndarray, keypoints: np.ndarray, min_conf: float = 0.3) -> np.ndarray | None:
    """A normalised hue-saturation histogram of the torso, or None when the torso is not seen."""
    pts = keypoints[TORSO]
    if (pts[:, 2] < min_conf).any():
        return None
    h, w = image.shape[:2]
    poly = np.round(pts[:, :2]).astype(np.int32)
    x1, y1 = np.clip(poly.min(axis=0), 0, [w - 1, h - 1])
    x2, y2 = np.clip(poly.max(axis=0) + 1, 1, [w, h])
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    mask = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillConvexPoly(mask, poly - [x1, y1], 255)
    if cv2.countNonZero(mask) < 16:
        return None
    hsv = cv2.cvtColor(image[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], mask, list(BINS), [0, 180, 0, 256]).ravel()
    return hist / max(hist.sum(), 1e-9)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance: 0 the same colours, 1 nothing in common."""
    return float(np.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(a * b)))))
