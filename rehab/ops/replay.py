"""Re-scoring a stored session from the keypoints topic with the current scorer (for analysts).

Reads with a consumer in no group, from the start of the topic to its end as it is now, so live
consumers are not disturbed; keeps only the session's frames (its key), in capture order. A tombstone
(an erasure's, rehab/ops/erasure.py) removes the frame it names, before the broker's compaction does.
"""
from __future__ import annotations

import csv
from pathlib import Path

from kafka import TopicPartition

from rehab.coco import NAMES
from rehab.adapters.kafka_clients import reader
from rehab.records import KeypointFrame, MessageError, Score
from rehab.topics import session_of


def read_session(bootstrap: str, topic: str, session_id: str, since_ms: int | None = None,
                 until_ms: int | None = None, poll_ms: int = 500) -> list[KeypointFrame]:
    consumer = reader(bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            raise ValueError(f"topic {topic} does not exist")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        frames: dict[int, KeypointFrame] = {}
        seq_of: dict[bytes, int] = {}  # record key -> the frame it carried
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=poll_ms).values():
                for r in records:
                    if session_of(r.key) != session_id:
                        continue
                    if r.value is None:  # a tombstone: the frame under this key is erased
                        frames.pop(seq_of.pop(r.key, None), None)
                        if b"/" not in r.key:  # an old key (the session id alone): all of the session's frames
                            frames.clear()
                        continue
                    try:
                        f = KeypointFrame.from_json(r.value)
                    except MessageError:
                        continue  # the live processor dead-lettered it too
                    if (since_ms is None or f.capture_ts_ms >= since_ms) and \
                            (until_ms is None or f.capture_ts_ms <= until_ms):
                        frames[f.seq] = f  # a re-delivered frame counts once
                        seq_of[r.key] = f.seq
        return [frames[s] for s in sorted(frames)]
    finally:
        consumer.close()


KEYPOINT_COLUMNS = ["session_id", "seq", "capture_ts_ms", "model"] + \
    [f"{n}_{c}" for n in NAMES for c in ("x", "y", "conf")]
SCORE_COLUMNS = ["session_id", "window_start_seq", "window_end_seq", "window_end_ts_ms", "similarity",
                 "session_similarity", "phase", "reps", "scorer_version", "top_correction"]


def _rows(frames: list[KeypointFrame], scores: list[Score]) -> tuple[list[list], list[list]]:
    kp = [[f.session_id, f.seq, f.capture_ts_ms, f.model] +
          ([float(v) for row in f.keypoints for v in row] if f.keypoints else [None] * 51) for f in frames]
    sc = [[s.session_id, s.window_start_seq, s.window_end_seq, s.window_end_ts_ms, s.similarity,
           s.session_similarity, s.phase, s.reps, s.scorer_version,
           s.corrections[0]["message"] if s.corrections else ""] for s in scores]
    return kp, sc


def export(folder: Path, frames: list[KeypointFrame], scores: list[Score], fmt: str = "csv") -> tuple[Path, Path]:
    """keypoints.{csv,parquet} (one row per frame, 17 x (x, y, conf), empty when nobody was seen) and
    scores.{csv,parquet} (one row per window score)."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown export format {fmt!r}: csv or parquet")
    folder.mkdir(parents=True, exist_ok=True)
    kp_rows, sc_rows = _rows(frames, scores)
    out = []
    for name, columns, rows in (("keypoints", KEYPOINT_COLUMNS, kp_rows), ("scores", SCORE_COLUMNS, sc_rows)):
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            with open(path, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(columns)
                w.writerows([["" if v is None else v for v in r] for r in rows])
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
            pq.write_table(table, path)
        out.append(path)
    return out[0], out[1]


def plot(path: Path, scores: list[Score], title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = scores[0].window_end_ts_ms if scores else 0
    t = [(s.window_end_ts_ms - t0) / 1000 for s in scores]
    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=100)
    ax.plot(t, [s.similarity for s in scores], label="window similarity")
    ax.plot(t, [s.session_similarity for s in scores], label="session similarity", linestyle="--")
    for prev, s, x in zip(scores, scores[1:], t[1:]):
        if s.reps > prev.reps:
            ax.axvline(x, color="green", alpha=0.5)
            ax.text(x, 1.02, f"rep {s.reps}", color="green", fontsize=8, ha="center")
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("seconds")
    ax.set_ylabel("similarity")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
