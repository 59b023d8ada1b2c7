"""Redis client construction. Callers own the client they create and close it.

A `redis+sentinel://` URL (services.redisurl) gives a client of the primary the sentinels elect:
redis-py's Sentinel connection pool asks them for its address on every new connection, so after a
failover the reconnect after a ConnectionError (or the ReadOnlyError of a demoted primary, which
the pool turns into one) goes to the promoted replica. Closing the client closes the sentinel
connections too: the client is all its creator holds.
"""

from __future__ import annotations

from typing import Any, cast

import redis as redis_sync
import redis.sentinel as sentinel_sync
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from services.redisurl import SentinelUrl, is_sentinel, parse_sentinel

# A sentinel that hangs must not stall discovery: the next one is asked after this.
SENTINEL_TIMEOUT_S = 2.0


class NotReplicated(RedisError):
    """A write is not known to survive a failover: WAIT heard back from fewer replicas than
    required, or what it depends on is not on the server that answered."""


def connect(url: str, *, max_connections: int = 256) -> Redis:
    """An asyncio client (hiredis parser when installed) that reconnects with jittered backoff."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "max_connections": max_connections,
        "health_check_interval": 15,
        "socket_keepalive": True,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=3),
        "retry_on_error": [ConnectionError, TimeoutError],
    }
    if is_sentinel(url):
        target = parse_sentinel(url)
        sentinel = Sentinel(target.sentinels, sentinel_kwargs=_sentinel_options(target))
        return cast(
            Redis,
            sentinel.master_for(target.master, connection_pool_class=_SentinelPool, **_auth(target), **options),
        )
    return Redis.from_url(url, **options)


def connect_sync(url: str) -> redis_sync.Redis:
    """The blocking twin of `connect` for threads without an event loop (a generator's rank 0)."""
    if is_sentinel(url):
        target = parse_sentinel(url)
        sentinel = sentinel_sync.Sentinel(target.sentinels, sentinel_kwargs=_sentinel_options(target))
        return cast(
            redis_sync.Redis,
            sentinel.master_for(
                target.master, connection_pool_class=_SyncSentinelPool, decode_responses=True, **_auth(target)
            ),
        )
    return redis_sync.Redis.from_url(url, decode_responses=True)


def _auth(target: SentinelUrl) -> dict[str, Any]:
    return {"db": target.db, "username": target.username, "password": target.password}


def _sentinel_options(target: SentinelUrl) -> dict[str, Any]:
    return {
        "password": target.sentinel_password,
        "socket_timeout": SENTINEL_TIMEOUT_S,
        "socket_connect_timeout": SENTINEL_TIMEOUT_S,
    }


class _SentinelPool(SentinelConnectionPool):
    async def aclose(self) -> None:
        await super().aclose()
        await self.sentinel_manager.aclose()


class _SyncSentinelPool(sentinel_sync.SentinelConnectionPool):
    def close(self) -> None:
        super().close()
        self.sentinel_manager.close()


async def text_hash(redis: Redis, key: str) -> dict[str, str]:
    """HGETALL as text. Clients from `connect` decode replies; redis-py's types cannot say so."""
    return cast(dict[str, str], await redis.hgetall(key))
