"""Tolerant reads of task hashes for pages and lists: a hash that does not decode is logged and
left out, so one odd key in Redis never takes a page down."""

from __future__ import annotations

import msgspec
import structlog
from redis.asyncio import Redis

from services.consumer.errors import Undecodable
from services.contracts import TaskState, state_from_hash
from services.keys import Keys
from services.redisconn import text_hash

log = structlog.get_logger("wan22.tasks")

DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError, ValueError, Undecodable)


def decode_state(task_id: str, raw: dict[str, str]) -> TaskState | None:
    try:
        return state_from_hash(raw | {"task_id": task_id})
    except DECODE_ERRORS as exc:
        log.warning("task.bad_hash", task_id=task_id, error=str(exc))
        return None


async def read_state(redis: Redis, keys: Keys, task_id: str) -> TaskState | None:
    raw = await text_hash(redis, keys.task(task_id))
    return decode_state(task_id, raw) if raw else None


async def read_states(redis: Redis, keys: Keys, task_ids: list[str]) -> dict[str, TaskState]:
    """Many task hashes in one round trip; missing and undecodable ones are left out."""
    async with redis.pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hgetall(keys.task(task_id))
        rows = await pipe.execute()
    states = {}
    for task_id, raw in zip(task_ids, rows, strict=True):
        if raw and (state := decode_state(task_id, raw)) is not None:
            states[task_id] = state
    return states
