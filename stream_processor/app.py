"""The Faust app: agent ``score_windows`` consumes keypoints and publishes scores; the service
``ScoreRows`` upserts the scores topic into MySQL (``score_writer.ScoreWriter``: so an outage of MySQL
never holds live scores back, and the rows arrive when it returns); a timer scores frames left pending; table
``session_to_state`` keeps each session's counters (repetitions, running similarity, last frame
scored) so a restarted processor resumes where it stopped.

Run with ``rehab serve processor``. Reads REHAB_KAFKA_BOOTSTRAP, REHAB_TOPIC_NAMESPACE, REHAB_MYSQL_*,
REHAB_PROCESSOR_APP_ID, REHAB_PROCESSOR_WINDOW_MS, REHAB_PROCESSOR_MIN_INTERVAL_MS.
"""
from __future__ import annotations

import gc
import logging
from pathlib import Path

import faust
from mode import Service

from rehab.adapters import metrics
from rehab.records import CAPTURE_TO_SCORED, INFERRED_TO_SCORED, DeadLetter
from rehab.scoring import kernels
from rehab.settings import Settings, SettingsError
from rehab.adapters.kafka_clients import session_partitioner
from rehab.topics import changelog_topics, dead_letter_key, record_key, session_of
from stream_processor.outbox import Outbox, faust_producer
from stream_processor.processor import ScoringState
from stream_processor.quiet_stream import QuietStream
from stream_processor.score_writer import ScoreWriter
from stream_processor.score_store import ScoreStore
from stream_processor.session_state import SessionTables

