"""Fixtures for the notifier: a real HTTP receiver, compressed settings, a running notifier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from services import contracts
from services.contracts import Event, TaskState
from services.notifier.service import Notifier
from services.notifier.settings import NotifierSettings
from services.notifier.signing import generate_secret
from services.settings import load
from tests.notifier.receiver import Receiver

SECRET = generate_secret()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.close()


def make_settings(redis_url: str, **overrides: Any) -> NotifierSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "webhook_schedule": "0,0.4,0.8",
        "webhook_allow_networks": ["127.0.0.1/32"],
        "webhook_timeout_s": 2,
        "webhook_secret": SECRET,
        "webhook_jitter": 0.1,
        "lease_ms": 1000,
        "metrics_port": 0,
    }
    values.update(overrides)
    return load(NotifierSettings, env={}, **values)


@asynccontextmanager
async def running(redis: Any, settings: NotifierSettings, name: str = "n1") -> AsyncIterator[Notifier]:
    notifier = Notifier(redis, settings, name=name, poll_s=0.05)
    async with anyio.create_task_group() as tg:
        await tg.start(notifier.run)
        try:
            yield notifier
        finally:
            notifier.stop()


async def put_task(redis: Any, keys: Any, task_id: str, webhook_url: str = "", **fields: Any) -> None:
    state = TaskState(task_id=task_id, status="queued", webhook_url=webhook_url, created_at=1_700_000_000.0, **fields)
    await redis.hset(keys.task(task_id), mapping=contracts.state_to_hash(state))


async def publish(redis: Any, keys: Any, event: Event) -> str:
    return str(await redis.xadd(keys.events, contracts.event_entry(event)))


async def wait_until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)
