"""Queue lag per task, refreshed in the background so the hot path never waits on XINFO."""

from __future__ import annotations

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services import metrics
from services.keys import GENERATOR_GROUP, Keys

log = structlog.get_logger("wan22.ingest")


async def queue_lag(redis: Redis, stream: str, group: str = GENERATOR_GROUP) -> int:
    """Entries not yet delivered to `group` (XINFO GROUPS lag; XLEN when the group does not exist
    or Redis cannot compute the lag), as KEDA's lag mode counts them."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return 0  # no stream yet
    for info in groups:
        if info["name"] == group:
            lag = info.get("lag")
            return int(lag) if lag is not None else int(await redis.xlen(stream))
    return int(await redis.xlen(stream))


class LagMonitor:
    def __init__(self, redis: Redis, keys: Keys, tasks: list[str], interval_s: float = 0.5) -> None:
        self.redis, self.keys, self.tasks, self.interval_s = redis, keys, tasks, interval_s
        self.lag: dict[str, int] = {}

    async def refresh(self) -> None:
        for task in self.tasks:
            self.lag[task] = sum([await queue_lag(self.redis, stream) for stream in self.keys.job_streams(task)])
            metrics.QUEUE_LAG.labels(task).set(self.lag[task])

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except RedisError as exc:
                log.warning("lag.refresh_failed", error=str(exc))
            await anyio.sleep(self.interval_s)
