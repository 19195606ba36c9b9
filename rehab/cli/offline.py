"""rehab extract, rehab score, rehab reference add|list: recorded videos, no live pipeline."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from rehab.settings import Settings


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["blazepose", "keypoint_rcnn"], default=None,
                   help="pose backend (default: REHAB_POSE_BACKEND or blazepose)")
    p.add_argument("--device", default=None, help="torch device for keypoint_rcnn (cpu, cuda)")
    p.add_argument("--weights", default=None, help="Keypoint R-CNN weights file for offline installs")
    p.add_argument("--max-side", type=int, default=640, help="downscale so the long side is at most this")
    p.add_argument("--complexity", type=int, choices=[0, 1, 2], default=None,
                   help="BlazePose model: 0 lite, 1 full (default), 2 heavy")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="Keypoint R-CNN person score threshold (default 0.85)")


def add_commands(sub) -> None:
    e = sub.add_parser("extract", help="keypoint frames of a video file or image")
    e.add_argument("video")
    e.add_argument("--jsonl", action="store_true", help="one KeypointFrame JSON per line (default: one JSON document)")
    e.add_argument("--all-people", action="store_true",
                   help="every person in view per frame too ('people': [{track, keypoints, box}]), for analysts")
    e.add_argument("--reference", help="the guide the patient performs (video file or stored id): picks the "
                                       "patient among several people by who performs it")
    _backend_args(e)
    e.set_defaults(func=run_extract)

    s = sub.add_parser("score", help="score a recorded attempt against a reference")
    s.add_argument("video")
    s.add_argument("--reference", required=True, help="a reference video file, or a stored reference id/name")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--mirror", choices=["auto", "off"], default="auto")
    _backend_args(s)
    s.set_defaults(func=run_score)

    rp = sub.add_parser("replay", help="re-score a stored session from the keypoints topic with the current scorer")
    rp.add_argument("--session", required=True)
    rp.add_argument("--since-ms", type=int, default=None, help="only frames captured at or after (epoch ms)")
    rp.add_argument("--until-ms", type=int, default=None, help="only frames captured at or before (epoch ms)")
    rp.add_argument("--csv", type=Path, default=None, help="write keypoints.csv and scores.csv into this folder")
    rp.add_argument("--parquet", type=Path, default=None,
                    help="write keypoints.parquet and scores.parquet into this folder")
    rp.add_argument("--plot", type=Path, default=None, help="write a score-over-time PNG with repetition marks")
    rp.set_defaults(func=run_replay)

    r = sub.add_parser("reference", help="register and list guide recordings")
    rsub = r.add_subparsers(dest="action", required=True)
    add = rsub.add_parser("add", help="extract a guide video's keypoints and store them in MySQL")
    add.add_argument("video")
    add.add_argument("--name", required=True)
    add.add_argument("--id", default=None, help="reference id (default: derived from the name)")
    _backend_args(add)
    add.set_defaults(func=run_reference_add)
    ls = rsub.add_parser("list")
    ls.set_defaults(func=run_reference_list)


def _backend(args):
    from edge.backends import backend_from_settings

    settings = Settings.from_env()
    overrides = {k: v for k, v in (("pose_backend", args.backend), ("pose_device", args.device),
                                   ("pose_weights", args.weights),
                                   ("pose_complexity", getattr(args, "complexity", None)),
                                   ("pose_score_threshold", getattr(args, "score_threshold", None))) if v not in (None, "")}
    return backend_from_settings(settings.with_(**overrides))


def _matcher(ref):
    """The guide as the subject policy's matcher (edge/subject.py): who performs it is the patient."""
    from edge.subject import reference_matcher
    from rehab.scoring import ReferenceModel

    return reference_matcher(ReferenceModel.build(ref))


def _reference(reference: str, args):
    """A guide: a video file (extracted now) or a stored reference id."""
    if Path(reference).is_file():
        return reference_from_video(reference, Path(reference).stem, args, ref_id="file")
    ref = asyncio.run(_stored_reference(reference))
    if ref is None:
        raise ValueError(f"{reference!r} is neither a video file nor a stored reference id")
    return ref


def _frames(path: str, args, progress: bool = True, matcher=None):
    from edge.extract import extract, progress_bar
    from edge.video import probe

    info = probe(path)
    backend = _backend(args)
    try:
        return info, list(extract(path, backend, args.max_side, matcher=matcher,
                                  on_progress=progress_bar(info.frame_count) if progress else None))
    finally:
        backend.close()


