"""The processor's score writer (scores topic -> MySQL rows) on the real broker: it writes every score
once its batch is read, sends what is not a score to the dead letters, commits only what MySQL has,
and, on its first start after the upgrade from the Faust agent, starts where that agent's group had got
to instead of rewriting the whole topic."""
import asyncio

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from rehab.records import Score
from stream_processor.score_writer import ScoreWriter, rows_group


def _score(seq: int) -> Score:
    return Score(session_id="s1", window_start_seq=seq, window_end_seq=seq + 30, window_start_ts_ms=1000 + seq,
                 window_end_ts_ms=2000 + seq, similarity=0.5, joints={}, corrections=[], phase=0.0, reps=0,
                 scorer_version="test", gateway_ts_ms=0, infer_ts_ms=0, score_ts_ms=0)


def _commit(settings, group: str, partition: int, offset: int) -> None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    consumer.commit({TopicPartition(settings.topics.scores, partition): OffsetAndMetadata(offset, "", -1)})
    consumer.close()


def _committed(settings, group: str, partition: int) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(settings.topics.scores, partition))
    finally:
        consumer.close()


def _write_until(settings, expected_rows: int, expected_letters: int, timeout: float = 60.0):
    rows, letters = [], []

    async def store(scores):
        rows.extend(scores)

    async def letter(topic, partition, offset, key, value, reason):
        letters.append((offset, reason))

    async def main():
        task = asyncio.create_task(ScoreWriter(settings, store, letter).run())
        deadline = asyncio.get_running_loop().time() + timeout
        while (len(rows) < expected_rows or len(letters) < expected_letters) \
                and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # anything more it would write (it must not)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return rows, letters


def test_the_writer_starts_where_the_faust_group_stopped_and_commits_what_it_wrote(isolated_settings):
    s = isolated_settings
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    for seq in range(8):
        value = b'{"not": "a score"}' if seq == 6 else _score(seq).to_json()
        producer.send(s.topics.scores, key=f"s1/{seq}".encode(), value=value, partition=0)
    producer.send(s.topics.scores, key=b"s1/gone", value=None, partition=0)  # a tombstone: no row, no letter
    producer.flush()
    # the Faust agent that wrote the rows before had got to offset 3 of partition 0
    _commit(s, s.processor_app_id, 0, 3)

    rows, letters = _write_until(s, expected_rows=4, expected_letters=1)

    assert [r.window_start_seq for r in rows] == [3, 4, 5, 7]
    assert [offset for offset, _ in letters] == [6] and "unknown fields" in letters[0][1]
    assert _committed(s, rows_group(s), 0) == 9  # past the tombstone
    assert _committed(s, rows_group(s), 1) is None  # nothing there


def test_a_writer_restarted_goes_on_from_its_own_offsets(isolated_settings):
    s = isolated_settings
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    for seq in range(3):
        producer.send(s.topics.scores, key=f"s1/{seq}".encode(), value=_score(seq).to_json(), partition=2)
    producer.flush()
    first, _ = _write_until(s, expected_rows=3, expected_letters=0)
    for seq in range(3, 5):
        producer.send(s.topics.scores, key=f"s1/{seq}".encode(), value=_score(seq).to_json(), partition=2)
    producer.flush()
    _commit(s, s.processor_app_id, 2, 0)  # the old group's offset no longer matters once the writer has its own

    second, _ = _write_until(s, expected_rows=2, expected_letters=0)

    assert [r.window_start_seq for r in first] == [0, 1, 2]
    assert [r.window_start_seq for r in second] == [3, 4]
