"""Does the score mean what it says on people it was never tuned on? Issue 10's evaluation: one
command, JSON out, every target printed with its value and whether it is met (``targets``).

    ./dev bench scoring_quality            (~11-17 minutes on 2 cores: two UI-PRMD passes and the clips)
    ./dev bench scoring_quality --with-mistakes 0 --no-clips --views front    (one pass, ~2 minutes)

UI-PRMD (``benchmarks/uiprmd.py``), cross-subject: for each movement, each of the five subjects' first
correct repetition is the guide in turn, and the *other four* subjects' 20 repetitions (10 correct, 10
incorrect) are the attempts. The scorer is the product's (``rehab.scoring.score_attempt``, the live
scorer over the whole recording at the processor's 100 ms interval), so what is printed is what a
patient would see as the session similarity. Reported per view and movement: AUC (a correct
repetition scores above an incorrect one), the share of correct repetitions judged ``good`` (>= 0.75)
and of incorrect ones not judged ``good``; and the same summary for the old service's way
(frame-by-frame cosine of raw coordinates, ``baseline_old_service``) in the same run. A second pass
(``with_recorded_mistakes``) gives every guide the reference subject's first 10 incorrect repetitions
as a recorded mistake; ``clips`` is ``benchmarks/scoring_eval.py`` (the bundled videos: the same
exercise from another camera, slower, faster, zoomed out, mirrored, with a moving bystander; a frozen
pose, walking, an empty scene, another movement), each clip with the old service's cosine too.

Repetition counting: each subject's 10 correct repetitions of a movement played back to back (one
recording, the clock running on), scored against another subject's guide; the count should be 10. The
same subject holding their first pose as long, and doing each repetition at half its amplitude, should
count 0 (``repetitions.frozen`` / ``half_amplitude``: the share counted 0 and the share not judged good).
The back-to-back recording is also played 1.6x faster and 0.6x as fast (``back_to_back_faster`` /
``back_to_back_slower``: reported, no target).

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

from benchmarks.uiprmd import Rep, auc, cosine_baseline, guide_of, load  # noqa: E402
from rehab.records import KeypointFrame  # noqa: E402
from rehab.reference import Reference, Take  # noqa: E402
from rehab.scoring import ReferenceModel, score_attempt  # noqa: E402

GOOD = 0.75
SPEEDS = (1.6, 0.6)  # the back-to-back sequences also played at these speeds (the clips' faster and slower)
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


def _score_guide(args) -> dict:
    """One guide's attempts; with ``sequences``, also the back-to-back, frozen and half-amplitude
    sequences of the repetition count."""
    view, movement, subject, baseline, n_takes, n_mistakes, sequences = args
    reps = _REPS[view]
    guide = guide_of(reps, movement, subject)
    own = sorted((r for r in reps if r.movement == movement and r.subject == subject), key=lambda r: r.repetition)
    ref = reference_of(guide, [r for r in own if r.correct][1:n_takes], [r for r in own if not r.correct][:n_mistakes])
    model = ReferenceModel.build(ref)  # (once per guide, not once per attempt)
    out = {"view": view, "movement": movement, "guide_subject": subject, "attempts": []}
    for rep in reps:
        if rep.movement != movement or rep.subject == subject:
            continue
        result = score_attempt(ref, frames_of(rep.keypoints, rep.fps, rep.width, rep.height),
                               min_interval_ms=MIN_INTERVAL_MS, model=model)
        row = {"subject": rep.subject, "repetition": rep.repetition, "correct": rep.correct,
               "similarity": result["similarity"], "mistake": result["mistake"]}
        if baseline:
            row["baseline"] = cosine_baseline(guide.keypoints, rep.keypoints)
        out["attempts"].append(row)
    if not sequences:
        return out
    # back to back: the next subject's 10 correct repetitions in one recording
    other = subject % 5 + 1
    mine = sorted((r for r in reps if r.movement == movement and r.subject == other and r.correct),
                  key=lambda r: r.repetition)
    if mine:
        seq = np.concatenate([r.keypoints for r in mine])
        result = score_attempt(ref, frames_of(seq, mine[0].fps, mine[0].width, mine[0].height),
                               min_interval_ms=MIN_INTERVAL_MS, model=model)
        out["back_to_back"] = {"subject": other, "expected": len(mine), "counted": result["reps"]}
        # the same recording played faster and slower (the guide's pace is not the patient's): reported,
        # no target
        for name, speed in (("back_to_back_faster", SPEEDS[0]), ("back_to_back_slower", SPEEDS[1])):
            result = score_attempt(ref, frames_of(seq, mine[0].fps * speed, mine[0].width, mine[0].height),
                                   min_interval_ms=MIN_INTERVAL_MS, model=model)
            out[name] = {"speed": speed, "expected": len(mine), "counted": result["reps"]}
        # the same person holding their first pose as long, and doing each repetition at half its
        # amplitude (every keypoint halfway between the starting pose and where the repetition takes
        # it): neither is a repetition
        start = mine[0].keypoints[:1]
        frozen = np.repeat(start, len(seq), axis=0)
        half = np.concatenate([r.keypoints[:1] + 0.5 * (r.keypoints - r.keypoints[:1]) for r in mine])
        for name, kps in (("frozen", frozen), ("half_amplitude", half)):
            result = score_attempt(ref, frames_of(kps, mine[0].fps, mine[0].width, mine[0].height),
                                   min_interval_ms=MIN_INTERVAL_MS, model=model)
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


# Issue 10's targets (leave one subject out on UI-PRMD, one correct repetition as the guide; the clips)
TARGETS = {
    "mean_auc_one_take": (">=", 0.90),
    "lowest_movement_auc_one_take": (">=", 0.80),
    "correct_judged_good": (">=", 0.90),
    "incorrect_not_judged_good": (">=", 0.80),
    "mean_auc_with_recorded_mistakes": (">=", 0.95),
    "back_to_back_counted_exactly": (">=", 0.95),
    "frozen_counted_none": (">=", 1.0),
    "half_amplitude_counted_none": (">=", 1.0),
    "clips_same_exercise_lowest": (">=", 0.75),
    "clips_not_the_exercise_highest": ("<=", 0.35),
    "clips_another_movement_highest": ("<=", 0.35),
}


def targets(report: dict) -> dict:
    """Each of issue 10's targets this report measured: {name: {"value", "target", "met"}} (a value per
    view is met when every view meets it), and how many were met. A target the run did not measure (the
    clips skipped, a guide of several takes: issue 10's protocol is one take) is left out, never reported
    as met."""
    values: dict = {}
    if report.get("takes") == 1 and not report.get("mistakes") and "summary" in report:
        s = report["summary"]
        values["mean_auc_one_take"] = {v: s[v]["mean_auc"] for v in s}
        values["lowest_movement_auc_one_take"] = {v: s[v]["min_auc"] for v in s}
        values["correct_judged_good"] = {v: s[v]["correct_good"] for v in s}
        values["incorrect_not_judged_good"] = {v: s[v]["incorrect_not_good"] for v in s}
    with_mistakes = report.get("with_recorded_mistakes") or (report if report.get("mistakes") else None)
    if with_mistakes and with_mistakes.get("takes") == 1 and "summary" in with_mistakes:
        values["mean_auc_with_recorded_mistakes"] = {v: x["mean_auc"] for v, x in with_mistakes["summary"].items()}
    reps = report.get("repetitions") or {}
    if reps.get("counted_exactly") is not None:
        values["back_to_back_counted_exactly"] = reps["counted_exactly"]
        values["frozen_counted_none"] = reps["frozen"]["counted_none"]
        values["half_amplitude_counted_none"] = reps["half_amplitude"]["counted_none"]
    if "clips" in report:
        values["clips_same_exercise_lowest"] = report["clips"]["lowest_positive"]
        values["clips_not_the_exercise_highest"] = report["clips"]["highest_negative"]
        values["clips_another_movement_highest"] = report["clips"]["highest_another_movement"]
    out = {}
    for name, value in values.items():
        op, bound = TARGETS[name]
        got = list(value.values()) if isinstance(value, dict) else [value]
        met = all(v >= bound if op == ">=" else v <= bound for v in got)
        out[name] = {"value": value, "target": f"{op} {bound}", "met": bool(met)}
    return {"met": sum(t["met"] for t in out.values()), "of": len(out), "each": out}


def run_pass(views: list[str], movements: list[int], processes: int = 1, takes: int = 1, mistakes: int = 0,
             baseline: bool = False, sequences: bool = True, mp_context=None) -> list[dict]:
    """Every guide of the protocol scored against the other subjects' attempts (one job per view,
    movement and guide subject), in ``processes`` processes (1: in this one; ``mp_context``: how they
    are started, the platform's default if None); ``sequences``: the repetition count's sequences too."""
    jobs = [(v, m, s, baseline, takes, mistakes, sequences) for v in views for m in movements for s in range(1, 6)]
    if processes == 1:
        _init(views)
        return [_score_guide(job) for job in jobs]
    with ProcessPoolExecutor(processes, mp_context=mp_context, initializer=_init, initargs=(views,)) as pool:
        return list(pool.map(_score_guide, jobs))


def report_of(results: list[dict], takes: int, mistakes: int, baseline: bool) -> dict:
    out = {"protocol": f"UI-PRMD, guide = {takes} correct repetition(s) of one "
           f"subject and {mistakes} of their incorrect ones as a recorded mistake, attempts = the other four "
           "subjects' correct and incorrect repetitions", "takes": takes, "mistakes": mistakes,
           "good_threshold": GOOD, **summarise(results)}
    if baseline:
        out["baseline_old_service"] = summarise(results, "baseline")["summary"]
    if mistakes:  # how often the recorded mistake is named, for other people's attempts
        named = {c: [a["mistake"] is not None for r in results for a in r["attempts"] if a["correct"] == c]
                 for c in (True, False)}
        out["mistake_named"] = {"correct": round(float(np.mean(named[True])), 3),
                                "incorrect": round(float(np.mean(named[False])), 3)}
    b2b = [r["back_to_back"] for r in results if "back_to_back" in r]
    if not b2b:  # (a pass without the repetition count's sequences)
        return out
    out["repetitions"] = {"sequences": len(b2b), "counted_exactly": round(float(np.mean(
        [b["counted"] == b["expected"] for b in b2b])), 3),
        "mean_abs_error": round(float(np.mean([abs(b["counted"] - b["expected"]) for b in b2b])), 2)}
    for name in ("back_to_back_faster", "back_to_back_slower"):
        rows = [r[name] for r in results if name in r]
        errors = [x["counted"] - x["expected"] for x in rows]
        out["repetitions"][name] = {"sequences": len(rows), "speed": rows[0]["speed"] if rows else None,
                                    "counted_exactly": round(float(np.mean([e == 0 for e in errors])), 3),
                                    "undercounted": round(float(np.mean([e < 0 for e in errors])), 3),
                                    "mean_abs_error": round(float(np.mean(np.abs(errors))), 2)}
    for name in ("frozen", "half_amplitude"):
        rows = [r[name] for r in results if name in r]
        out["repetitions"][name] = {"sequences": len(rows), "counted_none": round(float(np.mean(
            [x["counted"] == 0 for x in rows])), 3), "not_good": round(float(np.mean([x["verdict"] != "good" for x in rows])), 3)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", default="front,side")
    p.add_argument("--movements", default="1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="the old service's frame-by-frame cosine in the same run (default: on)")
    p.add_argument("--raw", type=Path, help="write every attempt's score here (JSON; the first pass)")
    p.add_argument("--takes", type=int, default=1, help="correct takes in each guide (the reference subject's first N)")
    p.add_argument("--mistakes", type=int, default=0,
                   help="the reference subject's first N incorrect repetitions as the guide's recorded mistake")
    p.add_argument("--with-mistakes", type=int, default=10, metavar="N",
                   help="a second pass, the same guides also holding the reference subject's first N incorrect "
                        "repetitions as a recorded mistake (issue 10's 0.95 target); 0 skips it")
    p.add_argument("--clips", action=argparse.BooleanOptionalAction, default=True,
                   help="also the bundled video clips (benchmarks/scoring_eval.py; default: on)")
    args = p.parse_args(argv)
    views, movements = args.views.split(","), [int(m) for m in args.movements.split(",")]
    t0 = time.time()
    results = run_pass(views, movements, args.processes, args.takes, args.mistakes, args.baseline)
    from rehab.scoring import SCORER_VERSION

    out = {"scorer_version": SCORER_VERSION, **report_of(results, args.takes, args.mistakes, args.baseline)}
    if args.with_mistakes and not args.mistakes:
        # (this pass reports its AUC and how often the mistake is named: the repetition count's sequences
        # would be dropped, so they are not scored)
        second = report_of(run_pass(views, movements, args.processes, args.takes, args.with_mistakes, False,
                                    sequences=False), args.takes, args.with_mistakes, False)
        out["with_recorded_mistakes"] = {k: second[k] for k in ("protocol", "takes", "mistakes", "summary",
                                                               "mistake_named")}
    if args.clips:
        import tempfile

        from benchmarks.scoring_eval import evaluate
        from rehab.settings import REPO_ROOT, Settings

        with tempfile.TemporaryDirectory() as tmp:
            out["clips"] = evaluate(REPO_ROOT / "data", Path(tmp), Settings.from_env().processor_min_interval_ms)
    out["targets"] = targets(out)
    out["seconds"] = round(time.time() - t0, 1)
    if args.raw:
        args.raw.write_text(json.dumps(results))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
