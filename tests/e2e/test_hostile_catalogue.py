"""The hostile-input catalogue, in one place, on the live stack (gateway, pose worker and processor as
processes, real Kafka and MariaDB): each case sends what a careless client or an attacker would, over
REST, SDP, the WebSocket, the data channel, uploads or straight into the Kafka topics, and asserts a
clear answer: a 4xx with a reason, a close code, an error message on the channel, or a dead letter with
its reason. A neighbouring session streams keypoints beside every case, from the first to the last, and
each case ends by checking it was still scored (the catalogue's last test checks it never paused and
that every service still answers).

Cases that need a limit lower than the live stack's (per-client rates, error throttling, channel count,
SDP and body sizes on the in-process app) are in tests/integration/test_gateway_api.py; pure record
bounds are property-tested in tests/unit/rehab/test_records_properties.py."""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import httpx
import orjson
import pytest
import websockets
from kafka import KafkaProducer

from rehab.cli.client import create_session, open_keypoint_channel, stream_keypoints
from rehab.records import FRAME_META_HEADER, now_ms
from tests.kafka_helpers import consume

SDP = "v=0\r\nm=video 9 RTP/AVP 96\r\n"


class Neighbour:
    """An edge-mode session streaming the clip's keypoints at 30 fps, on its own thread and event loop,
    for as long as the catalogue runs."""

    def __init__(self, url: str, clip: list):
        self.url, self.clip = url, clip
        self.scores: list[int] = []  # arrival times, ms
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _frames(self):
        i = 0
        while not self.stop.is_set():
            yield self.clip[i % len(self.clip)]
            i += 1

    async def _main(self) -> None:
        try:
            grant = await create_session(self.url, "guide", mode="device")
            async for r in stream_keypoints(self.url, grant, self._frames(), 30.0, tail_s=1.0, errors=self.errors):
                self.scores.append(r.received_ms)
        except BaseException as exc:  # reported by the last test
            self.failure = exc

    def scored_since(self, ms: int) -> int:
        return sum(1 for t in self.scores if t >= ms)


@pytest.fixture(scope="module")
def neighbour(live_stack, clip_keypoints):
    clip = [(f.width, f.height, f.keypoints) for f in clip_keypoints("pose2sim_single_cam02.mp4")]
    n = Neighbour(live_stack.gateway_url, clip)
    n.thread.start()
    deadline = time.monotonic() + 60
    while not n.scores and time.monotonic() < deadline and n.failure is None:
        time.sleep(0.2)
    assert n.scores, f"the neighbour got no score to start with: {n.failure!r}"
    n.started_ms = now_ms()
    yield n
    n.stop.set()
    n.thread.join(30)


@pytest.fixture
def healthy_neighbour(neighbour):
    """Each case: the neighbour is scored while it runs, and right after it."""
    start = now_ms()
    yield neighbour
    deadline = time.monotonic() + 3
    while neighbour.scored_since(max(start, now_ms() - 1500)) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert neighbour.scored_since(max(start, now_ms() - 3000)) > 0, "the neighbouring session stopped being scored"


