import asyncio
import json
import time

import numpy as np
import pytest

from gateway.fanout import ScoreFanout
from gateway.ingest import LatestSlot, Pending, encode_jpeg
from gateway.offer import Offer, OfferError
from tests.conftest import eventually

GOOD_SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


async def test_latest_slot_keeps_only_the_newest_frame():
    slot = LatestSlot()
    for seq in range(5):
        slot.put(Pending(None, seq, seq))
    taken = await slot.take()
    assert taken.seq == 4 and slot.dropped == 4, "older frames must be dropped, not queued"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(slot.take(), 0.05)


def test_encode_jpeg_downscales_to_the_model_size():
    image = np.zeros((1920, 1080, 3), np.uint8)
    jpeg, w, h = encode_jpeg(image, 640, 80)
    assert (w, h) == (360, 640) and jpeg[:2] == b"\xff\xd8"


@pytest.mark.parametrize("body, reason", [
    ("not a dict", "JSON object"),
    ({}, "missing field 'sdp'"),
    ({"sdp": GOOD_SDP, "type": "answer"}, "type must be 'offer'"),
    ({"sdp": "hello", "type": "offer"}, "v=0"),
    ({"sdp": "v=0\r\n", "type": "offer"}, "neither a video track"),
    ({"sdp": "v=0" + "a" * 70000, "type": "offer"}, "larger than"),
    ({"sdp": GOOD_SDP, "extra": 1}, "unknown fields"),
])
def test_malformed_offers_are_refused_with_a_reason(body, reason):
    with pytest.raises(OfferError) as err:
        Offer.from_json(body)
    assert reason in str(err.value)


def test_a_valid_offer_is_accepted():
    assert Offer.from_json({"sdp": GOOD_SDP, "type": "offer"}).sdp == GOOD_SDP


async def test_fanout_reaches_only_the_sessions_subscribers_and_never_blocks():
    fan = ScoreFanout(queue_size=2)
    mine, other = fan.subscribe("a"), fan.subscribe("b")
    for i in range(5):
        fan.publish("a", str(i))
    assert [mine.get_nowait(), mine.get_nowait()] == ["3", "4"], "a slow subscriber keeps the newest"
    assert other.empty()
    fan.unsubscribe("a", mine)
    assert fan.publish("a", "x") == 0


def _rtp(seq: int, ts: int, marker: bool, data: bytes):
    from aiortc.rtp import RtpPacket

    p = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts)
    p._data = data
    return p


def test_marker_jitter_buffer_releases_a_frame_on_its_last_packet():
    from aiortc.jitterbuffer import JitterBuffer

    from rehab.adapters.webrtc.jitter import MarkerJitterBuffer

    packets = [_rtp(1, 3000, False, b"a"), _rtp(2, 3000, True, b"b"), _rtp(3, 6000, False, b"c")]
    ours, theirs = MarkerJitterBuffer(capacity=128, is_video=True), JitterBuffer(capacity=128, is_video=True)
    out_ours = [ours.add(p)[1] for p in packets]
    out_theirs = [theirs.add(p)[1] for p in packets]
    assert out_ours[1] is not None and out_ours[1].data == b"ab", "released with the marked packet"
    assert out_theirs[1] is None and out_theirs[2].data == b"ab", "aiortc waits for the next frame"
    assert out_ours[2] is None, "the next frame is not complete yet"
    # a gap inside a frame holds it back
    gap = MarkerJitterBuffer(capacity=128, is_video=True)
    assert gap.add(_rtp(10, 9000, False, b"x"))[1] is None
    assert gap.add(_rtp(12, 9000, True, b"z"))[1] is None
    assert gap.add(_rtp(11, 9000, False, b"y"))[1].data == b"xyz"


