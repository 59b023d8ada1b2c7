"""The reliable consumer against a real redis-server."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from services.consumer import (
    ConsumerSettings,
    Entry,
    Hooks,
    Permanent,
    StreamConsumer,
    list_dead,
    replay,
)
from services.consumer.deadletter import history_from_fields
from services.contracts import job_decoder

STREAM, GROUP = "wan22:test:stream", "workers"
FAST = ConsumerSettings(lease_ms=600, block_ms=50, backoff_base_s=0.02, backoff_max_s=0.1, grace_s=1.0)
# For tests that a live consumer keeps its entry: a lease a loaded machine's event-loop stall
# cannot outlast (FAST's 600 ms could be, and then a watcher would rightly take the entry over).
STEADY = ConsumerSettings(lease_ms=3000, block_ms=50, backoff_base_s=0.02, backoff_max_s=0.1, grace_s=1.0)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def pending_count(redis) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


async def run_consumers(consumers: list[StreamConsumer], until: Callable[[], Awaitable[bool]], timeout=30.0):
    async with anyio.create_task_group() as tg:
        for consumer in consumers:
            tg.start_soon(consumer.run)
        await wait_until(until, timeout)
        for consumer in consumers:
            consumer.stop()


def spawn_consumer_process(redis_url: str, name: str, lease_ms: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.helpers.consumer_proc", redis_url, STREAM, GROUP, name, str(lease_ms)]
    return subprocess.Popen(args, cwd=os.getcwd())


async def test_killed_consumer_entry_is_reclaimed_and_acked_once(redis, redis_url, keys):
    proc = spawn_consumer_process(redis_url, "victim", lease_ms=800)
    try:
        await wait_until(lambda: redis.exists("ready:victim"))
        entry_id = await redis.xadd(STREAM, {"task_id": "t1", "sleep": "30"})
        await wait_until(lambda: redis.hexists("started", entry_id))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()

    async def handle(entry: Entry) -> None:
        await redis.hincrby("done", entry.id, 1)

    rescuer = StreamConsumer(redis, keys, STREAM, GROUP, "rescuer", handle, FAST)
    started = time.monotonic()
    await run_consumers([rescuer], lambda: redis.hexists("done", entry_id))
    assert time.monotonic() - started < 0.8 + 2.0  # within about one lease
    assert await redis.hget("done", entry_id) == "1"
    assert await pending_count(redis) == 0
    assert await redis.xack(STREAM, GROUP, entry_id) == 0  # already acked, exactly once


async def test_long_handler_is_never_reclaimed_while_its_consumer_lives(redis, keys):
    calls: list[str] = []
    owners: list[tuple[str, int]] = []

    async def slow(entry: Entry) -> None:
        calls.append(entry.id)
        await anyio.sleep(2 * STEADY.lease_s)  # the lease is extended many times meanwhile
        [row] = await redis.xpending_range(STREAM, GROUP, min=entry.id, max=entry.id, count=1)
        owners.append((row["consumer"], row["times_delivered"]))

    entry_id = await redis.xadd(STREAM, {"task_id": "long"})
    owner = StreamConsumer(redis, keys, STREAM, GROUP, "owner", slow, STEADY)
    watchers = [StreamConsumer(redis, keys, STREAM, GROUP, f"w{i}", slow, STEADY) for i in range(2)]
    await run_consumers([owner, *watchers], lambda: _acked(redis))
    assert calls == [entry_id]
    [(_holder, deliveries)] = owners
    assert deliveries == 1  # whichever consumer read it kept it: never claimed away, never redelivered
    rows = await redis.xinfo_consumers(STREAM, GROUP)
    assert all(row["pending"] == 0 for row in rows)


async def _acked(redis) -> bool:
    info = await redis.xinfo_groups(STREAM)
    return bool(info) and info[0]["pending"] == 0 and info[0]["last-delivered-id"] != "0-0"


async def test_always_failing_handler_dead_letters_then_replay_succeeds(redis, keys):
    attempts: list[float] = []
    retries: list[tuple[int, float]] = []
    fixed = False

    async def flaky(entry: Entry) -> None:
        attempts.append(time.monotonic())
        if not fixed:
            raise RuntimeError("model exploded")
        await redis.set("replayed_ok", entry.id)

    async def on_retry(entry: Entry, record, delay: float) -> None:
        retries.append((record.attempt, delay))

    hooks = Hooks(on_retry=on_retry)
    entry_id = await redis.xadd(STREAM, {"type": "job", "task_id": "t-fail", "payload": "{}"})
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c", flaky, FAST, hooks)
    await run_consumers([consumer], lambda: redis.xlen(keys.dlq))

    assert len(attempts) == 3
    assert [a for a, _ in retries] == [1, 2]
    for (_, delay), (earlier, later) in zip(retries, itertools.pairwise(attempts), strict=True):
        assert later - earlier >= delay * 0.9  # the backoff was actually waited out
    [(dlq_id, letter)] = await list_dead(redis, keys)
    assert (letter.stream, letter.group, letter.entry_id, letter.reason) == (STREAM, GROUP, entry_id, "exhausted")
    assert letter.attempts == 3 and [e.attempt for e in letter.errors] == [1, 2, 3]
    assert all("model exploded" in e.error for e in letter.errors)
    assert letter.fields["payload"] == "{}" and letter.task_id == "t-fail"
    assert await pending_count(redis) == 0
    assert not await redis.exists(keys.attempts(STREAM, entry_id))

    fixed = True
    new_id = await replay(redis, keys, dlq_id)
    assert new_id and new_id != entry_id
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c2", flaky, FAST, hooks)
    await run_consumers([consumer], lambda: redis.exists("replayed_ok"))
    assert await redis.get("replayed_ok") == new_id
    assert await redis.xlen(keys.dlq) == 0
    [(_, fields)] = await redis.xrange(STREAM, min=new_id, max=new_id)
    assert len(history_from_fields(fields)) == 3  # the attempt history travels with the replay
    await wait_until(lambda: _no_pending(redis))


async def _no_pending(redis) -> bool:
    return await pending_count(redis) == 0


async def test_undecodable_entry_is_dead_lettered_at_once_and_loop_continues(redis, keys):
    seen: list[str] = []

    async def handle(entry: Entry) -> None:
        entry.decode(job_decoder)
        seen.append(entry.id)

    bad = await redis.xadd(STREAM, {"type": "job", "task_id": "x", "payload": "{not json"})
    missing = await redis.xadd(STREAM, {"type": "job", "task_id": "y"})
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c", handle, FAST)
    await run_consumers([consumer], lambda: _dlq_at_least(redis, keys, 2))
    letters = {letter.entry_id: letter for _, letter in await list_dead(redis, keys)}
    assert letters[bad].reason == "undecodable" and letters[bad].attempts == 1
    assert "payload" in letters[bad].errors[0].error
    assert "no `payload`" in letters[missing].errors[0].error
    assert seen == [] and await pending_count(redis) == 0


async def _dlq_at_least(redis, keys, n: int) -> bool:
    return await redis.xlen(keys.dlq) >= n


async def test_permanent_error_skips_retries(redis, keys):
    async def handle(entry: Entry) -> None:
        raise Permanent("image is not a PNG")

    await redis.xadd(STREAM, {"task_id": "p"})
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c", handle, FAST)
    await run_consumers([consumer], lambda: _dlq_at_least(redis, keys, 1))
    [(_, letter)] = await list_dead(redis, keys)
    assert letter.reason == "permanent" and letter.attempts == 1


@pytest.mark.slow
async def test_ten_thousand_entries_four_consumers_random_failures(redis, keys):
    rng = random.Random(7)
    total = 10_000
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(total):
            pipe.xadd(STREAM, {"task_id": f"t{i}", "n": str(i)})
        ids = await pipe.execute()
    done: dict[str, int] = {}

    async def handle(entry: Entry) -> None:
        if rng.random() < 0.2:
            raise RuntimeError("random fault")
        done[entry.id] = done.get(entry.id, 0) + 1

    settings = ConsumerSettings(
        lease_ms=5000, block_ms=50, batch=50, concurrency=50, backoff_base_s=0.001, backoff_max_s=0.005
    )
    consumers = [StreamConsumer(redis, keys, STREAM, GROUP, f"c{i}", handle, settings) for i in range(4)]

    async def finished() -> bool:
        return len(done) + await redis.xlen(keys.dlq) >= total and await pending_count(redis) == 0

    await run_consumers(consumers, finished, timeout=120)
    dead = {letter.entry_id for _, letter in await list_dead(redis, keys, count=total)}
    assert set(done) | dead == set(ids)  # none lost
    assert not set(done) & dead
    assert max(done.values()) == 1  # none handled to success twice
    assert 0 < len(dead) < total * 0.05  # 0.2^3 of entries exhaust their three attempts
    assert await pending_count(redis) == 0


async def test_graceful_shutdown_leaves_unfinished_pending_and_acks_finished(redis, keys):
    finished: list[str] = []

    async def handle(entry: Entry) -> None:
        await anyio.sleep(float(entry.fields["sleep"]))
        finished.append(entry.id)

    quick = await redis.xadd(STREAM, {"task_id": "q", "sleep": "0.05"})
    slow = await redis.xadd(STREAM, {"task_id": "s", "sleep": "30"})
    settings = ConsumerSettings(lease_ms=10_000, block_ms=50, grace_s=0.5)
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c", handle, settings)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: _bool(quick in finished))
        consumer.stop()
    assert finished == [quick]
    rows = await redis.xpending_range(STREAM, GROUP, min="-", max="+", count=10)
    assert [row["message_id"] for row in rows] == [slow]
    assert rows[0]["time_since_delivered"] >= settings.lease_ms  # handed back: claimable at once


async def _bool(value: bool) -> bool:
    return value


async def test_batch_handler_acks_the_good_and_retries_the_bad_one_by_one(redis, keys):
    calls: list[int] = []

    async def handle_batch(entries: list[Entry]) -> list[BaseException | None]:
        calls.append(len(entries))
        return [RuntimeError("bad entry") if e.fields.get("bad") else None for e in entries]

    ids = [await redis.xadd(STREAM, {"task_id": f"t{i}", **({"bad": "1"} if i == 3 else {})}) for i in range(8)]
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c", None, FAST, batch_handler=handle_batch)
    await run_consumers([consumer], lambda: _dlq_at_least(redis, keys, 1))
    [(_, letter)] = await list_dead(redis, keys)
    assert letter.entry_id == ids[3] and letter.attempts == 3
    assert calls[0] == 8 and calls[1:] == [1, 1]  # one call for the read, then single retries
    await wait_until(lambda: _no_pending(redis))
