"""Batched recording of attempt outcomes: one script call for many deliveries instead of a
transaction each (the same idea as the consumer's batched XACK). An outcome waits here for
milliseconds; if the process dies first, the delivery's lease brings it back and it is sent again
with the same `webhook-id`, which is the at-least-once contract anyway."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.consumer import backoff_delay
from services.keys import Keys
from services.notifier import store
from services.notifier.store import Outcome

log = structlog.get_logger("wan22.notifier")

BATCH = 500


class Recorder:
    def __init__(self, redis: Redis, keys: Keys, on_recorded: Callable[[list[str]], None]) -> None:
        self.redis, self.keys, self.on_recorded = redis, keys, on_recorded
        self._pending: list[Outcome] = []
        self._ready = anyio.Event()

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._ready.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            try:
                await self.flush()
                failures = 0
            except RedisError as exc:
                failures += 1
                log.warning("notifier.redis_error", where="record", error=str(exc), pending=len(self._pending))
                await anyio.sleep(backoff_delay(failures, 0.05, 5.0))
                self._ready.set()

    async def flush(self) -> None:
        """Record everything pending; on failure the outcomes stay for the next flush."""
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await store.apply(self.redis, self.keys, batch)
            except BaseException:
                self._pending[:0] = batch
                raise
            self.on_recorded([o.claimed.delivery.id for o in batch])