def test_the_session_fps_budget_drops_frames_by_capture_time_and_never_holds_one_back():
    from gateway.ingest import VideoIngest

    ingest = VideoIngest("s", "ref", producer=None, topic="t", max_fps=15.0)
    kept, last = [], None
    for i in range(60):  # a 30 fps camera: every other frame fits a 15 fps budget
        ts = 1000 + round(i * 1000 / 30)
        if not ingest.over_budget(ts, last):
            kept.append(i)
            last = ts
    assert kept == list(range(0, 60, 2))
    assert not ingest.over_budget(1000 + 67, 1000), "a 15 fps camera is never dropped"
    assert not ingest.over_budget(500, 1000), "a capture clock that went back starts afresh"


def test_a_preencoded_camera_sends_h264_packets_at_its_pace_and_loops_from_a_key_frame(data_dir):
    import asyncio
    import time

    from rehab.cli.camera import VIDEO_CLOCK, EncodedCameraTrack

    track = EncodedCameraTrack(str(data_dir / "pose2sim_single_cam02.mp4"), max_side=240, loops=2, fps=30.0)
    n = len(track.packets)
    assert n == 50, "one loop of the 60 fps clip as a 30 fps camera"
    assert b"\x00\x00\x01\x65" in track.packets[0], "the first packet holds an IDR slice (Annex B start code)"
    assert not any(b"\x00\x00\x01\x65" in p for p in track.packets[1:]), "and only the first"

    async def read(k):
        return [await track.recv() for _ in range(k)]

    t = time.monotonic()
    packets = asyncio.run(read(n + 2))
    assert time.monotonic() - t >= (n + 1) / 30.0 - 0.05, "sent at the camera's pace, not all at once"
    assert [p.pts for p in packets[:3]] == [0, VIDEO_CLOCK // 30, 2 * VIDEO_CLOCK // 30]
    assert bytes(packets[n]) == track.packets[0], "the second loop starts again at the key frame"


class _FakeKeypointConsumer:
    def __init__(self):
        self.records: list = []
        self.stopped = False

    async def getmany(self, timeout_ms, max_records):
        await asyncio.sleep(0.01)
        out, self.records = self.records, []
        return {"tp": out} if out else {}

    async def stop(self):
        self.stopped = True


async def test_the_keypoints_topic_is_read_only_while_someone_subscribed_to_keypoints():
    from types import SimpleNamespace

    opened: list[_FakeKeypointConsumer] = []

    async def open_keypoints():
        opened.append(_FakeKeypointConsumer())
        return opened[-1]

    fan = ScoreFanout(open_keypoints=open_keypoints, keypoints_linger_s=0.05)
    scores_only = fan.subscribe("a")
    assert fan.keypoint_feed is None, "no keypoint subscriber: the topic is not read"
    drawing = fan.subscribe("a", keypoints=True)
    await eventually(lambda: len(opened) == 1, what="the keypoints topic opened")
    opened[0].records = [SimpleNamespace(key=b"a", value=b'{"seq": 1}'), SimpleNamespace(key=b"b", value=b"{}")]
    await eventually(lambda: not opened[0].records and not drawing.empty(), what="the records delivered")
    await asyncio.sleep(0.02)  # (a frame of another session, wrongly delivered, would be there by now)
    assert drawing.get_nowait() == '{"seq": 1}' and drawing.empty(), "its own session's frames only"
    assert scores_only.empty(), "a scores-only subscriber gets no keypoints"
    fan.unsubscribe("a", drawing)
    await eventually(lambda: opened[0].stopped and fan.keypoint_feed.done(), what="stopped once nobody wants keypoints")
    fan.subscribe("a", keypoints=True)
    await eventually(lambda: len(opened) == 2, what="a new keypoint subscriber starts it again")
    await fan.close()
    assert opened[1].stopped


async def _connected_peers():
    """Two aiortc peers in this process, with the gateway's SCTP patches installed, joined by an open
    data channel: (sender, receiver, the sender's channel, the messages the receiver got)."""
    from rehab.adapters.webrtc import sctp
    from tests.conftest import local_peer

    sctp.install()
    a, b = local_peer(), local_peer()
    channel = a.createDataChannel("keypoints")
    got: list = []
    opened = asyncio.Event()
    channel.on("open", opened.set)
    b.on("datachannel", lambda ch: ch.on("message", got.append))
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 10)
    return a, b, channel, got


