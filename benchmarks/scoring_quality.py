"""Does the score mean what it says on people it was never tuned on? One command, JSON out.

    ./dev bench scoring_quality [--views front,side] [--processes 2] [--baseline]

UI-PRMD (``benchmarks/uiprmd.py``), cross-subject: for each movement, each of the five subjects' first
correct repetition is the guide in turn, and the *other four* subjects' 20 repetitions (10 correct, 10
incorrect) are the attempts. The scorer is the product's (``rehab.scoring.score_attempt``, the live
scorer over the whole recording at the processor's 100 ms interval), so what is printed is what a
patient would see as the session similarity. Reported per view and movement: AUC (a correct
repetition scores above an incorrect one), the share of correct repetitions judged ``good`` (>= 0.75)
and of incorrect ones not judged ``good``; and the same summary for the old service's way
(frame-by-frame cosine of raw coordinates, ``--baseline``) in the same run.

Repetition counting: each subject's 10 correct repetitions of a movement played back to back (one
recording, the clock running on), scored against another subject's guide; the count should be 10. The
same subject holding their first pose as long, and doing each repetition at half its amplitude, should
count 0 (``repetitions.frozen`` / ``half_amplitude``: the share counted 0 and the share not judged good).

The score's constants were chosen on these subjects (docs/scoring.md), so the figures here are an
upper bound of what unseen people get; the held-out subjects and clips the team keeps outside the repo
are the real check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.uiprmd import Rep, auc, guide_of, load  # noqa: E402
from rehab.records import KeypointFrame  # noqa: E402
from rehab.reference import Reference, Take  # noqa: E402
from rehab.scoring import score_attempt  # noqa: E402

GOOD = 0.75
MIN_INTERVAL_MS = 100


def reference_of(rep: Rep, more: list[Rep] = (), mistakes: list[Rep] = ()) -> Reference:
    """The guide: ``rep`` as its first take, ``more`` correct takes, ``mistakes`` as recorded mistakes
    (UI-PRMD's incorrect executions have one label per movement: "incorrect")."""
    def take(r: Rep, label: str | None) -> Take:
        return Take(r.fps, r.width, r.height, [k.round(2).tolist() for k in r.keypoints], label)

    return Reference(f"m{rep.movement}-s{rep.subject}-r{rep.repetition}", rep.name, rep.fps, rep.width, rep.height,
                     "kinect-v2", "ui-prmd", "0" * 64, [k.round(2).tolist() for k in rep.keypoints],
                     takes=tuple(take(r, None) for r in more) + tuple(take(r, "incorrect") for r in mistakes))


def frames_of(keypoints: np.ndarray, fps: float, width: int, height: int, t0_ms: int = 0) -> list[KeypointFrame]:
    return [KeypointFrame("attempt", i, t0_ms + round(i * 1000 / fps), 0, 0, "kinect-v2", "ui-prmd", width, height,
                          k.round(2).tolist()) for i, k in enumerate(keypoints)]


def cosine_baseline(ref: Rep, rep: Rep) -> float:
    """The old service's way: flatten raw pixel coordinates frame by frame (by index), cosine, mean."""
    n = min(len(ref.keypoints), len(rep.keypoints))
    a = ref.keypoints[:n, :, :2].reshape(n, -1)
    b = rep.keypoints[:n, :, :2].reshape(n, -1)
    cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-9)
    return float(np.clip(cos, 0, 1).mean())


def _score_guide(args) -> dict:
    view, movement, subject, baseline, n_takes, n_mistakes = args
    reps = _REPS[view]
    guide = guide_of(reps, movement, subject)
    own = sorted((r for r in reps if r.movement == movement and r.subject == subject), key=lambda r: r.repetition)
    ref = reference_of(guide, [r for r in own if r.correct][1:n_takes], [r for r in own if not r.correct][:n_mistakes])
    out = {"view": view, "movement": movement, "guide_subject": subject, "attempts": []}
    for rep in reps:
        if rep.movement != movement or rep.subject == subject:
            continue
        result = score_attempt(ref, frames_of(rep.keypoints, rep.fps, rep.width, rep.height),
                               min_interval_ms=MIN_INTERVAL_MS)
        row = {"subject": rep.subject, "repetition": rep.repetition, "correct": rep.correct,
               "similarity": result["similarity"], "mistake": result["mistake"]}
        if baseline:
            row["baseline"] = cosine_baseline(guide, rep)
        out["attempts"].append(row)
    # back to back: the next subject's 10 correct repetitions in one recording
    other = subject % 5 + 1
    mine = sorted((r for r in reps if r.movement == movement and r.subject == other and r.correct),
                  key=lambda r: r.repetition)
    if mine:
        seq = np.concatenate([r.keypoints for r in mine])
        result = score_attempt(ref, frames_of(seq, mine[0].fps, mine[0].width, mine[0].height),
                               min_interval_ms=MIN_INTERVAL_MS)
        out["back_to_back"] = {"subject": other, "expected": len(mine), "counted": result["reps"]}
        # the same person holding their first pose as long, and doing each repetition at half its
        # amplitude (every keypoint halfway between the starting pose and where the repetition takes
        # it): neither is a repetition
        start = mine[0].keypoints[:1]
        frozen = np.repeat(start, len(seq), axis=0)
        half = np.concatenate([r.keypoints[:1] + 0.5 * (r.keypoints - r.keypoints[:1]) for r in mine])
        for name, kps in (("frozen", frozen), ("half_amplitude", half)):
            result = score_attempt(ref, frames_of(kps, mine[0].fps, mine[0].width, mine[0].height),
                                   min_interval_ms=MIN_INTERVAL_MS)
            out[name] = {"counted": result["reps"], "similarity": result["similarity"], "verdict": result["verdict"]}
    return out


