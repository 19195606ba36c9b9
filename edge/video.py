"""Reading video files and images, with clear errors for what users actually hand us."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
MAX_FILE_BYTES = 2 * 1024**3
MAX_PIXELS = 4096 * 4096
MAX_FRAMES = 100_000


class VideoError(ValueError):
    pass


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    fps: float
    width: int
    height: int
    frame_count: int  # as the container claims; may be 0 or wrong


def probe(path: str | Path) -> VideoInfo:
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such file")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"{p}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise VideoError(f"{p}: {size / 1e9:.1f} GB is larger than the {MAX_FILE_BYTES / 1e9:.0f} GB limit")
    if p.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(p))
        if image is None:
            raise VideoError(f"{p}: not a readable image")
        return VideoInfo(p, 1.0, image.shape[1], image.shape[0], 1)
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoError(f"{p}: not a video OpenCV can read (corrupt or unsupported format)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise VideoError(f"{p}: the video has no readable picture")
    if w * h > MAX_PIXELS:
        raise VideoError(f"{p}: {w}x{h} is larger than the {MAX_PIXELS} pixel limit")
    if not 0 < fps <= 240:
        fps = 30.0  # containers without a rate: assume a camera's
    return VideoInfo(p, fps, w, h, n)


def frames(path: str | Path, max_side: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video (or the one frame of an image), downscaled so the long side <= max_side."""
    info = probe(path)
    if info.path.suffix.lower() in IMAGE_SUFFIXES:
        yield resize_max_side(cv2.imread(str(info.path)), max_side)
        return
    cap = cv2.VideoCapture(str(info.path))
    count = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            count += 1
            if count > MAX_FRAMES:
                raise VideoError(f"{info.path}: more than {MAX_FRAMES} frames; cut the video shorter")
            yield resize_max_side(frame, max_side)
    finally:
        cap.release()
    if count == 0:
        raise VideoError(f"{info.path}: no frame could be decoded (corrupt video?)")


def resize_max_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side:
        return image
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
