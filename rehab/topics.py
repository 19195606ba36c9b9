"""Kafka topic names: defined here once, versioned, optionally namespaced (tests use a namespace
so each test gets topics of its own)."""
from __future__ import annotations

from dataclasses import dataclass

FRAMES = "rehab.frames.v1"
KEYPOINTS = "rehab.keypoints.v1"
SCORES = "rehab.scores.v1"
DEAD_LETTER = "rehab.deadletter.v1"
# the stream processor's Faust tables; Faust keeps each in a changelog topic named
# "{processor app id}-{table}-changelog", partitioned as the keypoints topic (co-partitioned)
PROCESSOR_TABLES = ("session_to_state", "session_to_window")
# how long each topic keeps its records by default, ms (-1: forever); REHAB_RETENTION_*_MS override them
RETENTION_FRAMES_MS = 3_600_000  # camera frames: only useful live
RETENTION_KEYPOINTS_MS = -1  # replay and re-scoring read these
RETENTION_SCORES_MS = -1
RETENTION_DEAD_LETTER_MS = 30 * 86_400_000
# how long an erased record may stay on the broker's disks (rehab/ops/erasure.py): the compacted topics roll
# a segment at least this often and the cleaner compacts it within this time (max.compaction.lag.ms)
ERASURE_DEADLINE_MS = 86_400_000


def changelog_topics(processor_app_id: str) -> list[str]:
    return [f"{processor_app_id}-{table}-changelog" for table in PROCESSOR_TABLES]


# Record keys. The keypoints, scores and dead-letter topics are compacted (so that erasure can remove a
# patient's records: a tombstone per key), hence every record has a key of its own: the session id, "/",
# then what makes the record unique (a frame's seq, a window's end). The session part alone picks the
# partition (rehab/adapters/kafka_clients.py), so a session's records stay in one partition, in order. (Session
# ids never hold a "/": rehab.reference._ID.) Records keyed by the session id alone (older) still read right.
def record_key(session_id: str, part) -> bytes:
    return f"{session_id}/{part}".encode()


def session_of(key: bytes | None) -> str | None:
    """The session a record key belongs to (None: no key)."""
    return None if key is None else key.split(b"/", 1)[0].decode("utf-8", "replace")


def dead_letter_key(key: bytes | None, topic: str, partition: int, offset: int) -> bytes:
    """A dead letter's own key: its record's session (or "-") and where the record was."""
    return f"{session_of(key) or '-'}/dead/{topic}/{partition}/{offset}".encode()


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int  # -1 keeps forever
    compacted: bool = False  # a key per record; erasure tombstones them (rehab/ops/erasure.py)
    erasure_ms: int = ERASURE_DEADLINE_MS

    @property
    def configs(self) -> dict[str, str]:
        """Topic configs that make the retention real: Kafka deletes whole segments, and only once a
        segment is closed (segment.ms, 7 days by default), so a "1 h" topic really kept records up to
        7 days. A finite retention rolls a segment every sixth of it: records live at most ~1.2x the
        retention (plus the broker's 5-minute retention check)."""
        out = {"retention.ms": str(self.retention_ms)}
        if self.retention_ms > 0:
            out["segment.ms"] = str(max(self.retention_ms // 6, 60_000))
        if self.compacted:
            out.update(compaction_configs(self.erasure_ms, self.retention_ms > 0))
            out["segment.ms"] = str(min(int(out.get("segment.ms", self.erasure_ms)), self.erasure_ms))
        return out


def compaction_configs(erasure_ms: int, and_delete: bool = False) -> dict[str, str]:
    """A compacted topic whose tombstoned records are gone from the broker within ``erasure_ms``: the
    cleaner compacts a segment at the latest that long after its first record (and rolls the active
    one), and the tombstones themselves go that long after compaction."""
    return {"cleanup.policy": "compact,delete" if and_delete else "compact",
            "max.compaction.lag.ms": str(erasure_ms), "delete.retention.ms": str(erasure_ms),
            "segment.ms": str(erasure_ms)}


@dataclass(frozen=True)
class Topics:
    """The four topics of one deployment. ``namespace`` prefixes every name (``t1.rehab.frames.v1``);
    ``partitions``: of the frames, keypoints and scores topics (the dead-letter topic has one)."""

    namespace: str = ""
    partitions: int = 4
    retention_frames_ms: int = RETENTION_FRAMES_MS
    retention_keypoints_ms: int = RETENTION_KEYPOINTS_MS
    retention_scores_ms: int = RETENTION_SCORES_MS
    retention_dead_letter_ms: int = RETENTION_DEAD_LETTER_MS
    erasure_ms: int = ERASURE_DEADLINE_MS

    def _name(self, base: str) -> str:
        return f"{self.namespace}.{base}" if self.namespace else base

    @property
    def frames(self) -> str:
        return self._name(FRAMES)

    @property
    def keypoints(self) -> str:
        return self._name(KEYPOINTS)

    @property
    def scores(self) -> str:
        return self._name(SCORES)

    @property
    def dead_letter(self) -> str:
        return self._name(DEAD_LETTER)

    def specs(self) -> list[TopicSpec]:
        partitions = self.partitions
        return [
            # frames are only useful live: not compacted, erased by their retention (1 h by default)
            TopicSpec(self.frames, partitions, self.retention_frames_ms),
            TopicSpec(self.keypoints, partitions, self.retention_keypoints_ms, True, self.erasure_ms),  # replay
            TopicSpec(self.scores, partitions, self.retention_scores_ms, True, self.erasure_ms),
            TopicSpec(self.dead_letter, 1, self.retention_dead_letter_ms, True, self.erasure_ms),
        ]
