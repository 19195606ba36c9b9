"""A whole recording scored offline (``rehab score``, the gateway's score route, the evaluations): the
live scorer run over it, summarised with its verdict. Same keypoints, same scores as live."""
from __future__ import annotations

import numpy as np

from rehab.records import KeypointFrame, Score
from rehab.reference import Reference
from rehab.scoring.live import LiveScorer
from rehab.scoring.scorer import EMPTY, GOOD, SCORER_VERSION, ReferenceModel


def replay_scores(scorer: LiveScorer, frames: list[KeypointFrame]) -> list[Score]:
    """Every score the live scorer gives for these frames, the final pending one flushed."""
    scores = [s for f in frames if (s := scorer.update(f, score_ts_ms=0)) is not None]
    last = scorer.flush(score_ts_ms=0)
    return scores + ([last] if last is not None else [])


NOT_THE_EXERCISE = 0.35  # below this the movement is not the guide's (frozen, walking, nobody: docs/scoring.md)


def verdict(similarity: float) -> str:
    """``good`` (>= GOOD: a physiotherapist would accept it, as calibrated in docs/scoring.md),
    ``not the exercise`` (< NOT_THE_EXERCISE) or ``needs work``."""
    if similarity >= GOOD:
        return "good"
    return "not the exercise" if similarity < NOT_THE_EXERCISE else "needs work"


def summarize(scores: list[Score], reference_id: str, frames: list[KeypointFrame]) -> dict:
    last = scores[-1] if scores else None
    phases = {round(s.phase, 1) for s in scores if s.similarity > 0}
    joints: dict[str, list[float]] = {}
    for s in scores:
        for k, v in s.joints.items():
            joints.setdefault(k, []).append(v)
    similarity = last.session_similarity if last else 0.0
    return {
        "similarity": similarity,
        "verdict": verdict(similarity),
        "thresholds": {"good": GOOD, "not_the_exercise": NOT_THE_EXERCISE},
        "reps": last.reps if last else 0,
        "windows": len(scores),
        "phase_coverage": round(len(phases) / 11, 3),
        "joints": {k: round(float(np.mean(v)), 4) for k, v in joints.items()},
        "corrections": last.corrections if last else EMPTY.corrections,
        "mistake": next((c["mistake"] for c in (last.corrections if last else []) if "mistake" in c), None),
        "scorer_version": SCORER_VERSION,
        "reference_id": reference_id,
        "frames": len(frames),
        "frames_with_subject": sum(f.keypoints is not None for f in frames),
    }


def score_attempt(ref: Reference, frames: list[KeypointFrame], mirror_mode: str = "auto",
                  min_interval_ms: int = 0, model: ReferenceModel | None = None) -> dict:
    """Offline: the live scorer run over a whole recording. ``similarity`` is the session similarity
    (the mean of the window scores, weighted by ``session_weight``), which is what the live pipeline
    reports last for the same frames.
    ``model``: ``ReferenceModel.build(ref)`` when the caller has it (scoring many attempts)."""
    scorer = LiveScorer(model or ReferenceModel.build(ref), frames[0].session_id if frames else "offline",
                        mirror_mode=mirror_mode, min_interval_ms=min_interval_ms)
    return summarize(replay_scores(scorer, frames), ref.id, frames)
