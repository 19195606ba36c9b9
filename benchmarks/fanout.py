"""WebSocket fan-out of one gateway, printed as JSON: SUBSCRIBERS score subscriptions spread over
SESSIONS sessions, each session getting RATE scores a second on the scores topic (written by a producer
process, stamped when sent); the push delay is the subscriber's receipt time minus that stamp (same
machine clock), i.e. Kafka + the gateway's consumer + its fan-out + the WebSocket.

    ./dev bench fanout [--subscribers 1000] [--sessions 250] [--rate 4] [--seconds 30]
Target (issue 5): 1,000 subscribers at 4 scores/s each, p99 push delay <= 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_SECRET, bench_stack, percentiles  # noqa: E402
from rehab.records import Score, now_ms  # noqa: E402
from rehab.adapters.storage.repository import Database  # noqa: E402

WARM_UP_S = 3.0


def subscriber_process(url: str, grants: list[tuple[str, str]], seconds: float, start_at: float, out) -> None:
    import websockets

    async def one(sid: str, token: str, delays: list, counts: list, sem: asyncio.Semaphore):
        async with sem:  # connect in waves, not hundreds of handshakes at once
            ws = await websockets.connect(f"{url}/sessions/{sid}/scores?token={token}", open_timeout=60,
                                          max_queue=None)
        async with ws:
            counts[0] += 1
            deadline = start_at + seconds
            while time.time() < deadline:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.time()))
                except asyncio.TimeoutError:
                    break
                received = now_ms()
                sent = json.loads(raw)["score_ts_ms"]
                if sent / 1000.0 >= start_at + WARM_UP_S:
                    delays.append(received - sent)

    async def main():
        delays: list = []
        counts = [0]
        sem = asyncio.Semaphore(50)
        await asyncio.gather(*(one(s, t, delays, counts, sem) for s, t in grants), return_exceptions=True)
        out.put({"delays": delays, "connected": counts[0]})

    asyncio.run(main())


def producer_process(bootstrap: str, topic: str, sessions: list[str], rate: float, seconds: float,
                     start_at: float) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    while time.time() < start_at:
        time.sleep(0.01)
    tick, n = 1.0 / rate, 0
    while time.time() < start_at + seconds:
        for i, sid in enumerate(sessions):  # sessions are not in step: spread them over the tick
            due = start_at + n * tick + i * tick / len(sessions)
            if due > time.time():
                time.sleep(due - time.time())
            ts = now_ms()
            score = Score(sid, n, n, ts - 1000, ts - 50, 0.8, {"left elbow": 0.8}, [], 0.5, n // 8, "bench",
                          ts - 40, ts - 30, ts, "guide", 0.8)
            producer.send(topic, key=sid.encode(), value=score.to_json())
        n += 1
    producer.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=250)
    ap.add_argument("--rate", type=float, default=4.0, help="scores per second per session")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--processes", type=int, default=2, help="subscriber processes")
    args = ap.parse_args()

    from gateway.auth import TokenSigner

    with bench_stack(services=("gateway",), token_ttl_s=3600) as settings:
        sessions = [f"fan{i:04d}" for i in range(args.sessions)]

        async def create():
            async with Database.opened(settings) as db:
                for sid in sessions:
                    await db.create_session(sid, "bench-patient", "guide", "cloud")

        asyncio.run(create())
        signer = TokenSigner(BENCH_SECRET, ttl_s=3600)
        grants = [(sessions[i % len(sessions)], signer.issue("patient", "bench-patient", sessions[i % len(sessions)])[0])
                  for i in range(args.subscribers)]
        ws_url = settings.gateway_url.replace("http", "ws", 1)
        start_at = time.time() + 5.0 + args.subscribers / 200  # time for every subscriber to connect
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        subs = [ctx.Process(target=subscriber_process, args=(ws_url, grants[p::args.processes], args.seconds,
                                                              start_at, out)) for p in range(args.processes)]
        for p in subs:
            p.start()
        prod = ctx.Process(target=producer_process, args=(settings.kafka_bootstrap, settings.topics.scores, sessions,
                                                          args.rate, args.seconds, start_at))
        prod.start()
        results = [out.get(timeout=args.seconds + 300) for _ in subs]
        for p in subs + [prod]:
            p.join(30)
    delays = [d for r in results for d in r["delays"]]
    measured_s = args.seconds - WARM_UP_S
    expected = args.subscribers * args.rate * measured_s
    report = {
        "subscribers": args.subscribers, "connected": sum(r["connected"] for r in results),
        "sessions": args.sessions, "scores_per_s_per_session": args.rate, "seconds": args.seconds,
        "pushes_received": len(delays), "pushes_expected": int(expected),
        "delivered_fraction": round(len(delays) / expected, 4) if expected else None,
        "push_delay_ms": percentiles(delays),
        "target": {"p99_push_delay_ms_le": 50, "met": bool(delays) and percentiles(delays)["p99"] <= 50},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
