"""The Faust stream processor on the real broker and database: scores out (the same as the offline
scorer's for the same keypoints), rows upserted, malformed messages dead-lettered, a crash resumes
the repetition count, and a replay by a new consumer group duplicates nothing."""
import dataclasses
import json
import threading
import time

from kafka import KafkaProducer

from rehab.records import Score, now_ms
from rehab.stack.services import Services
from tests.processor_helpers import db_call, offline_scores
from tests.kafka_helpers import consume


def _scores(settings, until, timeout=60.0) -> list[Score]:
    return [Score.from_json(m.value) for m in consume(settings, settings.topics.scores,
                                                       lambda ms: until([Score.from_json(m.value) for m in ms]),
                                                       timeout)]


def _attempt(clip_keypoints, session_id: str, loops: int = 1, fps: float = 60.0):
    frames = clip_keypoints("pose2sim_single_cam02.mp4") * loops
    t0 = frames[0].capture_ts_ms
    return [dataclasses.replace(f, session_id=session_id, reference_id="guide", seq=i,
                                capture_ts_ms=t0 + round(i * 1000 / fps)) for i, f in enumerate(frames)]


def test_processor_scores_like_offline_and_dead_letters_bad_messages(isolated_settings, stored_guide, clip_keypoints,
                                                                      tmp_path):
    # the whole attempt is in the topic before the processor starts: a backlog it would otherwise
    # coalesce (score only its newest frame); here every window must be scored, as offline
    s = isolated_settings.with_(processor_coalesce_after=0)
    attempt = _attempt(clip_keypoints, "patient-1")
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    bad = attempt[0].to_json().replace(b'"seq":0,', b'"seq":"x",')
    assert bad != attempt[0].to_json()
    producer.send(s.topics.keypoints, key=b"patient-1", value=bad)
    producer.send(s.topics.keypoints, key=b"ghost", value=dataclasses.replace(
        attempt[0], session_id="ghost", reference_id="nope").to_json())
    for f in attempt:
        producer.send(s.topics.keypoints, key=b"patient-1", value=f.to_json())
    producer.flush()
    offline = offline_scores(s, stored_guide, attempt)

    with Services(s, tmp_path / "run1", names=("processor",)):
        live = _scores(s, lambda sc: sc and sc[-1].window_end_seq == attempt[-1].seq)
        letters = [json.loads(m.value) for m in consume(s, s.topics.dead_letter, lambda ms: len(ms) >= 2, 20)]
        rows = db_call(s, lambda db: db.wait_for_scores("patient-1", len(live)))

    seconds = (attempt[-1].capture_ts_ms - attempt[0].capture_ts_ms) / 1000
    assert len(live) >= 4 * seconds, f"at least 4 scores per second of session: {len(live)} in {seconds:.1f} s"
    assert len(live) >= 0.9 * len(offline) and rows == len({sc.window_end_seq for sc in live}) == len(live)
    by_end = {sc.window_end_seq: sc for sc in offline}
    matched = [(sc, by_end[sc.window_end_seq]) for sc in live if sc.window_end_seq in by_end]
    assert len(matched) >= 0.9 * len(live), "live windows are the offline scorer's windows"
    close = [abs(a.similarity - b.similarity) <= 0.02 for a, b in matched]
    assert sum(close) >= 0.95 * len(matched), "same keypoints, same scores"
    assert abs(live[-1].session_similarity - offline[-1].session_similarity) <= 0.02
    reasons = " | ".join(letter["reason"] for letter in letters)
    assert "seq must be an integer" in reasons and "unknown reference 'nope'" in reasons, reasons
    producer.close()


