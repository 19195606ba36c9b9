"""Scoring throughput of one stream processor through Kafka, printed as JSON: keypoint frames/s from
the moment the processor starts reading a pre-filled topic until every session's last frame is scored
(so it includes JSON decoding, validation, scoring, publishing and MySQL upserts).

    ./dev bench processor_throughput [--sessions 20] [--frames-per-session 600]
Needs the local stack (./dev rehab stack up). Uses its own topic namespace and database, removed after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from benchmarks.common import bench_stack, clip_frames  # noqa: E402
from rehab.records import Score  # noqa: E402
from rehab.services import Services  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--frames-per-session", type=int, default=600)
    ap.add_argument("--coalesce-after", type=int, default=0,
                    help="the processor's load shedding (REHAB_PROCESSOR_COALESCE_AFTER); 0 (default here): "
                         "every due window is scored, which is the scoring capacity; 8: the live default, "
                         "a backlog is scored at its newest frames only (catch-up speed)")
    args = ap.parse_args()
    attempt = clip_frames("pose2sim_single_cam02.mp4")
    # the services start after the topic is filled, so the clock starts with the processor
    with bench_stack(services=(), processor_coalesce_after=args.coalesce_after) as settings:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, batch_size=1 << 20)
        n = args.frames_per_session
        for s in range(args.sessions):
            sid = f"s{s}"
            for i in range(n):
                f = dataclasses.replace(attempt[i % len(attempt)], session_id=sid, seq=i, reference_id="guide",
                                        capture_ts_ms=1_000_000 + round(i * 1000 / 30))  # a 30 fps camera
                producer.send(settings.topics.keypoints, key=sid.encode(), value=f.to_json())
        producer.flush()
        total = args.sessions * n
        consumer = KafkaConsumer(settings.topics.scores, bootstrap_servers=settings.kafka_bootstrap,
                                 group_id=None, auto_offset_reset="earliest")
        with tempfile.TemporaryDirectory() as logs, Services(settings, Path(logs), names=("processor",)):
            t0 = time.monotonic()
            done, scores = set(), 0
            while len(done) < args.sessions and time.monotonic() - t0 < 600:
                for batch in consumer.poll(timeout_ms=200).values():
                    for m in batch:
                        sc = Score.from_json(m.value)
                        scores += 1
                        if sc.window_end_seq == n - 1:
                            done.add(sc.session_id)
            elapsed = time.monotonic() - t0
        consumer.close()
    print(json.dumps({
        "sessions": args.sessions, "keypoint_frames": total, "scores": scores,
        "coalesce_after": args.coalesce_after,
        "sessions_finished": len(done), "seconds": round(elapsed, 2),
        "keypoint_frames_per_s": round(total / elapsed, 1), "scores_per_s": round(scores / elapsed, 1),
        "note": "includes processor start-up (Faust rebalance, first MySQL connection)",
        "target_keypoint_frames_per_s": 20000,
    }, indent=2))


if __name__ == "__main__":
    main()
