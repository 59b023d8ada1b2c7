"""The embedded redis-server (`wan22 up`'s default, and the tests' own) and a port taken under it."""

from __future__ import annotations

import socket

import pytest
import redis

from services.stack.redis_server import RedisServer


def _occupy(port: int) -> socket.socket:
    """Listen on `port` as another program would after we picked it as free."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_chosen_port_taken_meanwhile_is_replaced_by_another():
    server = RedisServer()
    chosen = server.port
    with _occupy(chosen):
        server.start()
        try:
            moved = server.port
            assert moved != chosen
            client = redis.Redis.from_url(server.url)
            assert client.ping() and client.set("k", "v")
            server.restart()  # clients hold the URL now: a restart keeps the port
            assert server.port == moved and client.get("k") is None  # no AOF: a fresh server
            client.close()
        finally:
            server.close()


def test_a_port_given_by_the_operator_is_not_moved():
    with _occupy(0) as taken:
        port = taken.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(RuntimeError, match=f"port {port}"):
            server.start()
        server.close()
