import asyncio

import numpy as np
import pytest

from gateway.fanout import ScoreFanout
from gateway.ingest import LatestSlot, Pending, encode_jpeg
from gateway.offer import Offer, OfferError

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