@pytest.fixture(scope="module")
def http(live_stack):
    with httpx.Client(base_url=live_stack.gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def grant(http):
    r = http.post("/sessions", json={"reference_id": "guide", "patient_id": "catalogue"})
    assert r.status_code == 201, r.text
    return r.json()


def auth(token: str | bytes) -> dict:
    return {"Authorization": (b"Bearer " + token) if isinstance(token, bytes) else f"Bearer {token}"}


def refused(r: httpx.Response, status: int | tuple, needle: str = "") -> None:
    statuses = status if isinstance(status, tuple) else (status,)
    assert r.status_code in statuses, f"{r.status_code} {r.text[:300]}"
    reason = r.json()["error"]
    assert needle.lower() in reason.lower(), f"no clear reason ({needle!r}): {reason!r}"


# -- REST: bodies and fields -----------------------------------------------------------------------

REST_BODIES = [
    ("not JSON", b"{not json", 400, "json"),
    ("a JSON array", b"[1, 2, 3]", 422, "json object"),
    ("nested 100,000 deep", b"[" * 100_000 + b"]" * 100_000, 400, "nest"),
    ("invalid UTF-8", b'{"reference_id": "\xff\xfe"}', 400, ""),
    ("integer past 64 bits", b'{"reference_id": "guide", "n": 18000000000000000000}', 422, "unknown fields"),
    ("unknown field", b'{"reference_id": "guide", "admin": true}', 422, "unknown fields"),
    ("unknown reference", b'{"reference_id": "no-such-guide"}', 404, "unknown reference"),
    ("reference id with a path", b'{"reference_id": "../../etc/passwd"}', 422, "reference_id"),
    ("patient id of 5,000 characters", b'{"reference_id": "guide", "patient_id": "' + b"p" * 5000 + b'"}', 422,
     "patient_id"),
    ("patient id with control characters", b'{"reference_id": "guide", "patient_id": "a\\u0000b"}', 422,
     "patient_id"),
    ("patient id an object", b'{"reference_id": "guide", "patient_id": {"$ne": 1}}', 422, "patient_id"),
    ("mode unknown", b'{"reference_id": "guide", "mode": "telepathy"}', 422, "mode"),
    ("body of 2 MB", b" " * (2 << 20) + b"{}", 413, "larger than"),
]


@pytest.mark.parametrize("name, body, status, needle", REST_BODIES, ids=[c[0] for c in REST_BODIES])
def test_rest_session_body(healthy_neighbour, http, name, body, status, needle):
    refused(http.post("/sessions", content=body, headers={"Content-Type": "application/json"}), status, needle)


def test_rest_declared_length_of_300_mb_is_refused_before_reading(healthy_neighbour, live_stack):
    """A raw request declaring 300 MB: answered 413 at once, the body never read (memory stays flat:
    benchmarks/gateway_body_memory.py)."""
    host, port = live_stack.gateway_url.rsplit("/", 1)[1].split(":")

    async def go():
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"POST /sessions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {300 << 20}\r\n\r\n".encode() + b" " * 65536)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
        return head

    assert asyncio.run(go()).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("name, method, path, status", [
    ("method not allowed", "PUT", "/sessions", 405),
    ("path traversal in the static files", "GET", "/app/../../../etc/passwd", 404),
    ("unknown reference id with markup", "GET", "/references/%3Cscript%3E", (404, 422)),
], ids=lambda v: v if isinstance(v, str) and " " in v else None)
def test_rest_paths(healthy_neighbour, http, name, method, path, status):
    r = http.request(method, path)
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), f"{r.status_code} {r.text[:200]}"
    assert b"root:" not in r.content


# -- REST: tokens and access -------------------------------------------------------------------------

def _forged(token: str) -> str:
    head, _, sig = token.rpartition(".")
    return head + "." + ("A" if sig[0] != "A" else "B") + sig[1:]


TOKENS = [
    ("no token", None, 401),
    ("not a token", "hello", 401),
    ("forged signature", "forge", 401),
    ("non-ASCII signature", "unicode", 401),
    ("another session's token", "other", 403),
    ("a token of 100 kB", "huge", (401, 431)),
]


@pytest.mark.parametrize("name, kind, status", TOKENS, ids=[c[0] for c in TOKENS])
def test_rest_tokens(healthy_neighbour, http, grant, name, kind, status):
    token = {"hello": "hello", "forge": _forged(grant["token"]), "huge": "x" * 100_000,
             "unicode": grant["token"].rpartition(".")[0].encode() + ".sïgnature".encode()}.get(kind)
    if kind == "other":
        token = http.post("/sessions", json={"reference_id": "guide"}).json()["token"]
    headers = {} if token is None else auth(token)
    r = http.get(f"/sessions/{grant['session_id']}", headers=headers)
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), f"{r.status_code} {r.text[:200]}"
    r = http.post(f"/sessions/{grant['session_id']}/offer", headers=headers, json={"sdp": SDP, "type": "offer"})
    assert 400 <= r.status_code < 500


def test_rest_admin_operation_without_a_key(healthy_neighbour, http, data_dir):
    r = http.post("/references?name=x", content=(data_dir / "pose2sim_single_cam01.mp4").read_bytes()[:4096])
    assert r.status_code in (401, 403, 503) and r.json()["error"]  # 503: admin operations off (no key set)


def test_rest_foreign_origin(healthy_neighbour, http):
    r = http.post("/sessions", json={"reference_id": "guide"}, headers={"Origin": "https://evil.example"})
    refused(r, 403, "origin")


# -- SDP --------------------------------------------------------------------------------------------

