"""Uploaded videos: streamed to a temporary file under a size limit, sniffed by their first bytes
(not by what the client claims), then probed by OpenCV. Pose extraction runs on one dedicated thread
with its own backend, so an upload never blocks the event loop nor races the model."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
from pathlib import Path
from typing import Callable

from starlette.requests import Request

from edge.video import VideoError, probe
from rehab.recordings import is_keypoint_file, read_keypoints, reference_from_keypoints, take_from_keypoints
from rehab.reference import Take


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """The container by its magic bytes: mp4/mov, webm/mkv, avi, or a keypoint file (JSON or JSON Lines,
    as ``rehab extract`` writes it: rehab/recordings.py); None for anything else."""
    if head.lstrip()[:1] == b"{":
        return "keypoints"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


SUFFIX = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi", "keypoints": ".jsonl"}


async def limited_chunks(request: Request, limit: int, too_large: Callable[[str], Exception], what: str):
    """The body's chunks as they arrive, and ``too_large(message)`` raised as soon as a declared
    Content-Length or the bytes read so far pass ``limit``: a body is never read whole before the check
    (a 300 MB body used to be). A Content-Length that is not a number is the caller's to judge."""
    try:
        declared = int(request.headers.get("content-length", "0"))
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large(f"{what} of {declared} bytes is larger than the {limit} byte limit")
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"{what} is larger than the {limit} byte limit")
        yield chunk


async def receive_video(request: Request, limit: int, folder: Path) -> Path:
    """The request body as a video or keypoint file in ``folder``; 411/413/400/415/422 on what cannot be
    one (a keypoint file is read, and refused with 422, by whoever uses it)."""
    try:
        int(request.headers.get("content-length", "0"))
    except ValueError:
        raise UploadError(400, "Content-Length is not a number") from None
    chunks = limited_chunks(request, limit, lambda message: UploadError(413, message), "the upload")
    fd, name = tempfile.mkstemp(dir=folder, suffix=".upload")
    path = Path(name)
    size = 0
    head = b""
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if len(head) < 16:
                    head += chunk[:16]
                out.write(chunk)
        if size == 0:
            raise UploadError(400, "the request body is empty: send the video file as the body")
        kind = sniff(head)
        if kind is None:
            raise UploadError(415, "not a video container this service reads (mp4/mov, webm/mkv, avi) "
                                   "nor a keypoint file (JSON)")
        video = path.with_suffix(SUFFIX[kind])
        path.rename(video)
        path = video
        if kind == "keypoints":
            return video
        try:
            probe(video)
        except VideoError as exc:
            raise UploadError(422, f"the video cannot be read: {str(exc).split(': ', 1)[-1]}") from None
        return video
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class Extractor:
    """Runs pose extraction jobs one at a time on a thread that owns the pose backend."""

    def __init__(self, make_backend, max_side: int = 640):
        self.make_backend, self.max_side = make_backend, max_side
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract")
        self.backend = None

    def _backend(self):
        if self.backend is None:
            self.backend = self.make_backend()
        return self.backend

    async def reference(self, path: Path, name: str, ref_id: str | None):
        """A guide's first take from an uploaded video or keypoint file."""
        from edge.extract import reference_from_video

        if is_keypoint_file(path):
            return await asyncio.to_thread(reference_from_keypoints, path, name, ref_id)
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: reference_from_video(path, name, self._backend(), ref_id, self.max_side))

    async def take(self, path: Path, label: str | None) -> Take:
        """Another take of a guide (``label``: a named mistake) from an uploaded video or keypoint file."""
        if is_keypoint_file(path):
            return await asyncio.to_thread(take_from_keypoints, path, label)
        return (await self.reference(path, "take", "take")).as_take(label)

    async def frames(self, path: Path) -> list:
        from edge.extract import extract

        if is_keypoint_file(path):
            return (await asyncio.to_thread(read_keypoints, path))[0]
        return await asyncio.get_running_loop().run_in_executor(
            self.pool, lambda: list(extract(path, self._backend(), self.max_side)))

    def close(self) -> None:
        def shut():
            if self.backend is not None:
                self.backend.close()
        self.pool.submit(shut).result()
        self.pool.shutdown()
