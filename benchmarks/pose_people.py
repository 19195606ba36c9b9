"""Worker cost of the multi-person stage (issue 11), in one run on the same frames:

- ``bare``: MediaPipe's own single-person graph (``mp.solutions.pose``, what the worker ran before),
  one tracked stream, no subject policy;
- ``one_person``: the multi-person BlazePose stage and the subject policy on the same single-person clip;
- ``three_people``: the same on a composite with the patient and two bystanders (one moving her arms).

Prints JSON: frames/s of each (one thread, BlazePose full) and ``one_person / bare``.

    ./dev bench pose_people [--frames 200]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.variants import patient_with_near_bystander, standing, waving_bystander  # noqa: E402
from edge.backends import create_backend  # noqa: E402
from edge.subject import SubjectSelector  # noqa: E402
from edge.video import frames as read_frames  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


def three_people(patient: list[np.ndarray], data: Path) -> list[np.ndarray]:
    """Patient, a waving bystander nearer the camera, and a still one (the guide's first frame) beyond."""
    still = next(read_frames(data / "pose2sim_single_cam01.mp4", 640))
    two = patient_with_near_bystander(patient, waving_bystander(data))
    h = two[0].shape[0]
    third = standing(still, h, 0.7 * h)
    return [np.hstack([im, third]) for im in two]


def fps(step, images: list[np.ndarray]) -> float:
    for im in images[:10]:  # warm-up: model set-up and the first search are not steady state
        step(im, 0)
    t0 = time.perf_counter()
    for i, im in enumerate(images):
        step(im, i)
    return len(images) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    cam2 = list(read_frames(DATA / "pose2sim_single_cam02.mp4", 640))
    single = (cam2 * (args.frames // len(cam2) + 1))[: args.frames]
    crowd = three_people(single, DATA)

    bare = create_backend("blazepose_single")
    bare_fps = fps(lambda im, i: bare.infer([im], ["s"]), single)
    bare.close()

    people = create_backend("blazepose")
    result = {"bare_fps": round(bare_fps, 1)}
    for name, images in (("one_person", single), ("three_people", crowd)):
        selector = SubjectSelector(people, name)
        clock = iter(range(10**9))
        result[f"{name}_fps"] = round(fps(lambda im, i: selector.step(im, next(clock) * 1000 / 30), images), 1)
        result[f"{name}_people_seen"] = len(selector.tracks)
    result["one_person_vs_bare"] = round(result["one_person_fps"] / bare_fps, 2)
    result["frames"] = args.frames
    print(json.dumps(result))


if __name__ == "__main__":
    main()
