"""Accepts from concurrent HTTP requests share one call to Redis (group commit).

The first request queued in a turn of the event loop starts a sender task; the task first runs
after that turn's other requests have queued theirs, so a lone request waits no longer than it
would have, and under load dozens of accepts cost one round trip instead of one each. Senders run
in the coalescer's task group, which the service runs for as long as it serves HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from services.contracts import Job
from services.tasks import AcceptResult

Accept = tuple[Job, str | None]
AcceptMany = Callable[[list[Accept]], Awaitable[list[AcceptResult]]]


class _Pending:
    __slots__ = ("accept", "done", "error", "result")

    def __init__(self, accept: Accept) -> None:
        self.accept, self.done = accept, anyio.Event()
        self.result: AcceptResult | None = None
        self.error: BaseException | None = None


class AcceptCoalescer:
    def __init__(self, accept_many: AcceptMany, max_batch: int = 256) -> None:
        self._accept_many, self._max_batch = accept_many, max_batch
        self._queued: list[_Pending] = []
        self._tg: TaskGroup | None = None

    async def run(self) -> None:
        """Serve accepts until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None

    async def accept(self, job: Job, idempotency_key: str | None) -> AcceptResult:
        if self._tg is None:
            raise RuntimeError("the accept coalescer is not running")
        pending = _Pending((job, idempotency_key))
        self._queued.append(pending)
        if len(self._queued) == 1:
            self._tg.start_soon(self._send_queued)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    async def _send_queued(self) -> None:
        batch, self._queued = self._queued[: self._max_batch], self._queued[self._max_batch :]
        if self._queued and self._tg is not None:
            self._tg.start_soon(self._send_queued)  # the rest goes as the next batch, concurrently
        try:
            results = await self._accept_many([pending.accept for pending in batch])
        except BaseException as exc:  # every waiter hears it (Redis down → 503), then it goes on
            for pending in batch:
                pending.error = exc if isinstance(exc, Exception) else RuntimeError("ingest is stopping")
                pending.done.set()
            if not isinstance(exc, Exception):
                raise
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.done.set()
