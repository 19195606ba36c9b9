"""rehab.adapters.kafka_compat: a failed Kafka connection attempt closes its socket (kafka-python leaves it to
the garbage collector: one open descriptor per retry while a broker is down)."""
import asyncio
import socket

import pytest
from kafka import errors
from kafka.net.inet import KafkaNetSocket

from rehab.adapters import kafka_compat


def _attempt(fail: bool, made: list[socket.socket]) -> None:
    """kafka-python's connect with the socket it makes recorded and its connect step succeeding or
    refused (the broker down)."""
    connector = KafkaNetSocket()

    def make(family, sock_type, proto):
        made.append(socket.socket(family, sock_type, proto))
        return made[-1]

    async def sock_connect(net, sock, sockaddr, timeout_at=None):
        if fail:
            raise errors.KafkaConnectionError("111 ECONNREFUSED")
        return sock

    connector.socket, connector.sock_connect = make, sock_connect
    asyncio.run(connector.connect(None, (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                                         ("127.0.0.1", 9))))


def test_a_failed_attempt_closes_its_socket_and_is_still_reported():
    kafka_compat.apply()
    kafka_compat.apply()  # idempotent
    made: list[socket.socket] = []
    with pytest.raises(errors.KafkaConnectionError):
        _attempt(fail=True, made=made)
    assert made[0].fileno() == -1


def test_a_good_attempt_keeps_its_socket_open():
    kafka_compat.apply()
    made: list[socket.socket] = []
    _attempt(fail=False, made=made)
    try:
        assert made[0].fileno() != -1
    finally:
        made[0].close()
