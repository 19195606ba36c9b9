"""Who may do what, end to end (issue 14): a clinician enrols a patient, the patient's app exchanges the
invitation for a credential and only that credential's tokens start the patient's sessions; sessions
are visible to the patient and the patient's clinician only; logout and removal revoke tokens at once,
close open WebSockets (in this gateway and, by polling, in another one) and end live sessions; a
WebSocket closes when its token expires. In-process gateways on the real Kafka and MariaDB, demo
mode off as in compose."""
from __future__ import annotations

import asyncio
import time

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from gateway.app import create_app
from rehab.adapters.storage.identity import Identity
from rehab.adapters.storage.repository import Database
from tests.conftest import isolated

API_KEY = "test-admin-key-0123456789"
ADMIN = {"X-API-Key": API_KEY}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def settings(guide_reference):
    with isolated(admin_api_key=API_KEY, demo_mode=False, auth_secret="identity-test-secret") as s:
        async def save():
            async with Database.opened(s) as db:
                await db.save_reference(guide_reference)
        asyncio.run(save())
        yield s


@pytest.fixture(scope="module")
def gw(settings):
    with TestClient(create_app(settings)) as client:
        yield client


def clinician_token(gw, clinician: str) -> str:
    r = gw.post("/clinicians", json={"clinician_id": clinician}, headers=ADMIN)
    assert r.status_code == 201, r.text
    r = gw.post("/tokens", json={"credential": r.json()["credential"]})
    assert r.status_code == 201 and r.json()["role"] == "clinician", r.text
    return r.json()["token"]


def enrolled_patient(gw, clinician_tok: str, patient: str) -> tuple[str, str]:
    """(the patient's credential, a patient token), through the invitation as the app does it."""
    r = gw.post("/patients", json={"patient_id": patient}, headers=bearer(clinician_tok))
    assert r.status_code == 201, r.text
    invitation = r.json()
    assert invitation["invitation_url"].endswith(f"/?invite={invitation['invitation_code']}")
    r = gw.post("/invitations/accept", json={"code": invitation["invitation_code"]})
    assert r.status_code == 201 and r.json()["patient_id"] == patient, r.text
    credential = r.json()["credential"]
    r = gw.post("/tokens", json={"credential": credential})
    assert r.status_code == 201 and r.json() | {"token": 0, "expires_at": 0} == {
        "token": 0, "expires_at": 0, "expires_in_s": 900, "role": "patient", "patient_id": patient}
    return credential, r.json()["token"]


def new_session(gw, patient_tok: str, **body) -> dict:
    r = gw.post("/sessions", json={"reference_id": "guide", **body}, headers=bearer(patient_tok))
    assert r.status_code == 201, r.text
    return r.json()


def short_token(gw, session: dict, ttl_s: float = 20.0) -> str:
    """The session's token, living ``ttl_s``: a stream that the revocation failed to close still ends
    (as "expired", failing the test) instead of hanging it."""
    signer = gw.app.state.signer
    claims = signer.verify(session["token"])
    return signer.issue("patient", claims.patient_id, claims.session_id, ttl_s=ttl_s,
                        credential_id=claims.credential_id)[0]


def ws_close(gw, path: str) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as err:
        with gw.websocket_connect(path) as ws:
            ws.receive_text()
    return err.value.code, err.value.reason


def test_enrolment_invitation_and_who_sees_what(gw, settings):
    dr_a, dr_b = clinician_token(gw, "dr-a"), clinician_token(gw, "dr-b")
    credential, pat = enrolled_patient(gw, dr_a, "anna")
    _, other_pat = enrolled_patient(gw, dr_b, "bert")
    s = new_session(gw, pat, mode="device")
    assert s["patient_id"] == "anna"
    sid = s["session_id"]
    # the patient's session, readable by the session, the patient and the patient's clinician only
    for token in (s["token"], pat, dr_a):
        assert gw.get(f"/sessions/{sid}", headers=bearer(token)).status_code == 200
    for token in (other_pat, dr_b):
        assert gw.get(f"/sessions/{sid}", headers=bearer(token)).status_code == 403
    listed = gw.get("/patients/anna/sessions", headers=bearer(dr_a))
    assert listed.status_code == 200 and [row["session_id"] for row in listed.json()] == [sid]
    assert gw.get("/patients/anna/sessions", headers=bearer(pat)).json() == listed.json()
    assert gw.get("/patients/anna/sessions", headers=ADMIN).json() == listed.json()
    for token in (dr_b, other_pat, s["token"]):
        assert gw.get("/patients/anna/sessions", headers=bearer(token)).status_code == 403
    # a second credential exchange works (a new token), the invitation does not (single use)
    assert gw.post("/tokens", json={"credential": credential}).status_code == 201

    async def audit():
        async with Database.opened(settings) as db:
            return [e["action"] for e in await Identity(db).audit_entries("anna")]
    assert asyncio.run(audit()) == ["invited", "invitation_accepted"]


