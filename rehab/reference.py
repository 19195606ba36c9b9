"""A guide: the keypoint sequence a session is scored against (its first correct take), optionally
with more correct takes (their natural variation is the tolerance) and recordings of named mistakes."""
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


def _check_frames(frames: list, width: int, height: int, what: str) -> None:
    if not frames:
        raise ValueError(f"{what} needs at least one frame")
    if sum(f is not None for f in frames) < 2:
        raise ValueError(f"{what} shows a person in fewer than 2 frames: nothing to compare with")
    for f in frames:
        if f is not None:
            try:
                validate_keypoints(f, width, height)
            except MessageError as exc:
                raise ValueError(f"{what} keypoints invalid: {exc}") from None


MAX_LABEL = 128
MAX_TAKES = 16  # correct takes and mistakes together, besides the first take
TOO_MANY_TAKES = f"a guide holds at most {MAX_TAKES} takes and mistakes besides the first take"


def check_label(label: str) -> None:
    """A mistake's name: 1-MAX_LABEL printable characters (ValueError otherwise)."""
    if not (0 < len(label.strip()) <= MAX_LABEL and label.isprintable()):
        raise ValueError(f"a mistake's label must be 1-{MAX_LABEL} printable characters")


@dataclass(frozen=True)
class Take:
    """Another recording of the exercise: done right (``label`` None) or a named mistake ("knees cave in")."""

    fps: float
    width: int
    height: int
    frames: list[Keypoints | None] = field(repr=False)
    label: str | None = None

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError("a take's fps must be positive")
        if self.label is not None:
            check_label(self.label)
        _check_frames(self.frames, self.width, self.height, f"the take {self.label or '(correct)'!r}")

    def to_dict(self) -> dict:
        return {"label": self.label, "fps": self.fps, "width": self.width, "height": self.height, "frames": self.frames}


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
    takes: tuple[Take, ...] = ()  # more correct takes and named mistakes (``Take.label``; a label may
    # come once per recording of that mistake), in order

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"reference id {self.id!r} must be 1-64 letters, digits, '_', '.', '-'")
        if not self.fps > 0:
            raise ValueError("reference fps must be positive")
        _check_frames(self.frames, self.width, self.height, "the reference video")
        if len(self.takes) > MAX_TAKES:
            raise ValueError(TOO_MANY_TAKES)

    @property
    def more_takes(self) -> list[Take]:
        """The correct takes besides the first one (``frames``)."""
        return [t for t in self.takes if t.label is None]

    @property
    def mistakes(self) -> list[Take]:
        return [t for t in self.takes if t.label is not None]

    def summary(self) -> dict:
        """How many correct takes the guide holds (the first one included) and its mistakes' labels."""
        return {"correct_takes": 1 + len(self.more_takes), "mistakes": sorted({t.label for t in self.mistakes})}

    def as_take(self, label: str | None = None) -> Take:
        """This recording (its first take) as another guide's take."""
        return Take(self.fps, self.width, self.height, self.frames, label)

    def frames_json(self) -> str:
        return json.dumps(self.frames, separators=(",", ":"))
