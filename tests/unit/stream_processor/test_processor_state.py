"""The stream processor's session handling (stream_processor/processor.py, ``ScoringState``), without
Faust or Kafka: pacing of due windows, late sessions, the quiet-session timer, guide reloads. The
scoring maths itself is tests/unit/rehab/scoring/test_scoring.py."""
import dataclasses

from tests.unit.rehab.scoring.test_scoring import frames, pose_at, reference


def _state():
    import asyncio

    from stream_processor.processor import ScoringState

    ref = reference()

    async def load(_):
        return ref

    return asyncio, ScoringState(load, window_ms=1000, min_interval_ms=100)


def test_a_processor_at_live_pace_scores_every_due_window_and_one_behind_scores_only_the_newest():
    from rehab.records import now_ms

    asyncio, live = _state()
    poses = [dataclasses.replace(f, reference_id="ref") for f in frames([pose_at(i / 60) for i in range(120)])]

    def stamped(fs):  # as the worker publishes them: just now, so not late
        t = now_ms()
        return [dataclasses.replace(f, gateway_ts_ms=t, infer_ts_ms=t).to_json() for f in fs]

    raws = stamped(poses)
    one_by_one = [sc for r in raws if (sc := asyncio.run(live.handle(r))[1]) is not None]
    _, paced = _state()
    batched = [sc for i in range(0, len(poses), 2) for _, sc in asyncio.run(paced.handle_batch(stamped(poses[i:i + 2])))[0]]
    assert [s.window_end_seq for s in batched] == [s.window_end_seq for s in one_by_one]
    assert [s.similarity for s in batched] == [s.similarity for s in one_by_one]
    _, behind = _state()
    results, failures = asyncio.run(behind.handle_batch(stamped(poses[:60]) + [b"{broken"], coalesce_after=8))
    assert [s.window_end_seq for _, s in results] == [59], "a backlog is scored at its newest frame only"
    assert behind.coalesced == 59 and len(failures) == 1 and failures[0][0] == 60
    results, _ = asyncio.run(behind.handle_batch(stamped(poses[60:61]), coalesce_after=8))
    assert [s.window_end_seq for _, s in results] == [60], "and then it is back at live pace"


def test_a_processor_with_late_frames_scores_each_session_less_often_the_later_they_are():
    from rehab.records import now_ms

    asyncio, state = _state()
    late = now_ms() - 2000  # every frame reaches the processor 2 s after the worker published it
    poses = [dataclasses.replace(f, reference_id="ref", gateway_ts_ms=late, infer_ts_ms=late)
             for f in frames([pose_at(i / 60) for i in range(120)])]
    scored = [s for f in poses for _, s in asyncio.run(state.handle_batch([f.to_json()]))[0]]
    assert len(scored) == 1, "2 s late: at most one score per session per 2 s of our time"
    _, off = _state()
    every = [s for f in poses for _, s in asyncio.run(off.handle_batch([f.to_json()], coalesce_after=0))[0]]
    assert len(every) > 30, "shedding off: every due window"


def test_the_timer_scores_a_quiet_sessions_last_frame_however_old_its_stamps():
    """Frames replayed into the topic carry stamps minutes old; the batch may drain such a backlog by
    scoring it rarely, but the timer must still score a quiet session's last frame within 250 ms."""
    import time as clock

    from rehab.records import now_ms

    asyncio, state = _state()
    old = 1_000  # stamped long ago
    poses = [dataclasses.replace(f, reference_id="ref", gateway_ts_ms=old, infer_ts_ms=old)
             for f in frames([pose_at(i / 60) for i in range(62)])]
    scored = asyncio.run(state.handle_batch([f.to_json() for f in poses], coalesce_after=0))[0]
    assert scored and scored[-1][1].window_end_seq == 60, "the last frame is pending (not first of its slot)"
    state.scored_at["s"] = now_ms()  # (scored just now, however long the batch took on a slow machine)
    assert state.flush_due(quiet_s=0.0) == [], "just scored: the late frame waits its 250 ms"
    clock.sleep(0.3)
    assert [s.window_end_seq for _, s in state.flush_due(quiet_s=0.0)] == [61]


