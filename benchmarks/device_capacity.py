"""How many on-device-mode sessions one gateway holds, printed as JSON. Each session is a real aiortc client
sending the patient clip's keypoints over its data channel at FPS; the benchmark reads one partition of
the keypoints topic (the quarter of the sessions that hash to it: a sample, as reading every frame
would take CPU from the gateway) and measures, per frame, capture -> in Kafka (the gateway's whole job: receive over
DTLS/SCTP, validate, publish), frames lost, sessions that failed, and the CPU the gateway process used.
Only the gateway runs: scoring them is the stream processor's capacity (``processor_throughput``); the
benchmark writes synthetic scores (``--score-rate`` a second per session) to the scores topic instead,
which the gateway pushes down each session's data channel, and reports scores topic -> client.
``client_frames_sent_late`` is how late the clients sent frames after their capture time: that part of
capture -> in Kafka is the load generator's, not the gateway's.

    ./dev bench device_capacity [--sessions 200] [--seconds 60] [--fps 15] [--per-process 50]
Target (issue 5): at least 200 concurrent on-device sessions on one gateway. The clients run on the same
machine (they use about as much CPU as the gateway does).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from benchmarks.common import bench_stack, clip_frames, percentiles  # noqa: E402
from rehab.records import now_ms  # noqa: E402
from rehab.stack.services import Services  # noqa: E402
from rehab.adapters.kafka_clients import default_partition  # noqa: E402

CLIP = "pose2sim_single_cam02.mp4"
SAMPLE_PARTITION = 0


def sampled(session_id: str, partitions: int) -> bool:
    """Whether the session's frames are in the measured partition (Kafka's default partitioner)."""
    return default_partition(session_id, partitions) == SAMPLE_PARTITION
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def clients(gateway: str, first: int, n: int, seconds: float, fps: float, ramp_s: float, keypoints, nice: int,
            bootstrap: str, scores_topic: str, score_rate: float, out) -> None:
    from aiokafka import AIOKafkaProducer

    from rehab.cli.client import create_session, stream_keypoints
    from rehab.records import Score

    os.nice(nice)
    lag: list[float] = []
    push: list[int] = []  # score_ts -> received on the data channel, ms
    active: dict[str, int] = {}

    async def feed(producer) -> None:
        """Scores for this process's sessions at ``score_rate`` a second each, as a processor would send
        them: the gateway pushes each down its session's data channel."""
        while True:
            await asyncio.sleep(1.0 / score_rate)
            t = now_ms()
            for sid in list(active):
                active[sid] += 1
                sc = Score(sid, 0, active[sid], t, t, 0.5, {}, [], 0.0, 0, "bench", t, t, t, "guide")
                await producer.send(scores_topic, key=sid.encode(), value=sc.to_json())

    async def one(k: int):
        await asyncio.sleep(ramp_s * k / max(n, 1))
        grant = await create_session(gateway, "guide", patient_id=f"edge-{first + k}", mode="device")
        frames = [keypoints[i % len(keypoints)] for i in range(int(seconds * fps))]
        errors: list[str] = []
        active[grant.session_id] = 0
        try:
            async for r in stream_keypoints(gateway, grant, frames, fps, tail_s=1.0, errors=errors, send_lag_ms=lag):
                push.append(r.received_ms - r.score.score_ts_ms)
        finally:
            active.pop(grant.session_id, None)
        return grant.session_id, len(frames), errors

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        feeder = asyncio.create_task(feed(producer)) if score_rate > 0 else None
        results = await asyncio.gather(*(one(k) for k in range(n)), return_exceptions=True)
        if feeder is not None:
            feeder.cancel()
        await producer.stop()
        # frames that left more than 1 ms after their capture time (the rest left on time)
        out.put(([r if not isinstance(r, BaseException) else repr(r) for r in results], [x for x in lag if x > 1],
                 push))

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60, help="how long each session streams")
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--per-process", type=int, default=50, help="client sessions per client process")
    ap.add_argument("--ramp", type=float, default=20, help="seconds over which the sessions start")
    ap.add_argument("--score-rate", type=float, default=4,
                    help="synthetic scores a second per session written to the scores topic, which the gateway "
                         "pushes down each session's data channel (a processor's 4/s floor; 0: none)")
    ap.add_argument("--client-nice", type=int, default=0,
                    help="niceness of the client processes (they compete with the gateway for this machine's "
                         "CPU; 0: equally. A higher value starves them: at 10 their peer connections failed)")
    args = ap.parse_args()
    frames = clip_frames(CLIP)
    step = max(1, round(60 / args.fps))  # the 60 fps clip at the camera's rate
    keypoints = [(f.width, f.height, f.keypoints) for f in frames[::step]]
    with bench_stack(services=(), session_max_fps=int(args.fps), token_ttl_s=int(args.seconds) + 900,
                     session_idle_s=60) as settings:
        # One partition of the keypoints topic, the sessions that hash to it, is the sample measured: reading
        # all of them would take ~0.15 of a core from the machine the gateway and clients share.
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, fetch_max_wait_ms=10)
        consumer.assign([TopicPartition(settings.topics.keypoints, SAMPLE_PARTITION)])
        consumer.seek_to_end()
        seen: list[tuple[int, str, int, int]] = []  # (received_ms, session, capture -> kafka, capture -> gateway)
        stop = threading.Event()

        def read():
            while not stop.is_set():
                for batch in consumer.poll(timeout_ms=100).values():
                    t = now_ms()
                    for m in batch:
                        f = orjson.loads(m.value)
                        seen.append((t, f["session_id"], t - f["capture_ts_ms"], f["gateway_ts_ms"] - f["capture_ts_ms"]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        with tempfile.TemporaryDirectory() as logs, Services(settings, Path(logs), names=("gateway",)) as services:
            gw_pid = services.procs["gateway"].pid
            ctx = mp.get_context("spawn")
            out = ctx.Queue()
            groups = [(i, min(args.per_process, args.sessions - i)) for i in range(0, args.sessions, args.per_process)]
            procs = [ctx.Process(target=clients, args=(settings.gateway_url, i, n, args.seconds, args.fps, args.ramp,
                                                       keypoints, args.client_nice, settings.kafka_bootstrap,
                                                       settings.topics.scores, args.score_rate, out))
                     for i, n in groups]
            t0 = now_ms()
            for p in procs:
                p.start()
            # the steady window: every session started (ramp + connection set-up), none finished
            steady_from, steady_to = t0 + (args.ramp + 5) * 1000, t0 + args.seconds * 1000
            cpu = {}
            while now_ms() < steady_to:
                if "from" not in cpu and now_ms() >= steady_from:
                    cpu["from"] = (now_ms(), cpu_seconds(gw_pid))
                time.sleep(0.2)
            cpu["to"] = (now_ms(), cpu_seconds(gw_pid))
            replies = [out.get(timeout=args.seconds + 300) for _ in procs]
            results = [r for rs, _, _ in replies for r in rs]
            late = [x for _, lags, _ in replies for x in lags]
            pushed = [x for _, _, p in replies for x in p]
            for p in procs:
                p.join(30)
        stop.set()
        reader.join(5)
        consumer.close()
    ok = [r for r in results if not isinstance(r, str)]
    failed = [r for r in results if isinstance(r, str)]
    parts = next(s.partitions for s in settings.topics.specs() if s.name == settings.topics.keypoints)
    in_sample = [r for r in ok if sampled(r[0], parts)]
    sent = sum(n for _, n, _ in ok)
    per_session: dict[str, int] = {}
    for _, sid, _, _ in seen:
        per_session[sid] = per_session.get(sid, 0) + 1
    steady = [row for row in seen if steady_from <= row[0] < steady_to]
    active = {row[1] for row in steady}
    buckets = []
    for start in range(0, int(args.seconds), 10):
        rows = [row for row in seen if t0 + start * 1000 <= row[0] < t0 + (start + 10) * 1000]
        if rows:
            buckets.append({"from_s": start, "sampled_sessions_publishing": len({row[1] for row in rows}),
                            **percentiles([row[2] for row in rows])})
    span_s = (cpu["to"][0] - cpu["from"][0]) / 1000 if "from" in cpu else None
    print(json.dumps({
        "sessions": args.sessions, "fps": args.fps, "seconds": args.seconds,
        "client_processes": len(groups), "sessions_failed": len(failed), "failures": failed[:5],
        "sampled_sessions_sending_in_steady_window": len(active),
        "frames_sent": sent, "sampled_sessions": len(in_sample), "sampled_frames_in_kafka": len(seen),
        "sampled_frames_lost": sum(n for _, n, _ in in_sample) - sum(per_session.get(sid, 0) for sid, _, _ in in_sample),
        "data_channel_errors": sorted({e for _, _, errs in ok for e in errs})[:5],
        "steady_window_s": span_s,
        "sampled_frames_per_s": round(len(steady) / span_s, 1) if span_s else None,
        "capture_to_kafka_ms": percentiles([row[2] for row in steady]),
        "client_frames_sent_late": {"share": round(len(late) / max(sent, 1), 4), **percentiles(late)},
        "score_rate_per_session": args.score_rate,
        "scores_received_per_s_per_session": round(len(pushed) / args.seconds / max(len(ok), 1), 2),
        "score_to_data_channel_ms": percentiles(pushed),
        "capture_to_gateway_ms": percentiles([row[3] for row in steady]),
        "gateway_cpu_cores": round((cpu["to"][1] - cpu["from"][1]) / span_s, 3) if span_s else None,
        "per_10s": buckets,
        "target_sessions": 200,
    }, indent=2))


if __name__ == "__main__":
    main()
