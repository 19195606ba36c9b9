"""Offline extraction: a video file (or an image) to the subject's keypoint frames."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

from edge.backends.base import PoseBackend, publishable_box, publishable_keypoints
from edge.subject import Matcher, SubjectSelector
from edge.video import VideoInfo, frames, probe
from rehab.records import KeypointFrame, now_ms
from rehab.recordings import file_sha256


def progress_bar(total: int) -> Callable[[int], None]:
    """A one-line progress bar on stderr (only when stderr is a terminal or total is known)."""
    start = time.monotonic()

    def update(done: int) -> None:
        if not sys.stderr.isatty():
            return
        rate = done / max(time.monotonic() - start, 1e-6)
        width = 30
        filled = int(width * done / total) if total else 0
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total or '?'} frames {rate:.1f}/s")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return update


def reference_from_video(path: str | Path, name: str, backend: PoseBackend, ref_id: str | None = None,
                         max_side: int = 640, on_progress: Callable[[int], None] | None = None):
    """A guide recording's keypoints as a Reference (raises ValueError when nobody is in it)."""
    from rehab.reference import Reference, slug

    info = probe(path)
    kf = list(extract(path, backend, max_side, on_progress=on_progress))
    return Reference(
        id=ref_id or slug(name), name=name, fps=info.fps, width=kf[0].width, height=kf[0].height,
        model=kf[0].model, model_version=kf[0].model_version, source_sha256=file_sha256(path),
        frames=[f.keypoints for f in kf],
    )


def extract(path: str | Path, backend: PoseBackend, max_side: int = 640, session_id: str | None = None,
            on_progress: Callable[[int], None] | None = None, smoothing: float = 0.0,
            matcher: Matcher | None = None, everyone: list | None = None) -> Iterator[KeypointFrame]:
    """Keypoint frames of the tracked subject, one per video frame, timestamps from the video's clock.
    ``matcher``: the guide the patient performs (``edge.subject.reference_matcher``), to tell them from
    bystanders; ``everyone``: a list that gets, per frame, every person seen as (track id, Person)."""
    info: VideoInfo = probe(path)
    stream = session_id or f"extract-{uuid.uuid4().hex[:12]}"
    selector = SubjectSelector(backend, stream, matcher=matcher, smoothing=smoothing)
    t0 = now_ms()
    try:
        for seq, image in enumerate(frames(path, max_side)):
            h, w = image.shape[:2]
            ts = t0 + round(seq * 1000 / info.fps)
            person = selector.step(image, ts)
            if everyone is not None:
                everyone.append(selector.everyone(ts))
            yield KeypointFrame(
                session_id=stream, seq=seq, capture_ts_ms=ts, gateway_ts_ms=ts, infer_ts_ms=now_ms(),
                model=backend.name, model_version=backend.version, width=w, height=h,
                keypoints=None if person is None else publishable_keypoints(person.keypoints, w, h),
                box=None if person is None else publishable_box(person.box),
            )
            if on_progress:
                on_progress(seq + 1)
    finally:
        selector.close()
