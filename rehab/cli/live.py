"""rehab serve, rehab stream, rehab demo: the live pipeline."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from rehab.settings import REPO_ROOT, Settings

DATA = REPO_ROOT / "data"
DEMO_GUIDE = "pose2sim_single_cam01.mp4"
DEMO_PATIENT = "pose2sim_single_cam02.mp4"


def add_commands(sub) -> None:
    s = sub.add_parser("serve", help="run one service in the foreground")
    s.add_argument("service", choices=["gateway", "worker", "processor"])
    s.add_argument("--ready-file", type=Path, default=None, help="touched once the service is ready")
    s.set_defaults(func=run_serve)

    st = sub.add_parser("stream", help="stream a video file to the gateway over WebRTC and print live scores")
    st.add_argument("video")
    st.add_argument("--reference", required=True, help="stored reference id")
    st.add_argument("--gateway", default=None, help="gateway URL (default REHAB_GATEWAY_URL)")
    st.add_argument("--loops", type=int, default=1, help="play the clip this many times back to back")
    st.add_argument("--json", action="store_true", help="print each score as JSON")
    st.add_argument("--credential", default=os.environ.get("REHAB_PATIENT_CREDENTIAL"),
                    help="the patient's credential (from their invitation; default REHAB_PATIENT_CREDENTIAL); "
                         "without one the gateway must be in demo mode")
    st.add_argument("--mode", choices=["cloud", "device", "edge"], default="cloud",
                    help="cloud: send video over WebRTC; device: run BlazePose here and send keypoints over a "
                         "data channel (scores come back on it); edge: the older name of device")
    st.set_defaults(func=run_stream)

    d = sub.add_parser("demo", help="the whole live pipeline on the bundled clips")
    d.add_argument("--data", type=Path, default=DATA, help="folder with the pose2sim clips")
    d.add_argument("--loops", type=int, default=4,
                   help="play the patient clip (1.7 s) this many times back to back (default 4)")
    d.add_argument("--keep-stack", action="store_true", help="leave Kafka and MariaDB running afterwards")
    d.set_defaults(func=run_demo)


def run_serve(args) -> int:
    settings = Settings.from_env()
    if args.service == "gateway":
        import uvicorn

        from gateway.app import create_app

        settings.check_tls_files()
        tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file} if settings.tls_cert_file else {}
        uvicorn.run(create_app(settings), host=settings.gateway_host, port=settings.gateway_port,
                    log_level="warning", lifespan="on", proxy_headers=True,
                    forwarded_allow_ips=settings.forwarded_allow_ips, **tls)
    elif args.service == "processor":
        from stream_processor.app import run

        sys.argv = sys.argv[:1]  # faust's worker must not see our arguments
        run(settings, args.ready_file)
    else:
        _serve_worker(settings, args.ready_file)
    return 0


def _serve_worker(settings: Settings, ready_file: Path | None) -> None:
    from edge.worker import build_worker

    worker = build_worker(settings)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    signal.signal(signal.SIGINT, lambda *_: worker.stop())
    deadline = time.monotonic() + 60
    while not worker.consumer.assignment() and time.monotonic() < deadline and not worker.stopping.is_set():
        worker.run_once(timeout_ms=200)  # joins the group
    worker.warm_up()  # the model's first call builds its graph: not on a patient's frame
    from rehab.adapters import metrics

    metrics.serve(settings.worker_metrics_port, "worker")
    metrics.watch_lag(settings.kafka_bootstrap, settings.worker_group, settings.topics.frames, "worker",
                      stop=worker.stopping)
    if ready_file is not None:
        ready_file.write_text("ready")
    try:
        worker.run()
    finally:
        worker.consumer.close()
        worker.producer.close(timeout=5)
        worker.close_backends()
        print(json.dumps({"worker_counters": dict(worker.counters)}), flush=True)


def _format(received, hint: bool = True) -> str:
    s = received.score
    line = (f"score  frames {s.window_start_seq:4d}-{s.window_end_seq:<4d} similarity {s.similarity:.3f}  "
            f"session {s.session_similarity:.3f}  phase {s.phase:.2f}  reps {s.reps}  "
            f"latency {received.latency_ms:4d} ms")
    if hint and s.corrections:
        line += f"  hint: {s.corrections[0]['message']}"
    return line


async def _stream(gateway: str, reference_id: str, video: str, loops: int, as_json: bool,
                  mode: str = "cloud", credential: str | None = None) -> tuple[str, list]:
    from rehab.cli.client import create_session, device_keypoints, stream_file, stream_keypoints

    mode = "device" if mode == "edge" else mode
    grant = await create_session(gateway, reference_id, mode=mode, credential=credential)
    session_id = grant.session_id
    received, errors = [], []
    if mode == "device":
        from edge.backends import create_backend
        from edge.video import probe

        print(f"session {session_id}: BlazePose here, keypoints of {video} over a data channel", flush=True)
        backend = create_backend("blazepose")

        async def frames():
            for _ in range(loops):
                async for item in device_keypoints(video, backend):
                    yield item

        source = stream_keypoints(gateway, grant, frames(), probe(video).fps, errors=errors)
    else:
        print(f"session {session_id}: streaming {video} over WebRTC", flush=True)
        source = stream_file(gateway, grant, video, loops=loops)
    async for r in source:
        received.append(r)
        if as_json:
            print(json.dumps({**json.loads(r.score.to_json()), "received_ms": r.received_ms,
                              "glass_to_score_ms": r.latency_ms}), flush=True)
        else:
            print(_format(r), flush=True)
    for e in errors:
        print(f"gateway refused a keypoint message: {e}", file=sys.stderr)
    return session_id, received


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def run_stream(args) -> int:
    settings = Settings.from_env()
    _, received = asyncio.run(_stream(args.gateway or settings.gateway_url, args.reference, args.video,
                                      args.loops, args.json, args.mode, args.credential))
    lat = [r.latency_ms for r in received]
    print(json.dumps({"scores": len(received), "latency_p50_ms": percentile(lat, 50),
                      "latency_p95_ms": percentile(lat, 95)}), file=sys.stderr)
    return 0 if received else 1


async def _demo_reference(settings: Settings, guide: Path) -> str:
    """Registers the guide once (again only if the file changed)."""
    from argparse import Namespace

    from rehab.recordings import file_sha256
    from rehab.cli.offline import reference_from_video
    from rehab.adapters.storage.repository import Database

    async with Database.opened(settings) as db:
        existing = await db.get_reference("pose2sim-lunge")
        if existing is not None and existing.source_sha256 == file_sha256(guide):
            print(f"reference pose2sim-lunge already registered ({len(existing.frames)} frames)")
            return existing.id
        print(f"registering {guide.name} as reference pose2sim-lunge (BlazePose on CPU) ...", flush=True)
        ns = Namespace(backend=settings.pose_backend, device=settings.pose_device,
                       weights=settings.pose_weights or None, max_side=settings.frame_max_side,
                       complexity=None, score_threshold=None)
        # on the main thread (nothing else runs on this loop yet): only there are MediaPipe's start-up
        # notes kept off the terminal (edge.backends.blazepose.native_stderr_silenced)
        ref = reference_from_video(str(guide), "pose2sim-lunge", ns)
        await db.save_reference(ref)
        return ref.id


async def _warm_up(gateway: str, reference_id: str, video: str, timeout_s: float = 120.0) -> float:
    """Streams ``video`` in a probe session until a score comes back; the seconds it took."""
    from rehab.cli.client import create_session, stream_file

    t0 = time.monotonic()

    async def first_score() -> None:
        grant = await create_session(gateway, reference_id, patient_id="demo-warm-up")
        source = stream_file(gateway, grant, video, loops=1000, tail_s=0.0)
        try:
            async for _ in source:
                return
        finally:
            await source.aclose()

    try:
        await asyncio.wait_for(first_score(), timeout_s)
    except asyncio.TimeoutError:
        raise RuntimeError(f"the pipeline scored nothing within {timeout_s:.0f}s of warming up; "
                           "see .state/logs/{gateway,worker,processor}.log") from None
    return time.monotonic() - t0


async def _count_rows(settings: Settings, session_id: str, expected: int) -> int:
    from rehab.adapters.storage.repository import Database

    async with Database.opened(settings) as db:
        return await db.wait_for_scores(session_id, expected)


def run_demo(args) -> int:
    from rehab.stack.services import Services
    from rehab.stack import local

    # the demo's own gateway, on this machine: sessions without enrolling a patient (gateway/auth.py)
    settings = Settings.from_env().with_(demo_mode=True)
    guide, patient = args.data / DEMO_GUIDE, args.data / DEMO_PATIENT
    for clip in (guide, patient):
        if not clip.is_file():
            raise FileNotFoundError(f"demo clip {clip} is missing (pass --data FOLDER)")
    t_start = time.monotonic()
    was_running = all(local.status(settings).values())
    local.up(settings)
    try:
        ref_id = asyncio.run(_demo_reference(settings, guide))
        print("starting gateway, pose worker (BlazePose, CPU) and stream processor ...", flush=True)
        with Services(settings, settings.state_dir / "logs"):
            # warm: a probe session streams the clip until its first score comes back, so the patient's
            # session meets services that have loaded their models, joined their groups and scored once
            # (the first demo on a fresh machine printed 1 score: the services were still warming up)
            probe_s = asyncio.run(_warm_up(settings.gateway_url, ref_id, str(patient)))
            print(f"ready after {time.monotonic() - t_start:.1f}s (a probe frame scored in {probe_s:.1f}s); "
                  f"streaming the patient clip", flush=True)
            session_id, received = asyncio.run(
                _stream(settings.gateway_url, ref_id, str(patient), args.loops, as_json=False))
            rows = asyncio.run(_count_rows(settings, session_id, len(received)))  # (the writer's last upserts)
        lat = [r.latency_ms for r in received]
        gaps = [(b.received_ms - a.received_ms) for a, b in zip(received[5:], received[6:])]
        summary = {
            "session_id": session_id, "scores": len(received),
            "latency_p50_ms": round(percentile(lat, 50), 1), "latency_p95_ms": round(percentile(lat, 95), 1),
            "max_gap_between_scores_ms": max(gaps) if gaps else None,
            "final_session_similarity": received[-1].score.session_similarity if received else None,
            "reps": received[-1].score.reps if received else 0,
            "rows_in_mysql": rows, "wall_s": round(time.monotonic() - t_start, 1),
        }
        print("summary " + json.dumps(summary), flush=True)
    finally:
        if not (was_running or args.keep_stack):
            local.down(settings)
    return 0 if received and rows == len(received) else 1
