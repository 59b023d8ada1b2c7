"""The event handler: fan lifecycle events out into durable delivery records.

It only reads task hashes and subscriptions and writes the records (idempotently, keyed by event
entry and target), so events are acked within milliseconds; the dispatcher does the slow part.
It is the consumer's batch handler: one script call reads the task hashes of a whole read (a
pipeline of HGETALLs costs five times the client CPU) and one creates all its deliveries. A
task's own `webhook_url` gets DEFAULT_EVENTS; a subscription gets the events it chose.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import structlog
from redis.asyncio import Redis

from services import contracts
from services.consumer import Entry, Undecodable
from services.contracts import Event, TaskState
from services.keys import Keys
from services.notifier import store
from services.notifier.payload import DEFAULT_EVENTS, build_body
from services.notifier.schedule import RetrySchedule
from services.notifier.store import TASK_TARGET, Delivery
from services.notifier.subscriptions import Subscription, SubscriptionCache

log = structlog.get_logger("wan22.notifier")

# KEYS: task hashes. Returns each one's HGETALL (an empty list for a missing hash).
_READ_HASHES = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out
"""


class FanOut:
    def __init__(
        self, redis: Redis, keys: Keys, subs: SubscriptionCache, schedule: RetrySchedule, on_created: Callable[[], None]
    ) -> None:
        self.redis, self.keys, self.subs, self.schedule, self.on_created = redis, keys, subs, schedule, on_created
        self._read_hashes = redis.register_script(_READ_HASHES)

    async def __call__(self, entries: list[Entry]) -> list[BaseException | None]:
        """Per entry None (its deliveries are stored) or its error; raises when the whole read
        failed (Redis), and the consumer then retries entry by entry."""
        outcomes: list[BaseException | None] = [None] * len(entries)
        decoded: list[tuple[Entry, Event]] = []
        for i, entry in enumerate(entries):
            try:
                decoded.append((entry, entry.decode(contracts.event_decoder)))
            except Undecodable as exc:
                outcomes[i] = exc  # dead-lettered by the consumer
        if decoded and await self._fan_out(decoded):
            self.on_created()
        return outcomes

    async def _fan_out(self, batch: list[tuple[Entry, Event]]) -> int:
        states = await self._task_states([event.task_id for _, event in batch])
        subs = await self.subs.get()
        deliveries = [d for e, ev in batch for d in self._deliveries(e, ev, states.get(ev.task_id), subs)]
        if not deliveries:
            return 0
        created = await store.create(self.redis, self.keys, deliveries, contracts.now() + self.schedule.first_delay())
        log.debug("notifier.fanned_out", events=len(batch), deliveries=len(deliveries), created=created)
        return created

    async def _task_states(self, task_ids: list[str]) -> dict[str, TaskState]:
        """Task hashes by id; a missing one (a request rejected before it became a task) is left out."""
        unique = list(dict.fromkeys(task_ids))
        rows = await self._read_hashes(keys=[self.keys.task(task_id) for task_id in unique])
        states = {}
        for task_id, row in zip(unique, rows, strict=True):
            if row:
                raw = dict(zip(row[::2], row[1::2], strict=True))
                try:
                    states[task_id] = contracts.state_from_hash({"task_id": task_id, "status": "queued", **raw})
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    log.warning("notifier.bad_task_hash", task_id=task_id, error=str(exc))
        return states

    def _deliveries(
        self, entry: Entry, event: Event, state: TaskState | None, subs: dict[str, Subscription]
    ) -> list[Delivery]:
        kind = contracts.event_type(event)
        targets = [(sub.id, sub.url) for sub in subs.values() if sub.wants(kind)]
        if state is not None and state.webhook_url and kind in DEFAULT_EVENTS:
            targets.insert(0, (TASK_TARGET, state.webhook_url))
        if not targets:
            return []
        body, created = build_body(event, state).decode(), contracts.now()
        return [
            Delivery(
                id=store.delivery_id(entry.stream, entry.id, target),
                target=target,
                url=url,
                event=kind,
                task_id=event.task_id,
                body=body,
                created_at=created,
                entry_id=entry.id,
            )
            for target, url in targets
        ]
