"""Scoring throughput of one stream processor through Kafka, printed as JSON: keypoint frames/s from
the moment the processor starts reading a pre-filled topic until every session's last frame is scored
(so it includes JSON decoding, validation, scoring, publishing and MySQL upserts). The sessions'
frames are interleaved in the topic as live sessions' are (frame i of every session, then i + 1).

    ./dev bench processor_throughput [--sessions 20] [--frames-per-session 600]
    ./dev bench processor_throughput --stage decode   # Faust + decoding only: the framework's ceiling
    ./dev bench processor_throughput --stage both --min-interval-ms 250   # both on the same topic, and
                                                      # the processor's share of the ceiling (issue 15)
    ./dev bench processor_throughput --processors 2   # two processes in the consumer group
Needs the local stack (./dev rehab stack up). Uses its own topic namespace and database, removed after.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from benchmarks.common import bench_stack, clip_frames  # noqa: E402
from rehab.records import Score  # noqa: E402
from rehab.stack.services import Services  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--frames-per-session", type=int, default=600)
    ap.add_argument("--coalesce-after", type=int, default=0,
                    help="the processor's load shedding (REHAB_PROCESSOR_COALESCE_AFTER); 0 (default here): "
                         "every due window is scored, which is the scoring capacity; 8: the live default, "
                         "a backlog is scored at its newest frames only (catch-up speed)")
    ap.add_argument("--min-interval-ms", type=int, default=100,
                    help="the processor's scoring interval per session (REHAB_PROCESSOR_MIN_INTERVAL_MS; "
                         "100 = the default, 10 scores/s; 250 = the product's floor of 4 scores/s)")
    ap.add_argument("--processors", type=int, default=1,
                    help="processor processes in the consumer group (Faust splits the keypoints topic's 4 "
                         "partitions, and the tables with them, between them)")
    ap.add_argument("--stage", choices=("score", "decode", "both"), default="score",
                    help="score: the stream processor; decode: a Faust agent with its consumer settings that "
                         "only decodes and validates the frames (what one process can read at all); both: "
                         "decode, then score, the same topic in one run, and score / decode")
    ap.add_argument("--py-spy", type=int, default=0, metavar="SECONDS",
                    help="sample the (first) processor with py-spy for this long once it scores, and add where "
                         "its main thread's time goes to the JSON (by stage: see PROFILE_STAGES)")
    ap.add_argument("--py-spy-raw", type=Path, default=None, metavar="FILE",
                    help="also keep py-spy's raw samples (one stack a line) in FILE, to read beyond the stages")
    args = ap.parse_args()
    attempt = clip_frames("pose2sim_single_cam02.mp4")
    # the services start after the topic is filled, so the clock starts with the processor
    with bench_stack(services=(), processor_coalesce_after=args.coalesce_after,
                     processor_min_interval_ms=args.min_interval_ms) as settings:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, batch_size=1 << 20)
        n = args.frames_per_session
        for i in range(n):
            for s in range(args.sessions):
                sid = f"s{s}"
                f = dataclasses.replace(attempt[(i + 7 * s) % len(attempt)], session_id=sid, seq=i, reference_id="guide",
                                        capture_ts_ms=1_000_000 + round(i * 1000 / 30))  # a 30 fps camera
                producer.send(settings.topics.keypoints, key=sid.encode(), value=f.to_json())
        producer.flush()
        total = args.sessions * n
        ceiling = decode_only(settings, total) if args.stage in ("decode", "both") else None
        if args.stage == "decode":
            print(json.dumps(ceiling | {"sessions": args.sessions, "keypoint_frames": total,
                                        "target_keypoint_frames_per_s": 20000}, indent=2))
            return
        consumer = KafkaConsumer(settings.topics.scores, bootstrap_servers=settings.kafka_bootstrap,
                                 group_id=None, auto_offset_reset="earliest")
        with tempfile.TemporaryDirectory() as logs, contextlib.ExitStack() as group:
            procs = [Services(settings, Path(logs) / f"p{k}", names=("processor",)) for k in range(args.processors)]
            for p in procs:
                group.callback(p.stop)
            with ThreadPoolExecutor(len(procs)) as pool:  # started together, ready once each has partitions
                list(pool.map(lambda p: p.start(), procs))
            spy = start_py_spy(procs[0].procs["processor"].pid, args.py_spy, Path(logs)) if args.py_spy else None
            t0 = time.monotonic()
            pids = [p.procs["processor"].pid for p in procs]
            done, scores, stamps, cpu0, main0 = set(), 0, [], None, None
            while len(done) < args.sessions and time.monotonic() - t0 < 600:
                for batch in consumer.poll(timeout_ms=200).values():
                    if cpu0 is None:  # the processors' CPU from (about) their first score on
                        cpu0 = sum(cpu_seconds(pid) for pid in pids)
                        main0 = sum(cpu_seconds(pid, thread=pid) for pid in pids)
                    for m in batch:
                        sc = Score.from_json(m.value)
                        stamps.append(sc.score_ts_ms)
                        scores += 1
                        if sc.window_end_seq == n - 1:
                            done.add(sc.session_id)
            cpu = sum(cpu_seconds(pid) for pid in pids) - (cpu0 or 0.0)
            main = sum(cpu_seconds(pid, thread=pid) for pid in pids) - (main0 or 0.0)
            elapsed = time.monotonic() - t0
            peak_rss_mb = [peak_rss(p.procs["processor"].pid) for p in procs]
            # the processors' own clock: a processor may score before the others are ready
            steady = (max(stamps) - min(stamps)) / 1000 if len(stamps) > 1 else elapsed
            profile = {} if spy is None else {"where_the_time_goes": py_spy_stages(*spy)}
            if spy is not None and args.py_spy_raw and spy[1].exists():
                args.py_spy_raw.write_text(spy[1].read_text())
        consumer.close()
    cpu_per_frame, main_per_frame = cpu / total * 1e6, main / total * 1e6
    both = {} if ceiling is None else {
        "decode_only_keypoint_frames_per_s": ceiling["keypoint_frames_per_s"],
        "share_of_decode_ceiling": round(total / steady / ceiling["keypoint_frames_per_s"], 3),
        "target_share_of_decode_ceiling": 0.6,
        "decode_only_cpu_us_per_frame": round(ceiling["cpu_us_per_frame"], 1),
        "cpu_share_of_decode_ceiling": round(ceiling["cpu_us_per_frame"] / cpu_per_frame, 3),
        "decode_only_main_thread_cpu_us_per_frame": round(ceiling["main_thread_cpu_us_per_frame"], 1),
        "main_thread_cpu_share_of_decode_ceiling": round(ceiling["main_thread_cpu_us_per_frame"] / main_per_frame, 3)}
    print(json.dumps({
        "sessions": args.sessions, "processors": args.processors, "keypoint_frames": total, "scores": scores,
        "coalesce_after": args.coalesce_after, "min_interval_ms": args.min_interval_ms,
        "sessions_finished": len(done), "seconds_with_startup": round(elapsed, 2),
        "seconds_from_first_score": round(steady, 2),
        "keypoint_frames_per_s": round(total / steady, 1), "scores_per_s": round(scores / steady, 1),
        "keypoint_frames_per_s_with_startup": round(total / elapsed, 1),
        "note": "per second from the first score to the last, by the scores' score_ts_ms (start-up: Faust "
                "rebalance, first MySQL connection, is in seconds_with_startup)",
        "target_keypoint_frames_per_s": 20000,
        "processor_peak_rss_mb": peak_rss_mb,
        # CPU time (all threads) per frame: what a frame costs, whatever else the machine runs meanwhile (on
        # 2 cores the broker, MariaDB and this script take turns with the processor, and its rate follows)
        "processor_cpu_us_per_frame": round(cpu_per_frame, 1),
        # its main thread alone (Faust's consumer thread aside): one event loop runs the agents, so this is
        # what bounds one processor's rate
        "processor_main_thread_cpu_us_per_frame": round(main_per_frame, 1),
    } | both | profile, indent=2))


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """A process's CPU time so far (user + system, all threads; or one ``thread`` of it), from /proc; 0
    once it is gone."""
    try:
        where = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
        fields = Path(where).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss(pid: int) -> float | None:
    """A process's peak resident memory (VmHWM), MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# Where a processor's main thread spends its time, by the first rule whose function name is in the
