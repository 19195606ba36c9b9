"""Which detected person is the patient. Policy (walking skeleton; the edge issue deepens it):
lock on the most prominent person (box area x detection score); while locked, follow the person whose
box overlaps the last one most (IoU >= ``min_iou``); when nobody overlaps for ``lost_after`` frames,
report nobody, then re-acquire."""
from __future__ import annotations

from dataclasses import dataclass, field

from edge.backends.base import Person


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _prominence(p: Person) -> float:
    return max(0.0, p.box[2] - p.box[0]) * max(0.0, p.box[3] - p.box[1]) * p.score


@dataclass
class SubjectTracker:
    min_iou: float = 0.2
    lost_after: int = 5
    _box: tuple[float, ...] | None = field(default=None, init=False)
    _missed: int = field(default=0, init=False)

    def choose(self, people: list[Person]) -> Person | None:
        if self._box is not None:
            best = max(people, key=lambda p: iou(p.box, self._box), default=None)
            if best is not None and iou(best.box, self._box) >= self.min_iou:
                self._box, self._missed = best.box, 0
                return best
            self._missed += 1
            if self._missed < self.lost_after:
                return None  # the patient is briefly out of view: nobody rather than someone else
            self._box = None
        if not people:
            return None
        chosen = max(people, key=_prominence)
        self._box, self._missed = chosen.box, 0
        return chosen
