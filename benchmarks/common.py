"""What the benchmarks share: an isolated stack (own topics and database on the local Kafka and
MariaDB, started if they are not running; removed after), the guide stored as reference "guide",
services as processes, percentiles."""
from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from rehab.reference import Reference
from rehab.stack.proc import free_port
from rehab.stack.isolation import isolated_deployment
from rehab.stack import local
from rehab.stack.services import Services
from rehab.settings import REPO_ROOT, Settings
from rehab.adapters.storage.repository import Database

BENCH_SECRET = "benchmark-secret-not-for-production"


def clip_frames(name: str) -> list:
    from edge.backends import create_backend
    from edge.extract import extract

    backend = create_backend("blazepose")
    try:
        return list(extract(REPO_ROOT / "data" / name, backend))
    finally:
        backend.close()


def guide_reference() -> Reference:
    g = clip_frames("pose2sim_single_cam01.mp4")
    return Reference("guide", "guide", 60.0, g[0].width, g[0].height, "blazepose", "v", "0" * 64,
                     [f.keypoints for f in g])


RUNNING: list = []  # the Services of the bench_stack in use (a benchmark may read their processes)


@contextlib.contextmanager
def bench_stack(services: tuple[str, ...] = ("processor", "worker", "gateway"), **overrides):
    port = free_port()
    base = Settings.from_env()
    # the local Kafka and MariaDB, started if they are not running (as `./dev test` does; JSON stays alone
    # on stdout)
    local.up(base, log=lambda line: print(f"[bench] {line}", file=sys.stderr, flush=True))
    overrides = {"gateway_port": port, "gateway_url": f"http://127.0.0.1:{port}", "auth_secret": BENCH_SECRET,
                 "worker_metrics_port": 0, "processor_metrics_port": 0,
                 "demo_mode": True,  # the load generator starts sessions without enrolling patients
                 # one client: the load generator on this machine
                 "client_sessions_per_min": 0, "client_offers_per_min": 0, "client_max_websockets": 0, **overrides}
    with isolated_deployment(base, "bench", **overrides) as settings:
        ref = guide_reference()

        async def save():
            async with Database.opened(settings) as db:
                await db.save_reference(ref)

        asyncio.run(save())
        with tempfile.TemporaryDirectory() as logs, Services(settings, Path(logs), names=services) as running:
            RUNNING.append(running)
            try:
                yield settings
            finally:
                RUNNING.remove(running)


def percentiles(values, qs=(50, 95, 99)) -> dict:
    if not len(values):
        return {f"p{q}": None for q in qs} | {"max": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {f"p{q}": round(float(np.percentile(arr, q)), 1) for q in qs} | {"max": round(float(arr.max()), 1),
                                                                           "n": int(arr.size)}
