"""A fix for kafka-python (3.0.12, the latest release): a connection attempt that fails (broker
down: ECONNREFUSED, or a connect timeout) leaves its socket open until the garbage collector finds
it. During a broker outage every client then holds one more descriptor per retry, and each is
reported as an unclosed socket (ResourceWarning) when collected. ``apply()`` makes the failed
attempt close its socket; idempotent. Applied by the CLI (every service process) and by the tests.

Drop it once kafka-python's ``KafkaNetSocket.connect`` closes the socket itself."""
from __future__ import annotations


def apply() -> None:
    from kafka.net import inet

    if getattr(inet.KafkaNetSocket.connect, "closes_failed_socket", False):
        return

    async def connect(self, net, addrinfo, socket_options=(), timeout_at=None):
        # kafka-python's own body (inet.KafkaNetSocket.connect), plus the close on failure
        family, sock_type, proto, _canonname, sockaddr = addrinfo
        sock = self.socket(family, sock_type, proto)
        try:
            sock.setblocking(False)
            for option in socket_options:
                sock.setsockopt(*option)
            return await self.sock_connect(net, sock, sockaddr, timeout_at=timeout_at)
        except BaseException:
            sock.close()
            raise

    connect.closes_failed_socket = True
    inet.KafkaNetSocket.connect = connect
