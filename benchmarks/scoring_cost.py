"""The processor's scoring path alone, printed as JSON: ``LiveScorer`` + ``score_jobs`` over SESSIONS
sessions x 300 UI-PRMD frames (one correct deep-squat sequence, 30 fps) at the processor's 100 ms
interval, in this process, no Kafka. For "the new scorer costs at most 20 % more" (issue 10), run it
on two trees alternately in one sitting and compare:

    git worktree add /tmp/old-tree REV
    for i in 1 2 3; do ./dev bench scoring_cost --tree /tmp/old-tree; ./dev bench scoring_cost; done
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the repository tree whose scorer to measure (default: this one)")
    p.add_argument("--sessions", type=int, default=50)
    args = p.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    import numpy as np

    from benchmarks.scoring_quality import frames_of, reference_of
    from benchmarks.uiprmd import guide_of, load
    from rehab.scoring import SCORER_VERSION, LiveScorer, ReferenceModel, score_jobs

    reps = load("front")
    ref = reference_of(guide_of(reps, 1, 1))
    seq = np.concatenate([r.keypoints for r in reps if r.movement == 1 and r.subject == 2][:10])[:300]
    frames = frames_of(seq, 30.0, 640, 480)

    def run() -> tuple[float, int]:
        model = ReferenceModel.build(ref)
        scorers = [LiveScorer(model, f"s{k}", min_interval_ms=100) for k in range(args.sessions)]
        feeds = [[dataclasses.replace(f, session_id=f"s{k}") for f in frames] for k in range(args.sessions)]
        t0, made = time.perf_counter(), 0
        for i in range(len(frames)):
            jobs = [sc.job() for sc, feed in zip(scorers, feeds) if sc.add(feed[i])]
            made += len(score_jobs(jobs, score_ts_ms=0))
        return args.sessions * len(frames) / (time.perf_counter() - t0), made

    run()  # compiles the numba kernels (cached) and warms up
    rate, made = run()
    print(json.dumps({"tree": str(args.tree), "scorer_version": SCORER_VERSION, "sessions": args.sessions,
                      "frames": args.sessions * len(frames), "scores": made, "frames_per_s": round(rate)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