SDPS = [
    ("SDP that does not parse", {"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\nbroken", "type": "offer"}, 400, "offer"),
    ("no sdp field", {"type": "offer"}, 400, "sdp"),
    ("an answer instead of an offer", {"sdp": SDP, "type": "answer"}, 400, "offer"),
    ("sdp a number", {"sdp": 12, "type": "offer"}, 400, "sdp"),
    ("sdp of 500 kB", {"sdp": "v=0\r\n" + "a=x\r\n" * 100_000, "type": "offer"}, (400, 413), ""),
    ("2,000 media sections", {"sdp": "v=0\r\n" + "m=video 9 RTP/AVP 96\r\n" * 2000, "type": "offer"}, (400, 413), ""),
]


@pytest.mark.parametrize("name, body, status, needle", SDPS, ids=[c[0] for c in SDPS])
def test_sdp(healthy_neighbour, http, grant, name, body, status, needle):
    refused(http.post(f"/sessions/{grant['session_id']}/offer", headers=auth(grant["token"]), json=body),
            status, needle)


def test_sdp_offer_for_an_ended_session(healthy_neighbour, http):
    g = http.post("/sessions", json={"reference_id": "guide"}).json()
    assert http.delete(f"/sessions/{g['session_id']}", headers=auth(g["token"])).status_code < 300
    r = http.post(f"/sessions/{g['session_id']}/offer", headers=auth(g["token"]), json={"sdp": SDP, "type": "offer"})
    assert 400 <= r.status_code < 500 and r.json()["error"], r.text


# -- WebSocket ---------------------------------------------------------------------------------------

def _ws_close(url: str, path: str, headers=None, send: str | bytes | None = None) -> int:
    async def go():
        async with websockets.connect(url.replace("http", "ws", 1) + path, additional_headers=headers or {},
                                      max_size=None) as ws:
            if send is not None:
                await ws.send(send)
            while True:
                await asyncio.wait_for(ws.recv(), 10)

    with pytest.raises(websockets.ConnectionClosed) as err:
        asyncio.run(go())
    return err.value.rcvd.code if err.value.rcvd else err.value.sent.code


WS = [
    ("no token", "none", 4401),
    ("forged token", "forge", 4401),
    ("another session's token", "other", 4403),
    ("unknown session", "unknown", (4401, 4403, 4404)),
    ("foreign origin", "origin", 4403),
]


@pytest.mark.parametrize("name, kind, code", WS, ids=[c[0] for c in WS])
def test_websocket_refusals(healthy_neighbour, live_stack, http, grant, name, kind, code):
    sid, token, headers = grant["session_id"], grant["token"], None
    if kind == "forge":
        token = _forged(token)
    elif kind == "other":
        token = http.post("/sessions", json={"reference_id": "guide"}).json()["token"]
    elif kind == "unknown":
        sid = uuid.uuid4().hex
    elif kind == "origin":
        headers = {"Origin": "https://evil.example"}
    path = f"/sessions/{sid}/scores" + ("" if kind == "none" else f"?token={token}")
    got = _ws_close(live_stack.gateway_url, path, headers)
    assert got in (code if isinstance(code, tuple) else (code,)), got


@pytest.mark.parametrize("name, payload", [("text from a push-only client", "hello"),
                                           ("a 4 MB message", b"\x00" * (4 << 20))],
                         ids=["text from a push-only client", "a 4 MB message"])
def test_websocket_client_messages_end_the_subscription(healthy_neighbour, live_stack, grant, name, payload):
    code = _ws_close(live_stack.gateway_url, f"/sessions/{grant['session_id']}/scores?token={grant['token']}",
                     send=payload)
    assert code in (1000, 1009), code