def test_a_crashed_processor_resumes_the_count_and_a_replay_duplicates_nothing(isolated_settings, stored_guide,
                                                                               clip_keypoints, tmp_path):
    s = isolated_settings.with_(processor_coalesce_after=0)  # every window, as offline (see above)
    attempt = _attempt(clip_keypoints, "patient-2", loops=3)
    expected_reps = offline_scores(s, stored_guide, attempt)[-1].reps
    assert expected_reps == 3, "the clip three times back to back is three repetitions"
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0)

    def camera():  # at the clip's pace, like the pose worker would publish them
        start = time.monotonic()
        for i, f in enumerate(attempt):
            time.sleep(max(0.0, start + i / 60 - time.monotonic()))
            producer.send(s.topics.keypoints, key=b"patient-2", value=f.to_json())
        producer.flush()

    sender = threading.Thread(target=camera)
    services = Services(s, tmp_path / "run1", names=("processor",))
    services.start()
    sender.start()
    before = _scores(s, lambda sc: any(x.window_end_seq >= 120 for x in sc))
    services.kill("processor")  # a crash: no graceful shutdown, no final offset commit
    services.stop()
    assert before and max(x.window_end_seq for x in before) < len(attempt) - 1, "killed mid-session"
    sender.join()
    with Services(s, tmp_path / "run2", names=("processor",)):
        after = _scores(s, lambda sc: any(x.window_end_seq == attempt[-1].seq for x in sc), timeout=90)
        n_windows = len({x.window_end_seq for x in after})
        rows = db_call(s, lambda db: db.wait_for_scores("patient-2", n_windows))
    trace = [(x.window_end_seq, x.phase, x.reps, round(x.similarity, 2)) for x in after]
    assert after[-1].reps == expected_reps, f"the restarted processor counted {after[-1].reps} repetitions: {trace}"
    assert rows == len({x.window_end_seq for x in after}), "one row per scored window, none duplicated"

    # A replay: a new consumer group re-scores the whole session from the keypoints topic. It scores
    # the same windows (they depend only on the frames), so its rows overwrite the crashed run's;
    # the only new rows are the windows the restarted processor could not score while its window refilled.
    replay = s.with_(processor_app_id=s.processor_app_id + "-replay")
    replay_start = now_ms()
    with Services(replay, tmp_path / "run3", names=("processor",)):
        replayed = _scores(s, lambda sc: any(x.window_end_seq == attempt[-1].seq and x.score_ts_ms >= replay_start
                                             for x in sc))
        ends = {x.window_end_seq for x in replayed}
        db_call(s, lambda db: db.wait_for_scores("patient-2", len(ends)))
    after = [x for x in replayed if x.score_ts_ms < replay_start]  # everything the crashed and restarted runs sent
    replayed = [x for x in replayed if x.score_ts_ms >= replay_start]
    ends_live, ends_replay = {x.window_end_seq for x in after}, {x.window_end_seq for x in replayed}
    rows_after = db_call(s, lambda db: db.count_scores("patient-2"))
    assert rows_after == len(ends_live | ends_replay) < len(ends_live) + len(ends_replay), \
        "a replayed window updates its row, never adds a second one"
    assert len(ends_replay - ends_live) <= 12, "a restart loses at most the windows of one window refill"
    assert replayed[-1].reps == expected_reps
    producer.close()


def test_replay_rescores_a_session_from_the_topic_and_exports_it(isolated_settings, stored_guide, clip_keypoints, tmp_path,
                                                                  monkeypatch, capsys):
    from rehab.cli import main

    s = isolated_settings
    attempt = _attempt(clip_keypoints, "patient-3")
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    for f in attempt + attempt[:10]:  # the first ten re-delivered, as after a producer retry
        producer.send(s.topics.keypoints, key=b"patient-3", value=f.to_json())
    producer.send(s.topics.keypoints, key=b"someone-else", value=dataclasses.replace(
        attempt[0], session_id="someone-else").to_json())
    producer.flush()
    producer.close()
    for name, value in s.as_env().items():
        monkeypatch.setenv(name, value)

    code = main(["replay", "--session", "patient-3", "--csv", str(tmp_path / "out"), "--plot",
                 str(tmp_path / "plot.png"), "--parquet", str(tmp_path / "pq")])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    offline = offline_scores(s, stored_guide, attempt)
    assert result["frames"] == len(attempt), "each frame once, only the session's"
    assert result["similarity"] == offline[-1].session_similarity and result["reps"] == offline[-1].reps
    rows = (tmp_path / "out" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(offline)
    assert len((tmp_path / "out" / "keypoints.csv").read_text().splitlines()) == 1 + len(attempt)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import pyarrow.parquet as pq

    scores_pq = pq.read_table(tmp_path / "pq" / "scores.parquet").to_pylist()
    assert [r["similarity"] for r in scores_pq] == [o.similarity for o in offline]
    kp_pq = pq.read_table(tmp_path / "pq" / "keypoints.parquet")
    assert kp_pq.num_rows == len(attempt) and kp_pq.column("nose_x").type == "double"
    assert main(["replay", "--session", "nobody"]) == 2, "an unknown session is a clear error"


def test_a_session_gone_quiet_is_forgotten_and_its_state_tombstoned(isolated_settings, stored_guide, clip_keypoints,
                                                                     tmp_path):
    """Per-session state must not grow forever: once a session is silent for REHAB_PROCESSOR_IDLE_EVICT_S
    the processor drops it and writes tombstones (null values) for it to both tables' changelogs, which
    compaction then removes."""
    s = isolated_settings.with_(processor_coalesce_after=0, processor_idle_evict_s=2)
    attempt = _attempt(clip_keypoints, "patient-quiet")
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap)
    for f in attempt:
        producer.send(s.topics.keypoints, key=b"patient-quiet", value=f.to_json())
    producer.flush()
    changelog = f"{s.processor_app_id}-session_to_state-changelog"

    def tombstoned(ms) -> bool:
        mine = [m for m in ms if m.key == b"patient-quiet"]
        return bool(mine) and mine[-1].value is None

    with Services(s, tmp_path / "run", names=("processor",)):
        _scores(s, lambda sc: sc and sc[-1].window_end_seq == attempt[-1].seq)
        records = consume(s, changelog, tombstoned, timeout=30)
    mine = [m for m in records if m.key == b"patient-quiet"]
    assert mine and mine[0].value is not None, "the session's state was saved while it was live"
    assert mine[-1].value is None, "and tombstoned once it went quiet"
    window = consume(s, f"{s.processor_app_id}-session_to_window-changelog", tombstoned, timeout=10)
    assert [m for m in window if m.key == b"patient-quiet"][-1].value is None
    producer.close()


