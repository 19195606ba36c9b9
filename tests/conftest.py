"""Shared fixtures. Integration and e2e tests use the real local stack (``rehab stack up``, which
``./dev test`` runs first); each test gets topics and a database of its own."""
from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from rehab.adapters import kafka_compat
from rehab.settings import REPO_ROOT, Settings
from rehab.stack import proc

kafka_compat.apply()  # this process's Kafka clients too (the services get it from the CLI)

DATA = REPO_ROOT / "data"


def local_peer():
    """An aiortc peer connection with no ICE servers: aiortc's default would ask Google's public STUN
    server; the tests, like the product (REHAB_ICE_SERVERS), contact no public server."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@contextlib.asynccontextmanager
async def in_process_gateway(settings, reference):
    """The gateway app in this process, its lifespan run (real Kafka and MariaDB), ``reference``
    stored, and an httpx client to it (real aiortc peers can then connect over offers)."""
    import httpx

    from gateway.app import create_app
    from rehab.adapters.storage.repository import Database

    async with Database.opened(settings) as db:
        await db.save_reference(reference)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            http.app = app  # for tests that look at the gateway's state
            yield http


free_port = proc.free_port  # (tests import it from here)


async def eventually(condition, timeout_s: float = 5.0, what: str = "") -> None:
    """Waits (yielding to the event loop) until ``condition()`` holds; fails after ``timeout_s``. For
    background tasks' effects, instead of a fixed sleep that is too short on a busy machine."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what or condition}")
        await asyncio.sleep(0.005)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def blazepose():
    from edge.backends import create_backend

    backend = create_backend("blazepose")
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def clip_keypoints(blazepose):
    """BlazePose keypoint frames of the bundled clips, extracted once per test run."""
    from edge.extract import extract

    cache: dict[str, list] = {}

    def get(name: str) -> list:
        if name not in cache:
            cache[name] = list(extract(DATA / name, blazepose))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def guide_reference(clip_keypoints):
    """The bundled guide recording (pose2sim_single_cam01) as a Reference, from its BlazePose keypoints."""
    from rehab.reference import Reference

    frames = clip_keypoints("pose2sim_single_cam01.mp4")
    return Reference("guide", "guide", 60.0, frames[0].width, frames[0].height, "blazepose", "v", "0" * 64,
                     [f.keypoints for f in frames])


def _base_settings() -> Settings:
    # the suite's gateways start sessions without enrolling patients, as the demo does; the identity
    # tests (tests/integration/test_identity.py) turn it off
    return Settings.from_env().with_(demo_mode=True)


@contextlib.contextmanager
def isolated(**extra):
    """Settings with a unique topic namespace and database, created on the real stack and removed after."""
    from rehab.stack.isolation import isolated_deployment

    base = _base_settings()
    with isolated_deployment(base, "t", state_dir=base.state_dir, **extra) as settings:
        yield settings


@pytest.fixture
def isolated_settings():
    with isolated() as settings:
        yield settings


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
    if "slow" not in (config.getoption("-m") or ""):
        skip = pytest.mark.skip(reason="slow benchmark: run with pytest -m slow")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
