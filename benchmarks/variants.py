"""Builds variants of the bundled clips (never edits them): time-stretched, zoomed out, cropped,
mirrored, frozen, reversed, repeated, an empty scene, a bystander. Used by the scoring evaluation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.video import frames as read_frames, probe


def write(path: Path, images: list[np.ndarray], fps: float) -> Path:
    h, w = images[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not out.isOpened():
        raise RuntimeError("OpenCV cannot write mp4v video here")
    for im in images:
        out.write(im)
    out.release()
    return path


def retime(images: list[np.ndarray], speed: float) -> list[np.ndarray]:
    """The same movement ``speed`` times as fast, at the same frame rate."""
    n = max(2, round(len(images) / speed))
    return [images[min(len(images) - 1, int(k * speed))] for k in range(n)]


def zoom_out(image: np.ndarray, scale: float = 0.55) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image, 90)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def crop(image: np.ndarray, keep: float = 0.8) -> np.ndarray:
    h, w = image.shape[:2]
    ch, cw = round(h * keep), round(w * keep)
    y, x = (h - ch) // 2, (w - cw) // 2
    return image[y:y + ch, x:x + cw]


GREY = (90, 90, 90)


def standing(image: np.ndarray, canvas_h: int, height: float) -> np.ndarray:
    """``image`` scaled to ``height`` pixels high, standing on the floor of a ``canvas_h``-high grey strip."""
    scaled = cv2.resize(image, (round(image.shape[1] * height / image.shape[0]), round(height)))
    return cv2.copyMakeBorder(scaled, canvas_h - scaled.shape[0], 0, 0, 0, cv2.BORDER_CONSTANT, value=GREY)


def with_bystander(patient: np.ndarray, bystander: np.ndarray) -> np.ndarray:
    """The patient on the left at 60 %, a still bystander on the right at full height: bigger, nearer."""
    h = patient.shape[0]
    return np.hstack([standing(patient, h, 0.6 * h), standing(bystander, h, h)])


def build(data: Path, out: Path, max_side: int = 640) -> dict[str, tuple[Path, str]]:
    """{name: (video path, expectation)}; expectation is "same" (should score high), "different"
    (should score low: nobody doing anything like it), "another movement" (somebody moving, but not the
    guide's movement: should score low too, issue 10) or "report" (reported, no target)."""
    out.mkdir(parents=True, exist_ok=True)
    fps = probe(data / "pose2sim_single_cam02.mp4").fps
    cam2 = list(read_frames(data / "pose2sim_single_cam02.mp4", max_side))
    cam1 = list(read_frames(data / "pose2sim_single_cam01.mp4", max_side))
    empty = [cv2.resize(im[: im.shape[0] // 4], (im.shape[1], im.shape[0])) for im in cam1]  # ceiling only
    waving = waving_bystander(data, max_side)  # the second person of pose2sim_multi_cam04, moving her arms
    h = cam2[0].shape[0]
    return {
        "cam02 (other camera)": (data / "pose2sim_single_cam02.mp4", "same"),
        "cam02 slower x0.6": (write(out / "slow.mp4", retime(cam2, 0.6), fps), "same"),
        "cam02 faster x1.6": (write(out / "fast.mp4", retime(cam2, 1.6), fps), "same"),
        "cam02 zoomed out": (write(out / "zoomed_out.mp4", [zoom_out(im) for im in cam2], fps), "same"),
        "cam02 cropped": (write(out / "cropped.mp4", [crop(im) for im in cam2], fps), "same"),
        "cam02 mirrored": (write(out / "mirrored.mp4", [cv2.flip(im, 1) for im in cam2], fps), "same"),
        "cam02 three times": (write(out / "three_times.mp4", cam2 * 3, fps), "same"),
        "cam02 frozen frame": (write(out / "frozen.mp4", [cam2[50]] * len(cam2), fps), "different"),
        "walking (vtest)": (data / "opencv_vtest.avi", "different"),
        "empty scene": (write(out / "empty.mp4", empty, fps), "different"),
        "cam02 reversed": (write(out / "reversed.mp4", cam2[::-1], fps), "report"),
        "cam02 + bigger still bystander": (write(out / "bystander.mp4",
                                                [with_bystander(p, cam1[0]) for p in cam2], fps), "report"),
        "cam02 + nearer moving bystander": (write(out / "moving_bystander.mp4",
                                                 patient_with_near_bystander(cam2, waving), fps), "same"),
        "another movement (arms waving)": (write(out / "waving.mp4", [standing(im, h, 0.9 * h) for im in waving],
                                                 fps), "another movement"),
    }


def waving_bystander(data: Path, max_side: int = 640) -> list[np.ndarray]:
    """The second person of ``pose2sim_multi_cam04`` (standing behind, moving her arms), cut out
    and played forwards then backwards: a bystander who moves."""
    frames = [im[130:330, 185:335] for im in read_frames(data / "pose2sim_multi_cam04.mp4", max_side)]
    return frames + frames[::-1]


def patient_with_near_bystander(patient: list[np.ndarray], bystander: list[np.ndarray],
                                absent: range = range(0)) -> list[np.ndarray]:
    """The patient on the left at 60 % of the picture's height; a moving bystander on the right, nearer
    the camera (taller than the patient). Frames in ``absent``: the patient's side shows nobody (the
    patient left the picture)."""
    out = []
    for i, p in enumerate(patient):
        h = p.shape[0]
        left = standing(p, h, 0.6 * h)
        if i in absent:
            left[:] = GREY
        out.append(np.hstack([left, standing(bystander[i % len(bystander)], h, 0.8 * h)]))
    return out
