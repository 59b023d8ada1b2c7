"""Accepts of concurrent requests share one call to Redis, and each waiter gets its own answer."""

from __future__ import annotations

import anyio
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from services.ingest.coalesce import AcceptCoalescer
from services.keys import Keys
from services.redisconn import connect
from services.tasks import AcceptResult, TaskStore
from tests.ingest.test_tasks import job
from tests.redis_server import free_port

KEYS = Keys()


async def test_one_turns_accepts_go_in_one_call_and_each_gets_its_result(redis):
    store = TaskStore(redis, KEYS)
    calls: list[int] = []

    async def accept_many(jobs):
        calls.append(len(jobs))
        return await store.accept_many(jobs, 60)

    coalescer = AcceptCoalescer(accept_many)
    results: dict[str, AcceptResult] = {}

    async def submit(name: str, key: str | None) -> None:
        results[name] = await coalescer.accept(job(name), key)

    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run)
        await anyio.sleep(0.05)
        async with anyio.create_task_group() as requests:
            for i in range(20):
                requests.start_soon(submit, f"t{i}", "shared" if i >= 18 else None)
        tg.cancel_scope.cancel()
    assert calls == [20]
    assert all(results[f"t{i}"] == AcceptResult(f"t{i}", True) for i in range(19))
    assert results["t19"] == AcceptResult("t18", False)  # same idempotency key as t18
    assert await redis.xlen(KEYS.jobs("demo")) == 19


async def test_a_failed_call_fails_every_waiter_and_the_next_batch_still_goes(redis):
    down = connect(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    up = TaskStore(redis, KEYS)
    failing = True

    async def accept_many(jobs):
        return await (TaskStore(down, KEYS) if failing else up).accept_many(jobs, 60)

    coalescer = AcceptCoalescer(accept_many)
    errors: list[BaseException] = []

    async def submit(name: str) -> None:
        try:
            await coalescer.accept(job(name), None)
        except RedisConnectionError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(coalescer.run)
        await anyio.sleep(0.05)
        async with anyio.create_task_group() as requests:
            for i in range(5):
                requests.start_soon(submit, f"f{i}")
        failing = False
        assert await coalescer.accept(job("ok"), None) == AcceptResult("ok", True)
        tg.cancel_scope.cancel()
    await down.aclose()
    assert len(errors) == 5
    assert await redis.xlen(KEYS.jobs("demo")) == 1


async def test_accepting_before_it_runs_is_an_error():
    with pytest.raises(RuntimeError, match="not running"):
        await AcceptCoalescer(lambda jobs: None).accept(job("x"), None)  # type: ignore[arg-type,return-value]
