"""The Faust stream processor on the real broker and database: scores out, rows upserted, malformed
messages dead-lettered, a replay by a new consumer group duplicates nothing."""
import asyncio
import dataclasses
import json
import time

from kafka import KafkaConsumer, KafkaProducer

from rehab.records import Score
from rehab.reference import Reference
from rehab.services import Services
from rehab.storage.repository import Database


def _consume(settings, topic, expect, timeout=60.0):
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=500)
    out, deadline = [], time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [m for m in consumer]
    consumer.close()
    return out


async def _db_call(settings, fn):
    db = await Database.connect(settings)
    try:
        return await fn(db)
    finally:
        await db.close()


def test_processor_scores_upserts_and_survives_bad_messages(isolated_settings, clip_keypoints, tmp_path):
    s = isolated_settings
    ref_frames = clip_keypoints("pose2sim_single_cam01.mp4")
    ref = Reference("guide", "guide", 60.0, ref_frames[0].width, ref_frames[0].height, "blazepose", "v",
                    "0" * 64, [f.keypoints for f in ref_frames])
    asyncio.run(_db_call(s, lambda db: db.save_reference(ref)))
    attempt = [dataclasses.replace(f, session_id="patient-1", reference_id="guide")
               for f in clip_keypoints("pose2sim_single_cam02.mp4")]

    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    bad = attempt[0].to_json().replace(b'"seq":0,', b'"seq":"x",')
    assert bad != attempt[0].to_json()
    producer.send(s.topics.keypoints, key=b"patient-1", value=bad)
    producer.send(s.topics.keypoints, key=b"ghost", value=dataclasses.replace(
        attempt[0], session_id="ghost", reference_id="nope").to_json())
    for f in attempt:
        producer.send(s.topics.keypoints, key=b"patient-1", value=f.to_json())
    producer.flush()

    with Services(s, tmp_path / "run1", names=("processor",)):
        scores = [Score.from_json(m.value) for m in _consume(s, s.topics.scores, 40)]
        letters = [json.loads(m.value) for m in _consume(s, s.topics.dead_letter, 2, timeout=20)]
        time.sleep(1.0)
    rows = asyncio.run(_db_call(s, lambda db: db.count_scores("patient-1")))

    assert len(scores) >= 40, f"one score per frame once half a window is seen; got {len(scores)}"
    assert all(sc.session_id == "patient-1" and sc.reference_id == "guide" for sc in scores)
    assert rows == len({(sc.window_start_seq, sc.window_end_seq) for sc in scores}) == len(scores)
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert "seq must be an integer" in reasons and "unknown reference 'nope'" in reasons, reasons

    # A replay: a processor with a new consumer group re-reads the topic from the start.
    replay = s.with_(processor_app_id=s.processor_app_id + "-replay")
    with Services(replay, tmp_path / "run2", names=("processor",)):
        _consume(s, s.topics.scores, 2 * len(scores))
        time.sleep(1.0)
    rows_after = asyncio.run(_db_call(s, lambda db: db.count_scores("patient-1")))
    assert rows_after == rows, "replaying the keypoints topic must not duplicate score rows"
    producer.close()
