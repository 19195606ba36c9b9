"""Scoring quality on the bundled clips: the reference is pose2sim_single_cam01.mp4; every variant is
extracted with BlazePose and scored with the same code as `rehab score` and the live processor.
Prints one JSON object: the table (with the old service's frame-by-frame cosine as ``baseline``), the
separation and which targets are met. ``./dev bench scoring_quality`` runs this too, with UI-PRMD.

    ./dev bench scoring_eval            (about two minutes on 2 cores)
"""
from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.uiprmd import cosine_baseline  # noqa: E402
from benchmarks.variants import build  # noqa: E402
from edge.backends import create_backend  # noqa: E402
from edge.extract import extract  # noqa: E402
from rehab.reference import Reference  # noqa: E402
from rehab.scoring import score_attempt  # noqa: E402
from rehab.scoring.pose import to_array  # noqa: E402
from rehab.settings import REPO_ROOT, Settings  # noqa: E402


def evaluate(data: Path, workdir: Path, min_interval_ms: int) -> dict:
    backend = create_backend("blazepose")
    guide = list(extract(data / "pose2sim_single_cam01.mp4", backend))
    ref = Reference("guide", "guide", 60.0, guide[0].width, guide[0].height, backend.name, backend.version,
                    "0" * 64, [f.keypoints for f in guide])
    guide_kps = to_array([f.keypoints for f in guide])  # (the old service's cosine compares raw coordinates)
    rows = []
    for name, (path, expect) in build(data, workdir).items():
        t0 = time.perf_counter()
        frames = list(extract(path, backend))
        # extract stamps frames from the wall clock, and which frames start a min-interval slot depends
        # on the clock's phase: from 0, every run scores the same windows (the table is reproducible)
        frames = [dataclasses.replace(f, capture_ts_ms=f.capture_ts_ms - frames[0].capture_ts_ms) for f in frames]
        result = score_attempt(ref, frames, min_interval_ms=min_interval_ms)
        rows.append({"variant": name, "expect": expect, "similarity": result["similarity"], "reps": result["reps"],
                     "baseline": round(cosine_baseline(guide_kps, to_array([f.keypoints for f in frames])), 4),
                     "frames": result["frames"], "frames_with_subject": result["frames_with_subject"],
                     "seconds": round(time.perf_counter() - t0, 1)})
    backend.close()
    singles = [r for r in rows if r["expect"] == "same" and "three" not in r["variant"]]  # one repetition each
    pos = [r["similarity"] for r in singles]
    neg = [r["similarity"] for r in rows if r["expect"] == "different"]
    other = [r["similarity"] for r in rows if r["expect"] == "another movement"]
    reps = {r["variant"]: r["reps"] for r in rows}
    return {
        "reference": "pose2sim_single_cam01.mp4", "backend": "blazepose", "scorer_min_interval_ms": min_interval_ms,
        "table": rows,
        "lowest_positive": min(pos), "highest_negative": max(neg), "separation": round(min(pos) - max(neg), 4),
        "highest_another_movement": max(other),
        "targets": {
            "positives_ge_0.75": min(pos) >= 0.75,
            "negatives_le_0.35": max(neg) <= 0.35,
            "separation_ge_0.3": min(pos) - max(neg) >= 0.3,
            "three_times_counts_3": reps["cam02 three times"] == 3,
            # one repetition, however it was filmed and at whatever pace (x1.6 counted 0 before limbdtw-3.4.0)
            "each_single_repetition_counts_1": all(r["reps"] == 1 for r in singles),
            "frozen_counts_0": reps["cam02 frozen frame"] == 0,
            "walking_counts_0": reps["walking (vtest)"] == 0,
            "another_movement_le_0.35": max(other) <= 0.35,  # (issue 10's; not met: docs/scoring.md)
        },
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        report = evaluate(REPO_ROOT / "data", Path(tmp), Settings.from_env().processor_min_interval_ms)
    print(json.dumps(report, indent=2))
