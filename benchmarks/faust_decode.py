"""The framework's ceiling for ``processor_throughput --stage decode``: a Faust agent with the stream
processor's consumer settings that only decodes and validates keypoint frames, then counts them.
Run by the benchmark as ``python -m benchmarks.faust_decode worker`` with BENCH_* in the environment;
prints one JSON line when it has read BENCH_TOTAL messages."""
from __future__ import annotations

import json
import os
import time

import faust

from rehab.records import KeypointFrame, MessageError
from stream_processor.app import BATCH, BATCH_WITHIN_S, CONSUMER

TOTAL = int(os.environ["BENCH_TOTAL"])
app = faust.App(os.environ["BENCH_APP_ID"], broker=f"kafka://{os.environ['BENCH_BOOTSTRAP']}", store="memory://",
                web_enabled=False, datadir=os.environ["BENCH_DATADIR"], topic_partitions=int(os.environ["BENCH_PARTITIONS"]),
                key_serializer="raw", value_serializer="raw", consumer_auto_offset_reset="earliest", **CONSUMER)
keypoints = app.topic(os.environ["BENCH_TOPIC"], key_type=bytes, value_type=bytes)
seen = {"n": 0, "bad": 0, "t0": 0.0, "cpu0": 0.0, "main0": 0.0}


@app.agent(keypoints)
async def decode(stream):
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        if not seen["n"]:
            seen["t0"], seen["cpu0"], seen["main0"] = time.monotonic(), time.process_time(), time.thread_time()
        for e in events:
            try:
                KeypointFrame.from_json(e.value)
            except MessageError:
                seen["bad"] += 1
        seen["n"] += len(events)
        if seen["n"] >= TOTAL:
            elapsed, cpu = time.monotonic() - seen["t0"], time.process_time() - seen["cpu0"]
            main = time.thread_time() - seen["main0"]  # the agent's thread (Faust's consumer has its own)
            print(json.dumps({"decoded": seen["n"], "malformed": seen["bad"], "seconds_from_first_batch": round(elapsed, 2),
                              "cpu_seconds_from_first_batch": round(cpu, 3),
                              "main_thread_cpu_seconds_from_first_batch": round(main, 3)}), flush=True)
            os._exit(0)


if __name__ == "__main__":
    app.main()