def test_every_refusal(gw, settings):
    dr_a, dr_b = clinician_token(gw, "dr-c"), clinician_token(gw, "dr-d")
    r = gw.post("/patients", json={"patient_id": "carl"}, headers=bearer(dr_a))
    code = r.json()["invitation_code"]
    assert gw.post("/invitations/accept", json={"code": code}).status_code == 201
    _, pat = enrolled_patient(gw, dr_a, "cleo")
    session = new_session(gw, pat)
    body = {"reference_id": "guide"}
    cases = [
        # starting a session: only the patient's own token, for that patient
        ("session without a token", gw.post("/sessions", json=body), 401),
        ("session with a clinician token", gw.post("/sessions", json=body, headers=bearer(dr_a)), 403),
        ("session with a session token", gw.post("/sessions", json=body, headers=bearer(session["token"])), 403),
        ("session for another patient", gw.post("/sessions", json={**body, "patient_id": "carl"},
                                                headers=bearer(pat)), 403),
        ("session with a forged token", gw.post("/sessions", json=body, headers=bearer(pat[:-4] + "AAAA")), 401),
        # references: any valid token (not demo mode)
        ("references without a token", gw.get("/references"), 401),
        ("a reference without a token", gw.get("/references/guide"), 401),
        # credentials and invitations
        ("a wrong credential", gw.post("/tokens", json={"credential": "0" * 32 + ".nope"}), 401),
        ("not a credential", gw.post("/tokens", json={"credential": "x"}), 401),
        ("a credential body with extra fields", gw.post("/tokens", json={"credential": "x", "role": "admin"}), 422),
        ("an unknown invitation", gw.post("/invitations/accept", json={"code": "no-such-code"}), 404),
        ("a used invitation", gw.post("/invitations/accept", json={"code": code}), 410),
        # enrolment and removal: the admin key or a clinician's own token, their own patients
        ("enrol without a token", gw.post("/patients", json={"patient_id": "dora"}), 401),
        ("enrol with a patient token", gw.post("/patients", json={"patient_id": "dora"}, headers=bearer(pat)), 403),
        ("enrol another clinician's patient", gw.post("/patients", json={"patient_id": "carl"},
                                                      headers=bearer(dr_b)), 409),
        ("enrol with a bad id", gw.post("/patients", json={"patient_id": "../x"}, headers=bearer(dr_a)), 422),
        ("a clinician credential without the API key", gw.post("/clinicians", json={"clinician_id": "x"}), 401),
        ("a clinician credential with a clinician token", gw.post("/clinicians", json={"clinician_id": "x"},
                                                                  headers=bearer(dr_a)), 403),
        ("remove another clinician's patient", gw.delete("/patients/carl", headers=bearer(dr_b)), 403),
        ("remove with a patient token", gw.delete("/patients/carl", headers=bearer(pat)), 403),
        ("remove an unknown patient", gw.delete("/patients/nobody", headers=ADMIN), 404),
        ("log out a token with no credential", gw.post("/logout", headers=bearer(
            gw.app.state.signer.issue("clinician", "carl", subject="dr-x")[0])), 400),
        ("log out without a token", gw.post("/logout"), 401),
    ]
    for name, r, status in cases:
        assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
        assert "error" in r.json(), name
    assert gw.get("/references", headers=bearer(pat)).status_code == 200
    assert gw.get("/references", headers=ADMIN).status_code == 200

    async def expire_invitation():  # a week is long to wait: the row's expiry is moved into the past
        async with Database.opened(settings) as db:
            await db.execute("UPDATE invitations SET expires_at = CURRENT_TIMESTAMP(3) - INTERVAL 1 SECOND "
                             "WHERE patient_id='dora'")
    code = gw.post("/patients", json={"patient_id": "dora"}, headers=bearer(dr_a)).json()["invitation_code"]
    asyncio.run(expire_invitation())
    assert gw.post("/invitations/accept", json={"code": code}).status_code == 410


