"""On-device mode on the live stack: the device sends keypoints over a WebRTC data channel, the
gateway validates and publishes them, scores come back on the same channel. Malformed, oversized and
too-fast messages are refused with a reason while the session (and the one next to it) goes on."""
import asyncio
import json
import time
import math

from rehab.cli.client import create_session, open_keypoint_channel, stream_keypoints


def _clip(clip_keypoints):
    return [(f.width, f.height, f.keypoints) for f in clip_keypoints("pose2sim_single_cam02.mp4")]


def test_keypoints_over_the_data_channel_get_scores_back_on_it(live_stack, clip_keypoints):
    async def run():
        grant = await create_session(live_stack.gateway_url, "guide", mode="device")
        errors = []
        got = [r async for r in stream_keypoints(live_stack.gateway_url, grant, _clip(clip_keypoints) * 2, 30.0,
                                                 errors=errors)]
        return grant, got, errors

    grant, got, errors = asyncio.run(run())
    assert not errors
    assert len(got) >= 4 * 6, f"at least 4 scores/s over the 6.7 s of keypoints, got {len(got)}"
    assert all(r.score.session_id == grant.session_id for r in got)
    assert got[-1].score.session_similarity > 0.75, "the same exercise, sent as keypoints, scores as high"
    lat = sorted(r.latency_ms for r in got)
    assert lat[len(lat) // 2] < 300, f"median glass-to-score {lat[len(lat) // 2]} ms without cloud inference"


def test_bad_keypoint_messages_are_refused_and_the_session_goes_on(live_stack, clip_keypoints):
    clip = _clip(clip_keypoints)
    w, h, good = next(c for c in clip if c[2] is not None)

    t0 = int(time.time() * 1000)

    def msg(seq, **over):
        m = {"type": "keypoints", "seq": seq, "capture_ts_ms": t0 + seq * 33, "width": w, "height": h,
             "keypoints": good}
        m.update(over)
        return json.dumps(m)

    bad = {
        "not json": "{nope",
        "oversized": json.dumps({"type": "keypoints", "pad": "x" * 20_000}),
        "wrong shape": msg(1, keypoints=[[1, 2, 0.5]] * 5),
        "confidence out of range": msg(2, keypoints=[[1.0, 2.0, 1.5]] * 17),
        "NaN": msg(3).replace(str(good[0][0]), "NaN", 1),
        "far outside the image": msg(4, keypoints=[[w * 10, 0, 0.9]] * 17),
        "unknown field": msg(5, evil=1),
        "seq going back": msg(0),
        "binary": b"\x00\x01",
        "seq past 2^53": msg(2 ** 63),
        "timestamp past 64 bits": msg(6, capture_ts_ms=18_000_000_000_000_000_000),
        "timestamp a year off": msg(7, capture_ts_ms=t0 - 365 * 86_400_000),
    }

    async def run():
        grant = await create_session(live_stack.gateway_url, "guide", mode="device")
        neighbour = await create_session(live_stack.gateway_url, "guide", mode="device")
        replies: list = []
        pc, channel = await open_keypoint_channel(live_stack.gateway_url, grant, lambda raw: replies.append(json.loads(raw)))
        channel.send(msg(10))  # one good message first, so "seq going back" is going back
        for raw in bad.values():
            channel.send(raw)
            await asyncio.sleep(0.05)
        for i in range(40):  # far faster than the fps budget
            channel.send(msg(100 + i))
        await asyncio.sleep(1.5)
        errors = [r["reason"] for r in replies if r["type"] == "error"]
        # the neighbour, streaming at the same time, is unaffected
        neighbour_scores = [r async for r in stream_keypoints(live_stack.gateway_url, neighbour, clip, 30.0)]
        # and the session itself still scores good messages after all that
        for i in range(60):
            channel.send(msg(1000 + i, capture_ts_ms=t0 + 5_000 + i * 33, keypoints=clip[i % len(clip)][2]))
            await asyncio.sleep(1 / 30)
        await asyncio.sleep(2.0)
        scores = [r for r in replies if r["type"] == "score"]
        await pc.close()
        return errors, neighbour_scores, scores

    errors, neighbour_scores, scores = asyncio.run(run())
    text = " | ".join(errors)
    for needle in ("not JSON", "larger than", "list of 17", "outside [0, 1]", "finite", "far outside",
                   "unknown fields", "is not after", "binary", "fps budget", "seq must be an integer in",
                   "within a day"):
        assert needle in text, f"no clear error for {needle!r}: {text}"
    assert len(neighbour_scores) >= 5, "a session next to the bad one gets its scores"
    assert scores and scores[-1]["score"]["window_end_seq"] >= 1040, "the session goes on after bad messages"
    assert not any(math.isnan(s["score"]["similarity"]) for s in scores)


def test_a_cloud_session_refuses_keypoints(live_stack):
    async def run():
        grant = await create_session(live_stack.gateway_url, "guide", mode="cloud")
        replies = []
        pc, channel = await open_keypoint_channel(live_stack.gateway_url, grant, lambda raw: replies.append(json.loads(raw)))
        await asyncio.sleep(0.5)
        await pc.close()
        return replies

    replies = asyncio.run(run())
    assert replies and replies[0]["type"] == "error" and "cloud-mode" in replies[0]["reason"]