async def test_delayed_sacks_acknowledge_every_second_packet_and_lose_nothing():
    from aiortc.rtcsctptransport import SackChunk

    from rehab.adapters.webrtc import sctp

    a, b, channel, got = await _connected_peers()
    receiver = b.sctp
    sent_sacks = []
    send_chunk = receiver._send_chunk

    async def counting(chunk):
        if isinstance(chunk, SackChunk):
            sent_sacks.append(chunk.cumulative_tsn)
        await send_chunk(chunk)

    receiver._send_chunk = counting
    try:
        for i in range(10):
            channel.send(f"frame {i}")
            await asyncio.sleep(0.03)  # one packet at a time, as a 30 fps edge device sends (a pace, not a wait)
        await eventually(lambda: got[-10:] == [f"frame {i}" for i in range(10)], what="all 10 delivered")
        await eventually(lambda: a.sctp._flight_size == 0, what="everything acknowledged")
        assert 4 <= len(sent_sacks) <= 6, f"{len(sent_sacks)} SACKs for 10 packets (aiortc alone: 10)"
        sent_sacks.clear()
        channel.send("alone")
        await eventually(lambda: got[-1] == "alone", what="the lone packet delivered")
        assert not sent_sacks, "not acknowledged at once: the timer does it"
        await eventually(lambda: len(sent_sacks) == 1, sctp.SACK_DELAY_S + 5, "the timer's SACK")
        await eventually(lambda: a.sctp._flight_size == 0, what="the sender holds nothing unacknowledged")
        assert len(sent_sacks) == 1
    finally:
        await a.close()
        await b.close()


class _SlowProducer:
    """aiokafka's ``send`` as seen from outside: returns once the message is in a batch; blocks while
    ``blocked`` (a full batch), raises KafkaTimeoutError ``timeouts`` times first."""

    def __init__(self, timeouts: int = 0):
        self.sent: list[tuple[bytes, bytes]] = []
        self.blocked = asyncio.Event()
        self.blocked.set()
        self.timeouts = timeouts
        self.concurrent = self.max_concurrent = 0

    async def send(self, topic, key, value):
        from aiokafka.errors import KafkaTimeoutError

        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await self.blocked.wait()
            if self.timeouts:
                self.timeouts -= 1
                raise KafkaTimeoutError()
            self.sent.append((key, value))
        finally:
            self.concurrent -= 1


def _edge_message(seq: int) -> str:
    return json.dumps({"type": "keypoints", "seq": seq, "capture_ts_ms": int(time.time() * 1000) + seq * 66, "width": 640,
                       "height": 480, "keypoints": [[100.0 + seq, 200.0, 0.9]] * 17})


async def test_accepted_edge_frames_reach_kafka_in_order_from_one_sender_even_after_their_session_closes():
    from gateway.device_ingest import DeviceIngest, DeviceMessageError, KeypointPublisher

    producer = _SlowProducer(timeouts=1)
    publisher = KeypointPublisher(producer, "keypoints", max_queued=6)
    a = DeviceIngest("a", "guide", publisher, max_fps=1000)
    b = DeviceIngest("b", "guide", publisher, max_fps=1000)
    producer.blocked.clear()  # Kafka is behind: the batch is full
    runner = asyncio.create_task(publisher.run())
    for seq in range(3):
        a.publish(a.accept(_edge_message(seq)))
        b.publish(b.accept(_edge_message(seq)))
    with pytest.raises(DeviceMessageError, match="cannot store frames"):
        a.accept(_edge_message(3))  # the queue is full: refused at the door, nothing queued is dropped
    del a, b  # the sessions end; their accepted frames are still owed to Kafka
    await asyncio.sleep(0.05)
    assert producer.max_concurrent == 1, "one send waits on the full batch, not one per frame"
    producer.blocked.set()
    await asyncio.wait_for(publisher.drain(), 5)  # includes one KafkaTimeoutError, retried
    runner.cancel()
    keys = [k for k, _ in producer.sent]
    # each frame keyed "SESSION/SEQ" (a key per record: the topic is compacted, rehab/topics.py)
    assert keys == [b"a/0", b"b/0", b"a/1", b"b/1", b"a/2", b"b/2"], "every accepted frame, in arrival order"
    assert [json.loads(v)["seq"] for k, v in producer.sent if k.startswith(b"a/")] == [0, 1, 2]


