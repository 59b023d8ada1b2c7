"""Following one task: its state, then its progress and lifecycle entries until it is terminal.
Shared by the SSE endpoint, `wan22 watch` and `wan22 submit --wait`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from redis.asyncio import Redis

from services.consumer import wire
from services.contracts import TERMINAL
from services.keys import Keys
from services.tasks import TaskStore

# Under the Redis client's socket timeout (redis-py: 5 s), or a quiet block would time out.
KEEPALIVE_MS = 3_000


async def last_id(redis: Redis, stream: str) -> str:
    newest = await wire.xrevrange(redis, stream, count=1)
    return newest[0].id if newest else "0-0"


async def follow(
    redis: Redis, keys: Keys, task_id: str, block_ms: int = KEEPALIVE_MS
) -> AsyncIterator[tuple[str, str, bytes | str]]:
    """Yields (kind, entry id, JSON payload): first ("state", "", TaskState JSON), then every
    progress and lifecycle entry of the task, ending after a terminal one; ("keepalive", "", "")
    when nothing happened for `block_ms`. Nothing if the task does not exist."""
    # Positions first, snapshot second: whatever happens in between is read from the streams.
    cursors = {keys.progress: await last_id(redis, keys.progress), keys.events: await last_id(redis, keys.events)}
    state = await TaskStore(redis, keys).get(task_id)
    if state is None:
        return
    yield "state", "", msgspec.json.encode(state)
    if state.status in TERMINAL:
        return
    while True:
        entries = await wire.xread(redis, cursors, count=500, block_ms=block_ms)
        if not entries:
            yield "keepalive", "", ""
            continue
        for entry in entries:
            cursors[entry.stream] = entry.id
            if entry.defect is not None or entry.fields.get("task_id") != task_id:
                continue  # anyone can write to these streams; an entry that is not text is not ours
            kind = entry.fields.get("type", "progress")
            yield kind, entry.id, entry.fields.get("payload", "{}")
            if kind in TERMINAL:
                return
