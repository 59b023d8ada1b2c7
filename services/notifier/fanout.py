"""The event handler: fan one lifecycle event out into durable delivery records.

It only reads the task hash and the subscriptions and writes the records (idempotently, keyed by
event entry and target), so the event is acked within milliseconds; the dispatcher does the slow
part. A task's own `webhook_url` gets DEFAULT_EVENTS; a subscription gets the events it chose.
"""

from __future__ import annotations

from collections.abc import Callable

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
from services.notifier.subscriptions import SubscriptionCache

log = structlog.get_logger("wan22.notifier")


class FanOut:
    def __init__(
        self, redis: Redis, keys: Keys, subs: SubscriptionCache, schedule: RetrySchedule, on_created: Callable[[], None]
    ) -> None:
        self.redis, self.keys, self.subs, self.schedule, self.on_created = redis, keys, subs, schedule, on_created

    async def __call__(self, entry: Entry) -> None:
        event = entry.decode(contracts.event_decoder)
        kind = contracts.event_type(event)
        state = await self._task_state(event.task_id)
        targets = await self._targets(kind, state)
        if not targets:
            return
        deliveries = self._deliveries(entry, event, kind, state, targets)
        created = await store.create(self.redis, self.keys, deliveries, contracts.now() + self.schedule.first_delay())
        if created:
            self.on_created()
        log.debug("notifier.fanned_out", event_type=kind, deliveries=len(deliveries), created=created)

    async def _task_state(self, task_id: str) -> TaskState | None:
        """None when there is no hash (e.g. a request rejected before it became a task)."""
        raw = await self.redis.hgetall(self.keys.task(task_id))
        if not raw:
            return None
        try:
            return contracts.state_from_hash({"task_id": task_id, "status": "queued", **raw})
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            log.warning("notifier.bad_task_hash", task_id=task_id, error=str(exc))
            return None

    async def _targets(self, kind: str, state: TaskState | None) -> list[tuple[str, str]]:
        targets = []
        if state is not None and state.webhook_url and kind in DEFAULT_EVENTS:
            targets.append((TASK_TARGET, state.webhook_url))
        for sub in (await self.subs.get()).values():
            if sub.wants(kind):
                targets.append((sub.id, sub.url))
        return targets

    def _deliveries(
        self, entry: Entry, event: Event, kind: str, state: TaskState | None, targets: list[tuple[str, str]]
    ) -> list[Delivery]:
        body = build_body(event, state).decode()
        created = contracts.now()
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
