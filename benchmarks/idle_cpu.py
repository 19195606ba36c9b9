"""CPU the services use with no session at all (JSON): the gateway, a BlazePose worker and the
processor started on their own topics and database, left to settle, then each process's CPU time
(user + system, from /proc, so other load on the machine does not count) over a measured interval.

    ./dev bench idle_cpu [--settle 20] [--seconds 30]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RUNNING, bench_stack  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads (and its reaped children), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settle", type=float, default=20.0, help="seconds after start-up before measuring")
    p.add_argument("--seconds", type=float, default=30.0, help="measured interval")
    args = p.parse_args(argv)
    with bench_stack():
        procs = dict(RUNNING[-1].procs)
        time.sleep(args.settle)
        before = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
        t0 = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - t0
        after = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
    cores = {name: round((after[name] - before[name]) / wall, 4) for name in procs}
    print(json.dumps({"idle_cores": cores, "total_cores": round(sum(cores.values()), 4), "seconds": round(wall, 1),
                      "target_per_service": 0.02}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