def test_logout_revokes_every_token_of_the_credential_and_closes_its_stream_at_once(gw):
    dr = clinician_token(gw, "dr-e")
    credential, pat = enrolled_patient(gw, dr, "emil")
    s = new_session(gw, pat)
    path = f"/sessions/{s['session_id']}/scores?token={short_token(gw, s)}"
    with gw.websocket_connect(path) as ws:
        assert gw.post("/logout", headers=bearer(pat)).status_code == 200
        with pytest.raises(WebSocketDisconnect) as err:
            ws.receive_text()
    assert err.value.code == 4401 and "revoked" in err.value.reason
    for r in (gw.get(f"/sessions/{s['session_id']}", headers=bearer(s["token"])),
              gw.post(f"/sessions/{s['session_id']}/token", headers=bearer(s["token"])),
              gw.post("/sessions", json={"reference_id": "guide"}, headers=bearer(pat)),
              gw.post("/tokens", json={"credential": credential})):
        assert r.status_code == 401 and "revoked" in r.json()["error"], r.text
    assert ws_close(gw, path)[0] == 4401
    # the clinician still sees the session
    assert gw.get(f"/sessions/{s['session_id']}", headers=bearer(dr)).status_code == 200


def test_removing_a_patient_through_another_gateway_closes_their_stream_here(gw, settings):
    dr = clinician_token(gw, "dr-f")
    _, pat = enrolled_patient(gw, dr, "fred")
    s = new_session(gw, pat)
    token = short_token(gw, s)
    expires_at = gw.app.state.signer.verify(token).expires_at
    with TestClient(create_app(settings)) as other_gateway:
        with gw.websocket_connect(f"/sessions/{s['session_id']}/scores?token={token}") as ws:
            r = other_gateway.delete("/patients/fred", headers=bearer(dr))
            assert r.status_code == 200 and r.json()["removed"] is True
            with pytest.raises(WebSocketDisconnect) as err:
                ws.receive_text()
            closed_at = time.time()
    # found by this gateway's revocation poll: closed as revoked, while its token was still valid
    assert err.value.code == 4401 and "revoked" in err.value.reason
    assert closed_at < expires_at
    assert gw.delete("/patients/fred", headers=bearer(dr)).status_code == 409
    assert gw.get(f"/sessions/{s['session_id']}", headers=bearer(dr)).status_code == 200  # rows stay (not erased)
    for r in (gw.get(f"/sessions/{s['session_id']}", headers=bearer(s["token"])),
              gw.post("/sessions", json={"reference_id": "guide"}, headers=bearer(pat))):
        assert r.status_code == 401, r.text
    r = gw.post("/patients", json={"patient_id": "fred"}, headers=bearer(dr))
    assert r.status_code == 409 and "removed" in r.json()["error"]


def test_a_stream_closes_when_its_token_expires(gw):
    dr = clinician_token(gw, "dr-g")
    _, pat = enrolled_patient(gw, dr, "gina")
    s = new_session(gw, pat)
    token = short_token(gw, s, 1.5)
    expires_at = gw.app.state.signer.verify(token).expires_at
    code, reason = ws_close(gw, f"/sessions/{s['session_id']}/scores?token={token}")
    assert code == 4401 and "expired" in reason
    assert time.time() >= expires_at, "closed before its token expired"


def test_removing_a_patient_ends_their_live_session(guide_reference):
    """A connected session (a real aiortc peer, edge mode) ends when its patient is removed: the peer
    connection closes and the session row records why."""
    from tests.conftest import in_process_gateway, local_peer

    async def run(s):
        async with in_process_gateway(s, guide_reference) as http:
            code = (await http.post("/patients", json={"patient_id": "hans"}, headers=ADMIN)).json()["invitation_code"]
            credential = (await http.post("/invitations/accept", json={"code": code})).json()["credential"]
            token = (await http.post("/tokens", json={"credential": credential})).json()["token"]
            grant = (await http.post("/sessions", json={"reference_id": "guide", "mode": "device"},
                                     headers=bearer(token))).json()
            pc = local_peer()
            pc.createDataChannel("keypoints")
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"/sessions/{grant['session_id']}/offer", headers=bearer(grant["token"]),
                                     json={"sdp": pc.localDescription.sdp, "type": "offer"})
            assert answer.status_code == 200, answer.text
            live = http.app.state.live
            assert grant["session_id"] in live
            r = await http.delete("/patients/hans", headers=ADMIN)
            assert r.status_code == 200, r.text
            still_live = grant["session_id"] in live
            await pc.close()
            async with Database.opened(s) as db:
                summary = await db.execute("SELECT summary, ended_at IS NOT NULL FROM sessions WHERE id=%s",
                                           (grant["session_id"],), fetch="one")
        return still_live, summary

    with isolated(admin_api_key=API_KEY, demo_mode=False) as s:
        still_live, (summary, ended) = asyncio.run(run(s))
    assert not still_live and ended and '"ended_by": "revoked"' in summary