# sampled stack (py-spy's raw format: "frame;frame;... count"); "idle" is the event loop waiting.
PROFILE_STAGES = (
    ("idle (event loop waiting)", ("EpollSelector.select",), True),
    ("decode + validate (as the ceiling)", ("KeypointFrame.from_json", "decode_keypoint_frames"), False),
    ("scoring", ("ScoringState._score",), False),
    ("publish scores + save state", ("ScorePublisher.emit",), False),
    # the score writer's own aiokafka consumer runs in this thread (Faust's consumer has a thread of its own)
    ("score rows into MySQL (consumer, decoding, upserts)",
     ("ScoreWriter.", "ScoreStore.store", "Fetcher._fetch_requests_routine", "Fetcher._proc_fetch_request",
      "GroupCoordinator"), False),
    ("per-frame bookkeeping", ("ScoringState.handle_batch", "create_app.<locals>.score_windows"), False),
    ("producer (aiokafka, Faust)", ("Sender.", "ProducerBuffer", "Producer.send", "AIOKafkaProducer"), False),
    ("consumer + event delivery (Faust, as the ceiling)", ("Fetcher", "Consumer", "Conductor", "Stream.", "Channel"),
     False),
)


def start_py_spy(pid: int, seconds: int, folder: Path):
    out = folder / "py-spy.txt"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid), "-d",
                             str(seconds), "-r", "100", "-f", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=open(folder / "py-spy.log", "wb"))
    return proc, out


