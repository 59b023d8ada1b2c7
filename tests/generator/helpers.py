"""Submitting normalized jobs and reading what the generator wrote."""

from __future__ import annotations

import json
import uuid

import anyio

from services.contracts import Job, now
from services.keys import GENERATOR_GROUP, Keys
from services.tasks import TaskStore

KEYS = Keys()


async def submit(redis, steps: int = 4, frames: int = 5, **fields) -> str:
    task_id = fields.pop("task_id", uuid.uuid4().hex[:12])
    job = Job(
        task_id=task_id,
        task="demo",
        prompt="a tiny fox",
        width=64,
        height=64,
        frame_num=frames,
        sample_steps=steps,
        sample_shift=5.0,
        guide_scale=fields.pop("guide_scale", (5.0, 5.0)),
        seed=7,
        fps=24,
        created_at=now(),
        **fields,
    )
    await TaskStore(redis, KEYS).accept(job, None, 60)
    return task_id


async def events_for(redis, task_id: str) -> list[tuple[str, dict]]:
    rows = await redis.xrange(KEYS.events)
    return [(f["type"], json.loads(f["payload"])) for _, f in rows if f["task_id"] == task_id]


async def wait_status(redis, task_id: str, statuses: set[str], timeout: float = 120.0) -> dict:
    with anyio.fail_after(timeout):
        while True:
            state = await redis.hgetall(KEYS.task(task_id))
            if state.get("status") in statuses:
                return state
            await anyio.sleep(0.1)


async def wait_step(redis, task_id: str, step: int, timeout: float = 120.0) -> None:
    with anyio.fail_after(timeout):
        while int((await redis.hgetall(KEYS.task(task_id))).get("step", 0)) < step:
            await anyio.sleep(0.02)


async def progress_steps(redis, task_id: str) -> list[int]:
    rows = await redis.xrange(KEYS.progress)
    return [json.loads(f["payload"])["step"] for _, f in rows if f["task_id"] == task_id]


async def pending(redis) -> int:
    return int((await redis.xpending(KEYS.jobs("demo"), GENERATOR_GROUP))["pending"])


async def wait_drained(redis, timeout: float = 30.0) -> None:
    """Every job entry read and acked. Acks are batched and follow the terminal state by
    milliseconds: poll, do not read once."""
    with anyio.fail_after(timeout):
        while await pending(redis) or int((await redis.xinfo_groups(KEYS.jobs("demo")))[0]["lag"] or 0):
            await anyio.sleep(0.05)


async def progress_times(redis, task_id: str) -> list[tuple[int, float]]:
    """(step, wall-clock time it was published) for each progress entry of the task."""
    rows = await redis.xrange(KEYS.progress)
    return [(p["step"], p["ts"]) for p in (json.loads(f["payload"]) for _, f in rows if f["task_id"] == task_id)]
