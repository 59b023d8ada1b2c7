"""The event handler: fan lifecycle events out into durable delivery records.

It only reads task hashes and subscriptions and writes the records (idempotently, keyed by event
entry and target), so events are acked within milliseconds; the dispatcher does the slow part.
Handlers running at the same time are served together: one pipeline reads all their task hashes
and one script call creates all their deliveries, and each handler returns (its entry is acked)
only once its own deliveries are stored. A task's own `webhook_url` gets DEFAULT_EVENTS; a
subscription gets the events it chose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import msgspec
import structlog
from redis.asyncio import Redis

from services import contracts
from services.consumer import Entry
from services.contracts import Event, TaskState
from services.keys import Keys
from services.notifier import store
from services.notifier.payload import DEFAULT_EVENTS, build_body
from services.notifier.schedule import RetrySchedule
from services.notifier.store import TASK_TARGET, Delivery
from services.notifier.subscriptions import Subscription, SubscriptionCache

log = structlog.get_logger("wan22.notifier")

BATCH = 256


@dataclass(slots=True)
class _Waiting:
    entry: Entry
    event: Event
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class FanOut:
    def __init__(
        self, redis: Redis, keys: Keys, subs: SubscriptionCache, schedule: RetrySchedule, on_created: Callable[[], None]
    ) -> None:
        self.redis, self.keys, self.subs, self.schedule, self.on_created = redis, keys, subs, schedule, on_created
        self._queue: list[_Waiting] = []
        self._ready = anyio.Event()

    async def __call__(self, entry: Entry) -> None:
        """The consumer's handler: raises (so the consumer retries) if the batch failed."""
        waiting = _Waiting(entry, entry.decode(contracts.event_decoder))
        self._queue.append(waiting)
        self._ready.set()
        await waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error

    async def run(self) -> None:
        """Serve queued handlers batch by batch (runs beside the consumer)."""
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            while self._queue:
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
                await self._serve(batch)

    async def _serve(self, batch: list[_Waiting]) -> None:
        try:
            created = await self._fan_out(batch)
        except Exception as exc:
            for waiting in batch:
                waiting.error = exc
        else:
            if created:
                self.on_created()
        for waiting in batch:
            waiting.done.set()

    async def _fan_out(self, batch: list[_Waiting]) -> int:
        states = await self._task_states([w.event.task_id for w in batch])
        subs = await self.subs.get()
        deliveries = [d for w in batch for d in self._deliveries(w, states.get(w.event.task_id), subs)]
        if not deliveries:
            return 0
        created = await store.create(self.redis, self.keys, deliveries, contracts.now() + self.schedule.first_delay())
        log.debug("notifier.fanned_out", events=len(batch), deliveries=len(deliveries), created=created)
        return created

    async def _task_states(self, task_ids: list[str]) -> dict[str, TaskState]:
        """Task hashes by id; a missing one (a request rejected before it became a task) is left out."""
        unique = list(dict.fromkeys(task_ids))
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in unique:
                pipe.hgetall(self.keys.task(task_id))
            raws = await pipe.execute()
        states = {}
        for task_id, raw in zip(unique, raws, strict=True):
            if raw:
                try:
                    states[task_id] = contracts.state_from_hash({"task_id": task_id, "status": "queued", **raw})
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    log.warning("notifier.bad_task_hash", task_id=task_id, error=str(exc))
        return states

    def _deliveries(self, w: _Waiting, state: TaskState | None, subs: dict[str, Subscription]) -> list[Delivery]:
        kind = contracts.event_type(w.event)
        targets = [(sub.id, sub.url) for sub in subs.values() if sub.wants(kind)]
        if state is not None and state.webhook_url and kind in DEFAULT_EVENTS:
            targets.insert(0, (TASK_TARGET, state.webhook_url))
        if not targets:
            return []
        body, created = build_body(w.event, state).decode(), contracts.now()
        return [
            Delivery(
                id=store.delivery_id(w.entry.stream, w.entry.id, target),
                target=target,
                url=url,
                event=kind,
                task_id=w.event.task_id,
                body=body,
                created_at=created,
                entry_id=w.entry.id,
            )
            for target, url in targets
        ]
