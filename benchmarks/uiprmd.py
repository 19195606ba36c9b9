"""UI-PRMD loading and the cross-subject protocol shared by the scoring evaluation and its tests.

Each line of ``../shared/data/ui-prmd/uiprmd_{front,side}.jsonl.gz`` is one repetition (COCO-17 pixels
as a camera in front of / beside the subject sees them). The protocol: for every movement and every
reference subject, the guide is that subject's first correct repetition; the attempts are the other
subjects' repetitions, correct and incorrect. A score tuned on the same people it is judged on proves
nothing, so every figure here compares a guide with *other* people.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("REHAB_UIPRMD_DIR", ROOT / "data" / "ui-prmd"))


@dataclass(frozen=True)
class Rep:
    movement: int
    name: str
    subject: int
    repetition: int
    correct: bool
    view: str
    fps: float
    width: int
    height: int
    keypoints: np.ndarray  # (T, 17, 3)


def load(view: str = "front", folder: Path = DATA) -> list[Rep]:
    path = folder / f"uiprmd_{view}.jsonl.gz"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (UI-PRMD keypoints; see data/README.md)")
    out = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            r = json.loads(line)
            out.append(Rep(r["movement"], r["movement_name"], r["subject"], r["repetition"], r["correct"], r["view"],
                           r["fps"], r["width"], r["height"], np.asarray(r["keypoints"], dtype=np.float64)))
    return out


def guide_of(reps: list[Rep], movement: int, subject: int, take: int = 0) -> Rep:
    """The subject's ``take``-th correct repetition of the movement (by repetition number)."""
    mine = sorted((r for r in reps if r.movement == movement and r.subject == subject and r.correct),
                  key=lambda r: r.repetition)
    return mine[take]


def auc(pos: list[float], neg: list[float]) -> float:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney U statistic)."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    if not len(p) or not len(n):
        return float("nan")
    greater = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return float(greater / (len(p) * len(n)))


def cosine_baseline(ref_kps: np.ndarray, kps: np.ndarray) -> float:
    """The old service's way (the baseline every evaluation prints beside the scorer): flatten raw pixel
    coordinates frame by frame (by index, (T, 17, 2+) arrays; nobody seen = zeros), cosine, mean."""
    n = min(len(ref_kps), len(kps))
    if n == 0:
        return 0.0
    a = np.asarray(ref_kps, float)[:n, :, :2].reshape(n, -1)
    b = np.asarray(kps, float)[:n, :, :2].reshape(n, -1)
    cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-9)
    return float(np.clip(cos, 0, 1).mean())
