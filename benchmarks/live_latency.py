"""Glass-to-score latency of N concurrent live sessions, printed as JSON: each session is a real
client (aiortc video in cloud mode, a data channel of keypoints in on-device mode) playing the patient clip
in a loop as a FPS camera; latency = receipt of a score minus the capture time of the window's last
frame (one machine, one clock). Reported overall and per interval, so growth over time shows.

    ./dev bench live_latency [--sessions 4] [--mode cloud|device] [--seconds 600] [--fps 15]
    ./dev bench live_latency --sweep 1,2,4,6,8 --seconds 60     # how many sessions before it grows
Targets (issue 5, 2-core machine, BlazePose on CPU, 15 fps): cloud, 4 sessions: p50 <= 150 ms,
p99 <= 300 ms, flat over 10 minutes, >= 6 sessions before latency grows; device: >= 200 sessions.
The clients run on the same machine as the services. In cloud mode they send the clip encoded to H.264
once up front (as a phone's hardware encoder would) unless ``--client-video live``, where every
client encodes VP8 in software and takes CPU from the services.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import bench_stack, percentiles  # noqa: E402
from rehab.settings import REPO_ROOT  # noqa: E402

CLIP = REPO_ROOT / "data" / "pose2sim_single_cam02.mp4"


def client_process(gateway: str, n: int, mode: str, seconds: float, fps: float, max_side: int, out,
                   keypoints=None, preencoded: bool = False) -> None:
    from rehab.cli.client import create_session, stream_file, stream_keypoints

    loops = int(seconds * 60 / 100) + 2  # the clip is 100 frames at 60 fps

    async def one(k: int):
        await asyncio.sleep(k * 0.3)  # sessions start staggered, as patients do
        grant = await create_session(gateway, "guide", patient_id=f"bench-{k}", mode=mode)
        rows, t0 = [], time.monotonic()
        if mode == "device":
            frames = [keypoints[i % len(keypoints)] for i in range(int(seconds * fps))]
            source = stream_keypoints(gateway, grant, frames, fps, tail_s=2.0)
        else:
            source = stream_file(gateway, grant, str(CLIP), loops=loops, max_side=max_side, tail_s=2.0, fps=fps,
                                 preencoded=preencoded)
        async for r in source:
            sc = r.score
            rows.append((r.received_ms, r.latency_ms, sc.gateway_ts_ms - sc.window_end_ts_ms,
                         sc.infer_ts_ms - sc.gateway_ts_ms, sc.score_ts_ms - sc.infer_ts_ms,
                         r.received_ms - sc.score_ts_ms))
            if time.monotonic() - t0 > seconds:
                break
        return rows

    async def main():
        results = await asyncio.gather(*(one(k) for k in range(n)), return_exceptions=True)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        out.put({"rows": [row for r in results if not isinstance(r, BaseException) for row in r], "errors": errors})

    asyncio.run(main())


def run(sessions: int, mode: str, seconds: float, fps: float, max_side: int, per_process: int,
        interval_s: float, complexity: int | None = None,
        worker_fps: float | None = None, client_video: str = "preencoded", worker_threads: int | None = None) -> dict:
    keypoints = None
    if mode == "device":
        from benchmarks.common import clip_frames

        step = 60 / fps  # the clip at the camera's rate
        frames = clip_frames(CLIP.name)
        keypoints = [(f.width, f.height, f.keypoints) for f in frames[::max(1, round(step))]]
    extra = {} if complexity is None else {"pose_complexity": complexity}
    if worker_threads is not None:
        extra["worker_threads"] = worker_threads
    with bench_stack(("processor", "worker", "gateway"), session_max_fps=int(fps), worker_max_fps=int(worker_fps or fps), frame_max_side=max_side,
                     token_ttl_s=max(900, int(seconds) + 300), session_idle_s=60, **extra) as settings:
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        groups = [min(per_process, sessions - i) for i in range(0, sessions, per_process)]
        procs = [ctx.Process(target=client_process, args=(settings.gateway_url, g, mode, seconds, fps, max_side, out,
                                                          keypoints, client_video == "preencoded")) for g in groups]
        t0_ms = time.time() * 1000
        for p in procs:
            p.start()
        results = [out.get(timeout=seconds + 600) for _ in procs]
        for p in procs:
            p.join(30)
    rows = sorted(row for r in results for row in r["rows"])
    warm_rows = [row for row in rows if row[0] - t0_ms > 10_000]  # start-up (connections, first windows) left out
    warm = [row[1] for row in warm_rows]
    hops = {name: percentiles([row[i] for row in warm_rows], qs=(50, 99)) for i, name in
            enumerate(("capture_to_gateway", "gateway_to_inferred", "inferred_to_scored", "scored_to_received"), 2)}
    buckets = []
    for start in range(10, int(seconds) + 10, int(interval_s)):
        lat = [row[1] for row in rows if start * 1000 <= row[0] - t0_ms < (start + interval_s) * 1000]
        if lat:
            buckets.append({"from_s": start, **percentiles(lat)})
    return {
        "mode": mode, "client_video": client_video if mode == "cloud" else None, "sessions": sessions, "fps": fps, "seconds": seconds, "frame_max_side": max_side,
        "pose_complexity": complexity if complexity is not None else "default",
        "worker_threads": worker_threads if worker_threads is not None else "default", "worker_fps": worker_fps or fps,
        "scores": len(rows), "scores_per_s_per_session": round(len(rows) / max(seconds, 1) / sessions, 2),
        "glass_to_score_ms": percentiles(warm), "hops_ms": hops, "per_interval": buckets,
        "errors": [e for r in results for e in r["errors"]][:5],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--mode", choices=["cloud", "device", "edge"], default="cloud",
                    help="device: keypoints from the client over a data channel (edge: its older name)")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--max-side", type=int, default=480, help="client camera and gateway frame size (long side)")
    ap.add_argument("--per-process", type=int, default=0, help="sessions per client process (default: 4 cloud, 50 device)")
    ap.add_argument("--interval", type=float, default=30, help="seconds per reported interval")
    ap.add_argument("--worker-fps", type=float, default=None,
                    help="frames per second per session the pose worker takes (default: --fps)")
    ap.add_argument("--complexity", type=int, choices=[0, 1, 2], default=None,
                    help="BlazePose model in the worker (default: REHAB_POSE_COMPLEXITY, 1 = full)")
    ap.add_argument("--client-video", choices=["preencoded", "live"], default="preencoded",
                    help="cloud clients: preencoded = the clip encoded to H.264 once and sent at the camera's pace "
                         "(a phone's hardware encoder: the clients take no CPU from the services); live = "
                         "aiortc encodes every frame in software (VP8) on this same machine")
    ap.add_argument("--worker-threads", type=int, default=None,
                    help="inference lanes in the pose worker (REHAB_WORKER_THREADS; default: the setting's)")
    ap.add_argument("--sweep", default="", help="comma-separated session counts, one run each")
    args = ap.parse_args()
    args.mode = "device" if args.mode == "edge" else args.mode
    per_process = args.per_process or (4 if args.mode == "cloud" else 50)
    if args.sweep:
        runs = [run(int(n), args.mode, args.seconds, args.fps, args.max_side, per_process, args.interval,
                    args.complexity, args.worker_fps, args.client_video, args.worker_threads) for n in args.sweep.split(",")]
        summary = [{"sessions": r["sessions"], **{k: r["glass_to_score_ms"][k] for k in ("p50", "p95", "p99")},
                    "scores_per_s_per_session": r["scores_per_s_per_session"]} for r in runs]
        print(json.dumps({"mode": args.mode, "sweep": summary, "runs": runs}, indent=2))
    else:
        print(json.dumps(run(args.sessions, args.mode, args.seconds, args.fps, args.max_side, per_process,
                             args.interval, args.complexity, args.worker_fps, args.client_video, args.worker_threads), indent=2))


if __name__ == "__main__":
    main()
