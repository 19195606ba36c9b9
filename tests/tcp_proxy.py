"""A TCP proxy in front of a real server, for fault drills: ``outage()`` drops every connection through
it and refuses new ones (the server looks gone to the service under test) until ``restore()``, while
the server itself keeps serving the other tests that share it."""
from __future__ import annotations

import asyncio
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self.down = False
        self.writers: set[asyncio.StreamWriter] = set()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.sock = sock
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()
        self.thread.start()
        self.started.wait(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.server = await asyncio.start_server(self._handle, sock=self.sock)
            self.started.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except (asyncio.CancelledError, RuntimeError):  # stopped by close()
            pass

    async def _handle(self, reader, writer) -> None:
        if self.down:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.discard(writer)
        self.writers.discard(up_writer)

    def _call(self, fn) -> None:
        done = threading.Event()

        def run():
            fn()
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)

    def outage(self) -> None:
        def cut():
            self.down = True
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()

        self._call(cut)

    def restore(self) -> None:
        self._call(lambda: setattr(self, "down", False))

    def close(self) -> None:
        self.outage()

        async def shutdown():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()
