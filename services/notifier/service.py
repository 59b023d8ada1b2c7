"""The notifier service: the event consumer (fan-out) and the dispatcher in one process.

Any number of notifiers may run side by side: they share the consumer group and the schedule,
and claims in the schedule are atomic.
"""

from __future__ import annotations

import os
import socket

import anyio
import structlog
from redis.asyncio import Redis

from services.consumer import StreamConsumer
from services.keys import NOTIFIER_GROUP, Keys
from services.notifier.dispatcher import Dispatcher
from services.notifier.fanout import FanOut
from services.notifier.schedule import RetrySchedule
from services.notifier.settings import NotifierSettings
from services.notifier.subscriptions import SubscriptionCache, deployment_secrets

log = structlog.get_logger("wan22.notifier")


def consumer_name() -> str:
    return f"notifier-{socket.gethostname()}-{os.getpid()}"


class Notifier:
    def __init__(
        self, redis: Redis, settings: NotifierSettings, *, name: str | None = None, poll_s: float = 1.0
    ) -> None:
        self.redis, self.settings = redis, settings
        self.keys = Keys(settings.prefix)
        self.name = name or consumer_name()
        self.poll_s = poll_s
        self.subs = SubscriptionCache(redis, self.keys)
        self.dispatcher: Dispatcher | None = None
        self.consumer: StreamConsumer | None = None
        self._stop = anyio.Event()  # stop() before run() got going

    def stop(self) -> None:
        """Stop taking events and claiming deliveries; attempts in flight get a grace period."""
        self._stop.set()
        if self.consumer:
            self.consumer.stop()
        if self.dispatcher:
            self.dispatcher.stop()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        secrets = await deployment_secrets(self.redis, self.keys, self.settings.secrets)
        self.dispatcher = Dispatcher(self.redis, self.keys, self.settings, secrets, self.subs, poll_s=self.poll_s)
        schedule = RetrySchedule(self.settings.schedule, self.settings.webhook_jitter)
        fanout = FanOut(self.redis, self.keys, self.subs, schedule, self.dispatcher.wake)
        consumer_settings = self.settings.consumer(concurrency=64, batch=64)
        self.consumer = StreamConsumer(
            self.redis,
            self.keys,
            self.keys.events,
            NOTIFIER_GROUP,
            self.name,
            None,
            consumer_settings,
            batch_handler=fanout,
        )
        log.info("notifier.start", consumer=self.name, schedule=self.settings.schedule)
        async with anyio.create_task_group() as tg:
            await tg.start(self.dispatcher.run)
            await tg.start(self.consumer.run)
            task_status.started()
            if self._stop.is_set():
                self.stop()
        log.info("notifier.stopped", consumer=self.name)
