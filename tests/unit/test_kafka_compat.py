"""rehab.kafka_compat: a failed Kafka connection attempt closes its socket (kafka-python leaves it to
the garbage collector: one open descriptor per retry while a broker is down)."""
import asyncio
import socket

import pytest
from kafka import errors
from kafka.net.inet import KafkaNetSocket

from rehab import kafka_compat


def _attempt(fail: bool) -> socket.socket:
    made: list[socket.socket] = []
    connector = KafkaNetSocket()

    def make(family, sock_type, proto):
        made.append(socket.socket(family, sock_type, proto))
        return made[-1]

    async def sock_connect(net, sock, sockaddr, timeout_at=None):
        if fail:
            raise errors.KafkaConnectionError("111 ECONNREFUSED")
        return sock

    connector.socket, connector.sock_connect = make, sock_connect
    addr = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 9))
    try:
        asyncio.run(connector.connect(None, addr))
    except errors.KafkaConnectionError:
        pass
    return made[0]


def test_a_failed_attempt_closes_its_socket_and_a_good_one_keeps_it_open():
    kafka_compat.apply()
    kafka_compat.apply()  # idempotent
    assert _attempt(fail=True).fileno() == -1
    ok = _attempt(fail=False)
    try:
        assert ok.fileno() != -1
    finally:
        ok.close()


def test_the_failed_attempt_is_still_reported_to_the_client():
    kafka_compat.apply()
    with pytest.raises(errors.KafkaConnectionError):
        connector = KafkaNetSocket()
        connector.socket = lambda *a: socket.socket(socket.AF_INET, socket.SOCK_STREAM)

        async def refuse(*a, **k):
            raise errors.KafkaConnectionError("111 ECONNREFUSED")

        connector.sock_connect = refuse
        asyncio.run(connector.connect(None, (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 9))))
