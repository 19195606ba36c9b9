"""Erasing a patient (``rehab patient erase ID``, ``POST /patients/{id}/erase``): their rows, their
sessions' records in the topics and the processor's state of their sessions.

The order makes it complete:
1. The patient is removed (credentials revoked): every gateway ends their live sessions and closes their
   streams within ``REVOCATION_POLL_S``; their session ids are listed in ``erased_sessions``, so a
   score still in flight cannot bring a MySQL row back (the writer drops it).
2. After ``QUIESCE_S`` (frames in flight are scored or dropped by then), every record of their sessions
   in the keypoints, scores and dead-letter topics gets a tombstone (a record with its key and no
   value), as do the sessions' keys in the processor's changelogs. These topics are compacted
   (``rehab.topics.TopicSpec``) with a key per record, so compaction removes exactly those records,
   and the tombstones themselves after ``REHAB_ERASURE_DEADLINE_MS``; the broker does it within that
   deadline (``max.compaction.lag.ms``). Replay applies tombstones at once (``rehab.ops.replay``).
3. Their rows go: scores, sessions, invitations, credentials, the patient. The audit log keeps one
   entry: who erased which patient id, when, and how many sessions and records.

Camera frames are not tombstoned: the frames topic keeps a record only for ``REHAB_RETENTION_FRAMES_MS``
(1 h by default) and is not compacted (docs/operations.md).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rehab.settings import Settings
from rehab.adapters.kafka_admin import uncompacted_topics
from rehab.adapters.storage.identity import Identity
from rehab.adapters.storage.repository import Database
from rehab.adapters.kafka_clients import default_partition
from rehab.topics import changelog_topics, session_of

QUIESCE_S = 5.0  # the pipeline's frames in flight are scored (or dropped as too old) well within this


@dataclass
class ErasureReport:
    patient_id: str
    sessions: list[str]
    tombstones: dict[str, int] = field(default_factory=dict)  # topic -> records tombstoned
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted
    # topics an older version created and ``rehab init`` left uncompacted: tombstoned there, but the
    # records stay until the topic's retention (docs/operations.md)
    not_compacted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"patient_id": self.patient_id, "sessions": len(self.sessions), "tombstones": self.tombstones,
                "rows_deleted": self.rows, "topics_not_compacted": self.not_compacted}


async def erase_patient(settings: Settings, patient_id: str, actor: str, quiesce_s: float = QUIESCE_S,
                        on_removed=None) -> ErasureReport:
    """Erases everything of ``patient_id`` (see the module's docstring); LookupError when nothing is
    known of them. ``on_removed()`` (a gateway's own streams and sessions) runs right after step 1."""
    async with Database.opened(settings) as db:
        identity = Identity(db)
        sessions = [s["session_id"] for s in await identity.sessions_of(patient_id)]
        if await identity.patient(patient_id) is None and not sessions:
            raise LookupError(f"nothing is stored of patient {patient_id!r}")
        await identity.remove(patient_id, actor, enrol_missing=True)  # demo-mode patients have no row yet
        await identity.mark_erased(sessions)
        if on_removed is not None:
            await on_removed()
        await asyncio.sleep(quiesce_s)
        report = ErasureReport(patient_id, sessions)
        report.tombstones = await asyncio.to_thread(tombstone_sessions, settings, sessions)
        report.not_compacted = await asyncio.to_thread(uncompacted_topics, settings.kafka_bootstrap, settings.topics)
        report.rows = await identity.delete_patient(patient_id, sessions)
        await identity.audit(actor, "patient_erased", patient_id, sessions=len(sessions),
                             records_tombstoned=sum(report.tombstones.values()))
        return report


def tombstone_sessions(settings: Settings, session_ids: list[str]) -> dict[str, int]:
    """Tombstones every record of these sessions in the keypoints, scores and dead-letter topics, and
    the sessions' keys in the processor's changelogs; topic -> tombstones written."""
    from kafka import TopicPartition

    from rehab.adapters.kafka_clients import producer as kafka_producer, reader

    wanted = set(session_ids)
    out: dict[str, int] = {}
    if not wanted:
        return out
    topics = settings.topics
    consumer = reader(settings.kafka_bootstrap)
    producer = kafka_producer(settings.kafka_bootstrap, linger_ms=5)
    try:
        for topic in (topics.keypoints, topics.scores, topics.dead_letter):
            n_parts = len(consumer.partitions_for_topic(topic) or ())
            if not n_parts:
                continue
            # every partition: a session's records are in its own (rehab.adapters.kafka_clients.session_partitioner), but
            # a record some other producer keyed differently is found too; erasure is rare, a scan is fine
            keys = _live_keys(consumer, [TopicPartition(topic, p) for p in range(n_parts)], wanted)
            for (partition, key) in keys:
                producer.send(topic, key=key, value=None, partition=partition)
            out[topic] = len(keys)
        # the changelogs that exist (none: the processor never ran under this app id), with their partitions
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in changelog_topics(settings.processor_app_id)}
        changelogs = {t: n for t, n in counts.items() if n}
        set_compaction(settings, list(changelogs))  # Faust created them compacted, but without our deadline
        for topic, n_parts in changelogs.items():
            for sid in wanted:  # the processor writes a session's state to its keypoints partition
                producer.send(topic, key=sid.encode(), value=None, partition=default_partition(sid, n_parts))
            out[topic] = len(wanted)
        producer.flush()
    finally:
        producer.close()
        consumer.close()
    return out


def _live_keys(consumer, partitions, wanted: set[str]) -> set[tuple[int, bytes]]:
    """(partition, key) of the records of ``wanted`` sessions that have a value and no later tombstone."""
    from kafka import TopicPartition

    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    end = consumer.end_offsets(partitions)
    found: set[tuple[int, bytes]] = set()
    while any(consumer.position(tp) < end[tp] for tp in partitions):
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                if r.offset >= end[TopicPartition(r.topic, r.partition)] or session_of(r.key) not in wanted:
                    continue
                if r.value is None:
                    found.discard((r.partition, r.key))
                else:
                    found.add((r.partition, r.key))
    return found


def set_compaction(settings: Settings, topics: list[str]) -> None:
    """The processor's changelogs get the erasure deadline of the other compacted topics."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from rehab.adapters.kafka_admin import admin
    from rehab.topics import compaction_configs

    if not topics:
        return
    client = admin(settings.kafka_bootstrap)
    try:
        client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=compaction_configs(
            settings.erasure_deadline_ms)) for t in topics])
    finally:
        client.close()
