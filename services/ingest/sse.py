"""Server-Sent Events for one task: its current state, then progress and lifecycle events until
it is terminal. Framing is three lines of text, so no library is needed for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis

from services.contracts import TERMINAL, encode
from services.keys import Keys
from services.tasks import TaskStore

KEEPALIVE_MS = 15_000


def frame(event: str, data: str | bytes, event_id: str | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


async def _last_id(redis: Redis, stream: str) -> str:
    newest = await redis.xrevrange(stream, count=1)
    return newest[0][0] if newest else "0-0"


async def task_events(redis: Redis, keys: Keys, tasks: TaskStore, task_id: str) -> AsyncIterator[bytes]:
    # Positions first, snapshot second: whatever happens in between is read from the streams.
    cursors = {keys.progress: await _last_id(redis, keys.progress), keys.events: await _last_id(redis, keys.events)}
    state = await tasks.get(task_id)
    if state is None:
        return
    yield frame("state", encode(state))
    if state.status in TERMINAL:
        return
    while True:
        response = await redis.xread(cursors, block=KEEPALIVE_MS, count=500)
        if not response:
            yield b": keepalive\n\n"
            continue
        for stream, rows in response:
            for entry_id, fields in rows:
                cursors[stream] = entry_id
                if fields.get("task_id") != task_id:
                    continue
                kind = fields.get("type", "progress")
                yield frame(kind, fields.get("payload", "{}"), entry_id)
                if kind in TERMINAL:
                    return
