"""Accepts from concurrent HTTP requests share one pipelined round trip to Redis.

Every request handled in one turn of the event loop queues its job here; the first one schedules a
flush for the end of that turn, so a lone request waits no longer than it would have, and under
load dozens of accepts cost one write and one read instead of one each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from services.contracts import Job
from services.tasks import AcceptResult

Accept = tuple[Job, str | None]
AcceptMany = Callable[[list[Accept]], Awaitable[list[AcceptResult]]]


class AcceptCoalescer:
    def __init__(self, accept_many: AcceptMany, max_batch: int = 256) -> None:
        self._accept_many = accept_many
        self._max_batch = max_batch
        self._queued: list[tuple[Accept, asyncio.Future[AcceptResult]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def accept(self, job: Job, idempotency_key: str | None) -> AcceptResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AcceptResult] = loop.create_future()
        self._queued.append(((job, idempotency_key), future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        elif len(self._queued) >= self._max_batch:
            self._flush()
        return await future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)  # held so the task is not collected mid-flight
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Accept, asyncio.Future[AcceptResult]]]) -> None:
        try:
            results = await self._accept_many([accept for accept, _ in batch])
        except BaseException as exc:  # every waiter hears the failure (e.g. Redis down → 503)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # the request may have been cancelled (client went away)
                future.set_result(result)
