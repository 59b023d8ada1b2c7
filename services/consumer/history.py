"""Per-entry error history in Redis, so attempts survive the consumer that made them."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from services.contracts import ErrorRecord

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ErrorRecord)


async def record_error(redis: Redis, key: str, record: ErrorRecord, ttl_s: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, _encoder.encode(record))
        pipe.expire(key, ttl_s)
        await pipe.execute()


async def load_history(redis: Redis, key: str) -> list[ErrorRecord]:
    return [_decoder.decode(raw) for raw in await redis.lrange(key, 0, -1)]