log = logging.getLogger("rehab.stream_processor")
TIMER_INTERVAL_S = 0.1
BATCH, BATCH_WITHIN_S = 1000, 0.005
# While the processor is behind (a backlog after a restart or a burst; a batch's partitions hold
# BACKLOG_EVENTS or more unread events), a batch gathers for BACKLOG_WITHIN_S instead: Faust delivers events into
# a batch only while the agent waits for it (~25,000 events/s here), so 5 ms made batches of ~110-140 frames
# and every batch paid its own scoring calls, publishing and acknowledgement wait. 25 ms: ~500-frame
# batches and ~10 % less CPU a frame (``processor_throughput``); at live pace nothing waits longer.
BACKLOG_EVENTS, BACKLOG_WITHIN_S = BATCH, 0.025
# Consumer sizing: with Faust's defaults (aiokafka's 500 records a poll, a 4,096-event stream buffer,
# 1 MB a partition a fetch) the processor idles between fetches and tops out at ~3,300 keypoint
# messages/s on the bench machine even when it does nothing with them; these reach ~11,000 (measured
# by ``./dev bench processor_throughput --stage decode``). They only matter when a backlog is waiting.
CONSUMER = {"broker_max_poll_records": 10_000, "stream_buffer_maxsize": 20_000,
            "consumer_max_fetch_size": 8 << 20}


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the processor's consumer, producer and group settings."""
    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    return faust.App(
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


class ScorePublisher:
    """Publishes a batch of (scorer, score) and then saves each session's state once. The order is what
    makes a crash lose nothing: the state (which says which frames are scored) moves on only after the
    scores are in Kafka (acknowledged; ``ScoreWriter`` puts them in MySQL from there, so MySQL being away
    never holds live scores back), and the agent's events are acked (their offsets committed) only after
    ``emit`` returns. A crash in between re-reads the frames and re-scores them into the same rows.
    Both go out as one record batch per partition (``Outbox``)."""

    def __init__(self, producer, scores_topic: str, tables: SessionTables, state: ScoringState):
        self.producer, self.topic, self.tables, self.state = producer, scores_topic, tables, state

    async def emit(self, results: list[tuple]) -> None:
        if not results:
            return
        scores = Outbox(self.producer)
        for _, score in results:
            scores.add_keyed(self.topic, record_key(score.session_id, score.window_end_seq), score.to_json())
            metrics.observe_hop(INFERRED_TO_SCORED, score.score_ts_ms - score.infer_ts_ms)
            metrics.observe_hop(CAPTURE_TO_SCORED, score.score_ts_ms - score.window_end_ts_ms)
        metrics.MESSAGES.labels("processor", "scores").inc(len(results))
        metrics.SESSIONS.labels("processor").set(len(self.state.scorers))
        await scores.deliver()
        latest = {score.session_id: (scorer, score) for scorer, score in results}
        saved = Outbox(self.producer)
        for scorer, score in latest.values():
            self.tables.save(scorer, score.window_end_ts_ms, saved)
        await saved.send_unawaited()

    async def forget(self, sessions: list[str]) -> None:
        """Sessions evicted by the state: their saved state released (tombstones)."""
        gone = Outbox(self.producer)
        while sessions:
            self.tables.forget(sessions.pop(), gone)
        await gone.send_unawaited()


async def dead_letter(topic, source: str, event, reason: str) -> None:
    """An event that cannot be used, with why, to the dead-letter topic (never dropped silently)."""
    msg = event.message
    await send_dead_letter(topic, source, msg.topic, msg.partition, msg.offset, msg.key, event.value, reason)


async def send_dead_letter(topic, source: str, of_topic: str, partition: int, offset: int, key, value,
                           reason: str) -> None:
    letter = DeadLetter.of(source, of_topic, partition, offset, key, value, reason)
    await topic.send(key=dead_letter_key(key, of_topic, partition, offset), value=letter.to_json())


def create_app(settings: Settings, ready_file: Path | None = None, store: ScoreStore | None = None) -> faust.App:
    """The processor's one composition root: agent ``score_windows`` (keypoints -> scores), service
    ``ScoreRows`` (scores -> MySQL), the timer for pending frames, the session tables. ``store`` is
    the MySQL side (default: built from ``settings``)."""
    topics, app = settings.topics, faust_app(settings)
    store = store or ScoreStore(settings)
    tables = SessionTables(app, settings.partitions)
    state = ScoringState(store.load_reference, tables.load_snapshot, tables.load_window,
                         window_ms=settings.processor_window_ms, idle_evict_s=settings.processor_idle_evict_s,
                         min_interval_ms=settings.processor_min_interval_ms)
    letters = app.topic(topics.dead_letter, key_type=bytes, value_type=bytes)
    publisher = ScorePublisher(faust_producer(app), topics.scores, tables, state)

    @app.service
    class Storage(Service):
        async def on_stop(self) -> None:
            await store.close()

    @app.agent(app.topic(topics.keypoints, key_type=bytes, value_type=bytes))
    async def score_windows(stream):
        # events in batches (at most BATCH, or what arrived within BATCH_WITHIN_S): one state write per
        # session per batch instead of per score
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            metrics.MESSAGES.labels("processor", "keypoints_in").inc(len(events))
            events = [e for e in events if e.value is not None]  # tombstones (an erasure's): nothing to score
            for e in events:
                tables.seen(session_of(e.message.key), e.message.partition)
            coalesced = state.coalesced
            results, failures = await state.handle_batch([e.value for e in events], settings.processor_coalesce_after)
            metrics.DROPPED.labels("processor", "coalesced").inc(state.coalesced - coalesced)
            for i, exc in failures:
                await dead_letter(letters, "stream-processor", events[i], str(exc))
                metrics.MESSAGES.labels("processor", "dead_letter").inc()
            await publisher.emit(results)
            stream.next_within = batch_window(app.consumer, events)

    async def letter(topic: str, partition: int, offset: int, key, value, reason: str) -> None:
        await send_dead_letter(letters, "score-writer", topic, partition, offset, key, value, reason)

    writer = ScoreWriter(settings, store.store, letter)

    @app.service
    class ScoreRows(Service):
        """The scores topic -> MySQL (``ScoreWriter``), beside the agents: while MySQL is away it waits
        and retries and its offsets do not move, so nothing is lost and the rows arrive when MySQL is
        back; the scoring agent goes on publishing live scores meanwhile."""

        @Service.task
        async def _write(self) -> None:
            await writer.run()

    @app.timer(interval=TIMER_INTERVAL_S)
    async def flush_pending():
        """Frames that arrived within the minimum interval are scored once the session goes quiet;
        sessions idle past ``idle_evict_s`` are forgotten."""
        await publisher.emit(state.flush_due(quiet_s=settings.processor_min_interval_ms / 1000.0))
        await publisher.forget(state.evicted)

    @app.on_partitions_assigned.connect
    async def release_moved_sessions(sender, assigned, **kwargs) -> None:
        """Sessions whose partition went to another processor in this rebalance are forgotten here (see
        ``ScoringState.release``); the sessions of partitions this processor keeps stay as they are."""
        held = {tp.partition for tp in assigned if tp.topic == topics.keypoints}
        gone = tables.sessions_outside(held)
        state.release(gone)
        if gone:
            log.info("%d sessions moved to another processor", len(gone))

    app.on_partitions_assigned.connect(_on_assigned(settings, ready_file))
    return app


def batch_window(consumer, events) -> float | None:
    """How long the next batch may gather: BACKLOG_WITHIN_S when the partitions this batch came from
    hold BACKLOG_EVENTS or more events past it (the broker's end of each partition as last fetched),
    else None (the agent's ``within``)."""
    last: dict = {}
    for e in events:
        last[e.message.tp] = e.message.offset
    behind = 0
    for tp, offset in last.items():
        try:
            end = consumer.highwater(tp)
        except Exception:  # (a partition revoked meanwhile, a consumer not started): not behind there
            continue
        behind += max((end or 0) - offset - 1, 0)
    return BACKLOG_WITHIN_S if behind >= BACKLOG_EVENTS else None


def _on_assigned(settings: Settings, ready_file: Path | None):
    started: list = []

    async def on_assigned(sender, assigned, **kwargs) -> None:
        if any(tp.topic == settings.topics.keypoints for tp in assigned):
            log.info("stream processor ready: %d keypoint partitions", len(assigned))
            if ready_file is not None:
                ready_file.write_text("ready")
            if not started:  # metrics and the lag watch, once
                metrics.serve(settings.processor_metrics_port, "processor")
                started.append(metrics.watch_lag(settings.kafka_bootstrap, settings.processor_app_id,
                                                 settings.topics.keypoints, "processor"))
    return on_assigned


def check_partitions(settings: Settings) -> None:
    """The keypoints topic and the tables' changelogs must have REHAB_PARTITIONS partitions (Faust
    co-partitions them; a session's state is found by its key's partition): a clear error, not a
    processor that starts and scores sessions against the wrong state."""
    from rehab.adapters.kafka_admin import partition_counts

    counts = partition_counts(settings.kafka_bootstrap,
                              [settings.topics.keypoints, *changelog_topics(settings.processor_app_id)])
    wrong = {name: n for name, n in counts.items() if n != settings.partitions}
    if wrong:
        raise SettingsError(f"REHAB_PARTITIONS is {settings.partitions} but {wrong}: run `rehab init` with "
                            f"REHAB_PARTITIONS set for the whole deployment (it grows the topics), "
                            f"see docs/operations.md")


# Python's cyclic garbage collector, as the processor runs it (see ``collect_less``).
GC_THRESHOLDS = (100_000, 50, 100)


def collect_less() -> None:
    """The processor allocates many short-lived containers per frame (decoded frames, events, futures):
    with Python's default thresholds (700, 10, 10) the cyclic collector ran every few frames and swept
    the older generations (Faust, aiokafka, every session's state) every tenth and hundredth time. With
    these, ``processor_throughput`` (50 sessions, 4 scores/s each, alternating runs) went from 4,800 -
    5,220 (mean 4,940) to 5,290 - 5,520 (mean 5,400) keypoint frames/s, peak RSS unchanged (286 MB);
    freezing the start-up objects out of the sweeps as well gained nothing more (docs/benchmarks.md).
    Reference counting still frees everything without cycles at once; only cycles wait longer."""
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings, ready_file: Path | None = None, loglevel: str = "WARNING") -> None:
    check_partitions(settings)
    kernels.warm_up()  # compiled (or loaded) before the processor joins its group, not on a first frame
    app = create_app(settings, ready_file)
    collect_less()
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    # Faust's terminal spinner "spins for every log message": it sets the root logger to DEBUG, so every
    # aiokafka debug line (one per produced score) was formatted into a record: ~4 % of the processor.
    worker.spinner = None
    worker.execute_from_commandline()
