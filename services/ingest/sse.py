"""Server-Sent Events for one task. The framing is three lines of text, so no library for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis

from services.follow import follow
from services.keys import Keys


def frame(event: str, data: str | bytes, event_id: str | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


async def task_events(redis: Redis, keys: Keys, task_id: str) -> AsyncIterator[bytes]:
    async for kind, entry_id, payload in follow(redis, keys, task_id):
        yield b": keepalive\n\n" if kind == "keepalive" else frame(kind, payload, entry_id or None)
