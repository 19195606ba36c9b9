"""The processor's session state, in one place: what is saved, where, and how it comes back.

- The record: ``LiveScorer.snapshot()`` (counters: repetitions, running similarity, last frame
  scored) and ``LiveScorer.window_snapshot()`` (the window's frames as float32 keypoints), JSON.
- The tables: two Faust tables named by ``rehab.topics.PROCESSOR_TABLES`` (their changelog topics,
  ``changelog_topics(app_id)``, are what the erasure and ``rehab init`` know about), with the keypoints
  topic's partition count (REHAB_PARTITIONS; ``stream_processor.app.check_partitions`` refuses a
  mismatch).
- Partitioning: a session's state lives in its keypoints partition (Faust co-partitions a table with
  the stream that writes it); the partition each session's frames came from is remembered, and the
  producer's formula (``rehab.adapters.kafka_clients.default_partition``) is the fallback.
- Restore: ``ScoringState.scorer_for`` calls ``load_snapshot`` / ``load_window`` for a session this
  process has not seen (a restart, or partitions taken over on a rebalance).
State is written per batch, outside one event's context, into an ``Outbox`` (one record batch per
changelog partition) to the explicit partition: no partitioner has to look up a changelog topic's
metadata (that raced topic creation).
"""
from __future__ import annotations

import json

import faust
import orjson

from rehab.adapters.kafka_clients import default_partition
from rehab.topics import PROCESSOR_TABLES
from stream_processor.outbox import Outbox

WINDOW_SNAPSHOT_MS = 500  # the window's frames are larger: saved at most this often (capture time)


class SessionTables:
    def __init__(self, app: faust.App, partitions: int):
        state_table, window_table = PROCESSOR_TABLES
        self.partitions = partitions
        self.state = app.Table(state_table, default=None, key_type=bytes, value_type=bytes, partitions=partitions)
        self.window = app.Table(window_table, default=None, key_type=bytes, value_type=bytes, partitions=partitions)
        self.partition_of: dict[str, int] = {}  # session -> its keypoints partition (= its changelog partition)
        self.window_saved_at: dict[str, int] = {}  # session -> capture time of its last window snapshot

    def seen(self, session_id: str | None, partition: int) -> None:
        """A session's frame arrived from ``partition``: its state is written there."""
        if session_id is not None:
            self.partition_of[session_id] = partition

    def _partition(self, sid: str) -> int:
        partition = self.partition_of.get(sid)
        # not seen in this process (cannot happen for a scored session): the producer's own rule
        return default_partition(sid, self.partitions) if partition is None else partition

    def _put(self, outbox: Outbox, table, sid: str, value: bytes | None) -> None:
        key = sid.encode()
        outbox.add(table.changelog_topic.get_topic_name(), self._partition(sid), key, value)
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value

    def save(self, scorer, window_end_ts_ms: int, outbox: Outbox) -> None:
        """A session's counters after a score; its window too when the last one saved is old enough
        (into ``outbox``: the caller sends it)."""
        sid = scorer.session_id
        self._put(outbox, self.state, sid, orjson.dumps(scorer.snapshot()))
        if window_end_ts_ms - self.window_saved_at.get(sid, 0) >= WINDOW_SNAPSHOT_MS:
            self._put(outbox, self.window, sid, orjson.dumps(scorer.window_snapshot()))
            self.window_saved_at[sid] = window_end_ts_ms

    def load_snapshot(self, session_id: str) -> dict | None:
        raw = self.state.get(session_id.encode())
        return None if raw is None else json.loads(raw)

    def load_window(self, session_id: str) -> list | dict | None:
        raw = self.window.get(session_id.encode())
        return None if raw is None else json.loads(raw)

    def sessions_outside(self, partitions: set[int]) -> list[str]:
        """The sessions whose keypoints partition is not among ``partitions`` (this process's new
        assignment): forgotten here, never tombstoned (their new owner writes their state now)."""
        gone = [sid for sid, p in self.partition_of.items() if p not in partitions]
        for sid in gone:
            self._drop_local(sid)
        return gone

    def _drop_local(self, sid: str) -> None:
        """This process's maps of a session (the tables' data is the caller's to decide)."""
        self.partition_of.pop(sid, None)
        self.window_saved_at.pop(sid, None)

    def forget(self, sid: str, outbox: Outbox) -> None:
        """Releases an evicted session everywhere: tombstones in both tables' changelogs (into
        ``outbox``; compaction then drops its state for good), and this process's maps."""
        for table in (self.state, self.window):
            if sid.encode() in table.data:
                self._put(outbox, table, sid, None)
        self._drop_local(sid)