def reference_from_video(path: str, name: str, args, ref_id: str | None = None):
    from edge.extract import progress_bar, reference_from_video as from_video
    from edge.video import probe

    backend = _backend(args)
    try:
        return from_video(path, name, backend, ref_id, args.max_side, progress_bar(probe(path).frame_count))
    finally:
        backend.close()


def run_extract(args) -> int:
    from edge.backends.base import publishable_box, publishable_keypoints
    from edge.extract import extract, progress_bar
    from edge.video import probe

    info = probe(args.video)
    matcher = _matcher(_reference(args.reference, args)) if args.reference else None
    backend = _backend(args)
    everyone: list | None = [] if args.all_people else None

    def doc(f) -> dict:
        d = json.loads(f.to_json())
        if everyone is not None:
            d["people"] = [{"track": tid, "keypoints": publishable_keypoints(p.keypoints, f.width, f.height),
                            "box": publishable_box(p.box)} for tid, p in everyone[f.seq]]
        return d

    try:
        frames = extract(args.video, backend, args.max_side, on_progress=progress_bar(info.frame_count),
                         matcher=matcher, everyone=everyone)
        if args.jsonl:
            for f in frames:
                sys.stdout.write(json.dumps(doc(f), separators=(",", ":")) + "\n")
        else:
            out = [doc(f) for f in frames]
            json.dump({"video": str(args.video), "fps": info.fps, "frames": out}, sys.stdout)
            sys.stdout.write("\n")
    finally:
        backend.close()
    return 0


async def _stored_reference(ref_id: str):
    from rehab.storage.repository import Database

    async with Database.opened(Settings.from_env()) as db:
        return await db.get_reference(ref_id)


def run_score(args) -> int:
    from rehab.scoring import score_attempt

    ref = _reference(args.reference, args)
    _, frames = _frames(args.video, args, matcher=_matcher(ref))  # the guide also picks the patient among people
    result = score_attempt(ref, frames, mirror_mode=args.mirror)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"similarity {result['similarity']:.3f}  repetitions {result['reps']}  "
              f"phase coverage {result['phase_coverage']:.2f}")
        for c in result["corrections"]:
            print(f"  hint: {c['message']}")
    return 0


def run_reference_add(args) -> int:
    from rehab.storage.repository import Database

    ref = reference_from_video(args.video, args.name, args, ref_id=args.id)

    async def save():
        async with Database.opened(Settings.from_env()) as db:
            await db.save_reference(ref)

    asyncio.run(save())
    print(json.dumps({"reference_id": ref.id, "name": ref.name, "frames": len(ref.frames),
                      "frames_with_subject": sum(f is not None for f in ref.frames), "fps": ref.fps}))
    return 0


def run_reference_list(args) -> int:
    from rehab.storage.repository import Database

    async def listing():
        async with Database.opened(Settings.from_env()) as db:
            return await db.list_references()

    for row in asyncio.run(listing()):
        print(json.dumps(row))
    return 0


def run_replay(args) -> int:
    from rehab.replay import export, plot, read_session
    from rehab.scoring import LiveScorer, ReferenceModel, replay_scores, summarize

    settings = Settings.from_env()
    frames = read_session(settings.kafka_bootstrap, settings.topics.keypoints, args.session,
                          args.since_ms, args.until_ms)
    if not frames:
        raise ValueError(f"no keypoint frames of session {args.session!r} in {settings.topics.keypoints}")
    ref_id = next((f.reference_id for f in frames if f.reference_id), None)
    ref = asyncio.run(_stored_reference(ref_id)) if ref_id else None
    if ref is None:
        raise ValueError(f"the session's reference {ref_id!r} is not stored")
    scorer = LiveScorer(ReferenceModel.build(ref), args.session, window_ms=settings.processor_window_ms,
                        min_interval_ms=settings.processor_min_interval_ms)
    scores = replay_scores(scorer, frames)
    result = summarize(scores, ref.id, frames)
    if args.csv:
        result["csv"] = [str(p) for p in export(args.csv, frames, scores, "csv")]
    if args.parquet:
        result["parquet"] = [str(p) for p in export(args.parquet, frames, scores, "parquet")]
    if args.plot:
        result["plot"] = str(plot(args.plot, scores, f"session {args.session} vs {ref.id}"))
    print(json.dumps(result))
    return 0
