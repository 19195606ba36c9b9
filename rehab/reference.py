"""A guide recording: the keypoint sequence a session is scored against."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from rehab.records import Keypoints, MessageError, validate_keypoints

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip()).strip("-.")[:64]
    if not s or not _ID.match(s):
        raise ValueError(f"cannot make an id from name {name!r}")
    return s


@dataclass(frozen=True)
class Reference:
    id: str
    name: str
    fps: float
    width: int
    height: int
    model: str
    model_version: str
    source_sha256: str
    frames: list[Keypoints | None] = field(repr=False)
    exercise_id: str | None = None

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"reference id {self.id!r} must be 1-64 letters, digits, '_', '.', '-'")
        if not self.fps > 0:
            raise ValueError("reference fps must be positive")
        if not self.frames:
            raise ValueError("a reference needs at least one frame")
        if sum(f is not None for f in self.frames) < 2:
            raise ValueError("the reference video shows a person in fewer than 2 frames: nothing to compare with")
        for f in self.frames:
            if f is not None:
                try:
                    validate_keypoints(f, self.width, self.height)
                except MessageError as exc:
                    raise ValueError(f"reference keypoints invalid: {exc}") from None

    def frames_json(self) -> str:
        return json.dumps(self.frames, separators=(",", ":"))