def test_a_late_session_is_scored_once_per_how_late_its_frames_are():
    """Between 4 a second and never: 600 ms late -> a score at most every 600 ms of our time."""
    import time as clock

    from rehab.records import now_ms

    asyncio, state = _state()
    poses = [dataclasses.replace(f, reference_id="ref") for f in frames([pose_at(i / 60) for i in range(240)])]
    scored_at = []
    for f in poses:  # 4 s of frames fed over ~1.6 s, each arriving 600 ms after it was stamped
        stamp = now_ms() - 600
        g = dataclasses.replace(f, gateway_ts_ms=stamp, infer_ts_ms=stamp)
        if asyncio.run(state.handle_batch([g.to_json()]))[0]:
            # the processor's own clock when it decided to score (the time after the call also counts how
            # long the scoring took, which varies with the machine)
            scored_at.append(state.scored_at[g.session_id])
        clock.sleep(0.006)
    gaps = [b - a for a, b in zip(scored_at, scored_at[1:])]
    assert len(scored_at) >= 2 and min(gaps) >= 600, f"scores at {scored_at} ms"


def test_a_guide_given_more_takes_scores_sessions_started_after_the_refresh(monkeypatch):
    """The processor caches a guide's model; a new session reloads it once the cached one is older than
    GUIDE_REFRESH_S (a guide replaced or given takes), while running sessions keep theirs."""
    import asyncio

    from stream_processor import processor
    from stream_processor.processor import ScoringState

    loads = []

    async def load(ref_id):
        loads.append(ref_id)
        return reference()

    clock = [1000.0]
    monkeypatch.setattr(processor.time, "monotonic", lambda: clock[0])
    state = ScoringState(load, window_ms=1000, min_interval_ms=100)

    def first_frame(session):
        return dataclasses.replace(frames([pose_at(0.0)])[0], session_id=session, reference_id="ref")

    a = asyncio.run(state.scorer_for(first_frame("a")))
    b = asyncio.run(state.scorer_for(first_frame("b")))
    assert loads == ["ref"] and a.ref is b.ref
    clock[0] += processor.GUIDE_REFRESH_S + 1
    c = asyncio.run(state.scorer_for(first_frame("c")))
    assert loads == ["ref", "ref"] and c.ref is not a.ref
    assert asyncio.run(state.scorer_for(first_frame("a"))) is a, "a running session keeps its model"


def test_a_session_whose_partition_moved_away_resumes_from_what_was_saved_meanwhile_if_it_comes_back():
    """A rebalance gives the session's partition to another processor, which scores it on and saves its
    state; when the partition comes back, this processor must resume from that state, not from the
    copy it kept (its repetitions and last scored frame would go back in time), and forgetting the
    session here must not tombstone the state the other processor saved."""
    from rehab.records import now_ms
    from stream_processor.processor import ScoringState
    from stream_processor.session_state import SessionTables

    asyncio, _ = _state()
    ref = reference()
    saved: dict[str, dict] = {}

    async def load(_):
        return ref

    def stamped(fs):
        t = now_ms()
        return [dataclasses.replace(f, gateway_ts_ms=t, infer_ts_ms=t).to_json() for f in fs]

    poses = [dataclasses.replace(f, reference_id="ref") for f in frames([pose_at(i / 60) for i in range(240)])]
    here = ScoringState(load, saved.get, window_ms=1000, min_interval_ms=100)
    there = ScoringState(load, saved.get, window_ms=1000, min_interval_ms=100)
    results, _ = asyncio.run(here.handle_batch(stamped(poses[:60]), coalesce_after=0))
    saved["s"] = results[-1][0].snapshot()
    reps_before = saved["s"]["reps"]
    # the partition moves: the other processor resumes the session and scores two more repetitions' frames
    tables = SessionTables.__new__(SessionTables)
    tables.partition_of, tables.window_saved_at = {"s": 3, "t": 5}, {"s": 0, "t": 0}
    gone = tables.sessions_outside({5})
    assert gone == ["s"] and tables.partition_of == {"t": 5}
    here.release(gone)
    assert "s" not in here.scorers and not here.evicted, "released here only: no tombstone for its state"
    results, _ = asyncio.run(there.handle_batch(stamped(poses[60:180]), coalesce_after=0))
    saved["s"] = results[-1][0].snapshot()
    assert saved["s"]["reps"] > reps_before
    # ... and comes back: this processor resumes from the other one's state
    results, _ = asyncio.run(here.handle_batch(stamped(poses[180:200]), coalesce_after=0))
    resumed = here.scorers["s"].snapshot()
    assert resumed["reps"] >= saved["s"]["reps"] and resumed["last_seq"] > saved["s"]["last_seq"] >= 179 - 2
    assert all(score.window_end_seq > 179 for _, score in results), "nothing the other processor scored is scored again"
