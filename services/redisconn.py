"""Redis client construction. Callers own the client they create and close it."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError


def connect(url: str, *, max_connections: int = 256) -> Redis:
    """An asyncio client (hiredis parser when installed) that reconnects with jittered backoff."""
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        health_check_interval=15,
        socket_keepalive=True,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        retry_on_error=[ConnectionError, TimeoutError],
    )


async def text_hash(redis: Redis, key: str) -> dict[str, str]:
    """HGETALL as text. Clients from `connect` decode replies; redis-py's types cannot say so."""
    return cast(dict[str, str], await redis.hgetall(key))