def py_spy_stages(proc: subprocess.Popen, out: Path) -> dict:
    """Shares of the processor's main thread (the one running Faust's worker) by PROFILE_STAGES."""
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
    if not out.exists():
        return {"error": "py-spy wrote nothing: " + (out.parent / "py-spy.log").read_text(errors="replace")[-300:]}
    shares: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "execute_from_commandline" not in stack:
            continue  # another thread (the consumer's, the metrics server's)
        frames = [f.split(" (")[0] for f in stack.split(";")]
        total += int(count)
        name = "other (Faust, asyncio)"
        for stage, needles, last_only in PROFILE_STAGES:
            where = frames[-1:] if last_only else frames
            if any(n in f for f in where for n in needles):
                name = stage
                break
        shares[name] = shares.get(name, 0) + int(count)
    return {k: round(v / max(total, 1), 3) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def decode_only(settings, total: int) -> dict:
    with tempfile.TemporaryDirectory() as datadir:
        env = os.environ | {"BENCH_TOTAL": str(total), "BENCH_APP_ID": f"{settings.processor_app_id}-decode",
                            "BENCH_BOOTSTRAP": settings.kafka_bootstrap, "BENCH_TOPIC": settings.topics.keypoints,
                            "BENCH_DATADIR": datadir, "BENCH_PARTITIONS": str(settings.partitions)}
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "benchmarks.faust_decode", "worker", "-l", "warn"], env=env,
                             cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - t0
    # Faust's worker redirects print() into its log, so the JSON comes after a log prefix
    line = next((x[x.index('{"decoded"'):].strip() for x in (out.stdout + out.stderr).splitlines() if '{"decoded"' in x), None)
    if line is None:
        raise SystemExit(f"the decode-only agent failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    result = json.loads(line)
    return result | {"stage": "decode", "seconds_with_startup": round(elapsed, 2),
                     "keypoint_frames_per_s": round(total / result["seconds_from_first_batch"], 1),
                     "cpu_us_per_frame": result["cpu_seconds_from_first_batch"] / total * 1e6,
                     "main_thread_cpu_us_per_frame": result["main_thread_cpu_seconds_from_first_batch"] / total * 1e6}


if __name__ == "__main__":
    main()
