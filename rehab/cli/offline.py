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

    s = sub.add_parser("score", help="score recorded attempts (videos or keypoint files) against a guide",
                       description="Scores each attempt against the guide; with --json prints one JSON object per "
                       "attempt, in order (JSON Lines; the fields are documented in docs/scoring.md).")
    s.add_argument("attempts", nargs="+", metavar="ATTEMPT", help="video files or keypoint files (rehab extract)")
    s.add_argument("--reference", required=True, action="append",
                   help="the guide: a video file, a keypoint file or a stored reference id/name; repeat it to add "
                        "more correct takes (files)")
    s.add_argument("--mistake", action="append", default=[], metavar="LABEL=FILE",
                   help="a recording of a named mistake (video or keypoint file); repeatable")
    s.add_argument("--json", action="store_true", help="one JSON object per attempt (JSON Lines)")
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
    add = rsub.add_parser("add", help="register a guide from one or more correct takes (videos or keypoint files), "
                                      "optionally with recordings of named mistakes, in MySQL")
    add.add_argument("videos", nargs="+", metavar="VIDEO", help="correct takes; the first is what windows align with")
    add.add_argument("--mistake", action="append", default=[], metavar="LABEL=VIDEO",
                     help='a recording of a named mistake, e.g. "knees cave in=knees.mp4"; repeatable (the same '
                          'label twice: two recordings of that mistake)')
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


def _matcher(ref, model=None):
    """The guide as the subject policy's matcher (edge/subject.py): who performs it is the patient."""
    from edge.subject import reference_matcher
    from rehab.scoring import ReferenceModel

    return reference_matcher(model or ReferenceModel.build(ref))


def _reference(reference: str, args):
    """A guide: a video file (extracted now), a keypoint file or a stored reference id."""
    if Path(reference).is_file():
        return _reference_file(reference, Path(reference).stem, args, "file")
    ref = asyncio.run(_stored_reference(reference))
    if ref is None:
        raise ValueError(f"{reference!r} is neither a video or keypoint file nor a stored reference id")
    return ref


def _mistake_arg(spec: str) -> tuple[str, str]:
    label, sep, path = spec.rpartition("=")
    if not sep or not label.strip() or not path:
        raise ValueError(f"--mistake {spec!r}: expected LABEL=FILE, e.g. \"knees cave in=knees.mp4\"")
    return label.strip(), path


def _take(path: str, args, label: str | None = None):
    """Another take of the guide (done right, or a named mistake) from a video or keypoint file."""
    return _reference_file(path, Path(path).stem, args, "file").as_take(label)


def _guide(paths: list[str], mistakes: list[str], args, name: str | None = None, ref_id: str | None = None):
    """A guide from its first take (a file or, without ``name``, a stored id), more correct takes and
    named mistakes (files)."""
    import dataclasses

    specs = [_mistake_arg(m) for m in mistakes]  # refused before any extraction
    if name is None:
        ref = _reference(paths[0], args)
    else:
        ref = _reference_file(paths[0], name, args, ref_id)
    more = tuple(_take(p, args) for p in paths[1:]) + tuple(_take(p, args, label) for label, p in specs)
    return dataclasses.replace(ref, takes=ref.takes + more) if more else ref


def _reference_file(path: str, name: str, args, ref_id: str | None):
    """A guide's first take from a video file (extracted now) or a keypoint file."""
    from rehab.recordings import is_keypoint_file, reference_from_keypoints

    if not Path(path).is_file():
        raise ValueError(f"{path!r}: no such file")
    if is_keypoint_file(path):
        return reference_from_keypoints(path, name, ref_id)
    return reference_from_video(path, name, args, ref_id=ref_id)


def _frames(path: str, args, progress: bool = True, matcher=None, backend=None):
    """A video's keypoints; ``backend``: one the caller keeps for several videos (each video is its own
    stream for it, as sessions are for a worker), else one made and closed here."""
    from edge.extract import extract, progress_bar
    from edge.video import probe

    info = probe(path)
    own = backend is None
    backend = _backend(args) if own else backend
    try:
        return info, list(extract(path, backend, args.max_side, matcher=matcher,
                                  on_progress=progress_bar(info.frame_count) if progress else None))
    finally:
        if own:
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
    from rehab.adapters.storage.repository import Database

    async with Database.opened(Settings.from_env()) as db:
        return await db.get_reference(ref_id)


def run_score(args) -> int:
    """Each attempt in order; one that cannot be read gets an error line (JSON: ``{"attempt", "error"}``)
    and the others are still scored; the exit status is 1 when any failed."""
    from rehab.scoring import ReferenceModel

    ref = _guide(args.reference, args.mistake, args)
    model = ReferenceModel.build(ref)
    failed = 0
    backend = []  # the pose model, loaded for the first video attempt and kept for the others
    try:
        for path in args.attempts:
            failed += not _score_one(path, ref, model, args, backend)
    finally:
        for b in backend:
            b.close()
    return 1 if failed else 0


def _score_one(path: str, ref, model, args, backend: list) -> bool:
    """Prints one attempt's result (or its error line); whether it was scored."""
    from rehab.recordings import is_keypoint_file, read_keypoints
    from rehab.scoring import score_attempt

    try:
        if not Path(path).is_file():
            raise ValueError("no such file")
        if is_keypoint_file(path):
            frames, _ = read_keypoints(path)
        else:  # the guide also picks the patient among several people
            if not backend:
                backend.append(_backend(args))
            _, frames = _frames(path, args, matcher=_matcher(ref, model), backend=backend[0])
        result = {"attempt": path, **score_attempt(ref, frames, mirror_mode=args.mirror, model=model)}
    except (ValueError, OSError) as exc:
        msg = str(exc) if str(exc).startswith(path) else f"{path}: {exc}"
        if args.json:
            print(json.dumps({"attempt": path, "error": msg}), flush=True)
        else:
            print(f"error: {msg}", file=sys.stderr, flush=True)
        return False
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        named = f"  looks like: {result['mistake']}" if result["mistake"] else ""
        print(f"{path}: similarity {result['similarity']:.3f} ({result['verdict']})  repetitions {result['reps']}  "
              f"phase coverage {result['phase_coverage']:.2f}{named}", flush=True)
        for c in result["corrections"]:
            print(f"  hint: {c['message']}")
    return True


def run_reference_add(args) -> int:
    from rehab.adapters.storage.repository import Database

    ref = _guide(args.videos, args.mistake, args, name=args.name, ref_id=args.id)

    async def save():
        async with Database.opened(Settings.from_env()) as db:
            await db.save_reference(ref)

    asyncio.run(save())
    print(json.dumps({"reference_id": ref.id, "name": ref.name, "frames": len(ref.frames),
                      "frames_with_subject": sum(f is not None for f in ref.frames), "fps": ref.fps,
                      **ref.summary()}))
    return 0


def run_reference_list(args) -> int:
    from rehab.adapters.storage.repository import Database

    async def listing():
        async with Database.opened(Settings.from_env()) as db:
            return await db.list_references()

    for row in asyncio.run(listing()):
        print(json.dumps(row))
    return 0


def run_replay(args) -> int:
    from rehab.ops.replay import export, plot, read_session
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
