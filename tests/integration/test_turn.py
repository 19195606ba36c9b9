"""Time-limited TURN credentials (gateway/turn.py) against a real coturn (Debian's ``coturn``, started
here with ``use-auth-secret``, as compose runs it): the credentials a session is granted get a relay
allocation, for the app and for the gateway's own peer connection; a credential signed with another
secret, or one past its expiry, gets none; a token refresh hands out fresh ones."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest

from rehab.cli.client import Grant
from gateway.turn import turn_credentials
from tests.conftest import in_process_gateway, isolated

SECRET = "turn-test-secret-0123456789"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _relay_candidates(ice_servers: list[dict]) -> int:
    """How many relay candidates a peer connection with these ICE servers gathers (an allocation on the
    TURN server, which checks the credential)."""
    pc = Grant("x", "t", ice_servers=tuple(ice_servers)).peer_connection()
    try:
        pc.createDataChannel("probe")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp.count("typ relay")
    finally:
        await pc.close()


@pytest.fixture(scope="module")
def coturn(tmp_path_factory):
    if shutil.which("turnserver") is None:
        pytest.fail("coturn is not installed: ./dev test installs it (apt-get install coturn)")
    port, tmp = _free_udp_port(), tmp_path_factory.mktemp("coturn")
    log = open(tmp / "turnserver.log", "w")
    proc = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         "--use-auth-secret", f"--static-auth-secret={SECRET}", "--realm=rehab.test", "--no-cli", "--no-tls",
         "--no-dtls", "--no-tcp", "--min-port=49200", "--max-port=49400", "--allow-loopback-peers",
         f"--pidfile={tmp / 'turnserver.pid'}", f"--userdb={tmp / 'turndb'}", "--log-file=stdout"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"turn:127.0.0.1:{port}?transport=udp"
    try:
        deadline = time.monotonic() + 15
        while True:  # ready once it grants an allocation
            user, credential = turn_credentials(SECRET, "probe", 60)
            if asyncio.run(_relay_candidates([{"urls": [url], "username": user, "credential": credential}])):
                break
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "turnserver.log").read_text()[-2000:]
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_a_session_gets_turn_credentials_that_coturn_accepts_and_only_those(coturn, guide_reference):
    from tests.conftest import local_peer

    async def run(settings):
        async with in_process_gateway(settings, guide_reference) as http:
            grant = (await http.post("/sessions", json={"reference_id": "guide", "mode": "device"})).json()
            turn = grant["ice_servers"][-1]
            relays = await _relay_candidates(grant["ice_servers"])
            # the gateway's own peer connection allocates with the session's credential too
            pc = local_peer()
            pc.createDataChannel("keypoints")
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"/sessions/{grant['session_id']}/offer",
                                     headers={"Authorization": f"Bearer {grant['token']}"},
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
            await pc.close()
            fresh = (await http.post(f"/sessions/{grant['session_id']}/token",
                                     headers={"Authorization": f"Bearer {grant['token']}"})).json()
            forged = [{**turn, "credential": turn_credentials("another-secret-0123456789", grant["session_id"],
                                                                3600)[1]}]
            expired = [{**turn, **dict(zip(("username", "credential"),
                                           turn_credentials(SECRET, grant["session_id"], -60)))}]
            refused = [await _relay_candidates(forged), await _relay_candidates(expired)]
        return grant, turn, relays, answer, fresh, refused

    with isolated(turn_urls=coturn, turn_secret=SECRET, turn_ttl_s=600) as settings:
        grant, turn, relays, answer, fresh, refused = asyncio.run(run(settings))
    expiry, _, user = turn["username"].partition(":")
    assert turn["urls"] == [coturn] and user == grant["session_id"]
    assert 0 < int(expiry) - time.time() <= 600
    assert relays >= 1, "the granted credential gets a relay allocation"
    assert answer.status_code == 200 and "typ relay" in answer.json()["sdp"], "the gateway relays too"
    assert refused == [0, 0], "another secret's credential, and an expired one, get no allocation"
    assert fresh["ice_servers"][-1]["username"] >= turn["username"]
