"""Fault drills on the real broker and database, each with a neighbouring session streaming beside the
one that is hit: the processor SIGKILLed mid-session, the pose worker killed. Each drill asserts, for
every session:

- no keypoint frame lost: every window the offline scorer scores from the session's keypoints is scored
  live (after a processor restart, at most the windows of one window refill are missing, all right after
  the crash: the restarted processor rebuilds the window from the frames that follow);
- no duplicate score row (one row per scored window), and the repetition count continues;
- scores again within 10 s of the recovery;
- the neighbour unaffected where it does not share the failed part (its live scores never pause).

MariaDB stopped for 30 s and the Kafka broker restarted are drilled on the shared test stack with the
user's own command (``rehab stack down|up --only mariadb|kafka``, in a process of its own); each drill
brings the stack back up whatever happens. A network cut to MySQL (a proxy dropping every connection)
is drilled in test_processor.py."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from kafka import KafkaProducer

from rehab.adapters.kafka_admin import wait_serving
from rehab.records import FrameRecord, KeypointFrame, now_ms
from rehab.stack.services import Services
from tests.conftest import DATA
from tests.kafka_helpers import consume
from tests.processor_helpers import Streams, video_frames, attempt, check_session, max_gap_s, scores_by_session

# -- the processor and the worker: on the shared stack -----------------------------------------------

def test_processor_sigkilled_mid_session_loses_no_frame_and_duplicates_no_row(isolated_settings, stored_guide,
                                                                              clip_keypoints, tmp_path):
    s = isolated_settings.with_(processor_coalesce_after=0)  # every window, as the offline scorer
    # 18 s: the restarted processor gets the partitions once the killed one's group session (10 s) has
    # run out, ~12-13 s in; the sessions must still stream after that for "scores resumed" to be seen
    # (with 12 s the backlog was sometimes all scored before the test noticed the restart was ready)
    sessions = {sid: attempt(clip_keypoints, sid, 18.0) for sid in ("patient", "neighbour")}
    services = {"run": Services(s, tmp_path / "run1", names=("processor",))}
    services["run"].start()

    def crash_and_restart():
        drill.mark("killed")
        services["run"].kill("processor")  # no graceful shutdown, no final commit
        services["run"].stop()
        services["run"] = Services(s, tmp_path / "run2", names=("processor",))  # the restart policy
        threading.Thread(target=lambda: (services["run"].start(), drill.mark("recovered")), daemon=True).start()

    drill = Streams(s, sessions, {3.0: crash_and_restart}).start()
    try:
        drill.join()
        deadline = time.monotonic() + 120
        while "recovered" not in drill.marks and time.monotonic() < deadline:
            time.sleep(0.2)
        live = scores_by_session(s, {sid: f[-1].seq for sid, f in sessions.items()})
        figures = {sid: check_session(s, stored_guide, drill.sent[sid], live[sid], recovered_ms=drill.marks["recovered"],
                                      refill_after_ms=drill.marks["killed"]) for sid in sessions}
    finally:
        services["run"].stop()
    print("processor SIGKILL drill:", figures)


def test_a_killed_pose_worker_is_replaced_and_its_session_resumes_while_the_neighbour_goes_on(
        isolated_settings, stored_guide, clip_keypoints, tmp_path):
    """The patient streams video (cloud mode: frames -> worker -> keypoints); the neighbour sends keypoints
    from its device (edge mode). The worker is SIGKILLed 4 s in and a new one started (the restart
    policy); the dead worker's partitions are free once its group session (10 s) runs out. Frames
    published while no worker serves them are live video gone stale: dropped, by design, not queued. Every keypoint frame the workers did publish is scored; the neighbour never pauses."""
    s = isolated_settings.with_(processor_coalesce_after=0, worker_max_fps=15)
    frames = video_frames(DATA / "pose2sim_single_cam02.mp4", 24.0, 15.0)
    neighbour = {"neighbour": attempt(clip_keypoints, "neighbour", 24.0)}
    services = Services(s, tmp_path / "run", names=("processor", "worker"))
    services.start()
    replaced: dict[str, Services] = {}
    marks: dict[str, int] = {}

    def kill_and_replace():
        marks["killed"] = now_ms()
        services.kill("worker")
        replaced["worker"] = w = Services(s, tmp_path / "run2", names=("worker",))
        threading.Thread(target=lambda: (w.start(), marks.setdefault("recovered", now_ms())), daemon=True).start()

    def camera():
        producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, linger_ms=0)
        start = time.monotonic()
        for seq, jpeg, w, h in frames:
            time.sleep(max(0.0, start + seq / 15.0 - time.monotonic()))
            if seq == 60 and "killed" not in marks:
                kill_and_replace()
            t = now_ms()
            key, value, headers = FrameRecord("patient", seq, t, t, w, h, "guide", jpeg).to_kafka()
            producer.send(s.topics.frames, key=key, value=value, headers=headers)
        producer.flush()
        producer.close()

    cam = threading.Thread(target=camera, daemon=True)
    try:
        cam.start()
        drill = Streams(s, neighbour, {}).start()
        drill.join()
        cam.join(120)
        deadline = time.monotonic() + 90
        while "recovered" not in marks and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "recovered" in marks, "the new worker never became ready"
        # the patient's keypoints as the workers published them: what the processor must have scored
        last_seq = frames[-1][0]

        def patient_of(msgs):
            return [k for k in (KeypointFrame.from_json(m.value) for m in msgs) if k.session_id == "patient"]

        patient = patient_of(consume(s, s.topics.keypoints, lambda ms: any(
            k.seq == last_seq for k in patient_of(ms[-50:])), timeout=30))
        assert patient and any(k.gateway_ts_ms >= marks["recovered"] for k in patient), "no keypoints after the restart"
        last = {"patient": patient[-1].seq, "neighbour": neighbour["neighbour"][-1].seq}
        live = scores_by_session(s, last)
        figures = {
            "patient": check_session(s, stored_guide, patient, live["patient"], recovered_ms=marks["recovered"]),
            "neighbour": check_session(s, stored_guide, drill.sent["neighbour"], live["neighbour"]),
        }
        figures["neighbour"]["max_gap_s"] = max_gap_s(live["neighbour"], marks["killed"], marks["recovered"] + 3000)
        assert figures["neighbour"]["max_gap_s"] < 1.5, f"the neighbour paused while the worker was away: {figures}"
        figures["worker_away_s"] = (marks["recovered"] - marks["killed"]) / 1000
    finally:
        if "worker" in replaced:
            replaced["worker"].stop()
        services.stop()
    print("worker kill drill:", figures)


# -- the stack's own parts: MariaDB stopped, Kafka restarted ------------------------------------------

def _stack(*args: str) -> None:
    """``rehab stack ...`` as a user runs it: the daemons it starts are not children of the test process."""
    proc = subprocess.run([sys.executable, "-m", "rehab.cli", "stack", *args], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, f"rehab stack {' '.join(args)}: {proc.stdout}{proc.stderr}"


def _stop(drill: Streams, part: str) -> None:
    drill.mark("stopping")
    _stack("down", "--only", part)
    drill.mark("stopped")


def _start(drill: Streams, part: str) -> None:
    _stack("up", "--only", part)
    drill.mark("recovered")


def test_mariadb_stopped_for_30_s_scores_keep_flowing_and_every_row_is_written_once_it_is_back(
        isolated_settings, stored_guide, clip_keypoints, tmp_path):
    """Two sessions stream for 50 s; MariaDB is stopped 5 s in and started again 30 s later. Live scores
    never pause for either (they do not wait on the database); once it is back every scored window is
    a row, none twice, none lost."""
    s = isolated_settings.with_(processor_coalesce_after=0)
    sessions = {sid: attempt(clip_keypoints, sid, 50.0) for sid in ("patient", "neighbour")}

    try:
        with Services(s, tmp_path / "run", names=("processor",)):
            drill = Streams(s, sessions, {5.0: lambda: _stop(drill, "mariadb"),
                                          35.0: lambda: _start(drill, "mariadb")}).start()
            drill.join()
            live = scores_by_session(s, {sid: f[-1].seq for sid, f in sessions.items()})
            figures = {sid: check_session(s, stored_guide, drill.sent[sid], live[sid]) for sid in sessions}
            for sid in sessions:
                figures[sid]["max_gap_s"] = max_gap_s(live[sid], drill.marks["stopped"], drill.marks["recovered"])
                assert figures[sid]["max_gap_s"] < 1.5, f"{sid}: live scores paused while MariaDB was away: {figures}"
    finally:
        _stack("up", "--only", "mariadb")  # whatever happened: the rest of the suite needs it
    figures["down_s"] = (drill.marks["recovered"] - drill.marks["stopped"]) / 1000
    print("MariaDB stop drill:", figures)


def test_kafka_restarted_mid_session_no_frame_is_lost_and_scores_resume(isolated_settings, stored_guide,
                                                                        clip_keypoints, tmp_path):
    """Two sessions stream for 30 s; the broker is stopped 5 s in (a controlled shutdown) and started
    again. The processor reconnects by itself; the frames sent meanwhile wait in the sender's producer
    (as the gateway's would) and are scored when the broker is back: no window lost, no row twice,
    scores again within 10 s of the broker's return. "Return" is when it serves this deployment's
    partitions and group again, not when its port opens: in between (seconds on a busy machine) no
    client can produce or join a group."""
    s = isolated_settings.with_(processor_coalesce_after=0)
    sessions = {sid: attempt(clip_keypoints, sid, 30.0) for sid in ("patient", "neighbour")}

    def restart():
        _stop(drill, "kafka")
        _start(drill, "kafka")  # returns once the broker serves the stack's own topics and group
        wait_serving(s.kafka_bootstrap, [t.name for t in s.topics.specs()], s.processor_app_id)
        drill.mark("serving")  # ... and this deployment's: the clock of "scores resumed" starts here

    try:
        with Services(s, tmp_path / "run", names=("processor",)):
            drill = Streams(s, sessions, {5.0: restart}).start()
            drill.join()
            live = scores_by_session(s, {sid: f[-1].seq for sid, f in sessions.items()}, timeout=120)
            figures = {sid: check_session(s, stored_guide, drill.sent[sid], live[sid],
                                          recovered_ms=drill.marks["serving"]) for sid in sessions}
    finally:
        _stack("up", "--only", "kafka")
    figures["broker_away_s"] = (drill.marks["serving"] - drill.marks["stopping"]) / 1000
    print("Kafka restart drill:", figures)
