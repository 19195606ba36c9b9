"""Video files played like a camera (``FileCameraTrack``: frame i captured at t0 + i / fps, never
earlier) or like a camera with a hardware encoder (``EncodedCameraTrack``: H.264 packets encoded once);
what ``rehab stream``, the tests and the benchmarks send over WebRTC (rehab/cli/client.py)."""
from __future__ import annotations

import asyncio
import fractions
import time

import av
from aiortc import VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from edge.video import frames as video_frames, probe
from rehab.records import now_ms

VIDEO_CLOCK = 90_000
PRELOAD_MAX_FRAMES = 600


class FileCameraTrack(VideoStreamTrack):
    """Plays a video file like a camera: frame i is "captured" at t0 + i / fps, never earlier."""

    def __init__(self, path: str, max_side: int = 640, loops: int = 1, fps: float | None = None):
        """``fps``: play as a camera running at this rate (the clip's frames taken at its times)."""
        super().__init__()
        self.info = probe(path)
        self.path, self.max_side, self.loops = path, max_side, loops
        self.fps = fps or self.info.fps
        self._iter = self._frames()
        self.index = 0
        self.sent = self.skipped = 0
        self.t0_mono: float | None = None
        self.t0_ms: int | None = None
        self.first_frame = asyncio.Event()

    def _frames(self):
        if 0 < self.info.frame_count <= PRELOAD_MAX_FRAMES:  # short clips: decode once, before t0
            images = list(video_frames(self.path, self.max_side))
            frames = (image for _ in range(self.loops) for image in images)
        else:
            frames = (image for _ in range(self.loops) for image in video_frames(self.path, self.max_side))
        if self.fps >= self.info.fps:
            return frames
        return self._at_rate(frames)

    def _at_rate(self, frames):
        """A slower camera: source frame k is shown at k / clip fps; take the one due at each tick."""
        step, due = self.info.fps / self.fps, 0.0
        for k, image in enumerate(frames):
            if k >= due:
                yield image
                due += step

    async def recv(self) -> av.VideoFrame:
        """Like a camera: frames are due at t0 + i / fps; a frame whose time has passed while the
        encoder was busy is skipped (counted), never sent late."""
        self._start_clock()
        behind = int((time.monotonic() - self.t0_mono) * self.fps) - self.index
        for _ in range(max(0, behind - 1)):  # one frame of slack, then skip
            if next(self._iter, None) is None:
                break
            self.index += 1
            self.skipped += 1
        image = next(self._iter, None)
        if image is None:
            self.stop()
            raise MediaStreamError
        frame = await self._when_due(av.VideoFrame.from_ndarray(image, format="bgr24"))
        self.sent += 1
        return frame

    def _start_clock(self) -> None:
        if self.t0_mono is None:
            self.t0_mono, self.t0_ms = time.monotonic(), now_ms()
            self.first_frame.set()

    async def _when_due(self, item):
        """Waits until frame ``index`` is due (t0 + index / fps), stamps it and moves on."""
        delay = self.t0_mono + self.index / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        item.pts = round(self.index * VIDEO_CLOCK / self.fps)
        item.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.index += 1
        return item


class EncodedCameraTrack(FileCameraTrack):
    """A camera with a hardware encoder: the clip is encoded to H.264 once, up front, and the packets
    are sent at the camera's pace (aiortc packetizes them without encoding anything). Loops repeat the
    packets (every loop starts with a key frame). Used by benchmarks so that clients sharing the
    server's machine do not take its CPU for software video encoding, as phones do not."""

    def __init__(self, path: str, max_side: int = 640, loops: int = 1, fps: float | None = None):
        super().__init__(path, max_side=max_side, loops=1, fps=fps)
        self.loops = loops
        images = list(self._iter)  # one loop of the camera's frames
        h, w = images[0].shape[:2]
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height, codec.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        codec.gop_size = len(images)  # one key frame per loop, so the loops can repeat the packets
        codec.options = {"profile": "baseline", "level": "31", "tune": "zerolatency", "preset": "veryfast"}
        self.packets: list[bytes] = []
        for i, image in enumerate(images + [None]):
            frame = None
            if image is not None:
                frame = av.VideoFrame.from_ndarray(image[:codec.height, :codec.width], format="bgr24").reformat(
                    format="yuv420p")
                frame.pts = round(i * VIDEO_CLOCK / self.fps)
                frame.pict_type = av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.NONE
            self.packets += [bytes(p) for p in codec.encode(frame)]

    async def recv(self) -> av.Packet:
        """Every packet is sent when due (none skipped: a P-frame needs the ones before it)."""
        self._start_clock()
        if self.index >= len(self.packets) * self.loops:
            self.stop()
            raise MediaStreamError
        packet = await self._when_due(av.Packet(self.packets[self.index % len(self.packets)]))
        self.sent += 1
        return packet
