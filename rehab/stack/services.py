"""Starts the three services (gateway, pose worker, stream processor) as child processes and stops
them cleanly. The main job and the end-to-end tests use it; production uses docker compose."""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rehab.settings import Settings
from rehab.stack.proc import StackError, tail

SERVICES = ("processor", "worker", "gateway")


@dataclass
class Services:
    settings: Settings
    log_dir: Path
    names: tuple[str, ...] = SERVICES
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list = field(default_factory=list)

    def _ready_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.ready"

    def start(self, timeout: float = 120.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}
        for name in self.names:
            ready = self._ready_file(name)
            ready.unlink(missing_ok=True)
            log = open(self.log_dir / f"{name}.log", "ab")
            self.logs.append(log)
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "rehab.cli", "serve", name, "--ready-file", str(ready)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        for name in self.names:
            while not self._ready(name):
                proc = self.procs[name]
                if proc.poll() is not None:
                    self.stop()
                    raise StackError(f"the {name} exited during start-up; see {self.log_dir / name}.log:\n"
                                     f"{tail(self.log_dir / f'{name}.log', 25)}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise StackError(f"the {name} was not ready after {timeout:.0f}s; see {self.log_dir}/{name}.log")
                time.sleep(0.3)

    def _ready(self, name: str) -> bool:
        if name == "gateway":
            try:
                # (a gateway with its own certificate is checked against that certificate)
                cert = self.settings.tls_cert_file
                return httpx.get(f"{self.settings.gateway_url}/health", timeout=1,
                                 verify=ssl.create_default_context(cafile=cert) if cert else True).status_code == 200
            except httpx.HTTPError:
                return False
        return self._ready_file(name).exists()

    def kill(self, name: str) -> None:
        """SIGKILL one service, as a crash would (no graceful shutdown, no final commit)."""
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait()

    def stop(self, timeout: float = 20.0) -> dict[str, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self.procs.clear()
        for log in self.logs:
            log.close()
        self.logs.clear()
        return codes

    def __enter__(self) -> "Services":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