def test_mysql_away_for_seconds_live_scores_keep_flowing_and_no_row_is_lost(isolated_settings, stored_guide, clip_keypoints,
                                                                           tmp_path):
    """A fault drill: the processor reaches MariaDB through a proxy that drops every connection and refuses
    new ones for 6 s mid-session. Live scores keep coming on the scores topic during the outage (they used
    to wait on the upsert, for every session), and once MySQL is back every scored window is in MySQL,
    none twice."""
    from tests.tcp_proxy import TcpProxy

    proxy = TcpProxy(isolated_settings.mysql_host, isolated_settings.mysql_port)
    s = isolated_settings.with_(processor_coalesce_after=0, mysql_port=proxy.port, mysql_host="127.0.0.1")
    attempt = _attempt(clip_keypoints, "patient-drill", loops=8)  # ~13 s at 60 fps
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0)
    outage = {}

    def camera():
        start = time.monotonic()
        for i, f in enumerate(attempt):
            time.sleep(max(0.0, start + i / 60 - time.monotonic()))
            if i == 180:  # 3 s in: the session is running and its reference is loaded
                outage["from"] = now_ms()
                proxy.outage()
            if i == 540:  # 6 s later
                outage["to"] = now_ms()
                proxy.restore()
            producer.send(s.topics.keypoints, key=b"patient-drill", value=f.to_json())
        producer.flush()

    try:
        with Services(s, tmp_path / "run", names=("processor",)):
            sender = threading.Thread(target=camera)
            sender.start()
            live = _scores(s, lambda sc: any(x.window_end_seq == attempt[-1].seq for x in sc), timeout=90)
            sender.join()
            ends = {x.window_end_seq for x in live}
            rows = db_call(isolated_settings, lambda db: db.wait_for_scores(
                "patient-drill", len(ends), timeout_s=30))
    finally:
        proxy.close()
    during = [x for x in live if outage["from"] + 500 <= x.score_ts_ms <= outage["to"]]
    assert len(during) >= 3 * 5, f"live scores while MySQL was away: {len(during)} in 6 s"
    assert rows == len(ends), f"{rows} rows for {len(ends)} scored windows: every row written once MySQL was back"
    producer.close()


def test_a_guide_looked_up_while_mysql_is_away_is_loaded_once_it_is_back(isolated_settings, stored_guide, clip_keypoints,
                                                                        tmp_path):
    """A fault drill for the reference lookup: the processor's pool is open (one session scored), then every
    MySQL connection is dropped and new ones refused; a session with another guide starts meanwhile. Its
    frames wait (nothing dead-lettered as "unknown reference"), and once MySQL is back it is scored."""
    from tests.tcp_proxy import TcpProxy

    second = dataclasses.replace(stored_guide, id="guide-2", name="guide-2")
    db_call(isolated_settings, lambda db: db.save_reference(second))
    proxy = TcpProxy(isolated_settings.mysql_host, isolated_settings.mysql_port)
    s = isolated_settings.with_(processor_coalesce_after=0, mysql_port=proxy.port, mysql_host="127.0.0.1")
    first = _attempt(clip_keypoints, "patient-first")
    later = [dataclasses.replace(f, reference_id="guide-2") for f in _attempt(clip_keypoints, "patient-later", loops=3)]
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0)
    try:
        with Services(s, tmp_path / "run", names=("processor",)):
            for f in first:
                producer.send(s.topics.keypoints, key=b"patient-first", value=f.to_json())
            producer.flush()
            _scores(s, lambda sc: any(x.session_id == "patient-first" for x in sc), timeout=60)
            proxy.outage()
            for f in later:
                producer.send(s.topics.keypoints, key=b"patient-later", value=f.to_json())
            producer.flush()
            time.sleep(4.0)
            restored_ms = now_ms()
            proxy.restore()
            live = _scores(s, lambda sc: any(x.session_id == "patient-later" for x in sc), timeout=60)
            letters = consume(s, s.topics.dead_letter, lambda ms: False, timeout=2.0)
    finally:
        proxy.close()
        producer.close()
    later_scores = [x for x in live if x.session_id == "patient-later"]
    assert later_scores and min(x.score_ts_ms for x in later_scores) >= restored_ms - 500, \
        "scored once MySQL was back (the guide could not be read before)"
    reasons = [json.loads(m.value)["reason"] for m in letters]
    assert not any("guide-2" in r for r in reasons), reasons