# -- the data channel ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def channel(live_stack, clip_keypoints):
    """An edge session's keypoint channel, on a loop of its own; ``send`` returns the replies it got."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    replies: list[dict] = []
    f = next(f for f in clip_keypoints("pose2sim_single_cam02.mp4") if f.keypoints is not None)

    async def open_():
        g = await create_session(live_stack.gateway_url, "guide", mode="device")
        return await open_keypoint_channel(live_stack.gateway_url, g, lambda raw: replies.append(json.loads(raw)))

    pc, ch = asyncio.run_coroutine_threadsafe(open_(), loop).result(60)
    t0 = now_ms()
    state = {"seq": 0}

    def good(**over):
        state["seq"] += 1
        m = {"type": "keypoints", "seq": state["seq"], "capture_ts_ms": t0 + state["seq"] * 33, "width": f.width,
             "height": f.height, "keypoints": f.keypoints}
        m.update(over)
        return json.dumps(m)

    def send(*messages, wait=0.6) -> list[dict]:
        before = len(replies)
        for m in messages:
            loop.call_soon_threadsafe(ch.send, m)
        time.sleep(wait)
        return replies[before:]

    send(good())  # one good message first (the "seq going back" case needs a previous one)
    yield send, good, f
    asyncio.run_coroutine_threadsafe(pc.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


CHANNEL = [
    ("not JSON", lambda good, f: "{nope", "not JSON"),
    ("binary", lambda good, f: b"\x00\x01\x02", "binary"),
    ("larger than the limit", lambda good, f: json.dumps({"type": "keypoints", "pad": "x" * 20_000}), "larger than"),
    ("deeply nested", lambda good, f: "[" * 5000 + "]" * 5000, ""),
    ("unknown type", lambda good, f: json.dumps({"type": "shell", "cmd": "rm -rf /"}), ""),
    ("wrong shape", lambda good, f: good(keypoints=[[1, 2, 0.5]] * 5), "list of 17"),
    ("confidence out of range", lambda good, f: good(keypoints=[[1.0, 2.0, 1.5]] * 17), "outside [0, 1]"),
    ("NaN", lambda good, f: good().replace(repr(f.keypoints[0][0]), "NaN", 1), "finite"),
    ("far outside the image", lambda good, f: good(keypoints=[[f.width * 10, 0, 0.9]] * 17), "far outside"),
    ("unknown field", lambda good, f: good(evil=1), "unknown fields"),
    ("seq going back", lambda good, f: good(seq=0), "is not after"),
    ("seq past 2^53", lambda good, f: good(seq=2 ** 63), "seq must be an integer in"),
    ("capture time past 64 bits", lambda good, f: good(capture_ts_ms=18_000_000_000_000_000_000), "within a day"),
    ("capture time a year off", lambda good, f: good(capture_ts_ms=now_ms() - 365 * 86_400_000), "within a day"),
    ("width 0", lambda good, f: good(width=0), "width"),
    ("width of 100,000 pixels", lambda good, f: good(width=100_000), "width"),
]


@pytest.mark.parametrize("name, make, needle", CHANNEL, ids=[c[0] for c in CHANNEL])
def test_data_channel_message(healthy_neighbour, channel, name, make, needle):
    send, good, f = channel
    errors = [r["reason"] for r in send(make(good, f)) if r["type"] == "error"]
    assert errors, f"no error reply for {name}"
    assert needle.lower() in errors[0].lower(), errors


def test_data_channel_flood_of_bad_messages_gets_bounded_replies_and_the_session_goes_on(healthy_neighbour, channel):
    """500 bad messages at once: at most a burst of error replies (then 5 a second), never 500; the
    session still scores good keypoints afterwards."""
    send, good, f = channel
    time.sleep(12)  # a full reply budget (60) to start from, whatever the cases before spent
    replies = send(*["{nope"] * 500, wait=2.0)
    errors = [r for r in replies if r["type"] == "error"]
    assert 20 <= len(errors) <= 60 + 15, len(errors)
    got = send(*[good() for _ in range(45)], wait=4.0)
    assert any(r["type"] == "score" for r in got), "the session still scores after the flood"


def test_data_channel_clock_message_out_of_range_on_a_cloud_session(healthy_neighbour, live_stack):
    async def go():
        g = await create_session(live_stack.gateway_url, "guide", mode="cloud")
        replies: list = []
        from rehab.cli.client import negotiate

        pc = g.peer_connection()
        ch = pc.createDataChannel("clock")
        ch.on("message", lambda raw: replies.append(json.loads(raw)))
        opened = asyncio.Event()
        ch.on("open", opened.set)
        await negotiate(pc, live_stack.gateway_url, g)
        await asyncio.wait_for(opened.wait(), 30)
        ch.send(json.dumps({"type": "clock", "t0_ms": 2 ** 70}))
        await asyncio.sleep(0.8)
        await pc.close()
        return replies

    errors = [r["reason"] for r in asyncio.run(go()) if r["type"] == "error"]
    assert errors and "within a day" in errors[0], errors


# -- Kafka records straight into the topics ------------------------------------------------------------

@pytest.fixture(scope="module")
def producer(live_stack):
    p = KafkaProducer(bootstrap_servers=live_stack.kafka_bootstrap, linger_ms=0)
    yield p
    p.close()


def _dead_letter_for(settings, key: str, timeout: float = 30.0) -> dict:
    letters = consume(settings, settings.topics.dead_letter,
                      lambda ms: any(json.loads(m.value).get("key") == key for m in ms), timeout)
    found = [json.loads(m.value) for m in letters if json.loads(m.value).get("key") == key]
    assert found, f"no dead letter for {key}"
    return found[0]


def _keypoint_record(sid: str, **over) -> bytes:
    m = {"session_id": sid, "seq": 1, "capture_ts_ms": now_ms(), "gateway_ts_ms": now_ms(), "infer_ts_ms": now_ms(),
         "model": "m", "model_version": "1", "width": 640, "height": 480, "keypoints": None, "reference_id": "guide"}
    m.update(over)
    return orjson.dumps(m)


KAFKA = [
    ("keypoints: not JSON", "keypoints", lambda sid: b"{nope", None, "json"),
    ("keypoints: seq past 2^53", "keypoints", lambda sid: _keypoint_record(sid, seq=2 ** 63), None, "seq"),
    ("keypoints: timestamp past 64 bits", "keypoints",
     lambda sid: _keypoint_record(sid, capture_ts_ms=18_000_000_000_000_000_000), None, "capture_ts_ms"),
    ("keypoints: unknown reference", "keypoints", lambda sid: _keypoint_record(sid, reference_id="no-such-guide"),
     None, "no-such-guide"),
    ("keypoints: 40 rows", "keypoints", lambda sid: _keypoint_record(sid, keypoints=[[1, 1, 1]] * 40), None,
     "list of 17"),
    ("frames: no metadata header", "frames", lambda sid: b"\xff\xd8\xff\xe0 not really", [], FRAME_META_HEADER),
    ("frames: not a JPEG", "frames", lambda sid: b"GIF89a",
     lambda sid: [(FRAME_META_HEADER, orjson.dumps({"session_id": sid, "seq": 1, "capture_ts_ms": now_ms(),
                                                    "gateway_ts_ms": now_ms(), "width": 64, "height": 64,
                                                    "reference_id": "guide"}))], "jpeg"),
    ("frames: 100,000 pixels wide", "frames", lambda sid: b"\xff\xd8\xff\xe0",
     lambda sid: [(FRAME_META_HEADER, orjson.dumps({"session_id": sid, "seq": 1, "capture_ts_ms": now_ms(),
                                                    "gateway_ts_ms": now_ms(), "width": 100_000, "height": 64,
                                                    "reference_id": "guide"}))], "width"),
    ("scores: not a score", "scores", lambda sid: b'{"hello": 1}', None, ""),
]


@pytest.mark.parametrize("name, topic, value, headers, needle", KAFKA, ids=[c[0] for c in KAFKA])
def test_kafka_record_is_dead_lettered_with_its_reason(healthy_neighbour, live_stack, producer, name, topic, value,
                                                       headers, needle):
    sid = f"hostile-{uuid.uuid4().hex[:12]}"
    hs = headers(sid) if callable(headers) else headers
    producer.send(getattr(live_stack.topics, topic), key=sid.encode(), value=value(sid), headers=hs).get(10)
    letter = _dead_letter_for(live_stack, sid)
    assert needle.lower() in letter["reason"].lower(), letter


@pytest.mark.parametrize("topic", ["keypoints", "scores", "frames"])
def test_kafka_null_record_is_ignored(healthy_neighbour, live_stack, producer, topic):
    """A tombstone (null value) on any topic: nobody crashes (score fan-out once did); the neighbour's
    scores keep coming (checked by the fixture)."""
    producer.send(getattr(live_stack.topics, topic), key=b"hostile-null", value=None).get(10)
    time.sleep(1.0)


# -- last: the neighbour was served throughout, every service still answers -------------------------------

def test_zz_the_neighbour_was_scored_throughout_and_every_service_answers(neighbour, live_stack):
    assert neighbour.failure is None, repr(neighbour.failure)
    assert not neighbour.errors, neighbour.errors[:5]
    arrivals = [t for t in neighbour.scores if t >= neighbour.started_ms]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) > 20 and max(gaps) < 2500, f"{len(arrivals)} scores, longest pause {max(gaps)} ms"
    assert httpx.get(f"{live_stack.gateway_url}/health", timeout=5).json()["status"] == "ok"
    for port in (live_stack.worker_metrics_port, live_stack.processor_metrics_port):
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
