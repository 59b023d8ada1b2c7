"""Server-Sent Events for one task. The framing is three lines of text, so no library for it.

Events: `state` first (the task state, with `queue` while queued), then every progress and
lifecycle entry under its type; while the task is queued, a `queue` event (position and estimate)
whenever they changed, checked at every keepalive (`KEEPALIVE_MS`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from redis.asyncio import Redis

from services.contracts import QueueInfo, TaskState
from services.follow import follow
from services.keys import Keys
from services.queueinfo import QueueEstimator
from services.tasks import TaskStore

_state_decoder = msgspec.json.Decoder(TaskState)


def frame(event: str, data: str | bytes, event_id: str | None = None) -> bytes:
    text = data.decode() if isinstance(data, bytes) else data
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {text}\n\n".encode()


async def task_events(
    redis: Redis, keys: Keys, task_id: str, estimator: QueueEstimator | None = None
) -> AsyncIterator[bytes]:
    queued, last = False, None
    async for kind, entry_id, payload in follow(redis, keys, task_id):
        if kind == "state" and estimator is not None:
            state = _state_decoder.decode(payload)
            state.queue = last = await estimator(state)
            queued = state.status == "queued"
            yield frame(kind, msgspec.json.encode(state))
        elif kind == "keepalive":
            if queued and estimator:
                queued, info = await _queue(redis, keys, task_id, estimator)
                if info is not None and info != last:
                    last = info
                    yield frame("queue", msgspec.json.encode(info))
                    continue
            yield b": keepalive\n\n"
        else:
            queued = queued and kind == "accepted"
            yield frame(kind, payload, entry_id or None)


async def _queue(redis: Redis, keys: Keys, task_id: str, estimator: QueueEstimator) -> tuple[bool, QueueInfo | None]:
    state = await TaskStore(redis, keys).get(task_id)
    if state is None or state.status != "queued":
        return False, None
    return True, await estimator(state)