def test_a_clinician_erases_their_patient_and_no_one_else_can(gw, settings):
    dr, other = clinician_token(gw, "dr-i"), clinician_token(gw, "dr-j")
    _, pat = enrolled_patient(gw, dr, "ines")
    s = new_session(gw, pat)
    for headers, status in (({}, 401), (bearer(other), 403), (bearer(pat), 403)):
        r = gw.post("/patients/ines/erase", headers=headers)
        assert r.status_code == status, r.text
    assert gw.post("/patients/nobody-at-all/erase", headers=ADMIN).status_code == 404
    r = gw.post("/patients/ines/erase", headers=bearer(dr))
    assert r.status_code == 200, r.text
    assert r.json()["sessions"] == 1 and r.json()["rows_deleted"]["sessions"] == 1
    assert gw.get(f"/sessions/{s['session_id']}", headers=bearer(dr)).status_code == 404
    assert gw.post("/sessions", json={"reference_id": "guide"}, headers=bearer(pat)).status_code == 401
    assert gw.get("/patients/ines/sessions", headers=ADMIN).json() == []

    async def audit():
        async with Database.opened(settings) as db:
            return [(e["actor"], e["action"]) for e in await Identity(db).audit_entries("ines")]
    assert asyncio.run(audit())[-2:] == [("clinician:dr-i", "patient_removed"), ("clinician:dr-i", "patient_erased")]


def test_guides_are_seen_by_their_clinician_and_that_clinicians_patients(gw, settings, guide_reference, data_dir):
    """A guide an admin registered is the clinic's; one a clinician registered is seen by them and their
    patients only, and no other clinician may replace it."""
    import dataclasses

    dr_k, dr_l = clinician_token(gw, "dr-k"), clinician_token(gw, "dr-l")
    _, kate = enrolled_patient(gw, dr_k, "kate")
    _, luke = enrolled_patient(gw, dr_l, "luke")

    async def save():
        async with Database.opened(settings) as db:
            await db.save_reference(dataclasses.replace(guide_reference, id="k-guide", name="K's guide"), "dr-k")
    asyncio.run(save())
    seen = {who: sorted(r["id"] for r in gw.get("/references", headers=bearer(token)).json())
            for who, token in (("dr-k", dr_k), ("kate", kate), ("dr-l", dr_l), ("luke", luke))}
    assert seen == {"dr-k": ["guide", "k-guide"], "kate": ["guide", "k-guide"], "dr-l": ["guide"], "luke": ["guide"]}
    assert gw.get("/references/k-guide", headers=bearer(luke)).status_code == 404
    assert gw.get("/references/k-guide", headers=bearer(kate)).status_code == 200
    assert gw.post("/sessions", json={"reference_id": "k-guide"}, headers=bearer(luke)).status_code == 404
    assert gw.post("/sessions", json={"reference_id": "k-guide"}, headers=bearer(kate)).status_code == 201
    assert sorted(r["id"] for r in gw.get("/references", headers=ADMIN).json()) == ["guide", "k-guide"]
    # a clinician registers a guide of their own, and may not replace another clinician's
    video = (data_dir / "pose2sim_single_cam01.mp4").read_bytes()
    r = gw.post("/references?name=L%20raise&id=l-guide", content=video, headers=bearer(dr_l))
    assert r.status_code == 201, r.text
    assert "l-guide" in [x["id"] for x in gw.get("/references", headers=bearer(luke)).json()]
    assert "l-guide" not in [x["id"] for x in gw.get("/references", headers=bearer(kate)).json()]
    r = gw.post("/references?name=K%27s%20guide&id=k-guide", content=video, headers=bearer(dr_l))
    assert r.status_code == 409, r.text
    assert gw.post("/references?name=x", content=video, headers=bearer(luke)).status_code == 403
