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


async def expire_loop(tasks: TaskStore, interval_s: float = 1.0) -> None:
    while True:
        try:
            for task_id in await tasks.expire_due():
                log.info("task.expired", task_id=task_id)
        except RedisError as exc:
            log.warning("expiry.failed", error=str(exc))
        await anyio.sleep(interval_s)