_REPS: dict[str, list[Rep]] = {}


def _init(views: list[str]) -> None:
    for v in views:
        _REPS[v] = load(v)


def summarise(results: list[dict], key: str = "similarity") -> dict:
    per_movement: dict = {}
    for r in results:
        m = per_movement.setdefault((r["view"], r["movement"]), {"auc": [], "pos": [], "neg": []})
        pos = [a[key] for a in r["attempts"] if a["correct"]]
        neg = [a[key] for a in r["attempts"] if not a["correct"]]
        m["auc"].append(auc(pos, neg))
        m["pos"] += pos
        m["neg"] += neg
    table = {}
    for (view, movement), m in sorted(per_movement.items()):
        table.setdefault(view, {})[movement] = {
            "auc": round(float(np.mean(m["auc"])), 3),
            "correct_good": round(float(np.mean(np.array(m["pos"]) >= GOOD)), 3),
            "incorrect_not_good": round(float(np.mean(np.array(m["neg"]) < GOOD)), 3),
            "correct_median": round(float(np.median(m["pos"])), 3),
            "incorrect_median": round(float(np.median(m["neg"])), 3),
        }
    summary = {}
    for view, rows in table.items():
        summary[view] = {
            "mean_auc": round(float(np.mean([r["auc"] for r in rows.values()])), 3),
            "min_auc": round(float(min(r["auc"] for r in rows.values())), 3),
            "correct_good": round(float(np.mean([r["correct_good"] for r in rows.values()])), 3),
            "incorrect_not_good": round(float(np.mean([r["incorrect_not_good"] for r in rows.values()])), 3),
        }
    return {"summary": summary, "per_movement": table}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", default="front,side")
    p.add_argument("--movements", default="1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--baseline", action="store_true", help="also the old service's frame-by-frame cosine")
    p.add_argument("--raw", type=Path, help="write every attempt's score here (JSON)")
    p.add_argument("--takes", type=int, default=1, help="correct takes in each guide (the reference subject's first N)")
    p.add_argument("--mistakes", type=int, default=0,
                   help="the reference subject's first N incorrect repetitions as the guide's recorded mistake")
    args = p.parse_args(argv)
    views = args.views.split(",")
    jobs = [(v, m, s, args.baseline, args.takes, args.mistakes)
            for v in views for m in map(int, args.movements.split(",")) for s in range(1, 6)]
    t0 = time.time()
    with ProcessPoolExecutor(args.processes, initializer=_init, initargs=(views,)) as pool:
        results = list(pool.map(_score_guide, jobs))
    from rehab.scoring import SCORER_VERSION

    out = {"scorer_version": SCORER_VERSION, "protocol": f"UI-PRMD, guide = {args.takes} correct repetition(s) of one "
           f"subject and {args.mistakes} of their incorrect ones as a recorded mistake, attempts = the other four "
           "subjects' correct and incorrect repetitions", "takes": args.takes, "mistakes": args.mistakes,
           "good_threshold": GOOD,
           **summarise(results)}
    if args.baseline:
        out["baseline_old_service"] = summarise(results, "baseline")["summary"]
    if args.mistakes:  # how often the recorded mistake is named, for other people's attempts
        named = {c: [a["mistake"] is not None for r in results for a in r["attempts"] if a["correct"] == c]
                 for c in (True, False)}
        out["mistake_named"] = {"correct": round(float(np.mean(named[True])), 3),
                                "incorrect": round(float(np.mean(named[False])), 3)}
    b2b = [r["back_to_back"] for r in results if "back_to_back" in r]
    out["repetitions"] = {"sequences": len(b2b), "counted_exactly": round(float(np.mean(
        [b["counted"] == b["expected"] for b in b2b])), 3) if b2b else None,
        "mean_abs_error": round(float(np.mean([abs(b["counted"] - b["expected"]) for b in b2b])), 2) if b2b else None}
    for name in ("frozen", "half_amplitude"):
        rows = [r[name] for r in results if name in r]
        out["repetitions"][name] = {"sequences": len(rows), "counted_none": round(float(np.mean(
            [x["counted"] == 0 for x in rows])), 3), "not_good": round(float(np.mean([x["verdict"] != "good" for x in rows])), 3)}
    out["seconds"] = round(time.time() - t0, 1)
    if args.raw:
        args.raw.write_text(json.dumps(results))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
