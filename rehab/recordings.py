"""Keypoint files: what ``rehab extract`` writes, read back wherever a video is taken (``rehab score``,
``rehab reference add``), so analysts score recordings without running a pose model again.

Two layouts are read, told apart by their content, not their name:

- JSON Lines (``rehab extract --jsonl``): one ``keypoint_frame.v1`` object per line;
- one JSON document (``rehab extract``): ``{"video": ..., "fps": ..., "frames": [keypoint frames]}``.

A frame's ``people`` (``--all-people``) is ignored: the frame's own ``keypoints`` are the patient's.
The frame rate is the document's ``fps``, or for JSON Lines the frames over the span of ``capture_ts_ms``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rehab.records import KeypointFrame, MessageError
from rehab.reference import Reference, Take, slug

MAX_FRAMES = 200_000  # about 2 hours at 30 frames/s


class KeypointFileError(ValueError):
    """A file that looks like keypoints but is not a valid keypoint file (the message says where)."""


def is_keypoint_file(path: str | Path) -> bool:
    """True for a JSON or JSON Lines file (its first non-blank byte opens an object): a video container
    never starts that way."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    return head[:1] == b"{"


def _frame(obj, where: str) -> KeypointFrame:
    if not isinstance(obj, dict):
        raise KeypointFileError(f"{where}: not a keypoint frame object")
    obj = {k: v for k, v in obj.items() if k != "people"}
    try:
        return KeypointFrame.from_json(json.dumps(obj))
    except MessageError as exc:
        raise KeypointFileError(f"{where}: {exc}") from None


def read_keypoints(path: str | Path) -> tuple[list[KeypointFrame], float]:
    """The frames of a keypoint file, in order, and its frame rate."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="strict")
    fps = None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "frames" in doc:
        if not isinstance(doc["frames"], list):
            raise KeypointFileError(f"{path}: 'frames' must be a list")
        frames = [_frame(f, f"{path} frame {i}") for i, f in enumerate(doc["frames"][:MAX_FRAMES + 1])]
        fps = doc.get("fps")
        if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps <= 1000):
            raise KeypointFileError(f"{path}: fps must be a number in (0, 1000]")
    else:
        frames = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise KeypointFileError(f"{path} line {n}: not JSON ({exc.msg})") from None
            frames.append(_frame(obj, f"{path} line {n}"))
            if len(frames) > MAX_FRAMES:
                break
    if not frames:
        raise KeypointFileError(f"{path}: no keypoint frames")
    if len(frames) > MAX_FRAMES:
        raise KeypointFileError(f"{path}: more than {MAX_FRAMES} frames")
    if any(b.capture_ts_ms < a.capture_ts_ms for a, b in zip(frames, frames[1:])):
        raise KeypointFileError(f"{path}: capture_ts_ms must not go backwards")
    if fps is None:  # frames over the span (whole-ms stamps of a 30 Hz clock step 33, 33, 34 ms)
        span = frames[-1].capture_ts_ms - frames[0].capture_ts_ms
        if span <= 0:
            raise KeypointFileError(f"{path}: cannot tell the frame rate (fewer than 2 distinct capture times)")
        fps = 1000.0 * (len(frames) - 1) / span
    return frames, float(fps)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (a guide records the file it came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def take_from_keypoints(path: str | Path, label: str | None = None) -> Take:
    frames, fps = read_keypoints(path)
    return Take(fps, frames[0].width, frames[0].height, [f.keypoints for f in frames], label)


def reference_from_keypoints(path: str | Path, name: str, ref_id: str | None = None) -> Reference:
    """A guide's first take from a keypoint file (raises ValueError when nobody is in it)."""
    frames, fps = read_keypoints(path)
    first = frames[0]
    return Reference(ref_id or slug(name), name, fps, first.width, first.height, first.model, first.model_version,
                     file_sha256(path), [f.keypoints for f in frames])
