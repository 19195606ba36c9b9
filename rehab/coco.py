"""The COCO-17 keypoint layout every backend produces, and the geometry names built on it."""
from __future__ import annotations

NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
N_KEYPOINTS = len(NAMES)
INDEX = {name: i for i, name in enumerate(NAMES)}

LEFT_SHOULDER, RIGHT_SHOULDER = INDEX["left_shoulder"], INDEX["right_shoulder"]
LEFT_HIP, RIGHT_HIP = INDEX["left_hip"], INDEX["right_hip"]

# Index permutation that swaps left and right: used for mirror matching.
MIRROR: tuple[int, ...] = tuple(
    INDEX[n.replace("left_", "@").replace("right_", "left_").replace("@", "right_")] for n in NAMES
)

# Limbs as (parent, child) joints; a limb's direction is child - parent.
LIMBS: tuple[tuple[str, str], ...] = (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
)
LIMB_INDEX: tuple[tuple[int, int], ...] = tuple((INDEX[a], INDEX[b]) for a, b in LIMBS)