async def test_a_peer_that_sends_a_message_larger_than_any_allowed_is_cut_off():
    """aiortc reassembles fragments without a bound; the gateway aborts an association whose stream holds
    more than MAX_REASSEMBLY_BYTES waiting for the rest of a message (a real aiortc sender, its own
    64 KiB check lifted, sends 1 MB), and a normal message still arrives."""
    from rehab.adapters.webrtc import sctp

    a, b, channel, got = await _connected_peers()
    try:
        channel.send("x" * 8000)  # a normal message: delivered
        await eventually(lambda: got, what="the normal message")
        assert got == ["x" * 8000]
        a.sctp._remote_max_message_size = 1 << 30  # a sender that ignores the limit
        channel.send(b"y" * (1 << 20))
        await eventually(lambda: getattr(b.sctp, "_rehab_aborted_oversized", False),
                         what="the receiver gave up on the oversized message")
        assert len(got) == 1, "the oversized message was never delivered"
        assert sum(len(c.user_data) for s in b.sctp._inbound_streams.values() for c in s.reassembly) \
            <= sctp.MAX_REASSEMBLY_BYTES
    finally:
        await a.close()
        await b.close()


async def test_score_fanout_skips_tombstones_and_outlives_a_failing_consumer():
    """A null record on the scores topic used to end the fan-out for every session (``None.decode``);
    a consumer error likewise. Both are now skipped / retried and the next score is delivered."""
    from types import SimpleNamespace

    class Consumer:
        def __init__(self):
            self.round = 0

        def __aiter__(self):
            self.round += 1
            return self._messages(self.round)

        async def _messages(self, round_):
            if round_ == 1:
                yield SimpleNamespace(key=b"a", value=None)  # a tombstone
                yield SimpleNamespace(key=b"a", value=b'{"score_ts_ms": 1, "n": 1}')
                raise ConnectionError("Kafka went away")
            yield SimpleNamespace(key=b"a", value=b'{"score_ts_ms": 1, "n": 2}')
            await asyncio.sleep(3600)

    fan = ScoreFanout()
    q = fan.subscribe("a")
    task = asyncio.create_task(fan.run(Consumer()))
    first = await asyncio.wait_for(q.get(), 2)
    second = await asyncio.wait_for(q.get(), 3)  # after the error: the feed resumed (1 s back-off)
    task.cancel()
    assert '"n": 1' in first and '"n": 2' in second


def test_a_client_clock_that_drifts_out_of_range_is_replaced_by_the_gateways():
    from fractions import Fraction
    from types import SimpleNamespace

    from gateway.ingest import VideoIngest
    from rehab.records import MAX_CLOCK_SKEW_MS, now_ms

    ingest = VideoIngest("s", "ref", producer=None, topic="t")
    ingest.clock_t0_ms = now_ms() - 1000
    assert abs(ingest.capture_ts(SimpleNamespace(pts=90_000, time_base=Fraction(1, 90_000))) - now_ms()) < 500
    far = SimpleNamespace(pts=(MAX_CLOCK_SKEW_MS // 1000 + 10) * 90_000, time_base=Fraction(1, 90_000))
    before = now_ms()
    assert before <= ingest.capture_ts(far) <= now_ms(), "a pts a day ahead: the time the frame reached us"
    assert ingest.counters["capture_ts_out_of_range"] == 1
