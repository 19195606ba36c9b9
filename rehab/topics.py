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


def changelog_topics(processor_app_id: str) -> list[str]:
    return [f"{processor_app_id}-{table}-changelog" for table in PROCESSOR_TABLES]


def default_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (the producers' here) gives a record keyed ``key``."""
    from kafka.partitioner.default import murmur2  # (settings import this module; most callers never need it)

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int  # -1 keeps forever

    @property
    def configs(self) -> dict[str, str]:
        """Topic configs that make the retention real: Kafka deletes whole segments, and only once a
        segment is closed (segment.ms, 7 days by default), so a "1 h" topic really kept records up to
        7 days. A finite retention rolls a segment every sixth of it: records live at most ~1.2x the
        retention (plus the broker's 5-minute retention check)."""
        out = {"retention.ms": str(self.retention_ms)}
        if self.retention_ms > 0:
            out["segment.ms"] = str(max(self.retention_ms // 6, 60_000))
        return out


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
            TopicSpec(self.frames, partitions, self.retention_frames_ms),  # frames are only useful live
            TopicSpec(self.keypoints, partitions, self.retention_keypoints_ms),  # replay reads these
            TopicSpec(self.scores, partitions, self.retention_scores_ms),
            TopicSpec(self.dead_letter, 1, self.retention_dead_letter_ms),
        ]
