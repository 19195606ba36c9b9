"""A dropped peer connection: the client reconnects with a new offer and the session (its scores, its
repetition count) goes on; a client that hangs up and does not come back has its session ended."""
import asyncio
import time

import httpx

from rehab.cli.camera import FileCameraTrack
from rehab.cli.client import create_session, negotiate, stream_file


async def _stream_then_drop(url, clip, seconds):
    """A new session streamed for ``seconds``, then its peer connection closed without a DELETE (the
    network drops, or the patient closes the tab); returns the session's grant."""
    grant = await create_session(url, "guide")
    pc = grant.peer_connection()
    pc.addTrack(FileCameraTrack(clip))
    await negotiate(pc, url, grant)  # raises if the gateway refuses the offer
    await asyncio.sleep(seconds)
    await pc.close()
    return grant


def _session(url, grant):
    return httpx.get(f"{url}/sessions/{grant.session_id}", headers=grant.headers, timeout=10).json()


def test_a_reconnect_continues_the_session(live_stack, data_dir):
    url, clip = live_stack.gateway_url, str(data_dir / "pose2sim_single_cam02.mp4")

    async def run():
        grant = await _stream_then_drop(url, clip, 2.0)
        await asyncio.sleep(1.0)
        after = [r async for r in stream_file(url, grant, clip)]  # a new offer, same session
        return grant, after

    grant, after = asyncio.run(run())
    assert len(after) >= 8 and all(r.score.session_id == grant.session_id for r in after)
    assert after[-1].score.window_end_seq > after[0].score.window_start_seq


def test_a_peer_that_hangs_up_ends_its_session(live_stack, data_dir):
    url, clip = live_stack.gateway_url, str(data_dir / "pose2sim_single_cam02.mp4")

    grant = asyncio.run(_stream_then_drop(url, clip, 1.5))
    assert _session(url, grant)["ended_at"] is None, "a moment's drop does not end the session"
    deadline = time.monotonic() + live_stack.session_idle_s + 10
    while time.monotonic() < deadline and _session(url, grant)["ended_at"] is None:
        time.sleep(1)
    assert _session(url, grant)["ended_at"] is not None, "ended after REHAB_SESSION_IDLE_S without the peer"


def test_a_session_goes_on_through_another_gateway_process(live_stack, data_dir, tmp_path):
    """A reconnect that reaches a gateway which never saw the session (the first one restarted, or a
    load balancer picked another): its frames are numbered past the first connection's, so the processor
    scores them instead of taking them for repeats of frames it has scored."""
    from rehab.stack.services import Services
    from rehab.adapters.storage.repository import Database
    from tests.conftest import free_port

    port = free_port()
    second = live_stack.with_(gateway_port=port, gateway_url=f"http://127.0.0.1:{port}",
                              worker_metrics_port=free_port(), processor_metrics_port=free_port())
    clip = str(data_dir / "pose2sim_single_cam02.mp4")

    async def run():
        grant = await _stream_then_drop(live_stack.gateway_url, clip, 3.0)
        await asyncio.sleep(1.0)
        async with Database.opened(live_stack) as db:
            scored_before = await db.execute("SELECT MAX(window_end_seq) FROM scores WHERE session_id=%s",
                                              (grant.session_id,), fetch="one")
        after = [r async for r in stream_file(second.gateway_url, grant, clip)]
        return scored_before[0], after

    with Services(second, tmp_path, names=("gateway",)):
        scored_before, after = asyncio.run(run())
    assert scored_before is not None, "the first connection was scored"
    assert len(after) >= 8, f"{len(after)} scores through the second gateway"
    assert all(r.score.window_start_seq > scored_before for r in after[1:]), "new frames, numbered past the old"
