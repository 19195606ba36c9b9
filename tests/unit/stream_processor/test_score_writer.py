"""``ScoreWriter.write`` with a fake consumer: a batch's offsets are committed only once its rows are
stored, a record that is not a score goes to the dead letters with its place, a tombstone is skipped."""
import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from rehab.records import Score
from rehab.settings import Settings
from stream_processor import score_writer
from stream_processor.score_writer import ScoreWriter


def _score(seq: int) -> bytes:
    return Score(session_id="s1", window_start_seq=seq, window_end_seq=seq + 30, window_start_ts_ms=1000,
                 window_end_ts_ms=2000, similarity=0.5, joints={}, corrections=[], phase=0.0, reps=0,
                 scorer_version="test", gateway_ts_ms=0, infer_ts_ms=0, score_ts_ms=0).to_json()


def _record(partition: int, offset: int, value):
    return SimpleNamespace(topic="scores", partition=partition, offset=offset, key=b"s1/x", value=value)


class FakeConsumer:
    def __init__(self, fail: Exception | None = None):
        self.commits, self.fail = [], fail

    async def commit(self, offsets):
        if self.fail is not None:
            raise self.fail
        self.commits.append({tp.partition: meta.offset for tp, meta in offsets.items()})


def _writer(store_fails: bool = False):
    stored, letters = [], []

    async def store(scores):
        if store_fails:
            raise asyncio.CancelledError  # (stopped while MySQL was away: store never returned)
        stored.append([s.window_start_seq for s in scores])

    async def letter(topic, partition, offset, key, value, reason):
        letters.append((partition, offset))

    return ScoreWriter(Settings(), store, letter), stored, letters


def test_rows_then_offsets_and_letters_for_what_is_not_a_score():
    writer, stored, letters = _writer()
    consumer = FakeConsumer()
    batch = {TopicPartition("scores", 0): [_record(0, 5, _score(1)), _record(0, 6, b"{}"), _record(0, 7, None)],
             TopicPartition("scores", 3): [_record(3, 40, _score(2))]}
    asyncio.run(writer.write(consumer, batch))
    assert stored == [[1, 2]] and letters == [(0, 6)] and writer.rows == 2
    assert consumer.commits == [{0: 8, 3: 41}]


def test_nothing_is_committed_when_the_rows_were_not_stored():
    writer, stored, _ = _writer(store_fails=True)
    consumer = FakeConsumer()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(writer.write(consumer, {TopicPartition("scores", 0): [_record(0, 5, _score(1))]}))
    assert stored == [] and consumer.commits == []


def test_a_commit_refused_after_a_rebalance_is_not_an_error():
    writer, stored, _ = _writer()
    asyncio.run(writer.write(FakeConsumer(fail=CommitFailedError("rebalanced")),
                             {TopicPartition("scores", 0): [_record(0, 5, _score(1))]}))
    assert stored == [[1]]


def test_a_failing_consumer_is_started_again_not_the_processor_taken_down(monkeypatch):
    writer, _, _ = _writer()
    starts = []

    async def fails_twice():
        starts.append(len(starts))
        if len(starts) == 1:
            raise RuntimeError("a bug")
        if len(starts) == 2:
            raise OSError("Kafka away")
        await asyncio.Event().wait()  # the third runs on

    monkeypatch.setattr(writer, "_run_once", fails_twice)
    monkeypatch.setattr(score_writer, "RETRY_FIRST_S", 0.0)

    async def main():
        task = asyncio.create_task(writer.run())
        for _ in range(100):
            if len(starts) == 3:
                break
            await asyncio.sleep(0.01)
        running = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return running

    assert asyncio.run(main()) and starts == [0, 1, 2]
