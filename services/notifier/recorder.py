"""Batched recording of attempt outcomes: one script call for many deliveries instead of a
transaction each (the same idea as the consumer's batched XACK). An outcome waits here for
milliseconds; if the process dies first, the delivery's lease brings it back and it is sent again
with the same `webhook-id`, which is the at-least-once contract anyway."""

from __future__ import annotations

from collections.abc import Callable

from redis.asyncio import Redis

from services.consumer.flusher import BatchFlusher
from services.keys import Keys
from services.notifier import store
from services.notifier.store import Outcome

BATCH = 500


class Recorder(BatchFlusher):
    what = "webhook outcomes"

    def __init__(self, redis: Redis, keys: Keys, on_recorded: Callable[[list[str]], None], *, done_ttl_s: int) -> None:
        super().__init__()
        self.redis, self.keys, self.on_recorded = redis, keys, on_recorded
        self.done_ttl_s = done_ttl_s
        self._pending: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)
        self._wake()

    async def _write(self) -> None:
        """Record everything pending; on failure the outcomes stay for the next flush."""
        while self._pending:
            batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
            try:
                await store.apply(self.redis, self.keys, batch, self.done_ttl_s)
            except BaseException:
                self._pending[:0] = batch
                raise
            self.on_recorded([o.claimed.delivery.id for o in batch])
