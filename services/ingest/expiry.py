"""Deadlines: a task still queued past its `deadline_s` ends `failed` (`expired`) and never runs.

Ingest sweeps the deadlines set every second, so a task expires on time even while no generator
runs; a generator's claim also expires a task it finds past its deadline. Both go through the
same atomic step, so a task gets exactly one terminal event whoever gets there first."""

from __future__ import annotations

import anyio
import structlog
from redis.exceptions import RedisError

from services.tasks import TaskStore

log = structlog.get_logger("wan22.ingest")


INDEX_TRIM_EVERY = 60  # sweeps between trims of the tasks-by-creation index


async def expire_loop(tasks: TaskStore, interval_s: float = 1.0) -> None:
    """Also drops tasks past their retention from the index `GET /v1/videos` lists."""
    sweeps = 0
    while True:
        try:
            for task_id in await tasks.expire_due():
                log.info("task.expired", task_id=task_id)
            if sweeps % INDEX_TRIM_EVERY == 0:
                await tasks.trim_index()
        except RedisError as exc:
            log.warning("expiry.failed", error=str(exc))
        sweeps += 1
        await anyio.sleep(interval_s)
