"""Scoring throughput of one stream processor through Kafka, printed as JSON: keypoint frames/s from
the moment the processor starts reading a pre-filled topic until every session's last frame is scored
(so it includes JSON decoding, validation, scoring, publishing and MySQL upserts).

    ./dev bench processor_throughput [--sessions 20] [--frames-per-session 600]
Needs the local stack (./dev rehab stack up). Uses its own topic namespace and database, removed after.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from edge.backends import create_backend  # noqa: E402
from edge.extract import extract  # noqa: E402
from rehab.records import Score  # noqa: E402
from rehab.reference import Reference  # noqa: E402
from rehab.services import Services  # noqa: E402
from rehab.settings import REPO_ROOT, Settings  # noqa: E402
from rehab.stack.topics import delete_topics, ensure_topics  # noqa: E402
from rehab.storage.migrate import drop_database, migrate  # noqa: E402
from rehab.storage.repository import Database  # noqa: E402


async def _prepare(settings: Settings, ref: Reference) -> None:
    await migrate(settings)
    async with Database.opened(settings) as db:
        await db.save_reference(ref)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--frames-per-session", type=int, default=600)
    ap.add_argument("--coalesce-after", type=int, default=0,
                    help="the processor's load shedding (REHAB_PROCESSOR_COALESCE_AFTER); 0 (default here): "
                         "every due window is scored, which is the scoring capacity; 8: the live default, "
                         "a backlog is scored at its newest frames only (catch-up speed)")
    args = ap.parse_args()
    tag = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env().with_(topic_namespace=tag, mysql_db=f"rehab_{tag}",
                                         processor_app_id=f"{tag}-processor",
                                         processor_coalesce_after=args.coalesce_after)
    backend = create_backend("blazepose")
    guide = list(extract(REPO_ROOT / "data" / "pose2sim_single_cam01.mp4", backend))
    attempt = list(extract(REPO_ROOT / "data" / "pose2sim_single_cam02.mp4", backend))
    backend.close()
    ref = Reference("guide", "guide", 60.0, guide[0].width, guide[0].height, "blazepose", "v", "0" * 64,
                    [f.keypoints for f in guide])
    ensure_topics(settings.kafka_bootstrap, settings.topics)
    asyncio.run(_prepare(settings, ref))
    try:
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
    finally:
        delete_topics(settings.kafka_bootstrap, [s.name for s in settings.topics.specs()])
        asyncio.run(drop_database(settings))


if __name__ == "__main__":
    main()
