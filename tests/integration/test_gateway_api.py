"""The gateway's REST surface and who may use it, in-process on the real Kafka and MariaDB: uploads of
guide and attempt videos, the OpenAPI schema, and every way an offer, a subscription or an admin call
is refused (tests enumerate the cases, as issue 5 asks)."""
from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from tests.conftest import in_process_gateway, isolated, local_peer

API_KEY = "test-admin-key-0123456789"
SDP = "v=0\r\nm=video 9 RTP/AVP 96\r\n"


@pytest.fixture(scope="module")
def gw():
    with isolated(admin_api_key=API_KEY, allowed_origins="https://app.rehab.example",
                  upload_max_bytes=3 * 1024 * 1024) as settings:
        with TestClient(create_app(settings)) as client:
            client.rehab_settings = settings
            yield client


@pytest.fixture(scope="module")
def guide(gw, data_dir):
    body = (data_dir / "pose2sim_single_cam01.mp4").read_bytes()
    r = gw.post("/references?name=Arm%20raise&id=guide", content=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 201, r.text
    return r.json()


def new_session(gw, patient="p1", **headers):
    r = gw.post("/sessions", json={"reference_id": "guide", "patient_id": patient}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def ws_close_code(gw, path, **headers) -> int:
    with pytest.raises(WebSocketDisconnect) as err:
        with gw.websocket_connect(path, headers=headers) as ws:
            ws.receive_text()
    return err.value.code


def test_guide_upload_is_stored_and_readable(gw, guide):
    assert guide["reference_id"] == "guide" and guide["frames"] == 100
    assert guide["frames_with_subject"] >= 95
    r = gw.get("/references/guide")
    assert r.status_code == 200 and r.json()["n_frames"] == 100 and "frames" not in r.json()
    frames = gw.get("/references/guide?frames=true").json()["frames"]
    assert len(frames) == 100 and len(next(f for f in frames if f)) == 17
    assert any(row["id"] == "guide" for row in gw.get("/references").json())
    assert gw.get("/references/nope").status_code == 404


def test_scoring_an_uploaded_attempt_matches_the_offline_scorer(gw, guide, data_dir, clip_keypoints, guide_reference):
    from rehab.scoring import score_attempt

    r = gw.post("/references/guide/score", content=(data_dir / "pose2sim_single_cam02.mp4").read_bytes(),
                headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    result = r.json()
    offline = score_attempt(guide_reference, clip_keypoints("pose2sim_single_cam02.mp4"))
    assert result["similarity"] == pytest.approx(offline["similarity"], abs=1e-6)
    assert result["reps"] == offline["reps"] and set(result) >= {"joints", "corrections", "phase_coverage"}


def test_bad_uploads_get_clear_4xx(gw, guide):
    key = {"X-API-Key": API_KEY}
    r = gw.post("/references?name=x", content=b"", headers=key)
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = gw.post("/references?name=x", content=b"hello, I am a text file" * 10, headers=key)
    assert r.status_code == 415 and "not a video" in r.json()["error"]
    corrupt = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # an mp4 header, then garbage
    r = gw.post("/references?name=x", content=corrupt, headers=key)
    assert r.status_code == 422 and "cannot be read" in r.json()["error"]
    r = gw.post("/references?name=x", content=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * (4 * 1024 * 1024), headers=key)
    assert r.status_code == 413
    r = gw.post("/references", content=b"x", headers=key)
    assert r.status_code == 400 and "name" in r.json()["error"]
    r = gw.post("/references/nope/score", content=b"x", headers=key)
    assert r.status_code == 404
    assert not list(Path(gw.app.state.resources.uploads.name).iterdir()), "refused uploads leave no file"


def test_admin_operations_need_the_api_key(gw, data_dir):
    body = (data_dir / "pose2sim_single_cam01.mp4").read_bytes()
    assert gw.post("/references?name=x", content=body).status_code == 401
    assert gw.post("/references?name=x", content=body, headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 403
    assert gw.post("/references/guide/score", content=body).status_code == 401
    assert gw.post("/tokens/clinician", json={"clinician_id": "c1", "patient_id": "p1"}).status_code == 401


def test_admin_operations_are_off_without_a_configured_key():
    with isolated() as settings:
        with TestClient(create_app(settings)) as client:
            r = client.post("/references?name=x", content=b"x", headers={"X-API-Key": "anything-at-all-123"})
            assert r.status_code == 503 and "REHAB_ADMIN_API_KEY" in r.json()["error"]


def test_every_wrong_offer_is_refused(gw, guide):
    mine, other = new_session(gw, "p1"), new_session(gw, "p2")
    sid = mine["session_id"]
    signer = gw.app.state.signer
    expired, _ = signer.issue("patient", "p1", sid, ttl_s=-1)
    clinician, _ = signer.issue("clinician", "p1", subject="dr-who")
    forged = mine["token"][:-4] + ("AAAA" if not mine["token"].endswith("AAAA") else "BBBB")
    cases = {
        "no token": ({}, 401), "forged": (bearer(forged), 401), "expired": (bearer(expired), 401),
        "garbage": (bearer("not-a-token"), 401), "other session's token": (bearer(other["token"]), 403),
        "clinician token": (bearer(clinician), 403),
        "foreign origin": ({**bearer(mine["token"]), "Origin": "https://evil.example"}, 403),
    }
    for name, (headers, status) in cases.items():
        r = gw.post(f"/sessions/{sid}/offer", json={"sdp": SDP, "type": "offer"}, headers=headers)
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert "sdp" not in r.json()
    # the right token passes the checks (and then the SDP itself is judged)
    r = gw.post(f"/sessions/{sid}/offer", json={"sdp": SDP + "broken", "type": "offer"}, headers=bearer(mine["token"]))
    assert r.status_code == 400 and "bad offer" in r.json()["error"]
    assert gw.post(f"/sessions/{sid}/offer", json={}, headers=bearer(other["token"])).status_code == 403


def test_every_wrong_subscription_is_refused(gw, guide):
    mine, other = new_session(gw, "p1"), new_session(gw, "p2")
    sid = mine["session_id"]
    signer = gw.app.state.signer
    expired, _ = signer.issue("patient", "p1", sid, ttl_s=-1)
    other_patients_clinician, _ = signer.issue("clinician", "p2", subject="dr-who")
    path = f"/sessions/{sid}/scores"
    assert ws_close_code(gw, path) == 4401
    assert ws_close_code(gw, f"{path}?token=forged.token") == 4401
    assert ws_close_code(gw, f"{path}?token={expired}") == 4401
    assert ws_close_code(gw, f"{path}?token={other['token']}") == 4403
    assert ws_close_code(gw, f"{path}?token={other_patients_clinician}") == 4403
    assert ws_close_code(gw, f"{path}?token={mine['token']}", origin="https://evil.example") == 4403
    assert ws_close_code(gw, f"/sessions/nope/scores?token={other_patients_clinician}") == 4404
    # the session's own token, and a clinician token for its patient, are let in (and told nothing yet)
    r = gw.post("/tokens/clinician", json={"clinician_id": "dr-who", "patient_id": "p1"}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 201
    for token in (mine["token"], r.json()["token"]):
        with gw.websocket_connect(f"{path}?token={token}", headers={"origin": "https://app.rehab.example"}) as ws:
            ws.close()
    assert gw.get(f"/sessions/{sid}", headers=bearer(r.json()["token"])).status_code == 200
    assert gw.get(f"/sessions/{sid}", headers=bearer(other["token"])).status_code == 403
    assert gw.delete(f"/sessions/{sid}", headers=bearer(r.json()["token"])).status_code == 403


def test_browser_origins(gw, guide):
    body = {"reference_id": "guide", "patient_id": "p1"}
    assert gw.post("/sessions", json=body, headers={"Origin": "https://evil.example"}).status_code == 403
    assert gw.post("/sessions", json=body, headers={"Origin": "http://testserver"}).status_code == 201  # its own page
    assert gw.post("/sessions", json=body, headers={"Origin": "https://app.rehab.example"}).status_code == 201
    assert gw.post("/sessions", json=body).status_code == 201  # no Origin: not a browser


def test_openapi_schema_documents_the_endpoints(gw):
    schema = gw.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/references", "/references/{reference_id}/score", "/sessions", "/sessions/{session_id}/offer"} <= set(paths)
    assert "415" in paths["/references"]["post"]["responses"]
    assert "401" in paths["/sessions/{session_id}/offer"]["post"]["responses"]
    # what the fuzz (tests/e2e/test_api_fuzz.py) generates from: bodies, path parameters, credentials
    body = paths["/sessions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewSession"}
    assert schema["components"]["schemas"]["NewSession"]["required"] == ["reference_id"]
    assert paths["/sessions/{session_id}"]["get"]["parameters"] == [{"$ref": "#/components/parameters/session_id"}]
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "api_key"}


def test_a_huge_body_is_refused_with_413(gw, guide):
    """(That the gateway stops reading at the limit is tested on Starlette's Request in the unit tier
    and on the real server in tests/e2e: this in-process client sends the whole body first.)"""
    r = gw.post("/sessions", content=b" " * (1 << 20) + b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert "larger than" in r.json()["error"]
    # a declared length over the limit is refused before anything is read
    r = gw.post("/sessions", content=b"{}", headers={"Content-Length": str(300 << 20)})
    assert r.status_code == 413
    s = new_session(gw)
    r = gw.post(f"/sessions/{s['session_id']}/offer", content=b" " * (1 << 20), headers=bearer(s["token"]))
    assert r.status_code == 413


def test_on_device_mode_is_device_and_its_older_name_edge_is_still_accepted(gw, guide):
    for given in ("device", "edge"):
        r = gw.post("/sessions", json={"reference_id": "guide", "patient_id": "p1", "mode": given})
        assert r.status_code == 201 and r.json()["mode"] == "device", r.text
        got = gw.get(f"/sessions/{r.json()['session_id']}", headers=bearer(r.json()["token"]))
        assert got.json()["mode"] == "device", got.text
    r = gw.post("/sessions", json={"reference_id": "guide", "patient_id": "p1", "mode": "phone"})
    assert r.status_code == 422 and "device" in r.json()["error"]


@pytest.mark.parametrize("name, body", [
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ("integer past 64 bits", b'{"reference_id": "guide", "patient_id": "p1", "x": 18000000000000000000}'),
    ("not an object", b"[1, 2, 3]"),
    ("patient id an object", b'{"reference_id": "guide", "patient_id": {"a": 1}}'),
    ("invalid UTF-8", b'{"reference_id": "\xff\xfe"}'),
])
def test_hostile_session_bodies_get_a_4xx(gw, guide, name, body):
    r = gw.post("/sessions", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, f"{name}: {r.status_code} {r.text}"
    assert "error" in r.json()
    assert gw.get("/health").status_code == 200


def test_a_token_with_a_non_ascii_signature_is_a_401(gw, guide):
    s = new_session(gw)
    body = s["token"].split(".")[0]
    for token in (f"{body}.sig\u00e9", f"{body}\u00e9.abc", "\u4e2d.\u4e2d"):
        # (HTTP headers are latin-1: send the token's UTF-8 bytes as a client would)
        headers = {"Authorization": b"Bearer " + token.encode()}
        r = gw.post(f"/sessions/{s['session_id']}/offer", json={"sdp": SDP, "type": "offer"}, headers=headers)
        assert r.status_code == 401, f"{token!r}: {r.status_code} {r.text}"
        r = gw.get(f"/sessions/{s['session_id']}", headers=headers)
        assert r.status_code == 401, f"{token!r}: {r.status_code} {r.text}"


def test_a_client_that_creates_sessions_too_fast_gets_429_and_others_are_served():
    with isolated(client_sessions_per_min=6, client_max_websockets=1) as settings:
        with TestClient(create_app(settings)) as client:
            codes = [client.post("/sessions", json={"reference_id": "nope", "patient_id": "p"}).status_code
                     for _ in range(5)]
            assert codes == [404, 404, 404, 429, 429], codes  # burst 3, then refused before any work
            r = client.post("/sessions", json={"reference_id": "nope"})
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "too many" in r.json()["error"]


def test_a_client_answered_with_errors_too_often_is_refused_before_any_work_and_others_are_served():
    """Error replies are rate-limited per client (gateway.limits.ErrorThrottle): past the burst, the
    client's requests are answered 429 before any handler runs, its WebSockets closed with 4429; another
    client is served as before, and the client is served again once its bucket refills."""
    with isolated(client_errors_per_min=6) as settings:  # burst 3
        app = create_app(settings)
        other = TestClient(app, client=("10.0.0.2", 5000))  # (no lifespan of its own: its calls touch no I/O)
        with TestClient(app, client=("10.0.0.1", 5000)) as guesser:
            codes = [guesser.get("/sessions/s1", headers=bearer(f"forged.{i}")).status_code for i in range(5)]
            assert codes == [401, 401, 401, 429, 429], codes
            r = guesser.get("/health")
            assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "too many" in r.json()["error"]
            assert ws_close_code(guesser, "/sessions/s1/scores") == 4429
            assert other.get("/health").status_code == 200, "another client is served"
            assert other.get("/sessions/s1", headers=bearer("forged")).status_code == 401
            bucket = app.user_middleware  # (the limiter's clock is time.monotonic: refill it by hand)
            limit = next(m.kwargs["limit"] for m in bucket)
            tokens, at = limit.buckets["10.0.0.1"]
            limit.buckets["10.0.0.1"] = (tokens, at - 60)
            assert guesser.get("/health").status_code == 200, "served again once the bucket refilled"


def test_two_concurrent_offers_for_one_session_leave_one_peer_connection(guide_reference):
    """Two offers racing for one session: both answered, and every peer connection but the session's
    one is closed (the loser used to be dropped from the registry while still open: a leak)."""
    import asyncio

    from aiortc import RTCPeerConnection

    import gateway.peer as gateway_app

    made = []

    class Recorded(RTCPeerConnection):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    async def run(settings):
        async with in_process_gateway(settings, guide_reference) as http:
            grant = (await http.post("/sessions", json={"reference_id": "guide", "patient_id": "p1",
                                                       "mode": "device"})).json()
            clients = []
            for _ in range(2):
                pc = local_peer()
                pc.createDataChannel("keypoints")
                await pc.setLocalDescription(await pc.createOffer())
                clients.append(pc)
            answers = await asyncio.gather(*(http.post(
                f"/sessions/{grant['session_id']}/offer", headers=bearer(grant["token"]),
                json={"sdp": pc.localDescription.sdp, "type": "offer"}) for pc in clients))
            states = [pc.connectionState for pc in made]
            for pc in clients:
                await pc.close()
        return [a.status_code for a in answers], states

    original = gateway_app.RTCPeerConnection
    gateway_app.RTCPeerConnection = Recorded
    try:
        with isolated() as settings:
            codes, states = asyncio.run(run(settings))
    finally:
        gateway_app.RTCPeerConnection = original
    assert codes == [200, 200], codes
    assert len(made) == 2 and states.count("closed") == 1, states


def test_a_peer_may_open_only_a_few_data_channels(guide_reference):
    """A real aiortc client connected to the gateway in-process opens 7 data channels: the gateway
    closes those past MAX_CHANNELS_PER_SESSION and the keypoint channel keeps working."""
    import asyncio

    from aiortc import RTCSessionDescription

    from gateway.peer import MAX_CHANNELS_PER_SESSION

    async def run(settings):
        async with in_process_gateway(settings, guide_reference) as http:
            grant = (await http.post("/sessions", json={"reference_id": "guide", "mode": "device"})).json()
            pc = local_peer()
            channels = [pc.createDataChannel("keypoints")] + [pc.createDataChannel(f"extra{i}") for i in range(6)]
            replies = []
            channels[0].on("message", replies.append)
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"/sessions/{grant['session_id']}/offer", headers=bearer(grant["token"]),
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
            await pc.setRemoteDescription(RTCSessionDescription(**answer.json()))
            for _ in range(100):
                states = [c.readyState for c in channels]
                if states.count("closed") >= len(channels) - MAX_CHANNELS_PER_SESSION:
                    break
                await asyncio.sleep(0.1)
            channels[0].send("{nope")  # the keypoint channel still answers (with a refusal)
            for _ in range(50):
                if replies:
                    break
                await asyncio.sleep(0.1)
            await pc.close()
        return states, replies

    with isolated() as settings:
        states, replies = asyncio.run(run(settings))
    assert states.count("closed") == len(states) - MAX_CHANNELS_PER_SESSION, states
    assert states[0] == "open" and replies and "not JSON" in replies[0], (states, replies)


@pytest.mark.parametrize("configured", [None, [{"urls": "stun:127.0.0.1:3478"},
                                               {"urls": ["turn:127.0.0.1:3479?transport=udp"], "username": "u",
                                                "credential": "secret"}]])
def test_peer_connections_use_the_configured_ice_servers_and_no_public_default(guide_reference, configured):
    """The session grant hands REHAB_ICE_SERVERS to the client, and the gateway's own peer connection
    uses exactly those: none by default (aiortc's default is Google's public STUN server)."""
    import asyncio
    import json

    import gateway.peer as gateway_app

    made = []
    original = gateway_app.RTCPeerConnection

    class Recorded(original):
        def __init__(self, configuration=None):
            super().__init__(configuration)
            made.append(configuration)

    async def run(settings):
        async with in_process_gateway(settings, guide_reference) as http:
            grant = (await http.post("/sessions", json={"reference_id": "guide", "mode": "device"})).json()
            pc = local_peer()
            pc.createDataChannel("keypoints")
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"/sessions/{grant['session_id']}/offer", headers=bearer(grant["token"]),
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
            await pc.close()
        return grant, answer.status_code

    gateway_app.RTCPeerConnection = Recorded
    try:
        with isolated(ice_servers=json.dumps(configured) if configured else "") as settings:
            grant, status = asyncio.run(run(settings))
    finally:
        gateway_app.RTCPeerConnection = original
    assert status == 200 and len(made) == 1
    servers = made[0].iceServers
    if configured is None:
        assert grant["ice_servers"] == [] and servers == [], "no ICE server unless configured"
    else:
        assert [s["urls"] for s in grant["ice_servers"]] == [["stun:127.0.0.1:3478"],
                                                            ["turn:127.0.0.1:3479?transport=udp"]]
        assert grant["ice_servers"][1]["credential"] == "secret"
        assert [(s.urls, s.username, s.credential) for s in servers] == [
            (["stun:127.0.0.1:3478"], None, None), (["turn:127.0.0.1:3479?transport=udp"], "u", "secret")]


def test_a_live_session_gets_a_fresh_token_and_nobody_else_does(gw, guide):
    """POST /sessions/{id}/token: the session's own valid token gets a new one (a session may outlast
    REHAB_TOKEN_TTL_S and still reconnect); other sessions' tokens, clinicians, no token, a forged one
    and an ended session get none."""
    s, other = new_session(gw), new_session(gw, patient="p2")
    assert s["expires_in_s"] == 900
    r = gw.post(f"/sessions/{s['session_id']}/token", headers=bearer(s["token"]))
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["session_id"] == s["session_id"] and fresh["expires_at"] >= s["expires_at"]
    assert gw.get(f"/sessions/{s['session_id']}", headers=bearer(fresh["token"])).status_code == 200
    clinician = gw.post("/tokens/clinician", json={"clinician_id": "dr-a", "patient_id": "p1"},
                        headers={"X-API-Key": API_KEY}).json()["token"]
    for headers, status in ((bearer(other["token"]), 403), (bearer(clinician), 403), ({}, 401),
                            (bearer(fresh["token"][:-4] + "AAAA"), 401)):
        r = gw.post(f"/sessions/{s['session_id']}/token", headers=headers)
        assert r.status_code == status, (headers, r.text)
    assert gw.post("/sessions/unknown-session/token", headers=bearer(s["token"])).status_code == 403
    assert gw.delete(f"/sessions/{s['session_id']}", headers=bearer(fresh["token"])).status_code == 200
    r = gw.post(f"/sessions/{s['session_id']}/token", headers=bearer(s["token"]))
    assert r.status_code == 409 and "ended" in r.text


def _jsonl(frames) -> bytes:
    return b"".join(f.to_json() + b"\n" for f in frames)


def test_a_guide_from_keypoint_files_with_another_take_and_a_named_mistake(gw, clip_keypoints):
    """Keypoint files are taken wherever a video is; takes and named mistakes are stored in order (migration
    007) and scoring an uploaded attempt uses them, exactly as the offline scorer does."""
    import asyncio

    from rehab.scoring import score_attempt
    from rehab.adapters.storage.repository import Database

    key = {"X-API-Key": API_KEY}
    guide, other = clip_keypoints("pose2sim_single_cam01.mp4"), clip_keypoints("pose2sim_single_cam02.mp4")
    r = gw.post("/references?name=From%20keypoints&id=kp", content=_jsonl(guide), headers=key)
    assert r.status_code == 201 and r.json()["frames"] == len(guide), r.text
    r = gw.post("/references/kp/takes", content=_jsonl(other), headers=key)
    assert r.status_code == 201 and r.json() == {"reference_id": "kp", "correct_takes": 2, "mistakes": []}, r.text
    frozen = [f for f in other if f.keypoints][0]
    still = [type(f)(**{**f.__dict__, "seq": i, "capture_ts_ms": f.capture_ts_ms + 33 * i, "keypoints": frozen.keypoints})
             for i, f in enumerate(other)]
    r = gw.post("/references/kp/takes?label=stands%20still", content=_jsonl(still), headers=key)
    assert r.status_code == 201 and r.json()["mistakes"] == ["stands still"], r.text
    got = gw.get("/references/kp").json()
    assert got["correct_takes"] == 2 and got["mistakes"] == ["stands still"]
    listed = next(row for row in gw.get("/references").json() if row["id"] == "kp")
    assert listed["correct_takes"] == 2 and listed["mistakes"] == ["stands still"]

    async def stored():
        async with Database.opened(gw.rehab_settings) as db:
            return await db.get_reference("kp")

    ref = asyncio.run(stored())
    assert [t.label for t in ref.takes] == [None, "stands still"]
    assert ref.takes[0].frames == [f.keypoints for f in other]
    r = gw.post("/references/kp/score", content=_jsonl(still), headers=key)
    assert r.status_code == 200, r.text
    offline = score_attempt(ref, still)
    assert r.json()["similarity"] == offline["similarity"] and r.json()["mistake"] == offline["mistake"]
    assert r.json()["verdict"] == "not the exercise"


def test_bad_takes_get_clear_4xx(gw, guide, clip_keypoints):
    key = {"X-API-Key": API_KEY}
    body = _jsonl(clip_keypoints("pose2sim_single_cam02.mp4"))
    assert gw.post("/references/nope/takes", content=body, headers=key).status_code == 404
    r = gw.post("/references/guide/takes?label=" + "x" * 129, content=body, headers=key)
    assert r.status_code == 400 and "label" in r.json()["error"]
    r = gw.post("/references/guide/takes", content=b"hello, I am a text file" * 10, headers=key)
    assert r.status_code == 415
    r = gw.post("/references/guide/takes", content=b'{"session_id": "s"}\n', headers=key)
    assert r.status_code == 422 and "line 1" in r.json()["error"]
    assert gw.post("/references/guide/takes", content=body).status_code == 401
    assert gw.get("/references/guide").json()["correct_takes"] == 1, "refused takes are not stored"
    assert not list(Path(gw.app.state.resources.uploads.name).iterdir()), "refused uploads leave no file"
