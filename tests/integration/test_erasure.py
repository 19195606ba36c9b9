"""Erasure (issue 14): after ``erase_patient`` no query, no replay and no consumer finds the patient's
data, and another patient's data is all still there. A real processor scores the sessions (so scores,
MySQL rows and processor state exist), a bad frame is dead-lettered; the topics are compacted with a
1 s erasure deadline so the broker's cleaner runs within the test."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rehab.ops.erasure import erase_patient
from rehab.ops.replay import read_session
from rehab.stack.services import Services
from rehab.adapters.storage.identity import Identity
from rehab.adapters.kafka_clients import session_partitioner
from rehab.topics import changelog_topics, record_key, session_of
from tests.conftest import isolated
from tests.processor_helpers import Streams, attempt, db_call

GONE, KEPT = ("erase-a1", "erase-a2"), "keep-b1"


def _values_by_session(settings, topics: list[str]) -> dict[str, dict[str, int]]:
    """topic -> session -> records with a value now in the topic (a raw consumer, from the start)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    out: dict[str, dict[str, int]] = {}
    try:
        for topic in topics:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            end = consumer.end_offsets(parts)
            counts: dict[str, int] = {}
            while any(consumer.position(tp) < end[tp] for tp in parts):
                for records in consumer.poll(timeout_ms=300).values():
                    for r in records:
                        if r.value is not None and r.offset < end[TopicPartition(r.topic, r.partition)]:
                            sid = session_of(r.key)
                            counts[sid] = counts.get(sid, 0) + 1
            out[topic] = counts
    finally:
        consumer.close()
    return out


def test_after_erasure_no_query_replay_or_consumer_finds_the_patient(clip_keypoints, guide_reference, tmp_path):
    with isolated(erasure_deadline_ms=1000, processor_coalesce_after=0) as s:
        async def prepare():
            from rehab.adapters.storage.repository import Database
            async with Database.opened(s) as db:
                await db.save_reference(guide_reference)
                for sid in GONE:
                    await db.create_session(sid, "erase-me", "guide", "device")
                await db.create_session(KEPT, "keep-me", "guide", "device")
                identity = Identity(db)
                code, _ = await identity.enrol("erase-me", None, "test", 600)
                await identity.accept(code)
        asyncio.run(prepare())
        sessions = {sid: attempt(clip_keypoints, sid, 3.0) for sid in (*GONE, KEPT)}
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, partitioner=session_partitioner)
        bad = dataclasses.replace(sessions[GONE[0]][0], seq=10_000).to_json().replace(b'"seq":10000', b'"seq":"x"')
        producer.send(s.topics.keypoints, key=record_key(GONE[0], "bad"), value=bad)  # dead-lettered
        producer.flush()
        with Services(s, tmp_path / "run", names=("processor",)):
            Streams(s, sessions, at={}).start().join()
            for sid in sessions:
                scored = db_call(s, lambda db: db.wait_for_scores(sid, 5, timeout_s=60))
                assert scored >= 5, (sid, scored)
            changelogs = changelog_topics(s.processor_app_id)
            topics = [s.topics.keypoints, s.topics.scores, s.topics.dead_letter, *changelogs]
            before = _values_by_session(s, topics)
            report = asyncio.run(erase_patient(s, "erase-me", "test", quiesce_s=1.0))
        assert all(before[t].get(GONE[0]) for t in topics), before  # there was something to erase everywhere

        # queries: none of the patient's rows; the other patient's are untouched
        async def rows():
            from rehab.adapters.storage.repository import Database
            async with Database.opened(s) as db:
                counts = {}
                for table, where, arg in (("scores", "session_id IN (%s, %s)", GONE),
                                          ("sessions", "patient_id=%s", ("erase-me",)),
                                          ("patients", "id=%s", ("erase-me",)),
                                          ("credentials", "subject=%s", ("erase-me",)),
                                          ("invitations", "patient_id=%s", ("erase-me",)),
                                          ("scores", "session_id=%s", (KEPT,))):
                    counts[f"{table} {arg[0]}"] = (await db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}",
                                                                    arg, fetch="one"))[0]
                audit = await Identity(db).audit_entries("erase-me")
                return counts, audit
        counts, audit = asyncio.run(rows())
        assert {k: v for k, v in counts.items() if not k.startswith(f"scores {KEPT}")} == {
            "scores erase-a1": 0, "sessions erase-me": 0, "patients erase-me": 0, "credentials erase-me": 0,
            "invitations erase-me": 0}, counts
        assert counts[f"scores {KEPT}"] >= 5
        assert audit[-1]["action"] == "patient_erased" and audit[-1]["detail"]["sessions"] == 2
        assert report.as_dict()["sessions"] == 2 and report.tombstones[s.topics.keypoints] == \
            sum(len(sessions[sid]) for sid in GONE) + 1, (report, before)

        # replay: at once (tombstones are applied), before any compaction
        assert [read_session(s.kafka_bootstrap, s.topics.keypoints, sid) for sid in GONE] == [[], []]
        assert len(read_session(s.kafka_bootstrap, s.topics.keypoints, KEPT)) == len(sessions[KEPT])

        # consumers: once the broker compacted (segments roll on the next record after 1 s), no record of
        # the patient has a value in any topic, and every record of the other patient is still there
        filler = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
        deadline, after = time.monotonic() + 120, None
        while time.monotonic() < deadline:
            time.sleep(2)
            for topic in topics:
                for p in filler.partitions_for(topic):
                    filler.send(topic, key=f"filler/{time.monotonic()}".encode(), value=None, partition=p)
            filler.flush()
            after = _values_by_session(s, topics)
            if not any(after[t].get(sid) for t in topics for sid in GONE):
                break
        filler.close()
        assert not any(after[t].get(sid) for t in topics for sid in GONE), after
        # the other patient: every keypoint frame, a score per scored window (compaction keeps the last
        # of a re-scored window: one key), and the processor's state (its last value)
        assert after[s.topics.keypoints][KEPT] == len(sessions[KEPT]), after
        assert after[s.topics.scores][KEPT] >= counts[f"scores {KEPT}"], (after, counts)
        assert all(after[t].get(KEPT) for t in changelogs), after
