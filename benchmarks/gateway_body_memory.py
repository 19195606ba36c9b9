"""The gateway's memory while a client sends huge bodies (issue 12: a 300 MB body used to be read whole,
+357 MB). The real gateway process (uvicorn) on its own topics and database; each body is streamed
chunked (no Content-Length, so the gateway cannot refuse it up front and must stop while reading) to
``POST /sessions`` (JSON, limit 256 KB) and ``POST /references`` (video upload, limit
REHAB_UPLOAD_MAX_BYTES, 200 MB by default). Prints JSON: the process's resident memory before, its
peak (VmHWM) after, the status each request got and how many bytes the client managed to send.

    ./dev bench gateway_body_memory [--mb 300]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from benchmarks.common import RUNNING, bench_stack  # noqa: E402

CHUNK = 1 << 20


def memory_mb(pid: int) -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def send(url: str, mb: int, headers: dict) -> dict:
    sent = [0]

    def body():
        for _ in range(mb):
            sent[0] += CHUNK
            yield b" " * CHUNK

    try:
        r = httpx.post(url, content=body(), headers=headers, timeout=120)
        status = r.status_code
    except httpx.HTTPError as exc:  # the server may close the connection once it refused the body
        status = type(exc).__name__
    return {"status": status, "client_sent_mb": round(sent[0] / CHUNK)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=300, help="size of each body, MB")
    args = p.parse_args(argv)
    with bench_stack(services=("gateway",), admin_api_key="bench-admin-key-0123456789") as settings:
        pid = RUNNING[-1].procs["gateway"].pid
        time.sleep(2.0)
        before = memory_mb(pid)
        results = {
            "sessions_json": send(f"{settings.gateway_url}/sessions", args.mb, {"Content-Type": "application/json"}),
            "references_upload": send(f"{settings.gateway_url}/references?name=big", args.mb,
                                      {"X-API-Key": "bench-admin-key-0123456789"}),
        }
        after = memory_mb(pid)
    print(json.dumps({"body_mb": args.mb, "rss_before_mb": round(before["VmRSS"], 1),
                      "peak_rss_mb": round(after["VmHWM"], 1),
                      "peak_growth_mb": round(after["VmHWM"] - before["VmRSS"], 1), **results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
