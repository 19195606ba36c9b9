"""The scoring agent's batch window: longer only while the processor is behind (many events past the
batch in its partitions), the agent's ``within`` otherwise; ``QuietStream`` waits what it is told."""
import asyncio
from types import SimpleNamespace

import faust

from stream_processor.app import BACKLOG_EVENTS, BACKLOG_WITHIN_S, batch_window
from stream_processor.quiet_stream import QuietStream


def _event(partition: int, offset: int):
    return SimpleNamespace(message=SimpleNamespace(tp=("keypoints", partition), offset=offset))


class Ends:
    def __init__(self, ends: dict, revoked=()):
        self.ends, self.revoked = ends, revoked

    def highwater(self, tp):
        if tp[1] in self.revoked:
            raise KeyError(tp)
        return self.ends.get(tp[1])


def test_behind_by_a_batch_or_more_gathers_longer():
    events = [_event(0, 10), _event(0, 11), _event(2, 500)]
    # partition 0: 12 .. 12 + BACKLOG_EVENTS - 1 unread; partition 2 at its end
    assert batch_window(Ends({0: 12 + BACKLOG_EVENTS, 2: 501}), events) == BACKLOG_WITHIN_S
    assert batch_window(Ends({0: 12 + BACKLOG_EVENTS - 1, 2: 501}), events) is None
    # behind across partitions counts together
    half = BACKLOG_EVENTS // 2
    assert batch_window(Ends({0: 12 + half, 2: 501 + BACKLOG_EVENTS - half}), events) == BACKLOG_WITHIN_S


def test_live_pace_unknown_ends_and_revoked_partitions_keep_the_short_window():
    events = [_event(1, 40)]
    assert batch_window(Ends({1: 41}), events) is None  # read up to the end
    assert batch_window(Ends({}), events) is None  # nothing fetched yet: no end known
    assert batch_window(Ends({1: 10 ** 6}, revoked={1}), events) is None
    assert batch_window(Ends({}), []) is None


def test_quiet_stream_waits_the_window_it_was_given(monkeypatch):
    waited = []

    async def faust_wait(self, *events, timeout=None):
        waited.append(timeout)

    monkeypatch.setattr(faust.Stream, "wait_for_stopped", faust_wait)
    stream = QuietStream.__new__(QuietStream)  # (this method needs no app)

    async def batch_wait(next_within):
        stream._arrived = asyncio.Event()
        stream._arrived.set()  # an event has arrived: the timed wait follows
        stream.next_within = next_within
        await stream.wait_for_stopped(timeout=0.005)

    asyncio.run(batch_wait(None))
    asyncio.run(batch_wait(BACKLOG_WITHIN_S))
    assert waited == [0.005, BACKLOG_WITHIN_S]
