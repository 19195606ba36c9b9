"""The Faust app: agent ``score_windows`` consumes keypoints and publishes scores; agent
``write_scores`` upserts the scores topic into MySQL (so an outage of MySQL never holds live scores
back, and the rows arrive when it returns); a timer scores frames left pending; table
``session_to_state`` keeps each session's counters (repetitions, running similarity, last frame
scored) so a restarted processor resumes where it stopped.

Run with ``rehab serve processor``. Reads REHAB_KAFKA_BOOTSTRAP, REHAB_TOPIC_NAMESPACE, REHAB_MYSQL_*,
REHAB_PROCESSOR_APP_ID, REHAB_PROCESSOR_WINDOW_MS, REHAB_PROCESSOR_MIN_INTERVAL_MS.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import asyncmy
import faust
import orjson
from mode import Service

from rehab import metrics
from rehab.records import CAPTURE_TO_SCORED, INFERRED_TO_SCORED, DeadLetter, Score
from rehab.scoring import kernels
from rehab.settings import Settings, SettingsError
from rehab.storage.repository import Database
from rehab.kafka_clients import default_partition, session_partitioner
from rehab.topics import (PROCESSOR_TABLES, changelog_topics, dead_letter_key, record_key,
                          session_of)
from stream_processor.processor import ScoringState
from stream_processor.quiet_stream import QuietStream

log = logging.getLogger("rehab.stream_processor")
TIMER_INTERVAL_S = 0.1
WINDOW_SNAPSHOT_MS = 500
BATCH, BATCH_WITHIN_S = 1000, 0.005
# Consumer sizing: with Faust's defaults (aiokafka's 500 records a poll, a 4,096-event stream buffer,
# 1 MB a partition a fetch) the processor idles between fetches and tops out at ~3,300 keypoint
# messages/s on the bench machine even when it does nothing with them; these reach ~11,000 (measured
# by ``./dev bench processor_throughput --stage decode``). They only matter when a backlog is waiting.
CONSUMER = {"broker_max_poll_records": 10_000, "stream_buffer_maxsize": 20_000,
            "consumer_max_fetch_size": 8 << 20}


def create_app(settings: Settings, ready_file: Path | None = None) -> faust.App:
    topics = settings.topics
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.processor_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.state_dir / "faust" / "{conf.id}"),  # not the working directory
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_linger=0.0,
        producer_partitioner=session_partitioner,  # "SESSION/WINDOW_END" keys: one partition per session
        **CONSUMER,
        broker_session_timeout=10.0,  # a crashed processor's partitions move on after 10 s, not 60
        broker_heartbeat_interval=2.0,
        Stream=QuietStream,  # take_events without a timer tick while idle
    )
    keypoints = app.topic(topics.keypoints, key_type=bytes, value_type=bytes)
    scores = app.topic(topics.scores, key_type=bytes, value_type=bytes)
    dead_letter = app.topic(topics.dead_letter, key_type=bytes, value_type=bytes)
    # State is written per batch (and by the timer), outside one event's context, with ``put``: the
    # changelog partition is given explicitly (the session's keypoints partition, Faust's own rule),
    # so no partitioner has to look up a changelog topic's metadata (that raced topic creation).
    # (partitions: the keypoints topic's, REHAB_PARTITIONS; names: rehab.topics.PROCESSOR_TABLES)
    state_table, window_table = PROCESSOR_TABLES
    session_to_state = app.Table(state_table, default=None, key_type=bytes, value_type=bytes,
                                 partitions=settings.partitions)
    # the window's frames, saved at most every WINDOW_SNAPSHOT_MS of capture time (they are larger)
    session_to_window = app.Table(window_table, default=None, key_type=bytes, value_type=bytes,
                                  partitions=settings.partitions)
    window_saved_at: dict[str, int] = {}
    lag_watch: list = []
    holder: dict[str, Database] = {}
    db_lock = asyncio.Lock()

    async def db() -> Database:
        """The connection pool, opened on first use (agents may start before any service hook)."""
        if "db" not in holder:
            async with db_lock:
                if "db" not in holder:
                    holder["db"] = await Database.connect(settings)
        return holder["db"]

    async def until_done(call, what: str, where: str):
        """``call(db)``, retried while MySQL is away (backoff to 10 s, counted as
        ``rehab_errors_total{where=...}``) on a fresh pool each time: the old pool's connections died
        with the server. The caller waits rather than crash or lose anything."""
        delay = 0.5
        while True:
            try:
                return await call(await db())
            except (OSError, asyncmy.errors.OperationalError, asyncio.TimeoutError) as exc:
                metrics.ERRORS.labels("processor", where).inc()
                pool = holder.pop("db", None)
                if pool is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pool.close(), 2.0)
                log.warning("MySQL unavailable (%s); %s wait, retrying in %.1fs", exc, what, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def load_reference(reference_id: str):
        """The reference from MySQL (the agent waits while MySQL is away rather than dead-letter a good frame)."""
        return await until_done(lambda db: db.get_reference(reference_id), f"frames for reference {reference_id}",
                                "reference_lookup")

    def load_snapshot(session_id: str) -> dict | None:
        raw = session_to_state.get(session_id.encode())
        return None if raw is None else json.loads(raw)

    def load_window(session_id: str) -> list | None:
        raw = session_to_window.get(session_id.encode())
        return None if raw is None else json.loads(raw)

    async def store(batch: list[Score]) -> None:
        """Upserts scores in one statement; a database outage is retried, never turned into lost rows. A
        batch MySQL refuses for its content (not an outage) is stored row by row, and a row it refuses
        alone is logged and counted, never allowed to stop the writer."""
        try:
            await until_done(lambda db: db.upsert_scores(batch), f"{len(batch)} score rows", "mysql_store")
        except asyncmy.errors.MySQLError:  # not an outage (those are retried): this batch's content
            if len(batch) == 1:
                metrics.ERRORS.labels("processor", "score_row_refused").inc()
                log.exception("MySQL refused the score row of session %s window %d", batch[0].session_id,
                              batch[0].window_end_seq)
                return
            for score in batch:
                await store([score])

    partition_of: dict[str, int] = {}  # session -> its keypoints partition (= its changelog partition)

    def put(table, sid: str, value: bytes) -> None:
        partition = partition_of.get(sid)
        if partition is None:  # not seen in this process (cannot happen for a scored session)
            partition = default_partition(sid, settings.partitions)
        key = sid.encode()
        table.send_changelog(partition, key, value)
        table.data[key] = value

    async def emit(results: list[tuple]) -> None:
        """Publishes a batch of (scorer, score), stores their rows in one statement, then saves each
        session's state once. The order is what makes a crash lose nothing: the state (which says which
        frames are scored) moves on only after the rows are in MySQL, and the agent's events are acked
        (so their offsets committed) only after ``emit`` returns. A crash in between re-reads the frames
        and re-scores them into the same rows (upserts)."""
        if not results:
            return
        sent = []
        for _, score in results:
            sent.append(await scores.send(key=record_key(score.session_id, score.window_end_seq),
                                          value=score.to_json()))
            metrics.observe_hop(INFERRED_TO_SCORED, score.score_ts_ms - score.infer_ts_ms)
            metrics.observe_hop(CAPTURE_TO_SCORED, score.score_ts_ms - score.window_end_ts_ms)
        metrics.MESSAGES.labels("processor", "scores").inc(len(results))
        metrics.SESSIONS.labels("processor").set(len(state.scorers))
        # the scores are in Kafka (acknowledged) before the state moves on; ``write_scores`` puts them in
        # MySQL from there, so MySQL being away never holds live scores back
        await asyncio.gather(*sent)
        latest = {score.session_id: (scorer, score) for scorer, score in results}
        for sid, (scorer, score) in latest.items():
            put(session_to_state, sid, orjson.dumps(scorer.snapshot()))
            if score.window_end_ts_ms - window_saved_at.get(sid, 0) >= WINDOW_SNAPSHOT_MS:
                put(session_to_window, sid, orjson.dumps(scorer.window_snapshot()))
                window_saved_at[sid] = score.window_end_ts_ms

    state = ScoringState(load_reference, load_snapshot, load_window, window_ms=settings.processor_window_ms,
                         idle_evict_s=settings.processor_idle_evict_s,
                         min_interval_ms=settings.processor_min_interval_ms)

    @app.service
    class Storage(Service):
        async def on_stop(self) -> None:
            pool = holder.pop("db", None)
            if pool is not None:
                await pool.close()

    @app.agent(keypoints)
    async def score_windows(stream):
        # events in batches (at most BATCH, or what arrived within BATCH_WITHIN_S): one MySQL statement
        # and one state write per session per batch instead of per score
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            metrics.MESSAGES.labels("processor", "keypoints_in").inc(len(events))
            events = [e for e in events if e.value is not None]  # tombstones (an erasure's): nothing to score
            for e in events:
                if e.message.key is not None:
                    partition_of[session_of(e.message.key)] = e.message.partition
            coalesced = state.coalesced
            results, failures = await state.handle_batch([e.value for e in events], settings.processor_coalesce_after)
            if state.coalesced > coalesced:
                metrics.DROPPED.labels("processor", "coalesced").inc(state.coalesced - coalesced)
            for i, exc in failures:
                msg = events[i].message
                letter = DeadLetter.of("stream-processor", msg.topic, msg.partition, msg.offset,
                                       msg.key, events[i].value, str(exc))
                await dead_letter.send(key=dead_letter_key(msg.key, msg.topic, msg.partition, msg.offset),
                                       value=letter.to_json())
                metrics.MESSAGES.labels("processor", "dead_letter").inc()
            await emit(results)

    def forget(sid: str) -> None:
        """Releases an evicted session everywhere: tombstones in both tables' changelogs (compaction
        then drops its state for good), and this process's maps."""
        key = sid.encode()
        partition = partition_of.pop(sid, None)
        if partition is None:
            partition = default_partition(sid, settings.partitions)
        for table in (session_to_state, session_to_window):
            if table.data.pop(key, None) is not None:
                table.send_changelog(partition, key, None)
        window_saved_at.pop(sid, None)

    scores_in = app.topic(topics.scores, key_type=bytes, value_type=bytes)

    @app.agent(scores_in)
    async def write_scores(stream):
        """Scores topic -> MySQL, in batches. While MySQL is away this agent waits and retries (``store``)
        and its offsets do not move, so nothing is lost and the rows arrive when MySQL is back; the
        scoring agent goes on publishing live scores meanwhile (it used to wait on the upsert)."""
        async for events in stream.take_events(BATCH, within=0.05):
            batch = []
            for e in events:
                if e.value is None:
                    continue  # a tombstone
                try:
                    batch.append(Score.from_json(e.value))
                except Exception as exc:  # MessageError: not ours to store; a reason for the dead letters
                    msg = e.message
                    letter = DeadLetter.of("score-writer", msg.topic, msg.partition, msg.offset, msg.key,
                                           e.value, str(exc))
                    await dead_letter.send(key=dead_letter_key(msg.key, msg.topic, msg.partition, msg.offset),
                                           value=letter.to_json())
            if batch:
                metrics.SCORE_ROWS_PENDING.set(len(batch))
                await store(batch)
                metrics.SCORE_ROWS_PENDING.set(0)

    @app.timer(interval=TIMER_INTERVAL_S)
    async def flush_pending():
        """Frames that arrived within the minimum interval are scored once the session goes quiet;
        sessions idle past ``idle_evict_s`` are forgotten."""
        await emit(state.flush_due(quiet_s=settings.processor_min_interval_ms / 1000.0))
        while state.evicted:
            forget(state.evicted.pop())

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned, **kwargs) -> None:
        if any(tp.topic == topics.keypoints for tp in assigned):
            log.info("stream processor ready: %d keypoint partitions", len(assigned))
            if ready_file is not None:
                ready_file.write_text("ready")
            if not lag_watch:
                metrics.serve(settings.processor_metrics_port, "processor")
                lag_watch.append(metrics.watch_lag(settings.kafka_bootstrap, settings.processor_app_id,
                                                   topics.keypoints, "processor"))

    return app


def check_partitions(settings: Settings) -> None:
    """The keypoints topic and the tables' changelogs must have REHAB_PARTITIONS partitions (Faust
    co-partitions them; a session's state is found by its key's partition): a clear error, not a
    processor that starts and scores sessions against the wrong state."""
    from rehab.kafka_admin import partition_counts

    counts = partition_counts(settings.kafka_bootstrap,
                              [settings.topics.keypoints, *changelog_topics(settings.processor_app_id)])
    wrong = {name: n for name, n in counts.items() if n != settings.partitions}
    if wrong:
        raise SettingsError(f"REHAB_PARTITIONS is {settings.partitions} but {wrong}: run `rehab init` with "
                            f"REHAB_PARTITIONS set for the whole deployment (it grows the topics), "
                            f"see docs/operations.md")


def run(settings: Settings, ready_file: Path | None = None, loglevel: str = "WARNING") -> None:
    check_partitions(settings)
    kernels.warm_up()  # compiled (or loaded) before the processor joins its group, not on a first frame
    app = create_app(settings, ready_file)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner "spins for every log message": it sets the root logger to DEBUG, so every
    # aiokafka debug line (one per produced score) was formatted into a record: ~4 % of the processor.
    worker.spinner = None
    worker.execute_from_commandline()
