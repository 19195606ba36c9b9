"""The whole live story on the real stack: a real aiortc client streams the patient clip into the
gateway; the pose worker and the Faust processor run as their own processes; scores come back over
the WebSocket and are in MySQL."""
import asyncio
import json

import httpx
import pytest
import websockets

from rehab.cli.client import create_session, stream_file
from rehab.adapters.storage.repository import Database
from rehab.topics import session_of
from tests.kafka_helpers import consume


async def _rows(settings, session_id, expected):
    async with Database.opened(settings) as db:
        return await db.wait_for_scores(session_id, expected)


def test_patient_clip_gets_live_scores_over_websocket_and_in_mysql(live_stack, data_dir):
    async def run():
        grant = await create_session(live_stack.gateway_url, "guide")
        session_id = grant.session_id
        received = [r async for r in stream_file(live_stack.gateway_url, grant,
                                                 str(data_dir / "pose2sim_single_cam02.mp4"))]
        return session_id, received, await _rows(live_stack, session_id, len(received))

    session_id, received, rows = asyncio.run(run())
    # The clip lasts 100 / 60 = 1.7 s; the processor promises at least 4 scores per second of session,
    # and the scores must follow the clip to its end (the worker always gets to the newest frame).
    assert len(received) >= 8, f"expected >= 8 live scores for the 1.7 s clip, got {len(received)}"
    assert received[-1].score.window_end_seq >= 75, f"last score ends at frame {received[-1].score.window_end_seq}"
    assert all(r.score.session_id == session_id for r in received)
    seqs = [r.score.window_end_seq for r in received]
    assert seqs == sorted(seqs), "scores arrive in capture order"
    lat = sorted(r.latency_ms for r in received)
    assert 0 < lat[len(lat) // 2] < 1000, f"median glass-to-score latency {lat[len(lat) // 2]} ms"
    gaps = [b.received_ms - a.received_ms for a, b in zip(received[3:], received[4:])]
    assert max(gaps) <= 500, f"once warm, a score at least every 0.5 s; longest gap {max(gaps)} ms"
    assert rows == len(received), f"MySQL holds {rows} rows for {len(received)} scores"


def test_gateway_refuses_bad_requests_clearly(live_stack):
    url = live_stack.gateway_url
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/health").json()["status"] == "ok"
        r = http.post("/sessions", json={"reference_id": "no-such-guide"})
        assert r.status_code == 404 and "unknown reference" in r.json()["error"]
        r = http.post("/sessions", content=b"{not json")
        assert r.status_code == 400
        r = http.post("/sessions", json={"reference_id": "guide", "mode": "telepathy"})
        assert r.status_code == 422
        grant = http.post("/sessions", json={"reference_id": "guide"}).json()
        sid, auth = grant["session_id"], {"Authorization": f"Bearer {grant['token']}"}
        r = http.post(f"/sessions/{sid}/offer", headers=auth,
                      json={"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\nbroken", "type": "offer"})
        assert r.status_code == 400 and "bad offer" in r.json()["error"], r.text
        r = http.post(f"/sessions/{sid}/offer", headers=auth, json={"type": "offer"})
        assert r.status_code == 400 and "sdp" in r.json()["error"]
        r = http.post(f"/sessions/{sid}/offer", json={"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n", "type": "offer"})
        assert r.status_code == 401, "an offer without the session's token is refused"
        assert http.get(f"/sessions/{sid}", headers=auth).json()["reference_id"] == "guide"

    async def ws_without_token():
        ws_url = url.replace("http", "ws", 1) + f"/sessions/{sid}/scores"
        async with websockets.connect(ws_url) as ws:
            await ws.recv()

    with pytest.raises(websockets.ConnectionClosed) as err:
        asyncio.run(ws_without_token())
    assert err.value.rcvd.code == 4401


def test_a_subscriber_asking_for_keypoints_gets_the_sessions_skeletons_as_well_as_its_scores(live_stack, data_dir):
    """The browser app draws the patient's skeleton from the keypoints pushed with ``keypoints=true``
    (the gateway reads the keypoints topic only while such a subscriber exists); the client's own
    subscription, without it, gets scores only (``Score.from_json`` would fail on anything else)."""
    async def run():
        grant = await create_session(live_stack.gateway_url, "guide")
        url = live_stack.gateway_url.replace("http", "ws", 1) + \
            f"/sessions/{grant.session_id}/scores?token={grant.token}&keypoints=true"
        pushed: list[dict] = []

        async def watch(ws):
            async for raw in ws:
                pushed.append(json.loads(raw))

        async with websockets.connect(url, open_timeout=15) as ws:
            watcher = asyncio.create_task(watch(ws))
            await asyncio.sleep(1.0)  # the gateway starts reading the keypoints topic
            received = [r async for r in stream_file(live_stack.gateway_url, grant,
                                                     str(data_dir / "pose2sim_single_cam02.mp4"))]
            watcher.cancel()
        return grant.session_id, received, pushed

    session_id, received, pushed = asyncio.run(run())
    frames = [m for m in pushed if m.get("schema") == "keypoint_frame.v1"]
    scores = [m for m in pushed if "similarity" in m]
    # every keypoint frame the worker published for the session reaches the subscriber (how many that
    # is depends on the machine's inference speed, so the topic is the yardstick, not a fixed count)
    on_topic = [m for m in consume(live_stack, live_stack.topics.keypoints,
                                   lambda ms: False, timeout=3.0) if session_of(m.key) == session_id]
    assert len(on_topic) >= 5, f"the worker published {len(on_topic)} keypoint frames for the session"
    assert len(frames) >= len(on_topic) - 2, f"{len(frames)} of {len(on_topic)} keypoint frames pushed"
    assert {f["session_id"] for f in frames} == {session_id}
    assert len(scores) >= len(received) - 1 and received, "the same subscriber also gets the scores"


def test_the_python_client_streams_with_a_patients_credential_outside_demo_mode(live_stack, data_dir, tmp_path):
    """``rehab stream --credential``: the client trades the patient's credential for a token and starts
    the session as that patient; without one a gateway outside demo mode refuses it."""
    from rehab.stack.services import Services
    from tests.conftest import free_port

    port = free_port()
    settings = live_stack.with_(gateway_port=port, gateway_url=f"http://127.0.0.1:{port}", demo_mode=False)
    admin = {"X-API-Key": live_stack.admin_api_key}

    async def run():
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=30) as http:
            code = (await http.post("/patients", json={"patient_id": "client-patient"}, headers=admin)).json()
            credential = (await http.post("/invitations/accept", json={"code": code["invitation_code"]})).json()
        with pytest.raises(RuntimeError, match="401"):
            await create_session(settings.gateway_url, "guide")
        grant = await create_session(settings.gateway_url, "guide", credential=credential["credential"])
        received = [r async for r in stream_file(settings.gateway_url, grant,
                                                 str(data_dir / "pose2sim_single_cam02.mp4"))]
        async with httpx.AsyncClient(base_url=settings.gateway_url, timeout=30) as http:
            listed = (await http.get("/patients/client-patient/sessions", headers=admin)).json()
        return grant, received, listed

    with Services(settings, tmp_path / "gateway", names=("gateway",)):
        grant, received, listed = asyncio.run(run())
    assert len(received) >= 3, f"scores: {len(received)}"
    assert [row["session_id"] for row in listed] == [grant.session_id]
