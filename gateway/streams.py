"""The score WebSockets: each pushes one session's scores (and, on request, its keypoint frames) from the
gateway's fan-out until the client leaves, its token expires, or a revocation closes it (4401 and the
reason; the browser app reconnects with its refreshed token)."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import Claims
from gateway.fanout import ScoreFanout


class ScoreStreams:
    def __init__(self, fanout: ScoreFanout, clock: Callable[[], float]):
        """``clock``: the token signer's (tokens' expiry times are on it)."""
        self.fanout, self.clock = fanout, clock
        # the open streams: their claims and a future that, once set, closes the stream with its reason
        self.open: dict[int, tuple[Claims, asyncio.Future]] = {}

    def close_where(self, which: Callable[[Claims], bool], reason: str) -> None:
        for claims, ended in list(self.open.values()):
            if which(claims) and not ended.done():
                ended.set_result(reason)

    async def push(self, ws: WebSocket, sid: str, claims: Claims) -> None:
        """Pushes the session's scores until the client leaves, or its token expires or is revoked
        (then closed with 4401 and the reason: the app reconnects with its refreshed token)."""
        q = self.fanout.subscribe(sid, keypoints=ws.query_params.get("keypoints") in ("1", "true"))
        ended = asyncio.get_running_loop().create_future()
        self.open[id(ended)] = (claims, ended)
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, claims.expires_at - self.clock()),
            lambda: ended.done() or ended.set_result("the token has expired: reconnect with a fresh one"))

        async def write() -> None:  # one writer per subscriber: no task or wait per message
            while True:
                await ws.send_text(await q.get())

        writer = asyncio.create_task(write())
        reader = asyncio.ensure_future(ws.receive_text())
        code, reason = 1000, "this stream only pushes"
        try:
            # we only push: anything the client sends, or its close, ends the subscription
            await asyncio.wait({writer, reader, ended}, return_when=asyncio.FIRST_COMPLETED)
            if ended.done():
                code, reason = 4401, ended.result()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            expiry.cancel()
            self.open.pop(id(ended), None)
            reader.cancel()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, Exception):
                await writer
            self.fanout.unsubscribe(sid, q)
            with contextlib.suppress(Exception):  # a clean close (1000), not a dropped connection
                await ws.close(code=code, reason=reason)
